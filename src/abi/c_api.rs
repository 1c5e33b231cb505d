//! The C API declared in `include/xpu_caching_host_allocator.h`.
//!
//! Every function is thread-safe and may be called from any thread at any time,
//! unless its documentation says otherwise. Fallible functions return an
//! [`xpu_host_result`]; on failure [`super::error::xpu_host_last_error_message`]
//! says why. No function aborts the process or lets a Rust panic out.

// The types are named as C programs see them in the generated header.
#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_void};

use level_zero_sys::{
    ze_command_list_handle_t, ze_context_handle_t, ze_driver_handle_t, ze_event_handle_t, ze_result_t,
};

use super::error::{ffi_call, xpu_host_result, Failure};
use super::instance::{allocator, check_configuration, configure};
use super::sized::{self, CarriesSize};
use crate::caching::{self, StreamKey};
use crate::level_zero::{Context, StreamHooks};

/// The version of the library this header describes: what changes in a minor
/// or a patch release is said in the README ("Conventions and ABI stability").
pub const XPU_HOST_VERSION_MAJOR: u32 = 0;
pub const XPU_HOST_VERSION_MINOR: u32 = 3;
pub const XPU_HOST_VERSION_PATCH: u32 = 0;
/// The three in one number, `(major << 16) | (minor << 8) | patch`, as
/// [`xpu_host_version`] returns the library's.
pub const XPU_HOST_VERSION: u32 =
    (XPU_HOST_VERSION_MAJOR << 16) | (XPU_HOST_VERSION_MINOR << 8) | XPU_HOST_VERSION_PATCH;

// The header's constants are literals (cbindgen copies them); Cargo.toml's
// version is the one releases are tagged with. They must agree.
const _: () = {
    const fn decimal(text: &str) -> u32 {
        let bytes = text.as_bytes();
        let mut value = 0;
        let mut i = 0;
        while i < bytes.len() {
            value = value * 10 + (bytes[i] - b'0') as u32;
            i += 1;
        }
        value
    }
    assert!(decimal(env!("CARGO_PKG_VERSION_MAJOR")) == XPU_HOST_VERSION_MAJOR);
    assert!(decimal(env!("CARGO_PKG_VERSION_MINOR")) == XPU_HOST_VERSION_MINOR);
    assert!(decimal(env!("CARGO_PKG_VERSION_PATCH")) == XPU_HOST_VERSION_PATCH);
};

/// The version of the library loaded, encoded as `XPU_HOST_VERSION`. A program
/// built against this header works with a library of the same major version
/// and the same or a later minor version.
#[no_mangle]
pub extern "C" fn xpu_host_version() -> u32 {
    XPU_HOST_VERSION
}

/// A stream as PyTorch passes one (`c10::xpu::XPUStream`, `c10::Stream`): 16
/// bytes, passed by value. Device type 12 is XPU. The allocator treats it as an
/// opaque key; streams with the same three values are the same stream.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct xpu_host_stream {
    pub device_type: i8,
    pub device_index: i8,
    pub id: i64,
}

impl From<xpu_host_stream> for StreamKey {
    fn from(stream: xpu_host_stream) -> StreamKey {
        StreamKey { device_type: stream.device_type, device_index: stream.device_index, id: stream.id }
    }
}

impl From<StreamKey> for xpu_host_stream {
    fn from(stream: StreamKey) -> xpu_host_stream {
        xpu_host_stream { device_type: stream.device_type, device_index: stream.device_index, id: stream.id }
    }
}

/// Records on `stream` an event that completes once all work submitted to the
/// stream so far has completed, and stores it in `*event`; `*token` is handed
/// back to `release` with it. A null `*event` says the stream has no work
/// pending: nothing to wait for, and nothing to release. Returns false if it
/// could not.
pub type xpu_host_record_hook = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        stream: xpu_host_stream,
        event: *mut ze_event_handle_t,
        token: *mut *mut c_void,
    ) -> bool,
>;

/// The allocator no longer polls `event`: it has completed, or the allocator gave up on it.
pub type xpu_host_release_hook =
    Option<unsafe extern "C" fn(user_data: *mut c_void, event: ze_event_handle_t, token: *mut c_void)>;

