//! The `zexSoftwareDriverGetLiveObjects` extension: process-wide counts of live
//! objects, so a test can check for leaks without waiting for the unload
//! report. It takes no handles: the loader does not unwrap handles passed to
//! extension functions when its intercept layer is on.

use level_zero_sys::software_driver::*;
use level_zero_sys::*;

use crate::api::entry;
use crate::command_list::COMMAND_LISTS;
use crate::context::CONTEXTS;
use crate::event::{EVENTS, EVENT_POOLS};
use crate::fence::FENCES;
use crate::ffi::output;
use crate::memory;
use crate::queue::COMMAND_QUEUES;

/// The name strict mode reports this entry point under.
const NAME: &str = match ZEX_SOFTWARE_DRIVER_GET_LIVE_OBJECTS_NAME.to_str() {
    Ok(name) => name,
    Err(_) => panic!("the header names the function in ASCII"),
};

// zeDriverGetExtensionFunctionAddress hands `get` out as `void *`; this keeps
// it to the header's signature.
const _: zex_pfnSoftwareDriverGetLiveObjects_t = Some(get);

pub unsafe extern "C" fn get(live: *mut zex_software_driver_live_objects_t) -> ze_result_t {
    entry(NAME, || {
        // SAFETY: application pointer, valid per the extension's contract.
        let live = unsafe { output(live) }?;
        let memory = memory::statistics();
        *live = zex_software_driver_live_objects_t {
            allocations: memory.allocations,
            allocated_bytes: memory.allocated_bytes,
            event_pools: EVENT_POOLS.len(),
            events: EVENTS.len(),
            command_lists: COMMAND_LISTS.len(),
            command_queues: COMMAND_QUEUES.len(),
            fences: FENCES.len(),
            contexts: CONTEXTS.len(),
            host_alloc_calls: memory.host_alloc_calls,
            host_free_calls: memory.host_free_calls,
        };
        Ok(())
    })
}
