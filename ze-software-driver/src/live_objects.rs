//! The `zexSoftwareDriverGetLiveObjects` extension: process-wide counts of live
//! objects, so a test can check for leaks without waiting for the unload
//! report. It takes no handles: the loader does not unwrap handles passed to
//! extension functions when its intercept layer is on.

use level_zero_sys::*;

use crate::api::entry;
use crate::command_list::COMMAND_LISTS;
use crate::context::CONTEXTS;
use crate::event::{EVENTS, EVENT_POOLS};
use crate::fence::FENCES;
use crate::ffi::output;
use crate::memory;
use crate::queue::COMMAND_QUEUES;

pub const FUNCTION_NAME: &str = "zexSoftwareDriverGetLiveObjects";

/// `zex_software_driver_live_objects_t` of include/ze_software_driver.h.
#[repr(C)]
pub struct LiveObjects {
    pub allocations: u64,
    pub allocated_bytes: u64,
    pub event_pools: u64,
    pub events: u64,
    pub command_lists: u64,
    pub command_queues: u64,
    pub fences: u64,
    pub contexts: u64,
    /// Successful `zeMemAllocHost` calls since the driver was loaded.
    pub host_alloc_calls: u64,
    /// Successful frees of host allocations (`zeMemFree`, `zeMemFreeExt`).
    pub host_free_calls: u64,
}

pub unsafe extern "C" fn get(live: *mut LiveObjects) -> ze_result_t {
    entry(FUNCTION_NAME, || {
        // SAFETY: application pointer, valid per the extension's contract.
        let live = unsafe { output(live) }?;
        let memory = memory::statistics();
        *live = LiveObjects {
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
