//! OTLP export (`--otel-endpoint`): pushes the family's metrics (cumulative temporality) and
//! the run's spans to an OpenTelemetry collector over gRPC or HTTP/protobuf, plain or TLS,
//! with optional headers (`--otel-headers`).
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
//! Spans are not cumulative: they queue (bounded, see [`MAX_PENDING_SPANS`]) and leave with
//! the next export.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status, span, status};
use prost::Message;

use super::series::{BucketCounts, FamilyKind, Snapshot, Unit, Value};
use super::spans::{AttrValue, Span, SpanKind};
use super::{Labels, Sink};
use crate::config::{OtlpConfig, OtlpProtocol};
use crate::error::AppError;

/// Bound on one export (connect included): a slow collector costs at most this per interval,
/// and at most about twice this at exit.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// Spans waiting for an export; more are dropped (and counted) while the collector is away.
const MAX_PENDING_SPANS: usize = 8192;

/// Hands snapshots and spans to the exporter thread.
pub struct OtlpSink {
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
    /// Spans not sent yet.
    spans: Vec<Span>,
    /// Spans dropped because too many were waiting.
    dropped_spans: u64,
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
            "exporting metrics and traces over OTLP"
        );
        Ok(OtlpSink {
            export_interval: cfg.export_interval,
            last_published: Instant::now(),
            slot,
            thread: Some(thread),
        })
    }

    /// Hands `snapshot` (if there is one with data) to the exporter thread; `closing`: it is
    /// the last one.
    fn publish(&mut self, snapshot: Option<&Snapshot>, closing: bool) {
        self.last_published = Instant::now();
        let mut slot = self.slot.lock();
        if let Some(snapshot) = snapshot.filter(|s| s.generation > 0) {
            slot.pending = Some((snapshot.clone(), unix_nanos()));
        }
        slot.closing |= closing;
        drop(slot);
        self.slot.changed.notify_one();
    }

    /// Sends `last` and what is pending, then stops the exporter thread (once).
    fn close(&mut self, last: Option<&Snapshot>) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.publish(last, true);
        // Bounded: the export in progress and the final one each end within EXPORT_TIMEOUT.
        if thread.join().is_err() {
            tracing::warn!("the OTLP export thread panicked; final metrics may be missing");
        }
    }
}

impl Sink for OtlpSink {
    fn interval(&mut self, snapshot: &Snapshot) {
        // A tenth of slack: metrics intervals that match the export interval arrive a hair
        // early or late, and a strict `>=` would then skip every other one.
        let due = self.export_interval - self.export_interval / 10;
        if self.last_published.elapsed() >= due {
            self.publish(Some(snapshot), false);
        }
    }

    fn spans(&mut self, spans: &[Span]) {
        let mut slot = self.slot.lock();
        let room = MAX_PENDING_SPANS.saturating_sub(slot.spans.len());
        let dropped = spans.len().saturating_sub(room);
        slot.dropped_spans += dropped as u64;
        slot.spans.extend(spans.iter().take(room).cloned());
    }

    fn finish(&mut self, last: &Snapshot) {
        self.close(Some(last));
    }
}

impl Drop for OtlpSink {
    /// Not finished (a panic unwinding past the telemetry): what is pending still goes.
    fn drop(&mut self) {
        self.close(None);
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
        let (snapshot, spans, dropped, last) = {
            let mut state = slot.lock();
            while state.pending.is_none() && !state.closing {
                state = slot
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            let spans = std::mem::take(&mut state.spans);
            let dropped = std::mem::take(&mut state.dropped_spans);
            (state.pending.take(), spans, dropped, state.closing)
        };
        if dropped > 0 {
            tracing::warn!("{dropped} spans dropped: the OTLP collector is not keeping up");
        }
        let mut result = Ok(());
        if let Some((snapshot, time)) = snapshot {
            result = transport.export_metrics(encoder.metrics(&snapshot, time));
        }
        if !spans.is_empty() {
            let traced = transport.export_traces(encoder.traces(&spans));
            result = result.and(traced);
        }
        match (result, &mut failing) {
            (Ok(()), _) => {
                if let Some(f) = failing.take() {
                    tracing::info!(
                        "OTLP export works again (after {} failed exports)",
                        f.failures
                    );
                }
                if last {
                    tracing::debug!("final metrics and spans exported over OTLP");
                }
            }
            (Err(e), _) if last => {
                tracing::warn!("OTLP export of the final metrics and spans failed: {e}");
            }
            (Err(e), None) => {
                tracing::warn!("OTLP export failed (the run goes on): {e}");
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
                        "OTLP export still failing ({} failed exports): {e}",
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
        OtlpProtocol::Http => http_url(&cfg.endpoint, "metrics"),
    }
}

/// gRPC addresses a service, not a path: only scheme and authority count.
fn grpc_origin(endpoint: &str) -> String {
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("http", endpoint));
    format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest))
}

