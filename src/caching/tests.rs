//! The core against the fake backend (fake_backend.rs): a stream has work
//! only when a test submits it, and completes it only when the test says so.

use super::fake_backend::FakeBackend;
use super::thread_cache::POLL_EVERY;
use super::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

const S1: StreamKey = StreamKey { device_type: 12, device_index: 0, id: 1 };
const S2: StreamKey = StreamKey { device_type: 12, device_index: 0, id: 2 };

fn allocator() -> CachingAllocator<FakeBackend> {
    CachingAllocator::new(FakeBackend::default(), Settings::default())
}

#[test]
fn size_zero_is_none_and_touches_nothing() {
    let a = allocator();
    assert_eq!(a.allocate(0), Ok(None));
    assert_eq!(a.stats(), Stats::default());
}

#[test]
fn a_block_freed_without_streams_is_reused_at_once() {
    let a = allocator();
    let first = a.allocate(1000).unwrap().unwrap();
    assert_eq!(first.size, 1024);
    a.free(first.context).unwrap();
    let again = a.allocate(1000).unwrap().unwrap();
    assert_eq!(again, first);
    let other_class = a.allocate(3000).unwrap().unwrap();
    assert_ne!(other_class.address, first.address);
    let stats = a.stats();
    assert_eq!((stats.cache_hits, stats.cache_misses, stats.num_host_alloc), (1, 2, 2));
}

#[test]
fn reuse_is_last_in_first_out() {
    let a = allocator();
    let x = a.allocate(100).unwrap().unwrap();
    let y = a.allocate(100).unwrap().unwrap();
    a.free(x.context).unwrap();
    a.free(y.context).unwrap();
    assert_eq!(a.allocate(100).unwrap().unwrap(), y);
    // Past the depth of the thread's own stack too: the oldest move on to the shard.
    let blocks: Vec<_> = (0..40).map(|_| a.allocate(100).unwrap().unwrap()).collect();
    blocks.iter().for_each(|block| a.free(block.context).unwrap());
    for expected in blocks.iter().rev() {
        assert_eq!(&a.allocate(100).unwrap().unwrap(), expected);
    }
}

#[test]
fn a_block_used_on_a_stream_waits_for_its_event() {
    let a = allocator();
    let block = a.allocate(4096).unwrap().unwrap();
    assert!(a.record_stream(block.address, block.context, S1).unwrap());
    a.backend().submit(S1);
    a.free(block.context).unwrap();
    let meanwhile = a.allocate(4096).unwrap().unwrap();
    assert_ne!(meanwhile.address, block.address, "reused while the stream may still use it");
    assert_eq!(a.stats().pending_blocks.current, 1);
    a.backend().complete_all(S1);
    a.free(meanwhile.context).unwrap();
    // Both are free now: the cached one serves first, and the next miss polls
    // and finds the waiting one.
    assert_eq!(a.allocate(4096).unwrap().unwrap(), meanwhile);
    assert_eq!(a.allocate(4096).unwrap().unwrap(), block);
    assert_eq!(a.stats().pending_blocks.current, 0);
    assert_eq!(a.backend().events(), (1, 1), "its event was released");
}

#[test]
fn a_block_used_on_two_streams_waits_for_both() {
    let a = allocator();
    let block = a.allocate(512).unwrap().unwrap();
    assert!(a.record_stream(block.address, block.context, S1).unwrap());
    assert!(a.record_stream(block.address, block.context, S2).unwrap());
    a.backend().submit(S1);
    a.backend().submit(S2);
    a.free(block.context).unwrap();
    a.backend().complete_all(S1);
    assert_ne!(a.allocate(512).unwrap().unwrap().address, block.address);
    a.backend().complete_all(S2);
    assert_eq!(a.allocate(512).unwrap().unwrap().address, block.address);
}

#[test]
fn a_held_back_stream_does_not_hold_back_another() {
    let a = allocator();
    let slow = a.allocate(512).unwrap().unwrap();
    a.record_stream(slow.address, slow.context, S1).unwrap();
    a.backend().submit(S1);
    a.free(slow.context).unwrap();
    let fast = a.allocate(512).unwrap().unwrap();
    a.record_stream(fast.address, fast.context, S2).unwrap();
    a.backend().submit(S2);
    a.free(fast.context).unwrap();
    a.backend().complete_all(S2);
    assert_eq!(a.allocate(512).unwrap().unwrap().address, fast.address);
}

#[test]
fn record_stream_accepts_the_context_or_the_base_address_only() {
    let a = allocator();
    let block = a.allocate(512).unwrap().unwrap();
    // A slice: our context, an interior pointer.
    assert!(a.record_stream(block.address + 64, block.context, S1).unwrap());
    // from_blob of the base pointer: a foreign context.
    assert!(a.record_stream(block.address, 0xdead_beef, S1).unwrap());
    assert!(a.record_stream(block.address, 0, S1).unwrap());
    // from_blob of an interior pointer, and memory that is not ours.
    assert!(!a.record_stream(block.address + 64, 0, S1).unwrap());
    assert!(!a.record_stream(0x42, 0x42, S1).unwrap());
    let no_device = StreamKey { device_type: 12, device_index: -1, id: 0 };
    assert!(matches!(a.record_stream(block.address, block.context, no_device), Err(Error::Backend(_))));
    // Stale after empty_cache.
    a.backend().submit(S1);
    a.free(block.context).unwrap();
    a.backend().complete_all(S1);
    a.empty_cache().unwrap();
    assert!(!a.record_stream(block.address, block.context, S1).unwrap());
}

