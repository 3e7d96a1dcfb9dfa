//! The fast path's XDP program, generated per port: build the flow's `KernelKey` on the
//! stack, look it up, apply the decision and redirect; anything else goes to the port's
//! AF_XDP socket.

use std::os::fd::{AsRawFd, BorrowedFd};

use flowtable::PortId;
use flowtable::key::VLAN_PRESENT;
use xvs_sys::bpf::Insn;
use xvs_sys::bpf::abi::{action, helper, sk_buff, xdp_md};
use xvs_sys::bpf::asm::{self, Builder, Label};

#[cfg(doc)]
use super::abi::KernelKey;
use super::abi::{
    FLAG_DEC_TTL, FLAG_REWRITE_MACS, KEY_LEN, TCP_CONTROL, Verdict, VlanOp, key, state, value,
};
use super::maps::{FastPathMaps, SCRATCH_LEN};

/// Where the key is built on the stack (it ends at the frame pointer).
pub(super) const KEY: i16 = -(KEY_LEN as i16);

/// The other stack slots of the program (8 bytes each, below the key).
mod stack {
    /// The L3 header's offset in the frame.
    pub(super) const L3_OFFSET: i16 = -48;
    /// A zero `u32`: the key of the one-slot scratch map.
    pub(super) const ZERO_KEY: i16 = -56;
    /// The IPv4 total length.
    pub(super) const IP_LEN: i16 = -64;
    /// Where in the L4 header a checksum left for offload sits (0: nothing to finish).
    pub(super) const CSUM_OFFSET: i16 = -72;
    /// The spilled context pointer.
    pub(super) const CTX: i16 = -80;
    /// The running checksum.
    pub(super) const SUM: i16 = -88;
    /// The spilled map value pointer.
    pub(super) const VALUE: i16 = -96;
    /// The L4 segment's length.
    pub(super) const SEGMENT_LEN: i16 = -104;
}

/// The stack offset of a key field at `offset` in [`KernelKey`].
pub(super) const fn k(offset: usize) -> i16 {
    KEY + offset as i16
}

/// The offset of a value field, as an instruction's offset.
pub(super) const fn v(offset: usize) -> i16 {
    offset as i16
}

pub(super) const ETH_P_IP: u16 = 0x0800;
pub(super) const ETH_P_8021Q: u16 = 0x8100;
pub(super) const ETH_P_8021AD: u16 = 0x88a8;

/// A 16-bit field as a load from the frame reads it: the bytes are in network order and the
/// load is native (little-endian on the hosts xvs runs on), so comparisons and stores use
/// the byte-swapped value.
pub(super) const fn wire16(value: u16) -> i32 {
    u16::from_ne_bytes(value.to_be_bytes()) as i32
}

