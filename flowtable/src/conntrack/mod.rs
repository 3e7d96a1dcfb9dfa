//! A sans-IO connection tracker: what backs OpenFlow's `ct(commit,zone=N)` action and the
//! `ct_state`, `ct_zone` and `ct_mark` matches, after OVS's userspace conntrack
//! (`lib/conntrack.c`, `conntrack-tcp.c`, `conntrack-other.c`, `conntrack-icmp.c`).
//!
//! The caller turns a frame into a [`CtPacket`] ([`CtPacket::parse`], or [`CtPacket::from_key`]
//! for a trace), then [`Conntrack::process`] returns a [`CtVerdict`]: the `ct_state` bits, the
//! connection's mark, which connection, and whether cached decisions about it went stale.
//! Time is the caller's `now` in nanoseconds; nothing here reads a clock.
//!
//! # Semantics
//! - **Zones** are part of [`ConnKey`]: the same addresses in two zones are two connections.
//! - **No connection**: a packet that may open one is `NEW|TRK`, committed or not; only a
//!   commit stores it (unless the table holds `max_connections`: counted in
//!   [`CtStats::full`], the packet still sees `NEW`). A packet that may not open one (a TCP
//!   SYN+ACK, FIN or RST; an ICMP echo reply) is `INV|TRK`. A TCP ACK without SYN, FIN or
//!   RST picks an established stream up mid-stream (see below).
//! - **`EST`** as ovs-fields(7) defines it: a committed connection whose packets were seen in
//!   both directions. The first valid reply-direction packet and everything after it are
//!   `EST`; original-direction packets before any reply are `NEW` (a retransmitted SYN is
//!   `NEW`, the connection stays). `RPL` marks reply-direction packets.
//! - **TCP** follows `conntrack-tcp.c` (pf's state machine and window tracking; see the
//!   `tcp` module): bad flag combinations (SYN+FIN, SYN+RST, no SYN/ACK/RST, FIN/PSH/URG
//!   without ACK) and out-of-window segments are `INV` and change nothing; window scaling comes
//!   from the SYN options. A RST, or both FINs acked, close the connection; a SYN on a
//!   closed connection ends it and is handled as the first packet of a new one (`NEW`,
//!   stored if committed). With [`CtConfig::check_windows`] off, or after [`Conntrack::refresh`]
//!   (the connection is then "liberal", as Linux's nf_flow_table marks offloaded flows),
//!   every segment with valid flags is in window; the FIN/RST state machine still runs.
//! - **UDP and other protocols** (also ICMP types that are neither echo nor error): first →
//!   multiple → both directions, as `conntrack-other.c`, with the `udp_*` timeouts.
//! - **ICMP/ICMPv6 echo**: a request opens a connection keyed by its identifier; the reply
//!   is `EST|RPL`. **Errors** (destination unreachable, time exceeded, packet too big,
//!   parameter problem) whose embedded header belongs to a live connection are `REL|TRK`,
//!   plus `RPL` when the embedded header is in the connection's original direction (the error
//!   travels back); `conn` is that connection. They do not touch its state or timeout.
//!   Errors about nothing tracked are `INV`.
//! - **Invalid input**: later fragments (xvs does not reassemble; an IPv6 fragment header of
//!   any offset), truncated or malformed L4 headers, errors without a readable embedded
//!   header: `INV`, counted in [`CtStats::invalid`] like every `INV` verdict.
//! - **Marks** change only with `commit`: `mark = (mark & !mask) | (value & mask)`, on a new
//!   or an existing connection (also through a related ICMP error), never on `INV`.
//! - **`changed`** is true when a connection is created; when its first reply is seen (its
//!   packets turn `EST`); when a TCP connection closes (the segment after which both peers
//!   are past FIN_WAIT_2 / reset: from then a SYN would reopen it); when it is removed by a
//!   reopening SYN or found timed out by `process`; and when its mark changes.
//!   Removals by [`Conntrack::expire`] and [`Conntrack::flush`] are reported through their
//!   `out` lists instead.
//! - **Expiry**: a connection is dead once `now >= expiry`; `process` treats a dead one as
//!   absent (and removes it), `expire` removes all of them. Each valid packet restarts the
//!   timeout of the state it leaves the connection in.
//!
//! # Where xvs differs from OVS
//! - A TCP segment opens a connection if it is a SYN, or an ACK without SYN, FIN or RST
//!   (picked up mid-stream, as OVS's `tcp_valid_new` and Linux's `nf_conntrack_tcp_loose`
//!   allow; such a connection's windows are not checked, its scale being unknown); OVS also
//!   lets a FIN or RST open one, xvs (as Linux) does not.
//! - OVS reports `EST` for any TCP segment that passes the window checks, even from the
//!   original side before a reply; xvs reports `NEW` until a reply was seen (ovs-fields'
//!   definition). For UDP and ICMP the two agree.
//! - OVS checks L4 checksums; xvs does not (frames from local ports may still carry partial
//!   checksums that the caller finishes later).
//! - OVS reassembles fragments (`ipf`) before tracking; xvs tracks a first IPv4 fragment by
//!   its L4 header and marks later ones (and IPv6 fragments) `INV`.
//! - ICMP types other than echo and the four errors are tracked as "other" instead of being
//!   invalid; NAT, ALGs (FTP/TFTP helpers) and timeout policies are not implemented.
//!
//! # Costs
//! Lookups hash the packet's tuple, then its reverse (two `HashMap` probes at most) and never
//! allocate; a new connection may grow the map. [`Conntrack::expire`] returns at once while
//! `now` is below the earliest expiry set since the last sweep, else it scans the whole table
//! (O(n)): call it about once a second, not per packet.

