//! The results: every figure of every switch, trial by trial, summarized as min/median/max,
//! with the ratio of xvs's median to each peer's (xvs with a forced hook is a column of its
//! own, not a peer); written as JSON and printed as a table (rows: figures; columns:
//! switches, then the ratios).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::stats::{ratio, summarize};

/// Which way a figure improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Better {
    /// Rates.
    Higher,
    /// Latencies, CPU time per packet.
    Lower,
    /// Context (the offered load).
    Neither,
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Figure {
    /// The key in the JSON.
    pub(crate) key: String,
    /// What it is.
    pub(crate) label: String,
    /// Its unit.
    pub(crate) unit: String,
    /// Which way it improves.
    pub(crate) better: Better,
}

impl Figure {
    fn new(key: impl Into<String>, label: impl Into<String>, unit: &str, better: Better) -> Figure {
        Figure {
            key: key.into(),
            label: label.into(),
            unit: unit.to_owned(),
            better,
        }
    }
}

/// Keys of the figures that are not per CPU.
pub(crate) mod key {
    /// 64 B, 1 flow, max load: forwarded.
    pub(crate) const RATE64: &str = "rate_64b_1flow_mpps";
    /// 64 B, 1 flow, max load: offered.
    pub(crate) const OFFERED64: &str = "offered_64b_1flow_mpps";
    /// 64 B, 1000 flows, max load: forwarded.
    pub(crate) const RATE64_FLOWS: &str = "rate_64b_1000flows_mpps";
    /// 64 B, zero-loss rate.
    pub(crate) const ZERO_LOSS: &str = "zero_loss_64b_mpps";
    /// 1518 B, max load, packets.
    pub(crate) const RATE1518: &str = "rate_1518b_mpps";
    /// 1518 B, max load, bits.
    pub(crate) const RATE1518_GBPS: &str = "rate_1518b_gbps";
    /// iperf3, default offloads, one stream.
    pub(crate) const TCP: &str = "tcp_gbps";
    /// iperf3, default offloads, 8 streams.
    pub(crate) const TCP_8_STREAMS: &str = "tcp_8streams_gbps";
    /// iperf3, TX checksum offload off, one stream.
    pub(crate) const TCP_NO_CSUM: &str = "tcp_tx_csum_off_gbps";
    /// iperf3, 1 stream, container → outside through the host's masquerade.
    pub(crate) const EGRESS: &str = "egress_tcp_gbps";
    /// Of the packets the container sent in the egress run, the share the kernel fast path
    /// forwarded (xvs only).
    pub(crate) const EGRESS_FAST_PATH: &str = "egress_fast_path_pct";
    /// The ct figure: 64 B, max load, no rules (the same xvsd, before the pipeline).
    pub(crate) const CT_PLAIN: &str = "ct_plain_64b_mpps";
    /// The ct figure: 64 B, max load, with the ct pipeline, established flows.
    pub(crate) const CT_RATE: &str = "ct_64b_mpps";
    /// The ct figure: the ct rate over the rate without rules, per round.
    pub(crate) const CT_RATIO: &str = "ct_over_plain";
    /// The ct figure: of the packets the source's port received in the ct trial, the share
    /// the kernel fast path forwarded, percent.
    pub(crate) const CT_KERNEL: &str = "ct_fast_path_pct";
    /// UDP round trip, median.
    pub(crate) const RTT_P50: &str = "rtt_p50_us";
    /// UDP round trip, 99th percentile.
    pub(crate) const RTT_P99: &str = "rtt_p99_us";
    /// Switch process, user time per Mpkt.
    pub(crate) const PROC_USER: &str = "cpu_switch_process_user_s_per_mpkt";
    /// Switch process, system time per Mpkt.
    pub(crate) const PROC_SYSTEM: &str = "cpu_switch_process_system_s_per_mpkt";
    /// All CPUs, busy time per Mpkt.
    pub(crate) const ALL_BUSY: &str = "cpu_all_busy_s_per_mpkt";
    /// All CPUs, busy time per second with the switch up and no traffic.
    pub(crate) const IDLE_ALL: &str = "idle_all_cpus_busy";
    /// The switch process, busy time per second with no traffic.
    pub(crate) const IDLE_PROC: &str = "idle_switch_process_busy";

