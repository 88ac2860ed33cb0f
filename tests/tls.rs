//! TLS end to end against real TLS redis-servers: certificates are made per test with the
//! `openssl` CLI (EC P-256: a CA, a server certificate for localhost/127.0.0.1, a client
//! certificate, and an unrelated CA). Covers verified and mutual TLS on both planes, the clear
//! one-line failures (wrong CA, missing client certificate, TLS against a plain port and plain
//! against a TLS port), `rediss://` URLs and the redaction of a URL's password.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use redis_loadgen::control::{self, CommandCalls};
use support::tls::{Certs, TlsServer};
use support::{RedisServer, loadgen, read_json};

/// Runs the binary; returns its output.
fn run(work: &Path, args: &[&str]) -> Output {
    loadgen(work).args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A failure: exit 1, one line naming the problem, no panic.
fn assert_clear_failure(out: &Output, expect: &[&str]) {
    let err = stderr(out);
    eprintln!("failure as shown: {err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let error_lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(error_lines.len(), 1, "one error line: {err}");
    for e in expect {
        assert!(
            error_lines[0].to_lowercase().contains(&e.to_lowercase()),
            "'{e}' in: {err}"
        );
    }
}

/// The report's command totals equal the server's commandstats delta.
fn assert_counts(
    before: &BTreeMap<String, CommandCalls>,
    after: &BTreeMap<String, CommandCalls>,
    report: &serde_json::Value,
) {
    let ops = report["operations"].as_object().unwrap();
    assert!(!ops.is_empty());
    for (name, op) in ops {
        let total = op["total"].as_u64().unwrap();
        assert!(total > 0, "{name}");
        let key = name.to_lowercase();
        let delta =
            after.get(&key).map_or(0, |c| c.seen()) - before.get(&key).map_or(0, |c| c.seen());
        assert_eq!(total, delta, "{name}: report {total}, server {delta}");
    }
}

const RUN: &[&str] = &[
    "--duration",
    "1",
    "--quiet",
    "--clients",
    "2",
    "--threads-per-client",
    "1",
    "--operations",
    "SET,GET",
    "--output-file",
    "r.json",
];

#[test]
fn verified_tls_runs_with_exact_counts_and_test_connection() {
    let certs = Certs::make();
    let server = TlsServer::start(&certs, "no", &[]);
    let control_cfg = server.redis_config(&certs, None);
    let before = control::commandstats(&control_cfg).expect("commandstats over TLS");
    let work = tempfile::tempdir().unwrap();
    let port = server.port.to_string();
    let tls = [
        "--host",
        "localhost",
        "--port",
        &port,
        "--tls",
        "--tls-ca-file",
        &certs.arg("ca.crt"),
    ];
    let out = run(work.path(), &[&tls[..], RUN].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let after = control::commandstats(&control_cfg).unwrap();
    let report = read_json(&work.path().join("r.json"));
    assert!(report["total_commands_count"].as_u64().unwrap() > 100);
    assert_counts(&before, &after, &report);

    let out = run(work.path(), &[&["test-connection"], &tls[..]].concat());
    assert!(out.status.success(), "{}", stderr(&out));

    // 127.0.0.1 is in the certificate too; a name that is not fails unless the check is off.
    let ip = ["--host", "127.0.0.1", "--port", &port, "--tls"];
    let ca = ["--tls-ca-file", &certs.arg("ca.crt")];
    let out = run(work.path(), &[&ip[..], &ca, RUN].concat());
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn host_name_check_can_be_turned_off() {
    let certs = Certs::make();
    let server = TlsServer::start(&certs, "no", &["--bind", "127.0.0.1", "127.0.0.2"]);
    let work = tempfile::tempdir().unwrap();
    // 127.0.0.2 is not a name in the certificate.
    let args = [
        "--host",
        "127.0.0.2",
        "--port",
        &server.port.to_string(),
        "--tls",
        "--tls-ca-file",
        &certs.arg("ca.crt"),
    ];
    let out = run(work.path(), &[&args[..], RUN].concat());
    assert_clear_failure(&out, &["certificate"]);
    let out = run(
        work.path(),
        &[&args[..], &["--tls-check-hostname=false"], RUN].concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let certs = Certs::make();
    let server = TlsServer::start(&certs, "yes", &[]);
    let work = tempfile::tempdir().unwrap();
    let port = server.port.to_string();
    let tls = [
        "--host",
        "localhost",
        "--port",
        &port,
        "--tls",
        "--tls-ca-file",
        &certs.arg("ca.crt"),
    ];
    let client = [
        "--tls-cert-file",
        &certs.arg("client.crt"),
        "--tls-key-file",
        &certs.arg("client.key"),
    ];
    let control_cfg = server.redis_config(&certs, None);
    let before = control::commandstats(&control_cfg).unwrap();
    let out = run(work.path(), &[&tls[..], &client, RUN].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let after = control::commandstats(&control_cfg).unwrap();
    assert_counts(&before, &after, &read_json(&work.path().join("r.json")));

    let start = Instant::now();
    let out = run(work.path(), &[&tls[..], RUN].concat());
    assert_clear_failure(&out, &["cannot connect"]);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_wrong_ca_fails_clearly() {
    let certs = Certs::make();
    let server = TlsServer::start(&certs, "no", &[]);
    let work = tempfile::tempdir().unwrap();
    let out = run(
        work.path(),
        &[
            &[
                "--host",
                "localhost",
                "--port",
                &server.port.to_string(),
                "--tls",
                "--tls-ca-file",
                &certs.arg("other-ca.crt"),
            ],
            RUN,
        ]
        .concat(),
    );
    assert_clear_failure(&out, &["cannot connect", "certificate"]);
    // Accepting any certificate gets through.
    let out = run(
        work.path(),
        &[
            &[
                "--host",
                "localhost",
                "--port",
                &server.port.to_string(),
                "--tls",
                "--tls-insecure",
            ],
            RUN,
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("without certificate verification"));
}

#[test]
fn tls_against_a_plain_port_fails_within_the_connect_timeout() {
    let certs = Certs::make();
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let out = run(
        work.path(),
        &[
            &[
                "--port",
                &server.port.to_string(),
                "--tls",
                "--tls-ca-file",
                &certs.arg("ca.crt"),
                "--connect-timeout",
                "1",
                "--socket-timeout",
                "10",
            ],
            RUN,
        ]
        .concat(),
    );
    assert_clear_failure(&out, &["cannot connect"]);
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn plain_against_a_tls_port_fails_clearly() {
    let certs = Certs::make();
    let server = TlsServer::start(&certs, "no", &[]);
    let work = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let out = run(
        work.path(),
        &[
            &["--port", &server.port.to_string(), "--connect-timeout", "1"],
            RUN,
        ]
        .concat(),
    );
    assert_clear_failure(&out, &["cannot connect"]);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn rediss_url_works_and_its_password_is_never_shown() {
    let certs = Certs::make();
    let server = TlsServer::start(&certs, "no", &["--requirepass", "s3cr%t"]);
    let work = tempfile::tempdir().unwrap();
    let url = format!("rediss://default:s3cr%25t@localhost:{}/0", server.port);
    let ca = ["--tls-ca-file", &certs.arg("ca.crt")];
    let control_cfg = server.redis_config(&certs, Some("s3cr%t"));
    let before = control::commandstats(&control_cfg).unwrap();
    let out = run(work.path(), &[&["--url", &url], &ca[..], RUN].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let after = control::commandstats(&control_cfg).unwrap();
    let text = std::fs::read_to_string(work.path().join("r.json")).unwrap();
    assert!(!text.contains("s3cr"), "password in the report");
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_counts(&before, &after, &report);
    assert_eq!(
        report["config"]["redis"]["tls"], true,
        "{}",
        report["config"]
    );

    // --show-config: the URL's parts in their rows, its password nowhere.
    let out = loadgen(work.path())
        .env("REDIS_URL", &url)
        .args(["--port", "7777", "--show-config"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!shown.contains("s3cr"), "{shown}");
    let row = |key: &str| {
        shown
            .lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("{key} in {shown}"))
            .to_string()
    };
    assert!(row("redis.host").contains("localhost"), "{shown}");
    // A higher layer (the command line) wins over the URL's port (from the environment).
    assert!(row("redis.port").contains("7777"), "{shown}");
    assert!(row("redis.tls").contains("true"), "{shown}");
    assert!(row("redis.password").contains("***"), "{shown}");
    assert!(row("redis.url").contains("***"), "{shown}");

    // The connection name defaults to redis-loadgen-<instance id>.
    let out = loadgen(work.path())
        .args(["--instance-id", "box7", "--show-config"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("redis-loadgen-box7"), "{shown}");
}

#[test]
fn own_loop_workloads_run_over_tls() {
    let certs = Certs::make();
    let server = TlsServer::start(&certs, "no", &[]);
    let work = tempfile::tempdir().unwrap();
    let port = server.port.to_string();
    let tls = [
        "--host",
        "localhost",
        "--port",
        &port,
        "--tls",
        "--tls-ca-file",
        &certs.arg("ca.crt"),
        "--duration",
        "1",
        "--quiet",
        "--output-file",
        "r.json",
    ];
    for profile in ["pubsub_test", "stream_request_reply"] {
        let out = run(
            work.path(),
            &[&tls[..], &["--workload-profile", profile]].concat(),
        );
        assert!(out.status.success(), "{profile}: {}", stderr(&out));
        let report = read_json(&work.path().join("r.json"));
        assert!(
            report["total_commands_count"].as_u64().unwrap() > 100,
            "{profile}: {}",
            report["total_commands_count"]
        );
        if profile == "pubsub_test" {
            // The subscribers read over TLS with a short read timeout: every message arrives.
            let counter = |name: &str| report["counters"][name].as_u64().unwrap();
            assert!(counter("received") > 100, "{}", report["counters"]);
            assert_eq!(counter("received"), counter("expected_deliveries"));
            assert_eq!(counter("lost"), 0, "{}", report["counters"]);
        }
    }
}

#[test]
fn bad_tls_settings_exit_2_before_connecting() {
    let certs = Certs::make();
    let work = tempfile::tempdir().unwrap();
    let missing = certs.arg("missing.crt");
    for (args, expect) in [
        (
            vec!["--tls", "--tls-cert-file", &certs.arg("client.crt")],
            "redis.tls_key_file",
        ),
        (
            vec!["--tls", "--tls-key-file", &certs.arg("client.key")],
            "redis.tls_cert_file",
        ),
        (vec!["--tls", "--tls-ca-file", &missing], "cannot read"),
        (
            vec!["--tls", "--tls-ca-file", &certs.arg("client.key")],
            "redis.tls_ca_file",
        ),
        (
            vec![
                "--tls",
                "--tls-cert-file",
                &certs.arg("client.crt"),
                "--tls-key-file",
                &certs.arg("server.key"),
            ],
            "redis.tls_key_file",
        ),
        (vec!["--url", "http://x"], "redis.url"),
        (vec!["--tls-cert-reqs", "maybe"], "required or none"),
    ] {
        // Port 1: nothing listens; the error must come before any connection attempt.
        let out = run(work.path(), &[&args[..], &["--port", "1"], RUN].concat());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}

#[test]
fn tcp_keepalive_is_set_on_data_plane_sockets() {
    let server = RedisServer::start();
    let mut cfg = server.redis_config();
    cfg.tcp_keepalive = Some(Duration::from_secs(17));
    let conn = redis_loadgen::client::connect(&cfg, "keepalive-test").unwrap();
    let sock = socket2::SockRef::from(conn.stream().tcp());
    assert!(sock.keepalive().unwrap());
    assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(17));
    cfg.tcp_keepalive = None;
    let conn = redis_loadgen::client::connect(&cfg, "keepalive-test").unwrap();
    assert!(
        !socket2::SockRef::from(conn.stream().tcp())
            .keepalive()
            .unwrap()
    );
}
