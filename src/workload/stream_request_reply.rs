//! The `stream_request_reply` workload: the ingress/processor pattern of a service built on
//! Redis Streams, measured end to end (request in, reply out).
//!
//! Roles. Workers `0..clients x threads` are *ingress* workers on the standard request/reply
//! loop (this file); the next `--stream-consumers` workers are *processors* with a loop of
//! their own ([`processor`]). Keys, all under `--key-prefix` and the run id (so runs never mix,
//! and [`verify`] deletes them after the run):
//!
//! - request stream `<prefix>:requests:<run_id>`, consumer group `loadgen` (created by
//!   processor 0 before the load starts, `XGROUP CREATE ... $ MKSTREAM`);
//! - one reply list per ingress worker, `<prefix>:replies:<run_id>:<ingress index>`.
//!
//! An ingress unit is `XADD <stream> MAXLEN ~ <stream-max-length> * id <n> reply_to <list>
//! sent <unix ns> payload <value>` pipelined with `BLPOP <list> <timeout>` (the timeout is the
//! socket timeout less a margin, so the server answers nil before our read gives up). A
//! processor reads the entry with XREADGROUP, sleeps `--processing-time` (the simulated
//! work), then pipelines `LPUSH <reply_to> <n>` and `XACK`; the BLPOP returns that reply.
//! Each ingress worker is a closed loop: BLPOP blocks its connection, so it has at most one
//! request in the server at a time (with `--use-pipeline` units only travel together; latency
//! then counts from the batch's start, as for every pipelined command).
//!
//! Operations. XADD, BLPOP, XREADGROUP, LPUSH, XACK and XAUTOCLAIM are Redis commands sent on
//! worker connections, each counted once (their totals equal `INFO commandstats`).
//! `REQUEST_REPLY` is *derived*, not a Redis command (listed in `workload::DERIVED_OPS`, so it
//! stays out of the command totals): one per request, a success when its reply came back
//! (latency = XADD sent to reply received), a `timeout` error when BLPOP timed out first. The
//! backlog probes (XPENDING, XINFO GROUPS) and the group set-up go through the control plane
//! and are not counted.
//!
//! Counters: `requests` (XADDs acknowledged), `replies` (replies matched to a waiting request),
//! `unanswered` (requests given up when BLPOP timed out), `late_replies` (a reply to a request
//! no longer waiting: it timed out earlier, or it was answered twice after a reclaim),
//! `mismatched` (a reply that is no request of this worker: must stay 0), and, from the
//! processors, `processed` (replies pushed), `reclaimed` (entries taken over with XAUTOCLAIM
//! from a consumer that stopped, or re-read from a processor's own pending list after it
//! reconnected) and `malformed_entries` (entries without `reply_to`/`id`, acknowledged and
//! dropped). Gauges, sampled by processor 0 about once a second (twice per metrics interval
//! when that is shorter): `stream_pending` (XPENDING count: delivered, not yet acknowledged)
//! and `stream_lag` (XINFO GROUPS `lag`: added, not yet delivered; Redis 7+).
//!
//! Late replies. A reply to a request that timed out still arrives in the list later; BLPOP
//! then pops it instead of the reply it waits for. The worker counts it as late and the next
//! unit is a BLPOP alone for the request still waiting, so one timeout does not shift every
//! later reply by one.
//!
//! Not here: the processors' loop (see [`processor`]).

pub mod processor;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::config::RunnerConfig;
use crate::error::ErrorClass;
use crate::metrics::{OpId, OpTable};
use crate::output::report::RunReport;
use crate::proto::encode;
use crate::proto::resp::{self, Reply, ReplyKind};
use crate::workload::keys::ValueSource;
use crate::workload::{Recorder, RunPlan, WorkerRng, WorkerTask, Workload};

