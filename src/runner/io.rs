//! An I/O thread: one event loop driving many workers, each a logical client with its own
//! connection, RNG and state, all recording into the thread's one metrics shard.
//!
//! Every worker's connection goes through one lifecycle ([`Life`]): [`crate::net::Link`] on
//! connect and on every reconnect (backoff with jitter from the worker's RNG, give up after
//! `--retry-attempts`, the address re-resolved from the Sentinel master watch, which also
//! makes workers on a moved master reconnect). What a worker does with a ready connection is
//! its role: request/reply batches ([`super::requests`]), a pub/sub subscription
//! ([`super::listener`]) or a stream consumer ([`super::consumer`]). Timers (open-loop sends, backoff, pauses) wake the loop through
//! [`crate::net::Timers`]; deadlines (reply, connect and health-check timeouts) and the
//! end-of-run reading are checked by a sweep every few milliseconds. Per command: no
//! allocation, no lock, no formatting, no channel send. Not here: cluster routing, which still
//! runs one worker per OS thread ([`super::worker`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Registry, Token};
use rand_core::SeedableRng;

use crate::client::ConnectError;
use crate::client::backoff::Backoff;
use crate::client::sentinel::MasterWatch;
use crate::config::RunnerConfig;
use crate::metrics::hub::WorkerMeter;
use crate::metrics::{MetricsHub, ShardWriter};
use crate::net::{Link, Progress, Timers};
use crate::runner::consumer::Consumer;
use crate::runner::listener::Listener;
use crate::runner::requests::Requests;
use crate::shutdown::Shutdown;
use crate::workload::pubsub_subscriber::Subscriber;
use crate::workload::stream_request_reply::processor::Processor;
use crate::workload::{RunPlan, WorkerRng, WorkerTask, Workload};

/// The timerfd's token; workers' tokens are their slots.
const TIMER_TOKEN: Token = Token(usize::MAX);
/// Longest wait in the poll: how soon the loop notices a stop request or the reporter's ask.
const MAX_WAIT: Duration = Duration::from_millis(10);
/// How often reply and connect deadlines are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(20);
/// Connection attempts one thread keeps in flight at start: thousands of SYNs at once would
/// overflow the server's accept backlog and cost a retransmit (a second) each.
const START_CONNECTS: usize = 128;

/// Where a worker is in its lifecycle and its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Waiting to start connecting (start-up only).
    Queued,
    /// The link is connecting.
    Connecting,
    /// No connection; reconnecting when the timer fires.
    Backoff,
    /// Does nothing more (stopped, or gave up reconnecting).
    Stopped,
    /// Requests: ready, nothing in flight.
    Idle,
    /// Requests: ready, waiting for a timer (the next open-loop slot, a pause after failures).
    Waiting,
    /// Requests: a health-check PING is in flight.
    Probing,
    /// Requests: a batch is in flight.
    InFlight,
    /// Subscriber: (P)SUBSCRIBE sent, reading.
    Listening,
    /// Processor: connected, reading and answering requests.
    Processing,
    /// Subscriber or processor: the run stopped; reading (answering) what is still on its
    /// way.
    Draining,
}

/// A worker's connection lifecycle and what every role shares.
pub(super) struct Life {
    pub index: usize,
    /// Its place in the thread's list: its token and timer owner.
    pub slot: usize,
    pub name: String,
    pub rng: WorkerRng,
    pub meter: WorkerMeter,
    pub link: Link,
    pub state: State,
    /// The timer this worker waits for, if any (older heap entries are stale).
    pub wake_at: Option<Instant>,
    backoff: Backoff,
    /// Sentinel mode: the master generation this connection is for.
    master_seen: u64,
    /// When the first connection attempt began, until it succeeded.
    pub init_start: Option<Instant>,
}

/// Per-worker log lines of one thread (connection lost, reconnected, master moved): a few a
/// second are written, the rest counted and summed up once a second, so that an outage of
/// 10,000 connections is a handful of lines, not 20,000.
pub(super) struct Chatter {
    since: Instant,
    written: u32,
    held: u64,
}

/// Per-worker lines a thread writes per second before it only counts them.
const CHATTER_PER_SECOND: u32 = 8;

