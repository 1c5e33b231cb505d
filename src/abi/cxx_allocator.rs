//! The object `getCachingHostAllocator()` returns: to C++ it is a
//! `c10::Allocator`, with a vtable laid out as g++ lays out that class's
//! (docs/ABI.md section 3) and `DataPtr`s laid out as libstdc++ lays them out (section 4).

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::sync::Once;

use super::cxx_exception::{lookup, throw_runtime_error};
use super::error::{catch_panic, set_last_error, Failure};
use super::instance::{allocator, ready};
use super::lifecycle;

type Deleter = unsafe extern "C" fn(context: *mut c_void);

/// `c10::DataPtr` under libstdc++: the `unique_ptr`'s tuple stores the deleter
/// before the context.
#[repr(C)]
pub struct DataPtr {
    data: *mut c_void,
    deleter: Option<Deleter>,
    context: *mut c_void,
    device_type: i8,
    device_index: i8,
}

const DEVICE_TYPE_CPU: i8 = 0;

/// The C++ object: its first and only word is the vptr.
#[repr(C)]
pub struct CxxAllocator {
    vptr: *const Slots,
}

/// The virtual functions of `c10::Allocator`, in declaration order.
#[repr(C)]
struct Slots {
    complete_destructor: unsafe extern "C" fn(*mut CxxAllocator),
    deleting_destructor: unsafe extern "C" fn(*mut CxxAllocator),
    allocate: unsafe extern "C-unwind" fn(*mut DataPtr, *const CxxAllocator, usize) -> *mut DataPtr,
    is_simple_data_ptr: unsafe extern "C" fn(*const CxxAllocator, *const DataPtr) -> bool,
    raw_deleter: unsafe extern "C" fn(*const CxxAllocator) -> Option<Deleter>,
    copy_data: unsafe extern "C-unwind" fn(*const CxxAllocator, *mut c_void, *const c_void, usize),
}

/// An Itanium vtable: offset-to-top and the RTTI pointer precede the slots the vptr points at.
#[repr(C)]
struct VTable {
    offset_to_top: isize,
    type_info: *const TypeInfo,
    slots: Slots,
}

/// `__si_class_type_info` (base `c10::Allocator`) when libc10 is loaded, else
/// `__class_type_info` (the base pointer is then unused). Filled on first use,
/// since the C++ runtime's classes are found only at run time.
#[repr(C)]
struct TypeInfo(UnsafeCell<[*const c_void; 3]>);

// SAFETY: written once under `TYPE_INFO_ONCE` before the object's address is
// handed out, then only read; the vtable and object are immutable.
unsafe impl Sync for TypeInfo {}
// SAFETY: immutable data.
unsafe impl Sync for VTable {}
// SAFETY: immutable data.
unsafe impl Sync for CxxAllocator {}

static TYPE_INFO: TypeInfo = TypeInfo(UnsafeCell::new([std::ptr::null(); 3]));
static TYPE_INFO_ONCE: Once = Once::new();
static TYPE_NAME: &std::ffi::CStr = c"N26xpu_caching_host_allocator20CachingHostAllocatorE";

static VTABLE: VTable = VTable {
    offset_to_top: 0,
    type_info: &TYPE_INFO,
    slots: Slots {
        complete_destructor: destructor,
        deleting_destructor: destructor,
        allocate,
        is_simple_data_ptr,
        raw_deleter,
        copy_data,
    },
};

static ALLOCATOR: CxxAllocator = CxxAllocator { vptr: &VTABLE.slots };

/// The process's one `c10::Allocator`.
pub(crate) fn cxx_allocator() -> *const CxxAllocator {
    TYPE_INFO_ONCE.call_once(|| {
        let base = lookup(c"_ZTIN3c109AllocatorE");
        let (class, base) = if base.is_null() {
            (lookup(c"_ZTVN10__cxxabiv117__class_type_infoE"), std::ptr::null_mut())
        } else {
            (lookup(c"_ZTVN10__cxxabiv120__si_class_type_infoE"), base)
        };
        if !class.is_null() {
            // The type_info object's vptr points two words into its class's vtable.
            let vptr = class.cast::<*const c_void>().wrapping_add(2).cast::<c_void>();
            // SAFETY: the only write, before any reader can have the address.
            unsafe { *TYPE_INFO.0.get() = [vptr, TYPE_NAME.as_ptr().cast(), base] };
        }
    });
    &ALLOCATOR
}

/// The deleter every `DataPtr` from `allocate` carries; PyTorch calls it with the context.
/// In a forked child or at exit it does nothing: the memory is not ours to give back there.
pub(crate) unsafe extern "C" fn raw_local_deleter(context: *mut c_void) {
    // The hot path cannot panic (see `free_cached`; scripts/check-hot-path): it needs no guard.
    if ready().is_some_and(|allocator| allocator.free_cached(context as usize)) {
        return;
    }
    free_guarded(context);
}

