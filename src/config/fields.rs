//! The one table of every configuration field.
//!
//! Each row names the field's config-file key, CLI flag, environment variable, built-in default
//! and help text. The CLI parser, the environment and `.env` readers, the config-file walker,
//! `--show-config`, `--save-config`, the JSON report and `.env.example` are all generated from
//! [`FIELDS`], so a field added here shows up everywhere and names cannot drift apart.

use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};

use super::Source;
use super::parse::{parse_weights_text, split_templates};

/// How a field's value is typed when it leaves the text world (JSON report, saved YAML).
///
/// Parsing and validation are per field (ranges differ); this only decides the JSON shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    /// Unsigned integer.
    Int,
    Float,
    /// A duration; resolved text is in seconds, so it is a JSON number.
    Duration,
    Bool,
    /// Comma-separated list (a YAML/JSON list in config files).
    List,
    /// Comma-separated numbers (a YAML/JSON list of numbers in config files).
    Numbers,
    /// `;`-separated command templates (a YAML/JSON list of strings in config files); `;`
    /// inside double quotes does not separate.
    Templates,
    /// `{"NAME": number}` (a YAML/JSON mapping in config files).
    Map,
}

/// One configuration field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// `section.name`, as in the config file.
    pub key: &'static str,
    /// Long CLI flag without the leading `--`.
    pub flag: &'static str,
    /// Environment / `.env` variable.
    pub env: &'static str,
    /// Built-in default as text; `None` means "not set".
    pub default: Option<&'static str>,
    /// Never printed: redacted in errors, `--show-config`, the report; omitted from saved YAML.
    pub secret: bool,
    /// One-line help without a trailing period (the default is appended where shown).
    pub help: &'static str,
    /// A boolean flag: `--quiet` alone means true.
    pub is_bool: bool,
    /// The CLI flag may be given several times, one item each (`--command A --command B`);
    /// the items are joined with the kind's separator (see [`FieldSpec::separator`]).
    pub repeatable: bool,
    /// JSON/YAML shape of the value.
    pub kind: Kind,
}

impl FieldSpec {
    /// The section part of the key (`redis` for `redis.host`).
    pub fn section(&self) -> &'static str {
        self.key.split_once('.').map_or(self.key, |(s, _)| s)
    }

    /// The name part of the key (`host` for `redis.host`).
    pub fn name(&self) -> &'static str {
        self.key.split_once('.').map_or(self.key, |(_, n)| n)
    }

    /// How list items are joined into one text (repeated flags, config-file lists).
    pub fn separator(&self) -> &'static str {
        match self.kind {
            Kind::Templates => "; ",
            _ => ",",
        }
    }
}

/// Config-file sections, in display order.
pub const SECTIONS: &[&str] = &["redis", "test", "workload", "output", "identity"];

/// Shorthand for the table rows below: most fields are neither secret nor boolean.
const fn field(
    key: &'static str,
    flag: &'static str,
    env: &'static str,
    default: Option<&'static str>,
    kind: Kind,
    help: &'static str,
) -> FieldSpec {
    FieldSpec {
        key,
        flag,
        env,
        default,
        secret: false,
        help,
        is_bool: matches!(kind, Kind::Bool),
        repeatable: false,
        kind,
    }
}

