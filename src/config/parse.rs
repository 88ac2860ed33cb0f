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
use super::{CommandTemplate, KeyDistribution, Protocol, Source};
use crate::command::Command;

/// Largest accepted value size (Redis's own limit for a string value).
pub const MAX_VALUE_SIZE: u64 = 512 * 1024 * 1024;
/// Largest accepted `clients * threads_per_client`: each worker is a socket.
pub const MAX_WORKERS: u64 = 10_000;
/// Largest accepted `test.io_threads`.
pub const MAX_IO_THREADS: u32 = 256;
/// Largest accepted pipeline batch.
pub const MAX_PIPELINE_SIZE: u64 = 100_000;
/// Largest accepted TTL bound of `workload.expiry_range`: 100 years, far from Redis's own
/// overflow limit for `SET ... EX`.
pub const MAX_EXPIRY_SECS: u64 = 100 * 365 * 86_400;
/// Largest accepted `workload.hash_fields`.
pub const MAX_HASH_FIELDS: u32 = 100_000;
/// Largest accepted `workload.transaction_size`.
pub const MAX_TRANSACTION_SIZE: u32 = 10_000;
/// The placeholders a `--command` template may contain, replaced per command by the workload.
pub const PLACEHOLDERS: [&str; 4] = ["__key__", "__data__", "__field__", "__rand_int__"];

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

/// An integer in `min..=max`. The message leaves out `<= max` when `max` is the type's maximum.
pub fn parse_uint<T: UInt>(raw: &Raw, min: T, max: T) -> Result<T, ConfigError> {
    let (lo, hi): (u64, u64) = (min.into(), max.into());
    let allowed = if hi == T::MAX.into() {
        format!("must be an integer >= {min}")
    } else {
        format!("must be an integer >= {min} and <= {max}")
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

/// Comma-separated `host:port` entries (at least one); `[v6]:port` for IPv6 literals.
pub fn parse_host_ports(raw: &Raw) -> Result<Vec<(String, u16)>, ConfigError> {
    let mut nodes = Vec::new();
    for entry in raw.text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || raw.invalid(format!("'{entry}' is not host:port (port 1-65535)"));
        let (host, port) = entry.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || port == 0 || host.chars().any(char::is_whitespace) {
            return Err(bad());
        }
        nodes.push((host.to_string(), port));
    }
    if nodes.is_empty() {
        return Err(raw.invalid("must list at least one host:port"));
    }
    Ok(nodes)
}

/// RESP version: `2`/`3` (also `resp2`/`resp3`).
pub fn parse_protocol(raw: &Raw) -> Result<Protocol, ConfigError> {
    match raw.text.trim().to_ascii_lowercase().as_str() {
        "2" | "resp2" => Ok(Protocol::Resp2),
        "3" | "resp3" => Ok(Protocol::Resp3),
        _ => Err(raw.invalid("must be 2 or 3")),
    }
}

/// `--log-format`: `text` or `json`.
pub fn parse_log_format(raw: &Raw) -> Result<super::LogFormat, ConfigError> {
    match raw.text.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(super::LogFormat::Text),
        "json" => Ok(super::LogFormat::Json),
        _ => Err(raw.invalid("must be text or json")),
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

/// A duration >= 0 (see [`parse_duration_or_zero_text`]).
pub fn parse_duration_or_zero(raw: &Raw) -> Result<Duration, ConfigError> {
    parse_duration_or_zero_text(raw.text).map_err(|why| raw.invalid(why))
}

/// A duration > 0 given as plain seconds (`30`, `2.5`), humantime (`90s`, `1m30s`, `500ms`) or
/// ISO-8601 (`PT1M30S`). The error says what is wrong and what is allowed.
pub fn parse_duration_text(text: &str) -> Result<Duration, String> {
    let duration = duration_text(text, "> 0")?;
    if duration.is_zero() {
        return Err(format!("must be > 0: {DURATION_FORMS}"));
    }
    Ok(duration)
}

/// Like [`parse_duration_text`], but zero (`0`, `0s`, `PT0S`) is allowed.
pub fn parse_duration_or_zero_text(text: &str) -> Result<Duration, String> {
    duration_text(text, ">= 0")
}

/// A duration >= 0 in any of the accepted forms; `bound` is the lower bound the caller
/// enforces, for the message about negative values.
fn duration_text(text: &str, bound: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.starts_with(['P', 'p']) {
        iso8601_total(t).map_err(|why| {
            format!(
                "is not a valid ISO-8601 duration ({why}); expected P[nD][T[nH][nM][n[.n]S]], \
                 e.g. PT1M30S"
            )
        })
    } else if let Ok(secs) = t.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!("must be {bound}: {DURATION_FORMS}"));
        }
        Duration::try_from_secs_f64(secs).map_err(|_| "is too large".to_string())
    } else {
        humantime::parse_duration(t).map_err(|_| format!("must be {DURATION_FORMS}"))
    }
}

