use anyhow::{Context as _, anyhow};

/// Builds `director-ebpf` for the BPF target with the nightly toolchain and
/// bpf-linker (installed by `cargo xtask`); `AYA_BUILD_SKIP=1` skips it.
fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        // An empty object keeps `include_bytes!` compiling (clippy, docs);
        // `Dataplane::load` refuses it with a clear message.
        let out = std::env::var("OUT_DIR").context("OUT_DIR not set")?;
        std::fs::write(std::path::Path::new(&out).join("director"), b"")?;
        println!("cargo:warning=AYA_BUILD_SKIP set: built without the eBPF object");
        return Ok(());
    }
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("bpf-linker").is_file()));
    if !on_path {
        return Err(anyhow!(
            "bpf-linker is not on PATH: build through `cargo xtask build` (it installs \
             bpf-linker and puts it on PATH), or add ~/.cache/director/bpf-linker/bin to PATH"
        ));
    }
    let meta = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let pkg = meta
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "director-ebpf")
        .ok_or_else(|| anyhow!("director-ebpf package not found"))?;
    let root = pkg
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", pkg.manifest_path))?;
    // aya-build relays every line of the nested cargo's stderr as a cargo warning,
    // so its "Compiling ..." progress read as dozens of warnings on a first build.
    // Quiet drops the progress only: compiler messages come through its JSON
    // output, and errors still reach stderr.
    // SAFETY: the build script is single-threaded until aya-build spawns cargo.
    unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };
    aya_build::build_ebpf(
        [aya_build::Package {
            name: pkg.name.as_str(),
            root_dir: root.as_str(),
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
