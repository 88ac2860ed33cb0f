//! The subscriber side of `pubsub_test`: one connection that (P)SUBSCRIBEs to every channel
//! and reads messages until the run stops, recording each delivery's latency (`RECEIVE`) and
//! counting received, lost, duplicated and out-of-order messages per publisher.
//!
//! Sequence rules, per subscriber and publisher (each publisher numbers its messages 0, 1, 2,
//! ... across all channels, and every subscriber listens on all of them):
//! - the next number, or a higher one: in order; the numbers skipped are *missing*;
//! - a lower number that is missing: *out of order* (it is no longer missing);
//! - a lower number already seen: *duplicated*;
//! - missing numbers become *lost* once [`WINDOW`] later numbers have arrived, or at the end
//!   of the run. A message that arrives more than `WINDOW` numbers late was counted lost
//!   already; it is also counted out of order.
//!
//! Loss is final only at the end: after the stop, the subscriber keeps reading until no
//! message came for [`QUIET`] and every publisher has stored its final sequence number (it
//! does so once, when it stops), bounded by [`MAX_DRAIN`]; then, per publisher, the numbers
//! after the last one seen up to that final number are lost too. So on every run, per
//! subscriber, received + lost = published (barring duplicates and failed PUBLISHes).
//!
//! A dropped connection is reconnected with backoff and resubscribed; what was published
//! meanwhile shows as lost. Messages that were in the subscriber's server-side buffer when
//! the connection died are in `expected_deliveries` (PUBLISH counted them) but lost; those
//! published while it was away are not in `expected_deliveries` (nobody was there to count)
//! but lost all the same. Each dropped connection is also one `RECEIVE` error of its class,
//! and a message that is not this run's (another run's, or no header) one `RECEIVE` error of
//! class `unknown`.
//!
//! Not counted as lost: a publisher's messages after the last one seen when that publisher
//! did not store its final number in time (a warning says so).
//!
//! Per message: no allocation, lock or formatting; the payload is parsed in place.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::RunnerConfig;
use crate::error::ErrorClass;
use crate::metrics::ShardWriter;
use crate::net::Conn;
use crate::net::conn::Fill;
use crate::proto::encode;
use crate::proto::resp::{self, Reply, ReplyKind};
use crate::workload::pubsub::{
    DUPLICATED, Header, LOST, OP_RECEIVE, OUT_OF_ORDER, RECEIVED, Shared,
};

/// How far back (in sequence numbers per publisher) late arrivals are told from duplicates.
pub const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// After the stop, reading ends once no message came for this long...
pub const QUIET: Duration = Duration::from_millis(300);
/// ... and every publisher has reported its final sequence number, or this long has passed.
const FINALS_WAIT: Duration = Duration::from_secs(2);
/// The end-of-run reading never takes longer than this (nor than the socket plus connect
/// timeout, which bounds how long the runner waits for workers).
pub const MAX_DRAIN: Duration = Duration::from_secs(3);

/// Patterns for `--psubscribe`: each channel with its last byte replaced by `?` (the rest
/// glob-escaped), duplicates removed. A pattern matches only names of its own length and
/// prefix, so each channel matches exactly one pattern and is delivered once (with
/// `<channel>*`, channel `a1` would also match the pattern of channel `a`).
pub fn patterns(channels: &[String]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for channel in channels {
        let bytes = channel.as_bytes();
        let mut pattern = Vec::with_capacity(bytes.len() * 2);
        if let Some((_, head)) = bytes.split_last() {
            for &b in head {
                if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
                    pattern.push(b'\\');
                }
                pattern.push(b);
            }
            pattern.push(b'?');
        }
        if !out.contains(&pattern) {
            out.push(pattern);
        }
    }
    out
}

/// What a sequence number's arrival was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    /// The next number or a higher one.
    InOrder,
    /// Lower than the highest seen and missing until now.
    OutOfOrder,
    /// Already seen.
    Duplicate,
}

