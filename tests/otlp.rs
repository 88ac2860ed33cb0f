//! `--otel-endpoint`: OTLP metrics and traces export to a real collector (rotel, which
//! `scripts/test.sh` installs from its PyPI wheel and names in `ROTEL_AGENT`), over gRPC and
//! over HTTP: the family's metric names, attributes and histogram bounds arrive, and the last
//! export (sent at exit) carries the JSON report's final count; the run span (configuration
//! attributes, secrets redacted), the workers' connect spans and sampled command spans arrive.
//! A collector that is not there costs a warning or two, never the run.

mod support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{RedisServer, free_port, loadgen, read_json, report_of};

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
            .args(["--debug-log", "traces"])
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

/// The metrics exports rotel logged, one text block per request.
fn exports(log: &str) -> Vec<&str> {
    log.split("ResourceMetrics #0")
        .skip(1)
        .map(|block| block.split("ResourceSpans #0").next().unwrap_or(block))
        .collect()
}

/// The spans rotel logged, one text block per span.
fn spans(log: &str) -> Vec<&str> {
    log.split("ResourceSpans #0")
        .skip(1)
        .flat_map(|block| {
            let block = block.split("ResourceMetrics #0").next().unwrap_or(block);
            block.split("\nSpan #").skip(1)
        })
        .collect()
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
        .args(["--trace-sample-rate", "0.002"])
        .args(["--otel-headers", "x-api-key=sekrit-value"])
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
    assert!(!stderr.contains("OTLP export failed"), "{stderr}");
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
        "redis_client_init_duration",
        "redis_loadgen_operations_in_flight",
        "redis_loadgen_achieved_ops_per_second",
        "redis_loadgen_outages_total",
        "redis_loadgen_outage_active",
        "redis_loadgen_cpu_seconds_total",
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

    // Four workers: four client initialisations, labelled with the client kind.
    let init = metric(last, "redis_client_init_duration").unwrap();
    assert!(init.contains("client: Str(standalone)"), "{init}");
    assert!(init.contains("Count: 4\n"), "{init}");
    // Closed loop, 4 workers with one command each in flight: the time-averaged number in
    // flight is near 4 (below it by the client's own time between commands).
    let in_flight = metric(last, "redis_loadgen_operations_in_flight").unwrap();
    let in_flight: f64 = in_flight
        .lines()
        .find_map(|l| l.trim().strip_prefix("Value: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        in_flight > 0.5 && in_flight <= 4.05,
        "{protocol}: {in_flight}"
    );

    // Spans: the run span, one connect span per worker, sampled commands.
    let mut run_spans = Vec::new();
    let until = Instant::now() + Duration::from_secs(10);
    while run_spans.is_empty() {
        assert!(
            Instant::now() < until,
            "{protocol}: no run span: {}",
            rotel.text()
        );
        std::thread::sleep(Duration::from_millis(100));
        let log = rotel.text();
        let label = format!("run_id: Str({run_id})\n");
        run_spans = spans(&log)
            .into_iter()
            .filter(|s| s.contains(&label))
            .map(str::to_string)
            .collect();
        if !run_spans
            .iter()
            .any(|s| s.contains("Name           : redis-loadgen run"))
        {
            run_spans.clear();
        }
    }
    let named = |name: &str| {
        run_spans
            .iter()
            .filter(|s| s.contains(&format!("Name           : {name}\n")))
            .collect::<Vec<_>>()
    };
    let run_span = named("redis-loadgen run")[0];
    assert!(run_span.contains("redis.port: Str("), "{run_span}");
    assert!(
        run_span.contains("output.trace_sample_rate: Str(0.002)"),
        "{run_span}"
    );
    // The header's value is a secret: redacted in the run span's configuration.
    assert!(
        run_span.contains("output.otel_headers: Str(***)"),
        "{run_span}"
    );
    assert!(
        !rotel.text().contains("sekrit-value"),
        "a secret reached the collector's log"
    );
    assert_eq!(named("connect").len(), 4, "{protocol}: {run_spans:#?}");
    let trace_of = |span: &str| {
        span.lines()
            .find_map(|l| l.trim().strip_prefix("Trace ID       : "))
            .unwrap()
            .to_string()
    };
    for connect in named("connect") {
        assert_eq!(
            trace_of(connect),
            trace_of(run_span),
            "connects are in the run's trace"
        );
    }
    let commands: Vec<_> = named("GET").into_iter().chain(named("SET")).collect();
    // 0.2 % of the commands (the cap of 16 per worker per gathering does not bind here).
    let expected = total as f64 * 0.002;
    assert!(
        commands.len() as f64 > expected * 0.5 && commands.len() as f64 <= expected * 1.5 + 5.0,
        "{protocol}: {} command spans of {total} commands",
        commands.len()
    );
    for command in &commands {
        for attribute in [
            "db.system: Str(redis)",
            "db.operation: Str(",
            "server.address: Str(",
            "server.port: Int(",
        ] {
            assert!(command.contains(attribute), "{protocol}: {command}");
        }
        assert!(command.contains("SPAN_KIND_CLIENT"), "{command}");
        assert_ne!(trace_of(command), trace_of(run_span));
    }

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
            warnings.iter().any(|w| w.contains("OTLP export failed")),
            "{protocol}: {stderr}"
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("OTLP export of the final metrics and spans failed")),
            "{protocol}: {stderr}"
        );
        assert_eq!(warnings.len(), 2, "{protocol}: {warnings:#?}");
    }
}

