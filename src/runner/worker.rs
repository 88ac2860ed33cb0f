//! A cluster worker on an OS thread of its own, what the I/O threads do not drive yet: a
//! blocking pipeline over one connection per node (`client::cluster`).
//!
//! The [`Schedule`] says when a batch is due (closed or open loop) and the batch size says
//! how many commands it holds (1 = no pipeline). Per command there is no allocation, lock,
//! formatting or channel send.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::SeedableRng;

use crate::client::ConnectError;
use crate::client::cluster::{ClusterPipeline, Event};
use crate::config::RunnerConfig;
use crate::metrics::outage::is_outage_class;
use crate::metrics::{MetricsHub, OpId, ShardWriter};
use crate::runner::schedule::Schedule;
use crate::shutdown::Shutdown;
use crate::workload::{self, Recorder, RunPlan, WorkerRng, WorkerTask, Workload};

/// Longest sleep between looks at the stop flag and the metrics epoch.
const MAX_NAP: Duration = Duration::from_millis(10);
/// Ceiling for the pause after a batch in which every command got an error reply.
const MAX_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// A cluster worker on a thread of its own: its node connections, workload, RNG, schedule
/// and metrics shard.
pub struct Worker {
    index: usize,
    cfg: Arc<RunnerConfig>,
    client_name: String,
    workload: Box<dyn Workload>,
    /// How many workers share `--target-ops-per-second`.
    paced_workers: usize,
    rng: WorkerRng,
    metrics: ShardWriter,
    schedule: Schedule,
    batch_size: usize,
    /// The operation of every command of the batch in flight, in order (reused).
    sent: Vec<OpId>,
    stop: Shutdown,
    deadline: Option<Instant>,
    failed_batches_in_a_row: u32,
    /// The worker's node connections and slot map.
    cluster: ClusterPipeline,
}

