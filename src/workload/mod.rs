//! Workloads: what commands workers send, on which keys, with which values, and what a reply
//! means.
//!
//! One trait, [`Workload`], and one file per workload. A workload encodes its next unit of work
//! (one command, or several such as MULTI..EXEC) straight into the connection's request buffer
//! and, per reply, tells a [`Recorder`] what happened: no allocation, no formatting per
//! command. Workers whose job is not request/reply (a pub/sub subscriber, a stream processor)
//! are types of their own that an I/O thread drives ([`WorkerTask`]). Not here: sending,
//! timing and the metrics plumbing (the runner does that, the same way for every workload).

pub mod cluster_io;
pub mod increment_check;
pub mod keys;
pub mod mix;
pub mod prefill;
pub mod pubsub;
pub mod pubsub_subscriber;
pub mod stream_request_reply;
pub mod template;
pub mod transaction;
pub mod verify_writes;

use std::any::Any;
use std::sync::Arc;

use rand_xoshiro::Xoshiro256PlusPlus;

use crate::client::cluster::ClusterWatch;
use crate::client::sentinel::MasterWatch;
use crate::config::{RunnerConfig, WorkloadKind};
use crate::error::ErrorClass;
use crate::metrics::{OpId, OpTable, ShardWriter};
use crate::output::report::RunReport;
use crate::proto::{Reply, ReplyKind};

/// Each worker's own random source (seeded per worker for reproducible runs).
pub type WorkerRng = Xoshiro256PlusPlus;

/// How a reply is recorded: the worker fills in the timing, the workload says what it meant.
pub struct Recorder<'a> {
    pub(crate) metrics: &'a mut ShardWriter,
    pub(crate) latency_ns: u64,
    pub(crate) service_ns: u64,
    /// Set when this reply was recorded as an error (the worker backs off after a batch of
    /// nothing but errors).
    pub(crate) failed: bool,
    /// The position in the batch's `sent` list of the command this reply answers. Workloads
    /// that keep per-command state (`--verify-writes`) look it up by this rather than by
    /// counting replies, so a batch split over connections, or a command sent again after a
    /// redirect, still finds its own entry.
    pub(crate) command: usize,
}

impl Recorder<'_> {
    /// The operation succeeded.
    #[inline]
    pub fn success(&mut self, op: OpId) {
        self.metrics
            .record_success(op, self.latency_ns, self.service_ns);
    }

    /// A read succeeded and found something (`hit`) or nothing.
    #[inline]
    pub fn lookup(&mut self, op: OpId, hit: bool) {
        self.success(op);
        self.metrics.data().record_lookup(op, hit);
    }

    /// The operation failed with `class`.
    #[inline]
    pub fn error(&mut self, op: OpId, class: ErrorClass) {
        self.failed = true;
        self.metrics.record_error(op, class);
    }

    /// Adds `n` to the workload's counter `index`.
    #[inline]
    pub fn count(&mut self, index: usize, n: u64) {
        self.metrics.data().count(index, n);
    }

    /// The position of the command this reply answers in the `sent` list its unit pushed to
    /// (`sent.len()` when the workload encoded it).
    #[inline]
    pub fn command_index(&self) -> usize {
        self.command
    }

    /// Latency of this reply from the unit's (intended) start, in nanoseconds.
    #[inline]
    pub fn latency_ns(&self) -> u64 {
        self.latency_ns
    }

    /// The usual reading of a reply: an error reply is an error of its class, anything else a
    /// success.
    #[inline]
    pub fn standard(&mut self, op: OpId, reply: &Reply, payload: &[u8]) {
        if reply.kind == ReplyKind::Error {
            self.error(op, ErrorClass::from_error_reply(payload));
        } else {
            self.success(op);
        }
    }
}

/// A generator of request/reply work for one worker.
pub trait Workload: Send {
    /// Appends the next unit of work to `out` and pushes, in order, the operation of every
    /// command it encoded (one reply is read per entry).
    fn encode_next(&mut self, rng: &mut WorkerRng, out: &mut Vec<u8>, sent: &mut Vec<OpId>);

    /// Records what a reply means. The default: error replies by class, the rest successes.
    #[inline]
    fn on_reply(&mut self, op: OpId, reply: &Reply, payload: &[u8], rec: &mut Recorder<'_>) {
        rec.standard(op, reply, payload);
    }

    /// The connection failed before the batch's remaining replies came. The worker has
    /// already counted every command whose reply was still due as an error of `class`; a
    /// workload that deferred counting answered commands (transactions count queued commands
    /// at EXEC) counts those now.
    fn on_connection_lost(&mut self, class: ErrorClass, metrics: &mut ShardWriter) {
        let _ = (class, metrics);
    }

    /// The worker sends nothing more and no reply is outstanding (the run stopped, or it gave
    /// up reconnecting). Called once; the worker may live on a while (its thread drives
    /// others).
    fn stopped(&mut self) {}
}

/// What one worker does.
pub enum WorkerTask {
    /// The standard loop: batches of units, replies read and timed in order.
    Requests(Box<dyn Workload>),
    /// A pub/sub subscriber, driven by an I/O thread.
    Subscriber(Box<pubsub_subscriber::Subscriber>),
    /// A stream processor, driven by an I/O thread.
    Processor(Box<stream_request_reply::processor::Processor>),
}

