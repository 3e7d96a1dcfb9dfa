//! What can go wrong, in words a user acts on.

use xvs_sys::SyscallError;
use xvs_sys::bpf::ProgError;

/// An error of xvs-pktgen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The interface does not exist (in this network namespace).
    #[error("no such device: {0}")]
    NoSuchDevice(String),
    /// The process lacks the capabilities to load XDP programs or open AF_XDP sockets.
    #[error(
        "xvs-pktgen must run as root: it needs CAP_BPF (or CAP_SYS_ADMIN) and CAP_NET_ADMIN to \
         load XDP programs and open AF_XDP sockets"
    )]
    NotRoot,
    /// Another XDP program holds the interface.
    #[error(
        "XDP attach to {dev} refused: another XDP program is attached there (remove it with \
         `ip link set dev {dev} xdp off`, or stop whoever attached it)"
    )]
    XdpBusy {
        /// The interface.
        dev: String,
    },
    /// The kernel refused to attach our program for another reason.
    #[error("XDP attach to {dev} refused: {source}")]
    XdpAttach {
        /// The interface.
        dev: String,
        /// What the kernel said.
        #[source]
        source: SyscallError,
    },
    /// The kernel refused to attach our program at the interface's tcx ingress.
    #[error("tcx ingress attach to {dev} refused (tcx needs Linux 6.6): {source}")]
    TcxAttach {
        /// The interface.
        dev: String,
        /// What the kernel said.
        #[source]
        source: SyscallError,
    },
    /// The arguments do not make a run (a size too small for the headers, say).
    #[error("{0}")]
    Config(String),
    /// The verifier refused a generated program (a bug of xvs-pktgen).
    #[error("xvs-pktgen generated a BPF program the kernel does not take (a bug): {0}")]
    Program(#[source] ProgError),
    /// The interface went away or down while sending.
    #[error("{0} is down, or went away")]
    DeviceDown(String),
    /// Live frames (`BPF_F_TEST_XDP_LIVE_FRAMES`, Linux 5.18) is not available.
    #[error("XDP live frames is not supported here ({0})")]
    LiveFramesUnsupported(#[source] SyscallError),
    /// A socket call failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: &'static str,
        /// What the call said.
        #[source]
        source: std::io::Error,
    },
    /// Any other failing system call.
    #[error("{what}: {source}")]
    Sys {
        /// What we were doing.
        what: &'static str,
        /// The call that failed.
        #[source]
        source: SyscallError,
    },
}

impl Error {
    /// A failing call made while doing `what`; EPERM means we are not privileged enough.
    pub(crate) fn sys(what: &'static str) -> impl FnOnce(SyscallError) -> Error {
        move |source| {
            if is_permission(&source) {
                Error::NotRoot
            } else {
                Error::Sys { what, source }
            }
        }
    }

    /// A failed load or attach of one of our programs on `dev`.
    pub(crate) fn program(dev: &str) -> impl FnOnce(ProgError) -> Error + '_ {
        move |e| match e {
            ProgError::Attach { error, .. }
                if matches!(error.errno(), Some(libc::EBUSY | libc::EEXIST)) =>
            {
                Error::XdpBusy {
                    dev: dev.to_owned(),
                }
            }
            ProgError::Attach { error, .. } if is_permission(&error) => Error::NotRoot,
            ProgError::Attach { error, .. } => Error::XdpAttach {
                dev: dev.to_owned(),
                source: error,
            },
            other => Error::load(other),
        }
    }

    /// A failed load or tcx attach of one of our tc programs on `dev`. tcx takes many
    /// programs on one device, so there is no "busy" to tell apart.
    pub(crate) fn tc_program(dev: &str) -> impl FnOnce(ProgError) -> Error + '_ {
        move |e| match e {
            ProgError::Attach { error, .. } if is_permission(&error) => Error::NotRoot,
            ProgError::Attach { error, .. } => Error::TcxAttach {
                dev: dev.to_owned(),
                source: error,
            },
            other => Error::load(other),
        }
    }

    /// A program that did not load (or whose map could not be made).
    fn load(e: ProgError) -> Error {
        match e {
            ProgError::Map(e) => Error::sys("creating a BPF map")(e),
            ProgError::Load(e) if is_permission(&e.error) => Error::NotRoot,
            other => Error::Program(other),
        }
    }
}

/// EPERM: the kernel wants privileges we lack. (EACCES is not it: the verifier uses it for
/// programs it refuses.)
fn is_permission(e: &SyscallError) -> bool {
    e.errno() == Some(libc::EPERM)
}
