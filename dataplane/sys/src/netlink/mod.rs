//! Netlink, the one client of the workspace: a channel sends a request and
//! collects its replies, and two dialects speak through it:
//!
//! - [`route`]: rtnetlink (links, veth pairs, addresses, routes), typed messages from
//!   `netlink-packet-route`, in this or another network namespace;
//! - [`generic`]: generic netlink, hand-encoded attributes, for the families xvs asks
//!   (`netdev`: a device's XDP features; `ethtool`: GRO on or off).
//!
//! The socket is `netlink-sys`'s, a safe API: this module has no `unsafe` of its own.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use nix::sched::CloneFlags;

mod channel;
pub mod generic;
pub mod monitor;
pub mod route;

pub use generic::Generic;
pub use monitor::{LinkChange, LinkMonitor};
pub use route::{Link, Rtnetlink, VethPair};

/// Why a netlink request failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The kernel refused, or the socket failed; `op` names the request.
    #[error("netlink {op}: {source}")]
    Os {
        /// The request, e.g. `"add veth"`.
        op: &'static str,
        /// The kernel's errno.
        #[source]
        source: io::Error,
    },
    /// The kernel's answer could not be decoded.
    #[error("netlink {op}: undecodable reply: {detail}")]
    Decode {
        /// The request.
        op: &'static str,
        /// What the decoder said.
        detail: String,
    },
    /// `setns(2)` into the namespace failed.
    #[error("entering the network namespace: {0}")]
    Setns(#[source] io::Error),
}

impl NetlinkError {
    /// The kernel's errno, if it said one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// Whether the kernel said the object does not exist (ENODEV, ENOENT, ESRCH).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ENODEV | libc::ENOENT | libc::ESRCH)
        )
    }

    /// Whether the kernel said the object exists already (EEXIST).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }
}

/// Runs `f` on a short-lived thread that entered the network namespace `netns` (an open
/// `/run/netns/NAME`, `/proc/PID/ns/net`, ...); the calling thread's namespace does not
/// change. A socket opened there stays bound to that namespace.
///
/// # Errors
/// [`NetlinkError::Setns`] when the file is not a network namespace or we may not enter it,
/// or what `f` returns.
pub fn in_netns<T: Send>(
    netns: &File,
    f: impl FnOnce() -> Result<T, NetlinkError> + Send,
) -> Result<T, NetlinkError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::setns(netns.as_fd(), CloneFlags::CLONE_NEWNET)
                    .map_err(|e| NetlinkError::Setns(io::Error::from(e)))?;
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
