//! Child processes. Every failure names the command, how it ended and what fixes it;
//! nothing here panics on a child's status.

use std::{
    ffi::OsStr,
    io,
    os::unix::process::CommandExt as _,
    process::{Child, Command, ExitStatus, Output, Stdio},
};

use crate::failure::{Failure, Result};

/// `program arg ...`, shell-quoted where needed, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut words = vec![quote(cmd.get_program())];
    words.extend(cmd.get_args().map(quote));
    words.join(" ")
}

fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn not_started(cmd: &Command, what: &str, err: &io::Error, fix: &str) -> Failure {
    let program = cmd.get_program().to_string_lossy();
    let why = if err.kind() == io::ErrorKind::NotFound {
        format!("`{program}` not found")
    } else {
        format!("could not start `{program}`: {err}")
    };
    Failure::new(what, why, fix)
}

/// The failure for a command that ran and exited unsuccessfully.
pub fn exited(cmd: &Command, what: &str, status: ExitStatus, fix: &str) -> Failure {
    Failure::new(what, format!("`{}` failed ({status})", describe(cmd)), fix)
}

/// Runs `cmd` with the terminal's stdout and stderr; a non-zero exit is a failure.
pub fn status(cmd: &mut Command, what: &str, fix: &str) -> Result<()> {
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .map_err(|err| not_started(cmd, what, &err, fix))?;
    if status.success() {
        Ok(())
    } else {
        Err(exited(cmd, what, status, fix))
    }
}

/// Runs `cmd` with captured output; only failing to start it is an error.
pub fn output(cmd: &mut Command, what: &str, fix: &str) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|err| not_started(cmd, what, &err, fix))
}

/// Runs `cmd` and returns its stdout. On a non-zero exit the failure quotes the
/// last line of its stderr, which is where tools put the reason.
pub fn stdout(cmd: &mut Command, what: &str, fix: &str) -> Result<String> {
    let out = output(cmd, what, fix)?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut why = format!("`{}` failed ({})", describe(cmd), out.status);
    if let Some(line) = stderr.lines().rev().find(|l| !l.trim().is_empty()) {
        why = format!("{why}: {}", line.trim());
    }
    Err(Failure::new(what, why, fix))
}

/// Starts `cmd` as the foreground job: from here on a terminal's Ctrl-C is left to
/// the child (and its own cleanup, e.g. tearing down a lab) while xtask waits for it.
pub fn spawn_foreground(cmd: &mut Command, what: &str, fix: &str) -> Result<Child> {
    let child = cmd
        .stdin(Stdio::null())
        .spawn()
        .map_err(|err| not_started(cmd, what, &err, fix))?;
    // Ignored only after the spawn: an ignored disposition would be inherited across exec.
    // SAFETY: SIG_IGN installs no handler code, so no async-signal-safety concerns arise.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
    Ok(child)
}

/// Waits for a child started with [`spawn_foreground`]; a non-zero exit is a failure.
pub fn wait(cmd: &Command, mut child: Child, what: &str, fix: &str) -> Result<ExitStatus> {
    child
        .wait()
        .map_err(|err| Failure::new(what, format!("waiting for `{}`: {err}", describe(cmd)), fix))
}

/// Replaces xtask with `cmd`, so signals reach it directly. Returns only if exec failed.
pub fn exec(cmd: &mut Command, what: &str, fix: &str) -> Failure {
    let err = cmd.exec();
    not_started(cmd, what, &err, fix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_quotes_only_what_needs_it() {
        let mut cmd = Command::new("dpkg-query");
        cmd.args(["-W", "-f=${Status}", "it's", ""]);
        assert_eq!(describe(&cmd), r"dpkg-query -W '-f=${Status}' 'it'\''s' ''");
    }
}
