//! xvsd as a service: the notifications a service manager reads (from a datagram socket the
//! test makes, as systemd's own), the watchdog pings stopping while a worker is stuck (held
//! by ptrace, as a debugger holds a thread), and the metrics page, read by Prometheus's own
//! parser (the Python `prometheus_client`).

mod common;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, Lab};
use serde_json::{Value, json};
use xvs_proto::client::Client;
use xvs_testkit::skip;

/// The next datagram, or `None` after `timeout`.
fn recv(socket: &UnixDatagram, timeout: Duration) -> Option<String> {
    socket.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Reads datagrams until one has the assignment `wanted`; returns it and those before it.
fn recv_until(socket: &UnixDatagram, wanted: &str, timeout: Duration) -> (String, Vec<String>) {
    let deadline = Instant::now() + timeout;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(message) = recv(socket, left.max(Duration::from_millis(1))) else {
            panic!("no {wanted} within {timeout:?}; got {before:?}");
        };
        if message.lines().any(|l| l == wanted) {
            return (message, before);
        }
        before.push(message);
    }
}

#[test]
fn systemd_hears_ready_watchdog_pings_and_stopping() {
    let test = "systemd_hears_ready_watchdog_pings_and_stopping";
    let Some(mut lab) = Lab::new(test) else {
        return;
    };
    let a = lab.container(1, 70);
    let notify_path = lab.path("notify.sock");
    let manager = UnixDatagram::bind(&notify_path).expect("the manager's socket");
    let socket = lab.path("xvsd.ctl");
    // What a client sees the moment READY=1 arrives: the socket answers, the port is there.
    let watcher = std::thread::spawn({
        let socket = socket.clone();
        move || {
            let (ready, before) = recv_until(&manager, "READY=1", Duration::from_secs(30));
            let show = Client::connect(&socket)
                .and_then(|mut c| c.call_raw("show", json!({})))
                .expect("the command socket answers at READY=1");
            (manager, ready, before, show)
        }
    });
    let mut d = lab.xvsd_with_env(
        &socket,
        &[&a.port],
        &[],
        &[
            ("NOTIFY_SOCKET", notify_path.as_os_str()),
            ("WATCHDOG_USEC", OsStr::new("1000000")),
        ],
    );
    let (manager, ready, before, show) = watcher.join().expect("READY=1 watcher");
    assert!(before.is_empty(), "nothing before READY=1: {before:?}");
    assert!(ready.contains("STATUS=serving"), "{ready}");
    let ports: Vec<&str> = show["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(ports, [a.port.as_str()], "the port is up at READY=1");

    // WATCHDOG_USEC=1 s: a ping every half second, while the (idle) worker lives.
    let start = Instant::now();
    let mut pings = Vec::new();
    while start.elapsed() < Duration::from_secs(3) {
        if let Some(m) = recv(&manager, Duration::from_millis(200)) {
            assert_eq!(m, "WATCHDOG=1", "only pings while running");
            pings.push(Instant::now());
        }
    }
    let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    println!("{} pings in 3 s, gaps {gaps:?}", pings.len());
    assert!(pings.len() >= 4, "pings: {}, gaps {gaps:?}", pings.len());
    assert!(pings.len() <= 8, "pings too often: {gaps:?}");
    assert!(
        gaps.iter().all(|g| *g < Duration::from_secs(1)),
        "a gap as long as the timeout: {gaps:?}"
    );

    assert!(d.terminate(), "xvsd stops cleanly:\n{}", d.log());
    let (stopping, _) = recv_until(&manager, "STOPPING=1", Duration::from_secs(5));
    assert!(stopping.starts_with("STOPPING=1"));
    assert!(
        recv(&manager, Duration::from_millis(300)).is_none(),
        "silence after"
    );
}

#[test]
fn an_abstract_notify_socket_and_someone_elses_watchdog() {
    let test = "an_abstract_notify_socket_and_someone_elses_watchdog";
    let Some(mut lab) = Lab::new(test) else {
        return;
    };
    let name = format!("{}-notify", lab.prefix);
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let manager = UnixDatagram::bind_addr(&addr).expect("an abstract socket");
    let socket = lab.path("xvsd.ctl");
    let at = format!("@{name}");
    let mut d = lab.xvsd_with_env(
        &socket,
        &[],
        &[],
        &[
            ("NOTIFY_SOCKET", OsStr::new(&at)),
            ("WATCHDOG_USEC", OsStr::new("200000")),
            // The watchdog is another process's: xvsd must not ping it.
            ("WATCHDOG_PID", OsStr::new("1")),
        ],
    );
    let (ready, before) = recv_until(&manager, "READY=1", Duration::from_secs(15));
    assert!(before.is_empty(), "{before:?}");
    assert!(ready.starts_with("READY=1"));
    std::thread::sleep(Duration::from_millis(600));
    assert!(d.terminate());
    let (_, before) = recv_until(&manager, "STOPPING=1", Duration::from_secs(5));
    assert!(
        before.is_empty(),
        "no ping for another's watchdog: {before:?}"
    );
}

/// The Python path where `prometheus_client` imports: `Some(None)` where python3 has it
/// already, `Some(dir)` where the test installed it into `dir` with pip, `None` (with a note
/// printed) where it cannot be had.
fn prometheus_client(test: &str) -> Option<Option<PathBuf>> {
    let imports = |path: Option<&Path>| {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", "import prometheus_client"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = path {
            cmd.env("PYTHONPATH", p);
        }
        cmd.status().is_ok_and(|s| s.success())
    };
    if imports(None) {
        return Some(None);
    }
    // A directory of the build's own (pip's --target leaves the system's Python alone).
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-prometheus-client");
    if imports(Some(&dir)) {
        return Some(Some(dir));
    }
    let installed = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg("--target")
        .arg(&dir)
        .arg("prometheus_client")
        .status()
        .is_ok_and(|s| s.success());
    if installed && imports(Some(&dir)) {
        return Some(Some(dir));
    }
    skip(
        test,
        "python3 cannot import prometheus_client and `python3 -m pip install prometheus_client` \
         failed (install python3 and python3-pip)",
    );
    None
}

