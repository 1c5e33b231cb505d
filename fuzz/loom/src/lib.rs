//! The caching core's block, pending-queue and shard modules, compiled here
//! under `--cfg loom` (their `use` lines then take loom's atomics and locks),
//! and the loom checks of them. (stats.rs and size_class.rs come along as
//! shards.rs uses them; their std atomics are not part of the checks.)
#![allow(unexpected_cfgs)]
#![cfg(loom)]
#![allow(dead_code, unused_imports)]

#[path = "../../../src/caching/backend.rs"]
mod backend;
#[path = "../../../src/caching/block.rs"]
mod block;
#[path = "../../../src/caching/hash.rs"]
mod hash;
#[path = "../../../src/caching/pending.rs"]
mod pending;
#[path = "../../../src/caching/shards.rs"]
mod shards;
#[path = "../../../src/caching/size_class.rs"]
mod size_class;
#[path = "../../../src/caching/stats.rs"]
mod stats;

pub mod checks;
