//! The saved state: restore after SIGKILL, absent interfaces, a corrupt or contested state
//! directory, kills during writes, and the SIGUSR2 handover that loses no packet.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Container, Daemon, Lab, link_exists};
use serde_json::{Value, json};
use xvs_proto::state::DesiredState;

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn port_names(d: &Daemon) -> Vec<String> {
    let show = d.call("show", json!({}));
    show["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

fn absent_names(d: &Daemon) -> Vec<String> {
    let show = d.call("show", json!({}));
    show["absent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

fn port_id(d: &Daemon, name: &str) -> u64 {
    let show = d.call("show", json!({}));
    show["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no port {name}: {show}"))["id"]
        .as_u64()
        .unwrap()
}

fn saved(lab: &Lab, d: &Daemon) -> DesiredState {
    let path = lab.state_dir(&d.socket).join("state.json");
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Waits until `cond` holds, up to `secs` seconds.
fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

#[test]
fn sigkill_then_restart_restores_ports_rules_addresses_and_attached_containers() {
    let Some(mut lab) = Lab::new("sigkill_then_restart_restores") else {
        return;
    };
    let c1 = lab.container(1, 71);
    let c2 = lab.container(2, 71);
    let c3 = lab.container(3, 71);
    let mut d = lab.xvsd(&[], &[]);
    // Added in the reverse of the order a restore adds them in (by name), so that every
    // port gets another number after the restart.
    for c in [&c3, &c2, &c1] {
        d.call("add-port", json!({"name": c.port}));
    }
    assert_eq!(port_id(&d, &c3.port), 1);
    // Container 3 may talk to no one; a router address and a route; a namespace attached.
    d.call(
        "add-flow",
        json!({"flow": format!("priority=200,in_port={},actions=drop", c3.port)}),
    );
    d.call(
        "add-addr",
        json!({"name": c1.port, "addr": "10.71.0.254/24"}),
    );
    d.call(
        "add-route",
        json!({"prefix": "10.99.0.0/16", "via": "10.71.0.2"}),
    );
    let attached = lab.bare_container(4, "");
    ok(&d.ctl(&["attach", &attached.ns, "--ip", "10.71.0.4/24"]));
    let attached_port = d.call("show", json!({}))["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["external_ids"]["netns_inode"].is_string())
        .expect("the attached port")["name"]
        .as_str()
        .unwrap()
        .to_owned();
    lab.track_link(&attached_port);
    assert_eq!(
        c1.ping("10.71.0.4", 2, 0.2),
        2,
        "attached container reachable"
    );
    assert_eq!(c1.ping(&c2.ip, 2, 0.2), 2);
    assert_eq!(c3.ping(&c1.ip, 2, 0.2), 0, "the rule drops container 3");
    assert_eq!(
        c1.ping("10.71.0.254", 2, 0.2),
        2,
        "the router address answers"
    );
    let before = d.call("show-config", json!({}));
    let text = ok(&d.ctl(&["show-config"]));
    for want in [
        format!("port {}: vlan all", c3.port),
        format!("priority=200,in_port={},actions=drop", c3.port),
        format!("addr {}: 10.71.0.254/24", c1.port),
        "route 10.99.0.0/16 via 10.71.0.2".to_owned(),
        "netns_inode=".to_owned(),
    ] {
        assert!(text.contains(&want), "show-config lacks {want:?}:\n{text}");
    }
    let as_json: Value = serde_json::from_str(&ok(&d.ctl(&["show-config", "-j"]))).unwrap();
    assert_eq!(as_json, before);
    assert_eq!(
        serde_json::from_value::<DesiredState>(before.clone()).unwrap(),
        saved(&lab, &d),
        "the file is what show-config says"
    );

    d.kill9();
    // Nothing is attached while no xvsd runs: the containers are cut off.
    assert_eq!(c1.ping(&c2.ip, 1, 0.2), 0, "no switch, no forwarding");
    let d = lab.xvsd(&[], &[]);
    assert_eq!(
        d.call("show-config", json!({})),
        before,
        "the same desired state"
    );
    let mut names = port_names(&d);
    names.sort();
    let mut want = vec![
        c1.port.clone(),
        c2.port.clone(),
        c3.port.clone(),
        attached_port.clone(),
    ];
    want.sort();
    assert_eq!(names, want);
    assert_ne!(
        port_id(&d, &c3.port),
        1,
        "container 3's port has another number"
    );
    assert!(c1.wait_ping(&c2.ip, Duration::from_secs(5)));
    assert_eq!(c1.ping(&c2.ip, 3, 0.2), 3, "restored forwarding");
    assert_eq!(
        c2.ping("10.71.0.4", 3, 0.2),
        3,
        "the attached container is back"
    );
    assert_eq!(
        c3.ping(&c1.ip, 3, 0.2),
        0,
        "the rule still names container 3's port"
    );
    assert_eq!(
        c1.ping("10.71.0.254", 2, 0.2),
        2,
        "the router address answers"
    );
    let flows = d.call("dump-flows", json!({}));
    assert!(
        flows.to_string().contains(&format!("in_port={}", c3.port)),
        "{flows}"
    );
    let routes = d.call("show-routes", json!({}));
    assert!(routes.to_string().contains("10.99.0.0/16"), "{routes}");
    // Detach after the restart finds the attached port by what attach recorded.
    ok(&d.ctl(&["detach", &attached.ns]));
    assert!(!port_names(&d).contains(&attached_port));
    assert!(!link_exists(&attached_port));
}

/// Makes `c`'s veth again, its namespace end addressed as before.
fn recreate_veth(lab: &mut Lab, c: &Container) {
    let sh = |args: &[&str]| {
        let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
        ok(&out);
    };
    sh(&[
        "ip", "link", "add", &c.port, "type", "veth", "peer", "name", "eth0", "netns", &c.ns,
    ]);
    lab.track_link(&c.port);
    sh(&[
        "sysctl",
        "-qw",
        &format!("net.ipv6.conf.{}.disable_ipv6=1", c.port),
    ]);
    sh(&["ip", "link", "set", &c.port, "up"]);
    ok(&c.exec(&["ip", "addr", "add", &format!("{}/24", c.ip), "dev", "eth0"]));
    ok(&c.exec(&["ip", "link", "set", "eth0", "up"]));
    ok(&c.exec(&["ethtool", "-K", "eth0", "gro", "on"]));
}

#[test]
fn an_absent_interface_is_attached_when_it_appears_and_becomes_absent_when_it_goes() {
    let Some(mut lab) = Lab::new("an_absent_interface_is_attached_when_it_appears") else {
        return;
    };
    let c1 = lab.container(1, 72);
    let c2 = lab.container(2, 72);
    let mut d = lab.xvsd(&[&c1.port, &c2.port], &[]);
    assert!(c1.wait_ping(&c2.ip, Duration::from_secs(5)));
    d.call(
        "add-flow",
        json!({"flow": format!("priority=300,in_port={},icmp,actions=drop", c2.port)}),
    );
    d.kill9();
    // Container 2's veth goes while no xvsd runs; the restarted one waits for it.
    lab.delete_link(&c2.port);
    let d = lab.xvsd(&[], &[]);
    assert_eq!(port_names(&d), vec![c1.port.clone()]);
    assert_eq!(absent_names(&d), vec![c2.port.clone()]);
    let shown = ok(&d.ctl(&["show"]));
    assert!(shown.contains("absent"), "{shown}");
    // The interface appears again (a container restarted): no command attaches it.
    recreate_veth(&mut lab, &c2);
    assert!(
        eventually(5, || port_names(&d).contains(&c2.port)),
        "the port was not attached when its interface appeared:\n{}",
        d.log()
    );
    assert!(absent_names(&d).is_empty());
    assert_eq!(c2.ping(&c1.ip, 2, 0.2), 0, "its rule applies again");
    ok(&d.ctl(&["del-flows"]));
    assert!(c2.wait_ping(&c1.ip, Duration::from_secs(5)));

    // It vanishes while xvsd runs: absent again, and its MACs forgotten.
    let mac = c2.mac();
    assert!(
        d.call("fdb-show", json!({}))
            .to_string()
            .contains(mac.as_str())
    );
    lab.delete_link(&c2.port);
    assert!(
        eventually(5, || absent_names(&d) == vec![c2.port.clone()]),
        "not absent after the interface vanished"
    );
    assert!(
        !d.call("fdb-show", json!({}))
            .to_string()
            .contains(mac.as_str()),
        "its MAC is still learned"
    );
    let config = d.call("show-config", json!({}));
    assert!(config["ports"].get(&c2.port).is_some(), "still configured");
}

#[test]
fn a_corrupt_state_file_is_refused_and_kept_and_reset_state_sets_it_aside() {
    let Some(mut lab) = Lab::new("a_corrupt_state_file_is_refused") else {
        return;
    };
    let socket = lab.path("xvsd.ctl");
    // The lab names the state directory after the socket once a daemon ran on it.
    let mut d = lab.xvsd(&[], &[]);
    d.terminate();
    let dir = lab.state_dir(&socket);
    let file = dir.join("state.json");
    let garbage = b"{\"ports\": {\"eth9\": {\"vlan\": ";
    std::fs::write(&file, garbage).unwrap();
    let out = Command::new(xvs_testkit::bin_path("xvsd"))
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "xvsd started on a corrupt file");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert!(err.contains("EOF"), "the parser's error: {err}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        garbage,
        "the file was touched"
    );

    let d = lab.xvsd_at(&socket, &[], &["--reset-state"]);
    assert!(
        d.call("show-config", json!({}))["ports"]
            .as_object()
            .unwrap()
            .is_empty()
    );
    let aside: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.json.bad-")
        })
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(std::fs::read(aside[0].path()).unwrap(), garbage);

    // A second xvsd on the same state directory (another socket) is refused.
    let other = lab.path("other.ctl");
    let out = Command::new(xvs_testkit::bin_path("xvsd"))
        .arg("--socket")
        .arg(&other)
        .arg("--state-dir")
        .arg(&dir)
        .arg("--upcall-dev")
        .arg(format!("{}u9", lab.prefix))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another xvsd"), "{err}");
    assert!(
        d.call("version", json!({})).is_object(),
        "the first one serves on"
    );
}

#[test]
fn kills_during_writes_leave_a_whole_state_with_every_acknowledged_change() {
    let Some(mut lab) = Lab::new("kills_during_writes_leave_a_whole_state") else {
        return;
    };
    let c1 = lab.container(1, 73);
    let mut acknowledged = 0usize;
    for round in 0..5u64 {
        let mut d = lab.xvsd(&[&c1.port], &[]);
        let socket = d.socket.clone();
        let writer = std::thread::spawn(move || {
            let mut client = xvs_proto::client::Client::connect(&socket).unwrap();
            let mut done = 0usize;
            for n in 0.. {
                let flow = format!("priority={},tcp,tp_dst={},actions=drop", 100 + round, n + 1);
                if client.call_raw("add-flow", json!({"flow": flow})).is_err() {
                    break;
                }
                done += 1;
            }
            done
        });
        std::thread::sleep(Duration::from_millis(150 + 70 * round));
        d.kill9();
        acknowledged += writer.join().unwrap();
        let state = saved(&lab, &d);
        let rules = state.rules.len();
        assert!(
            rules == acknowledged || rules == acknowledged + 1,
            "round {round}: {rules} rules saved, {acknowledged} acknowledged"
        );
        acknowledged = rules;
    }
    assert!(acknowledged > 0, "no rule was ever added");
    let d = lab.xvsd(&[], &[]);
    let flows = d.call("dump-flows", json!({}));
    assert_eq!(flows["flows"].as_array().unwrap().len(), acknowledged);
}

/// Pings `to` from `from` every 10 ms for `secs` seconds in the background.
fn ping_flood(from: &Container, to: &str, secs: u32) -> std::process::Child {
    let count = (secs * 100).to_string();
    from.spawn(&[
        "ping", "-n", "-q", "-i", "0.01", "-c", &count, "-W", "1", to,
    ])
}

fn ping_loss(child: std::process::Child) -> (u32, u32) {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text
        .lines()
        .find(|line| line.contains("transmitted"))
        .unwrap_or_default();
    let field = |word: &str| -> u32 {
        summary
            .split(',')
            .find(|part| part.contains(word))
            .and_then(|part| part.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no {word} in ping's summary ({}): {text}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    };
    (field("transmitted"), field("received"))
}

/// Hands `d` over and starts its successor on the same socket and state; returns it and the
/// time from the signal until the successor answered.
fn hand_over(lab: &mut Lab, d: &mut Daemon, links: usize) -> (Daemon, Duration) {
    let socket = d.socket.clone();
    let started = Instant::now();
    assert!(
        d.hand_over(),
        "xvsd did not exit 0 on SIGUSR2:\n{}",
        d.log()
    );
    let handover_dir = control::store::handover_dir(&lab.state_dir(&socket));
    let pinned = std::fs::read_dir(&handover_dir).map_or(0, |e| e.count());
    assert_eq!(pinned, links, "links pinned in {}", handover_dir.display());
    let next = lab.xvsd_at(&socket, &[], &[]);
    let gap = started.elapsed();
    assert!(
        !handover_dir.exists(),
        "the successor unpinned what it adopted"
    );
    assert!(
        next.log().contains("adopting a handed-over link"),
        "{}",
        next.log()
    );
    (next, gap)
}

#[test]
fn a_sigusr2_handover_loses_no_packet_of_established_flows() {
    let Some(mut lab) = Lab::new("a_sigusr2_handover_loses_no_packet") else {
        return;
    };
    let c1 = lab.container(1, 74);
    let c2 = lab.container(2, 74);
    let mut d = lab.xvsd(&[&c1.port, &c2.port], &[]);
    assert!(c1.wait_ping(&c2.ip, Duration::from_secs(5)));
    let fast_path = d.call("show", json!({}))["fast_path"] == json!(true);
    if !fast_path {
        // Without the kernel's fast path nothing forwards while no xvsd runs.
        xvs_testkit::skip!("the handover keeps only what the kernel forwards: fast path off");
    }
    assert_eq!(c1.ping(&c2.ip, 5, 0.05), 5, "the flow is established");

    // A ping every 10 ms across the handover: not one lost.
    let pings = ping_flood(&c1, &c2.ip, 4);
    std::thread::sleep(Duration::from_secs(1));
    let (mut d, gap) = hand_over(&mut lab, &mut d, 2);
    let (sent, received) = ping_loss(pings);
    assert_eq!(
        received,
        sent,
        "pings lost across a handover of {gap:?}:\n{}",
        d.log()
    );
    eprintln!("handover: {sent} pings, none lost; xvsd replaced in {gap:?}");
    assert_eq!(c2.ping(&c1.ip, 3, 0.1), 3, "the successor forwards");

    // A TCP stream across a second handover survives it.
    if !lab.require("iperf3") {
        return;
    }
    let server = c2.spawn(&["iperf3", "-s", "-1", "-B", &c2.ip]);
    lab.keep(server);
    std::thread::sleep(Duration::from_millis(300));
    let stream = c1.spawn(&["timeout", "30", "iperf3", "-c", &c2.ip, "-t", "4", "-J"]);
    std::thread::sleep(Duration::from_millis(1500));
    let (_next, gap) = hand_over(&mut lab, &mut d, 2);
    let out = stream.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).expect("iperf3 JSON");
    assert!(v.get("error").is_none(), "the stream broke: {}", v["error"]);
    let received = v["end"]["sum_received"]["bytes"].as_f64().unwrap();
    assert!(received > 0.0);
    let slowest = v["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["sum"]["bits_per_second"].as_f64())
        .fold(f64::INFINITY, f64::min);
    eprintln!(
        "handover under iperf3: replaced in {gap:?}, {:.2} Gbit/s overall, slowest second {:.2}",
        v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap()
            / 1e9,
        slowest / 1e9
    );
}

#[test]
fn a_handover_nobody_adopts_is_undone_by_the_next_start() {
    let Some(mut lab) = Lab::new("a_handover_nobody_adopts_is_undone") else {
        return;
    };
    let c1 = lab.container(1, 75);
    let c2 = lab.container(2, 75);
    let mut d = lab.xvsd(&[&c1.port, &c2.port], &[]);
    assert!(c1.wait_ping(&c2.ip, Duration::from_secs(5)));
    if d.call("show", json!({}))["fast_path"] != json!(true) {
        xvs_testkit::skip!("needs the fast path");
    }
    assert_eq!(c1.ping(&c2.ip, 5, 0.05), 5);
    let socket = d.socket.clone();
    assert!(d.hand_over());
    assert_eq!(
        c1.ping(&c2.ip, 3, 0.05),
        3,
        "the pinned programs forward while no xvsd runs"
    );
    // The next start has no port (its state reset): it takes no link and removes them all.
    let next = lab.xvsd_at(&socket, &[], &["--reset-state"]);
    assert!(port_names(&next).is_empty());
    let handover_dir = control::store::handover_dir(&lab.state_dir(&socket));
    assert!(!handover_dir.exists());
    assert_eq!(
        c1.ping(&c2.ip, 3, 0.05),
        0,
        "the handed-over programs still forward"
    );
}
