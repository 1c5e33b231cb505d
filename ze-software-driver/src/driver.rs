//! The driver: initialisation, the one driver handle, its properties and
//! extensions.

use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicBool, Ordering};

use level_zero_sys::software_driver::ZEX_SOFTWARE_DRIVER_GET_LIVE_OBJECTS_NAME;
use level_zero_sys::*;

use crate::api::{check_flags, entry, unknown_handle, unknown_stype, ZeResult};
use crate::ffi::{chain, counted, input, output, unchained, write_c_string};
use crate::getters;
use crate::knobs::knobs;
use crate::live_objects;

struct Driver {
    uuid: [u8; 16],
}

/// The only driver; its address is its handle.
static DRIVER: Driver = Driver { uuid: *b"ze-software-drv\0" };

static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// The extensions `zeDriverGetExtensionProperties` lists, as (name, version).
const EXTENSIONS: [(&[u8], u32); 4] = [
    (ZE_MEMORY_FREE_POLICIES_EXT_NAME, ZE_MEMORY_FREE_POLICIES_EXT_VERSION_CURRENT),
    (ZE_DEVICE_IP_VERSION_EXT_NAME, ZE_DEVICE_IP_VERSION_VERSION_CURRENT),
    (ZE_EVENT_POOL_COUNTER_BASED_EXP_NAME, ZE_EVENT_POOL_COUNTER_BASED_EXP_VERSION_CURRENT),
    (ZE_RELAXED_ALLOCATION_LIMITS_EXP_NAME, ZE_RELAXED_ALLOCATION_LIMITS_EXP_VERSION_CURRENT),
];

fn handle() -> ze_driver_handle_t {
    &DRIVER as *const Driver as ze_driver_handle_t
}

pub fn lookup(driver: ze_driver_handle_t) -> ZeResult {
    if driver.is_null() {
        Err(ZE_RESULT_ERROR_INVALID_NULL_HANDLE)
    } else if driver != handle() {
        Err(unknown_handle("driver", driver))
    } else {
        Ok(())
    }
}

/// Idempotent: the loader calls it at least twice on the first public call.
pub unsafe extern "C" fn init(flags: ze_init_flags_t) -> ze_result_t {
    entry("zeInit", || {
        check_flags(flags, ZE_INIT_FLAG_GPU_ONLY | ZE_INIT_FLAG_VPU_ONLY)?;
        if flags != 0 && flags & ZE_INIT_FLAG_GPU_ONLY == 0 {
            // Only VPUs asked for, and this driver has GPUs.
            return Err(ZE_RESULT_ERROR_UNINITIALIZED);
        }
        knobs();
        INITIALIZED.store(true, Ordering::Release);
        Ok(())
    })
}

/// `zeInit` for the driver types asked for; this driver is a GPU driver.
pub unsafe extern "C" fn init_drivers(
    count: *mut u32,
    drivers: *mut ze_driver_handle_t,
    desc: *mut ze_init_driver_type_desc_t,
) -> ze_result_t {
    entry("zeInitDrivers", || {
        // SAFETY: application pointer, valid per the API contract.
        let desc = unsafe { input(desc) }?;
        // SAFETY: the chain of an application input, valid per the API contract.
        unsafe { unchained(desc.pNext) }?;
        // UINT32_MAX asks for every type (the spec's "or UINT32_MAX").
        let flags = if desc.flags == u32::MAX { ZE_INIT_DRIVER_TYPE_FLAG_GPU } else { desc.flags };
        check_flags(flags, ZE_INIT_DRIVER_TYPE_FLAG_GPU | ZE_INIT_DRIVER_TYPE_FLAG_NPU)?;
        knobs();
        let gpu = flags & ZE_INIT_DRIVER_TYPE_FLAG_GPU != 0;
        if gpu {
            INITIALIZED.store(true, Ordering::Release);
        }
        // SAFETY: application count and array, valid per the API contract.
        unsafe { counted(count, drivers, usize::from(gpu), |slot, _| *slot = handle()) }
    })
}

