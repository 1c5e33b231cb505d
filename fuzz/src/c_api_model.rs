//! The C API through the software Level Zero driver (ZE_ENABLE_ALT_DRIVERS set
//! before the process starts), driven by a sequence of calls decoded from
//! bytes and checked against what each call must return: exact error codes for
//! hostile sizes, null, foreign, stale and double-freed contexts, streams on
//! devices that do not exist, small and null buffers; `recorded` exactly when
//! the context or base address names a live block; statistics that count the
//! live blocks. The allocator is the process's one: each sequence ends by
//! freeing what it holds and draining the cache, and must leave nothing held
//! but the blocks retired on purpose.
//!
//! Graph capture through `xpu_host_set_capture_hooks` (extern "C" hooks that
//! read this thread's current stream and capturing streams),
//! `xpu_host_begin_allocate_to_pool` with C filters accepting one stream or
//! none (every stream), `xpu_host_end_allocate_to_pool` and
//! `xpu_host_release_pool`: an allocation routed to a pool is new memory
//! (`num_host_alloc` went up) or one of that pool's free blocks, never another
//! pool's nor the default pool's; one routed to the default pool is never a
//! pool's; a captured block freed after use gets no event (`pending_blocks`
//! does not move), is counted in `captured_blocks` and is never handed out
//! before its pool's last release; a filter's drop hook runs exactly once, at
//! the capture's end, and never for a refused begin; every bad call is its
//! code (`INVALID_ARGUMENT` for the default pool's id, null or half-filled
//! hooks and recorders, `NO_CAPTURE_HOOKS`, `POOL_BUSY`, `UNKNOWN_POOL`).
//! Memory history through `xpu_host_record_history`, `xpu_host_get_traces`,
//! `xpu_host_get_segments` and the external registrations: the ring's bound,
//! the entry of each allocation, the order of actions per address, segments
//! that list exactly the memory held with `allocated` exactly for live blocks
//! and the right pool, and every context gathered released once.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::{c_char, c_void};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::bytes::Bytes;
use crate::history_model::History;
use crate::pool_model::{pick, Ended, Home, HostState, Pools, PrivatePool, Release};
use xpu_caching_host_allocator::abi::c_api::*;
use xpu_caching_host_allocator::abi::capture_api::*;
use xpu_caching_host_allocator::abi::error::xpu_host_result::{self, *};
use xpu_caching_host_allocator::abi::history_api::xpu_host_trace_action::*;
use xpu_caching_host_allocator::abi::history_api::*;
use xpu_caching_host_allocator::caching::Stats;

/// A stream as a comparable key: (device type, device index, id).
type Key = (i8, i8, i64);
/// A pool id as a comparable key.
type Pool = (u64, u64);

fn key(stream: xpu_host_stream) -> Key {
    (stream.device_type, stream.device_index, stream.id)
}

fn stream_of((device_type, device_index, id): Key) -> xpu_host_stream {
    xpu_host_stream { device_type, device_index, id }
}

fn pool_id((first, second): Pool) -> xpu_host_pool_id {
    xpu_host_pool_id { first, second }
}

/// The streams the host makes current and captures (the driver has one device here).
const HOST_STREAMS: [Key; 3] = [(12, 0, 0), (12, 0, 1), (12, 0, 2)];
const POOLS: [Pool; 4] = [(0, 0), (1, 1), (1, 2), (2, 1)];
/// External registrations (below any memory the driver hands out).
const EXTERNAL: [usize; 3] = [0x200, 0x400, 0x600];
/// Addresses below this are external registrations.
const EXTERNAL_END: usize = 0x10_0000;
/// Blocks the process's allocator may retire on purpose (see operation 11).
const MAX_RETIRED: i64 = 16;

thread_local! {
    /// The host runtime on this thread.
    static HOST: RefCell<HostState<Key>> =
        const { RefCell::new(HostState { current: Some(HOST_STREAMS[0]), capturing: Vec::new() }) };
}

unsafe extern "C" fn current_stream(_: *mut c_void, stream: *mut xpu_host_stream) -> bool {
    match HOST.with(|host| host.borrow().current) {
        Some(current) => {
            // SAFETY: the library passes a valid out-pointer.
            unsafe { *stream = stream_of(current) };
            true
        }
        None => false,
    }
}

unsafe extern "C" fn is_capturing(_: *mut c_void, stream: xpu_host_stream) -> bool {
    HOST.with(|host| host.borrow().capturing.contains(&key(stream)))
}

/// Whether this process set the capture hooks (they stay set for good).
static HOOKS_SET: AtomicBool = AtomicBool::new(false);

/// A filter's user data: the one stream it accepts.
struct FilterData {
    accepted: Key,
}

/// Drops of filters' user data, by the library.
static DROPS: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn accept_one(user_data: *mut c_void, stream: xpu_host_stream) -> bool {
    // SAFETY: the FilterData handed over with the filter, alive until its drop.
    key(stream) == unsafe { &*(user_data as *const FilterData) }.accepted
}

unsafe extern "C" fn drop_filter(user_data: *mut c_void) {
    // SAFETY: the Box handed over with the filter, dropped once.
    drop(unsafe { Box::from_raw(user_data as *mut FilterData) });
    DROPS.fetch_add(1, Ordering::SeqCst);
}

