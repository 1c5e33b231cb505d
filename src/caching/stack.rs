//! One size class of a thread's cache: a short stack of entries of recently
//! freed blocks, most recent last.
//!
//! Only the owning thread changes a stack, with plain loads and stores: no
//! lock and no read-modify-write. Other threads read its entries (`entries`)
//! to take blocks from it, and take one by claiming the block through the
//! entry (block.rs): exactly one taker wins a claim, and the owner drops the
//! stale entry when it meets it. An entry a reader sees is always one the
//! owner pushed; a reader may miss one being moved or see it twice, which
//! costs a claim attempt and nothing else. fuzz/loom checks this.

#[cfg(loom)]
use loom::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize};
use std::sync::atomic::Ordering;
#[cfg(not(loom))]
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize};

use super::block::{Block, Claim, Entry};

/// Entries a thread keeps per size class (a batch of same-size tensors fits);
/// more go to the shards (shards.rs).
pub(crate) const DEPTH: usize = 16;

/// `top` repeats the most recent slot, in the line that holds `len`, so that
/// an allocation reads its block without first reading `len` to find the
/// slot: one dependent load less before the claim. Aligned so that the two
/// never straddle lines. Only the owner reads `top`; others read `slots`.
///
/// Zero is a valid value of every field, an empty stack: the thread caches
/// that hold stacks inline are made zeroed.
#[repr(C, align(32))]
pub struct Stack {
    len: AtomicUsize,
    top: Slot,
    slots: [Slot; DEPTH],
}

/// An entry, and for its owner the block it names (which others find through the arena).
#[derive(Default)]
struct Slot {
    entry: AtomicU64,
    block: AtomicPtr<Block>,
}

impl Slot {
    /// The block first: a reader that sees the entry (acquire) sees its block.
    #[inline(always)]
    fn set(&self, entry: u64, block: *mut Block) {
        self.block.store(block, Ordering::Relaxed);
        self.entry.store(entry, Ordering::Release);
    }

    fn copy_from(&self, other: &Slot) {
        self.set(other.entry.load(Ordering::Relaxed), other.block.load(Ordering::Relaxed));
    }

    fn entry(&self, order: Ordering) -> Entry {
        Entry::unpack(self.entry.load(order))
    }
}

/// The most recent entry of a stack, as `Stack::top` found it.
pub struct Top<'a> {
    stack: &'a Stack,
    len: usize,
    pub entry: Entry,
    pub block: &'a Block,
}

impl Top<'_> {
    /// Removes the entry from the stack (only its owner changes the stack, so
    /// the entry is still on top).
    #[inline]
    pub fn pop(&self) {
        self.stack.set_len(self.len.wrapping_sub(1));
    }

    /// Puts the entry back after `pop` (its block unclaimed, see `Block::unclaim`).
    #[inline]
    pub fn restore(&self) {
        self.stack.set_len(self.len);
    }
}

/// Room on top of a stack, as `Stack::room` found it.
pub struct Room<'a> {
    stack: &'a Stack,
    len: usize,
}

impl Room<'_> {
    /// Pushes `block`'s entry (only the owner changes the stack, so the room is still there).
    #[inline(always)]
    pub fn push(self, entry: Entry, block: &Block) {
        self.stack.push_at(self.len, entry, block);
    }
}

impl Stack {
    /// An empty stack, for the loom checks, which make no thread cache.
    #[cfg(loom)]
    pub fn new() -> Stack {
        Stack { len: AtomicUsize::new(0), top: Slot::default(), slots: std::array::from_fn(|_| Slot::default()) }
    }

