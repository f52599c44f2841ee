//! Prerequisites: each check is cheap when the thing is present and installs it
//! (or says exactly how to) when it is not. Running them twice changes nothing.

use std::{
    env,
    ffi::OsString,
    fs, io,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{
    failure::{Failure, Result},
    run,
};

/// Debian packages the netns lab needs (wrk: load for the control-plane tests;
/// keepalived: VRRP between the director pair of the failover tests; bird2: BGP
/// between the router and the directors of the ECMP tests; netsniff-ng: trafgen, the
/// SYN flood of the flood test; systemd: `systemd-analyze`, which checks
/// dist/director.service offline).
pub const LAB_PACKAGES: &[&str] = &[
    "iproute2",
    "ethtool",
    "curl",
    "wrk",
    "keepalived",
    "bird2",
    "netsniff-ng",
    "systemd",
];

/// What `cargo xtask bench` drives besides the lab: trafgen (netsniff-ng), wrk,
/// haproxy, nft (nftables) and bpftool.
pub const BENCH_PACKAGES: &[&str] = &["netsniff-ng", "wrk", "haproxy", "nftables", "bpftool"];

/// What `cargo xtask test` checks the Debian package with: lintian, and man-db's
/// `man`, which renders the installed pages.
pub const PACKAGE_CHECK_PACKAGES: &[&str] = &["lintian", "man-db"];

/// cargo-deb, which `cargo xtask deb` builds the Debian package with.
pub const CARGO_DEB_VERSION: &str = "3.8.0";

/// bpf-linker must use the LLVM major of the nightly rustc; 0.13.0 offers features
/// `llvm-21`, `llvm-22` and `llvm-23`.
pub const BPF_LINKER_VERSION: &str = "0.13.0";
const BPF_LINKER_LLVM_MAJORS: &[u32] = &[21, 22, 23];

/// aya-build compiles the eBPF crate with `rustup run nightly`; no dated nightly is pinned.
const NIGHTLY: &str = "nightly";
const BPFFS: &str = "/sys/fs/bpf";

/// Which prerequisites a subcommand needs.
#[derive(Clone, Copy, Debug)]
pub struct Needs {
    /// The subcommand, for messages (`test`, `demo`, ...).
    pub command: &'static str,
    /// Root, and bpffs mounted at /sys/fs/bpf.
    pub root: bool,
    /// The lab's Debian packages and a usable `ip netns`.
    pub lab: bool,
}

/// What the checks found; child cargo processes run with [`Env::path`].
#[derive(Debug)]
pub struct Env {
    pub nightly: Nightly,
    pub bpf_linker: PathBuf,
    path: OsString,
}

impl Env {
    /// PATH with bpf-linker's directory first, for every child cargo process.
    pub fn path(&self) -> &OsString {
        &self.path
    }
}

/// The nightly toolchain that builds the eBPF crate.
#[derive(Debug)]
pub struct Nightly {
    /// `rustc 1.97.0-nightly (e50aa6fba 2026-05-19)`
    pub version: String,
    /// `22.1.4`
    pub llvm_version: String,
    pub llvm_major: u32,
    pub sysroot: PathBuf,
    /// `x86_64-unknown-linux-gnu`
    pub host: String,
}

pub fn ensure(needs: Needs) -> Result<Env> {
    if needs.root {
        require_root(needs.command)?;
    }
    ensure_nightly_installed()?;
    let nightly = nightly_info()?;
    progress("nightly toolchain", &format!("ok ({})", nightly.version));
    ensure_component("rust-src", &nightly.host)?;
    let bpf_linker = ensure_bpf_linker(&nightly)?;
    if needs.lab {
        ensure_packages(LAB_PACKAGES)?;
    }
    if needs.root {
        ensure_bpffs()?;
    }
    if needs.lab {
        ensure_netns()?;
    }

    let bin_dir = bpf_linker.parent().unwrap_or(Path::new("/"));
    let mut dirs = vec![bin_dir.to_path_buf()];
    dirs.extend(env::split_paths(&env::var_os("PATH").unwrap_or_default()));
    let path = env::join_paths(dirs).map_err(|err| {
        Failure::new(
            "PATH for bpf-linker",
            format!("cannot add {} to PATH: {err}", bin_dir.display()),
            "export DIRECTOR_CACHE_DIR=/var/cache/director (a directory without ':' in its path)",
        )
    })?;
    Ok(Env {
        nightly,
        bpf_linker,
        path,
    })
}

pub fn progress(step: &str, state: &str) {
    eprintln!("xtask: {step} ... {state}");
}

fn require_root(command: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        return Ok(());
    }
    Err(Failure::new(
        format!("`cargo xtask {command}` needs root for XDP and network namespaces"),
        format!("running as uid {uid}"),
        format!("run it as root: sudo -E env \"PATH=$PATH\" cargo xtask {command}"),
    ))
}

