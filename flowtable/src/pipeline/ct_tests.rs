//! Tests of multi-table walks and connection tracking in the pipeline: resubmit and
//! goto_table, a three-stage stateful firewall, zones, what is cached, and traces.

use super::*;
use crate::action::Step;
use crate::config::PortConfig;
use crate::flow_spec::parse_flow;
use crate::port::VlanMode;

const A: u64 = 0x02_00_00_00_00_0a;
const B: u64 = 0x02_00_00_00_00_0b;
const SYN: u16 = 0x002;
const ACK: u16 = 0x010;
const FIN: u16 = 0x001;
const RST: u16 = 0x004;
const PSH: u16 = 0x008;

fn config(flows: &[&str]) -> Arc<Config> {
    let mut c = Config::default();
    for id in 1..=4 {
        c.set_port(PortConfig {
            id,
            name: format!("p{id}"),
            mac: EthernetAddress([2, 0, 0, 0, 0xff, id as u8]),
            vlan: VlanMode::All,
            security: Default::default(),
        });
    }
    for (id, flow) in flows.iter().enumerate() {
        let rule = parse_flow(flow, &|_| None)
            .unwrap_or_else(|e| panic!("{flow}: {e}"))
            .into_rule(id as u32 + 1);
        c.rules.insert(rule);
    }
    Arc::new(c)
}

/// A TCP segment's key: port 1 is host A (10.0.0.1), port 2 host B (10.0.0.2).
fn tcp(from_a: bool, sport: u16, dport: u16, flags: u16) -> FlowKey {
    let (in_port, src, dst, nw_src, nw_dst) = if from_a {
        (1, A, B, 0x0a00_0001, 0x0a00_0002)
    } else {
        (2, B, A, 0x0a00_0002, 0x0a00_0001)
    };
    FlowKey {
        in_port,
        dl_src: src,
        dl_dst: dst,
        dl_type: 0x0800,
        nw_proto: 6,
        nw_ttl: 64,
        nw_src,
        nw_dst,
        tp_src: sport,
        tp_dst: dport,
        tcp_flags: flags,
        ..FlowKey::default()
    }
}

fn out(port: PortId) -> Vec<Step> {
    vec![Step::Output { port, tag: None }]
}

/// The three-stage pipeline of the issue: classify in table 0, an ACL with conntrack in
/// table 1 (A may open connections to B, B may only answer), forward in table 2.
const FIREWALL: &[&str] = &[
    "table=0,priority=100,arp,actions=normal",
    "table=0,priority=10,ip,actions=resubmit(,1)",
    "table=1,priority=100,ct_state=-trk,tcp,actions=ct(table=1)",
    "table=1,priority=90,ct_state=+trk+new,in_port=1,tcp,actions=ct(commit),resubmit(,2)",
    "table=1,priority=90,ct_state=+trk+est,tcp,actions=resubmit(,2)",
    "table=1,priority=80,ct_state=+trk,actions=drop",
    "table=2,priority=10,in_port=1,actions=output:2",
    "table=2,priority=10,in_port=2,actions=output:1",
];

#[test]
fn a_three_stage_firewall_lets_a_open_and_b_answer_only() {
    let mut p = Pipeline::new(config(FIREWALL), 256);
    let syn = tcp(true, 40000, 80, SYN);
    assert_eq!(p.decide(&syn, 64, 1).steps(), out(2), "A opens");
    assert_eq!(
        p.decide(&tcp(false, 80, 40000, SYN | ACK), 64, 2).steps(),
        out(1),
        "B answers"
    );
    assert_eq!(p.decide(&tcp(true, 40000, 80, ACK), 64, 3).steps(), out(2));
    // B cannot open a connection to A.
    let b_syn = tcp(false, 50000, 22, SYN);
    let d = p.decide(&b_syn, 64, 4);
    assert_eq!(d.drop_reason(), Some(DropReason::Rule));
    // Nor send a segment that belongs to no connection.
    let stray = tcp(false, 50000, 22, ACK);
    assert_eq!(
        p.decide(&stray, 64, 5).drop_reason(),
        Some(DropReason::Rule)
    );
    // A's connection keeps working, both ways, with data.
    assert_eq!(
        p.decide(&tcp(true, 40000, 80, PSH | ACK), 64, 6).steps(),
        out(2)
    );
    assert_eq!(
        p.decide(&tcp(false, 80, 40000, PSH | ACK), 64, 7).steps(),
        out(1)
    );
    // Every rule a walk met counts its packets: table 0's, the ct rule, table 1's verdict
    // and table 2's output.
    let stats = p.rule_stats();
    assert_eq!(
        stats[&2].0, 7,
        "every IP packet went through table 0's resubmit"
    );
    assert_eq!(stats[&4].0, 1, "one packet committed a new connection");
    assert_eq!(stats[&6].0, 2, "B's SYN and the stray segment were dropped");
}

