//! Error types at the edges of the program and the closed set of per-command error classes.
//!
//! [`AppError`] is what `run()` and the subcommands return; `main` maps it to an exit code.
//! [`ErrorClass`] is the family's classification of failed commands; the hot path counts by it
//! (an array index), never by a formatted string.

use std::fmt;

use crate::config::parse::ConfigError;

/// Process exit codes (documented in `--help` and the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Ok = 0,
    RunFailed = 1,
    BadInput = 2,
}

/// Errors that end a command of the CLI.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// `target` is `host:port`, or in Sentinel mode the master's name and the sentinels.
    #[error("cannot connect to Redis at {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("{0}")]
    Run(String),
    #[error("cannot write {path}: {source}")]
    Output {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl AppError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            AppError::Config(_) => ExitCode::BadInput,
            _ => ExitCode::RunFailed,
        }
    }
}

/// Why a command failed, as the family's `error_type` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    Timeout,
    ConnectionError,
    CommandError,
    MemoryError,
    AuthError,
    ClusterError,
    Unknown,
}

impl ErrorClass {
    pub const COUNT: usize = 7;
    pub const ALL: [ErrorClass; ErrorClass::COUNT] = [
        ErrorClass::Timeout,
        ErrorClass::ConnectionError,
        ErrorClass::CommandError,
        ErrorClass::MemoryError,
        ErrorClass::AuthError,
        ErrorClass::ClusterError,
        ErrorClass::Unknown,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ErrorClass::Timeout => "timeout",
            ErrorClass::ConnectionError => "connection_error",
            ErrorClass::CommandError => "command_error",
            ErrorClass::MemoryError => "memory_error",
            ErrorClass::AuthError => "auth_error",
            ErrorClass::ClusterError => "cluster_error",
            ErrorClass::Unknown => "unknown",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Classifies a Redis error reply by its first word (`-WRONGPASS ...` -> auth_error).
    pub fn from_error_reply(message: &[u8]) -> ErrorClass {
        let code_end = message
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(message.len());
        match &message[..code_end] {
            b"OOM" => ErrorClass::MemoryError,
            b"NOAUTH" | b"WRONGPASS" | b"NOPERM" => ErrorClass::AuthError,
            b"MOVED" | b"ASK" | b"TRYAGAIN" | b"CLUSTERDOWN" | b"CROSSSLOT" | b"READONLY"
            | b"MASTERDOWN" => ErrorClass::ClusterError,
            _ => ErrorClass::CommandError,
        }
    }

    /// Classifies an I/O failure on a data-plane socket.
    pub fn from_io(err: &std::io::Error) -> ErrorClass {
        use std::io::ErrorKind::*;
        match err.kind() {
            WouldBlock | TimedOut => ErrorClass::Timeout,
            ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected | BrokenPipe
            | UnexpectedEof | AddrNotAvailable | HostUnreachable | NetworkUnreachable => {
                ErrorClass::ConnectionError
            }
            _ => ErrorClass::Unknown,
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_replies_map_to_family_classes() {
        assert_eq!(
            ErrorClass::from_error_reply(b"WRONGPASS invalid username-password pair"),
            ErrorClass::AuthError
        );
        assert_eq!(
            ErrorClass::from_error_reply(b"OOM command not allowed"),
            ErrorClass::MemoryError
        );
        assert_eq!(
            ErrorClass::from_error_reply(b"MOVED 3999 127.0.0.1:6381"),
            ErrorClass::ClusterError
        );
        assert_eq!(
            ErrorClass::from_error_reply(b"ERR value is not an integer"),
            ErrorClass::CommandError
        );
        assert_eq!(ErrorClass::from_error_reply(b""), ErrorClass::CommandError);
    }

    #[test]
    fn index_matches_position_in_all() {
        for (i, c) in ErrorClass::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }
}
