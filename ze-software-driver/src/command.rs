//! Commands, as recorded by command lists and run by workers.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::event::Event;

/// One appended command: wait for `wait`, do `action`, then signal `signal`.
/// Workers run commands in order, so every command also waits for the ones
/// before it.
#[derive(Clone)]
pub struct Command {
    pub wait: Vec<Arc<Event>>,
    pub action: Action,
    pub signal: Option<Arc<Event>>,
}

#[derive(Clone)]
pub enum Action {
    /// Barriers, signals and waits: only the events matter.
    Nothing,
    ResetEvent(Arc<Event>),
    /// Addresses as integers: they belong to the application, which keeps
    /// them valid until the command has run.
    Copy {
        destination: usize,
        source: usize,
        size: usize,
    },
    Fill {
        destination: usize,
        pattern: Vec<u8>,
        size: usize,
    },
}

impl Command {
    /// Runs the command on a worker; returns early, without acting or
    /// signalling, if the worker is asked to stop while waiting.
    pub fn run(self, stop: &AtomicBool) {
        if !self.wait.iter().all(|event| event.wait_unless_stopped(stop)) {
            return;
        }
        match self.action {
            Action::Nothing => {}
            Action::ResetEvent(event) => event.reset(),
            Action::Copy { destination, source, size } => {
                // SAFETY: the application keeps both ranges valid for `size`
                // bytes until the command has run (zeCommandListAppendMemoryCopy);
                // `copy` tolerates overlap.
                unsafe { std::ptr::copy(source as *const u8, destination as *mut u8, size) }
            }
            Action::Fill { destination, pattern, size } => {
                // SAFETY: the application keeps the range valid for writes of
                // `size` bytes until the command has run (zeCommandListAppendMemoryFill).
                let bytes = unsafe { std::slice::from_raw_parts_mut(destination as *mut u8, size) };
                for chunk in bytes.chunks_mut(pattern.len()) {
                    chunk.copy_from_slice(&pattern[..chunk.len()]);
                }
            }
        }
        if let Some(event) = self.signal {
            event.signal();
        }
    }
}
