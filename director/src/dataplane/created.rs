//! What a start pinned, undone if that start fails: a failed first start
//! leaves the pin directory as it found it (the next start would otherwise
//! "adopt" a datapath that never ran), and a failed restart removes only its
//! own additions, never the previous run's datapath, which keeps forwarding.

use std::path::{Path, PathBuf};

/// Paths this start created (directories and pins), in creation order,
/// removed in reverse on drop unless [`Created::keep`] was called.
#[derive(Debug, Default)]
pub struct Created {
    paths: Vec<PathBuf>,
    kept: bool,
}

impl Created {
    /// `create_dir_all`, recording each directory it makes.
    pub fn dir_all(&mut self, dir: &Path) -> std::io::Result<()> {
        let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
        std::fs::create_dir_all(dir)?;
        self.paths
            .extend(missing.into_iter().rev().map(Path::to_path_buf));
        Ok(())
    }

    /// A pin about to be made (recorded first, so that a failure half way
    /// through making it is undone too; undoing ignores what is not there).
    pub fn pin(&mut self, path: &Path) {
        self.paths.push(path.to_path_buf());
    }

    /// The start succeeded: what it made is the running datapath now.
    pub fn keep(&mut self) {
        self.kept = true;
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if self.kept || self.paths.is_empty() {
            return;
        }
        let mut removed = 0;
        for path in self.paths.iter().rev() {
            // Only empty directories: what others put there stays.
            let gone = if path.is_dir() {
                std::fs::remove_dir(path)
            } else {
                std::fs::remove_file(path)
            };
            match gone {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), "failed start: cannot remove: {e}")
                }
            }
        }
        tracing::info!(removed, "failed start: removed what it had pinned");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_start_removes_exactly_what_it_created() {
        let tmp = tempfile::tempdir().unwrap();
        let theirs = tmp.path().join("pins/maps/v4");
        std::fs::create_dir_all(&theirs).unwrap();
        std::fs::write(theirs.join("CONNS"), b"").unwrap();
        let ours = tmp.path().join("pins/maps/v5");
        {
            let mut created = Created::default();
            created.dir_all(&ours).unwrap();
            created.pin(&ours.join("CONNS"));
            std::fs::write(ours.join("CONNS"), b"").unwrap();
            created.pin(&ours.join("VIPS")); // never made: the start failed first
        }
        assert!(!ours.exists(), "{} left behind", ours.display());
        assert!(
            theirs.join("CONNS").exists(),
            "a previous layout's pin was removed"
        );
    }

    #[test]
    fn a_successful_start_keeps_its_pins() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pins/links");
        {
            let mut created = Created::default();
            created.dir_all(&dir).unwrap();
            created.keep();
        }
        assert!(
            dir.exists(),
            "{} removed after a successful start",
            dir.display()
        );
    }
}
