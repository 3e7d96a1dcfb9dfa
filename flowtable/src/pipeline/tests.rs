//! Tests of the pipeline: bridging, VLANs, rules, routing, replication between workers, and
//! the cached pipeline held against the uncached one.

use super::*;
use crate::action::Step;
use crate::config::PortConfig;
use crate::port::{EgressTag, VlanMode};
use crate::wire::EtherType;

const S: u64 = 1_000_000_000;

fn config(ports: &[(PortId, VlanMode)]) -> Arc<Config> {
    let mut c = Config::default();
    for (id, vlan) in ports {
        c.set_port(PortConfig {
            id: *id,
            name: format!("p{id}"),
            mac: EthernetAddress([2, 0, 0, 0, 0xff, *id as u8]),
            vlan: vlan.clone(),
            security: Default::default(),
        });
    }
    Arc::new(c)
}

fn three_ports() -> Arc<Config> {
    config(&[(1, VlanMode::All), (2, VlanMode::All), (3, VlanMode::All)])
}

fn key(in_port: PortId, src: u64, dst: u64) -> FlowKey {
    FlowKey {
        in_port,
        dl_src: src,
        dl_dst: dst,
        dl_type: 0x0800,
        ..FlowKey::default()
    }
}

impl Pipeline {
    fn decide_t(&mut self, key: &FlowKey, now: u64) -> &Decision {
        self.decide(key, 64, now)
    }
}

const A: u64 = 0x02_00_00_00_00_0a;
const B: u64 = 0x02_00_00_00_00_0b;
const BCAST: u64 = 0xffff_ffff_ffff;

#[test]
fn floods_unknown_then_forwards_learned() {
    let mut p = Pipeline::new(three_ports(), 64);
    let d = p.decide_t(&key(1, A, B), 0).clone();
    assert_eq!(d.steps(), &[Step::Flood { vlan: 0, except: 1 }]);
    let d = p.decide_t(&key(2, B, A), 1).clone();
    assert_eq!(
        d.steps(),
        &[Step::Output {
            port: 1,
            tag: Some(EgressTag::Untagged)
        }]
    );
    // B is now known: A -> B must stop flooding even though that flow was cached.
    let d = p.decide_t(&key(1, A, B), 2).clone();
    assert_eq!(
        d.steps(),
        &[Step::Output {
            port: 2,
            tag: Some(EgressTag::Untagged)
        }]
    );
    assert_eq!(p.decide_t(&key(1, A, B), 3).steps().len(), 1);
    assert!(p.stats().cache_hits >= 1);
}

/// `three_ports` with port 1's security set to `security`.
fn secured(security: crate::config::PortSecurity, loop_guard_pps: u32) -> Arc<Config> {
    let mut c = (*three_ports()).clone();
    let mut port = c.port(1).unwrap().clone();
    port.security = security;
    c.set_port(port);
    c.loop_guard_pps = loop_guard_pps;
    Arc::new(c)
}

#[test]
fn a_port_locked_to_a_mac_takes_frames_from_it_alone() {
    let security = crate::config::PortSecurity {
        mac_lock: vec![EthernetAddress::from_u64(A)],
        ..Default::default()
    };
    let mut p = Pipeline::new(secured(security, 0), 64);
    for now in [0, 1] {
        let d = p.decide_t(&key(1, A, BCAST), now).clone();
        assert_eq!(d.steps(), &[Step::Flood { vlan: 0, except: 1 }]);
        let d = p.decide_t(&key(1, B, BCAST), now);
        assert_eq!(d.drop_reason(), Some(DropReason::MacLock), "at {now}");
    }
    assert_eq!(
        p.mac_table().lookup(0, B),
        None,
        "a locked-out source is not learned"
    );
    assert_eq!(p.mac_table().lookup(0, A), Some(1));
    // Another port takes B as usual.
    assert!(p.decide_t(&key(2, B, A), 2).drop_reason().is_none());
}

