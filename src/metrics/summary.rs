//! Percentile summaries of latency histograms, in milliseconds (the family's unit).

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency statistics in milliseconds. All zero when nothing was recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

impl LatencySummary {
    /// Summarises a nanosecond histogram. `overflow_max_ns` (values beyond the histogram's
    /// range) raises the max so an overflow is never hidden.
    pub fn from_histogram(h: &Histogram<u64>, overflow_max_ns: u64) -> Self {
        if h.is_empty() {
            return LatencySummary {
                max: ms(overflow_max_ns),
                ..Default::default()
            };
        }
        LatencySummary {
            min: ms(h.min()),
            mean: h.mean() / 1e6,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max().max(overflow_max_ns)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::new_histogram;

    #[test]
    fn percentiles_in_milliseconds() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1_000).unwrap(); // 1 us .. 1 ms
        }
        let s = LatencySummary::from_histogram(&h, 0);
        assert!((s.p50 - 0.5).abs() < 0.001, "{s:?}");
        assert!((s.p99 - 0.99).abs() < 0.001, "{s:?}");
        assert!((s.max - 1.0).abs() < 0.001, "{s:?}");
        assert!((s.min - 0.001).abs() < 0.0001, "{s:?}");
    }

    #[test]
    fn overflow_shows_in_max() {
        let h = new_histogram();
        let s = LatencySummary::from_histogram(&h, 7_200_000_000_000);
        assert_eq!(s.max, 7_200_000.0);
    }
}
