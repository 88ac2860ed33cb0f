//! The data plane allocates nothing per command in steady state: a counting global allocator
//! watches a real worker run SET/GET batches against a real redis-server, unpipelined and at
//! pipeline 100, while a reporter collects its metrics.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::OsString;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis_loadgen::client::cluster::ClusterWatch;
use redis_loadgen::config::{CliAction, load_from_args};
use redis_loadgen::metrics::MetricsHub;
use redis_loadgen::runner::io::IoThread;
use redis_loadgen::runner::worker::Worker;
use redis_loadgen::{Shutdown, workload};
use support::RedisServer;
use support::tls::{Certs, TlsServer};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards to the system allocator; only counts calls on the calling thread.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}

/// Runs `batches` batches after a warm-up; returns (allocations on the worker thread, commands
/// the reporter recorded).
fn steady_state_allocations(server: &RedisServer, batches: u64, extra: &[&str]) -> (u64, u64) {
    steady_state_allocations_on(server.port, batches, extra)
}

/// [`steady_state_allocations`] against any server port (the TLS test's server).
fn steady_state_allocations_on(port: u16, batches: u64, extra: &[&str]) -> (u64, u64) {
    steady_state_allocations_with(port, 1, batches, extra)
}

/// The loop under test: an I/O thread driving `workers` workers (or, in cluster mode, one
/// worker on its own thread).
enum Loop {
    Io(Box<IoThread>),
    Own(Box<Worker>),
}

impl Loop {
    fn run_batches(&mut self, n: u64) {
        match self {
            Loop::Io(io) => io.run_batches(n),
            Loop::Own(w) => w.run_batches(n),
        }
    }
}

/// [`steady_state_allocations_on`] with `workers` connections on one I/O thread; `batches`
/// counts the thread's batches over all of them.
fn steady_state_allocations_with(
    port: u16,
    workers: usize,
    batches: u64,
    extra: &[&str],
) -> (u64, u64) {
    let mut args: Vec<OsString> = ["redis-loadgen", "--port", &port.to_string()]
        .iter()
        .map(OsString::from)
        .collect();
    args.extend(extra.iter().map(OsString::from));
    let cwd = tempfile::tempdir().unwrap();
    let Ok(CliAction::Run(cfg)) = load_from_args(args, &|_: &str| None, cwd.path()) else {
        panic!("config did not load");
    };
    let cfg = Arc::new(cfg);
    let mut plan = workload::plan(&cfg);
    if cfg.redis.cluster.is_some() {
        plan.cluster_watch = Some(ClusterWatch::start(&cfg.redis).expect("slot map"));
    }
    let hub = MetricsHub::with_counters(1, plan.ops.clone(), plan.counters.clone(), false);
    if let Some(otlp) = &cfg.output.otlp {
        // As the runner does: sampled commands become trace events.
        hub.enable_tracing(otlp.trace_sample_rate);
    }
    let mut worker = if plan.cluster_watch.is_some() {
        Loop::Own(Box::new(
            Worker::connect(0, Arc::clone(&cfg), &plan, &hub, Shutdown::new()).unwrap(),
        ))
    } else {
        Loop::Io(Box::new(
            IoThread::for_workers(
                0,
                0..workers,
                Arc::clone(&cfg),
                &plan,
                &hub,
                Shutdown::new(),
            )
            .unwrap(),
        ))
    };

    // A reporter on another thread asks for the shard every few milliseconds, so publishing is
    // part of what is measured.
    let done = Arc::new(AtomicBool::new(false));
    let reporter = {
        let (hub, done) = (Arc::clone(&hub), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut total = hub.new_data();
            while !done.load(Ordering::Relaxed) {
                hub.collect(&mut total, Duration::from_millis(50));
                // The reporter hands trace events on every interval (the telemetry takes them).
                total.traces.clear();
                std::thread::sleep(Duration::from_millis(5));
            }
            total.total()
        })
    };
    // Warm-up: buffers reach their working size (each of the workers sends a few batches).
    worker.run_batches(2_000.max(workers as u64 * 4));
    let before = allocations();
    worker.run_batches(batches);
    let during = allocations() - before;
    done.store(true, Ordering::Relaxed);
    drop(worker); // hands in its last data
    if let Some(watch) = &plan.cluster_watch {
        watch.stop();
    }
    let mut recorded = reporter.join().unwrap();
    let mut rest = hub.new_data();
    hub.collect(&mut rest, Duration::ZERO);
    recorded += rest.total();
    (during, recorded)
}

/// 20,000 unpipelined SET/GET with `extra` flags: 0 allocations.
fn set_get_unpipelined(extra: &[&str], what: &str) {
    let server = RedisServer::start();
    let mut args = vec![
        "--operations",
        "SET,GET",
        "--value-size-min",
        "10",
        "--value-size-max",
        "500",
    ];
    args.extend_from_slice(extra);
    let (allocs, recorded) = steady_state_allocations(&server, 20_000, &args);
    assert!(recorded >= 20_000, "recorded {recorded}");
    assert_eq!(
        allocs, 0,
        "allocations during 20,000 unpipelined commands{what}"
    );
}

#[test]
fn set_get_unpipelined_allocates_nothing_per_command() {
    set_get_unpipelined(&[], "");
}

#[test]
fn a_thousand_connections_on_one_io_thread_allocate_nothing_per_command() {
    let server = RedisServer::start();
    let (allocs, recorded) = steady_state_allocations_with(
        server.port,
        1_000,
        20_000,
        &[
            "--operations",
            "SET,GET",
            "--clients",
            "10",
            "--threads-per-client",
            "100",
            "--max-connections",
            "100",
        ],
    );
    assert!(recorded >= 20_000, "recorded {recorded}");
    assert_eq!(
        allocs, 0,
        "allocations during 20,000 unpipelined commands over 1,000 connections"
    );
}

