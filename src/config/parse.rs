//! Parsers for every kind of configuration value, and [`ConfigError`].
//!
//! All sources (CLI, environment, `.env`, config file, profile, defaults) are reduced to text
//! first, so each value is parsed here exactly once, whatever its source. A parser takes a
//! [`Raw`] (field, text, source) so its error can name all three; secret values are shown as
//! `***` in every error.

use std::fmt;
use std::io;
use std::time::Duration;

use super::fields::FieldSpec;
use super::{Protocol, Source};
use crate::command::Command;

/// Largest accepted value size (Redis's own limit for a string value).
pub const MAX_VALUE_SIZE: u64 = 512 * 1024 * 1024;
/// Largest accepted `clients * threads_per_client`: each worker is an OS thread and a socket.
pub const MAX_WORKERS: u64 = 10_000;
/// Largest accepted pipeline batch.
pub const MAX_PIPELINE_SIZE: u64 = 100_000;

/// Why the configuration could not be built. Every message is one line and never contains a
/// secret; `main` prints `error: {e}` and exits with code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// One field's value is not allowed.
    #[error("invalid value '{value}' for {key} (--{flag} / {env}, from {from}): {allowed}")]
    Invalid {
        key: &'static str,
        flag: &'static str,
        env: &'static str,
        /// The offending text, `***` for secrets.
        value: String,
        from: Source,
        /// What is allowed (or what is wrong).
        allowed: String,
    },
    /// A profile name that is not in [`super::PROFILES`].
    #[error("unknown workload profile '{name}' for {context}: known profiles are {known}")]
    UnknownProfile {
        name: String,
        /// Where the name was given, e.g.
        /// `workload.profile (--workload-profile / TEST_WORKLOAD_PROFILE, from cli)`.
        context: String,
        known: String,
    },
    /// A config-file section (`what` = "section") or key (`what` = "key") that does not exist.
    #[error("unknown {what} '{name}' in config file {file}: known {what}s are {known}")]
    UnknownKey {
        what: &'static str,
        name: String,
        file: String,
        known: String,
    },
    #[error("cannot read config file '{path}': {error}")]
    ReadFile { path: String, error: io::Error },
    #[error("cannot parse config file '{path}': {message}")]
    ParseFile { path: String, message: String },
    #[error("cannot read .env file '{path}': {message}")]
    DotEnv { path: String, message: String },
    /// Values of several fields that do not fit together; the message names each field, its
    /// value and its source.
    #[error("{0}")]
    Conflict(String),
    /// A command-line usage error (unknown flag, missing argument), condensed to one line.
    #[error("{0}")]
    Usage(String),
    #[error("cannot write config file '{path}': {error}")]
    WriteFile { path: String, error: io::Error },
    #[error("{context}: {error}")]
    Io { context: String, error: io::Error },
}

/// One field's winning text and where it came from: the input of every parser.
#[derive(Debug, Clone, Copy)]
pub struct Raw<'a> {
    pub spec: &'static FieldSpec,
    pub text: &'a str,
    pub source: Source,
}

impl Raw<'_> {
    /// The text as it may appear in messages: `***` for secrets, newlines escaped so errors
    /// stay on one line.
    pub fn shown(&self) -> String {
        if self.spec.secret {
            "***".to_string()
        } else {
            self.text.replace('\n', "\\n")
        }
    }

    /// An [`ConfigError::Invalid`] for this value.
    pub fn invalid(&self, allowed: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: self.spec.key,
            flag: self.spec.flag,
            env: self.spec.env,
            value: self.shown(),
            from: self.source,
            allowed: allowed.into(),
        }
    }

    /// `key = 'value' (from source)`, for cross-field messages.
    pub fn describe(&self) -> String {
        format!(
            "{} = '{}' (from {})",
            self.spec.key,
            self.shown(),
            self.source
        )
    }
}

/// Unsigned integer types [`parse_uint`] can produce.
pub trait UInt: Copy + fmt::Display + Into<u64> + TryFrom<u64> {
    const MAX: Self;
}

impl UInt for u16 {
    const MAX: Self = u16::MAX;
}
impl UInt for u32 {
    const MAX: Self = u32::MAX;
}
impl UInt for u64 {
    const MAX: Self = u64::MAX;
}