/// An ISO-8601 duration `P[nD][T[nH][nM][n[.n]S]]`.
///
/// Years, months and weeks are rejected (their length is ambiguous or rarely wanted for a load
/// test); only seconds may have a fraction. `P` and `PT` alone, negative values and a zero
/// total are errors. Letters are case-insensitive.
pub fn parse_iso8601_duration(text: &str) -> Result<Duration, String> {
    let total = iso8601_total(text)?;
    if total.is_zero() {
        return Err("must be > 0".to_string());
    }
    Ok(total)
}

/// [`parse_iso8601_duration`] without the zero check.
fn iso8601_total(text: &str) -> Result<Duration, String> {
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
    weights.sort_by_key(|&(c, _)| Command::ALL.iter().position(|&x| x == c));
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

const KEY_DISTRIBUTION_FORMS: &str = "uniform, sequential, gaussian[:STDDEV] or zipf[:EXPONENT]";

/// `uniform`, `sequential`, `gaussian[:STDDEV]` (0 < STDDEV <= 10, a fraction of the key
/// range, default 0.15) or `zipf[:EXPONENT]` (0 < EXPONENT <= 5, default 0.99). Names are
/// case-insensitive.
pub fn parse_key_distribution(raw: &Raw) -> Result<KeyDistribution, ConfigError> {
    let text = raw.text.trim();
    let (name, param) = match text.split_once(':') {
        Some((name, param)) => (name.trim(), Some(param.trim())),
        None => (text, None),
    };
    // A parameter in (0, max]; `None` when not given.
    let number = |what: &str, max: f64| -> Result<Option<f64>, ConfigError> {
        let Some(param) = param else {
            return Ok(None);
        };
        match param.parse::<f64>() {
            Ok(x) if x.is_finite() && x > 0.0 && x <= max => Ok(Some(x)),
            _ => Err(raw.invalid(format!(
                "{} must be a number > 0 and <= {max}, got '{param}'",
                what
            ))),
        }
    };
    let no_param = |name: &str| -> Result<(), ConfigError> {
        match param {
            Some(_) => Err(raw.invalid(format!(
                "{name} takes no parameter; must be {KEY_DISTRIBUTION_FORMS}"
            ))),
            None => Ok(()),
        }
    };
    match name.to_ascii_lowercase().as_str() {
        "uniform" => no_param("uniform").map(|()| KeyDistribution::Uniform),
        "sequential" => no_param("sequential").map(|()| KeyDistribution::Sequential),
        "gaussian" => Ok(KeyDistribution::Gaussian {
            stddev: number("the gaussian STDDEV (a fraction of key_range)", 10.0)?
                .unwrap_or(KeyDistribution::DEFAULT_STDDEV),
        }),
        "zipf" => Ok(KeyDistribution::Zipf {
            exponent: number("the zipf EXPONENT", 5.0)?
                .unwrap_or(KeyDistribution::DEFAULT_EXPONENT),
        }),
        _ => Err(raw.invalid(format!("must be {KEY_DISTRIBUTION_FORMS}"))),
    }
}

const VALUE_SIZES_FORMS: &str = "SIZE:WEIGHT pairs like 32:9,1024:1";

/// Weighted value sizes `SIZE:WEIGHT,...`: sizes from 1 to 512 MiB, each at most once,
/// integer weights >= 1, at least one pair. Kept in the given order.
pub fn parse_value_sizes(raw: &Raw) -> Result<Vec<(usize, u32)>, ConfigError> {
    let mut pairs: Vec<(usize, u32)> = Vec::new();
    for item in raw.text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (size, weight) = item.split_once(':').ok_or_else(|| {
            raw.invalid(format!(
                "'{item}' is not SIZE:WEIGHT; must be {VALUE_SIZES_FORMS}"
            ))
        })?;
        let (size, weight) = (size.trim(), weight.trim());
        let size: usize = match size.parse::<u64>() {
            Ok(n) if (1..=MAX_VALUE_SIZE).contains(&n) => n as usize,
            _ => {
                return Err(raw.invalid(format!(
                    "size '{size}' must be an integer >= 1 and <= {MAX_VALUE_SIZE} (512 MiB)"
                )));
            }
        };
        let weight: u32 = match weight.parse::<u32>() {
            Ok(w) if w >= 1 => w,
            _ => {
                return Err(raw.invalid(format!(
                    "weight '{weight}' of size {size} must be an integer >= 1"
                )));
            }
        };
        if pairs.iter().any(|&(s, _)| s == size) {
            return Err(raw.invalid(format!("gives size {size} more than once")));
        }
        pairs.push((size, weight));
    }
    if pairs.is_empty() {
        return Err(raw.invalid(format!("must be {VALUE_SIZES_FORMS}")));
    }
    Ok(pairs)
}

