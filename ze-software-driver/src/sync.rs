//! Blocking primitives: the poison-tolerant lock, Level Zero timeouts, and the
//! signalled state behind events and fences.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How often a worker blocked on an event checks whether it must quit.
const STOP_POLL_NS: u64 = 10_000_000;

/// Locks `mutex` even if a panic poisoned it: panics are caught at the API
/// boundary, and no critical section leaves its data half-updated.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `changed` while `pending` holds, for at most `timeout_ns` with
/// Level Zero's meaning: 0 only looks, `u64::MAX` waits forever. Returns the
/// guard and whether `pending` stopped holding.
pub fn wait_while<'a, T>(
    changed: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout_ns: u64,
    mut pending: impl FnMut(&mut T) -> bool,
) -> (MutexGuard<'a, T>, bool) {
    let mut guard = if timeout_ns == u64::MAX {
        changed.wait_while(guard, &mut pending).unwrap_or_else(PoisonError::into_inner)
    } else {
        changed
            .wait_timeout_while(guard, Duration::from_nanos(timeout_ns), &mut pending)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    };
    let done = !pending(&mut guard);
    (guard, done)
}

/// A signalled or not signalled state that host threads and workers wait on.
pub struct Flag {
    signalled: Mutex<bool>,
    changed: Condvar,
}

impl Flag {
    pub fn new(signalled: bool) -> Self {
        Self { signalled: Mutex::new(signalled), changed: Condvar::new() }
    }

    pub fn set(&self, signalled: bool) {
        *lock(&self.signalled) = signalled;
        self.changed.notify_all();
    }

    pub fn is_set(&self) -> bool {
        *lock(&self.signalled)
    }

    /// Waits as a host thread does, with a Level Zero timeout in nanoseconds.
    /// Returns whether the flag is set.
    pub fn wait(&self, timeout_ns: u64) -> bool {
        wait_while(&self.changed, lock(&self.signalled), timeout_ns, |signalled| !*signalled).1
    }

    /// Waits as a worker does: until the flag is set (true) or `stop` asks the
    /// worker to quit (false), so that a wait nobody will satisfy cannot keep
    /// the library from unloading.
    pub fn wait_unless_stopped(&self, stop: &AtomicBool) -> bool {
        loop {
            if self.wait(STOP_POLL_NS) {
                return true;
            }
            if stop.load(Ordering::Acquire) {
                return false;
            }
        }
    }
}
