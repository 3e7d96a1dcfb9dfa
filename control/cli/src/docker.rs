//! The Docker network plugin's driver: libnetwork's remote network driver protocol, without the
//! HTTP (the `xvs-docker-plugin` binary carries it).
//!
//! Each Docker network is a VLAN of the switch: the driver gives every network a VID of its own
//! (the lowest free one of its range, or the one asked for with `-o xvs.vlan=N`), and every
//! endpoint's port is an access port of it, so networks are isolated from each other on one
//! switch as Docker's bridges are, with no per-network switch to run. Each endpoint is a veth
//! pair made at `CreateEndpoint` (host end `xvs…`, the switch port; other end `xvc…`, which
//! `Join` hands to Docker as `SrcName` for it to move into the container and rename
//! `eth<N>`), and deleted at `DeleteEndpoint`. Docker's IPAM chooses the addresses and Docker
//! sets them; the driver only answers the MAC when Docker has none.
//!
//! State (networks with their VIDs and gateways, endpoints with their ports) is kept in a JSON
//! file, since Docker does not repeat `CreateNetwork` when a plugin restarts.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use xvs_proto::client::{Client, ClientError};
use xvs_proto::methods::{AddPort, DelPort, ShowConfig};
use xvs_proto::ports::{AddPortParams, PortName};
use xvs_proto::state::{Internal, MAX_INTERNAL_NAME};
use xvs_proto::vlan::MAX_VID;
use xvs_proto::{Empty, VlanSpec};

use crate::attach::{
    self, AttachError, AttachSpec, ExternalIds, HOST_PREFIX, OWNER_KEY, derived_ifname,
    derived_mac, mac_string, parse_mac,
};

/// The `owner` of the plugin's ports.
pub const OWNER: &str = "xvs-docker-plugin";

/// The prefix of the container-side veth ends before Docker moves them.
pub const PEER_PREFIX: &str = "xvc";

/// The network option (`docker network create -o xvs.vlan=N`) choosing the VLAN.
pub const VLAN_OPTION: &str = "xvs.vlan";

/// The Content-Type of plugin API responses.
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1+json";

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The body is not the request the method takes.
    #[error("{0}")]
    BadRequest(String),
    /// No such method.
    #[error("unknown method {0:?}: not implemented by the xvs network driver")]
    UnknownMethod(String),
    /// The network is not one of ours.
    #[error("network {0} is unknown to the xvs driver")]
    UnknownNetwork(String),
    /// The endpoint is not one of ours.
    #[error("endpoint {0} is unknown to the xvs driver")]
    UnknownEndpoint(String),
    /// Every VID of the range is taken.
    #[error("no free VLAN left in {0:?}")]
    NoVlanLeft(RangeInclusive<u16>),
    /// Wiring the endpoint failed.
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// The state file could not be read or written.
    #[error("state file {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

impl DockerError {
    /// The HTTP status to answer with: 404 for unknown methods (which libnetwork reads as
    /// "not implemented"), 400 for bad requests, 500 for failures.
    pub fn status(&self) -> u16 {
        match self {
            DockerError::UnknownMethod(_) => 404,
            DockerError::BadRequest(_)
            | DockerError::UnknownNetwork(_)
            | DockerError::UnknownEndpoint(_) => 400,
            _ => 500,
        }
    }
}

/// A network, as the driver remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Its VLAN.
    pub vlan: u16,
    /// The IPv4 gateway from Docker's IPAM, without prefix length.
    #[serde(default)]
    pub gateway: Option<String>,
    /// The IPv6 gateway.
    #[serde(default)]
    pub gateway6: Option<String>,
    /// The IPv4 gateway with its prefix length, as Docker's IPAM gave it: the address of the
    /// network's internal port ([`gateway_port`]), the host's interface on the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_cidr: Option<String>,
    /// Whether the internal port masquerades (`com.docker.network.bridge.enable_ip_masquerade`,
    /// default true).
    #[serde(default = "yes")]
    pub masquerade: bool,
}

fn yes() -> bool {
    true
}

