//! Running programs: to their end, with or without a check of how they ended.

use std::process::{Command, Output};

use crate::Error;

/// A command line as one string, for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs `cmd` to its end (stdin empty, output captured) and returns its stdout if it
/// succeeded.
///
/// # Errors
/// [`Error::Spawn`] if it cannot start, [`Error::Failed`] (with what it printed) if it fails.
pub fn check(cmd: &mut Command) -> Result<String, Error> {
    let out = cmd.output().map_err(|source| Error::Spawn {
        command: describe(cmd),
        source,
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(Error::Failed {
        command: describe(cmd),
        status: out.status,
        output: format!("{}\n{}", stderr.trim(), stdout.trim())
            .trim()
            .to_owned(),
    })
}

/// Runs `args[0]` with the rest as arguments and returns its output, however it ended.
///
/// # Panics
/// If `args` is empty or the program cannot start.
pub fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

/// Runs `args[0]` with the rest as arguments and returns its stdout.
///
/// # Panics
/// If `args` is empty, or the program cannot start or fails (with what it printed).
///
/// # Examples
/// ```no_run
/// let links = xvs_testkit::must(&["ip", "-br", "link"]);
/// assert!(links.contains("lo"));
/// ```
pub fn must(args: &[&str]) -> String {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..]);
    check(&mut cmd).unwrap_or_else(|e| panic!("{e}"))
}
