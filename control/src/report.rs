//! The daemon's answers that only read: the switch as it is, in the protocol's types.

use std::collections::BTreeMap;

use dataplane::DropCause;
use flowtable::Step;
use flowtable::config::RouteTarget;
use flowtable::flow_spec::{FlowSpec, format_rule, parse_match};
use flowtable::wire::EthernetAddress;
use xvs_proto::counters::{
    DumpPortsParams, DumpPortsResult, FastPathCounters, KernelCounters, PortCounters,
    WorkerCounters, WorkerPortCounters,
};
use xvs_proto::fast_path::{DumpFastPathResult, FastPathEntry};
use xvs_proto::fdb::{FdbEntry, FdbShowResult};
use xvs_proto::flows::{
    ConnInfo, ConntrackParams, DumpConntrackResult, DumpFlowsParams, DumpFlowsResult, FlowEntry,
    FlushConntrackResult, TraceLine, TraceParams, TraceResult,
};
use xvs_proto::router::{
    InterfaceInfo, Neighbor, RouteEntry, ShowAddrsResult, ShowNeighborsResult, ShowRoutesResult,
};
use xvs_proto::status::{
    AbsentPort, PortFastPath, PortStatus, QueueStatus, ShowResult, WorkerStatus,
};
use xvs_proto::{RpcError, VlanSpec, code};

use crate::daemon::{Daemon, switch_error};
use crate::reconcile::bad_spec;
use crate::rules::{compile, port_ids, port_names};
use crate::vlan::spec_of;

impl Daemon {
    pub(crate) fn show(&self) -> ShowResult {
        let config = self.switch.config().clone();
        let entries = self.switch.fast_path_entries().unwrap_or_default();
        let ports = self
            .switch
            .ports()
            .into_iter()
            .map(|info| PortStatus {
                vlan: config
                    .port(info.id)
                    .map_or(VlanSpec::All, |p| spec_of(&p.vlan)),
                external_ids: self.external_ids(&info.name),
                id: info.id,
                ifindex: info.ifindex,
                mac: info.mac.to_string(),
                driver: info.driver,
                hook: info.hook.name().to_owned(),
                xdp_mode: info.xdp_mode.map(|m| m.name().to_owned()),
                zero_copy: info.zero_copy,
                fast_path: PortFastPath {
                    active: info.fast_path,
                    redirect_target: info.redirect_target,
                    entries: entries.get(&info.id).copied().unwrap_or(0),
                },
                queues: info
                    .queues
                    .iter()
                    .map(|q| QueueStatus {
                        queue: q.queue,
                        worker: q.worker,
                        cpu: q.cpu,
                    })
                    .collect(),
                name: info.name,
            })
            .collect();
        let workers = self
            .switch
            .workers()
            .into_iter()
            .map(|w| WorkerStatus {
                id: w.id,
                cpu: w.cpu,
                tid: w.tid,
            })
            .collect();
        ShowResult {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_s: self.switch.uptime().as_secs_f64(),
            fast_path: self.switch.fast_path(),
            ports,
            absent: self
                .absent
                .iter()
                .map(|(name, reason)| {
                    let port = self.desired.ports.get(name).cloned().unwrap_or_default();
                    AbsentPort {
                        name: name.clone(),
                        reason: reason.clone(),
                        vlan: port.vlan,
                        external_ids: port.external_ids,
                    }
                })
                .collect(),
            workers,
        }
    }

