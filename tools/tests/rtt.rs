//! `xvs-pktgen rtt` across a veth pair: an echo server on one side, the client on the other.
//! The assertions are on counts and the order of percentiles, never on speed.

#[expect(
    dead_code,
    reason = "each test binary uses a part of the shared helpers"
)]
mod common;

use std::process::Command;
use std::time::Duration;

use common::{IP_B, VethPair, can_run, count, pktgen, summary};

/// How long a test waits for a server to end after it should have.
const GRACE: Duration = Duration::from_secs(20);

fn client(pair: &VethPair, server: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["rtt", "--client", server, "--json"];
    args.extend_from_slice(extra);
    let out = pair.pktgen(&pair.ns_a, &args);
    assert!(
        out.status.success(),
        "rtt --client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = summary(&String::from_utf8_lossy(&out.stdout));
    eprintln!("client: {report}");
    report
}

#[test]
fn rtt_times_the_echoes_of_a_server_across_a_veth() {
    if !can_run("rtt_times_the_echoes_of_a_server_across_a_veth") {
        return;
    }
    let pair = VethPair::new_ipv4();
    let server = format!("{IP_B}:7007");
    let echo = pair.spawn_until(
        &pair.ns_b,
        &["rtt", "--server", &server, "--json"],
        "echoing on",
    );
    let report = client(
        &pair,
        &server,
        &["--rate", "2000", "--duration", "1", "--timeout", "500"],
    );
    echo.interrupt();
    let echoed = echo.finish(GRACE);
    assert!(echoed.success, "rtt --server failed: {}", echoed.stderr);
    let echoed = summary(&echoed.stdout);
    eprintln!("server: {echoed}");

    assert_eq!(
        (&report["command"], &report["role"]),
        (&"rtt".into(), &"client".into())
    );
    let sent = count(&report, "/sent");
    let received = count(&report, "/received");
    assert!(
        (1500..=2100).contains(&sent),
        "sent {sent} at 2000/s for 1 s"
    );
    assert!(received * 10 >= sent * 9, "{received} of {sent} answered");
    assert_eq!(
        count(&report, "/lost") + count(&report, "/late") + received,
        sent
    );
    assert_eq!(count(&report, "/duplicates"), 0);
    let us = |key: &str| {
        report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("no {key} in {report}"))
    };
    let (min, p50, p99, p999, max) = (
        us("min_us"),
        us("p50_us"),
        us("p99_us"),
        us("p999_us"),
        us("max_us"),
    );
    assert!(0.0 < min && min <= p50 && p50 <= p99 && p99 <= p999 && p999 <= max);
    assert!(
        max <= 500_000.0,
        "a reply counted after the timeout: {max} us"
    );
    assert!(count(&echoed, "/replies") >= received);
    assert_eq!(echoed["interrupted"], true);
}

#[test]
fn rtt_counts_requests_nobody_answers_as_lost() {
    if !can_run("rtt_counts_requests_nobody_answers_as_lost") {
        return;
    }
    let pair = VethPair::new_ipv4();
    // No server: side B answers with ICMP port unreachable, which the client's socket turns
    // into errors on later calls; the client carries on and counts.
    let report = client(
        &pair,
        &format!("{IP_B}:7008"),
        &["--rate", "500", "--duration", "0.5", "--timeout", "100"],
    );
    let sent = count(&report, "/sent");
    assert!(sent > 100, "sent {sent}");
    assert_eq!(count(&report, "/received"), 0);
    assert_eq!(count(&report, "/lost"), sent);
    assert_eq!(report["loss_pct"], 100.0);
    assert!(report["p50_us"].is_null() && report["p99_us"].is_null());
}

#[test]
fn rtt_arguments_are_checked() {
    let fails = |args: &[&str]| {
        let out = Command::new(pktgen())
            .args(args)
            .output()
            .expect("run xvs-pktgen");
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = fails(&["rtt", "--rate", "10"]);
    assert!(e.contains("--server") && e.contains("--client"), "{e}");
    let e = fails(&["rtt", "--server", "127.0.0.1:7", "--client", "127.0.0.1:7"]);
    assert!(e.contains("cannot be used with"), "{e}");
    let e = fails(&["rtt", "--client", "127.0.0.1:7", "--rate", "max"]);
    assert!(e.contains("requests per second"), "{e}");
    let e = fails(&["rtt", "--client", "127.0.0.1:7", "--timeout", "0"]);
    assert!(e.contains("milliseconds"), "{e}");
    let e = fails(&["rtt", "--client", "localhost"]);
    assert!(e.contains("invalid"), "{e}");
}
