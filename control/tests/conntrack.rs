//! Connection tracking end to end: a stateful firewall written as OVS users write it (three
//! tables, `ct`), with the kernel's own TCP crossing the switch between namespaces, and
//! zones that keep two tenants with the same addresses apart.

mod common;

use std::time::Duration;

use common::tcp::{Conn, server};
use common::{Container, Daemon, Lab};
use serde_json::{Value, json};

fn add_flows(d: &Daemon, flows: &[String]) {
    let r = d.try_call("add-flows", json!({ "flows": flows }));
    assert!(r.is_ok(), "{r:?}");
}

fn flow_packets(d: &Daemon, needle: &str) -> u64 {
    let flows = d.call("dump-flows", json!({}));
    flows["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["flow"].as_str().unwrap().contains(needle))
        .unwrap_or_else(|| panic!("no flow with {needle}: {flows}"))["n_packets"]
        .as_u64()
        .unwrap()
}

fn connections(d: &Daemon) -> Vec<Value> {
    d.call("dump-conntrack", json!({}))["connections"]
        .as_array()
        .unwrap()
        .clone()
}

/// The tracked connections to `port` (others may be there: a connection a test opened before
/// its rules, ended meanwhile, can leave a segment that picks it up).
fn connections_to(d: &Daemon, port: u16) -> Vec<Value> {
    let dport = format!("dport={port}");
    connections(d)
        .into_iter()
        .filter(|c| c["orig"].as_str().unwrap().ends_with(&dport))
        .collect()
}

/// The pipeline: classify in table 0, an ACL with conntrack in table 1 (hosts on
/// `inside` may open TCP connections, the rest may only answer), forward in table 2.
fn firewall(inside: &str) -> Vec<String> {
    vec![
        "table=0,priority=100,arp,actions=normal".into(),
        "table=0,priority=10,ip,actions=resubmit(,1)".into(),
        "table=1,priority=100,ip,ct_state=-trk,actions=ct(table=1)".into(),
        format!(
            "table=1,priority=90,ct_state=+trk+new,tcp,in_port={inside},actions=ct(commit),resubmit(,2)"
        ),
        "table=1,priority=90,ct_state=+trk+est,actions=resubmit(,2)".into(),
        "cookie=0xdead,table=1,priority=80,ct_state=+trk,actions=drop".into(),
        "table=2,priority=10,actions=normal".into(),
    ]
}

#[test]
fn a_stateful_firewall_lets_a_open_and_b_only_answer() {
    let Some(mut lab) = Lab::new("a_stateful_firewall_lets_a_open_and_b_only_answer") else {
        return;
    };
    if !lab.require("python3") {
        return;
    }
    let a = lab.container(1, 41);
    let b = lab.container(2, 41);
    let d = lab.xvsd(&[&a.port, &b.port], &[]);
    assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));
    server(&mut lab, &b, 8080);
    server(&mut lab, &a, 9090);
    // Without rules B reaches A's server: what the firewall stops below is its doing.
    drop(Conn::open(&b, &a.ip, 9090, 0).expect("B reaches A before the firewall"));

    add_flows(&d, &firewall(&a.port));
    // A connects to B and is answered.
    let mut conn = Conn::open(&a, &b.ip, 8080, 0).expect("A opens a connection to B");
    assert_eq!(conn.ask("echo hello"), "got hello");
    let table = connections_to(&d, 8080);
    assert_eq!(table.len(), 1, "{table:?}");
    assert_eq!(table[0]["state"], "ESTABLISHED", "{table:?}");
    // B cannot open a connection to A: its SYN is dropped (a timeout, not a refusal).
    let dropped_before = flow_packets(&d, "cookie=0xdead");
    assert_eq!(
        Conn::open(&b, &a.ip, 9090, 0).err().as_deref(),
        Some("failed TimeoutError"),
        "B's SYN must be dropped"
    );
    assert!(flow_packets(&d, "cookie=0xdead") > dropped_before);
    // A's established connection keeps working, also for 8 MB from B (an established
    // flow, carried by the kernel's fast path).
    assert_eq!(conn.ask("echo again"), "got again");
    assert_eq!(conn.ask("bulk"), "got 8000001");
    if d.call("show", json!({}))["fast_path"] == json!(true) {
        let fast = d.call("dump-fast-path", json!({}));
        let kernel_packets: u64 = fast["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["in_port"] == b.port.as_str())
            .map(|f| f["n_packets"].as_u64().unwrap_or(0))
            .sum();
        assert!(
            kernel_packets > 0,
            "B's established segments go through the kernel: {fast}"
        );
    } else {
        eprintln!("(fast path off: the established flow stays in userspace)");
    }
    // FIN ends the connection; B still cannot open one.
    assert_eq!(conn.ask("close"), "closed b''");
    drop(conn);
    std::thread::sleep(Duration::from_millis(300));
    let table = connections_to(&d, 8080);
    assert!(
        table
            .iter()
            .all(|c| c["state"] == "TIME_WAIT" || c["state"] == "CLOSED"),
        "{table:?}"
    );
    assert_eq!(
        Conn::open(&b, &a.ip, 9090, 0).err().as_deref(),
        Some("failed TimeoutError")
    );
    // RST ends one too.
    let mut conn = Conn::open(&a, &b.ip, 8080, 0).expect("A opens again");
    assert_eq!(conn.ask("echo x"), "got x");
    assert_eq!(conn.ask("reset"), "reset");
    drop(conn);
    assert_eq!(
        Conn::open(&b, &a.ip, 9090, 0).err().as_deref(),
        Some("failed TimeoutError")
    );
    // trace shows the walk for B's SYN, and that it is not cached.
    let t = d.call(
        "trace",
        json!({"flow": format!("in_port={},tcp,nw_src={},nw_dst={},tp_src=5555,tp_dst=9090,tcp_flags=+syn", b.port, b.ip, a.ip)}),
    );
    let text = t.to_string();
    assert!(text.contains("ct(zone=0): +new+trk"), "{t}");
    assert!(text.contains("resubmit to table 1"), "{t}");
    assert_eq!(t["decision"], "drop (rule)", "{t}");
    assert_eq!(t["cached"], false, "{t}");
}

