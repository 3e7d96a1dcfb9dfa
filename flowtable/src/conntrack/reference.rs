//! A naive reference model of the documented semantics, and property tests that hold
//! [`Conntrack`] (with `check_windows` off) to it; plus "never panics" on arbitrary bytes.
//!
//! The model keeps connections in a `Vec` scanned linearly, TCP as two peer states with the
//! fewest rules that give the module doc's behaviour, and no sequence numbers at all.

use std::collections::HashMap;

use proptest::prelude::*;

use super::tcp_flags::{ACK, FIN, RST, SYN};
use super::*;
use crate::key::FlowKey;

const S: u64 = 1_000_000_000;

// Peer states, ordered.
const CLOSED: u8 = 0;
const SYN_SENT: u8 = 1;
const ESTABLISHED: u8 = 2;
const CLOSING: u8 = 3;
const FIN_WAIT_2: u8 = 4;
const TIME_WAIT: u8 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Other,
    Echo,
}

#[derive(Debug, Clone)]
struct ModelConn {
    key: ConnKey,
    /// TCP peer states: [original sender, replier].
    peers: [u8; 2],
    seen_reply: bool,
    mark: u32,
    expiry: u64,
    timeout: u64,
}

#[derive(Debug, Default)]
struct Model {
    conns: Vec<ModelConn>,
    max: usize,
    invalid: u64,
}

fn tcp_bad_flags(flags: u8) -> bool {
    let syn = flags & SYN != 0;
    let ack = flags & ACK != 0;
    (syn && flags & (FIN | RST) != 0)
        || (!syn && !ack && flags & RST == 0)
        || (!ack && flags & FIN != 0)
}

fn tcp_timeout(c: &CtConfig, peers: [u8; 2]) -> u64 {
    let (lo, hi) = (peers[0].min(peers[1]), peers[0].max(peers[1]));
    if lo >= FIN_WAIT_2 {
        c.tcp_close
    } else if lo >= CLOSING {
        c.tcp_time_wait
    } else if lo < ESTABLISHED {
        c.tcp_syn_recv
    } else if hi >= CLOSING {
        c.tcp_fin_wait
    } else {
        c.tcp_established
    }
}

fn set_mark(mark: &mut u32, set: Option<(u32, u32)>) -> bool {
    let old = *mark;
    if let Some((v, m)) = set {
        *mark = (*mark & !m) | (v & m);
    }
    old != *mark
}

const INV: u8 = state::TRK | state::INV;

impl Model {
    fn position(&self, key: &ConnKey) -> Option<usize> {
        self.conns.iter().position(|c| c.key == *key)
    }

    fn invalid(&mut self, changed: bool) -> CtVerdict {
        self.invalid += 1;
        CtVerdict {
            state: INV,
            mark: 0,
            conn: None,
            changed,
        }
    }

