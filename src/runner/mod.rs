//! The run's lifecycle: connect workers, start them together, report every interval, stop on
//! duration end or signal, wait (bounded) for in-flight replies, write the report.
//!
//! The calling thread is the reporter: it swaps interval data out of the worker shards, prints
//! it and keeps the run's totals. Workers are plain OS threads that own everything they touch
//! per command.

mod consumer;
pub mod io;
mod listener;
mod requests;
pub mod schedule;
pub mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, bounded, unbounded};

use crate::client::cluster::ClusterWatch;
use crate::client::sentinel::MasterWatch;
use crate::config::RunnerConfig;
use crate::control;
use crate::error::{AppError, ExitCode};
use crate::metrics::MetricsHub;
use crate::metrics::outage::OutageTracker;
use crate::output::console::Console;
use crate::output::json;
use crate::output::report::{EndReason, PhaseReport, ReportBuilder, RunReport};
use crate::shutdown::Shutdown;
use crate::workload::{self, RunPlan, WorkerRng, WorkerTask, prefill};
use io::{Assigned, IoThread};
use worker::Worker;

/// How long the reporter waits for workers to hand in an interval's data.
const COLLECT_WAIT: Duration = Duration::from_millis(200);
/// Longest time between two gatherings of worker data (see the reporter loop).
const GATHER_AT_LEAST_EVERY: Duration = Duration::from_secs(1);
/// How often the reporter looks at signals between intervals.
const TICK: Duration = Duration::from_millis(10);

/// Stops the sentinel or cluster watcher however `run` returns.
enum StopOnDrop {
    Sentinel(Arc<MasterWatch>),
    Cluster(Arc<ClusterWatch>),
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        match self {
            StopOnDrop::Sentinel(w) => w.stop(),
            StopOnDrop::Cluster(w) => w.stop(),
        }
    }
}

/// What a finished run returns: the report (also written as JSON) and the exit code.
#[derive(Debug)]
pub struct RunSummary {
    pub report: RunReport,
    pub exit: ExitCode,
}

