//! Private pools for graph capture, as PyTorch 2.15's host allocator has them
//! (`begin_allocate_to_pool`, `end_allocate_to_pool`, `release_pool`).
//!
//! While a capture records to a pool, an allocation whose current stream the
//! capture's filter accepts comes from that pool: its own free list, else new
//! memory. A block's tag names its pool and whether its stream was being
//! captured when it was allocated (`block.rs`). A captured block gets no event
//! (an event recorded into a capturing queue becomes a graph node, not a
//! point in time): freed unused, it goes back to its pool's list; freed
//! after streams used it, it is retired in its pool until the pool is
//! released. The pool's last release (once no capture records to it) gives
//! its free blocks back to the backend and records an event for each retired
//! one, which then returns to the default pool when its events complete.
//!
//! Blocks of a pool never enter the default pool's lists, so the hot paths
//! never see them. A pool's free blocks are its own, for the graph's
//! replays: idle bytes, but not cached bytes, and not under the cache cap; with a capture under way, allocations leave the hot path
//! (`watch::CAPTURE`). The registry, its hooks and filters are under one
//! lock; the hooks and filters are called with it held, so they must not
//! call the allocator.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::block::{Block, BlockState, Entry, CAPTURED};
use super::size_class::SizeClass;
use super::sync::lock;
use super::thread_cache::Mine;
use super::watch;
use super::{Allocation, Backend, CachingAllocator, Error, StreamKey};

/// A pool's name, PyTorch's `c10::MempoolId_t`; `{0, 0}` is the default pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PoolId {
    pub first: u64,
    pub second: u64,
}

impl PoolId {
    pub const DEFAULT: PoolId = PoolId { first: 0, second: 0 };
}

/// What the host runtime says about its streams.
pub trait CaptureHooks: Send + Sync {
    /// The calling thread's current stream, if it has one.
    fn current_stream(&self) -> Option<StreamKey>;
    /// Whether work submitted to `stream` is being captured into a graph now.
    fn is_capturing(&self, stream: StreamKey) -> bool;
}

/// Whether a capture's pool serves allocations made while a stream is current.
pub type StreamFilter = Box<dyn Fn(StreamKey) -> bool + Send + Sync>;

#[derive(Default)]
pub(super) struct Pools {
    hooks: Option<Box<dyn CaptureHooks>>,
    pools: HashMap<u32, PrivatePool>,
    by_id: HashMap<PoolId, u32>,
    /// Captures under way, oldest first: the first whose filter accepts the
    /// current stream takes the allocation.
    captures: Vec<(PoolId, Option<StreamFilter>)>,
    /// The tag of the last pool made; tags are never reused, so a block
    /// tagged with a pool since released finds no pool.
    last_tag: u32,
}

struct PrivatePool {
    id: PoolId,
    /// Begins not yet matched by a release.
    uses: u32,
    capturing: bool,
    /// Entries of the pool's cached blocks (entries gone stale are dropped when met).
    free: Vec<Entry>,
    /// Blocks freed after streams used them during capture, with those streams.
    retired: Vec<(u32, Vec<StreamKey>)>,
}

/// Where an allocation goes.
pub(super) struct Route {
    /// The pool's tag, 0 for the default pool.
    pub pool: u32,
    pub captured: bool,
    pub stream: Option<StreamKey>,
}

impl<B: Backend> CachingAllocator<B> {
    /// Sets how the current stream and its capture are told. Not while a capture is under way.
    pub fn set_capture_hooks(&self, hooks: Box<dyn CaptureHooks>) -> Result<(), Error> {
        let mut pools = lock(&self.pools);
        if !pools.captures.is_empty() {
            return Err(Error::PoolBusy("the capture hooks cannot change while a capture is under way".into()));
        }
        pools.hooks = Some(hooks);
        Ok(())
    }

