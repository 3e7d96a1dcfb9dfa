//! AF_XDP sockets: UMEM registration, ring setup, bind, kicks and statistics.
//!
//! The layouts are those of `<linux/if_xdp.h>`, in [`crate::if_xdp`].

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Weak};

use super::frame::{Frame, UmemArea};
pub use super::if_xdp::XdpStatistics;
use super::if_xdp::*;
use super::ring::{CompletionRing, FillRing, RingLayout, RxRing, TxRing};
use super::{SyscallError, cvt};

/// How a socket attaches to its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// The first socket of a UMEM, in copy mode.
    Copy,
    /// The first socket of a UMEM, in zero-copy mode (fails where the driver cannot).
    ZeroCopy,
}

/// Sizes of the four rings of one socket (each a power of two).
#[derive(Debug, Clone, Copy)]
pub struct RingSizes {
    /// RX and TX ring slots.
    pub rx_tx: u32,
    /// Fill and completion ring slots.
    pub fill_comp: u32,
}

/// The control side of an AF_XDP socket: the fd, kept by whoever binds and tears down sockets.
///
/// The rings live in [`XskRings`], owned by the worker that moves the socket's packets. Both
/// hold the fd; [`XskSocket::close`] takes both back, releases the socket in the kernel and
/// reclaims every chunk the socket still held.
#[derive(Debug)]
pub struct XskSocket {
    fd: Arc<OwnedFd>,
    umem: Arc<UmemArea>,
    tag: u16,
}

/// The data side of an AF_XDP socket: its four rings and the fd to kick it.
#[derive(Debug)]
pub struct XskRings {
    /// Chunks lent to the kernel for RX.
    pub fill: FillRing,
    /// Chunks the kernel finished sending.
    pub completion: CompletionRing,
    /// Received packets.
    pub rx: RxRing,
    /// Packets to send.
    pub tx: TxRing,
    fd: Arc<OwnedFd>,
}

fn setsockopt<T>(
    fd: BorrowedFd<'_>,
    name: libc::c_int,
    value: &T,
    call: &'static str,
) -> Result<(), SyscallError> {
    // SAFETY: `value` points to a live T of the given size; the kernel only reads it.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            SOL_XDP,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    cvt(ret, call).map(drop)
}

fn getsockopt<T: Default>(
    fd: BorrowedFd<'_>,
    name: libc::c_int,
    call: &'static str,
) -> Result<T, SyscallError> {
    let mut value = T::default();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a live, writable T and `len` says its size; the kernel writes at most
    // `len` bytes and T is plain old data for which any bytes are valid.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            SOL_XDP,
            name,
            (&mut value as *mut T).cast(),
            &mut len,
        )
    };
    cvt(ret, call).map(|_| value)
}

