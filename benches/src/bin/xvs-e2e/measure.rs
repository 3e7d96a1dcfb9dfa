//! One trial of each kind, run across whatever switch joins the topology's veths:
//!
//! - [`rate`]: `xvs-pktgen send` (XDP live frames) from the source namespace at a size, a
//!   number of flows and a rate (or `max`), `xvs-pktgen count --sink tc` (a tc program at
//!   tcx ingress that counts and drops) on the sink's `eth0`; optionally with the CPU
//!   accounting of the window in which the generator ran.
//! - [`rtt`]: `xvs-pktgen rtt --server` (a UDP echo) in the sink namespace and
//!   `rtt --client` in the source at a moderate rate, for round-trip percentiles.
//! - [`tcp`]: an iperf3 server in the sink namespace and a client in the source, with one
//!   stream or several.
//! - [`idle`]: no traffic at all, for what the switch (and the rest of the machine) burns
//!   while waiting.
//!
//! Every tool runs pinned to the generator's CPU. A trial starts the counter and waits for it
//! to attach, runs the sender to its end, gives in-flight frames half a second, stops the
//! counter with SIGINT (it then prints its summary), and sleeps a settling time so that the
//! next trial starts on a quiet machine.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use serde::Serialize;
use serde_json::Value;

use crate::cpu::{Snapshot, Window};
use crate::lab::{SINK_IP, Topology};
use crate::proc::{Proc, in_ns, output, sleep};

/// What the trials need besides the topology.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    /// xvs-pktgen.
    pub(crate) pktgen: &'a Path,
    /// The CPU of every tool.
    pub(crate) gen_cpu: usize,
    /// Where the tools' output goes.
    pub(crate) dir: &'a Path,
    /// The pause after each trial.
    pub(crate) settle: Duration,
    /// `USER_HZ`.
    pub(crate) ticks_per_s: f64,
}

/// The load of a packet-rate trial.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    /// Frame size with FCS.
    pub(crate) size: u16,
    /// Flows.
    pub(crate) flows: u32,
    /// Packets per second, `None` for as fast as the generator goes.
    pub(crate) rate_pps: Option<f64>,
    /// Seconds of sending.
    pub(crate) seconds: f64,
}

/// What a packet-rate trial saw.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RateTrial {
    /// Frame size with FCS.
    pub(crate) size: u16,
    /// Flows.
    pub(crate) flows: u32,
    /// The rate asked for, `None` for max.
    pub(crate) target_pps: Option<f64>,
    /// How the generator sent ("live-frames" or "afxdp").
    pub(crate) send_mode: String,
    /// Where the sink counted ("tc": at tcx ingress).
    pub(crate) sink: String,
    /// Frames the generator handed to its interface.
    pub(crate) sent: u64,
    /// Frames the sink's counter saw.
    pub(crate) received: u64,
    /// Their bytes, FCS included.
    pub(crate) received_bytes: u64,
    /// The generator's sending time.
    pub(crate) seconds: f64,
    /// `sent / seconds`.
    pub(crate) offered_pps: f64,
    /// `received / seconds`: the forwarding rate.
    pub(crate) forwarded_pps: f64,
    /// Forwarded bits per second, FCS included (no preamble or gap).
    pub(crate) forwarded_bps: f64,
    /// Lost frames as a percentage of those sent.
    pub(crate) loss_pct: f64,
    /// Frames the source's `eth0` could not pass to its peer (the switch's ingress ring was
    /// full): part of the loss.
    pub(crate) source_tx_dropped: Option<u64>,
    /// Whether the ping that primes learning switches got its reply.
    pub(crate) primed: bool,
    /// CPU time over the generator's run, when asked for.
    pub(crate) cpu: Option<Window>,
}

fn json_of(what: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("parsing {what}'s JSON: {text:?}"))
}

fn u64_of(v: &Value, key: &str) -> anyhow::Result<u64> {
    v[key].as_u64().with_context(|| format!("no {key} in {v}"))
}

fn f64_of(v: &Value, key: &str) -> anyhow::Result<f64> {
    v[key].as_f64().with_context(|| format!("no {key} in {v}"))
}