/// Operations, in the order of [`OPS`].
pub const OP_XADD: OpId = 0;
pub const OP_BLPOP: OpId = 1;
/// Derived: one per request, its reply's arrival (not a Redis command).
pub const OP_REQUEST_REPLY: OpId = 2;
pub const OP_XREADGROUP: OpId = 3;
pub const OP_LPUSH: OpId = 4;
pub const OP_XACK: OpId = 5;
pub const OP_XAUTOCLAIM: OpId = 6;
pub const OPS: [&str; 7] = [
    "XADD",
    "BLPOP",
    "REQUEST_REPLY",
    "XREADGROUP",
    "LPUSH",
    "XACK",
    "XAUTOCLAIM",
];

/// Workload counters, in the order of [`COUNTERS`].
pub const REQUESTS: usize = 0;
pub const REPLIES: usize = 1;
pub const UNANSWERED: usize = 2;
pub const MISMATCHED: usize = 3;
pub const LATE_REPLIES: usize = 4;
pub const PROCESSED: usize = 5;
pub const RECLAIMED: usize = 6;
pub const MALFORMED: usize = 7;
pub const COUNTERS: [&str; 8] = [
    "requests",
    "replies",
    "unanswered",
    "mismatched",
    "late_replies",
    "processed",
    "reclaimed",
    "malformed_entries",
];

/// Gauges, in the order of [`GAUGES`].
pub const GAUGE_PENDING: usize = 0;
pub const GAUGE_LAG: usize = 1;
pub const GAUGES: &[&str] = &["stream_pending", "stream_lag"];

/// The consumer group every processor reads through.
pub const GROUP: &str = "loadgen";

/// The plan: the operations above, the counters, ingress workers then processors.
pub fn plan(cfg: &RunnerConfig) -> RunPlan {
    RunPlan {
        ops: table(&OPS),
        counters: table(&COUNTERS),
        workers: ingress_workers(cfg) + cfg.workload.stream_consumers as usize,
        paced_workers: ingress_workers(cfg),
        shared: None,
        master_watch: None,
        cluster_watch: None,
    }
}

fn table(names: &[&str]) -> OpTable {
    names
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .into()
}

/// Ingress workers: clients x threads.
pub fn ingress_workers(cfg: &RunnerConfig) -> usize {
    cfg.test.workers()
}

/// Worker `index`: ingress below [`ingress_workers`], a processor from there on.
pub fn build(cfg: &RunnerConfig, index: usize, rng: &mut WorkerRng) -> WorkerTask {
    let ingress = ingress_workers(cfg);
    if index < ingress {
        WorkerTask::Requests(Box::new(Ingress::new(cfg, index, rng)))
    } else {
        WorkerTask::Processor(Box::new(processor::Processor::new(cfg, index - ingress)))
    }
}

/// The run's request stream.
pub fn request_stream(cfg: &RunnerConfig) -> String {
    format!(
        "{}:requests:{}",
        cfg.workload.key_prefix, cfg.identity.run_id
    )
}

/// Ingress worker `ingress`'s reply list.
pub fn reply_list(cfg: &RunnerConfig, ingress: usize) -> String {
    format!(
        "{}:replies:{}:{ingress}",
        cfg.workload.key_prefix, cfg.identity.run_id
    )
}

/// How long BLPOP waits for a reply: the socket timeout less a margin (a fifth of it, 50 ms
/// to 1 s), so the server's nil reply arrives before our socket read would time out.
pub fn blpop_timeout(socket_timeout: Duration) -> Duration {
    let margin = (socket_timeout / 5).clamp(Duration::from_millis(50), Duration::from_secs(1));
    socket_timeout
        .saturating_sub(margin)
        .max(Duration::from_millis(10))
}

/// Nanoseconds since the Unix epoch (the `sent` field: readable by any consumer).
#[inline]
fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Parses a decimal u64 (no sign, no spaces).
#[inline]
pub(crate) fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add((b - b'0') as u64)?;
    }
    Some(n)
}

