//! Counter-based events (`ze_event_pool_counter_based_exp_desc_t`), which
//! Intel's v2 adapter uses for its in-order queues: an event stands for the
//! completion of the latest command submitted to signal it.
//!
//! Commands are held back by a wait on a regular event that the host signals
//! when the test is ready, never by timing.

use std::ptr::{null, null_mut};

use crate::common::*;

const BOTH: ze_event_pool_counter_based_exp_flags_t =
    ZE_EVENT_POOL_COUNTER_BASED_EXP_FLAG_IMMEDIATE | ZE_EVENT_POOL_COUNTER_BASED_EXP_FLAG_NON_IMMEDIATE;

/// A pool of `count` counter-based events for the lists `flags` names.
fn counter_based(context: ze_context_handle_t, flags: ze_event_pool_counter_based_exp_flags_t, count: u32) -> Events {
    let counter_based = ze_event_pool_counter_based_exp_desc_t {
        stype: ZE_STRUCTURE_TYPE_COUNTER_BASED_EVENT_POOL_EXP_DESC,
        pNext: null(),
        flags,
    };
    Events::chained(context, (&raw const counter_based).cast(), count)
}

fn in_order_immediate(setup: &Setup, context: ze_context_handle_t) -> ze_command_list_handle_t {
    let desc = ze_command_queue_desc_t {
        flags: ZE_COMMAND_QUEUE_FLAG_IN_ORDER,
        ..queue_desc(ZE_COMMAND_QUEUE_MODE_ASYNCHRONOUS)
    };
    let mut list = null_mut();
    ze!(zeCommandListCreateImmediate(context, setup.device, &desc, &mut list));
    list
}

fn in_order_regular(setup: &Setup, context: ze_context_handle_t) -> ze_command_list_handle_t {
    let desc = ze_command_list_desc_t {
        stype: ZE_STRUCTURE_TYPE_COMMAND_LIST_DESC,
        pNext: null(),
        commandQueueGroupOrdinal: 0,
        flags: ZE_COMMAND_LIST_FLAG_IN_ORDER,
    };
    let mut list = null_mut();
    ze!(zeCommandListCreate(context, setup.device, &desc, &mut list));
    list
}

/// Appends a barrier that waits for `gate` and signals `signal`.
fn gated_barrier(list: ze_command_list_handle_t, gate: ze_event_handle_t, signal: ze_event_handle_t) {
    let mut waits = [gate];
    ze!(zeCommandListAppendBarrier(list, signal, 1, waits.as_mut_ptr()));
}

fn status(event: ze_event_handle_t) -> ze_result_t {
    call!(zeEventQueryStatus(event))
}

#[test]
fn starts_complete_and_is_never_signalled_or_reset_by_the_host() {
    if !api_reaches(ZE_API_VERSION_1_8, "counter-based events") {
        return;
    }
    let setup = setup();
    let context = setup.context();
    let events = counter_based(context, 0, 1);
    let event = events.events[0];
    assert_eq!(status(event), ZE_RESULT_SUCCESS, "a counter-based event starts complete");
    ze!(zeEventHostSynchronize(event, 0));
    assert_eq!(call!(zeEventHostSignal(event)), ZE_RESULT_ERROR_INVALID_ARGUMENT);
    assert_eq!(call!(zeEventHostReset(event)), ZE_RESULT_ERROR_INVALID_ARGUMENT);
    let list = in_order_immediate(&setup, context);
    assert_eq!(call!(zeCommandListAppendEventReset(list, event)), ZE_RESULT_ERROR_INVALID_ARGUMENT);
    ze!(zeCommandListDestroy(list));
    events.destroy();
    ze!(zeContextDestroy(context));
}

#[test]
fn an_append_unsignals_it_and_only_that_command_signals_it() {
    if !api_reaches(ZE_API_VERSION_1_8, "counter-based events") {
        return;
    }
    let setup = setup();
    let context = setup.context();
    let gates = Events::new(context, 2);
    let events = counter_based(context, 0, 1);
    let event = events.events[0];
    let list = in_order_immediate(&setup, context);

    gated_barrier(list, gates.events[0], event);
    assert_eq!(status(event), ZE_RESULT_NOT_READY, "appending a command that signals it un-signals it");
    assert_eq!(call!(zeEventHostSynchronize(event, 1_000_000)), ZE_RESULT_NOT_READY);
    ze!(zeEventHostSignal(gates.events[0]));
    ze!(zeEventHostSynchronize(event, u64::MAX));

    // Used again without a reset: it now tells of the new command only.
    gated_barrier(list, gates.events[1], event);
    assert_eq!(status(event), ZE_RESULT_NOT_READY);
    ze!(zeEventHostSignal(gates.events[1]));
    ze!(zeEventHostSynchronize(event, u64::MAX));

    // zeCommandListAppendSignalEvent arms it the same way.
    ze!(zeEventHostReset(gates.events[0]));
    let mut waits = [gates.events[0]];
    ze!(zeCommandListAppendWaitOnEvents(list, 1, waits.as_mut_ptr()));
    ze!(zeCommandListAppendSignalEvent(list, event));
    assert_eq!(status(event), ZE_RESULT_NOT_READY);
    ze!(zeEventHostSignal(gates.events[0]));
    ze!(zeEventHostSynchronize(event, u64::MAX));

    ze!(zeCommandListDestroy(list));
    events.destroy();
    gates.destroy();
    ze!(zeContextDestroy(context));
}

