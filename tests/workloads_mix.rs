//! The command-mix workloads on a real redis-server: list and hash profiles, every mixable
//! command, templates, prefill, warm-up, expiry and bounded lists, each checked against the
//! server's own INFO commandstats.

mod support;

use serde_json::Value;
use support::{RedisServer, loadgen};

/// [`support::run_checked`] with 2 clients x 2 threads.
fn run_checked(server: &RedisServer, seconds: &str, args: &[&str]) -> Value {
    let mut all = vec!["--clients", "2", "--threads-per-client", "2"];
    all.extend_from_slice(args);
    support::run_checked(server, seconds, &all)
}

fn op<'a>(report: &'a Value, name: &str) -> &'a Value {
    &report["operations"][name]
}

#[test]
fn list_operations_stay_bounded_and_count_exactly() {
    let server = RedisServer::start();
    let report = run_checked(
        &server,
        "2",
        &["--workload-profile", "list_operations", "--key-range", "5"],
    );
    // With a tiny bound the LTRIM after every push must hold every list at or under it.
    let bounded = run_checked(
        &server,
        "2",
        &[
            "--workload-profile",
            "list_operations",
            "--key-range",
            "3",
            "--list-max-length",
            "20",
            "--operations",
            "LPUSH,RPUSH,LRANGE",
        ],
    );
    assert!(op(&bounded, "LTRIM")["total"].as_u64().unwrap() > 0);
    for n in 0..3 {
        let len: u64 = server
            .cli(&["LLEN", &format!("test_key:list:{n}")])
            .trim()
            .parse()
            .unwrap();
        assert!((1..=20).contains(&len), "list {n} has {len} elements");
    }
    let lrange = op(&report, "LRANGE");
    assert!(lrange["hits"].as_u64().unwrap() > 0, "{lrange}");
}

#[test]
fn hash_operations_count_exactly_and_hit() {
    let server = RedisServer::start();
    let report = run_checked(&server, "2", &["--workload-profile", "hash_operations"]);
    let hget = op(&report, "HGET");
    assert!(hget["hits"].as_u64().unwrap() > 0 && hget["misses"].as_u64().is_some());
}

#[test]
fn every_mixable_command_pipelined_counts_exactly() {
    let server = RedisServer::start();
    let all = redis_loadgen::command::Command::all_names().replace(' ', "");
    let report = run_checked(
        &server,
        "2",
        &[
            "--operations",
            &all,
            "--use-pipeline",
            "--pipeline-size",
            "20",
            "--key-range",
            "200",
            "--hash-fields",
            "20",
        ],
    );
    for name in all.split(',') {
        let o = op(&report, name);
        assert!(o["total"].as_u64().unwrap() > 0, "{name} never sent");
        assert_eq!(o["errors"], 0, "{name}: {o}");
    }
}

#[test]
fn prefill_makes_every_read_hit_and_is_reported_apart() {
    let server = RedisServer::start();
    let reads = ["GET", "HGET", "LRANGE", "SISMEMBER", "ZSCORE", "XLEN"];
    let report = run_checked(
        &server,
        "1",
        &[
            "--operations",
            &reads.join(","),
            "--prefill",
            "--key-range",
            "2000",
        ],
    );
    // One write per key and data type: SET for strings, HSET, RPUSH, SADD, ZADD, XADD.
    for write in ["SET", "HSET", "RPUSH", "SADD", "ZADD", "XADD"] {
        assert_eq!(report["setup"]["operations"][write], 2000, "{write}");
    }
    for read in reads {
        let o = op(&report, read);
        assert!(o["total"].as_u64().unwrap() > 0, "{read}");
        assert_eq!(o["misses"], 0, "{read}: {o}");
        assert_eq!(o["hits"], o["total"], "{read}");
    }
}

#[test]
fn warmup_is_excluded_from_results_and_reported() {
    let server = RedisServer::start();
    let report = run_checked(&server, "1", &["--warmup", "1", "--operations", "SET,GET"]);
    let warm = report["warmup"]["total"].as_u64().unwrap();
    assert!(warm > 0, "warm-up sent nothing");
    let duration = report["duration_s"].as_f64().unwrap();
    assert!(
        (0.8..1.5).contains(&duration),
        "measured {duration} s, not warm-up + run"
    );
}

#[test]
fn templates_with_placeholders_count_exactly_and_read_what_they_write() {
    let server = RedisServer::start();
    let report = run_checked(
        &server,
        "1",
        &[
            "--command",
            "SET __key__ v:__data__",
            "--command",
            "GET __key__",
            "--command",
            "HSET h:__key__ __field__ __rand_int__",
            "--command-weight",
            "1",
            "--command-weight",
            "3",
            "--command-weight",
            "1",
            "--key-range",
            "50",
        ],
    );
    assert!(op(&report, "GET")["hits"].as_u64().unwrap() > 0);
    assert!(op(&report, "HSET")["total"].as_u64().unwrap() > 0);
    let value = server.cli(&["GET", "test_key:7"]);
    assert!(value.starts_with("v:"), "{value}");
}

#[test]
fn expiry_range_gives_written_keys_a_ttl() {
    let server = RedisServer::start();
    run_checked(
        &server,
        "1",
        &[
            "--operations",
            "SET",
            "--expiry-range",
            "100-200",
            "--key-range",
            "10",
        ],
    );
    for n in 0..10 {
        let ttl: i64 = server
            .cli(&["TTL", &format!("test_key:{n}")])
            .trim()
            .parse()
            .unwrap();
        assert!((90..=200).contains(&ttl), "key {n} TTL {ttl}");
    }
}

#[test]
fn bad_workload_options_exit_2() {
    let work = tempfile::tempdir().unwrap();
    for args in [
        &["--command", "GET __nope__"][..],
        &[
            "--workload-profile",
            "transaction_test",
            "--transaction-size",
            "0",
        ][..],
        &["--key-distribution", "zipf:-1"][..],
        &["--value-sizes", "32:0"][..],
    ] {
        let out = loadgen(work.path()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}
