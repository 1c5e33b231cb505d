//! Command lists: immediate lists, ordering, copies, fills and events.

use std::ptr::null_mut;
use std::time::Duration;

use crate::common::*;

#[test]
fn barrier_on_a_host_signalled_event_holds_back_later_work() {
    let setup = setup();
    let context = setup.context();
    let list = setup.immediate_list(context, ZE_COMMAND_QUEUE_MODE_ASYNCHRONOUS);
    let events = Events::new(context, 2);
    let (mut gate, done) = (events.events[0], events.events[1]);
    let memory = alloc_host(context, 1024);
    write(memory, 0, 1024);

    ze!(zeCommandListAppendBarrier(list, null_mut(), 1, &mut gate));
    let pattern = 0xABu8;
    ze!(zeCommandListAppendMemoryFill(list, memory.cast(), (&raw const pattern).cast(), 1, 1024, done, 0, null_mut()));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(call!(zeEventQueryStatus(done)), ZE_RESULT_NOT_READY);
    assert_eq!(read(memory, 1024), vec![0; 1024], "the fill has not run before the host signals");

    ze!(zeEventHostSignal(gate));
    ze!(zeEventHostSynchronize(done, u64::MAX));
    assert_eq!(read(memory, 1024), vec![0xAB; 1024]);

    ze!(zeCommandListDestroy(list));
    events.destroy();
    free(context, memory);
    ze!(zeContextDestroy(context));
}

#[test]
fn copies_and_fills_of_every_pattern_size() {
    let setup = setup();
    let context = setup.context();
    let list = setup.immediate_list(context, ZE_COMMAND_QUEUE_MODE_DEFAULT);
    let events = Events::new(context, 2);
    let (filled, copied) = (events.events[0], events.events[1]);
    let (source, target) = (alloc_host(context, 1000), alloc_host(context, 1000));
    let pattern: Vec<u8> = (1..=128).collect();
    let mut size = 1;
    while size <= 128 {
        write(target, 0, 1000);
        ze!(zeCommandListAppendMemoryFill(
            list,
            source.cast(),
            pattern.as_ptr().cast(),
            size,
            999,
            filled,
            0,
            null_mut()
        ));
        let mut wait = filled;
        ze!(zeCommandListAppendMemoryCopy(list, target.cast(), source.cast(), 999, copied, 1, &mut wait));
        ze!(zeEventHostSynchronize(copied, u64::MAX));
        let expected: Vec<u8> = pattern[..size].iter().copied().cycle().take(999).chain([0]).collect();
        assert_eq!(read(target, 1000), expected, "pattern size {size}");
        ze!(zeEventHostReset(filled));
        ze!(zeEventHostReset(copied));
        size *= 2;
    }
    assert_eq!(
        call!(zeCommandListAppendMemoryFill(
            list,
            source.cast(),
            pattern.as_ptr().cast(),
            3,
            9,
            null_mut(),
            0,
            null_mut()
        )),
        ZE_RESULT_ERROR_INVALID_SIZE,
        "pattern sizes are powers of two"
    );
    assert_eq!(
        call!(zeCommandListAppendMemoryCopy(list, null_mut(), source.cast(), 1, null_mut(), 0, null_mut())),
        ZE_RESULT_ERROR_INVALID_NULL_POINTER
    );
    if nulls_are_checked() {
        assert_eq!(call!(zeCommandListAppendBarrier(list, null_mut(), 1, null_mut())), ZE_RESULT_ERROR_INVALID_SIZE);
    }
    ze!(zeCommandListDestroy(list));
    events.destroy();
    free(context, source);
    free(context, target);
    ze!(zeContextDestroy(context));
}

