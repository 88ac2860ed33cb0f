//! The `increment_check` workload: INCR on counters unique to this run, then an audit of the
//! server's counters against the increments the run saw acknowledged.
//!
//! Workers INCR `<prefix>:incr:<run_id>:<n>` for n in the key range (a fresh run id means
//! fresh counters at 0). After the run, [`verify`] reads every counter through the control
//! plane, compares their sum S with the INCRs acknowledged A (successes) and those whose outcome
//! is unknown U (sent, but the connection failed or timed out before the reply: the server may
//! or may not have applied them), and deletes the counters. A <= S <= A + U must hold; an
//! acknowledged increment the server does not have is `lost`, more increments than were ever
//! sent is `duplicated`. In cluster mode the counters are read and deleted per slot (MGET and
//! UNLINK of the counters sharing a slot, sent to its master); with hash tags (the default
//! there) a group of counters shares a slot. The load is the plain request/reply loop; not
//! here: a linearizability checker (only the totals are audited, not the order of operations).

use std::collections::BTreeMap;
use std::sync::Arc;

use redis::Commands;
use serde_json::json;

use crate::client::cluster::{ClusterWatch, key_slot};
use crate::config::RunnerConfig;
use crate::error::ErrorClass;
use crate::metrics::{OpId, OpTable};
use crate::output::report::RunReport;
use crate::proto::encode;
use crate::proto::resp::{self, ReplyKind};
use crate::workload::keys::{KeySpace, key_name};
use crate::workload::{RunPlan, WorkerRng, Workload, cluster_io};

/// Counters read per MGET and deleted per UNLINK.
const CHUNK: usize = 1000;

/// The only operation: INCR.
pub fn op_table() -> OpTable {
    vec!["INCR".to_string()].into()
}

/// `<prefix>:incr:<run_id>:`, the start of every counter of this run.
fn counter_prefix(cfg: &RunnerConfig) -> String {
    format!("{}:incr:{}:", cfg.workload.key_prefix, cfg.identity.run_id)
}

/// Counter `n`'s name, exactly as [`KeySpace::write_key`] writes it.
fn counter_name(prefix: &str, hash_tag: bool, n: u64) -> String {
    key_name(prefix, hash_tag, n)
}

pub struct IncrementCheck {
    incr: Vec<u8>,
    prefix: Vec<u8>,
    keys: KeySpace,
}

impl IncrementCheck {
    pub fn new(cfg: &RunnerConfig, worker: usize, workers: usize) -> Self {
        IncrementCheck {
            incr: encode::command_start("INCR", 2),
            prefix: counter_prefix(cfg).into_bytes(),
            keys: KeySpace::new(&cfg.workload, worker, workers),
        }
    }
}

impl Workload for IncrementCheck {
    #[inline]
    fn encode_next(&mut self, rng: &mut WorkerRng, out: &mut Vec<u8>, sent: &mut Vec<OpId>) {
        out.extend_from_slice(&self.incr);
        let key = self.keys.next(rng);
        self.keys.write_key(out, &self.prefix, key);
        sent.push(0);
    }
}

/// The audit's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audit {
    pub keys: u64,
    pub acknowledged: u64,
    pub unknown_outcome: u64,
    pub server_total: i64,
    pub lost: u64,
    pub duplicated: u64,
}

impl Audit {
    /// Compares the server's total with what the run saw: acknowledged increments the server
    /// lacks are lost; increments beyond everything that may have been applied are duplicated.
    pub fn new(keys: u64, acknowledged: u64, unknown_outcome: u64, server_total: i64) -> Audit {
        let (a, u, s) = (
            acknowledged as i128,
            unknown_outcome as i128,
            server_total as i128,
        );
        Audit {
            keys,
            acknowledged,
            unknown_outcome,
            server_total,
            lost: u64::try_from((a - s).max(0)).unwrap_or(u64::MAX),
            duplicated: u64::try_from((s - a - u).max(0)).unwrap_or(u64::MAX),
        }
    }

    pub fn ok(&self) -> bool {
        self.lost == 0 && self.duplicated == 0
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "keys": self.keys,
            "acknowledged": self.acknowledged,
            "unknown_outcome": self.unknown_outcome,
            "server_total": self.server_total,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "ok": self.ok(),
        })
    }
}

