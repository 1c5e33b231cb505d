//! Event pools and events: signalled from the host or by commands, waited on
//! by the host and by commands.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use level_zero_sys::*;

use crate::api::{check_flags, entry, ready, ZeResult};
use crate::context::{Context, CONTEXTS};
use crate::device;
use crate::ffi::{handles, input, output};
use crate::knobs::knobs;
use crate::registry::{Owned, Registry};
use crate::sync::Flag;

const POOL_FLAGS: u32 = ZE_EVENT_POOL_FLAG_HOST_VISIBLE | ZE_EVENT_POOL_FLAG_IPC | ZE_EVENT_POOL_FLAG_KERNEL_TIMESTAMP;
const SCOPE_FLAGS: u32 = ZE_EVENT_SCOPE_FLAG_SUBDEVICE | ZE_EVENT_SCOPE_FLAG_DEVICE | ZE_EVENT_SCOPE_FLAG_HOST;

pub struct EventPool {
    context: Arc<Context>,
    count: u32,
}

pub struct Event {
    pool: Arc<EventPool>,
    index: u32,
    signalled: Flag,
}

pub static EVENT_POOLS: Registry<EventPool> = Registry::new("event pool");
pub static EVENTS: Registry<Event> = Registry::new("event");

impl Owned for EventPool {
    fn context(&self) -> &Arc<Context> {
        &self.context
    }

    fn describe(&self) -> String {
        format!(" ({} events)", self.count)
    }
}

impl Owned for Event {
    fn context(&self) -> &Arc<Context> {
        &self.pool.context
    }

    fn describe(&self) -> String {
        format!(" (index {} of event pool {:p})", self.index, Arc::as_ptr(&self.pool))
    }
}

impl Event {
    pub fn signal(&self) {
        self.signalled.set(true);
    }

    pub fn reset(&self) {
        self.signalled.set(false);
    }

    /// A worker's wait; false if the worker must quit first.
    pub fn wait_unless_stopped(&self, stop: &AtomicBool) -> bool {
        self.signalled.wait_unless_stopped(stop)
    }
}

/// The optional event a command signals.
pub fn lookup_optional(event: ze_event_handle_t) -> ZeResult<Option<Arc<Event>>> {
    if event.is_null() {
        Ok(None)
    } else {
        EVENTS.get(event).map(Some)
    }
}

/// The events a command waits on; a null array with a non-zero count is
/// `ZE_RESULT_ERROR_INVALID_SIZE`.
///
/// # Safety
/// `events` is null or valid for reads of `count` handles.
pub unsafe fn lookup_waits(count: u32, events: *mut ze_event_handle_t) -> ZeResult<Vec<Arc<Event>>> {
    if events.is_null() && count > 0 {
        return Err(ZE_RESULT_ERROR_INVALID_SIZE);
    }
    // SAFETY: forwarded from this function's contract.
    unsafe { handles(events, count) }.iter().map(|&event| EVENTS.get(event)).collect()
}

pub unsafe extern "C" fn pool_create(
    context: ze_context_handle_t,
    desc: *const ze_event_pool_desc_t,
    device_count: u32,
    devices: *mut ze_device_handle_t,
    pool: *mut ze_event_pool_handle_t,
) -> ze_result_t {
    entry("zeEventPoolCreate", || {
        let context = CONTEXTS.get(context)?;
        // SAFETY: application pointers, valid per the API contract.
        let (desc, pool) = unsafe { (input(desc)?, output(pool)?) };
        check_flags(desc.flags, POOL_FLAGS)?;
        if desc.count == 0 || (devices.is_null() && device_count > 0) {
            return Err(ZE_RESULT_ERROR_INVALID_SIZE);
        }
        // SAFETY: a non-null device array holds `device_count` handles (API contract).
        for &handle in unsafe { handles(devices, device_count) } {
            device::lookup(handle)?;
        }
        if knobs().fail_event_pool_create.fails_now() {
            return Err(ZE_RESULT_ERROR_OUT_OF_HOST_MEMORY);
        }
        *pool = EVENT_POOLS.insert(EventPool { context, count: desc.count });
        Ok(())
    })
}

/// Events still alive keep the pool's state alive; the pool handle is gone.
pub unsafe extern "C" fn pool_destroy(pool: ze_event_pool_handle_t) -> ze_result_t {
    entry("zeEventPoolDestroy", || EVENT_POOLS.remove(pool).map(drop))
}

pub unsafe extern "C" fn create(
    pool: ze_event_pool_handle_t,
    desc: *const ze_event_desc_t,
    event: *mut ze_event_handle_t,
) -> ze_result_t {
    entry("zeEventCreate", || {
        let pool = EVENT_POOLS.get(pool)?;
        // SAFETY: application pointers, valid per the API contract.
        let (desc, event) = unsafe { (input(desc)?, output(event)?) };
        check_flags(desc.signal, SCOPE_FLAGS)?;
        check_flags(desc.wait, SCOPE_FLAGS)?;
        if desc.index >= pool.count {
            return Err(ZE_RESULT_ERROR_INVALID_ARGUMENT);
        }
        *event = EVENTS.insert(Event { pool, index: desc.index, signalled: Flag::new(false) });
        Ok(())
    })
}

/// Commands that still refer to the event keep its state alive.
pub unsafe extern "C" fn destroy(event: ze_event_handle_t) -> ze_result_t {
    entry("zeEventDestroy", || EVENTS.remove(event).map(drop))
}

pub unsafe extern "C" fn host_signal(event: ze_event_handle_t) -> ze_result_t {
    entry("zeEventHostSignal", || EVENTS.get(event).map(|event| event.signal()))
}

pub unsafe extern "C" fn host_reset(event: ze_event_handle_t) -> ze_result_t {
    entry("zeEventHostReset", || EVENTS.get(event).map(|event| event.reset()))
}

pub unsafe extern "C" fn host_synchronize(event: ze_event_handle_t, timeout_ns: u64) -> ze_result_t {
    entry("zeEventHostSynchronize", || ready(EVENTS.get(event)?.signalled.wait(timeout_ns)))
}

pub unsafe extern "C" fn query_status(event: ze_event_handle_t) -> ze_result_t {
    entry("zeEventQueryStatus", || ready(EVENTS.get(event)?.signalled.is_set()))
}

/// Commands here run no kernels, so there are no kernel timestamps to give.
pub unsafe extern "C" fn query_kernel_timestamp(
    event: ze_event_handle_t,
    timestamp: *mut ze_kernel_timestamp_result_t,
) -> ze_result_t {
    entry("zeEventQueryKernelTimestamp", || {
        EVENTS.get(event)?;
        if timestamp.is_null() {
            return Err(ZE_RESULT_ERROR_INVALID_NULL_POINTER);
        }
        Err(ZE_RESULT_ERROR_UNSUPPORTED_FEATURE)
    })
}
