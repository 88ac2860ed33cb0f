//! The run's configuration: one immutable, validated [`RunnerConfig`] built from layered sources.
//!
//! Precedence, highest first: CLI flag > process environment > `.env` in the working directory >
//! `--config-file` (YAML or JSON) > the chosen workload profile > built-in default. Only values a
//! user actually set override a profile. Every field is described once in [`fields`]; the CLI,
//! environment, `.env`, config-file keys, `--show-config` and `.env.example` all come from that
//! table. This module does not connect to anything: all validation happens before the first
//! connection.

pub mod fields;
pub mod load;
pub mod parse;
pub mod profile;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::command::Command;

pub use load::{
    CliAction, builtin_config, load_from_args, render_show_config, render_yaml, save_config,
};
pub use parse::ConfigError;
pub use profile::{PROFILES, Profile, describe_profile, list_profiles};

/// Where a resolved value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Default,
    Profile,
    File,
    DotEnv,
    Env,
    Cli,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::Profile => "profile",
            Source::File => "file",
            Source::DotEnv => ".env",
            Source::Env => "env",
            Source::Cli => "cli",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A secret string (password). Never printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The real value, for the one place that needs it: the AUTH/HELLO handshake.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// RESP protocol version negotiated on worker connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Resp2,
    Resp3,
}

/// Connection settings shared by the data plane and the control plane.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub db: u32,
    pub protocol: Protocol,
    /// CLIENT SETNAME of connections (workers append `-w<n>`).
    pub client_name: String,
    /// TCP keepalive idle time; `None`: off.
    pub tcp_keepalive: Option<Duration>,
    /// `None`: plain TCP.
    pub tls: Option<crate::client::TlsConfig>,
    /// Read/write timeout on every socket.
    pub socket_timeout: Duration,
    pub connect_timeout: Duration,
    /// How workers reconnect after losing their connection.
    pub retry: RetryPolicy,
    /// Most connections one client instance holds (`--max-connections`).
    pub max_connections: u32,
    /// PING a connection idle this long before using it; `None`: off.
    pub health_check_interval: Option<Duration>,
    /// Set: the master is found through these sentinels (see `client::sentinel`).
    pub sentinel: Option<SentinelConfig>,
    /// Set: Redis Cluster mode (see `client::cluster`).
    pub cluster: Option<ClusterConfig>,
}

impl RedisConfig {
    /// Where the run connects, for messages: `host:port`, or in Sentinel mode the master's
    /// name and the sentinels asked for it.
    pub fn endpoint(&self) -> String {
        if let Some(c) = &self.cluster {
            let nodes: Vec<String> = c.nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect();
            return format!("cluster nodes {}", nodes.join(","));
        }
        match &self.sentinel {
            None => format!("{}:{}", self.host, self.port),
            Some(s) => {
                let nodes: Vec<String> = s.nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect();
                format!("master '{}' via sentinels {}", s.master, nodes.join(","))
            }
        }
    }
}

/// Cluster mode: where to learn the slot map, and where reads go.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `(host, port)` of the seed nodes, asked in this order.
    pub nodes: Vec<(String, u16)>,
    /// Read-only commands go to a replica of their slot.
    pub read_from_replicas: bool,
}

/// Sentinel mode: where to ask for the master's address.
#[derive(Debug, Clone)]
pub struct SentinelConfig {
    /// `(host, port)` of each sentinel, asked in this order.
    pub nodes: Vec<(String, u16)>,
    /// The monitored master's name (`sentinel monitor <name> ...`).
    pub master: String,
    /// ACL user for `AUTH <user> <password>`; `None`: `AUTH <password>` (the default user).
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// TLS to the sentinels (`redis.sentinel_tls`): the data plane's settings. `None`: plain TCP.
    pub tls: Option<crate::client::TlsConfig>,
}

/// Reconnect backoff with full jitter: before reconnect attempt n (from 0) a worker waits a
/// random time in `[0, min(backoff_cap, backoff_base * 2^n)]` (see `client::backoff`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Failed attempts in a row after which a worker gives up for the rest of the run;
    /// 0 = never.
    pub attempts: u32,
}

impl Default for RetryPolicy {
    /// The built-in defaults of the `redis.retry_*` fields.
    fn default() -> Self {
        RetryPolicy {
            backoff_base: Duration::from_millis(10),
            backoff_cap: Duration::from_secs(1),
            attempts: 0,
        }
    }
}

/// How much load, for how long.
#[derive(Debug, Clone)]
pub struct TestConfig {
    pub clients: u32,
    pub threads_per_client: u32,
    /// OS threads driving the request/reply workers; `None`: the available cores.
    pub io_threads: Option<u32>,
    /// `None`: run until Ctrl-C / SIGTERM.
    pub duration: Option<Duration>,
    /// `None`: closed loop, as fast as possible. `Some(r)`: open loop, r commands/s in total.
    pub target_ops_per_second: Option<f64>,
    /// Makes key, value and command sequences reproducible.
    pub seed: Option<u64>,
}

