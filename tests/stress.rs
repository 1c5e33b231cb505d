//! Device-write canary stress, through the C API on the software driver.
//!
//! Threads allocate blocks of random sizes and take one of two roles per block:
//! - device user: puts device work on one or two random streams that fills the
//!   block with the thread's own 8-byte pattern after a delay (the driver's
//!   command latency, plus whatever is queued on the stream before it), records
//!   the streams and frees the block at once, while the fill is still queued;
//! - host user: fills the block with its own pattern, waits a little, and checks
//!   that every word still holds it, then frees it.
//!
//! Device users also write and check their own pattern before submitting. A
//! block handed out again before the device finished writing into it shows up
//! as a torn pattern: a violation. Another thread empties the cache all along.
//!
//! Short mode (the default, run by `cargo test`): 300,000 allocator calls per
//! configuration. Long mode: `XPU_HOST_STRESS_OPERATIONS=10000000` (scripts/test-long).
//! A negative control runs the same traffic without telling the allocator about
//! the streams, and must find violations: the canary can see what it looks for.

mod reliability_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reliability_support::*;

const SHORT_OPERATIONS: u64 = 300_000;
/// Freed blocks allowed to wait for their streams before threads slow down,
/// so that the queues on the streams stay bounded.
const MAX_PENDING: i64 = 2048;

#[derive(Default)]
struct Counts {
    /// Calls into the allocator: allocate, free, record_stream, stream_submit, empty_cache.
    operations: AtomicU64,
    allocations: AtomicU64,
    device_fills: AtomicU64,
    host_checks: AtomicU64,
    bytes_checked: AtomicU64,
    violations: AtomicU64,
    empty_caches: AtomicU64,
}

impl Counts {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

struct Plan {
    operations: u64,
    threads: u64,
    /// Streams per device; the child runs with ZE_SOFTWARE_DRIVER_DEVICES=2.
    streams: i64,
    /// Whether device users record their streams (false only in the negative control).
    record_streams: bool,
    /// One block in 100 of 1-3 MiB (XPU_HOST_STRESS_LARGE=1), for the sizes that split blocks.
    large: bool,
    seed: u64,
}

/// A block size: mostly small, sometimes up to 256 KiB (or 3 MiB with
/// `large`), always a multiple of 8.
fn random_size(rng: &mut Rng, large: bool) -> usize {
    let size = match rng.below(100) {
        0 if large => (1 << 20) + rng.below(2 << 20),
        0..=59 => 8 + rng.below(4096),
        60..=94 => 4096 + rng.below(60 << 10),
        _ => (64 << 10) + rng.below(192 << 10),
    };
    (size as usize).next_multiple_of(8)
}

fn words(data: usize, size: usize) -> &'static mut [u64] {
    // SAFETY: a live block of at least `size` bytes, 512-aligned, that only this
    // thread (and the device work it queued) touches until it is freed.
    unsafe { std::slice::from_raw_parts_mut(data as *mut u64, size / 8) }
}

/// Writes `pattern`, waits `hold`, checks it. Returns the first foreign word.
fn fill_and_check(data: usize, size: usize, pattern: u64, hold: Duration) -> Option<u64> {
    let block = words(data, size);
    block.fill(pattern);
    if hold.is_zero() {
        std::thread::yield_now();
    } else {
        std::thread::sleep(hold);
    }
    block.iter().copied().find(|&word| word != pattern)
}

