//! The gauges that change on every allocation and free (`active_requests`,
//! `active_bytes`, `requested_bytes`, `cached_bytes`), kept as one share per
//! thread and read as the sum of the shares.
//!
//! A thread writes only its own share, with a load and a store (never a
//! read-modify-write), so counting costs the hot path no shared cache line.
//! Reading every share on every allocation would share them again, so a
//! thread raises the peaks from the sums only when its own share passes its
//! high-water mark, and for every gauge at its `PEAK_CHECK_EVERY`-th
//! allocation. With one thread allocating every new peak is a new high-water
//! mark, so peaks are exact; with several, a peak may lag a momentary maximum
//! that no thread's own growth reached, by at most that many allocations of
//! each thread.
//!
//! A block freed on another thread than the one it was handed out on goes
//! back to that one (thread_cache.rs), which counts it when it takes it; on
//! the way its bytes are counted apart (`InTransit`), next to the list it
//! waits on, so that neither thread's share drifts (one thread's always
//! growing, the other's always shrinking, passing their marks on every
//! operation).

use std::sync::atomic::{AtomicI64, Ordering};

use super::stats::Stat;

/// Every `PEAK_CHECK_EVERY`-th allocation of a thread checks the peaks against
/// the sum of every thread's shares. It reads the lines other threads write,
/// a cache miss for the reader and then for each writer, so it is much rarer
/// than the poll (`POLL_EVERY`): a few hundred allocations apart, they cost
/// two threads cycling cached blocks a visible share of their throughput
/// (scenario 2 of BENCHMARKS.md).
pub(crate) const PEAK_CHECK_EVERY: i64 = 1024;

/// The gauges kept per thread.
#[derive(Clone, Copy)]
pub(crate) enum Hot {
    ActiveRequests = 0,
    ActiveBytes = 1,
    RequestedBytes = 2,
    CachedBytes = 3,
}

const HOT: usize = 4;

/// One thread's share of each gauge. Written by its thread only, except that
/// a peak reset lowers the high-water marks; read by any. Zero is a valid
/// value (the thread caches holding shares are made zeroed).
pub(crate) struct Shares {
    /// What the thread added less what it removed.
    value: [AtomicI64; HOT],
    /// The total it added; what it removed is the difference. The total
    /// added to `ActiveRequests` counts the thread's allocations.
    added: [AtomicI64; HOT],
    /// The highest `value` reached since the peaks were last checked against
    /// the sum (`i64::MIN` after a peak reset).
    high_water: [AtomicI64; HOT],
}

impl Shares {
    /// The number of the thread's next allocation, for the poll and peak cadences.
    #[inline(always)]
    pub fn next_allocation(&self) -> i64 {
        self.added[Hot::ActiveRequests as usize].load(Ordering::Relaxed).wrapping_add(1)
    }

    /// Counts a block of `bytes` handed out for `requested` bytes, from the
    /// cache or not; true if a share passed its mark (`raise_marks` is due).
    #[inline(always)]
    pub fn handed_out(&self, bytes: i64, requested: i64, from_cache: bool) -> bool {
        if from_cache {
            self.remove(Hot::CachedBytes, bytes);
        }
        let requests = self.count(Hot::ActiveRequests, 1);
        let active = self.count(Hot::ActiveBytes, bytes);
        let asked = self.count(Hot::RequestedBytes, requested);
        requests | active | asked
    }

    /// Counts a block of `bytes` handed out for `requested` bytes as given back.
    #[inline(always)]
    pub fn taken_back(&self, bytes: i64, requested: i64) {
        self.remove(Hot::ActiveRequests, 1);
        self.remove(Hot::ActiveBytes, bytes);
        self.remove(Hot::RequestedBytes, requested);
    }

    /// Adds to a gauge; true if the share passed its high-water mark.
    #[inline(always)]
    pub fn count(&self, gauge: Hot, amount: i64) -> bool {
        let gauge = gauge as usize;
        bump(&self.added[gauge], amount);
        bump(&self.value[gauge], amount) > self.high_water[gauge].load(Ordering::Relaxed)
    }

    #[inline(always)]
    pub fn remove(&self, gauge: Hot, amount: i64) {
        bump(&self.value[gauge as usize], amount.wrapping_neg());
    }