/// A whole TCP frame for `tcp(from_a, ..)`, with sequence numbers, for the tracker's
/// window and FIN tracking (checksums are not its business and stay zero).
fn segment(from_a: bool, sport: u16, dport: u16, flags: u16, seq: u32, ack: u32) -> Vec<u8> {
    let key = tcp(from_a, sport, dport, flags);
    let mut f = Vec::new();
    f.extend_from_slice(&key.dl_dst.to_be_bytes()[2..]);
    f.extend_from_slice(&key.dl_src.to_be_bytes()[2..]);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&(key.nw_src as u32).to_be_bytes());
    f.extend_from_slice(&(key.nw_dst as u32).to_be_bytes());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[0x50, flags as u8, 0xff, 0xff, 0, 0, 0, 0]);
    f
}

/// Decides the frame as a worker does.
fn send(p: &mut Pipeline, frame: &[u8], in_port: PortId, now: u64) -> Decision {
    let (key, layout) = FlowKey::extract(frame, in_port).unwrap();
    p.decide_frame(frame, &key, &layout, now).0.clone()
}

#[test]
fn fin_and_rst_end_connections_and_b_still_cannot_open() {
    for closer in [FIN | ACK, RST | ACK] {
        let mut p = Pipeline::new(config(FIREWALL), 256);
        let a = |p: &mut Pipeline, flags, seq, ack, now| {
            send(p, &segment(true, 40000, 80, flags, seq, ack), 1, now)
        };
        let b = |p: &mut Pipeline, flags, seq, ack, now| {
            send(p, &segment(false, 80, 40000, flags, seq, ack), 2, now)
        };
        assert_eq!(a(&mut p, SYN, 1000, 0, 1).steps(), out(2));
        assert_eq!(b(&mut p, SYN | ACK, 5000, 1001, 2).steps(), out(1));
        assert_eq!(a(&mut p, ACK, 1001, 5001, 3).steps(), out(2));
        assert_eq!(a(&mut p, PSH | ACK, 1001, 5001, 4).steps(), out(2));
        assert_eq!(p.connections()[0].state, "ESTABLISHED");
        // The closer is decided afresh (never cached) and passes.
        assert_eq!(a(&mut p, closer, 1001, 5001, 5).steps(), out(2));
        if closer & FIN != 0 {
            assert_eq!(b(&mut p, FIN | ACK, 5001, 1002, 6).steps(), out(1));
            assert_eq!(a(&mut p, ACK, 1002, 5002, 7).steps(), out(2));
        }
        // The connection is over (what is left of it only lets stragglers through until its
        // short close timeout, as OVS does).
        let state = p.connections()[0].state;
        assert!(
            matches!(state, "CLOSED" | "TIME_WAIT"),
            "{closer:#x}: {state}"
        );
        // B still cannot open a connection: not on new ports...
        let b_syn = send(&mut p, &segment(false, 50000, 22, SYN, 9000, 0), 2, 8);
        assert_eq!(b_syn.drop_reason(), Some(DropReason::Rule), "{closer:#x}");
        // ...nor by reusing the closed connection's ports the other way.
        let b_reuse = b(&mut p, SYN, 7000, 0, 9);
        assert_eq!(b_reuse.drop_reason(), Some(DropReason::Rule), "{closer:#x}");
        // A can open again, on the same ports too.
        assert_eq!(a(&mut p, SYN, 3000, 0, 10).steps(), out(2));
    }
}

