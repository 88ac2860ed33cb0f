//! Shards and the epoch protocol between workers and the reporter.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::ErrorClass;
use crate::metrics::{IntervalData, OpId, OpTable};

/// One worker's published data, waiting for the reporter.
struct Shard {
    slot: Mutex<IntervalData>,
    /// The last epoch this worker published for.
    published: AtomicU64,
    /// The worker has published for the last time.
    finished: AtomicBool,
}

/// All shards, and the epoch the reporter bumps to ask for data.
pub struct MetricsHub {
    epoch: AtomicU64,
    shards: Box<[Shard]>,
    names: OpTable,
    counter_names: OpTable,
    open_loop: bool,
}

impl MetricsHub {
    pub fn new(workers: usize, names: OpTable, open_loop: bool) -> Arc<Self> {
        MetricsHub::with_counters(workers, names, Vec::new().into(), open_loop)
    }

    /// A hub whose data also carries the workload's named counters.
    pub fn with_counters(
        workers: usize,
        names: OpTable,
        counter_names: OpTable,
        open_loop: bool,
    ) -> Arc<Self> {
        let shards = (0..workers)
            .map(|_| Shard {
                slot: Mutex::new(IntervalData::with_counters(
                    names.clone(),
                    counter_names.clone(),
                    open_loop,
                )),
                published: AtomicU64::new(0),
                finished: AtomicBool::new(false),
            })
            .collect();
        Arc::new(MetricsHub {
            epoch: AtomicU64::new(0),
            shards,
            names,
            counter_names,
            open_loop,
        })
    }

    /// An empty [`IntervalData`] with this run's command slots.
    pub fn new_data(&self) -> IntervalData {
        IntervalData::with_counters(
            self.names.clone(),
            self.counter_names.clone(),
            self.open_loop,
        )
    }

    /// The writer for worker `index` (one per worker, owned by its thread).
    pub fn writer(self: &Arc<Self>, index: usize) -> ShardWriter {
        ShardWriter {
            local: self.new_data(),
            seen_epoch: self.epoch.load(Ordering::Acquire),
            hub: Arc::clone(self),
            index,
        }
    }

    /// Asks every worker to publish, waits up to `max_wait` for those still running, then adds
    /// everything published into `into`. A worker stuck in a long read publishes into the next
    /// interval instead: nothing is lost, it is only attributed late.
    pub fn collect(&self, into: &mut IntervalData, max_wait: Duration) {
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let deadline = Instant::now() + max_wait;
        while Instant::now() < deadline {
            let pending = self.shards.iter().any(|s| {
                !s.finished.load(Ordering::Acquire) && s.published.load(Ordering::Acquire) < epoch
            });
            if !pending {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        for shard in self.shards.iter() {
            let mut slot = shard.slot.lock().unwrap_or_else(|p| p.into_inner());
            into.add(&slot);
            slot.reset();
        }
    }
}

/// A worker's handle to its shard: records locally, publishes when the epoch moves.
pub struct ShardWriter {
    hub: Arc<MetricsHub>,
    index: usize,
    local: IntervalData,
    seen_epoch: u64,
}

impl ShardWriter {
    #[inline]
    pub fn data(&mut self) -> &mut IntervalData {
        &mut self.local
    }

    #[inline]
    pub fn record_success(&mut self, op: OpId, latency_ns: u64, service_ns: u64) {
        self.local.record_success(op, latency_ns, service_ns);
    }

    #[inline]
    pub fn record_error(&mut self, op: OpId, class: ErrorClass) {
        self.local.record_error(op, class);
    }

    /// Publishes if the reporter has asked since the last time (one atomic load otherwise).
    #[inline]
    pub fn maybe_publish(&mut self) {
        let epoch = self.hub.epoch.load(Ordering::Acquire);
        if epoch != self.seen_epoch {
            self.publish(epoch);
        }
    }

    fn publish(&mut self, epoch: u64) {
        let shard = &self.hub.shards[self.index];
        {
            let mut slot = shard.slot.lock().unwrap_or_else(|p| p.into_inner());
            slot.add(&self.local);
        }
        self.local.reset();
        self.seen_epoch = epoch;
        shard.published.store(epoch, Ordering::Release);
    }

    /// Publishes what is left; the reporter stops waiting for this worker.
    pub fn finish(&mut self) {
        let epoch = self.hub.epoch.load(Ordering::Acquire);
        self.publish(epoch);
        self.hub.shards[self.index]
            .finished
            .store(true, Ordering::Release);
    }
}

impl Drop for ShardWriter {
    /// A worker that unwinds still hands in what it recorded.
    fn drop(&mut self) {
        if !self.hub.shards[self.index].finished.load(Ordering::Acquire) {
            self.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_gathers_published_data_from_every_shard() {
        let hub = MetricsHub::new(2, vec!["GET".to_string()].into(), false);
        let mut w0 = hub.writer(0);
        let mut w1 = hub.writer(1);
        w0.record_success(0, 10, 10);
        w1.record_error(0, ErrorClass::Timeout);
        let h = Arc::clone(&hub);
        let t = std::thread::spawn(move || {
            // Workers publish when they next look at the epoch.
            for _ in 0..1000 {
                w0.maybe_publish();
                w1.maybe_publish();
                std::thread::sleep(Duration::from_micros(100));
            }
            (w0, w1)
        });
        let mut total = hub.new_data();
        h.collect(&mut total, Duration::from_secs(2));
        assert_eq!(total.success(), 1);
        assert_eq!(total.errors(), 1);
        let (mut w0, _w1) = t.join().unwrap();
        w0.record_success(0, 20, 20);
        w0.finish();
        let mut more = hub.new_data();
        hub.collect(&mut more, Duration::from_millis(10));
        assert_eq!(more.success(), 1);
    }
}
