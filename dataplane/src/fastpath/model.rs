//! The fast path's programs as plain Rust, for the differential tests: what the XDP program
//! (`program.rs`) and the tc program (`tc_program.rs`) do to a frame, step by step, with the
//! same bounds checks, the same order of edits and the same arithmetic (the checksum updates
//! included). It shares nothing with the userspace code it is compared with: no `flowtable`
//! parsing, editing or checksum function, no `KernelKey::of`; only the map layouts of `abi`,
//! which the programs use too.
//!
//! Frames go in and come out as they are on the wire (an outer VLAN tag in the bytes). A tc
//! program meets an skb whose outer tag the kernel holds apart; the model takes the tag out
//! before and puts it back after, as the device on either side would.

use flowtable::PortId;
use flowtable::key::VLAN_PRESENT;

use super::abi::{
    FLAG_DEC_TTL, FLAG_PEER, FLAG_REWRITE_MACS, KernelKey, KernelValue, Verdict, VlanOp,
};
use super::maps::SCRATCH_LEN;
use crate::hook::HookKind;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const UPCALL_MAGIC: u16 = 0x88b5;
const UPCALL_FLAG_VLAN: u16 = 1;
const UPCALL_FLAG_VLAN_AD: u16 = 2;

/// What a program does with a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Sent on: through DEVMAP slot `slot` (XDP), or to interface `ifindex`, into its peer
    /// with `peer` (tc). `frame` is as it leaves, on the wire; `csum_partial` says the skb
    /// still carries a TCP/UDP checksum for the device (or the receiver) to finish.
    Redirect {
        slot: u32,
        ifindex: u32,
        peer: bool,
        frame: Vec<u8>,
        csum_partial: bool,
    },
    /// Dropped (a rule's drop).
    Drop,
    /// Handed to userspace, as these bytes: the frame as the program left it (XDP, to the
    /// port's AF_XDP socket), or the upcall prefix and the frame without its outer tag (tc,
    /// to the upcall device).
    Up(Vec<u8>),
}

/// A frame as a program meets it, and the entry lookup it does.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ingress<'a> {
    /// The frame on the wire.
    pub(crate) frame: &'a [u8],
    /// The port whose program meets it.
    pub(crate) port: PortId,
    pub(crate) hook: HookKind,
    /// The XDP program was made to finish checksums left for offload (a veth's).
    pub(crate) finish_checksums: bool,
    /// The skb's TCP/UDP checksum is left for offload (tc; an XDP program only sees the
    /// bytes, which then hold the pseudo-header sum).
    pub(crate) csum_partial: bool,
}

/// What the program's parse left: the key, and what the later steps read.
#[derive(Debug, Clone, Copy, Default)]
struct Parsed {
    key: KernelKey,
    /// The L3 header's offset in the data.
    l3: usize,
    /// The IPv4 total length (XDP reads it).
    ip_len: usize,
    /// Where in the L4 header a checksum left for offload sits (XDP).
    csum_at: Option<usize>,
}

/// The skb a tc program meets: the outer tag apart (its protocol and TCI), the rest as data.
#[derive(Debug, Clone)]
struct Skb {
    tag: Option<(u16, u16)>,
    data: Vec<u8>,
}

impl Skb {
    fn from_wire(frame: &[u8]) -> Skb {
        if frame.len() >= 18 && matches!(be16(frame, 12), ETH_P_8021Q | ETH_P_8021AD) {
            let mut data = frame[..12].to_vec();
            data.extend_from_slice(&frame[16..]);
            return Skb {
                tag: Some((be16(frame, 12), be16(frame, 14))),
                data,
            };
        }
        Skb {
            tag: None,
            data: frame.to_vec(),
        }
    }

    fn to_wire(&self) -> Vec<u8> {
        let mut frame = self.data.clone();
        if let Some((proto, tci)) = self.tag {
            let mut tag = proto.to_be_bytes().to_vec();
            tag.extend_from_slice(&tci.to_be_bytes());
            frame.splice(12..12, tag);
        }
        frame
    }

