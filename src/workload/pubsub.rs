//! The `pubsub_test` workload: publishers PUBLISH numbered, timestamped messages; subscribers
//! (in [`super::pubsub_subscriber`]) measure delivery latency and find lost, duplicated and
//! out-of-order messages.
//!
//! Workers `0..publishers` are publishers on the standard request/reply loop (this file);
//! the next `subscribers` workers run their own loop. Every message starts with a fixed-width
//! header, `r<run tag:8 hex>p<publisher:8 hex>s<sequence:16 hex>t<send time:16 hex>|`, padded
//! to the value size: digits are written into a reused buffer, nothing is formatted or
//! allocated per message. The send time is nanoseconds since an [`Instant`] shared by every
//! worker of the run, so a subscriber in the same process computes delivery latency as its
//! receive time minus the send time. The run tag keeps messages of another run (another
//! process publishing on the same channels) from being taken for ours.
//!
//! Each publisher's sequence runs 0, 1, 2, ... over all channels (round-robin), and every
//! subscriber listens on every channel, so each subscriber must see every sequence number of
//! every publisher. A PUBLISH reply says how many subscribers got the message: the sum is
//! the `expected_deliveries` counter, which the subscribers' `received` must equal on a
//! healthy run. (PUBLISH counts every subscriber of the channel, so a `redis-cli SUBSCRIBE`
//! on it raises `expected_deliveries` above `received`: that is the truth, not a bug.)
//!
//! A PUBLISH whose reply never came (its connection failed) is a PUBLISH error; whether it
//! reached the server is unknown, so if it did not, subscribers count it lost. The send time
//! is read once per batch (one clock read per command without a pipeline) and is the actual
//! send, not the open-loop intended start: a publisher that falls behind shows in PUBLISH
//! latency and schedule lag, delivery latency is the message's own trip.
//!
//! Not here: anything per subscriber (see `pubsub_subscriber.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::config::{RunnerConfig, ValueSize};
use crate::metrics::OpId;
use crate::proto::encode;
use crate::proto::resp::{Reply, ReplyKind};
use crate::workload::keys::{WeightedIndex, below};
use crate::workload::pubsub_subscriber::Subscriber;
use crate::workload::{Recorder, RunPlan, WorkerRng, WorkerTask, Workload};

/// The PUBLISH command (its latency is the publisher's round trip).
pub const OP_PUBLISH: OpId = 0;
/// A message's delivery to a subscriber (its latency is send to receive, end to end).
pub const OP_RECEIVE: OpId = 1;

/// Workload counters, in the order of [`COUNTERS`].
pub const PUBLISHED: usize = 0;
pub const EXPECTED_DELIVERIES: usize = 1;
pub const RECEIVED: usize = 2;
pub const LOST: usize = 3;
pub const DUPLICATED: usize = 4;
pub const OUT_OF_ORDER: usize = 5;
pub const COUNTERS: [&str; 6] = [
    "published",
    "expected_deliveries",
    "received",
    "lost",
    "duplicated",
    "out_of_order",
];

/// Length of the message header; messages are at least this long.
pub const HEADER_LEN: usize = 53;
const TAG_AT: usize = 1;
const ID_AT: usize = 10;
const SEQ_AT: usize = 19;
const TIME_AT: usize = 36;

/// A final sequence count not stored yet.
const UNKNOWN: u64 = u64::MAX;

/// The plan: PUBLISH and RECEIVE, the counters, and one worker per publisher and subscriber
/// (instead of clients x threads).
pub fn plan(cfg: &RunnerConfig) -> RunPlan {
    let publishers = cfg.workload.publishers as usize;
    let shared: Arc<Shared> = Arc::new(Shared::new(publishers));
    RunPlan {
        ops: vec!["PUBLISH".to_string(), "RECEIVE".to_string()].into(),
        counters: COUNTERS
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .into(),
        workers: publishers + cfg.workload.subscribers as usize,
        paced_workers: publishers,
        shared: Some(shared),
        master_watch: None,
        cluster_watch: None,
    }
}

