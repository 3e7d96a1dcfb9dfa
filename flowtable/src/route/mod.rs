//! Routing tables: longest-prefix match over IPv4 and IPv6.
//!
//! [`RouteTable`] holds a table per address family; each is an [`Lpm`], a generic
//! longest-prefix-match map over addresses held in a `u128` (IPv4 in the low 32 bits).
//!
//! # The structure
//! An [`Lpm`] is a multibit trie of stride 8: each node covers one byte of the address and
//! holds the prefixes whose last bit falls in that byte (lengths `8d+1 ..= 8d+8` at depth `d`,
//! plus `/0` at the root). A lookup visits one node per byte and stops at the first byte
//! without a child, so it costs at most 4 node visits for IPv4 whatever the number of routes.
//!
//! The trie is path-compressed: a node exists only where it holds a prefix or where two paths
//! part, and a child records its depth and the bytes above it, which a lookup checks as it
//! enters. Without this, each of 100 000 scattered IPv6 /48s would hang at the end of its
//! own chain of single-child nodes, and a lookup would walk the chain.
//!
//! Within a node, each prefix is expanded over the 256 values of the byte it ends in, longer
//! prefixes over shorter ones; a lookup reads the slot of its byte and remembers the route
//! found there as the best so far, then descends. The expanded array would cost 1 KiB per
//! node, too much for a full table (a BGP table has tens of thousands of /16s holding longer
//! prefixes), so it is stored compressed, as in Poptrie: a 256-bit map marks where the value
//! changes, and the slot of byte `b` is found by counting the marks up to `b` (a `popcount`
//! on one word plus a stored count of the words before). Children are found the same way
//! from a 256-bit map of the bytes that have one. A node with a handful of prefixes takes
//! about 150 bytes.
//!
//! Per-length hash tables searched longest-first were the other candidate: simpler, but a
//! lookup probes every populated length longer than its answer, which in a BGP table with
//! host routes is 10 to 25 hash probes; the trie does a few dependent loads per byte and
//! never hashes.
//!
//! Changes are incremental: inserting or removing a prefix rebuilds the compressed arrays of
//! the node it lives in (256 slots at most) and of the nodes made, split or freed on its
//! path.
//!
//! # Prefixes
//! A prefix must have no bits set beyond its length (`10.0.0.1/24` is an error, as in
//! `ip route`, since the intended network is ambiguous) and a length no longer than the
//! address; both are [`RouteError`]s.

#[cfg(test)]
mod tests;

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::port::PortId;

/// What a route says about packets to its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    /// The gateway to send to; `None` for a directly connected network (send to the
    /// destination itself).
    pub next_hop: Option<IpAddr>,
    /// The port to send out of; `None` to find it from the next hop.
    pub port: Option<PortId>,
}

/// A prefix that cannot be a route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The length is longer than the address.
    #[error("{prefix}/{len}: prefix length is more than {max}")]
    BadLength {
        /// The address given.
        prefix: IpAddr,
        /// The length given.
        len: u8,
        /// 32 or 128.
        max: u8,
    },
    /// Bits are set beyond the length.
    #[error("{prefix}/{len}: host bits set (the network is {network}/{len})")]
    HostBitsSet {
        /// The address given.
        prefix: IpAddr,
        /// The length given.
        len: u8,
        /// The address with the host bits cleared.
        network: IpAddr,
    },
    /// Text that is not `address[/length]`.
    #[error("{0:?}: not an IP prefix (want e.g. 10.0.0.0/24 or 2001:db8::/32)")]
    NotAPrefix(String),
}

