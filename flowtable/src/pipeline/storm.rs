//! Storm control: a port's broadcast and multicast frames, counted against its storm limit
//! (frames past it dropped) and against the loop guard (a rate no host sends, only a frame
//! circulating in a loop). A port the loop guard trips on is cut off for a while: every frame
//! it brings in is dropped, the addresses learned on it (which a loop poisons: a host's own
//! frames come back in on the wrong port) are forgotten, and the owner is told
//! ([`Pipeline::take_blocked`]) so that floods leave it out too.
//!
//! A loop shows in a second way: hosts' addresses move back and forth between the looped
//! ports as their own frames come back in. A port that takes more than [`FLAP_LIMIT`] address
//! moves a second is blocked the same way (a frame looping as unicast, which no broadcast
//! count sees, starts so).
//!
//! Token buckets of one second's worth, in thousandths of a frame, refilled from `now`.
//! Each worker keeps its own, so with several workers serving one port the limits apply per
//! worker.

use std::collections::HashMap;

use super::Pipeline;
use crate::action::DropReason;
use crate::config::LOOP_GUARD_BLOCK_NS;
use crate::port::PortId;

/// The most address moves onto one port a second before the loop guard blocks it (hosts that
/// move, as a migrated VM, move once).
pub(crate) const FLAP_LIMIT: u32 = 50;

/// One token bucket: up to `rate` frames per second, a second's worth of burst.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Thousandths of a frame.
    tokens: u64,
    last: u64,
}

impl Bucket {
    /// Takes one frame's token at `now` if there is one.
    fn take(&mut self, rate: u32, now: u64) -> bool {
        let full = u64::from(rate) * 1000;
        let elapsed = now.saturating_sub(self.last).min(1_000_000_000);
        // ns × frames/s ÷ 10^6 = thousandths of a frame.
        self.tokens = (self.tokens + elapsed * u64::from(rate) / 1_000_000).min(full);
        self.last = now;
        if self.tokens >= 1000 {
            self.tokens -= 1000;
            true
        } else {
            false
        }
    }

    fn full(rate: u32, now: u64) -> Bucket {
        Bucket {
            tokens: u64::from(rate) * 1000,
            last: now,
        }
    }
}

/// A port's storm state in one pipeline.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PortStorm {
    limit: Option<Bucket>,
    guard: Option<Bucket>,
    flaps: Option<Bucket>,
    blocked_until: u64,
}

/// The storm state of every port that has seen broadcast or multicast.
pub(super) type Storms = HashMap<PortId, PortStorm, ahash::RandomState>;

/// A port the loop guard blocked, for the owner to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    /// The port.
    pub port: PortId,
    /// Until when its broadcast and multicast frames are dropped.
    pub until: u64,
}

impl Pipeline {
    /// Whether `port` is blocked by the loop guard at `now` (one comparison while no port
    /// is).
    pub(super) fn port_blocked(&self, port: PortId, now: u64) -> bool {
        now < self.blocked_until_max
            && self
                .storms
                .get(&port)
                .is_some_and(|s| now < s.blocked_until)
    }

    /// Counts a broadcast or multicast frame in on `port` at `now`; the reason to drop it, if
    /// it is past the port's storm limit or the loop guard.
    pub(super) fn storm_check(&mut self, port: PortId, now: u64) -> Option<DropReason> {
        let guard_rate = self.config.loop_guard_pps;
        let limit_rate = self.config.port(port).and_then(|p| p.security.storm_limit);
        if guard_rate == 0 && limit_rate.is_none() {
            return None;
        }
        let state = self.storms.entry(port).or_default();
        if now < state.blocked_until {
            return Some(DropReason::Storm);
        }
        if guard_rate > 0 {
            let guard = state
                .guard
                .get_or_insert_with(|| Bucket::full(guard_rate, now));
            if !guard.take(guard_rate, now) {
                self.block(port, now);
                return Some(DropReason::Storm);
            }
        }
        if let Some(rate) = limit_rate {
            let limit = state.limit.get_or_insert_with(|| Bucket::full(rate, now));
            if !limit.take(rate, now) {
                return Some(DropReason::Storm);
            }
        }
        None
    }

    /// Counts an address moving onto `port` at `now` against the loop guard.
    pub(super) fn flap_check(&mut self, port: PortId, now: u64) {
        if self.config.loop_guard_pps == 0 {
            return;
        }
        let state = self.storms.entry(port).or_default();
        let flaps = state
            .flaps
            .get_or_insert_with(|| Bucket::full(FLAP_LIMIT, now));
        if !flaps.take(FLAP_LIMIT, now) {
            self.block(port, now);
        }
    }

    /// The loop guard trips on `port`: every frame it brings in is dropped for
    /// [`LOOP_GUARD_BLOCK_NS`], and what was learned on it is forgotten.
    fn block(&mut self, port: PortId, now: u64) {
        let until = now.saturating_add(LOOP_GUARD_BLOCK_NS);
        let state = self.storms.entry(port).or_default();
        state.blocked_until = until;
        state.guard = None;
        state.flaps = None;
        self.blocked_until_max = self.blocked_until_max.max(until);
        self.stats.loop_guard_trips += 1;
        self.blocked.push(Blocked { port, until });
        self.forget_port(port);
    }

    /// The ports the loop guard blocked since the last call.
    pub fn take_blocked(&mut self) -> std::vec::Drain<'_, Blocked> {
        self.blocked.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_bucket_gives_its_rate_and_a_seconds_burst() {
        let mut b = Bucket::full(100, 0);
        let burst = (0..1000).filter(|_| b.take(100, 0)).count();
        assert_eq!(burst, 100, "a second's worth at once");
        assert!(!b.take(100, 5 * MS), "5 ms refill half a frame");
        assert!(b.take(100, 10 * MS), "10 ms refill one frame");
        let later = (0..1000).filter(|_| b.take(100, 10_000 * MS)).count();
        assert_eq!(later, 100, "the burst never grows past a second's worth");
    }
}
