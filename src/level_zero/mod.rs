//! The backend over Level Zero: page-locked memory from `zeMemAllocHost` in one
//! context (small blocks as chunks of shared slabs, `slabs.rs`), and stream
//! events that are either recorded through hooks the host runtime registered
//! (a SYCL runtime owns its queues' command lists) or, without hooks, with
//! barriers on this library's own immediate command list per stream. It knows
//! nothing of PyTorch or C++.

mod context;
mod event_pool;
mod gate;
mod result;
mod slabs;
mod streams;

pub use context::Context;
pub use event_pool::PooledEvent;
pub use gate::close as close_gate;
pub use result::{LevelZeroError, ZeResult};
pub use streams::StreamHooks;

use level_zero_sys as ze;

use crate::caching::sync::lock;
use crate::caching::{BackendError, HostMemory, StreamEvents, StreamKey};
use event_pool::EventPool;
use result::check;
use slabs::{GaveBack, Slabs, LARGEST_CHUNK, SLAB_SIZE};
use std::sync::{Arc, Mutex};
use streams::OwnStreams;

/// All host memory is aligned like PyTorch's (`sycl::aligned_alloc_host(512, …)`).
const HOST_ALIGNMENT: usize = 512;

pub struct LevelZeroBackend {
    context: Context,
    recorder: Recorder,
    /// Taken by allocations and frees of small blocks only, which the core
    /// makes on its miss and release paths.
    slabs: Mutex<Slabs>,
}

enum Recorder {
    Hooks(Box<dyn StreamHooks>),
    Own { streams: OwnStreams, events: Arc<EventPool> },
}

/// An event the core waits on.
pub enum Event {
    /// From the host runtime's hook; `token` goes back to its release hook.
    Hooked { event: ze::ze_event_handle_t, token: usize },
    /// From this backend's own pool, perhaps shared with other blocks.
    Own(Arc<PooledEvent>),
}

// SAFETY: a Level Zero event handle may be queried, host-reset and released from
// any thread (zeEventQueryStatus and zeEventHostReset are thread-safe, docs/LEVEL_ZERO.md).
unsafe impl Send for Event {}

impl LevelZeroBackend {
    pub fn new(context: Context, hooks: Option<Box<dyn StreamHooks>>) -> LevelZeroBackend {
        let recorder = match hooks {
            Some(hooks) => Recorder::Hooks(hooks),
            None => Recorder::Own { streams: OwnStreams::new(), events: Arc::new(EventPool::new()) },
        };
        LevelZeroBackend { context, recorder, slabs: Mutex::new(Slabs::default()) }
    }

    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Runs `submit` with this library's command list for `stream`, under the lock
    /// that keeps two threads from appending to it at once. `None` when events are
    /// recorded through the host runtime's hooks: the runtime owns its streams.
    pub fn with_stream_command_list<T>(
        &self,
        stream: StreamKey,
        submit: impl FnOnce(ze::ze_command_list_handle_t) -> T,
    ) -> Option<Result<T, LevelZeroError>> {
        match &self.recorder {
            Recorder::Hooks(_) => None,
            Recorder::Own { streams, .. } => Some(match gate::enter() {
                Some(_pass) => streams.with_list(&self.context, stream, submit),
                None => Err(exiting()),
            }),
        }
    }
}

impl HostMemory for LevelZeroBackend {
    /// Inlined into the allocator's miss path, which then makes no call but
    /// the driver's for a block larger than a chunk (failures are reported
    /// out of line).
    #[inline(always)]
    fn allocate(&self, size: usize) -> Result<usize, BackendError> {
        if size <= LARGEST_CHUNK {
            return self.allocate_chunk(size);
        }
        self.allocate_host(size)
    }

    fn free(&self, address: usize, size: usize) -> Result<(), BackendError> {
        if size <= LARGEST_CHUNK {
            // The books' lock is let go before the driver call.
            let gave_back = lock(&self.slabs).give_back(address, size);
            match gave_back {
                Ok(GaveBack::Kept) => return Ok(()),
                Ok(GaveBack::SlabEmpty(base)) => return self.free_host(base),
                Ok(GaveBack::NotAChunk) => {}
                Err(message) => return Err(BackendError::Failed(message)),
            }
        }
        self.free_host(address)
    }

    fn unused_bytes(&self) -> usize {
        lock(&self.slabs).unused_bytes()
    }
}

impl LevelZeroBackend {
    /// A chunk of a slab with room, or of a new slab. Refused once the gate
    /// is closed, as every allocation is: the process is unloading.
    #[inline(never)]
    fn allocate_chunk(&self, size: usize) -> Result<usize, BackendError> {
        let Some(_pass) = gate::enter() else { return Err(exiting().into()) };
        let mut slabs = lock(&self.slabs);
        if let Some(address) = slabs.take(size) {
            return Ok(address);
        }
        let base = self.allocate_host(SLAB_SIZE)?;
        Ok(slabs.add(base, size))
    }

