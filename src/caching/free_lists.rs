//! Free blocks ready for reuse, one LIFO list per size class, sharded by thread.
//!
//! A thread allocates from and frees to its own shard, so threads working at
//! once take no shared lock and touch no shared cache line on the hot path.
//! When its own shard has nothing, a thread takes from the others before
//! asking the backend for memory, so no cached block is ever out of reach,
//! and nothing is lost when a thread exits: the shards belong to the allocator.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::size_class::CLASS_COUNT;

/// One shard per core (up to 64): threads beyond that share shards.
pub(crate) fn shard_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).next_power_of_two().min(64)
}

/// The calling thread's index: threads take indices in turn as they first ask,
/// and use shard `index % shards`.
pub(crate) fn thread_index() -> usize {
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

pub(crate) struct FreeLists {
    shards: Box<[Shard]>,
}

#[repr(align(64))]
struct Shard {
    lists: Box<[Mutex<Vec<u32>>]>,
}

impl FreeLists {
    pub fn new(shards: usize) -> FreeLists {
        FreeLists {
            shards: (0..shards)
                .map(|_| Shard { lists: (0..CLASS_COUNT).map(|_| Mutex::new(Vec::new())).collect() })
                .collect(),
        }
    }

    /// The calling thread's shard.
    pub fn current_shard(&self) -> usize {
        thread_index() % self.shards.len()
    }

    pub fn push(&self, shard: usize, class: usize, id: u32) {
        lock(&self.shards[shard].lists[class]).push(id);
    }

    /// The most recently freed block in list `class` that `fits`, from the
    /// caller's shard first, then from the others.
    pub fn take(&self, shard: usize, class: usize, fits: impl Fn(u32) -> bool) -> Option<u32> {
        let shards = self.shards.len();
        (0..shards).map(|i| (shard + i) % shards).find_map(|s| {
            let mut list = lock(&self.shards[s].lists[class]);
            let position = list.iter().rposition(|&id| fits(id))?;
            Some(list.remove(position))
        })
    }

    /// Takes block `id` out of list `class` wherever it is; false if it is not there.
    pub fn remove(&self, class: usize, id: u32) -> bool {
        self.shards.iter().any(|shard| {
            let mut list = lock(&shard.lists[class]);
            list.iter().position(|&other| other == id).map(|position| list.remove(position)).is_some()
        })
    }

    /// Empties every list, returning what was in them.
    pub fn drain(&self) -> Vec<u32> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            for list in shard.lists.iter() {
                all.append(&mut lock(list));
            }
        }
        all
    }

    /// Blocks cached per class.
    pub fn counts(&self) -> Vec<usize> {
        (0..CLASS_COUNT).map(|class| self.shards.iter().map(|shard| lock(&shard.lists[class]).len()).sum()).collect()
    }
}

fn lock(list: &Mutex<Vec<u32>>) -> std::sync::MutexGuard<'_, Vec<u32>> {
    list.lock().unwrap_or_else(|e| e.into_inner())
}
