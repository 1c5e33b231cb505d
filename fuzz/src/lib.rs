//! The models the fuzz targets drive.
pub mod core_model;
