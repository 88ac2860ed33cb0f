//! The one connection lifecycle: resolve, non-blocking connect, TLS, setup commands, ready.
//!
//! A [`Link`] is advanced by readiness events ([`Link::on_event`]) until it reports
//! [`Progress::Up`] or [`Progress::Failed`]. Setup (HELLO or AUTH + CLIENT SETNAME, SELECT, and
//! ROLE in Sentinel mode) goes out as one write and its replies are checked in order, so a
//! connection costs one round trip after TCP and TLS. The connect timeout covers all of it;
//! the caller checks it with [`Link::expired`] from its timer sweep. Not here: when to
//! reconnect (the caller's backoff), what the connection is used for.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::client::ConnectError;
use crate::client::conn::{encode_handshake, plain_on_tls_hint, setup_rejected};
use crate::config::RedisConfig;
use crate::net::conn::{Conn, Fill};
use crate::net::stream::NetStream;
use crate::proto::encode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No socket.
    Down,
    /// TCP connect in flight.
    Connecting,
    /// TLS handshake in flight.
    Tls,
    /// Setup commands sent; waiting for their replies.
    Setup,
    Ready,
}

/// What a step of the lifecycle came to.
#[derive(Debug)]
pub enum Progress {
    /// Waiting for the socket.
    Pending,
    /// The connection is ready for commands.
    Up,
    /// This attempt failed (the socket is closed).
    Failed(ConnectError),
}

/// One connection's lifecycle.
pub struct Link {
    state: State,
    conn: Option<Conn>,
    host: String,
    port: u16,
    addrs: Vec<SocketAddr>,
    next_addr: usize,
    /// When the current attempt began (the connect timeout runs from here).
    started: Instant,
    /// The setup commands' names, one per reply, and how many replies have come.
    setup: Vec<&'static str>,
    setup_seen: usize,
    /// Sentinel mode: the last setup reply is ROLE's, which must say master.
    role_check: bool,
    first_error: Option<ConnectError>,
}

impl Default for Link {
    fn default() -> Self {
        Link::new()
    }
}

impl Link {
    pub fn new() -> Self {
        Link {
            state: State::Down,
            conn: None,
            host: String::new(),
            port: 0,
            addrs: Vec::new(),
            next_addr: 0,
            started: Instant::now(),
            setup: Vec::new(),
            setup_seen: 0,
            role_check: false,
            first_error: None,
        }
    }

    /// Ready for commands.
    #[inline]
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// An attempt is in flight (connecting, TLS or setup).
    pub fn is_connecting(&self) -> bool {
        matches!(self.state, State::Connecting | State::Tls | State::Setup)
    }

    /// The connection, once ready.
    #[inline]
    pub fn conn(&mut self) -> Option<&mut Conn> {
        if self.state == State::Ready {
            self.conn.as_mut()
        } else {
            None
        }
    }

