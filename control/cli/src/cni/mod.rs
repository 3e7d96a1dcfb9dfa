//! The CNI plugin `xvs-cni`: container runtimes (podman, containerd, CRI-O, Kubernetes) call it
//! to wire a container's network namespace to xvsd.
//!
//! It follows the CNI specification (versions 0.3.0 to 1.1.0): `ADD`, `DEL`, `CHECK`, `VERSION`,
//! `STATUS` and `GC`, parameters in `CNI_*` variables, the network configuration on standard
//! input, a result or an error object on standard output. Addresses come from the IPAM plugin
//! the configuration names (host-local, dhcp, static, ...), found through `CNI_PATH`.
//!
//! - [`types`]: versions, error codes, the network configuration and results in every version.
//! - [`env`](mod@env): the `CNI_*` parameters and `CNI_ARGS`.
//! - [`ipam`]: running the delegated IPAM plugin.
//! - [`plugin`]: the commands.

pub mod env;
pub mod ipam;
pub mod plugin;
pub mod types;

pub use plugin::{Outcome, run};
pub use types::{CniError, NetConf};
