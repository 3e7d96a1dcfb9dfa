//! Tests of the routing tables, and of the trie held against a linear scan.

use proptest::prelude::*;

use super::*;

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn route(port: PortId) -> Route {
    Route {
        next_hop: None,
        port: Some(port),
    }
}

#[test]
fn longest_prefix_wins() {
    let mut t = RouteTable::new();
    t.insert(v4("0.0.0.0"), 0, route(1)).unwrap();
    t.insert(v4("10.0.0.0"), 8, route(2)).unwrap();
    t.insert(v4("10.1.0.0"), 16, route(3)).unwrap();
    t.insert(v4("10.1.2.0"), 23, route(4)).unwrap();
    t.insert(v4("10.1.2.3"), 32, route(5)).unwrap();
    fn port(t: &RouteTable, a: &str) -> Option<PortId> {
        t.lookup(v4(a)).and_then(|(_, _, r)| r.port)
    }
    assert_eq!(port(&t, "192.168.0.1"), Some(1));
    assert_eq!(port(&t, "10.200.0.1"), Some(2));
    assert_eq!(port(&t, "10.1.200.1"), Some(3));
    assert_eq!(port(&t, "10.1.3.9"), Some(4));
    assert_eq!(port(&t, "10.1.2.3"), Some(5));
    assert_eq!(port(&t, "10.1.2.4"), Some(4));
    assert_eq!(
        t.lookup(v4("10.1.3.9")).map(|(p, l, _)| (p, l)),
        Some((v4("10.1.2.0"), 23))
    );
    assert_eq!(t.len(), 5);

    assert_eq!(t.remove(v4("10.1.2.0"), 23), Ok(Some(route(4))));
    assert_eq!(t.remove(v4("10.1.2.0"), 23), Ok(None));
    assert_eq!(port(&t, "10.1.3.9"), Some(3));
    assert_eq!(port(&t, "10.1.2.3"), Some(5));
    assert_eq!(t.remove(v4("0.0.0.0"), 0), Ok(Some(route(1))));
    assert_eq!(port(&t, "192.168.0.1"), None);
    assert_eq!(t.insert(v4("10.0.0.0"), 8, route(9)), Ok(Some(route(2))));
    assert_eq!(port(&t, "10.200.0.1"), Some(9));
    let listed: Vec<(IpAddr, u8)> = t.iter().map(|(p, l, _)| (p, l)).collect();
    assert_eq!(
        listed,
        [
            (v4("10.0.0.0"), 8),
            (v4("10.1.0.0"), 16),
            (v4("10.1.2.3"), 32)
        ]
    );
}

#[test]
fn families_are_separate() {
    let mut t = RouteTable::new();
    t.insert(v4("::"), 0, route(6)).unwrap();
    t.insert(v4("2001:db8::"), 32, route(7)).unwrap();
    t.insert(v4("2001:db8:0:1::"), 64, route(8)).unwrap();
    assert_eq!(t.lookup(v4("10.0.0.1")), None);
    assert_eq!(
        t.lookup(v4("2001:db8:0:1::5")).map(|(_, _, r)| r.port),
        Some(Some(8))
    );
    assert_eq!(
        t.lookup(v4("2001:db8:0:2::5")).map(|(_, _, r)| r.port),
        Some(Some(7))
    );
    assert_eq!(t.lookup(v4("fe80::1")).map(|(_, l, _)| l), Some(0));
    assert_eq!(t.get(v4("2001:db8::"), 32).and_then(|r| r.port), Some(7));
    assert_eq!(t.ipv6().len(), 3);
    assert!(t.ipv4().is_empty());
    t.clear();
    assert!(t.is_empty());
}

#[test]
fn bad_prefixes_are_errors() {
    let mut t = RouteTable::new();
    assert_eq!(
        t.insert(v4("10.0.0.1"), 24, route(1))
            .unwrap_err()
            .to_string(),
        "10.0.0.1/24: host bits set (the network is 10.0.0.0/24)"
    );
    assert_eq!(
        t.insert(v4("10.0.0.0"), 33, route(1))
            .unwrap_err()
            .to_string(),
        "10.0.0.0/33: prefix length is more than 32"
    );
    assert!(matches!(
        t.remove(v4("2001:db8::1"), 32),
        Err(RouteError::HostBitsSet { .. })
    ));
    assert_eq!(parse_prefix("10.0.0.0/24"), Ok((v4("10.0.0.0"), 24)));
    assert_eq!(parse_prefix("10.0.0.7"), Ok((v4("10.0.0.7"), 32)));
    assert_eq!(parse_prefix("2001:db8::/32"), Ok((v4("2001:db8::"), 32)));
    assert!(matches!(
        parse_prefix("10.0.0.1/8"),
        Err(RouteError::HostBitsSet { .. })
    ));
    assert!(matches!(
        parse_prefix("10.0.0.0/"),
        Err(RouteError::NotAPrefix(_))
    ));
    assert!(matches!(
        parse_prefix("10.0.0.0/300"),
        Err(RouteError::NotAPrefix(_))
    ));
    assert!(matches!(
        parse_prefix("a.b/8"),
        Err(RouteError::NotAPrefix(_))
    ));
    assert!(t.is_empty());
}