    /// A per-CPU figure: `part` is user, system or softirq.
    pub(crate) fn cpu(cpu: usize, part: &str) -> String {
        format!("cpu{cpu}_{part}_s_per_mpkt")
    }
}

/// Settings that name figures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Naming {
    /// CPUs on the machine.
    pub(crate) cpus: usize,
    /// The generator's CPU.
    pub(crate) gen_cpu: usize,
    /// The switch's CPU.
    pub(crate) switch_cpu: usize,
    /// The rate of the round-trip trials.
    pub(crate) latency_pps: f64,
    /// The zero-loss tolerance, percent.
    pub(crate) tolerance_pct: f64,
    /// Whether the egress scenario runs (its rows are shown only then).
    pub(crate) egress: bool,
    /// The flows of the ct figure, if it runs (its rows are shown only then).
    pub(crate) ct: Option<u32>,
}

/// Every figure, in the table's order.
pub(crate) fn figures(n: &Naming) -> Vec<Figure> {
    use Better::*;
    let mut f = vec![
        Figure::new(
            key::RATE64,
            "64 B, 1 flow, max load: forwarded",
            "Mpps",
            Higher,
        ),
        Figure::new(
            key::OFFERED64,
            "  offered by the generator",
            "Mpps",
            Neither,
        ),
        Figure::new(
            key::RATE64_FLOWS,
            "64 B, 1000 flows, max load: forwarded",
            "Mpps",
            Higher,
        ),
        Figure::new(
            key::ZERO_LOSS,
            format!(
                "64 B, 1 flow: zero-loss rate (loss <= {} %)",
                n.tolerance_pct
            ),
            "Mpps",
            Higher,
        ),
        Figure::new(
            key::RATE1518,
            "1518 B, 1 flow, max load: forwarded",
            "Mpps",
            Higher,
        ),
        Figure::new(
            key::RATE1518_GBPS,
            "1518 B, 1 flow, max load: forwarded",
            "Gbit/s",
            Higher,
        ),
        Figure::new(
            key::TCP,
            "TCP (iperf3), default offloads, 1 stream",
            "Gbit/s",
            Higher,
        ),
        Figure::new(
            key::TCP_8_STREAMS,
            "TCP (iperf3), default offloads, 8 streams",
            "Gbit/s",
            Higher,
        ),
        Figure::new(
            key::TCP_NO_CSUM,
            "TCP (iperf3), tx checksum offload off, 1 stream",
            "Gbit/s",
            Higher,
        ),
    ];
    if n.egress {
        f.push(Figure::new(
            key::EGRESS,
            "egress: TCP container -> outside via masquerade, 1 stream",
            "Gbit/s",
            Higher,
        ));
        f.push(Figure::new(
            key::EGRESS_FAST_PATH,
            "  container's packets forwarded by the kernel fast path",
            "%",
            Neither,
        ));
    }
    if let Some(flows) = n.ct {
        f.extend([
            Figure::new(
                key::CT_PLAIN,
                format!("ct: 64 B, {flows} flow(s), max load, no rules"),
                "Mpps",
                Higher,
            ),
            Figure::new(
                key::CT_RATE,
                "  with the ct pipeline, established flows",
                "Mpps",
                Higher,
            ),
            Figure::new(
                key::CT_RATIO,
                "  ct / no rules (per round)",
                "ratio",
                Higher,
            ),
            Figure::new(
                key::CT_KERNEL,
                "  ct trial's packets forwarded by the kernel fast path",
                "%",
                Neither,
            ),
        ]);
    }
    f.extend([
        Figure::new(
            key::RTT_P50,
            format!("UDP round trip p50 at {} req/s", n.latency_pps),
            "us",
            Lower,
        ),
        Figure::new(
            key::RTT_P99,
            format!("UDP round trip p99 at {} req/s", n.latency_pps),
            "us",
            Lower,
        ),
        Figure::new(key::PROC_USER, "CPU: switch process, user", "s/Mpkt", Lower),
        Figure::new(
            key::PROC_SYSTEM,
            "CPU: switch process, system",
            "s/Mpkt",
            Lower,
        ),
    ]);
    for cpu in 0..n.cpus {
        let role = if cpu == n.gen_cpu {
            " (generator)"
        } else if cpu == n.switch_cpu {
            " (switch)"
        } else {
            ""
        };
        for part in ["user", "system", "softirq"] {
            f.push(Figure::new(
                key::cpu(cpu, part),
                format!("CPU: cpu{cpu}{role}, {part}"),
                "s/Mpkt",
                Lower,
            ));
        }
    }
    f.push(Figure::new(
        key::ALL_BUSY,
        "CPU: all CPUs, busy",
        "s/Mpkt",
        Lower,
    ));
    f.push(Figure::new(
        key::IDLE_PROC,
        "no traffic: switch process busy",
        "CPUs",
        Lower,
    ));
    f.push(Figure::new(
        key::IDLE_ALL,
        "no traffic: all CPUs busy (incl. others' load)",
        "CPUs",
        Lower,
    ));
    f
}

