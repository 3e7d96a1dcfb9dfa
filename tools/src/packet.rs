//! The frames xvs-pktgen sends: Ethernet + IPv4 or IPv6 + UDP, their sizes, their flows, and
//! the stamp that latency mode carries in the payload.
//!
//! Everything here is plain computation over byte buffers, so that the XDP program that
//! varies frames in the kernel ([`crate::program`]) and the AF_XDP path that writes them from
//! user space agree on what flow `f` of size `n` looks like; the unit tests hold them to it.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

use flowtable::wire::ethernet::{self, EthernetAddress};
use flowtable::wire::ipv4::Protocol;
use flowtable::wire::{EtherType, checksum, ipv4, ipv6, l4};

/// Bytes of the frame check sequence that the NIC appends; `--size` counts them, the buffers
/// we hand the kernel do not hold them.
pub const FCS_LEN: usize = 4;
/// The smallest Ethernet frame, FCS included.
pub const MIN_FRAME: u16 = 64;
/// The largest untagged Ethernet frame of a 1500-byte MTU, FCS included.
pub const MAX_FRAME: u16 = 1518;
/// The UDP destination port unless told otherwise (discard).
pub const DEFAULT_DST_PORT: u16 = 9;
/// The first UDP source port unless told otherwise.
pub const DEFAULT_SRC_PORT: u16 = 1024;
/// The most flows one run varies.
pub const MAX_FLOWS: u32 = 1 << 24;

/// Frame sizes on the wire, FCS included: one size, or every size of a range in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeRange {
    min: u16,
    max: u16,
}

/// A `--size` that is not a size or range within 64..=1518.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSize {
    /// Not a number or `A..B`.
    #[error("want a frame size like 64, or a range like 64..1518")]
    Syntax,
    /// A size outside what Ethernet carries.
    #[error(
        "{0} is out of range: frame sizes go from {MIN_FRAME} to {MAX_FRAME} bytes (FCS included)"
    )]
    OutOfRange(u32),
    /// A range whose end is below its start.
    #[error("the range {0}..{1} is empty")]
    Empty(u16, u16),
}

impl SizeRange {
    /// A range of frame sizes, FCS included.
    ///
    /// # Errors
    /// A size outside 64..=1518, or `max < min`.
    pub fn new(min: u16, max: u16) -> Result<SizeRange, BadSize> {
        for size in [min, max] {
            if !(MIN_FRAME..=MAX_FRAME).contains(&size) {
                return Err(BadSize::OutOfRange(size.into()));
            }
        }
        if max < min {
            return Err(BadSize::Empty(min, max));
        }
        Ok(SizeRange { min, max })
    }

    /// The smallest frame size, FCS included.
    pub fn min(self) -> u16 {
        self.min
    }

    /// The largest frame size, FCS included.
    pub fn max(self) -> u16 {
        self.max
    }

    /// How many sizes are cycled through.
    pub fn count(self) -> u32 {
        u32::from(self.max - self.min) + 1
    }

    /// The length of the buffer of the `i`-th frame (FCS excluded), cycling.
    pub fn buffer_len(self, i: u64) -> usize {
        usize::from(self.min) + (i % u64::from(self.count())) as usize - FCS_LEN
    }

    /// The largest buffer (FCS excluded).
    pub fn max_buffer_len(self) -> usize {
        usize::from(self.max) - FCS_LEN
    }

    /// The smallest buffer (FCS excluded).
    pub fn min_buffer_len(self) -> usize {
        usize::from(self.min) - FCS_LEN
    }
}

impl FromStr for SizeRange {
    type Err = BadSize;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parse = |t: &str| -> Result<u16, BadSize> {
            let n: u32 = t.trim().parse().map_err(|_| BadSize::Syntax)?;
            u16::try_from(n)
                .ok()
                .filter(|n| (MIN_FRAME..=MAX_FRAME).contains(n))
                .ok_or(BadSize::OutOfRange(n))
        };
        match s.split_once("..") {
            Some((a, b)) => SizeRange::new(parse(a)?, parse(b.trim_start_matches('='))?),
            None => {
                let n = parse(s)?;
                SizeRange::new(n, n)
            }
        }
    }
}

