//! The one error type of xtask: what failed, why, and the command that fixes it.

use std::fmt;

/// A failed step, printed as two lines and turned into exit code 1 by `main`.
#[derive(Debug)]
pub struct Failure {
    what: String,
    why: String,
    fix: String,
}

pub type Result<T, E = Failure> = std::result::Result<T, E>;

impl Failure {
    pub fn new(what: impl Into<String>, why: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            why: why.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "xtask: {}: {}\n  fix: {}", self.what, self.why, self.fix)
    }
}

impl std::error::Error for Failure {}
