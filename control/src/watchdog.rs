//! systemd's watchdog, fed by the control thread only while every worker makes progress.
//!
//! A worker's loop count advances at least every 100 ms while it lives, busy or idle (its
//! sleep is bounded), so a count that stands still for long means a stuck worker. Then the
//! pings stop, systemd restarts xvsd after `WatchdogSec`, and the new daemon restores its
//! state. A stuck control thread stops the pings by itself. [`Liveness`] decides, without
//! I/O or clock; [`Watchdog`] reads the counters and the clock and sends.

use std::time::{Duration, Instant};

use crate::daemon::Daemon;
use crate::notify::Notifier;

/// A worker is stuck when its loop count stood still this long at least (ten times its
/// longest sleep), or the ping interval if that is longer.
pub const MIN_STALL: Duration = Duration::from_secs(1);

/// What to do at one look at the workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every worker progresses and a ping is due.
    Ping,
    /// Every worker progresses; the last ping is recent.
    Wait,
    /// These workers (by index) made no progress for too long: no ping.
    Stalled(Vec<usize>),
}

/// The decision: given each worker's progress counter over time, whether to ping.
#[derive(Debug, Clone)]
pub struct Liveness {
    interval: Duration,
    stall_after: Duration,
    last_ping: Option<Instant>,
    /// Per worker: its count at the last look, and since when it has had that count.
    seen: Vec<(u64, Instant)>,
}

impl Liveness {
    /// Pings every `interval` (half the watchdog's timeout) while no worker stood still for
    /// `max(interval, MIN_STALL)`.
    pub fn new(interval: Duration) -> Liveness {
        Liveness {
            interval,
            stall_after: interval.max(MIN_STALL),
            last_ping: None,
            seen: Vec::new(),
        }
    }

    /// How long a worker may stand still.
    pub fn stall_after(&self) -> Duration {
        self.stall_after
    }

    /// Looks at the workers' `progress` counters at `now`. A worker seen for the first time
    /// counts as having just progressed.
    pub fn observe(&mut self, now: Instant, progress: &[u64]) -> Verdict {
        if self.seen.len() != progress.len() {
            self.seen = progress.iter().map(|&count| (count, now)).collect();
        }
        let mut stalled = Vec::new();
        for (worker, (&count, seen)) in progress.iter().zip(&mut self.seen).enumerate() {
            if count != seen.0 {
                *seen = (count, now);
            } else if now.saturating_duration_since(seen.1) >= self.stall_after {
                stalled.push(worker);
            }
        }
        if !stalled.is_empty() {
            return Verdict::Stalled(stalled);
        }
        let due = self
            .last_ping
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if due {
            self.last_ping = Some(now);
            Verdict::Ping
        } else {
            Verdict::Wait
        }
    }
}

/// The watchdog as xvsd runs it: off unless systemd set `WATCHDOG_USEC` for us.
#[derive(Debug)]
pub struct Watchdog {
    notifier: Notifier,
    liveness: Option<Liveness>,
    /// The workers reported stuck, so that a stall is logged once.
    reported: Vec<usize>,
}

impl Watchdog {
    /// Pings through `notifier` at half the timeout it was given, if it was given one.
    pub fn new(notifier: &Notifier) -> Watchdog {
        let liveness = notifier.watchdog_timeout().map(|timeout| {
            let liveness = Liveness::new(timeout / 2);
            tracing::info!(
                timeout_s = timeout.as_secs_f64(),
                stall_s = liveness.stall_after().as_secs_f64(),
                "systemd watchdog on: pinging while every worker makes progress"
            );
            liveness
        });
        Watchdog {
            notifier: notifier.clone(),
            liveness,
            reported: Vec::new(),
        }
    }

