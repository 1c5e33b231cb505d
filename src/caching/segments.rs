//! Split blocks (`pinned_split_blocks`): a miss of 1 MiB or more is carved out
//! of the smallest larger cached block, the rest staying cached as a block of
//! its own in the same memory from the backend; a freed part merges with the
//! cached parts beside it, so that memory whose parts are all free is one block
//! again. Splits and merges change the links between parts and take one lock;
//! taking and caching parts goes on through entries as for any block.

use super::block::{Block, BlockState, NO_BLOCK};
use super::size_class::{SizeClass, CLASS_COUNT, MIN_STEP};
use super::sync::lock;
use super::thread_cache::Mine;
use super::{Backend, CachingAllocator};
use std::sync::atomic::Ordering;

/// Splitting serves requests from this size up, and leaves parts at least
/// this large: small requests carved out of large blocks would pin them
/// (as CUDA's caching allocator keeps small and large blocks apart).
pub(super) const SPLIT_MIN: usize = 1 << 20;

impl<B: Backend> CachingAllocator<B> {
    /// With `pinned_split_blocks`: the smallest cached block that can hold the
    /// request serves it, and what the request does not need stays cached as
    /// a block of its own, in the same memory from the backend.
    pub(super) fn take_by_splitting(&self, local: Mine<'_>, class: &SizeClass) -> Option<&Block> {
        // Parts keep the alignment every block has.
        let carve = class.size.checked_next_multiple_of(MIN_STEP)?;
        let segments = lock(&self.segments);
        let (_, best) = self
            .cached_blocks(local)
            .map(|(entry, block)| (block.size(), entry))
            .filter(|&(size, _)| size >= carve)
            .min_by_key(|&(size, _)| size)?;
        let block = self.blocks.get(best.id);
        if !block.claim(best) {
            return None;
        }
        let size = block.size();
        local.shares().remove_cached(size as i64);
        let rest = size - carve;
        if rest < SPLIT_MIN {
            return Some(block);
        }
        let part = self.blocks.take_unused();
        part.bind(block.address() + carve, rest, self.list_of(rest), 0);
        let (before, after) = block.neighbours();
        part.set_neighbours(block.id, after);
        if after != NO_BLOCK {
            self.blocks.get(after).set_prev(part.id);
        }
        block.set_neighbours(before, part.id);
        block.resize(carve, self.list_of(carve));
        self.by_address_stale.store(true, Ordering::Release);
        // Counted while no one else can reach it: once cached, a neighbour's
        // merge may take it in and change its size.
        local.add_cached(&self.caches, rest as i64);
        let entry = part.mark_cached();
        drop(segments);
        self.list(local, part, entry);
        Some(block)
    }

    /// Caches a freed part of split memory (the caller owns it, `Pending`)
    /// merged with its cached neighbours: two parts next to each other are
    /// never both cached, so memory whose parts are all free is one block
    /// again, which can go back to the backend.
    pub(super) fn cache_part(&self, local: Mine<'_>, block: &Block) {
        debug_assert_eq!(block.state(), BlockState::Pending, "a freed part is its caller's");
        let freed = block.size() as i64;
        let segments = lock(&self.segments);
        let (before, after) = block.neighbours();
        if let Some(next) = self.claim_neighbour(after) {
            self.absorb(block, next);
        }
        let merged = match self.claim_neighbour(before) {
            Some(previous) => {
                self.absorb(previous, block);
                previous
            }
            None => block,
        };
        let entry = merged.mark_cached();
        drop(segments);
        // The neighbours' bytes were counted as cached already.
        local.add_cached(&self.caches, freed);
        self.list(local, merged, entry);
    }

    /// A cached neighbour, claimed for a merge; `None` if there is none.
    fn claim_neighbour(&self, id: u32) -> Option<&Block> {
        if id == NO_BLOCK {
            return None;
        }
        let block = self.blocks.get(id);
        let entry = block.current_entry()?;
        block.claim_as(entry, BlockState::Pending).then_some(block)
    }

    /// `low` takes in `high`, the part after it; `high`'s header goes back to
    /// the arena (its entries in lists are stale).
    fn absorb(&self, low: &Block, high: &Block) {
        debug_assert_eq!(low.neighbours().1, high.id, "a part absorbs the part after it");
        debug_assert_eq!(low.address() + low.size(), high.address(), "parts that are neighbours are adjacent");
        let size = low.size() + high.size();
        let (before, _) = low.neighbours();
        let (_, after) = high.neighbours();
        low.resize(size, self.list_of(size));
        low.set_neighbours(before, after);
        if after != NO_BLOCK {
            self.blocks.get(after).set_prev(low.id);
        }
        self.blocks.put_unused(high);
        self.by_address_stale.store(true, Ordering::Release);
    }

    /// The list a part of split memory of `size` bytes goes to: the largest
    /// class it holds, so that it fits every request of that class.
    fn list_of(&self, size: usize) -> usize {
        let Some(class) = self.rounding.classify(size) else { return CLASS_COUNT - 1 };
        if class.size == size {
            return class.index;
        }
        self.rounding.classify(class.size - class.step).map_or(class.index, |below| below.index)
    }
}
