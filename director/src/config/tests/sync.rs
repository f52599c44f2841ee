//! The `[sync]` table and its key file.

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    sync::atomic::{AtomicU32, Ordering},
};

use super::*;

/// A directory of key files, removed when dropped.
struct KeyDir(PathBuf);

impl KeyDir {
    fn new() -> KeyDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "director-sync-config-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        KeyDir(dir)
    }

    /// Writes `bytes` to `name` with `mode`; returns its path.
    fn key(&self, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// BASE, a blank line 10, `[sync]` on line 11 and `lines` from line 12 on.
fn with_sync(lines: &str) -> String {
    format!("{BASE}\n[sync]\n{lines}\n")
}

/// A valid `[sync]` body whose key file is `key`, lines 12 to 14.
fn sync_keys(key: &Path) -> String {
    format!(
        "listen = \"10.9.0.1:8848\"\npeers = [\"10.9.0.2:8848\", \"[2001:db8::2]:8848\"]\nkey_file = {:?}",
        key.display().to_string()
    )
}

#[test]
fn absent_means_no_sync() {
    assert_eq!(clean(BASE).sync, None);
}

#[test]
fn valid_table_with_defaults() {
    let dir = KeyDir::new();
    let key = dir.key("sync.key", &[7; 32], 0o600);
    let sync = clean(&with_sync(&sync_keys(&key))).sync;
    assert_eq!(
        sync,
        Some(SyncConfig {
            listen: sa("10.9.0.1:8848"),
            peers: vec![sa("10.9.0.2:8848"), sa("[2001:db8::2]:8848")],
            key_file: key,
            ready_timeout: DEFAULT_READY_TIMEOUT,
        })
    );
    assert_eq!(DEFAULT_READY_TIMEOUT, Duration::from_secs(10));
    assert_eq!(sync.unwrap().read_key().unwrap(), vec![7; 32]);
}

#[test]
fn ready_timeout_is_a_positive_duration() {
    let dir = KeyDir::new();
    let key = dir.key("sync.key", &[7; 32], 0o400);
    let text = with_sync(&format!("{}\nready_timeout = \"1m 30s\"", sync_keys(&key)));
    assert_eq!(
        clean(&text).sync.unwrap().ready_timeout,
        Duration::from_secs(90)
    );
    // `ready_timeout = ` is 16 characters.
    let text = with_sync(&format!("{}\nready_timeout = \"0s\"", sync_keys(&key)));
    assert_one_error(&text, "15:17", "ready_timeout must be greater than zero");
    let text = with_sync(&format!("{}\nready_timeout = \"soon\"", sync_keys(&key)));
    assert_one_error(
        &text,
        "15:17",
        "invalid duration \"soon\" for ready_timeout",
    );
}

#[test]
fn every_key_but_ready_timeout_is_required_and_no_other_is_known() {
    let dir = KeyDir::new();
    let key = dir.key("sync.key", &[7; 32], 0o600);
    let keys = sync_keys(&key);
    for (i, missing) in ["listen", "peers", "key_file"].into_iter().enumerate() {
        let without: Vec<&str> = keys
            .lines()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, l)| l)
            .collect();
        let errs = errors(&with_sync(&without.join("\n")));
        assert!(
            errs.len() == 1 && errs[0].contains(&format!("missing field `{missing}`")),
            "without {missing}: {errs:#?}"
        );
    }
    let text = with_sync(&format!("{keys}\nport = 8848"));
    let errs = errors(&text);
    assert!(
        errs.len() == 1
            && errs[0].starts_with("15:1: ")
            && errs[0].contains("unknown field `port`"),
        "{errs:#?}"
    );
}

