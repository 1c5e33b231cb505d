//! The models the fuzz targets drive (tests/core_model.rs and
//! tests/c_api_model.rs replay them on seeded sequences in `cargo test`).
pub mod bytes;
pub mod c_api_model;
pub mod core_model;
#[path = "../../src/caching/fake_backend.rs"]
#[allow(dead_code)] // the model uses only part of it, the core's unit tests the rest
mod fake_backend;
pub mod history_model;
pub mod pool_model;

// For fake_backend.rs, which names the core's types by `crate::caching`.
use xpu_caching_host_allocator::caching;