pub unsafe extern "C" fn get(count: *mut u32, drivers: *mut ze_driver_handle_t) -> ze_result_t {
    entry("zeDriverGet", || {
        if !INITIALIZED.load(Ordering::Acquire) {
            return Err(ZE_RESULT_ERROR_UNINITIALIZED);
        }
        // SAFETY: application count and array, valid per the API contract.
        unsafe { counted(count, drivers, 1, |slot, _| *slot = handle()) }
    })
}

pub unsafe extern "C" fn get_api_version(driver: ze_driver_handle_t, version: *mut ze_api_version_t) -> ze_result_t {
    entry("zeDriverGetApiVersion", || {
        lookup(driver)?;
        // Never more than the loader's tables can reach.
        // SAFETY: application pointer, valid per the API contract.
        *unsafe { output(version) }? = ZE_API_VERSION_CURRENT.min(getters::loader_version());
        Ok(())
    })
}

pub unsafe extern "C" fn get_properties(
    driver: ze_driver_handle_t,
    properties: *mut ze_driver_properties_t,
) -> ze_result_t {
    entry("zeDriverGetProperties", || {
        lookup(driver)?;
        // SAFETY: application pointer, valid per the API contract.
        let properties = unsafe { output(properties) }?;
        properties.uuid.id = DRIVER.uuid;
        properties.driverVersion = driver_version();
        // SAFETY: the chain of an application output, valid per the API contract.
        for (stype, extension) in unsafe { chain(properties.pNext) } {
            match stype {
                ZE_STRUCTURE_TYPE_DRIVER_MEMORY_FREE_EXT_PROPERTIES => {
                    let free = extension.cast::<ze_driver_memory_free_ext_properties_t>();
                    // SAFETY: this stype says the struct is a
                    // ze_driver_memory_free_ext_properties_t, writable as an output.
                    unsafe {
                        (*free).freePolicies = ZE_DRIVER_MEMORY_FREE_POLICY_EXT_FLAG_BLOCKING_FREE
                            | ZE_DRIVER_MEMORY_FREE_POLICY_EXT_FLAG_DEFER_FREE;
                    }
                }
                other => return Err(unknown_stype(other)),
            }
        }
        Ok(())
    })
}

/// The crate version as major.minor.patch in 8.8.16 bits.
fn driver_version() -> u32 {
    let part = |text: &str| text.parse::<u32>().unwrap_or(0);
    part(env!("CARGO_PKG_VERSION_MAJOR")) << 24
        | part(env!("CARGO_PKG_VERSION_MINOR")) << 16
        | part(env!("CARGO_PKG_VERSION_PATCH"))
}

pub unsafe extern "C" fn get_extension_properties(
    driver: ze_driver_handle_t,
    count: *mut u32,
    extensions: *mut ze_driver_extension_properties_t,
) -> ze_result_t {
    entry("zeDriverGetExtensionProperties", || {
        lookup(driver)?;
        // SAFETY: application count and array, valid per the API contract.
        unsafe {
            counted(count, extensions, EXTENSIONS.len(), |extension, index| {
                let (name, version) = EXTENSIONS[index];
                write_c_string(&mut extension.name, name);
                extension.version = version;
            })
        }
    })
}

pub unsafe extern "C" fn get_extension_function_address(
    driver: ze_driver_handle_t,
    name: *const c_char,
    function: *mut *mut c_void,
) -> ze_result_t {
    entry("zeDriverGetExtensionFunctionAddress", || {
        lookup(driver)?;
        // SAFETY: application pointers, valid per the API contract; a
        // non-null name is a NUL-terminated string.
        let (name, function) = unsafe { (CStr::from_ptr(input(name)?), output(function)?) };
        if name != ZEX_SOFTWARE_DRIVER_GET_LIVE_OBJECTS_NAME {
            return Err(ZE_RESULT_ERROR_INVALID_ARGUMENT);
        }
        *function = live_objects::get as *mut c_void;
        Ok(())
    })
}
