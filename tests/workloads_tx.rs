//! The transaction_test and increment_check workloads on a real redis-server: MULTI/EXEC
//! counts (inner commands counted by EXEC's reply, not by +QUEUED) against the server's own
//! INFO commandstats, WATCH conflicts aborting transactions, and the increment audit.

mod support;

use serde_json::Value;
use support::{RedisServer, loadgen, read_json, run_checked};

fn count(report: &Value, op: &str, field: &str) -> u64 {
    report["operations"][op][field].as_u64().unwrap_or(0)
}

fn counter(report: &Value, name: &str) -> u64 {
    report["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("counter {name} missing: {}", report["counters"]))
}

/// Inner commands the server executed: SET + GET + INCR totals.
fn inner_total(report: &Value) -> u64 {
    ["SET", "GET", "INCR"]
        .iter()
        .map(|op| count(report, op, "total"))
        .sum()
}

#[test]
fn transactions_on_a_healthy_server_count_exactly() {
    let server = RedisServer::start();
    let report = run_checked(
        &server,
        "1.5",
        &[
            "--workload-profile",
            "transaction_test",
            "--clients",
            "2",
            "--threads-per-client",
            "2",
        ],
    );
    assert_eq!(report["workload_name"], "transaction_test");
    let committed = counter(&report, "transactions_committed");
    assert!(committed > 0);
    assert_eq!(counter(&report, "transactions_aborted"), 0);
    assert_eq!(report["failed_commands_count"], 0);
    assert_eq!(count(&report, "EXEC", "success"), committed);
    assert_eq!(count(&report, "MULTI", "total"), committed);
    // Every committed transaction ran its 5 inner commands (the profile's transaction_size).
    assert_eq!(inner_total(&report), 5 * committed);
    assert!(report["operations"].get("WATCH").is_none());
    let get = &report["operations"]["GET"];
    assert_eq!(
        count(&report, "GET", "hits") + count(&report, "GET", "misses"),
        count(&report, "GET", "success"),
        "{get}"
    );
}

#[test]
fn pipelined_transactions_with_hash_tags_count_exactly() {
    let server = RedisServer::start();
    let report = run_checked(
        &server,
        "1",
        &[
            "--workload-profile",
            "transaction_test",
            "--clients",
            "1",
            "--threads-per-client",
            "2",
            "--use-pipeline",
            "--pipeline-size",
            "4",
            "--transaction-size",
            "3",
            "--hash-tag",
        ],
    );
    let committed = counter(&report, "transactions_committed");
    assert!(committed > 0);
    assert_eq!(inner_total(&report), 3 * committed);
    // Every key is in a hash-tag group.
    let keys = server.cli(&["--scan", "--pattern", "test_key:*"]);
    assert!(!keys.trim().is_empty());
    assert!(keys.lines().all(|k| k.contains('{')), "{keys}");
}

#[test]
fn watch_conflicts_abort_transactions_counted_once() {
    let server = RedisServer::start();
    let report = run_checked(
        &server,
        "1.5",
        &[
            "--workload-profile",
            "transaction_test",
            "--watch",
            "--key-range",
            "3",
            "--clients",
            "1",
            "--threads-per-client",
            "4",
        ],
    );
    let committed = counter(&report, "transactions_committed");
    let aborted = counter(&report, "transactions_aborted");
    assert!(committed > 0, "{}", report["counters"]);
    assert!(
        aborted > 0,
        "no WATCH conflict on 3 keys and 4 workers: {}",
        report["counters"]
    );
    // Each abort is one EXEC error (command_error), and nothing else failed.
    let exec = &report["operations"]["EXEC"];
    assert_eq!(exec["errors"].as_u64().unwrap(), aborted, "{exec}");
    assert_eq!(
        exec["errors_by_type"]["command_error"].as_u64().unwrap(),
        aborted
    );
    assert_eq!(exec["success"].as_u64().unwrap(), committed);
    assert_eq!(report["failed_commands_count"].as_u64().unwrap(), aborted);
    // Only committed transactions' inner commands ran (and assert_counts_match saw the server
    // agree); an abort's commands were never executed.
    assert_eq!(inner_total(&report), 5 * committed);
    // WATCH precedes each MULTI; a worker stopped between the two sent one more WATCH.
    let (watch, multi) = (
        count(&report, "WATCH", "total"),
        count(&report, "MULTI", "total"),
    );
    assert!(
        watch >= multi && watch - multi <= 4,
        "WATCH {watch}, MULTI {multi}"
    );
}

#[test]
fn transaction_size_zero_is_refused_before_connecting() {
    let work = tempfile::tempdir().unwrap();
    // Nothing listens on this port: a connection attempt would exit 1, not 2.
    let port = support::free_port().to_string();
    let out = loadgen(work.path())
        .args(["--port", &port, "--workload-profile", "transaction_test"])
        .args(["--transaction-size", "0", "--duration", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("transaction") && lines[0].contains('0'),
        "{stderr}"
    );
}

fn audit(report: &Value) -> &Value {
    &report["checks"]["increment_check"]
}

#[test]
fn increment_check_finds_every_acknowledged_increment_and_cleans_up() {
    let server = RedisServer::start();
    let run_id = format!("tx-test-{}", std::process::id());
    let report = run_checked(
        &server,
        "1",
        &[
            "--workload-profile",
            "increment_check",
            "--clients",
            "2",
            "--threads-per-client",
            "2",
            "--run-id",
            &run_id,
        ],
    );
    let check = audit(&report);
    let acknowledged = check["acknowledged"].as_u64().unwrap();
    assert!(acknowledged > 0, "{check}");
    assert_eq!(acknowledged, count(&report, "INCR", "success"));
    assert_eq!(
        check["server_total"].as_u64(),
        Some(acknowledged),
        "{check}"
    );
    assert_eq!(check["lost"], 0);
    assert_eq!(check["duplicated"], 0);
    assert_eq!(check["unknown_outcome"], 0);
    assert_eq!(check["keys"], 100);
    assert_eq!(check["ok"], true);
    let left = server.cli(&["--scan", "--pattern", "test_key:incr:*"]);
    assert!(left.trim().is_empty(), "counters left behind: {left}");
}

#[test]
fn increment_check_reports_increments_it_did_not_send() {
    let server = RedisServer::start();
    let run_id = format!("tx-dup-{}", std::process::id());
    // A counter that already holds 1000 when the run starts: the server ends with 1000 more
    // than the run could have applied, which the audit must call duplicated.
    server.cli(&["SET", &format!("test_key:incr:{run_id}:0"), "1000"]);
    let report = run_checked(
        &server,
        "0.5",
        &[
            "--workload-profile",
            "increment_check",
            "--clients",
            "1",
            "--threads-per-client",
            "2",
            "--run-id",
            &run_id,
        ],
    );
    let check = audit(&report);
    assert_eq!(check["duplicated"], 1000, "{check}");
    assert_eq!(check["lost"], 0);
    assert_eq!(check["ok"], false);
    assert!(
        server
            .cli(&["--scan", "--pattern", "test_key:incr:*"])
            .trim()
            .is_empty()
    );
}

#[test]
fn increment_check_reports_an_unreadable_counter_instead_of_panicking() {
    let server = RedisServer::start();
    let run_id = format!("tx-bad-{}", std::process::id());
    // Not an integer: INCR on it fails and the audit cannot sum it.
    server.cli(&["SET", &format!("test_key:incr:{run_id}:3"), "abc"]);
    let work = tempfile::tempdir().unwrap();
    let status = loadgen(work.path())
        .args([
            "--port",
            &server.port.to_string(),
            "--duration",
            "0.5",
            "--quiet",
        ])
        .args(["--workload-profile", "increment_check", "--run-id", &run_id])
        .args([
            "--clients",
            "1",
            "--threads-per-client",
            "1",
            "--output-file",
            "r.json",
        ])
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
    let report = read_json(&work.path().join("r.json"));
    let error = audit(&report)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains(":3") && error.contains("not an integer"),
        "{}",
        report["checks"]
    );
    assert!(count(&report, "INCR", "errors") > 0);
    assert!(
        server
            .cli(&["--scan", "--pattern", "test_key:incr:*"])
            .trim()
            .is_empty()
    );
}

#[test]
fn killed_connections_mid_transaction_leave_no_command_uncounted() {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let mut child = loadgen(work.path())
        .args([
            "--port",
            &server.port.to_string(),
            "--duration",
            "2",
            "--quiet",
        ])
        .args(["--workload-profile", "transaction_test", "--clients", "1"])
        .args([
            "--threads-per-client",
            "4",
            "--use-pipeline",
            "--pipeline-size",
            "5",
        ])
        .args(["--output-file", "r.json"])
        .spawn()
        .unwrap();
    for _ in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(400));
        server.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
    }
    assert!(child.wait().unwrap().success());
    let report = read_json(&work.path().join("r.json"));
    assert!(report["connections"]["reconnects"].as_u64().unwrap() >= 4);
    // Every transaction sent counts its EXEC once and each of its 5 inner commands once,
    // whether it committed, or its connection died before or after the commands were queued.
    assert_eq!(counter(&report, "transactions_aborted"), 0);
    assert_eq!(inner_total(&report), 5 * count(&report, "EXEC", "total"));
    assert!(report["failed_commands_count"].as_u64().unwrap() > 0);
}