impl TestConfig {
    pub fn workers(&self) -> usize {
        self.clients as usize * self.threads_per_client as usize
    }

    /// How many I/O threads `workers` request/reply workers get: `--io-threads`, or the
    /// available cores, never more than the workers.
    pub fn io_threads_for(&self, workers: usize) -> usize {
        let wanted = self.io_threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            |n| n as usize,
        );
        wanted.min(workers).max(1)
    }
}

/// The workload implementation a profile (or a custom mix) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    /// Weighted mix of commands over one key space per data type.
    BasicRw,
    /// Weighted mix of list commands (LPUSH/LRANGE/LPOP...), lists capped in length.
    ListOperations,
    /// Weighted mix of hash commands (HSET/HGET/HDEL...) over a set of fields per key.
    HashOperations,
    /// MULTI/EXEC transactions of `transaction_size` commands, optionally WATCHed.
    TransactionTest,
    /// Publishers PUBLISH to channels that subscribers (P)SUBSCRIBE to.
    PubsubTest,
    /// Request/reply over streams with a consumer group (`stream_consumers`).
    StreamRequestReply,
    /// Weighted mix of stream commands (XADD/XREAD/XRANGE/XLEN...).
    StreamOperations,
    /// INCR on counters (the `increment_check` profile).
    IncrementCheck,
    /// User command templates (`--command`), chosen by `--command-weight`.
    Template,
}

impl WorkloadKind {
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::BasicRw => "basic_rw",
            WorkloadKind::ListOperations => "list_operations",
            WorkloadKind::HashOperations => "hash_operations",
            WorkloadKind::TransactionTest => "transaction_test",
            WorkloadKind::PubsubTest => "pubsub_test",
            WorkloadKind::StreamRequestReply => "stream_request_reply",
            WorkloadKind::StreamOperations => "stream_operations",
            WorkloadKind::IncrementCheck => "increment_check",
            WorkloadKind::Template => "template",
        }
    }

    /// Whether the workload sends the `workload.operations` mix. The others run commands of
    /// their own and ignore it.
    pub fn uses_operations(self) -> bool {
        matches!(
            self,
            WorkloadKind::BasicRw
                | WorkloadKind::ListOperations
                | WorkloadKind::HashOperations
                | WorkloadKind::StreamOperations
                | WorkloadKind::IncrementCheck
        )
    }

    /// Whether `cmd` may be in this workload's operations: any mixable command in the mix
    /// workloads, INCR only in increment_check, anything in the workloads that ignore
    /// operations.
    pub fn allows(self, cmd: Command) -> bool {
        match self {
            // One mix engine runs these four: every mixable command works in each.
            WorkloadKind::BasicRw
            | WorkloadKind::ListOperations
            | WorkloadKind::HashOperations
            | WorkloadKind::StreamOperations => true,
            WorkloadKind::IncrementCheck => cmd == Command::Incr,
            WorkloadKind::TransactionTest
            | WorkloadKind::PubsubTest
            | WorkloadKind::StreamRequestReply
            | WorkloadKind::Template => true,
        }
    }

    /// What [`WorkloadKind::allows`] accepts, for error messages.
    pub fn allowed_operations(self) -> &'static str {
        match self {
            WorkloadKind::BasicRw
            | WorkloadKind::ListOperations
            | WorkloadKind::HashOperations
            | WorkloadKind::StreamOperations => "any mixable command",
            WorkloadKind::IncrementCheck => "only INCR",
            WorkloadKind::TransactionTest
            | WorkloadKind::PubsubTest
            | WorkloadKind::StreamRequestReply
            | WorkloadKind::Template => "any command (the workload ignores operations)",
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Value sizes in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSize {
    Fixed(usize),
    /// Uniform in `min..=max`.
    Range {
        min: usize,
        max: usize,
    },
    /// `(size, weight)` pairs: each value has one of the sizes, with probability
    /// weight / sum of weights. At least one pair; sizes >= 1 and distinct, weights >= 1.
    Weighted(Vec<(usize, u32)>),
}

impl ValueSize {
    /// The largest size a value can have.
    pub fn max(&self) -> usize {
        match self {
            ValueSize::Fixed(n) => *n,
            ValueSize::Range { max, .. } => *max,
            ValueSize::Weighted(pairs) => pairs.iter().map(|&(size, _)| size).max().unwrap_or(0),
        }
    }
}

/// How key numbers are drawn from `key_min..key_min + key_range`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyDistribution {
    /// Every key equally likely.
    Uniform,
    /// Each worker walks the range in order, wrapping around.
    Sequential,
    /// Normal around the middle of the range; `stddev` is a fraction of `key_range`
    /// (0 < stddev <= 10).
    Gaussian { stddev: f64 },
    /// Zipf over the range: rank k has probability proportional to 1 / k^exponent
    /// (0 < exponent <= 5).
    Zipf { exponent: f64 },
}

