//! `--prometheus-listen`: the /metrics endpoint's series, its exposition (checked by
//! `promtool check metrics`), start-up failures, and a real Prometheus scraping a run whose
//! final `redis_operations_total` must equal the JSON report's count.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::prometheus::{Prometheus, http_get, http_get_accept, unix_now, value};
use support::{RedisServer, free_port, loadgen, read_json};

/// The value of every sample named `name` whose labels include all of `with`.
fn samples(text: &str, name: &str, with: &[&str]) -> Vec<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| with.iter().all(|w| l.contains(w)))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .collect()
}

fn total(text: &str, name: &str, with: &[&str]) -> f64 {
    samples(text, name, with).iter().sum()
}

/// Runs `promtool check metrics` on `text` and returns its complaints. The family's names
/// use milliseconds (as the Collector's exporter does), which promtool's linter always
/// flags ("use base unit seconds"); any other complaint or a parse error fails.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool on PATH (scripts/test.sh installs the prometheus package)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let other: Vec<&str> = said
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            // The family's spec names these histograms in ms, as the Collector's exporter
            // does; promtool's linter prefers seconds. Nothing else is accepted.
            !(l.ends_with("use base unit \"seconds\" instead of \"milliseconds\"")
                && l.split(' ').next().is_some_and(|name| {
                    name.starts_with("redis_") && name.ends_with("_milliseconds")
                }))
        })
        .collect();
    assert!(
        other.is_empty(),
        "promtool check metrics (exit {:?}) complained:\n{said}\non:\n{text}",
        out.status.code()
    );
    // Exit 3 is "lint problems" (the unit ones above); 1 would be a parse error.
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "promtool failed: {said}"
    );
}

/// A loadgen run in the background with the endpoint on a free port.
struct Run {
    child: Child,
    metrics_port: u16,
    work: tempfile::TempDir,
}

impl Run {
    fn start(redis: &RedisServer, seconds: &str, extra: &[&str]) -> Run {
        let work = tempfile::tempdir().unwrap();
        let metrics_port = free_port();
        let listen = format!("127.0.0.1:{metrics_port}");
        let child = loadgen(work.path())
            .args(["--port", &redis.port.to_string(), "--duration", seconds])
            .args([
                "--quiet",
                "--metrics-interval",
                "1",
                "--output-file",
                "r.json",
            ])
            .args(["--clients", "2", "--threads-per-client", "2"])
            .args(["--prometheus-listen", &listen])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Run {
            child,
            metrics_port,
            work,
        }
    }

    fn report_path(&self) -> std::path::PathBuf {
        self.work.path().join("r.json")
    }