fn rustup() -> Command {
    Command::new("rustup")
}

const RUSTUP_FIX: &str = "install rustup (https://rustup.rs), then rerun";

fn ensure_nightly_installed() -> Result<()> {
    let list = run::stdout(
        rustup().args(["toolchain", "list"]),
        "listing rust toolchains",
        RUSTUP_FIX,
    )?;
    if has_undated_nightly(&list) {
        return Ok(());
    }
    let install = "rustup toolchain install nightly --profile minimal";
    progress("nightly toolchain", "installing");
    run::status(
        rustup().args(["toolchain", "install", NIGHTLY, "--profile", "minimal"]),
        "installing the nightly toolchain",
        install,
    )
}

/// `rustup toolchain list` names toolchains `nightly-<host>`; a dated one
/// (`nightly-2026-05-19-<host>`) does not answer to `+nightly`.
fn has_undated_nightly(list: &str) -> bool {
    list.lines()
        .filter_map(|line| line.split_whitespace().next())
        .any(|name| {
            name == NIGHTLY
                || name
                    .strip_prefix("nightly-")
                    .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
        })
}

fn nightly_info() -> Result<Nightly> {
    let fix =
        "rustup toolchain uninstall nightly && rustup toolchain install nightly --profile minimal";
    let verbose = run::stdout(
        nightly("rustc").arg("-vV"),
        "running the nightly rustc",
        fix,
    )?;
    let version = verbose.lines().next().unwrap_or_default().trim().to_owned();
    let llvm_version = verbose
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version:"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default();
    let llvm_major = llvm_version
        .split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .ok_or_else(|| {
            Failure::new(
                "reading the nightly's LLVM version",
                format!("no `LLVM version: N.x` line in `rustc -vV` of {version:?}"),
                fix,
            )
        })?;
    let host = verbose
        .lines()
        .find_map(|l| l.strip_prefix("host:"))
        .map(|h| h.trim().to_owned())
        .ok_or_else(|| {
            Failure::new(
                "reading the nightly's host triple",
                format!("no `host:` line in `rustc -vV` of {version:?}"),
                fix,
            )
        })?;
    let sysroot = run::stdout(
        nightly("rustc").args(["--print", "sysroot"]),
        "finding the nightly's sysroot",
        fix,
    )?;
    Ok(Nightly {
        version,
        llvm_version,
        llvm_major,
        sysroot: PathBuf::from(sysroot.trim()),
        host,
    })
}

/// Clippy for the nightly, which `cargo xtask clippy-ebpf` runs on the eBPF crate; a
/// minimal-profile nightly lacks it.
pub fn ensure_clippy(nightly: &Nightly) -> Result<()> {
    ensure_component("clippy", &nightly.host)
}

fn ensure_component(component: &str, host: &str) -> Result<()> {
    let step = format!("{component} for nightly");
    let add = format!("rustup component add {component} --toolchain {NIGHTLY}");
    let installed = run::stdout(
        rustup().args(["component", "list", "--toolchain", NIGHTLY, "--installed"]),
        "listing the nightly's components",
        &add,
    )?;
    if has_component(&installed, component, host) {
        progress(&step, "ok");
        return Ok(());
    }
    progress(&step, "installing");
    run::status(
        rustup().args(["component", "add", component, "--toolchain", NIGHTLY]),
        &format!("installing {component} for nightly"),
        &add,
    )?;
    progress(&step, "ok");
    Ok(())
}

/// `rustup component list --installed` names host components with the host's
/// triple (`clippy-x86_64-unknown-linux-gnu`), others without (`rust-src`).
fn has_component(installed: &str, component: &str, host: &str) -> bool {
    let with_host = format!("{component}-{host}");
    installed
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .any(|name| name == component || name == with_host)
}

