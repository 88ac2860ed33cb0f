//! Trace events: sampled commands and connection events, recorded by workers into a bounded
//! buffer in their interval data and turned into spans by the telemetry (see
//! `telemetry::spans`). Only recorded when OTLP export is on.
//!
//! Sampling costs one decrement and one branch per command: a countdown drawn from the
//! geometric distribution (the gap between two samples of a Bernoulli process with the
//! configured rate) is re-drawn only when it runs out. A sampled command costs a clock read and
//! a push into a buffer allocated with its capacity up front, so the per-command path never
//! allocates; what does not fit before the next publish is counted, not recorded.

use std::sync::Arc;
use std::time::Instant;

use crate::error::ErrorClass;
use crate::metrics::OpId;

/// Trace events a worker keeps between two publishes (about one per second); more are
/// counted in `trace_overflow`.
pub const TRACE_CAPACITY: usize = 16;

/// What a trace event describes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TraceKind {
    /// A sampled Redis command; `error` is its error class when it failed.
    Command { op: OpId, error: Option<ErrorClass> },
    /// A worker's first connection (its client initialisation).
    Connect,
    /// A connection re-established after it was lost: the span runs from the loss to the
    /// successful connect, over `attempts` connect attempts.
    Reconnect { attempts: u32 },
}

/// One event, timed on the monotonic clock.
#[derive(Debug, Clone)]
pub struct TraceEvent {
    pub kind: TraceKind,
    pub worker: u32,
    pub start: Instant,
    pub end: Instant,
    /// `host:port` of the server, when the worker knows it.
    pub server: Option<Arc<str>>,
}

/// Pushes `event` unless the buffer is full (then counts it in `overflow`). Never grows the
/// buffer of a worker (it is allocated with [`TRACE_CAPACITY`]).
#[inline]
pub fn push_trace(traces: &mut Vec<TraceEvent>, overflow: &mut u64, event: TraceEvent) {
    if traces.len() < traces.capacity().max(TRACE_CAPACITY) {
        traces.push(event);
    } else {
        *overflow += 1;
    }
}

/// Decides which commands are sampled: on average `rate` of them, independently.
#[derive(Debug, Clone)]
pub struct Sampler {
    rate: f64,
    countdown: u64,
    /// xorshift64* state: sampling must not disturb the workload's own RNG stream.
    state: u64,
}

impl Sampler {
    /// Never samples.
    pub fn off() -> Self {
        Sampler {
            rate: 0.0,
            countdown: u64::MAX,
            state: 1,
        }
    }

    /// Samples each command with probability `rate` (0 = never, 1 = every command).
    pub fn new(rate: f64, seed: u64) -> Self {
        if rate <= 0.0 {
            return Sampler::off();
        }
        let mut sampler = Sampler {
            rate: rate.min(1.0),
            countdown: 0,
            state: seed | 1,
        };
        sampler.rearm();
        sampler
    }

    /// One command: true if it is sampled.
    #[inline]
    pub fn tick(&mut self) -> bool {
        if self.countdown > 1 {
            self.countdown -= 1;
            return false;
        }
        self.rearm();
        true
    }

    #[cold]
    fn rearm(&mut self) {
        if self.rate <= 0.0 {
            self.countdown = u64::MAX;
            return;
        }
        if self.rate >= 1.0 {
            self.countdown = 1;
            return;
        }
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let bits = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        // Uniform in (0, 1]: ln never sees 0.
        let u = (bits as f64 + 1.0) / (1u64 << 53) as f64;
        let gap = (u.ln() / (1.0 - self.rate).ln()).floor();
        self.countdown = 1 + if gap.is_finite() { gap as u64 } else { 0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampled(rate: f64, n: u64) -> u64 {
        let mut s = Sampler::new(rate, 42);
        (0..n).filter(|_| s.tick()).count() as u64
    }

    #[test]
    fn sampling_rate_is_what_was_asked() {
        assert_eq!(sampled(0.0, 1_000_000), 0);
        assert_eq!(sampled(1.0, 1000), 1000);
        let n = 2_000_000;
        for rate in [0.001, 0.01, 0.5] {
            let got = sampled(rate, n) as f64 / n as f64;
            assert!(
                (got - rate).abs() / rate < 0.1,
                "rate {rate}: sampled {got}"
            );
        }
    }

    #[test]
    fn a_full_buffer_counts_instead_of_growing() {
        let mut traces = Vec::with_capacity(TRACE_CAPACITY);
        let mut overflow = 0;
        let now = Instant::now();
        for _ in 0..TRACE_CAPACITY + 3 {
            push_trace(
                &mut traces,
                &mut overflow,
                TraceEvent {
                    kind: TraceKind::Connect,
                    worker: 0,
                    start: now,
                    end: now,
                    server: None,
                },
            );
        }
        assert_eq!(traces.len(), TRACE_CAPACITY);
        assert_eq!(traces.capacity(), TRACE_CAPACITY);
        assert_eq!(overflow, 3);
    }
}
