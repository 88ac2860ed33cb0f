//! When each batch is meant to start: as fast as possible (closed loop), or on a fixed
//! schedule derived from the target rate (open loop).
//!
//! In open loop, latency is measured from the intended start, so a stall in the server (or in
//! us) shows up in the figures instead of silently thinning the load (no coordinated omission).

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub enum Schedule {
    ClosedLoop,
    Open {
        first: Instant,
        /// Time between this worker's batches, in nanoseconds.
        period_ns: f64,
        next_index: u64,
    },
}

impl Schedule {
    /// `target` is the total rate in commands/s over all `workers`; each batch holds `batch`
    /// commands. Worker `index` is offset by `index / workers` of a period so that workers do not
    /// fire together.
    pub fn new(
        target: Option<f64>,
        workers: usize,
        batch: usize,
        index: usize,
        start: Instant,
    ) -> Self {
        match target {
            None => Schedule::ClosedLoop,
            Some(rate) => {
                let per_worker = rate / workers as f64;
                let period_ns = batch as f64 * 1e9 / per_worker;
                let offset = period_ns * index as f64 / workers as f64;
                Schedule::Open {
                    first: start + Duration::from_nanos(offset as u64),
                    period_ns,
                    next_index: 0,
                }
            }
        }
    }

    pub fn is_open_loop(&self) -> bool {
        matches!(self, Schedule::Open { .. })
    }

    /// The intended start of the next batch, advancing the schedule; `None` in closed loop.
    #[inline]
    pub fn next_start(&mut self) -> Option<Instant> {
        match self {
            Schedule::ClosedLoop => None,
            Schedule::Open {
                first,
                period_ns,
                next_index,
            } => {
                let at = *first + Duration::from_nanos((*period_ns * *next_index as f64) as u64);
                *next_index += 1;
                Some(at)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_spaces_batches_by_rate_and_staggers_workers() {
        let start = Instant::now();
        // 1000 commands/s over 2 workers, batches of 10: each worker sends a batch every 20 ms.
        let mut w0 = Schedule::new(Some(1000.0), 2, 10, 0, start);
        let mut w1 = Schedule::new(Some(1000.0), 2, 10, 1, start);
        let a = w0.next_start().unwrap();
        let b = w0.next_start().unwrap();
        assert_eq!(b - a, Duration::from_millis(20));
        assert_eq!(w1.next_start().unwrap() - a, Duration::from_millis(10));
    }

    #[test]
    fn closed_loop_has_no_schedule() {
        let mut s = Schedule::new(None, 4, 1, 0, Instant::now());
        assert!(s.next_start().is_none());
        assert!(!s.is_open_loop());
    }
}
