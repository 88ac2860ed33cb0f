//! What one worker (or the merged run) records over an interval.

use hdrhistogram::Histogram;

use crate::command::Command;
use crate::error::ErrorClass;

/// Highest latency a histogram holds: one hour, in nanoseconds.
pub const HISTOGRAM_MAX_NS: u64 = 3_600_000_000_000;

/// A latency histogram: 1 ns .. 1 h, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_NS, 3).expect("static histogram bounds are valid")
}

/// Records `value_ns`, or counts it as an overflow (and keeps the largest) when out of range.
#[inline]
fn record_or_overflow(h: &mut Histogram<u64>, value_ns: u64, overflow: &mut Overflow) {
    if h.record(value_ns).is_err() {
        overflow.count += 1;
        overflow.max_ns = overflow.max_ns.max(value_ns);
    }
}

/// Values too large for a histogram: how many, and the largest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overflow {
    pub count: u64,
    pub max_ns: u64,
}

impl Overflow {
    fn add(&mut self, other: &Overflow) {
        self.count += other.count;
        self.max_ns = self.max_ns.max(other.max_ns);
    }
}

/// Counters and histograms of one command.
#[derive(Debug, Clone)]
pub struct CommandStats {
    /// Latency of successful commands, from the intended start (= the send in closed loop).
    pub latency: Histogram<u64>,
    /// Service time from the actual send; kept only in open loop, where it differs.
    pub service: Option<Histogram<u64>>,
    pub success: u64,
    pub errors: [u64; ErrorClass::COUNT],
    pub overflow: Overflow,
}

impl CommandStats {
    fn new(open_loop: bool) -> Self {
        CommandStats {
            latency: new_histogram(),
            service: open_loop.then(new_histogram),
            success: 0,
            errors: [0; ErrorClass::COUNT],
            overflow: Overflow::default(),
        }
    }

    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn total(&self) -> u64 {
        self.success + self.error_total()
    }

    fn add(&mut self, other: &CommandStats) {
        self.latency
            .add(&other.latency)
            .expect("histograms share bounds");
        if let (Some(mine), Some(theirs)) = (&mut self.service, &other.service) {
            mine.add(theirs).expect("histograms share bounds");
        }
        self.success += other.success;
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
        self.overflow.add(&other.overflow);
    }

    fn reset(&mut self) {
        self.latency.reset();
        if let Some(s) = &mut self.service {
            s.reset();
        }
        self.success = 0;
        self.errors = [0; ErrorClass::COUNT];
        self.overflow = Overflow::default();
    }
}

/// Everything recorded over one interval, by one worker or merged.
#[derive(Debug, Clone)]
pub struct IntervalData {
    /// Indexed by [`Command::index`]; `None` for commands the workload never sends.
    pub commands: Vec<Option<CommandStats>>,
    /// Open loop only: how late each batch was sent relative to its intended start.
    pub schedule_lag: Option<Histogram<u64>>,
    pub lag_overflow: Overflow,
    /// Connections re-established after a failure.
    pub reconnects: u64,
    /// Failed reconnect attempts.
    pub connect_failures: u64,
}

impl IntervalData {
    pub fn new(commands: &[Command], open_loop: bool) -> Self {
        let mut slots: Vec<Option<CommandStats>> = Command::ALL.iter().map(|_| None).collect();
        for c in commands {
            slots[c.index()] = Some(CommandStats::new(open_loop));
        }
        IntervalData {
            commands: slots,
            schedule_lag: open_loop.then(new_histogram),
            lag_overflow: Overflow::default(),
            reconnects: 0,
            connect_failures: 0,
        }
    }

    #[inline]
    fn stats(&mut self, command: Command) -> &mut CommandStats {
        self.commands[command.index()]
            .as_mut()
            .expect("workload sends only the commands it declared")
    }

    /// A command's reply arrived and was not an error.
    #[inline]
    pub fn record_success(&mut self, command: Command, latency_ns: u64, service_ns: u64) {
        let stats = self.stats(command);
        stats.success += 1;
        let CommandStats {
            latency,
            service,
            overflow,
            ..
        } = stats;
        record_or_overflow(latency, latency_ns, overflow);
        if let Some(service) = service {
            record_or_overflow(service, service_ns, overflow);
        }
    }