/// `cmd` (`cargo`, `rustc`) of the nightly toolchain, as aya-build runs it.
pub fn nightly(program: &str) -> Command {
    let mut cmd = rustup();
    cmd.args(["run", NIGHTLY, program]);
    cmd
}

/// `$DIRECTOR_CACHE_DIR`, else `${XDG_CACHE_HOME:-$HOME/.cache}/director`.
pub fn cache_dir() -> Result<PathBuf> {
    let non_empty = |var| env::var_os(var).filter(|v| !v.is_empty());
    let dir = if let Some(dir) = non_empty("DIRECTOR_CACHE_DIR") {
        PathBuf::from(dir)
    } else if let Some(xdg) = non_empty("XDG_CACHE_HOME") {
        PathBuf::from(xdg).join("director")
    } else if let Some(home) = non_empty("HOME") {
        PathBuf::from(home).join(".cache").join("director")
    } else {
        return Err(Failure::new(
            "choosing a cache directory for bpf-linker",
            "none of DIRECTOR_CACHE_DIR, XDG_CACHE_HOME, HOME is set",
            "export DIRECTOR_CACHE_DIR=/var/cache/director",
        ));
    };
    // bpf-linker finds libLLVM through an rpath into this directory: it must be absolute.
    std::path::absolute(&dir).map_err(|err| {
        Failure::new(
            "choosing a cache directory for bpf-linker",
            format!("{}: {err}", dir.display()),
            "export DIRECTOR_CACHE_DIR=/var/cache/director",
        )
    })
}

/// bpf-linker links against the nightly's own libLLVM (same LLVM major as rustc, full
/// C API, BPF target), through an `LLVM_PREFIX` of two symlinks into the sysroot.
fn ensure_bpf_linker(nightly: &Nightly) -> Result<PathBuf> {
    let cache = cache_dir()?;
    let root = cache.join("bpf-linker");
    let prefix = cache.join("llvm");
    let exe = root.join("bin").join("bpf-linker");
    let step = format!(
        "bpf-linker {BPF_LINKER_VERSION} on the nightly's LLVM {}",
        nightly.llvm_major
    );

    let lib = nightly_libllvm(nightly)?;
    let links = [prefix.join("lib/libLLVM.so"), prefix.join("lib").join(&lib)];
    let target = nightly.sysroot.join("lib").join(&lib);
    if bpf_linker_version_ok(&exe) && links.iter().all(|link| points_to(link, &target)) {
        progress(&step, &format!("ok ({})", exe.display()));
        return Ok(exe);
    }

    let major = nightly.llvm_major;
    if !BPF_LINKER_LLVM_MAJORS.contains(&major) {
        return Err(Failure::new(
            format!("installing bpf-linker {BPF_LINKER_VERSION}"),
            format!(
                "the nightly uses LLVM {major}; bpf-linker {BPF_LINKER_VERSION} supports LLVM {BPF_LINKER_LLVM_MAJORS:?}"
            ),
            "use a nightly whose `rustc +nightly -vV` reports one of those LLVM majors",
        ));
    }
    progress(
        &step,
        &format!("installing into {} (about a minute)", root.display()),
    );
    for link in &links {
        replace_symlink(&target, link)?;
    }
    let feature = format!("llvm-{major}");
    let mut install = Command::new(crate::cargo::program());
    install
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args(["--locked", "--force", "--no-default-features", "--features"])
        .arg(&feature)
        .arg("--root")
        .arg(&root)
        .env("LLVM_PREFIX", &prefix)
        // Outside the workspace, so its .cargo/config.toml plays no part.
        .current_dir(&cache);
    let fix = format!(
        "LLVM_PREFIX={} cargo install bpf-linker --version {BPF_LINKER_VERSION} --locked --force --no-default-features --features {feature} --root {}",
        prefix.display(),
        root.display()
    );
    run::status(&mut install, "building bpf-linker", &fix)?;
    if !bpf_linker_version_ok(&exe) {
        return Err(Failure::new(
            "checking the new bpf-linker",
            format!(
                "`{} --version` does not print {BPF_LINKER_VERSION}",
                exe.display()
            ),
            format!(
                "rm -rf {} {} && cargo xtask check-env",
                root.display(),
                prefix.display()
            ),
        ));
    }
    progress(&step, &format!("ok ({})", exe.display()));
    Ok(exe)
}