/// The fast path's XDP program for one port: look the flow up, apply, redirect; else hand the
/// frame to the port's AF_XDP socket. With `finish_checksums` (a veth, whose frames may
/// carry TCP/UDP checksums left for offload), a checksum that holds only the pseudo-header
/// sum is finished on the way; elsewhere it is a wrong checksum that happens to have that
/// value, and goes on as it came, as the workers send it.
pub fn program(
    maps: &FastPathMaps,
    xskmap: BorrowedFd<'_>,
    port: PortId,
    finish_checksums: bool,
) -> Vec<Insn> {
    use asm::*;
    let clock = load_map_value(0, maps.state_fd().as_raw_fd(), state::CLOCK_NS as i32);
    let devmap = load_map_fd(1, maps.devmap_fd().as_raw_fd());
    let xsks = load_map_fd(1, xskmap.as_raw_fd());
    let scratch = load_map_fd(1, maps.scratch_fd().as_raw_fd());
    let mut b = Builder::default();
    let have_type = b.label();
    let csum = b.label();
    let lookup = b.label();
    let count = b.label();
    let vlan = b.label();
    let set_vid = b.label();
    let strip = b.label();
    let redirect = b.label();
    let drop = b.label();
    let to_xsk = b.label();
    // r6 = ctx, r7 = data, r8 = data_end; the key is built on the stack at KEY.
    b.push([
        mov_reg(6, 1),
        load(Size::W, 7, 6, xdp_md::DATA),
        load(Size::W, 8, 6, xdp_md::DATA_END),
        store_imm(Size::Dw, 10, k(key::IN_PORT), 0),
        store_imm(Size::Dw, 10, k(key::DL_DST + 4), 0),
        store_imm(Size::Dw, 10, k(key::DL_TYPE), 0),
        store_imm(Size::Dw, 10, k(key::NW_SRC), 0),
        store_imm(Size::W, 10, stack::ZERO_KEY, 0),
        store_imm(Size::Dw, 10, stack::CSUM_OFFSET, 0),
        mov_reg(2, 7),
        alu_imm(Alu::Add, 2, 14),
    ]);
    b.jmp_reg(Jmp::Gt, 2, 8, to_xsk);
    emit_mac_key(&mut b, port);
    b.push([mov_imm(9, 14), load(Size::H, 3, 7, 12)]);
    b.jmp_imm(Jmp::Ne, 3, wire16(ETH_P_8021Q), have_type);
    b.push([mov_reg(2, 7), alu_imm(Alu::Add, 2, 18)]);
    b.jmp_reg(Jmp::Gt, 2, 8, to_xsk);
    b.push([
        load(Size::H, 2, 7, 14),
        to_be(2, 16),
        alu_imm(Alu::And, 2, 0x0fff),
        alu_imm(Alu::Or, 2, i32::from(VLAN_PRESENT)),
        store_reg(Size::H, 10, 2, k(key::VLAN)),
        load(Size::H, 3, 7, 16),
        mov_imm(9, 18),
    ]);
    b.bind(have_type);
    b.push([
        store_reg(Size::H, 10, 3, k(key::DL_TYPE)),
        store_reg(Size::Dw, 10, 9, stack::L3_OFFSET),
    ]);
    b.jmp_imm(Jmp::Ne, 3, wire16(ETH_P_IP), lookup);
    // IPv4 without options, whole, else userspace decides.
    b.push([mov_reg(4, 7), alu_reg(Alu::Add, 4, 9)]);
    emit_ipv4_key(&mut b, to_xsk, lookup, Bounds::Frame { csum });
    b.bind(csum);
    if finish_checksums {
        emit_partial_checksum_note(&mut b, lookup);
    }

    b.bind(lookup);
    emit_lookup(&mut b, maps, to_xsk);
    finish_checksum(&mut b, scratch, to_xsk);
    b.push([
        load(Size::Dw, 4, 10, stack::L3_OFFSET),
        alu_reg(Alu::Add, 4, 7),
    ]);
    emit_dec_ttl(&mut b, to_xsk, count);

    b.bind(count);
    b.push([mov_imm(3, 1), mov_reg(5, 8), alu_reg(Alu::Sub, 5, 7)]);
    emit_count(&mut b, clock, drop);
    emit_mac_rewrite(&mut b, drop, vlan);

    b.bind(vlan);
    b.push([load(Size::B, 2, 9, v(value::VLAN_OP))]);
    b.jmp_imm(Jmp::Eq, 2, VlanOp::None as i32, redirect);
    b.jmp_imm(Jmp::Eq, 2, VlanOp::Set as i32, set_vid);
    b.jmp_imm(Jmp::Eq, 2, VlanOp::Strip as i32, strip);
    // Push: make room, move the addresses down, write the tag (priority 0).
    b.push([mov_reg(1, 6), mov_imm(2, -4), call(helper::XDP_ADJUST_HEAD)]);
    b.jmp_imm(Jmp::Ne, 0, 0, drop);
    b.push([
        load(Size::W, 7, 6, xdp_md::DATA),
        load(Size::W, 8, 6, xdp_md::DATA_END),
        mov_reg(2, 7),
        alu_imm(Alu::Add, 2, 18),
    ]);
    b.jmp_reg(Jmp::Gt, 2, 8, drop);
    b.push([
        load(Size::Dw, 3, 7, 4),
        store_reg(Size::Dw, 7, 3, 0),
        load(Size::W, 3, 7, 12),
        store_reg(Size::W, 7, 3, 8),
        store_imm(Size::H, 7, 12, wire16(ETH_P_8021Q)),
        load(Size::H, 3, 9, v(value::VID)),
        to_be(3, 16),
        store_reg(Size::H, 7, 3, 14),
    ]);
    b.ja(redirect);

    b.bind(set_vid);
    b.push([mov_reg(2, 7), alu_imm(Alu::Add, 2, 18)]);
    b.jmp_reg(Jmp::Gt, 2, 8, drop);
    b.push([
        load(Size::H, 4, 7, 14),
        to_be(4, 16),
        alu_imm(Alu::And, 4, 0xf000),
        load(Size::H, 3, 9, v(value::VID)),
        alu_reg(Alu::Or, 4, 3),
        to_be(4, 16),
        store_reg(Size::H, 7, 4, 14),
    ]);
    b.ja(redirect);

    b.bind(strip);
    b.push([mov_reg(2, 7), alu_imm(Alu::Add, 2, 18)]);
    b.jmp_reg(Jmp::Gt, 2, 8, drop);
    b.push([
        load(Size::W, 3, 7, 8),
        store_reg(Size::W, 7, 3, 12),
        load(Size::Dw, 3, 7, 0),
        store_reg(Size::Dw, 7, 3, 4),
        mov_reg(1, 6),
        mov_imm(2, 4),
        call(helper::XDP_ADJUST_HEAD),
    ]);
    b.jmp_imm(Jmp::Ne, 0, 0, drop);

    b.bind(redirect);
    b.push(devmap);
    b.push([
        load(Size::W, 2, 9, v(value::OUT_PORT)),
        mov_imm(3, action::XDP_DROP),
        call(helper::REDIRECT_MAP),
        exit(),
    ]);

    b.bind(drop);
    b.push([mov_imm(0, action::XDP_DROP), exit()]);

    b.bind(to_xsk);
    b.push([load(Size::W, 2, 6, xdp_md::RX_QUEUE_INDEX)]);
    b.push(xsks);
    b.push([
        mov_imm(3, action::XDP_PASS),
        call(helper::REDIRECT_MAP),
        exit(),
    ]);
    b.finish()
}

