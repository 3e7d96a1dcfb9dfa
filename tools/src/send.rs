//! `xvs-pktgen send`: checks the request, picks live frames or AF_XDP, paces, and reports.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use flowtable::wire::EthernetAddress;
use xvs_sys::os;

use crate::afxdp::{TxPlan, XskSender};
use crate::error::Error;
use crate::host::{self, DevCounters};
use crate::live::{LiveSender, RunError};
use crate::pace::{Pacer, Rate};
use crate::packet::{Flows, FrameSpec, IpPair, SizeRange};
use crate::report::{Meter, Sample, SendReport};

/// How to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendMode {
    /// Live frames where the kernel has them, else AF_XDP.
    Auto,
    /// Live frames only.
    Live,
    /// AF_XDP TX in copy mode.
    Afxdp,
}

/// What to send, where, how fast and for how long.
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// The interface to send from.
    pub dev: String,
    /// Ethernet destination.
    pub dst_mac: EthernetAddress,
    /// Ethernet source; the interface's own address if not given.
    pub src_mac: Option<EthernetAddress>,
    /// IP source, if given.
    pub src_ip: Option<IpAddr>,
    /// IP destination, if given.
    pub dst_ip: Option<IpAddr>,
    /// IPv6 unless the addresses say otherwise.
    pub ipv6: bool,
    /// The UDP source port (the first, unless `reply`).
    pub src_port: u16,
    /// The UDP destination port (the first, if `reply`).
    pub dst_port: u16,
    /// Flows vary the destination port: the replies of the flows of a run with addresses and
    /// ports swapped.
    pub reply: bool,
    /// Frame sizes, FCS included.
    pub sizes: SizeRange,
    /// Flows to cycle through.
    pub flows: u32,
    /// Target rate.
    pub rate: Rate,
    /// How long to send.
    pub duration: Duration,
    /// The CPU to run on.
    pub cpu: Option<usize>,
    /// Live frames or AF_XDP.
    pub mode: SendMode,
    /// Stamp frames for latency (sends through AF_XDP).
    pub latency: bool,
    /// Live-frames batch size.
    pub batch: u32,
}

/// Locally administered, for interfaces whose address sysfs does not show.
const FALLBACK_SRC_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 1]);

/// A checked request: the frames to make and where to send them.
#[derive(Debug)]
struct Plan {
    ifindex: u32,
    spec: FrameSpec,
    flows: Flows,
}

fn plan(config: &SendConfig) -> Result<Plan, Error> {
    let ifindex = host::ifindex(&config.dev)?;
    let ip = IpPair::resolve(config.src_ip, config.dst_ip, config.ipv6)
        .map_err(|e| Error::Config(e.to_owned()))?;
    let first_flow_port = if config.reply {
        config.dst_port
    } else {
        config.src_port
    };
    let flows = Flows::new(config.flows, first_flow_port).map_err(Error::Config)?;
    if config.reply && flows.varies_address() {
        // The flows beyond the ports would vary the source address, where the flows answered
        // vary the destination's.
        return Err(Error::Config(format!(
            "--reply takes at most {} flows from --dst-port {}",
            flows.ports(),
            config.dst_port
        )));
    }
    let spec = FrameSpec {
        src_mac: config
            .src_mac
            .or_else(|| host::mac_address(&config.dev, ifindex))
            .unwrap_or(FALLBACK_SRC_MAC),
        dst_mac: config.dst_mac,
        ip,
        src_port: config.src_port,
        dst_port: config.dst_port,
        reply: config.reply,
    };
    let least = spec.min_frame(config.latency);
    if config.sizes.min() < least {
        let what = match (ip.is_v6(), config.latency) {
            (false, false) => "IPv4/UDP",
            (true, false) => "IPv6/UDP",
            (false, true) => "IPv4/UDP with latency stamps",
            (true, true) => "IPv6/UDP with latency stamps",
        };
        return Err(Error::Config(format!(
            "--size {} is out of range: {what} frames take at least {least} bytes (FCS included)",
            config.sizes.min()
        )));
    }
    if config.latency && config.mode == SendMode::Live {
        return Err(Error::Config(
            "--latency stamps each frame in user space and sends through AF_XDP: it cannot be \
             combined with --mode live"
                .to_owned(),
        ));
    }
    Ok(Plan {
        ifindex,
        spec,
        flows,
    })
}

