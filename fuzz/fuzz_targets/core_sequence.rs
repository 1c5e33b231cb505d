//! Sequences of calls into the caching core (in-process backend, injected
//! faults) checked against the model in src/core_model.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xpu_caching_host_allocator_fuzz::core_model::run(data);
});
