//! What happens around `fork` and process exit.
//!
//! A child forked after the allocator started cannot use it: Level Zero does
//! not survive `fork`, and the memory is the parent's. Every call there fails
//! with `XPU_HOST_ERROR_FORKED`, and freeing does nothing (so the child never
//! gives the parent's memory back to a driver). The child takes none of the
//! allocator's locks, so a lock some parent thread held at fork time cannot
//! deadlock it.
//!
//! At exit, once this library's finaliser has run, the Level Zero loader may be
//! gone: the allocator makes no more Level Zero calls (the finaliser waits, up
//! to a second, for threads in the middle of some), frees do nothing and the
//! memory goes back with the process.
//!
//! The background reclaimer (`pinned_use_background_threads`) is stopped and
//! joined at exit and before `fork`, and started again in the parent after
//! it: a child has no threads but the forking one.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use super::error::{xpu_host_result, Failure};
use super::instance::{self, Allocator};
use crate::caching::sync::lock;
use crate::caching::Reclaimer;

/// Zero while the allocator may be used, else what stops it. Calls that find
/// the allocator started (instance.rs) need not read it: it is withdrawn then.
static UNUSABLE: AtomicU8 = AtomicU8::new(0);
const FORKED: u8 = 1;
const EXITING: u8 = 2;

/// Arms the fork handler; called when the allocator starts.
pub(crate) fn watch_fork() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a plain extern "C" function taking no arguments.
        unsafe { libc::pthread_atfork(None, None, Some(in_forked_child)) };
    });
}

/// `Err` in a forked child or after the finaliser: the allocator must not be touched.
#[inline]
pub(crate) fn check_usable() -> Result<(), Failure> {
    if UNUSABLE.load(Ordering::Relaxed) != 0 {
        return Err(unusable());
    }
    Ok(())
}

#[cold]
fn unusable() -> Failure {
    if UNUSABLE.load(Ordering::Relaxed) & FORKED != 0 {
        return Failure::new(
            xpu_host_result::XPU_HOST_ERROR_FORKED,
            "this process was forked after the allocator started; Level Zero does not survive fork, \
             so the child cannot allocate pinned memory (start worker processes with spawn, or before \
             the first pinned allocation)",
        );
    }
    Failure::new(xpu_host_result::XPU_HOST_ERROR_EXITING, "the process is exiting")
}

extern "C" fn in_forked_child() {
    UNUSABLE.fetch_or(FORKED, Ordering::Relaxed);
    instance::withdraw();
}

extern "C" fn at_unload() {
    UNUSABLE.fetch_or(EXITING, Ordering::Relaxed);
    instance::withdraw();
    // Threads already inside the allocator may still be calling Level Zero;
    // the loader is finalised after this library, so let them leave first.
    crate::level_zero::close_gate(Duration::from_secs(1));
}

/// Runs when the library is finalised (at exit, or at dlclose).
#[used]
#[link_section = ".fini_array"]
static FINALISER: extern "C" fn() = at_unload;

static RECLAIMER: Mutex<Option<Reclaimer>> = Mutex::new(None);

/// Starts the reclaimer, and makes sure it is stopped and joined at exit and
/// around `fork`.
pub(crate) fn start_reclaimer(allocator: &Arc<Allocator>) -> Result<(), Failure> {
    static HANDLERS: Once = Once::new();
    HANDLERS.call_once(|| {
        // SAFETY: registering plain extern "C" functions that take no arguments.
        unsafe {
            libc::atexit(stop_reclaimer);
            libc::pthread_atfork(Some(stop_reclaimer), Some(restart_reclaimer), None);
        }
    });
    let reclaimer = allocator.start_reclaimer().map_err(|error| {
        Failure::new(xpu_host_result::XPU_HOST_ERROR_INTERNAL, format!("cannot start the reclaimer thread: {error}"))
    })?;
    *lock(&RECLAIMER) = Some(reclaimer);
    Ok(())
}

extern "C" fn stop_reclaimer() {
    // Taken out of the lock before joining: the thread never takes this lock.
    let reclaimer = lock(&RECLAIMER).take();
    drop(reclaimer);
}

extern "C" fn restart_reclaimer() {
    if let Some(allocator) = instance::instance() {
        if allocator.settings().background_reclaimer && lock(&RECLAIMER).is_none() {
            // Without the thread the allocation path polls inline: nothing is lost.
            let _ = start_reclaimer(allocator);
        }
    }
}