    /// Routes allocations made while a stream `filter` accepts (every stream
    /// if `None`) is current to pool `id`, making it or taking one more use of it.
    /// On failure the filter comes back with the error, not dropped.
    pub fn begin_allocate_to_pool(
        &self,
        id: PoolId,
        filter: Option<StreamFilter>,
    ) -> Result<(), (Error, Option<StreamFilter>)> {
        if id == PoolId::DEFAULT {
            return Err((Error::DefaultPool, filter));
        }
        let mut pools = lock(&self.pools);
        if pools.hooks.is_none() {
            return Err((Error::NoCaptureHooks, filter));
        }
        if pools.captures.iter().any(|(capturing, _)| *capturing == id) {
            return Err((Error::PoolBusy(format!("a capture is already recording to pool {}", show(id))), filter));
        }
        let tag = match pools.by_id.get(&id) {
            Some(&tag) => tag,
            None => {
                let tag = pools.last_tag + 1;
                if tag >= CAPTURED {
                    let why = format!("{} private pools were made, as many as block tags can name", tag - 1);
                    return Err((Error::PoolBusy(why), filter));
                }
                pools.last_tag = tag;
                pools.by_id.insert(id, tag);
                let pool = PrivatePool { id, uses: 0, capturing: false, free: Vec::new(), retired: Vec::new() };
                pools.pools.insert(tag, pool);
                tag
            }
        };
        let pool = pools.pools.get_mut(&tag).expect("every pool named is in the registry");
        pool.uses += 1;
        pool.capturing = true;
        pools.captures.push((id, filter));
        self.watch.fetch_or(watch::CAPTURE, Ordering::Relaxed);
        Ok(())
    }

    /// Stops routing allocations to pool `id`; a pool released meanwhile goes now.
    pub fn end_allocate_to_pool(&self, id: PoolId) -> Result<(), Error> {
        let mut pools = lock(&self.pools);
        let Some(position) = pools.captures.iter().position(|(capturing, _)| *capturing == id) else {
            return Err(Error::UnknownPool { id, why: "no capture is recording to it" });
        };
        let (_, filter) = pools.captures.remove(position);
        if pools.captures.is_empty() {
            self.watch.fetch_and(!watch::CAPTURE, Ordering::Relaxed);
        }
        let tag = pools.by_id[&id];
        let pool = pools.pools.get_mut(&tag).expect("a capture's pool is in the registry");
        pool.capturing = false;
        let released = (pool.uses == 0).then(|| remove(&mut pools, tag));
        drop(pools);
        // The host's drop hook runs without the lock.
        drop(filter);
        released.map_or(Ok(()), |pool| self.drain(pool))
    }

    /// Gives back one use of pool `id`; at the last, once no capture records
    /// to it, its free blocks go back to the backend and its retired ones wait
    /// for events recorded now, then return to the default pool.
    pub fn release_pool(&self, id: PoolId) -> Result<(), Error> {
        let mut pools = lock(&self.pools);
        let unknown = Error::UnknownPool { id, why: "it was never begun, or was released already" };
        let Some(&tag) = pools.by_id.get(&id) else { return Err(unknown) };
        let pool = pools.pools.get_mut(&tag).expect("every pool named is in the registry");
        if pool.uses == 0 {
            return Err(unknown);
        }
        pool.uses -= 1;
        if pool.uses > 0 || pool.capturing {
            return Ok(());
        }
        let pool = remove(&mut pools, tag);
        drop(pools);
        self.drain(pool)
    }

