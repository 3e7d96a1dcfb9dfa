//! flowtable: what xvs decides for each packet.
//!
//! This crate owns the forwarding logic and nothing else: typed views over packet bytes
//! ([`wire`]), flow keys ([`key`]), the MAC learning table ([`mac_table`]), the per-worker flow
//! cache ([`cache`]), and the [`pipeline`] that turns (packet, in-port, now) into a
//! [`action::Decision`], plus the byte edits that carry a decision out ([`edit`]). The tables
//! decisions are made from: OpenFlow-style [`rule`]s, written in the `ovs-ofctl` syntax
//! ([`flow_spec`]) and looked up by the [`classifier`], and the routing tables ([`route`]).
//!
//! It must never do I/O, read a clock (time is passed in as `now`), spawn threads, or use
//! `unsafe`: it is deterministic, and tested without root. The dataplane (`dataplane`) sits on
//! top of it and the control plane (`control`) on top of that; nothing here points back.

#![forbid(unsafe_code)]

pub mod action;
pub mod cache;
pub mod classifier;
pub mod config;
pub mod edit;
pub mod flow_spec;
pub mod key;
pub mod mac_table;
pub mod neighbor;
pub mod pipeline;
pub mod port;
pub mod route;
pub mod rule;
pub mod wire;

pub use action::{Decision, DropReason, Step};
pub use classifier::Classifier;
pub use config::{Config, PortConfig};
pub use key::{FlowKey, Layout};
pub use pipeline::{Event, MacEvent, Miss, Pipeline, PipelineStats};
pub use port::{EgressTag, PortId, VlanMode};
pub use route::{Route, RouteTable};
pub use rule::{Action, Match, Rule};
