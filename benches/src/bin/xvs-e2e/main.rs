//! xvs-e2e: the end-to-end packet-rate benchmark.
//!
//! One command builds a source namespace and a sink namespace joined by the switch under
//! test, and measures, in the same run and on the same machine, xvs (with the kernel hook
//! xvsd picks, or forced to XDP or tc) and its peers: the Linux bridge, Open vSwitch's
//! userspace datapath with AF_XDP ports, and a bare in-kernel XDP redirect as a reference.
//! Each figure is repeated `--trials` times, in rounds that visit every switch in turn
//! (rotating the order), so slow drift on a shared machine falls on all of them; the report
//! gives min/median/max and the ratio of xvs's median to each peer's.
//!
//! Layout: [`lab`] makes and removes the topology, [`switch`] sets up each switch, [`measure`]
//! runs one trial of each kind, [`search`] finds the zero-loss rate, [`cpu`] accounts CPU time,
//! [`report`] and [`stats`] summarize; [`proc`] runs the tools and stops them on every path.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};
use xvs_sys::{out, outln};
use xvs_testkit::{have, is_root};

mod cpu;
mod ct;
mod egress;
mod lab;
mod measure;
mod proc;
mod report;
mod search;
mod stats;
mod switch;

use lab::Topology;
use measure::{Ctx, Load};
use proc::{check_interrupted, is_interrupted};
use report::{Figure, SwitchReport, key};
use switch::{Bins, Env, Kind, Switch};

/// The parts of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// 64 B, 1 flow, max load, with the CPU accounting.
    Rate64,
    /// 64 B, 1000 flows, max load.
    Flows,
    /// 64 B zero-loss rate (needs rate64, which then runs too).
    ZeroLoss,
    /// 1518 B, max load.
    Rate1518,
    /// UDP request/response round-trip percentiles at a moderate rate.
    Latency,
    /// iperf3 TCP: default offloads with 1 stream and with 8, and TX checksum offload off.
    Tcp,
    /// iperf3 TCP, 1 stream, from a container through the switch and the host's masquerade
    /// to an outside namespace (xvs: internal port with --masquerade; the bridge: gateway
    /// address on the bridge, an nftables masquerade rule). Its own topology; not in the
    /// default list.
    Egress,
    /// xvs only: 64 B, max load (`--ct-flows` flows), without rules and then with a
    /// stateful firewall (OpenFlow tables, connection tracking) installed in the same xvsd,
    /// its flows established first (answered from the sink); the ratio ct / no rules, and
    /// the share the kernel fast path carried. Its own topology; not in the default list.
    Ct,
}

#[derive(Debug, Parser)]
#[command(
    version,
    about = "End-to-end benchmark: xvs beside the Linux bridge, OVS (userspace datapath, \
             AF_XDP ports) and a bare XDP redirect, measured in the same run",
    after_help = "Run as root. Generator and tools on --gen-cpu, the switch's datapath thread \
                  on --switch-cpu. Ctrl-C stops the run, cleans up, and still writes the JSON."
)]
struct Args {
    /// Rounds; each runs every figure once on every switch (min/median/max over them).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    trials: u32,
    /// Smoke mode for CI: 1 trial, 1-second trials, 2 search steps.
    #[arg(long)]
    quick: bool,
    /// Switches to measure. xvs-xdp and xvs-tc are xvs with `--hook xdp` and `--hook tc`
    /// (columns of their own; the ratios compare the xvs column with the others).
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["xvs", "bridge", "ovs", "xdp"])]
    only: Vec<Kind>,
    /// Parts of each round to run.
    #[arg(long, value_enum, value_delimiter = ',',
          default_values = ["rate64", "flows", "zero-loss", "rate1518", "latency", "tcp"])]
    figures: Vec<Part>,
    /// Write every result, trial by trial, as JSON here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Where xvsd, xvsctl and xvs-pktgen are [default: next to this executable; under
    /// `cargo run` they are built there first].
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Extra arguments for xvsd, split at whitespace (e.g. "--busy-poll").
    #[arg(
        long,
        value_name = "ARGS",
        default_value = "",
        allow_hyphen_values = true
    )]
    xvsd_args: String,
    /// Install this many rules in xvs before measuring, none of which matches the traffic
    /// (UDP to ports the generator does not use), to show that the flow cache and the fast
    /// path keep the rate whatever the rule count.
    #[arg(long, default_value_t = 0)]
    xvs_rules: u32,
    /// Flows of the ct figure's trials (all established before its trial).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=60000))]
    ct_flows: u32,
    /// The CPU of the generator, the counter, iperf3, and the switches' control threads.
    #[arg(long, default_value_t = 0)]
    gen_cpu: usize,
    /// The CPU of the switch's datapath thread (xvs worker, OVS PMD).
    #[arg(long, default_value_t = 1)]
    switch_cpu: usize,
    /// Seconds of each max-load trial.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Seconds of each step of the zero-loss search.
    #[arg(long, default_value_t = 2.0)]
    search_duration: f64,
    /// Steps of the zero-loss search (the resolution is the max-load rate / 2^(steps-1)).
    #[arg(long, default_value_t = 6)]
    search_steps: u32,
    /// Loss the zero-loss search tolerates, percent of the frames sent.
    #[arg(long, default_value_t = 0.001)]
    loss_tolerance: f64,
    /// Requests per second of the round-trip (latency) trials.
    #[arg(long, default_value_t = 10_000.0)]
    latency_rate: f64,
    /// Seconds of each round-trip (latency) trial.
    #[arg(long, default_value_t = 3.0)]
    latency_duration: f64,
    /// Seconds of each iperf3 run.
    #[arg(long, default_value_t = 3.0)]
    tcp_duration: f64,
    /// Seconds of quiet after each trial and each switch.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
    /// Keep the work directory (tool output, OVS database and logs) and print its path.
    #[arg(long)]
    keep_logs: bool,
}

