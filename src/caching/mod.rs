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
//! The hot path, a cached block of the right class handed out and taken back,
//! takes only the calling thread's own free-list lock and touches only its own
//! counters. Pending events are polled when the cache misses and at every 32nd
//! allocation of a thread while any are pending, or by the background
//! reclaimer instead.

mod backend;
mod block;
mod config;
mod error;
mod hash;
mod pending;
mod reclaimer;
mod shards;
pub mod size_class;
mod stats;

pub use backend::{Backend, BackendError, HostMemory, StreamEvents, StreamKey};
pub use config::{Settings, UnknownKeys};
pub use error::Error;
pub use hash::IntegerMap;
pub use reclaimer::Reclaimer;
pub use stats::{DurationStat, Stat, Stats};

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use block::{Arena, Block, BlockState};
use pending::PendingQueues;
use reclaimer::Reclaim;
use size_class::{fits, Rounding, SizeClass, CLASS_COUNT};
use shards::{Hot, ShardGuard, Shards};
use stats::Counters;

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
    /// Free lists and hot counters, one shard per core.
    shards: Shards,
    /// Block by base address, for `record_event` with a pointer but a foreign
    /// context (a `from_blob` of our memory). Touched only on a cache miss, on
    /// `empty_cache` and on that fallback.
    by_address: Mutex<IntegerMap<usize, u32>>,
    pending: PendingQueues<B::Event>,
    /// With a cache cap only: cached blocks, oldest first, each with the
    /// generation it was cached as (entries of blocks taken since are stale).
    oldest: Option<Mutex<VecDeque<(u32, u64)>>>,
    /// The background reclaimer's thread while it runs, woken when blocks
    /// start waiting; the allocation path polls only when there is none.
    reclaimer: Mutex<Option<std::thread::Thread>>,
    reclaimer_running: AtomicBool,
    counters: Counters,
}

