//! The one room of xvs where `unsafe` lives: every syscall, every `mmap`, every raw pointer.
//!
//! Each submodule wraps one kind of kernel object behind a safe interface whose invariants are
//! kept here, so that the rest of the workspace is safe Rust:
//! - `mmap`: anonymous and socket-backed memory mappings,
//! - [`frame`]: the UMEM area and [`frame::Frame`], the owned token for one of its chunks,
//! - [`ring`]: the four AF_XDP rings shared with the kernel, typed by what they carry,
//! - [`xsk`]: AF_XDP socket options, bind, kicks and statistics,
//! - [`if_xdp`]: the AF_XDP ABI of `<linux/if_xdp.h>`, which `ring` and `xsk` share,
//! - [`bpf`]: the `bpf()` syscall (maps, program load, links, test runs), the one eBPF
//!   assembler ([`bpf::asm`]), the program ABI ([`bpf::abi`]) and XDP objects ([`bpf::xdp`]),
//! - [`netdev`]: interface names, indexes, ethtool queries (ioctl),
//! - [`netlink`]: the one netlink client (rtnetlink; generic netlink for XDP features and GRO),
//! - [`os`]: threads, CPU affinity, `poll`, `eventfd`,
//! - [`procfs`]: what `/proc` and sysfs say (capabilities, limits, MACs, queues, counters),
//! - [`stdio`]: stdout for the command-line tools, quiet when its reader goes (EPIPE).

pub mod bpf;
pub mod frame;
pub mod if_xdp;
pub(crate) mod mmap;
pub mod netdev;
pub mod netlink;
pub mod os;
pub mod procfs;
pub mod ring;
pub mod stdio;
pub mod xsk;

use std::io;

/// A failed system call: which call, and what the kernel said.
#[derive(Debug, thiserror::Error)]
#[error("{call} failed: {io_error}")]
pub struct SyscallError {
    /// The name of the call (or of the socket option / bpf command).
    pub call: &'static str,
    /// The error the kernel returned.
    #[source]
    pub io_error: io::Error,
}

impl SyscallError {
    /// The raw `errno` value, if there is one.
    pub fn errno(&self) -> Option<i32> {
        self.io_error.raw_os_error()
    }

    pub(crate) fn last(call: &'static str) -> Self {
        SyscallError {
            call,
            io_error: io::Error::last_os_error(),
        }
    }
}

/// Turns a libc-style return value into a `Result`, capturing `errno` on failure.
fn cvt(ret: libc::c_int, call: &'static str) -> Result<libc::c_int, SyscallError> {
    if ret < 0 {
        Err(SyscallError::last(call))
    } else {
        Ok(ret)
    }
}

fn cvt_long(ret: libc::c_long, call: &'static str) -> Result<libc::c_long, SyscallError> {
    if ret < 0 {
        Err(SyscallError::last(call))
    } else {
        Ok(ret)
    }
}
