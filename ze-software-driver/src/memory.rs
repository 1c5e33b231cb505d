//! Memory: host, device and shared allocations, all of them host memory,
//! tracked per context so that lookups, frees and leak reports are scoped.

use std::alloc::{alloc, dealloc, Layout};
use std::collections::btree_map::{BTreeMap, Entry};
use std::ffi::c_void;
use std::ptr::{null_mut, NonNull};
use std::sync::{Arc, Mutex};

use level_zero_sys::*;

use crate::api::{check_flags, entry, misuse, unknown_stype, ZeResult};
use crate::context::{Context, CONTEXTS};
use crate::device::{self, Device};
use crate::executor;
use crate::ffi::{chain, input, output, unchained};
use crate::knobs::knobs;
use crate::leaks::Leak;
use crate::sync::lock;

/// Every allocation starts on a page, the `pageSize` that
/// `zeMemGetAllocProperties` reports: callers such as UMF carve pools out of
/// allocations and rely on that.
const PAGE_SIZE: usize = 4096;
const HOST_FLAGS: u32 = ZE_HOST_MEM_ALLOC_FLAG_BIAS_CACHED
    | ZE_HOST_MEM_ALLOC_FLAG_BIAS_UNCACHED
    | ZE_HOST_MEM_ALLOC_FLAG_BIAS_WRITE_COMBINED
    | ZE_HOST_MEM_ALLOC_FLAG_BIAS_INITIAL_PLACEMENT;
const DEVICE_FLAGS: u32 = ZE_DEVICE_MEM_ALLOC_FLAG_BIAS_CACHED
    | ZE_DEVICE_MEM_ALLOC_FLAG_BIAS_UNCACHED
    | ZE_DEVICE_MEM_ALLOC_FLAG_BIAS_INITIAL_PLACEMENT;
const FREE_POLICIES: u32 =
    ZE_DRIVER_MEMORY_FREE_POLICY_EXT_FLAG_BLOCKING_FREE | ZE_DRIVER_MEMORY_FREE_POLICY_EXT_FLAG_DEFER_FREE;

/// The bytes of one allocation, returned to the heap when the last reference
/// goes: at the free, or with `DEFER_FREE` once the workers pass the free.
pub struct Memory {
    base: NonNull<u8>,
    layout: Layout,
}

// SAFETY: `Memory` only owns the block; its bytes are read and written through
// raw pointers by the application and the workers, never through `Memory`.
unsafe impl Send for Memory {}
// SAFETY: as for Send; `Memory` has no methods that touch the bytes.
unsafe impl Sync for Memory {}

impl Drop for Memory {
    fn drop(&mut self) {
        // SAFETY: `base` came from `alloc(layout)` and is freed once, here.
        unsafe { dealloc(self.base.as_ptr(), self.layout) }
    }
}

struct Allocation {
    memory: Arc<Memory>,
    size: usize,
    kind: ze_memory_type_t,
    context: Arc<Context>,
    device: Option<&'static Device>,
    id: u64,
}

struct Allocations {
    by_base: BTreeMap<usize, Allocation>,
    live_bytes: u64,
    next_id: u64,
    host_alloc_calls: u64,
    host_free_calls: u64,
}

static ALLOCATIONS: Mutex<Allocations> = Mutex::new(Allocations {
    by_base: BTreeMap::new(),
    live_bytes: 0,
    next_id: 1,
    host_alloc_calls: 0,
    host_free_calls: 0,
});

impl Allocations {
    /// The allocation of `context` that contains `address`, with its base.
    fn containing(&self, context: &Arc<Context>, address: usize) -> Option<(usize, &Allocation)> {
        let (&base, allocation) = self.by_base.range(..=address).next_back()?;
        (address - base < allocation.size && Arc::ptr_eq(&allocation.context, context)).then_some((base, allocation))
    }
}

pub struct Statistics {
    pub allocations: u64,
    pub allocated_bytes: u64,
    pub host_alloc_calls: u64,
    pub host_free_calls: u64,
}

pub fn statistics() -> Statistics {
    let all = lock(&ALLOCATIONS);
    Statistics {
        allocations: all.by_base.len() as u64,
        allocated_bytes: all.live_bytes,
        host_alloc_calls: all.host_alloc_calls,
        host_free_calls: all.host_free_calls,
    }
}

