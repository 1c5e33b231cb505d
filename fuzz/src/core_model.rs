//! A model of what each call into the caching core must return, driven by a
//! sequence of operations decoded from bytes: the coverage-guided fuzzer feeds
//! it (fuzz_targets/core_sequence.rs) and `cargo test` replays it on seeded
//! random inputs (tests/core_model.rs includes this file).
//!
//! The core runs on the library's fake backend (src/caching/fake_backend.rs):
//! host memory is bookkeeping (no memory is touched), a stream's device work
//! is a pair of counters the sequence advances, and faults (out of memory,
//! other allocation failures, event records failing) are injected by the
//! sequence. After every operation the
//! model checks the answer and the invariants:
//! - a block handed out is not in use by anyone, and every stream that used it
//!   before has completed all work submitted before its free (the property
//!   that must never break), and its size fits the request's class;
//! - frees, double frees, foreign and stale contexts, records by context and
//!   by base address, bad streams get exactly the defined answer;
//! - out of memory happens only when the memory is really not there after the
//!   cache was emptied, and leaves the cache empty;
//! - the statistics add up with the model's and the backend's books, the cache
//!   stays under its cap, and at the end everything goes back to the backend
//!   but the blocks retired on purpose.
//!
//! With `pinned_split_blocks` a block may be a part of the backend's memory:
//! blocks handed out must then not overlap any block in use, nor freed memory
//! whose streams are not done, and lie within memory the backend gave; free
//! parts next to a part in use may stay cached through `empty_cache` and over
//! the cap, and the memory of a retired part stays with it.
//!
//! Graph capture: the model plays the host runtime through the core's capture
//! hooks (a current stream, the streams being captured) and begins captures
//! into a few private pools with filters accepting one stream or all, ends
//! them and releases the pools. It checks that an allocation comes from the
//! pool the first capture whose filter accepts the current stream names (its
//! own free list or new memory, never another pool's block nor one of the
//! default pool), that a block allocated while its stream was captured and
//! freed after use gets no event and is never handed out before its pool's
//! last release (then only once the events recorded at the release have
//! completed; in the default pool, never), that a pool's free blocks go back
//! to the backend at its last release, that a capture's filter is dropped
//! exactly once, at its end, and never on a refused begin, and that each bad
//! call (the default pool's id, no hooks, a pool already capturing, hooks
//! changed during a capture, `end` without `begin`, a release too many) is
//! exactly its error and changes nothing.
//!
//! Memory history: turned on and off with rings of 1 to 64 entries, contexts
//! from a counting recorder, external registrations. The ring never holds
//! more than its maximum; the last entry of an allocation is its `Alloc`
//! (address, size, pool, stream), preceded by `SegmentAlloc` exactly for new
//! memory; every `Alloc` kept is an allocation the model made; per address,
//! the actions follow segment alloc → alloc → free requested → free completed
//! → ... → segment free; `segments()` lists exactly the backend's memory (split
//! blocks off) with `allocated` exactly for live blocks, the right pool, and
//! the external registrations; every context gathered is released once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::bytes::Bytes;
use crate::fake_backend::FakeBackend;
use crate::history_model::History;
use crate::pool_model::{pick, Ended, Home, HostState, Pools, PrivatePool, Release};
use xpu_caching_host_allocator::caching::size_class::{Rounding, SizeClass};
use xpu_caching_host_allocator::caching::{
    size_class, Action, CachingAllocator, CaptureHooks, DurationStat, Error, Fit, PoolId, RecordContext, Recorder,
    Settings, Stats, StreamFilter, StreamKey, TraceEntry,
};

/// The core splits requests from this size up, and parts no smaller.
const SPLIT_MIN: usize = 1 << 20;
/// With exact fit, a reused block exceeds its request's aligned size by at
/// most this fraction of it, when the budget allows (the core's `REUSE_DIVISOR`);
/// a private pool reuses its blocks up to this much larger too.
const REUSE_DIVISOR: usize = 8;
/// The fake backend's first address: external registrations lie below it.
const FIRST_ADDRESS: usize = 0x1000_0000;

const fn stream_key(device_index: i8, id: i64) -> StreamKey {
    StreamKey { device_type: 12, device_index, id }
}

/// The streams the host makes current and captures (all on devices that exist).
const HOST_STREAMS: [StreamKey; 4] = [stream_key(0, 0), stream_key(0, 1), stream_key(1, 0), stream_key(1, 2)];
/// Pool ids the sequence names; `{0, 0}` is the default pool's.
const POOLS: [PoolId; 4] =
    [PoolId::DEFAULT, PoolId { first: 1, second: 1 }, PoolId { first: 1, second: 2 }, PoolId { first: 2, second: 1 }];

struct LiveBlock {
    address: usize,
    size: usize,
    requested: usize,
    /// In the order they were first recorded (the order the core records events in).
    streams: Vec<StreamKey>,
    home: Home,
    /// Allocated while the current stream was being captured.
    captured: bool,
}

/// Where a freed block is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// The default pool's circulation (cached, waiting for events, or given back).
    Default,
    /// Private pool `instance`'s free list, or (`waiting`) on its way there once
    /// the events recorded at its free complete.
    Pool { instance: u64, waiting: bool },
    /// Allocated during capture and used: kept until its pool's last release.
    Held { instance: u64 },
}

struct FreedBlock {
    size: usize,
    /// Before memory of it is handed out again, each stream must have completed this much work.
    requirements: Vec<(StreamKey, u64)>,
    place: Place,
}

/// A captured block kept for its pool: its address, and the streams that used it.
type Held = (usize, Vec<StreamKey>);

struct Host(Arc<Mutex<HostState<StreamKey>>>);

fn host_state(host: &Mutex<HostState<StreamKey>>) -> MutexGuard<'_, HostState<StreamKey>> {
    host.lock().unwrap_or_else(|e| e.into_inner())
}

impl CaptureHooks for Host {
    fn current_stream(&self) -> Option<StreamKey> {
        host_state(&self.0).current
    }
    fn is_capturing(&self, stream: StreamKey) -> bool {
        host_state(&self.0).capturing.contains(&stream)
    }
}