/// Parses `address/length`, or a bare address as a host route (/32 or /128).
///
/// # Errors
/// [`RouteError::NotAPrefix`] if the text does not parse, and the errors of
/// [`Lpm::insert`] for a bad length or host bits.
pub fn parse_prefix(text: &str) -> Result<(IpAddr, u8), RouteError> {
    let bad = || RouteError::NotAPrefix(text.to_string());
    let (addr, len) = match text.split_once('/') {
        Some((addr, len)) if !len.is_empty() && len.bytes().all(|c| c.is_ascii_digit()) => {
            (addr, Some(len.parse::<u8>().map_err(|_| bad())?))
        }
        Some(_) => return Err(bad()),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    check_prefix(to_bits(addr), len, max)?;
    Ok((addr, len))
}

fn to_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u32::from(a).into(),
        IpAddr::V6(a) => a.into(),
    }
}

fn from_bits(bits: u128, width: u8) -> IpAddr {
    if width == 32 {
        IpAddr::V4(Ipv4Addr::from(bits as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(bits))
    }
}

/// The mask of the first `len` of `width` bits.
fn prefix_mask(len: u8, width: u8) -> u128 {
    if len == 0 {
        0
    } else {
        (u128::MAX << (128 - u32::from(len))) >> (128 - u32::from(width))
    }
}

fn check_prefix(prefix: u128, len: u8, width: u8) -> Result<(), RouteError> {
    let addr = from_bits(prefix, width);
    if len > width {
        return Err(RouteError::BadLength {
            prefix: addr,
            len,
            max: width,
        });
    }
    let network = prefix & prefix_mask(len, width);
    if network != prefix {
        return Err(RouteError::HostBitsSet {
            prefix: addr,
            len,
            network: from_bits(network, width),
        });
    }
    Ok(())
}

/// A routing table for both families, by destination address.
///
/// # Examples
/// ```
/// use flowtable::route::{Route, RouteTable, parse_prefix};
///
/// let mut table = RouteTable::new();
/// let (prefix, len) = parse_prefix("10.1.0.0/16")?;
/// table.insert(prefix, len, Route { next_hop: None, port: Some(2) })?;
/// let (prefix, len) = parse_prefix("0.0.0.0/0")?;
/// let gateway = "10.1.0.1".parse().ok();
/// table.insert(prefix, len, Route { next_hop: gateway, port: None })?;
///
/// let (net, len, route) = table.lookup("10.1.2.3".parse().unwrap()).unwrap();
/// assert_eq!((net.to_string(), len, route.port), ("10.1.0.0".to_string(), 16, Some(2)));
/// assert_eq!(table.lookup("8.8.8.8".parse().unwrap()).unwrap().2.next_hop, gateway);
/// # Ok::<(), flowtable::route::RouteError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RouteTable<V = Route> {
    v4: Lpm<V>,
    v6: Lpm<V>,
}

impl<V> Default for RouteTable<V> {
    fn default() -> Self {
        RouteTable::new()
    }
}

impl<V> RouteTable<V> {
    /// An empty table.
    pub fn new() -> RouteTable<V> {
        RouteTable {
            v4: Lpm::ipv4(),
            v6: Lpm::ipv6(),
        }
    }

    fn family(&self, addr: IpAddr) -> &Lpm<V> {
        if addr.is_ipv4() { &self.v4 } else { &self.v6 }
    }

    fn family_mut(&mut self, addr: IpAddr) -> &mut Lpm<V> {
        if addr.is_ipv4() {
            &mut self.v4
        } else {
            &mut self.v6
        }
    }

    /// Adds or replaces the route of `prefix/len`; returns the one replaced.
    ///
    /// # Errors
    /// If `len` is longer than the address or `prefix` has host bits set.
    pub fn insert(&mut self, prefix: IpAddr, len: u8, route: V) -> Result<Option<V>, RouteError> {
        self.family_mut(prefix).insert(to_bits(prefix), len, route)
    }

    /// Removes the route of exactly `prefix/len`; returns it.
    ///
    /// # Errors
    /// As [`RouteTable::insert`].
    pub fn remove(&mut self, prefix: IpAddr, len: u8) -> Result<Option<V>, RouteError> {
        self.family_mut(prefix).remove(to_bits(prefix), len)
    }

