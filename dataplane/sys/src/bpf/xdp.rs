//! XDP objects: program loading, the bpf_link that attaches a program to an interface, and
//! the XSKMAP that steers a queue's frames to an AF_XDP socket.
//!
//! Programs are attached with a bpf_link, which the kernel detaches when the last fd of the
//! link closes: a crashed process leaves no program behind (one attached through netlink
//! would survive it, and block the next attach).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use super::abi::{action, helper, xdp_md};
use super::{Insn, Map, MapType, ProgLoadError};
use crate::SyscallError;

/// Errors of loading and attaching programs.
#[derive(Debug, thiserror::Error)]
pub enum ProgError {
    /// A map could not be created or written.
    #[error(transparent)]
    Map(SyscallError),
    /// The verifier refused the program.
    #[error("the kernel refused the program: {0}")]
    Load(#[from] ProgLoadError),
    /// The program could not be attached in any mode.
    #[error("cannot attach a program to {ifname}: {error}")]
    Attach {
        /// The interface.
        ifname: String,
        /// The last attach error.
        #[source]
        error: SyscallError,
    },
    /// The program of a live link could not be replaced (the interface went away).
    #[error("cannot replace the program of a link: {0}")]
    Replace(#[source] SyscallError),
}

/// The plain AF_XDP program: every frame of queue `q` to the socket in slot `q` of
/// `xskmap`, or to the stack when the slot is empty.
///
/// ```text
/// r2 = *(u32 *)(r1 + 16)      ; ctx->rx_queue_index
/// r1 = xskmap ll              ; the XSKMAP
/// r3 = XDP_PASS               ; flags: the action when the slot is empty
/// call bpf_redirect_map
/// exit
/// ```
pub fn redirect_to_xsk(xskmap: BorrowedFd<'_>) -> Vec<Insn> {
    use super::asm::*;
    let map = load_map_fd(1, xskmap.as_raw_fd());
    vec![
        load(Size::W, 2, 1, xdp_md::RX_QUEUE_INDEX),
        map[0],
        map[1],
        mov_imm(3, action::XDP_PASS),
        call(helper::REDIRECT_MAP),
        exit(),
    ]
}

/// Loads an XDP program.
///
/// # Errors
/// The verifier refuses it (the error carries its log) or CAP_BPF is missing.
pub fn load_xdp(insns: &[Insn], name: &str) -> Result<OwnedFd, ProgError> {
    Ok(super::prog_load(super::PROG_TYPE_XDP, insns, name, 0)?)
}

/// An XSKMAP: queue index → AF_XDP socket.
#[derive(Debug)]
pub struct XskMap(Map);

impl XskMap {
    /// A map for `queues` queues.
    ///
    /// # Errors
    /// `BPF_MAP_CREATE` fails.
    pub fn new(queues: u32, name: &str) -> Result<XskMap, SyscallError> {
        Map::create(MapType::Xskmap, 4, 4, queues.max(1), 0, name).map(XskMap)
    }

    /// Steers `queue` to `socket`.
    ///
    /// # Errors
    /// `BPF_MAP_UPDATE_ELEM` fails (queue out of range, socket not bound).
    pub fn set(&self, queue: u32, socket: BorrowedFd<'_>) -> Result<(), SyscallError> {
        let fd = socket.as_raw_fd() as u32;
        self.0.update(&queue.to_ne_bytes(), &fd.to_ne_bytes(), 0)
    }

    /// Stops steering `queue` to any socket (its frames go to the stack again).
    ///
    /// # Errors
    /// `BPF_MAP_DELETE_ELEM` fails.
    pub fn clear(&self, queue: u32) -> Result<(), SyscallError> {
        self.0.delete(&queue.to_ne_bytes()).map(drop)
    }

    /// The map's fd.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Where an XDP program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (native XDP): `drv`.
    Driver,
    /// On the skb path (generic XDP): `skb`.
    Generic,
}

impl XdpMode {
    fn flags(self) -> u32 {
        const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
        const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
        match self {
            XdpMode::Driver => XDP_FLAGS_DRV_MODE,
            XdpMode::Generic => XDP_FLAGS_SKB_MODE,
        }
    }

    /// `drv` or `skb`, as `ip link` says.
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Driver => "drv",
            XdpMode::Generic => "skb",
        }
    }
}

/// An XDP program attached to an interface by a bpf_link. Dropping it detaches the program.
#[derive(Debug)]
pub struct XdpLink {
    link: OwnedFd,
    mode: XdpMode,
}

impl XdpLink {
    /// Attaches `prog` to `ifindex`, in `mode` if given, else native first and generic if the
    /// driver has no native XDP.
    ///
    /// # Errors
    /// [`ProgError::Attach`] with the last error: EBUSY when another program is attached.
    pub fn attach(
        prog: BorrowedFd<'_>,
        ifindex: u32,
        ifname: &str,
        mode: Option<XdpMode>,
    ) -> Result<XdpLink, ProgError> {
        let modes: &[XdpMode] = match mode {
            Some(XdpMode::Driver) => &[XdpMode::Driver],
            Some(XdpMode::Generic) => &[XdpMode::Generic],
            None => &[XdpMode::Driver, XdpMode::Generic],
        };
        let mut last = None;
        for &mode in modes {
            match super::link_create_xdp(prog, ifindex, mode.flags()) {
                Ok(link) => return Ok(XdpLink { link, mode }),
                // Another program is there: trying another mode will not help.
                Err(e) if e.errno() == Some(libc::EBUSY) || e.errno() == Some(libc::EEXIST) => {
                    return Err(ProgError::Attach {
                        ifname: ifname.to_owned(),
                        error: e,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(ProgError::Attach {
            ifname: ifname.to_owned(),
            error: last.expect("at least one mode tried"),
        })
    }

    /// The mode the program runs in.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// Replaces the program atomically.
    ///
    /// # Errors
    /// `BPF_LINK_UPDATE` fails (the interface went away).
    pub fn replace(&self, prog: BorrowedFd<'_>) -> Result<(), SyscallError> {
        super::link_update(self.link.as_fd(), prog)
    }

    /// Pins the link at `path` (in bpffs): it stays attached after this process exits.
    ///
    /// # Errors
    /// `BPF_OBJ_PIN` fails.
    pub fn pin(&self, path: &Path) -> Result<(), SyscallError> {
        super::pin::obj_pin(self.link.as_fd(), path)
    }

    /// Takes over the XDP link pinned at `path`, which must be attached to `ifindex` in
    /// `mode` (the kernel does not say the mode; the pinner records it). The pin stays; the
    /// caller removes it.
    ///
    /// # Errors
    /// Nothing pinned there, or a link of another interface.
    pub fn adopt(path: &Path, ifindex: u32, mode: XdpMode) -> Result<XdpLink, SyscallError> {
        let link = super::pin::obj_get(path)?;
        match super::pin::link_target(link.as_fd())? {
            (index, _) if index == ifindex => Ok(XdpLink { link, mode }),
            _ => Err(SyscallError {
                call: "adopt XDP link",
                io_error: std::io::Error::from(std::io::ErrorKind::NotFound),
            }),
        }
    }
}