/// Counts a filter's drop.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Contexts are numbers from 1; counts what it made and what came back.
#[derive(Default)]
struct Counting {
    gathered: AtomicUsize,
    released: AtomicUsize,
}

impl Recorder for Counting {
    fn gather(&self) -> usize {
        self.gathered.fetch_add(1, Ordering::SeqCst) + 1
    }
    fn release(&self, _: usize) {
        self.released.fetch_add(1, Ordering::SeqCst);
    }
}

/// What the model knows.
#[derive(Default)]
struct Model {
    /// Blocks handed out, by context.
    live: HashMap<usize, LiveBlock>,
    /// Freed blocks by address: where they are, and what their reuse waits for.
    freed: HashMap<usize, FreedBlock>,
    split: bool,
    /// Blocks kept out of circulation for good: address, size.
    retired: HashMap<usize, usize>,
    /// Of those, the ones retired when an event could not be recorded at
    /// their free, with the pool they belonged to: the segments list them in
    /// it while it lives (the others in the default pool).
    retired_home: HashMap<usize, Home>,
    /// Every context ever handed out (headers of the arena).
    contexts: Vec<usize>,
    refused_allocations: i64,
    /// The context of the last allocation.
    newest: Option<usize>,
    /// Every (address, size) ever handed out.
    handed: HashSet<(usize, usize)>,
    /// The end of the highest memory handed out: the backend's new memory lies beyond it.
    memory_end: usize,
    /// Injected record failures not used yet.
    failing_records: u32,
    host: Arc<Mutex<HostState<StreamKey>>>,
    hooks_set: bool,
    pools: Pools<PoolId, StreamKey, Held>,
    filter_drops: Arc<AtomicUsize>,
    expected_drops: usize,
    history: History,
    recorder: Arc<Counting>,
    /// XPU_HOST_MODEL_TRACE: the operations and their answers on stderr.
    trace: bool,
}

impl Model {
    /// The pool id segments and traces show for `home`.
    fn pool_id(&self, home: Home) -> PoolId {
        self.pools.alive_pool(home).and_then(|instance| self.pools.id(instance)).unwrap_or(PoolId::DEFAULT)
    }

    /// Where an allocation made now goes: the pool (id, instance) of the first
    /// capture whose filter accepts the current stream, whether that stream is
    /// being captured, and the stream the core sees.
    fn route(&self) -> (Option<(PoolId, u64)>, bool, Option<StreamKey>) {
        if self.pools.captures().is_empty() {
            return (None, false, None);
        }
        let host = host_state(&self.host);
        let Some(current) = host.current else { return (None, false, None) };
        let captured = host.capturing.contains(&current);
        (self.pools.route(current), captured, Some(current))
    }

    /// Blocks certainly in private pools' free lists, and blocks that may be
    /// there (freed after use, not captured: back in the list once their
    /// events complete).
    fn pool_free_blocks(&self) -> (usize, usize) {
        let (mut known, mut maybe) = (0, 0);
        for freed in self.freed.values() {
            match freed.place {
                Place::Pool { waiting: false, .. } => known += 1,
                Place::Pool { waiting: true, .. } => maybe += 1,
                _ => {}
            }
        }
        (known, maybe)
    }
}

/// Counts of what one run did, for reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct Report {
    pub operations: u64,
    pub hostile: u64,
    pub faults: u64,
    /// Captures begun.
    pub captures: u64,
    /// Allocations served by a private pool.
    pub pooled: u64,
    /// Captured blocks kept until their pool's release.
    pub held: u64,
    /// Trace entries checked.
    pub history_entries: u64,
    /// Allocations and frees made on a thread of their own, so that a block
    /// is freed on another thread than it was handed out on.
    pub elsewhere: u64,
}

/// Runs `call` on a thread of its own, which exits when it returns (its
/// cache goes to the next such thread), passing its panic on.
fn elsewhere<T: Send>(call: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| scope.spawn(call).join()).unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

const SIZES: [usize; 16] = [
    0,
    1,
    511,
    512,
    513,
    4096,
    4097,
    65536,
    (1 << 20) + 1,
    3 << 20,
    usize::MAX,
    usize::MAX / 2 + 1,
    usize::MAX / 2 + 2,
    usize::MAX - 511,
    1 << 40,
    0, // replaced by a size read from the input
];

fn stream_from(bytes: &mut Bytes) -> StreamKey {
    let device_index = bytes.pick(&[0i8, 0, 1, 1, 2, -1, i8::MIN]);
    let id = bytes.pick(&[0i64, 1, 2, 3, -1, i64::MAX]);
    StreamKey { device_type: 12, device_index, id }
}