/// One figure of one switch.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct FigureResult {
    /// One value per round, `null` where the trial failed or did not run.
    pub(crate) trials: Vec<Option<f64>>,
    /// The smallest value.
    pub(crate) min: Option<f64>,
    /// The median.
    pub(crate) median: Option<f64>,
    /// The largest value.
    pub(crate) max: Option<f64>,
    /// Why trials failed, prefixed by their round.
    pub(crate) errors: Vec<String>,
}

/// How a switch's measurement went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    /// Every round ran.
    Ok,
    /// Some rounds or trials failed.
    Partial,
    /// No round ran to its end.
    Failed,
    /// Not measured (not installed, say).
    Skipped,
    /// Ctrl-C or SIGTERM ended the run before every round of this switch ran.
    Interrupted,
}

/// Everything measured of one switch.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SwitchReport {
    /// The switch's name.
    pub(crate) name: String,
    /// Whether xvs is compared with it (false for xvs itself, whatever its hook).
    pub(crate) peer: bool,
    /// How it went.
    pub(crate) status: Status,
    /// Why it was skipped or failed.
    pub(crate) reason: Option<String>,
    /// Figures by key.
    pub(crate) figures: BTreeMap<String, FigureResult>,
    /// Per round: the setup, every trial's details, the switch's final state.
    pub(crate) rounds: Vec<Value>,
}

impl SwitchReport {
    /// A switch with every figure empty; `peer` if xvs is compared with it.
    pub(crate) fn new(name: &str, peer: bool, figures: &[Figure]) -> SwitchReport {
        SwitchReport {
            name: name.to_owned(),
            peer,
            status: Status::Ok,
            reason: None,
            figures: figures
                .iter()
                .map(|f| (f.key.clone(), FigureResult::default()))
                .collect(),
            rounds: Vec::new(),
        }
    }

    /// Marks it skipped.
    pub(crate) fn skip(&mut self, reason: String) {
        self.status = Status::Skipped;
        self.reason = Some(reason);
    }

    /// Opens a round: every figure gets an empty trial slot.
    pub(crate) fn begin_round(&mut self) {
        for f in self.figures.values_mut() {
            f.trials.push(None);
        }
    }

    /// Sets this round's value of a figure.
    pub(crate) fn set(&mut self, key: &str, value: f64) {
        if let Some(slot) = self.figures.get_mut(key).and_then(|f| f.trials.last_mut()) {
            *slot = Some(value);
        }
    }

    /// Records why this round's value of a figure is missing.
    pub(crate) fn fail(&mut self, key: &str, round: usize, error: &str) {
        if let Some(f) = self.figures.get_mut(key) {
            f.errors.push(format!("round {}: {error}", round + 1));
        }
    }

    /// Computes the summaries and the status, once the rounds ran: `rounds` of the
    /// `planned`, `round_failures` of which failed.
    pub(crate) fn finish(&mut self, round_failures: usize, rounds: usize, planned: usize) {
        let mut any_error = round_failures > 0;
        for f in self.figures.values_mut() {
            let values: Vec<f64> = f.trials.iter().flatten().copied().collect();
            if let Some(s) = summarize(&values) {
                (f.min, f.median, f.max) = (Some(s.min), Some(s.median), Some(s.max));
            }
            any_error |= !f.errors.is_empty();
        }
        if self.status == Status::Skipped {
            return;
        }
        self.status = if rounds < planned {
            self.reason
                .get_or_insert_with(|| format!("interrupted after {rounds} of {planned} rounds"));
            Status::Interrupted
        } else if rounds > 0 && round_failures == rounds {
            Status::Failed
        } else if any_error {
            Status::Partial
        } else {
            Status::Ok
        };
    }

    fn median(&self, key: &str) -> Option<f64> {
        self.figures.get(key).and_then(|f| f.median)
    }
}

