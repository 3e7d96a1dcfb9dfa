//! control: the xvs control plane.
//!
//! The daemon `xvsd` owns a `dataplane::Switch` on its control thread and serves the command
//! socket, whose protocol is the `xvs-proto` crate's. This crate never touches packets or the
//! kernel's AF_XDP and BPF objects itself: it asks the dataplane. It has no `unsafe`.
//!
//! Containers reach the switch through [`attach`] (veth pairs over [`netlink`], ports through
//! the command socket's client), which three front ends share: `xvsctl attach`, the CNI
//! plugin `xvs-cni` ([`cni`]) and the Docker network plugin `xvs-docker-plugin` ([`docker`]).

#![forbid(unsafe_code)]

pub mod attach;
pub mod cni;
pub mod daemon;
pub mod docker;
pub mod netlink;
mod report;
pub mod server;
pub mod vlan;