fn worker(thread: u64, plan: &Plan, counts: &Counts) {
    let mut rng = Rng::new(plan.seed ^ (thread + 1).wrapping_mul(0x1234_5678_9abc_def1));
    let mut iteration = 0u64;
    while counts.operations.load(Ordering::Relaxed) < plan.operations {
        iteration += 1;
        // The emptier thread polls the events while workers wait here.
        while iteration % 64 == 0 && stats().pending_blocks.current > MAX_PENDING {
            std::thread::sleep(Duration::from_micros(200));
        }
        let size = random_size(&mut rng, plan.large);
        let (data, context) =
            allocate(size).unwrap_or_else(|(code, message)| panic!("allocate({size}): {code:?} {message}"));
        Counts::add(&counts.allocations, 1);
        // Host patterns have the top byte 0xA0 and device patterns 0xD0, each
        // with the thread and iteration, so a foreign word says who wrote it.
        let host_pattern = 0xA000_0000_0000_0000 | thread << 40 | iteration;
        let device_user = rng.chance(60);
        let hold = if device_user { Duration::ZERO } else { Duration::from_micros(rng.below(150)) };
        Counts::add(&counts.host_checks, 1);
        Counts::add(&counts.bytes_checked, size as u64);
        if let Some(foreign) = fill_and_check(data, size, host_pattern, hold) {
            if counts.violations.fetch_add(1, Ordering::Relaxed) < 5 {
                let what =
                    if plan.record_streams { "VIOLATION" } else { "torn block, as the negative control expects" };
                println!(
                    "reliability: {what}: thread {thread} block {data:#x} ({size} bytes) held {foreign:#018x}, \
                     not its pattern {host_pattern:#018x}"
                );
            }
        }
        let mut operations = 2; // allocate and free
        if device_user {
            let device_pattern = 0xD000_0000_0000_0000 | thread << 40 | iteration;
            let uses = if rng.chance(15) { 2 } else { 1 };
            for _ in 0..uses {
                let s = stream(rng.below(2) as i8, rng.below(plan.streams as u64) as i64);
                submit_fill(s, data, size, device_pattern).unwrap_or_else(|(code, m)| panic!("submit: {code:?} {m}"));
                Counts::add(&counts.device_fills, 1);
                operations += 1;
                if plan.record_streams {
                    assert_eq!(record(data, context, s), Ok(true));
                    operations += 1;
                }
            }
        }
        assert_eq!(free(context), XPU_HOST_SUCCESS, "{}", last_error());
        Counts::add(&counts.operations, operations);
    }
}

/// Runs the plan; returns the counts.
fn stress(plan: Plan) -> Arc<Counts> {
    let plan = Arc::new(plan);
    let counts = Arc::new(Counts::default());
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    // Without recorded streams (the negative control) empty_cache would hand
    // memory the device still writes into back to the driver: no emptier then.
    // It runs until every worker has finished: a worker waiting for pending
    // blocks to drain relies on its polls once the others are done.
    let emptier = {
        let (counts, done, plan) = (counts.clone(), done.clone(), plan.clone());
        std::thread::spawn(move || {
            while plan.record_streams && !done.load(Ordering::Relaxed) {
                assert_eq!(xpu_caching_host_allocator::abi::c_api::xpu_host_empty_cache(), XPU_HOST_SUCCESS);
                Counts::add(&counts.empty_caches, 1);
                Counts::add(&counts.operations, 1);
                std::thread::sleep(Duration::from_millis(3));
            }
        })
    };
    let workers: Vec<_> = (0..plan.threads)
        .map(|thread| {
            let (plan, counts) = (plan.clone(), counts.clone());
            std::thread::spawn(move || worker(thread, &plan, &counts))
        })
        .collect();
    for worker in workers {
        worker.join().expect("a stress thread failed");
    }
    done.store(true, Ordering::Relaxed);
    emptier.join().unwrap();
    let elapsed = started.elapsed();
    // One more block recorded on every stream: once it is reclaimed, every
    // fill queued before it has run, so the drain below frees no memory the
    // device may still write (this matters in the negative control, whose
    // cached blocks the device may still be writing until then).
    let (data, context) = allocate(8).unwrap();
    for device in 0..2 {
        for id in 0..plan.streams {
            assert_eq!(record(data, context, stream(device, id)), Ok(true));
        }
    }
    assert_eq!(free(context), XPU_HOST_SUCCESS);
    Counts::add(&counts.allocations, 1);
    // Reclaimed without emptying the cache: allocations poll the events.
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats().pending_blocks.current > 0 && Instant::now() < deadline {
        let (_, context) = allocate(8).unwrap();
        assert_eq!(free(context), XPU_HOST_SUCCESS);
        Counts::add(&counts.allocations, 1);
    }
    let at_end = drain(Duration::from_secs(30));
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "reliability: stress{}: {} operations ({} allocations, {} device fills, {} host checks of {} MiB, \
         {} concurrent empty_cache) by {} threads on {} streams in {:.1} s ({:.0} operations/s): {} violations",
        if plan.record_streams { "" } else { " without recorded streams (negative control)" },
        load(&counts.operations),
        load(&counts.allocations),
        load(&counts.device_fills),
        load(&counts.host_checks),
        load(&counts.bytes_checked) >> 20,
        load(&counts.empty_caches),
        plan.threads,
        2 * plan.streams,
        elapsed.as_secs_f64(),
        load(&counts.operations) as f64 / elapsed.as_secs_f64(),
        load(&counts.violations),
    );
    println!(
        "reliability: stress statistics: cache_hits={} cache_misses={} num_host_alloc={} peak pending={} peak allocated={} MiB",
        at_end.cache_hits,
        at_end.cache_misses,
        at_end.num_host_alloc,
        at_end.pending_blocks.peak,
        at_end.allocated_bytes.peak >> 20
    );
    // Everything went back: nothing in use, waiting or cached, and nothing left in the driver.
    assert_eq!(at_end.active_requests.current, 0);
    assert_eq!(at_end.pending_blocks.current, 0, "blocks still wait for streams 30 s after the last free");
    assert_eq!((at_end.allocations.current, at_end.cached_bytes.current), (0, 0));
    assert_eq!(at_end.cache_hits + at_end.cache_misses, load(&counts.allocations) as i64);
    assert_eq!(at_end.active_requests.allocated, load(&counts.allocations) as i64);
    let live = live_objects();
    assert_eq!((live.allocations, live.allocated_bytes), (0, 0), "the driver still holds host memory: {live:?}");
    counts
}