#[test]
fn signal_wait_and_reset_commands() {
    let setup = setup();
    let context = setup.context();
    let list = setup.immediate_list(context, ZE_COMMAND_QUEUE_MODE_ASYNCHRONOUS);
    let events = Events::new(context, 3);
    let (mut gate, signalled, reset) = (events.events[0], events.events[1], events.events[2]);
    ze!(zeEventHostSignal(reset));

    ze!(zeCommandListAppendWaitOnEvents(list, 1, &mut gate));
    ze!(zeCommandListAppendEventReset(list, reset));
    ze!(zeCommandListAppendSignalEvent(list, signalled));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(call!(zeEventQueryStatus(signalled)), ZE_RESULT_NOT_READY);
    assert_eq!(call!(zeEventQueryStatus(reset)), ZE_RESULT_SUCCESS, "the reset waits behind the gate");

    ze!(zeEventHostSignal(gate));
    ze!(zeEventHostSynchronize(signalled, u64::MAX));
    assert_eq!(call!(zeEventQueryStatus(reset)), ZE_RESULT_NOT_READY);
    if nulls_are_checked() {
        assert_eq!(call!(zeCommandListAppendWaitOnEvents(list, 1, null_mut())), ZE_RESULT_ERROR_INVALID_NULL_POINTER);
    }

    ze!(zeCommandListDestroy(list));
    events.destroy();
    ze!(zeContextDestroy(context));
}

#[test]
fn synchronous_immediate_list_returns_after_the_command_ran() {
    let setup = setup();
    let context = setup.context();
    let list = setup.immediate_list(context, ZE_COMMAND_QUEUE_MODE_SYNCHRONOUS);
    let memory = alloc_host(context, 4096);
    write(memory, 0, 4096);
    for value in 1..=20u8 {
        ze!(zeCommandListAppendMemoryFill(
            list,
            memory.cast(),
            (&raw const value).cast(),
            1,
            4096,
            null_mut(),
            0,
            null_mut()
        ));
        assert_eq!(read(memory, 4096), vec![value; 4096]);
    }
    // Closing and resetting an immediate list do nothing.
    ze!(zeCommandListClose(list));
    ze!(zeCommandListReset(list));
    ze!(zeCommandListDestroy(list));
    free(context, memory);
    ze!(zeContextDestroy(context));
}

#[test]
fn bad_list_arguments() {
    let setup = setup();
    let context = setup.context();
    let mut list = null_mut();
    let bad_mode = queue_desc(3);
    assert_eq!(
        call!(zeCommandListCreateImmediate(context, setup.device, &bad_mode, &mut list)),
        ZE_RESULT_ERROR_INVALID_ENUMERATION
    );
    let bad_flags = ze_command_list_desc_t {
        stype: ZE_STRUCTURE_TYPE_COMMAND_LIST_DESC,
        pNext: std::ptr::null(),
        commandQueueGroupOrdinal: 0,
        // Above every flag spec 1.12 defines.
        flags: ZE_COMMAND_LIST_FLAG_EXP_CLONEABLE << 1,
    };
    assert_eq!(
        call!(zeCommandListCreate(context, setup.device, &bad_flags, &mut list)),
        ZE_RESULT_ERROR_INVALID_ENUMERATION
    );
    if nulls_are_checked() {
        assert_eq!(call!(zeCommandListClose(null_mut())), ZE_RESULT_ERROR_INVALID_NULL_HANDLE);
        assert_eq!(
            call!(zeCommandListCreate(context, null_mut(), &bad_flags, &mut list)),
            ZE_RESULT_ERROR_INVALID_NULL_HANDLE
        );
    }
    ze!(zeContextDestroy(context));
}

/// compute-runtime's `zex_intel_queue_copy_operations_offload_hint_exp_desc_t`,
/// which Intel's v2 adapter chains to every command list it creates.
#[repr(C)]
struct CopyOffloadHint {
    stype: ze_structure_type_t,
    p_next: *const std::ffi::c_void,
    copy_offload_enabled: ze_bool_t,
}

const COPY_OFFLOAD_HINT: ze_structure_type_t = 0x0003_001B;