    fn drain(&self, pool: PrivatePool) -> Result<(), Error> {
        let mut first_error = None;
        for entry in pool.free {
            let block = self.blocks.get(entry.id);
            if block.claim_as(entry, BlockState::Releasing) {
                if let Err(error) = self.release_memory(block) {
                    first_error.get_or_insert(error);
                }
            }
        }
        for (id, streams) in pool.retired {
            let block = self.blocks.get(id);
            block.set_tag(0);
            self.counters.captured_blocks.fetch_sub(1, Ordering::Relaxed);
            if let Err(error) = self.wait_for_streams(block, &streams) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Where an allocation made now goes: the pool of the first capture whose
    /// filter accepts the current stream, else the default pool.
    pub(super) fn route(&self) -> Route {
        let mut route = Route { pool: 0, captured: false, stream: None };
        if self.watch.load(Ordering::Relaxed) & watch::CAPTURE == 0 {
            return route;
        }
        let pools = lock(&self.pools);
        let Some(stream) = pools.hooks.as_ref().and_then(|hooks| hooks.current_stream()) else { return route };
        route.stream = Some(stream);
        route.captured = pools.hooks.as_ref().is_some_and(|hooks| hooks.is_capturing(stream));
        let accepted = pools.captures.iter().find(|(_, filter)| filter.as_ref().is_none_or(|accepts| accepts(stream)));
        if let Some((id, _)) = accepted {
            route.pool = pools.by_id[id];
        }
        route
    }

    /// A block of pool `tag` for `size` bytes: its smallest cached block of
    /// the request's aligned size up to 1/8 more, else new memory. `None` if
    /// the pool went meanwhile. The second value: whether it is new memory.
    pub(super) fn allocate_in_pool(
        &self,
        local: Mine<'_>,
        tag: u32,
        size: usize,
        class: &SizeClass,
    ) -> Option<Result<(Allocation, bool), Error>> {
        let mut pools = lock(&self.pools);
        let pool = pools.pools.get_mut(&tag)?;
        pool.free.retain(|&entry| self.is_current(entry));
        let largest = class.size.saturating_add(class.size / 8);
        let best = (0..pool.free.len())
            .map(|index| (index, self.blocks.get(pool.free[index].id).size()))
            .filter(|&(_, bytes)| bytes >= class.size && bytes <= largest)
            .min_by_key(|&(_, bytes)| bytes);
        if let Some((index, _)) = best {
            let entry = pool.free.swap_remove(index);
            let block = self.blocks.get(entry.id);
            if block.claim(entry) {
                // Not counted as cached bytes while in the pool's list.
                return Some(Ok((self.hand_out(local, block, size, false), false)));
            }
        }
        drop(pools);
        // The caller tags it; should the pool go meanwhile, the tag names no
        // pool and the block's free takes it to the default pool.
        Some(self.allocate_new(local, size, class, false).map(|block| (self.hand_out(local, block, size, false), true)))
    }

    /// Lists an owned block of pool `tag` in its pool's free list; false
    /// (nothing done) if the pool has gone.
    pub(super) fn cache_in_pool(&self, tag: u32, block: &Block) -> bool {
        let mut pools = lock(&self.pools);
        let Some(pool) = pools.pools.get_mut(&tag) else { return false };
        pool.free.push(block.mark_cached());
        true
    }

    /// A freed block allocated during capture that streams used: kept out of
    /// circulation (in its pool until the pool's release, or forever if it
    /// is in the default pool). False, nothing done, if its pool has gone:
    /// its capture is over and events may be recorded for it.
    pub(super) fn retire_captured(&self, block: &Block, streams: &[StreamKey]) -> bool {
        let tag = block.tag() & !CAPTURED;
        if tag == 0 {
            self.retire(block);
            return true;
        }
        let mut pools = lock(&self.pools);
        let Some(pool) = pools.pools.get_mut(&tag) else { return false };
        pool.retired.push((block.id, streams.to_vec()));
        self.counters.captured_blocks.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The pool a tag names now; the default pool for one released.
    pub(super) fn pool_id(&self, tag: u32) -> PoolId {
        let tag = tag & !CAPTURED;
        if tag == 0 {
            return PoolId::DEFAULT;
        }
        lock(&self.pools).pools.get(&tag).map_or(PoolId::DEFAULT, |pool| pool.id)
    }

    /// Every live pool's name by tag, and by block for the cached blocks
    /// (untagged in their state word), read under one lock: for the segments.
    pub(super) fn pool_names(&self) -> PoolNames {
        let pools = lock(&self.pools);
        let by_tag = pools.pools.iter().map(|(&tag, pool)| (tag, pool.id)).collect();
        let cached = pools.pools.values().flat_map(|pool| pool.free.iter().map(|entry| (entry.id, pool.id)));
        PoolNames { by_tag, cached: cached.collect() }
    }
}

/// What `pool_names` read.
pub(super) struct PoolNames {
    by_tag: HashMap<u32, PoolId>,
    cached: HashMap<u32, PoolId>,
}

impl PoolNames {
    /// The pool `block` belongs to (the default pool if its pool is gone).
    pub(super) fn of(&self, block: &Block) -> PoolId {
        let by_tag = || self.by_tag.get(&(block.tag() & !CAPTURED)).copied().unwrap_or(PoolId::DEFAULT);
        self.cached.get(&block.id).copied().unwrap_or_else(by_tag)
    }
}

fn remove(pools: &mut Pools, tag: u32) -> PrivatePool {
    let pool = pools.pools.remove(&tag).expect("a pool removed is in the registry");
    pools.by_id.remove(&pool.id);
    pool
}

pub(super) fn show(id: PoolId) -> String {
    format!("({}, {})", id.first, id.second)
}