/// Runs the load described by `cfg` until its duration ends or `shutdown` is requested.
pub fn run(cfg: Arc<RunnerConfig>, shutdown: Shutdown) -> Result<RunSummary, AppError> {
    let began = Instant::now();
    let console = Console::new(&cfg);
    // Telemetry endpoints are set up first: a taken listen address fails before any load.
    let mut telemetry = crate::telemetry::start(&cfg)?;
    let mut plan = workload::plan(&cfg);
    ensure_open_files(&cfg, plan.workers)?;
    let server = match control::server_info(&cfg.redis) {
        Ok(info) => info,
        Err(e) => return Err(cannot_connect(&cfg, e.to_string())),
    };
    match (cfg.redis.cluster.is_some(), server.mode == "cluster") {
        (false, true) => {
            return Err(cannot_connect(
                &cfg,
                "the server is a Redis Cluster node: add --cluster (and --cluster-nodes) to route commands by slot".into(),
            ));
        }
        (true, false) => {
            return Err(cannot_connect(
                &cfg,
                format!(
                    "--cluster is set but the server runs in {} mode (cluster support disabled); drop --cluster",
                    if server.mode.is_empty() {
                        "standalone"
                    } else {
                        &server.mode
                    }
                ),
            ));
        }
        _ => {}
    }
    // Sentinel mode: one watcher for the run tells workers when the master moves.
    // Cluster mode: one watcher keeps the slot map for every worker.
    let _watch = if cfg.redis.sentinel.is_some() {
        let watch = MasterWatch::start(cfg.redis.clone());
        plan.master_watch = Some(Arc::clone(&watch));
        Some(StopOnDrop::Sentinel(watch))
    } else if cfg.redis.cluster.is_some() {
        let watch = ClusterWatch::start(&cfg.redis).map_err(|e| cannot_connect(&cfg, e))?;
        // Each worker opens a connection to every master (and replica, for replica reads).
        let topology = watch.topology();
        let per_worker = topology.shards.len()
            + if cfg
                .redis
                .cluster
                .as_ref()
                .is_some_and(|c| c.read_from_replicas)
            {
                topology.shards.iter().map(|s| s.replicas.len()).sum()
            } else {
                0
            };
        let needed = per_worker as u64 * u64::from(cfg.test.threads_per_client);
        if needed > u64::from(cfg.redis.max_connections) {
            watch.stop();
            return Err(AppError::Config(
                crate::config::parse::ConfigError::Conflict(format!(
                    "the cluster has {per_worker} nodes to connect to, so {} workers per client need {needed} connections, more than redis.max_connections (--max-connections / REDIS_MAX_CONNECTIONS) = {} allows",
                    cfg.test.threads_per_client, cfg.redis.max_connections
                )),
            ));
        }
        plan.cluster_watch = Some(Arc::clone(&watch));
        Some(StopOnDrop::Cluster(watch))
    } else {
        None
    };
    let open_loop = cfg.test.target_ops_per_second.is_some();
    let workers = plan.workers;
    let layout = Layout::of(&cfg, &plan);
    let threads = layout.threads();
    let hub =
        MetricsHub::with_counters(threads, plan.ops.clone(), plan.counters.clone(), open_loop);
    if let Some(otlp) = &cfg.output.otlp {
        hub.enable_tracing(otlp.trace_sample_rate);
    }
    let plan = Arc::new(plan);
    // Stops the workers: set on duration end, on a signal, or when start-up fails.
    let stop = Shutdown::new();

    let (ready_tx, ready_rx) = unbounded::<Result<Duration, crate::client::ConnectError>>();
    let (go_tx, go_rx) = bounded::<Instant>(threads);
    let (done_tx, done_rx) = unbounded::<usize>();
    let mut handles = Vec::with_capacity(threads);
    for (shard, job) in layout.jobs.into_iter().enumerate() {
        let (cfg, hub, stop) = (Arc::clone(&cfg), Arc::clone(&hub), stop.clone());
        let plan = Arc::clone(&plan);
        let (ready_tx, go_rx, done_tx) = (ready_tx.clone(), go_rx.clone(), done_tx.clone());
        let name = match &job {
            Job::Io(_) => format!("io-{shard}"),
            Job::Own(index, _, _) => format!("worker-{index}"),
        };
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                worker::tighten_timer_slack();
                // Both kinds connect, report, wait for the start, run and hand in their data.
                let mut runnable: Box<dyn FnMut(Instant)> = match job {
                    Job::Io(assigned) => {
                        match IoThread::connect(shard, assigned, cfg, &plan, &hub, stop) {
                            Ok(mut io) => {
                                let _ = ready_tx.send(Ok(io.connected_in));
                                Box::new(move |start| io.run(start))
                            }
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return;
                            }
                        }
                    }
                    Job::Own(index, task, rng) => {
                        let began = Instant::now();
                        match Worker::with_task(index, shard, task, rng, cfg, &plan, &hub, stop) {
                            Ok(mut w) => {
                                let _ = ready_tx.send(Ok(began.elapsed()));
                                Box::new(move |start| w.run(start))
                            }
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return;
                            }
                        }
                    }
                };
                if let Ok(start) = go_rx.recv() {
                    // A panic is a bug; catching it keeps the other threads and the report.
                    let outcome =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runnable(start)));
                    if outcome.is_err() {
                        tracing::error!(
                            thread = shard,
                            "a load thread panicked; its data so far is kept"
                        );
                    }
                }
                let _ = done_tx.send(shard);
            })
            .map_err(|e| AppError::Run(format!("cannot start a load thread: {e}")))?;
        handles.push(handle);
    }
    drop((ready_tx, done_tx));

    let mut connect_phase = Duration::ZERO;
    for _ in 0..threads {
        let outcome = ready_rx
            .recv()
            .map_err(|_| AppError::Run("a load thread ended during start-up".into()))?;
        match outcome {
            Ok(took) => connect_phase = connect_phase.max(took),
            Err(e) => {
                stop.request();
                drop(go_tx);
                return Err(cannot_connect(&cfg, e.to_string()));
            }
        }
    }
    tracing::info!(
        workers,
        threads,
        seconds = connect_phase.as_secs_f64(),
        "all connections up"
    );

    let setup = if cfg.workload.prefill {
        let outcome = prefill::run(&cfg, plan.cluster_watch.as_ref()).map_err(|e| {
            stop.request();
            AppError::Run(format!("prefill failed: {e}"))
        })?;
        tracing::info!(
            keys = cfg.workload.key_range,
            seconds = outcome.duration_s,
            "prefill done"
        );
        Some(PhaseReport::from_prefill(&outcome))
    } else {
        None
    };

    let go = Instant::now();
    for _ in 0..threads {
        let _ = go_tx.send(go);
    }
    tracing::info!(workers, "load started");
    let warmup = cfg.workload.warmup.unwrap_or(Duration::ZERO);
    // Workers stop at go + warmup + duration; the measured run starts when warm-up ends.
    let deadline = cfg.test.duration.map(|d| go + warmup + d);
    let mut warm = hub.new_data();
    let warmup_report = if warmup.is_zero() {
        None
    } else {
        wait_until(go + warmup, &shutdown, &console, go);
        hub.collect(&mut warm, COLLECT_WAIT);
        tracing::info!(commands = warm.total(), "warm-up done; measuring from now");
        Some(PhaseReport::from_data(&warm, go.elapsed()))
    };

    let started = Instant::now();
    let run_start = SystemTime::now();
    let cpu_start = control::cpu_times();
    telemetry.run_started(&cfg, plan.ops.clone(), began, started, run_start);
    let mut builder = ReportBuilder::new(&cfg, &server, run_start, hub.new_data(), workers);
    builder.set_phases(setup, warmup_report);
    let mut interval_data = hub.new_data();
    // The workers' client initialisation (and its spans) happened before a warm-up: it
    // belongs to the run's telemetry all the same.
    interval_data.conn.init.add(&warm.conn.init).ok();
    interval_data.traces.extend(
        warm.traces
            .iter()
            .filter(|t| t.kind == crate::metrics::trace::TraceKind::Connect)
            .cloned(),
    );
    let mut outages = OutageTracker::new(started, workers);
    let mut outage_events = Vec::new();
    let interval = cfg.output.metrics_interval;
    let mut next_report = started + interval;
    // Data is gathered at least every second, even with a longer display interval, so that a
    // run aborted while workers are stuck in reads loses at most about a second of it.
    let gather_every = interval.min(GATHER_AT_LEAST_EVERY);
    let mut next_gather = started + gather_every;
    let mut last_report = started;
    let mut end_reason = EndReason::Duration;
    loop {
        let now = Instant::now();
        if shutdown.is_stopping() {
            end_reason = EndReason::Signal;
            break;
        }
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        if now >= next_gather {
            hub.collect(&mut interval_data, COLLECT_WAIT);
            outages.feed(&mut interval_data.edges, &mut outage_events);
            for event in outage_events.drain(..) {
                console.outage(&event);
                telemetry.outage(&event);
            }
            if now >= next_report {
                let report = builder.add_interval(&interval_data, now - last_report, now - started);
                console.interval(&report, now - started);
                telemetry.interval(&interval_data, now - started);
                interval_data.reset();
                last_report = now;
                next_report += interval;
            }
            next_gather = (now + gather_every).min(next_report);
            continue;
        }
        console.tick(now - started);
        let mut wake = next_gather.min(now + TICK);
        if let Some(d) = deadline {
            wake = wake.min(d);
        }
        std::thread::sleep(wake.saturating_duration_since(now));
    }
    let stop_at = Instant::now();
    stop.request();
    let drained = wait_for_workers(&done_rx, threads, drain_limit(&cfg), &shutdown);
    if !drained {
        end_reason = EndReason::Aborted;
        tracing::warn!("not every worker finished in time; reporting what was handed in");
    }
    // Whatever was handed in after the last interval goes into a final, shorter interval.
    let end = Instant::now();
    hub.collect(
        &mut interval_data,
        if drained {
            COLLECT_WAIT
        } else {
            Duration::ZERO
        },
    );
    outages.feed(&mut interval_data.edges, &mut outage_events);
    for event in outage_events.drain(..) {
        console.outage(&event);
        telemetry.outage(&event);
    }
    builder.set_outages(outages.windows(stop_at));
    if interval_data.total() > 0 || builder.interval_count() == 0 {
        let report = builder.add_interval(&interval_data, end - last_report, end - started);
        console.interval(&report, end - started);
        telemetry.interval(&interval_data, end - started);
    }
    // The last interval and the run span leave before the report is written (also flushed
    // on early returns, by Drop).
    telemetry.run_ended(end);
    telemetry.finish();
    if drained {
        for handle in handles {
            let _ = handle.join();
        }
    }
    let cpu = control::cpu_times().since(&cpu_start);
    let mut report = builder.finish(SystemTime::now(), stop_at - started, cpu, end_reason);
    report.checks = workload::verify(&cfg, &plan, &report);
    if let Some(path) = &cfg.output.output_file {
        json::write_atomic(path, &report)?;
    }
    console.summary(&report);
    telemetry.linger(&shutdown);
    let exit = if report.total_commands_count > 0 && report.successful_commands_count == 0 {
        ExitCode::RunFailed
    } else {
        ExitCode::Ok
    };
    Ok(RunSummary { report, exit })
}

