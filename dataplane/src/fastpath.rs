//! The in-kernel fast path: decided flows forwarded by XDP redirect, the rest through AF_XDP.
//!
//! The userspace pipeline decides every new flow. When a decision is simple enough for the
//! kernel (one output port, perhaps a VLAN tag change, perhaps a routed hop's MAC rewrite and
//! TTL decrement; or a rule's drop), the worker writes it into a BPF hash map keyed by the
//! flow; each port's XDP program looks every frame up there first and, on a hit, applies the
//! decision and redirects the frame through a DEVMAP without leaving the kernel. On a miss, or
//! for anything the program does not support (flooding, ARP and ND, traffic for the router,
//! IP options), it redirects the frame to the port's AF_XDP socket as before. TCP and UDP
//! checksums a container left for offload (a veth hands them over unfinished) are finished
//! in the program for flows it forwards.
//!
//! # The key
//! The kernel key holds every field of [`FlowKey`] that the program can read: ingress
//! interface, VLAN, EtherType, both MACs, and for IPv4 the protocol, addresses and ports (ICMP
//! type and code). It is exact, like the workers' flow caches, so a kernel entry stands for
//! exactly one userspace cache entry. For other EtherTypes the L3 fields are zero: such flows
//! are offloaded only when their decision depends on L2 fields alone (no rules, no router).
//!
//! # Coherence
//! - Every entry carries the configuration epoch it was decided under; the program compares it
//!   with the current epoch (a one-slot ARRAY map, read through a direct pointer, as is the
//!   coarse clock userspace keeps beside it). Publishing a configuration bumps the epoch
//!   before it is acknowledged, which invalidates every entry at once.
//! - MAC moves and aging, and neighbour changes, bump generation buckets in the deciding
//!   worker's pipeline; the worker deletes the kernel entries that depended on those buckets
//!   before it decides the next packet.
//! - A removed port leaves the DEVMAP before its removal is acknowledged.
//!
//! # Statistics
//! Values live in a per-CPU hash map: the program bumps its CPU's packet and byte counters
//! and last-seen time. Workers read them every second (and on demand, before counters are
//! reported) and fold them into port counters, rule counters and the MAC table's aging, so
//! `dump-ports`, `dump-flows` and `fdb show` count every packet, whichever level forwarded it.

use std::os::fd::{AsRawFd, BorrowedFd};

use flowtable::key::VLAN_PRESENT;
use flowtable::wire::{EtherType, EthernetAddress};
use flowtable::{Decision, DropReason, EgressTag, FlowKey, PortId, Step};
use xvs_sys::SyscallError;
use xvs_sys::bpf::abi::{action, helper, xdp_md};
use xvs_sys::bpf::{Map, MapType, asm};

/// Entries the kernel flow table holds at most.
pub const MAX_FLOWS: u32 = 32768;
/// Interfaces the DEVMAP holds at most.
const MAX_PORTS: u32 = 1024;

const KEY_LEN: usize = 32;
const VALUE_LEN: usize = 56;

/// Offsets in a value.
mod value {
    /// The output port's number: its slot in the DEVMAP.
    pub(super) const OUT_PORT: i16 = 0;
    pub(super) const EPOCH: i16 = 4;
    pub(super) const ACTION: i16 = 8;
    pub(super) const FLAGS: i16 = 9;
    pub(super) const VLAN_OP: i16 = 10;
    pub(super) const VLAN_VID: i16 = 12;
    pub(super) const NEW_DST: i16 = 16;
    pub(super) const NEW_SRC: i16 = 22;
    pub(super) const PACKETS: i16 = 32;
    pub(super) const BYTES: i16 = 40;
    pub(super) const LAST_SEEN: i16 = 48;
}

const ACTION_REDIRECT: u8 = 0;
const ACTION_DROP: u8 = 1;
const FLAG_REWRITE_MACS: u8 = 1;
const FLAG_DEC_TTL: u8 = 2;
const VLAN_NONE: u8 = 0;
const VLAN_STRIP: u8 = 1;
const VLAN_PUSH: u8 = 2;
const VLAN_SET: u8 = 3;

/// The maps every port's program shares.
#[derive(Debug)]
pub struct FastPathMaps {
    flows: Map,
    devmap: Map,
    epoch: Map,
    /// A per-CPU buffer the program copies TCP/UDP segments into to finish their checksums.
    scratch: Map,
    current_epoch: std::sync::atomic::AtomicU32,
}

/// Bytes of the checksum scratch buffer (segments up to one less are finished in the kernel).
const SCRATCH_LEN: usize = 2048;

impl FastPathMaps {
    /// Creates the maps.
    ///
    /// # Errors
    /// `BPF_MAP_CREATE` fails.
    pub fn new() -> Result<FastPathMaps, SyscallError> {
        let maps = FastPathMaps {
            flows: Map::create(
                MapType::PercpuHash,
                KEY_LEN as u32,
                VALUE_LEN as u32,
                MAX_FLOWS,
                0,
                "xvs_flows",
            )?,
            // An array indexed by port number: cheaper to look up than a hash by ifindex.
            devmap: Map::create(MapType::Devmap, 4, 4, MAX_PORTS, 0, "xvs_ports")?,
            epoch: Map::create(MapType::Array, 4, 16, 1, 0, "xvs_epoch")?,
            scratch: Map::create(
                MapType::PercpuArray,
                4,
                SCRATCH_LEN as u32,
                1,
                0,
                "xvs_scratch",
            )?,
            current_epoch: std::sync::atomic::AtomicU32::new(0),
        };
        maps.set_epoch(1)?;
        Ok(maps)
    }

