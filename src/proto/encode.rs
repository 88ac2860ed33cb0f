//! RESP request encoding into a reused buffer.
//!
//! A command's array header and name are encoded once by its workload ([`command_start`]); per
//! command only the key digits and argument bytes are appended. Nothing here allocates once the
//! buffer has grown to its working size.

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

/// The constant start of a command with `argc` arguments (name included), for workloads to
/// encode once and copy per command.
pub fn command_start(name: &str, argc: usize) -> Vec<u8> {
    let mut out = Vec::new();
    array_header(&mut out, argc);
    bulk(&mut out, name.as_bytes());
    out
}

/// Appends an integer argument as a bulk string.
#[inline]
pub fn bulk_int(out: &mut Vec<u8>, n: i64) {
    let mut digits = itoa::Buffer::new();
    bulk(out, digits.format(n).as_bytes());
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
        let mut out = command_start("SET", 3);
        bulk_key(&mut out, b"test_key:", 42);
        bulk(&mut out, b"xyz");
        bulk_int(&mut out, -7);
        assert_eq!(
            out,
            b"*3\r\n$3\r\nSET\r\n$11\r\ntest_key:42\r\n$3\r\nxyz\r\n$2\r\n-7\r\n".to_vec()
        );
    }

    #[test]
    fn command_args_encodes_each_argument() {
        let mut out = Vec::new();
        command_args(&mut out, &[b"SELECT", b"2"]);
        assert_eq!(out, b"*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n".to_vec());
    }
}
