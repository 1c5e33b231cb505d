//! Command lists: regular lists record commands for command queues, immediate
//! lists hand each command to their own worker as it is appended.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use level_zero_sys::*;

use crate::api::{check_flags, entry, misuse, ready, ZeResult};
use crate::command::{Action, Command, Submitted};
use crate::context::{Context, CONTEXTS};
use crate::device::{self, MAX_FILL_PATTERN_SIZE};
use crate::event::{self, EVENTS};
use crate::executor::{Executor, Job};
use crate::ffi::{input, output};
use crate::intel;
use crate::knobs::knobs;
use crate::queue;
use crate::registry::{Owned, Registry};
use crate::sync::lock;

const LIST_FLAGS: u32 = ZE_COMMAND_LIST_FLAG_RELAXED_ORDERING
    | ZE_COMMAND_LIST_FLAG_MAXIMIZE_THROUGHPUT
    | ZE_COMMAND_LIST_FLAG_EXPLICIT_ONLY
    | ZE_COMMAND_LIST_FLAG_IN_ORDER;

pub struct CommandList {
    context: Arc<Context>,
    kind: Kind,
    /// Created in order (`ZE_COMMAND_LIST_FLAG_IN_ORDER`, or
    /// `ZE_COMMAND_QUEUE_FLAG_IN_ORDER` for an immediate list): what a
    /// counter-based signal event needs. Every list runs in order here.
    in_order: bool,
    /// Set while a thread appends, closes or resets: the spec forbids two
    /// threads doing so at once, and the second one is told so.
    in_use: AtomicBool,
}

enum Kind {
    Regular(Mutex<Recording>),
    /// Synchronous lists return from an append once the command has run.
    Immediate {
        executor: Executor,
        synchronous: bool,
    },
}

#[derive(Default)]
struct Recording {
    commands: Vec<Command>,
    closed: bool,
}

pub static COMMAND_LISTS: Registry<CommandList> = Registry::new("command list");

impl Owned for CommandList {
    fn context(&self) -> &Arc<Context> {
        &self.context
    }

    fn describe(&self) -> String {
        match &self.kind {
            Kind::Regular(recording) => format!(" (regular, {} commands)", lock(recording).commands.len()),
            Kind::Immediate { .. } => " (immediate)".into(),
        }
    }
}

/// Clears `CommandList::in_use` when the call that set it ends.
struct Exclusive<'a>(&'a AtomicBool);

impl Drop for Exclusive<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl CommandList {
    fn exclusive(&self) -> ZeResult<Exclusive<'_>> {
        if self.in_use.swap(true, Ordering::Acquire) {
            misuse(format_args!("another thread is using this command list at the same time"));
            return Err(ZE_RESULT_ERROR_HANDLE_OBJECT_IN_USE);
        }
        Ok(Exclusive(&self.in_use))
    }

    fn append(&self, command: Command) -> ZeResult {
        let _exclusive = self.exclusive()?;
        match &self.kind {
            Kind::Regular(recording) => {
                let mut recording = lock(recording);
                if recording.closed {
                    misuse(format_args!("appending to a closed command list"));
                    return Err(ZE_RESULT_ERROR_INVALID_ARGUMENT);
                }
                recording.commands.push(command);
            }
            Kind::Immediate { executor, synchronous } => {
                executor.submit([Job::Command(command.submit())]);
                if *synchronous {
                    executor.wait_idle(u64::MAX);
                }
            }
        }
        Ok(())
    }

    /// Appends `action` with the usual signal event and wait list.
    ///
    /// # Safety
    /// `waits` is null or valid for reads of `wait_count` handles.
    unsafe fn append_with_events(
        &self,
        action: Action,
        signal: ze_event_handle_t,
        wait_count: u32,
        waits: *mut ze_event_handle_t,
    ) -> ZeResult {
        let signal = event::lookup_optional(signal)?;
        // SAFETY: forwarded from this function's contract.
        let wait = unsafe { event::lookup_waits(wait_count, waits) }?;
        self.append_signalling(Command { wait, action, signal })
    }

    /// Appends a command after checking that this list may signal its event.
    fn append_signalling(&self, command: Command) -> ZeResult {
        if let Some(event) = &command.signal {
            event.check_signal_from(matches!(self.kind, Kind::Immediate { .. }), self.in_order)?;
        }
        self.append(command)
    }

    /// Submits the commands of a closed regular list, for a queue to run.
    pub fn submit_recorded(&self) -> ZeResult<Vec<Submitted>> {
        let Kind::Regular(recording) = &self.kind else {
            return Err(ZE_RESULT_ERROR_INVALID_COMMAND_LIST_TYPE);
        };
        let recording = lock(recording);
        if !recording.closed {
            misuse(format_args!("executing a command list that is not closed"));
            return Err(ZE_RESULT_ERROR_INVALID_ARGUMENT);
        }
        Ok(recording.commands.iter().map(Command::submit).collect())
    }
}

