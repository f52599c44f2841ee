//! The workspace and the cargo commands xtask runs in it.

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{
    failure::{Failure, Result},
    prereq::{self, Env},
    run,
};

/// Built for the BPF target by director's build.rs (aya-build); a host build of it
/// fails ("unwinding panics are not supported without std"), so workspace-wide
/// commands leave it out, as aya-template does.
pub const EBPF_PACKAGE: &str = "director-ebpf";
pub const DIRECTOR_BIN: &str = "director";

/// The BPF target aya-build compiles the eBPF crate for: the host's byte order.
const EBPF_TARGET: &str = if cfg!(target_endian = "big") {
    "bpfeb-unknown-none"
} else {
    "bpfel-unknown-none"
};

/// The cargo that runs xtask (`cargo run` sets CARGO), else the one on PATH.
pub fn program() -> OsString {
    env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

#[derive(Clone, Copy, Debug)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    pub fn new(release: bool) -> Self {
        if release { Self::Release } else { Self::Debug }
    }

    fn dir(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Release => "release",
        }
    }

    fn flags(self) -> &'static [&'static str] {
        match self {
            Self::Debug => &[],
            Self::Release => &["--release"],
        }
    }
}

#[derive(Debug)]
pub struct Workspace {
    root: PathBuf,
    target: PathBuf,
    path: OsString,
}

impl Workspace {
    /// Asks cargo where the workspace and its target directory are, so that
    /// CARGO_TARGET_DIR and `build.target-dir` are honoured.
    pub fn locate(env: &Env) -> Result<Self> {
        let json = run::stdout(
            Command::new(program()).args(["metadata", "--format-version", "1", "--no-deps"]),
            "reading the workspace layout (cargo metadata)",
            "run cargo xtask from inside the director repository",
        )?;
        let bad = |why: String| {
            Failure::new(
                "reading the workspace layout (cargo metadata)",
                why,
                "cargo metadata --format-version 1 --no-deps   # must print JSON",
            )
        };
        let meta: serde_json::Value =
            serde_json::from_str(&json).map_err(|err| bad(err.to_string()))?;
        let dir = |key: &str| {
            meta[key]
                .as_str()
                .map(PathBuf::from)
                .ok_or_else(|| bad(format!("no `{key}` in its output")))
        };
        Ok(Self {
            root: dir("workspace_root")?,
            target: dir("target_directory")?,
            path: env.path().clone(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The target directory (CARGO_TARGET_DIR and `build.target-dir` honoured).
    pub fn target_dir(&self) -> &Path {
        &self.target
    }

    /// `<target>/<profile>/<name>`: absolute, as cargo metadata reports the target dir.
    pub fn bin(&self, profile: Profile, name: &str) -> PathBuf {
        self.target.join(profile.dir()).join(name)
    }

    /// A cargo command in the workspace root, with bpf-linker on PATH.
    pub fn cargo(&self) -> Command {
        let mut cmd = Command::new(program());
        cmd.current_dir(&self.root).env("PATH", &self.path);
        cmd
    }

    /// Every binary of the workspace; director's build.rs builds the eBPF program.
    pub fn build_all(&self, profile: Profile) -> Result<()> {
        let mut cmd = self.cargo();
        cmd.args(["build", "--workspace", "--exclude", EBPF_PACKAGE, "--bins"])
            .args(profile.flags());
        self.build(&mut cmd, profile)
    }

    /// The binaries of `packages`.
    pub fn build_packages(&self, packages: &[&str], profile: Profile) -> Result<()> {
        let mut cmd = self.cargo();
        cmd.arg("build");
        for package in packages {
            cmd.args(["--package", package]);
        }
        cmd.arg("--bins").args(profile.flags());
        self.build(&mut cmd, profile)
    }

    fn build(&self, cmd: &mut Command, profile: Profile) -> Result<()> {
        let release = match profile {
            Profile::Debug => "",
            Profile::Release => " --release",
        };
        run::status(
            cmd,
            "building",
            &format!(
                "fix the errors cargo printed above (eBPF errors appear as `warning: director@...` lines), then rerun: cargo xtask build{release}"
            ),
        )
    }

    /// Clippy, warnings denied, on the eBPF crate as aya-build compiles it (see
    /// director/build.rs): nightly, the BPF target, `-Z build-std=core`, the
    /// `bpf_target_arch` cfg aya-ebpf reads. Nothing is linked, so bpf-linker plays no
    /// part; a target directory of its own keeps the nightly's artifacts apart.
    pub fn clippy_ebpf(&self) -> Result<()> {
        let mut cmd = prereq::nightly("cargo");
        cmd.current_dir(&self.root)
            .env("PATH", &self.path)
            .args(["clippy", "--package", EBPF_PACKAGE, "--release"])
            .args(["--target", EBPF_TARGET, "-Z", "build-std=core"])
            .arg("--target-dir")
            .arg(self.target.join("clippy-ebpf"))
            .args(["--", "-D", "warnings"])
            .env(
                "CARGO_ENCODED_RUSTFLAGS",
                format!("--cfg=bpf_target_arch=\"{}\"", env::consts::ARCH),
            )
            // As aya-build does: an inherited compiler would not be the nightly's.
            .env_remove("RUSTC")
            .env_remove("RUSTC_WORKSPACE_WRAPPER");
        run::status(
            &mut cmd,
            "clippy on the eBPF crate",
            "fix what clippy printed above, then rerun: cargo xtask clippy-ebpf",
        )
    }

    /// A binary that a build just made; its absence means the package has no such target.
    pub fn built_bin(&self, profile: Profile, name: &str, package: &str) -> Result<PathBuf> {
        let bin = self.bin(profile, name);
        if bin.is_file() {
            Ok(bin)
        } else {
            Err(Failure::new(
                format!("finding the `{name}` binary"),
                format!("{} does not exist after the build", bin.display()),
                format!("give package `{package}` a [[bin]] named `{name}`, then rerun"),
            ))
        }
    }
}
