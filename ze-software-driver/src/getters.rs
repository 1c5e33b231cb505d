//! The exported DDI table getters, the only symbols of the library. The loader
//! calls all of them before `zeInit` and reaches everything else through the
//! tables they fill.
//!
//! A getter accepts any 1.x version and fills only the slots that exist in
//! the version asked for (the loader's own: 1.4 for loader 1.8, 1.12 for
//! loader 1.20); for a version newer than the bindings (1.12) it fills what it
//! knows, since tables only grow at their end. Slots of functions this driver
//! does not implement stay as the loader left them, and getters of tables it
//! does not implement at all succeed without touching them: the loader
//! requires all 46 non-experimental getters.

use std::sync::atomic::{AtomicU32, Ordering};

use level_zero_sys::*;

use crate::api::{entry, ZeResult};
use crate::ffi::output;
use crate::{command_list, context, device, driver, event, fence, memory, queue};

/// The version the loader asked for its tables, 1.0 until it asks.
static LOADER_VERSION: AtomicU32 = AtomicU32::new(ZE_API_VERSION_1_0);

/// The newest API version whose functions the loader can reach in this driver.
pub fn loader_version() -> ze_api_version_t {
    LOADER_VERSION.load(Ordering::Relaxed)
}

fn check_version(version: ze_api_version_t) -> ZeResult {
    if version >> 16 == 1 {
        Ok(())
    } else {
        Err(ZE_RESULT_ERROR_UNSUPPORTED_VERSION)
    }
}

/// Defines exported getters: `name(Table) |table, version| { fill }`, or just
/// `name(Table)` for a table this driver leaves alone.
macro_rules! getters {
    ($($name:ident($table:ty) $(|$slots:ident, $version:ident| $fill:block)?;)*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(version: ze_api_version_t, table: *mut $table) -> ze_result_t {
            entry(stringify!($name), || {
                // SAFETY: the loader passes a table of its own, writable during the call.
                let _slots = unsafe { output(table) }?;
                check_version(version)?;
                $(let $slots = _slots; let $version = version; $fill)?
                Ok(())
            })
        }
    )*};
}