    pub(crate) fn dump_ports(&self, mut p: DumpPortsParams) -> Result<DumpPortsResult, RpcError> {
        // An internal port is counted on its switch side.
        p.name = p.name.map(|name| match self.desired.ports.get(&name) {
            Some(port) => crate::internal::switch_name(&name, port),
            None => name,
        });
        let all = self.switch.port_counters();
        if let Some(name) = &p.name
            && !all.iter().any(|c| &c.name == name)
        {
            return Err(RpcError::new(
                code::NO_SUCH_PORT,
                format!("no such port: {name}"),
            ));
        }
        let wanted = |name: Option<&String>| p.name.as_ref().is_none_or(|n| name == Some(n));
        let ports = all
            .iter()
            .filter(|c| wanted(Some(&c.name)))
            .map(|c| PortCounters {
                id: c.id,
                name: c.name.clone(),
                rx_packets: c.stats.rx_packets,
                rx_bytes: c.stats.rx_bytes,
                tx_packets: c.stats.tx_packets,
                tx_bytes: c.stats.tx_bytes,
                fast_path: FastPathCounters {
                    rx_packets: c.stats.kernel_rx_packets,
                    tx_packets: c.stats.kernel_tx_packets,
                },
                drops: DropCause::ALL
                    .iter()
                    .map(|&cause| (cause.name().to_owned(), c.stats.drop_count(cause)))
                    .collect(),
                kernel: KernelCounters {
                    rx_dropped: c.kernel.rx_dropped,
                    rx_ring_full: c.kernel.rx_ring_full,
                    rx_fill_ring_empty: c.kernel.rx_fill_ring_empty_descs,
                    rx_invalid_descs: c.kernel.rx_invalid_descs,
                    tx_invalid_descs: c.kernel.tx_invalid_descs,
                },
            })
            .collect();
        let names: BTreeMap<u16, String> = all.iter().map(|c| (c.id, c.name.clone())).collect();
        let workers = self
            .switch
            .workers()
            .into_iter()
            .map(|w| {
                let s = w.stats;
                WorkerCounters {
                    id: w.id,
                    cpu: w.cpu,
                    loops: s.loops,
                    busy_loops: s.busy_loops,
                    sleeps: s.sleeps,
                    cache_hits: s.cache_hits,
                    cache_misses: s.cache_misses,
                    cache_entries: s.cache_entries,
                    tx_kicks: s.tx_kicks,
                    handoffs: s.handoffs,
                    ports: w
                        .ports
                        .iter()
                        .filter(|(id, _)| wanted(names.get(id)))
                        .map(|(id, ps)| WorkerPortCounters {
                            name: names.get(id).cloned(),
                            rx_packets: ps.rx_packets,
                            tx_packets: ps.tx_packets,
                            drops: ps.total_drops(),
                        })
                        .collect(),
                }
            })
            .collect();
        Ok(DumpPortsResult { ports, workers })
    }

    pub(crate) fn fdb_show(&self) -> Result<FdbShowResult, RpcError> {
        let config = self.switch.config().clone();
        let name = port_names(&config);
        let entries = self
            .switch
            .fdb()
            .map_err(switch_error)?
            .into_iter()
            .map(|e| FdbEntry {
                mac: e.mac.to_string(),
                vlan: e.vlan,
                port: name(e.port),
                age_s: e.age_ns as f64 / 1e9,
                is_static: e.is_static,
            })
            .collect();
        Ok(FdbShowResult {
            entries,
            capacity: config.mac_capacity,
            not_learned: self.switch.macs_not_learned().map_err(switch_error)?,
        })
    }

    /// The rules of the desired state (those `p`'s match selects), by table, highest priority
    /// first, then by id. A rule whose ports all exist prints as the switch runs it; one
    /// naming a missing port, as it was given.
    pub(crate) fn dump_flows(&self, p: DumpFlowsParams) -> Result<DumpFlowsResult, RpcError> {
        let config = self.switch.config().clone();
        let filter = p
            .pattern
            .map(|text| parse_match(&text, &port_ids(&config)))
            .transpose()
            .map_err(bad_spec)?;
        let stats = self.switch.rule_stats().map_err(switch_error)?;
        let names = port_names(&config);
        let mut flows = Vec::new();
        for rule in &self.desired.rules {
            let compiled = compile(rule, &config).map_err(bad_spec)?;
            if filter.as_ref().is_some_and(|f| !compiled.selected_by(f)) {
                continue;
            }
            let r = &compiled.rule;
            let (n_packets, n_bytes) = stats.get(&rule.id).copied().unwrap_or_default();
            flows.push(FlowEntry {
                id: rule.id,
                table: r.table,
                cookie: compiled.spec.cookie,
                priority: rule.priority,
                flow: if compiled.complete {
                    format_rule(
                        &FlowSpec {
                            pattern: r.pattern,
                            actions: r.actions.clone(),
                            ..compiled.spec.clone()
                        },
                        &names,
                    )
                } else {
                    rule.flow.clone()
                },
                n_packets,
                n_bytes,
            });
        }
        flows.sort_unstable_by_key(|f| (f.table, std::cmp::Reverse(f.priority), f.id));
        Ok(DumpFlowsResult {
            flows,
            table_miss: "normal".into(),
        })
    }