/// One publisher's sequence as one subscriber saw it.
#[derive(Debug, Clone)]
struct Track {
    /// One past the highest number seen.
    next: u64,
    /// Bit `s % WINDOW` set: number `s` (one of the last `WINDOW` below `next`) is missing.
    missing: [u64; WORDS],
}

impl Track {
    fn new() -> Self {
        Track {
            next: 0,
            missing: [0; WORDS],
        }
    }

    #[inline]
    fn slot(seq: u64) -> (usize, u64) {
        let bit = seq % WINDOW;
        ((bit / 64) as usize, 1u64 << (bit % 64))
    }

    fn missing_count(&self) -> u64 {
        self.missing.iter().map(|w| w.count_ones() as u64).sum()
    }

    /// Records number `seq`; returns what it was and how many numbers just became lost.
    #[inline]
    fn arrive(&mut self, seq: u64) -> (Arrival, u64) {
        if seq >= self.next {
            let lost = self.advance(seq + 1);
            let (word, bit) = Track::slot(seq);
            self.missing[word] &= !bit;
            return (Arrival::InOrder, lost);
        }
        if self.next - seq > WINDOW {
            // Counted lost when it left the window; it did arrive, late.
            return (Arrival::OutOfOrder, 0);
        }
        let (word, bit) = Track::slot(seq);
        if self.missing[word] & bit != 0 {
            self.missing[word] &= !bit;
            (Arrival::OutOfOrder, 0)
        } else {
            (Arrival::Duplicate, 0)
        }
    }

    /// Moves `next` up to `to`, marking the numbers passed as missing; returns how many
    /// missing numbers fell out of the window (lost).
    #[inline]
    fn advance(&mut self, to: u64) -> u64 {
        let mut lost = 0;
        if to - self.next >= WINDOW {
            // Everything tracked falls out, and so do the skipped numbers below `to - WINDOW`.
            lost += self.missing_count() + (to - WINDOW - self.next);
            self.missing = [u64::MAX; WORDS];
        } else {
            for s in self.next..to {
                // The slot of `s` held `s - WINDOW`, which leaves the window now.
                let (word, bit) = Track::slot(s);
                lost += (self.missing[word] & bit != 0) as u64;
                self.missing[word] |= bit;
            }
        }
        self.next = to;
        lost
    }

    /// At the end: what is still missing is lost, and so is everything after the last number
    /// seen that the publisher says it published (`None`: unknown, not counted).
    fn finish(&mut self, published: Option<u64>) -> u64 {
        let lost = self.missing_count() + published.map_or(0, |p| p.saturating_sub(self.next));
        self.missing = [0; WORDS];
        lost
    }
}

/// What a frame on a subscriber connection is.
#[derive(Debug, PartialEq, Eq)]
enum Frame<'a> {
    /// A `message` / `pmessage`: its payload.
    Message(&'a [u8]),
    /// A `subscribe` / `psubscribe` confirmation.
    Confirmation,
    Error,
    Other,
}

/// Classifies a frame (RESP3 push or RESP2 array) without copying.
fn classify<'a>(frame: &Reply, payload: &'a [u8]) -> Frame<'a> {
    let n = match frame.kind {
        ReplyKind::Push(n) | ReplyKind::Array(n) => n,
        ReplyKind::Error => return Frame::Error,
        _ => return Frame::Other,
    };
    if !(3..=4).contains(&n) {
        return Frame::Other;
    }
    let mut parts: [&[u8]; 4] = [&[]; 4];
    let mut rest = payload;
    for part in parts.iter_mut().take(n) {
        let Ok(Some((element, used))) = resp::scan(rest) else {
            return Frame::Other;
        };
        *part = &rest[element.payload];
        rest = &rest[used..];
    }
    match (n, parts[0]) {
        (3, b"message") => Frame::Message(parts[2]),
        (4, b"pmessage") => Frame::Message(parts[3]),
        (3, b"subscribe" | b"psubscribe") => Frame::Confirmation,
        _ => Frame::Other,
    }
}