#[test]
fn zones_keep_two_tenants_with_the_same_addresses_apart() {
    // Ports 1-2 are tenant one (zone 1), ports 3-4 tenant two (zone 2), same addresses.
    let flows = [
        "table=0,priority=10,in_port=1,tcp,actions=ct(zone=1,table=1)",
        "table=0,priority=10,in_port=2,tcp,actions=ct(zone=1,table=1)",
        "table=0,priority=10,in_port=3,tcp,actions=ct(zone=2,table=1)",
        "table=0,priority=10,in_port=4,tcp,actions=ct(zone=2,table=1)",
        // Hosts on the first port of each tenant may open; replies go back.
        "table=1,priority=10,ct_state=+trk+new,in_port=1,actions=ct(commit,zone=1),output:2",
        "table=1,priority=10,ct_state=+trk+new,in_port=3,actions=ct(commit,zone=2),output:4",
        "table=1,priority=10,ct_state=+trk+est,ct_zone=1,in_port=2,actions=output:1",
        "table=1,priority=10,ct_state=+trk+est,ct_zone=2,in_port=4,actions=output:3",
        "table=1,priority=10,ct_state=+trk+est,ct_zone=1,in_port=1,actions=output:2",
        "table=1,priority=10,ct_state=+trk+est,ct_zone=2,in_port=3,actions=output:4",
    ];
    let mut p = Pipeline::new(config(&flows), 256);
    let on = |port: PortId, key: FlowKey| FlowKey {
        in_port: port,
        ..key
    };
    // Tenant one opens 10.0.0.1:40000 -> 10.0.0.2:80.
    assert_eq!(p.decide(&tcp(true, 40000, 80, SYN), 64, 1).steps(), out(2));
    // The same reply in tenant two belongs to no connection there: dropped (no rule).
    let reply2 = on(4, tcp(false, 80, 40000, SYN | ACK));
    assert_eq!(
        p.decide(&reply2, 64, 2).drop_reason(),
        Some(DropReason::Rule)
    );
    // In tenant one it is the reply.
    assert_eq!(
        p.decide(&tcp(false, 80, 40000, SYN | ACK), 64, 3).steps(),
        out(1)
    );
    // Tenant two opens the very same 5-tuple: a connection of its own.
    assert_eq!(
        p.decide(&on(3, tcp(true, 40000, 80, SYN)), 64, 4).steps(),
        out(4)
    );
    assert_eq!(p.decide(&reply2, 64, 5).steps(), out(3));
}

#[test]
fn resubmit_and_goto_table_compose_outputs_and_later_misses_do_nothing() {
    let flows = [
        "table=0,priority=10,actions=output:3,resubmit(,5),goto_table:7",
        "table=5,priority=10,in_port=1,actions=output:4",
        "table=7,priority=10,actions=mod_tp_dst:8080,resubmit(,8)",
        "table=8,priority=10,tcp,tp_dst=8080,actions=output:2",
    ];
    let mut p = Pipeline::new(config(&flows), 256);
    let d = p.decide(&tcp(true, 1, 80, ACK), 64, 1).clone();
    assert_eq!(
        d.steps(),
        &[
            Step::Output { port: 3, tag: None },
            Step::Output { port: 4, tag: None },
            Step::SetTpDst(8080),
            Step::Output { port: 2, tag: None },
        ],
        "table 8 saw the rewritten port"
    );
    assert_eq!(d.rules(), &[1, 2, 3, 4]);
    // From port 2 table 5 misses: nothing is added, and the walk goes on.
    let d = p.decide(&tcp(false, 1, 80, ACK), 64, 2).clone();
    assert_eq!(d.rules(), &[1, 3, 4]);
    // A miss in table 0 is normal (the learning switch): a flood.
    let p2 = &mut Pipeline::new(config(&["table=1,actions=drop"]), 8);
    assert!(matches!(
        p2.decide(&tcp(true, 1, 2, ACK), 64, 1).steps(),
        [Step::Flood { .. }]
    ));
}

#[test]
fn resubmit_loops_stop_at_the_depth_limit() {
    let flows = [
        "table=0,priority=10,actions=resubmit(,1)",
        "table=1,priority=10,actions=resubmit(,1)",
    ];
    let mut p = Pipeline::new(config(&flows), 8);
    let d = p.decide(&tcp(true, 1, 2, ACK), 64, 1).clone();
    assert_eq!(d.drop_reason(), Some(DropReason::Rule));
    assert_eq!(d.rules().len(), 1 + usize::from(MAX_RESUBMIT_DEPTH));
}

