//! The `transaction_test` workload: MULTI, `--transaction-size` SET/GET/INCR commands, EXEC;
//! with `--watch`, a WATCH of the transaction's keys first.
//!
//! Counting follows what the server executes, so the report's per-command totals equal
//! `INFO commandstats`: WATCH, MULTI and EXEC are counted when their replies arrive. The inner
//! commands reply `+QUEUED`, which says nothing about their outcome, so they are counted when
//! EXEC replies: by their element of EXEC's array when the transaction committed, not at all
//! when it aborted (EXEC nil after a WATCH conflict, or an EXECABORT error: the server did not
//! run them). An aborted transaction is one EXEC error (`command_error` for a WATCH conflict,
//! the reply's class otherwise) and one `transactions_aborted`. A command the server refuses
//! while queueing (e.g. `-OOM`) is counted as that error right away, as the server counts it
//! as rejected then.
//!
//! With `--watch`, WATCH is sent as its own unit and MULTI..EXEC as the next one, so without
//! pipelining there is a round trip between them in which other workers can change a watched
//! key: the optimistic-locking pattern WATCH exists for. (Sent in one write, WATCH..EXEC would
//! be executed by the server without interleaving other clients and could never conflict.
//! With `--use-pipeline` the WATCH and transaction units of a batch share its write, so
//! conflicts are rare there.)
//! EXEC's latency is the round trip of MULTI..EXEC, sent with one write and timed from its start.
//!
//! Not here: the generic mix of commands (`mix.rs`).

use crate::config::WorkloadConfig;
use crate::error::ErrorClass;
use crate::metrics::{OpId, OpTable, ShardWriter};
use crate::proto::encode;
use crate::proto::resp::{self, Reply, ReplyKind};
use crate::workload::keys::{KeySpace, ValueSource, below};
use crate::workload::{Recorder, WorkerRng, Workload};

/// Workload counter: transactions whose EXEC returned the results.
pub const COMMITTED: usize = 0;
/// Workload counter: transactions whose EXEC returned nil (WATCH conflict) or an error.
pub const ABORTED: usize = 1;

/// The workload's counters, indexed by [`COMMITTED`] and [`ABORTED`].
pub fn counter_table() -> OpTable {
    vec![
        "transactions_committed".to_string(),
        "transactions_aborted".to_string(),
    ]
    .into()
}

/// Operation ids: WATCH (with `--watch` only), MULTI, SET, GET, INCR, EXEC in table order.
#[derive(Debug, Clone, Copy)]
struct Ops {
    watch: Option<OpId>,
    multi: OpId,
    set: OpId,
    get: OpId,
    incr: OpId,
    exec: OpId,
}

impl Ops {
    fn new(watch: bool) -> Ops {
        let first = watch as usize;
        Ops {
            watch: watch.then_some(0),
            multi: first,
            set: first + 1,
            get: first + 2,
            incr: first + 3,
            exec: first + 4,
        }
    }
}

/// The operation table: WATCH (with `--watch`), MULTI, SET, GET, INCR, EXEC.
pub fn op_table(cfg: &WorkloadConfig) -> OpTable {
    let mut names = Vec::new();
    if cfg.watch {
        names.push("WATCH");
    }
    names.extend(["MULTI", "SET", "GET", "INCR", "EXEC"]);
    names
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()
        .into()
}

/// A command inside the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Set,
    Get,
    Incr,
}

/// Where an inner command stands after its queueing reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Sent; its `+QUEUED` (or refusal) not read yet.
    Sent,
    /// Queued: counted when EXEC replies.
    Queued,
    /// Already counted: refused while queueing, or run on its own because no MULTI was in
    /// effect (a refused MULTI).
    Counted,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    op: OpId,
    stage: Stage,
}

