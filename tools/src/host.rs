//! What the machine tells: our capabilities, an interface's index, MAC address and packet
//! counters. The reads themselves live in `xvs_sys` (procfs, netdev).

use flowtable::wire::EthernetAddress;
pub use xvs_sys::procfs::DevCounters;
use xvs_sys::{netdev, procfs};

use crate::error::Error;

/// Fails with [`Error::NotRoot`] unless this process may load XDP programs and open AF_XDP
/// sockets. When `/proc` cannot tell, lets the kernel decide later.
///
/// # Errors
/// [`Error::NotRoot`].
pub fn check_privileges() -> Result<(), Error> {
    match procfs::Capabilities::effective() {
        Some(caps) if !caps.can_run_xdp() => Err(Error::NotRoot),
        _ => Ok(()),
    }
}

/// The index of interface `name`.
///
/// # Errors
/// [`Error::NoSuchDevice`] when there is none in this network namespace.
pub fn ifindex(name: &str) -> Result<u32, Error> {
    netdev::if_nametoindex(name).map_err(|_| Error::NoSuchDevice(name.to_owned()))
}

/// The MAC address of interface `name` (index `ifindex`), from sysfs, if sysfs shows this
/// network namespace's interface of that name.
pub fn mac_address(name: &str, ifindex: u32) -> Option<EthernetAddress> {
    procfs::interface_mac(name, ifindex).map(EthernetAddress)
}
