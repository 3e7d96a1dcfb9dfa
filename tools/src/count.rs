//! `xvs-pktgen count`: a sink that counts what arrives on an interface, in XDP (fast, counts
//! only), at tcx ingress (counts every skb, those redirected into the interface by
//! `bpf_redirect_peer` included) or through AF_XDP (checks every frame and measures the
//! latency of stamped ones).

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use xvs_sys::bpf::{self, Map, MapType, TcxLink, XdpLink};

use crate::afxdp::XskReceiver;
use crate::error::Error;
use crate::host;
use crate::inspect::Inspector;
use crate::packet::FCS_LEN;
use crate::program::{self, counters};
use crate::report::{CountReport, Meter, Sample};

/// How to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountMode {
    /// An XDP program counts per CPU and drops: as fast as the kernel goes, but blind to
    /// packets that reach the interface without its NAPI (a peer's `bpf_redirect_peer`).
    Xdp,
    /// A tc program at tcx ingress counts per CPU (a GSO skb as its segments) and drops:
    /// every packet the stack would receive, at the cost of an skb each.
    Tc,
    /// An AF_XDP socket receives every frame, which is checked (checksums, flows, sizes) and,
    /// if stamped, timed.
    Inspect,
}

/// Where to count, how, and for how long.
#[derive(Debug, Clone)]
pub struct CountConfig {
    /// The interface.
    pub dev: String,
    /// How long to count; until `stop` if not given.
    pub duration: Option<Duration>,
    /// XDP or tc counting, or AF_XDP inspection.
    pub mode: CountMode,
}

/// How often the XDP counters are read, and the length of the intervals [`Activity`] keeps.
const SAMPLE: Duration = Duration::from_millis(10);

/// When traffic came, from the counts seen at intervals of about [`SAMPLE`].
///
/// The span runs from the start of the first interval to the end of the last one whose rate
/// reached a twentieth of the busiest interval's: the few frames a kernel sends on its own
/// (IPv6 neighbor and router solicitations, say) before or after a run do not stretch it.
#[derive(Debug)]
struct Activity {
    last_at: Instant,
    last_total: u64,
    /// (start, end, frames) of each interval in which frames came.
    busy: Vec<(Instant, Instant, u64)>,
}

impl Activity {
    fn new(start: Instant) -> Activity {
        Activity {
            last_at: start,
            last_total: 0,
            busy: Vec::new(),
        }
    }

    /// Records that `total` frames had come by `now`.
    fn observe(&mut self, now: Instant, total: u64) {
        if now.saturating_duration_since(self.last_at) < SAMPLE {
            return;
        }
        if total > self.last_total {
            self.busy.push((self.last_at, now, total - self.last_total));
        }
        self.last_at = now;
        self.last_total = total;
    }

    fn span(&self) -> Duration {
        let rate = |&(from, to, n): &(Instant, Instant, u64)| {
            n as f64 / to.saturating_duration_since(from).as_secs_f64().max(1e-6)
        };
        let peak = self.busy.iter().map(rate).fold(0.0, f64::max);
        let busy = |i: &&(Instant, Instant, u64)| rate(i) >= peak / 20.0;
        match (
            self.busy.iter().find(busy),
            self.busy.iter().rev().find(busy),
        ) {
            (Some(first), Some(last)) => last.1.saturating_duration_since(first.0),
            _ => Duration::ZERO,
        }
    }
}

