//! Order statistics for repetitions and latency samples.

/// Median of the values (mean of the two middle ones for an even count); NaN when empty.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Nearest-rank percentile of an ascending slice: the smallest value with at least `p` percent
/// of the samples at or below it. `p` in (0, 100]; 0 when empty.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // p * n / 100, less a hair, so that 99.9 % of 1000 is rank 999 despite binary fractions.
    let rank = (p * sorted.len() as f64 / 100.0 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median and range of a set of repetitions.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn summary(xs: &[f64]) -> Summary {
    let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Summary { median: median(xs), min, max }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn summary_has_the_range() {
        let s = summary(&[5.0, 1.0, 9.0, 3.0, 7.0]);
        assert_eq!(s, Summary { median: 5.0, min: 1.0, max: 9.0 });
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 50.0), 500);
        assert_eq!(percentile(&v, 99.0), 990);
        assert_eq!(percentile(&v, 99.9), 999);
        assert_eq!(percentile(&v, 100.0), 1000);
        // Too few samples for the tail: the tail percentiles are the maximum.
        let few = [10, 20, 30];
        assert_eq!(percentile(&few, 50.0), 20);
        assert_eq!(percentile(&few, 99.9), 30);
        assert_eq!(percentile(&few, 0.0), 10);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
