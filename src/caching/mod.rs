//! The caching core: blocks, size classes, free lists, per-stream pending
//! queues and statistics, generic over a [`Backend`]. It knows nothing of Level
//! Zero, C or C++; addresses and contexts are plain integers here.
//!
//! The life of a block: `allocate` takes one from its size class's free list,
//! or gets new memory from the backend; the caller's free hands it back, straight
//! to the free list if no stream used it, otherwise behind one event per stream
//! in that stream's pending queue; when the last event completes it returns to
//! the free list. `empty_cache` gives every free block back to the backend.
//!
//! A block freed on another thread than it was handed out on goes back to
//! that thread's list of given-back blocks, which it takes on a miss.
//!
//! The hot path, a cached block of the right class handed out and taken back,
//! touches only the calling thread's own cache and counters and the block,
//! takes no lock, and makes one atomic read-modify-write each way (the block's
//! claim, the block's free). Pending events are polled when the cache misses
//! and at every 32nd allocation of a thread while any are pending, or by the
//! background reclaimer instead. Anything else an allocation or a free may
//! need is off the hot path, in functions of their own.
//!
//! What each structure holds, which lock or atomic guards it, and the order
//! locks are taken in: docs/ARCHITECTURE.md, "Who owns what".

mod backend;
mod block;
mod budget;
mod clock;
mod config;
mod error;
mod gauges;
mod hash;
mod history;
mod pending;
mod pools;
mod reclaimer;
mod release;
mod remote;
mod segments;
mod shards;
pub mod size_class;
mod spin_lock;
mod stack;
mod stats;
pub(crate) mod sync;
mod thread_cache;
mod thread_slot;
mod watch;

pub use backend::{Backend, BackendError, HostMemory, StreamEvents, StreamKey};
pub use config::{Fit, Settings, UnknownKeys};
pub use error::Error;
pub use hash::IntegerMap;
pub use history::{Action, Context as HistoryContext, RecordContext, Recorder, Segment, TraceEntry};
pub use pools::{CaptureHooks, PoolId, StreamFilter};
pub use reclaimer::Reclaimer;
pub use stats::{DurationStat, Stat, Stats};

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use block::{Arena, Block, BlockState, Claim, Entry, Freed, CAPTURED};
use budget::Budget;
use gauges::{Hot, PEAK_CHECK_EVERY};
use history::History;
use pending::PendingQueues;
use pools::Pools;
use reclaimer::Reclaim;
use release::Oldest;
use segments::SPLIT_MIN;
use shards::Shards;
use size_class::{fits, Rounding, SizeClass, CLASS_COUNT};
use stack::Stack;
use stats::Counters;
use sync::lock;
use thread_cache::{Mine, ThreadCaches, POLL_EVERY};

/// A block handed to a caller: its memory and the context that names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub address: usize,
    pub context: usize,
    /// The block's size, at least the size asked for.
    pub size: usize,
}

/// Statistics of one size class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassStats {
    /// The size of a rounded block of this class (unrounded blocks are smaller or larger).
    pub size: usize,
    /// Blocks of this class held from the backend.
    pub allocations: Stat,
    /// Of those, blocks in free lists now.
    pub cached: usize,
}

pub struct CachingAllocator<B: Backend> {
    backend: B,
    settings: Settings,
    rounding: Rounding,
    blocks: Arena,
    /// Each thread's own cached blocks and hot counters.
    caches: ThreadCaches,
    /// Cached blocks beyond what the threads' own stacks hold, one shard per core.
    shards: Shards,
    /// Block by base address, for `record_event` with a pointer but a foreign
    /// context (a `from_blob` of our memory): rebuilt from the arena by the first
    /// such lookup after blocks got or gave back memory, so that a miss or a
    /// release only marks it stale.
    by_address: Mutex<IntegerMap<usize, u32>>,
    by_address_stale: AtomicBool,
    pending: PendingQueues<B::Event>,
    /// With `pinned_split_blocks`: splits and merges of blocks, which change
    /// the links between parts of one piece of backend memory, take this lock.
    segments: Mutex<()>,
    /// With a cache cap or release on miss only: entries of cached blocks,
    /// oldest first (entries of blocks taken since are stale).
    oldest: Option<Mutex<Oldest>>,
    /// With exact fit: the high water the budget is measured against.
    budget: Budget,
    /// The background reclaimer's thread while it runs, woken when blocks
    /// start waiting; the allocation path polls only when there is none.
    reclaimer: Mutex<Option<std::thread::Thread>>,
    reclaimer_running: AtomicBool,
    counters: Counters,
    /// `watch.rs` bits: what takes allocations or frees off the hot paths.
    watch: AtomicU32,
    /// Private pools and captures under way, and the hooks that tell the
    /// current stream; allocations read it only while a capture is under way.
    pools: Mutex<Pools>,
    history: History,
}