/// Contexts the recorder made and those the library gave back.
static GATHERED: AtomicUsize = AtomicUsize::new(0);
static RELEASED: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn gather(_: *mut c_void) -> *mut c_void {
    (GATHERED.fetch_add(1, Ordering::SeqCst) + 1) as *mut c_void
}

unsafe extern "C" fn release_context(_: *mut c_void, context: *mut c_void) {
    assert!(!context.is_null());
    RELEASED.fetch_add(1, Ordering::SeqCst);
}

#[derive(Clone)]
struct Live {
    data: usize,
    context: usize,
    streams: Vec<Key>,
    home: Home,
    captured: bool,
}

#[derive(Default)]
struct Model {
    live: Vec<Live>,
    /// Contexts handed out before: a free of one not live now is a double free.
    known: Vec<usize>,
    /// The context of the last allocation.
    newest: Option<usize>,
    /// Blocks held are known by their data.
    pools: Pools<Pool, Key, usize>,
    /// Blocks freed in a private pool (data → instance, freed after use): in
    /// its list, or on their way there once their events complete.
    pool_free: HashMap<usize, (u64, bool)>,
    /// Captured blocks freed after use, kept for their pool (data → instance).
    held: HashMap<usize, u64>,
    /// Blocks retired in this sequence (captured in the default pool, used, freed).
    retired: i64,
    /// `retired_blocks` when the sequence began.
    retired_before: i64,
    /// `DROPS` when the sequence began, and the drops the model expects since.
    drops_before: usize,
    expected_drops: usize,
    history: History,
    /// Every block address handed out in this sequence.
    handed: HashSet<usize>,
}

impl Model {
    /// The pool (id, instance) an allocation made now goes to, and whether its stream is captured.
    fn route(&self) -> (Option<(Pool, u64)>, bool, Option<Key>) {
        if self.pools.captures().is_empty() {
            return (None, false, None);
        }
        let (current, capturing) = HOST.with(|host| {
            let host = host.borrow();
            (host.current, host.current.is_some_and(|current| host.capturing.contains(&current)))
        });
        let Some(current) = current else { return (None, false, None) };
        (self.pools.route(current), capturing, Some(current))
    }
}

/// Counts of what the sequences did, for reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct Report {
    pub calls: u64,
    /// Calls refused on purpose (bad pool calls, hooks, recorders).
    pub hostile: u64,
    pub captures: u64,
    pub pooled: u64,
    pub held: u64,
    pub history_entries: u64,
}

const SIZES: [usize; 12] =
    [0, 1, 8, 511, 4096, 4097, 100_000, 1 << 20, usize::MAX, usize::MAX / 2 + 2, usize::MAX / 2 + 1, usize::MAX - 511];

fn stream(bytes: &mut Bytes) -> xpu_host_stream {
    // Few stream ids: each distinct one gets a command list (and a driver thread) for good.
    let device_index = bytes.pick(&[0i8, 0, 0, 1, -1, i8::MAX]);
    xpu_host_stream { device_type: 12, device_index, id: bytes.pick(&[0i64, 1, 2, 3]) }
}

fn context_for(bytes: &mut Bytes, model: &Model, stack: &u64) -> usize {
    let index = bytes.byte() as usize;
    match bytes.byte() % 6 {
        0..=2 if !model.live.is_empty() => model.live[index % model.live.len()].context,
        3 if !model.known.is_empty() => model.known[index % model.known.len()],
        4 if !model.live.is_empty() => model.live[index % model.live.len()].context + 1 + index % 7,
        _ => [0, 1, usize::MAX, stack as *const u64 as usize, 0x1000][index % 5],
    }
}

