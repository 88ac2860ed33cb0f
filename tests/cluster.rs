//! Cluster mode on real processes (3 masters + 3 replicas, `redis-cli --cluster create`):
//! commands reach every master by slot and the nodes' own counts add up to the report;
//! transactions stay in one slot; reads go to replicas when asked; CLUSTER FAILOVER costs only
//! the redirected commands; kill -9 of a master shows one outage as long as the promotion and
//! traffic resumes on the new master. Misuse of --cluster is one clear error line.

mod support;

use std::process::Output;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cluster::Cluster;
use support::{RedisServer, assert_counts_match_stats, assert_matches_schema, loadgen, read_json};

/// One cluster test at a time: each runs six servers plus the load on two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A cluster run of `seconds` through `cluster`'s first node, 1 client x 4 workers.
fn cluster_run(
    cluster: &Cluster,
    work: &std::path::Path,
    seconds: &str,
    args: &[&str],
) -> std::process::Child {
    loadgen(work)
        .args(["--cluster", "--cluster-nodes", &cluster.seed()])
        .args([
            "--duration",
            seconds,
            "--clients",
            "1",
            "--threads-per-client",
            "4",
        ])
        .args([
            "--metrics-interval",
            "0.5",
            "--quiet",
            "--output-file",
            "r.json",
        ])
        .args(["--retry-backoff-cap", "0.25"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run redis-loadgen")
}

fn finish(child: std::process::Child, work: &std::path::Path) -> (Output, Value) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = read_json(&work.join("r.json"));
    assert_matches_schema(&report);
    (out, report)
}

fn errors_of(report: &Value, class: &str) -> u64 {
    report["operations"]
        .as_object()
        .unwrap()
        .values()
        .map(|op| op["errors_by_type"][class].as_u64().unwrap_or(0))
        .sum()
}

fn total_errors(report: &Value) -> u64 {
    report["operations"]
        .as_object()
        .unwrap()
        .values()
        .map(|op| op["errors"].as_u64().unwrap())
        .sum()
}

fn calls(
    stats: &std::collections::BTreeMap<String, redis_loadgen::control::CommandCalls>,
    name: &str,
) -> u64 {
    stats.get(name).map_or(0, |c| c.seen())
}

#[test]
fn commands_reach_every_master_and_the_nodes_counts_add_up() {
    let _g = serial();
    let cluster = Cluster::start_with_node_timeout(3, 1, "5000");
    let masters = cluster.master_ports(0);
    assert_eq!(masters.len(), 3);

    // Replicas count the writes replicated to them, so the truth for runs without
    // --read-from-replicas is the masters' counts.
    // Pipelined batches are split per node and their replies put back in order.
    let work = tempfile::tempdir().unwrap();
    let before = cluster.commandstats_of(&masters);
    let run = cluster_run(
        &cluster,
        work.path(),
        "2",
        &["--use-pipeline", "--pipeline-size", "10"],
    );
    let (_, report) = finish(run, work.path());
    assert_counts_match_stats(&before, &cluster.commandstats_of(&masters), &report);
    assert_eq!(total_errors(&report), 0, "{}", report["operations"]);
    for &m in &masters {
        let keys: u64 = cluster.nodes[cluster.index_of(m)]
            .cli(&["DBSIZE"])
            .trim()
            .parse()
            .unwrap();
        assert!(keys > 0, "master {m} got no keys");
    }

    // Transactions: hash tags are on by default in cluster mode, so no CROSSSLOT and no
    // aborted transaction.
    let work = tempfile::tempdir().unwrap();
    let before = cluster.commandstats_of(&masters);
    let run = cluster_run(
        &cluster,
        work.path(),
        "1.5",
        &["--workload-profile", "transaction_test"],
    );
    let (_, report) = finish(run, work.path());
    assert_counts_match_stats(&before, &cluster.commandstats_of(&masters), &report);
    assert_eq!(total_errors(&report), 0, "{}", report["operations"]);
    assert!(report["operations"]["EXEC"]["success"].as_u64().unwrap() > 0);

    // --read-from-replicas: GETs go to the replicas, not to the masters.
    let replicas: Vec<u16> = masters
        .iter()
        .flat_map(|&m| cluster.replicas_of(m))
        .collect();
    assert_eq!(replicas.len(), 3);
    let work = tempfile::tempdir().unwrap();
    let (m0, r0) = (
        cluster.commandstats_of(&masters),
        cluster.commandstats_of(&replicas),
    );
    let run = cluster_run(
        &cluster,
        work.path(),
        "1.5",
        &["--operations", "GET", "--read-from-replicas"],
    );
    let (_, report) = finish(run, work.path());
    let (m1, r1) = (
        cluster.commandstats_of(&masters),
        cluster.commandstats_of(&replicas),
    );
    let gets = report["operations"]["GET"]["total"].as_u64().unwrap();
    assert!(gets > 0);
    assert_eq!(
        calls(&r1, "get") - calls(&r0, "get"),
        gets,
        "every GET went to a replica"
    );
    assert_eq!(calls(&m1, "get") - calls(&m0, "get"), 0);
    for &r in &replicas {
        let got = cluster.nodes[cluster.index_of(r)].commandstats();
        assert!(calls(&got, "get") > 0, "replica {r} served no GET");
    }

    // CLUSTER FAILOVER mid-run: the only failed commands are the redirected ones (MOVED,
    // followed), no outage, and the nodes' counts still add up (see assert_failover_counts).
    let work = tempfile::tempdir().unwrap();
    let before = cluster.commandstats();
    let run = cluster_run(
        &cluster,
        work.path(),
        "3",
        &["--operations", "SET,GET", "--log-level", "debug"],
    );
    std::thread::sleep(Duration::from_millis(1500));
    let victim = masters[1];
    let promoted = cluster.replicas_of(victim)[0];
    let answer = cluster.nodes[cluster.index_of(promoted)].cli(&["CLUSTER", "FAILOVER"]);
    assert!(answer.contains("OK"), "{answer}");
    let (out, report) = finish(run, work.path());
    let cluster_replies: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("cluster error reply") || l.contains("slot map"))
        .map(String::from)
        .collect();
    println!("{}", cluster_replies.join("\n"));
    assert_failover_counts(&cluster, &before, &report);
    let redirects = report["connections"]["redirects"].as_u64().unwrap();
    println!(
        "CLUSTER FAILOVER: {redirects} redirects, errors {}",
        total_errors(&report)
    );
    assert!(redirects > 0, "the failover was not noticed");
    assert!(redirects <= 4 * 10, "too many redirects: {redirects}");
    assert_eq!(total_errors(&report), redirects, "{}", report["operations"]);
    assert_eq!(errors_of(&report, "cluster_error"), redirects);
    assert_eq!(
        report["outages"].as_array().unwrap().len(),
        0,
        "{}",
        report["outages"]
    );
    let after = cluster.nodes[cluster.index_of(promoted)].commandstats();
    assert!(calls(&after, "set") > 0, "no SET reached the promoted node");
}

