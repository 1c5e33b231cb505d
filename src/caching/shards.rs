//! What a thread touches on the hot path: its shard, one per core, holding the
//! free lists (one LIFO list per size class) and the counters that change on
//! every allocation and free, all behind one lock that only that thread takes
//! in the common case.
//!
//! When its own shard has no block, a thread takes from the others before
//! asking the backend for memory, so no cached block is ever out of reach; and
//! nothing is lost when a thread exits: the shards belong to the allocator.
//!
//! The counters are atomics so that statistics read them without the lock,
//! but only the lock holder writes them, so a change is a plain load and
//! store, not a read-modify-write.

#![allow(unexpected_cfgs)]

#[cfg(loom)]
use loom::sync::{
    atomic::{fence, AtomicI64, AtomicU64},
    Mutex, MutexGuard,
};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(loom))]
use std::sync::{
    atomic::{fence, AtomicI64, AtomicU64},
    Mutex, MutexGuard,
};

use super::size_class::CLASS_COUNT;
use super::stats::Stat;

/// The gauges kept per shard and read as their sum.
#[derive(Clone, Copy)]
pub(crate) enum Hot {
    ActiveRequests = 0,
    ActiveBytes = 1,
    RequestedBytes = 2,
    CachedBytes = 3,
}

const HOT: usize = 4;
const GAUGES: [Hot; HOT] = [Hot::ActiveRequests, Hot::ActiveBytes, Hot::RequestedBytes, Hot::CachedBytes];
/// How many additions a shard makes at most between two reads of the sum.
const PEAK_CHECK_EVERY: i64 = 64;

pub(crate) struct Shards {
    shards: Box<[Shard]>,
    /// Peaks of the gauges' sums. Exact while one thread allocates; with
    /// several, a peak is the largest sum one of them saw.
    peaks: [AtomicI64; HOT],
    /// What the gauges were when their totals were last reset.
    carried: [AtomicI64; HOT],
    /// Odd while a reset moves totals into `carried`, counting up by one at its
    /// start and its end: a sum read across a reset is not a value the gauge
    /// had, so a peak check that saw the count change keeps the old peak.
    resets: AtomicU64,
}

#[repr(align(64))]
struct Shard {
    lists: Mutex<Box<[Vec<u32>]>>,
    /// Totals added and removed: a gauge is what was added less what was removed.
    added: [AtomicI64; HOT],
    removed: [AtomicI64; HOT],
    cache_hits: AtomicI64,
    /// The highest each gauge's share of this shard reached since the peaks
    /// were last checked against the sum; written under the lock only.
    high_water: [AtomicI64; HOT],
    /// Additions since the sum was last read, to bound how long a peak can lag.
    since_check: AtomicI64,
}

/// One shard, locked.
pub(crate) struct ShardGuard<'a> {
    shards: &'a Shards,
    shard: &'a Shard,
    lists: MutexGuard<'a, Box<[Vec<u32>]>>,
}

/// One shard per core (up to 64): threads beyond that share shards.
fn shard_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).next_power_of_two().min(64)
}

/// The calling thread's index: threads take indices in turn as they first ask.
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX
        .try_with(|index| {
            if index.get() == usize::MAX {
                index.set(NEXT.fetch_add(1, Ordering::Relaxed));
            }
            index.get()
        })
        // A thread being torn down still frees its blocks, to shard 0.
        .unwrap_or(0)
}

impl Shards {
    pub fn new() -> Shards {
        Shards {
            shards: (0..shard_count())
                .map(|_| Shard {
                    lists: Mutex::new((0..CLASS_COUNT).map(|_| Vec::new()).collect()),
                    added: Default::default(),
                    removed: Default::default(),
                    cache_hits: AtomicI64::new(0),
                    high_water: Default::default(),
                    since_check: AtomicI64::new(0),
                })
                .collect(),
            peaks: Default::default(),
            carried: Default::default(),
            resets: AtomicU64::new(0),
        }
    }