/// Descriptors a run needs besides its workers' sockets (control connections, the telemetry
/// endpoint, log and report files, the poll and timer descriptors of each thread).
const SPARE_FILES: u64 = 64;

/// Raises the soft open-file limit to what `workers` connections need (up to the hard
/// limit), or fails before connecting when even the hard limit is too low: otherwise the
/// connects would fail one by one with EMFILE.
fn ensure_open_files(cfg: &RunnerConfig, workers: usize) -> Result<(), AppError> {
    // Cluster workers hold a connection per node; the connection budget bounds them.
    let per_worker = if cfg.redis.cluster.is_some() { 16 } else { 1 };
    let needed = workers as u64 * per_worker + SPARE_FILES;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write a plain struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Ok(());
    }
    if limit.rlim_cur >= needed {
        return Ok(());
    }
    let wanted = needed.min(limit.rlim_max);
    let raised = libc::rlimit {
        rlim_cur: wanted,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: as above.
    let ok = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0;
    if ok && wanted >= needed {
        return Ok(());
    }
    Err(AppError::Config(
        crate::config::parse::ConfigError::Conflict(format!(
            "{workers} workers need about {needed} open files but the open-file limit is {} (hard limit {}): raise it (ulimit -n {needed}) or lower test.clients x test.threads_per_client",
            limit.rlim_cur, limit.rlim_max
        )),
    ))
}

