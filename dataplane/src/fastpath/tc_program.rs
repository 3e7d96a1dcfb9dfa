//! The fast path's tc program, generated per port, for ports whose frames a program at tcx
//! ingress meets (container veths): build the flow's `KernelKey` from the skb, look it up,
//! apply the decision and redirect (into the destination container with
//! `bpf_redirect_peer`); anything else goes to the workers through the upcall device,
//! prefixed with its ingress port (`flowtable::wire::upcall`).
//!
//! An skb is not a frame: a GSO skb of 64 KB passes whole, its checksum left partial for the
//! device that segments it (nothing to finish here, unlike XDP), and the kernel holds its
//! outer VLAN tag as metadata, which the key and the upcall prefix take from the context.

use std::os::fd::AsRawFd;

use flowtable::PortId;
use flowtable::key::VLAN_PRESENT;
use flowtable::wire::upcall;
use xvs_sys::bpf::Insn;
use xvs_sys::bpf::abi::{helper, sk_buff, tc_action};
use xvs_sys::bpf::asm::{self, Builder, Label};

use super::abi::{FLAG_PEER, VlanOp, key, state, value};
use super::maps::FastPathMaps;
use super::program::{
    Bounds, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, KEY, emit_count, emit_dec_ttl, emit_ipv4_key,
    emit_lookup, emit_mac_key, emit_mac_rewrite, k, v, wire16,
};

/// Bytes made linear before parsing: Ethernet, IPv4 and TCP headers without options.
const HEADERS: i32 = 14 + 20 + 20;
/// A stack slot below the key: the TCI a VLAN "set" pushes after popping the old tag.
const NEW_TCI: i16 = KEY - 8;

/// The tc program of port `port`: with `fast`, the fast path's lookup; without, every frame to
/// the workers. Misses go to the upcall device `upcall_ifindex`, spread over its
/// `upcall_queues` queues (one per worker) by flow.
pub fn tc_program(
    fast: Option<&FastPathMaps>,
    port: PortId,
    upcall_ifindex: u32,
    upcall_queues: u32,
) -> Vec<Insn> {
    use asm::*;
    let mut b = Builder::new();
    let upcall = b.label();
    let shot = b.label();
    b.push([mov_reg(6, 1)]);
    if let Some(maps) = fast {
        lookup_and_apply(&mut b, maps, port, upcall, shot);
    }

    // The workers: 8 bytes of prefix in front of the MAC header (kept by every segment of a
    // GSO skb), then out through the upcall device.
    b.bind(upcall);
    b.push([
        mov_reg(1, 6),
        mov_imm(2, upcall::LEN as i32),
        mov_imm(3, 0),
        call(helper::SKB_CHANGE_HEAD),
    ]);
    b.jmp_imm(Jmp::Ne, 0, 0, shot);
    b.push([
        load(Size::W, 7, 6, sk_buff::DATA),
        load(Size::W, 8, 6, sk_buff::DATA_END),
        mov_reg(2, 7),
        alu_imm(Alu::Add, 2, upcall::LEN as i32),
    ]);
    b.jmp_reg(Jmp::Gt, 2, 8, shot);
    let send = b.label();
    let flags = b.label();
    b.push([
        store_imm(Size::H, 7, 0, wire16(upcall::MAGIC)),
        store_imm(Size::H, 7, 2, wire16(port)),
        load(Size::W, 2, 6, sk_buff::VLAN_PRESENT),
    ]);
    // The bytes after port are zero (the helper cleared them): no tag.
    b.jmp_imm(Jmp::Eq, 2, 0, send);
    b.push([
        load(Size::W, 3, 6, sk_buff::VLAN_TCI),
        to_be(3, 16),
        store_reg(Size::H, 7, 3, 4),
        mov_imm(4, i32::from(upcall::FLAG_VLAN)),
        load(Size::W, 5, 6, sk_buff::VLAN_PROTO),
    ]);
    b.jmp_imm(Jmp::Ne, 5, wire16(ETH_P_8021AD), flags);
    b.push([mov_imm(
        4,
        i32::from(upcall::FLAG_VLAN | upcall::FLAG_VLAN_AD),
    )]);
    b.bind(flags);
    b.push([to_be(4, 16), store_reg(Size::H, 7, 4, 6)]);
    b.bind(send);
    if upcall_queues > 1 {
        // The upcall device's queue (and so the worker) follows the flow: recorded as the
        // RX queue, from which the transmit queue is picked.
        b.push([
            mov_reg(1, 6),
            call(helper::GET_HASH_RECALC),
            alu_imm(Alu::Mod, 0, upcall_queues as i32),
            alu_imm(Alu::Add, 0, 1),
            store_reg(Size::W, 6, 0, sk_buff::QUEUE_MAPPING),
        ]);
    }
    b.push([
        mov_imm(1, upcall_ifindex as i32),
        mov_imm(2, 0),
        call(helper::REDIRECT),
        exit(),
    ]);

    b.bind(shot);
    b.push([mov_imm(0, tc_action::TC_ACT_SHOT), exit()]);
    b.finish()
}

