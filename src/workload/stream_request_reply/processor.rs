//! The processors of `stream_request_reply`: consumers in the group `loadgen` that answer the
//! ingress workers' requests.
//!
//! Each processor owns one data-plane connection and loops: `XREADGROUP GROUP loadgen
//! <consumer> COUNT 10 BLOCK 100 STREAMS <stream> >`; for each entry it finds `reply_to` and
//! `id` in the reply in place, sleeps `--processing-time` (the simulated work), then pipelines
//! `LPUSH <reply_to> <id>` and `XACK`. About once a second it runs `XAUTOCLAIM` (min idle:
//! twice the processing time plus a second) to take over entries a stopped consumer left
//! pending, and after a reconnect it first re-reads its own pending entries (`XREADGROUP ...
//! 0`: delivered before the connection failed, maybe never answered); it answers those the
//! same way. Every command sent here is recorded once, so the
//! counts match the server's. Processor 0 also creates the group before the load starts and
//! samples the backlog (XPENDING count, XINFO GROUPS lag) through the control plane into the
//! run's gauges.
//!
//! When the run stops, processors keep answering until a read comes back empty, at most until
//! one BLPOP timeout after the end: an ingress worker that sent its last request just before
//! the end is still waiting for it, and none waits longer. Their commands in that drain are counted like the others.
//!
//! Per entry nothing is allocated: the LPUSH/XACK pairs of a read are encoded into a reused
//! buffer while the reply is scanned (the read buffer is reused by the next read, so the bytes
//! must be copied out before any reply is read), then sent from it. Not here: the ingress side
//! (see the parent module).

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client::ConnectError;
use crate::config::{RedisConfig, RunnerConfig};
use crate::error::ErrorClass;
use crate::metrics::{OpId, ShardWriter};
use crate::net::Conn;
use crate::net::conn::Fill;
use crate::proto::encode;
use crate::proto::resp::ReplyKind;
use crate::workload::stream_request_reply::{
    GAUGE_LAG, GAUGE_PENDING, GROUP, MALFORMED, OP_LPUSH, OP_XACK, OP_XAUTOCLAIM, OP_XREADGROUP,
    PROCESSED, RECLAIMED, backlog, blpop_timeout, create_group, request_stream, take,
};

/// Entries per XREADGROUP, and how long it blocks when there are none.
const READ_COUNT: usize = 10;
const READ_BLOCK_MS: u64 = 100;
/// How often each processor looks for entries to reclaim, and how many at most.
const CLAIM_EVERY: Duration = Duration::from_secs(1);
const CLAIM_COUNT: usize = 100;
/// Pause after a read that failed, so a server refusing everything is not spun on.
const ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Where a processor takes its next entries from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetch {
    /// New entries: `XREADGROUP ... >`.
    New,
    /// Its own pending entries, after a reconnect: `XREADGROUP ... 0` (they were delivered to
    /// it before the connection failed and may never have been answered).
    OwnPending,
    /// Entries idle in other consumers' pending lists: XAUTOCLAIM.
    Claim,
}

/// The replies of the entries in hand, encoded back to back.
struct Batch {
    lpush_start: Vec<u8>,
    /// `XACK <stream> loadgen`, then the entry id.
    xack_head: Vec<u8>,
    bytes: Vec<u8>,
    /// Per entry: its commands in `bytes`, and whether they start with an LPUSH.
    entries: Vec<(Range<usize>, bool)>,
    malformed: u64,
}

impl Batch {
    fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
        self.malformed = 0;
    }

    /// Encodes the answer to entry `entry_id`: LPUSH the request id to its `reply_to`, then
    /// XACK; only the XACK when the entry has no request in it (deleted, or not ours).
    fn add(&mut self, entry_id: &[u8], fields: Option<&[u8]>) {
        let start = self.bytes.len();
        let (reply_to, id) = fields.map_or((None, None), request_fields);
        let lpush = match (reply_to, id) {
            (Some(reply_to), Some(id)) => {
                self.bytes.extend_from_slice(&self.lpush_start);
                encode::bulk(&mut self.bytes, reply_to);
                encode::bulk(&mut self.bytes, id);
                true
            }
            _ => {
                self.malformed += 1;
                false
            }
        };
        self.bytes.extend_from_slice(&self.xack_head);
        encode::bulk(&mut self.bytes, entry_id);
        self.entries.push((start..self.bytes.len(), lpush));
    }
}

