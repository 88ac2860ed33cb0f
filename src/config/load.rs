//! Reading every source, merging by precedence and validating into a [`RunnerConfig`]; also the
//! command-line definition and the `--show-config` / `--save-config` renderers.
//!
//! Each source becomes a layer of `field key -> text`; an empty text is dropped, so it means
//! "not set" everywhere. The winning text of each field is parsed exactly once, so an error
//! names the one source that supplied the bad value. The process environment is passed in as a
//! lookup function and `.env` is read without touching the process environment, which keeps
//! loading a pure function of its inputs (and testable in parallel).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Arg, ArgAction, ArgMatches, ColorChoice};
use serde_json::{Number, Value};

use super::fields::{self, FIELDS, FieldSpec, Kind, SECTIONS};
use super::parse::{
    self, ConfigError, MAX_HASH_FIELDS, MAX_IO_THREADS, MAX_PIPELINE_SIZE, MAX_TRANSACTION_SIZE,
    MAX_VALUE_SIZE, MAX_WORKERS, Raw, parse_bool, parse_channels, parse_command_weights,
    parse_commands, parse_duration, parse_duration_or_zero, parse_expiry_range, parse_host,
    parse_host_ports, parse_key_distribution, parse_log_format, parse_log_level, parse_operations,
    parse_positive_f64, parse_protocol, parse_string, parse_uint, parse_value_sizes, parse_weights,
};
use super::profile::{self, Profile};
use super::{
    ClusterConfig, CommandTemplate, IdentityConfig, LogFormat, OtlpConfig, OtlpProtocol,
    OutputConfig, Protocol, RedisConfig, RetryPolicy, RunnerConfig, Secret, SentinelConfig, Source,
    TestConfig, ValueSize, WorkloadConfig, WorkloadKind,
};
use crate::command::Command;

/// What the command line asks for.
#[derive(Debug)]
pub enum CliAction {
    /// Run the load test.
    Run(RunnerConfig),
    /// `--show-config`: print [`render_show_config`] and exit 0.
    ShowConfig(RunnerConfig),
    /// `--save-config PATH`: write [`render_yaml`] to PATH (see [`save_config`]) and exit 0.
    /// The path is already joined to the working directory.
    SaveConfig(RunnerConfig, PathBuf),
    /// `list-profiles`: print [`profile::list_profiles`].
    ListProfiles,
    /// `describe-profile NAME`: print [`profile::describe_profile`]; the name is known to exist.
    DescribeProfile(String),
    /// `test-connection`: connect with this config, report, exit 0 or 1.
    TestConnection(RunnerConfig),
    /// `--help` / `--version`: print this text to stdout and exit 0.
    Help(String),
}

/// Environment / `.env` variable naming the config file (like `--config-file`).
pub const CONFIG_FILE_ENV: &str = "CONFIG_FILE";
const CONFIG_FILE_ARG: &str = "config-file";
const SHOW_CONFIG_ARG: &str = "show-config";
const SAVE_CONFIG_ARG: &str = "save-config";
const PROFILE_NAME_ARG: &str = "name";

/// Exit codes, shown after `--help` (and mapped in `main`).
pub const EXIT_CODES_HELP: &str = "Exit codes:\n  \
    0  success\n  \
    1  the run or the connection test failed\n  \
    2  bad input: unknown flag, invalid value or unreadable config file";

/// The command-line definition, generated from [`FIELDS`].
///
/// Field flags carry no clap defaults and no clap `env`: a value in the matches then always
/// means "the user typed it", and environment / `.env` precedence stays in this module.
pub fn cli_command() -> clap::Command {
    let mut cmd = clap::Command::new("redis-loadgen")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Multi-threaded Redis load generator")
        .color(ColorChoice::Never)
        .args_override_self(true)
        .after_help(EXIT_CODES_HELP)
        .arg(
            Arg::new(CONFIG_FILE_ARG)
                .long(CONFIG_FILE_ARG)
                .value_name("PATH")
                .global(true)
                .help(format!(
                    "YAML or JSON config file (chosen by extension .yaml/.yml/.json) \
                     [env: {CONFIG_FILE_ENV}]"
                )),
        )
        .arg(
            Arg::new(SHOW_CONFIG_ARG)
                .long(SHOW_CONFIG_ARG)
                .action(ArgAction::SetTrue)
                .help("Print the resolved configuration with the source of each value, then exit"),
        )
        .arg(
            Arg::new(SAVE_CONFIG_ARG)
                .long(SAVE_CONFIG_ARG)
                .value_name("PATH")
                .conflicts_with(SHOW_CONFIG_ARG)
                .help("Write the resolved configuration as YAML (without secrets), then exit"),
        )
        .subcommand(clap::Command::new("list-profiles").about("List the workload profiles"))
        .subcommand(
            clap::Command::new("describe-profile")
                .about("Show the values a workload profile sets")
                .arg(
                    Arg::new(PROFILE_NAME_ARG)
                        .value_name("NAME")
                        .required(true)
                        .help("Profile name (see list-profiles)"),
                ),
        )
        .subcommand(
            clap::Command::new("test-connection")
                .about("Connect with the configured settings, report the server, and exit"),
        );
    for spec in FIELDS {
        cmd = cmd.arg(field_arg(spec));
    }
    // A repeated flag takes its last value, also after a subcommand (the setting is per command).
    cmd.mut_subcommands(|sub| sub.args_override_self(true))
}

fn field_arg(spec: &'static FieldSpec) -> Arg {
    let mut help = format!("{} [env: {}]", spec.help, spec.env);
    if spec.repeatable {
        help.push_str(" [repeatable]");
    }
    if let Some(default) = spec.default {
        let shown = if spec.secret { "***" } else { default };
        help.push_str(&format!(" [default: {shown}]"));
    }
    let arg = Arg::new(spec.key)
        .long(spec.flag)
        .global(true)
        .help(help)
        .help_heading(section_heading(spec.section()));
    if spec.is_bool {
        // `--quiet` alone means true; `--quiet=false` needs the `=` so a following word is
        // never taken as the flag's value.
        arg.value_name("BOOL")
            .num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true")
    } else if spec.repeatable {
        // Each occurrence adds one item; the loader joins them (see `cli_layer`).
        let name = if spec.kind == Kind::Templates {
            "TEMPLATE"
        } else {
            "VALUE"
        };
        arg.value_name(name)
            .num_args(1)
            .action(ArgAction::Append)
            .allow_negative_numbers(true)
    } else {
        // Negative numbers are taken as values so that `--seed -1` gets the field's own
        // error message instead of "unexpected argument".
        arg.value_name("VALUE")
            .num_args(1)
            .allow_negative_numbers(true)
    }
}

fn section_heading(section: &str) -> &'static str {
    match section {
        "redis" => "Redis",
        "test" => "Test",
        "workload" => "Workload",
        "output" => "Output",
        _ => "Identity",
    }
}

/// Parses the command line and loads the configuration.
///
/// `args` includes the program name. `env` looks up process environment variables (`main`
/// passes `|k| std::env::var(k).ok()`); `cwd` is where `.env` is read and relative paths
/// (`--config-file`, `--save-config`) are resolved.
pub fn load_from_args<I, T>(
    args: I,
    env: &dyn Fn(&str) -> Option<String>,
    cwd: &Path,
) -> Result<CliAction, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = match cli_command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    Ok(CliAction::Help(e.to_string()))
                }
                _ => Err(usage_error(&e)),
            };
        }
    };
    // Global flags are visible in the subcommand's matches wherever they were typed.
    let (subcommand, leaf) = match matches.subcommand() {
        Some((name, sub)) => (Some(name), sub),
        None => (None, &matches),
    };
    match subcommand {
        Some("list-profiles") => return Ok(CliAction::ListProfiles),
        Some("describe-profile") => {
            let name = leaf
                .get_one::<String>(PROFILE_NAME_ARG)
                .cloned()
                .unwrap_or_default();
            if profile::find(&name).is_none() {
                return Err(ConfigError::UnknownProfile {
                    name,
                    context: "describe-profile".to_string(),
                    known: profile::names(),
                });
            }
            return Ok(CliAction::DescribeProfile(name));
        }
        _ => {}
    }
    let cli = cli_layer(leaf);
    let config_file = string_arg(leaf, CONFIG_FILE_ARG);
    let cfg = resolve(cli, config_file.as_deref(), env, cwd)?;
    if subcommand == Some("test-connection") {
        return Ok(CliAction::TestConnection(cfg));
    }
    if let Some(path) = string_arg(&matches, SAVE_CONFIG_ARG) {
        return Ok(CliAction::SaveConfig(cfg, cwd.join(path)));
    }
    if matches.get_flag(SHOW_CONFIG_ARG) {
        return Ok(CliAction::ShowConfig(cfg));
    }
    Ok(CliAction::Run(cfg))
}

/// [`load_from_args`] with the real process arguments, environment and working directory.
pub fn load_from_process() -> Result<CliAction, ConfigError> {
    let cwd = std::env::current_dir().map_err(|error| ConfigError::Io {
        context: "cannot determine the working directory".to_string(),
        error,
    })?;
    load_from_args(std::env::args_os(), &|k| std::env::var(k).ok(), &cwd)
}

/// The field values typed on the command line. A repeatable flag's occurrences are joined
/// with its separator into the one text the other sources give (blank ones are dropped).
fn cli_layer(m: &ArgMatches) -> Layer {
    FIELDS
        .iter()
        .filter_map(|f| {
            let value = if f.repeatable {
                m.get_many::<String>(f.key)?
                    .map(|v| v.trim())
                    .filter(|v| !v.is_empty())
                    .collect::<Vec<_>>()
                    .join(f.separator())
            } else {
                m.get_one::<String>(f.key)?.clone()
            };
            non_empty(&value).then_some((f.key, value))
        })
        .collect()
}

fn string_arg(m: &ArgMatches, id: &str) -> Option<String> {
    m.get_one::<String>(id).filter(|v| non_empty(v)).cloned()
}

/// Clap's multi-line error as one line: the message (with its continuation lines, e.g. the
/// missing argument's name) and tips, then a pointer to `--help`; the usage block is dropped.
fn usage_error(e: &clap::Error) -> ConfigError {
    let text = e.to_string();
    let mut parts: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if line.is_empty() {
            continue;
        }
        let line = line.strip_prefix("error: ").unwrap_or(line);
        match line.strip_prefix("tip: ") {
            Some(tip) => parts.push(format!("(tip: {tip})")),
            None => parts.push(line.to_string()),
        }
    }
    if parts.is_empty() {
        parts.push("invalid command line".to_string());
    }
    ConfigError::Usage(format!("{}; see --help", parts.join(" ")))
}

/// Field values of one source, by field key; never holds empty text.
type Layer = BTreeMap<&'static str, String>;

/// Empty (or blank) values mean "not set" in every source.
fn non_empty(text: &str) -> bool {
    !text.trim().is_empty()
}

/// Builds the config from an already-parsed CLI layer and the other sources.
fn resolve(
    cli: Layer,
    config_file_flag: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    cwd: &Path,
) -> Result<RunnerConfig, ConfigError> {
    let env_layer: Layer = FIELDS
        .iter()
        .filter_map(|f| env(f.env).filter(|v| non_empty(v)).map(|v| (f.key, v)))
        .collect();
    let dotenv = read_dotenv(&cwd.join(".env"))?;
    let dotenv_layer: Layer = FIELDS
        .iter()
        .filter_map(|f| dotenv.get(f.env).map(|v| (f.key, v.clone())))
        .collect();
    let config_file = config_file_flag
        .map(str::to_string)
        .or_else(|| env(CONFIG_FILE_ENV).filter(|v| non_empty(v)))
        .or_else(|| dotenv.get(CONFIG_FILE_ENV).cloned());
    let file_layer = match &config_file {
        Some(path) => read_config_file(path, &cwd.join(path))?,
        None => Layer::new(),
    };
    // The profile name comes from the layers above the profile itself.
    let mut layers = vec![
        (Source::Cli, cli),
        (Source::Env, env_layer),
        (Source::DotEnv, dotenv_layer),
        (Source::File, file_layer),
        (Source::Default, default_layer()),
    ];
    let profile = {
        let (name, source) =
            pick(&layers, "workload.profile").expect("workload.profile has a built-in default");
        let name = name.trim();
        profile::find(name).ok_or_else(|| {
            let spec = fields::spec("workload.profile");
            ConfigError::UnknownProfile {
                name: name.to_string(),
                context: format!(
                    "{} (--{} / {}, from {source})",
                    spec.key, spec.flag, spec.env
                ),
                known: profile::names(),
            }
        })?
    };
    layers.insert(layers.len() - 1, (Source::Profile, profile_layer(profile)));
    build(&merge(&layers), profile)
}

/// The configuration with nothing set: the built-in defaults under the default profile (no
/// command line, environment, `.env` or config file).
pub fn builtin_config() -> RunnerConfig {
    let name = fields::spec("workload.profile")
        .default
        .expect("workload.profile has a built-in default");
    let profile = profile::find(name).expect("the default profile exists");
    let layers = [
        (Source::Profile, profile_layer(profile)),
        (Source::Default, default_layer()),
    ];
    build(&merge(&layers), profile).expect("the built-in defaults are a valid configuration")
}

fn default_layer() -> Layer {
    FIELDS
        .iter()
        .filter_map(|f| f.default.map(|d| (f.key, d.to_string())))
        .collect()
}

fn profile_layer(profile: &Profile) -> Layer {
    profile
        .values
        .iter()
        .map(|&(key, value)| (key, value.to_string()))
        .collect()
}

/// Every field's winning text, from the highest-precedence layer that has it.
fn merge(layers: &[(Source, Layer)]) -> Merged {
    Merged(
        FIELDS
            .iter()
            .filter_map(|f| pick(layers, f.key).map(|(v, s)| (f.key, (v.to_string(), s))))
            .collect(),
    )
}

