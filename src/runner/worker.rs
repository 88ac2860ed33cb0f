//! One worker thread's loop: encode a batch, send it with one write, time each reply.
//!
//! The same loop serves every mode: the [`Schedule`] says when a batch is due (closed or open
//! loop) and the batch size says how many commands it holds (1 = no pipeline). Per command
//! there is no allocation, lock, formatting or channel send.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::SeedableRng;

use crate::client::{ConnectError, RespConnection, connect};
use crate::config::RunnerConfig;
use crate::error::ErrorClass;
use crate::metrics::{MetricsHub, OpId, ShardWriter};
use crate::runner::schedule::Schedule;
use crate::shutdown::Shutdown;
use crate::workload::{
    self, LoopContext, OwnLoop, Recorder, RunPlan, WorkerRng, WorkerTask, Workload,
};

/// Longest sleep between looks at the stop flag and the metrics epoch.
const MAX_NAP: Duration = Duration::from_millis(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Ceiling for the pause after a batch in which every command got an error reply.
const MAX_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// A worker: its connection, workload, RNG, schedule and metrics shard.
pub struct Worker {
    index: usize,
    cfg: Arc<RunnerConfig>,
    conn: Option<RespConnection<TcpStream>>,
    client_name: String,
    workload: Box<dyn Workload>,
    /// How many workers share `--target-ops-per-second`.
    paced_workers: usize,
    /// Set for workers that run a loop of the workload's own instead of request/reply.
    own: Option<Box<dyn OwnLoop>>,
    rng: WorkerRng,
    metrics: ShardWriter,
    schedule: Schedule,
    batch_size: usize,
    /// The operation of every command of the batch in flight, in order (reused).
    sent: Vec<OpId>,
    stop: Shutdown,
    deadline: Option<Instant>,
    failed_batches_in_a_row: u32,
}

/// The seed of worker `index`: reproducible from `--seed`, otherwise from the clock.
fn worker_seed(seed: Option<u64>, index: usize) -> u64 {
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
    /// Connects and prepares worker `index`; does not send load yet.
    pub fn connect(
        index: usize,
        cfg: Arc<RunnerConfig>,
        plan: &RunPlan,
        hub: &Arc<MetricsHub>,
        stop: Shutdown,
    ) -> Result<Worker, ConnectError> {
        let client_name = format!(
            "{}-{}-w{}",
            cfg.identity.app_name, cfg.identity.instance_id, index
        )
        .replace(|c: char| c.is_whitespace(), "_");
        let mut rng = WorkerRng::seed_from_u64(worker_seed(cfg.test.seed, index));
        let (workload, own, conn) = match workload::build(&cfg, plan, index, &mut rng) {
            WorkerTask::Requests(w) => (w, None, Some(connect(&cfg.redis, &client_name)?)),
            WorkerTask::Own(mut own) => {
                own.connect(&cfg, &client_name)?;
                (Box::new(NoRequests) as Box<dyn Workload>, Some(own), None)
            }
        };
        let batch_size = cfg.workload.batch_size();
        Ok(Worker {
            index,
            conn,
            client_name,
            workload,
            paced_workers: plan.paced_workers,
            own,
            rng,
            metrics: hub.writer(index),
            schedule: Schedule::ClosedLoop,
            batch_size,
            sent: Vec::with_capacity(batch_size * 4),
            stop,
            deadline: None,
            failed_batches_in_a_row: 0,
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
        if let Some(own) = self.own.as_mut() {
            let mut ctx = LoopContext {
                cfg: &self.cfg,
                index: self.index,
                metrics: &mut self.metrics,
                stop: &self.stop,
                start,
                deadline: self.deadline,
            };
            own.run(&mut ctx);
        } else {
            while self.run_batch() {}
        }
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

    /// One batch: wait for its slot, encode, send, read and time each reply. Returns false when
    /// the worker should stop.
    #[inline]
    fn run_batch(&mut self) -> bool {
        self.metrics.maybe_publish();
        if self.stop.is_stopping() {
            return false;
        }
        if self.conn.is_none() && !self.reconnect() {
            return false;
        }
        let intended = self.schedule.next_start();
        if let Some(at) = intended
            && !self.nap_until(at)
        {
            return false;
        }
        let Some(conn) = self.conn.as_mut() else {
            return true;
        };
        self.sent.clear();
        let out = conn.request_buf();
        for _ in 0..self.batch_size {
            self.workload
                .encode_next(&mut self.rng, out, &mut self.sent);
        }
        let sent = Instant::now();
        if let Some(deadline) = self.deadline
            && sent >= deadline
        {
            // Encoded but never sent: nothing to count.
            conn.request_buf().clear();
            return false;
        }
        let start = match intended {
            Some(at) => {
                self.metrics
                    .data()
                    .record_lag(sent.saturating_duration_since(at).as_nanos() as u64);
                at
            }
            None => sent,
        };
        self.metrics.data().units += self.batch_size as u64;
        if let Err(e) = conn.flush() {
            self.fail_batch_from(0, e.class());
            return true;
        }
        let mut errors = 0;
        for i in 0..self.sent.len() {
            let op = self.sent[i];
            match conn.read_reply() {
                Ok(reply) => {
                    let received = conn.reply_received_at();
                    let mut rec = Recorder {
                        metrics: &mut self.metrics,
                        latency_ns: received.saturating_duration_since(start).as_nanos() as u64,
                        service_ns: received.saturating_duration_since(sent).as_nanos() as u64,
                        failed: false,
                    };
                    self.workload
                        .on_reply(op, &reply, conn.payload(&reply), &mut rec);
                    errors += rec.failed as usize;
                }
                Err(e) => {
                    self.fail_batch_from(i, e.class());
                    return true;
                }
            }
        }
        self.after_batch(errors == self.sent.len());
        true
    }

    /// Counts every command of the batch from `first` on as failed with `class` (sent, reply
    /// never read) and drops the connection: it is out of step with the server now.
    #[cold]
    fn fail_batch_from(&mut self, first: usize, class: ErrorClass) {
        for &op in &self.sent[first..] {
            self.metrics.record_error(op, class);
        }
        self.workload.on_connection_lost(class, &mut self.metrics);
        if self.conn.take().is_some() {
            tracing::warn!(worker = self.index, error_type = %class, "connection lost; reconnecting");
        }
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

    /// Reconnects with exponential backoff until it succeeds or the run stops.
    #[cold]
    fn reconnect(&mut self) -> bool {
        let mut backoff = FIRST_BACKOFF;
        loop {
            if !self.nap_until(Instant::now() + backoff) {
                return false;
            }
            match connect(&self.cfg.redis, &self.client_name) {
                Ok(conn) => {
                    self.conn = Some(conn);
                    self.metrics.data().reconnects += 1;
                    tracing::info!(worker = self.index, "reconnected");
                    return true;
                }
                Err(e) => {
                    self.metrics.data().connect_failures += 1;
                    tracing::debug!(worker = self.index, error = %e, "reconnect failed");
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
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

/// The request workload of a worker that runs its own loop: never asked for anything.
struct NoRequests;

impl Workload for NoRequests {
    fn encode_next(&mut self, _: &mut WorkerRng, _: &mut Vec<u8>, _: &mut Vec<OpId>) {}
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