/// Worker `index`: a publisher below `publishers`, a subscriber from there on.
pub fn build(cfg: &RunnerConfig, plan: &RunPlan, index: usize, rng: &mut WorkerRng) -> WorkerTask {
    let shared = plan
        .shared::<Shared>()
        .expect("pubsub_test's plan carries its shared state");
    let publishers = cfg.workload.publishers as usize;
    if index < publishers {
        WorkerTask::Requests(Box::new(Publisher::new(cfg, index as u32, shared, rng)))
    } else {
        WorkerTask::Subscriber(Box::new(Subscriber::new(cfg, index - publishers, shared)))
    }
}

/// What the workers of one run share. Touched once per run, never per message: created by
/// the run's plan, read at construction, and each publisher stores its final
/// sequence count once, when it is dropped after its loop ended.
pub struct Shared {
    /// Send and receive times are nanoseconds since this instant.
    pub anchor: Instant,
    /// Marks this run's messages.
    pub tag: u32,
    /// Per publisher: how many sequence numbers it had sent when it stopped, counted up to its
    /// last acknowledged PUBLISH ([`UNKNOWN`] until then).
    finals: Box<[AtomicU64]>,
}

impl Shared {
    fn new(publishers: usize) -> Shared {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mixed = splitmix(nanos ^ (std::process::id() as u64).rotate_left(32));
        Shared {
            anchor: Instant::now(),
            tag: (mixed >> 32) as u32,
            finals: (0..publishers).map(|_| AtomicU64::new(UNKNOWN)).collect(),
        }
    }

    /// Publisher `id`'s final sequence count, once it has stopped.
    pub fn published_by(&self, id: usize) -> Option<u64> {
        match self.finals.get(id)?.load(Ordering::Acquire) {
            UNKNOWN => None,
            n => Some(n),
        }
    }

    pub fn publishers(&self) -> usize {
        self.finals.len()
    }

    /// Nanoseconds from the anchor to `at`.
    #[inline]
    pub fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.anchor).as_nanos() as u64
    }
}

