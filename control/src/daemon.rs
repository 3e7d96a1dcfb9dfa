//! The control thread: owns the switch and answers requests, one at a time.

use std::collections::BTreeMap;
use std::time::Instant;

use dataplane::{HookKind, PortOptions, Switch, SwitchError, XdpMode};
use flowtable::Config;
use flowtable::flow_spec::{parse_flow, parse_match};
use serde_json::Value;
use xvs_proto::fast_path::{SetFastPathParams, SetFastPathResult};
use xvs_proto::flows::{
    AddFlowResult, AddFlowsResult, DelFlowsParams, DelFlowsResult, FlowParams, FlowsParams,
};
use xvs_proto::meta::{CommandInfo, PROTOCOL, VersionResult};
use xvs_proto::methods::*;
use xvs_proto::ports::{AddPortParams, AddPortResult, ExternalIds, PortName, SetPortParams};
use xvs_proto::state::{self, DesiredState};
use xvs_proto::{Call, Empty, METHODS, Method, RpcError, code};

use crate::expiry::{FlowExpiry, Timeouts};
use crate::internal::{self, desired_name, switch_name};
use crate::nat::Nat;
use crate::reconcile::{bad_spec, derive_config};
use crate::router;
use crate::rules::{Rules, compile, port_ids};
use crate::store::Store;
use crate::vlan::to_mode;

/// The protocol's error for a switch error, with the code a client can act on.
pub(crate) fn switch_error(e: SwitchError) -> RpcError {
    let code = match &e {
        SwitchError::NoSuchInterface(_) | SwitchError::NoSuchPort(_) => code::NO_SUCH_PORT,
        SwitchError::PortExists(_) => code::EXISTS,
        SwitchError::Invalid(_) => code::INVALID_PARAMS,
        _ => code::DATAPLANE,
    };
    RpcError::new(code, e.to_string())
}

/// Method `M`'s answer on the wire: its result type is checked against `M` here.
fn answer<M: Method>(result: Result<M::Result, RpcError>) -> Result<Value, RpcError> {
    let result = result?;
    Ok(serde_json::to_value(&result).expect("results serialize to JSON"))
}

/// The dataplane's options for adding `port`.
///
/// # Errors
/// An XDP mode that is neither `drv` nor `skb`, or a bad VLAN mode.
fn port_options(port: &state::Port) -> Result<PortOptions, RpcError> {
    let xdp_mode = match port.xdp_mode.as_deref() {
        None => None,
        Some("drv" | "native") => Some(XdpMode::Driver),
        Some("skb" | "generic") => Some(XdpMode::Generic),
        Some(other) => {
            return Err(RpcError::params(format!(
                "xdp_mode {other:?} is not drv or skb"
            )));
        }
    };
    let hook = port
        .hook
        .as_deref()
        .map(str::parse::<HookKind>)
        .transpose()
        .map_err(RpcError::params)?;
    Ok(PortOptions {
        queues: port.queues,
        hook,
        xdp_mode,
        vlan: to_mode(&port.vlan)?,
    })
}

/// The MACs of a `mac_lock`, checked (unicast, not zero) and in canonical form.
///
/// # Errors
/// [`code::INVALID_PARAMS`] naming the first that is not a host's MAC.
fn canonical_macs(macs: &[String]) -> Result<Vec<String>, RpcError> {
    macs.iter()
        .map(|text| {
            let mac: flowtable::wire::EthernetAddress = text
                .parse()
                .map_err(|e| RpcError::params(format!("mac_lock {text:?}: {e}")))?;
            if !mac.is_valid_unicast() {
                return Err(RpcError::params(format!(
                    "mac_lock {text:?} is no host's MAC (zero, multicast or broadcast)"
                )));
            }
            Ok(mac.to_string())
        })
        .collect()
}