/// Runs the sequence in `data`; panics on any answer or state the model rules out.
pub fn run(data: &[u8]) -> Report {
    let mut bytes = Bytes(data);
    let divisions = bytes.pick(&size_class::ALLOWED_DIVISIONS);
    let threshold = bytes.pick(&[usize::MAX, 4096, 1 << 20]);
    let cap = bytes.pick(&[usize::MAX, usize::MAX, 0, 8192, 1 << 20]);
    let limit = bytes.pick(&[usize::MAX, 1 << 16, 1 << 20, 16 << 20]);
    let split = bytes.pick(&[false, false, true]);
    let fit = bytes.pick(&[Fit::Exact, Fit::Exact, Fit::Rounded]);
    let settings = Settings {
        fit,
        roundup_divisions: divisions,
        max_round_threshold: threshold,
        max_cached_bytes: cap,
        release_cached_on_miss: bytes.pick(&[false, false, true]),
        split_blocks: split,
        ..Settings::default()
    };
    let rounding = match fit {
        Fit::Exact => Rounding::exact(),
        Fit::Rounded => Rounding { divisions, threshold, exact: false },
    };
    let a = CachingAllocator::new(FakeBackend::with_limit(limit), settings);
    let mut model = Model { split, memory_end: FIRST_ADDRESS, ..Model::default() };
    host_state(&model.host).current = Some(HOST_STREAMS[0]);
    if bytes.pick(&[true, true, true, false]) {
        assert!(a.set_capture_hooks(Box::new(Host(model.host.clone()))).is_ok());
        model.hooks_set = true;
    }
    let mut report = Report::default();
    let trace = std::env::var_os("XPU_HOST_MODEL_TRACE").is_some();
    model.trace = trace;
    if trace {
        eprintln!("model: {fit:?} fit, divisions {divisions} threshold {threshold:#x} cap {cap:#x} limit {limit:#x}");
    }

    while !bytes.is_empty() && report.operations < 2000 {
        report.operations += 1;
        let operation = bytes.byte() % 19;
        if trace {
            eprintln!("model: operation {operation}, {} bytes left, stats {}", bytes.0.len(), a.stats());
        }
        match operation {
            0..=2 => {
                let mut size = bytes.pick(&SIZES);
                if size == 0 && bytes.byte() % 2 == 0 {
                    size = (bytes.u32() % (4 << 20)) as usize;
                }
                // Now and then on a thread of its own: its blocks go back there when freed.
                if bytes.byte() % 8 == 0 {
                    report.elsewhere += 1;
                    elsewhere(|| allocate(&a, &mut model, &rounding, size, &mut report));
                } else {
                    allocate(&a, &mut model, &rounding, size, &mut report);
                }
            }
            3 | 4 => {
                let context = choose_context(&mut bytes, &model, &mut report);
                // Now and then on a thread of its own, as a pin-memory thread's buffers are freed.
                if bytes.byte() % 4 == 0 {
                    report.elsewhere += 1;
                    elsewhere(|| free(&a, &mut model, context, &mut report));
                } else {
                    free(&a, &mut model, context, &mut report);
                }
            }
            5 => {
                let (address, context) = choose_target(&mut bytes, &model, &mut report);
                let stream = stream_from(&mut bytes);
                record(&a, &mut model, address, context, stream);
            }
            6 => {
                // Device work on a stream: it now has more to complete.
                let stream = stream_from(&mut bytes);
                if (0..FakeBackend::DEVICES).contains(&stream.device_index) {
                    a.backend().submit(stream);
                }
            }
            7 => {
                let stream = stream_from(&mut bytes);
                a.backend().complete(stream, u64::from(bytes.byte() % 4));
            }
            8 => {
                assert_eq!(a.empty_cache(), Ok(()));
                if !model.split {
                    check_nothing_cached(&a, "empty_cache left blocks cached");
                }
            }
            9 => a.poll_pending(),
            10 => {
                match bytes.byte() % 3 {
                    0 => a.backend().inject_out_of_memory(1 + u32::from(bytes.byte() % 2)),
                    1 => a.backend().inject_allocation_failures(1),
                    _ => {
                        a.backend().inject_record_failures(1);
                        model.failing_records += 1;
                    }
                }
                report.faults += 1;
            }
            11 => {
                if bytes.byte() % 2 == 0 {
                    a.reset_peak_stats();
                } else {
                    a.reset_accumulated_stats();
                    model.refused_allocations = 0;
                }
            }
            12 => {
                // The host switches the current stream, or starts or stops capturing one.
                let stream = bytes.pick(&HOST_STREAMS);
                host_state(&model.host).switch(bytes.byte() % 4, stream);
            }
            13 => {
                let id = bytes.pick(&POOLS);
                // As a runtime begins a capture: the stream captured is made
                // current and marked capturing (or, now and then, not).
                let filter = bytes.pick(&[None, None, Some(0), Some(1), Some(2), Some(3)]).map(|i| HOST_STREAMS[i]);
                let mark = bytes.pick(&[None, Some(0), Some(0), Some(0), Some(1), Some(2), Some(3)]);
                let mark = mark.map(|i| filter.unwrap_or(HOST_STREAMS[i]));
                let make_current = bytes.pick(&[true, true, false]);
                begin(&a, &mut model, id, filter, mark, &mut report);
                if make_current && mark.is_some() {
                    host_state(&model.host).current = mark;
                }
            }
            14 => {
                let capturing: Vec<PoolId> = model.pools.captures().iter().map(|capture| capture.id).collect();
                let id = pick(&mut bytes, &POOLS, &capturing);
                end(&a, &mut model, id, &mut report);
            }
            15 => {
                let id = pick(&mut bytes, &POOLS, &model.pools.ids(|id| (id.first, id.second)));
                release(&a, &mut model, id, &mut report);
            }
            16 => history(&a, &mut model, &mut bytes, &mut report),
            17 => {
                // The newest block used by a kernel on the current stream, then
                // (mostly) freed: as a tensor made and dropped during capture.
                let newest = model.newest.and_then(|context| model.live.get(&context).map(|b| (context, b.address)));
                if let Some((context, address)) = newest {
                    let current = host_state(&model.host).current.unwrap_or(HOST_STREAMS[0]);
                    let other = bytes.pick(&[None, None, Some(0), Some(1), Some(2), Some(3)]).map(|i| HOST_STREAMS[i]);
                    for stream in std::iter::once(current).chain(other) {
                        record(&a, &mut model, address, context, stream);
                        if bytes.byte() % 2 == 0 {
                            a.backend().submit(stream);
                        }
                    }
                    if bytes.byte() % 3 != 0 {
                        free(&a, &mut model, context, &mut report);
                    }
                }
            }
            _ => {
                let before = snapshot(&a);
                let result = a.set_capture_hooks(Box::new(Host(model.host.clone())));
                if model.pools.captures().is_empty() {
                    assert!(result.is_ok(), "set_capture_hooks with no capture under way: {result:?}");
                    model.hooks_set = true;
                } else {
                    report.hostile += 1;
                    assert!(matches!(result, Err(Error::PoolBusy(_))), "hooks changed during a capture: {result:?}");
                    assert_unchanged(&a, &before, "set_capture_hooks during a capture");
                }
            }
        }
        check_books(&a, &model, cap);
        check_history(&a, &model, &mut report);
        check_segments(&a, &model);
    }

    // The end: every stream completes, every block is freed, every capture
    // ends, every pool is released, the cache emptied.
    a.backend().settle();
    model.failing_records = 0;
    let contexts: Vec<usize> = model.live.keys().copied().collect();
    for context in contexts {
        free(&a, &mut model, context, &mut report);
    }
    while let Some(capture) = model.pools.captures().first() {
        let id = capture.id;
        end(&a, &mut model, id, &mut report);
    }
    for id in model.pools.ids(|id| (id.first, id.second)) {
        while model.pools.contains(id) {
            release(&a, &mut model, id, &mut report);
        }
    }
    a.backend().settle();
    assert_eq!(a.empty_cache(), Ok(()));
    check_books(&a, &model, cap);
    check_history(&a, &model, &mut report);
    check_segments(&a, &model);
    let stats = a.stats();
    assert_eq!((stats.active_requests.current, stats.pending_blocks.current), (0, 0));
    assert_eq!(stats.captured_blocks, 0, "blocks kept for pools after every pool was released");
    let memory = a.backend().memory();
    if model.split {
        // A retired part keeps the rest of its memory, cached, from going back.
        for (&base, &size) in &memory {
            let holds_retired = model.retired.keys().any(|&address| base <= address && address < base + size);
            assert!(holds_retired, "memory at {base:#x} left with the backend holds no retired part");
        }
    } else {
        assert_eq!(stats.cached_bytes.current, 0);
        assert_eq!(memory.len(), model.retired.len(), "memory left with the backend is the retired blocks'");
        assert_eq!(a.backend().live_bytes(), model.retired.values().sum::<usize>());
    }
    let (recorded, released) = a.backend().events();
    assert_eq!(recorded, released, "events recorded and never released");
    // History off and cleared: every context gathered has been released.
    assert_eq!(a.record_history(false, 0, RecordContext::Never, None, true), Ok(()));
    assert!(a.traces().is_empty());
    let (gathered, released) =
        (model.recorder.gathered.load(Ordering::SeqCst), model.recorder.released.load(Ordering::SeqCst));
    assert_eq!(gathered, released, "contexts gathered and never released");
    assert_eq!(model.filter_drops.load(Ordering::SeqCst), model.expected_drops, "filters dropped");
    report
}

