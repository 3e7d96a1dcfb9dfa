//! Internal ports: the host's own interface on the switch, as OVS's internal port or a Linux
//! bridge's own device.
//!
//! An internal port `NAME` is a veth pair xvsd makes: `NAME` stays in the host's stack, up,
//! with the port's addresses; its peer `NAME-sw` ([`internal_peer`]) is the switch port. What
//! the host sends on `NAME` comes into the switch on the peer, and what the switch sends out
//! of the peer reaches the host's stack on `NAME`. The pair is made when the port is added
//! (or adopted when it is there, as after a handover or a crash), and deleted when the port is
//! removed and when xvsd stops cleanly.

use ipnet::IpNet;
use xvs_proto::state::{self, DesiredState, INTERNAL_SUFFIX, MAX_INTERNAL_NAME, internal_peer};
use xvs_proto::{RpcError, code};
use xvs_sys::netlink::{NetlinkError, Rtnetlink, VethPair};

/// The interface the switch attaches for the port `name` of the desired state: the peer of
/// an internal port, else the interface of that name.
pub(crate) fn switch_name(name: &str, port: &state::Port) -> String {
    if port.internal.is_some() {
        internal_peer(name)
    } else {
        name.to_owned()
    }
}

/// The desired state's name for the switch port on interface `ifname`: the internal port
/// whose peer it is, else `ifname` itself.
pub(crate) fn desired_name(desired: &DesiredState, ifname: &str) -> String {
    if let Some(name) = ifname.strip_suffix(INTERNAL_SUFFIX)
        && desired
            .ports
            .get(name)
            .is_some_and(|p| p.internal.is_some())
    {
        return name.to_owned();
    }
    ifname.to_owned()
}

/// The addresses of an internal port, checked.
///
/// # Errors
/// [`code::INVALID_PARAMS`] naming the first that is no `addr/len`.
pub(crate) fn addresses(internal: &state::Internal) -> Result<Vec<IpNet>, RpcError> {
    internal
        .addrs
        .iter()
        .map(|text| {
            text.parse::<IpNet>().map_err(|_| {
                RpcError::params(format!("{text:?} is not an address with its length"))
            })
        })
        .collect()
}

/// Checks an internal port's name and addresses before anything is made.
///
/// # Errors
/// [`code::INVALID_PARAMS`]: a name too long for its peer's to fit, or a bad address.
pub(crate) fn check(name: &str, internal: &state::Internal) -> Result<(), RpcError> {
    let fits = !name.is_empty()
        && name.len() <= MAX_INTERNAL_NAME
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if !fits {
        return Err(RpcError::params(format!(
            "internal port name {name:?} must be 1-{MAX_INTERNAL_NAME} characters (its switch \
             side is called {name}{INTERNAL_SUFFIX}), without '/', ':' or whitespace"
        )));
    }
    addresses(internal).map(drop)
}

fn netlink_error(what: &str, name: &str, e: NetlinkError) -> RpcError {
    RpcError::new(code::DATAPLANE, format!("{what} {name}: {e}"))
}