#[test]
fn sampled_commands_become_trace_events_without_allocating() {
    // Every 20th command sampled: the per-worker buffer fills every gathering, the rest is
    // counted as dropped; nothing allocates either way.
    set_get_unpipelined(
        &[
            "--otel-endpoint",
            "http://127.0.0.1:9",
            "--trace-sample-rate",
            "0.05",
        ],
        ", 5 % sampled",
    );
}

#[test]
fn set_get_pipelined_allocates_nothing_per_command() {
    let server = RedisServer::start();
    let (allocs, recorded) = steady_state_allocations(
        &server,
        5_000,
        &[
            "--workload-profile",
            "high_throughput",
            "--pipeline-size",
            "100",
        ],
    );
    assert!(recorded >= 500_000, "recorded {recorded}");
    assert_eq!(allocs, 0, "allocations during 500,000 pipelined commands");
}

#[test]
fn verify_writes_allocates_nothing_per_command() {
    // Stamped values of every size (some shorter than their stamp), the ledger and the
    // in-flight table, pipelined.
    let server = RedisServer::start();
    let (allocs, recorded) = steady_state_allocations(
        &server,
        2_000,
        &[
            "--verify-writes",
            "--operations",
            "SET,GET,DEL",
            "--use-pipeline",
            "--pipeline-size",
            "50",
            "--value-size-min",
            "1",
            "--value-size-max",
            "500",
        ],
    );
    assert!(recorded >= 100_000, "recorded {recorded}");
    assert_eq!(allocs, 0, "allocations during 100,000 verified commands");
}

#[test]
fn every_mixable_command_allocates_nothing_per_command() {
    let server = RedisServer::start();
    let all = redis_loadgen::command::Command::all_names().replace(' ', "");
    let (allocs, recorded) = steady_state_allocations(
        &server,
        2_000,
        &[
            "--operations",
            &all,
            "--use-pipeline",
            "--pipeline-size",
            "20",
            "--key-range",
            "100",
            "--hash-fields",
            "20",
            "--expiry-range",
            "60-120",
            "--key-distribution",
            "zipf",
            "--hash-tag",
        ],
    );
    assert!(recorded >= 40_000, "recorded {recorded}");
    assert_eq!(allocs, 0, "allocations during 40,000 mixed commands");
}

#[test]
fn templates_allocate_nothing_per_command() {
    let server = RedisServer::start();
    let (allocs, recorded) = steady_state_allocations(
        &server,
        10_000,
        &[
            "--command",
            "SET user:__key__:name __data__",
            "--command",
            "GET user:__key__:name",
            "--command",
            "HSET h:__key__ __field__ __rand_int__",
            "--value-sizes",
            "16:3,256:1",
        ],
    );
    assert!(recorded >= 10_000, "recorded {recorded}");
    assert_eq!(allocs, 0, "allocations during 10,000 templated commands");
}

#[test]
fn transactions_allocate_nothing_per_command() {
    let server = RedisServer::start();
    let (allocs, recorded) = steady_state_allocations(
        &server,
        3_000,
        &[
            "--workload-profile",
            "transaction_test",
            "--watch",
            "--hash-tag",
            "--use-pipeline",
            "--pipeline-size",
            "4",
        ],
    );
    assert!(recorded >= 3_000 * 4, "recorded {recorded}");
    assert_eq!(
        allocs, 0,
        "allocations during 3,000 batches of transactions"
    );
}

/// Over TLS, rustls 0.23 allocates once per record it encrypts and once per record it
/// decrypts (a Vec per record: `take_received_plaintext` copies each decrypted record into
/// one, in the unbuffered API too), so the floor is about two allocations per batch, whatever
/// the batch holds: at pipeline 50 that is <= 0.04 per command. This pins that bound (a
/// per-command allocation of ours anywhere would break it), plus a few for rustls's own queues,
/// which grow now and then when a loaded machine delivers several records in one read.
#[test]
fn set_get_over_tls_allocates_per_batch_not_per_command() {
    let certs = Certs::make();
    let server = TlsServer::start(&certs, "no", &[]);
    let ca = certs.arg("ca.crt");
    let batches = 2_000;
    let (allocs, recorded) = steady_state_allocations_on(
        server.port,
        batches,
        &[
            "--host",
            "localhost",
            "--tls",
            "--tls-ca-file",
            &ca,
            "--operations",
            "SET,GET",
            "--value-size-min",
            "10",
            "--value-size-max",
            "100",
            "--use-pipeline",
            "--pipeline-size",
            "50",
        ],
    );
    assert!(recorded >= batches * 50, "recorded {recorded}");
    assert!(
        allocs <= 2 * batches + 8,
        "{allocs} allocations during {batches} TLS batches of 50 commands: more than 2 per batch"
    );
}

#[test]
fn cluster_pipelines_split_per_node_allocate_nothing_per_command() {
    // Three masters: every batch of 50 is split over the three nodes and reassembled.
    let cluster = support::cluster::Cluster::start(3, 0);
    let seed = cluster.seed();
    let (allocs, recorded) = steady_state_allocations_on(
        cluster.nodes[0].port,
        2_000,
        &[
            "--cluster",
            "--cluster-nodes",
            &seed,
            "--workload-profile",
            "high_throughput",
            "--pipeline-size",
            "50",
            // Sampled commands name their node: that must not allocate either.
            "--otel-endpoint",
            "http://127.0.0.1:9",
            "--trace-sample-rate",
            "0.01",
        ],
    );
    assert!(recorded >= 100_000, "recorded {recorded}");
    assert_eq!(
        allocs, 0,
        "allocations during 100,000 commands in cluster mode, 1 % sampled"
    );
}
