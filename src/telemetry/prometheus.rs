//! The Prometheus scrape endpoint (`--prometheus-listen`): serves `GET /metrics` in the
//! OpenMetrics text format, with the series names the OpenTelemetry Collector's Prometheus
//! exporter gives the family's OTLP metrics, so one dashboard reads either source.
//!
//! The figures come from the reporter's merged interval data only: [`PrometheusSink`] folds
//! each interval's delta into cumulative counters and bucket counts on the reporter thread,
//! then swaps a copy into a [`Mutex`] (held only for the swap). The HTTP thread encodes that
//! copy at scrape time through a `prometheus-client` [`Collector`], because our latencies are
//! pre-aggregated HDR histograms: observing them one by one into client-side histograms would
//! cost a loop per command, and the encoder only needs bucket counts, sum and count.
//!
//! Derived operations (`workload::DERIVED_OPS`, e.g. RECEIVE) are not Redis commands and are
//! left out, as they are from the report's command totals, so `redis_operations_total`
//! adds up to the report's `total_commands_count`.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::{Labels, Sink};
use crate::error::{AppError, ErrorClass};
use crate::metrics::IntervalData;
use crate::shutdown::Shutdown;

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

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A cumulative histogram in Prometheus form: per-bucket (not yet cumulative) counts, the
/// last one for `+Inf`, and the sum in milliseconds.
#[derive(Debug, Clone)]
struct BucketCounts {
    bounds_ms: &'static [f64],
    counts: Vec<u64>,
    sum_ms: f64,
}

impl BucketCounts {
    fn new(bounds_ms: &'static [f64]) -> Self {
        BucketCounts {
            bounds_ms,
            counts: vec![0; bounds_ms.len() + 1],
            sum_ms: 0.0,
        }
    }

    /// Adds an HDR histogram (ns). A value goes to the first bucket whose bound is at least
    /// the lowest value HDR treats as equal to it (3 significant digits), so a value recorded
    /// exactly on a bound stays in that bound's bucket; the sum uses the median equivalent.
    fn add_hdr(&mut self, hdr: &Histogram<u64>) {
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
    fn add_overflow(&mut self, count: u64, max_ns: u64) {
        if count > 0 {
            *self.counts.last_mut().expect("+Inf bucket") += count;
            self.sum_ms += max_ns as f64 / 1e6 * count as f64;
        }
    }

    fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn encode_into(
        &self,
        labels: &[(&str, &str)],
        family: &mut prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .bounds_ms
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts.iter().copied())
            .collect();
        family
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(self.sum_ms, self.count(), &buckets, None)
    }
}

/// One Redis command's cumulative figures.
#[derive(Debug, Clone)]
struct OpState {
    name: String,
    success: u64,
    errors: [u64; ErrorClass::COUNT],
    duration: BucketCounts,
}

/// Everything the endpoint shows: cumulative since the measured run started.
#[derive(Debug, Clone)]
struct Snapshot {
    /// How many intervals are in it.
    generation: u64,
    ops: Vec<OpState>,
    conn_initiated: u64,
    conn_succeeded: u64,
    conn_failed: u64,
    drops: u64,
    reconnection: BucketCounts,
}

