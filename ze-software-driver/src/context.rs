//! Contexts: the scope of memory, event pools, command lists and queues.

use std::ptr::null_mut;

use level_zero_sys::*;

use crate::api::{check_flags, entry, ZeResult};
use crate::device;
use crate::driver;
use crate::ffi::{handles, input, output, unchained};
use crate::leaks;
use crate::registry::Registry;

/// Objects refer to their context through an `Arc<Context>`; its address is
/// the identity that scopes memory and leak reports.
pub struct Context;

pub static CONTEXTS: Registry<Context> = Registry::new("context");

pub unsafe extern "C" fn create(
    driver: ze_driver_handle_t,
    desc: *const ze_context_desc_t,
    context: *mut ze_context_handle_t,
) -> ze_result_t {
    // SAFETY: the application's arguments, valid per the API contract; no device list.
    entry("zeContextCreate", || unsafe { create_context(driver, desc, 0, null_mut(), context) })
}

pub unsafe extern "C" fn create_ex(
    driver: ze_driver_handle_t,
    desc: *const ze_context_desc_t,
    device_count: u32,
    devices: *mut ze_device_handle_t,
    context: *mut ze_context_handle_t,
) -> ze_result_t {
    // SAFETY: the application's arguments, valid per the API contract.
    entry("zeContextCreateEx", || unsafe { create_context(driver, desc, device_count, devices, context) })
}

/// Every context of this driver spans all its devices, so a device list is
/// only validated.
///
/// # Safety
/// `desc` and `context` are null or valid; `devices` is null or holds
/// `device_count` handles.
unsafe fn create_context(
    driver: ze_driver_handle_t,
    desc: *const ze_context_desc_t,
    device_count: u32,
    devices: *mut ze_device_handle_t,
    context: *mut ze_context_handle_t,
) -> ZeResult {
    driver::lookup(driver)?;
    // SAFETY: forwarded from this function's contract.
    let (desc, context) = unsafe { (input(desc)?, output(context)?) };
    // SAFETY: the chain of an application input, valid per the API contract.
    unsafe { unchained(desc.pNext) }?;
    check_flags(desc.flags, ZE_CONTEXT_FLAG_TBD)?;
    if devices.is_null() && device_count > 0 {
        return Err(ZE_RESULT_ERROR_INVALID_SIZE);
    }
    // SAFETY: forwarded from this function's contract.
    for &handle in unsafe { handles(devices, device_count) } {
        device::lookup(handle)?;
    }
    *context = CONTEXTS.insert(Context);
    Ok(())
}

/// Objects still alive in the context keep it alive and stay usable; they
/// are reported as leaks.
pub unsafe extern "C" fn destroy(context: ze_context_handle_t) -> ze_result_t {
    entry("zeContextDestroy", || {
        let destroyed = CONTEXTS.remove(context)?;
        leaks::report_context_destroyed(context as usize, &destroyed);
        Ok(())
    })
}

pub unsafe extern "C" fn get_status(context: ze_context_handle_t) -> ze_result_t {
    entry("zeContextGetStatus", || CONTEXTS.get(context).map(drop))
}
