//! Fault injection through the software driver's knobs, through the C API:
//! `zeMemAllocHost` failing every Nth call or past a memory limit, event pool
//! and command list creation failing. Each child process runs with one knob.
//!
//! What must hold: the error reaches the caller as an error code and a message;
//! a failed host allocation empties the cache and is retried once before it
//! fails; the allocator keeps working afterwards; and after `xpu_host_empty_cache`
//! at the end the driver holds no host memory of ours, except blocks the
//! allocator retired on purpose (a free whose stream event could not be
//! recorded: nobody can tell when the device is done with that memory, so it is
//! never reused nor freed), which are counted exactly.

mod reliability_support;

use std::time::Duration;

use reliability_support::*;

const MIB: usize = 1 << 20;
/// The driver allocation small blocks share (src/level_zero/slabs.rs).
const SLAB: u64 = 64 << 10;

/// Calls to `zeMemAllocHost` so far (successful or not), by the allocator's count.
fn host_alloc_attempts() -> i64 {
    stats().host_alloc_time.count
}

/// Ends a child: drains, checks that the driver holds exactly the memory of
/// the `retired` blocks (`retired_bytes`; a block of up to 32 KiB is a chunk
/// and keeps its whole 64 KiB slab), and prints the counts.
fn finish(what: &str, faults: u64, errors_reported: u64, retired: u64, retired_bytes: u64) {
    let stats = drain(Duration::from_secs(10));
    assert_eq!(stats.active_requests.current, 0);
    assert_eq!(stats.pending_blocks.current, 0);
    assert_eq!(stats.cached_bytes.current, 0);
    assert_eq!(stats.allocations.current as u64, retired, "blocks held after empty_cache are the retired ones");
    let live = live_objects();
    assert_eq!(
        (live.allocations, live.allocated_bytes),
        (retired, retired_bytes),
        "host memory left in the driver after empty_cache: {live:?}"
    );
    println!(
        "reliability: faults: {what}: {faults} faults injected, {errors_reported} errors reported to the caller, \
         {retired} blocks retired; driver after empty_cache: {} allocations",
        live.allocations
    );
}

#[test]
fn host_allocation_failing_every_third_call_is_retried() {
    run_child("child_fail_host_alloc_every_3", &[("ZE_SOFTWARE_DRIVER_FAIL_HOST_ALLOC_EVERY", "3")]);
}

#[test]
#[ignore = "runs in a child process with ZE_SOFTWARE_DRIVER_FAIL_HOST_ALLOC_EVERY=3"]
fn child_fail_host_alloc_every_3() {
    let (mut faults, mut emptied_a_full_cache) = (0, 0);
    // Allocates, and tells from the number of zeMemAllocHost calls whether a
    // fault was injected: then the cache must have been emptied before the retry.
    let mut allocate_counting = |size: usize| {
        let (attempts, cached) = (host_alloc_attempts(), stats().cached_bytes.current);
        let (data, context) = allocate(size).expect("every third call fails, and the retry succeeds");
        // SAFETY: a live block of `size` bytes.
        unsafe { std::ptr::write_bytes(data as *mut u8, 0x5a, size) };
        match host_alloc_attempts() - attempts {
            0 | 1 => {}
            2 => {
                faults += 1;
                assert_eq!(stats().cached_bytes.current, 0, "the cache was emptied before the retry");
                emptied_a_full_cache += u64::from(cached > 0);
            }
            n => panic!("{n} calls to zeMemAllocHost for one allocation"),
        }
        context
    };
    let mut held = Vec::new();
    for i in 0..300usize {
        // Keep some blocks cached so that a fault has a cache to empty.
        if i % 4 == 0 {
            assert_eq!(free(allocate_counting(512 << (i % 7))), XPU_HOST_SUCCESS);
        }
        // Mostly sizes no cached block serves, so zeMemAllocHost is called.
        held.push(allocate_counting((64 << 10) + i * 4096));
        if held.len() > 8 {
            assert_eq!(free(held.remove(0)), XPU_HOST_SUCCESS);
        }
    }
    held.into_iter().for_each(|context| assert_eq!(free(context), XPU_HOST_SUCCESS));
    let live = live_objects();
    let injected = host_alloc_attempts() as u64 - live.host_alloc_calls;
    assert_eq!(injected, faults, "every fault was seen as a retry");
    assert!(faults >= 30 && emptied_a_full_cache > 0, "{faults} faults, {emptied_a_full_cache} with a cache to empty");
    finish("zeMemAllocHost fails every 3rd call", faults, 0, 0, 0);
}

#[test]
fn host_allocation_failing_always_is_an_error_and_the_cache_still_serves() {
    run_child("child_fail_host_alloc_every_1", &[("ZE_SOFTWARE_DRIVER_FAIL_HOST_ALLOC_EVERY", "1")]);
}

