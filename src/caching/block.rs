//! Block headers and the arena that owns them.
//!
//! A block's header address is the `ctx` that PyTorch stores in its `DataPtr`
//! and hands back to the deleter and to `record_event`. Any pointer may arrive
//! there (a foreign context, a stale one after `empty_cache`, a double free), so
//! headers live in an arena that is never freed while the allocator lives: a
//! context is checked by address arithmetic before it is used, without a lock
//! and without dereferencing anything that is not ours. Headers whose memory
//! went back to the driver are recycled for new blocks.

#[cfg(loom)]
use loom::sync::{
    atomic::{AtomicU64, AtomicUsize},
    Mutex, MutexGuard,
};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
#[cfg(not(loom))]
use std::sync::{
    atomic::{AtomicU64, AtomicUsize},
    Mutex, MutexGuard,
};

use super::backend::StreamKey;
use super::spin_lock::SpinLock;
use super::sync::lock;

/// Where a block is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum BlockState {
    /// The header has no memory.
    Unused = 0,
    /// Handed out to a caller, no stream recorded.
    Allocated = 1,
    /// Freed by the caller; waiting for events on the streams that used it.
    Pending = 2,
    /// In a free list, ready for reuse.
    Cached = 3,
    /// An event could not be recorded for it, so no one can know when the
    /// device is done with it: it is never reused nor freed.
    Retired = 4,
    /// Handed out to a caller, and streams were recorded: freeing it takes the
    /// streams lock, which a free of a block no stream used never does.
    AllocatedOnStreams = 5,
    /// Claimed from the cache to go back to the backend.
    Releasing = 6,
}

impl BlockState {
    fn from_word(word: u64) -> BlockState {
        match word as u8 {
            1 => BlockState::Allocated,
            2 => BlockState::Pending,
            3 => BlockState::Cached,
            4 => BlockState::Retired,
            5 => BlockState::AllocatedOnStreams,
            6 => BlockState::Releasing,
            _ => BlockState::Unused,
        }
    }
}

/// A block's place in a free list: which block, and which stay in the cache
/// the entry was made for. Free lists hold entries, not blocks: whoever takes
/// a block claims it through an entry, and an entry of an earlier stay (the
/// block was claimed through another list, or given back) claims nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: u32,
    pub generation: u32,
}

impl Entry {
    /// One word, for lists read by other threads without a lock.
    pub fn pack(self) -> u64 {
        (self.generation as u64) << 32 | self.id as u64
    }

    pub fn unpack(word: u64) -> Entry {
        Entry { id: word as u32, generation: (word >> 32) as u32 }
    }
}

/// What an entry offered to a taker turned out to be.
pub enum Claim {
    /// Claimed: the taker owns the block.
    Taken,
    /// The block was claimed elsewhere or is not cached any more: drop the entry.
    Stale,
    /// Cached, but not of a size the taker wants: keep the entry.
    Skip,
}

/// The state word: the state in the low byte, the generation, which counts
/// the block's stays in the cache (wrapping), in the high half, where an
/// entry keeps it too: so a free makes its next word with one addition and a
/// claim its expected word from the entry's with a mask. Between them, the
/// tag (see `Block::tag`), 0 in every word made here.
fn word(state: BlockState, generation: u32) -> u64 {
    (generation as u64) << 32 | state as u64
}

/// The state word `current` in state `state`, its tag and generation kept.
fn with_state(current: u64, state: BlockState) -> u64 {
    (current & !0xff) | state as u64
}

const TAG_SHIFT: u32 = 8;
const TAG_MASK: u64 = 0xff_ffff << TAG_SHIFT;
/// In a block's tag: allocated while the current stream was being captured,
/// so no event may be recorded for it. Below it, the pool's tag.
pub(crate) const CAPTURED: u32 = 1 << 23;

fn generation_of(word: u64) -> u32 {
    (word >> 32) as u32
}

