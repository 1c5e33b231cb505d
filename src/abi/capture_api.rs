//! The C API of graph capture: the hooks that tell the current stream and
//! whether it is being captured, and private pools (PyTorch 2.15's
//! `begin_allocate_to_pool`, `end_allocate_to_pool`, `release_pool`).

// The types are named as C programs see them in the generated header.
#![allow(non_camel_case_types)]

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::c_api::xpu_host_stream;
use super::error::{ffi_call, xpu_host_result, Failure};
use super::instance::{allocator, set_or_apply};
use super::sized::{self, CarriesSize};
use crate::caching::{CaptureHooks, PoolId, StreamFilter, StreamKey};

/// A private pool's name, PyTorch's `c10::MempoolId_t`; `{0, 0}` is the default pool.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct xpu_host_pool_id {
    pub first: u64,
    pub second: u64,
}

impl From<xpu_host_pool_id> for PoolId {
    fn from(id: xpu_host_pool_id) -> PoolId {
        PoolId { first: id.first, second: id.second }
    }
}

impl From<PoolId> for xpu_host_pool_id {
    fn from(id: PoolId) -> xpu_host_pool_id {
        xpu_host_pool_id { first: id.first, second: id.second }
    }
}

/// How the host runtime tells the allocator about its streams during graph
/// capture. Both hooks may be called from any thread, concurrently, while the
/// allocator holds its pool lock: they must not call the allocator.
/// `user_data` must stay valid for the life of the process.
#[repr(C)]
pub struct xpu_host_capture_hooks {
    /// `sizeof(xpu_host_capture_hooks)`, set by the caller.
    pub size: usize,
    pub user_data: *mut c_void,
    /// Stores the calling thread's current stream in `*stream`; false if it has none.
    pub current_stream: Option<unsafe extern "C" fn(user_data: *mut c_void, stream: *mut xpu_host_stream) -> bool>,
    /// Whether work submitted to `stream` is being captured into a graph now.
    pub is_capturing: Option<unsafe extern "C" fn(user_data: *mut c_void, stream: xpu_host_stream) -> bool>,
}

// SAFETY: repr(C), `size` first; zeroed, the pointer is null and the hooks None.
unsafe impl CarriesSize for xpu_host_capture_hooks {
    const NAME: &'static str = "xpu_host_capture_hooks";
}

struct CCaptureHooks {
    user_data: usize,
    current_stream: unsafe extern "C" fn(*mut c_void, *mut xpu_host_stream) -> bool,
    is_capturing: unsafe extern "C" fn(*mut c_void, xpu_host_stream) -> bool,
}

impl CaptureHooks for CCaptureHooks {
    fn current_stream(&self) -> Option<StreamKey> {
        let mut stream = xpu_host_stream { device_type: 0, device_index: 0, id: 0 };
        // SAFETY: the host promised, when it set the hooks, that they may be
        // called from any thread with its user data; the out-pointer is valid.
        let known = unsafe { (self.current_stream)(self.user_data as *mut c_void, &mut stream) };
        known.then(|| stream.into())
    }

    fn is_capturing(&self, stream: StreamKey) -> bool {
        // SAFETY: as for current_stream.
        unsafe { (self.is_capturing)(self.user_data as *mut c_void, stream.into()) }
    }
}

/// Sets how the current stream and its capture are told: before the allocator
/// starts, or after, but not while a capture is under way
/// (`XPU_HOST_ERROR_POOL_BUSY`). `hooks` is copied; both hooks are required.
///
/// # Safety
/// `hooks` is null or points at an `xpu_host_capture_hooks` whose `size` is
/// set and readable.
#[no_mangle]
pub unsafe extern "C" fn xpu_host_set_capture_hooks(hooks: *const xpu_host_capture_hooks) -> xpu_host_result {
    ffi_call(|| {
        if hooks.is_null() {
            return Err(Failure::invalid("hooks is null"));
        }
        // SAFETY: non-null; the caller promises `hooks->size` readable bytes.
        let hooks = unsafe { sized::read(hooks) }?;
        let (Some(current_stream), Some(is_capturing)) = (hooks.current_stream, hooks.is_capturing) else {
            return Err(Failure::invalid("both the current_stream and the is_capturing hook are required"));
        };
        let hooks = Box::new(CCaptureHooks { user_data: hooks.user_data as usize, current_stream, is_capturing });
        set_or_apply(
            hooks,
            |setup, hooks| setup.capture_hooks = Some(hooks),
            |allocator, hooks| Ok(allocator.set_capture_hooks(hooks)?),
        )
    })
}