/// Makes and registers a list of the kind `kind` makes, unless
/// `ZE_SOFTWARE_DRIVER_FAIL_COMMAND_LIST_CREATE_EVERY` fails this creation.
fn register(
    context: Arc<Context>,
    in_order: bool,
    kind: impl FnOnce(&Arc<Context>) -> ZeResult<Kind>,
) -> ZeResult<ze_command_list_handle_t> {
    if knobs().fail_command_list_create.fails_now() {
        return Err(ZE_RESULT_ERROR_OUT_OF_HOST_MEMORY);
    }
    let kind = kind(&context)?;
    Ok(COMMAND_LISTS.insert(CommandList { context, kind, in_order, in_use: AtomicBool::new(false) }))
}

pub unsafe extern "C" fn create(
    context: ze_context_handle_t,
    device: ze_device_handle_t,
    desc: *const ze_command_list_desc_t,
    list: *mut ze_command_list_handle_t,
) -> ze_result_t {
    entry("zeCommandListCreate", || {
        let context = CONTEXTS.get(context)?;
        device::lookup(device)?;
        // SAFETY: application pointers, valid per the API contract.
        let (desc, list) = unsafe { (input(desc)?, output(list)?) };
        // SAFETY: the chain of an application input, valid per the API contract.
        unsafe { intel::check_queue_chain(desc.pNext) }?;
        check_flags(desc.flags, LIST_FLAGS)?;
        if desc.commandQueueGroupOrdinal != 0 {
            return Err(ZE_RESULT_ERROR_INVALID_ARGUMENT);
        }
        let in_order = desc.flags & ZE_COMMAND_LIST_FLAG_IN_ORDER != 0;
        *list = register(context, in_order, |_| Ok(Kind::Regular(Mutex::default())))?;
        Ok(())
    })
}

pub unsafe extern "C" fn create_immediate(
    context: ze_context_handle_t,
    device: ze_device_handle_t,
    desc: *const ze_command_queue_desc_t,
    list: *mut ze_command_list_handle_t,
) -> ze_result_t {
    entry("zeCommandListCreateImmediate", || {
        let context = CONTEXTS.get(context)?;
        device::lookup(device)?;
        // SAFETY: application pointers, valid per the API contract.
        let (desc, list) = unsafe { (input(desc)?, output(list)?) };
        let queue::Mode { synchronous, in_order } = queue::check_desc(desc)?;
        *list = register(context, in_order, |context| {
            Ok(Kind::Immediate { executor: Executor::start(Arc::clone(context))?, synchronous })
        })?;
        Ok(())
    })
}

/// The application must not destroy a list whose commands have not run; an
/// immediate list's worker abandons them.
pub unsafe extern "C" fn destroy(list: ze_command_list_handle_t) -> ze_result_t {
    entry("zeCommandListDestroy", || COMMAND_LISTS.remove(list).map(drop))
}

/// Immediate lists are always open: closing one does nothing.
pub unsafe extern "C" fn close(list: ze_command_list_handle_t) -> ze_result_t {
    entry("zeCommandListClose", || {
        let list = COMMAND_LISTS.get(list)?;
        let _exclusive = list.exclusive()?;
        if let Kind::Regular(recording) = &list.kind {
            lock(recording).closed = true;
        }
        Ok(())
    })
}

/// Immediate lists keep no commands: resetting one does nothing.
pub unsafe extern "C" fn reset(list: ze_command_list_handle_t) -> ze_result_t {
    entry("zeCommandListReset", || {
        let list = COMMAND_LISTS.get(list)?;
        let _exclusive = list.exclusive()?;
        if let Kind::Regular(recording) = &list.kind {
            *lock(recording) = Recording::default();
        }
        Ok(())
    })
}

pub unsafe extern "C" fn append_barrier(
    list: ze_command_list_handle_t,
    signal: ze_event_handle_t,
    wait_count: u32,
    waits: *mut ze_event_handle_t,
) -> ze_result_t {
    entry("zeCommandListAppendBarrier", || {
        let list = COMMAND_LISTS.get(list)?;
        // SAFETY: the application's wait list, valid per the API contract.
        unsafe { list.append_with_events(Action::Nothing, signal, wait_count, waits) }
    })
}

