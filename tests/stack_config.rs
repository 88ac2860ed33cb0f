//! The Docker observability stack's files, checked without a Docker engine.
//!
//! docker-compose.yml must pass Debian's `docker-compose config -q` and the compose-spec JSON
//! schema (check-jsonschema); config/prometheus.yml must pass `promtool check config` and start
//! a real Prometheus with the Compose file's flags; config/otel-collector-config.yml is parsed
//! and every component its pipelines name must be defined. Ports, scrape targets, URLs and
//! intervals must agree across the files and with redis-loadgen's own configuration, which the
//! library resolves here from the Compose service's environment exactly as the container would.
//! Each external tool also gets a broken copy and must reject it, so a tool that accepted
//! anything fails the test. scripts/test.sh installs the tools; a missing one is a failure
//! that says how, never a skip.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis_loadgen::config::{CliAction, OtlpProtocol, RunnerConfig, fields, load_from_args};
use serde_json::Value;
use support::free_port;

const COMPOSE: &str = "docker-compose.yml";
const COLLECTOR: &str = "config/otel-collector-config.yml";
const PROMETHEUS: &str = "config/prometheus.yml";
const DATASOURCES: &str = "config/grafana/provisioning/datasources/datasources.yml";
const DASHBOARD_PROVIDERS: &str = "config/grafana/provisioning/dashboards/dashboards.yml";
const DASHBOARDS: &str = "config/grafana/dashboards";
const DOCKERFILE: &str = "docker/Dockerfile";

/// The family's ports (issue 7, README): OTLP gRPC and HTTP in, the Prometheus exporter out.
const OTLP_GRPC_PORT: u16 = 4317;
const OTLP_HTTP_PORT: u16 = 4318;
const EXPORTER_PORT: u16 = 8889;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

fn parse_yaml(name: &str, text: &str) -> Value {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"))
}

fn yaml(rel: &str) -> Value {
    parse_yaml(rel, &read(rel))
}

/// An external tool: the path in `env_var` when that is set, else `name` on PATH. A missing
/// tool fails the test with how scripts/test.sh installs it.
fn tool(name: &str, env_var: Option<&str>, install: &str) -> PathBuf {
    if let Some(var) = env_var
        && let Some(path) = std::env::var_os(var)
    {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{var}={} is not a file: {install}",
            path.display()
        );
        return path;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            let unset = env_var.map_or(String::new(), |v| format!(" ({v} is not set either)"));
            panic!("{name} is not on PATH{unset}: {install}")
        })
}

fn docker_compose() -> PathBuf {
    tool(
        "docker-compose",
        None,
        "scripts/test.sh installs it (ensure_docker_compose: apt-get install docker-compose); \
         run the tests through scripts/test.sh",
    )
}

fn check_jsonschema() -> PathBuf {
    tool(
        "check-jsonschema",
        Some("CHECK_JSONSCHEMA"),
        "scripts/test.sh installs it from PyPI into target/tools (ensure_check_jsonschema) and \
         exports CHECK_JSONSCHEMA; run the tests through scripts/test.sh",
    )
}

fn prometheus_tool(name: &str) -> PathBuf {
    tool(
        name,
        None,
        "scripts/test.sh installs it (ensure_prometheus: apt-get install prometheus); run the \
         tests through scripts/test.sh",
    )
}

/// Runs a command to completion: (success, stdout + stderr).
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `text` with `from` replaced once; panics when `from` is not there (a stale mutation would
/// silently test nothing).
fn mutate(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "mutation target {from:?} not found");
    text.replacen(from, to, 1)
}

// ---------------------------------------------------------------------------------------------
// Compose file helpers

fn services(compose: &Value) -> &serde_json::Map<String, Value> {
    compose["services"]
        .as_object()
        .expect("docker-compose.yml has a services mapping")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    services(compose)
        .get(name)
        .unwrap_or_else(|| panic!("docker-compose.yml has no service {name}"))
}

/// A list of strings (`[a, b]`), or one string split on whitespace.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Null => Vec::new(),
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        other => panic!("expected a string or a list of strings, got {other}"),
    }
}

/// A service's environment, from the mapping or the `KEY=VALUE` list form.
fn environment(svc: &Value) -> BTreeMap<String, String> {
    match &svc["environment"] {
        Value::Null => BTreeMap::new(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect(),
        list => strings(list)
            .into_iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv, String::new()),
            })
            .collect(),
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Published {
    ip: String,
    host: u16,
    container: u16,
}

/// A service's published ports; only the `IP:HOST:CONTAINER` form is accepted (the IP is
/// what keeps the stack off other interfaces).
fn published(name: &str, svc: &Value) -> Vec<Published> {
    strings(&svc["ports"])
        .iter()
        .map(|p| {
            let spec = p.strip_suffix("/tcp").unwrap_or(p);
            let parts: Vec<&str> = spec.split(':').collect();
            let [ip, host, container] = parts[..] else {
                panic!("{name}: port {p:?} is not IP:HOST:CONTAINER");
            };
            Published {
                ip: ip.to_string(),
                host: host
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: port {p:?}")),
                container: container
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: port {p:?}")),
            }
        })
        .collect()
}