/// Every configuration field, grouped by section in [`SECTIONS`] order.
pub static FIELDS: &[FieldSpec] = &[
    // --- redis ---
    field(
        "redis.host",
        "host",
        "REDIS_HOST",
        Some("localhost"),
        Kind::Str,
        "Redis server host name or IP address",
    ),
    field(
        "redis.port",
        "port",
        "REDIS_PORT",
        Some("6379"),
        Kind::Int,
        "Redis server port (1-65535)",
    ),
    field(
        "redis.username",
        "username",
        "REDIS_USERNAME",
        None,
        Kind::Str,
        "ACL user name for AUTH; not set: the default user",
    ),
    FieldSpec {
        secret: true,
        ..field(
            "redis.password",
            "password",
            "REDIS_PASSWORD",
            None,
            Kind::Str,
            "Password for AUTH; a secret, never printed or saved",
        )
    },
    FieldSpec {
        secret: true,
        ..field(
            "redis.url",
            "url",
            "REDIS_URL",
            None,
            Kind::Str,
            "Server as redis[s]://[user[:password]@]host[:port][/db]; fills host, port, username, password, db and tls unless those are set at a higher-precedence layer; a secret (its parts show in their own rows)",
        )
    },
    field(
        "redis.db",
        "db",
        "REDIS_DB",
        Some("0"),
        Kind::Int,
        "Database number to SELECT",
    ),
    field(
        "redis.protocol",
        "protocol",
        "REDIS_PROTOCOL",
        Some("3"),
        Kind::Int,
        "RESP protocol version: 2 or 3",
    ),
    field(
        "redis.client_name",
        "client-name",
        "REDIS_CLIENT_NAME",
        None,
        Kind::Str,
        "CLIENT SETNAME of every connection; workers append -w<n>; not set: redis-loadgen-<instance_id>",
    ),
    field(
        "redis.tcp_keepalive",
        "tcp-keepalive",
        "REDIS_TCP_KEEPALIVE",
        Some("30"),
        Kind::Duration,
        "TCP keepalive idle time in seconds; 0: off",
    ),
    field(
        "redis.tls",
        "tls",
        "REDIS_SSL_ENABLED",
        Some("false"),
        Kind::Bool,
        "Connect with TLS (rustls); trusts the CA file if given, else the system roots",
    ),
    field(
        "redis.tls_ca_file",
        "tls-ca-file",
        "REDIS_SSL_CA_CERTS",
        None,
        Kind::Str,
        "PEM file of CA certificates to trust; not set: the system roots",
    ),
    field(
        "redis.tls_cert_file",
        "tls-cert-file",
        "REDIS_SSL_CERTFILE",
        None,
        Kind::Str,
        "PEM client certificate (chain) for mutual TLS; needs --tls-key-file",
    ),
    field(
        "redis.tls_key_file",
        "tls-key-file",
        "REDIS_SSL_KEYFILE",
        None,
        Kind::Str,
        "PEM private key of the client certificate; needs --tls-cert-file",
    ),
    field(
        "redis.tls_check_hostname",
        "tls-check-hostname",
        "REDIS_SSL_CHECK_HOSTNAME",
        Some("true"),
        Kind::Bool,
        "Check that the server certificate names the host connected to",
    ),
    field(
        "redis.tls_insecure",
        "tls-insecure",
        "REDIS_TLS_INSECURE",
        Some("false"),
        Kind::Bool,
        "Accept any server certificate (no verification at all; for tests only)",
    ),
    field(
        "redis.tls_cert_reqs",
        "tls-cert-reqs",
        "REDIS_SSL_CERT_REQS",
        Some("required"),
        Kind::Str,
        "Server certificate requirement: required, or none (= --tls-insecure)",
    ),
    field(
        "redis.socket_timeout",
        "socket-timeout",
        "REDIS_SOCKET_TIMEOUT",
        Some("5.0"),
        Kind::Duration,
        "Read/write timeout of every socket, in seconds (or a duration like 500ms)",
    ),
    field(
        "redis.connect_timeout",
        "connect-timeout",
        "REDIS_SOCKET_CONNECT_TIMEOUT",
        Some("5.0"),
        Kind::Duration,
        "Connect timeout, in seconds (or a duration like 500ms)",
    ),
    field(
        "redis.sentinel_nodes",
        "sentinel-nodes",
        "REDIS_SENTINEL_NODES",
        None,
        Kind::List,
        "Sentinel mode: comma-separated host:port of the sentinels, asked in order for the master's address (host/port are then ignored)",
    ),
    field(
        "redis.sentinel_master",
        "sentinel-master",
        "REDIS_SENTINEL_MASTER",
        Some("mymaster"),
        Kind::Str,
        "Sentinel mode: the monitored master's name",
    ),
    FieldSpec {
        secret: true,
        ..field(
            "redis.sentinel_password",
            "sentinel-password",
            "REDIS_SENTINEL_PASSWORD",
            None,
            Kind::Str,
            "Sentinel mode: password for AUTH on the sentinels; a secret, never printed or saved",
        )
    },
    field(
        "redis.sentinel_username",
        "sentinel-username",
        "REDIS_SENTINEL_USERNAME",
        None,
        Kind::Str,
        "Sentinel mode: ACL user name for AUTH on the sentinels (AUTH <user> <password>); needs --sentinel-password",
    ),
    field(
        "redis.sentinel_tls",
        "sentinel-tls",
        "REDIS_SENTINEL_TLS",
        Some("false"),
        Kind::Bool,
        "Sentinel mode: TLS to the sentinels, with the --tls settings (CA, client certificate, host name check); default: follows --tls",
    ),
    field(
        "redis.cluster",
        "cluster",
        "REDIS_CLUSTER",
        Some("false"),
        Kind::Bool,
        "Redis Cluster mode: learn the slot map from the nodes and route every command to the master of its key's slot",
    ),
    field(
        "redis.cluster_nodes",
        "cluster-nodes",
        "REDIS_CLUSTER_NODES",
        None,
        Kind::List,
        "Cluster mode: comma-separated host:port of nodes to learn the slot map from; not set: host:port",
    ),
    field(
        "redis.read_from_replicas",
        "read-from-replicas",
        "REDIS_READ_FROM_REPLICAS",
        Some("false"),
        Kind::Bool,
        "Cluster mode: send read-only commands to the replicas of their slot (READONLY), spread over the replicas",
    ),
    field(
        "redis.retry_backoff_base",
        "retry-backoff-base",
        "REDIS_RETRY_BACKOFF_BASE",
        Some("0.01"),
        Kind::Duration,
        "Reconnect backoff base: before attempt n a worker waits a random time in [0, min(cap, base x 2^n)]",
    ),
    field(
        "redis.retry_backoff_cap",
        "retry-backoff-cap",
        "REDIS_RETRY_BACKOFF_CAP",
        Some("1.0"),
        Kind::Duration,
        "Reconnect backoff cap: the longest wait between two reconnect attempts",
    ),
    field(
        "redis.retry_attempts",
        "retry-attempts",
        "REDIS_CLIENT_RETRY_ATTEMPTS",
        Some("0"),
        Kind::Int,
        "Failed reconnect attempts in a row after which a worker stops sending for the rest of the run; 0: never give up",
    ),
    field(
        "redis.max_connections",
        "max-connections",
        "REDIS_MAX_CONNECTIONS",
        Some("50"),
        Kind::Int,
        "Most connections one client instance's pool may hold; every worker owns its connection(s), so threads-per-client (x nodes in cluster mode) must fit",
    ),
    field(
        "redis.health_check_interval",
        "health-check-interval",
        "REDIS_HEALTH_CHECK_INTERVAL",
        Some("30"),
        Kind::Duration,
        "A connection idle this long (seconds or a duration) is checked with PING before its next command and replaced if dead; 0: off",
    ),
    // --- test ---
    field(
        "test.clients",
        "clients",
        "TEST_CLIENT_INSTANCES",
        Some("4"),
        Kind::Int,
        "Client instances; workers = clients x threads-per-client",
    ),
    field(
        "test.threads_per_client",
        "threads-per-client",
        "TEST_THREADS_PER_CLIENT",
        Some("10"),
        Kind::Int,
        "Workers per client, each a logical client with its own connection (at most 10000 workers in total)",
    ),
    field(
        "test.io_threads",
        "io-threads",
        "TEST_IO_THREADS",
        None,
        Kind::Int,
        "OS threads whose event loops drive the workers, many each (cluster workers still get a thread each; at most 256); not set: the machine's available cores",
    ),
    field(
        "test.duration",
        "duration",
        "TEST_DURATION",
        None,
        Kind::Duration,
        "Run length: seconds (30, 2.5), humantime (90s, 1m30s) or ISO-8601 (PT1M30S); not set: until Ctrl-C",
    ),
    field(
        "test.target_ops_per_second",
        "target-ops-per-second",
        "TEST_TARGET_OPS_PER_SECOND",
        None,
        Kind::Float,
        "Total target rate per second (open loop) of commands, or of transactions, requests or messages in those workloads; not set: as fast as possible",
    ),
    field(
        "test.seed",
        "seed",
        "TEST_SEED",
        None,
        Kind::Int,
        "RNG seed for reproducible keys, values and commands; not set: random",
    ),
    // --- workload ---
    field(
        "workload.profile",
        "workload-profile",
        "TEST_WORKLOAD_PROFILE",
        Some("basic_rw"),
        Kind::Str,
        "Workload profile (see list-profiles)",
    ),
    field(
        "workload.operations",
        "operations",
        "TEST_OPERATIONS",
        None,
        Kind::List,
        "Comma-separated commands to send, e.g. SET,GET,DEL (an unknown name lists every known one); not set: the profile's",
    ),
    field(
        "workload.operation_weights",
        "operation-weights",
        "TEST_OPERATION_WEIGHTS",
        None,
        Kind::Map,
        "Relative command weights: {\"SET\":0.4,\"GET\":0.6} or SET:0.4,GET:0.6; not set: the profile's",
    ),
    FieldSpec {
        repeatable: true,
        ..field(
            "workload.commands",
            "command",
            "TEST_COMMANDS",
            None,
            Kind::Templates,
            "Command template to run instead of the profile's workload, e.g. \"SET __key__ __data__\", one per --command (in the variable: separated by ;); placeholders __key__, __data__, __field__, __rand_int__; double quotes group an argument",
        )
    },
    FieldSpec {
        repeatable: true,
        ..field(
            "workload.command_weights",
            "command-weight",
            "TEST_COMMAND_WEIGHTS",
            None,
            Kind::Numbers,
            "Relative weight of each --command, in order, one per --command-weight (in the variable: comma-separated); not set: all 1",
        )
    },
    field(
        "workload.key_prefix",
        "key-prefix",
        "TEST_KEY_PREFIX",
        Some("test_key"),
        Kind::Str,
        "Key prefix; keys are <prefix>:<n>",
    ),
    field(
        "workload.key_min",
        "key-min",
        "TEST_KEY_MIN",
        Some("0"),
        Kind::Int,
        "Smallest key number (n in key-min..key-min+key-range)",
    ),
    field(
        "workload.key_range",
        "key-range",
        "TEST_KEY_RANGE",
        Some("10000"),
        Kind::Int,
        "Number of distinct keys (n in key-min..key-min+key-range)",
    ),
    field(
        "workload.key_distribution",
        "key-distribution",
        "TEST_KEY_DISTRIBUTION",
        Some("uniform"),
        Kind::Str,
        "How keys are picked: uniform, sequential, gaussian[:STDDEV] (a fraction of key-range, default 0.15, at most 10) or zipf[:EXPONENT] (default 0.99, at most 5)",
    ),
    field(
        "workload.hash_tag",
        "hash-tag",
        "TEST_HASH_TAG",
        Some("false"),
        Kind::Bool,
        "Put keys in hash-tag groups so multi-key commands and transactions stay in one cluster slot; default: on in cluster mode",
    ),
    field(
        "workload.value_size",
        "value-size",
        "TEST_VALUE_SIZE",
        None,
        Kind::Int,
        "Fixed value size in bytes; wins over value-size-min/max unless those are set at a higher precedence",
    ),
    field(
        "workload.value_size_min",
        "value-size-min",
        "TEST_VALUE_SIZE_MIN",
        Some("100"),
        Kind::Int,
        "Minimum value size in bytes (sizes are uniform in min..=max)",
    ),
    field(
        "workload.value_size_max",
        "value-size-max",
        "TEST_VALUE_SIZE_MAX",
        Some("1000"),
        Kind::Int,
        "Maximum value size in bytes (at most 512 MiB)",
    ),
    field(
        "workload.value_sizes",
        "value-sizes",
        "TEST_VALUE_SIZES",
        None,
        Kind::Str,
        "Weighted value sizes SIZE:WEIGHT,..., e.g. 32:9,1024:1; wins over value-size and value-size-min/max unless those are set at a higher precedence",
    ),
    field(
        "workload.expiry_range",
        "expiry-range",
        "TEST_EXPIRY_RANGE",
        None,
        Kind::Str,
        "Give written keys a TTL uniform in MIN-MAX seconds (SET ... EX)",
    ),
    field(
        "workload.use_pipeline",
        "use-pipeline",
        "TEST_USE_PIPELINE",
        Some("false"),
        Kind::Bool,
        "Send commands in pipelined batches",
    ),
    field(
        "workload.pipeline_size",
        "pipeline-size",
        "TEST_PIPELINE_SIZE",
        Some("10"),
        Kind::Int,
        "Commands per pipelined batch (1-100000)",
    ),
    field(
        "workload.prefill",
        "prefill",
        "TEST_PREFILL",
        Some("false"),
        Kind::Bool,
        "Write every key in the range before measuring so reads hit (reported apart as setup traffic)",
    ),
    field(
        "workload.warmup",
        "warmup",
        "TEST_WARMUP",
        None,
        Kind::Duration,
        "Run load for this long before measuring; excluded from the results",
    ),
    field(
        "workload.list_max_length",
        "list-max-length",
        "TEST_LIST_MAX_LENGTH",
        Some("1000"),
        Kind::Int,
        "list_operations: the most elements a list may hold",
    ),
    field(
        "workload.hash_fields",
        "hash-fields",
        "TEST_HASH_FIELDS",
        Some("10"),
        Kind::Int,
        "hash_operations: distinct fields per hash (1-100000)",
    ),
    field(
        "workload.transaction_size",
        "transaction-size",
        "TEST_TRANSACTION_SIZE",
        Some("5"),
        Kind::Int,
        "transaction_test: commands per MULTI/EXEC transaction (1-10000)",
    ),
    field(
        "workload.watch",
        "watch",
        "TEST_WATCH",
        Some("false"),
        Kind::Bool,
        "transaction_test: WATCH the transaction's keys first, so concurrent writers abort it",
    ),
    field(
        "workload.verify_writes",
        "verify-writes",
        "TEST_VERIFY_WRITES",
        Some("false"),
        Kind::Bool,
        "Mixes with SET: stamp writes, track acknowledged ones, read them back after the run and report lost writes and stale reads",
    ),
    field(
        "workload.publishers",
        "publishers",
        "TEST_PUBLISHERS",
        Some("1"),
        Kind::Int,
        "pubsub_test: publishing connections (1-10000)",
    ),
    field(
        "workload.subscribers",
        "subscribers",
        "TEST_SUBSCRIBERS",
        Some("1"),
        Kind::Int,
        "pubsub_test: subscribing connections (0-10000, at least 1 when the workload is pubsub_test)",
    ),
    field(
        "workload.pubsub_channels",
        "pubsub-channels",
        "TEST_PUBSUB_CHANNELS",
        Some("test_channel"),
        Kind::List,
        "pubsub_test: comma-separated channel names",
    ),
    field(
        "workload.psubscribe",
        "psubscribe",
        "TEST_PSUBSCRIBE",
        Some("false"),
        Kind::Bool,
        "pubsub_test: subscribers use PSUBSCRIBE with patterns matching the channels",
    ),
    field(
        "workload.stream_consumers",
        "stream-consumers",
        "TEST_STREAM_CONSUMERS",
        Some("2"),
        Kind::Int,
        "stream_request_reply: consumers in the consumer group (1-10000)",
    ),
    field(
        "workload.processing_time",
        "processing-time",
        "TEST_PROCESSING_TIME",
        Some("0"),
        Kind::Duration,
        "stream_request_reply: time a consumer spends on each request before replying, in seconds or a duration like 5ms; 0: none",
    ),
    field(
        "workload.stream_max_length",
        "stream-max-length",
        "TEST_STREAM_MAX_LENGTH",
        Some("10000"),
        Kind::Int,
        "Streams are trimmed to about this many entries (MAXLEN ~)",
    ),
    // --- output ---
    field(
        "output.metrics_interval",
        "metrics-interval",
        "METRICS_INTERVAL",
        Some("5"),
        Kind::Duration,
        "Seconds between interval reports (or a duration like 500ms)",
    ),
    field(
        "output.output_file",
        "output-file",
        "OUTPUT_FILE",
        None,
        Kind::Str,
        "Write the final JSON report to this file",
    ),
    field(
        "output.quiet",
        "quiet",
        "QUIET",
        Some("false"),
        Kind::Bool,
        "Do not print interval reports on the console",
    ),
    field(
        "output.log_level",
        "log-level",
        "LOG_LEVEL",
        Some("INFO"),
        Kind::Str,
        "Log level: error, warn, info, debug or trace",
    ),
    field(
        "output.log_file",
        "log-file",
        "LOG_FILE",
        None,
        Kind::Str,
        "Write logs to this file instead of stderr",
    ),
    field(
        "output.log_format",
        "log-format",
        "LOG_FORMAT",
        Some("text"),
        Kind::Str,
        "Log line format: text, or json (one JSON object per line, for log shippers)",
    ),
    field(
        "output.prometheus_listen",
        "prometheus-listen",
        "PROMETHEUS_LISTEN",
        None,
        Kind::Str,
        "Serve Prometheus metrics at http://host:port/metrics during the run (e.g. 127.0.0.1:9464); not set: off",
    ),
    field(
        "output.prometheus_linger",
        "prometheus-linger",
        "PROMETHEUS_LINGER",
        Some("0"),
        Kind::Duration,
        "After the run, keep /metrics up until it has been scraped once more (so the final values reach Prometheus), at most this long; 0: exit at once",
    ),
    field(
        "output.otel_endpoint",
        "otel-endpoint",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        None,
        Kind::Str,
        "Export metrics and traces over OTLP to this collector URL (http:// or https://host:port; gRPC usually on 4317, HTTP on 4318); not set: off",
    ),
    field(
        "output.otel_protocol",
        "otel-protocol",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        Some("grpc"),
        Kind::Str,
        "OTLP transport: grpc or http (HTTP/protobuf, to <endpoint>/v1/metrics and /v1/traces; http/protobuf also accepted)",
    ),
    field(
        "output.otel_export_interval",
        "otel-export-interval",
        "OTEL_EXPORT_INTERVAL",
        Some("5000"),
        Kind::Int,
        "Milliseconds between OTLP exports (at most one per metrics interval; the final values are always sent at exit)",
    ),
    field(
        "output.trace_sample_rate",
        "trace-sample-rate",
        "OTEL_TRACES_SAMPLER_ARG",
        Some("0.001"),
        Kind::Float,
        "With --otel-endpoint: the fraction of commands (0-1) exported as spans (at most 16 per worker per metrics gathering, about a second); the run, connect, reconnect and outage spans are always exported; 0: no command spans",
    ),
    FieldSpec {
        secret: true,
        ..field(
            "output.otel_headers",
            "otel-headers",
            "OTEL_EXPORTER_OTLP_HEADERS",
            None,
            Kind::Str,
            "Headers sent with every OTLP export, key=value,key2=value2 (e.g. an auth token); never shown",
        )
    },
    field(
        "output.otel_ca_cert",
        "otel-ca-cert",
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        None,
        Kind::Str,
        "PEM CA certificate to trust for an https:// OTLP endpoint; not set: the system's roots",
    ),
    field(
        "output.otel_service_name",
        "otel-service-name",
        "OTEL_SERVICE_NAME",
        Some("redis-loadgen"),
        Kind::Str,
        "OTLP resource service.name",
    ),
    // --- identity ---
    field(
        "identity.app_name",
        "app-name",
        "APP_NAME",
        Some("rust"),
        Kind::Str,
        "Application name label in reports",
    ),
    field(
        "identity.instance_id",
        "instance-id",
        "INSTANCE_ID",
        None,
        Kind::Str,
        "Instance label in reports; not set: <hostname>-<pid>",
    ),
    field(
        "identity.run_id",
        "run-id",
        "RUN_ID",
        None,
        Kind::Str,
        "Run label in reports; not set: a generated unique id",
    ),
    // `--version` prints the program version (clap's -V/--version), so this label gets
    // `--app-version`; the variable keeps the name VERSION.
    field(
        "identity.version",
        "app-version",
        "VERSION",
        Some(env!("CARGO_PKG_VERSION")),
        Kind::Str,
        "Version label in reports",
    ),
];

