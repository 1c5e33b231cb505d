//! Workers: one thread per command queue or immediate command list that runs
//! its jobs in order, asynchronously to the host.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};

use level_zero_sys::*;

use crate::api::{misuse, ZeResult};
use crate::command::Submitted;
use crate::context::Context;
use crate::fence::Fence;
use crate::knobs::knobs;
use crate::memory::Memory;
use crate::sync::{lock, wait_while};

pub enum Job {
    /// An application's command; `ZE_SOFTWARE_DRIVER_COMMAND_LATENCY_US` delays it.
    Command(Submitted),
    SignalFence(Arc<Fence>),
    /// Holds memory freed with `DEFER_FREE` until the work before it has run.
    Release(Arc<Memory>),
}

impl Job {
    fn run(self, stop: &AtomicBool) {
        match self {
            Job::Command(command) => {
                thread::sleep(knobs().command_latency);
                command.run(stop);
            }
            Job::SignalFence(fence) => fence.signal(),
            Job::Release(memory) => drop(memory),
        }
    }
}

struct State {
    jobs: VecDeque<Job>,
    submitted: u64,
    completed: u64,
}

struct Shared {
    context: Arc<Context>,
    state: Mutex<State>,
    /// Notified when a job is submitted or completed, and on stop.
    changed: Condvar,
    /// Set when the worker must quit, abandoning the jobs not yet run.
    stop: AtomicBool,
}

/// A running worker, owned by its command queue or immediate command list;
/// dropping it stops and joins the thread.
pub struct Executor {
    shared: Arc<Shared>,
}

/// Every running worker, so that the unload can join them and free policies
/// can find the workers of a context.
static RUNNING: Mutex<Vec<(Arc<Shared>, JoinHandle<()>)>> = Mutex::new(Vec::new());

impl Executor {
    pub fn start(context: Arc<Context>) -> ZeResult<Self> {
        let shared = Arc::new(Shared {
            context,
            state: Mutex::new(State { jobs: VecDeque::new(), submitted: 0, completed: 0 }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let worker = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("ze-sw-worker".into())
            .spawn(move || work(&worker))
            .map_err(|_| ZE_RESULT_ERROR_OUT_OF_HOST_MEMORY)?;
        lock(&RUNNING).push((Arc::clone(&shared), thread));
        Ok(Self { shared })
    }

    /// Queues `jobs` as one batch, in order.
    pub fn submit(&self, jobs: impl IntoIterator<Item = Job>) {
        self.shared.submit(jobs);
    }

    /// Waits, with a Level Zero timeout, until the jobs submitted so far have run.
    pub fn wait_idle(&self, timeout_ns: u64) -> bool {
        self.shared.wait_idle(timeout_ns)
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        // Jobs not yet started: the one running may be one whose signal the
        // application has already seen, which is no misuse.
        let abandoned = lock(&self.shared.state).jobs.len();
        if abandoned > 0 {
            misuse(format_args!("destroyed with {abandoned} jobs not yet started; they are abandoned"));
        }
        let running = {
            let mut running = lock(&RUNNING);
            let index = running.iter().position(|(shared, _)| Arc::ptr_eq(shared, &self.shared));
            index.map(|index| running.swap_remove(index))
        };
        if let Some((shared, thread)) = running {
            shared.request_stop();
            // A worker only panics outside its jobs if the runtime is broken;
            // there is nothing left to clean up then.
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn submit(&self, jobs: impl IntoIterator<Item = Job>) {
        let mut state = lock(&self.state);
        for job in jobs {
            state.jobs.push_back(job);
            state.submitted += 1;
        }
        self.changed.notify_all();
    }

    fn wait_idle(&self, timeout_ns: u64) -> bool {
        let state = lock(&self.state);
        let target = state.submitted;
        let (state, _) = wait_while(&self.changed, state, timeout_ns, |state| {
            state.completed < target && !self.stop.load(Ordering::Acquire)
        });
        state.completed >= target
    }

    fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        // Under the lock, so that a worker between its check and its wait
        // cannot miss the notification.
        let _state = lock(&self.state);
        self.changed.notify_all();
    }
}

fn work(shared: &Shared) {
    loop {
        let job = {
            let state = lock(&shared.state);
            let (mut state, _) = wait_while(&shared.changed, state, u64::MAX, |state| {
                state.jobs.is_empty() && !shared.stop.load(Ordering::Acquire)
            });
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            match state.jobs.pop_front() {
                Some(job) => job,
                None => continue,
            }
        };
        // A panicking job must not end the worker: later waits would hang.
        let _ = catch_unwind(AssertUnwindSafe(|| job.run(&shared.stop)));
        lock(&shared.state).completed += 1;
        shared.changed.notify_all();
    }
}

fn workers_of(context: &Arc<Context>) -> Vec<Arc<Shared>> {
    lock(&RUNNING)
        .iter()
        .filter(|(shared, _)| Arc::ptr_eq(&shared.context, context))
        .map(|(shared, _)| Arc::clone(shared))
        .collect()
}

/// Blocks until every worker of `context` has run the work submitted before
/// this call (`BLOCKING_FREE`).
pub fn wait_for_context(context: &Arc<Context>) {
    for worker in workers_of(context) {
        worker.wait_idle(u64::MAX);
    }
}

/// Frees `memory` once every worker of `context` has run the work submitted
/// before this call (`DEFER_FREE`); at once if there is none.
pub fn release_after_context_work(context: &Arc<Context>, memory: Arc<Memory>) {
    for worker in workers_of(context) {
        worker.submit([Job::Release(Arc::clone(&memory))]);
    }
}

/// Stops and joins every worker, abandoning the jobs not yet run: the library
/// is about to be unloaded.
pub fn shutdown_all() {
    let running = std::mem::take(&mut *lock(&RUNNING));
    for (shared, _) in &running {
        shared.request_stop();
    }
    for (_, thread) in running {
        let _ = thread.join();
    }
}
