//! One RESP connection: a byte stream plus a reused write buffer and a reused read buffer.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::client::tls::{DataStream, TlsConfig};
use crate::config::{Protocol, RedisConfig};
use crate::error::ErrorClass;
use crate::proto::encode;
use crate::proto::resp::{ProtocolError, ReadBuf, Reply};

/// Read buffer size at start; it only grows for a reply larger than it.
const INITIAL_READ_BUFFER: usize = 64 * 1024;

/// A failure on an established connection. After any of these the connection is out of step
/// with the server (a reply may still be on its way), so the caller must reconnect.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("server closed the connection")]
    Closed,
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
}

impl ConnError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ConnError::Io(e) => ErrorClass::from_io(e),
            ConnError::Closed => ErrorClass::ConnectionError,
            ConnError::Protocol(_) => ErrorClass::Unknown,
        }
    }
}

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Conn(#[from] ConnError),
    /// The server answered a handshake command with an error (message as the server sent it).
    #[error("{command} failed: {message}")]
    Rejected {
        command: &'static str,
        message: String,
        class: ErrorClass,
    },
}

impl ConnectError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ConnectError::Io(e) => match ErrorClass::from_io(e) {
                ErrorClass::Unknown => ErrorClass::ConnectionError,
                c => c,
            },
            ConnectError::Conn(e) => e.class(),
            ConnectError::Rejected { class, .. } => *class,
        }
    }
}

/// A RESP connection over any byte stream.
pub struct RespConnection<S> {
    stream: S,
    write_buf: Vec<u8>,
    read: ReadBuf,
    /// When the last read from the socket returned: the moment every reply in those bytes
    /// became available to us.
    last_read_at: Instant,
}

impl<S: Read + Write> RespConnection<S> {
    pub fn new(stream: S) -> Self {
        RespConnection {
            stream,
            write_buf: Vec::with_capacity(16 * 1024),
            read: ReadBuf::new(INITIAL_READ_BUFFER),
            last_read_at: Instant::now(),
        }
    }

    /// The buffer the next batch is encoded into; [`flush`](Self::flush) sends and clears it.
    #[inline]
    pub fn request_buf(&mut self) -> &mut Vec<u8> {
        &mut self.write_buf
    }

    /// Writes the whole request buffer with one write (the kernel may split it) and clears it.
    pub fn flush(&mut self) -> Result<(), ConnError> {
        let result = self.stream.write_all(&self.write_buf);
        self.write_buf.clear();
        result.map_err(ConnError::from)
    }

    /// Reads the next reply. Its payload is valid until the next read: see [`payload`](Self::payload).
    /// Out-of-band RESP3 pushes are skipped (request/reply workers never want them).
    #[inline]
    pub fn read_reply(&mut self) -> Result<Reply, ConnError> {
        self.next_frame(false)
    }

    /// Reads the next frame, RESP3 pushes included (a subscriber's messages arrive as pushes).
    /// After a read timeout the bytes of a partly read frame stay buffered: calling again
    /// carries on where it stopped.
    pub fn read_frame(&mut self) -> Result<Reply, ConnError> {
        self.next_frame(true)
    }

    /// The underlying stream (e.g. to change a socket's read timeout).
    pub fn stream(&self) -> &S {
        &self.stream
    }

    #[inline]
    fn next_frame(&mut self, pushes: bool) -> Result<Reply, ConnError> {
        loop {
            if let Some(reply) = self.read.next_frame(pushes)? {
                return Ok(reply);
            }
            self.fill()?;
        }
    }

    /// Health check: writes PING straight to the socket (the request buffer may already hold
    /// the next batch) and reads its reply. Any reply, even an error, means the connection
    /// works.
    pub fn ping(&mut self) -> Result<(), ConnError> {
        self.stream.write_all(b"*1\r\n$4\r\nPING\r\n")?;
        self.read_reply().map(|_| ())
    }

    /// When the bytes of the last reply returned by [`read_reply`](Self::read_reply) were read
    /// from the socket. Replies that arrive together share it: one clock read per `read`
    /// call instead of one per reply, and it is when the reply was there, not when we got
    /// round to scanning it.
    #[inline]
    pub fn reply_received_at(&self) -> Instant {
        self.last_read_at
    }

    /// The payload bytes of a reply returned by the last [`read_reply`](Self::read_reply).
    #[inline]
    pub fn payload(&self, reply: &Reply) -> &[u8] {
        self.read.payload(reply)
    }