    /// A command failed: an error reply, or it was sent and its reply never came.
    #[inline]
    pub fn record_error(&mut self, command: Command, class: ErrorClass) {
        self.stats(command).errors[class.index()] += 1;
    }

    #[inline]
    pub fn record_lag(&mut self, lag_ns: u64) {
        if let Some(h) = &mut self.schedule_lag {
            record_or_overflow(h, lag_ns, &mut self.lag_overflow);
        }
    }

    /// Adds `other` into `self` (same command set; no allocation).
    pub fn add(&mut self, other: &IntervalData) {
        for (mine, theirs) in self.commands.iter_mut().zip(&other.commands) {
            if let (Some(mine), Some(theirs)) = (mine, theirs) {
                mine.add(theirs);
            }
        }
        if let (Some(mine), Some(theirs)) = (&mut self.schedule_lag, &other.schedule_lag) {
            mine.add(theirs).expect("histograms share bounds");
        }
        self.lag_overflow.add(&other.lag_overflow);
        self.reconnects += other.reconnects;
        self.connect_failures += other.connect_failures;
    }

    pub fn reset(&mut self) {
        for stats in self.commands.iter_mut().flatten() {
            stats.reset();
        }
        if let Some(h) = &mut self.schedule_lag {
            h.reset();
        }
        self.lag_overflow = Overflow::default();
        self.reconnects = 0;
        self.connect_failures = 0;
    }

    /// The commands with slots, with their stats.
    pub fn per_command(&self) -> impl Iterator<Item = (Command, &CommandStats)> {
        Command::ALL
            .iter()
            .zip(&self.commands)
            .filter_map(|(c, s)| s.as_ref().map(|s| (*c, s)))
    }

    pub fn total(&self) -> u64 {
        self.per_command().map(|(_, s)| s.total()).sum()
    }

    pub fn success(&self) -> u64 {
        self.per_command().map(|(_, s)| s.success).sum()
    }

    pub fn errors(&self) -> u64 {
        self.per_command().map(|(_, s)| s.error_total()).sum()
    }

    /// All commands' latencies in one histogram.
    pub fn merged_latency(&self) -> hdrhistogram::Histogram<u64> {
        let mut all = new_histogram();
        for (_, s) in self.per_command() {
            all.add(&s.latency).expect("histograms share bounds");
        }
        all
    }

    /// Overflows across commands.
    pub fn overflow(&self) -> Overflow {
        let mut o = Overflow::default();
        for (_, s) in self.per_command() {
            o.add(&s.overflow);
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_add_and_reset() {
        let mut a = IntervalData::new(&[Command::Set, Command::Get], false);
        a.record_success(Command::Set, 1_000, 1_000);
        a.record_success(Command::Get, 2_000_000, 2_000_000);
        a.record_error(Command::Get, ErrorClass::Timeout);
        let mut total = IntervalData::new(&[Command::Set, Command::Get], false);
        total.add(&a);
        total.add(&a);
        assert_eq!(total.total(), 6);
        assert_eq!(total.errors(), 2);
        let get = total.commands[Command::Get.index()].as_ref().unwrap();
        assert_eq!(get.errors[ErrorClass::Timeout.index()], 2);
        assert_eq!(get.latency.len(), 2);
        a.reset();
        assert_eq!(a.total(), 0);
        assert!(a.commands[Command::Del.index()].is_none());
    }

    #[test]
    fn values_beyond_an_hour_are_overflows_not_clamped() {
        let mut a = IntervalData::new(&[Command::Set], false);
        a.record_success(Command::Set, HISTOGRAM_MAX_NS * 2, 0);
        let set = a.commands[Command::Set.index()].as_ref().unwrap();
        assert_eq!(set.success, 1);
        assert_eq!(set.latency.len(), 0);
        assert_eq!(set.overflow.count, 1);
        assert_eq!(set.overflow.max_ns, HISTOGRAM_MAX_NS * 2);
    }

    #[test]
    fn three_significant_digits_at_sub_millisecond_latency() {
        let mut h = new_histogram();
        h.record(123_456).unwrap();
        let p = h.value_at_quantile(0.5) as f64;
        assert!((p - 123_456.0).abs() / 123_456.0 < 0.001, "{p}");
    }
}
