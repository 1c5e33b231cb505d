//! What the tests share: the driver that ZE_ENABLE_ALT_DRIVERS selects, object
//! helpers, and child processes for tests that need a knob.

use std::ffi::c_void;
use std::process::{Command, Output};
use std::ptr::{null, null_mut};

pub use level_zero_sys::software_driver::*;
pub use level_zero_sys::*;

/// Calls a Level Zero function and returns its result.
macro_rules! call {
    ($call:expr) => {{
        // Some of the calls are to safe function pointers.
        #[allow(unused_unsafe)]
        // SAFETY: the tests pass live handles and pointers to live locals, as
        // the API requires; where a test passes a bad argument, it does so on
        // purpose, to check that the driver rejects it without using it.
        let result = unsafe { $call };
        result
    }};
}

/// Calls a Level Zero function and asserts that it succeeds.
macro_rules! ze {
    ($call:expr) => {
        assert_eq!(call!($call), ZE_RESULT_SUCCESS, "{}", stringify!($call))
    };
}

/// Set in the environment of a child process that runs one `#[ignore]`d test.
const CHILD_MARK: &str = "ZE_SOFTWARE_DRIVER_TEST_CHILD";

/// The loader version, major and minor (`1.8` or `1.20`), a test run is
/// meant to use, set by `scripts/test`, which runs the tests on Debian 12's
/// loader 1.8.12 and on loader 1.20.6 from `LD_LIBRARY_PATH`.
pub const EXPECTED_LOADER: &str = "ZE_SOFTWARE_DRIVER_TEST_LOADER";

/// The loader this process runs on, as `zelLoaderGetVersions` describes it
/// once initialised: its version, major and minor (e.g. `1.20`; Debian's
/// 1.8.12 calls itself 1.8.0), and the API version it was built for, which it
/// asks the driver's tables for.
pub fn loader() -> (String, ze_api_version_t) {
    setup();
    let mut count = 0;
    ze!(zelLoaderGetVersions(&mut count, null_mut()));
    let mut components = vec![zel_component_version_t::default(); count];
    ze!(zelLoaderGetVersions(&mut count, components.as_mut_ptr()));
    let loader = components
        .iter()
        // SAFETY: the loader writes NUL-terminated component names.
        .find(|component| unsafe { std::ffi::CStr::from_ptr(component.component_name.as_ptr()) } == c"loader")
        .expect("the loader lists itself among its components");
    let version = loader.component_lib_version;
    (format!("{}.{}", version.major, version.minor), loader.spec_version)
}

/// Whether the loader's API version reaches `version`, for a test of
/// `feature` from that version. A newer feature is outside the API version
/// the driver reports through this loader, and the loader's validation layer
/// rightly rejects its flags; its tests skip themselves then.
pub fn api_reaches(version: ze_api_version_t, feature: &str) -> bool {
    let (loader, api) = loader();
    let reaches = api >= version;
    if !reaches {
        eprintln!(
            "skipped: {feature} is from API {}.{}, loader {loader} has API {}.{}",
            version >> 16,
            version & 0xffff,
            api >> 16,
            api & 0xffff
        );
    }
    reaches
}

/// An entry point of the loader's newer than its 1.4 API, or None on a loader
/// without it. Looked up at run time, so that the test executable, linked
/// against Debian 12's loader, also starts on it.
///
/// `F` must be the entry point's `ze_pfn*_t` (an optional function pointer).
pub fn newer_function<F: Copy>(name: &std::ffi::CStr) -> Option<F> {
    extern "C" {
        fn dlsym(handle: *mut c_void, symbol: *const std::ffi::c_char) -> *mut c_void;
    }
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: RTLD_DEFAULT (null) searches the loaded libraries; `name` is a C string.
    let address = unsafe { dlsym(null_mut(), name.as_ptr()) };
    // SAFETY: a `ze_pfn*_t` is an `Option` of a function pointer, which has a
    // pointer's layout with null for None; the address is the loader's export
    // of that name, whose signature is the one `F` states.
    (!address.is_null()).then(|| unsafe { std::mem::transmute_copy::<*mut c_void, F>(&address) })
}

pub fn require_alt_driver() -> String {
    std::env::var("ZE_ENABLE_ALT_DRIVERS").expect(
        "ZE_ENABLE_ALT_DRIVERS is not set. These tests run the driver through the real loader: \
         `cargo build -p ze-software-driver`, then \
         `ZE_ENABLE_ALT_DRIVERS=$CARGO_TARGET_DIR/debug/libze_software_driver.so cargo test -p ze-software-driver` \
         (an absolute path; never set it empty)",
    )
}

