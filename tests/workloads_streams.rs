//! `stream_request_reply` against real redis-servers: on a healthy server every request is
//! answered (RESP3 and RESP2) with its request->reply latency, and the XADD / BLPOP /
//! XREADGROUP / LPUSH / XACK / XAUTOCLAIM counts equal the server's; processors slower than
//! the ingress build a backlog that the report shows per interval; an entry left pending by a
//! consumer that stopped is reclaimed and answered; the run's keys are deleted afterwards.
//! (Allocation counts: tests/zero_alloc_runs.rs.)

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::{RedisServer, assert_counts_match, assert_matches_schema, loadgen, read_json};

/// A run of the profile against `server`, writing `r.json` in `work`.
fn streams_run(server: &RedisServer, work: &Path, duration: &str, extra: &[&str]) -> Value {
    let status = loadgen(work)
        .args(["--host", "127.0.0.1", "--port", &server.port.to_string()])
        .args(["--workload-profile", "stream_request_reply"])
        .args([
            "--duration",
            duration,
            "--metrics-interval",
            "0.5",
            "--quiet",
        ])
        .args(["--output-file", "r.json"])
        .args(extra)
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
    let report = read_json(&work.join("r.json"));
    assert_eq!(report["workload_name"], "stream_request_reply");
    assert_eq!(report["end_reason"], "duration");
    assert_matches_schema(&report);
    report
}

fn counter(report: &Value, name: &str) -> u64 {
    report["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("counter {name} in {}", report["counters"]))
}

fn checks(report: &Value) -> &Value {
    &report["checks"]["stream_request_reply"]
}

/// Every request got its own reply: none unanswered, late or foreign, one REQUEST_REPLY
/// success per request, and the processors pushed exactly that many replies.
fn assert_all_answered(report: &Value) {
    let requests = counter(report, "requests");
    assert!(requests > 1000, "requests {requests}");
    assert_eq!(
        counter(report, "replies"),
        requests,
        "{}",
        report["counters"]
    );
    assert_eq!(counter(report, "unanswered"), 0);
    assert_eq!(counter(report, "mismatched"), 0);
    assert_eq!(counter(report, "late_replies"), 0);
    assert_eq!(counter(report, "processed"), requests);
    let rr = &report["operations"]["REQUEST_REPLY"];
    assert_eq!(rr["success"].as_u64(), Some(requests));
    assert_eq!(rr["errors"], 0);
    assert!(rr["latency_ms"]["p50"].as_f64().unwrap() > 0.0, "{rr}");
    assert_eq!(
        report["operations"]["XADD"]["total"].as_u64(),
        Some(requests)
    );
    assert_eq!(checks(report)["in_flight_at_end"], 0);
}

/// Per interval with a backlog sample: (pending, lag).
fn backlog_samples(report: &Value) -> Vec<(u64, u64)> {
    report["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| {
            let g = &i["gauges"];
            Some((g["stream_pending"].as_u64()?, g["stream_lag"].as_u64()?))
        })
        .collect()
}

/// The run's stream and reply lists are gone.
fn assert_cleaned_up(server: &RedisServer, report: &Value, prefix: &str) {
    assert_eq!(checks(report)["cleaned_up"], true, "{}", report["checks"]);
    let left = server.cli(&["--scan", "--pattern", &format!("{prefix}:*")]);
    assert_eq!(left.trim(), "", "keys left behind");
}

#[test]
fn healthy_server_answers_every_request_and_counts_match() {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let before = server.commandstats();
    let report = streams_run(
        &server,
        work.path(),
        "2",
        &[
            "--clients",
            "1",
            "--threads-per-client",
            "2",
            "--stream-consumers",
            "2",
            "--key-prefix",
            "srr",
        ],
    );
    assert_all_answered(&report);
    assert_counts_match(&server, &before, &report);
    for op in ["XADD", "BLPOP", "XREADGROUP", "LPUSH", "XACK"] {
        assert!(
            report["operations"][op]["total"].as_u64().unwrap() > 1000,
            "{op}"
        );
    }
    assert!(
        report["operations"]["XAUTOCLAIM"]["total"]
            .as_u64()
            .unwrap()
            >= 2
    );
    assert_eq!(report["connections"]["workers"], 4);
    // The backlog is sampled in (nearly) every interval and stays within what two closed-loop
    // ingress workers can have outstanding (pending and lag are sampled one after the other,
    // so each is bounded, not their sum).
    let samples = backlog_samples(&report);
    assert!(samples.len() >= 3, "backlog samples {samples:?}");
    assert!(
        samples.iter().all(|&(p, l)| p <= 2 && l <= 2),
        "backlog samples {samples:?} with two ingress workers"
    );
    assert!(report["gauges"]["stream_pending"]["max"].as_u64().unwrap() <= 2);
    assert_eq!(checks(&report)["final_pending"], 0);
    assert_cleaned_up(&server, &report, "srr");
}