/// One block of host memory. Its fields are atomics because a header is shared
/// by reference with every thread that may look a context up. A pair of cache
/// lines of its own, so that threads using neighbouring blocks do not share
/// one: the prefetchers of x86 cores fetch a line's neighbour in its aligned
/// pair, so a line beside one that another core writes is contended too.
#[repr(align(128))]
pub struct Block {
    pub id: u32,
    /// State and generation in one word, so that one compare-and-swap both
    /// checks that an entry is current and takes the block. In the same word
    /// the tag: the private pool the block belongs to (`pools.rs`; 0: the
    /// default pool), with `CAPTURED` set if it was allocated while its
    /// stream was being captured. Set by its owner; 0 in every block in the
    /// default pool's lists, and the hot free's compare of the state takes
    /// in the tag too, so that it refuses a tagged block at no cost.
    state: AtomicU64,
    address: AtomicUsize,
    size: AtomicUsize,
    /// Bytes the caller asked for, for statistics.
    requested: AtomicUsize,
    /// The free list it returns to.
    class: AtomicUsize,
    /// Streams that used the block while it was allocated. `record_event` marks
    /// the block `AllocatedOnStreams` before it adds a stream, under this lock,
    /// and a free of a marked block takes the lock too: a stream recorded by a
    /// concurrent `record_event` is never missed.
    streams: Mutex<Vec<StreamKey>>,
    /// Events still to complete before the block is free.
    pending_events: AtomicUsize,
    /// The blocks next to it in the same memory from the backend, when that
    /// memory was split (`NO_BLOCK` at its ends); changed only under the
    /// allocator's segments lock. Whether an allocated block has neighbours
    /// never changes (parts are split off it or merged into it only while it
    /// is cached or being freed), so its free can tell without the lock; which
    /// block is its neighbour may (a cached neighbour split in two).
    /// In one word (`prev << 32 | next`), so that a free tells with one load.
    neighbours: AtomicU64,
    /// The thread cache (thread_cache.rs, by address) of the thread it was
    /// last handed out on, which a free on another thread gives it back to;
    /// 0 for none. Written by whoever owns the block.
    owner: AtomicUsize,
    /// Its place on a list of blocks given back to their thread (remote.rs).
    link: AtomicU64,
}

/// No neighbour: the end of the backend's memory.
pub(crate) const NO_BLOCK: u32 = u32::MAX;
const NO_NEIGHBOURS: u64 = u64::MAX;

/// What a successful free did with a block.
#[derive(Debug)]
pub enum Freed<'a> {
    /// No stream used it: it is cached now, and this entry claims it.
    Cached(Entry),
    /// No stream used it, and it is not for the hot path's list (a part of
    /// split memory, a tagged block, or `free_owned`): it is `Pending`, owned
    /// by the caller, who caches it.
    Owned,
    /// Streams used it: it is `Pending`, owned by the caller, until their events complete.
    Pending(UsedStreams<'a>),
}

/// The streams that used a freed block, read under its streams lock; the list
/// empties when this is dropped, keeping its room for the block's next use.
#[derive(Debug)]
pub struct UsedStreams<'a>(MutexGuard<'a, Vec<StreamKey>>);

impl std::ops::Deref for UsedStreams<'_> {
    type Target = [StreamKey];
    fn deref(&self) -> &[StreamKey] {
        &self.0
    }
}

impl Drop for UsedStreams<'_> {
    fn drop(&mut self) {
        self.0.clear();
    }
}

impl Block {
    fn new(id: u32) -> Block {
        Block {
            id,
            state: AtomicU64::new(word(BlockState::Unused, 0)),
            address: AtomicUsize::new(0),
            size: AtomicUsize::new(0),
            requested: AtomicUsize::new(0),
            class: AtomicUsize::new(0),
            streams: Mutex::new(Vec::new()),
            pending_events: AtomicUsize::new(0),
            neighbours: AtomicU64::new(NO_NEIGHBOURS),
            owner: AtomicUsize::new(0),
            link: AtomicU64::new(0),
        }
    }

