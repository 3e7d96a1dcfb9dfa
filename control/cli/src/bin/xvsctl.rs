//! xvsctl: program a running xvsd.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde::Serialize;
use serde_json::{Value, json};
use xvs_proto::client::Client;
use xvs_proto::counters::{DumpPortsParams, DumpPortsResult};
use xvs_proto::fast_path::{DumpFastPathResult, SetFastPathParams};
use xvs_proto::fdb::FdbShowResult;
use xvs_proto::flows::{
    ConntrackParams, DelFlowsParams, DumpConntrackResult, DumpFlowsParams, DumpFlowsResult,
    FlowParams, FlowsParams, TraceParams, TraceResult,
};
use xvs_proto::meta::{CommandInfo, VersionResult};
use xvs_proto::methods::*;
use xvs_proto::ports::{AddPortParams, PortName, SetPortParams};
use xvs_proto::router::{
    AddrParams, RouteEntry, RouteParams, ShowAddrsResult, ShowNeighborsResult, ShowRoutesResult,
};
use xvs_proto::state::{DesiredState, Internal};
use xvs_proto::status::ShowResult;
use xvs_proto::{DEFAULT_SOCKET, Empty, Method, VlanSpec};
use xvs_sys::outln;

#[derive(Debug, Parser)]
#[command(version, about = "Program a running xvsd", propagate_version = true)]
struct Cli {
    /// The daemon's command socket.
    #[arg(long, global = true, value_name = "PATH", env = "XVS_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print JSON (stable field names) instead of tables.
    #[arg(short, long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Ports, their hooks (tc, XDP and its mode), queues, workers and uptime.
    Show,
    /// The desired state xvsd keeps, saves and restores at start: ports by name (present
    /// or absent), rules, router addresses, routes, the fast path.
    ShowConfig,
    /// Switch an interface (hot add), or with `--type internal` give the host an interface
    /// of that name on the switch (xvsd makes it, with the `--ip` addresses; its switch side
    /// is NAME-sw).
    AddPort {
        /// The interface.
        name: String,
        /// `internal`: xvsd makes the interface, for the host's own traffic.
        #[arg(long = "type", value_name = "TYPE", value_parser = ["internal"])]
        kind: Option<String>,
        /// The internal port's addresses (ADDR/LEN, comma-separated or repeated).
        #[arg(
            long = "ip",
            value_name = "CIDR",
            value_delimiter = ',',
            requires = "kind"
        )]
        ips: Vec<String>,
        /// Masquerade what the internal port's IPv4 subnets send out of the host's other
        /// interfaces (the host's kernel NATs; forwarding is turned on).
        #[arg(long, requires = "kind")]
        masquerade: bool,
        /// Serve only the first N queues (default: all).
        #[arg(long)]
        queues: Option<u32>,
        /// Force the kernel hook (default: xvsd's: tc for veths, XDP otherwise).
        #[arg(long, value_parser = ["tc", "xdp"])]
        hook: Option<String>,
        /// Force the XDP mode.
        #[arg(long, value_parser = ["drv", "skb"])]
        xdp_mode: Option<String>,
        /// Put the port in VLAN N as an access port.
        #[arg(long, visible_alias = "vlan", value_name = "N")]
        tag: Option<u16>,
    },
    /// Give an interface back to the kernel (hot remove).
    DelPort {
        /// The interface.
        name: String,
    },
    /// Change a port's settings: `set-port IF vlan all|access N|trunk LIST [native N]`,
    /// `mac-limit N|none` (most MACs learned on it; frames from new sources past it are
    /// dropped), `mac-lock MAC[,MAC]|none` (frames from other sources dropped),
    /// `storm-limit PPS|none` (broadcast and multicast frames per second it takes in),
    /// `masquerade on|off` (an internal port's subnets NATed going out).
    SetPort {
        /// The interface.
        name: String,
        /// What to set, followed by its value.
        #[arg(num_args = 1.., required = true)]
        setting: Vec<String>,
    },
    /// Packet, byte and drop counters per port and per worker.
    DumpPorts {
        /// Only this port.
        name: Option<String>,
        /// Show per-second rates, refreshed until interrupted.
        #[arg(long)]
        rate: bool,
        /// Seconds between refreshes with --rate.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Stop --rate after this many refreshes.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Install a rule, in ovs-ofctl syntax, e.g. "priority=100,tcp,tp_dst=80,actions=drop".
    AddFlow {
        /// The rule.
        flow: String,
    },
    /// Install the rules of a file, one per line (blank lines and `#` comments skipped), all
    /// at once, or none if one is bad (as `ovs-ofctl add-flows`).
    AddFlows {
        /// The file (`-` for standard input).
        file: PathBuf,
    },
    /// Delete the rules a match covers (all rules without a match).
    DelFlows {
        /// The match, e.g. "icmp,nw_dst=10.0.0.2".
        #[arg(value_name = "MATCH")]
        pattern: Option<String>,
        /// Delete only the rule with exactly this match and priority.
        #[arg(long)]
        strict: bool,
    },
    /// The rules, with the packets and bytes each decided (only those a match selects, e.g.
    /// "table=1" or "cookie=0x5/0xff").
    DumpFlows {
        /// The match.
        #[arg(value_name = "MATCH")]
        pattern: Option<String>,
    },
    /// What the switch does with a packet (ofproto/trace): every table and rule it meets,
    /// conntrack, the learning switch and the router, the final actions, and whether the
    /// decision is cached and offloaded. E.g. "in_port=p1,tcp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_dst=80".
    Trace {
        /// The packet, as a match.
        flow: String,
    },
    /// The connections the switch tracks.
    DumpConntrack {
        /// Only this zone.
        #[arg(long)]
        zone: Option<u16>,
    },
    /// Forget tracked connections (their packets are tracked afresh).
    FlushConntrack {
        /// Only this zone.
        #[arg(long)]
        zone: Option<u16>,
    },
    /// Give the router an address on a port (by name) or a VLAN (vlanN).
    AddAddr {
        /// A port name, or vlanN.
        name: String,
        /// The address with its prefix length, e.g. 10.1.0.254/24 or fd00:1::fe/64.
        addr: String,
        /// The MAC to answer with (default: the port's, or one derived from the VLAN).
        #[arg(long)]
        mac: Option<String>,
    },
    /// Remove a router address.
    DelAddr {
        /// A port name, or vlanN.
        name: String,
        /// The address.
        addr: String,
    },
    /// Router interfaces and their addresses.
    ShowAddrs,
    /// Add a static route: `add-route PREFIX via NEXT-HOP`.
    AddRoute {
        /// The destination, e.g. 10.2.0.0/16.
        prefix: String,
        /// The word `via`.
        #[arg(value_parser = ["via"])]
        via_keyword: String,
        /// The next hop (on a connected network).
        via: String,
    },
    /// Remove a static route.
    DelRoute {
        /// The destination.
        prefix: String,
    },
    /// Connected and static routes.
    ShowRoutes,
    /// Next hops the router resolved (ARP and ND).
    ShowNeighbors,
    /// Flows the kernel forwards (tc or XDP redirect), with their counters.
    DumpFastPath,
    /// Turn the in-kernel fast path on or off without stopping traffic.
    SetFastPath {
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// The MAC learning table.
    Fdb {
        #[command(subcommand)]
        action: FdbCmd,
    },
    /// Daemon version.
    Version,
    /// What the daemon understands.
    ListCommands,
    /// Wire a network namespace (container) to the switch with a new veth pair.
    Attach(xvs_cli::attach::AttachArgs),
    /// Undo `attach`: remove the port and delete the veth.
    Detach(xvs_cli::attach::DetachArgs),
    /// Send a raw request: `call METHOD [JSON-PARAMS]`.
    Call {
        /// The method.
        method: String,
        /// Parameters as a JSON object.
        params: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum FdbCmd {
    /// List learned addresses (mac, vlan, port, age).
    Show,
    /// Forget every learned address.
    Flush,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("xvsctl: {}", xvs_cli::message::one_line(&e));
        std::process::exit(1);
    }
}

fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        outln!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// A cell for something that may be absent: `-` when it is.
fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A number of seconds as JSON writes it (`1.0`, `0.25`), as the tables always showed them.
fn seconds(value: f64) -> String {
    serde_json::to_string(&value).expect("numbers serialize")
}

fn parse_vlan(words: &[String]) -> anyhow::Result<VlanSpec> {
    let num = |w: &str| -> anyhow::Result<u16> {
        w.parse()
            .with_context(|| format!("{w:?} is not a VLAN number"))
    };
    match words {
        [mode] if mode == "all" => Ok(VlanSpec::All),
        [mode, tag] if mode == "access" => Ok(VlanSpec::Access { tag: num(tag)? }),
        [mode, list, rest @ ..] if mode == "trunk" => {
            let trunks = list
                .split(',')
                .filter(|w| !w.is_empty())
                .map(num)
                .collect::<anyhow::Result<Vec<_>>>()?;
            let native = match rest {
                [] => None,
                [kw, n] if kw == "native" => Some(num(n)?),
                _ => bail!("after the trunk list, only `native N` may follow"),
            };
            Ok(VlanSpec::Trunk { trunks, native })
        }
        _ => bail!("usage: vlan all | vlan access N | vlan trunk N[,N...] [native N]"),
    }
}

fn vlan_cell(vlan: &VlanSpec) -> String {
    match vlan {
        VlanSpec::All => "all".into(),
        VlanSpec::Access { tag } => format!("access {tag}"),
        VlanSpec::Trunk { trunks, .. } => {
            let list: Vec<String> = trunks.iter().map(u16::to_string).collect();
            format!("trunk [{}]", list.join(","))
        }
    }
}

/// `set-port IF SETTING VALUE...`: one setting.
fn parse_set_port(name: String, setting: &[String]) -> anyhow::Result<SetPortParams> {
    let (what, rest) = setting.split_first().expect("clap requires one");
    let mut params = SetPortParams {
        name,
        ..SetPortParams::default()
    };
    // A count, or `none` (0 on the wire) for no limit.
    let limit =
        |what: &str| -> anyhow::Result<u32> {
            match rest {
                [n] if n == "none" => Ok(0),
                [n] => n.parse::<u32>().ok().filter(|&n| n > 0).with_context(|| {
                    format!("{what} takes a positive number or `none`, not {n:?}")
                }),
                _ => bail!("{what} takes one value: a positive number or `none`"),
            }
        };
    match what.as_str() {
        "vlan" => params.vlan = Some(parse_vlan(rest)?),
        "mac-limit" => params.mac_limit = Some(limit("mac-limit")?),
        "storm-limit" => params.storm_limit = Some(limit("storm-limit")?),
        "mac-lock" => {
            params.mac_lock = Some(match rest {
                [macs] if macs == "none" => Vec::new(),
                [macs] => macs.split(',').map(str::to_owned).collect(),
                _ => bail!("mac-lock takes MAC[,MAC...] or `none`"),
            });
        }
        "masquerade" => {
            params.masquerade = Some(match rest {
                [v] if v == "on" => true,
                [v] if v == "off" => false,
                _ => bail!("masquerade takes `on` or `off`"),
            });
        }
        other => bail!(
            "set-port knows vlan, mac-limit, mac-lock, storm-limit and masquerade, not {other:?}"
        ),
    }
    Ok(params)
}

fn print_config(r: &DesiredState) {
    println!("fast path {}", if r.fast_path { "on" } else { "off" });
    for (name, port) in &r.ports {
        let mut line = format!("port {name}: vlan {}", vlan_cell(&port.vlan));
        if let Some(hook) = &port.hook {
            line += &format!(", hook {hook}");
        }
        if let Some(mode) = &port.xdp_mode {
            line += &format!(", xdp_mode {mode}");
        }
        if let Some(queues) = port.queues {
            line += &format!(", queues {queues}");
        }
        if !port.mac_lock.is_empty() {
            line += &format!(", mac-lock {}", port.mac_lock.join(","));
        }
        if let Some(limit) = port.mac_limit {
            line += &format!(", mac-limit {limit}");
        }
        if let Some(limit) = port.storm_limit {
            line += &format!(", storm-limit {limit}");
        }
        if let Some(internal) = &port.internal {
            line += ", internal";
            if !internal.addrs.is_empty() {
                line += &format!(" {}", internal.addrs.join(","));
            }
            if internal.masquerade {
                line += ", masquerade";
            }
        }
        for p in &port.publish {
            line += &format!(
                ", publish {}:{}:{}/{}",
                p.host_port,
                p.addr,
                p.port,
                p.proto.as_str()
            );
        }
        if !port.external_ids.is_empty() {
            let ids: Vec<String> = port
                .external_ids
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            line += &format!(", external_ids {}", ids.join(","));
        }
        println!("{line}");
    }
    for rule in &r.rules {
        println!("rule {}: {}", rule.id, rule.flow);
    }
    for interface in &r.interfaces {
        let mac = interface
            .mac
            .as_deref()
            .map(|m| format!(" mac {m}"))
            .unwrap_or_default();
        println!(
            "addr {}: {}{mac}",
            interface.on.name(),
            interface.addrs.join(" ")
        );
    }
    for route in &r.routes {
        println!("route {} via {}", route.prefix, route.via);
    }
}

fn print_show(r: &ShowResult) {
    outln!(
        "xvsd {} up {:.0}s, {} worker(s), fast path {}",
        r.version,
        r.uptime_s,
        r.workers.len(),
        if r.fast_path { "on" } else { "off" }
    );
    let mut rows: Vec<Vec<String>> = r
        .ports
        .iter()
        .map(|p| {
            let queues: Vec<String> = p
                .queues
                .iter()
                .map(|q| format!("{}:w{}/cpu{}", q.queue, q.worker, or_dash(q.cpu)))
                .collect();
            let ids: Vec<String> = p
                .external_ids
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let fast = &p.fast_path;
            let fast = if !fast.active {
                "off".to_owned()
            } else if fast.redirect_target || p.hook == "tc" {
                // A tc program redirects to any port; XDP needs a target that takes frames.
                format!("on, {} entries", fast.entries)
            } else {
                format!("rx only, {} entries", fast.entries)
            };
            vec![
                p.id.to_string(),
                p.name.clone(),
                p.ifindex.to_string(),
                p.mac.clone(),
                p.driver.clone(),
                match &p.xdp_mode {
                    Some(mode) => format!("{} {mode}", p.hook),
                    None => p.hook.clone(),
                },
                if p.zero_copy { "zc" } else { "copy" }.to_owned(),
                fast,
                queues.join(" "),
                vlan_cell(&p.vlan),
                ids.join(","),
            ]
        })
        .collect();
    // A configured port whose interface is missing: attached when it appears.
    for p in &r.absent {
        let ids: Vec<String> = p
            .external_ids
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut row = vec!["-".to_owned(), p.name.clone()];
        row.extend(["-", "-", "-", "absent", "-", "-", "-"].map(str::to_owned));
        row.extend([vlan_cell(&p.vlan), ids.join(",")]);
        rows.push(row);
    }
    print_table(
        &[
            "ID",
            "PORT",
            "IFINDEX",
            "MAC",
            "DRIVER",
            "HOOK",
            "MODE",
            "FAST PATH",
            "QUEUES(q:worker/cpu)",
            "VLAN",
            "EXTERNAL_IDS",
        ],
        &rows,
    );
    for p in &r.absent {
        println!("absent: {}: {}", p.name, p.reason);
    }
}

fn print_fdb(r: &FdbShowResult) {
    let rows: Vec<Vec<String>> = r
        .entries
        .iter()
        .map(|e| {
            vec![
                e.mac.clone(),
                e.vlan.to_string(),
                or_dash(e.port.as_ref()),
                format!("{:.1}", e.age_s),
                if e.is_static { "static" } else { "learned" }.to_owned(),
            ]
        })
        .collect();
    print_table(&["MAC", "VLAN", "PORT", "AGE(s)", "TYPE"], &rows);
    outln!(
        "{} of at most {} entries; {} source(s) not learned for lack of room",
        r.entries.len(),
        r.capacity,
        r.not_learned
    );
}

fn print_flows(r: &DumpFlowsResult) {
    for f in &r.flows {
        outln!(
            " n_packets={}, n_bytes={}, {}",
            f.n_packets,
            f.n_bytes,
            f.flow
        );
    }
}

fn print_trace(r: &TraceResult) {
    outln!("Flow: {}", r.flow);
    if !r.assumed.is_empty() {
        outln!("(not given, assumed: {})", r.assumed.join(", "));
    }
    outln!();
    for line in &r.lines {
        let indent = "    ".repeat(usize::from(line.depth));
        match line.rule {
            Some(id) => outln!("{indent}{} (rule {id})", line.text),
            None => outln!("{indent}{}", line.text),
        }
    }
    outln!();
    outln!("Final actions: {}", r.decision);
    outln!(
        "Cached by the workers: {}; in the kernel fast path: {}",
        if r.cached {
            "yes"
        } else {
            "no (decided per packet)"
        },
        if r.kernel { "yes" } else { "no" }
    );
}

fn print_conntrack(r: &DumpConntrackResult) {
    for c in &r.connections {
        let mark = if c.mark != 0 {
            format!(",mark={:#x}", c.mark)
        } else {
            String::new()
        };
        outln!(
            "{},zone={},orig=({}),state={}{mark}",
            c.proto,
            c.zone,
            c.orig,
            c.state
        );
    }
    outln!(
        "{} connection(s); {} created, {} invalid packet(s), {} commit(s) refused (table full)",
        r.connections.len(),
        r.created,
        r.invalid,
        r.full
    );
}

fn print_addrs(r: &ShowAddrsResult) {
    let rows: Vec<Vec<String>> = r
        .interfaces
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                i.vlan.to_string(),
                or_dash(i.port.as_ref()),
                i.mac.clone(),
                i.addrs.join(" "),
            ]
        })
        .collect();
    print_table(&["INTERFACE", "VLAN", "PORT", "MAC", "ADDRESSES"], &rows);
}