/// Builds the key, looks it up and, on a hit, carries the entry out and exits; falls through
/// to `upcall` (by jump) on a miss or anything the program does not handle.
fn lookup_and_apply(
    b: &mut Builder,
    maps: &FastPathMaps,
    port: PortId,
    upcall: Label,
    shot: Label,
) {
    use asm::*;
    let clock = load_map_value(0, maps.state_fd().as_raw_fd(), state::CLOCK_NS as i32);
    let linear = b.label();
    let untagged = b.label();
    let lookup = b.label();
    let counted = b.label();
    let macs = b.label();
    let vlan = b.label();
    let push = b.label();
    let redirect = b.label();
    let plain = b.label();

    // r6 = ctx, r7 = data, r8 = data_end; headers linear where the skb has them.
    b.push([
        store_imm(Size::Dw, 10, k(key::IN_PORT), 0),
        store_imm(Size::Dw, 10, k(key::DL_DST + 4), 0),
        store_imm(Size::Dw, 10, k(key::DL_TYPE), 0),
        store_imm(Size::Dw, 10, k(key::NW_SRC), 0),
        load(Size::W, 7, 6, sk_buff::DATA),
        load(Size::W, 8, 6, sk_buff::DATA_END),
        mov_reg(2, 7),
        alu_imm(Alu::Add, 2, HEADERS),
    ]);
    b.jmp_reg(Jmp::Le, 2, 8, linear);
    // Short or nonlinear: pull what there is (a failure leaves the bounds checks to decide).
    b.push([
        mov_reg(1, 6),
        mov_imm(2, HEADERS),
        call(helper::SKB_PULL_DATA),
        load(Size::W, 7, 6, sk_buff::DATA),
        load(Size::W, 8, 6, sk_buff::DATA_END),
    ]);
    b.bind(linear);
    b.push([mov_reg(2, 7), alu_imm(Alu::Add, 2, 14)]);
    b.jmp_reg(Jmp::Gt, 2, 8, upcall);
    emit_mac_key(b, port);
    // The outer tag is metadata: only 802.1Q is keyed; a tag left in the data (a second
    // one) is the workers' business.
    b.push([load(Size::W, 2, 6, sk_buff::VLAN_PRESENT)]);
    b.jmp_imm(Jmp::Eq, 2, 0, untagged);
    b.push([load(Size::W, 3, 6, sk_buff::VLAN_PROTO)]);
    b.jmp_imm(Jmp::Ne, 3, wire16(ETH_P_8021Q), upcall);
    b.push([
        load(Size::W, 3, 6, sk_buff::VLAN_TCI),
        alu_imm(Alu::And, 3, 0x0fff),
        alu_imm(Alu::Or, 3, i32::from(VLAN_PRESENT)),
        store_reg(Size::H, 10, 3, k(key::VLAN)),
    ]);
    b.bind(untagged);
    b.push([load(Size::H, 3, 7, 12)]);
    b.jmp_imm(Jmp::Eq, 3, wire16(ETH_P_8021Q), upcall);
    b.jmp_imm(Jmp::Eq, 3, wire16(ETH_P_8021AD), upcall);
    b.push([store_reg(Size::H, 10, 3, k(key::DL_TYPE))]);
    b.jmp_imm(Jmp::Ne, 3, wire16(ETH_P_IP), lookup);
    // IPv4 without options, else the workers decide. A GSO skb's total length is the whole
    // super-packet's: only the headers have to be in the data.
    b.push([mov_reg(4, 7), alu_imm(Alu::Add, 4, 14)]);
    emit_ipv4_key(b, upcall, lookup, Bounds::Skb);

    b.bind(lookup);
    emit_lookup(b, maps, upcall);
    // Count: a GSO skb is as many packets as it has segments.
    b.push([load(Size::W, 3, 6, sk_buff::GSO_SEGS)]);
    b.jmp_imm(Jmp::Ne, 3, 0, counted);
    b.push([mov_imm(3, 1)]);
    b.bind(counted);
    b.push([load(Size::W, 5, 6, sk_buff::LEN)]);
    emit_count(b, clock, shot);
    // Packet writes before any helper that moves the data: TTL, then MACs.
    b.push([mov_reg(4, 7), alu_imm(Alu::Add, 4, 14)]);
    emit_dec_ttl(b, upcall, macs);
    b.bind(macs);
    emit_mac_rewrite(b, upcall, vlan);

    b.bind(vlan);
    b.push([load(Size::B, 2, 9, v(value::VLAN_OP))]);
    b.jmp_imm(Jmp::Eq, 2, VlanOp::None as i32, redirect);
    b.jmp_imm(Jmp::Eq, 2, VlanOp::Push as i32, push);
    // Strip or set: the new TCI keeps the old priority bits; pop the old tag.
    b.push([
        load(Size::W, 3, 6, sk_buff::VLAN_TCI),
        alu_imm(Alu::And, 3, 0xf000),
        load(Size::H, 4, 9, v(value::VID)),
        alu_reg(Alu::Or, 3, 4),
        store_reg(Size::Dw, 10, 3, NEW_TCI),
        mov_reg(1, 6),
        call(helper::SKB_VLAN_POP),
    ]);
    b.jmp_imm(Jmp::Ne, 0, 0, shot);
    b.push([load(Size::B, 2, 9, v(value::VLAN_OP))]);
    b.jmp_imm(Jmp::Eq, 2, VlanOp::Strip as i32, redirect);
    b.push([
        mov_reg(1, 6),
        mov_imm(2, wire16(ETH_P_8021Q)),
        load(Size::Dw, 3, 10, NEW_TCI),
        call(helper::SKB_VLAN_PUSH),
    ]);
    b.jmp_imm(Jmp::Ne, 0, 0, shot);
    b.ja(redirect);
    b.bind(push);
    b.push([
        mov_reg(1, 6),
        mov_imm(2, wire16(ETH_P_8021Q)),
        load(Size::H, 3, 9, v(value::VID)),
        call(helper::SKB_VLAN_PUSH),
    ]);
    b.jmp_imm(Jmp::Ne, 0, 0, shot);

    b.bind(redirect);
    b.push([
        load(Size::W, 1, 9, v(value::OUT_IFINDEX)),
        mov_imm(2, 0),
        load(Size::B, 3, 9, v(value::FLAGS)),
        alu_imm(Alu::And, 3, i32::from(FLAG_PEER)),
    ]);
    b.jmp_imm(Jmp::Eq, 3, 0, plain);
    b.push([call(helper::REDIRECT_PEER), exit()]);
    b.bind(plain);
    b.push([call(helper::REDIRECT), exit()]);
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use flowtable::FlowKey;
    use xvs_sys::bpf::abi::tc_action;
    use xvs_sys::bpf::{load_sched_cls, prog_test_run_output};

    use super::super::abi::{KernelKey, KernelValue};
    use super::super::test_frames::{UDP, tcp};
    use super::*;

    #[test]
    fn the_verifier_accepts_both_programs() {
        if !xvs_testkit::is_root() {
            xvs_testkit::skip!("loading BPF programs needs root");
        }
        let maps = FastPathMaps::new().expect("maps");
        for (fast, name) in [(Some(&maps), "xvs_tc_fast"), (None, "xvs_tc_plain")] {
            if let Err(e) = load_sched_cls(&tc_program(fast, 3, 1, 2), name) {
                panic!("{name}: {e}");
            }
        }
    }

    /// A header is taken only within its total length, which must be within the skb: a total
    /// length shorter than the header is the workers' business (they key such a packet
    /// without L3 fields), and ports after the total length are no header.
    #[test]
    fn the_program_reads_only_what_the_total_length_holds() {
        if !xvs_testkit::is_root() {
            xvs_testkit::skip!("BPF_PROG_TEST_RUN needs root");
        }
        let maps = FastPathMaps::new().expect("maps");
        let prog = load_sched_cls(&tc_program(Some(&maps), 1, 1, 1), "xvs_tc_test").expect("load");
        let run = |frame: &[u8], key: KernelKey| {
            let value = KernelValue {
                out_port: 2,
                out_ifindex: 1,
                epoch: 1,
                ..KernelValue::default()
            };
            maps.insert(&key, &value).expect("insert");
            let mut out = vec![0u8; frame.len() + 64];
            let (verdict, len) = prog_test_run_output(prog.as_fd(), frame, &mut out).expect("run");
            maps.remove(&key);
            assert_eq!(verdict, tc_action::TC_ACT_REDIRECT as u32);
            out.truncate(len);
            out
        };
        let workers_key =
            |frame: &[u8]| KernelKey::of(&FlowKey::extract(frame, 1).expect("a frame").0);
        let mut short = UDP;
        short[16..18].copy_from_slice(&10u16.to_be_bytes());
        let out = run(&short, workers_key(&UDP));
        assert_eq!(&out[..2], &upcall::MAGIC.to_be_bytes(), "to the workers");
        let mut cut = UDP;
        cut[16..18].copy_from_slice(&20u16.to_be_bytes());
        assert_eq!(
            run(&cut, workers_key(&cut)),
            cut,
            "the workers' key, no ports"
        );
    }

    /// As the XDP program: FIN, SYN and RST segments miss the entry of their connection's
    /// data and go to the workers (prefixed for the upcall device).
    #[test]
    fn fin_syn_and_rst_miss_the_entry_of_a_connections_data() {
        if !xvs_testkit::is_root() {
            xvs_testkit::skip!("BPF_PROG_TEST_RUN needs root");
        }
        let maps = FastPathMaps::new().expect("maps");
        let prog = load_sched_cls(&tc_program(Some(&maps), 1, 1, 1), "xvs_tc_test").expect("load");
        let (ack, _) = FlowKey::extract(&tcp(0x10), 1).expect("a frame");
        let key = KernelKey::of(&ack);
        let value = KernelValue {
            out_port: 2,
            out_ifindex: 1,
            epoch: 1,
            ..KernelValue::default()
        };
        maps.insert(&key, &value).expect("insert");
        for (flags, hit) in [
            (0x10, true),
            (0x18, true),
            (0x02, false),
            (0x12, false),
            (0x11, false),
            (0x04, false),
        ] {
            let frame = tcp(flags);
            let mut out = vec![0u8; frame.len() + 64];
            let (verdict, len) = prog_test_run_output(prog.as_fd(), &frame, &mut out).expect("run");
            assert_eq!(verdict, tc_action::TC_ACT_REDIRECT as u32);
            let to_workers = out[..2] == upcall::MAGIC.to_be_bytes() && len == frame.len() + 8;
            assert_eq!(!to_workers, hit, "flags {flags:#04x}");
        }
        maps.remove(&key);
    }
}