    /// The route of exactly `prefix/len`.
    pub fn get(&self, prefix: IpAddr, len: u8) -> Option<&V> {
        self.family(prefix).get(to_bits(prefix), len)
    }

    /// The route of the longest prefix containing `addr`, with that prefix.
    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> Option<(IpAddr, u8, &V)> {
        let lpm = self.family(addr);
        lpm.lookup(to_bits(addr))
            .map(|(prefix, len, v)| (from_bits(prefix, lpm.width()), len, v))
    }

    /// Every route: IPv4 then IPv6, each by address then length.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, u8, &V)> {
        let v4 = self.v4.iter().map(|(p, l, v)| (from_bits(p, 32), l, v));
        let v6 = self.v6.iter().map(|(p, l, v)| (from_bits(p, 128), l, v));
        v4.chain(v6)
    }

    /// The IPv4 table.
    pub fn ipv4(&self) -> &Lpm<V> {
        &self.v4
    }

    /// The IPv6 table.
    pub fn ipv6(&self) -> &Lpm<V> {
        &self.v6
    }

    /// The number of routes.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every route.
    pub fn clear(&mut self) {
        self.v4.clear();
        self.v6.clear();
    }
}

/// No route / no node.
const NONE: u32 = u32::MAX;

/// A 256-bit map with a rank operation (set bits at or below a position).
#[derive(Debug, Clone, Copy, Default)]
struct Bitmap {
    words: [u64; 4],
    /// Set bits in the words before each word (at most 192, so a byte is enough).
    before: [u8; 4],
}

impl Bitmap {
    fn from_positions(positions: impl Iterator<Item = usize>) -> Bitmap {
        let mut map = Bitmap::default();
        for i in positions {
            map.words[i / 64] |= 1 << (i % 64);
        }
        let mut total = 0;
        for w in 0..4 {
            map.before[w] = total;
            // At most 192 before the last word; the last word's own bits are not stored.
            total = total.saturating_add(map.words[w].count_ones() as u8);
        }
        map
    }

    #[inline]
    fn get(&self, i: u8) -> bool {
        self.words[usize::from(i >> 6)] & (1 << (i & 63)) != 0
    }

    /// The number of set bits at positions `0..=i`.
    #[inline]
    fn rank(&self, i: u8) -> usize {
        let w = usize::from(i >> 6);
        let below_and_at = self.words[w] & (u64::MAX >> (63 - (i & 63)));
        usize::from(self.before[w]) + below_and_at.count_ones() as usize
    }
}

/// One byte of the address.
#[derive(Debug, Clone, Default)]
struct Node {
    /// The address bits above this node's byte (the path from the root), zero below.
    key: u128,
    /// Which byte of the address this node covers (0 is the most significant).
    depth: u8,
    /// Bytes that have a child node.
    child_map: Bitmap,
    /// Bytes where the expanded best-route array changes value (byte 0 always).
    leaf_map: Bitmap,
    /// How many leading entries of `table` are leaves.
    leaf_count: u16,
    /// The best route (an entry index, or `NONE`) of each run of `leaf_map`, then the child
    /// node index of each byte of `child_map`.
    table: Box<[u32]>,
    /// The prefixes ending in this byte: (length within the byte 0..=8, their leading bits
    /// of the byte, entry index), sorted by length then bits.
    prefixes: Vec<(u8, u8, u32)>,
}

impl Node {
    fn new(depth: u8, key: u128) -> Node {
        let mut node = Node {
            depth,
            key,
            ..Node::default()
        };
        node.rebuild(&[]);
        node
    }

    #[inline]
    fn leaf(&self, byte: u8) -> u32 {
        self.table[self.leaf_map.rank(byte) - 1]
    }

    #[inline]
    fn child(&self, byte: u8) -> Option<u32> {
        self.child_map
            .get(byte)
            .then(|| self.table[usize::from(self.leaf_count) + self.child_map.rank(byte) - 1])
    }