#[test]
fn removing_frees_nodes_for_reuse() {
    let mut t: Lpm<u32> = Lpm::ipv4();
    for i in 0..1000u32 {
        t.insert(u128::from(i << 8), 24, i).unwrap();
    }
    let nodes = t.nodes.len();
    for i in 0..1000u32 {
        assert_eq!(t.remove(u128::from(i << 8), 24), Ok(Some(i)));
    }
    assert!(t.is_empty());
    assert_eq!(t.free_nodes.len(), nodes - 1);
    for i in 0..1000u32 {
        t.insert(u128::from(i << 8), 24, i).unwrap();
    }
    assert_eq!(t.nodes.len(), nodes);
    assert_eq!(t.lookup(0x0001_0203).map(|(_, _, v)| *v), Some(0x102));
}

/// The reference: prefixes in a list, scanned linearly.
struct Naive {
    width: u8,
    routes: Vec<(u128, u8, u32)>,
}

impl Naive {
    fn lookup(&self, addr: u128) -> Option<(u128, u8, u32)> {
        self.routes
            .iter()
            .filter(|&&(p, l, _)| addr & prefix_mask(l, self.width) == p)
            .max_by_key(|&&(_, l, _)| l)
            .copied()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u128, u8, u32),
    Remove(u128, u8),
}

/// Prefixes and addresses near a few bases, so that they nest and overlap.
fn near(width: u8) -> impl Strategy<Value = u128> {
    let top = prefix_mask(width, width);
    (0usize..4, any::<u128>(), 0u8..=width).prop_map(move |(base, noise, keep)| {
        let bases = [
            0x0a01_0203_u128 << (width - 32),
            top,
            0,
            0x0a01_ff00 << (width - 32),
        ];
        // Keep the base's leading bits, randomise the rest.
        let m = prefix_mask(keep, width);
        (bases[base] & m) | (noise & !m & top)
    })
}

fn ops(width: u8) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => (near(width), 0u8..=width, any::<u32>()).prop_map(move |(p, l, v)| {
            Op::Insert(p & prefix_mask(l, width), l, v)
        }),
        1 => (near(width), 0u8..=width).prop_map(move |(p, l)| {
            Op::Remove(p & prefix_mask(l, width), l)
        }),
    ];
    prop::collection::vec(op, 0..80)
}

/// Every node is reachable once or free; every node but the root holds a prefix or
/// parts two paths; children lie below their parent on its path.
fn check_shape<V>(lpm: &Lpm<V>) -> Result<(), TestCaseError> {
    let mut seen = vec![false; lpm.nodes.len()];
    let mut stack = vec![0usize];
    while let Some(i) = stack.pop() {
        prop_assert!(!seen[i], "node {} reached twice", i);
        seen[i] = true;
        let node = &lpm.nodes[i];
        let children = node.children();
        if i != 0 {
            prop_assert!(
                !node.prefixes.is_empty() || children.len() >= 2,
                "idle node {}",
                i
            );
        }
        for (byte, c) in children {
            let child = &lpm.nodes[c as usize];
            prop_assert!(child.depth > node.depth);
            prop_assert_eq!(lpm.byte(child.key, node.depth), byte);
            prop_assert_eq!(lpm.path(child.key, node.depth), node.key);
            stack.push(c as usize);
        }
    }
    for &f in &lpm.free_nodes {
        prop_assert!(!seen[f as usize], "free node {} is reachable", f);
        seen[f as usize] = true;
    }
    prop_assert!(seen.iter().all(|&s| s), "a node leaked");
    Ok(())
}

fn run(width: u8, ops: &[Op], addrs: &[u128]) -> Result<(), TestCaseError> {
    let mut lpm = if width == 32 {
        Lpm::ipv4()
    } else {
        Lpm::ipv6()
    };
    let mut naive = Naive {
        width,
        routes: Vec::new(),
    };
    for op in ops {
        match *op {
            Op::Insert(p, l, v) => {
                let old = naive.routes.iter().position(|&(q, m, _)| (q, m) == (p, l));
                let old = old.map(|i| naive.routes.remove(i).2);
                naive.routes.push((p, l, v));
                prop_assert_eq!(lpm.insert(p, l, v), Ok(old));
            }
            Op::Remove(p, l) => {
                let old = naive.routes.iter().position(|&(q, m, _)| (q, m) == (p, l));
                let old = old.map(|i| naive.routes.remove(i).2);
                prop_assert_eq!(lpm.remove(p, l), Ok(old));
            }
        }
        for &a in addrs {
            let got = lpm.lookup(a).map(|(p, l, v)| (p, l, *v));
            prop_assert_eq!(got, naive.lookup(a), "address {:x}", a);
        }
        check_shape(&lpm)?;
    }
    for &(p, l, v) in &naive.routes {
        prop_assert_eq!(lpm.get(p, l), Some(&v));
    }
    prop_assert_eq!(lpm.len(), naive.routes.len());
    let mut listed: Vec<(u128, u8, u32)> = lpm.iter().map(|(p, l, v)| (p, l, *v)).collect();
    naive.routes.sort_unstable();
    listed.sort_unstable();
    prop_assert_eq!(listed, naive.routes);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn ipv4_same_as_linear_scan(ops in ops(32), addrs in prop::collection::vec(near(32), 1..20)) {
        run(32, &ops, &addrs)?;
    }

    #[test]
    fn ipv6_same_as_linear_scan(ops in ops(128), addrs in prop::collection::vec(near(128), 1..20)) {
        run(128, &ops, &addrs)?;
    }
}