/// Checks the published ports of a new port: each has a container address, and no host
/// port is published twice.
///
/// # Errors
/// [`code::INVALID_PARAMS`] or [`code::EXISTS`] saying which.
fn check_publish(desired: &DesiredState, publish: &[state::Publish]) -> Result<(), RpcError> {
    let mut taken: Vec<(state::Proto, u16)> = desired
        .ports
        .values()
        .flat_map(|p| p.publish.iter().map(|p| (p.proto, p.host_port)))
        .collect();
    for p in publish {
        if p.addr.is_unspecified() {
            return Err(RpcError::params(format!(
                "published port {}: no container address",
                p.host_port
            )));
        }
        if taken.contains(&(p.proto, p.host_port)) {
            return Err(RpcError::new(
                code::EXISTS,
                format!(
                    "host port {}/{} is published already",
                    p.host_port,
                    p.proto.as_str()
                ),
            ));
        }
        taken.push((p.proto, p.host_port));
    }
    Ok(())
}

/// The daemon: the switch, and the desired state it is made to match.
///
/// Every command that changes something changes a copy of the [`DesiredState`], then
/// reconciles: ports the state has and the switch lacks are added, ports the switch has and
/// the state lacks are removed, the fast path is switched, and the forwarding configuration
/// derived from the state and the switch's port numbers is published. Only when all of that
/// succeeded does the copy become the state; a command that fails leaves it as it was.
///
/// A port of the desired state whose interface is missing (or could not be attached) is
/// *absent*: it stays configured, its rules and addresses wait, and it is attached as soon as
/// the interface appears ([`Daemon::links_changed`]). With a [`Store`], every change is saved
/// before it is acknowledged.
#[derive(Debug)]
pub struct Daemon {
    pub(crate) switch: Switch,
    pub(crate) desired: DesiredState,
    next_rule: u32,
    store: Option<Store>,
    /// The absent ports, with why.
    pub(crate) absent: BTreeMap<String, String>,
    /// The host's NAT for internal ports and published ports (`None`: not managed yet).
    nat: Option<Nat>,
    /// Flow timeouts.
    expiry: FlowExpiry,
}

impl Daemon {
    /// A daemon driving `switch`, which has no port yet; its fast path is as the switch
    /// could set it up. With `store`, it saves every change there.
    pub fn new(switch: Switch, store: Option<Store>) -> Daemon {
        let desired = DesiredState {
            fast_path: switch.fast_path(),
            ..DesiredState::default()
        };
        Daemon {
            switch,
            desired,
            next_rule: 1,
            store,
            absent: BTreeMap::new(),
            nat: None,
            expiry: FlowExpiry::default(),
        }
    }

    /// Hands the host's NAT to the daemon: from now on its table holds what the desired state
    /// asks for (made so at once, which also replaces a table a predecessor left).
    pub fn set_nat(&mut self, nat: Nat) {
        let nat = self.nat.insert(nat);
        if let Err(e) = nat.apply(&self.desired) {
            tracing::error!("NAT: {}", e.message);
        }
    }

    /// What the daemon was asked for.
    pub fn desired(&self) -> &DesiredState {
        &self.desired
    }

    /// Makes a saved state the daemon's: every port is added whose interface is here (the
    /// others are absent until it appears), then the fast path, rules, addresses and routes
    /// apply. Call it on a daemon without ports. Returns the names of the absent ports.
    ///
    /// # Errors
    /// Something of the state does not apply (a rule that is no flow, a bad address): the
    /// file was not written by xvsd, or by an incompatible one.
    pub fn restore(&mut self, state: DesiredState) -> Result<Vec<String>, RpcError> {
        for (name, port) in &state.ports {
            let made = match &port.internal {
                Some(wanted) => internal::ensure(name, wanted),
                None => Ok(()),
            };
            let added = made.and_then(|()| port_options(port)).and_then(|options| {
                self.switch
                    .add_port(&switch_name(name, port), &options)
                    .map_err(switch_error)
            });
            if let Err(e) = added {
                tracing::warn!(port = name, "restored as absent: {}", e.message);
                self.absent.insert(name.clone(), e.message);
            }
        }
        if self.switch.fast_path() != state.fast_path
            && let Err(e) = self.switch.set_fast_path(state.fast_path)
        {
            tracing::warn!("fast path not restored: {e}");
        }
        let config = derive_config(&state, self.switch.config())?;
        self.switch.publish(config).map_err(switch_error)?;
        self.next_rule = state.rules.iter().map(|r| r.id + 1).max().unwrap_or(1);
        self.desired = state;
        self.desired.fast_path = self.switch.fast_path();
        self.save()?;
        Ok(self.absent.keys().cloned().collect())
    }

