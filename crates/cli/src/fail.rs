//! Exit codes and one-line error messages.
//!
//! Errors are `anyhow::Error`s; the ones that are not "the copy failed"
//! carry a [`Classified`] somewhere in their chain. [`exit_code`] finds it.

use std::fmt;

/// Exit code 1: the copy (or verify) failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code 2: bad usage, or no connection / login / LUN to work with.
pub const EXIT_USAGE: u8 = 2;

/// An error that stops an operation before it starts: bad arguments, URL,
/// range or method for these endpoints (usage), or a portal, login, target
/// or LUN that cannot be reached (connection). Both exit with code 2.
#[derive(Debug)]
pub struct Classified {
    pub msg: String,
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Classified {}

/// A usage error (exit 2).
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Classified { msg: msg.into() })
}

/// A connection error (exit 2).
pub fn connection(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Classified { msg: msg.into() })
}

/// Exit code for an error: 2 when classified, else 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.downcast_ref::<Classified>().is_some()) {
        EXIT_USAGE
    } else {
        EXIT_FAILED
    }
}

/// The error chain on one line (`outer: inner: root`), control characters
/// replaced.
pub fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn classes_survive_context() {
        let e = Err::<(), _>(usage("bad URL")).context("source").unwrap_err();
        assert_eq!(exit_code(&e), 2);
        assert_eq!(one_line(&e), "source: bad URL");
        let e = anyhow::anyhow!("write failed\nat block 7");
        assert_eq!(exit_code(&e), 1);
        assert_eq!(one_line(&e), "write failed at block 7");
    }
}
