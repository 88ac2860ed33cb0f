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

pub use load::{CliAction, load_from_args, render_show_config, render_yaml, save_config};
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
    /// Read/write timeout on every socket.
    pub socket_timeout: Duration,
    pub connect_timeout: Duration,
}

/// How much load, for how long.
#[derive(Debug, Clone)]
pub struct TestConfig {
    pub clients: u32,
    pub threads_per_client: u32,
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
}

/// The workload implementation a profile (or a custom mix) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    /// Weighted mix of string commands (SET/GET/DEL/INCR) over one key space.
    BasicRw,
}

impl WorkloadKind {
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::BasicRw => "basic_rw",
        }
    }
}

/// Value sizes in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueSize {
    Fixed(usize),
    /// Uniform in `min..=max`.
    Range {
        min: usize,
        max: usize,
    },
}

impl ValueSize {
    pub fn max(self) -> usize {
        match self {
            ValueSize::Fixed(n) => n,
            ValueSize::Range { max, .. } => max,
        }
    }
}

/// What commands to send, on which keys, with which values.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Profile name (also the report's `workload_name`).
    pub profile: String,
    pub kind: WorkloadKind,
    /// Commands and their relative weights (all > 0, at least one).
    pub operations: Vec<(Command, f64)>,
    pub key_prefix: String,
    /// Keys are `{prefix}:{n}` for n in `0..key_range`.
    pub key_range: u64,
    pub value_size: ValueSize,
    pub use_pipeline: bool,
    pub pipeline_size: usize,
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
#[derive(Debug, Clone)]
pub struct OutputConfig {
    pub metrics_interval: Duration,
    pub output_file: Option<PathBuf>,
    pub quiet: bool,
    /// A tracing level name: error, warn, info, debug, trace.
    pub log_level: String,
    pub log_file: Option<PathBuf>,
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
