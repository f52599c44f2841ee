//! dist/director.service, checked offline (systemd need not be PID 1):
//! `systemd-analyze verify` accepts it, and `systemd-analyze security --offline=yes`
//! rates its exposure at most [`MAX_EXPOSURE`]. Needs `systemd-analyze` (package
//! systemd) and the director binary (`$DIRECTOR_BIN` or target/debug/director).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use director_tests::paths::{check_director_bin, director_bin, workspace_dir};

/// Where the package installs the binary; the unit names it.
const INSTALLED_BIN: &str = "/usr/sbin/director";
/// The highest overall exposure the unit may score ("OK" is below 4.0).
const MAX_EXPOSURE: f64 = 3.0;

fn unit_path() -> PathBuf {
    workspace_dir().join("dist/director.service")
}

fn unit_text() -> String {
    let path = unit_path();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn systemd_analyze(args: &[&str], unit: &Path) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .unwrap_or_else(|e| panic!("run systemd-analyze (package systemd): {e}"))
}

fn show(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

/// The number of `→ Overall exposure level for director.service: 2.2 OK`.
fn overall_exposure(report: &str) -> Option<f64> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    line.rsplit_once(':')?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn the_unit_runs_the_installed_binary() {
    let text = unit_text();
    for line in text.lines().filter(|l| l.starts_with("Exec")) {
        let (_, command) = line.split_once('=').expect("Exec…=COMMAND");
        assert!(
            command.starts_with(INSTALLED_BIN),
            "{line}: expected the packaged binary {INSTALLED_BIN}"
        );
    }
    assert!(
        !text.contains("/usr/local/"),
        "dist/director.service names /usr/local"
    );
}

/// verify checks that each Exec binary exists: a copy of the unit runs the built one.
/// `--man=no`: the man page is installed by the package, not here.
#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let bin = director_bin();
    check_director_bin(&bin).unwrap_or_else(|e| panic!("{e:#}"));
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("director.service");
    let text = unit_text().replace(INSTALLED_BIN, &bin.display().to_string());
    std::fs::write(&copy, text).expect("write the unit copy");
    let out = systemd_analyze(&["verify", "--man=no"], &copy);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        show(&out)
    );
}

#[test]
fn systemd_analyze_security_rates_the_unit_ok() {
    let out = systemd_analyze(&["security", "--offline=yes", "--no-pager"], &unit_path());
    let report = String::from_utf8_lossy(&out.stdout);
    let score = overall_exposure(&report)
        .unwrap_or_else(|| panic!("no overall exposure level in: {}", show(&out)));
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}:\n{report}"
    );
}

#[test]
fn overall_exposure_is_parsed() {
    let line = "→ Overall exposure level for director.service: 2.2 OK 🙂";
    assert_eq!(overall_exposure(line), Some(2.2));
    assert_eq!(overall_exposure("nothing"), None);
}

/// The value of `key=` in the unit, its `\` continuation lines joined.
fn directive(text: &str, key: &str) -> String {
    let joined = text.replace("\\\n", " ");
    joined
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in dist/director.service"))
        .to_owned()
}

fn socket_of(command: &str) -> &str {
    let mut words = command.split_whitespace();
    words.find(|w| *w == "--socket");
    words
        .next()
        .unwrap_or_else(|| panic!("no --socket in {command}"))
}

/// `systemctl reload` runs `director reload` against the socket the daemon serves,
/// so a rejected file makes it fail (netns_control's invalid_reload_is_rejected
/// shows the non-zero exit), not a SIGHUP whose outcome systemd never sees.
#[test]
fn exec_reload_is_director_reload_on_the_socket_exec_start_serves() {
    let text = unit_text();
    let start = directive(&text, "ExecStart");
    let reload = directive(&text, "ExecReload");
    assert!(
        reload.starts_with(&format!("{INSTALLED_BIN} reload ")),
        "ExecReload={reload}"
    );
    assert_eq!(socket_of(&reload), socket_of(&start), "ExecReload={reload}");
    assert!(
        !text.contains("kill"),
        "the unit signals the daemon: {text}"
    );
}