/// `xvs/peer` → figure → ratio of medians, for every peer measured beside xvs (the column
/// named "xvs": xvsd with its own choice of hook).
pub(crate) fn ratios(
    switches: &[SwitchReport],
    figures: &[Figure],
) -> BTreeMap<String, BTreeMap<String, Option<f64>>> {
    let mut out = BTreeMap::new();
    let Some(xvs) = switches.iter().find(|s| s.name == "xvs") else {
        return out;
    };
    for peer in switches.iter().filter(|s| s.peer) {
        let row = figures
            .iter()
            .filter(|f| f.better != Better::Neither)
            .map(|f| {
                (
                    f.key.clone(),
                    ratio(xvs.median(&f.key), peer.median(&f.key)),
                )
            })
            .collect();
        out.insert(format!("xvs/{}", peer.name), row);
    }
    out
}

/// A number with about three significant digits.
pub(crate) fn num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".to_owned()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.1e}")
    }
}

fn cell(f: Option<&FigureResult>) -> String {
    let Some(f) = f else {
        return "-".to_owned();
    };
    match (f.min, f.median, f.max) {
        (Some(lo), Some(med), Some(hi)) if lo == hi => num(med),
        (Some(lo), Some(med), Some(hi)) => format!("{} ({}-{})", num(med), num(lo), num(hi)),
        _ if !f.errors.is_empty() => "failed".to_owned(),
        _ => "-".to_owned(),
    }
}