impl Snapshot {
    fn new() -> Self {
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

    fn add(&mut self, delta: &IntervalData) {
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

/// Encodes the latest snapshot at scrape time.
#[derive(Debug)]
struct SnapshotCollector {
    labels: Labels,
    current: Arc<Mutex<Arc<Snapshot>>>,
    /// Generation + 1 of the newest snapshot a scrape encoded (0: none yet).
    encoded: Arc<AtomicU64>,
}

impl SnapshotCollector {
    fn base(&self) -> [(&str, &str); 4] {
        [
            ("app_name", self.labels.app_name.as_str()),
            ("instance_id", self.labels.instance_id.as_str()),
            ("run_id", self.labels.run_id.as_str()),
            ("version", self.labels.version.as_str()),
        ]
    }

    fn with<'a>(
        base: &[(&'a str, &'a str)],
        more: &[(&'a str, &'a str)],
    ) -> Vec<(&'a str, &'a str)> {
        base.iter().chain(more).copied().collect()
    }
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Only the Arc is cloned under the lock: the reporter never waits for an encoding.
        let snap = Arc::clone(&self.current.lock().unwrap_or_else(PoisonError::into_inner));
        let base = self.base();
        let counter = |family: &mut prometheus_client::encoding::MetricEncoder,
                       labels: &[(&str, &str)],
                       value: u64| {
            family
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, u64, u64>(&value, None)
        };

        let mut family = encoder.encode_descriptor(
            "redis_operations",
            "Redis commands completed, by outcome",
            None,
            MetricType::Counter,
        )?;
        for op in &snap.ops {
            let labels = Self::with(
                &base,
                &[
                    ("operation", &op.name),
                    ("status", "success"),
                    ("error_type", "none"),
                ],
            );
            counter(&mut family, &labels, op.success)?;
            for (class, &n) in ErrorClass::ALL.iter().zip(&op.errors) {
                if n > 0 {
                    let labels = Self::with(
                        &base,
                        &[
                            ("operation", &op.name),
                            ("status", "error"),
                            ("error_type", class.label()),
                        ],
                    );
                    counter(&mut family, &labels, n)?;
                }
            }
        }

        let unit = Unit::Other("milliseconds".into());
        let mut family = encoder.encode_descriptor(
            "redis_operation_duration",
            "Latency of successful Redis commands",
            Some(&unit),
            MetricType::Histogram,
        )?;
        for op in &snap.ops {
            let labels = Self::with(&base, &[("operation", &op.name), ("status", "success")]);
            op.duration.encode_into(&labels, &mut family)?;
        }

        let mut family = encoder.encode_descriptor(
            "redis_connections",
            "Connection attempts, by outcome",
            None,
            MetricType::Counter,
        )?;
        for (status, n) in [
            ("initiated", snap.conn_initiated),
            ("success", snap.conn_succeeded),
            ("error", snap.conn_failed),
        ] {
            counter(&mut family, &Self::with(&base, &[("status", status)]), n)?;
        }

        let mut family = encoder.encode_descriptor(
            "redis_connection_drops",
            "Established connections that broke",
            None,
            MetricType::Counter,
        )?;
        counter(&mut family, &base, snap.drops)?;

        let mut family = encoder.encode_descriptor(
            "redis_reconnection_duration",
            "How long a connection was down before it was re-established",
            Some(&unit),
            MetricType::Histogram,
        )?;
        snap.reconnection.encode_into(&base, &mut family)?;

        self.encoded
            .fetch_max(snap.generation + 1, Ordering::Relaxed);
        Ok(())
    }
}

/// Serves `/metrics` and folds intervals into the served snapshot.
pub struct PrometheusSink {
    /// The reporter's own cumulative state (no lock needed to update it).
    state: Snapshot,
    current: Arc<Mutex<Arc<Snapshot>>>,
    /// Generation + 1 of the newest snapshot a scrape has been sent (0: none yet).
    served: Arc<AtomicU64>,
    final_generation: Option<u64>,
    linger: Duration,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl PrometheusSink {
    /// Binds `host:port` (an error when it cannot: exit 1 before any load) and starts the
    /// HTTP thread.
    pub fn start(
        host: &str,
        port: u16,
        labels: Labels,
        linger: Duration,
    ) -> Result<Self, AppError> {
        let shown = crate::config::load::listen_text(host, port);
        let listener = TcpListener::bind((host, port)).map_err(|e| {
            AppError::Run(format!(
                "cannot listen on {shown} for --prometheus-listen: {e}"
            ))
        })?;
        let local = listener.local_addr().ok();
        let server = tiny_http::Server::from_listener(listener, None).map_err(|e| {
            AppError::Run(format!(
                "cannot serve on {shown} for --prometheus-listen: {e}"
            ))
        })?;
        let server = Arc::new(server);
        let current = Arc::new(Mutex::new(Arc::new(Snapshot::new())));
        let encoded = Arc::new(AtomicU64::new(0));
        let served = Arc::new(AtomicU64::new(0));
        let mut registry = Registry::default();
        registry.register_collector(Box::new(SnapshotCollector {
            labels,
            current: Arc::clone(&current),
            encoded: Arc::clone(&encoded),
        }));
        let thread = {
            let server = Arc::clone(&server);
            let served = Arc::clone(&served);
            std::thread::Builder::new()
                .name("prometheus".into())
                .spawn(move || serve(&server, &registry, &encoded, &served))
                .map_err(|e| AppError::Run(format!("cannot start the Prometheus thread: {e}")))?
        };
        match local {
            Some(addr) => tracing::info!("serving Prometheus metrics at http://{addr}/metrics"),
            None => tracing::info!("serving Prometheus metrics at http://{shown}/metrics"),
        }
        Ok(PrometheusSink {
            state: Snapshot::new(),
            current,
            served,
            final_generation: None,
            linger,
            server,
            thread: Some(thread),
        })
    }
}

/// The HTTP loop: `GET /metrics` encodes the registry; anything else is 404 (405 for other
/// methods). Ends when the server is unblocked.
fn serve(server: &tiny_http::Server, registry: &Registry, encoded: &AtomicU64, served: &AtomicU64) {
    let header = |k: &str, v: &str| {
        tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("static header is valid")
    };
    for request in server.incoming_requests() {
        let path = request.url().split('?').next().unwrap_or("");
        let method = request.method().clone();
        // Prometheus asks for OpenMetrics; other clients (curl | promtool) get the classic
        // text format, which names counter families with their `_total`.
        let openmetrics = request.headers().iter().any(|h| {
            h.field.equiv("Accept") && h.value.as_str().contains("application/openmetrics-text")
        });
        let response = if path != "/metrics" {
            tiny_http::Response::from_string("not found; metrics are at /metrics\n")
                .with_status_code(404)
        } else if !matches!(method, tiny_http::Method::Get | tiny_http::Method::Head) {
            tiny_http::Response::from_string("only GET\n").with_status_code(405)
        } else {
            let mut body = String::with_capacity(16 * 1024);
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) if openmetrics => tiny_http::Response::from_string(body)
                    .with_header(header("Content-Type", OPENMETRICS)),
                Ok(()) => tiny_http::Response::from_string(classic_text(&body))
                    .with_header(header("Content-Type", TEXT_004)),
                Err(_) => tiny_http::Response::from_string("cannot encode metrics\n")
                    .with_status_code(500),
            }
        };
        let is_metrics = response.status_code().0 == 200;
        match request.respond(response) {
            Ok(()) if is_metrics => {
                served.fetch_max(encoded.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            Ok(()) => {}
            Err(e) => tracing::debug!("Prometheus scrape: cannot send the response: {e}"),
        }
    }
}

/// The classic Prometheus text format (0.0.4) from the encoder's OpenMetrics text: the two
/// differ, for the series we emit, only in that OpenMetrics names a counter family without
/// its `_total` suffix (its samples have it) and has `# UNIT` and `# EOF` lines. The sample
/// lines are the same in both.
fn classic_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match descriptor {
            Some((prefix, rest)) => {
                let name = rest.split(' ').next().unwrap_or("");
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(&name) {
                    out.push_str("_total");
                }
                out.push_str(&rest[name.len()..]);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

impl Sink for PrometheusSink {
    fn interval(&mut self, delta: &IntervalData, _elapsed: Duration) {
        self.state.add(delta);
        let snap = Arc::new(self.state.clone());
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = snap;
    }

    fn finish(&mut self) {
        // The final interval is already published; the endpoint keeps serving it until the
        // sink is dropped (after the report, and the linger).
        self.final_generation = Some(self.state.generation);
    }

    fn linger(&mut self, shutdown: &Shutdown) {
        let Some(last) = self.final_generation else {
            return;
        };
        if self.linger.is_zero() || self.served.load(Ordering::Relaxed) > last {
            return;
        }
        tracing::info!(
            seconds = self.linger.as_secs_f64(),
            "waiting for Prometheus to scrape the final values"
        );
        let until = Instant::now() + self.linger;
        while Instant::now() < until && !shutdown.is_aborted() {
            if self.served.load(Ordering::Relaxed) > last {
                tracing::debug!("final values scraped");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!("no Prometheus scrape of the final values within --prometheus-linger");
    }
}

impl Drop for PrometheusSink {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::data::new_histogram;

    #[test]
    fn classic_text_names_counter_families_with_total() {
        let om = "# HELP a_things Things.\n# TYPE a_things counter\na_things_total{x=\"1\"} 2\n\
                  # HELP b_ms B.\n# TYPE b_ms histogram\n# UNIT b_ms ms\nb_ms_count 1\n# EOF\n";
        assert_eq!(
            classic_text(om),
            "# HELP a_things_total Things.\n# TYPE a_things_total counter\n\
             a_things_total{x=\"1\"} 2\n# HELP b_ms B.\n# TYPE b_ms histogram\nb_ms_count 1\n"
        );
    }

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