/// The container port a service publishes as the same host port, or panics.
fn publishes(compose: &Value, name: &str, port: u16) {
    let ports = published(name, service(compose, name));
    assert!(
        ports.iter().any(|p| p.host == port && p.container == port),
        "{name} does not publish {port} (as 127.0.0.1:{port}:{port}): {ports:?}"
    );
}

/// Bind mounts (`./host:container[:ro]`) and named-volume mounts of a service:
/// (source, target).
fn mounts(svc: &Value) -> Vec<(String, String)> {
    strings(&svc["volumes"])
        .iter()
        .map(|m| {
            let mut parts = m.split(':');
            let source = parts.next().unwrap().to_string();
            let target = parts
                .next()
                .unwrap_or_else(|| panic!("volume {m:?} has no target"))
                .to_string();
            (source, target)
        })
        .collect()
}

/// Where a service mounts the repository file or directory `rel`.
fn mount_target(compose: &Value, name: &str, rel: &str) -> String {
    let svc = service(compose, name);
    mounts(svc)
        .into_iter()
        .find(|(source, _)| source.trim_start_matches("./").trim_end_matches('/') == rel)
        .map(|(_, target)| target)
        .unwrap_or_else(|| panic!("{name} does not mount ./{rel}"))
}

/// The value of `--flag=value` (or `--flag value`) in a list of arguments.
fn flag(args: &[String], name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if let Some(v) = a.strip_prefix(&prefix) {
            Some(v.to_string())
        } else if a == name {
            Some(args.get(i + 1).cloned().unwrap_or_default())
        } else {
            None
        }
    })
}

/// redis-loadgen's configuration as the binary resolves it from `args` and only the
/// variables in `env` (no process environment, no `.env`).
fn resolve(args: &[String], env: &BTreeMap<String, String>) -> RunnerConfig {
    let dir = tempfile::tempdir().unwrap();
    let mut argv = vec!["redis-loadgen".to_string()];
    argv.extend_from_slice(args);
    match load_from_args(argv.clone(), &|k| env.get(k).cloned(), dir.path()) {
        Ok(CliAction::Run(cfg)) => cfg,
        Ok(other) => panic!("{argv:?} with {env:?} is not a run: {other:?}"),
        Err(e) => panic!("redis-loadgen rejects {argv:?} with {env:?}: {e}"),
    }
}

/// The Compose redis-loadgen service's configuration, as the container resolves it.
fn container_config(compose: &Value) -> RunnerConfig {
    let svc = service(compose, "redis-loadgen");
    resolve(&strings(&svc["command"]), &environment(svc))
}

/// The configuration of the README's host run against the stack (every interval a default).
fn host_run_config() -> RunnerConfig {
    resolve(
        &[
            "--otel-endpoint".to_string(),
            format!("http://127.0.0.1:{OTLP_GRPC_PORT}"),
        ],
        &BTreeMap::new(),
    )
}

// ---------------------------------------------------------------------------------------------
// Collector config helpers

/// `host:port` -> port; the host must be 0.0.0.0 (the default, localhost, is unreachable from
/// the other containers and the published port).
fn listen_port(cfg: &Value, pointer: &str) -> u16 {
    let endpoint = cfg
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{COLLECTOR}: no endpoint at {pointer}"));
    let (host, port) = endpoint
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{COLLECTOR}: {pointer} = {endpoint:?} is not host:port"));
    assert_eq!(
        host, "0.0.0.0",
        "{COLLECTOR}: {pointer} listens on {host}, not on every interface"
    );
    port.parse()
        .unwrap_or_else(|_| panic!("{COLLECTOR}: {pointer} = {endpoint:?}"))
}

