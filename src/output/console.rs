//! Console output: one line per metrics interval (per-interval rates, not cumulative), a live
//! progress bar when stdout is a terminal, and the final per-command table.

use std::io::IsTerminal;
use std::time::Duration;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, Table};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::RunnerConfig;
use crate::metrics::LatencySummary;
use crate::metrics::outage::LiveEvent;
use crate::output::report::{IntervalReport, RunReport};

/// Prints the run's progress unless `--quiet`.
pub struct Console {
    quiet: bool,
    duration: Option<Duration>,
    bar: Option<ProgressBar>,
}

fn fmt_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn fmt_count(v: f64) -> String {
    // Thousands separators keep large rates readable.
    let s = format!("{:.0}", v);
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

impl Console {
    pub fn new(cfg: &RunnerConfig) -> Self {
        let quiet = cfg.output.quiet;
        let duration = cfg.test.duration;
        let bar = (!quiet && std::io::stdout().is_terminal()).then(|| {
            let bar = match duration {
                Some(d) => {
                    let bar = ProgressBar::new(d.as_secs().max(1));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}",
                        )
                        .expect("static template")
                        .progress_chars("=> "),
                    );
                    bar
                }
                None => {
                    let bar = ProgressBar::new_spinner();
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                            .expect("static template"),
                    );
                    bar
                }
            };
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Console {
            quiet,
            duration,
            bar,
        }
    }

    /// Moves the progress bar (called often; cheap).
    pub fn tick(&self, elapsed: Duration) {
        if let Some(bar) = &self.bar {
            bar.set_position(elapsed.as_secs());
        }
    }

    /// Prints one interval's line.
    pub fn interval(&self, r: &IntervalReport, elapsed: Duration) {
        if self.quiet {
            return;
        }
        let progress = match self.duration {
            Some(d) => format!("{:>6.1}s/{}s", elapsed.as_secs_f64(), d.as_secs_f64()),
            None => format!("{:>6.1}s", elapsed.as_secs_f64()),
        };
        let l = &r.latency_ms;
        let mut line = format!(
            "[{progress}] {} ops/s  errors {}  p50 {} ms  p95 {} ms  p99 {} ms  max {} ms",
            fmt_count(r.ops_per_second),
            r.errors,
            fmt_ms(l.p50),
            fmt_ms(l.p95),
            fmt_ms(l.p99),
            fmt_ms(l.max)
        );
        // Workload gauges (e.g. a stream's backlog) as sampled in this interval.
        for (name, value) in &r.gauges {
            line.push_str(&format!("  {name} {}", fmt_count(*value as f64)));
        }
        match &self.bar {
            Some(bar) => {
                bar.set_message(format!("{} ops/s", fmt_count(r.ops_per_second)));
                bar.println(line);
            }
            None => println!("{line}"),
        }
    }

    /// Prints an outage's start or end as the reporter learns of it (rare; never per command).
    pub fn outage(&self, event: &LiveEvent) {
        if self.quiet {
            return;
        }
        let line = match *event {
            LiveEvent::Started { at_s } => format!(
                "OUTAGE started at {at_s:.1}s: commands fail with connection errors or timeouts"
            ),
            LiveEvent::Ended { start_s, end_s } => format!(
                "OUTAGE ended at {end_s:.1}s after {:.2}s (started at {start_s:.1}s)",
                end_s - start_s
            ),
        };
        match &self.bar {
            Some(bar) => bar.println(line),
            None => println!("{line}"),
        }
    }

    /// Prints the final table and totals.
    pub fn summary(&self, report: &RunReport) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.quiet {
            return;
        }
        println!("{}", summary_table(report));
        println!(
            "workload {}  duration {:.1}s  ended by {}  server {}  client CPU {:.2} us/op",
            report.workload_name,
            report.duration_s,
            report.end_reason.label(),
            report.server.version,
            report.client_cpu.us_per_op
        );
        if let Some(rate) = &report.rate {
            println!(
                "target {} ops/s  achieved {} ops/s  schedule lag p50 {} ms  p99 {} ms  max {} ms",
                fmt_count(rate.target_ops_per_second),
                fmt_count(rate.achieved_ops_per_second),
                fmt_ms(rate.schedule_lag_ms.p50),
                fmt_ms(rate.schedule_lag_ms.p99),
                fmt_ms(rate.schedule_lag_ms.max)
            );
        }
        let c = &report.connections;
        if c.reconnects > 0 || c.drops > 0 || c.failed > 0 {
            println!(
                "connections: drops {}  reconnects {}  failed attempts {}  reconnection avg {} ms  p99 {} ms  max {} ms{}",
                c.drops,
                c.reconnection_count,
                c.failed,
                fmt_ms(c.avg_reconnection_duration_ms),
                fmt_ms(c.reconnection_duration_ms.p99),
                fmt_ms(c.reconnection_duration_ms.max),
                if c.gave_up > 0 {
                    format!("  workers gave up {}", c.gave_up)
                } else {
                    String::new()
                }
            );
        }
        if c.redirects > 0 || c.not_sent > 0 {
            println!(
                "cluster: {} MOVED/ASK redirects followed (each also one cluster_error)  {} commands not sent (node unreachable, counted as connection_error)",
                c.redirects, c.not_sent
            );
        }
        for o in &report.outages {
            println!(
                "outage {:.1}s..{:.1}s ({:.2}s{}): {} failed commands, {} workers, first success after {}",
                o.start_s,
                o.end_s,
                o.duration_s,
                if o.open_at_end {
                    ", still open at the end"
                } else {
                    ""
                },
                fmt_count(o.failed_commands as f64),
                o.workers,
                o.time_to_first_success_s
                    .map_or("-".to_string(), |t| format!("{t:.2}s"))
            );
        }
        for (name, op) in &report.operations {
            let looked_up = op.hits + op.misses;
            if looked_up > 0 {
                println!(
                    "{name}: hits {} ({:.1} %), misses {}",
                    fmt_count(op.hits as f64),
                    op.hits as f64 * 100.0 / looked_up as f64,
                    fmt_count(op.misses as f64)
                );
            }
        }
        if !report.counters.is_empty() {
            let counters: Vec<String> = report
                .counters
                .iter()
                .map(|(name, n)| format!("{name} {}", fmt_count(*n as f64)))
                .collect();
            println!("{}", counters.join("  "));
        }
        for (label, phase) in [
            ("setup (--prefill)", &report.setup),
            ("warm-up", &report.warmup),
        ] {
            if let Some(p) = phase {
                println!(
                    "{label}: {} commands in {:.1}s, not included above",
                    fmt_count(p.total as f64),
                    p.duration_s
                );
            }
        }
        for (name, g) in &report.gauges {
            println!(
                "{name}: last {}, max {}",
                fmt_count(g.last as f64),
                fmt_count(g.max as f64)
            );
        }
        if let Some(checks) = &report.checks {
            println!("checks: {checks}");
            if let Some(v) = checks.get("verify_writes") {
                verify_writes_lines(v);
            }
        }
    }
}