fn allocate(
    a: &CachingAllocator<FakeBackend>,
    model: &mut Model,
    rounding: &Rounding,
    size: usize,
    report: &mut Report,
) {
    let class = (size > 0).then(|| rounding.classify(size)).flatten();
    let calls_before = a.backend().allocate_calls();
    let (pool, captured, stream) = model.route();
    let result = a.allocate(size);
    if size == 0 {
        assert_eq!(result, Ok(None), "size 0");
        return;
    }
    let Some(class) = class else {
        report.hostile += 1;
        assert_eq!(result, Err(Error::SizeTooLarge { requested: size }));
        assert_eq!(a.backend().allocate_calls(), calls_before, "a size too large reached the backend");
        return;
    };
    let allocation = match result {
        Ok(Some(allocation)) => allocation,
        Ok(None) => panic!("allocate({size}) gave nothing"),
        Err(Error::OutOfMemory { requested, size: rounded, .. }) => {
            model.refused_allocations += 1;
            assert_eq!((requested, rounded), (size, class.size));
            if !model.split {
                check_nothing_cached(a, "out of memory without emptying the cache");
            }
            let calls = a.backend().allocate_calls() - calls_before;
            assert_eq!(calls, 2, "an out-of-memory allocation is tried exactly twice");
            return;
        }
        Err(Error::Backend(_)) => {
            model.refused_allocations += 1;
            return;
        }
        Err(other) => panic!("allocate({size}): {other:?}"),
    };
    // A split-off block is carved at its class size; a block too small to split
    // is handed out whole. A pool reuses blocks up to 1/8 larger at either fit.
    let slack = if rounding.exact || pool.is_some() { class.size / REUSE_DIVISOR } else { 0 };
    let fits = size_class::fits(allocation.size, size, &SizeClass { step: class.step + slack, ..class })
        || (model.split && allocation.size >= size && allocation.size - size < class.step + SPLIT_MIN);
    assert!(fits, "block of {} bytes for a request of {size}", allocation.size);
    assert_eq!(allocation.address % 512, 0);
    assert!(!model.live.contains_key(&allocation.context), "a context handed out twice");
    let (start, end) = (allocation.address, allocation.address + allocation.size);
    let overlaps = |address: usize, size: usize| address < end && start < address + size;
    assert!(!model.live.values().any(|b| overlaps(b.address, b.size)), "memory handed out twice");
    assert!(!model.retired.iter().any(|(&address, &size)| overlaps(address, size)), "a retired block handed out again");
    // The backend's new memory lies beyond all memory handed out before (it never reuses addresses).
    let fresh = start >= model.memory_end;
    {
        let memory = a.backend().memory();
        if model.split {
            let within = memory.iter().any(|(&base, &length)| base <= start && end <= base + length);
            assert!(within, "{start:#x}..{end:#x} is not within memory from the backend");
        } else {
            assert_eq!(memory.get(&allocation.address), Some(&allocation.size), "not backend memory of that size");
            assert!(fresh || model.freed.contains_key(&start), "{start:#x} is neither new memory nor a freed block");
        }
        if fresh {
            assert_eq!(memory.get(&start), Some(&allocation.size), "new memory is a whole piece of the backend's");
        }
        for (&address, freed) in &model.freed {
            if !overlaps(address, freed.size) {
                continue;
            }
            match (freed.place, pool) {
                (Place::Held { .. }, _) => panic!(
                    "block {address:#x}, allocated during capture and freed after use, handed out before its pool's \
                     last release"
                ),
                (Place::Pool { instance, .. }, Some((_, routed))) if instance == routed => {}
                (Place::Pool { instance, .. }, _) => panic!(
                    "block {address:#x} of private pool {:?} handed out to {:?}",
                    model.pools.id(instance),
                    pool.map_or(PoolId::DEFAULT, |(id, _)| id)
                ),
                (Place::Default, Some((id, _))) => {
                    panic!("an allocation routed to pool {id:?} took block {address:#x} of the default pool")
                }
                (Place::Default, None) => {}
            }
            for &(stream, submitted) in &freed.requirements {
                let (_, completed) = a.backend().work(stream);
                assert!(
                    completed >= submitted,
                    "memory of block {address:#x} handed out again while stream {stream:?} has completed {completed} \
                     of the {submitted} works submitted before its free (or its pool's release)"
                );
            }
        }
    }
    if let Some((id, instance)) = pool {
        let own = model
            .freed
            .get(&start)
            .is_some_and(|freed| matches!(freed.place, Place::Pool { instance: i, .. } if i == instance));
        assert!(fresh || own, "pool {id:?} handed out {start:#x}, neither new memory nor one of its free blocks");
        report.pooled += 1;
    }
    if model.history.enabled {
        let traces = a.traces();
        let last = traces.last().expect("an allocation is recorded");
        let expected_pool = pool.map_or(PoolId::DEFAULT, |(id, _)| id);
        assert_eq!(
            (last.action, last.address, last.size, last.pool, last.stream),
            (Action::Alloc, start, allocation.size, expected_pool, stream),
            "the allocation's trace entry"
        );
        if model.history.max_entries >= 2 {
            let segment = traces.len() >= 2 && {
                let before = &traces[traces.len() - 2];
                (before.action, before.address, before.size) == (Action::SegmentAlloc, start, allocation.size)
            };
            assert_eq!(segment, fresh, "a segment alloc entry exactly for new memory at {start:#x}");
        }
    }
    model.freed.remove(&allocation.address);
    model.memory_end = model.memory_end.max(end.next_multiple_of(512));
    model.handed.insert((start, allocation.size));
    if !model.contexts.contains(&allocation.context) {
        model.contexts.push(allocation.context);
    }
    let home = pool.map_or(Home::Default, |(_, instance)| Home::Pool(instance));
    model.newest = Some(allocation.context);
    if model.trace {
        eprintln!(
            "model: allocated {start:#x} ({} bytes) in {home:?}, captured {captured}, fresh {fresh}",
            allocation.size
        );
    }
    model.live.insert(
        allocation.context,
        LiveBlock {
            address: allocation.address,
            size: allocation.size,
            requested: size,
            streams: Vec::new(),
            home,
            captured,
        },
    );
}

