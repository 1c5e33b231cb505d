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
//! each thread. A sum read while blocks move between threads may be off by
//! the blocks moving.
//!
//! A block freed on another thread than the one it was handed out on goes
//! back to that one (thread_cache.rs), which counts it as freed and cached
//! when it takes it. Until then the freeing thread counts it apart from its
//! share, as given: freed and cached, with no mark to pass. So neither
//! thread's share drifts, one's always growing and the other's always
//! shrinking, which would pass their marks on every operation.

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
const GAUGES: [Hot; HOT] = [Hot::ActiveRequests, Hot::ActiveBytes, Hot::RequestedBytes, Hot::CachedBytes];
/// The gauges a share counts as they are: all but `CachedBytes`, which it derives.
const DIRECT: usize = 3;

/// One thread's share of each gauge. Written by its thread only, except that
/// a peak reset lowers the high-water marks; read by any. Zero is a valid
/// value (the thread caches holding shares are made zeroed).
///
/// The cached bytes are not counted as they change: a block handed out from
/// the cache, or freed into it, only moves bytes between the cached and the
/// active bytes. So the share keeps their sum (`held`), which neither hot path
/// writes, and the cached share is `held` less the active share; likewise its
/// total added to the cached bytes is `cached_beyond_freed` plus what the
/// active share lost. Writes that change one gauge and not the other
/// (`taken_back`, `add_cached`, `remove_cached`) adjust these two.
///
/// In this order (`repr(C)`): the fields the hot paths touch first, in two
/// lines; `given`, which only frees on other threads and sums touch, last.
#[repr(C)]
pub(crate) struct Shares {
    /// What the thread added less what it removed.
    value: [AtomicI64; DIRECT],
    /// The total it added; what it removed is the difference. The total
    /// added to `ActiveRequests` counts the thread's allocations.
    added: [AtomicI64; DIRECT],
    /// Its cached bytes plus its active bytes.
    held: AtomicI64,
    /// Its total added to the cached bytes, less the active bytes it removed.
    cached_beyond_freed: AtomicI64,
    /// The highest value reached since the peaks were last checked against
    /// the sum (`i64::MIN` after a peak reset).
    high_water: [AtomicI64; HOT],
    /// What blocks it gave back to other threads add to each gauge (freed,
    /// and cached), less what blocks it took from lists of given-back blocks
    /// add: kept apart from the share, which has a mark to pass.
    given: [AtomicI64; HOT],
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
        if !from_cache {
            // New memory: the cached bytes stay as they are.
            bump(&self.held, bytes);
        }
        let requests = self.count(Hot::ActiveRequests, 1);
        let active = self.count(Hot::ActiveBytes, bytes);
        let asked = self.count(Hot::RequestedBytes, requested);
        requests | active | asked
    }

    /// Counts `blocks` blocks of `bytes` handed out for `requested` bytes as
    /// freed into the thread's cache; true if a share passed its mark.
    #[inline(always)]
    pub fn freed_to_cache(&self, blocks: i64, bytes: i64, requested: i64) -> bool {
        self.remove(Hot::ActiveRequests, blocks);
        self.remove(Hot::ActiveBytes, bytes);
        self.remove(Hot::RequestedBytes, requested);
        self.passed(Hot::CachedBytes)
    }

    /// Counts a block of `bytes` handed out for `requested` bytes as freed,
    /// and not cached (yet).
    pub fn taken_back(&self, bytes: i64, requested: i64) {
        self.remove(Hot::ActiveRequests, 1);
        self.remove(Hot::ActiveBytes, bytes);
        self.remove(Hot::RequestedBytes, requested);
        // Not cached: the cached bytes and their total stay as they are.
        bump(&self.held, bytes.wrapping_neg());
        bump(&self.cached_beyond_freed, bytes.wrapping_neg());
    }

    /// Counts a block of `bytes` handed out for `requested` bytes, which the
    /// thread freed and gives back to the thread it was handed out on, as
    /// given. Before the block is given: the taker's count must not come first.
    pub fn gave(&self, bytes: i64, requested: i64) {
        for (given, amount) in self.given.iter().zip(moved(1, bytes, requested)) {
            bump(given, amount);
        }
    }

    /// Counts `blocks` blocks of `bytes` handed out for `requested` bytes,
    /// taken from a list of given-back blocks, as freed and cached in the
    /// share; true if a share passed its mark (`raise_marks` is due).
    pub fn took(&self, blocks: i64, bytes: i64, requested: i64) -> bool {
        let passed = self.freed_to_cache(blocks, bytes, requested);
        for (given, amount) in self.given.iter().zip(moved(blocks, bytes, requested)) {
            bump(given, amount.wrapping_neg());
        }
        passed
    }

    /// Adds to the cached bytes, and to no other gauge; true if the share
    /// passed its mark.
    pub fn add_cached(&self, bytes: i64) -> bool {
        bump(&self.held, bytes);
        bump(&self.cached_beyond_freed, bytes);
        self.passed(Hot::CachedBytes)
    }

    /// Removes from the cached bytes, and from no other gauge.
    pub fn remove_cached(&self, bytes: i64) {
        bump(&self.held, bytes.wrapping_neg());
    }

    /// Adds to a gauge counted as it is, leaving the cached bytes as they
    /// are (a change of the active bytes moves them); true if it passed its mark.
    #[inline(always)]
    fn count(&self, gauge: Hot, amount: i64) -> bool {
        let gauge = gauge as usize;
        bump(&self.added[gauge], amount);
        bump(&self.value[gauge], amount) > self.high_water[gauge].load(Ordering::Relaxed)
    }

    #[inline(always)]
    fn remove(&self, gauge: Hot, amount: i64) {
        bump(&self.value[gauge as usize], amount.wrapping_neg());
    }

    /// Whether the share of `gauge` is over its high-water mark.
    #[inline(always)]
    fn passed(&self, gauge: Hot) -> bool {
        self.own(gauge) > self.high_water[gauge as usize].load(Ordering::Relaxed)
    }

    /// The thread's share of `gauge`, without what it gave.
    #[inline(always)]
    fn own(&self, gauge: Hot) -> i64 {
        match gauge {
            Hot::CachedBytes => {
                let active = self.value[Hot::ActiveBytes as usize].load(Ordering::Relaxed);
                self.held.load(Ordering::Relaxed).wrapping_sub(active)
            }
            Hot::ActiveRequests | Hot::ActiveBytes | Hot::RequestedBytes => {
                self.value[gauge as usize].load(Ordering::Relaxed)
            }
        }
    }

    /// Raises the marks the shares passed. Inlined with the rest of the hot
    /// path: it makes no call, so the hot path needs no registers saved for one.
    #[inline(always)]
    pub fn raise_marks(&self) {
        for (mark, gauge) in self.high_water.iter().zip(GAUGES) {
            let share = self.own(gauge);
            if share > mark.load(Ordering::Relaxed) {
                mark.store(share, Ordering::Relaxed);
            }
        }
    }

    /// What the thread adds to `gauge`: its share, and what it gave.
    fn part(&self, gauge: usize) -> i64 {
        self.own(GAUGES[gauge]).wrapping_add(self.given(gauge))
    }

    fn given(&self, gauge: usize) -> i64 {
        self.given[gauge].load(Ordering::Relaxed)
    }

    /// The total the thread added to `gauge`, without what it gave.
    fn added(&self, gauge: usize) -> i64 {
        match GAUGES[gauge] {
            Hot::CachedBytes => {
                let active = Hot::ActiveBytes as usize;
                let freed =
                    self.added[active].load(Ordering::Relaxed).wrapping_sub(self.value[active].load(Ordering::Relaxed));
                self.cached_beyond_freed.load(Ordering::Relaxed).wrapping_add(freed)
            }
            Hot::ActiveRequests | Hot::ActiveBytes | Hot::RequestedBytes => self.added[gauge].load(Ordering::Relaxed),
        }
    }
}