getters! {
    zeGetGlobalProcAddrTable(ze_global_dditable_t) |slots, version| {
        // The loader asks for every table with the one version it was built for.
        LOADER_VERSION.store(version, Ordering::Relaxed);
        slots.pfnInit = Some(driver::init);
        if version >= ZE_API_VERSION_1_10 {
            slots.pfnInitDrivers = Some(driver::init_drivers);
        }
    };
    zeGetDriverProcAddrTable(ze_driver_dditable_t) |slots, version| {
        slots.pfnGet = Some(driver::get);
        slots.pfnGetApiVersion = Some(driver::get_api_version);
        slots.pfnGetProperties = Some(driver::get_properties);
        slots.pfnGetExtensionProperties = Some(driver::get_extension_properties);
        if version >= ZE_API_VERSION_1_1 {
            slots.pfnGetExtensionFunctionAddress = Some(driver::get_extension_function_address);
        }
    };
    zeGetDeviceProcAddrTable(ze_device_dditable_t) |slots, version| {
        slots.pfnGet = Some(device::get);
        slots.pfnGetSubDevices = Some(device::get_sub_devices);
        slots.pfnGetProperties = Some(device::get_properties);
        slots.pfnGetCommandQueueGroupProperties = Some(device::get_command_queue_group_properties);
        slots.pfnGetMemoryAccessProperties = Some(device::get_memory_access_properties);
        if version >= ZE_API_VERSION_1_7 {
            slots.pfnGetRootDevice = Some(device::get_root_device);
        }
    };
    zeGetContextProcAddrTable(ze_context_dditable_t) |slots, version| {
        slots.pfnCreate = Some(context::create);
        slots.pfnDestroy = Some(context::destroy);
        slots.pfnGetStatus = Some(context::get_status);
        slots.pfnMakeMemoryResident = Some(memory::make_resident);
        slots.pfnEvictMemory = Some(memory::evict);
        if version >= ZE_API_VERSION_1_1 {
            slots.pfnCreateEx = Some(context::create_ex);
        }
    };
    zeGetCommandQueueProcAddrTable(ze_command_queue_dditable_t) |slots, _version| {
        slots.pfnCreate = Some(queue::create);
        slots.pfnDestroy = Some(queue::destroy);
        slots.pfnExecuteCommandLists = Some(queue::execute_command_lists);
        slots.pfnSynchronize = Some(queue::synchronize);
    };
    zeGetCommandListProcAddrTable(ze_command_list_dditable_t) |slots, version| {
        slots.pfnCreate = Some(command_list::create);
        slots.pfnCreateImmediate = Some(command_list::create_immediate);
        slots.pfnDestroy = Some(command_list::destroy);
        slots.pfnClose = Some(command_list::close);
        slots.pfnReset = Some(command_list::reset);
        slots.pfnAppendBarrier = Some(command_list::append_barrier);
        slots.pfnAppendMemoryCopy = Some(command_list::append_memory_copy);
        slots.pfnAppendMemoryFill = Some(command_list::append_memory_fill);
        slots.pfnAppendSignalEvent = Some(command_list::append_signal_event);
        slots.pfnAppendWaitOnEvents = Some(command_list::append_wait_on_events);
        slots.pfnAppendEventReset = Some(command_list::append_event_reset);
        if version >= ZE_API_VERSION_1_6 {
            slots.pfnHostSynchronize = Some(command_list::host_synchronize);
        }
    };
    zeGetEventPoolProcAddrTable(ze_event_pool_dditable_t) |slots, _version| {
        slots.pfnCreate = Some(event::pool_create);
        slots.pfnDestroy = Some(event::pool_destroy);
    };
    zeGetEventProcAddrTable(ze_event_dditable_t) |slots, _version| {
        slots.pfnCreate = Some(event::create);
        slots.pfnDestroy = Some(event::destroy);
        slots.pfnHostSignal = Some(event::host_signal);
        slots.pfnHostSynchronize = Some(event::host_synchronize);
        slots.pfnQueryStatus = Some(event::query_status);
        slots.pfnHostReset = Some(event::host_reset);
        slots.pfnQueryKernelTimestamp = Some(event::query_kernel_timestamp);
    };
    zeGetFenceProcAddrTable(ze_fence_dditable_t) |slots, _version| {
        slots.pfnCreate = Some(fence::create);
        slots.pfnDestroy = Some(fence::destroy);
        slots.pfnHostSynchronize = Some(fence::host_synchronize);
        slots.pfnQueryStatus = Some(fence::query_status);
        slots.pfnReset = Some(fence::reset);
    };
    zeGetMemProcAddrTable(ze_mem_dditable_t) |slots, version| {
        slots.pfnAllocShared = Some(memory::alloc_shared);
        slots.pfnAllocDevice = Some(memory::alloc_device);
        slots.pfnAllocHost = Some(memory::alloc_host);
        slots.pfnFree = Some(memory::free);
        slots.pfnGetAllocProperties = Some(memory::get_alloc_properties);
        slots.pfnGetAddressRange = Some(memory::get_address_range);
        if version >= ZE_API_VERSION_1_3 {
            slots.pfnFreeExt = Some(memory::free_ext);
        }
    };
    zeGetImageProcAddrTable(ze_image_dditable_t);
    zeGetKernelProcAddrTable(ze_kernel_dditable_t);
    zeGetModuleProcAddrTable(ze_module_dditable_t);
    zeGetModuleBuildLogProcAddrTable(ze_module_build_log_dditable_t);
    zeGetPhysicalMemProcAddrTable(ze_physical_mem_dditable_t);
    zeGetSamplerProcAddrTable(ze_sampler_dditable_t);
    zeGetVirtualMemProcAddrTable(ze_virtual_mem_dditable_t);
    zetGetDeviceProcAddrTable(zet_device_dditable_t);
    zetGetContextProcAddrTable(zet_context_dditable_t);
    zetGetCommandListProcAddrTable(zet_command_list_dditable_t);
    zetGetKernelProcAddrTable(zet_kernel_dditable_t);
    zetGetModuleProcAddrTable(zet_module_dditable_t);
    zetGetDebugProcAddrTable(zet_debug_dditable_t);
    zetGetMetricProcAddrTable(zet_metric_dditable_t);
    zetGetMetricGroupProcAddrTable(zet_metric_group_dditable_t);
    zetGetMetricQueryProcAddrTable(zet_metric_query_dditable_t);
    zetGetMetricQueryPoolProcAddrTable(zet_metric_query_pool_dditable_t);
    zetGetMetricStreamerProcAddrTable(zet_metric_streamer_dditable_t);
    zetGetTracerExpProcAddrTable(zet_tracer_exp_dditable_t);
    zesGetDeviceProcAddrTable(zes_device_dditable_t);
    zesGetDriverProcAddrTable(zes_driver_dditable_t);
    zesGetDiagnosticsProcAddrTable(zes_diagnostics_dditable_t);
    zesGetEngineProcAddrTable(zes_engine_dditable_t);
    zesGetFabricPortProcAddrTable(zes_fabric_port_dditable_t);
    zesGetFanProcAddrTable(zes_fan_dditable_t);
    zesGetFirmwareProcAddrTable(zes_firmware_dditable_t);
    zesGetFrequencyProcAddrTable(zes_frequency_dditable_t);
    zesGetLedProcAddrTable(zes_led_dditable_t);
    zesGetMemoryProcAddrTable(zes_memory_dditable_t);
    zesGetPerformanceFactorProcAddrTable(zes_performance_factor_dditable_t);
    zesGetPowerProcAddrTable(zes_power_dditable_t);
    zesGetPsuProcAddrTable(zes_psu_dditable_t);
    zesGetRasProcAddrTable(zes_ras_dditable_t);
    zesGetSchedulerProcAddrTable(zes_scheduler_dditable_t);
    zesGetStandbyProcAddrTable(zes_standby_dditable_t);
    zesGetTemperatureProcAddrTable(zes_temperature_dditable_t);
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERSION_1_17: ze_api_version_t = 1 << 16 | 17;
    const VERSION_2_0: ze_api_version_t = 2 << 16;

    fn mem_table(version: ze_api_version_t) -> (ze_result_t, ze_mem_dditable_t) {
        let mut table = ze_mem_dditable_t::default();
        // SAFETY: the table is a valid local.
        let result = unsafe { zeGetMemProcAddrTable(version, &mut table) };
        (result, table)
    }

    #[test]
    fn fills_only_the_slots_of_the_version_asked_for() {
        let (result, table) = mem_table(ZE_API_VERSION_1_0);
        assert_eq!(result, ZE_RESULT_SUCCESS);
        assert!(table.pfnAllocHost.is_some());
        assert!(table.pfnFreeExt.is_none(), "zeMemFreeExt is from 1.3");

        let (result, table) = mem_table(ZE_API_VERSION_1_3);
        assert_eq!(result, ZE_RESULT_SUCCESS);
        assert!(table.pfnFreeExt.is_some());

        let mut contexts = ze_context_dditable_t::default();
        let mut drivers = ze_driver_dditable_t::default();
        // SAFETY: the tables are valid locals.
        unsafe {
            assert_eq!(zeGetContextProcAddrTable(ZE_API_VERSION_1_0, &mut contexts), ZE_RESULT_SUCCESS);
            assert_eq!(zeGetDriverProcAddrTable(ZE_API_VERSION_1_0, &mut drivers), ZE_RESULT_SUCCESS);
        }
        assert!(contexts.pfnCreate.is_some() && contexts.pfnCreateEx.is_none(), "zeContextCreateEx is from 1.1");
        assert!(drivers.pfnGet.is_some() && drivers.pfnGetExtensionFunctionAddress.is_none());
        // SAFETY: as above.
        unsafe {
            assert_eq!(zeGetContextProcAddrTable(ZE_API_VERSION_1_1, &mut contexts), ZE_RESULT_SUCCESS);
            assert_eq!(zeGetDriverProcAddrTable(ZE_API_VERSION_1_1, &mut drivers), ZE_RESULT_SUCCESS);
        }
        assert!(contexts.pfnCreateEx.is_some() && drivers.pfnGetExtensionFunctionAddress.is_some());
    }

    #[test]
    fn accepts_newer_minor_versions_and_rejects_other_majors() {
        let (result, table) = mem_table(VERSION_1_17);
        assert_eq!(result, ZE_RESULT_SUCCESS);
        assert!(table.pfnFreeExt.is_some());

        assert_eq!(mem_table(VERSION_2_0).0, ZE_RESULT_ERROR_UNSUPPORTED_VERSION);
        // SAFETY: a null table is what is being tested.
        let result = unsafe { zeGetMemProcAddrTable(ZE_API_VERSION_1_4, std::ptr::null_mut()) };
        assert_eq!(result, ZE_RESULT_ERROR_INVALID_NULL_POINTER);
    }

    #[test]
    fn untouched_tables_stay_untouched() {
        let mut table = ze_image_dditable_t::default();
        // SAFETY: the table is a valid local.
        assert_eq!(unsafe { zeGetImageProcAddrTable(ZE_API_VERSION_1_4, &mut table) }, ZE_RESULT_SUCCESS);
        assert!(table.pfnCreate.is_none());
    }
}
