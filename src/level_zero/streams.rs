//! Streams: where "this block is done" events are recorded.
//!
//! A host runtime that owns its streams' command lists (a SYCL runtime appends
//! to them under its own lock) records through [`StreamHooks`]. Without hooks
//! this library keeps one in-order immediate command list per stream, created
//! on first use, and appends to it under a lock of its own.

use std::sync::{Arc, Mutex};

use level_zero_sys as ze;

use super::context::Context;
use super::result::{check, LevelZeroError};
use crate::caching::{IntegerMap, StreamKey};

/// Recording through the host runtime, e.g. `queue.ext_oneapi_submit_barrier()`
/// whose native event is handed back to be polled with `zeEventQueryStatus`.
pub trait StreamHooks: Send + Sync {
    /// Records on `stream` an event that completes after all work submitted to it
    /// so far; returns the event to poll and a token for [`StreamHooks::release`].
    fn record(&self, stream: StreamKey) -> Result<(ze::ze_event_handle_t, usize), String>;
    /// The event is complete (or abandoned); the runtime may reuse or destroy it.
    fn release(&self, event: ze::ze_event_handle_t, token: usize);
}

struct CommandList(ze::ze_command_list_handle_t);

// SAFETY: a command list may be used from any thread as long as no two threads
// append at once; every use goes through the Mutex around it.
unsafe impl Send for CommandList {}

impl Drop for CommandList {
    fn drop(&mut self) {
        // SAFETY: the list is ours and nothing appends to it any more.
        unsafe { ze::zeCommandListDestroy(self.0) };
    }
}

pub struct OwnStreams {
    lists: Mutex<IntegerMap<StreamKey, Arc<Mutex<CommandList>>>>,
}

impl OwnStreams {
    pub fn new() -> OwnStreams {
        OwnStreams { lists: Mutex::new(IntegerMap::default()) }
    }

    /// Runs `submit` on the stream's command list with its lock held, creating
    /// the list on first use.
    pub fn with_list<T>(
        &self,
        context: &Context,
        stream: StreamKey,
        submit: impl FnOnce(ze::ze_command_list_handle_t) -> T,
    ) -> Result<T, LevelZeroError> {
        let list = {
            let mut lists = self.lists.lock().unwrap_or_else(|e| e.into_inner());
            match lists.get(&stream) {
                Some(list) => list.clone(),
                None => {
                    let list = Arc::new(Mutex::new(create_immediate_list(context, stream)?));
                    lists.insert(stream, list.clone());
                    list
                }
            }
        };
        let list = list.lock().unwrap_or_else(|e| e.into_inner());
        Ok(submit(list.0))
    }
}

fn create_immediate_list(context: &Context, stream: StreamKey) -> Result<CommandList, LevelZeroError> {
    let device = context.device(stream.device_index)?;
    let desc = ze::ze_command_queue_desc_t {
        stype: ze::ZE_STRUCTURE_TYPE_COMMAND_QUEUE_DESC,
        pNext: std::ptr::null(),
        ordinal: 0,
        index: 0,
        flags: 0,
        mode: ze::ZE_COMMAND_QUEUE_MODE_ASYNCHRONOUS,
        priority: ze::ZE_COMMAND_QUEUE_PRIORITY_NORMAL,
    };
    let mut list = std::ptr::null_mut();
    // SAFETY: context and device are live; desc and list are valid for the call.
    check("zeCommandListCreateImmediate", unsafe {
        ze::zeCommandListCreateImmediate(context.handle(), device, &desc, &mut list)
    })?;
    Ok(CommandList(list))
}
