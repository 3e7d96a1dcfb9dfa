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

/// `NETDEV_XDP_ACT_NDO_XMIT`: the device accepts XDP frames redirected to it.
pub const XDP_ACT_NDO_XMIT: u64 = 1 << 2;

/// A minimal generic netlink exchange: one request, one reply.
fn genl_request(family: u16, cmd: u8, attrs: &[(u16, &[u8])]) -> Result<Vec<u8>, SyscallError> {
    const NETLINK_GENERIC: libc::c_int = 16;
    const NLM_F_REQUEST: u16 = 1;
    const NLMSG_ERROR: u16 = 2;
    let mut msg = vec![0u8; 16 + 4];
    msg[16] = cmd;
    msg[17] = 1; // version
    for (kind, payload) in attrs {
        let len = 4 + payload.len();
        msg.extend_from_slice(&(len as u16).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(payload);
        msg.resize(msg.len().next_multiple_of(4), 0);
    }
    let total = msg.len() as u32;
    msg[0..4].copy_from_slice(&total.to_ne_bytes());
    msg[4..6].copy_from_slice(&family.to_ne_bytes());
    msg[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    msg[8..12].copy_from_slice(&1u32.to_ne_bytes());
    // SAFETY: socket() has no memory preconditions; we check the result.
    let raw = cvt(
        unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_GENERIC,
            )
        },
        "socket(NETLINK_GENERIC)",
    )?;
    // SAFETY: a fresh fd nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: msg is a readable buffer of msg.len() bytes.
    let sent = unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if sent < 0 {
        return Err(SyscallError::last("send(netlink)"));
    }
    let mut reply = vec![0u8; 16384];
    // SAFETY: reply is a writable buffer of reply.len() bytes.
    let n = unsafe { libc::recv(sock.as_raw_fd(), reply.as_mut_ptr().cast(), reply.len(), 0) };
    if n < 0 {
        return Err(SyscallError::last("recv(netlink)"));
    }
    reply.truncate(n as usize);
    if reply.len() < 20 {
        return Err(SyscallError {
            call: "recv(netlink)",
            io_error: std::io::Error::from_raw_os_error(libc::EIO),
        });
    }
    let kind = u16::from_ne_bytes([reply[4], reply[5]]);
    if kind == NLMSG_ERROR {
        let errno = -i32::from_ne_bytes(reply[16..20].try_into().expect("4 bytes"));
        return Err(SyscallError {
            call: "genetlink",
            io_error: std::io::Error::from_raw_os_error(errno),
        });
    }
    Ok(reply)
}

/// The attribute `kind` of a generic netlink reply.
fn genl_attr(reply: &[u8], kind: u16) -> Option<&[u8]> {
    let len = (u32::from_ne_bytes(reply.get(0..4)?.try_into().ok()?) as usize).min(reply.len());
    let mut at = 20;
    while at + 4 <= len {
        let alen = usize::from(u16::from_ne_bytes([reply[at], reply[at + 1]]));
        let akind = u16::from_ne_bytes([reply[at + 2], reply[at + 3]]) & 0x3fff;
        if alen < 4 || at + alen > len {
            return None;
        }
        if akind == kind {
            return Some(&reply[at + 4..at + alen]);
        }
        at += alen.next_multiple_of(4);
    }
    None
}

