//! The crate's one way to lock a mutex: poison is ignored. Panics are caught
//! at the C boundary, so a poisoned mutex belongs to a call that already
//! failed, and no critical section leaves its data half-updated when it
//! panics (they change their data last, or in steps each consistent).

#[cfg(loom)]
use loom::sync::{Mutex, MutexGuard};
use std::sync::PoisonError;
#[cfg(not(loom))]
use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, poisoned or not.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
