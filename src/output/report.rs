//! The run report: totals, per-command figures, intervals, client cost and the resolved config.
//!
//! Its JSON form is described by `docs/report.schema.json`; a test checks real output against it.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::RunnerConfig;
use crate::control::{CpuTimes, ServerInfo};
use crate::error::ErrorClass;
use crate::metrics::data::MAX_GAUGES;
use crate::metrics::outage::OutageWindow;
use crate::metrics::{CommandStats, ConnStats, IntervalData, LatencySummary};

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The configured duration passed.
    Duration,
    /// Ctrl-C or SIGTERM.
    Signal,
    /// Workers did not finish in time (or a second signal): the report holds what was handed in.
    Aborted,
    /// The run could not start.
    Error,
}

impl EndReason {
    pub fn label(self) -> &'static str {
        match self {
            EndReason::Duration => "duration",
            EndReason::Signal => "signal",
            EndReason::Aborted => "aborted",
            EndReason::Error => "error",
        }
    }
}

/// Figures of one command.
#[derive(Debug, Clone, Serialize)]
pub struct OperationReport {
    pub total: u64,
    pub success: u64,
    /// Successful reads that found something / found nothing (0 for commands that are not
    /// reads).
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
    /// Failed commands by the family's `error_type` class (every class listed).
    pub errors_by_type: BTreeMap<&'static str, u64>,
    pub ops_per_second: f64,
    /// Latency of successful commands, from the intended start.
    pub latency_ms: LatencySummary,
    /// Open loop only: latency from the actual send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_time_ms: Option<LatencySummary>,
    /// Latencies beyond the histogram's one-hour range (counted, never clamped).
    pub latency_overflows: u64,
}

/// One metrics interval.
#[derive(Debug, Clone, Serialize)]
pub struct IntervalReport {
    pub index: usize,
    /// Seconds since the load started, at the end of this interval.
    pub elapsed_s: f64,
    pub interval_s: f64,
    pub total: u64,
    pub success: u64,
    pub errors: u64,
    pub ops_per_second: f64,
    pub latency_ms: LatencySummary,
    pub reconnects: u64,
    /// Data-plane connections open at the end of the interval, over every client instance
    /// (successful connects so far minus connections lost; they all close at the end).
    pub open_connections: u64,
    /// Per command: commands completed in this interval.
    pub operations: BTreeMap<String, u64>,
    /// The workload's gauges sampled in this interval (e.g. `stream_pending`), latest sample.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub gauges: BTreeMap<String, u64>,
    /// How busy the I/O threads were (not waiting in their poll), percent of their time;
    /// absent when no I/O thread ran in the interval (cluster workers have threads of their
    /// own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_busy_percent: Option<f64>,
}

/// A gauge over the run: its last sample and the largest.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GaugeReport {
    pub last: u64,
    pub max: u64,
}

/// Traffic outside the measured run: `--prefill` (setup) or `--warmup`.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub duration_s: f64,
    pub total: u64,
    pub errors: u64,
    /// Commands sent in the phase, by name.
    pub operations: BTreeMap<String, u64>,
}

impl PhaseReport {
    pub fn from_prefill(outcome: &crate::workload::prefill::PrefillOutcome) -> Self {
        PhaseReport {
            duration_s: outcome.duration_s,
            total: outcome.commands.values().sum(),
            errors: outcome.errors,
            operations: outcome.commands.clone(),
        }
    }

    pub fn from_data(data: &IntervalData, length: Duration) -> Self {
        PhaseReport {
            duration_s: length.as_secs_f64(),
            total: data.total(),
            errors: data.errors(),
            operations: data
                .per_command()
                .map(|(name, s)| (name.to_string(), s.total()))
                .collect(),
        }
    }
}

/// Open-loop pacing: target vs achieved, and how late batches were sent. Rates count units of
/// work: commands, or transactions, stream requests or pub/sub messages in those workloads.
#[derive(Debug, Clone, Serialize)]
pub struct RateReport {
    pub target_ops_per_second: f64,
    pub achieved_ops_per_second: f64,
    pub schedule_lag_ms: LatencySummary,
}