pub struct Transaction {
    ops: Ops,
    size: usize,
    keys: KeySpace,
    values: ValueSource,
    string_prefix: Vec<u8>,
    counter_prefix: Vec<u8>,
    multi: Vec<u8>,
    exec: Vec<u8>,
    set_start: Vec<u8>,
    get_start: Vec<u8>,
    incr_start: Vec<u8>,
    /// `Some` with `--watch`: WATCH with one argument per inner command.
    watch_start: Option<Vec<u8>>,
    /// With `--watch`: the next unit is the transaction whose keys were just watched.
    watched: bool,
    /// The next transaction's commands and key numbers (reused; chosen before WATCH needs them).
    unit: Vec<(Inner, u64)>,
    /// The inner commands of the batch's transactions in send order (reused, cleared per batch).
    pending: Vec<Pending>,
    /// Index in `pending` of the next inner command whose queueing reply is due.
    next_inner: usize,
    /// Index in `pending` of the first inner command of the transaction whose EXEC is due.
    unit_start: usize,
}

impl Transaction {
    pub fn new(cfg: &WorkloadConfig, worker: usize, workers: usize, rng: &mut WorkerRng) -> Self {
        let size = cfg.transaction_size as usize;
        let start = |name: &str, argc: usize| encode::command_start(name, argc);
        Transaction {
            ops: Ops::new(cfg.watch),
            size,
            keys: KeySpace::new(cfg, worker, workers),
            values: ValueSource::new(&cfg.value_size, rng),
            string_prefix: format!("{}:", cfg.key_prefix).into_bytes(),
            counter_prefix: format!("{}:counter:", cfg.key_prefix).into_bytes(),
            multi: start("MULTI", 1),
            exec: start("EXEC", 1),
            set_start: start("SET", 3),
            get_start: start("GET", 2),
            incr_start: start("INCR", 2),
            watch_start: cfg.watch.then(|| start("WATCH", 1 + size)),
            watched: false,
            unit: Vec::with_capacity(size),
            pending: Vec::with_capacity(size * cfg.batch_size()),
            next_inner: 0,
            unit_start: 0,
        }
    }

    /// Chooses the next transaction's commands and keys: the first key from the key
    /// distribution, the others its companions (the same hash-tag group with `--hash-tag`, so
    /// one slot).
    fn choose_unit(&mut self, rng: &mut WorkerRng) {
        self.unit.clear();
        let first = self.keys.next(rng);
        for i in 0..self.size {
            let key = if i == 0 {
                first
            } else {
                self.keys.companion(rng, first)
            };
            let inner = match below(rng, 3) {
                0 => Inner::Set,
                1 => Inner::Get,
                _ => Inner::Incr,
            };
            self.unit.push((inner, key));
        }
    }

    #[inline]
    fn prefix(&self, inner: Inner) -> &[u8] {
        match inner {
            Inner::Set | Inner::Get => &self.string_prefix,
            Inner::Incr => &self.counter_prefix,
        }
    }

    #[inline]
    fn op(&self, inner: Inner) -> OpId {
        match inner {
            Inner::Set => self.ops.set,
            Inner::Get => self.ops.get,
            Inner::Incr => self.ops.incr,
        }
    }

    fn encode_watch(&self, out: &mut Vec<u8>) {
        if let Some(start) = &self.watch_start {
            out.extend_from_slice(start);
        }
        for &(inner, key) in &self.unit {
            self.keys.write_key(out, self.prefix(inner), key);
        }
    }

    fn encode_transaction(&mut self, rng: &mut WorkerRng, out: &mut Vec<u8>, sent: &mut Vec<OpId>) {
        out.extend_from_slice(&self.multi);
        sent.push(self.ops.multi);
        for i in 0..self.unit.len() {
            let (inner, key) = self.unit[i];
            let op = self.op(inner);
            match inner {
                Inner::Set => out.extend_from_slice(&self.set_start),
                Inner::Get => out.extend_from_slice(&self.get_start),
                Inner::Incr => out.extend_from_slice(&self.incr_start),
            }
            self.keys.write_key(out, self.prefix(inner), key);
            if inner == Inner::Set {
                encode::bulk(out, self.values.next(rng));
            }
            sent.push(op);
            self.pending.push(Pending {
                op,
                stage: Stage::Sent,
            });
        }
        out.extend_from_slice(&self.exec);
        sent.push(self.ops.exec);
    }

