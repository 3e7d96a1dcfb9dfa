//! `xvsd --metrics ADDR`: GET /metrics in the Prometheus text format (or OpenMetrics, when the
//! scraper asks for it), written with the prometheus-client crate.
//!
//! A scrape never reaches a worker or the control thread. The control thread takes a
//! snapshot at most once a second from its loop ([`Metrics::refresh`]); the HTTP thread
//! serves the latest one, holding the lock only to clone an `Arc`. Taking a snapshot reads the
//! counters the workers publish as relaxed atomics and the sockets' kernel statistics; the one
//! question put to the workers is their rule counters (each sums its own between two
//! iterations, as for `dump-flows`), once a second at most, whatever the scrape rate, and only
//! when there are rules. Kernel fast-path counters are as the workers last folded them in
//! (every second); no scrape makes them walk the kernel's map.

mod encode;
mod snapshot;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use encode::{Format, render};
use snapshot::{Sampler, Snapshot};

use crate::daemon::Daemon;

/// How often the control thread takes a snapshot.
pub const REFRESH: Duration = Duration::from_secs(1);

/// Why the metrics could not be served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address could not be bound.
    #[error("serving metrics on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the HTTP server said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The HTTP thread could not be started.
    #[error("starting the metrics thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// The latest snapshot, shared by the control thread (which replaces it) and the HTTP thread
/// (which serves it); `None` until the first is taken.
type Latest = Arc<Mutex<Option<Arc<Snapshot>>>>;

/// The metrics endpoint: its HTTP thread and the control thread's side of the snapshot.
pub struct Metrics {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    latest: Latest,
    sampler: Sampler,
    last_refresh: Option<Instant>,
    addr: SocketAddr,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("addr", &self.addr).finish()
    }
}

