//! The Grafana dashboards in config/grafana/dashboards, checked without Grafana (it cannot run
//! here): every panel query, with the dashboard variables substituted the way Grafana does, runs
//! against a real Prometheus that scraped real redis-loadgen runs and must return data.
//!
//! The runs, side by side so every series is live at one instant (a run's series go stale once
//! its process is gone): pub/sub (open loop: the pub/sub, message and schedule-lag series),
//! stream request/reply (the stream series), basic_rw against a redis-server that is killed with
//! SIGKILL and restarted mid-run (errors, drops, reconnections, an outage), and a basic_rw run
//! labelled `app_name="python"` standing in for a sibling app, so the comparison dashboard must
//! return one series per app. Every dashboard is also checked statically: data sources are the
//! provisioned uids, every query filters on every variable, units are ms where the data is ms,
//! latency panels link to Jaeger, and the dashboards cover every metric family the runs expose.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use redis_loadgen::config::fields;
use serde_json::Value;
use support::prometheus::{Prometheus, unix_now};
use support::{RedisServer, free_port, loadgen};

const DASHBOARDS: &str = "config/grafana/dashboards";
const DATASOURCES: &str = "config/grafana/provisioning/datasources/datasources.yml";
const COMPOSE: &str = "docker-compose.yml";
const OVERVIEW: &str = "redis-loadgen-overview";
const COMPARISON: &str = "redis-loadgen-comparison";
/// The Jaeger UI's port inside its container (the Compose file publishes it on the host).
const JAEGER_UI_PORT: u16 = 16686;
/// The metrics with an `operation` label (README, "Prometheus endpoint"); every other metric
/// has none, so filtering it on `$operation` would be wrong. The live test confirms the list.
const OPERATION_METRICS: [&str; 4] = [
    "redis_operations_total",
    "redis_operation_duration_milliseconds_bucket",
    "redis_operation_duration_milliseconds_sum",
    "redis_operation_duration_milliseconds_count",
];
/// What Grafana's built-in interval variables become in the test: one rate window covering the
/// whole runs (Grafana uses at least 4 scrape intervals), the dashboards' own time range for
/// `$__range` (read from each dashboard), and the scrape interval.
const RATE_INTERVAL: &str = "1m";
const INTERVAL: &str = "1s";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

fn yaml(rel: &str) -> Value {
    serde_norway::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"))
}

// ---------------------------------------------------------------------------------------------
// The dashboards as data

struct Dashboard {
    file: String,
    json: Value,
}

impl Dashboard {
    fn uid(&self) -> &str {
        self.json["uid"].as_str().unwrap_or_default()
    }

    /// Every panel, rows and the panels inside rows (collapsed rows keep theirs in `panels`).
    fn panels(&self) -> Vec<&Value> {
        fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
            for p in list.as_array().into_iter().flatten() {
                out.push(p);
                walk(&p["panels"], out);
            }
        }
        let mut out = Vec::new();
        walk(&self.json["panels"], &mut out);
        out
    }

    /// The panels that show data (not rows).
    fn data_panels(&self) -> Vec<&Value> {
        self.panels()
            .into_iter()
            .filter(|p| p["type"] != "row")
            .collect()
    }

    fn targets(&self) -> Vec<Target> {
        let mut out = Vec::new();
        for p in self.data_panels() {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push(Target {
                    dashboard: self.file.clone(),
                    panel: p["title"].as_str().unwrap_or("?").to_string(),
                    ref_id: t["refId"].as_str().unwrap_or("?").to_string(),
                    expr: t["expr"].as_str().unwrap_or_default().to_string(),
                    legend: t["legendFormat"].as_str().unwrap_or_default().to_string(),
                });
            }
        }
        out
    }

    fn variables(&self) -> Vec<&Value> {
        self.json["templating"]["list"]
            .as_array()
            .map(|l| l.iter().collect())
            .unwrap_or_default()
    }

    fn variable_names(&self) -> Vec<String> {
        self.variables()
            .iter()
            .filter_map(|v| v["name"].as_str().map(str::to_string))
            .collect()
    }

    /// The Prometheus annotation queries.
    fn annotation_exprs(&self) -> Vec<(String, String)> {
        self.json["annotations"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| {
                let expr = a["expr"].as_str()?;
                Some((
                    a["name"].as_str().unwrap_or("?").to_string(),
                    expr.to_string(),
                ))
            })
            .collect()
    }

    /// `$__range`: the dashboard's default time range (`now-15m` -> `15m`).
    fn range(&self) -> String {
        let from = self.json["time"]["from"].as_str().unwrap_or_default();
        from.strip_prefix("now-")
            .unwrap_or_else(|| panic!("{}: time.from {from:?} is not now-<duration>", self.file))
            .to_string()
    }
}

