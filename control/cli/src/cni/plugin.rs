//! The CNI commands.
//!
//! An attachment `(network, CNI_CONTAINERID, CNI_IFNAME)` is a veth pair whose host end is
//! named from a hash of those three (so DEL and CHECK find it without any state of ours) and is
//! an xvsd port with `external_ids` `owner=xvs-cni`, `cni_network`, `container`, `ifname`,
//! `netns`.

use std::path::Path;

use ipnet::IpNet;
use serde_json::{Value, json};
use xvs_proto::client::{Client, ClientError};
use xvs_proto::methods::{AddPort, SetPort, ShowConfig, Version};
use xvs_proto::ports::{AddPortParams, SetPortParams};
use xvs_proto::state::{Internal, MAX_INTERNAL_NAME};
use xvs_proto::{Empty, VlanSpec};
use xvs_sys::netlink::{NetlinkError, Rtnetlink};

use super::env::{Command, Invocation};
use super::ipam::Ipam;
use super::types::{
    CniError, CniResult, Interface, LATEST, NetConf, RouteEntry, SUPPORTED_VERSIONS, at_least,
    check_version, code,
};
use crate::attach::{
    AttachError, AttachSpec, ContainerSide, ExternalIds, HOST_PREFIX, Netns, OWNER_KEY, Route,
    attach, derived_ifname, detach, find_ports, mac_string, parse_mac,
};

/// The `owner` of xvs-cni's ports.
pub const OWNER: &str = "xvs-cni";

/// What to print on success.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A result object (ADD, VERSION).
    Print(Value),
    /// Nothing (DEL, CHECK, STATUS, GC).
    Silent,
}

/// A failed command: the error and the version to print it in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct Failure {
    /// The error.
    pub error: CniError,
    /// The configuration's version when we speak it, else the newest.
    pub version: String,
}

/// Runs one invocation: parameters through `get` (the environment), the configuration in
/// `stdin`.
///
/// # Errors
/// A [`Failure`] to print on standard output before exiting non-zero.
pub fn run(get: &dyn Fn(&str) -> Option<String>, stdin: &[u8]) -> Result<Outcome, Failure> {
    let stdin_version = serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(str::to_owned));
    let mut version = stdin_version
        .clone()
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| LATEST.to_owned());
    let fail = |error: CniError, version: &str| Failure {
        error,
        version: version.to_owned(),
    };
    let inv = Invocation::from_env(get).map_err(|e| fail(e, &version))?;
    if inv.command == Command::Version {
        return Ok(Outcome::Print(json!({
            "cniVersion": stdin_version.unwrap_or_else(|| LATEST.to_owned()),
            "supportedVersions": SUPPORTED_VERSIONS,
        })));
    }
    let conf = NetConf::parse(stdin).map_err(|e| fail(e, &version))?;
    check_version(&conf.cni_version).map_err(|e| fail(e, &version))?;
    version.clone_from(&conf.cni_version);
    let min = match inv.command {
        Command::Check => "0.4.0",
        Command::Status | Command::Gc => "1.1.0",
        _ => "0.3.0",
    };
    if !at_least(&conf.cni_version, min) {
        return Err(fail(
            CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "config version {} does not allow {}",
                    conf.cni_version,
                    inv.command.name()
                ),
            ),
            &version,
        ));
    }
    let outcome = match inv.command {
        Command::Add => add(&inv, &conf).map(Outcome::Print),
        Command::Del => del(&inv, &conf).map(|()| Outcome::Silent),
        Command::Check => check(&inv, &conf).map(|()| Outcome::Silent),
        Command::Status => status(&inv, &conf).map(|()| Outcome::Silent),
        Command::Gc => gc(&inv, &conf).map(|()| Outcome::Silent),
        Command::Version => unreachable!("answered above"),
    };
    outcome.map_err(|e| fail(e, &version))
}

fn host_name(conf: &NetConf, container: &str, ifname: &str) -> String {
    derived_ifname(
        HOST_PREFIX,
        &format!("cni/{}/{container}/{ifname}", conf.name),
    )
}

fn client_error(e: ClientError) -> CniError {
    match e {
        ClientError::NotRunning(_) => CniError::new(code::TRY_AGAIN, e.to_string()),
        other => CniError::new(code::INTERNAL, format!("xvsd: {other}")),
    }
}

fn netlink_error(e: NetlinkError) -> CniError {
    CniError::new(code::INTERNAL, e.to_string())
}