    /// Waits for the process to end; returns its exit code and when it ended.
    fn wait(&mut self, limit: Duration) -> (i32, Instant) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code().unwrap_or(-1), Instant::now());
            }
            assert!(
                Instant::now() < deadline,
                "redis-loadgen did not exit in {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn endpoint_serves_the_family_series_during_and_after_the_run() {
    let redis = RedisServer::start();
    let mut run = Run::start(&redis, "3", &["--prometheus-linger", "20"]);
    let port = run.metrics_port;

    // During the run: the first interval's figures, in the classic text format for curl.
    let mut during = String::new();
    wait_for(
        "a first interval on /metrics",
        Duration::from_secs(10),
        || match http_get(port, "/metrics") {
            Some(r) => {
                during = r.body;
                total(&during, "redis_operations_total", &[]) > 0.0
            }
            None => false,
        },
    );
    assert!(
        !run.report_path().exists(),
        "scraped only after the run ended"
    );
    promtool_check(&during);
    let r = http_get(port, "/metrics").unwrap();
    assert!(r.head.starts_with("HTTP/1.1 200") || r.head.starts_with("HTTP/1.0 200"));
    assert!(r.head.contains("text/plain; version=0.0.4"), "{}", r.head);
    // What Prometheus asks for: OpenMetrics, complete with its EOF marker.
    let om = http_get_accept(
        port,
        "/metrics",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    )
    .unwrap();
    assert!(
        om.head.contains("application/openmetrics-text"),
        "{}",
        om.head
    );
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
    assert!(om.body.contains("# TYPE redis_operations counter"));
    let missing = http_get(port, "/nope").unwrap();
    assert!(missing.head.contains(" 404"), "{}", missing.head);

    // After the run: the report is written before the linger, and the final values are the
    // report's. The scrape ends the linger at once.
    wait_for("the report", Duration::from_secs(15), || {
        run.report_path().exists()
    });
    let report = read_json(&run.report_path());
    let fin = http_get(port, "/metrics").expect("endpoint up during the linger");
    let (code, _) = run.wait(Duration::from_secs(5));
    assert_eq!(code, 0, "{}", run.stderr());
    promtool_check(&fin.body);

    let count = report["total_commands_count"].as_u64().unwrap();
    let ok = report["successful_commands_count"].as_u64().unwrap();
    assert!(count > 0);
    let app = "app_name=\"rust\"";
    let run_id = format!("run_id=\"{}\"", report["run_id"].as_str().unwrap());
    let labels = [app, run_id.as_str()];
    assert_eq!(
        total(&fin.body, "redis_operations_total", &labels),
        count as f64,
        "{}",
        fin.body
    );
    assert_eq!(
        total(
            &fin.body,
            "redis_operations_total",
            &["status=\"success\"", "error_type=\"none\""]
        ),
        ok as f64
    );
    assert_eq!(
        total(
            &fin.body,
            "redis_operation_duration_milliseconds_count",
            &labels
        ),
        ok as f64
    );
    for (op, stats) in report["operations"].as_object().unwrap() {
        let with = [app, &format!("operation=\"{op}\"")];
        let n = stats["total"].as_u64().unwrap();
        assert_eq!(
            total(&fin.body, "redis_operations_total", &with),
            n as f64,
            "{op}"
        );
        let inf = samples(
            &fin.body,
            "redis_operation_duration_milliseconds_bucket",
            &[&format!("operation=\"{op}\""), "le=\"+Inf\""],
        );
        let cnt = samples(
            &fin.body,
            "redis_operation_duration_milliseconds_count",
            &[&format!("operation=\"{op}\"")],
        );
        assert_eq!(inf, cnt, "{op}: +Inf bucket = _count");
        // Cumulative buckets never decrease, and the sub-millisecond ones are there.
        let buckets = samples(
            &fin.body,
            "redis_operation_duration_milliseconds_bucket",
            &[&format!("operation=\"{op}\"")],
        );
        assert_eq!(buckets.len(), 25, "{op}: 24 bounds + +Inf");
        assert!(
            buckets.windows(2).all(|w| w[0] <= w[1]),
            "{op}: {buckets:?}"
        );
    }
    let conns = total(
        &fin.body,
        "redis_connections_total",
        &["status=\"success\""],
    );
    assert!(conns >= 4.0, "4 workers connected: {conns}");
    assert_eq!(
        samples(&fin.body, "redis_connection_drops_total", &labels),
        vec![0.0]
    );
    assert_eq!(
        samples(
            &fin.body,
            "redis_reconnection_duration_milliseconds_count",
            &labels
        ),
        vec![0.0]
    );
    // Four workers initialised their clients once each.
    assert_eq!(
        samples(
            &fin.body,
            "redis_client_init_duration_milliseconds_count",
            &["client=\"standalone\""]
        ),
        vec![4.0]
    );
    // Ours: gauges of the last interval and counters of the run.
    let in_flight = samples(&fin.body, "redis_loadgen_operations_in_flight", &labels);
    assert!(
        in_flight.len() == 1 && in_flight[0] > 0.0 && in_flight[0] <= 4.05,
        "4 workers, one command each in flight at most: {in_flight:?}"
    );
    let achieved = samples(&fin.body, "redis_loadgen_achieved_ops_per_second", &labels);
    assert!(achieved.len() == 1 && achieved[0] > 0.0, "{achieved:?}");
    assert_eq!(
        samples(&fin.body, "redis_loadgen_outages_total", &labels),
        vec![0.0]
    );
    assert_eq!(
        samples(&fin.body, "redis_loadgen_outage_active", &labels),
        vec![0.0]
    );
    let cpu = samples(&fin.body, "redis_loadgen_cpu_seconds_total", &labels);
    assert!(cpu.len() == 1 && cpu[0] > 0.0, "{cpu:?}");
    // Closed loop: no target rate, no schedule lag.
    assert!(!fin.body.contains("redis_loadgen_target_ops_per_second"));
    assert!(!fin.body.contains("redis_loadgen_schedule_lag"));
}

