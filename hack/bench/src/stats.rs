//! Percentiles and summaries of latency samples.

use serde::Serialize;

/// A latency distribution in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

/// The `q`-quantile (0..=1) of sorted samples by nearest rank; 0 when empty.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // Nearest rank: the smallest sample with at least q of the samples at or below it.
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Summarises samples given in microseconds (sorts them in place).
pub fn summarize_us(samples: &mut [u64]) -> Summary {
    samples.sort_unstable();
    let ms = |us: u64| us as f64 / 1000.0;
    let sum: u128 = samples.iter().map(|&s| s as u128).sum();
    Summary {
        count: samples.len(),
        mean_ms: if samples.is_empty() { 0.0 } else { sum as f64 / samples.len() as f64 / 1000.0 },
        p50_ms: ms(percentile(samples, 0.50)),
        p90_ms: ms(percentile(samples, 0.90)),
        p99_ms: ms(percentile(samples, 0.99)),
        max_ms: ms(samples.last().copied().unwrap_or(0)),
    }
}

impl Summary {
    /// A table row: `name`, count, p50, p90, p99 and max in milliseconds.
    pub fn row(&self, name: &str) -> Vec<String> {
        vec![
            name.to_owned(),
            self.count.to_string(),
            fmt_ms(self.p50_ms),
            fmt_ms(self.p90_ms),
            fmt_ms(self.p99_ms),
            fmt_ms(self.max_ms),
        ]
    }
}

/// Formats milliseconds for a table: three significant-ish digits.
pub fn fmt_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 0.50), 50);
        assert_eq!(percentile(&sorted, 0.99), 99);
        assert_eq!(percentile(&sorted, 1.0), 100);
        assert_eq!(percentile(&sorted, 0.0), 1);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn summary_in_milliseconds() {
        let mut samples = vec![3000, 1000, 2000, 4000];
        let s = summarize_us(&mut samples);
        assert_eq!((s.count, s.p50_ms, s.max_ms, s.mean_ms), (4, 2.0, 4.0, 2.5));
    }
}
