//! The data plane: worker connections that speak RESP themselves.
//!
//! Requests are encoded into a reused per-connection buffer ([`encode`]) and written with one
//! write per batch; replies are scanned in place from a reused read buffer ([`resp`]). The
//! connection is generic over its byte stream; [`tls::DataStream`] is plain TCP or rustls. Connection
//! setup (HELLO/AUTH, SELECT, CLIENT SETNAME, timeouts, TCP_NODELAY) is done here too.
//! Not here: INFO, topology and other control-plane queries (see [`crate::control`]).

pub mod backoff;
pub mod cluster;
pub mod conn;
pub mod encode;
pub mod resp;
pub mod sentinel;
pub mod tls;

pub use conn::{ConnError, ConnectError, RespConnection, connect, connect_to};
pub use resp::{Reply, ReplyKind};
pub use sentinel::target;
pub use tls::{DataStream, TlsConfig};
