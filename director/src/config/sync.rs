//! The `[sync]` table: connection-state sync with the other directors of a
//! group, and the rules its key file must meet.

use std::{
    fs::File,
    io::Read,
    net::SocketAddr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

/// Default for `ready_timeout`.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Fewest bytes a key file holds: 256 bits of secret when they are random.
pub const MIN_KEY_LEN: usize = 32;

/// `[sync]`: where this director receives its peers' updates, the peers it
/// sends its own to, and the shared secret that authenticates both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConfig {
    pub listen: SocketAddr,
    /// Every other director of the group (at least one, never `listen`).
    pub peers: Vec<SocketAddr>,
    /// A relative path is relative to the configuration file's directory.
    pub key_file: PathBuf,
    /// How long a starting director waits for its peers' bulk transfers
    /// before it is ready without the peers that did not answer.
    pub ready_timeout: Duration,
}

impl SyncConfig {
    /// The shared secret, checked as when the configuration was loaded (the
    /// file may have changed since).
    pub fn read_key(&self) -> anyhow::Result<Vec<u8>> {
        read_key_file(&self.key_file).map_err(anyhow::Error::msg)
    }
}

/// The bytes of the key file at `path`, as they are: a regular file of at
/// least [`MIN_KEY_LEN`] bytes that neither group nor others may read or
/// write. The error names the file and what is wrong with it.
pub(crate) fn read_key_file(path: &Path) -> Result<Vec<u8>, String> {
    let name = path.display();
    let mut file = File::open(path).map_err(|e| format!("cannot open key file {name}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat key file {name}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("key file {name} is not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "key file {name} is readable or writable by group or others (mode {mode:03o}), expected mode 600 or 400"
        ));
    }
    let mut key = Vec::new();
    file.read_to_end(&mut key)
        .map_err(|e| format!("cannot read key file {name}: {e}"))?;
    if key.len() < MIN_KEY_LEN {
        return Err(format!(
            "key file {name} holds {} bytes, expected at least {MIN_KEY_LEN} (e.g. `head -c 32 /dev/urandom`)",
            key.len()
        ));
    }
    Ok(key)
}