/// Starts `xvs-pktgen count --sink tc` on the sink's `eth0` and waits until it is attached.
///
/// The count is taken at tcx ingress, where every path into the sink passes: a frame that a
/// switch's XDP program redirected into the sink's veth (which then runs the veth's NAPI and
/// becomes an skb), one the bridge or an AF_XDP port transmitted, and one that a tc program
/// put straight into `eth0` with `bpf_redirect_peer`, which skips the veth's NAPI and so
/// never meets an XDP program on `eth0`. Every switch then pays the same for the sink: an
/// skb per frame.
fn start_counter(ctx: &Ctx<'_>, topo: &Topology) -> anyhow::Result<Proc> {
    let mut c = in_ns(Some(&topo.sink_ns), Some(ctx.gen_cpu), ctx.pktgen);
    c.args(["count", "--dev", "eth0", "--sink", "tc", "--json"]);
    let mut counter = Proc::spawn("count", c, ctx.dir)?;
    counter.wait_for_stderr("counting on", Duration::from_secs(10))?;
    Ok(counter)
}

/// Stops the counter after in-flight frames had time to arrive, and returns its summary.
fn stop_counter(mut counter: Proc) -> anyhow::Result<Value> {
    sleep(Duration::from_millis(500))?;
    counter.signal(Signal::SIGINT);
    let out = counter.finish(Duration::from_secs(10))?;
    json_of("xvs-pktgen count", &out)
}

fn send_command(ctx: &Ctx<'_>, topo: &Topology, load: &Load) -> std::process::Command {
    let mut c = in_ns(Some(&topo.src_ns), Some(ctx.gen_cpu), ctx.pktgen);
    let rate = load.rate_pps.map_or_else(
        || "max".to_owned(),
        |r| format!("{}", r.round().max(1.0) as u64),
    );
    c.args([
        "send",
        "--dev",
        "eth0",
        "--dst-mac",
        &topo.sink_mac,
        "--size",
        &load.size.to_string(),
        "--flows",
        &load.flows.to_string(),
        "--rate",
        &rate,
        "--duration",
        &load.seconds.to_string(),
        "--cpu",
        &ctx.gen_cpu.to_string(),
        "--json",
    ]);
    c
}

fn send_timeout(load: &Load) -> Duration {
    Duration::from_secs_f64(load.seconds + 30.0)
}

/// One packet-rate trial; with `cpu`, the CPU time of the window in which the generator ran
/// (the switch's process `pid` too, when it has one).
///
/// # Errors
/// A tool failed or its output did not parse, or the bench was interrupted.
pub(crate) fn rate(
    ctx: &Ctx<'_>,
    topo: &Topology,
    load: &Load,
    cpu: Option<Option<u32>>,
) -> anyhow::Result<RateTrial> {
    let primed = topo.prime();
    let counter = start_counter(ctx, topo)?;
    let before = cpu.map(Snapshot::take);
    let mut sender = Proc::spawn("send", send_command(ctx, topo, load), ctx.dir)?;
    let sent_out = sender.finish(send_timeout(load))?;
    let after = cpu.map(Snapshot::take);
    let counted = stop_counter(counter)?;
    let sent = json_of("xvs-pktgen send", &sent_out)?;

    let seconds = f64_of(&sent, "duration_s")?;
    if seconds <= 0.0 {
        bail!("the generator sent for no time: {sent}");
    }
    let sent_packets = u64_of(&sent, "sent_packets")?;
    let received = u64_of(&counted, "received_packets")?;
    let received_bytes = u64_of(&counted, "received_bytes")?;
    let trial = RateTrial {
        size: load.size,
        flows: load.flows,
        target_pps: load.rate_pps,
        send_mode: sent["mode"].as_str().unwrap_or_default().to_owned(),
        sink: counted["mode"].as_str().unwrap_or_default().to_owned(),
        sent: sent_packets,
        received,
        received_bytes,
        seconds,
        offered_pps: sent_packets as f64 / seconds,
        forwarded_pps: received as f64 / seconds,
        forwarded_bps: received_bytes as f64 * 8.0 / seconds,
        loss_pct: if sent_packets == 0 {
            100.0
        } else {
            sent_packets.saturating_sub(received) as f64 * 100.0 / sent_packets as f64
        },
        source_tx_dropped: sent["device_tx_dropped"].as_u64(),
        primed,
        cpu: match (before, after) {
            (Some(b), Some(a)) => Some(Window::between(&b, &a, ctx.ticks_per_s)),
            _ => None,
        },
    };
    sleep(ctx.settle)?;
    Ok(trial)
}