/// The seed of worker `index`: reproducible from `--seed`, otherwise from the clock.
pub fn worker_seed(seed: Option<u64>, index: usize) -> u64 {
    let base = seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        nanos ^ (std::process::id() as u64).rotate_left(32)
    });
    base ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Worker {
    /// Connects and prepares worker `index` on a thread of its own (metrics shard `index`);
    /// does not send load yet.
    pub fn connect(
        index: usize,
        cfg: Arc<RunnerConfig>,
        plan: &RunPlan,
        hub: &Arc<MetricsHub>,
        stop: Shutdown,
    ) -> Result<Worker, ConnectError> {
        let mut rng = WorkerRng::seed_from_u64(worker_seed(cfg.test.seed, index));
        let task = workload::build(&cfg, plan, index, &mut rng);
        Worker::with_task(index, index, task, rng, cfg, plan, hub, stop)
    }

    /// Connects worker `index`, whose task and RNG are made already, recording into metrics
    /// shard `shard`.
    #[allow(clippy::too_many_arguments)]
    pub fn with_task(
        index: usize,
        shard: usize,
        task: WorkerTask,
        rng: WorkerRng,
        cfg: Arc<RunnerConfig>,
        plan: &RunPlan,
        hub: &Arc<MetricsHub>,
        stop: Shutdown,
    ) -> Result<Worker, ConnectError> {
        let client_name = format!("{}-w{}", cfg.redis.client_name, index);
        let init_start = Instant::now();
        let (workload, cluster) = match (task, &plan.cluster_watch) {
            (WorkerTask::Requests(w), Some(watch)) => {
                let mut pipeline = ClusterPipeline::new(Arc::clone(watch), &cfg.redis, index);
                pipeline.connect_all(&cfg.redis, &client_name)?;
                (w, pipeline)
            }
            // Standalone and Sentinel workers of every kind run on I/O threads.
            _ => {
                return Err(ConnectError::Io(std::io::Error::other(
                    "this worker runs on an I/O thread (runner::io), not on a thread of its own",
                )));
            }
        };
        let batch_size = cfg.workload.batch_size();
        let mut metrics = hub.writer(shard);
        metrics.set_worker(index);
        // One connection per master (and replica, for replica reads).
        let connected = Instant::now();
        for _ in 0..cluster.open_connections() {
            metrics.connect_attempt(true, connected);
        }
        metrics.client_initialized(init_start, connected);
        Ok(Worker {
            index,
            client_name,
            workload,
            paced_workers: plan.paced_workers,
            rng,
            metrics,
            schedule: Schedule::ClosedLoop,
            batch_size,
            sent: Vec::with_capacity(batch_size * 4),
            stop,
            deadline: None,
            failed_batches_in_a_row: 0,
            cluster,
            cfg,
        })
    }

    /// Runs until the stop flag is set or `duration` has passed since `start`, then hands in
    /// its metrics. In-flight replies of the last batch are awaited (bounded by the socket
    /// timeout).
    pub fn run(&mut self, start: Instant) {
        self.schedule = Schedule::new(
            self.cfg.test.target_ops_per_second,
            self.paced_workers,
            self.batch_size,
            self.index,
            start,
        );
        let warmup = self.cfg.workload.warmup.unwrap_or(Duration::ZERO);
        self.deadline = self.cfg.test.duration.map(|d| start + warmup + d);
        while self.run_batch() {}
        self.metrics.finish();
    }

    /// Runs `n` batches in closed loop (no schedule, no deadline). For tests that measure the
    /// loop itself, such as the allocation count.
    pub fn run_batches(&mut self, n: u64) {
        for _ in 0..n {
            if !self.run_batch() {
                break;
            }
        }
    }

    /// One batch: the batch's units go to the masters of their slots (a batch is split
    /// per node, one write each) and replies are recorded in the order the units were
    /// encoded. MOVED/ASK replies are recorded as what the server answered (cluster_error)
    /// and the unit is sent again where the redirect points. A node that cannot be reached
    /// fails its units at once (not sent) while the other nodes' units go on.
    #[inline]
    fn run_batch(&mut self) -> bool {
        self.metrics.maybe_publish();
        if self.stop.is_stopping() {
            return false;
        }
        let intended = self.schedule.next_start();
        if let Some(at) = intended
            && !self.nap_until(at)
        {
            return false;
        }
        let Worker {
            cfg,
            client_name,
            workload,
            rng,
            metrics,
            sent: ops,
            cluster,
            batch_size,
            deadline,
            ..
        } = self;
        cluster.follow_topology();
        ops.clear();
        cluster.begin();
        for _ in 0..*batch_size {
            let first = ops.len();
            workload.encode_next(rng, cluster.buf(), ops);
            cluster.end_unit(first, ops.len());
        }
        let sent = Instant::now();
        if deadline.is_some_and(|d| sent >= d) {
            return false;
        }
        let start = super::requests::batch_started(metrics, intended, sent, *batch_size);
        let mut errors = 0;
        cluster.exchange(&cfg.redis, client_name, &mut |event| match event {
            Event::Reply {
                op,
                reply,
                payload,
                at,
                redirect,
                recovers,
                outage,
            } => {
                let mut rec = Recorder {
                    metrics: &mut *metrics,
                    command: op,
                    latency_ns: at.saturating_duration_since(start).as_nanos() as u64,
                    service_ns: at.saturating_duration_since(sent).as_nanos() as u64,
                    failed: false,
                };
                workload.on_reply(ops[op], reply, payload, &mut rec);
                errors += rec.failed as usize;
                if redirect {
                    metrics.data().conn.redirects += 1;
                }
                if outage {
                    tracing::debug!(reply = %String::from_utf8_lossy(payload), "cluster error reply");
                    metrics.outage_failures(sent, 1);
                }
                if recovers {
                    metrics.command_succeeded(at);
                }
            }
            Event::Failed {
                ops: range,
                class,
                sent: was_sent,
            } => {
                let n = range.len();
                for &op in &ops[range] {
                    metrics.record_error(op, class);
                }
                errors += n;
                if !was_sent {
                    metrics.data().conn.not_sent += n as u64;
                }
                if is_outage_class(class) {
                    metrics.outage_failures(sent, n as u64);
                }
                workload.on_connection_lost(class, metrics);
            }
            Event::Connect {
                ok,
                at,
                down_since,
            } => metrics.node_connect_attempt(ok, at, down_since),
            Event::Dropped { .. } => metrics.node_dropped(),
            Event::Node(label) => metrics.server_is(label),
        });
        let all_failed = errors >= ops.len();
        self.after_batch(all_failed);
        true
    }

    /// Pauses briefly after batches in which every command failed, so a server that rejects
    /// everything is not hammered in a tight loop.
    #[inline]
    fn after_batch(&mut self, all_failed: bool) {
        if !all_failed {
            self.failed_batches_in_a_row = 0;
            return;
        }
        self.failed_batches_in_a_row = self.failed_batches_in_a_row.saturating_add(1);
        let exp = self.failed_batches_in_a_row.min(10);
        let pause = (Duration::from_micros(100) * (1 << exp)).min(MAX_ERROR_BACKOFF);
        self.nap_until(Instant::now() + pause);
    }

    /// Sleeps until `at`, in short naps that keep an eye on the stop flag, the deadline and the
    /// metrics epoch. Returns false if the worker should stop instead.
    fn nap_until(&mut self, at: Instant) -> bool {
        loop {
            let now = Instant::now();
            if self.stop.is_stopping() || self.deadline.is_some_and(|d| now >= d) {
                return false;
            }
            if now >= at {
                return true;
            }
            std::thread::sleep((at - now).min(MAX_NAP));
            self.metrics.maybe_publish();
        }
    }
}

/// Makes the kernel wake sleeping threads within about a microsecond of the requested time
/// (default slack is 50 us), so open-loop sends happen on schedule.
pub fn tighten_timer_slack() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and affects only the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0);
    }
}