    /// Looks at the daemon's workers and pings if they all progress and a ping is due. Call
    /// it from the control loop at least a few times per interval; it reads one counter per
    /// worker and asks none of them anything.
    pub fn tick(&mut self, daemon: &Daemon) {
        let Some(liveness) = &mut self.liveness else {
            return;
        };
        let progress = daemon.switch.worker_progress();
        match liveness.observe(Instant::now(), &progress) {
            Verdict::Ping => {
                if !self.reported.is_empty() {
                    tracing::info!("every worker makes progress again: watchdog pings resume");
                    self.reported.clear();
                }
                self.notifier.watchdog();
            }
            Verdict::Wait => {}
            Verdict::Stalled(workers) => {
                if workers != self.reported {
                    tracing::error!(
                        ?workers,
                        stall_s = liveness.stall_after().as_secs_f64(),
                        "worker made no progress: withholding the watchdog ping \
                         (systemd restarts xvsd when the watchdog runs out)"
                    );
                    self.reported = workers;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);
    const TICK: Duration = Duration::from_millis(100);

    /// Runs `liveness` from `start` for `ticks` ticks of 100 ms, the workers' counters given
    /// by `progress(tick)`; returns the verdicts.
    fn run(
        liveness: &mut Liveness,
        start: Instant,
        ticks: u32,
        progress: impl Fn(u32) -> Vec<u64>,
    ) -> Vec<Verdict> {
        (0..ticks)
            .map(|t| liveness.observe(start + TICK * t, &progress(t)))
            .collect()
    }

    fn pings(verdicts: &[Verdict]) -> usize {
        verdicts.iter().filter(|v| **v == Verdict::Ping).count()
    }

    #[test]
    fn live_workers_get_a_ping_every_interval() {
        let mut liveness = Liveness::new(5 * SEC);
        let verdicts = run(&mut liveness, Instant::now(), 200, |t| {
            vec![u64::from(t), u64::from(t) * 3]
        });
        // 20 s: pings at 0, 5, 10 and 15 s.
        assert_eq!(pings(&verdicts), 4);
        assert_eq!(verdicts[0], Verdict::Ping, "the first look pings");
        assert_eq!(verdicts[1], Verdict::Wait);
        assert_eq!(verdicts[50], Verdict::Ping);
    }

    #[test]
    fn an_idle_worker_that_advances_slowly_is_alive() {
        // An idle worker wakes from its bounded sleep every 100 ms: one loop per look.
        let mut liveness = Liveness::new(500 * Duration::from_millis(1));
        let verdicts = run(&mut liveness, Instant::now(), 100, |t| vec![u64::from(t)]);
        assert!(verdicts.iter().all(|v| *v != Verdict::Stalled(vec![0])));
        assert_eq!(pings(&verdicts), 20);
    }

    #[test]
    fn a_stuck_worker_stops_the_pings_after_the_stall_limit() {
        let mut liveness = Liveness::new(2 * SEC);
        let start = Instant::now();
        // Worker 1 stops at tick 30 (3 s), worker 0 keeps going.
        let progress = |t: u32| vec![u64::from(t), u64::from(t.min(30))];
        let verdicts = run(&mut liveness, start, 100, progress);
        // Standing still since 3 s, stuck from 5 s on (the 2 s limit).
        assert!(!verdicts[..50].contains(&Verdict::Stalled(vec![1])));
        assert!(
            verdicts[50..]
                .iter()
                .all(|v| *v == Verdict::Stalled(vec![1]))
        );
        assert_eq!(pings(&verdicts[50..]), 0, "no ping once stuck");
        assert_eq!(pings(&verdicts[..50]), 3, "at 0, 2 and 4 s");
    }

    #[test]
    fn the_stall_limit_is_never_below_a_second() {
        let mut liveness = Liveness::new(Duration::from_millis(200));
        assert_eq!(liveness.stall_after(), MIN_STALL);
        let start = Instant::now();
        // A worker that advances only every 800 ms (a slow stretch) is not stuck.
        let verdicts = run(&mut liveness, start, 40, |t| vec![u64::from(t / 8)]);
        assert!(verdicts.iter().all(|v| !matches!(v, Verdict::Stalled(_))));
    }

    #[test]
    fn a_worker_that_recovers_gets_the_pings_back() {
        let mut liveness = Liveness::new(SEC);
        let start = Instant::now();
        // Stands still from 1 s to 4 s, then moves again.
        let progress = |t: u32| {
            vec![if (10..40).contains(&t) {
                10
            } else {
                u64::from(t)
            }]
        };
        let verdicts = run(&mut liveness, start, 60, progress);
        assert_eq!(verdicts[25], Verdict::Stalled(vec![0]));
        assert_eq!(verdicts[40], Verdict::Ping, "due at once on recovery");
        assert_eq!(verdicts[41], Verdict::Wait);
    }

    #[test]
    fn counters_compare_by_change_not_by_size() {
        // A wrapped counter still counts as progress.
        let mut liveness = Liveness::new(SEC);
        let start = Instant::now();
        assert_eq!(liveness.observe(start, &[u64::MAX]), Verdict::Ping);
        assert_eq!(liveness.observe(start + 2 * SEC, &[0]), Verdict::Ping);
    }
}