/// The one component of `kind` (receivers, exporters, ...) whose type (the name before `/`)
/// is `ty`: its full name.
fn component_of_type(cfg: &Value, kind: &str, ty: &str) -> String {
    let names: Vec<&String> = cfg[kind]
        .as_object()
        .map(|m| {
            m.keys()
                .filter(|k| k.split('/').next() == Some(ty))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        names.len(),
        1,
        "{COLLECTOR}: expected one {ty} in {kind}, got {names:?}"
    );
    names[0].clone()
}

/// What is wrong with a collector config's wiring: components a pipeline names that are not
/// defined, defined components no pipeline uses, enabled extensions that are not defined,
/// pipelines without receivers or exporters, metrics-only exporters in other pipelines, and a
/// memory_limiter that is not the first processor.
fn collector_problems(cfg: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let defined = |kind: &str| -> BTreeSet<String> {
        cfg[kind]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut used: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let pipelines = cfg
        .pointer("/service/pipelines")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if pipelines.is_empty() {
        problems.push("service.pipelines is missing or empty".to_string());
    }
    for (name, pipeline) in &pipelines {
        let signal = name.split('/').next().unwrap_or_default();
        if !["metrics", "traces", "logs"].contains(&signal) {
            problems.push(format!("pipeline {name}: unknown signal {signal}"));
        }
        for kind in ["receivers", "processors", "exporters"] {
            let names = strings(&pipeline[kind]);
            if names.is_empty() && kind != "processors" {
                problems.push(format!("pipeline {name} has no {kind}"));
            }
            let known = defined(kind);
            for n in &names {
                if !known.contains(n) {
                    problems.push(format!("pipeline {name}: {n} is not defined under {kind}"));
                }
                if kind == "exporters"
                    && n.split('/').next() == Some("prometheus")
                    && signal != "metrics"
                {
                    problems.push(format!("pipeline {name}: {n} only exports metrics"));
                }
                used.entry(kind).or_default().insert(n.clone());
            }
            if kind == "processors"
                && let Some(pos) = names.iter().position(|n| n.starts_with("memory_limiter"))
                && pos != 0
            {
                problems.push(format!(
                    "pipeline {name}: memory_limiter must be the first processor"
                ));
            }
        }
    }
    for kind in ["receivers", "processors", "exporters"] {
        for n in defined(kind) {
            if !used.get(kind).is_some_and(|u| u.contains(&n)) {
                problems.push(format!("{kind}: {n} is defined but no pipeline uses it"));
            }
        }
    }
    let extensions = defined("extensions");
    let enabled = strings(cfg.pointer("/service/extensions").unwrap_or(&Value::Null));
    for e in &enabled {
        if !extensions.contains(e) {
            problems.push(format!(
                "service.extensions: {e} is not defined under extensions"
            ));
        }
    }
    for e in &extensions {
        if !enabled.contains(e) {
            problems.push(format!(
                "extensions: {e} is defined but not in service.extensions"
            ));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// Prometheus config helpers

/// A Prometheus duration (`5s`, `1m30s`, `30d`, `250ms`).
fn prom_duration(text: &str) -> Duration {
    let mut total = Duration::ZERO;
    let mut rest = text;
    assert!(!rest.is_empty(), "empty duration");
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        assert!(digits > 0, "bad Prometheus duration {text:?}");
        let n: u64 = rest[..digits].parse().unwrap();
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|u| rest.starts_with(u) && !(*u == "m" && rest.starts_with("ms")))
            .unwrap_or_else(|| panic!("bad Prometheus duration {text:?}"));
        rest = &rest[unit.len()..];
        total += match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            "d" => Duration::from_secs(n * 86_400),
            "w" => Duration::from_secs(n * 604_800),
            _ => Duration::from_secs(n * 31_536_000),
        };
    }
    total
}

fn scrape_job<'a>(prom: &'a Value, job: &str) -> &'a Value {
    prom["scrape_configs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["job_name"] == job))
        .unwrap_or_else(|| panic!("{PROMETHEUS} has no job {job}"))
}

fn job_targets(job: &Value) -> Vec<String> {
    job["static_configs"]
        .as_array()
        .map(|cs| cs.iter().flat_map(|c| strings(&c["targets"])).collect())
        .unwrap_or_default()
}

fn host_port(target: &str) -> (String, u16) {
    let (host, port) = target
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("target {target:?} is not host:port"));
    (host.to_string(), port.parse().unwrap())
}

fn datasource<'a>(ds: &'a Value, ty: &str) -> &'a Value {
    ds["datasources"]
        .as_array()
        .and_then(|list| list.iter().find(|d| d["type"] == ty))
        .unwrap_or_else(|| panic!("{DATASOURCES} has no {ty} data source"))
}

/// `http://host:port[/...]` -> (host, port).
fn url_host_port(url: &str) -> (String, u16) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("{url:?} is not an http:// URL"));
    let authority = rest.split('/').next().unwrap();
    host_port(authority)
}

// ---------------------------------------------------------------------------------------------
// The tool checks

#[test]
fn compose_file_passes_docker_compose_config() {
    let bin = docker_compose();
    let dir = tempfile::tempdir().unwrap();
    // An empty env file: a developer's .env must not change what is validated.
    let env_file = dir.path().join("empty.env");
    std::fs::write(&env_file, "").unwrap();
    let check = |file: &Path| {
        run(Command::new(&bin)
            .arg("--env-file")
            .arg(&env_file)
            .arg("--project-directory")
            .arg(repo())
            .arg("-f")
            .arg(file)
            .args(["config", "-q"])
            .current_dir(repo()))
    };
    let (ok, said) = check(&repo().join(COMPOSE));
    assert!(ok, "docker-compose config -q rejects {COMPOSE}:\n{said}");

    // The profile and the services the README names are seen by Compose itself.
    let (ok, said) = run(Command::new(&bin)
        .arg("--env-file")
        .arg(&env_file)
        .args(["-f", COMPOSE, "config", "--profiles"])
        .current_dir(repo()));
    assert!(
        ok && said.lines().any(|l| l.trim() == "loadgen"),
        "profiles: {said}"
    );

    let broken = dir.path().join("docker-compose.yml");
    std::fs::write(
        &broken,
        mutate(&read(COMPOSE), "    image: ", "    imagee: "),
    )
    .unwrap();
    let (ok, said) = check(&broken);
    assert!(
        !ok && said.contains("imagee"),
        "docker-compose accepted a broken file:\n{said}"
    );
}

#[test]
fn compose_file_matches_the_compose_spec_schema() {
    let bin = check_jsonschema();
    let check = |file: &Path| {
        run(Command::new(&bin)
            .args(["--builtin-schema", "vendor.compose-spec"])
            .arg(file))
    };
    let (ok, said) = check(&repo().join(COMPOSE));
    assert!(
        ok,
        "{COMPOSE} does not match the compose-spec schema:\n{said}"
    );

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("docker-compose.yml");
    std::fs::write(
        &broken,
        mutate(&read(COMPOSE), "    image: ", "    imagee: "),
    )
    .unwrap();
    let (ok, said) = check(&broken);
    assert!(
        !ok && said.contains("imagee"),
        "check-jsonschema accepted a broken file:\n{said}"
    );
}