#[test]
fn rules_on_fields_the_kernel_key_lacks_are_marked_unkeyed() {
    let mut p = Pipeline::new(
        config(&[
            "priority=20,ip,nw_ttl=1,actions=drop",
            "priority=10,actions=normal",
        ]),
        8,
    );
    let (_, miss) = p.decide_detailed(&tcp(true, 1, 2, ACK), 64, 1);
    assert!(miss.expect("a miss").unkeyed);
    let mut p = Pipeline::new(config(&["priority=20,tcp,tcp_flags=+syn,actions=drop"]), 8);
    let (_, miss) = p.decide_detailed(&tcp(true, 1, 2, ACK), 64, 1);
    assert!(
        !miss.expect("a miss").unkeyed,
        "SYN/FIN/RST are in the kernel key"
    );
}

#[test]
fn a_trace_shows_every_table_and_the_conntrack_lookup_and_changes_nothing() {
    let mut p = Pipeline::new(config(FIREWALL), 256);
    let trace = p.trace_packet(&tcp(true, 40000, 80, SYN), 1);
    let texts: Vec<String> = trace.events.iter().map(|e| e.text.clone()).collect();
    let joined = texts.join("\n");
    assert!(joined.contains("table 0: priority=10,ip"), "{joined}");
    assert!(joined.contains("resubmit to table 1"), "{joined}");
    assert!(joined.contains("ct(zone=0): +new+trk"), "{joined}");
    assert!(
        joined.contains("ct_state=+new+trk actions=ct(commit),resubmit(,2)"),
        "{joined}"
    );
    assert!(
        joined.contains("table 2: priority=10,in_port=p1 actions=output:p2"),
        "{joined}"
    );
    assert_eq!(trace.decision.steps(), out(2));
    assert!(!trace.miss.cacheable);
    // Nothing was committed: B's answer still belongs to no connection.
    let d = p.decide(&tcp(false, 80, 40000, SYN | ACK), 64, 2);
    assert_eq!(d.drop_reason(), Some(DropReason::Rule));
}

/// A tracker two pipelines share, as a switch's workers share one.
#[derive(Debug, Clone)]
struct Shared(std::sync::Arc<std::sync::Mutex<crate::conntrack::Conntrack>>);

impl ConnTable for Shared {
    fn process(
        &mut self,
        packet: &crate::conntrack::CtPacket,
        commit: bool,
        set_mark: Option<(u32, u32)>,
        now: u64,
    ) -> crate::conntrack::CtVerdict {
        self.0
            .lock()
            .unwrap()
            .process(packet, commit, set_mark, now)
    }
    fn refresh(&mut self, conn: &crate::conntrack::ConnKey, now: u64) {
        self.0.lock().unwrap().refresh(conn, now);
    }
    fn expire(&mut self, now: u64, out: &mut Vec<crate::conntrack::ConnKey>) {
        self.0.lock().unwrap().expire(now, out);
    }
    fn stats(&self) -> crate::conntrack::CtStats {
        self.0.lock().unwrap().stats()
    }
    fn snapshot(&self) -> crate::conntrack::Conntrack {
        self.0.lock().unwrap().clone()
    }
}

/// A's packets decided by one worker, B's by another, one tracker: when B's RST ends the
/// connection, the worker that cached A's ACKs hears of it and decides the next one afresh.
#[test]
fn conntrack_changes_reach_other_workers_as_events() {
    use crate::conntrack::{Conntrack, CtConfig};
    let shared = Shared(std::sync::Arc::new(std::sync::Mutex::new(Conntrack::new(
        CtConfig::default(),
    ))));
    let mut w1 = Pipeline::new(config(FIREWALL), 256);
    w1.set_conntrack(Box::new(shared.clone()));
    let mut w2 = Pipeline::new(config(FIREWALL), 256);
    w2.set_conntrack(Box::new(shared));
    let a = |p: &mut Pipeline, flags, seq, ack, now| {
        send(p, &segment(true, 40000, 80, flags, seq, ack), 1, now)
    };
    let b = |p: &mut Pipeline, flags, seq, ack, now| {
        send(p, &segment(false, 80, 40000, flags, seq, ack), 2, now)
    };
    assert_eq!(a(&mut w1, SYN, 1000, 0, 1).steps(), out(2));
    assert_eq!(b(&mut w2, SYN | ACK, 5000, 1001, 2).steps(), out(1));
    assert_eq!(a(&mut w1, ACK, 1001, 5001, 3).steps(), out(2));
    let misses = w1.stats().cache_misses;
    a(&mut w1, ACK, 1001, 5001, 4);
    assert_eq!(w1.stats().cache_misses, misses, "A's ACKs are cached in w1");
    b(&mut w2, RST | ACK, 5001, 1001, 5);
    let events: Vec<Event> = w2.take_events().collect();
    assert!(
        events.iter().any(|e| matches!(e, Event::Conn { .. })),
        "{events:?}"
    );
    for e in &events {
        w1.apply_event(e);
    }
    a(&mut w1, ACK, 1001, 5001, 6);
    assert_eq!(w1.stats().cache_misses, misses + 1, "decided afresh in w1");
}

