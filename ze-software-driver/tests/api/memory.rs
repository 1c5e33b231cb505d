//! Memory allocation, properties, address ranges and frees.

use std::ffi::c_void;
use std::ptr::{null, null_mut};
use std::time::{Duration, Instant};

use crate::common::*;

fn properties(
    context: ze_context_handle_t,
    pointer: *const c_void,
) -> (ze_memory_allocation_properties_t, ze_device_handle_t) {
    let mut properties = ze_memory_allocation_properties_t {
        stype: ZE_STRUCTURE_TYPE_MEMORY_ALLOCATION_PROPERTIES,
        ..Default::default()
    };
    let mut device = null_mut();
    ze!(zeMemGetAllocProperties(context, pointer, &mut properties, &mut device));
    (properties, device)
}

#[test]
fn host_device_and_shared_allocations() {
    let setup = setup();
    let context = setup.context();
    let host = alloc_host(context, 1000);
    write(host, 7, 1000);
    assert_eq!(read(host, 1000), vec![7; 1000]);
    let (host_properties, _) = properties(context, host.cast());
    assert_eq!(host_properties.type_, ZE_MEMORY_TYPE_HOST);

    let mut device_memory = null_mut();
    ze!(zeMemAllocDevice(context, &device_desc(), 256, 0, setup.device, &mut device_memory));
    let (device_properties, device) = properties(context, device_memory);
    assert_eq!(device_properties.type_, ZE_MEMORY_TYPE_DEVICE);
    assert_eq!(device, setup.device);

    let mut shared = null_mut();
    ze!(zeMemAllocShared(context, &device_desc(), &host_desc(0), 256, 0, setup.device, &mut shared));
    let (shared_properties, device) = properties(context, shared);
    assert_eq!(shared_properties.type_, ZE_MEMORY_TYPE_SHARED);
    assert_eq!(device, setup.device);
    assert_ne!(shared_properties.id, device_properties.id);

    ze!(zeMemFree(context, shared));
    ze!(zeMemFree(context, device_memory));
    free(context, host);
    ze!(zeContextDestroy(context));
}

#[test]
fn interior_pointers_resolve_to_their_allocation() {
    let setup = setup();
    let context = setup.context();
    let memory = alloc_host(context, 4096);
    let interior = memory.wrapping_add(1000);
    let (whole, _) = properties(context, memory.cast());
    let (inside, _) = properties(context, interior.cast());
    assert_eq!(inside.type_, ZE_MEMORY_TYPE_HOST);
    assert_eq!(inside.id, whole.id);
    let (past_the_end, _) = properties(context, memory.wrapping_add(4096).cast());
    assert_ne!(past_the_end.id, whole.id);

    let mut base = null_mut();
    let mut size = 0;
    ze!(zeMemGetAddressRange(context, interior.cast(), &mut base, &mut size));
    assert_eq!((base.cast::<u8>(), size), (memory, 4096));
    ze!(zeMemGetAddressRange(context, interior.cast(), null_mut(), &mut size));
    free(context, memory);
    ze!(zeContextDestroy(context));
}

#[test]
fn memory_of_another_context_or_unknown_memory_is_unknown() {
    let setup = setup();
    let (mine, other) = (setup.context(), setup.context());
    let memory = alloc_host(mine, 64);
    let (properties_elsewhere, _) = properties(other, memory.cast());
    assert_eq!(properties_elsewhere.type_, ZE_MEMORY_TYPE_UNKNOWN);
    let on_the_stack = 5u64;
    let (stack_properties, _) = properties(mine, (&raw const on_the_stack).cast());
    assert_eq!(stack_properties.type_, ZE_MEMORY_TYPE_UNKNOWN);
    let mut size = 0;
    assert_ne!(call!(zeMemGetAddressRange(other, memory.cast(), null_mut(), &mut size)), ZE_RESULT_SUCCESS);
    assert_eq!(call!(zeMemFree(other, memory.cast())), ZE_RESULT_ERROR_INVALID_ARGUMENT, "freed in the wrong context");
    free(mine, memory);
    ze!(zeContextDestroy(other));
    ze!(zeContextDestroy(mine));
}

