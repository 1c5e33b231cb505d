//! A Level Zero driver in software, loaded by the real Level Zero loader through
//! `ZE_ENABLE_ALT_DRIVERS=/abs/path/libze_software_driver.so`.
//!
//! Memory is host memory; events, fences and in-order command lists run on one
//! worker thread per command queue or immediate command list. The exported
//! symbols are the DDI table getters (`getters.rs`) only: the loader reaches
//! every other function through the tables. The knobs are described in
//! README.md.

mod api;
mod command;
mod command_list;
mod context;
mod device;
mod driver;
mod event;
mod executor;
mod fence;
mod ffi;
mod getters;
mod intel;
mod knobs;
mod leaks;
mod live_objects;
mod memory;
mod queue;
mod registry;
mod sync;

use std::ffi::{c_int, c_void};

/// Exit status of a process whose unload leak report found objects with
/// `ZE_SOFTWARE_DRIVER_LEAK_CHECK=fail`.
const LEAK_EXIT_STATUS: c_int = 3;

// The loader dlcloses its drivers at exit while workers may still run, so the
// library needs a destructor that joins them before its code is unmapped. A
// `.fini_array` entry rather than `-Wl,-z,nodelete`: the unload is also where
// the final leak report is printed, so a destructor is needed anyway, and with
// the workers joined in it the unload is safe without keeping the library
// resident.
#[used]
#[link_section = ".fini_array"]
static UNLOAD: extern "C" fn() = unload;

extern "C" fn unload() {
    // A panic must not unwind out of a destructor into the C runtime.
    let leaked = std::panic::catch_unwind(|| {
        executor::shutdown_all();
        leaks::report_at_unload()
    })
    .unwrap_or(false);
    if leaked && knobs::knobs().leak_check == knobs::LeakCheck::Fail {
        // SAFETY: `fflush(NULL)` flushes every C stdio stream, whose buffered
        // output `_exit` would drop. `_exit` ends the process at once: this
        // destructor may itself run inside `exit`, where calling `exit` again
        // is undefined, so `_exit` is the way to change the exit status here.
        unsafe {
            fflush(std::ptr::null_mut());
            _exit(LEAK_EXIT_STATUS)
        }
    }
}

extern "C" {
    fn fflush(stream: *mut c_void) -> c_int;
    fn _exit(status: c_int) -> !;
}
