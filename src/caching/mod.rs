//! The caching core: blocks, size classes, free lists, per-stream pending
//! queues and statistics, generic over a [`Backend`]. It knows nothing of Level
//! Zero, C or C++; addresses and contexts are plain integers here.
//!
//! The life of a block: `allocate` takes one from its size class's free list,
//! or gets new memory from the backend; the caller's free hands it back, straight
//! to the free list if no stream used it, otherwise behind one event per stream
//! in that stream's pending queue; when the last event completes it returns to
//! the free list. `empty_cache` gives every free block back to the backend.

mod backend;
mod block;
mod error;
mod pending;
pub mod size_class;
mod stats;

pub use backend::{Backend, BackendError, HostMemory, StreamEvents, StreamKey};
pub use error::Error;
pub use stats::{DurationStat, Stat, Stats};

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use block::{Arena, Block, BlockState};
use pending::PendingQueues;
use size_class::{size_class, CLASS_COUNT};
use stats::Counters;

/// Settings that shape how requests are rounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Divisions per power of two: 1 (PyTorch's rounding), 2, 4 or 8.
    pub roundup_divisions: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { roundup_divisions: 1 }
    }
}

/// A block handed to a caller: its memory and the context that names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub address: usize,
    pub context: usize,
    /// The block's size, at least the size asked for.
    pub size: usize,
}

pub struct CachingAllocator<B: Backend> {
    backend: B,
    settings: Settings,
    blocks: Arena,
    /// One LIFO list per size class, like PyTorch's: the most recently freed
    /// block is the warmest.
    free_lists: Box<[Mutex<Vec<u32>>]>,
    /// Block by base address, for `record_event` with a pointer but a foreign
    /// context (a `from_blob` of our memory). Touched only on a cache miss, on
    /// `empty_cache` and on that fallback.
    by_address: Mutex<HashMap<usize, u32>>,
    pending: PendingQueues<B::Event>,
    counters: Counters,
}

impl<B: Backend> CachingAllocator<B> {
    pub fn new(backend: B, settings: Settings) -> Self {
        assert!(size_class::ALLOWED_DIVISIONS.contains(&settings.roundup_divisions));
        CachingAllocator {
            backend,
            settings,
            blocks: Arena::new(),
            free_lists: (0..CLASS_COUNT).map(|_| Mutex::new(Vec::new())).collect(),
            by_address: Mutex::new(HashMap::new()),
            pending: PendingQueues::new(),
            counters: Counters::default(),
        }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Hands out a block of at least `size` bytes; `None` for size 0, which
    /// touches nothing (PyTorch returns a null pointer and a null context).
    pub fn allocate(&self, size: usize) -> Result<Option<Allocation>, Error> {
        if size == 0 {
            return Ok(None);
        }
        let class = size_class(size, self.settings.roundup_divisions).ok_or(Error::SizeTooLarge { requested: size })?;
        self.poll_pending();
        let block = match self.take_cached(class.index, size) {
            Some(block) => {
                self.counters.cache_hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                block
            }
            None => self.allocate_new(size, class.size)?,
        };
        block.set_requested(size);
        self.counters.active_requests.increase(1);
        self.counters.active_bytes.increase(block.size() as i64);
        self.counters.requested_bytes.increase(size as i64);
        Ok(Some(Allocation { address: block.address(), context: Arena::context_of(block), size: block.size() }))
    }

    /// Takes back the block named by `context`. Blocks used on streams wait for
    /// their events before they can be reused.
    pub fn free(&self, context: usize) -> Result<(), Error> {
        let block = self.blocks.lookup(context).ok_or(Error::UnknownBlock { context })?;
        let streams = block.release().ok_or(Error::NotAllocated { context })?;
        self.counters.active_requests.decrease(1);
        self.counters.active_bytes.decrease(block.size() as i64);
        self.counters.requested_bytes.decrease(block.requested() as i64);
        if streams.is_empty() {
            self.cache(block);
            return Ok(());
        }
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
        for list in self.free_lists.iter() {
            let ids = std::mem::take(&mut *list.lock().unwrap_or_else(|e| e.into_inner()));
            for id in ids {
                if let Err(error) = self.release_memory(self.blocks.get(id)) {
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    pub fn reset_peak_stats(&self) {
        self.counters.reset_peak();
    }

    pub fn reset_accumulated_stats(&self) {
        self.counters.reset_accumulated();
    }

    fn poll_pending(&self) {
        self.pending.poll(&self.backend, |id| {
            let block = self.blocks.get(id);
            if block.complete_one_event() {
                self.counters.pending_blocks.decrease(1);
                self.cache(block);
            }
        });
    }

    fn take_cached(&self, class: usize, size: usize) -> Option<&Block> {
        let id = self.free_lists[class].lock().unwrap_or_else(|e| e.into_inner()).pop()?;
        let block = self.blocks.get(id);
        debug_assert!(block.size() >= size, "a free list holds blocks of one size");
        let moved = block.transition(BlockState::Cached, BlockState::Allocated);
        debug_assert!(moved, "blocks in free lists are cached");
        self.counters.cached_bytes.decrease(block.size() as i64);
        Some(block)
    }

    fn allocate_new(&self, requested: usize, size: usize) -> Result<&Block, Error> {
        self.counters.cache_misses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let address = match self.host_allocate(size) {
            Err(BackendError::OutOfMemory(_)) => {
                // Cached blocks of other sizes may be what stands in the way.
                self.empty_cache()?;
                self.host_allocate(size)
            }
            other => other,
        };
        let address = address.map_err(|error| match error {
            BackendError::OutOfMemory(detail) => Error::OutOfMemory { requested, size, detail },
            BackendError::Failed(detail) => Error::Backend(detail),
        })?;
        let block = self.blocks.take_unused();
        block.bind(address, size, requested);
        self.by_address.lock().unwrap_or_else(|e| e.into_inner()).insert(address, block.id);
        self.counters.allocations.increase(1);
        self.counters.allocated_bytes.increase(size as i64);
        Ok(block)
    }

    fn host_allocate(&self, size: usize) -> Result<usize, BackendError> {
        let started = Instant::now();
        let result = self.backend.allocate(size);
        self.counters.host_alloc_time.add(started.elapsed());
        result
    }

    fn cache(&self, block: &Block) {
        let class = size_class(block.size(), self.settings.roundup_divisions)
            .expect("a block's size is a size class")
            .index;
        block.set_state(BlockState::Cached);
        self.counters.cached_bytes.increase(block.size() as i64);
        self.free_lists[class].lock().unwrap_or_else(|e| e.into_inner()).push(block.id);
    }

    fn release_memory(&self, block: &Block) -> Result<(), Error> {
        let (address, size) = (block.address(), block.size());
        self.by_address.lock().unwrap_or_else(|e| e.into_inner()).remove(&address);
        self.counters.cached_bytes.decrease(size as i64);
        let started = Instant::now();
        let result = self.backend.free(address, size);
        self.counters.host_free_time.add(started.elapsed());
        self.counters.allocations.decrease(1);
        self.counters.allocated_bytes.decrease(size as i64);
        self.blocks.put_unused(block);
        result.map_err(|error| Error::Backend(format!("freeing host memory at {address:#x} failed: {error}")))
    }
}

#[cfg(test)]
mod tests;
