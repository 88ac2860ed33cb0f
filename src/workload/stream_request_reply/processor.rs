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
use std::time::{Duration, Instant};

use crate::client::backoff::{self, Backoff};
use crate::client::encode;
use crate::client::resp::ReplyKind;
use crate::client::{ConnectError, DataStream, RespConnection, connect};
use crate::config::{RedisConfig, RunnerConfig};
use crate::error::ErrorClass;
use crate::metrics::{OpId, ShardWriter};
use crate::shutdown::Shutdown;
use crate::workload::stream_request_reply::{
    GAUGE_LAG, GAUGE_PENDING, GROUP, MALFORMED, OP_LPUSH, OP_XACK, OP_XAUTOCLAIM, OP_XREADGROUP,
    PROCESSED, RECLAIMED, backlog, blpop_timeout, create_group, request_stream, take,
};
use crate::workload::{LoopContext, OwnLoop};

/// Entries per XREADGROUP, and how long it blocks when there are none.
const READ_COUNT: usize = 10;
const READ_BLOCK_MS: u64 = 100;
/// How often each processor looks for entries to reclaim, and how many at most.
const CLAIM_EVERY: Duration = Duration::from_secs(1);
const CLAIM_COUNT: usize = 100;
/// Pause after a read that failed, so a server refusing everything is not spun on.
const ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Longest sleep between looks at the metrics epoch.
const MAX_NAP: Duration = Duration::from_millis(10);

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

/// What a fetch brought.
enum Fetched {
    Entries(usize),
    Failed,
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

/// When a processor stops: after the run ends it keeps answering for at most `limit` (one
/// BLPOP timeout) from the end, since no ingress worker waits longer than that for a reply to
/// a request sent before the end.
struct Ending<'a> {
    stop: &'a Shutdown,
    deadline: Option<Instant>,
    limit: Duration,
    /// Set once the run has ended: the drain's end.
    drain_until: Option<Instant>,
}

impl Ending<'_> {
    /// Whether the drain is over (noting the run's end when it first sees it).
    fn drain_over(&mut self, now: Instant) -> bool {
        if self.drain_until.is_none() {
            // The duration's end is known exactly; a stop request counts from when it is seen.
            if let Some(d) = self.deadline.filter(|d| now >= *d) {
                self.drain_until = Some(d + self.limit);
            } else if self.stop.is_stopping() {
                self.drain_until = Some(now + self.limit);
            }
        }
        self.drain_until.is_some_and(|u| now >= u)
    }
}

/// Processor 0's backlog probe on its own control-plane connection.
struct Sampler {
    redis: RedisConfig,
    stream: String,
    conn: Option<redis::Connection>,
    every: Duration,
    next: Instant,
}

impl Sampler {
    /// Samples when due (allocates in the redis crate: once per sample, not per entry).
    fn sample_if_due(&mut self, metrics: &mut ShardWriter) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + self.every;
        if self.conn.is_none() {
            self.conn = crate::control::connection(&self.redis).ok();
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        match backlog(conn, &self.stream) {
            Ok((pending, lag)) => {
                let data = metrics.data();
                data.set_gauge(GAUGE_PENDING, pending);
                if let Some(lag) = lag {
                    data.set_gauge(GAUGE_LAG, lag);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "backlog sample failed");
                self.conn = None;
            }
        }
    }
}

/// One consumer of the group.
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
    client_name: String,
    conn: Option<RespConnection<DataStream>>,
    read_cmd: Vec<u8>,
    own_pending_cmd: Vec<u8>,
    claim_cmd: Vec<u8>,
    batch: Batch,
    /// The operations of the commands written and not yet answered, in order.
    sent: Vec<OpId>,
    sampler: Option<Sampler>,
}

impl Processor {
    /// Processor `number` (0-based among the processors).
    pub fn new(cfg: &RunnerConfig, number: usize) -> Self {
        let stream = request_stream(cfg);
        let mut xack_head = encode::command_start("XACK", 4);
        encode::bulk(&mut xack_head, stream.as_bytes());
        encode::bulk(&mut xack_head, GROUP.as_bytes());
        let processing = cfg.workload.processing_time;
        Processor {
            number,
            redis: cfg.redis.clone(),
            processing,
            drain_limit: blpop_timeout(cfg.redis.socket_timeout),
            min_idle_ms: (2 * processing + Duration::from_secs(1)).as_millis() as u64,
            // At least one sample per metrics interval, at most about one a second.
            sample_every: (cfg.output.metrics_interval / 2)
                .clamp(Duration::from_millis(100), Duration::from_secs(1)),
            client_name: String::new(),
            conn: None,
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
            sampler: None,
            stream,
        }
    }