/// The table: one row per figure, one column per switch (median, and min-max), then one per
/// ratio `xvs/peer` of the medians.
pub(crate) fn table(
    switches: &[SwitchReport],
    figures: &[Figure],
    ratios: &BTreeMap<String, BTreeMap<String, Option<f64>>>,
) -> String {
    let shown: Vec<&SwitchReport> = switches
        .iter()
        .filter(|s| s.status != Status::Skipped)
        .collect();
    // Ratio columns in the switches' order.
    let ratio_cols: Vec<(String, &BTreeMap<String, Option<f64>>)> = shown
        .iter()
        .filter_map(|s| {
            let name = format!("xvs/{}", s.name);
            ratios.get(&name).map(|r| (name, r))
        })
        .collect();
    let mut header = vec!["figure".to_owned(), "unit".to_owned()];
    header.extend(shown.iter().map(|s| s.name.clone()));
    header.extend(ratio_cols.iter().map(|(n, _)| n.clone()));
    let mut rows = vec![header];
    for f in figures {
        // Rows no switch has a value or an error for (say, the process CPU of a run with only
        // the bridge) are left out.
        let any = shown.iter().any(|s| {
            s.figures
                .get(&f.key)
                .is_some_and(|r| r.median.is_some() || !r.errors.is_empty())
        });
        if !any {
            continue;
        }
        let mut row = vec![f.label.clone(), f.unit.clone()];
        row.extend(shown.iter().map(|s| cell(s.figures.get(&f.key))));
        row.extend(ratio_cols.iter().map(|(_, r)| {
            r.get(&f.key)
                .copied()
                .flatten()
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
        }));
        rows.push(row);
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, text) in row.iter().enumerate() {
            let pad = widths[c] - text.chars().count();
            if c == 0 {
                let _ = write!(line, "{text}{}", " ".repeat(pad));
            } else {
                let _ = write!(line, "  {}{text}", " ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (columns - 1)));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming() -> Naming {
        Naming {
            cpus: 2,
            gen_cpu: 0,
            switch_cpu: 1,
            latency_pps: 10_000.0,
            tolerance_pct: 0.001,
            egress: false,
            ct: None,
        }
    }

    #[test]
    fn figures_cover_every_cpu() {
        let f = figures(&naming());
        assert!(f.iter().any(|f| f.key == "cpu1_softirq_s_per_mpkt"));
        assert!(f.iter().any(|f| f.label.contains("cpu0 (generator)")));
        let mut keys: Vec<&str> = f.iter().map(|f| f.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), f.len(), "keys are unique");
    }

    #[test]
    fn summaries_ratios_and_table() {
        let f = figures(&naming());
        let mut xvs = SwitchReport::new("xvs", false, &f);
        let mut bridge = SwitchReport::new("bridge", true, &f);
        let mut ovs = SwitchReport::new("ovs-afxdp", true, &f);
        ovs.skip("not installed".into());
        for (round, (a, b)) in [(1.0, 0.5), (3.0, 1.0), (2.0, 1.5)].into_iter().enumerate() {
            xvs.begin_round();
            bridge.begin_round();
            xvs.set(key::RATE64, a);
            bridge.set(key::RATE64, b);
            bridge.fail(key::TCP, round, "connection timed out");
        }
        xvs.finish(0, 3, 3);
        bridge.finish(0, 3, 3);
        ovs.finish(0, 0, 3);
        assert_eq!(xvs.status, Status::Ok);
        assert_eq!(bridge.status, Status::Partial);
        assert_eq!(ovs.status, Status::Skipped);
        let mut cut = SwitchReport::new("xdp-redirect", true, &f);
        cut.begin_round();
        cut.finish(0, 1, 3);
        assert_eq!(cut.status, Status::Interrupted);
        assert!(cut.reason.as_deref().unwrap().contains("1 of 3"));
        let r64 = &xvs.figures[key::RATE64];
        assert_eq!(
            (r64.min, r64.median, r64.max),
            (Some(1.0), Some(2.0), Some(3.0))
        );
        assert_eq!(r64.trials.len(), 3);
        assert_eq!(xvs.figures[key::TCP].trials, vec![None, None, None]);

        let switches = vec![xvs, bridge, ovs];
        let r = ratios(&switches, &f);
        assert_eq!(r["xvs/bridge"][key::RATE64], Some(2.0));
        assert_eq!(r["xvs/bridge"][key::TCP], None);
        assert!(
            !r["xvs/bridge"].contains_key(key::OFFERED64),
            "the offered load is context, not a result"
        );

        let t = table(&switches, &f, &r);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].contains("xvs") && lines[0].contains("xvs/bridge"));
        assert!(
            !lines[0].contains("ovs-afxdp"),
            "skipped switches get no column"
        );
        let rate = lines
            .iter()
            .find(|l| l.contains("64 B, 1 flow, max"))
            .unwrap();
        assert!(
            rate.contains("2.00 (1.00-3.00)") && rate.ends_with("2.00"),
            "{rate}"
        );
        let tcp = lines
            .iter()
            .find(|l| l.contains("default offloads"))
            .unwrap();
        assert!(tcp.contains("failed"), "{tcp}");
        assert!(!t.contains("round trip"), "rows without data are left out");
    }

    #[test]
    fn xvs_with_a_forced_hook_is_a_column_and_not_a_peer() {
        let f = figures(&naming());
        let mut switches: Vec<SwitchReport> = [
            ("xvs", false, 4.0),
            ("xvs-tc", false, 4.0),
            ("bridge", true, 2.0),
        ]
        .into_iter()
        .map(|(name, peer, rtt)| {
            let mut s = SwitchReport::new(name, peer, &f);
            s.begin_round();
            s.set(key::RTT_P50, rtt);
            s.set(key::TCP_8_STREAMS, rtt * 10.0);
            s.finish(0, 1, 1);
            s
        })
        .collect();
        let mut refused = SwitchReport::new("xvs-xdp", false, &f);
        refused.skip("this xvsd refuses `--hook xdp`".into());
        refused.finish(0, 0, 1);
        switches.push(refused);
        let r = ratios(&switches, &f);
        assert_eq!(r.keys().collect::<Vec<_>>(), ["xvs/bridge"]);
        assert_eq!(r["xvs/bridge"][key::RTT_P50], Some(2.0));
        let t = table(&switches, &f, &r);
        let header = t.lines().next().unwrap();
        assert!(
            header.contains("xvs-tc") && header.contains("bridge"),
            "{header}"
        );
        assert!(
            !header.contains("xvs-xdp") && !header.contains("xvs/xvs"),
            "{header}"
        );
        let rtt = t.lines().find(|l| l.contains("round trip p50")).unwrap();
        assert!(rtt.ends_with("2.00"), "{rtt}");
        let tcp = t.lines().find(|l| l.contains("8 streams")).unwrap();
        assert!(tcp.contains("40.0") && tcp.contains("20.0"), "{tcp}");
    }

    #[test]
    fn numbers_keep_three_digits() {
        assert_eq!(num(0.7871), "0.787");
        assert_eq!(num(2.6), "2.60");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(1234.0), "1234");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(0.00123), "1.2e-3");
    }
}