/// How a host runtime that owns its streams' command lists (a SYCL runtime)
/// records the events the allocator waits for. Both hooks may be called from any
/// thread, concurrently; `user_data` must stay valid for the life of the process.
#[repr(C)]
pub struct xpu_host_stream_hooks {
    /// `sizeof(xpu_host_stream_hooks)`, set by the caller.
    pub size: usize,
    pub user_data: *mut c_void,
    pub record: xpu_host_record_hook,
    pub release: xpu_host_release_hook,
}

// SAFETY: repr(C), `size` first; zeroed, the pointer is null and the hooks None.
unsafe impl CarriesSize for xpu_host_stream_hooks {
    const NAME: &'static str = "xpu_host_stream_hooks";
}

struct CHooks {
    user_data: usize,
    record: unsafe extern "C" fn(*mut c_void, xpu_host_stream, *mut ze_event_handle_t, *mut *mut c_void) -> bool,
    release: unsafe extern "C" fn(*mut c_void, ze_event_handle_t, *mut c_void),
}

impl StreamHooks for CHooks {
    fn record(&self, stream: StreamKey) -> Result<Option<(ze_event_handle_t, usize)>, String> {
        let mut event = std::ptr::null_mut();
        let mut token = std::ptr::null_mut();
        // SAFETY: the host promised, when it registered the hook, that it may be
        // called from any thread with its user data; the out-pointers are valid.
        let recorded = unsafe { (self.record)(self.user_data as *mut c_void, stream.into(), &mut event, &mut token) };
        match (recorded, event.is_null()) {
            (true, false) => Ok(Some((event, token as usize))),
            (true, true) => Ok(None),
            (false, _) => Err("the record hook failed".into()),
        }
    }

    fn release(&self, event: ze_event_handle_t, token: usize) {
        // SAFETY: as for record; the event and token are the ones record gave.
        unsafe { (self.release)(self.user_data as *mut c_void, event, token as *mut c_void) }
    }
}

/// Allocates in the host runtime's Level Zero driver and context instead of a
/// context of the library's own. PyTorch XPU's is the native handle of
/// `c10::xpu::get_device_context()`: memory from any other context is not
/// pinned in PyTorch's eyes (`tensor.is_pinned()` is false).
///
/// Must be called before the allocator is first used
/// (`XPU_HOST_ERROR_ALREADY_INITIALIZED` otherwise). The handles must stay valid
/// for the life of the process; the library never destroys them.
#[no_mangle]
pub extern "C" fn xpu_host_use_context(driver: ze_driver_handle_t, context: ze_context_handle_t) -> xpu_host_result {
    ffi_call(|| {
        let context = Context::from_host(driver, context)?;
        configure("the Level Zero context", |setup| setup.context = Some(context))
    })
}

/// Records stream events through the host runtime's hooks instead of on the
/// library's own command lists. `hooks` is copied. Must be called before the
/// allocator is first used.
///
/// # Safety
/// `hooks` is null or points at an `xpu_host_stream_hooks` whose `size` is
/// set and readable.
#[no_mangle]
pub unsafe extern "C" fn xpu_host_set_stream_hooks(hooks: *const xpu_host_stream_hooks) -> xpu_host_result {
    ffi_call(|| {
        if hooks.is_null() {
            return Err(Failure::invalid("hooks is null"));
        }
        // SAFETY: non-null; the caller promises `hooks->size` readable bytes.
        let hooks = unsafe { sized::read(hooks) }?;
        let (Some(record), Some(release)) = (hooks.record, hooks.release) else {
            return Err(Failure::invalid("both the record and the release hook are required"));
        };
        let hooks = CHooks { user_data: hooks.user_data as usize, record, release };
        configure("the stream hooks", |setup| setup.hooks = Some(Box::new(hooks)))
    })
}

/// Applies settings in PyTorch's `key:value,key:value` form, on top of the
/// environment (`PYTORCH_ALLOC_CONF`'s `pinned_*` keys, then
/// `XPU_CACHING_HOST_ALLOCATOR_CONF`). Keys: `pinned_fit` (exact, the default,
/// or rounded, PyTorch's), `pinned_roundup_divisions` (1, 2, 4 or 8),
/// `pinned_max_round_threshold_mb`, `pinned_max_cached_size_mb`,
/// `pinned_use_background_threads`, `pinned_release_cached_on_miss` and
/// `pinned_split_blocks` (True or False); README.md says what each does. An unknown key or a bad
/// value is `XPU_HOST_ERROR_INVALID_CONFIGURATION` and changes nothing. Must be
/// called before the allocator is first used.
///
/// # Safety
/// `configuration` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn xpu_host_configure(configuration: *const c_char) -> xpu_host_result {
    ffi_call(|| {
        if configuration.is_null() {
            return Err(Failure::invalid("configuration is null"));
        }
        // SAFETY: the caller passes a NUL-terminated string.
        let text = unsafe { std::ffi::CStr::from_ptr(configuration) }
            .to_str()
            .map_err(|_| Failure::invalid("configuration is not UTF-8"))?
            .to_owned();
        check_configuration(&text)?;
        configure("the configuration", |setup| setup.configuration.push(text))
    })
}

