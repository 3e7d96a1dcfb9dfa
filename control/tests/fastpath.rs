//! The in-kernel fast path: steady flows stay in the kernel, and every change takes effect
//! from its acknowledgement on, whichever level was forwarding.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::{Container, Daemon, Lab};
use serde_json::{Value, json};

/// Sends UDP datagrams to `ip`:9999 at about `pps` for `secs` seconds.
fn udp_stream(c: &Container, ip: &str, pps: u32, secs: u32) -> Child {
    let script = format!(
        "import socket, time\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         end = time.time() + {secs}\n\
         while time.time() < end:\n    s.sendto(b'x' * 32, ('{ip}', 9999)); time.sleep({})\n",
        1.0 / f64::from(pps)
    );
    c.spawn(&["python3", "-c", &script])
}

/// Listens on UDP 9999 so that the stream draws no ICMP errors (the flow stays one-way).
fn udp_sink(c: &Container) -> Child {
    c.spawn(&[
        "python3",
        "-c",
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('0.0.0.0', 9999))\nwhile True: s.recv(2048)\n",
    ])
}

fn fast_path_on(d: &Daemon) -> bool {
    let on = d.call("show", json!({}))["fast_path"] == json!(true);
    if !on {
        xvs_testkit::skip(
            &xvs_testkit::test_name(),
            "the fast path is off (XVS_TEST_FAST_PATH=off or kernel support missing)",
        );
    }
    on
}

