//! A small synchronous rtnetlink client: exactly what wiring a container to xvsd needs (veth
//! pairs, link state, addresses, routes), in the host's network namespace or in a container's.
//!
//! Typed messages come from `netlink-packet-route` and the socket from `netlink-sys`, both safe
//! APIs; there is no async runtime. A socket opened in a namespace stays bound to it, so
//! [`Netlink::open_in`] enters the namespace on a short-lived thread only to open the socket.

use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};

use ipnet::IpNet;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};
use nix::sched::CloneFlags;

/// Why a netlink request failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The kernel refused, or the socket failed; `op` names the request.
    #[error("netlink {op}: {source}")]
    Os {
        /// The request, e.g. `"add veth"`.
        op: &'static str,
        /// The kernel's errno.
        #[source]
        source: io::Error,
    },
    /// The kernel's answer could not be decoded.
    #[error("netlink {op}: undecodable reply: {detail}")]
    Decode {
        /// The request.
        op: &'static str,
        /// What the decoder said.
        detail: String,
    },
    /// `setns(2)` into the namespace failed.
    #[error("entering the network namespace: {0}")]
    Setns(#[source] io::Error),
}

impl NetlinkError {
    fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// Whether the kernel said the object does not exist (ENODEV, ENOENT, ESRCH).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ENODEV | libc::ENOENT | libc::ESRCH)
        )
    }

    /// Whether the kernel said the object exists already (EEXIST).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }
}

/// What the kernel says about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Its ifindex.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Its hardware address, if it has a 6-byte one.
    pub mac: Option<[u8; 6]>,
    /// Its MTU.
    pub mtu: Option<u32>,
    /// Whether it is administratively up.
    pub up: bool,
}

/// A veth pair to create.
#[derive(Debug, Clone)]
pub struct VethPair<'a> {
    /// The end that stays in the socket's namespace.
    pub name: &'a str,
    /// The other end.
    pub peer_name: &'a str,
    /// Where the other end goes (`None`: it stays beside `name`).
    pub peer_netns: Option<&'a File>,
    /// The other end's MAC (`None`: the kernel picks a random one).
    pub peer_mac: Option<[u8; 6]>,
    /// Both ends' MTU (`None`: the kernel's default).
    pub mtu: Option<u32>,
}

/// An rtnetlink socket bound to one network namespace.
#[derive(Debug)]
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