fn allocate(model: &mut Model, size: usize, report: &mut Report) {
    let (pool, captured, current) = model.route();
    let before = stats();
    let (mut data, mut context) = (1 as *mut c_void, 1 as *mut c_void);
    // SAFETY: valid out-pointers.
    let result = unsafe { xpu_host_allocate(size, &mut data, &mut context) };
    // Exact fit (the default) takes any size whose block is at most `isize::MAX`.
    let expected: &[xpu_host_result] = match size {
        0x7fff_ffff_ffff_fe01..=usize::MAX => &[XPU_HOST_ERROR_SIZE_TOO_LARGE],
        _ => &[XPU_HOST_SUCCESS],
    };
    assert!(expected.contains(&result), "allocate({size}) returned {result:?}");
    if result != XPU_HOST_SUCCESS {
        assert_eq!((data as usize, context as usize), (1, 1), "a failed allocation wrote its outputs");
        return;
    }
    if size == 0 {
        assert!(data.is_null() && context.is_null());
        return;
    }
    let (data, context) = (data as usize, context as usize);
    assert_eq!(data % 512, 0);
    assert!(model.live.iter().all(|b| b.data != data && b.context != context), "a live block handed out again");
    assert!(!model.held.contains_key(&data), "a captured block used and freed handed out before its pool's release");
    let new_memory = stats().num_host_alloc > before.num_host_alloc;
    let in_pool = model.pool_free.get(&data).map(|&(instance, _)| instance);
    match pool {
        Some((id, instance)) => {
            assert!(
                new_memory || in_pool == Some(instance),
                "pool {id:?} handed out {data:#x}, neither new memory nor one of its free blocks"
            );
            report.pooled += 1;
        }
        None => assert!(in_pool.is_none(), "the default pool handed out {data:#x}, a block of a private pool"),
    }
    model.pool_free.remove(&data);
    // SAFETY: a live block of at least `size` bytes.
    unsafe {
        *(data as *mut u8) = 0xa5;
        *((data + size - 1) as *mut u8) = 0x5a;
    }
    if model.history.enabled {
        let traces = traces();
        let last = traces.last().expect("an allocation is recorded");
        let expected_pool = pool.map_or((0, 0), |(id, _)| id);
        let expected_stream = current.unwrap_or((-1, -1, 0));
        assert_eq!(
            (last.action, last.address, last.pool, last.stream),
            (XPU_HOST_TRACE_ALLOC as i32, data, expected_pool, expected_stream),
            "the allocation's trace entry"
        );
        assert!(last.bytes >= size, "an entry of {} bytes for {size}", last.bytes);
        if model.history.max_entries >= 2 {
            let before = traces.len() >= 2 && {
                let before = &traces[traces.len() - 2];
                (before.action, before.address) == (XPU_HOST_TRACE_SEGMENT_ALLOC as i32, data)
            };
            assert_eq!(before, new_memory, "a segment alloc entry exactly for new memory at {data:#x}");
        }
    }
    let home = pool.map_or(Home::Default, |(_, instance)| Home::Pool(instance));
    model.live.push(Live { data, context, streams: Vec::new(), home, captured });
    model.newest = Some(context);
    model.handed.insert(data);
    if !model.known.contains(&context) {
        model.known.push(context);
    }
}

fn free(model: &mut Model, context: usize, report: &mut Report) {
    let before = stats();
    let result = xpu_host_free(context as *mut c_void);
    let expected = if context == 0 {
        XPU_HOST_SUCCESS
    } else if let Some(position) = model.live.iter().position(|b| b.context == context) {
        let block = model.live.swap_remove(position);
        freed(model, block, &before, report);
        XPU_HOST_SUCCESS
    } else if model.known.contains(&context) {
        XPU_HOST_ERROR_NOT_ALLOCATED
    } else {
        XPU_HOST_ERROR_UNKNOWN_BLOCK
    };
    assert_eq!(result, expected, "free({context:#x})");
}

/// Where a block freed (with the statistics before the free) went.
fn freed(model: &mut Model, block: Live, before: &Stats, report: &mut Report) {
    let pool = model.pools.alive_pool(block.home);
    let after = stats();
    if block.streams.is_empty() {
        if let Some(instance) = pool {
            model.pool_free.insert(block.data, (instance, false));
        }
        return;
    }
    if block.captured && (pool.is_some() || block.home == Home::Default) {
        assert_eq!(
            after.pending_blocks.allocated, before.pending_blocks.allocated,
            "a block allocated during capture waits for an event"
        );
        match pool {
            Some(instance) => {
                assert_eq!(after.captured_blocks, before.captured_blocks + 1, "a captured block kept for its pool");
                model.held.insert(block.data, instance);
                model.pools.hold(instance, block.data);
                report.held += 1;
            }
            None => {
                assert_eq!(
                    after.retired_blocks,
                    before.retired_blocks + 1,
                    "a captured block of the default pool retired"
                );
                model.retired += 1;
            }
        }
        return;
    }
    if let Some(instance) = pool {
        model.pool_free.insert(block.data, (instance, true));
    }
}

fn record(model: &mut Model, data: usize, context: usize, stream: xpu_host_stream) {
    let mut recorded = false;
    // SAFETY: `recorded` is a valid local; data and context are only compared.
    let result = unsafe { xpu_host_record_stream(data as *mut c_void, context as *mut c_void, stream, &mut recorded) };
    if !(0..1).contains(&stream.device_index) {
        assert_eq!(result, XPU_HOST_ERROR_LEVEL_ZERO, "a stream on device {} was accepted", stream.device_index);
        return;
    }
    let target =
        model.live.iter().position(|b| b.context == context).or_else(|| model.live.iter().position(|b| b.data == data));
    assert_eq!((result, recorded), (XPU_HOST_SUCCESS, target.is_some()), "record({data:#x}, {context:#x})");
    if let Some(target) = target {
        let streams = &mut model.live[target].streams;
        if !streams.contains(&key(stream)) {
            streams.push(key(stream));
        }
    }
}

unsafe extern "C" fn fill(
    data: *mut c_void,
    list: level_zero_sys::ze_command_list_handle_t,
) -> level_zero_sys::ze_result_t {
    let pattern = 0xd00d_u16;
    // SAFETY: a live block of at least 8 bytes; the pattern is copied at the append.
    unsafe {
        level_zero_sys::zeCommandListAppendMemoryFill(
            list,
            data,
            (&raw const pattern).cast(),
            2,
            8,
            null_mut(),
            0,
            null_mut(),
        )
    }
}

fn stats() -> Stats {
    let mut stats = xpu_host_stats { size: std::mem::size_of::<xpu_host_stats>(), ..Default::default() };
    // SAFETY: a valid local.
    assert_eq!(unsafe { xpu_host_get_stats(&mut stats) }, XPU_HOST_SUCCESS);
    stats.counters
}

