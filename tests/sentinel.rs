//! Sentinel mode on real processes (master, replica, three redis-sentinel): the run finds the
//! master through the sentinels and follows it through `SENTINEL FAILOVER`, a master demoted
//! behind the sentinels' back (-READONLY) and kill -9 of the master, without crashing or losing
//! counts. Sentinels on TLS only and sentinels with an ACL user are found with the matching
//! settings and refused with one clear line without them. Bad `--sentinel-nodes` entries are a
//! config error.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::sentinel::{MASTER_NAME, SentinelSetup};
use support::tls::Certs;
use support::{assert_matches_schema, completed_after, free_port, loadgen, read_json, report_of};

/// A SET-only run of 2 workers through the sentinels of `setup` for `seconds`, writing
/// `r.json` in `work`; `--port` points at nothing, so only discovery can find the master.
fn spawn_sentinel_run(
    setup: &SentinelSetup,
    work: &std::path::Path,
    seconds: &str,
    backoff_cap: &str,
) -> std::process::Child {
    loadgen(work)
        .args(["--port", &free_port().to_string()])
        .args(["--sentinel-nodes", &setup.nodes()])
        .args([
            "--duration",
            seconds,
            "--clients",
            "1",
            "--threads-per-client",
            "2",
        ])
        .args([
            "--operations",
            "SET",
            "--metrics-interval",
            "0.5",
            "--quiet",
        ])
        .args([
            "--retry-backoff-cap",
            backoff_cap,
            "--output-file",
            "r.json",
        ])
        .spawn()
        .unwrap()
}

fn set_calls(server: &support::RedisServer) -> u64 {
    server.commandstats().get("set").map_or(0, |c| c.seen())
}

