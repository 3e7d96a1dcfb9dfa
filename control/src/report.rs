//! The daemon's answers that only read: the switch as it is, in the protocol's types.

use std::collections::BTreeMap;

use dataplane::DropCause;
use flowtable::config::RouteTarget;
use flowtable::flow_spec::format_flow;
use xvs_proto::counters::{
    DumpPortsParams, DumpPortsResult, FastPathCounters, KernelCounters, PortCounters,
    WorkerCounters, WorkerPortCounters,
};
use xvs_proto::fast_path::{DumpFastPathResult, FastPathEntry};
use xvs_proto::fdb::{FdbEntry, FdbShowResult};
use xvs_proto::flows::{DumpFlowsResult, FlowEntry};
use xvs_proto::router::{
    InterfaceInfo, Neighbor, RouteEntry, ShowAddrsResult, ShowNeighborsResult, ShowRoutesResult,
};
use xvs_proto::status::{
    AbsentPort, PortFastPath, PortStatus, QueueStatus, ShowResult, WorkerStatus,
};
use xvs_proto::{RpcError, VlanSpec, code};

use crate::daemon::{Daemon, switch_error};
use crate::reconcile::bad_spec;
use crate::rules::{compile, port_names};
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

    /// The rules of the desired state, highest priority first, then by id. A rule whose
    /// ports all exist prints as the switch runs it; one naming a missing port, as it was
    /// given.
    pub(crate) fn dump_flows(&self) -> Result<DumpFlowsResult, RpcError> {
        let config = self.switch.config().clone();
        let stats = self.switch.rule_stats().map_err(switch_error)?;
        let names = port_names(&config);
        let mut flows = self
            .desired
            .rules
            .iter()
            .map(|rule| {
                let compiled = compile(rule, &config).map_err(bad_spec)?;
                let r = &compiled.rule;
                let (n_packets, n_bytes) = stats.get(&rule.id).copied().unwrap_or_default();
                Ok(FlowEntry {
                    id: rule.id,
                    priority: rule.priority,
                    flow: if compiled.complete {
                        format_flow(r.priority, &r.pattern, &r.actions, &names)
                    } else {
                        rule.flow.clone()
                    },
                    n_packets,
                    n_bytes,
                })
            })
            .collect::<Result<Vec<_>, RpcError>>()?;
        flows.sort_unstable_by_key(|f| (std::cmp::Reverse(f.priority), f.id));
        Ok(DumpFlowsResult {
            flows,
            table_miss: "normal".into(),
        })
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
