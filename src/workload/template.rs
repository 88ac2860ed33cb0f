//! Arbitrary command templates: `--command "SET __key__ __data__"` (repeatable, weighted with
//! `--command-weight`).
//!
//! A template is split once into arguments made of literal bytes and placeholders; per
//! command only the placeholders are drawn and written, straight into the request buffer.
//! Placeholders: `__key__` (`<key-prefix>:<n>`, the same keys the built-in string commands
//! use, so `GET __key__` reads what `SET __key__ __data__` wrote), `__data__` (a value of the
//! configured size), `__field__` (`f<k>`, k below `--hash-fields`) and `__rand_int__` (a random
//! integer below 2^32); they may sit inside larger arguments (`user:__key__:name`). One command
//! draws each placeholder once, so a template that names `__key__` twice uses one key.
//! Templates with the same command name are reported as one operation.

use crate::command::Command;
use crate::config::{CommandTemplate, WorkloadConfig};
use crate::metrics::{OpId, OpTable};
use crate::proto::resp::{Reply, ReplyKind};
use crate::workload::keys::{KeySpace, ValueSource, WeightedIndex, below};
use crate::workload::mix::is_hit;
use crate::workload::{Recorder, WorkerRng, Workload};

/// The placeholders, as they appear in templates.
const KEY: &str = "__key__";
const DATA: &str = "__data__";
const FIELD: &str = "__field__";
const RAND_INT: &str = "__rand_int__";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Vec<u8>),
    Key,
    Data,
    Field,
    RandInt,
}

/// Splits one argument into literal runs and placeholders (config has validated the names).
fn segments(arg: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut rest = arg;
    while !rest.is_empty() {
        let next = [KEY, DATA, FIELD, RAND_INT]
            .iter()
            .filter_map(|p| rest.find(p).map(|at| (at, *p)))
            .min_by_key(|(at, _)| *at);
        match next {
            Some((at, placeholder)) => {
                if at > 0 {
                    out.push(Segment::Literal(rest.as_bytes()[..at].to_vec()));
                }
                out.push(match placeholder {
                    KEY => Segment::Key,
                    DATA => Segment::Data,
                    FIELD => Segment::Field,
                    _ => Segment::RandInt,
                });
                rest = &rest[at + placeholder.len()..];
            }
            None => {
                out.push(Segment::Literal(rest.as_bytes().to_vec()));
                rest = "";
            }
        }
    }
    out
}

/// The operation name of a template: its command, upper-cased.
fn op_name(template: &CommandTemplate) -> String {
    template
        .args
        .first()
        .map(|a| a.to_ascii_uppercase())
        .unwrap_or_default()
}

/// One operation per distinct command name, in the order templates first name them.
pub fn op_table(cfg: &WorkloadConfig) -> OpTable {
    let mut names: Vec<String> = Vec::new();
    for t in &cfg.commands {
        let name = op_name(t);
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.into()
}

struct Compiled {
    op: OpId,
    args: Vec<Vec<Segment>>,
}

/// This command's placeholder values.
struct Drawn<'a> {
    key_prefix: &'a [u8],
    key: &'a [u8],
    value: &'a [u8],
    field: &'a [u8],
    int: &'a [u8],
}

impl<'a> Drawn<'a> {
    /// A segment's bytes, in up to two pieces (prefix and digits).
    #[inline]
    fn bytes(&self, s: &'a Segment) -> (&'a [u8], &'a [u8]) {
        match s {
            Segment::Literal(bytes) => (bytes, b""),
            Segment::Key => (self.key_prefix, self.key),
            Segment::Data => (self.value, b""),
            Segment::Field => (b"f", self.field),
            Segment::RandInt => (self.int, b""),
        }
    }
}

pub struct Template {
    templates: Vec<Compiled>,
    choice: WeightedIndex,
    key_prefix: Vec<u8>,
    keys: KeySpace,
    values: ValueSource,
    fields: u64,
    /// Per op: the known command it is, for hit/miss accounting.
    commands: Vec<Option<Command>>,
}

impl Template {
    pub fn new(cfg: &WorkloadConfig, worker: usize, workers: usize, rng: &mut WorkerRng) -> Self {
        let ops = op_table(cfg);
        let templates: Vec<Compiled> = cfg
            .commands
            .iter()
            .map(|t| {
                let name = op_name(t);
                Compiled {
                    op: ops.iter().position(|n| *n == name).unwrap_or(0),
                    args: t.args.iter().map(|a| segments(a)).collect(),
                }
            })
            .collect();
        Template {
            choice: WeightedIndex::new(cfg.commands.iter().map(|t| t.weight)),
            key_prefix: format!("{}:", cfg.key_prefix).into_bytes(),
            keys: KeySpace::new(cfg, worker, workers),
            values: ValueSource::new(&cfg.value_size, rng),
            fields: cfg.hash_fields as u64,
            commands: ops.iter().map(|n| Command::parse(n)).collect(),
            templates,
        }
    }
}

impl Workload for Template {
    #[inline]
    fn encode_next(&mut self, rng: &mut WorkerRng, out: &mut Vec<u8>, sent: &mut Vec<OpId>) {
        let t = &self.templates[self.choice.pick(rng)];
        let key = self.keys.next(rng);
        let value = self.values.next(rng);
        let field = below(rng, self.fields);
        let rand_int = below(rng, 1 << 32);
        let mut key_digits = itoa::Buffer::new();
        let key_digits = key_digits.format(key).as_bytes();
        let mut field_digits = itoa::Buffer::new();
        let field_digits = field_digits.format(field).as_bytes();
        let mut int_digits = itoa::Buffer::new();
        let int_digits = int_digits.format(rand_int).as_bytes();
        let drawn = Drawn {
            key_prefix: &self.key_prefix,
            key: key_digits,
            value,
            field: field_digits,
            int: int_digits,
        };
        let part = |s| drawn.bytes(s);
        crate::proto::encode::array_header(out, t.args.len());
        for arg in &t.args {
            let len: usize = arg
                .iter()
                .map(|s| {
                    let (a, b) = part(s);
                    a.len() + b.len()
                })
                .sum();
            out.push(b'$');
            out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
            out.extend_from_slice(b"\r\n");
            for s in arg {
                let (a, b) = part(s);
                out.extend_from_slice(a);
                out.extend_from_slice(b);
            }
            out.extend_from_slice(b"\r\n");
        }
        sent.push(t.op);
    }

    #[inline]
    fn on_reply(&mut self, op: OpId, reply: &Reply, payload: &[u8], rec: &mut Recorder<'_>) {
        match self.commands.get(op).copied().flatten() {
            Some(command) if command.is_read() && reply.kind != ReplyKind::Error => {
                rec.lookup(op, is_hit(command, reply, payload))
            }
            _ => rec.standard(op, reply, payload),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_inside_larger_arguments() {
        assert_eq!(
            segments("user:__key__:__field__"),
            vec![
                Segment::Literal(b"user:".to_vec()),
                Segment::Key,
                Segment::Literal(b":".to_vec()),
                Segment::Field,
            ]
        );
        assert_eq!(segments("__data__"), vec![Segment::Data]);
        assert_eq!(segments("plain"), vec![Segment::Literal(b"plain".to_vec())]);
        assert_eq!(
            segments("__rand_int____key__"),
            vec![Segment::RandInt, Segment::Key]
        );
    }
}
