//! Driver and device discovery and properties.

use std::ffi::CStr;
use std::ptr::null_mut;

use crate::common::*;

fn name(chars: &[std::ffi::c_char]) -> String {
    // SAFETY: the driver writes NUL-terminated names into these buffers.
    unsafe { CStr::from_ptr(chars.as_ptr()) }.to_string_lossy().into_owned()
}

#[test]
fn runs_on_the_loader_the_run_asks_for() {
    let Ok(expected) = std::env::var(EXPECTED_LOADER) else {
        eprintln!("skipped: {EXPECTED_LOADER} is not set");
        return;
    };
    assert_eq!(loader().0, expected, "LD_LIBRARY_PATH does not lead to the loader this run is for");
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
    // What the driver implements (1.12), or less if the loader can reach less.
    assert_eq!(version, ZE_API_VERSION_1_12.min(loader().1));

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
            ZEX_SOFTWARE_DRIVER_GET_LIVE_OBJECTS_NAME.as_ptr(),
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

#[test]
fn extension_properties_list_what_the_runtime_looks_for() {
    let setup = setup();
    let mut count = 0;
    ze!(zeDriverGetExtensionProperties(setup.driver, &mut count, null_mut()));
    let mut extensions = vec![ze_driver_extension_properties_t::default(); count as usize];
    ze!(zeDriverGetExtensionProperties(setup.driver, &mut count, extensions.as_mut_ptr()));
    let listed: Vec<(String, u32)> = extensions.iter().map(|e| (name(&e.name), e.version)).collect();
    for (extension, version) in [
        (ZE_DEVICE_IP_VERSION_EXT_NAME.as_slice(), ZE_DEVICE_IP_VERSION_VERSION_CURRENT),
        (ZE_EVENT_POOL_COUNTER_BASED_EXP_NAME, ZE_EVENT_POOL_COUNTER_BASED_EXP_VERSION_CURRENT),
        (ZE_RELAXED_ALLOCATION_LIMITS_EXP_NAME, ZE_RELAXED_ALLOCATION_LIMITS_EXP_VERSION_CURRENT),
    ] {
        let extension = std::str::from_utf8(&extension[..extension.len() - 1]).unwrap().to_owned();
        assert!(listed.contains(&(extension.clone(), version)), "{extension} is listed in {listed:?}");
    }
}

#[test]
fn chained_structures_of_unknown_type_are_errors() {
    let setup = setup();
    // A structure type no driver takes in a properties chain.
    let mut unknown = ze_base_properties_t { stype: ZE_STRUCTURE_TYPE_EVENT_DESC, pNext: null_mut() };
    let mut driver = ze_driver_properties_t {
        stype: ZE_STRUCTURE_TYPE_DRIVER_PROPERTIES,
        pNext: (&raw mut unknown).cast(),
        ..Default::default()
    };
    assert_eq!(call!(zeDriverGetProperties(setup.driver, &mut driver)), ZE_RESULT_ERROR_UNSUPPORTED_ENUMERATION);
    let mut device = ze_device_properties_t {
        stype: ZE_STRUCTURE_TYPE_DEVICE_PROPERTIES,
        pNext: (&raw mut unknown).cast(),
        ..Default::default()
    };
    assert_eq!(call!(zeDeviceGetProperties(setup.device, &mut device)), ZE_RESULT_ERROR_UNSUPPORTED_ENUMERATION);
    let mut access = ze_device_memory_access_properties_t {
        stype: ZE_STRUCTURE_TYPE_DEVICE_MEMORY_ACCESS_PROPERTIES,
        pNext: (&raw mut unknown).cast(),
        ..Default::default()
    };
    assert_eq!(
        call!(zeDeviceGetMemoryAccessProperties(setup.device, &mut access)),
        ZE_RESULT_ERROR_UNSUPPORTED_ENUMERATION
    );
    let desc =
        ze_context_desc_t { stype: ZE_STRUCTURE_TYPE_CONTEXT_DESC, pNext: (&raw const unknown).cast(), flags: 0 };
    let mut context = null_mut();
    assert_eq!(call!(zeContextCreate(setup.driver, &desc, &mut context)), ZE_RESULT_ERROR_UNSUPPORTED_ENUMERATION);
}

#[test]
fn the_ip_version_is_chained_to_device_properties() {
    if !api_reaches(ZE_API_VERSION_1_5, "ze_device_ip_version_ext_t") {
        return;
    }
    let setup = setup();
    let mut ip = ze_device_ip_version_ext_t { stype: ZE_STRUCTURE_TYPE_DEVICE_IP_VERSION_EXT, ..Default::default() };
    ip.ipVersion = 0xdead;
    let mut properties = ze_device_properties_t {
        stype: ZE_STRUCTURE_TYPE_DEVICE_PROPERTIES,
        pNext: (&raw mut ip).cast(),
        ..Default::default()
    };
    ze!(zeDeviceGetProperties(setup.device, &mut properties));
    assert_eq!(ip.ipVersion, 0, "no ZE_SOFTWARE_DRIVER_IP_VERSION: 0, an IP the runtime takes for an older GPU");
}

#[test]
fn no_sub_devices_and_all_memory_shared_with_the_host() {
    let setup = setup();
    let mut count = 7;
    let mut sub_device = null_mut();
    ze!(zeDeviceGetSubDevices(setup.device, &mut count, &mut sub_device));
    assert_eq!(count, 0);
    assert!(sub_device.is_null());
    count = 0;
    ze!(zeDeviceGetSubDevices(setup.device, &mut count, null_mut()));
    assert_eq!(count, 0);

    let mut access = ze_device_memory_access_properties_t {
        stype: ZE_STRUCTURE_TYPE_DEVICE_MEMORY_ACCESS_PROPERTIES,
        ..Default::default()
    };
    ze!(zeDeviceGetMemoryAccessProperties(setup.device, &mut access));
    let all = ZE_MEMORY_ACCESS_CAP_FLAG_RW
        | ZE_MEMORY_ACCESS_CAP_FLAG_ATOMIC
        | ZE_MEMORY_ACCESS_CAP_FLAG_CONCURRENT
        | ZE_MEMORY_ACCESS_CAP_FLAG_CONCURRENT_ATOMIC;
    assert_eq!(access.hostAllocCapabilities, all, "the runtime needs host allocations");
    assert_eq!(access.deviceAllocCapabilities, all);
    assert_eq!(access.sharedSingleDeviceAllocCapabilities, all);
    assert_eq!(access.sharedSystemAllocCapabilities, 0);
    assert_eq!(
        call!(zeDeviceGetMemoryAccessProperties(setup.device, null_mut())),
        ZE_RESULT_ERROR_INVALID_NULL_POINTER
    );
}

/// zeInitDrivers (1.10) and zeDeviceGetRootDevice (1.7): the loader 1.20
/// reaches them, loader 1.8 does not have them.
#[test]
fn newer_entry_points_reach_a_loader_that_has_them() {
    let setup = setup();
    let init_drivers: Option<ze_pfnInitDrivers_t> = newer_function(c"zeInitDrivers");
    let root_device: Option<ze_pfnDeviceGetRootDevice_t> = newer_function(c"zeDeviceGetRootDevice");
    let (Some(Some(init_drivers)), Some(Some(root_device))) = (init_drivers, root_device) else {
        assert!(loader().1 < ZE_API_VERSION_1_7, "loader {} lacks zeDeviceGetRootDevice", loader().0);
        return;
    };

    let mut root = setup.device;
    ze!(root_device(setup.device, &mut root));
    assert!(root.is_null(), "a root device has no root device");
    assert_eq!(call!(root_device(setup.device, null_mut())), ZE_RESULT_ERROR_INVALID_NULL_POINTER);

    if loader().1 < ZE_API_VERSION_1_10 {
        return;
    }
    let mut desc = ze_init_driver_type_desc_t {
        stype: ZE_STRUCTURE_TYPE_INIT_DRIVER_TYPE_DESC,
        pNext: std::ptr::null(),
        flags: ZE_INIT_DRIVER_TYPE_FLAG_GPU,
    };
    let mut count = 0;
    ze!(init_drivers(&mut count, null_mut(), &mut desc));
    assert_eq!(count, 1);
    let mut driver = null_mut();
    ze!(init_drivers(&mut count, &mut driver, &mut desc));
    assert_eq!(driver, setup.driver, "the same driver as zeInit and zeDriverGet give");
    desc.flags = u32::MAX;
    count = 0;
    ze!(init_drivers(&mut count, null_mut(), &mut desc));
    assert_eq!(count, 1, "UINT32_MAX asks for every driver type");
    // A GPU driver offers nothing to a caller that asks only for NPUs.
    desc.flags = ZE_INIT_DRIVER_TYPE_FLAG_NPU;
    count = 0;
    let _ = call!(init_drivers(&mut count, null_mut(), &mut desc));
    assert_eq!(count, 0);
}