/// One line per live allocation, of `context` or of every context.
pub fn leaks(context: Option<&Arc<Context>>) -> Vec<Leak> {
    lock(&ALLOCATIONS)
        .by_base
        .iter()
        .filter(|(_, allocation)| context.is_none_or(|context| Arc::ptr_eq(context, &allocation.context)))
        .map(|(base, allocation)| {
            let kind = match allocation.kind {
                ZE_MEMORY_TYPE_HOST => "host allocation",
                ZE_MEMORY_TYPE_DEVICE => "device allocation",
                _ => "shared allocation",
            };
            let line = format!("{kind} {base:#x} of {} bytes", allocation.size);
            Leak { kind, bytes: allocation.size, line }
        })
        .collect()
}

/// The checks and the allocation that the three zeMemAlloc functions share,
/// after their handle, pointer and flag checks.
fn allocate(
    context: Arc<Context>,
    kind: ze_memory_type_t,
    device: Option<&'static Device>,
    size: usize,
    alignment: usize,
    result: &mut *mut c_void,
) -> ZeResult {
    if size == 0 {
        return Err(ZE_RESULT_ERROR_UNSUPPORTED_SIZE);
    }
    if alignment & alignment.wrapping_sub(1) != 0 {
        return Err(ZE_RESULT_ERROR_UNSUPPORTED_ALIGNMENT);
    }
    let out_of_memory = if kind == ZE_MEMORY_TYPE_HOST {
        ZE_RESULT_ERROR_OUT_OF_HOST_MEMORY
    } else {
        ZE_RESULT_ERROR_OUT_OF_DEVICE_MEMORY
    };
    if kind == ZE_MEMORY_TYPE_HOST && knobs().fail_host_alloc.fails_now() {
        return Err(out_of_memory);
    }
    let layout = Layout::from_size_align(size, alignment.max(PAGE_SIZE)).map_err(|_| out_of_memory)?;
    // Held across the allocation so that concurrent calls cannot both pass the limit.
    let mut all = lock(&ALLOCATIONS);
    let live_after = all.live_bytes.saturating_add(size as u64);
    if knobs().memory_limit.is_some_and(|limit| live_after > limit) {
        return Err(out_of_memory);
    }
    // SAFETY: the layout's size is not zero (checked above).
    let base = NonNull::new(unsafe { alloc(layout) }).ok_or(out_of_memory)?;
    let id = all.next_id;
    all.next_id += 1;
    all.live_bytes = live_after;
    if kind == ZE_MEMORY_TYPE_HOST {
        all.host_alloc_calls += 1;
    }
    let memory = Arc::new(Memory { base, layout });
    all.by_base.insert(base.as_ptr() as usize, Allocation { memory, size, kind, context, device, id });
    *result = base.as_ptr().cast();
    Ok(())
}

/// Checks what an allocation descriptor chains. The one extension taken,
/// `ze_relaxed_allocation_limits_exp_desc_t`, allows sizes above
/// `maxMemAllocSize`, which no allocation here is held to anyway.
///
/// # Safety
/// As for [`chain`].
unsafe fn check_alloc_chain(next: *const c_void) -> ZeResult {
    // SAFETY: forwarded from this function's contract.
    for (stype, extension) in unsafe { chain(next) } {
        match stype {
            ZE_STRUCTURE_TYPE_RELAXED_ALLOCATION_LIMITS_EXP_DESC => {
                // SAFETY: this stype says the struct is a ze_relaxed_allocation_limits_exp_desc_t.
                let flags = unsafe { &*extension.cast::<ze_relaxed_allocation_limits_exp_desc_t>() }.flags;
                check_flags(flags, ZE_RELAXED_ALLOCATION_LIMITS_EXP_FLAG_MAX_SIZE)?;
            }
            other => return Err(unknown_stype(other)),
        }
    }
    Ok(())
}

fn check_host_desc(desc: &ze_host_mem_alloc_desc_t) -> ZeResult {
    // SAFETY: the chain of an application input, valid per the API contract.
    unsafe { check_alloc_chain(desc.pNext) }?;
    check_flags(desc.flags, HOST_FLAGS)
}

fn check_device_desc(desc: &ze_device_mem_alloc_desc_t) -> ZeResult {
    // SAFETY: the chain of an application input, valid per the API contract.
    unsafe { check_alloc_chain(desc.pNext) }?;
    check_flags(desc.flags, DEVICE_FLAGS)
}

