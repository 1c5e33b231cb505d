//! The C API of memory history: PyTorch 2.15's `record_history`,
//! `get_traces`, `get_segments` and external registrations, with contexts
//! that the caller's recorder makes and the library keeps opaque.

// The types are named as C programs see them in the generated header.
#![allow(non_camel_case_types)]

use std::ffi::c_void;
use std::sync::Arc;

use super::c_api::xpu_host_stream;
use super::capture_api::xpu_host_pool_id;
use super::error::{ffi_call, xpu_host_result, Failure};
use super::instance::{allocator, started};
use super::sized::{self, CarriesSize};
use crate::caching::{self, HistoryContext, RecordContext, Recorder};

/// What a trace entry records; the numbers are those of c10's `TraceEntry::Action`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub enum xpu_host_trace_action {
    /// A block handed out.
    XPU_HOST_TRACE_ALLOC = 0,
    /// A free asked for (the block may still wait for stream events).
    XPU_HOST_TRACE_FREE_REQUESTED = 1,
    /// A freed block back in a free list.
    XPU_HOST_TRACE_FREE_COMPLETED = 2,
    /// Memory from the driver.
    XPU_HOST_TRACE_SEGMENT_ALLOC = 3,
    /// Memory given back to the driver.
    XPU_HOST_TRACE_SEGMENT_FREE = 4,
}

/// When contexts are gathered; the numbers are those of c10's `RecordContext`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub enum xpu_host_record_context {
    /// No contexts.
    XPU_HOST_RECORD_CONTEXT_NEVER = 0,
    /// Contexts of live blocks (segments) only.
    XPU_HOST_RECORD_CONTEXT_STATE = 1,
    /// Also in the trace entries of allocations.
    XPU_HOST_RECORD_CONTEXT_ALLOC = 2,
    /// Also for frees.
    XPU_HOST_RECORD_CONTEXT_ALL = 3,
}

/// The caller's context recorder. `gather` returns an opaque context (or
/// null) for the allocation or free being recorded; `release` is called once
/// for each non-null context `gather` returned, when the library keeps it no
/// longer. Both are called from any thread, without the allocator's locks
/// held. `user_data` and both functions must stay valid for the life of the process.
#[repr(C)]
pub struct xpu_host_history_recorder {
    /// `sizeof(xpu_host_history_recorder)`, set by the caller.
    pub size: usize,
    pub user_data: *mut c_void,
    pub gather: Option<unsafe extern "C" fn(user_data: *mut c_void) -> *mut c_void>,
    pub release: Option<unsafe extern "C" fn(user_data: *mut c_void, context: *mut c_void)>,
}

// SAFETY: repr(C), `size` first; zeroed, the pointer is null and the functions None.
unsafe impl CarriesSize for xpu_host_history_recorder {
    const NAME: &'static str = "xpu_host_history_recorder";
}

struct CRecorder {
    user_data: usize,
    gather: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    release: unsafe extern "C" fn(*mut c_void, *mut c_void),
}

impl Recorder for CRecorder {
    fn gather(&self) -> usize {
        // SAFETY: the host promised the recorder may be called from any thread with its user data.
        unsafe { (self.gather)(self.user_data as *mut c_void) as usize }
    }

    fn release(&self, context: usize) {
        // SAFETY: as for gather; `context` is one gather returned, released once.
        unsafe { (self.release)(self.user_data as *mut c_void, context as *mut c_void) }
    }
}