/// `reply_to` and `id` among an entry's field/value pairs.
fn request_fields(mut fields: &[u8]) -> (Option<&[u8]>, Option<&[u8]>) {
    let (mut reply_to, mut id) = (None, None);
    while let (Some((_, name)), Some((_, value))) = (take(&mut fields), take(&mut fields)) {
        match name {
            b"reply_to" => reply_to = Some(value),
            b"id" => id = Some(value),
            _ => {}
        }
    }
    (reply_to, id)
}

/// Calls `f(entry id, fields)` for each entry of a stream's entry list (`fields` is None for
/// an entry deleted since it was delivered). None if the reply is not shaped like one.
fn for_each_entry(
    kind: ReplyKind,
    payload: &[u8],
    f: &mut impl FnMut(&[u8], Option<&[u8]>),
) -> Option<usize> {
    let n = match kind {
        ReplyKind::Array(n) => n,
        ReplyKind::Nil => return Some(0),
        _ => return None,
    };
    let mut rest = payload;
    for _ in 0..n {
        let (ReplyKind::Array(2), mut entry) = take(&mut rest)? else {
            return None;
        };
        let (ReplyKind::Bulk | ReplyKind::Status, id) = take(&mut entry)? else {
            return None;
        };
        match take(&mut entry)? {
            (ReplyKind::Array(_) | ReplyKind::Map(_), fields) => f(id, Some(fields)),
            (ReplyKind::Nil, _) => f(id, None),
            _ => return None,
        }
    }
    Some(n)
}

/// The entries of an XREADGROUP reply: RESP2 `[[stream, entries], ...]`, RESP3
/// `{stream: entries, ...}`, or nil when BLOCK ran out.
fn read_entries(
    kind: ReplyKind,
    payload: &[u8],
    f: &mut impl FnMut(&[u8], Option<&[u8]>),
) -> Option<usize> {
    let mut rest = payload;
    let mut total = 0;
    match kind {
        ReplyKind::Nil => {}
        ReplyKind::Array(streams) => {
            for _ in 0..streams {
                let (ReplyKind::Array(2), mut stream) = take(&mut rest)? else {
                    return None;
                };
                take(&mut stream)?;
                let (kind, entries) = take(&mut stream)?;
                total += for_each_entry(kind, entries, f)?;
            }
        }
        ReplyKind::Map(streams) => {
            for _ in 0..streams {
                take(&mut rest)?;
                let (kind, entries) = take(&mut rest)?;
                total += for_each_entry(kind, entries, f)?;
            }
        }
        _ => return None,
    }
    Some(total)
}

/// The entries of an XAUTOCLAIM reply `[next cursor, entries, (deleted ids, Redis 7)]`.
fn claimed_entries(
    kind: ReplyKind,
    payload: &[u8],
    f: &mut impl FnMut(&[u8], Option<&[u8]>),
) -> Option<usize> {
    let ReplyKind::Array(2 | 3) = kind else {
        return None;
    };
    let mut rest = payload;
    take(&mut rest)?;
    let (kind, entries) = take(&mut rest)?;
    for_each_entry(kind, entries, f)
}

/// Processor 0's backlog probe: a thread of its own that asks through the control plane
/// (XPENDING count, XINFO GROUPS lag) about once a second and leaves the latest answer here,
/// so that no I/O thread ever waits on the redis crate. The processor copies it into the
/// run's gauges as it goes.
struct Probe {
    pending: AtomicU64,
    lag: AtomicU64,
    stop: AtomicBool,
}

/// A gauge the probe has no value for yet.
const NO_SAMPLE: u64 = u64::MAX;

