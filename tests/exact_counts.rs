//! Truthfulness on a real redis-server: for every command the workload sent, the report's total
//! equals the server's own `INFO commandstats` delta, for both shipped profiles, whether the run
//! ends by duration or by SIGINT; and the JSON matches its schema.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{RedisServer, loadgen, read_json, report_schema_path, small_run};

/// Asserts each reported command's total equals the server's calls delta, and the report's own
/// figures add up.
fn assert_counts_match(
    server: &RedisServer,
    before: &std::collections::BTreeMap<String, redis_loadgen::control::CommandCalls>,
    report: &Value,
) {
    let after = server.commandstats();
    let ops = report["operations"].as_object().expect("operations object");
    assert!(!ops.is_empty(), "no operations reported");
    let mut sum = 0;
    for (name, op) in ops {
        let key = name.to_lowercase();
        let delta =
            after.get(&key).map_or(0, |c| c.seen()) - before.get(&key).map_or(0, |c| c.seen());
        let total = op["total"].as_u64().unwrap();
        assert!(total > 0, "{name}: nothing sent");
        assert_eq!(
            total, delta,
            "{name}: report says {total}, server counted {delta}"
        );
        assert_eq!(
            total,
            op["success"].as_u64().unwrap() + op["errors"].as_u64().unwrap(),
            "{name}: success + errors"
        );
        sum += total;
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

fn assert_matches_schema(report: &Value) {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(report_schema_path()).unwrap()).unwrap();
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

fn run_profile(profile: &str, extra: &[&str]) {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("report.json");
    let before = server.commandstats();
    let status = loadgen(work.path())
        .args(["--host", "127.0.0.1", "--port", &server.port.to_string()])
        .args([
            "--workload-profile",
            profile,
            "--clients",
            "2",
            "--threads-per-client",
            "2",
        ])
        .args(["--duration", "2", "--metrics-interval", "0.5", "--quiet"])
        .arg("--output-file")
        .arg(&out)
        .args(extra)
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
    let report = read_json(&out);
    assert_counts_match(&server, &before, &report);
    assert_eq!(report["workload_name"], profile);
    assert_eq!(report["end_reason"], "duration");
    assert_eq!(report["failed_commands_count"], 0);
    let duration = report["duration_s"].as_f64().unwrap();
    assert!((1.9..2.5).contains(&duration), "duration {duration}");
    assert!(report["intervals"].as_array().unwrap().len() >= 4);
    assert_matches_schema(&report);
}

#[test]
fn basic_rw_counts_match_server() {
    run_profile("basic_rw", &[]);
}

#[test]
fn high_throughput_counts_match_server() {
    run_profile("high_throughput", &[]);
}

#[test]
fn custom_mix_with_incr_counts_match_server() {
    run_profile(
        "basic_rw",
        &[
            "--operations",
            "SET,GET,DEL,INCR",
            "--use-pipeline",
            "--pipeline-size",
            "7",
        ],
    );
}

#[test]
fn resp2_with_select_counts_match_server() {
    run_profile("basic_rw", &["--protocol", "2", "--db", "3"]);
}

/// Runs until `signal`, which must end the run cleanly with exact counts and a valid report.
fn signal_ends_run_with_exact_counts_and_report(signal: i32) {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("report.json");
    let before = server.commandstats();
    let mut child = loadgen(work.path())
        .args(["--host", "127.0.0.1", "--port", &server.port.to_string()])
        .args(["--workload-profile", "high_throughput", "--clients", "2"])
        .args(["--threads-per-client", "2", "--quiet"])
        .arg("--output-file")
        .arg(&out)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, signal) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let report = read_json(&out);
    assert_eq!(report["end_reason"], "signal");
    assert_counts_match(&server, &before, &report);
    assert_matches_schema(&report);
}

#[test]
fn sigint_ends_run_with_exact_counts_and_report() {
    signal_ends_run_with_exact_counts_and_report(libc::SIGINT);
}

#[test]
fn sigterm_ends_run_with_exact_counts_and_report() {
    signal_ends_run_with_exact_counts_and_report(libc::SIGTERM);
}

#[test]
fn report_file_is_replaced_atomically_not_appended() {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("r.json");
    std::fs::write(&out, "stale").unwrap();
    let status = small_run(work.path(), server.port).status().unwrap();
    assert!(status.success());
    read_json(&out);
    let leftovers: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
