//! The one error-code enum of the C API, the per-thread last error message, and
//! the guard that keeps panics from crossing the boundary.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::caching;
use crate::level_zero::LevelZeroError;

/// What every fallible C function returns. Anything but `XPU_HOST_SUCCESS` leaves
/// a message for [`xpu_host_last_error_message`] on the calling thread.
#[allow(non_camel_case_types)] // named as C programs see it in the generated header
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum xpu_host_result {
    XPU_HOST_SUCCESS = 0,
    /// A null pointer, a bad size or another argument the function cannot take.
    XPU_HOST_ERROR_INVALID_ARGUMENT = 1,
    /// No pinned memory left, even after emptying the cache and retrying once.
    XPU_HOST_ERROR_OUT_OF_MEMORY = 2,
    /// A size too large for a block (beyond `isize::MAX`, or overflowing its rounding).
    XPU_HOST_ERROR_SIZE_TOO_LARGE = 3,
    /// A context that is not one of this allocator's blocks.
    XPU_HOST_ERROR_UNKNOWN_BLOCK = 4,
    /// A block that is not allocated: freed twice, or after `empty_cache` gave it back.
    XPU_HOST_ERROR_NOT_ALLOCATED = 5,
    /// No Level Zero driver: the message says which was looked for and how to select one.
    XPU_HOST_ERROR_NO_DRIVER = 6,
    /// A Level Zero call failed; the message names it and its result.
    XPU_HOST_ERROR_LEVEL_ZERO = 7,
    /// The setting must come before the allocator is first used.
    XPU_HOST_ERROR_ALREADY_INITIALIZED = 8,
    /// A bug in this library, caught before it could reach the caller.
    XPU_HOST_ERROR_INTERNAL = 9,
    /// A configuration string or variable with an unknown key or a bad value; the message names it.
    XPU_HOST_ERROR_INVALID_CONFIGURATION = 10,
    /// This process was forked after the allocator started; the child cannot use it.
    XPU_HOST_ERROR_FORKED = 11,
    /// The library is being finalised at process exit.
    XPU_HOST_ERROR_EXITING = 12,
    /// No such private pool: `end` without a `begin`, or a pool released already or never begun.
    XPU_HOST_ERROR_UNKNOWN_POOL = 13,
    /// A capture already records to the pool, or the capture hooks changed during a capture.
    XPU_HOST_ERROR_POOL_BUSY = 14,
    /// A capture was begun before `xpu_host_set_capture_hooks`.
    XPU_HOST_ERROR_NO_CAPTURE_HOOKS = 15,
}

use xpu_host_result::*;

/// Why a call into the library failed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub code: xpu_host_result,
    pub message: String,
}

impl Failure {
    pub fn new(code: xpu_host_result, message: impl Into<String>) -> Failure {
        Failure { code, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(XPU_HOST_ERROR_INVALID_ARGUMENT, message)
    }
}

impl From<caching::Error> for Failure {
    #[cold]
    fn from(error: caching::Error) -> Failure {
        let code = match error {
            caching::Error::SizeTooLarge { .. } => XPU_HOST_ERROR_SIZE_TOO_LARGE,
            caching::Error::OutOfMemory { .. } => XPU_HOST_ERROR_OUT_OF_MEMORY,
            caching::Error::UnknownBlock { .. } => XPU_HOST_ERROR_UNKNOWN_BLOCK,
            caching::Error::NotAllocated { .. } => XPU_HOST_ERROR_NOT_ALLOCATED,
            caching::Error::Backend(_) => XPU_HOST_ERROR_LEVEL_ZERO,
            caching::Error::DefaultPool | caching::Error::NoHistoryRoom => XPU_HOST_ERROR_INVALID_ARGUMENT,
            caching::Error::NoCaptureHooks => XPU_HOST_ERROR_NO_CAPTURE_HOOKS,
            caching::Error::PoolBusy(_) => XPU_HOST_ERROR_POOL_BUSY,
            caching::Error::UnknownPool { .. } => XPU_HOST_ERROR_UNKNOWN_POOL,
        };
        Failure::new(code, error.to_string())
    }
}

impl From<LevelZeroError> for Failure {
    fn from(error: LevelZeroError) -> Failure {
        let code = if error.no_driver { XPU_HOST_ERROR_NO_DRIVER } else { XPU_HOST_ERROR_LEVEL_ZERO };
        Failure::new(code, error.message)
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn set_last_error(message: &str) {
    let text = format!("xpu_caching_host_allocator: {message}");
    let text = CString::new(text.replace('\0', " ")).unwrap_or_default();
    // A thread being torn down has no last error to keep.
    let _ = LAST_ERROR.try_with(|last| *last.borrow_mut() = text);
}

/// Runs `body`, turning a failure or a panic into an error code and a last error message.
pub(crate) fn ffi_call(body: impl FnOnce() -> Result<(), Failure>) -> xpu_host_result {
    match catch_panic(body) {
        Ok(()) => XPU_HOST_SUCCESS,
        Err(failure) => {
            set_last_error(&failure.message);
            failure.code
        }
    }
}

/// Runs `body`; a panic becomes an `XPU_HOST_ERROR_INTERNAL` failure.
#[inline]
pub(crate) fn catch_panic<T>(body: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| Err(internal_error(panic)))
}

#[cold]
fn internal_error(panic: Box<dyn std::any::Any + Send>) -> Failure {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    Failure::new(XPU_HOST_ERROR_INTERNAL, format!("internal error: {what}"))
}

/// The message of the last failed call on this thread, or an empty string.
///
/// The pointer stays valid until the next call into this library on the same
/// thread; copy the text to keep it. Never null.
#[no_mangle]
pub extern "C" fn xpu_host_last_error_message() -> *const c_char {
    LAST_ERROR.try_with(|last| last.borrow().as_ptr()).unwrap_or(c"".as_ptr())
}
