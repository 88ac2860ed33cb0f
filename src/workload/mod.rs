//! Workloads: what commands a worker sends, on which keys, with which values.
//!
//! One trait, [`Workload`], and one file per workload. A workload encodes its next command
//! straight into the connection's request buffer: no allocation, no formatting per command.
//! Not here: sending, timing and counting (the runner and metrics do that, the same way for
//! every workload).

pub mod basic_rw;
pub mod keys;

use rand_xoshiro::Xoshiro256PlusPlus;

use crate::command::Command;
use crate::config::{WorkloadConfig, WorkloadKind};

/// Each worker's own random source (seeded per worker for reproducible runs).
pub type WorkerRng = Xoshiro256PlusPlus;

/// A generator of commands for one worker.
pub trait Workload: Send {
    /// Every command this workload may send (sizes the metrics slots).
    fn commands(&self) -> Vec<Command>;

    /// Appends the next command's RESP encoding to `out` and says which command it is.
    fn encode_next(&mut self, rng: &mut WorkerRng, out: &mut Vec<u8>) -> Command;
}

/// Builds the configured workload for one worker.
pub fn build(cfg: &WorkloadConfig, rng: &mut WorkerRng) -> Box<dyn Workload> {
    match cfg.kind {
        WorkloadKind::BasicRw => Box::new(basic_rw::BasicRw::new(cfg, rng)),
    }
}

/// The commands a configured workload may send, without building one.
pub fn commands(cfg: &WorkloadConfig) -> Vec<Command> {
    let mut rng = <WorkerRng as rand_core::SeedableRng>::seed_from_u64(0);
    build(cfg, &mut rng).commands()
}
