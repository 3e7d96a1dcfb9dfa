//! What can go wrong in the switch.

use xvs_sys::bpf::ProgError;
use xvs_sys::netlink::NetlinkError;
use xvs_sys::{SyscallError, procfs};

use crate::counters::MAX_PORTS;

/// What can go wrong in the switch.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// No interface of that name.
    #[error("no such interface: {0}")]
    NoSuchInterface(String),
    /// The interface is a port already.
    #[error("{0} is already a port")]
    PortExists(String),
    /// No port of that name.
    #[error("no such port: {0}")]
    NoSuchPort(String),
    /// Every port number is taken.
    #[error("too many ports (at most {})", MAX_PORTS - 1)]
    TooManyPorts,
    /// A bad argument.
    #[error("{0}")]
    Invalid(String),
    /// The upcall device could not be made.
    #[error("cannot make the upcall device {name}: {source}")]
    Upcall {
        /// Its name.
        name: String,
        /// The netlink error.
        #[source]
        source: NetlinkError,
    },
    /// A netlink request about a device failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// The UMEM could not be mapped or registered.
    #[error(
        "cannot set up a UMEM of {frames} frames ({mib} MiB): {source}; locked memory is limited \
         to {memlock} (RLIMIT_MEMLOCK) without CAP_IPC_LOCK: use fewer --umem-frames"
    )]
    Umem {
        /// Frames asked for.
        frames: u32,
        /// Size in MiB.
        mib: u32,
        /// The current RLIMIT_MEMLOCK, readable.
        memlock: String,
        /// The failing call.
        #[source]
        source: SyscallError,
    },
    /// An AF_XDP socket could not be set up.
    #[error("AF_XDP socket on {ifname} queue {queue}: {source}")]
    Socket {
        /// The interface.
        ifname: String,
        /// The queue.
        queue: u32,
        /// The failing call.
        #[source]
        source: SyscallError,
    },
    /// The XDP program could not be loaded or attached.
    #[error(transparent)]
    Prog(#[from] ProgError),
    /// Another failing call.
    #[error(transparent)]
    Syscall(#[from] SyscallError),
    /// A worker did not answer.
    #[error("worker {0} did not answer")]
    WorkerGone(usize),
}

/// RLIMIT_MEMLOCK, readable.
pub(crate) fn memlock_limit() -> String {
    match procfs::memlock_limit() {
        Some(u64::MAX) => "unlimited".to_owned(),
        Some(bytes) => format!("{} MiB", bytes >> 20),
        None => "unknown".to_owned(),
    }
}