    /// Saves the desired state, if the daemon has a store.
    fn save(&self) -> Result<(), RpcError> {
        match &self.store {
            Some(store) => store.save(&self.desired).map_err(|e| {
                RpcError::new(code::INTERNAL, format!("the state cannot be saved: {e}"))
            }),
            None => Ok(()),
        }
    }

    /// Stops the switch; the internal ports' interfaces and the NAT table go too.
    pub fn shutdown(mut self) {
        self.switch.shutdown();
        for (name, port) in &self.desired.ports {
            if port.internal.is_some() {
                internal::remove(name);
            }
        }
        if let Some(nat) = &mut self.nat {
            nat.clear();
        }
    }

    /// Stops for a planned restart: the ports' kernel hooks stay attached, pinned for the
    /// next xvsd on the same state directory to adopt (see `Switch::hand_over`), and the
    /// state is saved. Returns the links handed over.
    ///
    /// # Errors
    /// The state or a link could not be saved; the switch is stopped anyway.
    pub fn hand_over(self) -> Result<usize, RpcError> {
        let saved = self.save();
        if let Some(store) = &self.store {
            let connections = self.switch.save_conntrack();
            match store.save_connections(&connections) {
                Ok(()) => tracing::info!(
                    connections = connections.len(),
                    "connections left for the successor"
                ),
                Err(e) => tracing::warn!(
                    "connections not left for the successor (they will be picked up by their next segments): {e}"
                ),
            }
        }
        let pinned = self
            .switch
            .hand_over()
            .map_err(|e| RpcError::new(code::DATAPLANE, e.to_string()))?;
        saved.map(|()| pinned)
    }

    /// Takes the tracked connections a predecessor left on a planned restart (see
    /// `Store::take_connections`), so that established connections through `ct` rules go on
    /// whichever side speaks first.
    pub fn take_connections(&mut self) {
        let Some(store) = &self.store else {
            return;
        };
        let saved = store.take_connections();
        if !saved.is_empty() {
            let taken = self.switch.restore_conntrack(&saved);
            tracing::info!(taken, "connections taken over from the predecessor");
        }
    }

    /// Ends a start-up: links a predecessor handed over that no port took are removed.
    pub fn end_adoption(&mut self) {
        self.switch.end_adoption();
    }

    /// Periodic work: the ports whose interface went away (the switch drops them) become
    /// absent, their learned MACs gone; their rules and addresses wait for them.
    pub fn tick(&mut self) {
        self.expire_flows();
        let gone = self.switch.check_ports();
        if gone.is_empty() {
            return;
        }
        for ifname in &gone {
            let name = desired_name(&self.desired, ifname);
            if self.desired.ports.contains_key(&name) {
                self.absent
                    .insert(name, "the interface disappeared".to_owned());
            }
        }
        self.republish("ports vanished");
    }

