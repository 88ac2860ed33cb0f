//! An I/O thread: one event loop driving many request/reply workers, each a logical client
//! with its own connection, RNG, schedule and workload state, all recording into the thread's
//! one metrics shard.
//!
//! Per batch a worker encodes its units into its connection's buffer, writes them with one
//! write, and reads replies as the socket becomes readable, timing each reply by the read
//! that brought it. Its connection goes through [`crate::net::Link`] on connect and on every
//! reconnect (backoff with jitter from the worker's RNG, re-resolved from the Sentinel master
//! watch). Timers (open-loop sends, backoff, pauses after failed batches) wake the loop
//! through [`crate::net::Timers`]; deadlines (reply and connect timeouts) are checked by a
//! sweep every few milliseconds. Per command: no allocation, no lock, no formatting, no
//! channel send. Not here: cluster routing and workers with loops of their own (pub/sub
//! subscribers, stream processors), which still run one per OS thread ([`super::worker`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Registry, Token};

use crate::client::ConnectError;
use crate::client::backoff::Backoff;
use crate::client::sentinel::MasterWatch;
use crate::config::RunnerConfig;
use crate::error::ErrorClass;
use crate::metrics::hub::WorkerMeter;
use crate::metrics::outage::is_outage_class;
use crate::metrics::{MetricsHub, OpId, ShardWriter};
use crate::net::conn::Fill;
use crate::net::{Link, Progress, Timers};
use crate::runner::schedule::Schedule;
use crate::shutdown::Shutdown;
use rand_core::SeedableRng;

use crate::workload::{Recorder, RunPlan, WorkerRng, WorkerTask, Workload};

/// The timerfd's token; workers' tokens are their slots.
const TIMER_TOKEN: Token = Token(usize::MAX);
/// Longest wait in the poll: how soon the loop notices a stop request or the reporter's ask.
const MAX_WAIT: Duration = Duration::from_millis(10);
/// How often reply and connect deadlines are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(20);
/// Connection attempts one thread keeps in flight at start: thousands of SYNs at once would
/// overflow the server's accept backlog and cost a retransmit (a second) each.
const START_CONNECTS: usize = 128;
/// Ceiling for the pause after a batch in which every command got an error reply.
const MAX_ERROR_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting to start connecting (start-up only).
    Queued,
    /// The link is connecting.
    Connecting,
    /// Ready, nothing in flight.
    Idle,
    /// Ready, waiting for a timer (the next open-loop slot, a pause after failures).
    Waiting,
    /// A health-check PING is in flight.
    Probing,
    /// A batch is in flight.
    InFlight,
    /// No connection; reconnecting when the timer fires.
    Backoff,
    /// Sends nothing more (stopped, or gave up reconnecting).
    Stopped,
}

/// One request/reply worker.
pub struct Client {
    index: usize,
    /// Its place in the thread's list: its token and timer owner.
    slot: usize,
    name: String,
    workload: Box<dyn Workload>,
    rng: WorkerRng,
    meter: WorkerMeter,
    schedule: Schedule,
    link: Link,
    state: State,
    /// The operation of every command of the batch in flight, in order.
    sent: Vec<OpId>,
    /// Replies of the batch read so far.
    next: usize,
    errors: usize,
    demoted: bool,
    /// When the batch's latencies run from (its intended start in open loop) and when it
    /// was sent.
    start: Instant,
    sent_at: Instant,
    /// The next batch's slot was taken from the schedule (`intended`) and not yet sent.
    planned: bool,
    intended: Option<Instant>,
    /// The timer this worker waits for, if any (older heap entries are stale).
    wake_at: Option<Instant>,
    backoff: Backoff,
    failed_in_a_row: u32,
    /// Sentinel mode: the master generation this connection is for.
    master_seen: u64,
    last_used: Instant,
    /// When the first connection attempt began, until it succeeded.
    init_start: Option<Instant>,
}