/// The nightly's libLLVM file name, e.g. `libLLVM.so.22.1-rust-1.97.0-nightly`.
fn nightly_libllvm(nightly: &Nightly) -> Result<String> {
    let dir = nightly.sysroot.join("lib");
    let fix =
        "rustup toolchain uninstall nightly && rustup toolchain install nightly --profile minimal";
    let names: Vec<String> = fs::read_dir(&dir)
        .map_err(|err| {
            Failure::new(
                "finding the nightly's libLLVM",
                format!("{}: {err}", dir.display()),
                fix,
            )
        })?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    let versioned = names.iter().find(|n| n.starts_with("libLLVM.so."));
    let dashed = names
        .iter()
        .find(|n| n.starts_with("libLLVM-") && n.ends_with(".so"));
    versioned.or(dashed).cloned().ok_or_else(|| {
        Failure::new(
            "finding the nightly's libLLVM",
            format!("no libLLVM.so.* in {}", dir.display()),
            fix,
        )
    })
}

fn bpf_linker_version_ok(exe: &Path) -> bool {
    version_ok(exe, BPF_LINKER_VERSION)
}

/// Whether `exe --version` runs and prints `version` as one of its words.
fn version_ok(exe: &Path, version: &str) -> bool {
    Command::new(exe)
        .arg("--version")
        .output()
        .is_ok_and(|out| {
            out.status.success()
                && String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .any(|word| word == version)
        })
}

/// cargo-deb, installed (only when missing) as bpf-linker is: a pinned version,
/// `cargo install --locked`, into the cache.
pub fn ensure_cargo_deb() -> Result<PathBuf> {
    let cache = cache_dir()?;
    let root = cache.join("cargo-deb");
    let exe = root.join("bin").join("cargo-deb");
    let step = format!("cargo-deb {CARGO_DEB_VERSION}");
    if version_ok(&exe, CARGO_DEB_VERSION) {
        progress(&step, &format!("ok ({})", exe.display()));
        return Ok(exe);
    }
    progress(
        &step,
        &format!("installing into {} (a minute or two)", root.display()),
    );
    fs::create_dir_all(&cache).map_err(|err| {
        Failure::new(
            "creating the cache directory",
            format!("{}: {err}", cache.display()),
            format!("mkdir -p {}", cache.display()),
        )
    })?;
    let mut install = Command::new(crate::cargo::program());
    install
        .args(["install", "cargo-deb", "--version", CARGO_DEB_VERSION])
        .args(["--locked", "--force", "--root"])
        .arg(&root)
        // Outside the workspace, so its .cargo/config.toml plays no part.
        .current_dir(&cache);
    let fix = format!(
        "cargo install cargo-deb --version {CARGO_DEB_VERSION} --locked --force --root {}",
        root.display()
    );
    run::status(&mut install, "building cargo-deb", &fix)?;
    if !version_ok(&exe, CARGO_DEB_VERSION) {
        return Err(Failure::new(
            "checking the new cargo-deb",
            format!(
                "`{} --version` does not print {CARGO_DEB_VERSION}",
                exe.display()
            ),
            format!("rm -rf {} && cargo xtask deb", root.display()),
        ));
    }
    progress(&step, &format!("ok ({})", exe.display()));
    Ok(exe)
}