    fn process(
        &mut self,
        c: &CtConfig,
        pkt: &CtPacket,
        commit: bool,
        mark: Option<(u32, u32)>,
        now: u64,
    ) -> CtVerdict {
        let mark = if commit { mark } else { None };
        let kind = match pkt.l4 {
            CtL4::Tcp(_) => Kind::Tcp,
            CtL4::Udp | CtL4::Other => Kind::Other,
            CtL4::IcmpEcho { .. } => Kind::Echo,
            CtL4::Invalid(_) => return self.invalid(false),
            CtL4::IcmpError { inner } => {
                let live =
                    |m: &Model, k: &ConnKey| m.position(k).filter(|&i| m.conns[i].expiry > now);
                let (i, rpl) = match (live(self, &inner), live(self, &inner.reversed())) {
                    (Some(i), _) => (i, state::RPL),
                    (None, Some(i)) => (i, 0),
                    (None, None) => return self.invalid(false),
                };
                let conn = &mut self.conns[i];
                let changed = set_mark(&mut conn.mark, mark);
                return CtVerdict {
                    state: state::TRK | state::REL | rpl,
                    mark: conn.mark,
                    conn: Some(conn.key),
                    changed,
                };
            }
        };
        let flags = match pkt.l4 {
            CtL4::Tcp(seg) => seg.flags,
            _ => 0,
        };
        let bad_flags = kind == Kind::Tcp && tcp_bad_flags(flags);
        let found = match self.position(&pkt.tuple) {
            Some(i) => Some((i, false)),
            None => self.position(&pkt.tuple.reversed()).map(|i| (i, true)),
        };
        let mut changed = false;
        if let Some((i, reply)) = found {
            if self.conns[i].expiry <= now {
                self.conns.remove(i);
                changed = true;
            } else {
                let conn = &mut self.conns[i];
                let (s, d) = if reply { (1, 0) } else { (0, 1) };
                let mut timeout = None;
                let mut closed = false;
                match kind {
                    Kind::Tcp if bad_flags => return self.invalid(false),
                    Kind::Tcp => {
                        let syn_only = flags & (SYN | ACK) == SYN;
                        if syn_only && conn.peers.iter().all(|&p| p >= FIN_WAIT_2) {
                            self.conns.remove(i);
                            changed = true;
                        } else if syn_only && conn.peers[s] <= SYN_SENT {
                            conn.peers[s] = SYN_SENT;
                            timeout = Some(c.tcp_syn_sent);
                        } else {
                            let was_closed = conn.peers.iter().all(|&p| p >= FIN_WAIT_2);
                            let p = &mut conn.peers;
                            p[s] = p[s].max(SYN_SENT);
                            if flags & FIN != 0 {
                                p[s] = p[s].max(CLOSING);
                            }
                            if flags & ACK != 0 {
                                if p[d] == SYN_SENT {
                                    p[d] = ESTABLISHED;
                                } else if p[d] == CLOSING {
                                    p[d] = FIN_WAIT_2;
                                }
                            }
                            if flags & RST != 0 {
                                *p = [TIME_WAIT; 2];
                            }
                            closed = !was_closed && p.iter().all(|&p| p >= FIN_WAIT_2);
                            timeout = Some(tcp_timeout(c, *p));
                        }
                    }
                    Kind::Other => {
                        timeout = Some(if reply || conn.seen_reply {
                            c.udp_multiple
                        } else {
                            c.udp_single
                        });
                    }
                    Kind::Echo => {
                        timeout = Some(if reply || conn.seen_reply {
                            c.icmp_reply
                        } else {
                            c.icmp_first
                        });
                    }
                }
                if let Some(t) = timeout {
                    let conn = &mut self.conns[i];
                    conn.expiry = now + t;
                    conn.timeout = t;
                    changed = closed || (reply && !conn.seen_reply);
                    conn.seen_reply |= reply;
                    changed |= set_mark(&mut conn.mark, mark);
                    let est = if conn.seen_reply {
                        state::EST
                    } else {
                        state::NEW
                    };
                    return CtVerdict {
                        state: state::TRK | est | if reply { state::RPL } else { 0 },
                        mark: conn.mark,
                        conn: Some(conn.key),
                        changed,
                    };
                }
            }
        }
        let may_open = match pkt.l4 {
            CtL4::Tcp(_) => {
                !bad_flags
                    && (flags & (SYN | ACK) == SYN
                        || (flags & ACK != 0 && flags & (SYN | FIN | RST) == 0))
            }
            CtL4::IcmpEcho { reply } => !reply,
            _ => true,
        };
        if !may_open {
            return self.invalid(changed);
        }
        let mut v = CtVerdict {
            state: state::TRK | state::NEW,
            mark: 0,
            conn: None,
            changed,
        };
        if commit && self.conns.len() < self.max {
            let timeout = match kind {
                Kind::Tcp => c.tcp_syn_sent,
                Kind::Other => c.udp_first,
                Kind::Echo => c.icmp_first,
            };
            let mut conn = ModelConn {
                key: pkt.tuple,
                peers: [SYN_SENT, CLOSED],
                seen_reply: false,
                mark: 0,
                expiry: now + timeout,
                timeout,
            };
            set_mark(&mut conn.mark, mark);
            v.mark = conn.mark;
            v.conn = Some(conn.key);
            v.changed = true;
            self.conns.push(conn);
        }
        v
    }

    fn live(&self, now: u64) -> Vec<(ConnKey, u32, u64)> {
        let mut v: Vec<_> = self
            .conns
            .iter()
            .filter(|c| c.expiry > now)
            .map(|c| (c.key, c.mark, c.expiry))
            .collect();
        v.sort_by_key(|e| format!("{e:?}"));
        v
    }
}

fn live(ct: &Conntrack, now: u64) -> Vec<(ConnKey, u32, u64)> {
    let mut v: Vec<_> = ct
        .iter()
        .filter(|e| e.expiry > now)
        .map(|e| (e.key, e.mark, e.expiry))
        .collect();
    v.sort_by_key(|e| format!("{e:?}"));
    v
}

#[derive(Debug, Clone, Copy)]
enum PacketKind {
    Syn,
    SynAck,
    Ack,
    FinAck,
    Rst,
    SynFin,
    Udp,
    EchoRequest,
    EchoReply,
    /// dst → src: port unreachable about the UDP datagram src:sport → dst:dport.
    Unreachable,
}