    /// Sleeps `d` in short naps, handing in metrics and sampling meanwhile.
    fn nap(&mut self, metrics: &mut ShardWriter, d: Duration) {
        let until = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= until {
                return;
            }
            std::thread::sleep((until - now).min(MAX_NAP));
            self.tick(metrics);
        }
    }

    /// Between commands: hand in metrics if asked, sample the backlog if due.
    #[inline]
    fn tick(&mut self, metrics: &mut ShardWriter) {
        metrics.maybe_publish();
        if let Some(s) = self.sampler.as_mut() {
            s.sample_if_due(metrics);
        }
    }

    /// Drops the connection after a failure, counting `ops` as failed with `class`.
    #[cold]
    fn fail(&mut self, metrics: &mut ShardWriter, first: usize, class: ErrorClass) {
        for &op in &self.sent[first..] {
            metrics.record_error(op, class);
        }
        // No processor, no replies: an outage until its next successful command.
        if crate::metrics::outage::is_outage_class(class) {
            metrics.outage_failures(Instant::now(), (self.sent.len() - first) as u64);
        }
        self.sent.clear();
        if self.conn.take().is_some() {
            metrics.connection_dropped(Instant::now());
            tracing::warn!(processor = self.number, error_type = %class, "connection lost; reconnecting");
        }
    }

    /// XREADGROUP or XAUTOCLAIM: sends it, records it, encodes the answers of the entries it
    /// brought into the batch.
    fn fetch(&mut self, metrics: &mut ShardWriter, from: Fetch) -> Fetched {
        let Some(conn) = self.conn.as_mut() else {
            return Fetched::Failed;
        };
        let (cmd, op) = match from {
            Fetch::New => (&self.read_cmd, OP_XREADGROUP),
            Fetch::OwnPending => (&self.own_pending_cmd, OP_XREADGROUP),
            Fetch::Claim => (&self.claim_cmd, OP_XAUTOCLAIM),
        };
        conn.request_buf().extend_from_slice(cmd);
        self.sent.clear();
        self.sent.push(op);
        let sent_at = Instant::now();
        if let Err(e) = conn.flush() {
            self.fail(metrics, 0, e.class());
            return Fetched::Failed;
        }
        let reply = match conn.read_reply() {
            Ok(reply) => reply,
            Err(e) => {
                self.fail(metrics, 0, e.class());
                return Fetched::Failed;
            }
        };
        self.sent.clear();
        let latency = conn
            .reply_received_at()
            .saturating_duration_since(sent_at)
            .as_nanos() as u64;
        let payload = conn.payload(&reply);
        if reply.is_error() {
            metrics.record_error(op, ErrorClass::from_error_reply(payload));
            if payload.starts_with(b"NOGROUP") {
                self.recreate_group();
            }
            return Fetched::Failed;
        }
        metrics.record_success(op, latency, latency);
        metrics.command_succeeded(conn.reply_received_at());
        let batch = &mut self.batch;
        batch.clear();
        let mut add = |id: &[u8], fields: Option<&[u8]>| batch.add(id, fields);
        let parsed = if from == Fetch::Claim {
            claimed_entries(reply.kind, payload, &mut add)
        } else {
            read_entries(reply.kind, payload, &mut add)
        };
        let n = self.batch.entries.len();
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
        Fetched::Entries(n)
    }

    /// Answers the entries of the batch: per entry the simulated work, then its LPUSH + XACK
    /// (each entry's pair sent as soon as its work is done; without work, all in one write).
    /// Stops early (leaving the rest pending, for XAUTOCLAIM) once the drain is over.
    fn answer(&mut self, metrics: &mut ShardWriter, end: &mut Ending<'_>) {
        let n = self.batch.entries.len();
        for i in 0..n {
            if !self.processing.is_zero() {
                self.nap(metrics, self.processing);
                if end.drain_over(Instant::now()) {
                    break;
                }
            }
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            let (range, lpush) = self.batch.entries[i].clone();
            conn.request_buf()
                .extend_from_slice(&self.batch.bytes[range]);
            if lpush {
                self.sent.push(OP_LPUSH);
            }
            self.sent.push(OP_XACK);
            if (!self.processing.is_zero() || i + 1 == n) && !self.send(metrics) {
                return;
            }
        }
    }

    /// Writes what is in the request buffer and records each reply.
    fn send(&mut self, metrics: &mut ShardWriter) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let sent_at = Instant::now();
        if let Err(e) = conn.flush() {
            self.fail(metrics, 0, e.class());
            return false;
        }
        for i in 0..self.sent.len() {
            let op = self.sent[i];
            match conn.read_reply() {
                Ok(reply) => {
                    if reply.is_error() {
                        metrics
                            .record_error(op, ErrorClass::from_error_reply(conn.payload(&reply)));
                    } else {
                        let ns = conn
                            .reply_received_at()
                            .saturating_duration_since(sent_at)
                            .as_nanos() as u64;
                        metrics.record_success(op, ns, ns);
                        if op == OP_LPUSH {
                            metrics.data().count(PROCESSED, 1);
                        }
                    }
                }
                Err(e) => {
                    self.fail(metrics, i, e.class());
                    return false;
                }
            }
        }
        self.sent.clear();
        true
    }

    /// The group is gone (the stream was deleted under us): create it again, from the start
    /// of whatever the stream holds now, so requests added since are still answered.
    #[cold]
    fn recreate_group(&mut self) {
        let created = crate::control::connection(&self.redis)
            .and_then(|mut conn| create_group(&mut conn, &self.stream, "0"));
        if let Err(e) = created {
            tracing::warn!(processor = self.number, error = %e, "cannot recreate the consumer group");
        }
    }
}

