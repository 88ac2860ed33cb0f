//! The stream-processor role of an I/O thread's worker: read requests from the consumer
//! group, answer them, acknowledge them; after the stop, keep answering until a read comes
//! back empty or one BLPOP timeout has passed (see
//! [`crate::workload::stream_request_reply::processor`] for what it sends and counts).
//!
//! Its connection has the lifecycle every worker has ([`super::io::Life`]): reconnects with
//! backoff (then re-reads its own pending entries first), follows a Sentinel failover, and a
//! reply later than the socket timeout fails the connection.

use std::time::Instant;

use crate::client::ConnectError;
use crate::error::ErrorClass;
use crate::runner::io::{Cx, Life, State};
use crate::workload::stream_request_reply::processor::{Next, Processor};

/// A processor worker's own state.
pub(super) struct Consumer {
    p: Box<Processor>,
}

impl Consumer {
    pub(super) fn new(p: Box<Processor>) -> Self {
        Consumer { p }
    }

    /// Before connecting: its commands, and for processor 0 the group (start-up only).
    pub(super) fn prepare(&mut self, life: &Life) -> Result<(), ConnectError> {
        self.p.prepare(&life.name)
    }

    /// The link came up: start reading (after a reconnect, its own pending entries first).
    pub(super) fn up(&mut self, life: &mut Life, cx: &mut Cx<'_>, reconnected: bool) {
        self.p.connected(reconnected);
        life.state = if self.p.drain_over(Instant::now()) {
            State::Stopped
        } else if cx.stopping {
            State::Draining
        } else {
            State::Processing
        };
        if cx.running {
            self.proceed(life, cx, Instant::now());
        }
    }

    /// Starts (or resumes) work: the load started, or a timer fired.
    pub(super) fn proceed(&mut self, life: &mut Life, cx: &mut Cx<'_>, now: Instant) {
        if !matches!(life.state, State::Processing | State::Draining) || self.p.in_flight() {
            return;
        }
        let Some(conn) = life.link.conn() else {
            return;
        };
        let next = self.p.proceed(conn, cx.m, now);
        self.follow(life, cx, next);
    }

    /// Readiness: replies in, and on to the next step.
    #[inline]
    pub(super) fn receive(&mut self, life: &mut Life, cx: &mut Cx<'_>) {
        if !matches!(life.state, State::Processing | State::Draining) {
            return;
        }
        let Some(conn) = life.link.conn() else {
            return;
        };
        let next = self.p.receive(conn, cx.m);
        self.follow(life, cx, next);
    }

    fn follow(&mut self, life: &mut Life, cx: &mut Cx<'_>, next: Next) {
        match next {
            Next::Wait => {}
            Next::At(at) => life.set_timer(cx, at),
            Next::Lost => life.drop_connection(cx),
            Next::Done => {
                life.link.close(cx.registry);
                life.state = State::Stopped;
            }
        }
    }

    /// The run stopped: the end-of-run answering begins (a processor without a connection
    /// just stops).
    pub(super) fn stop(&mut self, life: &mut Life, cx: &mut Cx<'_>, now: Instant) {
        self.p.stop(now);
        if life.state == State::Processing {
            life.state = State::Draining;
        } else if life.state != State::Draining {
            life.link.close(cx.registry);
            life.state = State::Stopped;
        }
    }

    /// A moved master, replies later than the socket timeout, and the end of the
    /// end-of-run answering.
    pub(super) fn sweep(&mut self, life: &mut Life, cx: &mut Cx<'_>, now: Instant) {
        if !matches!(life.state, State::Processing | State::Draining) {
            return;
        }
        if self.p.drain_over(now) && !self.p.in_flight() {
            life.link.close(cx.registry);
            life.state = State::Stopped;
            return;
        }
        if life.master_moved(cx) {
            if cx.chatter.allow() {
                tracing::info!(processor = life.index, "the master moved; reconnecting");
            }
            if self.p.in_flight() {
                self.p.lost(cx.m, ErrorClass::ConnectionError);
            }
            return life.drop_connection(cx);
        }
        if !self.p.in_flight() {
            return;
        }
        let progress = life.link.conn().map_or(self.p.sent_at(), |c| {
            c.reply_received_at().max(self.p.sent_at())
        });
        if now.saturating_duration_since(progress) >= cx.cfg.redis.socket_timeout {
            self.p.lost(cx.m, ErrorClass::Timeout);
            life.drop_connection(cx);
        }
    }
}
