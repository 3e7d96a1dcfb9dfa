//! xvsctl: program a running xvsd.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use control::client::Client;
use control::protocol::{DEFAULT_SOCKET, VlanSpec};
use serde_json::{Value, json};

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
    /// Ports, queues, XDP modes, workers and uptime.
    Show,
    /// Switch an interface (hot add).
    AddPort {
        /// The interface.
        name: String,
        /// Serve only the first N queues (default: all).
        #[arg(long)]
        queues: Option<u32>,
        /// Force the XDP mode.
        #[arg(long, value_parser = ["drv", "skb"])]
        xdp_mode: Option<String>,
        /// Put the port in VLAN N as an access port.
        #[arg(long, value_name = "N")]
        tag: Option<u16>,
    },
    /// Give an interface back to the kernel (hot remove).
    DelPort {
        /// The interface.
        name: String,
    },
    /// Change a port's settings: `set-port IF vlan all|access N|trunk LIST [native N]`.
    SetPort {
        /// The interface.
        name: String,
        /// What to set: `vlan` followed by the mode.
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
    /// The rules, with the packets and bytes each decided.
    DumpFlows,
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
    /// Flows the kernel forwards by XDP redirect, with their counters.
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
    Attach(control::attach::AttachArgs),
    /// Undo `attach`: remove the port and delete the veth.
    Detach(control::attach::DetachArgs),
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
        eprintln!("xvsctl: {e:#}");
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
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
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

/// How a command's result is shown without `--json`.
type Printer = fn(&Value);

fn quiet(_: &Value) {}

/// Prints `r[key]` as a table of the given (header, field) columns.
fn columns(r: &Value, key: &str, cols: &[(&str, &str)]) {
    let rows: Vec<Vec<String>> = r[key]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| cols.iter().map(|(_, field)| s(&e[*field])).collect())
        .collect();
    let header: Vec<&str> = cols.iter().map(|(h, _)| *h).collect();
    print_table(&header, &rows);
}

fn print_show(r: &Value) {
    println!(
        "xvsd {} up {:.0}s, {} worker(s), fast path {}",
        s(&r["version"]),
        r["uptime_s"].as_f64().unwrap_or(0.0),
        r["workers"].as_array().map_or(0, Vec::len),
        if r["fast_path"] == json!(true) {
            "on"
        } else {
            "off"
        }
    );
    let rows: Vec<Vec<String>> = r["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let queues: Vec<String> = p["queues"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|q| {
                    let cpu = q["cpu"].as_u64().map_or("-".into(), |c| c.to_string());
                    format!("{}:w{}/cpu{}", q["queue"], q["worker"], cpu)
                })
                .collect();
            let vlan = match &p["vlan"]["mode"] {
                Value::String(m) if m == "access" => format!("access {}", p["vlan"]["tag"]),
                Value::String(m) if m == "trunk" => format!("trunk {}", p["vlan"]["trunks"]),
                _ => "all".into(),
            };
            let ids: Vec<String> = p["external_ids"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", s(v)))
                .collect();
            let fast = &p["fast_path"];
            let fast = if fast["active"] != json!(true) {
                "off".to_owned()
            } else if fast["redirect_target"] == json!(true) {
                format!("on, {} entries", fast["entries"])
            } else {
                format!("rx only, {} entries", fast["entries"])
            };
            let mode = if p["zero_copy"] == json!(true) {
                "zc"
            } else {
                "copy"
            };
            vec![
                s(&p["id"]),
                s(&p["name"]),
                s(&p["ifindex"]),
                s(&p["mac"]),
                s(&p["driver"]),
                s(&p["xdp_mode"]),
                mode.to_owned(),
                fast,
                queues.join(" "),
                vlan,
                ids.join(","),
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "PORT",
            "IFINDEX",
            "MAC",
            "DRIVER",
            "XDP",
            "MODE",
            "FAST PATH",
            "QUEUES(q:worker/cpu)",
            "VLAN",
            "EXTERNAL_IDS",
        ],
        &rows,
    );
}

fn print_fdb(r: &Value) {
    let rows: Vec<Vec<String>> = r["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let kind = if e["static"] == json!(true) {
                "static"
            } else {
                "learned"
            };
            vec![
                s(&e["mac"]),
                s(&e["vlan"]),
                s(&e["port"]),
                format!("{:.1}", e["age_s"].as_f64().unwrap_or(0.0)),
                kind.to_owned(),
            ]
        })
        .collect();
    print_table(&["MAC", "VLAN", "PORT", "AGE(s)", "TYPE"], &rows);
}