    fn children(&self) -> Vec<(u8, u32)> {
        (0..=255u8)
            .filter_map(|b| self.child(b).map(|c| (b, c)))
            .collect()
    }

    /// Recomputes the compressed arrays from `prefixes` and `children` (sorted by byte).
    fn rebuild(&mut self, children: &[(u8, u32)]) {
        let mut expanded = [NONE; 256];
        // Sorted by length: longer prefixes overwrite the shorter ones they lie in.
        for &(len, bits, entry) in &self.prefixes {
            let span = 1usize << (8 - len);
            let start = if len == 0 {
                0
            } else {
                usize::from(bits) << (8 - len)
            };
            expanded[start..start + span].fill(entry);
        }
        self.leaf_map =
            Bitmap::from_positions((0..256).filter(|&i| i == 0 || expanded[i] != expanded[i - 1]));
        self.child_map = Bitmap::from_positions(children.iter().map(|&(b, _)| usize::from(b)));
        let mut table: Vec<u32> = (0..256)
            .filter(|&i| self.leaf_map.get(i as u8))
            .map(|i| expanded[i])
            .collect();
        self.leaf_count = table.len() as u16;
        table.extend(children.iter().map(|&(_, c)| c));
        self.table = table.into_boxed_slice();
    }
}

#[derive(Debug, Clone)]
struct Entry<V> {
    prefix: u128,
    len: u8,
    value: V,
}

/// A longest-prefix-match map from prefixes of 32-bit (IPv4) or 128-bit (IPv6) addresses,
/// held in a `u128`, to values of type `V`. See the [module docs](self) for the structure.
#[derive(Debug, Clone)]
pub struct Lpm<V> {
    width: u8,
    /// Node 0 is the root, which always exists.
    nodes: Vec<Node>,
    free_nodes: Vec<u32>,
    entries: Vec<Option<Entry<V>>>,
    free_entries: Vec<u32>,
    len: usize,
}

impl<V> Lpm<V> {
    /// An empty table of IPv4 prefixes (addresses in the low 32 bits).
    pub fn ipv4() -> Lpm<V> {
        Lpm::with_width(32)
    }

    /// An empty table of IPv6 prefixes.
    pub fn ipv6() -> Lpm<V> {
        Lpm::with_width(128)
    }

    fn with_width(width: u8) -> Lpm<V> {
        Lpm {
            width,
            nodes: vec![Node::new(0, 0)],
            free_nodes: Vec::new(),
            entries: Vec::new(),
            free_entries: Vec::new(),
            len: 0,
        }
    }

    /// The address width in bits: 32 or 128.
    pub fn width(&self) -> u8 {
        self.width
    }

    /// The number of prefixes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no prefixes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes every prefix.
    pub fn clear(&mut self) {
        *self = Lpm::with_width(self.width);
    }

    /// The byte of `addr` at `depth` (0 is the most significant).
    #[inline]
    fn byte(&self, addr: u128, depth: u8) -> u8 {
        (addr >> (u32::from(self.width) - 8 * (u32::from(depth) + 1))) as u8
    }

    /// Whether `addr` lies on the path to `node`: its bytes above the node's are the node's.
    #[inline]
    fn on_path(&self, addr: u128, node: &Node) -> bool {
        // A node below the root has depth 1 or more, so the shift is less than the width.
        (addr ^ node.key) >> (u32::from(self.width) - 8 * u32::from(node.depth)) == 0
    }

    /// The first `depth` bytes of `addr`, zero below.
    fn path(&self, addr: u128, depth: u8) -> u128 {
        addr & prefix_mask(8 * depth, self.width)
    }

    /// The depth of the node a prefix of `len` lives in, its length within that node's byte
    /// and its leading bits there.
    fn place(&self, prefix: u128, len: u8) -> (u8, u8, u8) {
        if len == 0 {
            return (0, 0, 0);
        }
        let depth = (len - 1) / 8;
        let local = len - 8 * depth;
        (depth, local, self.byte(prefix, depth) >> (8 - local))
    }

