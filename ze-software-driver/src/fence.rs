//! Fences: signalled by a command queue once the lists of one execute have run.

use std::sync::Arc;

use level_zero_sys::*;

use crate::api::{check_flags, entry, ready};
use crate::context::Context;
use crate::ffi::{input, output, unchained};
use crate::queue::COMMAND_QUEUES;
use crate::registry::{Owned, Registry};
use crate::sync::Flag;

pub struct Fence {
    /// The handle of the queue the fence was created on. Not a reference: a
    /// pending signal job in that queue holds the fence.
    queue: usize,
    context: Arc<Context>,
    signalled: Flag,
}

pub static FENCES: Registry<Fence> = Registry::new("fence");

impl Owned for Fence {
    fn context(&self) -> &Arc<Context> {
        &self.context
    }

    fn describe(&self) -> String {
        format!(" (of command queue {:#x})", self.queue)
    }
}

impl Fence {
    pub fn signal(&self) {
        self.signalled.set(true);
    }

    pub fn created_on(&self, queue: ze_command_queue_handle_t) -> bool {
        self.queue == queue as usize
    }
}

pub unsafe extern "C" fn create(
    queue: ze_command_queue_handle_t,
    desc: *const ze_fence_desc_t,
    fence: *mut ze_fence_handle_t,
) -> ze_result_t {
    entry("zeFenceCreate", || {
        let context = Arc::clone(COMMAND_QUEUES.get(queue)?.context());
        // SAFETY: application pointers, valid per the API contract.
        let (desc, fence) = unsafe { (input(desc)?, output(fence)?) };
        // SAFETY: the chain of an application input, valid per the API contract.
        unsafe { unchained(desc.pNext) }?;
        check_flags(desc.flags, ZE_FENCE_FLAG_SIGNALED)?;
        let signalled = Flag::new(desc.flags & ZE_FENCE_FLAG_SIGNALED != 0);
        *fence = FENCES.insert(Fence { queue: queue as usize, context, signalled });
        Ok(())
    })
}

pub unsafe extern "C" fn destroy(fence: ze_fence_handle_t) -> ze_result_t {
    entry("zeFenceDestroy", || FENCES.remove(fence).map(drop))
}

pub unsafe extern "C" fn host_synchronize(fence: ze_fence_handle_t, timeout_ns: u64) -> ze_result_t {
    entry("zeFenceHostSynchronize", || ready(FENCES.get(fence)?.signalled.wait(timeout_ns)))
}

pub unsafe extern "C" fn query_status(fence: ze_fence_handle_t) -> ze_result_t {
    entry("zeFenceQueryStatus", || ready(FENCES.get(fence)?.signalled.is_set()))
}

pub unsafe extern "C" fn reset(fence: ze_fence_handle_t) -> ze_result_t {
    entry("zeFenceReset", || FENCES.get(fence).map(|fence| fence.signalled.set(false)))
}
