//! Ethtool over generic netlink, for the one setting xvs changes: GRO on a veth end.
//!
//! The ethtool ioctl needs `unsafe`; its netlink interface (Linux 5.6 and later) is bytes on
//! a socket, which `netlink-sys` opens safely. A request names the interface and the feature
//! (`rx-gro`) by name, so no feature table has to be read first.

use std::io;

use netlink_sys::protocols::NETLINK_GENERIC;
use netlink_sys::{Socket, SocketAddr};

const NLMSG_HEADER: usize = 16;
const GENL_HEADER: usize = 4;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLA_F_NESTED: u16 = 1 << 15;

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;

const ETHTOOL_GENL_VERSION: u8 = 1;
const ETHTOOL_MSG_FEATURES_SET: u8 = 12;
const ETHTOOL_A_FEATURES_HEADER: u16 = 1;
const ETHTOOL_A_FEATURES_WANTED: u16 = 3;
const ETHTOOL_A_HEADER_DEV_NAME: u16 = 2;
const ETHTOOL_A_HEADER_FLAGS: u16 = 3;
const ETHTOOL_FLAG_OMIT_REPLY: u32 = 1 << 1;
const ETHTOOL_A_BITSET_BITS: u16 = 3;
const ETHTOOL_A_BITSET_BITS_BIT: u16 = 1;
const ETHTOOL_A_BITSET_BIT_NAME: u16 = 2;
const ETHTOOL_A_BITSET_BIT_VALUE: u16 = 3;

/// The feature the kernel calls GRO.
const GRO: &str = "rx-gro";

/// A netlink attribute: length, type, payload, padded to 4 bytes.
fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(4 + payload.len()).expect("attributes here are small");
    let mut out = Vec::with_capacity((4 + payload.len()).next_multiple_of(4));
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

fn nested(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
    attr(kind | NLA_F_NESTED, &parts.concat())
}

fn string(kind: u16, text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    attr(kind, &bytes)
}

/// A generic netlink request: the netlink header, the generic header, the attributes.
fn message(family: u16, flags: u16, cmd: u8, version: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
    let body = attrs.concat();
    let len = u32::try_from(NLMSG_HEADER + GENL_HEADER + body.len()).expect("small request");
    let mut out = Vec::with_capacity(len as usize);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&family.to_ne_bytes());
    out.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    out.extend_from_slice(&1u32.to_ne_bytes()); // sequence number
    out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    out.extend_from_slice(&[cmd, version, 0, 0]);
    out.extend_from_slice(&body);
    out
}

/// The request that sets `rx-gro` of `ifname` to `on`.
fn gro_request(family: u16, ifname: &str, on: bool) -> Vec<u8> {
    let header = nested(
        ETHTOOL_A_FEATURES_HEADER,
        &[
            string(ETHTOOL_A_HEADER_DEV_NAME, ifname),
            attr(
                ETHTOOL_A_HEADER_FLAGS,
                &ETHTOOL_FLAG_OMIT_REPLY.to_ne_bytes(),
            ),
        ],
    );
    // A bit list without a mask changes only the bits it names; a bit is set to one by the
    // presence of its value flag.
    let mut bit = vec![string(ETHTOOL_A_BITSET_BIT_NAME, GRO)];
    if on {
        bit.push(attr(ETHTOOL_A_BITSET_BIT_VALUE, &[]));
    }
    let wanted = nested(
        ETHTOOL_A_FEATURES_WANTED,
        &[nested(
            ETHTOOL_A_BITSET_BITS,
            &[nested(ETHTOOL_A_BITSET_BITS_BIT, &bit)],
        )],
    );
    message(
        family,
        NLM_F_ACK,
        ETHTOOL_MSG_FEATURES_SET,
        ETHTOOL_GENL_VERSION,
        &[header, wanted],
    )
}

/// What one reply message says: an error (or, with errno 0, an acknowledgement), or data.
enum Reply<'a> {
    Status(i32),
    Data(&'a [u8]),
}

/// The first message of a reply buffer.
fn first_message(buf: &[u8]) -> io::Result<Reply<'_>> {
    let short = || io::Error::new(io::ErrorKind::InvalidData, "short netlink reply");
    let len = u32::from_ne_bytes(
        buf.get(0..4)
            .ok_or_else(short)?
            .try_into()
            .expect("4 bytes"),
    );
    let message = buf.get(..len as usize).ok_or_else(short)?;
    let kind = u16::from_ne_bytes([message[4], message[5]]);
    if kind == NLMSG_ERROR {
        let errno = message.get(16..20).ok_or_else(short)?;
        return Ok(Reply::Status(-i32::from_ne_bytes(
            errno.try_into().expect("4 bytes"),
        )));
    }
    Ok(Reply::Data(message))
}

/// The payload of top-level attribute `kind` of a generic netlink message.
fn find_attr(message: &[u8], kind: u16) -> Option<&[u8]> {
    let mut at = NLMSG_HEADER + GENL_HEADER;
    while at + 4 <= message.len() {
        let len = usize::from(u16::from_ne_bytes([message[at], message[at + 1]]));
        let this = u16::from_ne_bytes([message[at + 2], message[at + 3]]) & !NLA_F_NESTED;
        if len < 4 || at + len > message.len() {
            return None;
        }
        if this == kind {
            return Some(&message[at + 4..at + len]);
        }
        at += len.next_multiple_of(4);
    }
    None
}

