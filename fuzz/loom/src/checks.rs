//! Loom checks of the core's lock-free parts: the block state machine (record
//! racing free racing a double free, two records racing a free, a pool's tag
//! in the state word racing a record and a double free), the count of
//! events a block waits for, the generation that tells a stale entry from a
//! current one, an entry claimed by exactly one of several takers, the
//! per-stream pending queues pushed and polled by several threads, and the
//! shards (a cached block taken by exactly one of a take from another shard,
//! an eviction and a drain), and a thread's stack of cached entries, which
//! its owner changes while another thread reads it to take blocks, and the
//! list of blocks other threads return to a thread. Each check explores every interleaving of its
//! threads (a few seconds for all in a release build).

use std::collections::HashMap;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

use crate::backend::{BackendError, StreamEvents, StreamKey};
use crate::block::{Arena, BlockState, Claim, Entry, Freed, CAPTURED};
use crate::pending::PendingQueues;
use crate::remote::{self, Remote};
use crate::shards::Shards;
use crate::stack::Stack;

const S1: StreamKey = StreamKey { device_type: 12, device_index: 0, id: 1 };
const S2: StreamKey = StreamKey { device_type: 12, device_index: 0, id: 2 };

/// Every interleaving (no preemption bound unless LOOM_MAX_PREEMPTIONS sets one).
fn model(check: impl Fn() + Sync + Send + 'static) {
    loom::model::Builder::new().check(check);
}

/// A bound block of a fresh arena.
fn bound_block() -> (Arc<Arena>, u32) {
    let arena = Arc::new(Arena::new());
    let id = arena.take_unused().id;
    arena.get(id).bind(0x10_0000, 4096, 0, 4000);
    (arena, id)
}

/// The streams a successful free handed back (none when the block went straight to the cache).
fn freed_streams(freed: Option<Freed>) -> Option<Vec<StreamKey>> {
    freed.map(|freed| match freed {
        Freed::Cached(_) | Freed::Owned => Vec::new(),
        Freed::Pending(streams) => streams.to_vec(),
    })
}

/// `record_event` on one thread, `free` on another and a double free on a
/// third: exactly one free succeeds, and it returns the stream exactly when the
/// record said the block took it, so no stream is ever lost.
pub fn record_races_free_and_double_free() {
    model(|| {
        let (arena, id) = bound_block();
        let recorder = {
            let arena = arena.clone();
            thread::spawn(move || arena.get(id).add_stream(S1))
        };
        let freer = {
            let arena = arena.clone();
            thread::spawn(move || freed_streams(arena.get(id).free()))
        };
        let second = freed_streams(arena.get(id).free());
        let recorded = recorder.join().unwrap();
        let first = freer.join().unwrap();
        let frees: Vec<Vec<StreamKey>> = [first, second].into_iter().flatten().collect();
        assert_eq!(frees.len(), 1, "exactly one of two frees succeeds");
        assert_eq!(frees[0], if recorded { vec![S1] } else { vec![] }, "a recorded stream is never lost");
        let after = if recorded { BlockState::Pending } else { BlockState::Cached };
        assert_eq!(arena.get(id).state(), after);
        assert!(!arena.get(id).add_stream(S2), "a freed block takes no stream");
    });
}

/// Two records on two streams racing a free: the free returns exactly the
/// streams whose record returned true.
pub fn two_records_race_free() {
    model(|| {
        let (arena, id) = bound_block();
        let recorders: Vec<_> = [S1, S2]
            .into_iter()
            .map(|stream| {
                let arena = arena.clone();
                thread::spawn(move || (stream, arena.get(id).add_stream(stream)))
            })
            .collect();
        let streams = freed_streams(arena.get(id).free()).expect("the only free");
        let mut recorded: Vec<StreamKey> =
            recorders.into_iter().map(|r| r.join().unwrap()).filter(|(_, took)| *took).map(|(s, _)| s).collect();
        let mut returned = streams.clone();
        recorded.sort_by_key(|s| s.id);
        returned.sort_by_key(|s| s.id);
        assert_eq!(recorded, returned);
    });
}