fn print_flows(r: &Value) {
    for f in r["flows"].as_array().into_iter().flatten() {
        println!(
            " n_packets={}, n_bytes={}, {}",
            f["n_packets"],
            f["n_bytes"],
            s(&f["flow"])
        );
    }
}

fn print_addrs(r: &Value) {
    let rows: Vec<Vec<String>> = r["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let addrs: Vec<String> = i["addrs"].as_array().into_iter().flatten().map(s).collect();
            vec![
                s(&i["name"]),
                s(&i["vlan"]),
                s(&i["port"]),
                s(&i["mac"]),
                addrs.join(" "),
            ]
        })
        .collect();
    print_table(&["INTERFACE", "VLAN", "PORT", "MAC", "ADDRESSES"], &rows);
}

fn print_routes(r: &Value) {
    for route in r["routes"].as_array().into_iter().flatten() {
        match route["type"].as_str() {
            Some("static") => println!(
                "{} via {} dev {}",
                s(&route["prefix"]),
                s(&route["via"]),
                s(&route["dev"])
            ),
            _ => println!("{} dev {} connected", s(&route["prefix"]), s(&route["dev"])),
        }
    }
}

fn print_neighbors(r: &Value) {
    columns(
        r,
        "neighbors",
        &[
            ("IP", "ip"),
            ("MAC", "mac"),
            ("PORT", "port"),
            ("VLAN", "vlan"),
            ("AGE(s)", "age_s"),
        ],
    );
}

fn print_fast_path(r: &Value) {
    if r["enabled"] != json!(true) {
        println!("fast path off");
        return;
    }
    columns(
        r,
        "entries",
        &[
            ("IN_PORT", "in_port"),
            ("DL_SRC", "dl_src"),
            ("DL_DST", "dl_dst"),
            ("DL_TYPE", "dl_type"),
            ("ACTION", "action"),
            ("OUT_PORT", "out_port"),
            ("RULE", "rule"),
            ("N_PACKETS", "n_packets"),
            ("N_BYTES", "n_bytes"),
        ],
    );
}

fn print_version(r: &Value) {
    println!("xvsd {} (protocol {})", s(&r["version"]), r["protocol"]);
}

fn print_commands(r: &Value) {
    let rows: Vec<Vec<String>> = r
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| vec![s(&c["name"]), s(&c["params"]), s(&c["help"])])
        .collect();
    print_table(&["COMMAND", "PARAMS", "WHAT"], &rows);
}

/// Prints an attach/detach report: JSON, or its `summary` line.
fn print_report(report: &Value, json_out: bool) -> anyhow::Result<()> {
    if json_out {
        print_json(report);
    } else {
        println!("{}", s(&report["summary"]));
    }
    Ok(())
}

