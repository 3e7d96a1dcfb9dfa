//! xvs-pktgen: a packet generator and counter for loading and measuring xvs.
//!
//! `send` makes UDP frames (IPv4 or IPv6, one size or a range, any number of flows) with XDP
//! live frames, the kernel's own fast path, or AF_XDP; `count` counts them at the other end;
//! `rtt` times UDP request/response round trips between two sockets.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use flowtable::wire::EthernetAddress;
use xvs_sys::{out, outln};
use xvs_tools::count::{self, CountConfig, CountMode};
use xvs_tools::pace::Rate;
use xvs_tools::packet::{DEFAULT_DST_PORT, DEFAULT_SRC_PORT, SizeRange};
use xvs_tools::report::Sample;
use xvs_tools::rtt::{self, ClientConfig};
use xvs_tools::send::{self, SendConfig, SendMode};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Packet generator and counter for xvs (XDP live frames, AF_XDP)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send UDP frames out of an interface.
    Send(SendArgs),
    /// Count (or receive and inspect) the frames that arrive on an interface.
    Count(CountArgs),
    /// UDP request/response round trips: an echo server, or a client that times the echoes.
    Rtt(RttArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// XDP live frames where the kernel has it (Linux 5.18), else AF_XDP.
    Auto,
    /// XDP live frames only.
    Live,
    /// AF_XDP TX in copy mode.
    Afxdp,
}

#[derive(Debug, clap::Args)]
struct SendArgs {
    /// The interface to send from.
    #[arg(long, value_name = "IF")]
    dev: String,
    /// Ethernet destination address.
    #[arg(long, value_name = "MAC")]
    dst_mac: EthernetAddress,
    /// Ethernet source address [default: the interface's].
    #[arg(long, value_name = "MAC")]
    src_mac: Option<EthernetAddress>,
    /// IP source address (the first; more flows than source ports add to it) [default:
    /// 198.18.0.1, or 2001:2::1 with --ipv6].
    #[arg(long, value_name = "ADDR")]
    src_ip: Option<IpAddr>,
    /// IP destination address [default: 198.18.0.2, or 2001:2::2 with --ipv6].
    #[arg(long, value_name = "ADDR")]
    dst_ip: Option<IpAddr>,
    /// Send IPv6 (implied by IPv6 addresses).
    #[arg(long)]
    ipv6: bool,
    /// The first UDP source port; flows take the ports from here up (the source port of
    /// every frame with --reply).
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_SRC_PORT)]
    src_port: u16,
    /// UDP destination port (the first, with --reply).
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_DST_PORT)]
    dst_port: u16,
    /// Send the replies of another run's flows: flows take destination ports from --dst-port
    /// up. With that run's addresses, MACs and ports swapped and the same --flows, flow `f`
    /// here is the reverse of its flow `f` (as a stateful firewall needs to see to call a
    /// connection established).
    #[arg(long)]
    reply: bool,
    /// Frame size on the wire, FCS included (the frames handed to the kernel are 4 bytes
    /// shorter): one size, or a range A..B whose sizes are sent in turn.
    #[arg(long, value_name = "BYTES", default_value = "64")]
    size: SizeRange,
    /// Flows (distinct UDP source ports, then source addresses) sent in turn.
    #[arg(long, value_name = "N", default_value_t = 1)]
    flows: u32,
    /// Packets per second (e.g. 10000, 250k, 2M), or max. Live frames paces in the kernel and
    /// keeps its CPU busy even at low rates; AF_XDP sleeps between batches.
    #[arg(long, value_name = "PPS", default_value = "max")]
    rate: Rate,
    /// Seconds to send.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    duration: f64,
    /// Run on this CPU.
    #[arg(long, value_name = "N")]
    cpu: Option<usize>,
    /// How to send.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    mode: Mode,
    /// Frames the kernel sends per batch in live-frames mode (1..=256).
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    batch: u32,
    /// Stamp every frame with a sequence number and the send time, for `count --latency`
    /// (sends through AF_XDP).
    #[arg(long)]
    latency: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Where `count` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Sink {
    /// An XDP program: the cheapest, but blind to packets that a peer's `bpf_redirect_peer`
    /// put into the interface (they skip its NAPI).
    Xdp,
    /// A tc program at tcx ingress (Linux 6.6): sees every packet the stack would receive,
    /// a GSO skb counted as its segments.
    Tc,
}