    /// The longest prefix containing `addr`, and its value.
    #[inline]
    pub fn lookup(&self, addr: u128) -> Option<(u128, u8, &V)> {
        let mut node = &self.nodes[0];
        let mut best = NONE;
        loop {
            let byte = self.byte(addr, node.depth);
            let leaf = node.leaf(byte);
            if leaf != NONE {
                best = leaf;
            }
            let Some(child) = node.child(byte) else {
                break;
            };
            let child = &self.nodes[child as usize];
            // The child may sit several bytes down (path compression); the bytes it skips
            // must be ours too, or nothing below it contains `addr`.
            if !self.on_path(addr, child) {
                break;
            }
            node = child;
        }
        let entry = self.entries.get(best as usize)?.as_ref()?;
        Some((entry.prefix, entry.len, &entry.value))
    }

    /// The node of depth `depth` on the path to `prefix`, with the (node, byte) steps taken
    /// to reach it, if there is one.
    fn find_node(&self, prefix: u128, depth: u8) -> Option<(usize, Vec<(usize, u8)>)> {
        let mut steps = Vec::new();
        let mut node = 0usize;
        while self.nodes[node].depth < depth {
            let byte = self.byte(prefix, self.nodes[node].depth);
            let child = self.nodes[node].child(byte)? as usize;
            let c = &self.nodes[child];
            if c.depth > depth || !self.on_path(prefix, c) {
                return None;
            }
            steps.push((node, byte));
            node = child;
        }
        Some((node, steps))
    }

    /// The value of exactly `prefix/len`.
    pub fn get(&self, prefix: u128, len: u8) -> Option<&V> {
        let (depth, local, bits) = self.place(prefix, len);
        let (node, _) = self.find_node(prefix, depth)?;
        let &(_, _, entry) = self.nodes[node]
            .prefixes
            .iter()
            .find(|&&(l, b, _)| (l, b) == (local, bits))?;
        Some(&self.entries[entry as usize].as_ref()?.value)
    }

    /// Adds or replaces the value of `prefix/len`; returns the one replaced.
    ///
    /// # Errors
    /// [`RouteError::BadLength`] if `len` is longer than the address,
    /// [`RouteError::HostBitsSet`] if `prefix` has bits set beyond `len`.
    pub fn insert(&mut self, prefix: u128, len: u8, value: V) -> Result<Option<V>, RouteError> {
        check_prefix(prefix, len, self.width)?;
        let (depth, local, bits) = self.place(prefix, len);
        let node = self.make_node(prefix, depth);
        let prefixes = &self.nodes[node].prefixes;
        if let Some(&(_, _, entry)) = prefixes.iter().find(|&&(l, b, _)| (l, b) == (local, bits)) {
            let slot = self.entries[entry as usize]
                .as_mut()
                .expect("indexed entry exists");
            return Ok(Some(core::mem::replace(&mut slot.value, value)));
        }
        let entry = self.alloc_entry(Entry { prefix, len, value });
        let n = &mut self.nodes[node];
        let at = n
            .prefixes
            .partition_point(|&(l, b, _)| (l, b) < (local, bits));
        n.prefixes.insert(at, (local, bits, entry));
        let children = n.children();
        n.rebuild(&children);
        self.len += 1;
        Ok(None)
    }