#[test]
fn bad_otel_settings_exit_2_with_one_line() {
    let cases: [(&[&str], &str); 9] = [
        (&["--otel-endpoint", "127.0.0.1:4317"], "otel_endpoint"),
        (
            &["--otel-endpoint", "ftp://127.0.0.1:4317"],
            "otel_endpoint",
        ),
        (&["--otel-endpoint", "http://127.0.0.1"], "otel_endpoint"),
        (&["--otel-protocol", "thrift"], "otel_protocol"),
        (&["--otel-export-interval", "0"], "otel_export_interval"),
        (&["--otel-export-interval", "5s"], "otel_export_interval"),
        (&["--trace-sample-rate", "1.5"], "trace_sample_rate"),
        (&["--otel-headers", "no-equals-sign"], "otel_headers"),
        (
            &[
                "--otel-endpoint",
                "http://127.0.0.1:4317",
                "--otel-ca-cert",
                "/etc/hostname",
            ],
            "otel_ca_cert",
        ),
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

#[test]
fn an_outage_arrives_as_spans_and_counters() {
    let rotel = Rotel::start();
    let mut redis = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let run_id = "otlp-outage";
    let mut child = loadgen(work.path())
        .args(["--port", &redis.port.to_string(), "--duration", "4"])
        .args(["--clients", "1", "--threads-per-client", "2"])
        .args([
            "--metrics-interval",
            "0.5",
            "--quiet",
            "--output-file",
            "r.json",
        ])
        .args(["--retry-backoff-cap", "0.25", "--run-id", run_id])
        .args([
            "--otel-endpoint",
            &format!("http://127.0.0.1:{}", rotel.grpc),
        ])
        .args(["--otel-export-interval", "500", "--trace-sample-rate", "0"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    redis.kill9();
    std::thread::sleep(Duration::from_millis(1000));
    redis.restart();
    assert!(child.wait().unwrap().success());
    let report = read_json(&work.path().join("r.json"));
    let outages = report["outages"].as_array().unwrap().len();
    assert_eq!(outages, 1, "{}", report["outages"]);
    let total = report["total_commands_count"].as_u64().unwrap();
    let log = wait_for_final_total(&rotel, "grpc", run_id, total);
    let last = *of_run(&log, run_id).last().unwrap();
    let outages_total = metric(last, "redis_loadgen_outages_total").unwrap();
    assert_eq!(values_sum(outages_total), 1, "{outages_total}");
    let drops = metric(last, "redis_connection_drops_total").unwrap();
    assert!(
        values_sum(drops) >= 2,
        "both workers lost their connection: {drops}"
    );

    let label = format!("run_id: Str({run_id})\n");
    let run_spans: Vec<&str> = spans(&log)
        .into_iter()
        .filter(|s| s.contains(&label))
        .collect();
    let named = |name: &str| {
        run_spans
            .iter()
            .filter(|s| s.contains(&format!("Name           : {name}\n")))
            .copied()
            .collect::<Vec<_>>()
    };
    let outage = named("outage");
    assert_eq!(outage.len(), 1, "{run_spans:#?}");
    assert!(outage[0].contains("STATUS_CODE_ERROR"), "{}", outage[0]);
    let reconnects = named("reconnect");
    assert_eq!(reconnects.len(), 2, "one per worker: {run_spans:#?}");
    // A reconnect span runs from the loss to the new connection: about the second the
    // server was down.
    for span in &reconnects {
        let time = |key: &str| -> u64 {
            span.lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let ms = (time("End time:") - time("Start time:")) as f64 / 1e6;
        assert!(
            (900.0..3000.0).contains(&ms),
            "reconnect span of {ms} ms: {span}"
        );
    }
    assert_eq!(named("redis-loadgen run").len(), 1);
}

/// A TLS-terminating proxy in front of the collector (rotel has no TLS receiver): decrypts
/// with the test CA's server certificate, forwards to `target`, and keeps the decrypted bytes
/// the client sent, so the test can see the headers that arrived.
struct TlsProxy {
    port: u16,
    received: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl TlsProxy {
    fn start(certs: &support::tls::Certs, target: u16) -> TlsProxy {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        use std::sync::{Arc, Mutex};
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(certs.path("server.crt"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
        let key = PrivateKeyDer::from_pem_file(certs.path("server.key")).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let config = Arc::new(config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&received);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (config, seen) = (Arc::clone(&config), Arc::clone(&seen));
                std::thread::spawn(move || {
                    let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
                        return;
                    };
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    pump_tls(rustls::StreamOwned::new(conn, client), upstream, &seen);
                });
            }
        });
        TlsProxy { port, received }
    }

    fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).to_ascii_lowercase()
    }
}

/// Moves bytes both ways until either side closes; short read timeouts let one thread
/// serve both directions of the TLS stream.
fn pump_tls(
    mut tls: rustls::StreamOwned<rustls::ServerConnection, TcpStream>,
    mut upstream: TcpStream,
    seen: &std::sync::Mutex<Vec<u8>>,
) {
    use std::io::{ErrorKind, Read, Write};
    let tick = Some(Duration::from_millis(5));
    tls.sock.set_read_timeout(tick).unwrap();
    upstream.set_read_timeout(tick).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let idle = |e: &std::io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
    loop {
        match tls.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
                if upstream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if idle(&e) => {}
            Err(_) => return,
        }
        match upstream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if tls.write_all(&buf[..n]).and_then(|()| tls.flush()).is_err() {
                    return;
                }
            }
            Err(e) if idle(&e) => {}
            Err(_) => return,
        }
    }
}

