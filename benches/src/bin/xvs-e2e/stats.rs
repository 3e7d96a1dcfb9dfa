//! Summaries of repeated trials: min, median and max, and the ratio of two medians.

use serde::Serialize;

/// The spread of one figure over its trials.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub(crate) struct Summary {
    /// The smallest value.
    pub(crate) min: f64,
    /// The median (the mean of the middle two for an even count).
    pub(crate) median: f64,
    /// The largest value.
    pub(crate) max: f64,
    /// How many trials gave a value.
    pub(crate) n: usize,
}

/// The summary of the finite values, or `None` when there are none.
pub(crate) fn summarize(values: &[f64]) -> Option<Summary> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Summary {
        min: v[0],
        median,
        max: v[n - 1],
        n,
    })
}

/// `ours / theirs`, when both exist and `theirs` is not zero.
pub(crate) fn ratio(ours: Option<f64>, theirs: Option<f64>) -> Option<f64> {
    match (ours, theirs) {
        (Some(a), Some(b)) if b != 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let s = summarize(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.min, s.median, s.max, s.n), (1.0, 2.0, 3.0, 3));
        let s = summarize(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!(summarize(&[]), None);
        assert_eq!(summarize(&[f64::NAN]), None);
        assert_eq!(summarize(&[f64::NAN, 5.0]).unwrap().n, 1);
    }

    #[test]
    fn ratio_needs_both_and_a_divisor() {
        assert_eq!(ratio(Some(1.0), Some(2.0)), Some(0.5));
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(2.0)), None);
    }
}
