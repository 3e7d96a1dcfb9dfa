//! Port security and storms: MAC locks (set by hand and by attach), MAC limits, storm limits,
//! and the loop guard cutting a loop between two ports of the switch.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Container, Daemon, Lab};
use serde_json::json;

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Drops of `cause` counted on port `name`.
fn drops(d: &Daemon, name: &str, cause: &str) -> u64 {
    let r = d.call("dump-ports", json!({"name": name}));
    r["ports"][0]["drops"][cause].as_u64().unwrap_or(0)
}

/// Gives `c` a second interface (a macvlan on its eth0, another MAC and address).
fn second_source(c: &Container, ip: &str) {
    ok(&c.exec(&[
        "ip", "link", "add", "link", "eth0", "name", "mv0", "type", "macvlan", "mode", "bridge",
    ]));
    ok(&c.exec(&["ip", "addr", "add", ip, "dev", "mv0"]));
    ok(&c.exec(&["ip", "link", "set", "mv0", "up"]));
}

#[test]
fn a_mac_lock_drops_other_sources_and_attach_locks_by_default() {
    let Some(mut lab) = Lab::new("a_mac_lock_drops_other_sources") else {
        return;
    };
    let c1 = lab.container(1, 81);
    let c2 = lab.container(2, 81);
    let d = lab.xvsd(&[&c1.port, &c2.port], &[]);
    assert!(c1.wait_ping(&c2.ip, Duration::from_secs(5)));
    ok(&d.ctl(&["set-port", &c1.port, "mac-lock", &c1.mac()]));
    assert_eq!(c1.ping(&c2.ip, 3, 0.1), 3, "the locked MAC still talks");
    // A second source in the same container: its frames are dropped at the port.
    second_source(&c1, "10.81.0.11/24");
    let from_other = c1.exec(&[
        "ping", "-c", "3", "-i", "0.2", "-W", "1", "-I", "mv0", &c2.ip,
    ]);
    assert!(
        !from_other.status.success(),
        "a frame from another MAC got through"
    );
    assert!(drops(&d, &c1.port, "mac_lock") >= 1);
    let config = d.call("show-config", json!({}));
    assert_eq!(config["ports"][&c1.port]["mac_lock"], json!([c1.mac()]));
    // Unlocked, the second source talks too.
    ok(&d.ctl(&["set-port", &c1.port, "mac-lock", "none"]));
    assert!(
        c1.exec(&[
            "ping", "-c", "3", "-i", "0.2", "-W", "1", "-I", "mv0", &c2.ip
        ])
        .status
        .success()
    );
    let bad = d.ctl(&["set-port", &c1.port, "mac-lock", "ff:ff:ff:ff:ff:ff"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no host's MAC"));

    // attach locks the port to the interface it made, unless told not to.
    let ns = lab.bare_container(3, "");
    ok(&d.ctl(&["attach", &ns.ns, "--ip", "10.81.0.3/24"]));
    let show = d.call("show", json!({}));
    let port = show["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["external_ids"]["netns_inode"].is_string())
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    lab.track_link(&port);
    let attached = Container {
        ns: ns.ns.clone(),
        port: port.clone(),
        ip: "10.81.0.3".into(),
    };
    let config = d.call("show-config", json!({}));
    assert_eq!(config["ports"][&port]["mac_lock"], json!([attached.mac()]));
    assert!(attached.wait_ping(&c2.ip, Duration::from_secs(5)));
    second_source(&attached, "10.81.0.13/24");
    let spoofed = attached.exec(&[
        "ping", "-c", "2", "-i", "0.2", "-W", "1", "-I", "mv0", &c2.ip,
    ]);
    assert!(!spoofed.status.success());
    assert!(drops(&d, &port, "mac_lock") >= 1);
}

#[test]
fn a_mac_limit_drops_new_sources_past_it_and_keeps_the_known_ones() {
    let Some(mut lab) = Lab::new("a_mac_limit_drops_new_sources") else {
        return;
    };
    let c1 = lab.container(1, 82);
    let c2 = lab.container(2, 82);
    let d = lab.xvsd(&[&c1.port, &c2.port], &[]);
    assert!(c1.wait_ping(&c2.ip, Duration::from_secs(5)));
    ok(&d.ctl(&["set-port", &c1.port, "mac-limit", "1"]));
    second_source(&c1, "10.82.0.11/24");
    let from_new = c1.exec(&[
        "ping", "-c", "3", "-i", "0.2", "-W", "1", "-I", "mv0", &c2.ip,
    ]);
    assert!(
        !from_new.status.success(),
        "a new source past the limit got through"
    );
    assert!(drops(&d, &c1.port, "mac_limit") >= 1);
    assert_eq!(
        c1.ping(&c2.ip, 3, 0.1),
        3,
        "the known source keeps forwarding"
    );
    let mv0 = ok(&c1.exec(&["cat", "/sys/class/net/mv0/address"]));
    let fdb = d.call("fdb-show", json!({})).to_string();
    assert!(
        !fdb.contains(mv0.trim()),
        "the new source was learned: {fdb}"
    );
    ok(&d.ctl(&["set-port", &c1.port, "mac-limit", "none"]));
    assert!(
        c1.exec(&[
            "ping", "-c", "3", "-i", "0.2", "-W", "1", "-I", "mv0", &c2.ip
        ])
        .status
        .success()
    );
}

#[test]
fn a_storm_limit_caps_a_ports_broadcast() {
    let Some(mut lab) = Lab::new("a_storm_limit_caps_a_ports_broadcast") else {
        return;
    };
    let c1 = lab.container(1, 83);
    let c2 = lab.container(2, 83);
    let d = lab.xvsd(&[&c1.port, &c2.port], &[]);
    assert!(c1.wait_ping(&c2.ip, Duration::from_secs(5)));
    ok(&d.ctl(&["set-port", &c1.port, "storm-limit", "20"]));
    // 400 broadcast pings in about a second: 20 a second pass (with a second's burst).
    let out = c1.exec(&[
        "ping",
        "-b",
        "-q",
        "-c",
        "400",
        "-i",
        "0.002",
        "-W",
        "1",
        "10.83.0.255",
    ]);
    let dropped = drops(&d, &c1.port, "storm");
    assert!(
        dropped >= 250,
        "only {dropped} broadcast frames dropped: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        d.call("dump-ports", json!({}))
    );
    assert_eq!(c1.ping(&c2.ip, 3, 0.1), 3, "unicast is not limited");
    assert_eq!(drops(&d, &c2.port, "storm"), 0);
}

#[test]
fn the_loop_guard_cuts_a_loop_between_two_ports() {
    let Some(mut lab) = Lab::new("the_loop_guard_cuts_a_loop") else {
        return;
    };
    let c1 = lab.container(1, 84);
    let c2 = lab.container(2, 84);
    // Both ends of one veth as ports: every flooded frame comes back in on the other end.
    let (a, b) = (format!("{}la", lab.prefix), format!("{}lb", lab.prefix));
    let made = Command::new("ip")
        .args(["link", "add", &a, "type", "veth", "peer", "name", &b])
        .status()
        .unwrap();
    assert!(made.success());
    lab.track_link(&a);
    for end in [&a, &b] {
        let _ = Command::new("sysctl")
            .args(["-qw", &format!("net.ipv6.conf.{end}.disable_ipv6=1")])
            .status();
        assert!(
            Command::new("ip")
                .args(["link", "set", end, "up"])
                .status()
                .unwrap()
                .success()
        );
    }
    let d = lab.xvsd(&[&c1.port, &c2.port, &a, &b], &[]);
    // The first ping's ARP request is flooded into the loop.
    let lost = 20 - c1.ping(&c2.ip, 20, 0.1);
    assert!(
        lost <= 3,
        "{lost} of 20 pings lost while a frame looped:\n{}\n{}\n{}",
        d.log(),
        d.call("dump-ports", json!({})),
        d.call("fdb-show", json!({}))
    );
    eprintln!("{lost} of 20 pings lost while a frame looped");
    let looped = drops(&d, &a, "storm") + drops(&d, &b, "storm");
    assert!(looped > 0, "the guard dropped nothing:\n{}", d.log());
    assert!(
        d.log().contains("faster than the loop guard"),
        "no log line:\n{}",
        d.log()
    );
    // The loop is cut: the ports' counters stand still.
    let rx = |d: &Daemon| d.port_counters()[&a].0;
    let before = rx(&d);
    std::thread::sleep(Duration::from_millis(500));
    assert!(rx(&d) - before < 1000, "the frame still circulates");
}
