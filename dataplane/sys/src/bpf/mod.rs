//! The `bpf()` syscall: maps, program loading, links and test runs.
//!
//! Every command goes through one private `bpf` function, as in aya; the `bpf_attr` variants are spelled out as
//! the prefixes of the kernel's union that we use (the kernel zero-extends shorter attrs).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::{SyscallError, cvt_long};

pub mod abi;
pub mod asm;
pub mod pin;
pub mod tc;
pub mod xdp;

pub use tc::{TcxLink, load_sched_cls};
pub use xdp::{ProgError, XdpLink, XdpMode, XskMap, load_xdp, redirect_to_xsk};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_LINK_UPDATE: libc::c_long = 29;

/// `BPF_PROG_TYPE_SCHED_CLS`: a tc classifier (tcx or cls_bpf).
pub const PROG_TYPE_SCHED_CLS: u32 = 3;
/// `BPF_PROG_TYPE_XDP`.
pub const PROG_TYPE_XDP: u32 = 6;
/// `BPF_XDP`, the attach type of XDP links.
pub const ATTACH_TYPE_XDP: u32 = 37;
/// `BPF_TCX_INGRESS`, the attach type of tcx links on a device's ingress (Linux 6.6+).
pub const ATTACH_TYPE_TCX_INGRESS: u32 = 46;

/// `BPF_F_TEST_XDP_LIVE_FRAMES`: test runs transmit or redirect for real.
pub const F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register in the low nibble, source register in the high nibble.
    pub regs: u8,
    /// Signed offset.
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkUpdateAttr {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

/// The one place the `bpf` syscall is made.
///
/// # Safety
/// `attr` must be the attr layout the kernel expects for `cmd`, and every pointer stored in it
/// must be valid for the accesses `cmd` makes (reads of inputs, writes of outputs) for the
/// duration of the call.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T, call: &'static str) -> Result<i64, SyscallError> {
    // SAFETY: forwarded to the caller: attr is a valid layout for cmd with valid pointers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut T).cast::<libc::c_void>(),
            size_of::<T>() as libc::c_uint,
        )
    };
    cvt_long(ret, call)
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    // The kernel accepts [A-Za-z0-9_.] and wants a terminating NUL within 16 bytes.
    for (dst, src) in out.iter_mut().zip(
        name.bytes()
            .filter(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .take(15),
    ) {
        *dst = src;
    }
    out
}

fn owned_fd(raw: i64) -> OwnedFd {
    // SAFETY: the kernel just returned this fd for a new object; nobody else owns it.
    unsafe { OwnedFd::from_raw_fd(raw as i32) }
}

