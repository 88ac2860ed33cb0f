//! RESP without I/O: encoding commands into a caller's buffer ([`encode`]) and scanning
//! replies in place ([`resp`]: what kind, where the payload is, where the reply ends), plus
//! the read buffer connections scan from ([`resp::ReadBuf`]).
//!
//! Nothing here allocates per command or touches a socket. Not here: connections (see
//! the `net` and `client` modules), what a reply means to a workload.

pub mod encode;
pub mod resp;

pub use resp::{Reply, ReplyKind};
