//! A [`Snapshot`] in Prometheus's words: a prometheus-client [`Collector`] that writes the
//! snapshot's families at scrape time, in the Prometheus text format (0.0.4) or OpenMetrics.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
    prometheus_text, text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use super::snapshot::Snapshot;

/// The `Content-Type` of OpenMetrics text.
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The `Content-Type` of the Prometheus text format.
pub(crate) const PROMETHEUS_TEXT: &str = prometheus_text::CONTENT_TYPE;

/// Which text format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// The Prometheus text format, version 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0 text (what Prometheus asks for first).
    OpenMetrics,
}

impl Format {
    /// The format a request's `Accept` header prefers: OpenMetrics when it names it.
    pub(crate) fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => PROMETHEUS_TEXT,
            Format::OpenMetrics => OPENMETRICS,
        }
    }
}

/// The page for `snapshot` in `format`, as of `now` (for the snapshot's age).
pub(crate) fn render(snapshot: Arc<Snapshot>, format: Format, now: Instant) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector { snapshot, now }));
    let mut page = String::new();
    let written = match format {
        Format::Prometheus => prometheus_text::encode(&mut page, &registry),
        Format::OpenMetrics => text::encode(&mut page, &registry),
    };
    written.expect("writing to a String does not fail");
    page
}

/// Writes a snapshot's families when the registry is encoded.
#[derive(Debug)]
struct SnapshotCollector {
    snapshot: Arc<Snapshot>,
    now: Instant,
}

/// Writes one family after another, each with its samples.
struct Families<'a, 'b> {
    encoder: &'a mut DescriptorEncoder<'b>,
}

