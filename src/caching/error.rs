//! Everything the caching core can refuse, with enough words to act on.

use std::fmt;

use super::pools::PoolId;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The size is beyond any block: rounding or aligning it would overflow,
    /// or (exact fit) it is over `isize::MAX`, more than any host can map.
    SizeTooLarge { requested: usize },
    /// The backend has no memory, even after the cache was emptied.
    OutOfMemory { requested: usize, size: usize, detail: String },
    /// A context that is not one of this allocator's blocks.
    UnknownBlock { context: usize },
    /// A block that is not allocated: freed twice, or already given back.
    NotAllocated { context: usize },
    /// The backend failed.
    Backend(String),
    /// A private pool named `{0, 0}`, which is the default pool's name.
    DefaultPool,
    /// A capture was begun before the hooks that tell the current stream were set.
    NoCaptureHooks,
    /// A capture already records to the pool, or one is under way.
    PoolBusy(String),
    /// No such private pool, for the reason given.
    UnknownPool { id: PoolId, why: &'static str },
    /// History recorded with room for no entry.
    NoHistoryRoom,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::SizeTooLarge { requested } => {
                write!(f, "cannot allocate {requested} bytes: the size is too large for a block")
            }
            Error::OutOfMemory { requested, size, detail } => write!(
                f,
                "out of pinned host memory: {requested} bytes requested ({size} bytes with rounding), \
                 failed after emptying the cache and retrying: {detail}"
            ),
            Error::UnknownBlock { context } => {
                write!(f, "context {context:#x} is not a block of this allocator")
            }
            Error::NotAllocated { context } => {
                write!(f, "block {context:#x} is not allocated: freed twice, or freed after it was already returned")
            }
            Error::Backend(detail) => f.write_str(detail),
            Error::DefaultPool => f.write_str("pool (0, 0) is the default pool; a private pool needs another id"),
            Error::NoCaptureHooks => f.write_str(
                "no capture hooks to tell the current stream: set them (xpu_host_set_capture_hooks) before a capture",
            ),
            Error::PoolBusy(why) => f.write_str(why),
            Error::UnknownPool { id, why } => write!(f, "no private pool {}: {why}", super::pools::show(*id)),
            Error::NoHistoryRoom => f.write_str("history needs room for at least one entry (max_entries 0)"),
        }
    }
}

impl std::error::Error for Error {}
