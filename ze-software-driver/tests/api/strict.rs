//! Misuse reports (ZE_SOFTWARE_DRIVER_STRICT=1). The errors are returned
//! whether or not strict mode is on; strict mode adds the report.

use std::ptr::null_mut;
use std::time::Duration;

use crate::common::*;

const MISUSE: &str = "ze-software-driver: misuse: ";

fn misuse_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|line| line.starts_with(MISUSE)).collect()
}

#[test]
fn misuse_is_reported_in_strict_mode() {
    let stderr = run_passing_child("strict::misuse_child", &[("ZE_SOFTWARE_DRIVER_STRICT", "1")]);
    let lines = misuse_lines(&stderr);
    let reported = |api: &str, text: &str| {
        lines.iter().any(|line| line.starts_with(&format!("{MISUSE}{api}: ")) && line.contains(text))
    };
    assert!(reported("zeMemFree", "is not a live allocation"), "double free:\n{stderr}");
    assert!(reported("zeMemFree", "belongs to context"), "free in the wrong context:\n{stderr}");
    if !loader_intercept() {
        assert!(reported("zeEventQueryStatus", "stale or foreign event handle"), "stale handle:\n{stderr}");
    }
}

#[test]
fn misuse_is_silent_without_strict_mode() {
    let stderr = run_passing_child("strict::misuse_child", &[]);
    assert!(misuse_lines(&stderr).is_empty(), "{stderr}");
}

#[test]
#[ignore = "child of the misuse tests"]
fn misuse_child() {
    if !is_child() {
        return;
    }
    let setup = setup();
    let (context, other) = (setup.context(), setup.context());
    let memory = alloc_host(context, 64);
    assert_eq!(call!(zeMemFree(other, memory.cast())), ZE_RESULT_ERROR_INVALID_ARGUMENT);
    free(context, memory);
    assert_eq!(call!(zeMemFree(context, memory.cast())), ZE_RESULT_ERROR_INVALID_ARGUMENT);
    if !loader_intercept() {
        let events = Events::new(context, 1);
        let event = events.events[0];
        events.destroy();
        assert_eq!(call!(zeEventQueryStatus(event)), ZE_RESULT_ERROR_INVALID_ARGUMENT);
    }
    ze!(zeContextDestroy(other));
    ze!(zeContextDestroy(context));
}

#[test]
fn concurrent_appends_are_detected() {
    let stderr = run_passing_child(
        "strict::concurrent_appends_child",
        &[("ZE_SOFTWARE_DRIVER_STRICT", "1"), ("ZE_SOFTWARE_DRIVER_COMMAND_LATENCY_US", "300000")],
    );
    assert!(
        misuse_lines(&stderr)
            .iter()
            .any(|line| line.starts_with(&format!("{MISUSE}zeCommandListAppendBarrier: another thread"))),
        "{stderr}"
    );
}

#[test]
#[ignore = "child of concurrent_appends_are_detected"]
fn concurrent_appends_child() {
    if !is_child() {
        return;
    }
    let setup = setup();
    let context = setup.context();
    // A synchronous append lasts as long as the command's latency.
    let list = setup.immediate_list(context, ZE_COMMAND_QUEUE_MODE_SYNCHRONOUS);
    let address = list as usize;
    let first = std::thread::spawn(move || {
        ze!(zeCommandListAppendBarrier(address as ze_command_list_handle_t, null_mut(), 0, null_mut()));
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        call!(zeCommandListAppendBarrier(list, null_mut(), 0, null_mut())),
        ZE_RESULT_ERROR_HANDLE_OBJECT_IN_USE
    );
    first.join().unwrap();
    ze!(zeCommandListAppendBarrier(list, null_mut(), 0, null_mut()));
    ze!(zeCommandListDestroy(list));
    ze!(zeContextDestroy(context));
}
