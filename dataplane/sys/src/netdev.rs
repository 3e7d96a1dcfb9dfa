//! Network interfaces: names, indexes, and the ethtool queries xvs needs.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::{SyscallError, cvt};

const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
const ETHTOOL_GCHANNELS: u32 = 0x0000_003c;

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct Channels {
    cmd: u32,
    /// Maximum RX-only channels.
    pub max_rx: u32,
    /// Maximum TX-only channels.
    pub max_tx: u32,
    /// Maximum other channels.
    pub max_other: u32,
    /// Maximum combined channels.
    pub max_combined: u32,
    /// Current RX-only channels.
    pub rx_count: u32,
    /// Current TX-only channels.
    pub tx_count: u32,
    /// Current other channels.
    pub other_count: u32,
    /// Current combined channels.
    pub combined_count: u32,
}

/// `struct ethtool_drvinfo`.
#[repr(C)]
#[derive(Clone, Copy)]
struct DrvInfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// `struct ifreq` with the `ifr_data` member of the union.
#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

fn c_name(name: &str, call: &'static str) -> Result<CString, SyscallError> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(SyscallError {
            call,
            io_error: std::io::Error::from_raw_os_error(libc::EINVAL),
        });
    }
    CString::new(name).map_err(|_| SyscallError {
        call,
        io_error: std::io::Error::from_raw_os_error(libc::EINVAL),
    })
}

/// The index of interface `name`.
///
/// # Errors
/// ENODEV when there is no such interface; EINVAL for a name that cannot be one.
pub fn if_nametoindex(name: &str) -> Result<u32, SyscallError> {
    let c = c_name(name, "if_nametoindex")?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        Err(SyscallError::last("if_nametoindex"))
    } else {
        Ok(index)
    }
}

/// The name of interface `index`, if it exists.
pub fn if_indextoname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes, as if_indextoname requires.
    let ret = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if ret.is_null() {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

fn ethtool<T>(name: &str, cmd: &mut T, call: &'static str) -> Result<(), SyscallError> {
    let c = c_name(name, call)?;
    // SAFETY: socket() has no memory preconditions; we check the result.
    let raw = cvt(
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) },
        "socket(AF_INET)",
    )?;
    // SAFETY: `raw` is a fresh fd nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut ifr = IfreqData {
        name: [0; libc::IFNAMSIZ],
        data: (cmd as *mut T).cast(),
        _pad: [0; 16],
    };
    for (dst, src) in ifr.name.iter_mut().zip(c.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCETHTOOL reads the ifreq and the command struct it points to, which is a
    // valid, writable T of the layout the command expects; both outlive the call.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) };
    cvt(ret, call).map(drop)
}

/// The interface's channel (queue) counts.
///
/// # Errors
/// The driver does not implement the query (EOPNOTSUPP) or the interface is gone.
pub fn channels(name: &str) -> Result<Channels, SyscallError> {
    let mut ch = Channels {
        cmd: ETHTOOL_GCHANNELS,
        ..Channels::default()
    };
    ethtool(name, &mut ch, "ioctl(ETHTOOL_GCHANNELS)")?;
    Ok(ch)
}

/// The interface's driver name (`veth`, `mlx5_core`, ...).
///
/// # Errors
/// The interface is gone.
pub fn driver(name: &str) -> Result<String, SyscallError> {
    let mut info = DrvInfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    ethtool(name, &mut info, "ioctl(ETHTOOL_GDRVINFO)")?;
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}
