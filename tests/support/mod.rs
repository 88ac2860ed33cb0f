//! Test support: real redis-server processes on free loopback ports, and the binary under test.
//!
//! Each `RedisServer` is a child process stopped by pid when dropped (also when a test fails and
//! unwinds). Servers run without persistence in a temporary directory.

#![allow(dead_code)]

pub mod cluster;
pub mod prometheus;
pub mod sentinel;
pub mod tls;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis_loadgen::config::{Protocol, RedisConfig};
use redis_loadgen::control::{self, CommandCalls};
use redis_loadgen::workload::DERIVED_OPS;

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

pub struct RedisServer {
    pub port: u16,
    child: Child,
    pub dir: tempfile::TempDir,
    /// The extra arguments it was started with (for [`RedisServer::restart`]).
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts redis-server with extra arguments and waits until it answers PING.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        // A port can be taken between probing and binding: retry with another.
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir.path())
                .arg("--logfile")
                .arg(dir.path().join(format!("redis-{port}.log")))
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server on PATH (scripts/test.sh installs it)");
            if wait_ready(&mut child, port, Duration::from_secs(5)) {
                let extra = extra.iter().map(|a| a.to_string()).collect();
                return RedisServer {
                    port,
                    child,
                    dir,
                    extra,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server with SIGKILL, as a crash would: no shutdown, connections reset.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a fresh redis-server on the same port and directory, with the same arguments,
    /// after [`RedisServer::kill9`]; waits until it answers PING. Its counters start from zero.
    pub fn restart(&mut self) {
        let port = self.port.to_string();
        // The killed server's port may linger for a moment: retry briefly.
        for _ in 0..20 {
            let mut child = Command::new("redis-server")
                .args(["--port", &port, "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(self.dir.path())
                .arg("--logfile")
                .arg(self.dir.path().join(format!("redis-{port}.log")))
                .args(&self.extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server on PATH");
            if wait_ready(&mut child, self.port, Duration::from_secs(5)) {
                self.child = child;
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not restart on port {port}");
    }

    /// Connection settings for the library's control plane.
    pub fn redis_config(&self) -> RedisConfig {
        RedisConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            username: None,
            password: None,
            db: 0,
            protocol: Protocol::Resp3,
            client_name: "redis-loadgen-test".into(),
            tcp_keepalive: None,
            tls: None,
            socket_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            retry: Default::default(),
            sentinel: None,
            cluster: None,
            max_connections: 50,
            health_check_interval: None,
        }
    }

    /// `INFO commandstats`, keyed by lower-case command name.
    pub fn commandstats(&self) -> BTreeMap<String, CommandCalls> {
        control::commandstats(&self.redis_config()).expect("INFO commandstats")
    }

    /// Runs one command through redis-cli and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli on PATH");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_ready(child: &mut Child, port: u16, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if ping(port) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 64];
    // Any reply will do: a server with requirepass answers -NOAUTH, and that is ready too.
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .map(|n| n > 0 && matches!(buf[0], b'+' | b'-'))
            .unwrap_or(false)
}

/// The redis-loadgen binary, run in an empty temp dir (so no stray `.env` is read) with no
/// inherited REDIS_*/TEST_* variables.
pub fn loadgen(workdir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_redis-loadgen"));
    cmd.current_dir(workdir);
    for (key, _) in std::env::vars() {
        if key.starts_with("REDIS_")
            || key.starts_with("TEST_")
            || key.starts_with("OTEL_")
            || matches!(
                key.as_str(),
                "LOG_LEVEL"
                    | "LOG_FILE"
                    | "OUTPUT_FILE"
                    | "QUIET"
                    | "METRICS_INTERVAL"
                    | "APP_NAME"
                    | "INSTANCE_ID"
                    | "RUN_ID"
                    | "VERSION"
                    | "CONFIG_FILE"
                    | "PROMETHEUS_LISTEN"
                    | "PROMETHEUS_LINGER"
            )
        {
            cmd.env_remove(key);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// A short, small, quiet run against `port` writing `r.json` in `workdir`: one worker,
/// half a second. Tests add their own flags.
pub fn small_run(workdir: &Path, port: u16) -> Command {
    let mut cmd = loadgen(workdir);
    cmd.args(["--port", &port.to_string(), "--duration", "0.5", "--quiet"])
        .args([
            "--clients",
            "1",
            "--threads-per-client",
            "1",
            "--output-file",
            "r.json",
        ]);
    cmd
}

/// Runs the binary for `seconds` with `args` against `server`, expecting success; returns the
/// report after the truth check ([`assert_counts_match`]) and the schema check.
pub fn run_checked(server: &RedisServer, seconds: &str, args: &[&str]) -> serde_json::Value {
    let work = tempfile::tempdir().unwrap();
    let before = server.commandstats();
    let report = report_of(
        work.path(),
        loadgen(work.path())
            .args([
                "--port",
                &server.port.to_string(),
                "--duration",
                seconds,
                "--quiet",
            ])
            .args(["--metrics-interval", "0.5", "--output-file", "r.json"])
            .args(args),
        &format!("{args:?}"),
    );
    assert!(report["total_commands_count"].as_u64().unwrap() > 0);
    assert_counts_match(server, &before, &report);
    assert_matches_schema(&report);
    report
}

/// Runs `cmd` (a [`loadgen`] in `workdir` with `--output-file r.json`) to the end, expecting
/// success (`context` and its stderr otherwise); returns the report it wrote.
pub fn report_of(workdir: &Path, cmd: &mut Command, context: &str) -> serde_json::Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{context}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    read_json(&workdir.join("r.json"))
}

/// Reads a JSON report.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("report {} not written: {e}", path.display()));
    serde_json::from_str(&text).expect("report is JSON")
}

/// How many `op` completed in the report's intervals that ended after `elapsed_s` seconds of
/// the run (what happened late in the run, e.g. after a failover).
pub fn completed_after(report: &serde_json::Value, op: &str, elapsed_s: f64) -> u64 {
    report["intervals"]
        .as_array()
        .expect("intervals")
        .iter()
        .filter(|i| i["elapsed_s"].as_f64().unwrap() > elapsed_s)
        .map(|i| i["operations"][op].as_u64().unwrap_or(0))
        .sum()
}

/// The truth check: for every Redis command in the report, the report's total plus its
/// setup (`--prefill`) and warm-up traffic equals the server's own `INFO commandstats` delta
/// (calls + rejected_calls); success + errors = total; intervals add up to the total.
pub fn assert_counts_match(
    server: &RedisServer,
    before: &BTreeMap<String, CommandCalls>,
    report: &serde_json::Value,
) {
    assert_counts_match_stats(before, &server.commandstats(), report);
}

/// [`assert_counts_match`] on commandstats taken by the caller (e.g. summed over the nodes of
/// a cluster).
pub fn assert_counts_match_stats(
    before: &BTreeMap<String, CommandCalls>,
    after: &BTreeMap<String, CommandCalls>,
    report: &serde_json::Value,
) {
    let ops = report["operations"].as_object().expect("operations object");
    assert!(!ops.is_empty(), "no operations reported");
    let phase = |phase: &str, name: &str| report[phase]["operations"][name].as_u64().unwrap_or(0);
    let mut sum = 0;
    for (name, op) in ops {
        let total = op["total"].as_u64().unwrap();
        assert_eq!(
            total,
            op["success"].as_u64().unwrap() + op["errors"].as_u64().unwrap(),
            "{name}: success + errors"
        );
        // Derived figures are neither Redis commands nor part of the command totals.
        if DERIVED_OPS.contains(&name.as_str()) {
            continue;
        }
        sum += total;
        let key = name.to_lowercase();
        let delta =
            after.get(&key).map_or(0, |c| c.seen()) - before.get(&key).map_or(0, |c| c.seen());
        let expected = total + phase("setup", name) + phase("warmup", name);
        assert_eq!(
            expected,
            delta,
            "{name}: report says {total} (+ setup/warm-up {}), server counted {delta}",
            expected - total
        );
    }
    assert_eq!(report["total_commands_count"].as_u64().unwrap(), sum);
    let in_intervals: u64 = report["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["total"].as_u64().unwrap())
        .sum();
    assert_eq!(in_intervals, sum, "intervals add up to the total");
}

/// Checks a report against the checked-in JSON Schema.
pub fn assert_matches_schema(report: &serde_json::Value) {
    let text = std::fs::read_to_string(report_schema_path()).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(report)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "report does not match schema: {errors:#?}"
    );
}

/// The checked-in JSON Schema of the report.
pub fn report_schema_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.schema.json")
}
