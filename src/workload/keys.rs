//! Key, value and command-choice generators shared by workloads.
//!
//! Everything here is set up once per worker and then draws per command without allocating:
//! key numbers from the configured distribution, value bytes as slices of one random buffer.

use rand_core::Rng;

use crate::config::{KeyDistribution, ValueSize, WorkloadConfig};
use crate::proto::encode;
use crate::workload::WorkerRng;

/// Keys per hash-tag group: with `--hash-tag`, key n is `<prefix>{<n / 100>}:<n>`, so a
/// multi-key command that picks its keys from one group stays in one cluster slot.
pub const HASH_TAG_GROUP: u64 = 100;

/// A uniform integer in `0..n` (Lemire's multiply-shift; n >= 1).
#[inline]
pub fn below(rng: &mut WorkerRng, n: u64) -> u64 {
    ((rng.next_u64() as u128 * n as u128) >> 64) as u64
}

/// A uniform float in `[0, 1)`.
#[inline]
pub fn unit(rng: &mut WorkerRng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Picks among `n` choices by weight with one random draw and a short scan.
#[derive(Debug, Clone)]
pub struct WeightedIndex {
    /// Cumulative thresholds over the u64 range; the last is u64::MAX.
    thresholds: Vec<u64>,
}

impl WeightedIndex {
    /// `weights` must be non-empty and positive (validated by config).
    pub fn new(weights: impl IntoIterator<Item = f64>) -> Self {
        let weights: Vec<f64> = weights.into_iter().collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let mut thresholds: Vec<u64> = weights
            .iter()
            .map(|w| {
                acc += w / total;
                (acc.min(1.0) * u64::MAX as f64) as u64
            })
            .collect();
        if let Some(last) = thresholds.last_mut() {
            *last = u64::MAX;
        }
        WeightedIndex { thresholds }
    }

    #[inline]
    pub fn pick(&self, rng: &mut WorkerRng) -> usize {
        let r = rng.next_u64();
        self.thresholds
            .iter()
            .position(|&t| r <= t)
            .unwrap_or(self.thresholds.len() - 1)
    }
}

/// Zipf-distributed ranks `1..=n` by rejection-inversion (Hörmann and Derflinger, 1996):
/// constant time per draw and no table, so it works for key ranges of any size.
#[derive(Debug, Clone)]
pub struct Zipf {
    n: f64,
    exponent: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    s: f64,
}

impl Zipf {
    pub fn new(n: u64, exponent: f64) -> Self {
        let mut z = Zipf {
            n: n as f64,
            exponent,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            s: 0.0,
        };
        z.h_integral_x1 = z.h_integral(1.5) - 1.0;
        z.h_integral_n = z.h_integral(z.n + 0.5);
        z.s = 2.0 - z.h_integral_inverse(z.h_integral(2.5) - z.h(2.0));
        z
    }

    /// A rank in `1..=n`; rank 1 is the most frequent.
    pub fn sample(&self, rng: &mut WorkerRng) -> u64 {
        loop {
            let u = self.h_integral_n + unit(rng) * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.s || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }

    fn h(&self, x: f64) -> f64 {
        (-self.exponent * x.ln()).exp()
    }

    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.exponent) * log_x) * log_x
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.exponent)).max(-1.0);
        (helper1(t) * x).exp()
    }
}

/// `ln(1 + x) / x`, accurate near 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// `(e^x - 1) / x`, accurate near 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

#[derive(Debug, Clone)]
enum Draw {
    Uniform,
    /// Each worker walks the whole range from its own starting point.
    Sequential {
        next: u64,
    },
    Gaussian {
        stddev: f64,
    },
    Zipf(Zipf),
}

/// The key numbers a worker uses, `min..min + range`, drawn by the configured distribution.
#[derive(Debug, Clone)]
pub struct KeySpace {
    min: u64,
    range: u64,
    hash_tag: bool,
    draw: Draw,
}

impl KeySpace {
    /// `worker`/`workers` spread sequential walks over the range.
    pub fn new(cfg: &WorkloadConfig, worker: usize, workers: usize) -> Self {
        let range = cfg.key_range;
        let draw = match &cfg.key_distribution {
            KeyDistribution::Uniform => Draw::Uniform,
            KeyDistribution::Sequential => Draw::Sequential {
                next: (range as u128 * worker as u128 / workers.max(1) as u128) as u64,
            },
            KeyDistribution::Gaussian { stddev } => Draw::Gaussian {
                stddev: stddev * range as f64,
            },
            KeyDistribution::Zipf { exponent } => Draw::Zipf(Zipf::new(range, *exponent)),
        };
        KeySpace {
            min: cfg.key_min,
            range,
            hash_tag: cfg.hash_tag,
            draw,
        }
    }

