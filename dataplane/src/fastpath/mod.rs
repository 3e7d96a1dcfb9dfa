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
//! in a veth's program for IPv4 flows it forwards; IPv6 from a veth's XDP program stays in
//! userspace, which finishes them.
//!
//! The code is in five rooms: `abi` (the maps' key and value layouts, one `#[repr(C)]` type
//! each), `maps`, `policy` (which decisions the kernel can carry out), `program` (the
//! generated XDP program) and `offloader` (a worker's side). Tests add `model` (the programs
//! in plain Rust) and `differential` (the kernel held to the workers, frame by frame).
//!
//! # The key
//! The kernel key holds every field of `FlowKey` that the program can read: ingress
//! interface, VLAN, EtherType, both MACs, and for IPv4 the protocol, addresses and ports (ICMP
//! type and code). It is exact, like the workers' flow caches, so a kernel entry stands for
//! exactly one userspace cache entry. For other EtherTypes the L3 fields are zero: such flows
//! are offloaded only when their decision depends on L2 fields alone (no rules, no routing,
//! and with a router, no broadcast or multicast ARP or IPv6, which it may answer).
//!
//! # Coherence
//! - Every entry carries the configuration epoch it was decided under; the program compares it
//!   with the current epoch (a one-slot ARRAY map, read through a direct pointer, as is the
//!   coarse clock userspace keeps beside it). Publishing a configuration bumps the epoch
//!   before it is acknowledged, which invalidates every entry at once.
//! - MAC moves and aging, and neighbor changes, bump generation buckets in the deciding
//!   worker's pipeline; the worker deletes the kernel entries that depended on those buckets
//!   before it decides the next packet.
//! - A removed port leaves the DEVMAP before its removal is acknowledged.
//!
//! # Statistics
//! Values live in a per-CPU hash map: the program bumps its CPU's packet and byte counters
//! and last-seen time. Workers read them every second (and on demand, before counters are
//! reported) and fold them into port counters, rule counters and the MAC table's aging, so
//! `dump-ports`, `dump-flows` and `fdb show` count every packet, whichever level forwarded it.

pub(crate) mod abi;
#[cfg(test)]
mod differential;
pub mod maps;
#[cfg(test)]
mod model;
pub(crate) mod offloader;
pub(crate) mod policy;
pub mod program;
pub mod tc_program;
#[cfg(test)]
mod test_frames;

pub use maps::FastPathMaps;
pub use offloader::FastEntry;
pub(crate) use offloader::{FastPort, FastPorts, Offloader};
pub use program::program;
pub use tc_program::tc_program;

/// Entries the kernel flow table holds at most.
pub const MAX_FLOWS: u32 = 32768;
