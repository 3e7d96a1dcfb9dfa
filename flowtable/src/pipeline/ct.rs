//! The `ct` action: a packet's connection looked up (and committed) in the connection
//! tracker, its `ct_*` fields set for the table `ct(table=N)` continues in.
//!
//! # Caching
//! A decision that looked at a connection is cached (and may go to the kernel) only while
//! that connection is established, and only for packets without FIN, SYN or RST, the ones
//! that move a TCP connection along (the kernel key holds those three flags, so such packets
//! always come up), and never for ICMP echoes, whose connections are keyed by an identifier
//! that flow keys do not hold (the `conntrack_pipeline` fuzz target found a reply of another
//! echo taking an established echo's decision). Everything else (new, related, invalid, handshakes and teardowns) is
//! decided afresh per packet, so that the tracker sees it. The decision depends on the
//! connection's generation bucket: when the tracker says a packet changed what the
//! connection's packets see (it became established, closed, expired, its mark changed), the
//! bucket is bumped here and in every other worker ([`Event::Conn`]), and every cached and
//! offloaded decision that used the connection goes stale; so do they at every FIN and RST,
//! so that the tracker sees the teardown's last ACKs. Packets a cache or the kernel
//! carried are never shown to the tracker: the connection is kept alive from their counters
//! ([`Pipeline::refresh_conn`]) and its TCP windows are no longer checked (as Linux does for
//! flows it offloads). Nor are their headers past the flow key's fields: a segment of an
//! established connection with, say, a TCP data offset beyond its end shares the good
//! segments' key and their cached decision, where the tracker would call it invalid (the
//! receiving stack drops it). The `conntrack_pipeline` fuzz target found this; it is the
//! price of not showing every packet to the tracker, which is what makes established
//! connections fast.

use core::fmt::Debug;

use super::coherence::DEP_BUCKETS;
use super::rules::Walk;
use super::trace::TraceKind;
use super::{Event, Pipeline};
use crate::config::Config;
use crate::conntrack::{ConnKey, Conntrack, CtPacket, CtStats, CtVerdict, state};
use crate::rule::CtAction;

/// Where a pipeline's connections are kept: its own [`Conntrack`], or one that every worker
/// of a switch shares (behind a lock the dataplane owns).
pub trait ConnTable: Debug + Send {
    /// [`Conntrack::process`].
    fn process(
        &mut self,
        packet: &CtPacket,
        commit: bool,
        set_mark: Option<(u32, u32)>,
        now: u64,
    ) -> CtVerdict;
    /// [`Conntrack::refresh`].
    fn refresh(&mut self, conn: &ConnKey, now: u64);
    /// [`Conntrack::expire`].
    fn expire(&mut self, now: u64, out: &mut Vec<ConnKey>);
    /// [`Conntrack::stats`].
    fn stats(&self) -> CtStats;
    /// A copy of the connections, for a trace to run on.
    fn snapshot(&self) -> Conntrack;
}

impl ConnTable for Conntrack {
    fn process(
        &mut self,
        packet: &CtPacket,
        commit: bool,
        set_mark: Option<(u32, u32)>,
        now: u64,
    ) -> CtVerdict {
        Conntrack::process(self, packet, commit, set_mark, now)
    }

    fn refresh(&mut self, conn: &ConnKey, now: u64) {
        Conntrack::refresh(self, conn, now);
    }

    fn expire(&mut self, now: u64, out: &mut Vec<ConnKey>) {
        Conntrack::expire(self, now, out);
    }

    fn stats(&self) -> CtStats {
        Conntrack::stats(self)
    }

    fn snapshot(&self) -> Conntrack {
        self.clone()
    }
}

/// The generation bucket of a connection.
pub(super) fn conn_bucket(conn: &ConnKey) -> u16 {
    (conn.hash64().wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54) as u16 % DEP_BUCKETS as u16
}

/// `+trk+est` style names of state bits.
pub fn state_names(bits: u8) -> String {
    let names = [
        (state::NEW, "new"),
        (state::EST, "est"),
        (state::REL, "rel"),
        (state::RPL, "rpl"),
        (state::INV, "inv"),
        (state::TRK, "trk"),
    ];
    let mut out = String::new();
    for (bit, name) in names {
        if bits & bit != 0 {
            out.push('+');
            out.push_str(name);
        }
    }
    if out.is_empty() {
        out.push_str("-trk");
    }
    out
}

