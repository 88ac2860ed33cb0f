//! The command line: parse, dispatch to a subcommand or a run, map the outcome to an exit code.
//!
//! Signal handling and logging set-up live here because they are process-wide; the run itself
//! takes its stop signal as a value ([`Shutdown`]).

use std::process::ExitCode as ProcessExit;
use std::sync::Arc;

use crate::config::{self, CliAction, LogFormat, RunnerConfig};
use crate::control;
use crate::error::{AppError, ExitCode};
use crate::runner;
use crate::shutdown::Shutdown;

fn exit(code: ExitCode) -> ProcessExit {
    ProcessExit::from(code as u8)
}

/// Parses the process's arguments and environment and does what they ask.
pub fn main() -> ProcessExit {
    let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let env = |key: &str| std::env::var(key).ok();
    let action = match config::load_from_args(std::env::args_os(), &env, &cwd) {
        Ok(action) => action,
        Err(e) => {
            eprintln!("error: {e}");
            return exit(ExitCode::BadInput);
        }
    };
    match action {
        CliAction::Help(text) => {
            print!("{text}");
            exit(ExitCode::Ok)
        }
        CliAction::ListProfiles => {
            print!("{}", config::list_profiles());
            exit(ExitCode::Ok)
        }
        CliAction::DescribeProfile(name) => match config::describe_profile(&name) {
            Some(text) => {
                print!("{text}");
                exit(ExitCode::Ok)
            }
            None => {
                eprintln!(
                    "error: unknown workload profile '{name}': known profiles are {}",
                    config::PROFILES
                        .iter()
                        .map(|p| p.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                exit(ExitCode::BadInput)
            }
        },
        CliAction::ShowConfig(cfg) => {
            print!("{}", config::render_show_config(&cfg));
            exit(ExitCode::Ok)
        }
        CliAction::SaveConfig(cfg, path) => {
            match std::fs::write(&path, config::render_yaml(&cfg)) {
                Ok(()) => {
                    println!("configuration saved to {}", path.display());
                    exit(ExitCode::Ok)
                }
                Err(e) => {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    exit(ExitCode::RunFailed)
                }
            }
        }
        CliAction::TestConnection(cfg) => test_connection(&cfg),
        CliAction::Run(cfg) => run(cfg),
    }
}

fn test_connection(cfg: &RunnerConfig) -> ProcessExit {
    let r = &cfg.redis;
    match control::test_connection(r) {
        Ok(check) => {
            println!(
                "connected to {}:{}: redis {} ({} mode), role {}, round trip {:.3} ms",
                r.host,
                r.port,
                check.server.version,
                check.server.mode,
                check.server.role,
                check.round_trip.as_secs_f64() * 1e3
            );
            exit(ExitCode::Ok)
        }
        Err(e) => {
            eprintln!("error: cannot connect to Redis at {}: {e}", r.endpoint());
            exit(ExitCode::RunFailed)
        }
    }
}

fn run(cfg: RunnerConfig) -> ProcessExit {
    if let Err(e) = init_logging(&cfg) {
        eprintln!("error: {e}");
        return exit(ExitCode::BadInput);
    }
    let shutdown = Shutdown::new();
    let signal = shutdown.clone();
    let handler = ctrlc::set_handler(move || {
        if signal.request() >= 2 {
            eprintln!("second interrupt: writing the report with what has been collected");
        } else {
            eprintln!("stopping: waiting for in-flight replies (interrupt again to stop waiting)");
        }
    });
    if let Err(e) = handler {
        tracing::warn!(error = %e, "cannot install the Ctrl-C/SIGTERM handler");
    }
    match runner::run(Arc::new(cfg), shutdown) {
        Ok(summary) => exit(summary.exit),
        Err(e) => {
            eprintln!("error: {e}");
            exit(e.exit_code())
        }
    }
}

/// Logs go to `--log-file` (appended) or stderr, filtered by `--log-level`, as text or JSON
/// lines (`--log-format`).
fn init_logging(cfg: &RunnerConfig) -> Result<(), AppError> {
    let filter = || {
        tracing_subscriber::EnvFilter::new(format!(
            "{}={}",
            env!("CARGO_CRATE_NAME"),
            cfg.output.log_level
        ))
    };
    let file = match &cfg.output.log_file {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| AppError::Output {
                    path: path.display().to_string(),
                    source,
                })?,
        ),
        None => None,
    };
    let text = tracing_subscriber::fmt().with_env_filter(filter());
    let json = tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_env_filter(filter());
    let result = match (cfg.output.log_format, file) {
        (LogFormat::Text, Some(f)) => text
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .try_init(),
        (LogFormat::Text, None) => text.with_writer(std::io::stderr).try_init(),
        (LogFormat::Json, Some(f)) => json
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .try_init(),
        (LogFormat::Json, None) => json.with_writer(std::io::stderr).try_init(),
    };
    // Already initialised (a second run in one process): keep the first subscriber.
    let _ = result;
    Ok(())
}
