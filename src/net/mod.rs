//! The event-driven data plane: non-blocking connections that a few I/O threads drive by
//! readiness (mio: epoll), many per thread.
//!
//! - [`stream`]: a non-blocking byte stream, plain TCP or rustls over TCP.
//! - [`conn`]: one connection's reused write buffer (with the unsent tail of a partial write)
//!   and read buffer, scanned in place for replies.
//! - [`link`]: the one connection lifecycle every worker kind goes through: resolve,
//!   non-blocking connect, TLS, HELLO/AUTH/SELECT/CLIENT SETNAME (and ROLE in Sentinel mode)
//!   pipelined as one write, ready. Its deadline and the reconnect backoff are the caller's
//!   timers.
//! - [`timers`]: a thread's timer queue and the timerfd that wakes its poll to the
//!   microsecond (epoll's own timeout has millisecond steps).
//!
//! Not here: what is sent and how replies are recorded (the runner's workers do that), and
//! the control plane (INFO, topology, sentinels: the `control` and `client` modules).

pub mod conn;
pub mod link;
pub mod stream;
pub mod timers;

pub use conn::Conn;
pub use link::{Link, Progress};
pub use stream::NetStream;
pub use timers::Timers;