impl Args {
    fn apply_quick(&mut self) {
        if self.quick {
            self.trials = 1;
            self.duration = 1.0;
            self.search_duration = 1.0;
            self.search_steps = 2;
            self.latency_duration = 1.0;
            self.tcp_duration = 1.0;
            self.settle = 0.3;
        }
    }

    fn wants(&self, part: Part) -> bool {
        self.figures.contains(&part)
    }
}

/// The work directory; removed on drop unless kept.
#[derive(Debug)]
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("xvs-e2e: logs kept in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Under `cargo run` (which sets `CARGO`), builds the binaries the bench drives into the
/// same target directory and profile as this one, so that it never measures stale ones.
fn build_siblings(dir: &Path) -> anyhow::Result<()> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let (Some(profile_dir), Some(target)) =
        (dir.file_name().and_then(|n| n.to_str()), dir.parent())
    else {
        return Ok(());
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("no workspace above the benches package")?;
    let mut c = std::process::Command::new(cargo);
    c.arg("build")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target);
    match profile_dir {
        "debug" => {}
        "release" => {
            c.arg("--release");
        }
        other => {
            c.args(["--profile", other]);
        }
    }
    c.args([
        "-p",
        "xvs-tools",
        "-p",
        "control",
        "-p",
        "xvs-cli",
        "--bin",
        "xvs-pktgen",
        "--bin",
        "xvsd",
        "--bin",
        "xvsctl",
    ]);
    eprintln!("xvs-e2e: building xvsd, xvsctl and xvs-pktgen ({profile_dir})");
    let status = c.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of xvsd, xvsctl and xvs-pktgen failed");
    }
    Ok(())
}

fn find_bins(args: &Args) -> anyhow::Result<Bins> {
    let dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => {
            let exe = std::env::current_exe().context("finding this executable")?;
            let dir = exe.parent().context("no directory")?.to_path_buf();
            build_siblings(&dir)?;
            dir
        }
    };
    let bins = Bins {
        xvsd: dir.join("xvsd"),
        xvsctl: dir.join("xvsctl"),
        pktgen: dir.join("xvs-pktgen"),
    };
    if !bins.pktgen.is_file() {
        bail!(
            "{} is missing: build it (cargo build --release -p xvs-tools -p control -p xvs-cli) or pass \
             --bin-dir",
            bins.pktgen.display()
        );
    }
    Ok(bins)
}

fn first_line(program: &str, args: &[&str]) -> Option<String> {
    proc::run(proc::cmd(program, args))
        .ok()
        .and_then(|s| s.lines().next().map(str::to_owned))
}

/// `/proc/loadavg`, to tell later how busy the (shared) machine was.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn host_info(ticks_per_s: f64, cpus: usize) -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned());
    json!({
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "cpu_model": model,
        "cpus": cpus,
        "ticks_per_s": ticks_per_s,
        "ovs_version": first_line("ovs-vswitchd", &["--version"]),
        "iperf3_version": first_line("iperf3", &["--version"]),
        "loadavg_at_start": loadavg(),
    })
}

fn pinning_note(args: &Args) -> String {
    format!(
        "generator and tools (xvs-pktgen send/count/rtt, iperf3) on CPU {g}; the switch's \
         datapath thread (xvs worker, OVS PMD) on CPU {s}, its other threads (xvsd control, \
         ovsdb-server, ovs-vswitchd main/handlers) on CPU {g}. The bridge and the XDP \
         redirect have no thread: they run in softirq on the CPU that hands them the frame \
         (the generator's, CPU {g}), as does the XDP/AF_XDP receive step of xvs and OVS; see \
         the per-CPU rows.",
        g = args.gen_cpu,
        s = args.switch_cpu
    )
}