/// Weighted sizes as the text [`parse_value_sizes`] reads: `32:9,1024:1`.
pub fn value_sizes_text(pairs: &[(usize, u32)]) -> String {
    pairs
        .iter()
        .map(|(size, weight)| format!("{size}:{weight}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A TTL range `MIN-MAX` in seconds, 1 <= MIN <= MAX <= [`MAX_EXPIRY_SECS`].
pub fn parse_expiry_range(raw: &Raw) -> Result<(u64, u64), ConfigError> {
    let allowed = format!(
        "must be MIN-MAX seconds with 1 <= MIN <= MAX <= {MAX_EXPIRY_SECS} (100 years), \
         e.g. 60-3600"
    );
    let (min, max) = raw
        .text
        .trim()
        .split_once('-')
        .ok_or_else(|| raw.invalid(allowed.as_str()))?;
    let bound = |t: &str| t.trim().parse::<u64>().ok();
    match (bound(min), bound(max)) {
        (Some(min), Some(max)) if 1 <= min && min <= max && max <= MAX_EXPIRY_SECS => {
            Ok((min, max))
        }
        _ => Err(raw.invalid(allowed)),
    }
}

/// A comma-separated list of distinct, non-blank channel names, at least one.
pub fn parse_channels(raw: &Raw) -> Result<Vec<String>, ConfigError> {
    let mut channels: Vec<String> = Vec::new();
    for name in raw.text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if channels.iter().any(|c| c == name) {
            return Err(raw.invalid(format!("lists channel '{name}' more than once")));
        }
        channels.push(name.to_string());
    }
    if channels.is_empty() {
        return Err(raw.invalid("must list at least one channel name"));
    }
    Ok(channels)
}

/// Splits `;`-separated command templates, ignoring `;` inside double quotes (where `\"` is
/// a quote, not the end of one). Segments are trimmed; blank ones are dropped.
pub fn split_templates(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// A template's whitespace-separated arguments. Double quotes group an argument with spaces
/// (`""` is an empty argument); inside them `\"` is a quote and `\\` a backslash.
pub fn split_args(template: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut current = String::new();
    // Whether `current` is an argument, even an empty one (`""`).
    let mut started = false;
    let mut quoted = false;
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            '\\' if quoted => match chars.next() {
                Some(next @ ('"' | '\\')) => current.push(next),
                Some(next) => {
                    current.push('\\');
                    current.push(next);
                }
                None => current.push('\\'),
            },
            c if c.is_whitespace() && !quoted => {
                if started {
                    args.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            c => {
                current.push(c);
                started = true;
            }
        }
    }
    if quoted {
        return Err("has an unclosed double quote".to_string());
    }
    if started {
        args.push(current);
    }
    Ok(args)
}

/// The first `__word__` in `arg` that is not one of [`PLACEHOLDERS`]: two underscores, a
/// letter, letters and digits (single underscores between them), two underscores.
pub fn unknown_placeholder(arg: &str) -> Option<&str> {
    let b = arg.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        if !arg[i..].starts_with("__") {
            i += 1;
            continue;
        }
        if let Some(known) = PLACEHOLDERS.iter().find(|p| arg[i..].starts_with(*p)) {
            i += known.len();
            continue;
        }
        let mut j = i + 2;
        if j < b.len() && b[j].is_ascii_alphabetic() {
            while j < b.len() && b[j].is_ascii_alphanumeric() {
                j += 1;
            }
            while j + 1 < b.len() && b[j] == b'_' && b[j + 1].is_ascii_alphanumeric() {
                j += 1;
                while j < b.len() && b[j].is_ascii_alphanumeric() {
                    j += 1;
                }
            }
            if arg[j..].starts_with("__") {
                return Some(&arg[i..j + 2]);
            }
        }
        i += 1;
    }
    None
}

/// `--command` templates, `;`-separated (see [`split_templates`] and [`split_args`]), each
/// with weight 1. The first argument is the command name and must not hold a placeholder;
/// placeholders elsewhere must be known ones.
pub fn parse_commands(raw: &Raw) -> Result<Vec<CommandTemplate>, ConfigError> {
    let mut templates = Vec::new();
    for text in split_templates(raw.text) {
        let args =
            split_args(text).map_err(|why| raw.invalid(format!("--command '{text}' {why}")))?;
        for arg in &args {
            if let Some(unknown) = unknown_placeholder(arg) {
                return Err(raw.invalid(format!(
                    "unknown placeholder {unknown} in --command '{text}': allowed are {}",
                    PLACEHOLDERS.join(", ")
                )));
            }
        }
        let name = args.first().map_or("", String::as_str);
        if name.is_empty() || PLACEHOLDERS.iter().any(|p| name.contains(p)) {
            return Err(raw.invalid(format!(
                "--command '{text}' must start with a command name, not a placeholder or \"\""
            )));
        }
        templates.push(CommandTemplate {
            text: text.to_string(),
            args,
            weight: 1.0,
        });
    }
    if templates.is_empty() {
        return Err(
            raw.invalid("must give at least one command template, like 'SET __key__ __data__'")
        );
    }
    Ok(templates)
}

/// Templates as the text [`parse_commands`] reads: `SET __key__ __data__; GET __key__`.
pub fn templates_text(templates: &[CommandTemplate]) -> String {
    templates
        .iter()
        .map(|t| t.text.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Comma-separated `--command-weight` values: finite numbers > 0, at least one.
pub fn parse_command_weights(raw: &Raw) -> Result<Vec<f64>, ConfigError> {
    let mut weights = Vec::new();
    for item in raw.text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.parse::<f64>() {
            Ok(w) if w.is_finite() && w > 0.0 => weights.push(w),
            _ => {
                return Err(raw.invalid(format!("weight '{item}' must be a number > 0")));
            }
        }
    }
    if weights.is_empty() {
        return Err(raw.invalid("must list at least one weight, one per --command"));
    }
    Ok(weights)
}

/// Weights as the text [`parse_command_weights`] reads: `1,2.5`.
pub fn command_weights_text(weights: &[f64]) -> String {
    weights
        .iter()
        .map(f64::to_string)
        .collect::<Vec<_>>()
        .join(",")
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
        assert!(err.to_string().contains(">= 1 and <= 100000"), "{err}");
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
        let err = parse_operations(&raw("workload.operations", "SET,FLY"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("FLY") && err.contains(&Command::all_names()),
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
            ("SET:1,FLY:1", "FLY"),
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
    fn bounded_integers_name_both_bounds() {
        let err = parse_uint::<u32>(
            &raw("workload.transaction_size", "0"),
            1,
            MAX_TRANSACTION_SIZE,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "invalid value '0' for workload.transaction_size (--transaction-size / \
             TEST_TRANSACTION_SIZE, from env): must be an integer >= 1 and <= 10000"
        );
        assert_eq!(
            parse_uint::<u32>(&raw("workload.hash_fields", "100000"), 1, MAX_HASH_FIELDS).unwrap(),
            100_000
        );
        assert!(
            parse_uint::<u32>(&raw("workload.hash_fields", "100001"), 1, MAX_HASH_FIELDS).is_err()
        );
    }

    #[test]
    fn durations_that_may_be_zero() {
        let ok = |s: &str| parse_duration_or_zero_text(s).unwrap();
        for zero in ["0", "0.0", "0s", "0ms", "PT0S", "P0D"] {
            assert_eq!(ok(zero), Duration::ZERO, "{zero}");
        }
        assert_eq!(ok("5ms"), Duration::from_millis(5));
        assert_eq!(ok("0.25"), Duration::from_millis(250));
        assert_eq!(ok("PT1S"), Duration::from_secs(1));
        for bad in ["-1", "-0.5", "PT-1S", "P", "soon", "NaN", "inf"] {
            assert!(parse_duration_or_zero_text(bad).is_err(), "{bad} accepted");
        }
        assert!(
            parse_duration_or_zero_text("-1")
                .unwrap_err()
                .contains(">= 0")
        );
        // The strict parser still refuses zero.
        assert!(parse_duration_text("0").is_err());
        assert!(parse_iso8601_duration("PT0S").is_err());
        let err = parse_duration_or_zero(&raw("workload.processing_time", "-2"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("'-2' for workload.processing_time"), "{err}");
    }

    #[test]
    fn key_distributions_with_and_without_parameters() {
        let ok = |s: &str| parse_key_distribution(&raw("workload.key_distribution", s)).unwrap();
        assert_eq!(ok("uniform"), KeyDistribution::Uniform);
        assert_eq!(ok(" Sequential "), KeyDistribution::Sequential);
        assert_eq!(ok("gaussian"), KeyDistribution::Gaussian { stddev: 0.15 });
        assert_eq!(
            ok("gaussian:0.3"),
            KeyDistribution::Gaussian { stddev: 0.3 }
        );
        assert_eq!(
            ok("GAUSSIAN: 10"),
            KeyDistribution::Gaussian { stddev: 10.0 }
        );
        assert_eq!(ok("zipf"), KeyDistribution::Zipf { exponent: 0.99 });
        assert_eq!(ok("zipf:1.2"), KeyDistribution::Zipf { exponent: 1.2 });
        assert_eq!(ok("zipf:5"), KeyDistribution::Zipf { exponent: 5.0 });
        // The display form is what the parser reads.
        for d in [
            KeyDistribution::Uniform,
            KeyDistribution::Sequential,
            KeyDistribution::Gaussian { stddev: 0.15 },
            KeyDistribution::Zipf { exponent: 1.5 },
        ] {
            assert_eq!(ok(&d.to_string()), d);
        }
        for (bad, why) in [
            (
                "pareto",
                "uniform, sequential, gaussian[:STDDEV] or zipf[:EXPONENT]",
            ),
            ("", "uniform, sequential"),
            ("uniform:1", "uniform takes no parameter"),
            ("sequential:2", "sequential takes no parameter"),
            (
                "gaussian:0",
                "STDDEV (a fraction of key_range) must be a number > 0 and <= 10",
            ),
            ("gaussian:10.5", "<= 10"),
            ("gaussian:", "got ''"),
            ("gaussian:NaN", "> 0"),
            ("zipf:0", "EXPONENT must be a number > 0 and <= 5"),
            ("zipf:-1", "> 0"),
            ("zipf:5.01", "<= 5"),
            ("zipf:x", "got 'x'"),
        ] {
            let err = parse_key_distribution(&raw("workload.key_distribution", bad))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(
                err.contains("workload.key_distribution (--key-distribution / TEST_KEY_DISTRIBUTION, from env)"),
                "{err}"
            );
        }
    }

    #[test]
    fn weighted_value_sizes() {
        let ok = |s: &str| parse_value_sizes(&raw("workload.value_sizes", s)).unwrap();
        assert_eq!(ok("32:9,1024:1"), vec![(32, 9), (1024, 1)]);
        assert_eq!(ok(" 1024 : 1 , 32:9, "), vec![(1024, 1), (32, 9)]);
        assert_eq!(ok("536870912:1"), vec![(536_870_912, 1)]);
        assert_eq!(value_sizes_text(&ok("32:9, 1024:1")), "32:9,1024:1");
        for (bad, why) in [
            ("", "SIZE:WEIGHT pairs like 32:9,1024:1"),
            (" , ", "SIZE:WEIGHT pairs"),
            ("32", "'32' is not SIZE:WEIGHT"),
            ("0:1", "size '0' must be an integer >= 1 and <= 536870912"),
            ("536870913:1", "size '536870913'"),
            ("-5:1", "size '-5'"),
            ("32:0", "weight '0' of size 32 must be an integer >= 1"),
            ("32:1.5", "weight '1.5'"),
            ("32:-1", "weight '-1'"),
            ("32:1,32:2", "gives size 32 more than once"),
        ] {
            let err = parse_value_sizes(&raw("workload.value_sizes", bad))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(
                err.contains("--value-sizes / TEST_VALUE_SIZES, from env"),
                "{err}"
            );
        }
    }

    #[test]
    fn expiry_ranges() {
        let ok = |s: &str| parse_expiry_range(&raw("workload.expiry_range", s)).unwrap();
        assert_eq!(ok("60-3600"), (60, 3600));
        assert_eq!(ok(" 1 - 1 "), (1, 1));
        assert_eq!(ok(&format!("1-{MAX_EXPIRY_SECS}")), (1, MAX_EXPIRY_SECS));
        for bad in [
            "60",
            "0-10",
            "10-5",
            "a-b",
            "-1-5",
            "5-",
            "-5",
            "1.5-3",
            "60-3600-7",
            &format!("1-{}", MAX_EXPIRY_SECS + 1),
        ] {
            let err = parse_expiry_range(&raw("workload.expiry_range", bad))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("must be MIN-MAX seconds with 1 <= MIN <= MAX"),
                "{bad}: {err}"
            );
            assert!(
                err.contains(&format!("'{bad}' for workload.expiry_range")),
                "{err}"
            );
        }
    }

    #[test]
    fn channel_lists() {
        let ok = |s: &str| parse_channels(&raw("workload.pubsub_channels", s)).unwrap();
        assert_eq!(ok("test_channel"), vec!["test_channel"]);
        assert_eq!(ok(" a , b.c,,news:* "), vec!["a", "b.c", "news:*"]);
        let err = parse_channels(&raw("workload.pubsub_channels", "a,b,a"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lists channel 'a' more than once"), "{err}");
        let err = parse_channels(&raw("workload.pubsub_channels", " , "))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least one channel name"), "{err}");
    }

    #[test]
    fn templates_split_on_semicolons_outside_quotes() {
        assert_eq!(
            split_templates("SET __key__ __data__; GET __key__"),
            vec!["SET __key__ __data__", "GET __key__"]
        );
        assert_eq!(
            split_templates(r#" SET k "a;b" ;; ECHO "x\";y" ; "#),
            vec![r#"SET k "a;b""#, r#"ECHO "x\";y""#]
        );
        assert!(split_templates(" ; ").is_empty());
    }

    #[test]
    fn template_arguments_and_quotes() {
        let args = |s: &str| split_args(s).unwrap();
        assert_eq!(
            args("SET  __key__\t__data__"),
            vec!["SET", "__key__", "__data__"]
        );
        assert_eq!(
            args(r#"HSET user:__key__ name "John Smith""#),
            vec!["HSET", "user:__key__", "name", "John Smith"]
        );
        assert_eq!(args(r#"SET k """#), vec!["SET", "k", ""]);
        assert_eq!(
            args(r#"ECHO "say \"hi\" \\ \n""#),
            vec!["ECHO", r#"say "hi" \ \n"#]
        );
        assert_eq!(args(r#"ECHO a"b c"d"#), vec!["ECHO", "ab cd"]);
        assert_eq!(args(r"ECHO a\b"), vec!["ECHO", r"a\b"]);
        assert!(
            split_args(r#"SET k "open"#)
                .unwrap_err()
                .contains("unclosed double quote")
        );
    }

    #[test]
    fn placeholders_known_and_unknown() {
        for ok in [
            "__key__",
            "user:__key__:x",
            "__key____data__",
            "__rand_int__",
            "a__b",
            "___key__",
            "__1__",
            "plain",
            "__",
            "____",
            "__key",
        ] {
            assert_eq!(unknown_placeholder(ok), None, "{ok}");
        }
        for (arg, unknown) in [
            ("__foo__", "__foo__"),
            ("x:__KEY__", "__KEY__"),
            ("__rand_float__", "__rand_float__"),
            ("__key__:__value__", "__value__"),
            ("__foo__bar__", "__foo__"),
            ("__a1__", "__a1__"),
        ] {
            assert_eq!(unknown_placeholder(arg), Some(unknown), "{arg}");
        }
    }

    #[test]
    fn command_templates_parse_and_validate() {
        let templates = parse_commands(&raw(
            "workload.commands",
            r#"SET __key__ __data__; HSET h:__key__ __field__ "two words"; INCRBY c __rand_int__"#,
        ))
        .unwrap();
        assert_eq!(templates.len(), 3);
        assert_eq!(templates[0].text, "SET __key__ __data__");
        assert_eq!(templates[0].args, vec!["SET", "__key__", "__data__"]);
        assert_eq!(templates[1].args[3], "two words");
        assert_eq!(templates[1].text, r#"HSET h:__key__ __field__ "two words""#);
        assert!(templates.iter().all(|t| t.weight == 1.0));
        assert_eq!(
            templates_text(&templates),
            r#"SET __key__ __data__; HSET h:__key__ __field__ "two words"; INCRBY c __rand_int__"#
        );
        // The text form reads back to the same templates.
        assert_eq!(
            parse_commands(&raw("workload.commands", &templates_text(&templates))).unwrap(),
            templates
        );

        let err = parse_commands(&raw("workload.commands", "GET __key__; SET __foo__ 1"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid value 'GET __key__; SET __foo__ 1' for workload.commands (--command / \
             TEST_COMMANDS, from env): unknown placeholder __foo__ in --command 'SET __foo__ 1': \
             allowed are __key__, __data__, __field__, __rand_int__"
        );
        for (bad, why) in [
            ("", "at least one command template"),
            (" ; ", "at least one command template"),
            (
                r#"SET k "v"#,
                "--command 'SET k \"v' has an unclosed double quote",
            ),
            ("__key__ x", "must start with a command name"),
            (r#""" x"#, "must start with a command name"),
            ("SET user:__id__", "unknown placeholder __id__"),
        ] {
            let err = parse_commands(&raw("workload.commands", bad))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn command_weights_parse_and_validate() {
        let ok = |s: &str| parse_command_weights(&raw("workload.command_weights", s)).unwrap();
        assert_eq!(ok("1, 2.5,3"), vec![1.0, 2.5, 3.0]);
        assert_eq!(command_weights_text(&ok("1,2.5")), "1,2.5");
        for (bad, why) in [
            ("1,0", "weight '0' must be a number > 0"),
            ("-1", "weight '-1'"),
            ("x", "weight 'x'"),
            ("inf", "weight 'inf'"),
            (" , ", "at least one weight"),
        ] {
            let err = parse_command_weights(&raw("workload.command_weights", bad))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(
                err.contains("--command-weight / TEST_COMMAND_WEIGHTS"),
                "{err}"
            );
        }
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