impl<B: Backend> CachingAllocator<B> {
    pub fn new(backend: B, settings: Settings) -> Self {
        assert!(size_class::ALLOWED_DIVISIONS.contains(&settings.roundup_divisions));
        let rounding = match settings.fit {
            Fit::Exact => Rounding::exact(),
            Fit::Rounded => Rounding {
                divisions: settings.roundup_divisions,
                threshold: settings.max_round_threshold,
                exact: false,
            },
        };
        let oldest = (settings.max_cached_bytes != usize::MAX || settings.releases_oldest_on_miss())
            .then(|| Mutex::new(Oldest::default()));
        CachingAllocator {
            backend,
            settings,
            rounding,
            blocks: Arena::new(),
            caches: ThreadCaches::new(),
            shards: Shards::new(),
            by_address: Mutex::new(IntegerMap::default()),
            by_address_stale: AtomicBool::new(false),
            pending: PendingQueues::new(),
            segments: Mutex::new(()),
            watch: AtomicU32::new(if oldest.is_some() { watch::OLDEST } else { 0 }),
            oldest,
            budget: Budget::default(),
            reclaimer: Mutex::new(None),
            reclaimer_running: AtomicBool::new(false),
            counters: Counters::new(CLASS_COUNT),
            pools: Mutex::new(Pools::default()),
            history: History::default(),
        }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Hands out a block of at least `size` bytes; `None` for size 0, which
    /// touches nothing (PyTorch returns a null pointer and a null context).
    #[inline]
    pub fn allocate(&self, size: usize) -> Result<Option<Allocation>, Error> {
        match self.allocate_cached(size) {
            Some(allocation) => Ok(Some(allocation)),
            None => self.allocate_slow(size),
        }
    }

    /// The hot path of `allocate`: the block on top of the thread's own stack
    /// of the request's class, if it is of the class's size (so it fits; parts
    /// of split memory and unrounded blocks are for the rest of `allocate`)
    /// and the thread need not poll first; `None`, having changed nothing,
    /// when the request needs the rest of `allocate`.
    ///
    /// Nothing on this path can panic (no indexing, unwrapping or arithmetic
    /// that can fail, and the calls it makes are such too), so the C ABI runs
    /// it outside its panic guard and keeps the guard's cost for the rest.
    /// `scripts/check-hot-path` checks the compiled code for it.
    #[inline(always)]
    pub fn allocate_cached(&self, size: usize) -> Option<Allocation> {
        if self.watch.load(Ordering::Relaxed) & watch::ALLOCATIONS != 0 {
            return None;
        }
        let local = self.caches.mine()?;
        let next = local.shares().next_allocation();
        if next % POLL_EVERY == 0 {
            // The slow path polls, and checks the peaks when they are due.
            if self.polls_inline() {
                return None;
            }
            if next % PEAK_CHECK_EVERY == 0 {
                self.caches.raise_peaks();
            }
        }
        // Zero and sizes too large go the slow way.
        let class = self.rounding.classify(size)?;
        let top = local.stack(class.index)?.top()?;
        let block = top.block;
        if block.size() != class.size {
            return None;
        }
        let claimed = block.claim(top.entry);
        // Claimed, or stale for good (claimed by another taker): off the stack either way.
        top.pop();
        if !claimed {
            return None;
        }
        // See `take_cached`: back as it was, for the rest of `allocate` to skip.
        if block.size() != class.size {
            block.unclaim(top.entry);
            top.restore();
            return None;
        }
        Some(self.hand_out(local, block, size, true))
    }

    /// `allocate` without its hot path, for a caller that has just tried
    /// `allocate_cached` (a miss then makes one try, not two).
    ///
    /// Inlined into its callers, the library's entry points, so that no frame
    /// but theirs is under the backend's call. Inlined, a miss took 1.031 times
    /// the backend's own allocation, against 1.036 with a frame of its own
    /// (BENCHMARKS.md scenario 6, medians of 70 alternating processes).
    #[inline(always)]
    pub fn allocate_slow(&self, size: usize) -> Result<Option<Allocation>, Error> {
        if size == 0 {
            return Ok(None);
        }
        let Some(class) = self.rounding.classify(size) else { return Err(Error::SizeTooLarge { requested: size }) };
        let held = self.caches.local();
        if self.watch.load(Ordering::Relaxed) & watch::ALLOCATIONS != 0 {
            return self.allocate_watched(*held, size, &class).map(Some);
        }
        self.allocate_plain(*held, size, &class).map(|(allocation, _)| Some(allocation))
    }

    /// `allocate_slow` in the default pool; the second value says whether the
    /// block is new memory from the backend.
    #[inline(always)]
    fn allocate_plain(&self, local: Mine<'_>, size: usize, class: &SizeClass) -> Result<(Allocation, bool), Error> {
        // A miss with nothing to reuse (the first touch of memory, or any miss
        // after `empty_cache`) makes these two tests and goes straight on to new
        // memory, with no call but the backend's. Calls, branches and code on
        // this path cost more than their instructions say, in the cold caches
        // and predictors a backend call leaves behind: with the reuse work and
        // the counting in calls of their own, a miss took 1.046 times the
        // backend's own allocation, and 1.035 times as it is (BENCHMARKS.md
        // scenario 6, medians of 80 alternating processes). Blocks other
        // threads gave back to this one come first.
        let adopted = !local.given_back().is_empty() && self.adopt(local, local.given_back());
        let cached = adopted || self.caches.current_value(Hot::CachedBytes) > 0;
        if cached || local.shares().next_allocation() % PEAK_CHECK_EVERY == 0 || self.polls_inline() {
            if let Some(allocation) = self.allocate_reusing(local, size, class) {
                return Ok((allocation, false));
            }
        }
        let block = self.allocate_new(local, size, class, cached)?;
        Ok((self.hand_out(local, block, size, false), true))
    }

    /// `allocate_slow` while a capture is under way or history is recorded:
    /// routed to a private pool if a capture's filter accepts the current
    /// stream, tagged if that stream is being captured, and recorded.
    #[cold]
    #[inline(never)]
    fn allocate_watched(&self, local: Mine<'_>, size: usize, class: &SizeClass) -> Result<Allocation, Error> {
        let context = self.gather(RecordContext::State);
        let route = self.route();
        let pooled = (route.pool != 0).then(|| self.allocate_in_pool(local, route.pool, size, class)).flatten();
        let pool = if pooled.is_some() { route.pool } else { 0 };
        let (allocation, new_memory) = match pooled {
            Some(result) => result?,
            None => self.allocate_plain(local, size, class)?,
        };
        let block = self.blocks.lookup(allocation.context).expect("a block handed out is the arena's");
        let tag = pool | if route.captured { CAPTURED } else { 0 };
        if block.tag() != tag {
            block.set_tag(tag);
        }
        if self.history_enabled() {
            if new_memory {
                self.record(Action::SegmentAlloc, block, None, None);
            }
            self.record(Action::Alloc, block, route.stream, context);
        }
        Ok(allocation)
    }

    /// `allocate_slow` when there may be a block to reuse: it raises the peaks
    /// when due, polls pending events, then takes a cached block (with exact
    /// fit, a larger one if the budget allows), or carves the request out of
    /// one (`pinned_split_blocks`); `None` if none of these.
    #[inline(never)]
    fn allocate_reusing(&self, local: Mine<'_>, size: usize, class: &SizeClass) -> Option<Allocation> {
        if local.shares().next_allocation() % PEAK_CHECK_EVERY == 0 {
            self.caches.raise_peaks();
        }
        if self.polls_inline() {
            self.poll_pending_with(local);
        }
        if let Some(entry) = self.take_cached(local, size, class) {
            return Some(self.hand_out(local, self.blocks.get(entry.id), size, true));
        }
        let wider = (self.settings.fit == Fit::Exact).then(|| self.with_slack(size, class)).flatten();
        if let Some(entry) = wider.and_then(|wider| self.take_cached(local, size, &wider)) {
            return Some(self.hand_out(local, self.blocks.get(entry.id), size, true));
        }
        if self.settings.split_blocks && class.size >= SPLIT_MIN {
            if let Some(block) = self.take_by_splitting(local, class) {
                return Some(self.hand_out(local, block, size, false));
            }
        }
        None
    }

    /// Counts a block the caller now owns as handed out for `requested` bytes.
    #[inline(always)]
    fn hand_out(&self, local: Mine<'_>, block: &Block, requested: usize, from_cache: bool) -> Allocation {
        let size = block.size();
        block.set_requested(requested);
        if block.owner() != local.address() {
            block.set_owner(local.address());
        }
        local.handed_out(&self.caches, size as i64, requested as i64, from_cache);
        Allocation { address: block.address(), context: Arena::context_of(block), size }
    }

    /// Whether allocating threads poll pending events themselves (no reclaimer runs).
    #[inline]
    fn polls_inline(&self) -> bool {
        !self.pending.is_empty() && !self.reclaimer_running.load(Ordering::Relaxed)
    }

    /// Takes back the block named by `context`. Blocks used on streams wait for
    /// their events before they can be reused.
    #[inline]
    pub fn free(&self, context: usize) -> Result<(), Error> {
        if self.free_cached(context) {
            return Ok(());
        }
        self.free_slow(context)
    }

    /// The hot path of `free`: a block no stream used, not a part of split
    /// memory, handed out on this thread, onto the thread's own stack, which
    /// has room for it, with no cache cap to keep; false, having changed
    /// nothing, when the free needs the rest of `free` (which also reports bad
    /// contexts). Like `allocate_cached`, it cannot panic.
    #[inline(always)]
    pub fn free_cached(&self, context: usize) -> bool {
        if self.watch.load(Ordering::Relaxed) & watch::FREES != 0 {
            return false;
        }
        let Some(block) = self.blocks.lookup(context) else { return false };
        let Some(local) = self.caches.mine() else { return false };
        // A block handed out on another thread goes back to it.
        if block.owner() != local.address() {
            return false;
        }
        // Stable while the caller owns the block; if it does not, the free fails.
        let Some(room) = local.stack(block.class()).and_then(Stack::room) else { return false };
        let Some(entry) = block.free_to_cache() else { return false };
        // Still ours to read: no entry claims the block before it is pushed
        // (and a block not in split memory has no neighbour to merge it).
        let (bytes, requested) = (block.size() as i64, block.requested() as i64);
        // Counted before it can be taken, as `cache` does; its peak after, so
        // that the push need not wait for the sums.
        let passed = local.shares().freed_to_cache(1, bytes, requested);
        room.push(entry, block);
        if passed {
            local.raise_marks(&self.caches);
        }
        true
    }

    /// `free` without its hot path, for a caller that has just tried `free_cached`.
    #[inline(never)]
    pub fn free_slow(&self, context: usize) -> Result<(), Error> {
        let Some(block) = self.blocks.lookup(context) else { return Err(Error::UnknownBlock { context }) };
        // Read before the free: once cached, the block may be someone else's.
        let (bytes, requested) = (block.size() as i64, block.requested() as i64);
        let recording = self.history_enabled();
        if recording && matches!(block.state(), BlockState::Allocated | BlockState::AllocatedOnStreams) {
            self.record(Action::FreeRequested, block, None, self.gather(RecordContext::All));
        }
        // While recording, the free completes here, before anyone may take the block.
        let freed = if recording { block.free_owned() } else { block.free() };
        let Some(freed) = freed else { return Err(Error::NotAllocated { context }) };
        let held = self.caches.local();
        if let (Freed::Cached(_), Some(owner)) = (&freed, self.gives_back_to(block, *held)) {
            held.shares().gave(bytes, requested);
            self.caches.give_back_to(owner, block);
            return Ok(());
        }
        held.shares().taken_back(bytes, requested);
        match freed {
            Freed::Cached(entry) => {
                self.cache(*held, block, entry);
                Ok(())
            }
            Freed::Owned => {
                self.cache_owned(*held, block);
                Ok(())
            }
            Freed::Pending(streams) => {
                drop(held);
                if block.tag() & CAPTURED != 0 {
                    if self.retire_captured(block, &streams) {
                        return Ok(());
                    }
                    // Its pool, and so its capture, has gone: events may be recorded.
                    block.set_tag(block.tag() & !CAPTURED);
                }
                self.wait_for_streams(block, &streams)
            }
        }
    }

    /// The cache a block freed on the calling thread goes back to: the one it
    /// was handed out on, if that was another (and no cache cap keeps the
    /// order of all cached blocks, which only the freeing thread's lists do).
    fn gives_back_to(&self, block: &Block, local: Mine<'_>) -> Option<usize> {
        let owner = block.owner();
        (owner != 0 && owner != local.address() && self.oldest.is_none()).then_some(owner)
    }

    /// Takes a thread's list of given-back blocks into the calling thread's
    /// lists, and counts them in its share; false if there were none.
    fn adopt(&self, local: Mine<'_>, given_back: &remote::Remote) -> bool {
        let (mut blocks, mut bytes, mut requested) = (0, 0, 0);
        let mut next = given_back.take();
        while let Some(id) = next {
            let block = self.blocks.get(id);
            // Read first: once listed, the block may be taken, handed out and given back again.
            next = remote::next(block.link());
            blocks += 1;
            bytes += block.size() as i64;
            requested += block.requested() as i64;
            let entry = block.current_entry().expect("a given-back block stays cached until listed");
            self.list(local, block, entry);
        }
        if blocks > 0 {
            local.took(&self.caches, blocks, bytes, requested);
        }
        blocks > 0
    }

    /// Takes every thread's given-back blocks into the calling thread's lists,
    /// for what needs every cached block listed (or found nothing else to take).
    fn adopt_all(&self, local: Mine<'_>) {
        for given_back in self.caches.all_given_back() {
            self.adopt(local, given_back);
        }
    }

    /// Caches a block its caller owns that no event holds back any more: in
    /// its private pool's list, or in the default pool's (merged with its
    /// neighbours if it is a part of split memory).
    fn cache_owned(&self, local: Mine<'_>, block: &Block) {
        if self.history_enabled() {
            self.record(Action::FreeCompleted, block, None, None);
        }
        let pool = block.tag() & !CAPTURED;
        if pool != 0 && self.cache_in_pool(pool, block) {
            return;
        }
        // No tag to clear: the cached block's state word (`mark_cached`),
        // or an absorbed part's (`put_unused`), is written without one.
        if block.in_segment() {
            self.cache_part(local, block);
        } else {
            self.cache(local, block, block.mark_cached());
        }
    }

    /// Keeps a block no one can tell the device is done with out of
    /// circulation for good.
    fn retire(&self, block: &Block) {
        block.retire();
        self.counters.retired_blocks.fetch_add(1, Ordering::Relaxed);
    }

    /// Records an event on each stream that used a freed block; the block
    /// waits in their pending queues until all have completed. A stream with
    /// nothing left to complete counts as complete at once.
    #[inline(never)]
    fn wait_for_streams(&self, block: &Block, streams: &[StreamKey]) -> Result<(), Error> {
        // Counted before the first event is queued: a poller may complete it at
        // once. Whoever counts the last event down (a poller, or this loop for a
        // stream with nothing pending) caches the block.
        self.counters.pending_blocks.increase(1);
        block.set_pending_events(streams.len());
        for &stream in streams.iter() {
            match self.backend.record(stream) {
                Ok(Some(event)) => self.pending.push(stream, event, block.id),
                Ok(None) => self.complete_event(*self.caches.local(), block),
                Err(error) => {
                    // Without an event nobody can tell when the stream is done
                    // with the memory, so it is never handed out again: the
                    // events queued so far complete as usual, but the count
                    // they take down never reaches zero.
                    self.retire(block);
                    self.counters.pending_blocks.decrease(1);
                    return Err(Error::Backend(format!(
                        "recording an event on stream {stream:?} failed ({error}); the block at {:#x} is retired",
                        block.address()
                    )));
                }
            }
        }
        if self.reclaimer_running.load(Ordering::Relaxed) {
            if let Some(thread) = &*lock(&self.reclaimer) {
                thread.unpark();
            }
        }
        Ok(())
    }

    /// Notes that `stream` uses the block named by `context`, or else the block
    /// whose base address is `address`. False, changing nothing, if neither is
    /// an allocated block of ours; an error if no event can be recorded on `stream`.
    pub fn record_stream(&self, address: usize, context: usize, stream: StreamKey) -> Result<bool, Error> {
        self.backend
            .check_stream(stream)
            .map_err(|error| Error::Backend(format!("cannot use stream {stream:?}: {error}")))?;
        if let Some(block) = self.blocks.lookup(context) {
            if block.add_stream(stream) {
                return Ok(true);
            }
        }
        let id = self.block_at(address);
        Ok(id.is_some_and(|id| self.blocks.get(id).add_stream(stream)))
    }

    /// The block whose memory starts at `address`. A header found through an
    /// index entry older than a release is `Unused`, which `add_stream` refuses.
    fn block_at(&self, address: usize) -> Option<u32> {
        let mut index = lock(&self.by_address);
        // A block bound before the flag was set is seen by the scan (acquire).
        if self.by_address_stale.swap(false, Ordering::AcqRel) {
            index.clear();
            index.extend(self.blocks.bound().map(|block| (block.address(), block.id)));
        }
        index.get(&address).copied()
    }

    /// Reclaims blocks whose events have completed, then gives every free block
    /// back to the backend. Blocks in use or still waiting stay, and so do free
    /// parts of split memory while another part of it is in use or waiting.
    pub fn empty_cache(&self) -> Result<(), Error> {
        self.empty_cache_with(*self.caches.local())
    }

    fn empty_cache_with(&self, local: Mine<'_>) -> Result<(), Error> {
        self.poll_pending_with(local);
        self.adopt_all(local);
        let mut entries = self.shards.drain();
        entries.extend(self.caches.all_entries());
        // This thread's own stacks it may empty, so that its next misses need not
        // step over the entries gone stale (other threads' drop theirs as they meet them).
        local.clear();
        let mut first_error = None;
        for entry in entries {
            if let Err((_, error)) = self.release_cached(local, entry) {
                first_error.get_or_insert(error);
            }
        }
        if let Some(oldest) = &self.oldest {
            *lock(oldest) = Oldest::default();
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Moves blocks whose events have completed to the free lists.
    pub fn poll_pending(&self) {
        self.poll_pending_with(*self.caches.local());
    }

    fn poll_pending_with(&self, local: Mine<'_>) {
        self.pending.poll(&self.backend, |id| self.complete_event(local, self.blocks.get(id)));
    }

    /// Counts one of a pending block's events complete; the last puts the block
    /// back in the cache.
    fn complete_event(&self, local: Mine<'_>, block: &Block) {
        if block.complete_one_event() {
            self.counters.pending_blocks.decrease(1);
            self.cache_owned(local, block);
        }
    }

    pub fn stats(&self) -> Stats {
        self.counters.snapshot(&self.caches, self.largest_free_block(), self.backend.unused_bytes())
    }

    /// The size of the largest cached block, looking through every free list.
    fn largest_free_block(&self) -> usize {
        self.cached_blocks(*self.caches.local()).map(|(_, block)| block.size()).max().unwrap_or(0)
    }

    /// Per size class, the classes that ever held a block (since the last
    /// accumulated reset) or hold one now.
    pub fn class_stats(&self) -> Vec<ClassStats> {
        let mut cached = vec![0; CLASS_COUNT];
        for (_, block) in self.cached_blocks(*self.caches.local()) {
            cached[block.class()] += 1;
        }
        self.counters
            .class_snapshot()
            .into_iter()
            .enumerate()
            .filter(|(_, allocations)| allocations.allocated > 0 || allocations.current > 0)
            .map(|(index, allocations)| ClassStats {
                size: size_class::class_size(index),
                allocations,
                cached: cached[index],
            })
            .collect()
    }

    pub fn reset_peak_stats(&self) {
        self.keep_high_water();
        self.counters.reset_peak(&self.caches);
    }

    pub fn reset_accumulated_stats(&self) {
        self.counters.reset_accumulated(&self.caches);
    }

    /// The lists a request may be served from: its class's, then the next larger.
    fn candidate_classes(&self, class: &SizeClass) -> ([usize; 2], usize) {
        match self.rounding.next_index(class.index) {
            Some(next) => ([class.index, next], 2),
            None => ([class.index, class.index], 1),
        }
    }

    /// What a taker makes of `entry`: claims its block if it is still cached
    /// and its size `fits`.
    #[inline]
    fn offer(&self, entry: Entry, fits: impl Fn(usize) -> bool) -> Claim {
        let block = self.blocks.get(entry.id);
        if !block.is_cached_as(entry) {
            return Claim::Stale;
        }
        if !fits(block.size()) {
            return Claim::Skip;
        }
        if !block.claim(entry) {
            return Claim::Stale;
        }
        Claim::Taken
    }

    /// A cached block for `request`: from the thread's own stack, else from the
    /// shards, this thread's first, or from another thread's stack.
    fn take_cached(&self, local: Mine<'_>, request: usize, class: &SizeClass) -> Option<Entry> {
        loop {
            let entry = self.find_cached(local, request, class)?;
            let block = self.blocks.get(entry.id);
            // Between the size check and the claim the block could only have
            // changed size by going back to the backend, getting new memory and
            // being cached 2^32 times, so that the generation wrapped round to
            // the entry's; ruled out all the same, with no lock held.
            if fits(block.size(), request, class) {
                return Some(entry);
            }
            // Still counted as cached: listed again as it is.
            self.list(local, block, block.mark_cached());
        }
    }

    /// What `take_cached` takes: the entry of a cached block that may fit.
    fn find_cached(&self, local: Mine<'_>, request: usize, class: &SizeClass) -> Option<Entry> {
        // With nothing cached anywhere every entry is stale: the lists need
        // not be looked through (polling may just have cached some).
        if self.caches.current_value(Hot::CachedBytes) <= 0 {
            return None;
        }
        let (classes, count) = self.candidate_classes(class);
        let classes = &classes[..count];
        let mut offer = |entry| self.offer(entry, |size| fits(size, request, class));
        if let Some(entry) =
            classes.iter().find_map(|&index| local.stack(index).and_then(|stack| stack.take(&mut offer)))
        {
            return Some(entry);
        }
        if let Some(entry) = self.shards.take(self.shards.current(), classes, &mut offer) {
            return Some(entry);
        }
        let taken = classes.iter().find_map(|&index| {
            self.caches.others_entries(&local, index).find(|&entry| matches!(offer(entry), Claim::Taken))
        });
        if taken.is_some() || self.caches.others_given_back(&local).all(|list| list.is_empty()) {
            return taken;
        }
        // Blocks other threads were given back, which they have not taken yet.
        self.adopt_all(local);
        classes.iter().find_map(|&index| local.stack(index).and_then(|stack| stack.take(&mut offer)))
    }

    #[inline(always)]
    fn allocate_new(
        &self,
        local: Mine<'_>,
        requested: usize,
        class: &SizeClass,
        cached: bool,
    ) -> Result<&Block, Error> {
        // The header is taken first and its lines fetched while the driver
        // works: a driver call leaves them out of cache, and fetching them for
        // the writes of `bind` cost about as much as the rest of a miss.
        let block = self.blocks.take_unused();
        block.prefetch();
        match self.new_memory(local, requested, class, cached) {
            Ok(address) => {
                block.bind(address, class.size, class.index, requested);
                self.by_address_stale.store(true, Ordering::Release);
                Ok(block)
            }
            Err(error) => {
                self.blocks.put_unused(block);
                Err(error)
            }
        }
    }

    /// Memory for a miss of `class` from the backend: first making way for it
    /// as the settings say if the miss found something `cached`, and once
    /// more after emptying the cache if the backend was out of memory.
    #[inline(always)]
    fn new_memory(&self, local: Mine<'_>, requested: usize, class: &SizeClass, cached: bool) -> Result<usize, Error> {
        if cached {
            if self.settings.fit == Fit::Exact {
                self.keep_budget(local, requested, class.size);
            } else if let (true, Some(oldest)) = (self.settings.releases_oldest_on_miss(), &self.oldest) {
                self.make_way(local, oldest, class);
            }
        }
        match self.host_allocate(class, true) {
            Ok(address) => Ok(address),
            Err(error) => self.new_memory_failed(local, requested, class, error),
        }
    }

    /// With `pinned_release_cached_on_miss`: cached blocks that could not serve
    /// this request give back as many bytes as it takes.
    #[inline(never)]
    fn make_way(&self, local: Mine<'_>, oldest: &Mutex<Oldest>, class: &SizeClass) {
        let mut released = 0;
        self.release_oldest(local, oldest, |bytes| {
            released += bytes;
            released < class.size
        });
    }

    /// The backend could not give memory for a miss: when it was out of memory,
    /// cached blocks of other sizes may be what stands in the way, so the cache
    /// is emptied and the call made once more.
    #[cold]
    #[inline(never)]
    fn new_memory_failed(
        &self,
        local: Mine<'_>,
        requested: usize,
        class: &SizeClass,
        error: BackendError,
    ) -> Result<usize, Error> {
        let address = match error {
            BackendError::OutOfMemory(_) => {
                self.empty_cache_with(local)?;
                self.host_allocate(class, false)
            }
            failed => Err(failed),
        };
        address.map_err(|error| match error {
            BackendError::OutOfMemory(detail) => Error::OutOfMemory { requested, size: class.size, detail },
            BackendError::Failed(detail) => Error::Backend(detail),
        })
    }

    /// New memory for `class` from the backend, counted as a miss's first call or its retry.
    #[inline(always)]
    fn host_allocate(&self, class: &SizeClass, first_of_miss: bool) -> Result<usize, BackendError> {
        let started = self.counters.clock.ticks();
        let result = self.backend.allocate(class.size);
        self.counters.host_allocated(started, first_of_miss, result.is_ok().then_some((class.index, class.size)));
        result
    }

    /// Puts a block the caller has just marked cached (`entry` claims it) into
    /// the thread's own stack, or its shard when the stack is full.
    #[inline(always)]
    fn cache(&self, local: Mine<'_>, block: &Block, entry: Entry) {
        debug_assert!(block.is_cached_as(entry), "the caller has just marked the block cached as `entry`");
        local.add_cached(&self.caches, block.size() as i64);
        self.list(local, block, entry);
    }

    /// Lists a cached block's entry, its bytes already counted, and keeps the cap.
    #[inline(always)]
    fn list(&self, local: Mine<'_>, block: &Block, entry: Entry) {
        self.push_entry(local, block, entry);
        if let Some(oldest) = &self.oldest {
            self.enforce_cap(local, oldest);
        }
    }

    #[inline(always)]
    fn push_entry(&self, local: Mine<'_>, block: &Block, entry: Entry) {
        let evicted = match local.stack(block.class()) {
            Some(stack) => stack.push(entry, block, |entry| self.is_current(entry)),
            None => Some(entry),
        };
        if let Some(oldest) = evicted {
            self.overflow(block.class(), oldest);
        }
        if let Some(oldest) = &self.oldest {
            self.note_cached(oldest, entry);
        }
    }

    /// The thread's stack was full: its oldest entry goes to the shard.
    #[cold]
    fn overflow(&self, class: usize, entry: Entry) {
        self.shards.push(self.shards.current(), class, entry, |entry| self.is_current(entry));
    }

    /// Whether `entry` still claims its block: lists drop the others when swept.
    fn is_current(&self, entry: Entry) -> bool {
        self.blocks.get(entry.id).is_cached_as(entry)
    }

    /// Every cached block, with the entry in the shards or the threads'
    /// stacks that claims it: what the cache held as the lists were read
    /// (a block may be taken meanwhile, which a claim through its entry tells).
    fn cached_blocks(&self, local: Mine<'_>) -> impl Iterator<Item = (Entry, &Block)> {
        self.adopt_all(local);
        let mut entries = self.shards.entries();
        entries.extend(self.caches.all_entries());
        entries
            .into_iter()
            .map(|entry| (entry, self.blocks.get(entry.id)))
            .filter(|(entry, block)| block.is_cached_as(*entry))
    }
}

impl<B: Backend + 'static> CachingAllocator<B> {
    /// Starts the background reclaimer (`pinned_use_background_threads`). It
    /// stops when the returned handle is dropped, or when the allocator is.
    pub fn start_reclaimer(self: &Arc<Self>) -> std::io::Result<Reclaimer> {
        let reclaimer = Reclaimer::start(Arc::downgrade(self))?;
        *lock(&self.reclaimer) = reclaimer.thread();
        self.reclaimer_running.store(true, Ordering::Relaxed);
        Ok(reclaimer)
    }
}

impl<B: Backend + 'static> Reclaim for CachingAllocator<B> {
    fn reclaim(&self) -> bool {
        self.poll_pending();
        !self.pending.is_empty()
    }

    fn stopped(&self) {
        self.reclaimer_running.store(false, Ordering::Relaxed);
        *lock(&self.reclaimer) = None;
    }
}

#[cfg(test)]
mod capture_tests;
#[cfg(test)]
#[allow(dead_code)] // the unit tests use part of it, the model the rest
mod fake_backend;
#[cfg(test)]
mod tests;
