//! xvs-tools: the tools that load and measure an xvs switch, starting with `xvs-pktgen`, a
//! packet generator and counter built on XDP live frames and AF_XDP.
//!
//! Layering: the binary (`src/bin/xvs-pktgen.rs`) parses arguments and prints; [`send`],
//! [`count`] and [`rtt`] run a command; [`live`] and [`afxdp`] move frames; [`program`]
//! generates the BPF programs; [`packet`], [`pace`], [`inspect`] and [`report`] are plain
//! computation, tested without root. Every system call but std's own sockets (which `rtt`
//! uses) goes through `xvs_sys`: this crate has no `unsafe`.

#![forbid(unsafe_code)]

pub mod afxdp;
pub mod count;
pub mod error;
pub mod host;
pub mod inspect;
pub mod live;
pub mod pace;
pub mod packet;
pub mod program;
pub mod report;
pub mod rtt;
pub mod send;

pub use error::Error;
