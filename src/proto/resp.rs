//! An in-place RESP2/RESP3 reply scanner.
//!
//! [`scan`] looks at the front of a read buffer and, if a whole reply is there, says what kind
//! it is and how many bytes it spans, without copying or allocating: payloads are returned as
//! ranges into the caller's buffer. Aggregates (arrays, maps, sets, pushes, attributes) are
//! walked to find their end but not materialised. This is the data plane's only parser; the
//! control plane uses the redis crate instead.
//!
//! We scan by hand because the RESP crates we measured build a `Vec` per aggregate frame,
//! which breaks the zero-allocation bar for multi-bulk replies (figures in
//! docs/architecture.md).

use std::ops::Range;

/// Deepest nesting we follow; deeper replies are rejected as malformed instead of risking the
/// stack (real Redis replies nest a few levels at most).
const MAX_DEPTH: usize = 32;

/// What a reply is. Payload bytes, where there are any, are in [`Reply::payload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// `+OK` (payload: the text).
    Status,
    /// `-ERR ...` or `!<len>` blob error (payload: the message).
    Error,
    /// `:<n>`.
    Integer(i64),
    /// `$<len>` or `=<len>` verbatim string (payload: the bytes).
    Bulk,
    /// `$-1`, `*-1` or RESP3 `_`.
    Nil,
    /// `*<n>` array, `~<n>` set (payload: the elements' bytes).
    Array(usize),
    /// `%<n>` map of n pairs (payload: the pairs' bytes).
    Map(usize),
    /// `><n>` out-of-band push (pub/sub messages, invalidations).
    Push(usize),
    /// `,` double, `#` boolean, `(` big number (payload: the text).
    Scalar,
}

/// One scanned reply: its kind and where its payload lies in the scanned buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: ReplyKind,
    pub payload: Range<usize>,
}

impl Reply {
    pub fn is_error(&self) -> bool {
        self.kind == ReplyKind::Error
    }

    /// Moves the payload range by `offset` (when the scanned slice started inside a buffer).
    pub fn shifted(mut self, offset: usize) -> Reply {
        self.payload = self.payload.start + offset..self.payload.end + offset;
        self
    }
}

/// The buffer does not hold valid RESP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("unknown RESP type byte 0x{0:02x}")]
    UnknownType(u8),
    #[error("malformed length or integer in RESP header")]
    BadNumber,
    #[error("RESP line or bulk not terminated by CRLF")]
    MissingCrlf,
    #[error("RESP reply nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// Scans one complete reply at the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some((reply, consumed)))` when a whole reply
/// is present, and an error when the bytes cannot be RESP.
pub fn scan(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    scan_at(buf, 0, 0)
}

fn scan_at(buf: &[u8], pos: usize, depth: usize) -> Result<Option<(Reply, usize)>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError::TooDeep);
    }
    let Some(&type_byte) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(line_end) = find_crlf(buf, pos + 1) else {
        return Ok(None);
    };
    let line = pos + 1..line_end;
    let after_line = line_end + 2;
    let reply = |kind, payload: Range<usize>, end: usize| Ok(Some((Reply { kind, payload }, end)));
    match type_byte {
        b'+' => reply(ReplyKind::Status, line, after_line),
        b'-' => reply(ReplyKind::Error, line, after_line),
        b',' | b'#' | b'(' => reply(ReplyKind::Scalar, line, after_line),
        b'_' => reply(ReplyKind::Nil, line.start..line.start, after_line),
        b':' => {
            let n = parse_int(&buf[line])?;
            reply(ReplyKind::Integer(n), after_line..after_line, after_line)
        }
        b'$' | b'=' | b'!' => {
            let n = parse_int(&buf[line])?;
            if n < 0 {
                if n == -1 && type_byte == b'$' {
                    return reply(ReplyKind::Nil, after_line..after_line, after_line);
                }
                return Err(ProtocolError::BadNumber);
            }
            let len = n as usize;
            let end = after_line
                .checked_add(len)
                .ok_or(ProtocolError::BadNumber)?;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError::MissingCrlf);
            }
            let kind = if type_byte == b'!' {
                ReplyKind::Error
            } else {
                ReplyKind::Bulk
            };
            reply(kind, after_line..end, end + 2)
        }
        b'*' | b'~' | b'%' | b'>' | b'|' => {
            let n = parse_int(&buf[line])?;
            if n < 0 {
                if n == -1 && type_byte == b'*' {
                    return reply(ReplyKind::Nil, after_line..after_line, after_line);
                }
                return Err(ProtocolError::BadNumber);
            }
            let count = n as usize;
            // Maps and attributes hold key/value pairs: twice as many elements.
            let elements = if matches!(type_byte, b'%' | b'|') {
                count.checked_mul(2).ok_or(ProtocolError::BadNumber)?
            } else {
                count
            };
            let mut cursor = after_line;
            for _ in 0..elements {
                match scan_at(buf, cursor, depth + 1)? {
                    Some((_, next)) => cursor = next,
                    None => return Ok(None),
                }
            }
            let payload = after_line..cursor;
            match type_byte {
                b'*' | b'~' => reply(ReplyKind::Array(count), payload, cursor),
                b'%' => reply(ReplyKind::Map(count), payload, cursor),
                b'>' => reply(ReplyKind::Push(count), payload, cursor),
                // An attribute annotates the reply that follows it: skip it, return that reply.
                _ => match scan_at(buf, cursor, depth + 1)? {
                    Some((inner, next)) => Ok(Some((inner, next))),
                    None => Ok(None),
                },
            }
        }
        other => Err(ProtocolError::UnknownType(other)),
    }
}