/// The shape of a run, made once per run by [`plan`]: its operation and counter tables, how
/// many workers it needs, and any state its workers share (touched once per run, never per
/// command: e.g. pub/sub's clock anchor and publishers' final counts).
#[derive(Clone)]
pub struct RunPlan {
    pub ops: OpTable,
    pub counters: OpTable,
    pub workers: usize,
    /// Workers that send on a schedule: `--target-ops-per-second` is shared among these only
    /// (publishers and ingress workers; subscribers and processors take the load they get).
    pub paced_workers: usize,
    pub shared: Option<Arc<dyn Any + Send + Sync>>,
    /// Sentinel mode: the run's master watcher (set by the runner), shared by every worker.
    pub master_watch: Option<Arc<MasterWatch>>,
    /// Cluster mode: the run's slot-map watcher (set by the runner), shared by every worker.
    pub cluster_watch: Option<Arc<ClusterWatch>>,
}

impl RunPlan {
    /// A plan of `workers` request/reply workers, all paced, sharing nothing.
    pub fn request_reply(ops: OpTable, counters: OpTable, workers: usize) -> Self {
        RunPlan {
            ops,
            counters,
            workers,
            paced_workers: workers,
            shared: None,
            master_watch: None,
            cluster_watch: None,
        }
    }

    /// The run's shared state as `T` (as the workload's own `plan` made it).
    pub fn shared<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.shared.clone()?.downcast::<T>().ok()
    }
}

/// Operations that are not Redis commands but figures derived from them (a pub/sub message's
/// delivery, a stream request's reply). They have their own histograms and counts but are left
/// out of the run's command totals and throughput, and the server has no count for them.
pub const DERIVED_OPS: &[&str] = &["RECEIVE", "REQUEST_REPLY"];

/// The plan of the configured workload (call once per run: it creates the shared state).
pub fn plan(cfg: &RunnerConfig) -> RunPlan {
    let request_reply =
        |ops: OpTable| RunPlan::request_reply(ops, Vec::new().into(), cfg.test.workers());
    match cfg.workload.kind {
        WorkloadKind::BasicRw
        | WorkloadKind::ListOperations
        | WorkloadKind::HashOperations
        | WorkloadKind::StreamOperations => {
            let ops = mix::op_table(&cfg.workload);
            if !cfg.workload.verify_writes {
                return request_reply(ops);
            }
            let counters = verify_writes::COUNTERS.map(String::from).to_vec();
            let mut plan = RunPlan::request_reply(ops, counters.into(), cfg.test.workers());
            plan.shared = Some(verify_writes::shared());
            plan
        }
        WorkloadKind::Template => request_reply(template::op_table(&cfg.workload)),
        WorkloadKind::TransactionTest => RunPlan::request_reply(
            transaction::op_table(&cfg.workload),
            transaction::counter_table(),
            cfg.test.workers(),
        ),
        WorkloadKind::IncrementCheck => request_reply(increment_check::op_table()),
        WorkloadKind::PubsubTest => pubsub::plan(cfg),
        WorkloadKind::StreamRequestReply => stream_request_reply::plan(cfg),
    }
}

/// The names of the workload's gauges (values sampled during the run, reported per interval),
/// indexed like `IntervalData::gauges`; at most `metrics::data::MAX_GAUGES`.
pub fn gauge_names(cfg: &RunnerConfig) -> &'static [&'static str] {
    match cfg.workload.kind {
        WorkloadKind::StreamRequestReply => stream_request_reply::GAUGES,
        _ => &[],
    }
}

/// Checks a workload makes after its run (e.g. increment_check compares counters with
/// acknowledged increments, `--verify-writes` reads acknowledged writes back), for the
/// report's `checks`. `plan` is the run's plan, with the state its workers handed in.
pub fn verify(cfg: &RunnerConfig, plan: &RunPlan, report: &RunReport) -> Option<serde_json::Value> {
    match cfg.workload.kind {
        WorkloadKind::IncrementCheck => Some(increment_check::verify(cfg, plan, report)),
        WorkloadKind::StreamRequestReply => Some(stream_request_reply::verify(cfg, report)),
        _ if cfg.workload.verify_writes => Some(verify_writes::verify(cfg, plan, report)),
        _ => None,
    }
}

/// Builds what worker `index` of `plan.workers` runs.
pub fn build(cfg: &RunnerConfig, plan: &RunPlan, index: usize, rng: &mut WorkerRng) -> WorkerTask {
    let workers = plan.workers;
    let w = &cfg.workload;
    match w.kind {
        WorkloadKind::Template => {
            WorkerTask::Requests(Box::new(template::Template::new(w, index, workers, rng)))
        }
        WorkloadKind::TransactionTest => WorkerTask::Requests(Box::new(
            transaction::Transaction::new(w, index, workers, rng),
        )),
        WorkloadKind::IncrementCheck => WorkerTask::Requests(Box::new(
            increment_check::IncrementCheck::new(cfg, index, workers),
        )),
        WorkloadKind::PubsubTest => pubsub::build(cfg, plan, index, rng),
        WorkloadKind::StreamRequestReply => stream_request_reply::build(cfg, index, rng),
        _ => {
            let mix = mix::Mix::new(w, index, workers, rng);
            let mix = match plan.shared::<verify_writes::Shared>() {
                Some(shared) if w.verify_writes => mix.verifying(w, index, shared),
                _ => mix,
            };
            WorkerTask::Requests(Box::new(mix))
        }
    }
}