/// The value of `key` from the first (highest-precedence) layer that has it.
fn pick<'l>(layers: &'l [(Source, Layer)], key: &str) -> Option<(&'l str, Source)> {
    layers
        .iter()
        .find_map(|(source, layer)| layer.get(key).map(|v| (v.as_str(), *source)))
}

/// Reads `.env` as a map without loading it into the process environment. A missing file is
/// an empty map; variables this program does not know are kept here and ignored later.
/// (dotenvy still expands `$NAME` in unquoted and double-quoted values from earlier lines and
/// the real environment; single-quote a value that contains `$`.)
fn read_dotenv(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let dotenv_error = |message: String| ConfigError::DotEnv {
        path: path.display().to_string(),
        message,
    };
    let iter = match dotenvy::from_path_iter(path) {
        Ok(iter) => iter,
        Err(e) if e.not_found() => return Ok(HashMap::new()),
        Err(e) => return Err(dotenv_error(e.to_string())),
    };
    let mut vars = HashMap::new();
    for item in iter {
        match item {
            Ok((key, value)) => {
                if non_empty(&value) {
                    vars.insert(key, value);
                } else {
                    // A later empty assignment unsets an earlier one, as in a shell.
                    vars.remove(&key);
                }
            }
            // dotenvy's message quotes the whole line, which may hold a password: name only
            // the variable.
            Err(dotenvy::Error::LineParse(line, _)) => {
                let name = line.split('=').next().unwrap_or_default().trim();
                let name = name.strip_prefix("export ").unwrap_or(name).trim();
                let shown = if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                {
                    format!("malformed line for {name}")
                } else {
                    "malformed line".to_string()
                };
                return Err(dotenv_error(format!(
                    "{shown} (expected NAME=value, quotes closed)"
                )));
            }
            Err(e) => return Err(dotenv_error(e.to_string())),
        }
    }
    Ok(vars)
}

/// Reads a config file into a layer. `.json` is parsed as JSON, anything else as YAML (a
/// superset of JSON). `shown` is the path as the user gave it, for messages.
fn read_config_file(shown: &str, path: &Path) -> Result<Layer, ConfigError> {
    let text = fs::read_to_string(path).map_err(|error| ConfigError::ReadFile {
        path: shown.to_string(),
        error,
    })?;
    let parse_error = |message: String| ConfigError::ParseFile {
        path: shown.to_string(),
        message: message.replace('\n', " "),
    };
    let is_json = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let root: Value = if text.trim().is_empty() {
        Value::Null
    } else if is_json {
        serde_json::from_str(&text).map_err(|e| parse_error(e.to_string()))?
    } else {
        serde_norway::from_str(&text).map_err(|e| parse_error(e.to_string()))?
    };
    let sections = match root {
        Value::Null => return Ok(Layer::new()),
        Value::Object(sections) => sections,
        _ => {
            return Err(parse_error(format!(
                "the top level must be a mapping of sections ({})",
                SECTIONS.join(", ")
            )));
        }
    };
    let mut layer = Layer::new();
    for (section, body) in sections {
        if !SECTIONS.contains(&section.as_str()) {
            return Err(ConfigError::UnknownKey {
                what: "section",
                name: section,
                file: shown.to_string(),
                known: SECTIONS.join(", "),
            });
        }
        let entries = match body {
            Value::Null => continue,
            Value::Object(entries) => entries,
            _ => {
                return Err(parse_error(format!(
                    "section '{section}' must be a mapping of keys to values"
                )));
            }
        };
        for (name, value) in entries {
            let key = format!("{section}.{name}");
            let spec = fields::find(&key).ok_or_else(|| ConfigError::UnknownKey {
                what: "key",
                name: key.clone(),
                file: shown.to_string(),
                known: fields::section_fields(&section)
                    .map(|f| f.key)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
            if let Some(text) = file_value_text(spec, &value)?
                && non_empty(&text)
            {
                layer.insert(spec.key, text);
            }
        }
    }
    Ok(layer)
}

/// A config-file value as the same text a user would type on the command line; `None` for
/// `null` (not set). Lists are allowed for list fields (items joined with the field's
/// separator), mappings for weights.
fn file_value_text(spec: &'static FieldSpec, value: &Value) -> Result<Option<String>, ConfigError> {
    let wrong = |allowed: &str| {
        let text = value.to_string();
        Raw {
            spec,
            text: &text,
            source: Source::File,
        }
        .invalid(allowed)
    };
    Ok(Some(match value {
        Value::Null => return Ok(None),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) if matches!(spec.kind, Kind::List | Kind::Templates) => {
            let names: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            names
                .ok_or_else(|| wrong("must be a list of strings"))?
                .join(spec.separator())
        }
        Value::Array(items) if spec.kind == Kind::Numbers => {
            let numbers: Option<Vec<String>> = items
                .iter()
                .map(|v| v.as_number().map(Number::to_string))
                .collect();
            numbers
                .ok_or_else(|| wrong("must be a list of numbers"))?
                .join(spec.separator())
        }
        Value::Object(_) if spec.kind == Kind::Map => value.to_string(),
        Value::Array(_) | Value::Object(_) => {
            return Err(wrong("must be a single value, not a list or mapping"));
        }
    }))
}

/// The winning text and source of every field that is set.
struct Merged(BTreeMap<&'static str, (String, Source)>);

impl Merged {
    fn get(&self, key: &str) -> Option<Raw<'_>> {
        let spec = fields::spec(key);
        self.0.get(spec.key).map(|(text, source)| Raw {
            spec,
            text,
            source: *source,
        })
    }

    /// A field with a built-in default, so it always has a value.
    fn req(&self, key: &str) -> Raw<'_> {
        self.get(key)
            .unwrap_or_else(|| panic!("{key} has a built-in default"))
    }
}

/// `RunnerConfig::resolved` under construction.
#[derive(Default)]
struct Resolved(BTreeMap<&'static str, (String, Source)>);

impl Resolved {
    fn set(&mut self, raw: &Raw, text: String) {
        let text = if raw.spec.secret {
            "***".to_string()
        } else {
            text
        };
        self.0.insert(raw.spec.key, (text, raw.source));
    }

    fn unset(&mut self, key: &str) {
        self.0
            .insert(fields::spec(key).key, (String::new(), Source::Default));
    }

    /// Parses a field with a built-in default and records its normalized text.
    fn req<T>(
        &mut self,
        m: &Merged,
        key: &str,
        parse: impl Fn(&Raw) -> Result<T, ConfigError>,
        text: impl Fn(&T) -> String,
    ) -> Result<T, ConfigError> {
        let raw = m.req(key);
        let value = parse(&raw)?;
        self.set(&raw, text(&value));
        Ok(value)
    }

    /// Parses an optional field (if set) and records its normalized text or "not set".
    fn opt<T>(
        &mut self,
        m: &Merged,
        key: &str,
        parse: impl Fn(&Raw) -> Result<T, ConfigError>,
        text: impl Fn(&T) -> String,
    ) -> Result<Option<T>, ConfigError> {
        match m.get(key) {
            Some(raw) => {
                let value = parse(&raw)?;
                self.set(&raw, text(&value));
                Ok(Some(value))
            }
            None => {
                self.unset(key);
                Ok(None)
            }
        }
    }
}

/// Durations are recorded as seconds so the report has numbers and files reload them.
fn secs_text(d: &Duration) -> String {
    d.as_secs_f64().to_string()
}

/// One `host:port` to listen on (`[v6]:port` for IPv6 literals).
fn parse_listen(raw: &Raw) -> Result<(String, u16), ConfigError> {
    let mut nodes = parse_host_ports(raw)?;
    if nodes.len() != 1 {
        return Err(raw.invalid("must be one host:port, e.g. 127.0.0.1:9464"));
    }
    Ok(nodes.remove(0))
}

/// An OTLP collector URL: `http://host:port[/path]` or `https://...`, stored without a
/// trailing `/`. A bare `host:port` is refused rather than guessed.
fn parse_otel_endpoint(raw: &Raw) -> Result<String, ConfigError> {
    let text = raw.text.trim().trim_end_matches('/');
    let allowed =
        "must be an http:// or https:// URL with a host and port, e.g. http://127.0.0.1:4317";
    let Some(rest) = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
    else {
        return Err(raw.invalid(allowed));
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host_port_ok = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !host_port_ok || text.contains(char::is_whitespace) {
        return Err(raw.invalid(allowed));
    }
    Ok(text.to_string())
}

/// OTLP headers as the spec writes them: `key=value,key2=value2` (values may be
/// percent-encoded; `%20` etc. are decoded). Keys must be HTTP token characters (lower-cased,
/// as gRPC metadata requires), values visible ASCII.
fn parse_otel_headers(raw: &Raw) -> Result<Vec<(String, String)>, ConfigError> {
    let allowed =
        "must be key=value pairs separated by commas, e.g. authorization=Bearer%20abc,x-team=a";
    let mut headers = Vec::new();
    for pair in raw.text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(raw.invalid(allowed));
        };
        let key = key.trim().to_ascii_lowercase();
        let value = percent_decode(value.trim()).ok_or_else(|| raw.invalid(allowed))?;
        let key_ok = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        let value_ok = value
            .bytes()
            .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic());
        if !key_ok || !value_ok {
            return Err(raw.invalid(allowed));
        }
        headers.push((key, value));
    }
    if headers.is_empty() {
        return Err(raw.invalid(allowed));
    }
    Ok(headers)
}

/// A fraction from 0 to 1 (a probability).
fn parse_fraction(raw: &Raw) -> Result<f64, ConfigError> {
    match raw.text.trim().parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(raw.invalid("must be a number from 0 to 1")),
    }
}

/// `grpc`, or `http` (also `http/protobuf`, the spec's name for it).
fn parse_otel_protocol(raw: &Raw) -> Result<OtlpProtocol, ConfigError> {
    match raw.text.trim().to_ascii_lowercase().as_str() {
        "grpc" => Ok(OtlpProtocol::Grpc),
        "http" | "http/protobuf" => Ok(OtlpProtocol::Http),
        _ => Err(raw.invalid("must be grpc or http (http/protobuf)")),
    }
}

