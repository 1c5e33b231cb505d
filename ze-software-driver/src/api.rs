//! What every entry point shares: results, the panic barrier and misuse reports.

use std::cell::Cell;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use level_zero_sys::*;

use crate::knobs::knobs;

/// The outcome of an entry point. `Err` carries every other `ze_result_t`,
/// including `ZE_RESULT_NOT_READY`, so that `?` can end a call early.
pub type ZeResult<T = ()> = Result<T, ze_result_t>;

thread_local! {
    /// The entry point running on this thread, named in misuse reports.
    static CURRENT: Cell<&'static str> = const { Cell::new("") };
}

/// Runs the body of the entry point `name`. A Rust panic must never cross an
/// `extern "C"` function: it becomes `ZE_RESULT_ERROR_UNKNOWN`.
pub fn entry(name: &'static str, body: impl FnOnce() -> ZeResult) -> ze_result_t {
    CURRENT.with(|current| current.set(name));
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => ZE_RESULT_SUCCESS,
        Ok(Err(code)) => code,
        Err(_) => ZE_RESULT_ERROR_UNKNOWN,
    }
}

/// Reports a misuse of the API on stderr when `ZE_SOFTWARE_DRIVER_STRICT=1`.
/// The caller returns an error either way.
pub fn misuse(what: fmt::Arguments) {
    if knobs().strict {
        let api = CURRENT.with(Cell::get);
        eprintln!("ze-software-driver: misuse: {api}: {what}");
    }
}

/// The error for a handle that is not null but names no live object of its
/// type: destroyed, of another type, or not from this driver.
pub fn unknown_handle<H>(kind: &str, handle: *mut H) -> ze_result_t {
    misuse(format_args!("stale or foreign {kind} handle {handle:p}"));
    ZE_RESULT_ERROR_INVALID_ARGUMENT
}

/// The error for a structure chained on `pNext` whose type this driver does
/// not know, or does not take in that place: never ignored, since the caller
/// asked for something this driver would not do.
pub fn unknown_stype(stype: ze_structure_type_t) -> ze_result_t {
    misuse(format_args!("pNext chains a structure of unknown or misplaced type {stype:#x}"));
    ZE_RESULT_ERROR_UNSUPPORTED_ENUMERATION
}

/// Flags with bits above `highest` set are `ZE_RESULT_ERROR_INVALID_ENUMERATION`
/// (the spec's "`0x7 < desc->flags`" checks).
pub fn check_flags(flags: u32, highest: u32) -> ZeResult {
    if flags > highest {
        Err(ZE_RESULT_ERROR_INVALID_ENUMERATION)
    } else {
        Ok(())
    }
}

/// `ZE_RESULT_SUCCESS` when `done`, else `ZE_RESULT_NOT_READY`.
pub fn ready(done: bool) -> ZeResult {
    if done {
        Ok(())
    } else {
        Err(ZE_RESULT_NOT_READY)
    }
}