    /// Removes the rules whose idle or hard timeout passed (see `expiry`).
    fn expire_flows(&mut self) {
        if !self.expiry.due(Instant::now()) {
            return;
        }
        let live = self.switch.config().clone();
        let mut timed = Vec::new();
        let mut flows = BTreeMap::new();
        // The stored text is canonical (`format_rule`), which names a timeout only when it
        // is set: the rules without one are not parsed every second.
        let timed_text = |r: &&state::Rule| r.flow.contains("_timeout=");
        for rule in self.desired.rules.iter().filter(timed_text) {
            let Ok(compiled) = compile(rule, &live) else {
                continue;
            };
            let spec = &compiled.spec;
            if spec.idle_timeout > 0 || spec.hard_timeout > 0 {
                timed.push(Timeouts {
                    id: rule.id,
                    idle: spec.idle_timeout,
                    hard: spec.hard_timeout,
                    added: rule.added,
                });
                flows.insert(rule.id, (rule.flow.clone(), spec.send_flow_rem));
            }
        }
        if timed.is_empty() {
            return;
        }
        let stats = match self.switch.rule_stats() {
            Ok(stats) => stats,
            Err(e) => {
                tracing::warn!("flow timeouts: rule counters unreadable: {e}");
                return;
            }
        };
        let packets = |id| stats.get(&id).map_or(0, |s| s.0);
        let gone = self
            .expiry
            .expired(&timed, packets, Instant::now(), unix_now());
        if gone.is_empty() {
            return;
        }
        let ids: Vec<u32> = gone.iter().map(|(id, _)| *id).collect();
        let removed = self.change(|d, _| {
            d.rules.retain(|r| !ids.contains(&r.id));
            Ok(())
        });
        match removed {
            Ok(()) => {
                for (id, reason) in gone {
                    let (flow, send_flow_rem) = &flows[&id];
                    if *send_flow_rem {
                        tracing::info!(
                            id,
                            reason = reason.name(),
                            packets = packets(id),
                            "flow removed: {flow}"
                        );
                    } else {
                        tracing::debug!(id, reason = reason.name(), "flow removed: {flow}");
                    }
                }
            }
            Err(e) => tracing::error!("flow timeouts: {e}"),
        }
    }

    /// Publishes the configuration the desired state asks for the ports the switch has now.
    fn republish(&mut self, why: &str) {
        let published = derive_config(&self.desired, self.switch.config())
            .and_then(|config| self.switch.publish(config).map_err(switch_error));
        if let Err(e) = published {
            tracing::error!("configuration after {why}: {e}");
        }
    }

    /// Interfaces were added, removed or renamed (a link notification): absent ports whose
    /// interface is here now are attached, and vanished ones become absent.
    pub fn links_changed(&mut self) {
        self.tick();
        let mut attached = Vec::new();
        let waiting: Vec<String> = self.absent.keys().cloned().collect();
        for name in waiting {
            let Some(port) = self.desired.ports.get(&name) else {
                continue;
            };
            let ifname = switch_name(&name, port);
            if xvs_sys::netdev::if_nametoindex(&ifname).is_err() {
                continue;
            }
            let added = port_options(port).and_then(|options| {
                self.switch
                    .add_port(&ifname, &options)
                    .map_err(switch_error)
            });
            match added {
                Ok(info) => {
                    tracing::info!(
                        port = info.id,
                        name,
                        "absent port attached: its interface appeared"
                    );
                    self.absent.remove(&name);
                    attached.push(name);
                }
                Err(e) => {
                    tracing::warn!(name, "absent port not attached: {}", e.message);
                    self.absent.insert(name, e.message);
                }
            }
        }
        if !attached.is_empty() {
            self.republish("ports appeared");
        }
    }

    /// Answers one request.
    ///
    /// # Errors
    /// The request's error, with a code from [`code`].
    pub fn handle(&mut self, method: &str, params: Value) -> Result<Value, RpcError> {
        let call = Call::parse(method, params)?;
        self.dispatch(call)
    }

