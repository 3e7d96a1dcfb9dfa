//! The receiver's per-frame checks: checksums, flows, sizes, and the latency and sequence of
//! stamped frames. Sans-IO: frames and their arrival times are passed in.

use std::collections::HashSet;
use std::net::IpAddr;

use hdrhistogram::Histogram;

use crate::packet::{FCS_LEN, Stamp, checksums_hold, parse_udp};
use crate::report::{InspectReport, LatencyReport};

/// Distinct flows are counted up to this many.
const FLOW_CAP: usize = 1 << 20;
/// The largest delay the histogram holds (longer ones are clamped): one hour.
const MAX_DELAY_NS: u64 = 3_600_000_000_000;

/// Sequence numbers seen: how many, the first, the highest, and how many came late.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Sequence {
    first: Option<u64>,
    highest: u64,
    seen: u64,
    late: u64,
}

impl Sequence {
    fn observe(&mut self, seq: u64) {
        self.seen += 1;
        match self.first {
            None => {
                self.first = Some(seq);
                self.highest = seq;
            }
            Some(_) if seq > self.highest => self.highest = seq,
            Some(_) => self.late += 1,
        }
    }

    /// Numbers missing between the first and the highest seen.
    fn lost(&self) -> u64 {
        self.first.map_or(0, |first| {
            (self.highest - first.min(self.highest) + 1).saturating_sub(self.seen)
        })
    }
}

/// Checks every frame it is shown and keeps the tallies of [`InspectReport`] and
/// [`LatencyReport`].
#[derive(Debug)]
pub struct Inspector {
    udp: u64,
    other: u64,
    bad_checksums: u64,
    flows: HashSet<(IpAddr, u16, u16)>,
    size_min: Option<u16>,
    size_max: Option<u16>,
    delays: Histogram<u64>,
    sequence: Sequence,
}

impl Default for Inspector {
    fn default() -> Self {
        Inspector::new()
    }
}

impl Inspector {
    /// An inspector that has seen nothing.
    pub fn new() -> Inspector {
        Inspector {
            udp: 0,
            other: 0,
            bad_checksums: 0,
            flows: HashSet::new(),
            size_min: None,
            size_max: None,
            delays: Histogram::new_with_bounds(1, MAX_DELAY_NS, 3)
                .expect("static histogram bounds are valid"),
            sequence: Sequence::default(),
        }
    }

    /// Looks at one frame (FCS excluded) that arrived at `now_ns` (`CLOCK_MONOTONIC`).
    pub fn observe(&mut self, frame: &[u8], now_ns: u64) {
        let Some(udp) = parse_udp(frame) else {
            self.other += 1;
            return;
        };
        self.udp += 1;
        if checksums_hold(frame) != Some(true) {
            self.bad_checksums += 1;
        }
        if self.flows.len() < FLOW_CAP {
            self.flows.insert((udp.src, udp.src_port, udp.dst_port));
        }
        let size = u16::try_from(frame.len() + FCS_LEN).unwrap_or(u16::MAX);
        self.size_min = Some(self.size_min.map_or(size, |s| s.min(size)));
        self.size_max = Some(self.size_max.map_or(size, |s| s.max(size)));
        if let Some(stamp) = Stamp::read(udp.payload) {
            self.sequence.observe(stamp.seq);
            let delay = now_ns.saturating_sub(stamp.sent_ns).clamp(1, MAX_DELAY_NS);
            self.delays.saturating_record(delay);
        }
    }

    /// The tallies so far.
    pub fn inspect_report(&self) -> InspectReport {
        InspectReport {
            udp_packets: self.udp,
            other_packets: self.other,
            bad_checksums: self.bad_checksums,
            distinct_flows: self.flows.len() as u64,
            size_min: self.size_min,
            size_max: self.size_max,
        }
    }

    /// The latency of stamped frames, if any came.
    pub fn latency_report(&self) -> Option<LatencyReport> {
        let h = &self.delays;
        (!h.is_empty()).then(|| LatencyReport {
            samples: h.len(),
            min_ns: h.min(),
            mean_ns: h.mean(),
            p50_ns: h.value_at_quantile(0.5),
            p90_ns: h.value_at_quantile(0.9),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
            lost: self.sequence.lost(),
            reordered: self.sequence.late,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Flows, FrameSpec, IpPair};

    fn spec() -> FrameSpec {
        FrameSpec {
            src_mac: "02:00:00:00:00:01".parse().unwrap(),
            dst_mac: "02:00:00:00:00:02".parse().unwrap(),
            ip: IpPair::DEFAULT_V4,
            src_port: 1024,
            dst_port: 9,
            reply: false,
        }
    }

    #[test]
    fn sequence_counts_gaps_and_late_frames() {
        let mut s = Sequence::default();
        for seq in [0, 1, 2, 5, 4, 6] {
            s.observe(seq);
        }
        assert_eq!(s.lost(), 1); // 3
        assert_eq!(s.late, 1); // 4 after 5
        assert_eq!(Sequence::default().lost(), 0);
    }

    #[test]
    fn tallies_frames_and_delays() {
        let spec = spec();
        let flows = Flows::new(10, 1024).unwrap();
        let mut inspector = Inspector::new();
        for seq in 0..1000u64 {
            if seq == 500 {
                continue;
            }
            let mut frame = vec![0; 60 + (seq % 3) as usize];
            let stamp = Stamp {
                seq,
                sent_ns: 1_000_000 + seq * 1000,
            };
            spec.write(&mut frame, flows, (seq % 10) as u32, Some(stamp));
            inspector.observe(&frame, stamp.sent_ns + 20_000 + seq);
        }
        let mut broken = vec![0; 60];
        spec.write(&mut broken, flows, 0, None);
        broken[40] ^= 0xff;
        inspector.observe(&broken, 0);
        inspector.observe(&[0u8; 60], 0);

        let i = inspector.inspect_report();
        assert_eq!(i.udp_packets, 1000);
        assert_eq!(i.other_packets, 1);
        assert_eq!(i.bad_checksums, 1);
        assert_eq!(i.distinct_flows, 10);
        assert_eq!((i.size_min, i.size_max), (Some(64), Some(66)));
        let l = inspector.latency_report().unwrap();
        assert_eq!(l.samples, 999);
        assert_eq!(l.lost, 1);
        assert_eq!(l.reordered, 0);
        assert!(l.min_ns >= 20_000 && l.max_ns <= 21_100, "{l:?}");
        assert!(l.p50_ns >= 20_400 && l.p50_ns <= 20_600, "{l:?}");
    }
}
