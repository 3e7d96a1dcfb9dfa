//! The fast path's map layouts: one `#[repr(C)]` type per map value or key, which the program
//! generator reads field offsets from (`offset_of!`) and the map writer and reader encode and
//! decode at the same offsets. Nothing else spells a byte offset of these maps.

use std::mem::{offset_of, size_of};

use flowtable::FlowKey;
use flowtable::wire::{EtherType, EthernetAddress};

/// The flow map's key: exactly what the program reads from a frame. Fields marked "wire"
/// hold bytes as the frame carries them (network order); the others are native.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct KernelKey {
    /// The ingress port's number (native).
    pub(crate) in_port: u16,
    /// The VLAN as [`FlowKey::vlan`] has it: `VLAN_PRESENT | vid`, or 0 (native).
    pub(crate) vlan: u16,
    /// Destination MAC (wire).
    pub(crate) dl_dst: [u8; 6],
    /// Source MAC (wire).
    pub(crate) dl_src: [u8; 6],
    /// EtherType (wire).
    pub(crate) dl_type: [u8; 2],
    /// IPv4 protocol; 0 for other EtherTypes.
    pub(crate) nw_proto: u8,
    /// A TCP segment's FIN, SYN and RST flags (`TCP_CONTROL`); 0 for other packets. The
    /// segments that open and close connections are thus other flows than the ones that carry
    /// data: an entry for established traffic never takes them.
    pub(crate) tcp_control: u8,
    /// TCP/UDP source port (wire), or ICMP type and code.
    pub(crate) tp_src: [u8; 2],
    /// TCP/UDP destination port (wire); 0 for ICMP.
    pub(crate) tp_dst: [u8; 2],
    /// IPv4 source (wire).
    pub(crate) nw_src: [u8; 4],
    /// IPv4 destination (wire).
    pub(crate) nw_dst: [u8; 4],
}

/// The TCP flags a kernel key holds: FIN, SYN and RST.
pub(crate) const TCP_CONTROL: u8 = 0x07;

/// Bytes of a [`KernelKey`]: eight words for the map's hash.
pub(crate) const KEY_LEN: usize = size_of::<KernelKey>();
const _: () = assert!(KEY_LEN == 32);

/// Offsets in [`KernelKey`], for the program generator.
pub(crate) mod key {
    use super::*;
    pub(crate) const IN_PORT: usize = offset_of!(KernelKey, in_port);
    pub(crate) const VLAN: usize = offset_of!(KernelKey, vlan);
    pub(crate) const DL_DST: usize = offset_of!(KernelKey, dl_dst);
    pub(crate) const DL_TYPE: usize = offset_of!(KernelKey, dl_type);
    pub(crate) const NW_PROTO: usize = offset_of!(KernelKey, nw_proto);
    pub(crate) const TCP_CONTROL: usize = offset_of!(KernelKey, tcp_control);
    pub(crate) const TP_SRC: usize = offset_of!(KernelKey, tp_src);
    pub(crate) const NW_SRC: usize = offset_of!(KernelKey, nw_src);
    pub(crate) const NW_DST: usize = offset_of!(KernelKey, nw_dst);
}

impl KernelKey {
    /// The kernel key of a flow, as the program of its ingress port computes it.
    pub(crate) fn of(flow: &FlowKey) -> KernelKey {
        let mut k = KernelKey {
            in_port: flow.in_port,
            vlan: flow.vlan,
            dl_dst: EthernetAddress::from_u64(flow.dl_dst).0,
            dl_src: EthernetAddress::from_u64(flow.dl_src).0,
            dl_type: flow.dl_type.to_be_bytes(),
            ..KernelKey::default()
        };
        if flow.dl_type == EtherType::IPV4 {
            k.nw_proto = flow.nw_proto;
            if flow.nw_proto == 6 {
                k.tcp_control = flow.tcp_flags as u8 & TCP_CONTROL;
            }
            match flow.nw_proto {
                1 => k.tp_src = [flow.tp_src as u8, flow.tp_dst as u8],
                _ => {
                    k.tp_src = flow.tp_src.to_be_bytes();
                    k.tp_dst = flow.tp_dst.to_be_bytes();
                }
            }
            k.nw_src = (flow.nw_src as u32).to_be_bytes();
            k.nw_dst = (flow.nw_dst as u32).to_be_bytes();
        }
        k
    }