#[test]
fn alignment_size_and_flag_errors() {
    let setup = setup();
    let context = setup.context();
    let mut memory = null_mut();
    let desc = host_desc(0);
    assert_eq!(call!(zeMemAllocHost(context, &desc, 64, 3, &mut memory)), ZE_RESULT_ERROR_UNSUPPORTED_ALIGNMENT);
    assert_eq!(call!(zeMemAllocHost(context, &desc, 0, 0, &mut memory)), ZE_RESULT_ERROR_UNSUPPORTED_SIZE);
    assert_eq!(
        call!(zeMemAllocHost(context, &host_desc(0x10), 64, 0, &mut memory)),
        ZE_RESULT_ERROR_INVALID_ENUMERATION
    );
    assert_eq!(call!(zeMemAllocHost(context, null(), 64, 0, &mut memory)), ZE_RESULT_ERROR_INVALID_NULL_POINTER);
    assert_eq!(call!(zeMemAllocHost(context, &desc, 64, 0, null_mut())), ZE_RESULT_ERROR_INVALID_NULL_POINTER);
    let bad_device_flags = ze_device_mem_alloc_desc_t { flags: 8, ..device_desc() };
    assert_eq!(
        call!(zeMemAllocDevice(context, &bad_device_flags, 64, 0, setup.device, &mut memory)),
        ZE_RESULT_ERROR_INVALID_ENUMERATION
    );
    assert_eq!(
        call!(zeMemAllocShared(context, &device_desc(), &desc, 64, 6, null_mut(), &mut memory)),
        ZE_RESULT_ERROR_UNSUPPORTED_ALIGNMENT
    );
    if nulls_are_checked() {
        assert_eq!(call!(zeMemAllocHost(null_mut(), &desc, 64, 0, &mut memory)), ZE_RESULT_ERROR_INVALID_NULL_HANDLE);
        assert_eq!(
            call!(zeMemAllocDevice(context, &device_desc(), 64, 0, null_mut(), &mut memory)),
            ZE_RESULT_ERROR_INVALID_NULL_HANDLE
        );
    }
    for alignment in [0, 1, 64, 4096, 1 << 16] {
        ze!(zeMemAllocHost(context, &desc, 100, alignment, &mut memory));
        assert_eq!(memory as usize % alignment.max(1), 0, "alignment {alignment}");
        ze!(zeMemFree(context, memory));
    }
    ze!(zeContextDestroy(context));
}

#[test]
fn double_free_and_unknown_pointers_are_errors() {
    let setup = setup();
    let context = setup.context();
    let memory = alloc_host(context, 64);
    assert_eq!(call!(zeMemFree(context, memory.wrapping_add(8).cast())), ZE_RESULT_ERROR_INVALID_ARGUMENT);
    free(context, memory);
    assert_eq!(call!(zeMemFree(context, memory.cast())), ZE_RESULT_ERROR_INVALID_ARGUMENT);
    assert_eq!(call!(zeMemFree(context, null_mut())), ZE_RESULT_ERROR_INVALID_NULL_POINTER);
    ze!(zeContextDestroy(context));
}

