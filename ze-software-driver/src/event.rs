//! Event pools and events: signalled from the host or by commands, waited on
//! by the host and by commands.
//!
//! Regular events have one state, signalled and reset by the host and by
//! commands. Counter-based events (`ze_event_pool_counter_based_exp_desc_t`)
//! stand for the completion of the latest command submitted to signal them:
//! each such command gets a new completion ([`Event::arm`]), a command that
//! waits on the event waits for the completion current when it is submitted
//! (appended to an immediate list, or executed from a regular list), and the
//! host queries and waits on the current one. They start complete, may not be
//! signalled or reset by the host or reset by a command, and may be signalled
//! only from in-order lists of the kinds their pool names.

use std::sync::{Arc, Mutex};

use level_zero_sys::*;

use crate::api::{check_flags, entry, misuse, ready, unknown_stype, ZeResult};
use crate::context::{Context, CONTEXTS};
use crate::device;
use crate::ffi::{chain, handles, input, output, unchained};
use crate::knobs::knobs;
use crate::registry::{Owned, Registry};
use crate::sync::{lock, Flag};

const POOL_FLAGS: u32 = ZE_EVENT_POOL_FLAG_HOST_VISIBLE
    | ZE_EVENT_POOL_FLAG_IPC
    | ZE_EVENT_POOL_FLAG_KERNEL_TIMESTAMP
    | ZE_EVENT_POOL_FLAG_KERNEL_MAPPED_TIMESTAMP;
const SCOPE_FLAGS: u32 = ZE_EVENT_SCOPE_FLAG_SUBDEVICE | ZE_EVENT_SCOPE_FLAG_DEVICE | ZE_EVENT_SCOPE_FLAG_HOST;
const COUNTER_BASED_FLAGS: u32 =
    ZE_EVENT_POOL_COUNTER_BASED_EXP_FLAG_IMMEDIATE | ZE_EVENT_POOL_COUNTER_BASED_EXP_FLAG_NON_IMMEDIATE;

pub struct EventPool {
    context: Arc<Context>,
    count: u32,
    counter_based: Option<CounterBased>,
}

/// Which command lists may signal a pool's counter-based events.
#[derive(Clone, Copy)]
struct CounterBased {
    immediate: bool,
    regular: bool,
}

pub struct Event {
    pool: Arc<EventPool>,
    index: u32,
    /// A regular event's one state, or a counter-based event's current completion.
    state: Mutex<Arc<Flag>>,
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
    /// What the host queries and a command submitted now waits for.
    pub fn state(&self) -> Arc<Flag> {
        Arc::clone(&lock(&self.state))
    }

    /// What a command submitted now to signal the event sets: for a
    /// counter-based event, a new completion that replaces the current one.
    pub fn arm(&self) -> Arc<Flag> {
        let mut state = lock(&self.state);
        if self.is_counter_based() {
            *state = Arc::new(Flag::new(false));
        }
        Arc::clone(&state)
    }

    pub fn is_counter_based(&self) -> bool {
        self.pool.counter_based.is_some()
    }

    /// Checks that a command list may signal this event: any list for a
    /// regular event; an in-order list of a kind its pool allows for a
    /// counter-based one.
    pub fn check_signal_from(&self, immediate: bool, in_order: bool) -> ZeResult {
        let Some(counter_based) = self.pool.counter_based else {
            return Ok(());
        };
        if !in_order {
            misuse(format_args!("a counter-based event is signalled from a command list that is not in order"));
            return Err(ZE_RESULT_ERROR_INVALID_ARGUMENT);
        }
        if (immediate && !counter_based.immediate) || (!immediate && !counter_based.regular) {
            let kind = if immediate { "an immediate" } else { "a regular" };
            misuse(format_args!("{kind} command list signals a counter-based event whose pool is not for that kind"));
            return Err(ZE_RESULT_ERROR_INVALID_ARGUMENT);
        }
        Ok(())
    }

    /// Host signals and resets, and reset commands, are for regular events only.
    pub fn check_resettable(&self) -> ZeResult {
        if self.is_counter_based() {
            misuse(format_args!("a counter-based event is signalled or reset by the host, or reset by a command"));
            return Err(ZE_RESULT_ERROR_INVALID_ARGUMENT);
        }
        Ok(())
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
        let mut counter_based = None;
        // SAFETY: the chain of an application input, valid per the API contract.
        for (stype, extension) in unsafe { chain(desc.pNext) } {
            match stype {
                ZE_STRUCTURE_TYPE_COUNTER_BASED_EVENT_POOL_EXP_DESC => {
                    // SAFETY: this stype says the struct is a ze_event_pool_counter_based_exp_desc_t.
                    let flags = unsafe { &*extension.cast::<ze_event_pool_counter_based_exp_desc_t>() }.flags;
                    check_flags(flags, COUNTER_BASED_FLAGS)?;
                    // No flag is the spec's default: immediate lists only.
                    counter_based = Some(CounterBased {
                        immediate: flags == 0 || flags & ZE_EVENT_POOL_COUNTER_BASED_EXP_FLAG_IMMEDIATE != 0,
                        regular: flags & ZE_EVENT_POOL_COUNTER_BASED_EXP_FLAG_NON_IMMEDIATE != 0,
                    });
                }
                other => return Err(unknown_stype(other)),
            }
        }
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
        *pool = EVENT_POOLS.insert(EventPool { context, count: desc.count, counter_based });
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
        // SAFETY: the chain of an application input, valid per the API contract.
        unsafe { unchained(desc.pNext) }?;
        check_flags(desc.signal, SCOPE_FLAGS)?;
        check_flags(desc.wait, SCOPE_FLAGS)?;
        if desc.index >= pool.count {
            return Err(ZE_RESULT_ERROR_INVALID_ARGUMENT);
        }
        // A regular event starts unsignalled, a counter-based one complete.
        let state = Arc::new(Flag::new(pool.counter_based.is_some()));
        *event = EVENTS.insert(Event { pool, index: desc.index, state: Mutex::new(state) });
        Ok(())
    })
}

/// Commands that still refer to the event keep its state alive.
pub unsafe extern "C" fn destroy(event: ze_event_handle_t) -> ze_result_t {
    entry("zeEventDestroy", || EVENTS.remove(event).map(drop))
}

/// Sets a regular event's state from the host.
fn host_set(event: ze_event_handle_t, signalled: bool) -> ZeResult {
    let event = EVENTS.get(event)?;
    event.check_resettable()?;
    event.state().set(signalled);
    Ok(())
}

pub unsafe extern "C" fn host_signal(event: ze_event_handle_t) -> ze_result_t {
    entry("zeEventHostSignal", || host_set(event, true))
}

pub unsafe extern "C" fn host_reset(event: ze_event_handle_t) -> ze_result_t {
    entry("zeEventHostReset", || host_set(event, false))
}

pub unsafe extern "C" fn host_synchronize(event: ze_event_handle_t, timeout_ns: u64) -> ze_result_t {
    entry("zeEventHostSynchronize", || ready(EVENTS.get(event)?.state().wait(timeout_ns)))
}

pub unsafe extern "C" fn query_status(event: ze_event_handle_t) -> ze_result_t {
    entry("zeEventQueryStatus", || ready(EVENTS.get(event)?.state().is_set()))
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