impl OwnLoop for Processor {
    fn connect(&mut self, cfg: &RunnerConfig, client_name: &str) -> Result<(), ConnectError> {
        self.client_name = client_name.to_string();
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
            let mut control = crate::control::connection(&cfg.redis).map_err(rejected)?;
            create_group(&mut control, &self.stream, "$").map_err(rejected)?;
            self.sampler = Some(Sampler {
                redis: cfg.redis.clone(),
                stream: self.stream.clone(),
                conn: Some(control),
                every: self.sample_every,
                next: Instant::now(),
            });
        }
        self.conn = Some(connect(&cfg.redis, client_name)?);
        Ok(())
    }

    fn run(&mut self, ctx: &mut LoopContext<'_>) {
        let metrics = &mut *ctx.metrics;
        let mut end = Ending {
            stop: ctx.stop,
            deadline: ctx.deadline,
            limit: self.drain_limit,
            drain_until: None,
        };
        // Reconnect backoff, as the request/reply workers do it.
        let mut backoff = Backoff::new(self.redis.retry);
        let mut rng = backoff::jitter_rng(self.number);
        let mut next_claim = Instant::now() + CLAIM_EVERY;
        let mut recover = false;
        loop {
            self.tick(metrics);
            let now = Instant::now();
            if end.drain_over(now) {
                break;
            }
            let draining = end.drain_until.is_some();
            if self.conn.is_none() {
                self.nap(metrics, backoff.next_delay(&mut rng));
                let result = connect(&self.redis, &self.client_name);
                metrics.connect_attempt(result.is_ok(), Instant::now());
                match result {
                    Ok(conn) => {
                        self.conn = Some(conn);
                        backoff.succeeded();
                        recover = true;
                        tracing::info!(processor = self.number, "reconnected");
                    }
                    Err(e) => {
                        tracing::debug!(processor = self.number, error = %e, "reconnect failed");
                        if backoff.failed() {
                            tracing::warn!(
                                processor = self.number,
                                attempts = backoff.failures(),
                                "giving up reconnecting (--retry-attempts); this processor stops"
                            );
                            metrics.gave_up();
                            break;
                        }
                    }
                }
                continue;
            }
            let from = if recover {
                recover = false;
                Fetch::OwnPending
            } else if !draining && now >= next_claim {
                next_claim = now + CLAIM_EVERY;
                Fetch::Claim
            } else {
                Fetch::New
            };
            match self.fetch(metrics, from) {
                Fetched::Entries(0) if draining && from == Fetch::New => break,
                Fetched::Entries(_) => self.answer(metrics, &mut end),
                Fetched::Failed => self.nap(metrics, ERROR_PAUSE),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::resp;

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