/// Takes the next element off an aggregate's payload: its kind and its own payload.
#[inline]
pub(crate) fn take<'a>(rest: &mut &'a [u8]) -> Option<(ReplyKind, &'a [u8])> {
    let (reply, used) = resp::scan(rest).ok()??;
    let payload = &rest[reply.payload];
    *rest = &rest[used..];
    Some((reply.kind, payload))
}

/// The request id in a BLPOP reply `[list, id]`.
fn reply_id(kind: ReplyKind, payload: &[u8]) -> Option<u64> {
    if kind != ReplyKind::Array(2) {
        return None;
    }
    let mut rest = payload;
    take(&mut rest)?;
    match take(&mut rest)? {
        (ReplyKind::Bulk, id) => parse_u64(id),
        _ => None,
    }
}

/// A request sent and not resolved yet (no reply, not given up).
#[derive(Debug, Clone, Copy)]
struct Open {
    id: u64,
    /// The unit that sent it: its own BLPOP times it with the worker's clock.
    unit: u64,
    sent_ns: u64,
    /// Its XADD was acknowledged.
    confirmed: bool,
}

/// An ingress worker: XADD a request, BLPOP its reply.
pub struct Ingress {
    /// `XADD <stream> MAXLEN ~ <n> * id`, then the id.
    xadd_head: Vec<u8>,
    /// `reply_to <list> sent`, then the send time.
    xadd_mid: Vec<u8>,
    /// `payload`, then the value.
    xadd_tail: Vec<u8>,
    /// The whole `BLPOP <list> <timeout>`.
    blpop: Vec<u8>,
    values: ValueSource,
    next_id: u64,
    next_unit: u64,
    /// The request whose XADD reply is read next, and the unit whose BLPOP reply is.
    xadd_reply_id: u64,
    blpop_reply_unit: u64,
    /// Requests waiting for their reply (at most about a batch of them; never grows).
    open: Vec<Open>,
    open_limit: usize,
}

impl Ingress {
    pub fn new(cfg: &RunnerConfig, ingress: usize, rng: &mut WorkerRng) -> Self {
        let stream = request_stream(cfg);
        let list = reply_list(cfg, ingress);
        let max_len = cfg.workload.stream_max_length.min(i64::MAX as u64) as i64;
        let mut xadd_head = encode::command_start("XADD", 14);
        encode::bulk(&mut xadd_head, stream.as_bytes());
        encode::bulk(&mut xadd_head, b"MAXLEN");
        encode::bulk(&mut xadd_head, b"~");
        encode::bulk_int(&mut xadd_head, max_len);
        encode::bulk(&mut xadd_head, b"*");
        encode::bulk(&mut xadd_head, b"id");
        let mut xadd_mid = Vec::new();
        encode::bulk(&mut xadd_mid, b"reply_to");
        encode::bulk(&mut xadd_mid, list.as_bytes());
        encode::bulk(&mut xadd_mid, b"sent");
        let mut xadd_tail = Vec::new();
        encode::bulk(&mut xadd_tail, b"payload");
        let timeout = format!(
            "{:.3}",
            blpop_timeout(cfg.redis.socket_timeout).as_secs_f64()
        );
        let mut blpop = Vec::new();
        encode::command_args(&mut blpop, &[b"BLPOP", list.as_bytes(), timeout.as_bytes()]);
        // A batch adds at most one request per unit, and requests left waiting at its start
        // are never more than a batch (see encode_next).
        let open_limit = 2 * cfg.workload.batch_size() + 2;
        Ingress {
            xadd_head,
            xadd_mid,
            xadd_tail,
            blpop,
            values: ValueSource::new(&cfg.workload.value_size, rng),
            next_id: 0,
            next_unit: 0,
            xadd_reply_id: 0,
            blpop_reply_unit: 0,
            open: Vec::with_capacity(open_limit),
            open_limit,
        }
    }