    /// Runs a call. The match is exhaustive: every method of the protocol's table is answered.
    fn dispatch(&mut self, call: Call) -> Result<Value, RpcError> {
        match call {
            Call::Version(Empty) => answer::<Version>(Ok(VersionResult {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                protocol: PROTOCOL,
            })),
            Call::ListCommands(Empty) => {
                answer::<ListCommands>(Ok(METHODS.iter().map(CommandInfo::from).collect()))
            }
            Call::Show(Empty) => answer::<Show>(Ok(self.show())),
            Call::ShowConfig(Empty) => answer::<ShowConfig>(Ok(self.desired.clone())),
            Call::AddPort(p) => answer::<AddPort>(self.add_port(p)),
            Call::DelPort(p) => answer::<DelPort>(self.del_port(p)),
            Call::SetPort(p) => answer::<SetPort>(self.set_port(p)),
            Call::DumpPorts(p) => answer::<DumpPorts>(self.dump_ports(p)),
            Call::FdbShow(Empty) => answer::<FdbShow>(self.fdb_show()),
            Call::FdbFlush(Empty) => answer::<FdbFlush>(
                self.switch
                    .fdb_flush()
                    .map(|()| Empty)
                    .map_err(switch_error),
            ),
            Call::AddFlow(p) => answer::<AddFlow>(self.add_flow(p)),
            Call::AddFlows(p) => answer::<AddFlows>(self.add_flows(p)),
            Call::DelFlows(p) => answer::<DelFlows>(self.del_flows(p)),
            Call::DumpFlows(p) => answer::<DumpFlows>(self.dump_flows(p)),
            Call::Trace(p) => answer::<Trace>(self.trace(p)),
            Call::DumpConntrack(p) => answer::<DumpConntrack>(Ok(self.dump_conntrack(p))),
            Call::FlushConntrack(p) => answer::<FlushConntrack>(self.flush_conntrack(p)),
            Call::AddAddr(p) => answer::<AddAddr>(self.edit(|d| router::add_addr(d, p))),
            Call::DelAddr(p) => answer::<DelAddr>(self.edit(|d| router::del_addr(d, &p))),
            Call::ShowAddrs(Empty) => answer::<ShowAddrs>(Ok(self.show_addrs())),
            Call::AddRoute(p) => answer::<AddRoute>(self.edit(|d| router::add_route(d, &p))),
            Call::DelRoute(p) => answer::<DelRoute>(self.edit(|d| router::del_route(d, &p))),
            Call::ShowRoutes(Empty) => answer::<ShowRoutes>(Ok(self.show_routes())),
            Call::ShowNeighbors(Empty) => answer::<ShowNeighbors>(self.show_neighbors()),
            Call::DumpFastPath(Empty) => answer::<DumpFastPath>(self.dump_fast_path()),
            Call::SetFastPath(p) => answer::<SetFastPath>(self.set_fast_path(p)),
        }
    }

