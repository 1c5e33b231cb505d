//! The caching core's block and pending-queue modules, compiled here under
//! `--cfg loom` (their `use` lines then take loom's atomics and locks), and the
//! loom checks of them.
#![allow(unexpected_cfgs)]
#![cfg(loom)]
#![allow(dead_code, unused_imports)]

#[path = "../../../src/caching/backend.rs"]
mod backend;
#[path = "../../../src/caching/block.rs"]
mod block;
#[path = "../../../src/caching/pending.rs"]
mod pending;

pub mod checks;