mod key;
mod packet;
mod tcp;

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

pub use key::ConnKey;
pub use packet::{CtInvalid, CtL4, CtPacket, TcpSegment, tcp_flags};
use tcp::{TcpConn, Update};

/// `ct_state` bits, OVS's values.
pub mod state {
    /// Starts a new connection (or is in one not yet seen in both directions).
    pub const NEW: u8 = 0x01;
    /// Part of a connection seen in both directions.
    pub const EST: u8 = 0x02;
    /// Related to a connection (an ICMP error about it).
    pub const REL: u8 = 0x04;
    /// In the reply direction.
    pub const RPL: u8 = 0x08;
    /// Invalid: conntrack could not make sense of it.
    pub const INV: u8 = 0x10;
    /// Tracked: went through conntrack.
    pub const TRK: u8 = 0x20;
}

const SECOND: u64 = 1_000_000_000;

/// Limits and timeouts (nanoseconds; defaults as OVS's default timeout policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtConfig {
    /// The most connections stored; commits beyond it are refused ([`CtStats::full`]).
    pub max_connections: usize,
    /// Check TCP sequence windows (OVS's `tcp_seq_chk`). Off: any segment with valid flags
    /// is accepted.
    pub check_windows: bool,
    /// TCP, opening: only the SYN side has sent (30 s).
    pub tcp_syn_sent: u64,
    /// TCP, opening: both sides have sent, the handshake is not complete (30 s).
    pub tcp_syn_recv: u64,
    /// TCP, established (24 h).
    pub tcp_established: u64,
    /// TCP, one side sent FIN (15 min).
    pub tcp_fin_wait: u64,
    /// TCP, both sides sent FIN, not all acked (45 s).
    pub tcp_time_wait: u64,
    /// TCP, closed: both FINs acked, or reset (30 s).
    pub tcp_close: u64,
    /// UDP and other protocols, one packet seen (60 s).
    pub udp_first: u64,
    /// UDP and other protocols, more packets in the original direction only (60 s).
    pub udp_single: u64,
    /// UDP and other protocols, packets in both directions (30 s).
    pub udp_multiple: u64,
    /// ICMP echo, request seen (60 s).
    pub icmp_first: u64,
    /// ICMP echo, reply seen (30 s).
    pub icmp_reply: u64,
}

impl Default for CtConfig {
    fn default() -> CtConfig {
        CtConfig {
            max_connections: 65_536,
            check_windows: true,
            tcp_syn_sent: 30 * SECOND,
            tcp_syn_recv: 30 * SECOND,
            tcp_established: 24 * 60 * 60 * SECOND,
            tcp_fin_wait: 15 * 60 * SECOND,
            tcp_time_wait: 45 * SECOND,
            tcp_close: 30 * SECOND,
            udp_first: 60 * SECOND,
            udp_single: 60 * SECOND,
            udp_multiple: 30 * SECOND,
            icmp_first: 60 * SECOND,
            icmp_reply: 30 * SECOND,
        }
    }
}

