//! Checks the committed bindings against the headers they were generated from
//! (Level Zero loader 1.20.6, unpacked by `scripts/fetch-level-zero-loader`,
//! and the software driver's `ze_software_driver.h`) with the C compiler: every size, alignment, field offset and constant listed
//! here becomes a `_Static_assert` in a C file that must compile.

use level_zero_sys::software_driver::*;
use level_zero_sys::*;
use std::fmt::Write as _;
use std::mem::{align_of, offset_of, size_of};

macro_rules! layout {
    ($out:ident, $ty:ident { $($field:ident),* $(,)? }) => {{
        let name = stringify!($ty);
        writeln!($out, "_Static_assert(sizeof({name}) == {}, \"size of {name}\");", size_of::<$ty>()).unwrap();
        writeln!($out, "_Static_assert(_Alignof({name}) == {}, \"align of {name}\");", align_of::<$ty>()).unwrap();
        $(
            // bindgen renames the C field `type` to `type_`.
            let field = stringify!($field).trim_end_matches('_');
            writeln!($out, "_Static_assert(offsetof({name}, {field}) == {}, \"{name}.{field}\");", offset_of!($ty, $field)).unwrap();
        )*
    }};
}

macro_rules! constants {
    ($out:ident, $($name:ident),* $(,)?) => {{
        $(
            writeln!($out, "_Static_assert((unsigned long long)({}) == {}ull, \"{}\");",
                stringify!($name), $name as u64, stringify!($name)).unwrap();
        )*
    }};
}