/// What `blocks` blocks of `bytes` handed out for `requested` bytes add to
/// each gauge once freed and cached.
fn moved(blocks: i64, bytes: i64, requested: i64) -> [i64; HOT] {
    let mut amounts = [0; HOT];
    amounts[Hot::ActiveRequests as usize] = blocks.wrapping_neg();
    amounts[Hot::ActiveBytes as usize] = bytes.wrapping_neg();
    amounts[Hot::RequestedBytes as usize] = requested.wrapping_neg();
    amounts[Hot::CachedBytes as usize] = bytes;
    amounts
}

/// Adds to a counter only its thread writes (no read-modify-write needed);
/// returns the new value. Wrapping, so that the hot path cannot panic.
#[inline(always)]
fn bump(counter: &AtomicI64, amount: i64) -> i64 {
    let value = counter.load(Ordering::Relaxed).wrapping_add(amount);
    counter.store(value, Ordering::Relaxed);
    value
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
fn sum<'a>(shares: impl Iterator<Item = &'a Shares> + Clone, of: impl Fn(&Shares) -> i64) -> i64 {
    shares.fold(0, |sum, shares| sum.wrapping_add(of(shares)))
}

/// What was ever added to `gauge`: given blocks' bytes count as added to the
/// cached gauge (what they take from the active gauges counts as removed).
fn added<'a>(shares: impl Iterator<Item = &'a Shares> + Clone, gauge: usize) -> i64 {
    let given = sum(shares.clone(), |s| s.given(gauge));
    sum(shares, |s| s.added(gauge)).wrapping_add(given.max(0))
}