    /// The next key number.
    #[inline]
    pub fn next(&mut self, rng: &mut WorkerRng) -> u64 {
        let offset = match &mut self.draw {
            Draw::Uniform => below(rng, self.range),
            Draw::Sequential { next } => {
                let n = *next;
                *next = if n + 1 >= self.range { 0 } else { n + 1 };
                n
            }
            Draw::Gaussian { stddev } => {
                let mean = (self.range as f64 - 1.0) / 2.0;
                loop {
                    // Box-Muller; values outside the range are drawn again, not clamped, so the
                    // edges do not pile up.
                    let u1 = 1.0 - unit(rng);
                    let u2 = unit(rng);
                    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                    let v = (mean + z * *stddev).round();
                    if v >= 0.0 && v < self.range as f64 {
                        break v as u64;
                    }
                }
            }
            Draw::Zipf(z) => z.sample(rng) - 1,
        };
        self.min + offset
    }

    /// Another key in the same hash-tag group as `first` (so in the same cluster slot), or any
    /// key when hash tags are off.
    #[inline]
    pub fn companion(&mut self, rng: &mut WorkerRng, first: u64) -> u64 {
        if !self.hash_tag {
            return self.next(rng);
        }
        let group_start = first - (first - self.min) % HASH_TAG_GROUP;
        let group_end = (group_start + HASH_TAG_GROUP).min(self.min + self.range);
        group_start + below(rng, group_end - group_start)
    }

    /// Appends key `n` under `prefix` (which ends with its separator) as a bulk string.
    #[inline]
    pub fn write_key(&self, out: &mut Vec<u8>, prefix: &[u8], n: u64) {
        if !self.hash_tag {
            encode::bulk_key(out, prefix, n);
            return;
        }
        let mut group = itoa::Buffer::new();
        let group = group.format(n / HASH_TAG_GROUP).as_bytes();
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(n).as_bytes();
        let len = prefix.len() + group.len() + 3 + digits.len();
        out.push(b'$');
        out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(prefix);
        out.push(b'{');
        out.extend_from_slice(group);
        out.extend_from_slice(b"}:");
        out.extend_from_slice(digits);
        out.extend_from_slice(b"\r\n");
    }
}

/// Key `n`'s name under `prefix`, exactly as [`KeySpace::write_key`] writes it (for the checks
/// after a run, not the hot path).
pub fn key_name(prefix: &str, hash_tag: bool, n: u64) -> String {
    if hash_tag {
        format!("{prefix}{{{}}}:{n}", n / HASH_TAG_GROUP)
    } else {
        format!("{prefix}{n}")
    }
}

/// Random value bytes: a buffer of printable bytes, twice the largest value, from which each
/// value is a slice at a random offset (values differ without generating bytes per command).
#[derive(Debug, Clone)]
pub struct ValueSource {
    bytes: Vec<u8>,
    size: ValueSize,
    weighted: Option<WeightedIndex>,
}

impl ValueSource {
    pub fn new(size: &ValueSize, rng: &mut WorkerRng) -> Self {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let len = size.max() * 2 + 1;
        let bytes = (0..len)
            .map(|_| ALPHABET[below(rng, ALPHABET.len() as u64) as usize])
            .collect();
        let weighted = match size {
            ValueSize::Weighted(pairs) => {
                Some(WeightedIndex::new(pairs.iter().map(|(_, w)| *w as f64)))
            }
            _ => None,
        };
        ValueSource {
            bytes,
            size: size.clone(),
            weighted,
        }
    }

