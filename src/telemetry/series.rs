//! The run's cumulative figures, shared by the telemetry sinks so the Prometheus endpoint and
//! the OTLP export report identical numbers: per-operation outcome counts, the family's
//! millisecond histogram buckets filled from our HDR histograms (ns), and connection figures.
//! Folded from each interval's merged delta on the reporter thread; not per command.
//!
//! Derived operations (`workload::DERIVED_OPS`, e.g. RECEIVE) are not Redis commands and are
//! left out, as they are from the report's command totals, so the operation counts add up to
//! the report's `total_commands_count`.

use std::time::Duration;

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

/// The run's fixed facts that some series carry.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesInfo {
    /// The family's `client` label of `redis_client_init_duration`: standalone, sentinel or
    /// cluster.
    pub client: &'static str,
    /// `--target-ops-per-second` (open loop); `None` in closed loop.
    pub target_ops_per_second: Option<f64>,
    /// The `channel` label of the pub/sub series (the configured channels).
    pub pubsub_channel: String,
}

/// Messages through a pub/sub or stream request/reply workload.
#[derive(Debug, Clone)]
pub struct Messages {
    /// `pubsub` or `stream`.
    pub kind: &'static str,
    pub delivered: u64,
    pub lost: u64,
    /// Pub/sub only: messages received more than once.
    pub duplicated: Option<u64>,
    /// Send to receive (pub/sub) or request to reply (streams), ms.
    pub latency: BucketCounts,
}

/// Everything the sinks report: cumulative since the measured run started, plus gauges of
/// the last interval.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// How many intervals are in it.
    pub generation: u64,
    pub info: SeriesInfo,
    pub ops: Vec<OpState>,
    pub conn_initiated: u64,
    pub conn_succeeded: u64,
    pub conn_failed: u64,
    pub drops: u64,
    pub reconnection: BucketCounts,
    pub client_init: BucketCounts,
    /// PUBLISH outcomes and deliveries (pub/sub workloads only).
    pub published_ok: u64,
    pub published_failed: u64,
    pub messages: Vec<Messages>,
    /// Time-averaged commands outstanding over the last interval (sent, reply not yet read;
    /// in open loop counted from their intended start): the sum of their latencies divided by
    /// the interval's length.
    pub in_flight: f64,
    /// Units (commands, transactions, messages: what `--target-ops-per-second` paces) per
    /// second over the last interval.
    pub achieved_rate: f64,
    /// How busy the I/O threads were over the last interval (0..1); `None` without I/O threads.
    pub io_busy: Option<f64>,
    /// Open loop: how late batches went out against their schedule.
    pub schedule_lag: Option<BucketCounts>,
    pub outages_started: u64,
    pub outage_active: bool,
    /// The process's CPU time (user + system) since the run started, seconds.
    pub cpu_seconds: f64,
    /// Trace events dropped because a worker's buffer was full.
    pub spans_dropped: u64,
    /// When the last interval ended, since the run started.
    elapsed: Duration,
}

/// What the telemetry adds to an interval besides the merged data.
#[derive(Debug, Clone, Copy)]
pub struct IntervalExtras {
    /// Since the measured run started.
    pub elapsed: Duration,
    pub outages_started: u64,
    pub outage_active: bool,
    pub cpu_seconds: f64,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot::new(SeriesInfo {
            client: "standalone",
            target_ops_per_second: None,
            pubsub_channel: String::new(),
        })
    }
}

impl Snapshot {
    pub fn new(info: SeriesInfo) -> Self {
        Snapshot {
            generation: 0,
            schedule_lag: info
                .target_ops_per_second
                .map(|_| BucketCounts::new(&OPERATION_BUCKETS_MS)),
            info,
            ops: Vec::new(),
            conn_initiated: 0,
            conn_succeeded: 0,
            conn_failed: 0,
            drops: 0,
            reconnection: BucketCounts::new(&RECONNECTION_BUCKETS_MS),
            client_init: BucketCounts::new(&OPERATION_BUCKETS_MS),
            published_ok: 0,
            published_failed: 0,
            messages: Vec::new(),
            in_flight: 0.0,
            achieved_rate: 0.0,
            io_busy: None,
            outages_started: 0,
            outage_active: false,
            cpu_seconds: 0.0,
            spans_dropped: 0,
            elapsed: Duration::ZERO,
        }
    }

