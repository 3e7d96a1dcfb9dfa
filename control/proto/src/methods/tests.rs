//! Every method's parameters and result, on the wire as xvsd has always written them.

use std::fmt::Debug;

use serde_json::json;

use super::*;
use crate::code;

/// Checks that `params` and `result` (today's wire form of each) read into `M`'s types and
/// write back unchanged, and that a request for `M` reads into the `Call` of that name.
fn check<M: Method>(seen: &mut Vec<&'static str>, params: Value, result: Value)
where
    M::Params: PartialEq + Debug,
    M::Result: PartialEq + Debug,
{
    seen.push(M::NAME);
    let read: M::Params = serde_json::from_value(params.clone())
        .unwrap_or_else(|e| panic!("{} params {params}: {e}", M::NAME));
    assert_eq!(
        serde_json::to_value(&read).unwrap(),
        params,
        "{} params",
        M::NAME
    );
    let call = Call::parse(M::NAME, params.clone()).unwrap();
    assert_eq!(call.name(), M::NAME);
    assert_eq!(call.params(), params, "{} call params", M::NAME);
    let answer: M::Result = serde_json::from_value(result.clone())
        .unwrap_or_else(|e| panic!("{} result {result}: {e}", M::NAME));
    assert_eq!(
        serde_json::to_value(&answer).unwrap(),
        result,
        "{} result",
        M::NAME
    );
    let again: M::Result = serde_json::from_value(serde_json::to_value(&answer).unwrap()).unwrap();
    assert_eq!(again, answer);
}

#[test]
fn every_method_round_trips_in_todays_json() {
    let mut seen = Vec::new();
    let s = &mut seen;
    check::<Version>(s, json!({}), json!({"version": "0.1.0", "protocol": 1}));
    check::<ListCommands>(
        s,
        json!({}),
        json!([{"name": "version", "params": "", "help": "daemon and protocol version"}]),
    );
    check::<Show>(
        s,
        json!({}),
        json!({
            "version": "0.1.0",
            "uptime_s": 12.5,
            "fast_path": true,
            "ports": [{
                "id": 1,
                "name": "veth1",
                "ifindex": 7,
                "mac": "02:00:00:00:00:01",
                "driver": "veth",
                "hook": "xdp",
                "xdp_mode": "drv",
                "zero_copy": false,
                "fast_path": {"active": true, "redirect_target": false, "entries": 3},
                "queues": [{"queue": 0, "worker": 0, "cpu": 1}, {"queue": 1, "worker": 1, "cpu": null}],
                "vlan": {"mode": "trunk", "trunks": [10, 20], "native": null},
                "external_ids": {"owner": "xvsctl"},
            }],
            "absent": [{"name": "veth9", "reason": "the interface disappeared",
                        "vlan": {"mode": "all"}, "external_ids": {}}],
            "workers": [{"id": 0, "cpu": 1, "tid": 4242}, {"id": 1, "cpu": null, "tid": 4243}],
        }),
    );
    check::<ShowConfig>(
        s,
        json!({}),
        json!({
            "ports": {
                "veth1": {"vlan": {"mode": "access", "tag": 10}, "external_ids": {"owner": "xvs-cni"},
                          "mac_lock": ["02:00:00:00:00:01"], "mac_limit": 4, "storm_limit": 100},
                "veth2": {"hook": "xdp", "vlan": {"mode": "all"}},
            },
            "rules": [{"id": 3, "priority": 100, "flow": "priority=100,in_port=veth1,actions=drop"}],
            "interfaces": [{"on": {"vlan": 10}, "addrs": ["10.1.0.254/24"]}],
            "routes": [{"prefix": "10.9.0.0/16", "via": "10.1.0.1"}],
            "fast_path": true,
        }),
    );
    check::<AddPort>(
        s,
        json!({"name": "veth1", "queues": 2, "xdp_mode": "skb", "vlan": {"mode": "access", "tag": 10},
               "external_ids": {"owner": "xvs-cni"}, "mac_lock": ["02:00:00:00:00:01"]}),
        json!({"id": 1, "name": "veth1"}),
    );
    check::<DelPort>(s, json!({"name": "veth1"}), json!({}));
    check::<SetPort>(
        s,
        json!({"name": "veth1", "vlan": {"mode": "all"}}),
        json!({}),
    );
    check::<SetPort>(
        s,
        json!({"name": "veth1", "mac_limit": 4, "mac_lock": ["02:00:00:00:00:01"], "storm_limit": 0}),
        json!({}),
    );
    check::<DumpPorts>(
        s,
        json!({"name": "veth1"}),
        json!({
            "ports": [{
                "id": 1,
                "name": "veth1",
                "rx_packets": 10,
                "rx_bytes": 980,
                "tx_packets": 9,
                "tx_bytes": 882,
                "fast_path": {"rx_packets": 4, "tx_packets": 3},
                "drops": {"no_route": 1, "vlan_filtered": 0},
                "kernel": {"rx_dropped": 0, "rx_ring_full": 0, "rx_fill_ring_empty": 2,
                           "rx_invalid_descs": 0, "tx_invalid_descs": 0},
            }],
            "workers": [{
                "id": 0, "cpu": null, "loops": 100, "busy_loops": 10, "sleeps": 5,
                "cache_hits": 7, "cache_misses": 3, "cache_entries": 2, "tx_kicks": 1,
                "handoffs": 0,
                "ports": [{"name": "veth1", "rx_packets": 10, "tx_packets": 9, "drops": 1},
                          {"name": null, "rx_packets": 0, "tx_packets": 0, "drops": 0}],
            }],
        }),
    );
    check::<FdbShow>(
        s,
        json!({}),
        json!({"entries": [{"mac": "02:00:00:00:00:01", "vlan": 0, "port": "veth1",
                            "age_s": 1.25, "static": false}],
               "capacity": 8192, "not_learned": 3}),
    );
    check::<FdbFlush>(s, json!({}), json!({}));
    check::<AddFlow>(
        s,
        json!({"flow": "priority=100,icmp,actions=drop"}),
        json!({"id": 4, "replaced": null}),
    );
    check::<AddFlows>(
        s,
        json!({"flows": ["icmp,actions=drop", "arp,actions=normal"]}),
        json!({"ids": [5, 6]}),
    );
    check::<DelFlows>(
        s,
        json!({"match": "icmp", "strict": true}),
        json!({"deleted": 1}),
    );
    check::<DumpFlows>(
        s,
        json!({"match": "table=1,cookie=0x5/0xff"}),
        json!({"flows": [{"id": 4, "table": 1, "cookie": 5, "priority": 100,
                          "flow": "table=1,cookie=0x5,priority=100,icmp,actions=drop",
                          "n_packets": 5, "n_bytes": 490}],
               "table_miss": "normal"}),
    );
    // Before tables: no match, and entries without table and cookie (they read as 0).
    let old: DumpFlowsResult = serde_json::from_value(
        json!({"flows": [{"id": 4, "priority": 100, "flow": "priority=100,icmp,actions=drop",
                          "n_packets": 5, "n_bytes": 490}],
               "table_miss": "normal"}),
    )
    .unwrap();
    assert_eq!((old.flows[0].table, old.flows[0].cookie), (0, 0));
    assert_eq!(
        Call::parse("dump-flows", json!({})).unwrap().params(),
        json!({})
    );
    check::<Trace>(
        s,
        json!({"flow": "in_port=p1,tcp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_dst=80"}),
        json!({"flow": "in_port=p1,tcp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_dst=80",
               "assumed": ["dl_src=02:00:00:00:00:01", "nw_ttl=64"],
               "lines": [{"depth": 0, "kind": "rule", "rule": 3,
                          "text": "table 0: priority=10,ip actions=resubmit(,1)"},
                         {"depth": 1, "kind": "conntrack",
                          "text": "ct(zone=0): +new+trk mark=0x0"}],
               "decision": "output:p2", "cached": false, "kernel": false}),
    );
    check::<DumpConntrack>(
        s,
        json!({"zone": 1}),
        json!({"connections": [{"zone": 1, "proto": "tcp",
                                "orig": "src=10.0.0.1,dst=10.0.0.2,sport=40000,dport=80",
                                "state": "ESTABLISHED", "mark": 0}],
               "created": 3, "invalid": 1, "full": 0}),
    );
    check::<FlushConntrack>(s, json!({}), json!({"flushed": 2}));
    check::<AddAddr>(
        s,
        json!({"name": "vlan10", "addr": "10.1.0.254/24", "mac": "02:00:00:00:00:fe"}),
        json!({}),
    );
    check::<DelAddr>(
        s,
        json!({"name": "vlan10", "addr": "10.1.0.254"}),
        json!({}),
    );
    check::<ShowAddrs>(
        s,
        json!({}),
        json!({"interfaces": [
            {"name": "vlan10", "vlan": 10, "port": null, "mac": "02:78:76:73:00:0a",
             "addrs": ["10.1.0.254/24"]},
            {"name": "veth1", "vlan": 0, "port": "veth1", "mac": "02:00:00:00:00:01",
             "addrs": ["10.2.0.254/24", "fd00::1/64"]},
        ]}),
    );
    check::<AddRoute>(
        s,
        json!({"prefix": "10.9.0.0/16", "via": "10.1.0.1"}),
        json!({}),
    );
    check::<DelRoute>(s, json!({"prefix": "10.9.0.0/16"}), json!({}));
    check::<ShowRoutes>(
        s,
        json!({}),
        json!({"routes": [
            {"prefix": "10.1.0.0/24", "type": "connected", "dev": "vlan10"},
            {"prefix": "10.9.0.0/16", "type": "static", "via": "10.1.0.1", "dev": "vlan10"},
            {"prefix": "10.8.0.0/16", "type": "static", "via": "10.7.0.1", "dev": null},
        ]}),
    );
    check::<ShowNeighbors>(
        s,
        json!({}),
        json!({"neighbors": [{"ip": "10.1.0.1", "mac": "02:00:00:00:00:01", "port": "veth1",
                              "vlan": 10, "age_s": 0.5}]}),
    );
    check::<DumpFastPath>(
        s,
        json!({}),
        json!({"enabled": true, "entries": [{
            "in_port": "veth1", "out_port": null, "action": "drop",
            "dl_src": "02:00:00:00:00:01", "dl_dst": "02:00:00:00:00:02", "dl_type": "0x0800",
            "rule": 4, "n_packets": 3, "n_bytes": 294,
        }]}),
    );
    check::<SetFastPath>(s, json!({"on": false}), json!({"fast_path": false}));

    let table: Vec<&str> = METHODS.iter().map(|m| m.name).collect();
    seen.dedup();
    assert_eq!(
        seen, table,
        "every method of the table is checked here, in order"
    );
}

#[test]
fn the_table_and_the_calls_agree() {
    let mut names: Vec<&str> = METHODS.iter().map(|m| m.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), METHODS.len(), "a method is listed twice");
    for info in METHODS {
        assert!(!info.help.is_empty(), "{} has no help", info.name);
        // A method that takes no parameters reads from nothing; the others say what is
        // missing with the parameters' code.
        match Call::parse(info.name, Value::Null) {
            Ok(call) => assert_eq!(call.name(), info.name),
            Err(e) => {
                assert_eq!(e.code, code::INVALID_PARAMS, "{}", info.name);
                assert!(e.message.starts_with("bad parameters: "), "{}", e.message);
                assert!(!info.params.is_empty(), "{} takes parameters", info.name);
            }
        }
    }
}

