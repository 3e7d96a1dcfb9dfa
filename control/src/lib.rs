//! control: the xvs daemon's control plane.
//!
//! The daemon `xvsd` owns a `dataplane::Switch` on its control thread and serves the command
//! socket, whose protocol is the `xvs-proto` crate's. This crate never touches packets or the
//! kernel's AF_XDP and BPF objects itself: it asks the dataplane. The daemon keeps the
//! operator's intent as a desired state (`xvs_proto::state`) and derives what it asks of the
//! switch from it ([`daemon`]; the pure part in `reconcile` and `rules`). Its clients (xvsctl, the
//! container plugins) live in `xvs-cli` and never link this crate. It has no `unsafe`.
//! Around the daemon: [`notify`] and [`watchdog`] speak to systemd, [`metrics`] serves
//! Prometheus a snapshot the control thread takes (a scrape never reaches a worker); `internal`
//! makes internal ports' interfaces and [`nat`] the host's NAT table for them.

#![forbid(unsafe_code)]

pub mod daemon;
mod expiry;
mod internal;
pub mod metrics;
pub mod nat;
pub mod notify;
mod reconcile;
mod report;
mod router;
mod rules;
pub mod server;
pub mod store;
pub mod vlan;
pub mod watchdog;
