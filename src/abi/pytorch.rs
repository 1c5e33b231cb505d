//! The three functions PyTorch 2.4–2.7's `ATen/xpu/CachingHostAllocator.h`
//! declares, under their plain C names (in the generated header) and under
//! their Itanium-mangled `at::xpu::` names (docs/ABI.md section 1), so that a PyTorch
//! XPU build links against this library in place of `CachingHostAllocator.cpp`.

use std::ffi::c_void;

use super::c_api::{record_stream, xpu_host_empty_cache, xpu_host_stream};
use super::cxx_allocator::cxx_allocator;
use super::error::{catch_panic, ffi_call, xpu_host_result};

/// The process's allocator as a C++ `c10::Allocator*` (the object is static and
/// never destroyed). Its `allocate` throws on failure; its `DataPtr`s free
/// through their deleter. Thread-safe.
#[no_mangle]
pub extern "C" fn getCachingHostAllocator() -> *mut c_void {
    // Nothing here can panic; the guard only makes sure of it.
    catch_panic(|| Ok(cxx_allocator())).map_or(std::ptr::null_mut(), |a| a.cast_mut().cast())
}

/// PyTorch's `recordEvent`: true if `ctx` (or else `ptr` as a base address)
/// names a block in use, which `stream` now uses; false otherwise, changing
/// nothing (an invalid stream also gives false, with the last error message set).
#[no_mangle]
pub extern "C" fn CachingHostAllocator_recordEvent(
    ptr: *mut c_void,
    ctx: *mut c_void,
    stream: xpu_host_stream,
) -> bool {
    let mut recorded = false;
    let result = ffi_call(|| {
        recorded = record_stream(ptr, ctx, stream)?;
        Ok(())
    });
    result == xpu_host_result::XPU_HOST_SUCCESS && recorded
}

/// PyTorch's `emptyCache`: returns every free cached block to the driver.
/// Failures are left in the last error message.
#[no_mangle]
pub extern "C" fn CachingHostAllocator_emptyCache() {
    xpu_host_empty_cache();
}

#[export_name = "_ZN2at3xpu23getCachingHostAllocatorEv"]
extern "C" fn at_xpu_get_caching_host_allocator() -> *mut c_void {
    getCachingHostAllocator()
}

#[export_name = "_ZN2at3xpu32CachingHostAllocator_recordEventEPvS1_N3c103xpu9XPUStreamE"]
extern "C" fn at_xpu_caching_host_allocator_record_event(
    ptr: *mut c_void,
    ctx: *mut c_void,
    stream: xpu_host_stream,
) -> bool {
    CachingHostAllocator_recordEvent(ptr, ctx, stream)
}

#[export_name = "_ZN2at3xpu31CachingHostAllocator_emptyCacheEv"]
extern "C" fn at_xpu_caching_host_allocator_empty_cache() {
    CachingHostAllocator_emptyCache()
}