/// A command that waits on the event waits for the signal current when it
/// was appended, not for one appended after it.
#[test]
fn a_wait_binds_to_the_signal_appended_before_it() {
    if !api_reaches(ZE_API_VERSION_1_8, "counter-based events") {
        return;
    }
    let setup = setup();
    let context = setup.context();
    let gates = Events::new(context, 3);
    let (first_gate, second_gate, done) = (gates.events[0], gates.events[1], gates.events[2]);
    let events = counter_based(context, 0, 1);
    let event = events.events[0];
    let (producer, consumer) = (in_order_immediate(&setup, context), in_order_immediate(&setup, context));
    let (source, target) = (alloc_host(context, 256), alloc_host(context, 256));
    write(source, 0x5a, 256);
    write(target, 0, 256);

    gated_barrier(producer, first_gate, event);
    let mut waits = [event];
    ze!(zeCommandListAppendMemoryCopy(consumer, target.cast(), source.cast(), 256, done, 1, waits.as_mut_ptr()));
    gated_barrier(producer, second_gate, event);

    ze!(zeEventHostSignal(first_gate));
    ze!(zeEventHostSynchronize(done, u64::MAX));
    assert_eq!(read(target, 256), vec![0x5a; 256]);
    assert_eq!(status(event), ZE_RESULT_NOT_READY, "the event now tells of the second signal, still held back");
    ze!(zeEventHostSignal(second_gate));
    ze!(zeEventHostSynchronize(event, u64::MAX));

    ze!(zeCommandListDestroy(consumer));
    ze!(zeCommandListDestroy(producer));
    free(context, target);
    free(context, source);
    events.destroy();
    gates.destroy();
    ze!(zeContextDestroy(context));
}

/// In a regular list, the event is armed each time the list is executed, and
/// a wait binds to the signal current when its list is executed.
#[test]
fn regular_lists_arm_it_at_each_execution() {
    if !api_reaches(ZE_API_VERSION_1_8, "counter-based events") {
        return;
    }
    let setup = setup();
    let context = setup.context();
    let gates = Events::new(context, 2);
    let (gate, done) = (gates.events[0], gates.events[1]);
    let events = counter_based(context, ZE_EVENT_POOL_COUNTER_BASED_EXP_FLAG_NON_IMMEDIATE, 1);
    let event = events.events[0];
    let (producer_queue, consumer_queue) = (
        setup.queue(context, ZE_COMMAND_QUEUE_MODE_ASYNCHRONOUS),
        setup.queue(context, ZE_COMMAND_QUEUE_MODE_ASYNCHRONOUS),
    );
    let producer = in_order_regular(&setup, context);
    gated_barrier(producer, gate, event);
    ze!(zeCommandListClose(producer));
    let consumer = in_order_regular(&setup, context);
    let mut waits = [event];
    ze!(zeCommandListAppendBarrier(consumer, done, 1, waits.as_mut_ptr()));
    ze!(zeCommandListClose(consumer));
    assert_eq!(status(event), ZE_RESULT_SUCCESS, "recording arms nothing");

    for execution in 0..2 {
        ze!(zeEventHostReset(gate));
        ze!(zeEventHostReset(done));
        let mut lists = [producer];
        ze!(zeCommandQueueExecuteCommandLists(producer_queue, 1, lists.as_mut_ptr(), null_mut()));
        assert_eq!(status(event), ZE_RESULT_NOT_READY, "execution {execution} arms it");
        let mut lists = [consumer];
        ze!(zeCommandQueueExecuteCommandLists(consumer_queue, 1, lists.as_mut_ptr(), null_mut()));
        assert_eq!(
            call!(zeEventHostSynchronize(done, 1_000_000)),
            ZE_RESULT_NOT_READY,
            "execution {execution}: the consumer waits for this execution's signal"
        );
        ze!(zeEventHostSignal(gate));
        ze!(zeEventHostSynchronize(done, u64::MAX));
        ze!(zeEventHostSynchronize(event, u64::MAX));
    }

    ze!(zeCommandQueueSynchronize(producer_queue, u64::MAX));
    ze!(zeCommandQueueSynchronize(consumer_queue, u64::MAX));
    ze!(zeCommandListDestroy(consumer));
    ze!(zeCommandListDestroy(producer));
    ze!(zeCommandQueueDestroy(consumer_queue));
    ze!(zeCommandQueueDestroy(producer_queue));
    events.destroy();
    gates.destroy();
    ze!(zeContextDestroy(context));
}

