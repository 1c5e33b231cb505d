//! What the caching core needs from the machine underneath it, one trait per
//! capability: host memory to hand out, and events that tell when a stream is
//! done with it. The Level Zero backend implements both; unit tests use an
//! in-process fake.

use std::fmt;

/// A stream, as PyTorch names one (`c10::Stream`): an opaque key. The core never
/// decodes it; it only keeps one pending queue per distinct value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub device_type: i8,
    pub device_index: i8,
    pub id: i64,
}

/// Why the backend could not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendError {
    /// The memory is not there; the core empties its cache and tries once more.
    OutOfMemory(String),
    /// Anything else, with the backend's own explanation.
    Failed(String),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::OutOfMemory(what) | BackendError::Failed(what) => f.write_str(what),
        }
    }
}

/// Page-locked host memory. Addresses are plain integers: the core never touches
/// the memory, it only hands addresses out and back.
pub trait HostMemory: Send + Sync {
    /// Allocates `size` (> 0) bytes aligned to at least 512.
    fn allocate(&self, size: usize) -> Result<usize, BackendError>;
    /// Returns memory from [`HostMemory::allocate`]; no stream uses it any more.
    fn free(&self, address: usize, size: usize) -> Result<(), BackendError>;
    /// Bytes held from the system beyond the blocks handed out and not yet
    /// returned: with small blocks carved out of larger pieces of memory, the
    /// pieces' free room, which goes back only with a piece's last block.
    fn unused_bytes(&self) -> usize {
        0
    }
}

/// Events recorded on streams: "everything submitted to this stream so far is done".
pub trait StreamEvents: Send + Sync {
    type Event: Send;
    /// Whether events can be recorded on `stream` at all (its device exists):
    /// asked before a stream is accepted for a block, so that a bad stream is
    /// refused up front rather than discovered when the block is freed.
    fn check_stream(&self, stream: StreamKey) -> Result<(), BackendError>;
    /// Records an event that completes once all work submitted to `stream` before
    /// this call has completed; `None` if that work has all completed already,
    /// so that there is nothing to wait for.
    fn record(&self, stream: StreamKey) -> Result<Option<Self::Event>, BackendError>;
    /// Polls, never blocks.
    fn is_complete(&self, event: &Self::Event) -> Result<bool, BackendError>;
    /// Gives a completed (or abandoned) event back for reuse.
    fn release(&self, event: Self::Event);
}

/// Everything the caching core runs on.
pub trait Backend: HostMemory + StreamEvents {}
impl<T: HostMemory + StreamEvents> Backend for T {}
