//! Streams: where "this block is done" events are recorded.
//!
//! A host runtime that owns its streams' command lists (a SYCL runtime appends
//! to them under its own lock) records through [`StreamHooks`]. Without hooks
//! this library keeps one immediate command list per stream, created on first
//! use, and appends to it under a lock of its own; a record is a barrier, which
//! waits for everything appended before it whatever the list's ordering. Frees
//! recorded with nothing appended in between share one barrier's event.

use std::sync::{Arc, Mutex};

use level_zero_sys as ze;

use super::context::Context;
use super::event_pool::{EventPool, PooledEvent};
use super::result::{check, LevelZeroError};
use crate::caching::sync::lock;
use crate::caching::{IntegerMap, StreamKey};

/// Recording through the host runtime, e.g. `queue.ext_oneapi_submit_barrier()`
/// whose native event is handed back to be polled with `zeEventQueryStatus`.
pub trait StreamHooks: Send + Sync {
    /// Records on `stream` an event that completes after all work submitted to it
    /// so far; returns the event to poll and a token for
    /// [`StreamHooks::release`], or `None` if the stream has no work pending.
    fn record(&self, stream: StreamKey) -> Result<Option<(ze::ze_event_handle_t, usize)>, String>;
    /// The event is complete (or abandoned); the runtime may reuse or destroy it.
    fn release(&self, event: ze::ze_event_handle_t, token: usize);
}

struct CommandList {
    handle: ze::ze_command_list_handle_t,
    /// The event of the barrier appended last, while nothing has been appended
    /// after it: a record now would complete with it, so it is shared instead.
    last_barrier: Option<Arc<PooledEvent>>,
}

// SAFETY: a command list may be used from any thread as long as no two threads
// append at once; every use goes through the Mutex around it.
unsafe impl Send for CommandList {}

impl Drop for CommandList {
    fn drop(&mut self) {
        // SAFETY: the list is ours and nothing appends to it any more.
        unsafe { ze::zeCommandListDestroy(self.handle) };
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
        let list = self.list(context, stream)?;
        let mut list = lock(&list);
        // Work may follow the last barrier now: the next record needs a barrier of its own.
        list.last_barrier = None;
        Ok(submit(list.handle))
    }

    /// An event that completes once all work appended to the stream so far has:
    /// a new barrier's, or the last barrier's if nothing was appended since.
    pub fn record_barrier(
        &self,
        context: &Context,
        stream: StreamKey,
        events: &Arc<EventPool>,
    ) -> Result<Arc<PooledEvent>, LevelZeroError> {
        let list = self.list(context, stream)?;
        let mut list = lock(&list);
        if let Some(event) = &list.last_barrier {
            return Ok(event.clone());
        }
        let event = events.acquire(context)?;
        // SAFETY: the list is live and locked for this thread; the event is live
        // and signalled by nothing else.
        check("zeCommandListAppendBarrier", unsafe {
            ze::zeCommandListAppendBarrier(list.handle, event.handle(), 0, std::ptr::null_mut())
        })?;
        list.last_barrier = Some(event.clone());
        Ok(event)
    }

    fn list(&self, context: &Context, stream: StreamKey) -> Result<Arc<Mutex<CommandList>>, LevelZeroError> {
        let mut lists = lock(&self.lists);
        if let Some(list) = lists.get(&stream) {
            return Ok(list.clone());
        }
        let list = Arc::new(Mutex::new(create_immediate_list(context, stream)?));
        lists.insert(stream, list.clone());
        Ok(list)
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
    Ok(CommandList { handle: list, last_barrier: None })
}