#[test]
fn only_in_order_lists_of_the_pools_kinds_signal_it() {
    if !api_reaches(ZE_API_VERSION_1_8, "counter-based events") {
        return;
    }
    let setup = setup();
    let context = setup.context();
    let (immediate_only, regular_only, both) = (
        counter_based(context, 0, 1),
        counter_based(context, ZE_EVENT_POOL_COUNTER_BASED_EXP_FLAG_NON_IMMEDIATE, 1),
        counter_based(context, BOTH, 1),
    );
    let unordered = setup.immediate_list(context, ZE_COMMAND_QUEUE_MODE_ASYNCHRONOUS);
    let immediate = in_order_immediate(&setup, context);
    let regular = in_order_regular(&setup, context);
    let signal = |list, events: &Events| call!(zeCommandListAppendBarrier(list, events.events[0], 0, null_mut()));

    assert_eq!(signal(unordered, &both), ZE_RESULT_ERROR_INVALID_ARGUMENT, "a list not created in order");
    assert_eq!(call!(zeCommandListAppendSignalEvent(unordered, both.events[0])), ZE_RESULT_ERROR_INVALID_ARGUMENT);
    assert_eq!(signal(regular, &immediate_only), ZE_RESULT_ERROR_INVALID_ARGUMENT, "a pool for immediate lists");
    assert_eq!(signal(immediate, &regular_only), ZE_RESULT_ERROR_INVALID_ARGUMENT, "a pool for regular lists");
    ze!(signal(immediate, &immediate_only));
    ze!(signal(immediate, &both));
    ze!(signal(regular, &regular_only));
    ze!(signal(regular, &both));
    // Any list may wait on one.
    let mut waits = [immediate_only.events[0]];
    ze!(zeCommandListAppendWaitOnEvents(unordered, 1, waits.as_mut_ptr()));
    ze!(zeEventHostSynchronize(immediate_only.events[0], u64::MAX));
    ze!(zeEventHostSynchronize(both.events[0], u64::MAX));

    let bad = ze_event_pool_counter_based_exp_desc_t {
        stype: ZE_STRUCTURE_TYPE_COUNTER_BASED_EVENT_POOL_EXP_DESC,
        pNext: null(),
        flags: BOTH << 1,
    };
    let desc = ze_event_pool_desc_t {
        stype: ZE_STRUCTURE_TYPE_EVENT_POOL_DESC,
        pNext: (&raw const bad).cast(),
        flags: ZE_EVENT_POOL_FLAG_HOST_VISIBLE,
        count: 1,
    };
    let mut pool = null_mut();
    assert_eq!(call!(zeEventPoolCreate(context, &desc, 0, null_mut(), &mut pool)), ZE_RESULT_ERROR_INVALID_ENUMERATION);
    let unknown = ze_base_desc_t { stype: ZE_STRUCTURE_TYPE_EVENT_DESC, pNext: null() };
    let desc = ze_event_pool_desc_t { pNext: (&raw const unknown).cast(), ..desc };
    assert_eq!(
        call!(zeEventPoolCreate(context, &desc, 0, null_mut(), &mut pool)),
        ZE_RESULT_ERROR_UNSUPPORTED_ENUMERATION
    );

    ze!(zeCommandListDestroy(regular));
    ze!(zeCommandListDestroy(immediate));
    ze!(zeCommandListDestroy(unordered));
    for events in [both, regular_only, immediate_only] {
        events.destroy();
    }
    ze!(zeContextDestroy(context));
}

/// Counter-based and regular events of different pools in the same list:
/// each keeps its own rules.
#[test]
fn beside_ordinary_events() {
    if !api_reaches(ZE_API_VERSION_1_8, "counter-based events") {
        return;
    }
    let setup = setup();
    let context = setup.context();
    let regular = Events::new(context, 2);
    let (gate, ordinary) = (regular.events[0], regular.events[1]);
    let counter = counter_based(context, 0, 1);
    let event = counter.events[0];
    let list = in_order_immediate(&setup, context);

    gated_barrier(list, gate, ordinary);
    ze!(zeCommandListAppendSignalEvent(list, event));
    assert_eq!((status(ordinary), status(event)), (ZE_RESULT_NOT_READY, ZE_RESULT_NOT_READY));
    ze!(zeEventHostSignal(gate));
    ze!(zeEventHostSynchronize(event, u64::MAX));
    assert_eq!(status(ordinary), ZE_RESULT_SUCCESS, "in order: the ordinary event came first");

    // The ordinary event is reset by a command and by the host; the
    // counter-based one is not touched by either.
    ze!(zeCommandListAppendEventReset(list, ordinary));
    ze!(zeCommandListAppendSignalEvent(list, event));
    ze!(zeEventHostSynchronize(event, u64::MAX));
    assert_eq!(status(ordinary), ZE_RESULT_NOT_READY, "reset by the command before the signal");
    ze!(zeEventHostSignal(ordinary));
    ze!(zeEventHostReset(ordinary));
    assert_eq!(status(event), ZE_RESULT_SUCCESS);

    ze!(zeCommandListDestroy(list));
    counter.destroy();
    regular.destroy();
    ze!(zeContextDestroy(context));
}