impl Probe {
    fn start(redis: RedisConfig, stream: String, every: Duration) -> Arc<Probe> {
        let probe = Arc::new(Probe {
            pending: AtomicU64::new(NO_SAMPLE),
            lag: AtomicU64::new(NO_SAMPLE),
            stop: AtomicBool::new(false),
        });
        let p = Arc::clone(&probe);
        let spawned = std::thread::Builder::new()
            .name("stream-probe".into())
            .spawn(move || {
                let mut conn: Option<redis::Connection> = None;
                while !p.stop.load(Ordering::Relaxed) {
                    if conn.is_none() {
                        conn = crate::control::connection(&redis).ok();
                    }
                    if let Some(c) = conn.as_mut() {
                        match backlog(c, &stream) {
                            Ok((pending, lag)) => {
                                p.pending.store(pending, Ordering::Relaxed);
                                if let Some(lag) = lag {
                                    p.lag.store(lag, Ordering::Relaxed);
                                }
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "backlog sample failed");
                                conn = None;
                            }
                        }
                    }
                    let until = Instant::now() + every;
                    while Instant::now() < until && !p.stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the stream backlog probe; no backlog gauges");
        }
        probe
    }

    /// Copies the latest sample into the gauges.
    #[inline]
    fn report(&self, metrics: &mut ShardWriter) {
        let (pending, lag) = (
            self.pending.load(Ordering::Relaxed),
            self.lag.load(Ordering::Relaxed),
        );
        let data = metrics.data();
        if pending != NO_SAMPLE {
            data.set_gauge(GAUGE_PENDING, pending);
        }
        if lag != NO_SAMPLE {
            data.set_gauge(GAUGE_LAG, lag);
        }
    }
}

/// What a processor's connection carries now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Nothing in flight.
    Ready,
    /// An XREADGROUP or XAUTOCLAIM.
    Fetching(Fetch),
    /// The answers (LPUSH + XACK) of entries in hand.
    Acking,
}

/// What the processor wants from its I/O thread next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Readiness of its socket.
    Wait,
    /// A timer: the simulated work of an entry, or a pause after a failed read.
    At(Instant),
    /// Its connection failed (the commands in flight are counted): replace it.
    Lost,
    /// The end-of-run answering is over.
    Done,
}

/// One consumer of the group, driven by an I/O thread, which owns its connection's
/// lifecycle.
pub struct Processor {
    /// 0..stream_consumers; 0 creates the group and samples the backlog.
    number: usize,
    redis: RedisConfig,
    stream: String,
    processing: Duration,
    /// How long to keep answering after the run stopped.
    drain_limit: Duration,
    min_idle_ms: u64,
    sample_every: Duration,
    read_cmd: Vec<u8>,
    own_pending_cmd: Vec<u8>,
    claim_cmd: Vec<u8>,
    batch: Batch,
    /// The operations of the commands written and not yet answered, in order, and how many
    /// of their replies have come.
    sent: Vec<OpId>,
    replied: usize,
    sent_at: Instant,
    step: Step,
    /// The next entry of the batch to answer, and when its simulated work is done.
    answer_next: usize,
    work_done_at: Option<Instant>,
    /// After a reconnect: re-read its own pending entries first.
    recover: bool,
    next_claim: Instant,
    /// Set once the run has stopped: the end of the answering after it.
    drain_until: Option<Instant>,
    probe: Option<Arc<Probe>>,
}

impl Processor {
    /// Processor `number` (0-based among the processors).
    pub fn new(cfg: &RunnerConfig, number: usize) -> Self {
        let stream = request_stream(cfg);
        let mut xack_head = encode::command_start("XACK", 4);
        encode::bulk(&mut xack_head, stream.as_bytes());
        encode::bulk(&mut xack_head, GROUP.as_bytes());
        let processing = cfg.workload.processing_time;
        let now = Instant::now();
        Processor {
            number,
            redis: cfg.redis.clone(),
            processing,
            drain_limit: blpop_timeout(cfg.redis.socket_timeout),
            min_idle_ms: (2 * processing + Duration::from_secs(1)).as_millis() as u64,
            // At least one sample per metrics interval, at most about one a second.
            sample_every: (cfg.output.metrics_interval / 2)
                .clamp(Duration::from_millis(100), Duration::from_secs(1)),
            read_cmd: Vec::new(),
            own_pending_cmd: Vec::new(),
            claim_cmd: Vec::new(),
            batch: Batch {
                lpush_start: encode::command_start("LPUSH", 3),
                xack_head,
                bytes: Vec::with_capacity(64 * 1024),
                entries: Vec::with_capacity(CLAIM_COUNT),
                malformed: 0,
            },
            sent: Vec::with_capacity(2 * CLAIM_COUNT),
            replied: 0,
            sent_at: now,
            step: Step::Ready,
            answer_next: 0,
            work_done_at: None,
            recover: false,
            next_claim: now + CLAIM_EVERY,
            drain_until: None,
            probe: None,
            stream,
        }
    }

