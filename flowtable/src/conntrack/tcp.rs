//! TCP state and sequence tracking, after OVS's `lib/conntrack-tcp.c` (itself from pf's
//! `pf_test_tcp`, Guido van Rooij's "Real Stateful TCP Packet Filtering").
//!
//! Each peer has a state and a window: `seqlo` (highest sequence it sent), `seqhi` (highest it
//! may send: what the other end acked plus its window), `max_win`. A segment is valid when its
//! last octet lies in the sender's window, it is at most one window back, and its ack is at
//! most about one window away from what the other end sent.

use super::Timeout;
use super::packet::{TCP_MAX_WSCALE, TcpSegment, tcp_flags as f};

/// pf's `MAXACKWINDOW`: the ack-skew slack (a window plus a 1500-byte fudge).
const MAX_ACK_WINDOW: u32 = 0xffff + 1500;
/// `wscale` encoding as OVS's: the shift in the low bits, this flag when the peer sent the option.
const WSCALE_FLAG: u8 = 0x80;
const WSCALE_MASK: u8 = 0x0f;

/// The state of one peer, ordered as OVS's `CT_DPIF_TCPS_*` values are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum PeerState {
    Closed,
    SynSent,
    Established,
    Closing,
    FinWait2,
    TimeWait,
}

#[derive(Debug, Clone, Copy)]
struct Peer {
    seqlo: u32,
    seqhi: u32,
    max_win: u32,
    wscale: u8,
    state: PeerState,
}

/// Both peers of a connection: `[original sender, replier]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct TcpConn {
    peers: [Peer; 2],
}

/// What a segment did to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Update {
    /// Accepted.
    Valid,
    /// Accepted, still opening (a SYN again from a peer that has not got further).
    ValidNew,
    /// Rejected: bad flags or out of window.
    Invalid,
    /// A SYN on a closed connection: the old one ends and the SYN starts a new one.
    Reopen,
}

/// Flag combinations no TCP sends (OVS's `tcp_invalid_flags`).
pub(super) fn invalid_flags(flags: u8) -> bool {
    if flags & f::SYN != 0 {
        if flags & (f::RST | f::FIN) != 0 {
            return true;
        }
    } else if flags & (f::ACK | f::RST) == 0 {
        return true;
    }
    flags & f::ACK == 0 && flags & (f::FIN | f::PSH | f::URG) != 0
}

/// Whether `seg` may open a connection: valid flags, and a SYN without ACK, or a segment of
/// a stream already under way (ACK without SYN, FIN or RST), which picks the connection up
/// mid-stream, as Linux (`nf_conntrack_tcp_loose`) and OVS (`tcp_valid_new`) do: a restarted
/// switch, or one put in the path of live connections, keeps them. A SYN+ACK, a FIN or a RST
/// opens nothing (OVS lets the last two open one; Linux does not).
pub(super) fn valid_new(seg: &TcpSegment) -> bool {
    (seg.from_key && seg.flags == 0)
        || (!invalid_flags(seg.flags)
            && (seg.flags & (f::SYN | f::ACK) == f::SYN
                || (seg.flags & f::ACK != 0 && seg.flags & (f::SYN | f::FIN | f::RST) == 0)))
}

/// Whether a connection `seg` opens is picked up mid-stream (no SYN seen): its window scale
/// is unknown, so its windows are not checked (Linux marks such connections liberal too).
pub(super) fn picked_up(seg: &TcpSegment) -> bool {
    seg.flags & f::SYN == 0
}

fn seq_geq(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) as i32 >= 0
}

fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl TcpConn {
    /// The connection a valid opening segment starts (`tcp_new_conn`).
    pub(super) fn new(seg: &TcpSegment) -> TcpConn {
        let wscale = if seg.flags & f::SYN != 0 {
            seg.wscale
                .map_or(0, |s| WSCALE_FLAG | s.min(TCP_MAX_WSCALE))
        } else {
            0
        };
        let mut src = Peer {
            seqlo: seg.seq,
            seqhi: seg.seq.wrapping_add(seg.payload_len).wrapping_add(1),
            max_win: u32::from(seg.window).max(1),
            wscale,
            state: PeerState::SynSent,
        };
        if seg.flags & f::SYN != 0 {
            src.seqhi = src.seqhi.wrapping_add(1);
        }
        if wscale & WSCALE_MASK != 0 {
            src.max_win = src.max_win.div_ceil(1 << (wscale & WSCALE_MASK));
        }
        if seg.flags & f::FIN != 0 {
            src.seqhi = src.seqhi.wrapping_add(1);
        }
        let dst = Peer {
            seqlo: 0,
            seqhi: 1,
            max_win: 1,
            wscale: 0,
            state: PeerState::Closed,
        };
        TcpConn { peers: [src, dst] }
    }

    /// A connection carried over from another tracker as established: both peers
    /// established, windows unknown (the connection is liberal).
    pub(super) fn established() -> TcpConn {
        let peer = Peer {
            seqlo: 0,
            seqhi: 1,
            max_win: 1,
            wscale: 0,
            state: PeerState::Established,
        };
        TcpConn {
            peers: [peer, peer],
        }
    }

    /// Whether both peers are established (no FIN or RST seen yet).
    pub(super) fn is_established(&self) -> bool {
        self.peers.iter().all(|p| p.state == PeerState::Established)
    }

    /// Both peers have finished (both FINs acked, or a reset): a SYN may reopen it.
    pub(super) fn is_closed(&self) -> bool {
        self.peers.iter().all(|p| p.state >= PeerState::FinWait2)
    }

    /// The timeout class the peers' states put the connection in.
    fn timeout(&self) -> Timeout {
        let [a, b] = self.peers.map(|p| p.state);
        let (lo, hi) = (a.min(b), a.max(b));
        if lo >= PeerState::FinWait2 {
            Timeout::TcpClose
        } else if lo >= PeerState::Closing {
            Timeout::TcpTimeWait
        } else if lo < PeerState::Established {
            Timeout::TcpSynRecv
        } else if hi >= PeerState::Closing {
            Timeout::TcpFinWait
        } else {
            Timeout::TcpEstablished
        }
    }

    /// Applies `seg`, sent in the reply direction when `reply`. With `check_windows` false
    /// every segment with valid flags is in window (OVS's `tcp_seq_chk` off). Returns what
    /// happened and, if the connection's timeout is to be restarted, its class.
    pub(super) fn update(
        &mut self,
        seg: &TcpSegment,
        reply: bool,
        check_windows: bool,
    ) -> (Update, Option<Timeout>) {
        let flags = seg.flags;
        if invalid_flags(flags) {
            return (Update::Invalid, None);
        }
        let [orig, repl] = &mut self.peers;
        let (src, dst) = if reply { (repl, orig) } else { (orig, repl) };

        if flags & (f::SYN | f::ACK) == f::SYN {
            if dst.state >= PeerState::FinWait2 && src.state >= PeerState::FinWait2 {
                src.state = PeerState::Closed;
                dst.state = PeerState::Closed;
                return (Update::Reopen, None);
            } else if src.state <= PeerState::SynSent {
                src.state = PeerState::SynSent;
                return (Update::ValidNew, Some(Timeout::TcpSynSent));
            }
        }

        let (mut sws, mut dws) = (0u8, 0u8);
        if src.wscale & dst.wscale & WSCALE_FLAG != 0 && flags & f::SYN == 0 {
            sws = src.wscale & WSCALE_MASK;
            dws = dst.wscale & WSCALE_MASK;
        }

        let mut win = u32::from(seg.window);
        let orig_seq = seg.seq;
        let mut seq = seg.seq;
        let mut ack = seg.ack;
        let mut end = seq.wrapping_add(seg.payload_len);
        if flags & f::SYN != 0 {
            end = end.wrapping_add(1);
        }
        if flags & f::FIN != 0 {
            end = end.wrapping_add(1);
        }
        let mut check_ackskew = true;
        if src.state < PeerState::SynSent {
            // The first segment from this end.
            if flags & f::SYN != 0 && dst.wscale & WSCALE_FLAG != 0 {
                src.wscale = seg.wscale.map_or(0, |s| WSCALE_FLAG | s);
                if src.wscale & WSCALE_FLAG != 0 {
                    sws = src.wscale & WSCALE_MASK;
                    win = win.div_ceil(1 << sws);
                    dws = dst.wscale & WSCALE_MASK;
                } else {
                    // The other end's window was counted scaled; this end does not scale.
                    dst.max_win <<= dst.wscale & WSCALE_MASK;
                    dst.wscale = 0;
                }
            }
            src.seqlo = seq;
            src.state = PeerState::SynSent;
            let reach = end.wrapping_add((dst.max_win << dws).max(1));
            if src.seqhi == 1 || seq_geq(reach, src.seqhi) {
                src.seqhi = reach;
                check_ackskew = false;
            }
            src.max_win = src.max_win.max(win);
        }

        if flags & f::ACK == 0 || (ack == 0 && flags & (f::ACK | f::RST) == f::ACK | f::RST) {
            // No ack to check (or a stack that sends RST|ACK with ack 0).
            ack = dst.seqlo;
        }
        if seq == end {
            // No data: ease the sequence checks.
            seq = src.seqlo;
            end = seq;
        }
        let ackskew = if check_ackskew {
            i64::from(dst.seqlo.wrapping_sub(ack) as i32)
        } else {
            0
        };
        let in_window = seq_geq(src.seqhi, end)
            && seq_geq(seq, src.seqlo.wrapping_sub(dst.max_win << dws))
            && ackskew >= -i64::from(MAX_ACK_WINDOW)
            && ackskew <= i64::from(MAX_ACK_WINDOW) << sws
            && (flags & f::RST == 0
                || orig_seq == src.seqlo
                || orig_seq == src.seqlo.wrapping_add(1)
                || orig_seq.wrapping_add(1) == src.seqlo);

        if in_window || !check_windows {
            slide(src, dst, win, sws, end, ack);
            if flags & f::SYN != 0 && src.state < PeerState::SynSent {
                src.state = PeerState::SynSent;
            }
            if flags & f::FIN != 0 && src.state < PeerState::Closing {
                src.state = PeerState::Closing;
            }
            if flags & f::ACK != 0 {
                if dst.state == PeerState::SynSent {
                    dst.state = PeerState::Established;
                } else if dst.state == PeerState::Closing {
                    dst.state = PeerState::FinWait2;
                }
            }
            if flags & f::RST != 0 {
                src.state = PeerState::TimeWait;
                dst.state = PeerState::TimeWait;
            }
            (Update::Valid, Some(self.timeout()))
        } else if (dst.state < PeerState::SynSent
            || dst.state >= PeerState::FinWait2
            || src.state >= PeerState::FinWait2)
            && seq_geq(src.seqhi.wrapping_add(MAX_ACK_WINDOW), end)
            && seq_geq(seq, src.seqlo.wrapping_sub(MAX_ACK_WINDOW))
        {
            // pf's loose case: SYNs shotgunned before the peer answers, stray segments
            // right after a close. Accepted, but the timeout is not restarted, so a flood
            // of them cannot keep the connection alive.
            slide(src, dst, win, sws, end, ack);
            if flags & f::FIN != 0 && src.state < PeerState::Closing {
                src.state = PeerState::Closing;
            }
            if flags & f::RST != 0 {
                src.state = PeerState::TimeWait;
                dst.state = PeerState::TimeWait;
            }
            (Update::Valid, None)
        } else {
            (Update::Invalid, None)
        }
    }
}

/// Moves both windows after an accepted segment.
fn slide(src: &mut Peer, dst: &mut Peer, win: u32, sws: u8, end: u32, ack: u32) {
    src.max_win = src.max_win.max(win);
    if seq_gt(end, src.seqlo) {
        src.seqlo = end;
    }
    let reach = ack.wrapping_add(win << sws);
    if seq_geq(reach, dst.seqhi) {
        dst.seqhi = ack.wrapping_add((win << sws).max(1));
    }
}