fn attach_error(e: AttachError) -> CniError {
    match e {
        AttachError::Switch(c) => client_error(c),
        AttachError::IfnameTaken(_) | AttachError::HostNameTaken(_) => {
            CniError::new(code::INTERFACE_EXISTS, e.to_string())
        }
        AttachError::Invalid(_) | AttachError::BadIfname(_) => {
            CniError::new(code::INVALID_CONFIG, e.to_string())
        }
        AttachError::NoNetns { .. } => CniError::new(code::INVALID_ENV, format!("CNI_NETNS: {e}")),
        AttachError::Netlink(n) => netlink_error(n),
        AttachError::NotAttached(_) => CniError::new(code::INTERNAL, e.to_string()),
    }
}

fn open_netns(inv: &Invocation) -> Result<Netns, CniError> {
    let netns = Netns::open(&inv.netns, Path::new(&inv.netns)).map_err(attach_error)?;
    if netns.is_current() {
        return Err(CniError::new(
            code::INVALID_ENV,
            "CNI_NETNS is the plugin's own network namespace",
        ));
    }
    Ok(netns)
}

fn add(inv: &Invocation, conf: &NetConf) -> Result<Value, CniError> {
    let netns = open_netns(inv)?;
    let mac =
        match (&conf.runtime_mac, &inv.args.mac) {
            (Some(m), _) => Some(parse_mac(m).map_err(|e| {
                CniError::new(code::INVALID_CONFIG, format!("runtimeConfig.mac: {e}"))
            })?),
            (None, Some(m)) => Some(
                parse_mac(m)
                    .map_err(|e| CniError::new(code::INVALID_ENV, format!("CNI_ARGS MAC: {e}")))?,
            ),
            (None, None) => None,
        };
    let mut result = match &conf.prev_result {
        Some(prev) => CniResult::parse(prev)?,
        None => CniResult::default(),
    };
    let host = host_name(conf, &inv.container_id, &inv.ifname);

    // Everything that can be checked before an address is taken from IPAM.
    Client::connect(&conf.socket)
        .and_then(|mut c| c.call::<Version>(&Empty))
        .map_err(client_error)?;
    if Rtnetlink::open_in(&netns.file)
        .and_then(|mut n| n.link(&inv.ifname))
        .map_err(netlink_error)?
        .is_some()
    {
        return Err(CniError::new(
            code::INTERFACE_EXISTS,
            format!("{} already has an interface {}", inv.netns, inv.ifname),
        ));
    }
    if Rtnetlink::open()
        .and_then(|mut n| n.link(&host))
        .map_err(netlink_error)?
        .is_some()
    {
        return Err(CniError::new(
            code::INTERFACE_EXISTS,
            format!(
                "container {} is on network {} as {} already (host port {host})",
                inv.container_id, conf.name, inv.ifname
            ),
        ));
    }

    let ipam = Ipam::of(conf, inv)?;
    let addresses = match &ipam {
        Some(ipam) => ipam.add(inv, conf)?,
        None => CniResult::default(),
    };
    let mut addresses = addresses;
    if conf.is_gateway {
        gateway(conf, &mut addresses)?;
    }
    let attached = attach_with(inv, conf, &netns, &host, mac, &addresses).inspect_err(|_| {
        if let Some(ipam) = &ipam
            && let Err(e) = ipam.del(inv, conf, None)
        {
            tracing::warn!("releasing the addresses of a failed ADD: {e}");
        }
    })?;

    let base = result.interfaces.len();
    result.interfaces.push(Interface {
        name: attached.host_name.clone(),
        mac: attached.host_mac.map(mac_string),
        mtu: conf.mtu,
        sandbox: None,
        extra: Default::default(),
    });
    result.interfaces.push(Interface {
        name: inv.ifname.clone(),
        mac: attached.mac.map(mac_string),
        mtu: conf.mtu,
        sandbox: Some(inv.netns.clone()),
        extra: Default::default(),
    });
    for mut ip in addresses.ips {
        ip.interface = Some(base + 1);
        result.ips.push(ip);
    }
    result.routes.extend(addresses.routes);
    if result.dns.is_empty() {
        result.dns = addresses.dns;
    }
    Ok(result.to_json(&conf.cni_version))
}

/// The internal port that carries network `conf`'s gateway addresses (`isGateway`):
/// `xvsg` and 8 hex digits of the network's name, which fits an internal port's 12.
fn gateway_port(conf: &NetConf) -> String {
    derived_ifname("xvsg", &format!("cni/{}", conf.name))[..MAX_INTERNAL_NAME].to_owned()
}

