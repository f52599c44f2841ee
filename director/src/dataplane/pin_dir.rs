//! The pin directory: where on bpffs a datapath lives, whether it is on
//! bpffs at all, and removing it (`director teardown`).

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use aya::programs::links::PinnedLink;
use nix::sys::statfs::{BPF_FS_MAGIC, statfs};

use super::ABI_VERSION;

/// Where a pinned datapath lives on bpffs: maps under `maps/v<ABI>/` (a
/// new map layout gets a new directory instead of misreading an old one),
/// the verified program under `prog/`, XDP links under `links/<interface>`.
#[derive(Clone, Debug)]
pub struct PinDir(pub PathBuf);

/// What a datapath pins directly under its directory.
const PARTS: [&str; 3] = ["maps", "prog", "links"];

impl PinDir {
    pub fn maps(&self) -> PathBuf {
        self.0.join("maps").join(format!("v{ABI_VERSION}"))
    }

    pub fn link(&self, iface: &str) -> PathBuf {
        self.0.join("links").join(iface)
    }

    /// Interfaces with a pinned XDP link.
    pub fn linked_interfaces(&self) -> Vec<String> {
        std::fs::read_dir(self.0.join("links"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Refuses a directory that is not (or would not be) on bpffs, before
    /// anything is made there: the kernel would refuse the pins later with
    /// a less helpful error.
    pub fn check_bpffs(&self) -> anyhow::Result<()> {
        let Some(existing) = self.0.ancestors().find(|d| d.exists()) else {
            bail!("{}: no part of this path exists", self.0.display());
        };
        let fs = statfs(existing).with_context(|| format!("statfs {}", existing.display()))?;
        if fs.filesystem_type() != BPF_FS_MAGIC {
            bail!(
                "pin directory {} is not on a bpffs ({} is not bpffs): mount one with \
                 `mount -t bpf bpf /sys/fs/bpf`. Under `ip netns exec`, which gives the \
                 command its own /sys without bpffs, run director with \
                 `nsenter --net=/run/netns/NAME` instead",
                self.0.display(),
                existing.display()
            );
        }
        Ok(())
    }

    /// Refuses a directory that holds no director datapath (a mistyped
    /// `--pin-dir`), naming it.
    pub fn check_datapath(&self) -> anyhow::Result<()> {
        self.check_bpffs()?;
        self.check_parts()
    }

    fn check_parts(&self) -> anyhow::Result<()> {
        if !PARTS.iter().any(|p| self.0.join(p).exists()) {
            bail!(
                "{}: no director datapath is pinned there (none of {}); is --pin-dir right?",
                self.0.display(),
                PARTS.map(|p| format!("{p}/")).join(", ")
            );
        }
        Ok(())
    }
}

/// Removes a pinned datapath: unpinning its links detaches XDP from their
/// interfaces (once the last reference is gone), then the map pins go. A
/// directory without one is an error.
pub fn teardown(pins: &PinDir) -> anyhow::Result<Vec<String>> {
    pins.check_datapath()?;
    remove(pins)
}

fn remove(pins: &PinDir) -> anyhow::Result<Vec<String>> {
    let mut detached = Vec::new();
    for iface in pins.linked_interfaces() {
        let path = pins.link(&iface);
        let link =
            PinnedLink::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
        drop(
            link.unpin()
                .with_context(|| format!("unpinning {}", path.display()))?,
        );
        detached.push(iface);
    }
    for sub in ["maps", "prog"] {
        let dir = pins.0.join(sub);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    for dir in [pins.0.join("links"), pins.0.clone()] {
        // Only empty directories: never delete what is not ours.
        let _ = std::fs::remove_dir(dir);
    }
    Ok(detached)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teardown_of_a_mistyped_pin_dir_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let pins = PinDir(tmp.path().join("directr"));
        let e = pins
            .check_parts()
            .expect_err("no datapath there, yet accepted");
        let msg = format!("{e:#}");
        assert!(
            msg.contains(&pins.0.display().to_string()) && msg.contains("no director datapath"),
            "{msg}"
        );
        std::fs::create_dir_all(pins.0.join("maps")).unwrap();
        pins.check_parts()
            .unwrap_or_else(|e| panic!("a datapath's maps/ refused: {e:#}"));
    }

    #[test]
    fn a_pin_dir_off_bpffs_says_to_use_nsenter() {
        let tmp = tempfile::tempdir().unwrap();
        let e = PinDir(tmp.path().join("director"))
            .check_bpffs()
            .expect_err("a tmp directory taken for bpffs");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("nsenter --net") && msg.contains("mount -t bpf"),
            "{msg}"
        );
    }
}