    /// The calling thread's shard.
    pub fn current(&self) -> usize {
        thread_index() % self.shards.len()
    }

    pub fn lock(&self, index: usize) -> ShardGuard<'_> {
        let shard = &self.shards[index];
        ShardGuard { shards: self, shard, lists: shard.lists.lock().unwrap_or_else(|e| e.into_inner()) }
    }

    /// A cached block from a shard other than `index`: the most recently freed
    /// one in the first of `classes` that has one that `fits`, counted as a hit
    /// there.
    pub fn steal(
        &self,
        index: usize,
        classes: &[usize],
        fits: impl Fn(u32) -> bool,
        size_of: impl Fn(u32) -> i64,
    ) -> Option<u32> {
        (1..self.shards.len()).map(|i| (index + i) % self.shards.len()).find_map(|other| {
            let mut guard = self.lock(other);
            let id = classes.iter().find_map(|&class| guard.take(class, &fits))?;
            guard.remove(&[(Hot::CachedBytes, size_of(id))]);
            guard.hit();
            Some(id)
        })
    }

    /// Takes block `id` out of list `class` wherever it is; false if it is not there.
    pub fn remove(&self, class: usize, id: u32, size: i64) -> bool {
        (0..self.shards.len()).any(|index| {
            let mut guard = self.lock(index);
            let list = &mut guard.lists[class];
            let Some(position) = list.iter().position(|&other| other == id) else { return false };
            list.remove(position);
            guard.remove(&[(Hot::CachedBytes, size)]);
            true
        })
    }

    /// Empties every list, returning what was in them with their sizes.
    pub fn drain(&self, size_of: impl Fn(u32) -> i64) -> Vec<u32> {
        let mut all = Vec::new();
        for index in 0..self.shards.len() {
            let mut guard = self.lock(index);
            let drained: Vec<u32> = guard.lists.iter_mut().flat_map(std::mem::take).collect();
            let bytes = drained.iter().map(|&id| size_of(id)).sum();
            guard.remove(&[(Hot::CachedBytes, bytes)]);
            all.extend(drained);
        }
        all
    }

    /// Blocks cached per class.
    pub fn counts(&self) -> Vec<usize> {
        let mut counts = vec![0; CLASS_COUNT];
        for index in 0..self.shards.len() {
            let guard = self.lock(index);
            counts.iter_mut().zip(guard.lists.iter()).for_each(|(count, list)| *count += list.len());
        }
        counts
    }

    fn sum(&self, of: fn(&Shard) -> &[AtomicI64; HOT], gauge: Hot) -> i64 {
        self.shards.iter().map(|shard| of(shard)[gauge as usize].load(Ordering::Relaxed)).sum()
    }

    pub fn current_value(&self, gauge: Hot) -> i64 {
        self.carried[gauge as usize].load(Ordering::Relaxed) + self.sum(|s| &s.added, gauge) - self.sum(|s| &s.removed, gauge)
    }

    pub fn stat(&self, gauge: Hot) -> Stat {
        let current = self.current_value(gauge);
        Stat {
            current,
            // A reset raced by a concurrent change may leave the peak a little behind.
            peak: self.peaks[gauge as usize].load(Ordering::Relaxed).max(current),
            allocated: self.sum(|s| &s.added, gauge),
            freed: self.sum(|s| &s.removed, gauge),
        }
    }

    pub fn cache_hits(&self) -> i64 {
        self.shards.iter().map(|shard| shard.cache_hits.load(Ordering::Relaxed)).sum()
    }

    pub fn reset_peaks(&self) {
        for index in 0..self.shards.len() {
            let guard = self.lock(index);
            for gauge in 0..HOT {
                let share = guard.shard.added[gauge].load(Ordering::Relaxed) - guard.shard.removed[gauge].load(Ordering::Relaxed);
                guard.shard.high_water[gauge].store(share, Ordering::Relaxed);
            }
        }
        for gauge in GAUGES {
            self.peaks[gauge as usize].store(self.current_value(gauge), Ordering::Relaxed);
        }
    }

    /// Raises a gauge's peak to its current sum, unless a reset of the totals
    /// ran while the sum was read (a seqlock read of the counters).
    fn raise_peak(&self, gauge: Hot) {
        let resets = self.resets.load(Ordering::Acquire);
        if resets % 2 == 1 {
            return;
        }
        let now = self.current_value(gauge);
        fence(Ordering::Acquire);
        if self.resets.load(Ordering::Relaxed) != resets {
            return;
        }
        let peak = &self.peaks[gauge as usize];
        if now > peak.load(Ordering::Relaxed) {
            peak.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// Zeroes the totals, keeping each gauge's current value.
    pub fn reset_totals(&self) {
        self.resets.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.move_totals_to_carried();
        self.resets.fetch_add(1, Ordering::Release);
    }

    fn move_totals_to_carried(&self) {
        for index in 0..self.shards.len() {
            let guard = self.lock(index);
            for gauge in 0..HOT {
                let net = guard.shard.added[gauge].load(Ordering::Relaxed) - guard.shard.removed[gauge].load(Ordering::Relaxed);
                guard.shard.added[gauge].store(0, Ordering::Relaxed);
                guard.shard.removed[gauge].store(0, Ordering::Relaxed);
                // The share starts again from 0, and so does its mark.
                bump(&guard.shard.high_water[gauge], -net);
                self.carried[gauge].fetch_add(net, Ordering::Relaxed);
            }
            guard.shard.cache_hits.store(0, Ordering::Relaxed);
        }
    }
}

impl ShardGuard<'_> {
    /// The most recently freed block in list `class` that `fits`.
    pub fn take(&mut self, class: usize, fits: impl Fn(u32) -> bool) -> Option<u32> {
        let list = &mut self.lists[class];
        let position = list.iter().rposition(|&id| fits(id))?;
        Some(list.remove(position))
    }

    pub fn push(&mut self, class: usize, id: u32) {
        self.lists[class].push(id);
    }

    /// Adds to gauges, then raises their peaks.
    ///
    /// Reading every shard's counters on every allocation would make threads
    /// share cache lines, so the sum is read only when this shard's share of a
    /// gauge passes its high-water mark, or at every `PEAK_CHECK_EVERY`-th
    /// addition. With one thread allocating every new peak is a new high-water
    /// mark, so peaks are exact; with several, a peak may lag a momentary
    /// maximum that no shard's own growth reached, by at most that many additions.
    pub fn add(&self, changes: &[(Hot, i64)]) {
        let since_check = self.shard.since_check.load(Ordering::Relaxed) + 1;
        let due = since_check >= PEAK_CHECK_EVERY;
        self.shard.since_check.store(if due { 0 } else { since_check }, Ordering::Relaxed);
        for &(gauge, amount) in changes {
            let gauge = gauge as usize;
            bump(&self.shard.added[gauge], amount);
            let share = self.shard.added[gauge].load(Ordering::Relaxed) - self.shard.removed[gauge].load(Ordering::Relaxed);
            let high_water = &self.shard.high_water[gauge];
            if share > high_water.load(Ordering::Relaxed) || due {
                high_water.store(share.max(high_water.load(Ordering::Relaxed)), Ordering::Relaxed);
                self.shards.raise_peak(GAUGES[gauge]);
            }
        }
    }

    pub fn remove(&self, changes: &[(Hot, i64)]) {
        for &(gauge, amount) in changes {
            bump(&self.shard.removed[gauge as usize], amount);
        }
    }

    pub fn hit(&self) {
        bump(&self.shard.cache_hits, 1);
    }
}

/// Adds to a counter only the lock holder writes: no read-modify-write needed.
fn bump(counter: &AtomicI64, amount: i64) {
    counter.store(counter.load(Ordering::Relaxed) + amount, Ordering::Relaxed);
}
