//! xvs-cli: the programs that talk to xvsd, and what they share.
//!
//! `xvsctl` programs a running xvsd; containers reach the switch through [`attach`] (veth
//! pairs over `xvs_sys::netlink`, ports through the command socket's client in `xvs-proto`), which
//! three front ends share: `xvsctl attach`, the CNI plugin `xvs-cni` ([`cni`]) and the Docker
//! network plugin `xvs-docker-plugin` ([`docker`]). This crate speaks to xvsd only through
//! `xvs-proto`: it never links the daemon, the dataplane or the forwarding logic. It has no
//! `unsafe`.

#![forbid(unsafe_code)]

pub mod attach;
pub mod cni;
pub mod docker;
#[doc(hidden)]
pub mod fuzzing;
pub mod message;