    /// The bytes the map stores.
    pub(crate) fn to_bytes(self) -> [u8; KEY_LEN] {
        let mut b = [0u8; KEY_LEN];
        put(&mut b, key::IN_PORT, &self.in_port.to_ne_bytes());
        put(&mut b, key::VLAN, &self.vlan.to_ne_bytes());
        put(&mut b, key::DL_DST, &self.dl_dst);
        put(&mut b, offset_of!(KernelKey, dl_src), &self.dl_src);
        put(&mut b, key::DL_TYPE, &self.dl_type);
        b[key::NW_PROTO] = self.nw_proto;
        b[key::TCP_CONTROL] = self.tcp_control;
        put(&mut b, key::TP_SRC, &self.tp_src);
        put(&mut b, offset_of!(KernelKey, tp_dst), &self.tp_dst);
        put(&mut b, key::NW_SRC, &self.nw_src);
        put(&mut b, key::NW_DST, &self.nw_dst);
        b
    }

    /// A key from the bytes the map stores.
    pub(crate) fn from_bytes(b: &[u8; KEY_LEN]) -> KernelKey {
        KernelKey {
            in_port: u16::from_ne_bytes(get(b, key::IN_PORT)),
            vlan: u16::from_ne_bytes(get(b, key::VLAN)),
            dl_dst: get(b, key::DL_DST),
            dl_src: get(b, offset_of!(KernelKey, dl_src)),
            dl_type: get(b, key::DL_TYPE),
            nw_proto: b[key::NW_PROTO],
            tcp_control: b[key::TCP_CONTROL],
            tp_src: get(b, key::TP_SRC),
            tp_dst: get(b, offset_of!(KernelKey, tp_dst)),
            nw_src: get(b, key::NW_SRC),
            nw_dst: get(b, key::NW_DST),
        }
    }
}

/// What the program does on a hit.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Redirect through the DEVMAP slot [`KernelValue::out_port`].
    Redirect = 0,
    /// Drop (a rule said so).
    Drop = 1,
}

/// What the program does to a VLAN tag before it redirects.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum VlanOp {
    /// Leave the frame's tagging as it is.
    #[default]
    None = 0,
    /// Remove the tag.
    Strip = 1,
    /// Insert a tag with [`KernelValue::vid`].
    Push = 2,
    /// Replace the tag's VID with [`KernelValue::vid`].
    Set = 3,
}

/// [`KernelValue::flags`]: rewrite both MACs from the value.
pub(crate) const FLAG_REWRITE_MACS: u8 = 1;
/// [`KernelValue::flags`]: decrement the IPv4 TTL (and fix the header checksum).
pub(crate) const FLAG_DEC_TTL: u8 = 2;
/// [`KernelValue::flags`]: the output is a veth whose far end is the destination (a tc-hooked
/// port): a tc program delivers straight into that end's ingress (`bpf_redirect_peer`).
pub(crate) const FLAG_PEER: u8 = 4;

/// The flow map's value, one per CPU (a per-CPU hash): the decision, and counters that the
/// program bumps and workers read.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KernelValue {
    /// The output port's number: its slot in the DEVMAP.
    pub(crate) out_port: u32,
    /// The configuration epoch the decision was made under.
    pub(crate) epoch: u32,
    /// A [`Verdict`].
    pub(crate) verdict: u8,
    /// `FLAG_*` bits.
    pub(crate) flags: u8,
    /// A [`VlanOp`].
    pub(crate) vlan_op: u8,
    pub(crate) pad0: u8,
    /// The VID to push or set (native).
    pub(crate) vid: u16,
    pub(crate) pad1: u16,
    /// New destination MAC, with [`FLAG_REWRITE_MACS`].
    pub(crate) new_dst: [u8; 6],
    /// New source MAC, with [`FLAG_REWRITE_MACS`].
    pub(crate) new_src: [u8; 6],
    /// The output port's interface index, for a tc program's redirect.
    pub(crate) out_ifindex: u32,
    /// Packets this CPU forwarded.
    pub(crate) packets: u64,
    /// Their bytes, as received.
    pub(crate) bytes: u64,
    /// When this CPU last forwarded one (the fast path's coarse clock, CLOCK_MONOTONIC ns).
    pub(crate) last_seen: u64,
}