/// What a failed trial leaves: the error recorded under `keys`, unless it is an interruption,
/// which ends the run.
fn attempt<T>(
    sw: &mut SwitchReport,
    round: usize,
    keys: &[&str],
    result: anyhow::Result<T>,
) -> anyhow::Result<Option<T>> {
    match result {
        Ok(t) => Ok(Some(t)),
        Err(e) if is_interrupted(&e) || proc::interrupted() => Err(e),
        Err(e) => {
            let msg = format!("{e:#}");
            eprintln!("    failed: {msg}");
            for k in keys {
                sw.fail(k, round, &msg);
            }
            Ok(None)
        }
    }
}

fn cpu_figures(sw: &mut SwitchReport, trial: &measure::RateTrial) {
    let Some(w) = &trial.cpu else { return };
    let mpkt = trial.received as f64 / 1e6;
    if mpkt <= 0.0 {
        return;
    }
    if let Some(p) = &w.process {
        sw.set(key::PROC_USER, p.user / mpkt);
        sw.set(key::PROC_SYSTEM, p.system / mpkt);
    }
    for c in &w.cpus {
        sw.set(&key::cpu(c.cpu, "user"), c.user / mpkt);
        sw.set(&key::cpu(c.cpu, "system"), c.system / mpkt);
        sw.set(&key::cpu(c.cpu, "softirq"), c.softirq / mpkt);
    }
    sw.set(
        key::ALL_BUSY,
        w.cpus.iter().map(cpu::CpuSeconds::busy).sum::<f64>() / mpkt,
    );
}

fn cpu_keys(cpus: usize) -> Vec<String> {
    let mut keys: Vec<String> = [key::PROC_USER, key::PROC_SYSTEM, key::ALL_BUSY]
        .map(str::to_owned)
        .to_vec();
    for c in 0..cpus {
        for part in ["user", "system", "softirq"] {
            keys.push(key::cpu(c, part));
        }
    }
    keys
}

fn describe_rate(t: &measure::RateTrial) -> String {
    format!(
        "forwarded {:.3} Mpps of {:.3} offered ({:.1} Gbit/s, loss {:.3} %)",
        t.forwarded_pps / 1e6,
        t.offered_pps / 1e6,
        t.forwarded_bps / 1e9,
        t.loss_pct
    )
}

/// One row of the TCP figure.
#[derive(Debug, Clone, Copy)]
struct TcpRow {
    label: &'static str,
    key: &'static str,
    /// iperf3's parallel streams (`-P`).
    streams: u32,
    /// TX checksum offload off in both namespaces (during this row only).
    csum_off: bool,
}

/// The TCP rows.
const TCP_ROWS: [TcpRow; 3] = [
    TcpRow {
        label: "default offloads, 1 stream",
        key: key::TCP,
        streams: 1,
        csum_off: false,
    },
    TcpRow {
        label: "default offloads, 8 streams",
        key: key::TCP_8_STREAMS,
        streams: 8,
        csum_off: false,
    },
    TcpRow {
        label: "tx checksum offload off, 1 stream",
        key: key::TCP_NO_CSUM,
        streams: 1,
        csum_off: true,
    },
];

struct Round<'a> {
    args: &'a Args,
    env: Env<'a>,
    ctx: Ctx<'a>,
    cpus: usize,
    round: usize,
}

/// One round on one switch: the parts on the source/sink topology, then the egress scenario
/// on its own (each built, measured once and torn down).
fn run_round(r: &Round<'_>, kind: Kind, sw: &mut SwitchReport) -> anyhow::Result<Value> {
    let mut details = if r
        .args
        .figures
        .iter()
        .any(|&p| p != Part::Egress && p != Part::Ct)
    {
        run_standard(r, kind, sw)?
    } else {
        json!({ "round": r.round + 1 })
    };
    if r.args.wants(Part::Egress) {
        details["egress"] = run_egress(r, kind, sw)?;
    }
    if r.args.wants(Part::Ct) {
        details["ct"] = run_ct(r, kind, sw)?;
    }
    Ok(details)
}

/// Readies the source/sink topology once a switch joined it: GRO on the source's host veth
/// where XDP frames need it to cross, then a ping through the switch. Returns the ingress
/// XDP mode and whether GRO was turned on, for the report.
fn ready(topo: &mut Topology) -> anyhow::Result<(Option<&'static str>, bool)> {
    let vsrc = topo.vsrc.clone();
    let ingress_xdp = topo.xdp_mode(&vsrc)?;
    // XDP frames cross a veth only to a peer that runs NAPI: an XDP program in native mode,
    // or GRO.
    let gro = ingress_xdp != Some("drv");
    if gro {
        topo.set_offload(None, &vsrc, "gro", true)?;
    }
    topo.wait_connected(10)?;
    Ok((ingress_xdp, gro))
}