const RECV_BUFFER: usize = 64 * 1024;

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    ///
    /// # Errors
    /// [`NetlinkError::Os`] when the socket cannot be made.
    pub fn open() -> Result<Netlink, NetlinkError> {
        let os = |source| NetlinkError::Os {
            op: "open socket",
            source,
        };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(os)?;
        socket.bind_auto().map_err(os)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(os)?;
        socket.set_ext_ack(true).map_err(os)?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// Opens a socket in the network namespace `netns` (an open `/run/netns/NAME`,
    /// `/proc/PID/ns/net`, ...). The calling thread's namespace does not change.
    ///
    /// # Errors
    /// [`NetlinkError::Setns`] when the file is not a network namespace or we may not enter
    /// it, or a socket error.
    pub fn open_in(netns: &File) -> Result<Netlink, NetlinkError> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // Only this short-lived thread changes namespace; the socket keeps it.
                    nix::sched::setns(netns.as_fd(), CloneFlags::CLONE_NEWNET)
                        .map_err(|e| NetlinkError::Setns(io::Error::from(e)))?;
                    Netlink::open()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Turns GRO on for interface `ifname` in `netns` (or here). A veth whose end has GRO on
    /// takes frames the switch's fast path redirects into it in the kernel; GRO wanted on a
    /// down interface takes effect when it comes up.
    ///
    /// # Errors
    /// [`NetlinkError::Setns`] when the namespace cannot be entered, or the ethtool error.
    pub fn enable_gro(netns: Option<&File>, ifname: &str) -> Result<(), NetlinkError> {
        let set = || {
            crate::ethtool::set_gro(ifname, true).map_err(|source| NetlinkError::Os {
                op: "enable GRO",
                source,
            })
        };
        match netns {
            None => set(),
            Some(netns) => std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        nix::sched::setns(netns.as_fd(), CloneFlags::CLONE_NEWNET)
                            .map_err(|e| NetlinkError::Setns(io::Error::from(e)))?;
                        set()
                    })
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }),
        }
    }

    /// Sends `message` and collects the replies until the kernel's ACK or DONE.
    fn request(
        &mut self,
        op: &'static str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        let os = |source| NetlinkError::Os { op, source };
        self.socket.send(&bytes, 0).map_err(os)?;

        let mut replies = Vec::new();
        let mut buffer = Vec::with_capacity(RECV_BUFFER);
        loop {
            buffer.clear();
            let len = self.socket.recv(&mut buffer, 0).map_err(os)?;
            if len > buffer.len() {
                return Err(NetlinkError::Decode {
                    op,
                    detail: format!("reply of {len} bytes truncated"),
                });
            }
            let mut offset = 0;
            while offset < buffer.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buffer[offset..])
                    .map_err(|e| NetlinkError::Decode {
                    op,
                    detail: e.to_string(),
                })?;
                let size = reply.header.length as usize;
                if size == 0 {
                    return Err(NetlinkError::Decode {
                        op,
                        detail: "zero-length message".into(),
                    });
                }
                offset += size.next_multiple_of(4);
                if reply.header.sequence_number != seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(replies),
                            Some(_) => Err(NetlinkError::Os {
                                op,
                                source: e.to_io(),
                            }),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    NetlinkPayload::Noop | NetlinkPayload::Overrun(_) => {}
                    _ => {}
                }
            }
        }
    }

    /// The link called `name`, or `None` if there is none.
    ///
    /// # Errors
    /// A socket or kernel error other than "no such device".
    pub fn link(&mut self, name: &str) -> Result<Option<Link>, NetlinkError> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_owned()));
        match self.request("get link", RouteNetlinkMessage::GetLink(message), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(link) => Some(link_of(&link)),
                _ => None,
            })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link in the namespace.
    ///
    /// # Errors
    /// A socket or kernel error.
    pub fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let replies = self.request(
            "dump links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewLink(link) => Some(link_of(&link)),
                _ => None,
            })
            .collect())
    }

    /// Creates a veth pair, the peer directly in its namespace (so its name only has to be
    /// free there).
    ///
    /// # Errors
    /// EEXIST when either name is taken ([`NetlinkError::is_exists`]), or another kernel error.
    pub fn add_veth(&mut self, pair: &VethPair<'_>) -> Result<(), NetlinkError> {
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(pair.peer_name.to_owned()));
        if let Some(netns) = pair.peer_netns {
            peer.attributes
                .push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
        }
        if let Some(mac) = pair.peer_mac {
            peer.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(pair.name.to_owned()));
        if let Some(mtu) = pair.mtu {
            peer.attributes.push(LinkAttribute::Mtu(mtu));
            message.attributes.push(LinkAttribute::Mtu(mtu));
        }
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.request(
            "add veth",
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Deletes the link called `name` (a veth takes its peer with it). Returns whether there
    /// was one.
    ///
    /// # Errors
    /// A kernel error other than "no such device".
    pub fn delete_link(&mut self, name: &str) -> Result<bool, NetlinkError> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_owned()));
        match self.request("delete link", RouteNetlinkMessage::DelLink(message), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Brings link `index` up.
    ///
    /// # Errors
    /// A kernel error.
    pub fn set_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        self.request("set link up", RouteNetlinkMessage::SetLink(message), 0)?;
        Ok(())
    }

    /// Adds `address` (with its prefix length) to link `index`.
    ///
    /// # Errors
    /// EEXIST when it is there already, or another kernel error.
    pub fn add_address(&mut self, index: u32, address: IpNet) -> Result<(), NetlinkError> {
        let mut message = AddressMessage::default();
        message.header.family = family(address.addr());
        message.header.prefix_len = address.prefix_len();
        message.header.index = index;
        message.header.scope = AddressScope::Universe;
        message
            .attributes
            .push(AddressAttribute::Local(address.addr()));
        message
            .attributes
            .push(AddressAttribute::Address(address.addr()));
        self.request(
            "add address",
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// The addresses of link `index`, with their prefix lengths.
    ///
    /// # Errors
    /// A socket or kernel error.
    pub fn addresses(&mut self, index: u32) -> Result<Vec<IpNet>, NetlinkError> {
        let replies = self.request(
            "dump addresses",
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    let ip = a.attributes.iter().find_map(|attr| match attr {
                        AddressAttribute::Local(ip) => Some(*ip),
                        _ => None,
                    });
                    let ip = ip.or_else(|| {
                        a.attributes.iter().find_map(|attr| match attr {
                            AddressAttribute::Address(ip) => Some(*ip),
                            _ => None,
                        })
                    })?;
                    IpNet::new(ip, a.header.prefix_len).ok()
                }
                _ => None,
            })
            .collect())
    }

    /// Adds a route to `destination` through link `index`, via `gateway` if given (else
    /// on-link).
    ///
    /// # Errors
    /// EEXIST when the route is there already, or another kernel error (ENETUNREACH when the
    /// gateway is not on a connected network).
    pub fn add_route(
        &mut self,
        destination: IpNet,
        gateway: Option<IpAddr>,
        index: u32,
    ) -> Result<(), NetlinkError> {
        let mut message = RouteMessage::default();
        message.header.address_family = family(destination.addr());
        message.header.destination_prefix_length = destination.prefix_len();
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Boot;
        message.header.scope = if gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        message.header.kind = RouteType::Unicast;
        if destination.prefix_len() > 0 {
            message
                .attributes
                .push(RouteAttribute::Destination(RouteAddress::from(
                    destination.network(),
                )));
        }
        if let Some(gw) = gateway {
            message
                .attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        message.attributes.push(RouteAttribute::Oif(index));
        self.request(
            "add route",
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }
}

fn family(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn link_of(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        mac: None,
        mtu: None,
        up: message.header.flags.contains(LinkFlags::Up),
    };
    for attr in &message.attributes {
        match attr {
            LinkAttribute::IfName(name) => link.name.clone_from(name),
            LinkAttribute::Address(bytes) => link.mac = bytes.as_slice().try_into().ok(),
            LinkAttribute::Mtu(mtu) => link.mtu = Some(*mtu),
            _ => {}
        }
    }
    link
}