#[test]
fn double_free_and_foreign_contexts_are_errors_that_change_nothing() {
    let a = allocator();
    let block = a.allocate(512).unwrap().unwrap();
    assert_eq!(a.free(0x1234), Err(Error::UnknownBlock { context: 0x1234 }));
    a.free(block.context).unwrap();
    assert_eq!(a.free(block.context), Err(Error::NotAllocated { context: block.context }));
    assert_eq!(a.stats().active_requests.current, 0);
    assert_eq!(a.allocate(512).unwrap().unwrap(), block);
    a.empty_cache().unwrap();
    a.free(block.context).unwrap();
    a.empty_cache().unwrap();
    assert_eq!(a.free(block.context), Err(Error::NotAllocated { context: block.context }));
}

#[test]
fn empty_cache_frees_only_free_blocks() {
    let a = allocator();
    let in_use = a.allocate(512).unwrap().unwrap();
    let waiting = a.allocate(1024).unwrap().unwrap();
    let free = a.allocate(2048).unwrap().unwrap();
    a.record_stream(waiting.address, waiting.context, S1).unwrap();
    a.backend().submit(S1);
    a.free(waiting.context).unwrap();
    a.free(free.context).unwrap();
    a.empty_cache().unwrap();
    assert_eq!(a.backend().live_bytes(), 512 + 1024);
    a.backend().complete_all(S1);
    a.empty_cache().unwrap();
    assert_eq!(a.backend().live_bytes(), 512);
    a.free(in_use.context).unwrap();
    a.empty_cache().unwrap();
    assert_eq!(a.backend().live_bytes(), 0);
    let stats = a.stats();
    assert_eq!((stats.allocations.current, stats.allocated_bytes.current, stats.cached_bytes.current), (0, 0, 0));
    assert_eq!((stats.num_host_alloc, stats.num_host_free), (3, 3));
}

#[test]
fn out_of_memory_empties_the_cache_and_retries_once() {
    let a = allocator();
    let cached = a.allocate(512).unwrap().unwrap();
    a.free(cached.context).unwrap();
    a.backend().inject_out_of_memory(1);
    let block = a.allocate(4096).unwrap().unwrap();
    assert_eq!(a.backend().live_bytes(), 4096, "the cache was emptied before the retry");
    a.backend().inject_out_of_memory(2);
    assert!(matches!(a.allocate(8192), Err(Error::OutOfMemory { requested: 8192, size: 8192, .. })));
    // Nothing lost: the live block is still ours and the allocator still works.
    a.free(block.context).unwrap();
    assert_eq!(a.allocate(4096).unwrap().unwrap(), block);
}

#[test]
fn sizes_too_large_to_round_are_errors() {
    for (a, sizes) in
        [(allocator(), [usize::MAX, 1 << 63]), (with("pinned_fit:rounded"), [usize::MAX, usize::MAX / 2 + 2])]
    {
        for size in sizes {
            assert_eq!(a.allocate(size), Err(Error::SizeTooLarge { requested: size }));
        }
        assert_eq!(a.stats(), Stats::default());
    }
}

#[test]
fn a_block_whose_streams_have_nothing_pending_is_cached_at_its_free() {
    let a = allocator();
    let block = a.allocate(512).unwrap().unwrap();
    // S1's work has all completed; S2 never had any.
    a.backend().submit(S1);
    a.backend().complete_all(S1);
    a.record_stream(block.address, block.context, S1).unwrap();
    a.record_stream(block.address, block.context, S2).unwrap();
    a.free(block.context).unwrap();
    let s = a.stats();
    assert_eq!((s.pending_blocks.current, s.cached_bytes.current), (0, 512));
    assert_eq!(a.allocate(512).unwrap().unwrap().address, block.address, "reused with no poll");
    assert_eq!(a.backend().events(), (0, 0), "no event recorded");
}

#[test]
fn a_failed_record_retires_the_block() {
    let a = allocator();
    let block = a.allocate(512).unwrap().unwrap();
    a.record_stream(block.address, block.context, S1).unwrap();
    a.backend().inject_record_failures(1);
    assert!(matches!(a.free(block.context), Err(Error::Backend(_))));
    assert_eq!((a.stats().retired_blocks, a.stats().pending_blocks.current), (1, 0));
    assert_ne!(a.allocate(512).unwrap().unwrap().address, block.address);
    a.empty_cache().unwrap();
    a.reset_accumulated_stats();
    assert!(a.backend().live_bytes() >= 512, "retired memory is never freed under the device");
    assert_eq!(a.stats().retired_blocks, 1, "retired blocks stay counted");
}