/// What a refused call must leave as it was.
fn books() -> (i64, i64, i64, i64, i64, i64, i64) {
    let s = stats();
    (
        s.allocations.current,
        s.active_requests.current,
        s.cached_bytes.current,
        s.pending_blocks.current,
        s.captured_blocks,
        s.num_host_alloc,
        s.num_host_free,
    )
}

fn begin(model: &mut Model, id: Pool, filter: Option<Key>, mark: Option<Key>, report: &mut Report) {
    let user_data = filter.map_or(null_mut(), |accepted| Box::into_raw(Box::new(FilterData { accepted })));
    let (function, drop_hook) = match filter {
        Some(_) => {
            (Some(accept_one as unsafe extern "C" fn(*mut c_void, xpu_host_stream) -> bool), Some(drop_filter as _))
        }
        None => (None, None),
    };
    let before = books();
    let drops = DROPS.load(Ordering::SeqCst);
    // SAFETY: the filter and drop hook are valid for their user data, a live Box.
    let result = unsafe { xpu_host_begin_allocate_to_pool(pool_id(id), function, user_data.cast(), drop_hook) };
    let expected = if id == (0, 0) {
        XPU_HOST_ERROR_INVALID_ARGUMENT
    } else if !HOOKS_SET.load(Ordering::SeqCst) {
        XPU_HOST_ERROR_NO_CAPTURE_HOOKS
    } else if model.pools.capturing(id) {
        XPU_HOST_ERROR_POOL_BUSY
    } else {
        XPU_HOST_SUCCESS
    };
    assert_eq!(result, expected, "begin_allocate_to_pool({id:?})");
    assert_eq!(DROPS.load(Ordering::SeqCst), drops, "a filter's drop hook ran at its begin");
    if result != XPU_HOST_SUCCESS {
        report.hostile += 1;
        assert_eq!(books(), before, "a refused begin changed the books");
        if !user_data.is_null() {
            // Refused: the user data is still ours.
            // SAFETY: the Box made above, which the library did not take.
            drop(unsafe { Box::from_raw(user_data) });
        }
        return;
    }
    report.captures += 1;
    model.pools.begin(id, filter, mark);
    if let Some(stream) = mark {
        HOST.with(|host| host.borrow_mut().capturing.push(stream));
    }
}

fn end(model: &mut Model, id: Pool, report: &mut Report) {
    let before = books();
    let drops = DROPS.load(Ordering::SeqCst);
    let result = xpu_host_end_allocate_to_pool(pool_id(id));
    let Some(Ended { capture, gone }) = model.pools.end(id) else {
        report.hostile += 1;
        assert_eq!(result, XPU_HOST_ERROR_UNKNOWN_POOL, "end without begin");
        assert_eq!(books(), before, "an end without begin changed the books");
        assert_eq!(DROPS.load(Ordering::SeqCst), drops);
        return;
    };
    assert_eq!(result, XPU_HOST_SUCCESS, "end_allocate_to_pool({id:?})");
    let dropped = usize::from(capture.filter.is_some());
    model.expected_drops += dropped;
    assert_eq!(DROPS.load(Ordering::SeqCst), drops + dropped, "the filter's drop hook runs once, at the end");
    if let Some(stream) = capture.marked {
        HOST.with(|host| host.borrow_mut().unmark(stream));
    }
    if let Some(pool) = gone {
        drain(model, pool, &before);
    }
}

fn release(model: &mut Model, id: Pool, report: &mut Report) {
    let before = books();
    let result = xpu_host_release_pool(pool_id(id));
    match model.pools.release(id) {
        Release::Kept => {
            assert_eq!(result, XPU_HOST_SUCCESS, "release_pool({id:?})");
            assert_eq!(books(), before, "a release that is not the last changed the books");
        }
        Release::Last(pool) => {
            assert_eq!(result, XPU_HOST_SUCCESS, "release_pool({id:?})");
            drain(model, pool, &before);
        }
        Release::Refused => {
            report.hostile += 1;
            assert_eq!(result, XPU_HOST_ERROR_UNKNOWN_POOL, "release of pool {id:?}, unknown or released");
            assert_eq!(books(), before, "a release of an unknown pool changed the books");
        }
    }
}

/// A pool's last release: its free blocks went back to the driver, its kept
/// blocks wait for events recorded now and join the default pool.
fn drain(model: &mut Model, pool: PrivatePool<usize>, before: &(i64, i64, i64, i64, i64, i64, i64)) {
    let unused = model.pool_free.values().filter(|&&(instance, waiting)| instance == pool.instance && !waiting).count();
    model.pool_free.retain(|_, &mut (instance, _)| instance != pool.instance);
    for data in &pool.held {
        model.held.remove(data);
    }
    let after = stats();
    assert!(after.num_host_free - before.6 >= unused as i64, "a released pool's free blocks went back to the driver");
    assert_eq!(after.captured_blocks, before.4 - pool.held.len() as i64, "a released pool's kept blocks");
}

/// A trace entry, as the visitor copies it.
struct Entry {
    action: i32,
    address: usize,
    bytes: usize,
    pool: Pool,
    stream: Key,
}

