//! Shards and the epoch protocol between I/O threads and the reporter: one shard per thread,
//! shared by the workers that thread drives.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::ErrorClass;
use crate::metrics::outage::{EdgeKind, HealthEdge, push_edge};
use crate::metrics::trace::{Sampler, TraceEvent, TraceKind, push_trace};
use crate::metrics::{IntervalData, OpId, OpTable};

/// One thread's published data, waiting for the reporter.
struct Shard {
    slot: Mutex<IntervalData>,
    /// The last epoch this thread published for.
    published: AtomicU64,
    /// The thread has published for the last time.
    finished: AtomicBool,
}

/// All shards, and the epoch the reporter bumps to ask for data.
pub struct MetricsHub {
    epoch: AtomicU64,
    shards: Box<[Shard]>,
    names: OpTable,
    counter_names: OpTable,
    open_loop: bool,
    /// Traces on: the command sampling rate (bits of an f64); `u64::MAX`: traces off.
    trace_rate: AtomicU64,
}

impl MetricsHub {
    pub fn new(workers: usize, names: OpTable, open_loop: bool) -> Arc<Self> {
        MetricsHub::with_counters(workers, names, Vec::new().into(), open_loop)
    }

    /// A hub whose data also carries the workload's named counters.
    pub fn with_counters(
        workers: usize,
        names: OpTable,
        counter_names: OpTable,
        open_loop: bool,
    ) -> Arc<Self> {
        let shards = (0..workers)
            .map(|_| Shard {
                slot: Mutex::new(IntervalData::with_counters(
                    names.clone(),
                    counter_names.clone(),
                    open_loop,
                )),
                published: AtomicU64::new(0),
                finished: AtomicBool::new(false),
            })
            .collect();
        Arc::new(MetricsHub {
            epoch: AtomicU64::new(0),
            shards,
            names,
            counter_names,
            open_loop,
            trace_rate: AtomicU64::new(u64::MAX),
        })
    }

    /// Turns trace events on for writers made from now on: connection events always, and
    /// each command sampled with probability `sample_rate`.
    pub fn enable_tracing(&self, sample_rate: f64) {
        self.trace_rate
            .store(sample_rate.clamp(0.0, 1.0).to_bits(), Ordering::Release);
    }

    fn trace_rate(&self) -> Option<f64> {
        let bits = self.trace_rate.load(Ordering::Acquire);
        (bits != u64::MAX).then(|| f64::from_bits(bits))
    }

    /// An empty [`IntervalData`] with this run's command slots.
    pub fn new_data(&self) -> IntervalData {
        IntervalData::with_counters(
            self.names.clone(),
            self.counter_names.clone(),
            self.open_loop,
        )
    }

    /// The writer for shard `index`, recording for the worker of the same index (a worker on
    /// a thread of its own).
    pub fn writer(self: &Arc<Self>, index: usize) -> ShardWriter {
        self.thread_writer(index, 1)
    }

    /// The writer for shard `index`, owned by a thread that drives `workers` workers: its
    /// event buffers are sized for all of them, so edges and sampled commands fit without
    /// growing on the hot path. It records for worker `index` until a meter is swapped in.
    pub fn thread_writer(self: &Arc<Self>, index: usize, workers: usize) -> ShardWriter {
        let rate = self.trace_rate();
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ clock;
        let mut local = self.new_data();
        local.reserve_events(workers);
        ShardWriter {
            tracing: rate.is_some(),
            sampler: rate.map_or_else(Sampler::off, |r| Sampler::new(r, seed)),
            local,
            seen_epoch: self.epoch.load(Ordering::Acquire),
            hub: Arc::clone(self),
            index,
            meter: WorkerMeter::new(index),
            io_since: None,
        }
    }

