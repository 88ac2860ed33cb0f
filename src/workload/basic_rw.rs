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