/// Looks the key on the stack up in the flow map; on a hit of the current epoch, leaves the
/// entry's pointer in r9, else goes to `miss`.
pub(super) fn emit_lookup(b: &mut Builder, maps: &FastPathMaps, miss: Label) {
    use asm::*;
    b.push(load_map_fd(1, maps.flows_fd().as_raw_fd()));
    b.push([
        mov_reg(2, 10),
        alu_imm(Alu::Add, 2, i32::from(KEY)),
        call(helper::MAP_LOOKUP_ELEM),
    ]);
    b.jmp_imm(Jmp::Eq, 0, 0, miss);
    b.push([mov_reg(9, 0)]);
    b.push(load_map_value(
        2,
        maps.state_fd().as_raw_fd(),
        state::EPOCH as i32,
    ));
    b.push([load(Size::W, 2, 2, 0), load(Size::W, 3, 9, v(value::EPOCH))]);
    b.jmp_reg(Jmp::Ne, 2, 3, miss);
}

/// Adds r3 packets and r5 bytes to the entry at r9, stamps it with the coarse clock (`clock`
/// loads the clock's address into r0) and goes to `drop` when the entry's verdict is to drop.
pub(super) fn emit_count(b: &mut Builder, clock: [Insn; 2], drop: Label) {
    use asm::*;
    b.push([
        load(Size::Dw, 4, 9, v(value::PACKETS)),
        alu_reg(Alu::Add, 4, 3),
        store_reg(Size::Dw, 9, 4, v(value::PACKETS)),
        load(Size::Dw, 4, 9, v(value::BYTES)),
        alu_reg(Alu::Add, 4, 5),
        store_reg(Size::Dw, 9, 4, v(value::BYTES)),
    ]);
    b.push(clock);
    b.push([
        load(Size::Dw, 0, 0, 0),
        store_reg(Size::Dw, 9, 0, v(value::LAST_SEEN)),
        load(Size::B, 2, 9, v(value::VERDICT)),
    ]);
    b.jmp_imm(Jmp::Eq, 2, Verdict::Drop as i32, drop);
}

/// Stores the ingress port and both MACs (from the frame at r7, 14 bytes known to be there)
/// into the key on the stack. Clobbers r2.
pub(super) fn emit_mac_key(b: &mut Builder, port: PortId) {
    use asm::*;
    b.push([
        store_imm(Size::H, 10, k(key::IN_PORT), i32::from(port)),
        load(Size::W, 2, 7, 0),
        store_reg(Size::W, 10, 2, k(key::DL_DST)),
        load(Size::W, 2, 7, 4),
        store_reg(Size::W, 10, 2, k(key::DL_DST + 4)),
        load(Size::W, 2, 7, 8),
        store_reg(Size::W, 10, 2, k(key::DL_DST + 8)),
    ]);
}

/// How a program knows where an IPv4 packet ends.
pub(super) enum Bounds {
    /// XDP: the frame is the whole packet, its total length within the frame; TCP and UDP
    /// go on to `csum` (to note a checksum left for offload).
    Frame { csum: Label },
    /// tc: the skb (r6) is the whole packet, the L3 header at 14; the total length of a GSO
    /// skb is the super-packet's, and 0 for one over 64 KiB (BIG TCP), which then stands for
    /// the skb's.
    Skb,
}

