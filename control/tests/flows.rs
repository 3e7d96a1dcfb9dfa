//! Flow rules and L3 routing end to end: rules installed with xvsctl change what real traffic
//! does, and xvs routes between subnets, answering ARP, ND and ping for its own addresses.

mod common;

use std::time::Duration;

use common::{Container, Lab};
use serde_json::{Value, json};

fn flows(d: &common::Daemon) -> Vec<Value> {
    d.call("dump-flows", json!({}))["flows"]
        .as_array()
        .unwrap()
        .clone()
}

fn ping_ttl(from: &Container, to: &str) -> Option<u32> {
    let out = from.exec(&["ping", "-n", "-c", "1", "-W", "2", to]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("ttl="))
        .and_then(|t| t.parse().ok())
}

#[test]
fn drop_rule_priorities_and_counters() {
    let Some(mut lab) = Lab::new("drop_rule_priorities_and_counters") else {
        return;
    };
    let a = lab.container(1, 6);
    let b = lab.container(2, 6);
    let c = lab.container(3, 6);
    let d = lab.xvsd(&[&a.port, &b.port, &c.port], &[]);
    assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));
    assert!(a.wait_ping(&c.ip, Duration::from_secs(5)));

    let drop = format!(
        "priority=100,icmp,nw_src={},nw_dst={},actions=drop",
        a.ip, b.ip
    );
    let out = d.ctl(&["add-flow", &drop]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(a.ping(&b.ip, 5, 0.1), 0, "the drop rule let pings through");
    assert_eq!(a.ping(&c.ip, 3, 0.1), 3, "the drop rule hit other traffic");
    let f = flows(&d);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["n_packets"], 5, "one echo request per ping: {f:?}");
    assert_eq!(f[0]["n_bytes"], 5 * 98);

    // A higher priority rule over the same traffic wins.
    let allow = format!("priority=200,icmp,nw_src={},actions=normal", a.ip);
    assert!(d.ctl(&["add-flow", &allow]).status.success());
    assert_eq!(a.ping(&b.ip, 4, 0.1), 4);
    let f = flows(&d);
    let by_priority = |p: u64| f.iter().find(|x| x["priority"] == p).unwrap().clone();
    assert_eq!(
        by_priority(100)["n_packets"],
        5,
        "the drop rule stopped counting"
    );
    // Echo requests a -> b and a -> c went through rule 200 (c: 3 earlier did not).
    assert_eq!(by_priority(200)["n_packets"], 4);

    // dump-flows prints the rules back in the same syntax, with port names.
    let out = d.ctl(&["dump-flows"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("n_packets=5"), "{text}");
    assert!(text.contains(&format!("nw_dst={}", b.ip)), "{text}");
    assert!(text.contains("actions=drop"), "{text}");

    // A bad spec gets an error naming the field, and changes nothing.
    let out = d.ctl(&[
        "add-flow",
        "priority=5,ip,nw_dst=10.0.0.300/24,actions=drop",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nw_dst"), "{err}");
    let out = d.ctl(&["add-flow", "priority=5,ip,actions=output:nope0"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope0"));
    // An empty action list is not taken for a drop: the operator is told to say so.
    let out = d.ctl(&["add-flow", "priority=5,ip,actions="]);
    assert!(!out.status.success(), "actions= was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("write actions=drop"), "{err}");
    assert_eq!(flows(&d).len(), 2);

    // del-flows with a match removes the rules it covers; all traffic flows again.
    let out = d.ctl(&["del-flows", "icmp"]);
    assert!(out.status.success());
    assert!(flows(&d).is_empty());
    d.ctl(&["add-flow", &drop]);
    assert_eq!(a.ping(&b.ip, 2, 0.1), 0);
    assert!(d.ctl(&["del-flows"]).status.success());
    assert_eq!(a.ping(&b.ip, 3, 0.1), 3, "del-flows did not restore pings");

    // output: sends to one port whatever the MAC table says.
    let to_c = format!(
        "priority=300,in_port={},icmp,nw_dst={},actions=output:{}",
        a.port, b.ip, c.port
    );
    assert!(d.ctl(&["add-flow", &to_c]).status.success());
    assert_eq!(a.ping(&b.ip, 2, 0.1), 0, "output: went to b anyway");
    let c_tx = d.port_counters()[&c.port].1;
    assert!(c_tx >= 2, "c's port did not send the redirected pings");
}

#[test]
fn rules_follow_a_port_by_name_when_it_is_renumbered() {
    let Some(mut lab) = Lab::new("rules_follow_a_port_by_name_when_it_is_renumbered") else {
        return;
    };
    let a = lab.container(1, 7);
    let b = lab.container(2, 7);
    let c = lab.container(3, 7);
    let other = lab.container(4, 7);
    let d = lab.xvsd(&[&a.port, &b.port, &c.port], &[]);
    assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));
    let c_id = |d: &common::Daemon| {
        d.call("show", json!({}))["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == c.port.as_str())
            .map(|p| p["id"].clone())
    };
    let first_id = c_id(&d).expect("c is a port");
    let to_c = format!(
        "priority=300,in_port={},icmp,nw_dst={},actions=output:{}",
        a.port, b.ip, c.port
    );
    assert!(d.ctl(&["add-flow", &to_c]).status.success());
    assert_eq!(a.ping(&b.ip, 2, 0.1), 0, "output: went to b anyway");

    // c goes: the rule stays, by c's name, and sends nowhere.
    assert!(d.ctl(&["del-port", &c.port]).status.success());
    let f = flows(&d);
    assert_eq!(f.len(), 1);
    let text = f[0]["flow"].as_str().unwrap();
    assert!(text.ends_with(&format!("output:{}", c.port)), "{text}");
    assert_eq!(a.ping(&b.ip, 2, 0.1), 0, "the rule lost its match");

    // Another interface takes c's number; the rule does not send it c's traffic.
    let added = d.call("add-port", json!({"name": other.port}));
    assert_eq!(added["id"], first_id, "the lowest free number is c's");
    let before = d.port_counters()[&other.port].1;
    assert_eq!(a.ping(&b.ip, 10, 0.05), 0);
    let sent = d.port_counters()[&other.port].1 - before;
    assert!(
        sent < 10,
        "{sent} frames went to the port that took c's number"
    );

    // c comes back under a new number, and the rule sends to it again.
    assert!(d.ctl(&["add-port", &c.port]).status.success());
    assert_ne!(c_id(&d), Some(first_id));
    let before = d.port_counters()[&c.port].1;
    assert_eq!(a.ping(&b.ip, 3, 0.1), 0);
    assert!(
        d.port_counters()[&c.port].1 - before >= 3,
        "c did not get its frames"
    );
    assert!(d.ctl(&["del-flows"]).status.success());
    assert_eq!(a.ping(&b.ip, 2, 0.1), 2);
}

#[test]
fn routes_between_two_subnets() {
    let Some(mut lab) = Lab::new("routes_between_two_subnets") else {
        return;
    };
    // Two subnets, two namespaces each, each subnet in its own VLAN.
    let a1 = lab.container(1, 10);
    let a2 = lab.container(2, 10);
    let b1 = lab.container(3, 20);
    let b2 = lab.container(4, 20);
    let d = lab.xvsd(&[&a1.port, &a2.port, &b1.port, &b2.port], &[]);
    for (c, vid) in [(&a1, 10), (&a2, 10), (&b1, 20), (&b2, 20)] {
        assert!(
            d.ctl(&["set-port", &c.port, "vlan", "access", &vid.to_string()])
                .status
                .success()
        );
    }
    for (name, addr) in [("vlan10", "10.10.0.254/24"), ("vlan20", "10.20.0.254/24")] {
        let out = d.ctl(&["add-addr", name, addr]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (c, gw) in [
        (&a1, "10.10.0.254"),
        (&a2, "10.10.0.254"),
        (&b1, "10.20.0.254"),
        (&b2, "10.20.0.254"),
    ] {
        assert!(
            c.exec(&["ip", "route", "add", "default", "via", gw])
                .status
                .success()
        );
    }

    // xvs answers ARP and ping for its own addresses.
    assert!(
        a1.wait_ping("10.10.0.254", Duration::from_secs(5)),
        "gateway does not answer"
    );
    assert_eq!(ping_ttl(&a1, "10.10.0.254"), Some(64));

    // Across the router: each direction decrements the TTL once.
    assert!(
        a1.wait_ping(&b1.ip, Duration::from_secs(5)),
        "no route a1 -> b1"
    );
    assert_eq!(
        ping_ttl(&a1, &b1.ip),
        Some(63),
        "b1's reply crossed one router"
    );
    assert!(b2.wait_ping(&a2.ip, Duration::from_secs(5)));
    assert_eq!(b2.ping(&a2.ip, 10, 0.05), 10);

    // The router resolved its next hops itself.
    let n = d.call("show-neighbors", json!({}));
    let ips: Vec<&str> = n["neighbors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ip"].as_str().unwrap())
        .collect();
    assert!(
        ips.contains(&b1.ip.as_str()) && ips.contains(&a1.ip.as_str()),
        "{n}"
    );

    // TCP across the router, default offloads.
    if lab.require("iperf3") {
        let gbps = common::iperf_tcp(&mut lab, &a1, &b2, 3);
        println!("iperf3 TCP routed by xvs (VLAN 10 -> VLAN 20): {gbps:.2} Gbit/s");
        assert!(gbps > 0.01);
    }

    // A static route through b1 to a network only b1 has.
    assert!(
        b1.exec(&["ip", "addr", "add", "10.30.0.1/32", "dev", "lo"])
            .status
            .success()
    );
    let out = d.ctl(&["add-route", "10.30.0.0/16", "via", &b1.ip]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        a1.wait_ping("10.30.0.1", Duration::from_secs(5)),
        "static route not followed"
    );
    let out = d.ctl(&["show-routes"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("10.30.0.0/16 via {} dev vlan20", b1.ip)),
        "{text}"
    );
    assert!(text.contains("10.10.0.0/24 dev vlan10 connected"), "{text}");
    assert!(d.ctl(&["del-route", "10.30.0.0/16"]).status.success());
    assert_eq!(a1.ping("10.30.0.1", 2, 0.2), 0, "deleted route still used");
    let out = d.ctl(&["add-route", "10.30.0.1/16", "via", &b1.ip]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("host bits"),
        "bad prefix accepted"
    );

    // Without a route, packets are dropped and counted.
    a1.exec(&["ping", "-c", "2", "-i", "0.1", "-W", "1", "192.0.2.1"]);
    let drops = d.call("dump-ports", json!({"name": a1.port}))["ports"][0]["drops"]["no_route"]
        .as_u64()
        .unwrap();
    assert!(drops >= 2, "no_route drops: {drops}");
}

#[test]
fn routes_ipv6_with_neighbor_discovery() {
    let Some(mut lab) = Lab::new("routes_ipv6_with_neighbor_discovery") else {
        return;
    };
    let a = lab.container(1, 11);
    let b = lab.container(2, 21);
    let d = lab.xvsd(&[&a.port, &b.port], &[]);
    for (c, addr, gw) in [
        (&a, "fd00:11::1/64", "fd00:11::fe"),
        (&b, "fd00:21::2/64", "fd00:21::fe"),
    ] {
        for key in ["all", "default", "eth0"] {
            c.exec(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{key}.disable_ipv6=0"),
            ]);
        }
        assert!(
            c.exec(&["ip", "-6", "addr", "add", addr, "dev", "eth0", "nodad"])
                .status
                .success()
        );
        assert!(
            c.exec(&["ip", "-6", "route", "add", "default", "via", gw])
                .status
                .success()
        );
    }
    // Router interfaces bound to the ports themselves this time.
    assert!(
        d.ctl(&["add-addr", &a.port, "fd00:11::fe/64"])
            .status
            .success()
    );
    assert!(
        d.ctl(&["add-addr", &b.port, "fd00:21::fe/64"])
            .status
            .success()
    );
    assert!(
        a.wait_ping("fd00:11::fe", Duration::from_secs(5)),
        "router does not answer ND/ping6"
    );
    assert!(
        a.wait_ping("fd00:21::2", Duration::from_secs(5)),
        "no IPv6 route a -> b"
    );
    let out = a.exec(&["ping", "-n", "-c", "1", "fd00:21::2"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ttl=63"),
        "hop limit not decremented"
    );
    assert!(
        d.ctl(&["del-addr", &b.port, "fd00:21::fe"])
            .status
            .success()
    );
    assert_eq!(
        a.ping("fd00:21::2", 2, 0.2),
        0,
        "route kept after its address went"
    );
}

#[test]
fn tables_cookies_timeouts_and_trace() {
    let Some(mut lab) = Lab::new("tables_cookies_timeouts_and_trace") else {
        return;
    };
    let a = lab.container(1, 43);
    let b = lab.container(2, 43);
    let d = lab.xvsd(&[&a.port, &b.port], &[]);
    assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));
    let add = |flow: &str| {
        let out = d.ctl(&["add-flow", flow]);
        assert!(
            out.status.success(),
            "{flow}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    add("table=0,priority=100,arp,actions=normal");
    add("table=0,priority=10,ip,actions=resubmit(,1)");
    add("table=1,cookie=0x105,priority=10,icmp,actions=normal");
    add("table=1,cookie=0x206,priority=5,ip,actions=drop");
    assert_eq!(a.ping(&b.ip, 3, 0.1), 3, "table 1 lets ICMP through");
    let listed = |filter: &str| {
        d.call("dump-flows", json!({ "match": filter }))["flows"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(listed("table=1"), 2);
    assert_eq!(listed("cookie=0x100/0xf00"), 1);
    assert_eq!(listed("table=0,arp"), 1);
    let text = String::from_utf8_lossy(&d.ctl(&["dump-flows", "table=1"]).stdout).to_string();
    assert!(
        text.contains("table=1,cookie=0x105,priority=10,icmp,actions=normal"),
        "{text}"
    );
    // A trace shows the walk: table 0's resubmit, table 1's rule, the learning switch.
    let out = d.ctl(&[
        "trace",
        &format!("in_port={},icmp,nw_src={},nw_dst={}", a.port, a.ip, b.ip),
    ]);
    let trace = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{trace}");
    assert!(trace.contains("resubmit to table 1"), "{trace}");
    assert!(
        trace.contains("table 1: priority=10,icmp actions=normal"),
        "{trace}"
    );
    assert!(trace.contains("Final actions:"), "{trace}");
    // del-flows by cookie: ICMP now meets the drop rule.
    let out = d.ctl(&["del-flows", "cookie=0x100/0xf00"]);
    assert!(out.status.success());
    assert_eq!(listed("table=1"), 1);
    assert_eq!(a.ping(&b.ip, 3, 0.1), 0, "table 1's drop rule");

    // idle_timeout: the rule stays while used and goes once idle.
    add("table=1,idle_timeout=2,priority=20,icmp,actions=normal");
    assert_eq!(
        a.ping(&b.ip, 30, 0.1),
        30,
        "used for 3 s, past its idle timeout"
    );
    assert_eq!(listed("table=1,icmp"), 1, "in use: not idle");
    let gone = (0..40).any(|_| {
        std::thread::sleep(Duration::from_millis(200));
        listed("table=1,icmp") == 0
    });
    assert!(gone, "the idle rule stayed: {:?}", flows(&d));
    assert_eq!(a.ping(&b.ip, 2, 0.1), 0);
    // hard_timeout: the rule goes however busy it is.
    add("table=1,hard_timeout=2,send_flow_rem,priority=20,icmp,actions=normal");
    let replies = a.ping(&b.ip, 50, 0.1);
    assert!(
        (10..50).contains(&replies),
        "answered until the hard timeout only: {replies}"
    );
    assert_eq!(listed("table=1,icmp"), 0);
    assert!(
        d.log().contains("flow removed"),
        "send_flow_rem logs the removal"
    );
}

/// Address and port rewrites carry the kernel's TCP: A talks to a virtual address and port
/// that rules turn into B's (and B's answers back), so every segment is rewritten both ways
/// and A's and B's stacks accept them only if every checksum is right, those the containers
/// left for offload included.
#[test]
fn rewrites_carry_real_tcp_to_a_virtual_address() {
    use common::tcp::{Conn, server};
    let Some(mut lab) = Lab::new("rewrites_carry_real_tcp_to_a_virtual_address") else {
        return;
    };
    if !lab.require("python3") {
        return;
    }
    let a = lab.container(1, 44);
    let b = lab.container(2, 44);
    let d = lab.xvsd(&[&a.port, &b.port], &[]);
    assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));
    let vip = "10.44.0.100";
    // A reaches the virtual address at B's MAC (no host answers ARP for it).
    assert!(
        a.exec(&["ip", "neigh", "add", vip, "lladdr", &b.mac(), "dev", "eth0"])
            .status
            .success()
    );
    server(&mut lab, &b, 8080);
    let rewrites = [
        format!(
            "priority=100,tcp,in_port={},nw_dst={vip},tp_dst=80,actions=mod_nw_dst:{},mod_tp_dst:8080,output:{}",
            a.port, b.ip, b.port
        ),
        format!(
            "priority=100,tcp,in_port={},nw_src={},tp_src=8080,actions=set_field:{vip}->ip_src,set_field:80->tcp_src,output:{}",
            b.port, b.ip, a.port
        ),
    ];
    let r = d.try_call("add-flows", json!({ "flows": rewrites }));
    assert!(r.is_ok(), "{r:?}");
    let mut conn = Conn::open(&a, vip, 80, 0).expect("A reaches the virtual address");
    assert_eq!(conn.ask("echo hello"), "got hello");
    assert_eq!(
        conn.ask("bulk"),
        "got 8000001",
        "8 MB rewritten segment by segment"
    );
    assert_eq!(conn.ask("close"), "closed b''");
    let f = flows(&d);
    assert!(
        f.iter().all(|x| x["n_packets"].as_u64().unwrap() > 10),
        "both rules carried the connection: {f:?}"
    );
}