/// What a worker's step needs from its thread.
struct Cx<'a> {
    cfg: &'a RunnerConfig,
    registry: &'a Registry,
    timers: &'a mut Timers,
    m: &'a mut ShardWriter,
    watch: Option<&'a MasterWatch>,
    /// Sentinel mode: the master at start, used until the watcher names one.
    master: &'a Option<(String, u16)>,
    batch_size: usize,
    /// Load is running (false while connecting at start).
    running: bool,
    stopping: bool,
    /// Batches that may still start (`run_batches`); `u64::MAX` in a run.
    budget: &'a mut u64,
    /// Batches completed.
    batches: &'a mut u64,
}

/// An I/O thread's loop and its workers.
pub struct IoThread {
    cfg: Arc<RunnerConfig>,
    poll: Poll,
    events: Events,
    timers: Timers,
    clients: Vec<Client>,
    metrics: ShardWriter,
    stop: Shutdown,
    watch: Option<Arc<MasterWatch>>,
    master: Option<(String, u16)>,
    paced_workers: usize,
    budget: u64,
    batches: u64,
    /// How long connecting every worker took at start.
    pub connected_in: Duration,
}

/// A request/reply worker to be driven by an I/O thread: its global index, workload and RNG.
pub struct Assigned {
    pub index: usize,
    pub workload: Box<dyn Workload>,
    pub rng: WorkerRng,
}

/// A worker's context from the thread's fields (a macro: the borrows must stay field by field).
macro_rules! cx {
    ($io:ident, $running:expr, $stopping:expr) => {
        Cx {
            cfg: &$io.cfg,
            registry: $io.poll.registry(),
            timers: &mut $io.timers,
            m: &mut $io.metrics,
            watch: $io.watch.as_deref(),
            master: &$io.master,
            batch_size: $io.cfg.workload.batch_size(),
            running: $running,
            stopping: $stopping,
            budget: &mut $io.budget,
            batches: &mut $io.batches,
        }
    };
}

impl IoThread {
    /// Connects every assigned worker (concurrently) and returns the thread ready to run, or
    /// the first connection error. `shard` is its metrics shard.
    pub fn connect(
        shard: usize,
        assigned: Vec<Assigned>,
        cfg: Arc<RunnerConfig>,
        plan: &RunPlan,
        hub: &Arc<MetricsHub>,
        stop: Shutdown,
    ) -> Result<IoThread, ConnectError> {
        let began = Instant::now();
        let poll = Poll::new()?;
        let timers = Timers::new(poll.registry(), TIMER_TOKEN, assigned.len())?;
        let batch = cfg.workload.batch_size();
        let now = Instant::now();
        let clients: Vec<Client> = assigned
            .into_iter()
            .enumerate()
            .map(|(slot, a)| Client {
                slot,
                name: format!("{}-w{}", cfg.redis.client_name, a.index),
                meter: WorkerMeter::new(a.index),
                index: a.index,
                workload: a.workload,
                rng: a.rng,
                schedule: Schedule::ClosedLoop,
                link: Link::new(),
                state: State::Queued,
                sent: Vec::with_capacity(batch * 4),
                next: 0,
                errors: 0,
                demoted: false,
                start: now,
                sent_at: now,
                planned: false,
                intended: None,
                wake_at: None,
                backoff: Backoff::new(cfg.redis.retry),
                failed_in_a_row: 0,
                master_seen: plan.master_watch.as_ref().map_or(0, |w| w.generation()),
                last_used: now,
                init_start: None,
            })
            .collect();
        let master = match cfg.redis.sentinel {
            Some(_) => Some(crate::client::target(&cfg.redis)?),
            None => None,
        };
        let metrics = hub.thread_writer(shard, clients.len());
        let mut io = IoThread {
            events: Events::with_capacity(clients.len().clamp(64, 1024)),
            poll,
            timers,
            clients,
            metrics,
            stop,
            watch: plan.master_watch.clone(),
            master,
            paced_workers: plan.paced_workers,
            budget: u64::MAX,
            batches: 0,
            connected_in: Duration::ZERO,
            cfg,
        };
        io.connect_all()?;
        io.connected_in = began.elapsed();
        Ok(io)
    }