#[derive(Clone)]
struct Target {
    dashboard: String,
    panel: String,
    ref_id: String,
    expr: String,
    legend: String,
}

impl Target {
    fn name(&self) -> String {
        format!("{} / {:?} / {}", self.dashboard, self.panel, self.ref_id)
    }
}

fn dashboards() -> Vec<Dashboard> {
    let dir = repo().join(DASHBOARDS);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{file} is not valid JSON: {e}"));
            Dashboard { file, json }
        })
        .collect()
}

fn dashboard(uid: &str) -> Dashboard {
    dashboards()
        .into_iter()
        .find(|d| d.uid() == uid)
        .unwrap_or_else(|| panic!("no dashboard with uid {uid} in {DASHBOARDS}"))
}

/// The provisioned data source uid of `ty` (prometheus, jaeger).
fn datasource_uid(ty: &str) -> String {
    let ds = yaml(DATASOURCES);
    ds["datasources"]
        .as_array()
        .and_then(|l| l.iter().find(|d| d["type"] == ty))
        .and_then(|d| d["uid"].as_str())
        .unwrap_or_else(|| panic!("{DATASOURCES} has no {ty} data source with a uid"))
        .to_string()
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Every `redis_*` metric an expression names, with its label matchers (None: no braces).
fn selectors(expr: &str) -> Vec<(String, Option<Vec<String>>)> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts = chars[i..].starts_with(&['r', 'e', 'd', 'i', 's', '_'])
            && (i == 0 || !is_word(chars[i - 1]));
        if !starts {
            i += 1;
            continue;
        }
        let begin = i;
        while i < chars.len() && is_word(chars[i]) {
            i += 1;
        }
        let name: String = chars[begin..i].iter().collect();
        if chars.get(i) != Some(&'{') {
            out.push((name, None));
            continue;
        }
        // The matchers up to the closing brace, split on commas outside quotes.
        let mut matchers = Vec::new();
        let mut current = String::new();
        let mut quoted = false;
        i += 1;
        while i < chars.len() {
            let c = chars[i];
            if quoted {
                current.push(c);
                if c == '\\' && i + 1 < chars.len() {
                    i += 1;
                    current.push(chars[i]);
                } else if c == '"' {
                    quoted = false;
                }
            } else if c == '"' {
                quoted = true;
                current.push(c);
            } else if c == ',' || c == '}' {
                if !current.trim().is_empty() {
                    matchers.push(current.trim().to_string());
                }
                current.clear();
                if c == '}' {
                    break;
                }
            } else {
                current.push(c);
            }
            i += 1;
        }
        out.push((name, Some(matchers)));
    }
    out
}

/// The metric family of a series name (histogram suffixes stripped).
fn family(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .filter(|f| f.ends_with("_milliseconds"))
        .unwrap_or(name)
}

fn panel_unit(p: &Value) -> &str {
    p["fieldConfig"]["defaults"]["unit"]
        .as_str()
        .unwrap_or_default()
}