    /// Before the load: encodes its commands (the consumer is named after the connection)
    /// and, for processor 0, creates the group and starts the backlog probe (control plane,
    /// blocking: start-up only).
    pub fn prepare(&mut self, client_name: &str) -> Result<(), ConnectError> {
        let consumer = client_name.as_bytes();
        let (count, block) = (READ_COUNT.to_string(), READ_BLOCK_MS.to_string());
        encode::command_args(
            &mut self.read_cmd,
            &[
                b"XREADGROUP",
                b"GROUP",
                GROUP.as_bytes(),
                consumer,
                b"COUNT",
                count.as_bytes(),
                b"BLOCK",
                block.as_bytes(),
                b"STREAMS",
                self.stream.as_bytes(),
                b">",
            ],
        );
        let claim_count = CLAIM_COUNT.to_string();
        encode::command_args(
            &mut self.own_pending_cmd,
            &[
                b"XREADGROUP",
                b"GROUP",
                GROUP.as_bytes(),
                consumer,
                b"COUNT",
                claim_count.as_bytes(),
                b"STREAMS",
                self.stream.as_bytes(),
                b"0",
            ],
        );
        let idle = self.min_idle_ms.to_string();
        encode::command_args(
            &mut self.claim_cmd,
            &[
                b"XAUTOCLAIM",
                self.stream.as_bytes(),
                GROUP.as_bytes(),
                consumer,
                idle.as_bytes(),
                b"0-0",
                b"COUNT",
                claim_count.as_bytes(),
            ],
        );
        if self.number == 0 {
            // Before any ingress worker starts: every worker connects before the load begins.
            let rejected = |e: redis::RedisError| ConnectError::Rejected {
                command: "XGROUP CREATE",
                class: if e.is_io_error() || e.is_timeout() {
                    ErrorClass::ConnectionError
                } else {
                    ErrorClass::from_error_reply(e.to_string().as_bytes())
                },
                message: e.to_string(),
            };
            let mut control = crate::control::connection(&self.redis).map_err(rejected)?;
            create_group(&mut control, &self.stream, "$").map_err(rejected)?;
            self.probe = Some(Probe::start(
                self.redis.clone(),
                self.stream.clone(),
                self.sample_every,
            ));
        }
        Ok(())
    }

    /// A connection is up; after a reconnect the entries delivered before it failed are
    /// read again first.
    pub fn connected(&mut self, reconnected: bool) {
        self.recover |= reconnected;
        self.step = Step::Ready;
        self.sent.clear();
        self.replied = 0;
        self.work_done_at = None;
    }

    /// The run stopped at `now`: answering goes on for one BLPOP timeout from then, since
    /// no ingress worker waits longer.
    pub fn stop(&mut self, now: Instant) {
        if self.drain_until.is_none() {
            self.drain_until = Some(now + self.drain_limit);
        }
    }

    /// Whether the end-of-run answering is over at `now`.
    pub fn drain_over(&self, now: Instant) -> bool {
        self.drain_until.is_some_and(|u| now >= u)
    }

    /// Commands are in flight (their replies are awaited).
    pub fn in_flight(&self) -> bool {
        self.step != Step::Ready
    }

    /// When the commands in flight were sent.
    pub fn sent_at(&self) -> Instant {
        self.sent_at
    }

