//! TLS test fixtures: certificates made with the `openssl` CLI (EC P-256: a CA, a server
//! certificate for localhost/127.0.0.1, a client certificate and an unrelated CA) and a
//! redis-server that listens only on a TLS port.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis_loadgen::client::TlsConfig;
use redis_loadgen::config::RedisConfig;

use super::free_port;

/// Certificates in a temp dir.
pub struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    pub fn make() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("openssl on PATH (scripts/test.sh installs it)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        for ca in ["ca", "other-ca"] {
            let key = format!("{ca}.key");
            openssl(&[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                &key,
            ]);
            openssl(&[
                "req",
                "-x509",
                "-new",
                "-key",
                &key,
                "-subj",
                &format!("/CN={ca}"),
                "-days",
                "2",
                "-out",
                &format!("{ca}.crt"),
            ]);
        }
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        std::fs::write(d.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for who in ["server", "client"] {
            let key = format!("{who}.key");
            openssl(&[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                &key,
            ]);
            openssl(&[
                "req",
                "-new",
                "-key",
                &key,
                "-subj",
                &format!("/CN={who}"),
                "-out",
                &format!("{who}.csr"),
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{who}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{who}.ext"),
                "-out",
                &format!("{who}.crt"),
            ]);
        }
        Certs { dir }
    }
}

/// A redis-server that listens only on a TLS port.
pub struct TlsServer {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl TlsServer {
    /// `auth_clients`: `no` or `yes` (mutual TLS required). `extra`: more server arguments.
    pub fn start(certs: &Certs, auth_clients: &str, extra: &[&str]) -> TlsServer {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("redis-server")
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--tls-cert-file", &certs.arg("server.crt")])
                .args(["--tls-key-file", &certs.arg("server.key")])
                .args(["--tls-ca-cert-file", &certs.arg("ca.crt")])
                .args(["--tls-auth-clients", auth_clients])
                .arg("--dir")
                .arg(dir.path())
                .arg("--logfile")
                .arg(dir.path().join("redis.log"))
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server on PATH");
            let until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < until {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return TlsServer {
                        port,
                        child,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("TLS redis-server did not start");
    }

    /// Control-plane settings over TLS with the test CA (and the client certificate).
    pub fn redis_config(&self, certs: &Certs, password: Option<&str>) -> RedisConfig {
        let mut cfg = RedisConfig {
            host: "localhost".into(),
            port: self.port,
            tls: Some(
                TlsConfig::load(
                    Some(certs.path("ca.crt")),
                    Some(certs.path("client.crt")),
                    Some(certs.path("client.key")),
                    true,
                    false,
                )
                .unwrap_or_else(|e| panic!("{}", e.message)),
            ),
            ..plain_config(0)
        };
        cfg.password = password.map(redis_loadgen::config::Secret::new);
        cfg
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Control-plane settings like `RedisServer::redis_config()`, for a server started here.
pub fn plain_config(port: u16) -> RedisConfig {
    RedisConfig {
        host: "127.0.0.1".into(),
        port,
        username: None,
        password: None,
        db: 0,
        protocol: redis_loadgen::config::Protocol::Resp3,
        client_name: "redis-loadgen-test".into(),
        tcp_keepalive: None,
        tls: None,
        socket_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        retry: Default::default(),
        sentinel: None,
        cluster: None,
        max_connections: 50,
        health_check_interval: None,
    }
}
