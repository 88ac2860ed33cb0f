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

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::series::{self, BucketCounts, FamilyKind, Snapshot, Value};
use super::{Labels, Sink};
use crate::error::AppError;
use crate::shutdown::Shutdown;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

impl BucketCounts {
    fn encode_into(
        &self,
        mut metric: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .bounds_ms
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts.iter().copied())
            .collect();
        metric.encode_histogram::<NoLabelSet>(self.sum_ms, self.count(), &buckets, None)
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
        if snap.generation == 0 {
            // Nothing measured yet: no series rather than zeros with made-up labels.
            return Ok(());
        }
        let base = self.base();
        let milliseconds = Unit::Other("milliseconds".into());
        for family in snap.families() {
            let (metric_type, unit) = match family.kind {
                FamilyKind::Counter => (MetricType::Counter, None),
                FamilyKind::Gauge => (MetricType::Gauge, None),
                FamilyKind::Histogram => (MetricType::Histogram, None),
            };
            let unit = match family.unit {
                series::Unit::Milliseconds => Some(&milliseconds),
                series::Unit::None => unit,
            };
            let mut encoder =
                encoder.encode_descriptor(family.name, family.help, unit, metric_type)?;
            for point in &family.points {
                let labels = Self::with(&base, &point.labels);
                let mut metric = encoder.encode_family(&labels)?;
                match (family.kind, point.value) {
                    (FamilyKind::Counter, Value::Int(n)) => {
                        metric.encode_counter::<NoLabelSet, u64, u64>(&n, None)?
                    }
                    (FamilyKind::Counter, Value::Float(x)) => {
                        metric.encode_counter::<NoLabelSet, f64, f64>(&x, None)?
                    }
                    (FamilyKind::Gauge, Value::Float(x)) => metric.encode_gauge(&x)?,
                    (FamilyKind::Gauge, Value::Int(n)) => metric.encode_gauge(&(n as f64))?,
                    (_, Value::Histogram(b)) => b.encode_into(metric)?,
                    (FamilyKind::Histogram, _) => {}
                }
            }
        }
        self.encoded
            .fetch_max(snap.generation + 1, Ordering::Relaxed);
        Ok(())
    }
}

/// Serves `/metrics` and folds intervals into the served snapshot.
pub struct PrometheusSink {
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
        let current = Arc::new(Mutex::new(Arc::new(Snapshot::default())));
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
    fn interval(&mut self, snapshot: &Snapshot) {
        let snap = Arc::new(snapshot.clone());
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = snap;
    }

    fn finish(&mut self, last: &Snapshot) {
        // The final interval is already published; the endpoint keeps serving it until the
        // sink is dropped (after the report, and the linger).
        self.final_generation = Some(last.generation);
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
}
