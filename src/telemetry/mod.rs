//! Telemetry: the run's figures and spans for systems outside the process (a Prometheus
//! scrape endpoint, an OTLP collector), fed from the reporter's merged interval data, never per
//! command.
//!
//! The reporter hands every interval's merged [`IntervalData`] (a delta) to [`Telemetry`],
//! which folds it into one cumulative [`Snapshot`] (counters monotonic, histograms
//! cumulative, as both Prometheus and OTLP expect) and passes that to each configured
//! [`Sink`]; the workers' trace events in the delta and the outage tracker's events become
//! [`Span`]s. Sinks are flushed and shut down by [`Telemetry::finish`] on every exit path
//! (also from `Drop`), so the last interval is not lost. A sink must never block the reporter
//! for long or fail the run: it logs and carries on.

pub mod otlp;
pub mod prometheus;
pub mod series;
pub mod spans;

use std::time::{Duration, Instant, SystemTime};

use crate::config::RunnerConfig;
use crate::error::AppError;
use crate::metrics::IntervalData;
use crate::metrics::outage::LiveEvent;
use crate::shutdown::Shutdown;
use series::{IntervalExtras, SeriesInfo, Snapshot};
use spans::{AttrValue, Clock, Span, SpanFactory};

/// The labels every series carries (the family's attributes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    pub app_name: String,
    pub instance_id: String,
    pub run_id: String,
    pub version: String,
}

impl Labels {
    pub fn from_config(cfg: &RunnerConfig) -> Self {
        Labels {
            app_name: cfg.identity.app_name.clone(),
            instance_id: cfg.identity.instance_id.clone(),
            run_id: cfg.identity.run_id.clone(),
            version: cfg.identity.version.clone(),
        }
    }
}

/// The run's fixed facts some series carry.
pub fn series_info(cfg: &RunnerConfig) -> SeriesInfo {
    let client = if cfg.redis.cluster.is_some() {
        "cluster"
    } else if cfg.redis.sentinel.is_some() {
        "sentinel"
    } else {
        "standalone"
    };
    SeriesInfo {
        client,
        target_ops_per_second: cfg.test.target_ops_per_second,
        pubsub_channel: cfg.workload.pubsub_channels.join(","),
    }
}

/// A destination for the run's figures.
pub trait Sink: Send {
    /// The cumulative figures after one more interval.
    fn interval(&mut self, snapshot: &Snapshot);

    /// Finished spans (only OTLP takes them).
    fn spans(&mut self, _spans: &[Span]) {}

    /// Flushes what is pending, with `last` (the run's final figures, already passed to
    /// [`Sink::interval`]), and shuts down; called once, at the end of the run.
    fn finish(&mut self, _last: &Snapshot) {}

    /// After the report is written: a pull-based sink may wait (bounded, ended by an abort)
    /// until its final values have been collected.
    fn linger(&mut self, _shutdown: &Shutdown) {}
}

/// Spans are on (OTLP export is): the factory and what is needed for the run span.
struct Tracing {
    factory: SpanFactory,
    /// The run span's attributes: `config.<key>` = the resolved value, secrets redacted.
    config: Vec<(&'static str, AttrValue)>,
    /// The offset of the open outage, if one is open.
    open_outage: Option<Duration>,
}

/// The run's sinks, and the cumulative figures they are fed.
pub struct Telemetry {
    sinks: Vec<Box<dyn Sink>>,
    snapshot: Snapshot,
    outages_started: u64,
    outage_open: bool,
    /// Process CPU time at the run's start (seconds).
    cpu_start: f64,
    tracing: Option<Tracing>,
    finished: bool,
}

/// The sinks the configuration asks for. Fails (exit 1, before any load) when a sink cannot
/// start, e.g. the Prometheus listen address is taken. (An unreachable OTLP collector is not
/// a failure: it only costs warnings.)
pub fn start(cfg: &RunnerConfig) -> Result<Telemetry, AppError> {
    let labels = Labels::from_config(cfg);
    let mut telemetry = Telemetry::off();
    telemetry.snapshot = Snapshot::new(series_info(cfg));
    if let Some(otlp) = &cfg.output.otlp {
        telemetry.add(Box::new(otlp::OtlpSink::start(otlp, labels.clone())?));
    }
    if let Some((host, port)) = &cfg.output.prometheus_listen {
        telemetry.add(Box::new(prometheus::PrometheusSink::start(
            host,
            *port,
            labels,
            cfg.output.prometheus_linger,
        )?));
    }
    Ok(telemetry)
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::off()
    }
}