/// An integer in `min..=max`. The message says `>= min` when `max` is the type's maximum.
pub fn parse_uint<T: UInt>(raw: &Raw, min: T, max: T) -> Result<T, ConfigError> {
    let (lo, hi): (u64, u64) = (min.into(), max.into());
    let allowed = if hi == T::MAX.into() {
        format!("must be an integer >= {min}")
    } else {
        format!("must be an integer from {min} to {max}")
    };
    let n: u64 = raw
        .text
        .trim()
        .parse()
        .map_err(|_| raw.invalid(allowed.as_str()))?;
    if n < lo || n > hi {
        return Err(raw.invalid(allowed));
    }
    T::try_from(n).map_err(|_| raw.invalid(allowed))
}

/// A finite number > 0.
pub fn parse_positive_f64(raw: &Raw) -> Result<f64, ConfigError> {
    match raw.text.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(raw.invalid("must be a number > 0")),
    }
}

/// `true/false/1/0/yes/no/on/off`, case-insensitive.
pub fn parse_bool_text(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A boolean (see [`parse_bool_text`]).
pub fn parse_bool(raw: &Raw) -> Result<bool, ConfigError> {
    parse_bool_text(raw.text)
        .ok_or_else(|| raw.invalid("must be true/false, 1/0, yes/no or on/off"))
}

/// A non-empty string without surrounding whitespace.
pub fn parse_string(raw: &Raw) -> Result<String, ConfigError> {
    let s = raw.text.trim();
    if s.is_empty() {
        return Err(raw.invalid("must not be blank"));
    }
    Ok(s.to_string())
}

/// A host name or IP address: no spaces inside.
pub fn parse_host(raw: &Raw) -> Result<String, ConfigError> {
    let host = parse_string(raw)?;
    if host.chars().any(char::is_whitespace) {
        return Err(raw.invalid("must be a host name or IP address without spaces"));
    }
    Ok(host)
}

/// RESP version: `2`/`3` (also `resp2`/`resp3`).
pub fn parse_protocol(raw: &Raw) -> Result<Protocol, ConfigError> {
    match raw.text.trim().to_ascii_lowercase().as_str() {
        "2" | "resp2" => Ok(Protocol::Resp2),
        "3" | "resp3" => Ok(Protocol::Resp3),
        _ => Err(raw.invalid("must be 2 or 3")),
    }
}

/// A tracing level name, lower-case; `warning` is accepted for `warn`.
pub fn parse_log_level(raw: &Raw) -> Result<&'static str, ConfigError> {
    match raw.text.trim().to_ascii_lowercase().as_str() {
        "error" => Ok("error"),
        "warn" | "warning" => Ok("warn"),
        "info" => Ok("info"),
        "debug" => Ok("debug"),
        "trace" => Ok("trace"),
        _ => Err(raw.invalid("must be one of error, warn, info, debug, trace")),
    }
}

const DURATION_FORMS: &str =
    "seconds (30, 2.5), a humantime duration (90s, 1m30s) or ISO-8601 (PT1M30S)";

/// A duration > 0 (see [`parse_duration_text`]).
pub fn parse_duration(raw: &Raw) -> Result<Duration, ConfigError> {
    parse_duration_text(raw.text).map_err(|why| raw.invalid(why))
}

/// A duration > 0 given as plain seconds (`30`, `2.5`), humantime (`90s`, `1m30s`, `500ms`) or
/// ISO-8601 (`PT1M30S`). The error says what is wrong and what is allowed.
pub fn parse_duration_text(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let duration = if t.starts_with(['P', 'p']) {
        parse_iso8601_duration(t).map_err(|why| {
            format!(
                "is not a valid ISO-8601 duration ({why}); expected P[nD][T[nH][nM][n[.n]S]], \
                 e.g. PT1M30S"
            )
        })?
    } else if let Ok(secs) = t.parse::<f64>() {
        if !secs.is_finite() || secs <= 0.0 {
            return Err(format!("must be > 0: {DURATION_FORMS}"));
        }
        Duration::try_from_secs_f64(secs).map_err(|_| "is too large".to_string())?
    } else {
        humantime::parse_duration(t).map_err(|_| format!("must be {DURATION_FORMS}"))?
    };
    if duration.is_zero() {
        return Err(format!("must be > 0: {DURATION_FORMS}"));
    }
    Ok(duration)
}