fn points_to(link: &Path, target: &Path) -> bool {
    match (fs::canonicalize(link), fs::canonicalize(target)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn replace_symlink(target: &Path, link: &Path) -> Result<()> {
    let failed = |err: io::Error| {
        Failure::new(
            format!("linking {} to the nightly's libLLVM", link.display()),
            err.to_string(),
            format!(
                "mkdir -p {0} && ln -sf {1} {2}",
                link.parent().unwrap_or(Path::new(".")).display(),
                target.display(),
                link.display()
            ),
        )
    };
    if let Some(dir) = link.parent() {
        fs::create_dir_all(dir).map_err(failed)?;
    }
    match fs::remove_file(link) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(failed(err)),
    }
    symlink(target, link).map_err(failed)
}

pub fn ensure_packages(packages: &[&str]) -> Result<()> {
    let step = format!("apt packages ({})", packages.join(" "));
    let mut missing = Vec::new();
    for &package in packages {
        if !package_installed(package)? {
            missing.push(package);
        }
    }
    if missing.is_empty() {
        progress(&step, "ok");
        return Ok(());
    }
    progress(&step, &format!("installing {}", missing.join(" ")));
    run::status(
        Command::new("apt-get").arg("update"),
        "updating apt's package lists",
        "apt-get update",
    )?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    let fix = format!(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    run::status(&mut install, "installing Debian packages", &fix)?;
    progress(&step, "ok");
    Ok(())
}

fn package_installed(package: &str) -> Result<bool> {
    let out = run::output(
        Command::new("dpkg-query").args(["-W", "-f=${Status}", package]),
        &format!("checking package {package}"),
        &format!(
            "xtask installs its tools with apt (Debian/Ubuntu); elsewhere install {package} yourself"
        ),
    )?;
    // dpkg-query exits 1 for a package it has never heard of: that is "not installed".
    Ok(out.status.success() && out.stdout.trim_ascii() == b"install ok installed")
}

/// The installed version of a Debian package, for `check-env`.
pub fn package_version(package: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn ensure_bpffs() -> Result<()> {
    let step = format!("bpffs at {BPFFS}");
    let mount = format!("mount -t bpf bpf {BPFFS}");
    let mounts = fs::read_to_string("/proc/self/mounts").map_err(|err| {
        Failure::new(
            "reading /proc/self/mounts",
            err.to_string(),
            format!("mount -t proc proc /proc && {mount}"),
        )
    })?;
    if bpffs_mounted(&mounts) {
        progress(&step, "ok");
        return Ok(());
    }
    progress(&step, "mounting");
    run::status(
        Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]),
        "mounting bpffs",
        &mount,
    )?;
    progress(&step, "ok");
    Ok(())
}

pub fn bpffs_mounted(mounts: &str) -> bool {
    mounts.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        matches!(fields[..], [_, BPFFS, "bpf", ..])
    })
}

fn ensure_netns() -> Result<()> {
    run::stdout(
        Command::new("ip").args(["netns", "list"]),
        "checking network namespaces (`ip netns list`)",
        "apt-get install -y iproute2; the kernel needs CONFIG_NET_NS, and /run must be writable",
    )?;
    progress("ip netns", "ok");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_undated_nightly_only() {
        let list = "stable-x86_64-unknown-linux-gnu (active, default)\n\
                    nightly-x86_64-unknown-linux-gnu\n";
        assert!(has_undated_nightly(list));
        assert!(!has_undated_nightly(
            "stable-x86_64-unknown-linux-gnu (default)\nnightly-2026-05-19-x86_64-unknown-linux-gnu\n"
        ));
        assert!(!has_undated_nightly("no installed toolchains\n"));
    }

    #[test]
    fn finds_components_with_or_without_host_triple() {
        let host = "x86_64-unknown-linux-gnu";
        let installed = "cargo-x86_64-unknown-linux-gnu\n\
                         clippy-x86_64-unknown-linux-gnu\n\
                         rust-src\n";
        assert!(has_component(installed, "clippy", host));
        assert!(has_component(installed, "rust-src", host));
        assert!(!has_component(installed, "rustfmt", host));
        assert!(!has_component(
            installed,
            "clippy",
            "aarch64-unknown-linux-gnu"
        ));
        assert!(!has_component("rust-src-extra\n", "rust-src", host));
    }

    #[test]
    fn recognises_bpffs_mount() {
        let mounts = "sysfs /sys sysfs rw,nosuid 0 0\n\
                      bpf /sys/fs/bpf bpf rw,nosuid,nodev,noexec,relatime,mode=700 0 0\n";
        assert!(bpffs_mounted(mounts));
        assert!(!bpffs_mounted("sysfs /sys sysfs rw 0 0\n"));
        assert!(!bpffs_mounted("bpf /mnt/bpf bpf rw 0 0\n"));
        assert!(!bpffs_mounted("tmpfs /sys/fs/bpf tmpfs rw 0 0\n"));
    }
}