#[test]
fn bindings_match_the_c_headers() {
    let mut c = String::from(
        "#include <stddef.h>\n#include <ze_api.h>\n#include <ze_ddi.h>\n#include <zet_ddi.h>\n#include <zes_ddi.h>\n\
         #include <loader/ze_loader.h>\n#include <ze_software_driver.h>\n",
    );
    layout!(c, ze_driver_properties_t { stype, pNext, uuid, driverVersion });
    layout!(c, ze_driver_memory_free_ext_properties_t { stype, pNext, freePolicies });
    layout!(c, ze_driver_extension_properties_t { name, version });
    layout!(
        c,
        ze_device_properties_t {
            stype,
            pNext,
            type_,
            vendorId,
            deviceId,
            flags,
            subdeviceId,
            coreClockRate,
            maxMemAllocSize,
            maxHardwareContexts,
            maxCommandQueuePriority,
            numThreadsPerEU,
            physicalEUSimdWidth,
            numEUsPerSubslice,
            numSubslicesPerSlice,
            numSlices,
            timerResolution,
            timestampValidBits,
            kernelTimestampValidBits,
            uuid,
            name
        }
    );
    layout!(c, ze_command_queue_group_properties_t { stype, pNext, flags, maxMemoryFillPatternSize, numQueues });
    layout!(c, ze_context_desc_t { stype, pNext, flags });
    layout!(c, ze_host_mem_alloc_desc_t { stype, pNext, flags });
    layout!(c, ze_device_mem_alloc_desc_t { stype, pNext, flags, ordinal });
    layout!(c, ze_memory_allocation_properties_t { stype, pNext, type_, id, pageSize });
    layout!(c, ze_memory_free_ext_desc_t { stype, pNext, freePolicy });
    layout!(c, ze_event_pool_desc_t { stype, pNext, flags, count });
    layout!(c, ze_event_desc_t { stype, pNext, index, signal, wait });
    layout!(c, ze_command_queue_desc_t { stype, pNext, ordinal, index, flags, mode, priority });
    layout!(c, ze_command_list_desc_t { stype, pNext, commandQueueGroupOrdinal, flags });
    layout!(c, ze_fence_desc_t { stype, pNext, flags });
    layout!(c, ze_copy_region_t { originX, originY, originZ, width, height, depth });
    // Spec 1.5 and newer, which Intel's SYCL runtime uses.
    layout!(c, ze_base_desc_t { stype, pNext });
    layout!(c, ze_base_properties_t { stype, pNext });
    layout!(c, ze_init_driver_type_desc_t { stype, pNext, flags });
    layout!(c, ze_device_ip_version_ext_t { stype, pNext, ipVersion });
    layout!(
        c,
        ze_device_memory_access_properties_t {
            stype,
            pNext,
            hostAllocCapabilities,
            deviceAllocCapabilities,
            sharedSingleDeviceAllocCapabilities,
            sharedCrossDeviceAllocCapabilities,
            sharedSystemAllocCapabilities
        }
    );
    layout!(c, ze_event_pool_counter_based_exp_desc_t { stype, pNext, flags });
    layout!(c, ze_relaxed_allocation_limits_exp_desc_t { stype, pNext, flags });
    layout!(c, zel_version_t { major, minor, patch });
    layout!(c, zel_component_version_t { component_name, spec_version, component_lib_version });
    layout!(c, ze_global_dditable_t { pfnInit, pfnInitDrivers });
    layout!(
        c,
        ze_driver_dditable_t {
            pfnGet,
            pfnGetApiVersion,
            pfnGetProperties,
            pfnGetIpcProperties,
            pfnGetExtensionProperties,
            pfnGetExtensionFunctionAddress,
            pfnGetLastErrorDescription
        }
    );
    layout!(
        c,
        ze_device_dditable_t {
            pfnGet,
            pfnGetSubDevices,
            pfnGetProperties,
            pfnGetComputeProperties,
            pfnGetModuleProperties,
            pfnGetCommandQueueGroupProperties,
            pfnGetMemoryProperties,
            pfnGetMemoryAccessProperties,
            pfnGetRootDevice,
            pfnImportExternalSemaphoreExt,
            pfnReleaseExternalSemaphoreExt
        }
    );
    layout!(
        c,
        ze_context_dditable_t {
            pfnCreate,
            pfnDestroy,
            pfnGetStatus,
            pfnSystemBarrier,
            pfnMakeMemoryResident,
            pfnEvictMemory,
            pfnMakeImageResident,
            pfnEvictImage,
            pfnCreateEx
        }
    );
    layout!(c, ze_command_queue_dditable_t { pfnCreate, pfnDestroy, pfnExecuteCommandLists, pfnSynchronize });
    layout!(
        c,
        ze_command_list_dditable_t {
            pfnAppendBarrier,
            pfnAppendMemoryRangesBarrier,
            pfnCreate,
            pfnCreateImmediate,
            pfnDestroy,
            pfnClose,
            pfnReset,
            pfnAppendWriteGlobalTimestamp,
            pfnAppendMemoryCopy,
            pfnAppendMemoryFill,
            pfnAppendSignalEvent,
            pfnAppendWaitOnEvents,
            pfnAppendEventReset,
            pfnHostSynchronize,
            pfnIsImmediate,
            pfnAppendWaitExternalSemaphoreExt
        }
    );
    layout!(
        c,
        ze_event_dditable_t {
            pfnCreate,
            pfnDestroy,
            pfnHostSignal,
            pfnHostSynchronize,
            pfnQueryStatus,
            pfnHostReset,
            pfnQueryKernelTimestamp,
            pfnQueryKernelTimestampsExt,
            pfnGetWaitScope
        }
    );
    layout!(
        c,
        ze_event_pool_dditable_t {
            pfnCreate,
            pfnDestroy,
            pfnGetIpcHandle,
            pfnOpenIpcHandle,
            pfnCloseIpcHandle,
            pfnPutIpcHandle,
            pfnGetFlags
        }
    );
    layout!(c, ze_fence_dditable_t { pfnCreate, pfnDestroy, pfnHostSynchronize, pfnQueryStatus, pfnReset });
    layout!(
        c,
        ze_mem_dditable_t {
            pfnAllocShared,
            pfnAllocDevice,
            pfnAllocHost,
            pfnFree,
            pfnGetAllocProperties,
            pfnGetAddressRange,
            pfnGetIpcHandle,
            pfnOpenIpcHandle,
            pfnCloseIpcHandle,
            pfnFreeExt
        }
    );
    layout!(
        c,
        zex_software_driver_live_objects_t {
            allocations,
            allocated_bytes,
            event_pools,
            events,
            command_lists,
            command_queues,
            fences,
            contexts,
            host_alloc_calls,
            host_free_calls
        }
    );
    // GCC and Clang fold a strcmp of two literals; standard C has no way to
    // compare strings at compile time.
    writeln!(
        c,
        "_Static_assert(__builtin_strcmp(ZEX_SOFTWARE_DRIVER_GET_LIVE_OBJECTS_NAME, {:?}) == 0, \"ZEX_SOFTWARE_DRIVER_GET_LIVE_OBJECTS_NAME\");",
        ZEX_SOFTWARE_DRIVER_GET_LIVE_OBJECTS_NAME.to_str().unwrap()
    )
    .unwrap();
    constants!(
        c,
        ZE_RESULT_SUCCESS,
        ZE_RESULT_NOT_READY,
        ZE_RESULT_ERROR_UNINITIALIZED,
        ZE_RESULT_ERROR_OUT_OF_HOST_MEMORY,
        ZE_RESULT_ERROR_UNSUPPORTED_FEATURE,
        ZE_RESULT_ERROR_UNSUPPORTED_SIZE,
        ZE_RESULT_ERROR_UNSUPPORTED_ALIGNMENT,
        ZE_RESULT_ERROR_INVALID_ENUMERATION,
        ZE_RESULT_ERROR_INVALID_NULL_HANDLE,
        ZE_RESULT_ERROR_INVALID_NULL_POINTER,
        ZE_RESULT_ERROR_INVALID_ARGUMENT,
        ZE_RESULT_ERROR_INVALID_SIZE,
        ZE_RESULT_ERROR_HANDLE_OBJECT_IN_USE,
        ZE_RESULT_ERROR_UNSUPPORTED_VERSION,
        ZE_RESULT_ERROR_UNKNOWN,
        ZE_RESULT_ERROR_DEVICE_LOST,
        ZE_API_VERSION_1_0,
        ZE_API_VERSION_1_4,
        ZE_API_VERSION_1_12,
        ZE_API_VERSION_CURRENT,
        ZE_RESULT_ERROR_UNSUPPORTED_ENUMERATION,
        ZE_STRUCTURE_TYPE_DRIVER_PROPERTIES,
        ZE_STRUCTURE_TYPE_DRIVER_MEMORY_FREE_EXT_PROPERTIES,
        ZE_STRUCTURE_TYPE_DEVICE_PROPERTIES,
        ZE_STRUCTURE_TYPE_CONTEXT_DESC,
        ZE_STRUCTURE_TYPE_HOST_MEM_ALLOC_DESC,
        ZE_STRUCTURE_TYPE_DEVICE_MEM_ALLOC_DESC,
        ZE_STRUCTURE_TYPE_MEMORY_ALLOCATION_PROPERTIES,
        ZE_STRUCTURE_TYPE_MEMORY_FREE_EXT_DESC,
        ZE_STRUCTURE_TYPE_EVENT_POOL_DESC,
        ZE_STRUCTURE_TYPE_EVENT_DESC,
        ZE_STRUCTURE_TYPE_COMMAND_QUEUE_DESC,
        ZE_STRUCTURE_TYPE_COMMAND_LIST_DESC,
        ZE_STRUCTURE_TYPE_FENCE_DESC,
        ZE_STRUCTURE_TYPE_COMMAND_QUEUE_GROUP_PROPERTIES,
        ZE_MEMORY_TYPE_UNKNOWN,
        ZE_MEMORY_TYPE_HOST,
        ZE_MEMORY_TYPE_DEVICE,
        ZE_MEMORY_TYPE_SHARED,
        ZE_EVENT_POOL_FLAG_HOST_VISIBLE,
        ZE_EVENT_SCOPE_FLAG_HOST,
        ZE_COMMAND_QUEUE_MODE_SYNCHRONOUS,
        ZE_COMMAND_QUEUE_MODE_ASYNCHRONOUS,
        ZE_DRIVER_MEMORY_FREE_POLICY_EXT_FLAG_BLOCKING_FREE,
        ZE_DRIVER_MEMORY_FREE_POLICY_EXT_FLAG_DEFER_FREE,
        ZE_HOST_MEM_ALLOC_FLAG_BIAS_CACHED,
        ZE_COMMAND_QUEUE_GROUP_PROPERTY_FLAG_COMPUTE,
        ZE_COMMAND_QUEUE_GROUP_PROPERTY_FLAG_COPY,
        ZE_DEVICE_TYPE_GPU,
        ZE_STRUCTURE_TYPE_INIT_DRIVER_TYPE_DESC,
        ZE_INIT_DRIVER_TYPE_FLAG_GPU,
        ZE_INIT_DRIVER_TYPE_FLAG_NPU,
        ZE_STRUCTURE_TYPE_DEVICE_IP_VERSION_EXT,
        ZE_STRUCTURE_TYPE_DEVICE_MEMORY_ACCESS_PROPERTIES,
        ZE_MEMORY_ACCESS_CAP_FLAG_RW,
        ZE_MEMORY_ACCESS_CAP_FLAG_CONCURRENT_ATOMIC,
        ZE_STRUCTURE_TYPE_COUNTER_BASED_EVENT_POOL_EXP_DESC,
        ZE_EVENT_POOL_COUNTER_BASED_EXP_FLAG_IMMEDIATE,
        ZE_EVENT_POOL_COUNTER_BASED_EXP_FLAG_NON_IMMEDIATE,
        ZE_EVENT_POOL_COUNTER_BASED_EXP_VERSION_CURRENT,
        ZE_STRUCTURE_TYPE_RELAXED_ALLOCATION_LIMITS_EXP_DESC,
        ZE_RELAXED_ALLOCATION_LIMITS_EXP_FLAG_MAX_SIZE,
        ZE_COMMAND_QUEUE_FLAG_IN_ORDER,
        ZE_COMMAND_LIST_FLAG_IN_ORDER,
        ZE_EVENT_POOL_FLAG_KERNEL_MAPPED_TIMESTAMP,
        ZE_DEVICE_IP_VERSION_VERSION_CURRENT,
        ZE_RELAXED_ALLOCATION_LIMITS_EXP_VERSION_CURRENT,
    );

    let dir = std::env::temp_dir().join(format!("level-zero-sys-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("layout.c");
    std::fs::write(&source, &c).unwrap();
    let include = headers_1_20_includedir();
    let out = std::process::Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c11", "-fsyntax-only", "-Werror"])
        .arg(format!("-I{include}/level_zero"))
        .arg(concat!("-I", env!("CARGO_MANIFEST_DIR"), "/../ze-software-driver/include"))
        .arg(&source)
        .output()
        .expect("run the C compiler (install gcc)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "the bindings disagree with the C header:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// The headers the bindings come from, as `regenerate.sh` finds them.
fn headers_1_20_includedir() -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/fetch-level-zero-loader");
    let out = std::process::Command::new(script).output().expect("run scripts/fetch-level-zero-loader");
    assert!(out.status.success(), "scripts/fetch-level-zero-loader failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    format!("{}/include", stdout.lines().last().expect("the script prints its directory"))
}
