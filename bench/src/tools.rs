//! The external programs the benchmarks drive, and the Debian packages that have them.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tool {
    pub bin: &'static str,
    pub package: &'static str,
}

impl Tool {
    const fn new(bin: &'static str, package: &'static str) -> Tool {
        Tool { bin, package }
    }
}

pub const TRAFGEN: Tool = Tool::new("trafgen", "netsniff-ng");
pub const NFT: Tool = Tool::new("nft", "nftables");
pub const WRK: Tool = Tool::new("wrk", "wrk");
pub const HAPROXY: Tool = Tool::new("haproxy", "haproxy");
pub const BPFTOOL: Tool = Tool::new("bpftool", "bpftool");

/// `bin` on PATH (or in the sbin directories root's PATH may lack).
pub fn find(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(bin))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Fails, naming every missing tool and its package, unless all of `tools` are there.
pub fn require(tools: &[Tool]) -> Result<()> {
    let missing: Vec<&Tool> = tools.iter().filter(|t| find(t.bin).is_none()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = missing
        .iter()
        .map(|t| format!("{} (Debian package {})", t.bin, t.package))
        .collect();
    let mut packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    packages.dedup();
    bail!(
        "missing {}; `cargo xtask bench` installs them, or: apt-get install --no-install-recommends {}",
        names.join(", "),
        packages.join(" ")
    )
}