impl Families<'_, '_> {
    fn write<L: EncodeLabelSet, M: EncodeMetric>(
        &mut self,
        (name, unit, kind, help): (&str, Option<&Unit>, MetricType, &str),
        samples: impl IntoIterator<Item = (L, M)>,
    ) -> fmt::Result {
        let mut family = self.encoder.encode_descriptor(name, help, unit, kind)?;
        for (labels, metric) in samples {
            metric.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn counter<L: EncodeLabelSet, V: EncodeCounterValue>(
        &mut self,
        name: &str,
        unit: Option<&Unit>,
        help: &str,
        samples: impl IntoIterator<Item = (L, V)>,
    ) -> fmt::Result {
        let samples = samples.into_iter().map(|(l, v)| (l, ConstCounter::new(v)));
        self.write((name, unit, MetricType::Counter, help), samples)
    }

    fn gauge<L: EncodeLabelSet, V: EncodeGaugeValue>(
        &mut self,
        name: &str,
        unit: Option<&Unit>,
        help: &str,
        samples: impl IntoIterator<Item = (L, V)>,
    ) -> fmt::Result {
        let samples = samples.into_iter().map(|(l, v)| (l, ConstGauge::new(v)));
        self.write((name, unit, MetricType::Gauge, help), samples)
    }
}

/// No label.
const NONE: [(&str, &str); 0] = [];

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let s = &*self.snapshot;
        let seconds = Some(&Unit::Seconds);
        let bytes = Some(&Unit::Bytes);
        encoder
            .encode_descriptor("xvs_build", "The xvsd build.", None, MetricType::Info)?
            .encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;
        let mut f = Families {
            encoder: &mut encoder,
        };
        f.gauge(
            "xvs_uptime",
            seconds,
            "Time since the switch started.",
            [(NONE, s.uptime.as_secs_f64())],
        )?;
        f.gauge(
            "xvs_metrics_snapshot_age",
            seconds,
            "Age of the numbers on this page (the control thread takes them every second).",
            [(
                NONE,
                self.now.saturating_duration_since(s.taken).as_secs_f64(),
            )],
        )?;
        f.gauge(
            "xvs_fast_path_enabled",
            None,
            "Whether the in-kernel fast path is on (1) or off (0).",
            [(NONE, i64::from(s.fast_path))],
        )?;

        let port = |name: &str| [("port", name.to_owned())];
        let ports = &s.ports;
        f.counter(
            "xvs_port_rx_packets",
            None,
            "Packets received on the port, whichever level forwarded them.",
            ports.iter().map(|p| (port(&p.name), p.rx_packets)),
        )?;
        f.counter(
            "xvs_port_rx",
            bytes,
            "Bytes received on the port.",
            ports.iter().map(|p| (port(&p.name), p.rx_bytes)),
        )?;
        f.counter(
            "xvs_port_tx_packets",
            None,
            "Packets sent on the port, whichever level forwarded them.",
            ports.iter().map(|p| (port(&p.name), p.tx_packets)),
        )?;
        f.counter(
            "xvs_port_tx",
            bytes,
            "Bytes sent on the port.",
            ports.iter().map(|p| (port(&p.name), p.tx_bytes)),
        )?;
        f.counter(
            "xvs_port_drops",
            None,
            "Packets dropped, by cause and port: the ingress port for the pipeline's causes, \
             the output port for the sending side's; xsk_* causes are the kernel's AF_XDP \
             socket counters.",
            ports.iter().flat_map(|p| {
                p.drops
                    .iter()
                    .map(|&(cause, n)| ((port(&p.name), [("cause", cause)]), n))
            }),
        )?;
        f.counter(
            "xvs_port_xsk_fill_ring_empty",
            None,
            "Times the kernel found the port's fill ring empty (receive rings starved).",
            ports.iter().map(|p| (port(&p.name), p.fill_ring_empty)),
        )?;
        f.counter(
            "xvs_fast_path_hits",
            None,
            "Packets from the port that the in-kernel fast path forwarded or dropped \
             (the workers fold the kernel's counts in every second).",
            ports.iter().map(|p| (port(&p.name), p.fast_path_hits)),
        )?;
        f.gauge(
            "xvs_fast_path_entries",
            None,
            "Flows installed in the kernel fast path.",
            [(NONE, s.fast_path_entries)],
        )?;
        f.gauge(
            "xvs_mac_table_entries",
            None,
            "Addresses in the MAC table.",
            [(NONE, s.mac_entries)],
        )?;
        let ct = &s.conntrack;
        f.gauge(
            "xvs_conntrack_connections",
            None,
            "Connections the tracker holds.",
            [(NONE, ct.connections)],
        )?;
        f.counter(
            "xvs_conntrack_created",
            None,
            "Connections committed.",
            [(NONE, ct.created)],
        )?;
        f.counter(
            "xvs_conntrack_expired",
            None,
            "Connections removed when their timeout passed.",
            [(NONE, ct.expired)],
        )?;
        f.counter(
            "xvs_conntrack_invalid",
            None,
            "Packets the tracker found invalid (ct_state +inv).",
            [(NONE, ct.invalid)],
        )?;
        f.counter(
            "xvs_conntrack_full",
            None,
            "Commits refused because the table was full.",
            [(NONE, ct.full)],
        )?;

        let worker = |id: usize| [("worker", id)];
        let workers = &s.workers;
        f.gauge(
            "xvs_worker_busy_ratio",
            None,
            "Share of the last second the worker spent in iterations that moved packets.",
            workers.iter().map(|w| (worker(w.id), w.busy_ratio)),
        )?;
        f.counter(
            "xvs_worker_busy",
            seconds,
            "Time the worker spent in iterations that moved packets.",
            workers.iter().map(|w| (worker(w.id), w.busy.as_secs_f64())),
        )?;
        f.counter(
            "xvs_worker_loops",
            None,
            "Iterations of the worker's loop (it advances while the worker lives).",
            workers.iter().map(|w| (worker(w.id), w.loops)),
        )?;
        f.counter(
            "xvs_flow_cache_hits",
            None,
            "Packets the worker's flow cache decided.",
            workers.iter().map(|w| (worker(w.id), w.cache_hits)),
        )?;
        f.counter(
            "xvs_flow_cache_misses",
            None,
            "Packets the worker decided through the tables (a miss of its flow cache).",
            workers.iter().map(|w| (worker(w.id), w.cache_misses)),
        )?;
        f.gauge(
            "xvs_flow_cache_entries",
            None,
            "Entries in the worker's flow cache.",
            workers.iter().map(|w| (worker(w.id), w.cache_entries)),
        )?;

        let rule = |id: u32, flow: &str| ([("rule", id)], [("flow", flow.to_owned())]);
        f.counter(
            "xvs_rule_packets",
            None,
            "Packets each rule decided, at every level.",
            s.rules.iter().map(|r| (rule(r.id, &r.flow), r.packets)),
        )?;
        f.counter(
            "xvs_rule",
            bytes,
            "Bytes of the packets each rule decided.",
            s.rules.iter().map(|r| (rule(r.id, &r.flow), r.bytes)),
        )
    }
}
