//! dataplane: where xvs touches the kernel.
//!
//! It owns AF_XDP (UMEMs, rings, sockets), the XDP programs that steer frames to them, ports,
//! and the pinned poll-mode workers that move packets, deciding each one with a
//! `flowtable::Pipeline`. The control plane drives it through [`Switch`].
//!
//! Layering: `control` → `dataplane` → `flowtable`, never back. Every `unsafe` block of the
//! project lives in [`sys`]'s submodules, each with its `SAFETY:` reasoning; the rest of this
//! crate is safe Rust. No forwarding decision is made here: that is `flowtable`'s job.

#![deny(unsafe_code)]

pub mod counters;
pub mod fastpath;
pub mod port;
pub mod prog;
pub mod switch;
pub mod umem;
mod worker;

#[expect(unsafe_code, reason = "the one module where unsafe lives")]
pub mod sys;

pub use counters::{Drop, PortStats, WorkerStats};
pub use port::{PortInfo, QueueInfo};
pub use prog::XdpMode;
pub use switch::{PortCounters, PortOptions, Switch, SwitchError, SwitchOptions, WorkerInfo};
pub use worker::{FdbEntry, NeighborEntry};
