//! Private pools, graph capture and memory history against the fake backend;
//! the test plays the host runtime through its capture hooks.

use super::fake_backend::FakeBackend;
use super::*;
use std::sync::atomic::{AtomicI64, AtomicUsize};

const S1: StreamKey = StreamKey { device_type: 12, device_index: 0, id: 1 };
const S2: StreamKey = StreamKey { device_type: 12, device_index: 0, id: 2 };
const POOL: PoolId = PoolId { first: 1, second: 7 };

/// The host runtime: one current stream for every thread (enough here) and
/// the streams being captured.
#[derive(Default)]
struct Host {
    current: AtomicI64,
    capturing: Mutex<Vec<StreamKey>>,
}

struct Hooks(Arc<Host>);

impl CaptureHooks for Hooks {
    fn current_stream(&self) -> Option<StreamKey> {
        let id = self.0.current.load(Ordering::Relaxed);
        (id != 0).then_some(StreamKey { id, ..S1 })
    }
    fn is_capturing(&self, stream: StreamKey) -> bool {
        self.0.capturing.lock().unwrap().contains(&stream)
    }
}

fn allocator() -> (CachingAllocator<FakeBackend>, Arc<Host>) {
    let a = CachingAllocator::new(FakeBackend::default(), Settings::default());
    let host = Arc::new(Host::default());
    a.set_capture_hooks(Box::new(Hooks(host.clone()))).unwrap();
    (a, host)
}

/// Starts capturing `stream` into POOL, with a filter that accepts it alone.
fn begin(a: &CachingAllocator<FakeBackend>, host: &Host, stream: StreamKey) {
    host.current.store(stream.id, Ordering::Relaxed);
    host.capturing.lock().unwrap().push(stream);
    let filter: StreamFilter = Box::new(move |current| current == stream);
    a.begin_allocate_to_pool(POOL, Some(filter)).map_err(|(error, _)| error).unwrap();
}

fn end(a: &CachingAllocator<FakeBackend>, host: &Host) {
    host.capturing.lock().unwrap().clear();
    a.end_allocate_to_pool(POOL).unwrap();
}

fn pool_of(a: &CachingAllocator<FakeBackend>, address: usize) -> Option<PoolId> {
    a.segments().into_iter().find(|segment| segment.address == address).map(|segment| segment.pool)
}

#[test]
fn allocations_go_to_the_pool_whose_filter_accepts_the_current_stream() {
    let (a, host) = allocator();
    let before = a.allocate(4096).unwrap().unwrap();
    a.free(before.context).unwrap();
    begin(&a, &host, S1);
    let captured = a.allocate(4096).unwrap().unwrap();
    assert_ne!(captured.address, before.address, "the default pool's cached block is not the pool's");
    assert_eq!(pool_of(&a, captured.address), Some(POOL));
    host.current.store(S2.id, Ordering::Relaxed);
    let other = a.allocate(4096).unwrap().unwrap();
    assert_eq!(other.address, before.address, "another stream's allocation comes from the default pool");
    assert_eq!(pool_of(&a, other.address), Some(PoolId::DEFAULT));
    end(&a, &host);
    let after = a.allocate(4096).unwrap().unwrap();
    assert_ne!(after.address, captured.address);
    assert_eq!(pool_of(&a, after.address), Some(PoolId::DEFAULT));
}

#[test]
fn a_captured_block_freed_unused_is_reused_in_its_pool_only() {
    let (a, host) = allocator();
    begin(&a, &host, S1);
    let first = a.allocate(8192).unwrap().unwrap();
    a.free(first.context).unwrap();
    let again = a.allocate(8192).unwrap().unwrap();
    assert_eq!(again.address, first.address, "never used, so reusable within the capture");
    a.free(again.context).unwrap();
    end(&a, &host);
    let outside = a.allocate(8192).unwrap().unwrap();
    assert_ne!(outside.address, first.address, "the pool's block stays in the pool");
    assert_eq!(pool_of(&a, first.address), Some(POOL), "a pool's cached block is listed with its pool");
    let stats = a.stats();
    assert_eq!(stats.cached_bytes.current, 0, "a pool's free block is the pool's, not the cache's");
    assert_eq!(stats.idle_bytes, 8192, "but it is held and not handed out");
    a.release_pool(POOL).unwrap();
    assert_eq!(a.stats().idle_bytes, 0);
    assert!(!a.backend().memory().contains_key(&first.address), "the pool's free block went back to the backend");
}