/// Bytes of a [`KernelValue`] (of one CPU's copy).
pub(crate) const VALUE_LEN: usize = size_of::<KernelValue>();
const _: () = assert!(VALUE_LEN == 56);

/// Offsets in [`KernelValue`], for the program generator.
pub(crate) mod value {
    use super::*;
    pub(crate) const OUT_PORT: usize = offset_of!(KernelValue, out_port);
    pub(crate) const EPOCH: usize = offset_of!(KernelValue, epoch);
    pub(crate) const VERDICT: usize = offset_of!(KernelValue, verdict);
    pub(crate) const FLAGS: usize = offset_of!(KernelValue, flags);
    pub(crate) const VLAN_OP: usize = offset_of!(KernelValue, vlan_op);
    pub(crate) const VID: usize = offset_of!(KernelValue, vid);
    pub(crate) const NEW_DST: usize = offset_of!(KernelValue, new_dst);
    pub(crate) const NEW_SRC: usize = offset_of!(KernelValue, new_src);
    pub(crate) const OUT_IFINDEX: usize = offset_of!(KernelValue, out_ifindex);
    pub(crate) const PACKETS: usize = offset_of!(KernelValue, packets);
    pub(crate) const BYTES: usize = offset_of!(KernelValue, bytes);
    pub(crate) const LAST_SEEN: usize = offset_of!(KernelValue, last_seen);
}

impl KernelValue {
    /// The bytes of one CPU's copy.
    pub(crate) fn to_bytes(self) -> [u8; VALUE_LEN] {
        let mut b = [0u8; VALUE_LEN];
        put(&mut b, value::OUT_PORT, &self.out_port.to_ne_bytes());
        put(&mut b, value::EPOCH, &self.epoch.to_ne_bytes());
        b[value::VERDICT] = self.verdict;
        b[value::FLAGS] = self.flags;
        b[value::VLAN_OP] = self.vlan_op;
        put(&mut b, value::VID, &self.vid.to_ne_bytes());
        put(&mut b, value::NEW_DST, &self.new_dst);
        put(&mut b, value::NEW_SRC, &self.new_src);
        put(&mut b, value::OUT_IFINDEX, &self.out_ifindex.to_ne_bytes());
        put(&mut b, value::PACKETS, &self.packets.to_ne_bytes());
        put(&mut b, value::BYTES, &self.bytes.to_ne_bytes());
        put(&mut b, value::LAST_SEEN, &self.last_seen.to_ne_bytes());
        b
    }

    /// One CPU's copy from its bytes.
    pub(crate) fn from_bytes(b: &[u8; VALUE_LEN]) -> KernelValue {
        KernelValue {
            out_port: u32::from_ne_bytes(get(b, value::OUT_PORT)),
            epoch: u32::from_ne_bytes(get(b, value::EPOCH)),
            verdict: b[value::VERDICT],
            flags: b[value::FLAGS],
            vlan_op: b[value::VLAN_OP],
            vid: u16::from_ne_bytes(get(b, value::VID)),
            new_dst: get(b, value::NEW_DST),
            new_src: get(b, value::NEW_SRC),
            out_ifindex: u32::from_ne_bytes(get(b, value::OUT_IFINDEX)),
            packets: u64::from_ne_bytes(get(b, value::PACKETS)),
            bytes: u64::from_ne_bytes(get(b, value::BYTES)),
            last_seen: u64::from_ne_bytes(get(b, value::LAST_SEEN)),
            ..KernelValue::default()
        }
    }
}

/// The one-slot state map the program reads through a direct pointer: the current epoch and
/// the coarse clock it stamps entries with.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FastPathState {
    /// Entries of another epoch do not match.
    pub(crate) epoch: u32,
    pub(crate) pad: u32,
    /// CLOCK_MONOTONIC ns, advanced by the control thread's tick.
    pub(crate) clock_ns: u64,
}

/// Bytes of a [`FastPathState`].
pub(crate) const STATE_LEN: usize = size_of::<FastPathState>();