    /// `bpf_skb_vlan_push`: a tag held apart goes into the data first.
    fn push(&mut self, proto: u16, tci: u16) {
        if let Some((p, t)) = self.tag {
            let mut tag = p.to_be_bytes().to_vec();
            tag.extend_from_slice(&t.to_be_bytes());
            self.data.splice(12..12, tag);
        }
        self.tag = Some((proto, tci));
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn put16(b: &mut [u8], at: usize, value: u16) {
    b[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// The ones' complement sum of `bytes` as 16-bit big-endian words (an odd last byte padded
/// with zero), folded to 16 bits.
fn ones_sum(bytes: &[u8]) -> u32 {
    let mut sum: u64 = 0;
    for pair in bytes.chunks(2) {
        let word = match pair {
            [hi, lo] => u16::from_be_bytes([*hi, *lo]),
            [hi] => u16::from_be_bytes([*hi, 0]),
            _ => unreachable!("chunks of two"),
        };
        sum += u64::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u32
}

/// The key as the ingress port's program builds it from `ingress`, or `None` when the
/// program hands the frame to userspace before any lookup.
pub(crate) fn key(ingress: &Ingress<'_>) -> Option<KernelKey> {
    match ingress.hook {
        HookKind::Xdp => parse_xdp(ingress).map(|p| p.key),
        HookKind::Tc => parse_tc(&Skb::from_wire(ingress.frame), ingress.port).map(|p| p.key),
    }
}

/// What the ingress port's program does with the frame, given the flow map (`lookup`) and
/// the current epoch.
pub(crate) fn run(
    ingress: &Ingress<'_>,
    lookup: impl Fn(&KernelKey) -> Option<KernelValue>,
    epoch: u32,
) -> Outcome {
    let hit = |key: &KernelKey| lookup(key).filter(|v| v.epoch == epoch);
    match ingress.hook {
        HookKind::Xdp => run_xdp(ingress, hit),
        HookKind::Tc => run_tc(ingress, hit),
    }
}

/// `emit_mac_key`.
fn mac_key(key: &mut KernelKey, data: &[u8], port: PortId) {
    key.in_port = port;
    key.dl_dst.copy_from_slice(&data[0..6]);
    key.dl_src.copy_from_slice(&data[6..12]);
}

/// `emit_ipv4_key` on the header at `l3`: `Err` for its `fail` (to userspace). The total
/// length must be within the data (the frame, or the skb: the model's skbs are never GSO);
/// with `xdp` and `finish`, TCP and UDP checksums that hold only the pseudo-header sum are
/// noted (`emit_partial_checksum_note`).
fn ipv4_key(
    data: &[u8],
    l3: usize,
    parsed: &mut Parsed,
    xdp: bool,
    finish: bool,
) -> Result<(), ()> {
    let len = data.len();
    if l3 + 20 > len || data[l3] != 0x45 {
        return Err(());
    }
    let ip_len = usize::from(be16(data, l3 + 2));
    if ip_len < 20 || ip_len > len - l3 {
        return Err(());
    }
    parsed.ip_len = ip_len;
    let key = &mut parsed.key;
    key.nw_proto = data[l3 + 9];
    key.nw_src.copy_from_slice(&data[l3 + 12..l3 + 16]);
    key.nw_dst.copy_from_slice(&data[l3 + 16..l3 + 20]);
    if be16(data, l3 + 6) & 0x1fff != 0 {
        return Ok(());
    }
    let l4 = l3 + 20;
    let (need, csum_at) = match key.nw_proto {
        1 => (8, None),
        17 => (8, Some(6)),
        6 => (20, Some(16)),
        _ => return Ok(()),
    };
    if ip_len < 20 + need || l4 + need > len {
        return Ok(());
    }
    if key.nw_proto == 1 {
        key.tp_src.copy_from_slice(&data[l4..l4 + 2]);
        return Ok(());
    }
    key.tp_src.copy_from_slice(&data[l4..l4 + 2]);
    key.tp_dst.copy_from_slice(&data[l4 + 2..l4 + 4]);
    if key.nw_proto == 6 {
        // FIN, SYN and RST: the segments that open and close connections key apart.
        key.tcp_control = data[l4 + 13] & 0x07;
    }
    let Some(at) = csum_at.filter(|_| xdp && finish) else {
        return Ok(());
    };
    let field = u32::from(be16(data, l4 + at));
    if key.nw_proto == 17 && field == 0 {
        return Ok(());
    }
    // The folded pseudo-header sum, folded twice as the program does.
    let words = [
        be16(&key.nw_src, 0),
        be16(&key.nw_src, 2),
        be16(&key.nw_dst, 0),
        be16(&key.nw_dst, 2),
    ];
    let mut sum: u32 = words.iter().map(|&w| u32::from(w)).sum();
    sum += u32::from(key.nw_proto) + (parsed.ip_len as u32 - 20);
    for _ in 0..2 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if field == sum || (sum == 0xffff && field == 0) {
        parsed.csum_at = Some(at);
    }
    Ok(())
}

/// The XDP program's parse, up to its lookup.
fn parse_xdp(ingress: &Ingress<'_>) -> Option<Parsed> {
    let (data, port) = (ingress.frame, ingress.port);
    let mut parsed = Parsed::default();
    if data.len() < 14 {
        return None;
    }
    mac_key(&mut parsed.key, data, port);
    let mut ethertype = be16(data, 12);
    parsed.l3 = 14;
    if ethertype == ETH_P_8021Q {
        if data.len() < 18 {
            return None;
        }
        parsed.key.vlan = (be16(data, 14) & 0x0fff) | VLAN_PRESENT;
        ethertype = be16(data, 16);
        parsed.l3 = 18;
    }
    parsed.key.dl_type = ethertype.to_be_bytes();
    if ethertype == ETH_P_IP {
        let l3 = parsed.l3;
        ipv4_key(data, l3, &mut parsed, true, ingress.finish_checksums).ok()?;
    }
    Some(parsed)
}

/// The tc program's parse, up to its lookup.
fn parse_tc(skb: &Skb, port: PortId) -> Option<Parsed> {
    let data = &skb.data;
    let mut parsed = Parsed::default();
    if data.len() < 14 {
        return None;
    }
    mac_key(&mut parsed.key, data, port);
    if let Some((proto, tci)) = skb.tag {
        if proto != ETH_P_8021Q {
            return None;
        }
        parsed.key.vlan = (tci & 0x0fff) | VLAN_PRESENT;
    }
    let ethertype = be16(data, 12);
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        return None;
    }
    parsed.key.dl_type = ethertype.to_be_bytes();
    parsed.l3 = 14;
    if ethertype == ETH_P_IP {
        ipv4_key(data, 14, &mut parsed, false, false).ok()?;
    }
    Some(parsed)
}

/// `emit_dec_ttl` on the header at `l3`: `false` for its `fail`.
fn dec_ttl(data: &mut [u8], l3: usize) -> bool {
    if l3 + 20 > data.len() || data[l3 + 8] <= 1 {
        return false;
    }
    data[l3 + 8] -= 1;
    let mut sum = u32::from(be16(data, l3 + 10)) + 0x0100;
    if sum >= 0xffff {
        sum += 1;
    }
    put16(data, l3 + 10, (sum & 0xffff) as u16);
    true
}

/// `emit_mac_rewrite`.
fn rewrite_macs(data: &mut [u8], value: &KernelValue) {
    data[0..6].copy_from_slice(&value.new_dst);
    data[6..12].copy_from_slice(&value.new_src);
}

fn run_xdp(ingress: &Ingress<'_>, lookup: impl Fn(&KernelKey) -> Option<KernelValue>) -> Outcome {
    let frame = ingress.frame;
    let Some(parsed) = parse_xdp(ingress) else {
        return Outcome::Up(frame.to_vec());
    };
    let Some(value) = lookup(&parsed.key) else {
        return Outcome::Up(frame.to_vec());
    };
    let mut data = frame.to_vec();
    let drop = value.verdict == Verdict::Drop as u8;
    // finish_checksum: over the segment as the IPv4 header bounds it.
    if let Some(at) = parsed.csum_at
        && !drop
    {
        let segment = parsed.ip_len - 20;
        if !(8..SCRATCH_LEN).contains(&segment) {
            return Outcome::Up(data);
        }
        let l4 = parsed.l3 + 20;
        let mut csum = !(ones_sum(&data[l4..l4 + segment]) as u16);
        if parsed.key.nw_proto == 17 && csum == 0 {
            csum = 0xffff;
        }
        if l4 + at + 2 > data.len() {
            return Outcome::Up(data);
        }
        put16(&mut data, l4 + at, csum);
    }
    if value.flags & FLAG_DEC_TTL != 0 && !dec_ttl(&mut data, parsed.l3) {
        return Outcome::Up(data);
    }
    if drop {
        return Outcome::Drop;
    }
    if value.flags & FLAG_REWRITE_MACS != 0 {
        rewrite_macs(&mut data, &value);
    }
    match value.vlan_op {
        op if op == VlanOp::None as u8 => {}
        op if op == VlanOp::Set as u8 => {
            if data.len() < 18 {
                return Outcome::Drop;
            }
            let tci = (be16(&data, 14) & 0xf000) | value.vid;
            put16(&mut data, 14, tci);
        }
        op if op == VlanOp::Strip as u8 => {
            if data.len() < 18 {
                return Outcome::Drop;
            }
            data.drain(12..16);
        }
        _ => {
            let mut tag = ETH_P_8021Q.to_be_bytes().to_vec();
            tag.extend_from_slice(&value.vid.to_be_bytes());
            data.splice(12..12, tag);
            if data.len() < 18 {
                return Outcome::Drop;
            }
        }
    }
    Outcome::Redirect {
        slot: value.out_port,
        ifindex: 0,
        peer: false,
        frame: data,
        csum_partial: false,
    }
}

fn run_tc(ingress: &Ingress<'_>, lookup: impl Fn(&KernelKey) -> Option<KernelValue>) -> Outcome {
    let mut skb = Skb::from_wire(ingress.frame);
    let upcall = |skb: &Skb| {
        let mut bytes = Vec::with_capacity(8 + skb.data.len());
        bytes.extend_from_slice(&UPCALL_MAGIC.to_be_bytes());
        bytes.extend_from_slice(&ingress.port.to_be_bytes());
        let (tci, flags) = match skb.tag {
            None => (0, 0),
            Some((ETH_P_8021AD, tci)) => (tci, UPCALL_FLAG_VLAN | UPCALL_FLAG_VLAN_AD),
            Some((_, tci)) => (tci, UPCALL_FLAG_VLAN),
        };
        bytes.extend_from_slice(&tci.to_be_bytes());
        bytes.extend_from_slice(&flags.to_be_bytes());
        bytes.extend_from_slice(&skb.data);
        Outcome::Up(bytes)
    };
    let Some(parsed) = parse_tc(&skb, ingress.port) else {
        return upcall(&skb);
    };
    let Some(value) = lookup(&parsed.key) else {
        return upcall(&skb);
    };
    if value.verdict == Verdict::Drop as u8 {
        return Outcome::Drop;
    }
    let original = skb.clone();
    if value.flags & FLAG_DEC_TTL != 0 && !dec_ttl(&mut skb.data, 14) {
        return upcall(&original);
    }
    if value.flags & FLAG_REWRITE_MACS != 0 {
        rewrite_macs(&mut skb.data, &value);
    }
    let op = value.vlan_op;
    if op != VlanOp::None as u8 {
        if op == VlanOp::Push as u8 {
            skb.push(ETH_P_8021Q, value.vid);
        } else {
            // Strip or set: the new TCI keeps the old priority bits; the old tag goes.
            let tci = (skb.tag.map_or(0, |(_, tci)| tci) & 0xf000) | value.vid;
            skb.tag = None;
            if op != VlanOp::Strip as u8 {
                skb.push(ETH_P_8021Q, tci);
            }
        }
    }
    Outcome::Redirect {
        slot: 0,
        ifindex: value.out_ifindex,
        peer: value.flags & FLAG_PEER != 0,
        frame: skb.to_wire(),
        csum_partial: ingress.csum_partial,
    }
}

/// The data of the skb a frame on the wire is to a tc program (the outer tag held apart).
pub(crate) fn skb_data(frame: &[u8]) -> Vec<u8> {
    Skb::from_wire(frame).data
}

/// Finishes the TCP or UDP checksum of an IPv4 or IPv6 frame on the wire (outer tag or not),
/// as the device or the receiver of an skb with a partial checksum does: the field holds the
/// pseudo-header sum, the sum over the segment completes it.
pub(crate) fn finish_partial(frame: &mut [u8]) {
    let mut l3 = 14;
    if frame.len() >= 18 && matches!(be16(frame, 12), ETH_P_8021Q | ETH_P_8021AD) {
        l3 = 18;
    }
    if frame.len() < l3 + 40 && frame.len() < l3 + 20 {
        return;
    }
    let (l4, end, proto) = match be16(frame, l3 - 2) {
        ETH_P_IP => {
            let header_len = usize::from(frame[l3] & 0x0f) * 4;
            (
                l3 + header_len,
                l3 + usize::from(be16(frame, l3 + 2)),
                frame[l3 + 9],
            )
        }
        ETH_P_IPV6 if frame.len() >= l3 + 40 => (
            l3 + 40,
            l3 + 40 + usize::from(be16(frame, l3 + 4)),
            frame[l3 + 6],
        ),
        _ => return,
    };
    let at = match proto {
        6 => 16,
        17 => 6,
        _ => return,
    };
    if end > frame.len() || l4 + at + 2 > end {
        return;
    }
    let mut csum = !(ones_sum(&frame[l4..end]) as u16);
    if proto == 17 && csum == 0 {
        csum = 0xffff;
    }
    put16(frame, l4 + at, csum);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ones_sum_pads_an_odd_byte() {
        assert_eq!(ones_sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(ones_sum(&[0xff, 0xff, 0x00, 0x01]), 0x0001);
    }

    #[test]
    fn skb_tags_come_apart_and_back() {
        let mut frame = vec![2u8; 12];
        frame.extend_from_slice(&[0x81, 0x00, 0x20, 0x0a, 0x08, 0x00, 0x45]);
        let skb = Skb::from_wire(&frame);
        assert_eq!(skb.tag, Some((ETH_P_8021Q, 0x200a)));
        assert_eq!(skb.data.len(), frame.len() - 4);
        assert_eq!(skb.to_wire(), frame);
    }
}