/// The ct figure on one switch (xvs only): the 64 B rate without rules, then with the ct
/// pipeline and every flow established, in the same xvsd; their ratio; and the check that the
/// kernel fast path carried the established flows.
fn run_ct(r: &Round<'_>, kind: Kind, sw: &mut SwitchReport) -> anyhow::Result<Value> {
    let (args, ctx, round) = (r.args, &r.ctx, r.round);
    if !kind.is_xvs() {
        return Ok(json!("not measured: the ct pipeline is xvs's"));
    }
    let flows = args.ct_flows;
    let mut topo = Topology::create()?;
    let mut xvs = switch::xvs::Xvs::start(&mut topo, &r.env, kind.xvs_hook())?;
    let (ingress_xdp, gro) = ready(&mut topo)?;
    // The sink's answers are XDP frames too: they cross to the sink's host veth only if it
    // runs NAPI (with the tc hook it has no XDP program).
    let vsink = topo.vsink.clone();
    let sink_gro = topo.xdp_mode(&vsink)? != Some("drv");
    if sink_gro {
        topo.set_offload(None, &vsink, "gro", true)?;
    }
    let port = topo.vsrc.clone();
    let load = Load {
        size: 64,
        flows,
        rate_pps: None,
        seconds: args.duration,
    };
    eprintln!("  ct: 64 B, {flows} flow(s), max load, no rules");
    let keys = [key::CT_PLAIN, key::CT_RATE, key::CT_RATIO, key::CT_KERNEL];
    let plain = attempt(
        sw,
        round,
        &[key::CT_PLAIN],
        measure::rate(ctx, &topo, &load, None),
    )?;
    if let Some(t) = &plain {
        eprintln!("    {}", describe_rate(t));
        sw.set(key::CT_PLAIN, t.forwarded_pps / 1e6);
    }
    xvs.check()?;
    eprintln!("  ct: installing the ct pipeline, opening and answering every flow");
    xvs.add_flows(&ct::pipeline(&port))?;
    let Some(warmup) = attempt(
        sw,
        round,
        &keys[1..],
        ct::establish(ctx, &topo, &xvs, flows),
    )?
    else {
        return Ok(ct::details(plain.as_ref(), None, None, None));
    };
    eprintln!(
        "    {} of {} flows established ({} sent, {} arrived; {} answered)",
        warmup.established,
        flows,
        warmup.opened.sent,
        warmup.opened.received,
        warmup.answered["sent_packets"]
    );
    eprintln!("  ct: 64 B, {flows} flow(s), max load, ct pipeline, established flows");
    let before = ct::port_counters(&xvs, &port)?;
    let with_ct = attempt(
        sw,
        round,
        &keys[1..],
        measure::rate(ctx, &topo, &load, None),
    )?;
    let after = ct::port_counters(&xvs, &port)?;
    let share = ct::kernel_share(&xvs, &port, &before, &after)?;
    if let Some(t) = &with_ct {
        eprintln!("    {}", describe_rate(t));
        sw.set(key::CT_RATE, t.forwarded_pps / 1e6);
        if let Some(p) = &plain
            && p.forwarded_pps > 0.0
        {
            let ratio = t.forwarded_pps / p.forwarded_pps;
            eprintln!("    ct / no rules: {ratio:.3}");
            sw.set(key::CT_RATIO, ratio);
        }
    }
    eprintln!(
        "    kernel fast path: {} of the {} packets the source's port received ({:.3} %); {} \
         entries from it with {} packets",
        share.kernel_rx_packets,
        share.rx_packets,
        share.pct,
        share.entries_with_packets,
        share.entry_packets
    );
    sw.set(key::CT_KERNEL, share.pct);
    if let Err(e) = share.check() {
        eprintln!("    ASSERTION FAILED: {e:#}");
        sw.fail(key::CT_KERNEL, round, &format!("{e:#}"));
    }
    let mut details = ct::details(
        plain.as_ref(),
        Some(&warmup),
        with_ct.as_ref(),
        Some(&share),
    );
    details["ingress_xdp_mode"] = json!(ingress_xdp);
    details["gro_turned_on_on_vsrc"] = json!(gro);
    details["gro_turned_on_on_vsink"] = json!(sink_gro);
    details["setup"] = xvs.setup();
    details["dump_flows"] = xvs.ctl(&["dump-flows"]).unwrap_or(Value::Null);
    details["final_state"] = xvs.final_state();
    xvs.check()?;
    drop(xvs);
    drop(topo);
    proc::sleep(Duration::from_secs_f64(args.settle))?;
    Ok(details)
}

