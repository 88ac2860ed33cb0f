//! A real Redis Cluster for tests: N masters with R replicas each, as child processes on free
//! loopback ports, created with `redis-cli --cluster create` and waited on until every node
//! agrees on the roles and every replica's link is up.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use redis_loadgen::control::CommandCalls;

use super::RedisServer;

/// Node timeout: a dead master's replica is promoted about 2.5 s after the kill.
pub const NODE_TIMEOUT_MS: &str = "1000";

pub struct Cluster {
    pub nodes: Vec<RedisServer>,
}

impl Cluster {
    /// Starts `masters` masters with `replicas` replicas each and waits until the cluster is
    /// fully formed.
    pub fn start(masters: usize, replicas: usize) -> Cluster {
        Cluster::start_with_node_timeout(masters, replicas, NODE_TIMEOUT_MS)
    }

    /// [`Cluster::start`] with another `--cluster-node-timeout` (ms). A longer one keeps a
    /// node that is slow to answer on a busy machine from being marked failed (CLUSTERDOWN)
    /// in tests that kill nothing.
    pub fn start_with_node_timeout(
        masters: usize,
        replicas: usize,
        node_timeout_ms: &str,
    ) -> Cluster {
        let total = masters * (1 + replicas);
        let nodes: Vec<RedisServer> = (0..total)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    node_timeout_ms,
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli on PATH");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Cluster { nodes };
        cluster.wait_formed(masters, masters * replicas, Duration::from_secs(20));
        cluster
    }

    /// `--cluster-nodes` value naming the first node only (the rest is discovered).
    pub fn seed(&self) -> String {
        format!("127.0.0.1:{}", self.nodes[0].port)
    }

    /// `(port, role, master port if replica)` of every live node, as node `via` sees them.
    pub fn roles(&self, via: usize) -> Vec<(u16, String, bool)> {
        let text = self.nodes[via].cli(&["CLUSTER", "NODES"]);
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                let port = f
                    .get(1)?
                    .split('@')
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()?;
                let flags = f.get(2)?;
                let role = if flags.contains("master") {
                    "master"
                } else {
                    "replica"
                };
                Some((port, role.to_string(), flags.contains("fail")))
            })
            .collect()
    }

    /// Ports of the masters that are not failed, as node `via` sees them.
    pub fn master_ports(&self, via: usize) -> Vec<u16> {
        self.roles(via)
            .into_iter()
            .filter(|(_, role, failed)| role == "master" && !failed)
            .map(|(p, _, _)| p)
            .collect()
    }

    /// The index in `nodes` of the node on `port`.
    pub fn index_of(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .expect("a node of this cluster")
    }

    /// Ports of the replicas of the master on `master_port`.
    pub fn replicas_of(&self, master_port: u16) -> Vec<u16> {
        let via = self.index_of(master_port);
        let text = self.nodes[via].cli(&["CLUSTER", "REPLICAS", &self.node_id(master_port)]);
        text.lines()
            .filter_map(|l| {
                l.split(' ')
                    .nth(1)?
                    .split('@')
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    }

    fn node_id(&self, port: u16) -> String {
        self.nodes[self.index_of(port)]
            .cli(&["CLUSTER", "MYID"])
            .trim()
            .to_string()
    }

    /// Waits until every node sees `masters` masters and `replicas` replicas, the state is
    /// ok and every replica's link to its master is up.
    pub fn wait_formed(&self, masters: usize, replicas: usize, limit: Duration) {
        let until = Instant::now() + limit;
        loop {
            let formed = (0..self.nodes.len()).all(|i| {
                let roles = self.roles(i);
                let m = roles.iter().filter(|r| r.1 == "master").count();
                let r = roles.iter().filter(|r| r.1 == "replica").count();
                let info = self.nodes[i].cli(&["INFO", "replication"]);
                let state = self.nodes[i].cli(&["CLUSTER", "INFO"]);
                m == masters
                    && r == replicas
                    && state.contains("cluster_state:ok")
                    && (!info.contains("role:slave") || info.contains("master_link_status:up"))
            });
            if formed {
                return;
            }
            assert!(
                Instant::now() < until,
                "the cluster did not form in {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `INFO commandstats` summed over the given nodes.
    pub fn commandstats_of(&self, ports: &[u16]) -> BTreeMap<String, CommandCalls> {
        let mut sum: BTreeMap<String, CommandCalls> = BTreeMap::new();
        for &port in ports {
            for (name, c) in self.nodes[self.index_of(port)].commandstats() {
                let e = sum.entry(name).or_default();
                e.calls += c.calls;
                e.failed_calls += c.failed_calls;
                e.rejected_calls += c.rejected_calls;
            }
        }
        sum
    }

    /// `INFO commandstats` summed over every node.
    pub fn commandstats(&self) -> BTreeMap<String, CommandCalls> {
        let ports: Vec<u16> = self.nodes.iter().map(|n| n.port).collect();
        self.commandstats_of(&ports)
    }
}
