//! The caching core on the Level Zero backend, through the real loader to the
//! software driver selected by ZE_ENABLE_ALT_DRIVERS (set by scripts/test before
//! the process starts). Knobs that must differ per test run in a child process.

use std::ffi::c_void;
use std::process::Command;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use level_zero_sys as ze;
use xpu_caching_host_allocator::caching::{CachingAllocator, Error, HostMemory, Settings, StreamEvents, StreamKey};
use xpu_caching_host_allocator::level_zero::{Context, Event, LevelZeroBackend, StreamHooks};

const S0: StreamKey = StreamKey { device_type: 12, device_index: 0, id: 0 };
const S1: StreamKey = StreamKey { device_type: 12, device_index: 0, id: 1 };

fn require_driver() {
    assert!(
        std::env::var_os("ZE_ENABLE_ALT_DRIVERS").is_some(),
        "run with ZE_ENABLE_ALT_DRIVERS=/abs/path/target/debug/libze_software_driver.so (scripts/test does)"
    );
}

fn allocator(hooks: Option<Box<dyn StreamHooks>>) -> CachingAllocator<LevelZeroBackend> {
    require_driver();
    let context = Context::create_on_first_driver().expect("the software driver loads");
    CachingAllocator::new(LevelZeroBackend::new(context, hooks), Settings::default())
}

/// A host-visible event the test signals itself, to hold a stream back.
struct Gate {
    pool: ze::ze_event_pool_handle_t,
    event: ze::ze_event_handle_t,
}

impl Gate {
    fn new(context: &Context) -> Gate {
        let desc = ze::ze_event_pool_desc_t {
            stype: ze::ZE_STRUCTURE_TYPE_EVENT_POOL_DESC,
            pNext: std::ptr::null(),
            flags: ze::ZE_EVENT_POOL_FLAG_HOST_VISIBLE,
            count: 1,
        };
        let mut pool = null_mut();
        let mut event = null_mut();
        let event_desc = ze::ze_event_desc_t {
            stype: ze::ZE_STRUCTURE_TYPE_EVENT_DESC,
            pNext: std::ptr::null(),
            index: 0,
            signal: ze::ZE_EVENT_SCOPE_FLAG_HOST,
            wait: ze::ZE_EVENT_SCOPE_FLAG_HOST,
        };
        // SAFETY: live context; out-pointers valid.
        unsafe {
            assert_eq!(ze::zeEventPoolCreate(context.handle(), &desc, 0, null_mut(), &mut pool), ze::ZE_RESULT_SUCCESS);
            assert_eq!(ze::zeEventCreate(pool, &event_desc, &mut event), ze::ZE_RESULT_SUCCESS);
        }
        Gate { pool, event }
    }

    /// Makes everything submitted to `stream` after this wait for `open`.
    fn hold(&self, backend: &LevelZeroBackend, stream: StreamKey) {
        let mut event = self.event;
        let appended = backend
            .with_stream_command_list(stream, |list| {
                // SAFETY: the list is locked for us; the event is live.
                unsafe { ze::zeCommandListAppendWaitOnEvents(list, 1, &mut event) }
            })
            .expect("own streams")
            .expect("the stream's list exists");
        assert_eq!(appended, ze::ZE_RESULT_SUCCESS);
    }

    fn open(&self) {
        // SAFETY: live event.
        assert_eq!(unsafe { ze::zeEventHostSignal(self.event) }, ze::ZE_RESULT_SUCCESS);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // SAFETY: nothing waits on the event any more when the test ends.
        unsafe {
            ze::zeEventDestroy(self.event);
            ze::zeEventPoolDestroy(self.pool);
        }
    }
}

