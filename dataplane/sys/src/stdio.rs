//! Standard output for the command-line tools, which a reader may close early
//! (`xvsctl fdb show | head`).
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe fails with EPIPE and `println!` panics.
//! Restoring SIGPIPE's default would kill a tool just as quietly when its *daemon* hangs up,
//! losing the error it should print; so the tools write through
//! [`outln!`](crate::outln) and [`out!`](crate::out) instead, which end the process quietly
//! when, and only when, stdout's reader is gone.

use std::fmt;
use std::io::{ErrorKind, Write};

/// The exit status when stdout's reader is gone: 128 + SIGPIPE, as the shell reports a tool
/// that SIGPIPE killed.
pub const BROKEN_PIPE_STATUS: i32 = 128 + libc::SIGPIPE;

/// Writes `args` to stdout. If the reader has gone (EPIPE), the process exits at once with
/// [`BROKEN_PIPE_STATUS`], printing nothing more; other errors are ignored (stdout has
/// nowhere to report them).
pub fn write_stdout(args: fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush())
        && e.kind() == ErrorKind::BrokenPipe
    {
        std::process::exit(BROKEN_PIPE_STATUS);
    }
}

/// `println!` that ends the process quietly when stdout's reader is gone
/// ([`write_stdout`]).
#[macro_export]
macro_rules! outln {
    () => {
        $crate::stdio::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::stdio::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that ends the process quietly when stdout's reader is gone ([`write_stdout`]).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdio::write_stdout(format_args!($($arg)*))
    };
}