fn print_routes(r: &ShowRoutesResult) {
    for route in &r.routes {
        match route {
            RouteEntry::Static { prefix, via, dev } => {
                outln!("{prefix} via {via} dev {}", or_dash(dev.as_ref()));
            }
            RouteEntry::Connected { prefix, dev } => outln!("{prefix} dev {dev} connected"),
        }
    }
}

fn print_neighbors(r: &ShowNeighborsResult) {
    let rows: Vec<Vec<String>> = r
        .neighbors
        .iter()
        .map(|n| {
            vec![
                n.ip.clone(),
                n.mac.clone(),
                or_dash(n.port.as_ref()),
                n.vlan.to_string(),
                seconds(n.age_s),
            ]
        })
        .collect();
    print_table(&["IP", "MAC", "PORT", "VLAN", "AGE(s)"], &rows);
}

fn print_fast_path(r: &DumpFastPathResult) {
    if !r.enabled {
        outln!("fast path off");
        return;
    }
    let rows: Vec<Vec<String>> = r
        .entries
        .iter()
        .map(|e| {
            vec![
                or_dash(e.in_port.as_ref()),
                e.dl_src.clone(),
                e.dl_dst.clone(),
                e.dl_type.clone(),
                e.action.clone(),
                or_dash(e.out_port.as_ref()),
                or_dash(e.rule),
                e.n_packets.to_string(),
                e.n_bytes.to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "IN_PORT",
            "DL_SRC",
            "DL_DST",
            "DL_TYPE",
            "ACTION",
            "OUT_PORT",
            "RULE",
            "N_PACKETS",
            "N_BYTES",
        ],
        &rows,
    );
}

fn print_version(r: &VersionResult) {
    outln!("xvsd {} (protocol {})", r.version, r.protocol);
}

#[expect(
    clippy::ptr_arg,
    reason = "a printer takes a reference to its method's result type, here a Vec"
)]
fn print_commands(r: &Vec<CommandInfo>) {
    let rows: Vec<Vec<String>> = r
        .iter()
        .map(|c| vec![c.name.clone(), c.params.clone(), c.help.clone()])
        .collect();
    print_table(&["COMMAND", "PARAMS", "WHAT"], &rows);
}

