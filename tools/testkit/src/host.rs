//! What the host offers: our user id, the programs on the PATH, its sysctls.

use std::process::Command;

use crate::{Error, check};

/// Whether this process runs as root (effective user id 0, as `/proc/self/status` says).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"))
    })
}

/// Whether a program of this name is on the PATH.
pub fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// Sets a sysctl of the host's namespace (`sysctl -qw net.ipv6.conf.all.disable_ipv6=1`).
///
/// # Errors
/// sysctl fails (no such key, not root).
pub fn sysctl(setting: &str) -> Result<(), Error> {
    check(
        Command::new("sysctl")
            .args(["-qw", setting])
            .env("LC_ALL", "C"),
    )
    .map(drop)
}