impl Telemetry {
    /// No sinks: telemetry off.
    pub fn off() -> Self {
        Telemetry {
            sinks: Vec::new(),
            snapshot: Snapshot::default(),
            outages_started: 0,
            outage_open: false,
            cpu_start: 0.0,
            tracing: None,
            finished: false,
        }
    }

    /// Adds a sink.
    pub fn add(&mut self, sink: Box<dyn Sink>) {
        self.sinks.push(sink);
    }

    pub fn is_off(&self) -> bool {
        self.sinks.is_empty()
    }

    /// The measured run starts now (`started` on the monotonic clock, `wall` on the system
    /// clock: the time base of spans and outage offsets); the run span starts at `began`,
    /// before connecting.
    pub fn run_started(
        &mut self,
        cfg: &RunnerConfig,
        ops: crate::metrics::OpTable,
        began: Instant,
        started: Instant,
        wall: SystemTime,
    ) {
        self.cpu_start = cpu_seconds();
        if cfg.output.otlp.is_none() {
            return;
        }
        let config = cfg
            .resolved
            .iter()
            .filter(|(_, (value, _))| !value.is_empty())
            .map(|(key, (value, _))| (*key, AttrValue::Str(value.clone())))
            .collect();
        self.tracing = Some(Tracing {
            factory: SpanFactory::new(Clock::new(started, wall), began, ops),
            config,
            open_outage: None,
        });
    }

    /// An outage started or ended (from the outage tracker, as the console shows it).
    pub fn outage(&mut self, event: &LiveEvent) {
        match *event {
            LiveEvent::Started { at_s } => {
                self.outages_started += 1;
                self.outage_open = true;
                if let Some(t) = &mut self.tracing {
                    t.open_outage = Some(Duration::from_secs_f64(at_s));
                }
            }
            LiveEvent::Ended { start_s, end_s } => {
                self.outage_open = false;
                let Some(t) = &mut self.tracing else {
                    return;
                };
                t.open_outage = None;
                let span = t.factory.outage(
                    Duration::from_secs_f64(start_s),
                    Duration::from_secs_f64(end_s),
                    false,
                );
                for sink in &mut self.sinks {
                    sink.spans(std::slice::from_ref(&span));
                }
            }
        }
    }

    /// Hands one interval (a delta, `elapsed` since the measured run started) to every sink,
    /// and the workers' trace events in it as spans.
    pub fn interval(&mut self, delta: &IntervalData, elapsed: Duration) {
        if self.sinks.is_empty() {
            return;
        }
        let extras = IntervalExtras {
            elapsed,
            outages_started: self.outages_started,
            outage_active: self.outage_open,
            cpu_seconds: cpu_seconds() - self.cpu_start,
        };
        self.snapshot.add(delta, &extras);
        for sink in &mut self.sinks {
            sink.interval(&self.snapshot);
        }
        if let Some(t) = &mut self.tracing
            && !delta.traces.is_empty()
        {
            let spans: Vec<Span> = delta
                .traces
                .iter()
                .map(|e| t.factory.from_event(e))
                .collect();
            for sink in &mut self.sinks {
                sink.spans(&spans);
            }
        }
    }

    /// The run span (and an outage still open), ending at `end`: call once the run is over,
    /// before [`Telemetry::finish`].
    pub fn run_ended(&mut self, end: Instant) {
        let Some(t) = &mut self.tracing else {
            return;
        };
        let mut spans = Vec::new();
        if let Some(start) = t.open_outage.take() {
            let until = end.saturating_duration_since(t.factory.clock().origin());
            spans.push(t.factory.outage(start, until, true));
        }
        spans.push(t.factory.run(end, std::mem::take(&mut t.config)));
        for sink in &mut self.sinks {
            sink.spans(&spans);
        }
    }

    /// Flushes and shuts every sink down (once).
    pub fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        for sink in &mut self.sinks {
            sink.finish(&self.snapshot);
        }
    }

    /// Lets pull-based sinks wait for their final values to be collected (see [`Sink::linger`]).
    pub fn linger(&mut self, shutdown: &Shutdown) {
        self.finish();
        for sink in &mut self.sinks {
            sink.linger(shutdown);
        }
    }
}

/// The process's CPU time (user + system), seconds.
fn cpu_seconds() -> f64 {
    let t = crate::control::cpu_times();
    t.user_s + t.sys_s
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.finish();
    }
}