#[derive(Debug, Clone, Serialize)]
pub struct CpuReport {
    pub user_s: f64,
    pub sys_s: f64,
    /// (user + sys) / commands, in microseconds: the load generator's own cost per command.
    pub us_per_op: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionsReport {
    pub workers: usize,
    pub reconnects: u64,
    pub connect_failures: u64,
    /// Connection attempts (first connects and reconnect attempts of the measured run's
    /// workers), and how they ended.
    pub initiated: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Working connections lost.
    pub drops: u64,
    /// Workers that gave up reconnecting (`--retry-attempts`) and sent nothing more.
    pub gave_up: u64,
    /// Cluster mode: MOVED/ASK replies, each followed by sending the command again (the
    /// redirected attempt is also counted as a cluster_error, as the server counts it).
    pub redirects: u64,
    /// Cluster mode: commands counted as connection_error without being sent (their node
    /// was unreachable); the servers never saw them.
    pub not_sent: u64,
    /// PINGs to connections idle longer than `--health-check-interval`, and how many found
    /// the connection dead (replaced before the next command).
    pub health_checks: u64,
    pub health_check_failures: u64,
    /// Reconnections after a drop, and how long the connection was down (drop to next
    /// successful connect).
    pub reconnection_count: u64,
    pub avg_reconnection_duration_ms: f64,
    pub reconnection_duration_ms: LatencySummary,
}

impl ConnectionsReport {
    fn new(workers: usize, totals: &IntervalData) -> Self {
        let c: &ConnStats = &totals.conn;
        let count = c.reconnection.len();
        ConnectionsReport {
            workers,
            reconnects: totals.reconnects,
            connect_failures: totals.connect_failures,
            initiated: c.initiated,
            succeeded: c.succeeded,
            failed: c.failed,
            drops: c.drops,
            gave_up: c.gave_up,
            redirects: c.redirects,
            not_sent: c.not_sent,
            health_checks: c.health_checks,
            health_check_failures: c.health_check_failures,
            reconnection_count: count,
            avg_reconnection_duration_ms: if count > 0 {
                c.reconnection.mean() / 1e6
            } else {
                0.0
            },
            reconnection_duration_ms: LatencySummary::from_histogram(&c.reconnection, 0),
        }
    }
}

/// A window in which commands failed with `connection_error`, `timeout` or `cluster_error`,
/// merged across workers (see `metrics::outage`).
#[derive(Debug, Clone, Serialize)]
pub struct OutageReport {
    /// Seconds since the run's start, and as RFC 3339.
    pub start_s: f64,
    pub start: String,
    pub end_s: f64,
    pub end: String,
    pub duration_s: f64,
    /// Commands that failed with those classes in the window.
    pub failed_commands: u64,
    /// From the start to the first successful command of a worker that was failing; null if
    /// none succeeded before the run ended.
    pub time_to_first_success_s: Option<f64>,
    /// Workers that saw failures in the window.
    pub workers: usize,
    /// The run ended during the outage (`end` is the run's end).
    pub open_at_end: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerReport {
    pub version: String,
    pub role: String,
    pub mode: String,
}

/// The whole report, as written to `--output-file`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub app_name: String,
    pub instance_id: String,
    pub run_id: String,
    pub version: String,
    pub workload_name: String,
    pub run_start: String,
    pub run_end: String,
    pub duration_s: f64,
    pub end_reason: EndReason,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub total_commands_count: u64,
    pub successful_commands_count: u64,
    pub failed_commands_count: u64,
    pub overall_throughput: f64,
    pub latency_ms: LatencySummary,
    pub errors_by_type: BTreeMap<&'static str, u64>,
    pub operations: BTreeMap<String, OperationReport>,
    pub intervals: Vec<IntervalReport>,
    /// `--prefill` traffic, not part of the figures above.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup: Option<PhaseReport>,
    /// `--warmup` traffic, not part of the figures above.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup: Option<PhaseReport>,
    /// Workload counters (e.g. pub/sub messages lost), totals over the run.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, u64>,
    /// Workload gauges sampled during the run (e.g. a stream's backlog); per interval in
    /// `intervals`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub gauges: BTreeMap<String, GaugeReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateReport>,
    pub connections: ConnectionsReport,
    /// Reconnections after a drop and their mean duration (also in `connections`).
    pub reconnection_count: u64,
    pub avg_reconnection_duration_ms: f64,
    /// Outage windows, in time order.
    pub outages: Vec<OutageReport>,
    /// Workload-specific checks made after the run (e.g. increment_check's counter audit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<serde_json::Value>,
    pub client_cpu: CpuReport,
    pub server: ServerReport,
    pub config: serde_json::Value,
}

fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

fn per_second(count: u64, over: Duration) -> f64 {
    let secs = over.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

fn errors_by_type(errors: &[u64; ErrorClass::COUNT]) -> BTreeMap<&'static str, u64> {
    ErrorClass::ALL
        .iter()
        .map(|c| (c.label(), errors[c.index()]))
        .collect()
}

fn operation(stats: &CommandStats, over: Duration) -> OperationReport {
    OperationReport {
        total: stats.total(),
        success: stats.success,
        hits: stats.hits,
        misses: stats.misses,
        errors: stats.error_total(),
        errors_by_type: errors_by_type(&stats.errors),
        ops_per_second: per_second(stats.total(), over),
        latency_ms: LatencySummary::from_histogram(&stats.latency, stats.overflow.max_ns),
        service_time_ms: stats
            .service
            .as_ref()
            .map(|h| LatencySummary::from_histogram(h, 0)),
        latency_overflows: stats.overflow.count,
    }
}

/// Accumulates intervals into the run's totals and builds the final report.
pub struct ReportBuilder {
    cfg_identity: (String, String, String, String),
    workload_name: String,
    config: serde_json::Value,
    workers: usize,
    target: Option<f64>,
    server: ServerReport,
    run_start: SystemTime,
    totals: IntervalData,
    intervals: Vec<IntervalReport>,
    setup: Option<PhaseReport>,
    warmup: Option<PhaseReport>,
    gauge_names: &'static [&'static str],
    /// Each gauge's latest sample so far.
    gauge_last: [Option<u64>; MAX_GAUGES],
    outages: Vec<OutageWindow>,
}