#[test]
fn a_port_at_its_mac_limit_drops_new_sources_and_keeps_known_ones() {
    let security = crate::config::PortSecurity {
        mac_limit: Some(2),
        ..Default::default()
    };
    let mut p = Pipeline::new(secured(security, 0), 64);
    const C: u64 = 0x02_00_00_00_00_0c;
    assert!(p.decide_t(&key(1, A, BCAST), 0).drop_reason().is_none());
    assert!(p.decide_t(&key(1, B, BCAST), 0).drop_reason().is_none());
    for now in [1, 2] {
        let d = p.decide_t(&key(1, C, BCAST), now);
        assert_eq!(d.drop_reason(), Some(DropReason::MacLimit));
    }
    assert_eq!(p.mac_table().lookup(0, C), None);
    assert_eq!(p.stats().macs_over_limit, 2);
    assert!(
        p.decide_t(&key(1, A, 0x02_00_00_00_00_0d), 3)
            .drop_reason()
            .is_none(),
        "known A forwards"
    );
    // Room comes back when an address ages out.
    let age = p.mac_table().max_age();
    p.decide_t(&key(1, A, BCAST), age / 2);
    p.tick(age + 1);
    assert_eq!(p.mac_table().lookup(0, B), None, "B aged out");
    let d = p.decide_t(&key(1, C, BCAST), age + 2);
    assert!(d.drop_reason().is_none(), "{:?}", d.drop_reason());
    assert_eq!(p.mac_table().lookup(0, C), Some(1));
}

#[test]
fn a_storm_limit_passes_its_rate_of_broadcast_and_drops_the_rest() {
    let security = crate::config::PortSecurity {
        storm_limit: Some(100),
        ..Default::default()
    };
    let mut p = Pipeline::new(secured(security, 0), 64);
    let passed = (0..1000)
        .filter(|_| p.decide_t(&key(1, A, BCAST), 5).drop_reason().is_none())
        .count();
    assert_eq!(passed, 100, "a second's burst");
    assert_eq!(
        p.decide_t(&key(1, A, BCAST), 5).drop_reason(),
        Some(DropReason::Storm)
    );
    assert!(
        p.decide_t(&key(1, A, B), 5).drop_reason().is_none(),
        "unicast is not limited"
    );
    assert!(
        p.decide_t(&key(2, B, BCAST), 5).drop_reason().is_none(),
        "other ports are not"
    );
    // 10 ms later: one more frame's worth.
    assert!(
        p.decide_t(&key(1, A, BCAST), 5 + 10_000_000)
            .drop_reason()
            .is_none()
    );
    assert_eq!(p.stats().loop_guard_trips, 0);
}

#[test]
fn the_loop_guard_blocks_a_port_addresses_flap_onto() {
    let mut p = Pipeline::new(secured(Default::default(), 1000), 64);
    // A's own frames coming back in on ports 2 and 3, as in a loop between them.
    let mut t = 0;
    while p.stats().loop_guard_trips == 0 && t < 1000 {
        p.decide_t(&key(2 + (t % 2) as PortId, A, B), t * 1000);
        t += 1;
    }
    assert!(p.stats().loop_guard_trips >= 1, "no trip after {t} moves");
    assert!(
        t > 2 * u64::from(storm::FLAP_LIMIT),
        "tripped early, after {t}"
    );
    let port = p.take_blocked().next().unwrap().port;
    assert!(port == 2 || port == 3);
    assert_eq!(
        p.decide_t(&key(port, A, B), t * 1000).drop_reason(),
        Some(DropReason::Storm),
        "unicast in on the blocked port"
    );
    // One move, as a host that moved once, trips nothing.
    let mut q = Pipeline::new(secured(Default::default(), 1000), 64);
    q.decide_t(&key(1, A, B), 0);
    q.decide_t(&key(2, A, B), 1);
    assert_eq!(q.stats().loop_guard_trips, 0);
    assert!(q.decide_t(&key(2, A, B), 2).drop_reason().is_none());
}