fn plan(record_streams: bool) -> Plan {
    Plan {
        operations: env_number("XPU_HOST_STRESS_OPERATIONS", SHORT_OPERATIONS),
        threads: env_number("XPU_HOST_STRESS_THREADS", 6),
        streams: env_number("XPU_HOST_STRESS_STREAMS", 4) as i64,
        record_streams,
        large: env_number("XPU_HOST_STRESS_LARGE", 0) == 1,
        seed: env_number("XPU_HOST_STRESS_SEED", 0x5eed),
    }
}

/// Runs `child` with the knobs every configuration runs with (two devices,
/// and a command latency so that device work lands well after the free), our
/// settings `configuration`, and the variables `extra`.
fn run_configuration(child: &str, configuration: &str, extra: &[(&str, &str)]) {
    let mut env = vec![
        ("ZE_SOFTWARE_DRIVER_DEVICES", "2"),
        ("ZE_SOFTWARE_DRIVER_COMMAND_LATENCY_US", "20"),
        ("XPU_CACHING_HOST_ALLOCATOR_CONF", configuration),
    ];
    env.extend_from_slice(extra);
    run_child(child, &env);
}

#[test]
fn canary_stress_default_settings() {
    // Exact fit: blocks of the request's aligned size, larger ones within the
    // budget's slack, cached blocks given back the largest first on misses.
    run_configuration("child_canary_stress", "", &[]);
}

#[test]
fn canary_stress_fine_classes_cap_and_reclaimer() {
    // Rounded fit's finer classes with next-class reuse, a 1 MiB cache cap
    // (oldest-first eviction all along) and the background reclaimer polling
    // the events.
    run_configuration(
        "child_canary_stress",
        "pinned_fit:rounded,pinned_roundup_divisions:4,pinned_max_cached_size_mb:1,\
         pinned_use_background_threads:True,pinned_max_round_threshold_mb:1",
        &[],
    );
}

#[test]
fn canary_stress_split_blocks_and_release_on_miss() {
    // Blocks of 1-3 MiB now and then are carved out of larger cached ones and
    // merged back; with exact fit the budget gives cached memory back on
    // misses, with rounded fit release on miss does.
    for configuration in [
        "pinned_split_blocks:True",
        "pinned_fit:rounded,pinned_split_blocks:True,pinned_release_cached_on_miss:True,pinned_roundup_divisions:2",
    ] {
        run_configuration("child_canary_stress", configuration, &[("XPU_HOST_STRESS_LARGE", "1")]);
    }
}

#[test]
#[ignore = "runs in a child process with driver knobs (canary_stress_*)"]
fn child_canary_stress() {
    let counts = stress(plan(true));
    assert_eq!(
        counts.violations.load(Ordering::Relaxed),
        0,
        "blocks were reused while the device still wrote into them"
    );
}

#[test]
fn canary_detects_reuse_when_streams_are_not_recorded() {
    // Rounded fit gives no memory back to the driver while the test runs, so
    // the device's late writes land in mapped memory where the canary sees
    // them. Exact fit may give a block back under them, and the driver's
    // copy then faults (as a GPU's would) instead of corrupting a canary.
    run_configuration("child_negative_control", "pinned_fit:rounded", &[("XPU_HOST_STRESS_OPERATIONS", "20000")]);
}

#[test]
#[ignore = "runs in a child process with driver knobs (canary_detects_reuse_when_streams_are_not_recorded)"]
fn child_negative_control() {
    let counts = stress(plan(false));
    assert!(
        counts.violations.load(Ordering::Relaxed) > 0,
        "without recorded streams blocks are reused under the device's writes: the canary must see it"
    );
}