    /// Asks every worker to publish, waits up to `max_wait` for those still running, then adds
    /// everything published into `into`. A worker stuck in a long read publishes into the next
    /// interval instead: nothing is lost, it is only attributed late.
    pub fn collect(&self, into: &mut IntervalData, max_wait: Duration) {
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let deadline = Instant::now() + max_wait;
        while Instant::now() < deadline {
            let pending = self.shards.iter().any(|s| {
                !s.finished.load(Ordering::Acquire) && s.published.load(Ordering::Acquire) < epoch
            });
            if !pending {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        for shard in self.shards.iter() {
            let mut slot = shard.slot.lock().unwrap_or_else(|p| p.into_inner());
            into.add(&slot);
            slot.reset();
        }
    }
}

/// One worker's fault and trace state: a few words, kept by the worker itself. The shard it
/// records into is shared by every worker of its I/O thread (see [`ShardWriter::swap_meter`]).
#[derive(Debug, Clone)]
pub struct WorkerMeter {
    worker: u32,
    /// In an outage episode (see `metrics::outage`): an outage-class failure since the last
    /// success.
    failing: bool,
    /// Outage-class failures in the current episode.
    episode_failed: u64,
    /// When the worker's working connection was lost; cleared by the next connect.
    down_since: Option<Instant>,
    /// The server the worker's connection goes to (`host:port`), for spans.
    server: Option<Arc<str>>,
    /// When the current batch's latencies run from: the start of a failed command's span.
    batch_start: Option<Instant>,
    /// Connect attempts since the connection was lost.
    reconnect_attempts: u32,
}

impl WorkerMeter {
    pub fn new(worker: usize) -> Self {
        WorkerMeter {
            worker: worker as u32,
            failing: false,
            episode_failed: 0,
            down_since: None,
            server: None,
            batch_start: None,
            reconnect_attempts: 0,
        }
    }
}

/// A thread's handle to its shard: records locally, publishes when the epoch moves. Per
/// command it touches only thread-local data. It records on behalf of one worker at a time
/// (its current [`WorkerMeter`]); an I/O thread that drives many workers swaps each one's
/// meter in while it handles that worker ([`swap_meter`](Self::swap_meter)).
pub struct ShardWriter {
    hub: Arc<MetricsHub>,
    /// The shard's slot in the hub (one per I/O thread, or per worker on a thread of its own).
    index: usize,
    local: IntervalData,
    seen_epoch: u64,
    /// The worker being recorded for.
    meter: WorkerMeter,
    /// Trace events on (OTLP export on).
    tracing: bool,
    /// Which commands become spans.
    sampler: Sampler,
    /// An I/O thread's writer: since when its wall time is counted (see [`Self::waited`]).
    io_since: Option<Instant>,
}

impl ShardWriter {
    #[inline]
    pub fn data(&mut self) -> &mut IntervalData {
        &mut self.local
    }

    #[inline]
    pub fn record_success(&mut self, op: OpId, latency_ns: u64, service_ns: u64) {
        self.local.record_success(op, latency_ns, service_ns);
        if self.sampler.tick() {
            let end = Instant::now();
            let start = end
                .checked_sub(Duration::from_nanos(latency_ns))
                .unwrap_or(end);
            self.sampled(op, None, start, end);
        }
    }

    #[inline]
    pub fn record_error(&mut self, op: OpId, class: ErrorClass) {
        self.local.record_error(op, class);
        if self.sampler.tick() {
            let end = Instant::now();
            let start = self.meter.batch_start.filter(|s| *s <= end).unwrap_or(end);
            self.sampled(op, Some(class), start, end);
        }
    }

    /// The batch whose replies are recorded next started at `at` (its latencies run from
    /// there): a failed command's span starts there.
    #[inline]
    pub fn batch_started(&mut self, at: Instant) {
        self.meter.batch_start = Some(at);
    }

    /// The worker's connection now goes to `server` (`host:port`), for spans.
    #[cold]
    pub fn set_server(&mut self, server: Option<Arc<str>>) {
        self.meter.server = server;
    }

    /// Cluster mode: the replies recorded next come from `server`. Consecutive units mostly
    /// share a node, so the shared label is cloned only when the node changes.
    #[inline]
    pub fn server_is(&mut self, server: &Arc<str>) {
        if !self
            .meter
            .server
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, server))
        {
            self.meter.server = Some(Arc::clone(server));
        }
    }

    /// A sampled command becomes a trace event (derived figures such as a message's
    /// delivery are not commands and are skipped).
    #[cold]
    fn sampled(&mut self, op: OpId, error: Option<ErrorClass>, start: Instant, end: Instant) {
        if self.local.derived.get(op).copied().unwrap_or(true) {
            return;
        }
        self.trace(TraceKind::Command { op, error }, start, end);
    }