fn entries(d: &Daemon) -> Vec<Value> {
    d.call("dump-fast-path", json!({}))["entries"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until the kernel forwards a flow from `port` (an entry that counted packets).
fn wait_in_kernel(d: &Daemon, port: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(e) = entries(d)
            .into_iter()
            .find(|e| e["in_port"] == port && e["n_packets"].as_u64().unwrap_or(0) > 10)
        {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "no kernel entry counting for {port}: {:?}",
            entries(d)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Packets `c`'s eth0 received in the next `secs` seconds.
fn rx_during(c: &Container, secs: f64) -> u64 {
    let before = c.counter("rx_packets");
    std::thread::sleep(Duration::from_secs_f64(secs));
    c.counter("rx_packets") - before
}

fn prepare(lab: &mut Lab, n: u8, net: u8) -> Option<(Vec<Container>, Daemon)> {
    prepare_nets(lab, &vec![net; usize::from(n)])
}

/// Containers `1..` on the given networks (10.NET.0.I), and xvsd with all of them.
fn prepare_nets(lab: &mut Lab, nets: &[u8]) -> Option<(Vec<Container>, Daemon)> {
    if !lab.require("python3") {
        return None;
    }
    let cs: Vec<Container> = nets
        .iter()
        .enumerate()
        .map(|(i, &net)| lab.container(i as u8 + 1, net))
        .collect();
    let ports: Vec<&str> = cs.iter().map(|c| c.port.as_str()).collect();
    let d = lab.xvsd(&ports, &[]);
    if !fast_path_on(&d) {
        return None;
    }
    Some((cs, d))
}

#[test]
fn steady_traffic_stays_in_the_kernel() {
    let Some(mut lab) = Lab::new("steady_traffic_stays_in_the_kernel") else {
        return;
    };
    let Some((cs, d)) = prepare(&mut lab, 2, 20) else {
        return;
    };
    let (a, b) = (&cs[0], &cs[1]);
    assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));
    let before = d.port_counters()[&a.port].0;
    assert_eq!(a.ping(&b.ip, 500, 0.004), 500);
    let after = d.call("dump-ports", json!({"name": a.port}))["ports"][0].clone();
    let rx = after["rx_packets"].as_u64().unwrap() - before;
    let kernel = after["fast_path"]["rx_packets"].as_u64().unwrap();
    assert!(rx >= 500, "every packet counted: {after}");
    assert!(
        rx - kernel.min(rx) <= 10,
        "userspace saw {} of {rx} packets: {after}",
        rx - kernel.min(rx)
    );
    let e = wait_in_kernel(&d, &a.port);
    assert_eq!(e["out_port"], b.port.as_str());
    assert_eq!(e["action"], "redirect");
    // Aging stays exact: the source is fresh although userspace saw none of its packets.
    let out = a.spawn(&["ping", "-q", "-i", "0.01", "-c", "300", &b.ip]);
    lab.keep(out);
    std::thread::sleep(Duration::from_millis(2500));
    let fdb = d.call("fdb-show", json!({}));
    let age = fdb["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["mac"] == a.mac())
        .map(|e| e["age_s"].as_f64().unwrap())
        .expect("a learned");
    assert!(
        age < 2.0,
        "a's MAC aged {age}s while the kernel forwarded its frames"
    );
}

#[test]
fn a_drop_rule_stops_a_kernel_flow_from_its_acknowledgement() {
    let Some(mut lab) = Lab::new("a_drop_rule_stops_a_kernel_flow_from_its_acknowledgement") else {
        return;
    };
    let Some((cs, d)) = prepare(&mut lab, 2, 21) else {
        return;
    };
    let (a, b) = (&cs[0], &cs[1]);
    assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));
    lab.keep(udp_sink(b));
    lab.keep(udp_stream(a, &b.ip, 500, 20));
    wait_in_kernel(&d, &a.port);
    assert!(rx_during(b, 0.5) > 100, "the stream does not reach b");
    let out = d.ctl(&[
        "add-flow",
        &format!("priority=100,udp,nw_dst={},actions=drop", b.ip),
    ]);
    assert!(out.status.success());
    let leaked = rx_during(b, 1.0);
    assert!(
        leaked <= 3,
        "{leaked} packets reached b after the drop rule was acknowledged"
    );
    // The rule drops in the kernel and counts every packet.
    std::thread::sleep(Duration::from_millis(500));
    let f = d.call("dump-flows", json!({}));
    assert!(f["flows"][0]["n_packets"].as_u64().unwrap() > 200, "{f}");
    assert!(
        entries(&d).iter().any(|e| e["action"] == "drop"),
        "drop not offloaded"
    );
    assert!(d.ctl(&["del-flows"]).status.success());
    assert!(
        rx_during(b, 1.0) > 200,
        "del-flows did not restore the stream"
    );
}

#[test]
fn deleting_the_output_port_takes_effect_at_once() {
    let Some(mut lab) = Lab::new("deleting_the_output_port_takes_effect_at_once") else {
        return;
    };
    let Some((cs, d)) = prepare(&mut lab, 3, 22) else {
        return;
    };
    let (a, b, c) = (&cs[0], &cs[1], &cs[2]);
    assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));
    assert!(a.wait_ping(&c.ip, Duration::from_secs(5)));
    lab.keep(udp_sink(b));
    lab.keep(udp_stream(a, &b.ip, 500, 20));
    wait_in_kernel(&d, &a.port);
    assert!(d.ctl(&["del-port", &b.port]).status.success());
    let leaked = rx_during(b, 1.0);
    assert!(leaked <= 3, "{leaked} packets reached a deleted port");
    assert_eq!(a.ping(&c.ip, 3, 0.05), 3, "the others stopped");
}

