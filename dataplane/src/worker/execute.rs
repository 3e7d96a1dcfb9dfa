//! Carrying out a decision on a packet: edits in order, a copy for every output but the
//! last, and the router's own frames (ARP requests, neighbor solicitations).

use flowtable::edit::{EditError, FrameBuf};
use flowtable::neighbor::Solicitation;
use flowtable::{Config, Decision, DropReason, EgressTag, PortId, Step};
use xvs_sys::frame::Packet;

use super::{Datapath, FRAME_HEADROOM};
use crate::counters::DropCause;

/// One thing a decision does to a packet, once floods are expanded.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    Out(PortId, Option<EgressTag>),
    Edit(Step),
}

impl Datapath {
    pub(super) fn execute(
        &mut self,
        decision: &Decision,
        config: &Config,
        packet: Packet,
        in_port: PortId,
    ) {
        if let Some(reason) = decision.drop_reason() {
            self.drop(in_port, DropCause::Pipeline(reason), packet);
            return;
        }
        // The common case: one output, nothing else.
        if let [Step::Output { port, tag }] = decision.steps() {
            self.output(packet, *port, *tag);
            return;
        }
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        for step in decision.steps() {
            match *step {
                Step::Output { port, tag } => targets.push(Target::Out(port, tag)),
                // A port the loop guard cut off gets no floods either.
                Step::Flood { vlan, except } => targets.extend(
                    config
                        .flood_targets(vlan, except)
                        .filter(|(port, _)| !self.blocked.iter().any(|b| b.0 == *port))
                        .map(|(port, tag)| Target::Out(port, Some(tag))),
                ),
                Step::FloodAll { except } => targets.extend(
                    config
                        .ports()
                        .filter(|p| p.id != except && !self.blocked.iter().any(|b| b.0 == p.id))
                        .map(|p| Target::Out(p.id, None)),
                ),
                edit => targets.push(Target::Edit(edit)),
            }
        }
        let last = targets.iter().rposition(|t| matches!(t, Target::Out(..)));
        match last {
            None => self.drop(in_port, DropCause::Pipeline(DropReason::Rule), packet),
            Some(last) => self.run_targets(&targets[..=last], packet, in_port, config),
        }
        self.targets = targets;
    }

    /// Runs edits and outputs in order: every output but the last sends a copy.
    fn run_targets(
        &mut self,
        targets: &[Target],
        mut packet: Packet,
        in_port: PortId,
        config: &Config,
    ) {
        let (last, rest) = targets.split_last().expect("at least one output");
        for target in rest {
            match *target {
                Target::Edit(step) => {
                    if let Err(e) = self.edit(&mut packet, step, config) {
                        let cause = match e {
                            EditError::TtlExceeded => DropCause::Pipeline(DropReason::TtlExceeded),
                            _ => DropCause::EditFailed,
                        };
                        self.drop(in_port, cause, packet);
                        return;
                    }
                }
                Target::Out(port, tag) => {
                    let umem = self.output_umem(port).unwrap_or(packet.frame.umem());
                    match self.copy(&packet, umem) {
                        Some(copy) => self.output(copy, port, tag),
                        None => self.shared.counters.drop(port, DropCause::NoBuffer, 1),
                    }
                }
            }
        }
        if let Target::Out(port, tag) = *last {
            self.output(packet, port, tag);
        }
    }

