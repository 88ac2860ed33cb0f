//! `--prefill`: write every key of the range before the measured run, so reads hit.
//!
//! One data-plane connection sends pipelined writes for every data type the mix reads, keyed
//! exactly as the mix keys them. What it sends is counted per command and reported apart from
//! the measured run (setup traffic), so the server's own counters still add up. In cluster
//! mode the writes go through a cluster pipeline of their own (each to its slot's master);
//! a MOVED/ASK reply is one more call the server saw, so it is counted (as an error reply,
//! as the workers count it) besides the command's final reply.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use rand_core::SeedableRng;

use crate::client::cluster::ClusterWatch;
use crate::client::{ConnectError, connect};
use crate::command::Family;
use crate::config::RunnerConfig;
use crate::proto::{ReplyKind, encode};
use crate::workload::keys::{KeySpace, ValueSource};
use crate::workload::mix::{RANGE_COUNT, prefix};
use crate::workload::{WorkerRng, cluster_io};

/// Writes sent per round trip.
const PIPELINE: u64 = 1000;
/// Members written per hash / set / sorted set (the first of `--hash-fields`).
const MAX_MEMBERS: u64 = 100;

/// What the prefill sent: commands per name, failures, and how long it took.
#[derive(Debug, Clone, Default)]
pub struct PrefillOutcome {
    pub commands: BTreeMap<String, u64>,
    pub errors: u64,
    pub duration_s: f64,
}

/// The data types the mix works on, each once.
fn families(cfg: &RunnerConfig) -> Vec<Family> {
    let mut out: Vec<Family> = Vec::new();
    for (command, _) in &cfg.workload.operations {
        if !out.contains(&command.family()) {
            out.push(command.family());
        }
    }
    out
}

/// Appends the write that fills key `n` of `family`; returns the command's name.
fn encode_fill(
    cfg: &RunnerConfig,
    family: Family,
    keys: &KeySpace,
    n: u64,
    values: &ValueSource,
    rng: &mut WorkerRng,
    out: &mut Vec<u8>,
) -> &'static str {
    let prefix = prefix(&cfg.workload, family);
    let members = (cfg.workload.hash_fields as u64).min(MAX_MEMBERS);
    let list_len = (cfg.workload.list_max_length as i64).min(RANGE_COUNT) as usize;
    let (name, argc) = match family {
        Family::String | Family::Counter => ("SET", 3),
        Family::List => ("RPUSH", 2 + list_len),
        Family::Hash => ("HSET", 2 + 2 * members as usize),
        Family::Set => ("SADD", 2 + members as usize),
        Family::SortedSet => ("ZADD", 2 + 2 * members as usize),
        Family::Stream => ("XADD", 8),
    };
    out.extend_from_slice(&encode::command_start(name, argc));
    keys.write_key(out, &prefix, n);
    match family {
        Family::String => encode::bulk(out, values.next(rng)),
        Family::Counter => encode::bulk(out, b"0"),
        Family::List => (0..list_len).for_each(|_| encode::bulk(out, values.next(rng))),
        Family::Hash => (0..members).for_each(|m| {
            encode::bulk_key(out, b"f", m);
            encode::bulk(out, values.next(rng));
        }),
        Family::Set => (0..members).for_each(|m| encode::bulk_key(out, b"m", m)),
        Family::SortedSet => (0..members).for_each(|m| {
            encode::bulk_int(out, m as i64);
            encode::bulk_key(out, b"m", m);
        }),
        Family::Stream => {
            for arg in [&b"MAXLEN"[..], b"~"] {
                encode::bulk(out, arg);
            }
            encode::bulk_int(out, cfg.workload.stream_max_length as i64);
            encode::bulk(out, b"*");
            encode::bulk(out, b"v");
            encode::bulk(out, values.next(rng));
        }
    }
    name
}

/// Fills every key of the range for each data type the mix uses; in cluster mode (`cluster`:
/// the run's slot-map watcher) through the cluster's masters.
pub fn run(
    cfg: &RunnerConfig,
    cluster: Option<&Arc<ClusterWatch>>,
) -> Result<PrefillOutcome, ConnectError> {
    let started = Instant::now();
    let name = format!("{}-prefill", cfg.redis.client_name);
    let mut rng = WorkerRng::seed_from_u64(cfg.test.seed.unwrap_or(0) ^ 0x5eed);
    let values = ValueSource::new(&cfg.workload.value_size, &mut rng);
    let keys = KeySpace::new(&cfg.workload, 0, 1);
    let mut outcome = PrefillOutcome::default();
    let first = cfg.workload.key_min;
    let end = first + cfg.workload.key_range;
    match cluster {
        Some(watch) => {
            let mut pipeline = cluster_io::pipeline(watch, &cfg.redis, &name)?;
            let mut redirects_total = 0;
            for family in families(cfg) {
                let mut n = first;
                while n < end {
                    let batch_end = (n + PIPELINE).min(end);
                    let mut command = "";
                    pipeline.begin();
                    for (op, key) in (n..batch_end).enumerate() {
                        command =
                            encode_fill(cfg, family, &keys, key, &values, &mut rng, pipeline.buf());
                        pipeline.end_unit(op, op + 1);
                    }
                    let mut errors = 0;
                    let redirects = cluster_io::exchange(
                        &mut pipeline,
                        &cfg.redis,
                        &name,
                        (batch_end - n) as usize,
                        command,
                        &mut |_, reply, _| errors += u64::from(reply.kind == ReplyKind::Error),
                    )?;
                    outcome.errors += errors + redirects;
                    redirects_total += redirects;
                    *outcome.commands.entry(command.to_string()).or_default() +=
                        batch_end - n + redirects;
                    n = batch_end;
                }
            }
            if redirects_total > 0 {
                tracing::info!(
                    redirects = redirects_total,
                    "prefill: MOVED/ASK replies followed (counted as setup calls and errors)"
                );
            }
        }
        None => {
            let mut conn = connect(&cfg.redis, &name)?;
            for family in families(cfg) {
                let mut n = first;
                while n < end {
                    let batch_end = (n + PIPELINE).min(end);
                    let mut name = "";
                    for key in n..batch_end {
                        name = encode_fill(
                            cfg,
                            family,
                            &keys,
                            key,
                            &values,
                            &mut rng,
                            conn.request_buf(),
                        );
                    }
                    conn.flush()?;
                    for _ in n..batch_end {
                        let reply = conn.read_reply()?;
                        if reply.kind == ReplyKind::Error {
                            outcome.errors += 1;
                        }
                    }
                    *outcome.commands.entry(name.to_string()).or_default() += batch_end - n;
                    n = batch_end;
                }
            }
        }
    }
    outcome.duration_s = started.elapsed().as_secs_f64();
    Ok(outcome)
}
