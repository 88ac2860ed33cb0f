//! The cold-path key traffic in cluster mode, on a real 3-master cluster of the test's own:
//! `--prefill` writes every key on its slot's master (every read hits, and the nodes' summed
//! counts equal the report's), the increment_check audit reads and deletes the counters per
//! slot (nothing lost or duplicated, with and without hash tags), and the `--verify-writes`
//! read-back finds every acknowledged write. stream_request_reply is refused in cluster mode.

mod support;

use std::collections::BTreeMap;
use std::sync::Mutex;

use redis_loadgen::control::CommandCalls;
use serde_json::{Value, json};
use support::cluster::Cluster;
use support::{assert_counts_match_stats, assert_matches_schema, loadgen, report_of};

/// One cluster at a time: three servers plus the load on two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Three masters, no replicas; the servers stop when it is dropped.
/// Keys on every node of `cluster`.
fn keys(cluster: &Cluster) -> u64 {
    cluster
        .nodes
        .iter()
        .map(|n| n.cli(&["DBSIZE"]).trim().parse::<u64>().unwrap())
        .sum()
}

fn cluster_run(cluster: &Cluster, args: &[&str]) -> Value {
    let work = tempfile::tempdir().unwrap();
    let report = report_of(
        work.path(),
        loadgen(work.path())
            .args(["--cluster", "--cluster-nodes", &cluster.seed()])
            .args([
                "--duration",
                "1.5",
                "--clients",
                "1",
                "--threads-per-client",
                "2",
            ])
            .args([
                "--metrics-interval",
                "0.5",
                "--quiet",
                "--output-file",
                "r.json",
            ])
            .args(args),
        &format!("{args:?}"),
    );
    assert_matches_schema(&report);
    report
}

fn u64_at(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} missing in {v}"))
}

#[test]
fn prefill_writes_every_key_on_its_master() {
    let _serial = serial();
    let cluster = Cluster::start(3, 0);
    let before = cluster.commandstats();
    let report = cluster_run(
        &cluster,
        &["--prefill", "--operations", "GET", "--key-range", "3000"],
    );
    let after = cluster.commandstats();
    // Every key was written where the cluster keeps it: every read hits.
    let total = u64_at(&report, "/operations/GET/total");
    assert!(total > 0);
    assert_eq!(u64_at(&report, "/operations/GET/hits"), total);
    assert_eq!(u64_at(&report, "/operations/GET/errors"), 0);
    assert_eq!(u64_at(&report, "/setup/operations/SET"), 3000);
    assert_eq!(u64_at(&report, "/setup/errors"), 0);
    // The nodes' own counts, summed: the run's GETs, and the setup's SETs (the truth check
    // only looks at the run's commands).
    assert_counts_match_stats(&before, &after, &report);
    let seen = |m: &BTreeMap<String, CommandCalls>| m.get("set").map_or(0, |c| c.seen());
    assert_eq!(seen(&after) - seen(&before), 3000);
    // The keys are spread over the three masters.
    for node in &cluster.nodes {
        let keys: u64 = node.cli(&["DBSIZE"]).trim().parse().unwrap();
        assert!(keys > 0, "node {} holds no key", node.port);
    }
    assert_eq!(keys(&cluster), 3000);
}

#[test]
fn increment_check_audits_counters_on_every_master() {
    let _serial = serial();
    let cluster = Cluster::start(3, 0);
    // Hash tags (the default in cluster mode): counters share slots in groups. Without: one
    // slot per counter, mostly.
    for hash_tag in ["--hash-tag=true", "--hash-tag=false"] {
        let before = cluster.commandstats();
        let report = cluster_run(
            &cluster,
            &[
                "--workload-profile",
                "increment_check",
                "--key-range",
                "2000",
                hash_tag,
            ],
        );
        let after = cluster.commandstats();
        println!("{hash_tag}: {}", report["checks"]);
        let audit = &report["checks"]["increment_check"];
        assert!(audit["error"].is_null(), "{audit}");
        assert_eq!(u64_at(audit, "/lost"), 0);
        assert_eq!(u64_at(audit, "/duplicated"), 0);
        assert_eq!(u64_at(audit, "/keys"), 2000);
        let acknowledged = u64_at(&report, "/operations/INCR/success");
        assert!(acknowledged > 0);
        assert_eq!(u64_at(audit, "/server_total"), acknowledged);
        assert_eq!(u64_at(audit, "/unknown_outcome"), 0);
        assert_counts_match_stats(&before, &after, &report);
        // The audit deleted every counter, on every node.
        assert_eq!(keys(&cluster), 0, "{hash_tag}: counters left behind");
    }
}

#[test]
fn verify_writes_reads_back_from_every_master() {
    let _serial = serial();
    let cluster = Cluster::start(3, 0);
    let before = cluster.commandstats();
    let report = cluster_run(&cluster, &["--verify-writes", "--key-range", "2000"]);
    let after = cluster.commandstats();
    println!("{}", report["checks"]);
    let checks = &report["checks"]["verify_writes"];
    assert!(checks["error"].is_null(), "{checks}");
    let checked = u64_at(checks, "/keys_checked");
    assert!(checked > 0);
    assert_eq!(u64_at(checks, "/lost_writes"), 0);
    assert_eq!(u64_at(checks, "/stale_reads"), 0);
    assert_eq!(
        u64_at(checks, "/acknowledged_writes"),
        u64_at(&report, "/operations/SET/success")
    );
    // The read-back is one GET per key checked, after the run, spread over the masters: added
    // like setup traffic for the truth check.
    let mut truth = report.clone();
    truth["setup"] = json!({ "operations": { "GET": checked } });
    assert_counts_match_stats(&before, &after, &truth);
}

#[test]
fn stream_request_reply_is_refused_in_cluster_mode() {
    let work = tempfile::tempdir().unwrap();
    let out = loadgen(work.path())
        .args(["--cluster", "--cluster-nodes", "127.0.0.1:1"])
        .args([
            "--workload-profile",
            "stream_request_reply",
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("stream_request_reply does not run in cluster mode")
            && stderr.contains("workload.profile")
            && stderr.contains("redis.cluster"),
        "{stderr}"
    );
}
