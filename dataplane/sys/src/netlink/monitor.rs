//! Link notifications: a netlink socket in the `RTNLGRP_LINK` group, which the kernel tells
//! of every interface added, removed or changed in the caller's network namespace.

use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};

use super::NetlinkError;
use super::channel::HEADER_LEN;

/// `RTMGRP_LINK`: the legacy group bit of `RTNLGRP_LINK`.
const RTMGRP_LINK: u32 = 1;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
/// `struct ifinfomsg`: family, pad, type, index, flags, change.
const IFINFOMSG_LEN: usize = 16;
const IFLA_IFNAME: u16 = 3;

/// What changed about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkChange {
    /// The interface's name (empty if the message had none).
    pub name: String,
    /// Its index.
    pub index: u32,
    /// It was removed (else added or changed).
    pub removed: bool,
}

/// A subscription to link notifications.
#[derive(Debug)]
pub struct LinkMonitor {
    socket: Socket,
    buffer: Vec<u8>,
}

impl LinkMonitor {
    /// Subscribes in the calling thread's network namespace.
    ///
    /// # Errors
    /// The socket cannot be opened or bound.
    pub fn open() -> Result<LinkMonitor, NetlinkError> {
        let os = |source| NetlinkError::Os {
            op: "subscribe to link changes",
            source,
        };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(os)?;
        socket.bind(&SocketAddr::new(0, RTMGRP_LINK)).map_err(os)?;
        Ok(LinkMonitor {
            socket,
            buffer: Vec::with_capacity(64 * 1024),
        })
    }

    /// Waits for the next notifications. An empty list means some were lost (the socket's
    /// buffer overflowed): the caller should look at every interface again.
    ///
    /// # Errors
    /// The socket failed.
    pub fn wait(&mut self) -> Result<Vec<LinkChange>, NetlinkError> {
        self.buffer.clear();
        match self.socket.recv(&mut self.buffer, 0) {
            Ok(_) => Ok(parse(&self.buffer)),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(Vec::new()),
            Err(source) => Err(NetlinkError::Os {
                op: "read link changes",
                source,
            }),
        }
    }
}

/// The link messages of one datagram; anything else in it is skipped.
fn parse(mut data: &[u8]) -> Vec<LinkChange> {
    let mut changes = Vec::new();
    while data.len() >= HEADER_LEN {
        let size = u32::from_ne_bytes(data[0..4].try_into().expect("4 bytes")) as usize;
        if size < HEADER_LEN || size > data.len() {
            break;
        }
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        let body = &data[HEADER_LEN..size];
        if (kind == RTM_NEWLINK || kind == RTM_DELLINK) && body.len() >= IFINFOMSG_LEN {
            let index = u32::from_ne_bytes(body[4..8].try_into().expect("4 bytes"));
            let name = attr(&body[IFINFOMSG_LEN..], IFLA_IFNAME)
                .map(|raw| {
                    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
                    String::from_utf8_lossy(&raw[..end]).into_owned()
                })
                .unwrap_or_default();
            changes.push(LinkChange {
                name,
                index,
                removed: kind == RTM_DELLINK,
            });
        }
        data = &data[size.next_multiple_of(4).min(data.len())..];
    }
    changes
}

/// The payload of attribute `kind` among `attrs`.
fn attr(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        if len < 4 || len > attrs.len() {
            return None;
        }
        if u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff == kind {
            return Some(&attrs[4..len]);
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, index: u32, name: &str) -> Vec<u8> {
        let mut attr = Vec::new();
        let payload = [name.as_bytes(), &[0]].concat();
        attr.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        attr.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
        attr.extend_from_slice(&payload);
        attr.resize(attr.len().next_multiple_of(4), 0);
        let mut body = vec![0u8; IFINFOMSG_LEN];
        body[4..8].copy_from_slice(&index.to_ne_bytes());
        body.extend_from_slice(&attr);
        let mut msg = Vec::new();
        msg.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&[0; 10]);
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn link_messages_name_their_interface() {
        let data = [
            message(RTM_NEWLINK, 7, "veth1"),
            message(24, 1, "route"),
            message(RTM_DELLINK, 8, "vethlong2"),
        ]
        .concat();
        assert_eq!(
            parse(&data),
            vec![
                LinkChange {
                    name: "veth1".into(),
                    index: 7,
                    removed: false
                },
                LinkChange {
                    name: "vethlong2".into(),
                    index: 8,
                    removed: true
                },
            ]
        );
        assert_eq!(parse(&data[..20]), vec![], "a truncated message is skipped");
    }

    #[test]
    fn a_new_interface_is_announced() {
        let Ok(mut monitor) = LinkMonitor::open() else {
            eprintln!("SKIPPED a_new_interface_is_announced: no netlink");
            return;
        };
        let name = format!("xmon{}", std::process::id() % 100_000);
        let made = std::process::Command::new("ip")
            .args(["link", "add", &name, "type", "dummy"])
            .status()
            .is_ok_and(|s| s.success());
        if !made {
            eprintln!("SKIPPED a_new_interface_is_announced: needs root and ip");
            return;
        }
        let mut seen = false;
        for _ in 0..20 {
            let changes = monitor.wait().unwrap();
            if changes.iter().any(|c| c.name == name && !c.removed) {
                seen = true;
                break;
            }
        }
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &name])
            .status();
        assert!(seen, "RTM_NEWLINK for {name}");
    }
}
