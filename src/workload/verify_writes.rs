//! `--verify-writes`: acknowledged writes that were lost, and reads that were stale.
//!
//! With it, the mix's SET and GET (see `mix.rs`) work on a key space of each worker's own,
//! `<prefix>:verify:<worker>:<n>`, and every SET's value starts with a stamp
//! `<worker>:<seq>:` (seq counts the worker's SETs from 1). A [`Verifier`] per worker keeps a
//! ledger: for each key, the highest seq the server acknowledged (+OK). A GET that returns an
//! older seq than was acknowledged when the GET was sent, or nothing at all, is a stale read
//! (counted as the workload counter `stale_reads`). After the run, each worker hands its ledger
//! to the run's [`Shared`] state and [`verify`] reads every acknowledged key back: a key whose
//! value is gone or older than its acknowledged write is a lost write. Asynchronous replication
//! loses acknowledged writes in a failover, and a server restarted without persistence loses
//! them all; this is how a run shows it.
//!
//! Per command nothing is allocated: the stamp is written with `itoa` into a reused buffer,
//! the ledger and the in-flight table are allocated when the worker is built. Not here: which
//! keys are drawn (the configured distribution, `keys.rs`). In cluster mode [`read_back`]
//! sends each GET to its slot's master through a cluster pipeline of its own.

use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::client::ConnectError;
use crate::client::cluster::ClusterWatch;
use crate::config::{RunnerConfig, WorkloadConfig};
use crate::output::report::RunReport;
use crate::proto::encode;
use crate::proto::resp::{Reply, ReplyKind};
use crate::workload::keys::{KeySpace, key_name};
use crate::workload::{RunPlan, WorkerRng, cluster_io};

/// Workload counter: GETs that saw less than had been acknowledged before they were sent.
pub const STALE_READS: usize = 0;
pub const COUNTERS: [&str; 1] = ["stale_reads"];
/// Keys read back per pipelined batch of GETs.
const READ_BACK_BATCH: usize = 500;
/// Lost keys named in the report.
const LOST_SAMPLE: usize = 10;
/// Longest stamp: two u64s and two colons.
const MAX_STAMP: usize = 2 * 20 + 2;

/// `<prefix>:verify:<worker>:`, the start of worker `worker`'s keys.
pub fn key_prefix(cfg: &WorkloadConfig, worker: usize) -> String {
    format!("{}:verify:{worker}:", cfg.key_prefix)
}

/// One worker's ledger, handed in when the worker is done.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub worker: usize,
    /// Per key (index = key number - key_min): the highest acknowledged seq, 0 for none.
    pub acked: Vec<u64>,
    /// SETs acknowledged.
    pub acknowledged: u64,
}

/// What the workers of a verify run share: their ledgers, handed in once each at the end.
#[derive(Debug, Default)]
pub struct Shared {
    ledgers: Mutex<Vec<Ledger>>,
}

/// A SET or GET sent and not answered yet.
#[derive(Debug, Clone, Copy, Default)]
struct InFlight {
    /// Key number - key_min.
    key: usize,
    /// SET: its seq. GET: the key's acknowledged seq when it was sent.
    seq: u64,
    /// Which it is (a position holds a stale entry of an earlier batch if neither).
    kind: Kind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Kind {
    #[default]
    None,
    Set,
    Get,
}

/// One worker's stamps and ledger.
pub struct Verifier {
    worker: usize,
    worker_digits: Vec<u8>,
    /// `<prefix>:verify:<worker>:`.
    prefix: Vec<u8>,
    key_min: u64,
    next_seq: u64,
    ledger: Ledger,
    /// By the command's position in its batch's `sent` list ([`crate::workload::Recorder::command_index`]):
    /// replies find their entry whatever order they come in, and a reply delivered again
    /// (a command sent again after a redirect) finds the same entry.
    in_flight: Vec<InFlight>,
    /// The value being written: stamp then filler (reused).
    value: Vec<u8>,
    shared: Arc<Shared>,
}

impl Verifier {
    pub fn new(cfg: &WorkloadConfig, worker: usize, shared: Arc<Shared>) -> Self {
        let keys = usize::try_from(cfg.key_range).expect("key range fits in memory");
        Verifier {
            worker,
            worker_digits: worker.to_string().into_bytes(),
            prefix: key_prefix(cfg, worker).into_bytes(),
            key_min: cfg.key_min,
            next_seq: 1,
            ledger: Ledger {
                worker,
                acked: vec![0; keys],
                acknowledged: 0,
            },
            // LPUSH/RPUSH add an LTRIM: at most two commands per unit.
            in_flight: vec![InFlight::default(); 2 * cfg.batch_size()],
            value: Vec::with_capacity(cfg.value_size.max() + MAX_STAMP),
            shared,
        }
    }