    /// `trace`: the packet `p` describes, through a worker's pipeline, changing nothing.
    pub(crate) fn trace(&self, p: TraceParams) -> Result<TraceResult, RpcError> {
        let config = self.switch.config().clone();
        let spec = parse_match(&p.flow, &port_ids(&config)).map_err(bad_spec)?;
        let mask = spec.pattern.mask();
        if mask.in_port == 0 {
            return Err(bad_spec("trace needs the packet's in_port"));
        }
        if mask.ct_state != 0 || mask.ct_zone != 0 || mask.ct_mark != 0 {
            return Err(bad_spec(
                "ct_state, ct_zone and ct_mark are set by ct actions, not by the packet",
            ));
        }
        let mut key = *spec.pattern.value();
        let mut assumed = Vec::new();
        if mask.dl_src == 0 {
            // A zero source is no host's and would be dropped before any rule.
            let stand_in = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
            key.dl_src = stand_in.to_u64();
            assumed.push(format!("dl_src={stand_in}"));
        }
        if (key.is_ipv4() || key.is_ipv6()) && mask.nw_ttl == 0 {
            key.nw_ttl = 64;
            assumed.push("nw_ttl=64".to_string());
        }
        let report = self.switch.trace(key).map_err(switch_error)?;
        let names = port_names(&config);
        let lines = report
            .trace
            .events
            .iter()
            .map(|e| TraceLine {
                depth: e.depth,
                kind: e.kind.name().to_string(),
                rule: e.rule,
                text: e.text.clone(),
            })
            .collect();
        let decision = &report.trace.decision;
        let decision = match decision.drop_reason() {
            Some(reason) => format!("drop ({})", reason.name()),
            None => decision
                .steps()
                .iter()
                .map(|s| step_text(s, &names))
                .collect::<Vec<_>>()
                .join(","),
        };
        Ok(TraceResult {
            flow: flowtable::flow_spec::format_match(&flowtable::Match::exact(&key), &names),
            assumed,
            lines,
            decision,
            cached: report.cached,
            kernel: report.kernel,
        })
    }

    pub(crate) fn dump_conntrack(&self, p: ConntrackParams) -> DumpConntrackResult {
        let stats = self.switch.conntrack_stats();
        let connections = self
            .switch
            .connections()
            .into_iter()
            .filter(|c| p.zone.is_none_or(|z| z == c.key.zone))
            .map(|c| {
                let k = &c.key;
                let proto = match k.proto {
                    6 => "tcp".to_string(),
                    17 => "udp".to_string(),
                    1 => "icmp".to_string(),
                    58 => "icmp6".to_string(),
                    p => p.to_string(),
                };
                let ports = match k.proto {
                    1 | 58 => format!("id={}", k.icmp_id),
                    _ => format!("sport={},dport={}", k.src_port, k.dst_port),
                };
                ConnInfo {
                    zone: k.zone,
                    proto,
                    orig: format!("src={},dst={},{ports}", k.src_ip(), k.dst_ip()),
                    state: c.state.to_string(),
                    mark: c.mark,
                }
            })
            .collect();
        DumpConntrackResult {
            connections,
            created: stats.created,
            invalid: stats.invalid,
            full: stats.full,
        }
    }

    pub(crate) fn flush_conntrack(
        &mut self,
        p: ConntrackParams,
    ) -> Result<FlushConntrackResult, RpcError> {
        let flushed = self.switch.flush_conntrack(p.zone).map_err(switch_error)?;
        Ok(FlushConntrackResult { flushed })
    }

    pub(crate) fn show_addrs(&self) -> ShowAddrsResult {
        let config = self.switch.config().clone();
        let name = port_names(&config);
        let interfaces = config
            .interfaces()
            .iter()
            .map(|i| InterfaceInfo {
                name: i.name.clone(),
                vlan: i.vlan,
                port: i.port().and_then(&name),
                mac: i.mac.to_string(),
                addrs: i.addrs.iter().map(|(a, l)| format!("{a}/{l}")).collect(),
            })
            .collect();
        ShowAddrsResult { interfaces }
    }