    fn trace(&mut self, kind: TraceKind, start: Instant, end: Instant) {
        if !self.tracing {
            return;
        }
        let event = TraceEvent {
            kind,
            worker: self.meter.worker,
            start,
            end,
            server: self.meter.server.clone(),
        };
        let data = &mut self.local;
        push_trace(&mut data.traces, &mut data.trace_overflow, event);
    }

    /// The worker's first connection is up: it took from `start` to `end` (the family's
    /// client initialisation time).
    #[cold]
    pub fn client_initialized(&mut self, start: Instant, end: Instant) {
        let ns = end.saturating_duration_since(start).as_nanos() as u64;
        let _ = self
            .local
            .conn
            .init
            .record(ns.clamp(1, crate::metrics::data::HISTOGRAM_MAX_NS));
        self.trace(TraceKind::Connect, start, end);
    }

    /// `n` commands sent at `sent` failed with an outage class (connection error, timeout,
    /// cluster error). The first one after a success opens an episode, published at once.
    #[cold]
    pub fn outage_failures(&mut self, sent: Instant, n: u64) {
        if !self.meter.failing {
            self.meter.failing = true;
            self.push_edge(EdgeKind::Failing, sent, 0);
            self.publish_now();
        }
        self.meter.episode_failed += n;
    }

    /// A command succeeded (its reply arrived at `at`): ends an episode if one is open. One
    /// branch when healthy.
    #[inline]
    pub fn command_succeeded(&mut self, at: Instant) {
        if self.meter.failing {
            self.recovered(at);
        }
    }

    #[cold]
    fn recovered(&mut self, at: Instant) {
        self.meter.failing = false;
        let failed = std::mem::take(&mut self.meter.episode_failed);
        self.push_edge(EdgeKind::Recovered, at, failed);
        self.publish_now();
    }

    fn push_edge(&mut self, kind: EdgeKind, at: Instant, failed: u64) {
        let data = &mut self.local;
        let edge = HealthEdge {
            worker: self.meter.worker,
            kind,
            at,
            failed,
        };
        // A merged-away Recovered edge's count belongs to the episode that continues.
        self.meter.episode_failed += push_edge(&mut data.edges, &mut data.edge_overflow, edge);
    }

    /// The working connection was lost at `at`.
    #[cold]
    pub fn connection_dropped(&mut self, at: Instant) {
        self.local.conn.drops += 1;
        self.meter.down_since.get_or_insert(at);
    }

    /// A connect attempt ended at `at`; a success after a drop records how long the
    /// connection was down.
    #[cold]
    pub fn connect_attempt(&mut self, ok: bool, at: Instant) {
        let down = if ok {
            self.meter.down_since.take()
        } else {
            None
        };
        let down_ns = down.map(|d| at.saturating_duration_since(d).as_nanos() as u64);
        self.local.conn.attempt(ok, down_ns);
        self.meter.reconnect_attempts = self.meter.reconnect_attempts.saturating_add(1);
        if ok {
            self.local.reconnects += down.is_some() as u64;
            let attempts = std::mem::take(&mut self.meter.reconnect_attempts);
            if let Some(since) = down {
                self.trace(TraceKind::Reconnect { attempts }, since, at);
            }
        } else {
            self.local.connect_failures += 1;
        }
    }

    /// Cluster mode: one of the worker's node connections was lost (the caller keeps the
    /// time per node: a worker has several).
    #[cold]
    pub fn node_dropped(&mut self) {
        self.local.conn.drops += 1;
    }

    /// Cluster mode: a connect attempt to a node ended at `at`; `down_since` is when that
    /// node's previous connection was lost, if it was.
    #[cold]
    pub fn node_connect_attempt(&mut self, ok: bool, at: Instant, down_since: Option<Instant>) {
        let down_ns = down_since.map(|d| at.saturating_duration_since(d).as_nanos() as u64);
        self.local.conn.attempt(ok, down_ns);
        if ok {
            self.local.reconnects += down_since.is_some() as u64;
            if let Some(since) = down_since {
                // Attempts are not counted per node: the span says only when it was down.
                self.trace(TraceKind::Reconnect { attempts: 0 }, since, at);
            }
        } else {
            self.local.connect_failures += 1;
        }
    }