impl fmt::Display for SizeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}..{}", self.min, self.max)
        }
    }
}

/// The addresses of the frames: both families' source and destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpPair {
    /// IPv4.
    V4 {
        /// Source (flows beyond the source ports add to it).
        src: Ipv4Addr,
        /// Destination.
        dst: Ipv4Addr,
    },
    /// IPv6.
    V6 {
        /// Source (flows beyond the source ports add to its last 32 bits).
        src: Ipv6Addr,
        /// Destination.
        dst: Ipv6Addr,
    },
}

impl IpPair {
    /// The RFC 2544 benchmarking pair 198.18.0.1 → 198.18.0.2.
    pub const DEFAULT_V4: IpPair = IpPair::V4 {
        src: Ipv4Addr::new(198, 18, 0, 1),
        dst: Ipv4Addr::new(198, 18, 0, 2),
    };
    /// The RFC 5180 benchmarking pair 2001:2::1 → 2001:2::2.
    pub const DEFAULT_V6: IpPair = IpPair::V6 {
        src: Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1),
        dst: Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2),
    };

    /// A pair from optional addresses: the family is that of the addresses given, or IPv6
    /// when `ipv6` is set, else IPv4; what is missing comes from the family's default.
    ///
    /// # Errors
    /// The addresses are of different families, or of IPv4 while `ipv6` is set.
    pub fn resolve(
        src: Option<IpAddr>,
        dst: Option<IpAddr>,
        ipv6: bool,
    ) -> Result<IpPair, &'static str> {
        let given_v6 = [src, dst]
            .iter()
            .flatten()
            .map(IpAddr::is_ipv6)
            .collect::<Vec<_>>();
        if given_v6.windows(2).any(|w| w[0] != w[1]) {
            return Err("--src-ip and --dst-ip are of different address families");
        }
        let v6 = match given_v6.first() {
            Some(&false) if ipv6 => return Err("--ipv6 wants IPv6 addresses in --src-ip/--dst-ip"),
            Some(&is_v6) => is_v6,
            None => ipv6,
        };
        Ok(match (v6, Self::DEFAULT_V4, Self::DEFAULT_V6) {
            (false, IpPair::V4 { src: s, dst: d }, _) => IpPair::V4 {
                src: src.map_or(s, |a| as_v4(a).unwrap_or(s)),
                dst: dst.map_or(d, |a| as_v4(a).unwrap_or(d)),
            },
            (_, _, IpPair::V6 { src: s, dst: d }) => IpPair::V6 {
                src: src.map_or(s, |a| as_v6(a).unwrap_or(s)),
                dst: dst.map_or(d, |a| as_v6(a).unwrap_or(d)),
            },
            _ => unreachable!("the defaults are of their families"),
        })
    }

    /// Whether this is IPv6.
    pub fn is_v6(&self) -> bool {
        matches!(self, IpPair::V6 { .. })
    }
}