    #[inline]
    fn remember(&mut self, position: usize, entry: InFlight) {
        if position >= self.in_flight.len() {
            // Not with the mix's units (sized for them above); kept correct all the same.
            self.in_flight.resize(position + 1, InFlight::default());
        }
        self.in_flight[position] = entry;
    }

    /// Appends the key and stamped value of a SET (after its command start); `position` is
    /// `sent.len()` before its op is pushed.
    #[inline]
    pub fn encode_set(
        &mut self,
        keys: &mut KeySpace,
        rng: &mut WorkerRng,
        filler: &[u8],
        out: &mut Vec<u8>,
        position: usize,
    ) {
        let n = keys.next(rng);
        keys.write_key(out, &self.prefix, n);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.value.clear();
        self.value.extend_from_slice(&self.worker_digits);
        self.value.push(b':');
        self.value
            .extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
        self.value.push(b':');
        // Padded to the drawn size; a value shorter than its stamp is just the stamp.
        let pad = filler.len().saturating_sub(self.value.len());
        self.value.extend_from_slice(&filler[..pad]);
        encode::bulk(out, &self.value);
        let key = (n - self.key_min) as usize;
        self.remember(
            position,
            InFlight {
                key,
                seq,
                kind: Kind::Set,
            },
        );
    }

    /// Appends the key of a GET (after its command start).
    #[inline]
    pub fn encode_get(
        &mut self,
        keys: &mut KeySpace,
        rng: &mut WorkerRng,
        out: &mut Vec<u8>,
        position: usize,
    ) {
        let n = keys.next(rng);
        keys.write_key(out, &self.prefix, n);
        let key = (n - self.key_min) as usize;
        let seq = self.ledger.acked[key];
        self.remember(
            position,
            InFlight {
                key,
                seq,
                kind: Kind::Get,
            },
        );
    }

    /// A SET's reply: +OK acknowledges its seq.
    #[inline]
    pub fn on_set_reply(&mut self, position: usize, reply: &Reply) {
        let Some(&InFlight { key, seq, kind }) = self.in_flight.get(position) else {
            return;
        };
        if kind != Kind::Set || reply.kind != ReplyKind::Status {
            return;
        }
        // Acknowledgements of one key come in seq order (one connection at a time), so an
        // older or equal seq here is the same reply delivered again: not counted twice.
        let acked = &mut self.ledger.acked[key];
        if seq > *acked {
            *acked = seq;
            self.ledger.acknowledged += 1;
        }
    }

    /// A GET's reply: whether it is stale (missing, or older than what was acknowledged
    /// before the GET was sent). Error replies are not reads.
    #[inline]
    pub fn is_stale_read(&self, position: usize, reply: &Reply, payload: &[u8]) -> bool {
        let Some(&InFlight { seq, kind, .. }) = self.in_flight.get(position) else {
            return false;
        };
        if kind != Kind::Get || seq == 0 {
            return false;
        }
        match reply.kind {
            ReplyKind::Nil => true,
            ReplyKind::Bulk => self.seq_of(payload) < seq,
            _ => false,
        }
    }