/// The egress scenario on one switch: TCP container → outside through the host's masquerade,
/// and (xvs) how much of it the kernel fast path forwarded.
fn run_egress(r: &Round<'_>, kind: Kind, sw: &mut SwitchReport) -> anyhow::Result<Value> {
    let (args, ctx, round) = (r.args, &r.ctx, r.round);
    if !egress::measures(kind) {
        return Ok(json!(
            "not measured: the scenario compares xvs with the bridge"
        ));
    }
    eprintln!("  egress: TCP (iperf3) container -> outside through the host's masquerade");
    let keys = [key::EGRESS, key::EGRESS_FAST_PATH];
    if !have("iperf3") || !have("nft") {
        let e = anyhow::anyhow!("the egress scenario needs iperf3 and nft");
        attempt::<()>(sw, round, &keys, Err(e))?;
        return Ok(json!({ "error": "iperf3 or nft is not installed" }));
    }
    let Some(mut lab) = attempt(sw, round, &keys, egress::Egress::create(kind, &r.env))? else {
        return Ok(json!({ "error": "setup failed" }));
    };
    let mut details = json!({
        "id": lab.id,
        "namespaces": [lab.host_ns, lab.container_ns, lab.outside_ns],
        "setup": lab.setup(),
    });
    let before = lab.port_counters();
    let ends = measure::TcpEnds {
        client_ns: &lab.container_ns,
        server_ns: &lab.outside_ns,
        server_ip: egress::OUTSIDE_IP,
    };
    let t = measure::tcp_between(ctx, &ends, args.tcp_duration, 1);
    let after = lab.port_counters();
    if let Some(t) = attempt(sw, round, &[key::EGRESS], t)? {
        eprintln!(
            "    {:.2} Gbit/s ({} retransmits)",
            t.gbps,
            t.retransmits.unwrap_or(0)
        );
        sw.set(key::EGRESS, t.gbps);
        details["tcp"] = serde_json::to_value(&t)?;
    }
    if let (Some(b), Some(a)) = (&before, &after) {
        let at =
            |v: &Value, path: &[&str]| path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0);
        let delta = |path: &[&str]| at(a, path).saturating_sub(at(b, path));
        // The container's port received `rx` packets, `kernel` of them forwarded by the fast
        // path (the rest went up to the workers).
        let rx = delta(&["rx_packets"]);
        let kernel = delta(&["fast_path", "rx_packets"]);
        if rx > 0 {
            let pct = 100.0 * kernel as f64 / rx as f64;
            eprintln!(
                "    fast path: {kernel} of the {rx} packets the container sent ({pct:.1} %)"
            );
            sw.set(key::EGRESS_FAST_PATH, pct);
        }
        details["container_port"] = json!({ "before": b, "after": a,
                                            "rx_packets": rx, "fast_path_rx_packets": kernel });
    }
    details["host_offloads"] = lab.host_offloads();
    lab.check()?;
    drop(lab);
    proc::sleep(Duration::from_secs_f64(args.settle))?;
    Ok(details)
}