    /// Nothing in flight (a fresh connection, a finished step, a timer): starts the next
    /// step, or says what to wait for.
    pub fn proceed(&mut self, conn: &mut Conn, metrics: &mut ShardWriter, now: Instant) -> Next {
        if let Some(probe) = &self.probe {
            probe.report(metrics);
        }
        if self.drain_over(now) {
            return Next::Done;
        }
        let n = self.batch.entries.len();
        if self.answer_next < n {
            if !self.processing.is_zero() {
                // The simulated work of the next entry, then its answer alone.
                let done = *self.work_done_at.get_or_insert(now + self.processing);
                if now < done {
                    return Next::At(done);
                }
                self.work_done_at = None;
                let i = self.answer_next;
                self.answer_next += 1;
                self.queue_answer(conn, i);
            } else {
                for i in self.answer_next..n {
                    self.queue_answer(conn, i);
                }
                self.answer_next = n;
            }
            return self.send(conn, metrics, Step::Acking);
        }
        let from = if std::mem::take(&mut self.recover) {
            Fetch::OwnPending
        } else if self.drain_until.is_none() && now >= self.next_claim {
            self.next_claim = now + CLAIM_EVERY;
            Fetch::Claim
        } else {
            Fetch::New
        };
        let (cmd, op) = match from {
            Fetch::New => (&self.read_cmd, OP_XREADGROUP),
            Fetch::OwnPending => (&self.own_pending_cmd, OP_XREADGROUP),
            Fetch::Claim => (&self.claim_cmd, OP_XAUTOCLAIM),
        };
        conn.request_buf().extend_from_slice(cmd);
        self.sent.push(op);
        self.send(conn, metrics, Step::Fetching(from))
    }

    /// Puts entry `i`'s LPUSH + XACK in the request buffer.
    fn queue_answer(&mut self, conn: &mut Conn, i: usize) {
        let (range, lpush) = self.batch.entries[i].clone();
        conn.request_buf()
            .extend_from_slice(&self.batch.bytes[range]);
        if lpush {
            self.sent.push(OP_LPUSH);
        }
        self.sent.push(OP_XACK);
    }

    fn send(&mut self, conn: &mut Conn, metrics: &mut ShardWriter, step: Step) -> Next {
        self.step = step;
        self.replied = 0;
        self.sent_at = Instant::now();
        match conn.send() {
            Ok(_) => Next::Wait,
            Err(e) => {
                self.lost(metrics, e.class());
                Next::Lost
            }
        }
    }

    /// Readiness: writes what is left, reads and records replies, and goes on when the step
    /// is complete.
    pub fn receive(&mut self, conn: &mut Conn, metrics: &mut ShardWriter) -> Next {
        if self.step == Step::Ready {
            return Next::Wait;
        }
        if conn.write_pending()
            && let Err(e) = conn.send()
        {
            self.lost(metrics, e.class());
            return Next::Lost;
        }
        loop {
            let fill = match conn.fill() {
                Ok(f) => f,
                Err(e) => {
                    self.lost(metrics, e.class());
                    return Next::Lost;
                }
            };
            while self.replied < self.sent.len() {
                let reply = match conn.next_reply(false) {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(e) => {
                        self.lost(metrics, e.class());
                        return Next::Lost;
                    }
                };
                let op = self.sent[self.replied];
                self.replied += 1;
                let at = conn.reply_received_at();
                let ns = at.saturating_duration_since(self.sent_at).as_nanos() as u64;
                let payload = conn.payload(&reply);
                if reply.is_error() {
                    metrics.record_error(op, ErrorClass::from_error_reply(payload));
                    if let Step::Fetching(_) = self.step {
                        if payload.starts_with(b"NOGROUP") {
                            self.recreate_group();
                        }
                        self.sent.clear();
                        self.step = Step::Ready;
                        // A server refusing everything is not spun on.
                        return Next::At(Instant::now() + ERROR_PAUSE);
                    }
                    continue;
                }
                metrics.record_success(op, ns, ns);
                metrics.command_succeeded(at);
                match self.step {
                    Step::Fetching(from) => {
                        if let Some(next) = self.take_entries(metrics, from, reply.kind, payload) {
                            self.sent.clear();
                            self.step = Step::Ready;
                            return next;
                        }
                    }
                    _ if op == OP_LPUSH => metrics.data().count(PROCESSED, 1),
                    _ => {}
                }
            }
            if self.replied == self.sent.len() {
                self.sent.clear();
                self.step = Step::Ready;
                return self.proceed(conn, metrics, Instant::now());
            }
            if fill == Fill::Drained {
                return Next::Wait;
            }
        }
    }

