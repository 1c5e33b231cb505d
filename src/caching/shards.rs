//! Where cached blocks go when their thread's own stack is full: one shard of
//! free lists per core (one LIFO list per size class), each behind its own
//! lock, which only the threads of that core take in the common case.
//!
//! Lists hold entries (block.rs), which a taker claims; an entry claimed
//! through another list, or whose block went back to the backend, is stale and
//! dropped when met. Lists are swept of stale entries as they grow, so they
//! stay in proportion to the blocks they hold.

#[cfg(loom)]
use loom::sync::{Mutex, MutexGuard};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(loom))]
use std::sync::{Mutex, MutexGuard};

use super::block::{Claim, Entry};
use super::size_class::CLASS_COUNT;
use super::sync::lock;

/// A list is swept of stale entries whenever its length reaches a power of
/// two from this one up: sweeps cost O(1) per push, amortised.
const SWEEP_FROM: usize = 64;

pub(crate) struct Shards {
    shards: Box<[Shard]>,
}

/// Aligned to a pair of cache lines, as blocks are (block.rs).
#[repr(align(128))]
struct Shard {
    lists: Mutex<Box<[Vec<Entry>]>>,
    /// Entries in all lists, written under the lock: a taker skips an empty
    /// shard without taking its lock.
    entries: AtomicUsize,
}

/// One shard per core (up to 64): threads beyond that share shards.
fn shard_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).next_power_of_two().min(64)
}

/// The calling thread's index: threads take indices in turn as they first ask.
/// Not inlined: inlined, the compiler hoists the thread-local's address (a
/// call in a shared library) out of the miss path's search, ahead of the
/// check that usually ends it before any shard is looked at.
#[inline(never)]
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX
        .try_with(|index| {
            if index.get() == usize::MAX {
                index.set(NEXT.fetch_add(1, Ordering::Relaxed));
            }
            index.get()
        })
        // A thread being torn down still frees its blocks, to shard 0.
        .unwrap_or(0)
}

impl Shards {
    pub fn new() -> Shards {
        Shards {
            shards: (0..shard_count())
                .map(|_| Shard {
                    lists: Mutex::new((0..CLASS_COUNT).map(|_| Vec::new()).collect()),
                    entries: AtomicUsize::new(0),
                })
                .collect(),
        }
    }

    /// The calling thread's shard.
    pub fn current(&self) -> usize {
        thread_index() & (self.shards.len() - 1)
    }

    fn lock(&self, index: usize) -> Locked<'_> {
        let shard = &self.shards[index];
        Locked { lists: lock(&shard.lists), entries: &shard.entries }
    }

    /// Adds an entry to list `class` of shard `index`; `is_current` tells which
    /// entries a sweep keeps.
    pub fn push(&self, index: usize, class: usize, entry: Entry, is_current: impl Fn(Entry) -> bool) {
        let mut shard = self.lock(index);
        let list = &mut shard.lists[class];
        let before = list.len();
        if before >= SWEEP_FROM && before.is_power_of_two() {
            list.retain(|&entry| is_current(entry));
        }
        list.push(entry);
        let after = list.len();
        shard.count(after as isize - before as isize);
    }

    /// The most recent entry that `offer` takes from the first of `classes`
    /// that has one, in shard `first`, then in the others in turn.
    pub fn take(&self, first: usize, classes: &[usize], mut offer: impl FnMut(Entry) -> Claim) -> Option<Entry> {
        (0..self.shards.len()).map(|i| (first + i) % self.shards.len()).find_map(|index| {
            if self.shards[index].entries.load(Ordering::Relaxed) == 0 {
                return None;
            }
            let mut shard = self.lock(index);
            let Locked { lists, .. } = &mut shard;
            let mut dropped = 0;
            let taken = classes.iter().find_map(|&class| take_from(&mut lists[class], &mut offer, &mut dropped));
            shard.count(-(dropped as isize) - taken.is_some() as isize);
            taken
        })
    }

    /// Empties every list, returning the entries that were in them (stale ones too).
    pub fn drain(&self) -> Vec<Entry> {
        (0..self.shards.len())
            .flat_map(|index| {
                let mut shard = self.lock(index);
                shard.entries.store(0, Ordering::Relaxed);
                shard.lists.iter_mut().flat_map(std::mem::take).collect::<Vec<_>>()
            })
            .collect()
    }

    /// Every entry, as the lists hold them now.
    pub fn entries(&self) -> Vec<Entry> {
        (0..self.shards.len())
            .flat_map(|index| self.lock(index).lists.iter().flatten().copied().collect::<Vec<_>>())
            .collect()
    }
}

/// One shard, locked.
struct Locked<'a> {
    lists: MutexGuard<'a, Box<[Vec<Entry>]>>,
    entries: &'a AtomicUsize,
}

impl Locked<'_> {
    /// Changes the entry count; only the lock holder writes it.
    fn count(&self, change: isize) {
        let entries = self.entries.load(Ordering::Relaxed);
        self.entries.store(entries.wrapping_add_signed(change), Ordering::Relaxed);
    }
}

/// The most recent entry of `list` that `offer` takes, dropping (and counting)
/// the stale ones it meets.
fn take_from(list: &mut Vec<Entry>, offer: &mut impl FnMut(Entry) -> Claim, dropped: &mut usize) -> Option<Entry> {
    let mut position = list.len();
    while position > 0 {
        position -= 1;
        match offer(list[position]) {
            Claim::Skip => {}
            Claim::Stale => {
                list.remove(position);
                *dropped += 1;
            }
            Claim::Taken => return Some(list.remove(position)),
        }
    }
    None
}