    /// Asks the CPU to fetch the header's cache lines ahead of writes to it.
    #[inline]
    pub fn prefetch(&self) {
        #[cfg(target_arch = "x86_64")]
        for line in (0..std::mem::size_of::<Block>()).step_by(64) {
            let address = (self as *const Block).cast::<i8>().wrapping_add(line);
            // SAFETY: a prefetch is a hint that never faults and changes no memory.
            unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address) };
        }
    }

    pub fn state(&self) -> BlockState {
        BlockState::from_word(self.state.load(Ordering::Acquire))
    }

    /// Sets the state, and the tag to 0; only for whoever owns the block (it
    /// is in no list and no other thread may change it), so a load and a
    /// store suffice.
    pub fn set_state(&self, state: BlockState) {
        let generation = generation_of(self.state.load(Ordering::Relaxed));
        self.state.store(word(state, generation), Ordering::Release);
    }

    /// Keeps a block its caller owns out of circulation for good, in its pool
    /// (for the segments).
    pub fn retire(&self) {
        let current = self.state.load(Ordering::Relaxed);
        self.state.store(with_state(current, BlockState::Retired), Ordering::Release);
    }

    /// Moves from `from` to `to` if the block is in `from`, keeping its tag.
    pub fn transition(&self, from: BlockState, to: BlockState) -> bool {
        let mut current = self.state.load(Ordering::Acquire);
        while BlockState::from_word(current) == from {
            let next = with_state(current, to);
            match self.state.compare_exchange(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
        false
    }

    /// Takes a cached block through `entry`: false if the entry is stale (the
    /// block was claimed through another, or is no longer cached). Whoever
    /// succeeds owns the block, now `Allocated`.
    pub fn claim(&self, entry: Entry) -> bool {
        self.claim_as(entry, BlockState::Allocated)
    }

    /// Claims like `claim`, into state `to`.
    pub fn claim_as(&self, entry: Entry, to: BlockState) -> bool {
        let cached = word(BlockState::Cached, entry.generation);
        let taken = word(to, entry.generation);
        self.state.compare_exchange(cached, taken, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }

    /// Gives a block claimed through `entry` back to the cache as it was, so
    /// that every entry of its stay claims it again; for its claimer only.
    pub fn unclaim(&self, entry: Entry) {
        self.state.store(word(BlockState::Cached, entry.generation), Ordering::Release);
    }

    pub fn address(&self) -> usize {
        self.address.load(Ordering::Acquire)
    }

    pub fn size(&self) -> usize {
        self.size.load(Ordering::Acquire)
    }

    pub fn requested(&self) -> usize {
        self.requested.load(Ordering::Relaxed)
    }

    pub fn set_requested(&self, requested: usize) {
        self.requested.store(requested, Ordering::Relaxed);
    }

    pub fn class(&self) -> usize {
        self.class.load(Ordering::Relaxed)
    }

    /// Gives an unused header its memory; it is then `Allocated`.
    pub fn bind(&self, address: usize, size: usize, class: usize, requested: usize) {
        debug_assert_eq!(self.state(), BlockState::Unused, "only a header without memory is bound");
        debug_assert!(size > 0, "a block has memory");
        self.set_neighbours(NO_BLOCK, NO_BLOCK);
        self.address.store(address, Ordering::Release);
        self.size.store(size, Ordering::Release);
        self.class.store(class, Ordering::Relaxed);
        self.set_requested(requested);
        self.set_state(BlockState::Allocated);
    }

    /// The pool and capture tag (see `state`); stable while the caller owns the block.
    pub fn tag(&self) -> u32 {
        ((self.state.load(Ordering::Relaxed) & TAG_MASK) >> TAG_SHIFT) as u32
    }

    /// For the block's owner only (or a pool's release, which owns its
    /// retired blocks); a `record_stream` may change the state meanwhile.
    pub fn set_tag(&self, tag: u32) {
        debug_assert!(u64::from(tag) << TAG_SHIFT & !TAG_MASK == 0, "a tag has 24 bits");
        let tagged = |current: u64| Some(current & !TAG_MASK | u64::from(tag) << TAG_SHIFT);
        // The closure always gives a word, so the update cannot fail.
        let _ = self.state.fetch_update(Ordering::AcqRel, Ordering::Relaxed, tagged);
    }

    #[inline(always)]
    pub fn owner(&self) -> usize {
        self.owner.load(Ordering::Relaxed)
    }

    /// For whoever owns the block, which it then hands to `owner`'s thread.
    #[inline(always)]
    pub fn set_owner(&self, owner: usize) {
        self.owner.store(owner, Ordering::Relaxed);
    }

    /// The word that links the block into a list of given-back blocks.
    pub fn link(&self) -> &AtomicU64 {
        &self.link
    }

    /// Whether the block is a part of the memory the backend gave (it was split).
    #[inline]
    pub fn in_segment(&self) -> bool {
        self.neighbours.load(Ordering::Acquire) != NO_NEIGHBOURS
    }

    pub fn neighbours(&self) -> (u32, u32) {
        let neighbours = self.neighbours.load(Ordering::Acquire);
        ((neighbours >> 32) as u32, neighbours as u32)
    }

    pub fn set_neighbours(&self, prev: u32, next: u32) {
        self.neighbours.store((prev as u64) << 32 | next as u64, Ordering::Release);
    }

    /// Changes only the block before it (under the segments lock, as every change).
    pub fn set_prev(&self, prev: u32) {
        let (_, next) = self.neighbours();
        self.set_neighbours(prev, next);
    }

    /// Gives a block its new extent after a split or a merge; its owner only.
    pub fn resize(&self, size: usize, class: usize) {
        debug_assert!(size > 0, "a block has memory");
        self.size.store(size, Ordering::Release);
        self.class.store(class, Ordering::Relaxed);
    }

    /// The entry that would claim the block now, if it is cached: for a merge,
    /// which takes a neighbour without having found it in a list.
    pub fn current_entry(&self) -> Option<Entry> {
        let current = self.state.load(Ordering::Acquire);
        (BlockState::from_word(current) == BlockState::Cached)
            .then(|| Entry { id: self.id, generation: generation_of(current) })
    }

    /// Notes that `stream` uses the block. False if the block is not allocated.
    pub fn add_stream(&self, stream: StreamKey) -> bool {
        let mut streams = lock(&self.streams);
        let marked = self.transition(BlockState::Allocated, BlockState::AllocatedOnStreams)
            || self.state() == BlockState::AllocatedOnStreams;
        if marked && !streams.contains(&stream) {
            streams.push(stream);
        }
        marked
    }

    /// The caller's free: a block no stream used goes straight to `Cached` (one
    /// compare-and-swap, the whole cost of a free on the hot path), or to
    /// `Pending` if it is a part of split memory or tagged; one that streams
    /// used goes to `Pending` with their list. `None` if it was not allocated
    /// (a double free).
    pub fn free(&self) -> Option<Freed<'_>> {
        if let Some(entry) = self.free_to_cache() {
            return Some(Freed::Cached(entry));
        }
        self.free_owned()
    }

    /// `free` for a caller that must see the block before it is cached
    /// again: a block no stream used goes to `Pending`, the caller's.
    pub fn free_owned(&self) -> Option<Freed<'_>> {
        let current = self.state.load(Ordering::Relaxed);
        if BlockState::from_word(current) == BlockState::Allocated {
            let pending = with_state(current, BlockState::Pending);
            if self.state.compare_exchange(current, pending, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                return Some(Freed::Owned);
            }
        }
        let streams = lock(&self.streams);
        if !self.transition(BlockState::AllocatedOnStreams, BlockState::Pending) {
            return None;
        }
        Some(Freed::Pending(UsedStreams(streams)))
    }

    /// The caller's free of a block no stream used, not a part of split
    /// memory and not tagged: `Cached` in one compare-and-swap, with the entry that claims it.
    /// `None`, changing nothing, for any other block (see `free`).
    #[inline]
    pub fn free_to_cache(&self) -> Option<Entry> {
        let current = self.state.load(Ordering::Relaxed);
        // `Allocated` with no tag, in one compare.
        if current as u32 != BlockState::Allocated as u32 || self.in_segment() {
            return None;
        }
        // The generation one up (wrapping out of the word), the state `Cached`.
        let cached = current.wrapping_add(word(BlockState::Cached, 1) - word(BlockState::Allocated, 0));
        self.state.compare_exchange(current, cached, Ordering::AcqRel, Ordering::Relaxed).ok()?;
        Some(Entry { id: self.id, generation: generation_of(cached) })
    }

    /// Marks a block the caller owns `Cached`, as a new stay in the cache, and
    /// returns the entry that claims it.
    pub fn mark_cached(&self) -> Entry {
        debug_assert!(
            !matches!(self.state(), BlockState::Cached | BlockState::Unused | BlockState::Retired),
            "only a block its caller owns is cached, not a {:?} one",
            self.state()
        );
        let generation = generation_of(self.state.load(Ordering::Relaxed)).wrapping_add(1);
        self.state.store(word(BlockState::Cached, generation), Ordering::Release);
        Entry { id: self.id, generation }
    }

    /// Whether `entry` would claim the block now.
    pub fn is_cached_as(&self, entry: Entry) -> bool {
        self.state.load(Ordering::Acquire) == word(BlockState::Cached, entry.generation)
    }

    pub fn set_pending_events(&self, count: usize) {
        debug_assert!(count > 0, "a block waits for at least one event");
        self.pending_events.store(count, Ordering::Release);
    }

    /// Counts one completed event; true when it was the last.
    pub fn complete_one_event(&self) -> bool {
        let before = self.pending_events.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "more events completed than the block waited for");
        before == 1
    }
}

