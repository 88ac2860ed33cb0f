//! A non-blocking byte stream: plain TCP, or rustls driven by hand over TCP.
//!
//! Reads and writes never block: they return `WouldBlock` and the caller waits for readiness.
//! For TLS, [`NetStream::read`] reports "drained" only once the socket itself said
//! `WouldBlock`, because with edge-triggered readiness bytes left in the socket would never be
//! announced again. Not here: buffering (see [`super::conn`]).

use mio::net::TcpStream;
use rustls::ClientConnection;
use std::io::{self, Read, Write};

use crate::client::TlsConfig;

/// A data-plane socket, plain or TLS.
pub enum NetStream {
    Plain(TcpStream),
    /// Boxed: the rustls state is large and moves with the connection.
    Tls(Box<TlsStream>),
}

/// rustls over a non-blocking socket.
pub struct TlsStream {
    sock: TcpStream,
    tls: ClientConnection,
}

/// What a read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Got {
    /// `n` bytes, and there may be more right away.
    More(usize),
    /// `n` bytes (possibly 0), and the socket has no more for now: wait for readiness.
    Drained(usize),
}

impl NetStream {
    /// Wraps a connected socket in a TLS client session; the handshake runs as the socket
    /// becomes ready ([`handshake`](Self::handshake)).
    pub fn tls(cfg: &TlsConfig, host: &str, sock: TcpStream) -> io::Result<NetStream> {
        let tls = cfg.session(host)?;
        Ok(NetStream::Tls(Box::new(TlsStream { sock, tls })))
    }

    /// The TCP socket underneath (to register it with the poll).
    pub fn tcp(&mut self) -> &mut TcpStream {
        match self {
            NetStream::Plain(s) => s,
            NetStream::Tls(t) => &mut t.sock,
        }
    }

    /// Drives the TLS handshake as far as the socket allows. `Ok(true)`: done (always for
    /// plain TCP).
    pub fn handshake(&mut self) -> io::Result<bool> {
        let NetStream::Tls(t) = self else {
            return Ok(true);
        };
        while t.tls.is_handshaking() {
            if t.tls.wants_write() {
                match t.tls.write_tls(&mut t.sock) {
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(handshake_error(e)),
                }
            }
            match t.tls.read_tls(&mut t.sock) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "TLS handshake failed: the server closed the connection (is it a TLS port?)",
                    ));
                }
                Ok(_) => {
                    t.tls.process_new_packets().map_err(|e| {
                        handshake_error(io::Error::new(io::ErrorKind::InvalidData, e))
                    })?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(handshake_error(e)),
            }
        }
        // The client's Finished may still be queued.
        self.flush_tls()?;
        Ok(true)
    }

    /// Reads into `buf`.
    #[inline]
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<Got> {
        match self {
            NetStream::Plain(s) => match s.read(buf) {
                // A read that did not fill the buffer emptied the socket: a new arrival will
                // raise a new edge.
                Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) if n < buf.len() => Ok(Got::Drained(n)),
                Ok(n) => Ok(Got::More(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Got::Drained(0)),
                Err(e) => Err(e),
            },
            NetStream::Tls(t) => t.read(buf),
        }
    }

    /// Writes from `buf`; `Ok(0)` when the socket takes nothing now.
    #[inline]
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            NetStream::Plain(s) => match s.write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                other => other,
            },
            NetStream::Tls(t) => {
                let n = t.tls.writer().write(buf)?;
                t.flush()?;
                Ok(n)
            }
        }
    }

    /// TLS: sends encrypted bytes still queued. `Ok(true)` when nothing is left.
    #[inline]
    pub fn flush_tls(&mut self) -> io::Result<bool> {
        match self {
            NetStream::Plain(_) => Ok(true),
            NetStream::Tls(t) => t.flush(),
        }
    }
}

impl TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<Got> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                // Plaintext may remain in the session, or records in the socket.
                Ok(n) => return Ok(Got::More(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match self.tls.read_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {
                    self.tls
                        .process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    // Alerts or key updates may want an answer.
                    self.flush()?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Got::Drained(0)),
                Err(e) => return Err(e),
            }
        }
    }

    fn flush(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

fn handshake_error(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("TLS handshake failed: {e}"))
}