/// The owner tags a block (a pool's, allocated during a capture) while
/// another thread records a stream on it: the tag and the record both hold,
/// whatever the order, and the free that follows never caches a tagged block
/// straight away (it goes to its pool, or waits for the streams, tag kept).
pub fn tag_survives_a_racing_record() {
    model(|| {
        let (arena, id) = bound_block();
        let tag = CAPTURED | 1;
        let recorder = {
            let arena = arena.clone();
            thread::spawn(move || arena.get(id).add_stream(S1))
        };
        arena.get(id).set_tag(tag);
        let recorded = recorder.join().unwrap();
        assert!(recorded, "an allocated block takes the stream");
        assert_eq!(arena.get(id).tag(), tag);
        match arena.get(id).free() {
            Some(Freed::Pending(streams)) => assert_eq!(streams.to_vec(), vec![S1]),
            other => panic!("a block a stream used waits for it, not {other:?}"),
        }
        assert_eq!(arena.get(id).tag(), tag, "the free keeps the tag");
        assert_eq!(arena.get(id).state(), BlockState::Pending);
    });
}

/// A tagged block no stream used: the free gives it to its caller to place
/// (in its pool), and a racing double free fails.
pub fn tagged_block_is_not_cached_by_a_free() {
    model(|| {
        let (arena, id) = bound_block();
        arena.get(id).set_tag(2);
        let other = {
            let arena = arena.clone();
            thread::spawn(move || arena.get(id).free().map(|freed| matches!(freed, Freed::Owned)))
        };
        let mine = arena.get(id).free().map(|freed| matches!(freed, Freed::Owned));
        let theirs = other.join().unwrap();
        assert!(mine.is_some() ^ theirs.is_some(), "exactly one of two frees succeeds");
        assert_eq!(mine.or(theirs), Some(true), "the block is its freer's, not cached");
        assert_eq!(arena.get(id).tag(), 2);
    });
}

/// Pollers on two threads count a block's events down: exactly one sees the
/// last, so the block is cached once.
pub fn last_event_is_seen_once() {
    model(|| {
        let (arena, id) = bound_block();
        arena.get(id).set_pending_events(2);
        let other = {
            let arena = arena.clone();
            thread::spawn(move || arena.get(id).complete_one_event())
        };
        let mine = arena.get(id).complete_one_event();
        let theirs = other.join().unwrap();
        assert!(mine ^ theirs, "exactly one completion is the last");
    });
}

/// An entry made before the block was handed out and cached again no longer
/// matches: a stale entry never claims a block in use, nor its next stay.
pub fn stale_entries_do_not_match() {
    model(|| {
        let (arena, id) = bound_block();
        let block = arena.get(id);
        let first = block.mark_cached();
        let taker = {
            let arena = arena.clone();
            thread::spawn(move || {
                let block = arena.get(id);
                assert!(block.claim(first));
                match block.free() {
                    Some(Freed::Cached(entry)) => entry,
                    other => panic!("a block no stream used is cached again, not {other:?}"),
                }
            })
        };
        // While the other thread takes and re-caches it, the old entry may match
        // only while the block is still in its first stay in the cache.
        let _ = block.is_cached_as(first);
        let second = taker.join().unwrap();
        assert_ne!(first, second);
        assert!(!block.is_cached_as(first), "an entry of an earlier stay matches");
        assert!(!block.claim(first), "an entry of an earlier stay claims");
        assert!(block.is_cached_as(second));
    });
}

/// Three takers claim one cached block through the same entry (the owner
/// popping it from its stack, another thread that missed, `empty_cache`);
/// the first winner frees it again at once. Exactly one claim succeeds.
pub fn an_entry_is_claimed_once() {
    model(|| {
        let (arena, id) = bound_block();
        let entry = arena.get(id).mark_cached();
        let winner_frees = {
            let arena = arena.clone();
            thread::spawn(move || {
                let block = arena.get(id);
                let claimed = block.claim(entry);
                if claimed {
                    assert!(matches!(block.free(), Some(Freed::Cached(_))));
                }
                claimed
            })
        };
        let other = {
            let arena = arena.clone();
            thread::spawn(move || arena.get(id).claim(entry))
        };
        let mine = arena.get(id).claim(entry);
        let claims = [winner_frees.join().unwrap(), other.join().unwrap(), mine];
        assert_eq!(claims.iter().filter(|&&claimed| claimed).count(), 1, "claims: {claims:?}");
    });
}