/// Chunks double in size, so this many chunks hold more headers than a `u32` counts.
const CHUNKS: usize = 27;
const FIRST_CHUNK: usize = 64;

/// Owns every header. Chunk `k` holds ids `[FIRST_CHUNK * (2^k - 1), FIRST_CHUNK * (2^(k+1) - 1))`.
pub struct Arena {
    chunks: [OnceLock<Box<[Block]>>; CHUNKS],
    /// Ids of headers without memory, and the next id never used.
    unused: SpinLock<(Vec<u32>, u32)>,
}

impl Arena {
    pub fn new() -> Arena {
        Arena { chunks: std::array::from_fn(|_| OnceLock::new()), unused: SpinLock::new((Vec::new(), 0)) }
    }

    /// The header a context points at, if it is one of ours.
    #[inline(always)]
    pub fn lookup(&self, context: usize) -> Option<&Block> {
        let stride = std::mem::size_of::<Block>();
        for chunk in self.chunks.iter().map_while(|chunk| chunk.get()) {
            // Below the chunk's start the offset wraps to a huge index.
            let offset = context.wrapping_sub(chunk.as_ptr() as usize);
            if offset / stride < chunk.len() {
                // SAFETY: a header of the chunk starts at `context` (in range,
                // on a header's boundary). Made from `context`, not the chunk's
                // start, so that reading the header waits for no load.
                return (offset % stride == 0).then(|| unsafe { &*(context as *const Block) });
            }
        }
        None
    }

