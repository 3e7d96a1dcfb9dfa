//! The bridge stage: the L2 learning switch (MAC learning, VLANs, flooding) and the
//! upkeep of this worker's MAC table replica.

use super::coherence::{Resolution, bucket};
use super::{Event, MacEvent, Pipeline};
use crate::action::{Decision, DropReason, Step};
use crate::config::Config;
use crate::conntrack::ConnKey;
use crate::key::FlowKey;
use crate::mac_table::Learned;
use crate::port::PortId;
use crate::wire::EthernetAddress;

impl Pipeline {
    /// The L2 learning switch: learn the source, forward to the learned port of the
    /// destination, flood broadcast, multicast and unknown unicast in the frame's VLAN; hand
    /// frames for a router interface's MAC to the L3 pipeline.
    pub(super) fn normal(
        &mut self,
        config: &Config,
        key: &FlowKey,
        now: u64,
    ) -> (Decision, Resolution) {
        let mut resolution = Resolution::default();
        let Some(in_port) = config.port(key.in_port) else {
            return (Decision::drop(DropReason::Malformed), resolution);
        };
        let Some(vlan) = in_port.vlan.ingress(key.vlan_id().filter(|&v| v != 0)) else {
            return (Decision::drop(DropReason::VlanFiltered), resolution);
        };
        // A new source on a port at its MAC limit is not learned, and its frame goes nowhere;
        // the decision depends on how many the port has, so it is not cached.
        if let Some(limit) = in_port.security.mac_limit
            && self.mac_table.lookup(vlan, key.dl_src) != Some(key.in_port)
            && self.mac_table.count_on(key.in_port) >= limit
        {
            self.stats.macs_over_limit += 1;
            resolution.uncacheable = true;
            return (Decision::drop(DropReason::MacLimit), resolution);
        }
        // `resolve` dropped frames whose source is no host's.
        if EthernetAddress::from_u64(key.dl_src).is_valid_unicast() {
            self.learn_local(vlan, key.dl_src, key.in_port, now);
            resolution.depend(bucket(vlan, key.dl_src));
            resolution.learn = Some((vlan, key.dl_src, key.in_port));
        }
        let dst = EthernetAddress::from_u64(key.dl_dst);
        if let Some(iface) = config.router_by_mac(vlan, dst, key.in_port) {
            return self.l3(config, key, vlan, Some(iface), now, resolution);
        }
        if dst.is_multicast() {
            if let Some(reply) = self.answer_multicast(config, key, vlan, now, &mut resolution) {
                return (reply, resolution);
            }
            let flood = Decision::from_steps(&[Step::Flood {
                vlan,
                except: key.in_port,
            }]);
            return (flood, resolution);
        }
        resolution.depend(bucket(vlan, key.dl_dst));
        let decision = match self.mac_table.lookup(vlan, key.dl_dst) {
            None => Decision::from_steps(&[Step::Flood {
                vlan,
                except: key.in_port,
            }]),
            Some(port) if port == key.in_port => Decision::drop(DropReason::SamePort),
            Some(port) => match config.port(port).and_then(|p| p.vlan.egress(vlan)) {
                Some(tag) => Decision::output(port, Some(tag)),
                // Learned on a port that has since left the VLAN: treat as unknown.
                None => Decision::from_steps(&[Step::Flood {
                    vlan,
                    except: key.in_port,
                }]),
            },
        };
        (decision, resolution)
    }

    /// Keeps a source address fresh after another level forwarded its frames at `seen`: like
    /// learning, but only if it is still known on `port`.
    pub fn refresh_source(&mut self, vlan: u16, mac: u64, port: PortId, seen: u64) {
        if self
            .mac_table
            .get(vlan, mac)
            .is_some_and(|e| e.port == port && e.last_seen < seen)
        {
            self.learn_local(vlan, mac, port, seen);
        }
    }

    pub(super) fn note(&mut self, vlan: u16, mac: u64, learned: Learned) {
        match learned {
            Learned::New { evicted } => {
                self.stats.macs_learned += 1;
                self.bump(vlan, mac);
                if let Some(((v, m), _)) = evicted {
                    self.stats.macs_expired += 1;
                    self.bump(v, m);
                }
            }
            Learned::Moved { .. } => {
                self.stats.macs_moved += 1;
                self.bump(vlan, mac);
            }
            Learned::Refreshed | Learned::Pinned | Learned::Full | Learned::Invalid => {}
        }
    }

    fn learn_local(&mut self, vlan: u16, mac: u64, port: PortId, now: u64) {
        let learned = self.mac_table.learn(vlan, mac, port, now);
        if learned == Learned::Full {
            self.stats.macs_not_learned += 1;
        }
        let requeued = self
            .mac_table
            .get(vlan, mac)
            .is_some_and(|e| e.queued_at() == now);
        if learned.changed() || (learned == Learned::Refreshed && requeued) {
            self.events.push(Event::Mac(MacEvent {
                vlan,
                mac,
                port,
                seen: now,
            }));
        }
        self.note(vlan, mac, learned);
        if matches!(learned, Learned::Moved { .. }) {
            self.flap_check(port, now);
        }
    }

    /// Refreshes the sources of the cached flows used since `since` (a hit skips learning).
    pub(super) fn refresh_used_sources(&mut self, since: u64) {
        let used: Vec<(u16, u64, PortId, u64)> = self
            .cache
            .iter()
            .filter(|(_, _, used)| *used > since)
            .filter_map(|(_, e, used)| e.learn.map(|(v, m, p)| (v, m, p, used)))
            .collect();
        for (vlan, mac, port, used) in used {
            self.refresh_source(vlan, mac, port, used);
        }
        let conns: Vec<(ConnKey, u64)> = self
            .cache
            .iter()
            .filter(|(_, _, used)| *used > since)
            .filter_map(|(_, e, used)| e.conn.map(|c| (c, used)))
            .collect();
        for (conn, used) in conns {
            self.refresh_conn(&conn, used);
        }
    }

    /// Ages the MAC table; each address gone makes the decisions that looked it up stale.
    pub(super) fn expire_macs(&mut self, now: u64) {
        let mut expired = std::mem::take(&mut self.changed_scratch);
        self.mac_table.expire(now, &mut expired);
        for ((vlan, mac), _) in expired.drain(..) {
            self.stats.macs_expired += 1;
            self.bump(vlan, mac);
        }
        self.changed_scratch = expired;
    }

    /// Forgets the addresses on `port`; the decisions that looked them up become stale.
    pub(super) fn forget_port(&mut self, port: PortId) {
        let mut removed = std::mem::take(&mut self.changed_scratch);
        self.mac_table.flush_port(port, &mut removed);
        for ((vlan, mac), _) in removed.drain(..) {
            self.bump(vlan, mac);
        }
        self.changed_scratch = removed;
    }

    /// Forgets every learned address.
    pub fn flush_mac_table(&mut self) {
        self.mac_table.flush();
        self.bump_all();
    }

    /// Pins `mac` in `vlan` to `port`.
    pub fn add_static_mac(&mut self, vlan: u16, mac: u64, port: PortId, now: u64) {
        self.mac_table.insert_static(vlan, mac, port, now);
        self.bump(vlan, mac);
    }

    /// Removes one address (learned or static); returns whether it was there.
    pub fn remove_mac(&mut self, vlan: u16, mac: u64) -> bool {
        let removed = self.mac_table.remove(vlan, mac).is_some();
        self.bump(vlan, mac);
        removed
    }
}