    /// Counts a command's own result: an error by its class, a GET as hit or miss, anything
    /// else a success.
    #[inline]
    fn record_result(&self, op: OpId, reply: &Reply, payload: &[u8], rec: &mut Recorder<'_>) {
        if reply.kind == ReplyKind::Error {
            rec.error(op, ErrorClass::from_error_reply(payload));
        } else if op == self.ops.get {
            rec.lookup(op, reply.kind != ReplyKind::Nil);
        } else {
            rec.success(op);
        }
    }

    /// The queueing reply of an inner command.
    #[inline]
    fn on_queued(&mut self, op: OpId, reply: &Reply, payload: &[u8], rec: &mut Recorder<'_>) {
        let Some(&Pending { stage, .. }) = self.pending.get(self.next_inner) else {
            // More inner replies than inner commands sent: cannot happen; count, do not drop.
            self.record_result(op, reply, payload, rec);
            return;
        };
        debug_assert_eq!(stage, Stage::Sent);
        let stage = if reply.kind == ReplyKind::Status && payload == b"QUEUED" {
            Stage::Queued
        } else {
            // Refused while queueing (the server counts it as rejected now and will abort the
            // EXEC), or run right away because MULTI was refused: its reply is its outcome.
            self.record_result(op, reply, payload, rec);
            Stage::Counted
        };
        self.pending[self.next_inner].stage = stage;
        self.next_inner += 1;
    }

    /// EXEC's reply: the transaction's outcome, and the outcome of each queued command.
    fn on_exec(&mut self, reply: &Reply, payload: &[u8], rec: &mut Recorder<'_>) {
        let exec = self.ops.exec;
        let end = (self.unit_start + self.size).min(self.pending.len());
        let unit = self.unit_start..end;
        self.unit_start = end;
        self.next_inner = end;
        match reply.kind {
            ReplyKind::Array(_) => {
                rec.success(exec);
                rec.count(COMMITTED, 1);
                let mut elements = payload;
                for i in unit {
                    let Pending { op, stage } = self.pending[i];
                    if stage != Stage::Queued {
                        continue;
                    }
                    match resp::scan(elements) {
                        Ok(Some((element, used))) => {
                            self.record_result(
                                op,
                                &element,
                                &elements[element.payload.clone()],
                                rec,
                            );
                            elements = &elements[used..];
                        }
                        // EXEC's array shorter than what was queued: not a real server's
                        // reply, but the command was sent, so it is counted.
                        _ => rec.error(op, ErrorClass::Unknown),
                    }
                }
            }
            // Nil: a watched key changed, nothing ran. Error: EXECABORT (a command was refused
            // while queueing) or no MULTI in effect; nothing queued ran either.
            ReplyKind::Nil => {
                rec.error(exec, ErrorClass::CommandError);
                rec.count(ABORTED, 1);
            }
            ReplyKind::Error => {
                rec.error(exec, ErrorClass::from_error_reply(payload));
                rec.count(ABORTED, 1);
            }
            // No server answers EXEC like this: whether the queued commands ran is unknown.
            _ => {
                rec.error(exec, ErrorClass::Unknown);
                for i in unit {
                    let Pending { op, stage } = self.pending[i];
                    if stage == Stage::Queued {
                        rec.error(op, ErrorClass::Unknown);
                    }
                }
            }
        }
    }
}

impl Workload for Transaction {
    /// Commands queued in a transaction whose EXEC reply never came: sent, outcome unknown,
    /// so errors of the connection's class (the worker counted the rest of the batch).
    fn on_connection_lost(&mut self, class: ErrorClass, metrics: &mut ShardWriter) {
        for p in &self.pending[self.unit_start.min(self.pending.len())..] {
            if p.stage == Stage::Queued {
                metrics.record_error(p.op, class);
            }
        }
        self.pending.clear();
        self.next_inner = 0;
        self.unit_start = 0;
    }