/// OTLP/HTTP posts to `<endpoint>/v1/<signal>` (the spec's rule for the generic endpoint);
/// an endpoint that already ends in `/v1/metrics` or `/v1/traces` has that replaced.
fn http_url(endpoint: &str, signal: &str) -> String {
    let base = endpoint
        .strip_suffix("/v1/metrics")
        .or_else(|| endpoint.strip_suffix("/v1/traces"))
        .unwrap_or(endpoint);
    format!("{base}/v1/{signal}")
}

struct GrpcTransport {
    runtime: tokio::runtime::Runtime,
    metrics: MetricsServiceClient<tonic::transport::Channel>,
    traces: TraceServiceClient<tonic::transport::Channel>,
    headers: tonic::metadata::MetadataMap,
}

enum Transport {
    /// tonic needs a runtime; this current-thread one lives as long as the exporter thread,
    /// so it outlasts every export, the final one included.
    Grpc(Box<GrpcTransport>),
    Http {
        agent: ureq::Agent,
        metrics_url: String,
        traces_url: String,
        headers: Vec<(String, String)>,
    },
}

impl Transport {
    fn new(cfg: &OtlpConfig) -> Result<Self, AppError> {
        let tls = cfg.endpoint.starts_with("https://");
        match cfg.protocol {
            OtlpProtocol::Grpc => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| AppError::Run(format!("cannot start the OTLP runtime: {e}")))?;
                let origin = grpc_origin(&cfg.endpoint);
                let mut endpoint = tonic::transport::Endpoint::from_shared(origin.clone())
                    .map_err(|e| AppError::Run(format!("invalid OTLP endpoint '{origin}': {e}")))?
                    .connect_timeout(EXPORT_TIMEOUT)
                    .timeout(EXPORT_TIMEOUT);
                if tls {
                    let mut config = tonic::transport::ClientTlsConfig::new()
                        // A TLS-terminating proxy may not negotiate h2 by ALPN.
                        .assume_http2(true);
                    config = match &cfg.ca_pem {
                        Some(pem) => {
                            config.ca_certificate(tonic::transport::Certificate::from_pem(pem))
                        }
                        None => config.with_native_roots(),
                    };
                    endpoint = endpoint.tls_config(config).map_err(|e| {
                        AppError::Run(format!(
                            "cannot set up TLS to the OTLP endpoint '{origin}': {e}"
                        ))
                    })?;
                }
                let mut headers = tonic::metadata::MetadataMap::new();
                for (key, value) in &cfg.headers {
                    let key = tonic::metadata::MetadataKey::from_bytes(key.as_bytes());
                    let value = tonic::metadata::MetadataValue::try_from(value.as_str());
                    match (key, value) {
                        (Ok(key), Ok(value)) => {
                            headers.insert(key, value);
                        }
                        // Validated at config time; never shown (it may be a credential).
                        _ => {
                            return Err(AppError::Run(
                                "an OTLP header cannot be sent over gRPC".into(),
                            ));
                        }
                    }
                }
                // Lazy: no connection until the first export, and a broken one is re-made
                // on the next, so a collector that starts late or restarts is picked up.
                let channel = {
                    let _context = runtime.enter();
                    endpoint.connect_lazy()
                };
                Ok(Transport::Grpc(Box::new(GrpcTransport {
                    runtime,
                    metrics: MetricsServiceClient::new(channel.clone()),
                    traces: TraceServiceClient::new(channel),
                    headers,
                })))
            }
            OtlpProtocol::Http => {
                let mut config = ureq::Agent::config_builder()
                    .timeout_global(Some(EXPORT_TIMEOUT))
                    .http_status_as_error(true);
                if tls {
                    config = config.tls_config(http_tls(cfg.ca_pem.as_deref())?);
                }
                Ok(Transport::Http {
                    agent: ureq::Agent::new_with_config(config.build()),
                    metrics_url: http_url(&cfg.endpoint, "metrics"),
                    traces_url: http_url(&cfg.endpoint, "traces"),
                    headers: cfg.headers.clone(),
                })
            }
        }
    }

    /// One metrics export, within [`EXPORT_TIMEOUT`]; the error as one line.
    fn export_metrics(&mut self, request: ExportMetricsServiceRequest) -> Result<(), String> {
        let rejected = match self {
            Transport::Grpc(grpc) => {
                let request = with_metadata(request, &grpc.headers);
                grpc_call(&grpc.runtime, grpc.metrics.export(request))?.partial_success
            }
            Transport::Http {
                agent,
                metrics_url,
                headers,
                ..
            } => {
                let bytes = http_post(agent, metrics_url, headers, &request.encode_to_vec())?;
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

    /// One traces export, within [`EXPORT_TIMEOUT`]; the error as one line.
    fn export_traces(&mut self, request: ExportTraceServiceRequest) -> Result<(), String> {
        let rejected = match self {
            Transport::Grpc(grpc) => {
                let request = with_metadata(request, &grpc.headers);
                grpc_call(&grpc.runtime, grpc.traces.export(request))?.partial_success
            }
            Transport::Http {
                agent,
                traces_url,
                headers,
                ..
            } => {
                let bytes = http_post(agent, traces_url, headers, &request.encode_to_vec())?;
                ExportTraceServiceResponse::decode(bytes.as_slice())
                    .ok()
                    .and_then(|r| r.partial_success)
            }
        };
        match rejected {
            Some(p) if p.rejected_spans > 0 => Err(format!(
                "the collector rejected {} spans: {}",
                p.rejected_spans, p.error_message
            )),
            _ => Ok(()),
        }
    }
}

/// TLS for OTLP/HTTP: the given CA, else the system's roots.
fn http_tls(ca_pem: Option<&[u8]>) -> Result<ureq::tls::TlsConfig, AppError> {
    use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
    let certs: Vec<Certificate<'static>> = match ca_pem {
        Some(pem) => ureq::tls::parse_pem(pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect(),
        None => rustls_native_certs::load_native_certs()
            .certs
            .iter()
            .map(|der| Certificate::from_der(der.as_ref()).to_owned())
            .collect(),
    };
    if certs.is_empty() {
        return Err(AppError::Run(
            "no CA certificate to verify the OTLP endpoint with (--otel-ca-cert holds none, or the system has no roots)".into(),
        ));
    }
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&certs))
        .build())
}

