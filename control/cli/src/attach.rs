//! Wiring containers to xvsd: a veth pair whose container end is configured in the container's
//! network namespace and whose host end becomes a switch port, and the way back.
//!
//! `xvsctl attach`, the CNI plugin and the Docker plugin all go through [`attach`] and
//! [`detach`]. An attach either completes or leaves nothing behind: every step after the veth
//! exists is undone (by deleting the veth, which takes its peer and every address and route on
//! it along) when a later step fails.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde_json::{Value, json};
use xvs_proto::client::{Client, ClientError};
use xvs_proto::methods::{AddPort, DelPort, Show, Version};
use xvs_proto::ports::{AddPortParams, PortName};
use xvs_proto::state::Publish;
use xvs_proto::status::ShowResult;
use xvs_proto::{Empty, VlanSpec, code};
use xvs_sys::netlink::{NetlinkError, Rtnetlink, VethPair};

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;

/// The prefix of every host-side veth xvs makes.
pub const HOST_PREFIX: &str = "xvs";

/// Why attaching or detaching failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The namespace reference names no network namespace.
    #[error("network namespace {spec:?} not found ({path}): {source}")]
    NoNetns {
        /// What the caller said.
        spec: String,
        /// Where we looked.
        path: PathBuf,
        /// Why it could not be opened.
        #[source]
        source: std::io::Error,
    },
    /// An interface name that Linux would refuse.
    #[error("bad interface name {0:?} (1-15 characters, no '/', ':' or whitespace)")]
    BadIfname(String),
    /// The container already has an interface of that name.
    #[error("the namespace already has an interface called {0}")]
    IfnameTaken(String),
    /// The host already has an interface of that name.
    #[error("the host already has an interface called {0} (attached already?)")]
    HostNameTaken(String),
    /// An address, gateway or MTU that cannot be applied.
    #[error("{0}")]
    Invalid(String),
    /// Talking to xvsd failed (not running, refused, ...).
    #[error(transparent)]
    Switch(#[from] ClientError),
    /// The kernel refused a netlink request.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// Nothing is attached there.
    #[error("nothing of xvs is attached to {0}")]
    NotAttached(String),
}

/// An open network namespace, with the identity that survives renaming: its inode.
#[derive(Debug)]
pub struct Netns {
    /// The path it was opened at.
    pub path: PathBuf,
    /// The open namespace file (keeps the namespace alive while we work on it).
    pub file: File,
    /// The namespace's inode number (`ls -i /proc/PID/ns/net`, `ip netns identify`).
    pub inode: u64,
}

impl Netns {
    /// Opens a namespace given as a name under `/run/netns` (`ip netns add NAME`), a path
    /// (`/proc/1234/ns/net`, a bind mount), or a PID.
    ///
    /// # Errors
    /// [`AttachError::NoNetns`] when there is nothing to open there.
    pub fn resolve(spec: &str) -> Result<Netns, AttachError> {
        let path = if spec.contains('/') {
            PathBuf::from(spec)
        } else if !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_digit()) {
            PathBuf::from(format!("/proc/{spec}/ns/net"))
        } else {
            Path::new("/run/netns").join(spec)
        };
        Netns::open(spec, &path)
    }

    /// Opens the namespace at `path`; `spec` is what to call it in errors.
    ///
    /// # Errors
    /// [`AttachError::NoNetns`] when the path cannot be opened or is not a namespace (nsfs).
    pub fn open(spec: &str, path: &Path) -> Result<Netns, AttachError> {
        let no = |source| AttachError::NoNetns {
            spec: spec.to_owned(),
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(no)?;
        let meta = file.metadata().map_err(no)?;
        // An nsfs inode is a file with no data blocks whose device is nsfs's; the reliable
        // check is the kernel's own, which setns(2) does when we enter. Here we only refuse
        // what certainly is not one.
        if meta.is_dir() {
            return Err(no(std::io::Error::other("is a directory")));
        }
        Ok(Netns {
            path: path.to_owned(),
            inode: meta.ino(),
            file,
        })
    }

    /// Whether this is the namespace the calling process runs in.
    pub fn is_current(&self) -> bool {
        std::fs::metadata("/proc/self/ns/net").is_ok_and(|m| m.ino() == self.inode)
    }
}