/// The field with this key, if any.
pub fn find(key: &str) -> Option<&'static FieldSpec> {
    FIELDS.iter().find(|f| f.key == key)
}

/// The field with this key. Keys passed here are literals in this crate, so a miss is a bug.
pub(crate) fn spec(key: &str) -> &'static FieldSpec {
    find(key).unwrap_or_else(|| panic!("no field {key} in config::fields::FIELDS"))
}

/// The fields of one section, in table order.
pub fn section_fields(section: &str) -> impl Iterator<Item = &'static FieldSpec> + '_ {
    FIELDS.iter().filter(move |f| f.section() == section)
}

/// A resolved value as typed JSON (`null` for an empty text, i.e. not set).
///
/// Falls back to a JSON string when the text does not have the field's shape, which only
/// happens for redacted secrets or text built outside the loader.
pub fn typed_value(spec: &FieldSpec, text: &str) -> Value {
    if text.is_empty() {
        return Value::Null;
    }
    if spec.secret {
        return Value::String(text.to_string());
    }
    let typed = match spec.kind {
        Kind::Str => None,
        Kind::Int => text
            .trim()
            .parse::<u64>()
            .ok()
            .map(|n| Value::Number(n.into())),
        Kind::Float | Kind::Duration => text
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number),
        Kind::Bool => super::parse::parse_bool_text(text).map(Value::Bool),
        Kind::List => Some(Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        )),
        Kind::Numbers => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
            })
            .collect::<Option<Vec<Value>>>()
            .map(Value::Array),
        Kind::Templates => Some(Value::Array(
            split_templates(text)
                .into_iter()
                .map(|s| Value::String(s.to_string()))
                .collect(),
        )),
        Kind::Map => parse_weights_text(text).ok().map(|pairs| {
            let mut map = Map::new();
            for (name, weight) in pairs {
                let number = Number::from_f64(weight).map_or(Value::Null, Value::Number);
                map.insert(name, number);
            }
            Value::Object(map)
        }),
    };
    typed.unwrap_or_else(|| Value::String(text.to_string()))
}