    pub fn add(&mut self, delta: &IntervalData, extras: &IntervalExtras) {
        self.generation += 1;
        let interval = extras.elapsed.saturating_sub(self.elapsed).as_secs_f64();
        self.elapsed = extras.elapsed;
        let mut outstanding_ns = 0.0;
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
            outstanding_ns += stats.latency.mean() * stats.latency.len() as f64
                + (stats.overflow.max_ns * stats.overflow.count) as f64;
            if name == "PUBLISH" {
                self.published_ok += stats.success;
                self.published_failed += stats.error_total();
            }
        }
        self.add_messages(delta);
        if interval > 0.0 {
            self.in_flight = outstanding_ns / 1e9 / interval;
            self.achieved_rate = delta.units as f64 / interval;
        }
        if let Some(busy) = delta.io_busy_percent() {
            self.io_busy = Some(busy / 100.0);
        }
        if let (Some(lag), Some(hdr)) = (&mut self.schedule_lag, &delta.schedule_lag) {
            lag.add_hdr(hdr);
            lag.add_overflow(delta.lag_overflow.count, delta.lag_overflow.max_ns);
        }
        self.conn_initiated += delta.conn.initiated;
        self.conn_succeeded += delta.conn.succeeded;
        self.conn_failed += delta.conn.failed;
        self.drops += delta.conn.drops;
        self.reconnection.add_hdr(&delta.conn.reconnection);
        self.client_init.add_hdr(&delta.conn.init);
        self.outages_started = extras.outages_started;
        self.outage_active = extras.outage_active;
        self.cpu_seconds = extras.cpu_seconds;
        self.spans_dropped += delta.trace_overflow;
    }

    /// Pub/sub and stream request/reply figures, from the workloads' counters and derived
    /// latency operations (RECEIVE, REQUEST_REPLY).
    fn add_messages(&mut self, delta: &IntervalData) {
        let counter = |name: &str| {
            delta
                .counter_names
                .iter()
                .position(|n| n == name)
                .map(|i| delta.counters[i])
        };
        let latency = |op: &str| {
            delta
                .names
                .iter()
                .position(|n| n == op)
                .map(|i| &delta.commands[i])
        };
        let kinds = [
            (
                "pubsub",
                "RECEIVE",
                counter("received"),
                counter("lost"),
                counter("duplicated"),
            ),
            (
                "stream",
                "REQUEST_REPLY",
                counter("replies"),
                counter("unanswered"),
                None,
            ),
        ];
        for (kind, op, delivered, lost, duplicated) in kinds {
            let (Some(delivered), Some(stats)) = (delivered, latency(op)) else {
                continue;
            };
            let index = match self.messages.iter().position(|m| m.kind == kind) {
                Some(i) => i,
                None => {
                    self.messages.push(Messages {
                        kind,
                        delivered: 0,
                        lost: 0,
                        duplicated: duplicated.map(|_| 0),
                        latency: BucketCounts::new(&OPERATION_BUCKETS_MS),
                    });
                    self.messages.len() - 1
                }
            };
            let m = &mut self.messages[index];
            m.delivered += delivered;
            m.lost += lost.unwrap_or(0);
            if let (Some(mine), Some(n)) = (&mut m.duplicated, duplicated) {
                *mine += n;
            }
            m.latency.add_hdr(&stats.latency);
            m.latency
                .add_overflow(stats.overflow.count, stats.overflow.max_ns);
        }
    }

    /// Every series, in a form both exposition formats are written from.
    pub fn families(&self) -> Vec<Family<'_>> {
        let mut out = Vec::with_capacity(16);
        let mut operations = Vec::new();
        let mut durations = Vec::new();
        for op in &self.ops {
            let name = op.name.as_str();
            operations.push(Point::int(
                vec![
                    ("operation", name),
                    ("status", "success"),
                    ("error_type", "none"),
                ],
                op.success,
            ));
            // Every error class from the start, at 0 until it counts: Prometheus's rate()
            // ignores a series' first sample, so an error series born at its first error
            // would hide that error (and an outage's errors) from every rate panel.
            for (class, &n) in ErrorClass::ALL.iter().zip(&op.errors) {
                operations.push(Point::int(
                    vec![
                        ("operation", name),
                        ("status", "error"),
                        ("error_type", class.label()),
                    ],
                    n,
                ));
            }
            durations.push(Point::hist(
                vec![("operation", name), ("status", "success")],
                &op.duration,
            ));
        }
        out.push(Family::counter(
            "redis_operations",
            "Redis commands completed, by outcome",
            operations,
        ));
        out.push(Family::histogram(
            "redis_operation_duration",
            "Latency of successful Redis commands",
            durations,
        ));
        out.push(Family::counter(
            "redis_connections",
            "Connection attempts, by outcome",
            [
                ("initiated", self.conn_initiated),
                ("success", self.conn_succeeded),
                ("error", self.conn_failed),
            ]
            .into_iter()
            .map(|(status, n)| Point::int(vec![("status", status)], n))
            .collect(),
        ));
        out.push(Family::counter(
            "redis_connection_drops",
            "Established connections that broke",
            vec![Point::int(vec![], self.drops)],
        ));
        out.push(Family::histogram(
            "redis_reconnection_duration",
            "How long a connection was down before it was re-established",
            vec![Point::hist(vec![], &self.reconnection)],
        ));
        out.push(Family::histogram(
            "redis_client_init_duration",
            "How long each worker's first connection took to set up",
            vec![Point::hist(
                vec![("client", self.info.client)],
                &self.client_init,
            )],
        ));
        if let Some(pubsub) = self.messages.iter().find(|m| m.kind == "pubsub") {
            let channel = self.info.pubsub_channel.as_str();
            let point = |operation_type, status, n| {
                Point::int(
                    vec![
                        ("channel", channel),
                        ("operation_type", operation_type),
                        ("subscriber_id", "all"),
                        ("status", status),
                    ],
                    n,
                )
            };
            out.push(Family::counter(
                "redis_pubsub_operations",
                "Pub/sub messages published and received",
                vec![
                    point("PUBLISH", "success", self.published_ok),
                    point("PUBLISH", "error", self.published_failed),
                    point("RECEIVE", "success", pubsub.delivered),
                ],
            ));
        }
        if !self.messages.is_empty() {
            let mut counts = Vec::new();
            let mut latencies = Vec::new();
            for m in &self.messages {
                let statuses = [
                    ("delivered", Some(m.delivered)),
                    ("lost", Some(m.lost)),
                    ("duplicated", m.duplicated),
                ];
                for (status, n) in statuses {
                    if let Some(n) = n {
                        counts.push(Point::int(vec![("kind", m.kind), ("status", status)], n));
                    }
                }
                latencies.push(Point::hist(vec![("kind", m.kind)], &m.latency));
            }
            out.push(Family::counter(
                "redis_loadgen_messages",
                "Pub/sub messages (delivered, lost, duplicated) and stream requests (delivered: answered, lost: unanswered)",
                counts,
            ));
            out.push(Family::histogram(
                "redis_loadgen_delivery_latency",
                "Pub/sub send to receive, stream request to reply",
                latencies,
            ));
        }
        out.push(Family::gauge(
            "redis_loadgen_operations_in_flight",
            "Commands outstanding (sent, reply not yet read), averaged over the last interval",
            self.in_flight,
        ));
        out.push(Family::gauge(
            "redis_loadgen_achieved_ops_per_second",
            "Units sent per second over the last interval (what --target-ops-per-second paces)",
            self.achieved_rate,
        ));
        if let Some(busy) = self.io_busy {
            out.push(Family::gauge(
                "redis_loadgen_io_busy_ratio",
                "How busy the I/O threads were over the last interval (not waiting in their poll), 0..1: near 1, the load generator itself may be the limit",
                busy,
            ));
        }
        if let Some(target) = self.info.target_ops_per_second {
            out.push(Family::gauge(
                "redis_loadgen_target_ops_per_second",
                "--target-ops-per-second",
                target,
            ));
        }
        if let Some(lag) = &self.schedule_lag {
            out.push(Family::histogram(
                "redis_loadgen_schedule_lag",
                "Open loop: how late batches went out against their schedule",
                vec![Point::hist(vec![], lag)],
            ));
        }
        out.push(Family::counter(
            "redis_loadgen_outages",
            "Outages (from the first failing worker to the last recovered one) started",
            vec![Point::int(vec![], self.outages_started)],
        ));
        out.push(Family::gauge(
            "redis_loadgen_outage_active",
            "1 while an outage is open",
            if self.outage_active { 1.0 } else { 0.0 },
        ));
        out.push(Family {
            name: "redis_loadgen_cpu_seconds",
            help: "CPU time (user + system) of the load generator since the run started",
            unit: Unit::None,
            kind: FamilyKind::Counter,
            points: vec![Point {
                labels: vec![],
                value: Value::Float(self.cpu_seconds),
            }],
        });
        out
    }
}

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyKind {
    Counter,
    Gauge,
    Histogram,
}

