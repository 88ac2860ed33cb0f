//! OTLP metrics export (`--otel-endpoint`): pushes the family's metrics to an OpenTelemetry
//! collector over gRPC or HTTP/protobuf, with cumulative temporality.
//!
//! The figures are the shared cumulative [`Snapshot`] the Prometheus endpoint also serves,
//! folded from the reporter's merged interval data. We build the OTLP messages ourselves
//! (`opentelemetry-proto`) instead of going through the SDK's instruments: those take one
//! value per `record()`, which would mean a call per command, while we already hold
//! pre-aggregated histograms. So turning OTLP on adds nothing to the per-command path.
//!
//! The reporter thread only folds the delta and, once per export interval, puts a copy in a
//! one-element slot; a dedicated exporter thread encodes and sends it. A newer copy replaces
//! one not sent yet (they are cumulative, so nothing is lost), so a slow or dead collector
//! never backs anything up. Every export has a timeout (no retries: the next interval's export
//! is the retry); failures never stop the run, and a collector that stays down gets a warning
//! when it goes, when the error changes, once a minute, and for the final export. [`Sink::finish`]
//! hands over the final values and waits (bounded by the timeouts) until they are sent.
//!
//! Not here: traces and TLS to the collector (`https://` endpoints are refused at config time).

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::series::{BucketCounts, Snapshot};
use super::{Labels, Sink};
use crate::config::{OtlpConfig, OtlpProtocol};
use crate::error::{AppError, ErrorClass};
use crate::metrics::IntervalData;

/// Bound on one export (connect included): a slow collector costs at most this per interval,
/// and at most about twice this at exit.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// Folds intervals and hands copies to the exporter thread.
pub struct OtlpSink {
    state: Snapshot,
    export_interval: Duration,
    last_published: Instant,
    slot: Arc<Slot>,
    thread: Option<JoinHandle<()>>,
}

/// The one-element hand-over between the reporter and the exporter thread.
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    changed: Condvar,
}

#[derive(Default)]
struct SlotState {
    /// The newest values not sent yet, with their time (ns since the epoch).
    pending: Option<(Snapshot, u64)>,
    /// Set by `finish`: send what is pending, then stop.
    closing: bool,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl OtlpSink {
    /// Prepares the transport (no connection yet: the collector may come up later) and
    /// starts the exporter thread.
    pub fn start(cfg: &OtlpConfig, labels: Labels) -> Result<Self, AppError> {
        let transport = Transport::new(cfg)?;
        let encoder = RequestEncoder {
            resource: resource(&cfg.service_name, &labels),
            base: base_attributes(&labels),
            start_time: unix_nanos(),
        };
        let slot = Arc::new(Slot::default());
        let thread = {
            let slot = Arc::clone(&slot);
            std::thread::Builder::new()
                .name("otlp-export".into())
                .spawn(move || export_loop(&slot, transport, &encoder))
                .map_err(|e| AppError::Run(format!("cannot start the OTLP export thread: {e}")))?
        };
        tracing::info!(
            endpoint = %transport_target(cfg),
            protocol = match cfg.protocol {
                OtlpProtocol::Grpc => "grpc",
                OtlpProtocol::Http => "http/protobuf",
            },
            "exporting metrics over OTLP"
        );
        Ok(OtlpSink {
            state: Snapshot::new(),
            export_interval: cfg.export_interval,
            last_published: Instant::now(),
            slot,
            thread: Some(thread),
        })
    }

    fn publish(&mut self, closing: bool) {
        self.last_published = Instant::now();
        let mut slot = self.slot.lock();
        slot.pending = Some((self.state.clone(), unix_nanos()));
        slot.closing |= closing;
        drop(slot);
        self.slot.changed.notify_one();
    }
}

impl Sink for OtlpSink {
    fn interval(&mut self, delta: &IntervalData, _elapsed: Duration) {
        self.state.add(delta);
        // A tenth of slack: metrics intervals that match the export interval arrive a hair
        // early or late, and a strict `>=` would then skip every other one.
        let due = self.export_interval - self.export_interval / 10;
        if self.last_published.elapsed() >= due {
            self.publish(false);
        }
    }