/// Whether the loader wraps handles (`ZE_ENABLE_LOADER_INTERCEPT=1`).
pub fn loader_intercept() -> bool {
    std::env::var("ZE_ENABLE_LOADER_INTERCEPT").as_deref() == Ok("1")
}

/// Whether a stale handle would be dereferenced by the loader itself (its
/// intercept layer frees the wrapper of a destroyed object): tests of stale
/// handles skip themselves then.
pub fn stale_handles_reach_the_loader() -> bool {
    let skip = loader_intercept();
    if skip {
        eprintln!("skipped: with ZE_ENABLE_LOADER_INTERCEPT=1 the loader dereferences stale handles");
    }
    skip
}

/// Whether null handles and null handle arrays reach the driver, or a layer
/// that checks them first. With `ZE_ENABLE_LOADER_INTERCEPT=1` alone, the
/// loader dereferences null handles and replaces a null handle array with an
/// uninitialised one.
pub fn nulls_are_checked() -> bool {
    let on = |name| std::env::var(name).as_deref() == Ok("1");
    !loader_intercept() || (on("ZE_ENABLE_VALIDATION_LAYER") && on("ZE_ENABLE_PARAMETER_VALIDATION"))
}

pub struct Setup {
    pub driver: ze_driver_handle_t,
    pub device: ze_device_handle_t,
}

/// The software driver and its first device.
pub fn setup() -> Setup {
    require_alt_driver();
    ze!(zeInit(0));
    let mut count = 1;
    let mut driver = null_mut();
    ze!(zeDriverGet(&mut count, &mut driver));
    assert_eq!(count, 1, "one driver, the software driver");
    let mut device = null_mut();
    ze!(zeDeviceGet(driver, &mut count, &mut device));
    Setup { driver, device }
}

impl Setup {
    pub fn context(&self) -> ze_context_handle_t {
        let desc = ze_context_desc_t { stype: ZE_STRUCTURE_TYPE_CONTEXT_DESC, pNext: null(), flags: 0 };
        let mut context = null_mut();
        ze!(zeContextCreate(self.driver, &desc, &mut context));
        context
    }

    pub fn immediate_list(
        &self,
        context: ze_context_handle_t,
        mode: ze_command_queue_mode_t,
    ) -> ze_command_list_handle_t {
        let mut list = null_mut();
        ze!(zeCommandListCreateImmediate(context, self.device, &queue_desc(mode), &mut list));
        list
    }

    pub fn regular_list(&self, context: ze_context_handle_t) -> ze_command_list_handle_t {
        let desc = ze_command_list_desc_t {
            stype: ZE_STRUCTURE_TYPE_COMMAND_LIST_DESC,
            pNext: null(),
            commandQueueGroupOrdinal: 0,
            flags: 0,
        };
        let mut list = null_mut();
        ze!(zeCommandListCreate(context, self.device, &desc, &mut list));
        list
    }

    pub fn queue(&self, context: ze_context_handle_t, mode: ze_command_queue_mode_t) -> ze_command_queue_handle_t {
        let mut queue = null_mut();
        ze!(zeCommandQueueCreate(context, self.device, &queue_desc(mode), &mut queue));
        queue
    }

    /// The `zexSoftwareDriverGetLiveObjects` counts.
    pub fn live_objects(&self) -> zex_software_driver_live_objects_t {
        let mut function = null_mut();
        ze!(zeDriverGetExtensionFunctionAddress(
            self.driver,
            ZEX_SOFTWARE_DRIVER_GET_LIVE_OBJECTS_NAME.as_ptr(),
            &mut function
        ));
        // SAFETY: the driver hands out this function under this name
        // (include/ze_software_driver.h); null becomes None.
        let function: zex_pfnSoftwareDriverGetLiveObjects_t = unsafe { std::mem::transmute(function) };
        let function = function.expect("the live-objects function");
        let mut live = zex_software_driver_live_objects_t::default();
        ze!(function(&mut live));
        live
    }
}

pub fn queue_desc(mode: ze_command_queue_mode_t) -> ze_command_queue_desc_t {
    ze_command_queue_desc_t {
        stype: ZE_STRUCTURE_TYPE_COMMAND_QUEUE_DESC,
        pNext: null(),
        ordinal: 0,
        index: 0,
        flags: 0,
        mode,
        priority: ZE_COMMAND_QUEUE_PRIORITY_NORMAL,
    }
}

