//! The kit's one error type: a command that could not start or did not succeed, or a name the
//! kernel would refuse.

use std::io;
use std::process::ExitStatus;

/// What went wrong making or removing part of a lab.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program could not be started (not installed, not executable).
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not start.
        source: io::Error,
    },
    /// The program ran and failed.
    #[error("`{command}` failed ({status}): {output}")]
    Failed {
        /// The command line.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// What it printed: its stderr, then its stdout, trimmed.
        output: String,
    },
    /// An interface name longer than the kernel's limit (15 bytes, `IFNAMSIZ` - 1).
    #[error("interface name {0:?} is longer than 15 bytes")]
    NameTooLong(String),
}