/// `--verify-writes` in words, with a warning when acknowledged writes were lost: a finding
/// about the server, not a failure of the run (the exit status stays 0).
fn verify_writes_lines(v: &serde_json::Value) {
    let n = |key: &str| v.get(key).and_then(|x| x.as_u64()).unwrap_or(0);
    if let Some(error) = v.get("error").and_then(|e| e.as_str()) {
        println!(
            "verify-writes: no read-back ({error}); stale reads {}",
            n("stale_reads")
        );
        return;
    }
    println!(
        "verify-writes: {} acknowledged writes, {} keys read back: lost {}, unacknowledged \
         writes that landed {}, stale reads {}",
        fmt_count(n("acknowledged_writes") as f64),
        fmt_count(n("keys_checked") as f64),
        fmt_count(n("lost_writes") as f64),
        fmt_count(n("in_doubt_landed") as f64),
        fmt_count(n("stale_reads") as f64),
    );
    let lost = n("lost_writes");
    if lost > 0 {
        let sample: Vec<&str> = v
            .get("lost_sample")
            .and_then(|s| s.as_array())
            .map(|a| a.iter().filter_map(|k| k.as_str()).collect())
            .unwrap_or_default();
        println!(
            "WARNING: {} writes the server acknowledged are gone or older on read-back \
             (e.g. {})",
            fmt_count(lost as f64),
            sample.join(", ")
        );
    }
}

/// The per-command table with a TOTAL row.
pub fn summary_table(report: &RunReport) -> Table {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    table.set_header(vec![
        "command", "count", "ops/s", "errors", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "p99.9 ms",
        "max ms",
    ]);
    let row = |name: &str, count: u64, rate: f64, errors: u64, l: &LatencySummary| {
        vec![
            name.to_string(),
            fmt_count(count as f64),
            fmt_count(rate),
            fmt_count(errors as f64),
            fmt_ms(l.p50),
            fmt_ms(l.p90),
            fmt_ms(l.p95),
            fmt_ms(l.p99),
            fmt_ms(l.p999),
            fmt_ms(l.max),
        ]
    };
    for (name, op) in &report.operations {
        table.add_row(row(
            name,
            op.total,
            op.ops_per_second,
            op.errors,
            &op.latency_ms,
        ));
    }
    table.add_row(row(
        "TOTAL",
        report.total_commands_count,
        report.overall_throughput,
        report.failed_commands_count,
        &report.latency_ms,
    ));
    for i in 1..10 {
        if let Some(col) = table.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_get_thousands_separators() {
        assert_eq!(fmt_count(1234567.4), "1,234,567");
        assert_eq!(fmt_count(999.0), "999");
        assert_eq!(fmt_count(0.0), "0");
    }
}
