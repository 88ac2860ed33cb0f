//! A thread's timers: a min-heap of (when, whom) and a timerfd registered with the poll, so
//! the loop wakes for the earliest timer to the microsecond, or for readiness, whichever comes
//! first. epoll's own timeout counts in whole milliseconds, too coarse for open-loop sends.
//!
//! Entries are never removed early: an owner keeps the time it expects, and a popped entry
//! whose time its owner no longer expects is stale and skipped (see [`Timers::pop_due`]).
//! Each owner keeps at most one live entry, so the heap stays the size of the owners.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

/// The timer queue of one event loop.
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
    fd: OwnedFd,
    /// What the timerfd is set to, if anything.
    armed: Option<Instant>,
}

impl Timers {
    /// A queue whose timerfd is registered under `token`.
    pub fn new(registry: &Registry, token: Token, owners: usize) -> io::Result<Timers> {
        // SAFETY: timerfd_create takes plain flags and returns a new descriptor or -1.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we own from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(Timers {
            heap: BinaryHeap::with_capacity(owners * 2 + 16),
            fd,
            armed: None,
        })
    }

    /// Wakes `owner` at `at`.
    #[inline]
    pub fn add(&mut self, at: Instant, owner: usize) {
        self.heap.push(Reverse((at, owner)));
    }

    /// The next entry due at `now`, if any.
    #[inline]
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, usize)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Sets the timerfd to the earliest entry (a syscall only when that changed), so the poll
    /// wakes for it however long the poll itself may wait.
    pub fn arm(&mut self, now: Instant) {
        let next = self.heap.peek().map(|Reverse((at, _))| *at);
        if next != self.armed {
            if let Some(at) = next {
                let after = at
                    .saturating_duration_since(now)
                    .max(Duration::from_nanos(1));
                self.set(after);
            } else {
                self.set(Duration::ZERO);
            }
            self.armed = next;
        }
    }

    /// The timerfd fired: reads it so it can fire again.
    pub fn fired(&mut self) {
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a local buffer from our own descriptor.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        self.armed = None;
    }

    /// `after` zero disarms.
    fn set(&self, after: Duration) {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: a valid descriptor and a fully initialised itimerspec.
        unsafe {
            libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut());
        }
    }
}