/// A gRPC request carrying the configured headers.
fn with_metadata<T>(message: T, headers: &tonic::metadata::MetadataMap) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    *request.metadata_mut() = headers.clone();
    request
}

/// Runs one gRPC call on the exporter's runtime, within [`EXPORT_TIMEOUT`].
fn grpc_call<R>(
    runtime: &tokio::runtime::Runtime,
    call: impl std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
) -> Result<R, String> {
    // The timer must be made inside the runtime: hence the async block.
    let timed = async { tokio::time::timeout(EXPORT_TIMEOUT, call).await };
    match runtime.block_on(timed) {
        Err(_) => Err(format!("no answer within {EXPORT_TIMEOUT:?}")),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Ok(Ok(response)) => Ok(response.into_inner()),
    }
}

/// One OTLP/HTTP POST; the response body.
fn http_post(
    agent: &ureq::Agent,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Vec<u8>, String> {
    let mut request = agent
        .post(url)
        .header("Content-Type", "application/x-protobuf");
    for (key, value) in headers {
        request = request.header(key.as_str(), value.as_str());
    }
    let mut response = request.send(body).map_err(|e| e.to_string())?;
    Ok(response.body_mut().read_to_vec().unwrap_or_default())
}

/// Builds export requests from snapshots and spans.
struct RequestEncoder {
    resource: Resource,
    /// app_name, instance_id, run_id, version: on every data point.
    base: Vec<KeyValue>,
    /// When the sink started (ns since the epoch): the start of every cumulative series.
    start_time: u64,
}

impl RequestEncoder {
    fn scope() -> InstrumentationScope {
        InstrumentationScope {
            name: "redis-loadgen".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        }
    }

    fn metrics(&self, snap: &Snapshot, time: u64) -> ExportMetricsServiceRequest {
        let metrics = snap
            .families()
            .iter()
            .map(|family| {
                let attributes = |labels: &[(&str, &str)]| -> Vec<KeyValue> {
                    self.base
                        .iter()
                        .cloned()
                        .chain(labels.iter().map(|(k, v)| kv(k, v)))
                        .collect()
                };
                let numbers = || -> Vec<NumberDataPoint> {
                    family
                        .points
                        .iter()
                        .map(|p| NumberDataPoint {
                            attributes: attributes(&p.labels),
                            start_time_unix_nano: self.start_time,
                            time_unix_nano: time,
                            value: Some(match p.value {
                                // OTLP integers are signed; a counter past i64::MAX is not a
                                // real concern.
                                Value::Int(n) => number_data_point::Value::AsInt(
                                    i64::try_from(n).unwrap_or(i64::MAX),
                                ),
                                Value::Float(x) => number_data_point::Value::AsDouble(x),
                                Value::Histogram(_) => number_data_point::Value::AsInt(0),
                            }),
                            ..Default::default()
                        })
                        .collect()
                };
                let data = match family.kind {
                    FamilyKind::Counter => metric::Data::Sum(Sum {
                        data_points: numbers(),
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    }),
                    FamilyKind::Gauge => metric::Data::Gauge(Gauge {
                        data_points: numbers(),
                    }),
                    FamilyKind::Histogram => metric::Data::Histogram(Histogram {
                        data_points: family
                            .points
                            .iter()
                            .filter_map(|p| match p.value {
                                Value::Histogram(b) => {
                                    Some(self.histogram_point(attributes(&p.labels), b, time))
                                }
                                _ => None,
                            })
                            .collect(),
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    }),
                };
                Metric {
                    name: family.otlp_name(),
                    description: family.help.into(),
                    unit: match family.unit {
                        Unit::Milliseconds => "ms".into(),
                        Unit::None => String::new(),
                    },
                    data: Some(data),
                    ..Default::default()
                }
            })
            .collect();
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(Self::scope()),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn histogram_point(
        &self,
        attrs: Vec<KeyValue>,
        b: &BucketCounts,
        time: u64,
    ) -> HistogramDataPoint {
        HistogramDataPoint {
            attributes: attrs,
            start_time_unix_nano: self.start_time,
            time_unix_nano: time,
            count: b.count(),
            sum: Some(b.sum_ms),
            bucket_counts: b.counts.clone(),
            explicit_bounds: b.bounds_ms.to_vec(),
            ..Default::default()
        }
    }

    fn traces(&self, spans: &[Span]) -> ExportTraceServiceRequest {
        let spans = spans
            .iter()
            .map(|s| opentelemetry_proto::tonic::trace::v1::Span {
                trace_id: s.trace_id.to_vec(),
                span_id: s.span_id.to_vec(),
                parent_span_id: s.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
                name: s.name.clone(),
                kind: match s.kind {
                    SpanKind::Internal => span::SpanKind::Internal,
                    SpanKind::Client => span::SpanKind::Client,
                } as i32,
                start_time_unix_nano: s.start_unix_ns,
                end_time_unix_nano: s.end_unix_ns,
                attributes: self
                    .base
                    .iter()
                    .cloned()
                    .chain(s.attributes.iter().map(|(k, v)| attr(k, v)))
                    .collect(),
                status: Some(match &s.error {
                    Some(message) => Status {
                        message: message.clone(),
                        code: status::StatusCode::Error as i32,
                    },
                    None => Status::default(),
                }),
                ..Default::default()
            })
            .collect();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(Self::scope()),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}

fn attr(key: &str, value: &AttrValue) -> KeyValue {
    let value = match value {
        AttrValue::Str(s) => any_value::Value::StringValue(s.clone()),
        AttrValue::Int(n) => any_value::Value::IntValue(*n),
        AttrValue::Float(x) => any_value::Value::DoubleValue(*x),
    };
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
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
    fn http_url_appends_the_signal_path_once() {
        assert_eq!(
            http_url("http://h:4318", "metrics"),
            "http://h:4318/v1/metrics"
        );
        assert_eq!(
            http_url("http://h:4318/base", "traces"),
            "http://h:4318/base/v1/traces"
        );
        assert_eq!(
            http_url("http://h:4318/v1/metrics", "traces"),
            "http://h:4318/v1/traces"
        );
        assert_eq!(grpc_origin("http://h:4317/x/y"), "http://h:4317");
        assert_eq!(grpc_origin("https://h:4317"), "https://h:4317");
    }
}
