//! A pinned-host-memory caching allocator for PyTorch on Intel GPUs.
//!
//! Three layers, one folder each:
//! - [`caching`]: blocks, size classes, free lists, per-stream pending queues
//!   and statistics, generic over a backend; no Level Zero, no C, no C++.
//! - `level_zero`: the backend over the Level Zero API.
//! - `abi`: the C API, the `c10::Allocator`-compatible object and the exported
//!   `at::xpu::` symbols. Only translation happens there.

pub mod abi;
pub mod caching;
pub mod level_zero;
