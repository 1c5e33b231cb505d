//! Commands, as recorded by command lists and run by workers.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::event::Event;
use crate::sync::Flag;

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
    /// Never of a counter-based event: the append refuses those.
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

/// A command handed to a worker, its events bound to the states they have
/// at submission (a counter-based event changes state with every submission
/// that signals it).
pub struct Submitted {
    wait: Vec<Arc<Flag>>,
    action: Action,
    signal: Option<Arc<Flag>>,
}

impl Command {
    /// Binds the command's events for a submission now: appended to an
    /// immediate list, or executed from a regular list. Commands of one
    /// submission are bound in order, so a later one waits on what an earlier
    /// one signals.
    pub fn submit(&self) -> Submitted {
        Submitted {
            wait: self.wait.iter().map(|event| event.state()).collect(),
            action: self.action.clone(),
            signal: self.signal.as_ref().map(|event| event.arm()),
        }
    }
}

impl Submitted {
    /// Runs the command on a worker; returns early, without acting or
    /// signalling, if the worker is asked to stop while waiting.
    pub fn run(self, stop: &AtomicBool) {
        if !self.wait.iter().all(|state| state.wait_unless_stopped(stop)) {
            return;
        }
        match self.action {
            Action::Nothing => {}
            Action::ResetEvent(event) => event.state().set(false),
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
        if let Some(state) = self.signal {
            state.set(true);
        }
    }
}
