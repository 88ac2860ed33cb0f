//! Test support for Sentinel mode: a master, one replica and three `redis-sentinel` processes
//! on free loopback ports, each with a fresh config file (sentinel rewrites its file).
//! Every process is a child killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{RedisServer, free_port, wait_ready};

/// The name the sentinels monitor.
pub const MASTER_NAME: &str = "mymaster";

pub struct Sentinel {
    pub port: u16,
    child: Child,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Master + replica + three sentinels that agree on both.
pub struct SentinelSetup {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinels: Vec<Sentinel>,
    _dir: tempfile::TempDir,
}

impl SentinelSetup {
    /// Starts everything and waits until every sentinel names the master and lists the replica.
    pub fn start() -> SentinelSetup {
        let master = RedisServer::start_with(&["--repl-diskless-sync-delay", "0"]);
        let replica = RedisServer::start_with(&[
            "--replicaof",
            "127.0.0.1",
            &master.port.to_string(),
            "--repl-diskless-sync-delay",
            "0",
        ]);
        let dir = tempfile::tempdir().expect("temp dir");
        let sentinels = (0..3)
            .map(|i| start_sentinel(dir.path(), i, master.port))
            .collect();
        let setup = SentinelSetup {
            master,
            replica,
            sentinels,
            _dir: dir,
        };
        setup.wait_agreed(setup.master.port, Duration::from_secs(15));
        setup
    }

    /// `host:port,...` of the sentinels, for `--sentinel-nodes`.
    pub fn nodes(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs one command on sentinel `i` through redis-cli.
    pub fn cli(&self, i: usize, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.sentinels[i].port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli on PATH");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The master port sentinel `i` reports.
    pub fn master_port(&self, i: usize) -> Option<u16> {
        let out = self.cli(i, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]);
        out.lines().nth(1).and_then(|p| p.trim().parse().ok())
    }

    /// Waits until every sentinel names `master_port` as master and knows a replica.
    pub fn wait_agreed(&self, master_port: u16, limit: Duration) {
        let until = Instant::now() + limit;
        loop {
            let agreed = (0..self.sentinels.len()).all(|i| {
                self.master_port(i) == Some(master_port)
                    && self
                        .cli(i, &["SENTINEL", "REPLICAS", MASTER_NAME])
                        .contains("127.0.0.1")
            });
            if agreed {
                return;
            }
            assert!(
                Instant::now() < until,
                "sentinels did not agree on master port {master_port} within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn start_sentinel(dir: &std::path::Path, i: usize, master_port: u16) -> Sentinel {
    for _ in 0..5 {
        let port = free_port();
        let file = dir.join(format!("sentinel-{i}-{port}.conf"));
        let conf = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} 5000\n",
            dir = dir.display()
        );
        std::fs::write(&file, conf).expect("write sentinel config");
        let mut child = Command::new("redis-sentinel")
            .arg(&file)
            .args(["--daemonize", "no"])
            .arg("--logfile")
            .arg(dir.join(format!("sentinel-{i}-{port}.log")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-sentinel on PATH (scripts/test.sh installs it)");
        if wait_ready(&mut child, port, Duration::from_secs(5)) {
            return Sentinel { port, child };
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("redis-sentinel did not start");
}
