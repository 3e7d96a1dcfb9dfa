//! dataplane: where xvs touches the kernel.
//!
//! It owns AF_XDP (UMEMs, rings, sockets), the XDP programs that steer frames to them, ports,
//! and the pinned poll-mode workers that move packets, deciding each one with a
//! `flowtable::Pipeline`. The control plane drives it through [`Switch`].
//!
//! Layering: `control` → `dataplane` → `flowtable`, never back. Every `unsafe` block of the
//! workspace lives in the OS crate `xvs_sys` (dataplane/sys); this crate is safe Rust and
//! reaches the kernel only through it. No forwarding decision is made here: that is `flowtable`'s job.

#![forbid(unsafe_code)]

pub mod backend;
pub mod conntrack;
pub mod counters;
pub mod fastpath;
#[doc(hidden)]
pub mod fuzzing;
pub mod hook;
pub mod port;
pub mod switch;
pub mod umem;
mod worker;

pub use counters::{DropCause, PortStats, WorkerStats};
pub use hook::{HookChoice, HookKind};
pub use port::{PortInfo, QueueInfo};
pub use switch::{PortCounters, PortOptions, Switch, SwitchError, SwitchOptions, WorkerInfo};
pub use worker::{FdbEntry, NeighborEntry, TraceReport};
pub use xvs_sys::bpf::XdpMode;
