//! The blocks other threads gave back to a thread: a lock-free list of block ids
//! that any thread pushes onto and whoever takes it takes whole.
//!
//! A block freed on a thread other than the one it was handed out on goes
//! back to that thread's list (thread_cache.rs), which takes it when its own
//! stacks miss. That is the pattern of a pinning thread whose buffers another
//! thread drops (BENCHMARKS.md scenario 2b): each block then crosses between
//! the two cores once each way. Left in the freeing thread's stack instead, it
//! cost the allocating thread's search reads of that stack's lines, of each
//! entry's block and of the other thread's gauges.
//!
//! Pushes link a block through its own `link` word (block.rs), written before
//! the push publishes it and read after the take acquires it. Nothing pops a
//! single block, so the list has no ABA problem: a push that finds the head
//! it read still there links in front of it whatever happened in between,
//! and a take gets every block pushed before it, each once.

#[cfg(loom)]
use loom::sync::atomic::AtomicU64;
#[cfg(not(loom))]
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

/// A list's head: the most recently pushed block's id plus one, 0 for an
/// empty list (the thread caches holding lists are made zeroed). Links keep
/// the next block's id the same way.
#[derive(Default)]
pub(crate) struct Remote {
    head: AtomicU64,
}

/// The block id a head or link holds, if any.
fn decode(word: u64) -> Option<u32> {
    word.checked_sub(1).map(|id| id as u32)
}

impl Remote {
    /// Pushes block `id`, whose link word is `link`. The caller owns the block
    /// until this returns, and no one else writes its link meanwhile.
    pub fn push(&self, id: u32, link: &AtomicU64) {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            link.store(head, Ordering::Relaxed);
            // Release: the taker that acquires the head sees the link written above.
            match self.head.compare_exchange_weak(head, u64::from(id) + 1, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => head = actual,
            }
        }
    }

    /// Whether the list looks empty (a push may be under way).
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.head.load(Ordering::Relaxed) == 0
    }

    /// Takes the whole list: the first block's id, if any. The caller then
    /// owns every block on it, and follows the links with `next`, reading
    /// each link before it gives that block up.
    pub fn take(&self) -> Option<u32> {
        if self.is_empty() {
            return None;
        }
        // Acquire: every push before this one published its block's link.
        decode(self.head.swap(0, Ordering::Acquire))
    }
}

/// The block after one on a list its caller took, from that block's link word.
pub(crate) fn next(link: &AtomicU64) -> Option<u32> {
    decode(link.load(Ordering::Relaxed))
}