impl KeyDistribution {
    /// Gaussian standard deviation when none is given, as a fraction of the key range.
    pub const DEFAULT_STDDEV: f64 = 0.15;
    /// Zipf exponent when none is given.
    pub const DEFAULT_EXPONENT: f64 = 0.99;
}

/// `uniform`, `sequential`, `gaussian:STDDEV` or `zipf:EXPONENT` (the text the parser reads).
impl fmt::Display for KeyDistribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyDistribution::Uniform => f.write_str("uniform"),
            KeyDistribution::Sequential => f.write_str("sequential"),
            KeyDistribution::Gaussian { stddev } => write!(f, "gaussian:{stddev}"),
            KeyDistribution::Zipf { exponent } => write!(f, "zipf:{exponent}"),
        }
    }
}

/// One `--command` template.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandTemplate {
    /// The template as the user wrote it (trimmed).
    pub text: String,
    /// The arguments, command name first, with double quotes removed and placeholders
    /// (`__key__`, `__data__`, `__field__`, `__rand_int__`) still in them.
    pub args: Vec<String>,
    /// Relative weight, > 0 (1 unless `--command-weight` says otherwise).
    pub weight: f64,
}

/// What commands to send, on which keys, with which values.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Profile name (also the report's `workload_name`).
    pub profile: String,
    /// The profile's workload, or [`WorkloadKind::Template`] when `commands` is not empty.
    pub kind: WorkloadKind,
    /// Commands and their relative weights (all > 0), each allowed by `kind`. At least one
    /// when `kind` [uses operations](WorkloadKind::uses_operations); otherwise what was set,
    /// possibly nothing.
    pub operations: Vec<(Command, f64)>,
    /// `--command` templates with their weights; not empty exactly when `kind` is `Template`.
    pub commands: Vec<CommandTemplate>,
    pub key_prefix: String,
    /// Keys are `{prefix}:{n}` for n in `key_min..key_min + key_range` (no overflow).
    pub key_min: u64,
    pub key_range: u64,
    pub key_distribution: KeyDistribution,
    /// Group keys under hash tags so multi-key commands and transactions stay in one slot.
    pub hash_tag: bool,
    pub value_size: ValueSize,
    /// TTL of written keys, uniform in `min..=max` seconds (1 <= min <= max).
    pub expiry_range: Option<(u64, u64)>,
    pub use_pipeline: bool,
    pub pipeline_size: usize,
    /// Write every key in the range before measuring.
    pub prefill: bool,
    /// Load before measuring, excluded from the results.
    pub warmup: Option<Duration>,
    /// Lists are kept to about this many elements (>= 1).
    pub list_max_length: u64,
    /// Fields per hash key (1..=100000).
    pub hash_fields: u32,
    /// Commands inside each MULTI/EXEC (1..=10000).
    pub transaction_size: u32,
    /// WATCH the transaction's keys before MULTI.
    pub watch: bool,
    /// Mix workloads with SET: stamp SETs with (worker, sequence), check GETs against the
    /// acknowledged writes and read every acknowledged key back after the run.
    pub verify_writes: bool,
    /// Publishing connections (>= 1).
    pub publishers: u32,
    /// Subscribing connections; >= 1 for pubsub_test.
    pub subscribers: u32,
    /// Channel names, distinct, at least one.
    pub pubsub_channels: Vec<String>,
    /// Subscribers use PSUBSCRIBE with patterns matching the channels.
    pub psubscribe: bool,
    /// Consumers in the stream consumer group (>= 1).
    pub stream_consumers: u32,
    /// Simulated work per consumed stream entry (may be zero).
    pub processing_time: Duration,
    /// Streams are trimmed to about this many entries (>= 1).
    pub stream_max_length: u64,
}

/// The built-in defaults under the default profile (see [`builtin_config`]).
impl Default for WorkloadConfig {
    fn default() -> Self {
        builtin_config().workload
    }
}

impl WorkloadConfig {
    /// Commands per batch written with one write: the pipeline size, or 1 without pipelining.
    pub fn batch_size(&self) -> usize {
        if self.use_pipeline {
            self.pipeline_size
        } else {
            1
        }
    }
}

