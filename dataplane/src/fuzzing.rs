//! What the `kernel_map_encoding` fuzz target checks, as a plain function: cargo-fuzz calls
//! it on generated input (`dataplane/fuzz`), and `tests/fuzz_corpus.rs` replays the
//! checked-in corpus through it on stable.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use flowtable::wire::{EtherType, EthernetAddress};
use flowtable::{Decision, DropReason, EgressTag, FlowKey, Step};

use crate::fastpath::abi::{
    FLAG_DEC_TTL, FLAG_PEER, FLAG_REWRITE_MACS, KEY_LEN, KernelKey, KernelValue, VALUE_LEN,
    Verdict, VlanOp, key, value,
};
use crate::fastpath::policy::{KernelAction, Output, offload};

/// The fast path's map layouts on arbitrary input:
///
/// - any stored key or value decodes, and encodes back to the same bytes, padding aside
///   (the layouts are total: every byte pattern is some key or value);
/// - a flow's kernel key encodes and decodes back to itself, and holds the flow's fields
///   where the programs read them (L3 and L4 fields for IPv4 only);
/// - a decision the kernel can carry out (`fastpath::policy::offload`, on the switch of
///   `flowtable::fuzzing::fuzz_config`, with the rules one byte
///   chooses) is an action consistent with the decision and the
///   flow's tag, and its map value encodes and decodes back to itself, with the action at the
///   generator's offsets; it is never one with a header rewrite (IP addresses, ports, DSCP,
///   ECN, TTL), which userspace alone carries out.
///
/// # Panics
/// When one of those does not hold.
pub fn kernel_map_encoding(data: &[u8]) {
    let mut input = Input(data);
    stored_bytes_round_trip(&input.array::<KEY_LEN>(), &input.array::<VALUE_LEN>());
    let flow = input.flow();
    flow_key_round_trips(&flow);
    let config = flowtable::fuzzing::shared_config(input.byte());
    let decision = input.decision();
    let Some(action) = offload(&flow, &decision, &config) else {
        return;
    };
    check_action(&flow, &decision, &action);
    let output = Output {
        slot: input.u32(),
        ifindex: input.u32(),
        peer: input.byte() & 1 != 0,
    };
    let epoch = input.u32();
    let stored = action.value(output, epoch);
    let bytes = stored.to_bytes();
    assert_eq!(KernelValue::from_bytes(&bytes), stored);
    let verdict = match action.out_port {
        Some(port) => {
            assert_eq!(stored.out_port, output.slot, "the slot of port {port}");
            Verdict::Redirect
        }
        None => Verdict::Drop,
    };
    assert_eq!(bytes[value::VERDICT], verdict as u8);
    assert_eq!(bytes[value::VLAN_OP], action.vlan_op as u8);
    assert_eq!(u16::from_ne_bytes(field(&bytes, value::VID)), action.vid);
    assert_eq!(u32::from_ne_bytes(field(&bytes, value::EPOCH)), epoch);
    assert_eq!(
        u32::from_ne_bytes(field(&bytes, value::OUT_IFINDEX)),
        output.ifindex
    );
    let flags = bytes[value::FLAGS];
    assert_eq!(flags & FLAG_REWRITE_MACS != 0, action.rewrite.is_some());
    assert_eq!(flags & FLAG_DEC_TTL != 0, action.dec_ttl);
    assert_eq!(flags & FLAG_PEER != 0, output.peer);
    if let Some((dst, src)) = action.rewrite {
        assert_eq!(field::<6>(&bytes, value::NEW_DST), dst.0);
        assert_eq!(field::<6>(&bytes, value::NEW_SRC), src.0);
    }
    for counter in [value::PACKETS, value::BYTES, value::LAST_SEEN] {
        assert_eq!(
            field::<8>(&bytes, counter),
            [0; 8],
            "a new entry counts nothing"
        );
    }
}

