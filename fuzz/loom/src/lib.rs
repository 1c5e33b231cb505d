//! The caching core's block, pending-queue, shard, thread-stack and
//! returned-blocks modules,
//! compiled here under `--cfg loom` (their `use` lines then take loom's
//! atomics and locks), and the loom checks of them. (size_class.rs comes
//! along as shards.rs uses it, spin_lock.rs and sync.rs as block.rs does.)
#![cfg(loom)]
// The core's files are compiled here for a few of their items; the rest, and
// the imports only they use, go unused.
#![allow(dead_code, unused_imports)]

#[path = "../../../src/caching/backend.rs"]
mod backend;
#[path = "../../../src/caching/block.rs"]
mod block;
#[path = "../../../src/caching/hash.rs"]
mod hash;
#[path = "../../../src/caching/pending.rs"]
mod pending;
#[path = "../../../src/caching/remote.rs"]
mod remote;
#[path = "../../../src/caching/shards.rs"]
mod shards;
#[path = "../../../src/caching/size_class.rs"]
mod size_class;
#[path = "../../../src/caching/spin_lock.rs"]
mod spin_lock;
#[path = "../../../src/caching/stack.rs"]
mod stack;
#[path = "../../../src/caching/sync.rs"]
mod sync;

pub mod checks;