/// Parses `page` with prometheus_client's parser for `format` (`prometheus`: the text format
/// 0.0.4; `openmetrics`); returns every sample as {family, type, name, labels, value}. A page
/// the parser rejects fails the test with its error.
fn parse(page: &str, format: &str, python_path: Option<&Path>) -> Vec<Value> {
    const SCRIPT: &str = r#"
import json, sys
if sys.argv[1] == "openmetrics":
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
else:
    from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"family": family.name, "type": family.type, "name": s.name,
                    "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;
    let mut cmd = Command::new("python3");
    cmd.args(["-c", SCRIPT, format])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = python_path {
        cmd.env("PYTHONPATH", p);
    }
    let mut child = cmd.spawn().expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the {format} parser rejects the page: {}\n{page}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the parser's samples")
}

/// GET `path` from `d`'s metrics at `addr` over HTTP/1.0: (status, content type, body).
fn get(d: &Daemon, addr: &str, path: &str, accept: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| {
        panic!(
            "connect to the metrics port {addr:?}: {e}\nxvsd's log:\n{}",
            d.log()
        )
    });
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("a response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("headers, then a body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let content_type = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        })
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// The value of the sample `name` with (at least) these labels.
fn value(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][k] == *v))
        .and_then(|s| s["value"].as_f64())
}

