//! Which decisions the kernel can carry out, and how: a pipeline [`Decision`] becomes a
//! [`KernelAction`] (or stays in userspace), and an action becomes a map value.

use flowtable::wire::{EtherType, EthernetAddress};
use flowtable::{Decision, DropReason, EgressTag, FlowKey, PortId, Step};

use super::abi::{FLAG_DEC_TTL, FLAG_PEER, FLAG_REWRITE_MACS, KernelValue, Verdict, VlanOp};

/// Where a kernel entry sends its flow, as each hook's program needs it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Output {
    /// The port's DEVMAP slot (its number), for an XDP program.
    pub(crate) slot: u32,
    /// The port's interface, for a tc program.
    pub(crate) ifindex: u32,
    /// Deliver into the far end of the port's veth (a tc program's `bpf_redirect_peer`).
    pub(crate) peer: bool,
}

/// What the kernel is to do with a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KernelAction {
    /// Where to send it, or `None` to drop.
    pub(crate) out_port: Option<PortId>,
    pub(crate) rewrite: Option<(EthernetAddress, EthernetAddress)>,
    pub(crate) dec_ttl: bool,
    pub(crate) vlan_op: VlanOp,
    pub(crate) vid: u16,
}

/// Whether (and how) the kernel can carry out `decision` for flow `key`. Flows other than IPv4
/// have no L3 fields in their kernel key, so they are offloaded only when the decision could
/// not depend on those fields: no rules installed and no router on the way.
pub(crate) fn offload(
    key: &FlowKey,
    decision: &Decision,
    config: &flowtable::Config,
) -> Option<KernelAction> {
    let rules_installed = !config.rules.is_empty();
    let ipv4 = key.dl_type == EtherType::IPV4;
    // Broadcast and multicast are counted frame by frame against the loop guard and the
    // port's storm limit, which only userspace keeps.
    if EthernetAddress::from_u64(key.dl_dst).is_multicast()
        && (config.loop_guard_pps > 0
            || config
                .port(key.in_port)
                .is_some_and(|p| p.security.storm_limit.is_some()))
    {
        return None;
    }
    if let Some(reason) = decision.drop_reason() {
        // Only a rule's explicit drop is worth a kernel entry (on IPv4: the key is exact).
        return (reason == DropReason::Rule && decision.rule().is_some() && ipv4).then_some(
            KernelAction {
                out_port: None,
                rewrite: None,
                dec_ttl: false,
                vlan_op: VlanOp::None,
                vid: 0,
            },
        );
    }
    let (output, edits) = decision.steps().split_last()?;
    let (port, tag) = match *output {
        Step::Output { port, tag } => (port, tag),
        // A flood that reaches a single port (two ports in the VLAN) is an output; the
        // decision is re-made when the destination is learned or the ports change.
        Step::Flood { vlan, except } => {
            let mut targets = config.flood_targets(vlan, except);
            match (targets.next(), targets.next()) {
                (Some((port, tag)), None) => (port, Some(tag)),
                _ => return None,
            }
        }
        _ => return None,
    };
    let mut dst = None;
    let mut src = None;
    let mut dec_ttl = false;
    for step in edits {
        match *step {
            Step::SetEthDst(m) => dst = Some(m),
            Step::SetEthSrc(m) => src = Some(m),
            Step::DecTtl => dec_ttl = true,
            _ => return None,
        }
    }
    let routed = dst.is_some() || src.is_some() || dec_ttl;
    if !ipv4 && (rules_installed || routed) {
        return None;
    }
    // The router answers ARP requests and neighbor solicitations for its addresses, which
    // come broadcast or multicast: the bridge floods the others, and the kernel key of such a
    // flow (L2 fields) would take the ones for the router too.
    let answerable = matches!(key.dl_type, EtherType::ARP | EtherType::IPV6)
        && EthernetAddress::from_u64(key.dl_dst).is_multicast();
    if answerable && !config.interfaces().is_empty() {
        return None;
    }
    if routed && !(dst.is_some() && src.is_some() && dec_ttl) {
        return None;
    }
    let tagged = key.vlan_id();
    let (vlan_op, vid) = match tag {
        None => (VlanOp::None, 0),
        Some(EgressTag::Untagged) if tagged.is_some() => (VlanOp::Strip, 0),
        Some(EgressTag::Untagged) => (VlanOp::None, 0),
        Some(EgressTag::Tagged(v)) => match tagged {
            None => (VlanOp::Push, v),
            Some(t) if t == v => (VlanOp::None, 0),
            Some(_) => (VlanOp::Set, v),
        },
    };
    Some(KernelAction {
        out_port: Some(port),
        rewrite: dst.zip(src),
        dec_ttl,
        vlan_op,
        vid,
    })
}