impl Chatter {
    fn new() -> Self {
        Chatter {
            since: Instant::now(),
            written: 0,
            held: 0,
        }
    }

    /// Whether to write this per-worker line now (false: it is counted instead).
    #[cold]
    pub(super) fn allow(&mut self) -> bool {
        if self.written < CHATTER_PER_SECOND {
            self.written += 1;
            return true;
        }
        self.held += 1;
        false
    }

    /// Once a second (and at the end, `force`): says how many lines were held back, and opens
    /// the next second.
    fn tick(&mut self, now: Instant, thread: usize, force: bool) {
        if !force && now.saturating_duration_since(self.since) < Duration::from_secs(1) {
            return;
        }
        if self.held > 0 {
            tracing::warn!(
                thread,
                lines = self.held,
                "more worker connection events in the last second (lost, reconnected, moved); the first {CHATTER_PER_SECOND} were logged"
            );
        }
        *self = Chatter {
            since: now,
            written: 0,
            held: 0,
        };
    }
}

/// What a worker's step needs from its thread.
pub(super) struct Cx<'a> {
    pub cfg: &'a RunnerConfig,
    pub registry: &'a Registry,
    pub timers: &'a mut Timers,
    pub m: &'a mut ShardWriter,
    pub watch: Option<&'a MasterWatch>,
    /// Sentinel mode: the master at start, used until the watcher names one.
    pub master: &'a Option<(String, u16)>,
    pub batch_size: usize,
    /// Load is running (false while connecting at start).
    pub running: bool,
    pub stopping: bool,
    /// Batches that may still start (`run_batches`); `u64::MAX` in a run.
    pub budget: &'a mut u64,
    /// Batches completed.
    pub batches: &'a mut u64,
    /// Rate limit for per-worker log lines.
    pub chatter: &'a mut Chatter,
}

/// What a worker does with its connection.
enum Role {
    Requests(Box<Requests>),
    Listen(Box<Listener>),
    Process(Box<Consumer>),
}

struct Client {
    life: Life,
    role: Role,
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
    chatter: Chatter,
    /// Its metrics shard (names it in logs).
    shard: usize,
    /// How long connecting every worker took at start.
    pub connected_in: Duration,
}

/// A worker to be driven by an I/O thread: its global index, task and RNG.
pub struct Assigned {
    pub index: usize,
    pub task: Task,
    pub rng: WorkerRng,
}

