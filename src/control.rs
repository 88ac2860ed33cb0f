//! The control plane: short-lived connections through the redis crate for everything that is
//! not load: `test-connection`, server version and role, `INFO commandstats`.
//!
//! Kept apart from the data plane on purpose: the redis crate's convenience (typed replies,
//! allocation per reply) is fine here and too costly per command. Also our own CPU times.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis::io::tcp::TcpSettings;
use redis::{ConnectionAddr, IntoConnectionInfo, ProtocolVersion, RedisConnectionInfo};

use crate::config::{Protocol, RedisConfig};

/// Opens a control-plane connection with the configured timeouts.
pub fn connection(cfg: &RedisConfig) -> redis::RedisResult<redis::Connection> {
    // The same resolution as the data plane: in Sentinel mode, the current master; in
    // cluster mode, the first seed node.
    let (host, port) = crate::client::target(cfg).map_err(|e| no_target(e.to_string()))?;
    connection_to(cfg, &host, port)
}

/// A control-plane connection to a given address (cluster mode: one node).
pub fn connection_to(
    cfg: &RedisConfig,
    host: &str,
    port: u16,
) -> redis::RedisResult<redis::Connection> {
    open(cfg, host.to_string(), port).map_err(|e| tls_mismatch_hint(cfg, e))
}

/// A plain/TLS mismatch shows only as a reset or a timeout: say what it likely is.
fn tls_mismatch_hint(cfg: &RedisConfig, e: redis::RedisError) -> redis::RedisError {
    let hint = match &cfg.tls {
        Some(_) if e.is_timeout() => {
            "no TLS handshake answer (is it a plain port? try without --tls)"
        }
        // Refused means nothing listens there: no hint, the OS error says it.
        None if e.is_connection_dropped() && !e.is_connection_refusal() => {
            "the server closed the connection (a TLS port? try --tls)"
        }
        _ => return e,
    };
    redis::RedisError::from((redis::ErrorKind::Io, hint, e.to_string()))
}

/// No address to connect to (Sentinel mode: no sentinel answered). Not an I/O kind, so the
/// plain/TLS hint does not misread it.
fn no_target(reason: String) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no master", reason))
}

fn open(cfg: &RedisConfig, host: String, port: u16) -> redis::RedisResult<redis::Connection> {
    let mut settings = RedisConnectionInfo::default()
        .set_db(cfg.db as i64)
        .set_protocol(match cfg.protocol {
            Protocol::Resp2 => ProtocolVersion::RESP2,
            Protocol::Resp3 => ProtocolVersion::RESP3,
        })
        .set_skip_set_lib_name();
    if let Some(user) = &cfg.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &cfg.password {
        settings = settings.set_password(password.expose());
    }
    let mut tcp = TcpSettings::default().set_nodelay(true);
    if let Some(idle) = cfg.tcp_keepalive {
        tcp = tcp.set_keepalive(socket2::TcpKeepalive::new().with_time(idle));
    }
    let addr = match &cfg.tls {
        None => ConnectionAddr::Tcp(host, port),
        Some(tls) => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: tls.insecure,
            tls_params: None,
        },
    };
    let info = addr
        .into_connection_info()?
        .set_tcp_settings(tcp)
        .set_redis_settings(settings);
    let client = match &cfg.tls {
        None => redis::Client::open(info)?,
        Some(tls) => tls_client(info, tls)?,
    };
    let conn = client.get_connection_with_timeout(cfg.connect_timeout)?;
    conn.set_read_timeout(Some(cfg.socket_timeout))?;
    conn.set_write_timeout(Some(cfg.socket_timeout))?;
    Ok(conn)
}

/// A redis crate client with the run's CA and client certificate. The crate's rustls has no
/// crypto provider of its own: ring is installed as the process default first.
fn tls_client(
    info: redis::ConnectionInfo,
    tls: &crate::client::TlsConfig,
) -> redis::RedisResult<redis::Client> {
    crate::client::tls::install_default_provider();
    let client_tls = match (&tls.cert_pem, &tls.key_pem) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: cert.clone(),
            client_key: key.clone(),
        }),
        _ => None,
    };
    let client = redis::Client::build_with_tls(
        info,
        redis::TlsCertificates {
            client_tls,
            root_cert: tls.ca_pem.clone(),
        },
    )?;
    if tls.check_hostname || tls.insecure {
        return Ok(client);
    }
    // build_with_tls resets "accept invalid hostnames": set it on the built address.
    let info = client.get_connection_info().clone();
    let mut addr = info.addr().clone();
    addr.set_danger_accept_invalid_hostnames(true);
    redis::Client::open(info.set_addr(addr))
}

/// What the server says about itself.
#[derive(Debug, Clone, Default)]
pub struct ServerInfo {
    pub version: String,
    pub role: String,
    pub mode: String,
}

