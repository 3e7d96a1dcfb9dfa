//! Network namespaces: a guard that makes one and removes it, and commands run inside one.

use std::ffi::OsStr;
use std::process::{Child, Command, Output, Stdio};

use crate::{Error, check};

/// A named network namespace (`ip netns add`), deleted (`ip netns del`) on drop, even when
/// the test panics. Deleting it destroys its interfaces once no process runs in it any more.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Makes namespace `name`, typically a [`unique_name`](crate::unique_name).
    ///
    /// # Errors
    /// `ip netns add` fails (not root, the name is taken).
    pub fn new(name: impl Into<String>) -> Result<Netns, Error> {
        let name = name.into();
        check(Command::new("ip").args(["netns", "add", &name]))?;
        Ok(Netns { name })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `program` to be run inside it; see [`netns_command`].
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        netns_command(&self.name, program)
    }

    /// Runs a command inside it; see [`exec_in`].
    ///
    /// # Panics
    /// As [`exec_in`].
    pub fn exec(&self, args: &[&str]) -> Output {
        exec_in(&self.name, args)
    }

    /// Starts a command inside it; see [`spawn_in`].
    ///
    /// # Panics
    /// As [`spawn_in`].
    pub fn spawn(&self, args: &[&str]) -> Child {
        spawn_in(&self.name, args)
    }

    /// Sets a sysctl inside it (`net.ipv6.conf.all.disable_ipv6=1`).
    ///
    /// # Errors
    /// sysctl fails (no such key: an interface not made yet).
    pub fn sysctl(&self, setting: &str) -> Result<(), Error> {
        check(
            self.command("sysctl")
                .args(["-qw", setting])
                .env("LC_ALL", "C"),
        )
        .map(drop)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// `ip netns exec NS program`: add the arguments and run it. `ip netns exec` execs the
/// program, so the child's pid is the program's own.
pub fn netns_command(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

/// Runs `args` in namespace `ns` and returns its output, however it ended.
///
/// # Panics
/// If `ip` cannot start or `args` is empty.
pub fn exec_in(ns: &str, args: &[&str]) -> Output {
    netns_command(ns, args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?} in {ns}: {e}"))
}

/// Starts `args` in namespace `ns`, its stdout and stderr piped.
///
/// # Panics
/// If `ip` cannot start or `args` is empty.
pub fn spawn_in(ns: &str, args: &[&str]) -> Child {
    netns_command(ns, args[0])
        .args(&args[1..])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {args:?} in {ns}: {e}"))
}
