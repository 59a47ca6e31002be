//! Order statistics over a handful of samples (nearest-rank percentiles).

/// min / p50 / p95 / max of one series, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(values: &[f64]) -> Option<Summary> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Some(Summary {
            n: v.len(),
            min: v[0],
            p50: percentile(&v, 50.0),
            p95: percentile(&v, 95.0),
            max: v[v.len() - 1],
        })
    }
}

/// Nearest-rank percentile of sorted, non-empty `v`.
fn percentile(v: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// `"  p50   p95   min   max"` cells of a summary, or dashes.
pub fn cells(s: Option<Summary>) -> String {
    match s {
        Some(s) => format!(
            "{:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            s.p50, s.p95, s.min, s.max
        ),
        None => format!("{:>8} {:>8} {:>8} {:>8}", "-", "-", "-", "-"),
    }
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        let s = Summary::of(&v).unwrap();
        assert_eq!((s.min, s.p50, s.p95, s.max), (1.0, 10.0, 19.0, 20.0));
        let s = Summary::of(&[3.0]).unwrap();
        assert_eq!((s.p50, s.p95), (3.0, 3.0));
        assert!(Summary::of(&[]).is_none());
    }
}
