//! xvs-pktgen end to end, in namespaces of its own: `send` on one end of a veth pair, `count`
//! on the other. The assertions are on counts and contents, never on speed.

#[expect(
    dead_code,
    reason = "each test binary uses a part of the shared helpers"
)]
mod common;

use std::process::Command;
use std::time::Duration;

use common::{MAC_B, VethPair, can_run, count, pktgen, summary};

/// How long a test waits for a counter to end after it should have.
const GRACE: Duration = Duration::from_secs(20);

/// Counts on B (in XDP, or through AF_XDP with `count_args`), sends from A with `send_args`,
/// stops the counter, and returns both summaries.
fn send_and_count(
    pair: &VethPair,
    count_args: &[&str],
    send_args: &[&str],
) -> (serde_json::Value, serde_json::Value) {
    let mut args = vec!["count", "--dev", &pair.dev_b, "--json"];
    args.extend_from_slice(count_args);
    let counter = pair.spawn_until(&pair.ns_b, &args, " on ");
    let mut args = vec!["send", "--dev", &pair.dev_a, "--dst-mac", MAC_B, "--json"];
    args.extend_from_slice(send_args);
    let sent = pair.pktgen(&pair.ns_a, &args);
    assert!(
        sent.status.success(),
        "send failed: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    // Let the last frames land, then stop the counter as Ctrl-C would.
    std::thread::sleep(Duration::from_millis(300));
    counter.interrupt();
    let counted = counter.finish(GRACE);
    assert!(counted.success, "count failed: {}", counted.stderr);
    let sent = summary(&String::from_utf8_lossy(&sent.stdout));
    let counted = summary(&counted.stdout);
    eprintln!("sent: {sent}\ncounted: {counted}");
    (sent, counted)
}

fn assert_most_arrived(sent: &serde_json::Value, counted: &serde_json::Value) {
    let sent = count(sent, "/sent_packets");
    let received = count(counted, "/received_packets");
    assert!(sent > 0, "nothing was sent");
    assert!(
        received * 10 >= sent * 9,
        "the counter saw {received} of {sent} frames"
    );
}

#[test]
fn live_frames_at_full_rate_reach_the_counter() {
    if !can_run("live_frames_at_full_rate_reach_the_counter") {
        return;
    }
    let pair = VethPair::new();
    let (sent, counted) = send_and_count(&pair, &[], &["--rate", "max", "--duration", "2"]);
    assert_eq!(sent["mode"], "live-frames", "live frames fell back: {sent}");
    assert_most_arrived(&sent, &counted);
    assert_eq!(counted["interrupted"], true);
}

#[test]
fn live_frames_with_100_flows_reach_the_counter() {
    if !can_run("live_frames_with_100_flows_reach_the_counter") {
        return;
    }
    let pair = VethPair::new();
    let (sent, counted) = send_and_count(
        &pair,
        &[],
        &["--rate", "max", "--duration", "2", "--flows", "100"],
    );
    assert_eq!(count(&sent, "/flows"), 100);
    assert_most_arrived(&sent, &counted);
}

#[test]
fn live_frames_are_well_formed_in_every_variation() {
    if !can_run("live_frames_are_well_formed_in_every_variation") {
        return;
    }
    let pair = VethPair::new();
    // (flows, sizes, extra arguments): the template as it is; ports and sizes varied; more
    // flows than ports from 65000 up (536), so that source addresses vary too, in both
    // families; replies, whose flows vary the destination port.
    let cases: [(u64, (u64, u64), &[&str]); 5] = [
        (1, (64, 64), &["--flows", "1"]),
        (100, (64, 1518), &["--flows", "100", "--size", "64..1518"]),
        (3000, (64, 64), &["--flows", "3000", "--src-port", "65000"]),
        (
            3000,
            (66, 200),
            &[
                "--ipv6",
                "--flows",
                "3000",
                "--src-port",
                "65000",
                "--size",
                "66..200",
            ],
        ),
        (
            500,
            (64, 64),
            &[
                "--flows",
                "500",
                "--reply",
                "--src-port",
                "9",
                "--dst-port",
                "1024",
            ],
        ),
    ];
    for (flows, (size_min, size_max), extra) in cases {
        let mut args = vec!["--rate", "20000", "--duration", "1"];
        args.extend_from_slice(extra);
        let (sent, counted) = send_and_count(&pair, &["--inspect"], &args);
        assert_eq!(sent["mode"], "live-frames");
        assert_most_arrived(&sent, &counted);
        // The pacer never runs ahead of the target by more than its catch-up burst.
        assert!(count(&sent, "/sent_packets") <= 20_000 + 20_000 / 10 + 64);
        assert_eq!(count(&counted, "/inspect/bad_checksums"), 0, "{extra:?}");
        assert_eq!(
            count(&counted, "/inspect/distinct_flows"),
            flows,
            "{extra:?}"
        );
        let (min, max) = (
            count(&counted, "/inspect/size_min"),
            count(&counted, "/inspect/size_max"),
        );
        // Every size of a range comes round many times in 20000 frames.
        assert_eq!((min, max), (size_min, size_max), "{extra:?}");
    }
}

#[test]
fn afxdp_fallback_reaches_the_counter() {
    if !can_run("afxdp_fallback_reaches_the_counter") {
        return;
    }
    let pair = VethPair::new();
    let (sent, counted) = send_and_count(
        &pair,
        &[],
        &["--mode", "afxdp", "--duration", "1", "--flows", "10"],
    );
    assert_eq!(sent["mode"], "afxdp");
    assert_most_arrived(&sent, &counted);
}

#[test]
fn latency_mode_reports_percentiles() {
    if !can_run("latency_mode_reports_percentiles") {
        return;
    }
    let pair = VethPair::new();
    let (sent, counted) = send_and_count(
        &pair,
        &["--latency"],
        &["--latency", "--rate", "10000", "--duration", "2"],
    );
    assert_eq!(sent["mode"], "afxdp");
    assert_most_arrived(&sent, &counted);
    let sent = count(&sent, "/sent_packets");
    let samples = count(&counted, "/latency/samples");
    assert!(samples * 10 >= sent * 9, "{samples} of {sent} frames timed");
    let [p50, p90, p99, p999, max] = ["p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns"]
        .map(|p| count(&counted, &format!("/latency/{p}")));
    assert!(0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max);
    assert!(count(&counted, "/latency/lost") * 10 <= sent);
    assert_eq!(count(&counted, "/inspect/bad_checksums"), 0);
}

#[test]
fn ctrl_c_ends_a_send_with_its_summary_and_detaches_the_counter() {
    if !can_run("ctrl_c_ends_a_send_with_its_summary_and_detaches_the_counter") {
        return;
    }
    let pair = VethPair::new();
    let counter = pair.spawn_until(
        &pair.ns_b,
        &["count", "--dev", &pair.dev_b, "--json"],
        " on ",
    );
    let sender = pair.spawn_until(
        &pair.ns_a,
        &[
            "send",
            "--dev",
            &pair.dev_a,
            "--dst-mac",
            MAC_B,
            "--duration",
            "60",
            "--json",
        ],
        "1.0 s:",
    );
    sender.interrupt();
    let sent = sender.finish(GRACE);
    assert!(sent.success, "{}", sent.stderr);
    let sent = summary(&sent.stdout);
    assert_eq!(sent["interrupted"], true);
    assert!(sent["duration_s"].as_f64().unwrap() < 30.0);

    // A second counter cannot attach while the first holds the interface...
    let busy = pair.pktgen(
        &pair.ns_b,
        &["count", "--dev", &pair.dev_b, "--duration", "1"],
    );
    assert!(!busy.status.success());
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert!(
        stderr.contains("another XDP program is attached"),
        "{stderr}"
    );

    // ... and can once the first has ended on Ctrl-C: its program went with it.
    counter.interrupt();
    let counted = counter.finish(GRACE);
    assert!(counted.success, "{}", counted.stderr);
    assert_most_arrived(&sent, &summary(&counted.stdout));
    let link = Command::new("ip")
        .args(["-n", &pair.ns_b, "-d", "link", "show", &pair.dev_b])
        .output()
        .expect("ip link");
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(
        !link.contains("prog/xdp"),
        "an XDP program is still attached: {link}"
    );
}

/// Runs xvs-pktgen outside any namespace with arguments that must fail before it touches a
/// device; returns its stderr.
fn fails(args: &[&str]) -> String {
    let out = Command::new(pktgen())
        .args(args)
        .output()
        .expect("run xvs-pktgen");
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_arguments_fail_with_a_clear_message() {
    let mac = "02:00:00:00:00:02";
    let no_dev = "xpg-nosuchdev";
    let e = fails(&["send", "--dev", no_dev, "--dst-mac", mac]);
    assert!(e.contains("no such device: xpg-nosuchdev"), "{e}");
    let e = fails(&["count", "--dev", no_dev]);
    assert!(e.contains("no such device"), "{e}");
    let e = fails(&["send", "--dev", "lo", "--dst-mac", "02:00:00:00:00"]);
    assert!(e.contains("not a MAC address"), "{e}");
    let e = fails(&["send", "--dev", "lo", "--dst-mac", mac, "--size", "1519"]);
    assert!(e.contains("1519 is out of range"), "{e}");
    let e = fails(&[
        "send",
        "--dev",
        "lo",
        "--dst-mac",
        mac,
        "--size",
        "64",
        "--ipv6",
    ]);
    assert!(e.contains("at least 66 bytes"), "{e}");
    let e = fails(&["send", "--dev", "lo", "--dst-mac", mac, "--rate", "fast"]);
    assert!(e.contains("packets per second"), "{e}");
    let e = fails(&["send", "--dev", "lo", "--dst-mac", mac, "--flows", "0"]);
    assert!(e.contains("--flows must be between"), "{e}");
    let e = fails(&[
        "send",
        "--dev",
        "lo",
        "--dst-mac",
        mac,
        "--reply",
        "--dst-port",
        "65000",
        "--flows",
        "1000",
    ]);
    assert!(e.contains("--reply takes at most 536 flows"), "{e}");
    let e = fails(&["send", "--dev", "lo", "--dst-mac", mac, "--duration", "0"]);
    assert!(e.contains("positive number of seconds"), "{e}");
    let e = fails(&[
        "send",
        "--dev",
        "lo",
        "--dst-mac",
        mac,
        "--latency",
        "--mode",
        "live",
    ]);
    assert!(e.contains("cannot be combined"), "{e}");
    let e = fails(&["send", "--dev", "lo"]);
    assert!(e.contains("--dst-mac"), "{e}");
}

#[test]
fn without_privileges_it_says_it_needs_root() {
    if !can_run("without_privileges_it_says_it_needs_root") {
        return;
    }
    if !xvs_testkit::have("setpriv") {
        xvs_testkit::skip!("no setpriv");
    }
    // As nobody, with no capabilities: the tool must say so, before touching anything.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(pktgen())
        .args(["count", "--dev", "lo"])
        .output()
        .expect("run setpriv");
    let e = String::from_utf8_lossy(&out.stderr);
    if !e.contains("xvs-pktgen") {
        xvs_testkit::skip!("nobody cannot run {}: {e}", pktgen().display());
    }
    assert!(!out.status.success());
    assert!(e.contains("must run as root"), "{e}");
}