fn as_v4(a: IpAddr) -> Option<Ipv4Addr> {
    match a {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

fn as_v6(a: IpAddr) -> Option<Ipv6Addr> {
    match a {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    }
}

/// The latency stamp in the UDP payload: a magic, a sequence number and the send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The frame's number in its run, from 0.
    pub seq: u64,
    /// When it was sent, `CLOCK_MONOTONIC` nanoseconds.
    pub sent_ns: u64,
}

impl Stamp {
    /// Marks a payload as stamped (and not someone else's UDP to the same port).
    pub const MAGIC: [u8; 2] = *b"xv";
    /// Payload bytes a stamp takes.
    pub const LEN: usize = 18;

    /// Writes the stamp at the start of `payload`.
    ///
    /// # Panics
    /// If `payload` is shorter than [`Stamp::LEN`].
    pub fn write(self, payload: &mut [u8]) {
        payload[..2].copy_from_slice(&Self::MAGIC);
        payload[2..10].copy_from_slice(&self.seq.to_be_bytes());
        payload[10..18].copy_from_slice(&self.sent_ns.to_be_bytes());
    }

    /// Reads a stamp from the start of a UDP payload, if it carries one.
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let bytes = payload.get(..Self::LEN)?;
        if bytes[..2] != Self::MAGIC {
            return None;
        }
        Some(Stamp {
            seq: u64::from_be_bytes(bytes[2..10].try_into().ok()?),
            sent_ns: u64::from_be_bytes(bytes[10..18].try_into().ok()?),
        })
    }
}

/// How flow numbers map to header fields: flow `f` has source port `src_port + f % ports`
/// and adds `f / ports` to the source address (to its last 32 bits for IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flows {
    count: u32,
    ports: u32,
}

impl Flows {
    /// `count` flows starting at source port `src_port`: as many ports as there are flows or
    /// as fit below 65536, then further source addresses.
    ///
    /// # Errors
    /// `count` is 0 or above [`MAX_FLOWS`].
    pub fn new(count: u32, src_port: u16) -> Result<Flows, String> {
        if count == 0 || count > MAX_FLOWS {
            return Err(format!("--flows must be between 1 and {MAX_FLOWS}"));
        }
        let room = 65536 - u32::from(src_port);
        Ok(Flows {
            count,
            ports: count.min(room),
        })
    }

    /// The number of flows.
    pub fn count(self) -> u32 {
        self.count
    }

    /// How many source ports are cycled through.
    pub fn ports(self) -> u32 {
        self.ports
    }

    /// Whether flows also vary the source address.
    pub fn varies_address(self) -> bool {
        self.count > self.ports
    }

    /// (source port offset, source address offset) of flow `f`.
    pub fn split(self, f: u32) -> (u32, u32) {
        (f % self.ports, f / self.ports)
    }
}

/// Everything that is the same in all frames of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSpec {
    /// Ethernet source.
    pub src_mac: EthernetAddress,
    /// Ethernet destination.
    pub dst_mac: EthernetAddress,
    /// IP addresses.
    pub ip: IpPair,
    /// The UDP source port (the first, unless `reply`).
    pub src_port: u16,
    /// The UDP destination port (the first, if `reply`).
    pub dst_port: u16,
    /// Whether flows vary the destination port instead of the source port: the frames are
    /// then the replies of a run with the addresses and ports swapped and the same flows.
    pub reply: bool,
}

/// Offsets of the fields a frame's flow and size change, from the start of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Ethernet + IP + UDP header bytes.
    pub header_len: usize,
    /// The UDP header.
    pub udp: usize,
    /// The last 32 bits of the IP source address.
    pub src_word: usize,
    /// The IP length field (IPv4 total length, IPv6 payload length).
    pub ip_len: usize,
    /// The IPv4 header checksum, if IPv4.
    pub ip_checksum: Option<usize>,
}

impl Layout {
    /// The UDP source port.
    pub fn udp_src_port(&self) -> usize {
        self.udp
    }

    /// The UDP length.
    pub fn udp_len(&self) -> usize {
        self.udp + 4
    }

    /// The UDP checksum.
    pub fn udp_checksum(&self) -> usize {
        self.udp + 6
    }
}

const ETH: usize = ethernet::HEADER_LEN;
const UDP: usize = l4::UDP_HEADER_LEN;

impl FrameSpec {
    /// The port flows count from: the destination port of replies, else the source port.
    pub fn first_flow_port(&self) -> u16 {
        if self.reply {
            self.dst_port
        } else {
            self.src_port
        }
    }