    fn finish(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.publish(true);
        // Bounded: the export in progress and the final one each end within EXPORT_TIMEOUT.
        if thread.join().is_err() {
            tracing::warn!("the OTLP export thread panicked; final metrics may be missing");
        }
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        self.finish();
    }
}

/// How often a collector that stays down is warned about again (with the same error).
const REPEAT_WARNING: Duration = Duration::from_secs(60);

/// An outage of the collector, as far as the warnings go.
struct Failing {
    error: String,
    failures: u64,
    warned: Instant,
}

/// The exporter thread: sends whatever is in the slot until `finish` closes it.
fn export_loop(slot: &Slot, mut transport: Transport, encoder: &RequestEncoder) {
    let mut failing: Option<Failing> = None;
    loop {
        let (snapshot, time, last) = {
            let mut state = slot.lock();
            while state.pending.is_none() && !state.closing {
                state = slot
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            match state.pending.take() {
                Some((snapshot, time)) => (snapshot, time, state.closing),
                None => return,
            }
        };
        let request = encoder.request(&snapshot, time);
        match (transport.export(request), &mut failing) {
            (Ok(()), _) => {
                if let Some(f) = failing.take() {
                    tracing::info!(
                        "OTLP metrics export works again (after {} failed exports)",
                        f.failures
                    );
                }
                if last {
                    tracing::debug!("final metrics exported over OTLP");
                }
            }
            (Err(e), _) if last => {
                tracing::warn!("OTLP export of the final metrics failed: {e}");
            }
            (Err(e), None) => {
                tracing::warn!("OTLP metrics export failed (the run goes on): {e}");
                failing = Some(Failing {
                    error: e,
                    failures: 1,
                    warned: Instant::now(),
                });
            }
            // A collector that stays down: one warning per export interval would flood a
            // long run, so the same error is repeated only now and then.
            (Err(e), Some(f)) => {
                f.failures += 1;
                if e != f.error || f.warned.elapsed() >= REPEAT_WARNING {
                    tracing::warn!(
                        "OTLP metrics export still failing ({} failed exports): {e}",
                        f.failures
                    );
                    f.error = e;
                    f.warned = Instant::now();
                }
            }
        }
        if last {
            return;
        }
    }
}

/// Where the exports go, as shown in the log.
fn transport_target(cfg: &OtlpConfig) -> String {
    match cfg.protocol {
        OtlpProtocol::Grpc => grpc_origin(&cfg.endpoint),
        OtlpProtocol::Http => http_url(&cfg.endpoint),
    }
}

/// gRPC addresses a service, not a path: only scheme and authority count.
fn grpc_origin(endpoint: &str) -> String {
    let rest = endpoint.strip_prefix("http://").unwrap_or(endpoint);
    format!("http://{}", rest.split('/').next().unwrap_or(rest))
}

/// OTLP/HTTP posts to `<endpoint>/v1/metrics` (the spec's rule for the generic endpoint);
/// an endpoint that already ends so is taken as the full URL.
fn http_url(endpoint: &str) -> String {
    if endpoint.ends_with("/v1/metrics") {
        endpoint.to_string()
    } else {
        format!("{endpoint}/v1/metrics")
    }
}

enum Transport {
    /// tonic needs a runtime; this current-thread one lives as long as the exporter thread,
    /// so it outlasts every export, the final one included.
    Grpc {
        runtime: tokio::runtime::Runtime,
        client: MetricsServiceClient<tonic::transport::Channel>,
    },
    Http {
        agent: ureq::Agent,
        url: String,
    },
}

impl Transport {
    fn new(cfg: &OtlpConfig) -> Result<Self, AppError> {
        match cfg.protocol {
            OtlpProtocol::Grpc => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| AppError::Run(format!("cannot start the OTLP runtime: {e}")))?;
                let origin = grpc_origin(&cfg.endpoint);
                let endpoint = tonic::transport::Endpoint::from_shared(origin.clone())
                    .map_err(|e| AppError::Run(format!("invalid OTLP endpoint '{origin}': {e}")))?
                    .connect_timeout(EXPORT_TIMEOUT)
                    .timeout(EXPORT_TIMEOUT);
                // Lazy: no connection until the first export, and a broken one is re-made
                // on the next, so a collector that starts late or restarts is picked up.
                let channel = {
                    let _context = runtime.enter();
                    endpoint.connect_lazy()
                };
                Ok(Transport::Grpc {
                    runtime,
                    client: MetricsServiceClient::new(channel),
                })
            }
            OtlpProtocol::Http => {
                let config = ureq::Agent::config_builder()
                    .timeout_global(Some(EXPORT_TIMEOUT))
                    .build();
                Ok(Transport::Http {
                    agent: ureq::Agent::new_with_config(config),
                    url: http_url(&cfg.endpoint),
                })
            }
        }
    }

    /// One export, within [`EXPORT_TIMEOUT`]; the error as one line.
    fn export(&mut self, request: ExportMetricsServiceRequest) -> Result<(), String> {
        let rejected = match self {
            Transport::Grpc { runtime, client } => {
                // The timer must be made inside the runtime: hence the async block.
                let call =
                    async { tokio::time::timeout(EXPORT_TIMEOUT, client.export(request)).await };
                match runtime.block_on(call) {
                    Err(_) => return Err(format!("no answer within {EXPORT_TIMEOUT:?}")),
                    Ok(Err(status)) => {
                        return Err(format!("{:?}: {}", status.code(), status.message()));
                    }
                    Ok(Ok(response)) => response.into_inner().partial_success,
                }
            }
            Transport::Http { agent, url } => {
                let body = request.encode_to_vec();
                let mut response = agent
                    .post(url.as_str())
                    .header("Content-Type", "application/x-protobuf")
                    .send(&body)
                    .map_err(|e| e.to_string())?;
                let bytes = response.body_mut().read_to_vec().unwrap_or_default();
                ExportMetricsServiceResponse::decode(bytes.as_slice())
                    .ok()
                    .and_then(|r| r.partial_success)
            }
        };
        match rejected {
            Some(p) if p.rejected_data_points > 0 => Err(format!(
                "the collector rejected {} data points: {}",
                p.rejected_data_points, p.error_message
            )),
            _ => Ok(()),
        }
    }
}