    #[inline]
    pub fn next<'a>(&'a self, rng: &mut WorkerRng) -> &'a [u8] {
        let len = match &self.size {
            ValueSize::Fixed(n) => *n,
            ValueSize::Range { min, max } => min + below(rng, (max - min + 1) as u64) as usize,
            ValueSize::Weighted(pairs) => {
                let i = self.weighted.as_ref().map_or(0, |w| w.pick(rng));
                pairs[i].0
            }
        };
        let offset = below(rng, (self.bytes.len() - len) as u64) as usize;
        &self.bytes[offset..offset + len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    fn cfg(dist: KeyDistribution, range: u64) -> WorkloadConfig {
        let mut cfg = crate::workload::mix::tests::config();
        cfg.key_distribution = dist;
        cfg.key_range = range;
        cfg.key_min = 1000;
        cfg
    }

    #[test]
    fn weighted_index_follows_weights() {
        let mut rng = WorkerRng::seed_from_u64(7);
        let choice = WeightedIndex::new([1.0, 3.0]);
        let n = 100_000;
        let second = (0..n).filter(|_| choice.pick(&mut rng) == 1).count();
        let share = second as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.01, "{share}");
    }

    #[test]
    fn uniform_covers_the_range_from_key_min() {
        let mut rng = WorkerRng::seed_from_u64(1);
        let mut keys = KeySpace::new(&cfg(KeyDistribution::Uniform, 10), 0, 1);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let k = keys.next(&mut rng);
            assert!((1000..1010).contains(&k));
            seen[(k - 1000) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn sequential_walks_from_each_workers_offset() {
        let mut rng = WorkerRng::seed_from_u64(1);
        let mut w1 = KeySpace::new(&cfg(KeyDistribution::Sequential, 10), 1, 2);
        let keys: Vec<u64> = (0..7).map(|_| w1.next(&mut rng)).collect();
        assert_eq!(keys, [1005, 1006, 1007, 1008, 1009, 1000, 1001]);
    }

    #[test]
    fn zipf_frequencies_follow_the_power_law() {
        let mut rng = WorkerRng::seed_from_u64(11);
        let z = Zipf::new(1000, 1.0);
        let mut counts = vec![0u64; 1001];
        let n = 400_000;
        for _ in 0..n {
            counts[z.sample(&mut rng) as usize] += 1;
        }
        // P(k) ~ 1/k: rank 1 twice as frequent as rank 2, ten times rank 10.
        let r2 = counts[1] as f64 / counts[2] as f64;
        let r10 = counts[1] as f64 / counts[10] as f64;
        assert!((r2 - 2.0).abs() < 0.15, "rank1/rank2 = {r2}");
        assert!((r10 - 10.0).abs() < 1.0, "rank1/rank10 = {r10}");
        // H(1000) = 7.485: rank 1 holds about 13.4 % of draws.
        let p1 = counts[1] as f64 / n as f64;
        assert!((p1 - 0.1336).abs() < 0.005, "p1 = {p1}");
        assert_eq!(counts[0], 0);
    }

    #[test]
    fn gaussian_is_centred_with_the_configured_spread() {
        let mut rng = WorkerRng::seed_from_u64(5);
        let mut keys = KeySpace::new(
            &cfg(KeyDistribution::Gaussian { stddev: 0.1 }, 10_000),
            0,
            1,
        );
        let draws: Vec<f64> = (0..100_000)
            .map(|_| (keys.next(&mut rng) - 1000) as f64)
            .collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!((mean - 4999.5).abs() < 20.0, "mean {mean}");
        assert!((var.sqrt() - 1000.0).abs() < 20.0, "stddev {}", var.sqrt());
        let within_1sd = draws
            .iter()
            .filter(|d| (*d - 4999.5).abs() <= 1000.0)
            .count();
        let share = within_1sd as f64 / draws.len() as f64;
        assert!((share - 0.6827).abs() < 0.01, "{share}");
    }

    #[test]
    fn hash_tag_keys_share_a_group_with_their_companions() {
        let mut rng = WorkerRng::seed_from_u64(2);
        let mut c = cfg(KeyDistribution::Uniform, 10_000);
        c.hash_tag = true;
        let mut keys = KeySpace::new(&c, 0, 1);
        for _ in 0..1000 {
            let first = keys.next(&mut rng);
            let other = keys.companion(&mut rng, first);
            assert_eq!(first / HASH_TAG_GROUP, other / HASH_TAG_GROUP);
        }
        let mut out = Vec::new();
        keys.write_key(&mut out, b"k:", 1234);
        assert_eq!(out, b"$11\r\nk:{12}:1234\r\n".to_vec());
    }

    #[test]
    fn values_have_the_configured_sizes() {
        let mut rng = WorkerRng::seed_from_u64(3);
        let fixed = ValueSource::new(&ValueSize::Fixed(32), &mut rng);
        assert!((0..100).all(|_| fixed.next(&mut rng).len() == 32));
        let range = ValueSource::new(&ValueSize::Range { min: 5, max: 9 }, &mut rng);
        let lens: Vec<usize> = (0..1000).map(|_| range.next(&mut rng).len()).collect();
        assert!(lens.iter().all(|l| (5..=9).contains(l)));
        assert!(lens.contains(&5) && lens.contains(&9));
        let weighted = ValueSource::new(&ValueSize::Weighted(vec![(32, 9), (1024, 1)]), &mut rng);
        let big = (0..10_000)
            .filter(|_| weighted.next(&mut rng).len() == 1024)
            .count();
        assert!((800..1200).contains(&big), "{big}");
    }
}