/// Stores the IPv4 fields of the header at r4 (r8 = data_end) into the key: protocol,
/// addresses, ports (ICMP type and code). A header with options, one not all there, or a
/// total length shorter than the header or longer than the packet goes to `fail`; a
/// fragment, or an L4 header that the total length or the data cuts short, to `lookup` with
/// what the key has (as the workers' key: they read the L4 header within the total length).
/// With [`Bounds::Frame`], TCP and UDP go to its `csum` with r0 = their checksum field,
/// r1 = its offset in the L4 header, r2 = the protocol. Leaves r4 at the L4 header and
/// r5 = the total length.
pub(super) fn emit_ipv4_key(b: &mut Builder, fail: Label, lookup: Label, bounds: Bounds) {
    use asm::*;
    let icmp = b.label();
    let udp = b.label();
    let tcp = b.label();
    b.push([mov_reg(2, 4), alu_imm(Alu::Add, 2, 20)]);
    b.jmp_reg(Jmp::Gt, 2, 8, fail);
    b.push([load(Size::B, 2, 4, 0)]);
    b.jmp_imm(Jmp::Ne, 2, 0x45, fail);
    b.push([load(Size::H, 5, 4, 2), to_be(5, 16)]);
    match bounds {
        Bounds::Frame { .. } => {
            b.jmp_imm(Jmp::Lt, 5, 20, fail);
            b.push([mov_reg(2, 8), alu_reg(Alu::Sub, 2, 4)]);
            b.jmp_reg(Jmp::Gt, 5, 2, fail);
            b.push([store_reg(Size::Dw, 10, 5, stack::IP_LEN)]);
        }
        Bounds::Skb => {
            let big = b.label();
            let sized = b.label();
            b.jmp_imm(Jmp::Eq, 5, 0, big);
            b.jmp_imm(Jmp::Lt, 5, 20, fail);
            b.push([load(Size::W, 2, 6, sk_buff::LEN), alu_imm(Alu::Sub, 2, 14)]);
            b.jmp_reg(Jmp::Gt, 5, 2, fail);
            b.ja(sized);
            b.bind(big);
            b.push([load(Size::W, 2, 6, sk_buff::GSO_SEGS)]);
            b.jmp_imm(Jmp::Le, 2, 1, fail);
            b.push([load(Size::W, 5, 6, sk_buff::LEN), alu_imm(Alu::Sub, 5, 14)]);
            b.bind(sized);
        }
    }
    b.push([
        load(Size::B, 2, 4, 9),
        store_reg(Size::B, 10, 2, k(key::NW_PROTO)),
        load(Size::W, 3, 4, 12),
        store_reg(Size::W, 10, 3, k(key::NW_SRC)),
        load(Size::W, 3, 4, 16),
        store_reg(Size::W, 10, 3, k(key::NW_DST)),
        load(Size::H, 3, 4, 6),
        to_be(3, 16),
        alu_imm(Alu::And, 3, 0x1fff),
    ]);
    b.jmp_imm(Jmp::Ne, 3, 0, lookup);
    b.push([alu_imm(Alu::Add, 4, 20)]);
    b.jmp_imm(Jmp::Eq, 2, 1, icmp);
    b.jmp_imm(Jmp::Eq, 2, 6, tcp);
    b.jmp_imm(Jmp::Eq, 2, 17, udp);
    b.ja(lookup);

    b.bind(icmp);
    b.jmp_imm(Jmp::Lt, 5, 20 + 8, lookup);
    b.push([mov_reg(3, 4), alu_imm(Alu::Add, 3, 8)]);
    b.jmp_reg(Jmp::Gt, 3, 8, lookup);
    b.push([
        load(Size::H, 3, 4, 0),
        store_reg(Size::H, 10, 3, k(key::TP_SRC)),
    ]);
    b.ja(lookup);

    b.bind(udp);
    b.jmp_imm(Jmp::Lt, 5, 20 + 8, lookup);
    b.push([mov_reg(3, 4), alu_imm(Alu::Add, 3, 8)]);
    b.jmp_reg(Jmp::Gt, 3, 8, lookup);
    b.push([
        load(Size::W, 3, 4, 0),
        store_reg(Size::W, 10, 3, k(key::TP_SRC)),
    ]);
    let Bounds::Frame { csum } = bounds else {
        b.ja(lookup);
        b.bind(tcp);
        b.jmp_imm(Jmp::Lt, 5, 20 + 20, lookup);
        b.push([mov_reg(3, 4), alu_imm(Alu::Add, 3, 20)]);
        b.jmp_reg(Jmp::Gt, 3, 8, lookup);
        b.push([
            load(Size::W, 3, 4, 0),
            store_reg(Size::W, 10, 3, k(key::TP_SRC)),
            load(Size::B, 3, 4, 13),
            alu_imm(Alu::And, 3, i32::from(TCP_CONTROL)),
            store_reg(Size::B, 10, 3, k(key::TCP_CONTROL)),
        ]);
        b.ja(lookup);
        return;
    };
    b.push([load(Size::H, 0, 4, 6)]);
    b.jmp_imm(Jmp::Eq, 0, 0, lookup);
    b.push([mov_imm(1, 6)]);
    b.ja(csum);

    b.bind(tcp);
    b.jmp_imm(Jmp::Lt, 5, 20 + 20, lookup);
    b.push([mov_reg(3, 4), alu_imm(Alu::Add, 3, 20)]);
    b.jmp_reg(Jmp::Gt, 3, 8, lookup);
    b.push([
        load(Size::W, 3, 4, 0),
        store_reg(Size::W, 10, 3, k(key::TP_SRC)),
        load(Size::B, 3, 4, 13),
        alu_imm(Alu::And, 3, i32::from(TCP_CONTROL)),
        store_reg(Size::B, 10, 3, k(key::TCP_CONTROL)),
        load(Size::H, 0, 4, 16),
        mov_imm(1, 16),
    ]);
    b.ja(csum);
}