#[test]
fn prometheus_config_passes_promtool() {
    let bin = prometheus_tool("promtool");
    let check = |file: &Path| run(Command::new(&bin).args(["check", "config"]).arg(file));
    let (ok, said) = check(&repo().join(PROMETHEUS));
    assert!(ok, "promtool check config rejects {PROMETHEUS}:\n{said}");

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("prometheus.yml");
    let text = mutate(
        &read(PROMETHEUS),
        "scrape_interval: 5s",
        "scrape_interval: 5 s",
    );
    std::fs::write(&broken, text).unwrap();
    let (ok, said) = check(&broken);
    assert!(!ok, "promtool accepted a broken config:\n{said}");
}

/// A Prometheus child process, killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(port: u16, target: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    Some((head.to_string(), body.to_string()))
}

fn get_json(port: u16, target: &str) -> Value {
    let (head, body) = http_get(port, target).unwrap_or_else(|| panic!("GET {target} failed"));
    assert!(head.contains(" 200 "), "GET {target}: {head}\n{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {target}: {e}: {body}"))
}

/// Starts Prometheus with `args` on a free loopback port and waits until it is ready.
/// Err: what it said when it exited (a lost port race is retried).
fn start_prometheus(args: &[String], dir: &Path) -> Result<Prometheus, String> {
    let bin = prometheus_tool("prometheus");
    let log = dir.join("prometheus.log");
    let mut said = String::new();
    for _ in 0..5 {
        let port = free_port();
        let child = Command::new(&bin)
            .args(args)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start prometheus");
        let mut p = Prometheus { child, port };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline && p.child.try_wait().unwrap().is_none() {
            if http_get(port, "/-/ready").is_some_and(|(head, _)| head.contains(" 200 ")) {
                return Ok(p);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        drop(p);
        said = std::fs::read_to_string(&log).unwrap_or_default();
        // Only a lost port race is worth another try; a flag or config error is the answer.
        if !said.contains("address already in use") {
            break;
        }
    }
    Err(said)
}

/// Prometheus started with the Compose service's own flags (the storage path moved to a
/// temporary directory, the config file to the repository's): it must start, take every flag
/// as written and set up every scrape job's targets.
#[test]
fn prometheus_starts_with_the_compose_flags_and_config() {
    let compose = yaml(COMPOSE);
    let args = strings(&service(&compose, "prometheus")["command"]);
    let dir = tempfile::tempdir().unwrap();
    let local: Vec<String> = args
        .iter()
        .map(|a| {
            assert!(!a.starts_with("--web.listen-address"), "unexpected {a}");
            if a.starts_with("--config.file=") {
                format!("--config.file={}", repo().join(PROMETHEUS).display())
            } else if a.starts_with("--storage.tsdb.path=") {
                format!("--storage.tsdb.path={}", dir.path().join("data").display())
            } else {
                a.clone()
            }
        })
        .collect();
    let p = start_prometheus(&local, dir.path()).unwrap_or_else(|said| {
        panic!("prometheus with the Compose flags {args:?} did not start:\n{said}")
    });

    let flags = &get_json(p.port, "/api/v1/status/flags")["data"];
    for a in &args {
        let Some((name, value)) = a
            .strip_prefix("--")
            .map(|f| f.split_once('=').unwrap_or((f, "true")))
        else {
            continue;
        };
        if name == "config.file" || name == "storage.tsdb.path" {
            continue;
        }
        // Prometheus's byte sizes are powers of two: it shows 10GB back as 10GiB.
        let took = flags[name].as_str().unwrap_or_default().replace("iB", "B");
        assert_eq!(took, value, "Prometheus took --{name} as {}", flags[name]);
    }
    let prom = yaml(PROMETHEUS);
    let wanted: Vec<(String, String)> = prom["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|job| {
            let name = job["job_name"].as_str().unwrap().to_string();
            job_targets(job)
                .into_iter()
                .map(move |t| (name.clone(), format!("http://{t}/metrics")))
        })
        .collect();
    assert!(!wanted.is_empty(), "{PROMETHEUS} has no targets");
    // The scrape manager takes up to its 5 s reload tick to set up the targets.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let targets = get_json(p.port, "/api/v1/targets?state=any");
        let active = targets["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let missing: Vec<&(String, String)> = wanted
            .iter()
            .filter(|(job, url)| {
                !active
                    .iter()
                    .any(|t| t["labels"]["job"] == job.as_str() && t["scrapeUrl"] == url.as_str())
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has no active target for {missing:?}: {active:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

// ---------------------------------------------------------------------------------------------
// Consistency checks

#[test]
fn collector_config_is_consistent() {
    let text = read(COLLECTOR);
    let cfg = parse_yaml(COLLECTOR, &text);
    assert_eq!(
        collector_problems(&cfg),
        Vec::<String>::new(),
        "{COLLECTOR}"
    );

    // Every pipeline needs metrics and traces: the family sends both.
    let pipelines = cfg.pointer("/service/pipelines").unwrap();
    for signal in ["metrics", "traces"] {
        assert!(
            pipelines.get(signal).is_some(),
            "{COLLECTOR}: no {signal} pipeline"
        );
    }
    assert_eq!(
        listen_port(&cfg, "/receivers/otlp/protocols/grpc/endpoint"),
        OTLP_GRPC_PORT
    );
    assert_eq!(
        listen_port(&cfg, "/receivers/otlp/protocols/http/endpoint"),
        OTLP_HTTP_PORT
    );
    let prometheus = component_of_type(&cfg, "exporters", "prometheus");
    assert_eq!(
        listen_port(&cfg, &format!("/exporters/{prometheus}/endpoint")),
        EXPORTER_PORT
    );
    let exporter = &cfg["exporters"][&prometheus];
    // The dashboards query redis_operation_duration_milliseconds_bucket and *_total: the
    // exporter must add the unit and type suffixes (its default; false would drop them).
    assert_ne!(
        exporter["add_metric_suffixes"], false,
        "{COLLECTOR}: suffixes off"
    );
    assert_eq!(
        exporter.pointer("/resource_to_telemetry_conversion/enabled"),
        Some(&Value::Bool(true)),
        "{COLLECTOR}: resource attributes must become labels"
    );
    // Traces leave for Jaeger over OTLP (plain gRPC inside the network).
    let jaeger = component_of_type(&cfg, "exporters", "otlp");
    let traces = strings(&pipelines["traces"]["exporters"]);
    assert!(
        traces.contains(&jaeger),
        "{COLLECTOR}: traces do not go to {jaeger}"
    );
    assert_eq!(cfg["exporters"][&jaeger]["tls"]["insecure"], true);

    // The checker catches each kind of mistake (so an empty list above means something).
    let broken =
        |from: &str, to: &str| collector_problems(&parse_yaml("mutant", &mutate(&text, from, to)));
    let p = broken(
        "exporters: [prometheus, debug]",
        "exporters: [prometheus, debug, otlphttp]",
    );
    assert!(
        p.iter().any(|m| m.contains("otlphttp is not defined")),
        "{p:?}"
    );
    let p = broken(
        "extensions: [health_check]",
        "extensions: [health_check, pprof]",
    );
    assert!(
        p.iter().any(|m| m.contains("pprof is not defined")),
        "{p:?}"
    );
    let p = broken(
        "processors: [memory_limiter, batch]",
        "processors: [batch, memory_limiter]",
    );
    assert!(
        p.iter()
            .any(|m| m.contains("memory_limiter must be the first")),
        "{p:?}"
    );
    let p = broken(
        "exporters: [otlp/jaeger, debug]",
        "exporters: [prometheus, debug]",
    );
    assert!(
        p.iter().any(|m| m.contains("only exports metrics")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|m| m.contains("otlp/jaeger is defined but no pipeline")),
        "{p:?}"
    );
}

/// Ports, scrape targets and URLs name the same things in every file.
#[test]
fn ports_targets_and_urls_agree() {
    let compose = yaml(COMPOSE);
    let collector = yaml(COLLECTOR);
    let prom = yaml(PROMETHEUS);
    let ds = yaml(DATASOURCES);
    let names: BTreeSet<&str> = services(&compose).keys().map(String::as_str).collect();

    // The collector runs with the repository's config, and publishes what it listens on.
    let config_target = mount_target(&compose, "otel-collector", COLLECTOR);
    let collector_args = strings(&service(&compose, "otel-collector")["command"]);
    assert_eq!(
        flag(&collector_args, "--config"),
        Some(config_target),
        "collector --config"
    );
    let grpc = listen_port(&collector, "/receivers/otlp/protocols/grpc/endpoint");
    let http = listen_port(&collector, "/receivers/otlp/protocols/http/endpoint");
    let prometheus = component_of_type(&collector, "exporters", "prometheus");
    let exporter = listen_port(&collector, &format!("/exporters/{prometheus}/endpoint"));
    let health = listen_port(&collector, "/extensions/health_check/endpoint");
    for port in [grpc, http, exporter, health] {
        publishes(&compose, "otel-collector", port);
    }

    // Prometheus scrapes the collector's exporter port, and every target is a service.
    let config_target = mount_target(&compose, "prometheus", PROMETHEUS);
    let prom_args = strings(&service(&compose, "prometheus")["command"]);
    assert_eq!(
        flag(&prom_args, "--config.file"),
        Some(config_target),
        "--config.file"
    );
    assert_eq!(
        job_targets(scrape_job(&prom, "otel-collector")),
        vec![format!("otel-collector:{exporter}")],
        "{PROMETHEUS}: the otel-collector job must scrape the exporter's port"
    );
    for job in prom["scrape_configs"].as_array().unwrap() {
        for target in job_targets(job) {
            let (host, _) = host_port(&target);
            assert!(
                names.contains(host.as_str()),
                "{PROMETHEUS}: {target} is not a service"
            );
        }
    }

    // The Compose redis-loadgen reaches Redis and the collector's gRPC port by service name.
    let cfg = container_config(&compose);
    assert!(
        names.contains(cfg.redis.host.as_str()),
        "REDIS_HOST {} is not a service",
        cfg.redis.host
    );
    let redis_ports = published(&cfg.redis.host, service(&compose, &cfg.redis.host));
    assert!(
        redis_ports.iter().any(|p| p.container == cfg.redis.port),
        "redis-loadgen connects to port {} but Redis is on {redis_ports:?}",
        cfg.redis.port
    );
    let otlp = cfg
        .output
        .otlp
        .as_ref()
        .expect("the Compose redis-loadgen exports OTLP");
    let want = match otlp.protocol {
        OtlpProtocol::Grpc => grpc,
        OtlpProtocol::Http => http,
    };
    assert_eq!(
        otlp.endpoint,
        format!("http://otel-collector:{want}"),
        "OTLP endpoint"
    );
    // /metrics stays off in the stack: with it, Prometheus would get each series twice.
    assert!(
        cfg.output.prometheus_listen.is_none(),
        "PROMETHEUS_LISTEN set in the stack"
    );

    // The collector's health is checked by the sidecar (the collector image has no shell).
    let probe =
        strings(&service(&compose, "otel-collector-health")["healthcheck"]["test"]).join(" ");
    assert!(
        probe.contains(&format!("http://otel-collector:{health}/")),
        "the collector health probe does not ask the health_check port {health}: {probe}"
    );

    // Grafana's data sources point at the services and the ports they listen on.
    for (ty, svc) in [("prometheus", "prometheus"), ("jaeger", "jaeger")] {
        let url = datasource(&ds, ty)["url"].as_str().unwrap().to_string();
        let (host, port) = url_host_port(&url);
        assert_eq!(host, svc, "{DATASOURCES}: {ty} url {url}");
        let ports = published(svc, service(&compose, svc));
        assert!(
            ports.iter().any(|p| p.container == port),
            "{ty} url {url}: {svc} publishes {ports:?}"
        );
    }
    assert_eq!(
        datasource(&ds, "prometheus")["isDefault"],
        true,
        "Prometheus is the default"
    );
    assert_eq!(
        mount_target(&compose, "grafana", "config/grafana/provisioning"),
        "/etc/grafana/provisioning"
    );
    let providers = yaml(DASHBOARD_PROVIDERS);
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        mount_target(&compose, "grafana", "config/grafana/dashboards"),
        path
    );
}

/// The metrics interval, the OTLP export interval, Prometheus's scrape and evaluation
/// intervals, Grafana's datasource interval and every dashboard's refresh are one value.
/// redis-loadgen's side is read from the program's own configuration resolver, not written
/// here.
#[test]
fn intervals_agree() {
    let compose = yaml(COMPOSE);
    let prom = yaml(PROMETHEUS);
    let host = host_run_config();
    let container = container_config(&compose);
    let mut seen = vec![
        (
            "redis-loadgen default metrics interval",
            host.output.metrics_interval,
        ),
        (
            "redis-loadgen default OTLP export interval",
            host.output.otlp.unwrap().export_interval,
        ),
        (
            "the Compose redis-loadgen's metrics interval",
            container.output.metrics_interval,
        ),
        (
            "the Compose redis-loadgen's export interval",
            container.output.otlp.unwrap().export_interval,
        ),
    ];
    let global = &prom["global"];
    let scrape = prom_duration(
        global["scrape_interval"]
            .as_str()
            .expect("global scrape_interval"),
    );
    seen.push(("Prometheus scrape_interval", scrape));
    let eval = global["evaluation_interval"]
        .as_str()
        .expect("global evaluation_interval");
    seen.push(("Prometheus evaluation_interval", prom_duration(eval)));
    for job in prom["scrape_configs"].as_array().unwrap() {
        if let Some(i) = job["scrape_interval"].as_str() {
            seen.push(("a job's scrape_interval", prom_duration(i)));
        }
    }
    let ds = yaml(DATASOURCES);
    let grafana = datasource(&ds, "prometheus")["jsonData"]["timeInterval"]
        .as_str()
        .expect("timeInterval");
    seen.push(("Grafana's Prometheus timeInterval", prom_duration(grafana)));
    assert!(
        seen.iter().all(|(_, d)| *d == seen[0].1),
        "the intervals disagree: {seen:#?}"
    );
    // Every provisioned dashboard refreshes as often as new values arrive.
    let mut dashboards: Vec<PathBuf> = std::fs::read_dir(repo().join(DASHBOARDS))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    dashboards.sort();
    assert!(!dashboards.is_empty(), "no dashboards in {DASHBOARDS}");
    for path in dashboards {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let refresh = d["refresh"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no refresh"));
        assert_eq!(
            prom_duration(refresh),
            seen[0].1,
            "{name} refreshes every {refresh}, the metrics arrive every {:?}",
            seen[0].1
        );
    }
    // The table the program is generated from says the same (a second, independent reading).
    let default = fields::find("output.otel_export_interval").and_then(|f| f.default);
    assert_eq!(
        default.map(|ms| ms.parse::<u64>().unwrap()),
        Some(scrape.as_millis() as u64)
    );
}

#[test]
fn compose_file_follows_the_house_rules() {
    let compose = yaml(COMPOSE);
    let network = "redis-test-network";
    assert_eq!(
        compose["networks"][network]["name"], network,
        "network name"
    );
    let volumes: BTreeSet<String> = compose["volumes"]
        .as_object()
        .map(|v| v.keys().cloned().collect())
        .unwrap_or_default();

    // A service with no health check of its own must be probed by another's (the collector).
    let probes: Vec<String> = services(&compose)
        .values()
        .map(|s| strings(&s["healthcheck"]["test"]).join(" "))
        .collect();
    for (name, svc) in services(&compose) {
        let image = svc["image"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no image"));
        let tag = image
            .rsplit_once(':')
            .map(|(_, t)| t)
            .filter(|t| !t.contains('/'));
        assert!(
            tag.is_some_and(|t| t != "latest" && !t.is_empty()),
            "{name}: image {image} is not pinned to a version"
        );
        for p in published(name, svc) {
            assert_eq!(p.ip, "127.0.0.1", "{name} publishes {p:?} beyond loopback");
        }
        assert_eq!(strings(&svc["networks"]), vec![network], "{name}: networks");
        for (source, target) in mounts(svc) {
            if source.starts_with('.') || source.starts_with('/') {
                let path = repo().join(&source);
                assert!(
                    path.exists(),
                    "{name} mounts {source} (at {target}), which does not exist"
                );
            } else {
                assert!(
                    volumes.contains(&source),
                    "{name}: volume {source} is not declared"
                );
            }
        }
        let probed = probes
            .iter()
            .any(|p| p.contains(&format!("http://{name}:")));
        let own = !svc["healthcheck"]["test"].is_null();
        // redis-loadgen is a client: nothing listens in it to be checked.
        assert!(
            own || probed || name == "redis-loadgen",
            "{name} has no health check"
        );
    }

    // Prometheus: data on a named volume, 30 days and a size cap, WAL compression, reload API.
    let prom = service(&compose, "prometheus");
    let args = strings(&prom["command"]);
    let data = flag(&args, "--storage.tsdb.path").expect("--storage.tsdb.path");
    assert!(
        mounts(prom)
            .iter()
            .any(|(s, t)| *t == data && volumes.contains(s)),
        "Prometheus's {data} is not on a named volume"
    );
    assert_eq!(
        flag(&args, "--storage.tsdb.retention.time").as_deref(),
        Some("30d")
    );
    let size = flag(&args, "--storage.tsdb.retention.size").expect("a retention size cap");
    assert!(
        size.ends_with("GB") || size.ends_with("MB") || size.ends_with("TB"),
        "{size}"
    );
    assert!(
        args.iter().any(|a| a == "--storage.tsdb.wal-compression"),
        "WAL compression"
    );
    assert!(
        args.iter().any(|a| a == "--web.enable-lifecycle"),
        "--web.enable-lifecycle"
    );

    // Grafana: admin/admin, data on a named volume.
    let grafana = service(&compose, "grafana");
    let env = environment(grafana);
    assert_eq!(
        env.get("GF_SECURITY_ADMIN_USER").map(String::as_str),
        Some("admin")
    );
    assert_eq!(
        env.get("GF_SECURITY_ADMIN_PASSWORD").map(String::as_str),
        Some("admin")
    );
    assert!(
        mounts(grafana)
            .iter()
            .any(|(s, t)| t == "/var/lib/grafana" && volumes.contains(s)),
        "Grafana's data is not on a named volume"
    );

    // Jaeger takes OTLP.
    let jaeger = environment(service(&compose, "jaeger"));
    assert_eq!(
        jaeger.get("COLLECTOR_OTLP_ENABLED").map(String::as_str),
        Some("true")
    );

    // redis-loadgen: behind a profile, built from docker/Dockerfile, configured only with
    // variables the program knows (and .env.example lists).
    let loadgen = service(&compose, "redis-loadgen");
    assert_eq!(
        strings(&loadgen["profiles"]),
        vec!["loadgen"],
        "redis-loadgen profiles"
    );
    assert_eq!(loadgen["build"]["context"], ".");
    assert_eq!(loadgen["build"]["dockerfile"], DOCKERFILE);
    let known: BTreeSet<&str> = fields::FIELDS.iter().map(|f| f.env).collect();
    let example = read(".env.example");
    for var in environment(loadgen).keys() {
        assert!(
            known.contains(var.as_str()),
            "redis-loadgen: {var} is not a redis-loadgen variable"
        );
        assert!(
            example.lines().any(|l| l.starts_with(&format!("{var}="))),
            "redis-loadgen: {var} is not in .env.example"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

/// The Dockerfile's instructions, continuation lines joined, comments dropped:
/// (INSTRUCTION, arguments).
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (op, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push((op.to_uppercase(), args.trim().to_string()));
        current.clear();
    }
    out
}

/// Is `path` (relative to the build context) excluded by these .dockerignore patterns?
/// Handles what the file uses: plain paths, `dir/`, a leading `**/`, `*` and `!` exceptions.
fn docker_ignored(patterns: &[String], path: &str) -> bool {
    fn glob(pattern: &str, text: &str) -> bool {
        match pattern.split_once('*') {
            None => pattern == text,
            Some((head, tail)) => {
                text.starts_with(head)
                    && (head.len()..=text.len())
                        .any(|i| glob(tail, &text[i..]) && !text[head.len()..i].contains('/'))
            }
        }
    }
    let prefixes: Vec<&str> = path
        .match_indices('/')
        .map(|(i, _)| &path[..i])
        .chain([path])
        .collect();
    let mut ignored = false;
    for p in patterns {
        let (negated, p) = p
            .strip_prefix('!')
            .map_or((false, p.as_str()), |p| (true, p));
        let p = p.trim_end_matches('/');
        let matches = prefixes.iter().any(|prefix| {
            glob(p, prefix)
                || p.strip_prefix("**/").is_some_and(|p| {
                    prefix.split('/').enumerate().any(|(i, _)| {
                        let tail: Vec<&str> = prefix.split('/').skip(i).collect();
                        glob(p, &tail.join("/"))
                    })
                })
        });
        if matches {
            ignored = !negated;
        }
    }
    ignored
}

#[test]
fn dockerfile_is_multi_stage_pinned_and_non_root() {
    let steps = instructions(&read(DOCKERFILE));
    let froms: Vec<&String> = steps
        .iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, a)| a)
        .collect();
    assert!(
        froms.len() >= 2,
        "{DOCKERFILE} is not multi-stage: {froms:?}"
    );
    for from in &froms {
        let image = from.split_whitespace().next().unwrap();
        let tag = image.rsplit_once(':').map(|(_, t)| t);
        assert!(
            tag.is_some_and(|t| t != "latest"),
            "{DOCKERFILE}: {image} is not pinned"
        );
    }
    // The builder's Rust is new enough for every locked dependency (their rust-version).
    let builder = froms[0].split_whitespace().next().unwrap();
    let rust = builder
        .strip_prefix("rust:")
        .and_then(|t| t.strip_suffix("-bookworm"))
        .unwrap_or_else(|| panic!("the builder is {builder}, not rust:<version>-bookworm"));
    let (ok, meta) = run(Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(repo())
        .stderr(Stdio::null()));
    assert!(ok, "cargo metadata failed: {meta}");
    let meta: Value = serde_json::from_str(&meta).unwrap();
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().unwrap()).collect() };
    let needed = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["rust_version"].as_str())
        .max_by_key(|v| version(v))
        .unwrap_or("1.0");
    assert!(
        version(rust) >= version(needed),
        "rust:{rust} is older than the rust-version {needed} the lock needs"
    );

    let runs: Vec<&String> = steps
        .iter()
        .filter(|(op, _)| op == "RUN")
        .map(|(_, a)| a)
        .collect();
    // Every cargo build (the dependency layer and the real one) is a release build from the
    // lock file as committed.
    let builds: Vec<&str> = runs
        .iter()
        .flat_map(|r| r.split("&&"))
        .filter(|c| c.contains("cargo build"))
        .collect();
    assert!(!builds.is_empty(), "{DOCKERFILE} never runs cargo build");
    for b in builds {
        let words: Vec<&str> = b.split_whitespace().collect();
        assert!(
            words.contains(&"--release") && words.contains(&"--locked"),
            "{DOCKERFILE}: `{}` is not --release --locked",
            b.trim()
        );
    }
    // The runtime stage: Debian slim with ca-certificates only, a non-root user, the binary.
    let last = steps.iter().rposition(|(op, _)| op == "FROM").unwrap();
    let runtime = &steps[last..];
    assert!(
        runtime[0].1.starts_with("debian:") && runtime[0].1.contains("slim"),
        "runtime {}",
        runtime[0].1
    );
    for (op, args) in runtime {
        if op == "RUN" && args.contains("apt-get install") {
            let installed: Vec<&str> = args
                .split("apt-get install")
                .nth(1)
                .unwrap()
                .split("&&")
                .next()
                .unwrap()
                .split_whitespace()
                .filter(|w| !w.starts_with('-'))
                .collect();
            assert_eq!(installed, vec!["ca-certificates"], "runtime packages");
        }
    }
    let user = runtime
        .iter()
        .rev()
        .find(|(op, _)| op == "USER")
        .map(|(_, a)| a.clone())
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "the image runs as {user}");
    let bin = format!("/usr/local/bin/{}", env!("CARGO_PKG_NAME"));
    assert!(
        runtime
            .iter()
            .any(|(op, a)| op == "COPY" && a.starts_with("--from=builder") && a.ends_with(&bin)),
        "the runtime stage does not copy the binary to {bin}"
    );
    assert_eq!(
        runtime
            .iter()
            .rev()
            .find(|(op, _)| op == "ENTRYPOINT")
            .map(|(_, a)| a.as_str()),
        Some(format!("[\"{bin}\"]").as_str()),
        "ENTRYPOINT"
    );

    // Every file the build copies from the context exists and is not .dockerignore'd; build
    // output and history stay out of the context.
    let patterns: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    for path in ["target", ".git", "target/release/redis-loadgen", ".env"] {
        assert!(
            docker_ignored(&patterns, path),
            ".dockerignore lets {path} into the context"
        );
    }
    for (op, args) in &steps {
        if op != "COPY" || args.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            assert!(
                repo().join(source).exists(),
                "COPY {source}: not in the repository"
            );
            assert!(
                !docker_ignored(&patterns, source),
                "COPY {source}: excluded by .dockerignore"
            );
        }
    }
    assert!(!docker_ignored(&patterns, "src/main.rs"));
}