#[test]
fn bad_calls_keep_their_codes_and_messages() {
    let e = Call::parse("frobnicate", json!({})).unwrap_err();
    assert_eq!(e.code, code::METHOD_NOT_FOUND);
    assert_eq!(
        e.message,
        "unknown command \"frobnicate\" (see list-commands)"
    );
    let e = Call::parse("del-port", json!({"nme": 1})).unwrap_err();
    assert_eq!(e.code, code::INVALID_PARAMS);
    assert!(e.message.contains("unknown field `nme`"), "{}", e.message);
    let e = Call::parse("add-port", json!({"name": "a", "tag": 3})).unwrap_err();
    assert_eq!(e.code, code::INVALID_PARAMS);
    // Methods without parameters have always ignored what they were sent.
    assert_eq!(
        Call::parse("show", json!([1, 2])).unwrap(),
        Call::Show(Empty)
    );
    assert_eq!(
        Call::parse("version", Value::Null).unwrap(),
        Call::Version(Empty)
    );
    // Optional parameters may be left out.
    assert_eq!(
        Call::parse("del-flows", Value::Null).unwrap(),
        Call::DelFlows(DelFlowsParams::default())
    );
    assert_eq!(
        Call::parse("dump-ports", json!({"name": null})).unwrap(),
        Call::DumpPorts(DumpPortsParams::default())
    );
}