#[test]
fn pubsub_and_open_loop_series_match_the_report() {
    let redis = RedisServer::start();
    let mut run = Run::start(
        &redis,
        "2",
        &[
            "--workload-profile",
            "pubsub_test",
            "--target-ops-per-second",
            "400",
            "--prometheus-linger",
            "20",
        ],
    );
    let port = run.metrics_port;
    wait_for("the report", Duration::from_secs(20), || {
        run.report_path().exists()
    });
    let report = read_json(&run.report_path());
    let fin = http_get(port, "/metrics").expect("endpoint up during the linger");
    let (code, _) = run.wait(Duration::from_secs(5));
    assert_eq!(code, 0, "{}", run.stderr());
    promtool_check(&fin.body);
    let counters = &report["counters"];
    let (published, received) = (
        counters["published"].as_f64().unwrap(),
        counters["received"].as_f64().unwrap(),
    );
    assert!(published > 0.0 && received > 0.0, "{counters}");
    let pubsub = |operation_type: &str, status: &str| {
        total(
            &fin.body,
            "redis_pubsub_operations_total",
            &[
                &format!("operation_type=\"{operation_type}\""),
                &format!("status=\"{status}\""),
                "channel=\"test_channel\"",
            ],
        )
    };
    assert_eq!(pubsub("PUBLISH", "success"), published, "{}", fin.body);
    assert_eq!(pubsub("PUBLISH", "error"), 0.0);
    assert_eq!(pubsub("RECEIVE", "success"), received);
    let messages = |status: &str| {
        total(
            &fin.body,
            "redis_loadgen_messages_total",
            &["kind=\"pubsub\"", &format!("status=\"{status}\"")],
        )
    };
    assert_eq!(messages("delivered"), received);
    assert_eq!(messages("lost"), counters["lost"].as_f64().unwrap());
    assert_eq!(
        messages("duplicated"),
        counters["duplicated"].as_f64().unwrap()
    );
    assert_eq!(
        total(
            &fin.body,
            "redis_loadgen_delivery_latency_milliseconds_count",
            &["kind=\"pubsub\""]
        ),
        received
    );
    // Open loop: the target, the achieved rate near it, and the schedule lag of every batch.
    assert_eq!(
        samples(&fin.body, "redis_loadgen_target_ops_per_second", &[]),
        vec![400.0]
    );
    let achieved = samples(&fin.body, "redis_loadgen_achieved_ops_per_second", &[]);
    assert!(
        achieved.len() == 1 && (achieved[0] - 400.0).abs() < 120.0,
        "{achieved:?}"
    );
    // At 400/s the I/O threads mostly wait in their poll.
    let busy = samples(&fin.body, "redis_loadgen_io_busy_ratio", &[]);
    assert!(
        busy.len() == 1 && busy[0] > 0.0 && busy[0] < 0.5,
        "{busy:?}"
    );
    assert_eq!(
        total(
            &fin.body,
            "redis_loadgen_schedule_lag_milliseconds_count",
            &[]
        ),
        published,
        "one lag sample per PUBLISH (unpipelined)"
    );
}