unsafe extern "C" fn collect_trace(user_data: *mut c_void, entry: *const xpu_host_trace_entry) -> bool {
    // SAFETY: the Vec passed by `traces`, and an entry valid during the visit.
    let (entries, entry) = unsafe { (&mut *(user_data as *mut Vec<Entry>), &*entry) };
    entries.push(Entry {
        action: entry.action as i32,
        address: entry.address,
        bytes: entry.bytes,
        pool: (entry.pool.first, entry.pool.second),
        stream: key(entry.stream),
    });
    true
}

fn traces() -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    // SAFETY: the visitor matches the type and takes the Vec as its user data.
    let result = unsafe { xpu_host_get_traces(Some(collect_trace), (&raw mut entries).cast()) };
    assert_eq!(result, XPU_HOST_SUCCESS);
    entries
}

/// A segment, as the visitor copies it.
struct Listed {
    address: usize,
    bytes: usize,
    allocated: bool,
    active: bool,
    pool: Pool,
}

unsafe extern "C" fn collect_segment(user_data: *mut c_void, segment: *const xpu_host_segment) -> bool {
    // SAFETY: the Vec passed by `segments`, and a segment valid during the visit.
    let (segments, segment) = unsafe { (&mut *(user_data as *mut Vec<Listed>), &*segment) };
    segments.push(Listed {
        address: segment.address,
        bytes: segment.bytes,
        allocated: segment.allocated,
        active: segment.active,
        pool: (segment.pool.first, segment.pool.second),
    });
    true
}

fn segments() -> Vec<Listed> {
    let mut listed: Vec<Listed> = Vec::new();
    // SAFETY: the visitor matches the type and takes the Vec as its user data.
    let result = unsafe { xpu_host_get_segments(Some(collect_segment), (&raw mut listed).cast()) };
    assert_eq!(result, XPU_HOST_SUCCESS);
    listed
}

fn recorder(complete: bool) -> xpu_host_history_recorder {
    xpu_host_history_recorder {
        size: std::mem::size_of::<xpu_host_history_recorder>(),
        user_data: null_mut(),
        gather: Some(gather),
        release: complete.then_some(release_context as unsafe extern "C" fn(*mut c_void, *mut c_void)),
    }
}

fn history(model: &mut Model, bytes: &mut Bytes, report: &mut Report) {
    use xpu_host_record_context::*;
    let length = traces().len();
    match bytes.byte() % 6 {
        0 | 1 => {
            let max_entries = bytes.pick(&[1, 2, 3, 5, 8, 64]);
            let when = bytes.pick(&[
                XPU_HOST_RECORD_CONTEXT_NEVER,
                XPU_HOST_RECORD_CONTEXT_STATE,
                XPU_HOST_RECORD_CONTEXT_ALLOC,
                XPU_HOST_RECORD_CONTEXT_ALL,
            ]);
            let clear = bytes.pick(&[false, true]);
            let with = recorder(true);
            let pointer = if bytes.byte() % 3 == 0 { std::ptr::null() } else { &raw const with };
            // SAFETY: null or a filled recorder.
            assert_eq!(
                unsafe { xpu_host_record_history(true, max_entries, when as u32, pointer, clear) },
                XPU_HOST_SUCCESS
            );
            assert!(xpu_host_history_enabled());
            let kept = if clear { 0 } else { length.min(max_entries) };
            assert_eq!(traces().len(), kept, "entries kept when history is turned on");
            let (marker, size) = model.history.turned_on(max_entries);
            assert_eq!(xpu_host_record_external_register(marker as *mut c_void, size), XPU_HOST_SUCCESS);
            let last = traces().last().map(|entry| (entry.action, entry.address));
            assert_eq!(last, Some((XPU_HOST_TRACE_ALLOC as i32, marker)), "an external registration recorded");
        }
        2 => {
            // Refused: no room, a half-filled recorder, no visitor, a null pointer.
            report.hostile += 6;
            let enabled = xpu_host_history_enabled();
            let with = recorder(true);
            let half = recorder(false);
            // SAFETY: filled recorders or null.
            unsafe {
                let refused = xpu_host_record_history(true, 0, XPU_HOST_RECORD_CONTEXT_ALL as u32, &with, true);
                assert_eq!(refused, XPU_HOST_ERROR_INVALID_ARGUMENT, "history with room for no entry");
                let refused = xpu_host_record_history(true, 4, XPU_HOST_RECORD_CONTEXT_ALL as u32, &half, true);
                assert_eq!(refused, XPU_HOST_ERROR_INVALID_ARGUMENT, "a recorder without its release");
                assert_eq!(xpu_host_get_traces(None, null_mut()), XPU_HOST_ERROR_INVALID_ARGUMENT);
                assert_eq!(xpu_host_get_segments(None, null_mut()), XPU_HOST_ERROR_INVALID_ARGUMENT);
            }
            assert_eq!(xpu_host_record_external_register(null_mut(), 8), XPU_HOST_ERROR_INVALID_ARGUMENT);
            assert_eq!(xpu_host_record_external_unregister(null_mut()), XPU_HOST_ERROR_INVALID_ARGUMENT);
            assert_eq!(
                (xpu_host_history_enabled(), traces().len()),
                (enabled, length),
                "a refused call changed history"
            );
        }
        3 => {
            let clear = bytes.pick(&[false, true]);
            // SAFETY: no recorder.
            let result = unsafe {
                xpu_host_record_history(false, 0, XPU_HOST_RECORD_CONTEXT_NEVER as u32, std::ptr::null(), clear)
            };
            assert_eq!(result, XPU_HOST_SUCCESS);
            assert!(!xpu_host_history_enabled());
            assert_eq!(traces().len(), if clear { 0 } else { length }, "entries kept when history is turned off");
            model.history.turned_off();
        }
        4 => {
            let address = bytes.pick(&EXTERNAL);
            let size = 1 + bytes.byte() as usize;
            assert_eq!(xpu_host_record_external_register(address as *mut c_void, size), XPU_HOST_SUCCESS);
            let traces = traces();
            if model.history.registered(address, size) {
                let last = traces.last().map(|entry| (entry.action, entry.address, entry.bytes));
                assert_eq!(last, Some((XPU_HOST_TRACE_ALLOC as i32, address, size)), "an external registration");
            } else {
                assert_eq!(traces.len(), length, "an external registration recorded with history off");
            }
        }
        _ => {
            let address = bytes.pick(&[0x200, 0x400, 0x600, 0x800]);
            assert_eq!(xpu_host_record_external_unregister(address as *mut c_void), XPU_HOST_SUCCESS);
            let traces = traces();
            match model.history.external.remove(&address) {
                Some(_) => {
                    let last = traces.last().map(|entry| (entry.action, entry.address));
                    assert_eq!(last, Some((XPU_HOST_TRACE_SEGMENT_FREE as i32, address)), "an unregistration");
                }
                None => assert_eq!(traces.len(), length, "an unknown address unregistered was recorded"),
            }
        }
    }
}

