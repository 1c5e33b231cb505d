//! Command queues: run closed regular command lists on their worker.

use std::sync::Arc;

use level_zero_sys::*;

use crate::api::{check_flags, entry, misuse, ready, ZeResult};
use crate::command_list::COMMAND_LISTS;
use crate::context::{Context, CONTEXTS};
use crate::device;
use crate::executor::{Executor, Job};
use crate::fence::FENCES;
use crate::ffi::{handles, input, output};
use crate::intel;
use crate::registry::{Owned, Registry};

pub struct CommandQueue {
    context: Arc<Context>,
    executor: Executor,
    /// Synchronous queues return from an execute once the lists have run.
    synchronous: bool,
}

pub static COMMAND_QUEUES: Registry<CommandQueue> = Registry::new("command queue");

impl Owned for CommandQueue {
    fn context(&self) -> &Arc<Context> {
        &self.context
    }

    fn describe(&self) -> String {
        String::new()
    }
}

/// What a command queue descriptor (also an immediate list's) asks for.
pub struct Mode {
    /// Calls return once the work they submit has run.
    pub synchronous: bool,
    /// `ZE_COMMAND_QUEUE_FLAG_IN_ORDER`. Workers run everything in order
    /// anyway; the flag says what the application may rely on, and
    /// counter-based events need it.
    pub in_order: bool,
}

/// Checks a command queue descriptor (also an immediate list's). The device
/// has one group with one queue.
pub fn check_desc(desc: &ze_command_queue_desc_t) -> ZeResult<Mode> {
    // SAFETY: the chain of an application input, valid per the API contract.
    unsafe { intel::check_queue_chain(desc.pNext) }?;
    check_flags(desc.flags, ZE_COMMAND_QUEUE_FLAG_EXPLICIT_ONLY | ZE_COMMAND_QUEUE_FLAG_IN_ORDER)?;
    if desc.mode > ZE_COMMAND_QUEUE_MODE_ASYNCHRONOUS || desc.priority > ZE_COMMAND_QUEUE_PRIORITY_PRIORITY_HIGH {
        return Err(ZE_RESULT_ERROR_INVALID_ENUMERATION);
    }
    if desc.ordinal != 0 || desc.index != 0 {
        return Err(ZE_RESULT_ERROR_INVALID_ARGUMENT);
    }
    Ok(Mode {
        synchronous: desc.mode == ZE_COMMAND_QUEUE_MODE_SYNCHRONOUS,
        in_order: desc.flags & ZE_COMMAND_QUEUE_FLAG_IN_ORDER != 0,
    })
}

pub unsafe extern "C" fn create(
    context: ze_context_handle_t,
    device: ze_device_handle_t,
    desc: *const ze_command_queue_desc_t,
    queue: *mut ze_command_queue_handle_t,
) -> ze_result_t {
    entry("zeCommandQueueCreate", || {
        let context = CONTEXTS.get(context)?;
        device::lookup(device)?;
        // SAFETY: application pointers, valid per the API contract.
        let (desc, queue) = unsafe { (input(desc)?, output(queue)?) };
        let synchronous = check_desc(desc)?.synchronous;
        let executor = Executor::start(Arc::clone(&context))?;
        *queue = COMMAND_QUEUES.insert(CommandQueue { context, executor, synchronous });
        Ok(())
    })
}

/// The application must not destroy a queue whose work has not run; the
/// worker abandons it.
pub unsafe extern "C" fn destroy(queue: ze_command_queue_handle_t) -> ze_result_t {
    entry("zeCommandQueueDestroy", || COMMAND_QUEUES.remove(queue).map(drop))
}

pub unsafe extern "C" fn execute_command_lists(
    queue: ze_command_queue_handle_t,
    count: u32,
    lists: *mut ze_command_list_handle_t,
    fence: ze_fence_handle_t,
) -> ze_result_t {
    entry("zeCommandQueueExecuteCommandLists", || {
        let queue_handle = queue;
        let queue = COMMAND_QUEUES.get(queue)?;
        if lists.is_null() {
            return Err(ZE_RESULT_ERROR_INVALID_NULL_POINTER);
        }
        if count == 0 {
            return Err(ZE_RESULT_ERROR_INVALID_SIZE);
        }
        let fence = if fence.is_null() { None } else { Some(FENCES.get(fence)?) };
        if fence.as_ref().is_some_and(|fence| !fence.created_on(queue_handle)) {
            misuse(format_args!("the fence was created on another command queue"));
            return Err(ZE_RESULT_ERROR_INVALID_SYNCHRONIZATION_OBJECT);
        }
        let mut jobs = Vec::new();
        // SAFETY: the application's list array holds `count` handles (API contract).
        for &handle in unsafe { handles(lists, count) } {
            let list = COMMAND_LISTS.get(handle)?;
            if !Arc::ptr_eq(list.context(), &queue.context) {
                misuse(format_args!("command list {handle:p} belongs to another context"));
                return Err(ZE_RESULT_ERROR_INVALID_ARGUMENT);
            }
            jobs.extend(list.submit_recorded()?.into_iter().map(Job::Command));
        }
        jobs.extend(fence.map(Job::SignalFence));
        queue.executor.submit(jobs);
        if queue.synchronous {
            queue.executor.wait_idle(u64::MAX);
        }
        Ok(())
    })
}

pub unsafe extern "C" fn synchronize(queue: ze_command_queue_handle_t, timeout_ns: u64) -> ze_result_t {
    entry("zeCommandQueueSynchronize", || ready(COMMAND_QUEUES.get(queue)?.executor.wait_idle(timeout_ns)))
}
