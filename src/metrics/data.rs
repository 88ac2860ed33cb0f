//! What one worker (or the merged run) records over an interval.

use std::sync::Arc;

use hdrhistogram::Histogram;

use crate::error::ErrorClass;
use crate::metrics::outage::{EDGE_CAPACITY, HealthEdge};
use crate::metrics::trace::{TRACE_CAPACITY, TraceEvent};

/// Index of an operation in the run's operation table (see [`OpTable`]).
pub type OpId = usize;

/// The names of the run's operations (Redis command names, or a workload's own such as
/// `TRANSACTION`), in slot order. Every worker's data shares it.
pub type OpTable = Arc<[String]>;

/// Most gauges a run can have (see [`IntervalData::gauges`]); their names come from the
/// workload (`workload::gauge_names`).
pub const MAX_GAUGES: usize = 4;

/// Most trace events one thread's shard keeps between two publishes (about a second).
const MAX_SHARD_TRACES: usize = 16_384;

/// Highest latency a histogram holds: one hour, in nanoseconds.
pub const HISTOGRAM_MAX_NS: u64 = 3_600_000_000_000;

/// A latency histogram: 1 ns .. 1 h, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_NS, 3).expect("static histogram bounds are valid")
}

/// Records `value_ns`, or counts it as an overflow (and keeps the largest) when out of range.
#[inline]
fn record_or_overflow(h: &mut Histogram<u64>, value_ns: u64, overflow: &mut Overflow) {
    if h.record(value_ns).is_err() {
        overflow.count += 1;
        overflow.max_ns = overflow.max_ns.max(value_ns);
    }
}

/// Values too large for a histogram: how many, and the largest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overflow {
    pub count: u64,
    pub max_ns: u64,
}

impl Overflow {
    fn add(&mut self, other: &Overflow) {
        self.count += other.count;
        self.max_ns = self.max_ns.max(other.max_ns);
    }
}

/// Counters and histograms of one command.
#[derive(Debug, Clone)]
pub struct CommandStats {
    /// Latency of successful commands, from the intended start (= the send in closed loop).
    pub latency: Histogram<u64>,
    /// Service time from the actual send; kept only in open loop, where it differs.
    pub service: Option<Histogram<u64>>,
    pub success: u64,
    /// Reads that found something / found nothing (both are also successes).
    pub hits: u64,
    pub misses: u64,
    pub errors: [u64; ErrorClass::COUNT],
    pub overflow: Overflow,
}

impl CommandStats {
    fn new(open_loop: bool) -> Self {
        CommandStats {
            latency: new_histogram(),
            service: open_loop.then(new_histogram),
            success: 0,
            hits: 0,
            misses: 0,
            errors: [0; ErrorClass::COUNT],
            overflow: Overflow::default(),
        }
    }

    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn total(&self) -> u64 {
        self.success + self.error_total()
    }

    fn add(&mut self, other: &CommandStats) {
        self.latency
            .add(&other.latency)
            .expect("histograms share bounds");
        if let (Some(mine), Some(theirs)) = (&mut self.service, &other.service) {
            mine.add(theirs).expect("histograms share bounds");
        }
        self.success += other.success;
        self.hits += other.hits;
        self.misses += other.misses;
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
        self.overflow.add(&other.overflow);
    }

    fn reset(&mut self) {
        self.latency.reset();
        if let Some(s) = &mut self.service {
            s.reset();
        }
        self.success = 0;
        self.hits = 0;
        self.misses = 0;
        self.errors = [0; ErrorClass::COUNT];
        self.overflow = Overflow::default();
    }
}

/// Connection events: recorded on connect attempts and drops only, never per command.
#[derive(Debug, Clone)]
pub struct ConnStats {
    /// Connection attempts (the first connect and every reconnect attempt).
    pub initiated: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Working connections lost.
    pub drops: u64,
    /// Workers that gave up reconnecting (`--retry-attempts`) and stopped sending.
    pub gave_up: u64,
    /// Cluster mode: MOVED/ASK replies (each followed by sending the command again).
    pub redirects: u64,
    /// Cluster mode: commands counted as connection errors without being sent, because
    /// their node could not be reached at the time.
    pub not_sent: u64,
    /// PINGs sent to connections idle longer than `--health-check-interval`, and how many
    /// of them found the connection dead (it was replaced before the next command).
    pub health_checks: u64,
    pub health_check_failures: u64,
    /// How long a worker's connection was down: from the drop to the next successful connect.
    pub reconnection: Histogram<u64>,
    /// How long each worker's first connection took to set up (connect, TLS, AUTH, HELLO,
    /// SELECT, ...): the family's client initialisation time.
    pub init: Histogram<u64>,
}