/// Runs `xvs-pktgen send --dev eth0 ARGS` in the sink namespace (towards the source) to its
/// end, and returns its summary.
///
/// # Errors
/// The generator failed or its output did not parse, or the bench was interrupted.
pub(crate) fn send_from_sink(
    ctx: &Ctx<'_>,
    topo: &Topology,
    args: &[&str],
) -> anyhow::Result<Value> {
    let mut c = in_ns(Some(&topo.sink_ns), Some(ctx.gen_cpu), ctx.pktgen);
    c.args([
        "send",
        "--dev",
        "eth0",
        "--cpu",
        &ctx.gen_cpu.to_string(),
        "--json",
    ]);
    c.args(args);
    let mut sender = Proc::spawn("send-reply", c, ctx.dir)?;
    let out = sender.finish(Duration::from_secs(60))?;
    json_of("xvs-pktgen send", &out)
}

/// CPU time over `seconds` with the switch up and no traffic (the switch process `pid` too,
/// when it has one).
///
/// # Errors
/// The bench was interrupted.
pub(crate) fn idle(ctx: &Ctx<'_>, pid: Option<u32>, seconds: f64) -> anyhow::Result<Window> {
    let before = Snapshot::take(pid);
    sleep(Duration::from_secs_f64(seconds))?;
    let after = Snapshot::take(pid);
    Ok(Window::between(&before, &after, ctx.ticks_per_s))
}

/// What a round-trip trial saw.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RttTrial {
    /// The rate of requests.
    pub(crate) rate_pps: f64,
    /// Requests sent.
    pub(crate) sent: u64,
    /// Replies in time: the round trips measured.
    pub(crate) samples: u64,
    /// Requests without a reply in time, percent.
    pub(crate) loss_pct: f64,
    /// Median round trip, source to sink and back, µs.
    pub(crate) p50_us: f64,
    /// 99th percentile, µs.
    pub(crate) p99_us: f64,
    /// 99.9th percentile, µs.
    pub(crate) p999_us: f64,
    /// The client's whole report.
    pub(crate) report: Value,
}

/// The UDP port of the echo server.
const RTT_PORT: u16 = 7;

/// One round-trip trial: UDP requests at `rate_pps` for `seconds` from the source to an echo
/// server in the sink. Both directions cross the switch, whatever path it takes.
///
/// # Errors
/// A tool failed, no reply came, or the bench was interrupted.
pub(crate) fn rtt(
    ctx: &Ctx<'_>,
    topo: &Topology,
    rate_pps: f64,
    seconds: f64,
) -> anyhow::Result<RttTrial> {
    topo.prime();
    let addr = format!("{SINK_IP}:{RTT_PORT}");
    let mut s = in_ns(Some(&topo.sink_ns), Some(ctx.gen_cpu), ctx.pktgen);
    s.args(["rtt", "--server", &addr, "--json"]);
    let mut server = Proc::spawn("rtt-server", s, ctx.dir)?;
    server.wait_for_stderr("echoing on", Duration::from_secs(10))?;
    let mut c = in_ns(Some(&topo.src_ns), Some(ctx.gen_cpu), ctx.pktgen);
    c.args([
        "rtt",
        "--client",
        &addr,
        "--rate",
        &format!("{}", rate_pps.round().max(1.0) as u64),
        "--duration",
        &seconds.to_string(),
        "--json",
    ]);
    let mut client = Proc::spawn("rtt-client", c, ctx.dir)?;
    let out = client.finish(Duration::from_secs_f64(seconds + 30.0))?;
    server.stop(Duration::from_secs(2));
    let report = json_of("xvs-pktgen rtt", &out)?;
    let samples = u64_of(&report, "received")?;
    if samples == 0 {
        bail!(
            "no reply came back ({} requests sent)",
            report["sent"].as_u64().unwrap_or(0)
        );
    }
    let trial = RttTrial {
        rate_pps,
        sent: u64_of(&report, "sent")?,
        samples,
        loss_pct: f64_of(&report, "loss_pct")?,
        p50_us: f64_of(&report, "p50_us")?,
        p99_us: f64_of(&report, "p99_us")?,
        p999_us: f64_of(&report, "p999_us")?,
        report,
    };
    sleep(ctx.settle)?;
    Ok(trial)
}