/// The XDP features of interface `ifindex` (`NETDEV_A_DEV_XDP_FEATURES` of the `netdev`
/// generic netlink family), e.g. whether it accepts redirected frames. For a veth this says
/// whether its peer can take them (it has an XDP program or GRO).
///
/// # Errors
/// The kernel has no `netdev` family (before 6.3), or the interface is gone.
pub fn xdp_features(ifindex: u32) -> Result<u64, SyscallError> {
    const GENL_ID_CTRL: u16 = 0x10;
    const CTRL_CMD_GETFAMILY: u8 = 3;
    const CTRL_ATTR_FAMILY_ID: u16 = 1;
    const CTRL_ATTR_FAMILY_NAME: u16 = 2;
    const NETDEV_CMD_DEV_GET: u8 = 1;
    const NETDEV_A_DEV_IFINDEX: u16 = 1;
    const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
    let missing = |call| SyscallError {
        call,
        io_error: std::io::Error::from_raw_os_error(libc::ENOENT),
    };
    // The family's id does not change while the kernel runs: ask once.
    static FAMILY: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    let family = match FAMILY.get() {
        Some(f) => *f,
        None => {
            let reply = genl_request(
                GENL_ID_CTRL,
                CTRL_CMD_GETFAMILY,
                &[(CTRL_ATTR_FAMILY_NAME, b"netdev\0")],
            )?;
            let f = genl_attr(&reply, CTRL_ATTR_FAMILY_ID)
                .and_then(|a| a.get(0..2))
                .map(|a| u16::from_ne_bytes([a[0], a[1]]))
                .ok_or_else(|| missing("genetlink(netdev family)"))?;
            *FAMILY.get_or_init(|| f)
        }
    };
    let reply = genl_request(
        family,
        NETDEV_CMD_DEV_GET,
        &[(NETDEV_A_DEV_IFINDEX, &ifindex.to_ne_bytes())],
    )?;
    genl_attr(&reply, NETDEV_A_DEV_XDP_FEATURES)
        .and_then(|a| a.get(0..8))
        .map(|a| u64::from_ne_bytes(a.try_into().expect("8 bytes")))
        .ok_or_else(|| missing("genetlink(xdp features)"))
}

/// Turns generic receive offload on or off (`ETHTOOL_SGRO`). A veth with GRO on takes frames
/// redirected into its peer by XDP.
///
/// # Errors
/// No such interface, or the driver refuses.
pub fn set_gro(name: &str, on: bool) -> Result<(), SyscallError> {
    const ETHTOOL_SGRO: u32 = 0x0000_002c;
    let mut value = [ETHTOOL_SGRO, u32::from(on)];
    ethtool(name, &mut value, "ioctl(ETHTOOL_SGRO)")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Veth(String);

    impl Drop for Veth {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &self.0])
                .status();
        }
    }

    #[test]
    fn a_veth_takes_redirects_once_its_peer_has_gro() {
        let name = format!("xnd{}a", std::process::id() % 100_000);
        let peer = format!("xnd{}b", std::process::id() % 100_000);
        let created = std::process::Command::new("ip")
            .args(["link", "add", &name, "type", "veth", "peer", "name", &peer])
            .status()
            .is_ok_and(|s| s.success());
        if !created {
            eprintln!("SKIP: cannot create a veth (needs root)");
            return;
        }
        let _guard = Veth(name.clone());
        for dev in [&name, &peer] {
            let _ = std::process::Command::new("ip")
                .args(["link", "set", dev, "up"])
                .status();
        }
        let ifindex = if_nametoindex(&name).unwrap();
        let Ok(before) = xdp_features(ifindex) else {
            eprintln!("SKIP: no netdev genetlink family");
            return;
        };
        set_gro(&peer, false).unwrap();
        assert_eq!(
            xdp_features(ifindex).unwrap() & XDP_ACT_NDO_XMIT,
            0,
            "before: {before:#x}"
        );
        set_gro(&peer, true).unwrap();
        assert_ne!(xdp_features(ifindex).unwrap() & XDP_ACT_NDO_XMIT, 0);
    }

    #[test]
    fn loopback_features_are_readable() {
        // Every kernel with the netdev family reports lo; older kernels answer ENOENT.
        match xdp_features(1) {
            Ok(features) => assert_eq!(features & !0x7f, 0, "unknown feature bits {features:#x}"),
            Err(e) => eprintln!("no netdev genetlink family here: {e}"),
        }
    }
}