    #[inline]
    pub fn get(&self, id: u32) -> &Block {
        let (chunk, index) = Self::locate(id);
        &self.chunks[chunk].get().expect("block ids are handed out only for existing chunks")[index]
    }

    /// Every header that has memory now (its state may change meanwhile).
    pub fn bound(&self) -> impl Iterator<Item = &Block> {
        self.chunks
            .iter()
            .map_while(|chunk| chunk.get())
            .flat_map(|chunk| chunk.iter())
            .filter(|block| block.state() != BlockState::Unused)
    }

    /// The context PyTorch stores for a block.
    pub fn context_of(block: &Block) -> usize {
        block as *const Block as usize
    }

    /// A header without memory, growing the arena if every header has some.
    #[inline(always)]
    pub fn take_unused(&self) -> &Block {
        let mut unused = self.unused.lock();
        let id = match unused.0.pop() {
            Some(id) => id,
            None => self.grow(&mut unused.1),
        };
        drop(unused);
        self.get(id)
    }

    /// A new header's id, its chunk made if it is the chunk's first (under the
    /// lock of the unused headers, whose count of ids given `next` is).
    #[cold]
    #[inline(never)]
    fn grow(&self, next: &mut u32) -> u32 {
        let id = *next;
        *next += 1;
        let (chunk, _) = Self::locate(id);
        let first = (FIRST_CHUNK * ((1 << chunk) - 1)) as u32;
        self.chunks[chunk].get_or_init(|| (0..FIRST_CHUNK << chunk).map(|i| Block::new(first + i as u32)).collect());
        id
    }