    #[inline(always)]
    fn allocate_host(&self, size: usize) -> Result<usize, BackendError> {
        let desc = ze::ze_host_mem_alloc_desc_t {
            stype: ze::ZE_STRUCTURE_TYPE_HOST_MEM_ALLOC_DESC,
            pNext: std::ptr::null(),
            flags: 0,
        };
        let Some(_pass) = gate::enter() else { return Err(exiting().into()) };
        let mut ptr = std::ptr::null_mut();
        // SAFETY: the context handle is live for the backend's lifetime, and desc
        // and ptr are valid for the duration of the call.
        let result = unsafe { ze::zeMemAllocHost(self.context.handle(), &desc, size, HOST_ALIGNMENT, &mut ptr) };
        match result {
            ze::ZE_RESULT_SUCCESS if !ptr.is_null() => Ok(ptr as usize),
            _ => Err(allocation_failed(size, result)),
        }
    }

    fn free_host(&self, address: usize) -> Result<(), BackendError> {
        let Some(_pass) = gate::enter() else { return Err(exiting().into()) };
        // SAFETY: the address came from zeMemAllocHost in this context, and the
        // core frees it once (a slab once its last chunk is back), after every
        // stream that used it is done.
        check("zeMemFree", unsafe { ze::zeMemFree(self.context.handle(), address as *mut _) })
            .map_err(|error| BackendError::Failed(error.to_string()))
    }
}

impl StreamEvents for LevelZeroBackend {
    type Event = Event;

    fn check_stream(&self, stream: StreamKey) -> Result<(), BackendError> {
        match &self.recorder {
            Recorder::Hooks(_) => Ok(()),
            Recorder::Own { .. } => self.context.device(stream.device_index).map(|_| ()).map_err(BackendError::from),
        }
    }

    fn record(&self, stream: StreamKey) -> Result<Option<Event>, BackendError> {
        let Some(_pass) = gate::enter() else { return Err(exiting().into()) };
        match &self.recorder {
            Recorder::Hooks(hooks) => hooks
                .record(stream)
                .map(|recorded| recorded.map(|(event, token)| Event::Hooked { event, token }))
                .map_err(BackendError::Failed),
            Recorder::Own { streams, events } => streams
                .record_barrier(&self.context, stream, events)
                .map(|event| Some(Event::Own(event)))
                .map_err(BackendError::from),
        }
    }

    fn is_complete(&self, event: &Event) -> Result<bool, BackendError> {
        let handle = match event {
            Event::Hooked { event, .. } => *event,
            Event::Own(event) if event.seen_complete() => return Ok(true),
            Event::Own(event) => event.handle(),
        };
        let Some(_pass) = gate::enter() else { return Err(exiting().into()) };
        // SAFETY: the event stays live until released, which takes it by value.
        match unsafe { ze::zeEventQueryStatus(handle) } {
            ze::ZE_RESULT_SUCCESS => {
                if let Event::Own(event) = event {
                    event.set_seen_complete();
                }
                Ok(true)
            }
            ze::ZE_RESULT_NOT_READY => Ok(false),
            other => Err(BackendError::Failed(format!("zeEventQueryStatus returned {}", ZeResult(other)))),
        }
    }

    fn release(&self, event: Event) {
        let Some(_pass) = gate::enter() else { return };
        match (event, &self.recorder) {
            (Event::Hooked { event, token }, Recorder::Hooks(hooks)) => hooks.release(event, token),
            // The pool takes it back when its last holder lets go.
            (Event::Own(event), Recorder::Own { .. }) => drop(event),
            _ => unreachable!("an event is released to the recorder that made it"),
        }
    }
}

/// The error of a failed `zeMemAllocHost`; out of line, so that the
/// allocator's miss path, into which `allocate` is inlined, stays short.
#[cold]
#[inline(never)]
fn allocation_failed(size: usize, result: ze::ze_result_t) -> BackendError {
    LevelZeroError::call(&format!("zeMemAllocHost({size} bytes)"), result).into()
}

fn exiting() -> LevelZeroError {
    LevelZeroError::invalid("the process is exiting: no more Level Zero calls".into())
}

impl From<LevelZeroError> for BackendError {
    fn from(error: LevelZeroError) -> BackendError {
        match error.result {
            Some(ze::ZE_RESULT_ERROR_OUT_OF_HOST_MEMORY | ze::ZE_RESULT_ERROR_OUT_OF_DEVICE_MEMORY) => {
                BackendError::OutOfMemory(error.to_string())
            }
            _ => BackendError::Failed(error.to_string()),
        }
    }
}
