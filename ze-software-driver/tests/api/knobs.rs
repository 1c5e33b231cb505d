//! The ZE_SOFTWARE_DRIVER_* knobs, each in a child process that has it set.

use std::ffi::c_void;
use std::ptr::null_mut;
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn command_latency_makes_not_ready_observable() {
    run_passing_child("knobs::command_latency_child", &[("ZE_SOFTWARE_DRIVER_COMMAND_LATENCY_US", "200000")]);
}

#[test]
#[ignore = "child of command_latency_makes_not_ready_observable"]
fn command_latency_child() {
    if !is_child() {
        return;
    }
    let setup = setup();
    let context = setup.context();
    let events = Events::new(context, 1);
    let done = events.events[0];
    let list = setup.immediate_list(context, ZE_COMMAND_QUEUE_MODE_ASYNCHRONOUS);
    let start = Instant::now();
    ze!(zeCommandListAppendBarrier(list, done, 0, null_mut()));
    assert_eq!(call!(zeEventQueryStatus(done)), ZE_RESULT_NOT_READY);
    assert_eq!(call!(zeEventHostSynchronize(done, 1_000_000)), ZE_RESULT_NOT_READY);
    ze!(zeEventHostSynchronize(done, u64::MAX));
    assert!(start.elapsed() >= Duration::from_millis(200));
    ze!(zeCommandListDestroy(list));

    let synchronous = setup.immediate_list(context, ZE_COMMAND_QUEUE_MODE_SYNCHRONOUS);
    ze!(zeEventHostReset(done));
    ze!(zeCommandListAppendSignalEvent(synchronous, done));
    assert_eq!(call!(zeEventQueryStatus(done)), ZE_RESULT_SUCCESS, "a synchronous append returns after the command");
    ze!(zeCommandListDestroy(synchronous));
    events.destroy();
    ze!(zeContextDestroy(context));
}

#[test]
fn memory_limit_makes_allocations_fail() {
    run_passing_child("knobs::memory_limit_child", &[("ZE_SOFTWARE_DRIVER_HOST_MEMORY_LIMIT", "1000000")]);
}

#[test]
#[ignore = "child of memory_limit_makes_allocations_fail"]
fn memory_limit_child() {
    if !is_child() {
        return;
    }
    let setup = setup();
    let context = setup.context();
    let first = alloc_host(context, 600_000);
    let mut memory: *mut c_void = null_mut();
    assert_eq!(
        call!(zeMemAllocHost(context, &host_desc(0), 600_000, 0, &mut memory)),
        ZE_RESULT_ERROR_OUT_OF_HOST_MEMORY
    );
    assert_eq!(
        call!(zeMemAllocDevice(context, &device_desc(), 600_000, 0, setup.device, &mut memory)),
        ZE_RESULT_ERROR_OUT_OF_DEVICE_MEMORY
    );
    assert_eq!(
        call!(zeMemAllocShared(context, &device_desc(), &host_desc(0), 600_000, 0, null_mut(), &mut memory)),
        ZE_RESULT_ERROR_OUT_OF_DEVICE_MEMORY
    );
    let second = alloc_host(context, 400_000);
    free(context, first);
    let third = alloc_host(context, 600_000);
    free(context, second);
    free(context, third);
    let mut properties = ze_device_properties_t { stype: ZE_STRUCTURE_TYPE_DEVICE_PROPERTIES, ..Default::default() };
    ze!(zeDeviceGetProperties(setup.device, &mut properties));
    assert_eq!(properties.maxMemAllocSize, 1_000_000);
    ze!(zeContextDestroy(context));
}

#[test]
fn injected_failures() {
    run_passing_child(
        "knobs::injected_failures_child",
        &[
            ("ZE_SOFTWARE_DRIVER_FAIL_HOST_ALLOC_EVERY", "3"),
            ("ZE_SOFTWARE_DRIVER_FAIL_EVENT_POOL_CREATE_EVERY", "2"),
            ("ZE_SOFTWARE_DRIVER_FAIL_COMMAND_LIST_CREATE_EVERY", "2"),
        ],
    );
}

