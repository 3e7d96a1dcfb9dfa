//! xvs-proto: the command socket's protocol, typed, and a client for it.
//!
//! xvsd answers JSON-RPC 2.0 requests, one per line, on a Unix socket. This crate owns every
//! byte of that conversation: the envelope ([`envelope`]), one parameter type and one result
//! type per method ([`Method`], listed once in [`methods`]), the desired state a daemon keeps
//! ([`state`]), and a blocking [`client`]. It depends on serde alone: it never links the
//! dataplane or the forwarding logic, so that clients (xvsctl, the container plugins) stay
//! small, and it has no `unsafe`.

#![forbid(unsafe_code)]

pub mod client;
pub mod counters;
pub mod envelope;
pub mod fast_path;
pub mod fdb;
pub mod flows;
#[doc(hidden)]
pub mod fuzzing;
pub mod meta;
mod method;
pub mod methods;
pub mod ports;
pub mod router;
pub mod state;
pub mod status;
pub mod vlan;

pub use envelope::{DEFAULT_SOCKET, MAX_LINE, Request, Response, RpcError, code, parse_request};
pub use method::{Empty, Method, MethodInfo};
pub use methods::{Call, METHODS};
pub use vlan::VlanSpec;
