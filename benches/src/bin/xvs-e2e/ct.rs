//! The ct figure: xvs's 64 B rate with a stateful firewall installed (OpenFlow tables and
//! connection tracking), beside the same xvsd's rate without rules, on the source/sink
//! topology.
//!
//! The pipeline lets the source open connections and the sink answer them:
//!
//! ```text
//! table=0,priority=10,ip,actions=resubmit(,1)
//! table=1,priority=100,ip,ct_state=-trk,actions=ct(table=1)
//! table=1,priority=90,ct_state=+trk+new,in_port=SRC,actions=ct(commit),resubmit(,2)
//! table=1,priority=90,ct_state=+trk+est,actions=resubmit(,2)
//! table=1,priority=80,ct_state=+trk,actions=drop
//! table=2,priority=10,actions=normal
//! ```
//!
//! A connection is established only once packets of it went both ways, and xvs offloads a
//! decision to the kernel only for established connections: a one-way stream would stay
//! `+new`, decided per packet in userspace. So before the trial every flow the generator will
//! use is opened (a few of its packets from the source, committed) and answered (the same
//! flows reversed, `xvs-pktgen send --reply` from the sink); the trial then measures the
//! one-way stream of established flows, and the bench checks that the kernel carried it.

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};

use crate::lab::{SINK_IP, SRC_IP, Topology};
use crate::measure::{self, Ctx, Load, RateTrial};
use crate::switch::xvs::Xvs;

/// The generator's UDP ports unless told otherwise (`xvs-pktgen`'s defaults): flows take
/// source ports from [`FIRST_SRC_PORT`] up, all to [`DST_PORT`].
const FIRST_SRC_PORT: u16 = 1024;
const DST_PORT: u16 = 9;

/// Share of the source port's received packets the kernel must have forwarded in the ct
/// trial for the figure to count as "established flows in the kernel path".
pub(crate) const MIN_KERNEL_SHARE_PCT: f64 = 99.0;

/// The pipeline, with `src_port` (the source's switch port) as the side that may open
/// connections.
pub(crate) fn pipeline(src_port: &str) -> Vec<String> {
    [
        "table=0,priority=10,ip,actions=resubmit(,1)".to_owned(),
        "table=1,priority=100,ip,ct_state=-trk,actions=ct(table=1)".to_owned(),
        format!(
            "table=1,priority=90,ct_state=+trk+new,in_port={src_port},actions=ct(commit),resubmit(,2)"
        ),
        "table=1,priority=90,ct_state=+trk+est,actions=resubmit(,2)".to_owned(),
        "table=1,priority=80,ct_state=+trk,actions=drop".to_owned(),
        "table=2,priority=10,actions=normal".to_owned(),
    ]
    .into()
}

/// What the warm-up did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Warmup {
    /// The source's packets that opened the connections (and the sink's counter saw).
    pub(crate) opened: RateTrial,
    /// `xvs-pktgen send --reply`'s summary, from the sink.
    pub(crate) answered: Value,
    /// UDP connections in the tracker that saw both directions (`MULTIPLE`).
    pub(crate) established: usize,
    /// Every connection in the tracker.
    pub(crate) connections: usize,
}

/// Sends each of `flows` a few times from the source, then answers each from the sink, and
/// checks that the tracker holds `flows` established UDP connections.
///
/// # Errors
/// A tool failed, or fewer connections than flows are established.
pub(crate) fn establish(
    ctx: &Ctx<'_>,
    topo: &Topology,
    xvs: &Xvs,
    flows: u32,
) -> anyhow::Result<Warmup> {
    // A few packets per flow at a rate the userspace path takes without loss.
    let rate = 20_000.0;
    let seconds = (3.0 * f64::from(flows) / rate).max(0.3);
    let load = Load {
        size: 64,
        flows,
        rate_pps: Some(rate),
        seconds,
    };
    let opened = measure::rate(ctx, topo, &load, None)?;
    if opened.received == 0 {
        bail!("none of the source's first packets crossed the ct pipeline: {opened:?}");
    }
    let src_mac = topo.mac(Some(&topo.src_ns), "eth0")?;
    let answered = measure::send_from_sink(
        ctx,
        topo,
        &[
            "--dst-mac",
            &src_mac,
            "--src-ip",
            SINK_IP,
            "--dst-ip",
            SRC_IP,
            "--src-port",
            &DST_PORT.to_string(),
            "--dst-port",
            &FIRST_SRC_PORT.to_string(),
            "--reply",
            "--flows",
            &flows.to_string(),
            "--rate",
            &format!("{}", rate as u64),
            "--duration",
            &seconds.to_string(),
        ],
    )?;
    let conns = xvs.ctl(&["dump-conntrack"])?;
    let list = conns["connections"]
        .as_array()
        .context("dump-conntrack gave no connections list")?;
    let established = list
        .iter()
        .filter(|c| c["proto"] == "udp" && c["state"] == "MULTIPLE")
        .count();
    let warmup = Warmup {
        opened,
        answered,
        established,
        connections: list.len(),
    };
    if established < flows as usize {
        bail!(
            "after the warm-up {established} of {flows} flows are established in the tracker \
             ({} connections): {conns}",
            warmup.connections
        );
    }
    Ok(warmup)
}