/// Sleeps until `until` or a stop request, moving the progress display.
fn wait_until(until: Instant, shutdown: &Shutdown, console: &Console, since: Instant) {
    loop {
        let now = Instant::now();
        if now >= until || shutdown.is_stopping() {
            return;
        }
        console.tick(now - since);
        std::thread::sleep((until - now).min(TICK));
    }
}

/// How long to wait for in-flight replies after stopping: a read can block for one socket
/// timeout, plus a reconnect attempt's connect timeout.
fn drain_limit(cfg: &RunnerConfig) -> Duration {
    cfg.redis.socket_timeout + cfg.redis.connect_timeout + Duration::from_secs(1)
}

/// Waits until every worker has finished, `limit` passes, or a second signal aborts the wait.
fn wait_for_workers(
    done: &Receiver<usize>,
    workers: usize,
    limit: Duration,
    shutdown: &Shutdown,
) -> bool {
    let until = Instant::now() + limit;
    let mut finished = 0;
    while finished < workers {
        if shutdown.is_aborted() {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return false;
        }
        match done.recv_timeout((until - now).min(TICK * 5)) {
            Ok(_) => finished += 1,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return true,
        }
    }
    true
}

/// The error for a run that could not connect at start. Writes its report first, so a JSON
/// consumer always finds a file (if that write fails too, that error is returned instead).
fn cannot_connect(cfg: &RunnerConfig, reason: String) -> AppError {
    let err = AppError::Connect {
        target: cfg.redis.endpoint(),
        reason,
    };
    if let Some(path) = &cfg.output.output_file {
        let report = RunReport::failed(cfg, err.to_string());
        if let Err(write_error) = json::write_atomic(path, &report) {
            return write_error;
        }
    }
    err
}

/// What one load thread runs.
enum Job {
    /// An event loop driving these request/reply workers.
    Io(Vec<Assigned>),
    /// One worker on a thread of its own (cluster routing, pub/sub subscribers, stream
    /// processors): its index, task and RNG.
    Own(usize, WorkerTask, WorkerRng),
}

/// Which thread runs which worker: request/reply workers spread round-robin over the I/O
/// threads, the others one per thread. A thread's place in `jobs` is its metrics shard.
struct Layout {
    jobs: Vec<Job>,
}

impl Layout {
    fn of(cfg: &RunnerConfig, plan: &RunPlan) -> Layout {
        let mut requests = Vec::new();
        let mut own = Vec::new();
        for index in 0..plan.workers {
            match io::assign(cfg, plan, index) {
                Ok(a) => requests.push(a),
                Err((task, rng)) => own.push(Job::Own(index, task, rng)),
            }
        }
        let io_threads = if requests.is_empty() {
            0
        } else {
            cfg.test.io_threads_for(requests.len())
        };
        let mut io: Vec<Vec<Assigned>> = (0..io_threads).map(|_| Vec::new()).collect();
        for (n, a) in requests.into_iter().enumerate() {
            io[n % io_threads].push(a);
        }
        let mut jobs: Vec<Job> = io.into_iter().map(Job::Io).collect();
        jobs.extend(own);
        Layout { jobs }
    }

    fn threads(&self) -> usize {
        self.jobs.len()
    }
}