/// The resolved configuration as `{section: {name: value}}` with typed values.
///
/// Secrets are expected to be redacted in `resolved` already; they are passed through as text.
pub fn to_nested_json(resolved: &BTreeMap<&'static str, (String, Source)>) -> Value {
    let mut root = Map::new();
    for section in SECTIONS {
        let mut fields = Map::new();
        for spec in section_fields(section) {
            let value = resolved
                .get(spec.key)
                .map_or(Value::Null, |(text, _)| typed_value(spec, text));
            fields.insert(spec.name().to_string(), value);
        }
        root.insert(section.to_string(), Value::Object(fields));
    }
    Value::Object(root)
}

/// The content of `.env.example`: every variable with its help and default, all left empty.
///
/// Empty means "not set", so copying the file to `.env` unchanged runs with the built-in
/// defaults; a user fills in only what they want to change.
pub fn env_example() -> String {
    let mut out = String::new();
    out.push_str(
        "# redis-loadgen settings, generated from src/config/fields.rs (a unit test keeps this\n\
         # file in sync; do not edit by hand).\n\
         #\n\
         # Copy to .env and fill in what you need. An empty value means \"not set\": the\n\
         # workload profile's value or the built-in default applies.\n\
         # Precedence, highest first: CLI flag > environment > .env > --config-file > profile >\n\
         # built-in default. CONFIG_FILE=<path> loads a YAML or JSON config file (like --config-file).\n",
    );
    for section in SECTIONS {
        out.push_str(&format!("\n# --- {section} ---\n"));
        for spec in section_fields(section) {
            out.push_str("# ");
            out.push_str(spec.help);
            match spec.default {
                // The crate version would make this file change on every release.
                Some(_) if spec.key == "identity.version" => {
                    out.push_str(" (default: the program version)")
                }
                Some(_) if spec.secret => out.push_str(" (default: ***)"),
                Some(default) => out.push_str(&format!(" (default: {default})")),
                None => {}
            }
            out.push('\n');
            out.push_str(spec.env);
            out.push_str("=\n");
        }
    }
    out
}