/// Index of the `\r` of the first CRLF at or after `from`.
#[inline]
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 1 < buf.len() {
        if buf[i] == b'\r' && buf[i + 1] == b'\n' {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Parses a signed decimal RESP integer; rejects empty input, stray bytes and overflow.
fn parse_int(digits: &[u8]) -> Result<i64, ProtocolError> {
    let (negative, body) = match digits.first() {
        Some(b'-') => (true, &digits[1..]),
        Some(b'+') => (false, &digits[1..]),
        _ => (false, digits),
    };
    if body.is_empty() {
        return Err(ProtocolError::BadNumber);
    }
    let mut value: i64 = 0;
    for &b in body {
        if !b.is_ascii_digit() {
            return Err(ProtocolError::BadNumber);
        }
        let digit = (b - b'0') as i64;
        value = value
            .checked_mul(10)
            .and_then(|v| {
                if negative {
                    v.checked_sub(digit)
                } else {
                    v.checked_add(digit)
                }
            })
            .ok_or(ProtocolError::BadNumber)?;
    }
    Ok(value)
}

/// Splits encoded requests (arrays of bulk strings) back into their arguments, checking each
/// is whole and valid RESP. For tests of request encoders.
/// A connection's read buffer: bytes read and not yet scanned are `buf[start..end]`. Replies
/// are scanned in place; the buffer is compacted when full and grows only for a reply larger
/// than all of it. Shared by the blocking connections and the event loop's.
#[derive(Debug)]
pub struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    pub fn new(size: usize) -> Self {
        ReadBuf {
            buf: vec![0; size],
            start: 0,
            end: 0,
        }
    }

    /// Free space to read into, made by moving the unscanned tail to the front or, when one
    /// reply fills the whole buffer, by doubling it.
    #[inline]
    pub fn space(&mut self) -> &mut [u8] {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let bigger = self.buf.len() * 2;
                self.buf.resize(bigger, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    /// `n` bytes were read into [`space`](Self::space).
    #[inline]
    pub fn filled(&mut self, n: usize) {
        self.end += n;
    }

    /// The next complete frame, if the bytes hold one; RESP3 pushes are skipped unless
    /// `pushes`. Its payload is valid until the next [`space`](Self::space).
    #[inline]
    pub fn next_frame(&mut self, pushes: bool) -> Result<Option<Reply>, ProtocolError> {
        loop {
            let Some((reply, used)) = scan(&self.buf[self.start..self.end])? else {
                return Ok(None);
            };
            let reply = reply.shifted(self.start);
            self.start += used;
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
            }
            if !pushes && matches!(reply.kind, ReplyKind::Push(_)) {
                continue;
            }
            return Ok(Some(reply));
        }
    }

    /// The payload bytes of a frame returned by [`next_frame`](Self::next_frame).
    #[inline]
    pub fn payload(&self, reply: &Reply) -> &[u8] {
        &self.buf[reply.payload.clone()]
    }
}

#[cfg(test)]
pub(crate) fn split_commands(mut bytes: &[u8]) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    while !bytes.is_empty() {
        let (reply, used) = scan(bytes).unwrap().expect("whole command");
        let ReplyKind::Array(n) = reply.kind else {
            panic!("a request is an array")
        };
        let mut rest = &bytes[reply.payload.clone()];
        let mut args = Vec::new();
        for _ in 0..n {
            let (arg, used) = scan(rest).unwrap().unwrap();
            args.push(String::from_utf8_lossy(&rest[arg.payload]).into_owned());
            rest = &rest[used..];
        }
        commands.push(args);
        bytes = &bytes[used..];
    }
    commands
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(buf: &[u8]) -> Reply {
        let (reply, used) = scan(buf).unwrap().expect("complete");
        assert_eq!(used, buf.len(), "consumed the whole reply");
        reply
    }

    #[test]
    fn simple_types() {
        let r = whole(b"+OK\r\n");
        assert_eq!(r.kind, ReplyKind::Status);
        assert_eq!(&b"+OK\r\n"[r.payload], b"OK");
        assert_eq!(whole(b":-42\r\n").kind, ReplyKind::Integer(-42));
        assert_eq!(whole(b"$-1\r\n").kind, ReplyKind::Nil);
        assert_eq!(whole(b"*-1\r\n").kind, ReplyKind::Nil);
        assert_eq!(whole(b"_\r\n").kind, ReplyKind::Nil);
        assert_eq!(whole(b",3.14\r\n").kind, ReplyKind::Scalar);
        assert_eq!(whole(b"#t\r\n").kind, ReplyKind::Scalar);
    }

    #[test]
    fn error_reply_payload_is_message() {
        let buf = b"-WRONGTYPE Operation against a key\r\n";
        let r = whole(buf);
        assert!(r.is_error());
        assert_eq!(&buf[r.payload], b"WRONGTYPE Operation against a key");
        let blob = b"!9\r\nERR oops!\r\n";
        let r = whole(blob);
        assert!(r.is_error());
        assert_eq!(&blob[r.payload], b"ERR oops!");
    }

    #[test]
    fn bulk_with_crlf_inside_payload() {
        let buf = b"$4\r\na\r\nb\r\n";
        let r = whole(buf);
        assert_eq!(r.kind, ReplyKind::Bulk);
        assert_eq!(&buf[r.payload], b"a\r\nb");
        assert_eq!(whole(b"$0\r\n\r\n").payload.len(), 0);
    }

    #[test]
    fn nested_aggregates() {
        let buf = b"*3\r\n$1\r\na\r\n*2\r\n:1\r\n:2\r\n%1\r\n+k\r\n$1\r\nv\r\n";
        let r = whole(buf);
        assert_eq!(r.kind, ReplyKind::Array(3));
        let hello = b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n";
        assert_eq!(whole(hello).kind, ReplyKind::Map(2));
        assert_eq!(whole(b">2\r\n+a\r\n+b\r\n").kind, ReplyKind::Push(2));
        assert_eq!(whole(b"*0\r\n").kind, ReplyKind::Array(0));
    }

    #[test]
    fn attribute_is_skipped_and_the_reply_after_it_returned() {
        let buf = b"|1\r\n+ttl\r\n:3600\r\n:7\r\n";
        assert_eq!(whole(buf).kind, ReplyKind::Integer(7));
    }

    #[test]
    fn every_proper_prefix_is_incomplete() {
        let buf: &[u8] = b"*2\r\n$3\r\nfoo\r\n%1\r\n+a\r\n$-1\r\n";
        for cut in 0..buf.len() {
            assert_eq!(scan(&buf[..cut]).unwrap(), None, "prefix of {cut} bytes");
        }
        assert!(scan(buf).unwrap().is_some());
    }

    #[test]
    fn pipelined_replies_scan_one_at_a_time() {
        let buf = b"+OK\r\n$2\r\nhi\r\n:5\r\n";
        let (a, n1) = scan(buf).unwrap().unwrap();
        let (b, n2) = scan(&buf[n1..]).unwrap().unwrap();
        let (c, n3) = scan(&buf[n1 + n2..]).unwrap().unwrap();
        assert_eq!(a.kind, ReplyKind::Status);
        assert_eq!(&buf[n1..][b.clone().payload], b"hi");
        assert_eq!(b.shifted(n1).payload, n1 + 4..n1 + 6);
        assert_eq!(c.kind, ReplyKind::Integer(5));
        assert_eq!(n1 + n2 + n3, buf.len());
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert_eq!(scan(b"?x\r\n"), Err(ProtocolError::UnknownType(b'?')));
        assert_eq!(scan(b":12a\r\n"), Err(ProtocolError::BadNumber));
        assert_eq!(scan(b":\r\n"), Err(ProtocolError::BadNumber));
        assert_eq!(scan(b"$-2\r\n"), Err(ProtocolError::BadNumber));
        assert_eq!(scan(b"$1\r\nab\r\n"), Err(ProtocolError::MissingCrlf));
        assert_eq!(
            scan(b":99999999999999999999\r\n"),
            Err(ProtocolError::BadNumber)
        );
        let deep: Vec<u8> = b"*1\r\n".repeat(MAX_DEPTH + 2);
        assert_eq!(scan(&deep), Err(ProtocolError::TooDeep));
    }
}
