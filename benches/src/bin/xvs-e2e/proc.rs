//! Commands and child processes: run a tool to its end, or keep one running (a daemon, a
//! counter) whose output goes to files in the run's work directory, and which is stopped in
//! `Drop` whatever happens.
//!
//! Ctrl-C and SIGTERM set a flag instead of killing the bench: every wait here checks it and
//! returns [`Interrupted`], so the guards up the stack unwind and clean up.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use xvs_testkit::netns_command;

static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// The error of a wait cut short by Ctrl-C or SIGTERM.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Interrupted;

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Makes SIGINT and SIGTERM set the stop flag rather than end the process.
pub(crate) fn install_signal_handlers() -> anyhow::Result<()> {
    let flag = STOP.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, flag.clone()).context("installing a signal handler")?;
    }
    Ok(())
}

/// Whether Ctrl-C or SIGTERM came.
pub(crate) fn interrupted() -> bool {
    STOP.get().is_some_and(|f| f.load(Ordering::Relaxed))
}

/// Fails with [`Interrupted`] if Ctrl-C or SIGTERM came.
pub(crate) fn check_interrupted() -> anyhow::Result<()> {
    if interrupted() {
        Err(Interrupted.into())
    } else {
        Ok(())
    }
}

/// Whether an error chain is (or wraps) an interruption.
pub(crate) fn is_interrupted(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Interrupted>())
}

/// Sleeps, in short naps so that Ctrl-C is noticed.
pub(crate) fn sleep(d: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + d;
    loop {
        check_interrupted()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to its end and returns its output, whatever its status.
pub(crate) fn output(mut cmd: Command) -> anyhow::Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", describe(&cmd)))
}

/// Runs a command to its end; fails with its stderr unless it succeeds. Returns its stdout.
pub(crate) fn run(cmd: Command) -> anyhow::Result<String> {
    let what = describe(&cmd);
    let out = output(cmd)?;
    if !out.status.success() {
        bail!(
            "`{what}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A command from a program and its arguments.
pub(crate) fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// `program args` run in network namespace `ns` (or here with `None`), on `cpu` if given.
/// Both `ip netns exec` and `taskset` exec the next program, so the child's pid is the
/// program's own.
pub(crate) fn in_ns(ns: Option<&str>, cpu: Option<usize>, program: &Path) -> Command {
    let mut argv: Vec<&OsStr> = Vec::new();
    let cpu = cpu.map(|cpu| cpu.to_string());
    if let Some(cpu) = &cpu {
        argv.extend(["taskset", "-c", cpu].map(OsStr::new));
    }
    argv.push(program.as_os_str());
    let mut c = match ns {
        Some(ns) => netns_command(ns, argv[0]),
        None => Command::new(argv[0]),
    };
    c.args(&argv[1..]);
    c
}

/// A process kept running while the bench does other things. Its stdout and stderr go to
/// files; it is stopped (SIGTERM, then SIGKILL) in `Drop` if it still runs.
#[derive(Debug)]
pub(crate) struct Proc {
    name: String,
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd`, writing its output to `{dir}/{name}-{n}.out` and `.err`.
    pub(crate) fn spawn(name: &str, mut cmd: Command, dir: &Path) -> anyhow::Result<Proc> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let stdout = dir.join(format!("{name}-{n}.out"));
        let stderr = dir.join(format!("{name}-{n}.err"));
        let file = |p: &Path| {
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))
        };
        cmd.stdin(Stdio::null())
            .stdout(file(&stdout)?)
            .stderr(file(&stderr)?);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", describe(&cmd)))?;
        Ok(Proc {
            name: name.to_owned(),
            child: Some(child),
            stdout,
            stderr,
            status: None,
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// What it wrote on stdout so far.
    pub(crate) fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// What it wrote on stderr so far.
    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The last lines of its stderr, for error messages.
    pub(crate) fn stderr_tail(&self) -> String {
        let text = self.stderr();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    /// Whether it still runs (reaping it if not).
    pub(crate) fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => {
                    self.status = Some(status);
                    self.child = None;
                    false
                }
                Ok(None) => true,
                Err(_) => false,
            },
            None => false,
        }
    }

    /// Sends it a signal (nothing if it has ended).
    pub(crate) fn signal(&mut self, signal: Signal) {
        if self.is_running() {
            let _ = kill(Pid::from_raw(self.pid() as i32), signal);
        }
    }

    /// Waits until its stderr contains `needle`.
    ///
    /// # Errors
    /// It ended before, `timeout` passed, or the bench was interrupted.
    pub(crate) fn wait_for_stderr(
        &mut self,
        needle: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr().contains(needle) {
                return Ok(());
            }
            if !self.is_running() {
                bail!(
                    "{} ended before saying {needle:?}: {}",
                    self.name,
                    self.stderr_tail()
                );
            }
            if Instant::now() > deadline {
                bail!("{} did not say {needle:?} within {timeout:?}", self.name);
            }
            sleep(Duration::from_millis(20))?;
        }
    }

    /// Waits for it to end, at most `timeout` (then kills it and fails).
    ///
    /// # Errors
    /// The timeout, or an interruption (the process is left to `Drop`).
    pub(crate) fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_running() {
                return self
                    .status
                    .with_context(|| format!("{} could not be waited for", self.name));
            }
            if Instant::now() > deadline {
                self.kill();
                bail!("{} did not end within {timeout:?}; killed", self.name);
            }
            sleep(Duration::from_millis(10))?;
        }
    }

    /// Waits for it to end and fails unless it succeeded; returns its stdout.
    pub(crate) fn finish(&mut self, timeout: Duration) -> anyhow::Result<String> {
        let status = self.wait(timeout)?;
        if !status.success() {
            bail!("{} failed ({status}): {}", self.name, self.stderr_tail());
        }
        Ok(self.stdout())
    }

    /// Waits up to `timeout` for it to end, even after Ctrl-C (for cleanup paths); returns
    /// whether it ended.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.is_running() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// SIGTERM, up to `grace` to end, then SIGKILL; always reaps it.
    pub(crate) fn stop(&mut self, grace: Duration) {
        if !self.is_running() {
            return;
        }
        self.signal(Signal::SIGTERM);
        if !self.wait_exit(grace) {
            self.kill();
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            self.status = child.wait().ok();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}
