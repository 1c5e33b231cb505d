//! Loom checks of the core's lock-free parts: the block state machine (record
//! racing free racing a double free, two records racing a free), the count of
//! events a block waits for, the generation that tells a stale cache note from
//! a current one, and the per-stream pending queues pushed and polled by
//! several threads. Each check explores every interleaving of its threads
//! (about 4 s for all five in a release build).

use std::collections::HashMap;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

use crate::backend::{BackendError, StreamEvents, StreamKey};
use crate::block::{Arena, BlockState};
use crate::pending::PendingQueues;

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