#[test]
fn zones_keep_two_tenants_with_the_same_addresses_apart() {
    let Some(mut lab) = Lab::new("zones_keep_two_tenants_with_the_same_addresses_apart") else {
        return;
    };
    if !lab.require("python3") {
        return;
    }
    // Two tenants, each a client and a server, with the very same addresses.
    let a1 = lab.container(1, 42);
    let b1 = lab.container(2, 42);
    let a2 = lab.container(3, 42);
    let b2 = lab.container(4, 42);
    for (c, ip) in [(&a2, "10.42.0.1"), (&b2, "10.42.0.2")] {
        assert!(
            c.exec(&["ip", "addr", "flush", "dev", "eth0"])
                .status
                .success()
        );
        assert!(
            c.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"])
                .status
                .success()
        );
    }
    let d = lab.xvsd(&[&a1.port, &b1.port, &a2.port, &b2.port], &[]);
    let mut flows = Vec::new();
    for (zone, a, b) in [(1, &a1, &b1), (2, &a2, &b2)] {
        let (a, b) = (&a.port, &b.port);
        flows.extend([
            format!("table=0,priority=100,arp,in_port={a},actions=output:{b}"),
            format!("table=0,priority=100,arp,in_port={b},actions=output:{a}"),
            format!("table=0,priority=10,ip,in_port={a},actions=ct(zone={zone},table=1)"),
            format!("table=0,priority=10,ip,in_port={b},actions=ct(zone={zone},table=1)"),
            format!("table=1,priority=10,ct_state=+trk+new,tcp,in_port={a},actions=ct(commit,zone={zone}),output:{b}"),
            format!("table=1,priority=10,ct_state=+trk+est,ct_zone={zone},in_port={a},actions=output:{b}"),
            format!("table=1,priority=10,ct_state=+trk+est,ct_zone={zone},in_port={b},actions=output:{a}"),
        ]);
    }
    add_flows(&d, &flows);
    server(&mut lab, &b1, 8080);
    server(&mut lab, &b2, 8080);
    // Both tenants open the very same connection, 10.42.0.1:40000 -> 10.42.0.2:8080.
    let mut one = Conn::open(&a1, "10.42.0.2", 8080, 40000).expect("tenant one connects");
    let mut two = Conn::open(&a2, "10.42.0.2", 8080, 40000).expect("tenant two connects");
    assert_eq!(one.ask("echo one"), "got one");
    assert_eq!(two.ask("echo two"), "got two");
    let table = connections(&d);
    assert_eq!(table.len(), 2, "{table:?}");
    let zones: Vec<u64> = table.iter().map(|c| c["zone"].as_u64().unwrap()).collect();
    assert!(zones.contains(&1) && zones.contains(&2), "{table:?}");
    assert_eq!(table[0]["orig"], table[1]["orig"], "the same tuple twice");
    // Tenant two's server side cannot open a connection to its client, even on the reverse
    // of the tuple tenant one has established: zone 2 knows nothing of it.
    assert_eq!(two.ask("close"), "closed b''");
    // (A server where tenant two's client was, so that a connection attempt that got
    // through would be answered, not refused.)
    server(&mut lab, &a2, 40000);
    assert_eq!(
        Conn::open(&b2, "10.42.0.1", 40000, 8080).err().as_deref(),
        Some("failed TimeoutError")
    );
    assert_eq!(one.ask("echo still"), "got still");
}