#[test]
fn a_moved_mac_is_followed_at_once() {
    let Some(mut lab) = Lab::new("a_moved_mac_is_followed_at_once") else {
        return;
    };
    let Some((cs, d)) = prepare(&mut lab, 3, 23) else {
        return;
    };
    let (a, b, c) = (&cs[0], &cs[1], &cs[2]);
    assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));
    lab.keep(udp_sink(b));
    lab.keep(udp_stream(a, &b.ip, 500, 20));
    wait_in_kernel(&d, &a.port);
    // b's MAC shows up behind c: c takes it and says so with a broadcast.
    let b_mac = b.mac();
    assert!(
        b.exec(&["ip", "link", "set", "eth0", "down"])
            .status
            .success()
    );
    assert!(
        c.exec(&["ip", "link", "set", "eth0", "address", &b_mac])
            .status
            .success()
    );
    let moved_at = Instant::now();
    c.exec(&["arping", "-c", "1", "-U", "-I", "eth0", &c.ip]);
    let deadline = moved_at + Duration::from_secs(3);
    loop {
        let fdb = d.call("fdb-show", json!({}));
        let port = fdb["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["mac"] == b_mac)
            .map(|e| e["port"].clone());
        if port == Some(json!(c.port)) {
            break;
        }
        assert!(Instant::now() < deadline, "move not learned: {fdb}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let to_c = rx_during(c, 1.0);
    assert!(
        to_c > 200,
        "the stream did not follow the MAC to c ({to_c} packets)"
    );
    let host_b = d.port_counters()[&b.port].1;
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        d.port_counters()[&b.port].1 - host_b <= 3,
        "the old port still gets the flow"
    );
}

#[test]
fn removing_a_route_takes_effect_at_once() {
    let Some(mut lab) = Lab::new("removing_a_route_takes_effect_at_once") else {
        return;
    };
    let Some((cs, d)) = prepare_nets(&mut lab, &[24, 124]) else {
        return;
    };
    let (a, b) = (&cs[0], &cs[1]);
    // a in VLAN 10 (10.24.0.0/24), b in VLAN 20 (10.124.0.0/24) with a far network on lo.
    for (c, vid) in [(a, "10"), (b, "20")] {
        assert!(
            d.ctl(&["set-port", &c.port, "vlan", "access", vid])
                .status
                .success()
        );
    }
    assert!(
        d.ctl(&["add-addr", "vlan10", "10.24.0.254/24"])
            .status
            .success()
    );
    assert!(
        d.ctl(&["add-addr", "vlan20", "10.124.0.254/24"])
            .status
            .success()
    );
    assert!(
        b.exec(&["ip", "addr", "add", "10.55.0.1/32", "dev", "lo"])
            .status
            .success()
    );
    assert!(
        b.exec(&["ip", "route", "add", "default", "via", "10.124.0.254"])
            .status
            .success()
    );
    assert!(
        a.exec(&["ip", "route", "add", "default", "via", "10.24.0.254"])
            .status
            .success()
    );
    assert!(
        d.ctl(&["add-route", "10.55.0.0/16", "via", "10.124.0.2"])
            .status
            .success()
    );
    assert!(
        a.wait_ping("10.55.0.1", Duration::from_secs(5)),
        "no routed path"
    );
    lab.keep(udp_sink(b));
    lab.keep(udp_stream(a, "10.55.0.1", 500, 20));
    let e = wait_in_kernel(&d, &a.port);
    assert_eq!(
        e["out_port"],
        b.port.as_str(),
        "routed flow not offloaded: {e}"
    );
    assert!(rx_during(b, 0.5) > 100);
    assert!(d.ctl(&["del-route", "10.55.0.0/16"]).status.success());
    let leaked = rx_during(b, 1.0);
    assert!(leaked <= 3, "{leaked} packets followed a deleted route");
}

#[test]
fn the_fast_path_switches_live_without_loss() {
    let Some(mut lab) = Lab::new("the_fast_path_switches_live_without_loss") else {
        return;
    };
    let Some((cs, d)) = prepare(&mut lab, 2, 25) else {
        return;
    };
    let (a, b) = (&cs[0], &cs[1]);
    assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));
    let pinger = a.spawn(&["ping", "-n", "-q", "-i", "0.01", "-c", "400", &b.ip]);
    for state in ["off", "on", "off", "on"] {
        std::thread::sleep(Duration::from_millis(600));
        let out = d.ctl(&["set-fast-path", state]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let show = d.call("show", json!({}));
        assert_eq!(show["fast_path"], json!(state == "on"));
    }
    let out = pinger.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(" 0% packet loss"),
        "pings lost while switching: {text}"
    );
    // On again: the flow went back into the kernel.
    assert_eq!(a.ping(&b.ip, 50, 0.005), 50);
    wait_in_kernel(&d, &a.port);
}