/// A context to free or record with: a live one, a stale one, or a foreign one.
fn choose_context(bytes: &mut Bytes, model: &Model, report: &mut Report) -> usize {
    let kind = bytes.byte() % 8;
    let index = bytes.byte() as usize;
    if kind < 4 && !model.live.is_empty() {
        let mut live: Vec<usize> = model.live.keys().copied().collect();
        live.sort_unstable();
        return live[index % live.len()];
    }
    report.hostile += 1;
    match (kind, model.contexts.is_empty()) {
        (4 | 5, false) => model.contexts[index % model.contexts.len()],
        (6, false) => model.contexts[index % model.contexts.len()] + 1 + index % 7,
        _ => [0, 1, usize::MAX, 0x1000, index << 12][index % 5],
    }
}

fn free(a: &CachingAllocator<FakeBackend>, model: &mut Model, context: usize, report: &mut Report) {
    let events_before = a.backend().events().0;
    let result = a.free(context);
    let Some(block) = model.live.remove(&context) else {
        let expected = if model.contexts.contains(&context) {
            Error::NotAllocated { context }
        } else {
            Error::UnknownBlock { context }
        };
        assert_eq!(result, Err(expected));
        return;
    };
    let pool = model.pools.alive_pool(block.home);
    if model.trace {
        eprintln!(
            "model: free {:#x} {:?} captured {} streams {:?}: {result:?}",
            block.address, block.home, block.captured, block.streams
        );
    }
    let place = |waiting| pool.map_or(Place::Default, |instance| Place::Pool { instance, waiting });
    if block.streams.is_empty() {
        // Back to its pool's list (or the default pool's) at once.
        assert_eq!(result, Ok(()), "free of a live block no stream used");
        model
            .freed
            .insert(block.address, FreedBlock { size: block.size, requirements: Vec::new(), place: place(false) });
        return;
    }
    if block.captured && (pool.is_some() || block.home == Home::Default) {
        // No event can tell when a captured stream is done with it.
        assert_eq!(result, Ok(()), "free of a captured block used on streams");
        assert_eq!(a.backend().events().0, events_before, "an event recorded for a block allocated during capture");
        match pool {
            Some(instance) => {
                model.pools.hold(instance, (block.address, block.streams));
                model.freed.insert(
                    block.address,
                    FreedBlock { size: block.size, requirements: Vec::new(), place: Place::Held { instance } },
                );
                report.held += 1;
            }
            None => {
                model.retired.insert(block.address, block.size);
            }
        }
        return;
    }
    // One event per stream, the first record failing if one is injected.
    if model.failing_records > 0 {
        model.failing_records -= 1;
        match result {
            Err(Error::Backend(message)) => assert!(message.contains("retired"), "{message}"),
            other => panic!("free with a record failing: {other:?}"),
        }
        model.retired.insert(block.address, block.size);
        model.retired_home.insert(block.address, block.home);
        return;
    }
    assert_eq!(result, Ok(()), "free of a live block used on streams");
    let requirements = block.streams.iter().map(|&s| (s, a.backend().work(s).0)).collect();
    model.freed.insert(block.address, FreedBlock { size: block.size, requirements, place: place(true) });
}

/// (address, context) for record_stream: ours, by base address with a foreign
/// context, interior, stale or foreign.
fn choose_target(bytes: &mut Bytes, model: &Model, report: &mut Report) -> (usize, usize) {
    let context = choose_context(bytes, model, report);
    let address = model.live.get(&context).map(|b| b.address).or_else(|| {
        let mut live: Vec<usize> = model.live.values().map(|b| b.address).collect();
        live.sort_unstable();
        live.get(context % live.len().max(1)).copied()
    });
    match (bytes.byte() % 4, address) {
        (0 | 1, Some(address)) => (address, context),
        (2, Some(address)) => (address, 0xdead_0000),
        (3, Some(address)) => (address + 8, context),
        _ => (context, context),
    }
}

fn record(a: &CachingAllocator<FakeBackend>, model: &mut Model, address: usize, context: usize, stream: StreamKey) {
    let result = a.record_stream(address, context, stream);
    if !(0..FakeBackend::DEVICES).contains(&stream.device_index) {
        assert!(matches!(result, Err(Error::Backend(_))), "a stream on device {} was accepted", stream.device_index);
        return;
    }
    let target = if model.live.contains_key(&context) {
        Some(context)
    } else {
        model.live.iter().find(|(_, b)| b.address == address).map(|(&c, _)| c)
    };
    assert_eq!(result, Ok(target.is_some()), "record_stream({address:#x}, {context:#x})");
    if let Some(target) = target {
        let streams = &mut model.live.get_mut(&target).unwrap().streams;
        if !streams.contains(&stream) {
            streams.push(stream);
        }
    }
}