fn exchange(socket: &Socket, request: &[u8]) -> io::Result<Vec<u8>> {
    socket.send(request, 0)?;
    let mut buf = Vec::with_capacity(16 * 1024);
    socket.recv(&mut buf, 0)?;
    Ok(buf)
}

/// Sets GRO of interface `ifname`, in the calling thread's network namespace, on or off.
///
/// # Errors
/// The kernel has no ethtool netlink family (before 5.6), there is no such interface, or the
/// driver refuses.
pub(crate) fn set_gro(ifname: &str, on: bool) -> io::Result<()> {
    let mut socket = Socket::new(NETLINK_GENERIC)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    socket.set_ext_ack(true)?;
    let family_request = message(
        GENL_ID_CTRL,
        0,
        CTRL_CMD_GETFAMILY,
        1,
        &[string(CTRL_ATTR_FAMILY_NAME, "ethtool")],
    );
    let reply = exchange(&socket, &family_request)?;
    let family = match first_message(&reply)? {
        Reply::Status(errno) => return Err(io::Error::from_raw_os_error(errno)),
        Reply::Data(message) => find_attr(message, CTRL_ATTR_FAMILY_ID)
            .and_then(|id| id.get(0..2))
            .map(|id| u16::from_ne_bytes([id[0], id[1]]))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no ethtool family id"))?,
    };
    let reply = exchange(&socket, &gro_request(family, ifname, on))?;
    match first_message(&reply)? {
        Reply::Status(0) => Ok(()),
        Reply::Status(errno) => Err(io::Error::from_raw_os_error(errno)),
        Reply::Data(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected ethtool reply",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([bytes[at], bytes[at + 1]])
    }

    #[test]
    fn attributes_are_padded_and_nested() {
        assert_eq!(attr(7, &[1, 2, 3, 4]).len(), 8);
        let s = string(2, "eth0");
        assert_eq!((s.len(), u16_at(&s, 0)), (12, 9));
        let n = nested(1, &[s.clone(), attr(3, &[])]);
        assert_eq!(u16_at(&n, 0), 4 + 12 + 4);
        assert_eq!(u16_at(&n, 2), 1 | NLA_F_NESTED);
    }

    #[test]
    fn the_gro_request_names_the_interface_and_the_feature() {
        let on = gro_request(0x20, "eth0", true);
        let off = gro_request(0x20, "eth0", false);
        assert_eq!(
            u32::from_ne_bytes(on[0..4].try_into().unwrap()) as usize,
            on.len()
        );
        assert_eq!(u16_at(&on, 4), 0x20);
        assert_eq!(u16_at(&on, 6), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(on[16], ETHTOOL_MSG_FEATURES_SET);
        let header = find_attr(&on, ETHTOOL_A_FEATURES_HEADER).unwrap();
        assert_eq!(&header[4..9], b"eth0\0");
        let wanted = find_attr(&on, ETHTOOL_A_FEATURES_WANTED).unwrap();
        let text = String::from_utf8_lossy(wanted);
        assert!(text.contains("rx-gro\0"), "{text:?}");
        // Off is the same request without the value flag.
        assert_eq!(on.len(), off.len() + 4);
    }

    #[test]
    fn replies_are_read() {
        let mut ack = message(NLMSG_ERROR, 0, 0, 0, &[]);
        ack.truncate(16);
        ack.extend_from_slice(&(-19i32).to_ne_bytes());
        let len = ack.len() as u32;
        ack[0..4].copy_from_slice(&len.to_ne_bytes());
        assert!(matches!(first_message(&ack).unwrap(), Reply::Status(19)));
        let data = message(
            0x10,
            0,
            1,
            1,
            &[attr(CTRL_ATTR_FAMILY_ID, &0x1au16.to_ne_bytes())],
        );
        let Reply::Data(m) = first_message(&data).unwrap() else {
            panic!("data expected");
        };
        assert_eq!(
            find_attr(m, CTRL_ATTR_FAMILY_ID),
            Some(&0x1au16.to_ne_bytes()[..])
        );
        assert!(first_message(&[1, 0]).is_err());
    }

    /// What `ethtool -k` says of GRO on `ifname`, if ethtool is there to ask.
    fn gro_of(ifname: &str) -> Option<bool> {
        let out = std::process::Command::new("ethtool")
            .args(["-k", ifname])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with("generic-receive-offload:"))?;
        Some(line.contains(": on"))
    }

    #[test]
    fn gro_is_set_on_a_veth() {
        let name = format!("xvg{}a", std::process::id() % 100_000);
        let created = std::process::Command::new("ip")
            .args([
                "link",
                "add",
                &name,
                "type",
                "veth",
                "peer",
                "name",
                &format!("{name}b"),
            ])
            .status()
            .is_ok_and(|s| s.success());
        if !created {
            eprintln!("SKIP: cannot create a veth (needs root)");
            return;
        }
        let result = (|| {
            set_gro(&name, false)?;
            let off = gro_of(&name);
            set_gro(&name, true)?;
            Ok::<_, io::Error>((off, gro_of(&name)))
        })();
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &name])
            .status();
        match result {
            Ok((Some(off), Some(on))) => assert!(!off && on, "GRO off: {off}, on: {on}"),
            Ok(_) => eprintln!("SKIP part of the test: ethtool is not installed"),
            // Kernels before 5.6 have no ethtool family; the attach goes on without GRO.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => eprintln!("SKIP: {e}"),
            Err(e) => panic!("setting GRO: {e}"),
        }
        assert!(set_gro("nonexistent0", true).is_err());
    }
}