#[test]
fn the_loop_guard_blocks_a_port_flooded_with_broadcast_for_a_while() {
    let mut p = Pipeline::new(secured(Default::default(), 1000), 64);
    // A frame circulating in a loop: far past the guard's rate.
    let passed = (0..5000)
        .filter(|i| {
            p.decide_t(&key(1, A, BCAST), i * 1000)
                .drop_reason()
                .is_none()
        })
        .count();
    assert!((1000..1100).contains(&passed), "{passed}");
    assert_eq!(p.stats().loop_guard_trips, 1);
    let blocked: Vec<Blocked> = p.take_blocked().collect();
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].port, 1);
    assert_eq!(
        p.mac_table().lookup(0, A),
        None,
        "what was learned there is forgotten"
    );
    // Blocked: even a slow trickle is dropped until the block ends, unicast too.
    let t = 5000 * 1000 + S;
    assert_eq!(
        p.decide_t(&key(1, A, BCAST), t).drop_reason(),
        Some(DropReason::Storm)
    );
    assert_eq!(
        p.decide_t(&key(1, A, B), t).drop_reason(),
        Some(DropReason::Storm)
    );
    assert!(p.decide_t(&key(2, B, BCAST), t).drop_reason().is_none());
    let after = blocked[0].until + 1;
    assert!(p.decide_t(&key(1, A, BCAST), after).drop_reason().is_none());
    assert_eq!(p.take_blocked().count(), 0);
}

#[test]
fn invalid_sources_are_dropped_and_never_learned() {
    let mut p = Pipeline::new(three_ports(), 64);
    p.decide_t(&key(2, B, A), 0);
    // Zero, broadcast and multicast sources, as the Linux bridge refuses them.
    for (i, src) in [0, BCAST, 0x01_00_5e_00_00_01].into_iter().enumerate() {
        for now in [1, 2] {
            let d = p.decide_t(&key(1, src, B), now + i as u64 * 10);
            assert_eq!(
                d.drop_reason(),
                Some(DropReason::InvalidSource),
                "{src:012x} at {now}"
            );
            assert!(d.steps().is_empty());
        }
        assert_eq!(p.mac_table().lookup(0, src), None, "{src:012x} learned");
    }
    assert_eq!(p.mac_table().len(), 1, "only B");
    assert_eq!(p.stats().macs_learned, 1);
    assert!(
        p.take_events()
            .all(|e| matches!(e, Event::Mac(m) if m.mac == B))
    );
}

#[test]
fn a_full_mac_table_never_floods_known_unicast() {
    let mut c = (*three_ports()).clone();
    c.mac_capacity = 8;
    let mut p = Pipeline::new(Arc::new(c), 1024);
    p.decide_t(&key(1, A, BCAST), 0);
    p.decide_t(&key(2, B, BCAST), 0);
    // Port 3 floods frames to A from ever new sources, far more than the table holds.
    for i in 0..5000u64 {
        let src = 0x02_00_01_00_00_00 + i;
        let d = p.decide_t(&key(3, src, A), 1 + i);
        assert_eq!(
            d.steps(),
            &[Step::Output {
                port: 1,
                tag: Some(EgressTag::Untagged)
            }],
            "frame {i} to A went elsewhere"
        );
    }
    assert_eq!(p.mac_table().len(), 8);
    assert_eq!(p.mac_table().lookup(0, A), Some(1));
    assert_eq!(p.mac_table().lookup(0, B), Some(2));
    assert_eq!(p.stats().macs_learned, 8);
    assert_eq!(p.stats().macs_not_learned, 5000 - 6);
    // B still gets A's frames, from the cache and afresh.
    for now in [6000, 6001] {
        assert_eq!(p.decide_t(&key(1, A, B), now).steps().len(), 1);
    }
}

#[test]
fn broadcast_floods_in_vlan() {
    let mut p = Pipeline::new(three_ports(), 64);
    let d = p.decide_t(&key(3, A, BCAST), 0);
    assert_eq!(d.steps(), &[Step::Flood { vlan: 0, except: 3 }]);
    let targets: Vec<_> = p.config().flood_targets(0, 3).map(|t| t.0).collect();
    assert_eq!(targets, vec![1, 2]);
}

