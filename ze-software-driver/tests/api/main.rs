//! Integration tests of the software driver through the real Level Zero loader.
//! They call only the public Level Zero API; the driver is the one that
//! ZE_ENABLE_ALT_DRIVERS names, set before the process starts:
//!
//! ```text
//! cargo build -p ze-software-driver
//! ZE_ENABLE_ALT_DRIVERS=$CARGO_TARGET_DIR/debug/libze_software_driver.so cargo test -p ze-software-driver
//! ```
//!
//! Tests that need a knob re-run this executable for one `#[ignore]`d child
//! test with the knob in the child's environment, and check its exit status
//! and stderr.

#[macro_use]
mod common;

mod artifact;
mod command_lists;
mod contexts;
mod counter_based;
mod discovery;
mod events;
mod knobs;
mod leaks;
mod memory;
mod queues;
mod strict;
