//! `basic_rw`: a weighted mix of SET, GET, DEL and INCR over one key space.
//!
//! SET, GET and DEL share the keys `{prefix}:{n}`, so reads find what writes wrote. INCR works
//! on its own counters `{prefix}:counter:{n}`: incrementing a SET value (random text) would
//! only produce errors. The `high_throughput` profile is this workload, pipelined.

use crate::client::encode;
use crate::command::Command;
use crate::config::WorkloadConfig;
use crate::workload::keys::{ValueSource, WeightedChoice, below};
use crate::workload::{WorkerRng, Workload};

pub struct BasicRw {
    choice: WeightedChoice,
    key_prefix: Vec<u8>,
    counter_prefix: Vec<u8>,
    key_range: u64,
    values: ValueSource,
}

impl BasicRw {
    pub fn new(cfg: &WorkloadConfig, rng: &mut WorkerRng) -> Self {
        BasicRw {
            choice: WeightedChoice::new(&cfg.operations),
            key_prefix: format!("{}:", cfg.key_prefix).into_bytes(),
            counter_prefix: format!("{}:counter:", cfg.key_prefix).into_bytes(),
            key_range: cfg.key_range,
            values: ValueSource::new(cfg.value_size, rng),
        }
    }
}

impl Workload for BasicRw {
    fn commands(&self) -> Vec<Command> {
        self.choice.commands().to_vec()
    }

    #[inline]
    fn encode_next(&mut self, rng: &mut WorkerRng, out: &mut Vec<u8>) -> Command {
        let command = self.choice.pick(rng);
        let key = below(rng, self.key_range);
        out.extend_from_slice(encode::header(command));
        match command {
            Command::Set => {
                encode::bulk_key(out, &self.key_prefix, key);
                encode::bulk(out, self.values.next(rng));
            }
            Command::Get | Command::Del => encode::bulk_key(out, &self.key_prefix, key),
            Command::Incr => encode::bulk_key(out, &self.counter_prefix, key),
        }
        command
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ValueSize, WorkloadKind};
    use rand_core::SeedableRng;

    fn config() -> WorkloadConfig {
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
            value_size: ValueSize::Range { min: 1, max: 64 },
            use_pipeline: false,
            pipeline_size: 1,
        }
    }

    fn encode(seed: u64, n: usize) -> Vec<u8> {
        let mut rng = WorkerRng::seed_from_u64(seed);
        let mut w = BasicRw::new(&config(), &mut rng);
        let mut out = Vec::new();
        for _ in 0..n {
            w.encode_next(&mut rng, &mut out);
        }
        out
    }

    #[test]
    fn same_seed_same_commands_keys_and_values() {
        assert_eq!(encode(42, 500), encode(42, 500));
        assert_ne!(encode(42, 500), encode(43, 500));
    }

    #[test]
    fn reads_and_writes_share_keys_and_incr_has_its_own() {
        let out = encode(7, 2000);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("SET\r\n$") && text.contains("GET\r\n$"));
        assert!(text.contains("INCR\r\n$") && text.contains("k:counter:"));
        // Every GET key is a plain key of the same space SET writes to.
        for request in text.split("*2\r\n$3\r\nGET\r\n").skip(1) {
            let key = request.split("\r\n").nth(1).unwrap();
            let n: u64 = key.strip_prefix("k:").unwrap().parse().unwrap();
            assert!(n < 1000);
        }
    }
}
