//! What the kernel tells through files: this process's identity, capabilities and limits
//! (`/proc/self`), an interface's address and queues (sysfs) and its counters
//! (`/proc/net/dev`); and the one setting xvsd writes, IPv4 forwarding.
//!
//! Reads never fail loudly: a file that is missing or unreadable gives `None`, and the caller
//! decides what that means (usually: let the kernel say no later).

/// Turns the IPv4 forwarding of the calling thread's network namespace on
/// (`net.ipv4.ip_forward=1`), as masquerading and published ports need. Never turns it off:
/// other things of the host may rely on it.
///
/// # Errors
/// `/proc/sys` cannot be written (no CAP_NET_ADMIN, read-only `/proc`).
pub fn enable_ipv4_forwarding() -> std::io::Result<()> {
    const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(PATH).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(PATH, b"1\n")
}

/// `CAP_NET_ADMIN`.
pub const CAP_NET_ADMIN: u32 = 12;
/// `CAP_IPC_LOCK`: exempts AF_XDP UMEMs from RLIMIT_MEMLOCK.
pub const CAP_IPC_LOCK: u32 = 14;
/// `CAP_SYS_ADMIN`.
pub const CAP_SYS_ADMIN: u32 = 21;
/// `CAP_BPF`.
pub const CAP_BPF: u32 = 39;

/// A set of capabilities, as the `CapEff:` mask of `/proc/self/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities(pub u64);

impl Capabilities {
    /// This process's effective capabilities, if `/proc` tells.
    pub fn effective() -> Option<Capabilities> {
        parse_status_field(
            &std::fs::read_to_string("/proc/self/status").ok()?,
            "CapEff:",
        )
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .map(Capabilities)
    }

    /// Whether `cap` is in the set.
    pub fn has(self, cap: u32) -> bool {
        self.0 & (1 << cap) != 0
    }

    /// Whether the set allows loading XDP programs and opening AF_XDP sockets: CAP_NET_ADMIN,
    /// and CAP_BPF or CAP_SYS_ADMIN.
    pub fn can_run_xdp(self) -> bool {
        self.has(CAP_NET_ADMIN) && (self.has(CAP_BPF) || self.has(CAP_SYS_ADMIN))
    }
}

/// Whether this process runs with effective user id 0.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(|s| parse_status_field(s, "Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap_or(false)
}

fn parse_status_field<'a>(status: &'a str, field: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(str::trim)
}

/// The soft RLIMIT_MEMLOCK in bytes (`u64::MAX` when unlimited), from `/proc/self/limits`.
pub fn memlock_limit() -> Option<u64> {
    parse_memlock(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

fn parse_memlock(limits: &str) -> Option<u64> {
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))?
        .split_whitespace()
        .nth(3)?;
    Some(match soft {
        "unlimited" => u64::MAX,
        bytes => bytes.parse().ok()?,
    })
}

/// The MAC address of interface `name`, from sysfs, if sysfs shows this network namespace's
/// interface of that name (index `ifindex`).
pub fn interface_mac(name: &str, ifindex: u32) -> Option<[u8; 6]> {
    let dir = format!("/sys/class/net/{name}");
    let index: u32 = std::fs::read_to_string(format!("{dir}/ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if index != ifindex {
        return None;
    }
    parse_mac(
        std::fs::read_to_string(format!("{dir}/address"))
            .ok()?
            .trim(),
    )
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// How many RX queues sysfs lists for interface `name`.
pub fn rx_queues(name: &str) -> Option<u32> {
    let dir = std::fs::read_dir(format!("/sys/class/net/{name}/queues")).ok()?;
    let n = dir
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    (n > 0).then_some(n as u32)
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
        let caps = parse_status_field(status, "CapEff:")
            .and_then(|v| u64::from_str_radix(v, 16).ok())
            .map(Capabilities);
        assert_eq!(caps, Some(Capabilities(0x1ff_ffff_ffff)));
        assert!(Capabilities(0x1ff_ffff_ffff).can_run_xdp());
        assert!(!Capabilities(0).can_run_xdp());
        assert!(!Capabilities(1 << CAP_BPF).can_run_xdp());
        assert!(Capabilities((1 << CAP_BPF) | (1 << CAP_NET_ADMIN)).can_run_xdp());
        assert!(Capabilities((1 << CAP_SYS_ADMIN) | (1 << CAP_NET_ADMIN)).can_run_xdp());
    }

    #[test]
    fn memlock() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
            Max locked memory         8388608              8388608              bytes\n";
        assert_eq!(parse_memlock(limits), Some(8 << 20));
        let unlimited =
            "Max locked memory         unlimited            unlimited            bytes\n";
        assert_eq!(parse_memlock(unlimited), Some(u64::MAX));
        assert_eq!(parse_memlock("nothing"), None);
    }

    #[test]
    fn macs() {
        assert_eq!(parse_mac("02:00:0a:ff:00:01"), Some([2, 0, 10, 255, 0, 1]));
        assert_eq!(parse_mac("02:00:0a:ff:00"), None);
        assert_eq!(parse_mac("02:00:0a:ff:00:01:02"), None);
        assert_eq!(parse_mac("zz:00:0a:ff:00:01"), None);
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

    #[test]
    fn reads_this_process() {
        assert!(memlock_limit().is_some(), "/proc/self/limits is readable");
        assert!(
            Capabilities::effective().is_some(),
            "/proc/self/status is readable"
        );
        assert!(
            interface_mac("lo", 1).is_some(),
            "lo is index 1 with a MAC in sysfs"
        );
    }
}
