//! Runs xvs-e2e in its CI smoke mode (`--quick --only bridge`) and checks that the JSON
//! carries every field, and that the run left nothing behind. It asserts on structure, never
//! on speed. Needs root (namespaces, veths, XDP); skips with a printed reason otherwise.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn is_number(v: &Value) -> bool {
    v.as_f64().is_some_and(f64::is_finite)
}

#[test]
fn quick_bridge_run_writes_every_field() {
    const TEST: &str = "quick_bridge_run_writes_every_field";
    if !xvs_testkit::can_run(TEST, &["ip", "ethtool", "taskset", "ping", "ss", "sysctl"]) {
        return;
    }
    let exe = Path::new(env!("CARGO_BIN_EXE_xvs-e2e"));
    let bin_dir = exe.parent().expect("a directory");
    if !bin_dir.join("xvs-pktgen").is_file() {
        xvs_testkit::skip(
            TEST,
            format_args!(
                "xvs-pktgen is not built in {} (`cargo build --workspace --bins` builds it)",
                bin_dir.display()
            ),
        );
        return;
    }
    let json_path = std::env::temp_dir().join(format!("xvs-e2e-smoke-{}.json", std::process::id()));
    let out = Command::new(exe)
        .args(["--quick", "--only", "bridge", "--json"])
        .arg(&json_path)
        .arg("--bin-dir")
        .arg(bin_dir)
        .env_remove("CARGO")
        .output()
        .expect("run xvs-e2e");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "xvs-e2e failed:\n{stdout}\n{stderr}");
    let text = std::fs::read_to_string(&json_path).expect("the JSON was written");
    let _ = std::fs::remove_file(&json_path);
    let doc: Value = serde_json::from_str(&text).expect("valid JSON");

    assert_eq!(doc["tool"], "xvs-e2e");
    assert_eq!(doc["interrupted"], false);
    assert!(doc["host"]["cpus"].as_u64().is_some_and(|n| n >= 2));
    assert_eq!(doc["config"]["trials"], 1);
    assert_eq!(doc["config"]["quick"], true);
    assert!(doc["pinning"].as_str().is_some_and(|p| p.contains("CPU")));
    assert!(doc["ratios"].is_object());
    assert!(doc["table"].as_str().is_some_and(|t| t.contains("bridge")));
    assert!(stdout.contains("figure") && stdout.contains("bridge"));

    let figures = doc["figures"].as_array().expect("figures");
    for f in figures {
        for field in ["key", "label", "unit", "better"] {
            assert!(f[field].is_string(), "figure without {field}: {f}");
        }
    }
    let switches = doc["switches"].as_array().expect("switches");
    assert_eq!(switches.len(), 1);
    let bridge = &switches[0];
    assert_eq!(bridge["name"], "bridge");
    assert_eq!(bridge["peer"], true);
    assert!(
        ["ok", "partial"].contains(&bridge["status"].as_str().unwrap_or("")),
        "status {}: {}",
        bridge["status"],
        bridge["reason"]
    );
    for f in figures {
        let key = f["key"].as_str().unwrap();
        let r = &bridge["figures"][key];
        assert_eq!(r["trials"].as_array().map(Vec::len), Some(1), "{key}: {r}");
        for field in ["min", "median", "max"] {
            assert!(
                r[field].is_null() || is_number(&r[field]),
                "{key}.{field}: {r}"
            );
        }
        assert!(r["errors"].is_array(), "{key}: {r}");
    }
    // The figures every switch has (the bridge has no process of its own).
    for key in [
        "rate_64b_1flow_mpps",
        "offered_64b_1flow_mpps",
        "rate_64b_1000flows_mpps",
        "zero_loss_64b_mpps",
        "rate_1518b_mpps",
        "rate_1518b_gbps",
        "rtt_p50_us",
        "rtt_p99_us",
        "cpu0_softirq_s_per_mpkt",
        "cpu_all_busy_s_per_mpkt",
        "idle_all_cpus_busy",
    ] {
        let r = &bridge["figures"][key];
        assert!(is_number(&r["median"]), "{key} has no value: {r}");
    }
    assert!(bridge["figures"]["cpu_switch_process_user_s_per_mpkt"]["median"].is_null());

    let rounds = bridge["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 1);
    let round = &rounds[0];
    let rate = &round["rate_64b_1flow"];
    assert_eq!(
        rate["sink"], "tc",
        "the 64 B figures count at tcx ingress: {rate}"
    );
    for field in [
        "sent",
        "received",
        "offered_pps",
        "forwarded_pps",
        "loss_pct",
    ] {
        assert!(is_number(&rate[field]), "rate_64b_1flow.{field}: {rate}");
    }
    let cpus = rate["cpu"]["cpus"].as_array().expect("per-CPU times");
    for field in ["user", "system", "softirq", "idle"] {
        assert!(is_number(&cpus[0][field]), "cpu.{field}: {}", cpus[0]);
    }
    assert!(round["zero_loss_64b"]["steps"].is_array());
    assert!(is_number(&round["round_trip"]["p99_us"]));
    assert_eq!(round["round_trip"]["report"]["command"], "rtt");
    assert_eq!(round["gro_turned_on_on_vsrc"], true);

    // Nothing left behind: the round's namespaces and host veths are gone.
    let topo = &round["topology"];
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let netns = String::from_utf8_lossy(&netns.stdout);
    for ns in ["src_ns", "sink_ns"] {
        let name = topo[ns].as_str().unwrap();
        assert!(!netns.contains(name), "namespace {name} is left");
    }
    for link in ["vsrc", "vsink"] {
        let name = topo[link].as_str().unwrap();
        assert!(
            !Path::new("/sys/class/net").join(name).exists(),
            "link {name} is left"
        );
    }
}

