//! The request/reply role of an I/O thread's worker: encode a batch of units into the
//! connection's buffer, send it with one write, read and time each reply as it arrives, and
//! start the next batch when the last reply is in (closed loop) or at its slot (open loop).
//!
//! Latency runs from the batch's intended start (open loop) or its send, to the read that
//! brought the reply. A connection that fails with a batch in flight counts every unanswered
//! command as an error of its class; a connection idle past `--health-check-interval` is
//! PINGed before the next batch. Not here: connecting and reconnecting ([`super::io::Life`]).

use std::time::{Duration, Instant};

use crate::error::ErrorClass;
use crate::metrics::outage::is_outage_class;
use crate::metrics::{OpId, ShardWriter};
use crate::net::conn::Fill;
use crate::runner::io::{Cx, Life, State};
use crate::runner::schedule::Schedule;
use crate::workload::{Recorder, Workload};

/// Ceiling for the pause after a batch in which every command got an error reply.
const MAX_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// A request/reply worker's own state.
pub(super) struct Requests {
    workload: Box<dyn Workload>,
    schedule: Schedule,
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
    failed_in_a_row: u32,
    last_used: Instant,
    /// The workload was told it stopped.
    retired: bool,
}

impl Requests {
    pub(super) fn new(workload: Box<dyn Workload>, batch: usize) -> Self {
        let now = Instant::now();
        Requests {
            workload,
            schedule: Schedule::ClosedLoop,
            sent: Vec::with_capacity(batch * 4),
            next: 0,
            errors: 0,
            demoted: false,
            start: now,
            sent_at: now,
            planned: false,
            intended: None,
            failed_in_a_row: 0,
            last_used: now,
            retired: false,
        }
    }

    /// Sets the worker's schedule for a run starting at `start`.
    pub(super) fn schedule(
        &mut self,
        target: Option<f64>,
        paced: usize,
        batch: usize,
        index: usize,
        start: Instant,
    ) {
        self.schedule = Schedule::new(target, paced, batch, index, start);
    }

    /// Tells the workload it stopped, once, when the worker has stopped.
    pub(super) fn retire_if_stopped(&mut self, life: &Life) {
        if !self.retired && life.state == State::Stopped {
            self.retired = true;
            self.workload.stopped();
        }
    }

    /// A new connection is up: it is not idle (no health check before its first batch).
    pub(super) fn fresh_connection(&mut self) {
        self.last_used = Instant::now();
    }

    /// Ready and idle: sends the next batch now, or waits for its slot.
    #[inline]
    pub(super) fn kick(&mut self, life: &mut Life, cx: &mut Cx<'_>, now: Instant) {
        if cx.stopping {
            life.state = State::Stopped;
            return;
        }
        if *cx.budget == 0 {
            return;
        }
        if life.master_moved(cx) {
            if cx.chatter.allow() {
                tracing::info!(worker = life.index, "the master moved; reconnecting");
            }
            return life.drop_connection(cx);
        }
        if !self.planned {
            self.intended = self.schedule.next_start();
            self.planned = true;
        }
        if let Some(at) = self.intended
            && at > now
        {
            life.state = State::Waiting;
            return life.set_timer(cx, at);
        }
        self.send_batch(life, cx, now);
    }

    /// Encodes and writes a batch (or first a health-check PING if the connection sat idle
    /// past `--health-check-interval`).
    #[inline]
    fn send_batch(&mut self, life: &mut Life, cx: &mut Cx<'_>, now: Instant) {
        let Some(conn) = life.link.conn() else {
            return life.drop_connection(cx);
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
            life.state = State::Probing;
            if let Err(e) = conn.send() {
                self.health_failed(life, cx, &e.to_string());
            }
            return;
        }
        *cx.budget = cx.budget.saturating_sub(1);
        self.sent.clear();
        let out = conn.request_buf();
        for _ in 0..cx.batch_size {
            self.workload
                .encode_next(&mut life.rng, out, &mut self.sent);
        }
        let sent = Instant::now();
        self.planned = false;
        self.start = batch_started(cx.m, self.intended, sent, cx.batch_size);
        self.sent_at = sent;
        self.last_used = sent;
        self.next = 0;
        self.errors = 0;
        self.demoted = false;
        life.state = State::InFlight;
        if let Err(e) = conn.send() {
            self.fail_batch(life, cx, e.class());
        }
    }

