//! Benchmarks of the flowtable hot paths: classifier lookups, the flow cache, route lookups
//! and flow key extraction.
//!
//! Every table is built from a fixed-seed generator, so each run measures the same tables.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use flowtable::action::Decision;
use flowtable::cache::FlowCache;
use flowtable::classifier::Classifier;
use flowtable::key::FlowKey;
use flowtable::route::{Route, RouteTable};
use flowtable::rule::{Action, Match, Rule};

/// xorshift64*: deterministic and good enough to spread keys.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Packets cycled through by a lookup bench (a power of two).
const PACKETS: usize = 1024;

fn random_packet(rng: &mut Rng) -> FlowKey {
    FlowKey {
        in_port: rng.below(8) as u16 + 1,
        dl_type: 0x0800,
        nw_proto: if rng.below(2) == 0 { 6 } else { 17 },
        nw_ttl: 64,
        dl_src: rng.next() & 0x0000_feff_ffff_ffff,
        dl_dst: rng.next() & 0x0000_feff_ffff_ffff,
        nw_src: u128::from(rng.next() as u32),
        nw_dst: u128::from(rng.next() as u32),
        tp_src: rng.next() as u16,
        tp_dst: rng.below(1024) as u16,
        ..FlowKey::default()
    }
}

/// Mask `i` of up to 32 distinct ones: IP and protocol always, a destination prefix of
/// /32 down to /17, and the destination port on half of them.
fn mask(i: usize) -> FlowKey {
    let len = 32 - (i % 16) as u32;
    FlowKey {
        dl_type: 0xffff,
        nw_proto: 0xff,
        nw_dst: u128::from(u32::MAX << (32 - len)),
        tp_dst: if (i / 16) % 2 == 1 { 0xffff } else { 0 },
        ..FlowKey::default()
    }
}

/// `rules` rules spread over `masks` masks (at most `rules` of them), made from random
/// packets, and packets that hit them.
fn classifier(rules: usize, masks: usize) -> (Classifier, Vec<FlowKey>) {
    let mut rng = Rng(0x5eed_0000 + (rules * 64 + masks) as u64);
    let mut c = Classifier::new();
    let mut origins = Vec::with_capacity(rules);
    for id in 0..rules {
        let packet = random_packet(&mut rng);
        origins.push(packet);
        c.insert(Rule {
            table: 0,
            id: id as u32,
            priority: rng.below(1000) as u16,
            pattern: Match::new(packet, mask(id % masks)),
            actions: vec![Action::Output(2)],
        });
    }
    let packets = (0..PACKETS)
        .map(|i| origins[(i * 7919) % origins.len()])
        .collect();
    (c, packets)
}

fn classify(crit: &mut Criterion) {
    for (rules, rules_name) in [(10, "10"), (1_000, "1k"), (10_000, "10k")] {
        for masks in [1, 8, 32] {
            let (c, packets) = classifier(rules, masks);
            assert!(packets.iter().all(|p| c.lookup(p).is_some()));
            let mut i = 0;
            crit.bench_function(&format!("classify_{rules_name}_rules_{masks}_masks"), |b| {
                b.iter(|| {
                    i = (i + 1) & (PACKETS - 1);
                    c.lookup(black_box(&packets[i])).map(|r| r.id)
                })
            });
        }
    }
}

fn cache_hit(crit: &mut Criterion) {
    let mut rng = Rng(0xcac4e);
    let mut cache = FlowCache::new(4096);
    let keys: Vec<FlowKey> = (0..PACKETS).map(|_| random_packet(&mut rng)).collect();
    for k in &keys {
        cache.insert(*k, Decision::output(2, None), 0);
    }
    let present: Vec<FlowKey> = keys
        .into_iter()
        .filter(|k| cache.get(k, 0).is_some())
        .collect();
    let mut i = 0;
    let mut now = 0;
    crit.bench_function("cache_hit", |b| {
        b.iter(|| {
            i = (i + 1) % present.len();
            now += 1;
            cache
                .get(black_box(&present[i]), now)
                .map(|d| d.steps().len())
        })
    });
}

