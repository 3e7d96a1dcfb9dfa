//! xvs-testkit: what every integration test and the end-to-end bench need from the host to
//! build a lab, and nothing about xvs itself.
//!
//! Layering: [`command`] runs programs and is the one place that turns a failed command into
//! an [`Error`]; [`netns`] and [`link`] are guards built on it that remove what they made in
//! `Drop`, even when a test panics; [`names`] keeps those names apart between test processes;
//! [`host`], [`skip`], [`serial`] and [`bins`] answer "can this test run here, and with what".
//! It never starts an xvs daemon or knows a protocol: the harnesses of each package do, on top.

#![forbid(unsafe_code)]

pub mod bins;
pub mod command;
pub mod error;
pub mod host;
pub mod link;
pub mod names;
pub mod netns;
pub mod serial;
pub mod skip;

pub use bins::bin_path;
pub use command::{check, must, run};
pub use error::Error;
pub use host::{have, is_root, sysctl};
pub use link::{Link, VethBuilder, VethPair};
pub use names::unique_name;
pub use netns::{Netns, exec_in, netns_command, spawn_in};
pub use serial::serial;
pub use skip::{can_run, skip, test_name};