#[allow(clippy::too_many_arguments)] // the signature is the API's
pub unsafe extern "C" fn append_memory_copy(
    list: ze_command_list_handle_t,
    destination: *mut c_void,
    source: *const c_void,
    size: usize,
    signal: ze_event_handle_t,
    wait_count: u32,
    waits: *mut ze_event_handle_t,
) -> ze_result_t {
    entry("zeCommandListAppendMemoryCopy", || {
        let list = COMMAND_LISTS.get(list)?;
        if destination.is_null() || source.is_null() {
            return Err(ZE_RESULT_ERROR_INVALID_NULL_POINTER);
        }
        let action = Action::Copy { destination: destination as usize, source: source as usize, size };
        // SAFETY: the application's wait list, valid per the API contract.
        unsafe { list.append_with_events(action, signal, wait_count, waits) }
    })
}

#[allow(clippy::too_many_arguments)] // the signature is the API's
pub unsafe extern "C" fn append_memory_fill(
    list: ze_command_list_handle_t,
    destination: *mut c_void,
    pattern: *const c_void,
    pattern_size: usize,
    size: usize,
    signal: ze_event_handle_t,
    wait_count: u32,
    waits: *mut ze_event_handle_t,
) -> ze_result_t {
    entry("zeCommandListAppendMemoryFill", || {
        let list = COMMAND_LISTS.get(list)?;
        if destination.is_null() || pattern.is_null() {
            return Err(ZE_RESULT_ERROR_INVALID_NULL_POINTER);
        }
        if !pattern_size.is_power_of_two() || pattern_size > MAX_FILL_PATTERN_SIZE {
            return Err(ZE_RESULT_ERROR_INVALID_SIZE);
        }
        // Copied now: the application may reuse the pattern once the call returns.
        // SAFETY: the pattern is valid for `pattern_size` bytes (API contract).
        let pattern = unsafe { std::slice::from_raw_parts(pattern.cast::<u8>(), pattern_size) }.to_vec();
        let action = Action::Fill { destination: destination as usize, pattern, size };
        // SAFETY: the application's wait list, valid per the API contract.
        unsafe { list.append_with_events(action, signal, wait_count, waits) }
    })
}

pub unsafe extern "C" fn append_signal_event(list: ze_command_list_handle_t, event: ze_event_handle_t) -> ze_result_t {
    entry("zeCommandListAppendSignalEvent", || {
        let list = COMMAND_LISTS.get(list)?;
        let signal = Some(EVENTS.get(event)?);
        list.append_signalling(Command { wait: Vec::new(), action: Action::Nothing, signal })
    })
}

pub unsafe extern "C" fn append_wait_on_events(
    list: ze_command_list_handle_t,
    count: u32,
    events: *mut ze_event_handle_t,
) -> ze_result_t {
    entry("zeCommandListAppendWaitOnEvents", || {
        let list = COMMAND_LISTS.get(list)?;
        if events.is_null() {
            return Err(ZE_RESULT_ERROR_INVALID_NULL_POINTER);
        }
        // SAFETY: the application's event array, valid per the API contract.
        let wait = unsafe { event::lookup_waits(count, events) }?;
        list.append(Command { wait, action: Action::Nothing, signal: None })
    })
}

pub unsafe extern "C" fn append_event_reset(list: ze_command_list_handle_t, event: ze_event_handle_t) -> ze_result_t {
    entry("zeCommandListAppendEventReset", || {
        let list = COMMAND_LISTS.get(list)?;
        let event = EVENTS.get(event)?;
        event.check_resettable()?;
        list.append(Command { wait: Vec::new(), action: Action::ResetEvent(event), signal: None })
    })
}

/// Waits on the host until the commands appended to an immediate list so far
/// have run; regular lists are run by queues, which have their own.
pub unsafe extern "C" fn host_synchronize(list: ze_command_list_handle_t, timeout_ns: u64) -> ze_result_t {
    entry("zeCommandListHostSynchronize", || {
        let list = COMMAND_LISTS.get(list)?;
        let Kind::Immediate { executor, .. } = &list.kind else {
            misuse(format_args!("host synchronization of a regular command list"));
            return Err(ZE_RESULT_ERROR_INVALID_ARGUMENT);
        };
        ready(executor.wait_idle(timeout_ns))
    })
}