/// Parses `INFO` text into `field -> value` (section headers and blank lines skipped).
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn info(
    conn: &mut redis::Connection,
    section: &str,
) -> redis::RedisResult<BTreeMap<String, String>> {
    let text: String = redis::cmd("INFO").arg(section).query(conn)?;
    Ok(parse_info(&text))
}

/// Server version, role and mode from `INFO server` and `INFO replication`.
pub fn server_info(cfg: &RedisConfig) -> redis::RedisResult<ServerInfo> {
    let mut conn = connection(cfg)?;
    server_info_on(&mut conn)
}

fn server_info_on(conn: &mut redis::Connection) -> redis::RedisResult<ServerInfo> {
    let server = info(conn, "server")?;
    let replication = info(conn, "replication")?;
    Ok(ServerInfo {
        version: server.get("redis_version").cloned().unwrap_or_default(),
        mode: server.get("redis_mode").cloned().unwrap_or_default(),
        role: replication.get("role").cloned().unwrap_or_default(),
    })
}

/// The result of `test-connection`.
#[derive(Debug, Clone)]
pub struct ConnectionCheck {
    pub server: ServerInfo,
    pub round_trip: Duration,
}

/// Connects, PINGs (timing the round trip) and reads version and role.
pub fn test_connection(cfg: &RedisConfig) -> redis::RedisResult<ConnectionCheck> {
    let mut conn = connection(cfg)?;
    // The first PING pays for lazy set-up on both sides; time the second.
    let _: String = redis::cmd("PING").query(&mut conn)?;
    let t = Instant::now();
    let _: String = redis::cmd("PING").query(&mut conn)?;
    let round_trip = t.elapsed();
    Ok(ConnectionCheck {
        server: server_info_on(&mut conn)?,
        round_trip,
    })
}

/// One command's line of `INFO commandstats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommandCalls {
    pub calls: u64,
    pub failed_calls: u64,
    pub rejected_calls: u64,
}

impl CommandCalls {
    /// Every time the server saw the command, executed or rejected.
    pub fn seen(&self) -> u64 {
        self.calls + self.rejected_calls
    }
}

/// `INFO commandstats` as `lower-case command name -> calls`.
pub fn commandstats(cfg: &RedisConfig) -> redis::RedisResult<BTreeMap<String, CommandCalls>> {
    let mut conn = connection(cfg)?;
    let text: String = redis::cmd("INFO").arg("commandstats").query(&mut conn)?;
    Ok(parse_commandstats(&text))
}

/// Parses `cmdstat_get:calls=3,usec=...,rejected_calls=0,failed_calls=0` lines.
pub fn parse_commandstats(text: &str) -> BTreeMap<String, CommandCalls> {
    let mut out = BTreeMap::new();
    for (key, value) in parse_info(text) {
        let Some(name) = key.strip_prefix("cmdstat_") else {
            continue;
        };
        let mut calls = CommandCalls::default();
        for field in value.split(',') {
            if let Some((k, v)) = field.split_once('=') {
                let n = v.parse().unwrap_or(0);
                match k {
                    "calls" => calls.calls = n,
                    "failed_calls" => calls.failed_calls = n,
                    "rejected_calls" => calls.rejected_calls = n,
                    _ => {}
                }
            }
        }
        out.insert(name.to_string(), calls);
    }
    out
}

/// This process's CPU time so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    pub user_s: f64,
    pub sys_s: f64,
}

impl CpuTimes {
    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            user_s: self.user_s - earlier.user_s,
            sys_s: self.sys_s - earlier.sys_s,
        }
    }
}

/// User and system CPU seconds of this process (all threads).
pub fn cpu_times() -> CpuTimes {
    // SAFETY: getrusage fills the zeroed struct we pass and reads nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    CpuTimes {
        user_s: secs(usage.ru_utime),
        sys_s: secs(usage.ru_stime),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commandstats_lines_parse() {
        let text = "# Commandstats\r\ncmdstat_set:calls=10,usec=20,usec_per_call=2.00,rejected_calls=1,failed_calls=2\r\ncmdstat_client|setname:calls=4,usec=1\r\n";
        let stats = parse_commandstats(text);
        assert_eq!(
            stats["set"],
            CommandCalls {
                calls: 10,
                failed_calls: 2,
                rejected_calls: 1
            }
        );
        assert_eq!(stats["set"].seen(), 11);
        assert_eq!(stats["client|setname"].calls, 4);
    }

    #[test]
    fn cpu_times_grow() {
        let a = cpu_times();
        // Busy for 50 ms of wall time: well above the kernel's CPU-time accounting tick.
        let until = Instant::now() + Duration::from_millis(50);
        let mut x = 0u64;
        while Instant::now() < until {
            for i in 0..10_000u64 {
                x = x.wrapping_add(i * i);
            }
            std::hint::black_box(x);
        }
        let b = cpu_times();
        assert!(b.user_s + b.sys_s > a.user_s + a.sys_s, "{a:?} -> {b:?}");
    }
}
