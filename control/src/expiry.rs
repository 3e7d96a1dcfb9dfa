//! Flow timeouts: `idle_timeout` and `hard_timeout`, as OpenFlow switches expire flows.
//!
//! Once a second, when any rule has a timeout, the daemon reads every rule's packet count
//! (the workers' and, folded in, the kernel fast path's: a flow the kernel carries is not
//! idle) and removes the rules whose time is up from the desired state, like a `del-flows`:
//! saved, published, gone from `dump-flows`. A rule with `send_flow_rem` is logged when it
//! goes (xvs has no OpenFlow controller to tell). `hard_timeout` counts from when the rule
//! was added, saved with it, so a restart does not extend it; `idle_timeout` counts from the
//! last packet this daemon saw counted (a restart starts it afresh).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often timeouts are checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What the daemon remembers of each rule with an idle timeout.
#[derive(Debug, Default)]
pub(crate) struct FlowExpiry {
    last_check: Option<Instant>,
    /// Rule id → (its packet count, when it last changed).
    activity: HashMap<u32, (u64, Instant)>,
}

/// A rule's timeouts, as the daemon reads them from its flow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) id: u32,
    pub(crate) idle: u16,
    pub(crate) hard: u16,
    /// Seconds since the Unix epoch when it was added.
    pub(crate) added: u64,
}

/// Why a rule went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Idle,
    Hard,
}

impl Reason {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Reason::Idle => "idle_timeout",
            Reason::Hard => "hard_timeout",
        }
    }
}

impl FlowExpiry {
    /// Whether a check is due at `now`.
    pub(crate) fn due(&mut self, now: Instant) -> bool {
        if self
            .last_check
            .is_some_and(|last| now.duration_since(last) < CHECK_EVERY)
        {
            return false;
        }
        self.last_check = Some(now);
        true
    }

    /// The rules whose time is up at `now` (`unix_now` in seconds since the epoch), given
    /// each rule's packet count.
    pub(crate) fn expired(
        &mut self,
        rules: &[Timeouts],
        packets: impl Fn(u32) -> u64,
        now: Instant,
        unix_now: u64,
    ) -> Vec<(u32, Reason)> {
        let mut gone = Vec::new();
        for rule in rules {
            let count = packets(rule.id);
            let (last_count, last_change) = self.activity.entry(rule.id).or_insert((count, now));
            if count != *last_count {
                (*last_count, *last_change) = (count, now);
            }
            if rule.hard > 0 && unix_now >= rule.added.saturating_add(rule.hard.into()) {
                gone.push((rule.id, Reason::Hard));
            } else if rule.idle > 0
                && now.duration_since(*last_change) >= Duration::from_secs(rule.idle.into())
            {
                gone.push((rule.id, Reason::Idle));
            }
        }
        let live: Vec<u32> = rules.iter().map(|r| r.id).collect();
        self.activity.retain(|id, _| live.contains(id));
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_rules_go_after_their_idle_time_and_busy_ones_stay() {
        let mut expiry = FlowExpiry::default();
        let t0 = Instant::now();
        let rules = [
            Timeouts {
                id: 1,
                idle: 2,
                hard: 0,
                added: 1000,
            },
            Timeouts {
                id: 2,
                idle: 2,
                hard: 0,
                added: 1000,
            },
            Timeouts {
                id: 3,
                idle: 0,
                hard: 5,
                added: 1000,
            },
        ];
        let s = Duration::from_secs(1);
        assert!(expiry.expired(&rules, |_| 0, t0, 1000).is_empty());
        // Rule 2 keeps counting packets; rule 1 does not.
        assert!(
            expiry
                .expired(&rules, |id| if id == 2 { 5 } else { 0 }, t0 + s, 1001)
                .is_empty()
        );
        let gone = expiry.expired(&rules, |id| if id == 2 { 9 } else { 0 }, t0 + 2 * s, 1002);
        assert_eq!(gone, [(1, Reason::Idle)]);
        // Hard timeouts count from when the rule was added, whatever its traffic.
        let gone = expiry.expired(&rules[1..], |id| u64::from(id) * 100, t0 + 3 * s, 1005);
        assert_eq!(gone, [(3, Reason::Hard)]);
        assert!(expiry.due(t0));
        assert!(!expiry.due(t0 + s / 2));
        assert!(expiry.due(t0 + s));
    }
}
