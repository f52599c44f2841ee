//! The Debian package `cargo xtask deb` builds ($DIRECTOR_DEB): its contents and
//! fields, lintian, and an install into a scratch root (never the host's).

use std::{collections::BTreeMap, path::Path, process::Command};

use director_tests::paths::director_deb;

/// Runs `cmd`, panics with its output unless it succeeds, returns its stdout.
#[track_caller]
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The commands with a page of their own, besides director.8.
const COMMANDS: &[&str] = &[
    "run", "check", "teardown", "status", "conns", "weight", "drain", "undrain", "reload", "ready",
];

fn expected_files() -> BTreeMap<String, &'static str> {
    let mut files: BTreeMap<String, &str> = [
        ("./usr/sbin/director", "-rwxr-xr-x"),
        ("./lib/systemd/system/director.service", "-rw-r--r--"),
        ("./etc/director/director.toml", "-rw-r--r--"),
        (
            "./usr/share/bash-completion/completions/director",
            "-rw-r--r--",
        ),
        ("./usr/share/zsh/vendor-completions/_director", "-rw-r--r--"),
        (
            "./usr/share/fish/vendor_completions.d/director.fish",
            "-rw-r--r--",
        ),
        ("./usr/share/doc/director/README.md", "-rw-r--r--"),
        ("./usr/share/doc/director/copyright", "-rw-r--r--"),
        ("./usr/share/doc/director/changelog.Debian.gz", "-rw-r--r--"),
        (
            "./usr/share/doc/director/examples/director.toml",
            "-rw-r--r--",
        ),
        ("./usr/share/lintian/overrides/director", "-rw-r--r--"),
        ("./usr/share/man/man8/director.8.gz", "-rw-r--r--"),
    ]
    .into_iter()
    .map(|(path, mode)| (path.to_owned(), mode))
    .collect();
    for command in COMMANDS {
        files.insert(
            format!("./usr/share/man/man8/director-{command}.8.gz"),
            "-rw-r--r--",
        );
    }
    files
}

#[test]
fn contents_are_every_asset_at_its_path_with_its_mode() {
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(director_deb()));
    let mut files = BTreeMap::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [mode, owner, .., path] = fields[..] else {
            panic!("unexpected dpkg-deb -c line {line:?}")
        };
        assert_eq!(owner, "0/0", "{path} is not owned by root: {line}");
        if !mode.starts_with('d') {
            files.insert(path.to_owned(), mode);
        }
    }
    assert_eq!(files, expected_files(), "dpkg-deb -c:\n{listing}");
}

#[test]
fn control_has_the_fields_and_the_conffile() {
    let deb = director_deb();
    let field = |name: &str| run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name));
    assert_eq!(field("Package").trim(), "director");
    assert_eq!(field("Section").trim(), "net");
    assert_eq!(field("Priority").trim(), "optional");
    assert!(field("Version").starts_with(env!("CARGO_PKG_VERSION")));
    assert!(field("Depends").contains("libc6"), "Depends lacks libc6");
    assert!(field("Maintainer").contains('@'), "no Maintainer address");
    assert!(
        field("Description").contains("systemctl enable --now director"),
        "the description does not say the service is installed disabled"
    );
    let conffiles = run(Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .arg("conffiles"));
    assert_eq!(conffiles.trim(), "/etc/director/director.toml");
    // No maintainer scripts: installing enables and starts nothing.
    let info = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    for script in ["postinst", "prerm", "postrm", "preinst"] {
        assert!(
            !info.contains(script),
            "the package has a {script}:\n{info}"
        );
    }
}

#[test]
fn lintian_reports_nothing_but_its_overrides() {
    // Warnings fail too; the accepted ones are overridden in the package
    // (dist/debian/lintian-overrides says why).
    let out = run(Command::new("lintian")
        .args(["--fail-on", "error,warning"])
        .arg(director_deb()));
    assert!(
        !out.lines()
            .any(|l| l.starts_with("E:") || l.starts_with("W:")),
        "lintian:\n{out}"
    );
}

fn dpkg(root: &Path) -> Command {
    let mut cmd = Command::new("dpkg");
    // The scratch root has no libc6 package: its dependency cannot be met there.
    cmd.arg(format!("--root={}", root.display()))
        .arg("--force-depends");
    cmd
}

fn status(root: &Path) -> String {
    run(dpkg(root).args(["-s", "director"]))
}

#[test]
fn installs_into_a_scratch_root_runs_and_removes() {
    let root = tempfile::tempdir().expect("scratch root");
    let root = root.path();
    let admin = root.join("var/lib/dpkg");
    for dir in ["updates", "info", "triggers"] {
        std::fs::create_dir_all(admin.join(dir)).expect("dpkg admin dir");
    }
    std::fs::write(admin.join("status"), "").expect("dpkg status");

    run(dpkg(root).arg("-i").arg(director_deb()));
    assert!(status(root).contains("Status: install ok installed"));

    let config = root.join("etc/director/director.toml");
    let check = run(Command::new(root.join("usr/sbin/director"))
        .arg("check")
        .arg(&config));
    assert!(check.contains(": ok ("), "director check: {check}");

    for page in std::iter::once("director".to_owned())
        .chain(COMMANDS.iter().map(|c| format!("director-{c}")))
    {
        let path = root.join(format!("usr/share/man/man8/{page}.8.gz"));
        let out = Command::new("man")
            .args(["--warnings", "-P", "cat", "-l"])
            .arg(&path)
            .env("MANWIDTH", "80")
            .output()
            .expect("man");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "man -l {}: {}",
            path.display(),
            out.status
        );
        assert!(
            text.contains("NAME") && text.contains("SYNOPSIS"),
            "man -l {} rendered no NAME and SYNOPSIS:\n{text}",
            path.display()
        );
        assert!(
            out.stderr.is_empty(),
            "man --warnings -l {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let bash = root.join("usr/share/bash-completion/completions/director");
    let complete = run(Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p director", bash.display())));
    assert!(complete.contains("director"), "complete -p: {complete}");

    // Removing keeps the conffile (an operator's edits); purging removes it.
    run(dpkg(root).args(["-r", "director"]));
    assert!(
        !root.join("usr/sbin/director").exists(),
        "the binary stayed"
    );
    assert!(config.is_file(), "remove deleted the conffile");
    assert!(status(root).contains("Status: deinstall ok config-files"));
    run(dpkg(root).args(["--purge", "director"]));
    assert!(!config.exists(), "purge kept the conffile");
}
