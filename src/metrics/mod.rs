//! Lock-sharded metrics: one shard per worker, swapped out by the reporter every interval.
//!
//! A worker records into its own [`IntervalData`] with no lock or atomic per command. When the
//! reporter starts a new interval it bumps an epoch; each worker notices between batches, adds
//! its data into its shard's slot (a mutex only it and the reporter ever take, once per interval)
//! and starts afresh. The reporter merges the slots. Histograms are HDR, in nanoseconds, three
//! significant digits, up to an hour; larger values are counted as overflows, never clamped.

pub mod data;
pub mod hub;
pub mod outage;
pub mod summary;
pub mod trace;

pub use data::{CommandStats, ConnStats, IntervalData, OpId, OpTable, new_histogram};
pub use hub::{MetricsHub, ShardWriter};
pub use summary::LatencySummary;