/// The methods take every thread's shares, as `ThreadCaches::shares` lists
/// them (cloned to read them more than once).
impl Peaks {
    pub fn current_value<'a>(&self, shares: impl Iterator<Item = &'a Shares> + Clone, gauge: Hot) -> i64 {
        sum(shares, |s| s.part(gauge as usize))
    }

    pub fn stat<'a>(&self, shares: impl Iterator<Item = &'a Shares> + Clone, gauge: Hot) -> Stat {
        let gauge = gauge as usize;
        let added = added(shares.clone(), gauge);
        let current = sum(shares, |s| s.part(gauge));
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
    pub fn reset_peaks<'a>(&self, shares: impl Iterator<Item = &'a Shares> + Clone) {
        for thread in shares.clone() {
            for mark in &thread.high_water {
                mark.store(i64::MIN, Ordering::Relaxed);
            }
        }
        for gauge in 0..HOT {
            self.peaks[gauge].store(sum(shares.clone(), |s| s.part(gauge)), Ordering::Relaxed);
        }
    }

    /// Zeroes the totals (as seen in `stat`), keeping each gauge's current value:
    /// the threads' shares stay as they are, the totals now count from here.
    pub fn reset_totals<'a>(&self, shares: impl Iterator<Item = &'a Shares> + Clone) {
        for gauge in 0..HOT {
            let added = added(shares.clone(), gauge);
            let removed = added - sum(shares.clone(), |s| s.part(gauge));
            self.baseline_added[gauge].store(added, Ordering::Relaxed);
            self.baseline_removed[gauge].store(removed, Ordering::Relaxed);
        }
    }

    /// Raises every peak to its gauge's sum, reading each thread's shares once.
    #[inline(always)]
    pub fn raise<'a>(&self, shares: impl Iterator<Item = &'a Shares> + Clone) {
        let mut sums = [0i64; HOT];
        for thread in shares {
            for (sum, gauge) in sums.iter_mut().zip(0..HOT) {
                *sum = sum.wrapping_add(thread.part(gauge));
            }
        }
        for (peak, now) in self.peaks.iter().zip(sums) {
            if now > peak.load(Ordering::Relaxed) {
                peak.fetch_max(now, Ordering::Relaxed);
            }
        }
    }
}
