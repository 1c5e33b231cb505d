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

use std::collections::{HashMap, HashSet};

use crate::bytes::Bytes;
use crate::fake_backend::FakeBackend;
use xpu_caching_host_allocator::caching::size_class::{Rounding, SizeClass};
use xpu_caching_host_allocator::caching::{size_class, CachingAllocator, Error, Fit, Settings, StreamKey};

/// The core splits requests from this size up, and parts no smaller.
const SPLIT_MIN: usize = 1 << 20;
/// With exact fit, a reused block exceeds its request's aligned size by at
/// most this fraction of it, when the budget allows (the core's `REUSE_DIVISOR`).
const REUSE_DIVISOR: usize = 8;

struct LiveBlock {
    address: usize,
    size: usize,
    requested: usize,
    streams: HashSet<StreamKey>,
}

/// What the model knows.
#[derive(Default)]
struct Model {
    /// Blocks handed out, by context.
    live: HashMap<usize, LiveBlock>,
    /// Freed blocks (address, size): before memory of one is handed out again,
    /// each stream must have completed this much work.
    freed: HashMap<usize, (usize, Vec<(StreamKey, u64)>)>,
    split: bool,
    retired: HashMap<usize, usize>,
    /// Every context ever handed out (headers of the arena).
    contexts: Vec<usize>,
    refused_allocations: i64,
}

/// Counts of what one run did, for reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct Report {
    pub operations: u64,
    pub hostile: u64,
    pub faults: u64,
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
    let mut model = Model { split, ..Model::default() };
    let mut report = Report::default();
    let trace = std::env::var_os("XPU_HOST_MODEL_TRACE").is_some();
    if trace {
        eprintln!("model: {fit:?} fit, divisions {divisions} threshold {threshold:#x} cap {cap:#x} limit {limit:#x}");
    }

    while !bytes.is_empty() && report.operations < 2000 {
        report.operations += 1;
        let operation = bytes.byte() % 12;
        if trace {
            eprintln!("model: operation {operation}, {} bytes left, stats {}", bytes.0.len(), a.stats());
        }
        match operation {
            0..=2 => {
                let mut size = bytes.pick(&SIZES);
                if size == 0 && bytes.byte() % 2 == 0 {
                    size = (bytes.u32() % (4 << 20)) as usize;
                }
                allocate(&a, &mut model, &rounding, size, &mut report);
            }
            3 | 4 => {
                let context = choose_context(&mut bytes, &model, &mut report);
                free(&a, &mut model, context);
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
                    assert_eq!(a.stats().cached_bytes.current, 0, "empty_cache left blocks cached");
                }
            }
            9 => a.poll_pending(),
            10 => {
                match bytes.byte() % 3 {
                    0 => a.backend().inject_out_of_memory(1 + u32::from(bytes.byte() % 2)),
                    1 => a.backend().inject_allocation_failures(1),
                    _ => a.backend().inject_record_failures(1),
                }
                report.faults += 1;
            }
            _ => {
                if bytes.byte() % 2 == 0 {
                    a.reset_peak_stats();
                } else {
                    a.reset_accumulated_stats();
                    model.refused_allocations = 0;
                }
            }
        }
        check_books(&a, &model, cap);
    }

    // The end: every stream completes, every block is freed, the cache emptied.
    a.backend().settle();
    let contexts: Vec<usize> = model.live.keys().copied().collect();
    for context in contexts {
        free(&a, &mut model, context);
    }
    assert_eq!(a.empty_cache(), Ok(()));
    check_books(&a, &model, cap);
    let stats = a.stats();
    assert_eq!((stats.active_requests.current, stats.pending_blocks.current), (0, 0));
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
                assert_eq!(a.stats().cached_bytes.current, 0, "out of memory without emptying the cache");
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
    // A split-off block is carved at its class size; a block too small to split is handed out whole.
    let slack = if rounding.exact { class.size / REUSE_DIVISOR } else { 0 };
    let fits = size_class::fits(allocation.size, size, &SizeClass { step: class.step + slack, ..class })
        || (model.split && allocation.size >= size && allocation.size - size < class.step + SPLIT_MIN);
    assert!(fits, "block of {} bytes for a request of {size}", allocation.size);
    assert_eq!(allocation.address % 512, 0);
    assert!(!model.live.contains_key(&allocation.context), "a context handed out twice");
    let (start, end) = (allocation.address, allocation.address + allocation.size);
    let overlaps = |address: usize, size: usize| address < end && start < address + size;
    assert!(!model.live.values().any(|b| overlaps(b.address, b.size)), "memory handed out twice");
    assert!(!model.retired.iter().any(|(&address, &size)| overlaps(address, size)), "a retired block handed out again");
    {
        let memory = a.backend().memory();
        if model.split {
            let within = memory.iter().any(|(&base, &length)| base <= start && end <= base + length);
            assert!(within, "{start:#x}..{end:#x} is not within memory from the backend");
        } else {
            assert_eq!(memory.get(&allocation.address), Some(&allocation.size), "not backend memory of that size");
        }
        for (&address, (freed_size, requirements)) in &model.freed {
            if !overlaps(address, *freed_size) {
                continue;
            }
            for &(stream, submitted) in requirements {
                let (_, completed) = a.backend().work(stream);
                assert!(
                    completed >= submitted,
                    "memory of block {address:#x} handed out again while stream {stream:?} has completed {completed} \
                     of the {submitted} works submitted before its free"
                );
            }
        }
    }
    model.freed.remove(&allocation.address);
    if !model.contexts.contains(&allocation.context) {
        model.contexts.push(allocation.context);
    }
    model.live.insert(
        allocation.context,
        LiveBlock { address: allocation.address, size: allocation.size, requested: size, streams: HashSet::new() },
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

fn free(a: &CachingAllocator<FakeBackend>, model: &mut Model, context: usize) {
    let records_failing = a.backend().records_failing();
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
    match result {
        Ok(()) => {
            let requirements = block.streams.iter().map(|&s| (s, a.backend().work(s).0)).collect();
            model.freed.insert(block.address, (block.size, requirements));
        }
        Err(Error::Backend(message)) => {
            assert!(records_failing && !block.streams.is_empty(), "free failed: {message}");
            assert!(message.contains("retired"), "{message}");
            model.retired.insert(block.address, block.size);
        }
        Err(other) => panic!("free of a live block: {other:?}"),
    }
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
        model.live.get_mut(&target).unwrap().streams.insert(stream);
    }
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
    let blocks =
        stats.active_requests.current + stats.pending_blocks.current + cached as i64 + model.retired.len() as i64;
    if model.split {
        // Parts of one piece of backend memory are blocks of their own.
        assert!(
            stats.allocations.current <= blocks,
            "every piece of memory held has a block live, pending, cached or retired"
        );
        assert!(stats.cached_bytes.current >= 0);
    } else {
        assert_eq!(stats.allocations.current, blocks, "every block held is live, pending, cached or retired");
        assert!(
            stats.cached_bytes.current >= 0 && stats.cached_bytes.current as u64 <= cap as u64,
            "cache over its cap"
        );
    }
    assert!(stats.pending_blocks.current as usize <= model.freed.len());
    assert!(stats.cache_hits + stats.cache_misses >= stats.active_requests.allocated);
    for stat in [stats.allocations, stats.active_requests, stats.active_bytes, stats.cached_bytes, stats.pending_blocks]
    {
        assert!(stat.current >= 0 && stat.peak >= stat.current, "{stat:?}");
    }
}
