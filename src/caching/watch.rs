//! Bits of `CachingAllocator::watch`: what takes allocations or frees off
//! the hot paths, which read the word once and go on only when their bits
//! are clear.

/// A capture is under way (`pools.rs`): allocations are routed.
pub(crate) const CAPTURE: u32 = 1;
/// History is recorded (`history.rs`).
pub(crate) const HISTORY: u32 = 2;
/// A cache cap or release on miss lists cached blocks oldest first
/// (`release.rs`), which the hot free does not: set for good.
pub(crate) const OLDEST: u32 = 4;

/// What sends allocations off the hot path.
pub(crate) const ALLOCATIONS: u32 = CAPTURE | HISTORY;
/// What sends frees off the hot path.
pub(crate) const FREES: u32 = CAPTURE | HISTORY | OLDEST;