    /// At a batch's first unit: if the previous batch ended before all its replies were read
    /// (its connection failed), replies of requests whose XADD was never acknowledged are no
    /// longer awaited (they count as late if they come); acknowledged ones are still awaited on
    /// the new connection, since their reply goes to the same list.
    fn start_batch(&mut self) {
        if self.blpop_reply_unit != self.next_unit || self.xadd_reply_id != self.next_id {
            self.open.retain(|o| o.confirmed);
        }
        self.blpop_reply_unit = self.next_unit;
        self.xadd_reply_id = self.next_id;
    }

    /// BLPOP returned nil: every acknowledged request still waiting has waited at least a
    /// whole BLPOP timeout: it is unanswered.
    fn give_up(&mut self, rec: &mut Recorder<'_>) {
        self.open.retain(|o| {
            if o.confirmed {
                rec.count(UNANSWERED, 1);
                rec.error(OP_REQUEST_REPLY, ErrorClass::Timeout);
                false
            } else {
                true
            }
        });
    }

    /// BLPOP, sent by unit `unit`, returned the reply to request `id`.
    fn answer(&mut self, id: u64, unit: u64, rec: &mut Recorder<'_>) {
        match self.open.iter().position(|o| o.id == id) {
            Some(i) => {
                let open = self.open.swap_remove(i);
                rec.count(REPLIES, 1);
                if open.unit == unit {
                    rec.success(OP_REQUEST_REPLY);
                } else {
                    // Popped by a later unit's BLPOP (after a late reply): time it from its
                    // own XADD, by the wall clock both were read with.
                    let ns = unix_nanos().saturating_sub(open.sent_ns);
                    rec.metrics.record_success(OP_REQUEST_REPLY, ns, ns);
                }
            }
            None if id < self.next_id => rec.count(LATE_REPLIES, 1),
            None => rec.count(MISMATCHED, 1),
        }
    }
}

impl Workload for Ingress {
    #[inline]
    fn encode_next(&mut self, rng: &mut WorkerRng, out: &mut Vec<u8>, sent: &mut Vec<OpId>) {
        if out.is_empty() {
            self.start_batch();
        }
        let blpops_in_flight = (self.next_unit - self.blpop_reply_unit) as usize;
        // Requests left waiting without a BLPOP of their own (their reply was pre-empted by a
        // late one) get a BLPOP alone before any new request is sent.
        if self.open.len() <= blpops_in_flight && self.open.len() < self.open_limit {
            let id = self.next_id;
            self.next_id += 1;
            let sent_ns = unix_nanos();
            out.extend_from_slice(&self.xadd_head);
            encode::bulk_int(out, id as i64);
            out.extend_from_slice(&self.xadd_mid);
            encode::bulk_int(out, sent_ns as i64);
            out.extend_from_slice(&self.xadd_tail);
            encode::bulk(out, self.values.next(rng));
            sent.push(OP_XADD);
            self.open.push(Open {
                id,
                unit: self.next_unit,
                sent_ns,
                confirmed: false,
            });
        }
        out.extend_from_slice(&self.blpop);
        sent.push(OP_BLPOP);
        self.next_unit += 1;
    }

    #[inline]
    fn on_reply(&mut self, op: OpId, reply: &Reply, payload: &[u8], rec: &mut Recorder<'_>) {
        match op {
            OP_XADD => {
                let id = self.xadd_reply_id;
                self.xadd_reply_id += 1;
                let at = self.open.iter().position(|o| o.id == id);
                if reply.kind == ReplyKind::Error {
                    rec.standard(op, reply, payload);
                    // Not in the stream: nobody will answer it.
                    if let Some(i) = at {
                        self.open.swap_remove(i);
                    }
                } else {
                    rec.success(op);
                    rec.count(REQUESTS, 1);
                    if let Some(i) = at {
                        self.open[i].confirmed = true;
                    }
                }
            }
            OP_BLPOP => {
                let unit = self.blpop_reply_unit;
                self.blpop_reply_unit += 1;
                match reply.kind {
                    ReplyKind::Error => rec.standard(op, reply, payload),
                    ReplyKind::Nil => {
                        rec.success(op);
                        self.give_up(rec);
                    }
                    kind => {
                        rec.success(op);
                        match reply_id(kind, payload) {
                            Some(id) => self.answer(id, unit, rec),
                            None => rec.count(MISMATCHED, 1),
                        }
                    }
                }
            }
            _ => rec.standard(op, reply, payload),
        }
    }
}

