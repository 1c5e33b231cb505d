//! Exact fit's budget: the bytes held from the backend stay within
//! `1 + 1/SLACK_DIVISOR` of the most bytes ever requested at once (the high
//! water), wherever the workload allows it.
//!
//! Two rules keep it, both off the hot path:
//! - A cached block larger than a request serves it only while the waste of
//!   every block handed out (their bytes beyond what was asked) stays within
//!   the slack; a block of the request's own aligned size always may.
//! - Before a miss asks the backend for memory, cached blocks go back, the
//!   largest first, until the held bytes and the new block fit the budget.
//!   Held bytes include what the backend holds beyond the blocks
//!   ([`unused_bytes`](super::HostMemory::unused_bytes)): giving back a
//!   block that shares backend memory with blocks in use frees nothing.
//!
//! The budget is broken only when the blocks handed out or waiting for
//! stream events alone exceed it; nothing cached is then left to give back.
//!
//! A budget smaller than the working set thrashes: a loop that allocates and
//! frees 4 KiB, 64 KiB, 1 MiB and 3 MB in turn holds 3 MB at once but needs
//! all four blocks cached, and each miss would give back the block the next
//! one asks for. So the budget notes the sizes it gave back, and when at
//! least `THRASH_MISSES` of the last `RECENT_MISSES` misses (that found
//! something cached) asked for a size it gave back within the last
//! `RECENT_MISSES` such misses, it grows by that size, up to the high water
//! again. Each miss that is not such a regret takes 1/8 of the growth back.
//! Misses that drift through sizes regret far less often (the traces of
//! scenario 5 in BENCHMARKS.md), so there the budget stays as it is.
//!
//! The high water is read from the requested-bytes gauge (its peak and its
//! value) at each decision and before each peak reset, and never lowered: a
//! reset of the statistics must not make the allocator give memory back.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use super::gauges::Hot;
use super::size_class::SizeClass;
use super::sync::lock;
use super::thread_cache::Mine;
use super::{Backend, CachingAllocator, Stat};

/// Held bytes may exceed the high water by 1/SLACK_DIVISOR of it.
pub(crate) const SLACK_DIVISOR: i64 = 200;

/// A reused block may exceed its request by at most 1/REUSE_DIVISOR of the
/// request's aligned size, whatever the slack allows: the lists looked
/// through are the request's class and the next (eight steps per power of
/// two), and a small budget is better spent on many small wastes.
const REUSE_DIVISOR: usize = 8;

/// The misses a regret is looked for in, and the regrets among them that grow the budget.
const RECENT_MISSES: u32 = 16;
const THRASH_MISSES: u32 = 15;
/// Sizes given back that are remembered (each miss gives back a few at most).
const GIVEN_BACK: usize = 32;

#[derive(Default)]
pub(super) struct Budget {
    /// The most bytes requested at once that a decision or a peak reset saw.
    high_water: AtomicI64,
    thrash: Mutex<Thrash>,
}

/// What tells a budget that thrashes, under its own lock (taken by misses
/// that find something cached, which call the backend anyway).
#[derive(Default)]
struct Thrash {
    /// Sizes given back, with the miss that gave each back (0: none).
    given_back: [(usize, u64); GIVEN_BACK],
    next: usize,
    /// Misses counted so far.
    misses: u64,
    /// One bit per recent miss, set for a regret, the newest lowest.
    regrets: u32,
    /// Bytes the budget grew by.
    growth: i64,
}

impl Thrash {
    /// Counts a miss for `size` bytes; returns the growth.
    fn miss(&mut self, size: usize, high_water: i64) -> i64 {
        self.misses += 1;
        let recent = |&(given, at): &(usize, u64)| given == size && at + u64::from(RECENT_MISSES) >= self.misses;
        let regret = match self.given_back.iter().position(recent) {
            Some(index) => {
                self.given_back[index] = (0, 0);
                true
            }
            None => false,
        };
        self.regrets = (self.regrets << 1 | u32::from(regret)) & ((1 << RECENT_MISSES) - 1);
        if !regret {
            self.growth -= self.growth / 8;
        } else if self.regrets.count_ones() >= THRASH_MISSES {
            self.growth = self.growth.saturating_add(signed(size)).min(high_water);
        }
        self.growth
    }

    fn gave_back(&mut self, size: usize) {
        self.given_back[self.next] = (size, self.misses);
        self.next = (self.next + 1) % GIVEN_BACK;
    }
}

impl<B: Backend> CachingAllocator<B> {
    /// The high water, raised to the requested-bytes gauge `requested` (as
    /// read now) with a request of `request` bytes about to be handed out.
    fn high_water(&self, requested: Stat, request: usize) -> i64 {
        let now = requested.peak.max(requested.current.saturating_add(signed(request)));
        self.budget.high_water.fetch_max(now, Ordering::Relaxed).max(now)
    }

    /// Before a peak reset: the peak it forgets stays in the high water.
    pub(super) fn keep_high_water(&self) {
        self.high_water(self.caches.stat(Hot::RequestedBytes), 0);
    }

    /// The class `class` of a request of `request` bytes with the waste the
    /// slack allows now, or `None` if it allows none beyond the alignment.
    pub(super) fn with_slack(&self, request: usize, class: &SizeClass) -> Option<SizeClass> {
        let requested = self.caches.stat(Hot::RequestedBytes);
        let slack = self.high_water(requested, request) / SLACK_DIVISOR;
        let waste = self.caches.current_value(Hot::ActiveBytes) - requested.current;
        let allowed = usize::try_from(slack - waste).ok()?.min(class.size / REUSE_DIVISOR);
        (allowed >= 512).then(|| SizeClass { step: class.step + allowed, ..*class })
    }

    /// Before new memory of `size` bytes: gives cached blocks back, the
    /// largest first, until the held bytes and `size` fit the budget or
    /// nothing cached is left.
    pub(super) fn keep_budget(&self, local: Mine<'_>, request: usize, size: usize) {
        let high_water = self.high_water(self.caches.stat(Hot::RequestedBytes), request);
        let growth = lock(&self.budget.thrash).miss(size, high_water);
        let limit = high_water.saturating_add(high_water / SLACK_DIVISOR).saturating_add(growth);
        let over = || {
            let held = self.counters.held_bytes().saturating_add(signed(self.backend.unused_bytes()));
            held.saturating_add(signed(size)).saturating_sub(limit)
        };
        if over() <= 0 {
            return;
        }
        let mut cached: Vec<_> = self.cached_blocks(local).map(|(entry, block)| (block.size(), entry)).collect();
        cached.sort_unstable_by_key(|&(size, _)| std::cmp::Reverse(size));
        for (_, entry) in cached {
            // A failed free is the backend's to report; the block is gone from the cache either way.
            let (Ok(bytes) | Err((bytes, _))) = self.release_cached(local, entry);
            if bytes > 0 {
                lock(&self.budget.thrash).gave_back(bytes);
            }
            // Asked again: a block sharing backend memory gives back only what its last block frees.
            if over() <= 0 {
                return;
            }
        }
    }
}

/// Bytes as the gauges count them; sizes beyond `i64::MAX` (which no backend
/// gives) count as `i64::MAX`.
fn signed(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}