/// Starts the allocator now rather than at its first use, so that a missing
/// driver is reported at a moment of the host's choosing. Calling it again does nothing.
#[no_mangle]
pub extern "C" fn xpu_host_init() -> xpu_host_result {
    ffi_call(|| allocator().map(|_| ()))
}

/// Allocates `size` bytes of pinned host memory, aligned to 512 bytes.
///
/// On success `*data` is the memory and `*context` names the block: pass it to
/// [`xpu_host_free`] and [`xpu_host_record_stream`]. Size 0 succeeds with both
/// null. The caller owns the block until it frees it.
///
/// # Safety
/// `data` and `context` are valid pointers to writable `void*`.
#[no_mangle]
pub unsafe extern "C" fn xpu_host_allocate(
    size: usize,
    data: *mut *mut c_void,
    context: *mut *mut c_void,
) -> xpu_host_result {
    ffi_call(|| {
        if data.is_null() || context.is_null() {
            return Err(Failure::invalid("data and context must not be null"));
        }
        let allocation = allocator()?.allocate(size)?;
        let (address, block) = allocation.map_or((0, 0), |a| (a.address, a.context));
        // SAFETY: both pointers were checked non-null and the caller promises they are writable.
        unsafe {
            *data = address as *mut c_void;
            *context = block as *mut c_void;
        }
        Ok(())
    })
}

/// Frees the block named by `context`. If streams used it, it is reused only
/// after the events recorded on them now have completed. A null context does
/// nothing; an unknown one is `XPU_HOST_ERROR_UNKNOWN_BLOCK`, a block freed twice
/// `XPU_HOST_ERROR_NOT_ALLOCATED`; neither changes anything.
#[no_mangle]
pub extern "C" fn xpu_host_free(context: *mut c_void) -> xpu_host_result {
    ffi_call(|| {
        if context.is_null() {
            return Ok(());
        }
        Ok(allocator()?.free(context as usize)?)
    })
}

/// Notes that `stream` uses the block named by `context`, or else the block whose
/// base address is `data` (memory wrapped without its context). `*recorded` says
/// whether the memory was a block of ours; anything else changes nothing.
///
/// # Safety
/// `recorded` is a valid pointer to a writable `bool`. `data` and `context` may
/// be anything: they are compared, never dereferenced.
#[no_mangle]
pub unsafe extern "C" fn xpu_host_record_stream(
    data: *mut c_void,
    context: *mut c_void,
    stream: xpu_host_stream,
    recorded: *mut bool,
) -> xpu_host_result {
    ffi_call(|| {
        if recorded.is_null() {
            return Err(Failure::invalid("recorded must not be null"));
        }
        let result = record_stream(data, context, stream)?;
        // SAFETY: checked non-null; the caller promises it is writable.
        unsafe { *recorded = result };
        Ok(())
    })
}

/// [`xpu_host_record_stream`] without its out-pointer: whether `stream` now
/// uses a block of ours. The pointers are compared, never dereferenced.
pub(crate) fn record_stream(data: *mut c_void, context: *mut c_void, stream: xpu_host_stream) -> Result<bool, Failure> {
    Ok(allocator()?.record_stream(data as usize, context as usize, stream.into())?)
}

/// Reclaims blocks whose stream events have completed, then returns every free
/// cached block to the driver. Blocks in use or waiting for events stay, and so
/// do free parts of split memory (`pinned_split_blocks`) while another part of
/// it is in use or waiting.
#[no_mangle]
pub extern "C" fn xpu_host_empty_cache() -> xpu_host_result {
    ffi_call(|| {
        super::lifecycle::check_usable()?;
        match super::instance::started() {
            Some(allocator) => Ok(allocator.empty_cache()?),
            None => Ok(()),
        }
    })
}

