//! The statistics: `Stats` lists them, once. Those named after PyTorch's
//! `at::HostStats` mean what they mean there.
//!
//! Every consumer follows the list: the C API hands `Stats` out as it is (the
//! generated header declares it, with these comments), and the line for logs
//! is its `Debug` form. Adding a statistic is its field here, with its value in
//! `Counters::snapshot`, the place that counts it, and its test.
//!
//! Where the counts live: those that change on every allocation are the
//! threads' shares of the gauges (gauges.rs); those that change with each call
//! to the backend for memory are here under one lock; the rest are atomics here.

use std::sync::atomic::{AtomicI64, Ordering};

use super::clock::Clock;
use super::gauges::Hot;
use super::spin_lock::SpinLock;
use super::thread_cache::ThreadCaches;

/// A gauge with its history: what it is now, its highest value since the last
/// peak reset, and the totals added and removed since the last accumulated
/// reset (PyTorch's `c10::CachingAllocator::Stat`).
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    pub current: i64,
    pub peak: i64,
    pub allocated: i64,
    pub freed: i64,
}

/// Time spent in host allocation or free calls, in microseconds.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct DurationStat {
    pub total_us: i64,
    pub max_us: i64,
    pub min_us: i64,
    pub count: i64,
}

/// A snapshot of the statistics. New ones are added at the end: the C API
/// promises that fields keep their place.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Blocks of pinned memory held (from the backend, not yet given back; the
    /// Level Zero backend carves blocks of up to 32 KiB out of shared 64 KiB
    /// driver allocations).
    pub allocations: Stat,
    /// Bytes of those blocks: what the process has pinned.
    pub allocated_bytes: Stat,
    /// Blocks handed out and not freed yet.
    pub active_requests: Stat,
    /// Bytes of those blocks, rounded.
    pub active_bytes: Stat,
    /// Bytes asked for in those requests, before rounding.
    pub requested_bytes: Stat,
    /// Freed blocks still waiting for stream events.
    pub pending_blocks: Stat,
    /// Bytes in free lists, ready for reuse.
    pub cached_bytes: Stat,
    /// Time in the backend's allocation calls (`zeMemAllocHost`, or carving a small block).
    pub host_alloc_time: DurationStat,
    /// Time in the backend's free calls (`zeMemFree`, or taking a small block back).
    pub host_free_time: DurationStat,
    /// Calls to the backend for memory that succeeded.
    pub num_host_alloc: i64,
    /// Blocks given back to the backend.
    pub num_host_free: i64,
    /// Allocations served from the cache.
    pub cache_hits: i64,
    /// Allocations that needed new memory.
    pub cache_misses: i64,
    /// Blocks never to be reused nor freed because an event could not be
    /// recorded on a stream that used them (nothing could tell when that
    /// stream is done with them). Counted since the start; no reset clears it.
    pub retired_blocks: i64,
    /// Bytes held from the backend and not handed out now (cached, waiting for
    /// stream events, or retired): `allocated_bytes` less `active_bytes`.
    pub idle_bytes: i64,
    /// The largest block free in the cache now, in bytes: the largest request
    /// the cache can serve without new memory (0 when nothing is cached).
    pub largest_free_block: i64,
    /// Blocks allocated during a graph capture and freed after streams used
    /// them, kept in their private pool until its release: no event can tell
    /// when a captured stream is done with them.
    pub captured_blocks: i64,
    /// Bytes the backend holds beyond the blocks: with the Level Zero
    /// backend, the free room of the 64 KiB slabs that blocks of up to 32 KiB
    /// share, which goes back to the driver only with a slab's last block.
    /// `allocated_bytes` plus this is what the driver holds for the allocator.
    pub backend_unused_bytes: i64,
}

/// Compact, for the line for logs: `current/peak/allocated/freed`.
impl std::fmt::Debug for Stat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}/{}", self.current, self.peak, self.allocated, self.freed)
    }
}

/// Compact, for the line for logs: `total/max/min/count`, times in µs.
impl std::fmt::Debug for DurationStat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}/{}", self.total_us, self.max_us, self.min_us, self.count)
    }
}

