//! Events this library records on its own streams, created in pools and recycled
//! with `zeEventHostReset` instead of being created and destroyed per use. An
//! event may have several holders (blocks waiting on it, the stream that may
//! hand it out again); it goes back to the pool when the last one drops it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use level_zero_sys as ze;

use super::context::Context;
use super::result::{check, LevelZeroError};
use crate::caching::sync::lock;

const EVENTS_PER_POOL: u32 = 256;

pub struct EventPool {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    pools: Vec<ze::ze_event_pool_handle_t>,
    free: Vec<ze::ze_event_handle_t>,
}

// SAFETY: the handles inside are only used under the mutex (zeEventCreate is not
// thread-safe per pool) or passed by value to thread-safe calls.
unsafe impl Send for EventPool {}
// SAFETY: as above.
unsafe impl Sync for EventPool {}

/// An event from the pool, shared by its holders.
pub struct PooledEvent {
    handle: ze::ze_event_handle_t,
    pool: Arc<EventPool>,
    /// A query saw it signalled. It stays signalled until the pool resets it,
    /// after the last holder let go, so its other holders (frees that shared
    /// the barrier) need not ask Level Zero again.
    complete: AtomicBool,
}

// SAFETY: querying and host-resetting an event are thread-safe (docs/LEVEL_ZERO.md);
// the handle is never appended to a list outside that list's lock.
unsafe impl Send for PooledEvent {}
// SAFETY: as above.
unsafe impl Sync for PooledEvent {}

impl PooledEvent {
    pub fn handle(&self) -> ze::ze_event_handle_t {
        self.handle
    }

    pub fn seen_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    pub fn set_seen_complete(&self) {
        self.complete.store(true, Ordering::Release);
    }
}

impl Drop for PooledEvent {
    fn drop(&mut self) {
        self.pool.give_back(self.handle);
    }
}

impl EventPool {
    pub fn new() -> EventPool {
        EventPool { state: Mutex::new(State::default()) }
    }

    /// An unsignalled event, from the free list or from a new pool.
    pub fn acquire(self: &Arc<Self>, context: &Context) -> Result<Arc<PooledEvent>, LevelZeroError> {
        let handle = self.take(context)?;
        Ok(Arc::new(PooledEvent { handle, pool: self.clone(), complete: AtomicBool::new(false) }))
    }

    fn take(&self, context: &Context) -> Result<ze::ze_event_handle_t, LevelZeroError> {
        let mut state = lock(&self.state);
        if let Some(event) = state.free.pop() {
            return Ok(event);
        }
        let pool = create_pool(context)?;
        state.pools.push(pool);
        for index in 0..EVENTS_PER_POOL {
            let desc = ze::ze_event_desc_t {
                stype: ze::ZE_STRUCTURE_TYPE_EVENT_DESC,
                pNext: std::ptr::null(),
                index,
                signal: ze::ZE_EVENT_SCOPE_FLAG_HOST,
                wait: ze::ZE_EVENT_SCOPE_FLAG_HOST,
            };
            let mut event = std::ptr::null_mut();
            // SAFETY: the pool is live and only this thread creates in it (the lock is held).
            check("zeEventCreate", unsafe { ze::zeEventCreate(pool, &desc, &mut event) })?;
            state.free.push(event);
        }
        Ok(state.free.pop().expect("a new pool has events"))
    }

    /// Resets a completed event and keeps it for reuse. One that has not
    /// completed (abandoned when a free failed, or never submitted) could still be
    /// signalled by the device after a reset, so it leaves circulation instead,
    /// as does one that cannot be reset; its pool frees it.
    fn give_back(&self, event: ze::ze_event_handle_t) {
        let Some(_pass) = super::gate::enter() else { return };
        // SAFETY: the event is live; query and host reset are thread-safe, and no
        // holder will poll it any more.
        let reusable = unsafe {
            ze::zeEventQueryStatus(event) == ze::ZE_RESULT_SUCCESS
                && ze::zeEventHostReset(event) == ze::ZE_RESULT_SUCCESS
        };
        if reusable {
            lock(&self.state).free.push(event);
        }
    }
}

impl Drop for EventPool {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        for event in state.free.drain(..) {
            // SAFETY: free events are not in use by any command list.
            unsafe { ze::zeEventDestroy(event) };
        }
        for pool in state.pools.drain(..) {
            // SAFETY: the pool's events were destroyed above.
            unsafe { ze::zeEventPoolDestroy(pool) };
        }
    }
}

fn create_pool(context: &Context) -> Result<ze::ze_event_pool_handle_t, LevelZeroError> {
    let desc = ze::ze_event_pool_desc_t {
        stype: ze::ZE_STRUCTURE_TYPE_EVENT_POOL_DESC,
        pNext: std::ptr::null(),
        flags: ze::ZE_EVENT_POOL_FLAG_HOST_VISIBLE,
        count: EVENTS_PER_POOL,
    };
    let mut pool = std::ptr::null_mut();
    // SAFETY: the context is live; zero devices means all devices of the context.
    check("zeEventPoolCreate", unsafe {
        ze::zeEventPoolCreate(context.handle(), &desc, 0, std::ptr::null_mut(), &mut pool)
    })?;
    Ok(pool)
}