/// The ring's bound and the order of actions per address since history was last turned on.
fn check_history(model: &Model, report: &mut Report) {
    let traces = traces();
    assert!(traces.len() <= model.history.max_entries, "the ring holds more than its maximum");
    let start = model.history.marker.and_then(|marker| traces.iter().position(|e| e.address == marker)).unwrap_or(0);
    // 0 unknown, 1 free, 2 allocated, 3 free requested, 4 gone (the driver may hand the address out again).
    let mut steps: HashMap<usize, u8> = HashMap::new();
    for entry in &traces[start..] {
        report.history_entries += 1;
        if entry.address < EXTERNAL_END {
            continue;
        }
        if entry.action == XPU_HOST_TRACE_ALLOC as i32 {
            assert!(
                model.handed.contains(&entry.address),
                "an alloc entry at {:#x} matches no allocation",
                entry.address
            );
        }
        let step = steps.entry(entry.address).or_insert(0);
        *step = match (*step, entry.action) {
            (0 | 4, a) if a == XPU_HOST_TRACE_SEGMENT_ALLOC as i32 => 1,
            (0 | 1, a) if a == XPU_HOST_TRACE_ALLOC as i32 => 2,
            (0 | 2, a) if a == XPU_HOST_TRACE_FREE_REQUESTED as i32 => 3,
            (0 | 3, a) if a == XPU_HOST_TRACE_FREE_COMPLETED as i32 => 1,
            (0 | 1, a) if a == XPU_HOST_TRACE_SEGMENT_FREE as i32 => 4,
            (step, action) => panic!("history: action {action} at {:#x} after step {step}", entry.address),
        };
    }
}

/// Segments: the memory held, `allocated` exactly for live blocks, their pools.
fn check_segments(model: &Model) {
    let listed = segments();
    let stats = stats();
    let live: HashMap<usize, &Live> = model.live.iter().map(|b| (b.data, b)).collect();
    let (mut blocks, mut external) = (0, 0);
    for segment in &listed {
        if segment.address < EXTERNAL_END {
            external += 1;
            assert_eq!(model.history.external.get(&segment.address), Some(&segment.bytes), "an external segment");
            continue;
        }
        blocks += 1;
        let block = live.get(&segment.address);
        assert_eq!(segment.allocated, block.is_some(), "segment {:#x} allocated", segment.address);
        let instance = match block {
            Some(block) => model.pools.alive_pool(block.home),
            None => model.held.get(&segment.address).or(model.pool_free.get(&segment.address).map(|(i, _)| i)).copied(),
        };
        let expected =
            instance.map_or((0, 0), |instance| model.pools.id(instance).expect("a pool holding blocks is alive"));
        assert_eq!(segment.pool, expected, "the pool of segment {:#x}", segment.address);
        if block.is_some() || model.held.contains_key(&segment.address) {
            assert!(segment.active, "segment {:#x} in use or kept is active", segment.address);
        }
        if model.pool_free.get(&segment.address).is_some_and(|&(_, waiting)| !waiting) {
            assert!(!segment.active, "a pool's free block {:#x} is not active", segment.address);
        }
    }
    assert_eq!(blocks, stats.allocations.current, "segments list every block holding memory");
    assert_eq!(external, model.history.external.len(), "external registrations listed");
}

