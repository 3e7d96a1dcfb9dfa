//! Rate control: how many frames are due at a given moment, and how long to sleep until the
//! next ones are. Time is passed in, so that the arithmetic is tested without a clock.

use std::time::{Duration, Instant};

/// A target rate, or none (as fast as possible).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// As fast as possible.
    Max,
    /// Packets per second.
    Pps(f64),
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        let (digits, scale) = match s.chars().last() {
            Some('k' | 'K') => (&s[..s.len() - 1], 1e3),
            Some('m' | 'M') => (&s[..s.len() - 1], 1e6),
            _ => (s, 1.0),
        };
        match digits.parse::<f64>() {
            Ok(pps) if pps.is_finite() && pps > 0.0 => Ok(Rate::Pps(pps * scale)),
            _ => Err("want packets per second (e.g. 10000, 250k, 2M) or max".to_owned()),
        }
    }
}

/// Spreads frames over time at a target rate, in chunks: the sender asks how many are due,
/// sends them, and sleeps when fewer than a chunk are.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    rate: Rate,
    start: Instant,
}

impl Pacer {
    /// A pacer whose clock starts at `start`.
    pub fn new(rate: Rate, start: Instant) -> Pacer {
        Pacer { rate, start }
    }

    /// The target rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// How many frames should have gone by `now` beyond the `sent` that have; `None` when
    /// there is no limit.
    pub fn due(&self, now: Instant, sent: u64) -> Option<u64> {
        match self.rate {
            Rate::Max => None,
            Rate::Pps(pps) => {
                let owed = (now.saturating_duration_since(self.start).as_secs_f64() * pps) as u64;
                Some(owed.saturating_sub(sent))
            }
        }
    }

    /// When `n` more frames than `sent` will be due (`start` for an unlimited rate).
    pub fn when(&self, sent: u64, n: u64) -> Instant {
        match self.rate {
            Rate::Max => self.start,
            Rate::Pps(pps) => self.start + Duration::from_secs_f64((sent + n) as f64 / pps),
        }
    }

    /// The frames worth `interval` at the target rate (at least one); `None` when unlimited.
    pub fn frames_in(&self, interval: Duration) -> Option<u64> {
        match self.rate {
            Rate::Max => None,
            Rate::Pps(pps) => Some(((pps * interval.as_secs_f64()) as u64).max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        assert_eq!("max".parse(), Ok(Rate::Max));
        assert_eq!("10000".parse(), Ok(Rate::Pps(10000.0)));
        assert_eq!("250k".parse(), Ok(Rate::Pps(250_000.0)));
        assert_eq!("1.5M".parse(), Ok(Rate::Pps(1_500_000.0)));
        assert!("0".parse::<Rate>().is_err());
        assert!("-3".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
    }

    #[test]
    fn due_follows_the_rate() {
        let t0 = Instant::now();
        let p = Pacer::new(Rate::Pps(1000.0), t0);
        assert_eq!(p.due(t0, 0), Some(0));
        assert_eq!(p.due(t0 + Duration::from_millis(10), 0), Some(10));
        assert_eq!(p.due(t0 + Duration::from_millis(10), 4), Some(6));
        assert_eq!(p.due(t0 + Duration::from_millis(10), 40), Some(0));
        assert_eq!(p.when(10, 5), t0 + Duration::from_millis(15));
        assert_eq!(p.frames_in(Duration::from_millis(1)), Some(1));
        assert_eq!(p.frames_in(Duration::from_micros(10)), Some(1));
        let max = Pacer::new(Rate::Max, t0);
        assert_eq!(max.due(t0, 5), None);
        assert_eq!(max.frames_in(Duration::from_secs(1)), None);
    }
}
