//! Leak reports (`ZE_SOFTWARE_DRIVER_LEAK_CHECK`): the objects still alive
//! when their context is destroyed, and when the library is unloaded. By
//! default one summary line each (objects and bytes by kind); the full
//! list, one line per object, when asked for.

use std::sync::Arc;

use crate::command_list::COMMAND_LISTS;
use crate::context::{Context, CONTEXTS};
use crate::event::{EVENTS, EVENT_POOLS};
use crate::fence::FENCES;
use crate::knobs::{knobs, LeakCheck};
use crate::memory;
use crate::queue::COMMAND_QUEUES;

/// An object still alive: its kind, its bytes (memory only) and its line.
pub struct Leak {
    pub kind: &'static str,
    pub bytes: usize,
    pub line: String,
}

/// The live objects of `context`, or of every context.
fn live_objects(context: Option<&Arc<Context>>) -> Vec<Leak> {
    let mut leaks = memory::leaks(context);
    leaks.extend(EVENTS.leaks(context));
    leaks.extend(EVENT_POOLS.leaks(context));
    leaks.extend(COMMAND_LISTS.leaks(context));
    leaks.extend(COMMAND_QUEUES.leaks(context));
    leaks.extend(FENCES.leaks(context));
    leaks
}

/// "3 host allocations (3072 bytes), 258 events, 1 event pool", kinds in
/// the order first met.
fn summary(leaks: &[Leak]) -> String {
    let mut kinds: Vec<(&str, usize, usize)> = Vec::new();
    for leak in leaks {
        match kinds.iter_mut().find(|(kind, _, _)| *kind == leak.kind) {
            Some((_, count, bytes)) => {
                *count += 1;
                *bytes += leak.bytes;
            }
            None => kinds.push((leak.kind, 1, leak.bytes)),
        }
    }
    let parts: Vec<String> = kinds
        .iter()
        .map(|&(kind, count, bytes)| {
            let plural = if count == 1 { "" } else { "s" };
            let bytes = if bytes > 0 { format!(" ({bytes} bytes)") } else { String::new() };
            format!("{count} {kind}{plural}{bytes}")
        })
        .collect();
    parts.join(", ")
}

fn print(heading: &str, leaks: &[Leak]) {
    if knobs().leak_check == LeakCheck::Summary {
        eprintln!(
            "ze-software-driver: leak: {heading}, {} objects still alive: {} \
             (ZE_SOFTWARE_DRIVER_LEAK_CHECK=report lists them)",
            leaks.len(),
            summary(leaks)
        );
        return;
    }
    eprintln!("ze-software-driver: leak: {heading}, {} objects still alive:", leaks.len());
    for leak in leaks {
        eprintln!("ze-software-driver: leak:   {}", leak.line);
    }
}

pub fn report_context_destroyed(handle: usize, context: &Arc<Context>) {
    if knobs().leak_check == LeakCheck::Off {
        return;
    }
    let leaks = live_objects(Some(context));
    if !leaks.is_empty() {
        print(&format!("context {handle:#x} destroyed"), &leaks);
    }
}

/// Reports everything still alive; returns whether there was anything.
pub fn report_at_unload() -> bool {
    if knobs().leak_check == LeakCheck::Off {
        return false;
    }
    let mut leaks = live_objects(None);
    let contexts = CONTEXTS.handles().into_iter();
    leaks.extend(contexts.map(|handle| Leak { kind: "context", bytes: 0, line: format!("context {handle:#x}") }));
    if !leaks.is_empty() {
        print("at unload", &leaks);
    }
    !leaks.is_empty()
}