/// What a bad call must leave as it was.
type Snapshot = (Stats, Vec<(usize, usize)>, (u64, u64), usize);

fn snapshot(a: &CachingAllocator<FakeBackend>) -> Snapshot {
    let mut memory: Vec<(usize, usize)> = a.backend().memory().into_iter().collect();
    memory.sort_unstable();
    // Durations are clock ticks made microseconds at a rate the clock refines as it runs.
    let stats =
        Stats { host_alloc_time: DurationStat::default(), host_free_time: DurationStat::default(), ..a.stats() };
    (stats, memory, a.backend().events(), a.segments().len())
}

fn assert_unchanged(a: &CachingAllocator<FakeBackend>, before: &Snapshot, what: &str) {
    let after = snapshot(a);
    assert_eq!(after.0, before.0, "{what} changed the statistics");
    assert_eq!((&after.1, after.2, after.3), (&before.1, before.2, before.3), "{what} changed the memory or events");
}

fn begin(
    a: &CachingAllocator<FakeBackend>,
    model: &mut Model,
    id: PoolId,
    filter: Option<StreamKey>,
    mark: Option<StreamKey>,
    report: &mut Report,
) {
    let boxed = filter.map(|accepted| {
        let guard = DropCount(model.filter_drops.clone());
        Box::new(move |stream: StreamKey| {
            let _ = &guard;
            stream == accepted
        }) as StreamFilter
    });
    let before = snapshot(a);
    let drops = model.filter_drops.load(Ordering::SeqCst);
    let result = a.begin_allocate_to_pool(id, boxed);
    if model.trace {
        eprintln!("model: begin {id:?} filter {filter:?} mark {mark:?}: {:?}", result.as_ref().map_err(|(e, _)| e));
    }
    let refused = if id == PoolId::DEFAULT {
        Some(Refusal::DefaultPool)
    } else if !model.hooks_set {
        Some(Refusal::NoHooks)
    } else if model.pools.capturing(id) {
        Some(Refusal::Busy)
    } else {
        None
    };
    match (result, refused) {
        (Ok(()), None) => {
            model.pools.begin(id, filter, mark);
            if let Some(stream) = mark {
                host_state(&model.host).capturing.push(stream);
            }
            assert_eq!(model.filter_drops.load(Ordering::SeqCst), drops, "a filter dropped at the begin");
            report.captures += 1;
        }
        (Err((error, returned)), Some(refusal)) => {
            report.hostile += 1;
            let expected = match refusal {
                Refusal::DefaultPool => matches!(error, Error::DefaultPool),
                Refusal::NoHooks => matches!(error, Error::NoCaptureHooks),
                Refusal::Busy => matches!(error, Error::PoolBusy(_)),
            };
            assert!(expected, "begin_allocate_to_pool refused ({refusal:?}) with {error:?}");
            assert_eq!(returned.is_some(), filter.is_some(), "a refused begin hands its filter back");
            assert_eq!(model.filter_drops.load(Ordering::SeqCst), drops, "a refused begin dropped the filter");
            drop(returned);
            model.expected_drops += usize::from(filter.is_some());
            assert_unchanged(a, &before, "a refused begin");
        }
        (Err((error, _)), None) => panic!("begin_allocate_to_pool({id:?}) refused: {error:?}"),
        (Ok(()), Some(refusal)) => panic!("begin_allocate_to_pool succeeded, not refused ({refusal:?})"),
    }
}

/// Why a begin must be refused.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    DefaultPool,
    NoHooks,
    Busy,
}

fn end(a: &CachingAllocator<FakeBackend>, model: &mut Model, id: PoolId, report: &mut Report) {
    let before = snapshot(a);
    let result = a.end_allocate_to_pool(id);
    if model.trace {
        eprintln!("model: end {id:?}: {result:?}");
    }
    let Some(Ended { capture, gone }) = model.pools.end(id) else {
        report.hostile += 1;
        assert!(
            matches!(result, Err(Error::UnknownPool { id: named, .. }) if named == id),
            "end without begin: {result:?}"
        );
        assert_unchanged(a, &before, "an end without begin");
        return;
    };
    model.expected_drops += usize::from(capture.filter.is_some());
    if let Some(stream) = capture.marked {
        host_state(&model.host).unmark(stream);
    }
    match gone {
        Some(pool) => drain(a, model, pool, result),
        None => assert_eq!(result, Ok(()), "end_allocate_to_pool({id:?})"),
    }
}

fn release(a: &CachingAllocator<FakeBackend>, model: &mut Model, id: PoolId, report: &mut Report) {
    let before = snapshot(a);
    let result = a.release_pool(id);
    if model.trace {
        eprintln!("model: release {id:?}: {result:?}");
    }
    match model.pools.release(id) {
        Release::Kept => {
            assert_eq!(result, Ok(()), "release_pool({id:?}), not the last");
            assert_unchanged(a, &before, "a release that is not the last");
        }
        Release::Last(pool) => drain(a, model, pool, result),
        Release::Refused => {
            report.hostile += 1;
            assert!(
                matches!(result, Err(Error::UnknownPool { id: named, .. }) if named == id),
                "release of pool {id:?}, unknown or released: {result:?}"
            );
            assert_unchanged(a, &before, "a release of an unknown pool");
        }
    }
}

