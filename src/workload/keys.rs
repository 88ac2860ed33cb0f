//! Key, value and command-choice generators shared by workloads.

use rand_core::Rng;

use crate::command::Command;
use crate::config::ValueSize;
use crate::workload::WorkerRng;

/// A uniform integer in `0..n` (Lemire's multiply-shift; n >= 1).
#[inline]
pub fn below(rng: &mut WorkerRng, n: u64) -> u64 {
    ((rng.next_u64() as u128 * n as u128) >> 64) as u64
}

/// Picks commands by weight with one random draw and a short scan.
#[derive(Debug, Clone)]
pub struct WeightedChoice {
    /// Cumulative thresholds over the u64 range; the last is u64::MAX.
    thresholds: Vec<u64>,
    commands: Vec<Command>,
}

impl WeightedChoice {
    /// `weights` must be non-empty with positive weights (validated by config).
    pub fn new(weights: &[(Command, f64)]) -> Self {
        let total: f64 = weights.iter().map(|(_, w)| w).sum();
        let mut acc = 0.0;
        let mut thresholds = Vec::with_capacity(weights.len());
        for (_, w) in weights {
            acc += w / total;
            thresholds.push((acc.min(1.0) * u64::MAX as f64) as u64);
        }
        if let Some(last) = thresholds.last_mut() {
            *last = u64::MAX;
        }
        WeightedChoice {
            thresholds,
            commands: weights.iter().map(|(c, _)| *c).collect(),
        }
    }

    #[inline]
    pub fn pick(&self, rng: &mut WorkerRng) -> Command {
        let r = rng.next_u64();
        for (i, &t) in self.thresholds.iter().enumerate() {
            if r <= t {
                return self.commands[i];
            }
        }
        self.commands[self.commands.len() - 1]
    }

    pub fn commands(&self) -> &[Command] {
        &self.commands
    }
}

/// Random value bytes: a buffer of printable bytes, twice the largest value, from which each
/// value is a slice at a random offset (values differ without generating bytes per command).
#[derive(Debug, Clone)]
pub struct ValueSource {
    bytes: Vec<u8>,
    size: ValueSize,
}

impl ValueSource {
    pub fn new(size: ValueSize, rng: &mut WorkerRng) -> Self {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let len = size.max() * 2 + 1;
        let bytes = (0..len)
            .map(|_| ALPHABET[below(rng, ALPHABET.len() as u64) as usize])
            .collect();
        ValueSource { bytes, size }
    }

    #[inline]
    pub fn next<'a>(&'a self, rng: &mut WorkerRng) -> &'a [u8] {
        let len = match self.size {
            ValueSize::Fixed(n) => n,
            ValueSize::Range { min, max } => min + below(rng, (max - min + 1) as u64) as usize,
        };
        let offset = below(rng, (self.bytes.len() - len) as u64) as usize;
        &self.bytes[offset..offset + len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    #[test]
    fn weighted_choice_follows_weights() {
        let mut rng = WorkerRng::seed_from_u64(7);
        let choice = WeightedChoice::new(&[(Command::Set, 1.0), (Command::Get, 3.0)]);
        let n = 100_000;
        let gets = (0..n)
            .filter(|_| choice.pick(&mut rng) == Command::Get)
            .count();
        let share = gets as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.01, "{share}");
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = WorkerRng::seed_from_u64(1);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let v = below(&mut rng, 10);
            assert!(v < 10);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn values_have_the_configured_sizes() {
        let mut rng = WorkerRng::seed_from_u64(3);
        let fixed = ValueSource::new(ValueSize::Fixed(32), &mut rng);
        assert!((0..100).all(|_| fixed.next(&mut rng).len() == 32));
        let range = ValueSource::new(ValueSize::Range { min: 5, max: 9 }, &mut rng);
        let lens: Vec<usize> = (0..1000).map(|_| range.next(&mut rng).len()).collect();
        assert!(lens.iter().all(|l| (5..=9).contains(l)));
        assert!(lens.contains(&5) && lens.contains(&9));
    }
}