#[test]
fn quick_egress_run_measures_and_cleans_up() {
    const TEST: &str = "quick_egress_run_measures_and_cleans_up";
    if !xvs_testkit::can_run(
        TEST,
        &[
            "ip", "ethtool", "taskset", "ping", "ss", "sysctl", "nft", "iperf3",
        ],
    ) {
        return;
    }
    let exe = Path::new(env!("CARGO_BIN_EXE_xvs-e2e"));
    let bin_dir = exe.parent().expect("a directory");
    if !bin_dir.join("xvs-pktgen").is_file() {
        xvs_testkit::skip(
            TEST,
            format_args!("xvs-pktgen is not built in {}", bin_dir.display()),
        );
        return;
    }
    // xvs too when its binaries are there.
    let with_xvs = ["xvsd", "xvsctl"].iter().all(|b| bin_dir.join(b).is_file());
    let only = if with_xvs { "xvs,bridge" } else { "bridge" };
    let json_path =
        std::env::temp_dir().join(format!("xvs-e2e-egress-{}.json", std::process::id()));
    let out = Command::new(exe)
        .args(["--quick", "--figures", "egress", "--only", only, "--json"])
        .arg(&json_path)
        .arg("--bin-dir")
        .arg(bin_dir)
        .env_remove("CARGO")
        .output()
        .expect("run xvs-e2e");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "xvs-e2e failed:\n{stdout}\n{stderr}");
    let text = std::fs::read_to_string(&json_path).expect("the JSON was written");
    let _ = std::fs::remove_file(&json_path);
    let doc: Value = serde_json::from_str(&text).expect("valid JSON");
    let keys: Vec<&str> = doc["figures"]
        .as_array()
        .expect("figures")
        .iter()
        .filter_map(|f| f["key"].as_str())
        .collect();
    for key in ["egress_tcp_gbps", "egress_fast_path_pct"] {
        assert!(keys.contains(&key), "no figure {key}: {keys:?}");
    }
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let netns = String::from_utf8_lossy(&netns.stdout);
    for sw in doc["switches"].as_array().expect("switches") {
        let figures = &sw["figures"];
        assert!(
            is_number(&figures["egress_tcp_gbps"]["median"]),
            "{}: no egress figure: {figures}\n{stderr}",
            sw["name"]
        );
        if sw["name"] == "xvs" {
            assert!(is_number(&figures["egress_fast_path_pct"]["median"]));
        }
        let egress = &sw["rounds"][0]["egress"];
        for ns in egress["namespaces"].as_array().expect("namespaces") {
            let ns = ns.as_str().unwrap();
            assert!(!netns.contains(ns), "namespace {ns} is left");
        }
    }
    if with_xvs {
        assert!(doc["ratios"]["xvs/bridge"]["egress_tcp_gbps"].is_number());
    }
}