    /// Sets the current configuration epoch (entries of any other epoch stop matching) and
    /// the clock entries stamp their last use with.
    ///
    /// # Errors
    /// `BPF_MAP_UPDATE_ELEM` fails.
    pub fn set_epoch(&self, epoch: u32) -> Result<(), SyscallError> {
        self.current_epoch
            .store(epoch, std::sync::atomic::Ordering::Relaxed);
        self.write_state(epoch)
    }

    /// Advances the clock the program stamps entries with (CLOCK_MONOTONIC, as often as the
    /// control thread ticks: aging and idleness need no finer time, and the program saves a
    /// helper call per packet).
    ///
    /// # Errors
    /// `BPF_MAP_UPDATE_ELEM` fails.
    pub fn tick_clock(&self) -> Result<(), SyscallError> {
        self.write_state(
            self.current_epoch
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    fn write_state(&self, epoch: u32) -> Result<(), SyscallError> {
        let mut value = [0u8; 16];
        value[0..4].copy_from_slice(&epoch.to_ne_bytes());
        value[8..16].copy_from_slice(&xvs_sys::os::monotonic_ns().to_ne_bytes());
        self.epoch.update(&0u32.to_ne_bytes(), &value, 0)
    }

    /// Lets the programs redirect to port `port`, interface `ifindex`.
    ///
    /// # Errors
    /// `BPF_MAP_UPDATE_ELEM` fails (the device cannot be a redirect target).
    pub fn add_target(&self, port: PortId, ifindex: u32) -> Result<(), SyscallError> {
        self.devmap
            .update(&u32::from(port).to_ne_bytes(), &ifindex.to_ne_bytes(), 0)
    }

    /// Stops redirects to port `port`.
    pub fn remove_target(&self, port: PortId) {
        let _ = self.devmap.delete(&u32::from(port).to_ne_bytes());
    }

    /// Deletes every flow entry not of `epoch`; returns how many.
    pub fn collect_garbage(&self, epoch: u32) -> usize {
        let mut key = [0u8; KEY_LEN];
        let mut next = [0u8; KEY_LEN];
        let mut stale = Vec::new();
        let mut values = vec![0u8; self.flows.value_len()];
        let mut first = true;
        while self
            .flows
            .next_key(if first { None } else { Some(&key) }, &mut next)
            .unwrap_or(false)
        {
            first = false;
            key = next;
            if self.flows.lookup(&key, &mut values).unwrap_or(false) {
                let e = u32::from_ne_bytes(values[4..8].try_into().expect("4 bytes"));
                if e != epoch {
                    stale.push(key);
                }
            }
        }
        for k in &stale {
            let _ = self.flows.delete(k);
        }
        stale.len()
    }

    /// Number of entries (by walking the map; for diagnostics).
    pub fn count(&self) -> usize {
        let mut key = [0u8; KEY_LEN];
        let mut next = [0u8; KEY_LEN];
        let mut n = 0;
        let mut first = true;
        while self
            .flows
            .next_key(if first { None } else { Some(&key) }, &mut next)
            .unwrap_or(false)
        {
            first = false;
            key = next;
            n += 1;
        }
        n
    }
}

/// The fast path's XDP program for one port: look the flow up, apply, redirect; else hand the
/// frame to the port's AF_XDP socket.
pub fn program(
    maps: &FastPathMaps,
    xskmap: BorrowedFd<'_>,
    port: PortId,
) -> Vec<xvs_sys::bpf::Insn> {
    use asm::*;
    let flows = load_map_fd(1, maps.flows.as_fd().as_raw_fd());
    let epoch = load_map_value(2, maps.epoch.as_fd().as_raw_fd(), 0);
    let clock = load_map_value(0, maps.epoch.as_fd().as_raw_fd(), 8);
    let devmap = load_map_fd(1, maps.devmap.as_fd().as_raw_fd());
    let xsks = load_map_fd(1, xskmap.as_raw_fd());
    let scratch = load_map_fd(1, maps.scratch.as_fd().as_raw_fd());
    let mut b = Builder::default();
    let have_type = b.label();
    let icmp = b.label();
    let udp = b.label();
    let tcp = b.label();
    let csum = b.label();
    let partial = b.label();
    let lookup = b.label();
    let count = b.label();
    let vlan = b.label();
    let set_vid = b.label();
    let strip = b.label();
    let redirect = b.label();
    let drop = b.label();
    let to_xsk = b.label();
    // r6 = ctx, r7 = data, r8 = data_end; the key is at fp-32 (layout: see `kernel_key`).
    b.push([
        mov_reg(6, 1),
        load(Size::W, 7, 6, xdp_md::DATA),
        load(Size::W, 8, 6, xdp_md::DATA_END),
        store_imm(Size::Dw, 10, -32, 0),
        store_imm(Size::Dw, 10, -24, 0),
        store_imm(Size::Dw, 10, -16, 0),
        store_imm(Size::Dw, 10, -8, 0),
        store_imm(Size::W, 10, -56, 0),
        store_imm(Size::Dw, 10, -72, 0),
        mov_reg(2, 7),
        alu_imm(Alu::Add, 2, 14),
    ]);
    b.jmp_reg(Jmp::Gt, 2, 8, to_xsk);
    b.push([
        store_imm(Size::H, 10, -32, i32::from(port)),
        load(Size::W, 2, 7, 0),
        store_reg(Size::W, 10, 2, -28),
        load(Size::W, 2, 7, 4),
        store_reg(Size::W, 10, 2, -24),
        load(Size::W, 2, 7, 8),
        store_reg(Size::W, 10, 2, -20),
        mov_imm(9, 14),
        load(Size::H, 3, 7, 12),
    ]);
    b.jmp_imm(Jmp::Ne, 3, 0x0081, have_type);
    b.push([mov_reg(2, 7), alu_imm(Alu::Add, 2, 18)]);
    b.jmp_reg(Jmp::Gt, 2, 8, to_xsk);
    b.push([
        load(Size::H, 2, 7, 14),
        to_be(2, 16),
        alu_imm(Alu::And, 2, 0x0fff),
        alu_imm(Alu::Or, 2, i32::from(VLAN_PRESENT)),
        store_reg(Size::H, 10, 2, -30),
        load(Size::H, 3, 7, 16),
        mov_imm(9, 18),
    ]);
    b.bind(have_type);
    b.push([
        store_reg(Size::H, 10, 3, -16),
        store_reg(Size::Dw, 10, 9, -48),
    ]);
    b.jmp_imm(Jmp::Ne, 3, 0x0008, lookup);
    // IPv4 without options, whole, else userspace decides.
    b.push([
        mov_reg(4, 7),
        alu_reg(Alu::Add, 4, 9),
        mov_reg(2, 4),
        alu_imm(Alu::Add, 2, 20),
    ]);
    b.jmp_reg(Jmp::Gt, 2, 8, to_xsk);
    b.push([load(Size::B, 2, 4, 0)]);
    b.jmp_imm(Jmp::Ne, 2, 0x45, to_xsk);
    b.push([load(Size::H, 5, 4, 2), to_be(5, 16)]);
    b.jmp_imm(Jmp::Lt, 5, 20, to_xsk);
    b.push([mov_reg(2, 8), alu_reg(Alu::Sub, 2, 4)]);
    b.jmp_reg(Jmp::Gt, 5, 2, to_xsk);
    b.push([
        store_reg(Size::Dw, 10, 5, -64),
        load(Size::B, 2, 4, 9),
        store_reg(Size::B, 10, 2, -14),
        load(Size::W, 3, 4, 12),
        store_reg(Size::W, 10, 3, -8),
        load(Size::W, 3, 4, 16),
        store_reg(Size::W, 10, 3, -4),
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
    b.push([mov_reg(3, 4), alu_imm(Alu::Add, 3, 8)]);
    b.jmp_reg(Jmp::Gt, 3, 8, lookup);
    b.push([load(Size::H, 3, 4, 0), store_reg(Size::H, 10, 3, -12)]);
    b.ja(lookup);

    b.bind(udp);
    b.push([mov_reg(3, 4), alu_imm(Alu::Add, 3, 8)]);
    b.jmp_reg(Jmp::Gt, 3, 8, lookup);
    b.push([
        load(Size::W, 3, 4, 0),
        store_reg(Size::W, 10, 3, -12),
        load(Size::H, 0, 4, 6),
    ]);
    b.jmp_imm(Jmp::Eq, 0, 0, lookup);
    b.push([mov_imm(1, 6)]);
    b.ja(csum);

    b.bind(tcp);
    b.push([mov_reg(3, 4), alu_imm(Alu::Add, 3, 20)]);
    b.jmp_reg(Jmp::Gt, 3, 8, lookup);
    b.push([
        load(Size::W, 3, 4, 0),
        store_reg(Size::W, 10, 3, -12),
        load(Size::H, 0, 4, 16),
        mov_imm(1, 16),
    ]);

    // A checksum field holding only the pseudo-header sum was left for offload
    // (CHECKSUM_PARTIAL): note where it is (fp-72), to finish it if the flow is forwarded
    // here (userspace finishes it otherwise).
    b.bind(csum);
    b.push([
        to_be(0, 16),
        load(Size::H, 3, 10, -8),
        to_be(3, 16),
        load(Size::H, 5, 10, -6),
        to_be(5, 16),
        alu_reg(Alu::Add, 3, 5),
        load(Size::H, 5, 10, -4),
        to_be(5, 16),
        alu_reg(Alu::Add, 3, 5),
        load(Size::H, 5, 10, -2),
        to_be(5, 16),
        alu_reg(Alu::Add, 3, 5),
        alu_reg(Alu::Add, 3, 2),
        load(Size::Dw, 5, 10, -64),
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
    b.push([store_reg(Size::Dw, 10, 1, -72)]);

    b.bind(lookup);
    b.push(flows);
    b.push([
        mov_reg(2, 10),
        alu_imm(Alu::Add, 2, -32),
        call(helper::MAP_LOOKUP_ELEM),
    ]);
    b.jmp_imm(Jmp::Eq, 0, 0, to_xsk);
    b.push([mov_reg(9, 0)]);
    b.push(epoch);
    b.push([load(Size::W, 2, 2, 0), load(Size::W, 3, 9, value::EPOCH)]);
    b.jmp_reg(Jmp::Ne, 2, 3, to_xsk);
    finish_checksum(&mut b, scratch, to_xsk);
    b.push([
        load(Size::B, 2, 9, value::FLAGS),
        mov_reg(3, 2),
        alu_imm(Alu::And, 3, i32::from(FLAG_DEC_TTL)),
    ]);
    b.jmp_imm(Jmp::Eq, 3, 0, count);
    // Routed IPv4: decrement the TTL, fix the header checksum (RFC 1624, as ip_decrease_ttl).
    b.push([
        load(Size::Dw, 4, 10, -48),
        mov_reg(5, 7),
        alu_reg(Alu::Add, 5, 4),
        mov_reg(3, 5),
        alu_imm(Alu::Add, 3, 20),
    ]);
    b.jmp_reg(Jmp::Gt, 3, 8, to_xsk);
    b.push([load(Size::B, 3, 5, 8)]);
    b.jmp_imm(Jmp::Le, 3, 1, to_xsk);
    b.push([
        alu_imm(Alu::Sub, 3, 1),
        store_reg(Size::B, 5, 3, 8),
        load(Size::H, 3, 5, 10),
        to_be(3, 16),
        alu_imm(Alu::Add, 3, 0x0100),
        mov_reg(4, 3),
        alu_imm(Alu::Rsh, 4, 16),
        alu_reg(Alu::Add, 3, 4),
        alu_imm(Alu::And, 3, 0xffff),
        to_be(3, 16),
        store_reg(Size::H, 5, 3, 10),
    ]);

    b.bind(count);
    b.push([
        load(Size::Dw, 3, 9, value::PACKETS),
        alu_imm(Alu::Add, 3, 1),
        store_reg(Size::Dw, 9, 3, value::PACKETS),
        mov_reg(3, 8),
        alu_reg(Alu::Sub, 3, 7),
        load(Size::Dw, 4, 9, value::BYTES),
        alu_reg(Alu::Add, 4, 3),
        store_reg(Size::Dw, 9, 4, value::BYTES),
    ]);
    b.push(clock);
    b.push([
        load(Size::Dw, 0, 0, 0),
        store_reg(Size::Dw, 9, 0, value::LAST_SEEN),
        load(Size::B, 2, 9, value::ACTION),
    ]);
    b.jmp_imm(Jmp::Eq, 2, i32::from(ACTION_DROP), drop);
    b.push([
        load(Size::B, 2, 9, value::FLAGS),
        alu_imm(Alu::And, 2, i32::from(FLAG_REWRITE_MACS)),
    ]);
    b.jmp_imm(Jmp::Eq, 2, 0, vlan);
    b.push([mov_reg(2, 7), alu_imm(Alu::Add, 2, 14)]);
    b.jmp_reg(Jmp::Gt, 2, 8, drop);
    b.push([
        load(Size::W, 3, 9, value::NEW_DST),
        store_reg(Size::W, 7, 3, 0),
        load(Size::H, 3, 9, value::NEW_DST + 4),
        store_reg(Size::H, 7, 3, 4),
        load(Size::H, 3, 9, value::NEW_SRC),
        store_reg(Size::H, 7, 3, 6),
        load(Size::W, 3, 9, value::NEW_SRC + 2),
        store_reg(Size::W, 7, 3, 8),
    ]);

    b.bind(vlan);
    b.push([load(Size::B, 2, 9, value::VLAN_OP)]);
    b.jmp_imm(Jmp::Eq, 2, i32::from(VLAN_NONE), redirect);
    b.jmp_imm(Jmp::Eq, 2, i32::from(VLAN_SET), set_vid);
    b.jmp_imm(Jmp::Eq, 2, i32::from(VLAN_STRIP), strip);
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
        store_imm(Size::H, 7, 12, 0x0081),
        load(Size::H, 3, 9, value::VLAN_VID),
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
        load(Size::H, 3, 9, value::VLAN_VID),
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
        load(Size::W, 2, 9, value::OUT_PORT),
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

/// Finishes a TCP or UDP checksum left for offload, for a flow the kernel forwards: copies
/// the segment into a per-CPU scratch buffer (`bpf_xdp_load_bytes`), sums it with
/// `bpf_csum_diff` in four chunks of at most 512 bytes (the helper's limit), adds the last one
/// to three bytes, folds, complements and stores. The field already holds the folded
/// pseudo-header sum, which is what the sum needs. Segments over 2 KiB go to userspace.
///
/// Working from the buffer keeps the verifier's work small: chunk pointers are constant
/// offsets into one map value, so only the chunk sizes vary.
///
/// Stack: fp-48 L3 offset, fp-56 a zero key, fp-64 IP total length, fp-72 checksum offset in
/// the L4 header (0: nothing to finish), fp-80/fp-96 spilled ctx and value pointers, fp-88
/// the running sum, fp-104 the segment length.
fn finish_checksum(b: &mut asm::Builder, scratch: [xvs_sys::bpf::Insn; 2], to_xsk: asm::Label) {
    use asm::*;
    let csum_one = b.label();
    let csum_fold = b.label();
    let csum_store = b.label();
    let csum_fail = b.label();
    let csum_done = b.label();
    b.push([load(Size::Dw, 2, 10, -72)]);
    b.jmp_imm(Jmp::Eq, 2, 0, csum_done);
    b.push([load(Size::B, 3, 9, value::ACTION)]);
    b.jmp_imm(Jmp::Eq, 3, i32::from(ACTION_DROP), csum_done);
    b.push([load(Size::Dw, 5, 10, -64), alu_imm(Alu::Sub, 5, 20)]);
    b.jmp_imm(Jmp::Gt, 5, SCRATCH_LEN as i32 - 1, to_xsk);
    b.jmp_imm(Jmp::Lt, 5, 8, to_xsk);
    b.push([
        store_reg(Size::Dw, 10, 6, -80),
        store_reg(Size::Dw, 10, 9, -96),
        store_reg(Size::Dw, 10, 5, -104),
    ]);
    b.push(scratch);
    b.push([
        mov_reg(2, 10),
        alu_imm(Alu::Add, 2, -56),
        call(helper::MAP_LOOKUP_ELEM),
    ]);
    b.jmp_imm(Jmp::Eq, 0, 0, csum_fail);
    b.push([
        mov_reg(9, 0),
        load(Size::Dw, 1, 10, -80),
        load(Size::Dw, 2, 10, -48),
        alu_imm(Alu::Add, 2, 20),
        mov_reg(3, 9),
        load(Size::Dw, 4, 10, -104),
        call(helper::XDP_LOAD_BYTES),
    ]);
    b.jmp_imm(Jmp::Ne, 0, 0, csum_fail);
    b.push([
        store_imm(Size::Dw, 10, -88, 0),
        load(Size::Dw, 6, 10, -104),
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
            load(Size::Dw, 5, 10, -88),
            call(helper::CSUM_DIFF),
        ]);
        b.jmp_imm(Jmp::Slt, 0, 0, csum_fail);
        b.push([store_reg(Size::Dw, 10, 0, -88), mov_imm(4, 0)]);
        b.jmp_imm(Jmp::Le, 6, 512, next);
        b.push([mov_reg(4, 6), alu_imm(Alu::Sub, 4, 512)]);
        b.bind(next);
        b.push([mov_reg(6, 4)]);
    }
    // The last 1-3 bytes, in memory order as csum_partial takes them.
    b.push([
        load(Size::Dw, 2, 10, -104),
        mov_reg(3, 2),
        alu_imm(Alu::And, 3, (SCRATCH_LEN as i32 - 1) & !3),
        alu_imm(Alu::And, 2, 3),
        mov_reg(4, 9),
        alu_reg(Alu::Add, 4, 3),
    ]);
    b.jmp_imm(Jmp::Lt, 2, 2, csum_one);
    b.push([
        load(Size::H, 5, 4, 0),
        load(Size::Dw, 0, 10, -88),
        alu_reg(Alu::Add, 0, 5),
        store_reg(Size::Dw, 10, 0, -88),
        alu_imm(Alu::Add, 4, 2),
        alu_imm(Alu::Sub, 2, 2),
    ]);
    b.bind(csum_one);
    b.jmp_imm(Jmp::Eq, 2, 0, csum_fold);
    b.push([
        load(Size::B, 5, 4, 0),
        load(Size::Dw, 0, 10, -88),
        alu_reg(Alu::Add, 0, 5),
        store_reg(Size::Dw, 10, 0, -88),
    ]);
    b.bind(csum_fold);
    b.push([
        load(Size::Dw, 0, 10, -88),
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
    b.push([alu_imm(Alu::Xor, 0, 0xffff), load(Size::B, 2, 10, -14)]);
    b.jmp_imm(Jmp::Ne, 2, 17, csum_store);
    b.jmp_imm(Jmp::Ne, 0, 0, csum_store);
    b.push([mov_imm(0, 0xffff)]);
    b.bind(csum_store);
    b.push([
        load(Size::Dw, 4, 10, -48),
        alu_imm(Alu::Add, 4, 20),
        load(Size::Dw, 3, 10, -72),
        alu_reg(Alu::Add, 4, 3),
        mov_reg(5, 7),
        alu_reg(Alu::Add, 5, 4),
        mov_reg(2, 5),
        alu_imm(Alu::Add, 2, 2),
    ]);
    b.jmp_reg(Jmp::Gt, 2, 8, csum_fail);
    b.push([
        store_reg(Size::H, 5, 0, 0),
        load(Size::Dw, 6, 10, -80),
        load(Size::Dw, 9, 10, -96),
    ]);
    b.ja(csum_done);
    b.bind(csum_fail);
    b.push([load(Size::Dw, 6, 10, -80)]);
    b.ja(to_xsk);
    b.bind(csum_done);
}

/// A flow's key as the kernel program builds it.
pub(crate) type KernelKey = [u8; KEY_LEN];

/// The kernel key of a flow, as the program of its ingress port computes it.
pub(crate) fn kernel_key(key: &FlowKey) -> KernelKey {
    // 0 port, 2 VLAN (as FlowKey has them, native order); 4 destination and 10 source MAC;
    // 16 EtherType, 18 IP protocol; 20 TCP/UDP ports (ICMP type and code); 24 source and
    // 28 destination IPv4 address; all as on the wire but the first two. 32 bytes: eight
    // words for the map's hash.
    let mut k = [0u8; KEY_LEN];
    k[0..2].copy_from_slice(&key.in_port.to_ne_bytes());
    k[2..4].copy_from_slice(&key.vlan.to_ne_bytes());
    k[4..10].copy_from_slice(&EthernetAddress::from_u64(key.dl_dst).0);
    k[10..16].copy_from_slice(&EthernetAddress::from_u64(key.dl_src).0);
    k[16..18].copy_from_slice(&key.dl_type.to_be_bytes());
    if key.dl_type == EtherType::IPV4 {
        k[18] = key.nw_proto;
        match key.nw_proto {
            1 => {
                k[20] = key.tp_src as u8;
                k[21] = key.tp_dst as u8;
            }
            _ => {
                k[20..22].copy_from_slice(&key.tp_src.to_be_bytes());
                k[22..24].copy_from_slice(&key.tp_dst.to_be_bytes());
            }
        }
        k[24..28].copy_from_slice(&(key.nw_src as u32).to_be_bytes());
        k[28..32].copy_from_slice(&(key.nw_dst as u32).to_be_bytes());
    }
    k
}

/// What the kernel is to do with a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KernelAction {
    /// Where to send it, or `None` to drop.
    pub(crate) out_port: Option<PortId>,
    pub(crate) rewrite: Option<(EthernetAddress, EthernetAddress)>,
    pub(crate) dec_ttl: bool,
    pub(crate) vlan_op: u8,
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
    if let Some(reason) = decision.drop_reason() {
        // Only a rule's explicit drop is worth a kernel entry (on IPv4: the key is exact).
        return (reason == DropReason::Rule && decision.rule().is_some() && ipv4).then_some(
            KernelAction {
                out_port: None,
                rewrite: None,
                dec_ttl: false,
                vlan_op: VLAN_NONE,
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
    if routed && !(dst.is_some() && src.is_some() && dec_ttl) {
        return None;
    }
    let tagged = key.vlan_id();
    let (vlan_op, vid) = match tag {
        None => (VLAN_NONE, 0),
        Some(EgressTag::Untagged) if tagged.is_some() => (VLAN_STRIP, 0),
        Some(EgressTag::Untagged) => (VLAN_NONE, 0),
        Some(EgressTag::Tagged(v)) => match tagged {
            None => (VLAN_PUSH, v),
            Some(t) if t == v => (VLAN_NONE, 0),
            Some(_) => (VLAN_SET, v),
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

/// The per-CPU value bytes of an entry, for every CPU.
pub(crate) fn kernel_value(
    action: &KernelAction,
    out_slot: u32,
    epoch: u32,
    value_len: usize,
) -> Vec<u8> {
    let mut one = [0u8; VALUE_LEN];
    one[0..4].copy_from_slice(&out_slot.to_ne_bytes());
    one[4..8].copy_from_slice(&epoch.to_ne_bytes());
    one[8] = if action.out_port.is_some() {
        ACTION_REDIRECT
    } else {
        ACTION_DROP
    };
    let mut flags = 0;
    if let Some((dst, src)) = action.rewrite {
        flags |= FLAG_REWRITE_MACS;
        one[16..22].copy_from_slice(&dst.0);
        one[22..28].copy_from_slice(&src.0);
    }
    if action.dec_ttl {
        flags |= FLAG_DEC_TTL;
    }
    one[9] = flags;
    one[10] = action.vlan_op;
    one[12..14].copy_from_slice(&action.vid.to_ne_bytes());
    let stride = VALUE_LEN.next_multiple_of(8);
    let mut all = vec![0u8; value_len];
    for cpu in all.chunks_exact_mut(stride) {
        cpu[..VALUE_LEN].copy_from_slice(&one);
    }
    all
}

/// Packets, bytes and the latest last-seen time (CLOCK_MONOTONIC ns, coarse) of an entry,
/// summed over CPUs; `None` if the entry is gone.
pub(crate) fn read_counters(
    maps: &FastPathMaps,
    key: &KernelKey,
    buf: &mut Vec<u8>,
) -> Option<(u64, u64, u64)> {
    buf.resize(maps.flows.value_len(), 0);
    if !maps.flows.lookup(key, buf).ok()? {
        return None;
    }
    let stride = VALUE_LEN.next_multiple_of(8);
    let word = |cpu: &[u8], at: i16| {
        let at = at as usize;
        u64::from_ne_bytes(cpu[at..at + 8].try_into().expect("8 bytes"))
    };
    let mut total = (0, 0, 0);
    for cpu in buf.chunks_exact(stride) {
        total.0 += word(cpu, value::PACKETS);
        total.1 += word(cpu, value::BYTES);
        total.2 = total.2.max(word(cpu, value::LAST_SEEN));
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use xvs_sys::bpf::{XskMap, load_xdp};

    use super::*;

    #[test]
    fn the_verifier_accepts_the_program() {
        if !xvs_sys::procfs::is_root() {
            eprintln!("SKIP: loading BPF programs needs root");
            return;
        }
        let maps = FastPathMaps::new().expect("maps");
        let xsks = XskMap::new(4, "test_xsks").expect("xskmap");
        let insns = program(&maps, xsks.as_fd(), 1);
        match load_xdp(&insns, "xvs_fast_test") {
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn keys_mirror_flow_keys() {
        let key = FlowKey {
            in_port: 1,
            vlan: VLAN_PRESENT | 10,
            dl_type: EtherType::IPV4,
            dl_src: 0x0200_0000_0001,
            dl_dst: 0x0200_0000_0002,
            nw_proto: 17,
            nw_src: 0x0a00_0001,
            nw_dst: 0x0a00_0002,
            tp_src: 1000,
            tp_dst: 53,
            ..FlowKey::default()
        };
        let k = kernel_key(&key);
        assert_eq!(&k[0..2], &1u16.to_ne_bytes());
        assert_eq!(u16::from_ne_bytes([k[2], k[3]]), 0x100a);
        assert_eq!(&k[4..10], &[2, 0, 0, 0, 0, 2]);
        assert_eq!(&k[16..18], &[0x08, 0x00]);
        assert_eq!(k[18], 17);
        assert_eq!(&k[20..24], &[0x03, 0xe8, 0, 53]);
        assert_eq!(&k[24..28], &[10, 0, 0, 1]);
        let ttl = FlowKey { nw_ttl: 9, ..key };
        assert_eq!(kernel_key(&ttl), k, "TTL is not part of the key");
    }

    #[test]
    fn offload_choices() {
        let key = FlowKey {
            dl_type: EtherType::IPV6,
            ..FlowKey::default()
        };
        let mut config = flowtable::Config::default();
        for id in 1..=3 {
            config.set_port(flowtable::PortConfig {
                id,
                name: format!("p{id}"),
                mac: EthernetAddress([2, 0, 0, 0, 0, id as u8]),
                vlan: flowtable::VlanMode::All,
            });
        }
        let out = Decision::output(3, Some(EgressTag::Tagged(5)));
        let a = offload(&key, &out, &config).unwrap();
        assert_eq!((a.out_port, a.vlan_op, a.vid), (Some(3), VLAN_PUSH, 5));
        let mut with_rules = config.clone();
        with_rules.rules.insert(flowtable::Rule {
            id: 1,
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
        let v4 = FlowKey {
            dl_type: EtherType::IPV4,
            vlan: VLAN_PRESENT | 5,
            ..FlowKey::default()
        };
        let strip = Decision::output(2, Some(EgressTag::Untagged));
        assert_eq!(
            offload(&v4, &strip, &with_rules).unwrap().vlan_op,
            VLAN_STRIP
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
        assert_eq!(a.vlan_op, VLAN_NONE);
        let dropped = Decision::drop(DropReason::Rule).with_rule(Some(4));
        assert_eq!(offload(&v4, &dropped, &with_rules).unwrap().out_port, None);
        assert!(offload(&v4, &Decision::drop(DropReason::SamePort), &config).is_none());
    }
}

/// What a worker knows of a port for the fast path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FastPort {
    /// The interface index (the kernel key's first field, and the DEVMAP key).
    pub(crate) ifindex: u32,
    /// Whether frames may be redirected to it (it is in the DEVMAP).
    pub(crate) target: bool,
}

/// A kernel entry, as `dump-fast-path` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastEntry {
    /// The ingress port.
    pub in_port: PortId,
    /// The output port (`None`: dropped).
    pub out_port: Option<PortId>,
    /// Destination MAC of the flow.
    pub dst: EthernetAddress,
    /// Source MAC of the flow.
    pub src: EthernetAddress,
    /// EtherType of the flow.
    pub ethertype: u16,
    /// The rule that decided, if any.
    pub rule: Option<u32>,
    /// Packets the kernel forwarded, as of the last fold.
    pub packets: u64,
    /// Bytes the kernel forwarded, as of the last fold.
    pub bytes: u64,
}

/// Ports by number, as the fast path sees them.
pub(crate) type FastPorts = Vec<Option<FastPort>>;

/// A kernel entry a worker installed, and what it needs to follow it.
#[derive(Debug, Clone)]
struct Installed {
    /// The flow, to have userspace decide it again if the kernel entry goes away.
    flow: FlowKey,
    in_port: PortId,
    out_port: Option<PortId>,
    rule: Option<u32>,
    learn: Option<(u16, u64, PortId)>,
    deps: [Option<u16>; flowtable::pipeline::MAX_DEPS],
    /// The pipeline's change count when the decision was made.
    seq: u64,
    /// Bytes each packet gains (pushed tag) or loses (stripped tag) on the way out.
    tx_delta: i64,
    packets: u64,
    bytes: u64,
    last_seen: u64,
    /// When (pipeline clock) the counters last moved.
    active_at: u64,
}

/// Entries idle for this long are removed from the kernel (they come back on the next
/// packet, through userspace).
const IDLE_NS: u64 = 10_000_000_000;
/// How often counters are folded in without being asked.
const SYNC_NS: u64 = 1_000_000_000;

/// A worker's side of the fast path: the entries it installed, their dependencies, and the
/// counters it already folded in.
#[derive(Debug)]
pub(crate) struct Offloader {
    maps: std::sync::Arc<FastPathMaps>,
    ports: std::sync::Arc<FastPorts>,
    epoch: u32,
    installed: std::collections::HashMap<KernelKey, Installed>,
    by_bucket: std::collections::HashMap<u16, Vec<KernelKey>>,
    invalidated: Vec<(u16, u64)>,
    buf: Vec<u8>,
    /// CLOCK_MONOTONIC at the pipeline clock's zero.
    monotonic_zero: u64,
    last_sync: u64,
}

impl Offloader {
    pub(crate) fn new(maps: std::sync::Arc<FastPathMaps>, monotonic_zero: u64) -> Offloader {
        Offloader {
            maps,
            ports: std::sync::Arc::new(Vec::new()),
            epoch: 0,
            installed: std::collections::HashMap::new(),
            by_bucket: std::collections::HashMap::new(),
            invalidated: Vec::new(),
            buf: Vec::new(),
            monotonic_zero,
            last_sync: 0,
        }
    }

    /// The entries this worker installed, with what they counted so far.
    pub(crate) fn entries(&self) -> Vec<FastEntry> {
        self.installed
            .iter()
            .map(|(k, e)| FastEntry {
                in_port: e.in_port,
                out_port: e.out_port,
                dst: EthernetAddress::from_bytes(&k[4..10]),
                src: EthernetAddress::from_bytes(&k[10..16]),
                ethertype: u16::from_be_bytes([k[16], k[17]]),
                rule: e.rule,
                packets: e.packets,
                bytes: e.bytes,
            })
            .collect()
    }

    /// Entries this worker installed, by ingress port.
    pub(crate) fn counts(&self) -> std::collections::HashMap<PortId, usize> {
        let mut counts = std::collections::HashMap::new();
        for e in self.installed.values() {
            *counts.entry(e.in_port).or_insert(0) += 1;
        }
        counts
    }

    pub(crate) fn set_ports(&mut self, ports: std::sync::Arc<FastPorts>) {
        self.ports = ports;
    }

    /// A new configuration: fold what the old entries counted, then forget them (the epoch
    /// already made them dead in the kernel; the control thread deletes them).
    pub(crate) fn reset(
        &mut self,
        epoch: u32,
        pipeline: &mut flowtable::Pipeline,
        counters: &crate::counters::WorkerCounters,
        now: u64,
    ) {
        self.sync(pipeline, counters, now);
        self.installed.clear();
        self.by_bucket.clear();
        self.epoch = epoch;
    }

    fn port(&self, port: PortId) -> Option<FastPort> {
        self.ports.get(usize::from(port)).copied().flatten()
    }

    /// Writes the decision for `key` into the kernel if the kernel can carry it out.
    pub(crate) fn install(
        &mut self,
        key: &FlowKey,
        decision: &Decision,
        miss: &flowtable::Miss,
        config: &flowtable::Config,
        now: u64,
    ) {
        if !miss.cacheable || self.epoch == 0 || self.installed.len() as u32 >= MAX_FLOWS / 2 {
            tracing::debug!(
                cacheable = miss.cacheable,
                epoch = self.epoch,
                "not offloaded"
            );
            return;
        }
        if self.port(key.in_port).is_none() {
            tracing::debug!(port = key.in_port, "not offloaded: no fast port");
            return;
        }
        let Some(action) = offload(key, decision, config) else {
            tracing::debug!(?decision, "not offloaded: decision");
            return;
        };
        let out_slot = match action.out_port {
            Some(p) => match self.port(p) {
                Some(out) if out.target => u32::from(p),
                _ => return,
            },
            None => 0,
        };
        let kkey = kernel_key(key);
        let value = kernel_value(&action, out_slot, self.epoch, self.maps.flows.value_len());
        if let Err(e) = self.maps.flows.update(&kkey, &value, 0) {
            tracing::debug!("fast path entry not installed: {e}");
            return;
        }
        let tx_delta = match action.vlan_op {
            VLAN_PUSH => 4,
            VLAN_STRIP => -4,
            _ => 0,
        };
        for b in miss.deps.iter().flatten() {
            self.by_bucket.entry(*b).or_default().push(kkey);
        }
        self.installed.insert(
            kkey,
            Installed {
                flow: *key,
                in_port: key.in_port,
                out_port: action.out_port,
                rule: decision.rule(),
                learn: miss.learn,
                deps: miss.deps,
                seq: miss.seq,
                tx_delta,
                packets: 0,
                bytes: 0,
                last_seen: 0,
                active_at: now,
            },
        );
    }

    /// Deletes the kernel entries whose dependencies changed in the pipeline.
    pub(crate) fn invalidate(
        &mut self,
        pipeline: &mut flowtable::Pipeline,
        counters: &crate::counters::WorkerCounters,
    ) {
        if let Some(seq) = pipeline.take_invalidations(&mut self.invalidated) {
            let keys: Vec<KernelKey> = self
                .installed
                .iter()
                .filter(|(_, e)| e.seq < seq)
                .map(|(k, _)| *k)
                .collect();
            for k in keys {
                self.remove(&k, pipeline, counters);
            }
        }
        while let Some((bucket, seq)) = self.invalidated.pop() {
            // Entries decided after the change already saw it.
            let stale: Vec<KernelKey> = self
                .by_bucket
                .get(&bucket)
                .into_iter()
                .flatten()
                .filter(|k| self.installed.get(*k).is_some_and(|e| e.seq < seq))
                .copied()
                .collect();
            for k in stale {
                self.remove(&k, pipeline, counters);
            }
        }
    }

    fn remove(
        &mut self,
        key: &KernelKey,
        pipeline: &mut flowtable::Pipeline,
        counters: &crate::counters::WorkerCounters,
    ) {
        let Some(mut entry) = self.installed.remove(key) else {
            return;
        };
        // Count what it forwarded since the last fold, then delete it (the few packets in
        // between are the only ones not counted).
        self.fold(key, &mut entry, pipeline, counters);
        let _ = self.maps.flows.delete(key);
        for b in entry.deps.iter().flatten() {
            if let Some(keys) = self.by_bucket.get_mut(b) {
                keys.retain(|k| k != key);
            }
        }
    }

    /// Reads an entry's counters and adds what is new to the port, rule and MAC counters.
    /// Returns false if the kernel no longer has it.
    fn fold(
        &mut self,
        key: &KernelKey,
        entry: &mut Installed,
        pipeline: &mut flowtable::Pipeline,
        counters: &crate::counters::WorkerCounters,
    ) -> bool {
        let Some((packets, bytes, last_seen)) = read_counters(&self.maps, key, &mut self.buf)
        else {
            return false;
        };
        let dp = packets.saturating_sub(entry.packets);
        let db = bytes.saturating_sub(entry.bytes);
        entry.packets = packets;
        entry.bytes = bytes;
        if dp == 0 {
            return true;
        }
        counters.kernel_rx(entry.in_port, dp, db);
        match entry.out_port {
            Some(out) => {
                let tx = (db as i64 + entry.tx_delta * dp as i64).max(0) as u64;
                counters.kernel_tx(out, dp, tx);
            }
            None => counters.drop(
                entry.in_port,
                crate::counters::Drop::Pipeline(DropReason::Rule),
                dp,
            ),
        }
        if let Some(rule) = entry.rule {
            pipeline.add_rule_counts(rule, dp, db);
        }
        let seen = last_seen.saturating_sub(self.monotonic_zero);
        if let Some((vlan, mac, port)) = entry.learn {
            pipeline.refresh_source(vlan, mac, port, seen);
        }
        entry.last_seen = seen;
        entry.active_at = entry.active_at.max(seen);
        true
    }

    /// Folds every entry's new counts in, and removes entries idle for a while. Every
    /// [`SYNC_NS`] unless `force`.
    pub(crate) fn sync_if_due(
        &mut self,
        pipeline: &mut flowtable::Pipeline,
        counters: &crate::counters::WorkerCounters,
        now: u64,
    ) {
        if now.saturating_sub(self.last_sync) >= SYNC_NS {
            self.sync(pipeline, counters, now);
        }
    }

    /// Folds every entry's new counts in now.
    pub(crate) fn sync(
        &mut self,
        pipeline: &mut flowtable::Pipeline,
        counters: &crate::counters::WorkerCounters,
        now: u64,
    ) {
        self.last_sync = now;
        let keys: Vec<KernelKey> = self.installed.keys().copied().collect();
        for k in keys {
            let Some(mut entry) = self.installed.remove(&k) else {
                continue;
            };
            let alive = self.fold(&k, &mut entry, pipeline, counters);
            let idle = now.saturating_sub(entry.active_at) >= IDLE_NS;
            if alive && !idle {
                self.installed.insert(k, entry);
            } else {
                if alive {
                    let _ = self.maps.flows.delete(&k);
                }
                // The flow's next packet comes to userspace: decide it afresh there, so that
                // it is offloaded again rather than served by the userspace cache forever.
                pipeline.forget(&entry.flow);
                for b in entry.deps.iter().flatten() {
                    if let Some(keys) = self.by_bucket.get_mut(b) {
                        keys.retain(|x| x != &k);
                    }
                }
            }
        }
    }
}
