//! The core switch, end to end: real namespaces, real veths with default offloads, the
//! kernel's own ping, ARP, TCP and UDP through xvsd.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::{Container, Lab, iperf_tcp, link_exists, must, xdp_attached};
use serde_json::json;

/// Starts tcpdump in `c` for `secs` seconds with `filter`; see [`captured`].
fn capture(lab: &mut Lab, c: &Container, filter: &str, secs: u32) -> Child {
    let mut args = vec!["timeout", "-s", "INT"];
    let secs = secs.to_string();
    args.push(&secs);
    args.extend(["tcpdump", "-i", "eth0", "-n", "-l"]);
    args.extend(filter.split_whitespace());
    let child = c.spawn(&args);
    // Give tcpdump time to open its socket before traffic starts.
    std::thread::sleep(Duration::from_millis(1500));
    let _ = lab;
    child
}

/// Waits for a capture to end; returns the packets it printed.
fn captured(child: Child) -> Vec<String> {
    let out = child.wait_with_output().expect("tcpdump");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

fn nstat(c: &Container, counter: &str) -> u64 {
    let out = c.exec(&["nstat", "-az", counter]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with(counter))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn three_containers_talk_through_xvs_like_a_bridge() {
    let Some(mut lab) = Lab::new("three_containers_talk_through_xvs_like_a_bridge") else {
        return;
    };
    let a = lab.container(1, 1);
    let b = lab.container(2, 1);
    let c = lab.container(3, 1);
    let d = lab.xvsd(&[&a.port, &b.port, &c.port], &[]);

    // Every pair pings; the first ping of each pair resolves ARP by flooding.
    for (x, y) in [(&a, &b), (&a, &c), (&b, &c), (&b, &a), (&c, &a), (&c, &b)] {
        assert!(
            x.wait_ping(&y.ip, Duration::from_secs(5)),
            "{} cannot reach {}: {}\n{}",
            x.ns,
            y.ip,
            d.call("dump-ports", json!({})),
            d.log()
        );
        assert_eq!(x.ping(&y.ip, 3, 0.1), 3, "{} -> {} lost pings", x.ns, y.ip);
    }

    // The MAC table learned all three, each on its port.
    let fdb = d.call("fdb-show", json!({}));
    for x in [&a, &b, &c] {
        let entry = fdb["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["mac"] == x.mac())
            .unwrap_or_else(|| panic!("{} not learned: {fdb}", x.mac()));
        assert_eq!(entry["port"], x.port.as_str());
    }

    // TCP with default offloads: the containers' veths hand over CHECKSUM_PARTIAL segments.
    if lab.require("iperf3") {
        let csum_before = nstat(&b, "TcpInCsumErrors");
        let gbps = iperf_tcp(&mut lab, &a, &b, 5);
        println!("iperf3 TCP through xvs, 5 s, default offloads: {gbps:.2} Gbit/s");
        assert!(gbps > 0.01, "TCP barely moved: {gbps} Gbit/s");
        assert_eq!(
            nstat(&b, "TcpInCsumErrors"),
            csum_before,
            "bad TCP checksums reached b"
        );

        // UDP at a modest rate: nearly everything arrives, with valid checksums.
        let srv = b.spawn(&["iperf3", "-s", "-1", "-B", &b.ip]);
        lab.keep(srv);
        std::thread::sleep(Duration::from_millis(500));
        let out = a.exec(&["iperf3", "-u", "-b", "50M", "-t", "2", "-c", &b.ip, "-J"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 JSON");
        let sum = &v["end"]["sum"];
        println!("iperf3 UDP 50 Mbit/s: lost {}%", sum["lost_percent"]);
        assert!(
            sum["packets"].as_u64().unwrap_or(0) > 1000,
            "UDP did not run: {v}"
        );
        assert!(
            sum["lost_percent"].as_f64().unwrap_or(100.0) < 5.0,
            "UDP lost too much: {sum}"
        );
        assert_eq!(
            nstat(&b, "UdpInCsumErrors"),
            0,
            "bad UDP checksums reached b"
        );
    }

    if lab.require("tcpdump") && lab.require("arping") {
        // A broadcast (an ARP request for an address nobody has) reaches both others.
        let filter = "arp and host 10.1.0.250";
        let cap_b = capture(&mut lab, &b, filter, 4);
        let cap_c = capture(&mut lab, &c, filter, 4);
        a.exec(&["arping", "-c", "2", "-w", "2", "-I", "eth0", "10.1.0.250"]);
        assert!(!captured(cap_b).is_empty(), "broadcast did not reach b");
        assert!(!captured(cap_c).is_empty(), "broadcast did not reach c");

        // After learning, unicast between a and b is not seen by c.
        let before = d.port_counters()[&c.port].1;
        let cap = capture(&mut lab, &c, "icmp", 5);
        assert_eq!(a.ping(&b.ip, 20, 0.05), 20);
        let seen = captured(cap);
        assert!(seen.is_empty(), "c saw a<->b unicast: {seen:?}");
        let after = d.port_counters()[&c.port].1;
        assert!(
            after - before < 3,
            "c's port sent {} frames during a<->b pings",
            after - before
        );
    }
}

#[test]
fn sigkill_mid_traffic_then_restart_resumes_forwarding() {
    let Some(mut lab) = Lab::new("sigkill_mid_traffic_then_restart_resumes_forwarding") else {
        return;
    };
    let a = lab.container(1, 2);
    let b = lab.container(2, 2);
    let mut d = lab.xvsd(&[&a.port, &b.port], &[]);
    assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));
    let flood = a.spawn(&["ping", "-n", "-q", "-i", "0.01", "-c", "300", &b.ip]);
    lab.keep(flood);
    std::thread::sleep(Duration::from_millis(500));
    d.kill9();

    // The bpf_links died with the process: nothing stays attached.
    let deadline = Instant::now() + Duration::from_secs(3);
    while (xdp_attached(&a.port) || xdp_attached(&b.port)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !xdp_attached(&a.port) && !xdp_attached(&b.port),
        "XDP left attached after SIGKILL"
    );
    // Nor a tc program: the host end's own stack gets its frames again.
    must(&["ip", "addr", "add", "10.2.0.254/24", "dev", &a.port]);
    assert!(
        a.wait_ping("10.2.0.254", Duration::from_secs(5)),
        "a program is still attached after SIGKILL"
    );
    must(&["ip", "addr", "del", "10.2.0.254/24", "dev", &a.port]);
    // The upcall device of the tc hook outlives the process; the next start replaces it.
    let upcall = format!("{}u0", lab.prefix);
    let tc = d.log().contains("upcall device up");
    assert_eq!(
        link_exists(&upcall),
        tc,
        "the upcall device is there after SIGKILL"
    );

    // Same socket path, same ports, no cleanup by hand.
    let d2 = lab.xvsd(&[&a.port, &b.port], &[]);
    if tc {
        assert!(d2.log().contains("removed a stale upcall device"));
    }
    assert!(
        a.wait_ping(&b.ip, Duration::from_secs(5)),
        "no forwarding after restart"
    );
    assert_eq!(a.ping(&b.ip, 10, 0.05), 10);
    assert_eq!(
        d2.call("show", json!({}))["ports"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn deleted_veth_is_dropped_while_the_others_keep_forwarding() {
    let Some(mut lab) = Lab::new("deleted_veth_is_dropped_while_the_others_keep_forwarding") else {
        return;
    };
    let a = lab.container(1, 3);
    let b = lab.container(2, 3);
    let c = lab.container(3, 3);
    let mut d = lab.xvsd(&[&a.port, &b.port, &c.port], &[]);
    assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));
    assert!(a.wait_ping(&c.ip, Duration::from_secs(5)));

    let pinger = a.spawn(&["ping", "-n", "-q", "-i", "0.02", "-c", "150", &b.ip]);
    std::thread::sleep(Duration::from_millis(1000));
    lab.delete_link(&c.port);
    let out = pinger.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("150 received"),
        "a<->b lost pings while c vanished: {text}"
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ports = d.call("show", json!({}))["ports"].as_array().unwrap().len();
        if ports == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "vanished port still listed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(d.is_running());
    assert!(
        d.log().contains("disappeared"),
        "no report of the vanished interface"
    );
    assert_eq!(a.ping(&b.ip, 5, 0.05), 5);
}

#[test]
fn sigterm_detaches_everything() {
    let Some(mut lab) = Lab::new("sigterm_detaches_everything") else {
        return;
    };
    let a = lab.container(1, 4);
    let b = lab.container(2, 4);
    let mut d = lab.xvsd(&[&a.port, &b.port], &[]);
    let upcall = format!("{}u0", lab.prefix);
    let hooks: Vec<String> = d.call("show", json!({}))["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["hook"].as_str().unwrap().to_owned())
        .collect();
    let xdp = hooks.iter().all(|h| h == "xdp");
    let tc = hooks.iter().all(|h| h == "tc");
    assert!(xdp || tc, "one hook for both veths: {hooks:?}");
    if xdp {
        assert!(xdp_attached(&a.port) && xdp_attached(&b.port));
    } else {
        assert!(link_exists(&upcall), "the tc hook's upcall device is up");
    }
    assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));
    // While a hook holds the host end, the host's own stack never sees its frames.
    must(&["ip", "addr", "add", "10.4.0.254/24", "dev", &a.port]);
    assert_eq!(a.ping("10.4.0.254", 1, 0.2), 0, "the switch had the frames");
    assert!(d.terminate(), "xvsd did not exit cleanly:\n{}", d.log());
    assert!(
        !xdp_attached(&a.port) && !xdp_attached(&b.port),
        "XDP left attached"
    );
    assert!(!link_exists(&upcall), "upcall device left behind");
    assert!(
        a.wait_ping("10.4.0.254", Duration::from_secs(5)),
        "a program is still attached: the host end does not answer"
    );
    assert!(!d.socket.exists(), "socket file left behind");
    // The interfaces are plain veths again: the peers have their offloads.
    let gso = a.exec(&["ethtool", "-k", "eth0"]);
    let text = String::from_utf8_lossy(&gso.stdout);
    if gso.status.success() {
        assert!(
            text.contains("tcp-segmentation-offload: on"),
            "peer TSO not restored:\n{text}"
        );
    }
}

/// What `ethtool -k eth0` in the container says of TSO, if ethtool is there.
fn container_tso(c: &Container) -> Option<String> {
    let out = c.exec(&["ethtool", "-k", "eth0"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.starts_with("tcp-segmentation-offload:"))
        .map(str::to_owned)
}

#[test]
fn the_tc_hook_leaves_the_containers_tso_on_and_xdp_does_not() {
    let Some(mut lab) = Lab::new("the_tc_hook_leaves_the_containers_tso_on_and_xdp_does_not")
    else {
        return;
    };
    if !lab.require("iperf3") || !lab.require("ethtool") {
        return;
    }
    let a = lab.container(1, 6);
    let b = lab.container(2, 6);
    for (hook, tso) in [
        ("tc", "tcp-segmentation-offload: on"),
        ("xdp", "tcp-segmentation-offload: off"),
    ] {
        let mut d = lab.xvsd(&[&a.port, &b.port], &["--hook", hook]);
        let show = d.call("show", json!({}));
        for port in show["ports"].as_array().unwrap() {
            assert_eq!(port["hook"], hook, "{port}");
        }
        let seen = container_tso(&a).unwrap_or_default();
        assert!(seen.starts_with(tso), "with the {hook} hook: {seen}");
        assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));
        let gbps = iperf_tcp(&mut lab, &a, &b, 2);
        println!("{hook} hook: TCP {gbps:.2} Gbit/s");
        assert!(gbps > 0.1, "TCP crosses the {hook} hook");
        // Every segment is counted, though a GSO skb crosses the tc hook whole.
        let (rx, _) = d.port_counters()[&a.port];
        assert!(rx > 10_000, "{rx} packets counted on {}", a.port);
        assert!(d.terminate());
    }
    assert_eq!(
        container_tso(&a).as_deref(),
        Some("tcp-segmentation-offload: on"),
        "TSO back after XDP left"
    );
}