#[test]
fn resp2_and_pipelined_ingress_answer_every_request() {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let before = server.commandstats();
    let report = streams_run(
        &server,
        work.path(),
        "1.5",
        &[
            "--protocol",
            "2",
            "--clients",
            "2",
            "--threads-per-client",
            "1",
            "--stream-consumers",
            "1",
            "--use-pipeline",
            "--pipeline-size",
            "3",
        ],
    );
    assert_all_answered(&report);
    assert_counts_match(&server, &before, &report);
    // Three units per write: one XADD and one BLPOP each.
    let blpop = report["operations"]["BLPOP"]["total"].as_u64().unwrap();
    assert_eq!(blpop, counter(&report, "requests"));
}

/// One processor at 50 ms per request against eight ingress workers whose BLPOP gives up
/// after 0.24 s: requests pile up in the stream faster than they are answered. The backlog
/// must show in the interval gauges (the healthy test bounds it by 2 with the same sampling),
/// and requests not answered in time are counted, not hidden.
#[test]
fn slow_processors_show_a_backlog_and_unanswered_requests() {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let before = server.commandstats();
    let report = streams_run(
        &server,
        work.path(),
        "3",
        &[
            "--clients",
            "2",
            "--threads-per-client",
            "4",
            "--stream-consumers",
            "1",
            "--processing-time",
            "50ms",
            "--socket-timeout",
            "0.3",
        ],
    );
    assert_counts_match(&server, &before, &report);
    let samples = backlog_samples(&report);
    assert!(samples.len() >= 5, "backlog samples {samples:?}");
    assert!(
        samples.iter().any(|&(p, l)| p + l >= 4),
        "backlog samples {samples:?}"
    );
    let busy = samples.iter().filter(|&&(p, l)| p + l > 0).count();
    assert!(busy >= 4, "backlog samples {samples:?}");
    // The processor answers at most 20 requests a second; the rest time out.
    let (requests, replies, unanswered) = (
        counter(&report, "requests"),
        counter(&report, "replies"),
        counter(&report, "unanswered"),
    );
    assert!(unanswered > 10, "{}", report["counters"]);
    // 20 a second for 3 s, and the drain: at most one BLPOP timeout (0.24 s) after the end.
    assert!(
        counter(&report, "processed") <= 3 * 20 + 5 + 2,
        "{}",
        report["counters"]
    );
    let rr = &report["operations"]["REQUEST_REPLY"];
    assert_eq!(rr["errors_by_type"]["timeout"].as_u64(), Some(unanswered));
    assert_eq!(rr["success"].as_u64(), Some(replies));
    assert_eq!(
        replies + unanswered + checks(&report)["in_flight_at_end"].as_u64().unwrap(),
        requests
    );
    assert_eq!(counter(&report, "mismatched"), 0);
    // Replies to requests that had timed out turn up later and are told apart.
    assert!(
        counter(&report, "late_replies") > 0,
        "{}",
        report["counters"]
    );
}

