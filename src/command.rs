//! The closed set of Redis commands the built-in workloads can mix, and what each one is.
//!
//! This is the one table of command names: `--operations` parsing, the metrics' operation
//! names and the JSON keys all read it, so names cannot drift between them. How each command
//! is encoded lives with its data type in `workload::families`.

use std::fmt;

/// The Redis data type a command works on; it decides the key space the command uses, so reads
/// target keys that writes of the same type create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Plain string values: `<prefix>:<n>`.
    String,
    /// Integer counters: `<prefix>:counter:<n>` (incrementing a random string would fail).
    Counter,
    List,
    Hash,
    Set,
    SortedSet,
    Stream,
}

macro_rules! commands {
    ($($variant:ident => $name:literal, $family:ident, $read:literal;)+) => {
        /// A Redis command a mix workload can send on the data plane.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Command {
            $($variant,)+
        }

        impl Command {
            /// Every command, in a stable order.
            pub const ALL: &'static [Command] = &[$(Command::$variant,)+];

            /// Upper-case command name, as in the report (`INFO commandstats` lower-cases it).
            pub fn name(self) -> &'static str {
                match self {
                    $(Command::$variant => $name,)+
                }
            }

            /// The data type (and so the key space) the command works on.
            pub fn family(self) -> Family {
                match self {
                    $(Command::$variant => Family::$family,)+
                }
            }

            /// Whether a successful reply is a lookup that can hit or miss.
            pub fn is_read(self) -> bool {
                match self {
                    $(Command::$variant => $read,)+
                }
            }
        }
    };
}

commands! {
    Set => "SET", String, false;
    Get => "GET", String, true;
    Del => "DEL", String, false;
    Exists => "EXISTS", String, true;
    Expire => "EXPIRE", String, false;
    Ttl => "TTL", String, true;
    Type => "TYPE", String, true;
    Append => "APPEND", String, false;
    Strlen => "STRLEN", String, true;
    Mget => "MGET", String, true;
    Mset => "MSET", String, false;
    Incr => "INCR", Counter, false;
    Incrby => "INCRBY", Counter, false;
    Decr => "DECR", Counter, false;
    Decrby => "DECRBY", Counter, false;
    Lpush => "LPUSH", List, false;
    Rpush => "RPUSH", List, false;
    Lpop => "LPOP", List, true;
    Rpop => "RPOP", List, true;
    Lrange => "LRANGE", List, true;
    Llen => "LLEN", List, true;
    Hset => "HSET", Hash, false;
    Hget => "HGET", Hash, true;
    Hmget => "HMGET", Hash, true;
    Hgetall => "HGETALL", Hash, true;
    Hdel => "HDEL", Hash, false;
    Hincrby => "HINCRBY", Hash, false;
    Sadd => "SADD", Set, false;
    Srem => "SREM", Set, false;
    Smembers => "SMEMBERS", Set, true;
    Scard => "SCARD", Set, true;
    Sismember => "SISMEMBER", Set, true;
    Zadd => "ZADD", SortedSet, false;
    Zincrby => "ZINCRBY", SortedSet, false;
    Zrange => "ZRANGE", SortedSet, true;
    Zscore => "ZSCORE", SortedSet, true;
    Zrem => "ZREM", SortedSet, false;
    Zcard => "ZCARD", SortedSet, true;
    Xadd => "XADD", Stream, false;
    Xread => "XREAD", Stream, true;
    Xrange => "XRANGE", Stream, true;
    Xlen => "XLEN", Stream, true;
    Xtrim => "XTRIM", Stream, false;
}

impl Command {
    /// Position in [`Command::ALL`] (a stable order for printing mixes).
    pub fn index(self) -> usize {
        self as usize
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
        assert_eq!(Command::parse("hgetall"), Some(Command::Hgetall));
        assert_eq!(Command::parse("FLY"), None);
    }

    #[test]
    fn names_are_unique_upper_case() {
        let mut names: Vec<&str> = Command::ALL.iter().map(|c| c.name()).collect();
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_uppercase()))
        );
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Command::ALL.len());
    }
}
