//! Order statistics over a handful of samples. Every percentile is nearest-rank: a
//! value that was actually measured, never an interpolation between two.

/// Nearest-rank percentile of `sorted` (ascending): the smallest sample with at
/// least `p` percent of the samples at or below it. `None` when there are none.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// min / p50 / p95 / p99 / max of one series (milliseconds, as the callers use it).
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    /// `None` for an empty series: the tables print dashes rather than zeros.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Some(Summary {
            n: v.len(),
            min: *v.first()?,
            p50: percentile(&v, 50.0)?,
            p95: percentile(&v, 95.0)?,
            p99: percentile(&v, 99.0)?,
            max: *v.last()?,
        })
    }
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        let s = Summary::of(&v).unwrap();
        assert_eq!(
            (s.n, s.min, s.p50, s.p95, s.p99, s.max),
            (20, 1.0, 10.0, 19.0, 20.0, 20.0)
        );
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        let s = Summary::of(&v).unwrap();
        assert_eq!((s.p50, s.p95, s.p99, s.max), (100.0, 190.0, 198.0, 200.0));
        // An even count takes the lower middle, not the mean of the two.
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4], 0.0), Some(1));
        assert_eq!(percentile(&[1, 2, 3, 4], 100.0), Some(4));
    }

    #[test]
    fn unsorted_input_and_edges() {
        let s = Summary::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.min, s.p50, s.max), (1.0, 3.0, 5.0));
        let s = Summary::of(&[3.0]).unwrap();
        assert_eq!((s.p50, s.p95, s.p99), (3.0, 3.0, 3.0));
        assert!(Summary::of(&[]).is_none());
        assert_eq!(percentile::<Duration>(&[], 99.0), None);
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 99.0), Some(Duration::from_millis(99)));
    }

    #[test]
    fn mebibytes() {
        assert_eq!(mib(3 * 1024 * 1024 / 2), 1.5);
    }
}