impl KernelAction {
    /// Bytes each packet gains (pushed tag) or loses (stripped tag) on the way out.
    pub(crate) fn tx_delta(&self) -> i64 {
        match self.vlan_op {
            VlanOp::Push => 4,
            VlanOp::Strip => -4,
            VlanOp::None | VlanOp::Set => 0,
        }
    }

    /// The map value for this action, sending to `output`, decided under `epoch`.
    pub(crate) fn value(&self, output: Output, epoch: u32) -> KernelValue {
        let mut value = KernelValue {
            out_port: output.slot,
            out_ifindex: output.ifindex,
            epoch,
            verdict: match self.out_port {
                Some(_) => Verdict::Redirect as u8,
                None => Verdict::Drop as u8,
            },
            vlan_op: self.vlan_op as u8,
            vid: self.vid,
            ..KernelValue::default()
        };
        if let Some((dst, src)) = self.rewrite {
            value.flags |= FLAG_REWRITE_MACS;
            value.new_dst = dst.0;
            value.new_src = src.0;
        }
        if self.dec_ttl {
            value.flags |= FLAG_DEC_TTL;
        }
        if output.peer {
            value.flags |= FLAG_PEER;
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use flowtable::key::VLAN_PRESENT;

    use super::*;

    /// A configuration with ports 1..=`n`, every VLAN.
    fn ports(n: u16) -> flowtable::Config {
        let mut config = flowtable::Config::default();
        for id in 1..=n {
            config.set_port(flowtable::PortConfig {
                id,
                name: format!("p{id}"),
                mac: EthernetAddress([2, 0, 0, 0, 0, id as u8]),
                vlan: flowtable::VlanMode::All,
                security: Default::default(),
            });
        }
        config
    }

    #[test]
    fn offload_choices() {
        let key = FlowKey {
            dl_type: EtherType::IPV6,
            ..FlowKey::default()
        };
        let mut config = ports(3);
        let out = Decision::output(3, Some(EgressTag::Tagged(5)));
        let a = offload(&key, &out, &config).unwrap();
        assert_eq!((a.out_port, a.vlan_op, a.vid), (Some(3), VlanOp::Push, 5));
        let mut with_rules = config.clone();
        with_rules.rules.insert(flowtable::Rule {
            id: 1,
            table: 0,
            priority: 1,
            pattern: flowtable::Match::ANY,
            actions: vec![flowtable::Action::Normal],
        });
        assert!(
            offload(&key, &out, &with_rules).is_none(),
            "IPv6 with rules: key too coarse"
        );
        let flood = Decision::from_steps(&[Step::Flood { vlan: 0, except: 1 }]);
        assert!(
            offload(&key, &flood, &config).is_none(),
            "flood to two ports"
        );
        config.remove_port(2);
        assert_eq!(
            offload(&key, &flood, &config).unwrap().out_port,
            Some(3),
            "flood to one"
        );
        // Broadcast is counted by the loop guard and storm limits, in userspace alone.
        let broadcast = FlowKey {
            in_port: 1,
            dl_dst: 0xffff_ffff_ffff,
            ..key
        };
        assert!(
            offload(&broadcast, &flood, &config).is_none(),
            "loop guard on"
        );
        let mut unguarded = config.clone();
        unguarded.loop_guard_pps = 0;
        assert_eq!(
            offload(&broadcast, &flood, &unguarded).unwrap().out_port,
            Some(3)
        );
        let mut port = unguarded.port(1).unwrap().clone();
        port.security.storm_limit = Some(10);
        unguarded.set_port(port);
        assert!(
            offload(&broadcast, &flood, &unguarded).is_none(),
            "storm limit"
        );
        let v4 = FlowKey {
            dl_type: EtherType::IPV4,
            vlan: VLAN_PRESENT | 5,
            ..FlowKey::default()
        };
        let strip = Decision::output(2, Some(EgressTag::Untagged));
        assert_eq!(
            offload(&v4, &strip, &with_rules).unwrap().vlan_op,
            VlanOp::Strip
        );
        let routed = Decision::from_steps(&[
            Step::SetEthSrc(EthernetAddress([2; 6])),
            Step::SetEthDst(EthernetAddress([4; 6])),
            Step::DecTtl,
            Step::Output {
                port: 2,
                tag: Some(EgressTag::Tagged(5)),
            },
        ]);
        let a = offload(&v4, &routed, &with_rules).unwrap();
        assert!(a.dec_ttl && a.rewrite.is_some());
        assert_eq!(a.vlan_op, VlanOp::None);
        let dropped = Decision::drop(DropReason::Rule).with_rule(Some(4));
        assert_eq!(offload(&v4, &dropped, &with_rules).unwrap().out_port, None);
        assert!(offload(&v4, &Decision::drop(DropReason::SamePort), &config).is_none());
    }

    /// Header rewrites (IP addresses, ports, DSCP, ECN, TTL) stay in userspace, wherever
    /// they come in the decision: the kernel programs rewrite no IP or L4 header.
    #[test]
    fn header_rewrites_stay_in_userspace() {
        let mut config = ports(2);
        config.loop_guard_pps = 0;
        let key = FlowKey {
            in_port: 1,
            dl_type: EtherType::IPV4,
            nw_proto: 6,
            dl_src: 0x02_00_00_00_00_0a,
            dl_dst: 0x02_00_00_00_00_0b,
            ..FlowKey::default()
        };
        let output = Step::Output { port: 2, tag: None };
        assert!(offload(&key, &Decision::from_steps(&[output]), &config).is_some());
        let address = core::net::IpAddr::V4(core::net::Ipv4Addr::new(10, 0, 0, 9));
        let rewrites = [
            Step::SetIpSrc(address),
            Step::SetIpDst(address),
            Step::SetTpSrc(80),
            Step::SetTpDst(8080),
            Step::SetIpDscp(46),
            Step::SetIpEcn(1),
            Step::SetIpTtl(9),
        ];
        for rewrite in rewrites {
            for steps in [
                vec![rewrite, output],
                vec![
                    Step::SetEthSrc(EthernetAddress([2; 6])),
                    Step::SetEthDst(EthernetAddress([4; 6])),
                    Step::DecTtl,
                    rewrite,
                    output,
                ],
                vec![output, rewrite],
            ] {
                let decision = Decision::from_steps(&steps);
                assert!(offload(&key, &decision, &config).is_none(), "{steps:?}");
            }
        }
    }

    /// With a router, an ARP request or neighbor solicitation flooded to the one other port
    /// of its VLAN stays in userspace: its kernel key (L2 fields) would also take the
    /// sender's next request, for the router's address, which the router answers.
    #[test]
    fn broadcasts_a_router_may_answer_stay_in_userspace() {
        let mut config = ports(2);
        // (With the loop guard on, no broadcast is offloaded at all.)
        config.loop_guard_pps = 0;
        let flood = Decision::from_steps(&[Step::Flood { vlan: 0, except: 1 }]);
        let broadcast = |dl_type| FlowKey {
            in_port: 1,
            dl_type,
            dl_src: 0x02_00_00_00_00_0a,
            dl_dst: 0xffff_ffff_ffff,
            ..FlowKey::default()
        };
        let (arp, ipv6, raw) = (
            broadcast(EtherType::ARP),
            broadcast(EtherType::IPV6),
            broadcast(0x88b6),
        );
        for key in [arp, ipv6, raw] {
            assert!(offload(&key, &flood, &config).is_some(), "no router");
        }
        let address = core::net::IpAddr::V4(core::net::Ipv4Addr::new(10, 0, 0, 254));
        config
            .add_address(flowtable::config::Binding::Vlan(0), address, 24, None)
            .expect("an address");
        assert!(offload(&arp, &flood, &config).is_none(), "ARP");
        assert!(offload(&ipv6, &flood, &config).is_none(), "IPv6");
        assert!(
            offload(&raw, &flood, &config).is_some(),
            "nothing to answer"
        );
        let unicast = FlowKey {
            dl_dst: 0x02_00_00_00_00_0b,
            ..arp
        };
        let out = Decision::output(2, Some(EgressTag::Untagged));
        assert!(offload(&unicast, &out, &config).is_some(), "unicast ARP");
    }

    /// A frame from an invalid source never meets a kernel entry: the kernel key carries the
    /// source MAC, so such a frame misses every entry a valid source's flow installed and
    /// goes up, where the pipeline drops it; and that drop installs no entry.
    #[test]
    fn invalid_sources_stay_out_of_the_kernel() {
        use crate::fastpath::abi::KernelKey;

        let config = ports(2);
        let mut pipeline = flowtable::Pipeline::new(std::sync::Arc::new(config.clone()), 64);
        let valid = FlowKey {
            in_port: 1,
            dl_type: EtherType::IPV4,
            dl_src: 0x02_00_00_00_00_0a,
            dl_dst: 0x02_00_00_00_00_0b,
            nw_proto: 17,
            ..FlowKey::default()
        };
        pipeline.decide(
            &FlowKey {
                in_port: 2,
                dl_src: valid.dl_dst,
                dl_dst: valid.dl_src,
                ..valid
            },
            64,
            0,
        );
        let forwarded = pipeline.decide(&valid, 64, 1).clone();
        assert!(offload(&valid, &forwarded, &config).is_some());
        for src in [0, 0xffff_ffff_ffff, 0x01_00_5e_00_00_01] {
            let invalid = FlowKey {
                dl_src: src,
                ..valid
            };
            assert_ne!(KernelKey::of(&invalid), KernelKey::of(&valid));
            let dropped = pipeline.decide(&invalid, 64, 2).clone();
            assert_eq!(dropped.drop_reason(), Some(DropReason::InvalidSource));
            assert!(offload(&invalid, &dropped, &config).is_none(), "{src:012x}");
        }
    }
}