impl Stat {
    fn increase(&mut self, amount: i64) {
        self.current += amount;
        self.peak = self.peak.max(self.current);
        self.allocated += amount;
    }

    fn decrease(&mut self, amount: i64) {
        self.current -= amount;
        self.freed += amount;
    }

    fn reset_peak(&mut self) {
        self.peak = self.current;
    }

    fn reset_accumulated(&mut self) {
        self.allocated = 0;
        self.freed = 0;
    }
}

/// A gauge changed by blocks as they start and stop waiting for events.
#[derive(Default)]
pub(crate) struct AtomicStat {
    current: AtomicI64,
    peak: AtomicI64,
    allocated: AtomicI64,
    freed: AtomicI64,
}

impl AtomicStat {
    pub fn increase(&self, amount: i64) {
        let now = self.current.fetch_add(amount, Ordering::Relaxed) + amount;
        if now > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
        self.allocated.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn decrease(&self, amount: i64) {
        self.current.fetch_sub(amount, Ordering::Relaxed);
        self.freed.fetch_add(amount, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Stat {
        Stat {
            current: self.current.load(Ordering::Relaxed),
            peak: self.peak.load(Ordering::Relaxed),
            allocated: self.allocated.load(Ordering::Relaxed),
            freed: self.freed.load(Ordering::Relaxed),
        }
    }

    fn reset_peak(&self) {
        self.peak.store(self.current.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    fn reset_accumulated(&self) {
        self.allocated.store(0, Ordering::Relaxed);
        self.freed.store(0, Ordering::Relaxed);
    }
}

/// Durations in ticks of the counters' clock, turned into microseconds when read.
#[derive(Clone, Copy)]
struct Durations {
    total: u64,
    max: u64,
    min: u64,
    count: i64,
}

impl Default for Durations {
    fn default() -> Self {
        Durations { total: 0, max: 0, min: u64::MAX, count: 0 }
    }
}

impl Durations {
    fn add(&mut self, ticks: u64) {
        self.total = self.total.saturating_add(ticks);
        self.max = self.max.max(ticks);
        self.min = self.min.min(ticks);
        self.count += 1;
    }

    fn in_micros(&self, micros: impl Fn(u64) -> i64) -> DurationStat {
        DurationStat {
            total_us: micros(self.total),
            max_us: micros(self.max),
            min_us: if self.count == 0 { 0 } else { micros(self.min) },
            count: self.count,
        }
    }
}

/// What the calls to the backend for memory changed. Each change comes with
/// a driver call, so one lock for all of them costs less than the dozen atomic
/// read-modify-writes they would take one by one.
struct HostCounts {
    allocations: Stat,
    allocated_bytes: Stat,
    /// Blocks held from the backend per size class.
    class_allocations: Box<[Stat]>,
    alloc_time: Durations,
    free_time: Durations,
    cache_misses: i64,
}

impl HostCounts {
    fn gauges(&mut self) -> impl Iterator<Item = &mut Stat> {
        [&mut self.allocations, &mut self.allocated_bytes].into_iter().chain(self.class_allocations.iter_mut())
    }
}

/// The counters that change off the hot path; the hot ones live in the threads' caches.
pub(crate) struct Counters {
    host: SpinLock<HostCounts>,
    /// Times the backend calls for `host_alloc_time` and `host_free_time`.
    pub clock: Clock,
    pub pending_blocks: AtomicStat,
    /// See `Stats::retired_blocks`.
    pub retired_blocks: AtomicI64,
    /// See `Stats::captured_blocks`.
    pub captured_blocks: AtomicI64,
}

impl Counters {
    pub fn new(classes: usize) -> Counters {
        Counters {
            host: SpinLock::new(HostCounts {
                allocations: Stat::default(),
                allocated_bytes: Stat::default(),
                class_allocations: vec![Stat::default(); classes].into_boxed_slice(),
                alloc_time: Durations::default(),
                free_time: Durations::default(),
                cache_misses: 0,
            }),
            clock: Clock::new(),
            pending_blocks: AtomicStat::default(),
            retired_blocks: AtomicI64::new(0),
            captured_blocks: AtomicI64::new(0),
        }
    }

    /// Counts a call for memory that started at `started` (a reading of
    /// `clock`): the first of a miss or its retry, and the memory it got for
    /// size class `class` (index and size), if it got any.
    #[inline(always)]
    pub fn host_allocated(&self, started: u64, first_of_miss: bool, class: Option<(usize, usize)>) {
        let ticks = self.clock.ticks().saturating_sub(started);
        let mut host = self.host.lock();
        host.alloc_time.add(ticks);
        host.cache_misses += i64::from(first_of_miss);
        if let Some((index, size)) = class {
            host.allocations.increase(1);
            host.allocated_bytes.increase(size as i64);
            host.class_allocations[index].increase(1);
        }
    }

    /// Counts memory of size class `class` (index and size) given back by a
    /// call that started at `started`, whether or not the call succeeded.
    pub fn host_freed(&self, started: u64, (index, size): (usize, usize)) {
        let ticks = self.clock.ticks().saturating_sub(started);
        let mut host = self.host.lock();
        host.free_time.add(ticks);
        host.allocations.decrease(1);
        host.allocated_bytes.decrease(size as i64);
        host.class_allocations[index].decrease(1);
        debug_assert!(host.allocations.current >= 0, "more blocks given back than were held");
    }

    /// The statistics now; `largest_free_block` is the allocator's to find
    /// (it looks through the free lists), `backend_unused_bytes` the backend's.
    pub fn snapshot(&self, hot: &ThreadCaches, largest_free_block: usize, backend_unused_bytes: usize) -> Stats {
        let host = self.host.lock();
        let micros = self.clock.to_micros();
        let active_requests = hot.stat(Hot::ActiveRequests);
        let active_bytes = hot.stat(Hot::ActiveBytes);
        Stats {
            allocations: host.allocations,
            allocated_bytes: host.allocated_bytes,
            active_requests,
            active_bytes,
            requested_bytes: hot.stat(Hot::RequestedBytes),
            pending_blocks: self.pending_blocks.snapshot(),
            cached_bytes: hot.stat(Hot::CachedBytes),
            host_alloc_time: host.alloc_time.in_micros(&micros),
            host_free_time: host.free_time.in_micros(&micros),
            num_host_alloc: host.allocations.allocated,
            num_host_free: host.allocations.freed,
            // Every allocation is a hit but those that got new memory.
            cache_hits: (active_requests.allocated - host.allocations.allocated).max(0),
            cache_misses: host.cache_misses,
            retired_blocks: self.retired_blocks.load(Ordering::Relaxed),
            idle_bytes: host.allocated_bytes.current - active_bytes.current,
            largest_free_block: largest_free_block as i64,
            captured_blocks: self.captured_blocks.load(Ordering::Relaxed),
            backend_unused_bytes: i64::try_from(backend_unused_bytes).unwrap_or(i64::MAX),
        }
    }

    /// Bytes held from the backend now.
    pub fn held_bytes(&self) -> i64 {
        self.host.lock().allocated_bytes.current
    }

    pub fn class_snapshot(&self) -> Vec<Stat> {
        self.host.lock().class_allocations.to_vec()
    }

    pub fn reset_peak(&self, hot: &ThreadCaches) {
        self.host.lock().gauges().for_each(Stat::reset_peak);
        self.pending_blocks.reset_peak();
        hot.reset_peaks();
    }

    pub fn reset_accumulated(&self, hot: &ThreadCaches) {
        let mut host = self.host.lock();
        host.gauges().for_each(Stat::reset_accumulated);
        host.alloc_time = Durations::default();
        host.free_time = Durations::default();
        host.cache_misses = 0;
        self.pending_blocks.reset_accumulated();
        hot.reset_totals();
    }
}

/// The line for logs: the `Debug` form, gauges as
/// `current/peak/allocated/freed`, durations as `total/max/min/count` in µs.
impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