/// A pool's last release (`result` is its answer): its free blocks went back to
/// the backend, its kept blocks wait for events recorded now, then join the
/// default pool, as do its blocks still allocated or waiting.
fn drain(a: &CachingAllocator<FakeBackend>, model: &mut Model, pool: PrivatePool<Held>, result: Result<(), Error>) {
    let memory = a.backend().memory();
    let mut gone = Vec::new();
    for (&address, freed) in model.freed.iter_mut() {
        if let Place::Pool { instance, waiting } = freed.place {
            if instance != pool.instance {
                continue;
            }
            if !memory.contains_key(&address) {
                gone.push(address);
            } else {
                // Freed after use, its events not yet seen complete: it joins the default pool when they are.
                assert!(waiting, "free block {address:#x} of a released pool still with the backend");
                freed.place = Place::Default;
            }
        }
    }
    for address in gone {
        model.freed.remove(&address);
    }
    let mut retired = false;
    for (address, streams) in pool.held {
        let freed = model.freed.get_mut(&address).expect("a kept block is freed");
        assert_eq!(freed.place, Place::Held { instance: pool.instance });
        let mut requirements = Vec::new();
        let mut failed = false;
        for stream in streams {
            if model.failing_records > 0 {
                model.failing_records -= 1;
                failed = true;
                break;
            }
            requirements.push((stream, a.backend().work(stream).0));
        }
        if failed {
            retired = true;
            let size = freed.size;
            model.freed.remove(&address);
            model.retired.insert(address, size);
        } else {
            freed.requirements = requirements;
            freed.place = Place::Default;
        }
    }
    match result {
        Ok(()) => assert!(!retired, "a record failed at the release, yet it succeeded"),
        Err(Error::Backend(message)) => assert!(retired && message.contains("retired"), "release: {message}"),
        Err(other) => panic!("the last release of a pool: {other:?}"),
    }
}

/// History operations: on, off, a refused maximum, external registrations.
fn history(a: &CachingAllocator<FakeBackend>, model: &mut Model, bytes: &mut Bytes, report: &mut Report) {
    let length = a.traces().len();
    match bytes.byte() % 6 {
        0 | 1 => {
            let max_entries = bytes.pick(&[1, 2, 3, 5, 8, 64]);
            let when =
                bytes.pick(&[RecordContext::Never, RecordContext::State, RecordContext::Alloc, RecordContext::All]);
            let recorder = bytes.pick(&[true, true, false]).then(|| model.recorder.clone() as Arc<dyn Recorder>);
            let clear = bytes.pick(&[false, true]);
            assert_eq!(a.record_history(true, max_entries, when, recorder, clear), Ok(()));
            assert!(a.history_enabled());
            let kept = if clear { 0 } else { length.min(max_entries) };
            assert_eq!(a.traces().len(), kept, "entries kept when history is turned on");
            // The marker of this epoch.
            let (marker, size) = model.history.turned_on(max_entries);
            a.record_external_register(marker, size);
            let last = a.traces().last().map(|entry| (entry.action, entry.address));
            assert_eq!(last, Some((Action::Alloc, marker)), "an external registration recorded");
        }
        2 => {
            report.hostile += 1;
            let enabled = a.history_enabled();
            let refused = a.record_history(true, 0, RecordContext::All, Some(model.recorder.clone()), true);
            assert_eq!(refused, Err(Error::NoHistoryRoom));
            assert_eq!(
                (a.history_enabled(), a.traces().len()),
                (enabled, length),
                "a refused record_history changed it"
            );
        }
        3 => {
            let clear = bytes.pick(&[false, true]);
            assert_eq!(a.record_history(false, bytes.pick(&[0, 5]), RecordContext::Never, None, clear), Ok(()));
            assert!(!a.history_enabled());
            assert_eq!(a.traces().len(), if clear { 0 } else { length }, "entries kept when history is turned off");
            model.history.turned_off();
        }
        4 => {
            let address = bytes.pick(&[0x200, 0x400, 0x600]);
            let size = 1 + bytes.byte() as usize;
            a.record_external_register(address, size);
            let traces = a.traces();
            if model.history.registered(address, size) {
                let last = traces.last().map(|entry| (entry.action, entry.address, entry.size));
                assert_eq!(last, Some((Action::Alloc, address, size)), "an external registration recorded");
            } else {
                assert_eq!(traces.len(), length, "an external registration recorded with history off");
            }
        }
        _ => {
            let address = bytes.pick(&[0x200, 0x400, 0x600, 0x800]);
            a.record_external_unregister(address);
            let traces = a.traces();
            match model.history.external.remove(&address) {
                Some(size) => {
                    let last: Vec<_> = traces.iter().rev().take(3).map(|e| (e.action, e.address, e.size)).collect();
                    let expected = [
                        (Action::SegmentFree, address, size),
                        (Action::FreeCompleted, address, size),
                        (Action::FreeRequested, address, size),
                    ];
                    assert_eq!(last, expected[..last.len()], "an external unregistration recorded");
                }
                None => assert_eq!(traces.len(), length, "an unknown address unregistered was recorded"),
            }
        }
    }
}

/// Per address, where its steps have led (`Unknown` before the first seen).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Unknown,
    /// Memory held, not handed out.
    Free,
    Allocated,
    FreeRequested,
    Gone,
}

/// The ring's bound and order, and its entries against the model's allocations.
fn check_history(a: &CachingAllocator<FakeBackend>, model: &Model, report: &mut Report) {
    let traces: Vec<TraceEntry> = a.traces();
    assert!(
        traces.len() <= model.history.max_entries,
        "the ring holds {} entries, more than its {}",
        traces.len(),
        model.history.max_entries
    );
    assert!(traces.windows(2).all(|pair| pair[0].time_us <= pair[1].time_us + 1_000_000), "entries out of time order");
    let start = model.history.marker.and_then(|marker| traces.iter().position(|e| e.address == marker)).unwrap_or(0);
    let mut steps: HashMap<usize, Step> = HashMap::new();
    for entry in &traces[start..] {
        report.history_entries += 1;
        if entry.address < FIRST_ADDRESS {
            continue;
        }
        if entry.action == Action::Alloc {
            assert!(
                model.handed.contains(&(entry.address, entry.size)),
                "an alloc entry at {:#x} of {} bytes matches no allocation",
                entry.address,
                entry.size
            );
        }
        let step = steps.entry(entry.address).or_insert(Step::Unknown);
        *step = match (*step, entry.action) {
            (Step::Unknown, Action::SegmentAlloc) => Step::Free,
            (Step::Unknown | Step::Free, Action::Alloc) => Step::Allocated,
            (Step::Unknown | Step::Allocated, Action::FreeRequested) => Step::FreeRequested,
            (Step::Unknown | Step::FreeRequested, Action::FreeCompleted) => Step::Free,
            (Step::Unknown | Step::Free, Action::SegmentFree) => Step::Gone,
            (step, action) => panic!("history: {action:?} at {:#x} after {step:?}", entry.address),
        };
    }
}