#[test]
fn https_endpoints_with_a_private_ca_and_headers() {
    let rotel = Rotel::start();
    let redis = RedisServer::start();
    let certs = support::tls::Certs::make();
    for (protocol, target) in [("http", rotel.http), ("grpc", rotel.grpc)] {
        let proxy = TlsProxy::start(&certs, target);
        let endpoint = format!("https://127.0.0.1:{}", proxy.port);
        let run_id = format!("otlp-tls-{protocol}");
        let work = tempfile::tempdir().unwrap();
        let out = loadgen(work.path())
            .args(["--port", &redis.port.to_string(), "--duration", "1"])
            .args(["--clients", "1", "--threads-per-client", "2", "--quiet"])
            .args(["--output-file", "r.json", "--run-id", &run_id])
            .args(["--otel-endpoint", &endpoint, "--otel-protocol", protocol])
            .args(["--otel-ca-cert", &certs.arg("ca.crt")])
            .args([
                "--otel-headers",
                "x-api-key=sekrit-value,x-team=load%20test",
            ])
            .output()
            .unwrap();
        let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{protocol}: {stderr}");
        assert!(!stderr.contains("WARN"), "{protocol}: {stderr}");
        assert!(
            !stderr.contains("sekrit"),
            "{protocol}: a secret in the log: {stderr}"
        );
        let report = read_json(&work.path().join("r.json"));
        let total = report["total_commands_count"].as_u64().unwrap();
        // Through TLS to the collector: the final count arrived.
        wait_for_final_total(&rotel, protocol, &run_id, total);
        if protocol == "http" {
            // HTTP/1.1 headers are plain text once decrypted (gRPC's are HPACK-compressed).
            let sent = proxy.received();
            assert!(sent.contains("x-api-key: sekrit-value\r\n"), "{sent:.600}");
            assert!(sent.contains("x-team: load test\r\n"), "{sent:.600}");
            assert!(sent.contains("post /v1/traces"), "{sent:.600}");
        }
        // The wrong CA: the exports fail with a warning, the run does not.
        let work = tempfile::tempdir().unwrap();
        let out = loadgen(work.path())
            .args(["--port", &redis.port.to_string(), "--duration", "1"])
            .args(["--clients", "1", "--threads-per-client", "1", "--quiet"])
            .args(["--otel-endpoint", &endpoint, "--otel-protocol", protocol])
            .args(["--otel-ca-cert", &certs.arg("other-ca.crt")])
            .output()
            .unwrap();
        let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{protocol}: {stderr}");
        assert!(
            stderr.contains("OTLP export of the final metrics and spans failed"),
            "{protocol}: {stderr}"
        );
    }
}