    /// Raises the marks the shares passed. Inlined with the rest of the hot
    /// path: it makes no call, so the hot path needs no registers saved for one.
    #[inline(always)]
    pub fn raise_marks(&self) {
        for (mark, share) in self.high_water.iter().zip(&self.value) {
            let share = share.load(Ordering::Relaxed);
            if share > mark.load(Ordering::Relaxed) {
                mark.store(share, Ordering::Relaxed);
            }
        }
    }

    fn share(&self, gauge: usize) -> i64 {
        self.value[gauge].load(Ordering::Relaxed)
    }

    /// `share`, as an acquire load: a read of the blocks in transit after it stays after it.
    fn share_before_transit(&self, gauge: usize) -> i64 {
        self.value[gauge].load(Ordering::Acquire)
    }

    fn added(&self, gauge: usize) -> i64 {
        self.added[gauge].load(Ordering::Relaxed)
    }
}

/// Adds to a counter only its thread writes (no read-modify-write needed);
/// returns the new value. Wrapping, so that the hot path cannot panic.
#[inline(always)]
fn bump(counter: &AtomicI64, amount: i64) -> i64 {
    let value = counter.load(Ordering::Relaxed).wrapping_add(amount);
    counter.store(value, Ordering::Relaxed);
    value
}

/// Blocks freed on their way back to the thread they were handed out on:
/// freed and cached, though no thread's share counts them yet. Any thread
/// changes it, with read-modify-writes. A free's are each a whole change of
/// the gauges (a block's bytes move from active to cached in one). A thread
/// that takes blocks writes its share's active gauges, then these counters,
/// then its share's cached gauge; a sum reads the active gauges' counters
/// before the share and the cached gauge's after (`Part::value`). So a sum
/// read meanwhile errs low, never high, and a peak is never raised above a
/// value the gauge had. Zero is a valid value, no block on the way (the
/// thread caches holding these are made zeroed).
#[derive(Default)]
pub(crate) struct InTransit {
    blocks: AtomicI64,
    bytes: AtomicI64,
    requested: AtomicI64,
}

impl InTransit {
    /// A block of `bytes` handed out for `requested` bytes was freed onto the way back.
    pub fn freed(&self, bytes: i64, requested: i64) {
        self.blocks.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.requested.fetch_add(requested, Ordering::Relaxed);
    }

    /// Moves `blocks` blocks of `bytes` handed out for `requested` bytes off
    /// the way back into `shares`, their taker's; true if a share passed its
    /// mark (`raise_marks` is due).
    pub fn settle(&self, shares: &Shares, blocks: i64, bytes: i64, requested: i64) -> bool {
        shares.remove(Hot::ActiveRequests, blocks);
        shares.remove(Hot::ActiveBytes, bytes);
        shares.remove(Hot::RequestedBytes, requested);
        // Release: after the active gauges' writes; acquire: before the cached one's.
        self.blocks.fetch_sub(blocks, Ordering::AcqRel);
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.requested.fetch_sub(requested, Ordering::AcqRel);
        shares.count(Hot::CachedBytes, bytes)
    }

    /// What the blocks add to `gauge`; an acquire load, so that a read of a
    /// share after it stays after it.
    fn value(&self, gauge: usize) -> i64 {
        const REQUESTS: usize = Hot::ActiveRequests as usize;
        const ACTIVE: usize = Hot::ActiveBytes as usize;
        const REQUESTED: usize = Hot::RequestedBytes as usize;
        let of = |counter: &AtomicI64| counter.load(Ordering::Acquire);
        match gauge {
            REQUESTS => of(&self.blocks).wrapping_neg(),
            ACTIVE => of(&self.bytes).wrapping_neg(),
            REQUESTED => of(&self.requested).wrapping_neg(),
            _ => of(&self.bytes),
        }
    }
}

/// One thread's part of every gauge: its share, and what blocks on their way
/// back to it add.
#[derive(Clone, Copy)]
pub(crate) struct Part<'a> {
    pub shares: &'a Shares,
    pub in_transit: &'a InTransit,
}