/// The option that turns masquerading off, as for Docker's bridge driver.
pub const MASQUERADE_OPTION: &str = "com.docker.network.bridge.enable_ip_masquerade";

/// The internal port carrying network `network_id`'s gateway: `xvsg` and 8 hex digits, within
/// an internal port's 12 characters.
pub fn gateway_port(network_id: &str) -> String {
    derived_ifname("xvsg", &format!("docker/{network_id}"))[..MAX_INTERNAL_NAME].to_owned()
}

/// An endpoint, as the driver remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Its network.
    pub network: String,
    /// The switch port (host end of the veth).
    pub port: String,
    /// The container end, before Docker renames it.
    pub peer: String,
    /// The container end's MAC.
    pub mac: String,
    /// The sandbox it joined, if it did.
    #[serde(default)]
    pub sandbox: Option<String>,
}

/// Everything the driver remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Networks by ID.
    pub networks: BTreeMap<String, Network>,
    /// Endpoints by ID.
    pub endpoints: BTreeMap<String, Endpoint>,
}

/// How the driver runs.
#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// xvsd's command socket.
    pub xvs_socket: PathBuf,
    /// Where to keep the state (`None`: in memory only).
    pub state_path: Option<PathBuf>,
    /// The VIDs to give networks.
    pub vlans: RangeInclusive<u16>,
    /// MTU of the veths (`None`: the kernel's default).
    pub mtu: Option<u32>,
    /// Give each network's IPv4 gateway to the host on an internal port.
    pub gateway: bool,
}

/// An HTTP answer: status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// 200, 400, 404 or 500.
    pub status: u16,
    /// The body: the result, or `{"Err": "..."}`.
    pub body: Value,
}

/// The driver.
#[derive(Debug)]
pub struct Driver {
    options: DriverOptions,
    state: State,
}

#[derive(Deserialize)]
struct IpamData {
    #[serde(rename = "Gateway", default)]
    gateway: Option<String>,
}

#[derive(Deserialize)]
struct CreateNetwork {
    #[serde(rename = "NetworkID", default)]
    network_id: String,
    #[serde(rename = "Options", default)]
    options: Option<serde_json::Map<String, Value>>,
    #[serde(rename = "IPv4Data", default)]
    ipv4: Option<Vec<IpamData>>,
    #[serde(rename = "IPv6Data", default)]
    ipv6: Option<Vec<IpamData>>,
}

#[derive(Deserialize)]
struct NetworkRef {
    #[serde(rename = "NetworkID", default)]
    network_id: String,
}

#[derive(Deserialize, Default)]
struct EndpointInterface {
    #[serde(rename = "MacAddress", default)]
    mac: Option<String>,
}

#[derive(Deserialize)]
struct CreateEndpoint {
    #[serde(rename = "NetworkID", default)]
    network_id: String,
    #[serde(rename = "EndpointID", default)]
    endpoint_id: String,
    #[serde(rename = "Interface", default)]
    interface: Option<EndpointInterface>,
}

#[derive(Deserialize)]
struct EndpointRef {
    #[serde(rename = "NetworkID", default)]
    network_id: String,
    #[serde(rename = "EndpointID", default)]
    endpoint_id: String,
}

#[derive(Deserialize)]
struct Join {
    #[serde(rename = "NetworkID", default)]
    network_id: String,
    #[serde(rename = "EndpointID", default)]
    endpoint_id: String,
    #[serde(rename = "SandboxKey", default)]
    sandbox_key: String,
}

fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DockerError> {
    let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(bytes)
            .map_err(|e| DockerError::BadRequest(format!("request body is not JSON: {e}")))?
    };
    let value = if value.is_null() { json!({}) } else { value };
    if !value.is_object() {
        return Err(DockerError::BadRequest(
            "request body is not a JSON object".into(),
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| DockerError::BadRequest(format!("bad request body: {e}")))
}

fn required(name: &str, value: &str) -> Result<(), DockerError> {
    if value.is_empty() {
        Err(DockerError::BadRequest(format!("missing {name}")))
    } else {
        Ok(())
    }
}

fn strip_prefix_len(cidr: &str) -> String {
    cidr.split('/').next().unwrap_or_default().to_owned()
}

/// The host-side port name of endpoint `id`.
pub fn port_name(endpoint_id: &str) -> String {
    derived_ifname(HOST_PREFIX, &format!("docker/{endpoint_id}"))
}

/// The container-side veth name of endpoint `id` (before Docker renames it).
pub fn peer_name(endpoint_id: &str) -> String {
    derived_ifname(PEER_PREFIX, &format!("docker/{endpoint_id}"))
}

impl Driver {
    /// A driver, with the state of `options.state_path` if that file exists.
    ///
    /// # Errors
    /// [`DockerError::State`] when the file exists but cannot be read or parsed.
    pub fn new(options: DriverOptions) -> Result<Driver, DockerError> {
        let state = match &options.state_path {
            Some(path) => match std::fs::read(path) {
                Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| DockerError::State {
                    path: path.clone(),
                    source: std::io::Error::other(e),
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
                Err(source) => {
                    return Err(DockerError::State {
                        path: path.clone(),
                        source,
                    });
                }
            },
            None => State::default(),
        };
        Ok(Driver { options, state })
    }

    /// What the driver remembers.
    pub fn state(&self) -> &State {
        &self.state
    }

    fn save(&self) -> Result<(), DockerError> {
        let Some(path) = &self.options.state_path else {
            return Ok(());
        };
        let fail = |source| DockerError::State {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(&self.state).expect("state serializes");
        std::fs::write(&tmp, bytes).map_err(fail)?;
        std::fs::rename(&tmp, path).map_err(fail)
    }

    /// Answers a request for `path` (`/NetworkDriver.Join`, ...) with JSON `body`.
    pub fn handle(&mut self, path: &str, body: &[u8]) -> Reply {
        let method = path
            .split('?')
            .next()
            .unwrap_or_default()
            .trim_start_matches('/');
        match self.dispatch(method, body) {
            Ok(body) => Reply { status: 200, body },
            Err(e) => {
                tracing::warn!(method, "{e}");
                Reply {
                    status: e.status(),
                    body: json!({"Err": e.to_string()}),
                }
            }
        }
    }

    fn dispatch(&mut self, method: &str, bytes: &[u8]) -> Result<Value, DockerError> {
        match method {
            "Plugin.Activate" => Ok(json!({"Implements": ["NetworkDriver"]})),
            "NetworkDriver.GetCapabilities" => {
                Ok(json!({"Scope": "local", "ConnectivityScope": "local"}))
            }
            "NetworkDriver.CreateNetwork" => self.create_network(body(bytes)?),
            "NetworkDriver.DeleteNetwork" => self.delete_network(body(bytes)?),
            "NetworkDriver.CreateEndpoint" => self.create_endpoint(body(bytes)?),
            "NetworkDriver.DeleteEndpoint" => self.delete_endpoint(body(bytes)?),
            "NetworkDriver.EndpointOperInfo" => self.endpoint_info(body(bytes)?),
            "NetworkDriver.Join" => self.join(body(bytes)?),
            "NetworkDriver.Leave" => {
                let r: EndpointRef = body(bytes)?;
                required("NetworkID", &r.network_id)?;
                required("EndpointID", &r.endpoint_id)?;
                if let Some(ep) = self.state.endpoints.get_mut(&r.endpoint_id) {
                    ep.sandbox = None;
                    self.save()?;
                }
                Ok(json!({}))
            }
            "NetworkDriver.DiscoverNew"
            | "NetworkDriver.DiscoverDelete"
            | "NetworkDriver.ProgramExternalConnectivity"
            | "NetworkDriver.RevokeExternalConnectivity" => {
                // Accepted and ignored: xvs has no cluster discovery and no NAT of its own.
                body::<Value>(bytes)?;
                Ok(json!({}))
            }
            other => Err(DockerError::UnknownMethod(other.to_owned())),
        }
    }

    fn create_network(&mut self, r: CreateNetwork) -> Result<Value, DockerError> {
        required("NetworkID", &r.network_id)?;
        if self.state.networks.contains_key(&r.network_id) {
            return Ok(json!({}));
        }
        let generic = r
            .options
            .as_ref()
            .and_then(|o| o.get("com.docker.network.generic"))
            .and_then(Value::as_object);
        let asked = match generic.and_then(|g| g.get(VLAN_OPTION)) {
            None | Some(Value::Null) => None,
            Some(v) => {
                let vid = match v {
                    Value::String(s) => s.trim().parse::<u16>().ok(),
                    Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                    _ => None,
                };
                match vid {
                    Some(vid) if (1..=MAX_VID).contains(&vid) => Some(vid),
                    _ => {
                        return Err(DockerError::BadRequest(format!(
                            "{VLAN_OPTION} must be a VLAN from 1 to {}, not {v}",
                            MAX_VID
                        )));
                    }
                }
            }
        };
        let vlan = match asked {
            // Asked for explicitly, a VLAN may be shared (with another network, or with ports
            // added by hand) on purpose.
            Some(vid) => vid,
            None => {
                let used: Vec<u16> = self.state.networks.values().map(|n| n.vlan).collect();
                self.options
                    .vlans
                    .clone()
                    .find(|v| !used.contains(v))
                    .ok_or_else(|| DockerError::NoVlanLeft(self.options.vlans.clone()))?
            }
        };
        let first_gateway = |data: &Option<Vec<IpamData>>| {
            data.iter()
                .flatten()
                .find_map(|d| d.gateway.as_deref().filter(|g| !g.is_empty()))
                .map(strip_prefix_len)
        };
        let masquerade = match generic.and_then(|g| g.get(MASQUERADE_OPTION)) {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s == "true" => true,
            Some(Value::String(s)) if s == "false" => false,
            Some(v) => {
                return Err(DockerError::BadRequest(format!(
                    "{MASQUERADE_OPTION} must be true or false, not {v}"
                )));
            }
        };
        let network = Network {
            vlan,
            gateway: first_gateway(&r.ipv4),
            gateway6: first_gateway(&r.ipv6),
            gateway_cidr: r
                .ipv4
                .iter()
                .flatten()
                .find_map(|d| d.gateway.clone().filter(|g| g.contains('/'))),
            masquerade,
        };
        tracing::info!(network = r.network_id, vlan, "CreateNetwork");
        // Made now if xvsd runs, else at the network's first endpoint.
        match self.ensure_gateway(&r.network_id, &network) {
            Ok(()) => {}
            Err(AttachError::Switch(ClientError::NotRunning(_))) => {
                tracing::warn!(
                    network = r.network_id,
                    "xvsd is not running: the gateway port comes with the first endpoint"
                );
            }
            Err(e) => return Err(e.into()),
        }
        self.state.networks.insert(r.network_id, network);
        self.save()?;
        Ok(json!({}))
    }

    /// Makes sure xvsd has network `id`'s gateway port: an internal port in the network's
    /// VLAN with the IPAM gateway address, masquerading unless the network says not to.
    fn ensure_gateway(&self, id: &str, network: &Network) -> Result<(), AttachError> {
        let Some(cidr) = network
            .gateway_cidr
            .as_ref()
            .filter(|_| self.options.gateway)
        else {
            return Ok(());
        };
        let name = gateway_port(id);
        let mut client = Client::connect(&self.options.xvs_socket)?;
        let config = client.call::<ShowConfig>(&Empty)?;
        if config.ports.contains_key(&name) {
            return Ok(());
        }
        client.call::<AddPort>(&AddPortParams {
            name: name.clone(),
            vlan: Some(VlanSpec::Access { tag: network.vlan }),
            external_ids: ExternalIds::from([
                (OWNER_KEY.to_owned(), OWNER.to_owned()),
                ("docker_network".to_owned(), id.to_owned()),
            ]),
            internal: Some(Internal {
                addrs: vec![cidr.clone()],
                masquerade: network.masquerade,
            }),
            ..AddPortParams::default()
        })?;
        tracing::info!(network = id, port = name, cidr, "gateway port added");
        Ok(())
    }

    fn delete_network(&mut self, r: NetworkRef) -> Result<Value, DockerError> {
        required("NetworkID", &r.network_id)?;
        let stale: Vec<String> = self
            .state
            .endpoints
            .iter()
            .filter(|(_, ep)| ep.network == r.network_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.remove_endpoint(&id)?;
        }
        if let Some(network) = self.state.networks.get(&r.network_id)
            && network.gateway_cidr.is_some()
            && self.options.gateway
        {
            let name = gateway_port(&r.network_id);
            let removed = Client::connect(&self.options.xvs_socket)
                .and_then(|mut c| c.call::<DelPort>(&PortName { name: name.clone() }));
            match removed {
                Ok(Empty) => tracing::info!(network = r.network_id, port = name, "gateway removed"),
                Err(ClientError::NotRunning(_)) => {}
                Err(ClientError::Rpc(e)) if e.code == xvs_proto::code::NO_SUCH_PORT => {}
                Err(e) => return Err(AttachError::Switch(e).into()),
            }
        }
        if self.state.networks.remove(&r.network_id).is_some() {
            self.save()?;
        }
        Ok(json!({}))
    }

    fn create_endpoint(&mut self, r: CreateEndpoint) -> Result<Value, DockerError> {
        required("NetworkID", &r.network_id)?;
        required("EndpointID", &r.endpoint_id)?;
        let network = self
            .state
            .networks
            .get(&r.network_id)
            .cloned()
            .ok_or_else(|| DockerError::UnknownNetwork(r.network_id.clone()))?;
        let given_mac = r
            .interface
            .unwrap_or_default()
            .mac
            .filter(|m| !m.is_empty());
        if let Some(ep) = self.state.endpoints.get(&r.endpoint_id) {
            if ep.network != r.network_id {
                return Err(DockerError::BadRequest(format!(
                    "endpoint {} exists on network {}",
                    r.endpoint_id, ep.network
                )));
            }
            return Ok(create_endpoint_reply(given_mac.is_none(), &ep.mac));
        }
        let mac = match &given_mac {
            Some(m) => parse_mac(m)?,
            None => derived_mac(&format!("docker/{}", r.endpoint_id)),
        };
        self.ensure_gateway(&r.network_id, &network)?;
        let port = port_name(&r.endpoint_id);
        let peer = peer_name(&r.endpoint_id);
        let external_ids = external_ids(&r.network_id, &r.endpoint_id);
        attach::attach(&AttachSpec {
            socket: &self.options.xvs_socket,
            host_name: port.clone(),
            peer_name: peer.clone(),
            container: None,
            mac: Some(mac),
            mtu: self.options.mtu,
            vlan: Some(network.vlan),
            external_ids,
            // The endpoint's MAC is the plugin's to choose and Docker keeps it.
            mac_lock: true,
            publish: Vec::new(),
        })?;
        tracing::info!(
            endpoint = r.endpoint_id,
            port,
            vlan = network.vlan,
            "CreateEndpoint"
        );
        let endpoint = Endpoint {
            network: r.network_id,
            port,
            peer,
            mac: mac_string(mac),
            sandbox: None,
        };
        let reply = create_endpoint_reply(given_mac.is_none(), &endpoint.mac);
        self.state.endpoints.insert(r.endpoint_id.clone(), endpoint);
        if let Err(e) = self.save() {
            // Forget the endpoint rather than leave a port nobody records.
            let _ = self.remove_endpoint(&r.endpoint_id);
            return Err(e);
        }
        Ok(reply)
    }

    fn remove_endpoint(&mut self, endpoint_id: &str) -> Result<(), DockerError> {
        let port = self
            .state
            .endpoints
            .get(endpoint_id)
            .map_or_else(|| port_name(endpoint_id), |ep| ep.port.clone());
        let done = attach::detach(&self.options.xvs_socket, &port)?;
        tracing::info!(endpoint = endpoint_id, port, ?done, "DeleteEndpoint");
        if self.state.endpoints.remove(endpoint_id).is_some() {
            self.save()?;
        }
        Ok(())
    }

    fn delete_endpoint(&mut self, r: EndpointRef) -> Result<Value, DockerError> {
        required("NetworkID", &r.network_id)?;
        required("EndpointID", &r.endpoint_id)?;
        self.remove_endpoint(&r.endpoint_id)?;
        Ok(json!({}))
    }

    fn endpoint_info(&self, r: EndpointRef) -> Result<Value, DockerError> {
        required("NetworkID", &r.network_id)?;
        required("EndpointID", &r.endpoint_id)?;
        let ep = self
            .state
            .endpoints
            .get(&r.endpoint_id)
            .ok_or_else(|| DockerError::UnknownEndpoint(r.endpoint_id.clone()))?;
        let vlan = self.state.networks.get(&ep.network).map(|n| n.vlan);
        Ok(json!({"Value": {
            "xvs.port": ep.port,
            "xvs.vlan": vlan,
            "xvs.mac": ep.mac,
        }}))
    }

    fn join(&mut self, r: Join) -> Result<Value, DockerError> {
        required("NetworkID", &r.network_id)?;
        required("EndpointID", &r.endpoint_id)?;
        required("SandboxKey", &r.sandbox_key)?;
        let network = self
            .state
            .networks
            .get(&r.network_id)
            .cloned()
            .ok_or_else(|| DockerError::UnknownNetwork(r.network_id.clone()))?;
        let ep = self
            .state
            .endpoints
            .get_mut(&r.endpoint_id)
            .ok_or_else(|| DockerError::UnknownEndpoint(r.endpoint_id.clone()))?;
        ep.sandbox = Some(r.sandbox_key);
        let mut reply = json!({
            "InterfaceName": {"SrcName": ep.peer, "DstPrefix": "eth"},
            "DisableGatewayService": false,
        });
        if let Some(gw) = &network.gateway {
            reply["Gateway"] = json!(gw);
        }
        if let Some(gw) = &network.gateway6 {
            reply["GatewayIPv6"] = json!(gw);
        }
        self.save()?;
        Ok(reply)
    }
}

fn external_ids(network_id: &str, endpoint_id: &str) -> ExternalIds {
    ExternalIds::from([
        (OWNER_KEY.to_owned(), OWNER.to_owned()),
        ("docker_network".to_owned(), network_id.to_owned()),
        ("docker_endpoint".to_owned(), endpoint_id.to_owned()),
    ])
}

fn create_endpoint_reply(answer_mac: bool, mac: &str) -> Value {
    // libnetwork refuses an answer that repeats what it gave; answer only what it left empty.
    if answer_mac {
        json!({"Interface": {"MacAddress": mac}})
    } else {
        json!({"Interface": {}})
    }
}

/// Parses a VLAN range `A-B` (or one VID).
///
/// # Errors
/// A message when it is not a range inside 1-4094.
pub fn parse_vlan_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let (lo, hi) = text.split_once('-').unwrap_or((text, text));
    let num = |s: &str| s.trim().parse::<u16>().map_err(|e| format!("{s:?}: {e}"));
    let (lo, hi) = (num(lo)?, num(hi)?);
    if lo == 0 || hi > MAX_VID || lo > hi {
        return Err(format!("VLAN range {text:?} is not inside 1-{}", MAX_VID));
    }
    Ok(lo..=hi)
}

/// Where the plugin socket goes by default: Docker finds plugins by their socket's name here.
pub fn default_socket() -> &'static Path {
    Path::new("/run/docker/plugins/xvs.sock")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn driver() -> Driver {
        Driver::new(DriverOptions {
            // Nothing listens here: only requests that do not reach xvsd are tested.
            xvs_socket: PathBuf::from("/nonexistent/xvsd.ctl"),
            state_path: None,
            vlans: 100..=102,
            mtu: None,
            gateway: true,
        })
        .unwrap()
    }

    fn call(d: &mut Driver, method: &str, body: &str) -> Reply {
        d.handle(&format!("/{method}"), body.as_bytes())
    }

    #[test]
    fn handshake() {
        let mut d = driver();
        let r = call(&mut d, "Plugin.Activate", "");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, json!({"Implements": ["NetworkDriver"]}));
        let r = call(&mut d, "NetworkDriver.GetCapabilities", "null");
        assert_eq!(r.body["Scope"], "local");
        assert_eq!(
            call(&mut d, "NetworkDriver.DiscoverNew", "{}").body,
            json!({})
        );
    }

    #[test]
    fn networks_get_vlans() {
        let mut d = driver();
        for (id, opts) in [
            ("n1", json!({})),
            (
                "n2",
                json!({"com.docker.network.generic": {"xvs.vlan": "7"}}),
            ),
            ("n3", json!(null)),
            ("n4", json!({})),
        ] {
            let body = json!({"NetworkID": id, "Options": opts,
                "IPv4Data": [{"AddressSpace": "", "Pool": "172.30.0.0/16",
                              "Gateway": "172.30.0.1/16", "AuxAddresses": null}],
                "IPv6Data": []});
            assert_eq!(
                call(&mut d, "NetworkDriver.CreateNetwork", &body.to_string()).status,
                200
            );
        }
        let vlans: Vec<u16> = ["n1", "n2", "n3", "n4"]
            .iter()
            .map(|n| d.state().networks[*n].vlan)
            .collect();
        assert_eq!(vlans, [100, 7, 101, 102]);
        assert_eq!(
            d.state().networks["n1"].gateway.as_deref(),
            Some("172.30.0.1")
        );
        let r = call(
            &mut d,
            "NetworkDriver.CreateNetwork",
            r#"{"NetworkID":"n5"}"#,
        );
        assert_eq!(r.status, 500);
        assert!(r.body["Err"].as_str().unwrap().contains("no free VLAN"));
        call(
            &mut d,
            "NetworkDriver.DeleteNetwork",
            r#"{"NetworkID":"n1"}"#,
        );
        call(
            &mut d,
            "NetworkDriver.CreateNetwork",
            r#"{"NetworkID":"n5"}"#,
        );
        assert_eq!(d.state().networks["n5"].vlan, 100);
        let bad =
            r#"{"NetworkID":"n6","Options":{"com.docker.network.generic":{"xvs.vlan":"5000"}}}"#;
        assert_eq!(call(&mut d, "NetworkDriver.CreateNetwork", bad).status, 400);
    }

    #[test]
    fn malformed_requests() {
        let mut d = driver();
        let r = call(&mut d, "NetworkDriver.CreateNetwork", "{not json");
        assert_eq!(r.status, 400);
        assert!(r.body["Err"].as_str().unwrap().contains("not JSON"));
        let r = call(&mut d, "NetworkDriver.CreateNetwork", "{}");
        assert_eq!(r.status, 400);
        assert_eq!(r.body["Err"], "missing NetworkID");
        assert_eq!(
            call(&mut d, "NetworkDriver.CreateNetwork", "[1]").status,
            400
        );
        let r = call(&mut d, "NetworkDriver.Frobnicate", "{}");
        assert_eq!(r.status, 404);
        assert!(r.body["Err"].is_string());
        let r = call(
            &mut d,
            "NetworkDriver.CreateEndpoint",
            r#"{"NetworkID":"nope","EndpointID":"e1"}"#,
        );
        assert_eq!(r.status, 400);
        let r = call(
            &mut d,
            "NetworkDriver.Join",
            r#"{"NetworkID":"n","EndpointID":"e1"}"#,
        );
        assert_eq!(r.body["Err"], "missing SandboxKey");
    }

    #[test]
    fn names_and_ranges() {
        assert_eq!(port_name("abc").len(), 15);
        assert_eq!(port_name("abc")[3..], peer_name("abc")[3..]);
        assert!(peer_name("abc").starts_with("xvc"));
        assert_eq!(parse_vlan_range("100-200").unwrap(), 100..=200);
        assert_eq!(parse_vlan_range("5").unwrap(), 5..=5);
        assert!(parse_vlan_range("0-5").is_err());
        assert!(parse_vlan_range("9-5").is_err());
        assert!(parse_vlan_range("1-5000").is_err());
    }
}