#[test]
#[ignore = "runs in a child process with ZE_SOFTWARE_DRIVER_FAIL_HOST_ALLOC_EVERY=1"]
fn child_fail_host_alloc_every_1() {
    let mut errors = 0;
    for size in [1usize, 512, 4096, 1 << 20] {
        let attempts = host_alloc_attempts();
        let (code, message) = allocate(size).expect_err("no host memory can be had");
        assert_eq!(code, XPU_HOST_ERROR_OUT_OF_MEMORY);
        assert!(message.contains("out of pinned host memory") && message.contains("retrying"), "{message}");
        assert!(message.contains("ZE_RESULT_ERROR_OUT_OF_HOST_MEMORY"), "{message}");
        assert_eq!(host_alloc_attempts() - attempts, 2, "one call, the cache emptied, one retry");
        errors += 1;
    }
    let stats = stats();
    assert_eq!((stats.active_requests.current, stats.allocations.current), (0, 0));
    assert_eq!(stats.cache_misses, 4);
    // Size 0 needs no memory.
    assert_eq!(allocate(0), Ok((0, 0)));
    finish("zeMemAllocHost fails every call", host_alloc_attempts() as u64, errors, 0, 0);
}

#[test]
fn past_the_memory_limit_allocation_fails_cleanly_under_threads() {
    let limit = ("ZE_SOFTWARE_DRIVER_HOST_MEMORY_LIMIT", "4194304");
    run_child("child_memory_limit", &[limit]);
    run_child("child_memory_limit", &[limit, ("XPU_CACHING_HOST_ALLOCATOR_CONF", "pinned_fit:rounded")]);
}

#[test]
#[ignore = "runs in a child process with ZE_SOFTWARE_DRIVER_HOST_MEMORY_LIMIT=4194304"]
fn child_memory_limit() {
    let rounded = std::env::var_os("XPU_CACHING_HOST_ALLOCATOR_CONF").is_some();
    let mut errors = 0u64;
    // Three cached 1 MiB blocks stand in the way of 2 MiB. Exact fit's budget
    // (3 MiB and a half percent, the most requested at once) gives two back
    // before it asks the driver; rounded fit empties the cache when the
    // driver says it is out of memory, and tries again.
    let blocks: Vec<_> = (0..3).map(|_| allocate(MIB).unwrap()).collect();
    blocks.iter().for_each(|&(_, context)| assert_eq!(free(context), XPU_HOST_SUCCESS));
    assert_eq!(stats().cached_bytes.current, 3 * MIB as i64);
    let (frees, attempts) = (stats().num_host_free, host_alloc_attempts());
    let (_, two) = allocate(2 * MIB).expect("fits once cached blocks went back");
    let (freed, tries) = (stats().num_host_free - frees, host_alloc_attempts() - attempts);
    assert_eq!((freed, tries), if rounded { (3, 2) } else { (2, 1) }, "blocks given back, driver calls");
    // Beyond the limit: an error, the cache emptied, nothing else changed.
    for size in [8 * MIB, 3 * MIB] {
        let (code, message) = allocate(size).expect_err("past the limit");
        assert_eq!(code, XPU_HOST_ERROR_OUT_OF_MEMORY, "{message}");
        assert!(message.contains(&size.to_string()), "{message}");
        errors += 1;
    }
    let after = stats();
    assert_eq!((after.active_requests.current, after.allocations.current), (1, 1));
    assert_eq!(free(two), XPU_HOST_SUCCESS);
    // Still works afterwards, and the cached block is reused.
    let (_, again) = allocate(2 * MIB).unwrap();
    assert_eq!(again, two);
    assert_eq!(free(again), XPU_HOST_SUCCESS);

    // Four threads hold up to three blocks each of up to 1 MiB: 12 MiB wanted
    // of 4 MiB. Failures are errors, never crashes, and nothing is lost.
    let threads: Vec<_> = (0..4u64)
        .map(|thread| {
            std::thread::spawn(move || {
                let mut rng = Rng::new(thread + 7);
                let (mut held, mut errors, mut successes) = (Vec::new(), 0u64, 0u64);
                for _ in 0..2000 {
                    let size = 4096 + rng.below(MIB as u64 - 4096) as usize;
                    match allocate(size) {
                        Ok((data, context)) => {
                            // SAFETY: a live block of `size` bytes.
                            unsafe { std::ptr::write_bytes(data as *mut u8, thread as u8, size.min(4096)) };
                            held.push(context);
                            successes += 1;
                        }
                        Err((code, message)) => {
                            assert_eq!(code, XPU_HOST_ERROR_OUT_OF_MEMORY, "{message}");
                            errors += 1;
                        }
                    }
                    if held.len() == 3 || (!held.is_empty() && rng.chance(30)) {
                        assert_eq!(free(held.swap_remove(rng.below(held.len() as u64) as usize)), XPU_HOST_SUCCESS);
                    }
                }
                held.into_iter().for_each(|context| assert_eq!(free(context), XPU_HOST_SUCCESS));
                (errors, successes)
            })
        })
        .collect();
    let (mut thread_errors, mut successes) = (0, 0);
    for thread in threads {
        let (e, s) = thread.join().unwrap();
        thread_errors += e;
        successes += s;
    }
    assert!(successes > 0);
    errors += thread_errors;
    let injected = host_alloc_attempts() as u64 - live_objects().host_alloc_calls;
    assert!(injected >= errors, "each error follows two refused calls");
    finish("4 MiB host memory limit, 4 threads", injected, errors, 0, 0);
}