pub unsafe extern "C" fn alloc_host(
    context: ze_context_handle_t,
    host_desc: *const ze_host_mem_alloc_desc_t,
    size: usize,
    alignment: usize,
    result: *mut *mut c_void,
) -> ze_result_t {
    entry("zeMemAllocHost", || {
        let context = CONTEXTS.get(context)?;
        // SAFETY: application pointers, valid per the API contract.
        let (host_desc, result) = unsafe { (input(host_desc)?, output(result)?) };
        check_host_desc(host_desc)?;
        allocate(context, ZE_MEMORY_TYPE_HOST, None, size, alignment, result)
    })
}

pub unsafe extern "C" fn alloc_device(
    context: ze_context_handle_t,
    device_desc: *const ze_device_mem_alloc_desc_t,
    size: usize,
    alignment: usize,
    device: ze_device_handle_t,
    result: *mut *mut c_void,
) -> ze_result_t {
    entry("zeMemAllocDevice", || {
        let context = CONTEXTS.get(context)?;
        let device = device::lookup(device)?;
        // SAFETY: application pointers, valid per the API contract.
        let (device_desc, result) = unsafe { (input(device_desc)?, output(result)?) };
        check_device_desc(device_desc)?;
        allocate(context, ZE_MEMORY_TYPE_DEVICE, Some(device), size, alignment, result)
    })
}

pub unsafe extern "C" fn alloc_shared(
    context: ze_context_handle_t,
    device_desc: *const ze_device_mem_alloc_desc_t,
    host_desc: *const ze_host_mem_alloc_desc_t,
    size: usize,
    alignment: usize,
    device: ze_device_handle_t,
    result: *mut *mut c_void,
) -> ze_result_t {
    entry("zeMemAllocShared", || {
        let context = CONTEXTS.get(context)?;
        // The device is optional: without one the memory is not tied to a device.
        let device = if device.is_null() { None } else { Some(device::lookup(device)?) };
        // SAFETY: application pointers, valid per the API contract.
        let (device_desc, host_desc, result) = unsafe { (input(device_desc)?, input(host_desc)?, output(result)?) };
        check_device_desc(device_desc)?;
        check_host_desc(host_desc)?;
        allocate(context, ZE_MEMORY_TYPE_SHARED, device, size, alignment, result)
    })
}

/// Unregisters the allocation that starts at `pointer` in `context` and hands
/// back its bytes, which live on while referenced.
fn take(context: &Arc<Context>, pointer: *mut c_void) -> ZeResult<Arc<Memory>> {
    if pointer.is_null() {
        return Err(ZE_RESULT_ERROR_INVALID_NULL_POINTER);
    }
    let mut guard = lock(&ALLOCATIONS);
    let all = &mut *guard;
    let Entry::Occupied(entry) = all.by_base.entry(pointer as usize) else {
        misuse(format_args!("{pointer:p} is not a live allocation (freed twice, an interior or a foreign pointer)"));
        return Err(ZE_RESULT_ERROR_INVALID_ARGUMENT);
    };
    let owner = &entry.get().context;
    if !Arc::ptr_eq(owner, context) {
        misuse(format_args!(
            "{pointer:p} belongs to context {:p}, not to context {:p}",
            Arc::as_ptr(owner),
            Arc::as_ptr(context)
        ));
        return Err(ZE_RESULT_ERROR_INVALID_ARGUMENT);
    }
    let allocation = entry.remove();
    all.live_bytes -= allocation.size as u64;
    if allocation.kind == ZE_MEMORY_TYPE_HOST {
        all.host_free_calls += 1;
    }
    Ok(allocation.memory)
}

/// Frees at once: the application guarantees that no command still uses the memory.
pub unsafe extern "C" fn free(context: ze_context_handle_t, pointer: *mut c_void) -> ze_result_t {
    entry("zeMemFree", || {
        let context = CONTEXTS.get(context)?;
        take(&context, pointer).map(drop)
    })
}

pub unsafe extern "C" fn free_ext(
    context: ze_context_handle_t,
    desc: *const ze_memory_free_ext_desc_t,
    pointer: *mut c_void,
) -> ze_result_t {
    entry("zeMemFreeExt", || {
        let context = CONTEXTS.get(context)?;
        // SAFETY: application pointer, valid per the API contract.
        let desc = unsafe { input(desc) }?;
        // SAFETY: the chain of an application input, valid per the API contract.
        unsafe { unchained(desc.pNext) }?;
        let policy = desc.freePolicy;
        if pointer.is_null() {
            return Err(ZE_RESULT_ERROR_INVALID_NULL_POINTER);
        }
        check_flags(policy, FREE_POLICIES)?;
        let memory = take(&context, pointer)?;
        // "Commands using the memory" are taken to be all the work submitted
        // in the context so far: the driver does not track which command
        // touches which allocation.
        if policy & ZE_DRIVER_MEMORY_FREE_POLICY_EXT_FLAG_BLOCKING_FREE != 0 {
            executor::wait_for_context(&context);
        } else if policy & ZE_DRIVER_MEMORY_FREE_POLICY_EXT_FLAG_DEFER_FREE != 0 {
            executor::release_after_context_work(&context, memory);
        }
        Ok(())
    })
}