/// The truth check across a failover, where a node's counts mix its own commands (as master)
/// and replicated ones (as replica): GETs are never replicated, so the nodes' sum equals the
/// report; every acknowledged SET is counted once by the master that ran it and once by its
/// one replica, and MOVED replies are rejected calls on the node that sent them.
fn assert_failover_counts(
    cluster: &Cluster,
    before: &std::collections::BTreeMap<String, redis_loadgen::control::CommandCalls>,
    report: &Value,
) {
    let get = &report["operations"]["GET"];
    let set = &report["operations"]["SET"];
    let delta =
        |after: &std::collections::BTreeMap<String, redis_loadgen::control::CommandCalls>,
         name: &str,
         f: fn(&redis_loadgen::control::CommandCalls) -> u64| {
            after.get(name).map_or(0, f) - before.get(name).map_or(0, f)
        };
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        let after = cluster.commandstats();
        let gets = delta(&after, "get", |c| c.seen());
        let set_calls = delta(&after, "set", |c| c.calls);
        let set_rejected = delta(&after, "set", |c| c.rejected_calls);
        let expected = (
            get["total"].as_u64().unwrap(),
            2 * set["success"].as_u64().unwrap(),
            set["errors_by_type"]["cluster_error"].as_u64().unwrap(),
        );
        if (gets, set_calls, set_rejected) == expected {
            return;
        }
        // Replication may still be catching up.
        assert!(
            Instant::now() < until,
            "nodes counted (GET, SET calls, SET rejected) = {:?}, report implies {expected:?}",
            (gets, set_calls, set_rejected)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_killed_master_is_one_outage_as_long_as_the_promotion() {
    let _g = serial();
    let mut cluster = Cluster::start(3, 1);
    let work = tempfile::tempdir().unwrap();
    let run = cluster_run(&cluster, work.path(), "8", &["--operations", "SET,GET"]);
    std::thread::sleep(Duration::from_secs(2));
    let victim = cluster.master_ports(0)[1];
    let replica = cluster.replicas_of(victim)[0];
    let replica_index = cluster.index_of(replica);
    let victim_index = cluster.index_of(victim);
    let killed = Instant::now();
    cluster.nodes[victim_index].kill9();
    // The promotion: the replica calls itself master and the cluster state is ok again.
    let promotion = loop {
        let role = cluster.nodes[replica_index].cli(&["ROLE"]);
        let state = cluster.nodes[replica_index].cli(&["CLUSTER", "INFO"]);
        if role.starts_with("master") && state.contains("cluster_state:ok") {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < Duration::from_secs(5), "no promotion");
        std::thread::sleep(Duration::from_millis(10));
    };
    let (_, report) = finish(run, work.path());
    let outages = report["outages"].as_array().unwrap();
    assert_eq!(outages.len(), 1, "{outages:?}");
    let o = &outages[0];
    let duration = o["duration_s"].as_f64().unwrap();
    println!(
        "kill -9 of a master: promoted after {:.3}s; outage {duration:.3}s, time to first success {:.3}s, {} failed commands",
        promotion.as_secs_f64(),
        o["time_to_first_success_s"].as_f64().unwrap(),
        o["failed_commands"]
    );
    assert!(
        (duration - promotion.as_secs_f64()).abs() < 0.5,
        "outage {duration:.3}s vs promotion {:.3}s",
        promotion.as_secs_f64()
    );
    assert!(!o["open_at_end"].as_bool().unwrap());
    // Every failure is of an outage class; the JSON is complete.
    let outage_classes = errors_of(&report, "connection_error")
        + errors_of(&report, "cluster_error")
        + errors_of(&report, "timeout");
    assert_eq!(total_errors(&report), outage_classes);
    assert!(report["connections"]["not_sent"].as_u64().unwrap() > 0);
    // Traffic resumed on the new master: the last second has no errors, and it served SETs.
    let intervals = report["intervals"].as_array().unwrap();
    for i in &intervals[intervals.len() - 2..] {
        assert!(i["total"].as_u64().unwrap() > 0, "{i}");
        assert_eq!(i["errors"].as_u64().unwrap(), 0, "{i}");
    }
    let served = cluster.nodes[replica_index].commandstats();
    assert!(
        calls(&served, "set") > 0,
        "the promoted replica served no SET"
    );
}

fn one_line_failure(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains(needle), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn cluster_misuse_is_one_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let plain = RedisServer::start();
    let t = Instant::now();
    let out = loadgen(work.path())
        .args([
            "--cluster",
            "--port",
            &plain.port.to_string(),
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    one_line_failure(&out, 1, "cluster support disabled");
    assert!(t.elapsed() < Duration::from_secs(5));

    // A cluster node without --cluster.
    let node = RedisServer::start_with(&["--cluster-enabled", "yes"]);
    let out = loadgen(work.path())
        .args(["--port", &node.port.to_string(), "--duration", "1"])
        .output()
        .unwrap();
    one_line_failure(&out, 1, "add --cluster");

    // Conflicting settings are refused before any connection.
    for (args, needle) in [
        (&["--cluster", "--db", "1"][..], "only database 0"),
        (
            &["--cluster", "--sentinel-nodes", "127.0.0.1:1"][..],
            "exclude each other",
        ),
        (&["--read-from-replicas"][..], "needs cluster mode"),
        (
            &["--cluster", "--cluster-nodes", "127.0.0.1:0"][..],
            "redis.cluster_nodes",
        ),
    ] {
        let out = loadgen(work.path())
            .args(args)
            .args(["--duration", "1"])
            .output()
            .unwrap();
        one_line_failure(&out, 2, needle);
    }
}

/// Sends a signal to a process with kill(1).
fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn writes_a_dead_master_acknowledged_but_never_replicated_are_reported_lost() {
    let _g = serial();
    let mut cluster = Cluster::start(3, 1);
    let work = tempfile::tempdir().unwrap();
    let run = cluster_run(
        &cluster,
        work.path(),
        "7",
        &[
            "--operations",
            "SET,GET",
            "--operation-weights",
            "SET:4,GET:1",
            "--verify-writes",
            "--key-range",
            "20000",
            "--value-size",
            "8000",
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    let victim = cluster.master_ports(0)[1];
    let replica = cluster.replicas_of(victim)[0];
    let replica_pid = cluster.nodes[cluster.index_of(replica)].pid();
    // The replica stops taking the replication stream; its master goes on acknowledging
    // writes for a second, then dies. The replica wakes up and is promoted without them.
    // (Large values: the kernel's socket buffers would otherwise hold a second of small
    // writes and hand them to the replica when it wakes up.)
    signal(replica_pid, "-STOP");
    std::thread::sleep(Duration::from_millis(1000));
    let victim_index = cluster.index_of(victim);
    cluster.nodes[victim_index].kill9();
    signal(replica_pid, "-CONT");
    let (_, report) = finish(run, work.path());
    let v = &report["checks"]["verify_writes"];
    println!("writes lost in the failover: {v}");
    assert!(v["lost_writes"].as_u64().unwrap() > 0, "{v}");
    assert!(v["acknowledged_writes"].as_u64().unwrap() > v["lost_writes"].as_u64().unwrap());
    assert_eq!(
        report["outages"].as_array().unwrap().len(),
        1,
        "{}",
        report["outages"]
    );
}