/// An ISO-8601 duration `P[nD][T[nH][nM][n[.n]S]]`.
///
/// Years, months and weeks are rejected (their length is ambiguous or rarely wanted for a load
/// test); only seconds may have a fraction. `P` and `PT` alone, negative values and a zero
/// total are errors. Letters are case-insensitive.
pub fn parse_iso8601_duration(text: &str) -> Result<Duration, String> {
    let body = text
        .trim()
        .strip_prefix(['P', 'p'])
        .ok_or_else(|| "must start with P".to_string())?;
    let (date, time) = match body.find(['T', 't']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    if date.is_empty() && time.is_none_or(str::is_empty) {
        return Err("no components after P/PT".to_string());
    }
    if time == Some("") {
        return Err("nothing after T".to_string());
    }
    let mut total = iso_components(date, &[('D', 86_400)])?;
    if let Some(time) = time {
        let t = iso_components(time, &[('H', 3_600), ('M', 60), ('S', 1)])?;
        total = total
            .checked_add(t)
            .ok_or_else(|| "too large".to_string())?;
    }
    if total.is_zero() {
        return Err("must be > 0".to_string());
    }
    Ok(total)
}

/// Sums `<number><unit>` components; `units` (letter, seconds) must appear in this order, each
/// at most once.
fn iso_components(part: &str, units: &[(char, u64)]) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut next_unit = 0;
    let mut rest = part;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("'{rest}' has no unit letter"))?;
        let (number, tail) = rest.split_at(end);
        let letter = tail.chars().next().unwrap_or_default();
        if number.is_empty() {
            return Err(if letter == '-' {
                "must not be negative".to_string()
            } else {
                format!("expected a number before '{letter}'")
            });
        }
        let unit = letter.to_ascii_uppercase();
        let index = units[next_unit..]
            .iter()
            .position(|&(u, _)| u == unit)
            .map(|i| i + next_unit)
            .ok_or_else(|| {
                format!("unexpected '{letter}' (years, months and weeks are not supported)")
            })?;
        next_unit = index + 1;
        let unit_secs = units[index].1;
        let amount = if number.contains('.') {
            if unit_secs != 1 {
                return Err("only seconds may have a fraction".to_string());
            }
            let secs: f64 = number
                .parse()
                .map_err(|_| format!("'{number}' is not a number"))?;
            Duration::try_from_secs_f64(secs).map_err(|_| "too large".to_string())?
        } else {
            let n: u64 = number.parse().map_err(|_| "too large".to_string())?;
            Duration::from_secs(n.checked_mul(unit_secs).ok_or("too large")?)
        };
        total = total.checked_add(amount).ok_or("too large")?;
        rest = &tail[letter.len_utf8()..];
    }
    Ok(total)
}

/// A comma-separated list of command names, each at most once, at least one.
pub fn parse_operations(raw: &Raw) -> Result<Vec<Command>, ConfigError> {
    let mut ops = Vec::new();
    for name in raw.text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let command = Command::parse(name).ok_or_else(|| {
            raw.invalid(format!(
                "unknown command '{name}': known commands are {}",
                Command::all_names()
            ))
        })?;
        if ops.contains(&command) {
            return Err(raw.invalid(format!("lists {command} more than once")));
        }
        ops.push(command);
    }
    if ops.is_empty() {
        return Err(raw.invalid(format!(
            "must list at least one command of {}",
            Command::all_names()
        )));
    }
    Ok(ops)
}

const WEIGHTS_FORMS: &str = r#"a JSON object like {"SET":0.4,"GET":0.6} or SET:0.4,GET:0.6"#;

/// `{"NAME": number, ...}` or `NAME:number,...` as (name, weight) pairs; names are not checked
/// against the command table here (see [`parse_weights`]).
pub fn parse_weights_text(text: &str) -> Result<Vec<(String, f64)>, String> {
    let t = text.trim();
    let mut pairs: Vec<(String, f64)> = Vec::new();
    if t.starts_with('{') {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(t).map_err(|_| format!("must be {WEIGHTS_FORMS}"))?;
        for (name, value) in map {
            let weight = value
                .as_f64()
                .ok_or_else(|| format!("weight of {name} must be a number"))?;
            pairs.push((name, weight));
        }
    } else {
        for item in t.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, weight) = item
                .split_once(':')
                .ok_or_else(|| format!("must be {WEIGHTS_FORMS}"))?;
            let (name, weight) = (name.trim(), weight.trim());
            let weight: f64 = weight
                .parse()
                .map_err(|_| format!("weight of {name} must be a number"))?;
            pairs.push((name.to_string(), weight));
        }
    }
    Ok(pairs)
}

