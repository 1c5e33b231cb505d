//! Where cached blocks go when their thread's own stack is full: one shard of
//! free lists per core (one LIFO list per size class), each behind its own
//! lock, which only the threads of that core take in the common case.
//!
//! Lists hold entries (block.rs), which a taker claims; an entry claimed
//! through another list, or whose block went back to the backend, is stale and
//! dropped when met. Lists are swept of stale entries as they grow, so they
//! stay in proportion to the blocks they hold.

#![allow(unexpected_cfgs)]

#[cfg(loom)]
use loom::sync::{Mutex, MutexGuard};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(loom))]
use std::sync::{Mutex, MutexGuard};

use super::block::{Claim, Entry};
use super::size_class::CLASS_COUNT;

/// A list is swept of stale entries whenever its length reaches a power of
/// two from this one up: sweeps cost O(1) per push, amortised.
const SWEEP_FROM: usize = 64;

pub(crate) struct Shards {
    shards: Box<[Shard]>,
}

#[repr(align(64))]
struct Shard {
    lists: Mutex<Box<[Vec<Entry>]>>,
}

/// One shard per core (up to 64): threads beyond that share shards.
fn shard_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).next_power_of_two().min(64)
}

/// The calling thread's index: threads take indices in turn as they first ask.
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
                .map(|_| Shard { lists: Mutex::new((0..CLASS_COUNT).map(|_| Vec::new()).collect()) })
                .collect(),
        }
    }

    /// The calling thread's shard.
    pub fn current(&self) -> usize {
        thread_index() & (self.shards.len() - 1)
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, Box<[Vec<Entry>]>> {
        self.shards[index].lists.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an entry to list `class` of shard `index`; `is_current` tells which
    /// entries a sweep keeps.
    pub fn push(&self, index: usize, class: usize, entry: Entry, is_current: impl Fn(Entry) -> bool) {
        let mut lists = self.lock(index);
        let list = &mut lists[class];
        if list.len() >= SWEEP_FROM && list.len().is_power_of_two() {
            list.retain(|&entry| is_current(entry));
        }
        list.push(entry);
    }

    /// The most recent entry that `offer` takes from the first of `classes`
    /// that has one, in shard `first`, then in the others in turn.
    pub fn take(&self, first: usize, classes: &[usize], mut offer: impl FnMut(Entry) -> Claim) -> Option<Entry> {
        (0..self.shards.len()).map(|i| (first + i) % self.shards.len()).find_map(|index| {
            let mut lists = self.lock(index);
            classes.iter().find_map(|&class| take_from(&mut lists[class], &mut offer))
        })
    }

    /// Empties every list, returning the entries that were in them (stale ones too).
    pub fn drain(&self) -> Vec<Entry> {
        (0..self.shards.len()).flat_map(|index| self.lock(index).iter_mut().flat_map(std::mem::take).collect::<Vec<_>>()).collect()
    }

    /// Every entry, as the lists hold them now.
    pub fn entries(&self) -> Vec<Entry> {
        (0..self.shards.len()).flat_map(|index| self.lock(index).iter().flatten().copied().collect::<Vec<_>>()).collect()
    }
}

/// The most recent entry of `list` that `offer` takes, dropping the stale ones it meets.
fn take_from(list: &mut Vec<Entry>, offer: &mut impl FnMut(Entry) -> Claim) -> Option<Entry> {
    let mut position = list.len();
    while position > 0 {
        position -= 1;
        match offer(list[position]) {
            Claim::Skip => {}
            Claim::Stale => {
                list.remove(position);
            }
            Claim::Taken => return Some(list.remove(position)),
        }
    }
    None
}