fn panel_exprs(p: &Value) -> Vec<String> {
    p["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t["expr"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Panel links and data links (field defaults).
fn panel_links(p: &Value) -> Vec<String> {
    let mut urls = Vec::new();
    for list in [&p["links"], &p["fieldConfig"]["defaults"]["links"]] {
        for l in list.as_array().into_iter().flatten() {
            if let Some(u) = l["url"].as_str() {
                urls.push(u.to_string());
            }
        }
    }
    urls
}

fn data_links(p: &Value) -> Vec<String> {
    p["fieldConfig"]["defaults"]["links"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["url"].as_str().map(str::to_string))
        .collect()
}

/// A URL's query parameters (not decoded: the links are written unencoded).
fn query_params(url: &str) -> BTreeMap<String, String> {
    url.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The host port the Compose file publishes the Jaeger UI on.
fn jaeger_host_port() -> u16 {
    let compose = yaml(COMPOSE);
    compose["services"]["jaeger"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|p| {
            let parts: Vec<&str> = p.trim_end_matches("/tcp").split(':').collect();
            let container: u16 = parts.last()?.parse().ok()?;
            let host: u16 = parts.get(parts.len().checked_sub(2)?)?.parse().ok()?;
            (container == JAEGER_UI_PORT).then_some(host)
        })
        .unwrap_or_else(|| panic!("{COMPOSE}: jaeger does not publish {JAEGER_UI_PORT}"))
}

fn default_service_name() -> &'static str {
    fields::find("output.otel_service_name")
        .and_then(|f| f.default)
        .expect("output.otel_service_name has a default")
}

// ---------------------------------------------------------------------------------------------
// Static checks

#[test]
fn both_dashboards_exist_with_their_variables() {
    let all = dashboards();
    let uids: Vec<&str> = all.iter().map(Dashboard::uid).collect();
    let unique: BTreeSet<&str> = uids.iter().copied().collect();
    assert_eq!(
        unique.len(),
        uids.len(),
        "duplicate dashboard uids: {uids:?}"
    );
    for (uid, vars) in [
        (
            OVERVIEW,
            &["app_name", "instance_id", "run_id", "operation", "version"][..],
        ),
        (COMPARISON, &["app_name", "run_id", "operation"][..]),
    ] {
        let d = dashboard(uid);
        assert_eq!(d.variable_names(), vars, "{}: variables", d.file);
    }
}

#[test]
fn dashboards_are_provisionable_and_use_the_provisioned_datasource() {
    let prometheus = datasource_uid("prometheus");
    for d in dashboards() {
        let f = &d.file;
        let j = &d.json;
        assert!(!d.uid().is_empty(), "{f}: no uid");
        assert!(
            j["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{f}: no title"
        );
        assert!(
            j["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
            "{f}: schemaVersion {}",
            j["schemaVersion"]
        );
        assert_eq!(j["time"]["to"], "now", "{f}: time range");
        // A provisioned dashboard must not carry a database id (Grafana assigns one).
        assert!(j["id"].is_null(), "{f}: has an id");

        let mut ids = BTreeSet::new();
        for p in d.panels() {
            let title = p["title"].as_str().unwrap_or("?");
            let id = p["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{f}: {title:?} has no id"));
            assert!(ids.insert(id), "{f}: panel id {id} used twice");
            let g = &p["gridPos"];
            let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
            assert!(
                x + w <= 24 && g["h"].as_u64().unwrap() > 0,
                "{f}: {title:?} gridPos {g}"
            );
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(
                p["datasource"]["uid"],
                prometheus.as_str(),
                "{f}: {title:?} data source"
            );
            assert_eq!(p["datasource"]["type"], "prometheus", "{f}: {title:?}");
            let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            assert!(!targets.is_empty(), "{f}: {title:?} has no query");
            let mut refs = BTreeSet::new();
            for t in targets {
                assert!(
                    refs.insert(t["refId"].as_str().unwrap()),
                    "{f}: {title:?} refIds"
                );
                assert_eq!(
                    t["datasource"]["uid"],
                    prometheus.as_str(),
                    "{f}: {title:?} {} data source",
                    t["refId"]
                );
                assert!(
                    t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                    "{f}: {title:?} {} has no expr",
                    t["refId"]
                );
            }
        }
        for v in d.variables() {
            let name = v["name"].as_str().unwrap();
            assert_eq!(v["type"], "query", "{f}: ${name}");
            assert_eq!(v["datasource"]["uid"], prometheus.as_str(), "{f}: ${name}");
            assert_eq!(v["multi"], true, "{f}: ${name} multi");
            assert_eq!(v["includeAll"], true, "{f}: ${name} includeAll");
            let (_, label) = label_values(variable_query(v))
                .unwrap_or_else(|| panic!("{f}: ${name} is not label_values(...)"));
            assert_eq!(label, name, "{f}: ${name} lists another label");
            // 1: on load, 2: on time range change; 0 would keep a stale list forever.
            assert!(
                matches!(v["refresh"].as_u64(), Some(1 | 2)),
                "{f}: ${name} refresh"
            );
        }
        for (name, _) in d.annotation_exprs() {
            let a = j["annotations"]["list"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["name"] == name.as_str())
                .unwrap();
            assert_eq!(
                a["datasource"]["uid"],
                prometheus.as_str(),
                "{f}: annotation {name}"
            );
        }
    }
}

fn variable_query(v: &Value) -> &str {
    v["query"]
        .as_str()
        .or_else(|| v["query"]["query"].as_str())
        .or_else(|| v["definition"].as_str())
        .unwrap_or_default()
}

/// `label_values(selector, label)` -> (selector, label); `label_values(label)` -> ("", label).
fn label_values(query: &str) -> Option<(String, String)> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    match inner.rsplit_once(',') {
        Some((sel, label)) => Some((sel.trim().to_string(), label.trim().to_string())),
        None => Some((String::new(), inner.trim().to_string())),
    }
}

/// What is wrong with the label filters of a dashboard's queries: a metric without braces, or
/// a selector that does not filter on one of the dashboard's variables (`operation` only where
/// the metric has that label, and nowhere else).
fn filter_problems(d: &Dashboard) -> Vec<String> {
    let vars = d.variable_names();
    let mut exprs: Vec<(String, String)> = d
        .targets()
        .into_iter()
        .map(|t| (t.name(), t.expr))
        .collect();
    for (name, expr) in d.annotation_exprs() {
        exprs.push((format!("{} / annotation {name:?}", d.file), expr));
    }
    let mut problems = Vec::new();
    for (name, expr) in exprs {
        for (metric, matchers) in selectors(&expr) {
            let Some(matchers) = matchers else {
                problems.push(format!("{name}: {metric} has no label filter"));
                continue;
            };
            let has_operation = OPERATION_METRICS.contains(&metric.as_str());
            for v in &vars {
                let wanted = format!("{v}=~\"${v}\"");
                let present = matchers.iter().any(|m| m.replace(' ', "") == wanted);
                if v == "operation" && !has_operation {
                    if matchers.iter().any(|m| m.starts_with("operation")) {
                        problems.push(format!("{name}: {metric} has no operation label"));
                    }
                } else if !present {
                    problems.push(format!("{name}: {metric} does not filter on {wanted}"));
                }
            }
        }
    }
    problems
}

#[test]
fn every_query_filters_on_every_variable() {
    for d in dashboards() {
        assert_eq!(filter_problems(&d), Vec::<String>::new(), "{}", d.file);
    }
    // The checker catches a missing filter (so an empty list above means something).
    let mut d = dashboard(OVERVIEW);
    let text = d.json.to_string();
    let broken = text.replacen(r#", run_id=~\"$run_id\""#, "", 1);
    assert_ne!(text, broken, "mutation target not found");
    d.json = serde_json::from_str(&broken).unwrap();
    let p = filter_problems(&d);
    assert!(
        p.len() == 1 && p[0].contains("does not filter on run_id=~\"$run_id\""),
        "{p:?}"
    );
}

/// Units follow the data: ms wherever a query reads millisecond sums or buckets, never another
/// time unit; percent exactly for the `100 * ratio` queries; every panel has a unit.
#[test]
fn units_match_the_data() {
    let time_units = [
        "s",
        "µs",
        "ns",
        "m",
        "h",
        "d",
        "dtdurationms",
        "dtdurations",
    ];
    let mut problems = Vec::new();
    for d in dashboards() {
        for p in d.data_panels() {
            let title = format!("{} / {:?}", d.file, p["title"].as_str().unwrap_or("?"));
            let unit = panel_unit(p);
            let exprs = panel_exprs(p);
            let metrics: Vec<String> = exprs
                .iter()
                .flat_map(|e| selectors(e).into_iter().map(|(m, _)| m))
                .collect();
            let ms = metrics
                .iter()
                .any(|m| m.ends_with("_milliseconds_bucket") || m.ends_with("_milliseconds_sum"));
            if unit.is_empty() {
                problems.push(format!("{title}: no unit"));
            }
            if ms && unit != "ms" {
                problems.push(format!("{title}: millisecond data shown as {unit:?}"));
            }
            if !ms && (unit == "ms" || time_units.contains(&unit)) {
                problems.push(format!(
                    "{title}: unit {unit:?} on data that is not a duration"
                ));
            }
            let percent = exprs.iter().any(|e| e.trim_start().starts_with("100 *"));
            if percent != (unit == "percent") {
                problems.push(format!("{title}: unit {unit:?} for {exprs:?}"));
            }
        }
    }
    assert_eq!(problems, Vec::<String>::new());
}

/// Every latency panel (unit ms) links to the Jaeger UI the Compose file publishes, searching
/// redis-loadgen's default service name; the overview's per-operation latency panels link each
/// series to that operation's traces; Grafana Explore links use the provisioned Jaeger uid.
#[test]
fn latency_panels_link_to_jaeger() {
    let jaeger = format!("http://localhost:{}/search?", jaeger_host_port());
    let service = default_service_name();
    let jaeger_uid = datasource_uid("jaeger");
    let mut problems = Vec::new();
    let mut explore_links = 0;
    for d in dashboards() {
        for p in d.data_panels() {
            let title = format!("{} / {:?}", d.file, p["title"].as_str().unwrap_or("?"));
            let links = panel_links(p);
            for url in &links {
                if url.starts_with("http://localhost:") && url.contains("/search") {
                    if !url.starts_with(&jaeger) {
                        problems.push(format!("{title}: {url} is not the Jaeger UI {jaeger}"));
                    }
                    let params = query_params(url);
                    if params.contains_key("start")
                        != (params.get("lookback") == Some(&"custom".into()))
                    {
                        problems.push(format!("{title}: {url}: start/end need lookback=custom"));
                    }
                }
                if let Some(panes) = url.split_once("panes=").map(|(_, p)| p) {
                    explore_links += 1;
                    let panes: Value = serde_json::from_str(panes.split('&').next().unwrap())
                        .unwrap_or_else(|e| panic!("{title}: Explore link {url}: {e}"));
                    for pane in panes.as_object().unwrap().values() {
                        let ok = pane["datasource"] == jaeger_uid.as_str()
                            && pane["queries"].as_array().is_some_and(|qs| {
                                qs.iter().all(|q| {
                                    q["datasource"]["uid"] == jaeger_uid.as_str()
                                        && q["datasource"]["type"] == "jaeger"
                                        && q["service"] == service
                                })
                            });
                        if !ok {
                            problems.push(format!("{title}: Explore link {url}"));
                        }
                    }
                }
            }
            if panel_unit(p) != "ms" {
                continue;
            }
            let search = format!("{jaeger}service={service}&");
            if !links.iter().any(|u| u.starts_with(&search)) {
                problems.push(format!("{title}: no link to {search}..."));
            }
            let by_operation = panel_exprs(p).iter().any(|e| e.contains("by (operation"));
            if d.uid() == OVERVIEW && by_operation {
                let wanted = "operation=${__field.labels.operation}";
                if !data_links(p)
                    .iter()
                    .any(|u| u.starts_with(&search) && u.contains(wanted))
                {
                    problems.push(format!("{title}: no data link with {wanted}"));
                }
            }
        }
    }
    assert_eq!(problems, Vec::<String>::new());
    assert!(explore_links > 0, "no Grafana Explore link to Jaeger");
}

// ---------------------------------------------------------------------------------------------
// A real Prometheus and real runs

/// A redis-loadgen run in the background serving /metrics on its own port; killed on drop.
struct Run {
    name: &'static str,
    child: Child,
    work: tempfile::TempDir,
    ended: Option<(ExitStatus, f64)>,
}

impl Run {
    fn start(name: &'static str, redis_port: u16, metrics_port: u16, args: &[&str]) -> Run {
        let work = tempfile::tempdir().unwrap();
        let child = loadgen(work.path())
            .args(["--port", &redis_port.to_string(), "--duration", "8"])
            .args(["--run-id", name, "--quiet", "--metrics-interval", "1"])
            .args(["--clients", "1", "--threads-per-client", "2"])
            .args(["--output-file", "r.json"])
            .args(["--prometheus-listen", &format!("127.0.0.1:{metrics_port}")])
            // Stay up (at most 10 s) until Prometheus has scraped the final values.
            .args(["--prometheus-linger", "10"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        Run {
            name,
            child,
            work,
            ended: None,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.work.path().join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Grafana's formatting of a multi-value selection in a Prometheus query: each value
/// regex-escaped (as a PromQL string, so the backslash doubles), one value as is, several as
/// `(a|b)`.
fn grafana_regex(values: &[String]) -> String {
    let escaped: Vec<String> = values
        .iter()
        .map(|v| {
            v.chars()
                .map(|c| {
                    if r"\^$*+?.()|{}[]".contains(c) {
                        format!("\\\\{c}")
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        })
        .collect();
    match escaped.len() {
        1 => escaped[0].clone(),
        _ => format!("({})", escaped.join("|")),
    }
}

/// `expr` with the dashboard's variables and Grafana's built-ins replaced; panics on anything
/// left that looks like a variable.
fn substitute(expr: &str, vars: &BTreeMap<String, String>, range: &str) -> String {
    let mut out = expr
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__interval", INTERVAL)
        .replace("$__range", range);
    // Longest names first, so `$run_id` is not taken for a `$run`.
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        out = out
            .replace(&format!("${{{name}}}"), &vars[name])
            .replace(&format!("${name}"), &vars[name]);
    }
    assert!(!out.contains('$'), "unresolved variable in {out}");
    out
}

fn sample_value(s: &Value) -> f64 {
    s["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// "3 series, 0.12 .. 4.5" (the finite values), for the test's output.
fn summary(result: &[Value]) -> String {
    let values: Vec<f64> = result
        .iter()
        .map(sample_value)
        .filter(|v| v.is_finite())
        .collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{} series, {min:.4} .. {max:.4}", result.len())
}

/// The check every panel query must pass: it runs, returns at least one series, and at least
/// one value is a finite number (a histogram_quantile without `le`, or 0/0, gives NaN).
/// Ok: the result.
fn check(prom: &Prometheus, promql: &str, at: f64) -> Result<Vec<Value>, String> {
    let result = prom.query(promql, at)?;
    if result.is_empty() {
        return Err("no data".to_string());
    }
    if !result.iter().any(|s| sample_value(s).is_finite()) {
        let values: Vec<&Value> = result.iter().map(|s| &s["value"][1]).collect();
        return Err(format!("no finite value: {values:?}"));
    }
    Ok(result)
}

/// The variables' values as a user who picked `chosen` (name -> values) and every value of
/// the others would have them: each variable's label_values query run in order (later ones
/// use the earlier ones), as Grafana does. `all`: use the variable's All value instead.
fn resolve_variables(
    prom: &Prometheus,
    d: &Dashboard,
    chosen: &BTreeMap<&str, Vec<String>>,
    all: bool,
    (start, end): (f64, f64),
    problems: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let mut resolved = BTreeMap::new();
    for v in d.variables() {
        let name = v["name"].as_str().unwrap().to_string();
        let (selector, label) = label_values(variable_query(v)).unwrap();
        let selector = substitute(&selector, &resolved, &d.range());
        let values = prom.label_values(&selector, &label, start, end);
        if values.is_empty() {
            problems.push(format!(
                "{}: variable ${name}: label_values({selector}, {label}) is empty",
                d.file
            ));
        }
        let selected = match chosen.get(name.as_str()) {
            Some(pick) => {
                for p in pick {
                    if !values.contains(p) {
                        problems.push(format!(
                            "{}: variable ${name} does not offer {p:?} (it offers {values:?})",
                            d.file
                        ));
                    }
                }
                grafana_regex(pick)
            }
            None if all => v["allValue"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| grafana_regex(&values)),
            None => grafana_regex(&values),
        };
        resolved.insert(name, selected);
    }
    resolved
}

#[test]
fn every_panel_query_returns_data_from_real_runs() {
    let started = Instant::now();
    let stable = RedisServer::start();
    let mut crashing = RedisServer::start();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let prom = Prometheus::start(&ports);
    // Prometheus's first scrape comes a few seconds after it starts: wait for it (the `up`
    // series of the targets, down for now), so the runs are scraped from their first second.
    let deadline = Instant::now() + Duration::from_secs(20);
    while prom.query("up", unix_now()).unwrap().len() < ports.len() {
        assert!(Instant::now() < deadline, "Prometheus never scraped");
        std::thread::sleep(Duration::from_millis(100));
    }
    let first = unix_now();
    // Open loop everywhere (target rate and schedule lag series), at rates two cores keep.
    let mut runs = vec![
        Run::start(
            "dash-pubsub",
            stable.port,
            ports[0],
            &[
                "--workload-profile",
                "pubsub_test",
                "--target-ops-per-second",
                "500",
            ],
        ),
        Run::start(
            "dash-stream",
            stable.port,
            ports[1],
            &[
                "--workload-profile",
                "stream_request_reply",
                "--target-ops-per-second",
                "300",
            ],
        ),
        Run::start(
            "dash-outage",
            crashing.port,
            ports[2],
            &[
                "--target-ops-per-second",
                "1000",
                "--retry-backoff-cap",
                "0.25",
            ],
        ),
        // A stand-in for a sibling app: another app_name and version on the same series.
        Run::start(
            "dash-python",
            stable.port,
            ports[3],
            &[
                "--target-ops-per-second",
                "1000",
                "--app-name",
                "python",
                "--app-version",
                "5.2.1",
            ],
        ),
    ];

    // The outage: once Prometheus has the outage run's series, SIGKILL its server for ~2 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    while prom
        .query(
            "redis_loadgen_outages_total{run_id=\"dash-outage\"}",
            unix_now(),
        )
        .unwrap()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the outage run never reached Prometheus"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1200));
    crashing.kill9();
    std::thread::sleep(Duration::from_secs(2));
    crashing.restart();

    let deadline = Instant::now() + Duration::from_secs(40);
    while runs.iter().any(|r| r.ended.is_none()) {
        for r in runs.iter_mut().filter(|r| r.ended.is_none()) {
            if let Some(status) = r.child.try_wait().unwrap() {
                r.ended = Some((status, unix_now()));
            }
        }
        assert!(Instant::now() < deadline, "a run did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    for r in &runs {
        let (status, _) = r.ended.unwrap();
        assert!(status.success(), "{}: {status}\n{}", r.name, r.stderr());
        assert!(
            !r.stderr()
                .contains("no Prometheus scrape of the final values"),
            "{}: Prometheus missed the final values",
            r.name
        );
    }
    // Every run answered its final scrape just before it exited; the next (failed) scrape marks
    // its series stale. At the first exit, every run's final or latest values are still live.
    let at = runs
        .iter()
        .map(|r| r.ended.unwrap().1)
        .fold(f64::INFINITY, f64::min);
    let window = (first - 60.0, at);
    let ran = started.elapsed();

    // The dashboards cover every metric family the runs exposed, and the operation label is
    // where OPERATION_METRICS says.
    let names = |selector: &str| -> BTreeSet<String> {
        prom.query(&format!("group by (__name__) ({selector})"), at)
            .unwrap()
            .iter()
            .map(|s| s["metric"]["__name__"].as_str().unwrap().to_string())
            .collect()
    };
    let exposed = names("{__name__=~\"redis_.+\"}");
    let with_operation = names("{__name__=~\"redis_.+\", operation!=\"\"}");
    let expected: BTreeSet<String> = OPERATION_METRICS.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        with_operation, expected,
        "the metrics with an operation label"
    );
    let referenced: BTreeSet<String> = dashboards()
        .iter()
        .filter(|d| d.uid() == OVERVIEW)
        .flat_map(|d| d.targets())
        .flat_map(|t| selectors(&t.expr))
        .map(|(m, _)| family(&m).to_string())
        .collect();
    let missing: Vec<&str> = exposed
        .iter()
        .map(|n| family(n))
        .filter(|f| !referenced.contains(*f))
        .collect();
    assert!(
        missing.is_empty(),
        "the overview shows nothing of {missing:?}"
    );

    let mut problems = Vec::new();
    let mut checked = 0;
    let apps = vec!["python".to_string(), "rust".to_string()];
    for d in dashboards() {
        // The overview as a user reading the Rust runs; the comparison with every app.
        let mut chosen = BTreeMap::new();
        if d.uid() != COMPARISON {
            chosen.insert("app_name", vec!["rust".to_string()]);
        }
        for all in [false, true] {
            let how = if all { "All" } else { "every value ticked" };
            let vars = resolve_variables(&prom, &d, &chosen, all, window, &mut problems);
            if d.uid() == COMPARISON && !all {
                assert_eq!(vars["app_name"], grafana_regex(&apps), "{}", d.file);
            }
            for t in d.targets() {
                let promql = substitute(&t.expr, &vars, &d.range());
                checked += 1;
                let outcome = check(&prom, &promql, at);
                if let (Ok(result), false) = (&outcome, all) {
                    println!("{}: {}", t.name(), summary(result));
                }
                match outcome {
                    Err(e) => problems.push(format!("{} ({how}): {e}\n    {promql}", t.name())),
                    // Side by side: one finite series per app, for each per-app query.
                    Ok(result) if d.uid() == COMPARISON && t.legend == "{{app_name}}" => {
                        let got: BTreeSet<String> = result
                            .iter()
                            .filter(|s| sample_value(s).is_finite())
                            .filter_map(|s| s["metric"]["app_name"].as_str().map(str::to_string))
                            .collect();
                        let want: BTreeSet<String> = apps.iter().cloned().collect();
                        if got != want {
                            problems.push(format!(
                                "{} ({how}): apps {got:?}, not {want:?}\n    {promql}",
                                t.name()
                            ));
                        }
                    }
                    Ok(_) => {}
                }
            }
            // Annotations are range queries over the runs: the outage must show up.
            for (name, expr) in d.annotation_exprs() {
                let promql = substitute(&expr, &vars, &d.range());
                match prom.query_range(&promql, first, at) {
                    Ok(r)
                        if r.iter()
                            .any(|s| s["values"].as_array().is_some_and(|v| !v.is_empty())) => {}
                    other => problems.push(format!(
                        "{} / annotation {name:?} ({how}): {other:?}\n    {promql}",
                        d.file
                    )),
                }
            }
        }
    }

    println!(
        "dashboards: {checked} queries checked against 4 runs; runs took {:.1} s, queries {:.1} s",
        ran.as_secs_f64(),
        started.elapsed().as_secs_f64() - ran.as_secs_f64()
    );
    assert!(
        problems.is_empty(),
        "{} of {checked} dashboard queries failed:\n{}",
        problems.len(),
        problems.join("\n")
    );

    // The outage shows on the error panels: its connection errors are in the rate window
    // (every error series exists at 0 from the first scrape, so rate() sees them).
    let overview = dashboard(OVERVIEW);
    let mut outage_vars: BTreeMap<String, String> = overview
        .variable_names()
        .into_iter()
        .map(|v| (v, ".*".to_string()))
        .collect();
    outage_vars.insert("run_id".to_string(), "dash-outage".to_string());
    for title in ["Error rate", "Errors by error_type"] {
        let target = overview
            .targets()
            .into_iter()
            .find(|t| t.panel == title)
            .unwrap_or_else(|| panic!("no {title:?} panel"));
        let promql = substitute(&target.expr, &outage_vars, &overview.range());
        let result = check(&prom, &promql, at).unwrap_or_else(|e| panic!("{promql}: {e}"));
        let peak = result.iter().map(sample_value).fold(0.0, f64::max);
        assert!(
            peak > 0.0,
            "{title}: the outage's errors do not show: {result:?}\n{promql}"
        );
    }

    // The check fails where it should: a wrong metric name, a quantile without `le` (both no
    // data), and a 0/0 (NaN).
    let vars: BTreeMap<String, String> = overview
        .variable_names()
        .into_iter()
        .map(|v| (v, ".*".to_string()))
        .collect();
    let target = overview
        .targets()
        .into_iter()
        .find(|t| t.expr.contains("by (operation, le)"))
        .expect("a per-operation latency query");
    let good = substitute(&target.expr, &vars, &overview.range());
    assert!(check(&prom, &good, at).is_ok(), "{good}");
    for (from, to, why) in [
        (
            "redis_operation_duration_milliseconds_bucket",
            "redis_operation_duration_ms_bucket",
            "no data",
        ),
        ("by (operation, le)", "by (operation)", "no data"),
        (
            "histogram_quantile(",
            "0 * histogram_quantile(",
            "no finite value",
        ),
    ] {
        let bad = good.replacen(from, to, 1);
        let bad = if why == "no finite value" {
            format!("{bad} / 0")
        } else {
            bad
        };
        match check(&prom, &bad, at) {
            Err(e) if e.starts_with(why) => {}
            other => panic!("the check accepted a broken query ({other:?}): {bad}"),
        }
    }
}
