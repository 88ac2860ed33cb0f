//! `--otel-endpoint`: OTLP metrics export to a real collector (rotel, which `scripts/test.sh`
//! installs from its PyPI wheel and names in `ROTEL_AGENT`), over gRPC and over HTTP: the
//! family's metric names, attributes and histogram bounds arrive, and the last export (sent at
//! exit) carries the JSON report's final count. A collector that is not there costs a warning
//! or two, never the run.

mod support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{RedisServer, free_port, loadgen, read_json};

/// The rotel binary; no silent skip: a missing one fails the test.
fn rotel_agent() -> PathBuf {
    let path = std::env::var_os("ROTEL_AGENT").map(PathBuf::from).expect(
        "ROTEL_AGENT is not set: run the tests through scripts/test.sh, which installs rotel \
         (pip download --pre --no-deps rotel==0.0.1a15) and exports ROTEL_AGENT",
    );
    assert!(
        path.is_file(),
        "ROTEL_AGENT={} is not a file: re-run scripts/test.sh to install rotel",
        path.display()
    );
    path
}

/// A rotel collector on free ports that logs every metric it receives; killed on drop.
struct Rotel {
    grpc: u16,
    http: u16,
    log: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Rotel {
    fn start() -> Rotel {
        let agent = rotel_agent();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("rotel.log");
        let (grpc, http) = (free_port(), free_port());
        let child = Command::new(agent)
            .arg("start")
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http}")])
            .args(["--exporter", "blackhole", "--debug-log", "metrics"])
            .args(["--debug-log-verbosity", "detailed"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rotel-agent");
        let mut rotel = Rotel {
            grpc,
            http,
            log,
            child,
            _dir: dir,
        };
        let until = Instant::now() + Duration::from_secs(10);
        while [grpc, http]
            .iter()
            .any(|p| TcpStream::connect(("127.0.0.1", *p)).is_err())
        {
            if let Ok(Some(status)) = rotel.child.try_wait() {
                panic!("rotel-agent exited ({status}): {}", rotel.text());
            }
            assert!(
                Instant::now() < until,
                "rotel not listening: {}",
                rotel.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        rotel
    }

    /// The log without ANSI colours.
    fn text(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(
            &std::fs::read(&self.log).unwrap_or_default(),
        ))
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The exports rotel logged, one text block per request.
fn exports(log: &str) -> Vec<&str> {
    log.split("ResourceMetrics #0").skip(1).collect()
}

/// The lines of the metric `name` in one export block (up to the next metric).
fn metric<'a>(export: &'a str, name: &str) -> Option<&'a str> {
    let start = export.find(&format!("-> Name: {name}\n"))?;
    let rest = &export[start..];
    let end = rest.find("\nMetric #").unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The sum of the `Value: N` lines (a Sum metric's data points).
fn values_sum(metric: &str) -> u64 {
    metric
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Value: "))
        .map(|v| v.trim().parse::<u64>().unwrap())
        .sum()
}

/// The first data point's `ExplicitBounds` of a histogram metric.
fn bounds(metric: &str) -> Vec<f64> {
    let first = metric.split("HistogramDataPoints #1").next().unwrap();
    first
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ExplicitBounds #"))
        .map(|l| l.split(": ").nth(1).unwrap().trim().parse::<f64>().unwrap())
        .collect()
}

/// Runs a load of `seconds` against `redis` exporting to `endpoint` with `protocol` every
/// `export_ms`; returns the report and stderr.
fn run(
    redis: &RedisServer,
    work: &Path,
    endpoint: &str,
    protocol: &str,
    run_id: &str,
    seconds: &str,
    export_ms: &str,
) -> (serde_json::Value, String) {
    let started = Instant::now();
    let out = loadgen(work)
        .args(["--port", &redis.port.to_string(), "--duration", seconds])
        .args(["--quiet", "--output-file", "r.json"])
        .args(["--clients", "2", "--threads-per-client", "2"])
        .args([
            "--metrics-interval",
            "0.5",
            "--otel-export-interval",
            export_ms,
        ])
        .args(["--otel-endpoint", endpoint, "--otel-protocol", protocol])
        .args(["--otel-service-name", "otlp-test", "--run-id", run_id])
        .output()
        .unwrap();
    let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{protocol}: {stderr}");
    // A dead collector may cost an export timeout or two at exit, no more.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{protocol}: the run took {:?}",
        started.elapsed()
    );
    (read_json(&work.join("r.json")), stderr)
}

/// The body both transports share.
fn exports_the_family_metrics(protocol: &str) {
    let rotel = Rotel::start();
    let redis = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let endpoint = match protocol {
        "grpc" => format!("http://127.0.0.1:{}", rotel.grpc),
        _ => format!("http://127.0.0.1:{}", rotel.http),
    };
    let run_id = format!("otlp-{}", protocol.replace('/', "-"));
    let (report, stderr) = run(
        &redis,
        work.path(),
        &endpoint,
        protocol,
        &run_id,
        "3",
        "1000",
    );
    assert!(!stderr.contains("OTLP metrics export failed"), "{stderr}");
    let total = report["total_commands_count"].as_u64().unwrap();
    assert!(total > 0);

    let log = wait_for_final_total(&rotel, protocol, &run_id, total);
    let all = of_run(&log, &run_id);
    // Every ~1 s during the 3 s run, plus the final one at exit.
    assert!(all.len() >= 3, "{protocol}: only {} exports", all.len());
    let last = all.last().unwrap();

    for name in [
        "redis_operations_total",
        "redis_operation_duration",
        "redis_connections_total",
        "redis_connection_drops_total",
        "redis_reconnection_duration",
    ] {
        assert!(
            metric(last, name).is_some(),
            "{protocol}: no {name} in {last}"
        );
    }
    for attribute in [
        "service.name: Str(otlp-test)".to_string(),
        "service.instance.id: Str(".to_string(),
        "app_name: Str(rust)".to_string(),
        format!("run_id: Str({run_id})"),
        "instance_id: Str(".to_string(),
        "version: Str(".to_string(),
        "operation: Str(GET)".to_string(),
        "operation: Str(SET)".to_string(),
        "status: Str(success)".to_string(),
        "error_type: Str(none)".to_string(),
    ] {
        assert!(
            last.contains(&attribute),
            "{protocol}: no {attribute} in {last}"
        );
    }

    let duration = metric(last, "redis_operation_duration").unwrap();
    assert!(duration.contains("Unit: ms"), "{duration}");
    assert!(duration.contains("AGGREGATION_TEMPORALITY_CUMULATIVE"));
    let op_bounds = bounds(duration);
    for spec in [
        0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
        10000.0,
    ] {
        assert!(
            op_bounds.contains(&spec),
            "{protocol}: {spec} not in {op_bounds:?}"
        );
    }
    assert!(
        op_bounds.iter().filter(|&&b| b < 1.0).count() > 3,
        "{protocol}: no finer sub-millisecond buckets in {op_bounds:?}"
    );
    // The histogram counts add up to the successful commands.
    let histogram_total: u64 = duration
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Count: "))
        .map(|v| v.parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        histogram_total,
        report["successful_commands_count"].as_u64().unwrap(),
        "{protocol}"
    );
    let reconnection = metric(last, "redis_reconnection_duration").unwrap();
    assert_eq!(
        bounds(reconnection),
        [
            100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 30000.0, 60000.0
        ],
        "{protocol}"
    );
    let connections = metric(last, "redis_connections_total").unwrap();
    assert!(
        connections.contains("status: Str(initiated)"),
        "{connections}"
    );
    assert!(values_sum(connections) > 0, "{connections}");

    // An export interval longer than the run: nothing is due during it, so the one export
    // that arrives is the one made at exit, and it has the final count.
    let work = tempfile::tempdir().unwrap();
    let exit_run = format!("{run_id}-exit");
    let (report, _) = run(
        &redis,
        work.path(),
        &endpoint,
        protocol,
        &exit_run,
        "1",
        "600000",
    );
    let total = report["total_commands_count"].as_u64().unwrap();
    let log = wait_for_final_total(&rotel, protocol, &exit_run, total);
    let exit_exports = of_run(&log, &exit_run);
    assert_eq!(
        exit_exports.len(),
        1,
        "{protocol}: one export, at exit: {exit_exports:#?}"
    );
}

/// The exports of one run.
fn of_run<'a>(log: &'a str, run_id: &str) -> Vec<&'a str> {
    let label = format!("run_id: Str({run_id})\n");
    exports(log)
        .into_iter()
        .filter(|e| e.contains(&label))
        .collect()
}

/// Waits (rotel logs asynchronously) until the newest export of `run_id` has a
/// `redis_operations_total` of `total`; returns the log.
fn wait_for_final_total(rotel: &Rotel, protocol: &str, run_id: &str, total: u64) -> String {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let log = rotel.text();
        let last_total = of_run(&log, run_id)
            .last()
            .and_then(|e| metric(e, "redis_operations_total"))
            .map(values_sum);
        if last_total == Some(total) {
            return log;
        }
        assert!(
            Instant::now() < until,
            "{protocol}: the last export's redis_operations_total is {last_total:?}, the \
             report says {total}; rotel log:\n{}",
            &log[log.char_indices().rev().nth(3000).map_or(0, |(i, _)| i)..]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn grpc_export_reaches_a_real_collector_with_the_final_interval() {
    exports_the_family_metrics("grpc");
}

#[test]
fn http_export_reaches_a_real_collector_with_the_final_interval() {
    exports_the_family_metrics("http/protobuf");
}

#[test]
fn a_collector_that_is_down_costs_warnings_not_the_run() {
    let redis = RedisServer::start();
    for protocol in ["grpc", "http"] {
        let work = tempfile::tempdir().unwrap();
        // Nothing listens there: every export fails at once.
        let endpoint = format!("http://127.0.0.1:{}", free_port());
        let (report, stderr) = run(
            &redis,
            work.path(),
            &endpoint,
            protocol,
            "otlp-down",
            "3",
            "1000",
        );
        assert!(report["total_commands_count"].as_u64().unwrap() > 0);
        let warnings: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("OTLP"))
            .collect();
        // ~4 failed exports in the run (1 s apart) and the final one: the first and the
        // final are reported; the repeats in between are not.
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("OTLP metrics export failed")),
            "{protocol}: {stderr}"
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("OTLP export of the final metrics failed")),
            "{protocol}: {stderr}"
        );
        assert_eq!(warnings.len(), 2, "{protocol}: {warnings:#?}");
    }
}

#[test]
fn bad_otel_settings_exit_2_with_one_line() {
    let cases: [(&[&str], &str); 6] = [
        (&["--otel-endpoint", "127.0.0.1:4317"], "otel_endpoint"),
        (
            &["--otel-endpoint", "https://127.0.0.1:4317"],
            "otel_endpoint",
        ),
        (&["--otel-endpoint", "http://127.0.0.1"], "otel_endpoint"),
        (&["--otel-protocol", "thrift"], "otel_protocol"),
        (&["--otel-export-interval", "0"], "otel_export_interval"),
        (&["--otel-export-interval", "5s"], "otel_export_interval"),
    ];
    for (args, field) in cases {
        let work = tempfile::tempdir().unwrap();
        // Nothing listens on the Redis port: exit 2 proves validation came first.
        let out = loadgen(work.path())
            .args(["--port", &free_port().to_string(), "--duration", "1"])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.contains(field), "{args:?}: {err}");
    }
}