    fn edit(&self, packet: &mut Packet, step: Step, config: &Config) -> Result<(), EditError> {
        let area = &self.areas[usize::from(packet.frame.umem())];
        let chunk = area.bytes_mut(&mut packet.frame);
        let mut frame = FrameBuf::new(chunk, packet.offset as usize, packet.len as usize)?;
        match step {
            Step::SetEthSrc(mac) => frame.set_eth_src(mac)?,
            Step::SetEthDst(mac) => frame.set_eth_dst(mac)?,
            Step::SetVlanVid(vid) => frame.set_vlan_vid(vid)?,
            Step::StripVlan => frame.strip_vlan(),
            Step::PushVlan(vid) => frame.push_vlan(vid)?,
            Step::DecTtl => frame.dec_ttl()?,
            Step::ArpReply(mac) => frame.arp_reply(mac)?,
            Step::EchoReply(mac) => frame.echo_reply(mac)?,
            Step::NeighborAdvert(mac) => {
                frame.neighbor_advert(mac, |t| config.is_router_ip(std::net::IpAddr::V6(t)))?;
            }
            // These update checksums incrementally, so they need complete ones: `forward`
            // finished any the sender left partial (on queues that may carry them) before the
            // decision was taken.
            Step::SetIpSrc(addr) => frame.set_ip_src(addr)?,
            Step::SetIpDst(addr) => frame.set_ip_dst(addr)?,
            Step::SetTpSrc(port) => frame.set_tp_src(port)?,
            Step::SetTpDst(port) => frame.set_tp_dst(port)?,
            Step::SetIpDscp(dscp) => frame.set_ip_dscp(dscp)?,
            Step::SetIpEcn(ecn) => frame.set_ip_ecn(ecn)?,
            Step::SetIpTtl(ttl) => frame.set_ip_ttl(ttl)?,
            Step::Output { .. } | Step::Flood { .. } | Step::FloodAll { .. } => {}
        }
        packet.offset = frame.offset() as u32;
        packet.len = frame.len() as u32;
        Ok(())
    }

    /// Builds a solicitation frame in a fresh frame and sends it on its port, or floods it in
    /// its VLAN.
    pub(super) fn solicit(&mut self, solicitation: &Solicitation, config: &Config) {
        let umem = match solicitation.port {
            Some(p) => self.output_umem(p),
            None => None,
        }
        .unwrap_or(0);
        let Some(mut frame) = self.free[usize::from(umem)].pop() else {
            return;
        };
        let area = &self.areas[usize::from(umem)];
        let chunk = area.bytes_mut(&mut frame);
        let head = FRAME_HEADROOM as usize;
        let len = solicitation.build(&mut chunk[head..]);
        let packet = Packet {
            frame,
            offset: FRAME_HEADROOM,
            len: len as u32,
        };
        let targets: Vec<Target> = match solicitation.port {
            Some(port) => {
                let tag = config
                    .port(port)
                    .and_then(|p| p.vlan.egress(solicitation.vlan))
                    .unwrap_or(EgressTag::Untagged);
                vec![Target::Out(port, Some(tag))]
            }
            None => config
                .flood_targets(solicitation.vlan, 0)
                .map(|(port, tag)| Target::Out(port, Some(tag)))
                .collect(),
        };
        if targets.is_empty() {
            self.free[usize::from(umem)].frames.push(packet.frame);
            return;
        }
        self.run_targets(&targets, packet, 0, config);
    }

    /// The UMEM of the local socket that sends on `port`, if there is one.
    fn output_umem(&self, port: PortId) -> Option<u16> {
        self.tx_local[usize::from(port)].map(|s| self.queues[usize::from(s)].umem as u16)
    }

    /// Copies a packet into a fresh frame of UMEM `umem`.
    pub(super) fn copy(&mut self, packet: &Packet, umem: u16) -> Option<Packet> {
        let mut frame = self.free[usize::from(umem)].pop()?;
        let src_area = &self.areas[usize::from(packet.frame.umem())];
        let dst_area = &self.areas[usize::from(umem)];
        let start = packet.offset as usize;
        let len = packet.len as usize;
        let head = FRAME_HEADROOM as usize;
        let src = &src_area.bytes(&packet.frame)[start..start + len];
        let dst = dst_area.bytes_mut(&mut frame);
        if head + len > dst.len() {
            self.free[usize::from(umem)].frames.push(frame);
            return None;
        }
        dst[head..head + len].copy_from_slice(src);
        Some(Packet {
            frame,
            offset: FRAME_HEADROOM,
            len: packet.len,
        })
    }
}