/// Sends as `config` says until its duration ends or `stop` is set, calling `progress` every
/// second and `notice` with anything the user should know (such as a fallback).
///
/// # Errors
/// No such device, arguments that do not make a run, not root, or a failing system call.
pub fn run(
    config: &SendConfig,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(&Sample),
    notice: &mut dyn FnMut(&str),
) -> Result<SendReport, Error> {
    let plan = plan(config)?;
    host::check_privileges()?;
    let before = DevCounters::read(&config.dev);
    let mut report = SendReport {
        command: "send",
        mode: "live-frames",
        dev: config.dev.clone(),
        sent_packets: 0,
        sent_bytes: 0,
        duration_s: 0.0,
        pps: 0.0,
        bits_per_s: 0.0,
        flows: plan.flows.count(),
        size_min: config.sizes.min(),
        size_max: config.sizes.max(),
        rate_pps: match config.rate {
            Rate::Max => None,
            Rate::Pps(pps) => Some(pps),
        },
        latency: config.latency,
        interrupted: false,
        device_tx_packets: None,
        device_tx_dropped: None,
    };

    let mut use_afxdp = config.latency || config.mode == SendMode::Afxdp;
    if !use_afxdp {
        let sender = LiveSender::new(
            plan.spec,
            plan.flows,
            config.sizes,
            plan.ifindex,
            config.batch,
            config.rate,
        )?;
        match send_live(&sender, config, stop, progress) {
            Ok(outcome) => {
                (report.sent_packets, report.sent_bytes) = sender.totals()?;
                report.duration_s = outcome.duration.as_secs_f64();
                report.interrupted = outcome.interrupted;
            }
            Err(RunError::Unsupported(e)) if config.mode == SendMode::Auto => {
                notice(&format!(
                    "XDP live frames is not supported here ({e}); sending through AF_XDP instead"
                ));
                use_afxdp = true;
            }
            Err(RunError::Unsupported(e)) => return Err(Error::LiveFramesUnsupported(e)),
            Err(RunError::Failed(e)) => return Err(e),
            Err(RunError::Interrupted) => unreachable!("send_live handles interruptions"),
        }
    }
    if use_afxdp {
        report.mode = "afxdp";
        pin(config.cpu)?;
        let mut sender = XskSender::open(&config.dev, plan.ifindex)?;
        let tx = TxPlan {
            spec: plan.spec,
            flows: plan.flows,
            sizes: config.sizes,
            stamped: config.latency,
        };
        let start = Instant::now();
        let pacer = Pacer::new(config.rate, start);
        let (interrupted, duration) =
            sender.run(&tx, &pacer, start + config.duration, stop, progress)?;
        report.interrupted = interrupted;
        report.duration_s = duration.as_secs_f64();
        let totals = sender.totals();
        (report.sent_packets, report.sent_bytes) = (totals.packets, totals.bytes);
    }

    if let (Some(before), Some(after)) = (before, DevCounters::read(&config.dev)) {
        let grew = after.since(before);
        report.device_tx_packets = Some(grew.tx_packets);
        report.device_tx_dropped = Some(grew.tx_dropped);
        if let Some(warning) = delivery_warning(&config.dev, report.sent_packets, grew) {
            notice(&warning);
        }
    }
    Ok(report.with_rates())
}

/// Runs the calling thread on `cpu`, if given.
fn pin(cpu: Option<usize>) -> Result<(), Error> {
    match cpu {
        Some(cpu) => os::pin_current_thread(cpu)
            .map_err(|e| Error::Config(format!("cannot run on CPU {cpu}: {}", e.io_error))),
        None => Ok(()),
    }
}

