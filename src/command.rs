//! The closed set of Redis commands workloads can issue, and how each one's request starts.
//!
//! This is the one table of command names: metrics, JSON keys, `--operations` parsing and the
//! encoder all read it, so names cannot drift between them.

use std::fmt;

/// A Redis command a workload can send on the data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Command {
    Set,
    Get,
    Del,
    Incr,
}

impl Command {
    /// Every command, in a stable order (used for per-command metric slots).
    pub const ALL: [Command; 4] = [Command::Set, Command::Get, Command::Del, Command::Incr];

    /// Upper-case command name as Redis reports it in `INFO commandstats` (lower-cased there).
    pub fn name(self) -> &'static str {
        match self {
            Command::Set => "SET",
            Command::Get => "GET",
            Command::Del => "DEL",
            Command::Incr => "INCR",
        }
    }

    /// Dense index into per-command arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the command writes (used to pick which keys reads can find).
    pub fn is_write(self) -> bool {
        !matches!(self, Command::Get)
    }

    /// Parses a command name case-insensitively.
    pub fn parse(name: &str) -> Option<Command> {
        Command::ALL
            .iter()
            .copied()
            .find(|c| c.name().eq_ignore_ascii_case(name.trim()))
    }

    /// A comma-separated list of every name, for error messages.
    pub fn all_names() -> String {
        Command::ALL
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_is_case_insensitive_and_rejects_unknown() {
        assert_eq!(Command::parse("get"), Some(Command::Get));
        assert_eq!(Command::parse(" Incr "), Some(Command::Incr));
        assert_eq!(Command::parse("HGET"), None);
    }

    #[test]
    fn index_matches_position_in_all() {
        for (i, c) in Command::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }
}
