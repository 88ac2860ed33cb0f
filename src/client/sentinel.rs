//! Where to connect: the configured host/port, or in Sentinel mode the master's address as the
//! sentinels report it right now.
//!
//! [`target`] is the one address resolution used by the data plane ([`super::connect`]) and
//! the control plane ([`crate::control::connection`]), so both always talk to the same
//! server. In Sentinel mode every call asks the sentinels again (on short-lived connections,
//! TLS and `AUTH [<user>] <password>` as configured, in the configured order, the first answer
//! wins): a reconnect after a failover finds the new master. Not here: noticing that a master
//! was demoted (the worker drops its connection on a `-READONLY` reply; [`check_master`]
//! refuses a connection to a replica).

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::client::conn::{ConnectError, RespConnection, closed_at_once, open_stream};
use crate::client::tls::DataStream;
use crate::config::{RedisConfig, SentinelConfig};
use crate::error::ErrorClass;
use crate::proto::encode;
use crate::proto::resp::{self, ReplyKind};

/// How often the run's watcher asks the sentinels whether the master moved. After a failover
/// the old master keeps taking writes until the sentinels reconfigure it (up to ~10 s later);
/// without the watcher workers would go on writing to it.
pub const MASTER_CHECK_PERIOD: Duration = Duration::from_millis(500);

/// One watcher thread per run asks the sentinels where the master is every
/// [`MASTER_CHECK_PERIOD`] and bumps a generation when the answer changes. Workers compare the
/// generation between batches (one atomic load) and reconnect when it moved, instead of each
/// asking the sentinels themselves.
pub struct MasterWatch {
    generation: AtomicU64,
    stop: AtomicBool,
    /// The master the sentinels named at the last look.
    master: std::sync::Mutex<Option<(String, u16)>>,
}