    /// Reads more bytes into the read buffer (see [`ReadBuf::space`]).
    fn fill(&mut self) -> Result<(), ConnError> {
        let n = loop {
            match self.stream.read(self.read.space()) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 {
            return Err(ConnError::Closed);
        }
        self.read.filled(n);
        self.last_read_at = Instant::now();
        Ok(())
    }

    /// Sends already-encoded commands and checks each reply is not an error
    /// (connection setup only). `names` labels the commands for error messages.
    fn run_setup(&mut self, names: &[&'static str]) -> Result<(), ConnectError> {
        self.flush()?;
        let mut first_error = None;
        for &name in names {
            let reply = self.read_reply()?;
            if reply.is_error() && first_error.is_none() {
                first_error = Some(setup_rejected(name, self.payload(&reply)));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Authenticates, negotiates the protocol, selects the database and names the connection.
    pub fn handshake(&mut self, cfg: &RedisConfig, client_name: &str) -> Result<(), ConnectError> {
        let names = encode_handshake(&mut self.write_buf, cfg, client_name);
        self.run_setup(&names)
    }
}

/// Encodes the commands that set a new connection up (HELLO or AUTH + CLIENT SETNAME, then
/// SELECT) into `buf`; returns their names, one per reply to expect. Shared by the blocking
/// connections and the event loop's connection lifecycle.
pub fn encode_handshake(
    buf: &mut Vec<u8>,
    cfg: &RedisConfig,
    client_name: &str,
) -> Vec<&'static str> {
    let user = cfg.username.as_deref().unwrap_or("default");
    let db = cfg.db.to_string();
    let mut names: Vec<&'static str> = Vec::new();
    match cfg.protocol {
        Protocol::Resp3 => {
            let mut args: Vec<&[u8]> = vec![b"HELLO", b"3"];
            if let Some(password) = &cfg.password {
                args.extend_from_slice(&[b"AUTH", user.as_bytes(), password.expose().as_bytes()]);
            }
            args.extend_from_slice(&[b"SETNAME", client_name.as_bytes()]);
            encode::command_args(buf, &args);
            names.push("HELLO");
        }
        Protocol::Resp2 => {
            if let Some(password) = &cfg.password {
                match &cfg.username {
                    Some(u) => encode::command_args(
                        buf,
                        &[b"AUTH", u.as_bytes(), password.expose().as_bytes()],
                    ),
                    None => encode::command_args(buf, &[b"AUTH", password.expose().as_bytes()]),
                }
                names.push("AUTH");
            }
            encode::command_args(buf, &[b"CLIENT", b"SETNAME", client_name.as_bytes()]);
            names.push("CLIENT SETNAME");
        }
    }
    if cfg.db != 0 {
        encode::command_args(buf, &[b"SELECT", db.as_bytes()]);
        names.push("SELECT");
    }
    names
}

/// The error for a setup command the server refused, with its message as sent.
pub fn setup_rejected(command: &'static str, message: &[u8]) -> ConnectError {
    let message = String::from_utf8_lossy(message).into_owned();
    let class = ErrorClass::from_error_reply(message.as_bytes());
    ConnectError::Rejected {
        command,
        message,
        class,
    }
}

/// Opens a TCP connection with the configured timeouts, TCP_NODELAY and keepalive, runs the
/// TLS handshake if configured (bounded by the connect timeout), then the RESP handshake.
pub fn connect(
    cfg: &RedisConfig,
    client_name: &str,
) -> Result<RespConnection<DataStream>, ConnectError> {
    // Sentinel mode asks the sentinels on every (re)connect: the master may have moved.
    let (host, port) = crate::client::sentinel::target(cfg)?;
    connect_to(cfg, &host, port, client_name)
}

/// [`connect`] to a given address (cluster mode: one node).
pub fn connect_to(
    cfg: &RedisConfig,
    host: &str,
    port: u16,
    client_name: &str,
) -> Result<RespConnection<DataStream>, ConnectError> {
    let stream = open_stream(
        host,
        port,
        cfg.tls.as_ref(),
        cfg.connect_timeout,
        cfg.socket_timeout,
        cfg.tcp_keepalive,
    )?;
    let mut conn = RespConnection::new(stream);
    conn.handshake(cfg, client_name)
        .map_err(|e| plain_on_tls_hint(cfg, e))?;
    if cfg.sentinel.is_some() {
        crate::client::sentinel::check_master(&mut conn)?;
    }
    Ok(conn)
}

/// A TCP connection to the first address of `host:port` that accepts one, with TCP_NODELAY,
/// the keepalive if set, the TLS handshake if `tls` is set (bounded by the connect timeout: a
/// plain server never answers a ClientHello), then the socket timeout on reads and writes.
/// Shared by the data plane and the sentinel connections.
pub(crate) fn open_stream(
    host: &str,
    port: u16,
    tls: Option<&TlsConfig>,
    connect_timeout: Duration,
    socket_timeout: Duration,
    keepalive: Option<Duration>,
) -> Result<DataStream, ConnectError> {
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "host resolved to no address");
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, connect_timeout) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                if let Some(idle) = keepalive {
                    let keepalive = socket2::TcpKeepalive::new().with_time(idle);
                    socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive)?;
                }
                let stream = match tls {
                    Some(tls) => {
                        stream.set_read_timeout(Some(connect_timeout))?;
                        stream.set_write_timeout(Some(connect_timeout))?;
                        DataStream::tls(tls, host, stream)?
                    }
                    None => DataStream::Plain(stream),
                };
                stream.tcp().set_read_timeout(Some(socket_timeout))?;
                stream.tcp().set_write_timeout(Some(socket_timeout))?;
                return Ok(stream);
            }
            Err(e) => last_error = e,
        }
    }
    Err(last_error.into())
}

/// Whether `e` is the server closing the connection at once, as a TLS port does to a plain
/// client.
pub(crate) fn closed_at_once(e: &ConnectError) -> bool {
    match e {
        ConnectError::Conn(ConnError::Closed) => true,
        ConnectError::Conn(ConnError::Io(io)) | ConnectError::Io(io) => matches!(
            io.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

/// A TLS port closes a plain connection at once: say so instead of a bare "closed".
pub(crate) fn plain_on_tls_hint(cfg: &RedisConfig, e: ConnectError) -> ConnectError {
    if closed_at_once(&e) && cfg.tls.is_none() {
        return ConnectError::Io(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the server closed the connection during the handshake (a TLS port? try --tls)",
        ));
    }
    e
}