/// What reading a subscriber's connection came to.
#[derive(Debug)]
pub enum Heard {
    /// Frames handled (or none); wait for more.
    Fine,
    /// The connection failed, or the server refused the subscription: drop it.
    Lost(ErrorClass, String),
}

/// One subscriber worker: driven by an I/O thread, which owns its connection's lifecycle.
pub struct Subscriber {
    index: usize,
    shared: Arc<Shared>,
    /// `SUBSCRIBE <channels>` or `PSUBSCRIBE <patterns>`, encoded once.
    subscribe: Vec<u8>,
    command: &'static str,
    /// Confirmations that mean every channel (pattern) is subscribed, and how many came on
    /// this connection.
    confirmations: usize,
    confirmed: usize,
    /// Per publisher.
    tracks: Vec<Track>,
    warned_foreign: bool,
    /// When the last message arrived (the end-of-run reading waits for a quiet spell).
    last_message: Instant,
}

impl Subscriber {
    pub fn new(cfg: &RunnerConfig, index: usize, shared: Arc<Shared>) -> Self {
        let w = &cfg.workload;
        let mut channels: Vec<Vec<u8>> = Vec::new();
        for c in &w.pubsub_channels {
            if !channels.iter().any(|have| have == c.as_bytes()) {
                channels.push(c.as_bytes().to_vec());
            }
        }
        let (command, names) = if w.psubscribe {
            ("PSUBSCRIBE", patterns(&w.pubsub_channels))
        } else {
            ("SUBSCRIBE", channels)
        };
        let mut args: Vec<&[u8]> = vec![command.as_bytes()];
        args.extend(names.iter().map(Vec::as_slice));
        let mut subscribe = Vec::new();
        encode::command_args(&mut subscribe, &args);
        Subscriber {
            index,
            subscribe,
            command,
            confirmations: names.len(),
            confirmed: 0,
            tracks: vec![Track::new(); shared.publishers()],
            shared,
            warned_foreign: false,
            last_message: Instant::now(),
        }
    }

    /// The (P)SUBSCRIBE to send on every new connection (it also resets the count of
    /// confirmations).
    pub fn subscribe(&mut self, out: &mut Vec<u8>) {
        self.confirmed = 0;
        out.extend_from_slice(&self.subscribe);
    }

    /// Every channel (pattern) is confirmed on this connection.
    pub fn subscribed(&self) -> bool {
        self.confirmed >= self.confirmations
    }