#[test]
fn moved_mac_invalidates_cached_decisions() {
    let mut p = Pipeline::new(three_ports(), 64);
    p.decide_t(&key(1, A, B), 0);
    p.decide_t(&key(2, B, A), 0);
    assert_eq!(
        p.decide_t(&key(1, A, B), 0).steps()[0],
        Step::Output {
            port: 2,
            tag: Some(EgressTag::Untagged)
        }
    );
    // B moves to port 3.
    p.decide_t(&key(3, B, A), 1);
    assert_eq!(
        p.decide_t(&key(1, A, B), 2).steps()[0],
        Step::Output {
            port: 3,
            tag: Some(EgressTag::Untagged)
        }
    );
    // And back to port 2, whose old flow B -> A is still in the cache: it must not hide
    // the move.
    p.decide_t(&key(2, B, A), 3);
    assert_eq!(p.mac_table().lookup(0, B), Some(2));
}

#[test]
fn same_port_destination_is_dropped() {
    let mut p = Pipeline::new(three_ports(), 64);
    p.decide_t(&key(1, B, A), 0);
    let d = p.decide_t(&key(1, A, B), 0);
    assert_eq!(d.drop_reason(), Some(DropReason::SamePort));
}

#[test]
fn cached_flows_keep_sources_fresh_and_quiet_ones_age_out() {
    let mut p = Pipeline::new(three_ports(), 64);
    p.decide_t(&key(1, A, B), 0);
    p.decide_t(&key(2, B, A), 0);
    // A keeps sending through the cache for 400 s; B goes quiet.
    for t in 1..=400 {
        p.decide_t(&key(1, A, B), t * S);
        p.tick(t * S);
    }
    assert_eq!(p.mac_table().lookup(0, A), Some(1));
    assert_eq!(p.mac_table().lookup(0, B), None, "B aged out");
    assert!(p.stats().macs_expired >= 1);
    // With B gone, A -> B floods again.
    assert!(matches!(
        p.decide_t(&key(1, A, B), 401 * S).steps()[0],
        Step::Flood { .. }
    ));
}

#[test]
fn config_change_invalidates() {
    let mut p = Pipeline::new(three_ports(), 64);
    p.decide_t(&key(2, B, A), 0);
    assert!(matches!(
        p.decide_t(&key(1, A, B), 0).steps()[0],
        Step::Output { port: 2, .. }
    ));
    // Port 2 leaves.
    p.set_config(config(&[(1, VlanMode::All), (3, VlanMode::All)]));
    assert_eq!(p.mac_table().lookup(0, B), None);
    assert!(matches!(
        p.decide_t(&key(1, A, B), 1).steps()[0],
        Step::Flood { .. }
    ));
}

#[test]
fn vlans_are_separate() {
    let cfg = config(&[
        (1, VlanMode::Access(10)),
        (2, VlanMode::Access(20)),
        (
            3,
            VlanMode::Trunk {
                allowed: vec![10, 20],
                native: None,
            },
        ),
    ]);
    let mut p = Pipeline::new(cfg, 64);
    let d = p.decide_t(&key(1, A, BCAST), 0);
    assert_eq!(
        d.steps(),
        &[Step::Flood {
            vlan: 10,
            except: 1
        }]
    );
    let targets: Vec<_> = p.config().flood_targets(10, 1).collect();
    assert_eq!(targets, vec![(3, EgressTag::Tagged(10))]);
    // A tagged frame on an access port is dropped.
    let mut tagged = key(1, A, B);
    tagged.vlan = crate::key::VLAN_PRESENT | 10;
    assert_eq!(
        p.decide_t(&tagged, 0).drop_reason(),
        Some(DropReason::VlanFiltered)
    );
    // A learned in VLAN 10 is unknown in VLAN 20.
    let mut from_trunk = key(3, B, A);
    from_trunk.vlan = crate::key::VLAN_PRESENT | 20;
    assert!(matches!(
        p.decide_t(&from_trunk, 0).steps()[0],
        Step::Flood { vlan: 20, .. }
    ));
}

