//! What a run tells: a progress line every second, and a summary at the end (as text, or as
//! JSON with `--json`).
//!
//! Bit rates count Ethernet frames with their FCS, as `--size` does, and without preamble or
//! inter-frame gap.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

/// One progress line: the rate over the last interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Time since the run started.
    pub elapsed: Duration,
    /// Packets per second over the interval.
    pub pps: f64,
    /// Bits per second over the interval.
    pub bits_per_s: f64,
    /// Packets so far.
    pub total: u64,
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:6.1} s: {:>10.0} pps {:>10.1} Mbit/s {:>12} total",
            self.elapsed.as_secs_f64(),
            self.pps,
            self.bits_per_s / 1e6,
            self.total
        )
    }
}

/// Turns running totals into a [`Sample`] once per interval.
#[derive(Debug)]
pub struct Meter {
    start: Instant,
    interval: Duration,
    last_at: Instant,
    last_packets: u64,
    last_bytes: u64,
}

impl Meter {
    /// A meter for a run that started at `start`, sampling every `interval`.
    pub fn new(start: Instant, interval: Duration) -> Meter {
        Meter {
            start,
            interval,
            last_at: start,
            last_packets: 0,
            last_bytes: 0,
        }
    }

    /// A sample if an interval has passed since the last one. `bytes` counts frames with FCS.
    pub fn tick(&mut self, now: Instant, packets: u64, bytes: u64) -> Option<Sample> {
        let span = now.saturating_duration_since(self.last_at);
        if span < self.interval {
            return None;
        }
        let secs = span.as_secs_f64();
        let sample = Sample {
            elapsed: now.saturating_duration_since(self.start),
            pps: packets.saturating_sub(self.last_packets) as f64 / secs,
            bits_per_s: bytes.saturating_sub(self.last_bytes) as f64 * 8.0 / secs,
            total: packets,
        };
        self.last_at = now;
        self.last_packets = packets;
        self.last_bytes = bytes;
        Some(sample)
    }
}

fn per_second(count: u64, secs: f64) -> f64 {
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// The summary of `send`.
#[derive(Debug, Clone, Serialize)]
pub struct SendReport {
    /// Always "send".
    pub command: &'static str,
    /// "live-frames" or "afxdp".
    pub mode: &'static str,
    /// The interface sent from.
    pub dev: String,
    /// Frames sent (handed to the interface).
    pub sent_packets: u64,
    /// Their bytes, FCS included.
    pub sent_bytes: u64,
    /// Seconds from the first frame to the end of the run.
    pub duration_s: f64,
    /// Frames per second.
    pub pps: f64,
    /// Bits per second, FCS included.
    pub bits_per_s: f64,
    /// Flows cycled through.
    pub flows: u32,
    /// The smallest frame size, FCS included.
    pub size_min: u16,
    /// The largest frame size, FCS included.
    pub size_max: u16,
    /// The target rate, if not `max`.
    pub rate_pps: Option<f64>,
    /// Whether frames carried latency stamps.
    pub latency: bool,
    /// Whether Ctrl-C (or SIGTERM) ended the run early.
    pub interrupted: bool,
    /// Growth of the interface's `tx_packets` in /proc/net/dev during the run.
    pub device_tx_packets: Option<u64>,
    /// Growth of the interface's `tx_dropped`: frames the interface could not pass on.
    pub device_tx_dropped: Option<u64>,
}

impl SendReport {
    /// Fills in the rates from the counts and duration.
    pub(crate) fn with_rates(mut self) -> SendReport {
        self.pps = per_second(self.sent_packets, self.duration_s);
        self.bits_per_s = per_second(self.sent_bytes * 8, self.duration_s);
        self
    }
}

impl fmt::Display for SendReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sizes = if self.size_min == self.size_max {
            format!("{} bytes", self.size_min)
        } else {
            format!("{}..{} bytes", self.size_min, self.size_max)
        };
        writeln!(
            f,
            "sent {} packets in {:.3} s: {:.0} pps, {:.1} Mbit/s ({}, {sizes}, {} flow{}{})",
            self.sent_packets,
            self.duration_s,
            self.pps,
            self.bits_per_s / 1e6,
            self.mode,
            self.flows,
            if self.flows == 1 { "" } else { "s" },
            if self.interrupted {
                ", interrupted"
            } else {
                ""
            },
        )?;
        if let (Some(tx), Some(dropped)) = (self.device_tx_packets, self.device_tx_dropped) {
            writeln!(f, "{}: tx_packets +{tx}, tx_dropped +{dropped}", self.dev)?;
        }
        Ok(())
    }
}