    fn encode_next(&mut self, rng: &mut WorkerRng, out: &mut Vec<u8>, sent: &mut Vec<OpId>) {
        if sent.is_empty() {
            // A new batch: whatever the last one left unanswered (a dropped connection) is
            // gone with that connection.
            self.pending.clear();
            self.next_inner = 0;
            self.unit_start = 0;
        }
        if let Some(watch) = self.ops.watch {
            if !self.watched {
                self.choose_unit(rng);
                self.encode_watch(out);
                sent.push(watch);
                self.watched = true;
                return;
            }
            self.watched = false;
        } else {
            self.choose_unit(rng);
        }
        self.encode_transaction(rng, out, sent);
    }

    #[inline]
    fn on_reply(&mut self, op: OpId, reply: &Reply, payload: &[u8], rec: &mut Recorder<'_>) {
        if op == self.ops.exec {
            self.on_exec(reply, payload, rec);
        } else if op == self.ops.set || op == self.ops.get || op == self.ops.incr {
            self.on_queued(op, reply, payload, rec);
        } else {
            rec.standard(op, reply, payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WorkloadKind;
    use crate::metrics::MetricsHub;
    use crate::proto::resp::split_commands as commands_in;
    use rand_core::SeedableRng;

    fn config(size: u32, watch: bool) -> WorkloadConfig {
        let mut cfg = crate::workload::mix::tests::config();
        cfg.profile = "transaction_test".into();
        cfg.kind = WorkloadKind::TransactionTest;
        cfg.operations = Vec::new();
        cfg.transaction_size = size;
        cfg.watch = watch;
        cfg
    }

    #[test]
    fn a_unit_is_multi_inner_commands_exec() {
        let cfg = config(4, false);
        let mut rng = WorkerRng::seed_from_u64(1);
        let mut w = Transaction::new(&cfg, 0, 1, &mut rng);
        let table = op_table(&cfg);
        for _ in 0..50 {
            let (mut out, mut sent) = (Vec::new(), Vec::new());
            w.encode_next(&mut rng, &mut out, &mut sent);
            let commands = commands_in(&out);
            assert_eq!(commands.len(), 6);
            assert_eq!(sent.len(), 6);
            for (args, op) in commands.iter().zip(&sent) {
                assert_eq!(args[0], table[*op]);
            }
            assert_eq!(commands[0], ["MULTI"]);
            assert_eq!(commands[5], ["EXEC"]);
            for args in &commands[1..5] {
                match args[0].as_str() {
                    "SET" => assert!(args.len() == 3 && args[1].starts_with("k:")),
                    "GET" => assert!(args.len() == 2 && args[1].starts_with("k:")),
                    "INCR" => assert!(args[1].starts_with("k:counter:")),
                    other => panic!("{other}"),
                }
            }
        }
    }

    #[test]
    fn watch_is_its_own_unit_and_names_the_transactions_keys() {
        let mut cfg = config(3, true);
        cfg.hash_tag = true;
        let mut rng = WorkerRng::seed_from_u64(2);
        let mut w = Transaction::new(&cfg, 0, 1, &mut rng);
        assert_eq!(
            &op_table(&cfg)[..],
            ["WATCH", "MULTI", "SET", "GET", "INCR", "EXEC"]
        );
        for _ in 0..50 {
            let (mut out, mut sent) = (Vec::new(), Vec::new());
            w.encode_next(&mut rng, &mut out, &mut sent);
            let watch = commands_in(&out);
            assert_eq!(sent, [0]);
            assert_eq!(watch[0][0], "WATCH");
            let (mut out, mut sent) = (Vec::new(), Vec::new());
            w.encode_next(&mut rng, &mut out, &mut sent);
            let tx = commands_in(&out);
            assert_eq!(sent.len(), 5);
            let keys: Vec<&String> = tx[1..4].iter().map(|a| &a[1]).collect();
            let watched: Vec<&String> = watch[0][1..].iter().collect();
            assert_eq!(keys, watched);
            // One hash-tag group: one cluster slot.
            let tag = |k: &str| k[k.find('{').unwrap()..=k.find('}').unwrap()].to_string();
            assert!(keys.iter().all(|k| tag(k) == tag(keys[0])), "{keys:?}");
        }
    }

    /// Feeds `replies` (one per sent op, RESP bytes) to the workload and returns the data.
    fn replay(
        w: &mut Transaction,
        table: &OpTable,
        sent: &[OpId],
        replies: &[&[u8]],
    ) -> crate::metrics::IntervalData {
        let hub = MetricsHub::with_counters(1, table.clone(), counter_table(), false);
        let mut writer = hub.writer(0);
        feed(w, &mut writer, sent, replies);
        writer.data().clone()
    }

    /// Hands each reply (RESP bytes, one per sent op) to the workload, recording into `writer`.
    fn feed(w: &mut Transaction, writer: &mut ShardWriter, sent: &[OpId], replies: &[&[u8]]) {
        for (op, bytes) in sent.iter().zip(replies) {
            let (reply, _) = resp::scan(bytes).unwrap().unwrap();
            let mut rec = Recorder {
                metrics: writer,
                latency_ns: 1000,
                service_ns: 1000,
                failed: false,
                command: 0,
            };
            w.on_reply(*op, &reply, &bytes[reply.payload.clone()], &mut rec);
        }
    }

    fn unit_of(w: &mut Transaction, rng: &mut WorkerRng) -> Vec<OpId> {
        let (mut out, mut sent) = (Vec::new(), Vec::new());
        w.encode_next(rng, &mut out, &mut sent);
        sent
    }

    #[test]
    fn inner_commands_count_by_execs_array_and_not_when_aborted() {
        let cfg = config(3, false);
        let table = op_table(&cfg);
        let mut rng = WorkerRng::seed_from_u64(3);
        let mut w = Transaction::new(&cfg, 0, 1, &mut rng);
        let ops = Ops::new(false);
        let sent = unit_of(&mut w, &mut rng);
        // Whatever the inner commands are, answer them in kind.
        let element = |op: OpId| -> &'static [u8] {
            if op == ops.set {
                b"+OK\r\n"
            } else if op == ops.get {
                b"$-1\r\n"
            } else {
                b"-ERR value is not an integer or out of range\r\n"
            }
        };
        let mut exec = b"*3\r\n".to_vec();
        for op in &sent[1..4] {
            exec.extend_from_slice(element(*op));
        }
        let mut replies: Vec<&[u8]> =
            vec![b"+OK\r\n", b"+QUEUED\r\n", b"+QUEUED\r\n", b"+QUEUED\r\n"];
        replies.push(&exec);
        let data = replay(&mut w, &table, &sent, &replies);
        assert_eq!(data.counters, [1, 0]);
        assert_eq!(data.commands[ops.exec].success, 1);
        assert_eq!(data.commands[ops.multi].success, 1);
        for op in [ops.set, ops.get, ops.incr] {
            let n = sent[1..4].iter().filter(|o| **o == op).count() as u64;
            assert_eq!(data.commands[op].total(), n, "{}", table[op]);
        }
        assert_eq!(
            data.commands[ops.incr].errors[ErrorClass::CommandError.index()],
            sent.iter().filter(|o| **o == ops.incr).count() as u64
        );
        assert_eq!(
            data.commands[ops.get].misses,
            data.commands[ops.get].total()
        );

        // Aborted by a WATCH conflict: one EXEC error, inner commands not counted.
        let sent = unit_of(&mut w, &mut rng);
        let replies: Vec<&[u8]> = vec![
            b"+OK\r\n",
            b"+QUEUED\r\n",
            b"+QUEUED\r\n",
            b"+QUEUED\r\n",
            b"*-1\r\n",
        ];
        let data = replay(&mut w, &table, &sent, &replies);
        assert_eq!(data.counters, [0, 1]);
        assert_eq!(data.total(), 2);
        assert_eq!(
            data.commands[ops.exec].errors[ErrorClass::CommandError.index()],
            1
        );

        // EXECABORT after a refused command: that command and EXEC are the errors.
        let sent = unit_of(&mut w, &mut rng);
        let replies: Vec<&[u8]> = vec![
            b"+OK\r\n",
            b"+QUEUED\r\n",
            b"-OOM command not allowed\r\n",
            b"+QUEUED\r\n",
            b"-EXECABORT Transaction discarded because of previous errors.\r\n",
        ];
        let data = replay(&mut w, &table, &sent, &replies);
        assert_eq!(data.counters, [0, 1]);
        assert_eq!(data.total(), 3);
        assert_eq!(
            data.commands[sent[2]].errors[ErrorClass::MemoryError.index()],
            1
        );
        assert_eq!(data.commands[ops.exec].error_total(), 1);
    }

    #[test]
    fn pipelined_transactions_are_matched_to_their_own_exec() {
        let mut cfg = config(2, false);
        cfg.use_pipeline = true;
        cfg.pipeline_size = 3;
        let table = op_table(&cfg);
        let mut rng = WorkerRng::seed_from_u64(4);
        let mut w = Transaction::new(&cfg, 0, 1, &mut rng);
        let ops = Ops::new(false);
        let (mut out, mut sent) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            w.encode_next(&mut rng, &mut out, &mut sent);
        }
        assert_eq!(sent.len(), 12);
        // Second transaction aborted, the others commit with "+OK"/nil/1 as fits.
        let element = |op: OpId| -> &'static [u8] {
            if op == ops.get {
                b"$1\r\nx\r\n"
            } else if op == ops.set {
                b"+OK\r\n"
            } else {
                b":1\r\n"
            }
        };
        let mut execs = Vec::new();
        for unit in sent.chunks(4) {
            let mut exec = b"*2\r\n".to_vec();
            exec.extend_from_slice(element(unit[1]));
            exec.extend_from_slice(element(unit[2]));
            execs.push(exec);
        }
        let mut replies: Vec<&[u8]> = Vec::new();
        for (u, exec) in execs.iter().enumerate() {
            replies.extend([b"+OK\r\n" as &[u8], b"+QUEUED\r\n", b"+QUEUED\r\n"]);
            replies.push(if u == 1 { b"*-1\r\n" } else { exec });
        }
        let data = replay(&mut w, &table, &sent, &replies);
        assert_eq!(data.counters, [2, 1]);
        let inner_counted: u64 = [ops.set, ops.get, ops.incr]
            .iter()
            .map(|op| data.commands[*op].total())
            .sum();
        assert_eq!(inner_counted, 4);
        assert_eq!(data.errors(), 1);
        let gets = sent[..4]
            .iter()
            .chain(&sent[8..])
            .filter(|o| **o == ops.get)
            .count() as u64;
        assert_eq!(data.commands[ops.get].hits, gets);
    }