#[test]
fn allocation_is_thread_safe() {
    let setup = setup();
    let context = setup.context();
    let address = context as usize;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let context = address as ze_context_handle_t;
                for size in 1..200 {
                    let memory = alloc_host(context, size * 8);
                    write(memory, size as u8, size * 8);
                    assert_eq!(read(memory, size * 8), vec![size as u8; size * 8]);
                    free(context, memory);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    ze!(zeContextDestroy(context));
}

fn free_ext(
    context: ze_context_handle_t,
    memory: *mut u8,
    policy: ze_driver_memory_free_policy_ext_flags_t,
) -> ze_result_t {
    let desc =
        ze_memory_free_ext_desc_t { stype: ZE_STRUCTURE_TYPE_MEMORY_FREE_EXT_DESC, pNext: null(), freePolicy: policy };
    call!(zeMemFreeExt(context, &desc, memory.cast()))
}

/// A copy out of `source` that waits for a host-signalled gate, so the
/// memory is in use until the test opens the gate.
struct PendingCopy {
    list: ze_command_list_handle_t,
    events: Events,
    target: Vec<u8>,
}

impl PendingCopy {
    fn start(setup: &Setup, context: ze_context_handle_t, source: *mut u8, size: usize) -> PendingCopy {
        let list = setup.immediate_list(context, ZE_COMMAND_QUEUE_MODE_ASYNCHRONOUS);
        let events = Events::new(context, 2);
        let mut target = vec![0u8; size];
        let mut gate = events.events[0];
        ze!(zeCommandListAppendMemoryCopy(
            list,
            target.as_mut_ptr().cast(),
            source.cast(),
            size,
            events.events[1],
            1,
            &mut gate
        ));
        PendingCopy { list, events, target }
    }

    fn open(&self) {
        ze!(zeEventHostSignal(self.events.events[0]));
    }

    fn finish(self) -> Vec<u8> {
        ze!(zeEventHostSynchronize(self.events.events[1], u64::MAX));
        ze!(zeCommandListDestroy(self.list));
        self.events.destroy();
        self.target
    }
}

#[test]
fn blocking_free_waits_for_the_work_before_it() {
    let setup = setup();
    let context = setup.context();
    let source = alloc_host(context, 256);
    write(source, 0x5A, 256);
    let copy = PendingCopy::start(&setup, context, source, 256);
    let gate = copy.events.events[0] as usize;
    let opener = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        ze!(zeEventHostSignal(gate as ze_event_handle_t));
    });
    let start = Instant::now();
    assert_eq!(free_ext(context, source, ZE_DRIVER_MEMORY_FREE_POLICY_EXT_FLAG_BLOCKING_FREE), ZE_RESULT_SUCCESS);
    assert!(start.elapsed() >= Duration::from_millis(90), "the free waited for the gated copy");
    assert_eq!(call!(zeEventQueryStatus(copy.events.events[1])), ZE_RESULT_SUCCESS);
    opener.join().unwrap();
    assert_eq!(copy.finish(), vec![0x5A; 256]);
    ze!(zeContextDestroy(context));
}

#[test]
fn deferred_free_returns_at_once_and_frees_after_the_work() {
    let setup = setup();
    let context = setup.context();
    let source = alloc_host(context, 256);
    write(source, 0xC3, 256);
    let copy = PendingCopy::start(&setup, context, source, 256);
    assert_eq!(free_ext(context, source, ZE_DRIVER_MEMORY_FREE_POLICY_EXT_FLAG_DEFER_FREE), ZE_RESULT_SUCCESS);
    assert_eq!(call!(zeEventQueryStatus(copy.events.events[1])), ZE_RESULT_NOT_READY);
    let (properties_after_free, _) = properties(context, source.cast());
    assert_eq!(properties_after_free.type_, ZE_MEMORY_TYPE_UNKNOWN, "gone for the API at once");
    copy.open();
    assert_eq!(copy.finish(), vec![0xC3; 256], "the bytes lived until the copy had run");
    ze!(zeContextDestroy(context));
}

#[test]
fn free_ext_policies_and_errors() {
    let setup = setup();
    let context = setup.context();
    let memory = alloc_host(context, 64);
    assert_eq!(free_ext(context, memory, 4), ZE_RESULT_ERROR_INVALID_ENUMERATION);
    assert_eq!(free_ext(context, null_mut(), 0), ZE_RESULT_ERROR_INVALID_NULL_POINTER);
    assert_eq!(free_ext(context, memory, 0), ZE_RESULT_SUCCESS, "the default policy frees at once");
    assert_eq!(free_ext(context, memory, 0), ZE_RESULT_ERROR_INVALID_ARGUMENT);
    assert_eq!(call!(zeMemFreeExt(context, null(), memory.cast())), ZE_RESULT_ERROR_INVALID_NULL_POINTER);
    ze!(zeContextDestroy(context));
}