/// The timeout classes, one per [`CtConfig`] timeout field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timeout {
    TcpSynSent,
    TcpSynRecv,
    TcpEstablished,
    TcpFinWait,
    TcpTimeWait,
    TcpClose,
    UdpFirst,
    UdpSingle,
    UdpMultiple,
    IcmpFirst,
    IcmpReply,
}

impl Timeout {
    fn duration(self, config: &CtConfig) -> u64 {
        match self {
            Timeout::TcpSynSent => config.tcp_syn_sent,
            Timeout::TcpSynRecv => config.tcp_syn_recv,
            Timeout::TcpEstablished => config.tcp_established,
            Timeout::TcpFinWait => config.tcp_fin_wait,
            Timeout::TcpTimeWait => config.tcp_time_wait,
            Timeout::TcpClose => config.tcp_close,
            Timeout::UdpFirst => config.udp_first,
            Timeout::UdpSingle => config.udp_single,
            Timeout::UdpMultiple => config.udp_multiple,
            Timeout::IcmpFirst => config.icmp_first,
            Timeout::IcmpReply => config.icmp_reply,
        }
    }

    /// The state name dumps show: the timeout class the connection is in.
    fn name(self) -> &'static str {
        match self {
            Timeout::TcpSynSent => "SYN_SENT",
            Timeout::TcpSynRecv => "SYN_RECV",
            Timeout::TcpEstablished => "ESTABLISHED",
            Timeout::TcpFinWait => "FIN_WAIT",
            Timeout::TcpTimeWait => "TIME_WAIT",
            Timeout::TcpClose => "CLOSED",
            Timeout::UdpFirst | Timeout::IcmpFirst => "FIRST",
            Timeout::UdpSingle => "SINGLE",
            Timeout::UdpMultiple => "MULTIPLE",
            Timeout::IcmpReply => "REPLY",
        }
    }
}

/// What conntrack decided for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtVerdict {
    /// [`state`] bits, always including [`state::TRK`].
    pub state: u8,
    /// The connection's `ct_mark` (0 if none).
    pub mark: u32,
    /// The tracked connection this packet belongs to (for `REL`: the related one); `None`
    /// if untracked, new and not committed, or invalid.
    pub conn: Option<ConnKey>,
    /// This packet changed what packets of this connection see, or its existence (see the
    /// module doc): cached decisions that depended on it are stale.
    pub changed: bool,
}

/// Counters since creation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtStats {
    /// Connections stored now (timed-out ones not yet removed included).
    pub connections: u64,
    /// Connections created by commits.
    pub created: u64,
    /// Connections removed because their timeout passed.
    pub expired: u64,
    /// Packets found `INV`.
    pub invalid: u64,
    /// Commits refused because the table was full.
    pub full: u64,
}

/// A connection as one tracker hands it to another (a switch to its successor on a planned
/// restart): enough to go on with it, not its TCP windows (the new one skips their checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedConn {
    /// Its key (original direction).
    pub key: ConnKey,
    /// Whether a reply was seen (its packets are `EST`).
    pub seen_reply: bool,
    /// Its mark.
    pub mark: u32,
    /// Nanoseconds left before it times out.
    pub remaining_ns: u64,
}

/// One connection, for dumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnEntry {
    /// Its key (original direction).
    pub key: ConnKey,
    /// A short state name: "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "TIME_WAIT",
    /// "CLOSED" for TCP; "FIRST", "SINGLE", "MULTIPLE" for UDP and others; "FIRST", "REPLY"
    /// for ICMP echo. It names the timeout class the connection is in.
    pub state: &'static str,
    /// Its `ct_mark`.
    pub mark: u32,
    /// When it times out (ns, the caller's clock).
    pub expiry: u64,
    /// Whether TCP windows are no longer checked for it (after [`Conntrack::refresh`]).
    pub liberal: bool,
}

/// Per-protocol state.
#[derive(Debug, Clone, Copy)]
enum ProtoState {
    Tcp(TcpConn),
    /// UDP, other protocols and other ICMP types; the timeout class says which stage.
    Other,
    /// ICMP echo; the timeout class says whether a reply was seen.
    IcmpEcho,
}

#[derive(Debug, Clone)]
struct Conn {
    proto: ProtoState,
    mark: u32,
    expiry: u64,
    timeout: Timeout,
    seen_reply: bool,
    liberal: bool,
}

/// The connection table. Cloning it gives an independent copy (a trace runs on one).
#[derive(Debug, Clone)]
pub struct Conntrack {
    config: CtConfig,
    conns: HashMap<ConnKey, Conn, ahash::RandomState>,
    /// No connection expires before this (a lower bound, lowered whenever an expiry is set).
    earliest_expiry: u64,
    stats: CtStats,
}

