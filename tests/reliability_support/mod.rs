//! What the reliability tests (stress, fault injection, hostile input) share:
//! the C API called as a C program calls it, the software driver's live-object
//! counts, a held-back stream, a small random generator, and the child-process
//! pattern for tests that need driver knobs (knobs are read from the
//! environment when the driver loads, so they are set before a child starts).
// Each test binary that includes this module uses only some of it.
#![allow(dead_code)]

use std::ffi::{c_void, CStr};
use std::process::Command;
use std::ptr::null_mut;
use std::time::{Duration, Instant};

use level_zero_sys as ze;
use level_zero_sys::software_driver::*;
use xpu_caching_host_allocator::abi::c_api::*;
use xpu_caching_host_allocator::abi::error::{xpu_host_last_error_message, xpu_host_result};
use xpu_caching_host_allocator::caching::Stats;

pub use xpu_host_result::*;

pub fn require_driver() {
    assert!(
        std::env::var_os("ZE_ENABLE_ALT_DRIVERS").is_some(),
        "run with ZE_ENABLE_ALT_DRIVERS=/abs/path/target/debug/libze_software_driver.so (scripts/test does)"
    );
}

/// Runs the `#[ignore]`d test `name` of this test executable in a child process
/// with `env` set, echoes its output, and checks that it passed.
pub fn run_child(name: &str, env: &[(&str, &str)]) -> String {
    require_driver();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"]);
    command.envs(env.iter().copied());
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Only the child's own report lines; the harness's lines would read as a
    // second run (with one test thread it prints "test name ... " before them).
    for line in stdout.lines().filter_map(|line| line.find("reliability:").map(|at| &line[at..])) {
        println!("{line}");
    }
    assert!(output.status.success(), "child {name} ({env:?}) failed: {}\n{stdout}\n{stderr}", output.status);
    stdout
}

/// A number from the environment, or `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// xorshift64*: enough randomness for choosing sizes and streams, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

pub fn stream(device_index: i8, id: i64) -> xpu_host_stream {
    xpu_host_stream { device_type: 12, device_index, id }
}

pub fn last_error() -> String {
    // SAFETY: the library returns a NUL-terminated string valid until the next call on this thread.
    unsafe { CStr::from_ptr(xpu_host_last_error_message()) }.to_string_lossy().into_owned()
}

/// `xpu_host_allocate`: (data, context), or the code and message.
pub fn allocate(size: usize) -> Result<(usize, usize), (xpu_host_result, String)> {
    let (mut data, mut context) = (null_mut(), null_mut());
    // SAFETY: both out-pointers are valid locals.
    match unsafe { xpu_host_allocate(size, &mut data, &mut context) } {
        XPU_HOST_SUCCESS => Ok((data as usize, context as usize)),
        code => Err((code, last_error())),
    }
}

pub fn free(context: usize) -> xpu_host_result {
    xpu_host_free(context as *mut c_void)
}

/// `xpu_host_record_stream`: whether the block was ours, or the code and message.
pub fn record(data: usize, context: usize, stream: xpu_host_stream) -> Result<bool, (xpu_host_result, String)> {
    let mut recorded = false;
    // SAFETY: `recorded` is a valid local; data and context are only compared.
    match unsafe { xpu_host_record_stream(data as *mut c_void, context as *mut c_void, stream, &mut recorded) } {
        XPU_HOST_SUCCESS => Ok(recorded),
        code => Err((code, last_error())),
    }
}

pub fn stats() -> Stats {
    let mut stats = xpu_host_stats { size: std::mem::size_of::<xpu_host_stats>(), ..Default::default() };
    // SAFETY: a valid local.
    assert_eq!(unsafe { xpu_host_get_stats(&mut stats) }, XPU_HOST_SUCCESS);
    stats.counters
}

/// Cached blocks per the size-class statistics (the stats struct counts bytes only).
pub fn cached_blocks() -> i64 {
    let mut classes = vec![xpu_host_size_class_stats::default(); 512];
    classes[0].size = std::mem::size_of::<xpu_host_size_class_stats>();
    let mut count = 0usize;
    // SAFETY: room for 512 entries; count is a valid local.
    assert_eq!(
        unsafe { xpu_host_get_size_class_stats(classes.as_mut_ptr(), classes.len(), &mut count) },
        XPU_HOST_SUCCESS
    );
    classes.iter().take(count).map(|class| class.cached).sum()
}

pub fn allocator_context() -> (ze::ze_driver_handle_t, ze::ze_context_handle_t) {
    let (mut driver, mut context) = (null_mut(), null_mut());
    // SAFETY: valid out-pointers.
    assert_eq!(unsafe { xpu_host_get_context(&mut driver, &mut context) }, XPU_HOST_SUCCESS, "{}", last_error());
    (driver, context)
}

