//! Keeps Level Zero calls from running once the process has begun to unload.
//!
//! At exit the loader may free its tables after this library's finaliser has
//! run, while other threads are still inside the allocator. The finaliser
//! closes the gate and waits, for a bounded time, for the calls already through
//! it; every later call is refused instead of reaching a loader that is going.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static CLOSED: AtomicBool = AtomicBool::new(false);
static CALLS_INSIDE: AtomicUsize = AtomicUsize::new(0);

/// Permission for one section of Level Zero calls; held until dropped.
pub struct Pass(());

impl Drop for Pass {
    fn drop(&mut self) {
        CALLS_INSIDE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `None` once the gate is closed.
pub fn enter() -> Option<Pass> {
    // Counted before the check, so that `close` either sees this call or this
    // call sees the gate closed (both are sequentially consistent).
    CALLS_INSIDE.fetch_add(1, Ordering::SeqCst);
    let pass = Pass(());
    if CLOSED.load(Ordering::SeqCst) {
        return None;
    }
    Some(pass)
}

/// Closes the gate and waits up to `limit` for the calls inside to leave.
pub fn close(limit: Duration) {
    CLOSED.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + limit;
    while CALLS_INSIDE.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}
