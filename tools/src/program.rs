//! The BPF programs of xvs-pktgen, generated as bytecode with `xvs_sys::bpf::asm`:
//!
//! - [`live_tx`], run by `BPF_PROG_TEST_RUN` in live-frames mode, turns each run into one
//!   frame of the current flow and size, counts it, and returns `XDP_TX` (or, when paced and
//!   early, `XDP_DROP`);
//! - [`count_drop`], an XDP program attached to the receiving interface, counts packets and
//!   bytes per CPU and drops them;
//! - [`count_shot`], the same sink as a tc program at the interface's tcx ingress, where
//!   every skb arrives, those a `bpf_redirect_peer` put there included (they skip the
//!   veth's NAPI, so an XDP program never sees them).
//!
//! In live-frames mode the kernel keeps frame pages in a page pool and hands the same pages
//! to the program again without rewriting their data: whatever the program wrote into a
//! frame is what it finds there the next time that page comes round (`live_frames_pages_keep_
//! what_the_program_wrote` in the integration tests shows it). Only pages new to the pool
//! start from the template. So the program never updates a field relative to its old value:
//! it writes every varying field (source port, source address word, lengths, checksums)
//! whole, from its state, and a page's history does not matter.

use std::os::fd::{AsRawFd, BorrowedFd};

use xvs_sys::bpf::Insn;
use xvs_sys::bpf::abi::{action, helper, sk_buff, tc_action, xdp_md};
use xvs_sys::bpf::asm::{self, Alu, Builder, Jmp, Label, Size};

use crate::packet::{Flows, FrameSpec, LiveSums, SizeRange};

/// Offsets of the state of [`live_tx`] (one `u64` each).
pub mod state {
    /// Frames the program produced.
    pub const PACKETS: i16 = 0;
    /// Their bytes, FCS excluded.
    pub const BYTES: i16 = 8;
    /// The flow of the next frame.
    pub const FLOW: i16 = 16;
    /// Its source-port offset.
    pub const PORT: i16 = 24;
    /// Its source-address offset.
    pub const ADDRESS: i16 = 32;
    /// The size index of the next frame.
    pub const SIZE: i16 = 40;
    /// When the next frame is due, in [`super::PACE_SHIFT`]-scaled nanoseconds of
    /// `CLOCK_MONOTONIC` (with a target rate).
    pub const NEXT: i16 = 48;
    /// Bytes of the state.
    pub const LEN: u32 = 56;
}

/// Offsets of the per-CPU counters of [`count_drop`] and [`count_shot`].
pub mod counters {
    /// Packets seen.
    pub const PACKETS: i16 = 0;
    /// Their bytes (FCS excluded).
    pub const BYTES: i16 = 8;
    /// Bytes of the value.
    pub const LEN: u32 = 16;
}

/// The generator's idioms, on the workspace's one assembler.
trait Emit {
    fn store_be16(&mut self, base: u8, off: usize, value: u8, scratch: u8);
    fn store_be32(&mut self, base: u8, off: usize, value: u8, scratch: u8);
    fn mov64(&mut self, reg: u8, value: u64, scratch: u8);
    fn finish_checksum(&mut self, reg: u8, scratch: u8);
    fn add_u64(&mut self, base: u8, off: i16, value: u8, scratch: u8);
    fn lookup_key0(&mut self, map: BorrowedFd<'_>, missing: Label);
}

impl Emit for Builder {
    /// `*(u16 *)(base + off) = htons(value)`, with `scratch` clobbered.
    fn store_be16(&mut self, base: u8, off: usize, value: u8, scratch: u8) {
        let off = off as i16;
        self.push([
            asm::mov_reg(scratch, value),
            asm::alu_imm(Alu::Rsh, scratch, 8),
            asm::store_reg(Size::B, base, scratch, off),
            asm::store_reg(Size::B, base, value, off + 1),
        ]);
    }

    /// `*(u32 *)(base + off) = htonl(value)`, with `scratch` clobbered.
    fn store_be32(&mut self, base: u8, off: usize, value: u8, scratch: u8) {
        let off = off as i16;
        for (i, shift) in [24, 16, 8].into_iter().enumerate() {
            self.push([
                asm::mov_reg(scratch, value),
                asm::alu_imm(Alu::Rsh, scratch, shift),
                asm::store_reg(Size::B, base, scratch, off + i as i16),
            ]);
        }
        self.push([asm::store_reg(Size::B, base, value, off + 3)]);
    }