/// What an I/O thread can drive.
pub enum Task {
    Requests(Box<dyn Workload>),
    Subscriber(Box<Subscriber>),
    Processor(Box<Processor>),
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
            chatter: &mut $io.chatter,
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
        let clients: Vec<Client> = assigned
            .into_iter()
            .enumerate()
            .map(|(slot, a)| Client {
                life: Life {
                    slot,
                    name: format!("{}-w{}", cfg.redis.client_name, a.index),
                    meter: WorkerMeter::new(a.index),
                    index: a.index,
                    rng: a.rng,
                    link: Link::new(),
                    state: State::Queued,
                    wake_at: None,
                    backoff: Backoff::new(cfg.redis.retry),
                    master_seen: plan.master_watch.as_ref().map_or(0, |w| w.generation()),
                    init_start: None,
                },
                role: match a.task {
                    Task::Requests(w) => Role::Requests(Box::new(Requests::new(w, batch))),
                    Task::Subscriber(s) => Role::Listen(Box::new(Listener::new(s))),
                    Task::Processor(p) => Role::Process(Box::new(Consumer::new(p))),
                },
            })
            .collect();
        let master = match cfg.redis.sentinel {
            Some(_) => Some(crate::client::target(&cfg.redis)?),
            None => None,
        };
        let mut clients = clients;
        for c in clients.iter_mut() {
            if let Role::Process(p) = &mut c.role {
                p.prepare(&c.life)?;
            }
        }
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
            chatter: Chatter::new(),
            shard,
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
            .filter_map(|index| assign(&cfg, plan, index).ok())
            .collect();
        IoThread::connect(shard, assigned, cfg, plan, hub, stop)
    }

    /// Connects every worker, [`START_CONNECTS`] at a time; a worker counts as up when its
    /// role is ready for load (a subscriber once every channel is confirmed, so that no
    /// message is published before it listens).
    fn connect_all(&mut self) -> Result<(), ConnectError> {
        let mut queue: VecDeque<usize> = (0..self.clients.len()).collect();
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        loop {
            let pending = self.clients.iter().filter(|c| !c.ready()).count();
            if pending == 0 {
                return Ok(());
            }
            let connecting = pending - queue.len();
            for _ in connecting..START_CONNECTS {
                let Some(i) = queue.pop_front() else {
                    break;
                };
                let mut cx = cx!(self, false, false);
                let c = &mut self.clients[i];
                c.life.init_start = Some(Instant::now());
                if let Some(e) = c.with(&mut cx, |life, _, cx| life.start_connect(cx)) {
                    return Err(e);
                }
            }
            if self.stop.is_stopping() {
                return Err(ConnectError::Io(std::io::Error::other(
                    "stopped while connecting",
                )));
            }
            self.poll.poll(&mut self.events, Some(SWEEP_EVERY))?;
            if let Some(e) = self.handle_events(false, false) {
                return Err(e);
            }
            let now = Instant::now();
            if now >= next_sweep {
                next_sweep = now + SWEEP_EVERY;
                let IoThread { clients, .. } = self;
                for c in clients.iter_mut() {
                    let mut cx = cx!(self, false, false);
                    if let Some(e) = c.sweep(&mut cx, now) {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Sends load from `start` until the stop flag is set or the run's duration has passed,
    /// then waits (bounded by the socket timeout) for the replies in flight and hands in the
    /// thread's metrics.
    pub fn run(&mut self, start: Instant) {
        let warmup = self.cfg.workload.warmup.unwrap_or(Duration::ZERO);
        let deadline = self.cfg.test.duration.map(|d| start + warmup + d);
        let (target, paced) = (self.cfg.test.target_ops_per_second, self.paced_workers);
        let batch = self.cfg.workload.batch_size();
        for c in self.clients.iter_mut() {
            if let Role::Requests(r) = &mut c.role {
                r.schedule(target, paced, batch, c.life.index, start);
            }
        }
        self.metrics.count_io_time();
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
            self.drive_once(false);
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
            if stopping {
                // Stopped workers' workloads learn it now, not when the thread ends: a
                // publisher's final count is what a subscriber on this thread waits for.
                for c in self.clients.iter_mut() {
                    if let Role::Requests(r) = &mut c.role {
                        r.retire_if_stopped(&c.life);
                    }
                }
                if self.stop.is_aborted() || self.clients.iter().all(|c| !c.busy()) {
                    return;
                }
            }
            self.drive_once(stopping);
            let now = Instant::now();
            if now >= next_sweep {
                next_sweep = now + SWEEP_EVERY;
                let IoThread { clients, .. } = self;
                for c in clients.iter_mut() {
                    let mut cx = cx!(self, true, stopping);
                    c.sweep(&mut cx, now);
                }
                self.chatter.tick(now, self.shard, false);
            }
        }
    }

    /// Lets ready workers start (or, when stopping, stop).
    fn kick_all(&mut self, stopping: bool) {
        let now = Instant::now();
        let IoThread { clients, .. } = self;
        for c in clients.iter_mut() {
            let mut cx = cx!(self, true, stopping);
            c.kick(&mut cx, now);
        }
    }

    /// Hands the last poll's readiness events to their workers; returns the first connection
    /// error of a worker at start-up (never while `running`).
    fn handle_events(&mut self, running: bool, stopping: bool) -> Option<ConnectError> {
        let IoThread {
            events, clients, ..
        } = self;
        for event in events.iter() {
            if event.token() == TIMER_TOKEN {
                self.timers.fired();
                continue;
            }
            let Some(c) = clients.get_mut(event.token().0) else {
                continue;
            };
            if event.is_read_closed() || event.is_error() {
                c.life.link.peer_closed();
            }
            let mut cx = cx!(self, running, stopping);
            if let Some(e) = c.on_event(&mut cx) {
                return Some(e);
            }
        }
        None
    }

    /// One poll: handles readiness, then due timers.
    fn drive_once(&mut self, stopping: bool) {
        let before = Instant::now();
        self.timers.arm(before);
        let polled = self.poll.poll(&mut self.events, Some(MAX_WAIT));
        self.metrics.waited(before.elapsed());
        if let Err(e) = polled {
            if e.kind() != std::io::ErrorKind::Interrupted {
                tracing::error!(error = %e, "the I/O thread's poll failed");
            }
            return;
        }
        self.handle_events(true, stopping);
        let now = Instant::now();
        let IoThread { clients, .. } = self;
        while let Some((at, i)) = self.timers.pop_due(now) {
            let c = &mut clients[i];
            if c.life.wake_at != Some(at) {
                continue;
            }
            c.life.wake_at = None;
            let mut cx = cx!(self, true, stopping);
            c.on_timer(&mut cx, now);
        }
    }

    /// Closes open outage episodes and hands in the thread's data.
    fn finish(&mut self) {
        let IoThread { clients, .. } = self;
        for c in clients.iter_mut() {
            let mut cx = cx!(self, true, true);
            c.with(&mut cx, |_, role, cx| {
                if let Role::Listen(l) = role {
                    l.finish(cx);
                }
                cx.m.worker_done();
            });
        }
        self.metrics.finish();
        self.chatter.tick(Instant::now(), self.shard, true);
    }
}

impl Client {
    /// Runs `f` with the worker's meter swapped into the thread's shard.
    #[inline]
    fn with<R>(
        &mut self,
        cx: &mut Cx<'_>,
        f: impl FnOnce(&mut Life, &mut Role, &mut Cx<'_>) -> R,
    ) -> R {
        cx.m.swap_meter(&mut self.life.meter);
        let r = f(&mut self.life, &mut self.role, cx);
        cx.m.swap_meter(&mut self.life.meter);
        r
    }

    /// Ready for load (start-up).
    fn ready(&self) -> bool {
        match &self.role {
            Role::Requests(_) => self.life.state == State::Idle,
            Role::Listen(l) => self.life.state == State::Listening && l.subscribed(),
            Role::Process(_) => self.life.state == State::Processing,
        }
    }

    /// Something is in flight that the thread must wait for when stopping.
    fn busy(&self) -> bool {
        matches!(
            self.life.state,
            State::InFlight | State::Probing | State::Draining
        )
    }

    /// Readiness of the worker's socket. Returns a connection error at start-up.
    #[inline]
    fn on_event(&mut self, cx: &mut Cx<'_>) -> Option<ConnectError> {
        self.with(cx, |life, role, cx| {
            if life.state == State::Connecting {
                return match life.link.on_event(
                    cx.registry,
                    Token(life.slot),
                    &cx.cfg.redis,
                    &life.name,
                ) {
                    Progress::Pending => None,
                    Progress::Up => {
                        let reconnected = life.init_start.is_none();
                        life.connected(cx);
                        match role {
                            Role::Requests(r) => {
                                life.state = State::Idle;
                                r.fresh_connection();
                                if cx.running {
                                    r.kick(life, cx, Instant::now());
                                }
                                None
                            }
                            Role::Listen(l) => l.up(life, cx),
                            Role::Process(p) => {
                                p.up(life, cx, reconnected);
                                None
                            }
                        }
                    }
                    Progress::Failed(e) => life.connect_failed(cx, e),
                };
            }
            match role {
                Role::Requests(r) => {
                    r.receive(life, cx);
                    None
                }
                Role::Listen(l) => l.receive(life, cx),
                Role::Process(p) => {
                    p.receive(life, cx);
                    None
                }
            }
        })
    }

    fn on_timer(&mut self, cx: &mut Cx<'_>, now: Instant) {
        self.with(cx, |life, role, cx| match (life.state, role) {
            (State::Backoff, _) => {
                life.start_connect(cx);
            }
            (State::Waiting, Role::Requests(r)) => {
                life.state = State::Idle;
                r.kick(life, cx, now);
            }
            (_, Role::Process(p)) => p.proceed(life, cx, now),
            _ => {}
        });
    }

    fn kick(&mut self, cx: &mut Cx<'_>, now: Instant) {
        self.with(cx, |life, role, cx| {
            if cx.stopping && matches!(role, Role::Requests(_)) {
                match life.state {
                    State::Waiting
                    | State::Backoff
                    | State::Connecting
                    | State::Queued
                    | State::Idle => {
                        life.link.close(cx.registry);
                        life.state = State::Stopped;
                    }
                    _ => {}
                }
            }
            match role {
                Role::Requests(r) if life.state == State::Idle => r.kick(life, cx, now),
                Role::Listen(l) if cx.stopping => l.stop(life, cx, now),
                Role::Process(p) if cx.stopping => p.stop(life, cx, now),
                Role::Process(p) => p.proceed(life, cx, now),
                _ => {}
            }
        });
    }

    /// Deadlines: connect and reply timeouts, health checks, the end-of-run reading.
    fn sweep(&mut self, cx: &mut Cx<'_>, now: Instant) -> Option<ConnectError> {
        self.with(cx, |life, role, cx| {
            if life.state == State::Connecting
                && life.link.expired(now, cx.cfg.redis.connect_timeout)
            {
                let e = life.link.time_out(cx.registry);
                return life.connect_failed(cx, e);
            }
            match role {
                Role::Requests(r) => r.sweep(life, cx, now),
                Role::Listen(l) => l.sweep(life, cx, now),
                Role::Process(p) => p.sweep(life, cx, now),
            }
            None
        })
    }
}

impl Life {
    pub(super) fn set_timer(&mut self, cx: &mut Cx<'_>, at: Instant) {
        self.wake_at = Some(at);
        cx.timers.add(at, self.slot);
    }

    /// Starts a connection attempt; returns the error at start-up (a run's first connect
    /// failure ends the run), handles it itself while running.
    pub(super) fn start_connect(&mut self, cx: &mut Cx<'_>) -> Option<ConnectError> {
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

    /// The link came up: counts the attempt (and the first connection's set-up time).
    fn connected(&mut self, cx: &mut Cx<'_>) {
        let at = Instant::now();
        cx.m.connect_attempt(true, at);
        if let Some(since) = self.init_start.take() {
            cx.m.client_initialized(since, at);
        } else if cx.chatter.allow() {
            tracing::info!(worker = self.index, "reconnected");
        }
        let (host, port) = self.link.target();
        cx.m.set_server(Some(crate::config::load::listen_text(host, port).into()));
        self.backoff.succeeded();
        if let Some(w) = cx.watch {
            self.master_seen = w.generation();
        }
    }

    /// A connection attempt failed.
    #[cold]
    pub(super) fn connect_failed(
        &mut self,
        cx: &mut Cx<'_>,
        e: ConnectError,
    ) -> Option<ConnectError> {
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
    pub(super) fn drop_connection(&mut self, cx: &mut Cx<'_>) {
        self.link.close(cx.registry);
        cx.m.connection_dropped(Instant::now());
        self.reconnect_later(cx);
    }

    /// Sentinel mode: whether the watcher saw the master move away from this connection's
    /// server since it connected (one atomic load when it did not).
    #[inline]
    pub(super) fn master_moved(&mut self, cx: &Cx<'_>) -> bool {
        let Some(watch) = cx.watch else {
            return false;
        };
        let generation = watch.generation();
        if generation == self.master_seen {
            return false;
        }
        self.master_seen = generation;
        watch.master().as_ref().map(|(h, p)| (h.as_str(), *p)) != Some(self.link.target())
    }
}

/// Makes worker `index`'s task and RNG: an [`Assigned`] worker for an I/O thread, or (the
/// error side) the task of a worker that needs a thread of its own.
pub fn assign(
    cfg: &RunnerConfig,
    plan: &RunPlan,
    index: usize,
) -> Result<Assigned, (WorkerTask, WorkerRng)> {
    let mut rng = WorkerRng::seed_from_u64(super::worker::worker_seed(cfg.test.seed, index));
    let task = match crate::workload::build(cfg, plan, index, &mut rng) {
        WorkerTask::Requests(w) if plan.cluster_watch.is_none() => Task::Requests(w),
        WorkerTask::Subscriber(s) => Task::Subscriber(s),
        WorkerTask::Processor(p) => Task::Processor(p),
        task => return Err((task, rng)),
    };
    Ok(Assigned { index, task, rng })
}