fn set_hooks(model: &Model, kind: u8, report: &mut Report) -> xpu_host_result {
    let full = xpu_host_capture_hooks {
        size: std::mem::size_of::<xpu_host_capture_hooks>(),
        user_data: null_mut(),
        current_stream: Some(current_stream),
        is_capturing: Some(is_capturing),
    };
    let half = xpu_host_capture_hooks { is_capturing: None, ..full };
    let before = books();
    // SAFETY: null or filled hooks, valid for the life of the process.
    let (result, expected) = unsafe {
        match kind {
            0 => (xpu_host_set_capture_hooks(std::ptr::null()), XPU_HOST_ERROR_INVALID_ARGUMENT),
            1 => (xpu_host_set_capture_hooks(&half), XPU_HOST_ERROR_INVALID_ARGUMENT),
            _ if !model.pools.captures().is_empty() => (xpu_host_set_capture_hooks(&full), XPU_HOST_ERROR_POOL_BUSY),
            _ => (xpu_host_set_capture_hooks(&full), XPU_HOST_SUCCESS),
        }
    };
    assert_eq!(result, expected, "set_capture_hooks");
    if result == XPU_HOST_SUCCESS {
        HOOKS_SET.store(true, Ordering::SeqCst);
    } else {
        report.hostile += 1;
        assert_eq!(books(), before, "refused hooks changed the books");
    }
    result
}

/// History off, its entries dropped.
fn history_off_and_cleared() {
    let never = xpu_host_record_context::XPU_HOST_RECORD_CONTEXT_NEVER as u32;
    // SAFETY: no recorder.
    assert_eq!(unsafe { xpu_host_record_history(false, 0, never, std::ptr::null(), true) }, XPU_HOST_SUCCESS);
}