/// Latency percentiles, in nanoseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencyReport {
    /// Stamped frames measured.
    pub samples: u64,
    /// Smallest delay.
    pub min_ns: u64,
    /// Mean delay.
    pub mean_ns: f64,
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Largest delay.
    pub max_ns: u64,
    /// Sequence numbers missing between the first and the highest seen.
    pub lost: u64,
    /// Frames that came after a higher sequence number.
    pub reordered: u64,
}

/// What the AF_XDP receiver checked in each frame.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InspectReport {
    /// Ethernet + IP + UDP frames.
    pub udp_packets: u64,
    /// Anything else (neighbor discovery, say).
    pub other_packets: u64,
    /// UDP frames whose IPv4 header or UDP checksum did not hold.
    pub bad_checksums: u64,
    /// Distinct (source address, source port, destination port) triples among the UDP frames
    /// (counted up to a million).
    pub distinct_flows: u64,
    /// The smallest UDP frame, FCS included.
    pub size_min: Option<u16>,
    /// The largest UDP frame, FCS included.
    pub size_max: Option<u16>,
}

/// The summary of `count`.
#[derive(Debug, Clone, Serialize)]
pub struct CountReport {
    /// Always "count".
    pub command: &'static str,
    /// "xdp" (count and drop in XDP), "tc" (count and drop at tcx ingress) or "afxdp"
    /// (receive and inspect every frame).
    pub mode: &'static str,
    /// The interface counted on.
    pub dev: String,
    /// Frames received.
    pub received_packets: u64,
    /// Their bytes, FCS included.
    pub received_bytes: u64,
    /// Seconds the counter ran.
    pub duration_s: f64,
    /// Seconds from the first frame to the last (the rates are over this span).
    pub active_s: f64,
    /// Frames per second while frames came.
    pub pps: f64,
    /// Bits per second while frames came, FCS included.
    pub bits_per_s: f64,
    /// Per-frame checks, in afxdp mode.
    pub inspect: Option<InspectReport>,
    /// Latency of stamped frames, in afxdp mode when any came.
    pub latency: Option<LatencyReport>,
    /// Whether Ctrl-C (or SIGTERM) ended the run.
    pub interrupted: bool,
}

impl CountReport {
    /// Fills in the rates from the counts and the active span.
    pub(crate) fn with_rates(mut self) -> CountReport {
        self.pps = per_second(self.received_packets, self.active_s);
        self.bits_per_s = per_second(self.received_bytes * 8, self.active_s);
        self
    }
}

impl fmt::Display for CountReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "received {} packets ({} bytes) on {} in {:.3} s; while traffic came ({:.3} s): \
             {:.0} pps, {:.1} Mbit/s",
            self.received_packets,
            self.received_bytes,
            self.dev,
            self.duration_s,
            self.active_s,
            self.pps,
            self.bits_per_s / 1e6
        )?;
        if let Some(i) = &self.inspect {
            writeln!(
                f,
                "udp {} other {} bad checksums {} distinct flows {} sizes {}..{}",
                i.udp_packets,
                i.other_packets,
                i.bad_checksums,
                i.distinct_flows,
                i.size_min.unwrap_or(0),
                i.size_max.unwrap_or(0)
            )?;
        }
        if let Some(l) = &self.latency {
            let us = |ns: u64| ns as f64 / 1e3;
            writeln!(
                f,
                "latency of {} stamped frames (us): min {:.1} p50 {:.1} p90 {:.1} p99 {:.1} \
                 p99.9 {:.1} max {:.1} mean {:.1}; lost {} reordered {}",
                l.samples,
                us(l.min_ns),
                us(l.p50_ns),
                us(l.p90_ns),
                us(l.p99_ns),
                us(l.p999_ns),
                us(l.max_ns),
                l.mean_ns / 1e3,
                l.lost,
                l.reordered
            )?;
        }
        Ok(())
    }
}