/// A table shaped like a BGP feed: about 60 % /24s, 25 % /17–/23, 15 % /8–/16, plus a
/// default route; and addresses inside its prefixes.
fn ipv4_routes(count: usize) -> (RouteTable, Vec<IpAddr>) {
    let mut rng = Rng(0xb69_0000 + count as u64);
    let mut table = RouteTable::new();
    let route = Route {
        next_hop: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
        port: Some(2),
    };
    table
        .insert(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, route)
        .unwrap();
    let mut prefixes = Vec::with_capacity(count);
    while table.len() < count {
        let len = match rng.below(100) {
            0..60 => 24,
            60..85 => 17 + rng.below(7) as u32,
            _ => 8 + rng.below(9) as u32,
        };
        let addr = (rng.next() as u32) & (u32::MAX << (32 - len));
        let prefix = IpAddr::V4(Ipv4Addr::from(addr));
        if table.insert(prefix, len as u8, route).unwrap().is_none() {
            prefixes.push((addr, len));
        }
    }
    let addrs = (0..PACKETS)
        .map(|_| {
            let (addr, len) = prefixes[rng.below(prefixes.len() as u64) as usize];
            let host = (rng.next() as u32) & !(u32::MAX << (32 - len));
            IpAddr::V4(Ipv4Addr::from(addr | host))
        })
        .collect();
    (table, addrs)
}

/// IPv6 in the same spirit: /32 to /48 under 2000::/3, some /64s.
fn ipv6_routes(count: usize) -> (RouteTable, Vec<IpAddr>) {
    let mut rng = Rng(0x6b69_0000 + count as u64);
    let mut table = RouteTable::new();
    let route = Route {
        next_hop: None,
        port: Some(3),
    };
    let mut prefixes = Vec::with_capacity(count);
    while table.len() < count {
        let len = match rng.below(100) {
            0..50 => 48,
            50..80 => 32 + rng.below(16) as u32,
            _ => 64,
        };
        let random = (u128::from(rng.next()) << 64) | u128::from(rng.next());
        let addr = ((random >> 3) | (1 << 125)) & (u128::MAX << (128 - len));
        let prefix = IpAddr::V6(Ipv6Addr::from(addr));
        if table.insert(prefix, len as u8, route).unwrap().is_none() {
            prefixes.push((addr, len));
        }
    }
    let addrs = (0..PACKETS)
        .map(|_| {
            let (addr, len) = prefixes[rng.below(prefixes.len() as u64) as usize];
            let host = u128::from(rng.next()) & !(u128::MAX << (128 - len));
            IpAddr::V6(Ipv6Addr::from(addr | host))
        })
        .collect();
    (table, addrs)
}

fn lpm_lookup(crit: &mut Criterion) {
    for (name, (table, addrs)) in [
        ("lpm_lookup_1k_routes", ipv4_routes(1_000)),
        ("lpm_lookup_100k_routes", ipv4_routes(100_000)),
        ("lpm_lookup_v6_100k_routes", ipv6_routes(100_000)),
    ] {
        assert!(addrs.iter().all(|a| table.lookup(*a).is_some()));
        let mut i = 0;
        crit.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) & (PACKETS - 1);
                table.lookup(black_box(addrs[i])).map(|(_, len, _)| len)
            })
        });
    }
}

/// 02:..:01 -> 02:..:02, IPv4 10.0.0.1:1000 -> 10.0.0.2:2000 UDP, 22 bytes of payload.
static UDP_FRAME_64: [u8; 64] = [
    2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, // ethernet
    0x45, 0, 0, 50, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // ipv4
    0x03, 0xe8, 0x07, 0xd0, 0, 30, 0, 0, // udp
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, // payload
];

fn flow_key_extract(crit: &mut Criterion) {
    let (key, _) = FlowKey::extract(&UDP_FRAME_64, 1).unwrap();
    assert_eq!((key.tp_src, key.tp_dst), (1000, 2000));
    crit.bench_function("flow_key_extract_64b", |b| {
        b.iter(|| FlowKey::extract(black_box(&UDP_FRAME_64), 1))
    });
}

criterion_group!(benches, classify, cache_hit, lpm_lookup, flow_key_extract);
criterion_main!(benches);