impl Pipeline {
    /// Runs `ct` for the walk's packet.
    pub(super) fn ct_action(
        &mut self,
        config: &Config,
        walk: &mut Walk<'_>,
        ct: &CtAction,
        now: u64,
    ) {
        let packet = match walk.packet {
            Some((frame, layout)) => CtPacket::parse(frame, &walk.key, layout, ct.zone),
            None => CtPacket::from_key(&walk.key, ct.zone),
        };
        // The tuple's bucket is its connection's whichever way it goes (the hash is
        // symmetric): a connection the packet removed (a reopening SYN, a timeout found on the
        // way) is named by it when the verdict names none.
        let tuple = packet.as_ref().map(|p| p.tuple);
        let verdict = match packet {
            Some(packet) => {
                let mark = ct.mark.filter(|_| ct.commit);
                self.conntrack.process(&packet, ct.commit, mark, now)
            }
            None => CtVerdict {
                state: state::TRK | state::INV,
                mark: 0,
                conn: None,
                changed: false,
            },
        };
        // A FIN or RST starts the end of a connection: as Linux tears an offloaded flow
        // down at the first FIN, the cached and offloaded decisions of the connection go, so
        // that the tracker sees the rest of the teardown (the last ACKs included) until the
        // connection is closed.
        let ending = walk.key.tcp_flags & 0x005 != 0;
        if (verdict.changed || ending)
            && let Some(conn) = verdict.conn.or(tuple)
        {
            self.conn_changed(&conn);
        }
        self.trace(walk.depth, TraceKind::Conntrack, || {
            format!(
                "ct(zone={}{}): {} mark={:#x}{}",
                ct.zone,
                if ct.commit { ",commit" } else { "" },
                state_names(verdict.state),
                verdict.mark,
                if verdict.conn.is_some() {
                    ""
                } else {
                    " (no connection stored)"
                }
            )
        });
        let established = verdict.state & state::EST != 0
            && verdict.state & (state::NEW | state::INV | state::REL) == 0;
        let steady = walk.key.tcp_flags & 0x007 == 0;
        // An ICMP echo's connection is keyed by its identifier, which the flow key (and the
        // kernel's) does not hold: a decision for one echo would be taken for another's.
        let keyed = |conn: &ConnKey| conn.proto != 1 && conn.proto != 58;
        match verdict.conn {
            Some(conn) if established && steady && keyed(&conn) => {
                walk.resolution.depend(conn_bucket(&conn));
                match walk.resolution.conn {
                    Some(other) if other != conn => walk.resolution.uncacheable = true,
                    _ => walk.resolution.conn = Some(conn),
                }
            }
            _ => walk.resolution.uncacheable = true,
        }
        if let Some(table) = ct.table {
            let saved = (walk.key.ct_state, walk.key.ct_zone, walk.key.ct_mark);
            walk.key.ct_state = verdict.state;
            walk.key.ct_zone = ct.zone;
            walk.key.ct_mark = verdict.mark;
            self.descend(config, walk, table, "ct", now);
            (walk.key.ct_state, walk.key.ct_zone, walk.key.ct_mark) = saved;
        }
    }

    /// A connection changed: the decisions that used it are stale, here and in the other
    /// workers.
    fn conn_changed(&mut self, conn: &ConnKey) {
        let bucket = conn_bucket(conn);
        self.bump_bucket(bucket);
        if self.tracing.is_none() {
            self.events.push(Event::Conn { bucket });
        }
    }

    /// Keeps `conn` alive: packets of it were forwarded at `now` by a cache or the kernel,
    /// unseen by the tracker.
    pub fn refresh_conn(&mut self, conn: &ConnKey, now: u64) {
        self.conntrack.refresh(conn, now);
    }

    /// Removes expired connections; the decisions that used them go stale.
    pub(super) fn expire_conns(&mut self, now: u64) {
        let mut gone = Vec::new();
        self.conntrack.expire(now, &mut gone);
        for conn in &gone {
            self.conn_changed(conn);
        }
    }

    /// The connection tracker's counters.
    pub fn conntrack_stats(&self) -> crate::conntrack::CtStats {
        self.conntrack.stats()
    }

    /// The tracked connections, as the pipeline's table holds them now.
    pub fn connections(&self) -> Vec<crate::conntrack::ConnEntry> {
        self.conntrack.snapshot().iter().collect()
    }

    /// Uses `table` for this pipeline's connections (several workers share one).
    pub fn set_conntrack(&mut self, table: Box<dyn ConnTable>) {
        self.conntrack = table;
        self.cache.clear();
    }
}
