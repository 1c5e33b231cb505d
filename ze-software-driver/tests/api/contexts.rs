//! Contexts.

use std::ptr::{null, null_mut};

use crate::common::*;

#[test]
fn create_status_destroy() {
    let setup = setup();
    let context = setup.context();
    ze!(zeContextGetStatus(context));
    ze!(zeContextDestroy(context));

    let mut devices = [setup.device];
    let desc = ze_context_desc_t { stype: ZE_STRUCTURE_TYPE_CONTEXT_DESC, pNext: null(), flags: 0 };
    let mut context = null_mut();
    ze!(zeContextCreateEx(setup.driver, &desc, 1, devices.as_mut_ptr(), &mut context));
    ze!(zeContextGetStatus(context));
    ze!(zeContextDestroy(context));
}

#[test]
fn bad_arguments() {
    let setup = setup();
    let mut context = null_mut();
    let bad_flags = ze_context_desc_t { stype: ZE_STRUCTURE_TYPE_CONTEXT_DESC, pNext: null(), flags: 2 };
    assert_eq!(call!(zeContextCreate(setup.driver, &bad_flags, &mut context)), ZE_RESULT_ERROR_INVALID_ENUMERATION);
    assert_eq!(call!(zeContextCreate(setup.driver, null(), &mut context)), ZE_RESULT_ERROR_INVALID_NULL_POINTER);
    let desc = ze_context_desc_t { stype: ZE_STRUCTURE_TYPE_CONTEXT_DESC, pNext: null(), flags: 0 };
    assert_eq!(call!(zeContextCreate(setup.driver, &desc, null_mut())), ZE_RESULT_ERROR_INVALID_NULL_POINTER);
    if nulls_are_checked() {
        assert_eq!(
            call!(zeContextCreateEx(setup.driver, &desc, 1, null_mut(), &mut context)),
            ZE_RESULT_ERROR_INVALID_SIZE
        );
        assert_eq!(call!(zeContextGetStatus(null_mut())), ZE_RESULT_ERROR_INVALID_NULL_HANDLE);
        assert_eq!(call!(zeContextCreate(null_mut(), &desc, &mut context)), ZE_RESULT_ERROR_INVALID_NULL_HANDLE);
    }
}

#[test]
fn stale_and_foreign_handles_are_rejected() {
    if stale_handles_reach_the_loader() {
        return;
    }
    let setup = setup();
    let context = setup.context();
    let events = Events::new(context, 1);
    // An event handle where a context handle belongs.
    assert_eq!(call!(zeContextGetStatus(events.events[0].cast())), ZE_RESULT_ERROR_INVALID_ARGUMENT);
    events.destroy();
    ze!(zeContextDestroy(context));
    assert_eq!(call!(zeContextGetStatus(context)), ZE_RESULT_ERROR_INVALID_ARGUMENT);
    assert_eq!(call!(zeContextDestroy(context)), ZE_RESULT_ERROR_INVALID_ARGUMENT);
}