/// The parts on the source/sink topology. Trial failures are recorded and the round goes on;
/// a failed setup or a dead switch ends the round (error).
fn run_standard(r: &Round<'_>, kind: Kind, sw: &mut SwitchReport) -> anyhow::Result<Value> {
    let (args, ctx, round) = (r.args, &r.ctx, r.round);
    // The switch is declared after the topology, so it is dropped (torn down) first.
    let mut topo = Topology::create()?;
    let mut switch = switch::start(kind, &mut topo, &r.env)?;
    let (ingress_xdp, gro) = ready(&mut topo)?;
    let mut details = json!({
        "round": round + 1,
        "loadavg_at_start": loadavg(),
        "topology": { "id": topo.id, "src_ns": topo.src_ns, "sink_ns": topo.sink_ns,
                      "vsrc": topo.vsrc, "vsink": topo.vsink },
        "ingress_xdp_mode": ingress_xdp,
        "gro_turned_on_on_vsrc": gro,
        "setup": switch.setup(),
    });
    let max = |size: u16, flows: u32| Load {
        size,
        flows,
        rate_pps: None,
        seconds: args.duration,
    };

    let mut forwarded64 = None;
    if args.wants(Part::Rate64) || args.wants(Part::ZeroLoss) {
        let seconds = (args.duration / 2.0).clamp(0.5, 2.0);
        eprintln!("  no traffic, {seconds} s");
        let w = measure::idle(ctx, switch.pid(), seconds)?;
        let busy = w.cpus.iter().map(cpu::CpuSeconds::busy).sum::<f64>() / w.seconds;
        let own = w
            .process
            .as_ref()
            .map_or(0.0, |p| (p.user + p.system) / w.seconds);
        eprintln!("    all CPUs busy {busy:.2}, the switch process {own:.2}");
        if busy - own > 0.2 {
            eprintln!(
                "    note: {:.2} CPUs busy with something else: expect noise",
                busy - own
            );
        }
        sw.set(key::IDLE_ALL, busy);
        if w.process.is_some() {
            sw.set(key::IDLE_PROC, own);
        }
        details["no_traffic"] = serde_json::to_value(&w)?;

        eprintln!("  64 B, 1 flow, max load");
        let mut keys = vec![key::RATE64.to_owned(), key::OFFERED64.to_owned()];
        keys.extend(cpu_keys(r.cpus));
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let t = measure::rate(ctx, &topo, &max(64, 1), Some(switch.pid()));
        if let Some(t) = attempt(sw, round, &keys, t)? {
            eprintln!("    {}", describe_rate(&t));
            if let Some(p) = t.cpu.as_ref().and_then(|w| w.process.as_ref()) {
                let threads: Vec<String> = p
                    .threads
                    .iter()
                    .take(3)
                    .map(|t| format!("{} {:.2}+{:.2}", t.name, t.user, t.system))
                    .collect();
                eprintln!(
                    "    switch process: user {:.2} s, system {:.2} s ({})",
                    p.user,
                    p.system,
                    threads.join(", ")
                );
            }
            sw.set(key::RATE64, t.forwarded_pps / 1e6);
            sw.set(key::OFFERED64, t.offered_pps / 1e6);
            cpu_figures(sw, &t);
            forwarded64 = Some(t.forwarded_pps);
            details["rate_64b_1flow"] = serde_json::to_value(&t)?;
        }
        switch.check()?;
    }
    if args.wants(Part::Flows) {
        eprintln!("  64 B, 1000 flows, max load");
        let t = measure::rate(ctx, &topo, &max(64, 1000), None);
        if let Some(t) = attempt(sw, round, &[key::RATE64_FLOWS], t)? {
            eprintln!("    {}", describe_rate(&t));
            sw.set(key::RATE64_FLOWS, t.forwarded_pps / 1e6);
            details["rate_64b_1000flows"] = serde_json::to_value(&t)?;
        }
        switch.check()?;
    }
    if args.wants(Part::ZeroLoss) {
        eprintln!("  64 B, 1 flow, zero-loss search");
        let outcome = match forwarded64 {
            Some(start) if start > 0.0 => {
                search::zero_loss(start, args.search_steps, args.loss_tolerance, |rate| {
                    let load = Load {
                        rate_pps: Some(rate),
                        seconds: args.search_duration,
                        ..max(64, 1)
                    };
                    let t = measure::rate(ctx, &topo, &load, None)?;
                    eprintln!(
                        "    at {:.3} Mpps: offered {:.3}, loss {:.4} % ({} at the source veth)",
                        rate / 1e6,
                        t.offered_pps / 1e6,
                        t.loss_pct,
                        t.source_tx_dropped.unwrap_or(0)
                    );
                    Ok::<_, anyhow::Error>(search::Probe {
                        offered_pps: t.offered_pps,
                        sent: t.sent,
                        received: t.received,
                        source_tx_dropped: t.source_tx_dropped,
                    })
                })
            }
            _ => Err(anyhow::anyhow!(
                "no max-load rate to start the search from (the 64 B trial failed)"
            )),
        };
        if let Some(o) = attempt(sw, round, &[key::ZERO_LOSS], outcome)? {
            eprintln!("    zero-loss rate {:.3} Mpps", o.zero_loss_pps / 1e6);
            sw.set(key::ZERO_LOSS, o.zero_loss_pps / 1e6);
            details["zero_loss_64b"] = serde_json::to_value(&o)?;
        }
        switch.check()?;
    }
    if args.wants(Part::Rate1518) {
        eprintln!("  1518 B, 1 flow, max load");
        let t = measure::rate(ctx, &topo, &max(1518, 1), None);
        if let Some(t) = attempt(sw, round, &[key::RATE1518, key::RATE1518_GBPS], t)? {
            eprintln!("    {}", describe_rate(&t));
            sw.set(key::RATE1518, t.forwarded_pps / 1e6);
            sw.set(key::RATE1518_GBPS, t.forwarded_bps / 1e9);
            details["rate_1518b_1flow"] = serde_json::to_value(&t)?;
        }
        switch.check()?;
    }
    if args.wants(Part::Latency) {
        eprintln!("  UDP round trips at {} requests/s", args.latency_rate);
        // Complete UDP checksums (no TX checksum offload), so that switches that forward the
        // raw frame without finishing a partial checksum (OVS AF_XDP, the bare XDP redirect)
        // deliver the requests too and every switch has a figure.
        let t = topo.with_namespace_offload("tx", false, |topo| {
            measure::rtt(ctx, topo, args.latency_rate, args.latency_duration)
        });
        if let Some(t) = attempt(sw, round, &[key::RTT_P50, key::RTT_P99], t)? {
            eprintln!(
                "    p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us ({} of {} answered)",
                t.p50_us, t.p99_us, t.p999_us, t.samples, t.sent
            );
            sw.set(key::RTT_P50, t.p50_us);
            sw.set(key::RTT_P99, t.p99_us);
            details["round_trip"] = serde_json::to_value(&t)?;
        }
        switch.check()?;
    }
    if args.wants(Part::Tcp) {
        for &TcpRow {
            label,
            key: k,
            streams,
            csum_off,
        } in &TCP_ROWS
        {
            eprintln!("  TCP (iperf3), {label}");
            let t = if !have("iperf3") {
                Err(anyhow::anyhow!("iperf3 is not installed"))
            } else {
                let tcp = |topo: &Topology| measure::tcp(ctx, topo, args.tcp_duration, streams);
                if csum_off {
                    topo.with_namespace_offload("tx", false, tcp)
                } else {
                    tcp(&topo)
                }
            };
            let t = t.map_err(|e| {
                if csum_off || is_interrupted(&e) {
                    e
                } else {
                    anyhow::anyhow!(
                        "{e:#} (likely cause: with default offloads a veth hands over TCP \
                         segments whose checksum is left to offload, CHECKSUM_PARTIAL; a \
                         datapath that forwards the raw frame without finishing the checksum \
                         delivers bad segments; compare the row with tx checksum offload off)"
                    )
                }
            });
            if let Some(t) = attempt(sw, round, &[k], t)? {
                eprintln!("    {:.2} Gbit/s", t.gbps);
                sw.set(k, t.gbps);
                details[k] = serde_json::to_value(&t)?;
            }
            switch.check()?;
        }
    }
    details["final_state"] = switch.final_state();
    drop(switch);
    drop(topo);
    proc::sleep(Duration::from_secs_f64(args.settle))?;
    Ok(details)
}

fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    args.apply_quick();
    let started = Instant::now();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    proc::install_signal_handlers()?;
    if !is_root() {
        bail!("xvs-e2e needs root (namespaces, veths, XDP, AF_XDP)");
    }
    for tool in ["ip", "ethtool", "taskset", "ping", "ss", "sysctl"] {
        if !have(tool) {
            bail!("{tool} is not installed");
        }
    }
    let ticks_per_s = cpu::ticks_per_second();
    let cpus = cpu::parse_proc_stat(&std::fs::read_to_string("/proc/stat")?).len();
    if args.gen_cpu == args.switch_cpu || args.gen_cpu >= cpus || args.switch_cpu >= cpus {
        bail!(
            "--gen-cpu {} and --switch-cpu {} must be two different CPUs of the {cpus} here",
            args.gen_cpu,
            args.switch_cpu
        );
    }
    let bins = find_bins(&args)?;
    let work = WorkDir {
        path: std::env::temp_dir().join(format!("xvs-e2e-{}", std::process::id())),
        keep: args.keep_logs,
    };
    std::fs::create_dir_all(&work.path)
        .with_context(|| format!("creating {}", work.path.display()))?;
    let xvsd_args: Vec<String> = args
        .xvsd_args
        .split_whitespace()
        .map(str::to_owned)
        .collect();

    let naming = report::Naming {
        cpus,
        gen_cpu: args.gen_cpu,
        switch_cpu: args.switch_cpu,
        latency_pps: args.latency_rate,
        tolerance_pct: args.loss_tolerance,
        egress: args.wants(Part::Egress),
        ct: args.wants(Part::Ct).then_some(args.ct_flows),
    };
    let figures: Vec<Figure> = report::figures(&naming);
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| args.only.contains(k))
        .collect();
    let mut switches: Vec<SwitchReport> = kinds
        .iter()
        .map(|k| {
            let mut s = SwitchReport::new(k.name(), !k.is_xvs(), &figures);
            if let Some(reason) = k.unavailable(&bins, &xvsd_args) {
                eprintln!("xvs-e2e: skipping {}: {reason}", k.name());
                s.skip(reason);
            }
            s
        })
        .collect();
    let host = host_info(ticks_per_s, cpus);
    let pinning = pinning_note(&args);
    eprintln!("xvs-e2e: {} trial(s); {pinning}", args.trials);

    let env = Env {
        bins: &bins,
        gen_cpu: args.gen_cpu,
        switch_cpu: args.switch_cpu,
        dir: &work.path,
        xvsd_args: &xvsd_args,
        xvs_rules: args.xvs_rules,
    };
    let ctx = Ctx {
        pktgen: &bins.pktgen,
        gen_cpu: args.gen_cpu,
        dir: &work.path,
        settle: Duration::from_secs_f64(args.settle),
        ticks_per_s,
    };
    let mut round_failures = vec![0usize; kinds.len()];
    let mut rounds_run = vec![0usize; kinds.len()];
    let mut interrupted = false;
    'rounds: for round in 0..args.trials as usize {
        for step in 0..kinds.len() {
            // Rotate the order each round, so no switch always runs first or last.
            let i = (step + round) % kinds.len();
            if switches[i].status == report::Status::Skipped {
                continue;
            }
            if check_interrupted().is_err() {
                interrupted = true;
                break 'rounds;
            }
            eprintln!(
                "== round {}/{}: {}",
                round + 1,
                args.trials,
                kinds[i].name()
            );
            let sw = &mut switches[i];
            sw.begin_round();
            rounds_run[i] += 1;
            let r = Round {
                args: &args,
                env,
                ctx,
                cpus,
                round,
            };
            match run_round(&r, kinds[i], sw) {
                Ok(details) => sw.rounds.push(details),
                // A Ctrl-C from a terminal reaches the tools and daemons too, and a dead
                // daemon may be what the round reports: still an interruption.
                Err(e) if is_interrupted(&e) || proc::interrupted() => {
                    interrupted = true;
                    sw.rounds
                        .push(json!({ "round": round + 1, "error": "interrupted" }));
                    rounds_run[i] -= 1;
                    break 'rounds;
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    eprintln!("  round failed: {msg}");
                    round_failures[i] += 1;
                    let unset: Vec<String> = sw
                        .figures
                        .iter()
                        .filter(|(_, f)| f.trials.last() == Some(&None))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in unset {
                        sw.fail(&k, round, &format!("round failed: {msg}"));
                    }
                    sw.rounds.push(json!({ "round": round + 1, "error": msg }));
                }
            }
        }
    }
    for (i, sw) in switches.iter_mut().enumerate() {
        sw.finish(round_failures[i], rounds_run[i], args.trials as usize);
        if sw.status == report::Status::Failed && sw.reason.is_none() {
            sw.reason = sw
                .rounds
                .iter()
                .find_map(|r| r["error"].as_str().map(str::to_owned));
        }
    }
    let ratios = report::ratios(&switches, &figures);
    let table = report::table(&switches, &figures, &ratios);

    outln!();
    outln!(
        "xvs-e2e: {} CPUs ({}), Linux {}; {} trial(s) per figure{}",
        cpus,
        host["cpu_model"].as_str().unwrap_or("?"),
        host["kernel"].as_str().unwrap_or("?"),
        args.trials,
        if interrupted { "; INTERRUPTED" } else { "" }
    );
    outln!("pinning: {pinning}");
    outln!(
        "cells: median (min-max) over the trials; xvs/peer: ratio of the medians (rates: \
         higher is better for xvs; latency and CPU: lower is). CPU rows: CPU-seconds per \
         million forwarded packets (= us per packet) during the 64 B 1-flow max-load trials. \
         The machine may be shared and noisy: read the ratios, not the absolute numbers."
    );
    for sw in &switches {
        if let Some(reason) = &sw.reason {
            outln!("{}: {:?}: {reason}", sw.name, sw.status);
        }
    }
    outln!();
    out!("{table}");

    if let Some(path) = &args.json {
        let config = json!({
            "trials": args.trials,
            "quick": args.quick,
            "only": kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
            "figures": args.figures.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>(),
            "gen_cpu": args.gen_cpu,
            "switch_cpu": args.switch_cpu,
            "max_load_trial_s": args.duration,
            "search_step_s": args.search_duration,
            "search_steps": args.search_steps,
            "loss_tolerance_pct": args.loss_tolerance,
            "latency_rate_pps": args.latency_rate,
            "latency_trial_s": args.latency_duration,
            "tcp_trial_s": args.tcp_duration,
            "settle_s": args.settle,
            "xvsd_args": xvsd_args,
            "xvs_rules": args.xvs_rules,
            "ct_flows": args.ct_flows,
            "bins": { "xvsd": bins.xvsd, "xvsctl": bins.xvsctl, "xvs_pktgen": bins.pktgen },
        });
        let doc = json!({
            "tool": "xvs-e2e",
            "version": env!("CARGO_PKG_VERSION"),
            "started_unix_s": started_unix,
            "elapsed_s": started.elapsed().as_secs_f64(),
            "interrupted": interrupted,
            "host": host,
            "config": config,
            "pinning": pinning,
            "figures": figures,
            "switches": switches,
            "ratios": ratios,
            "table": table,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("xvs-e2e: wrote {}", path.display());
    }
    Ok(if interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xvs-e2e: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("xvs-e2e").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn switches_and_figures_parse() {
        let default = parse(&[]);
        assert_eq!(
            default.only,
            [Kind::Xvs, Kind::Bridge, Kind::Ovs, Kind::Xdp]
        );
        assert!(default.wants(Part::Tcp) && default.wants(Part::Latency));
        assert!(!default.wants(Part::Egress), "egress is opt-in");
        assert!(!default.wants(Part::Ct), "ct is opt-in");
        assert_eq!(parse(&["--figures", "ct"]).figures, [Part::Ct]);
        assert_eq!(parse(&[]).ct_flows, 1);
        assert!(Args::try_parse_from(["xvs-e2e", "--ct-flows", "0"]).is_err());
        assert_eq!(parse(&["--figures", "egress"]).figures, [Part::Egress]);
        let a = parse(&[
            "--only",
            "xvs,xvs-xdp,xvs-tc,bridge,ovs-afxdp",
            "--figures",
            "tcp",
        ]);
        assert_eq!(
            a.only,
            [
                Kind::Xvs,
                Kind::XvsXdp,
                Kind::XvsTc,
                Kind::Bridge,
                Kind::Ovs
            ]
        );
        assert_eq!(a.figures, [Part::Tcp]);
        assert!(Args::try_parse_from(["xvs-e2e", "--only", "xvs-afxdp"]).is_err());
        assert_eq!(Kind::XvsTc.xvs_hook(), Some("tc"));
        assert_eq!(Kind::Xvs.xvs_hook(), None);
        assert!(Kind::XvsXdp.is_xvs() && !Kind::Bridge.is_xvs());
    }
}