    /// The poll reported the peer's close or an error on this socket.
    #[cold]
    pub fn peer_closed(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.peer_closed();
        }
    }

    /// The address of the current (or last) attempt.
    pub fn target(&self) -> (&str, u16) {
        (&self.host, self.port)
    }

    /// Starts an attempt to `host:port`. The socket is registered under `token`.
    pub fn start(
        &mut self,
        registry: &Registry,
        token: Token,
        cfg: &RedisConfig,
        host: &str,
        port: u16,
    ) -> Progress {
        self.close(registry);
        self.host.clear();
        self.host.push_str(host);
        self.port = port;
        self.started = Instant::now();
        self.first_error = None;
        self.addrs = match (host, port).to_socket_addrs() {
            Ok(a) => a.collect(),
            Err(e) => return Progress::Failed(e.into()),
        };
        self.next_addr = 0;
        self.setup.clear();
        self.setup_seen = 0;
        self.role_check = cfg.sentinel.is_some();
        self.connect_next(
            registry,
            token,
            io::Error::new(io::ErrorKind::NotFound, "host resolved to no address"),
        )
    }

    /// Tries the next resolved address; `last` is why the previous one failed.
    fn connect_next(&mut self, registry: &Registry, token: Token, mut last: io::Error) -> Progress {
        while let Some(addr) = self.addrs.get(self.next_addr).copied() {
            self.next_addr += 1;
            let mut sock = match TcpStream::connect(addr) {
                Ok(s) => s,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            if let Err(e) =
                registry.register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
            {
                last = e;
                continue;
            }
            self.conn = Some(Conn::new(NetStream::Plain(sock)));
            self.state = State::Connecting;
            return Progress::Pending;
        }
        self.state = State::Down;
        Progress::Failed(last.into())
    }

    /// Advances the attempt on a readiness event of its socket.
    pub fn on_event(
        &mut self,
        registry: &Registry,
        token: Token,
        cfg: &RedisConfig,
        client_name: &str,
    ) -> Progress {
        match self.step(registry, token, cfg, client_name) {
            Ok(p) => p,
            Err(e) => {
                let e = if self.state == State::Setup {
                    plain_on_tls_hint(cfg, e)
                } else {
                    e
                };
                self.close(registry);
                Progress::Failed(e)
            }
        }
    }

    fn step(
        &mut self,
        registry: &Registry,
        token: Token,
        cfg: &RedisConfig,
        client_name: &str,
    ) -> Result<Progress, ConnectError> {
        if self.state == State::Connecting {
            let Some(conn) = self.conn.as_mut() else {
                return Ok(Progress::Pending);
            };
            let sock = conn.stream.tcp();
            let failed = match sock.take_error() {
                Ok(Some(e)) | Err(e) => Some(e),
                Ok(None) => match sock.peer_addr() {
                    Ok(_) => None,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        return Ok(Progress::Pending);
                    }
                    Err(e) => Some(e),
                },
            };
            if let Some(e) = failed {
                self.close(registry);
                return match self.connect_next(registry, token, e) {
                    Progress::Failed(e) => Err(e),
                    p => Ok(p),
                };
            }
            sock.set_nodelay(true)?;
            if let Some(idle) = cfg.tcp_keepalive {
                let keepalive = socket2::TcpKeepalive::new().with_time(idle);
                socket2::SockRef::from(&*sock).set_tcp_keepalive(&keepalive)?;
            }
            if let Some(tls) = &cfg.tls {
                let Some(conn) = self.conn.take() else {
                    return Ok(Progress::Pending);
                };
                let NetStream::Plain(sock) = conn.stream else {
                    return Ok(Progress::Pending);
                };
                self.conn = Some(Conn::new(NetStream::tls(tls, &self.host, sock)?));
                self.state = State::Tls;
            } else {
                self.begin_setup(cfg, client_name)?;
            }
        }
        if self.state == State::Tls {
            let Some(conn) = self.conn.as_mut() else {
                return Ok(Progress::Pending);
            };
            if !conn.stream.handshake()? {
                return Ok(Progress::Pending);
            }
            self.begin_setup(cfg, client_name)?;
        }
        if self.state == State::Setup {
            return self.read_setup();
        }
        Ok(Progress::Pending)
    }

    fn begin_setup(&mut self, cfg: &RedisConfig, client_name: &str) -> Result<(), ConnectError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let buf = conn.request_buf();
        self.setup = encode_handshake(buf, cfg, client_name);
        if self.role_check {
            encode::command_args(buf, &[b"ROLE"]);
            self.setup.push("ROLE");
        }
        self.setup_seen = 0;
        self.state = State::Setup;
        conn.send()?;
        Ok(())
    }

    fn read_setup(&mut self) -> Result<Progress, ConnectError> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Ok(Progress::Pending);
            };
            if conn.write_pending() {
                conn.send()?;
            }
            let fill = conn.fill()?;
            if self.scan_setup()? {
                if let Some(e) = self.first_error.take() {
                    return Err(e);
                }
                self.state = State::Ready;
                return Ok(Progress::Up);
            }
            if fill == Fill::Drained {
                return Ok(Progress::Pending);
            }
        }
    }

    /// Checks the setup replies read so far; true once all have come.
    fn scan_setup(&mut self) -> Result<bool, ConnectError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(false);
        };
        while self.setup_seen < self.setup.len() {
            let Some(reply) = conn.next_reply(false)? else {
                return Ok(false);
            };
            let name = self.setup[self.setup_seen];
            self.setup_seen += 1;
            let payload = conn.payload(&reply);
            if self.first_error.is_some() {
                continue;
            }
            if name == "ROLE" && self.role_check {
                self.first_error = crate::client::sentinel::check_role(&reply, payload).err();
            } else if reply.is_error() {
                self.first_error = Some(setup_rejected(name, payload));
            }
        }
        Ok(true)
    }

    /// Whether the attempt in flight has run past `timeout` at `now`.
    pub fn expired(&self, now: Instant, timeout: Duration) -> bool {
        self.is_connecting() && now.saturating_duration_since(self.started) >= timeout
    }

    /// Ends the attempt in flight as timed out.
    pub fn time_out(&mut self, registry: &Registry) -> ConnectError {
        let message = match self.state {
            State::Tls => "TLS handshake timed out: no answer from the server (is it a TLS port?)",
            State::Setup => "no answer to the connection's setup commands in time",
            _ => "connection timed out",
        };
        self.close(registry);
        ConnectError::Io(io::Error::new(io::ErrorKind::TimedOut, message))
    }

    /// Closes the socket (a ready connection that failed, or an attempt given up).
    pub fn close(&mut self, registry: &Registry) {
        if let Some(mut conn) = self.conn.take() {
            let _ = registry.deregister(conn.stream.tcp());
        }
        self.state = State::Down;
    }
}