impl ConnStats {
    fn new() -> Self {
        ConnStats {
            initiated: 0,
            succeeded: 0,
            failed: 0,
            drops: 0,
            gave_up: 0,
            redirects: 0,
            not_sent: 0,
            health_checks: 0,
            health_check_failures: 0,
            reconnection: new_histogram(),
            init: new_histogram(),
        }
    }

    /// A connect attempt ended; `down_ns` is set for a successful reconnect after a drop.
    pub fn attempt(&mut self, ok: bool, down_ns: Option<u64>) {
        self.initiated += 1;
        if ok {
            self.succeeded += 1;
        } else {
            self.failed += 1;
        }
        if let Some(ns) = down_ns {
            // Clamped into range: a connection down for over an hour is still one reconnect.
            let _ = self.reconnection.record(ns.clamp(1, HISTOGRAM_MAX_NS));
        }
    }

    fn add(&mut self, other: &ConnStats) {
        self.initiated += other.initiated;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.drops += other.drops;
        self.gave_up += other.gave_up;
        self.redirects += other.redirects;
        self.not_sent += other.not_sent;
        self.health_checks += other.health_checks;
        self.health_check_failures += other.health_check_failures;
        self.reconnection
            .add(&other.reconnection)
            .expect("histograms share bounds");
        self.init.add(&other.init).expect("histograms share bounds");
    }

    fn reset(&mut self) {
        self.initiated = 0;
        self.succeeded = 0;
        self.failed = 0;
        self.drops = 0;
        self.gave_up = 0;
        self.redirects = 0;
        self.not_sent = 0;
        self.health_checks = 0;
        self.health_check_failures = 0;
        self.reconnection.reset();
        self.init.reset();
    }
}

/// Everything recorded over one interval, by one worker or merged.
#[derive(Debug, Clone)]
pub struct IntervalData {
    /// The operations' names, indexed like `commands`.
    pub names: OpTable,
    /// Per op: a derived figure (see `workload::DERIVED_OPS`), left out of command totals.
    pub derived: Vec<bool>,
    /// Workload-specific counters (e.g. pub/sub messages lost), named by `counter_names`.
    pub counter_names: OpTable,
    pub counters: Vec<u64>,
    /// Indexed by [`OpId`].
    pub commands: Vec<CommandStats>,
    /// Open loop only: how late each batch was sent relative to its intended start.
    pub schedule_lag: Option<Histogram<u64>>,
    pub lag_overflow: Overflow,
    /// Connections re-established after a failure.
    pub reconnects: u64,
    /// Units of work sent (a command, a transaction, a request, a message): what
    /// `--target-ops-per-second` paces.
    pub units: u64,
    /// Failed reconnect attempts.
    pub connect_failures: u64,
    /// Sampled values (e.g. a stream's pending entries), indexed like the workload's gauge
    /// names; `None` when not sampled in this interval. A worker's newer sample replaces its
    /// older one; merging keeps the larger value (across workers, and over intervals in the
    /// run's totals: the run's maximum).
    pub gauges: [Option<u64>; MAX_GAUGES],
    /// Connection attempts, drops and reconnection times.
    pub conn: ConnStats,
    /// Workers' health edges for outage detection (see `metrics::outage`); the reporter
    /// drains them after each gathering.
    pub edges: Vec<HealthEdge>,
    /// Episodes merged because a worker's edge buffer was full.
    pub edge_overflow: u64,
    /// Sampled commands and connection events for traces (only with OTLP on); the reporter
    /// drains them after each gathering.
    pub traces: Vec<TraceEvent>,
    /// Trace events dropped because a worker's buffer was full.
    pub trace_overflow: u64,
    /// I/O threads: time covered by this data and time spent waiting in the poll, summed
    /// over the threads (busy = wall - wait: the basis for telling when the load generator
    /// itself is the limit).
    pub io_wall_ns: u64,
    pub io_wait_ns: u64,
}

impl IntervalData {
    pub fn new(names: OpTable, open_loop: bool) -> Self {
        IntervalData::with_counters(names, Vec::new().into(), open_loop)
    }