impl XskSocket {
    /// Creates an AF_XDP socket on `ifindex`/`queue` using `umem`, with its own fill and
    /// completion rings, and binds it.
    ///
    /// With `share_with` set, the socket shares the UMEM already registered by that bound
    /// socket (`XDP_SHARED_UMEM`, no mode flags: the mode is the UMEM's). Otherwise the UMEM is
    /// registered on this socket and bound in `mode`. `tag` identifies the socket's chunks in
    /// the UMEM's owner tags and must be unique among live sockets of `umem` and not 0.
    ///
    /// # Errors
    /// Any failing step, named: `setsockopt(XDP_UMEM_REG)` fails with ENOMEM or EPERM when the
    /// UMEM exceeds RLIMIT_MEMLOCK, `bind` with EOPNOTSUPP for zero-copy on a driver without
    /// it, with EBUSY while another socket owns the queue.
    pub fn open(
        umem: &Arc<UmemArea>,
        tag: u16,
        ifindex: u32,
        queue: u32,
        sizes: RingSizes,
        mode: BindMode,
        share_with: Option<BorrowedFd<'_>>,
    ) -> Result<(XskSocket, XskRings), SyscallError> {
        assert_ne!(tag, super::frame::USER_TAG);
        // SAFETY: socket() has no memory preconditions; we check the result.
        let raw = cvt(
            unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) },
            "socket(AF_XDP)",
        )?;
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let borrowed = fd.as_fd();

        if share_with.is_none() {
            let reg = UmemReg {
                addr: umem.base() as u64,
                len: umem.len() as u64,
                chunk_size: umem.frame_size(),
                headroom: 0,
                flags: 0,
                tx_metadata_len: 0,
            };
            setsockopt(borrowed, XDP_UMEM_REG, &reg, "setsockopt(XDP_UMEM_REG)")?;
        }
        let fill_size = sizes.fill_comp;
        setsockopt(
            borrowed,
            XDP_UMEM_FILL_RING,
            &fill_size,
            "setsockopt(XDP_UMEM_FILL_RING)",
        )?;
        setsockopt(
            borrowed,
            XDP_UMEM_COMPLETION_RING,
            &fill_size,
            "setsockopt(XDP_UMEM_COMPLETION_RING)",
        )?;
        let ring_size = sizes.rx_tx;
        setsockopt(borrowed, XDP_RX_RING, &ring_size, "setsockopt(XDP_RX_RING)")?;
        setsockopt(borrowed, XDP_TX_RING, &ring_size, "setsockopt(XDP_TX_RING)")?;
        let offsets: MmapOffsets =
            getsockopt(borrowed, XDP_MMAP_OFFSETS, "getsockopt(XDP_MMAP_OFFSETS)")?;

        let layout = |offset, pgoff, size| RingLayout {
            fd: borrowed,
            offset,
            pgoff,
            size,
        };
        let fill = FillRing::map(
            layout(&offsets.fill, XDP_UMEM_PGOFF_FILL_RING, fill_size),
            umem.clone(),
            tag,
        )?;
        let completion = CompletionRing::map(
            layout(
                &offsets.completion,
                XDP_UMEM_PGOFF_COMPLETION_RING,
                fill_size,
            ),
            umem.clone(),
        )?;
        let rx = RxRing::map(
            layout(&offsets.rx, XDP_PGOFF_RX_RING, ring_size),
            umem.clone(),
        )?;
        let tx = TxRing::map(
            layout(&offsets.tx, XDP_PGOFF_TX_RING, ring_size),
            umem.clone(),
            tag,
        )?;

        let mut addr = SockaddrXdp {
            family: AF_XDP as u16,
            ifindex,
            queue_id: queue,
            ..SockaddrXdp::default()
        };
        match share_with {
            Some(owner) => {
                addr.flags = XDP_SHARED_UMEM;
                addr.shared_umem_fd = owner.as_raw_fd() as u32;
            }
            None => {
                addr.flags = XDP_USE_NEED_WAKEUP
                    | match mode {
                        BindMode::Copy => XDP_COPY,
                        BindMode::ZeroCopy => XDP_ZEROCOPY,
                    };
            }
        }
        // SAFETY: `addr` is a valid sockaddr_xdp of the size we pass; the kernel only reads it.
        let ret = unsafe {
            libc::bind(
                borrowed.as_raw_fd(),
                (&addr as *const SockaddrXdp).cast(),
                size_of::<SockaddrXdp>() as libc::socklen_t,
            )
        };
        // On failure the rings are unmapped and the fd closed as the locals drop: nothing was
        // lent to the kernel yet, so no chunk needs reclaiming.
        cvt(ret, "bind(AF_XDP)")?;

        let fd = Arc::new(fd);
        Ok((
            XskSocket {
                fd: fd.clone(),
                umem: umem.clone(),
                tag,
            },
            XskRings {
                fill,
                completion,
                rx,
                tx,
                fd,
            },
        ))
    }

    /// The tag of this socket's chunks.
    pub fn tag(&self) -> u16 {
        self.tag
    }

    /// The socket's fd, to insert into an XSKMAP.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// A handle for whoever steers, watches or shares this socket without owning it.
    pub fn handle(&self) -> XskHandle {
        XskHandle(Arc::downgrade(&self.fd))
    }

    /// Whether the kernel runs this socket in zero-copy mode.
    ///
    /// # Errors
    /// `getsockopt(XDP_OPTIONS)` fails.
    pub fn is_zero_copy(&self) -> Result<bool, SyscallError> {
        let flags: u32 = getsockopt(self.fd.as_fd(), XDP_OPTIONS, "getsockopt(XDP_OPTIONS)")?;
        Ok(flags & XDP_OPTIONS_ZEROCOPY != 0)
    }

    /// The kernel's drop counters for this socket.
    ///
    /// # Errors
    /// `getsockopt(XDP_STATISTICS)` fails.
    pub fn statistics(&self) -> Result<XdpStatistics, SyscallError> {
        getsockopt(
            self.fd.as_fd(),
            XDP_STATISTICS,
            "getsockopt(XDP_STATISTICS)",
        )
    }

    /// A pending socket error (`SO_ERROR`), such as ENETDOWN once the device went away.
    pub fn take_error(&self) -> Option<std::io::Error> {
        let mut err: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `err` is a live c_int and `len` its size.
        let ret = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (ret == 0 && err != 0).then(|| std::io::Error::from_raw_os_error(err))
    }

    /// Releases the socket and returns every chunk it still held: in its fill ring, its RX
    /// ring, its TX ring, and in flight.
    ///
    /// The rings are unmapped first (a mapping keeps the socket alive), then the fd is closed,
    /// which makes the kernel remove the socket from its XSKMAPs, unbind it and wait for its
    /// drivers to stop using it; only then are the chunks tagged with this socket reclaimed.
    ///
    /// # Panics
    /// If `rings` belong to another socket.
    pub fn close(self, rings: XskRings) -> Vec<Frame> {
        assert!(Arc::ptr_eq(&self.fd, &rings.fd), "rings of another socket");
        let XskRings {
            fill,
            completion,
            rx,
            tx,
            fd,
        } = rings;
        drop((fill, completion, rx, tx, fd));
        // Only two handles to the fd exist, one in each half; both are here.
        let fd = Arc::try_unwrap(self.fd).expect("the fd has exactly two owners");
        drop(fd);
        self.umem.reclaim(self.tag)
    }
}