/// Metrics, console, JSON and logging.
/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct OutputConfig {
    pub metrics_interval: Duration,
    pub output_file: Option<PathBuf>,
    pub quiet: bool,
    /// A tracing level name: error, warn, info, debug, trace.
    pub log_level: String,
    pub log_file: Option<PathBuf>,
    pub log_format: LogFormat,
    /// Where to serve the Prometheus `/metrics` endpoint (`host`, `port`); `None`: off.
    pub prometheus_listen: Option<(String, u16)>,
    /// How long the endpoint may wait after the run for a scrape of the final values.
    pub prometheus_linger: Duration,
    /// OTLP metrics export; `None`: off (no endpoint set).
    pub otlp: Option<OtlpConfig>,
}

/// Where and how to push metrics over OTLP.
#[derive(Clone, PartialEq)]
pub struct OtlpConfig {
    /// The collector's base URL (`http://host:port`, maybe with a path), without a trailing `/`.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// Exports happen at most this often; the final values are always sent at exit.
    pub export_interval: Duration,
    /// The resource's `service.name`.
    pub service_name: String,
    /// The fraction of commands exported as spans.
    pub trace_sample_rate: f64,
    /// Sent with every export (secret: may carry credentials).
    pub headers: Vec<(String, String)>,
    /// PEM CA certificate(s) to trust for an `https://` endpoint; `None`: the system's roots.
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for OtlpConfig {
    /// Header values may be credentials: only their names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpConfig")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("export_interval", &self.export_interval)
            .field("service_name", &self.service_name)
            .field("trace_sample_rate", &self.trace_sample_rate)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .finish()
    }
}

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    /// HTTP/protobuf, POSTed to `<endpoint>/v1/metrics`.
    Http,
}

/// Labels that identify this run in reports and telemetry.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub app_name: String,
    pub instance_id: String,
    pub run_id: String,
    pub version: String,
}

/// The resolved configuration of one run.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub redis: RedisConfig,
    pub test: TestConfig,
    pub workload: WorkloadConfig,
    pub output: OutputConfig,
    pub identity: IdentityConfig,
    /// For each field key (`section.name`), the winning source and the value as text
    /// (secrets already redacted). Used by `--show-config`, `--save-config` and the JSON report.
    pub resolved: BTreeMap<&'static str, (String, Source)>,
}

impl RunnerConfig {
    /// The resolved config as a nested JSON object (`{section: {name: value}}`), secrets redacted.
    pub fn redacted_json(&self) -> serde_json::Value {
        fields::to_nested_json(&self.resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [WorkloadKind; 9] = [
        WorkloadKind::BasicRw,
        WorkloadKind::ListOperations,
        WorkloadKind::HashOperations,
        WorkloadKind::TransactionTest,
        WorkloadKind::PubsubTest,
        WorkloadKind::StreamRequestReply,
        WorkloadKind::StreamOperations,
        WorkloadKind::IncrementCheck,
        WorkloadKind::Template,
    ];

    #[test]
    fn kind_names_are_distinct_snake_case() {
        for (i, k) in KINDS.iter().enumerate() {
            assert!(KINDS[..i].iter().all(|o| o.name() != k.name()), "{k}");
            assert!(k.name().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert_eq!(k.to_string(), k.name());
        }
    }

    #[test]
    fn kinds_allow_their_operations() {
        for &c in Command::ALL.iter() {
            for k in [
                WorkloadKind::BasicRw,
                WorkloadKind::ListOperations,
                WorkloadKind::HashOperations,
                WorkloadKind::StreamOperations,
            ] {
                assert!(k.allows(c), "{k} {c}");
            }
            assert_eq!(WorkloadKind::IncrementCheck.allows(c), c == Command::Incr);
            for k in [
                WorkloadKind::TransactionTest,
                WorkloadKind::PubsubTest,
                WorkloadKind::StreamRequestReply,
                WorkloadKind::Template,
            ] {
                assert!(k.allows(c) && !k.uses_operations(), "{k} {c}");
            }
        }
        assert!(WorkloadKind::BasicRw.allows(Command::Set));
        assert!(WorkloadKind::BasicRw.uses_operations());
        assert!(WorkloadKind::IncrementCheck.uses_operations());
    }

    #[test]
    fn value_size_max_covers_every_form() {
        assert_eq!(ValueSize::Fixed(7).max(), 7);
        assert_eq!(ValueSize::Range { min: 1, max: 9 }.max(), 9);
        assert_eq!(
            ValueSize::Weighted(vec![(32, 9), (1024, 1), (100, 5)]).max(),
            1024
        );
    }

    #[test]
    fn workload_default_is_the_built_in_config() {
        let w = WorkloadConfig::default();
        assert_eq!(w.profile, "basic_rw");
        assert_eq!(w.kind, WorkloadKind::BasicRw);
        assert_eq!(w.value_size, ValueSize::Fixed(100));
        assert_eq!(w.key_distribution, KeyDistribution::Uniform);
        assert!(w.commands.is_empty());
        assert_eq!(w.pubsub_channels, vec!["test_channel"]);
    }
}
