//! Outages on real redis-server processes: a crashed and restarted server, a network
//! black-hole (a proxy that stops forwarding without closing anything), and a worker that
//! gives up after `--retry-attempts`. Each checks the reported outage window against the real
//! down time, the reconnection figures, and that the load carries on afterwards.
//! The merging rules themselves are unit-tested in `src/metrics/outage.rs`.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{RedisServer, assert_matches_schema, loadgen, read_json};

fn f64_at(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path:?} missing in {v}"))
}

fn u64_at(v: &Value, path: &[&str]) -> u64 {
    f64_at(v, path) as u64
}

/// success + errors == total for every operation, and the last interval has successes.
fn assert_consistent_and_recovered(report: &Value) {
    for (name, op) in report["operations"].as_object().unwrap() {
        assert_eq!(
            op["total"].as_u64().unwrap(),
            op["success"].as_u64().unwrap() + op["errors"].as_u64().unwrap(),
            "{name}"
        );
    }
    let last = report["intervals"].as_array().unwrap().last().unwrap();
    assert!(
        last["success"].as_u64().unwrap() > 0,
        "load resumed: {last}"
    );
}

#[test]
fn killed_and_restarted_server_is_one_outage() {
    let mut server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let workers = 3;
    let mut child = loadgen(work.path())
        .args(["--port", &server.port.to_string(), "--duration", "6"])
        .args([
            "--clients",
            "1",
            "--threads-per-client",
            &workers.to_string(),
        ])
        .args(["--metrics-interval", "0.5", "--quiet"])
        .args(["--retry-backoff-cap", "0.25", "--output-file", "r.json"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let down = Instant::now();
    server.kill9();
    std::thread::sleep(Duration::from_secs(2));
    server.restart();
    let real_down = down.elapsed();
    assert!(child.wait().unwrap().success());
    let after_restart = server.commandstats();
    let report = read_json(&work.path().join("r.json"));
    assert_matches_schema(&report);
    assert_consistent_and_recovered(&report);

    let outages = report["outages"].as_array().unwrap();
    assert_eq!(outages.len(), 1, "{outages:#?}");
    let o = &outages[0];
    let measured = f64_at(o, &["duration_s"]);
    println!(
        "restart: outage measured {measured:.3} s, server really down {:.3} s, \
         time to first success {:.3} s",
        real_down.as_secs_f64(),
        f64_at(o, &["time_to_first_success_s"])
    );
    assert!((1.7..=3.5).contains(&measured), "{o}");
    assert!(!o["open_at_end"].as_bool().unwrap());
    assert_eq!(u64_at(o, &["workers"]), workers);
    // Every failure of the run was a connection error inside this window.
    let failed = report["failed_commands_count"].as_u64().unwrap();
    assert!(
        failed >= workers,
        "each worker lost at least its batch in flight"
    );
    assert_eq!(u64_at(o, &["failed_commands"]), failed, "{o}");
    assert_eq!(
        u64_at(&report, &["errors_by_type", "connection_error"]),
        failed
    );

    let c = &report["connections"];
    assert!(u64_at(&report, &["reconnection_count"]) >= workers, "{c}");
    assert_eq!(u64_at(c, &["drops"]), workers, "{c}");
    assert_eq!(u64_at(c, &["reconnection_count"]), workers, "{c}");
    assert!(
        u64_at(c, &["failed"]) > 0,
        "connects were refused while down: {c}"
    );
    assert_eq!(
        u64_at(c, &["initiated"]),
        u64_at(c, &["succeeded"]) + u64_at(c, &["failed"])
    );
    let avg = f64_at(&report, &["avg_reconnection_duration_ms"]);
    let real_ms = real_down.as_secs_f64() * 1000.0;
    println!("restart: reconnection avg {avg:.0} ms, real down {real_ms:.0} ms");
    assert!(
        avg > real_ms - 300.0 && avg < real_ms + 600.0,
        "reconnection avg {avg} ms vs down {real_ms} ms"
    );
    assert!(f64_at(c, &["reconnection_duration_ms", "max"]) < real_ms + 800.0);

    // The new server started from zero: it saw every command sent after the restart, and
    // never more than the report's successes.
    let ops = report["operations"].as_object().unwrap();
    let mut seen_after = 0;
    for (name, op) in ops {
        let server_count = after_restart
            .get(&name.to_lowercase())
            .map_or(0, |c| c.seen());
        assert!(
            server_count <= op["success"].as_u64().unwrap(),
            "{name}: new server counted {server_count}, report has {} successes",
            op["success"]
        );
        seen_after += server_count;
    }
    // Commands in intervals that began after the outage ended all reached the new server.
    let end_s = f64_at(o, &["end_s"]);
    let later: u64 = report["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| f64_at(i, &["elapsed_s"]) - f64_at(i, &["interval_s"]) >= end_s)
        .map(|i| u64_at(i, &["total"]))
        .sum();
    assert!(later > 0);
    assert!(
        later <= seen_after,
        "{later} sent after the outage, new server saw {seen_after}"
    );
}

/// A TCP proxy that can stop forwarding in both directions without closing any socket: bytes
/// are held, not dropped, and flow again when the switch is turned back.
struct BlackHoleProxy {
    port: u16,
    blocked: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl BlackHoleProxy {
    fn start(target: u16) -> BlackHoleProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let blocked = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (Arc::clone(&blocked), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
                            continue;
                        };
                        for (from, to) in [
                            (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                            (upstream, client),
                        ] {
                            let (b, s) = (Arc::clone(&b), Arc::clone(&s));
                            std::thread::spawn(move || pump(from, to, &b, &s));
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => return,
                }
            }
        });
        BlackHoleProxy {
            port,
            blocked,
            stop,
        }
    }

    fn set_blocked(&self, on: bool) {
        self.blocked.store(on, Ordering::SeqCst);
    }
}

impl Drop for BlackHoleProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to`; while `blocked`, reads nothing and holds what it has.
fn pump(mut from: TcpStream, mut to: TcpStream, blocked: &AtomicBool, stop: &AtomicBool) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(5)));
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        if blocked.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        // Read just before the switch turned: hold the bytes until it turns back.
        while blocked.load(Ordering::SeqCst) && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(1));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[test]
fn black_hole_partition_times_out_and_is_one_outage() {
    let server = RedisServer::start();
    let proxy = BlackHoleProxy::start(server.port);
    let work = tempfile::tempdir().unwrap();
    let workers = 2;
    let mut child = loadgen(work.path())
        .args(["--port", &proxy.port.to_string(), "--duration", "5"])
        .args([
            "--clients",
            "1",
            "--threads-per-client",
            &workers.to_string(),
        ])
        .args(["--socket-timeout", "0.5", "--connect-timeout", "0.5"])
        .args([
            "--metrics-interval",
            "0.5",
            "--quiet",
            "--output-file",
            "r.json",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let down = Instant::now();
    proxy.set_blocked(true);
    std::thread::sleep(Duration::from_millis(1500));
    proxy.set_blocked(false);
    let real_down = down.elapsed();
    assert!(child.wait().unwrap().success());
    let report = read_json(&work.path().join("r.json"));
    assert_matches_schema(&report);
    assert_consistent_and_recovered(&report);

    assert!(
        u64_at(&report, &["errors_by_type", "timeout"]) >= workers,
        "the read timeout fired: {}",
        report["errors_by_type"]
    );
    let outages = report["outages"].as_array().unwrap();
    assert_eq!(outages.len(), 1, "{outages:#?}");
    let o = &outages[0];
    let measured = f64_at(o, &["duration_s"]);
    println!(
        "black-hole: outage measured {measured:.3} s, traffic really held {:.3} s, \
         time to first success {:.3} s",
        real_down.as_secs_f64(),
        f64_at(o, &["time_to_first_success_s"])
    );
    // Starts at the send of the command that then timed out, ends at the first reply after
    // the hold: about the hold itself, plus a reconnect's backoff and handshake.
    assert!((1.3..=2.3).contains(&measured), "{o}");
    assert_eq!(
        u64_at(o, &["failed_commands"]),
        report["failed_commands_count"].as_u64().unwrap()
    );
    assert!(u64_at(&report, &["reconnection_count"]) >= workers);
}

#[test]
fn workers_give_up_after_retry_attempts() {
    let mut server = RedisServer::start();
    let work = tempfile::tempdir().unwrap();
    let child = loadgen(work.path())
        .args(["--port", &server.port.to_string(), "--duration", "3"])
        .args(["--clients", "1", "--threads-per-client", "2"])
        .args(["--retry-attempts", "3", "--retry-backoff-cap", "0.05"])
        .args(["--quiet", "--output-file", "r.json"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    server.kill9();
    let out = child.wait_with_output().unwrap();
    // Successes before the crash: the run counts as done, not failed.
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(log.matches("giving up reconnecting").count(), 2, "{log}");
    let report = read_json(&work.path().join("r.json"));
    assert_matches_schema(&report);
    let c = &report["connections"];
    assert_eq!(u64_at(c, &["gave_up"]), 2, "{c}");
    assert_eq!(u64_at(c, &["failed"]), 6, "3 attempts per worker: {c}");
    assert_eq!(u64_at(c, &["reconnection_count"]), 0, "{c}");
    let outages = report["outages"].as_array().unwrap();
    assert_eq!(outages.len(), 1, "{outages:#?}");
    assert!(outages[0]["open_at_end"].as_bool().unwrap());
    assert!(outages[0]["time_to_first_success_s"].is_null());
}