/// A checksum field (r0, at offset r1 of the L4 header, protocol r2) holding only the
/// pseudo-header sum was left for offload (CHECKSUM_PARTIAL): notes where it is (stack slot
/// `CSUM_OFFSET`), to finish it if the flow is forwarded here (userspace finishes it
/// otherwise). Goes on to `lookup`.
fn emit_partial_checksum_note(b: &mut Builder, lookup: Label) {
    use asm::*;
    let partial = b.label();
    b.push([
        to_be(0, 16),
        load(Size::H, 3, 10, k(key::NW_SRC)),
        to_be(3, 16),
        load(Size::H, 5, 10, k(key::NW_SRC + 2)),
        to_be(5, 16),
        alu_reg(Alu::Add, 3, 5),
        load(Size::H, 5, 10, k(key::NW_DST)),
        to_be(5, 16),
        alu_reg(Alu::Add, 3, 5),
        load(Size::H, 5, 10, k(key::NW_DST + 2)),
        to_be(5, 16),
        alu_reg(Alu::Add, 3, 5),
        alu_reg(Alu::Add, 3, 2),
        load(Size::Dw, 5, 10, stack::IP_LEN),
        alu_imm(Alu::Sub, 5, 20),
        alu_reg(Alu::Add, 3, 5),
        mov_reg(5, 3),
        alu_imm(Alu::Rsh, 5, 16),
        alu_imm(Alu::And, 3, 0xffff),
        alu_reg(Alu::Add, 3, 5),
        mov_reg(5, 3),
        alu_imm(Alu::Rsh, 5, 16),
        alu_imm(Alu::And, 3, 0xffff),
        alu_reg(Alu::Add, 3, 5),
    ]);
    b.jmp_reg(Jmp::Eq, 0, 3, partial);
    b.jmp_imm(Jmp::Ne, 3, 0xffff, lookup);
    b.jmp_imm(Jmp::Ne, 0, 0, lookup);
    b.bind(partial);
    b.push([store_reg(Size::Dw, 10, 1, stack::CSUM_OFFSET)]);
}

/// With [`FLAG_DEC_TTL`] in the entry at r9: decrements the TTL of the IPv4 header at r4
/// (r8 = data_end) and fixes the header checksum (RFC 1624, as `ip_decrease_ttl`: the value
/// a full computation, and so the workers, would write); a header not all there or a TTL
/// that would reach 0 goes to `fail`. Falls through to what follows, where the caller binds
/// `next` (where it goes without the flag).
pub(super) fn emit_dec_ttl(b: &mut Builder, fail: Label, next: Label) {
    use asm::*;
    b.push([
        load(Size::B, 2, 9, v(value::FLAGS)),
        mov_reg(3, 2),
        alu_imm(Alu::And, 3, i32::from(FLAG_DEC_TTL)),
    ]);
    b.jmp_imm(Jmp::Eq, 3, 0, next);
    b.push([mov_reg(5, 4), mov_reg(3, 5), alu_imm(Alu::Add, 3, 20)]);
    b.jmp_reg(Jmp::Gt, 3, 8, fail);
    b.push([load(Size::B, 3, 5, 8)]);
    b.jmp_imm(Jmp::Le, 3, 1, fail);
    // The checksum gains 0x0100 with the end-around carry, and a sum of 0xffff (negative
    // zero, which no full computation gives) becomes 0: `check + (check >= 0xffff)`.
    let folded = b.label();
    b.push([
        alu_imm(Alu::Sub, 3, 1),
        store_reg(Size::B, 5, 3, 8),
        load(Size::H, 3, 5, 10),
        to_be(3, 16),
        alu_imm(Alu::Add, 3, 0x0100),
    ]);
    b.jmp_imm(Jmp::Lt, 3, 0xffff, folded);
    b.push([alu_imm(Alu::Add, 3, 1)]);
    b.bind(folded);
    b.push([
        alu_imm(Alu::And, 3, 0xffff),
        to_be(3, 16),
        store_reg(Size::H, 5, 3, 10),
    ]);
}

/// With [`FLAG_REWRITE_MACS`] in the entry at r9: writes its MACs over the frame's at r7
/// (r8 = data_end); a frame shorter than an Ethernet header goes to `fail`. Falls through to
/// what follows, where the caller binds `next` (where it goes without the flag).
pub(super) fn emit_mac_rewrite(b: &mut Builder, fail: Label, next: Label) {
    use asm::*;
    b.push([
        load(Size::B, 2, 9, v(value::FLAGS)),
        alu_imm(Alu::And, 2, i32::from(FLAG_REWRITE_MACS)),
    ]);
    b.jmp_imm(Jmp::Eq, 2, 0, next);
    b.push([mov_reg(2, 7), alu_imm(Alu::Add, 2, 14)]);
    b.jmp_reg(Jmp::Gt, 2, 8, fail);
    b.push([
        load(Size::W, 3, 9, v(value::NEW_DST)),
        store_reg(Size::W, 7, 3, 0),
        load(Size::H, 3, 9, v(value::NEW_DST + 4)),
        store_reg(Size::H, 7, 3, 4),
        load(Size::H, 3, 9, v(value::NEW_SRC)),
        store_reg(Size::H, 7, 3, 6),
        load(Size::W, 3, 9, v(value::NEW_SRC + 2)),
        store_reg(Size::W, 7, 3, 8),
    ]);
}