    pub fn with_counters(names: OpTable, counter_names: OpTable, open_loop: bool) -> Self {
        IntervalData {
            commands: names.iter().map(|_| CommandStats::new(open_loop)).collect(),
            derived: names
                .iter()
                .map(|n| crate::workload::DERIVED_OPS.contains(&n.as_str()))
                .collect(),
            names,
            counters: vec![0; counter_names.len()],
            counter_names,
            schedule_lag: open_loop.then(new_histogram),
            lag_overflow: Overflow::default(),
            reconnects: 0,
            units: 0,
            connect_failures: 0,
            gauges: [None; MAX_GAUGES],
            conn: ConnStats::new(),
            edges: Vec::with_capacity(EDGE_CAPACITY),
            edge_overflow: 0,
            traces: Vec::with_capacity(TRACE_CAPACITY),
            trace_overflow: 0,
            io_wall_ns: 0,
            io_wait_ns: 0,
        }
    }

    /// Sizes the edge and trace buffers for `workers` workers sharing this data (an I/O
    /// thread's shard), so recording never grows them.
    pub fn reserve_events(&mut self, workers: usize) {
        let edges = EDGE_CAPACITY * workers;
        let traces = (TRACE_CAPACITY * workers).min(MAX_SHARD_TRACES);
        self.edges
            .reserve_exact(edges.saturating_sub(self.edges.len()));
        self.traces
            .reserve_exact(traces.saturating_sub(self.traces.len()));
    }

    /// A command's reply arrived and was not an error.
    #[inline]
    pub fn record_success(&mut self, op: OpId, latency_ns: u64, service_ns: u64) {
        let stats = &mut self.commands[op];
        stats.success += 1;
        let CommandStats {
            latency,
            service,
            overflow,
            ..
        } = stats;
        record_or_overflow(latency, latency_ns, overflow);
        if let Some(service) = service {
            record_or_overflow(service, service_ns, overflow);
        }
    }

    /// A command failed: an error reply, or it was sent and its reply never came.
    #[inline]
    pub fn record_error(&mut self, op: OpId, class: ErrorClass) {
        self.commands[op].errors[class.index()] += 1;
    }

    /// A successful read found something (`hit`) or nothing.
    #[inline]
    pub fn record_lookup(&mut self, op: OpId, hit: bool) {
        let stats = &mut self.commands[op];
        if hit {
            stats.hits += 1;
        } else {
            stats.misses += 1;
        }
    }

    /// Adds `n` to workload counter `index`.
    #[inline]
    pub fn count(&mut self, index: usize, n: u64) {
        self.counters[index] += n;
    }

    /// Records a sample of gauge `index` (the latest sample wins).
    #[inline]
    pub fn set_gauge(&mut self, index: usize, value: u64) {
        self.gauges[index] = Some(value);
    }

    #[inline]
    pub fn record_lag(&mut self, lag_ns: u64) {
        if let Some(h) = &mut self.schedule_lag {
            record_or_overflow(h, lag_ns, &mut self.lag_overflow);
        }
    }

