//! The weighted command mix: `basic_rw`, `high_throughput`, `list_operations`,
//! `hash_operations`, `stream_operations` and any `--operations` mix.
//!
//! Each command works on the key space of its data type (`<prefix>:<n>` for strings,
//! `<prefix>:counter:<n>`, `<prefix>:list:<n>`, `<prefix>:hash:<n>`, `<prefix>:set:<n>`,
//! `<prefix>:zset:<n>`, `<prefix>:stream:<n>`), so reads find what writes of the same type
//! wrote. Collections stay bounded: hash fields, set and sorted-set members come from
//! `--hash-fields` names, every list push is followed by an LTRIM to `--list-max-length`
//! (reported as its own operation), streams are added to and trimmed with `MAXLEN ~`.
//! With `--verify-writes`, SET and GET move to each worker's own stamped key space instead
//! (`verify_writes.rs`).

use crate::command::{Command, Family};
use crate::config::WorkloadConfig;
use crate::metrics::{OpId, OpTable};
use crate::proto::encode;
use crate::proto::resp::{self, Reply, ReplyKind};
use crate::workload::keys::{KeySpace, ValueSource, WeightedIndex, below};
use crate::workload::verify_writes::{self, Verifier};
use crate::workload::{Recorder, WorkerRng, Workload};

/// Keys per MGET / MSET.
pub const MULTI_KEY_COUNT: usize = 10;
/// Elements an LRANGE / ZRANGE / XRANGE / XREAD asks for.
pub const RANGE_COUNT: i64 = 10;
/// TTL given by EXPIRE when no `--expiry-range` is set.
const DEFAULT_EXPIRE_SECONDS: i64 = 3600;

/// Whether pushes need the LTRIM that keeps lists bounded.
fn has_push(cfg: &WorkloadConfig) -> bool {
    cfg.operations
        .iter()
        .any(|(c, _)| matches!(c, Command::Lpush | Command::Rpush))
}

/// The mix's operations: the configured commands in order, then LTRIM if lists are pushed to.
pub fn op_table(cfg: &WorkloadConfig) -> OpTable {
    let mut names: Vec<String> = cfg
        .operations
        .iter()
        .map(|(c, _)| c.name().to_string())
        .collect();
    if has_push(cfg) {
        names.push("LTRIM".to_string());
    }
    names.into()
}

/// A command's key prefix (with its separator) by data type.
pub(crate) fn prefix(cfg: &WorkloadConfig, family: Family) -> Vec<u8> {
    let kind = match family {
        Family::String => "",
        Family::Counter => "counter:",
        Family::List => "list:",
        Family::Hash => "hash:",
        Family::Set => "set:",
        Family::SortedSet => "zset:",
        Family::Stream => "stream:",
    };
    format!("{}:{kind}", cfg.key_prefix).into_bytes()
}

pub struct Mix {
    commands: Vec<Command>,
    /// Per command: its encoded array header and name (argument counts are fixed per command).
    starts: Vec<Vec<u8>>,
    prefixes: Vec<Vec<u8>>,
    choice: WeightedIndex,
    keys: KeySpace,
    values: ValueSource,
    ltrim_op: Option<OpId>,
    ltrim_start: Vec<u8>,
    list_max: i64,
    fields: u64,
    stream_max: i64,
    expiry: Option<(u64, u64)>,
    /// `--verify-writes`: SET and GET go through this (stamps and the acknowledged ledger).
    verify: Option<Verifier>,
}

/// Arguments after the name, fixed per command (and per `--expiry-range` for SET).
fn argc(command: Command, with_ttl: bool) -> usize {
    use Command::*;
    match command {
        Set if with_ttl => 5,
        Set | Expire | Append | Lpush | Rpush | Hget | Hdel | Sadd | Srem | Sismember | Zscore
        | Zrem => 3,
        Get | Del | Exists | Ttl | Type | Strlen | Incr | Decr | Lpop | Rpop | Llen | Hgetall
        | Smembers | Scard | Zcard | Xlen => 2,
        Incrby | Decrby => 3,
        Hset | Hincrby | Zadd | Zincrby | Lrange | Zrange => 4,
        Mget => 1 + MULTI_KEY_COUNT,
        Mset => 1 + 2 * MULTI_KEY_COUNT,
        Hmget => 2 + MULTI_KEY_COUNT,
        Xadd => 8,
        Xread => 6,
        Xrange => 6,
        Xtrim => 5,
    }
}