fn print_ports(r: &DumpPortsResult) {
    let rows: Vec<Vec<String>> = r
        .ports
        .iter()
        .map(|p| {
            let drops: Vec<String> = p
                .drops
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(cause, n)| format!("{cause}={n}"))
                .chain(
                    p.kernel
                        .named()
                        .into_iter()
                        .filter(|(_, n)| *n > 0)
                        .map(|(name, n)| format!("kernel.{name}={n}")),
                )
                .collect();
            vec![
                p.name.clone(),
                p.rx_packets.to_string(),
                p.rx_bytes.to_string(),
                p.tx_packets.to_string(),
                p.tx_bytes.to_string(),
                if drops.is_empty() {
                    "0".into()
                } else {
                    drops.join(" ")
                },
            ]
        })
        .collect();
    print_table(
        &[
            "PORT", "RX_PKTS", "RX_BYTES", "TX_PKTS", "TX_BYTES", "DROPS",
        ],
        &rows,
    );
    outln!();
    let rows: Vec<Vec<String>> = r
        .workers
        .iter()
        .map(|w| {
            let per_port: Vec<String> = w
                .ports
                .iter()
                .map(|p| {
                    format!(
                        "{}:rx={},tx={}",
                        or_dash(p.name.as_ref()),
                        p.rx_packets,
                        p.tx_packets
                    )
                })
                .collect();
            vec![
                w.id.to_string(),
                or_dash(w.cpu),
                w.cache_hits.to_string(),
                w.cache_misses.to_string(),
                w.cache_entries.to_string(),
                w.handoffs.to_string(),
                w.sleeps.to_string(),
                per_port.join(" "),
            ]
        })
        .collect();
    print_table(
        &[
            "WORKER",
            "CPU",
            "CACHE_HITS",
            "CACHE_MISSES",
            "ENTRIES",
            "HANDOFFS",
            "SLEEPS",
            "PORTS",
        ],
        &rows,
    );
}