/// A cached part of split memory, taken through its list entry by one thread
/// while a neighbour's free merges it (claiming it through the entry its state
/// word gives, under the segments lock, which takers do not take): exactly one
/// of the two gets it.
pub fn a_part_is_taken_or_merged_never_both() {
    model(|| {
        let (arena, id) = bound_block();
        let entry = arena.get(id).mark_cached();
        let taker = {
            let arena = arena.clone();
            thread::spawn(move || arena.get(id).claim(entry))
        };
        let block = arena.get(id);
        let merged = block.current_entry().is_some_and(|current| block.claim_as(current, BlockState::Pending));
        let taken = taker.join().unwrap();
        assert!(taken ^ merged, "taken {taken}, merged {merged}");
    });
}

/// Events on a stream complete when the test says so.
struct Events {
    completed: Mutex<HashMap<StreamKey, u64>>,
    recorded: Mutex<HashMap<StreamKey, u64>>,
    released: AtomicUsize,
}

impl StreamEvents for Events {
    type Event = (StreamKey, u64);
    fn check_stream(&self, _stream: StreamKey) -> Result<(), BackendError> {
        Ok(())
    }
    fn record(&self, stream: StreamKey) -> Result<Option<Self::Event>, BackendError> {
        let mut recorded = self.recorded.lock().unwrap();
        let n = recorded.entry(stream).or_default();
        *n += 1;
        Ok(Some((stream, *n)))
    }
    fn is_complete(&self, event: &Self::Event) -> Result<bool, BackendError> {
        Ok(self.completed.lock().unwrap().get(&event.0).copied().unwrap_or(0) >= event.1)
    }
    fn release(&self, _event: Self::Event) {
        self.released.fetch_add(1, Ordering::Relaxed);
    }
}

/// Pushes and polls of the pending queues on three threads: every event is
/// released exactly once, each completion reported once, and nothing is left.
pub fn pending_queues_poll_each_event_once() {
    model(|| {
        let events = Arc::new(Events {
            completed: Mutex::new(HashMap::from([(S1, 1), (S2, 1)])),
            recorded: Mutex::new(HashMap::new()),
            released: AtomicUsize::new(0),
        });
        let queues = Arc::new(PendingQueues::new());
        let completions = Arc::new(Mutex::new(Vec::new()));
        let pusher = {
            let (events, queues) = (events.clone(), queues.clone());
            thread::spawn(move || {
                queues.push(S1, events.record(S1).unwrap().unwrap(), 7);
                queues.push(S2, events.record(S2).unwrap().unwrap(), 7);
            })
        };
        let poller = {
            let (events, queues, completions) = (events.clone(), queues.clone(), completions.clone());
            thread::spawn(move || queues.poll(&*events, |block| completions.lock().unwrap().push(block)))
        };
        queues.poll(&*events, |block| completions.lock().unwrap().push(block));
        pusher.join().unwrap();
        poller.join().unwrap();
        queues.poll(&*events, |block| completions.lock().unwrap().push(block));
        assert!(queues.is_empty());
        assert_eq!(events.released.load(Ordering::Relaxed), 2);
        assert_eq!(*completions.lock().unwrap(), vec![7, 7]);
    });
}

/// As many shards as `Shards::new` makes on this machine (one per core, a power of two).
fn shard_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).next_power_of_two().min(64)
}

const CLASS: usize = 12;

/// `count` cached blocks of class `CLASS` in a fresh arena, and their entries.
fn cached_blocks(count: usize) -> (Arc<Arena>, Vec<Entry>) {
    let arena = Arc::new(Arena::new());
    let entries = (0..count)
        .map(|i| {
            let block = arena.take_unused();
            block.bind(0x10_0000 * (i + 1), 4096, CLASS, 4096);
            block.mark_cached()
        })
        .collect();
    (arena, entries)
}

/// Claims through `entry` what the allocator's `offer` would: stale entries are dropped.
fn claim(arena: &Arena, entry: Entry) -> Claim {
    if arena.get(entry.id).claim(entry) {
        Claim::Taken
    } else {
        Claim::Stale
    }
}