/// `isGateway`: makes sure the network's internal port is there with the gateway of every
/// address IPAM gave (the host is the gateway; masquerading with `ipMasq`), and with
/// `isDefaultGateway` gives the container a default route through it. The port stays when
/// the container goes, as the bridge plugin's bridge does.
fn gateway(conf: &NetConf, addresses: &mut CniResult) -> Result<(), CniError> {
    let mut gateways = Vec::new();
    for ip in &addresses.ips {
        let Some(gw) = ip.gateway else {
            continue;
        };
        let net = IpNet::new(gw, ip.address.prefix_len())
            .map_err(|e| CniError::new(code::INVALID_CONFIG, format!("gateway {gw}: {e}")))?;
        gateways.push(net);
        if conf.is_default_gateway {
            let default: IpNet = if gw.is_ipv4() { "0.0.0.0/0" } else { "::/0" }
                .parse()
                .expect("constant");
            if !addresses.routes.iter().any(|r| r.dst == default) {
                addresses.routes.push(RouteEntry {
                    dst: default,
                    gw: Some(gw),
                    extra: Default::default(),
                });
            }
        }
    }
    if gateways.is_empty() {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            "isGateway: IPAM gave no gateway (set ipam.ranges[].gateway or ipam.gateway)",
        ));
    }
    let name = gateway_port(conf);
    let mut client = Client::connect(&conf.socket).map_err(client_error)?;
    let config = client.call::<ShowConfig>(&Empty).map_err(client_error)?;
    let internal = Internal {
        addrs: gateways.iter().map(ToString::to_string).collect(),
        masquerade: conf.ip_masq,
    };
    match config.ports.get(&name) {
        None => {
            let mut external_ids = ExternalIds::new();
            external_ids.insert(OWNER_KEY.to_owned(), OWNER.to_owned());
            external_ids.insert("cni_network".to_owned(), conf.name.clone());
            client
                .call::<AddPort>(&AddPortParams {
                    name,
                    vlan: conf.vlan.map(|tag| VlanSpec::Access { tag }),
                    external_ids,
                    internal: Some(internal),
                    ..AddPortParams::default()
                })
                .map_err(client_error)?;
        }
        Some(port) => {
            let have = port.internal.as_ref();
            let missing = internal
                .addrs
                .iter()
                .any(|a| !have.is_some_and(|h| h.addrs.contains(a)));
            if missing {
                return Err(CniError::new(
                    code::INVALID_CONFIG,
                    format!(
                        "the gateway port {name} of network {} has other addresses than {}",
                        conf.name,
                        internal.addrs.join(",")
                    ),
                ));
            }
            if have.is_some_and(|h| h.masquerade != conf.ip_masq) {
                client
                    .call::<SetPort>(&SetPortParams {
                        name,
                        masquerade: Some(conf.ip_masq),
                        ..SetPortParams::default()
                    })
                    .map_err(client_error)?;
            }
        }
    }
    Ok(())
}

fn attach_with(
    inv: &Invocation,
    conf: &NetConf,
    netns: &Netns,
    host: &str,
    mac: Option<[u8; 6]>,
    addresses: &CniResult,
) -> Result<crate::attach::Attached, CniError> {
    // A route without a next hop goes through the gateway of its family, as the reference
    // plugins do.
    let routes = addresses
        .routes
        .iter()
        .map(|r| Route {
            destination: r.dst,
            gateway: r.gw.or_else(|| {
                addresses
                    .ips
                    .iter()
                    .filter(|ip| ip.address.addr().is_ipv4() == r.dst.addr().is_ipv4())
                    .find_map(|ip| ip.gateway)
            }),
        })
        .collect();
    let external_ids = ExternalIds::from([
        (OWNER_KEY.to_owned(), OWNER.to_owned()),
        ("cni_network".to_owned(), conf.name.clone()),
        ("container".to_owned(), inv.container_id.clone()),
        ("ifname".to_owned(), inv.ifname.clone()),
        ("netns".to_owned(), inv.netns.clone()),
    ]);
    attach(&AttachSpec {
        socket: &conf.socket,
        host_name: host.to_owned(),
        peer_name: inv.ifname.clone(),
        container: Some(ContainerSide {
            netns,
            addresses: addresses.ips.iter().map(|ip| ip.address).collect(),
            routes,
        }),
        mac,
        mtu: conf.mtu,
        vlan: conf.vlan,
        external_ids,
        mac_lock: conf.mac_lock,
        publish: Vec::new(),
    })
    .map_err(attach_error)
}