    #[test]
    fn queued_commands_whose_exec_never_came_count_as_errors_of_the_failure() {
        let cfg = config(3, false);
        let table = op_table(&cfg);
        let mut rng = WorkerRng::seed_from_u64(4);
        let mut w = Transaction::new(&cfg, 0, 1, &mut rng);
        let sent = unit_of(&mut w, &mut rng);
        // MULTI and the three inner commands were answered; the connection died before EXEC.
        let replies: Vec<&[u8]> = vec![b"+OK\r\n", b"+QUEUED\r\n", b"+QUEUED\r\n", b"+QUEUED\r\n"];
        let hub = MetricsHub::with_counters(1, table.clone(), counter_table(), false);
        let mut writer = hub.writer(0);
        feed(&mut w, &mut writer, &sent, &replies);
        assert_eq!(writer.data().total(), 1, "only MULTI counted so far");
        w.on_connection_lost(ErrorClass::ConnectionError, &mut writer);
        let data = writer.data().clone();
        assert_eq!(data.total(), 4, "MULTI + the three queued commands");
        let class = ErrorClass::ConnectionError.index();
        let connection_errors: u64 = data.commands.iter().map(|c| c.errors[class]).sum();
        assert_eq!(connection_errors, 3);
        assert_eq!(data.errors(), 3);
        // The next batch starts clean.
        let next = unit_of(&mut w, &mut rng);
        assert_eq!(next.len(), 5);
    }
}
