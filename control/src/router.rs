//! The router's part of the desired state, as `add-addr`, `del-addr`, `add-route` and
//! `del-route` change it. Whether a change applies (an address used twice, a route of mixed
//! families) is found when the configuration is derived from the new state.

use std::net::IpAddr;

use flowtable::config::ConfigError;
use flowtable::route::parse_prefix;
use xvs_proto::router::{AddrParams, RouteParams};
use xvs_proto::state::{Binding, DesiredState, RouterInterface, StaticRoute};
use xvs_proto::vlan::check_vid;
use xvs_proto::{RpcError, code};

use crate::reconcile::{bad_spec, parse_addr, parse_mac};

/// Where `name` puts a router interface: on the port of that name, else on VLAN N for
/// `vlanN`.
///
/// # Errors
/// [`code::NO_SUCH_PORT`] for a name that is neither, an invalid-parameters error for a VLAN
/// out of range.
fn binding(desired: &DesiredState, name: &str) -> Result<Binding, RpcError> {
    if desired.ports.contains_key(name) {
        return Ok(Binding::Port(name.to_owned()));
    }
    if let Some(vid) = name
        .strip_prefix("vlan")
        .and_then(|v| v.parse::<u16>().ok())
    {
        return Ok(Binding::Vlan(check_vid(vid)?));
    }
    Err(RpcError::new(
        code::NO_SUCH_PORT,
        format!("no such port: {name} (or use vlanN for a VLAN)"),
    ))
}

/// The address of `addr/len` as stored (its address part).
fn address_of(text: &str) -> Option<IpAddr> {
    text.split_once('/').and_then(|(a, _)| a.parse().ok())
}

/// `add-addr`: gives the interface on `p.name` the address, creating the interface if it has
/// none yet; a MAC given replaces the interface's.
///
/// # Errors
/// No such port or VLAN, or an address or MAC that does not parse.
pub(crate) fn add_addr(desired: &mut DesiredState, p: AddrParams) -> Result<(), RpcError> {
    let on = binding(desired, &p.name)?;
    let (addr, len) = parse_addr(&p.addr)?;
    let mac = p
        .mac
        .as_deref()
        .map(|m| parse_mac(m).map(|mac| mac.to_string()))
        .transpose()?;
    let text = format!("{addr}/{len}");
    match desired.interfaces.iter_mut().find(|i| i.on == on) {
        Some(interface) => {
            interface.addrs.push(text);
            if mac.is_some() {
                interface.mac = mac;
            }
        }
        None => desired.interfaces.push(RouterInterface {
            on,
            mac,
            addrs: vec![text],
        }),
    }
    Ok(())
}

/// `del-addr`: removes the address (given with or without its length) from the interface on
/// `p.name`, and the interface once it has none left.
///
/// # Errors
/// No such port or VLAN, an address that does not parse, or one the interface does not have.
pub(crate) fn del_addr(desired: &mut DesiredState, p: &AddrParams) -> Result<(), RpcError> {
    let on = binding(desired, &p.name)?;
    let addr: IpAddr = match p.addr.split_once('/') {
        Some(_) => parse_addr(&p.addr)?.0,
        None => p
            .addr
            .parse()
            .map_err(|_| bad_spec(format!("{:?} is not an IP address", p.addr)))?,
    };
    let index = desired
        .interfaces
        .iter()
        .position(|i| i.on == on && i.addrs.iter().any(|a| address_of(a) == Some(addr)))
        .ok_or_else(|| bad_spec(ConfigError::NotFound(format!("address {addr} there"))))?;
    let interface = &mut desired.interfaces[index];
    interface.addrs.retain(|a| address_of(a) != Some(addr));
    if interface.addrs.is_empty() {
        desired.interfaces.remove(index);
    }
    Ok(())
}

/// The route of `prefix` in `desired`, if any.
fn route_index(desired: &DesiredState, prefix: (IpAddr, u8)) -> Option<usize> {
    desired
        .routes
        .iter()
        .position(|r| parse_prefix(&r.prefix).ok() == Some(prefix))
}

/// `add-route`: adds a static route, or replaces the next hop of the route to that prefix.
///
/// # Errors
/// A prefix or next hop that does not parse, or no next hop.
pub(crate) fn add_route(desired: &mut DesiredState, p: &RouteParams) -> Result<(), RpcError> {
    let (prefix, len) = parse_prefix(&p.prefix).map_err(bad_spec)?;
    let via = p
        .via
        .as_deref()
        .ok_or_else(|| bad_spec("a static route needs a next hop (via)"))?;
    let via: IpAddr = via
        .parse()
        .map_err(|_| bad_spec(format!("next hop {via:?} is not an IP address")))?;
    let route = StaticRoute {
        prefix: format!("{prefix}/{len}"),
        via,
    };
    match route_index(desired, (prefix, len)) {
        Some(i) => desired.routes[i] = route,
        None => desired.routes.push(route),
    }
    Ok(())
}