/// How much of the ct trial the kernel fast path forwarded.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KernelShare {
    /// Packets the source's switch port received during the trial.
    pub(crate) rx_packets: u64,
    /// Of those, the ones the kernel forwarded (the port counters' fast-path part).
    pub(crate) kernel_rx_packets: u64,
    /// `kernel_rx_packets / rx_packets`, percent.
    pub(crate) pct: f64,
    /// Fast-path entries entering at the source's port that carried packets, and their
    /// packets (`dump-fast-path` after the trial).
    pub(crate) entries_with_packets: usize,
    /// Their packets.
    pub(crate) entry_packets: u64,
    /// The whole `dump-fast-path`.
    pub(crate) dump: Value,
}

/// The source port's counters, for [`kernel_share`].
pub(crate) fn port_counters(xvs: &Xvs, port: &str) -> anyhow::Result<Value> {
    Ok(xvs.ctl(&["dump-ports", port])?["ports"][0].clone())
}

/// Compares the source port's counters before and after a trial and reads the fast path.
///
/// # Errors
/// xvsctl failed.
pub(crate) fn kernel_share(
    xvs: &Xvs,
    port: &str,
    before: &Value,
    after: &Value,
) -> anyhow::Result<KernelShare> {
    let at = |v: &Value, path: &[&str]| path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0);
    let delta = |path: &[&str]| at(after, path).saturating_sub(at(before, path));
    let rx_packets = delta(&["rx_packets"]);
    let kernel_rx_packets = delta(&["fast_path", "rx_packets"]);
    let dump = xvs.ctl(&["dump-fast-path"])?;
    let (entries_with_packets, entry_packets) = dump["entries"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["in_port"] == port && e["n_packets"].as_u64().unwrap_or(0) > 0)
                .fold((0, 0), |(n, p), e| {
                    (n + 1, p + e["n_packets"].as_u64().unwrap_or(0))
                })
        })
        .unwrap_or((0, 0));
    Ok(KernelShare {
        rx_packets,
        kernel_rx_packets,
        pct: if rx_packets == 0 {
            0.0
        } else {
            100.0 * kernel_rx_packets as f64 / rx_packets as f64
        },
        entries_with_packets,
        entry_packets,
        dump,
    })
}

impl KernelShare {
    /// Fails unless the kernel carried the flows: fast-path entries from the source's port
    /// with packets, and at least [`MIN_KERNEL_SHARE_PCT`] of the port's packets.
    ///
    /// # Errors
    /// As said, naming what was seen.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        if self.entries_with_packets == 0 || self.pct < MIN_KERNEL_SHARE_PCT {
            bail!(
                "the kernel fast path did not carry the established flows: {} of the {} \
                 packets the source's port received went through it ({:.2} %, want >= {} %), \
                 {} fast-path entries from that port with packets",
                self.kernel_rx_packets,
                self.rx_packets,
                self.pct,
                MIN_KERNEL_SHARE_PCT,
                self.entries_with_packets
            );
        }
        Ok(())
    }
}

/// The ct part's result in the round's details.
pub(crate) fn details(
    plain: Option<&RateTrial>,
    warmup: Option<&Warmup>,
    ct: Option<&RateTrial>,
    share: Option<&KernelShare>,
) -> Value {
    json!({ "plain": plain, "warmup": warmup, "ct": ct, "kernel": share })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipeline_names_the_source_port() {
        let p = pipeline("xe1vsrc");
        assert_eq!(p.len(), 6);
        assert!(p[2].contains("in_port=xe1vsrc,actions=ct(commit)"));
        assert_eq!(p.iter().filter(|r| r.contains("resubmit(,2)")).count(), 2);
    }

    #[test]
    fn the_kernel_share_wants_entries_and_packets() {
        let share = |rx, kernel, entries| KernelShare {
            rx_packets: rx,
            kernel_rx_packets: kernel,
            pct: if rx == 0 {
                0.0
            } else {
                100.0 * kernel as f64 / rx as f64
            },
            entries_with_packets: entries,
            entry_packets: kernel,
            dump: Value::Null,
        };
        assert!(share(1000, 999, 1).check().is_ok());
        assert!(share(1000, 999, 0).check().is_err());
        assert!(share(1000, 500, 1).check().is_err());
        assert!(share(0, 0, 0).check().is_err());
    }
}