    /// `SUBSCRIBE` or `PSUBSCRIBE`, for errors.
    pub fn command(&self) -> &'static str {
        self.command
    }

    /// Reads what the socket has and records every complete frame. Per message: no
    /// allocation, lock or formatting.
    #[inline]
    pub fn read(&mut self, conn: &mut Conn, metrics: &mut ShardWriter) -> Heard {
        loop {
            let fill = match conn.fill() {
                Ok(f) => f,
                Err(e) => return Heard::Lost(e.class(), e.to_string()),
            };
            loop {
                let frame = match conn.next_reply(true) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => return Heard::Lost(e.class(), e.to_string()),
                };
                let at = conn.reply_received_at();
                match classify(&frame, conn.payload(&frame)) {
                    Frame::Message(data) => {
                        if record(&self.shared, &mut self.tracks, metrics, data, at) {
                            self.last_message = at;
                            continue;
                        }
                        metrics.record_error(OP_RECEIVE, ErrorClass::Unknown);
                        if !self.warned_foreign {
                            self.warned_foreign = true;
                            tracing::warn!(
                                subscriber = self.index,
                                "a message that is not this run's arrived (another publisher on the \
                                 channels?); counted as a RECEIVE error"
                            );
                        }
                    }
                    Frame::Error => {
                        let message = String::from_utf8_lossy(conn.payload(&frame)).into_owned();
                        let class = ErrorClass::from_error_reply(message.as_bytes());
                        return Heard::Lost(class, message);
                    }
                    Frame::Confirmation => self.confirmed += 1,
                    Frame::Other => {}
                }
            }
            if fill == Fill::Drained {
                return Heard::Fine;
            }
        }
    }

    /// Counts a lost connection (or a rejected subscription) once: a `RECEIVE` error of its
    /// class, and an outage until it is subscribed again (a subscriber without its
    /// connection misses messages). The caller drops the connection.
    #[cold]
    pub fn connection_lost(&mut self, metrics: &mut ShardWriter, class: ErrorClass, why: &str) {
        metrics.record_error(OP_RECEIVE, class);
        if crate::metrics::outage::is_outage_class(class) {
            metrics.outage_failures(Instant::now(), 1);
        }
        tracing::warn!(subscriber = self.index, error_type = %class, error = why,
            "subscriber connection lost; reconnecting");
    }

    /// After the stop, whether the end-of-run reading is over at `now` (see the module doc):
    /// a quiet spell with every publisher's final number known (or [`FINALS_WAIT`] passed),
    /// everything caught up, or `limit` since `started`.
    pub fn drain_over(
        &self,
        started: Instant,
        now: Instant,
        limit: Duration,
        connected: bool,
    ) -> bool {
        if now.saturating_duration_since(started) >= limit.min(MAX_DRAIN) {
            return true;
        }
        let finals_known = (0..self.tracks.len()).all(|p| self.shared.published_by(p).is_some());
        if finals_known && self.caught_up() {
            return true;
        }
        let quiet = !connected || now.saturating_duration_since(self.last_message) >= QUIET;
        quiet && (finals_known || now.saturating_duration_since(started) >= FINALS_WAIT)
    }

    /// Whether every publisher's last message has been seen.
    fn caught_up(&self) -> bool {
        self.tracks.iter().enumerate().all(|(p, t)| {
            self.shared
                .published_by(p)
                .is_some_and(|published| t.next >= published)
        })
    }

    /// Final loss: what is still missing, and what came after the last message seen.
    pub fn finish(&mut self, metrics: &mut ShardWriter) {
        let mut lost = 0;
        let mut unknown = 0;
        for (p, track) in self.tracks.iter_mut().enumerate() {
            let published = self.shared.published_by(p);
            unknown += published.is_none() as usize;
            lost += track.finish(published);
        }
        metrics.data().count(LOST, lost);
        if unknown > 0 {
            tracing::warn!(
                subscriber = self.index,
                publishers = unknown,
                "publishers did not report how far they got; messages after the last one seen \
                 from them are not counted as lost"
            );
        }
    }
}

