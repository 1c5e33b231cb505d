//! Regular command lists executed through command queues, and fences.

use std::ptr::null_mut;
use std::time::{Duration, Instant};

use crate::common::*;

fn fence(queue: ze_command_queue_handle_t, flags: ze_fence_flags_t) -> ze_fence_handle_t {
    let desc = ze_fence_desc_t { stype: ZE_STRUCTURE_TYPE_FENCE_DESC, pNext: std::ptr::null(), flags };
    let mut fence = null_mut();
    ze!(zeFenceCreate(queue, &desc, &mut fence));
    fence
}

#[test]
fn regular_list_through_a_queue_with_a_fence() {
    let setup = setup();
    let context = setup.context();
    let queue = setup.queue(context, ZE_COMMAND_QUEUE_MODE_ASYNCHRONOUS);
    let list = setup.regular_list(context);
    let fence = fence(queue, 0);
    let (source, target) = (alloc_host(context, 512), alloc_host(context, 512));
    write(target, 0, 512);

    let value = 0x11u32;
    ze!(zeCommandListAppendMemoryFill(
        list,
        source.cast(),
        (&raw const value).cast(),
        4,
        512,
        null_mut(),
        0,
        null_mut()
    ));
    ze!(zeCommandListAppendBarrier(list, null_mut(), 0, null_mut()));
    ze!(zeCommandListAppendMemoryCopy(list, target.cast(), source.cast(), 512, null_mut(), 0, null_mut()));
    ze!(zeCommandListClose(list));
    assert_eq!(read(target, 512), vec![0; 512], "recording runs nothing");
    let mut lists = [list];
    ze!(zeCommandQueueExecuteCommandLists(queue, 1, lists.as_mut_ptr(), fence));
    ze!(zeFenceHostSynchronize(fence, u64::MAX));
    ze!(zeFenceQueryStatus(fence));
    let expected: Vec<u8> = [0x11, 0, 0, 0].iter().copied().cycle().take(512).collect();
    assert_eq!(read(target, 512), expected);

    // Reset, record again, execute twice.
    ze!(zeFenceReset(fence));
    ze!(zeCommandListReset(list));
    let other = 0x22u8;
    ze!(zeCommandListAppendMemoryFill(
        list,
        target.cast(),
        (&raw const other).cast(),
        1,
        512,
        null_mut(),
        0,
        null_mut()
    ));
    ze!(zeCommandListClose(list));
    ze!(zeCommandQueueExecuteCommandLists(queue, 1, lists.as_mut_ptr(), null_mut()));
    ze!(zeCommandQueueExecuteCommandLists(queue, 1, lists.as_mut_ptr(), fence));
    ze!(zeCommandQueueSynchronize(queue, u64::MAX));
    ze!(zeFenceQueryStatus(fence));
    assert_eq!(read(target, 512), vec![0x22; 512]);

    ze!(zeFenceDestroy(fence));
    ze!(zeCommandListDestroy(list));
    ze!(zeCommandQueueDestroy(queue));
    free(context, source);
    free(context, target);
    ze!(zeContextDestroy(context));
}

#[test]
fn queue_synchronize_times_out_until_the_work_can_run() {
    let setup = setup();
    let context = setup.context();
    let queue = setup.queue(context, ZE_COMMAND_QUEUE_MODE_DEFAULT);
    let list = setup.regular_list(context);
    let fence = fence(queue, 0);
    let events = Events::new(context, 1);
    let mut gate = events.events[0];
    ze!(zeCommandListAppendWaitOnEvents(list, 1, &mut gate));
    ze!(zeCommandListClose(list));
    let mut lists = [list];
    ze!(zeCommandQueueExecuteCommandLists(queue, 1, lists.as_mut_ptr(), fence));

    assert_eq!(call!(zeCommandQueueSynchronize(queue, 0)), ZE_RESULT_NOT_READY);
    let start = Instant::now();
    assert_eq!(call!(zeCommandQueueSynchronize(queue, 10_000_000)), ZE_RESULT_NOT_READY);
    assert!(start.elapsed() >= Duration::from_millis(10));
    assert_eq!(call!(zeFenceQueryStatus(fence)), ZE_RESULT_NOT_READY);
    assert_eq!(call!(zeFenceHostSynchronize(fence, 0)), ZE_RESULT_NOT_READY);
    assert_eq!(call!(zeFenceHostSynchronize(fence, 5_000_000)), ZE_RESULT_NOT_READY);

    ze!(zeEventHostSignal(gate));
    ze!(zeCommandQueueSynchronize(queue, u64::MAX));
    ze!(zeFenceQueryStatus(fence));

    ze!(zeFenceDestroy(fence));
    ze!(zeCommandListDestroy(list));
    ze!(zeCommandQueueDestroy(queue));
    events.destroy();
    ze!(zeContextDestroy(context));
}