/// A family's unit, as the Collector's Prometheus exporter appends it to the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    None,
    Milliseconds,
}

/// A data point's value.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Int(u64),
    Float(f64),
    Histogram(&'a BucketCounts),
}

/// One series of a family: its own labels (the run's labels are added by the sinks).
#[derive(Debug, Clone)]
pub struct Point<'a> {
    pub labels: Vec<(&'static str, &'a str)>,
    pub value: Value<'a>,
}

impl<'a> Point<'a> {
    fn int(labels: Vec<(&'static str, &'a str)>, value: u64) -> Self {
        Point {
            labels,
            value: Value::Int(value),
        }
    }

    fn hist(labels: Vec<(&'static str, &'a str)>, value: &'a BucketCounts) -> Self {
        Point {
            labels,
            value: Value::Histogram(value),
        }
    }
}

/// A metric family. `name` is the Prometheus base name: counters get `_total`, millisecond
/// histograms `_milliseconds` (as the Collector's exporter names the OTLP metrics, whose
/// names are the base name, plus `_total` for counters).
#[derive(Debug, Clone)]
pub struct Family<'a> {
    pub name: &'static str,
    pub help: &'static str,
    pub unit: Unit,
    pub kind: FamilyKind,
    pub points: Vec<Point<'a>>,
}

impl<'a> Family<'a> {
    fn counter(name: &'static str, help: &'static str, points: Vec<Point<'a>>) -> Self {
        Family {
            name,
            help,
            unit: Unit::None,
            kind: FamilyKind::Counter,
            points,
        }
    }

    fn histogram(name: &'static str, help: &'static str, points: Vec<Point<'a>>) -> Self {
        Family {
            name,
            help,
            unit: Unit::Milliseconds,
            kind: FamilyKind::Histogram,
            points,
        }
    }

    fn gauge(name: &'static str, help: &'static str, value: f64) -> Self {
        Family {
            name,
            help,
            unit: Unit::None,
            kind: FamilyKind::Gauge,
            points: vec![Point {
                labels: vec![],
                value: Value::Float(value),
            }],
        }
    }

    /// The OTLP metric name: the base name, `_total` added for counters.
    pub fn otlp_name(&self) -> String {
        match self.kind {
            FamilyKind::Counter => format!("{}_total", self.name),
            _ => self.name.to_string(),
        }
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