/// `host:port`, with brackets around an IPv6 literal.
pub fn listen_text(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Sentinel mode is on when `redis.sentinel_nodes` is set; the other sentinel fields are
/// recorded either way so `--show-config` lists them. `redis.sentinel_tls` not set explicitly
/// follows `redis.tls`; TLS to the sentinels reuses the data plane's TLS settings (`tls`), so
/// asking for it without `--tls` is refused rather than guessing trust settings.
fn resolve_sentinel(
    m: &Merged,
    r: &mut Resolved,
    tls: Option<&crate::client::TlsConfig>,
) -> Result<Option<SentinelConfig>, ConfigError> {
    let nodes = r.opt(m, "redis.sentinel_nodes", parse_host_ports, |n| {
        n.iter()
            .map(|(h, p)| format!("{h}:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    })?;
    let master = r.req(m, "redis.sentinel_master", parse_string, String::clone)?;
    let username = r.opt(m, "redis.sentinel_username", parse_string, String::clone)?;
    let password = r.opt(
        m,
        "redis.sentinel_password",
        |x| Ok(Secret::new(x.text)),
        |_| "***".to_string(),
    )?;
    let tls_raw = m.req("redis.sentinel_tls");
    let sentinel_tls = if tls_raw.source == Source::Default {
        r.set(&tls_raw, tls.is_some().to_string());
        tls.is_some()
    } else {
        r.req(m, "redis.sentinel_tls", parse_bool, bool::to_string)?
    };
    let Some(nodes) = nodes else {
        return Ok(None);
    };
    if sentinel_tls && tls.is_none() {
        return Err(ConfigError::Conflict(format!(
            "{} but {}: TLS to the sentinels uses the --tls settings, set --tls too",
            tls_raw.describe(),
            m.req("redis.tls").describe()
        )));
    }
    if let (Some(_), None) = (&username, &password) {
        return Err(ConfigError::Conflict(format!(
            "{} needs redis.sentinel_password (--sentinel-password / REDIS_SENTINEL_PASSWORD) too",
            m.req("redis.sentinel_username").describe()
        )));
    }
    Ok(Some(SentinelConfig {
        nodes,
        master,
        username,
        password,
        tls: tls.filter(|_| sentinel_tls).cloned(),
    }))
}

/// Cluster mode is on with `redis.cluster`; the seeds default to host:port. Sentinel mode,
/// a database other than 0 and replica reads without cluster mode are refused here, before any
/// connection.
fn resolve_cluster(
    m: &Merged,
    r: &mut Resolved,
    host: &str,
    port: u16,
    db: u32,
    sentinel: bool,
) -> Result<Option<ClusterConfig>, ConfigError> {
    let on = r.req(m, "redis.cluster", parse_bool, bool::to_string)?;
    let nodes = r.opt(m, "redis.cluster_nodes", parse_host_ports, |n| {
        n.iter()
            .map(|(h, p)| format!("{h}:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    })?;
    let read_from_replicas = r.req(m, "redis.read_from_replicas", parse_bool, bool::to_string)?;
    if !on {
        if read_from_replicas {
            return Err(ConfigError::Conflict(format!(
                "{} needs cluster mode: {}",
                m.req("redis.read_from_replicas").describe(),
                m.req("redis.cluster").describe()
            )));
        }
        return Ok(None);
    }
    if sentinel {
        return Err(ConfigError::Conflict(format!(
            "cluster mode and Sentinel mode exclude each other: {} and {} are both set",
            m.req("redis.cluster").describe(),
            m.req("redis.sentinel_nodes").describe()
        )));
    }
    if db != 0 {
        return Err(ConfigError::Conflict(format!(
            "Redis Cluster has only database 0: {} with {}",
            m.req("redis.db").describe(),
            m.req("redis.cluster").describe()
        )));
    }
    Ok(Some(ClusterConfig {
        nodes: nodes.unwrap_or_else(|| vec![(host.to_string(), port)]),
        read_from_replicas,
    }))
}

fn build(m: &Merged, profile: &'static Profile) -> Result<RunnerConfig, ConfigError> {
    let mut r = Resolved::default();
    let with_url = apply_url(m)?;
    let m = &with_url;
    r.opt(m, "redis.url", parse_string, String::clone)?;
    let client_name = r.opt(m, "redis.client_name", parse_client_name, String::clone)?;
    let mut redis = RedisConfig {
        host: r.req(m, "redis.host", parse_host, String::clone)?,
        port: r.req(
            m,
            "redis.port",
            |x| parse_uint(x, 1u16, u16::MAX),
            u16::to_string,
        )?,
        username: r.opt(m, "redis.username", parse_string, String::clone)?,
        password: r.opt(
            m,
            "redis.password",
            |x| Ok(Secret::new(x.text)),
            |_| "***".to_string(),
        )?,
        db: r.req(
            m,
            "redis.db",
            |x| parse_uint(x, 0u32, u32::MAX),
            u32::to_string,
        )?,
        protocol: r.req(m, "redis.protocol", parse_protocol, |p| {
            match p {
                Protocol::Resp2 => "2",
                Protocol::Resp3 => "3",
            }
            .to_string()
        })?,
        // Filled in below, once the instance id is known.
        client_name: String::new(),
        tcp_keepalive: Some(r.req(m, "redis.tcp_keepalive", parse_duration_or_zero, secs_text)?)
            .filter(|d| !d.is_zero()),
        tls: resolve_tls(m, &mut r)?,
        socket_timeout: r.req(m, "redis.socket_timeout", parse_duration, secs_text)?,
        connect_timeout: r.req(m, "redis.connect_timeout", parse_duration, secs_text)?,
        retry: RetryPolicy {
            backoff_base: r.req(m, "redis.retry_backoff_base", parse_duration, secs_text)?,
            backoff_cap: r.req(m, "redis.retry_backoff_cap", parse_duration, secs_text)?,
            attempts: r.req(
                m,
                "redis.retry_attempts",
                |x| parse_uint(x, 0u32, u32::MAX),
                u32::to_string,
            )?,
        },
        // Set below: it needs the TLS settings.
        sentinel: None,
        cluster: None,
        max_connections: r.req(
            m,
            "redis.max_connections",
            |x| parse_uint(x, 1u32, u32::MAX),
            u32::to_string,
        )?,
        health_check_interval: Some(r.req(
            m,
            "redis.health_check_interval",
            parse_duration_or_zero,
            secs_text,
        )?)
        .filter(|d| !d.is_zero()),
    };
    redis.sentinel = resolve_sentinel(m, &mut r, redis.tls.as_ref())?;
    redis.cluster = resolve_cluster(
        m,
        &mut r,
        &redis.host,
        redis.port,
        redis.db,
        redis.sentinel.is_some(),
    )?;

    let test = TestConfig {
        clients: r.req(
            m,
            "test.clients",
            |x| parse_uint(x, 1u32, u32::MAX),
            u32::to_string,
        )?,
        threads_per_client: r.req(
            m,
            "test.threads_per_client",
            |x| parse_uint(x, 1u32, u32::MAX),
            u32::to_string,
        )?,
        io_threads: r.opt(
            m,
            "test.io_threads",
            |x| parse_uint(x, 1u32, MAX_IO_THREADS),
            u32::to_string,
        )?,
        duration: r.opt(m, "test.duration", parse_duration, secs_text)?,
        target_ops_per_second: r.opt(
            m,
            "test.target_ops_per_second",
            parse_positive_f64,
            f64::to_string,
        )?,
        seed: r.opt(
            m,
            "test.seed",
            |x| parse_uint(x, 0u64, u64::MAX),
            u64::to_string,
        )?,
    };
    let workers = u64::from(test.clients) * u64::from(test.threads_per_client);
    if workers > MAX_WORKERS {
        return Err(ConfigError::Conflict(format!(
            "too many workers: {} x {} = {workers}; at most {MAX_WORKERS} are allowed",
            m.req("test.clients").describe(),
            m.req("test.threads_per_client").describe(),
        )));
    }
    if test.threads_per_client > redis.max_connections {
        return Err(ConfigError::Conflict(format!(
            "{} needs more connections than {} allows: every worker owns its connection",
            m.req("test.threads_per_client").describe(),
            m.req("redis.max_connections").describe(),
        )));
    }

    r.set(&m.req("workload.profile"), profile.name.to_string());
    let commands = resolve_commands(m, &mut r)?;
    let kind = if commands.is_empty() {
        profile.kind
    } else {
        WorkloadKind::Template
    };
    let operations = resolve_operations(m, &mut r, kind)?;
    let value_size = resolve_value_size(m, &mut r)?;
    let positive_u32 = |max: u32| move |x: &Raw| parse_uint(x, 1u32, max);
    let positive_u64 = |x: &Raw| parse_uint(x, 1u64, u64::MAX);
    let workers_max = MAX_WORKERS as u32;
    let workload = WorkloadConfig {
        profile: profile.name.to_string(),
        kind,
        operations,
        commands,
        key_prefix: r.req(m, "workload.key_prefix", parse_string, String::clone)?,
        key_min: r.req(
            m,
            "workload.key_min",
            |x| parse_uint(x, 0u64, u64::MAX),
            u64::to_string,
        )?,
        key_range: r.req(m, "workload.key_range", positive_u64, u64::to_string)?,
        key_distribution: r.req(
            m,
            "workload.key_distribution",
            parse_key_distribution,
            ToString::to_string,
        )?,
        hash_tag: {
            let set = r.req(m, "workload.hash_tag", parse_bool, bool::to_string)?;
            // Cluster mode: multi-key commands and transactions need their keys in one slot,
            // so hash tags are on unless the user turned them off.
            let raw = m.req("workload.hash_tag");
            if redis.cluster.is_some() && raw.source == Source::Default {
                r.set(&raw, "true".to_string());
                true
            } else {
                set
            }
        },
        value_size,
        expiry_range: r.opt(m, "workload.expiry_range", parse_expiry_range, |(a, b)| {
            format!("{a}-{b}")
        })?,
        use_pipeline: r.req(m, "workload.use_pipeline", parse_bool, bool::to_string)?,
        pipeline_size: r.req(
            m,
            "workload.pipeline_size",
            |x| parse_uint(x, 1u64, MAX_PIPELINE_SIZE).map(|n| n as usize),
            usize::to_string,
        )?,
        prefill: r.req(m, "workload.prefill", parse_bool, bool::to_string)?,
        warmup: r.opt(m, "workload.warmup", parse_duration, secs_text)?,
        list_max_length: r.req(m, "workload.list_max_length", positive_u64, u64::to_string)?,
        hash_fields: r.req(
            m,
            "workload.hash_fields",
            positive_u32(MAX_HASH_FIELDS),
            u32::to_string,
        )?,
        transaction_size: r.req(
            m,
            "workload.transaction_size",
            positive_u32(MAX_TRANSACTION_SIZE),
            u32::to_string,
        )?,
        watch: r.req(m, "workload.watch", parse_bool, bool::to_string)?,
        verify_writes: r.req(m, "workload.verify_writes", parse_bool, bool::to_string)?,
        publishers: r.req(
            m,
            "workload.publishers",
            positive_u32(workers_max),
            u32::to_string,
        )?,
        subscribers: r.req(
            m,
            "workload.subscribers",
            |x| parse_uint(x, 0u32, workers_max),
            u32::to_string,
        )?,
        pubsub_channels: r.req(m, "workload.pubsub_channels", parse_channels, |c| {
            c.join(",")
        })?,
        psubscribe: r.req(m, "workload.psubscribe", parse_bool, bool::to_string)?,
        stream_consumers: r.req(
            m,
            "workload.stream_consumers",
            positive_u32(workers_max),
            u32::to_string,
        )?,
        processing_time: r.req(
            m,
            "workload.processing_time",
            parse_duration_or_zero,
            secs_text,
        )?,
        stream_max_length: r.req(
            m,
            "workload.stream_max_length",
            positive_u64,
            u64::to_string,
        )?,
    };
    check_workload(m, &workload)?;
    check_cluster_workload(m, &redis, &workload)?;

    let path = |x: &Raw| parse_string(x).map(PathBuf::from);
    let path_text = |p: &PathBuf| p.display().to_string();
    let output = OutputConfig {
        metrics_interval: r.req(m, "output.metrics_interval", parse_duration, secs_text)?,
        output_file: r.opt(m, "output.output_file", path, path_text)?,
        quiet: r.req(m, "output.quiet", parse_bool, bool::to_string)?,
        log_level: r
            .req(m, "output.log_level", parse_log_level, |l| l.to_string())?
            .to_string(),
        log_file: r.opt(m, "output.log_file", path, path_text)?,
        log_format: r.req(m, "output.log_format", parse_log_format, |f| {
            match f {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            }
            .to_string()
        })?,
        prometheus_listen: r.opt(m, "output.prometheus_listen", parse_listen, |(h, p)| {
            listen_text(h, *p)
        })?,
        prometheus_linger: r.req(
            m,
            "output.prometheus_linger",
            parse_duration_or_zero,
            secs_text,
        )?,
        otlp: None,
    };
    let otel_endpoint = r.opt(
        m,
        "output.otel_endpoint",
        parse_otel_endpoint,
        String::clone,
    )?;
    let otel_protocol = r.req(m, "output.otel_protocol", parse_otel_protocol, |p| {
        match p {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::Http => "http",
        }
        .to_string()
    })?;
    let otel_export_interval = r.req(
        m,
        "output.otel_export_interval",
        |x| parse_uint(x, 1u64, 86_400_000),
        u64::to_string,
    )?;
    let otel_service_name = r.req(m, "output.otel_service_name", parse_string, String::clone)?;
    let trace_sample_rate = r.req(
        m,
        "output.trace_sample_rate",
        parse_fraction,
        f64::to_string,
    )?;
    let otel_headers = r.opt(m, "output.otel_headers", parse_otel_headers, |h| {
        h.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    })?;
    let otel_ca_cert = r.opt(
        m,
        "output.otel_ca_cert",
        |x| {
            let path = PathBuf::from(parse_string(x)?);
            std::fs::read(&path)
                .map_err(|e| x.invalid(format!("cannot be read: {e}")))
                .map(|pem| (path, pem))
        },
        |(p, _)| p.display().to_string(),
    )?;
    if let (Some(endpoint), Some(_)) = (&otel_endpoint, &otel_ca_cert)
        && !endpoint.starts_with("https://")
    {
        return Err(ConfigError::Conflict(format!(
            "output.otel_ca_cert (--otel-ca-cert) is set but output.otel_endpoint '{endpoint}' is not https://; use an https:// endpoint or drop the CA certificate"
        )));
    }
    let output = OutputConfig {
        otlp: otel_endpoint.map(|endpoint| OtlpConfig {
            endpoint,
            protocol: otel_protocol,
            export_interval: Duration::from_millis(otel_export_interval),
            service_name: otel_service_name,
            trace_sample_rate,
            headers: otel_headers.unwrap_or_default(),
            ca_pem: otel_ca_cert.map(|(_, pem)| pem),
        }),
        ..output
    };

    let instance_id = r.opt(m, "identity.instance_id", parse_string, String::clone)?;
    let run_id = r.opt(m, "identity.run_id", parse_string, String::clone)?;
    let identity = IdentityConfig {
        app_name: r.req(m, "identity.app_name", parse_string, String::clone)?,
        instance_id: instance_id
            .unwrap_or_else(|| r.generated("identity.instance_id", generated_instance_id())),
        run_id: run_id.unwrap_or_else(|| r.generated("identity.run_id", generated_run_id())),
        version: r.req(m, "identity.version", parse_string, String::clone)?,
    };
    redis.client_name = client_name.unwrap_or_else(|| {
        let name = format!("redis-loadgen-{}", identity.instance_id)
            .replace(|c: char| c.is_whitespace(), "_");
        r.generated("redis.client_name", name)
    });

    debug_assert!(FIELDS.iter().all(|f| r.0.contains_key(f.key)));
    Ok(RunnerConfig {
        redis,
        test,
        workload,
        output,
        identity,
        resolved: r.0,
    })
}

impl Resolved {
    /// Records a value the loader generated (instance and run ids) as a default.
    fn generated(&mut self, key: &str, value: String) -> String {
        self.0
            .insert(fields::spec(key).key, (value.clone(), Source::Default));
        value
    }
}

/// Cross-field checks of the workload section that single parsers cannot make.
fn check_workload(m: &Merged, w: &WorkloadConfig) -> Result<(), ConfigError> {
    // Key numbers are key_min..key_min + key_range; the last one must fit in a u64.
    if w.key_min.checked_add(w.key_range - 1).is_none() {
        return Err(ConfigError::Conflict(format!(
            "key numbers would pass {}: {} + {} - 1 must be <= {}",
            u64::MAX,
            m.req("workload.key_min").describe(),
            m.req("workload.key_range").describe(),
            u64::MAX
        )));
    }
    if w.verify_writes {
        // The stamps and the ledger live in the mix engine (workload/mix.rs), on its SETs.
        let verify = m.req("workload.verify_writes").describe();
        if !w.kind.uses_operations() || w.kind == WorkloadKind::IncrementCheck {
            return Err(ConfigError::Conflict(format!(
                "{verify} works with the command-mix workloads (basic_rw, list_operations, \
                 hash_operations, stream_operations and their profiles), not with {}",
                w.kind.name()
            )));
        }
        if !w.operations.iter().any(|(c, _)| *c == Command::Set) {
            let ops: Vec<&str> = w.operations.iter().map(|(c, _)| c.name()).collect();
            return Err(ConfigError::Conflict(format!(
                "{verify} needs SET in workload.operations (--operations / TEST_OPERATIONS), \
                 which is {}",
                ops.join(",")
            )));
        }
        if let Some(expiry) = m.get("workload.expiry_range") {
            return Err(ConfigError::Conflict(format!(
                "{verify} cannot be combined with {}: a key that expires would read back as a \
                 lost write",
                expiry.describe()
            )));
        }
    }
    if w.kind == WorkloadKind::PubsubTest && w.subscribers == 0 {
        return Err(ConfigError::Conflict(format!(
            "pubsub_test needs at least one subscriber: {}",
            m.req("workload.subscribers").describe()
        )));
    }
    Ok(())
}

/// Workloads cluster mode cannot run. stream_request_reply's processors and checks use single
/// connections to one node and its request stream and reply lists live in different slots.
fn check_cluster_workload(
    m: &Merged,
    redis: &RedisConfig,
    w: &WorkloadConfig,
) -> Result<(), ConfigError> {
    if redis.cluster.is_some() && w.kind == WorkloadKind::StreamRequestReply {
        return Err(ConfigError::Conflict(format!(
            "stream_request_reply does not run in cluster mode ({} with {}): use a standalone \
             or Sentinel-managed server, or another workload (command mixes, template, \
             transaction_test, increment_check, pubsub_test run in cluster mode)",
            m.req("workload.profile").describe(),
            m.req("redis.cluster").describe()
        )));
    }
    Ok(())
}

/// The `--command` templates with their `--command-weight`s; empty when none are set.
///
/// Each list comes whole from the one source that set it (lists are not merged across
/// sources). Weights need templates, and as many as there are templates.
fn resolve_commands(m: &Merged, r: &mut Resolved) -> Result<Vec<CommandTemplate>, ConfigError> {
    let commands_raw = m.get("workload.commands");
    let weights_raw = m.get("workload.command_weights");
    let Some(commands_raw) = commands_raw else {
        if let Some(w_raw) = weights_raw {
            return Err(ConfigError::Conflict(format!(
                "{} is set but workload.commands (--command / TEST_COMMANDS) is not: weights \
                 go with command templates, one per --command",
                w_raw.describe()
            )));
        }
        r.unset("workload.commands");
        r.unset("workload.command_weights");
        return Ok(Vec::new());
    };
    let mut templates = parse_commands(&commands_raw)?;
    match weights_raw {
        Some(w_raw) => {
            let weights = parse_command_weights(&w_raw)?;
            if weights.len() != templates.len() {
                return Err(ConfigError::Conflict(format!(
                    "{} weights for {} command templates, need one per template: {} vs {}",
                    weights.len(),
                    templates.len(),
                    w_raw.describe(),
                    commands_raw.describe()
                )));
            }
            for (t, w) in templates.iter_mut().zip(&weights) {
                t.weight = *w;
            }
            r.set(&w_raw, parse::command_weights_text(&weights));
        }
        None => r.unset("workload.command_weights"),
    }
    r.set(&commands_raw, parse::templates_text(&templates));
    Ok(templates)
}

/// The command mix from `workload.operations` and `workload.operation_weights`.
///
/// - only operations: equal weights;
/// - only weights: the weighted commands, in [`Command::ALL`] order;
/// - both from the same source: they must name the same commands;
/// - both from different sources: the higher-precedence one defines the mix. Weights above
///   operations replace them. Operations above weights keep the lower weights if they give one
///   for every listed command (e.g. `--operations SET,GET` keeps the profile's 0.4/0.5), else
///   the commands get equal weights.
///
/// Commands with weight 0 are dropped. The recorded texts are the final mix, so a saved config
/// reloads to the same mix. Every command must be one `kind` allows; a workload that does not
/// use operations may have none.
fn resolve_operations(
    m: &Merged,
    r: &mut Resolved,
    kind: WorkloadKind,
) -> Result<Vec<(Command, f64)>, ConfigError> {
    let ops_raw = m.get("workload.operations");
    let weights_raw = m.get("workload.operation_weights");
    let ops = ops_raw.as_ref().map(parse_operations).transpose()?;
    let weights = weights_raw.as_ref().map(parse_weights).transpose()?;
    let equal = |ops: &[Command]| ops.iter().map(|&c| (c, 1.0)).collect::<Vec<_>>();
    let weight_of =
        |w: &[(Command, f64)], c: Command| w.iter().find(|&&(wc, _)| wc == c).map(|&(_, x)| x);
    let (mix, ops_source, weights_source) = match (ops_raw.zip(ops), weights_raw.zip(weights)) {
        (None, None) if !kind.uses_operations() => {
            r.unset("workload.operations");
            r.unset("workload.operation_weights");
            return Ok(Vec::new());
        }
        (None, None) => {
            return Err(ConfigError::Conflict(
                "no operations configured: set workload.operations (--operations / \
                     TEST_OPERATIONS) or workload.operation_weights (--operation-weights / \
                     TEST_OPERATION_WEIGHTS)"
                    .to_string(),
            ));
        }
        (Some((o_raw, ops)), None) => (equal(&ops), o_raw.source, o_raw.source),
        (None, Some((w_raw, w))) => (w, w_raw.source, w_raw.source),
        (Some((o_raw, ops)), Some((w_raw, w))) => {
            if w_raw.source > o_raw.source {
                (w, w_raw.source, w_raw.source)
            } else if o_raw.source > w_raw.source {
                let kept: Option<Vec<_>> = ops
                    .iter()
                    .map(|&c| weight_of(&w, c).map(|x| (c, x)))
                    .collect();
                match kept {
                    Some(mix) => (mix, o_raw.source, w_raw.source),
                    None => (equal(&ops), o_raw.source, o_raw.source),
                }
            } else {
                if let Some(c) = ops.iter().find(|&&c| weight_of(&w, c).is_none()) {
                    return Err(ConfigError::Conflict(format!(
                        "operation {c} has no weight: {} lists it but {} gives none",
                        o_raw.describe(),
                        w_raw.describe()
                    )));
                }
                if let Some((c, _)) = w.iter().find(|(c, _)| !ops.contains(c)) {
                    return Err(ConfigError::Conflict(format!(
                        "weighted command {c} is not in workload.operations: {} vs {}",
                        o_raw.describe(),
                        w_raw.describe()
                    )));
                }
                let mix = ops
                    .iter()
                    .map(|&c| (c, weight_of(&w, c).unwrap_or_default()))
                    .collect();
                (mix, o_raw.source, w_raw.source)
            }
        }
    };
    let mix: Vec<(Command, f64)> = mix.into_iter().filter(|&(_, w)| w > 0.0).collect();
    if mix.is_empty() {
        let given: Vec<String> = [ops_raw, weights_raw]
            .iter()
            .flatten()
            .map(Raw::describe)
            .collect();
        return Err(ConfigError::Conflict(format!(
            "no operation has a weight > 0: {}",
            given.join(", ")
        )));
    }
    if let Some((c, _)) = mix.iter().find(|&&(c, _)| !kind.allows(c)) {
        let given: Vec<String> = [ops_raw, weights_raw, m.get("workload.profile")]
            .iter()
            .flatten()
            .map(Raw::describe)
            .collect();
        return Err(ConfigError::Conflict(format!(
            "operation {c} is not available in workload {kind}, which takes {}: {}",
            kind.allowed_operations(),
            given.join(", ")
        )));
    }
    let names: Vec<&str> = mix.iter().map(|(c, _)| c.name()).collect();
    r.0.insert("workload.operations", (names.join(","), ops_source));
    r.0.insert(
        "workload.operation_weights",
        (parse::weights_text(&mix), weights_source),
    );
    Ok(mix)
}

/// Fixed, ranged or weighted value sizes.
///
/// Of `value_sizes` (weighted), `value_size` (fixed) and `value_size_min/max` (range), the one
/// set at the highest precedence applies; on a tie weighted wins over fixed, and fixed over
/// range. So a profile's fixed size does not hide `--value-size-min/max` or `--value-sizes`
/// typed by the user. Min <= max and the weighted list are checked whenever set, since they
/// are part of the config; the one that does not apply is recorded as not set (min/max keep
/// their values), so a saved config reloads to the same sizes.
fn resolve_value_size(m: &Merged, r: &mut Resolved) -> Result<ValueSize, ConfigError> {
    let size = |x: &Raw| parse_uint(x, 0u64, MAX_VALUE_SIZE).map(|n| n as usize);
    let min_raw = m.req("workload.value_size_min");
    let max_raw = m.req("workload.value_size_max");
    let min = r.req(m, "workload.value_size_min", size, usize::to_string)?;
    let max = r.req(m, "workload.value_size_max", size, usize::to_string)?;
    if min > max {
        return Err(ConfigError::Conflict(format!(
            "{} must be <= {}",
            min_raw.describe(),
            max_raw.describe()
        )));
    }
    let range_source = min_raw.source.max(max_raw.source);
    let fixed_raw = m.get("workload.value_size");
    let weighted_raw = m.get("workload.value_sizes");
    let weighted = weighted_raw.as_ref().map(parse_value_sizes).transpose()?;
    if let Some((raw, pairs)) = weighted_raw.zip(weighted)
        && raw.source >= range_source
        && fixed_raw.is_none_or(|f| raw.source >= f.source)
    {
        r.set(&raw, parse::value_sizes_text(&pairs));
        r.unset("workload.value_size");
        return Ok(ValueSize::Weighted(pairs));
    }
    r.unset("workload.value_sizes");
    match fixed_raw {
        Some(raw) if raw.source >= range_source => {
            let n = size(&raw)?;
            r.set(&raw, n.to_string());
            Ok(ValueSize::Fixed(n))
        }
        _ => {
            r.unset("workload.value_size");
            Ok(ValueSize::Range { min, max })
        }
    }
}

/// `<hostname>-<pid>`: distinct for concurrent instances on one machine and across machines.
fn generated_instance_id() -> String {
    format!("{}-{}", hostname(), std::process::id())
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which is writable and outlives the call;
    // gethostname writes at most `buf.len()` bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".to_string();
    }
    // POSIX does not promise a terminating NUL on truncation, hence the fallback to the length.
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    if name.is_empty() {
        "unknown-host".to_string()
    } else {
        name
    }
}

/// `run-<unix seconds>-<6 hex digits>`; the digits mix the clock's nanoseconds, the pid and a
/// per-process counter, so ids differ across runs, concurrent processes and repeated loads.
fn generated_run_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut x = (now.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64 finalizer: spreads the low-entropy inputs over the bits we keep.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    format!("run-{}-{:06x}", now.as_secs(), x & 0xff_ffff)
}

/// Identity labels the program generates (or takes from itself) when the user did not set
/// them: they describe this run, so a saved config must not pin them.
fn is_per_run(spec: &FieldSpec, source: Source) -> bool {
    source == Source::Default
        && matches!(
            spec.key,
            "identity.instance_id" | "identity.run_id" | "identity.version"
        )
}

/// `--show-config`: one aligned line per field, `key  value  (source)`, grouped by section.
pub fn render_show_config(cfg: &RunnerConfig) -> String {
    let shown = |spec: &FieldSpec| -> (String, Source) {
        match cfg.resolved.get(spec.key) {
            Some((text, _)) if text.is_empty() => ("(not set)".to_string(), Source::Default),
            Some((_, source)) if spec.secret => ("***".to_string(), *source),
            Some((text, source)) => (text.clone(), *source),
            None => ("(not set)".to_string(), Source::Default),
        }
    };
    let key_width = FIELDS.iter().map(|f| f.key.len()).max().unwrap_or(0);
    let value_width = FIELDS
        .iter()
        .map(|f| shown(f).0.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (i, section) in SECTIONS.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        for spec in fields::section_fields(section) {
            let (value, source) = shown(spec);
            out.push_str(&format!(
                "{:key_width$}  {value:value_width$}  ({source})\n",
                spec.key
            ));
        }
    }
    out
}

/// `--save-config`: the resolved config as YAML that `--config-file` loads back to the same
/// values. Secrets, unset fields and per-run identity labels are left out.
pub fn render_yaml(cfg: &RunnerConfig) -> String {
    use serde_norway::{Mapping, Value as Yaml};
    let mut root = Mapping::new();
    for section in SECTIONS {
        let mut entries = Mapping::new();
        for spec in fields::section_fields(section) {
            let Some((text, source)) = cfg.resolved.get(spec.key) else {
                continue;
            };
            if text.is_empty() || spec.secret || is_per_run(spec, *source) {
                continue;
            }
            let value = match spec.kind {
                // Built by hand to keep the mix's order (a JSON map would sort it).
                Kind::Map => {
                    let mut map = Mapping::new();
                    for (name, weight) in parse::parse_weights_text(text).unwrap_or_default() {
                        map.insert(Yaml::String(name), Yaml::Number(weight.into()));
                    }
                    Yaml::Mapping(map)
                }
                _ => serde_norway::to_value(fields::typed_value(spec, text))
                    .unwrap_or_else(|_| Yaml::String(text.clone())),
            };
            entries.insert(Yaml::String(spec.name().to_string()), value);
        }
        if !entries.is_empty() {
            root.insert(Yaml::String(section.to_string()), Yaml::Mapping(entries));
        }
    }
    let body = serde_norway::to_string(&Yaml::Mapping(root)).unwrap_or_default();
    format!(
        "# redis-loadgen configuration written by --save-config.\n\
         # Load it with: redis-loadgen --config-file <this file>\n\
         # Not written: secrets (set REDIS_PASSWORD in the environment or .env), unset values,\n\
         # and identity labels generated per run (instance_id, run_id, version).\n\
         {body}"
    )
}

/// Writes [`render_yaml`] to `path`.
pub fn save_config(cfg: &RunnerConfig, path: &Path) -> Result<(), ConfigError> {
    fs::write(path, render_yaml(cfg)).map_err(|error| ConfigError::WriteFile {
        path: path.display().to_string(),
        error,
    })
}

/// A CLIENT SETNAME name: no spaces (the server refuses them).
fn parse_client_name(raw: &Raw) -> Result<String, ConfigError> {
    let name = parse_string(raw)?;
    if name.chars().any(char::is_whitespace) {
        return Err(raw.invalid("must not contain spaces (CLIENT SETNAME refuses them)"));
    }
    Ok(name)
}

/// The parts of a `redis[s]://[user[:password]@]host[:port][/db]` URL as field texts.
fn url_parts(raw: &Raw) -> Result<Vec<(&'static str, String)>, ConfigError> {
    const FORM: &str = "must be redis[s]://[user[:password]@]host[:port][/db]";
    let text = raw.text.trim();
    let (tls, rest) = if let Some(rest) = text.strip_prefix("rediss://") {
        (true, rest)
    } else if let Some(rest) = text.strip_prefix("redis://") {
        (false, rest)
    } else {
        return Err(raw.invalid(FORM));
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut parts = vec![("redis.tls", tls.to_string())];
    let host_port = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            let decode = |s: &str| percent_decode(s).ok_or_else(|| raw.invalid(FORM));
            if !user.is_empty() {
                parts.push(("redis.username", decode(user)?));
            }
            if let Some(p) = password.filter(|p| !p.is_empty()) {
                parts.push(("redis.password", decode(p)?));
            }
            host_port
        }
        None => authority,
    };
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| raw.invalid(FORM))?;
        (host, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(raw.invalid(format!("{FORM}: the host is missing")));
    }
    parts.push(("redis.host", host.to_string()));
    if let Some(port) = port {
        parts.push(("redis.port", port.to_string()));
    }
    if !path.is_empty() {
        if !path.bytes().all(|b| b.is_ascii_digit()) {
            return Err(raw.invalid(format!("{FORM}: the path is the db number")));
        }
        parts.push(("redis.db", path.to_string()));
    }
    Ok(parts)
}

/// `%XX` escapes (in a URL's user or password, in OTLP header values) decoded; `None` for a
/// broken escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Expands `redis.url` into its parts. A part replaces the field's value when that value comes
/// from the URL's own layer or a lower one; a field set at a higher-precedence layer wins
/// (`--url redis://a:1 --port 2` connects to a:2). The parts carry the URL's source.
fn apply_url(m: &Merged) -> Result<Merged, ConfigError> {
    let mut out = Merged(m.0.clone());
    let Some(raw) = m.get("redis.url") else {
        return Ok(out);
    };
    for (key, text) in url_parts(&raw)? {
        let spec = fields::spec(key);
        let wins = m.0.get(spec.key).is_none_or(|(_, s)| *s <= raw.source);
        if wins {
            out.0.insert(spec.key, (text, raw.source));
        }
    }
    Ok(out)
}

/// The TLS fields: checked together, PEM files read and parsed now (before connecting).
fn resolve_tls(
    m: &Merged,
    r: &mut Resolved,
) -> Result<Option<crate::client::TlsConfig>, ConfigError> {
    use crate::client::tls::{TlsConfig, TlsFile};
    let path = |x: &Raw| parse_string(x).map(PathBuf::from);
    let path_text = |p: &PathBuf| p.display().to_string();
    let enabled = r.req(m, "redis.tls", parse_bool, bool::to_string)?;
    let ca = r.opt(m, "redis.tls_ca_file", path, path_text)?;
    let cert = r.opt(m, "redis.tls_cert_file", path, path_text)?;
    let key = r.opt(m, "redis.tls_key_file", path, path_text)?;
    let check_hostname = r.req(m, "redis.tls_check_hostname", parse_bool, bool::to_string)?;
    let insecure = r.req(m, "redis.tls_insecure", parse_bool, bool::to_string)?;
    let cert_reqs_none = r.req(
        m,
        "redis.tls_cert_reqs",
        |x| match x.text.trim().to_ascii_lowercase().as_str() {
            "required" => Ok(false),
            "none" => Ok(true),
            _ => Err(x.invalid("must be required or none")),
        },
        |none| if *none { "none" } else { "required" }.to_string(),
    )?;
    match (m.get("redis.tls_cert_file"), m.get("redis.tls_key_file")) {
        (Some(c), None) => {
            return Err(ConfigError::Conflict(format!(
                "{} needs redis.tls_key_file (--tls-key-file / REDIS_SSL_KEYFILE) too",
                c.describe()
            )));
        }
        (None, Some(k)) => {
            return Err(ConfigError::Conflict(format!(
                "{} needs redis.tls_cert_file (--tls-cert-file / REDIS_SSL_CERTFILE) too",
                k.describe()
            )));
        }
        _ => {}
    }
    if !enabled {
        return Ok(None);
    }
    let insecure = insecure || cert_reqs_none;
    TlsConfig::load(ca, cert, key, check_hostname, insecure)
        .map(Some)
        .map_err(|e| {
            let key = match e.file {
                Some(TlsFile::Ca) => "redis.tls_ca_file",
                Some(TlsFile::Cert) => "redis.tls_cert_file",
                Some(TlsFile::Key) => "redis.tls_key_file",
                None => "redis.tls",
            };
            m.req(key).invalid(e.message)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeyDistribution;
    use tempfile::TempDir;

    /// A working directory and a fake environment.
    struct Setup {
        dir: TempDir,
        env: HashMap<String, String>,
    }

    impl Setup {
        fn new() -> Self {
            Setup {
                dir: tempfile::tempdir().unwrap(),
                env: HashMap::new(),
            }
        }

        fn env(mut self, key: &str, value: &str) -> Self {
            self.env.insert(key.to_string(), value.to_string());
            self
        }

        fn file(self, name: &str, content: &str) -> Self {
            fs::write(self.dir.path().join(name), content).unwrap();
            self
        }

        fn dotenv(self, content: &str) -> Self {
            self.file(".env", content)
        }

        fn load(&self, args: &[&str]) -> Result<CliAction, ConfigError> {
            let argv = std::iter::once("redis-loadgen").chain(args.iter().copied());
            let env = |k: &str| self.env.get(k).cloned();
            load_from_args(argv, &env, self.dir.path())
        }

        fn config(&self, args: &[&str]) -> RunnerConfig {
            match self.load(args) {
                Ok(CliAction::Run(cfg)) => cfg,
                other => panic!("expected Run, got {other:?}"),
            }
        }

        fn error(&self, args: &[&str]) -> String {
            match self.load(args) {
                Err(e) => e.to_string(),
                Ok(other) => panic!("expected an error, got {other:?}"),
            }
        }
    }

    fn resolved<'c>(cfg: &'c RunnerConfig, key: &str) -> (&'c str, Source) {
        let (text, source) = &cfg.resolved[key];
        (text.as_str(), *source)
    }

    #[test]
    fn source_order_is_precedence_order() {
        // The merge and the value-size / operations rules compare sources with `>`.
        let order = [
            Source::Default,
            Source::Profile,
            Source::File,
            Source::DotEnv,
            Source::Env,
            Source::Cli,
        ];
        assert!(order.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn defaults_and_the_default_profile() {
        let cfg = Setup::new().config(&[]);
        assert_eq!(cfg.redis.host, "localhost");
        assert_eq!(cfg.redis.port, 6379);
        assert_eq!(cfg.redis.username, None);
        assert!(cfg.redis.password.is_none());
        assert_eq!(cfg.redis.db, 0);
        assert_eq!(cfg.redis.protocol, Protocol::Resp3);
        assert_eq!(cfg.redis.socket_timeout, Duration::from_secs(5));
        assert_eq!(cfg.redis.connect_timeout, Duration::from_secs(5));
        assert_eq!((cfg.test.clients, cfg.test.threads_per_client), (4, 10));
        assert_eq!(cfg.test.duration, None);
        assert_eq!(cfg.test.target_ops_per_second, None);
        assert_eq!(cfg.test.seed, None);
        assert_eq!(cfg.workload.profile, "basic_rw");
        assert_eq!(
            cfg.workload.operations,
            vec![
                (Command::Set, 0.4),
                (Command::Get, 0.5),
                (Command::Del, 0.1)
            ]
        );
        assert_eq!(cfg.workload.key_prefix, "test_key");
        assert_eq!(cfg.workload.key_range, 10000);
        assert_eq!(cfg.workload.value_size, ValueSize::Fixed(100));
        assert!(!cfg.workload.use_pipeline);
        assert_eq!(cfg.workload.pipeline_size, 10);
        let w = &cfg.workload;
        assert_eq!(w.kind, WorkloadKind::BasicRw);
        assert!(w.commands.is_empty());
        assert_eq!(w.key_min, 0);
        assert_eq!(w.key_distribution, KeyDistribution::Uniform);
        assert!(!w.hash_tag);
        assert_eq!(w.expiry_range, None);
        assert!(!w.prefill);
        assert_eq!(w.warmup, None);
        assert_eq!(w.list_max_length, 1000);
        assert_eq!(w.hash_fields, 10);
        assert_eq!(w.transaction_size, 5);
        assert!(!w.watch);
        assert_eq!((w.publishers, w.subscribers), (1, 1));
        assert_eq!(w.pubsub_channels, vec!["test_channel"]);
        assert!(!w.psubscribe);
        assert_eq!(w.stream_consumers, 2);
        assert_eq!(w.processing_time, Duration::ZERO);
        assert_eq!(w.stream_max_length, 10000);
        assert_eq!(cfg.output.metrics_interval, Duration::from_secs(5));
        assert_eq!(cfg.output.log_level, "info");
        assert!(!cfg.output.quiet);
        assert_eq!(cfg.identity.app_name, "rust");
        assert_eq!(cfg.identity.version, env!("CARGO_PKG_VERSION"));
        assert!(
            cfg.identity
                .instance_id
                .ends_with(&format!("-{}", std::process::id()))
        );
        assert!(cfg.identity.run_id.starts_with("run-"));
        assert_eq!(
            resolved(&cfg, "identity.run_id"),
            (cfg.identity.run_id.as_str(), Source::Default)
        );
        for f in FIELDS {
            assert!(cfg.resolved.contains_key(f.key), "{} not resolved", f.key);
        }
        assert_eq!(resolved(&cfg, "redis.host"), ("localhost", Source::Default));
        assert_eq!(resolved(&cfg, "redis.password"), ("", Source::Default));
        assert_eq!(
            resolved(&cfg, "workload.value_size"),
            ("100", Source::Profile)
        );
        assert_eq!(
            resolved(&cfg, "output.log_level"),
            ("info", Source::Default)
        );
        assert_eq!(
            resolved(&cfg, "redis.socket_timeout"),
            ("5", Source::Default)
        );
        assert_eq!(
            resolved(&cfg, "workload.processing_time"),
            ("0", Source::Default)
        );
        assert_eq!(resolved(&cfg, "workload.commands"), ("", Source::Default));
        assert_eq!(
            resolved(&cfg, "workload.value_sizes"),
            ("", Source::Default)
        );
        // The built-in config is the same as loading with nothing set.
        let builtin = builtin_config();
        assert_eq!(builtin.workload.operations, cfg.workload.operations);
        assert_eq!(builtin.workload.value_size, cfg.workload.value_size);
        for f in FIELDS.iter().filter(|f| f.section() != "identity") {
            assert_eq!(builtin.resolved[f.key], cfg.resolved[f.key], "{}", f.key);
        }
    }

    #[test]
    fn run_ids_differ_between_loads() {
        let s = Setup::new();
        assert_ne!(s.config(&[]).identity.run_id, s.config(&[]).identity.run_id);
        let id = generated_run_id();
        let hex = id.rsplit('-').next().unwrap();
        assert_eq!(hex.len(), 6);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn precedence_one_layer_at_a_time() {
        // key_range: default 10000 < high_throughput 50000 < file < .env < env < cli.
        let profile = ["--workload-profile", "high_throughput"];
        let mut s = Setup::new();
        let cfg = s.config(&[]);
        assert_eq!(
            resolved(&cfg, "workload.pipeline_size"),
            ("10", Source::Default)
        );

        let cfg = s.config(&profile);
        assert_eq!(cfg.workload.key_range, 50000);
        assert_eq!(
            resolved(&cfg, "workload.key_range"),
            ("50000", Source::Profile)
        );
        assert_eq!(
            resolved(&cfg, "workload.pipeline_size"),
            ("10", Source::Profile)
        );

        s = s
            .file("cfg.yaml", "workload:\n  key_range: 1\n")
            .env("CONFIG_FILE", "cfg.yaml");
        let cfg = s.config(&profile);
        assert_eq!(resolved(&cfg, "workload.key_range"), ("1", Source::File));

        s = s.dotenv("TEST_KEY_RANGE=2\n");
        let cfg = s.config(&profile);
        assert_eq!(resolved(&cfg, "workload.key_range"), ("2", Source::DotEnv));

        s = s.env("TEST_KEY_RANGE", "3");
        let cfg = s.config(&profile);
        assert_eq!(resolved(&cfg, "workload.key_range"), ("3", Source::Env));

        let cfg = s.config(&["--workload-profile", "high_throughput", "--key-range", "4"]);
        assert_eq!(cfg.workload.key_range, 4);
        assert_eq!(resolved(&cfg, "workload.key_range"), ("4", Source::Cli));
    }

    #[test]
    fn the_profile_name_follows_precedence_too() {
        let s = Setup::new()
            .file("c.yaml", "workload:\n  profile: high_throughput\n")
            .env("CONFIG_FILE", "c.yaml");
        assert_eq!(s.config(&[]).workload.profile, "high_throughput");
        let s = s.dotenv("TEST_WORKLOAD_PROFILE=basic_rw\n");
        let cfg = s.config(&[]);
        assert_eq!(cfg.workload.profile, "basic_rw");
        assert_eq!(
            resolved(&cfg, "workload.profile"),
            ("basic_rw", Source::DotEnv)
        );
        let s = s.env("TEST_WORKLOAD_PROFILE", "high_throughput");
        assert_eq!(s.config(&[]).workload.profile, "high_throughput");
        let cfg = s.config(&["--workload-profile", "basic_rw"]);
        assert_eq!(
            resolved(&cfg, "workload.profile"),
            ("basic_rw", Source::Cli)
        );
    }

    #[test]
    fn untouched_flags_do_not_override_the_profile() {
        let cfg = Setup::new().config(&["--workload-profile", "high_throughput"]);
        assert!(cfg.workload.use_pipeline);
        assert_eq!(cfg.workload.pipeline_size, 10);
        assert_eq!(cfg.workload.batch_size(), 10);
        assert_eq!(cfg.workload.value_size, ValueSize::Fixed(50));
        assert_eq!(
            cfg.workload.operations,
            vec![(Command::Set, 0.4), (Command::Get, 0.6)]
        );
        assert_eq!(
            resolved(&cfg, "workload.use_pipeline"),
            ("true", Source::Profile)
        );
        // A user-set value does override it.
        let cfg = Setup::new()
            .env("TEST_USE_PIPELINE", "off")
            .config(&["--workload-profile", "high_throughput"]);
        assert!(!cfg.workload.use_pipeline);
    }

    #[test]
    fn empty_values_mean_not_set() {
        let s = Setup::new()
            .env("REDIS_PASSWORD", "")
            .env("TEST_CLIENT_INSTANCES", "")
            .env("REDIS_HOST", "  ")
            .dotenv("TEST_CLIENT_INSTANCES=7\nTEST_DURATION=\n");
        let cfg = s.config(&["--username", ""]);
        assert!(cfg.redis.password.is_none());
        assert_eq!(cfg.redis.username, None);
        assert_eq!(cfg.redis.host, "localhost");
        assert_eq!(cfg.test.clients, 7);
        assert_eq!(resolved(&cfg, "test.clients"), ("7", Source::DotEnv));
        assert_eq!(cfg.test.duration, None);
    }

    #[test]
    fn dotenv_missing_unknown_and_malformed() {
        // Missing: fine (Setup has no .env).
        Setup::new().config(&[]);
        // Unknown variables: ignored.
        let cfg = Setup::new()
            .dotenv("# comment\nSOMETHING_ELSE=1\nexport REDIS_PORT=7000\n")
            .config(&[]);
        assert_eq!(cfg.redis.port, 7000);
        // Malformed: an error that does not quote the value.
        let err = Setup::new()
            .dotenv("REDIS_HOST=a\nREDIS_PASSWORD=\"hunter2\n")
            .error(&[]);
        assert!(err.starts_with("cannot read .env file"), "{err}");
        assert!(err.contains("REDIS_PASSWORD"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        // The process environment is not touched.
        assert!(std::env::var_os("SOMETHING_ELSE").is_none());
    }

    #[test]
    fn config_file_yaml_json_and_extensionless() {
        let yaml = "redis:\n  host: 127.0.0.1\n  port: 6380\n  password: null\ntest:\n  clients: 2\n  \
                    duration: PT1M30S\nworkload:\n  operations: [SET, GET]\n  \
                    operation_weights: {SET: 1, GET: 3}\n  use_pipeline: yes\noutput:\n";
        let s = Setup::new().file("c.yml", yaml);
        let cfg = s.config(&["--config-file", "c.yml"]);
        assert_eq!(cfg.redis.host, "127.0.0.1");
        assert_eq!(cfg.redis.port, 6380);
        assert_eq!(cfg.test.clients, 2);
        assert_eq!(cfg.test.duration, Some(Duration::from_secs(90)));
        assert_eq!(
            cfg.workload.operations,
            vec![(Command::Set, 1.0), (Command::Get, 3.0)]
        );
        assert!(cfg.workload.use_pipeline);
        assert_eq!(resolved(&cfg, "redis.port"), ("6380", Source::File));
        assert_eq!(resolved(&cfg, "test.duration"), ("90", Source::File));

        let json = r#"{"redis": {"port": 6390}, "workload": {"operations": "GET",
                      "operation_weights": {"GET": 2}}, "test": {"target_ops_per_second": 2.5}}"#;
        for name in ["c.json", "c.conf"] {
            let s = Setup::new().file(name, json);
            let cfg = s.config(&["--config-file", name]);
            assert_eq!(cfg.redis.port, 6390);
            assert_eq!(cfg.workload.operations, vec![(Command::Get, 2.0)]);
            assert_eq!(cfg.test.target_ops_per_second, Some(2.5));
        }
        // From .env, relative to the working directory; an empty file is an empty config.
        let s = Setup::new()
            .file("e.yaml", "")
            .dotenv("CONFIG_FILE=e.yaml\n");
        assert_eq!(s.config(&[]).redis.port, 6379);
    }

    #[test]
    fn config_file_errors() {
        let s = Setup::new()
            .file("typo.yaml", "redis:\n  hots: x\n")
            .file("section.yaml", "redsi:\n  host: x\n")
            .file("list.yaml", "redis:\n  host: [a, b]\n")
            .file("bad.json", "{\"redis\": ")
            .file("scalar.yaml", "just a string\n");
        let err = s.error(&["--config-file", "typo.yaml"]);
        assert!(
            err.starts_with(
                "unknown key 'redis.hots' in config file typo.yaml: known keys are redis.host, \
                 redis.port, redis.username"
            ),
            "{err}"
        );
        let err = s.error(&["--config-file", "section.yaml"]);
        assert!(
            err.contains("unknown section 'redsi'") && err.contains("redis, test"),
            "{err}"
        );
        let err = s.error(&["--config-file", "list.yaml"]);
        assert!(
            err.contains("redis.host") && err.contains("from file"),
            "{err}"
        );
        let err = s.error(&["--config-file", "bad.json"]);
        assert!(
            err.starts_with("cannot parse config file 'bad.json'"),
            "{err}"
        );
        assert!(!err.contains('\n'));
        let err = s.error(&["--config-file", "scalar.yaml"]);
        assert!(err.contains("top level must be a mapping"), "{err}");
        let err = s.error(&["--config-file", "x.yaml"]);
        assert!(
            err.starts_with("cannot read config file 'x.yaml': "),
            "{err}"
        );
        assert!(err.contains("os error 2"), "{err}");
    }

    #[test]
    fn every_validation_error_names_field_value_and_source() {
        let s = Setup::new();
        let cases: &[(&[&str], &[&str])] = &[
            (
                &["--port", "0"],
                &["redis.port", "'0'", "--port / REDIS_PORT", "from cli"],
            ),
            (&["--port", "70000"], &["redis.port", "'70000'"]),
            (&["--host", "a b"], &["redis.host", "'a b'"]),
            (&["--db", "-1"], &["redis.db", "'-1'"]),
            (&["--protocol", "4"], &["redis.protocol", "'4'", "2 or 3"]),
            (&["--socket-timeout", "0"], &["redis.socket_timeout", "'0'"]),
            (
                &["--connect-timeout", "soon"],
                &["redis.connect_timeout", "'soon'"],
            ),
            (&["--clients", "0"], &["test.clients", "'0'", ">= 1"]),
            (
                &["--threads-per-client", "0"],
                &["test.threads_per_client", "'0'"],
            ),
            (
                &["--clients", "200", "--threads-per-client", "100"],
                &[
                    "test.clients = '200' (from cli)",
                    "test.threads_per_client",
                    "10000",
                ],
            ),
            (
                &["--duration", "PT"],
                &["test.duration", "'PT'", "ISO-8601"],
            ),
            (&["--duration", "-3"], &["test.duration", "'-3'"]),
            (
                &["--target-ops-per-second", "0"],
                &["test.target_ops_per_second", "'0'"],
            ),
            (&["--seed", "-1"], &["test.seed", "'-1'"]),
            (
                &["--workload-profile", "foo"],
                &[
                    "unknown workload profile 'foo'",
                    "--workload-profile",
                    "basic_rw, high_throughput",
                ],
            ),
            (
                &["--operations", "SET,FLY"],
                &[
                    "workload.operations",
                    "FLY",
                    "known commands are SET, GET, DEL",
                ],
            ),
            (
                &["--operation-weights", "SET:1,NOPE:2"],
                &[
                    "workload.operation_weights",
                    "NOPE",
                    "known commands are SET, GET, DEL",
                ],
            ),
            (
                &["--operation-weights", "SET:-1"],
                &["workload.operation_weights", "SET:-1"],
            ),
            (
                &["--operation-weights", "SET:0,GET:0"],
                &["workload.operation_weights", "sum"],
            ),
            (
                &["--operations", "SET,GET", "--operation-weights", "SET:1"],
                &[
                    "operation GET has no weight",
                    "workload.operations = 'SET,GET' (from cli)",
                ],
            ),
            (
                &["--operations", "SET", "--operation-weights", "SET:1,GET:1"],
                &["GET is not in workload.operations"],
            ),
            (&["--key-prefix", " "], &[]),
            (&["--key-range", "0"], &["workload.key_range", "'0'"]),
            (
                &["--value-size", "536870913"],
                &["workload.value_size", "'536870913'"],
            ),
            (
                &["--value-size-min", "2000"],
                &[
                    "workload.value_size_min = '2000' (from cli)",
                    "workload.value_size_max = '1000' (from default)",
                ],
            ),
            (
                &["--value-size-max", "600000000"],
                &["workload.value_size_max", "'600000000'"],
            ),
            (
                &["--use-pipeline=maybe"],
                &["workload.use_pipeline", "'maybe'"],
            ),
            (
                &["--pipeline-size", "0"],
                &["workload.pipeline_size", "'0'"],
            ),
            (
                &["--pipeline-size", "100001"],
                &["workload.pipeline_size", "'100001'"],
            ),
            (
                &["--metrics-interval", "0s"],
                &["output.metrics_interval", "'0s'"],
            ),
            (&["--quiet=perhaps"], &["output.quiet", "'perhaps'"]),
            (
                &["--key-distribution", "zipf:9"],
                &["workload.key_distribution", "'zipf:9'", "<= 5"],
            ),
            (&["--key-min", "-1"], &["workload.key_min", "'-1'", ">= 0"]),
            (
                &["--key-min", "18446744073709551615", "--key-range", "2"],
                &[
                    "workload.key_min = '18446744073709551615' (from cli)",
                    "workload.key_range = '2' (from cli)",
                ],
            ),
            (&["--hash-tag=2"], &["workload.hash_tag", "'2'"]),
            (
                &["--value-sizes", "32:0"],
                &["workload.value_sizes", "'32:0'", "from cli"],
            ),
            (
                &["--expiry-range", "0-5"],
                &["workload.expiry_range", "'0-5'", "MIN-MAX"],
            ),
            (&["--prefill=sure"], &["workload.prefill", "'sure'"]),
            (&["--warmup", "0"], &["workload.warmup", "'0'", "> 0"]),
            (
                &["--list-max-length", "0"],
                &["workload.list_max_length", "'0'", ">= 1"],
            ),
            (
                &["--hash-fields", "100001"],
                &["workload.hash_fields", "'100001'", "<= 100000"],
            ),
            (
                &["--transaction-size", "0"],
                &[
                    "workload.transaction_size",
                    "'0'",
                    "must be an integer >= 1",
                ],
            ),
            (&["--watch=x"], &["workload.watch", "'x'"]),
            (&["--publishers", "0"], &["workload.publishers", "'0'"]),
            (
                &["--subscribers", "10001"],
                &["workload.subscribers", "'10001'", "<= 10000"],
            ),
            (
                &["--pubsub-channels", "a,a"],
                &["workload.pubsub_channels", "more than once"],
            ),
            (&["--psubscribe=x"], &["workload.psubscribe", "'x'"]),
            (
                &["--stream-consumers", "0"],
                &["workload.stream_consumers", "'0'"],
            ),
            (
                &["--processing-time", "-1"],
                &["workload.processing_time", "'-1'", ">= 0"],
            ),
            (
                &["--stream-max-length", "0"],
                &["workload.stream_max_length", "'0'"],
            ),
            (
                &["--command", "GET __nope__"],
                &["workload.commands", "unknown placeholder __nope__"],
            ),
            (
                &["--command", "GET k", "--command-weight", "0"],
                &["workload.command_weights", "'0'", "> 0"],
            ),
            (&["--log-level", "loud"], &["output.log_level", "'loud'"]),
        ];
        for (args, expected) in cases {
            if expected.is_empty() {
                // A blank value is "not set", not an error.
                s.config(args);
                continue;
            }
            let err = s.error(args);
            assert!(!err.contains('\n'), "{err}");
            for part in *expected {
                assert!(err.contains(part), "{args:?}: '{part}' not in: {err}");
            }
        }
        let err = Setup::new().env("TEST_CLIENT_INSTANCES", "0").error(&[]);
        assert_eq!(
            err,
            "invalid value '0' for test.clients (--clients / TEST_CLIENT_INSTANCES, from env): \
             must be an integer >= 1"
        );
        let err = s.error(&["--workload-profile", "foo"]);
        assert_eq!(
            err,
            format!(
                "unknown workload profile 'foo' for workload.profile (--workload-profile / \
                 TEST_WORKLOAD_PROFILE, from cli): known profiles are {}",
                profile::names()
            )
        );
    }

    #[test]
    fn operations_and_weights_combine_by_precedence() {
        let s = Setup::new();
        // Operations only (above the profile's weights, which cover them): profile ratios kept.
        let cfg = s.config(&["--operations", "GET,SET"]);
        assert_eq!(
            cfg.workload.operations,
            vec![(Command::Get, 0.5), (Command::Set, 0.4)]
        );
        // Operations the lower weights do not cover: equal weights.
        let cfg = s.config(&["--operations", "GET,INCR"]);
        assert_eq!(
            cfg.workload.operations,
            vec![(Command::Get, 1.0), (Command::Incr, 1.0)]
        );
        assert_eq!(
            resolved(&cfg, "workload.operation_weights"),
            (r#"{"GET":1,"INCR":1}"#, Source::Cli)
        );
        // Weights only: they define the operations.
        let cfg = s.config(&["--operation-weights", r#"{"INCR":2,"GET":1}"#]);
        assert_eq!(
            cfg.workload.operations,
            vec![(Command::Get, 1.0), (Command::Incr, 2.0)]
        );
        assert_eq!(
            resolved(&cfg, "workload.operations"),
            ("GET,INCR", Source::Cli)
        );
        // Zero weights drop the command.
        let cfg = s.config(&[
            "--operations",
            "SET,GET",
            "--operation-weights",
            "SET:0,GET:1",
        ]);
        assert_eq!(cfg.workload.operations, vec![(Command::Get, 1.0)]);
        assert_eq!(resolved(&cfg, "workload.operations"), ("GET", Source::Cli));
    }

    #[test]
    fn every_profile_loads_with_its_kind_and_values() {
        let s = Setup::new();
        for p in profile::PROFILES {
            let cfg = s.config(&["--workload-profile", p.name]);
            assert_eq!(cfg.workload.profile, p.name);
            assert_eq!(cfg.workload.kind, p.kind, "{}", p.name);
            for (key, _) in p.values {
                assert_eq!(cfg.resolved[key].1, Source::Profile, "{}: {key}", p.name);
            }
            if p.kind.uses_operations() {
                assert!(!cfg.workload.operations.is_empty(), "{}", p.name);
            }
            assert!(
                cfg.workload
                    .operations
                    .iter()
                    .all(|&(c, _)| p.kind.allows(c)),
                "{}",
                p.name
            );
        }
        let names = |cfg: &RunnerConfig| -> Vec<&str> {
            cfg.workload
                .operations
                .iter()
                .map(|(c, _)| c.name())
                .collect()
        };
        let cfg = s.config(&["--workload-profile", "list_operations"]);
        assert_eq!(names(&cfg), ["LPUSH", "LRANGE", "LPOP"]);
        assert_eq!(cfg.workload.key_range, 1000);
        let cfg = s.config(&["--workload-profile", "stream_operations"]);
        assert_eq!(cfg.workload.operations[0].1, 0.5);
        assert_eq!(cfg.workload.key_range, 10);
        let cfg = s.config(&["--workload-profile", "increment_check"]);
        assert_eq!(cfg.workload.operations, vec![(Command::Incr, 1.0)]);
        let cfg = s.config(&["--workload-profile", "transaction_test"]);
        assert!(cfg.workload.operations.is_empty());
        assert_eq!(resolved(&cfg, "workload.operations"), ("", Source::Default));
        assert_eq!(cfg.workload.transaction_size, 5);
        let cfg = s.config(&["--workload-profile", "pubsub_test"]);
        assert_eq!((cfg.test.clients, cfg.test.threads_per_client), (1, 2));
        assert_eq!((cfg.workload.publishers, cfg.workload.subscribers), (1, 1));
        let cfg = s.config(&["--workload-profile", "stream_request_reply"]);
        assert_eq!(cfg.test.threads_per_client, 4);
        assert_eq!(cfg.workload.stream_consumers, 2);
    }

    #[test]
    fn operations_must_suit_the_workload() {
        let s = Setup::new();
        // The mix workloads take every mixable command.
        assert!(s.load(&["--operations", "SET,XADD"]).is_ok());
        assert!(
            s.load(&[
                "--workload-profile",
                "stream_operations",
                "--operations",
                "XADD,SET"
            ])
            .is_ok()
        );
        let err = s.error(&[
            "--workload-profile",
            "increment_check",
            "--operation-weights",
            "INCR:1,GET:1",
        ]);
        assert!(
            err.contains(
                "operation GET is not available in workload increment_check, which takes only INCR"
            ),
            "{err}"
        );
        // Any mixable command goes in the mix workloads.
        let cfg = s.config(&[
            "--workload-profile",
            "hash_operations",
            "--operations",
            "HSET,SADD,GET",
        ]);
        assert_eq!(cfg.workload.operations.len(), 3);
        // Workloads that do not mix operations ignore them, but they must still be commands.
        let cfg = s.config(&[
            "--workload-profile",
            "transaction_test",
            "--operations",
            "XADD",
        ]);
        assert_eq!(cfg.workload.operations, vec![(Command::Xadd, 1.0)]);
        assert!(
            s.error(&[
                "--workload-profile",
                "transaction_test",
                "--operations",
                "FLY"
            ])
            .contains("FLY")
        );
    }

    #[test]
    fn command_templates_make_the_template_workload() {
        let s = Setup::new();
        let cfg = s.config(&[
            "--command",
            "SET __key__ __data__",
            "--command",
            r#"HSET h:__key__ f "a b""#,
            "--command-weight",
            "3",
            "--command-weight",
            "1",
        ]);
        let w = &cfg.workload;
        assert_eq!(w.kind, WorkloadKind::Template);
        assert_eq!(w.profile, "basic_rw");
        assert_eq!(
            resolved(&cfg, "workload.profile"),
            ("basic_rw", Source::Default)
        );
        assert_eq!(w.commands.len(), 2);
        assert_eq!(w.commands[0].args, ["SET", "__key__", "__data__"]);
        assert_eq!(w.commands[0].weight, 3.0);
        assert_eq!(w.commands[1].args, ["HSET", "h:__key__", "f", "a b"]);
        assert_eq!(w.commands[1].weight, 1.0);
        assert_eq!(
            resolved(&cfg, "workload.commands"),
            (
                r#"SET __key__ __data__; HSET h:__key__ f "a b""#,
                Source::Cli
            )
        );
        assert_eq!(
            resolved(&cfg, "workload.command_weights"),
            ("3,1", Source::Cli)
        );
        let show = render_show_config(&cfg);
        assert!(
            show.contains(r#"SET __key__ __data__; HSET h:__key__ f "a b""#),
            "{show}"
        );
        // Whatever the profile: the templates decide the workload.
        let cfg = s.config(&[
            "--workload-profile",
            "pubsub_test",
            "--command",
            "PING",
            "--subscribers",
            "0",
        ]);
        assert_eq!(cfg.workload.kind, WorkloadKind::Template);
        assert_eq!(cfg.workload.profile, "pubsub_test");
        // Without weights: all 1.
        let cfg = s.config(&["--command", "GET __key__"]);
        assert_eq!(cfg.workload.commands[0].weight, 1.0);
        assert_eq!(
            resolved(&cfg, "workload.command_weights"),
            ("", Source::Default)
        );

        // From the environment: `;`-separated templates and comma-separated weights.
        let cfg = Setup::new()
            .env("TEST_COMMANDS", r#"SET __key__ "x;y" ; GET __key__"#)
            .env("TEST_COMMAND_WEIGHTS", "1,2.5")
            .config(&[]);
        let t = &cfg.workload.commands;
        assert_eq!(t[0].args, ["SET", "__key__", "x;y"]);
        assert_eq!((t[0].weight, t[1].weight), (1.0, 2.5));
        assert_eq!(resolved(&cfg, "workload.commands").1, Source::Env);

        // From a config file: lists.
        let cfg = Setup::new()
            .file(
                "t.yaml",
                "workload:\n  commands: ['SET __key__ __data__', 'INCR c:__key__']\n  \
                 command_weights: [2, 0.5]\n",
            )
            .config(&["--config-file", "t.yaml"]);
        let t = &cfg.workload.commands;
        assert_eq!(t[1].args, ["INCR", "c:__key__"]);
        assert_eq!((t[0].weight, t[1].weight), (2.0, 0.5));
    }

    #[test]
    fn command_weights_need_one_per_template() {
        let s = Setup::new();
        let err = s.error(&[
            "--command",
            "GET a",
            "--command",
            "GET b",
            "--command-weight",
            "1",
        ]);
        assert_eq!(
            err,
            "1 weights for 2 command templates, need one per template: \
             workload.command_weights = '1' (from cli) vs workload.commands = 'GET a; GET b' \
             (from cli)"
        );
        let err = s.error(&["--command-weight", "1"]);
        assert!(
            err.starts_with(
                "workload.command_weights = '1' (from cli) is set but workload.commands"
            ),
            "{err}"
        );
        // Lists are not merged across sources: the CLI's templates meet the file's weights.
        let err = Setup::new()
            .file("w.yaml", "workload:\n  command_weights: [1, 2]\n")
            .error(&["--config-file", "w.yaml", "--command", "GET a"]);
        assert!(
            err.contains("(from file) vs workload.commands = 'GET a' (from cli)"),
            "{err}"
        );
        let err = Setup::new()
            .file("w.yaml", "workload:\n  command_weights: [1, x]\n")
            .error(&["--config-file", "w.yaml", "--command", "GET a"]);
        assert!(
            err.contains("workload.command_weights") && err.contains("list of numbers"),
            "{err}"
        );
        // A blank occurrence is not a template.
        let cfg = s.config(&["--command", "GET a", "--command", " "]);
        assert_eq!(cfg.workload.commands.len(), 1);
    }

    #[test]
    fn weighted_value_sizes_follow_precedence() {
        let s = Setup::new();
        // Above the profile's fixed size and the default range.
        let cfg = s.config(&["--value-sizes", "32:9,1024:1"]);
        assert_eq!(
            cfg.workload.value_size,
            ValueSize::Weighted(vec![(32, 9), (1024, 1)])
        );
        assert_eq!(
            resolved(&cfg, "workload.value_sizes"),
            ("32:9,1024:1", Source::Cli)
        );
        assert_eq!(resolved(&cfg, "workload.value_size"), ("", Source::Default));
        // Same layer as a fixed size: weighted wins.
        let cfg = s.config(&["--value-sizes", "8:1", "--value-size", "7"]);
        assert_eq!(cfg.workload.value_size, ValueSize::Weighted(vec![(8, 1)]));
        // A fixed size or a range set higher wins, and the weighted list is dropped.
        let env = Setup::new().env("TEST_VALUE_SIZES", "8:1");
        let cfg = env.config(&["--value-size", "7"]);
        assert_eq!(cfg.workload.value_size, ValueSize::Fixed(7));
        assert_eq!(
            resolved(&cfg, "workload.value_sizes"),
            ("", Source::Default)
        );
        let cfg = env.config(&["--value-size-max", "20", "--value-size-min", "10"]);
        assert_eq!(
            cfg.workload.value_size,
            ValueSize::Range { min: 10, max: 20 }
        );
        // A config file is above the profile, whose fixed size then gives way.
        let file = Setup::new().file("v.yaml", "workload:\n  value_sizes: 5:1\n");
        let cfg = file.config(&["--config-file", "v.yaml"]);
        assert_eq!(cfg.workload.value_size, ValueSize::Weighted(vec![(5, 1)]));
        // A bad list is an error even where it would not apply.
        let err = env
            .env("TEST_VALUE_SIZES", "8")
            .error(&["--value-size", "7"]);
        assert!(
            err.contains("workload.value_sizes") && err.contains("from env"),
            "{err}"
        );
    }

    #[test]
    fn workload_fields_from_every_source() {
        let cfg = Setup::new()
            .env("TEST_KEY_DISTRIBUTION", "Gaussian")
            .env("TEST_EXPIRY_RANGE", "60-3600")
            .dotenv("TEST_WARMUP=PT10S\nTEST_PUBSUB_CHANNELS=\"a, b\"\n")
            .file("w.yaml", "workload:\n  pubsub_channels: [x, y]\n  hash_tag: true\n  processing_time: 5ms\n  key_min: 100\n")
            .config(&[
                "--config-file",
                "w.yaml",
                "--psubscribe",
                "--watch",
                "--prefill",
                "--transaction-size",
                "10000",
                "--publishers",
                "3",
                "--subscribers",
                "0",
            ]);
        let w = &cfg.workload;
        assert_eq!(
            w.key_distribution,
            KeyDistribution::Gaussian { stddev: 0.15 }
        );
        assert_eq!(
            resolved(&cfg, "workload.key_distribution"),
            ("gaussian:0.15", Source::Env)
        );
        assert_eq!(w.expiry_range, Some((60, 3600)));
        assert_eq!(w.warmup, Some(Duration::from_secs(10)));
        assert_eq!(resolved(&cfg, "workload.warmup"), ("10", Source::DotEnv));
        assert_eq!(w.pubsub_channels, ["a", "b"]);
        assert!(w.hash_tag && w.psubscribe && w.watch && w.prefill);
        assert_eq!(w.processing_time, Duration::from_millis(5));
        assert_eq!(
            resolved(&cfg, "workload.processing_time"),
            ("0.005", Source::File)
        );
        assert_eq!(w.key_min, 100);
        assert_eq!(w.transaction_size, 10000);
        assert_eq!((w.publishers, w.subscribers), (3, 0));
        // The largest key number may be u64::MAX itself.
        let cfg = Setup::new().config(&["--key-min", "18446744073709551614", "--key-range", "2"]);
        assert_eq!(cfg.workload.key_min, u64::MAX - 1);
    }

    #[test]
    fn pubsub_test_needs_a_subscriber() {
        let err = Setup::new()
            .env("TEST_SUBSCRIBERS", "0")
            .error(&["--workload-profile", "pubsub_test"]);
        assert_eq!(
            err,
            "pubsub_test needs at least one subscriber: workload.subscribers = '0' (from env)"
        );
    }

    #[test]
    fn verify_writes_needs_a_mix_with_set() {
        let cfg = Setup::new().config(&["--verify-writes"]);
        assert!(cfg.workload.verify_writes);
        let cfg = Setup::new().env("TEST_VERIFY_WRITES", "true").config(&[
            "--workload-profile",
            "list_operations",
            "--operations",
            "SET,LPUSH",
        ]);
        assert!(cfg.workload.verify_writes);
        assert!(!Setup::new().config(&[]).workload.verify_writes);
        let err = Setup::new().error(&["--verify-writes", "--workload-profile", "pubsub_test"]);
        assert_eq!(
            err,
            "workload.verify_writes = 'true' (from cli) works with the command-mix workloads \
             (basic_rw, list_operations, hash_operations, stream_operations and their profiles), \
             not with pubsub_test"
        );
        let err = Setup::new().error(&["--verify-writes", "--operations", "GET,INCR"]);
        assert_eq!(
            err,
            "workload.verify_writes = 'true' (from cli) needs SET in workload.operations \
             (--operations / TEST_OPERATIONS), which is GET,INCR"
        );
        let err = Setup::new().error(&["--verify-writes", "--expiry-range", "60-70"]);
        assert!(
            err.contains("workload.expiry_range = '60-70' (from cli)"),
            "{err}"
        );
    }

    #[test]
    fn repeatable_flags_in_help_and_after_subcommands() {
        let s = Setup::new();
        let Ok(CliAction::Help(help)) = s.load(&["--help"]) else {
            panic!("--help")
        };
        assert!(help.contains("--command <TEMPLATE>"), "{help}");
        assert!(help.contains("[env: TEST_COMMANDS] [repeatable]"), "{help}");
        match s.load(&[
            "test-connection",
            "--command",
            "GET a",
            "--command",
            "GET b",
        ]) {
            Ok(CliAction::TestConnection(cfg)) => assert_eq!(cfg.workload.commands.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn value_size_fixed_unless_range_set_higher() {
        let s = Setup::new();
        assert_eq!(s.config(&[]).workload.value_size, ValueSize::Fixed(100));
        let cfg = s.config(&["--value-size-min", "10", "--value-size-max", "20"]);
        assert_eq!(
            cfg.workload.value_size,
            ValueSize::Range { min: 10, max: 20 }
        );
        assert_eq!(resolved(&cfg, "workload.value_size"), ("", Source::Default));
        let cfg = s.config(&["--value-size-min", "10", "--value-size", "7"]);
        assert_eq!(cfg.workload.value_size, ValueSize::Fixed(7));
    }

    #[test]
    fn durations_in_every_format() {
        let s = Setup::new();
        for (text, expected) in [
            ("30", Duration::from_secs(30)),
            ("2.5", Duration::from_millis(2500)),
            ("1m30s", Duration::from_secs(90)),
            ("PT1M30S", Duration::from_secs(90)),
            ("PT0.5S", Duration::from_millis(500)),
            ("P1DT2H", Duration::from_secs(93_600)),
        ] {
            let cfg = s.config(&["--duration", text]);
            assert_eq!(cfg.test.duration, Some(expected), "{text}");
        }
        let cfg = s.config(&["--metrics-interval", "500ms"]);
        assert_eq!(cfg.output.metrics_interval, Duration::from_millis(500));
        assert_eq!(
            resolved(&cfg, "output.metrics_interval"),
            ("0.5", Source::Cli)
        );
    }

    #[test]
    fn cli_flags_help_version_and_usage_errors() {
        let s = Setup::new();
        assert!(s.config(&["--quiet"]).output.quiet);
        assert!(!s.config(&["--quiet=false"]).output.quiet);
        assert_eq!(s.config(&["--port", "1", "--port", "2"]).redis.port, 2);
        assert_eq!(
            s.config(&["--log-level", "WARNING"]).output.log_level,
            "warn"
        );

        let Ok(CliAction::Help(help)) = s.load(&["--help"]) else {
            panic!("--help")
        };
        assert!(help.contains("--host <VALUE>"), "{help}");
        assert!(
            help.contains("[env: REDIS_HOST] [default: localhost]"),
            "{help}"
        );
        assert!(help.contains("Exit codes:"), "{help}");
        assert!(help.contains("test-connection"), "{help}");
        let Ok(CliAction::Help(version)) = s.load(&["-V"]) else {
            panic!("-V")
        };
        assert!(version.contains(env!("CARGO_PKG_VERSION")));

        let err = s.error(&["--hots", "x"]);
        assert_eq!(
            err,
            "unexpected argument '--hots' found (tip: a similar argument exists: '--host'); \
             see --help"
        );
        assert!(matches!(s.load(&["--nope"]), Err(ConfigError::Usage(_))));
        assert!(matches!(
            s.load(&["--show-config", "--save-config", "x.yaml"]),
            Err(ConfigError::Usage(_))
        ));
    }

    #[test]
    fn subcommands_and_global_flags() {
        let s = Setup::new();
        for args in [
            &["test-connection", "--port", "7000"][..],
            &["--port", "7000", "test-connection"][..],
        ] {
            match s.load(args) {
                Ok(CliAction::TestConnection(cfg)) => {
                    assert_eq!(cfg.redis.port, 7000);
                    assert_eq!(resolved(&cfg, "redis.port"), ("7000", Source::Cli));
                }
                other => panic!("{args:?}: {other:?}"),
            }
        }
        match s.load(&["test-connection", "--port", "1", "--port", "2"]) {
            Ok(CliAction::TestConnection(cfg)) => assert_eq!(cfg.redis.port, 2),
            other => panic!("{other:?}"),
        }
        assert!(matches!(s.load(&["help"]), Ok(CliAction::Help(_))));
        assert!(matches!(
            s.load(&["list-profiles"]),
            Ok(CliAction::ListProfiles)
        ));
        assert!(matches!(
            s.load(&["describe-profile", "high_throughput"]),
            Ok(CliAction::DescribeProfile(n)) if n == "high_throughput"
        ));
        let err = s.error(&["describe-profile", "nope"]);
        assert!(err.contains("unknown workload profile 'nope'") && err.contains("basic_rw"));
        let err = s.error(&["describe-profile"]);
        assert_eq!(
            err,
            "the following required arguments were not provided: <NAME>; see --help"
        );
        assert!(matches!(
            s.load(&["--show-config"]),
            Ok(CliAction::ShowConfig(_))
        ));
        match s.load(&["--save-config", "out.yaml"]) {
            Ok(CliAction::SaveConfig(_, path)) => assert_eq!(path, s.dir.path().join("out.yaml")),
            other => panic!("{other:?}"),
        }
        // Listing profiles does not need a valid configuration.
        let broken = Setup::new().env("REDIS_PORT", "0");
        assert!(matches!(
            broken.load(&["list-profiles"]),
            Ok(CliAction::ListProfiles)
        ));
    }

    #[test]
    fn secrets_are_redacted_everywhere() {
        let cfg = Setup::new().config(&["--password", "hunter2", "--username", "bob"]);
        assert_eq!(cfg.redis.password.as_ref().unwrap().expose(), "hunter2");
        assert_eq!(resolved(&cfg, "redis.password"), ("***", Source::Cli));
        let show = render_show_config(&cfg);
        assert!(
            show.contains("redis.password") && show.contains("***"),
            "{show}"
        );
        let yaml = render_yaml(&cfg);
        assert!(!yaml.contains("password:"), "{yaml}");
        assert_eq!(cfg.redacted_json()["redis"]["password"], "***");
        for text in [
            show,
            yaml,
            format!("{cfg:?}"),
            cfg.redacted_json().to_string(),
        ] {
            assert!(!text.contains("hunter2"), "{text}");
        }
        let s = Setup::new().file("p.yaml", "redis:\n  password: [x, hunter2]\n");
        let err = s.error(&["--config-file", "p.yaml"]);
        assert!(
            err.contains("redis.password") && err.contains("'***'"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn show_config_is_aligned_and_names_sources() {
        let cfg = Setup::new()
            .env("REDIS_HOST", "db.example")
            .config(&["--seed", "7"]);
        let show = render_show_config(&cfg);
        let host_line = show.lines().find(|l| l.starts_with("redis.host ")).unwrap();
        assert!(host_line.contains("db.example") && host_line.ends_with("(env)"));
        let seed_line = show.lines().find(|l| l.starts_with("test.seed ")).unwrap();
        assert!(seed_line.ends_with("(cli)"));
        let user_line = show
            .lines()
            .find(|l| l.starts_with("redis.username "))
            .unwrap();
        assert!(user_line.contains("(not set)"));
        // Sources line up in one column.
        let columns: Vec<usize> = show
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.rfind('(').unwrap())
            .collect();
        assert!(columns.windows(2).all(|w| w[0] == w[1]), "{show}");
        assert_eq!(
            show.lines().filter(|l| l.is_empty()).count(),
            SECTIONS.len() - 1
        );
    }

    #[test]
    fn saved_yaml_writes_templates_and_weights_as_lists() {
        let cfg = Setup::new().config(&[
            "--command",
            r#"SET __key__ "a; b""#,
            "--command",
            "GET __key__",
            "--command-weight",
            "2",
            "--command-weight",
            "0.5",
        ]);
        let yaml = render_yaml(&cfg);
        let doc: Value = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(
            doc["workload"]["commands"],
            serde_json::json!([r#"SET __key__ "a; b""#, "GET __key__"])
        );
        assert_eq!(
            doc["workload"]["command_weights"],
            serde_json::json!([2.0, 0.5])
        );
        assert_eq!(
            cfg.redacted_json()["workload"]["commands"],
            doc["workload"]["commands"]
        );
    }

    #[test]
    fn saved_yaml_loads_back_to_the_same_values() {
        let original_setup = Setup::new()
            .env("REDIS_HOST", "10.0.0.5")
            .env("REDIS_PASSWORD", "hunter2")
            .dotenv("TEST_DURATION=1m30s\nLOG_LEVEL=Warning\n")
            .file(
                "base.yaml",
                "identity:\n  app_name: 'true'\n  run_id: fixed-run\n",
            );
        for args in [
            &[
                "--config-file",
                "base.yaml",
                "--workload-profile",
                "high_throughput",
                "--operations",
                "GET",
                "--seed",
                "18446744073709551615",
                "--key-prefix",
                "k: v #x",
                "--quiet",
                "--target-ops-per-second",
                "1500.5",
                "--output-file",
                "out dir/report.json",
            ][..],
            &[
                "--config-file",
                "base.yaml",
                "--value-size-min",
                "1",
                "--value-size-max",
                "2",
                "--operation-weights",
                "INCR:1,SET:0.25",
                "--protocol",
                "resp2",
            ][..],
            &[
                "--config-file",
                "base.yaml",
                "--command",
                r#"SET __key__ "a; b""#,
                "--command",
                "GET __key__",
                "--command-weight",
                "2",
                "--command-weight",
                "0.5",
                "--value-sizes",
                "32:9, 1024:1",
                "--expiry-range",
                "60-3600",
                "--warmup",
                "1m",
                "--processing-time",
                "0",
                "--pubsub-channels",
                "a,b",
                "--key-distribution",
                "zipf:1.1",
                "--hash-tag",
                "--key-min",
                "5",
            ][..],
        ] {
            let original = original_setup.config(args);
            let yaml = render_yaml(&original);
            let reload = Setup::new().file("saved.yaml", &yaml);
            let path = reload.dir.path().join("saved.yaml");
            save_config(&original, &path).unwrap();
            let loaded = reload.config(&["--config-file", "saved.yaml"]);
            for f in FIELDS {
                let (a, b) = (&original.resolved[f.key], &loaded.resolved[f.key]);
                if f.secret {
                    assert_eq!(b.0, "", "secret was saved");
                } else if is_per_run(f, a.1) {
                    assert_eq!(b.1, Source::Default, "{}", f.key);
                } else {
                    assert_eq!(a.0, b.0, "{} differs after reload:\n{yaml}", f.key);
                }
            }
            assert_eq!(original.workload.operations, loaded.workload.operations);
            assert_eq!(original.workload.value_size, loaded.workload.value_size);
            assert_eq!(original.test.duration, loaded.test.duration);
            assert_eq!(original.test.seed, loaded.test.seed);
            assert_eq!(original.identity.run_id, loaded.identity.run_id);
            assert_eq!(original.redis.protocol, loaded.redis.protocol);
            let (a, b) = (&original.workload, &loaded.workload);
            assert_eq!(a.kind, b.kind);
            assert_eq!(a.commands, b.commands);
            assert_eq!(a.key_distribution, b.key_distribution);
            assert_eq!(a.expiry_range, b.expiry_range);
            assert_eq!(a.warmup, b.warmup);
            assert_eq!(a.pubsub_channels, b.pubsub_channels);
            assert!(yaml.starts_with("# "));
        }
    }

    #[test]
    fn sentinel_tls_follows_tls_unless_set() {
        let s = Setup::new();
        let resolved = |cfg: &RunnerConfig| cfg.resolved["redis.sentinel_tls"].clone();
        let nodes = ["--sentinel-nodes", "h:26379"];
        let plain = s.config(&nodes);
        assert!(plain.redis.sentinel.as_ref().unwrap().tls.is_none());
        assert_eq!(resolved(&plain), ("false".to_string(), Source::Default));
        let tls = s.config(&[&nodes[..], &["--tls", "--tls-insecure"]].concat());
        assert!(tls.redis.sentinel.as_ref().unwrap().tls.is_some());
        assert_eq!(resolved(&tls), ("true".to_string(), Source::Default));
        let off = s.config(
            &[
                &nodes[..],
                &["--tls", "--tls-insecure", "--sentinel-tls=false"],
            ]
            .concat(),
        );
        assert!(off.redis.sentinel.as_ref().unwrap().tls.is_none());
        assert!(off.redis.tls.is_some());
        let err = s.error(&[&nodes[..], &["--sentinel-tls"]].concat());
        assert!(
            err.contains("redis.sentinel_tls") && err.contains("redis.tls"),
            "{err}"
        );
        let user = s.config(
            &[
                &nodes[..],
                &["--sentinel-username", "app", "--sentinel-password", "pw"],
            ]
            .concat(),
        );
        assert_eq!(
            user.redis.sentinel.unwrap().username.as_deref(),
            Some("app")
        );
        let err = s.error(&[&nodes[..], &["--sentinel-username", "app"]].concat());
        assert!(err.contains("redis.sentinel_password"), "{err}");
    }
}