    /// The offset of the UDP port that flows vary (see [`FrameSpec::reply`]).
    pub fn flow_port_offset(&self) -> usize {
        let layout = self.layout();
        if self.reply {
            layout.udp + 2
        } else {
            layout.udp_src_port()
        }
    }

    /// Where the varying fields are.
    pub fn layout(&self) -> Layout {
        match self.ip {
            IpPair::V4 { .. } => Layout {
                header_len: ETH + ipv4::HEADER_LEN + UDP,
                udp: ETH + ipv4::HEADER_LEN,
                src_word: ETH + 12,
                ip_len: ETH + 2,
                ip_checksum: Some(ETH + 10),
            },
            IpPair::V6 { .. } => Layout {
                header_len: ETH + ipv6::HEADER_LEN + UDP,
                udp: ETH + ipv6::HEADER_LEN,
                src_word: ETH + 8 + 12,
                ip_len: ETH + 4,
                ip_checksum: None,
            },
        }
    }

    /// The smallest frame size (FCS included) that holds the headers, and a stamp if
    /// `stamped`.
    pub fn min_frame(&self, stamped: bool) -> u16 {
        let payload = if stamped { Stamp::LEN } else { 0 };
        ((self.layout().header_len + payload + FCS_LEN) as u16).max(MIN_FRAME)
    }

    /// The source address word (last 32 bits) of flow offset `ip_offset`.
    fn src_word(&self, ip_offset: u32) -> u32 {
        let base = match self.ip {
            IpPair::V4 { src, .. } => src.to_bits(),
            IpPair::V6 { src, .. } => src.to_bits() as u32,
        };
        base.wrapping_add(ip_offset)
    }

    /// Writes flow `flow` into `buf` as a complete frame of `buf.len()` bytes (FCS excluded):
    /// headers, a zero payload carrying `stamp` if given, and checksums computed from scratch.
    ///
    /// # Panics
    /// If `buf` cannot hold the headers (and the stamp), or is longer than 65535 bytes.
    pub fn write(&self, buf: &mut [u8], flows: Flows, flow: u32, stamp: Option<Stamp>) {
        let layout = self.layout();
        let (port_offset, ip_offset) = flows.split(flow % flows.count());
        let flow_port = (u32::from(self.first_flow_port()) + port_offset) as u16;
        let (src_port, dst_port) = if self.reply {
            (self.src_port, flow_port)
        } else {
            (flow_port, self.dst_port)
        };
        let udp_len = u16::try_from(buf.len() - layout.udp).expect("frame too long");
        buf[layout.header_len..].fill(0);
        if let Some(stamp) = stamp {
            stamp.write(&mut buf[layout.header_len..]);
        }

        let mut eth = ethernet::Frame::new_unchecked(&mut buf[..]);
        eth.set_dst_addr(self.dst_mac);
        eth.set_src_addr(self.src_mac);
        let src_word = self.src_word(ip_offset);
        let pseudo = match self.ip {
            IpPair::V4 { dst, .. } => {
                eth.set_ethertype(EtherType::IPV4);
                let src = Ipv4Addr::from_bits(src_word);
                ipv4::emit(&mut buf[ETH..], src, dst, Protocol::UDP, udp_len, 64);
                checksum::pseudo_header_v4(src, dst, Protocol::UDP, udp_len)
            }
            IpPair::V6 { src, dst } => {
                eth.set_ethertype(EtherType::IPV6);
                let src =
                    Ipv6Addr::from_bits((src.to_bits() & !0xffff_ffff) | u128::from(src_word));
                ipv6::emit(&mut buf[ETH..], src, dst, Protocol::UDP, udp_len, 64);
                checksum::pseudo_header_v6(src, dst, Protocol::UDP, udp_len.into())
            }
        };
        let segment = &mut buf[layout.udp..];
        l4::Header::new_checked(&mut segment[..], Protocol::UDP)
            .expect("the frame holds a UDP header")
            .set_ports(src_port, dst_port);
        segment[4..6].copy_from_slice(&udp_len.to_be_bytes());
        checksum::fill(segment, pseudo, 6, true);
    }