    /// `reg = value` for any 64-bit value, with `scratch` clobbered.
    fn mov64(&mut self, reg: u8, value: u64, scratch: u8) {
        if let Ok(small) = i32::try_from(value) {
            self.push([asm::mov_imm(reg, small)]);
            return;
        }
        self.push([
            asm::mov_imm(reg, (value >> 32) as u32 as i32),
            asm::alu_imm(Alu::Lsh, reg, 32),
            // A 32-bit immediate is sign-extended: clear the upper half again.
            asm::mov_imm(scratch, value as u32 as i32),
            asm::alu_imm(Alu::Lsh, scratch, 32),
            asm::alu_imm(Alu::Rsh, scratch, 32),
            asm::alu_reg(Alu::Or, reg, scratch),
        ]);
    }

    /// `reg = ~fold(reg) & 0xffff` for a sum below 2^32, with `scratch` clobbered.
    fn finish_checksum(&mut self, reg: u8, scratch: u8) {
        for _ in 0..2 {
            self.push([
                asm::mov_reg(scratch, reg),
                asm::alu_imm(Alu::Rsh, scratch, 16),
                asm::alu_imm(Alu::And, reg, 0xffff),
                asm::alu_reg(Alu::Add, reg, scratch),
            ]);
        }
        self.push([asm::alu_imm(Alu::Xor, reg, 0xffff)]);
    }

    /// `*(u64 *)(base + off) += value`.
    fn add_u64(&mut self, base: u8, off: i16, value: u8, scratch: u8) {
        self.push([
            asm::load(Size::Dw, scratch, base, off),
            asm::alu_reg(Alu::Add, scratch, value),
            asm::store_reg(Size::Dw, base, scratch, off),
        ]);
    }

