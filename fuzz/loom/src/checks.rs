//! Loom checks of the core's lock-free parts: the block state machine (record
//! racing free racing a double free, two records racing a free), the count of
//! events a block waits for, the generation that tells a stale cache note from
//! a current one, the per-stream pending queues pushed and polled by several
//! threads, and the thread shards (a cached block taken by exactly one of a
//! steal, an eviction and a drain; gauges and their peaks across a reset of
//! the totals). Each check explores every interleaving of its threads
//! (about 4 s for all five in a release build).

use std::collections::HashMap;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

use crate::backend::{BackendError, StreamEvents, StreamKey};
use crate::block::{Arena, BlockState};
use crate::pending::PendingQueues;
use crate::shards::{Hot, Shards};

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
            thread::spawn(move || arena.get(id).release())
        };
        let second = arena.get(id).release();
        let recorded = recorder.join().unwrap();
        let first = freer.join().unwrap();
        let frees: Vec<Vec<StreamKey>> = [first, second].into_iter().flatten().collect();
        assert_eq!(frees.len(), 1, "exactly one of two frees succeeds");
        assert_eq!(frees[0], if recorded { vec![S1] } else { vec![] }, "a recorded stream is never lost");
        assert_eq!(arena.get(id).state(), BlockState::Pending);
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
        let streams = arena.get(id).release().expect("the only free");
        let mut recorded: Vec<StreamKey> =
            recorders.into_iter().map(|r| r.join().unwrap()).filter(|(_, took)| *took).map(|(s, _)| s).collect();
        let mut returned = streams.clone();
        recorded.sort_by_key(|s| s.id);
        returned.sort_by_key(|s| s.id);
        assert_eq!(recorded, returned);
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

/// A cache note (block, generation) taken before the block was handed out and
/// cached again no longer matches: a stale note never evicts a block in use.
pub fn stale_cache_notes_do_not_match() {
    model(|| {
        let (arena, id) = bound_block();
        let block = arena.get(id);
        let first = block.mark_cached();
        let taker = {
            let arena = arena.clone();
            thread::spawn(move || {
                let block = arena.get(id);
                assert!(block.transition(BlockState::Cached, BlockState::Allocated));
                assert!(block.release().is_some());
                block.mark_cached()
            })
        };
        // While the other thread takes and re-caches it, the old note may match
        // only while the block is still in its first stay in the cache.
        let matched = block.is_cached_as(first);
        let second = taker.join().unwrap();
        assert_ne!(first, second);
        assert!(!block.is_cached_as(first), "a note of an earlier stay matches");
        assert!(block.is_cached_as(second));
        let _ = matched;
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
    fn record(&self, stream: StreamKey) -> Result<Self::Event, BackendError> {
        let mut recorded = self.recorded.lock().unwrap();
        let n = recorded.entry(stream).or_default();
        *n += 1;
        Ok((stream, *n))
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
                queues.push(S1, events.record(S1).unwrap(), 7);
                queues.push(S2, events.record(S2).unwrap(), 7);
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
const BLOCK_BYTES: i64 = 4096;

/// Two cached blocks in shard 0: one thread steals from another shard's
/// side, one evicts block 1 (the cache cap), the main thread drains (empty
/// cache). Each block is taken exactly once, and the cached-bytes gauge ends
/// at zero.
pub fn a_cached_block_is_taken_once() {
    model(|| {
        let shards = Arc::new(Shards::new());
        {
            let mut shard = shards.lock(0);
            shard.push(CLASS, 1);
            shard.push(CLASS, 2);
            shard.add(&[(Hot::CachedBytes, 2 * BLOCK_BYTES)]);
        }
        let thief = {
            let shards = shards.clone();
            // From the last shard: the others, shard 0 among them, are tried.
            thread::spawn(move || shards.steal(shard_count() - 1, &[CLASS], |_| true, |_| BLOCK_BYTES))
        };
        let evictor = {
            let shards = shards.clone();
            thread::spawn(move || shards.remove(CLASS, 1, BLOCK_BYTES))
        };
        let drained = shards.drain(|_| BLOCK_BYTES);
        let stolen = thief.join().unwrap();
        let evicted = evictor.join().unwrap();
        let mut taken: Vec<u32> = drained.into_iter().chain(stolen).chain(evicted.then_some(1)).collect();
        taken.sort_unstable();
        assert_eq!(taken, vec![1, 2], "each cached block is taken exactly once");
        assert_eq!(shards.current_value(Hot::CachedBytes), 0);
        assert!(shards.counts().iter().all(|&n| n == 0));
    });
}

/// Three requests allocated on shard 0, one of them freed on the last shard,
/// peaks reset: the gauge is 2. Then one thread resets the totals while
/// another allocates one more request; returns the gauge's statistics.
fn reset_races_an_allocation() -> crate::stats::Stat {
    let shards = Arc::new(Shards::new());
    let last = shard_count() - 1;
    shards.lock(0).add(&[(Hot::ActiveRequests, 3)]);
    shards.lock(last).remove(&[(Hot::ActiveRequests, 1)]);
    shards.reset_peaks();
    let resetter = {
        let shards = shards.clone();
        thread::spawn(move || shards.reset_totals())
    };
    shards.lock(0).add(&[(Hot::ActiveRequests, 1)]);
    resetter.join().unwrap();
    shards.stat(Hot::ActiveRequests)
}

/// A reset of the totals racing an allocation keeps the gauge's value.
pub fn a_reset_of_the_totals_keeps_gauges() {
    model(|| assert_eq!(reset_races_an_allocation().current, 3, "a reset of the totals changed the gauge"));
}

/// ... and its peak never exceeds a value the gauge really had (2, then 3).
/// `reset_totals` moves a shard's net total into `carried` in three stores; an
/// `add` on another thread that sums the gauge mid-move would see a value the
/// gauge never had (4 here), so the peak check is a seqlock read that gives
/// up when a reset ran meanwhile (RELIABILITY.md).
pub fn a_reset_of_the_totals_keeps_peaks() {
    model(|| {
        let stat = reset_races_an_allocation();
        assert!(stat.peak <= 3, "peak {} above any value the gauge had", stat.peak);
    });
}