    /// A fetch's entries become the batch to answer. `Some(Done)` when a read during the
    /// end-of-run answering found nothing new: every request sent before the end is answered.
    fn take_entries(
        &mut self,
        metrics: &mut ShardWriter,
        from: Fetch,
        kind: ReplyKind,
        payload: &[u8],
    ) -> Option<Next> {
        let batch = &mut self.batch;
        batch.clear();
        let mut add = |id: &[u8], fields: Option<&[u8]>| batch.add(id, fields);
        let parsed = if from == Fetch::Claim {
            claimed_entries(kind, payload, &mut add)
        } else {
            read_entries(kind, payload, &mut add)
        };
        let n = self.batch.entries.len();
        self.answer_next = 0;
        if parsed.is_none() {
            // Whatever was encoded before the surprise is still answered.
            tracing::warn!(processor = self.number, "unexpected stream reply shape");
        }
        let data = metrics.data();
        if from != Fetch::New && n > 0 {
            data.count(RECLAIMED, n as u64);
        }
        if self.batch.malformed > 0 {
            data.count(MALFORMED, self.batch.malformed);
        }
        (n == 0 && from == Fetch::New && self.drain_until.is_some()).then_some(Next::Done)
    }

    /// The connection failed: the commands still unanswered are counted as failed with
    /// `class`, and the entries in hand are left pending (re-read after the reconnect).
    #[cold]
    pub fn lost(&mut self, metrics: &mut ShardWriter, class: ErrorClass) {
        let first = self.replied.min(self.sent.len());
        for &op in &self.sent[first..] {
            metrics.record_error(op, class);
        }
        // No processor, no replies: an outage until its next successful command.
        if crate::metrics::outage::is_outage_class(class) {
            metrics.outage_failures(Instant::now(), (self.sent.len() - first) as u64);
        }
        self.sent.clear();
        self.replied = 0;
        self.step = Step::Ready;
        self.answer_next = self.batch.entries.len();
        self.work_done_at = None;
        tracing::warn!(processor = self.number, error_type = %class, "connection lost; reconnecting");
    }

    /// The group is gone (the stream was deleted under us): create it again, from the start
    /// of whatever the stream holds now, so requests added since are still answered. A
    /// control-plane round trip on the I/O thread: only ever after the stream vanished.
    #[cold]
    fn recreate_group(&mut self) {
        let created = crate::control::connection(&self.redis)
            .and_then(|mut conn| create_group(&mut conn, &self.stream, "0"));
        if let Err(e) = created {
            tracing::warn!(processor = self.number, error = %e, "cannot recreate the consumer group");
        }
    }
}

