//! xvsd: the xvs switch daemon.
//!
//! Runs in the foreground: starts the workers, adds the `--port`s, serves the command socket,
//! and on SIGINT or SIGTERM stops the workers and detaches every XDP program (the programs are
//! attached through bpf_links, so even SIGKILL leaves none behind).
//!
//! Under systemd (`Type=notify`, docs/systemd/xvsd.service) it says `READY=1` once it
//! serves, `STOPPING=1` when it stops, and pings the watchdog while every worker progresses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use control::daemon::Daemon;
use control::metrics::Metrics;
use control::notify::Notifier;
use control::server::Listener;
use control::watchdog::Watchdog;
use dataplane::{HookChoice, Switch, SwitchOptions};
use xvs_proto::ports::AddPortParams;
use xvs_proto::{DEFAULT_SOCKET, Response};

#[derive(Debug, Parser)]
#[command(version, about = "The xvs userspace switch daemon")]
struct Args {
    /// An interface to switch (repeatable; more can be added at run time with xvsctl add-port).
    #[arg(long = "port", value_name = "IF")]
    ports: Vec<String>,
    /// CPUs for the poll-mode workers, one worker per CPU: "1", "0,1" or "0-3".
    #[arg(long, value_name = "LIST")]
    cpus: Option<String>,
    /// The command socket.
    #[arg(long, value_name = "PATH", env = "XVS_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Frames in the UMEM (2 KiB each); the UMEM is locked memory. Default: 16384 with
    /// CAP_IPC_LOCK, else what RLIMIT_MEMLOCK allows.
    #[arg(long)]
    umem_frames: Option<u32>,
    /// Never sleep: poll even when there is no traffic (lowest latency, one busy CPU per worker).
    #[arg(long)]
    busy_poll: bool,
    /// Seconds before a silent MAC address is forgotten.
    #[arg(long, default_value_t = 300)]
    mac_age: u64,
    /// Forward decided flows in the kernel by tc or XDP redirect (on where the kernel supports
    /// it), or everything through userspace (off).
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = ["on", "off"])]
    fast_path: String,
    /// Most MAC addresses learned.
    #[arg(long, default_value_t = flowtable::mac_table::DEFAULT_CAPACITY)]
    mac_max: usize,
    /// The kernel hook of ports: tc at tcx ingress (a veth's peer keeps GSO and TSO; misses
    /// reach the workers through the upcall device), XDP (the packet-rate mode, and the one
    /// for NICs), or auto: tc for veths, XDP for everything else. `add-port --hook` overrides
    /// it per port.
    #[arg(long, value_name = "auto|tc|xdp", default_value = "auto")]
    hook: HookChoice,
    /// The upcall device's name (a veth pair, this name and this name with "x" after it).
    /// Default: xvs-upcall with the default socket, else one derived from the socket's path,
    /// so that daemons with different sockets never share one.
    #[arg(long, value_name = "NAME")]
    upcall_dev: Option<String>,
    /// Serve GET /metrics in the Prometheus text format on this address, e.g.
    /// 127.0.0.1:9477 (off by default; the page is open to whoever reaches the address).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
}

/// The upcall device of a daemon serving `socket`: a name that fits IFNAMSIZ with its far
/// end's `x`, the same for the same socket every time (a restart removes its predecessor's).
fn upcall_name(socket: &Path) -> String {
    if socket == Path::new(DEFAULT_SOCKET) {
        return dataplane::switch::DEFAULT_UPCALL.to_owned();
    }
    // FNV-1a: small, stable across builds.
    let hash = socket
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0x811c_9dc5u32, |h, &b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
    format!("xvsu{hash:08x}")
}

fn parse_cpus(list: &str) -> anyhow::Result<Vec<Option<usize>>> {
    let mut cpus = Vec::new();
    for part in list.split(',') {
        let part = part.trim();
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let lo: usize = lo
            .parse()
            .with_context(|| format!("bad CPU {lo:?} in --cpus"))?;
        let hi: usize = hi
            .parse()
            .with_context(|| format!("bad CPU {hi:?} in --cpus"))?;
        if hi < lo {
            bail!("bad CPU range {part:?} in --cpus");
        }
        cpus.extend((lo..=hi).map(Some));
    }
    if cpus.is_empty() {
        bail!("--cpus names no CPU");
    }
    Ok(cpus)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Err(e) = run(args) {
        tracing::error!("{e:#}");
        std::process::exit(1);
    }
    Ok(())
}

fn run(args: Args) -> anyhow::Result<()> {
    let workers = match &args.cpus {
        Some(list) => parse_cpus(list)?,
        None => vec![None],
    };
    let listener = Listener::bind(&args.socket)?;
    let mut metrics = args.metrics.map(Metrics::serve).transpose()?;
    let options = SwitchOptions {
        workers,
        umem_frames: args
            .umem_frames
            .unwrap_or_else(|| dataplane::switch::default_umem_frames(2048)),
        busy_poll: args.busy_poll,
        fast_path: args.fast_path == "on",
        hook: args.hook,
        upcall: args
            .upcall_dev
            .clone()
            .unwrap_or_else(|| upcall_name(&args.socket)),
        ..SwitchOptions::default()
    };
    let mut config = flowtable::Config::default();
    config.mac_capacity = args.mac_max;
    config.mac_max_age_ns = args.mac_age.saturating_mul(1_000_000_000);
    let switch = Switch::start(options, config)?;
    let mut daemon = Daemon::new(switch);
    for name in &args.ports {
        daemon
            .add_port(AddPortParams {
                name: name.clone(),
                ..AddPortParams::default()
            })
            .with_context(|| format!("adding port {name}"))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    let (calls_tx, calls) = mpsc::channel();
    listener.serve(calls_tx)?;
    tracing::info!(socket = %listener.path().display(), "xvsd ready");
    let notifier = Notifier::from_env();
    notifier.ready(&format!("serving {}", listener.path().display()));
    let mut watchdog = Watchdog::new(&notifier);
    let mut last_tick = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match calls.recv_timeout(Duration::from_millis(100)) {
            Ok((request, reply)) => {
                let id = request.id.clone();
                let response = match daemon.handle(&request.method, request.params) {
                    Ok(result) => Response::ok(id, result),
                    Err(error) => {
                        tracing::debug!(method = request.method, "request failed: {error}");
                        Response::err(id, error)
                    }
                };
                let _ = reply.send(response);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_tick.elapsed() >= Duration::from_millis(200) {
            daemon.tick();
            last_tick = Instant::now();
        }
        watchdog.tick(&daemon);
        if let Some(metrics) = &mut metrics {
            metrics.refresh(&daemon);
        }
    }
    tracing::info!("stopping");
    notifier.stopping();
    daemon.shutdown();
    drop(listener);
    tracing::info!("stopped; XDP programs detached");
    Ok(())
}
