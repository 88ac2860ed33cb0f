//! Open-loop pacing and coordinated omission on a real redis-server: the achieved rate follows
//! the target, and a server stall shows up in latency measured from the intended start, while
//! service time (from the actual send) does not hide it by thinning the load.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use support::{RedisServer, loadgen, read_json};

/// Pacing is timing: these tests take turns rather than compete for the two cores.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn stall_shows_in_latency_from_intended_start() {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let mut child = loadgen(work.path())
        .args([
            "--port",
            &server.port.to_string(),
            "--operations",
            "GET,SET",
        ])
        .args(["--target-ops-per-second", "1000", "--duration", "3"])
        .args(["--clients", "1", "--threads-per-client", "2", "--quiet"])
        .args(["--metrics-interval", "1", "--output-file", "r.json"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        server
            .cli(&["CLIENT", "PAUSE", "500", "ALL"])
            .contains("OK")
    );
    assert!(child.wait().unwrap().success());
    let report = read_json(&work.path().join("r.json"));

    let rate = &report["rate"];
    let achieved = rate["achieved_ops_per_second"].as_f64().unwrap();
    assert!((900.0..1100.0).contains(&achieved), "achieved {achieved}");
    assert_eq!(report["failed_commands_count"], 0);

    // ~500 commands were due during the 500 ms pause; measured from their intended start they
    // waited up to 500 ms, so the p99 is well above 250 ms. Timed from the send (service time),
    // only the two batches in flight when the pause began saw it.
    let get = &report["operations"]["GET"];
    let p99 = get["latency_ms"]["p99"].as_f64().unwrap();
    let service_p99 = get["service_time_ms"]["p99"].as_f64().unwrap();
    assert!(p99 > 250.0, "latency p99 {p99} ms hides the stall");
    assert!(
        service_p99 < p99 / 2.0,
        "service p99 {service_p99} vs latency p99 {p99}"
    );
    let lag_max = rate["schedule_lag_ms"]["max"].as_f64().unwrap();
    assert!(lag_max > 250.0, "schedule lag max {lag_max} ms");
}

/// The target rate paces the workers that send (publishers, ingress workers) in units of
/// work (messages, requests), not every worker or every command.
#[test]
fn target_rate_paces_units_of_the_sending_workers() {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let server = RedisServer::start();
    for (profile, extra, unit_op) in [
        (
            "pubsub_test",
            &["--publishers", "2", "--subscribers", "2"][..],
            "PUBLISH",
        ),
        (
            "stream_request_reply",
            &["--threads-per-client", "2"][..],
            "XADD",
        ),
    ] {
        let work = tempfile::tempdir().unwrap();
        let status = loadgen(work.path())
            .args([
                "--port",
                &server.port.to_string(),
                "--workload-profile",
                profile,
            ])
            .args([
                "--target-ops-per-second",
                "1000",
                "--duration",
                "2",
                "--quiet",
            ])
            .args(["--output-file", "r.json"])
            .args(extra)
            .status()
            .unwrap();
        assert!(status.success(), "{profile}");
        let report = read_json(&work.path().join("r.json"));
        let achieved = report["rate"]["achieved_ops_per_second"].as_f64().unwrap();
        let unit_rate = report["operations"][unit_op]["ops_per_second"]
            .as_f64()
            .unwrap();
        assert!(
            (900.0..1100.0).contains(&achieved),
            "{profile}: achieved {achieved}"
        );
        assert!(
            (900.0..1100.0).contains(&unit_rate),
            "{profile}: {unit_op} {unit_rate}/s"
        );
    }
}
