//! The zero-loss rate, found as RFC 2544 finds throughput: a binary search over offered
//! rates, each step one short trial that passes when it lost no more than a tolerance.
//!
//! The search starts at the highest rate the switch forwarded under full load (the caller
//! measures it): if even that passes, it is the answer; otherwise the search halves the
//! interval between the best passing rate (at first zero) and the lowest failing one, for a
//! fixed number of steps, and answers with the best passing rate. Each step's result is kept
//! for the report.

use serde::Serialize;

/// What a trial of the search reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Probe {
    /// The rate the generator reached.
    pub(crate) offered_pps: f64,
    /// Frames sent.
    pub(crate) sent: u64,
    /// Frames that reached the sink.
    pub(crate) received: u64,
    /// Of the lost frames, those the source's veth could not hand to the switch.
    pub(crate) source_tx_dropped: Option<u64>,
}

/// What one trial of the search saw.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Step {
    /// The rate asked of the generator, packets per second.
    pub(crate) target_pps: f64,
    /// The rate the generator reached.
    pub(crate) offered_pps: f64,
    /// Frames sent.
    pub(crate) sent: u64,
    /// Frames that reached the sink.
    pub(crate) received: u64,
    /// Lost frames as a percentage of those sent.
    pub(crate) loss_pct: f64,
    /// Of the lost frames, those the source's veth could not hand to the switch (its ingress
    /// ring was full); the rest were lost in the switch or on its way out.
    pub(crate) source_tx_dropped: Option<u64>,
    /// Whether the loss was within the tolerance.
    pub(crate) passed: bool,
}

/// The outcome of a search.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Outcome {
    /// The offered rate of the best passing step, packets per second (0 if none passed).
    pub(crate) zero_loss_pps: f64,
    /// Every step, in order.
    pub(crate) steps: Vec<Step>,
}

/// Searches from `start_pps` down with `steps` trials; `trial(rate)` runs one. A step passes
/// when its loss is at most `tolerance_pct` percent of what it sent (and it sent something).
///
/// # Errors
/// The first error of `trial`.
pub(crate) fn zero_loss<E>(
    start_pps: f64,
    steps: u32,
    tolerance_pct: f64,
    mut trial: impl FnMut(f64) -> Result<Probe, E>,
) -> Result<Outcome, E> {
    let mut outcome = Outcome {
        zero_loss_pps: 0.0,
        steps: Vec::new(),
    };
    let (mut lo, mut hi) = (0.0_f64, start_pps);
    let mut target = start_pps;
    for _ in 0..steps {
        let target_pps = target.round().max(1.0);
        let Probe {
            offered_pps,
            sent,
            received,
            source_tx_dropped,
        } = trial(target_pps)?;
        let lost = sent.saturating_sub(received);
        let loss_pct = if sent == 0 {
            100.0
        } else {
            lost as f64 * 100.0 / sent as f64
        };
        let passed = sent > 0 && loss_pct <= tolerance_pct;
        outcome.steps.push(Step {
            target_pps,
            offered_pps,
            sent,
            received,
            loss_pct,
            source_tx_dropped,
            passed,
        });
        if passed {
            lo = target;
            if offered_pps > outcome.zero_loss_pps {
                outcome.zero_loss_pps = offered_pps;
            }
            if target >= start_pps {
                break;
            }
        } else {
            hi = target;
        }
        target = (lo + hi) / 2.0;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A switch that forwards everything up to `capacity` pps and drops the excess.
    fn probe(offered_pps: f64, sent: u64, received: u64) -> Probe {
        Probe {
            offered_pps,
            sent,
            received,
            source_tx_dropped: None,
        }
    }

    fn switch(capacity: f64) -> impl FnMut(f64) -> Result<Probe, ()> {
        move |rate| {
            let sent = rate as u64;
            Ok(probe(rate, sent, sent.min(capacity as u64)))
        }
    }

    #[test]
    fn converges_on_the_capacity() {
        let o = zero_loss(1_000_000.0, 8, 0.0, switch(600_000.0)).unwrap();
        assert_eq!(o.steps.len(), 8);
        assert!(o.zero_loss_pps <= 600_000.0);
        assert!(o.zero_loss_pps > 600_000.0 - 1_000_000.0 / 128.0);
        assert!(!o.steps[0].passed);
        assert_eq!(o.steps[1].target_pps, 500_000.0);
    }

    #[test]
    fn stops_when_the_start_passes() {
        let o = zero_loss(500_000.0, 6, 0.0, switch(600_000.0)).unwrap();
        assert_eq!(o.steps.len(), 1);
        assert_eq!(o.zero_loss_pps, 500_000.0);
    }

    #[test]
    fn tolerance_admits_a_little_loss() {
        // 0.001% of 1M is 10 frames.
        let lossy = |rate: f64| Ok::<_, ()>(probe(rate, rate as u64, rate as u64 - 10));
        let o = zero_loss(1_000_000.0, 3, 0.001, lossy).unwrap();
        assert!(o.steps[0].passed);
        let o = zero_loss(1_000_000.0, 3, 0.0, lossy).unwrap();
        assert!(!o.steps[0].passed);
    }

    #[test]
    fn nothing_passes_gives_zero() {
        let o = zero_loss(1_000_000.0, 4, 0.0, switch(0.0)).unwrap();
        assert_eq!(o.zero_loss_pps, 0.0);
        assert!(o.steps.iter().all(|s| !s.passed));
    }

    #[test]
    fn stray_frames_do_not_count_as_negative_loss() {
        let o = zero_loss(100.0, 1, 0.0, |r| Ok::<_, ()>(probe(r, 100, 103))).unwrap();
        assert_eq!(o.steps[0].loss_pct, 0.0);
    }
}