impl Conntrack {
    /// An empty table.
    pub fn new(config: CtConfig) -> Conntrack {
        Conntrack {
            config,
            // Fixed seeds, like every table in this crate: deterministic runs.
            conns: HashMap::with_hasher(ahash::RandomState::with_seeds(0xc7, 0x2, 0x3, 0x4)),
            earliest_expiry: u64::MAX,
            stats: CtStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &CtConfig {
        &self.config
    }

    /// Looks `pkt` up and updates its connection (see the module doc for the semantics).
    ///
    /// With `commit`, a new connection is stored (unless the table is full: counted in
    /// [`CtStats::full`], the packet still sees `NEW`) and, with `set_mark = Some((value,
    /// mask))`, its mark becomes `(mark & !mask) | (value & mask)` — also for an existing
    /// connection. Without `commit`, `set_mark` is ignored. Never allocates unless it stores
    /// a new connection.
    pub fn process(
        &mut self,
        pkt: &CtPacket,
        commit: bool,
        set_mark: Option<(u32, u32)>,
        now: u64,
    ) -> CtVerdict {
        let set_mark = if commit { set_mark } else { None };
        match pkt.l4 {
            CtL4::Invalid(_) => return self.invalid(false),
            CtL4::IcmpError { inner } => return self.related(&inner, set_mark, now),
            CtL4::Tcp(_) | CtL4::Udp | CtL4::IcmpEcho { .. } | CtL4::Other => {}
        }
        let mut changed = false;
        if let Some((stored, reply)) = self.find(&pkt.tuple) {
            let check_windows = self.config.check_windows;
            match self.conns.get_mut(&stored) {
                Some(conn) if conn.expiry > now => {
                    let applied = apply(conn, &pkt.l4, reply, check_windows && !conn.liberal);
                    match applied.update {
                        Update::Invalid => return self.invalid(false),
                        Update::Reopen => {}
                        Update::Valid | Update::ValidNew => {
                            if let Some(timeout) = applied.timeout {
                                conn.timeout = timeout;
                                conn.expiry = now.saturating_add(timeout.duration(&self.config));
                                self.earliest_expiry = self.earliest_expiry.min(conn.expiry);
                            }
                            let mut changed = applied.closed;
                            if reply && !conn.seen_reply {
                                conn.seen_reply = true;
                                changed = true;
                            }
                            changed |= update_mark(&mut conn.mark, set_mark);
                            let mut state = state::TRK;
                            state |= if conn.seen_reply {
                                state::EST
                            } else {
                                state::NEW
                            };
                            if reply {
                                state |= state::RPL;
                            }
                            return CtVerdict {
                                state,
                                mark: conn.mark,
                                conn: Some(stored),
                                changed,
                            };
                        }
                    }
                }
                _ => self.stats.expired += 1,
            }
            // Timed out, or reopened by a SYN: gone; this packet is the first of a new one.
            self.conns.remove(&stored);
            changed = true;
        }
        self.open(pkt, commit, set_mark, changed, now)
    }

    /// The verdict for a packet without a (live) connection; stores one if committed.
    fn open(
        &mut self,
        pkt: &CtPacket,
        commit: bool,
        set_mark: Option<(u32, u32)>,
        changed: bool,
        now: u64,
    ) -> CtVerdict {
        let (proto, timeout, liberal) = match &pkt.l4 {
            CtL4::Tcp(seg) if tcp::valid_new(seg) => (
                ProtoState::Tcp(TcpConn::new(seg)),
                Timeout::TcpSynSent,
                seg.from_key || tcp::picked_up(seg),
            ),
            CtL4::Udp | CtL4::Other => (ProtoState::Other, Timeout::UdpFirst, false),
            CtL4::IcmpEcho { reply: false } => (ProtoState::IcmpEcho, Timeout::IcmpFirst, false),
            _ => return self.invalid(changed),
        };
        let mut verdict = CtVerdict {
            state: state::TRK | state::NEW,
            mark: 0,
            conn: None,
            changed,
        };
        if !commit {
            return verdict;
        }
        if self.conns.len() >= self.config.max_connections {
            self.stats.full += 1;
            return verdict;
        }
        let mut conn = Conn {
            proto,
            mark: 0,
            expiry: now.saturating_add(timeout.duration(&self.config)),
            timeout,
            seen_reply: false,
            liberal,
        };
        update_mark(&mut conn.mark, set_mark);
        self.earliest_expiry = self.earliest_expiry.min(conn.expiry);
        verdict.mark = conn.mark;
        verdict.conn = Some(pkt.tuple);
        verdict.changed = true;
        self.conns.insert(pkt.tuple, conn);
        self.stats.created += 1;
        verdict
    }

    /// The verdict for an ICMP error about the packet `inner`.
    fn related(&mut self, inner: &ConnKey, set_mark: Option<(u32, u32)>, now: u64) -> CtVerdict {
        let Some((stored, inner_reply)) = self.find(inner) else {
            return self.invalid(false);
        };
        let Some(conn) = self.conns.get_mut(&stored).filter(|c| c.expiry > now) else {
            return self.invalid(false);
        };
        let mut state = state::TRK | state::REL;
        if !inner_reply {
            // The offending packet went the original way: the error comes back.
            state |= state::RPL;
        }
        let changed = update_mark(&mut conn.mark, set_mark);
        CtVerdict {
            state,
            mark: conn.mark,
            conn: Some(stored),
            changed,
        }
    }

    fn invalid(&mut self, changed: bool) -> CtVerdict {
        self.stats.invalid += 1;
        CtVerdict {
            state: state::TRK | state::INV,
            mark: 0,
            conn: None,
            changed,
        }
    }

    /// The stored key `tuple` belongs to, and whether `tuple` is its reply direction.
    fn find(&self, tuple: &ConnKey) -> Option<(ConnKey, bool)> {
        if self.conns.contains_key(tuple) {
            return Some((*tuple, false));
        }
        let reversed = tuple.reversed();
        self.conns
            .contains_key(&reversed)
            .then_some((reversed, true))
    }

    /// Packets of `conn` were forwarded without being shown to [`process`](Self::process)
    /// (a flow cache or the kernel carried them): keeps it alive as if one had been seen at
    /// `now` (its timeout restarts, never shortens) and stops checking TCP windows for it
    /// from then on, since its sequence numbers moved on unseen. Does nothing for an unknown
    /// or already timed-out connection.
    pub fn refresh(&mut self, conn: &ConnKey, now: u64) {
        if let Some(c) = self.conns.get_mut(conn).filter(|c| c.expiry > now) {
            let expiry = now.saturating_add(c.timeout.duration(&self.config));
            c.expiry = c.expiry.max(expiry);
            c.liberal = true;
        }
    }

    /// The connections worth carrying to a successor at `now`: the live ones that are
    /// established TCP connections (no FIN or RST seen), or UDP and other protocols; not ICMP
    /// echoes (short-lived) nor TCP connections opening or closing (a successor picks up or
    /// lets go of those by their next segments).
    pub fn save(&self, now: u64) -> Vec<SavedConn> {
        self.conns
            .iter()
            .filter(|(_, c)| c.expiry > now)
            .filter(|(_, c)| match &c.proto {
                ProtoState::Tcp(tcp) => tcp.is_established() && c.seen_reply,
                ProtoState::Other => true,
                ProtoState::IcmpEcho => false,
            })
            .map(|(key, c)| SavedConn {
                key: *key,
                seen_reply: c.seen_reply,
                mark: c.mark,
                remaining_ns: c.expiry - now,
            })
            .collect()
    }

    /// Takes the connections another tracker saved (see [`Conntrack::save`]) as of `now`:
    /// each as it was there (TCP established, windows unchecked), within this tracker's size
    /// cap; a key already here is left as it is. Returns how many were taken.
    pub fn restore(&mut self, saved: &[SavedConn], now: u64) -> usize {
        let mut taken = 0;
        for s in saved {
            if self.conns.len() >= self.config.max_connections {
                break;
            }
            if self.conns.contains_key(&s.key) || self.conns.contains_key(&s.key.reversed()) {
                continue;
            }
            let (proto, timeout) = match s.key.proto {
                6 => (
                    ProtoState::Tcp(TcpConn::established()),
                    Timeout::TcpEstablished,
                ),
                1 | 58 => continue,
                _ if s.seen_reply => (ProtoState::Other, Timeout::UdpMultiple),
                _ => (ProtoState::Other, Timeout::UdpSingle),
            };
            let expiry = now.saturating_add(s.remaining_ns.min(timeout.duration(&self.config)));
            self.conns.insert(
                s.key,
                Conn {
                    proto,
                    mark: s.mark,
                    expiry,
                    timeout,
                    seen_reply: s.seen_reply,
                    liberal: true,
                },
            );
            self.earliest_expiry = self.earliest_expiry.min(expiry);
            taken += 1;
        }
        taken
    }

    /// Removes the connections whose timeout passed (`expiry <= now`) and pushes their keys
    /// into `out`. Returns at once while nothing can have timed out; otherwise scans the table.
    pub fn expire(&mut self, now: u64, out: &mut Vec<ConnKey>) {
        if now < self.earliest_expiry {
            return;
        }
        let mut earliest = u64::MAX;
        let mut expired = 0;
        self.conns.retain(|key, conn| {
            if conn.expiry > now {
                earliest = earliest.min(conn.expiry);
                true
            } else {
                out.push(*key);
                expired += 1;
                false
            }
        });
        self.stats.expired += expired;
        self.earliest_expiry = earliest;
    }

    /// Removes every connection, or those of `zone`, pushing their keys into `out`.
    pub fn flush(&mut self, zone: Option<u16>, out: &mut Vec<ConnKey>) {
        self.conns.retain(|key, _| {
            let remove = zone.is_none_or(|z| z == key.zone);
            if remove {
                out.push(*key);
            }
            !remove
        });
    }

    /// The number of stored connections (timed-out ones not yet expired included).
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no connection is stored.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// The counters.
    pub fn stats(&self) -> CtStats {
        CtStats {
            connections: self.conns.len() as u64,
            ..self.stats
        }
    }

    /// Every stored connection, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = ConnEntry> + '_ {
        self.conns.iter().map(|(key, conn)| ConnEntry {
            key: *key,
            state: conn.timeout.name(),
            mark: conn.mark,
            expiry: conn.expiry,
            liberal: conn.liberal,
        })
    }

    /// The live connection `key` (original direction) is, if any.
    pub fn get(&self, key: &ConnKey) -> Option<ConnEntry> {
        let conn = self.conns.get(key)?;
        Some(ConnEntry {
            key: *key,
            state: conn.timeout.name(),
            mark: conn.mark,
            expiry: conn.expiry,
            liberal: conn.liberal,
        })
    }
}

/// What one packet did to an existing connection.
struct Applied {
    update: Update,
    /// The timeout to restart, if any.
    timeout: Option<Timeout>,
    /// The packet closed a TCP connection.
    closed: bool,
}

/// Runs the protocol's state machine for a packet of an existing, live connection.
fn apply(conn: &mut Conn, l4: &CtL4, reply: bool, check_windows: bool) -> Applied {
    let answered = reply || conn.seen_reply;
    let (update, timeout) = match (&mut conn.proto, l4) {
        (ProtoState::Tcp(tcp), CtL4::Tcp(seg)) => {
            let was_closed = tcp.is_closed();
            let (update, timeout) = if seg.from_key {
                // No flags known (a hand-written trace): an ACK.
                let seg = TcpSegment {
                    flags: if seg.flags == 0 {
                        tcp_flags::ACK
                    } else {
                        seg.flags
                    },
                    ..*seg
                };
                tcp.update(&seg, reply, false)
            } else {
                tcp.update(seg, reply, check_windows)
            };
            let closed = !was_closed && tcp.is_closed();
            return Applied {
                update,
                timeout,
                closed,
            };
        }
        (ProtoState::Other, CtL4::Udp | CtL4::Other) => {
            let timeout = if answered {
                Timeout::UdpMultiple
            } else {
                Timeout::UdpSingle
            };
            (Update::Valid, Some(timeout))
        }
        (ProtoState::IcmpEcho, CtL4::IcmpEcho { .. }) => {
            let timeout = if answered {
                Timeout::IcmpReply
            } else {
                Timeout::IcmpFirst
            };
            (Update::Valid, Some(timeout))
        }
        // A hand-built packet whose L4 kind does not match its protocol's connection.
        _ => (Update::Invalid, None),
    };
    Applied {
        update,
        timeout,
        closed: false,
    }
}

/// Applies a `(value, mask)` mark update; whether the mark changed.
fn update_mark(mark: &mut u32, set_mark: Option<(u32, u32)>) -> bool {
    let Some((value, mask)) = set_mark else {
        return false;
    };
    let new = (*mark & !mask) | (value & mask);
    let changed = new != *mark;
    *mark = new;
    changed
}
