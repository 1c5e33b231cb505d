//! Devices: `ZE_SOFTWARE_DRIVER_DEVICES` identical GPUs backed by host memory.

use std::sync::OnceLock;

use level_zero_sys::*;

use crate::api::{entry, unknown_handle, unknown_stype, ZeResult};
use crate::driver;
use crate::ffi::{chain, counted, output, unchained, write_c_string};
use crate::knobs::knobs;

/// The largest pattern `zeCommandListAppendMemoryFill` takes.
pub const MAX_FILL_PATTERN_SIZE: usize = 128;

pub struct Device {
    index: u32,
}

/// The devices, created once; their addresses are their handles.
fn devices() -> &'static [Device] {
    static DEVICES: OnceLock<Vec<Device>> = OnceLock::new();
    DEVICES.get_or_init(|| (0..knobs().devices).map(|index| Device { index }).collect())
}

impl Device {
    pub fn handle(&'static self) -> ze_device_handle_t {
        self as *const Device as ze_device_handle_t
    }
}

pub fn lookup(handle: ze_device_handle_t) -> ZeResult<&'static Device> {
    if handle.is_null() {
        return Err(ZE_RESULT_ERROR_INVALID_NULL_HANDLE);
    }
    devices().iter().find(|device| device.handle() == handle).ok_or_else(|| unknown_handle("device", handle))
}

pub unsafe extern "C" fn get(
    driver: ze_driver_handle_t,
    count: *mut u32,
    handles: *mut ze_device_handle_t,
) -> ze_result_t {
    entry("zeDeviceGet", || {
        driver::lookup(driver)?;
        let devices = devices();
        // SAFETY: application count and array, valid per the API contract.
        unsafe { counted(count, handles, devices.len(), |slot, index| *slot = devices[index].handle()) }
    })
}

pub unsafe extern "C" fn get_properties(
    device: ze_device_handle_t,
    properties: *mut ze_device_properties_t,
) -> ze_result_t {
    entry("zeDeviceGetProperties", || {
        let device = lookup(device)?;
        // SAFETY: application pointer, valid per the API contract.
        let properties = unsafe { output(properties) }?;
        properties.type_ = ZE_DEVICE_TYPE_GPU;
        properties.vendorId = 0x8086;
        properties.deviceId = 0;
        // Its memory is the host's.
        properties.flags = ZE_DEVICE_PROPERTY_FLAG_INTEGRATED;
        properties.subdeviceId = 0;
        properties.coreClockRate = 1000;
        properties.maxMemAllocSize = knobs().memory_limit.unwrap_or(isize::MAX as u64);
        properties.maxHardwareContexts = 1;
        properties.maxCommandQueuePriority = 0;
        properties.numThreadsPerEU = 1;
        properties.physicalEUSimdWidth = 1;
        properties.numEUsPerSubslice = 1;
        properties.numSubslicesPerSlice = 1;
        properties.numSlices = 1;
        // Before version 1.2 of this struct the resolution is in nanoseconds,
        // from 1.2 on in cycles per second.
        properties.timerResolution =
            if properties.stype == ZE_STRUCTURE_TYPE_DEVICE_PROPERTIES_1_2 { 1_000_000_000 } else { 1 };
        properties.timestampValidBits = 64;
        properties.kernelTimestampValidBits = 64;
        properties.uuid.id = [0; 16];
        properties.uuid.id[..4].copy_from_slice(b"zesw");
        properties.uuid.id[12..].copy_from_slice(&device.index.to_le_bytes());
        let name = format!("Level Zero software driver device {}", device.index);
        write_c_string(&mut properties.name, name.as_bytes());
        // SAFETY: the chain of an application output, valid per the API contract.
        for (stype, extension) in unsafe { chain(properties.pNext) } {
            match stype {
                ZE_STRUCTURE_TYPE_DEVICE_IP_VERSION_EXT => {
                    // SAFETY: this stype says the struct is a ze_device_ip_version_ext_t, writable as an output.
                    unsafe { (*extension.cast::<ze_device_ip_version_ext_t>()).ipVersion = knobs().ip_version };
                }
                other => return Err(unknown_stype(other)),
            }
        }
        Ok(())
    })
}

/// Devices here have no sub-devices.
pub unsafe extern "C" fn get_sub_devices(
    device: ze_device_handle_t,
    count: *mut u32,
    sub_devices: *mut ze_device_handle_t,
) -> ze_result_t {
    entry("zeDeviceGetSubDevices", || {
        lookup(device)?;
        // SAFETY: application count and array, valid per the API contract.
        unsafe { counted(count, sub_devices, 0, |_, _| {}) }
    })
}

/// Every device is a root device: its root device is null.
pub unsafe extern "C" fn get_root_device(device: ze_device_handle_t, root: *mut ze_device_handle_t) -> ze_result_t {
    entry("zeDeviceGetRootDevice", || {
        lookup(device)?;
        // SAFETY: application pointer, valid per the API contract.
        *unsafe { output(root) }? = std::ptr::null_mut();
        Ok(())
    })
}

/// All memory is the host's, so the host and every device read, write and
/// update it atomically, concurrently, whoever allocated it.
pub unsafe extern "C" fn get_memory_access_properties(
    device: ze_device_handle_t,
    properties: *mut ze_device_memory_access_properties_t,
) -> ze_result_t {
    entry("zeDeviceGetMemoryAccessProperties", || {
        lookup(device)?;
        // SAFETY: application pointer, valid per the API contract.
        let properties = unsafe { output(properties) }?;
        // SAFETY: the chain of an application output, valid per the API contract.
        unsafe { unchained(properties.pNext) }?;
        let all = ZE_MEMORY_ACCESS_CAP_FLAG_RW
            | ZE_MEMORY_ACCESS_CAP_FLAG_ATOMIC
            | ZE_MEMORY_ACCESS_CAP_FLAG_CONCURRENT
            | ZE_MEMORY_ACCESS_CAP_FLAG_CONCURRENT_ATOMIC;
        properties.hostAllocCapabilities = all;
        properties.deviceAllocCapabilities = all;
        properties.sharedSingleDeviceAllocCapabilities = all;
        properties.sharedCrossDeviceAllocCapabilities = all;
        // System allocations (plain malloc) are not device memory here.
        properties.sharedSystemAllocCapabilities = 0;
        Ok(())
    })
}

/// One group that takes every command this driver runs.
pub unsafe extern "C" fn get_command_queue_group_properties(
    device: ze_device_handle_t,
    count: *mut u32,
    groups: *mut ze_command_queue_group_properties_t,
) -> ze_result_t {
    entry("zeDeviceGetCommandQueueGroupProperties", || {
        lookup(device)?;
        // SAFETY: application count and array, valid per the API contract.
        unsafe {
            counted(count, groups, 1, |group, _| {
                group.flags = ZE_COMMAND_QUEUE_GROUP_PROPERTY_FLAG_COMPUTE | ZE_COMMAND_QUEUE_GROUP_PROPERTY_FLAG_COPY;
                group.maxMemoryFillPatternSize = MAX_FILL_PATTERN_SIZE;
                group.numQueues = 1;
            })
        }
    })
}
