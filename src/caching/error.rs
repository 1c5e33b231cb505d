//! Everything the caching core can refuse, with enough words to act on.

use std::fmt;

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
        }
    }
}

impl std::error::Error for Error {}