#[test]
fn statistics_follow_requests() {
    let a = allocator();
    let x = a.allocate(1000).unwrap().unwrap();
    let y = a.allocate(3000).unwrap().unwrap();
    let s = a.stats();
    assert_eq!(s.active_requests, Stat { current: 2, peak: 2, allocated: 2, freed: 0 });
    assert_eq!(s.active_bytes.current, 1024 + 3072);
    assert_eq!(s.requested_bytes.current, 4000);
    assert_eq!(s.allocated_bytes.current, 1024 + 3072);
    assert_eq!((s.idle_bytes, s.largest_free_block), (0, 0));
    a.free(x.context).unwrap();
    a.free(y.context).unwrap();
    let s = a.stats();
    assert_eq!(s.active_requests, Stat { current: 0, peak: 2, allocated: 2, freed: 2 });
    assert_eq!(s.cached_bytes.current, 1024 + 3072);
    assert_eq!((s.idle_bytes, s.largest_free_block), (1024 + 3072, 3072));
    a.reset_peak_stats();
    a.reset_accumulated_stats();
    let s = a.stats();
    assert_eq!(s.active_requests, Stat::default());
    assert_eq!(s.allocated_bytes, Stat { current: 1024 + 3072, peak: 1024 + 3072, allocated: 0, freed: 0 });
    assert!(s.to_string().contains("active_requests: 0/0/0/0"));
}

#[test]
fn cached_bytes_count_every_way_into_and_out_of_the_cache() {
    let a = with("pinned_fit:rounded");
    let cached = |a: &CachingAllocator<FakeBackend>| a.stats().cached_bytes;
    let block = a.allocate(4096).unwrap().unwrap();
    assert_eq!(cached(&a), Stat::default(), "new memory is not taken from the cache");
    a.free(block.context).unwrap();
    assert_eq!(cached(&a), Stat { current: 4096, peak: 4096, allocated: 4096, freed: 0 });
    let block = a.allocate(4096).unwrap().unwrap();
    assert_eq!(cached(&a), Stat { current: 0, peak: 4096, allocated: 4096, freed: 4096 });
    assert!(a.record_stream(block.address, block.context, S1).unwrap());
    a.backend().submit(S1);
    a.free(block.context).unwrap();
    assert_eq!(cached(&a), Stat { current: 0, peak: 4096, allocated: 4096, freed: 4096 }, "waiting, not cached");
    a.backend().complete_all(S1);
    // A miss polls: the block whose event completed is cached.
    let other = a.allocate(8192).unwrap().unwrap();
    assert_eq!(cached(&a), Stat { current: 4096, peak: 4096, allocated: 8192, freed: 4096 });
    a.free(other.context).unwrap();
    assert_eq!(cached(&a), Stat { current: 12288, peak: 12288, allocated: 16384, freed: 4096 });
    a.empty_cache().unwrap();
    assert_eq!(cached(&a), Stat { current: 0, peak: 12288, allocated: 16384, freed: 16384 });
    a.reset_peak_stats();
    a.reset_accumulated_stats();
    assert_eq!(cached(&a), Stat::default());
}

#[test]
fn exact_fit_blocks_are_requests_aligned_and_reused_at_that_size() {
    let a = allocator();
    let x = a.allocate(1000).unwrap().unwrap();
    let y = a.allocate((100 << 20) + 1).unwrap().unwrap();
    assert_eq!((x.size, y.size), (1024, (100 << 20) + 512));
    a.free(x.context).unwrap();
    assert_eq!(a.allocate(513).unwrap().unwrap(), x, "same aligned size: reused");
    a.free(x.context).unwrap();
    a.free(y.context).unwrap();
    assert_eq!(a.allocate(100 << 20).unwrap().unwrap(), y, "within the slack: reused");
}

#[test]
fn exact_fit_keeps_held_bytes_within_the_budget() {
    const MIB: usize = 1 << 20;
    let a = allocator();
    let big = a.allocate(100 * MIB).unwrap().unwrap();
    a.free(big.context).unwrap();
    // 1 MiB of waste is more than the slack (1/200 of 100 MiB): new memory,
    // and the 100 MiB block goes back first, so that 99 MiB are held, not 199.
    let smaller = a.allocate(99 * MIB).unwrap().unwrap();
    assert_ne!(smaller.address, big.address);
    assert_eq!(a.backend().live_bytes(), 99 * MIB);
    let s = a.stats();
    assert_eq!((s.num_host_alloc, s.num_host_free, s.cached_bytes.current), (2, 1, 0));
    // Blocks handed out are never given back: the budget yields to them.
    let more = a.allocate(50 * MIB).unwrap().unwrap();
    assert_eq!(a.backend().live_bytes(), 149 * MIB);
    // A peak reset does not lower the high water (149 MiB): nothing goes back
    // when 512 KiB more is asked for with 50 MiB cached.
    a.free(more.context).unwrap();
    a.reset_peak_stats();
    let half = a.allocate(MIB / 2).unwrap().unwrap();
    assert_eq!(a.backend().live_bytes(), 149 * MIB + MIB / 2);
    // Cached blocks that the budget cannot keep go back, the largest first.
    a.free(half.context).unwrap();
    a.free(smaller.context).unwrap();
    let large = a.allocate(140 * MIB).unwrap().unwrap();
    assert_eq!(a.backend().live_bytes(), 140 * MIB + MIB / 2, "99 and 50 MiB went back, 512 KiB fits");
    a.free(large.context).unwrap();
}