/// Counts as `config` says until its duration ends or `stop` is set, calling `progress` every
/// second and `notice` once the program is attached (frames sent from then on are counted).
///
/// # Errors
/// No such device, not root, XDP attach refused, or a failing system call.
pub fn run(
    config: &CountConfig,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(&Sample),
    notice: &mut dyn FnMut(&str),
) -> Result<CountReport, Error> {
    let ifindex = host::ifindex(&config.dev)?;
    host::check_privileges()?;
    let mut report = CountReport {
        command: "count",
        mode: "xdp",
        dev: config.dev.clone(),
        received_packets: 0,
        received_bytes: 0,
        duration_s: 0.0,
        active_s: 0.0,
        pps: 0.0,
        bits_per_s: 0.0,
        inspect: None,
        latency: None,
        interrupted: false,
    };
    let start;
    let mut activity;
    match config.mode {
        CountMode::Xdp | CountMode::Tc => {
            let map = Map::create(MapType::PercpuArray, 4, counters::LEN, 1, 0, "pktgen_count")
                .map_err(Error::sys("creating the counter map"))?;
            let sink = SinkLink::attach(config.mode, &config.dev, ifindex, &map)?;
            report.mode = sink.mode();
            notice(&format!(
                "counting on {} ({}); Ctrl-C to stop",
                config.dev,
                sink.describe()
            ));
            start = Instant::now();
            activity = Activity::new(start);
            let mut meter = Meter::new(start, Duration::from_secs(1));
            report.interrupted = loop {
                let stopped = stop.load(Ordering::Relaxed);
                let now = Instant::now();
                let (packets, bytes) = read_counters(&map)?;
                activity.observe(now, packets);
                (report.received_packets, report.received_bytes) = (packets, bytes);
                if let Some(sample) = meter.tick(now, packets, bytes) {
                    progress(&sample);
                }
                if stopped || config.duration.is_some_and(|d| now >= start + d) {
                    break stopped;
                }
                std::thread::sleep(SAMPLE);
            };
            drop(sink);
        }
        CountMode::Inspect => {
            report.mode = "afxdp";
            let mut receiver = XskReceiver::open(&config.dev, ifindex)?;
            notice(&format!(
                "receiving on {} through AF_XDP (XDP {} mode); Ctrl-C to stop",
                config.dev,
                receiver.mode().name()
            ));
            let mut inspector = Inspector::new();
            start = Instant::now();
            activity = Activity::new(start);
            let mut meter = Meter::new(start, Duration::from_secs(1));
            let (mut packets, mut bytes) = (0u64, 0u64);
            report.interrupted = loop {
                let stopped = stop.load(Ordering::Relaxed);
                receiver.poll(100, &mut |frame, now_ns| {
                    inspector.observe(frame, now_ns);
                    packets += 1;
                    bytes += (frame.len() + FCS_LEN) as u64;
                })?;
                let now = Instant::now();
                activity.observe(now, packets);
                if let Some(sample) = meter.tick(now, packets, bytes) {
                    progress(&sample);
                }
                if stopped || config.duration.is_some_and(|d| now >= start + d) {
                    break stopped;
                }
            };
            drop(receiver);
            (report.received_packets, report.received_bytes) = (packets, bytes);
            report.inspect = Some(inspector.inspect_report());
            report.latency = inspector.latency_report();
        }
    }
    report.duration_s = start.elapsed().as_secs_f64();
    report.active_s = activity.span().as_secs_f64();
    Ok(report.with_rates())
}

/// The counting program, attached where `mode` says; dropping it detaches it.
#[derive(Debug)]
enum SinkLink {
    Xdp(XdpLink),
    /// Held for its drop, which detaches the program.
    Tc {
        _link: TcxLink,
    },
}

impl SinkLink {
    fn attach(mode: CountMode, dev: &str, ifindex: u32, map: &Map) -> Result<SinkLink, Error> {
        Ok(match mode {
            CountMode::Tc => {
                let prog = bpf::load_sched_cls(&program::count_shot(map.as_fd()), "pktgen_count")
                    .map_err(Error::tc_program(dev))?;
                SinkLink::Tc {
                    _link: TcxLink::attach(prog.as_fd(), ifindex, dev)
                        .map_err(Error::tc_program(dev))?,
                }
            }
            CountMode::Xdp | CountMode::Inspect => {
                let prog = bpf::load_xdp(&program::count_drop(map.as_fd()), "pktgen_count")
                    .map_err(Error::program(dev))?;
                SinkLink::Xdp(
                    XdpLink::attach(prog.as_fd(), ifindex, dev, None)
                        .map_err(Error::program(dev))?,
                )
            }
        })
    }

    /// The report's mode.
    fn mode(&self) -> &'static str {
        match self {
            SinkLink::Xdp(_) => "xdp",
            SinkLink::Tc { .. } => "tc",
        }
    }

    /// Where it counts, for the notice.
    fn describe(&self) -> String {
        match self {
            SinkLink::Xdp(link) => format!("XDP {} mode", link.mode().name()),
            SinkLink::Tc { .. } => "tc at tcx ingress".to_owned(),
        }
    }
}

/// Packets and bytes (FCS included) the XDP or tc counter saw, summed over CPUs.
fn read_counters(map: &Map) -> Result<(u64, u64), Error> {
    let mut value = vec![0u8; map.value_len()];
    map.lookup(&0u32.to_ne_bytes(), &mut value)
        .map_err(Error::sys("reading the counters"))?;
    let field = |cpu: &[u8], at: i16| {
        let at = at as usize;
        u64::from_ne_bytes(cpu[at..at + 8].try_into().expect("8 bytes"))
    };
    let (mut packets, mut bytes) = (0, 0);
    for cpu in value.chunks_exact((counters::LEN as usize).next_multiple_of(8)) {
        packets += field(cpu, counters::PACKETS);
        bytes += field(cpu, counters::BYTES);
    }
    Ok((packets, bytes + packets * FCS_LEN as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_spans_the_busy_intervals() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut a = Activity::new(t0);
        assert_eq!(a.span(), Duration::ZERO);
        a.observe(at(10), 0);
        a.observe(at(20), 1); // a stray frame
        a.observe(at(25), 500); // too soon: folded into the next interval
        a.observe(at(30), 1000);
        a.observe(at(40), 2000);
        a.observe(at(50), 2990);
        a.observe(at(60), 2990);
        a.observe(at(900), 2991); // another stray one
        assert_eq!(a.span(), Duration::from_millis(30));
    }
}
