//! The models the fuzz targets drive (tests/core_model.rs and
//! tests/c_api_model.rs replay them on seeded sequences in `cargo test`).
pub mod bytes;
pub mod c_api_model;
pub mod core_model;
