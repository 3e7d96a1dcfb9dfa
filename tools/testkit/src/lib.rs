//! xvs-testkit: what every integration test and the end-to-end bench need from the host to
//! build a lab, and nothing about xvs itself.
//!
//! Layering: [`check`] (under [`run`] and [`must`]) runs programs and is the one place that
//! turns a failed command into an [`Error`]; [`Netns`], [`VethPair`] and [`Link`] are guards
//! built on it that remove what they made in `Drop`, even when a test panics;
//! [`unique_name`] keeps their names apart between test processes; [`can_run`], [`skip()`],
//! [`serial()`] and [`bin_path`] answer "can this test run here, and with what". It never
//! starts an xvs daemon or knows a protocol: the harnesses of each package do, on top.

#![forbid(unsafe_code)]

mod bins;
mod command;
mod error;
mod fuzz;
mod host;
mod link;
mod names;
mod netns;
mod serial;
mod skip;

pub use bins::bin_path;
pub use command::{check, must, run};
pub use error::Error;
pub use fuzz::replay_fuzz_inputs;
pub use host::{have, is_root, sysctl};
pub use link::{Link, VethBuilder, VethPair};
pub use names::unique_name;
pub use netns::{Netns, exec_in, netns_command, spawn_in};
pub use serial::serial;
pub use skip::{can_run, skip, test_name};