impl Drop for Processor {
    fn drop(&mut self) {
        if let Some(p) = &self.probe {
            p.stop.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::resp;

    /// An entry as seen by the parser: its id, `reply_to` and `id` fields.
    type Seen = (String, Option<String>, Option<String>);

    fn entries_of(buf: &[u8], claim: bool) -> Option<Vec<Seen>> {
        let (reply, used) = resp::scan(buf).unwrap().unwrap();
        assert_eq!(used, buf.len());
        let mut seen = Vec::new();
        let mut f = |id: &[u8], fields: Option<&[u8]>| {
            let (reply_to, rid) = fields.map_or((None, None), request_fields);
            let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            seen.push((s(id), reply_to.map(s), rid.map(s)));
        };
        let payload = &buf[reply.payload];
        let n = if claim {
            claimed_entries(reply.kind, payload, &mut f)
        } else {
            read_entries(reply.kind, payload, &mut f)
        }?;
        assert_eq!(n, seen.len());
        Some(seen)
    }

    const ENTRY_A: &str = "*2\r\n$3\r\n1-0\r\n*6\r\n$2\r\nid\r\n$1\r\n7\r\n$8\r\nreply_to\r\n$3\r\nr:0\r\n$7\r\npayload\r\n$1\r\nx\r\n";
    const ENTRY_B: &str =
        "*2\r\n$3\r\n2-0\r\n*4\r\n$8\r\nreply_to\r\n$3\r\nr:1\r\n$2\r\nid\r\n$2\r\n12\r\n";

    fn expected() -> Vec<Seen> {
        vec![
            ("1-0".into(), Some("r:0".into()), Some("7".into())),
            ("2-0".into(), Some("r:1".into()), Some("12".into())),
        ]
    }

    #[test]
    fn xreadgroup_entries_in_resp2_and_resp3() {
        let resp2 = format!("*1\r\n*2\r\n$3\r\nreq\r\n*2\r\n{ENTRY_A}{ENTRY_B}");
        assert_eq!(entries_of(resp2.as_bytes(), false), Some(expected()));
        let resp3 = format!("%1\r\n$3\r\nreq\r\n*2\r\n{ENTRY_A}{ENTRY_B}");
        assert_eq!(entries_of(resp3.as_bytes(), false), Some(expected()));
        assert_eq!(entries_of(b"*-1\r\n", false), Some(vec![]));
        assert_eq!(entries_of(b"_\r\n", false), Some(vec![]));
        assert_eq!(entries_of(b"+OK\r\n", false), None);
    }

    #[test]
    fn xautoclaim_entries_with_and_without_deleted_ids() {
        let v7 = format!("*3\r\n$3\r\n0-0\r\n*2\r\n{ENTRY_A}{ENTRY_B}*1\r\n$3\r\n9-0\r\n");
        assert_eq!(entries_of(v7.as_bytes(), true), Some(expected()));
        // Redis 6.2: two elements, and a deleted entry has nil fields.
        let v62 = "*2\r\n$3\r\n0-0\r\n*1\r\n*2\r\n$3\r\n3-0\r\n*-1\r\n";
        assert_eq!(
            entries_of(v62.as_bytes(), true),
            Some(vec![("3-0".into(), None, None)])
        );
    }

    #[test]
    fn answers_are_lpush_then_xack_and_skip_lpush_without_a_request() {
        let mut batch = Batch {
            lpush_start: encode::command_start("LPUSH", 3),
            xack_head: {
                let mut h = encode::command_start("XACK", 4);
                encode::bulk(&mut h, b"req");
                encode::bulk(&mut h, b"loadgen");
                h
            },
            bytes: Vec::new(),
            entries: Vec::new(),
            malformed: 0,
        };
        let buf = format!("*2\r\n{ENTRY_A}*2\r\n$3\r\n3-0\r\n*-1\r\n");
        let (reply, _) = resp::scan(buf.as_bytes()).unwrap().unwrap();
        let payload = &buf.as_bytes()[reply.payload];
        for_each_entry(reply.kind, payload, &mut |id, f| batch.add(id, f)).unwrap();
        assert_eq!(batch.malformed, 1);
        assert_eq!(batch.entries.len(), 2);
        let (first, lpush) = batch.entries[0].clone();
        assert!(lpush);
        assert_eq!(
            &batch.bytes[first],
            b"*3\r\n$5\r\nLPUSH\r\n$3\r\nr:0\r\n$1\r\n7\r\n*4\r\n$4\r\nXACK\r\n$3\r\nreq\r\n$7\r\nloadgen\r\n$3\r\n1-0\r\n"
                .as_slice()
        );
        let (second, lpush) = batch.entries[1].clone();
        assert!(!lpush);
        assert_eq!(
            &batch.bytes[second],
            b"*4\r\n$4\r\nXACK\r\n$3\r\nreq\r\n$7\r\nloadgen\r\n$3\r\n3-0\r\n".as_slice()
        );
    }
}