/// The deleter beyond its hot path, under the panic guard. `extern "C"`, so
/// that the compiler knows it cannot unwind and jumps to it from the deleter.
#[inline(never)]
extern "C" fn free_guarded(context: *mut c_void) {
    let Err(failure) = catch_panic(|| Ok(allocator()?.free_slow(context as usize)?)) else { return };
    if lifecycle::check_usable().is_err() {
        return;
    }
    // A deleter runs in a destructor and cannot throw: say it loudly instead.
    set_last_error(&failure.message);
    eprintln!("xpu_caching_host_allocator: warning: freeing a block failed: {}", failure.message);
}

/// The object is static: destroying it does nothing, deleting it must not free it.
unsafe extern "C" fn destructor(_this: *mut CxxAllocator) {}

/// `DataPtr allocate(size_t n)`: returned through the hidden pointer `ret`.
/// Failure throws `std::runtime_error`; a process without a C++ runtime gets a
/// null `DataPtr` and the last error message.
unsafe extern "C-unwind" fn allocate(ret: *mut DataPtr, _this: *const CxxAllocator, n: usize) -> *mut DataPtr {
    // The hot path cannot panic (see `allocate_cached`; scripts/check-hot-path): it needs no guard.
    if let Some(allocation) = ready().and_then(|allocator| allocator.allocate_cached(n)) {
        // SAFETY: `ret` is the caller's storage for a DataPtr (the Itanium sret slot).
        unsafe { ret.write(data_ptr(allocation.address, allocation.context)) };
        return ret;
    }
    // SAFETY: `ret` as above.
    unsafe { allocate_guarded(ret, n) }
}

/// `allocate` beyond its hot path, under the panic guard. A failure throws
/// from here (after the guard), through this Rust function, which may unwind,
/// and `allocate`, which is C-unwind; neither holds a value with a destructor.
///
/// # Safety
/// `ret` is the caller's storage for a DataPtr; the caller is `allocate`.
#[inline(never)]
unsafe fn allocate_guarded(ret: *mut DataPtr, n: usize) -> *mut DataPtr {
    let (data, context) = match catch_panic(|| Ok(allocator()?.allocate_slow(n)?)) {
        Ok(allocation) => allocation.map_or((0, 0), |a| (a.address, a.context)),
        // SAFETY: `ret` as below; the caller is `allocate` (see above).
        Err(failure) => return unsafe { fail_allocation(ret, failure) },
    };
    // SAFETY: `ret` is the caller's storage for a DataPtr (the Itanium sret slot).
    unsafe { ret.write(data_ptr(data, context)) };
    // Opaque, so that the compiler cannot see that this returns its argument:
    // when it does, `allocate` keeps its own copy across the call instead of
    // jumping here.
    std::hint::black_box(ret)
}

fn data_ptr(data: usize, context: usize) -> DataPtr {
    DataPtr {
        data: data as *mut c_void,
        deleter: Some(raw_local_deleter),
        context: context as *mut c_void,
        device_type: DEVICE_TYPE_CPU,
        device_index: -1,
    }
}

/// Reports a failed `allocate`: a null `DataPtr` in `ret`, the last error, and
/// the exception.
///
/// # Safety
/// `ret` is the caller's storage for a DataPtr; the caller is `allocate`.
#[cold]
#[inline(never)]
unsafe fn fail_allocation(ret: *mut DataPtr, failure: Failure) -> *mut DataPtr {
    // SAFETY: as the caller promises.
    unsafe { ret.write(data_ptr(0, 0)) };
    set_last_error(&failure.message);
    // SAFETY: reached from C++ through `allocate` and `allocate_guarded`, which
    // may unwind and hold nothing with a destructor; the message, the only
    // value here with one, is handed over.
    unsafe { throw_runtime_error(failure.message) };
    ret
}

/// `c10::Allocator`'s default: a pointer whose context is itself.
unsafe extern "C" fn is_simple_data_ptr(_this: *const CxxAllocator, data_ptr: *const DataPtr) -> bool {
    // SAFETY: C++ passes a reference to a live DataPtr.
    let data_ptr = unsafe { &*data_ptr };
    data_ptr.data == data_ptr.context
}

/// `c10::Allocator`'s default: no raw deleter (contexts are not data pointers).
unsafe extern "C" fn raw_deleter(_this: *const CxxAllocator) -> Option<Deleter> {
    None
}

/// A real copy (PyTorch's XPU allocator throws "not implemented" here), so that
/// `Allocator::clone` works. The memory is host memory.
unsafe extern "C-unwind" fn copy_data(_this: *const CxxAllocator, dest: *mut c_void, src: *const c_void, count: usize) {
    if count == 0 {
        return;
    }
    if dest.is_null() || src.is_null() {
        let message = format!("copy_data of {count} bytes with a null pointer");
        set_last_error(&message);
        // SAFETY: called from C++ through the vtable; this frame is C-unwind.
        unsafe { throw_runtime_error(message) };
        return;
    }
    // SAFETY: C++ passes `count` readable bytes at src and writable at dest;
    // `copy` is memmove, so even overlapping ranges are fine.
    unsafe { std::ptr::copy(src.cast::<u8>(), dest.cast::<u8>(), count) };
}