#[test]
fn events_replicate_learning() {
    let mut a = Pipeline::new(three_ports(), 64);
    let mut b = Pipeline::new(three_ports(), 64);
    a.decide_t(&key(1, A, BCAST), 5);
    let events: Vec<_> = a.take_events().collect();
    assert_eq!(
        events,
        vec![Event::Mac(MacEvent {
            vlan: 0,
            mac: A,
            port: 1,
            seen: 5
        })]
    );
    for e in &events {
        b.apply_event(e);
    }
    assert!(matches!(
        b.decide_t(&key(2, B, A), 6).steps()[0],
        Step::Output { port: 1, .. }
    ));
}

mod rules_and_routing {
    use super::*;
    use crate::config::Binding;
    use crate::flow_spec::parse_flow;
    use crate::neighbor::Solicitation;

    fn with_rules(specs: &[&str]) -> Arc<Config> {
        let mut c = (*three_ports()).clone();
        for (id, spec) in specs.iter().enumerate() {
            let rule = parse_flow(spec, &|_| None)
                .unwrap()
                .into_rule(id as u32 + 1);
            c.rules.insert(rule);
        }
        Arc::new(c)
    }

    fn ip_key(in_port: PortId, src: u64, dst: u64, nw_src: [u8; 4], nw_dst: [u8; 4]) -> FlowKey {
        FlowKey {
            nw_src: u128::from(u32::from_be_bytes(nw_src)),
            nw_dst: u128::from(u32::from_be_bytes(nw_dst)),
            nw_proto: 1,
            nw_ttl: 64,
            tp_src: 8,
            ..key(in_port, src, dst)
        }
    }

    #[test]
    fn no_rule_forwards_an_invalid_source() {
        let cfg = with_rules(&["priority=10,actions=output:2", "priority=5,actions=normal"]);
        let mut p = Pipeline::new(cfg, 64);
        let d = p.decide_t(&key(1, 0, B), 0);
        assert_eq!(d.drop_reason(), Some(DropReason::InvalidSource));
        assert_eq!(d.rule(), None);
        assert!(p.mac_table().is_empty());
    }

    #[test]
    fn drop_rule_priorities_and_counts() {
        let cfg = with_rules(&[
            "priority=100,icmp,nw_dst=10.0.0.2,actions=drop",
            "priority=200,icmp,nw_src=10.0.0.9,actions=normal",
        ]);
        let mut p = Pipeline::new(cfg, 64);
        p.decide(&key(2, B, BCAST), 64, 0);
        let k = ip_key(1, A, B, [10, 0, 0, 1], [10, 0, 0, 2]);
        for t in 0..5 {
            let d = p.decide(&k, 100, t);
            assert_eq!(d.drop_reason(), Some(DropReason::Rule));
            assert_eq!(d.rule(), Some(1));
        }
        // The higher priority rule wins where both match.
        let k9 = ip_key(1, A, B, [10, 0, 0, 9], [10, 0, 0, 2]);
        let d = p.decide(&k9, 100, 6).clone();
        assert_eq!(d.rule(), Some(2));
        assert!(matches!(d.steps()[0], Step::Output { port: 2, .. }));
        // Traffic no rule matches is switched normally, and counts nowhere.
        let other = key(1, A, B);
        assert!(p.decide(&other, 60, 7).rule().is_none());
        let stats = p.rule_stats();
        assert_eq!(stats[&1], (5, 500));
        assert_eq!(stats[&2], (1, 100));
        assert!(!stats.contains_key(&3));
    }

    #[test]
    fn actions_compose() {
        let cfg = with_rules(&[
            "priority=10,in_port=1,actions=mod_dl_src:02:00:00:00:00:99,output:3,normal",
            "priority=5,actions=normal",
        ]);
        let mut p = Pipeline::new(cfg, 64);
        p.decide(&key(2, B, BCAST), 64, 0);
        // As in OVS, `normal` sees the frame as the actions before it left it: it learns the
        // rewritten source, not A.
        let d = p.decide(&key(1, A, B), 64, 1).clone();
        let rewritten = EthernetAddress([2, 0, 0, 0, 0, 0x99]).to_u64();
        assert_eq!(p.mac_table().lookup(0, rewritten), Some(1));
        assert_eq!(p.mac_table().lookup(0, A), None);
        assert_eq!(
            d.steps(),
            &[
                Step::SetEthSrc(EthernetAddress([2, 0, 0, 0, 0, 0x99])),
                Step::Output { port: 3, tag: None },
                Step::Output {
                    port: 2,
                    tag: Some(EgressTag::Untagged)
                },
            ]
        );
    }