fn print_json(r: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(r).expect("JSON values serialize")
    );
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let (method, params, printer): (&str, Value, Printer) = match cli.command {
        Cmd::Attach(args) => return print_report(&args.run(&cli.socket)?.report(), cli.json),
        Cmd::Detach(args) => {
            return print_report(
                &control::attach::detach_report(&args.run(&cli.socket)?),
                cli.json,
            );
        }
        Cmd::Show => ("show", json!({}), print_show),
        Cmd::AddPort {
            name,
            queues,
            xdp_mode,
            tag,
        } => {
            let mut params = json!({"name": name});
            if let Some(q) = queues {
                params["queues"] = json!(q);
            }
            if let Some(m) = xdp_mode {
                params["xdp_mode"] = json!(m);
            }
            if let Some(t) = tag {
                params["vlan"] = json!(VlanSpec::Access { tag: t });
            }
            ("add-port", params, quiet)
        }
        Cmd::DelPort { name } => ("del-port", json!({"name": name}), quiet),
        Cmd::SetPort { name, setting } => {
            let (what, rest) = setting.split_first().expect("clap requires one");
            if what != "vlan" {
                bail!("set-port knows `vlan`, not {what:?}");
            }
            let vlan = parse_vlan(rest)?;
            ("set-port", json!({"name": name, "vlan": vlan}), quiet)
        }
        Cmd::DumpPorts {
            name,
            rate,
            interval,
            count,
        } => {
            let params = match &name {
                Some(n) => json!({"name": n}),
                None => json!({}),
            };
            if rate {
                let mut client = Client::connect(&cli.socket)?;
                return dump_rates(&mut client, &params, interval, count, cli.json);
            }
            ("dump-ports", params, print_ports)
        }
        Cmd::Fdb { action } => match action {
            FdbCmd::Show => ("fdb-show", json!({}), print_fdb),
            FdbCmd::Flush => ("fdb-flush", json!({}), quiet),
        },
        Cmd::AddFlow { flow } => ("add-flow", json!({"flow": flow}), quiet),
        Cmd::AddFlows { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading standard input")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let flows: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect();
            ("add-flows", json!({"flows": flows}), quiet)
        }
        Cmd::DelFlows { pattern, strict } => {
            let mut params = json!({"strict": strict});
            if let Some(m) = pattern {
                params["match"] = json!(m);
            }
            ("del-flows", params, quiet)
        }
        Cmd::DumpFlows => ("dump-flows", json!({}), print_flows),
        Cmd::AddAddr { name, addr, mac } => {
            let mut params = json!({"name": name, "addr": addr});
            if let Some(m) = mac {
                params["mac"] = json!(m);
            }
            ("add-addr", params, quiet)
        }
        Cmd::DelAddr { name, addr } => ("del-addr", json!({"name": name, "addr": addr}), quiet),
        Cmd::ShowAddrs => ("show-addrs", json!({}), print_addrs),
        Cmd::AddRoute { prefix, via, .. } => {
            ("add-route", json!({"prefix": prefix, "via": via}), quiet)
        }
        Cmd::DelRoute { prefix } => ("del-route", json!({"prefix": prefix}), quiet),
        Cmd::ShowRoutes => ("show-routes", json!({}), print_routes),
        Cmd::ShowNeighbors => ("show-neighbors", json!({}), print_neighbors),
        Cmd::SetFastPath { state } => ("set-fast-path", json!({"on": state == "on"}), quiet),
        Cmd::DumpFastPath => ("dump-fast-path", json!({}), print_fast_path),
        Cmd::Version => ("version", json!({}), print_version),
        Cmd::ListCommands => ("list-commands", json!({}), print_commands),
        Cmd::Call { method, params } => {
            let params: Value = match params {
                Some(text) => serde_json::from_str(&text).context("params must be JSON")?,
                None => json!({}),
            };
            let mut client = Client::connect(&cli.socket)?;
            print_json(&client.call(&method, params)?);
            return Ok(());
        }
    };
    let mut client = Client::connect(&cli.socket)?;
    let result = client.call(method, params)?;
    if cli.json {
        print_json(&result);
    } else {
        printer(&result);
    }
    Ok(())
}

fn print_ports(r: &Value) {
    let rows: Vec<Vec<String>> = r["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let drops: Vec<String> = p["drops"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
                .map(|(k, v)| format!("{k}={v}"))
                .chain(
                    p["kernel"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
                        .map(|(k, v)| format!("kernel.{k}={v}")),
                )
                .collect();
            vec![
                s(&p["name"]),
                s(&p["rx_packets"]),
                s(&p["rx_bytes"]),
                s(&p["tx_packets"]),
                s(&p["tx_bytes"]),
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
    println!();
    let rows: Vec<Vec<String>> = r["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            let per_port: Vec<String> = w["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{}:rx={},tx={}",
                        s(&p["name"]),
                        p["rx_packets"],
                        p["tx_packets"]
                    )
                })
                .collect();
            vec![
                s(&w["id"]),
                s(&w["cpu"]),
                s(&w["cache_hits"]),
                s(&w["cache_misses"]),
                s(&w["cache_entries"]),
                s(&w["handoffs"]),
                s(&w["sleeps"]),
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

fn dump_rates(
    client: &mut Client,
    params: &Value,
    interval: f64,
    count: Option<u64>,
    json_out: bool,
) -> anyhow::Result<()> {
    if !(interval > 0.0 && interval.is_finite()) {
        bail!("--interval must be a positive number of seconds");
    }
    let counters = |r: &Value| -> BTreeMap<String, [u64; 5]> {
        r["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let drops: u64 = p["drops"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(_, v)| v.as_u64())
                    .sum();
                let n = |k: &str| p[k].as_u64().unwrap_or(0);
                (
                    s(&p["name"]),
                    [
                        n("rx_packets"),
                        n("rx_bytes"),
                        n("tx_packets"),
                        n("tx_bytes"),
                        drops,
                    ],
                )
            })
            .collect()
    };
    let mut last = counters(&client.call("dump-ports", params.clone())?);
    let mut last_at = Instant::now();
    let mut shown = 0;
    loop {
        std::thread::sleep(Duration::from_secs_f64(interval));
        let now = counters(&client.call("dump-ports", params.clone())?);
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
            println!("{}", json!({"interval_s": secs, "ports": ports}));
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
            println!();
        }
        last = now;
        shown += 1;
        if count.is_some_and(|c| shown >= c) {
            return Ok(());
        }
    }
}
