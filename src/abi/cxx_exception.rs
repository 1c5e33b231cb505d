//! Throwing a real C++ exception from Rust, for callers of the `c10::Allocator`
//! vtable who expect `allocate` to throw on failure (docs/ABI.md section 6).
//!
//! The C++ runtime is looked up at run time: a C-only process has none, and then
//! the caller gets a null `DataPtr` and the last error message instead.

use std::ffi::{c_char, c_void, CString};
use std::sync::OnceLock;

type AllocateException = unsafe extern "C" fn(size: usize) -> *mut c_void;
type Throw = unsafe extern "C-unwind" fn(
    object: *mut c_void,
    type_info: *const c_void,
    destructor: unsafe extern "C" fn(*mut c_void),
) -> !;
type Constructor = unsafe extern "C" fn(this: *mut c_void, message: *const c_char);
type Destructor = unsafe extern "C" fn(this: *mut c_void);

/// `std::runtime_error`, the same class under both libstdc++ string ABIs
/// (its message lives in a reference-counted string in either).
struct RuntimeError {
    allocate_exception: AllocateException,
    throw: Throw,
    construct: Constructor,
    destruct: Destructor,
    type_info: *const c_void,
}

// SAFETY: function addresses and a typeinfo address are immutable process-wide data.
unsafe impl Send for RuntimeError {}
// SAFETY: as above.
unsafe impl Sync for RuntimeError {}

/// sizeof(std::runtime_error) in libstdc++ on 64-bit targets: vptr + string.
const RUNTIME_ERROR_SIZE: usize = 16;

pub(crate) fn lookup(name: &std::ffi::CStr) -> *mut c_void {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only reads.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}

fn runtime_error() -> Option<&'static RuntimeError> {
    static FOUND: OnceLock<Option<RuntimeError>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let symbols = [
                lookup(c"__cxa_allocate_exception"),
                lookup(c"__cxa_throw"),
                lookup(c"_ZNSt13runtime_errorC1EPKc"),
                lookup(c"_ZNSt13runtime_errorD1Ev"),
                lookup(c"_ZTISt13runtime_error"),
            ];
            if symbols.iter().any(|s| s.is_null()) {
                return None;
            }
            // SAFETY: each symbol is the libstdc++ function of that mangled name,
            // whose signature is the one transmuted to.
            unsafe {
                Some(RuntimeError {
                    allocate_exception: std::mem::transmute::<*mut c_void, AllocateException>(symbols[0]),
                    throw: std::mem::transmute::<*mut c_void, Throw>(symbols[1]),
                    construct: std::mem::transmute::<*mut c_void, Constructor>(symbols[2]),
                    destruct: std::mem::transmute::<*mut c_void, Destructor>(symbols[3]),
                    type_info: symbols[4],
                })
            }
        })
        .as_ref()
}

/// Throws `std::runtime_error("xpu_caching_host_allocator: " + message)` into
/// the C++ caller. Returns only if the process has no C++ runtime.
///
/// # Safety
/// Every frame between here and the C++ caller is of a function that may
/// unwind (`extern "C-unwind"`, or Rust's own ABI, outside any panic guard),
/// with no Rust value needing a destructor alive in it (the message is taken,
/// and dropped before the throw).
pub(crate) unsafe fn throw_runtime_error(message: String) {
    let Some(runtime) = runtime_error() else { return };
    let message = CString::new(format!("xpu_caching_host_allocator: {message}").replace('\0', " ")).unwrap_or_default();
    // SAFETY: the runtime's own allocation of an exception object of the class's
    // size, constructed in place; the constructor copies the message.
    let object = unsafe {
        let object = (runtime.allocate_exception)(RUNTIME_ERROR_SIZE);
        (runtime.construct)(object, message.as_ptr());
        object
    };
    drop(message);
    // SAFETY: a constructed exception object, its typeinfo and its destructor, as
    // __cxa_throw takes them; the unwind passes through `C-unwind` frames only.
    unsafe { (runtime.throw)(object, runtime.type_info, runtime.destruct) }
}