impl Part<'_> {
    /// In the order `InTransit` needs: the cached gauge's share first, the
    /// active gauges' counters first.
    fn value(self, gauge: usize) -> i64 {
        if gauge == Hot::CachedBytes as usize {
            let share = self.shares.share_before_transit(gauge);
            share.wrapping_add(self.in_transit.value(gauge))
        } else {
            let in_transit = self.in_transit.value(gauge);
            in_transit.wrapping_add(self.shares.share(gauge))
        }
    }

    /// The total added: what blocks on the way back add counts as added,
    /// what they take away as removed.
    fn added(self, gauge: usize) -> i64 {
        let added = self.shares.added(gauge);
        added.wrapping_add(self.in_transit.value(gauge).max(0))
    }
}

/// What the gauges need beyond the shares: the peaks, and the totals at the
/// last reset of the accumulated statistics.
#[derive(Default)]
pub(crate) struct Peaks {
    peaks: [AtomicI64; HOT],
    baseline_added: [AtomicI64; HOT],
    baseline_removed: [AtomicI64; HOT],
}

/// Wrapping, so that the hot path's peak checks cannot panic.
fn sum<'a>(parts: impl Iterator<Item = Part<'a>> + Clone, of: impl Fn(Part<'a>) -> i64) -> i64 {
    parts.fold(0, |sum, part| sum.wrapping_add(of(part)))
}

/// The methods take every thread's part, as `ThreadCaches::parts` lists
/// them (cloned to read them more than once).
impl Peaks {
    pub fn current_value<'a>(&self, parts: impl Iterator<Item = Part<'a>> + Clone, gauge: Hot) -> i64 {
        sum(parts, |p| p.value(gauge as usize))
    }

    pub fn stat<'a>(&self, parts: impl Iterator<Item = Part<'a>> + Clone, gauge: Hot) -> Stat {
        let gauge = gauge as usize;
        let added = sum(parts.clone(), |p| p.added(gauge));
        let current = sum(parts, |p| p.value(gauge));
        let removed = added - current;
        Stat {
            current,
            // A reset raced by a concurrent change may leave the peak a little behind.
            peak: self.peaks[gauge].load(Ordering::Relaxed).max(current),
            allocated: added - self.baseline_added[gauge].load(Ordering::Relaxed),
            freed: removed - self.baseline_removed[gauge].load(Ordering::Relaxed),
        }
    }

    /// Sets each peak to the gauge's value. The threads' marks start over, so
    /// that each thread's next addition checks the new peaks (a thread
    /// raising its mark at that moment may keep its old one: its peaks then
    /// lag until its next `PEAK_CHECK_EVERY`-th allocation).
    pub fn reset_peaks<'a>(&self, parts: impl Iterator<Item = Part<'a>> + Clone) {
        for thread in parts.clone() {
            for mark in &thread.shares.high_water {
                mark.store(i64::MIN, Ordering::Relaxed);
            }
        }
        for gauge in 0..HOT {
            self.peaks[gauge].store(sum(parts.clone(), |p| p.value(gauge)), Ordering::Relaxed);
        }
    }

    /// Zeroes the totals (as seen in `stat`), keeping each gauge's current value:
    /// the threads' shares stay as they are, the totals now count from here.
    pub fn reset_totals<'a>(&self, parts: impl Iterator<Item = Part<'a>> + Clone) {
        for gauge in 0..HOT {
            let added = sum(parts.clone(), |p| p.added(gauge));
            let removed = added - sum(parts.clone(), |p| p.value(gauge));
            self.baseline_added[gauge].store(added, Ordering::Relaxed);
            self.baseline_removed[gauge].store(removed, Ordering::Relaxed);
        }
    }

    /// Raises every peak to its gauge's sum, reading each thread's shares once.
    #[inline(always)]
    pub fn raise<'a>(&self, parts: impl Iterator<Item = Part<'a>> + Clone) {
        let mut sums = [0i64; HOT];
        for thread in parts {
            for (sum, gauge) in sums.iter_mut().zip(0..HOT) {
                *sum = sum.wrapping_add(thread.value(gauge));
            }
        }
        for (peak, now) in self.peaks.iter().zip(sums) {
            if now > peak.load(Ordering::Relaxed) {
                peak.fetch_max(now, Ordering::Relaxed);
            }
        }
    }
}