/// Counts and round-trip percentiles, µs (`None` when no reply came in time).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RttSummary {
    /// Requests sent.
    pub sent: u64,
    /// Replies within the timeout: the round trips measured.
    pub received: u64,
    /// Replies after the timeout (not in the percentiles).
    pub late: u64,
    /// Requests no reply came for.
    pub lost: u64,
    /// Replies seen more than once.
    pub duplicates: u64,
    /// Datagrams that were no reply of this run.
    pub strays: u64,
    /// Requests without a reply in time, percent of those sent.
    pub loss_pct: f64,
    /// Shortest round trip.
    pub min_us: Option<f64>,
    /// Mean round trip.
    pub mean_us: Option<f64>,
    /// Median.
    pub p50_us: Option<f64>,
    /// 90th percentile.
    pub p90_us: Option<f64>,
    /// 99th percentile.
    pub p99_us: Option<f64>,
    /// 99.9th percentile.
    pub p999_us: Option<f64>,
    /// Longest round trip.
    pub max_us: Option<f64>,
}

/// The summary of `rtt --client`.
#[derive(Debug, Clone, Serialize)]
pub struct RttClientReport {
    /// Always "rtt".
    pub command: &'static str,
    /// Always "client".
    pub role: &'static str,
    /// The echo server.
    pub server: String,
    /// The target rate.
    pub rate_pps: f64,
    /// Seconds of sending.
    pub duration_s: f64,
    /// The reply timeout, ms.
    pub timeout_ms: f64,
    /// Requests the socket refused to send (no route, no neighbor, an ICMP error of an
    /// earlier one): counted in `sent`, and lost.
    pub send_errors: u64,
    /// Counts and percentiles.
    #[serde(flatten)]
    pub summary: RttSummary,
    /// Whether Ctrl-C (or SIGTERM) ended the run early.
    pub interrupted: bool,
}

impl fmt::Display for RttClientReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.summary;
        writeln!(
            f,
            "{} requests to {} in {:.3} s: {} replies, {} late (> {} ms), {} lost ({:.3} %), \
             {} duplicates, {} send errors{}",
            s.sent,
            self.server,
            self.duration_s,
            s.received,
            s.late,
            self.timeout_ms,
            s.lost,
            s.loss_pct,
            s.duplicates,
            self.send_errors,
            if self.interrupted {
                ", interrupted"
            } else {
                ""
            }
        )?;
        if let (Some(min), Some(p50), Some(p90), Some(p99), Some(p999), Some(max), Some(mean)) = (
            s.min_us, s.p50_us, s.p90_us, s.p99_us, s.p999_us, s.max_us, s.mean_us,
        ) {
            writeln!(
                f,
                "round trip (us): min {min:.1} p50 {p50:.1} p90 {p90:.1} p99 {p99:.1} \
                 p99.9 {p999:.1} max {max:.1} mean {mean:.1}"
            )?;
        }
        Ok(())
    }
}

/// The summary of `rtt --server`.
#[derive(Debug, Clone, Serialize)]
pub struct RttServerReport {
    /// Always "rtt".
    pub command: &'static str,
    /// Always "server".
    pub role: &'static str,
    /// The address served.
    pub addr: String,
    /// Datagrams received.
    pub requests: u64,
    /// Datagrams echoed.
    pub replies: u64,
    /// Echoes the socket refused to send.
    pub send_errors: u64,
    /// Seconds served.
    pub duration_s: f64,
    /// Whether Ctrl-C (or SIGTERM) ended it.
    pub interrupted: bool,
}

impl fmt::Display for RttServerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "echoed {} of {} datagrams on {} in {:.3} s ({} send errors)",
            self.replies, self.requests, self.addr, self.duration_s, self.send_errors
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_samples_once_per_interval() {
        let t0 = Instant::now();
        let mut m = Meter::new(t0, Duration::from_secs(1));
        assert_eq!(m.tick(t0 + Duration::from_millis(500), 10, 640), None);
        let s = m.tick(t0 + Duration::from_secs(1), 1000, 64_000).unwrap();
        assert_eq!(s.pps, 1000.0);
        assert_eq!(s.bits_per_s, 512_000.0);
        assert_eq!(s.total, 1000);
        let s = m.tick(t0 + Duration::from_secs(3), 3000, 128_000).unwrap();
        assert_eq!(s.pps, 1000.0);
        assert_eq!(s.elapsed, Duration::from_secs(3));
    }
}
