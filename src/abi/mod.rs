//! The ABI layer: what C and C++ see. It translates, and holds every `unsafe`
//! that faces a caller; the allocator itself lives in `caching`.
//!
//! - `c_api`: the `xpu_host_*` C API of the generated header.
//! - `capture_api`: its graph-capture part: capture hooks and private pools.
//! - `history_api`: its memory-history part: recording, traces, segments.
//! - `pytorch`: `getCachingHostAllocator` and friends, plain and `at::xpu::`-mangled.
//! - `cxx_allocator`: the `c10::Allocator`-compatible object and its vtable.
//! - `cxx_exception`: throwing `std::runtime_error` from the vtable's `allocate`.
//! - `error`: the error-code enum, the last error message, the panic guard.
//! - `instance`: the one allocator of the process.
//! - `lifecycle`: what a forked child and an exiting process get.
//! - `sized`: reading and writing the C structs that carry their size.

pub mod c_api;
pub mod capture_api;
mod cxx_allocator;
mod cxx_exception;
pub mod error;
pub mod history_api;
mod instance;
mod lifecycle;
pub mod pytorch;
mod sized;