/// Offsets in [`FastPathState`], for the program generator.
pub(crate) mod state {
    use super::*;
    pub(crate) const EPOCH: usize = offset_of!(FastPathState, epoch);
    pub(crate) const CLOCK_NS: usize = offset_of!(FastPathState, clock_ns);
}

impl FastPathState {
    /// The map value's bytes.
    pub(crate) fn to_bytes(self) -> [u8; STATE_LEN] {
        let mut b = [0u8; STATE_LEN];
        put(&mut b, state::EPOCH, &self.epoch.to_ne_bytes());
        put(&mut b, state::CLOCK_NS, &self.clock_ns.to_ne_bytes());
        b
    }
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

fn get<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    buf[at..at + N]
        .try_into()
        .expect("a field inside the struct")
}

#[cfg(test)]
mod tests {
    use flowtable::key::VLAN_PRESENT;

    use super::*;

    #[test]
    fn key_layout_matches_the_frame() {
        let flow = FlowKey {
            in_port: 1,
            vlan: VLAN_PRESENT | 10,
            dl_dst: 0x0200_0000_0002,
            dl_type: EtherType::IPV4,
            nw_proto: 17,
            nw_src: 0x0a00_0001,
            tp_src: 1000,
            tp_dst: 53,
            ..FlowKey::default()
        };
        let k = KernelKey::of(&flow).to_bytes();
        assert_eq!(&k[0..2], &1u16.to_ne_bytes());
        assert_eq!(u16::from_ne_bytes([k[2], k[3]]), 0x100a);
        assert_eq!(&k[4..10], &[2, 0, 0, 0, 0, 2]);
        assert_eq!(&k[16..18], &[0x08, 0x00]);
        assert_eq!(k[18], 17);
        assert_eq!(&k[20..24], &[0x03, 0xe8, 0, 53]);
        assert_eq!(&k[24..28], &[10, 0, 0, 1]);
        let ttl = FlowKey { nw_ttl: 9, ..flow };
        assert_eq!(
            KernelKey::of(&ttl).to_bytes(),
            k,
            "TTL is not part of the key"
        );
        assert_eq!(KernelKey::from_bytes(&k), KernelKey::of(&flow));
        // TCP: FIN, SYN and RST are part of the key, the other flags are not.
        let tcp = |flags| FlowKey {
            nw_proto: 6,
            tcp_flags: flags,
            ..flow
        };
        assert_eq!(KernelKey::of(&tcp(0x012)).to_bytes()[19], 0x02);
        assert_eq!(
            KernelKey::of(&tcp(0x018)).to_bytes(),
            KernelKey::of(&tcp(0x010)).to_bytes(),
            "PSH is not"
        );
        assert_eq!(KernelKey::of(&tcp(0x011)).tcp_control, 0x01);
        assert_eq!(
            KernelKey::of(&FlowKey {
                tcp_flags: 0x002,
                ..flow
            })
            .tcp_control,
            0,
            "UDP has none"
        );
    }

    #[test]
    fn icmp_type_and_code_sit_where_ports_would() {
        let flow = FlowKey {
            dl_type: EtherType::IPV4,
            nw_proto: 1,
            tp_src: 8,
            tp_dst: 0,
            ..FlowKey::default()
        };
        assert_eq!(KernelKey::of(&flow).tp_src, [8, 0]);
    }

    #[test]
    fn value_round_trips_at_the_generator_offsets() {
        let v = KernelValue {
            out_port: 7,
            epoch: 3,
            verdict: Verdict::Redirect as u8,
            flags: FLAG_REWRITE_MACS | FLAG_DEC_TTL,
            vlan_op: VlanOp::Push as u8,
            vid: 100,
            new_dst: [1, 2, 3, 4, 5, 6],
            new_src: [7, 8, 9, 10, 11, 12],
            out_ifindex: 42,
            packets: 5,
            bytes: 500,
            last_seen: 99,
            ..KernelValue::default()
        };
        let b = v.to_bytes();
        assert_eq!(KernelValue::from_bytes(&b), v);
        assert_eq!(b[value::VLAN_OP], 2);
        assert_eq!(
            &b[value::NEW_SRC..value::NEW_SRC + 6],
            &[7, 8, 9, 10, 11, 12]
        );
        assert_eq!(value::PACKETS, 32, "counters start on a word");
    }
}