/// Containers A and B on `net`, an xvsd switching them, a server in B on 8080, the firewall
/// (A may open connections), and A's connection to B's server, answered once; `None` where the
/// test cannot run.
fn firewall_with_a_connection(
    test: &str,
    net: u8,
) -> Option<(Lab, Container, Container, Daemon, Conn)> {
    let mut lab = Lab::new(test)?;
    if !lab.require("python3") {
        return None;
    }
    let a = lab.container(1, net);
    let b = lab.container(2, net);
    let d = lab.xvsd(&[&a.port, &b.port], &[]);
    assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));
    server(&mut lab, &b, 8080);
    add_flows(&d, &firewall(&a.port));
    let mut conn = Conn::open(&a, &b.ip, 8080, 0).expect("A opens a connection to B");
    assert_eq!(conn.ask("echo before"), "got before");
    Some((lab, a, b, d, conn))
}

/// The tracker's connections are not saved: a restarted xvsd starts with none. A connection
/// through the firewall goes on all the same once its opener speaks, as in OVS and Linux: the
/// opener's next segment picks it up mid-stream and the other side's answer establishes it.
#[test]
fn a_connection_goes_on_across_a_restart_once_its_opener_speaks() {
    let Some((mut lab, a, b, mut d, mut conn)) = firewall_with_a_connection(
        "a_connection_goes_on_across_a_restart_once_its_opener_speaks",
        45,
    ) else {
        return;
    };
    d.kill9();
    let d = lab.xvsd(&[], &[]);
    assert!(connections_to(&d, 8080).is_empty(), "a new tracker");
    assert_eq!(conn.ask("echo after"), "got after");
    let table = connections_to(&d, 8080);
    assert_eq!(table.len(), 1, "{table:?}");
    assert_eq!(table[0]["state"], "ESTABLISHED", "{table:?}");
    assert_eq!(conn.ask("bulk"), "got 8000001");
    // flush-conntrack forgets it too (and every decision that used it); it goes on the same.
    let flushed = d.call("flush-conntrack", json!({}))["flushed"]
        .as_u64()
        .unwrap();
    assert!(flushed >= 1);
    assert!(connections_to(&d, 8080).is_empty());
    assert_eq!(conn.ask("echo flushed"), "got flushed");
    assert_eq!(connections_to(&d, 8080).len(), 1);
    // B still cannot open one.
    assert_eq!(
        Conn::open(&b, &a.ip, 9090, 0).err().as_deref(),
        Some("failed TimeoutError")
    );
}

/// Two workers, each serving one queue of each port: a connection's two directions may be
/// decided by different workers, which track it in one table. Eight TCP streams from A go
/// through the firewall on the workers' path (fast path off) and B still cannot open one.
#[test]
fn two_workers_track_in_one_table() {
    let Some(mut lab) = Lab::new("two_workers_track_in_one_table") else {
        return;
    };
    if !lab.require("iperf3") || !lab.require("python3") {
        return;
    }
    let a = lab.container_with_queues(1, 46, 2);
    let b = lab.container_with_queues(2, 46, 2);
    let d = lab.xvsd(
        &[&a.port, &b.port],
        &["--cpus", "0,1", "--fast-path", "off"],
    );
    assert!(a.wait_ping(&b.ip, Duration::from_secs(5)));
    server(&mut lab, &a, 9090);
    add_flows(&d, &firewall(&a.port));
    let v = common::iperf_json(&mut lab, &a, &b, 3, 8);
    let streams = v["end"]["streams"].as_array().expect("streams");
    assert_eq!(streams.len(), 8);
    for s in streams {
        let bytes = s["receiver"]["bytes"].as_u64().unwrap_or(0);
        assert!(bytes > 100_000, "a stream stalled: {s}");
    }
    let ports = d.call("dump-ports", json!({}));
    for w in ports["workers"].as_array().unwrap() {
        let rx: u64 = w["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["rx_packets"].as_u64().unwrap())
            .sum();
        assert!(rx > 100, "worker {} decided nothing: {ports}", w["id"]);
    }
    assert_eq!(
        Conn::open(&b, &a.ip, 9090, 0).err().as_deref(),
        Some("failed TimeoutError")
    );
}

/// A planned restart (SIGUSR2) hands the tracked connections to the successor with the
/// ports' programs: an established connection goes on even when the side that may not open
/// one speaks first (B answers a request A made before the handover, after it). Without the
/// handed-over connections B's segments would be new ones from B, dropped.
#[test]
fn a_handover_carries_connections_to_the_successor() {
    let Some((mut lab, _, _, mut d, mut conn)) =
        firewall_with_a_connection("a_handover_carries_connections_to_the_successor", 47)
    else {
        return;
    };
    // B answers 2 s from now, once the successor runs.
    conn.send("later 2");
    let socket = d.socket.clone();
    assert!(d.hand_over(), "xvsd did not hand over:\n{}", d.log());
    let next = lab.xvsd_at(&socket, &[], &[]);
    assert!(
        next.log()
            .contains("connections taken over from the predecessor"),
        "{}",
        next.log()
    );
    assert_eq!(conn.line(), "got late", "B spoke first, after the handover");
    assert_eq!(connections_to(&next, 8080).len(), 1);
    assert_eq!(conn.ask("bulk"), "got 8000001");
}