/// Runs one sequence; returns how many calls it made and what they covered.
pub fn run(data: &[u8]) -> Report {
    let mut bytes = Bytes(data);
    let mut model = Model::default();
    let mut report = Report::default();
    let stack = 0u64;
    // A clean history and host for each sequence.
    history_off_and_cleared();
    HOST.with(|host| *host.borrow_mut() = HostState { current: Some(HOST_STREAMS[0]), capturing: Vec::new() });
    model.retired_before = stats().retired_blocks;
    model.drops_before = DROPS.load(Ordering::SeqCst);
    if !HOOKS_SET.load(Ordering::SeqCst) {
        // The process's first sequences: no hooks yet, so no capture.
        begin(&mut model, POOLS[1], Some(HOST_STREAMS[0]), None, &mut report);
        if bytes.byte() % 4 != 0 {
            assert_eq!(set_hooks(&model, 2, &mut report), XPU_HOST_SUCCESS);
        }
    }
    while !bytes.is_empty() && report.calls < 400 {
        report.calls += 1;
        let operation = bytes.byte() % 18;
        match operation {
            0..=2 => {
                let size = match bytes.pick(&SIZES) {
                    1 => 1 + bytes.byte() as usize * 97,
                    size => size,
                };
                allocate(&mut model, size, &mut report);
            }
            3 | 4 => {
                let context = context_for(&mut bytes, &model, &stack);
                free(&mut model, context, &mut report);
            }
            5 => {
                let context = context_for(&mut bytes, &model, &stack);
                let data = match bytes.byte() % 3 {
                    0 => model.live.first().map_or(0, |b| b.data),
                    1 => model.live.iter().find(|b| b.context == context).map_or(context, |b| b.data + 8),
                    _ => context,
                };
                let stream = stream(&mut bytes);
                record(&mut model, data, context, stream);
            }
            6 => {
                let stream = stream(&mut bytes);
                if let (Some(block), 0) = (model.live.last().cloned(), stream.device_index) {
                    // SAFETY: `fill` matches the callback type; the block stays live until freed after the record.
                    let result = unsafe { xpu_host_stream_submit(stream, Some(fill), block.data as *mut c_void) };
                    assert_eq!(result, XPU_HOST_SUCCESS);
                    record(&mut model, block.data, block.context, stream);
                }
            }
            7 => assert_eq!(xpu_host_empty_cache(), XPU_HOST_SUCCESS),
            8 => {
                let capacity = bytes.byte() as usize % 24;
                let mut buffer = [0x7f as c_char; 24];
                let mut needed = 0usize;
                let target = if capacity == 0 { null_mut() } else { buffer.as_mut_ptr() };
                // SAFETY: the buffer has room for `capacity` bytes.
                assert_eq!(unsafe { xpu_host_stats_string(target, capacity, &mut needed) }, XPU_HOST_SUCCESS);
                assert!(needed > 1);
                if capacity > 0 {
                    assert_eq!(buffer[(needed - 1).min(capacity - 1)], 0, "not NUL-terminated within the capacity");
                }
                // SAFETY: null with a capacity is refused before anything is written.
                assert_eq!(
                    unsafe { xpu_host_describe(null_mut(), capacity + 1, null_mut()) },
                    XPU_HOST_ERROR_INVALID_ARGUMENT
                );
            }
            9 => {
                let capacity = bytes.byte() as usize % 4;
                let mut classes = [xpu_host_size_class_stats::default(); 4];
                classes[0].size = std::mem::size_of::<xpu_host_size_class_stats>();
                let mut count = 0usize;
                // SAFETY: room for `capacity` entries.
                let result = unsafe { xpu_host_get_size_class_stats(classes.as_mut_ptr(), capacity, &mut count) };
                assert_eq!(result, XPU_HOST_SUCCESS);
                let held: i64 = classes.iter().take(count.min(capacity)).map(|c| c.allocations.current).sum();
                assert!(held >= 0);
            }
            10 => {
                if bytes.byte() % 2 == 0 {
                    xpu_host_reset_peak_stats();
                } else {
                    xpu_host_reset_accumulated_stats();
                }
            }
            11 => {
                // The host switches this thread's current stream, or starts or
                // stops capturing one. A stream captured that no capture's
                // filter accepts puts blocks in the default pool, captured:
                // used and freed, they are retired for good, and stay with
                // the process's allocator. A few are enough.
                let stream = bytes.pick(&HOST_STREAMS);
                let choice = match bytes.byte() % 4 {
                    3 if stats().retired_blocks >= MAX_RETIRED => 1,
                    choice => choice,
                };
                HOST.with(|host| host.borrow_mut().switch(choice, stream));
            }
            12 => {
                let id = bytes.pick(&POOLS);
                let filter = bytes.pick(&[None, None, Some(0), Some(1), Some(2)]).map(|i| HOST_STREAMS[i]);
                let mark = bytes.pick(&[None, Some(0), Some(0), Some(0), Some(1), Some(2)]);
                let mark = mark.map(|i| filter.unwrap_or(HOST_STREAMS[i]));
                let make_current = bytes.pick(&[true, true, false]);
                begin(&mut model, id, filter, mark, &mut report);
                if make_current && mark.is_some() {
                    HOST.with(|host| host.borrow_mut().current = mark);
                }
            }
            13 => {
                let capturing: Vec<Pool> = model.pools.captures().iter().map(|capture| capture.id).collect();
                let id = pick(&mut bytes, &POOLS, &capturing);
                end(&mut model, id, &mut report);
            }
            14 => {
                let id = pick(&mut bytes, &POOLS, &model.pools.ids(|&id| id));
                release(&mut model, id, &mut report);
            }
            15 => history(&mut model, &mut bytes, &mut report),
            16 => {
                let kind = bytes.byte() % 4;
                set_hooks(&model, kind, &mut report);
            }
            _ => {
                // The newest block used by a kernel on the current stream (a
                // fill on the library's stream), then mostly freed.
                let newest = model.newest.and_then(|context| model.live.iter().find(|b| b.context == context).cloned());
                if let Some(block) = newest {
                    let current = HOST.with(|host| host.borrow().current).unwrap_or(HOST_STREAMS[0]);
                    // SAFETY: `fill` matches the callback type; the block stays live until freed after the record.
                    let result =
                        unsafe { xpu_host_stream_submit(stream_of(current), Some(fill), block.data as *mut c_void) };
                    assert_eq!(result, XPU_HOST_SUCCESS);
                    record(&mut model, block.data, block.context, stream_of(current));
                    if bytes.byte() % 3 != 0 {
                        free(&mut model, block.context, &mut report);
                    }
                }
            }
        }
        let now = stats();
        assert_eq!(now.active_requests.current, model.live.len() as i64, "active requests");
        assert_eq!(now.captured_blocks, model.pools.held() as i64, "captured blocks kept for their pools");
        assert_eq!(now.retired_blocks, model.retired_before + model.retired, "retired blocks");
        assert_eq!(DROPS.load(Ordering::SeqCst) - model.drops_before, model.expected_drops, "filters dropped");
        check_history(&model, &mut report);
        // The segments list every block of the process's allocator: after
        // every capture, history and free operation, else every 4th call.
        if operation >= 11 || matches!(operation, 3 | 4) || report.calls % 4 == 0 {
            check_segments(&model);
        }
    }
    for block in std::mem::take(&mut model.live) {
        let before = stats();
        assert_eq!(xpu_host_free(block.context as *mut c_void), XPU_HOST_SUCCESS);
        freed(&mut model, block, &before, &mut report);
    }
    while let Some(capture) = model.pools.captures().first() {
        let id = capture.id;
        end(&mut model, id, &mut report);
    }
    for id in model.pools.ids(|&id| id) {
        while model.pools.contains(id) {
            release(&mut model, id, &mut report);
        }
    }
    // Device work finishes shortly; then nothing may stay held but the retired blocks.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert_eq!(xpu_host_empty_cache(), XPU_HOST_SUCCESS);
        let stats = stats();
        if stats.pending_blocks.current == 0 {
            assert_eq!(
                (stats.allocations.current, stats.cached_bytes.current, stats.active_bytes.current),
                (stats.retired_blocks, 0, 0),
                "left held after the sequence"
            );
            assert_eq!(stats.captured_blocks, 0);
            break;
        }
        assert!(Instant::now() < deadline, "blocks still wait for streams 10 s after the sequence");
        std::thread::sleep(Duration::from_micros(200));
    }
    check_segments(&model);
    history_off_and_cleared();
    assert_eq!(
        GATHERED.load(Ordering::SeqCst),
        RELEASED.load(Ordering::SeqCst),
        "contexts gathered and never released"
    );
    report
}
