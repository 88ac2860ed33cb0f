//! One non-blocking RESP connection: the stream, a reused write buffer that keeps the unsent
//! tail of a partial write, and a reused read buffer scanned in place.
//!
//! The write buffer starts small and grows to the largest batch seen; the read buffer starts
//! at 64 KiB, mostly never touched (see [`INITIAL_READ_BUFFER`]). Not here: deciding what to
//! send or what a reply means.

use std::time::Instant;

use crate::client::ConnError;
use crate::net::stream::{Got, NetStream};
use crate::proto::resp::{ReadBuf, Reply};

/// Read buffer size of a new connection; it grows only for a reply larger than it. Large
/// enough that replies of every shipped workload fit from the start (a buffer that grew
/// mid-run would be an allocation on the hot path), and cheap anyway: zeroed memory from the
/// allocator becomes resident only where reads touch it (10,000 connections: ~75 MB more RSS
/// than with 4 KiB buffers, measured with `/usr/bin/time -f %M`).
const INITIAL_READ_BUFFER: usize = 64 * 1024;
/// Write buffer capacity of a new connection.
const INITIAL_WRITE_BUFFER: usize = 1024;

/// A RESP connection on a non-blocking stream.
pub struct Conn {
    pub(crate) stream: NetStream,
    write_buf: Vec<u8>,
    /// `write_buf[written..]` is still to be sent.
    written: usize,
    read: ReadBuf,
    /// When the last read that returned bytes ended: the moment every reply in them became
    /// available to us (one clock read per read call, not per reply).
    last_read_at: Instant,
    /// The poll said the peer closed (or the socket failed): a short read no longer means the
    /// socket is empty, since the end of the stream raises no further edge.
    peer_closed: bool,
}

/// What [`Conn::fill`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Bytes arrived and more may be waiting: scan, then call again.
    More,
    /// The socket is empty for now (bytes may have arrived too): scan, then wait for readiness.
    Drained,
}

impl Conn {
    pub fn new(stream: NetStream) -> Self {
        Conn {
            stream,
            write_buf: Vec::with_capacity(INITIAL_WRITE_BUFFER),
            written: 0,
            read: ReadBuf::new(INITIAL_READ_BUFFER),
            last_read_at: Instant::now(),
            peer_closed: false,
        }
    }

    /// The poll reported the peer's close or an error: reads go on until the end of the
    /// stream is seen.
    #[cold]
    pub fn peer_closed(&mut self) {
        self.peer_closed = true;
    }

    /// The buffer the next requests are encoded into (after anything still unsent).
    #[inline]
    pub fn request_buf(&mut self) -> &mut Vec<u8> {
        &mut self.write_buf
    }

    /// Whether bytes are still waiting to be written (the socket was full).
    #[inline]
    pub fn write_pending(&self) -> bool {
        self.written < self.write_buf.len()
    }

    /// Writes as much of the request buffer as the socket takes. `Ok(true)`: all of it is
    /// out (the buffer is cleared); `Ok(false)`: wait for write readiness and call again.
    #[inline]
    pub fn send(&mut self) -> Result<bool, ConnError> {
        while self.written < self.write_buf.len() {
            match self.stream.write(&self.write_buf[self.written..]) {
                Ok(0) => return Ok(false),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.write_buf.clear();
        self.written = 0;
        Ok(self.stream.flush_tls()?)
    }

    /// Reads once into the free end of the read buffer (see [`ReadBuf::space`]).
    #[inline]
    pub fn fill(&mut self) -> Result<Fill, ConnError> {
        let got = loop {
            match self.stream.read(self.read.space()) {
                Ok(got) => break got,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(ConnError::Closed);
                }
                Err(e) => return Err(e.into()),
            }
        };
        let (n, fill) = match got {
            Got::More(n) => (n, Fill::More),
            Got::Drained(n) if self.peer_closed && n > 0 => (n, Fill::More),
            Got::Drained(n) => (n, Fill::Drained),
        };
        if n > 0 {
            self.read.filled(n);
            self.last_read_at = Instant::now();
        }
        Ok(fill)
    }

    /// The next complete reply already read, if any; RESP3 pushes are skipped unless
    /// `pushes`. Its payload is valid until the next [`fill`](Self::fill).
    #[inline]
    pub fn next_reply(&mut self, pushes: bool) -> Result<Option<Reply>, ConnError> {
        Ok(self.read.next_frame(pushes)?)
    }

    /// The payload bytes of a reply returned by [`next_reply`](Self::next_reply).
    #[inline]
    pub fn payload(&self, reply: &Reply) -> &[u8] {
        self.read.payload(reply)
    }

    /// When the bytes of the replies scanned last were read from the socket.
    #[inline]
    pub fn reply_received_at(&self) -> Instant {
        self.last_read_at
    }
}
