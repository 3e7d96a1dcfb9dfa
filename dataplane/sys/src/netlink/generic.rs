//! Generic netlink: families found by name, requests of hand-encoded attributes, and the two
//! questions xvs asks: a device's XDP features (`netdev`) and GRO on or off (`ethtool`,
//! Linux 5.6 and later, which needs no ioctl).

use std::fs::File;

use netlink_sys::protocols::NETLINK_GENERIC;

use super::channel::{Channel, HEADER_LEN};
use super::{NetlinkError, in_netns};

/// `struct genlmsghdr`: command, version, reserved.
const GENL_HEADER: usize = 4;
const NLA_F_NESTED: u16 = 1 << 15;
/// The bits of an attribute's type that name it.
const NLA_TYPE_MASK: u16 = 0x3fff;

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;

/// A netlink attribute: length, type, payload, padded to 4 bytes.
pub fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(4 + payload.len()).expect("attributes here are small");
    let mut out = Vec::with_capacity((4 + payload.len()).next_multiple_of(4));
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

/// An attribute holding other attributes.
pub fn nested(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
    attr(kind | NLA_F_NESTED, &parts.concat())
}

/// A NUL-terminated string attribute.
pub fn string(kind: u16, text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    attr(kind, &bytes)
}

/// A generic netlink request: the netlink header, the generic header, the attributes.
fn message(family: u16, cmd: u8, version: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
    let body = attrs.concat();
    let len = u32::try_from(HEADER_LEN + GENL_HEADER + body.len()).expect("small request");
    let mut out = Vec::with_capacity(len as usize);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&family.to_ne_bytes());
    // Flags and sequence number are the channel's to set; the port id is the kernel's.
    out.extend_from_slice(&[0; 10]);
    out.extend_from_slice(&[cmd, version, 0, 0]);
    out.extend_from_slice(&body);
    out
}