/// The sampled gauges of `values`, by name.
fn gauges(names: &[&str], values: &[Option<u64>]) -> BTreeMap<String, u64> {
    names
        .iter()
        .zip(values)
        .filter_map(|(name, v)| v.map(|v| (name.to_string(), v)))
        .collect()
}

impl ReportBuilder {
    pub fn new(
        cfg: &RunnerConfig,
        server: &ServerInfo,
        run_start: SystemTime,
        empty: IntervalData,
        workers: usize,
    ) -> Self {
        let id = &cfg.identity;
        ReportBuilder {
            cfg_identity: (
                id.app_name.clone(),
                id.instance_id.clone(),
                id.run_id.clone(),
                id.version.clone(),
            ),
            workload_name: cfg.workload.profile.clone(),
            config: cfg.redacted_json(),
            workers,
            target: cfg.test.target_ops_per_second,
            server: ServerReport {
                version: server.version.clone(),
                role: server.role.clone(),
                mode: server.mode.clone(),
            },
            run_start,
            totals: empty,
            intervals: Vec::new(),
            setup: None,
            warmup: None,
            gauge_names: crate::workload::gauge_names(cfg),
            gauge_last: [None; MAX_GAUGES],
            outages: Vec::new(),
        }
    }

    /// The run's outage windows (times relative to the run's start).
    pub fn set_outages(&mut self, outages: Vec<OutageWindow>) {
        self.outages = outages;
    }

    /// Records the traffic before the measured run.
    pub fn set_phases(&mut self, setup: Option<PhaseReport>, warmup: Option<PhaseReport>) {
        self.setup = setup;
        self.warmup = warmup;
    }

    pub fn interval_count(&self) -> usize {
        self.intervals.len()
    }

    /// Adds one interval's merged data; returns its report (for the console).
    pub fn add_interval(
        &mut self,
        data: &IntervalData,
        length: Duration,
        elapsed: Duration,
    ) -> IntervalReport {
        self.totals.add(data);
        for (last, now) in self.gauge_last.iter_mut().zip(data.gauges) {
            *last = now.or(*last);
        }
        let report = IntervalReport {
            index: self.intervals.len(),
            elapsed_s: elapsed.as_secs_f64(),
            interval_s: length.as_secs_f64(),
            total: data.total(),
            success: data.success(),
            errors: data.errors(),
            ops_per_second: per_second(data.total(), length),
            latency_ms: LatencySummary::from_histogram(
                &data.merged_latency(),
                data.overflow().max_ns,
            ),
            reconnects: data.reconnects,
            open_connections: self
                .totals
                .conn
                .succeeded
                .saturating_sub(self.totals.conn.drops),
            operations: data
                .per_command()
                .map(|(name, s)| (name.to_string(), s.total()))
                .collect(),
            gauges: gauges(self.gauge_names, &data.gauges),
            io_busy_percent: data.io_busy_percent(),
        };
        self.intervals.push(report.clone());
        report
    }