    /// Adds `other` into `self` (same command set; no allocation).
    pub fn add(&mut self, other: &IntervalData) {
        for (mine, theirs) in self.commands.iter_mut().zip(&other.commands) {
            mine.add(theirs);
        }
        if let (Some(mine), Some(theirs)) = (&mut self.schedule_lag, &other.schedule_lag) {
            mine.add(theirs).expect("histograms share bounds");
        }
        self.lag_overflow.add(&other.lag_overflow);
        for (mine, theirs) in self.counters.iter_mut().zip(&other.counters) {
            *mine += theirs;
        }
        self.reconnects += other.reconnects;
        self.units += other.units;
        self.connect_failures += other.connect_failures;
        for (mine, theirs) in self.gauges.iter_mut().zip(other.gauges) {
            *mine = match (*mine, theirs) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        self.conn.add(&other.conn);
        // Only when a worker's health changed (rare): may grow a merged buffer, never a
        // worker's own.
        self.edges.extend_from_slice(&other.edges);
        self.edge_overflow += other.edge_overflow;
        self.traces.extend_from_slice(&other.traces);
        self.trace_overflow += other.trace_overflow;
        self.io_wall_ns += other.io_wall_ns;
        self.io_wait_ns += other.io_wait_ns;
    }

    pub fn reset(&mut self) {
        for stats in self.commands.iter_mut() {
            stats.reset();
        }
        if let Some(h) = &mut self.schedule_lag {
            h.reset();
        }
        self.lag_overflow = Overflow::default();
        self.counters.iter_mut().for_each(|c| *c = 0);
        self.reconnects = 0;
        self.units = 0;
        self.connect_failures = 0;
        self.gauges = [None; MAX_GAUGES];
        self.conn.reset();
        self.edges.clear();
        self.edge_overflow = 0;
        self.traces.clear();
        self.trace_overflow = 0;
        self.io_wall_ns = 0;
        self.io_wait_ns = 0;
    }

    /// How busy the I/O threads were (not waiting in their poll), in percent of their time;
    /// `None` when no I/O thread reported.
    pub fn io_busy_percent(&self) -> Option<f64> {
        (self.io_wall_ns > 0).then(|| {
            100.0 * self.io_wall_ns.saturating_sub(self.io_wait_ns) as f64 / self.io_wall_ns as f64
        })
    }

    /// Each operation's name and stats.
    pub fn per_command(&self) -> impl Iterator<Item = (&str, &CommandStats)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.commands.iter())
    }

    /// The Redis commands' stats (derived figures left out).
    fn redis_commands(&self) -> impl Iterator<Item = &CommandStats> {
        self.commands
            .iter()
            .zip(&self.derived)
            .filter(|(_, derived)| !**derived)
            .map(|(s, _)| s)
    }

    /// Redis commands counted (derived figures left out).
    pub fn total(&self) -> u64 {
        self.redis_commands().map(|s| s.total()).sum()
    }

    pub fn success(&self) -> u64 {
        self.redis_commands().map(|s| s.success).sum()
    }

    pub fn errors(&self) -> u64 {
        self.redis_commands().map(|s| s.error_total()).sum()
    }

    /// All Redis commands' latencies in one histogram.
    pub fn merged_latency(&self) -> hdrhistogram::Histogram<u64> {
        let mut all = new_histogram();
        for s in self.redis_commands() {
            all.add(&s.latency).expect("histograms share bounds");
        }
        all
    }

    /// Overflows across Redis commands.
    pub fn overflow(&self) -> Overflow {
        let mut o = Overflow::default();
        for s in self.redis_commands() {
            o.add(&s.overflow);
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_add_and_reset() {
        let names: OpTable = vec!["SET".to_string(), "GET".to_string()].into();
        let mut a = IntervalData::new(names.clone(), false);
        a.record_success(0, 1_000, 1_000);
        a.record_success(1, 2_000_000, 2_000_000);
        a.record_lookup(1, false);
        a.record_error(1, ErrorClass::Timeout);
        let mut total = IntervalData::new(names, false);
        total.add(&a);
        total.add(&a);
        assert_eq!(total.total(), 6);
        assert_eq!(total.errors(), 2);
        let get = &total.commands[1];
        assert_eq!(get.errors[ErrorClass::Timeout.index()], 2);
        assert_eq!(get.latency.len(), 2);
        assert_eq!((get.hits, get.misses), (0, 2));
        a.reset();
        assert_eq!(a.total(), 0);
        assert_eq!(a.commands[1].misses, 0);
    }

    #[test]
    fn gauges_keep_the_latest_sample_and_merge_by_max() {
        let mut a = IntervalData::new(vec!["XADD".to_string()].into(), false);
        a.set_gauge(0, 9);
        a.set_gauge(0, 4);
        assert_eq!(a.gauges[0], Some(4));
        let mut b = IntervalData::new(vec!["XADD".to_string()].into(), false);
        b.set_gauge(0, 7);
        b.set_gauge(1, 0);
        let mut total = IntervalData::new(vec!["XADD".to_string()].into(), false);
        total.add(&a);
        total.add(&b);
        assert_eq!(total.gauges[..3], [Some(7), Some(0), None]);
        total.reset();
        assert_eq!(total.gauges, [None; MAX_GAUGES]);
    }

    #[test]
    fn values_beyond_an_hour_are_overflows_not_clamped() {
        let mut a = IntervalData::new(vec!["SET".to_string()].into(), false);
        a.record_success(0, HISTOGRAM_MAX_NS * 2, 0);
        let set = &a.commands[0];
        assert_eq!(set.success, 1);
        assert_eq!(set.latency.len(), 0);
        assert_eq!(set.overflow.count, 1);
        assert_eq!(set.overflow.max_ns, HISTOGRAM_MAX_NS * 2);
    }

    #[test]
    fn three_significant_digits_at_sub_millisecond_latency() {
        let mut h = new_histogram();
        h.record(123_456).unwrap();
        let p = h.value_at_quantile(0.5) as f64;
        assert!((p - 123_456.0).abs() / 123_456.0 < 0.001, "{p}");
    }
}