    /// The node of depth `depth` on the path to `prefix`, made if missing. Missing nodes
    /// between are not made: a child hangs directly below the deepest node it shares a path
    /// with, and a node is put in between only where two paths part.
    fn make_node(&mut self, prefix: u128, depth: u8) -> usize {
        let mut node = 0usize;
        while self.nodes[node].depth < depth {
            let at = self.nodes[node].depth;
            let byte = self.byte(prefix, at);
            let Some(child) = self.nodes[node].child(byte) else {
                let child = self.alloc_node(depth, self.path(prefix, depth));
                self.set_child(node, byte, Some(child));
                return child as usize;
            };
            let (child_depth, child_key) = {
                let c = &self.nodes[child as usize];
                (c.depth, c.key)
            };
            // How far down `prefix` follows the child's path (at most to the child's depth).
            let mut split = at + 1;
            while split < child_depth.min(depth)
                && self.byte(prefix, split) == self.byte(child_key, split)
            {
                split += 1;
            }
            if split == child_depth {
                node = child as usize;
                continue;
            }
            // The paths part (or `prefix` ends) above the child: put a node there.
            let middle = self.alloc_node(split, self.path(prefix, split));
            self.set_child(middle as usize, self.byte(child_key, split), Some(child));
            self.set_child(node, byte, Some(middle));
            node = middle as usize;
        }
        node
    }

    /// Sets (or with `None` clears) the child of `node` at `byte`.
    fn set_child(&mut self, node: usize, byte: u8, child: Option<u32>) {
        let n = &mut self.nodes[node];
        let mut children = n.children();
        let at = children.partition_point(|&(b, _)| b < byte);
        match (children.get(at), child) {
            (Some(&(b, _)), Some(c)) if b == byte => children[at].1 = c,
            (_, Some(c)) => children.insert(at, (byte, c)),
            (Some(&(b, _)), None) if b == byte => {
                children.remove(at);
            }
            (_, None) => {}
        }
        n.rebuild(&children);
    }

    /// Removes `prefix/len`; returns its value.
    ///
    /// # Errors
    /// As [`Lpm::insert`].
    pub fn remove(&mut self, prefix: u128, len: u8) -> Result<Option<V>, RouteError> {
        check_prefix(prefix, len, self.width)?;
        let (depth, local, bits) = self.place(prefix, len);
        let Some((mut node, mut steps)) = self.find_node(prefix, depth) else {
            return Ok(None);
        };
        let n = &mut self.nodes[node];
        let Some(at) = n
            .prefixes
            .iter()
            .position(|&(l, b, _)| (l, b) == (local, bits))
        else {
            return Ok(None);
        };
        let (_, _, entry) = n.prefixes.remove(at);
        let children = n.children();
        n.rebuild(&children);
        self.len -= 1;
        let removed = self.entries[entry as usize]
            .take()
            .expect("indexed entry exists");
        self.free_entries.push(entry);
        // Free nodes left with nothing, and splice out those left as mere links.
        while let Some((parent, byte)) = steps.pop() {
            if !self.nodes[node].prefixes.is_empty() {
                break;
            }
            match self.nodes[node].children().as_slice() {
                [] => {
                    self.set_child(parent, byte, None);
                    self.free_node(node);
                    node = parent;
                }
                &[(_, only)] => {
                    self.set_child(parent, byte, Some(only));
                    self.free_node(node);
                    break;
                }
                _ => break,
            }
        }
        Ok(Some(removed.value))
    }

    /// Every prefix with its value, by address then length.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (u128, u8, &V)> {
        let mut all: Vec<(u128, u8, &V)> = self
            .entries
            .iter()
            .flatten()
            .map(|e| (e.prefix, e.len, &e.value))
            .collect();
        all.sort_unstable_by_key(|&(p, l, _)| (p, l));
        all.into_iter()
    }

    fn alloc_node(&mut self, depth: u8, key: u128) -> u32 {
        let node = Node::new(depth, key);
        match self.free_nodes.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn free_node(&mut self, node: usize) {
        self.nodes[node] = Node::default();
        self.free_nodes.push(node as u32);
    }

    fn alloc_entry(&mut self, entry: Entry<V>) -> u32 {
        match self.free_entries.pop() {
            Some(i) => {
                self.entries[i as usize] = Some(entry);
                i
            }
            None => {
                self.entries.push(Some(entry));
                (self.entries.len() - 1) as u32
            }
        }
    }
}