impl Mix {
    pub fn new(cfg: &WorkloadConfig, worker: usize, workers: usize, rng: &mut WorkerRng) -> Self {
        let commands: Vec<Command> = cfg.operations.iter().map(|(c, _)| *c).collect();
        let with_ttl = cfg.expiry_range.is_some();
        Mix {
            starts: commands
                .iter()
                .map(|c| encode::command_start(c.name(), argc(*c, with_ttl)))
                .collect(),
            prefixes: commands.iter().map(|c| prefix(cfg, c.family())).collect(),
            choice: WeightedIndex::new(cfg.operations.iter().map(|(_, w)| *w)),
            keys: KeySpace::new(cfg, worker, workers),
            values: ValueSource::new(&cfg.value_size, rng),
            ltrim_op: has_push(cfg).then_some(commands.len()),
            ltrim_start: encode::command_start("LTRIM", 4),
            list_max: cfg.list_max_length as i64,
            fields: cfg.hash_fields as u64,
            stream_max: cfg.stream_max_length as i64,
            expiry: cfg.expiry_range,
            verify: None,
            commands,
        }
    }

    /// Verify mode (`--verify-writes`): SETs and GETs on worker `worker`'s stamped key space,
    /// its ledger handed to `shared` when the mix is dropped. Config makes sure there is no
    /// `--expiry-range` (SETs carry no EX here).
    pub fn verifying(
        mut self,
        cfg: &WorkloadConfig,
        worker: usize,
        shared: std::sync::Arc<verify_writes::Shared>,
    ) -> Self {
        self.verify = Some(Verifier::new(cfg, worker, shared));
        self
    }

    #[inline]
    fn ttl(&self, rng: &mut WorkerRng) -> i64 {
        match self.expiry {
            Some((min, max)) => (min + below(rng, max - min + 1)) as i64,
            None => DEFAULT_EXPIRE_SECONDS,
        }
    }

    /// Appends a field / member name `<tag><k>` with k below `--hash-fields`.
    #[inline]
    fn member(&self, out: &mut Vec<u8>, rng: &mut WorkerRng, tag: &[u8]) {
        encode::bulk_key(out, tag, below(rng, self.fields));
    }
}

impl Workload for Mix {
    #[inline]
    fn encode_next(&mut self, rng: &mut WorkerRng, out: &mut Vec<u8>, sent: &mut Vec<OpId>) {
        use Command::*;
        let op = self.choice.pick(rng);
        let command = self.commands[op];
        out.extend_from_slice(&self.starts[op]);
        if let Some(verify) = &mut self.verify {
            match command {
                Set => {
                    let filler = self.values.next(rng);
                    verify.encode_set(&mut self.keys, rng, filler, out, sent.len());
                    sent.push(op);
                    return;
                }
                Get => {
                    verify.encode_get(&mut self.keys, rng, out, sent.len());
                    sent.push(op);
                    return;
                }
                _ => {}
            }
        }
        let prefix = &self.prefixes[op];
        let key = self.keys.next(rng);
        if command == Xread {
            // The only command whose key is not its first argument.
            encode::bulk(out, b"COUNT");
            encode::bulk_int(out, RANGE_COUNT);
            encode::bulk(out, b"STREAMS");
            self.keys.write_key(out, prefix, key);
            encode::bulk(out, b"0-0");
            sent.push(op);
            return;
        }
        self.keys.write_key(out, prefix, key);
        match command {
            Get | Del | Exists | Ttl | Type | Strlen | Incr | Decr | Lpop | Rpop | Llen
            | Hgetall | Smembers | Scard | Zcard | Xlen => {}
            Set => {
                encode::bulk(out, self.values.next(rng));
                if self.expiry.is_some() {
                    encode::bulk(out, b"EX");
                    encode::bulk_int(out, self.ttl(rng));
                }
            }
            Append | Lpush | Rpush => encode::bulk(out, self.values.next(rng)),
            Expire => encode::bulk_int(out, self.ttl(rng)),
            Incrby | Decrby => encode::bulk_int(out, 1 + below(rng, 100) as i64),
            Mget => {
                for _ in 1..MULTI_KEY_COUNT {
                    let other = self.keys.companion(rng, key);
                    self.keys.write_key(out, prefix, other);
                }
            }
            Mset => {
                encode::bulk(out, self.values.next(rng));
                for _ in 1..MULTI_KEY_COUNT {
                    let other = self.keys.companion(rng, key);
                    self.keys.write_key(out, prefix, other);
                    encode::bulk(out, self.values.next(rng));
                }
            }
            Lrange | Zrange => {
                encode::bulk_int(out, 0);
                encode::bulk_int(out, RANGE_COUNT - 1);
            }
            Hset => {
                self.member(out, rng, b"f");
                encode::bulk(out, self.values.next(rng));
            }
            Hget | Hdel => self.member(out, rng, b"f"),
            Hmget => {
                for _ in 0..MULTI_KEY_COUNT {
                    self.member(out, rng, b"f");
                }
            }
            // Counters live in their own fields: incrementing a random value would fail.
            Hincrby => {
                self.member(out, rng, b"ctr");
                encode::bulk_int(out, 1);
            }
            Sadd | Srem | Sismember | Zscore | Zrem => self.member(out, rng, b"m"),
            Zadd => {
                encode::bulk_int(out, below(rng, 1_000_000) as i64);
                self.member(out, rng, b"m");
            }
            Zincrby => {
                encode::bulk_int(out, 1);
                self.member(out, rng, b"m");
            }
            Xadd => {
                encode::bulk(out, b"MAXLEN");
                encode::bulk(out, b"~");
                encode::bulk_int(out, self.stream_max);
                encode::bulk(out, b"*");
                encode::bulk(out, b"v");
                encode::bulk(out, self.values.next(rng));
            }
            Xread => {}
            Xrange => {
                encode::bulk(out, b"-");
                encode::bulk(out, b"+");
                encode::bulk(out, b"COUNT");
                encode::bulk_int(out, RANGE_COUNT);
            }
            Xtrim => {
                encode::bulk(out, b"MAXLEN");
                encode::bulk(out, b"~");
                encode::bulk_int(out, self.stream_max);
            }
        }
        sent.push(op);
        if let (Some(ltrim), Lpush | Rpush) = (self.ltrim_op, command) {
            // Keep the newest `list_max` elements: the head for LPUSH, the tail for RPUSH.
            out.extend_from_slice(&self.ltrim_start);
            self.keys.write_key(out, prefix, key);
            if command == Lpush {
                encode::bulk_int(out, 0);
                encode::bulk_int(out, self.list_max - 1);
            } else {
                encode::bulk_int(out, -self.list_max);
                encode::bulk_int(out, -1);
            }
            sent.push(ltrim);
        }
    }

