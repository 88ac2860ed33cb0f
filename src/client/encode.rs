//! RESP request encoding into a reused buffer.
//!
//! Each command's array header and name are constant bytes ([`header`]); per command only the
//! key digits and the value bytes are appended. Nothing here allocates once the buffer has grown
//! to its working size.

use crate::command::Command;

/// The constant start of a command's request: `*<argc>\r\n$<len>\r\n<NAME>\r\n`.
pub fn header(command: Command) -> &'static [u8] {
    match command {
        Command::Set => b"*3\r\n$3\r\nSET\r\n",
        Command::Get => b"*2\r\n$3\r\nGET\r\n",
        Command::Del => b"*2\r\n$3\r\nDEL\r\n",
        Command::Incr => b"*2\r\n$4\r\nINCR\r\n",
    }
}

/// Appends `*<n>\r\n`.
#[inline]
pub fn array_header(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(digits.format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends one bulk string argument.
#[inline]
pub fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'$');
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(digits.format(bytes.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// Appends a key argument `<prefix><n>` as a bulk string (`prefix` includes its separator).
#[inline]
pub fn bulk_key(out: &mut Vec<u8>, prefix: &[u8], n: u64) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n).as_bytes();
    out.push(b'$');
    let mut len = itoa::Buffer::new();
    out.extend_from_slice(len.format(prefix.len() + digits.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(prefix);
    out.extend_from_slice(digits);
    out.extend_from_slice(b"\r\n");
}

/// Encodes a whole command from string arguments (handshake and setup only, not the hot path).
pub fn command_args(out: &mut Vec<u8>, args: &[&[u8]]) {
    array_header(out, args.len());
    for arg in args {
        bulk(out, arg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_with_key_and_value_is_valid_resp() {
        let mut out = Vec::new();
        out.extend_from_slice(header(Command::Set));
        bulk_key(&mut out, b"test_key:", 42);
        bulk(&mut out, b"xyz");
        assert_eq!(
            out,
            b"*3\r\n$3\r\nSET\r\n$11\r\ntest_key:42\r\n$3\r\nxyz\r\n".to_vec()
        );
    }

    #[test]
    fn headers_match_generic_encoding() {
        for c in Command::ALL {
            let argc = match c {
                Command::Set => 3,
                _ => 2,
            };
            let mut expected = Vec::new();
            array_header(&mut expected, argc);
            bulk(&mut expected, c.name().as_bytes());
            assert_eq!(header(c), expected.as_slice(), "{c}");
        }
    }

    #[test]
    fn command_args_encodes_each_argument() {
        let mut out = Vec::new();
        command_args(&mut out, &[b"SELECT", b"2"]);
        assert_eq!(out, b"*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n".to_vec());
    }
}
