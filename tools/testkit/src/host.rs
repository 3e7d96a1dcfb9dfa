//! What the host offers: our user id, the programs on the PATH, its sysctls.

use std::process::Command;

/// Whether this process runs as root (effective user id 0, as `/proc/self/status` says).
pub use xvs_sys::procfs::is_root;

use crate::{Error, check};

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