    /// The checksum constants of the XDP program that varies flows and sizes in the kernel
    /// (see [`crate::program::live_tx`]): the sums over everything that does not vary, with
    /// the varying fields counted as zero.
    ///
    /// `template` is a frame of this spec written by [`FrameSpec::write`] for flow 0 without a
    /// stamp; `vary_address` and `vary_len` say which fields the program writes.
    pub fn live_sums(&self, template: &[u8], vary_address: bool, vary_len: bool) -> LiveSums {
        let layout = self.layout();
        let mut frame = template.to_vec();
        let zero = |frame: &mut Vec<u8>, at: usize, len: usize| frame[at..at + len].fill(0);
        zero(&mut frame, self.flow_port_offset(), 2);
        zero(&mut frame, layout.udp_checksum(), 2);
        if vary_address {
            zero(&mut frame, layout.src_word, 4);
        }
        if vary_len {
            zero(&mut frame, layout.udp_len(), 2);
            zero(&mut frame, layout.ip_len, 2);
        }
        if let Some(at) = layout.ip_checksum {
            zero(&mut frame, at, 2);
        }
        // The pseudo-header: addresses, protocol and (unless it varies) the UDP length.
        let (addresses, ip_header) = match self.ip {
            IpPair::V4 { .. } => (&frame[ETH + 12..ETH + 20], Some(&frame[ETH..layout.udp])),
            IpPair::V6 { .. } => (&frame[ETH + 8..ETH + 40], None),
        };
        let len_word = if vary_len {
            0
        } else {
            (frame.len() - layout.udp) as u32
        };
        let pseudo = checksum::sum(addresses) + u32::from(Protocol::UDP) + len_word;
        let udp = pseudo + checksum::sum(&frame[layout.udp..]);
        LiveSums {
            udp: checksum::fold(udp),
            ip: ip_header.map(|h| checksum::fold(checksum::sum(h))),
        }
    }
}

/// Partial ones' complement sums for the live-frames program, folded to 16 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveSums {
    /// UDP checksum sum over the pseudo-header and segment, without the port flows vary, the
    /// varying address word and the varying lengths.
    pub udp: u16,
    /// IPv4 header sum without the checksum, the varying address word and the varying length.
    pub ip: Option<u16>,
}

/// Whether a frame's IPv4 header checksum and UDP checksum hold; `None` for a frame that is
/// not Ethernet + IP + UDP. A zero IPv4 UDP checksum ("none") counts as holding.
pub fn checksums_hold(frame: &[u8]) -> Option<bool> {
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    match eth.payload_ethertype() {
        EtherType::IPV4 => {
            let ip = ipv4::Packet::new_checked(eth.payload()).ok()?;
            if ip.protocol() != Protocol::UDP || ip.is_fragment() {
                return None;
            }
            let udp = ip.payload();
            l4::Header::new_checked(udp, Protocol::UDP).ok()?;
            let pseudo = checksum::pseudo_header_v4(
                ip.src_addr(),
                ip.dst_addr(),
                Protocol::UDP,
                udp.len() as u16,
            );
            let udp_ok = udp[6..8] == [0, 0] || checksum::verify(udp, pseudo);
            Some(ip.verify_checksum() && udp_ok)
        }
        EtherType::IPV6 => {
            let ip = ipv6::Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != Protocol::UDP {
                return None;
            }
            let udp = ip.payload();
            l4::Header::new_checked(udp, Protocol::UDP).ok()?;
            let pseudo = checksum::pseudo_header_v6(
                ip.src_addr(),
                ip.dst_addr(),
                Protocol::UDP,
                udp.len() as u32,
            );
            Some(udp[6..8] != [0, 0] && checksum::verify(udp, pseudo))
        }
        _ => None,
    }
}

/// The parts of a received UDP frame that the counter looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpView<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// The UDP payload.
    pub payload: &'a [u8],
}