    /// The final report. `measured` is the time load was applied (start to stop).
    pub fn finish(
        self,
        run_end: SystemTime,
        measured: Duration,
        cpu: CpuTimes,
        end_reason: EndReason,
    ) -> RunReport {
        let totals = &self.totals;
        let total = totals.total();
        let mut all_errors = [0u64; ErrorClass::COUNT];
        for (_, s) in totals.per_command() {
            for (a, e) in all_errors.iter_mut().zip(s.errors) {
                *a += e;
            }
        }
        let rate = self.target.map(|target| RateReport {
            target_ops_per_second: target,
            achieved_ops_per_second: per_second(totals.units, measured),
            schedule_lag_ms: totals
                .schedule_lag
                .as_ref()
                .map(|h| LatencySummary::from_histogram(h, totals.lag_overflow.max_ns))
                .unwrap_or_default(),
        });
        let (app_name, instance_id, run_id, version) = self.cfg_identity;
        let connections = ConnectionsReport::new(self.workers, totals);
        let run_start = self.run_start;
        let outages = self
            .outages
            .iter()
            .map(|w| OutageReport {
                start_s: w.start.as_secs_f64(),
                start: rfc3339(run_start + w.start),
                end_s: w.end.as_secs_f64(),
                end: rfc3339(run_start + w.end),
                duration_s: (w.end - w.start).as_secs_f64(),
                failed_commands: w.failed_commands,
                time_to_first_success_s: w.time_to_first_success.map(|d| d.as_secs_f64()),
                workers: w.workers,
                open_at_end: w.open_at_end,
            })
            .collect();
        RunReport {
            app_name,
            instance_id,
            run_id,
            version,
            workload_name: self.workload_name,
            run_start: rfc3339(self.run_start),
            run_end: rfc3339(run_end),
            duration_s: measured.as_secs_f64(),
            end_reason,
            error: None,
            total_commands_count: total,
            successful_commands_count: totals.success(),
            failed_commands_count: totals.errors(),
            overall_throughput: per_second(total, measured),
            latency_ms: LatencySummary::from_histogram(
                &totals.merged_latency(),
                totals.overflow().max_ns,
            ),
            errors_by_type: errors_by_type(&all_errors),
            operations: totals
                .per_command()
                .map(|(name, s)| (name.to_string(), operation(s, measured)))
                .collect(),
            intervals: self.intervals,
            setup: self.setup,
            warmup: self.warmup,
            counters: totals
                .counter_names
                .iter()
                .zip(&totals.counters)
                .map(|(name, n)| (name.clone(), *n))
                .collect(),
            gauges: self
                .gauge_names
                .iter()
                .zip(self.gauge_last.iter().zip(&totals.gauges))
                .filter_map(|(name, (last, max))| {
                    Some((
                        name.to_string(),
                        GaugeReport {
                            last: (*last)?,
                            max: (*max)?,
                        },
                    ))
                })
                .collect(),
            rate,
            checks: None,
            reconnection_count: connections.reconnection_count,
            avg_reconnection_duration_ms: connections.avg_reconnection_duration_ms,
            outages,
            connections,
            client_cpu: CpuReport {
                user_s: cpu.user_s,
                sys_s: cpu.sys_s,
                us_per_op: if total > 0 {
                    (cpu.user_s + cpu.sys_s) * 1e6 / total as f64
                } else {
                    0.0
                },
            },
            server: self.server,
            config: self.config,
        }
    }
}

impl RunReport {
    /// The report of a run that could not start: identity, config and the error.
    pub fn failed(cfg: &RunnerConfig, error: String) -> RunReport {
        let now = SystemTime::now();
        let empty = IntervalData::new(Vec::new().into(), false);
        let mut report = ReportBuilder::new(cfg, &ServerInfo::default(), now, empty, 0).finish(
            now,
            Duration::ZERO,
            CpuTimes::default(),
            EndReason::Error,
        );
        report.error = Some(error);
        report
    }
}