#[test]
fn exact_fit_counts_the_backends_unused_room_as_held() {
    const MIB: usize = 1 << 20;
    // 100 MiB in use and 1 MiB cached: the high water is 101 MiB, the slack
    // 517 KiB, so 512 KiB more fits with the cached block kept; with 64 KiB
    // the backend holds beyond the blocks, it does not, and the block goes back.
    for (unused, kept) in [(0, true), (64 << 10, false)] {
        let a = allocator();
        let _in_use = a.allocate(100 * MIB).unwrap().unwrap();
        let cached = a.allocate(MIB).unwrap().unwrap();
        a.free(cached.context).unwrap();
        a.backend().set_unused_bytes(unused);
        let _more = a.allocate(MIB / 2).unwrap().unwrap();
        let held = if kept { 101 * MIB + MIB / 2 } else { 100 * MIB + MIB / 2 };
        assert_eq!(a.backend().live_bytes(), held, "{unused} bytes unused");
    }
}

#[test]
fn exact_fit_stops_thrashing_a_working_set_larger_than_the_high_water() {
    // Scenario 1's loop: 3 MB at most at once, but four sizes to keep cached.
    let a = allocator();
    let sizes = [4096, 65536, 1 << 20, 3_000_000];
    let cycle = |rounds| {
        for _ in 0..rounds {
            for size in sizes {
                let block = a.allocate(size).unwrap().unwrap();
                a.free(block.context).unwrap();
            }
        }
    };
    cycle(50);
    let warmed = a.stats().num_host_alloc;
    assert!(warmed < 50, "the budget grew to the working set: {warmed} driver allocations in 200 requests");
    cycle(1000);
    assert_eq!(a.stats().num_host_alloc, warmed, "no miss once it grew");
    assert_eq!(a.backend().live_bytes(), sizes.iter().map(|s| s.next_multiple_of(512)).sum::<usize>());
    // Sizes that drift do not make it grow: each new size goes back when the next one comes.
    let b = allocator();
    for step in 0..100 {
        let block = b.allocate((1 << 20) + step * 4096).unwrap().unwrap();
        b.free(block.context).unwrap();
    }
    assert_eq!(b.backend().live_bytes(), (1 << 20) + 99 * 4096, "only the newest block is held");
}

#[test]
fn divisions_shrink_rounding() {
    let a = with("pinned_fit:rounded,pinned_roundup_divisions:4");
    let block = a.allocate((129 << 20) + 1).unwrap().unwrap();
    assert_eq!(block.size, 160 << 20);
}