/// A stable name derived from `key`: `prefix` followed by hex digits of a 64-bit FNV-1a hash,
/// 15 characters in all (IFNAMSIZ allows 15). Stable across versions and machines, so the same
/// attachment always gets the same host name and a retry finds it.
pub fn derived_ifname(prefix: &str, key: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let digits = MAX_IFNAME.saturating_sub(prefix.len());
    let hex = format!("{hash:016x}");
    format!("{prefix}{}", &hex[..digits.min(16)])
}

/// Checks a Linux interface name.
///
/// # Errors
/// [`AttachError::BadIfname`] when the kernel would refuse it.
pub fn check_ifname(name: &str) -> Result<(), AttachError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(AttachError::BadIfname(name.to_owned()))
    }
}

/// A route to install in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Where to.
    pub destination: IpNet,
    /// Via (`None`: on-link).
    pub gateway: Option<IpAddr>,
}

/// How the container end is set up once it is in its namespace.
#[derive(Debug)]
pub struct ContainerSide<'a> {
    /// The namespace.
    pub netns: &'a Netns,
    /// Addresses with prefix lengths.
    pub addresses: Vec<IpNet>,
    /// Routes, in order (a gateway must be reachable through an earlier address or route).
    pub routes: Vec<Route>,
}

/// One veth pair wired to the switch.
#[derive(Debug)]
pub struct AttachSpec<'a> {
    /// xvsd's command socket.
    pub socket: &'a Path,
    /// The host end, which becomes the switch port.
    pub host_name: String,
    /// The other end's name (in the container when `container` is set).
    pub peer_name: String,
    /// Where the other end goes and how it is configured; `None` leaves it, down and without
    /// addresses, in the host namespace for someone else (Docker) to move.
    pub container: Option<ContainerSide<'a>>,
    /// The other end's MAC (`None`: random, chosen by the kernel).
    pub mac: Option<[u8; 6]>,
    /// Both ends' MTU.
    pub mtu: Option<u32>,
    /// Make the port an access port of this VLAN (`None`: the port's default).
    pub vlan: Option<u16>,
    /// Recorded on the port, for finding it again.
    pub external_ids: BTreeMap<String, String>,
    /// Lock the port to the other end's MAC: the container cannot send as another host.
    pub mac_lock: bool,
    /// Host ports to forward to the container (an unspecified address is filled with the
    /// container's first IPv4 address).
    pub publish: Vec<Publish>,
}

/// What [`attach`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The switch port (host end).
    pub host_name: String,
    /// The host end's MAC.
    pub host_mac: Option<[u8; 6]>,
    /// The other end's name.
    pub peer_name: String,
    /// The other end's MAC.
    pub mac: Option<[u8; 6]>,
    /// The other end's ifindex in its namespace.
    pub peer_index: u32,
}

impl Attached {
    /// A JSON report with a one-line `summary` for people.
    pub fn report(&self) -> Value {
        let mac = self.mac.map(mac_string);
        json!({
            "port": self.host_name,
            "port_mac": self.host_mac.map(mac_string),
            "ifname": self.peer_name,
            "mac": mac,
            "summary": format!(
                "attached {} ({}) as port {}",
                self.peer_name,
                mac.as_deref().unwrap_or("-"),
                self.host_name
            ),
        })
    }
}

/// A JSON report of what [`DetachArgs::run`] removed, with a one-line `summary`.
pub fn detach_report(done: &[(String, Detached)]) -> Value {
    let names: Vec<&str> = done.iter().map(|(n, _)| n.as_str()).collect();
    json!({
        "ports": done.iter().map(|(name, d)| json!({
            "port": name,
            "port_removed": d.port_removed,
            "link_removed": d.link_removed,
        })).collect::<Vec<_>>(),
        "summary": format!("detached {}", names.join(", ")),
    })
}

/// Deletes the host veth on drop unless disarmed: an attach that fails half-way leaves nothing.
struct VethGuard<'a> {
    host: &'a mut Rtnetlink,
    name: &'a str,
    armed: bool,
}

