//! The subscriber role of an I/O thread's worker: (P)SUBSCRIBE on every new connection, then
//! read and record messages as they arrive; after the stop, keep reading until every
//! publisher's last message is in or the wait is over (see
//! [`crate::workload::pubsub_subscriber`] for what is counted).
//!
//! Its connection has the same lifecycle as every worker's ([`super::io::Life`]): reconnects
//! with backoff, follows a Sentinel failover, and is PINGed when no frame came for
//! `--health-check-interval` (PING is allowed in subscribed mode), failing when no answer
//! comes within the socket timeout.

use std::time::Instant;

use crate::client::ConnectError;
use crate::error::ErrorClass;
use crate::runner::io::{Cx, Life, State};
use crate::workload::pubsub_subscriber::{Heard, Subscriber};

/// A subscriber worker's own state.
pub(super) struct Listener {
    sub: Box<Subscriber>,
    /// A health-check PING was sent then and nothing has arrived since.
    ping_sent: Option<Instant>,
    /// When the end-of-run reading began.
    drain_started: Option<Instant>,
    finished: bool,
}

impl Listener {
    pub(super) fn new(sub: Box<Subscriber>) -> Self {
        Listener {
            sub,
            ping_sent: None,
            drain_started: None,
            finished: false,
        }
    }

    /// Every channel is confirmed on the current connection.
    pub(super) fn subscribed(&self) -> bool {
        self.sub.subscribed()
    }

    /// The link came up: subscribes. At start-up the worker counts as ready once every
    /// confirmation came; on a reconnect it listens at once (messages may arrive between the
    /// confirmations and are read as usual), which ends its outage.
    pub(super) fn up(&mut self, life: &mut Life, cx: &mut Cx<'_>) -> Option<ConnectError> {
        let conn = life.link.conn()?;
        self.sub.subscribe(conn.request_buf());
        self.ping_sent = None;
        life.state = State::Listening;
        if let Err(e) = conn.send() {
            return self.lost(life, cx, e.class(), e.to_string());
        }
        if cx.running {
            cx.m.command_succeeded(Instant::now());
            if cx.chatter.allow() {
                tracing::info!(subscriber = life.index, "resubscribed");
            }
        }
        // Confirmations may already be in.
        self.receive(life, cx)
    }

    /// Readiness: reads and records what arrived.
    #[inline]
    pub(super) fn receive(&mut self, life: &mut Life, cx: &mut Cx<'_>) -> Option<ConnectError> {
        if !matches!(life.state, State::Listening | State::Draining) {
            return None;
        }
        let conn = life.link.conn()?;
        if conn.write_pending()
            && let Err(e) = conn.send()
        {
            return self.lost(life, cx, e.class(), e.to_string());
        }
        match self.sub.read(conn, cx.m) {
            Heard::Fine => None,
            Heard::Lost(class, why) => self.lost(life, cx, class, why),
        }
    }

    /// The connection failed or the server refused the subscription: at start-up that fails
    /// the run; later it is counted and the connection replaced (not after the stop).
    #[cold]
    fn lost(
        &mut self,
        life: &mut Life,
        cx: &mut Cx<'_>,
        class: ErrorClass,
        why: String,
    ) -> Option<ConnectError> {
        if !cx.running {
            life.link.close(cx.registry);
            return Some(ConnectError::Rejected {
                command: self.sub.command(),
                message: why,
                class,
            });
        }
        self.sub.connection_lost(cx.m, class, &why);
        if life.state == State::Draining {
            life.link.close(cx.registry);
            cx.m.connection_dropped(Instant::now());
            return None;
        }
        life.drop_connection(cx);
        None
    }

    /// The run stopped: the end-of-run reading begins (also without a connection: it waits
    /// for the publishers' final numbers).
    pub(super) fn stop(&mut self, life: &mut Life, cx: &mut Cx<'_>, now: Instant) {
        if self.drain_started.is_some() {
            return;
        }
        if life.state != State::Listening {
            life.link.close(cx.registry);
        }
        life.state = State::Draining;
        self.drain_started = Some(now);
    }

    /// Health checks, a moved master, and the end of the end-of-run reading.
    pub(super) fn sweep(&mut self, life: &mut Life, cx: &mut Cx<'_>, now: Instant) {
        if let (State::Draining, Some(started)) = (life.state, self.drain_started) {
            let limit = cx.cfg.redis.socket_timeout + cx.cfg.redis.connect_timeout;
            if self
                .sub
                .drain_over(started, now, limit, life.link.is_ready())
            {
                self.finish(cx);
                life.link.close(cx.registry);
                life.state = State::Stopped;
            }
            return;
        }
        if life.state != State::Listening {
            return;
        }
        if life.master_moved(cx) {
            if cx.chatter.allow() {
                tracing::info!(
                    subscriber = life.index,
                    "the master moved; resubscribing there"
                );
            }
            return life.drop_connection(cx);
        }
        let Some(every) = cx.cfg.redis.health_check_interval else {
            return;
        };
        let Some(conn) = life.link.conn() else {
            return;
        };
        let heard = conn.reply_received_at();
        match self.ping_sent {
            Some(sent) if heard >= sent => self.ping_sent = None,
            Some(sent) if now.saturating_duration_since(sent) >= cx.cfg.redis.socket_timeout => {
                cx.m.data().conn.health_check_failures += 1;
                self.ping_sent = None;
                let why = "no answer to PING in time".to_string();
                self.lost(life, cx, ErrorClass::Timeout, why);
            }
            Some(_) => {}
            None if now.saturating_duration_since(heard) >= every => {
                cx.m.data().conn.health_checks += 1;
                conn.request_buf()
                    .extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
                self.ping_sent = Some(now);
                if let Err(e) = conn.send() {
                    self.lost(life, cx, e.class(), e.to_string());
                }
            }
            None => {}
        }
    }

    /// Counts the final loss, once.
    pub(super) fn finish(&mut self, cx: &mut Cx<'_>) {
        if !self.finished {
            self.finished = true;
            self.sub.finish(cx.m);
        }
    }
}
