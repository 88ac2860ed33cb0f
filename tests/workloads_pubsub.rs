//! `pubsub_test` against real redis-servers: every message published reaches every subscriber
//! exactly once on a healthy server (SUBSCRIBE and PSUBSCRIBE, RESP3 and RESP2), with its
//! delivery latency measured; PUBLISH counts match the server's; subscribers killed mid-run
//! reconnect and the messages they missed are reported lost. (Allocation counts:
//! tests/zero_alloc_runs.rs.)

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{
    RedisServer, assert_counts_match, assert_matches_schema, completed_after, loadgen, read_json,
};

fn pubsub_run(
    server: &RedisServer,
    work: &Path,
    duration: &str,
    extra: &[&str],
) -> std::process::Command {
    let mut cmd = loadgen(work);
    cmd.args(["--host", "127.0.0.1", "--port", &server.port.to_string()])
        .args(["--workload-profile", "pubsub_test", "--duration", duration])
        .args([
            "--metrics-interval",
            "0.5",
            "--quiet",
            "--output-file",
            "r.json",
        ])
        .args(extra);
    cmd
}

fn counter(report: &Value, name: &str) -> u64 {
    report["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("counter {name} in {}", report["counters"]))
}

/// Every message reached every subscriber once: nothing lost, duplicated or reordered, and
/// received == expected_deliveries == published x subscribers.
fn assert_all_delivered(report: &Value, subscribers: u64) {
    let published = counter(report, "published");
    assert!(published > 1000, "published {published}");
    assert_eq!(
        counter(report, "expected_deliveries"),
        published * subscribers
    );
    assert_eq!(
        counter(report, "received"),
        counter(report, "expected_deliveries")
    );
    for name in ["lost", "duplicated", "out_of_order"] {
        assert_eq!(counter(report, name), 0, "{name}: {}", report["counters"]);
    }
    let receive = &report["operations"]["RECEIVE"];
    assert_eq!(
        receive["success"].as_u64(),
        Some(counter(report, "received"))
    );
    assert_eq!(receive["errors"].as_u64(), Some(0));
    assert_eq!(
        report["operations"]["PUBLISH"]["success"].as_u64(),
        Some(published)
    );
}

#[test]
fn healthy_server_delivers_every_message_with_its_latency() {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let before = server.commandstats();
    let status = pubsub_run(
        &server,
        work.path(),
        "2",
        &[
            "--publishers",
            "2",
            "--subscribers",
            "2",
            "--pubsub-channels",
            "orders,events",
        ],
    )
    .status()
    .unwrap();
    assert!(status.success(), "{status}");
    let report = read_json(&work.path().join("r.json"));
    assert_eq!(report["workload_name"], "pubsub_test");
    assert_eq!(report["connections"]["workers"], 4);
    assert_all_delivered(&report, 2);
    // PUBLISH total == the server's own count (RECEIVE is derived, not a command).
    assert_counts_match(&server, &before, &report);
    assert_eq!(
        server.commandstats()["publish"].seen() - before.get("publish").map_or(0, |c| c.seen()),
        counter(&report, "published")
    );
    let latency = &report["operations"]["RECEIVE"]["latency_ms"];
    let (p50, p99) = (
        latency["p50"].as_f64().unwrap(),
        latency["p99"].as_f64().unwrap(),
    );
    assert!(
        p50 > 0.0 && p99 < 1000.0 && p50 <= p99,
        "RECEIVE p50 {p50} p99 {p99}"
    );
    assert_matches_schema(&report);
}

/// Channels whose `<channel>*` patterns would overlap (`ps:a*` matches `ps:ab`): each message
/// must still arrive once per subscriber.
#[test]
fn psubscribe_delivers_every_message_once() {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let status = pubsub_run(
        &server,
        work.path(),
        "1.5",
        &[
            "--psubscribe",
            "--publishers",
            "2",
            "--subscribers",
            "2",
            "--pubsub-channels",
            "ps:a,ps:b,ps:ab",
        ],
    )
    .status()
    .unwrap();
    assert!(status.success(), "{status}");
    let report = read_json(&work.path().join("r.json"));
    assert_all_delivered(&report, 2);
}

#[test]
fn resp2_subscribers_with_pipelined_publishers() {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let before = server.commandstats();
    let status = pubsub_run(
        &server,
        work.path(),
        "1",
        &[
            "--protocol",
            "2",
            "--use-pipeline",
            "--pipeline-size",
            "10",
            "--subscribers",
            "3",
            "--pubsub-channels",
            "x,y",
            "--value-size",
            "300",
        ],
    )
    .status()
    .unwrap();
    assert!(status.success(), "{status}");
    let report = read_json(&work.path().join("r.json"));
    assert_all_delivered(&report, 3);
    assert_counts_match(&server, &before, &report);
}

#[test]
fn killed_subscribers_reconnect_and_report_what_they_lost() {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let mut child = pubsub_run(
        &server,
        work.path(),
        "3",
        &["--publishers", "2", "--subscribers", "2"],
    )
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let killed = server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_eq!(
        killed.trim(),
        "2",
        "both subscribers were connected and killed"
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let report = read_json(&work.path().join("r.json"));
    assert!(counter(&report, "lost") > 0, "{}", report["counters"]);
    assert_eq!(counter(&report, "duplicated"), 0);
    assert_eq!(report["connections"]["reconnects"], 2);
    let receive = &report["operations"]["RECEIVE"];
    assert_eq!(receive["errors_by_type"]["connection_error"], 2);
    // The subscribers' time without a connection is an outage, closed by the resubscribe.
    let outages = report["outages"].as_array().unwrap();
    assert_eq!(outages.len(), 1, "{outages:?}");
    assert!(!outages[0]["open_at_end"].as_bool().unwrap());
    assert!(
        outages[0]["duration_s"].as_f64().unwrap() < 1.5,
        "{outages:?}"
    );
    // Delivery resumed after the reconnect: the last interval still received messages.
    let last = report["intervals"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(
        last["operations"]["RECEIVE"].as_u64().unwrap() > 0,
        "{last}"
    );
    // Each subscriber either received or lost every message.
    assert_eq!(
        counter(&report, "received") + counter(&report, "lost"),
        2 * counter(&report, "published"),
        "{}",
        report["counters"]
    );
}

/// Runs redis-cli commands (one per line) on one connection.
fn cli_script(server: &RedisServer, script: &str) -> String {
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &server.port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli on PATH");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Subscribers killed and then refused (maxclients) never see another message: everything
/// published after the kill is lost at the end, counted from the publishers' final numbers.
#[test]
fn subscribers_shut_out_until_the_end_lose_every_later_message() {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let mut child = pubsub_run(
        &server,
        work.path(),
        "3",
        &["--publishers", "2", "--subscribers", "2"],
    )
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    // Two publishers stay; the subscribers' reconnects would be a third client.
    let out = cli_script(
        &server,
        "CONFIG SET maxclients 2\nCLIENT KILL TYPE pubsub\n",
    );
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["OK", "2"],
        "{out}"
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let report = read_json(&work.path().join("r.json"));
    let (published, received, lost) = (
        counter(&report, "published"),
        counter(&report, "received"),
        counter(&report, "lost"),
    );
    assert_eq!(received + lost, 2 * published, "{}", report["counters"]);
    // Shut out for the last ~60% of the run.
    assert!(lost > published, "{}", report["counters"]);
    assert_eq!(report["connections"]["reconnects"], 0);
    assert!(report["connections"]["connect_failures"].as_u64().unwrap() > 0);
    // PUBLISH counted deliveries into the subscribers' buffers that the kill threw away.
    assert!(counter(&report, "expected_deliveries") >= received);
}

#[test]
fn pubsub_needs_a_subscriber() {
    let work = tempfile::tempdir().unwrap();
    let out = loadgen(work.path())
        .args(["--workload-profile", "pubsub_test", "--subscribers", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("subscribers"), "{stderr}");
}

/// A subscriber that hears nothing for `--health-check-interval` PINGs its connection (PING is
/// allowed in subscribed mode). While the server is paused the PING goes unanswered past the
/// socket timeout: the connection is counted as a failed health check, replaced, and the
/// subscriber listens again on the new one.
#[test]
fn idle_subscribers_are_health_checked_and_replaced_when_unanswered() {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let mut child = pubsub_run(
        &server,
        work.path(),
        "4",
        &[
            "--publishers",
            "1",
            "--subscribers",
            "1",
            "--target-ops-per-second",
            "2",
            "--health-check-interval",
            "0.2",
            "--socket-timeout",
            "0.5",
            "--retry-backoff-cap",
            "0.1",
        ],
    )
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(server.cli(&["CLIENT", "PAUSE", "1200", "ALL"]).trim(), "OK");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let report = read_json(&work.path().join("r.json"));
    let c = &report["connections"];
    assert!(c["health_checks"].as_u64().unwrap() >= 3, "{c}");
    assert!(c["health_check_failures"].as_u64().unwrap() >= 1, "{c}");
    assert!(c["reconnection_count"].as_u64().unwrap() >= 1, "{c}");
    // The subscriber's own check failed (the publisher's would not count as a RECEIVE error).
    let receive = &report["operations"]["RECEIVE"];
    assert!(
        receive["errors_by_type"]["timeout"].as_u64().unwrap() >= 1,
        "{receive}"
    );
    // Listening again after the pause: messages published in the last second arrived.
    let received_late = completed_after(&report, "RECEIVE", 3.0);
    assert!(received_late > 0, "{}", report["intervals"]);
}
