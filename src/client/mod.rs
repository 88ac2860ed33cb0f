//! Blocking RESP connections and what the data plane shares with the control plane.
//!
//! - [`conn`]: a blocking connection (a reused write buffer, replies scanned in place), its
//!   set-up and the handshake encoding the event loop's lifecycle reuses. Cluster workers
//!   (still one OS thread each), prefill and the Sentinel watcher use it.
//! - [`cluster`]: the slot map (its watcher) and the blocking cluster pipeline.
//! - [`sentinel`]: where the master is, and the run's master watcher.
//! - [`tls`]: the run's rustls configuration and TLS sessions; [`backoff`]: reconnect backoff.
//!
//! Not here: the event-driven data plane (the `net` and `runner` modules, which use this one),
//! RESP itself ([`crate::proto`]), INFO and other control-plane queries ([`crate::control`]).

pub mod backoff;
pub mod cluster;
pub mod conn;
pub mod sentinel;
pub mod tls;

pub use conn::{ConnError, ConnectError, RespConnection, connect, connect_to};
pub use sentinel::target;
pub use tls::{DataStream, TlsConfig};