impl Metrics {
    /// Listens on `addr` (port 0: any free port) and serves from a thread of its own.
    ///
    /// # Errors
    /// The address cannot be bound, or the thread cannot be started.
    pub fn serve(addr: SocketAddr) -> Result<Metrics, MetricsError> {
        let server =
            tiny_http::Server::http(addr).map_err(|source| MetricsError::Bind { addr, source })?;
        let bound = server.server_addr().to_ip().unwrap_or(addr);
        let server = Arc::new(server);
        let latest: Latest = Arc::default();
        let thread = std::thread::Builder::new()
            .name("xvs-metrics".into())
            .spawn({
                let (server, latest) = (server.clone(), latest.clone());
                move || serve_requests(&server, &latest)
            })
            .map_err(MetricsError::Thread)?;
        tracing::info!("metrics at http://{bound}/metrics");
        Ok(Metrics {
            server,
            thread: Some(thread),
            latest,
            sampler: Sampler::default(),
            last_refresh: None,
            addr: bound,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Takes a new snapshot of `daemon` if the last is [`REFRESH`] old. Call it from the
    /// control loop.
    pub fn refresh(&mut self, daemon: &Daemon) {
        if self.last_refresh.is_some_and(|at| at.elapsed() < REFRESH) {
            return;
        }
        self.last_refresh = Some(Instant::now());
        let snapshot = Arc::new(self.sampler.sample(daemon));
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(snapshot);
    }
}

impl Drop for Metrics {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_requests(server: &tiny_http::Server, latest: &Latest) {
    for request in server.incoming_requests() {
        let accept = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Accept"))
            .map(|h| h.value.as_str().to_owned());
        let snapshot = latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let page = answer(request.method(), request.url(), accept.as_deref(), snapshot);
        let content_type = tiny_http::Header::from_bytes("Content-Type", page.content_type)
            .expect("a valid header");
        let response = tiny_http::Response::from_string(page.body)
            .with_status_code(page.status)
            .with_header(content_type);
        if let Err(e) = request.respond(response) {
            tracing::debug!("a metrics client went away: {e}");
        }
    }
}

/// An HTTP answer.
#[derive(Debug)]
struct Page {
    status: u16,
    content_type: &'static str,
    body: String,
}

/// The answer to `method url` with `accept`, given the latest snapshot.
fn answer(
    method: &tiny_http::Method,
    url: &str,
    accept: Option<&str>,
    snapshot: Option<Arc<Snapshot>>,
) -> Page {
    let plain = |status, body: &str| Page {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.to_owned(),
    };
    let path = url.split('?').next().unwrap_or(url);
    if !matches!(method, tiny_http::Method::Get | tiny_http::Method::Head) {
        return plain(405, "only GET\n");
    }
    match path {
        "/metrics" => match snapshot {
            Some(snapshot) => {
                let format = Format::from_accept(accept);
                Page {
                    status: 200,
                    content_type: format.content_type(),
                    body: render(snapshot, format, Instant::now()),
                }
            }
            None => plain(503, "no snapshot yet: xvsd is starting\n"),
        },
        "/" => plain(200, "xvsd: metrics at /metrics\n"),
        _ => plain(404, "not found: metrics are at /metrics\n"),
    }
}

#[cfg(test)]
mod tests {
    use tiny_http::Method;

    use super::snapshot::{PortSample, RuleSample, WorkerSample};
    use super::*;

    fn snapshot() -> Arc<Snapshot> {
        Arc::new(Snapshot {
            taken: Instant::now(),
            uptime: Duration::from_secs(42),
            fast_path: true,
            ports: vec![PortSample {
                name: "veth1".into(),
                rx_packets: 10,
                rx_bytes: 1000,
                tx_packets: 9,
                tx_bytes: 900,
                fast_path_hits: 4,
                drops: vec![("no_route", 2), ("xsk_rx_ring_full", 1)],
                fill_ring_empty: 3,
            }],
            workers: vec![WorkerSample {
                id: 0,
                busy_ratio: 0.25,
                busy: Duration::from_millis(1500),
                loops: 77,
                cache_hits: 5,
                cache_misses: 6,
                cache_entries: 3,
            }],
            mac_entries: 2,
            fast_path_entries: 1,
            rules: vec![RuleSample {
                id: 7,
                flow: r#"priority=10,dl_type=0x0800,actions=note:"a\b""#.into(),
                packets: 8,
                bytes: 800,
            }],
            conntrack: flowtable::conntrack::CtStats {
                connections: 3,
                created: 9,
                expired: 6,
                invalid: 1,
                full: 0,
            },
        })
    }

    fn page(accept: Option<&str>) -> Page {
        answer(&Method::Get, "/metrics", accept, Some(snapshot()))
    }

    #[test]
    fn the_prometheus_text_format_by_default() {
        let p = page(Some("*/*"));
        assert_eq!(p.status, 200);
        assert_eq!(p.content_type, "text/plain; version=0.0.4; charset=utf-8");
        for line in [
            "# TYPE xvs_port_rx_packets_total counter",
            r#"xvs_port_rx_packets_total{port="veth1"} 10"#,
            r#"xvs_port_rx_bytes_total{port="veth1"} 1000"#,
            r#"xvs_port_tx_bytes_total{port="veth1"} 900"#,
            r#"xvs_port_drops_total{port="veth1",cause="no_route"} 2"#,
            r#"xvs_port_drops_total{port="veth1",cause="xsk_rx_ring_full"} 1"#,
            r#"xvs_port_xsk_fill_ring_empty_total{port="veth1"} 3"#,
            r#"xvs_fast_path_hits_total{port="veth1"} 4"#,
            "xvs_fast_path_entries 1",
            "xvs_fast_path_enabled 1",
            "xvs_mac_table_entries 2",
            "xvs_conntrack_connections 3",
            "xvs_conntrack_created_total 9",
            "xvs_conntrack_expired_total 6",
            "xvs_conntrack_invalid_total 1",
            "xvs_conntrack_full_total 0",
            r#"xvs_worker_busy_ratio{worker="0"} 0.25"#,
            r#"xvs_worker_busy_seconds_total{worker="0"} 1.5"#,
            r#"xvs_worker_loops_total{worker="0"} 77"#,
            r#"xvs_flow_cache_hits_total{worker="0"} 5"#,
            r#"xvs_flow_cache_misses_total{worker="0"} 6"#,
            r#"xvs_flow_cache_entries{worker="0"} 3"#,
            r#"xvs_rule_packets_total{rule="7",flow="priority=10,dl_type=0x0800,actions=note:\"a\\b\""} 8"#,
            r#"xvs_rule_bytes_total{rule="7",flow="priority=10,dl_type=0x0800,actions=note:\"a\\b\""} 800"#,
            "xvs_uptime_seconds 42.0",
            &format!(
                r#"xvs_build_info{{version="{}"}} 1"#,
                env!("CARGO_PKG_VERSION")
            ),
        ] {
            assert!(
                p.body.lines().any(|l| l == line),
                "no line {line:?} in:\n{}",
                p.body
            );
        }
        assert!(!p.body.contains("# EOF"));
    }

    #[test]
    fn openmetrics_when_asked() {
        let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        let p = page(Some(accept));
        assert_eq!(p.content_type, encode::OPENMETRICS);
        assert!(p.body.ends_with("# EOF\n"), "{}", p.body);
        assert!(p.body.contains("# TYPE xvs_port_rx_packets counter\n"));
        assert!(p.body.contains("# UNIT xvs_port_rx_bytes bytes\n"));
    }

    #[test]
    fn every_counter_ends_in_total_and_every_name_begins_with_xvs() {
        let p = page(None);
        for line in p.body.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("xvs_"), "{line}");
        }
        for line in p.body.lines() {
            if let Some(name) = line
                .strip_prefix("# TYPE ")
                .and_then(|l| l.strip_suffix(" counter"))
            {
                assert!(name.ends_with("_total"), "{line}");
            }
        }
    }

    #[test]
    fn before_the_first_snapshot_and_elsewhere() {
        let none = answer(&Method::Get, "/metrics", None, None);
        assert_eq!(none.status, 503);
        let query = answer(&Method::Get, "/metrics?x=1", None, Some(snapshot()));
        assert_eq!(query.status, 200);
        assert_eq!(
            answer(&Method::Get, "/other", None, Some(snapshot())).status,
            404
        );
        assert_eq!(
            answer(&Method::Post, "/metrics", None, Some(snapshot())).status,
            405
        );
    }
}