fn del(inv: &Invocation, conf: &NetConf) -> Result<(), CniError> {
    let host = host_name(conf, &inv.container_id, &inv.ifname);
    let mut first_error = None;
    match detach(&conf.socket, &host) {
        Ok(done) => tracing::debug!(port = host, ?done, "DEL"),
        Err(e) => first_error = Some(attach_error(e)),
    }
    match Ipam::of(conf, inv) {
        Ok(Some(ipam)) => {
            if let Err(e) = ipam.del(inv, conf, None) {
                first_error.get_or_insert(e);
            }
        }
        Ok(None) => {}
        Err(e) => {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn check_failed(msg: impl Into<String>) -> CniError {
    CniError::new(code::CHECK_FAILED, msg)
}

fn check(inv: &Invocation, conf: &NetConf) -> Result<(), CniError> {
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::new(code::INVALID_CONFIG, "CHECK needs a prevResult"))?;
    let prev = CniResult::parse(prev)?;
    let index = prev
        .interfaces
        .iter()
        .position(|i| i.name == inv.ifname && i.sandbox.as_deref() == Some(inv.netns.as_str()))
        .or_else(|| {
            prev.interfaces
                .iter()
                .position(|i| i.name == inv.ifname && i.sandbox.is_some())
        })
        .ok_or_else(|| check_failed(format!("prevResult has no interface {}", inv.ifname)))?;
    let expected = &prev.interfaces[index];

    let netns =
        Netns::open(&inv.netns, Path::new(&inv.netns)).map_err(|e| check_failed(e.to_string()))?;
    let mut inside = Rtnetlink::open_in(&netns.file).map_err(netlink_error)?;
    let link = inside
        .link(&inv.ifname)
        .map_err(netlink_error)?
        .ok_or_else(|| {
            check_failed(format!(
                "interface {} is missing from {}",
                inv.ifname, inv.netns
            ))
        })?;
    if let (Some(want), Some(have)) = (&expected.mac, link.mac)
        && !want.eq_ignore_ascii_case(&mac_string(have))
    {
        return Err(check_failed(format!(
            "interface {} has MAC {} where {want} was configured",
            inv.ifname,
            mac_string(have)
        )));
    }
    if !link.up {
        return Err(check_failed(format!("interface {} is down", inv.ifname)));
    }
    let present = inside.addresses(link.index).map_err(netlink_error)?;
    for ip in prev.ips.iter().filter(|ip| ip.interface == Some(index)) {
        if !present.contains(&ip.address) {
            return Err(check_failed(format!(
                "address {} is missing on {}",
                ip.address, inv.ifname
            )));
        }
    }

    let host = host_name(conf, &inv.container_id, &inv.ifname);
    if Rtnetlink::open()
        .and_then(|mut n| n.link(&host))
        .map_err(netlink_error)?
        .is_none()
    {
        return Err(check_failed(format!("host interface {host} is missing")));
    }
    let ports = find_ports(
        &conf.socket,
        &[(OWNER_KEY, OWNER), ("cni_network", &conf.name)],
    )
    .map_err(attach_error)?;
    if !ports.iter().any(|(name, _)| *name == host) {
        return Err(check_failed(format!("xvsd has no port {host}")));
    }
    if let Some(ipam) = Ipam::of(conf, inv)? {
        ipam.check(inv, conf)?;
    }
    Ok(())
}

fn status(inv: &Invocation, conf: &NetConf) -> Result<(), CniError> {
    Client::connect(&conf.socket)
        .and_then(|mut c| c.call::<Version>(&Empty))
        .map_err(|e| CniError::new(code::NOT_AVAILABLE, format!("xvsd: {e}")))?;
    if let Some(ipam) = Ipam::of(conf, inv)? {
        ipam.status_or_gc(inv, Command::Status, conf)?;
    }
    Ok(())
}

fn gc(inv: &Invocation, conf: &NetConf) -> Result<(), CniError> {
    let valid: Vec<(String, String)> = conf.raw["cni.dev/valid-attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            Some((
                a["containerID"].as_str()?.to_owned(),
                a["ifname"].as_str()?.to_owned(),
            ))
        })
        .collect();
    let mut errors = Vec::new();
    let ipam = Ipam::of(conf, inv).unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    match find_ports(
        &conf.socket,
        &[(OWNER_KEY, OWNER), ("cni_network", &conf.name)],
    ) {
        Ok(ports) => {
            for (port, ids) in ports {
                let container = ids.get("container").cloned().unwrap_or_default();
                let ifname = ids.get("ifname").cloned().unwrap_or_default();
                if valid.contains(&(container.clone(), ifname.clone())) {
                    continue;
                }
                tracing::info!(port, container, ifname, "GC: stale attachment");
                if let Err(e) = detach(&conf.socket, &port) {
                    errors.push(attach_error(e));
                }
                if let Some(ipam) = &ipam
                    && let Err(e) = ipam.del(inv, conf, Some((&container, &ifname)))
                {
                    errors.push(e);
                }
            }
        }
        // A stopped xvsd has no ports left to collect.
        Err(AttachError::Switch(ClientError::NotRunning(_))) => {}
        Err(e) => errors.push(attach_error(e)),
    }
    if let Some(ipam) = &ipam
        && let Err(e) = ipam.status_or_gc(inv, Command::Gc, conf)
    {
        errors.push(e);
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        n => {
            let first = errors.remove(0);
            let rest: Vec<String> = errors.iter().map(ToString::to_string).collect();
            Err(first.details(format!("and {} more: {}", n - 1, rest.join("; "))))
        }
    }
}