#[derive(Debug, Clone)]
enum Op {
    Packet {
        zone: u16,
        src: u8,
        dst: u8,
        sport: u16,
        dport: u16,
        kind: PacketKind,
        commit: bool,
        mark: Option<(u32, u32)>,
    },
    Expire,
    Refresh(usize),
    Flush(Option<u16>),
}

fn host(i: u8) -> u128 {
    0x0a00_0000 | u128::from(i)
}

fn build(zone: u16, src: u8, dst: u8, sport: u16, dport: u16, kind: PacketKind) -> CtPacket {
    let mut tuple = ConnKey {
        zone,
        ipv6: false,
        proto: 6,
        src: host(src),
        dst: host(dst),
        src_port: sport,
        dst_port: dport,
        icmp_id: 0,
    };
    let tcp = |flags| {
        CtL4::Tcp(TcpSegment {
            flags,
            seq: 0,
            ack: 0,
            window: 65535,
            wscale: None,
            payload_len: 0,
            from_key: false,
        })
    };
    let l4 = match kind {
        PacketKind::Syn => tcp(SYN),
        PacketKind::SynAck => tcp(SYN | ACK),
        PacketKind::Ack => tcp(ACK),
        PacketKind::FinAck => tcp(FIN | ACK),
        PacketKind::Rst => tcp(RST),
        PacketKind::SynFin => tcp(SYN | FIN),
        PacketKind::Udp => {
            tuple.proto = 17;
            CtL4::Udp
        }
        PacketKind::EchoRequest | PacketKind::EchoReply => {
            let reply = matches!(kind, PacketKind::EchoReply);
            tuple.proto = 1;
            tuple.icmp_id = sport;
            (tuple.src_port, tuple.dst_port) = if reply { (0, 8) } else { (8, 0) };
            CtL4::IcmpEcho { reply }
        }
        PacketKind::Unreachable => {
            let inner = ConnKey { proto: 17, ..tuple };
            tuple = ConnKey {
                proto: 1,
                src: tuple.dst,
                dst: tuple.src,
                src_port: 0,
                dst_port: 0,
                ..tuple
            };
            CtL4::IcmpError { inner }
        }
    };
    CtPacket { tuple, l4 }
}

