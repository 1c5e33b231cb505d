//! The C API through the software Level Zero driver (ZE_ENABLE_ALT_DRIVERS set
//! before the process starts), driven by a sequence of calls decoded from
//! bytes and checked against what each call must return: exact error codes for
//! hostile sizes, null, foreign, stale and double-freed contexts, streams on
//! devices that do not exist, small and null buffers; `recorded` exactly when
//! the context or base address names a live block; statistics that count the
//! live blocks. The allocator is the process's one: each sequence ends by
//! freeing what it holds and draining the cache, and must leave nothing held.

use std::ffi::{c_char, c_void};
use std::ptr::null_mut;
use std::time::{Duration, Instant};

use crate::bytes::Bytes;
use xpu_caching_host_allocator::abi::c_api::*;
use xpu_caching_host_allocator::abi::error::xpu_host_result::{self, *};
use xpu_caching_host_allocator::caching::Stats;

#[derive(Clone, Copy)]
struct Live {
    data: usize,
    context: usize,
}

#[derive(Default)]
struct Model {
    live: Vec<Live>,
    /// Contexts handed out before: a free of one not live now is a double free.
    known: Vec<usize>,
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

fn allocate(model: &mut Model, size: usize) {
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
    // SAFETY: a live block of at least `size` bytes.
    unsafe {
        *(data as *mut u8) = 0xa5;
        *((data + size - 1) as *mut u8) = 0x5a;
    }
    model.live.push(Live { data, context });
    if !model.known.contains(&context) {
        model.known.push(context);
    }
}

fn free(model: &mut Model, context: usize) {
    let result = xpu_host_free(context as *mut c_void);
    let expected = if context == 0 {
        XPU_HOST_SUCCESS
    } else if let Some(position) = model.live.iter().position(|b| b.context == context) {
        model.live.swap_remove(position);
        XPU_HOST_SUCCESS
    } else if model.known.contains(&context) {
        XPU_HOST_ERROR_NOT_ALLOCATED
    } else {
        XPU_HOST_ERROR_UNKNOWN_BLOCK
    };
    assert_eq!(result, expected, "free({context:#x})");
}

fn record(model: &Model, data: usize, context: usize, stream: xpu_host_stream) {
    let mut recorded = false;
    // SAFETY: `recorded` is a valid local; data and context are only compared.
    let result = unsafe { xpu_host_record_stream(data as *mut c_void, context as *mut c_void, stream, &mut recorded) };
    if !(0..1).contains(&stream.device_index) {
        assert_eq!(result, XPU_HOST_ERROR_LEVEL_ZERO, "a stream on device {} was accepted", stream.device_index);
        return;
    }
    let ours = model.live.iter().any(|b| b.context == context || b.data == data);
    assert_eq!((result, recorded), (XPU_HOST_SUCCESS, ours), "record({data:#x}, {context:#x})");
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

/// Runs one sequence; returns how many calls it made.
pub fn run(data: &[u8]) -> u64 {
    let mut bytes = Bytes(data);
    let mut model = Model::default();
    let stack = 0u64;
    let mut calls = 0;
    while !bytes.is_empty() && calls < 400 {
        calls += 1;
        match bytes.byte() % 11 {
            0..=2 => {
                let size = match bytes.pick(&SIZES) {
                    1 => 1 + bytes.byte() as usize * 97,
                    size => size,
                };
                allocate(&mut model, size);
            }
            3 | 4 => {
                let context = context_for(&mut bytes, &model, &stack);
                free(&mut model, context);
            }
            5 => {
                let context = context_for(&mut bytes, &model, &stack);
                let data = match bytes.byte() % 3 {
                    0 => model.live.first().map_or(0, |b| b.data),
                    1 => model.live.iter().find(|b| b.context == context).map_or(context, |b| b.data + 8),
                    _ => context,
                };
                let stream = stream(&mut bytes);
                record(&model, data, context, stream);
            }
            6 => {
                let stream = stream(&mut bytes);
                if let (Some(block), 0) = (model.live.last().copied(), stream.device_index) {
                    // SAFETY: `fill` matches the callback type; the block stays live until freed after the record.
                    let result = unsafe { xpu_host_stream_submit(stream, Some(fill), block.data as *mut c_void) };
                    assert_eq!(result, XPU_HOST_SUCCESS);
                    record(&model, block.data, block.context, stream);
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
            _ => {
                if bytes.byte() % 2 == 0 {
                    xpu_host_reset_peak_stats();
                } else {
                    xpu_host_reset_accumulated_stats();
                }
            }
        }
        assert_eq!(stats().active_requests.current, model.live.len() as i64, "active requests");
    }
    for block in std::mem::take(&mut model.live) {
        assert_eq!(xpu_host_free(block.context as *mut c_void), XPU_HOST_SUCCESS);
    }
    // Device work finishes shortly; then nothing may stay held.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert_eq!(xpu_host_empty_cache(), XPU_HOST_SUCCESS);
        let stats = stats();
        if stats.pending_blocks.current == 0 {
            assert_eq!((stats.allocations.current, stats.cached_bytes.current, stats.active_bytes.current), (0, 0, 0));
            break;
        }
        assert!(Instant::now() < deadline, "blocks still wait for streams 10 s after the sequence");
        std::thread::sleep(Duration::from_micros(200));
    }
    calls
}