fn u64_at(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn bad_sentinel_node_is_a_config_error() {
    let work = tempfile::tempdir().unwrap();
    for bad in ["localhost", "h:0", "h:port", "h:70000", ":26379"] {
        let out = loadgen(work.path())
            .args(["--sentinel-nodes", bad, "--duration", "0.1", "--quiet"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(
            err.contains("redis.sentinel_nodes") && err.contains("host:port"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn commands_land_on_the_master_the_sentinels_name() {
    let setup = SentinelSetup::start();
    let before = set_calls(&setup.master);
    let replica_before = setup
        .replica
        .commandstats()
        .get("set")
        .map_or(0, |c| c.calls);
    let work = tempfile::tempdir().unwrap();
    // --port points at nothing: only the sentinels can lead the run to the master.
    let report = report_of(
        work.path(),
        loadgen(work.path())
            .args(["--port", &free_port().to_string()])
            .args(["--sentinel-nodes", &setup.nodes()])
            .args(["--sentinel-master", MASTER_NAME])
            .args([
                "--duration",
                "1",
                "--clients",
                "1",
                "--threads-per-client",
                "2",
            ])
            .args(["--operations", "SET", "--quiet", "--output-file", "r.json"]),
        "run through the sentinels",
    );
    assert_matches_schema(&report);
    let sets = u64_at(&report["operations"]["SET"], "success");
    assert!(sets > 0);
    assert_eq!(u64_at(&report, "failed_commands_count"), 0);
    assert_eq!(
        set_calls(&setup.master) - before,
        sets,
        "the master ran every SET"
    );
    // The replica only got them through replication (its own clients sent none).
    let replica_after = setup
        .replica
        .commandstats()
        .get("set")
        .map_or(0, |c| c.calls);
    assert!(replica_after - replica_before <= sets);
}

#[test]
fn a_failover_mid_run_is_followed() {
    let setup = SentinelSetup::start();
    let work = tempfile::tempdir().unwrap();
    let mut child = spawn_sentinel_run(&setup, work.path(), "5", "0.25");
    std::thread::sleep(Duration::from_millis(1500));
    let failover_at = Instant::now();
    // Wait for the promotion as the sentinels see it, then note the new master's SETs so far
    // (replicated ones included).
    fail_over(&setup);
    let promoted_after = failover_at.elapsed();
    let promoted_sets = set_calls(&setup.replica);
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status}");
    let report = read_json(&work.path().join("r.json"));
    assert_matches_schema(&report);

    let sets_after = set_calls(&setup.replica) - promoted_sets;
    assert!(
        sets_after > 0,
        "the new master ran SETs after the failover: {} {} {}",
        report["errors_by_type"],
        report["connections"],
        report["intervals"]
    );
    let op = &report["operations"]["SET"];
    assert_eq!(
        u64_at(op, "total"),
        u64_at(op, "success") + u64_at(op, "errors")
    );
    // Every failure is a lost connection or a READONLY answer from the demoted master.
    let errors = report["errors_by_type"].as_object().unwrap();
    let known: u64 = ["connection_error", "cluster_error", "timeout"]
        .iter()
        .map(|k| errors.get(*k).and_then(Value::as_u64).unwrap_or(0))
        .sum();
    assert_eq!(
        known,
        u64_at(&report, "failed_commands_count"),
        "{errors:?}"
    );
    let last = report["intervals"].as_array().unwrap().last().unwrap();
    assert!(u64_at(last, "success") > 0, "load resumed: {last}");
    // The last interval's SETs all went to the new master.
    assert!(
        sets_after >= u64_at(last, "success"),
        "new master ran {sets_after} SETs since the promotion, last interval alone had {last}"
    );

    let c = &report["connections"];
    println!(
        "failover: sentinels named the new master after {:.3} s; new master ran {sets_after} \
         SETs after that; errors {errors:?}; connections {c}; outages {}",
        promoted_after.as_secs_f64(),
        report["outages"]
    );
    assert!(u64_at(c, "drops") >= 1, "{c}");
}

/// A master demoted behind the sentinels' back (REPLICAOF sent directly, so the sentinels
/// still name it for now): its -READONLY replies are counted as cluster_error, the worker drops
/// the connection, and reconnecting refuses the address because ROLE is not `master`.
#[test]
fn a_readonly_master_is_dropped_and_not_reconnected_to() {
    let setup = SentinelSetup::start();
    let work = tempfile::tempdir().unwrap();
    let mut child = spawn_sentinel_run(&setup, work.path(), "2", "0.1");
    std::thread::sleep(Duration::from_millis(700));
    setup.replica.cli(&["REPLICAOF", "NO", "ONE"]);
    setup
        .master
        .cli(&["REPLICAOF", "127.0.0.1", &setup.replica.port.to_string()]);
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status}");
    let report = read_json(&work.path().join("r.json"));
    assert_matches_schema(&report);
    let op = &report["operations"]["SET"];
    assert_eq!(
        u64_at(op, "total"),
        u64_at(op, "success") + u64_at(op, "errors")
    );
    let cluster = u64_at(&report["errors_by_type"], "cluster_error");
    assert!(
        cluster > 0,
        "READONLY replies counted: {}",
        report["errors_by_type"]
    );
    // One READONLY per worker (batches of one command), then the connection is gone.
    assert_eq!(cluster, 2, "{}", report["errors_by_type"]);
    let c = &report["connections"];
    assert_eq!(u64_at(c, "drops"), 2, "{c}");
    let named = setup.master_port(0);
    println!(
        "readonly: demoted 0.7 s into the run; errors {}; connections {c}; sentinel names {named:?} \
         (old master {})",
        report["errors_by_type"], setup.master.port
    );
    if named == Some(setup.master.port) {
        // The sentinels still name the demoted master: ROLE refused every reconnect.
        assert!(u64_at(c, "connect_failures") > 0, "{c}");
        assert_eq!(u64_at(c, "reconnection_count"), 0, "{c}");
    }
}

/// kill -9 of the master: connections fail and reconnects are refused until the sentinels
/// promote the replica; then the run carries on there. One outage window, counted errors.
#[test]
fn a_killed_master_is_replaced_after_one_outage() {
    let mut setup = SentinelSetup::start();
    let work = tempfile::tempdir().unwrap();
    let mut child = spawn_sentinel_run(&setup, work.path(), "6", "0.25");
    std::thread::sleep(Duration::from_millis(1500));
    let killed_at = Instant::now();
    setup.master.kill9();
    let until = Instant::now() + Duration::from_secs(4);
    while setup.master_port(0) != Some(setup.replica.port) {
        assert!(Instant::now() < until, "no promotion within 4 s of kill -9");
        std::thread::sleep(Duration::from_millis(20));
    }
    let promoted_after = killed_at.elapsed();
    let promoted_sets = set_calls(&setup.replica);
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status}");
    let report = read_json(&work.path().join("r.json"));
    assert_matches_schema(&report);
    let sets_after = set_calls(&setup.replica) - promoted_sets;
    let last = report["intervals"].as_array().unwrap().last().unwrap();
    assert!(u64_at(last, "success") > 0, "load resumed: {last}");
    assert!(sets_after >= u64_at(last, "success"), "{sets_after} {last}");
    let failed = u64_at(&report, "failed_commands_count");
    assert!(failed >= 2, "each worker lost its command in flight");
    let outages = report["outages"].as_array().unwrap();
    assert_eq!(outages.len(), 1, "{outages:#?}");
    let o = &outages[0];
    let measured = o["duration_s"].as_f64().unwrap();
    println!(
        "kill -9: sentinels named the new master after {:.3} s; outage {measured:.3} s, time to \
         first success {:.3} s; errors {}; connections {}",
        promoted_after.as_secs_f64(),
        o["time_to_first_success_s"].as_f64().unwrap_or(f64::NAN),
        report["errors_by_type"],
        report["connections"]
    );
    // The outage covers the real gap: from the kill to the promotion, plus at most the
    // backoff cap and the sentinels' answer delay.
    let real = promoted_after.as_secs_f64();
    assert!(
        measured > real - 0.3 && measured < real + 1.0,
        "outage {measured} s vs promotion after {real} s"
    );
}

/// A 1 s SET run of 2 workers through the sentinels of `setup` with `extra` arguments, writing
/// `r.json` in `work`; `--port` points at nothing, so only discovery can find the master.
fn short_run(
    setup: &SentinelSetup,
    work: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    spawn_short_run(setup, work, extra)
        .wait_with_output()
        .unwrap()
}

/// [`short_run`], checking mid-run that the run's watcher subscribed to `+switch-master` on
/// the first sentinel (so failovers are announced over TLS / with the ACL user too).
fn short_run_subscribed(
    setup: &SentinelSetup,
    work: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let child = spawn_short_run(setup, work, extra);
    std::thread::sleep(Duration::from_millis(600));
    let clients = setup.cli(0, &["CLIENT", "LIST"]);
    let out = child.wait_with_output().unwrap();
    assert!(
        clients.lines().any(|c| c.contains(" sub=1 ")),
        "no subscriber on the first sentinel: {clients}"
    );
    out
}

fn spawn_short_run(
    setup: &SentinelSetup,
    work: &std::path::Path,
    extra: &[&str],
) -> std::process::Child {
    loadgen(work)
        .args(["--port", &free_port().to_string()])
        .args(["--sentinel-nodes", &setup.nodes()])
        .args([
            "--duration",
            "1",
            "--clients",
            "1",
            "--threads-per-client",
            "2",
        ])
        .args(["--operations", "SET", "--quiet", "--output-file", "r.json"])
        .args(["--connect-timeout", "1"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The run succeeded and the master (as its own INFO commandstats count them) ran exactly the
/// SETs the report counts, without a failure.
fn assert_found_master(
    setup: &SentinelSetup,
    work: &std::path::Path,
    out: &std::process::Output,
    before: u64,
) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = read_json(&work.join("r.json"));
    assert_matches_schema(&report);
    let sets = u64_at(&report["operations"]["SET"], "success");
    assert!(sets > 0);
    assert_eq!(u64_at(&report, "failed_commands_count"), 0);
    assert_eq!(
        set_calls(&setup.master) - before,
        sets,
        "the master ran every SET"
    );
}

/// A run refused at connect time: exit 1 within a few seconds, one line on stderr that
/// contains every one of `needles`.
fn assert_refused(out: &std::process::Output, took: Duration, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line: {err}");
    for needle in needles {
        assert!(lines[0].contains(needle), "{needle:?} in {err}");
    }
    assert!(took < Duration::from_secs(5), "refused after {took:?}");
    println!("refused in {:.2} s: {}", took.as_secs_f64(), lines[0]);
}

#[test]
fn sentinels_on_tls_only_are_asked_over_tls() {
    let certs = Certs::make();
    let setup = SentinelSetup::start_tls(&certs);
    let work = tempfile::tempdir().unwrap();
    let ca = certs.arg("ca.crt");
    // --sentinel-tls is not given: it follows --tls.
    let before = set_calls(&setup.master);
    let out = short_run_subscribed(&setup, work.path(), &["--tls", "--tls-ca-file", &ca]);
    assert_found_master(&setup, work.path(), &out, before);

    // Plain text to a TLS-only sentinel: the sentinel hangs up; the error says so.
    let started = Instant::now();
    let out = short_run(
        &setup,
        work.path(),
        &["--tls", "--tls-ca-file", &ca, "--sentinel-tls=false"],
    );
    assert_refused(&out, started.elapsed(), &["sentinel", "--sentinel-tls"]);
}

#[test]
fn sentinels_with_an_acl_user_take_auth_with_the_user_name() {
    let setup = SentinelSetup::start_acl("app", "secret");
    let work = tempfile::tempdir().unwrap();
    let before = set_calls(&setup.master);
    let out = short_run_subscribed(
        &setup,
        work.path(),
        &[
            "--sentinel-username",
            "app",
            "--sentinel-password",
            "secret",
        ],
    );
    assert_found_master(&setup, work.path(), &out, before);

    // A wrong user name, and the password alone (that is the default user's AUTH).
    for extra in [
        &[
            "--sentinel-username",
            "nobody",
            "--sentinel-password",
            "secret",
        ][..],
        &["--sentinel-password", "secret"][..],
    ] {
        let started = Instant::now();
        let out = short_run(&setup, work.path(), extra);
        assert_refused(&out, started.elapsed(), &["AUTH", "WRONGPASS"]);
    }
}

#[test]
fn sentinel_tls_and_user_name_need_their_companions() {
    let work = tempfile::tempdir().unwrap();
    for (args, needles) in [
        (
            &["--sentinel-tls"][..],
            &["redis.sentinel_tls", "redis.tls"][..],
        ),
        (
            &["--sentinel-username", "app"][..],
            &["redis.sentinel_username", "redis.sentinel_password"][..],
        ),
    ] {
        let out = loadgen(work.path())
            .args([
                "--sentinel-nodes",
                "127.0.0.1:1",
                "--duration",
                "0.1",
                "--quiet",
            ])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        for needle in needles {
            assert!(err.contains(needle), "{args:?}: {needle} in {err}");
        }
    }
}

/// `SENTINEL FAILOVER`, then waits (at most 3 s) until the sentinels name the replica.
fn fail_over(setup: &SentinelSetup) {
    let answer = setup.cli(0, &["SENTINEL", "FAILOVER", MASTER_NAME]);
    assert!(answer.contains("OK"), "SENTINEL FAILOVER: {answer}");
    let until = Instant::now() + Duration::from_secs(3);
    while setup.master_port(0) != Some(setup.replica.port) {
        assert!(Instant::now() < until, "no failover within 3 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A 5 s run with `args` through the sentinels of a new setup, failed over 1.5 s in (the
/// promotion awaited); returns the setup, the work dir (holding `r.json` at the end) and the
/// running child.
fn failover_run(args: &[&str]) -> (SentinelSetup, tempfile::TempDir, std::process::Child) {
    let setup = SentinelSetup::start();
    let work = tempfile::tempdir().unwrap();
    let child = loadgen(work.path())
        .args(["--port", &free_port().to_string()])
        .args(["--sentinel-nodes", &setup.nodes()])
        .args(args)
        .args(["--duration", "5", "--metrics-interval", "0.5", "--quiet"])
        .args(["--retry-backoff-cap", "0.25", "--output-file", "r.json"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    fail_over(&setup);
    (setup, work, child)
}

/// Waits (at most 2 s) until `server`'s `list` (a CLIENT LIST) shows `n` of this program's
/// connections whose line also holds `marker`.
fn wait_for_clients(server: &support::RedisServer, list: &[&str], marker: &str, n: usize) {
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        let clients = server.cli(list);
        let found = clients
            .lines()
            .filter(|l| l.contains("name=redis-loadgen") && l.contains(marker))
            .count();
        if found == n {
            return;
        }
        assert!(
            Instant::now() < until,
            "{found} of {n} clients ({marker}) on the new master:\n{clients}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pub/sub through a failover: subscribers and publishers alike follow the master the
/// sentinels name (the subscribers are found subscribed on the new master), and what the
/// subscribers missed is reported: per subscriber, received + lost = published.
#[test]
fn pubsub_workers_follow_a_failover_and_report_their_loss() {
    let (setup, work, mut child) = failover_run(&[
        "--workload-profile",
        "pubsub_test",
        "--publishers",
        "2",
        "--subscribers",
        "2",
        "--target-ops-per-second",
        "2000",
    ]);
    // Soon after the promotion both subscribers listen on the new master.
    wait_for_clients(&setup.replica, &["CLIENT", "LIST", "TYPE", "pubsub"], "", 2);
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status}");
    let report = read_json(&work.path().join("r.json"));
    assert_matches_schema(&report);
    let counter = |name: &str| u64_at(&report["counters"], name);
    let (published, received, lost) = (counter("published"), counter("received"), counter("lost"));
    assert!(published > 2000, "{}", report["counters"]);
    assert_eq!(
        received + lost,
        2 * published,
        "every message each subscriber missed is counted lost: {}",
        report["counters"]
    );
    assert_eq!(counter("duplicated"), 0, "{}", report["counters"]);
    // Publishing went on after the failover.
    let last = report["intervals"].as_array().unwrap().last().unwrap();
    assert!(u64_at(last, "success") > 0, "load resumed: {last}");
}

/// Stream request/reply through a failover: the ingress workers and the processors follow
/// the master the sentinels name (the processors are found reading the group on the new
/// master), requests sent after it are answered there, and every request is accounted for.
#[test]
fn stream_workers_follow_a_failover() {
    let (setup, work, mut child) = failover_run(&[
        "--workload-profile",
        "stream_request_reply",
        "--clients",
        "1",
        "--threads-per-client",
        "2",
        "--stream-consumers",
        "2",
    ]);
    // Soon after the promotion both processors read the group on the new master.
    wait_for_clients(&setup.replica, &["CLIENT", "LIST"], "cmd=xreadgroup", 2);
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status}");
    let report = read_json(&work.path().join("r.json"));
    assert_matches_schema(&report);
    let counter = |name: &str| u64_at(&report["counters"], name);
    let in_flight = u64_at(
        &report["checks"]["stream_request_reply"],
        "in_flight_at_end",
    );
    assert_eq!(
        counter("replies") + counter("unanswered") + in_flight,
        counter("requests"),
        "{}",
        report["counters"]
    );
    assert_eq!(counter("mismatched"), 0);
    // Requests were answered after the failover.
    let late = completed_after(&report, "REQUEST_REPLY", 4.0);
    assert!(late > 0, "{}", report["intervals"]);
}
