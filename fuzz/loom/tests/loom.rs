//! Runs the loom checks: `RUSTFLAGS="--cfg loom" cargo test --release` in fuzz/loom.
#![cfg(loom)]

use xpu_caching_host_allocator_loom::checks;

#[test]
fn record_races_free_and_double_free() {
    checks::record_races_free_and_double_free();
}

#[test]
fn two_records_race_free() {
    checks::two_records_race_free();
}

#[test]
fn last_event_is_seen_once() {
    checks::last_event_is_seen_once();
}

#[test]
fn stale_entries_do_not_match() {
    checks::stale_entries_do_not_match();
}

#[test]
fn an_entry_is_claimed_once() {
    checks::an_entry_is_claimed_once();
}

#[test]
fn a_part_is_taken_or_merged_never_both() {
    checks::a_part_is_taken_or_merged_never_both();
}

#[test]
fn pending_queues_poll_each_event_once() {
    checks::pending_queues_poll_each_event_once();
}

#[test]
fn a_cached_block_is_taken_once() {
    checks::a_cached_block_is_taken_once();
}

#[test]
fn a_stack_read_while_its_owner_changes_it() {
    checks::a_stack_read_while_its_owner_changes_it();
}

#[test]
fn tag_survives_a_racing_record() {
    checks::tag_survives_a_racing_record();
}

#[test]
fn tagged_block_is_not_cached_by_a_free() {
    checks::tagged_block_is_not_cached_by_a_free();
}

#[test]
fn given_back_blocks_are_taken_once() {
    checks::given_back_blocks_are_taken_once();
}
