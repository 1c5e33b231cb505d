//! Bits of `CachingAllocator::watch`: what takes every allocation and free
//! off the hot paths, which read the word once and go on only when it is 0.

/// A capture is under way (`pools.rs`): allocations are routed.
pub(crate) const CAPTURE: u32 = 1;
/// History is recorded (`history.rs`).
pub(crate) const HISTORY: u32 = 2;
