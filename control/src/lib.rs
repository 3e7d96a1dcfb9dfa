//! control: the xvs control plane.
//!
//! The daemon `xvsd` owns a `dataplane::Switch` on its control thread and serves the command
//! socket; `xvsctl` is its client. This crate never touches packets or the kernel's AF_XDP and
//! BPF objects itself: it asks the dataplane. It has no `unsafe`.

#![forbid(unsafe_code)]

pub mod client;
pub mod daemon;
pub mod protocol;
pub mod server;