/// Finishes a TCP or UDP checksum left for offload, for a flow the kernel forwards: copies
/// the segment into a per-CPU scratch buffer (`bpf_xdp_load_bytes`), sums it with
/// `bpf_csum_diff` in four chunks of at most 512 bytes (the helper's limit), adds the last one
/// to three bytes, folds, complements and stores. The field already holds the folded
/// pseudo-header sum, which is what the sum needs. Segments over 2 KiB go to userspace.
///
/// Working from the buffer keeps the verifier's work small: chunk pointers are constant
/// offsets into one map value, so only the chunk sizes vary.
///
/// Stack: the slots of [`stack`].
fn finish_checksum(b: &mut Builder, scratch: [Insn; 2], to_xsk: asm::Label) {
    use asm::*;
    let csum_one = b.label();
    let csum_fold = b.label();
    let csum_store = b.label();
    let csum_fail = b.label();
    let csum_done = b.label();
    b.push([load(Size::Dw, 2, 10, stack::CSUM_OFFSET)]);
    b.jmp_imm(Jmp::Eq, 2, 0, csum_done);
    b.push([load(Size::B, 3, 9, v(value::VERDICT))]);
    b.jmp_imm(Jmp::Eq, 3, Verdict::Drop as i32, csum_done);
    b.push([
        load(Size::Dw, 5, 10, stack::IP_LEN),
        alu_imm(Alu::Sub, 5, 20),
    ]);
    b.jmp_imm(Jmp::Gt, 5, SCRATCH_LEN as i32 - 1, to_xsk);
    b.jmp_imm(Jmp::Lt, 5, 8, to_xsk);
    b.push([
        store_reg(Size::Dw, 10, 6, stack::CTX),
        store_reg(Size::Dw, 10, 9, stack::VALUE),
        store_reg(Size::Dw, 10, 5, stack::SEGMENT_LEN),
    ]);
    b.push(scratch);
    b.push([
        mov_reg(2, 10),
        alu_imm(Alu::Add, 2, i32::from(stack::ZERO_KEY)),
        call(helper::MAP_LOOKUP_ELEM),
    ]);
    b.jmp_imm(Jmp::Eq, 0, 0, csum_fail);
    b.push([
        mov_reg(9, 0),
        load(Size::Dw, 1, 10, stack::CTX),
        load(Size::Dw, 2, 10, stack::L3_OFFSET),
        alu_imm(Alu::Add, 2, 20),
        mov_reg(3, 9),
        load(Size::Dw, 4, 10, stack::SEGMENT_LEN),
        call(helper::XDP_LOAD_BYTES),
    ]);
    b.jmp_imm(Jmp::Ne, 0, 0, csum_fail);
    b.push([
        store_imm(Size::Dw, 10, stack::SUM, 0),
        load(Size::Dw, 6, 10, stack::SEGMENT_LEN),
        alu_imm(Alu::And, 6, (SCRATCH_LEN as i32 - 1) & !3),
    ]);
    for i in 0..4 {
        let small = b.label();
        let next = b.label();
        b.push([mov_reg(4, 6)]);
        b.jmp_imm(Jmp::Le, 4, 512, small);
        b.push([mov_imm(4, 512)]);
        b.bind(small);
        b.push([
            mov_imm(1, 0),
            mov_imm(2, 0),
            mov_reg(3, 9),
            alu_imm(Alu::Add, 3, 512 * i),
            load(Size::Dw, 5, 10, stack::SUM),
            call(helper::CSUM_DIFF),
        ]);
        b.jmp_imm(Jmp::Slt, 0, 0, csum_fail);
        b.push([store_reg(Size::Dw, 10, 0, stack::SUM), mov_imm(4, 0)]);
        b.jmp_imm(Jmp::Le, 6, 512, next);
        b.push([mov_reg(4, 6), alu_imm(Alu::Sub, 4, 512)]);
        b.bind(next);
        b.push([mov_reg(6, 4)]);
    }
    // The last 1-3 bytes, in memory order as csum_partial takes them.
    b.push([
        load(Size::Dw, 2, 10, stack::SEGMENT_LEN),
        mov_reg(3, 2),
        alu_imm(Alu::And, 3, (SCRATCH_LEN as i32 - 1) & !3),
        alu_imm(Alu::And, 2, 3),
        mov_reg(4, 9),
        alu_reg(Alu::Add, 4, 3),
    ]);
    b.jmp_imm(Jmp::Lt, 2, 2, csum_one);
    b.push([
        load(Size::H, 5, 4, 0),
        load(Size::Dw, 0, 10, stack::SUM),
        alu_reg(Alu::Add, 0, 5),
        store_reg(Size::Dw, 10, 0, stack::SUM),
        alu_imm(Alu::Add, 4, 2),
        alu_imm(Alu::Sub, 2, 2),
    ]);
    b.bind(csum_one);
    b.jmp_imm(Jmp::Eq, 2, 0, csum_fold);
    b.push([
        load(Size::B, 5, 4, 0),
        load(Size::Dw, 0, 10, stack::SUM),
        alu_reg(Alu::Add, 0, 5),
        store_reg(Size::Dw, 10, 0, stack::SUM),
    ]);
    b.bind(csum_fold);
    b.push([
        load(Size::Dw, 0, 10, stack::SUM),
        mov_reg(1, 0),
        alu_imm(Alu::Rsh, 1, 32),
        alu_imm(Alu::Lsh, 0, 32),
        alu_imm(Alu::Rsh, 0, 32),
        alu_reg(Alu::Add, 0, 1),
    ]);
    for _ in 0..3 {
        b.push([
            mov_reg(1, 0),
            alu_imm(Alu::Rsh, 1, 16),
            alu_imm(Alu::And, 0, 0xffff),
            alu_reg(Alu::Add, 0, 1),
        ]);
    }
    b.push([
        alu_imm(Alu::Xor, 0, 0xffff),
        load(Size::B, 2, 10, k(key::NW_PROTO)),
    ]);
    b.jmp_imm(Jmp::Ne, 2, 17, csum_store);
    b.jmp_imm(Jmp::Ne, 0, 0, csum_store);
    b.push([mov_imm(0, 0xffff)]);
    b.bind(csum_store);
    b.push([
        load(Size::Dw, 4, 10, stack::L3_OFFSET),
        alu_imm(Alu::Add, 4, 20),
        load(Size::Dw, 3, 10, stack::CSUM_OFFSET),
        alu_reg(Alu::Add, 4, 3),
        mov_reg(5, 7),
        alu_reg(Alu::Add, 5, 4),
        mov_reg(2, 5),
        alu_imm(Alu::Add, 2, 2),
    ]);
    b.jmp_reg(Jmp::Gt, 2, 8, csum_fail);
    b.push([
        store_reg(Size::H, 5, 0, 0),
        load(Size::Dw, 6, 10, stack::CTX),
        load(Size::Dw, 9, 10, stack::VALUE),
    ]);
    b.ja(csum_done);
    b.bind(csum_fail);
    b.push([load(Size::Dw, 6, 10, stack::CTX)]);
    b.ja(to_xsk);
    b.bind(csum_done);
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use flowtable::FlowKey;
    use xvs_sys::bpf::{XskMap, load_xdp, prog_test_run_output};

    use super::super::abi::{KernelKey, KernelValue};
    use super::super::test_frames::{UDP, tcp};
    use super::*;

    /// Port 1's program over maps of its own, port 2 a redirect target.
    struct Kernel {
        maps: FastPathMaps,
        xsks: XskMap,
    }

    impl Kernel {
        /// `None` (the caller skips) without root.
        fn new() -> Option<Kernel> {
            if !xvs_testkit::is_root() {
                return None;
            }
            let maps = FastPathMaps::new().expect("maps");
            let lo = xvs_sys::netdev::if_nametoindex("lo").expect("lo");
            maps.add_target(2, lo).expect("DEVMAP");
            let xsks = XskMap::new(1, "test_xsks").expect("xskmap");
            Some(Kernel { maps, xsks })
        }

        /// Runs the program (finishing checksums or not) on `frame` with `value` as the entry
        /// of the frame's flow as the workers key it: the verdict and the packet left.
        fn run(&self, finish: bool, frame: &[u8], value: KernelValue) -> (u32, Vec<u8>) {
            let insns = program(&self.maps, self.xsks.as_fd(), 1, finish);
            let prog = load_xdp(&insns, "xvs_fast_test").expect("load");
            let (flow, _) = FlowKey::extract(frame, 1).expect("a frame");
            let key = KernelKey::of(&flow);
            self.maps.insert(&key, &value).expect("insert");
            let mut out = vec![0u8; frame.len() + 64];
            let (verdict, len) = prog_test_run_output(prog.as_fd(), frame, &mut out).expect("run");
            self.maps.remove(&key);
            out.truncate(len);
            (verdict, out)
        }
    }

    /// A routed hop's entry: out of port 2, MACs rewritten, TTL decremented.
    fn routed() -> KernelValue {
        KernelValue {
            out_port: 2,
            epoch: 1,
            flags: FLAG_REWRITE_MACS | FLAG_DEC_TTL,
            new_dst: [2, 0, 0, 0, 0, 0x22],
            new_src: [2, 0, 0, 0, 0, 0x11],
            ..KernelValue::default()
        }
    }

    #[test]
    fn the_verifier_accepts_the_program() {
        if !xvs_testkit::is_root() {
            xvs_testkit::skip!("loading BPF programs needs root");
        }
        let maps = FastPathMaps::new().expect("maps");
        let xsks = XskMap::new(4, "test_xsks").expect("xskmap");
        for finish_checksums in [true, false] {
            let insns = program(&maps, xsks.as_fd(), 1, finish_checksums);
            if let Err(e) = load_xdp(&insns, "xvs_fast_test") {
                panic!("{e}");
            }
        }
    }

    /// The checksum update of a TTL decrement writes what a full computation (and the
    /// workers) would: 0xfeff becomes 0, not 0xffff (negative zero); others gain 0x0100 with
    /// the end-around carry.
    #[test]
    fn a_decremented_ttl_never_leaves_a_negative_zero_checksum() {
        let Some(kernel) = Kernel::new() else {
            xvs_testkit::skip!("BPF_PROG_TEST_RUN needs root");
        };
        for (before, after) in [(0xfeff, 0x0000), (0xfeaa, 0xffaa), (0xff00, 0x0001)] {
            let mut frame = UDP;
            frame[24..26].copy_from_slice(&u16::to_be_bytes(before));
            let (verdict, out) = kernel.run(true, &frame, routed());
            assert_eq!(verdict, action::XDP_REDIRECT as u32);
            assert_eq!(out[22], 63, "TTL");
            assert_eq!(
                u16::from_be_bytes([out[24], out[25]]),
                after,
                "after {before:#06x}"
            );
        }
    }

    /// A UDP checksum that holds the pseudo-header sum is one left for offload on a veth,
    /// finished on the way, and a wrong one elsewhere, left as it is (as the workers do).
    #[test]
    fn checksums_that_look_left_for_offload_are_finished_on_veths_only() {
        use core::net::Ipv4Addr;

        use flowtable::wire::checksum;

        let Some(kernel) = Kernel::new() else {
            xvs_testkit::skip!("BPF_PROG_TEST_RUN needs root");
        };
        let pseudo = checksum::pseudo_header_v4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            17,
            12,
        );
        let mut partial = UDP;
        partial[40..42].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
        let mut finished = partial;
        checksum::fill(&mut finished[34..], pseudo, 6, true);
        let bridged = KernelValue {
            out_port: 2,
            epoch: 1,
            ..KernelValue::default()
        };
        for (finish, expected) in [(true, finished), (false, partial)] {
            let (verdict, out) = kernel.run(finish, &partial, bridged);
            assert_eq!(verdict, action::XDP_REDIRECT as u32);
            assert_eq!(out, expected, "finishing: {finish}");
        }
    }

    /// Ports are read from an L4 header within the IPv4 total length, as the workers read
    /// them: bytes after it (Ethernet padding) are no header.
    #[test]
    fn ports_are_read_within_the_total_length() {
        let Some(kernel) = Kernel::new() else {
            xvs_testkit::skip!("BPF_PROG_TEST_RUN needs root");
        };
        let mut cut = UDP;
        cut[16..18].copy_from_slice(&20u16.to_be_bytes());
        let bridged = KernelValue {
            out_port: 2,
            epoch: 1,
            ..KernelValue::default()
        };
        let (verdict, out) = kernel.run(true, &cut, bridged);
        assert_eq!(verdict, action::XDP_REDIRECT as u32, "the workers' key");
        assert_eq!(out, cut);
    }

    /// The segments that open and close TCP connections (FIN, SYN, RST) are flows of their
    /// own: an entry made for a connection's data (ACK, PSH) never takes them, so they always
    /// reach the workers and the connection tracker.
    #[test]
    fn fin_syn_and_rst_miss_the_entry_of_a_connections_data() {
        let Some(kernel) = Kernel::new() else {
            xvs_testkit::skip!("BPF_PROG_TEST_RUN needs root");
        };
        let insns = program(&kernel.maps, kernel.xsks.as_fd(), 1, false);
        let prog = load_xdp(&insns, "xvs_fast_test").expect("load");
        let (ack, _) = FlowKey::extract(&tcp(0x10), 1).expect("a frame");
        let key = KernelKey::of(&ack);
        let bridged = KernelValue {
            out_port: 2,
            epoch: 1,
            ..KernelValue::default()
        };
        kernel.maps.insert(&key, &bridged).expect("insert");
        for (flags, hit) in [
            (0x10, true),
            (0x18, true),
            (0x02, false),
            (0x12, false),
            (0x11, false),
            (0x04, false),
            (0x14, false),
        ] {
            let frame = tcp(flags);
            let mut out = vec![0u8; frame.len() + 64];
            let (verdict, _) = prog_test_run_output(prog.as_fd(), &frame, &mut out).expect("run");
            assert_eq!(
                verdict == action::XDP_REDIRECT as u32,
                hit,
                "flags {flags:#04x}: verdict {verdict}"
            );
        }
        kernel.maps.remove(&key);
    }
}
