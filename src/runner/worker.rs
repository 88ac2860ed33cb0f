//! One worker thread's loop: encode a batch, send it with one write, time each reply.
//!
//! The same loop serves every mode: the [`Schedule`] says when a batch is due (closed or open
//! loop) and the batch size says how many commands it holds (1 = no pipeline). Per command
//! there is no allocation, lock, formatting or channel send.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::SeedableRng;

use crate::client::backoff::Backoff;
use crate::client::cluster::{ClusterPipeline, Event};
use crate::client::sentinel::MasterWatch;
use crate::client::{ConnectError, DataStream, RespConnection, connect_to};
use crate::config::RunnerConfig;
use crate::error::ErrorClass;
use crate::metrics::outage::is_outage_class;
use crate::metrics::{MetricsHub, OpId, ShardWriter};
use crate::runner::schedule::Schedule;
use crate::shutdown::Shutdown;
use crate::workload::{
    self, LoopContext, OwnLoop, Recorder, RunPlan, WorkerRng, WorkerTask, Workload,
};

/// Longest sleep between looks at the stop flag and the metrics epoch.
const MAX_NAP: Duration = Duration::from_millis(10);
/// Ceiling for the pause after a batch in which every command got an error reply.
const MAX_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// A worker: its connection, workload, RNG, schedule and metrics shard.
pub struct Worker {
    index: usize,
    cfg: Arc<RunnerConfig>,
    conn: Option<RespConnection<DataStream>>,
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
    /// Reconnect backoff (`--retry-backoff-base/-cap`, `--retry-attempts`).
    backoff: Backoff,
    /// Sentinel mode: a -READONLY reply sends the worker back to the sentinels.
    sentinel: bool,
    /// Sentinel mode: the run's master watcher and the generation this connection is for;
    /// `None` in standalone mode.
    master_watch: Option<(Arc<MasterWatch>, u64)>,
    /// Cluster mode: the worker's node connections and slot map (then `conn` stays `None`).
    cluster: Option<ClusterPipeline>,
    /// Sentinel mode: the master address this connection went to.
    conn_target: Option<(String, u16)>,
    /// `--health-check-interval`, and when the connection was last used.
    health_check: Option<Duration>,
    last_used: Instant,
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
        let mut cluster = None;
        let mut conn_target = None;
        let (workload, own, conn) = match task {
            WorkerTask::Requests(w) => match &plan.cluster_watch {
                Some(watch) => {
                    let mut pipeline = ClusterPipeline::new(Arc::clone(watch), &cfg.redis, index);
                    pipeline.connect_all(&cfg.redis, &client_name)?;
                    cluster = Some(pipeline);
                    (w, None, None)
                }
                None => {
                    let (conn, target) = connect_noting_target(&cfg, &client_name)?;
                    conn_target = target;
                    (w, None, Some(conn))
                }
            },
            WorkerTask::Own(mut own) => {
                own.connect(&cfg, &client_name)?;
                (Box::new(NoRequests) as Box<dyn Workload>, Some(own), None)
            }
        };
        let batch_size = cfg.workload.batch_size();
        let mut metrics = hub.writer(shard);
        metrics.set_worker(index);
        // One connection, or in cluster mode one per master.
        let opened = cluster
            .as_ref()
            .map_or(1, ClusterPipeline::open_connections);
        let connected = Instant::now();
        for _ in 0..opened {
            metrics.connect_attempt(true, connected);
        }
        metrics.set_server(server_label(&cfg, conn_target.as_ref()));
        metrics.client_initialized(init_start, connected);
        Ok(Worker {
            index,
            conn,
            client_name,
            workload,
            paced_workers: plan.paced_workers,
            own,
            rng,
            metrics,
            schedule: Schedule::ClosedLoop,
            batch_size,
            sent: Vec::with_capacity(batch_size * 4),
            stop,
            deadline: None,
            failed_batches_in_a_row: 0,
            backoff: Backoff::new(cfg.redis.retry),
            sentinel: cfg.redis.sentinel.is_some(),
            master_watch: plan
                .master_watch
                .as_ref()
                .map(|w| (Arc::clone(w), w.generation())),
            cluster,
            conn_target,
            health_check: cfg.redis.health_check_interval,
            last_used: Instant::now(),
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
        if self.cluster.is_some() {
            return self.run_cluster_batch();
        }
        self.metrics.maybe_publish();
        if self.stop.is_stopping() {
            return false;
        }
        if let Some((watch, seen)) = &mut self.master_watch {
            let generation = watch.generation();
            if generation != *seen {
                *seen = generation;
                self.master_moved();
            }
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
        let mut sent = Instant::now();
        if let Some(deadline) = self.deadline
            && sent >= deadline
        {
            // Encoded but never sent: nothing to count.
            conn.request_buf().clear();
            return false;
        }
        if self
            .health_check
            .is_some_and(|every| sent.saturating_duration_since(self.last_used) >= every)
        {
            if !self.check_health() {
                return false;
            }
            sent = Instant::now();
        }
        self.last_used = sent;
        let Some(conn) = self.conn.as_mut() else {
            return true;
        };
        let start = batch_started(&mut self.metrics, intended, sent, self.batch_size);
        if let Err(e) = conn.flush() {
            self.fail_batch_from(0, e.class(), sent);
            return true;
        }
        let mut errors = 0;
        let mut demoted = false;
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
                        command: i,
                    };
                    self.workload
                        .on_reply(op, &reply, conn.payload(&reply), &mut rec);
                    if rec.failed {
                        errors += 1;
                        // Sentinel mode: a demoted master answers writes with -READONLY.
                        demoted |= self.sentinel && conn.payload(&reply).starts_with(b"READONLY");
                    }
                }
                Err(e) => {
                    self.fail_batch_from(i, e.class(), sent);
                    return true;
                }
            }
        }
        if errors < self.sent.len() {
            // Ends an outage episode if one is open; a single branch otherwise.
            self.metrics.command_succeeded(conn.reply_received_at());
        }
        if demoted {
            self.drop_demoted();
            return true;
        }
        self.after_batch(errors == self.sent.len());
        true
    }

    /// The connection sat idle longer than `--health-check-interval` (open loop at a low
    /// rate, a long error pause): PING it before sending the encoded batch, and on failure
    /// reconnect and move the batch to the new connection, so no command is lost to a
    /// connection that died while idle. Returns false if the worker should stop.
    #[cold]
    fn check_health(&mut self) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        self.metrics.data().conn.health_checks += 1;
        let Err(e) = conn.ping() else {
            return true;
        };
        let batch = std::mem::take(conn.request_buf());
        self.metrics.data().conn.health_check_failures += 1;
        self.conn = None;
        self.metrics.connection_dropped(Instant::now());
        tracing::info!(worker = self.index, error = %e, "an idle connection failed its health check; reconnecting");
        if !self.reconnect() {
            return false;
        }
        match self.conn.as_mut() {
            Some(conn) => {
                conn.request_buf().extend_from_slice(&batch);
                true
            }
            None => false,
        }
    }

    /// Cluster mode: the batch's units go to the masters of their slots (a batch is split
    /// per node, one write each) and replies are recorded in the order the units were
    /// encoded. MOVED/ASK replies are recorded as what the server answered (cluster_error)
    /// and the unit is sent again where the redirect points. A node that cannot be reached
    /// fails its units at once (not sent) while the other nodes' units go on.
    #[inline]
    fn run_cluster_batch(&mut self) -> bool {
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
        let Some(cluster) = cluster.as_mut() else {
            return false;
        };
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
        let start = batch_started(metrics, intended, sent, *batch_size);
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

    /// Sentinel mode: the run's watcher saw the sentinels name another master. Drops the
    /// connection between batches (nothing in flight); the next batch reconnects there.
    #[cold]
    fn master_moved(&mut self) {
        // A worker that reconnected on its own may already be on the new master.
        if let (Some((watch, _)), Some(target)) = (&self.master_watch, &self.conn_target)
            && watch.master().as_ref() == Some(target)
        {
            return;
        }
        if self.conn.take().is_some() {
            self.metrics.connection_dropped(Instant::now());
            tracing::info!(worker = self.index, "the master moved; reconnecting");
        }
    }

    /// Sentinel mode: the server answered -READONLY, so it is a replica now. The commands are
    /// already counted (cluster_error); drop the connection so the next batch asks the
    /// sentinels for the current master.
    #[cold]
    fn drop_demoted(&mut self) {
        if self.conn.take().is_some() {
            self.metrics.connection_dropped(Instant::now());
            tracing::warn!(
                worker = self.index,
                "the master was demoted (READONLY); asking the sentinels again"
            );
        }
    }

    /// Counts every command of the batch from `first` on as failed with `class` (sent, reply
    /// never read) and drops the connection: it is out of step with the server now. `sent` is
    /// when the batch was sent (the start of an outage episode, see `metrics::outage`).
    #[cold]
    fn fail_batch_from(&mut self, first: usize, class: ErrorClass, sent: Instant) {
        for &op in &self.sent[first..] {
            self.metrics.record_error(op, class);
        }
        if is_outage_class(class) {
            self.metrics
                .outage_failures(sent, (self.sent.len() - first) as u64);
        }
        self.workload.on_connection_lost(class, &mut self.metrics);
        if self.conn.take().is_some() {
            self.metrics.connection_dropped(Instant::now());
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

    /// Reconnects with jittered exponential backoff until it succeeds, the run stops, or
    /// `--retry-attempts` failures in a row make the worker give up for the rest of the run.
    #[cold]
    fn reconnect(&mut self) -> bool {
        loop {
            let delay = self.backoff.next_delay(&mut self.rng);
            if !self.nap_until(Instant::now() + delay) {
                return false;
            }
            let result = connect_noting_target(&self.cfg, &self.client_name);
            self.metrics.connect_attempt(result.is_ok(), Instant::now());
            match result {
                Ok((conn, target)) => {
                    self.conn = Some(conn);
                    self.metrics
                        .set_server(server_label(&self.cfg, target.as_ref()));
                    self.conn_target = target;
                    self.backoff.succeeded();
                    tracing::info!(worker = self.index, "reconnected");
                    return true;
                }
                Err(e) => {
                    tracing::debug!(worker = self.index, error = %e, "reconnect failed");
                    if self.backoff.failed() {
                        tracing::warn!(
                            worker = self.index,
                            attempts = self.backoff.failures(),
                            error = %e,
                            "giving up reconnecting (--retry-attempts); this worker sends nothing more"
                        );
                        self.metrics.gave_up();
                        return false;
                    }
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

/// Records a batch of `units` sent at `sent` (and, in open loop, how late that was against
/// its `intended` start); returns the time its latencies run from.
#[inline]
fn batch_started(
    metrics: &mut ShardWriter,
    intended: Option<Instant>,
    sent: Instant,
    units: usize,
) -> Instant {
    let data = metrics.data();
    data.units += units as u64;
    let start = match intended {
        Some(at) => {
            data.record_lag(sent.saturating_duration_since(at).as_nanos() as u64);
            at
        }
        None => sent,
    };
    metrics.batch_started(start);
    start
}

/// The server a worker's commands go to, for spans: the master in Sentinel mode, the
/// configured server otherwise; none in cluster mode, where the pipeline names each reply's
/// node (`Event::Node`).
fn server_label(cfg: &RunnerConfig, sentinel_master: Option<&(String, u16)>) -> Option<Arc<str>> {
    if cfg.redis.cluster.is_some() {
        return None;
    }
    let (host, port) = match sentinel_master {
        Some((host, port)) => (host.as_str(), *port),
        None => (cfg.redis.host.as_str(), cfg.redis.port),
    };
    Some(crate::config::load::listen_text(host, port).into())
}

/// A new connection and, in Sentinel mode, the master address it went to.
type Noted = (RespConnection<DataStream>, Option<(String, u16)>);

/// Connects where [`crate::client::target`] says; in Sentinel mode also returns that address
/// (the master the connection is to).
fn connect_noting_target(cfg: &RunnerConfig, client_name: &str) -> Result<Noted, ConnectError> {
    let (host, port) = crate::client::target(&cfg.redis)?;
    let conn = connect_to(&cfg.redis, &host, port, client_name)?;
    let target = cfg.redis.sentinel.is_some().then_some((host, port));
    Ok((conn, target))
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