    /// Gives back a header whose memory went back to the backend.
    pub fn put_unused(&self, block: &Block) {
        debug_assert_ne!(block.state(), BlockState::Retired, "a retired block keeps its memory");
        block.set_state(BlockState::Unused);
        self.unused.lock().0.push(block.id);
    }

    fn locate(id: u32) -> (usize, usize) {
        let slot = id as usize / FIRST_CHUNK + 1;
        let chunk = (usize::BITS - 1 - slot.leading_zeros()) as usize;
        (chunk, id as usize - FIRST_CHUNK * ((1 << chunk) - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_to_chunks_and_back() {
        let arena = Arena::new();
        for _ in 0..1000 {
            let block = arena.take_unused();
            let context = Arena::context_of(block);
            assert_eq!(arena.lookup(context).unwrap().id, block.id);
            assert_eq!(arena.get(block.id).id, block.id);
            assert!(arena.lookup(context + 1).is_none());
        }
        assert!(arena.lookup(0).is_none());
        assert!(arena.lookup(usize::MAX).is_none());
        let on_stack = 0u64;
        assert!(arena.lookup(&on_stack as *const u64 as usize).is_none());
    }

    #[test]
    fn headers_are_recycled() {
        let arena = Arena::new();
        let first = arena.take_unused().id;
        arena.put_unused(arena.get(first));
        assert_eq!(arena.take_unused().id, first);
    }

    #[test]
    fn a_free_takes_the_streams_once() {
        let arena = Arena::new();
        let block = arena.take_unused();
        block.bind(4096, 512, 0, 500);
        let stream = StreamKey { device_type: 12, device_index: 0, id: 3 };
        assert!(block.add_stream(stream));
        assert!(block.add_stream(stream));
        match block.free() {
            Some(Freed::Pending(streams)) => assert_eq!(&*streams, [stream]),
            other => panic!("a block a stream used waits for it, not {other:?}"),
        }
        assert!(block.free().is_none());
        assert!(!block.add_stream(stream));
    }

    #[test]
    fn an_entry_claims_one_stay_in_the_cache() {
        let arena = Arena::new();
        let block = arena.take_unused();
        block.bind(4096, 512, 0, 500);
        let Some(Freed::Cached(first)) = block.free() else { panic!("a block no stream used is cached") };
        assert!(block.free().is_none(), "a double free");
        assert!(block.claim(first));
        assert!(!block.claim(first), "claimed twice");
        let Some(Freed::Cached(second)) = block.free() else { panic!() };
        assert!(!block.claim(first), "an entry of an earlier stay claims nothing");
        assert!(block.is_cached_as(second) && !block.is_cached_as(first));
        assert!(block.claim(second));
    }
}