/// INCRs acknowledged and INCRs of unknown outcome, from the report. Warm-up increments reach
/// the server too but are reported apart with totals only: their successes are acknowledged and
/// their errors, whose class is not kept, are taken as unknown (the generous reading, so a
/// warm-up never makes the audit claim a duplicate).
fn outcomes(report: &RunReport) -> (u64, u64) {
    let (mut acknowledged, mut unknown) = (0, 0);
    if let Some(incr) = report.operations.get("INCR") {
        acknowledged += incr.success;
        unknown += [ErrorClass::Timeout, ErrorClass::ConnectionError]
            .iter()
            .map(|c| incr.errors_by_type.get(c.label()).copied().unwrap_or(0))
            .sum::<u64>();
    }
    if let Some(warmup) = &report.warmup {
        let sent = warmup.operations.get("INCR").copied().unwrap_or(0);
        let errors = warmup.errors.min(sent);
        acknowledged += sent - errors;
        unknown += errors;
    }
    (acknowledged, unknown)
}

/// Adds counter `key`'s value `text` to `total`; a value that is not an integer is noted in
/// `bad_value` (the first one found).
fn add_counter(total: &mut i64, bad_value: &mut Option<String>, key: &str, text: &[u8]) {
    match std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
    {
        Some(v) => *total = total.saturating_add(v),
        None => {
            bad_value.get_or_insert_with(|| {
                format!(
                    "counter {key} holds {:?}, not an integer",
                    String::from_utf8_lossy(text)
                )
            });
        }
    }
}

/// Cluster mode: [`read_and_delete`] per slot. The counters are grouped by slot; each group
/// (at most [`CHUNK`] keys) is one unit `MGET <keys>` + `UNLINK <keys>` sent to its slot's
/// master, units of many groups pipelined together.
fn read_and_delete_cluster(
    cfg: &RunnerConfig,
    watch: &Arc<ClusterWatch>,
) -> Result<(u64, i64), String> {
    let name = format!("{}-audit", cfg.redis.client_name);
    let mut pipeline = cluster_io::pipeline(watch, &cfg.redis, &name)
        .map_err(|e| format!("cannot connect to read the counters: {e}"))?;
    let prefix = counter_prefix(cfg);
    let (min, range) = (cfg.workload.key_min, cfg.workload.key_range);
    let mut by_slot: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for n in min..min + range {
        let key = counter_name(&prefix, cfg.workload.hash_tag, n);
        by_slot
            .entry(key_slot(key.as_bytes()))
            .or_default()
            .push(key);
    }
    let groups: Vec<&[String]> = by_slot
        .values()
        .flat_map(|keys| keys.chunks(CHUNK))
        .collect();
    let mut total: i64 = 0;
    let mut bad_value: Option<String> = None;
    let mut failed: Option<String> = None;
    // A batch: groups until about CHUNK keys are in it.
    let mut next = 0;
    while next < groups.len() {
        let mut batch = Vec::new();
        let mut keys = 0;
        while next < groups.len() && (batch.is_empty() || keys + groups[next].len() <= CHUNK) {
            keys += groups[next].len();
            batch.push(groups[next]);
            next += 1;
        }
        pipeline.begin();
        for (i, group) in batch.iter().enumerate() {
            for command in ["MGET", "UNLINK"] {
                let out = pipeline.buf();
                out.extend_from_slice(&encode::command_start(command, 1 + group.len()));
                for key in *group {
                    encode::bulk(out, key.as_bytes());
                }
            }
            pipeline.end_unit(2 * i, 2 * i + 2);
        }
        cluster_io::exchange(
            &mut pipeline,
            &cfg.redis,
            &name,
            2 * batch.len(),
            "MGET",
            &mut |op, reply, payload| {
                let (group, command) = (batch[op / 2], if op % 2 == 0 { "MGET" } else { "UNLINK" });
                if reply.kind == ReplyKind::Error {
                    failed.get_or_insert_with(|| {
                        format!(
                            "{command} of the counters failed: {}",
                            String::from_utf8_lossy(payload)
                        )
                    });
                    return;
                }
                if command == "UNLINK" {
                    return;
                }
                // The elements of MGET's array, one per key: a bulk value or nil.
                let mut rest = payload;
                for key in group {
                    let Ok(Some((value, used))) = resp::scan(rest) else {
                        failed.get_or_insert_with(|| "MGET of the counters: short reply".into());
                        return;
                    };
                    if value.kind == ReplyKind::Bulk {
                        add_counter(&mut total, &mut bad_value, key, &rest[value.payload]);
                    }
                    rest = &rest[used..];
                }
            },
        )
        .map_err(|e| format!("reading the counters failed: {e}"))?;
        if let Some(error) = failed {
            return Err(error);
        }
    }
    match bad_value {
        Some(error) => Err(error),
        None => Ok((range, total)),
    }
}