/// A handle on a socket owned elsewhere: its fd for statistics and for sharing its UMEM,
/// without keeping the socket alive, so that [`XskSocket::close`] stays its owner's call.
#[derive(Debug, Clone)]
pub struct XskHandle(Weak<OwnedFd>);

impl XskHandle {
    /// Runs `f` with the socket's fd, if the socket is still open.
    pub fn with_fd<R>(&self, f: impl FnOnce(BorrowedFd<'_>) -> R) -> Option<R> {
        self.0.upgrade().map(|fd| f(fd.as_fd()))
    }

    /// The kernel's drop counters for the socket.
    ///
    /// # Errors
    /// `getsockopt(XDP_STATISTICS)` fails, or EBADF once the socket is closed.
    pub fn statistics(&self) -> Result<XdpStatistics, SyscallError> {
        self.with_fd(|fd| getsockopt(fd, XDP_STATISTICS, "getsockopt(XDP_STATISTICS)"))
            .unwrap_or_else(|| {
                Err(SyscallError {
                    call: "getsockopt(XDP_STATISTICS)",
                    io_error: std::io::Error::from_raw_os_error(libc::EBADF),
                })
            })
    }
}

/// Why a kick did not go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickError {
    /// The kernel made partial progress or is busy: kick again later.
    Again,
    /// The device went away or the socket is unbound.
    Down(i32),
    /// Any other error (counted, not fatal).
    Other(i32),
}

impl XskRings {
    /// The fd, to wait on with `poll`.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether these are the rings of `socket`.
    pub fn is_of(&self, socket: &XskSocket) -> bool {
        Arc::ptr_eq(&self.fd, &socket.fd)
    }

    /// Asks the kernel to process the TX ring (`sendto` with no data). In copy mode the kernel
    /// sends at most 32 descriptors per call and answers EAGAIN when more remain.
    ///
    /// # Errors
    /// See [`KickError`].
    pub fn kick_tx(&self) -> Result<(), KickError> {
        // SAFETY: a zero-length sendto with null buffers and address is the AF_XDP kick; it reads
        // no user memory.
        let ret = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if ret >= 0 {
            return Ok(());
        }
        let errno = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        Err(match errno {
            libc::EAGAIN | libc::EBUSY | libc::ENOBUFS => KickError::Again,
            libc::ENETDOWN | libc::ENXIO | libc::ENODEV => KickError::Down(errno),
            other => KickError::Other(other),
        })
    }

    /// Asks the kernel to look at the fill ring (needed in zero-copy mode when it set the
    /// need-wakeup flag).
    pub fn kick_rx(&self) {
        // SAFETY: a zero-length non-blocking recvfrom with null buffers is the AF_XDP RX wakeup;
        // it writes no user memory.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
        }
    }
}

/// Whether this kernel lets us create AF_XDP sockets (compiled in, and we have the rights).
pub fn af_xdp_available() -> bool {
    // SAFETY: socket() has no memory preconditions; the fd is closed at once.
    let raw = unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return false;
    }
    // SAFETY: `raw` is a fresh fd nobody else owns.
    drop(unsafe { OwnedFd::from_raw_fd(raw) });
    true
}
