//! The fuzzer's model of the caching core (fuzz/src/core_model.rs), replayed
//! on seeded random operation sequences so that `cargo test` checks it too;
//! scripts/test-long runs the coverage-guided fuzzer on it for a fixed time.
//! XPU_HOST_MODEL_SEQUENCES sets how many sequences (default 200);
//! XPU_HOST_MODEL_ONLY=n replays sequence n alone.

#[path = "../fuzz/src/bytes.rs"]
mod bytes;
#[path = "../fuzz/src/core_model.rs"]
mod core_model;
#[path = "../src/caching/fake_backend.rs"]
#[allow(dead_code)] // the model uses only part of it, the unit tests the rest
mod fake_backend;
#[path = "../fuzz/src/history_model.rs"]
mod history_model;
#[path = "../fuzz/src/pool_model.rs"]
mod pool_model;
mod reliability_support;

use fake_backend::FakeBackend;
use reliability_support::{env_number, Rng};
// `caching` for fake_backend.rs, which names the core's types by `crate::caching`.
use xpu_caching_host_allocator::caching::{self, CachingAllocator, Settings};

/// Found by the model: after reset_accumulated_stats, the per-class statistics
/// dropped classes that still held blocks (they listed classes by their
/// accumulated count only).
#[test]
fn class_statistics_keep_classes_holding_blocks_after_an_accumulated_reset() {
    let a = CachingAllocator::new(FakeBackend::default(), Settings::default());
    let block = a.allocate(4096).unwrap().unwrap();
    a.free(block.context).unwrap();
    a.reset_accumulated_stats();
    let classes = a.class_stats();
    assert_eq!(classes.len(), 1, "the 4096-byte class still holds a cached block");
    assert_eq!((classes[0].size, classes[0].allocations.current, classes[0].cached), (4096, 1, 1));
}

#[test]
fn random_sequences_follow_the_model() {
    let sequences = env_number("XPU_HOST_MODEL_SEQUENCES", 200);
    let mut total = core_model::Report::default();
    // XPU_HOST_MODEL_ONLY=n replays sequence n alone (with XPU_HOST_MODEL_TRACE=1, step by step).
    let only = std::env::var("XPU_HOST_MODEL_ONLY").ok().and_then(|n| n.trim().parse::<u64>().ok());
    for seed in (0..sequences).filter(|seed| only.is_none_or(|only| only == *seed)) {
        let mut rng = Rng::new(seed + 1);
        let length = 16 + rng.below(1024) as usize;
        let bytes: Vec<u8> = (0..length).map(|_| rng.next() as u8).collect();
        let report = std::panic::catch_unwind(|| core_model::run(&bytes)).unwrap_or_else(|_| {
            panic!("sequence {seed} broke the model (XPU_HOST_MODEL_TRACE=1 prints its operations)")
        });
        total.operations += report.operations;
        total.hostile += report.hostile;
        total.faults += report.faults;
        total.captures += report.captures;
        total.pooled += report.pooled;
        total.held += report.held;
        total.history_entries += report.history_entries;
        total.elsewhere += report.elsewhere;
    }
    println!(
        "reliability: model: {sequences} random sequences, {} operations ({} hostile inputs, {} faults injected, \
         {} captures, {} allocations from private pools, {} captured blocks kept until their pool's release, \
         {} trace entries checked, {} calls on a thread of their own): 0 violations",
        total.operations,
        total.hostile,
        total.faults,
        total.captures,
        total.pooled,
        total.held,
        total.history_entries,
        total.elsewhere
    );
}