#[test]
fn threads_allocate_record_free_and_empty_at_once() {
    let a = Arc::new(allocator());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || {
                let stream = StreamKey { device_type: 12, device_index: 0, id: t % 2 };
                for i in 0..2000 {
                    let block = a.allocate(512 << (i % 4)).unwrap().unwrap();
                    if i % 3 == 0 {
                        assert!(a.record_stream(block.address, block.context, stream).unwrap());
                        a.backend().submit(stream);
                    }
                    a.free(block.context).unwrap();
                    if i % 50 == 0 {
                        a.backend().complete_all(stream);
                        a.empty_cache().unwrap();
                    }
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    a.backend().complete_all(StreamKey { device_type: 12, device_index: 0, id: 0 });
    a.backend().complete_all(StreamKey { device_type: 12, device_index: 0, id: 1 });
    a.empty_cache().unwrap();
    assert_eq!(a.backend().live_bytes(), 0);
    let s = a.stats();
    assert_eq!((s.active_requests.current, s.pending_blocks.current, s.cached_bytes.current), (0, 0, 0));
}

fn with(settings: &str) -> CachingAllocator<FakeBackend> {
    let mut s = Settings::default();
    s.apply(settings, "test", UnknownKeys::Reject).unwrap();
    CachingAllocator::new(FakeBackend::default(), s)
}

#[test]
fn above_the_threshold_requests_are_not_rounded() {
    let a = with("pinned_fit:rounded,pinned_max_round_threshold_mb:1,pinned_roundup_divisions:4");
    let block = a.allocate((3 << 20) + 1).unwrap().unwrap();
    assert_eq!(block.size, (3 << 20) + 512);
    a.free(block.context).unwrap();
    // A slightly smaller request reuses it: the waste is within one step.
    assert_eq!(a.allocate(3 << 20).unwrap().unwrap(), block);
    a.free(block.context).unwrap();
    // One that would waste more than a step (512 KiB here) does not.
    assert_ne!(a.allocate((2 << 20) + 1).unwrap().unwrap().address, block.address);
}

#[test]
fn a_block_one_class_larger_serves_a_request_at_the_top_of_its_class() {
    let a = with("pinned_fit:rounded,pinned_roundup_divisions:4");
    let larger = a.allocate(256 << 20).unwrap().unwrap();
    a.free(larger.context).unwrap();
    // 224 MiB is a class of its own; the 256 MiB block wastes one 32 MiB step.
    assert_eq!(a.allocate(224 << 20).unwrap().unwrap(), larger);
    a.free(larger.context).unwrap();
    // 200 MiB would waste more than a step: new memory.
    assert_ne!(a.allocate(200 << 20).unwrap().unwrap().address, larger.address);
}

#[test]
fn the_cache_cap_gives_back_the_oldest_blocks_first() {
    let a = with("pinned_max_cached_size_mb:3");
    let blocks: Vec<_> = (0..4).map(|_| a.allocate(1 << 20).unwrap().unwrap()).collect();
    for block in &blocks {
        a.free(block.context).unwrap();
    }
    let stats = a.stats();
    assert_eq!(stats.cached_bytes.current, 3 << 20);
    assert_eq!((stats.num_host_free, stats.allocations.current), (1, 3));
    assert!(!a.backend().memory().contains_key(&blocks[0].address), "the oldest went first");
    // Reuse and free again many times: the bookkeeping stays bounded and right.
    for _ in 0..1000 {
        let x = a.allocate(1 << 20).unwrap().unwrap();
        a.free(x.context).unwrap();
    }
    assert_eq!(a.stats().cached_bytes.current, 3 << 20);
    assert!(a.oldest.as_ref().unwrap().lock().unwrap().queue.len() <= 2 * 3 + 64);
    a.empty_cache().unwrap();
    assert_eq!(a.backend().live_bytes(), 0);
}

#[test]
fn the_reclaimer_recycles_blocks_without_the_allocation_path_polling() {
    let a = Arc::new(with("pinned_use_background_threads:True"));
    let reclaimer = a.start_reclaimer().unwrap();
    let block = a.allocate(512).unwrap().unwrap();
    a.record_stream(block.address, block.context, S1).unwrap();
    a.backend().submit(S1);
    a.free(block.context).unwrap();
    a.backend().complete_all(S1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.stats().pending_blocks.current != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(a.stats().pending_blocks.current, 0, "the reclaimer polled");
    assert_eq!(a.allocate(512).unwrap().unwrap().address, block.address);
    reclaimer.stop();
    // Stopped, the allocation path polls again.
    let again = a.allocate(512).unwrap().unwrap();
    a.record_stream(again.address, again.context, S1).unwrap();
    a.backend().submit(S1);
    a.free(again.context).unwrap();
    a.backend().complete_all(S1);
    assert_eq!(a.allocate(512).unwrap().unwrap().address, again.address);
    // Dropping the allocator while a reclaimer runs ends the thread too.
    let b = Arc::new(with("pinned_use_background_threads:True"));
    let orphan = b.start_reclaimer().unwrap();
    drop(b);
    drop(orphan);
}

#[test]
fn a_hit_polls_only_now_and_then() {
    let a = allocator();
    let waiting = a.allocate(512).unwrap().unwrap();
    a.record_stream(waiting.address, waiting.context, S1).unwrap();
    a.backend().submit(S1);
    a.free(waiting.context).unwrap();
    let cached = a.allocate(512).unwrap().unwrap();
    a.free(cached.context).unwrap();
    a.backend().complete_all(S1);
    // The cached block serves; within POLL_EVERY allocations a poll brings the
    // completed block back, and it is then the most recently cached.
    let mut polled_after = None;
    for i in 1..=POLL_EVERY {
        let block = a.allocate(512).unwrap().unwrap();
        a.free(block.context).unwrap();
        if block.address == waiting.address {
            polled_after = Some(i);
            break;
        }
        assert_eq!(block, cached);
    }
    assert!(polled_after.is_some_and(|i| i > 1 || POLL_EVERY == 1), "polled on every hit, or never: {polled_after:?}");
    assert_eq!(a.stats().pending_blocks.current, 0);
}

#[test]
fn class_statistics_count_blocks_per_class() {
    let a = with("pinned_fit:rounded");
    let x = a.allocate(1000).unwrap().unwrap();
    let _y = a.allocate(1000).unwrap().unwrap();
    let _z = a.allocate(5000).unwrap().unwrap();
    a.free(x.context).unwrap();
    let classes = a.class_stats();
    assert_eq!(classes.len(), 2);
    assert_eq!((classes[0].size, classes[0].allocations.current, classes[0].cached), (1024, 2, 1));
    assert_eq!((classes[1].size, classes[1].allocations.current, classes[1].cached), (8192, 1, 0));
}

#[test]
fn blocks_freed_by_an_exited_thread_stay_reachable() {
    let a = Arc::new(allocator());
    let other = a.clone();
    let block = std::thread::spawn(move || {
        let block = other.allocate(2048).unwrap().unwrap();
        other.free(block.context).unwrap();
        block
    })
    .join()
    .unwrap();
    assert_eq!(a.allocate(2048).unwrap().unwrap(), block, "taken from the exited thread's shard");
    assert_eq!(a.stats().cache_hits, 1);
}

#[test]
fn threads_with_a_cap_and_a_reclaimer_keep_every_count_right() {
    let a = Arc::new(with("pinned_max_cached_size_mb:1,pinned_use_background_threads:True,pinned_roundup_divisions:4"));
    let reclaimer = a.start_reclaimer().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || {
                let stream = StreamKey { device_type: 12, device_index: 0, id: t % 2 };
                for i in 0..2000 {
                    let block = a.allocate(4096 + 4096 * (i % 7)).unwrap().unwrap();
                    if i % 4 == 0 {
                        a.record_stream(block.address, block.context, stream).unwrap();
                        a.backend().submit(stream);
                    }
                    a.free(block.context).unwrap();
                    if i % 100 == 0 {
                        a.backend().complete_all(stream);
                    }
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    for id in 0..2 {
        a.backend().complete_all(StreamKey { device_type: 12, device_index: 0, id });
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.stats().pending_blocks.current != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let s = a.stats();
    assert!(s.cached_bytes.current <= 1 << 20);
    assert_eq!(s.active_requests.current, 0);
    assert_eq!(s.allocated_bytes.current as usize, a.backend().live_bytes());
    reclaimer.stop();
    a.empty_cache().unwrap();
    assert_eq!(a.backend().live_bytes(), 0);
}

/// Runs `body` on a thread that stays alive (holding its cache) until the returned sender is dropped.
fn on_live_thread<T: Send + 'static>(
    a: &Arc<CachingAllocator<FakeBackend>>,
    body: impl FnOnce(&CachingAllocator<FakeBackend>) -> T + Send + 'static,
) -> (T, std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (result_tx, result_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let other = a.clone();
    let thread = std::thread::spawn(move || {
        result_tx.send(body(&other)).unwrap();
        let _ = done_rx.recv();
    });
    (result_rx.recv().unwrap(), done_tx, thread)
}

#[test]
fn a_block_in_a_live_threads_own_stack_is_reachable_from_others() {
    let a = Arc::new(allocator());
    let (block, done, thread) = on_live_thread(&a, |a| {
        let block = a.allocate(2048).unwrap().unwrap();
        a.free(block.context).unwrap();
        block
    });
    assert_eq!(a.allocate(2048).unwrap().unwrap(), block, "claimed from the other thread's stack");
    assert_eq!(a.stats().cache_hits, 1);
    a.free(block.context).unwrap();
    drop(done);
    thread.join().unwrap();
}

#[test]
fn a_block_freed_on_another_thread_goes_back_to_the_thread_it_was_handed_out_on() {
    let a = Arc::new(allocator());
    let block = a.allocate(4096).unwrap().unwrap();
    let ((), done, thread) = on_live_thread(&a, move |a| a.free(block.context).unwrap());
    assert!(!a.caches.local().given_back().is_empty(), "on this thread's list of given-back blocks");
    // Counted as freed and cached on the way back, before its thread takes it.
    let counted = |s: Stats| (s.active_requests, s.active_bytes, s.cached_bytes);
    let freed = Stat { current: 0, peak: 4096, allocated: 4096, freed: 4096 };
    let cached = Stat { current: 4096, peak: 4096, allocated: 4096, freed: 0 };
    let expected = (Stat { current: 0, peak: 1, allocated: 1, freed: 1 }, freed, cached);
    assert_eq!(counted(a.stats()), expected);
    assert_eq!(a.stats().largest_free_block, 4096);
    // Statistics that list every cached block took it; the counts are the same.
    assert!(a.caches.local().given_back().is_empty());
    assert_eq!(counted(a.stats()), expected);
    assert_eq!(a.allocate(4096).unwrap().unwrap(), block, "taken from the thread's stack");
    drop(done);
    thread.join().unwrap();
    // Given back again, it is taken on the thread's next miss.
    std::thread::scope(|scope| scope.spawn(|| a.free(block.context).unwrap()).join().unwrap());
    assert!(!a.caches.local().given_back().is_empty());
    assert_eq!(a.allocate(4096).unwrap().unwrap(), block);
    assert!(a.caches.local().given_back().is_empty());
    assert_eq!((a.stats().cache_hits, a.backend().live_bytes()), (2, 4096));
    // Freed on its own thread, it stays in that thread's stack.
    a.free(block.context).unwrap();
    assert!(a.caches.local().given_back().is_empty());
    assert_eq!(a.stats().cached_bytes.current, 4096);
}

#[test]
fn given_back_blocks_are_reachable_from_every_thread() {
    let a = Arc::new(allocator());
    let (first, second) = (a.allocate(2048).unwrap().unwrap(), a.allocate(8192).unwrap().unwrap());
    let ((), done, thread) = on_live_thread(&a, move |a| {
        a.free(first.context).unwrap();
        a.free(second.context).unwrap();
    });
    // A third thread finds nothing else: it takes the given-back blocks.
    let (taken, done_third, third) = on_live_thread(&a, |a| a.allocate(2048).unwrap().unwrap());
    assert_eq!(taken, first);
    assert_eq!(a.backend().live_bytes(), 2048 + 8192, "no new memory");
    a.free(taken.context).unwrap();
    let (other, done_fourth, fourth) = on_live_thread(&a, |a| a.allocate(512).unwrap().unwrap());
    let ((), done_fifth, fifth) = on_live_thread(&a, move |a| a.free(other.context).unwrap());
    a.empty_cache().unwrap();
    assert_eq!(a.backend().live_bytes(), 0, "given-back and listed blocks all went back");
    assert_eq!(a.stats().cached_bytes.current, 0);
    for (done, thread) in [(done, thread), (done_third, third), (done_fourth, fourth), (done_fifth, fifth)] {
        drop(done);
        thread.join().unwrap();
    }
}

#[test]
fn empty_cache_reaches_the_stacks_of_live_threads_and_they_carry_on() {
    let a = Arc::new(allocator());
    let (_, done, thread) = on_live_thread(&a, |a| {
        let block = a.allocate(4096).unwrap().unwrap();
        a.free(block.context).unwrap();
    });
    assert_eq!(a.backend().live_bytes(), 4096);
    a.empty_cache().unwrap();
    assert_eq!(a.backend().live_bytes(), 0, "the block in the live thread's stack went back");
    assert_eq!(a.stats().cached_bytes.current, 0);
    // The thread's stack still lists the block's entry, which is stale now.
    let (again, done_again, thread_again) = on_live_thread(&a, |a| a.allocate(4096).unwrap().unwrap());
    assert_eq!(a.backend().live_bytes(), 4096, "served by new memory, not the stale entry");
    a.free(again.context).unwrap();
    let s = a.stats();
    assert_eq!((s.active_requests.current, s.cached_bytes.current, s.allocated_bytes.current), (0, 4096, 4096));
    for (done, thread) in [(done, thread), (done_again, thread_again)] {
        drop(done);
        thread.join().unwrap();
    }
}

#[test]
fn threads_that_exit_leave_their_cache_to_the_next() {
    let a = Arc::new(allocator());
    for _ in 0..20 {
        let other = a.clone();
        std::thread::spawn(move || {
            let block = other.allocate(512).unwrap().unwrap();
            other.free(block.context).unwrap();
        })
        .join()
        .unwrap();
    }
    // One cache, reused by each thread in turn (the shared one is listed only once used).
    assert_eq!(a.caches.caches().count(), 1);
    let s = a.stats();
    assert_eq!((s.active_requests.allocated, s.active_requests.freed, s.cache_hits), (20, 20, 19));
    assert_eq!(s.allocations.current, 1);
}

#[test]
fn peaks_count_every_threads_share() {
    let a = Arc::new(allocator());
    let (held, done, thread) = on_live_thread(&a, |a| a.allocate(1024).unwrap().unwrap());
    let mine = a.allocate(1024).unwrap().unwrap();
    assert_eq!(a.stats().active_bytes, Stat { current: 2048, peak: 2048, allocated: 2048, freed: 0 });
    a.free(held.context).unwrap();
    a.free(mine.context).unwrap();
    a.reset_peak_stats();
    a.reset_accumulated_stats();
    assert_eq!(a.stats().active_bytes, Stat { current: 0, peak: 0, allocated: 0, freed: 0 });
    let again = a.allocate(1024).unwrap().unwrap();
    a.free(again.context).unwrap();
    assert_eq!(a.stats().active_bytes, Stat { current: 0, peak: 1024, allocated: 1024, freed: 1024 });
    drop(done);
    thread.join().unwrap();
}

#[test]
fn release_on_miss_gives_back_as_much_as_the_miss_takes() {
    let a = with("pinned_fit:rounded,pinned_release_cached_on_miss:True");
    let small: Vec<_> = (0..4).map(|_| a.allocate(1024).unwrap().unwrap()).collect();
    small.iter().for_each(|block| a.free(block.context).unwrap());
    assert_eq!(a.backend().live_bytes(), 4096);
    // A 2 KiB miss gives back the two oldest 1 KiB blocks first.
    let large = a.allocate(2048).unwrap().unwrap();
    assert_eq!(a.backend().live_bytes(), 2048 + 2048);
    let s = a.stats();
    assert_eq!((s.cached_bytes.current, s.allocated_bytes.current, s.cache_misses), (2048, 4096, 5));
    // The newest two are still cached and serve hits.
    assert_eq!(a.allocate(1024).unwrap().unwrap(), small[3]);
    assert_eq!(a.allocate(1024).unwrap().unwrap(), small[2]);
    a.free(large.context).unwrap();
    // Without the setting, the same misses keep everything.
    let keep = with("pinned_fit:rounded");
    let small: Vec<_> = (0..4).map(|_| keep.allocate(1024).unwrap().unwrap()).collect();
    small.iter().for_each(|block| keep.free(block.context).unwrap());
    keep.allocate(2048).unwrap().unwrap();
    assert_eq!(keep.backend().live_bytes(), 4096 + 2048);
}

#[test]
fn a_thread_using_more_allocators_than_it_holds_caches_for_still_works() {
    let allocators: Vec<_> = (0..6).map(|_| allocator()).collect();
    for _ in 0..3 {
        for a in &allocators {
            let block = a.allocate(4096).unwrap().unwrap();
            a.free(block.context).unwrap();
        }
    }
    for a in &allocators {
        let s = a.stats();
        assert_eq!((s.allocations.current, s.cache_hits, s.active_requests.current), (1, 2, 0));
    }
}

const MIB: usize = 1 << 20;

/// An allocator that splits blocks, holding one cached block of 8 MiB.
fn splitting_with_8_mib_cached() -> (CachingAllocator<FakeBackend>, Allocation) {
    let a = with("pinned_split_blocks:True");
    let big = a.allocate(8 * MIB).unwrap().unwrap();
    a.free(big.context).unwrap();
    (a, big)
}

#[test]
fn a_split_block_serves_smaller_requests_and_merges_back_when_freed() {
    let (a, big) = splitting_with_8_mib_cached();
    let first = a.allocate(2 * MIB).unwrap().unwrap();
    assert_eq!((first.address, first.size), (big.address, 2 * MIB), "carved from the cached block");
    // What was left (6 MiB) is listed with 4 MiB blocks; a 1 MiB request is carved from it.
    let second = a.allocate(MIB).unwrap().unwrap();
    assert_eq!((second.address, second.size), (big.address + 2 * MIB, MIB), "carved from what was left");
    assert_eq!(a.backend().live_bytes(), 8 * MIB, "no new memory");
    let s = a.stats();
    assert_eq!(
        (s.cached_bytes.current, s.active_bytes.current, s.cache_misses, s.cache_hits),
        (5 * MIB as i64, 3 * MIB as i64, 1, 2)
    );
    // Small requests are never carved out of large blocks.
    let small = a.allocate(4096).unwrap().unwrap();
    assert_eq!(a.backend().live_bytes(), 8 * MIB + 4096);
    a.free(small.context).unwrap();
    // A part whose neighbour is in use cannot go back on its own.
    a.free(first.context).unwrap();
    a.empty_cache().unwrap();
    assert_eq!(a.backend().live_bytes(), 8 * MIB);
    let s = a.stats();
    assert_eq!(s.cached_bytes.current, 7 * MIB as i64);
    // Free on both sides of the part in use: 2 MiB before it, 5 MiB after.
    assert_eq!((s.idle_bytes, s.largest_free_block), (7 * MIB as i64, 5 * MIB as i64));
    // The last part freed merges all three back into the block the backend gave.
    a.free(second.context).unwrap();
    let s = a.stats();
    assert_eq!(s.cached_bytes.current, 8 * MIB as i64);
    assert_eq!((s.idle_bytes, s.largest_free_block), (8 * MIB as i64, 8 * MIB as i64));
    let whole = a.allocate(8 * MIB).unwrap().unwrap();
    assert_eq!((whole.address, whole.size), (big.address, 8 * MIB));
    a.free(whole.context).unwrap();
    a.empty_cache().unwrap();
    assert_eq!(a.backend().live_bytes(), 0);
    let s = a.stats();
    assert_eq!((s.cached_bytes.current, s.allocations.current, s.allocated_bytes.current), (0, 0, 0));
}

#[test]
fn parts_of_a_split_block_take_streams_by_context_or_address_and_wait_for_them() {
    let (a, _) = splitting_with_8_mib_cached();
    let part = a.allocate(2 * MIB).unwrap().unwrap();
    let rest = a.allocate(MIB).unwrap().unwrap();
    assert_eq!(rest.address, part.address + 2 * MIB);
    assert!(a.record_stream(rest.address, 0xdead_0000, S1).unwrap(), "found by its address");
    a.backend().submit(S1);
    a.free(rest.context).unwrap();
    a.free(part.context).unwrap();
    // `rest` waits for S1, so the memory is not whole yet.
    a.empty_cache().unwrap();
    assert_eq!(a.backend().live_bytes(), 8 * MIB);
    a.backend().complete_all(S1);
    a.empty_cache().unwrap();
    assert_eq!(a.backend().live_bytes(), 0);
}

#[test]
fn threads_splitting_and_merging_keep_every_count_right() {
    let hits = splitting_threads("pinned_fit:rounded,pinned_split_blocks:True,pinned_roundup_divisions:4");
    assert!(hits > 6000, "mostly served by splitting cached blocks: {hits} hits of 12000");
    splitting_threads("pinned_split_blocks:True");
    splitting_threads("pinned_split_blocks:True,pinned_release_cached_on_miss:True,pinned_max_cached_size_mb:2");
}

/// Four threads allocating random sizes up to 4 MiB, recording some on
/// streams, freeing the oldest of their last six, emptying the cache now and
/// then; returns the cache hits.
fn splitting_threads(settings: &str) -> i64 {
    const THREADS: u64 = 4;
    let a = Arc::new(with(settings));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || {
                let mut rng = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                let mut held = std::collections::VecDeque::new();
                for i in 0..3000 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let size = 512 + (rng % (4 << 20)) as usize;
                    let block = a.allocate(size).unwrap().unwrap();
                    assert!(block.size >= size);
                    if i % 5 == 0 {
                        let stream = StreamKey { device_type: 12, device_index: 0, id: (t % 2) as i64 };
                        a.record_stream(block.address, block.context, stream).unwrap();
                        a.backend().submit(stream);
                    }
                    held.push_back(block);
                    if held.len() > 6 {
                        a.free(held.pop_front().unwrap().context).unwrap();
                    }
                    if i % 200 == 0 {
                        a.backend().complete_all(StreamKey { device_type: 12, device_index: 0, id: (t % 2) as i64 });
                        a.empty_cache().unwrap();
                    }
                }
                held.into_iter().for_each(|block| a.free(block.context).unwrap());
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    for id in 0..2 {
        a.backend().complete_all(StreamKey { device_type: 12, device_index: 0, id });
    }
    a.empty_cache().unwrap();
    let s = a.stats();
    assert_eq!((s.active_requests.current, s.active_bytes.current, s.pending_blocks.current), (0, 0, 0));
    assert_eq!((s.cached_bytes.current, s.allocated_bytes.current, a.backend().live_bytes()), (0, 0, 0));
    s.cache_hits
}