/// SplitMix64 finaliser: spreads clock and pid bits over the whole tag.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `v` as `dst.len()` lower-case hex digits, most significant first.
#[inline]
fn put_hex(dst: &mut [u8], mut v: u64) {
    for d in dst.iter_mut().rev() {
        *d = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// Reads hex digits; `None` if any byte is not one.
#[inline]
fn get_hex(src: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for &b in src {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | d as u64;
    }
    Some(v)
}

/// A message header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub tag: u32,
    pub publisher: u32,
    pub seq: u64,
    pub sent_ns: u64,
}

impl Header {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `dst`.
    #[inline]
    pub fn write(&self, dst: &mut [u8]) {
        let h = &mut dst[..HEADER_LEN];
        h[0] = b'r';
        put_hex(&mut h[TAG_AT..TAG_AT + 8], self.tag as u64);
        h[ID_AT - 1] = b'p';
        put_hex(&mut h[ID_AT..ID_AT + 8], self.publisher as u64);
        h[SEQ_AT - 1] = b's';
        put_hex(&mut h[SEQ_AT..SEQ_AT + 16], self.seq);
        h[TIME_AT - 1] = b't';
        put_hex(&mut h[TIME_AT..TIME_AT + 16], self.sent_ns);
        h[HEADER_LEN - 1] = b'|';
    }

    /// Reads the header at the start of a message, in place; `None` if it is not one.
    #[inline]
    pub fn parse(msg: &[u8]) -> Option<Header> {
        let h = msg.get(..HEADER_LEN)?;
        if h[0] != b'r'
            || h[ID_AT - 1] != b'p'
            || h[SEQ_AT - 1] != b's'
            || h[TIME_AT - 1] != b't'
            || h[HEADER_LEN - 1] != b'|'
        {
            return None;
        }
        Some(Header {
            tag: get_hex(&h[TAG_AT..TAG_AT + 8])? as u32,
            publisher: get_hex(&h[ID_AT..ID_AT + 8])? as u32,
            seq: get_hex(&h[SEQ_AT..SEQ_AT + 16])?,
            sent_ns: get_hex(&h[TIME_AT..TIME_AT + 16])?,
        })
    }
}

/// How long each message is: the configured value size, at least the header.
enum MessageSize {
    Fixed(usize),
    Range(usize, usize),
    Weighted(Vec<usize>, WeightedIndex),
}

impl MessageSize {
    fn new(size: &ValueSize) -> Self {
        match size {
            ValueSize::Fixed(n) => MessageSize::Fixed((*n).max(HEADER_LEN)),
            ValueSize::Range { min, max } => {
                MessageSize::Range((*min).max(HEADER_LEN), (*max).max(HEADER_LEN))
            }
            ValueSize::Weighted(pairs) => MessageSize::Weighted(
                pairs.iter().map(|&(s, _)| s.max(HEADER_LEN)).collect(),
                WeightedIndex::new(pairs.iter().map(|&(_, w)| w as f64)),
            ),
        }
    }

    #[inline]
    fn next(&self, rng: &mut WorkerRng) -> usize {
        match self {
            MessageSize::Fixed(n) => *n,
            MessageSize::Range(min, max) => min + below(rng, (max - min + 1) as u64) as usize,
            MessageSize::Weighted(sizes, choice) => sizes[choice.pick(rng)],
        }
    }
}

/// One publisher: `PUBLISH <channel> <message>`, channels in turn.
pub struct Publisher {
    id: u32,
    shared: Arc<Shared>,
    /// `*3 $7 PUBLISH`, encoded once.
    start: Vec<u8>,
    /// Each channel, already encoded as a bulk string.
    channels: Vec<Vec<u8>>,
    next_channel: usize,
    /// Header and padding of the longest message; each message is a prefix of it.
    message: Vec<u8>,
    size: MessageSize,
    /// The worker encodes exactly `batch_size` units per batch and reads their replies in
    /// order, so the sequence number of each reply is known without a queue.
    batch_size: usize,
    encoded_in_batch: usize,
    replied_in_batch: u64,
    batch_first: u64,
    /// One clock read per batch: the send time of its messages.
    batch_sent_ns: u64,
    next_seq: u64,
    /// One past the highest sequence number whose PUBLISH was acknowledged.
    acked_end: u64,
}

impl Publisher {
    pub fn new(cfg: &RunnerConfig, id: u32, shared: Arc<Shared>, rng: &mut WorkerRng) -> Self {
        let w = &cfg.workload;
        let channels: Vec<Vec<u8>> = w
            .pubsub_channels
            .iter()
            .map(|c| {
                let mut b = Vec::new();
                encode::bulk(&mut b, c.as_bytes());
                b
            })
            .collect();
        let longest = w.value_size.max().max(HEADER_LEN);
        // Printable padding that differs between publishers (not per message: not needed).
        let message = (0..longest)
            .map(|_| b"abcdefghijklmnopqrstuvwxyz"[below(rng, 26) as usize])
            .collect();
        let batch_size = w.batch_size();
        Publisher {
            id,
            start: encode::command_start("PUBLISH", 3),
            next_channel: id as usize % channels.len().max(1),
            channels,
            message,
            size: MessageSize::new(&w.value_size),
            batch_size,
            encoded_in_batch: batch_size,
            replied_in_batch: 0,
            batch_first: 0,
            batch_sent_ns: 0,
            next_seq: 0,
            acked_end: 0,
            shared,
        }
    }
}

impl Workload for Publisher {
    #[inline]
    fn encode_next(&mut self, rng: &mut WorkerRng, out: &mut Vec<u8>, sent: &mut Vec<OpId>) {
        if self.encoded_in_batch == self.batch_size {
            // A new batch: whatever of the last one got no reply never will.
            self.encoded_in_batch = 0;
            self.replied_in_batch = 0;
            self.batch_first = self.next_seq;
            self.batch_sent_ns = self.shared.nanos(Instant::now());
        }
        self.encoded_in_batch += 1;
        let len = self.size.next(rng);
        Header {
            tag: self.shared.tag,
            publisher: self.id,
            seq: self.next_seq,
            sent_ns: self.batch_sent_ns,
        }
        .write(&mut self.message);
        self.next_seq += 1;
        out.extend_from_slice(&self.start);
        out.extend_from_slice(&self.channels[self.next_channel]);
        self.next_channel += 1;
        if self.next_channel == self.channels.len() {
            self.next_channel = 0;
        }
        encode::bulk(out, &self.message[..len]);
        sent.push(OP_PUBLISH);
    }

    #[inline]
    fn on_reply(&mut self, op: OpId, reply: &Reply, payload: &[u8], rec: &mut Recorder<'_>) {
        let seq = self.batch_first + self.replied_in_batch;
        self.replied_in_batch += 1;
        match reply.kind {
            ReplyKind::Integer(receivers) => {
                rec.success(op);
                rec.count(PUBLISHED, 1);
                rec.count(EXPECTED_DELIVERIES, receivers.max(0) as u64);
                self.acked_end = seq + 1;
            }
            _ => rec.standard(op, reply, payload),
        }
    }

    /// The publisher sends nothing more and has every reply: subscribers (which may run on the
    /// same I/O thread, still reading) learn its final count now.
    fn stopped(&mut self) {
        self.store_final();
    }
}

impl Publisher {
    /// Tells the subscribers how far this publisher got, so they can count messages they
    /// never saw at the end.
    fn store_final(&self) {
        if let Some(slot) = self.shared.finals.get(self.id as usize) {
            slot.store(self.acked_end, Ordering::Release);
        }
    }
}

impl Drop for Publisher {
    /// A publisher dropped without being told it stopped (a panic) still reports.
    fn drop(&mut self) {
        self.store_final();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::resp;
    use rand_core::SeedableRng;

    #[test]
    fn header_round_trips_and_rejects_garbage() {
        let h = Header {
            tag: 0xdead_beef,
            publisher: 7,
            seq: u64::MAX - 1,
            sent_ns: 123_456_789,
        };
        let mut buf = vec![b'x'; 80];
        h.write(&mut buf);
        assert_eq!(Header::parse(&buf), Some(h));
        assert_eq!(Header::parse(&buf[..HEADER_LEN]), Some(h));
        assert_eq!(Header::parse(&buf[..HEADER_LEN - 1]), None);
        assert_eq!(
            &buf[..HEADER_LEN],
            b"rdeadbeefp00000007sfffffffffffffffet00000000075bcd15|"
        );
        for i in 0..HEADER_LEN {
            let mut bad = buf.clone();
            bad[i] = b'Z';
            assert_eq!(Header::parse(&bad), None, "byte {i}");
        }
        assert_eq!(Header::parse(b"hello"), None);
    }

    /// Splits encoded commands into their arguments.
    fn commands(mut bytes: &[u8]) -> Vec<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let (r, used) = resp::scan(bytes).unwrap().unwrap();
            let ReplyKind::Array(n) = r.kind else {
                panic!()
            };
            let mut rest = &bytes[r.payload.clone()];
            let mut args = Vec::new();
            for _ in 0..n {
                let (a, u) = resp::scan(rest).unwrap().unwrap();
                args.push(rest[a.payload].to_vec());
                rest = &rest[u..];
            }
            out.push(args);
            bytes = &bytes[used..];
        }
        out
    }

    fn shared(publishers: usize) -> Arc<Shared> {
        Arc::new(Shared::new(publishers))
    }

    fn publisher(channels: &[&str], size: ValueSize, pipeline: usize) -> Publisher {
        let mut cfg = crate::workload::mix::tests::config();
        cfg.pubsub_channels = channels.iter().map(|s| s.to_string()).collect();
        cfg.value_size = size;
        cfg.use_pipeline = pipeline > 1;
        cfg.pipeline_size = pipeline;
        let mut rng = WorkerRng::seed_from_u64(1);
        let mut runner = crate::config::load::builtin_config();
        runner.workload = cfg;
        Publisher::new(&runner, 1, shared(2), &mut rng)
    }

    #[test]
    fn messages_are_numbered_sized_and_spread_over_channels() {
        let mut p = publisher(&["a", "b", "c"], ValueSize::Range { min: 10, max: 200 }, 1);
        let mut rng = WorkerRng::seed_from_u64(2);
        let (mut out, mut sent) = (Vec::new(), Vec::new());
        for _ in 0..300 {
            p.encode_next(&mut rng, &mut out, &mut sent);
        }
        assert_eq!(sent, vec![OP_PUBLISH; 300]);
        let cmds = commands(&out);
        let mut sizes = std::collections::BTreeSet::new();
        for (i, args) in cmds.iter().enumerate() {
            assert_eq!(args[0], b"PUBLISH");
            // Publisher 1 starts on the second channel.
            assert_eq!(args[1], [b"a", b"b", b"c"][(i + 1) % 3]);
            let h = Header::parse(&args[2]).expect("header");
            assert_eq!((h.publisher, h.seq, h.tag), (1, i as u64, p.shared.tag));
            assert!((HEADER_LEN..=200).contains(&args[2].len()));
            sizes.insert(args[2].len());
        }
        assert!(sizes.len() > 20, "sizes vary: {sizes:?}");
    }

    /// The reply of the k-th command of a batch acknowledges that command's sequence number,
    /// also after a batch whose replies never came.
    #[test]
    fn acknowledged_sequence_follows_batches() {
        let mut p = publisher(&["a"], ValueSize::Fixed(10), 4);
        let hub = crate::metrics::MetricsHub::with_counters(
            1,
            vec!["PUBLISH".into(), "RECEIVE".into()].into(),
            COUNTERS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .into(),
            false,
        );
        let mut metrics = hub.writer(0);
        let mut rng = WorkerRng::seed_from_u64(2);
        let (mut out, mut sent) = (Vec::new(), Vec::new());
        let reply = Reply {
            kind: ReplyKind::Integer(3),
            payload: 0..0,
        };
        let mut batch = |p: &mut Publisher, replies: usize| {
            for _ in 0..4 {
                p.encode_next(&mut rng, &mut out, &mut sent);
            }
            for _ in 0..replies {
                let mut rec = Recorder {
                    metrics: &mut metrics,
                    latency_ns: 1000,
                    service_ns: 1000,
                    failed: false,
                    command: 0,
                };
                p.on_reply(OP_PUBLISH, &reply, b"", &mut rec);
            }
            p.acked_end
        };
        assert_eq!(batch(&mut p, 4), 4);
        assert_eq!(batch(&mut p, 2), 6); // seqs 4, 5 acknowledged; 6, 7 lost with the connection
        assert_eq!(batch(&mut p, 0), 6); // never sent
        assert_eq!(batch(&mut p, 3), 15); // seqs 12..=14
        assert_eq!(metrics.data().counters[PUBLISHED], 9);
        assert_eq!(metrics.data().counters[EXPECTED_DELIVERIES], 27);
        let s = Arc::clone(&p.shared);
        assert_eq!(s.published_by(1), None);
        drop(p);
        assert_eq!(s.published_by(1), Some(15));
        assert_eq!(s.published_by(0), None);
    }
}
