//! Faults at run time on a real redis-server: workers survive killed connections and error
//! replies (counted by class, with backoff instead of a tight loop), and a second SIGINT stops
//! waiting for stuck replies while still writing the report.

mod support;

use std::time::{Duration, Instant};

use support::{RedisServer, loadgen, read_json};

#[test]
fn killed_connections_are_counted_and_workers_reconnect() {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let mut child = loadgen(work.path())
        .args(["--port", &server.port.to_string(), "--duration", "3"])
        .args(["--clients", "1", "--threads-per-client", "3", "--quiet"])
        .args([
            "--workload-profile",
            "high_throughput",
            "--output-file",
            "r.json",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let killed = server.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
    assert!(
        killed.trim().parse::<u32>().unwrap() >= 3,
        "killed {killed}"
    );
    assert!(child.wait().unwrap().success());
    let report = read_json(&work.path().join("r.json"));
    assert!(report["connections"]["reconnects"].as_u64().unwrap() >= 3);
    // Load continued after the reconnect: the last interval still has successes.
    let last = report["intervals"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(last["success"].as_u64().unwrap() > 0, "{last}");
    let by_type = &report["errors_by_type"];
    let failed = report["failed_commands_count"].as_u64().unwrap();
    let connection_errors = by_type["connection_error"].as_u64().unwrap();
    assert_eq!(failed, connection_errors, "{by_type}");
}

#[test]
fn error_replies_are_classified_and_backed_off() {
    // maxmemory of one byte: every SET is refused with -OOM, reads still work.
    let server = RedisServer::start_with(&["--maxmemory", "1", "--maxmemory-policy", "noeviction"]);
    let work = tempfile::tempdir().unwrap();
    let before = server.commandstats();
    let out = loadgen(work.path())
        .args([
            "--port",
            &server.port.to_string(),
            "--duration",
            "2",
            "--quiet",
        ])
        .args([
            "--clients",
            "1",
            "--threads-per-client",
            "2",
            "--operations",
            "SET",
        ])
        .args(["--output-file", "r.json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "no command succeeded: run failed"
    );
    let report = read_json(&work.path().join("r.json"));
    let set = &report["operations"]["SET"];
    let errors = set["errors"].as_u64().unwrap();
    assert!(errors > 0);
    assert_eq!(
        set["errors_by_type"]["memory_error"].as_u64().unwrap(),
        errors
    );
    // Without backoff two workers would send tens of thousands of commands in 2 s.
    assert!(errors < 2_000, "{errors} failed commands: no backoff");
    let after = server.commandstats();
    let seen = after["set"].seen() - before.get("set").map_or(0, |c| c.seen());
    assert_eq!(
        set["total"].as_u64().unwrap(),
        seen,
        "refused commands are counted exactly"
    );
}

#[test]
fn second_sigint_stops_waiting_and_still_writes_report() {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let mut child = loadgen(work.path())
        .args([
            "--port",
            &server.port.to_string(),
            "--quiet",
            "--output-file",
            "r.json",
        ])
        .args([
            "--clients",
            "1",
            "--threads-per-client",
            "2",
            "--socket-timeout",
            "30",
        ])
        .spawn()
        .unwrap();
    // Past the first gathering of worker data (every second at most), so there is data to keep.
    std::thread::sleep(Duration::from_millis(1500));
    // Replies stop coming: workers block in reads for up to the 30 s socket timeout.
    assert!(
        server
            .cli(&["CLIENT", "PAUSE", "20000", "ALL"])
            .contains("OK")
    );
    std::thread::sleep(Duration::from_millis(200));
    let pid = child.id() as i32;
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(pid, libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "first SIGINT waits for in-flight replies"
    );
    let t = Instant::now();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "exit took {:?}",
        t.elapsed()
    );
    assert!(
        status.code().is_some(),
        "exited normally, not killed by the signal"
    );
    let report = read_json(&work.path().join("r.json"));
    assert_eq!(report["end_reason"], "aborted");
    assert!(report["successful_commands_count"].as_u64().unwrap() > 0);
}

#[test]
fn acl_denials_are_classified_auth_errors_not_crashes() {
    let server = RedisServer::start();
    // A user that may read but not write (plus what the handshake and INFO need).
    server.cli(&[
        "ACL",
        "SETUSER",
        "reader",
        "on",
        ">reader-pw",
        "~*",
        "+get",
        "+hello",
        "+client",
        "+info",
        "+ping",
    ]);
    let work = tempfile::tempdir().unwrap();
    let out = loadgen(work.path())
        .args(["--port", &server.port.to_string(), "--username", "reader"])
        .args(["--password", "reader-pw", "--duration", "1", "--quiet"])
        .args([
            "--clients",
            "1",
            "--threads-per-client",
            "2",
            "--output-file",
            "r.json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "reads succeeded, so the run did"
    );
    let report = read_json(&work.path().join("r.json"));
    let ops = &report["operations"];
    assert!(ops["GET"]["success"].as_u64().unwrap() > 0);
    let denied = ops["SET"]["errors"].as_u64().unwrap() + ops["DEL"]["errors"].as_u64().unwrap();
    assert!(denied > 0);
    assert_eq!(
        report["errors_by_type"]["auth_error"].as_u64().unwrap(),
        denied
    );
    assert_eq!(report["failed_commands_count"].as_u64().unwrap(), denied);
}

#[test]
fn unresolvable_host_is_one_line_and_quick() {
    let work = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = loadgen(work.path())
        .args([
            "--host",
            "no-such-host.invalid",
            "--connect-timeout",
            "2",
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("no-such-host.invalid"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// One open-loop run of 2 workers at 4 commands/s for 3 s; every client connection is killed
/// at 1.3 s, while the workers sit idle between commands. `health` is the
/// `--health-check-interval`.
fn idle_kill_run(health: &str) -> serde_json::Value {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let mut child = loadgen(work.path())
        .args(["--port", &server.port.to_string(), "--duration", "3"])
        .args(["--clients", "1", "--threads-per-client", "2", "--quiet"])
        .args(["--operations", "SET", "--target-ops-per-second", "4"])
        .args(["--health-check-interval", health, "--output-file", "r.json"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1300));
    let killed = server.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
    assert!(
        killed.trim().parse::<u32>().unwrap() >= 2,
        "killed {killed}"
    );
    assert!(child.wait().unwrap().success());
    read_json(&work.path().join("r.json"))
}

#[test]
fn health_checks_replace_connections_that_died_while_idle() {
    // With checks every 0.1 s of idleness, the dead connections are found by PING and
    // replaced before the next SET: no command fails.
    let report = idle_kill_run("0.1");
    let c = &report["connections"];
    assert!(c["health_checks"].as_u64().unwrap() >= 8, "{c}");
    assert_eq!(c["health_check_failures"].as_u64().unwrap(), 2, "{c}");
    assert_eq!(c["reconnection_count"].as_u64().unwrap(), 2, "{c}");
    assert_eq!(report["failed_commands_count"].as_u64().unwrap(), 0);
    assert!(report["total_commands_count"].as_u64().unwrap() >= 10);
    // Without checks the first SET on each dead connection is what finds it.
    let report = idle_kill_run("0");
    assert_eq!(report["connections"]["health_checks"].as_u64().unwrap(), 0);
    assert_eq!(report["failed_commands_count"].as_u64().unwrap(), 2);
}

/// 400 connections killed at once: each I/O thread logs the first few lost and reconnected
/// workers and then one line a second with how many more there were, so the log stays
/// readable; every event is in those counts.
#[test]
fn mass_disconnects_log_a_few_lines_and_a_count() {
    let server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let child = loadgen(work.path())
        .args(["--port", &server.port.to_string(), "--duration", "3"])
        .args(["--clients", "4", "--threads-per-client", "100"])
        .args(["--max-connections", "100", "--io-threads", "2"])
        .args(["--operations", "GET", "--quiet", "--log-format", "text"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let killed = server.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
    assert!(
        killed.trim().parse::<u32>().unwrap() >= 400,
        "killed {killed}"
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    // Without colour codes (they still reach a pipe; see issue 13).
    let raw = String::from_utf8_lossy(&out.stderr);
    let mut log = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            log.push(c);
        }
    }
    let written = log
        .lines()
        .filter(|l| l.contains(": connection lost; reconnecting") || l.contains(": reconnected "))
        .count();
    let held: usize = log
        .lines()
        .filter(|l| l.contains("more worker connection events"))
        .filter_map(|l| l.split("lines=").nth(1))
        .map(|n| n.trim().parse::<usize>().unwrap())
        .sum();
    // 400 losses and 400 reconnects: at most 8 lines per thread per second were written.
    assert!(written <= 2 * 8 * 3, "{written} lines:\n{log}");
    assert_eq!(written + held, 800, "{log}");
}
