//! Counters with the names and meanings of PyTorch's `at::HostStats`. Those that
//! change on every allocation live in the threads' caches (`thread_cache.rs`);
//! the rest are atomics here.

use std::sync::atomic::{AtomicI64, Ordering};

use super::thread_cache::{Hot, ThreadCaches};
use std::time::Duration;

/// A gauge with its history: what it is now, its highest value since the last
/// peak reset, and the totals added and removed since the last accumulated reset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub current: i64,
    pub peak: i64,
    pub allocated: i64,
    pub freed: i64,
}

/// Time spent in host allocation or free calls, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DurationStat {
    pub total_us: i64,
    pub max_us: i64,
    pub min_us: i64,
    pub count: i64,
}

/// A snapshot of all counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Blocks of host memory the allocator holds (from the backend, not yet given back).
    pub allocations: Stat,
    /// Bytes of those blocks: what the process has pinned.
    pub allocated_bytes: Stat,
    /// Blocks handed to callers and not freed by them yet.
    pub active_requests: Stat,
    /// Bytes of those blocks (rounded sizes).
    pub active_bytes: Stat,
    /// Bytes callers asked for in those requests (before rounding).
    pub requested_bytes: Stat,
    /// Blocks freed by callers that still wait for stream events.
    pub pending_blocks: Stat,
    /// Bytes in free lists, ready for reuse.
    pub cached_bytes: Stat,
    pub host_alloc_time: DurationStat,
    pub host_free_time: DurationStat,
    pub num_host_alloc: i64,
    pub num_host_free: i64,
    /// Allocations served from the cache.
    pub cache_hits: i64,
    /// Allocations that needed new host memory.
    pub cache_misses: i64,
}

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
        raise(&self.peak, now);
        self.allocated.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn decrease(&self, amount: i64) {
        self.current.fetch_sub(amount, Ordering::Relaxed);
        self.freed.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Stat {
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

/// Raises `peak` to `value`; the read-modify-write (a loop) only when it is a new peak.
fn raise(peak: &AtomicI64, value: i64) {
    if value > peak.load(Ordering::Relaxed) {
        peak.fetch_max(value, Ordering::Relaxed);
    }
}

pub(crate) struct AtomicDuration {
    total_us: AtomicI64,
    max_us: AtomicI64,
    min_us: AtomicI64,
    count: AtomicI64,
}

impl Default for AtomicDuration {
    fn default() -> Self {
        AtomicDuration {
            total_us: AtomicI64::new(0),
            max_us: AtomicI64::new(0),
            min_us: AtomicI64::new(i64::MAX),
            count: AtomicI64::new(0),
        }
    }
}

impl AtomicDuration {
    pub fn add(&self, elapsed: Duration) {
        let us = i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX);
        self.total_us.fetch_add(us, Ordering::Relaxed);
        raise(&self.max_us, us);
        if us < self.min_us.load(Ordering::Relaxed) {
            self.min_us.fetch_min(us, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> DurationStat {
        let count = self.count.load(Ordering::Relaxed);
        DurationStat {
            total_us: self.total_us.load(Ordering::Relaxed),
            max_us: self.max_us.load(Ordering::Relaxed),
            min_us: if count == 0 { 0 } else { self.min_us.load(Ordering::Relaxed) },
            count,
        }
    }

    fn reset(&self) {
        self.total_us.store(0, Ordering::Relaxed);
        self.max_us.store(0, Ordering::Relaxed);
        self.min_us.store(i64::MAX, Ordering::Relaxed);
        self.count.store(0, Ordering::Relaxed);
    }
}

/// The counters that change off the hot path; the hot ones live in the threads' caches.
pub(crate) struct Counters {
    pub allocations: AtomicStat,
    pub allocated_bytes: AtomicStat,
    pub pending_blocks: AtomicStat,
    /// Blocks held from the backend per size class.
    pub class_allocations: Box<[AtomicStat]>,
    pub host_alloc_time: AtomicDuration,
    pub host_free_time: AtomicDuration,
    pub cache_misses: AtomicI64,
}

impl Counters {
    pub fn new(classes: usize) -> Counters {
        Counters {
            allocations: AtomicStat::default(),
            allocated_bytes: AtomicStat::default(),
            pending_blocks: AtomicStat::default(),
            class_allocations: (0..classes).map(|_| AtomicStat::default()).collect(),
            host_alloc_time: AtomicDuration::default(),
            host_free_time: AtomicDuration::default(),
            cache_misses: AtomicI64::new(0),
        }
    }

    pub fn snapshot(&self, hot: &ThreadCaches) -> Stats {
        let allocations = self.allocations.snapshot();
        Stats {
            allocations,
            allocated_bytes: self.allocated_bytes.snapshot(),
            active_requests: hot.stat(Hot::ActiveRequests),
            active_bytes: hot.stat(Hot::ActiveBytes),
            requested_bytes: hot.stat(Hot::RequestedBytes),
            pending_blocks: self.pending_blocks.snapshot(),
            cached_bytes: hot.stat(Hot::CachedBytes),
            host_alloc_time: self.host_alloc_time.snapshot(),
            host_free_time: self.host_free_time.snapshot(),
            num_host_alloc: allocations.allocated,
            num_host_free: allocations.freed,
            cache_hits: hot.cache_hits(),
            cache_misses: self.cache_misses.load(Ordering::Relaxed),
        }
    }

    pub fn class_snapshot(&self) -> Vec<Stat> {
        self.class_allocations.iter().map(AtomicStat::snapshot).collect()
    }

    fn gauges(&self) -> impl Iterator<Item = &AtomicStat> {
        [&self.allocations, &self.allocated_bytes, &self.pending_blocks].into_iter().chain(self.class_allocations.iter())
    }

    pub fn reset_peak(&self, hot: &ThreadCaches) {
        self.gauges().for_each(AtomicStat::reset_peak);
        hot.reset_peaks();
    }

    pub fn reset_accumulated(&self, hot: &ThreadCaches) {
        self.gauges().for_each(AtomicStat::reset_accumulated);
        hot.reset_totals();
        self.host_alloc_time.reset();
        self.host_free_time.reset();
        self.cache_misses.store(0, Ordering::Relaxed);
    }
}

impl std::fmt::Display for Stats {
    /// One line for logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stat = |s: &Stat| format!("{}/{}/{}/{}", s.current, s.peak, s.allocated, s.freed);
        write!(
            f,
            "allocations={} allocated_bytes={} active_requests={} active_bytes={} requested_bytes={} \
             pending_blocks={} cached_bytes={} (current/peak/allocated/freed) num_host_alloc={} \
             num_host_free={} host_alloc_time_us={} host_free_time_us={} cache_hits={} cache_misses={}",
            stat(&self.allocations),
            stat(&self.allocated_bytes),
            stat(&self.active_requests),
            stat(&self.active_bytes),
            stat(&self.requested_bytes),
            stat(&self.pending_blocks),
            stat(&self.cached_bytes),
            self.num_host_alloc,
            self.num_host_free,
            self.host_alloc_time.total_us,
            self.host_free_time.total_us,
            self.cache_hits,
            self.cache_misses,
        )
    }
}