/// Memory of another context, or not from this driver, is `ZE_MEMORY_TYPE_UNKNOWN`.
pub unsafe extern "C" fn get_alloc_properties(
    context: ze_context_handle_t,
    pointer: *const c_void,
    properties: *mut ze_memory_allocation_properties_t,
    device: *mut ze_device_handle_t,
) -> ze_result_t {
    entry("zeMemGetAllocProperties", || {
        let context = CONTEXTS.get(context)?;
        if pointer.is_null() {
            return Err(ZE_RESULT_ERROR_INVALID_NULL_POINTER);
        }
        // SAFETY: application pointers, valid per the API contract; `device` is optional.
        let (properties, device) = unsafe { (output(properties)?, device.as_mut()) };
        // SAFETY: the chain of an application output, valid per the API contract.
        unsafe { unchained(properties.pNext) }?;
        let all = lock(&ALLOCATIONS);
        let found = all.containing(&context, pointer as usize).map(|(_, allocation)| allocation);
        properties.type_ = found.map_or(ZE_MEMORY_TYPE_UNKNOWN, |allocation| allocation.kind);
        properties.id = found.map_or(0, |allocation| allocation.id);
        properties.pageSize = found.map_or(0, |_| PAGE_SIZE as u64);
        if let Some(device) = device {
            *device = found.and_then(|allocation| allocation.device).map_or(null_mut(), Device::handle);
        }
        Ok(())
    })
}

pub unsafe extern "C" fn get_address_range(
    context: ze_context_handle_t,
    pointer: *const c_void,
    base: *mut *mut c_void,
    size: *mut usize,
) -> ze_result_t {
    entry("zeMemGetAddressRange", || {
        let context = CONTEXTS.get(context)?;
        if pointer.is_null() {
            return Err(ZE_RESULT_ERROR_INVALID_NULL_POINTER);
        }
        let all = lock(&ALLOCATIONS);
        let (start, allocation) = all.containing(&context, pointer as usize).ok_or(ZE_RESULT_ERROR_INVALID_ARGUMENT)?;
        // SAFETY: optional application outputs, valid when non-null per the API contract.
        let (base, size) = unsafe { (base.as_mut(), size.as_mut()) };
        if let Some(base) = base {
            *base = start as *mut c_void;
        }
        if let Some(size) = size {
            *size = allocation.size;
        }
        Ok(())
    })
}

/// Checks that `[pointer, pointer + size)` lies in one live allocation of
/// `context`: all memory here is always resident, so that is all that making
/// it resident, or evicting it, asks of this driver.
fn check_range(
    context: ze_context_handle_t,
    device: ze_device_handle_t,
    pointer: *mut c_void,
    size: usize,
) -> ZeResult {
    let context = CONTEXTS.get(context)?;
    device::lookup(device)?;
    if pointer.is_null() {
        return Err(ZE_RESULT_ERROR_INVALID_NULL_POINTER);
    }
    let all = lock(&ALLOCATIONS);
    let (base, allocation) = all.containing(&context, pointer as usize).ok_or_else(|| {
        misuse(format_args!("{pointer:p} is not in a live allocation of this context"));
        ZE_RESULT_ERROR_INVALID_ARGUMENT
    })?;
    if size > allocation.size - (pointer as usize - base) {
        misuse(format_args!("{size} bytes from {pointer:p} run past the end of its allocation"));
        return Err(ZE_RESULT_ERROR_INVALID_SIZE);
    }
    Ok(())
}

pub unsafe extern "C" fn make_resident(
    context: ze_context_handle_t,
    device: ze_device_handle_t,
    pointer: *mut c_void,
    size: usize,
) -> ze_result_t {
    entry("zeContextMakeMemoryResident", || check_range(context, device, pointer, size))
}

pub unsafe extern "C" fn evict(
    context: ze_context_handle_t,
    device: ze_device_handle_t,
    pointer: *mut c_void,
    size: usize,
) -> ze_result_t {
    entry("zeContextEvictMemory", || check_range(context, device, pointer, size))
}