/// Turns memory history on, keeping at most `max_entries` trace entries (a
/// ring: the oldest go first), or off. `when`, an `xpu_host_record_context`,
/// says which contexts are gathered; `recorder` may be null (no contexts).
/// `clear` drops the entries kept so far. Turning it on again replaces the
/// recorder, `when` and the maximum. `max_entries` 0 with `enabled`, or a
/// `when` out of range, is `XPU_HOST_ERROR_INVALID_ARGUMENT`. Starts the
/// allocator, as [`super::c_api::xpu_host_init`] does: settings come first.
///
/// # Safety
/// `recorder` is null or points at an `xpu_host_history_recorder` whose
/// `size` is set and readable.
#[no_mangle]
pub unsafe extern "C" fn xpu_host_record_history(
    enabled: bool,
    max_entries: usize,
    when: u32,
    recorder: *const xpu_host_history_recorder,
    clear: bool,
) -> xpu_host_result {
    ffi_call(|| {
        let recorder = if recorder.is_null() {
            None
        } else {
            // SAFETY: non-null; the caller promises `recorder->size` readable bytes.
            let recorder = unsafe { sized::read(recorder) }?;
            let (Some(gather), Some(release)) = (recorder.gather, recorder.release) else {
                return Err(Failure::invalid("a recorder needs both its gather and its release function"));
            };
            Some(Arc::new(CRecorder { user_data: recorder.user_data as usize, gather, release }) as Arc<dyn Recorder>)
        };
        // A number, not the enum: C may pass any value, and an enum out of range is undefined in Rust.
        use xpu_host_record_context::*;
        let when = match when {
            w if w == XPU_HOST_RECORD_CONTEXT_NEVER as u32 => RecordContext::Never,
            w if w == XPU_HOST_RECORD_CONTEXT_STATE as u32 => RecordContext::State,
            w if w == XPU_HOST_RECORD_CONTEXT_ALLOC as u32 => RecordContext::Alloc,
            w if w == XPU_HOST_RECORD_CONTEXT_ALL as u32 => RecordContext::All,
            other => return Err(Failure::invalid(format!("when is {other}, not an xpu_host_record_context"))),
        };
        Ok(allocator()?.record_history(enabled, max_entries, when, recorder, clear)?)
    })
}

/// Whether memory history is being recorded.
#[no_mangle]
pub extern "C" fn xpu_host_history_enabled() -> bool {
    super::error::catch_panic(|| Ok(started().is_some_and(|allocator| allocator.history_enabled()))).unwrap_or(false)
}

fn context_pointer(context: &Option<Arc<HistoryContext>>) -> *mut c_void {
    context.as_ref().map_or(std::ptr::null_mut(), |context| context.value() as *mut c_void)
}

/// One trace entry, as [`xpu_host_get_traces`] shows it.
#[repr(C)]
pub struct xpu_host_trace_entry {
    /// `sizeof(xpu_host_trace_entry)` as the library knows it: fields past a
    /// caller's own `sizeof` are newer than its header.
    pub size: usize,
    pub action: xpu_host_trace_action,
    pub address: usize,
    pub bytes: usize,
    /// The current stream of an allocation made while a capture was under
    /// way; `device_type` -1 when none.
    pub stream: xpu_host_stream,
    /// `{0, 0}`: the default pool.
    pub pool: xpu_host_pool_id,
    /// Microseconds since the Unix epoch.
    pub time_us: i64,
    /// The recorder's context, or null; valid during the visit only.
    pub context: *mut c_void,
}

/// Visits one entry; returns false to stop.
pub type xpu_host_trace_visitor =
    Option<unsafe extern "C" fn(user_data: *mut c_void, entry: *const xpu_host_trace_entry) -> bool>;

const NO_STREAM: xpu_host_stream = xpu_host_stream { device_type: -1, device_index: -1, id: 0 };

