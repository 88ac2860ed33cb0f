//! Truthfulness on a real redis-server: for every command the workload sent, the report's total
//! equals the server's own `INFO commandstats` delta, for both shipped profiles, whether the run
//! ends by duration or by SIGINT; and the JSON matches its schema.

mod support;

use std::time::Duration;

use support::{
    RedisServer, assert_counts_match, assert_matches_schema, loadgen, read_json, small_run,
};

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
    assert!(report["total_commands_count"].as_u64().unwrap() > 0);
    assert_counts_match(&server, &before, &report);
    assert_eq!(report["workload_name"], profile);
    assert_eq!(report["end_reason"], "duration");
    assert_eq!(report["failed_commands_count"], 0);
    let duration = report["duration_s"].as_f64().unwrap();
    assert!((1.9..2.5).contains(&duration), "duration {duration}");
    assert!(report["intervals"].as_array().unwrap().len() >= 4);
    // Two workers per I/O thread, closed loop: the threads work between the server's
    // replies and wait for most of the round trip (10-20 % busy here), never 0 or 100.
    let busy: Vec<f64> = report["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["io_busy_percent"].as_f64().unwrap())
        .collect();
    assert!(busy.iter().all(|b| (0.0..=100.0).contains(b)), "{busy:?}");
    let mean = busy.iter().sum::<f64>() / busy.len() as f64;
    assert!(mean > 1.0 && mean < 90.0, "I/O threads busy {busy:?}");
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

/// A thousand connections on two I/O threads: every one comes up (the server sees them all),
/// and the counts still equal the server's.
#[test]
fn a_thousand_connections_count_exactly() {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("report.json");
    let before = server.commandstats();
    let status = loadgen(work.path())
        .args(["--host", "127.0.0.1", "--port", &server.port.to_string()])
        .args(["--operations", "SET,GET", "--io-threads", "2"])
        .args(["--clients", "10", "--threads-per-client", "100"])
        .args(["--max-connections", "100"])
        .args(["--duration", "2", "--metrics-interval", "0.5", "--quiet"])
        .arg("--output-file")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
    let report = read_json(&out);
    assert_counts_match(&server, &before, &report);
    assert_eq!(report["failed_commands_count"], 0);
    let c = &report["connections"];
    assert_eq!(c["initiated"], 1000, "{c}");
    assert_eq!(c["succeeded"], 1000, "{c}");
    let clients = server.cli(&["INFO", "stats"]);
    let accepted: u64 = clients
        .lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(
        accepted >= 1000,
        "the server accepted {accepted} connections"
    );
    // The load went through those connections.
    assert!(
        report["total_commands_count"].as_u64().unwrap() >= 1000,
        "{}",
        report["total_commands_count"]
    );
    assert_matches_schema(&report);
}
