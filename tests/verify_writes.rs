//! `--verify-writes` on real redis-server processes: a healthy server loses nothing and serves
//! no stale read (and the report still agrees with the server's own command counts), and a
//! server killed with SIGKILL and restarted without persistence loses acknowledged writes,
//! which the run reports (exit 0: a finding about the server, not a failed run).

mod support;

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use support::{
    RedisServer, assert_counts_match, assert_matches_schema, loadgen, read_json, report_of,
};

fn figure(report: &Value, name: &str) -> u64 {
    report["checks"]["verify_writes"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("checks.verify_writes.{name} missing: {}", report["checks"]))
}

#[test]
fn healthy_server_loses_nothing_and_serves_no_stale_read() {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let before = server.commandstats();
    let report = report_of(
        work.path(),
        loadgen(work.path())
            .args([
                "--port",
                &server.port.to_string(),
                "--duration",
                "2",
                "--quiet",
            ])
            .args(["--clients", "2", "--threads-per-client", "2"])
            // Pipelined: replies are matched to their SET/GET by position in the batch.
            .args([
                "--use-pipeline",
                "--pipeline-size",
                "8",
                "--key-range",
                "2000",
            ])
            .args(["--verify-writes", "--output-file", "r.json"])
            .args(["--metrics-interval", "0.5"]),
        "healthy run",
    );
    assert_matches_schema(&report);
    println!("{}", report["checks"]);
    let acknowledged = figure(&report, "acknowledged_writes");
    let checked = figure(&report, "keys_checked");
    assert_eq!(
        acknowledged,
        report["operations"]["SET"]["success"].as_u64().unwrap()
    );
    assert!(checked > 0 && checked <= 4 * 2000, "{checked}");
    assert_eq!(figure(&report, "lost_writes"), 0);
    assert_eq!(figure(&report, "stale_reads"), 0);
    assert_eq!(figure(&report, "in_doubt_landed"), 0);
    assert_eq!(report["counters"]["stale_reads"], 0);
    // GETs read the stamped keys the SETs wrote.
    assert!(report["operations"]["GET"]["hits"].as_u64().unwrap() > 0);
    // The read-back is one GET per key checked, after the run: outside the report's counts,
    // so for the truth check it is added like setup traffic.
    let mut truth = report.clone();
    truth["setup"] = json!({ "operations": { "GET": checked } });
    assert_counts_match(&server, &before, &truth);
    // Every worker's keys are its own, stamped with its id.
    let value = server.cli(&["GET", "test_key:verify:3:5"]);
    assert!(value.is_empty() || value.starts_with("3:"), "{value}");
}

#[test]
fn restarted_server_without_persistence_loses_acknowledged_writes() {
    let mut server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let child = loadgen(work.path())
        .args(["--port", &server.port.to_string(), "--duration", "3"])
        .args(["--clients", "1", "--threads-per-client", "2"])
        // Mostly SETs over a range large enough that few keys are written again after the
        // restart: what was acknowledged before it is gone.
        .args([
            "--operation-weights",
            "SET:4,GET:1",
            "--key-range",
            "200000",
        ])
        .args(["--retry-backoff-cap", "0.1", "--metrics-interval", "0.5"])
        .args(["--verify-writes", "--output-file", "r.json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    server.kill9();
    std::thread::sleep(Duration::from_millis(300));
    server.restart();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "lost writes are a finding, not a failed run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = read_json(&work.path().join("r.json"));
    assert_matches_schema(&report);
    println!("{}", report["checks"]);
    let lost = figure(&report, "lost_writes");
    let checked = figure(&report, "keys_checked");
    assert!(lost > 0, "{}", report["checks"]);
    assert!(lost <= checked && checked <= figure(&report, "acknowledged_writes"));
    // GETs after the restart found keys acknowledged before it missing.
    assert!(figure(&report, "stale_reads") > 0, "{}", report["checks"]);
    assert_eq!(
        report["counters"]["stale_reads"],
        report["checks"]["verify_writes"]["stale_reads"]
    );
    let sample = report["checks"]["verify_writes"]["lost_sample"]
        .as_array()
        .unwrap();
    assert_eq!(sample.len() as u64, lost.min(10));
    for key in sample {
        let key = key.as_str().unwrap();
        assert!(key.starts_with("test_key:verify:"), "{key}");
        // Really gone from the server (the restart started it empty).
        assert_eq!(server.cli(&["EXISTS", key]).trim(), "0", "{key}");
    }
    assert!(
        stdout.contains("WARNING:") && stdout.contains("acknowledged"),
        "{stdout}"
    );
}