#[test]
fn bad_listen_and_peers() {
    let dir = KeyDir::new();
    let key = dir.key("sync.key", &[7; 32], 0o600);
    let key_line = format!("key_file = {:?}", key.display().to_string());
    let table = |listen: &str, peers: &str| {
        with_sync(&format!(
            "listen = \"{listen}\"\npeers = [{peers}]\n{key_line}"
        ))
    };
    // `listen = ` is 9 characters, `peers = [` 9.
    let own = "peer 10.9.0.1:8848 is this director's own listen address";
    let duplicate = "duplicate peer 10.9.0.2:8848 (first listed at 13:10)";
    let cases = [
        (
            "10.9.0.1",
            r#""10.9.0.2:8848""#,
            "12:10",
            r#"invalid address "10.9.0.1""#,
        ),
        ("0.0.0.0:8848", r#""10.9.0.2:8848""#, "12:10", "unspecified"),
        ("10.9.0.1:8848", "", "13:9", "peers must not be empty"),
        ("10.9.0.1:8848", r#""10.9.0.2:0""#, "13:10", "port 0"),
        (
            "10.9.0.1:8848",
            r#""10.9.0.2:8848", "10.9.0.1:8848""#,
            "13:27",
            own,
        ),
        (
            "10.9.0.1:8848",
            r#""10.9.0.2:8848", "10.9.0.2:8848""#,
            "13:27",
            duplicate,
        ),
    ];
    for (listen, peers, pos, needle) in cases {
        assert_one_error(&table(listen, peers), pos, needle);
    }
}

/// Asserts that a `[sync]` whose key file is `path` has one error, at the
/// `key_file` value (line 14, column 12), containing `needle`.
#[track_caller]
fn assert_key_refused(path: &Path, needle: &str) {
    assert_one_error(&with_sync(&sync_keys(path)), "14:12", needle);
}

#[test]
fn key_file_refused_with_reason() {
    let dir = KeyDir::new();
    let missing = dir.0.join("missing.key");
    assert_key_refused(
        &missing,
        &format!("cannot open key file {}: No such file", missing.display()),
    );
    for mode in [0o640, 0o604, 0o620, 0o602, 0o644] {
        let key = dir.key(&format!("mode-{mode:o}.key"), &[7; 32], mode);
        assert_key_refused(
            &key,
            &format!(
                "key file {} is readable or writable by group or others (mode {mode:o})",
                key.display()
            ),
        );
    }
    let short = dir.key("short.key", &[7; 31], 0o600);
    assert_key_refused(
        &short,
        &format!(
            "key file {} holds 31 bytes, expected at least 32",
            short.display()
        ),
    );
    let sub = dir.0.join("a-directory");
    std::fs::create_dir(&sub).unwrap();
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_key_refused(&sub, "is not a regular file");
}

#[test]
fn key_file_bytes_are_the_key_as_they_are() {
    let dir = KeyDir::new();
    // What `openssl rand -base64 48` writes: 64 characters and a newline.
    let text_key = format!("{}\n", "q".repeat(64));
    let key = dir.key("base64.key", text_key.as_bytes(), 0o600);
    let sync = clean(&with_sync(&sync_keys(&key))).sync.unwrap();
    assert_eq!(sync.read_key().unwrap(), text_key.as_bytes());
    // read_key checks again: a key made unsafe after loading is refused.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = sync.read_key().unwrap_err().to_string();
    assert!(err.contains("readable or writable by group"), "{err}");
}

#[test]
fn relative_key_file_is_relative_to_the_config_file() {
    let dir = KeyDir::new();
    dir.key("sync.key", &[7; 40], 0o600);
    let config = dir.0.join("director.toml");
    std::fs::write(&config, with_sync(&sync_keys(Path::new("sync.key")))).unwrap();
    let loaded = load(&config).unwrap_or_else(|e| panic!("{e}"));
    let sync = loaded.config.sync.unwrap();
    assert_eq!(sync.key_file, dir.0.join("sync.key"));
    assert_eq!(sync.read_key().unwrap(), vec![7; 40]);
    // Found through load, the error names the file and the position.
    std::fs::remove_file(dir.0.join("sync.key")).unwrap();
    let err = load(&config).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{}:14:12: cannot open key file {}",
            config.display(),
            dir.0.join("sync.key").display()
        )),
        "{err}"
    );
}

/// The reference's commented-out `[sync]` table, uncommented, is valid and
/// means what its comments say.
#[test]
fn reference_sync_table_is_valid() {
    let dir = KeyDir::new();
    let key = dir.key("sync.key", &[7; 32], 0o600);
    let key_path = key.display().to_string();
    let reference = std::fs::read_to_string(super::files::REFERENCE).unwrap();
    // From `# [sync]` to the next table, the commented-out keys.
    let mut in_sync = false;
    let text: String = reference
        .lines()
        .map(|l| {
            if l.starts_with('[') {
                in_sync = false;
            } else if l == "# [sync]" {
                in_sync = true;
                return "[sync]".to_owned();
            }
            match l.strip_prefix("# ") {
                Some(key) if in_sync && is_key_line(key) => {
                    key.replace("/etc/director/sync.key", &key_path)
                }
                _ => l.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("\n[sync]\n"),
        "no `# [sync]` in the reference"
    );
    let sync = parse(&text, "director.toml")
        .unwrap_or_else(|e| panic!("{e}"))
        .config
        .sync;
    assert_eq!(
        sync,
        Some(SyncConfig {
            listen: sa("10.9.0.1:8848"),
            peers: vec![sa("10.9.0.2:8848")],
            key_file: key,
            ready_timeout: Duration::from_secs(10),
        })
    );
}

/// `key = ...` with a bare lowercase key.
fn is_key_line(line: &str) -> bool {
    line.split_once(" = ").is_some_and(|(key, _)| {
        !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    })
}