    pub(crate) fn show_routes(&self) -> ShowRoutesResult {
        let config = self.switch.config().clone();
        let dev = |i: usize| config.interfaces()[i].name.clone();
        let routes = config
            .routes()
            .iter()
            .map(|(prefix, len, target)| match target {
                RouteTarget::Connected(i) => RouteEntry::Connected {
                    prefix: format!("{prefix}/{len}"),
                    dev: dev(*i),
                },
                RouteTarget::Via(via) => RouteEntry::Static {
                    prefix: format!("{prefix}/{len}"),
                    via: via.to_string(),
                    dev: config.route(*via).map(|(i, _)| dev(i)),
                },
            })
            .collect();
        ShowRoutesResult { routes }
    }

    pub(crate) fn show_neighbors(&self) -> Result<ShowNeighborsResult, RpcError> {
        let config = self.switch.config().clone();
        let name = port_names(&config);
        let neighbors = self
            .switch
            .neighbors()
            .map_err(switch_error)?
            .into_iter()
            .map(|n| Neighbor {
                ip: n.ip.to_string(),
                mac: n.mac.to_string(),
                port: name(n.port),
                vlan: n.vlan,
                age_s: n.age_ns as f64 / 1e9,
            })
            .collect();
        Ok(ShowNeighborsResult { neighbors })
    }

    pub(crate) fn dump_fast_path(&self) -> Result<DumpFastPathResult, RpcError> {
        let config = self.switch.config().clone();
        let name = port_names(&config);
        let entries = self
            .switch
            .fast_path_dump()
            .map_err(switch_error)?
            .into_iter()
            .map(|e| FastPathEntry {
                in_port: name(e.in_port),
                out_port: e.out_port.and_then(&name),
                action: if e.out_port.is_some() {
                    "redirect"
                } else {
                    "drop"
                }
                .to_owned(),
                dl_src: e.src.to_string(),
                dl_dst: e.dst.to_string(),
                dl_type: format!("0x{:04x}", e.ethertype),
                rule: e.rule,
                n_packets: e.packets,
                n_bytes: e.bytes,
            })
            .collect();
        Ok(DumpFastPathResult {
            enabled: self.switch.fast_path(),
            entries,
        })
    }
}

/// A decision's step as the final actions of a trace say it.
fn step_text(step: &Step, names: &dyn Fn(flowtable::PortId) -> Option<String>) -> String {
    let port = |p: flowtable::PortId| names(p).unwrap_or_else(|| p.to_string());
    match *step {
        Step::Output { port: p, .. } => format!("output:{}", port(p)),
        Step::Flood { vlan, .. } => format!("flood(vlan {vlan})"),
        Step::FloodAll { .. } => "flood".to_string(),
        Step::SetEthSrc(m) => format!("mod_dl_src:{m}"),
        Step::SetEthDst(m) => format!("mod_dl_dst:{m}"),
        Step::SetVlanVid(v) => format!("mod_vlan_vid:{v}"),
        Step::StripVlan => "strip_vlan".to_string(),
        Step::PushVlan(v) => format!("push_vlan:{v}"),
        Step::DecTtl => "dec_ttl".to_string(),
        Step::ArpReply(_) => "arp_reply".to_string(),
        Step::EchoReply(_) => "echo_reply".to_string(),
        Step::NeighborAdvert(_) => "neighbor_advert".to_string(),
        Step::SetIpSrc(ip) => format!("set_field:{ip}->ip_src"),
        Step::SetIpDst(ip) => format!("set_field:{ip}->ip_dst"),
        Step::SetTpSrc(p) => format!("mod_tp_src:{p}"),
        Step::SetTpDst(p) => format!("mod_tp_dst:{p}"),
        Step::SetIpDscp(d) => format!("set_field:{d}->ip_dscp"),
        Step::SetIpEcn(e) => format!("set_field:{e}->nw_ecn"),
        Step::SetIpTtl(t) => format!("set_field:{t}->nw_ttl"),
    }
}
