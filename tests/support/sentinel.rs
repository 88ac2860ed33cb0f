//! Test support for Sentinel mode: a master, one replica and three `redis-sentinel` processes
//! on free loopback ports, each with a fresh config file (sentinel rewrites its file).
//! Every process is a child killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tls::Certs;
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
    /// redis-cli arguments to reach the sentinels (TLS, AUTH).
    cli_args: Vec<String>,
    _dir: tempfile::TempDir,
}

/// What sets a [`SentinelSetup`] apart from the plain one.
#[derive(Default)]
struct Options<'a> {
    /// Sentinels only on a TLS port; master and replica replicate over TLS (and keep a plain
    /// port for the tests' own checks).
    tls: Option<&'a Certs>,
    /// `(user, password)`: an ACL user on every sentinel; the default user needs another
    /// password.
    acl: Option<(&'a str, &'a str)>,
}

/// The default user's password on sentinels started with an ACL user.
pub const DEFAULT_USER_PASSWORD: &str = "not-the-users";

impl SentinelSetup {
    /// Starts everything and waits until every sentinel names the master and lists the replica.
    pub fn start() -> SentinelSetup {
        SentinelSetup::start_with(Options::default())
    }

    /// Like [`start`](Self::start), but the sentinels listen only on TLS (certificates from
    /// `certs`, clients need not present one) and monitor the master's TLS port.
    pub fn start_tls(certs: &Certs) -> SentinelSetup {
        SentinelSetup::start_with(Options {
            tls: Some(certs),
            ..Options::default()
        })
    }

    /// Like [`start`](Self::start), with ACL user `user` (password `password`, all commands)
    /// on every sentinel, and `requirepass` [`DEFAULT_USER_PASSWORD`] for the default user.
    pub fn start_acl(user: &str, password: &str) -> SentinelSetup {
        SentinelSetup::start_with(Options {
            acl: Some((user, password)),
            ..Options::default()
        })
    }

    fn start_with(options: Options) -> SentinelSetup {
        let tls_args: Vec<String> = options.tls.map_or_else(Vec::new, |certs| {
            vec![
                "--tls-cert-file".into(),
                certs.arg("server.crt"),
                "--tls-key-file".into(),
                certs.arg("server.key"),
                "--tls-ca-cert-file".into(),
                certs.arg("ca.crt"),
                "--tls-auth-clients".into(),
                "no".into(),
                "--tls-replication".into(),
                "yes".into(),
            ]
        });
        let tls_port = |args: &mut Vec<String>| {
            if options.tls.is_some() {
                args.extend(["--tls-port".into(), free_port().to_string()]);
                args.extend(tls_args.iter().cloned());
            }
        };
        let mut master_args = vec!["--repl-diskless-sync-delay".to_string(), "0".into()];
        tls_port(&mut master_args);
        let master = RedisServer::start_with(&strs(&master_args));
        // With TLS, the sentinels and the replica use the master's TLS port.
        let master_port = data_port(&master_args, master.port);
        let mut replica_args = vec![
            "--replicaof".to_string(),
            "127.0.0.1".into(),
            master_port.to_string(),
            "--repl-diskless-sync-delay".into(),
            "0".into(),
        ];
        tls_port(&mut replica_args);
        let replica = RedisServer::start_with(&strs(&replica_args));
        let dir = tempfile::tempdir().expect("temp dir");
        let sentinels = (0..3)
            .map(|i| start_sentinel(dir.path(), i, master_port, &options))
            .collect();
        let mut cli_args = Vec::new();
        if let Some(certs) = options.tls {
            cli_args.extend(["--tls".into(), "--cacert".into(), certs.arg("ca.crt")]);
        }
        if let Some((user, password)) = options.acl {
            cli_args.extend(["--user".into(), user.into(), "--pass".into()]);
            cli_args.extend([password.into(), "--no-auth-warning".into()]);
        }
        let setup = SentinelSetup {
            master,
            replica,
            sentinels,
            cli_args,
            _dir: dir,
        };
        setup.wait_agreed(master_port, Duration::from_secs(15));
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
            .args(&self.cli_args)
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

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The `--tls-port` in `args`, else the plain port.
fn data_port(args: &[String], plain: u16) -> u16 {
    args.iter()
        .position(|a| a == "--tls-port")
        .and_then(|i| args[i + 1].parse().ok())
        .unwrap_or(plain)
}

fn start_sentinel(
    dir: &std::path::Path,
    i: usize,
    master_port: u16,
    options: &Options,
) -> Sentinel {
    for _ in 0..5 {
        let port = free_port();
        let file = dir.join(format!("sentinel-{i}-{port}.conf"));
        let mut conf = match options.tls {
            None => format!("port {port}\n"),
            Some(certs) => format!(
                "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\n\
                 tls-ca-cert-file {}\ntls-auth-clients no\ntls-replication yes\n",
                certs.arg("server.crt"),
                certs.arg("server.key"),
                certs.arg("ca.crt")
            ),
        };
        conf += &format!(
            "bind 127.0.0.1\ndir {dir}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} 5000\n",
            dir = dir.display()
        );
        if let Some((user, password)) = options.acl {
            // The sentinels talk to each other as that user too.
            conf += &format!(
                "user {user} on >{password} ~* &* +@all\n\
                 requirepass {DEFAULT_USER_PASSWORD}\n\
                 sentinel sentinel-user {user}\nsentinel sentinel-pass {password}\n"
            );
        }
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
        let ready = if options.tls.is_some() {
            listening(&mut child, port)
        } else {
            wait_ready(&mut child, port, Duration::from_secs(5))
        };
        if ready {
            return Sentinel { port, child };
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("redis-sentinel did not start");
}

/// A TLS-only sentinel cannot be pinged in plain text: wait until its port accepts.
fn listening(child: &mut std::process::Child, port: u16) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}
