//! Telemetry: the run's figures for systems outside the process (a Prometheus scrape endpoint,
//! an OTLP collector), fed from the reporter's merged interval data, never per command.
//!
//! The reporter hands every interval's merged [`IntervalData`] (a delta) to [`Telemetry`],
//! which passes it to each configured [`Sink`]. A sink keeps its own cumulative state, so
//! counters are monotonic and histograms cumulative, as both Prometheus and OTLP expect.
//! Sinks are flushed and shut down by [`Telemetry::finish`] on every exit path (also from
//! `Drop`), so the last interval is not lost. A sink must never block the reporter for long
//! or fail the run: it logs and carries on.

pub mod otlp;
pub mod prometheus;
pub mod series;

use std::time::Duration;

use crate::config::RunnerConfig;
use crate::error::AppError;
use crate::metrics::IntervalData;
use crate::shutdown::Shutdown;

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

/// A destination for the run's figures.
pub trait Sink: Send {
    /// One interval's merged data (a delta since the previous call) and the time since the
    /// measured run started.
    fn interval(&mut self, delta: &IntervalData, elapsed: Duration);

    /// Flushes what is pending and shuts down; called once, at the end of the run.
    fn finish(&mut self) {}

    /// After the report is written: a pull-based sink may wait (bounded, ended by an abort)
    /// until its final values have been collected.
    fn linger(&mut self, _shutdown: &Shutdown) {}
}

/// The run's sinks.
#[derive(Default)]
pub struct Telemetry {
    sinks: Vec<Box<dyn Sink>>,
    finished: bool,
}

/// The sinks the configuration asks for. Fails (exit 1, before any load) when a sink cannot
/// start, e.g. the Prometheus listen address is taken. (An unreachable OTLP collector is not
/// a failure: it only costs warnings.)
pub fn start(cfg: &RunnerConfig) -> Result<Telemetry, AppError> {
    let labels = Labels::from_config(cfg);
    let mut telemetry = Telemetry::off();
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

impl Telemetry {
    /// No sinks: telemetry off.
    pub fn off() -> Self {
        Telemetry::default()
    }

    /// Adds a sink.
    pub fn add(&mut self, sink: Box<dyn Sink>) {
        self.sinks.push(sink);
    }

    pub fn is_off(&self) -> bool {
        self.sinks.is_empty()
    }

    /// Hands one interval to every sink.
    pub fn interval(&mut self, delta: &IntervalData, elapsed: Duration) {
        for sink in &mut self.sinks {
            sink.interval(delta, elapsed);
        }
    }

    /// Flushes and shuts every sink down (once).
    pub fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        for sink in &mut self.sinks {
            sink.finish();
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

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.finish();
    }
}