/// Whether allocations made while `stream` is current go to the capture's pool.
/// Called while the allocator holds its pool lock: it must not call the allocator.
pub type xpu_host_stream_filter = Option<unsafe extern "C" fn(user_data: *mut c_void, stream: xpu_host_stream) -> bool>;

/// Called once when the library is done with a filter's `user_data`.
pub type xpu_host_drop_hook = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// A filter (none: every stream) with its user data, which it drops when
/// the capture ends, unless disarmed: a begin that fails leaves the user
/// data with the caller.
struct CFilter {
    user_data: usize,
    filter: xpu_host_stream_filter,
    drop: xpu_host_drop_hook,
    armed: Arc<AtomicBool>,
}

impl CFilter {
    fn accepts(&self, stream: StreamKey) -> bool {
        // SAFETY: the host promised the filter may be called from any thread with its user data.
        self.filter.is_none_or(|filter| unsafe { filter(self.user_data as *mut c_void, stream.into()) })
    }
}

impl Drop for CFilter {
    fn drop(&mut self) {
        if let (Some(drop), true) = (self.drop, self.armed.load(Ordering::Relaxed)) {
            // SAFETY: the host handed its user data over with the filter, to be dropped once.
            unsafe { drop(self.user_data as *mut c_void) }
        }
    }
}

/// Starts routing allocations to private pool `pool` (making it, or taking
/// one more use of it): while this capture is under way, an allocation made
/// while a stream `filter` accepts is current comes from the pool. A null
/// filter accepts every stream. Each successful begin takes one use of the
/// pool, which one [`xpu_host_release_pool`] gives back.
///
/// On success the library owns `user_data` and calls `drop(user_data)` (if
/// `drop` is not null) once, when [`xpu_host_end_allocate_to_pool`] ends this
/// capture; on failure the caller keeps it. Errors: `{0, 0}` is
/// `XPU_HOST_ERROR_INVALID_ARGUMENT`, a pool a capture already records to
/// `XPU_HOST_ERROR_POOL_BUSY`, and no capture hooks
/// `XPU_HOST_ERROR_NO_CAPTURE_HOOKS`.
///
/// # Safety
/// `filter` and `drop` are null or valid functions that may be called from any
/// thread with `user_data`.
#[no_mangle]
pub unsafe extern "C" fn xpu_host_begin_allocate_to_pool(
    pool: xpu_host_pool_id,
    filter: xpu_host_stream_filter,
    user_data: *mut c_void,
    drop: xpu_host_drop_hook,
) -> xpu_host_result {
    ffi_call(|| {
        let allocator = allocator()?;
        let armed = Arc::new(AtomicBool::new(true));
        // A filter, or a drop hook alone, is kept until the capture ends.
        let filter = (filter.is_some() || drop.is_some()).then(|| {
            let filter = CFilter { user_data: user_data as usize, filter, drop, armed: armed.clone() };
            // Through a method, so that the closure owns the whole filter
            // (a closure naming fields would own the fields alone, and the
            // filter would be dropped here).
            Box::new(move |stream| filter.accepts(stream)) as StreamFilter
        });
        allocator.begin_allocate_to_pool(pool.into(), filter).map_err(|(error, filter)| {
            armed.store(false, Ordering::Relaxed);
            std::mem::drop(filter);
            error.into()
        })
    })
}

/// Stops routing allocations to `pool`, and drops the capture's filter. A pool
/// whose last use was released during the capture is released now.
/// `XPU_HOST_ERROR_UNKNOWN_POOL` if no capture records to it.
#[no_mangle]
pub extern "C" fn xpu_host_end_allocate_to_pool(pool: xpu_host_pool_id) -> xpu_host_result {
    ffi_call(|| Ok(allocator()?.end_allocate_to_pool(pool.into())?))
}

/// Gives back one use of `pool`. At the last, once no capture records to it,
/// the pool's free blocks go back to the driver; each block allocated during
/// capture and freed after streams used it gets an event recorded now on
/// each of those streams and returns to the default pool once they
/// complete; blocks still allocated join the default pool when freed.
/// `XPU_HOST_ERROR_UNKNOWN_POOL` for a pool never begun or released already.
#[no_mangle]
pub extern "C" fn xpu_host_release_pool(pool: xpu_host_pool_id) -> xpu_host_result {
    ffi_call(|| Ok(allocator()?.release_pool(pool.into())?))
}