/// `del-route`: removes the static route to the prefix.
///
/// # Errors
/// A prefix that does not parse, or no route to it.
pub(crate) fn del_route(desired: &mut DesiredState, p: &RouteParams) -> Result<(), RpcError> {
    let (prefix, len) = parse_prefix(&p.prefix).map_err(bad_spec)?;
    let index = route_index(desired, (prefix, len))
        .ok_or_else(|| bad_spec(ConfigError::NotFound(format!("route {prefix}/{len}"))))?;
    desired.routes.remove(index);
    Ok(())
}

/// Forgets what the router had on port `name`, as the switch does when a port goes.
pub(crate) fn forget_port(desired: &mut DesiredState, name: &str) {
    desired
        .interfaces
        .retain(|i| i.on != Binding::Port(name.to_owned()));
}

#[cfg(test)]
mod tests {
    use xvs_proto::state::Port;

    use super::*;

    fn addr(name: &str, addr: &str, mac: Option<&str>) -> AddrParams {
        AddrParams {
            name: name.into(),
            addr: addr.into(),
            mac: mac.map(Into::into),
        }
    }

    #[test]
    fn addresses_gather_on_their_interface_and_leave_it() {
        let mut desired = DesiredState::default();
        desired.ports.insert("a".into(), Port::default());
        add_addr(&mut desired, addr("a", "10.1.0.254/24", None)).unwrap();
        add_addr(&mut desired, addr("vlan7", "10.7.0.254/24", None)).unwrap();
        add_addr(&mut desired, addr("a", "fd00::1/64", Some("2:0:0:0:0:FE"))).unwrap();
        assert_eq!(desired.interfaces.len(), 2);
        assert_eq!(desired.interfaces[0].addrs, ["10.1.0.254/24", "fd00::1/64"]);
        assert_eq!(
            desired.interfaces[0].mac.as_deref(),
            Some("02:00:00:00:00:fe")
        );
        assert_eq!(desired.interfaces[1].on, Binding::Vlan(7));

        let e = del_addr(&mut desired, &addr("a", "10.9.9.9", None)).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (code::BAD_SPEC, "no such address 10.9.9.9 there")
        );
        del_addr(&mut desired, &addr("a", "10.1.0.254/24", None)).unwrap();
        del_addr(&mut desired, &addr("a", "fd00::1", None)).unwrap();
        assert_eq!(
            desired.interfaces.len(),
            1,
            "an interface without addresses goes"
        );

        let e = add_addr(&mut desired, addr("nope", "10.0.0.1/24", None)).unwrap_err();
        assert_eq!(e.code, code::NO_SUCH_PORT);
        let e = add_addr(&mut desired, addr("vlan4095", "10.0.0.1/24", None)).unwrap_err();
        assert_eq!(e.code, code::INVALID_PARAMS);
        let e = add_addr(&mut desired, addr("vlan7", "10.0.0.1/24", Some("x"))).unwrap_err();
        assert!(e.message.starts_with("mac \"x\": "), "{}", e.message);

        add_addr(&mut desired, addr("a", "10.1.0.254/24", None)).unwrap();
        forget_port(&mut desired, "a");
        assert_eq!(desired.interfaces.len(), 1);
    }

    #[test]
    fn routes_are_kept_by_prefix() {
        let mut desired = DesiredState::default();
        let route = |prefix: &str, via: Option<&str>| RouteParams {
            prefix: prefix.into(),
            via: via.map(Into::into),
        };
        add_route(&mut desired, &route("10.9.0.0/16", Some("10.1.0.1"))).unwrap();
        add_route(&mut desired, &route("10.9.0.0/16", Some("10.1.0.2"))).unwrap();
        add_route(&mut desired, &route("10.8.0.1", Some("10.1.0.1"))).unwrap();
        assert_eq!(desired.routes.len(), 2);
        assert_eq!(desired.routes[0].via.to_string(), "10.1.0.2");
        assert_eq!(desired.routes[1].prefix, "10.8.0.1/32");
        let e = add_route(&mut desired, &route("10.9.0.0/16", None)).unwrap_err();
        assert_eq!(e.message, "a static route needs a next hop (via)");
        let e = del_route(&mut desired, &route("10.7.0.0/16", None)).unwrap_err();
        assert_eq!(e.message, "no such route 10.7.0.0/16");
        del_route(&mut desired, &route("10.9.0.0/16", None)).unwrap();
        del_route(&mut desired, &route("10.8.0.1/32", None)).unwrap();
        assert!(desired.routes.is_empty());
    }
}