/// Allocates `size` until `address` comes back, or gives up after 5 s. Blocks
/// that complete in one poll join the free list in any order, so each round
/// holds more blocks at once than are cached: a returned block is among them.
fn wait_for_reuse(a: &CachingAllocator<LevelZeroBackend>, size: usize, address: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let round = (a.stats().cached_bytes.current as usize / size) + 1;
        let held: Vec<_> = (0..round).map(|_| a.allocate(size).unwrap().unwrap()).collect();
        let found = held.iter().any(|block| block.address == address);
        held.iter().for_each(|block| a.free(block.context).unwrap());
        if found {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

fn memory_type(context: &Context, address: usize) -> ze::ze_memory_type_t {
    let mut properties = ze::ze_memory_allocation_properties_t {
        stype: ze::ZE_STRUCTURE_TYPE_MEMORY_ALLOCATION_PROPERTIES,
        ..Default::default()
    };
    let mut device = null_mut();
    // SAFETY: live context; the pointer is only looked up, not dereferenced.
    let result = unsafe {
        ze::zeMemGetAllocProperties(context.handle(), address as *const c_void, &mut properties, &mut device)
    };
    assert_eq!(result, ze::ZE_RESULT_SUCCESS);
    properties.type_
}

#[test]
fn host_memory_is_pinned_in_the_backends_context_and_aligned() {
    let a = allocator(None);
    let block = a.allocate(1000).unwrap().unwrap();
    assert_eq!(block.address % 512, 0);
    let context = a.backend().context();
    assert_eq!(memory_type(context, block.address), ze::ZE_MEMORY_TYPE_HOST);
    assert_eq!(memory_type(context, block.address + 999), ze::ZE_MEMORY_TYPE_HOST);
    let other = Context::create_on_first_driver().unwrap();
    assert_eq!(memory_type(&other, block.address), ze::ZE_MEMORY_TYPE_UNKNOWN, "memory of another context");
    a.free(block.context).unwrap();
    a.empty_cache().unwrap();
}

/// The driver allocation `address` lies in: its base and size, `None` if none.
fn address_range(context: &Context, address: usize) -> Option<(usize, usize)> {
    let (mut base, mut size) = (null_mut(), 0);
    // SAFETY: live context; the pointer is only looked up; out-pointers valid.
    let result = unsafe { ze::zeMemGetAddressRange(context.handle(), address as *const c_void, &mut base, &mut size) };
    (result == ze::ZE_RESULT_SUCCESS).then_some((base as usize, size))
}

#[test]
fn small_blocks_are_chunks_of_one_driver_allocation_until_the_last_goes_back() {
    const SLAB: usize = 64 << 10;
    let a = allocator(None);
    let (backend, context) = (a.backend(), a.backend().context());
    let sizes = [512, 1000, 4096, 32 << 10];
    let chunks: Vec<usize> = sizes.iter().map(|&size| backend.allocate(size).unwrap()).collect();
    let (base, size) = address_range(context, chunks[0]).expect("driver memory");
    assert_eq!(size, SLAB);
    for (&chunk, &size) in chunks.iter().zip(&sizes) {
        assert_eq!(chunk % 512, 0);
        assert_eq!(address_range(context, chunk), Some((base, SLAB)), "a chunk of the first slab");
        assert_eq!(memory_type(context, chunk + size - 1), ze::ZE_MEMORY_TYPE_HOST);
    }
    assert_eq!(backend.unused_bytes(), SLAB - (512 + 1024 + 4096 + (32 << 10)), "1000 bytes take 1024");
    let large = backend.allocate((32 << 10) + 512).unwrap();
    assert_eq!(address_range(context, large), Some((large, (32 << 10) + 512)), "larger blocks are their own");
    backend.free(large, (32 << 10) + 512).unwrap();

    let refused = backend.free(chunks[2] + 512, 512).expect_err("inside a chunk");
    assert!(format!("{refused}").contains("not a chunk handed out"), "{refused}");
    assert!(backend.free(chunks[2], 512).is_err(), "shorter than the chunk");
    for (&chunk, &size) in chunks.iter().zip(&sizes).skip(1) {
        backend.free(chunk, size).unwrap();
        assert_eq!(address_range(context, base), Some((base, SLAB)), "kept while a chunk is out");
    }
    backend.free(chunks[0], 512).unwrap();
    assert_eq!(address_range(context, base), None, "the last chunk took the slab back to the driver");
    assert_eq!(backend.unused_bytes(), 0);
}

#[test]
fn statistics_count_the_slabs_unused_room() {
    let a = allocator(None);
    let block = a.allocate(1000).unwrap().unwrap();
    let s = a.stats();
    assert_eq!((s.allocated_bytes.current, s.backend_unused_bytes), (1024, (64 << 10) - 1024));
    a.free(block.context).unwrap();
    a.empty_cache().unwrap();
    assert_eq!(a.stats().backend_unused_bytes, 0, "the slab went back with its only block");
}

#[test]
fn a_block_is_reused_only_after_its_held_back_stream_drains() {
    let a = allocator(None);
    let gate = Gate::new(a.backend().context());
    gate.hold(a.backend(), S0);
    let block = a.allocate(4096).unwrap().unwrap();
    assert!(a.record_stream(block.address, block.context, S0).unwrap());
    a.free(block.context).unwrap();
    for _ in 0..20 {
        let other = a.allocate(4096).unwrap().unwrap();
        assert_ne!(other.address, block.address, "reused while the stream may still use it");
        a.free(other.context).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    gate.open();
    assert!(wait_for_reuse(&a, 4096, block.address), "the block never came back after the stream drained");
    a.empty_cache().unwrap();
}

#[test]
fn a_held_back_stream_does_not_hold_back_another() {
    let a = allocator(None);
    let gate = Gate::new(a.backend().context());
    gate.hold(a.backend(), S0);
    let slow = a.allocate(8192).unwrap().unwrap();
    a.record_stream(slow.address, slow.context, S0).unwrap();
    a.free(slow.context).unwrap();
    let fast = a.allocate(8192).unwrap().unwrap();
    a.record_stream(fast.address, fast.context, S1).unwrap();
    a.free(fast.context).unwrap();
    assert!(wait_for_reuse(&a, 8192, fast.address), "the fast stream's block waited behind the slow stream");
    assert_eq!(a.stats().pending_blocks.current, 1);
    gate.open();
    assert!(wait_for_reuse(&a, 8192, slow.address));
    a.empty_cache().unwrap();
}

fn own_handle(event: &Event) -> usize {
    match event {
        Event::Own(event) => event.handle() as usize,
        Event::Hooked { .. } => unreachable!("no hooks in these tests"),
    }
}

/// Appends a barrier without an event: work the next record must wait for.
fn append_work(backend: &LevelZeroBackend, stream: StreamKey) {
    let appended = backend
        .with_stream_command_list(stream, |list| {
            // SAFETY: the list is locked for us.
            unsafe { ze::zeCommandListAppendBarrier(list, null_mut(), 0, null_mut()) }
        })
        .unwrap()
        .unwrap();
    assert_eq!(appended, ze::ZE_RESULT_SUCCESS);
}

#[test]
fn events_are_recycled_not_created_per_record() {
    let a = allocator(None);
    let backend = a.backend();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        append_work(backend, S1);
        let event = backend.record(S1).unwrap().expect("own streams always record");
        while !backend.is_complete(&event).unwrap() {
            std::thread::yield_now();
        }
        seen.insert(own_handle(&event));
        backend.release(event);
    }
    assert!(seen.len() <= 2, "1000 records used {} distinct events", seen.len());
}

#[test]
fn records_with_nothing_appended_between_share_one_event() {
    let a = allocator(None);
    let backend = a.backend();
    let first = backend.record(S1).unwrap().unwrap();
    let second = backend.record(S1).unwrap().unwrap();
    assert_eq!(own_handle(&first), own_handle(&second), "a second barrier would complete with the first");
    append_work(backend, S1);
    let third = backend.record(S1).unwrap().unwrap();
    assert_ne!(own_handle(&first), own_handle(&third), "work appended since needs a barrier of its own");
    for event in [first, second, third] {
        while !backend.is_complete(&event).unwrap() {
            std::thread::yield_now();
        }
        backend.release(event);
    }
}

#[test]
fn a_stream_on_a_missing_device_is_refused() {
    let a = allocator(None);
    let block = a.allocate(512).unwrap().unwrap();
    let missing = StreamKey { device_type: 12, device_index: 7, id: 0 };
    let error = a.record_stream(block.address, block.context, missing).unwrap_err();
    assert!(error.to_string().contains("no device with index 7"), "{error}");
    a.free(block.context).unwrap();
    a.empty_cache().unwrap();
}

/// Hooks as a SYCL runtime would provide them: here they record with a barrier
/// on a command list of their own and count what they are asked.
struct TestHooks {
    list: Mutex<ze::ze_command_list_handle_t>,
    pool: ze::ze_event_pool_handle_t,
    next_index: AtomicUsize,
    recorded: Arc<AtomicUsize>,
    released: Arc<AtomicUsize>,
}

// SAFETY: the list is used under its mutex; the rest are thread-safe handles.
unsafe impl Send for TestHooks {}
// SAFETY: as above.
unsafe impl Sync for TestHooks {}

impl StreamHooks for TestHooks {
    fn record(&self, _stream: StreamKey) -> Result<Option<(ze::ze_event_handle_t, usize)>, String> {
        let index = self.next_index.fetch_add(1, Ordering::SeqCst) as u32;
        let desc = ze::ze_event_desc_t {
            stype: ze::ZE_STRUCTURE_TYPE_EVENT_DESC,
            pNext: std::ptr::null(),
            index,
            signal: ze::ZE_EVENT_SCOPE_FLAG_HOST,
            wait: ze::ZE_EVENT_SCOPE_FLAG_HOST,
        };
        let mut event = null_mut();
        let list = self.list.lock().unwrap();
        // SAFETY: live pool and list (locked); the index is unique in the pool.
        unsafe {
            if ze::zeEventCreate(self.pool, &desc, &mut event) != ze::ZE_RESULT_SUCCESS {
                return Err("zeEventCreate failed".into());
            }
            if ze::zeCommandListAppendBarrier(*list, event, 0, null_mut()) != ze::ZE_RESULT_SUCCESS {
                return Err("zeCommandListAppendBarrier failed".into());
            }
        }
        self.recorded.fetch_add(1, Ordering::SeqCst);
        Ok(Some((event, index as usize)))
    }

    fn release(&self, event: ze::ze_event_handle_t, _token: usize) {
        // SAFETY: the allocator no longer polls it.
        unsafe { ze::zeEventDestroy(event) };
        self.released.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn hooks_record_and_release_every_event() {
    require_driver();
    let context = Context::create_on_first_driver().unwrap();
    let (recorded, released) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut device_count = 1u32;
    let mut device = null_mut();
    let mut list = null_mut();
    let mut pool = null_mut();
    let queue = ze::ze_command_queue_desc_t {
        stype: ze::ZE_STRUCTURE_TYPE_COMMAND_QUEUE_DESC,
        mode: ze::ZE_COMMAND_QUEUE_MODE_ASYNCHRONOUS,
        ..Default::default()
    };
    let pool_desc = ze::ze_event_pool_desc_t {
        stype: ze::ZE_STRUCTURE_TYPE_EVENT_POOL_DESC,
        pNext: std::ptr::null(),
        flags: ze::ZE_EVENT_POOL_FLAG_HOST_VISIBLE,
        count: 64,
    };
    // SAFETY: live driver and context; out-pointers valid.
    unsafe {
        assert_eq!(ze::zeDeviceGet(context.driver(), &mut device_count, &mut device), ze::ZE_RESULT_SUCCESS);
        assert_eq!(
            ze::zeCommandListCreateImmediate(context.handle(), device, &queue, &mut list),
            ze::ZE_RESULT_SUCCESS
        );
        assert_eq!(
            ze::zeEventPoolCreate(context.handle(), &pool_desc, 0, null_mut(), &mut pool),
            ze::ZE_RESULT_SUCCESS
        );
    }
    let hooks = TestHooks {
        list: Mutex::new(list),
        pool,
        next_index: AtomicUsize::new(0),
        recorded: recorded.clone(),
        released: released.clone(),
    };
    let a = CachingAllocator::new(LevelZeroBackend::new(context, Some(Box::new(hooks))), Settings::default());
    assert!(a.backend().with_stream_command_list(S0, |_| ()).is_none(), "the runtime owns hooked streams");
    for _ in 0..10 {
        let block = a.allocate(2048).unwrap().unwrap();
        a.record_stream(block.address, block.context, S0).unwrap();
        a.free(block.context).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while released.load(Ordering::SeqCst) < 10 && Instant::now() < deadline {
        a.empty_cache().unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!((recorded.load(Ordering::SeqCst), released.load(Ordering::SeqCst)), (10, 10));
    // SAFETY: every event of the pool was destroyed by release; nothing appends any more.
    unsafe {
        ze::zeCommandListDestroy(list);
        ze::zeEventPoolDestroy(pool);
    }
}

/// Hooks of a runtime whose streams have nothing pending: no event at all.
struct IdleHooks;

impl StreamHooks for IdleHooks {
    fn record(&self, _stream: StreamKey) -> Result<Option<(ze::ze_event_handle_t, usize)>, String> {
        Ok(None)
    }

    fn release(&self, _event: ze::ze_event_handle_t, _token: usize) {
        panic!("no event was recorded, so none is released");
    }
}

#[test]
fn a_stream_with_nothing_pending_needs_no_event() {
    require_driver();
    let context = Context::create_on_first_driver().unwrap();
    let a = CachingAllocator::new(LevelZeroBackend::new(context, Some(Box::new(IdleHooks))), Settings::default());
    let block = a.allocate(4096).unwrap().unwrap();
    a.record_stream(block.address, block.context, S0).unwrap();
    a.free(block.context).unwrap();
    assert_eq!(a.stats().pending_blocks.current, 0, "cached at its free");
    let again = a.allocate(4096).unwrap().unwrap();
    assert_eq!(again.address, block.address, "reused at once");
    a.free(again.context).unwrap();
    a.empty_cache().unwrap();
}

#[test]
fn threads_share_streams_without_reusing_busy_memory() {
    let a = Arc::new(allocator(None));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || {
                let stream = StreamKey { device_type: 12, device_index: 0, id: t % 2 };
                for i in 0..300 {
                    let size = 512 << (i % 5);
                    let block = a.allocate(size).unwrap().unwrap();
                    let pattern = (t * 31 + i) as u8;
                    // SAFETY: the block is ours and at least `size` bytes of host memory.
                    let bytes = unsafe { std::slice::from_raw_parts_mut(block.address as *mut u8, size) };
                    bytes.fill(pattern);
                    a.record_stream(block.address, block.context, stream).unwrap();
                    assert!(bytes.iter().all(|&b| b == pattern), "another thread wrote into a block in use");
                    a.free(block.context).unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.stats().pending_blocks.current > 0 && Instant::now() < deadline {
        a.empty_cache().unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    a.empty_cache().unwrap();
    let stats = a.stats();
    assert_eq!((stats.active_requests.current, stats.pending_blocks.current, stats.allocations.current), (0, 0, 0));
}

/// Runs the `#[ignore]`d test `name` in a child process with `env` set.
fn run_child(name: &str, env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"]);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "child {name} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn out_of_memory_empties_the_cache_retries_and_reports() {
    require_driver();
    run_child("child_out_of_memory", &[("ZE_SOFTWARE_DRIVER_HOST_MEMORY_LIMIT", "1048576")]);
}

#[test]
#[ignore = "runs in a child process with a host memory limit of 1 MiB"]
fn child_out_of_memory() {
    let a = allocator(None);
    let small = a.allocate(256 << 10).unwrap().unwrap();
    a.free(small.context).unwrap();
    // 1 MiB fits only once the cached 256 KiB block is given back.
    let big = a.allocate(1 << 20).unwrap().unwrap();
    assert_eq!(a.stats().num_host_free, 1);
    match a.allocate(2 << 20) {
        Err(Error::OutOfMemory { requested, .. }) => assert_eq!(requested, 2 << 20),
        other => panic!("expected out of memory, got {other:?}"),
    }
    a.free(big.context).unwrap();
    assert_eq!(a.allocate(1 << 20).unwrap().unwrap().address, big.address, "still works after the failure");
}

#[test]
fn no_driver_is_a_clear_error() {
    require_driver();
    let output = run_child("child_no_driver", &[("ZE_ENABLE_ALT_DRIVERS", "/nonexistent/libze_nothing.so")]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("no Level Zero driver could be used"), "{stdout}");
    assert!(stdout.contains("ZE_ENABLE_ALT_DRIVERS"), "{stdout}");
}

#[test]
#[ignore = "runs in a child process with no usable driver"]
fn child_no_driver() {
    let error = Context::create_on_first_driver().err().expect("no driver to find");
    assert!(error.no_driver);
    println!("{error}");
}

#[test]
fn host_memory_errors_are_backend_errors() {
    let a = allocator(None);
    // The driver refuses a size this large; the core reports it, having lost nothing.
    assert!(a.backend().allocate(usize::MAX / 2).is_err());
    assert_eq!(a.stats().allocations.current, 0);
}
