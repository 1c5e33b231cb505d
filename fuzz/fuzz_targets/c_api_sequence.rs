//! Sequences of C API calls through the software Level Zero driver, checked
//! against src/c_api_model.rs. Run with ZE_ENABLE_ALT_DRIVERS set (scripts/test-long does).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xpu_caching_host_allocator_fuzz::c_api_model::run(data);
});