/// The README's configuration table rows (`| key | flag | env | default |`), one per field.
pub fn markdown_rows() -> String {
    let mut out = String::new();
    for spec in FIELDS {
        let default = match spec.default {
            Some(_) if spec.key == "identity.version" => "the program version".to_string(),
            Some(_) if spec.secret => "***".to_string(),
            Some(d) => format!("`{d}`"),
            None => "not set".to_string(),
        };
        let flag = if spec.is_bool {
            format!("`--{}[=BOOL]`", spec.flag)
        } else if spec.repeatable {
            format!("`--{}` (repeatable)", spec.flag)
        } else {
            format!("`--{}`", spec.flag)
        };
        out.push_str(&format!(
            "| `{}` | {} | `{}` | {} |\n",
            spec.key, flag, spec.env, default
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn keys_flags_and_env_names_are_unique_and_well_formed() {
        let mut keys = HashSet::new();
        let mut flags = HashSet::new();
        let mut envs = HashSet::new();
        for f in FIELDS {
            assert!(keys.insert(f.key), "duplicate key {}", f.key);
            assert!(flags.insert(f.flag), "duplicate flag {}", f.flag);
            assert!(envs.insert(f.env), "duplicate env {}", f.env);
            assert!(
                SECTIONS.contains(&f.section()),
                "unknown section in {}",
                f.key
            );
            assert!(
                !f.help.ends_with('.'),
                "help of {} ends with a period",
                f.key
            );
            assert_eq!(f.is_bool, f.kind == Kind::Bool, "{}", f.key);
            // Reserved by clap and by the extra flags of the loader.
            for reserved in [
                "help",
                "version",
                "config-file",
                "show-config",
                "save-config",
            ] {
                assert_ne!(f.flag, reserved);
            }
            assert_ne!(f.env, "CONFIG_FILE");
        }
    }

    #[test]
    fn fields_are_grouped_by_section_in_section_order() {
        let order: Vec<&str> = FIELDS.iter().map(|f| f.section()).collect();
        let mut dedup = order.clone();
        dedup.dedup();
        assert_eq!(dedup, SECTIONS);
    }

    #[test]
    fn repeatable_fields_are_lists_and_not_booleans() {
        for f in FIELDS.iter().filter(|f| f.repeatable) {
            assert!(
                matches!(f.kind, Kind::Templates | Kind::Numbers),
                "{}",
                f.key
            );
            assert!(!f.is_bool && !f.secret, "{}", f.key);
        }
        assert!(spec("workload.commands").repeatable);
        assert!(spec("workload.command_weights").repeatable);
        assert_eq!(spec("workload.commands").separator(), "; ");
        assert_eq!(spec("workload.command_weights").separator(), ",");
    }

    #[test]
    fn nested_json_types_values_and_nulls_unset_fields() {
        let mut resolved = BTreeMap::new();
        resolved.insert("redis.host", ("localhost".to_string(), Source::Default));
        resolved.insert("redis.port", ("6379".to_string(), Source::Default));
        resolved.insert("redis.password", ("***".to_string(), Source::Env));
        resolved.insert("test.duration", ("1.5".to_string(), Source::Cli));
        resolved.insert("test.seed", (u64::MAX.to_string(), Source::Cli));
        resolved.insert("workload.use_pipeline", ("true".to_string(), Source::Cli));
        resolved.insert("workload.operations", ("SET,GET".to_string(), Source::Cli));
        resolved.insert(
            "workload.commands",
            (
                r#"SET __key__ "a; b"; GET __key__"#.to_string(),
                Source::Cli,
            ),
        );
        resolved.insert(
            "workload.command_weights",
            ("1,2.5".to_string(), Source::Cli),
        );
        resolved.insert(
            "workload.processing_time",
            ("0".to_string(), Source::Default),
        );
        resolved.insert(
            "workload.operation_weights",
            (r#"{"SET":0.4,"GET":0.6}"#.to_string(), Source::Cli),
        );
        let json = to_nested_json(&resolved);
        assert_eq!(json["redis"]["host"], "localhost");
        assert_eq!(json["redis"]["port"], 6379);
        assert_eq!(json["redis"]["password"], "***");
        assert_eq!(json["redis"]["username"], Value::Null);
        assert_eq!(json["test"]["duration"], 1.5);
        assert_eq!(json["test"]["seed"], u64::MAX);
        assert_eq!(json["workload"]["use_pipeline"], true);
        assert_eq!(
            json["workload"]["operations"],
            serde_json::json!(["SET", "GET"])
        );
        assert_eq!(
            json["workload"]["operation_weights"],
            serde_json::json!({"SET": 0.4, "GET": 0.6})
        );
        assert_eq!(
            json["workload"]["commands"],
            serde_json::json!([r#"SET __key__ "a; b""#, "GET __key__"])
        );
        assert_eq!(
            json["workload"]["command_weights"],
            serde_json::json!([1.0, 2.5])
        );
        assert_eq!(json["workload"]["processing_time"], 0.0);
        assert_eq!(json["identity"]["run_id"], Value::Null);
    }

    #[test]
    fn env_example_lists_every_variable_empty() {
        let text = env_example();
        for f in FIELDS {
            assert!(
                text.contains(&format!("\n{}=\n", f.env)),
                "{} missing",
                f.env
            );
        }
        for section in SECTIONS {
            assert!(text.contains(&format!("\n\n# --- {section} ---\n")));
        }
        assert!(text.contains("# Redis server host name or IP address (default: localhost)\n"));
    }

    /// The committed `.env.example` must be what the table generates. To regenerate after
    /// changing [`FIELDS`], run the tests with `UPDATE_ENV_EXAMPLE=1`.
    #[test]
    fn env_example_file_is_up_to_date() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".env.example");
        let expected = env_example();
        if std::env::var_os("UPDATE_ENV_EXAMPLE").is_some() {
            std::fs::write(&path, &expected).expect("write .env.example");
        }
        let actual = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            actual == expected,
            "{} is out of date; rerun the tests with UPDATE_ENV_EXAMPLE=1 to regenerate it",
            path.display()
        );
    }

    /// The README's configuration table is generated from [`FIELDS`] too; after changing the
    /// table, run the tests with `UPDATE_README=1` to rewrite it in place.
    #[test]
    fn readme_config_table_is_up_to_date() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(&path).expect("README.md");
        let header = "| config key | flag | environment | default |\n|---|---|---|---|\n";
        let start = readme
            .find(header)
            .expect("README has the configuration table")
            + header.len();
        let end = readme[start..]
            .find("\n\n")
            .map_or(readme.len(), |i| start + i + 1);
        let expected = markdown_rows();
        if std::env::var_os("UPDATE_README").is_some() {
            let updated = format!("{}{}{}", &readme[..start], expected, &readme[end..]);
            std::fs::write(&path, updated).expect("write README.md");
            return;
        }
        assert!(
            readme[start..end] == expected,
            "README.md's configuration table is out of date; rerun the tests with UPDATE_README=1"
        );
    }
}