/// `segments()` against the backend's memory and the model's blocks.
fn check_segments(a: &CachingAllocator<FakeBackend>, model: &Model) {
    let segments = a.segments();
    let memory = a.backend().memory();
    let live: HashMap<usize, &LiveBlock> = model.live.values().map(|b| (b.address, b)).collect();
    let mut listed = HashSet::new();
    let mut external = 0;
    for segment in &segments {
        let address = segment.address;
        if address < FIRST_ADDRESS {
            external += 1;
            assert_eq!(model.history.external.get(&address), Some(&segment.size), "external segment {address:#x}");
            assert!(segment.allocated && segment.active && segment.pool == PoolId::DEFAULT);
            continue;
        }
        assert!(listed.insert(address), "segment {address:#x} listed twice");
        let block = live.get(&address);
        assert_eq!(segment.allocated, block.is_some(), "segment {address:#x} allocated");
        let freed = model.freed.get(&address).filter(|_| block.is_none());
        let retired = model.retired.contains_key(&address);
        let expected_pool = match (block, freed) {
            (Some(block), _) => model.pool_id(block.home),
            (_, Some(FreedBlock { place: Place::Pool { instance, .. } | Place::Held { instance }, .. })) => {
                model.pools.id(*instance).expect("a pool holding blocks is alive")
            }
            _ => model.retired_home.get(&address).map_or(PoolId::DEFAULT, |&home| model.pool_id(home)),
        };
        assert_eq!(segment.pool, expected_pool, "the pool of segment {address:#x}");
        let held = freed.is_some_and(|freed| matches!(freed.place, Place::Held { .. }));
        if block.is_some() || retired || held {
            assert!(segment.active, "segment {address:#x} in use, kept or retired is active");
        }
        if freed.is_some_and(|freed| matches!(freed.place, Place::Pool { waiting: false, .. })) {
            assert!(!segment.active, "a pool's free block {address:#x} is not active");
        }
        if model.split {
            let within =
                memory.iter().any(|(&base, &length)| base <= address && address + segment.size <= base + length);
            assert!(within, "segment {address:#x} is not within memory from the backend");
        } else {
            assert_eq!(memory.get(&address), Some(&segment.size), "segment {address:#x} is the backend's memory");
        }
    }
    assert_eq!(external, model.history.external.len(), "external registrations listed");
    let free_in_default_pool: usize = segments
        .iter()
        .filter(|segment| segment.address >= FIRST_ADDRESS && !segment.active && segment.pool == PoolId::DEFAULT)
        .map(|segment| segment.size)
        .sum();
    assert_eq!(
        a.stats().cached_bytes.current,
        free_in_default_pool as i64,
        "cached bytes are the default pool's free blocks"
    );
    if !model.split {
        assert_eq!(listed.len(), memory.len(), "segments list every piece of memory the backend holds");
    }
    assert!(live.keys().all(|address| listed.contains(address)), "a live block is not listed");
}

/// After the cache was emptied: nothing is cached (a private pool's free
/// blocks are the pool's, not the cache's).
fn check_nothing_cached(a: &CachingAllocator<FakeBackend>, what: &str) {
    let cached = a.stats().cached_bytes.current;
    assert_eq!(cached, 0, "{what}: {cached} bytes cached");
}

/// The statistics agree with the model's and the backend's books.
fn check_books(a: &CachingAllocator<FakeBackend>, model: &Model, cap: usize) {
    let stats = a.stats();
    let cached: usize = a.class_stats().iter().map(|class| class.cached).sum();
    assert_eq!(stats.active_requests.current, model.live.len() as i64);
    assert_eq!(stats.active_bytes.current, model.live.values().map(|b| b.size as i64).sum::<i64>());
    assert_eq!(stats.requested_bytes.current, model.live.values().map(|b| b.requested as i64).sum::<i64>());
    assert_eq!(stats.allocations.current, a.backend().memory().len() as i64);
    assert_eq!(stats.allocated_bytes.current, a.backend().live_bytes() as i64);
    assert_eq!(stats.retired_blocks, model.retired.len() as i64, "retired blocks");
    let held = model.pools.held();
    assert_eq!(stats.captured_blocks, held as i64, "captured blocks kept for their pools");
    assert_eq!(a.backend().records_failing(), model.failing_records > 0, "injected record failures left");
    assert_eq!(model.filter_drops.load(Ordering::SeqCst), model.expected_drops, "filters dropped");
    // A private pool's free blocks are neither in cached bytes nor in the
    // default pool's lists; blocks freed after use may have reached them.
    let (known, maybe) = model.pool_free_blocks();
    let blocks = stats.active_requests.current
        + stats.pending_blocks.current
        + cached as i64
        + model.retired.len() as i64
        + held as i64;
    {
        let memory = a.backend().memory();
        for (&address, freed) in &model.freed {
            if matches!(freed.place, Place::Pool { waiting: false, .. } | Place::Held { .. }) {
                assert!(memory.contains_key(&address), "block {address:#x} of a pool went back before its release");
            }
        }
    }
    if model.split {
        // Parts of one piece of backend memory are blocks of their own.
        assert!(
            stats.allocations.current <= blocks + (known + maybe) as i64,
            "every piece of memory held has a block live, pending, cached, kept or retired"
        );
        assert!(stats.cached_bytes.current >= 0);
    } else {
        let in_pools = stats.allocations.current - blocks;
        assert!(
            known as i64 <= in_pools && in_pools <= (known + maybe) as i64,
            "every block held is live, pending, cached, kept or retired ({in_pools} in pools' lists, {known} known)"
        );
        assert!(stats.cached_bytes.current as u64 <= cap as u64, "cache over its cap");
    }
    assert!(stats.pending_blocks.current as usize <= model.freed.len());
    assert!(stats.cache_hits + stats.cache_misses >= stats.active_requests.allocated);
    for stat in [stats.allocations, stats.active_requests, stats.active_bytes, stats.cached_bytes, stats.pending_blocks]
    {
        assert!(stat.current >= 0 && stat.peak >= stat.current, "{stat:?}");
    }
}