#[test]
fn cluster_command_spans_name_the_node_that_answered() {
    let rotel = Rotel::start();
    let cluster = support::cluster::Cluster::start(3, 0);
    let work = tempfile::tempdir().unwrap();
    let run_id = "otlp-cluster";
    let report = report_of(
        work.path(),
        loadgen(work.path())
            .args(["--cluster", "--cluster-nodes", &cluster.seed()])
            .args([
                "--duration",
                "2",
                "--clients",
                "1",
                "--threads-per-client",
                "2",
            ])
            .args(["--quiet", "--output-file", "r.json", "--run-id", run_id])
            .args([
                "--otel-endpoint",
                &format!("http://127.0.0.1:{}", rotel.grpc),
            ])
            .args(["--trace-sample-rate", "0.01"]),
        "cluster run",
    );
    let total = report["total_commands_count"].as_u64().unwrap();
    let log = wait_for_final_total(&rotel, "grpc", run_id, total);
    let label = format!("run_id: Str({run_id})\n");
    let ports: std::collections::BTreeSet<u16> = spans(&log)
        .into_iter()
        .filter(|s| s.contains(&label) && s.contains("db.system: Str(redis)"))
        .map(|s| {
            s.lines()
                .find_map(|l| l.trim().strip_prefix("-> server.port: Int("))
                .and_then(|p| p.trim_end_matches(')').parse().ok())
                .unwrap_or_else(|| panic!("a command span without server.port: {s}"))
        })
        .collect();
    let masters: std::collections::BTreeSet<u16> = cluster.nodes.iter().map(|n| n.port).collect();
    // Keys spread over the three masters' slots: spans name all of them, and only them.
    assert_eq!(ports, masters, "span ports vs the masters");
}