/// An ICMP echo frame from A (request) or B (reply) with this identifier.
fn echo(from_a: bool, id: u16) -> Vec<u8> {
    let key = tcp(from_a, 0, 0, 0);
    let mut f = Vec::new();
    f.extend_from_slice(&key.dl_dst.to_be_bytes()[2..]);
    f.extend_from_slice(&key.dl_src.to_be_bytes()[2..]);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 1, 0, 0]);
    f.extend_from_slice(&(key.nw_src as u32).to_be_bytes());
    f.extend_from_slice(&(key.nw_dst as u32).to_be_bytes());
    f.extend_from_slice(&[if from_a { 8 } else { 0 }, 0, 0, 0]);
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&[0, 1]);
    f
}

#[test]
fn echo_decisions_are_not_cached_for_their_identifier_is_not_in_the_key() {
    let flows = [
        "table=0,priority=10,icmp,actions=ct(table=1)",
        "table=1,priority=10,ct_state=+trk+new,in_port=1,actions=ct(commit),output:2",
        "table=1,priority=10,ct_state=+trk+est,actions=normal",
        "table=1,priority=5,actions=drop",
    ];
    let mut p = Pipeline::new(config(&flows), 64);
    assert_eq!(send(&mut p, &echo(true, 7), 1, 1).steps(), out(2));
    assert!(send(&mut p, &echo(false, 7), 2, 2).drop_reason().is_none());
    assert!(send(&mut p, &echo(false, 7), 2, 3).drop_reason().is_none());
    // The same flow key, another identifier: no echo of A's, dropped.
    assert_eq!(
        send(&mut p, &echo(false, 8), 2, 4).drop_reason(),
        Some(DropReason::Rule)
    );
}

#[test]
fn a_connection_a_reopening_syn_removes_takes_its_cached_decisions_with_it() {
    let mut p = Pipeline::new(config(FIREWALL), 256);
    let a = |p: &mut Pipeline, flags, seq, ack, now| {
        send(p, &segment(true, 40000, 80, flags, seq, ack), 1, now)
    };
    let b = |p: &mut Pipeline, flags, seq, ack, now| {
        send(p, &segment(false, 80, 40000, flags, seq, ack), 2, now)
    };
    a(&mut p, SYN, 1000, 0, 1);
    b(&mut p, SYN | ACK, 5000, 1001, 2);
    assert_eq!(a(&mut p, ACK, 1001, 5001, 3).steps(), out(2));
    b(&mut p, RST | ACK, 5001, 1001, 4);
    // A straggler of the closed connection passes (and is cached).
    assert_eq!(a(&mut p, ACK, 1001, 5001, 5).steps(), out(2));
    assert_eq!(a(&mut p, ACK, 1001, 5001, 6).steps(), out(2));
    // B's SYN on the closed connection's ports ends it (and, new from B, is dropped).
    assert_eq!(
        b(&mut p, SYN, 7000, 0, 7).drop_reason(),
        Some(DropReason::Rule)
    );
    assert!(p.connections().is_empty());
    // Nothing of the connection is left: A's next ACK is no cache hit but shown to the
    // tracker, which picks a new connection up with it (an ACK may, from the side allowed to
    // open).
    let misses = p.stats().cache_misses;
    assert_eq!(a(&mut p, ACK, 1001, 5001, 8).steps(), out(2));
    assert_eq!(p.stats().cache_misses, misses + 1, "decided afresh");
    assert_eq!(p.connections().len(), 1);
    // From B, which may not open one, the same is dropped.
    let mut p = Pipeline::new(config(FIREWALL), 256);
    assert_eq!(
        b(&mut p, ACK, 5001, 1001, 1).drop_reason(),
        Some(DropReason::Rule)
    );
    assert!(p.connections().is_empty());
}