/// Builds export requests from snapshots.
struct RequestEncoder {
    resource: Resource,
    /// app_name, instance_id, run_id, version: on every data point.
    base: Vec<KeyValue>,
    /// When the sink started (ns since the epoch): the start of every cumulative series.
    start_time: u64,
}

impl RequestEncoder {
    fn request(&self, snap: &Snapshot, time: u64) -> ExportMetricsServiceRequest {
        let number = |attrs: Vec<KeyValue>, value: u64| NumberDataPoint {
            attributes: attrs,
            start_time_unix_nano: self.start_time,
            time_unix_nano: time,
            // OTLP integers are signed; a counter past i64::MAX is not a real concern.
            value: Some(number_data_point::Value::AsInt(
                i64::try_from(value).unwrap_or(i64::MAX),
            )),
            ..Default::default()
        };
        let histogram = |attrs: Vec<KeyValue>, b: &BucketCounts| HistogramDataPoint {
            attributes: attrs,
            start_time_unix_nano: self.start_time,
            time_unix_nano: time,
            count: b.count(),
            sum: Some(b.sum_ms),
            bucket_counts: b.counts.clone(),
            explicit_bounds: b.bounds_ms.to_vec(),
            ..Default::default()
        };
        let with = |more: &[(&str, &str)]| -> Vec<KeyValue> {
            self.base
                .iter()
                .cloned()
                .chain(more.iter().map(|(k, v)| kv(k, v)))
                .collect()
        };

        let mut operations = Vec::new();
        let mut durations = Vec::new();
        for op in &snap.ops {
            operations.push(number(
                with(&[
                    ("operation", &op.name),
                    ("status", "success"),
                    ("error_type", "none"),
                ]),
                op.success,
            ));
            for (class, &n) in ErrorClass::ALL.iter().zip(&op.errors) {
                if n > 0 {
                    operations.push(number(
                        with(&[
                            ("operation", &op.name),
                            ("status", "error"),
                            ("error_type", class.label()),
                        ]),
                        n,
                    ));
                }
            }
            durations.push(histogram(
                with(&[("operation", &op.name), ("status", "success")]),
                &op.duration,
            ));
        }
        let connections = [
            ("initiated", snap.conn_initiated),
            ("success", snap.conn_succeeded),
            ("error", snap.conn_failed),
        ]
        .into_iter()
        .map(|(status, n)| number(with(&[("status", status)]), n))
        .collect();

        let metrics = vec![
            sum_metric(
                "redis_operations_total",
                "Redis commands completed, by outcome",
                operations,
            ),
            histogram_metric(
                "redis_operation_duration",
                "Latency of successful Redis commands",
                durations,
            ),
            sum_metric(
                "redis_connections_total",
                "Connection attempts, by outcome",
                connections,
            ),
            sum_metric(
                "redis_connection_drops_total",
                "Established connections that broke",
                vec![number(self.base.clone(), snap.drops)],
            ),
            histogram_metric(
                "redis_reconnection_duration",
                "How long a connection was down before it was re-established",
                vec![histogram(self.base.clone(), &snap.reconnection)],
            ),
        ];
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "redis-loadgen".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}

fn sum_metric(name: &str, description: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: description.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn histogram_metric(name: &str, description: &str, points: Vec<HistogramDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: description.into(),
        unit: "ms".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn base_attributes(labels: &Labels) -> Vec<KeyValue> {
    vec![
        kv("app_name", &labels.app_name),
        kv("instance_id", &labels.instance_id),
        kv("run_id", &labels.run_id),
        kv("version", &labels.version),
    ]
}

fn resource(service_name: &str, labels: &Labels) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", service_name),
            kv("service.version", &labels.version),
            kv("service.instance.id", &labels.instance_id),
        ],
        ..Default::default()
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_url_appends_the_metrics_path_once() {
        assert_eq!(
            http_url("http://h:4318"),
            "http://h:4318/v1/metrics".to_string()
        );
        assert_eq!(
            http_url("http://h:4318/base"),
            "http://h:4318/base/v1/metrics"
        );
        assert_eq!(
            http_url("http://h:4318/v1/metrics"),
            "http://h:4318/v1/metrics"
        );
        assert_eq!(grpc_origin("http://h:4317/x/y"), "http://h:4317");
    }
}