#[test]
fn a_captured_block_used_on_a_stream_gets_no_event_and_waits_for_the_release() {
    let (a, host) = allocator();
    begin(&a, &host, S1);
    let block = a.allocate(4096).unwrap().unwrap();
    assert!(a.record_stream(block.address, block.context, S1).unwrap());
    a.backend().submit(S1);
    a.free(block.context).unwrap();
    assert_eq!(a.backend().events(), (0, 0), "no event is recorded into a capturing stream");
    assert_eq!(a.stats().captured_blocks, 1);
    let next = a.allocate(4096).unwrap().unwrap();
    assert_ne!(next.address, block.address, "retired until the pool is released");
    a.free(next.context).unwrap();
    end(&a, &host);
    a.release_pool(POOL).unwrap();
    assert_eq!(a.stats().captured_blocks, 0);
    assert_eq!(a.stats().pending_blocks.current, 1, "now it waits for an event recorded after the capture");
    assert_ne!(a.allocate(4096).unwrap().unwrap().address, block.address, "its event has not completed");
    a.backend().complete_all(S1);
    a.poll_pending();
    let reused = a.allocate(4096).unwrap().unwrap();
    assert_eq!(reused.address, block.address, "back in the default pool once its event completed");
    assert_eq!(pool_of(&a, reused.address), Some(PoolId::DEFAULT));
}

#[test]
fn a_block_allocated_in_a_pool_and_freed_after_its_release_joins_the_default_pool() {
    let (a, host) = allocator();
    begin(&a, &host, S1);
    let block = a.allocate(4096).unwrap().unwrap();
    end(&a, &host);
    a.release_pool(POOL).unwrap();
    assert!(a.record_stream(block.address, block.context, S1).unwrap());
    a.backend().submit(S1);
    a.free(block.context).unwrap();
    assert_eq!(a.backend().events().0, 1, "its capture is over: an event is recorded");
    a.backend().complete_all(S1);
    a.poll_pending();
    assert_eq!(a.allocate(4096).unwrap().unwrap().address, block.address);
}

#[test]
fn a_released_pool_waits_for_its_capture_to_end() {
    let (a, host) = allocator();
    begin(&a, &host, S1);
    let block = a.allocate(4096).unwrap().unwrap();
    a.free(block.context).unwrap();
    a.release_pool(POOL).unwrap();
    assert!(a.backend().memory().contains_key(&block.address), "still capturing: nothing goes");
    assert_eq!(a.allocate(4096).unwrap().unwrap().address, block.address, "and the pool still serves");
    end(&a, &host);
    assert!(a.backend().memory().contains_key(&block.address), "allocated: it stays");
    assert!(matches!(a.release_pool(POOL), Err(Error::UnknownPool { .. })), "released already");
}

#[test]
fn bad_pool_calls_are_errors_that_change_nothing() {
    let a = CachingAllocator::new(FakeBackend::default(), Settings::default());
    let no_hooks = a.begin_allocate_to_pool(POOL, None).map_err(|(error, _)| error);
    assert_eq!(no_hooks, Err(Error::NoCaptureHooks));
    let host = Arc::new(Host::default());
    a.set_capture_hooks(Box::new(Hooks(host.clone()))).unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let counted = dropped.clone();
    let guard = Guard(counted);
    let filter: StreamFilter = Box::new(move |_| {
        let _ = &guard;
        true
    });
    let (error, returned) = a.begin_allocate_to_pool(PoolId::DEFAULT, Some(filter)).unwrap_err();
    assert_eq!(error, Error::DefaultPool);
    assert!(returned.is_some(), "a refused filter comes back to its caller");
    drop(returned);
    assert_eq!(dropped.load(Ordering::Relaxed), 1);
    assert!(matches!(a.end_allocate_to_pool(POOL), Err(Error::UnknownPool { .. })));
    assert!(matches!(a.release_pool(POOL), Err(Error::UnknownPool { .. })));
    begin(&a, &host, S1);
    let twice = a.begin_allocate_to_pool(POOL, None).map_err(|(error, _)| error);
    assert!(matches!(twice, Err(Error::PoolBusy(_))));
    assert!(matches!(a.set_capture_hooks(Box::new(Hooks(host.clone()))), Err(Error::PoolBusy(_))));
    end(&a, &host);
    a.release_pool(POOL).unwrap();
    assert!(matches!(a.release_pool(POOL), Err(Error::UnknownPool { .. })), "released twice");
    assert_eq!(a.stats(), Stats::default(), "nothing was allocated or counted");
}

