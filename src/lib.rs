//! redis-loadgen: a multi-threaded Redis load generator.
//!
//! The binary (`main.rs`) only parses the command line and maps errors to exit codes; everything
//! else lives here so tests can drive it in-process.
//!
//! Data flow: [`config`] builds one immutable [`config::RunnerConfig`]; [`runner`] starts one OS
//! thread per worker, each owning a [`client`] RESP connection, a [`workload`] generator, an RNG
//! and a [`metrics`] shard; a reporter thread swaps interval data out of the shards and hands it
//! to [`output`] (console, JSON). The redis crate is used only for the control plane
//! ([`control`]): test-connection and INFO.

pub mod cli;
pub mod client;
pub mod command;
pub mod config;
pub mod control;
pub mod error;
pub mod metrics;
pub mod net;
pub mod output;
pub mod proto;
pub mod runner;
pub mod shutdown;
pub mod telemetry;
pub mod workload;

pub use error::{AppError, ExitCode};
pub use runner::{RunSummary, run};
pub use shutdown::Shutdown;