    /// Room for one more entry, if the stack is not full. Owner only.
    #[inline(always)]
    pub fn room(&self) -> Option<Room<'_>> {
        let len = self.len.load(Ordering::Relaxed);
        (len < DEPTH).then_some(Room { stack: self, len })
    }

    /// The most recent entry, left in place until popped. Owner only.
    #[inline(always)]
    pub fn top(&self) -> Option<Top<'_>> {
        let len = self.len.load(Ordering::Relaxed);
        if len == 0 {
            return None;
        }
        let entry = self.top.entry(Ordering::Relaxed);
        // SAFETY: with entries on the stack, `top` is the most recent, which
        // the owner (the caller) pushed with the `&Block` its entry names;
        // blocks live in the allocator's arena, which outlives its caches.
        let block = unsafe { &*self.top.block.load(Ordering::Relaxed) };
        Some(Top { stack: self, len, entry, block })
    }

    /// Empties the stack (its entries are the caller's to deal with). Owner only.
    pub fn clear(&self) {
        self.set_len(0);
    }

    /// The most recent entry that `offer` takes, dropping the stale ones it
    /// meets. Owner only.
    #[inline]
    pub fn take(&self, mut offer: impl FnMut(Entry) -> Claim) -> Option<Entry> {
        let mut len = self.len.load(Ordering::Relaxed);
        debug_assert!(len <= DEPTH, "a stack holds at most DEPTH entries");
        let mut position = len;
        let mut taken = None;
        while position > 0 && taken.is_none() {
            position -= 1;
            let entry = self.slots[position].entry(Ordering::Relaxed);
            match offer(entry) {
                Claim::Skip => continue,
                Claim::Taken => taken = Some(entry),
                Claim::Stale => {}
            }
            // Close the gap: entries above move down one.
            for above in position + 1..len {
                self.slots[above - 1].copy_from(&self.slots[above]);
            }
            len -= 1;
        }
        self.set_len(len);
        taken
    }

    /// Pushes `block`'s entry. When the stack is full of entries `is_current`
    /// keeps, the oldest makes room and is returned (the caller puts it
    /// elsewhere), so the stack always holds the most recent. Owner only.
    #[inline(always)]
    pub fn push(&self, entry: Entry, block: &Block, is_current: impl Fn(Entry) -> bool) -> Option<Entry> {
        debug_assert_eq!(block.id, entry.id, "an entry is pushed with the block it names");
        let mut len = self.len.load(Ordering::Relaxed);
        debug_assert!(len <= DEPTH, "a stack holds at most DEPTH entries");
        let mut evicted = None;
        if len == DEPTH {
            // Entries claimed through other lists since are dead weight: drop them.
            let mut kept = 0;
            for position in 0..len {
                if is_current(self.slots[position].entry(Ordering::Relaxed)) {
                    self.slots[kept].copy_from(&self.slots[position]);
                    kept += 1;
                }
            }
            len = kept;
            if len == DEPTH {
                evicted = Some(self.slots[0].entry(Ordering::Relaxed));
                for position in 1..DEPTH {
                    self.slots[position - 1].copy_from(&self.slots[position]);
                }
                len -= 1;
            }
        }
        self.push_at(len, entry, block);
        evicted
    }

    /// The entries as they are now; any thread (the owner may be changing them).
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        let len = self.len.load(Ordering::Acquire).min(DEPTH);
        self.slots[..len].iter().map(|slot| slot.entry(Ordering::Acquire))
    }

    /// Puts an entry into the slot at `len`, the first free one, and on top.
    #[inline(always)]
    fn push_at(&self, len: usize, entry: Entry, block: &Block) {
        let Some(slot) = self.slots.get(len) else { return };
        let (entry, block) = (entry.pack(), block as *const Block as *mut Block);
        slot.set(entry, block);
        self.top.set(entry, block);
        self.len.store(len + 1, Ordering::Release);
    }

    /// Sets the length, and `top` to the slot that is now the most recent.
    #[inline(always)]
    fn set_len(&self, len: usize) {
        if let Some(slot) = self.slots.get(len.wrapping_sub(1)) {
            self.top.copy_from(slot);
        }
        self.len.store(len, Ordering::Release);
    }
}