    /// The worker gave up reconnecting for the rest of the run.
    #[cold]
    pub fn gave_up(&mut self) {
        self.local.conn.gave_up += 1;
        self.publish_now();
    }

    /// Hands the local data to the shard now, without waiting for the reporter's ask (used
    /// on rare edges so the reporter sees them at its next gathering).
    fn publish_now(&mut self) {
        self.publish(self.seen_epoch);
    }

    /// Publishes if the reporter has asked since the last time (one atomic load otherwise).
    #[inline]
    pub fn maybe_publish(&mut self) {
        let epoch = self.hub.epoch.load(Ordering::Acquire);
        if epoch != self.seen_epoch {
            self.publish(epoch);
        }
    }

    fn publish(&mut self, epoch: u64) {
        if let Some(since) = self.io_since {
            let now = Instant::now();
            self.local.io_wall_ns += now.saturating_duration_since(since).as_nanos() as u64;
            self.io_since = Some(now);
        }
        let shard = &self.hub.shards[self.index];
        {
            let mut slot = shard.slot.lock().unwrap_or_else(|p| p.into_inner());
            slot.add(&self.local);
        }
        self.local.reset();
        self.seen_epoch = epoch;
        shard.published.store(epoch, Ordering::Release);
    }

    /// Swaps `meter` with the writer's current worker's: called in pairs around the work
    /// done for one worker (its outage episode, spans and connection times are its own, while
    /// counts and histograms go into the thread's shared data). Two swaps of a few words.
    #[inline]
    pub fn swap_meter(&mut self, meter: &mut WorkerMeter) {
        std::mem::swap(&mut self.meter, meter);
    }

    /// This writer's thread is an event loop: its wall time and its time waiting in the poll
    /// are reported with its data, from now on.
    pub fn count_io_time(&mut self) {
        self.io_since = Some(Instant::now());
    }

    /// The event loop waited `d` in its poll (two clock reads per poll, not per command).
    #[inline]
    pub fn waited(&mut self, d: Duration) {
        self.local.io_wait_ns += d.as_nanos() as u64;
    }

    /// Records for worker `index` from now on (a writer owned by one worker).
    pub fn set_worker(&mut self, index: usize) {
        self.meter = WorkerMeter::new(index);
    }

    /// The current worker is done: an outage episode still open is closed as unresolved.
    pub fn worker_done(&mut self) {
        if self.meter.failing {
            self.meter.failing = false;
            let failed = std::mem::take(&mut self.meter.episode_failed);
            self.push_edge(EdgeKind::Unresolved, Instant::now(), failed);
        }
    }

    /// Publishes what is left (closing the current worker's open episode); the reporter stops
    /// waiting for this shard.
    pub fn finish(&mut self) {
        self.worker_done();
        let epoch = self.hub.epoch.load(Ordering::Acquire);
        self.publish(epoch);
        self.hub.shards[self.index]
            .finished
            .store(true, Ordering::Release);
    }
}

impl Drop for ShardWriter {
    /// A thread that unwinds still hands in what it recorded.
    fn drop(&mut self) {
        if !self.hub.shards[self.index].finished.load(Ordering::Acquire) {
            self.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_gathers_published_data_from_every_shard() {
        let hub = MetricsHub::new(2, vec!["GET".to_string()].into(), false);
        let mut w0 = hub.writer(0);
        let mut w1 = hub.writer(1);
        w0.record_success(0, 10, 10);
        w1.record_error(0, ErrorClass::Timeout);
        let h = Arc::clone(&hub);
        let t = std::thread::spawn(move || {
            // Workers publish when they next look at the epoch.
            for _ in 0..1000 {
                w0.maybe_publish();
                w1.maybe_publish();
                std::thread::sleep(Duration::from_micros(100));
            }
            (w0, w1)
        });
        let mut total = hub.new_data();
        h.collect(&mut total, Duration::from_secs(2));
        assert_eq!(total.success(), 1);
        assert_eq!(total.errors(), 1);
        let (mut w0, _w1) = t.join().unwrap();
        w0.record_success(0, 20, 20);
        w0.finish();
        let mut more = hub.new_data();
        hub.collect(&mut more, Duration::from_millis(10));
        assert_eq!(more.success(), 1);
    }
}