#[test]
fn in_order_flags_and_the_copy_offload_hint_are_taken() {
    if !api_reaches(ZE_API_VERSION_1_7, "ZE_COMMAND_QUEUE_FLAG_IN_ORDER") {
        return;
    }
    let setup = setup();
    let context = setup.context();
    for enabled in [0, 1] {
        let hint =
            CopyOffloadHint { stype: COPY_OFFLOAD_HINT, p_next: std::ptr::null(), copy_offload_enabled: enabled };
        let desc = ze_command_queue_desc_t {
            pNext: (&raw const hint).cast(),
            flags: ZE_COMMAND_QUEUE_FLAG_IN_ORDER,
            ..queue_desc(ZE_COMMAND_QUEUE_MODE_ASYNCHRONOUS)
        };
        let mut list = null_mut();
        ze!(zeCommandListCreateImmediate(context, setup.device, &desc, &mut list));
        ze!(zeCommandListDestroy(list));
        let mut queue = null_mut();
        ze!(zeCommandQueueCreate(context, setup.device, &desc, &mut queue));
        ze!(zeCommandQueueDestroy(queue));
        let desc = ze_command_list_desc_t {
            stype: ZE_STRUCTURE_TYPE_COMMAND_LIST_DESC,
            pNext: (&raw const hint).cast(),
            commandQueueGroupOrdinal: 0,
            flags: ZE_COMMAND_LIST_FLAG_IN_ORDER,
        };
        ze!(zeCommandListCreate(context, setup.device, &desc, &mut list));
        ze!(zeCommandListDestroy(list));
    }

    let unknown = ze_base_desc_t { stype: ZE_STRUCTURE_TYPE_EVENT_DESC, pNext: std::ptr::null() };
    let desc = ze_command_queue_desc_t {
        pNext: (&raw const unknown).cast(),
        ..queue_desc(ZE_COMMAND_QUEUE_MODE_ASYNCHRONOUS)
    };
    let mut list = null_mut();
    assert_eq!(
        call!(zeCommandListCreateImmediate(context, setup.device, &desc, &mut list)),
        ZE_RESULT_ERROR_UNSUPPORTED_ENUMERATION
    );
    let mut queue = null_mut();
    assert_eq!(
        call!(zeCommandQueueCreate(context, setup.device, &desc, &mut queue)),
        ZE_RESULT_ERROR_UNSUPPORTED_ENUMERATION
    );
    let desc = ze_command_list_desc_t {
        stype: ZE_STRUCTURE_TYPE_COMMAND_LIST_DESC,
        pNext: (&raw const unknown).cast(),
        commandQueueGroupOrdinal: 0,
        flags: 0,
    };
    assert_eq!(
        call!(zeCommandListCreate(context, setup.device, &desc, &mut list)),
        ZE_RESULT_ERROR_UNSUPPORTED_ENUMERATION
    );
    let above = ze_command_queue_desc_t {
        flags: ZE_COMMAND_QUEUE_FLAG_IN_ORDER << 1,
        ..queue_desc(ZE_COMMAND_QUEUE_MODE_ASYNCHRONOUS)
    };
    assert_eq!(
        call!(zeCommandListCreateImmediate(context, setup.device, &above, &mut list)),
        ZE_RESULT_ERROR_INVALID_ENUMERATION
    );
    ze!(zeContextDestroy(context));
}

/// zeCommandListHostSynchronize (1.6), on the loader that has it.
#[test]
fn host_synchronize_waits_for_an_immediate_list() {
    let setup = setup();
    let host_synchronize: Option<ze_pfnCommandListHostSynchronize_t> = newer_function(c"zeCommandListHostSynchronize");
    let Some(Some(host_synchronize)) = host_synchronize else {
        assert!(loader().1 < ZE_API_VERSION_1_6, "loader {} lacks zeCommandListHostSynchronize", loader().0);
        return;
    };
    let context = setup.context();
    let events = Events::new(context, 1);
    let gate = events.events[0];
    let list = setup.immediate_list(context, ZE_COMMAND_QUEUE_MODE_ASYNCHRONOUS);
    ze!(host_synchronize(list, 0));
    let mut waits = [gate];
    ze!(zeCommandListAppendBarrier(list, null_mut(), 1, waits.as_mut_ptr()));
    assert_eq!(call!(host_synchronize(list, 0)), ZE_RESULT_NOT_READY);
    assert_eq!(call!(host_synchronize(list, 1_000_000)), ZE_RESULT_NOT_READY);
    ze!(zeEventHostSignal(gate));
    ze!(host_synchronize(list, u64::MAX));

    let regular = setup.regular_list(context);
    assert_eq!(call!(host_synchronize(regular, 0)), ZE_RESULT_ERROR_INVALID_ARGUMENT, "for immediate lists only");
    ze!(zeCommandListDestroy(regular));
    ze!(zeCommandListDestroy(list));
    events.destroy();
    ze!(zeContextDestroy(context));
}