/// Reads every counter (MGET in chunks) and returns how many keys there are and their sum,
/// deleting them as it goes (UNLINK in chunks) so runs do not pile up keys; a counter that is
/// not an integer fails the audit but is deleted too.
fn read_and_delete(cfg: &RunnerConfig, plan: &RunPlan) -> Result<(u64, i64), String> {
    if let Some(watch) = &plan.cluster_watch {
        return read_and_delete_cluster(cfg, watch);
    }
    let mut conn = crate::control::connection(&cfg.redis)
        .map_err(|e| format!("cannot connect to read the counters: {e}"))?;
    let prefix = counter_prefix(cfg);
    let (min, range) = (cfg.workload.key_min, cfg.workload.key_range);
    let mut total: i64 = 0;
    let mut bad_value: Option<String> = None;
    let mut chunk: Vec<String> = Vec::with_capacity(CHUNK);
    let mut n = min;
    let end = min + range;
    while n < end {
        chunk.clear();
        while n < end && chunk.len() < CHUNK {
            chunk.push(counter_name(&prefix, cfg.workload.hash_tag, n));
            n += 1;
        }
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&chunk)
            .query(&mut conn)
            .map_err(|e| format!("MGET of the counters failed: {e}"))?;
        for (key, value) in chunk.iter().zip(&values) {
            if let Some(text) = value {
                add_counter(&mut total, &mut bad_value, key, text.as_bytes());
            }
        }
        let _: u64 = conn
            .unlink(&chunk)
            .map_err(|e| format!("UNLINK of the counters failed: {e}"))?;
    }
    match bad_value {
        Some(error) => Err(error),
        None => Ok((range, total)),
    }
}

/// The audit for the report's `checks`: `{"increment_check": {...}}`, or
/// `{"increment_check": {"error": ...}}` when the counters could not be read.
pub fn verify(cfg: &RunnerConfig, plan: &RunPlan, report: &RunReport) -> serde_json::Value {
    let (acknowledged, unknown) = outcomes(report);
    let body = match read_and_delete(cfg, plan) {
        Ok((keys, server_total)) => {
            let audit = Audit::new(keys, acknowledged, unknown, server_total);
            if !audit.ok() {
                tracing::warn!(
                    ?audit,
                    "increment_check: counters disagree with acknowledged INCRs"
                );
            }
            audit.to_json()
        }
        Err(error) => {
            tracing::warn!(%error, "increment_check: could not audit the counters");
            json!({ "error": error })
        }
    };
    json!({ "increment_check": body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_acknowledged_increment_is_detected() {
        // 1000 acknowledged, 3 unknown, but the server has only 998: two acknowledged INCRs lost.
        let audit = Audit::new(10, 1000, 3, 998);
        assert_eq!((audit.lost, audit.duplicated), (2, 0));
        assert!(!audit.ok());
        assert_eq!(audit.to_json()["ok"], false);
    }

    #[test]
    fn unknown_outcomes_may_or_may_not_have_landed() {
        for server_total in 1000..=1003 {
            let audit = Audit::new(10, 1000, 3, server_total);
            assert!(audit.ok(), "{audit:?}");
        }
        // More than could ever have been applied: duplicated.
        let audit = Audit::new(10, 1000, 3, 1005);
        assert_eq!((audit.lost, audit.duplicated), (0, 2));
        assert!(!audit.ok());
        // Extremes do not overflow the arithmetic.
        let audit = Audit::new(1, u64::MAX, u64::MAX, i64::MIN);
        assert_eq!((audit.lost, audit.duplicated), (u64::MAX, 0));
    }

    #[test]
    fn counter_names_match_what_workers_send() {
        for hash_tag in [false, true] {
            let mut cfg = crate::workload::mix::tests::config();
            cfg.hash_tag = hash_tag;
            let keys = KeySpace::new(&cfg, 0, 1);
            for n in [0, 7, 99, 100, 12345] {
                let mut out = Vec::new();
                keys.write_key(&mut out, b"p:incr:r1:", n);
                let name = counter_name("p:incr:r1:", hash_tag, n);
                let expected = format!("${}\r\n{name}\r\n", name.len());
                assert_eq!(String::from_utf8(out).unwrap(), expected);
            }
        }
    }
}