#[test]
fn every_allocation_starts_on_the_page_it_reports() {
    let setup = setup();
    let context = setup.context();
    let mut memory = null_mut();
    for size in [1, 100, 4095, 4097, 65536] {
        ze!(zeMemAllocHost(context, &host_desc(0), size, 0, &mut memory));
        let (properties, _) = properties(context, memory);
        assert_eq!(properties.pageSize, 4096);
        assert_eq!(memory as usize % 4096, 0, "{size} bytes start on a page");
        ze!(zeMemFree(context, memory));
    }
    ze!(zeContextDestroy(context));
}

#[test]
fn relaxed_allocation_limits_are_taken_and_checked() {
    let setup = setup();
    let context = setup.context();
    let relaxed = ze_relaxed_allocation_limits_exp_desc_t {
        stype: ZE_STRUCTURE_TYPE_RELAXED_ALLOCATION_LIMITS_EXP_DESC,
        pNext: null(),
        flags: ZE_RELAXED_ALLOCATION_LIMITS_EXP_FLAG_MAX_SIZE,
    };
    let host = ze_host_mem_alloc_desc_t { pNext: (&raw const relaxed).cast(), ..host_desc(0) };
    let device = ze_device_mem_alloc_desc_t { pNext: (&raw const relaxed).cast(), ..device_desc() };
    let mut memory = null_mut();
    ze!(zeMemAllocHost(context, &host, 4096, 0, &mut memory));
    ze!(zeMemFree(context, memory));
    ze!(zeMemAllocDevice(context, &device, 4096, 0, setup.device, &mut memory));
    ze!(zeMemFree(context, memory));

    let bad = ze_relaxed_allocation_limits_exp_desc_t {
        flags: ZE_RELAXED_ALLOCATION_LIMITS_EXP_FLAG_MAX_SIZE << 1,
        ..relaxed
    };
    let host = ze_host_mem_alloc_desc_t { pNext: (&raw const bad).cast(), ..host_desc(0) };
    assert_eq!(call!(zeMemAllocHost(context, &host, 4096, 0, &mut memory)), ZE_RESULT_ERROR_INVALID_ENUMERATION);
    let unknown = ze_base_desc_t { stype: ZE_STRUCTURE_TYPE_EVENT_DESC, pNext: null() };
    let host = ze_host_mem_alloc_desc_t { pNext: (&raw const unknown).cast(), ..host_desc(0) };
    assert_eq!(call!(zeMemAllocHost(context, &host, 4096, 0, &mut memory)), ZE_RESULT_ERROR_UNSUPPORTED_ENUMERATION);
    ze!(zeContextDestroy(context));
}

#[test]
fn residency_is_checked_against_live_allocations() {
    let setup = setup();
    let context = setup.context();
    let other = setup.context();
    let memory = alloc_host(context, 8192);
    ze!(zeContextMakeMemoryResident(context, setup.device, memory.cast(), 8192));
    // SAFETY: 4096 bytes into an allocation of 8192.
    let interior = unsafe { memory.add(4096) };
    ze!(zeContextMakeMemoryResident(context, setup.device, interior.cast(), 4096));
    ze!(zeContextEvictMemory(context, setup.device, interior.cast(), 4096));
    assert_eq!(
        call!(zeContextMakeMemoryResident(context, setup.device, interior.cast(), 4097)),
        ZE_RESULT_ERROR_INVALID_SIZE,
        "a range past the end of its allocation"
    );
    assert_eq!(
        call!(zeContextMakeMemoryResident(other, setup.device, memory.cast(), 8192)),
        ZE_RESULT_ERROR_INVALID_ARGUMENT,
        "memory of another context"
    );
    assert_eq!(call!(zeContextEvictMemory(context, setup.device, null_mut(), 1)), ZE_RESULT_ERROR_INVALID_NULL_POINTER);
    free(context, memory);
    assert_eq!(
        call!(zeContextMakeMemoryResident(context, setup.device, memory.cast(), 8192)),
        ZE_RESULT_ERROR_INVALID_ARGUMENT,
        "freed memory"
    );
    ze!(zeContextDestroy(other));
    ze!(zeContextDestroy(context));
}