/// An entry delivered to a consumer that then stopped (never acknowledged) is taken over
/// with XAUTOCLAIM once it has been idle long enough, and answered.
#[test]
fn entries_left_pending_by_a_stopped_consumer_are_reclaimed() {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let stream = "rc:requests:run-reclaim";
    server.cli(&["XGROUP", "CREATE", stream, "loadgen", "$", "MKSTREAM"]);
    server.cli(&[
        "XADD",
        stream,
        "*",
        "id",
        "41",
        "reply_to",
        "ghost:replies",
        "payload",
        "x",
    ]);
    let read = server.cli(&[
        "XREADGROUP",
        "GROUP",
        "loadgen",
        "ghost",
        "COUNT",
        "1",
        "STREAMS",
        stream,
        ">",
    ]);
    assert!(read.contains("ghost:replies"), "{read}");
    std::thread::sleep(Duration::from_millis(500));
    let before = server.commandstats();
    let report = streams_run(
        &server,
        work.path(),
        "2",
        &[
            "--clients",
            "1",
            "--threads-per-client",
            "1",
            "--stream-consumers",
            "1",
            "--key-prefix",
            "rc",
            "--run-id",
            "run-reclaim",
            // Trimming would delete the entry (XAUTOCLAIM then only reports its id as deleted).
            "--stream-max-length",
            "10000000",
        ],
    );
    assert_counts_match(&server, &before, &report);
    assert_eq!(
        counter(&report, "reclaimed"),
        1,
        "{} {}",
        report["counters"],
        report["operations"]["XAUTOCLAIM"]
    );
    assert_eq!(
        counter(&report, "processed"),
        counter(&report, "requests") + 1
    );
    assert_eq!(
        server.cli(&["LRANGE", "ghost:replies", "0", "-1"]).trim(),
        "41"
    );
    assert_eq!(checks(&report)["final_pending"], 0);
    assert_cleaned_up(&server, &report, "rc");
}

/// Every data-plane connection killed mid-run (4 ingress, 2 processors) and the backlog
/// sampler's: all reconnect and the load goes on; every request is still accounted for
/// (answered, timed out, or in flight at the end), failures are connection errors, and
/// entries delivered to a killed processor are re-read and answered after its reconnect.
#[test]
fn killed_connections_reconnect_and_every_request_is_accounted_for() {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let mut child = loadgen(work.path())
        .args(["--host", "127.0.0.1", "--port", &server.port.to_string()])
        .args(["--workload-profile", "stream_request_reply"])
        .args(["--duration", "2.5", "--metrics-interval", "0.5", "--quiet"])
        .args(["--socket-timeout", "1", "--output-file", "r.json"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let killed = server.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
    assert_eq!(killed.trim(), "7", "4 ingress, 2 processors, 1 sampler");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let report = read_json(&work.path().join("r.json"));
    assert_eq!(report["end_reason"], "duration");
    assert_eq!(report["connections"]["reconnects"], 6);
    // Ingress workers and processors alike open outage edges; every window closed again.
    let outages = report["outages"].as_array().unwrap();
    assert!(!outages.is_empty(), "{outages:?}");
    assert!(
        outages.iter().all(|o| !o["open_at_end"].as_bool().unwrap()),
        "{outages:?}"
    );
    let (requests, replies, unanswered) = (
        counter(&report, "requests"),
        counter(&report, "replies"),
        counter(&report, "unanswered"),
    );
    assert_eq!(
        replies + unanswered + checks(&report)["in_flight_at_end"].as_u64().unwrap(),
        requests,
        "{}",
        report["counters"]
    );
    assert_eq!(counter(&report, "mismatched"), 0);
    for (name, op) in report["operations"].as_object().unwrap() {
        let errors = op["errors"].as_u64().unwrap();
        let expected = if name == "REQUEST_REPLY" {
            op["errors_by_type"]["timeout"].as_u64().unwrap()
        } else {
            op["errors_by_type"]["connection_error"].as_u64().unwrap()
        };
        assert_eq!(errors, expected, "{name}: {op}");
    }
    // Load and backlog sampling went on after the kill.
    let after_kill: Vec<&Value> = report["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["elapsed_s"].as_f64().unwrap() > 1.6)
        .collect();
    assert!(after_kill.len() >= 2);
    assert!(
        after_kill
            .iter()
            .all(|i| i["operations"]["REQUEST_REPLY"].as_u64().unwrap() > 100)
    );
    assert!(
        after_kill
            .iter()
            .any(|i| i["gauges"]["stream_pending"].is_u64())
    );
    assert_cleaned_up(&server, &report, "test_key");
}