    #[inline]
    fn on_reply(&mut self, op: OpId, reply: &Reply, payload: &[u8], rec: &mut Recorder<'_>) {
        let Some(&command) = self.commands.get(op) else {
            rec.standard(op, reply, payload);
            return;
        };
        if let Some(verify) = &mut self.verify {
            match command {
                Command::Set => verify.on_set_reply(rec.command_index(), reply),
                Command::Get if verify.is_stale_read(rec.command_index(), reply, payload) => {
                    rec.count(verify_writes::STALE_READS, 1);
                }
                _ => {}
            }
        }
        if reply.kind == ReplyKind::Error || !command.is_read() {
            rec.standard(op, reply, payload);
            return;
        }
        rec.lookup(op, is_hit(command, reply, payload));
    }
}

/// Whether a read's successful reply found something.
pub(crate) fn is_hit(command: Command, reply: &Reply, payload: &[u8]) -> bool {
    match reply.kind {
        ReplyKind::Nil | ReplyKind::Array(0) | ReplyKind::Map(0) => false,
        // TTL -2: no such key; -1 (no TTL) is a hit. Counts and booleans: 0 = nothing there.
        ReplyKind::Integer(n) => {
            if command == Command::Ttl {
                n != -2
            } else {
                n != 0
            }
        }
        ReplyKind::Status => payload != b"none",
        // MGET: a hit if any of its keys exists.
        ReplyKind::Array(_) if command == Command::Mget => any_non_nil(payload),
        _ => true,
    }
}