/// Makes internal port `name`'s veth pair, or adopts the one that is there: both ends up,
/// `name` with the port's addresses (addresses it has besides are left alone).
///
/// # Errors
/// A netlink error ([`code::DATAPLANE`]); the host already has an interface `name` that is
/// not a veth ([`code::EXISTS`]).
pub(crate) fn ensure(name: &str, internal: &state::Internal) -> Result<(), RpcError> {
    let peer = internal_peer(name);
    let wanted = addresses(internal)?;
    let mut netlink = Rtnetlink::open().map_err(|e| netlink_error("netlink for", name, e))?;
    let link = match netlink
        .link(name)
        .map_err(|e| netlink_error("looking up", name, e))?
    {
        Some(link) if link.kind.as_deref() == Some("veth") => link,
        Some(_) => {
            return Err(RpcError::new(
                code::EXISTS,
                format!("the host has an interface called {name} that is no internal port"),
            ));
        }
        None => {
            // Should another interface have the peer's name, the kernel refuses (EEXIST) and
            // nothing of it is touched.
            // Made from the switch side, so that the host's side gets its MAC: the same
            // every time, so that the containers' neighbor entries for the host stay right
            // across a restart.
            netlink
                .add_veth(&VethPair {
                    name: &peer,
                    peer_name: name,
                    peer_netns: None,
                    peer_mac: Some(stable_mac(name)),
                    mtu: None,
                    queues: None,
                })
                .map_err(|e| netlink_error("creating", name, e))?;
            tracing::info!(name, peer, "internal port's interface created");
            netlink
                .link(name)
                .map_err(|e| netlink_error("looking up", name, e))?
                .ok_or_else(|| RpcError::new(code::DATAPLANE, format!("{name} vanished")))?
        }
    };
    let have = netlink
        .addresses(link.index)
        .map_err(|e| netlink_error("reading the addresses of", name, e))?;
    for address in wanted.iter().filter(|a| !have.contains(a)) {
        netlink
            .add_address(link.index, *address)
            .map_err(|e| netlink_error(&format!("adding {address} to"), name, e))?;
    }
    let peer_link = netlink
        .link(&peer)
        .map_err(|e| netlink_error("looking up", &peer, e))?
        .ok_or_else(|| {
            RpcError::new(
                code::EXISTS,
                format!("{name} is a veth whose peer is not {peer}: not an internal port"),
            )
        })?;
    netlink
        .set_up(link.index)
        .map_err(|e| netlink_error("bringing up", name, e))?;
    netlink
        .set_up(peer_link.index)
        .map_err(|e| netlink_error("bringing up", &peer, e))?;
    // As for a container's end: with GRO on, the host side takes frames the kernel fast
    // path redirects to it.
    if let Err(e) = xvs_sys::netlink::generic::set_gro(None, name, true) {
        tracing::warn!(name, "cannot enable GRO on the internal port: {e}");
    }
    Ok(())
}

/// The MAC of internal port `name`'s host side: locally administered, unicast, derived
/// from the name (FNV-1a).
pub(crate) fn stable_mac(name: &str) -> [u8; 6] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in "xvs-internal/".bytes().chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let b = hash.to_be_bytes();
    [(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]]
}

/// Deletes internal port `name`'s veth pair (the peer goes with it); nothing if it is gone.
pub(crate) fn remove(name: &str) {
    let deleted = Rtnetlink::open().and_then(|mut netlink| netlink.delete_link(name));
    match deleted {
        Ok(true) => tracing::info!(name, "internal port's interface deleted"),
        Ok(false) => {}
        Err(e) => tracing::warn!(name, "cannot delete the internal port's interface: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn names_map_both_ways() {
        let internal = state::Port {
            internal: Some(state::Internal::default()),
            ..state::Port::default()
        };
        let desired = DesiredState {
            ports: BTreeMap::from([
                ("br0".to_owned(), internal.clone()),
                ("veth1".to_owned(), state::Port::default()),
            ]),
            ..DesiredState::default()
        };
        assert_eq!(switch_name("br0", &internal), "br0-sw");
        assert_eq!(switch_name("veth1", &state::Port::default()), "veth1");
        assert_eq!(desired_name(&desired, "br0-sw"), "br0");
        assert_eq!(desired_name(&desired, "veth1"), "veth1");
        assert_eq!(desired_name(&desired, "other-sw"), "other-sw");
        let mac = stable_mac("br0");
        assert_eq!(mac[0] & 0x03, 0x02, "local unicast");
        assert_eq!(mac, stable_mac("br0"));
        assert_ne!(mac, stable_mac("br1"));
    }

    #[test]
    fn names_and_addresses_are_checked() {
        let ok = state::Internal {
            addrs: vec!["10.1.0.1/24".into(), "fd00::1/64".into()],
            masquerade: false,
        };
        assert!(check("br-int", &ok).is_ok());
        assert!(check("thirteen-char", &ok).is_err());
        assert!(check("a/b", &ok).is_err());
        let bad = state::Internal {
            addrs: vec!["10.1.0.1".into()],
            masquerade: false,
        };
        assert!(check("br0", &bad).is_err());
    }
}