/// What a TCP trial saw.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TcpTrial {
    /// Parallel streams.
    pub(crate) streams: u32,
    /// Goodput the server received, Gbit/s.
    pub(crate) gbps: f64,
    /// Retransmitted segments.
    pub(crate) retransmits: Option<u64>,
}

const IPERF_PORT: &str = "5201";

/// One iperf3 run of `seconds` from the source to the sink, with `streams` parallel
/// streams (`-P`).
///
/// # Errors
/// iperf3 failed (its own error message, e.g. a connection that timed out), or the bench
/// was interrupted.
pub(crate) fn tcp(
    ctx: &Ctx<'_>,
    topo: &Topology,
    seconds: f64,
    streams: u32,
) -> anyhow::Result<TcpTrial> {
    let ends = TcpEnds {
        client_ns: &topo.src_ns,
        server_ns: &topo.sink_ns,
        server_ip: SINK_IP,
    };
    tcp_between(ctx, &ends, seconds, streams)
}

/// Where an iperf3 run goes: client in one namespace, server in another on one address.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpEnds<'a> {
    /// The client's namespace.
    pub(crate) client_ns: &'a str,
    /// The server's namespace.
    pub(crate) server_ns: &'a str,
    /// The server's address (it binds to it; the client connects to it).
    pub(crate) server_ip: &'a str,
}

/// One iperf3 run of `seconds` between `ends`, with `streams` parallel streams; both on the
/// generator's CPU.
///
/// # Errors
/// As [`tcp`].
pub(crate) fn tcp_between(
    ctx: &Ctx<'_>,
    ends: &TcpEnds<'_>,
    seconds: f64,
    streams: u32,
) -> anyhow::Result<TcpTrial> {
    let mut s = in_ns(Some(ends.server_ns), Some(ctx.gen_cpu), Path::new("iperf3"));
    s.args(["-s", "-1", "-B", ends.server_ip, "-p", IPERF_PORT]);
    let mut server = Proc::spawn("iperf3-server", s, ctx.dir)?;
    let mut listening = false;
    for _ in 0..100 {
        let mut ss = in_ns(Some(ends.server_ns), None, Path::new("ss"));
        ss.args(["-Hltn", &format!("sport = :{IPERF_PORT}")]);
        let ss = output(ss)?;
        if !ss.stdout.is_empty() {
            listening = true;
            break;
        }
        if !server.is_running() {
            bail!("the iperf3 server exited: {}", server.stderr_tail());
        }
        sleep(Duration::from_millis(50))?;
    }
    if !listening {
        bail!("the iperf3 server did not listen within 5 s");
    }
    let mut c = in_ns(Some(ends.client_ns), Some(ctx.gen_cpu), Path::new("iperf3"));
    c.args([
        "-c",
        ends.server_ip,
        "-p",
        IPERF_PORT,
        "-t",
        &format!("{}", seconds.ceil().max(1.0) as u64),
        "-P",
        &streams.to_string(),
        "-J",
        "--connect-timeout",
        "3000",
    ]);
    let mut client = Proc::spawn("iperf3-client", c, ctx.dir)?;
    client.wait(Duration::from_secs_f64(seconds + 30.0))?;
    server.stop(Duration::from_secs(2));
    let result = json_of("iperf3", &client.stdout())?;
    if let Some(error) = result["error"].as_str() {
        bail!("iperf3: {error}");
    }
    let gbps = result["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3 reported no received rate")?
        / 1e9;
    let trial = TcpTrial {
        streams,
        gbps,
        retransmits: result["end"]["sum_sent"]["retransmits"].as_u64(),
    };
    sleep(ctx.settle)?;
    Ok(trial)
}