fn any_non_nil(mut elements: &[u8]) -> bool {
    while let Ok(Some((element, used))) = resp::scan(elements) {
        if element.kind != ReplyKind::Nil {
            return true;
        }
        elements = &elements[used..];
    }
    false
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{KeyDistribution, ValueSize, WorkloadKind};
    use crate::proto::resp::split_commands as commands_in;
    use rand_core::SeedableRng;

    pub(crate) fn config() -> WorkloadConfig {
        WorkloadConfig {
            profile: "basic_rw".into(),
            kind: WorkloadKind::BasicRw,
            operations: vec![
                (Command::Set, 0.4),
                (Command::Get, 0.4),
                (Command::Del, 0.1),
                (Command::Incr, 0.1),
            ],
            key_prefix: "k".into(),
            key_range: 1000,
            key_min: 0,
            key_distribution: KeyDistribution::Uniform,
            hash_tag: false,
            value_size: ValueSize::Range { min: 1, max: 64 },
            expiry_range: None,
            use_pipeline: false,
            pipeline_size: 1,
            commands: Vec::new(),
            prefill: false,
            warmup: None,
            list_max_length: 1000,
            hash_fields: 10,
            transaction_size: 5,
            watch: false,
            verify_writes: false,
            publishers: 1,
            subscribers: 1,
            pubsub_channels: vec!["c".into()],
            psubscribe: false,
            stream_consumers: 1,
            processing_time: std::time::Duration::ZERO,
            stream_max_length: 100,
        }
    }

    fn encode(cfg: &WorkloadConfig, seed: u64, n: usize) -> (Vec<u8>, Vec<OpId>) {
        let mut rng = WorkerRng::seed_from_u64(seed);
        let mut w = Mix::new(cfg, 0, 1, &mut rng);
        let mut out = Vec::new();
        let mut sent = Vec::new();
        for _ in 0..n {
            w.encode_next(&mut rng, &mut out, &mut sent);
        }
        (out, sent)
    }

    #[test]
    fn same_seed_same_commands_keys_and_values() {
        let cfg = config();
        assert_eq!(encode(&cfg, 42, 500), encode(&cfg, 42, 500));
        assert_ne!(encode(&cfg, 42, 500).0, encode(&cfg, 43, 500).0);
    }

    #[test]
    fn every_command_encodes_as_valid_resp_with_its_arity() {
        let mut cfg = config();
        cfg.operations = Command::ALL.iter().map(|c| (*c, 1.0)).collect();
        let (out, sent) = encode(&cfg, 9, 5000);
        let commands = commands_in(&out);
        assert_eq!(commands.len(), sent.len());
        let ops = op_table(&cfg);
        for (args, op) in commands.iter().zip(&sent) {
            assert_eq!(args[0], ops[*op], "{args:?}");
            if let Some(c) = Command::parse(&args[0]) {
                assert_eq!(args.len(), argc(c, false), "{args:?}");
            }
        }
        assert!(commands.iter().any(|a| a[0] == "LTRIM"));
    }

    #[test]
    fn reads_and_writes_share_keys_by_type() {
        let (out, _) = encode(&config(), 7, 2000);
        let commands = commands_in(&out);
        for args in &commands {
            match args[0].as_str() {
                "INCR" => assert!(args[1].starts_with("k:counter:"), "{args:?}"),
                _ => {
                    let n: u64 = args[1].strip_prefix("k:").unwrap().parse().unwrap();
                    assert!(n < 1000);
                }
            }
        }
    }

    #[test]
    fn list_pushes_are_trimmed_to_the_bound() {
        let mut cfg = config();
        cfg.operations = vec![(Command::Lpush, 1.0), (Command::Rpush, 1.0)];
        cfg.list_max_length = 50;
        let (out, sent) = encode(&cfg, 1, 100);
        let commands = commands_in(&out);
        assert_eq!(sent.len(), 200);
        for pair in commands.chunks(2) {
            assert_eq!(pair[1][0], "LTRIM");
            assert_eq!(pair[0][1], pair[1][1], "same key");
            let range = if pair[0][0] == "LPUSH" {
                ["0", "49"]
            } else {
                ["-50", "-1"]
            };
            assert_eq!(&pair[1][2..], &range);
        }
    }

    #[test]
    fn set_with_expiry_range_adds_ex() {
        let mut cfg = config();
        cfg.operations = vec![(Command::Set, 1.0)];
        cfg.expiry_range = Some((60, 70));
        let (out, _) = encode(&cfg, 1, 50);
        for args in commands_in(&out) {
            assert_eq!(args[3], "EX");
            let ttl: u64 = args[4].parse().unwrap();
            assert!((60..=70).contains(&ttl));
        }
    }

    #[test]
    fn hits_and_misses_by_reply() {
        let hit = |c, buf: &[u8]| {
            let (r, _) = resp::scan(buf).unwrap().unwrap();
            is_hit(c, &r, &buf[r.payload.clone()])
        };
        assert!(!hit(Command::Get, b"$-1\r\n"));
        assert!(hit(Command::Get, b"$1\r\nx\r\n"));
        assert!(!hit(Command::Ttl, b":-2\r\n"));
        assert!(hit(Command::Ttl, b":-1\r\n"));
        assert!(!hit(Command::Exists, b":0\r\n"));
        assert!(!hit(Command::Lrange, b"*0\r\n"));
        assert!(!hit(Command::Type, b"+none\r\n"));
        assert!(hit(Command::Type, b"+string\r\n"));
        assert!(!hit(Command::Mget, b"*2\r\n$-1\r\n$-1\r\n"));
        assert!(hit(Command::Mget, b"*2\r\n$-1\r\n$1\r\nx\r\n"));
    }
}
