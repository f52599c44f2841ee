//! One director per datapath and per control socket. `director run` holds,
//! for as long as it runs, an exclusive `flock` on its pin directory (bpffs
//! takes no regular files, but a directory can be locked) and on its pid
//! file beside the control socket (`director.sock` -> `director.pid`, so
//! /run/director/director.pid by default, and one per instance wherever
//! instances have their own sockets). A second run sharing either is refused
//! before it touches pins or socket, naming the running one's pid. The locks
//! die with the process: a crash leaves none behind.

use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::dataplane::Created;

/// The pid file of the director serving `socket`.
pub fn pid_file(socket: &Path) -> PathBuf {
    socket.with_extension("pid")
}

/// The held locks; dropping it removes the pid file, then unlocks.
#[derive(Debug)]
pub struct Instance {
    pid_file: PathBuf,
    _pid: Flock<File>,
    _pins: Flock<File>,
}

impl Instance {
    /// Takes both locks (the pin directory is made if need be, recorded in
    /// `created`) and writes this process's pid into the pid file.
    pub fn acquire(pin_dir: &Path, socket: &Path, created: &mut Created) -> anyhow::Result<Self> {
        let pid_path = pid_file(socket);
        let mut pid = lock_pid_file(&pid_path, socket)?;
        let pins = match lock_pin_dir(pin_dir, created) {
            Ok(pins) => pins,
            Err(e) => {
                // Ours while locked: nobody else can be using it.
                let _ = std::fs::remove_file(&pid_path);
                return Err(e);
            }
        };
        pid.set_len(0)
            .and_then(|()| pid.rewind())
            .and_then(|()| writeln!(pid, "{}", std::process::id()))
            .with_context(|| format!("writing {}", pid_path.display()))?;
        Ok(Instance {
            pid_file: pid_path,
            _pid: pid,
            _pins: pins,
        })
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Still locked here: a run starting now either fails to lock this
        // file or finds it gone from its path and starts over.
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

fn lock_pid_file(path: &Path, socket: &Path) -> anyhow::Result<Flock<File>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    loop {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let mut locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((_, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = File::open(path).and_then(|mut f| f.read_to_string(&mut text));
                bail!(
                    "another director ({}) serves the control socket {}: its pid file {} is \
                     locked. Stop it first, or give this one its own --socket and --pin-dir",
                    holder(text.trim().parse().ok()),
                    socket.display(),
                    path.display()
                );
            }
            Err((_, e)) => bail!("locking {}: {e}", path.display()),
        };
        // The previous holder removes the file while it still holds the lock:
        // a lock taken on a file no longer at `path` locks nothing.
        let same = std::fs::metadata(path)
            .ok()
            .zip(locked.metadata().ok())
            .is_some_and(|(p, f)| p.dev() == f.dev() && p.ino() == f.ino());
        if same {
            locked.rewind()?;
            return Ok(locked);
        }
    }
}

fn lock_pin_dir(dir: &Path, created: &mut Created) -> anyhow::Result<Flock<File>> {
    created
        .dir_all(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let file = File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(l),
        Err((file, Errno::EWOULDBLOCK)) => {
            let pid = file.metadata().ok().and_then(|m| {
                let locks = std::fs::read_to_string("/proc/locks").ok()?;
                flock_holder(&locks, m.dev(), m.ino())
            });
            bail!(
                "another director ({}) holds the pin directory {}: stop it first, or give \
                 this one its own --pin-dir and --socket",
                holder(pid),
                dir.display()
            )
        }
        Err((_, e)) => bail!("locking {}: {e}", dir.display()),
    }
}

fn holder(pid: Option<u32>) -> String {
    pid.map_or_else(|| "pid unknown".to_string(), |p| format!("pid {p}"))
}

/// The pid holding a `flock` on the file `dev`/`ino`, from /proc/locks
/// (`1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF`; waiters, `1: ->
/// FLOCK …`, are not holders).
fn flock_holder(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let file = format!(
        "{:02x}:{:02x}:{ino}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    locks.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&file.as_str()))
            .then(|| f.get(4)?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flock_holder_is_read_from_proc_locks() {
        let dev = nix::sys::stat::makedev(0, 0x2a);
        let locks = "1: POSIX  ADVISORY  WRITE 77 00:2a:5678 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 999 00:2a:5678 0 EOF\n";
        assert_eq!(flock_holder(locks, dev, 5678), Some(1234));
        assert_eq!(flock_holder(locks, dev, 5679), None);
    }

    #[test]
    fn a_second_run_on_the_same_pin_dir_or_socket_is_refused_naming_the_first() {
        let tmp = tempfile::tempdir().unwrap();
        let (pins, socket) = (
            tmp.path().join("pins"),
            tmp.path().join("run/director.sock"),
        );
        // Kept alive, as a run keeps it: dropped, it would remove the new pin dir.
        let mut created = Created::default();
        let first = Instance::acquire(&pins, &socket, &mut created).unwrap();
        let me = format!("pid {}", std::process::id());
        let pid_text = std::fs::read_to_string(pid_file(&socket)).unwrap();
        assert_eq!(pid_text.trim(), std::process::id().to_string());

        let other_socket = tmp.path().join("other.sock");
        let e = Instance::acquire(&pins, &other_socket, &mut Created::default())
            .expect_err("a second run on the same pin directory");
        let msg = format!("{e:#}");
        assert!(msg.contains(&me) && msg.contains("pin directory"), "{msg}");
        assert!(
            !pid_file(&other_socket).exists(),
            "the refused run left its pid file"
        );

        let e = Instance::acquire(&tmp.path().join("pins2"), &socket, &mut Created::default())
            .expect_err("a second run on the same socket");
        let msg = format!("{e:#}");
        assert!(msg.contains(&me) && msg.contains("control socket"), "{msg}");

        drop(first);
        created.keep();
        assert!(!pid_file(&socket).exists(), "pid file left after exit");
        Instance::acquire(&pins, &socket, &mut Created::default())
            .unwrap_or_else(|e| panic!("the lock outlived its holder: {e:#}"));
    }
}