    const ROUTER: [u8; 4] = [10, 1, 0, 254];

    /// Port 1 in VLAN 10 (10.1.0.0/24), ports 2 and 3 in VLAN 20 (10.2.0.0/24).
    fn routed() -> (Arc<Config>, EthernetAddress, EthernetAddress) {
        let mut c = (*config(&[
            (1, VlanMode::Access(10)),
            (2, VlanMode::Access(20)),
            (3, VlanMode::Access(20)),
        ]))
        .clone();
        c.add_address(Binding::Vlan(10), "10.1.0.254".parse().unwrap(), 24, None)
            .unwrap();
        c.add_address(Binding::Vlan(20), "10.2.0.254".parse().unwrap(), 24, None)
            .unwrap();
        let m10 = c.interfaces()[0].mac;
        let m20 = c.interfaces()[1].mac;
        (Arc::new(c), m10, m20)
    }

    fn arp(in_port: PortId, src: u64, dst: u64, op: u8, spa: [u8; 4], tpa: [u8; 4]) -> FlowKey {
        FlowKey {
            dl_type: EtherType::ARP,
            nw_proto: op,
            ..ip_key(in_port, src, dst, spa, tpa)
        }
    }

    #[test]
    fn router_answers_arp_and_ping_and_routes_after_resolving() {
        let (cfg, m10, m20) = routed();
        let mut p = Pipeline::new(cfg, 64);
        // A (10.1.0.1, port 1) asks for its gateway.
        let d = p
            .decide(&arp(1, A, BCAST, 1, [10, 1, 0, 1], ROUTER), 60, 0)
            .clone();
        assert_eq!(d.steps()[0], Step::ArpReply(m10));
        assert!(matches!(d.steps()[1], Step::Output { port: 1, .. }));
        // A pings the gateway.
        let d = p
            .decide(&ip_key(1, A, m10.to_u64(), [10, 1, 0, 1], ROUTER), 98, 1)
            .clone();
        assert_eq!(d.steps()[0], Step::EchoReply(m10));
        // A pings B (10.2.0.2, behind port 3) across the router: B is unresolved.
        let to_b = ip_key(1, A, m10.to_u64(), [10, 1, 0, 1], [10, 2, 0, 2]);
        assert_eq!(
            p.decide(&to_b, 98, 2).drop_reason(),
            Some(DropReason::NoNeighbor)
        );
        let sol: Vec<Solicitation> = p.take_solicitations().collect();
        assert_eq!(sol.len(), 1);
        assert_eq!(sol[0].target, "10.2.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(sol[0].source, "10.2.0.254".parse::<IpAddr>().unwrap());
        assert_eq!(
            (sol[0].vlan, sol[0].port, sol[0].source_mac),
            (20, None, m20)
        );
        // Rate-limited: no second request within a second.
        p.decide(&to_b, 98, 3);
        assert_eq!(p.take_solicitations().count(), 0);
        // B answers on port 3.
        let reply = arp(3, B, m20.to_u64(), 2, [10, 2, 0, 2], [10, 2, 0, 254]);
        assert_eq!(
            p.decide(&reply, 60, 4).drop_reason(),
            Some(DropReason::ToRouter)
        );
        // Now the packet is routed: MACs rewritten, TTL decremented, out of port 3.
        let d = p.decide(&to_b, 98, 5).clone();
        assert_eq!(
            d.steps(),
            &[
                Step::SetEthSrc(m20),
                Step::SetEthDst(EthernetAddress::from_u64(B)),
                Step::DecTtl,
                Step::Output {
                    port: 3,
                    tag: Some(EgressTag::Untagged)
                },
            ]
        );
        // TTL 1 dies at the router; no route is dropped.
        let mut dying = to_b;
        dying.nw_ttl = 1;
        assert_eq!(
            p.decide(&dying, 98, 6).drop_reason(),
            Some(DropReason::TtlExceeded)
        );
        let nowhere = ip_key(1, A, m10.to_u64(), [10, 1, 0, 1], [192, 0, 2, 1]);
        assert_eq!(
            p.decide(&nowhere, 98, 7).drop_reason(),
            Some(DropReason::NoRoute)
        );
        // B moves to port 2: the routed flow follows the MAC table.
        p.decide(&key(2, B, BCAST), 60, 8);
        assert!(matches!(
            p.decide(&to_b, 98, 9).steps()[3],
            Step::Output { port: 2, .. }
        ));
    }

    #[test]
    fn frames_the_router_drops_still_teach_where_their_source_is() {
        // Found by the frame_pipeline fuzz target: a frame to a router MAC that the router
        // drops (here an EtherType it does not route) was cached without the source it
        // learned, so after the host moved away and back, a cache hit skipped learning and
        // the table kept the old port.
        let (cfg, _, m20) = routed();
        let mut p = Pipeline::new(cfg, 64);
        let odd = |in_port| FlowKey {
            dl_type: 0x88b5,
            ..key(in_port, B, m20.to_u64())
        };
        for now in [0, 1] {
            let d = p.decide(&odd(2), 60, now);
            assert_eq!(d.drop_reason(), Some(DropReason::NoRoute));
        }
        assert_eq!(p.mac_table().lookup(20, B), Some(2));
        p.decide(&key(3, B, BCAST), 60, 2);
        assert_eq!(p.mac_table().lookup(20, B), Some(3), "moved");
        p.decide(&odd(2), 60, 3);
        assert_eq!(p.mac_table().lookup(20, B), Some(2), "moved back");
    }

    #[test]
    fn static_routes_go_through_their_next_hop() {
        let (cfg, m10, m20) = routed();
        let mut c = (*cfg).clone();
        c.add_route(
            "10.30.0.0".parse().unwrap(),
            16,
            "10.2.0.2".parse().unwrap(),
        )
        .unwrap();
        let mut p = Pipeline::new(Arc::new(c), 64);
        p.decide(
            &arp(3, B, m20.to_u64(), 2, [10, 2, 0, 2], [10, 2, 0, 254]),
            60,
            0,
        );
        let far = ip_key(1, A, m10.to_u64(), [10, 1, 0, 1], [10, 30, 1, 1]);
        let d = p.decide(&far, 98, 1);
        assert_eq!(d.steps()[1], Step::SetEthDst(EthernetAddress::from_u64(B)));
    }
}

mod coherence {
    use proptest::prelude::*;