/// Prints an attach/detach report: JSON, or its `summary` line.
fn print_report(report: &Value, json_out: bool) -> anyhow::Result<()> {
    if json_out {
        print_json(report);
    } else {
        outln!("{}", report["summary"].as_str().unwrap_or_default());
    }
    Ok(())
}

/// Prints JSON as the daemon sent it: keys in order, pretty.
fn print_json(r: &impl Serialize) {
    let value = serde_json::to_value(r).expect("results serialize");
    outln!(
        "{}",
        serde_json::to_string_pretty(&value).expect("JSON values serialize")
    );
}

/// Calls method `M` and prints its result: as JSON with `--json`, else with `print`.
fn call<M: Method>(
    socket: &Path,
    params: &M::Params,
    json_out: bool,
    print: fn(&M::Result),
) -> anyhow::Result<()> {
    let result = Client::connect(socket)?.call::<M>(params)?;
    if json_out {
        print_json(&result);
    } else {
        print(&result);
    }
    Ok(())
}

/// Prints nothing: the command's success is its exit status.
fn quiet<T>(_: &T) {}

fn run(cli: Cli) -> anyhow::Result<()> {
    let socket = cli.socket.as_path();
    let json = cli.json;
    match cli.command {
        Cmd::Attach(args) => print_report(&args.run(socket)?.report(), json),
        Cmd::Detach(args) => {
            print_report(&xvs_cli::attach::detach_report(&args.run(socket)?), json)
        }
        Cmd::Show => call::<Show>(socket, &Empty, json, print_show),
        Cmd::ShowConfig => call::<ShowConfig>(socket, &Empty, json, print_config),
        Cmd::AddPort {
            name,
            kind,
            ips,
            masquerade,
            queues,
            hook,
            xdp_mode,
            tag,
        } => {
            let params = AddPortParams {
                name,
                queues,
                hook,
                xdp_mode,
                vlan: tag.map(|tag| VlanSpec::Access { tag }),
                internal: kind.map(|_| Internal {
                    addrs: ips,
                    masquerade,
                }),
                ..AddPortParams::default()
            };
            call::<AddPort>(socket, &params, json, quiet)
        }
        Cmd::DelPort { name } => call::<DelPort>(socket, &PortName { name }, json, quiet),
        Cmd::SetPort { name, setting } => {
            let params = parse_set_port(name, &setting)?;
            call::<SetPort>(socket, &params, json, quiet)
        }
        Cmd::DumpPorts {
            name,
            rate,
            interval,
            count,
        } => {
            let params = DumpPortsParams { name };
            if rate {
                return dump_rates(socket, &params, interval, count, json);
            }
            call::<DumpPorts>(socket, &params, json, print_ports)
        }
        Cmd::Fdb { action } => match action {
            FdbCmd::Show => call::<FdbShow>(socket, &Empty, json, print_fdb),
            FdbCmd::Flush => call::<FdbFlush>(socket, &Empty, json, quiet),
        },
        Cmd::AddFlow { flow } => call::<AddFlow>(socket, &FlowParams { flow }, json, quiet),
        Cmd::AddFlows { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading standard input")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let flows = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect();
            call::<AddFlows>(socket, &FlowsParams { flows }, json, quiet)
        }
        Cmd::DelFlows { pattern, strict } => {
            call::<DelFlows>(socket, &DelFlowsParams { pattern, strict }, json, quiet)
        }
        Cmd::DumpFlows { pattern } => {
            call::<DumpFlows>(socket, &DumpFlowsParams { pattern }, json, print_flows)
        }
        Cmd::Trace { flow } => call::<Trace>(socket, &TraceParams { flow }, json, print_trace),
        Cmd::DumpConntrack { zone } => {
            call::<DumpConntrack>(socket, &ConntrackParams { zone }, json, print_conntrack)
        }
        Cmd::FlushConntrack { zone } => {
            call::<FlushConntrack>(socket, &ConntrackParams { zone }, json, |r| {
                outln!("{} connection(s) forgotten", r.flushed)
            })
        }
        Cmd::AddAddr { name, addr, mac } => {
            call::<AddAddr>(socket, &AddrParams { name, addr, mac }, json, quiet)
        }
        Cmd::DelAddr { name, addr } => {
            let params = AddrParams {
                name,
                addr,
                mac: None,
            };
            call::<DelAddr>(socket, &params, json, quiet)
        }
        Cmd::ShowAddrs => call::<ShowAddrs>(socket, &Empty, json, print_addrs),
        Cmd::AddRoute { prefix, via, .. } => {
            let params = RouteParams {
                prefix,
                via: Some(via),
            };
            call::<AddRoute>(socket, &params, json, quiet)
        }
        Cmd::DelRoute { prefix } => {
            let params = RouteParams { prefix, via: None };
            call::<DelRoute>(socket, &params, json, quiet)
        }
        Cmd::ShowRoutes => call::<ShowRoutes>(socket, &Empty, json, print_routes),
        Cmd::ShowNeighbors => call::<ShowNeighbors>(socket, &Empty, json, print_neighbors),
        Cmd::SetFastPath { state } => {
            let params = SetFastPathParams { on: state == "on" };
            call::<SetFastPath>(socket, &params, json, quiet)
        }
        Cmd::DumpFastPath => call::<DumpFastPath>(socket, &Empty, json, print_fast_path),
        Cmd::Version => call::<Version>(socket, &Empty, json, print_version),
        Cmd::ListCommands => call::<ListCommands>(socket, &Empty, json, print_commands),
        Cmd::Call { method, params } => {
            let params: Value = match params {
                Some(text) => serde_json::from_str(&text).context("params must be JSON")?,
                None => json!({}),
            };
            let mut client = Client::connect(socket)?;
            print_json(&client.call_raw(&method, params)?);
            Ok(())
        }
    }
}