/// The control plane's view of the group: XPENDING's count and XINFO GROUPS' `lag` (None when
/// the server cannot tell: before Redis 7, or after deletions inside the stream).
pub(crate) fn backlog(
    conn: &mut redis::Connection,
    stream: &str,
) -> redis::RedisResult<(u64, Option<u64>)> {
    let pending: redis::Value = redis::cmd("XPENDING").arg(stream).arg(GROUP).query(conn)?;
    let pending = match &pending {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => (*n).max(0) as u64,
            _ => 0,
        },
        _ => 0,
    };
    let groups: redis::Value = redis::cmd("XINFO").arg("GROUPS").arg(stream).query(conn)?;
    let lag = match &groups {
        redis::Value::Array(groups) => groups
            .iter()
            .find(|g| field(g, "name").is_some_and(|v| is_text(v, GROUP)))
            .and_then(|g| match field(g, "lag") {
                Some(redis::Value::Int(n)) => Some((*n).max(0) as u64),
                _ => None,
            }),
        _ => None,
    };
    Ok((pending, lag))
}

/// A field of an XINFO reply: a map (RESP3) or a flat name/value array (RESP2).
fn field<'a>(v: &'a redis::Value, name: &str) -> Option<&'a redis::Value> {
    match v {
        redis::Value::Map(pairs) => pairs.iter().find(|(k, _)| is_text(k, name)).map(|(_, v)| v),
        redis::Value::Array(items) => items
            .chunks_exact(2)
            .find(|p| is_text(&p[0], name))
            .map(|p| &p[1]),
        _ => None,
    }
}

fn is_text(v: &redis::Value, text: &str) -> bool {
    match v {
        redis::Value::BulkString(b) => b == text.as_bytes(),
        redis::Value::SimpleString(s) => s == text,
        redis::Value::VerbatimString { text: t, .. } => t == text,
        _ => false,
    }
}

/// Creates the group reading from `start` (`$`: new entries only), creating the stream too;
/// a group that already exists is fine.
pub(crate) fn create_group(
    conn: &mut redis::Connection,
    stream: &str,
    start: &str,
) -> redis::RedisResult<()> {
    let created: redis::RedisResult<redis::Value> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(GROUP)
        .arg(start)
        .arg("MKSTREAM")
        .query(conn);
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other.map(|_| ()),
    }
}