    /// The seq of a value stamped by this worker; 0 for anything else.
    #[inline]
    fn seq_of(&self, value: &[u8]) -> u64 {
        match parse_stamp(value) {
            Some((worker, seq)) if worker == self.worker as u64 => seq,
            _ => 0,
        }
    }
}

impl Drop for Verifier {
    /// The worker's loop has ended (the worker is dropped right after it): hand the ledger to
    /// the run's check.
    fn drop(&mut self) {
        let ledger = Ledger {
            worker: self.worker,
            acked: std::mem::take(&mut self.ledger.acked),
            acknowledged: self.ledger.acknowledged,
        };
        if let Ok(mut ledgers) = self.shared.ledgers.lock() {
            ledgers.push(ledger);
        }
    }
}

/// `(worker, seq)` from a value starting with `<worker>:<seq>:`.
pub fn parse_stamp(value: &[u8]) -> Option<(u64, u64)> {
    let (worker, rest) = parse_field(value)?;
    let (seq, _) = parse_field(rest)?;
    Some((worker, seq))
}

/// A decimal number followed by ':', and what comes after the colon.
#[inline]
fn parse_field(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let end = bytes.iter().take(21).position(|&b| b == b':')?;
    if end == 0 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in &bytes[..end] {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some((n, &bytes[end + 1..]))
}

/// The plan's shared state for a verify run.
pub fn shared() -> Arc<Shared> {
    Arc::new(Shared::default())
}

/// Reads `keys` back with pipelined GETs over one data-plane connection (in cluster mode,
/// `cluster`: one per master, each GET to its slot's master), in order; `None` for a key that
/// does not exist. An error reply fails the read-back (its answer is unknown).
pub fn read_back(
    cfg: &RunnerConfig,
    cluster: Option<&Arc<ClusterWatch>>,
    keys: &[String],
) -> Result<Vec<Option<Vec<u8>>>, ConnectError> {
    let name = format!("{}-verify", cfg.redis.client_name);
    let mut values = Vec::with_capacity(keys.len());
    if let Some(watch) = cluster {
        let mut pipeline = cluster_io::pipeline(watch, &cfg.redis, &name)?;
        for chunk in keys.chunks(READ_BACK_BATCH) {
            pipeline.begin();
            for (op, key) in chunk.iter().enumerate() {
                encode::command_args(pipeline.buf(), &[b"GET", key.as_bytes()]);
                pipeline.end_unit(op, op + 1);
            }
            let mut read: Vec<Result<Option<Vec<u8>>, ConnectError>> =
                (0..chunk.len()).map(|_| Ok(None)).collect();
            cluster_io::exchange(
                &mut pipeline,
                &cfg.redis,
                &name,
                chunk.len(),
                "GET",
                &mut |op, reply, payload| read[op] = read_value(&chunk[op], reply, payload),
            )?;
            for value in read {
                values.push(value?);
            }
        }
        return Ok(values);
    }
    let mut conn = crate::client::connect(&cfg.redis, &name)?;
    for chunk in keys.chunks(READ_BACK_BATCH) {
        let out = conn.request_buf();
        for key in chunk {
            encode::command_args(out, &[b"GET", key.as_bytes()]);
        }
        conn.flush()?;
        for key in chunk {
            let reply = conn.read_reply()?;
            values.push(read_value(key, &reply, conn.payload(&reply))?);
        }
    }
    Ok(values)
}

/// A GET's reply as a value: the bytes, `None` for a missing key, an error otherwise.
fn read_value(key: &str, reply: &Reply, payload: &[u8]) -> Result<Option<Vec<u8>>, ConnectError> {
    match reply.kind {
        ReplyKind::Nil => Ok(None),
        ReplyKind::Bulk => Ok(Some(payload.to_vec())),
        _ => Err(ConnectError::Rejected {
            command: "GET",
            message: format!("reading back {key}: {}", String::from_utf8_lossy(payload)),
            class: crate::error::ErrorClass::from_error_reply(payload),
        }),
    }
}

/// The check's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    pub acknowledged_writes: u64,
    pub keys_checked: u64,
    pub lost_writes: u64,
    pub lost_sample: Vec<String>,
    pub in_doubt_landed: u64,
    pub stale_reads: u64,
}

impl Findings {
    /// Compares what was read back (`values[i]` for `keys[i]`) with what was acknowledged
    /// (`expected[i]` = (worker, acknowledged seq)): returns the lost writes, a sample of their
    /// keys, and the keys holding a newer, unacknowledged write.
    fn compare(
        keys: &[String],
        expected: &[(u64, u64)],
        values: &[Option<Vec<u8>>],
    ) -> (u64, Vec<String>, u64) {
        let (mut lost, mut sample, mut landed) = (0, Vec::new(), 0);
        for ((key, &(worker, acked)), value) in keys.iter().zip(expected).zip(values) {
            let seq = match value.as_deref().and_then(parse_stamp) {
                Some((w, seq)) if w == worker => seq,
                _ => 0,
            };
            if seq < acked {
                lost += 1;
                if sample.len() < LOST_SAMPLE {
                    sample.push(key.clone());
                }
            } else if seq > acked {
                // A SET whose reply never came (connection lost, run ended) was applied.
                landed += 1;
            }
        }
        (lost, sample, landed)
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "acknowledged_writes": self.acknowledged_writes,
            "keys_checked": self.keys_checked,
            "lost_writes": self.lost_writes,
            "lost_sample": self.lost_sample,
            "in_doubt_landed": self.in_doubt_landed,
            "stale_reads": self.stale_reads,
        })
    }
}