/// Records one message if it is this run's: its delivery latency and sequence.
#[inline]
fn record(
    shared: &Shared,
    tracks: &mut [Track],
    metrics: &mut ShardWriter,
    data: &[u8],
    at: Instant,
) -> bool {
    let Some(h) = Header::parse(data) else {
        return false;
    };
    if h.tag != shared.tag {
        return false;
    }
    let Some(track) = tracks.get_mut(h.publisher as usize) else {
        return false;
    };
    let latency = shared.nanos(at).saturating_sub(h.sent_ns);
    metrics.record_success(OP_RECEIVE, latency, latency);
    let (arrival, lost) = track.arrive(h.seq);
    let data = metrics.data();
    data.count(RECEIVED, 1);
    if lost > 0 {
        data.count(LOST, lost);
    }
    match arrival {
        Arrival::InOrder => {}
        Arrival::OutOfOrder => data.count(OUT_OF_ORDER, 1),
        Arrival::Duplicate => data.count(DUPLICATED, 1),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn patterns_cover_each_channel_once() {
        let p = patterns(&strings(&["ch1", "ch2", "ch10", "a*b", "x"]));
        let p: Vec<String> = p
            .iter()
            .map(|b| String::from_utf8(b.clone()).unwrap())
            .collect();
        assert_eq!(p, ["ch?", "ch1?", "a\\*?", "?"]);
        // Multi-byte last character: only its last byte is replaced (Redis globs bytes).
        assert_eq!(patterns(&strings(&["é"])), vec![vec![0xC3, b'?']]);
    }

    #[test]
    fn in_order_messages_lose_nothing() {
        let mut t = Track::new();
        for s in 0..10_000 {
            assert_eq!(t.arrive(s), (Arrival::InOrder, 0));
        }
        assert_eq!(t.finish(Some(10_000)), 0);
    }

    #[test]
    fn gaps_late_arrivals_and_duplicates() {
        let mut t = Track::new();
        assert_eq!(t.arrive(0), (Arrival::InOrder, 0));
        assert_eq!(t.arrive(5), (Arrival::InOrder, 0)); // 1..=4 missing
        assert_eq!(t.arrive(3), (Arrival::OutOfOrder, 0));
        assert_eq!(t.arrive(3), (Arrival::Duplicate, 0));
        assert_eq!(t.arrive(5), (Arrival::Duplicate, 0));
        assert_eq!(t.arrive(0), (Arrival::Duplicate, 0));
        // 1, 2, 4 still missing; 6..=9 were published but never came.
        assert_eq!(t.finish(Some(10)), 3 + 4);
    }

    #[test]
    fn missing_numbers_become_lost_when_they_leave_the_window() {
        let mut t = Track::new();
        t.arrive(0);
        t.arrive(2); // 1 missing
        let mut lost = 0;
        for s in 3..WINDOW + 1 {
            lost += t.arrive(s).1;
        }
        assert_eq!(lost, 0, "1 is still in the window");
        assert_eq!(t.arrive(WINDOW + 1), (Arrival::InOrder, 1));
        // Too late to tell from a duplicate: counted lost already, and out of order.
        assert_eq!(t.arrive(1), (Arrival::OutOfOrder, 0));
        assert_eq!(t.finish(Some(WINDOW + 2)), 0);
    }

    #[test]
    fn a_long_gap_counts_every_skipped_number_once() {
        let mut t = Track::new();
        t.arrive(0);
        t.arrive(2); // 1 missing
        let (arrival, lost) = t.arrive(10 * WINDOW);
        assert_eq!(arrival, Arrival::InOrder);
        // 1, and 3 ..= 9*WINDOW, fall out; the WINDOW - 1 numbers below 10*WINDOW are tracked.
        assert_eq!(lost, 1 + (9 * WINDOW + 1 - 3));
        assert_eq!(t.arrive(10 * WINDOW - 1), (Arrival::OutOfOrder, 0));
        let total = lost + t.finish(Some(10 * WINDOW + 1));
        assert_eq!(total, 10 * WINDOW + 1 - 3 - 1);
    }

    #[test]
    fn unknown_final_counts_no_trailing_loss() {
        let mut t = Track::new();
        t.arrive(0);
        assert_eq!(t.finish(None), 0);
        let mut t = Track::new();
        assert_eq!(t.finish(Some(5)), 5, "nothing seen at all");
    }

    fn classify_bytes(buf: &[u8]) -> String {
        let (r, _) = resp::scan(buf).unwrap().unwrap();
        format!("{:?}", classify(&r, &buf[r.payload.clone()]))
    }

    #[test]
    fn frames_of_both_protocols() {
        let msg = |s: &str| format!("{:?}", Frame::Message(s.as_bytes()));
        assert_eq!(
            classify_bytes(b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n"),
            msg("hello")
        );
        assert_eq!(
            classify_bytes(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n"),
            msg("hello")
        );
        assert_eq!(
            classify_bytes(b">4\r\n$8\r\npmessage\r\n$3\r\nch?\r\n$2\r\nch\r\n$2\r\nhi\r\n"),
            msg("hi")
        );
        assert_eq!(
            classify_bytes(b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"),
            "Confirmation"
        );
        assert_eq!(
            classify_bytes(b"*3\r\n$10\r\npsubscribe\r\n$3\r\nch?\r\n:2\r\n"),
            "Confirmation"
        );
        assert_eq!(classify_bytes(b"-ERR no\r\n"), "Error");
        assert_eq!(classify_bytes(b"+PONG\r\n"), "Other");
        assert_eq!(
            classify_bytes(b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"),
            "Other"
        );
    }
}