/// After the run: the group's final backlog, then the run's keys deleted (request stream and
/// every reply list), through the control plane.
pub fn verify(cfg: &RunnerConfig, report: &RunReport) -> serde_json::Value {
    let counter = |name: &str| report.counters.get(name).copied().unwrap_or(0);
    // Requests the run ended before resolving: sent, neither answered nor timed out.
    let in_flight = counter(COUNTERS[REQUESTS])
        .saturating_sub(counter(COUNTERS[REPLIES]) + counter(COUNTERS[UNANSWERED]));
    let stream = request_stream(cfg);
    let mut keys = vec![stream.clone()];
    keys.extend((0..ingress_workers(cfg)).map(|i| reply_list(cfg, i)));
    let outcome = crate::control::connection(&cfg.redis).and_then(|mut conn| {
        let backlog = backlog(&mut conn, &stream);
        let deleted: u64 = redis::cmd("DEL").arg(&keys).query(&mut conn)?;
        Ok((backlog, deleted))
    });
    let checks = match outcome {
        Ok((backlog, deleted)) => {
            let (pending, lag) = match backlog {
                Ok((p, l)) => (Some(p), l),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the stream backlog after the run");
                    (None, None)
                }
            };
            json!({
                "final_pending": pending,
                "final_lag": lag,
                "in_flight_at_end": in_flight,
                "keys_deleted": deleted,
                "cleaned_up": true,
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot clean up the run's stream keys");
            json!({
                "in_flight_at_end": in_flight,
                "cleaned_up": false,
                "error": e.to_string(),
            })
        }
    };
    json!({ "stream_request_reply": checks })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricsHub;

    #[test]
    fn blpop_waits_less_than_the_socket_timeout() {
        assert_eq!(
            blpop_timeout(Duration::from_secs(5)),
            Duration::from_secs(4)
        );
        assert_eq!(
            blpop_timeout(Duration::from_secs(30)),
            Duration::from_secs(29)
        );
        assert_eq!(
            blpop_timeout(Duration::from_millis(300)),
            Duration::from_millis(240)
        );
        assert_eq!(
            blpop_timeout(Duration::from_millis(100)),
            Duration::from_millis(50)
        );
        assert_eq!(
            blpop_timeout(Duration::from_millis(20)),
            Duration::from_millis(10)
        );
    }

    #[test]
    fn numbers_parse_strictly() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"1 "), None);
    }

    #[test]
    fn blpop_reply_ids() {
        let id = |buf: &[u8]| {
            let (r, _) = resp::scan(buf).unwrap().unwrap();
            reply_id(r.kind, &buf[r.payload])
        };
        assert_eq!(id(b"*2\r\n$3\r\nk:1\r\n$2\r\n42\r\n"), Some(42));
        assert_eq!(id(b"*2\r\n$3\r\nk:1\r\n$2\r\nxx\r\n"), None);
        assert_eq!(id(b"*1\r\n$3\r\nk:1\r\n"), None);
    }

    /// Drives an ingress worker's state machine without a server: `script` says what each
    /// BLPOP returns (`Some(id)` a reply, `None` a timeout); XADDs always succeed.
    struct Harness {
        ingress: Ingress,
        rng: WorkerRng,
        writer: crate::metrics::ShardWriter,
    }

    impl Harness {
        fn new(batch: usize) -> Harness {
            use rand_core::SeedableRng;
            let mut rng = WorkerRng::seed_from_u64(1);
            let ingress = Ingress {
                xadd_head: b"X".to_vec(),
                xadd_mid: Vec::new(),
                xadd_tail: Vec::new(),
                blpop: b"B".to_vec(),
                values: ValueSource::new(&crate::config::ValueSize::Fixed(1), &mut rng),
                next_id: 0,
                next_unit: 0,
                xadd_reply_id: 0,
                blpop_reply_unit: 0,
                open: Vec::with_capacity(2 * batch + 2),
                open_limit: 2 * batch + 2,
            };
            let hub = MetricsHub::with_counters(1, table(&OPS), table(&COUNTERS), false);
            Harness {
                ingress,
                rng,
                writer: hub.writer(0),
            }
        }

        /// One batch of `units`; returns the ops encoded.
        fn encode(&mut self, units: usize) -> Vec<OpId> {
            let mut out = Vec::new();
            let mut sent = Vec::new();
            for _ in 0..units {
                self.ingress.encode_next(&mut self.rng, &mut out, &mut sent);
            }
            sent
        }

        fn reply(&mut self, op: OpId, buf: &[u8]) {
            let (reply, _) = resp::scan(buf).unwrap().unwrap();
            let payload = buf[reply.payload.clone()].to_vec();
            let mut rec = Recorder {
                metrics: &mut self.writer,
                latency_ns: 1000,
                service_ns: 1000,
                failed: false,
                command: 0,
            };
            self.ingress.on_reply(op, &reply, &payload, &mut rec);
        }

        fn xadd_ok(&mut self) {
            self.reply(OP_XADD, b"$3\r\n1-1\r\n");
        }

        fn blpop(&mut self, id: Option<u64>) {
            match id {
                Some(id) => {
                    let digits = id.to_string();
                    let buf = format!("*2\r\n$1\r\nk\r\n${}\r\n{digits}\r\n", digits.len());
                    self.reply(OP_BLPOP, buf.as_bytes());
                }
                None => self.reply(OP_BLPOP, b"*-1\r\n"),
            }
        }

        /// The counters, then REQUEST_REPLY's successes and timeouts.
        fn counters(&mut self) -> Vec<u64> {
            let data = self.writer.data();
            let rr = &data.commands[OP_REQUEST_REPLY];
            let mut v = data.counters.clone();
            v.push(rr.success);
            v.push(rr.errors[ErrorClass::Timeout.index()]);
            v
        }
    }

    #[test]
    fn each_reply_answers_its_request() {
        let mut h = Harness::new(1);
        for id in 0..5 {
            assert_eq!(h.encode(1), [OP_XADD, OP_BLPOP]);
            h.xadd_ok();
            h.blpop(Some(id));
        }
        let c = h.counters();
        assert_eq!(
            (
                c[REQUESTS],
                c[REPLIES],
                c[UNANSWERED],
                c[LATE_REPLIES],
                c[MISMATCHED]
            ),
            (5, 5, 0, 0, 0)
        );
        assert_eq!(c[8], 5, "REQUEST_REPLY successes");
    }

    #[test]
    fn a_late_reply_does_not_shift_the_following_ones() {
        let mut h = Harness::new(1);
        // Request 0 times out; its reply then turns up while request 1 waits.
        h.encode(1);
        h.xadd_ok();
        h.blpop(None);
        assert_eq!(h.encode(1), [OP_XADD, OP_BLPOP]);
        h.xadd_ok();
        h.blpop(Some(0));
        // Request 1 is still waiting: the next unit is a BLPOP alone, and it gets 1.
        assert_eq!(h.encode(1), [OP_BLPOP]);
        h.blpop(Some(1));
        assert_eq!(h.encode(1), [OP_XADD, OP_BLPOP]);
        h.xadd_ok();
        h.blpop(Some(2));
        let c = h.counters();
        assert_eq!(
            (
                c[REQUESTS],
                c[REPLIES],
                c[UNANSWERED],
                c[LATE_REPLIES],
                c[MISMATCHED]
            ),
            (3, 2, 1, 1, 0)
        );
        assert_eq!((c[8], c[9]), (2, 1), "REQUEST_REPLY successes, timeouts");
    }

    #[test]
    fn foreign_ids_are_mismatched() {
        let mut h = Harness::new(1);
        h.encode(1);
        h.xadd_ok();
        h.blpop(Some(77));
        assert_eq!(h.counters()[MISMATCHED], 1);
        // Request 0 still waits for its own reply.
        assert_eq!(h.encode(1), [OP_BLPOP]);
        h.blpop(Some(0));
        assert_eq!(h.counters()[REPLIES], 1);
    }

    #[test]
    fn pipelined_units_and_a_lost_connection() {
        let mut h = Harness::new(3);
        assert_eq!(
            h.encode(3),
            [OP_XADD, OP_BLPOP, OP_XADD, OP_BLPOP, OP_XADD, OP_BLPOP]
        );
        h.xadd_ok();
        h.blpop(Some(0));
        h.xadd_ok();
        // The connection fails here: request 1 was acknowledged, request 2 was not.
        let sent = h.encode(3);
        assert_eq!(sent, [OP_BLPOP, OP_XADD, OP_BLPOP, OP_XADD, OP_BLPOP]);
        h.blpop(Some(1));
        h.xadd_ok();
        h.blpop(Some(3));
        h.xadd_ok();
        h.blpop(Some(2)); // request 2's reply after all: no longer awaited
        let c = h.counters();
        assert_eq!((c[REQUESTS], c[REPLIES], c[LATE_REPLIES]), (4, 3, 1));
        // Request 4 is still waiting: the next batch starts with its BLPOP.
        assert_eq!(h.encode(1), [OP_BLPOP]);
    }
}
