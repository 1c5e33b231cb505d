//! Driver and device discovery and properties.

use std::ffi::CStr;
use std::ptr::null_mut;

use crate::common::*;

fn name(chars: &[std::ffi::c_char]) -> String {
    // SAFETY: the driver writes NUL-terminated names into these buffers.
    unsafe { CStr::from_ptr(chars.as_ptr()) }.to_string_lossy().into_owned()
}

#[test]
fn init_is_idempotent_and_there_is_one_driver() {
    let setup = setup();
    ze!(zeInit(0));
    let mut count = 0;
    ze!(zeDriverGet(&mut count, null_mut()));
    assert_eq!(count, 1);
    let mut driver = null_mut();
    count = 5;
    ze!(zeDriverGet(&mut count, &mut driver));
    assert_eq!(count, 1, "a count above the number of drivers is corrected");
    assert_eq!(driver, setup.driver);
}

#[test]
fn api_version_and_driver_properties() {
    let setup = setup();
    let mut version = 0;
    ze!(zeDriverGetApiVersion(setup.driver, &mut version));
    assert_eq!(version, ZE_API_VERSION_1_4);

    let mut free_policies = ze_driver_memory_free_ext_properties_t {
        stype: ZE_STRUCTURE_TYPE_DRIVER_MEMORY_FREE_EXT_PROPERTIES,
        ..Default::default()
    };
    let mut properties = ze_driver_properties_t {
        stype: ZE_STRUCTURE_TYPE_DRIVER_PROPERTIES,
        pNext: (&raw mut free_policies).cast(),
        ..Default::default()
    };
    ze!(zeDriverGetProperties(setup.driver, &mut properties));
    assert_ne!(properties.uuid.id, [0; 16]);
    assert_eq!(
        free_policies.freePolicies,
        ZE_DRIVER_MEMORY_FREE_POLICY_EXT_FLAG_BLOCKING_FREE | ZE_DRIVER_MEMORY_FREE_POLICY_EXT_FLAG_DEFER_FREE
    );
    assert_eq!(call!(zeDriverGetProperties(setup.driver, null_mut())), ZE_RESULT_ERROR_INVALID_NULL_POINTER);
    assert_eq!(call!(zeDriverGetApiVersion(setup.driver, null_mut())), ZE_RESULT_ERROR_INVALID_NULL_POINTER);
}

#[test]
fn extension_properties_list_the_memory_free_policies() {
    let setup = setup();
    let mut count = 0;
    ze!(zeDriverGetExtensionProperties(setup.driver, &mut count, null_mut()));
    assert!(count >= 1);
    let mut extensions = vec![ze_driver_extension_properties_t::default(); count as usize];
    ze!(zeDriverGetExtensionProperties(setup.driver, &mut count, extensions.as_mut_ptr()));
    let free_policies = extensions
        .iter()
        .find(|extension| name(&extension.name) == "ZE_extension_memory_free_policies")
        .expect("ZE_extension_memory_free_policies is listed");
    assert_eq!(free_policies.version, ZE_MEMORY_FREE_POLICIES_EXT_VERSION_CURRENT);
}

#[test]
fn extension_function_addresses() {
    let setup = setup();
    let live = setup.live_objects();
    assert!(live.contexts < u64::MAX);
    let mut function = null_mut();
    assert_eq!(
        call!(zeDriverGetExtensionFunctionAddress(setup.driver, c"zexNoSuchFunction".as_ptr(), &mut function)),
        ZE_RESULT_ERROR_INVALID_ARGUMENT
    );
    assert_eq!(
        call!(zeDriverGetExtensionFunctionAddress(setup.driver, std::ptr::null(), &mut function)),
        ZE_RESULT_ERROR_INVALID_NULL_POINTER
    );
    assert_eq!(
        call!(zeDriverGetExtensionFunctionAddress(
            setup.driver,
            c"zexSoftwareDriverGetLiveObjects".as_ptr(),
            null_mut()
        )),
        ZE_RESULT_ERROR_INVALID_NULL_POINTER
    );
}

#[test]
fn device_properties() {
    let setup = setup();
    let mut count = 0;
    ze!(zeDeviceGet(setup.driver, &mut count, null_mut()));
    assert_eq!(count, 1, "one device by default");
    let mut properties = ze_device_properties_t { stype: ZE_STRUCTURE_TYPE_DEVICE_PROPERTIES, ..Default::default() };
    ze!(zeDeviceGetProperties(setup.device, &mut properties));
    assert_eq!(properties.type_, ZE_DEVICE_TYPE_GPU);
    assert_eq!(properties.vendorId, 0x8086);
    assert_eq!(name(&properties.name), "Level Zero software driver device 0");
    assert!(properties.maxMemAllocSize > 0);
    assert_eq!(call!(zeDeviceGetProperties(setup.device, null_mut())), ZE_RESULT_ERROR_INVALID_NULL_POINTER);
    if nulls_are_checked() {
        assert_eq!(call!(zeDeviceGetProperties(null_mut(), &mut properties)), ZE_RESULT_ERROR_INVALID_NULL_HANDLE);
    }
}

#[test]
fn one_compute_and_copy_queue_group() {
    let setup = setup();
    let mut count = 0;
    ze!(zeDeviceGetCommandQueueGroupProperties(setup.device, &mut count, null_mut()));
    assert_eq!(count, 1);
    let mut group = ze_command_queue_group_properties_t {
        stype: ZE_STRUCTURE_TYPE_COMMAND_QUEUE_GROUP_PROPERTIES,
        ..Default::default()
    };
    ze!(zeDeviceGetCommandQueueGroupProperties(setup.device, &mut count, &mut group));
    assert_eq!(count, 1);
    let compute_and_copy = ZE_COMMAND_QUEUE_GROUP_PROPERTY_FLAG_COMPUTE | ZE_COMMAND_QUEUE_GROUP_PROPERTY_FLAG_COPY;
    assert_eq!(group.flags & compute_and_copy, compute_and_copy);
    assert_eq!(group.numQueues, 1);
    assert!(group.maxMemoryFillPatternSize >= 16);
}
