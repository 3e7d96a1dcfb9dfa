//! flowtable: what xvs decides for each packet. Layers: `control` → `dataplane` → this, never back.
//! It owns packet views ([`wire`]), flow [`key`]s, [`rule`]s and their text ([`flow_spec`]), the
//! [`classifier`], the flow [`cache`], the [`mac_table`], [`route`]s, [`neighbor`]s, [`port`]s,
//! [`config`], the connection tracker ([`conntrack`]), and the [`pipeline`]: (packet, in-port,
//! now) → [`Decision`], applied by [`edit`].
//! It never makes syscalls, reads a clock (`now` is an argument), spawns threads or uses `unsafe`.

#![forbid(unsafe_code)]

pub mod action;
pub mod cache;
pub mod classifier;
pub mod config;
pub mod conntrack;
pub mod edit;
pub mod flow_spec;
#[doc(hidden)]
pub mod fuzzing;
pub mod key;
pub mod mac_table;
pub mod neighbor;
pub mod pipeline;
pub mod port;
pub mod route;
pub mod rule;
pub mod tables;
pub mod wire;

pub use action::{Decision, DropReason, Step};
pub use classifier::Classifier;
pub use config::{Config, PortConfig, PortSecurity};
pub use key::{FlowKey, Layout};
pub use pipeline::{Event, MacEvent, Miss, Pipeline, PipelineStats};
pub use port::{EgressTag, PortId, VlanMode};
pub use route::{Route, RouteTable};
pub use rule::{Action, CtAction, Match, Rule};
pub use tables::Tables;