/// Runs `submit(user_data, list)` with the library's own command list for
/// `stream`, while no other thread appends to it, so that a program can put work
/// on the same stream the allocator records its events on. The list executes
/// in order. Returns `XPU_HOST_ERROR_LEVEL_ZERO` if `submit` returns anything but
/// `ZE_RESULT_SUCCESS`, and `XPU_HOST_ERROR_INVALID_ARGUMENT` when streams belong to
/// the host runtime (hooks were set).
///
/// # Safety
/// `submit` is a valid function; it must not call back into this library's
/// functions for the same stream (that would deadlock), nor keep `list`.
#[no_mangle]
pub unsafe extern "C" fn xpu_host_stream_submit(
    stream: xpu_host_stream,
    submit: Option<unsafe extern "C" fn(user_data: *mut c_void, list: ze_command_list_handle_t) -> ze_result_t>,
    user_data: *mut c_void,
) -> xpu_host_result {
    ffi_call(|| {
        let submit = submit.ok_or_else(|| Failure::invalid("submit is null"))?;
        let backend = allocator()?.backend();
        // SAFETY: the caller promises submit is a valid function that may use the
        // list while the lock is held.
        let outcome = backend.with_stream_command_list(stream.into(), |list| unsafe { submit(user_data, list) });
        match outcome {
            None => Err(Failure::invalid("streams belong to the host runtime (stream hooks are set)")),
            Some(Err(error)) => Err(error.into()),
            Some(Ok(level_zero_sys::ZE_RESULT_SUCCESS)) => Ok(()),
            Some(Ok(other)) => Err(Failure::new(
                xpu_host_result::XPU_HOST_ERROR_LEVEL_ZERO,
                format!("the submit callback returned {}", crate::level_zero::ZeResult(other)),
            )),
        }
    })
}

/// The Level Zero driver and context the allocator allocates in (starting it if
/// needed), so that a program can create events and command lists beside it.
///
/// # Safety
/// `driver` and `context` are valid pointers to writable handles.
#[no_mangle]
pub unsafe extern "C" fn xpu_host_get_context(
    driver: *mut ze_driver_handle_t,
    context: *mut ze_context_handle_t,
) -> xpu_host_result {
    ffi_call(|| {
        if driver.is_null() || context.is_null() {
            return Err(Failure::invalid("driver and context must not be null"));
        }
        let ours = allocator()?.backend().context();
        // SAFETY: checked non-null; the caller promises they are writable.
        unsafe {
            *driver = ours.driver();
            *context = ours.handle();
        }
        Ok(())
    })
}

/// Writes a one-line description of the driver and devices in use into
/// `buffer` (NUL-terminated, truncated to `capacity`); `*needed` (if not null)
/// gets the full length including the NUL.
///
/// # Safety
/// `buffer` is null with `capacity` 0, or valid for `capacity` bytes.
#[no_mangle]
pub unsafe extern "C" fn xpu_host_describe(
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> xpu_host_result {
    ffi_call(|| {
        let text = allocator()?.backend().context().describe();
        // SAFETY: forwarded from the caller's promise.
        unsafe { write_string(&text, buffer, capacity, needed) }
    })
}

unsafe fn write_string(text: &str, buffer: *mut c_char, capacity: usize, needed: *mut usize) -> Result<(), Failure> {
    if buffer.is_null() && capacity > 0 {
        return Err(Failure::invalid("buffer is null but capacity is not 0"));
    }
    if !needed.is_null() {
        // SAFETY: the caller passes null or a writable pointer.
        unsafe { *needed = text.len() + 1 };
    }
    if capacity > 0 {
        let n = text.len().min(capacity - 1);
        // SAFETY: buffer is valid for capacity bytes and n + 1 <= capacity.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buffer.cast::<u8>(), n);
            *buffer.add(n) = 0;
        }
    }
    Ok(())
}

/// The statistics, as far as the caller's `size` reaches. `counters` is the
/// library's list of them (`xpu_host_counters`); later versions add fields
/// at its end, so a program reads the fields its header knows.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct xpu_host_stats {
    /// `sizeof(xpu_host_stats)`, set by the caller; on return, the bytes filled.
    pub size: usize,
    pub counters: caching::Stats,
}

// SAFETY: repr(C), `size` first, all integers.
unsafe impl CarriesSize for xpu_host_stats {
    const NAME: &'static str = "xpu_host_stats";
}