struct Guard(Arc<AtomicUsize>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Contexts are numbers; the recorder counts what it made and what came back.
#[derive(Default)]
struct Counting {
    next: AtomicUsize,
    released: AtomicUsize,
}

impl Recorder for Counting {
    fn gather(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }
    fn release(&self, _: usize) {
        self.released.fetch_add(1, Ordering::Relaxed);
    }
}

fn actions(a: &CachingAllocator<FakeBackend>) -> Vec<(Action, usize)> {
    a.traces().iter().map(|entry| (entry.action, entry.address)).collect()
}

#[test]
fn history_records_each_step_of_a_block_in_order() {
    let (a, _) = allocator();
    let recorder = Arc::new(Counting::default());
    a.record_history(true, 100, RecordContext::All, Some(recorder.clone()), false).unwrap();
    let block = a.allocate(1000).unwrap().unwrap();
    a.record_stream(block.address, block.context, S1).unwrap();
    a.backend().submit(S1);
    a.free(block.context).unwrap();
    a.backend().complete_all(S1);
    a.poll_pending();
    a.empty_cache().unwrap();
    use Action::*;
    let at = block.address;
    let expected = [(SegmentAlloc, at), (Alloc, at), (FreeRequested, at), (FreeCompleted, at), (SegmentFree, at)];
    assert_eq!(actions(&a), expected);
    let traces = a.traces();
    assert!(traces.iter().all(|entry| entry.size == 1024 && entry.pool == PoolId::DEFAULT));
    assert!(traces.windows(2).all(|pair| pair[0].time_us <= pair[1].time_us));
    let contexts: Vec<_> = traces.iter().map(|entry| entry.context.as_ref().map(|c| c.value())).collect();
    assert_eq!(contexts, [None, Some(1), Some(2), Some(1), None], "a completed free shows its allocation's context");
    drop(traces);
    a.record_history(false, 0, RecordContext::Never, None, true).unwrap();
    assert_eq!(recorder.released.load(Ordering::Relaxed), 2, "every context gathered is released");
    assert!(a.traces().is_empty());
}

#[test]
fn history_keeps_the_newest_entries_and_the_segments_contexts() {
    let (a, _) = allocator();
    let recorder = Arc::new(Counting::default());
    a.record_history(true, 4, RecordContext::State, Some(recorder.clone()), false).unwrap();
    let blocks: Vec<_> = (0..3).map(|_| a.allocate(512).unwrap().unwrap()).collect();
    assert_eq!(a.traces().len(), 4, "a ring of four");
    assert_eq!(actions(&a).last(), Some(&(Action::Alloc, blocks[2].address)));
    assert!(a.traces().iter().all(|entry| entry.context.is_none()), "STATE keeps contexts for segments only");
    let segments = a.segments();
    assert_eq!(segments.len(), 3);
    assert!(segments.iter().all(|segment| segment.allocated && segment.active && segment.context.is_some()));
    a.reset_peak_stats();
    a.reset_accumulated_stats();
    a.free(blocks[0].context).unwrap();
    let freed = a.segments().into_iter().find(|segment| segment.address == blocks[0].address).unwrap();
    assert!(!freed.allocated && !freed.active && freed.context.is_none());
    a.record_external_register(0x1000, 64);
    assert!(a.segments().iter().any(|segment| segment.address == 0x1000 && segment.size == 64));
    a.record_external_unregister(0x1000);
    a.record_external_unregister(0x2000);
    assert!(!a.segments().iter().any(|segment| segment.address == 0x1000));
    let last: Vec<_> = a.traces().iter().rev().take(3).map(|entry| entry.action).collect();
    assert_eq!(last, [Action::SegmentFree, Action::FreeCompleted, Action::FreeRequested]);
    a.record_history(false, 0, RecordContext::Never, None, false).unwrap();
    let before = a.traces().len();
    a.free(blocks[1].context).unwrap();
    assert_eq!(a.traces().len(), before, "off: nothing recorded");
    assert_eq!(a.record_history(true, 0, RecordContext::All, None, false), Err(Error::NoHistoryRoom));
}

#[test]
fn history_names_the_pool_of_a_captured_allocation() {
    let (a, host) = allocator();
    a.record_history(true, 100, RecordContext::Never, None, false).unwrap();
    begin(&a, &host, S1);
    let block = a.allocate(4096).unwrap().unwrap();
    let alloc = a.traces().into_iter().find(|entry| entry.action == Action::Alloc).unwrap();
    assert_eq!((alloc.address, alloc.pool, alloc.stream), (block.address, POOL, Some(S1)));
    end(&a, &host);
}
