//! Intel's own driver extensions (compute-runtime's `ze_intel_gpu.h` and
//! `ze_stypes.h`) that the SYCL runtime's Level Zero adapters pass to every
//! driver. The Level Zero headers do not define them, so they are declared
//! here, as compute-runtime lays them out.

use std::ffi::c_void;

use level_zero_sys::*;

use crate::api::{unknown_stype, ZeResult};
use crate::ffi::chain;

/// `ZEX_INTEL_STRUCTURE_TYPE_QUEUE_COPY_OPERATIONS_OFFLOAD_HINT_EXP_PROPERTIES`,
/// the type of `zex_intel_queue_copy_operations_offload_hint_exp_desc_t`
/// (`stype`, `pNext`, `ze_bool_t copyOffloadEnabled`): a request that copies
/// on a queue or command list go to a copy engine. The v2 adapter chains it to
/// every list it creates, whether it asks or not.
const STRUCTURE_TYPE_QUEUE_COPY_OPERATIONS_OFFLOAD_HINT: ze_structure_type_t = 0x0003_001B;

/// Checks the `pNext` of a command queue or command list descriptor. The one
/// extension taken is the copy offload hint, a hint this driver may ignore:
/// every command of a list runs on its one worker.
///
/// # Safety
/// As for [`chain`].
pub unsafe fn check_queue_chain(next: *const c_void) -> ZeResult {
    // SAFETY: forwarded from this function's contract.
    for (stype, _) in unsafe { chain(next) } {
        if stype != STRUCTURE_TYPE_QUEUE_COPY_OPERATIONS_OFFLOAD_HINT {
            return Err(unknown_stype(stype));
        }
    }
    Ok(())
}
