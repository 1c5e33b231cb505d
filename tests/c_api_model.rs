//! The fuzzer's model of the C API through the software driver
//! (fuzz/src/c_api_model.rs), replayed on seeded random call sequences so
//! that `cargo test` checks it too; scripts/test-long fuzzes it.
//! XPU_HOST_C_API_SEQUENCES sets how many sequences (default 100).

#[path = "../fuzz/src/bytes.rs"]
mod bytes;
#[path = "../fuzz/src/c_api_model.rs"]
mod c_api_model;
#[path = "../fuzz/src/history_model.rs"]
mod history_model;
#[path = "../fuzz/src/pool_model.rs"]
mod pool_model;
mod reliability_support;

use reliability_support::{env_number, require_driver, Rng};

#[test]
fn random_c_api_sequences_follow_the_model() {
    require_driver();
    let sequences = env_number("XPU_HOST_C_API_SEQUENCES", 100);
    let mut total = c_api_model::Report::default();
    for seed in 0..sequences {
        let mut rng = Rng::new(seed + 1000);
        let length = 16 + rng.below(800) as usize;
        let bytes: Vec<u8> = (0..length).map(|_| rng.next() as u8).collect();
        let report = std::panic::catch_unwind(|| c_api_model::run(&bytes))
            .unwrap_or_else(|_| panic!("C API sequence {seed} broke the model"));
        total.calls += report.calls;
        total.hostile += report.hostile;
        total.captures += report.captures;
        total.pooled += report.pooled;
        total.held += report.held;
        total.history_entries += report.history_entries;
    }
    println!(
        "reliability: C API model: {sequences} random sequences, {} calls through the software driver ({} captures, \
         {} allocations from private pools, {} captured blocks kept until their pool's release, {} bad pool, hook \
         and history calls, {} trace entries checked): 0 violations",
        total.calls, total.captures, total.pooled, total.held, total.hostile, total.history_entries
    );
}