pub fn host_desc(flags: ze_host_mem_alloc_flags_t) -> ze_host_mem_alloc_desc_t {
    ze_host_mem_alloc_desc_t { stype: ZE_STRUCTURE_TYPE_HOST_MEM_ALLOC_DESC, pNext: null(), flags }
}

pub fn device_desc() -> ze_device_mem_alloc_desc_t {
    ze_device_mem_alloc_desc_t { stype: ZE_STRUCTURE_TYPE_DEVICE_MEM_ALLOC_DESC, pNext: null(), flags: 0, ordinal: 0 }
}

pub fn alloc_host(context: ze_context_handle_t, size: usize) -> *mut u8 {
    let mut memory: *mut c_void = null_mut();
    ze!(zeMemAllocHost(context, &host_desc(0), size, 0, &mut memory));
    memory.cast()
}

pub fn free(context: ze_context_handle_t, memory: *mut u8) {
    ze!(zeMemFree(context, memory.cast()));
}

/// A copy of `size` bytes of driver memory at `memory`, read once nothing writes them.
pub fn read(memory: *const u8, size: usize) -> Vec<u8> {
    // SAFETY: the tests read live allocations of at least `size` bytes that
    // no command is writing at the time.
    unsafe { std::slice::from_raw_parts(memory, size) }.to_vec()
}

/// Sets `size` bytes of driver memory at `memory` from the host.
pub fn write(memory: *mut u8, value: u8, size: usize) {
    // SAFETY: as for `read`, for writes.
    unsafe { std::ptr::write_bytes(memory, value, size) }
}

/// A host-visible event pool and its events, each at its own index.
pub struct Events {
    pub pool: ze_event_pool_handle_t,
    pub events: Vec<ze_event_handle_t>,
}

impl Events {
    pub fn new(context: ze_context_handle_t, count: u32) -> Events {
        Events::chained(context, null(), count)
    }

    /// A pool whose descriptor chains `next` (an extension structure, or null).
    pub fn chained(context: ze_context_handle_t, next: *const c_void, count: u32) -> Events {
        let pool_desc = ze_event_pool_desc_t {
            stype: ZE_STRUCTURE_TYPE_EVENT_POOL_DESC,
            pNext: next,
            flags: ZE_EVENT_POOL_FLAG_HOST_VISIBLE,
            count,
        };
        let mut pool = null_mut();
        ze!(zeEventPoolCreate(context, &pool_desc, 0, null_mut(), &mut pool));
        let events = (0..count)
            .map(|index| {
                let mut event = null_mut();
                ze!(zeEventCreate(pool, &event_desc(index), &mut event));
                event
            })
            .collect();
        Events { pool, events }
    }

    pub fn destroy(self) {
        for event in self.events {
            ze!(zeEventDestroy(event));
        }
        ze!(zeEventPoolDestroy(self.pool));
    }
}

pub fn event_desc(index: u32) -> ze_event_desc_t {
    ze_event_desc_t {
        stype: ZE_STRUCTURE_TYPE_EVENT_DESC,
        pNext: null(),
        index,
        signal: ZE_EVENT_SCOPE_FLAG_HOST,
        wait: ZE_EVENT_SCOPE_FLAG_HOST,
    }
}

/// Runs the `#[ignore]`d test `test` (its full path, e.g. `knobs::latency_child`)
/// alone in a new process of this executable, with `knobs` in its environment.
pub fn run_child(test: &str, knobs: &[(&str, &str)]) -> Output {
    let output = Command::new(std::env::current_exe().expect("the test executable"))
        .args(["--exact", test, "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_MARK, "1")
        .envs(knobs.iter().copied())
        .output()
        .expect("run the test executable again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("1 passed"),
        "child {test} did not pass:\n--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs a child that is to exit successfully; returns its stderr.
pub fn run_passing_child(test: &str, knobs: &[(&str, &str)]) -> String {
    let output = run_child(test, knobs);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "child {test} exited with {}:\n{stderr}", output.status);
    stderr
}

/// Whether this process is a child started by `run_child`. Child tests do
/// nothing otherwise (e.g. under `cargo test -- --ignored`): they need the
/// knobs their parent sets.
pub fn is_child() -> bool {
    std::env::var_os(CHILD_MARK).is_some()
}
