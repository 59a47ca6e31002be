//! Nearest-rank percentiles with a p99 (the run-start harness's `Summary` stops at
//! p95, and thousands of samples make the tail worth showing).

#[derive(Debug, Clone, Copy)]
pub struct Pct {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Pct {
    pub fn of(values: &[f64]) -> Option<Pct> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Some(Pct {
            p50: percentile(&v, 50.0),
            p95: percentile(&v, 95.0),
            p99: percentile(&v, 99.0),
            max: v[v.len() - 1],
        })
    }
}

/// Nearest-rank percentile of sorted, non-empty `v`.
fn percentile(v: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// `p50 / p95 / p99 / max` cells, or dashes.
pub fn cells(s: Option<Pct>) -> String {
    match s {
        Some(s) => format!(
            "{:>7.1} {:>7.1} {:>7.1} {:>7.1}",
            s.p50, s.p95, s.p99, s.max
        ),
        None => format!("{:>7} {:>7} {:>7} {:>7}", "-", "-", "-", "-"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        let s = Pct::of(&v).unwrap();
        assert_eq!((s.p50, s.p95, s.p99, s.max), (100.0, 190.0, 198.0, 200.0));
        let s = Pct::of(&[3.0]).unwrap();
        assert_eq!((s.p50, s.p99), (3.0, 3.0));
        assert!(Pct::of(&[]).is_none());
    }
}
