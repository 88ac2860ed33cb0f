//! Whole runs allocate nothing per message or request: an in-process run of `pubsub_test` and
//! of `stream_request_reply` (every worker, the reporter, subscribers and processors) under a
//! counting global allocator.
//!
//! The allocator counts every thread of this process, so these tests live in their own test
//! binary and take turns (other tests' own allocations would otherwise be counted too).

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::OsString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis_loadgen::config::{CliAction, load_from_args};
use redis_loadgen::{RunSummary, Shutdown};
use support::RedisServer;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// One measured run at a time.
static SERIAL: Mutex<()> = Mutex::new(());

// SAFETY: forwards to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs 2.5 s in-process with `args` and counts allocations in the middle second.
fn allocations_in_one_second(server: &RedisServer, args: &[&str]) -> (u64, RunSummary) {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let port = server.port.to_string();
    let mut all: Vec<OsString> = ["redis-loadgen", "--port", &port, "--duration", "2.5"]
        .iter()
        .map(OsString::from)
        .collect();
    all.extend(
        ["--metrics-interval", "10", "--quiet"]
            .iter()
            .map(OsString::from),
    );
    all.extend(args.iter().map(OsString::from));
    let cwd = tempfile::tempdir().unwrap();
    let Ok(CliAction::Run(cfg)) = load_from_args(all, &|_: &str| None, cwd.path()) else {
        panic!("config did not load");
    };
    let run = std::thread::spawn(move || redis_loadgen::run(Arc::new(cfg), Shutdown::new()));
    std::thread::sleep(Duration::from_millis(800));
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(1000));
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    let summary = run.join().unwrap().expect("run");
    (allocations, summary)
}

/// Publishers and subscribers at full speed, the reporter gathering every second.
#[test]
fn pubsub_allocates_nothing_per_message() {
    let server = RedisServer::start();
    let (allocations, summary) = allocations_in_one_second(
        &server,
        &[
            "--workload-profile",
            "pubsub_test",
            "--publishers",
            "2",
            "--subscribers",
            "2",
            "--pubsub-channels",
            "a,b",
        ],
    );
    let counters = &summary.report.counters;
    let published = counters["published"];
    assert!(published > 1_000, "published {published}");
    assert!(
        allocations < 20,
        "{allocations} allocations in one second of a run that published {published} messages"
    );
    assert_eq!(counters["lost"], 0);
    assert_eq!(counters["received"], counters["expected_deliveries"]);
}

/// Ingress and processors at full speed, processor 0 sampling the backlog once a second on
/// the control plane (that sample is what allocates).
#[test]
fn stream_request_reply_allocates_nothing_per_request() {
    let server = RedisServer::start();
    let (allocations, summary) = allocations_in_one_second(
        &server,
        &[
            "--workload-profile",
            "stream_request_reply",
            "--clients",
            "1",
            "--threads-per-client",
            "2",
            "--stream-consumers",
            "2",
        ],
    );
    let requests = summary.report.counters["requests"];
    assert!(requests > 1_000, "requests {requests}");
    assert_eq!(summary.report.counters["replies"], requests);
    assert!(
        allocations < 100,
        "{allocations} allocations in one second of a run that answered {requests} requests"
    );
}