/// The kinds of map xvs uses (`enum bpf_map_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MapType {
    /// `BPF_MAP_TYPE_HASH`.
    Hash = 1,
    /// `BPF_MAP_TYPE_ARRAY`.
    Array = 2,
    /// `BPF_MAP_TYPE_PERCPU_HASH`.
    PercpuHash = 5,
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`.
    PercpuArray = 6,
    /// `BPF_MAP_TYPE_DEVMAP`.
    Devmap = 14,
    /// `BPF_MAP_TYPE_XSKMAP`.
    Xskmap = 17,
    /// `BPF_MAP_TYPE_DEVMAP_HASH`.
    DevmapHash = 25,
}

impl MapType {
    fn is_percpu(self) -> bool {
        matches!(self, MapType::PercpuHash | MapType::PercpuArray)
    }
}

/// The number of CPUs the kernel sizes per-CPU map values for.
///
/// # Errors
/// `/sys/devices/system/cpu/possible` cannot be read or parsed.
pub fn possible_cpus() -> std::io::Result<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad cpu list");
    let mut count = 0;
    for range in text.trim().split(',') {
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        let lo: usize = lo.parse().map_err(|_| bad())?;
        let hi: usize = hi.parse().map_err(|_| bad())?;
        count = count.max(hi + 1).max(lo + 1);
    }
    Ok(count)
}

/// A BPF map, with the sizes it was created with so that every access is checked.
#[derive(Debug)]
pub struct Map {
    fd: OwnedFd,
    key_size: usize,
    /// Bytes of a value as user space reads and writes it (for per-CPU maps, one 8-aligned
    /// slot per possible CPU).
    value_len: usize,
    max_entries: u32,
}

impl Map {
    /// Creates a map.
    ///
    /// # Errors
    /// `BPF_MAP_CREATE` fails (bad sizes, or no CAP_BPF), or the CPU count is unknown.
    pub fn create(
        map_type: MapType,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
        name: &str,
    ) -> Result<Map, SyscallError> {
        let value_len = if map_type.is_percpu() {
            let cpus = possible_cpus().map_err(|io_error| SyscallError {
                call: "read(/sys/devices/system/cpu/possible)",
                io_error,
            })?;
            (value_size as usize).next_multiple_of(8) * cpus
        } else {
            value_size as usize
        };
        let mut attr = MapCreateAttr {
            map_type: map_type as u32,
            key_size,
            value_size,
            max_entries,
            map_flags,
            map_name: name16(name),
            ..MapCreateAttr::default()
        };
        // SAFETY: MapCreateAttr is the BPF_MAP_CREATE layout and carries no pointers.
        let fd = unsafe { bpf(BPF_MAP_CREATE, &mut attr, "bpf(BPF_MAP_CREATE)") }.map(owned_fd)?;
        Ok(Map {
            fd,
            key_size: key_size as usize,
            value_len,
            max_entries,
        })
    }

    /// The map's fd, for programs that reference it.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Bytes of a value buffer (for per-CPU maps, all CPUs' values).
    pub fn value_len(&self) -> usize {
        self.value_len
    }

    /// The capacity the map was created with.
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }

    fn elem_attr(&self, key: &[u8], value: u64, flags: u64) -> MapElemAttr {
        assert_eq!(key.len(), self.key_size, "map key of the wrong size");
        MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            value,
            flags,
            ..MapElemAttr::default()
        }
    }

    /// Writes `value` at `key` (`flags`: 0 any, 1 only new, 2 only existing).
    ///
    /// # Errors
    /// `BPF_MAP_UPDATE_ELEM` fails (E2BIG when the map is full).
    ///
    /// # Panics
    /// If the slices do not have the map's key and value sizes.
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), SyscallError> {
        assert_eq!(value.len(), self.value_len, "map value of the wrong size");
        let mut attr = self.elem_attr(key, value.as_ptr() as u64, flags);
        // SAFETY: the kernel reads key_size bytes of key and value_len bytes of value, the
        // lengths checked above.
        unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr, "bpf(BPF_MAP_UPDATE_ELEM)") }.map(drop)
    }

    /// Deletes `key`; returns whether it was present.
    ///
    /// # Errors
    /// `BPF_MAP_DELETE_ELEM` fails with anything but ENOENT.
    ///
    /// # Panics
    /// If the key does not have the map's key size.
    pub fn delete(&self, key: &[u8]) -> Result<bool, SyscallError> {
        let mut attr = self.elem_attr(key, 0, 0);
        // SAFETY: the kernel reads key_size bytes of key, checked above.
        match unsafe { bpf(BPF_MAP_DELETE_ELEM, &mut attr, "bpf(BPF_MAP_DELETE_ELEM)") } {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads the value at `key` into `value`; returns whether the key was present.
    ///
    /// # Errors
    /// `BPF_MAP_LOOKUP_ELEM` fails with anything but ENOENT.
    ///
    /// # Panics
    /// If the slices do not have the map's key and value sizes.
    pub fn lookup(&self, key: &[u8], value: &mut [u8]) -> Result<bool, SyscallError> {
        assert_eq!(value.len(), self.value_len, "map value of the wrong size");
        let mut attr = self.elem_attr(key, value.as_mut_ptr() as u64, 0);
        // SAFETY: the kernel reads key_size bytes of key and writes value_len bytes to value,
        // the lengths checked above.
        match unsafe { bpf(BPF_MAP_LOOKUP_ELEM, &mut attr, "bpf(BPF_MAP_LOOKUP_ELEM)") } {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes into `next` the key after `key` (the first key with `None`); returns false at
    /// the end of the map.
    ///
    /// # Errors
    /// `BPF_MAP_GET_NEXT_KEY` fails with anything but ENOENT.
    ///
    /// # Panics
    /// If the slices do not have the map's key size.
    pub fn next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<bool, SyscallError> {
        assert_eq!(next.len(), self.key_size, "map key of the wrong size");
        let mut attr = match key {
            Some(key) => self.elem_attr(key, next.as_mut_ptr() as u64, 0),
            None => MapElemAttr {
                map_fd: self.fd.as_raw_fd() as u32,
                value: next.as_mut_ptr() as u64,
                ..MapElemAttr::default()
            },
        };
        // SAFETY: the kernel reads key_size bytes of key (when not null) and writes key_size
        // bytes to next, the lengths checked above.
        match unsafe { bpf(BPF_MAP_GET_NEXT_KEY, &mut attr, "bpf(BPF_MAP_GET_NEXT_KEY)") } {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A program the verifier refused, with its log.
#[derive(Debug, thiserror::Error)]
#[error("{error}\nverifier log:\n{log}")]
pub struct ProgLoadError {
    /// The syscall error.
    #[source]
    pub error: SyscallError,
    /// What the verifier said.
    pub log: String,
}

/// Loads a program; on failure, loads it again with the verifier log on to say why.
///
/// # Errors
/// The verifier rejects the program, or the caller lacks CAP_BPF.
pub fn prog_load(
    prog_type: u32,
    insns: &[Insn],
    name: &str,
    expected_attach_type: u32,
) -> Result<OwnedFd, ProgLoadError> {
    let license = c"GPL";
    let load = |log: &mut [u8]| {
        let mut attr = ProgLoadAttr {
            prog_type,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: u32::from(!log.is_empty()),
            log_size: log.len() as u32,
            log_buf: if log.is_empty() {
                0
            } else {
                log.as_mut_ptr() as u64
            },
            prog_name: name16(name),
            expected_attach_type,
            ..ProgLoadAttr::default()
        };
        // SAFETY: insns points to insn_cnt instructions, license to a NUL-terminated string,
        // log_buf (if set) to log_size writable bytes; all outlive the call.
        unsafe { bpf(BPF_PROG_LOAD, &mut attr, "bpf(BPF_PROG_LOAD)") }.map(owned_fd)
    };
    load(&mut []).map_err(|error| {
        let mut log = vec![0u8; 1 << 20];
        let _ = load(&mut log);
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        ProgLoadError {
            error,
            log: String::from_utf8_lossy(&log[..end]).into_owned(),
        }
    })
}

/// Attaches an XDP program to an interface through a bpf_link, which detaches when its last fd
/// closes (so a crashed process leaves nothing attached).
///
/// # Errors
/// `BPF_LINK_CREATE` fails: EBUSY if another program is attached, EOPNOTSUPP if the mode is
/// not supported by the driver.
pub fn link_create_xdp(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    xdp_flags: u32,
) -> Result<OwnedFd, SyscallError> {
    link_create(prog, ifindex, ATTACH_TYPE_XDP, xdp_flags)
}

/// Attaches a program to interface `ifindex` at `attach_type` through a bpf_link. For tcx the
/// link is appended after the device's other tcx programs (the attr's tcx part is zero).
///
/// # Errors
/// `BPF_LINK_CREATE` fails (EINVAL for an attach type this kernel does not know).
pub fn link_create(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    attach_type: u32,
    flags: u32,
) -> Result<OwnedFd, SyscallError> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type,
        flags,
    };
    // SAFETY: LinkCreateAttr is the common BPF_LINK_CREATE prefix (the kernel zero-extends
    // the per-type part) and has no pointers.
    unsafe { bpf(BPF_LINK_CREATE, &mut attr, "bpf(BPF_LINK_CREATE)") }.map(owned_fd)
}

/// Replaces the program of a live link atomically.
///
/// # Errors
/// `BPF_LINK_UPDATE` fails (the link is gone, or the program has the wrong type).
pub fn link_update(link: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> Result<(), SyscallError> {
    let mut attr = LinkUpdateAttr {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: prog.as_raw_fd() as u32,
        ..LinkUpdateAttr::default()
    };
    // SAFETY: LinkUpdateAttr is the BPF_LINK_UPDATE layout and has no pointers.
    unsafe { bpf(BPF_LINK_UPDATE, &mut attr, "bpf(BPF_LINK_UPDATE)") }.map(drop)
}

/// Result of [`prog_test_run`].
#[derive(Debug, Clone, Copy)]
pub struct TestRun {
    /// The program's return value (of the last run).
    pub retval: u32,
    /// Mean nanoseconds per run, as the kernel measured.
    pub duration_ns: u32,
}

/// Runs an XDP program `repeat` times on `data`. With [`F_TEST_XDP_LIVE_FRAMES`] the frames it
/// returns XDP_TX or XDP_REDIRECT for are really sent, in batches of `batch_size`.
///
/// # Errors
/// `BPF_PROG_TEST_RUN` fails (EINVAL for a bad frame size or flags).
pub fn prog_test_run(
    prog: BorrowedFd<'_>,
    data: &[u8],
    ctx: &[u8],
    repeat: u32,
    flags: u32,
    batch_size: u32,
) -> Result<TestRun, SyscallError> {
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: data.len() as u32,
        data_in: data.as_ptr() as u64,
        repeat,
        ctx_size_in: ctx.len() as u32,
        ctx_in: if ctx.is_empty() {
            0
        } else {
            ctx.as_ptr() as u64
        },
        flags,
        batch_size,
        ..TestRunAttr::default()
    };
    // SAFETY: data_in/ctx_in point to data_size_in/ctx_size_in readable bytes that outlive the
    // call; no output buffers are given (sizes 0).
    unsafe { bpf(BPF_PROG_TEST_RUN, &mut attr, "bpf(BPF_PROG_TEST_RUN)") }?;
    Ok(TestRun {
        retval: attr.retval,
        duration_ns: attr.duration,
    })
}

/// Runs a program once on `data` and copies the packet as the program left it into `out`:
/// its return value and the packet's length. An XDP program sees `data` as a frame, a tc
/// program as an skb made of it (no VLAN tag held apart, no GSO).
///
/// # Errors
/// `BPF_PROG_TEST_RUN` fails: EINVAL for a bad frame size, ENOSPC when the packet left is
/// longer than `out`.
pub fn prog_test_run_output(
    prog: BorrowedFd<'_>,
    data: &[u8],
    out: &mut [u8],
) -> Result<(u32, usize), SyscallError> {
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: data.len() as u32,
        data_in: data.as_ptr() as u64,
        data_size_out: out.len() as u32,
        data_out: out.as_mut_ptr() as u64,
        repeat: 1,
        ..TestRunAttr::default()
    };
    // SAFETY: data_in points to data_size_in readable bytes and data_out to data_size_out
    // writable bytes, which the kernel writes at most; both outlive the call.
    unsafe { bpf(BPF_PROG_TEST_RUN, &mut attr, "bpf(BPF_PROG_TEST_RUN)") }?;
    Ok((attr.retval, (attr.data_size_out as usize).min(out.len())))
}