/// The software driver's process-wide live-object counts.
pub fn live_objects() -> zex_software_driver_live_objects_t {
    let (driver, _) = allocator_context();
    let mut function: *mut c_void = null_mut();
    // SAFETY: a live driver handle, a NUL-terminated name and a valid out-pointer.
    let found = unsafe {
        ze::zeDriverGetExtensionFunctionAddress(
            driver,
            ZEX_SOFTWARE_DRIVER_GET_LIVE_OBJECTS_NAME.as_ptr(),
            &mut function,
        )
    };
    assert_eq!(found, ze::ZE_RESULT_SUCCESS, "the software driver has the live-objects extension");
    // SAFETY: the driver hands out this function under this name
    // (ze-software-driver/include/ze_software_driver.h); null becomes None.
    let get: zex_pfnSoftwareDriverGetLiveObjects_t = unsafe { std::mem::transmute(function) };
    let get = get.expect("the live-objects function");
    let mut live = zex_software_driver_live_objects_t::default();
    // SAFETY: a valid out-pointer.
    assert_eq!(unsafe { get(&mut live) }, ze::ZE_RESULT_SUCCESS);
    live
}

/// Empties the cache until no block waits for a stream and none is cached, for
/// at most `limit`; the statistics at the end.
pub fn drain(limit: Duration) -> Stats {
    let deadline = Instant::now() + limit;
    loop {
        assert_eq!(xpu_host_empty_cache(), XPU_HOST_SUCCESS, "{}", last_error());
        let stats = stats();
        if (stats.pending_blocks.current == 0 && stats.cached_bytes.current == 0) || Instant::now() > deadline {
            return stats;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

struct Fill {
    data: usize,
    size: usize,
    pattern: u64,
}

unsafe extern "C" fn append_fill(user_data: *mut c_void, list: ze::ze_command_list_handle_t) -> ze::ze_result_t {
    // SAFETY: user_data is the Fill the caller passed, alive for the call.
    let fill = unsafe { &*(user_data as *const Fill) };
    // SAFETY: the list is locked for us; the driver copies the pattern now; the
    // memory stays allocated until the stream's event says the fill has run.
    unsafe {
        ze::zeCommandListAppendMemoryFill(
            list,
            fill.data as *mut c_void,
            (&raw const fill.pattern).cast(),
            8,
            fill.size,
            null_mut(),
            0,
            null_mut(),
        )
    }
}

/// Device work on `stream`: fills `size` bytes at `data` with `pattern`, after
/// everything already on the stream (and after the driver's command latency).
pub fn submit_fill(
    stream: xpu_host_stream,
    data: usize,
    size: usize,
    pattern: u64,
) -> Result<(), (xpu_host_result, String)> {
    let fill = Fill { data, size, pattern };
    // SAFETY: append_fill matches the callback type and uses user_data only during the call.
    match unsafe { xpu_host_stream_submit(stream, Some(append_fill), (&raw const fill).cast_mut().cast()) } {
        XPU_HOST_SUCCESS => Ok(()),
        code => Err((code, last_error())),
    }
}

unsafe extern "C" fn append_wait(user_data: *mut c_void, list: ze::ze_command_list_handle_t) -> ze::ze_result_t {
    let mut event = user_data as ze::ze_event_handle_t;
    // SAFETY: the list is locked for us; the event is live until the gate opens.
    unsafe { ze::zeCommandListAppendWaitOnEvents(list, 1, &mut event) }
}

/// A stream held back on a host-signalled event: nothing submitted to it after
/// `hold` runs until `open`. The event lives until the process ends, since a
/// command list may still reference it.
pub struct Gate {
    event: ze::ze_event_handle_t,
}

impl Gate {
    pub fn new() -> Gate {
        let (_, context) = allocator_context();
        let pool_desc = ze::ze_event_pool_desc_t {
            stype: ze::ZE_STRUCTURE_TYPE_EVENT_POOL_DESC,
            pNext: std::ptr::null(),
            flags: ze::ZE_EVENT_POOL_FLAG_HOST_VISIBLE,
            count: 1,
        };
        let event_desc = ze::ze_event_desc_t {
            stype: ze::ZE_STRUCTURE_TYPE_EVENT_DESC,
            pNext: std::ptr::null(),
            index: 0,
            signal: ze::ZE_EVENT_SCOPE_FLAG_HOST,
            wait: ze::ZE_EVENT_SCOPE_FLAG_HOST,
        };
        let (mut pool, mut event) = (null_mut(), null_mut());
        // SAFETY: a live context; valid descriptors and out-pointers.
        unsafe {
            assert_eq!(ze::zeEventPoolCreate(context, &pool_desc, 0, null_mut(), &mut pool), ze::ZE_RESULT_SUCCESS);
            assert_eq!(ze::zeEventCreate(pool, &event_desc, &mut event), ze::ZE_RESULT_SUCCESS);
        }
        Gate { event }
    }

    pub fn hold(&self, stream: xpu_host_stream) -> xpu_host_result {
        // SAFETY: append_wait matches the callback type; the event outlives the call.
        unsafe { xpu_host_stream_submit(stream, Some(append_wait), self.event.cast()) }
    }

    pub fn open(&self) {
        // SAFETY: a live event.
        assert_eq!(unsafe { ze::zeEventHostSignal(self.event) }, ze::ZE_RESULT_SUCCESS);
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}