/// Reads an Ethernet + IPv4/IPv6 + UDP frame; `None` for anything else.
pub fn parse_udp(frame: &[u8]) -> Option<UdpView<'_>> {
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    let l3 = &frame[eth.header_len()..];
    let (src, udp) = match eth.payload_ethertype() {
        EtherType::IPV4 => {
            let ip = ipv4::Packet::new_checked(l3).ok()?;
            if ip.protocol() != Protocol::UDP || ip.is_later_fragment() {
                return None;
            }
            (
                IpAddr::V4(ip.src_addr()),
                &l3[ip.header_len()..usize::from(ip.total_len())],
            )
        }
        EtherType::IPV6 => {
            let ip = ipv6::Packet::new_checked(l3).ok()?;
            if ip.next_header() != Protocol::UDP {
                return None;
            }
            let end = ipv6::HEADER_LEN + usize::from(ip.payload_len());
            (IpAddr::V6(ip.src_addr()), &l3[ipv6::HEADER_LEN..end])
        }
        _ => return None,
    };
    let header = l4::Header::new_checked(udp, Protocol::UDP).ok()?;
    Some(UdpView {
        src,
        src_port: header.src_port(),
        dst_port: header.dst_port(),
        payload: &udp[UDP..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ip: IpPair) -> FrameSpec {
        FrameSpec {
            src_mac: "02:00:00:00:00:01".parse().unwrap(),
            dst_mac: "02:00:00:00:00:02".parse().unwrap(),
            ip,
            src_port: DEFAULT_SRC_PORT,
            dst_port: DEFAULT_DST_PORT,
            reply: false,
        }
    }

    #[test]
    fn sizes_parse_and_cycle() {
        let one: SizeRange = "64".parse().unwrap();
        assert_eq!((one.min(), one.max(), one.count()), (64, 64, 1));
        assert_eq!(one.buffer_len(7), 60);
        let range: SizeRange = "64..1518".parse().unwrap();
        assert_eq!(range.count(), 1455);
        assert_eq!(range.buffer_len(0), 60);
        assert_eq!(range.buffer_len(1454), 1514);
        assert_eq!(range.buffer_len(1455), 60);
        assert_eq!("100..=200".parse::<SizeRange>().unwrap().max(), 200);
        assert_eq!("63".parse::<SizeRange>(), Err(BadSize::OutOfRange(63)));
        assert_eq!(
            "64..9000".parse::<SizeRange>(),
            Err(BadSize::OutOfRange(9000))
        );
        assert_eq!(
            "200..100".parse::<SizeRange>(),
            Err(BadSize::Empty(200, 100))
        );
        assert_eq!("big".parse::<SizeRange>(), Err(BadSize::Syntax));
        assert_eq!(range.to_string(), "64..1518");
    }

    #[test]
    fn address_families_resolve() {
        assert_eq!(IpPair::resolve(None, None, false), Ok(IpPair::DEFAULT_V4));
        assert_eq!(IpPair::resolve(None, None, true), Ok(IpPair::DEFAULT_V6));
        let v6: IpAddr = "fd00::9".parse().unwrap();
        let v4: IpAddr = "10.1.1.1".parse().unwrap();
        assert!(IpPair::resolve(Some(v6), None, false).unwrap().is_v6());
        assert!(IpPair::resolve(Some(v6), Some(v4), false).is_err());
        assert!(IpPair::resolve(Some(v4), None, true).is_err());
        assert_eq!(
            IpPair::resolve(Some(v4), None, false),
            Ok(IpPair::V4 {
                src: Ipv4Addr::new(10, 1, 1, 1),
                dst: Ipv4Addr::new(198, 18, 0, 2)
            })
        );
    }

    #[test]
    fn flows_split_ports_then_addresses() {
        let small = Flows::new(100, 1024).unwrap();
        assert!(!small.varies_address());
        assert_eq!(small.split(99), (99, 0));
        let big = Flows::new(100_000, 1024).unwrap();
        assert_eq!(big.ports(), 64512);
        assert!(big.varies_address());
        assert_eq!(big.split(64512 + 5), (5, 1));
        assert!(Flows::new(0, 1).is_err());
        assert!(Flows::new(MAX_FLOWS + 1, 1).is_err());
    }

    #[test]
    fn written_frames_are_valid_for_every_size_and_family() {
        for ip in [IpPair::DEFAULT_V4, IpPair::DEFAULT_V6] {
            let spec = spec(ip);
            let flows = Flows::new(70_000, 1024).unwrap();
            for len in [spec.min_frame(true) as usize - FCS_LEN, 100, 1514] {
                for flow in [0, 1, 64511, 64512, 69_999] {
                    let mut buf = vec![0xaa; len];
                    let stamp = Stamp {
                        seq: u64::from(flow),
                        sent_ns: 123_456_789,
                    };
                    spec.write(&mut buf, flows, flow, Some(stamp));
                    assert_eq!(
                        checksums_hold(&buf),
                        Some(true),
                        "{ip:?} len {len} flow {flow}"
                    );
                    let udp = parse_udp(&buf).unwrap();
                    let (port, _) = flows.split(flow);
                    assert_eq!(udp.src_port, 1024 + port as u16);
                    assert_eq!(udp.dst_port, 9);
                    assert_eq!(Stamp::read(udp.payload), Some(stamp));
                    assert_eq!(udp.payload.len(), len - spec.layout().header_len);
                }
            }
        }
    }

    #[test]
    fn replies_vary_the_destination_port() {
        let forward = spec(IpPair::DEFAULT_V4);
        let IpPair::V4 { src, dst } = forward.ip else {
            unreachable!()
        };
        let reply = FrameSpec {
            src_mac: forward.dst_mac,
            dst_mac: forward.src_mac,
            ip: IpPair::V4 { src: dst, dst: src },
            src_port: forward.dst_port,
            dst_port: forward.src_port,
            reply: true,
        };
        assert_eq!(reply.first_flow_port(), DEFAULT_SRC_PORT);
        assert_eq!(reply.flow_port_offset(), reply.layout().udp + 2);
        let flows = Flows::new(1000, reply.first_flow_port()).unwrap();
        for flow in [0, 1, 999] {
            let mut there = vec![0; 60];
            let mut back = vec![0; 60];
            forward.write(&mut there, flows, flow, None);
            reply.write(&mut back, flows, flow, None);
            assert_eq!(checksums_hold(&back), Some(true));
            let (there, back) = (parse_udp(&there).unwrap(), parse_udp(&back).unwrap());
            assert_eq!(
                (back.src, back.src_port, back.dst_port),
                (IpAddr::V4(dst), there.dst_port, there.src_port),
                "flow {flow}"
            );
        }
    }

    #[test]
    fn minimum_frames() {
        assert_eq!(spec(IpPair::DEFAULT_V4).min_frame(false), 64);
        assert_eq!(spec(IpPair::DEFAULT_V4).min_frame(true), 64);
        assert_eq!(spec(IpPair::DEFAULT_V6).min_frame(false), 66);
        assert_eq!(spec(IpPair::DEFAULT_V6).min_frame(true), 84);
    }

    #[test]
    fn foreign_frames_are_not_udp() {
        assert_eq!(parse_udp(&[0u8; 10]), None);
        assert_eq!(checksums_hold(&[0u8; 60]), None);
        let mut buf = vec![0u8; 60];
        spec(IpPair::DEFAULT_V4).write(&mut buf, Flows::new(1, 1024).unwrap(), 0, None);
        assert_eq!(Stamp::read(parse_udp(&buf).unwrap().payload), None);
        buf[30] ^= 1; // destination address: the header checksum breaks
        assert_eq!(checksums_hold(&buf), Some(false));
    }
}
