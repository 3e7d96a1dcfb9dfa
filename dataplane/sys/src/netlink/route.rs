//! rtnetlink: exactly what wiring a container to xvsd needs (veth pairs, link state,
//! addresses, routes), in the host's network namespace or in a container's.
//!
//! Typed messages come from `netlink-packet-route`; there is no async runtime.

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use ipnet::IpNet;
use netlink_packet_core::{
    NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;

use super::channel::Channel;
use super::{NetlinkError, in_netns};

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
    /// Whether it is a loopback device (`IFF_LOOPBACK`).
    pub loopback: bool,
    /// Whether it carries Ethernet frames (`ARPHRD_ETHER`: veths, NICs, bridges, bonds, ...;
    /// not loopback, tun, wireguard or IP tunnels).
    pub ethernet: bool,
    /// Its kind (`veth`, `bridge`, `bond`, ...), if it is not a plain device.
    pub kind: Option<String>,
    /// The ifindex of the device it is a port of (a bridge, a bond, a VRF), if any.
    pub master: Option<u32>,
    /// What it is a port of (`bridge`, `bond`, ...), when it has a master.
    pub port_kind: Option<String>,
    /// Whether the device it is linked to (a veth's peer) is in another network namespace
    /// (`IFLA_LINK_NETNSID` is present).
    pub peer_elsewhere: bool,
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
    /// Both ends' RX and TX queues (`None`: one each).
    pub queues: Option<u32>,
}

/// An rtnetlink socket bound to one network namespace.
#[derive(Debug)]
pub struct Rtnetlink {
    channel: Channel,
}

impl Rtnetlink {
    /// Opens a socket in the calling thread's network namespace.
    ///
    /// # Errors
    /// [`NetlinkError::Os`] when the socket cannot be made.
    pub fn open() -> Result<Rtnetlink, NetlinkError> {
        Ok(Rtnetlink {
            channel: Channel::open(NETLINK_ROUTE)?,
        })
    }

    /// Opens a socket in the network namespace `netns` (an open `/run/netns/NAME`,
    /// `/proc/PID/ns/net`, ...). The calling thread's namespace does not change.
    ///
    /// # Errors
    /// [`NetlinkError::Setns`] when the file is not a network namespace or we may not enter
    /// it, or a socket error.
    pub fn open_in(netns: &File) -> Result<Rtnetlink, NetlinkError> {
        in_netns(netns, Rtnetlink::open)
    }

    /// Sends `message` and collects the replies until the kernel's ACK or DONE.
    fn request(
        &mut self,
        op: &'static str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        let mut replies = Vec::new();
        for reply in self.channel.exchange(op, &mut bytes)? {
            let reply =
                NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply).map_err(|e| {
                    NetlinkError::Decode {
                        op,
                        detail: e.to_string(),
                    }
                })?;
            if let NetlinkPayload::InnerMessage(inner) = reply.payload {
                replies.push(inner);
            }
        }
        Ok(replies)
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

    /// The link with ifindex `index`, or `None` if there is none.
    ///
    /// # Errors
    /// A socket or kernel error other than "no such device".
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>, NetlinkError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
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
        if let Some(queues) = pair.queues {
            for attrs in [&mut peer.attributes, &mut message.attributes] {
                attrs.push(LinkAttribute::NumTxQueues(queues));
                attrs.push(LinkAttribute::NumRxQueues(queues));
            }
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
        loopback: message.header.flags.contains(LinkFlags::Loopback),
        ethernet: message.header.link_layer_type == LinkLayerType::Ether,
        kind: None,
        master: None,
        port_kind: None,
        peer_elsewhere: false,
    };
    for attr in &message.attributes {
        match attr {
            LinkAttribute::IfName(name) => link.name.clone_from(name),
            LinkAttribute::Address(bytes) => link.mac = bytes.as_slice().try_into().ok(),
            LinkAttribute::Mtu(mtu) => link.mtu = Some(*mtu),
            LinkAttribute::Controller(index) => link.master = Some(*index),
            LinkAttribute::LinkNetNsId(_) => link.peer_elsewhere = true,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(kind) => link.kind = Some(kind.to_string()),
                        LinkInfo::PortKind(kind) => link.port_kind = Some(kind.to_string()),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    link
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::link::InfoPortKind;

    use super::*;

    #[test]
    fn a_link_says_what_it_is_and_whose_port() {
        let mut message = LinkMessage::default();
        message.header.index = 7;
        message.header.flags = LinkFlags::Up | LinkFlags::Loopback;
        message.header.link_layer_type = LinkLayerType::Loopback;
        message
            .attributes
            .push(LinkAttribute::IfName("lo".to_owned()));
        let lo = link_of(&message);
        assert!(lo.up && lo.loopback && !lo.ethernet);
        assert_eq!((lo.master, lo.kind), (None, None));

        let mut message = LinkMessage::default();
        message.header.link_layer_type = LinkLayerType::Ether;
        message.attributes.extend([
            LinkAttribute::IfName("veth0".to_owned()),
            LinkAttribute::Controller(4),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::PortKind(InfoPortKind::Bridge),
            ]),
        ]);
        let port = link_of(&message);
        assert!(port.ethernet && !port.loopback && !port.up);
        assert_eq!(port.master, Some(4));
        assert_eq!(port.kind.as_deref(), Some("veth"));
        assert_eq!(port.port_kind.as_deref(), Some("bridge"));
    }
}