fn packet_kind() -> impl Strategy<Value = PacketKind> {
    prop_oneof![
        3 => Just(PacketKind::Syn),
        2 => Just(PacketKind::SynAck),
        3 => Just(PacketKind::Ack),
        2 => Just(PacketKind::FinAck),
        1 => Just(PacketKind::Rst),
        1 => Just(PacketKind::SynFin),
        3 => Just(PacketKind::Udp),
        2 => Just(PacketKind::EchoRequest),
        2 => Just(PacketKind::EchoReply),
        1 => Just(PacketKind::Unreachable),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let packet = (
        0u16..2,
        0u8..3,
        0u8..3,
        1u16..3,
        1u16..3,
        packet_kind(),
        any::<bool>(),
        proptest::option::of((0u32..4, 0u32..4)),
    )
        .prop_map(
            |(zone, src, dst, sport, dport, kind, commit, mark)| Op::Packet {
                zone,
                src,
                dst,
                sport,
                dport,
                kind,
                commit,
                mark,
            },
        );
    prop_oneof![
        20 => packet,
        2 => Just(Op::Expire),
        1 => (0usize..16).prop_map(Op::Refresh),
        1 => proptest::option::of(0u16..2).prop_map(Op::Flush),
    ]
}

fn gap() -> impl Strategy<Value = u64> {
    prop_oneof![
        12 => 0..5 * S,
        1 => Just(31 * S),
        1 => Just(61 * S),
        1 => Just(16 * 60 * S),
        1 => Just(25 * 60 * 60 * S),
    ]
}

/// Sequence numbers of one direction of a TCP 4-tuple, as a well-behaved sender keeps them.
#[derive(Debug, Default, Clone, Copy)]
struct Sender {
    next_seq: u32,
    fin_sent: bool,
}

/// Gives a generated TCP segment the sequence and ack numbers its sender would use: a SYN (and
/// its retransmissions) at `next_seq` without consuming it (data would start after it, and the
/// tracker eases checks on segments without data), one FIN that consumes a number and whose
/// retransmissions repeat it, ACKs and RSTs at `next_seq`; acks carry the other direction's
/// `next_seq`.
fn sequence(senders: &mut HashMap<ConnKey, Sender>, pkt: &mut CtPacket) {
    let CtL4::Tcp(seg) = &mut pkt.l4 else {
        return;
    };
    let other = senders
        .get(&pkt.tuple.reversed())
        .copied()
        .unwrap_or_default();
    let me = senders.entry(pkt.tuple).or_default();
    seg.seq = me.next_seq;
    seg.ack = other.next_seq;
    if seg.flags & SYN != 0 {
        me.fin_sent = false;
    }
    if seg.flags & FIN != 0 {
        if me.fin_sent {
            seg.seq = me.next_seq.wrapping_sub(1);
        } else {
            me.next_seq = me.next_seq.wrapping_add(1);
            me.fin_sent = true;
        }
    }
}

fn run(steps: &[(Op, u64)], check_windows: bool) -> Result<(), TestCaseError> {
    let mut senders = HashMap::new();
    let config = CtConfig {
        max_connections: 8,
        check_windows,
        ..CtConfig::default()
    };
    let mut ct = Conntrack::new(config.clone());
    let mut model = Model {
        max: config.max_connections,
        ..Model::default()
    };
    let mut now = 0;
    for (step, (op, dt)) in steps.iter().enumerate() {
        now += dt;
        match *op {
            Op::Packet {
                zone,
                src,
                dst,
                sport,
                dport,
                kind,
                commit,
                mark,
            } => {
                let mut pkt = build(zone, src, dst, sport, dport, kind);
                sequence(&mut senders, &mut pkt);
                let got = ct.process(&pkt, commit, mark, now);
                let want = model.process(&config, &pkt, commit, mark, now);
                prop_assert_eq!(got, want, "step {}: {:?}", step, op);
            }
            Op::Expire => {
                let mut got = Vec::new();
                ct.expire(now, &mut got);
                let mut want: Vec<ConnKey> = model
                    .conns
                    .iter()
                    .filter(|c| c.expiry <= now)
                    .map(|c| c.key)
                    .collect();
                model.conns.retain(|c| c.expiry > now);
                got.sort_by_key(|k| format!("{k:?}"));
                want.sort_by_key(|k| format!("{k:?}"));
                prop_assert_eq!(got, want, "step {}: expire", step);
            }
            Op::Refresh(i) => {
                let keys = model.live(now);
                if let Some((key, _, _)) = keys.get(i % keys.len().max(1)) {
                    ct.refresh(key, now);
                    let conn = model.conns.iter_mut().find(|c| c.key == *key).unwrap();
                    conn.expiry = conn.expiry.max(now + conn.timeout);
                }
            }
            Op::Flush(zone) => {
                let mut got = Vec::new();
                ct.flush(zone, &mut got);
                let before = model.conns.len();
                model
                    .conns
                    .retain(|c| zone.is_some_and(|z| z != c.key.zone));
                prop_assert_eq!(got.len(), before - model.conns.len());
            }
        }
        prop_assert_eq!(
            live(&ct, now),
            model.live(now),
            "step {}: live set after {:?}",
            step,
            op
        );
        prop_assert_eq!(ct.len(), model.conns.len());
        prop_assert_eq!(ct.stats().invalid, model.invalid);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn same_as_reference_model(steps in prop::collection::vec((op(), gap()), 1..120)) {
        run(&steps, false)?;
    }

    /// The same with window checks on: segments numbered as a well-behaved sender would are
    /// never out of window, so the windowless model still predicts every verdict.
    #[test]
    fn same_as_reference_model_with_windows(steps in prop::collection::vec((op(), gap()), 1..120)) {
        run(&steps, true)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        frame in prop::collection::vec(any::<u8>(), 0..160),
        ip_version in 0u8..3,
        commit in any::<bool>(),
    ) {
        // Bias towards frames that reach the IP and L4 parsers.
        let mut frame = frame;
        if frame.len() >= 15 {
            match ip_version {
                0 => { frame[12] = 0x08; frame[13] = 0x00; frame[14] = 0x45; }
                1 => { frame[12] = 0x86; frame[13] = 0xdd; frame[14] = 0x60; }
                _ => {}
            }
        }
        let mut ct = Conntrack::new(CtConfig::default());
        if let Ok((key, layout)) = FlowKey::extract(&frame, 0) {
            if let Some(pkt) = CtPacket::parse(&frame, &key, &layout, 1) {
                let first = ct.process(&pkt, commit, Some((1, 1)), 0);
                prop_assert!(first.state & state::TRK != 0);
                ct.process(&pkt, commit, None, 1);
            }
            if let Some(pkt) = CtPacket::from_key(&key, 1) {
                ct.process(&pkt, commit, None, 2);
            }
        }
    }
}