#[test]
fn synchronous_queue_returns_after_the_lists_ran() {
    let setup = setup();
    let context = setup.context();
    let queue = setup.queue(context, ZE_COMMAND_QUEUE_MODE_SYNCHRONOUS);
    let list = setup.regular_list(context);
    let memory = alloc_host(context, 256);
    write(memory, 0, 256);
    let value = 9u8;
    ze!(zeCommandListAppendMemoryFill(
        list,
        memory.cast(),
        (&raw const value).cast(),
        1,
        256,
        null_mut(),
        0,
        null_mut()
    ));
    ze!(zeCommandListClose(list));
    let mut lists = [list];
    ze!(zeCommandQueueExecuteCommandLists(queue, 1, lists.as_mut_ptr(), null_mut()));
    assert_eq!(read(memory, 256), vec![9; 256]);
    ze!(zeCommandListDestroy(list));
    ze!(zeCommandQueueDestroy(queue));
    free(context, memory);
    ze!(zeContextDestroy(context));
}

#[test]
fn fences_start_signalled_or_not_and_reset() {
    let setup = setup();
    let context = setup.context();
    let queue = setup.queue(context, ZE_COMMAND_QUEUE_MODE_DEFAULT);
    let signalled = fence(queue, ZE_FENCE_FLAG_SIGNALED);
    ze!(zeFenceQueryStatus(signalled));
    ze!(zeFenceHostSynchronize(signalled, 0));
    ze!(zeFenceReset(signalled));
    assert_eq!(call!(zeFenceQueryStatus(signalled)), ZE_RESULT_NOT_READY);
    let unsignalled = fence(queue, 0);
    assert_eq!(call!(zeFenceQueryStatus(unsignalled)), ZE_RESULT_NOT_READY);

    let desc = ze_fence_desc_t { stype: ZE_STRUCTURE_TYPE_FENCE_DESC, pNext: std::ptr::null(), flags: 2 };
    let mut bad = null_mut();
    assert_eq!(call!(zeFenceCreate(queue, &desc, &mut bad)), ZE_RESULT_ERROR_INVALID_ENUMERATION);

    let other_queue = setup.queue(context, ZE_COMMAND_QUEUE_MODE_DEFAULT);
    let list = setup.regular_list(context);
    ze!(zeCommandListClose(list));
    let mut lists = [list];
    assert_eq!(
        call!(zeCommandQueueExecuteCommandLists(other_queue, 1, lists.as_mut_ptr(), unsignalled)),
        ZE_RESULT_ERROR_INVALID_SYNCHRONIZATION_OBJECT,
        "a fence of another queue"
    );
    ze!(zeCommandListDestroy(list));
    ze!(zeCommandQueueDestroy(other_queue));
    ze!(zeFenceDestroy(signalled));
    ze!(zeFenceDestroy(unsignalled));
    ze!(zeCommandQueueDestroy(queue));
    ze!(zeContextDestroy(context));
}

#[test]
fn execute_rejects_open_and_immediate_lists() {
    let setup = setup();
    let context = setup.context();
    let queue = setup.queue(context, ZE_COMMAND_QUEUE_MODE_DEFAULT);
    let open = setup.regular_list(context);
    let mut lists = [open];
    assert_eq!(
        call!(zeCommandQueueExecuteCommandLists(queue, 1, lists.as_mut_ptr(), null_mut())),
        ZE_RESULT_ERROR_INVALID_ARGUMENT,
        "not closed"
    );
    ze!(zeCommandListClose(open));
    assert_eq!(
        call!(zeCommandListAppendBarrier(open, null_mut(), 0, null_mut())),
        ZE_RESULT_ERROR_INVALID_ARGUMENT,
        "appending to a closed list"
    );
    assert_eq!(
        call!(zeCommandQueueExecuteCommandLists(queue, 0, lists.as_mut_ptr(), null_mut())),
        ZE_RESULT_ERROR_INVALID_SIZE
    );
    if nulls_are_checked() {
        assert_eq!(
            call!(zeCommandQueueExecuteCommandLists(queue, 1, null_mut(), null_mut())),
            ZE_RESULT_ERROR_INVALID_NULL_POINTER
        );
    }
    let immediate = setup.immediate_list(context, ZE_COMMAND_QUEUE_MODE_DEFAULT);
    let mut immediates = [immediate];
    assert_eq!(
        call!(zeCommandQueueExecuteCommandLists(queue, 1, immediates.as_mut_ptr(), null_mut())),
        ZE_RESULT_ERROR_INVALID_COMMAND_LIST_TYPE
    );
    let bad_priority = ze_command_queue_desc_t { priority: 3, ..queue_desc(0) };
    let mut bad = null_mut();
    assert_eq!(
        call!(zeCommandQueueCreate(context, setup.device, &bad_priority, &mut bad)),
        ZE_RESULT_ERROR_INVALID_ENUMERATION
    );
    ze!(zeCommandListDestroy(immediate));
    ze!(zeCommandListDestroy(open));
    ze!(zeCommandQueueDestroy(queue));
    ze!(zeContextDestroy(context));
}