/// The check for the report's `checks`: `{"verify_writes": {...}}`, or
/// `{"verify_writes": {"error": ...}}` when the keys could not be read back.
pub fn verify(cfg: &RunnerConfig, plan: &RunPlan, report: &RunReport) -> serde_json::Value {
    let ledgers = plan
        .shared::<Shared>()
        .and_then(|s| s.ledgers.lock().ok().map(|mut l| std::mem::take(&mut *l)))
        .unwrap_or_default();
    if ledgers.len() < plan.workers {
        tracing::warn!(
            handed_in = ledgers.len(),
            workers = plan.workers,
            "verify_writes: not every worker finished; checking the ledgers handed in"
        );
    }
    let w = &cfg.workload;
    let mut findings = Findings {
        stale_reads: report
            .counters
            .get(COUNTERS[STALE_READS])
            .copied()
            .unwrap_or(0),
        ..Findings::default()
    };
    let mut keys = Vec::new();
    let mut expected = Vec::new();
    for ledger in &ledgers {
        findings.acknowledged_writes += ledger.acknowledged;
        let prefix = key_prefix(w, ledger.worker);
        for (i, &acked) in ledger.acked.iter().enumerate() {
            if acked > 0 {
                keys.push(key_name(&prefix, w.hash_tag, w.key_min + i as u64));
                expected.push((ledger.worker as u64, acked));
            }
        }
    }
    findings.keys_checked = keys.len() as u64;
    let body = match read_back(cfg, plan.cluster_watch.as_ref(), &keys) {
        Ok(values) => {
            let (lost, sample, landed) = Findings::compare(&keys, &expected, &values);
            findings.lost_writes = lost;
            findings.lost_sample = sample;
            findings.in_doubt_landed = landed;
            if lost > 0 {
                tracing::warn!(
                    lost,
                    "verify_writes: acknowledged writes are missing from the server"
                );
            }
            findings.to_json()
        }
        Err(e) => {
            let error = format!("cannot read the written keys back: {e}");
            tracing::warn!(%error, "verify_writes: no read-back");
            json!({ "error": error, "stale_reads": findings.stale_reads })
        }
    };
    json!({ "verify_writes": body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ValueSize;
    use crate::proto::resp;
    use rand_core::SeedableRng;

    fn scan(buf: &[u8]) -> (Reply, Vec<u8>) {
        let (r, _) = resp::scan(buf).unwrap().unwrap();
        let payload = buf[r.payload.clone()].to_vec();
        (r, payload)
    }

    #[test]
    fn stamps_parse_back() {
        assert_eq!(parse_stamp(b"3:17:abc"), Some((3, 17)));
        assert_eq!(parse_stamp(b"0:18446744073709551615:"), Some((0, u64::MAX)));
        assert_eq!(parse_stamp(b"3:17"), None);
        assert_eq!(parse_stamp(b":17:x"), None);
        assert_eq!(parse_stamp(b"3:1x7:x"), None);
        assert_eq!(parse_stamp(b"3:99999999999999999999:x"), None);
        assert_eq!(parse_stamp(b"hello"), None);
    }

    fn verifier(value_size: ValueSize) -> (Verifier, KeySpace, Arc<Shared>) {
        let mut cfg = crate::workload::mix::tests::config();
        cfg.key_range = 4;
        cfg.key_min = 10;
        cfg.value_size = value_size;
        let shared = shared();
        let v = Verifier::new(&cfg, 7, Arc::clone(&shared));
        (v, KeySpace::new(&cfg, 7, 8), shared)
    }

    #[test]
    fn acknowledged_sets_and_stale_reads() {
        let (mut v, mut keys, shared) = verifier(ValueSize::Fixed(12));
        let mut rng = WorkerRng::seed_from_u64(1);
        let mut out = Vec::new();
        v.encode_set(&mut keys, &mut rng, b"FILLERFILLERFILLER", &mut out, 0);
        let args =
            crate::proto::resp::split_commands(&[b"*3\r\n$3\r\nSET\r\n" as &[u8], &out].concat());
        let key = args[0][1].clone();
        assert!(key.starts_with("k:verify:7:"), "{key}");
        // Padded to the drawn filler's length, stamp first.
        assert_eq!(args[0][2], "7:1:FILLERFILLERFI");
        let n: usize = key.rsplit(':').next().unwrap().parse().unwrap();
        let k = n - 10;
        let (ok, _) = scan(b"+OK\r\n");
        v.on_set_reply(0, &ok);
        v.on_set_reply(0, &ok); // delivered again: counted once
        assert_eq!((v.ledger.acked[k], v.ledger.acknowledged), (1, 1));

        // A GET of the same key (same seed, same draw) sent now must see seq >= 1.
        let mut out = Vec::new();
        let mut rng2 = WorkerRng::seed_from_u64(1);
        v.encode_get(&mut keys, &mut rng2, &mut out, 3);
        let got: usize = String::from_utf8_lossy(&out)
            .trim_end()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(got - 10, k);
        let (nil, p) = scan(b"$-1\r\n");
        assert!(v.is_stale_read(3, &nil, &p));
        let (old, p) = scan(b"$6\r\n7:0:xx\r\n");
        assert!(v.is_stale_read(3, &old, &p));
        let (other, p) = scan(b"$6\r\n6:5:xx\r\n");
        assert!(
            v.is_stale_read(3, &other, &p),
            "another worker's stamp is not ours"
        );
        let (fresh, p) = scan(b"$6\r\n7:1:xx\r\n");
        assert!(!v.is_stale_read(3, &fresh, &p));
        let (err, p) = scan(b"-ERR x\r\n");
        assert!(!v.is_stale_read(3, &err, &p));
        // Position 0 holds a SET: a GET reply there is not judged.
        let (nil, p) = scan(b"$-1\r\n");
        assert!(!v.is_stale_read(0, &nil, &p));
        drop(v);
        let ledgers = shared.ledgers.lock().unwrap();
        assert_eq!(ledgers.len(), 1);
        assert_eq!((ledgers[0].worker, ledgers[0].acknowledged), (7, 1));
    }

    #[test]
    fn a_get_of_a_never_acknowledged_key_is_never_stale() {
        let (mut v, mut keys, _) = verifier(ValueSize::Fixed(4));
        let mut rng = WorkerRng::seed_from_u64(2);
        let mut out = Vec::new();
        v.encode_get(&mut keys, &mut rng, &mut out, 0);
        let (nil, p) = scan(b"$-1\r\n");
        assert!(!v.is_stale_read(0, &nil, &p));
        // A value shorter than its stamp is the stamp alone.
        let mut out = Vec::new();
        v.encode_set(&mut keys, &mut rng, b"ab", &mut out, 1);
        assert!(String::from_utf8_lossy(&out).ends_with("$4\r\n7:1:\r\n"));
    }

    #[test]
    fn read_back_values_against_the_ledger() {
        let keys: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let expected = [(1, 5), (1, 5), (1, 5), (1, 5), (1, 5)];
        let values = [
            Some(b"1:5:x".to_vec()), // as acknowledged
            None,                    // gone
            Some(b"1:4:x".to_vec()), // older
            Some(b"1:6:x".to_vec()), // an unacknowledged SET landed
            Some(b"2:9:x".to_vec()), // not ours
        ];
        let (lost, sample, landed) = Findings::compare(&keys, &expected, &values);
        assert_eq!((lost, landed), (3, 1));
        assert_eq!(sample, ["b", "c", "e"]);
    }
}
