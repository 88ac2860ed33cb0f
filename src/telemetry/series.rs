//! The run's cumulative figures, shared by the telemetry sinks so the Prometheus endpoint and
//! the OTLP export report identical numbers: per-operation outcome counts, the family's
//! millisecond histogram buckets filled from our HDR histograms (ns), and connection figures.
//! Folded from each interval's merged delta on the reporter thread; not per command.
//!
//! Derived operations (`workload::DERIVED_OPS`, e.g. RECEIVE) are not Redis commands and are
//! left out, as they are from the report's command totals, so the operation counts add up to
//! the report's `total_commands_count`.

use hdrhistogram::Histogram;

use crate::error::ErrorClass;
use crate::metrics::IntervalData;

/// Operation duration buckets (ms): the family's spec buckets plus finer sub-millisecond ones,
/// without which `histogram_quantile` cannot tell a 0.1 ms run from a 0.4 ms one.
pub const OPERATION_BUCKETS_MS: [f64; 24] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 25.0, 50.0,
    100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// Reconnection duration buckets (ms), as the family's spec has them.
pub const RECONNECTION_BUCKETS_MS: [f64; 8] = [
    100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 30000.0, 60000.0,
];

/// A cumulative histogram: per-bucket counts (not summed over buckets: OTLP wants them so, and
/// the Prometheus encoder sums them), the last one for `+Inf`, and the sum in milliseconds.
#[derive(Debug, Clone)]
pub struct BucketCounts {
    pub bounds_ms: &'static [f64],
    pub counts: Vec<u64>,
    pub sum_ms: f64,
}

impl BucketCounts {
    pub fn new(bounds_ms: &'static [f64]) -> Self {
        BucketCounts {
            bounds_ms,
            counts: vec![0; bounds_ms.len() + 1],
            sum_ms: 0.0,
        }
    }

    /// Adds an HDR histogram (ns). A value goes to the first bucket whose bound is at least
    /// the lowest value HDR treats as equal to it (3 significant digits), so a value recorded
    /// exactly on a bound stays in that bound's bucket; the sum uses the median equivalent.
    pub fn add_hdr(&mut self, hdr: &Histogram<u64>) {
        for v in hdr.iter_recorded() {
            let value = v.value_iterated_to();
            let count = v.count_at_value();
            let low_ms = hdr.lowest_equivalent(value) as f64 / 1e6;
            let index = self.bounds_ms.partition_point(|&b| b < low_ms);
            self.counts[index] += count;
            self.sum_ms += hdr.median_equivalent(value) as f64 / 1e6 * count as f64;
        }
    }

    /// Values too large for the HDR histogram: counted in `+Inf`, summed at their maximum.
    pub fn add_overflow(&mut self, count: u64, max_ns: u64) {
        if count > 0 {
            *self.counts.last_mut().expect("+Inf bucket") += count;
            self.sum_ms += max_ns as f64 / 1e6 * count as f64;
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// One Redis command's cumulative figures.
#[derive(Debug, Clone)]
pub struct OpState {
    pub name: String,
    pub success: u64,
    pub errors: [u64; ErrorClass::COUNT],
    pub duration: BucketCounts,
}

/// Everything the sinks report: cumulative since the measured run started.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// How many intervals are in it.
    pub generation: u64,
    pub ops: Vec<OpState>,
    pub conn_initiated: u64,
    pub conn_succeeded: u64,
    pub conn_failed: u64,
    pub drops: u64,
    pub reconnection: BucketCounts,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot::new()
    }
}

impl Snapshot {
    pub fn new() -> Self {
        Snapshot {
            generation: 0,
            ops: Vec::new(),
            conn_initiated: 0,
            conn_succeeded: 0,
            conn_failed: 0,
            drops: 0,
            reconnection: BucketCounts::new(&RECONNECTION_BUCKETS_MS),
        }
    }

    pub fn add(&mut self, delta: &IntervalData) {
        self.generation += 1;
        let ops = delta
            .per_command()
            .zip(&delta.derived)
            .filter(|(_, derived)| !**derived)
            .map(|(op, _)| op);
        for (name, stats) in ops {
            // The op table is fixed for a run; look up by name so a change cannot mix series.
            let index = match self.ops.iter().position(|o| o.name == name) {
                Some(i) => i,
                None => {
                    self.ops.push(OpState {
                        name: name.to_string(),
                        success: 0,
                        errors: [0; ErrorClass::COUNT],
                        duration: BucketCounts::new(&OPERATION_BUCKETS_MS),
                    });
                    self.ops.len() - 1
                }
            };
            let op = &mut self.ops[index];
            op.success += stats.success;
            for (mine, theirs) in op.errors.iter_mut().zip(stats.errors) {
                *mine += theirs;
            }
            op.duration.add_hdr(&stats.latency);
            op.duration
                .add_overflow(stats.overflow.count, stats.overflow.max_ns);
        }
        self.conn_initiated += delta.conn.initiated;
        self.conn_succeeded += delta.conn.succeeded;
        self.conn_failed += delta.conn.failed;
        self.drops += delta.conn.drops;
        self.reconnection.add_hdr(&delta.conn.reconnection);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::data::new_histogram;

    #[test]
    fn hdr_values_land_in_their_buckets() {
        let mut hdr = new_histogram();
        hdr.record(50_000).unwrap(); // 0.05 ms: on a bound
        hdr.record(1_000_000).unwrap(); // 1 ms: on a bound
        hdr.record(1_200_000).unwrap(); // 1.2 ms -> 1.5
        hdr.record(20_000_000_000).unwrap(); // 20 s -> +Inf
        let mut b = BucketCounts::new(&OPERATION_BUCKETS_MS);
        b.add_hdr(&hdr);
        b.add_overflow(1, 4_000_000_000_000);
        let at = |bound: f64| {
            OPERATION_BUCKETS_MS
                .iter()
                .position(|&x| x == bound)
                .unwrap()
        };
        assert_eq!(b.counts[at(0.05)], 1);
        assert_eq!(b.counts[at(1.0)], 1);
        assert_eq!(b.counts[at(1.5)], 1);
        assert_eq!(b.counts[OPERATION_BUCKETS_MS.len()], 2);
        assert_eq!(b.count(), 5);
        let expected = 0.05 + 1.0 + 1.2 + 20_000.0 + 4_000_000.0;
        assert!(
            (b.sum_ms - expected).abs() / expected < 1e-3,
            "{}",
            b.sum_ms
        );
    }
}