#[test]
#[ignore = "child of injected_failures"]
fn injected_failures_child() {
    if !is_child() {
        return;
    }
    let setup = setup();
    let context = setup.context();
    let host_allocations = which_fail(6, |_| {
        let mut memory = null_mut();
        let result = call!(zeMemAllocHost(context, &host_desc(0), 64, 0, &mut memory));
        if result == ZE_RESULT_SUCCESS {
            ze!(zeMemFree(context, memory));
        }
        result
    });
    assert_eq!(host_allocations, [false, false, true, false, false, true], "every 3rd zeMemAllocHost fails");

    let pool_desc = ze_event_pool_desc_t {
        stype: ZE_STRUCTURE_TYPE_EVENT_POOL_DESC,
        pNext: std::ptr::null(),
        flags: ZE_EVENT_POOL_FLAG_HOST_VISIBLE,
        count: 1,
    };
    let pools = which_fail(4, |_| {
        let mut pool = null_mut();
        let result = call!(zeEventPoolCreate(context, &pool_desc, 0, null_mut(), &mut pool));
        if result == ZE_RESULT_SUCCESS {
            ze!(zeEventPoolDestroy(pool));
        }
        result
    });
    assert_eq!(pools, [false, true, false, true], "every 2nd zeEventPoolCreate fails");

    // Regular and immediate lists count together.
    let list_desc = ze_command_list_desc_t {
        stype: ZE_STRUCTURE_TYPE_COMMAND_LIST_DESC,
        pNext: std::ptr::null(),
        commandQueueGroupOrdinal: 0,
        flags: 0,
    };
    let immediate_desc = queue_desc(ZE_COMMAND_QUEUE_MODE_DEFAULT);
    let lists = which_fail(4, |attempt| {
        let mut list = null_mut();
        let result = if attempt < 2 {
            call!(zeCommandListCreate(context, setup.device, &list_desc, &mut list))
        } else {
            call!(zeCommandListCreateImmediate(context, setup.device, &immediate_desc, &mut list))
        };
        if result == ZE_RESULT_SUCCESS {
            ze!(zeCommandListDestroy(list));
        }
        result
    });
    assert_eq!(lists, [false, true, false, true], "every 2nd command list creation fails");
    ze!(zeContextDestroy(context));
}

/// Makes `count` attempts (each cleans up after itself) and says which
/// failed; a failure must be `ZE_RESULT_ERROR_OUT_OF_HOST_MEMORY`.
fn which_fail(count: u32, attempt: impl Fn(u32) -> ze_result_t) -> Vec<bool> {
    (0..count)
        .map(|index| match attempt(index) {
            ZE_RESULT_SUCCESS => false,
            result => {
                assert_eq!(result, ZE_RESULT_ERROR_OUT_OF_HOST_MEMORY, "attempt {index}");
                true
            }
        })
        .collect()
}

#[test]
fn several_devices() {
    run_passing_child("knobs::several_devices_child", &[("ZE_SOFTWARE_DRIVER_DEVICES", "3")]);
}

#[test]
#[ignore = "child of several_devices"]
fn several_devices_child() {
    if !is_child() {
        return;
    }
    let setup = setup();
    let mut count = 0;
    ze!(zeDeviceGet(setup.driver, &mut count, null_mut()));
    assert_eq!(count, 3);
    let mut devices = [null_mut(); 3];
    ze!(zeDeviceGet(setup.driver, &mut count, devices.as_mut_ptr()));
    let mut uuids = Vec::new();
    for (index, &device) in devices.iter().enumerate() {
        let mut properties =
            ze_device_properties_t { stype: ZE_STRUCTURE_TYPE_DEVICE_PROPERTIES, ..Default::default() };
        ze!(zeDeviceGetProperties(device, &mut properties));
        // SAFETY: the driver writes a NUL-terminated name.
        let name = unsafe { std::ffi::CStr::from_ptr(properties.name.as_ptr()) };
        assert_eq!(name.to_str().unwrap(), format!("Level Zero software driver device {index}"));
        uuids.push(properties.uuid.id);
    }
    uuids.dedup();
    assert_eq!(uuids.len(), 3, "distinct uuids");

    let context = setup.context();
    let mut memory = null_mut();
    ze!(zeMemAllocDevice(context, &device_desc(), 64, 0, devices[2], &mut memory));
    let mut properties = ze_memory_allocation_properties_t::default();
    let mut owner = null_mut();
    ze!(zeMemGetAllocProperties(context, memory, &mut properties, &mut owner));
    assert_eq!(owner, devices[2]);
    ze!(zeMemFree(context, memory));
    ze!(zeContextDestroy(context));
}

#[test]
fn ip_version_is_reported() {
    if !api_reaches(ZE_API_VERSION_1_5, "ze_device_ip_version_ext_t") {
        return;
    }
    run_passing_child("knobs::ip_version_child", &[("ZE_SOFTWARE_DRIVER_IP_VERSION", "0x05004000")]);
}

#[test]
#[ignore = "child of ip_version_is_reported"]
fn ip_version_child() {
    if !is_child() {
        return;
    }
    let setup = setup();
    let mut ip = ze_device_ip_version_ext_t { stype: ZE_STRUCTURE_TYPE_DEVICE_IP_VERSION_EXT, ..Default::default() };
    let mut properties = ze_device_properties_t {
        stype: ZE_STRUCTURE_TYPE_DEVICE_PROPERTIES,
        pNext: (&raw mut ip).cast(),
        ..Default::default()
    };
    ze!(zeDeviceGetProperties(setup.device, &mut properties));
    assert_eq!(ip.ipVersion, 0x0500_4000, "Battlemage's, for which Intel's runtime picks its v2 adapter");
}
