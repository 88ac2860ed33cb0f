//! The run's stop signal, passed in by the caller (never a global).
//!
//! `main` wires Ctrl-C and SIGTERM to it: the first request stops issuing commands and lets
//! in-flight replies arrive; a second one aborts the wait (the report is still written).
//! Tests trigger it directly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// A cloneable stop/abort signal shared by the runner, its workers and a signal handler.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    requests: AtomicU32,
    stop: AtomicBool,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop; the second call also asks it to stop waiting for in-flight replies.
    /// Returns how many requests there have been, this one included.
    pub fn request(&self) -> u32 {
        self.inner.stop.store(true, Ordering::Release);
        self.inner.requests.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Stop issuing new commands (cheap enough to call once per batch).
    #[inline]
    pub fn is_stopping(&self) -> bool {
        self.inner.stop.load(Ordering::Relaxed)
    }

    /// Stop waiting for anything and write the report now.
    pub fn is_aborted(&self) -> bool {
        self.inner.requests.load(Ordering::Acquire) >= 2
    }
}
