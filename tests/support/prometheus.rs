//! A real Prometheus for the tests (Debian's package, which `scripts/test.sh` installs): started
//! on a free loopback port with a temporary config and data directory, scraping the given
//! targets every second, killed on drop; plus the plain HTTP helpers the tests query it (and
//! redis-loadgen's `/metrics`) with. No client crate: what is under test is the exposition.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::free_port;

/// A response's status line + headers, and its body.
pub struct Http {
    pub head: String,
    pub body: String,
}

/// A plain HTTP/1.0 GET on 127.0.0.1:`port` with an `Accept` header.
pub fn http_get_accept(port: u16, target: &str, accept: &str) -> Option<Http> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    Some(Http {
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// A plain HTTP/1.0 GET on 127.0.0.1:`port`, accepting anything.
pub fn http_get(port: u16, target: &str) -> Option<Http> {
    http_get_accept(port, target, "*/*")
}

/// Percent-encodes everything but the unreserved characters (PromQL in a query string).
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant vector sample's value.
pub fn value(sample: &Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// An instant query on the Prometheus at `port`; Err: Prometheus's error (e.g. a query that
/// does not parse).
pub fn query_at(port: u16, promql: &str, at: f64) -> Result<Vec<Value>, String> {
    let target = format!("/api/v1/query?query={}&time={at:.3}", url_encode(promql));
    result_of(port, &target)
}

fn result_of(port: u16, target: &str) -> Result<Vec<Value>, String> {
    let r = http_get(port, target).expect("Prometheus answers");
    let v: Value = serde_json::from_str(&r.body).map_err(|e| format!("{e}: {}", r.body))?;
    if v["status"] != "success" {
        return Err(format!("{}: {}", v["errorType"], v["error"]));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// A real Prometheus on a free port scraping `targets` (loopback ports) every second.
pub struct Prometheus {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(targets: &[u16]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        let list: Vec<String> = targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: redis-loadgen\n    \
                 static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ),
        )
        .unwrap();
        // A free port can be taken between the check and the bind: try a few.
        for _ in 0..5 {
            let port = free_port();
            let log = dir.path().join(format!("prometheus-{port}.log"));
            let mut child = Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("prometheus on PATH (scripts/test.sh installs it)");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                if http_get(port, "/-/ready").is_some_and(|r| r.head.contains(" 200")) {
                    return Prometheus {
                        port,
                        child,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("prometheus did not start");
    }

    /// A `/api/v1/...` GET that must succeed; its `data`.
    pub fn api(&self, target: &str) -> Value {
        let r = http_get(self.port, target).expect("Prometheus answers");
        let v: Value =
            serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}\n{}", r.head, r.body));
        assert_eq!(v["status"], "success", "GET {target}: {}", r.body);
        v["data"].clone()
    }

    /// An instant query at `at` (unix seconds); Err: Prometheus's error.
    pub fn query(&self, promql: &str, at: f64) -> Result<Vec<Value>, String> {
        query_at(self.port, promql, at)
    }

    /// A range query (1 s step): the result matrix.
    pub fn query_range(&self, promql: &str, start: f64, end: f64) -> Result<Vec<Value>, String> {
        let target = format!(
            "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step=1",
            url_encode(promql)
        );
        result_of(self.port, &target)
    }

    /// `label_values(selector, label)` as Grafana asks it: the label values API with match[].
    pub fn label_values(&self, selector: &str, label: &str, start: f64, end: f64) -> Vec<String> {
        let mut target = format!("/api/v1/label/{label}/values?start={start:.3}&end={end:.3}");
        if !selector.is_empty() {
            target.push_str(&format!("&match[]={}", url_encode(selector)));
        }
        self.api(&target)
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