/// Samples the counters every `interval` seconds, each time on a new connection: xvsd
/// disconnects a client silent for long, or idle the longest when it has too many.
fn dump_rates(
    socket: &Path,
    params: &DumpPortsParams,
    interval: f64,
    count: Option<u64>,
    json_out: bool,
) -> anyhow::Result<()> {
    if !(interval > 0.0 && interval.is_finite()) {
        bail!("--interval must be a positive number of seconds");
    }
    let counters = |r: DumpPortsResult| -> BTreeMap<String, [u64; 5]> {
        r.ports
            .into_iter()
            .map(|p| {
                let drops: u64 = p.drops.values().sum();
                (
                    p.name,
                    [p.rx_packets, p.rx_bytes, p.tx_packets, p.tx_bytes, drops],
                )
            })
            .collect()
    };
    let sample = || -> anyhow::Result<_> {
        Ok(counters(
            Client::connect(socket)?.call::<DumpPorts>(params)?,
        ))
    };
    let mut last = sample()?;
    let mut last_at = Instant::now();
    let mut shown = 0;
    loop {
        std::thread::sleep(Duration::from_secs_f64(interval));
        let now = sample()?;
        let secs = last_at.elapsed().as_secs_f64();
        last_at = Instant::now();
        let rates: Vec<(String, [f64; 5])> = now
            .iter()
            .map(|(name, c)| {
                let prev = last.get(name).copied().unwrap_or(*c);
                let mut r = [0.0; 5];
                for i in 0..5 {
                    r[i] = c[i].saturating_sub(prev[i]) as f64 / secs;
                }
                (name.clone(), r)
            })
            .collect();
        if json_out {
            let ports: Vec<Value> = rates
                .iter()
                .map(|(name, r)| {
                    json!({"name": name, "rx_pps": r[0], "rx_bps": r[1] * 8.0,
                           "tx_pps": r[2], "tx_bps": r[3] * 8.0, "drops_ps": r[4]})
                })
                .collect();
            outln!("{}", json!({"interval_s": secs, "ports": ports}));
        } else {
            let rows: Vec<Vec<String>> = rates
                .iter()
                .map(|(name, r)| {
                    vec![
                        name.clone(),
                        format!("{:.0}", r[0]),
                        format!("{:.2}", r[1] * 8.0 / 1e6),
                        format!("{:.0}", r[2]),
                        format!("{:.2}", r[3] * 8.0 / 1e6),
                        format!("{:.0}", r[4]),
                    ]
                })
                .collect();
            print_table(
                &["PORT", "RX_PPS", "RX_MBPS", "TX_PPS", "TX_MBPS", "DROPS/S"],
                &rows,
            );
            outln!();
        }
        last = now;
        shown += 1;
        if count.is_some_and(|c| shown >= c) {
            return Ok(());
        }
    }
}