/// Bytes from the map decode and encode back to themselves (value padding zeroed).
fn stored_bytes_round_trip(key_bytes: &[u8; KEY_LEN], value_bytes: &[u8; VALUE_LEN]) {
    let decoded = KernelKey::from_bytes(key_bytes);
    assert_eq!(decoded.to_bytes(), *key_bytes);
    assert_eq!(KernelKey::from_bytes(&decoded.to_bytes()), decoded);

    let decoded = KernelValue::from_bytes(value_bytes);
    let mut expected = *value_bytes;
    expected[core::mem::offset_of!(KernelValue, pad0)] = 0;
    let pad1 = core::mem::offset_of!(KernelValue, pad1);
    expected[pad1..pad1 + 2].fill(0);
    assert_eq!(decoded.to_bytes(), expected);
    assert_eq!(KernelValue::from_bytes(&decoded.to_bytes()), decoded);
}

/// A flow's kernel key survives encoding, and its bytes are the flow's fields as a frame
/// carries them.
fn flow_key_round_trips(flow: &FlowKey) {
    let kernel = KernelKey::of(flow);
    let bytes = kernel.to_bytes();
    assert_eq!(KernelKey::from_bytes(&bytes), kernel);
    assert_eq!(
        u16::from_ne_bytes(field(&bytes, key::IN_PORT)),
        flow.in_port
    );
    assert_eq!(u16::from_ne_bytes(field(&bytes, key::VLAN)), flow.vlan);
    let dl_dst = EthernetAddress(field(&bytes, key::DL_DST)).to_u64();
    assert_eq!(dl_dst, flow.dl_dst & 0xffff_ffff_ffff);
    let dl_src_at = core::mem::offset_of!(KernelKey, dl_src);
    let dl_src = EthernetAddress(field(&bytes, dl_src_at)).to_u64();
    assert_eq!(dl_src, flow.dl_src & 0xffff_ffff_ffff);
    assert_eq!(
        u16::from_be_bytes(field(&bytes, key::DL_TYPE)),
        flow.dl_type
    );
    let l3 = &bytes[key::NW_PROTO..];
    if flow.dl_type != EtherType::IPV4 {
        assert!(
            l3.iter().all(|&b| b == 0),
            "no L3 fields for {:#06x}",
            flow.dl_type
        );
        return;
    }
    assert_eq!(bytes[key::NW_PROTO], flow.nw_proto);
    assert_eq!(
        u32::from_be_bytes(field(&bytes, key::NW_SRC)),
        flow.nw_src as u32
    );
    assert_eq!(
        u32::from_be_bytes(field(&bytes, key::NW_DST)),
        flow.nw_dst as u32
    );
    let tp_dst_at = core::mem::offset_of!(KernelKey, tp_dst);
    let ports = (
        field::<2>(&bytes, key::TP_SRC),
        field::<2>(&bytes, tp_dst_at),
    );
    if flow.nw_proto == 1 {
        // ICMP: type and code in the two bytes a port would take; they are bytes.
        let want = ([flow.tp_src as u8, flow.tp_dst as u8], [0, 0]);
        assert_eq!(ports, want);
    } else {
        let want = (flow.tp_src.to_be_bytes(), flow.tp_dst.to_be_bytes());
        assert_eq!(ports, want);
    }
}

/// An action the kernel is given does what the decision says, with the tag change the
/// flow's own tag calls for.
fn check_action(flow: &FlowKey, decision: &Decision, action: &KernelAction) {
    let ipv4 = flow.dl_type == EtherType::IPV4;
    let Some(port) = action.out_port else {
        assert_eq!(decision.drop_reason(), Some(DropReason::Rule));
        assert!(
            decision.rule().is_some() && ipv4,
            "{decision:?} of {flow:?}"
        );
        return;
    };
    assert!(decision.drop_reason().is_none(), "{decision:?}");
    assert!(
        !decision.steps().iter().any(is_header_rewrite),
        "{decision:?}: the kernel rewrites no IP or L4 header"
    );
    match decision.steps().last() {
        Some(Step::Output { port: out, .. }) => assert_eq!(*out, port),
        Some(Step::Flood { .. }) => {}
        other => panic!("{other:?} offloaded as an output to {port}"),
    }
    assert_eq!(action.rewrite.is_some(), action.dec_ttl, "{action:?}");
    if !ipv4 {
        assert!(action.rewrite.is_none(), "{action:?} of {flow:?}");
    }
    match action.vlan_op {
        VlanOp::None => assert_eq!(action.vid, 0),
        VlanOp::Push => assert!(flow.vlan_id().is_none(), "{action:?} of {flow:?}"),
        VlanOp::Strip => assert!(flow.vlan_id().is_some(), "{action:?} of {flow:?}"),
        VlanOp::Set => assert!(
            flow.vlan_id().is_some_and(|v| v != action.vid),
            "{action:?} of {flow:?}"
        ),
    }
}

