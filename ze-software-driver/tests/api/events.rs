//! Event pools and events on the host.

use std::ptr::{null, null_mut};
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn signal_query_reset() {
    let setup = setup();
    let context = setup.context();
    let events = Events::new(context, 1);
    let event = events.events[0];
    assert_eq!(call!(zeEventQueryStatus(event)), ZE_RESULT_NOT_READY);
    ze!(zeEventHostSignal(event));
    assert_eq!(call!(zeEventQueryStatus(event)), ZE_RESULT_SUCCESS);
    ze!(zeEventHostSynchronize(event, 0));
    ze!(zeEventHostReset(event));
    assert_eq!(call!(zeEventQueryStatus(event)), ZE_RESULT_NOT_READY);
    events.destroy();
    ze!(zeContextDestroy(context));
}

#[test]
fn host_synchronize_times_out_or_waits() {
    let setup = setup();
    let context = setup.context();
    let events = Events::new(context, 1);
    let event = events.events[0];
    assert_eq!(call!(zeEventHostSynchronize(event, 0)), ZE_RESULT_NOT_READY, "0 polls");
    let start = Instant::now();
    assert_eq!(call!(zeEventHostSynchronize(event, 20_000_000)), ZE_RESULT_NOT_READY);
    assert!(start.elapsed() >= Duration::from_millis(20), "waited out the timeout");

    let address = event as usize;
    let signaller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        ze!(zeEventHostSignal(address as ze_event_handle_t));
    });
    ze!(zeEventHostSynchronize(event, u64::MAX));
    signaller.join().unwrap();
    events.destroy();
    ze!(zeContextDestroy(context));
}

#[test]
fn kernel_timestamps_are_unsupported() {
    let setup = setup();
    let context = setup.context();
    let events = Events::new(context, 1);
    let mut timestamp = ze_kernel_timestamp_result_t::default();
    assert_eq!(
        call!(zeEventQueryKernelTimestamp(events.events[0], &mut timestamp)),
        ZE_RESULT_ERROR_UNSUPPORTED_FEATURE
    );
    events.destroy();
    ze!(zeContextDestroy(context));
}

#[test]
fn pool_and_event_errors() {
    let setup = setup();
    let context = setup.context();
    let mut pool = null_mut();
    let desc =
        |flags, count| ze_event_pool_desc_t { stype: ZE_STRUCTURE_TYPE_EVENT_POOL_DESC, pNext: null(), flags, count };
    assert_eq!(call!(zeEventPoolCreate(context, &desc(0, 0), 0, null_mut(), &mut pool)), ZE_RESULT_ERROR_INVALID_SIZE);
    assert_eq!(
        call!(zeEventPoolCreate(
            context,
            &desc(ZE_EVENT_POOL_FLAG_KERNEL_MAPPED_TIMESTAMP << 1, 1),
            0,
            null_mut(),
            &mut pool
        )),
        ZE_RESULT_ERROR_INVALID_ENUMERATION
    );
    if nulls_are_checked() {
        assert_eq!(
            call!(zeEventPoolCreate(context, &desc(1, 1), 1, null_mut(), &mut pool)),
            ZE_RESULT_ERROR_INVALID_SIZE
        );
    }
    let mut devices = [setup.device];
    ze!(zeEventPoolCreate(context, &desc(ZE_EVENT_POOL_FLAG_HOST_VISIBLE, 2), 1, devices.as_mut_ptr(), &mut pool));

    let mut event = null_mut();
    assert_eq!(
        call!(zeEventCreate(pool, &event_desc(2), &mut event)),
        ZE_RESULT_ERROR_INVALID_ARGUMENT,
        "index past the pool"
    );
    let bad_scope = ze_event_desc_t { signal: 8, ..event_desc(0) };
    assert_eq!(call!(zeEventCreate(pool, &bad_scope, &mut event)), ZE_RESULT_ERROR_INVALID_ENUMERATION);
    assert_eq!(call!(zeEventCreate(pool, null(), &mut event)), ZE_RESULT_ERROR_INVALID_NULL_POINTER);
    if nulls_are_checked() {
        assert_eq!(call!(zeEventCreate(null_mut(), &event_desc(0), &mut event)), ZE_RESULT_ERROR_INVALID_NULL_HANDLE);
        assert_eq!(call!(zeEventHostSignal(null_mut())), ZE_RESULT_ERROR_INVALID_NULL_HANDLE);
    }
    ze!(zeEventPoolDestroy(pool));
    ze!(zeContextDestroy(context));
}

#[test]
fn stale_event_handles_are_rejected() {
    if stale_handles_reach_the_loader() {
        return;
    }
    let setup = setup();
    let context = setup.context();
    let events = Events::new(context, 1);
    let (pool, event) = (events.pool, events.events[0]);
    events.destroy();
    assert_eq!(call!(zeEventQueryStatus(event)), ZE_RESULT_ERROR_INVALID_ARGUMENT);
    assert_eq!(call!(zeEventHostSignal(event)), ZE_RESULT_ERROR_INVALID_ARGUMENT);
    assert_eq!(call!(zeEventDestroy(event)), ZE_RESULT_ERROR_INVALID_ARGUMENT);
    assert_eq!(call!(zeEventPoolDestroy(pool)), ZE_RESULT_ERROR_INVALID_ARGUMENT);
    ze!(zeContextDestroy(context));
}