impl<B: Backend> CachingAllocator<B> {
    pub fn new(backend: B, settings: Settings) -> Self {
        assert!(size_class::ALLOWED_DIVISIONS.contains(&settings.roundup_divisions));
        CachingAllocator {
            backend,
            settings,
            rounding: Rounding { divisions: settings.roundup_divisions, threshold: settings.max_round_threshold },
            blocks: Arena::new(),
            shards: Shards::new(),
            by_address: Mutex::new(IntegerMap::default()),
            pending: PendingQueues::new(),
            oldest: (settings.max_cached_bytes != usize::MAX).then(|| Mutex::new(VecDeque::new())),
            reclaimer: Mutex::new(None),
            reclaimer_running: AtomicBool::new(false),
            counters: Counters::new(CLASS_COUNT),
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
    pub fn allocate(&self, size: usize) -> Result<Option<Allocation>, Error> {
        if size == 0 {
            return Ok(None);
        }
        let class = self.rounding.classify(size).ok_or(Error::SizeTooLarge { requested: size })?;
        let shard = self.shards.current();
        let inline_polling = !self.reclaimer_running.load(Ordering::Relaxed) && !self.pending.is_empty();
        if inline_polling && poll_is_due() {
            self.poll_pending();
        }
        // The hot path: a block from the thread's own shard, counted under the same lock.
        let mut guard = self.shards.lock(shard);
        if let Some(block) = self.take_cached(&mut guard, &class, size) {
            self.count_allocation(&guard, block, size);
            return Ok(Some(allocation(block)));
        }
        drop(guard);
        let block = match self.steal_cached(shard, &class, size) {
            Some(block) => block,
            None if inline_polling => {
                self.poll_pending();
                // The guard must be gone before a miss, which may empty the cache.
                let polled = self.take_cached(&mut self.shards.lock(shard), &class, size);
                match polled {
                    Some(block) => block,
                    None => self.allocate_new(size, &class)?,
                }
            }
            None => self.allocate_new(size, &class)?,
        };
        self.count_allocation(&self.shards.lock(shard), block, size);
        Ok(Some(allocation(block)))
    }

    /// Takes back the block named by `context`. Blocks used on streams wait for
    /// their events before they can be reused.
    pub fn free(&self, context: usize) -> Result<(), Error> {
        let block = self.blocks.lookup(context).ok_or(Error::UnknownBlock { context })?;
        let streams = block.release().ok_or(Error::NotAllocated { context })?;
        let guard = self.shards.lock(self.shards.current());
        let (bytes, requested) = (block.size() as i64, block.requested() as i64);
        guard.remove(&[(Hot::ActiveRequests, 1), (Hot::ActiveBytes, bytes), (Hot::RequestedBytes, requested)]);
        if streams.is_empty() {
            self.cache(guard, block);
            return Ok(());
        }
        drop(guard);
        let mut events = Vec::with_capacity(streams.len());
        for stream in streams {
            match self.backend.record(stream) {
                Ok(event) => events.push((stream, event)),
                Err(error) => {
                    // Without an event nobody can tell when the stream is done
                    // with the memory, so it is never handed out again.
                    block.set_state(BlockState::Retired);
                    events.into_iter().for_each(|(_, event)| self.backend.release(event));
                    return Err(Error::Backend(format!(
                        "recording an event on stream {stream:?} failed ({error}); the block at {:#x} is retired",
                        block.address()
                    )));
                }
            }
        }
        self.counters.pending_blocks.increase(1);
        block.set_pending_events(events.len());
        for (stream, event) in events {
            self.pending.push(stream, event, block.id);
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
        let id = self.by_address.lock().unwrap_or_else(|e| e.into_inner()).get(&address).copied();
        Ok(id.is_some_and(|id| self.blocks.get(id).add_stream(stream)))
    }

    /// Reclaims blocks whose events have completed, then gives every free block
    /// back to the backend. Blocks in use or still waiting stay.
    pub fn empty_cache(&self) -> Result<(), Error> {
        self.poll_pending();
        let mut first_error = None;
        for id in self.shards.drain(|id| self.blocks.get(id).size() as i64) {
            if let Err(error) = self.release_memory(self.blocks.get(id)) {
                first_error.get_or_insert(error);
            }
        }
        if let Some(oldest) = &self.oldest {
            lock(oldest).clear();
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Moves blocks whose events have completed to the free lists.
    pub fn poll_pending(&self) {
        self.pending.poll(&self.backend, |id| {
            let block = self.blocks.get(id);
            if block.complete_one_event() {
                self.counters.pending_blocks.decrease(1);
                self.cache(self.shards.lock(self.shards.current()), block);
            }
        });
    }

    pub fn stats(&self) -> Stats {
        self.counters.snapshot(&self.shards)
    }

    /// Per size class, the classes that ever held a block (since the last
    /// accumulated reset) or hold one now.
    pub fn class_stats(&self) -> Vec<ClassStats> {
        let cached = self.shards.counts();
        self.counters
            .class_snapshot()
            .into_iter()
            .enumerate()
            .filter(|(_, allocations)| allocations.allocated > 0 || allocations.current > 0)
            .map(|(index, allocations)| ClassStats { size: size_class::class_size(index), allocations, cached: cached[index] })
            .collect()
    }

    pub fn reset_peak_stats(&self) {
        self.counters.reset_peak(&self.shards);
    }

    pub fn reset_accumulated_stats(&self) {
        self.counters.reset_accumulated(&self.shards);
    }

    /// The lists a request may be served from: its class's, then the next larger.
    fn candidate_classes(&self, class: &SizeClass) -> ([usize; 2], usize) {
        match self.rounding.next_index(class.index) {
            Some(next) => ([class.index, next], 2),
            None => ([class.index, class.index], 1),
        }
    }

    /// A cached block from the locked shard, counted as a hit there.
    fn take_cached(&self, guard: &mut ShardGuard<'_>, class: &SizeClass, request: usize) -> Option<&Block> {
        let fitting = |id| fits(self.blocks.get(id).size(), request, class);
        let (classes, count) = self.candidate_classes(class);
        let id = classes[..count].iter().find_map(|&index| guard.take(index, fitting))?;
        let block = self.blocks.get(id);
        guard.remove(&[(Hot::CachedBytes, block.size() as i64)]);
        guard.hit();
        // Taken from its list under the shard's lock, the block is ours alone.
        block.set_state(BlockState::Allocated);
        Some(block)
    }

    /// A cached block from another thread's shard.
    fn steal_cached(&self, shard: usize, class: &SizeClass, request: usize) -> Option<&Block> {
        let fitting = |id| fits(self.blocks.get(id).size(), request, class);
        let (classes, count) = self.candidate_classes(class);
        let id = self.shards.steal(shard, &classes[..count], fitting, |id| self.blocks.get(id).size() as i64)?;
        let block = self.blocks.get(id);
        block.set_state(BlockState::Allocated);
        Some(block)
    }

    fn count_allocation(&self, guard: &ShardGuard<'_>, block: &Block, requested: usize) {
        block.set_requested(requested);
        guard.add(&[(Hot::ActiveRequests, 1), (Hot::ActiveBytes, block.size() as i64), (Hot::RequestedBytes, requested as i64)]);
    }

    fn allocate_new(&self, requested: usize, class: &SizeClass) -> Result<&Block, Error> {
        self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
        let address = match self.host_allocate(class.size) {
            Err(BackendError::OutOfMemory(_)) => {
                // Cached blocks of other sizes may be what stands in the way.
                self.empty_cache()?;
                self.host_allocate(class.size)
            }
            other => other,
        };
        let address = address.map_err(|error| match error {
            BackendError::OutOfMemory(detail) => Error::OutOfMemory { requested, size: class.size, detail },
            BackendError::Failed(detail) => Error::Backend(detail),
        })?;
        let block = self.blocks.take_unused();
        block.bind(address, class.size, class.index, requested);
        lock(&self.by_address).insert(address, block.id);
        self.counters.allocations.increase(1);
        self.counters.allocated_bytes.increase(class.size as i64);
        self.counters.class_allocations[class.index].increase(1);
        Ok(block)
    }

    fn host_allocate(&self, size: usize) -> Result<usize, BackendError> {
        let started = Instant::now();
        let result = self.backend.allocate(size);
        self.counters.host_alloc_time.add(started.elapsed());
        result
    }

    /// Puts a block the caller owns into the locked shard's free list.
    fn cache(&self, mut guard: ShardGuard<'_>, block: &Block) {
        let generation = block.mark_cached();
        guard.add(&[(Hot::CachedBytes, block.size() as i64)]);
        guard.push(block.class(), block.id);
        drop(guard);
        if let Some(oldest) = &self.oldest {
            self.note_cached(oldest, block.id, generation);
            self.enforce_cap(oldest);
        }
    }

    fn note_cached(&self, oldest: &Mutex<VecDeque<(u32, u64)>>, id: u32, generation: u64) {
        let mut oldest = lock(oldest);
        oldest.push_back((id, generation));
        // Entries of blocks taken from the cache since stay until a sweep; sweeping
        // when they outnumber the blocks held keeps the queue in proportion.
        if oldest.len() > 2 * self.counters.allocations.snapshot().current.max(0) as usize + 64 {
            oldest.retain(|&(id, generation)| self.blocks.get(id).is_cached_as(generation));
        }
    }

    /// Gives cached blocks back, oldest first, while cached bytes exceed the cap.
    fn enforce_cap(&self, oldest: &Mutex<VecDeque<(u32, u64)>>) {
        while self.shards.current_value(Hot::CachedBytes) > self.settings.max_cached_bytes as i64 {
            let Some((id, generation)) = lock(oldest).pop_front() else { return };
            let block = self.blocks.get(id);
            if block.is_cached_as(generation) && self.shards.remove(block.class(), id, block.size() as i64) {
                // A failed free is the backend's to report; the block is gone from the cache either way.
                let _ = self.release_memory(block);
            }
        }
    }

    fn release_memory(&self, block: &Block) -> Result<(), Error> {
        let (address, size) = (block.address(), block.size());
        let class = block.class();
        lock(&self.by_address).remove(&address);
        let started = Instant::now();
        let result = self.backend.free(address, size);
        self.counters.host_free_time.add(started.elapsed());
        self.counters.allocations.decrease(1);
        self.counters.allocated_bytes.decrease(size as i64);
        self.counters.class_allocations[class].decrease(1);
        self.blocks.put_unused(block);
        result.map_err(|error| Error::Backend(format!("freeing host memory at {address:#x} failed: {error}")))
    }
}

fn allocation(block: &Block) -> Allocation {
    Allocation { address: block.address(), context: Arena::context_of(block), size: block.size() }
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

/// Blocks wait for events: besides every miss, each thread polls at every
/// `POLL_EVERY`-th allocation, so that a completed block comes back into use even
/// while other cached blocks keep serving hits, at a cost spread thin.
const POLL_EVERY: u32 = 32;

fn poll_is_due() -> bool {
    thread_local! {
        static ALLOCATIONS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    ALLOCATIONS
        .try_with(|count| {
            let next = count.get().wrapping_add(1);
            count.set(next);
            next % POLL_EVERY == 0
        })
        .unwrap_or(true)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