impl Drop for VethGuard<'_> {
    fn drop(&mut self) {
        if self.armed
            && let Err(e) = self.host.delete_link(self.name)
        {
            tracing::warn!(link = self.name, "undoing a failed attach: {e}");
        }
    }
}

/// Formats a MAC the usual way (`02:00:00:00:00:01`).
pub fn mac_string(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// Parses an interface's MAC: six hex bytes of one or two digits, separated by `:` or `-`,
/// that an interface may have (unicast, not all zeros: the kernel refuses the others with a
/// bare "Cannot assign requested address").
///
/// # Errors
/// [`AttachError::Invalid`] when it is not a MAC, or not one an interface may have.
pub fn parse_mac(text: &str) -> Result<[u8; 6], AttachError> {
    let bad = || {
        AttachError::Invalid(format!(
            "MAC {text:?}: not a MAC address (want six hex bytes like 02:00:00:00:00:01)"
        ))
    };
    let mut mac = [0u8; 6];
    let mut parts = text.split([':', '-']);
    for byte in &mut mac {
        let part = parts
            .next()
            .filter(|p| (1..=2).contains(&p.len()))
            .ok_or_else(bad)?;
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    if mac[0] & 1 != 0 {
        return Err(AttachError::Invalid(format!(
            "MAC {text}: is a multicast address (its first byte is odd); an interface needs a \
             unicast one, such as 02:00:00:00:00:01"
        )));
    }
    if mac == [0; 6] {
        return Err(AttachError::Invalid(format!(
            "MAC {text}: all zeros is no interface's address"
        )));
    }
    Ok(mac)
}

/// A locally administered unicast MAC derived from `key` (stable, like [`derived_ifname`]).
pub fn derived_mac(key: &str) -> [u8; 6] {
    let name = derived_ifname("", key);
    let mut mac = [0x02, 0, 0, 0, 0, 0];
    for (i, byte) in mac.iter_mut().enumerate().skip(1) {
        *byte = u8::from_str_radix(&name[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    mac
}

/// Creates the veth pair, configures the container end, and adds the host end to xvsd.
///
/// Order: connect to xvsd first (so that a stopped daemon costs nothing), check both names are
/// free, create the pair (the peer directly in the container's namespace), configure the
/// peer (addresses, up, routes, `lo` up), bring the host end up, then `add-port`. If any step
/// fails the veth is deleted again.
///
/// # Errors
/// [`AttachError::Switch`] when xvsd is not running or refuses the port,
/// [`AttachError::IfnameTaken`] / [`AttachError::HostNameTaken`] when a name is in use, a
/// netlink error otherwise.
pub fn attach(spec: &AttachSpec<'_>) -> Result<Attached, AttachError> {
    check_ifname(&spec.host_name)?;
    check_ifname(&spec.peer_name)?;
    if let Some(mtu) = spec.mtu
        && !(68..=65535).contains(&mtu)
    {
        return Err(AttachError::Invalid(format!(
            "MTU {mtu} is out of range 68-65535"
        )));
    }
    let mut client = Client::connect(spec.socket)?;
    client.call::<Version>(&Empty)?;

    let mut host = Rtnetlink::open()?;
    let mut inside = match &spec.container {
        Some(c) => {
            if c.netns.is_current() {
                return Err(AttachError::Invalid(format!(
                    "{} is the host's own network namespace",
                    c.netns.path.display()
                )));
            }
            Some(Rtnetlink::open_in(&c.netns.file)?)
        }
        None => None,
    };
    if host.link(&spec.host_name)?.is_some() {
        return Err(AttachError::HostNameTaken(spec.host_name.clone()));
    }
    let peer_ns = inside.as_mut().unwrap_or(&mut host);
    if peer_ns.link(&spec.peer_name)?.is_some() {
        return Err(if spec.container.is_some() {
            AttachError::IfnameTaken(spec.peer_name.clone())
        } else {
            AttachError::HostNameTaken(spec.peer_name.clone())
        });
    }

    host.add_veth(&VethPair {
        name: &spec.host_name,
        peer_name: &spec.peer_name,
        peer_netns: spec.container.as_ref().map(|c| &c.netns.file),
        peer_mac: spec.mac,
        mtu: spec.mtu,
        queues: None,
    })
    .map_err(|e| {
        if e.is_exists() {
            // Lost a race for one of the names: say which one is taken now.
            AttachError::HostNameTaken(format!("{} or {}", spec.host_name, spec.peer_name))
        } else {
            e.into()
        }
    })?;
    let mut guard = VethGuard {
        host: &mut host,
        name: &spec.host_name,
        armed: true,
    };

    let peer_ns = inside.as_mut().unwrap_or(&mut *guard.host);
    let peer = peer_ns
        .link(&spec.peer_name)?
        .ok_or_else(|| AttachError::Invalid(format!("{} vanished", spec.peer_name)))?;
    if let Some(container) = &spec.container {
        configure_container_side(peer_ns, peer.index, container)?;
    }
    let peer = peer_ns.link(&spec.peer_name)?.unwrap_or(peer);
    let peer_netns = spec.container.as_ref().map(|c| &c.netns.file);
    if let Err(e) = xvs_sys::netlink::generic::set_gro(peer_netns, &spec.peer_name, true) {
        // Forwarding works without it; only the kernel fast path cannot deliver here.
        tracing::warn!(
            ifname = spec.peer_name,
            "cannot enable GRO on the container side: {e}"
        );
    }

    let host_link = guard
        .host
        .link(&spec.host_name)?
        .ok_or_else(|| AttachError::Invalid(format!("{} vanished", spec.host_name)))?;
    guard.host.set_up(host_link.index)?;

    let lock = if spec.mac_lock { peer.mac } else { None };
    client.call::<AddPort>(&AddPortParams {
        name: spec.host_name.clone(),
        vlan: spec.vlan.map(|tag| VlanSpec::Access { tag }),
        external_ids: spec.external_ids.clone(),
        mac_lock: lock.map(mac_string).into_iter().collect(),
        publish: published(spec)?,
        ..AddPortParams::default()
    })?;
    guard.armed = false;
    Ok(Attached {
        host_name: spec.host_name.clone(),
        host_mac: host_link.mac,
        peer_name: spec.peer_name.clone(),
        mac: peer.mac,
        peer_index: peer.index,
    })
}

/// Adds interface `name` to xvsd as a port, an access port of `vlan` if given, with
/// `external_ids`, locked to source MAC `mac_lock` if given.
///
/// # Errors
/// xvsd refused (no such interface, exists already, bad VLAN) or could not be reached.
pub fn add_port(
    client: &mut Client,
    name: &str,
    vlan: Option<u16>,
    external_ids: &ExternalIds,
    mac_lock: Option<[u8; 6]>,
) -> Result<(), AttachError> {
    client.call::<AddPort>(&AddPortParams {
        name: name.to_owned(),
        vlan: vlan.map(|tag| VlanSpec::Access { tag }),
        external_ids: external_ids.clone(),
        mac_lock: mac_lock.map(mac_string).into_iter().collect(),
        ..AddPortParams::default()
    })?;
    Ok(())
}

/// The published ports of `spec`, each with the container's address.
///
/// # Errors
/// [`AttachError::Invalid`] when a port is published and the container has no IPv4 address.
fn published(spec: &AttachSpec<'_>) -> Result<Vec<Publish>, AttachError> {
    if spec.publish.is_empty() {
        return Ok(Vec::new());
    }
    let first_v4 = spec.container.as_ref().and_then(|c| {
        c.addresses.iter().find_map(|a| match a.addr() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
    });
    spec.publish
        .iter()
        .map(|p| {
            let addr = if p.addr.is_unspecified() {
                first_v4.ok_or_else(|| {
                    AttachError::Invalid(format!(
                        "--publish {}:{}: the container has no IPv4 address (give --ip)",
                        p.host_port, p.port
                    ))
                })?
            } else {
                p.addr
            };
            Ok(Publish { addr, ..p.clone() })
        })
        .collect()
}

fn configure_container_side(
    netlink: &mut Rtnetlink,
    index: u32,
    container: &ContainerSide<'_>,
) -> Result<(), AttachError> {
    for address in &container.addresses {
        netlink.add_address(index, *address)?;
    }
    netlink.set_up(index)?;
    if let Some(lo) = netlink.link("lo")?
        && !lo.up
    {
        netlink.set_up(lo.index)?;
    }
    for route in &container.routes {
        match netlink.add_route(route.destination, route.gateway, index) {
            Ok(()) => {}
            // Another interface of the container has that route (a second network's default
            // route): keep the first, as the address is usable without it.
            Err(e) if e.is_exists() => {
                tracing::warn!(route = %route.destination, "the container has this route already; skipped");
            }
            Err(NetlinkError::Os { source, .. })
                if source.raw_os_error() == Some(libc::ENETUNREACH) =>
            {
                return Err(AttachError::Invalid(format!(
                    "route to {} via {}: the gateway is not on any of the interface's networks",
                    route.destination,
                    route.gateway.map_or("-".into(), |g| g.to_string())
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// What [`detach`] found and removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Detached {
    /// xvsd had the port and removed it.
    pub port_removed: bool,
    /// The host veth existed and was deleted (with its peer).
    pub link_removed: bool,
    /// xvsd was not running (its ports are gone with it).
    pub switch_down: bool,
}

/// Removes port `host_name` from xvsd and deletes the veth. Idempotent: what is already gone
/// is skipped, and a stopped xvsd (whose ports went with it) is not an error.
///
/// # Errors
/// xvsd refused for another reason than "no such port", or the kernel refused the deletion.
pub fn detach(socket: &Path, host_name: &str) -> Result<Detached, AttachError> {
    let mut done = Detached::default();
    match Client::connect(socket) {
        Ok(mut client) => match client.call::<DelPort>(&PortName {
            name: host_name.to_owned(),
        }) {
            Ok(_) => done.port_removed = true,
            Err(ClientError::Rpc(e)) if e.code == code::NO_SUCH_PORT => {}
            Err(e) => return Err(e.into()),
        },
        Err(ClientError::NotRunning(_)) => done.switch_down = true,
        Err(e) => return Err(e.into()),
    }
    done.link_removed = Rtnetlink::open()?.delete_link(host_name)?;
    Ok(done)
}

pub use xvs_proto::ports::ExternalIds;

/// The ports of xvsd whose `external_ids` contain every pair in `wanted`, by name, with their
/// `external_ids`.
///
/// # Errors
/// xvsd is not running or answered badly.
pub fn find_ports(
    socket: &Path,
    wanted: &[(&str, &str)],
) -> Result<Vec<(String, ExternalIds)>, AttachError> {
    let show = Client::connect(socket)?.call::<Show>(&Empty)?;
    Ok(ports_matching(show, wanted))
}

/// The ports of `show`, present or absent, whose `external_ids` contain every pair of `wanted`.
fn ports_matching(show: ShowResult, wanted: &[(&str, &str)]) -> Vec<(String, ExternalIds)> {
    let present = show.ports.into_iter().map(|p| (p.name, p.external_ids));
    let absent = show.absent.into_iter().map(|p| (p.name, p.external_ids));
    present
        .chain(absent)
        .filter(|(_, ids)| {
            wanted
                .iter()
                .all(|(k, v)| ids.get(*k).is_some_and(|have| have == v))
        })
        .collect()
}

/// `xvsctl attach`: wire a network namespace to the switch.
#[derive(Debug, Clone, clap::Args)]
pub struct AttachArgs {
    /// The namespace: a name under /run/netns, a path, or a PID.
    pub netns: String,
    /// An address with prefix length for the interface (repeatable; IPv4 or IPv6).
    #[arg(long = "ip", value_name = "ADDR/LEN")]
    pub ips: Vec<IpNet>,
    /// Default gateway (repeatable: one IPv4 and one IPv6).
    #[arg(long = "gw", value_name = "ADDR")]
    pub gateways: Vec<IpAddr>,
    /// The interface's MAC (default: random).
    #[arg(long)]
    pub mac: Option<String>,
    /// MTU of both veth ends.
    #[arg(long)]
    pub mtu: Option<u32>,
    /// The interface's name inside the namespace.
    #[arg(long, default_value = "eth0")]
    pub ifname: String,
    /// Make the port an access port of VLAN N.
    #[arg(long, value_name = "N")]
    pub vlan: Option<u16>,
    /// Do not lock the port to the interface's MAC (by default the switch drops frames the
    /// namespace sends from any other source MAC).
    #[arg(long)]
    pub no_mac_lock: bool,
    /// Forward connections to HOSTPORT of the host's addresses to PORT of the namespace's
    /// IPv4 address (repeatable; the host's kernel does the DNAT; removed on detach).
    #[arg(long, value_name = "HOSTPORT:PORT[/tcp|udp]")]
    pub publish: Vec<Publish>,
}

/// `xvsctl detach`: undo `xvsctl attach`.
#[derive(Debug, Clone, clap::Args)]
pub struct DetachArgs {
    /// The namespace, as given to attach (or the same namespace by another of its names).
    pub netns: String,
    /// The interface's name inside the namespace.
    #[arg(long, default_value = "eth0")]
    pub ifname: String,
}

/// Who made a port, in its `external_ids`.
pub const OWNER_KEY: &str = "owner";

fn netns_host_name(inode: u64, ifname: &str) -> String {
    derived_ifname(HOST_PREFIX, &format!("netns/{inode}/{ifname}"))
}

impl AttachArgs {
    /// Attaches; the port's `external_ids` are `owner=xvsctl`, `container` (NETNS as given),
    /// `netns_inode` and `ifname`.
    ///
    /// # Errors
    /// See [`attach`]; nothing is left behind on error.
    pub fn run(&self, socket: &Path) -> Result<Attached, AttachError> {
        check_ifname(&self.ifname)?;
        let netns = Netns::resolve(&self.netns)?;
        let mac = self.mac.as_deref().map(parse_mac).transpose()?;
        let mut routes = Vec::new();
        for gw in &self.gateways {
            if !self.ips.iter().any(|ip| ip.contains(gw)) {
                return Err(AttachError::Invalid(format!(
                    "gateway {gw} is on none of the --ip networks"
                )));
            }
            let default: IpNet = match gw {
                IpAddr::V4(_) => "0.0.0.0/0",
                IpAddr::V6(_) => "::/0",
            }
            .parse()
            .expect("constant");
            routes.push(Route {
                destination: default,
                gateway: Some(*gw),
            });
        }
        let external_ids = BTreeMap::from([
            (OWNER_KEY.to_owned(), "xvsctl".to_owned()),
            ("container".to_owned(), self.netns.clone()),
            ("netns_inode".to_owned(), netns.inode.to_string()),
            ("ifname".to_owned(), self.ifname.clone()),
        ]);
        attach(&AttachSpec {
            socket,
            host_name: netns_host_name(netns.inode, &self.ifname),
            peer_name: self.ifname.clone(),
            container: Some(ContainerSide {
                netns: &netns,
                addresses: self.ips.clone(),
                routes,
            }),
            mac,
            mtu: self.mtu,
            vlan: self.vlan,
            external_ids,
            mac_lock: !self.no_mac_lock,
            publish: self.publish.clone(),
        })
    }
}

impl DetachArgs {
    /// Finds the port by `external_ids` (the namespace's inode and the interface name, or the
    /// NETNS string when the namespace is gone), removes it and deletes the veth.
    ///
    /// # Errors
    /// [`AttachError::NotAttached`] when nothing was found, or what [`detach`] says.
    pub fn run(&self, socket: &Path) -> Result<Vec<(String, Detached)>, AttachError> {
        let netns = Netns::resolve(&self.netns).ok();
        let mut names: Vec<String> = Vec::new();
        let found = match &netns {
            Some(ns) => find_ports(
                socket,
                &[
                    ("netns_inode", &ns.inode.to_string()),
                    ("ifname", &self.ifname),
                ],
            ),
            None => find_ports(
                socket,
                &[("container", &self.netns), ("ifname", &self.ifname)],
            ),
        };
        match found {
            Ok(ports) => names.extend(ports.into_iter().map(|(name, _)| name)),
            Err(AttachError::Switch(ClientError::NotRunning(_))) => {}
            Err(e) => return Err(e),
        }
        if let Some(ns) = &netns {
            // Also the veth of an attach whose port xvsd no longer has (xvsd restarted).
            let name = netns_host_name(ns.inode, &self.ifname);
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let mut done = Vec::new();
        for name in names {
            let d = detach(socket, &name)?;
            if d.port_removed || d.link_removed {
                done.push((name, d));
            }
        }
        if done.is_empty() {
            return Err(AttachError::NotAttached(format!(
                "{} (interface {})",
                self.netns, self.ifname
            )));
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_fit_and_differ() {
        let a = derived_ifname(HOST_PREFIX, "4026532281/eth0");
        let b = derived_ifname(HOST_PREFIX, "4026532281/eth1");
        assert_eq!(a.len(), MAX_IFNAME);
        assert!(a.starts_with("xvs"));
        assert_ne!(a, b);
        assert_eq!(a, derived_ifname(HOST_PREFIX, "4026532281/eth0"));
        check_ifname(&a).unwrap();
        // FNV-1a of the empty string: the offset basis.
        assert_eq!(derived_ifname("", ""), "cbf29ce48422232");
    }

    #[test]
    fn derived_macs_are_local_unicast() {
        let mac = derived_mac("endpoint");
        assert_eq!(mac[0], 0x02);
        assert_ne!(mac, derived_mac("other"));
        assert_eq!(parse_mac(&mac_string(mac)).unwrap(), mac);
        assert!(parse_mac("nope").is_err());
        assert_eq!(parse_mac("2-0-0-0-0-a").unwrap(), [2, 0, 0, 0, 0, 10]);
        for bad in ["02:00:00:00:00", "02:00:00:00:00:01:02", "002:0:0:0:0:1"] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_interface_mac_must_be_unicast() {
        for bad in [
            "ff:ff:ff:ff:ff:ff",
            "01:00:5e:00:00:01",
            "33:33:00:00:00:01",
        ] {
            let e = parse_mac(bad).unwrap_err().to_string();
            assert!(e.contains("is a multicast address"), "{bad}: {e}");
        }
        let e = parse_mac("00:00:00:00:00:00").unwrap_err().to_string();
        assert!(e.contains("all zeros"), "{e}");
        assert_eq!(parse_mac("00:00:5e:00:53:01").unwrap()[5], 1);
    }

    #[test]
    fn interface_names() {
        for bad in ["", "a/b", "a:b", "a b", "sixteen-chars-xx", ".", ".."] {
            assert!(check_ifname(bad).is_err(), "{bad:?}");
        }
        for good in ["eth0", "net1", "fifteen-chars-x"] {
            check_ifname(good).unwrap();
        }
    }

    #[test]
    fn ports_are_found_by_external_ids() {
        let port = |name: &str, ids: &[(&str, &str)]| xvs_proto::status::PortStatus {
            id: 1,
            name: name.to_owned(),
            ifindex: 1,
            mac: "02:00:00:00:00:01".into(),
            driver: "veth".into(),
            hook: "xdp".into(),
            xdp_mode: Some("drv".into()),
            zero_copy: false,
            fast_path: xvs_proto::status::PortFastPath {
                active: false,
                redirect_target: false,
                entries: 0,
            },
            queues: Vec::new(),
            vlan: VlanSpec::All,
            external_ids: ids
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let show = ShowResult {
            version: "0".into(),
            uptime_s: 0.0,
            fast_path: false,
            ports: vec![
                port("p1", &[("container", "a"), ("ifname", "eth0")]),
                port("p2", &[("container", "a"), ("ifname", "eth1")]),
                port("p3", &[]),
            ],
            absent: vec![xvs_proto::status::AbsentPort {
                name: "p4".into(),
                reason: "the interface disappeared".into(),
                vlan: VlanSpec::All,
                external_ids: [("container", "a"), ("ifname", "eth2")]
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            }],
            workers: Vec::new(),
        };
        let found = ports_matching(show.clone(), &[("container", "a"), ("ifname", "eth1")]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "p2");
        assert_eq!(ports_matching(show.clone(), &[("container", "a")]).len(), 3);
        let absent = ports_matching(show.clone(), &[("ifname", "eth2")]);
        assert_eq!(absent[0].0, "p4", "an absent port is found too");
        assert_eq!(ports_matching(show, &[]).len(), 4);
    }
}