/// Two cached blocks listed in shard 0: one thread takes from the last shard
/// (the others, shard 0 among them, are tried), one evicts the first block
/// (the cache cap claims its entry directly), the main thread drains the
/// shards and claims what it drained (`empty_cache`). Each block is taken
/// exactly once.
pub fn a_cached_block_is_taken_once() {
    model(|| {
        let (arena, entries) = cached_blocks(2);
        let shards = Arc::new(Shards::new());
        for &entry in &entries {
            shards.push(0, CLASS, entry, |_| true);
        }
        let thief = {
            let (arena, shards) = (arena.clone(), shards.clone());
            thread::spawn(move || shards.take(shard_count() - 1, &[CLASS], |entry| claim(&arena, entry)).map(|e| e.id))
        };
        let evictor = {
            let arena = arena.clone();
            let first = entries[0];
            thread::spawn(move || arena.get(first.id).claim(first).then_some(first.id))
        };
        let drained: Vec<u32> = shards
            .drain()
            .into_iter()
            .filter(|&entry| arena.get(entry.id).claim(entry))
            .map(|entry| entry.id)
            .collect();
        let stolen = thief.join().unwrap();
        let evicted = evictor.join().unwrap();
        let mut taken: Vec<u32> = drained.into_iter().chain(stolen).chain(evicted).collect();
        taken.sort_unstable();
        let mut ids: Vec<u32> = entries.iter().map(|entry| entry.id).collect();
        ids.sort_unstable();
        assert_eq!(taken, ids, "each cached block is taken exactly once");
    });
}

/// The owner pushes the entries of two cached blocks onto its stack and takes
/// the most recent one it can claim, while another thread reads the stack's
/// entries and claims the blocks they name (a thread whose own cache missed).
/// The reader sees only entries the owner pushed, no block is claimed twice,
/// and the owner takes the most recent block unless the reader got it first.
pub fn a_stack_read_while_its_owner_changes_it() {
    model(|| {
        let (arena, entries) = cached_blocks(2);
        let stack = Arc::new(Stack::new());
        let reader = {
            let (arena, stack, entries) = (arena.clone(), stack.clone(), entries.clone());
            thread::spawn(move || {
                let mut claimed = Vec::new();
                for entry in stack.entries() {
                    assert!(entries.contains(&entry), "read an entry nobody pushed: {entry:?}");
                    if arena.get(entry.id).claim(entry) {
                        claimed.push(entry.id);
                    }
                }
                claimed
            })
        };
        for &entry in &entries {
            let room = stack.room().expect("an empty stack has room");
            room.push(entry, arena.get(entry.id));
        }
        let top = stack.top().expect("two entries were pushed");
        assert_eq!(top.block.id, top.entry.id, "top names the block of its entry");
        let taken = stack.take(|entry| claim(&arena, entry)).map(|entry| entry.id);
        let claimed = reader.join().unwrap();
        let mut all: Vec<u32> = claimed.iter().copied().chain(taken).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), claimed.len() + usize::from(taken.is_some()), "a block was claimed twice");
        if !claimed.contains(&entries[1].id) {
            assert_eq!(taken, Some(entries[1].id), "the owner takes the most recent block it can");
        }
    });
}

/// The ids on a list of given-back blocks its caller took, in order.
fn walk(arena: &Arena, first: Option<u32>) -> Vec<u32> {
    let mut ids = Vec::new();
    let mut next = first;
    while let Some(id) = next {
        next = remote::next(arena.get(id).link());
        ids.push(id);
    }
    ids
}

/// Two threads return a block each to a thread's list while that thread
/// takes the list until it gets a block, then returns that block again
/// (rewriting its link while the other may still push) and a third one:
/// every push is taken exactly once, and each take follows the links its
/// pushes wrote.
pub fn given_back_blocks_are_taken_once() {
    model(|| {
        let (arena, entries) = cached_blocks(3);
        let list = Arc::new(Remote::default());
        let pushers: Vec<_> = entries[..2]
            .iter()
            .map(|entry| {
                let (arena, list, id) = (arena.clone(), list.clone(), entry.id);
                thread::spawn(move || list.push(id, arena.get(id).link()))
            })
            .collect();
        let mut taken = Vec::new();
        while taken.is_empty() {
            taken = walk(&arena, list.take());
            thread::yield_now();
        }
        let again = taken[0];
        list.push(again, arena.get(again).link());
        list.push(entries[2].id, arena.get(entries[2].id).link());
        for pusher in pushers {
            pusher.join().unwrap();
        }
        taken.extend(walk(&arena, list.take()));
        assert!(list.is_empty(), "a take leaves the list empty");
        let mut pushed: Vec<u32> = entries.iter().map(|entry| entry.id).chain([again]).collect();
        taken.sort_unstable();
        pushed.sort_unstable();
        assert_eq!(taken, pushed, "each push is taken once");
    });
}