    use super::*;
    use crate::flow_spec::parse_flow;

    const MACS: [u64; 4] = [A, B, 0x02_00_00_00_00_0c, 0x02_00_00_00_00_0d];

    #[derive(Debug, Clone)]
    enum Op {
        Packet {
            in_port: PortId,
            src: usize,
            dst: Option<usize>,
            vlan: Option<u16>,
            ip: u8,
        },
        AddRule(String),
        ClearRules,
        SetVlan(PortId, VlanMode),
        RemovePort(PortId),
        AddPort(PortId),
        FlushFdb,
        Tick(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let vlan_mode = prop_oneof![
            Just(VlanMode::All),
            Just(VlanMode::Access(10)),
            Just(VlanMode::Access(20)),
            Just(VlanMode::Trunk {
                allowed: vec![10, 20],
                native: None
            }),
        ];
        let spec = (
            0u8..3,
            1u8..4,
            1u16..4,
            prop_oneof![
                Just("drop".to_owned()),
                Just("normal".to_owned()),
                (1u16..4).prop_map(|p| format!("output:{p}")),
                Just("flood".to_owned()),
            ],
        )
            .prop_map(|(field, ip, prio, action)| {
                let matcher = match field {
                    0 => format!("ip,nw_dst=10.0.0.{ip}"),
                    1 => format!("in_port={}", ip),
                    _ => format!(
                        "dl_dst={}",
                        EthernetAddress::from_u64(MACS[usize::from(ip) % 4])
                    ),
                };
                format!("priority={prio},{matcher},actions={action}")
            });
        // Few hosts, mostly at home, mostly untagged: flows repeat, so cached decisions
        // are actually reused after the changes in between.
        let packet = (
            0usize..4,
            proptest::option::of(0usize..4),
            prop_oneof![9 => Just(None), 1 => (1u16..4).prop_map(Some)],
            prop_oneof![8 => Just(None), 1 => Just(Some(10u16)), 1 => Just(Some(20u16))],
        )
            .prop_map(|(src, dst, moved, vlan)| Op::Packet {
                in_port: moved.unwrap_or(src as u16 % 3 + 1),
                src,
                dst,
                vlan,
                ip: dst.map_or(9, |d| d as u8 + 1),
            });
        prop_oneof![
            30 => packet,
            1 => spec.prop_map(Op::AddRule),
            1 => Just(Op::ClearRules),
            1 => (1u16..4, vlan_mode).prop_map(|(p, m)| Op::SetVlan(p, m)),
            1 => (1u16..4).prop_map(Op::RemovePort),
            1 => (1u16..4).prop_map(Op::AddPort),
            1 => Just(Op::FlushFdb),
            1 => (1u64..3_000_000_000).prop_map(Op::Tick),
        ]
    }