#[derive(Debug, clap::Args)]
struct CountArgs {
    /// The interface to count on.
    #[arg(long, value_name = "IF")]
    dev: String,
    /// Seconds to count [default: until Ctrl-C].
    #[arg(long, value_name = "S")]
    duration: Option<f64>,
    /// Where the counting program runs.
    #[arg(long, value_enum, default_value_t = Sink::Xdp)]
    sink: Sink,
    /// Receive through AF_XDP and report the latency of stamped frames (`send --latency`),
    /// with loss from sequence gaps.
    #[arg(long, conflicts_with = "sink")]
    latency: bool,
    /// Receive through AF_XDP and check every frame: checksums, flows, sizes.
    #[arg(long, conflicts_with = "sink")]
    inspect: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("role").required(true).args(["server", "client"])))]
struct RttArgs {
    /// Echo every datagram that comes to this address back to its sender.
    #[arg(long, value_name = "ADDR:PORT")]
    server: Option<SocketAddr>,
    /// Send requests to the echo server at this address and time the replies.
    #[arg(long, value_name = "ADDR:PORT")]
    client: Option<SocketAddr>,
    /// Requests per second (client; e.g. 10000, 10k).
    #[arg(long, value_name = "PPS", default_value = "1000")]
    rate: Rate,
    /// Seconds to send (client) [default: 10], or to serve [default: until Ctrl-C].
    #[arg(long, value_name = "S")]
    duration: Option<f64>,
    /// Milliseconds a reply may take: later ones are counted late, not timed; the client
    /// waits this long for the last ones.
    #[arg(long, value_name = "MS", default_value_t = 1000.0)]
    timeout: f64,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

fn seconds(s: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{what} wants a positive number of seconds, not {s}"))
}

/// Prints a command's summary on stdout: as JSON, or as text.
fn print_summary<T: serde::Serialize + std::fmt::Display>(
    report: &T,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(report)?);
    } else {
        out!("{report}");
    }
    Ok(())
}

fn print_progress(sample: &Sample) {
    eprintln!("xvs-pktgen: {sample}");
}

fn print_notice(text: &str) {
    eprintln!("xvs-pktgen: {text}");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Our errors carry their causes in their own words: print the outermost only.
            eprintln!("xvs-pktgen: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // Ctrl-C and SIGTERM end a run early, with its summary; the XDP programs are detached as
    // the objects holding their links drop on the way out.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| anyhow::anyhow!("cannot install a signal handler: {e}"))?;
    }
    match cli.command {
        Command::Send(args) => {
            let config = SendConfig {
                dev: args.dev,
                dst_mac: args.dst_mac,
                src_mac: args.src_mac,
                src_ip: args.src_ip,
                dst_ip: args.dst_ip,
                ipv6: args.ipv6,
                src_port: args.src_port,
                dst_port: args.dst_port,
                reply: args.reply,
                sizes: args.size,
                flows: args.flows,
                rate: args.rate,
                duration: seconds(args.duration, "--duration")?,
                cpu: args.cpu,
                mode: match args.mode {
                    Mode::Auto => SendMode::Auto,
                    Mode::Live => SendMode::Live,
                    Mode::Afxdp => SendMode::Afxdp,
                },
                latency: args.latency,
                batch: args.batch,
            };
            let report = send::run(&config, &stop, &mut print_progress, &mut print_notice)?;
            print_summary(&report, args.json)?;
        }
        Command::Count(args) => {
            let config = CountConfig {
                dev: args.dev,
                duration: args
                    .duration
                    .map(|s| seconds(s, "--duration"))
                    .transpose()?,
                mode: match args.sink {
                    _ if args.latency || args.inspect => CountMode::Inspect,
                    Sink::Xdp => CountMode::Xdp,
                    Sink::Tc => CountMode::Tc,
                },
            };
            let report = count::run(&config, &stop, &mut print_progress, &mut print_notice)?;
            print_summary(&report, args.json)?;
        }
        Command::Rtt(args) => {
            let duration = args
                .duration
                .map(|s| seconds(s, "--duration"))
                .transpose()?;
            if let Some(addr) = args.server {
                let report = rtt::serve(addr, duration, &stop, &mut print_notice)?;
                print_summary(&report, args.json)?;
            } else if let Some(server) = args.client {
                let Rate::Pps(rate_pps) = args.rate else {
                    anyhow::bail!("rtt --client wants a rate in requests per second, not max");
                };
                let config = ClientConfig {
                    server,
                    rate_pps,
                    duration: duration.unwrap_or(Duration::from_secs(10)),
                    timeout: Duration::try_from_secs_f64(args.timeout / 1e3)
                        .ok()
                        .filter(|d| !d.is_zero())
                        .with_context(|| {
                            format!(
                                "--timeout wants a positive number of milliseconds, not {}",
                                args.timeout
                            )
                        })?,
                };
                let report = rtt::client(&config, &stop, &mut print_notice)?;
                print_summary(&report, args.json)?;
            }
        }
    }
    Ok(())
}
