//! Leak reports (`ZE_SOFTWARE_DRIVER_LEAK_CHECK`): the objects still alive
//! when their context is destroyed, and when the library is unloaded.

use std::sync::Arc;

use crate::command_list::COMMAND_LISTS;
use crate::context::{Context, CONTEXTS};
use crate::event::{EVENTS, EVENT_POOLS};
use crate::fence::FENCES;
use crate::knobs::{knobs, LeakCheck};
use crate::memory;
use crate::queue::COMMAND_QUEUES;

/// The live objects of `context`, or of every context, one line each.
fn live_objects(context: Option<&Arc<Context>>) -> Vec<String> {
    let mut lines = memory::leaks(context);
    lines.extend(EVENTS.leaks(context));
    lines.extend(EVENT_POOLS.leaks(context));
    lines.extend(COMMAND_LISTS.leaks(context));
    lines.extend(COMMAND_QUEUES.leaks(context));
    lines.extend(FENCES.leaks(context));
    lines
}

fn print(heading: &str, lines: &[String]) {
    eprintln!("ze-software-driver: leak: {heading}, {} objects still alive:", lines.len());
    for line in lines {
        eprintln!("ze-software-driver: leak:   {line}");
    }
}

pub fn report_context_destroyed(handle: usize, context: &Arc<Context>) {
    if knobs().leak_check == LeakCheck::Off {
        return;
    }
    let lines = live_objects(Some(context));
    if !lines.is_empty() {
        print(&format!("context {handle:#x} destroyed"), &lines);
    }
}

/// Reports everything still alive; returns whether there was anything.
pub fn report_at_unload() -> bool {
    if knobs().leak_check == LeakCheck::Off {
        return false;
    }
    let mut lines = live_objects(None);
    lines.extend(CONTEXTS.handles().into_iter().map(|handle| format!("context {handle:#x}")));
    if !lines.is_empty() {
        print("at unload", &lines);
    }
    !lines.is_empty()
}