/// The payload of top-level attribute `kind` of a generic netlink message.
pub fn find_attr(message: &[u8], kind: u16) -> Option<&[u8]> {
    let mut at = HEADER_LEN + GENL_HEADER;
    while at + 4 <= message.len() {
        let len = usize::from(u16::from_ne_bytes([message[at], message[at + 1]]));
        let this = u16::from_ne_bytes([message[at + 2], message[at + 3]]) & NLA_TYPE_MASK;
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

/// A generic netlink socket.
#[derive(Debug)]
pub struct Generic {
    channel: Channel,
}

impl Generic {
    /// Opens a socket in the calling thread's network namespace.
    ///
    /// # Errors
    /// [`NetlinkError::Os`] when the socket cannot be made.
    pub fn open() -> Result<Generic, NetlinkError> {
        Ok(Generic {
            channel: Channel::open(NETLINK_GENERIC)?,
        })
    }

    /// Sends command `cmd` of `family` with `attrs`; returns the reply messages, whole.
    ///
    /// # Errors
    /// The kernel refuses (with its errno), or the socket fails.
    pub fn request(
        &mut self,
        op: &'static str,
        family: u16,
        cmd: u8,
        version: u8,
        attrs: &[Vec<u8>],
    ) -> Result<Vec<Vec<u8>>, NetlinkError> {
        self.channel
            .exchange(op, &mut message(family, cmd, version, attrs))
    }

    /// The id of family `name` (`netdev`, `ethtool`, ...).
    ///
    /// # Errors
    /// ENOENT when this kernel has no such family.
    pub fn family(&mut self, name: &str) -> Result<u16, NetlinkError> {
        let replies = self.request(
            "resolve family",
            GENL_ID_CTRL,
            CTRL_CMD_GETFAMILY,
            1,
            &[string(CTRL_ATTR_FAMILY_NAME, name)],
        )?;
        replies
            .iter()
            .find_map(|m| find_attr(m, CTRL_ATTR_FAMILY_ID))
            .and_then(|id| id.get(0..2))
            .map(|id| u16::from_ne_bytes([id[0], id[1]]))
            .ok_or(NetlinkError::Decode {
                op: "resolve family",
                detail: format!("no id for family {name}"),
            })
    }
}

/// `NETDEV_XDP_ACT_NDO_XMIT`: the device accepts XDP frames redirected to it.
pub const XDP_ACT_NDO_XMIT: u64 = 1 << 2;

/// The XDP features of interface `ifindex` (`NETDEV_A_DEV_XDP_FEATURES` of the `netdev`
/// family), e.g. whether it accepts redirected frames. For a veth this says whether its peer
/// can take them (it has an XDP program or GRO).
///
/// # Errors
/// The kernel has no `netdev` family (before 6.3), or the interface is gone.
pub fn xdp_features(ifindex: u32) -> Result<u64, NetlinkError> {
    const NETDEV_CMD_DEV_GET: u8 = 1;
    const NETDEV_A_DEV_IFINDEX: u16 = 1;
    const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
    let mut genl = Generic::open()?;
    let family = genl.family("netdev")?;
    let replies = genl.request(
        "get device",
        family,
        NETDEV_CMD_DEV_GET,
        1,
        &[attr(NETDEV_A_DEV_IFINDEX, &ifindex.to_ne_bytes())],
    )?;
    replies
        .iter()
        .find_map(|m| find_attr(m, NETDEV_A_DEV_XDP_FEATURES))
        .and_then(|a| a.get(0..8))
        .map(|a| u64::from_ne_bytes(a.try_into().expect("8 bytes")))
        .ok_or(NetlinkError::Decode {
            op: "get device",
            detail: "no XDP features in the reply".into(),
        })
}

/// The `ethtool` family's request that sets feature `rx-gro` of `ifname` to `on`.
fn gro_request(ifname: &str, on: bool) -> (u8, u8, Vec<Vec<u8>>) {
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
    let mut bit = vec![string(ETHTOOL_A_BITSET_BIT_NAME, "rx-gro")];
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
    (
        ETHTOOL_MSG_FEATURES_SET,
        ETHTOOL_GENL_VERSION,
        vec![header, wanted],
    )
}

/// Turns generic receive offload of `ifname` on or off, in the network namespace `netns`
/// (or this one). A veth whose end has GRO on takes frames XDP redirects into its peer; GRO
/// wanted on a down interface takes effect when it comes up.
///
/// # Errors
/// The kernel has no `ethtool` family (before 5.6), there is no such interface, the driver
/// refuses, or the namespace cannot be entered.
pub fn set_gro(netns: Option<&File>, ifname: &str, on: bool) -> Result<(), NetlinkError> {
    let set = || {
        let mut genl = Generic::open()?;
        let family = genl.family("ethtool")?;
        let (cmd, version, attrs) = gro_request(ifname, on);
        genl.request("set GRO", family, cmd, version, &attrs)
            .map(drop)
    };
    match netns {
        None => set(),
        Some(netns) => in_netns(netns, set),
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
        let (cmd, version, attrs) = gro_request("eth0", true);
        let on = message(0x20, cmd, version, &attrs);
        let (_, _, attrs) = gro_request("eth0", false);
        let off = message(0x20, cmd, version, &attrs);
        assert_eq!(
            u32::from_ne_bytes(on[0..4].try_into().unwrap()) as usize,
            on.len()
        );
        assert_eq!(u16_at(&on, 4), 0x20);
        assert_eq!(on[16], 12, "ETHTOOL_MSG_FEATURES_SET");
        let header = find_attr(&on, 1).unwrap();
        assert_eq!(&header[4..9], b"eth0\0");
        let wanted = find_attr(&on, 3).unwrap();
        let text = String::from_utf8_lossy(wanted);
        assert!(text.contains("rx-gro\0"), "{text:?}");
        // Off is the same request without the value flag.
        assert_eq!(on.len(), off.len() + 4);
    }

    #[test]
    fn attributes_are_found_or_not() {
        let data = message(
            0x10,
            1,
            1,
            &[attr(CTRL_ATTR_FAMILY_ID, &0x1au16.to_ne_bytes())],
        );
        assert_eq!(
            find_attr(&data, CTRL_ATTR_FAMILY_ID),
            Some(&0x1au16.to_ne_bytes()[..])
        );
        assert_eq!(find_attr(&data, CTRL_ATTR_FAMILY_NAME), None);
        let mut broken = data.clone();
        broken[HEADER_LEN + GENL_HEADER] = 200;
        assert_eq!(
            find_attr(&broken, CTRL_ATTR_FAMILY_ID),
            None,
            "length past the end"
        );
    }

    struct Veth(String);

    impl Drop for Veth {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &self.0])
                .status();
        }
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
    fn a_veth_takes_redirects_once_its_peer_has_gro() {
        let name = format!("xnd{}a", std::process::id() % 100_000);
        let peer = format!("xnd{}b", std::process::id() % 100_000);
        let created = std::process::Command::new("ip")
            .args(["link", "add", &name, "type", "veth", "peer", "name", &peer])
            .status()
            .is_ok_and(|s| s.success());
        if !created {
            eprintln!("SKIPPED a_veth_takes_redirects_once_its_peer_has_gro: needs root");
            return;
        }
        let _guard = Veth(name.clone());
        for dev in [&name, &peer] {
            let _ = std::process::Command::new("ip")
                .args(["link", "set", dev, "up"])
                .status();
        }
        let ifindex = crate::netdev::if_nametoindex(&name).unwrap();
        let before = xdp_features(ifindex).expect("the netdev family (Linux 6.3+)");
        set_gro(None, &peer, false).unwrap();
        assert!(!gro_of(&peer).unwrap_or(false), "ethtool says GRO is off");
        assert_eq!(
            xdp_features(ifindex).unwrap() & XDP_ACT_NDO_XMIT,
            0,
            "before: {before:#x}"
        );
        set_gro(None, &peer, true).unwrap();
        assert!(gro_of(&peer).unwrap_or(true), "ethtool says GRO is on");
        assert_ne!(xdp_features(ifindex).unwrap() & XDP_ACT_NDO_XMIT, 0);
        assert!(set_gro(None, "xvs-nonexistent0", true).is_err());
    }

    #[test]
    fn loopback_features_are_readable() {
        let features = xdp_features(1).expect("the netdev family (Linux 6.3+) reports lo");
        assert_eq!(features & !0x7f, 0, "unknown feature bits {features:#x}");
    }

    #[test]
    fn families_resolve_and_unknown_ones_do_not() {
        let mut genl = Generic::open().expect("a generic netlink socket needs no privilege");
        assert!(genl.family("nlctrl").is_ok());
        let missing = genl.family("xvs-nofamily").unwrap_err();
        assert!(missing.is_not_found(), "{missing}");
    }
}