#[test]
fn prometheus_parses_the_metrics_page() {
    let test = "prometheus_parses_the_metrics_page";
    let Some(mut lab) = Lab::new(test) else {
        return;
    };
    let Some(python_path) = prometheus_client(test) else {
        return;
    };
    let python_path = python_path.as_deref();
    let a = lab.container(1, 71);
    let b = lab.container(2, 71);
    let d = lab.xvsd(&[&a.port, &b.port], &["--metrics", "127.0.0.1:0"]);
    let log = d.log();
    let addr = log
        .split("metrics at http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("xvsd logs where its metrics are:\n{log}"))
        .to_owned();
    assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));
    assert_eq!(a.ping(&b.ip, 5, 0.1), 5);
    let drop = format!(
        "priority=100,icmp,nw_src={},nw_dst={},actions=drop",
        a.ip, b.ip
    );
    let rule = d.call("add-flow", json!({ "flow": drop }))["id"]
        .as_u64()
        .unwrap()
        .to_string();
    assert_eq!(a.ping(&b.ip, 3, 0.1), 0, "the rule drops");

    // The snapshot is taken every second: wait for one with the dropped pings in it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (samples, page) = loop {
        let (status, content_type, page) = get(&d, &addr, "/metrics", "text/plain");
        assert_eq!(status, 200, "{page}");
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        let samples = parse(&page, "prometheus", python_path);
        let rule_packets = value(&samples, "xvs_rule_packets_total", &[("rule", &rule)]);
        if rule_packets == Some(3.0) || Instant::now() > deadline {
            break (samples, page);
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let v = |name: &str, labels: &[(&str, &str)]| {
        value(&samples, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?}:\n{page}"))
    };
    let (pa, pb) = (a.port.as_str(), b.port.as_str());
    assert!(v("xvs_port_rx_packets_total", &[("port", pa)]) >= 8.0);
    assert!(v("xvs_port_rx_bytes_total", &[("port", pa)]) >= 8.0 * 98.0);
    assert!(v("xvs_port_tx_packets_total", &[("port", pb)]) >= 5.0);
    assert!(v("xvs_port_tx_bytes_total", &[("port", pb)]) >= 5.0 * 98.0);
    assert_eq!(
        v("xvs_port_drops_total", &[("port", pa), ("cause", "rule")]),
        3.0
    );
    assert_eq!(
        v(
            "xvs_port_drops_total",
            &[("port", pb), ("cause", "xsk_rx_ring_full")]
        ),
        0.0
    );
    let flow = samples
        .iter()
        .find(|s| s["name"] == "xvs_rule_packets_total" && s["labels"]["rule"] == *rule)
        .map(|s| s["labels"]["flow"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    assert!(flow.contains("actions=drop"), "the rule's text: {flow:?}");
    assert_eq!(v("xvs_rule_bytes_total", &[("rule", &rule)]), 3.0 * 98.0);
    let busy = v("xvs_worker_busy_ratio", &[("worker", "0")]);
    assert!((0.0..=1.0).contains(&busy), "{busy}");
    assert!(v("xvs_worker_busy_seconds_total", &[("worker", "0")]) > 0.0);
    let decided = v("xvs_flow_cache_hits_total", &[("worker", "0")])
        + v("xvs_flow_cache_misses_total", &[("worker", "0")]);
    assert!(decided > 0.0);
    assert!(v("xvs_mac_table_entries", &[]) >= 2.0);
    assert!(v("xvs_fast_path_entries", &[]) >= 0.0);
    assert!(v("xvs_fast_path_hits_total", &[("port", pa)]) >= 0.0);
    assert!(v("xvs_uptime_seconds", &[]) > 0.0);
    assert!(v("xvs_metrics_snapshot_age_seconds", &[]) < 5.0);
    assert_eq!(
        v("xvs_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        1.0
    );
    for s in &samples {
        let name = s["name"].as_str().unwrap();
        assert!(name.starts_with("xvs_"), "{name}");
        if s["type"] == "counter" {
            assert!(name.ends_with("_total"), "a counter without _total: {name}");
        }
    }

    // OpenMetrics, as Prometheus asks for first, through the stricter parser.
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let (status, content_type, page) = get(&d, &addr, "/metrics", accept);
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let samples = parse(&page, "openmetrics", python_path);
    let build = samples
        .iter()
        .find(|s| s["family"] == "xvs_build")
        .expect("the build info family");
    assert_eq!(build["type"], "info");
    assert!(value(&samples, "xvs_port_rx_packets_total", &[("port", pa)]).is_some());

    let (status, _, _) = get(&d, &addr, "/nothing", "*/*");
    assert_eq!(status, 404);
}

/// Stops one thread as a debugger does (ptrace: seize, interrupt) for `secs` seconds, then lets
/// it go; the other threads of its process run on. Prints "frozen" once the thread is stopped.
/// If this process dies, the kernel detaches and the thread runs again.
const FREEZE_THREAD: &str = r#"
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT, WALL = 17, 0x4206, 0x4207, 0x40000000
tid, secs = int(sys.argv[1]), float(sys.argv[2])
for request in (PTRACE_SEIZE, PTRACE_INTERRUPT):
    if libc.ptrace(request, tid, None, None) != 0:
        print("ptrace:", os.strerror(ctypes.get_errno()), flush=True)
        sys.exit(2)
os.waitpid(tid, WALL)
print("frozen", flush=True)
time.sleep(secs)
libc.ptrace(PTRACE_DETACH, tid, None, None)
"#;

#[test]
fn a_stuck_worker_stops_the_watchdog_pings() {
    let test = "a_stuck_worker_stops_the_watchdog_pings";
    let Some(mut lab) = Lab::new(test) else {
        return;
    };
    if !lab.require("python3") {
        return;
    }
    let notify_path = lab.path("notify.sock");
    let manager = UnixDatagram::bind(&notify_path).expect("the manager's socket");
    let socket = lab.path("xvsd.ctl");
    let mut d = lab.xvsd_with_env(
        &socket,
        &[],
        &[],
        &[
            ("NOTIFY_SOCKET", notify_path.as_os_str()),
            ("WATCHDOG_USEC", OsStr::new("1000000")),
        ],
    );
    recv_until(&manager, "READY=1", Duration::from_secs(15));
    recv_until(&manager, "WATCHDOG=1", Duration::from_secs(2));
    let tid = d.call("show", json!({}))["workers"][0]["tid"]
        .as_i64()
        .expect("the worker's thread id");

    let freeze = Duration::from_millis(3500);
    let mut freezer = Command::new("python3")
        .args(["-c", FREEZE_THREAD, &tid.to_string()])
        .arg(freeze.as_secs_f64().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut said = String::new();
    let mut out = freezer.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        said.push(char::from(byte[0]));
    }
    if said != "frozen" {
        let _ = freezer.wait();
        skip(
            test,
            format_args!("cannot stop a thread with ptrace: {said}"),
        );
        return;
    }
    let frozen_at = Instant::now();
    // The stall limit is 1 s (the interval, 0.5 s, raised to the minimum): a ping may still
    // come in the first second of the freeze, none after, until the freezer lets go (it does
    // `freeze` after saying "frozen", a little before `frozen_at + freeze`).
    let watched = freeze - Duration::from_millis(500);
    let mut pings = Vec::new();
    while frozen_at.elapsed() < watched {
        if let Some(m) = recv(&manager, Duration::from_millis(100)) {
            assert_eq!(m, "WATCHDOG=1");
            pings.push(frozen_at.elapsed());
        }
    }
    assert!(freezer.wait().unwrap().success(), "the freezer let go");
    println!("pings during the freeze: {pings:?}");
    assert!(
        pings.iter().all(|at| *at < Duration::from_millis(1500)),
        "pings while the worker was stuck: {pings:?}"
    );
    let silence = watched - pings.last().copied().unwrap_or_default();
    assert!(silence > Duration::from_secs(1), "longer than WatchdogSec");
    assert!(
        d.log().contains("withholding the watchdog ping"),
        "{}",
        d.log()
    );

    // Released, the worker moves again, and so do the pings.
    let (_, before) = recv_until(&manager, "WATCHDOG=1", Duration::from_secs(3));
    assert!(before.is_empty(), "{before:?}");
    assert!(d.terminate(), "xvsd stops cleanly:\n{}", d.log());
}