/// Calls `visit` with each trace entry kept, oldest first, on the calling
/// thread and without the allocator's locks held (it may call the
/// allocator). Works with recording on or off; nothing is visited before the
/// allocator starts.
///
/// # Safety
/// `visit` is a valid function.
#[no_mangle]
pub unsafe extern "C" fn xpu_host_get_traces(visit: xpu_host_trace_visitor, user_data: *mut c_void) -> xpu_host_result {
    ffi_call(|| {
        let visit = visit.ok_or_else(|| Failure::invalid("visit is null"))?;
        let entries = started().map(|allocator| allocator.traces()).unwrap_or_default();
        for entry in &entries {
            let action = match entry.action {
                caching::Action::Alloc => xpu_host_trace_action::XPU_HOST_TRACE_ALLOC,
                caching::Action::FreeRequested => xpu_host_trace_action::XPU_HOST_TRACE_FREE_REQUESTED,
                caching::Action::FreeCompleted => xpu_host_trace_action::XPU_HOST_TRACE_FREE_COMPLETED,
                caching::Action::SegmentAlloc => xpu_host_trace_action::XPU_HOST_TRACE_SEGMENT_ALLOC,
                caching::Action::SegmentFree => xpu_host_trace_action::XPU_HOST_TRACE_SEGMENT_FREE,
            };
            let shown = xpu_host_trace_entry {
                size: std::mem::size_of::<xpu_host_trace_entry>(),
                action,
                address: entry.address,
                bytes: entry.size,
                stream: entry.stream.map_or(NO_STREAM, xpu_host_stream::from),
                pool: entry.pool.into(),
                time_us: entry.time_us,
                context: context_pointer(&entry.context),
            };
            // SAFETY: the caller passes a valid function; the entry lives across the call.
            if !unsafe { visit(user_data, &shown) } {
                break;
            }
        }
        Ok(())
    })
}

/// A block holding memory (PyTorch's host segment: the host allocator never
/// splits, so each block is one), or an external registration.
#[repr(C)]
pub struct xpu_host_segment {
    /// `sizeof(xpu_host_segment)` as the library knows it.
    pub size: usize,
    pub address: usize,
    pub bytes: usize,
    /// Handed out now.
    pub allocated: bool,
    /// Handed out, waiting for stream events, or kept out of circulation.
    pub active: bool,
    pub pool: xpu_host_pool_id,
    /// The context the block was allocated with (while history was on), or
    /// null; valid during the visit only.
    pub context: *mut c_void,
}

/// Visits one segment; returns false to stop.
pub type xpu_host_segment_visitor =
    Option<unsafe extern "C" fn(user_data: *mut c_void, segment: *const xpu_host_segment) -> bool>;

/// Calls `visit` with every block holding memory, then with the external
/// registrations recorded while history was on, as [`xpu_host_get_traces`]
/// calls its visitor. A part of split memory (`pinned_split_blocks`) is a
/// segment of its own.
///
/// # Safety
/// `visit` is a valid function.
#[no_mangle]
pub unsafe extern "C" fn xpu_host_get_segments(
    visit: xpu_host_segment_visitor,
    user_data: *mut c_void,
) -> xpu_host_result {
    ffi_call(|| {
        let visit = visit.ok_or_else(|| Failure::invalid("visit is null"))?;
        let segments = started().map(|allocator| allocator.segments()).unwrap_or_default();
        for segment in &segments {
            let shown = xpu_host_segment {
                size: std::mem::size_of::<xpu_host_segment>(),
                address: segment.address,
                bytes: segment.size,
                allocated: segment.allocated,
                active: segment.active,
                pool: segment.pool.into(),
                context: context_pointer(&segment.context),
            };
            // SAFETY: the caller passes a valid function; the segment lives across the call.
            if !unsafe { visit(user_data, &shown) } {
                break;
            }
        }
        Ok(())
    })
}

/// Memory pinned outside the allocator (PyTorch's `record_external_register`):
/// with history on, recorded as a segment allocated and an allocation, and
/// listed by [`xpu_host_get_segments`] until unregistered. Nothing with
/// history off. A null `ptr` is `XPU_HOST_ERROR_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn xpu_host_record_external_register(ptr: *mut c_void, bytes: usize) -> xpu_host_result {
    ffi_call(|| {
        if ptr.is_null() {
            return Err(Failure::invalid("ptr is null"));
        }
        allocator()?.record_external_register(ptr as usize, bytes);
        Ok(())
    })
}

/// The end of an external registration: recorded as a free requested and
/// completed and a segment freed. A pointer not registered while history was
/// on is ignored, as PyTorch ignores it.
#[no_mangle]
pub extern "C" fn xpu_host_record_external_unregister(ptr: *mut c_void) -> xpu_host_result {
    ffi_call(|| {
        if ptr.is_null() {
            return Err(Failure::invalid("ptr is null"));
        }
        allocator()?.record_external_unregister(ptr as usize);
        Ok(())
    })
}