    /// Connects workers `indices` of `plan` on one thread (their tasks and RNGs made as a run
    /// makes them), recording into shard `shard`. For tests that drive a thread directly.
    pub fn for_workers(
        shard: usize,
        indices: std::ops::Range<usize>,
        cfg: Arc<RunnerConfig>,
        plan: &RunPlan,
        hub: &Arc<MetricsHub>,
        stop: Shutdown,
    ) -> Result<IoThread, ConnectError> {
        let assigned = indices
            .filter_map(|index| match assign(&cfg, plan, index) {
                (Some(a), _) => Some(a),
                _ => None,
            })
            .collect();
        IoThread::connect(shard, assigned, cfg, plan, hub, stop)
    }

    /// How many workers this thread drives.
    pub fn workers(&self) -> usize {
        self.clients.len()
    }

    fn connect_all(&mut self) -> Result<(), ConnectError> {
        let mut queue: VecDeque<usize> = (0..self.clients.len()).collect();
        let mut connecting = 0usize;
        let mut up = 0usize;
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        while up < self.clients.len() {
            while connecting < START_CONNECTS
                && let Some(i) = queue.pop_front()
            {
                connecting += 1;
                let mut cx = cx!(self, false, false);
                let c = &mut self.clients[i];
                c.init_start = Some(Instant::now());
                cx.m.swap_meter(&mut c.meter);
                let failed = c.start_connect(&mut cx);
                cx.m.swap_meter(&mut c.meter);
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            if self.stop.is_stopping() {
                return Err(ConnectError::Io(std::io::Error::other(
                    "stopped while connecting",
                )));
            }
            self.poll.poll(&mut self.events, Some(SWEEP_EVERY))?;
            let IoThread {
                events, clients, ..
            } = self;
            let mut failed = None;
            for event in events.iter() {
                let i = event.token().0;
                if event.token() == TIMER_TOKEN || i >= clients.len() {
                    continue;
                }
                let mut cx = cx!(self, false, false);
                let c = &mut clients[i];
                if c.state != State::Connecting {
                    continue;
                }
                cx.m.swap_meter(&mut c.meter);
                match c
                    .link
                    .on_event(cx.registry, Token(i), &cx.cfg.redis, &c.name)
                {
                    Progress::Pending => {}
                    Progress::Up => {
                        c.connected(&mut cx);
                        connecting -= 1;
                        up += 1;
                    }
                    Progress::Failed(e) => failed = Some(e),
                }
                cx.m.swap_meter(&mut c.meter);
                if failed.is_some() {
                    break;
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            let now = Instant::now();
            if now >= next_sweep {
                next_sweep = now + SWEEP_EVERY;
                for c in self.clients.iter_mut() {
                    if c.state == State::Connecting
                        && c.link.expired(now, self.cfg.redis.connect_timeout)
                    {
                        return Err(c.link.time_out(self.poll.registry()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Sends load from `start` until the stop flag is set or the run's duration has passed,
    /// then waits (bounded by the socket timeout) for the replies in flight and hands in the
    /// thread's metrics.
    pub fn run(&mut self, start: Instant) {
        let warmup = self.cfg.workload.warmup.unwrap_or(Duration::ZERO);
        let deadline = self.cfg.test.duration.map(|d| start + warmup + d);
        let batch = self.cfg.workload.batch_size();
        for c in self.clients.iter_mut() {
            c.schedule = Schedule::new(
                self.cfg.test.target_ops_per_second,
                self.paced_workers,
                batch,
                c.index,
                start,
            );
        }
        self.drive(deadline);
        self.finish();
    }

    /// Runs until `n` more batches have been sent and answered, in closed loop. For tests
    /// that measure the loop itself, such as the allocation count.
    pub fn run_batches(&mut self, n: u64) {
        self.budget = n;
        let before = self.batches;
        self.kick_all(false);
        while self.batches - before < n && !self.stop.is_stopping() {
            self.drive_once(None, false);
            if self.budget == 0 && self.clients.iter().all(|c| !c.busy()) {
                break;
            }
        }
        self.budget = u64::MAX;
    }

    fn drive(&mut self, deadline: Option<Instant>) {
        let mut stopping = false;
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        self.kick_all(false);
        loop {
            self.metrics.maybe_publish();
            let now = Instant::now();
            if !stopping && (self.stop.is_stopping() || deadline.is_some_and(|d| now >= d)) {
                stopping = true;
                self.kick_all(true);
            }
            if stopping && (self.stop.is_aborted() || self.clients.iter().all(|c| !c.busy())) {
                return;
            }
            self.drive_once(deadline, stopping);
            let now = Instant::now();
            if now >= next_sweep {
                next_sweep = now + SWEEP_EVERY;
                self.sweep(now, stopping);
            }
        }
    }

    /// Lets idle workers send (or, when stopping, stop).
    fn kick_all(&mut self, stopping: bool) {
        let now = Instant::now();
        let IoThread { clients, .. } = self;
        for c in clients.iter_mut() {
            let mut cx = cx!(self, true, stopping);
            cx.m.swap_meter(&mut c.meter);
            match c.state {
                State::Idle => c.kick(&mut cx, now),
                State::Waiting | State::Backoff | State::Connecting | State::Queued if stopping => {
                    c.link.close(cx.registry);
                    c.state = State::Stopped;
                }
                _ => {}
            }
            cx.m.swap_meter(&mut c.meter);
        }
    }

    /// One poll: handles readiness, then due timers.
    fn drive_once(&mut self, deadline: Option<Instant>, stopping: bool) {
        let _ = deadline;
        let wait = self.timers.arm(Instant::now(), MAX_WAIT);
        if let Err(e) = self.poll.poll(&mut self.events, Some(wait)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                tracing::error!(error = %e, "the I/O thread's poll failed");
            }
            return;
        }
        let IoThread {
            events, clients, ..
        } = self;
        for event in events.iter() {
            if event.token() == TIMER_TOKEN {
                self.timers.fired();
                continue;
            }
            let i = event.token().0;
            let Some(c) = clients.get_mut(i) else {
                continue;
            };
            let mut cx = cx!(self, true, stopping);
            cx.m.swap_meter(&mut c.meter);
            c.on_event(&mut cx);
            cx.m.swap_meter(&mut c.meter);
        }
        let now = Instant::now();
        while let Some((at, i)) = self.timers.pop_due(now) {
            let c = &mut clients[i];
            if c.wake_at != Some(at) {
                continue;
            }
            c.wake_at = None;
            let mut cx = cx!(self, true, stopping);
            cx.m.swap_meter(&mut c.meter);
            c.on_timer(&mut cx, now);
            cx.m.swap_meter(&mut c.meter);
        }
    }

    /// Fails replies and connection attempts that took longer than their timeouts.
    fn sweep(&mut self, now: Instant, stopping: bool) {
        let reply_timeout = self.cfg.redis.socket_timeout;
        let connect_timeout = self.cfg.redis.connect_timeout;
        let IoThread { clients, .. } = self;
        for c in clients.iter_mut() {
            let late = match c.state {
                State::InFlight | State::Probing => {
                    let progress = c
                        .link
                        .conn()
                        .map_or(c.sent_at, |conn| conn.reply_received_at().max(c.sent_at));
                    now.saturating_duration_since(progress) >= reply_timeout
                }
                State::Connecting => c.link.expired(now, connect_timeout),
                _ => false,
            };
            if !late {
                continue;
            }
            let mut cx = cx!(self, true, stopping);
            cx.m.swap_meter(&mut c.meter);
            c.timed_out(&mut cx);
            cx.m.swap_meter(&mut c.meter);
        }
    }

    /// Closes open outage episodes and hands in the thread's data.
    fn finish(&mut self) {
        for c in self.clients.iter_mut() {
            self.metrics.swap_meter(&mut c.meter);
            self.metrics.worker_done();
            self.metrics.swap_meter(&mut c.meter);
        }
        self.metrics.finish();
    }
}

impl Client {
    /// Something is in flight that the thread must wait for when stopping.
    fn busy(&self) -> bool {
        matches!(self.state, State::InFlight | State::Probing)
    }

    fn set_timer(&mut self, cx: &mut Cx<'_>, at: Instant) {
        self.wake_at = Some(at);
        cx.timers.add(at, self.slot);
    }

    /// Starts a connection attempt; returns the error at start-up (a run's first connect
    /// failure ends the run), handles it itself while running.
    fn start_connect(&mut self, cx: &mut Cx<'_>) -> Option<ConnectError> {
        let (host, port) = match (cx.watch.and_then(MasterWatch::master), cx.master) {
            (Some(m), _) => m,
            (None, Some(m)) => m.clone(),
            (None, None) => (cx.cfg.redis.host.clone(), cx.cfg.redis.port),
        };
        self.state = State::Connecting;
        match self
            .link
            .start(cx.registry, Token(self.slot), &cx.cfg.redis, &host, port)
        {
            Progress::Failed(e) => self.connect_failed(cx, e),
            _ => None,
        }
    }

    fn connected(&mut self, cx: &mut Cx<'_>) {
        let at = Instant::now();
        cx.m.connect_attempt(true, at);
        if let Some(since) = self.init_start.take() {
            cx.m.client_initialized(since, at);
        } else {
            tracing::info!(worker = self.index, "reconnected");
        }
        let (host, port) = self.link.target();
        cx.m.set_server(Some(crate::config::load::listen_text(host, port).into()));
        self.backoff.succeeded();
        self.state = State::Idle;
        self.last_used = at;
        if let Some(w) = cx.watch {
            self.master_seen = w.generation();
        }
    }

    /// A connection attempt failed.
    #[cold]
    fn connect_failed(&mut self, cx: &mut Cx<'_>, e: ConnectError) -> Option<ConnectError> {
        if !cx.running {
            return Some(e);
        }
        cx.m.connect_attempt(false, Instant::now());
        tracing::debug!(worker = self.index, error = %e, "reconnect failed");
        if self.backoff.failed() {
            tracing::warn!(
                worker = self.index,
                attempts = self.backoff.failures(),
                error = %e,
                "giving up reconnecting (--retry-attempts); this worker sends nothing more"
            );
            cx.m.gave_up();
            self.state = State::Stopped;
            return None;
        }
        self.reconnect_later(cx);
        None
    }

    /// Waits a jittered backoff, then connects again.
    fn reconnect_later(&mut self, cx: &mut Cx<'_>) {
        if cx.stopping {
            self.state = State::Stopped;
            return;
        }
        let delay = self.backoff.next_delay(&mut self.rng);
        self.state = State::Backoff;
        self.set_timer(cx, Instant::now() + delay);
    }

    /// The connection is lost: it is closed and a reconnect scheduled.
    #[cold]
    fn drop_connection(&mut self, cx: &mut Cx<'_>) {
        self.link.close(cx.registry);
        cx.m.connection_dropped(Instant::now());
        self.reconnect_later(cx);
    }

    fn on_timer(&mut self, cx: &mut Cx<'_>, now: Instant) {
        match self.state {
            State::Backoff => {
                self.start_connect(cx);
            }
            State::Waiting => {
                self.state = State::Idle;
                self.kick(cx, now);
            }
            _ => {}
        }
    }

    fn on_event(&mut self, cx: &mut Cx<'_>) {
        match self.state {
            State::Connecting => {
                match self
                    .link
                    .on_event(cx.registry, Token(self.slot), &cx.cfg.redis, &self.name)
                {
                    Progress::Pending => {}
                    Progress::Up => {
                        self.connected(cx);
                        let now = Instant::now();
                        self.kick(cx, now);
                    }
                    Progress::Failed(e) => {
                        self.connect_failed(cx, e);
                    }
                }
            }
            State::InFlight | State::Probing => self.receive(cx),
            _ => {}
        }
    }

    /// Ready and idle: sends the next batch now, or waits for its slot.
    #[inline]
    fn kick(&mut self, cx: &mut Cx<'_>, now: Instant) {
        if cx.stopping {
            self.state = State::Stopped;
            return;
        }
        if *cx.budget == 0 {
            return;
        }
        if let Some(watch) = cx.watch {
            let generation = watch.generation();
            if generation != self.master_seen {
                self.master_seen = generation;
                if watch.master().as_ref().map(|(h, p)| (h.as_str(), *p))
                    != Some(self.link.target())
                {
                    tracing::info!(worker = self.index, "the master moved; reconnecting");
                    self.drop_connection(cx);
                    return;
                }
            }
        }
        if !self.planned {
            self.intended = self.schedule.next_start();
            self.planned = true;
        }
        if let Some(at) = self.intended
            && at > now
        {
            self.state = State::Waiting;
            self.set_timer(cx, at);
            return;
        }
        self.send_batch(cx, now);
    }
}

impl Client {
    /// Encodes and writes a batch (or first a health-check PING if the connection sat idle
    /// past `--health-check-interval`).
    #[inline]
    fn send_batch(&mut self, cx: &mut Cx<'_>, now: Instant) {
        let Some(conn) = self.link.conn() else {
            self.reconnect_later(cx);
            return;
        };
        if cx
            .cfg
            .redis
            .health_check_interval
            .is_some_and(|every| now.saturating_duration_since(self.last_used) >= every)
        {
            cx.m.data().conn.health_checks += 1;
            conn.request_buf()
                .extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
            self.sent_at = now;
            self.last_used = now;
            self.state = State::Probing;
            if let Err(e) = conn.send() {
                self.health_failed(cx, &e.to_string());
            }
            return;
        }
        *cx.budget = cx.budget.saturating_sub(1);
        self.sent.clear();
        let out = conn.request_buf();
        for _ in 0..cx.batch_size {
            self.workload
                .encode_next(&mut self.rng, out, &mut self.sent);
        }
        let sent = Instant::now();
        self.planned = false;
        self.start = batch_started(cx.m, self.intended, sent, cx.batch_size);
        self.sent_at = sent;
        self.last_used = sent;
        self.next = 0;
        self.errors = 0;
        self.demoted = false;
        self.state = State::InFlight;
        if let Err(e) = conn.send() {
            self.fail_batch(cx, e.class());
        }
    }

    /// Readiness while a batch or PING is in flight: writes what is left, reads replies.
    #[inline]
    fn receive(&mut self, cx: &mut Cx<'_>) {
        let Some(conn) = self.link.conn() else {
            return;
        };
        if conn.write_pending()
            && let Err(e) = conn.send()
        {
            return self.lost(cx, e.class(), &e.to_string());
        }
        loop {
            let fill = match conn.fill() {
                Ok(f) => f,
                Err(e) => return self.lost(cx, e.class(), &e.to_string()),
            };
            if self.state == State::Probing {
                match conn.next_reply(false) {
                    // Any reply, even an error, means the connection works.
                    Ok(Some(_)) => {
                        self.state = State::Idle;
                        let now = Instant::now();
                        return self.send_batch(cx, now);
                    }
                    Ok(None) if fill == Fill::More => continue,
                    Ok(None) => return,
                    Err(e) => return self.health_failed(cx, &e.to_string()),
                }
            }
            while self.next < self.sent.len() {
                let reply = match conn.next_reply(false) {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(e) => return self.lost(cx, e.class(), &e.to_string()),
                };
                let op = self.sent[self.next];
                let received = conn.reply_received_at();
                let payload = conn.payload(&reply);
                let mut rec = Recorder {
                    metrics: cx.m,
                    latency_ns: received.saturating_duration_since(self.start).as_nanos() as u64,
                    service_ns: received.saturating_duration_since(self.sent_at).as_nanos() as u64,
                    failed: false,
                    command: self.next,
                };
                self.workload.on_reply(op, &reply, payload, &mut rec);
                if rec.failed {
                    self.errors += 1;
                    // Sentinel mode: a demoted master answers writes with -READONLY.
                    self.demoted |= cx.watch.is_some() && payload.starts_with(b"READONLY");
                }
                self.next += 1;
            }
            if self.next == self.sent.len() {
                let at = conn.reply_received_at();
                return self.batch_done(cx, at);
            }
            if fill == Fill::Drained {
                return;
            }
        }
    }

    /// Every reply of the batch is in.
    #[inline]
    fn batch_done(&mut self, cx: &mut Cx<'_>, at: Instant) {
        *cx.batches += 1;
        let n = self.sent.len();
        if self.errors < n {
            // Ends an outage episode if one is open; a single branch otherwise.
            cx.m.command_succeeded(at);
        }
        if self.demoted {
            tracing::warn!(
                worker = self.index,
                "the master was demoted (READONLY); asking the sentinels again"
            );
            self.state = State::Idle;
            return self.drop_connection(cx);
        }
        self.state = State::Idle;
        if self.errors >= n && n > 0 {
            // A server that rejects everything is not hammered in a tight loop.
            self.failed_in_a_row = self.failed_in_a_row.saturating_add(1);
            let exp = self.failed_in_a_row.min(10);
            let pause = (Duration::from_micros(100) * (1 << exp)).min(MAX_ERROR_BACKOFF);
            self.state = State::Waiting;
            return self.set_timer(cx, at + pause);
        }
        self.failed_in_a_row = 0;
        self.kick(cx, at);
    }

    /// The connection failed with a batch in flight.
    #[cold]
    fn lost(&mut self, cx: &mut Cx<'_>, class: ErrorClass, why: &str) {
        if self.state == State::Probing {
            return self.health_failed(cx, why);
        }
        tracing::warn!(worker = self.index, error_type = %class, error = why, "connection lost; reconnecting");
        self.fail_batch(cx, class);
    }

    /// Counts every command of the batch from the next unanswered one on as failed with
    /// `class` (sent, reply never read) and drops the connection: it is out of step with the
    /// server now.
    #[cold]
    fn fail_batch(&mut self, cx: &mut Cx<'_>, class: ErrorClass) {
        let first = self.next.min(self.sent.len());
        for &op in &self.sent[first..] {
            cx.m.record_error(op, class);
        }
        if is_outage_class(class) {
            cx.m.outage_failures(self.sent_at, (self.sent.len() - first) as u64);
        }
        self.workload.on_connection_lost(class, cx.m);
        self.next = self.sent.len();
        self.state = State::Idle;
        self.drop_connection(cx);
    }

    /// The health-check PING found the connection dead: replace it before the batch, which
    /// keeps its slot and goes out on the new connection.
    #[cold]
    fn health_failed(&mut self, cx: &mut Cx<'_>, why: &str) {
        cx.m.data().conn.health_check_failures += 1;
        tracing::info!(
            worker = self.index,
            error = why,
            "an idle connection failed its health check; reconnecting"
        );
        self.state = State::Idle;
        self.drop_connection(cx);
    }

    /// A reply or a connection attempt ran past its timeout.
    #[cold]
    fn timed_out(&mut self, cx: &mut Cx<'_>) {
        match self.state {
            State::Connecting => {
                let e = self.link.time_out(cx.registry);
                self.connect_failed(cx, e);
            }
            State::Probing => self.health_failed(cx, "no reply to PING in time"),
            State::InFlight => {
                tracing::warn!(worker = self.index, error_type = %ErrorClass::Timeout, "no reply in time; reconnecting");
                self.fail_batch(cx, ErrorClass::Timeout);
            }
            _ => {}
        }
    }
}

/// Makes worker `index`'s task and RNG: an [`Assigned`] request/reply worker for an I/O
/// thread, or (second) the task of a worker that needs a thread of its own.
pub fn assign(
    cfg: &RunnerConfig,
    plan: &RunPlan,
    index: usize,
) -> (Option<Assigned>, Option<(WorkerTask, WorkerRng)>) {
    let mut rng = WorkerRng::seed_from_u64(super::worker::worker_seed(cfg.test.seed, index));
    match crate::workload::build(cfg, plan, index, &mut rng) {
        WorkerTask::Requests(workload) if plan.cluster_watch.is_none() => (
            Some(Assigned {
                index,
                workload,
                rng,
            }),
            None,
        ),
        task => (None, Some((task, rng))),
    }
}

/// Records a batch of `units` sent at `sent` (and, in open loop, how late that was against
/// its `intended` start); returns the time its latencies run from.
#[inline]
pub(crate) fn batch_started(
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