/// Command weights: known commands, each once, finite and >= 0, summing to more than 0.
///
/// The result is in [`Command::ALL`] order so the same mix always prints the same way.
pub fn parse_weights(raw: &Raw) -> Result<Vec<(Command, f64)>, ConfigError> {
    let pairs = parse_weights_text(raw.text).map_err(|why| raw.invalid(why))?;
    let mut weights: Vec<(Command, f64)> = Vec::new();
    for (name, weight) in pairs {
        let command = Command::parse(&name).ok_or_else(|| {
            raw.invalid(format!(
                "unknown command '{name}': known commands are {}",
                Command::all_names()
            ))
        })?;
        if !weight.is_finite() || weight < 0.0 {
            return Err(raw.invalid(format!("weight of {command} must be a finite number >= 0")));
        }
        if weights.iter().any(|&(c, _)| c == command) {
            return Err(raw.invalid(format!("gives {command} more than once")));
        }
        weights.push((command, weight));
    }
    if weights.is_empty() {
        return Err(raw.invalid(format!("must be {WEIGHTS_FORMS}")));
    }
    if weights.iter().all(|&(_, w)| w == 0.0) {
        return Err(raw.invalid("weights must sum to more than 0"));
    }
    weights.sort_by_key(|&(c, _)| c.index());
    Ok(weights)
}