    /// Readiness while a batch or PING is in flight: writes what is left, reads replies.
    #[inline]
    pub(super) fn receive(&mut self, life: &mut Life, cx: &mut Cx<'_>) {
        if !matches!(life.state, State::InFlight | State::Probing) {
            return;
        }
        let Some(conn) = life.link.conn() else {
            return;
        };
        if conn.write_pending()
            && let Err(e) = conn.send()
        {
            return self.lost(life, cx, e.class(), &e.to_string());
        }
        loop {
            let fill = match conn.fill() {
                Ok(f) => f,
                Err(e) => return self.lost(life, cx, e.class(), &e.to_string()),
            };
            if life.state == State::Probing {
                match conn.next_reply(false) {
                    // Any reply, even an error, means the connection works.
                    Ok(Some(_)) => {
                        life.state = State::Idle;
                        return self.send_batch(life, cx, Instant::now());
                    }
                    Ok(None) if fill == Fill::More => continue,
                    Ok(None) => return,
                    Err(e) => return self.health_failed(life, cx, &e.to_string()),
                }
            }
            while self.next < self.sent.len() {
                let reply = match conn.next_reply(false) {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(e) => return self.lost(life, cx, e.class(), &e.to_string()),
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
                return self.batch_done(life, cx, at);
            }
            if fill == Fill::Drained {
                return;
            }
        }
    }

    /// Every reply of the batch is in.
    #[inline]
    fn batch_done(&mut self, life: &mut Life, cx: &mut Cx<'_>, at: Instant) {
        *cx.batches += 1;
        let n = self.sent.len();
        if self.errors < n {
            // Ends an outage episode if one is open; a single branch otherwise.
            cx.m.command_succeeded(at);
        }
        life.state = State::Idle;
        if self.demoted {
            if cx.chatter.allow() {
                tracing::warn!(
                    worker = life.index,
                    "the master was demoted (READONLY); asking the sentinels again"
                );
            }
            return life.drop_connection(cx);
        }
        if self.errors >= n && n > 0 {
            // A server that rejects everything is not hammered in a tight loop.
            self.failed_in_a_row = self.failed_in_a_row.saturating_add(1);
            let exp = self.failed_in_a_row.min(10);
            let pause = (Duration::from_micros(100) * (1 << exp)).min(MAX_ERROR_BACKOFF);
            life.state = State::Waiting;
            return life.set_timer(cx, at + pause);
        }
        self.failed_in_a_row = 0;
        self.kick(life, cx, at);
    }

    /// The connection failed with a batch (or PING) in flight.
    #[cold]
    fn lost(&mut self, life: &mut Life, cx: &mut Cx<'_>, class: ErrorClass, why: &str) {
        if life.state == State::Probing {
            return self.health_failed(life, cx, why);
        }
        if cx.chatter.allow() {
            tracing::warn!(worker = life.index, error_type = %class, error = why, "connection lost; reconnecting");
        }
        self.fail_batch(life, cx, class);
    }

    /// Counts every command of the batch from the next unanswered one on as failed with
    /// `class` (sent, reply never read) and drops the connection: it is out of step with the
    /// server now.
    #[cold]
    fn fail_batch(&mut self, life: &mut Life, cx: &mut Cx<'_>, class: ErrorClass) {
        let first = self.next.min(self.sent.len());
        for &op in &self.sent[first..] {
            cx.m.record_error(op, class);
        }
        if is_outage_class(class) {
            cx.m.outage_failures(self.sent_at, (self.sent.len() - first) as u64);
        }
        self.workload.on_connection_lost(class, cx.m);
        self.next = self.sent.len();
        life.drop_connection(cx);
    }

    /// The health-check PING found the connection dead: replace it before the batch, which
    /// keeps its slot and goes out on the new connection.
    #[cold]
    fn health_failed(&mut self, life: &mut Life, cx: &mut Cx<'_>, why: &str) {
        cx.m.data().conn.health_check_failures += 1;
        if cx.chatter.allow() {
            tracing::info!(
                worker = life.index,
                error = why,
                "an idle connection failed its health check; reconnecting"
            );
        }
        life.drop_connection(cx);
    }

    /// Fails a batch or PING whose reply ran past the socket timeout.
    pub(super) fn sweep(&mut self, life: &mut Life, cx: &mut Cx<'_>, now: Instant) {
        if !matches!(life.state, State::InFlight | State::Probing) {
            return;
        }
        let progress = life.link.conn().map_or(self.sent_at, |conn| {
            conn.reply_received_at().max(self.sent_at)
        });
        if now.saturating_duration_since(progress) < cx.cfg.redis.socket_timeout {
            return;
        }
        if life.state == State::Probing {
            return self.health_failed(life, cx, "no reply to PING in time");
        }
        if cx.chatter.allow() {
            tracing::warn!(worker = life.index, error_type = %ErrorClass::Timeout, "no reply in time; reconnecting");
        }
        self.fail_batch(life, cx, ErrorClass::Timeout);
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