    proptest! {
        /// Whatever happens between packets, the cached pipeline decides exactly what a
        /// pipeline without a cache decides.
        #[test]
        fn cached_decisions_equal_uncached(ops in proptest::collection::vec(op(), 1..200)) {
            let mut cfg = (*three_ports()).clone();
            let mut cached = Pipeline::new(Arc::new(cfg.clone()), 1024);
            let mut reference = Pipeline::new(Arc::new(cfg.clone()), 1024);
            reference.set_caching(false);
            let mut now = 0u64;
            let mut next_rule = 1;
            for op in ops {
                let publish = |cfg: &Config, a: &mut Pipeline, b: &mut Pipeline| {
                    a.set_config(Arc::new(cfg.clone()));
                    b.set_config(Arc::new(cfg.clone()));
                };
                match op {
                    Op::Packet { in_port, src, dst, vlan, ip } => {
                        let mut k = key(in_port, MACS[src], dst.map_or(BCAST, |d| MACS[d]));
                        k.vlan = vlan.map_or(0, |v| crate::key::VLAN_PRESENT | v);
                        k.nw_dst = u128::from(u32::from_be_bytes([10, 0, 0, ip]));
                        now += 1000;
                        let got = cached.decide(&k, 64, now).clone();
                        let want = reference.decide(&k, 64, now).clone();
                        prop_assert_eq!(got.steps(), want.steps());
                        prop_assert_eq!(got.drop_reason(), want.drop_reason());
                        prop_assert_eq!(got.rule(), want.rule());
                    }
                    Op::AddRule(spec) => {
                        let rule = parse_flow(&spec, &|_| None).unwrap().into_rule(next_rule);
                        next_rule += 1;
                        cfg.rules.insert(rule);
                        publish(&cfg, &mut cached, &mut reference);
                    }
                    Op::ClearRules => {
                        cfg.rules.clear();
                        publish(&cfg, &mut cached, &mut reference);
                    }
                    Op::SetVlan(p, mode) => {
                        if let Some(mut port) = cfg.port(p).cloned() {
                            port.vlan = mode;
                            cfg.set_port(port);
                            publish(&cfg, &mut cached, &mut reference);
                        }
                    }
                    Op::RemovePort(p) => {
                        cfg.remove_port(p);
                        publish(&cfg, &mut cached, &mut reference);
                    }
                    Op::AddPort(p) => {
                        if cfg.port(p).is_none() {
                            cfg.set_port(PortConfig {
                                id: p,
                                name: format!("p{p}"),
                                mac: EthernetAddress([2, 0, 0, 0, 0xff, p as u8]),
                                vlan: VlanMode::All,
                                security: Default::default(),
                            });
                            publish(&cfg, &mut cached, &mut reference);
                        }
                    }
                    Op::FlushFdb => {
                        cached.flush_mac_table();
                        reference.flush_mac_table();
                    }
                    Op::Tick(dt) => {
                        now += dt;
                        cached.tick(now);
                        reference.tick(now);
                    }
                }
            }
        }
    }
}