#[test]
fn event_pool_creation_failing_retires_the_block_and_reports() {
    run_child("child_fail_event_pool_create", &[("ZE_SOFTWARE_DRIVER_FAIL_EVENT_POOL_CREATE_EVERY", "3")]);
}

#[test]
#[ignore = "runs in a child process with ZE_SOFTWARE_DRIVER_FAIL_EVENT_POOL_CREATE_EVERY=3"]
fn child_fail_event_pool_create() {
    let s = stream(0, 1);
    // zeEventPoolCreate call 1: the gate's pool.
    let gate = Gate::new();
    assert_eq!(gate.hold(s), XPU_HOST_SUCCESS);
    // Call 2: the allocator's first pool of 256 events, all outstanding while
    // the stream is held. Call 3, for the 257th event, fails; call 4 works.
    // Each block gets device work of its own, so each free needs a barrier of
    // its own (frees with nothing appended between share one).
    let mut retired = Vec::new();
    let mut errors = 0;
    for i in 0..300 {
        let (data, context) = allocate(4096).unwrap();
        submit_fill(s, data, 64, i).unwrap();
        assert_eq!(record(data, context, s), Ok(true));
        let freed = free(context);
        if i == 256 {
            assert_eq!(freed, XPU_HOST_ERROR_LEVEL_ZERO);
            let message = last_error();
            assert!(message.contains("zeEventPoolCreate") && message.contains("retired"), "{message}");
            retired.push(data);
            errors += 1;
        } else {
            assert_eq!(freed, XPU_HOST_SUCCESS, "free {i}: {}", last_error());
        }
    }
    assert_eq!(stats().pending_blocks.current, 299);
    // A retired block is never handed out again, nor are pending ones.
    for _ in 0..20 {
        let (data, context) = allocate(4096).unwrap();
        assert!(!retired.contains(&data));
        assert_eq!(free(context), XPU_HOST_SUCCESS);
    }
    gate.open();
    finish("zeEventPoolCreate fails every 3rd call", 1, errors, 1, SLAB);
}

#[test]
fn command_list_creation_failing_is_reported_and_retried_on_next_use() {
    run_child("child_fail_command_list_create", &[("ZE_SOFTWARE_DRIVER_FAIL_COMMAND_LIST_CREATE_EVERY", "2")]);
}

#[test]
#[ignore = "runs in a child process with ZE_SOFTWARE_DRIVER_FAIL_COMMAND_LIST_CREATE_EVERY=2"]
fn child_fail_command_list_create() {
    let (mut faults, mut errors) = (0u64, 0u64);
    // Each new stream creates one immediate list on first use; odd calls work,
    // even ones fail. Stream 0: call 1 (submit). Each later stream: its submit
    // makes the failing even call, and its free the working odd one.
    for id in 0..6 {
        let s = stream(0, id);
        let (data, context) = allocate(8192).unwrap();
        let submitted = submit_fill(s, data, 8192, 0xfeed);
        assert_eq!(record(data, context, s), Ok(true), "the stream's device exists");
        if id == 0 {
            submitted.unwrap();
        } else {
            let (code, message) = submitted.expect_err("this stream's list could not be created");
            assert_eq!(code, XPU_HOST_ERROR_LEVEL_ZERO);
            assert!(message.contains("zeCommandListCreateImmediate"), "{message}");
            faults += 1;
            errors += 1;
        }
        // The free records on the stream: it creates the list again, and that works.
        assert_eq!(free(context), XPU_HOST_SUCCESS, "stream {id}: {}", last_error());
        submit_fill(s, data, 0, 0).expect("the stream has its list now");
    }
    // Call 12 fails during a free: without an event the block is retired.
    let (data, context) = allocate(8192).unwrap();
    assert_eq!(record(data, context, stream(0, 100)), Ok(true));
    assert_eq!(free(context), XPU_HOST_ERROR_LEVEL_ZERO, "call 12 fails, during the free");
    let message = last_error();
    assert!(message.contains("zeCommandListCreateImmediate") && message.contains("retired"), "{message}");
    faults += 1;
    errors += 1;
    // Call 13: the stream works from now on.
    let (other, other_context) = allocate(8192).unwrap();
    assert_ne!(other, data, "a retired block is never handed out again");
    submit_fill(stream(0, 100), other, 8192, 0xbeef).expect("call 13 works");
    assert_eq!(record(other, other_context, stream(0, 100)), Ok(true));
    assert_eq!(free(other_context), XPU_HOST_SUCCESS);
    finish("zeCommandListCreateImmediate fails every 2nd call", faults, errors, 1, SLAB);
}
