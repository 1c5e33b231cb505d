//! Live-object counts and leak reports (ZE_SOFTWARE_DRIVER_LEAK_CHECK).

use std::ptr::null_mut;

use crate::common::*;

#[test]
fn live_object_counts() {
    // With `fail`, a process that cleans up exits successfully.
    run_passing_child("leaks::live_object_counts_child", &[("ZE_SOFTWARE_DRIVER_LEAK_CHECK", "fail")]);
}

#[test]
#[ignore = "child of live_object_counts"]
fn live_object_counts_child() {
    if !is_child() {
        return;
    }
    let setup = setup();
    assert_eq!(setup.live_objects(), zex_software_driver_live_objects_t::default());
    let context = setup.context();
    let host = alloc_host(context, 100);
    let mut device_memory = null_mut();
    ze!(zeMemAllocDevice(context, &device_desc(), 50, 0, setup.device, &mut device_memory));
    let events = Events::new(context, 2);
    let (regular, immediate) =
        (setup.regular_list(context), setup.immediate_list(context, ZE_COMMAND_QUEUE_MODE_DEFAULT));
    let queue = setup.queue(context, ZE_COMMAND_QUEUE_MODE_DEFAULT);
    let fence_desc = ze_fence_desc_t { stype: ZE_STRUCTURE_TYPE_FENCE_DESC, pNext: std::ptr::null(), flags: 0 };
    let mut fence = null_mut();
    ze!(zeFenceCreate(queue, &fence_desc, &mut fence));
    assert_eq!(
        setup.live_objects(),
        zex_software_driver_live_objects_t {
            allocations: 2,
            allocated_bytes: 150,
            event_pools: 1,
            events: 2,
            command_lists: 2,
            command_queues: 1,
            fences: 1,
            contexts: 1,
            host_alloc_calls: 1,
            host_free_calls: 0,
        }
    );
    ze!(zeFenceDestroy(fence));
    ze!(zeCommandQueueDestroy(queue));
    ze!(zeCommandListDestroy(immediate));
    ze!(zeCommandListDestroy(regular));
    events.destroy();
    ze!(zeMemFree(context, device_memory));
    free(context, host);
    ze!(zeContextDestroy(context));
    assert_eq!(
        setup.live_objects(),
        zex_software_driver_live_objects_t { host_alloc_calls: 1, host_free_calls: 1, ..Default::default() }
    );
}

/// Runs the leaky child; returns its output and the address it leaked.
fn run_leaky_child(knobs: &[(&str, &str)]) -> (std::process::Output, String) {
    let output = run_child("leaks::leaky_child", knobs);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let address = stdout
        .lines()
        .find_map(|line| line.split("leaked allocation ").nth(1))
        .expect("the child prints the address it leaks")
        .trim()
        .to_owned();
    (output, address)
}

#[test]
fn leak_summary_is_one_line_per_report_by_default() {
    for knobs in [&[][..], &[("ZE_SOFTWARE_DRIVER_LEAK_CHECK", "summary")]] {
        let (output, _) = run_leaky_child(knobs);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "a summary only: {}\n{stderr}", output.status);
        let lines: Vec<&str> = stderr.lines().filter(|line| line.contains("ze-software-driver: leak")).collect();
        assert_eq!(lines.len(), 2, "one line at zeContextDestroy, one at unload:\n{stderr}");
        assert!(lines[0].contains("destroyed, ") && lines[1].contains("at unload, "), "{stderr}");
        for line in &lines {
            assert!(line.contains("1 host allocation (12345 bytes)"), "{line}");
            assert!(line.contains("ZE_SOFTWARE_DRIVER_LEAK_CHECK=report lists them"), "{line}");
        }
        for kind in ["event", "event pool", "command list", "command queue", "fence", "context"] {
            assert!(lines[1].contains(&format!(" {kind}")), "{kind}: {}", lines[1]);
        }
    }
}

#[test]
fn leak_report_lists_the_leaked_objects() {
    let (output, address) = run_leaky_child(&[("ZE_SOFTWARE_DRIVER_LEAK_CHECK", "report")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "report only: {}\n{stderr}", output.status);
    let allocation = format!("ze-software-driver: leak:   host allocation {address} of 12345 bytes");
    assert_eq!(stderr.matches(&allocation).count(), 2, "at zeContextDestroy and at unload:\n{stderr}");
    let context_report = stderr.find("destroyed, ").expect("a report at zeContextDestroy");
    let unload_report = stderr.find("ze-software-driver: leak: at unload").expect("a report at unload");
    assert!(context_report < unload_report);
    for kind in ["event 0x", "event pool 0x", "command list 0x", "command queue 0x", "fence 0x", "context 0x"] {
        assert!(stderr[unload_report..].contains(&format!("ze-software-driver: leak:   {kind}")), "{kind}:\n{stderr}");
    }
}

#[test]
fn leak_check_fail_makes_the_exit_status_non_zero() {
    let (output, address) = run_leaky_child(&[("ZE_SOFTWARE_DRIVER_LEAK_CHECK", "fail")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("host allocation {address} of 12345 bytes")));
}

#[test]
fn leak_check_off_is_silent() {
    let (output, _) = run_leaky_child(&[("ZE_SOFTWARE_DRIVER_LEAK_CHECK", "off")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success());
    assert!(!stderr.contains("ze-software-driver: leak"), "{stderr}");
}

#[test]
#[ignore = "child of the leak report tests"]
fn leaky_child() {
    if !is_child() {
        return;
    }
    let setup = setup();
    let _never_destroyed = setup.context();
    let context = setup.context();
    let memory = alloc_host(context, 12345);
    println!("leaked allocation {memory:p}");
    let events = Events::new(context, 1);
    let mut never_signalled = events.events[0];
    // A worker blocked on an event nobody signals must not keep the process
    // from exiting: the unload stops and joins it.
    let list = setup.immediate_list(context, ZE_COMMAND_QUEUE_MODE_ASYNCHRONOUS);
    ze!(zeCommandListAppendWaitOnEvents(list, 1, &mut never_signalled));
    let queue = setup.queue(context, ZE_COMMAND_QUEUE_MODE_DEFAULT);
    let fence_desc = ze_fence_desc_t { stype: ZE_STRUCTURE_TYPE_FENCE_DESC, pNext: std::ptr::null(), flags: 0 };
    let mut fence = null_mut();
    ze!(zeFenceCreate(queue, &fence_desc, &mut fence));
    ze!(zeContextDestroy(context));
}