/// One size class: blocks of it held from the driver, and how many are cached.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct xpu_host_size_class_stats {
    /// `sizeof(xpu_host_size_class_stats)`, set by the caller in the array's
    /// first element: the array's stride. On return, in every element filled,
    /// the bytes filled.
    pub size: usize,
    /// Bytes of a rounded block of the class (unrounded large blocks are listed with their class).
    pub block_size: usize,
    pub allocations: caching::Stat,
    /// Of `allocations.current`, blocks free in the cache now.
    pub cached: i64,
}

// SAFETY: repr(C), `size` first, all integers.
unsafe impl CarriesSize for xpu_host_size_class_stats {
    const NAME: &'static str = "xpu_host_size_class_stats";
}

/// Fills `classes[0..capacity)` with the size classes that ever held a block,
/// smallest first; `*count` gets how many there are (which may exceed `capacity`).
///
/// # Safety
/// `classes` is null with `capacity` 0, or valid for `capacity` elements of
/// `classes[0].size` bytes each; `count` is a valid pointer.
#[no_mangle]
pub unsafe extern "C" fn xpu_host_get_size_class_stats(
    classes: *mut xpu_host_size_class_stats,
    capacity: usize,
    count: *mut usize,
) -> xpu_host_result {
    ffi_call(|| {
        if count.is_null() || (classes.is_null() && capacity > 0) {
            return Err(Failure::invalid("count is null, or classes is null with a capacity"));
        }
        let all = super::instance::started().map(|a| a.class_stats()).unwrap_or_default();
        if capacity > 0 {
            // SAFETY: `classes` has room for `capacity > 0` elements (contract).
            let stride = unsafe { sized::stride(classes) }?;
            for (i, class) in all.iter().take(capacity).enumerate() {
                let entry = xpu_host_size_class_stats {
                    size: stride,
                    block_size: class.size,
                    allocations: class.allocations,
                    cached: class.cached as i64,
                };
                // SAFETY: element `i < capacity` starts `i * stride` bytes in,
                // with room for `stride` bytes (contract); its `size` is set
                // to that room before the write reads it.
                unsafe {
                    let element = classes.byte_add(i * stride);
                    element.cast::<usize>().write_unaligned(stride);
                    sized::write(element, entry)?;
                }
            }
        }
        // SAFETY: checked non-null.
        unsafe { *count = all.len() };
        Ok(())
    })
}

fn current_stats() -> caching::Stats {
    super::instance::started().map(|a| a.stats()).unwrap_or_default()
}

/// Fills `*stats`, as far as `stats->size` reaches. Before the allocator has
/// started, every counter is 0.
///
/// # Safety
/// `stats` is a valid pointer to an `xpu_host_stats` whose `size` is set and
/// writable for that many bytes.
#[no_mangle]
pub unsafe extern "C" fn xpu_host_get_stats(stats: *mut xpu_host_stats) -> xpu_host_result {
    ffi_call(|| {
        if stats.is_null() {
            return Err(Failure::invalid("stats must not be null"));
        }
        let now = xpu_host_stats { size: std::mem::size_of::<xpu_host_stats>(), counters: current_stats() };
        // SAFETY: checked non-null; the caller promises `stats->size` bytes.
        unsafe { sized::write(stats, now) }
    })
}

/// Writes the statistics as one line for logs, like [`xpu_host_describe`]:
/// each counter by name, gauges as `current/peak/allocated/freed` and
/// durations as `total/max/min/count` in microseconds.
///
/// # Safety
/// As for [`xpu_host_describe`].
#[no_mangle]
pub unsafe extern "C" fn xpu_host_stats_string(
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> xpu_host_result {
    // SAFETY: forwarded from the caller's promise.
    ffi_call(|| unsafe { write_string(&current_stats().to_string(), buffer, capacity, needed) })
}

/// Sets every peak to its current value.
#[no_mangle]
pub extern "C" fn xpu_host_reset_peak_stats() {
    // Nothing can fail; a panic is caught and dropped rather than crossing.
    let _ = ffi_call(|| {
        super::instance::started().inspect(|a| a.reset_peak_stats());
        Ok(())
    });
}

/// Sets every allocated/freed total, time and count to 0.
#[no_mangle]
pub extern "C" fn xpu_host_reset_accumulated_stats() {
    let _ = ffi_call(|| {
        super::instance::started().inspect(|a| a.reset_accumulated_stats());
        Ok(())
    });
}
