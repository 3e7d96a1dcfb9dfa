//! xvsd: the xvs switch daemon.
//!
//! Runs in the foreground: restores the state saved in `--state-dir`, adds the `--port`s,
//! serves the command socket, and on SIGINT or SIGTERM stops the workers, deletes the
//! internal ports' interfaces and its NAT table, and detaches every program (the programs are attached through bpf_links, so even SIGKILL leaves none
//! behind). On SIGUSR2 it hands over instead: the programs stay attached, pinned for the next
//! xvsd on the same state directory, which adopts them (a restart that loses no packet of the
//! flows the kernel forwards).
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
use control::nat::Nat;
use control::notify::Notifier;
use control::server::Listener;
use control::store::{self, Store};
use control::watchdog::Watchdog;
use dataplane::{HookChoice, Switch, SwitchOptions};
use xvs_proto::ports::AddPortParams;
use xvs_proto::state::DesiredState;
use xvs_proto::{DEFAULT_SOCKET, Response};
use xvs_sys::netlink::LinkMonitor;

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
    /// it), or everything through userspace (off). Default: as saved (set-fast-path), else on.
    #[arg(long, value_name = "on|off", value_parser = ["on", "off"])]
    fast_path: Option<String>,
    /// Loop protection: a port whose broadcast and multicast frames come in faster than this
    /// many per second (a frame circulating in a loop; hosts send tens) has them dropped for
    /// 5 s, with a log line. 0 turns it off; `set-port P storm-limit N` limits one port.
    #[arg(long, value_name = "PPS", default_value_t = flowtable::config::DEFAULT_LOOP_GUARD_PPS)]
    loop_guard: u32,
    /// Most MAC addresses learned.
    #[arg(long, default_value_t = flowtable::mac_table::DEFAULT_CAPACITY)]
    mac_max: usize,
    /// The kernel hook of ports: tc at tcx ingress (a veth's peer keeps GSO and TSO; misses
    /// reach the workers through the upcall device), XDP (the packet-rate mode, and the one
    /// for NICs), or auto: tc for veths, XDP for everything else. `add-port --hook` overrides
    /// it per port.
    #[arg(long, value_name = "auto|tc|xdp", default_value = "auto")]
    hook: HookChoice,
    /// Where the desired state is saved (state.json) and restored from at start. One xvsd per
    /// directory.
    #[arg(long, value_name = "DIR", env = "XVS_STATE_DIR", default_value = store::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Set the saved state aside (as state.json.bad-TIME) and start empty.
    #[arg(long)]
    reset_state: bool,
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

/// The saved state to start from: none with `--reset-state` (the file set aside) or when
/// there is none yet.
fn saved_state(store: &Store, reset: bool) -> anyhow::Result<Option<DesiredState>> {
    if reset {
        if let Some(aside) = store.set_aside()? {
            tracing::warn!(file = %aside.display(), "saved state set aside; starting empty");
        }
        return Ok(None);
    }
    Ok(store.load()?)
}

/// A thread that raises `flag` on every link notification (an interface added, removed or
/// renamed).
fn watch_links(flag: Arc<AtomicBool>) -> anyhow::Result<()> {
    let mut monitor = LinkMonitor::open().context("subscribing to link notifications")?;
    std::thread::Builder::new()
        .name("xvs-links".into())
        .spawn(move || {
            loop {
                match monitor.wait() {
                    Ok(_) => flag.store(true, Ordering::Relaxed),
                    Err(e) => {
                        tracing::error!("link notifications stopped: {e}");
                        return;
                    }
                }
            }
        })?;
    Ok(())
}

fn run(args: Args) -> anyhow::Result<()> {
    let workers = match &args.cpus {
        Some(list) => parse_cpus(list)?,
        None => vec![None],
    };
    let store = Store::open(&args.state_dir)?;
    let saved = saved_state(&store, args.reset_state)?;
    let listener = Listener::bind(&args.socket)?;
    let mut metrics = args.metrics.map(Metrics::serve).transpose()?;
    let fast_path = match (&args.fast_path, &saved) {
        (Some(given), _) => given == "on",
        (None, Some(state)) => state.fast_path,
        (None, None) => true,
    };
    let upcall = args
        .upcall_dev
        .clone()
        .unwrap_or_else(|| upcall_name(&args.socket));
    let options = SwitchOptions {
        workers,
        umem_frames: args
            .umem_frames
            .unwrap_or_else(|| dataplane::switch::default_umem_frames(2048)),
        busy_poll: args.busy_poll,
        fast_path,
        hook: args.hook,
        upcall: upcall.clone(),
        handover: Some(store.handover_dir()),
        ..SwitchOptions::default()
    };
    let mut config = flowtable::Config::default();
    config.mac_capacity = args.mac_max;
    config.mac_max_age_ns = args.mac_age.saturating_mul(1_000_000_000);
    config.loop_guard_pps = args.loop_guard;
    let links_changed = Arc::new(AtomicBool::new(false));
    watch_links(links_changed.clone())?;
    let switch = Switch::start(options, config)?;
    let state_file = store.path();
    let mut daemon = Daemon::new(switch, Some(store));
    daemon.take_connections();
    if let Some(mut state) = saved {
        state.fast_path = fast_path;
        let absent = daemon
            .restore(state)
            .with_context(|| format!("restoring {}", state_file.display()))?;
        tracing::info!(
            ports = daemon.desired().ports.len(),
            rules = daemon.desired().rules.len(),
            ?absent,
            "state restored"
        );
    }
    for name in &args.ports {
        if daemon.desired().ports.contains_key(name) {
            continue;
        }
        daemon
            .add_port(AddPortParams {
                name: name.clone(),
                ..AddPortParams::default()
            })
            .with_context(|| format!("adding port {name}"))?;
    }
    // The host's NAT table, named after the upcall device (so after the socket): made to
    // hold what the restored state asks, replacing what a predecessor left.
    daemon.set_nat(Nat::new(control::nat::table_name(&upcall)));
    daemon.end_adoption();
    let stop = Arc::new(AtomicBool::new(false));
    let hand_over = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGUSR2, hand_over.clone())?;
    let (calls_tx, calls) = mpsc::channel();
    listener.serve(calls_tx)?;
    tracing::info!(socket = %listener.path().display(), "xvsd ready");
    let notifier = Notifier::from_env();
    notifier.ready(&format!("serving {}", listener.path().display()));
    let mut watchdog = Watchdog::new(&notifier);
    let mut last_tick = Instant::now();
    while !stop.load(Ordering::Relaxed) && !hand_over.load(Ordering::Relaxed) {
        match calls.recv_timeout(Duration::from_millis(50)) {
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
        if links_changed.swap(false, Ordering::Relaxed) {
            daemon.links_changed();
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
    if hand_over.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
        tracing::info!("handing over: the ports' programs stay attached for the next xvsd");
        drop(listener);
        let links = daemon.hand_over()?;
        tracing::info!(links, "handed over");
        return Ok(());
    }
    tracing::info!("stopping");
    notifier.stopping();
    daemon.shutdown();
    drop(listener);
    tracing::info!("stopped; XDP programs detached");
    Ok(())
}