/// What to tell the user when the interface's counters say that many frames did not leave.
fn delivery_warning(dev: &str, sent: u64, grew: DevCounters) -> Option<String> {
    const HINT: &str = "for a veth, the peer needs an XDP program attached (or GRO enabled) to \
                        take XDP frames";
    if grew.tx_dropped > sent / 10 {
        Some(format!(
            "{dev} dropped {} of the {sent} frames on the way out; {HINT}",
            grew.tx_dropped
        ))
    } else if grew.tx_packets < sent / 2 {
        Some(format!(
            "{dev} counted only {} of the {sent} frames as sent: the rest were dropped before \
             they left (is {dev} up? {HINT})",
            grew.tx_packets
        ))
    } else {
        None
    }
}

/// How a live-frames run ended.
#[derive(Debug)]
struct LiveOutcome {
    duration: Duration,
    interrupted: bool,
}

/// The signal that ends the test run in the sending thread. A handler is installed for it,
/// so that it interrupts the system call rather than ending the process.
const WAKE: i32 = signal_hook::consts::SIGUSR1;
/// How often the watching thread looks at the clock, the stop flag and the counters.
const WATCH: Duration = Duration::from_millis(10);

/// Sends from a thread of its own in one long test run, while this thread reports progress
/// and, at the end or on Ctrl-C, interrupts the run with a signal.
fn send_live(
    sender: &LiveSender,
    config: &SendConfig,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(&Sample),
) -> Result<LiveOutcome, RunError> {
    let woken = Arc::new(AtomicBool::new(false));
    let handler = signal_hook::flag::register(WAKE, woken).map_err(|e| {
        RunError::Failed(Error::Config(format!(
            "cannot install a signal handler: {e}"
        )))
    })?;
    let finish = AtomicBool::new(false);
    let tid = AtomicI32::new(0);
    let started = OnceLock::new();
    let outcome = std::thread::scope(|scope| {
        // Only the sending thread goes to `--cpu`: this one wakes every few milliseconds.
        let worker = scope.spawn(|| -> Result<(), RunError> {
            pin(config.cpu).map_err(RunError::Failed)?;
            tid.store(os::gettid(), Ordering::SeqCst);
            sender.start_clock().map_err(RunError::Failed)?;
            started.get_or_init(Instant::now);
            while !finish.load(Ordering::SeqCst) && !stop.load(Ordering::Relaxed) {
                match sender.run(u32::MAX) {
                    Ok(()) | Err(RunError::Interrupted) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        });
        // The run's time starts when the thread starts sending.
        while started.get().is_none() && !worker.is_finished() {
            std::thread::sleep(Duration::from_micros(100));
        }
        let start = started.get().copied().unwrap_or_else(Instant::now);
        let end = start + config.duration;
        let mut meter = Meter::new(start, Duration::from_secs(1));
        let interrupted = loop {
            if worker.is_finished() || stop.load(Ordering::Relaxed) {
                break stop.load(Ordering::Relaxed);
            }
            let now = Instant::now();
            if now >= end {
                break false;
            }
            if let Ok((packets, bytes)) = sender.totals()
                && let Some(sample) = meter.tick(now, packets, bytes)
            {
                progress(&sample);
            }
            std::thread::sleep(WATCH.min(end - now));
        };
        // The signal may land just before the thread enters its next run, and be lost for
        // it: repeat it until the thread is out.
        finish.store(true, Ordering::SeqCst);
        while !worker.is_finished() {
            let thread = tid.load(Ordering::SeqCst);
            if thread != 0 {
                let _ = os::signal_thread(thread, WAKE);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let duration = start.elapsed();
        match worker.join() {
            Ok(result) => result.map(|()| LiveOutcome {
                duration,
                interrupted,
            }),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    signal_hook::low_level::unregister(handler);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_when_the_interface_did_not_pass_frames_on() {
        let counters = |tx_packets, tx_dropped| DevCounters {
            rx_packets: 0,
            tx_packets,
            tx_dropped,
        };
        assert_eq!(delivery_warning("v0", 1000, counters(1000, 0)), None);
        assert_eq!(delivery_warning("v0", 1000, counters(990, 5)), None);
        let dropped = delivery_warning("v0", 1000, counters(0, 1000)).unwrap();
        assert!(dropped.contains("dropped 1000 of the 1000"), "{dropped}");
        let vanished = delivery_warning("v0", 1000, counters(0, 0)).unwrap();
        assert!(
            vanished.contains("counted only 0 of the 1000"),
            "{vanished}"
        );
    }
}