impl MasterWatch {
    /// Starts watching; the thread ends when [`stop`](Self::stop) is called.
    pub fn start(cfg: RedisConfig) -> Arc<MasterWatch> {
        let watch = Arc::new(MasterWatch {
            generation: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            master: std::sync::Mutex::new(None),
        });
        let w = Arc::clone(&watch);
        let spawned = std::thread::Builder::new()
            .name("sentinel-watch".into())
            .spawn(move || {
                let mut last = target(&cfg).ok();
                *w.master.lock().unwrap_or_else(|p| p.into_inner()) = last.clone();
                let mut events: Option<RespConnection<DataStream>> = None;
                while !w.stop.load(Ordering::Relaxed) {
                    if events.is_none() {
                        events = cfg.sentinel.as_ref().and_then(|s| subscribe(s, &cfg));
                    }
                    let until = std::time::Instant::now() + MASTER_CHECK_PERIOD;
                    while std::time::Instant::now() < until && !w.stop.load(Ordering::Relaxed) {
                        // +switch-master ends the wait at once; polling is the fallback.
                        match events.as_mut().map(|c| switch_announced(c, &cfg)) {
                            Some(Ok(true)) => break,
                            Some(Ok(false)) => {}
                            Some(Err(())) => events = None,
                            None => std::thread::sleep(Duration::from_millis(20)),
                        }
                    }
                    // Sentinels that cannot be asked leave the workers alone.
                    if let Ok(now) = target(&cfg)
                        && last.as_ref() != Some(&now)
                    {
                        *w.master.lock().unwrap_or_else(|p| p.into_inner()) = Some(now.clone());
                        if last.is_some() {
                            tracing::warn!(master = %format!("{}:{}", now.0, now.1), "the sentinels name another master; workers reconnect");
                            w.generation.fetch_add(1, Ordering::AcqRel);
                        }
                        last = Some(now);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the sentinel watcher; workers follow the master on errors only");
        }
        watch
    }

    /// The master the sentinels named at the watcher's last look (checked only when the
    /// generation moved, never per command).
    pub fn master(&self) -> Option<(String, u16)> {
        self.master
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Bumped every time the sentinels name another master.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A connection to the first sentinel that accepts `SUBSCRIBE +switch-master`, reading with a
/// short timeout so the watcher can poll it.
fn subscribe(s: &SentinelConfig, cfg: &RedisConfig) -> Option<RespConnection<DataStream>> {
    for (host, port) in &s.nodes {
        let Ok(mut conn) = connect(host, *port, s, cfg.connect_timeout, cfg.socket_timeout) else {
            continue;
        };
        if auth(&mut conn, s).is_err() {
            continue;
        }
        encode::command_args(conn.request_buf(), &[b"SUBSCRIBE", b"+switch-master"]);
        let answered = conn.flush().is_ok() && conn.read_frame().is_ok_and(|r| !r.is_error());
        if answered
            && conn
                .stream()
                .set_read_timeout(Some(Duration::from_millis(20)))
                .is_ok()
        {
            return Some(conn);
        }
    }
    None
}

/// Reads one event, if one comes within the read timeout: `Ok(true)` for a `+switch-master`
/// of our master, `Err` when the connection is gone.
fn switch_announced(conn: &mut RespConnection<DataStream>, cfg: &RedisConfig) -> Result<bool, ()> {
    let frame = match conn.read_frame() {
        Ok(frame) => frame,
        Err(crate::client::ConnError::Io(e))
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            return Ok(false);
        }
        Err(_) => return Err(()),
    };
    let Some(master) = cfg.sentinel.as_ref().map(|s| s.master.as_bytes()) else {
        return Ok(false);
    };
    // ["message", "+switch-master", "<name> <old ip> <old port> <new ip> <new port>"]
    let payload = conn.payload(&frame);
    let mut rest = payload;
    let mut last = &payload[..0];
    while let Ok(Some((r, used))) = resp::scan(rest) {
        last = &rest[r.payload];
        rest = &rest[used..];
    }
    let ours = last.starts_with(master) && last.get(master.len()) == Some(&b' ');
    if ours {
        tracing::info!(event = %String::from_utf8_lossy(last), "sentinel announced +switch-master");
    }
    Ok(ours)
}

/// The `(host, port)` to connect to: the configured one, the master the sentinels name, or
/// in cluster mode the first seed node.
pub fn target(cfg: &RedisConfig) -> Result<(String, u16), ConnectError> {
    if let Some(seed) = cfg.cluster.as_ref().and_then(|c| c.nodes.first()) {
        return Ok(seed.clone());
    }
    match &cfg.sentinel {
        None => Ok((cfg.host.clone(), cfg.port)),
        Some(s) => master_addr(s, cfg.connect_timeout, cfg.socket_timeout),
    }
}

/// Asks each sentinel in turn for the master's address; the first answer wins. The error names
/// every sentinel's failure.
pub fn master_addr(
    s: &SentinelConfig,
    connect_timeout: Duration,
    socket_timeout: Duration,
) -> Result<(String, u16), ConnectError> {
    let mut failures = Vec::new();
    for (host, port) in &s.nodes {
        match ask(host, *port, s, connect_timeout, socket_timeout) {
            Ok(addr) => return Ok(addr),
            Err(e) => failures.push(format!("{host}:{port}: {e}")),
        }
    }
    Err(ConnectError::Io(io::Error::new(
        io::ErrorKind::NotConnected,
        format!(
            "no sentinel named a master for '{}' ({})",
            s.master,
            failures.join("; ")
        ),
    )))
}

/// One sentinel's answer to `SENTINEL GET-MASTER-ADDR-BY-NAME` (after AUTH if configured).
fn ask(
    host: &str,
    port: u16,
    s: &SentinelConfig,
    connect_timeout: Duration,
    socket_timeout: Duration,
) -> Result<(String, u16), ConnectError> {
    let conn = connect(host, port, s, connect_timeout, socket_timeout)?;
    query(conn, s).map_err(|e| plain_on_tls_hint(s, e))
}

/// A connection to one sentinel, TLS if configured (see [`open_stream`]).
fn connect(
    host: &str,
    port: u16,
    s: &SentinelConfig,
    connect_timeout: Duration,
    socket_timeout: Duration,
) -> Result<RespConnection<DataStream>, ConnectError> {
    let stream = open_stream(
        host,
        port,
        s.tls.as_ref(),
        connect_timeout,
        socket_timeout,
        None,
    )?;
    Ok(RespConnection::new(stream))
}

/// `AUTH [<user>] <password>` if a password is configured.
fn auth<S: Read + Write>(
    conn: &mut RespConnection<S>,
    s: &SentinelConfig,
) -> Result<(), ConnectError> {
    let Some(password) = &s.password else {
        return Ok(());
    };
    let password = password.expose().as_bytes();
    match &s.username {
        Some(user) => {
            encode::command_args(conn.request_buf(), &[b"AUTH", user.as_bytes(), password]);
        }
        None => encode::command_args(conn.request_buf(), &[b"AUTH", password]),
    }
    conn.flush()?;
    let reply = conn.read_reply()?;
    if reply.is_error() {
        return Err(rejected("AUTH", conn.payload(&reply)));
    }
    Ok(())
}

/// A TLS sentinel closes a plain connection at once: say so instead of a bare "closed".
fn plain_on_tls_hint(s: &SentinelConfig, e: ConnectError) -> ConnectError {
    if closed_at_once(&e) && s.tls.is_none() {
        return ConnectError::Io(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the sentinel closed the connection (a TLS port? try --sentinel-tls)",
        ));
    }
    e
}

fn query<S: Read + Write>(
    mut conn: RespConnection<S>,
    s: &SentinelConfig,
) -> Result<(String, u16), ConnectError> {
    auth(&mut conn, s)?;
    encode::command_args(
        conn.request_buf(),
        &[b"SENTINEL", b"GET-MASTER-ADDR-BY-NAME", s.master.as_bytes()],
    );
    conn.flush()?;
    let reply = conn.read_reply()?;
    let payload = conn.payload(&reply);
    match reply.kind {
        ReplyKind::Error => Err(rejected("SENTINEL GET-MASTER-ADDR-BY-NAME", payload)),
        ReplyKind::Array(2) => {
            let host = first_string(payload)?;
            let rest = &payload[element_len(payload)?..];
            let port = first_string(rest)?
                .parse::<u16>()
                .map_err(|_| bad_answer())?;
            Ok((host, port))
        }
        _ => Err(ConnectError::Io(io::Error::new(
            io::ErrorKind::NotFound,
            format!("the sentinel does not know master '{}'", s.master),
        ))),
    }
}

/// After connecting to the address the sentinels named: `ROLE` must say `master` (a sentinel
/// can still name a demoted master for a moment during a failover).
pub fn check_master<S: Read + Write>(conn: &mut RespConnection<S>) -> Result<(), ConnectError> {
    encode::command_args(conn.request_buf(), &[b"ROLE"]);
    conn.flush()?;
    let reply = conn.read_reply()?;
    check_role(&reply, conn.payload(&reply))
}

/// Whether a `ROLE` reply says `master` (see [`check_master`]).
pub fn check_role(reply: &resp::Reply, payload: &[u8]) -> Result<(), ConnectError> {
    match reply.kind {
        ReplyKind::Error => Err(rejected("ROLE", payload)),
        ReplyKind::Array(_) if first_string(payload)? == "master" => Ok(()),
        _ => Err(ConnectError::Rejected {
            command: "ROLE",
            message: "the address the sentinels named is not a master (failover in progress?)"
                .to_string(),
            class: ErrorClass::ClusterError,
        }),
    }
}

fn rejected(command: &'static str, message: &[u8]) -> ConnectError {
    ConnectError::Rejected {
        command,
        message: String::from_utf8_lossy(message).into_owned(),
        class: ErrorClass::from_error_reply(message),
    }
}

fn bad_answer() -> ConnectError {
    ConnectError::Io(io::Error::new(
        io::ErrorKind::InvalidData,
        "unexpected answer from a sentinel",
    ))
}

/// The first element of an array payload, as text (bulk or status).
fn first_string(elements: &[u8]) -> Result<String, ConnectError> {
    match resp::scan(elements).map_err(|_| bad_answer())? {
        Some((r, _)) if matches!(r.kind, ReplyKind::Bulk | ReplyKind::Status) => {
            Ok(String::from_utf8_lossy(&elements[r.payload]).into_owned())
        }
        _ => Err(bad_answer()),
    }
}

/// How many bytes the first element of an array payload takes.
fn element_len(elements: &[u8]) -> Result<usize, ConnectError> {
    match resp::scan(elements).map_err(|_| bad_answer())? {
        Some((_, used)) => Ok(used),
        None => Err(bad_answer()),
    }
}