/// Weights as the JSON object text `{"SET":0.4,"GET":0.6}`, in the given order.
pub fn weights_text(weights: &[(Command, f64)]) -> String {
    let body: Vec<String> = weights
        .iter()
        .map(|(c, w)| format!("\"{}\":{}", c.name(), w))
        .collect();
    format!("{{{}}}", body.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fields;

    fn raw<'a>(key: &str, text: &'a str) -> Raw<'a> {
        Raw {
            spec: fields::find(key).unwrap(),
            text,
            source: Source::Env,
        }
    }

    #[test]
    fn seconds_humantime_and_iso_durations() {
        let ok = |s: &str| parse_duration_text(s).unwrap();
        assert_eq!(ok("30"), Duration::from_secs(30));
        assert_eq!(ok("2.5"), Duration::from_millis(2500));
        assert_eq!(ok(" 90s "), Duration::from_secs(90));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("PT1M30S"), Duration::from_secs(90));
        assert_eq!(ok("PT0.5S"), Duration::from_millis(500));
        assert_eq!(ok("P1DT2H"), Duration::from_secs(86_400 + 7_200));
        assert_eq!(ok("P2D"), Duration::from_secs(172_800));
        assert_eq!(ok("pt1h"), Duration::from_secs(3_600));
        assert_eq!(ok("PT1H2M3.25S"), Duration::from_millis(3_723_250));
    }

    #[test]
    fn bad_durations_are_rejected() {
        for bad in [
            "P", "PT", "P1DT", "PT0S", "P0D", "0", "0s", "-5", "PT-1S", "-PT1S", "P1M", "P1Y",
            "PT1S2M", "PT1H1H", "PT1.5M", "P1.5D", "PT1", "PTS", "abc", "inf", "NaN", "1e400",
        ] {
            assert!(parse_duration_text(bad).is_err(), "{bad} accepted");
        }
        assert!(parse_duration_text("PT").unwrap_err().contains("ISO-8601"));
        assert!(parse_duration_text("-1").unwrap_err().contains("> 0"));
    }

    #[test]
    fn integers_respect_bounds_and_name_them() {
        let port = raw("redis.port", "70000");
        let err = parse_uint::<u16>(&port, 1, u16::MAX)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid value '70000' for redis.port (--port / REDIS_PORT, from env): \
             must be an integer >= 1"
        );
        let clients = raw("test.clients", "0");
        assert_eq!(
            parse_uint::<u32>(&clients, 1, u32::MAX)
                .unwrap_err()
                .to_string(),
            "invalid value '0' for test.clients (--clients / TEST_CLIENT_INSTANCES, from env): \
             must be an integer >= 1"
        );
        let pipeline = raw("workload.pipeline_size", "100001");
        let err = parse_uint::<u64>(&pipeline, 1, MAX_PIPELINE_SIZE).unwrap_err();
        assert!(err.to_string().contains("from 1 to 100000"), "{err}");
        assert_eq!(
            parse_uint::<u64>(&raw("test.seed", " 42 "), 0, u64::MAX).unwrap(),
            42
        );
        assert!(parse_uint::<u64>(&raw("test.seed", "-1"), 0, u64::MAX).is_err());
    }

    #[test]
    fn booleans_accept_common_spellings() {
        for t in ["true", "TRUE", "1", "yes", "On"] {
            assert_eq!(parse_bool_text(t), Some(true), "{t}");
        }
        for f in ["false", "0", "No", "off"] {
            assert_eq!(parse_bool_text(f), Some(false), "{f}");
        }
        let err = parse_bool(&raw("output.quiet", "maybe"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'maybe'") && err.contains("output.quiet"),
            "{err}"
        );
    }

    #[test]
    fn log_levels_are_normalized() {
        assert_eq!(
            parse_log_level(&raw("output.log_level", "WARNING")).unwrap(),
            "warn"
        );
        assert_eq!(
            parse_log_level(&raw("output.log_level", "Info")).unwrap(),
            "info"
        );
        let err = parse_log_level(&raw("output.log_level", "loud")).unwrap_err();
        assert!(err.to_string().contains("'loud' for output.log_level"));
    }

    #[test]
    fn protocol_is_2_or_3() {
        assert_eq!(
            parse_protocol(&raw("redis.protocol", "2")).unwrap(),
            Protocol::Resp2
        );
        assert_eq!(
            parse_protocol(&raw("redis.protocol", "RESP3")).unwrap(),
            Protocol::Resp3
        );
        let err = parse_protocol(&raw("redis.protocol", "4")).unwrap_err();
        assert!(err.to_string().contains("'4' for redis.protocol"));
    }

    #[test]
    fn operations_and_weights_parse_and_validate() {
        assert_eq!(
            parse_operations(&raw("workload.operations", "set, GET ,Del")).unwrap(),
            vec![Command::Set, Command::Get, Command::Del]
        );
        let err = parse_operations(&raw("workload.operations", "SET,HGET"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("HGET") && err.contains(&Command::all_names()),
            "{err}"
        );
        assert!(parse_operations(&raw("workload.operations", "SET,set")).is_err());
        assert!(parse_operations(&raw("workload.operations", " , ")).is_err());

        let json = parse_weights(&raw(
            "workload.operation_weights",
            r#"{"GET":0.6,"SET":0.4}"#,
        ));
        assert_eq!(
            json.unwrap(),
            vec![(Command::Set, 0.4), (Command::Get, 0.6)]
        );
        let csv = parse_weights(&raw("workload.operation_weights", "SET:0.4, GET:0.6"));
        assert_eq!(csv.unwrap(), vec![(Command::Set, 0.4), (Command::Get, 0.6)]);

        for (bad, why) in [
            ("SET:1,HGET:1", "HGET"),
            ("SET:-1", "finite number >= 0"),
            ("SET:NaN", "finite number >= 0"),
            ("SET:0,GET:0", "sum to more than 0"),
            ("SET:1,set:2", "more than once"),
            ("SET=1", "JSON object"),
            (r#"{"SET":"x"}"#, "must be a number"),
            ("{", "JSON object"),
            ("{}", "JSON object"),
        ] {
            let err = parse_weights(&raw("workload.operation_weights", bad))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains("workload.operation_weights"), "{err}");
        }
    }

    #[test]
    fn weights_text_is_parseable_json() {
        let text = weights_text(&[(Command::Set, 0.4), (Command::Get, 1.0)]);
        assert_eq!(text, r#"{"SET":0.4,"GET":1}"#);
        assert_eq!(
            parse_weights(&raw("workload.operation_weights", &text)).unwrap(),
            vec![(Command::Set, 0.4), (Command::Get, 1.0)]
        );
    }

    #[test]
    fn secret_values_never_appear_in_errors() {
        let password = raw("redis.password", "hunter2");
        let err = password.invalid("must be something").to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("'***'"), "{err}");
        assert!(!password.describe().contains("hunter2"));
    }
}