#[test]
fn bad_or_taken_listen_address_fails_before_any_load() {
    let redis = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let out = loadgen(work.path())
        .args(["--port", &redis.port.to_string(), "--duration", "1"])
        .args(["--prometheus-listen", "localhost"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("prometheus-listen"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = loadgen(work.path())
        .args(["--port", &redis.port.to_string(), "--duration", "1"])
        .args(["--output-file", "r.json", "--log-level", "error"])
        .args(["--prometheus-listen", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(!work.path().join("r.json").exists());
    let stats = redis.commandstats();
    assert!(
        !stats.contains_key("SET") && !stats.contains_key("GET"),
        "load was sent: {stats:?}"
    );
}

#[test]
fn a_real_prometheus_scrapes_the_run_and_ends_with_the_reports_count() {
    let redis = RedisServer::start();
    // The endpoint's port must be known to Prometheus's config before the run starts.
    let metrics_port = free_port();
    let prom = Prometheus::start(&[metrics_port]);
    let work = tempfile::tempdir().unwrap();
    let mut child = loadgen(work.path())
        .args(["--port", &redis.port.to_string(), "--duration", "6"])
        .args([
            "--quiet",
            "--metrics-interval",
            "1",
            "--output-file",
            "r.json",
        ])
        .args(["--clients", "2", "--threads-per-client", "2"])
        .args(["--prometheus-listen", &format!("127.0.0.1:{metrics_port}")])
        // Wait (at most 15 s) for Prometheus's scrape of the final values before exiting.
        .args(["--prometheus-linger", "15"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = child.wait().unwrap();
    let ended = unix_now();
    assert!(status.success());
    let report = read_json(&work.path().join("r.json"));
    let count = report["total_commands_count"].as_u64().unwrap() as f64;
    let run_id = report["run_id"].as_str().unwrap();

    // The endpoint answered the final scrape just before the process ended; the next scrape
    // fails and marks the series stale, so ask for the values as of the process's end.
    let query = "redis_operations_total{app_name=\"rust\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    let series = loop {
        let series = prom.query(query, ended).unwrap();
        let got: f64 = series.iter().map(value).sum();
        if got == count || Instant::now() > deadline {
            break series;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let got: f64 = series.iter().map(value).sum();
    assert_eq!(got, count, "PromQL {query} at the end: {series:#?}");
    let ops: std::collections::BTreeSet<&str> = series
        .iter()
        .map(|s| s["metric"]["operation"].as_str().unwrap())
        .collect();
    let report_ops: std::collections::BTreeSet<&str> = report["operations"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(ops, report_ops);
    for s in &series {
        assert_eq!(s["metric"]["run_id"], run_id);
        assert_eq!(s["metric"]["job"], "redis-loadgen");
    }

    // Scraped during the run, not only at the end: an earlier, smaller sample of the counter
    // (Prometheus's first scrape comes ~5 s after it starts, so a 6 s run sees a few).
    let get = "redis_operations_total{app_name=\"rust\",operation=\"GET\",status=\"success\"}";
    let scrapes = prom
        .query(&format!("count_over_time({get}[30s])"), ended)
        .unwrap();
    assert!(
        scrapes.first().is_some_and(|s| value(s) >= 2.0),
        "{scrapes:#?}"
    );
    let first = prom
        .query(&format!("min_over_time({get}[30s])"), ended)
        .unwrap();
    let last = prom.query(get, ended).unwrap();
    assert!(
        value(&first[0]) < value(&last[0]),
        "first {first:#?} last {last:#?}"
    );
    // A dashboard's latency query works on the histogram.
    let p99 = prom.query(
        "histogram_quantile(0.99, sum by (le) (redis_operation_duration_milliseconds_bucket{app_name=\"rust\"}))",
        ended,
    ).unwrap();
    assert!(
        p99.first()
            .is_some_and(|s| value(s) > 0.0 && value(s) < 10_000.0),
        "{p99:#?}"
    );
}