    /// The map value at key 0 of `map` into `r0`, jumping to `missing` if there is none.
    fn lookup_key0(&mut self, map: BorrowedFd<'_>, missing: Label) {
        self.push([asm::store_imm(Size::W, 10, -4, 0)]);
        self.push(asm::load_map_fd(1, map.as_raw_fd()));
        self.push([
            asm::mov_reg(2, 10),
            asm::alu_imm(Alu::Add, 2, -4),
            asm::call(helper::MAP_LOOKUP_ELEM),
        ]);
        self.jmp_imm(Jmp::Eq, 0, 0, missing);
    }
}

/// Pacing times are nanoseconds shifted left by this much, so that the interval between
/// frames keeps a sixteenth of a nanosecond of precision.
pub const PACE_SHIFT: u32 = 4;
/// The shifted interval between frames at `pps` frames per second.
pub fn pace_interval(pps: f64) -> u64 {
    ((1e9 * f64::from(1u32 << PACE_SHIFT)) / pps)
        .round()
        .max(1.0) as u64
}

/// After a stall (the sending thread preempted, say), the program catches up with
/// back-to-back frames on at most this much lost time, in shifted nanoseconds: 64 frames'
/// worth, and at least 10 ms (a busy machine's scheduler takes a few milliseconds from a
/// spinning thread now and then). Longer stalls lower the rate rather than make longer
/// bursts.
pub fn pace_burst(interval: u64) -> u64 {
    (interval * 64).max(10_000_000 << PACE_SHIFT)
}

/// What [`live_tx`] varies, and the constants it needs to do so.
#[derive(Debug, Clone, Copy)]
pub struct LivePlan {
    /// Headers and addresses.
    pub spec: FrameSpec,
    /// The flows cycled through.
    pub flows: Flows,
    /// The sizes cycled through.
    pub sizes: SizeRange,
    /// Checksum sums over the fields that do not vary.
    pub sums: LiveSums,
    /// The shifted interval between frames ([`pace_interval`]), if paced.
    pub interval: Option<u64>,
}

impl LivePlan {
    /// Whether the frames vary at all (else the template goes out as it is).
    pub fn varies(&self) -> bool {
        self.flows.count() > 1 || self.sizes.count() > 1
    }
}

// Registers of `live_tx`: r6 the context, r7/r8 data/data_end, r9 the per-CPU state.
const CTX: u8 = 6;
const DATA: u8 = 7;
const DATA_END: u8 = 8;
const STATE: u8 = 9;
/// Stack slot of the target frame length.
const LEN_SLOT: i16 = -16;

/// The live-frames program: each run makes the frame (a page holding the largest frame of
/// the plan) into the next flow and size, counts it in `state_map` (a one-entry array of
/// [`state::LEN`] bytes) and returns `XDP_TX`, which the kernel turns into a transmission
/// out of the interface given as the test run's ingress.
///
/// The state is one plain array entry, not per CPU: one thread runs the program, one run
/// after the other, so plain loads and stores suffice, and the flow cycle and the pacing
/// clock carry on unbroken when the thread moves to another CPU (per-CPU clocks would each
/// send at the full rate).
///
/// With a target rate, a run before the next frame is due returns `XDP_DROP` instead (the
/// kernel takes the page back at once): the test run spins at the pace of the clock, and a
/// run can last as long as the whole send, with no gaps between test runs.
pub fn live_tx(plan: &LivePlan, state_map: BorrowedFd<'_>) -> Vec<Insn> {
    let mut b = Builder::default();
    let abort = b.label();
    let idle = b.label();
    let layout = plan.spec.layout();
    let vary_len = plan.sizes.count() > 1;
    let vary_address = plan.flows.varies_address();

    b.push([asm::mov_reg(CTX, 1)]);
    b.lookup_key0(state_map, abort);
    b.push([asm::mov_reg(STATE, 0)]);

    if let Some(interval) = plan.interval {
        // next = max(next, now - burst); if now < next: idle; else next += interval.
        let caught_up = b.label();
        b.push([
            asm::call(helper::KTIME_GET_NS),
            asm::alu_imm(Alu::Lsh, 0, PACE_SHIFT as i32),
            asm::load(Size::Dw, 1, STATE, state::NEXT),
        ]);
        b.mov64(2, pace_burst(interval), 3);
        b.push([asm::mov_reg(3, 0), asm::alu_reg(Alu::Sub, 3, 2)]);
        b.jmp_reg(Jmp::Ge, 1, 3, caught_up);
        b.push([asm::mov_reg(1, 3)]);
        b.bind(caught_up);
        b.jmp_reg(Jmp::Lt, 0, 1, idle);
        b.mov64(2, interval, 3);
        b.push([
            asm::alu_reg(Alu::Add, 1, 2),
            asm::store_reg(Size::Dw, STATE, 1, state::NEXT),
        ]);
    }
    b.push([
        asm::load(Size::Dw, 1, STATE, state::PACKETS),
        asm::alu_imm(Alu::Add, 1, 1),
        asm::store_reg(Size::Dw, STATE, 1, state::PACKETS),
    ]);

    // The length: fixed, or the next of the range (made so with adjust_tail, relative to the
    // length the page has now, whatever an earlier run left).
    if vary_len {
        let wrapped = b.label();
        b.push([
            asm::load(Size::Dw, 1, STATE, state::SIZE),
            asm::mov_reg(2, 1),
            asm::alu_imm(Alu::Add, 2, 1),
        ]);
        b.jmp_imm(Jmp::Lt, 2, plan.sizes.count() as i32, wrapped);
        b.push([asm::mov_imm(2, 0)]);
        b.bind(wrapped);
        b.push([
            asm::store_reg(Size::Dw, STATE, 2, state::SIZE),
            asm::alu_imm(Alu::Add, 1, plan.sizes.min_buffer_len() as i32),
            asm::store_reg(Size::Dw, 10, 1, LEN_SLOT),
            asm::mov_reg(1, CTX),
            asm::call(helper::XDP_GET_BUFF_LEN),
            asm::load(Size::Dw, 2, 10, LEN_SLOT),
            asm::alu_reg(Alu::Sub, 2, 0),
            asm::mov_reg(1, CTX),
            asm::call(helper::XDP_ADJUST_TAIL),
        ]);
        b.jmp_imm(Jmp::Ne, 0, 0, abort);
        b.push([asm::load(Size::Dw, 1, 10, LEN_SLOT)]);
    } else {
        b.push([asm::mov_imm(1, plan.sizes.min_buffer_len() as i32)]);
    }
    b.add_u64(STATE, state::BYTES, 1, 2);

    if plan.varies() {
        b.push([
            asm::load(Size::W, DATA, CTX, xdp_md::DATA),
            asm::load(Size::W, DATA_END, CTX, xdp_md::DATA_END),
            asm::mov_reg(1, DATA),
            asm::alu_imm(Alu::Add, 1, layout.header_len as i32),
        ]);
        b.jmp_reg(Jmp::Gt, 1, DATA_END, abort);

        // This frame's port (r4) and address (r5) offsets; the next flow's go to the state.
        let port_ok = b.label();
        let flow_ok = b.label();
        b.push([
            asm::load(Size::Dw, 4, STATE, state::PORT),
            asm::load(Size::Dw, 5, STATE, state::ADDRESS),
            asm::load(Size::Dw, 1, STATE, state::FLOW),
            asm::alu_imm(Alu::Add, 1, 1),
            asm::mov_reg(2, 4),
            asm::alu_imm(Alu::Add, 2, 1),
            asm::mov_reg(3, 5),
        ]);
        b.jmp_imm(Jmp::Ne, 2, plan.flows.ports() as i32, port_ok);
        b.push([asm::mov_imm(2, 0), asm::alu_imm(Alu::Add, 3, 1)]);
        b.bind(port_ok);
        b.jmp_imm(Jmp::Ne, 1, plan.flows.count() as i32, flow_ok);
        b.push([asm::mov_imm(1, 0), asm::mov_imm(2, 0), asm::mov_imm(3, 0)]);
        b.bind(flow_ok);
        b.push([
            asm::store_reg(Size::Dw, STATE, 1, state::FLOW),
            asm::store_reg(Size::Dw, STATE, 2, state::PORT),
            asm::store_reg(Size::Dw, STATE, 3, state::ADDRESS),
        ]);

        // r3: the UDP checksum sum; r0: the IPv4 header sum.
        b.push([
            asm::alu_imm(Alu::Add, 4, i32::from(plan.spec.first_flow_port())),
            asm::mov_imm(3, i32::from(plan.sums.udp)),
            asm::alu_reg(Alu::Add, 3, 4),
            asm::mov_imm(0, i32::from(plan.sums.ip.unwrap_or(0))),
        ]);
        b.store_be16(DATA, plan.spec.flow_port_offset(), 4, 1);
        if vary_address {
            let base = plan.template_src_word();
            b.push([
                // The base word, zero-extended: a 32-bit immediate would be sign-extended.
                asm::mov_imm(1, base as i32),
                asm::alu_imm(Alu::Lsh, 1, 32),
                asm::alu_imm(Alu::Rsh, 1, 32),
                asm::alu_reg(Alu::Add, 5, 1),
                asm::alu_imm(Alu::Lsh, 5, 32),
                asm::alu_imm(Alu::Rsh, 5, 32),
            ]);
            b.store_be32(DATA, layout.src_word, 5, 1);
            b.push([
                asm::mov_reg(1, 5),
                asm::alu_imm(Alu::Rsh, 1, 16),
                asm::alu_imm(Alu::And, 5, 0xffff),
                asm::alu_reg(Alu::Add, 5, 1),
                asm::alu_reg(Alu::Add, 3, 5),
                asm::alu_reg(Alu::Add, 0, 5),
            ]);
        }
        if vary_len {
            // r4: the UDP length (also the IPv6 payload length), r5: the IPv4 total length.
            b.push([
                asm::load(Size::Dw, 4, 10, LEN_SLOT),
                asm::alu_imm(Alu::Sub, 4, layout.udp as i32),
                asm::alu_reg(Alu::Add, 3, 4),
                asm::alu_reg(Alu::Add, 3, 4),
            ]);
            b.store_be16(DATA, layout.udp_len(), 4, 1);
            if layout.ip_checksum.is_some() {
                b.push([
                    asm::mov_reg(5, 4),
                    asm::alu_imm(Alu::Add, 5, (layout.udp - layout.ip_len + 2) as i32),
                    asm::alu_reg(Alu::Add, 0, 5),
                ]);
                b.store_be16(DATA, layout.ip_len, 5, 1);
            } else {
                b.store_be16(DATA, layout.ip_len, 4, 1);
            }
        }
        let nonzero = b.label();
        b.finish_checksum(3, 1);
        b.jmp_imm(Jmp::Ne, 3, 0, nonzero);
        b.push([asm::mov_imm(3, 0xffff)]);
        b.bind(nonzero);
        b.store_be16(DATA, layout.udp_checksum(), 3, 1);
        if let Some(at) = layout.ip_checksum
            && (vary_address || vary_len)
        {
            b.finish_checksum(0, 1);
            b.store_be16(DATA, at, 0, 1);
        }
    }
    b.push([asm::mov_imm(0, action::XDP_TX), asm::exit()]);
    if plan.interval.is_some() {
        b.bind(idle);
        b.push([asm::mov_imm(0, action::XDP_DROP), asm::exit()]);
    }
    b.bind(abort);
    b.push([asm::mov_imm(0, action::XDP_ABORTED), asm::exit()]);
    b.finish()
}

impl LivePlan {
    /// The template's last 32 bits of the source address, to which flows add.
    fn template_src_word(&self) -> u32 {
        match self.spec.ip {
            crate::packet::IpPair::V4 { src, .. } => src.to_bits(),
            crate::packet::IpPair::V6 { src, .. } => src.to_bits() as u32,
        }
    }
}

/// The counting sink: adds each frame to the per-CPU counters of `counters_map` (a one-entry
/// per-CPU array of [`counters::LEN`] bytes) and drops it.
pub fn count_drop(counters_map: BorrowedFd<'_>) -> Vec<Insn> {
    let mut b = Builder::default();
    let out = b.label();
    b.push([
        asm::mov_reg(CTX, 1),
        asm::call(helper::XDP_GET_BUFF_LEN),
        asm::mov_reg(7, 0),
    ]);
    b.lookup_key0(counters_map, out);
    b.push([
        asm::load(Size::Dw, 1, 0, counters::PACKETS),
        asm::alu_imm(Alu::Add, 1, 1),
        asm::store_reg(Size::Dw, 0, 1, counters::PACKETS),
    ]);
    b.add_u64(0, counters::BYTES, 7, 1);
    b.bind(out);
    b.push([asm::mov_imm(0, action::XDP_DROP), asm::exit()]);
    b.finish()
}

/// The counting sink at tcx ingress: adds each skb to the per-CPU counters of `counters_map`
/// (laid out as for [`count_drop`]) and drops it (`TC_ACT_SHOT`). A GSO skb (a TCP train
/// that GRO merged, or a sender's TSO segment) counts as its `gso_segs` packets; its bytes
/// are the skb's `len` (the Ethernet header included, as tcx ingress sees it), so the headers
/// of the segments after the first are not in them.
pub fn count_shot(counters_map: BorrowedFd<'_>) -> Vec<Insn> {
    const SEGS: u8 = 7;
    const LEN: u8 = 8;
    let mut b = Builder::default();
    let out = b.label();
    let one_or_more = b.label();
    b.push([
        asm::mov_reg(CTX, 1),
        // gso_segs is 0 (or 1) for an skb that is not GSO: count it as one.
        asm::load(Size::W, SEGS, CTX, sk_buff::GSO_SEGS),
    ]);
    b.jmp_imm(Jmp::Ne, SEGS, 0, one_or_more);
    b.push([asm::mov_imm(SEGS, 1)]);
    b.bind(one_or_more);
    b.push([asm::load(Size::W, LEN, CTX, sk_buff::LEN)]);
    b.lookup_key0(counters_map, out);
    b.add_u64(0, counters::PACKETS, SEGS, 1);
    b.add_u64(0, counters::BYTES, LEN, 1);
    b.bind(out);
    b.push([asm::mov_imm(0, tc_action::TC_ACT_SHOT), asm::exit()]);
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{IpPair, checksums_hold};

    #[test]
    fn pace_intervals() {
        assert_eq!(pace_interval(1e9), 16);
        assert_eq!(pace_interval(14e6), 1143); // 71.43 ns
        assert_eq!(pace_interval(1.0), 16_000_000_000);
        assert_eq!(pace_interval(1e12), 1);
        assert_eq!(pace_burst(16), 10_000_000 << PACE_SHIFT);
        assert_eq!(pace_burst(16_000_000_000), 64 * 16_000_000_000);
    }

    #[test]
    fn labels_patch_forward_jumps() {
        let mut b = Builder::default();
        let end = b.label();
        b.jmp_imm(Jmp::Eq, 1, 0, end);
        b.push([asm::mov_imm(0, 1)]);
        b.push([asm::mov_imm(0, 2)]);
        b.bind(end);
        b.push([asm::exit()]);
        let insns = b.finish();
        assert_eq!(insns[0].off, 2);
    }

    /// The arithmetic of `live_tx`, in Rust, applied to a page that holds stale bytes.
    fn model(plan: &LivePlan, page: &mut Vec<u8>, flow: u32, size_index: u64) {
        let layout = plan.spec.layout();
        let len = plan.sizes.buffer_len(size_index);
        page.resize(len, 0);
        let (port_offset, address_offset) = plan.flows.split(flow);
        let port = u32::from(plan.spec.first_flow_port()) + port_offset;
        let at = plan.spec.flow_port_offset();
        page[at..at + 2].copy_from_slice(&(port as u16).to_be_bytes());
        let mut udp = u32::from(plan.sums.udp) + port;
        let mut ip = u32::from(plan.sums.ip.unwrap_or(0));
        if plan.flows.varies_address() {
            let word = plan.template_src_word().wrapping_add(address_offset);
            page[layout.src_word..layout.src_word + 4].copy_from_slice(&word.to_be_bytes());
            let halves = (word >> 16) + (word & 0xffff);
            udp += halves;
            ip += halves;
        }
        if plan.sizes.count() > 1 {
            let udp_len = (len - layout.udp) as u32;
            udp += 2 * udp_len;
            page[layout.udp_len()..layout.udp_len() + 2]
                .copy_from_slice(&(udp_len as u16).to_be_bytes());
            let ip_len = if layout.ip_checksum.is_some() {
                len - layout.ip_len + 2
            } else {
                udp_len as usize
            };
            ip += ip_len as u32;
            page[layout.ip_len..layout.ip_len + 2].copy_from_slice(&(ip_len as u16).to_be_bytes());
        }
        let finish = |sum: u32| !flowtable::wire::checksum::fold(sum);
        let udp = match finish(udp) {
            0 => 0xffff,
            c => c,
        };
        page[layout.udp_checksum()..layout.udp_checksum() + 2].copy_from_slice(&udp.to_be_bytes());
        if let Some(at) = layout.ip_checksum
            && (plan.flows.varies_address() || plan.sizes.count() > 1)
        {
            page[at..at + 2].copy_from_slice(&finish(ip).to_be_bytes());
        }
    }

    #[test]
    fn live_arithmetic_matches_frames_written_from_scratch() {
        let families = [IpPair::DEFAULT_V4, IpPair::DEFAULT_V6];
        for (ip, reply) in families
            .into_iter()
            .flat_map(|ip| [(ip, false), (ip, true)])
        {
            let spec = FrameSpec {
                src_mac: "02:00:00:00:00:01".parse().unwrap(),
                dst_mac: "02:00:00:00:00:02".parse().unwrap(),
                ip,
                src_port: if reply { 9 } else { 60000 },
                dst_port: if reply { 60000 } else { 9 },
                reply,
            };
            // Replies vary no address (send refuses more flows than ports for them).
            let many = if reply { 5000 } else { 20000 };
            for (flows, sizes) in [(1, "64"), (100, "64"), (many, "100..1518"), (1, "66..70")] {
                let flows = Flows::new(flows, spec.first_flow_port()).unwrap();
                let sizes: SizeRange = sizes.parse().unwrap();
                let least = spec.min_frame(false);
                let sizes = SizeRange::new(sizes.min().max(least), sizes.max().max(least)).unwrap();
                let mut template = vec![0; sizes.max_buffer_len()];
                spec.write(&mut template, flows, 0, None);
                let sums = spec.live_sums(&template, flows.varies_address(), sizes.count() > 1);
                let plan = LivePlan {
                    spec,
                    flows,
                    sizes,
                    sums,
                    interval: None,
                };
                // One page, reused across runs as the kernel does: stale bytes stay.
                let mut page = template.clone();
                for run in 0..3000u64 {
                    let flow = (run % u64::from(flows.count())) as u32;
                    let size_index = run * 7;
                    model(&plan, &mut page, flow, size_index);
                    let mut expected = vec![0; sizes.buffer_len(size_index)];
                    spec.write(&mut expected, flows, flow, None);
                    assert_eq!(page, expected, "{ip:?} reply {reply} flow {flow} run {run}");
                    assert_eq!(checksums_hold(&page), Some(true));
                }
            }
        }
    }
}
