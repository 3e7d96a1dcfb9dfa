//! What the machine tells through files: our capabilities, an interface's MAC address and
//! its packet counters. No system calls of our own: those live in `dataplane::sys`.

use dataplane::sys::netdev;
use flowtable::wire::EthernetAddress;

use crate::error::Error;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// Whether a `CapEff:` mask grants what xvs-pktgen needs: CAP_NET_ADMIN, and CAP_BPF or
/// CAP_SYS_ADMIN.
fn caps_suffice(cap_eff: u64) -> bool {
    let has = |cap: u32| cap_eff & (1 << cap) != 0;
    has(CAP_NET_ADMIN) && (has(CAP_BPF) || has(CAP_SYS_ADMIN))
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
}

/// Fails with [`Error::NotRoot`] unless this process may load XDP programs and open AF_XDP
/// sockets. When `/proc` cannot tell, lets the kernel decide later.
///
/// # Errors
/// [`Error::NotRoot`].
pub fn check_privileges() -> Result<(), Error> {
    match std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(parse_cap_eff)
    {
        Some(caps) if !caps_suffice(caps) => Err(Error::NotRoot),
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
    let dir = format!("/sys/class/net/{name}");
    let index: u32 = std::fs::read_to_string(format!("{dir}/ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if index != ifindex {
        return None;
    }
    std::fs::read_to_string(format!("{dir}/address"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// An interface's counters as `/proc/net/dev` shows them (for the network namespace of the
/// reading process, whatever sysfs shows).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DevCounters {
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent. For a veth this includes the frames its peer's XDP program handled.
    pub tx_packets: u64,
    /// Packets dropped on the way out. For a veth this includes the XDP frames its peer could
    /// not take (no XDP program or GRO there, or a full ring).
    pub tx_dropped: u64,
}

impl DevCounters {
    /// The counters of `name`, if it is listed.
    pub fn read(name: &str) -> Option<DevCounters> {
        parse_proc_net_dev(&std::fs::read_to_string("/proc/net/dev").ok()?, name)
    }

    /// The growth from `earlier` to `self`.
    pub fn since(self, earlier: DevCounters) -> DevCounters {
        DevCounters {
            rx_packets: self.rx_packets.wrapping_sub(earlier.rx_packets),
            tx_packets: self.tx_packets.wrapping_sub(earlier.tx_packets),
            tx_dropped: self.tx_dropped.wrapping_sub(earlier.tx_dropped),
        }
    }
}

fn parse_proc_net_dev(text: &str, name: &str) -> Option<DevCounters> {
    text.lines().find_map(|line| {
        let (dev, numbers) = line.split_once(':')?;
        if dev.trim() != name {
            return None;
        }
        let n: Vec<u64> = numbers
            .split_whitespace()
            .map(|w| w.parse().ok())
            .collect::<Option<_>>()?;
        // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets ...
        Some(DevCounters {
            rx_packets: *n.get(1)?,
            tx_packets: *n.get(9)?,
            tx_dropped: *n.get(11)?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_ffff_ffff));
        assert!(caps_suffice(0x1ff_ffff_ffff));
        assert!(!caps_suffice(0));
        assert!(!caps_suffice(1 << CAP_BPF));
        assert!(caps_suffice((1 << CAP_BPF) | (1 << CAP_NET_ADMIN)));
        assert!(caps_suffice((1 << CAP_SYS_ADMIN) | (1 << CAP_NET_ADMIN)));
    }

    #[test]
    fn proc_net_dev() {
        let text = "Inter-|   Receive                            |  Transmit\n \
            face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
            lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n\
            veth-a: 5000 50 0 1 0 0 0 0 64000 1000 0 7 0 0 0 0\n";
        assert_eq!(
            parse_proc_net_dev(text, "veth-a"),
            Some(DevCounters {
                rx_packets: 50,
                tx_packets: 1000,
                tx_dropped: 7
            })
        );
        assert_eq!(parse_proc_net_dev(text, "eth9"), None);
    }
}