/// A step that rewrites an IP or L4 header, which only userspace carries out.
fn is_header_rewrite(step: &Step) -> bool {
    matches!(
        step,
        Step::SetIpSrc(_)
            | Step::SetIpDst(_)
            | Step::SetTpSrc(_)
            | Step::SetTpDst(_)
            | Step::SetIpDscp(_)
            | Step::SetIpEcn(_)
            | Step::SetIpTtl(_)
    )
}

fn field<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    bytes[at..at + N]
        .try_into()
        .expect("a field inside the layout")
}

/// Reads fuzz input front to back; zeros once it runs out.
#[derive(Debug)]
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        core::array::from_fn(|_| self.byte())
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.array())
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.array())
    }

    fn ip(&mut self) -> IpAddr {
        if self.byte() & 1 == 0 {
            IpAddr::V4(Ipv4Addr::from(self.u32()))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.array::<16>()))
        }
    }

    fn mac(&mut self) -> EthernetAddress {
        EthernetAddress(self.array())
    }

    fn flow(&mut self) -> FlowKey {
        FlowKey {
            in_port: self.u16(),
            vlan: self.u16(),
            dl_type: self.u16(),
            nw_proto: self.byte(),
            nw_ttl: self.byte(),
            dl_src: self.mac().to_u64(),
            dl_dst: self.mac().to_u64(),
            nw_src: u128::from_be_bytes(self.array()),
            nw_dst: u128::from_be_bytes(self.array()),
            tp_src: self.u16(),
            tp_dst: self.u16(),
            tcp_flags: self.u16() & 0x0fff,
            ..FlowKey::default()
        }
    }

    fn tag(&mut self) -> Option<EgressTag> {
        match self.byte() % 3 {
            0 => None,
            1 => Some(EgressTag::Untagged),
            _ => Some(EgressTag::Tagged(self.u16() & 0x0fff)),
        }
    }

    /// A decision: up to six steps (or a drop), and perhaps a rule.
    fn decision(&mut self) -> Decision {
        let shape = self.byte();
        let rule = (shape & 0x80 != 0).then(|| u32::from(self.byte()));
        if shape & 0x40 != 0 {
            let reason = DropReason::ALL[usize::from(self.byte()) % DropReason::ALL.len()];
            return Decision::drop(reason).with_rule(rule);
        }
        let steps: Vec<Step> = (0..shape % 7)
            .map(|_| match self.byte() % 20 {
                0 | 1 => Step::Output {
                    port: self.u16() % 8,
                    tag: self.tag(),
                },
                2 => Step::Flood {
                    vlan: self.u16() & 0x0fff,
                    except: self.u16() % 8,
                },
                3 => Step::FloodAll {
                    except: self.u16() % 8,
                },
                4 => Step::SetEthSrc(self.mac()),
                5 => Step::SetEthDst(self.mac()),
                6 => Step::SetVlanVid(self.u16() & 0x0fff),
                7 => Step::StripVlan,
                8 => Step::PushVlan(self.u16() & 0x0fff),
                9 => Step::DecTtl,
                10 => Step::ArpReply(self.mac()),
                11 => Step::EchoReply(self.mac()),
                12 => Step::NeighborAdvert(self.mac()),
                13 => Step::SetIpSrc(self.ip()),
                14 => Step::SetIpDst(self.ip()),
                15 => Step::SetTpSrc(self.u16()),
                16 => Step::SetTpDst(self.u16()),
                17 => Step::SetIpDscp(self.byte() & 0x3f),
                18 => Step::SetIpEcn(self.byte() & 0x03),
                _ => Step::SetIpTtl(self.byte()),
            })
            .collect();
        Decision::from_steps(&steps).with_rule(rule)
    }
}