    /// Changes the desired state with `edit` (given the switch's configuration of the moment,
    /// for its port numbers) and makes the switch match it. On any error the desired state
    /// stays as it was.
    fn change<T>(
        &mut self,
        edit: impl FnOnce(&mut DesiredState, &Config) -> Result<T, RpcError>,
    ) -> Result<T, RpcError> {
        let mut desired = self.desired.clone();
        let out = edit(&mut desired, self.switch.config())?;
        let saved = match self.reconcile(&desired) {
            Ok(()) => match &self.store {
                Some(store) => store.save(&desired).map_err(|e| {
                    RpcError::new(code::INTERNAL, format!("the state cannot be saved: {e}"))
                }),
                None => Ok(()),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = saved {
            // A command changes one port at most and the switch undoes its own failed
            // steps, but should a port have been added or removed before a later step
            // failed, put it back as the unchanged state says.
            if !self.ports_match(&self.desired) {
                let unchanged = self.desired.clone();
                if let Err(undo) = self.reconcile(&unchanged) {
                    tracing::error!("undoing a failed change: {undo}");
                }
            }
            if let Some(nat) = &mut self.nat
                && let Err(undo) = nat.apply(&self.desired)
            {
                tracing::error!("undoing a failed change of NAT: {undo}");
            }
            return Err(e);
        }
        self.desired = desired;
        let desired = &self.desired;
        self.absent
            .retain(|name, _| desired.ports.contains_key(name));
        Ok(out)
    }

    /// [`Daemon::change`] for a command that answers nothing.
    fn edit(
        &mut self,
        edit: impl FnOnce(&mut DesiredState) -> Result<(), RpcError>,
    ) -> Result<Empty, RpcError> {
        self.change(|d, _| edit(d)).map(|()| Empty)
    }

    /// Whether the switch has the ports and the fast path of `desired`.
    fn ports_match(&self, desired: &DesiredState) -> bool {
        let ports = self.switch.ports();
        let wanted = desired
            .ports
            .keys()
            .filter(|name| !self.absent.contains_key(*name))
            .count();
        ports.len() == wanted
            && ports
                .iter()
                .all(|p| desired.ports.contains_key(&desired_name(desired, &p.name)))
            && self.switch.fast_path() == desired.fast_path
    }

    /// Makes the switch match `desired`: removes the ports it lacks, adds the ports it has,
    /// switches the fast path, then publishes the configuration derived from it for the
    /// switch's ports.
    fn reconcile(&mut self, desired: &DesiredState) -> Result<(), RpcError> {
        let wanted: Vec<String> = desired
            .ports
            .iter()
            .map(|(name, port)| switch_name(name, port))
            .collect();
        for port in self.switch.ports() {
            if !wanted.contains(&port.name) {
                self.switch.del_port(&port.name).map_err(switch_error)?;
            }
        }
        // Internal ports removed (or no longer internal): their interfaces go.
        for (name, port) in &self.desired.ports {
            let kept = desired
                .ports
                .get(name)
                .is_some_and(|p| p.internal.is_some());
            if port.internal.is_some() && !kept {
                internal::remove(name);
            }
        }
        for (name, port) in &desired.ports {
            let ifname = switch_name(name, port);
            if self.switch.config().port_by_name(&ifname).is_none()
                && !self.absent.contains_key(name)
            {
                let options = port_options(port)?;
                if let Some(wanted) = &port.internal {
                    internal::ensure(name, wanted)?;
                }
                self.switch
                    .add_port(&ifname, &options)
                    .map_err(switch_error)?;
            }
        }
        if self.switch.fast_path() != desired.fast_path {
            self.switch
                .set_fast_path(desired.fast_path)
                .map_err(switch_error)?;
        }
        let config = derive_config(desired, self.switch.config())?;
        self.switch.publish(config).map_err(switch_error)?;
        match &mut self.nat {
            Some(nat) => nat.apply(desired),
            None => Ok(()),
        }
    }

    /// The `external_ids` of the port on interface `name` (an internal port's switch side
    /// included).
    pub(crate) fn external_ids(&self, name: &str) -> ExternalIds {
        self.desired
            .ports
            .get(&desired_name(&self.desired, name))
            .map(|p| p.external_ids.clone())
            .unwrap_or_default()
    }

    /// Adds a port (as `add-port` does).
    ///
    /// # Errors
    /// Bad options, or the switch refused the port.
    pub fn add_port(&mut self, p: AddPortParams) -> Result<AddPortResult, RpcError> {
        let port = state::Port {
            queues: p.queues,
            hook: p.hook,
            xdp_mode: p.xdp_mode,
            vlan: p.vlan.unwrap_or_default(),
            external_ids: p.external_ids,
            mac_lock: canonical_macs(&p.mac_lock)?,
            mac_limit: None,
            storm_limit: None,
            internal: p.internal,
            publish: p.publish,
        };
        port_options(&port)?;
        if self.desired.ports.contains_key(&p.name) {
            return Err(switch_error(SwitchError::PortExists(p.name)));
        }
        if let Some(wanted) = &port.internal {
            internal::check(&p.name, wanted)?;
        }
        check_publish(&self.desired, &port.publish)?;
        let ifname = switch_name(&p.name, &port);
        // An internal port's interface that was not there before the command goes again if
        // the command fails.
        let made_here =
            port.internal.is_some() && xvs_sys::netdev::if_nametoindex(&p.name).is_err();
        let changed = self.change(|d, _| {
            d.ports.insert(p.name.clone(), port);
            Ok(())
        });
        if let Err(e) = changed {
            if made_here {
                internal::remove(&p.name);
            }
            return Err(e);
        }
        let id = self
            .switch
            .config()
            .port_by_name(&ifname)
            .map(|port| port.id)
            .ok_or_else(|| RpcError::new(code::INTERNAL, format!("{} was not added", p.name)))?;
        Ok(AddPortResult { id, name: p.name })
    }

    /// Removes a port (present or absent); the router addresses on it go too, its rules stay,
    /// matching nothing and sending nowhere until a port of that name is added again.
    fn del_port(&mut self, p: PortName) -> Result<Empty, RpcError> {
        if !self.desired.ports.contains_key(&p.name) {
            return Err(switch_error(SwitchError::NoSuchPort(p.name)));
        }
        self.change(|d, _| {
            d.ports.remove(&p.name);
            router::forget_port(d, &p.name);
            Ok(Empty)
        })
    }

    fn set_port(&mut self, p: SetPortParams) -> Result<Empty, RpcError> {
        if let Some(vlan) = &p.vlan {
            to_mode(vlan)?;
        }
        let mac_lock = p.mac_lock.as_deref().map(canonical_macs).transpose()?;
        self.change(|d, _| {
            let port = d
                .ports
                .get_mut(&p.name)
                .ok_or_else(|| switch_error(SwitchError::NoSuchPort(p.name.clone())))?;
            if let Some(vlan) = p.vlan {
                port.vlan = vlan;
            }
            if let Some(limit) = p.mac_limit {
                port.mac_limit = (limit > 0).then_some(limit);
            }
            if let Some(macs) = mac_lock {
                port.mac_lock = macs;
            }
            if let Some(limit) = p.storm_limit {
                port.storm_limit = (limit > 0).then_some(limit);
            }
            if let Some(on) = p.masquerade {
                let wanted = port.internal.as_mut().ok_or_else(|| {
                    RpcError::params(format!(
                        "{} is not an internal port: only those masquerade",
                        p.name
                    ))
                })?;
                wanted.masquerade = on;
            }
            Ok(Empty)
        })
    }

    fn set_fast_path(&mut self, p: SetFastPathParams) -> Result<SetFastPathResult, RpcError> {
        self.change(|d, _| {
            d.fast_path = p.on;
            Ok(())
        })?;
        Ok(SetFastPathResult {
            fast_path: self.switch.fast_path(),
        })
    }

    /// Runs `edit` with the next rule id; the ids it takes are used up whatever happens.
    fn with_rule_ids<T>(
        &mut self,
        edit: impl FnOnce(&mut DesiredState, &Config, &mut dyn FnMut() -> u32) -> Result<T, RpcError>,
    ) -> Result<T, RpcError> {
        let mut next = self.next_rule;
        let out = self.change(|d, live| {
            edit(d, live, &mut || {
                next += 1;
                next - 1
            })
        });
        self.next_rule = next;
        out
    }

    fn add_flow(&mut self, p: FlowParams) -> Result<AddFlowResult, RpcError> {
        self.with_rule_ids(|d, live, next_id| {
            let spec = parse_flow(&p.flow, &port_ids(live)).map_err(bad_spec)?;
            let id = next_id();
            let replaced =
                Rules::open(&mut d.rules, live)
                    .map_err(bad_spec)?
                    .add(spec, id, unix_now());
            Ok(AddFlowResult { id, replaced })
        })
    }

    /// Installs every rule or none: a bad spec is reported with its line number.
    fn add_flows(&mut self, p: FlowsParams) -> Result<AddFlowsResult, RpcError> {
        self.with_rule_ids(|d, live, next_id| {
            let mut rules = Rules::open(&mut d.rules, live).map_err(bad_spec)?;
            let mut ids = Vec::with_capacity(p.flows.len());
            for (n, flow) in p.flows.iter().enumerate() {
                let spec = parse_flow(flow, &port_ids(live))
                    .map_err(|e| bad_spec(format!("flow {}: {e}", n + 1)))?;
                let id = next_id();
                rules.add(spec, id, unix_now());
                ids.push(id);
            }
            Ok(AddFlowsResult { ids })
        })
    }

    fn del_flows(&mut self, p: DelFlowsParams) -> Result<DelFlowsResult, RpcError> {
        self.change(|d, live| {
            let mut rules = Rules::open(&mut d.rules, live).map_err(bad_spec)?;
            let deleted = match &p.pattern {
                None => rules.clear(),
                Some(text) => {
                    let spec = parse_match(text, &port_ids(live)).map_err(bad_spec)?;
                    if p.strict {
                        rules.delete(|c| c.strictly_selected_by(&spec))
                    } else {
                        rules.delete(|c| c.selected_by(&spec))
                    }
                }
            };
            Ok(DelFlowsResult { deleted })
        })
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
