//! Giving cached memory back to the backend: a block through its entry (what
//! `empty_cache` does to every cached one), and oldest first for the cache
//! cap and release on miss. Parts of split memory go back only whole.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use super::block::{Block, BlockState, Entry};
use super::gauges::Hot;
use super::sync::lock;
use super::thread_cache::Mine;
use super::{Backend, CachingAllocator, Error};

/// Cached blocks' entries in the order they were cached (entries of blocks
/// taken since are stale), for the cap and release on miss.
#[derive(Default)]
pub(super) struct Oldest {
    pub(super) queue: VecDeque<Entry>,
    /// The queue's length after the last sweep of stale entries.
    swept: usize,
}

impl<B: Backend> CachingAllocator<B> {
    pub(super) fn note_cached(&self, oldest: &Mutex<Oldest>, entry: Entry) {
        let mut oldest = lock(oldest);
        oldest.queue.push_back(entry);
        // Entries of blocks taken from the cache since stay until a sweep; sweeping
        // when the queue doubled since the last one costs O(1) per entry.
        if oldest.queue.len() > 2 * oldest.swept + 64 {
            oldest.queue.retain(|&entry| self.is_current(entry));
            oldest.swept = oldest.queue.len();
        }
    }

    /// Gives cached blocks back, oldest first, while cached bytes exceed the cap.
    pub(super) fn enforce_cap(&self, local: Mine<'_>, oldest: &Mutex<Oldest>) {
        let cap = i64::try_from(self.settings.max_cached_bytes).unwrap_or(i64::MAX);
        if self.caches.current_value(Hot::CachedBytes) > cap {
            self.release_oldest(local, oldest, |_| self.caches.current_value(Hot::CachedBytes) > cap);
        }
    }

    /// Gives cached blocks back, oldest first, until `more` (told the bytes of
    /// each block given back) says enough or none is left.
    pub(super) fn release_oldest(&self, local: Mine<'_>, oldest: &Mutex<Oldest>, mut more: impl FnMut(usize) -> bool) {
        // Parts of split memory go to the back of the queue again: each entry is seen once.
        let queued = lock(oldest).queue.len();
        for _ in 0..queued {
            let Some(entry) = lock(oldest).queue.pop_front() else { return };
            // A failed free is the backend's to report; the block is gone from the cache either way.
            let (Ok(bytes) | Err((bytes, _))) = self.release_cached(local, entry);
            if bytes > 0 && !more(bytes) {
                return;
            }
        }
    }

    /// Gives the block `entry` names back to the backend if the entry claims it,
    /// returning its bytes (0 for a stale entry); its entries left in lists are
    /// stale from then on. A part of split memory cannot go back on its own (a
    /// neighbour is in use): it is listed again.
    pub(super) fn release_cached(&self, local: Mine<'_>, entry: Entry) -> Result<usize, (usize, Error)> {
        let block = self.blocks.get(entry.id);
        if block.in_segment() {
            // Under the lock merges take, so that no merge misses it while it is claimed.
            let segments = lock(&self.segments);
            if block.claim_as(entry, BlockState::Pending) {
                let entry = block.mark_cached();
                drop(segments);
                self.push_entry(local, block, entry);
            }
            return Ok(0);
        }
        // Not `Allocated`: a stale context must not record a stream on it meanwhile.
        if !block.claim_as(entry, BlockState::Releasing) {
            return Ok(0);
        }
        let size = block.size();
        local.shares().remove_cached(size as i64);
        self.release_memory(block).map(|()| size).map_err(|error| (size, error))
    }

    pub(super) fn release_memory(&self, block: &Block) -> Result<(), Error> {
        let (address, size) = (block.address(), block.size());
        let class = block.class();

        if self.history_enabled() {
            self.record(super::Action::SegmentFree, block, None, None);
        }
        let started = self.counters.clock.ticks();
        let result = self.backend.free(address, size);
        self.counters.host_freed(started, (class, size));
        self.blocks.put_unused(block);
        self.by_address_stale.store(true, Ordering::Release);
        result.map_err(|error| Error::Backend(format!("freeing host memory at {address:#x} failed: {error}")))
    }
}
