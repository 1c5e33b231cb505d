//! The optional background thread that polls stream events, so that the
//! allocation path never does (`pinned_use_background_threads`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often events are polled while blocks wait for them (PyTorch polls every 100 µs).
const BUSY_INTERVAL: Duration = Duration::from_micros(100);
/// With nothing pending the thread sleeps until a free wakes it; this bounds a missed wake-up.
const IDLE_INTERVAL: Duration = Duration::from_millis(50);

/// What the thread works on.
pub(crate) trait Reclaim: Send + Sync + 'static {
    /// Polls once; true if blocks are still waiting.
    fn reclaim(&self) -> bool;
    /// The thread has ended: the allocation path polls again.
    fn stopped(&self);
}

/// A running reclaimer thread. Dropping it stops and joins the thread.
pub struct Reclaimer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    work: Weak<dyn Reclaim>,
}

impl Reclaimer {
    pub(crate) fn start<R: Reclaim>(work: Weak<R>) -> std::io::Result<Reclaimer> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let owner: Weak<dyn Reclaim> = work.clone();
        let thread = std::thread::Builder::new().name("xpu-host-reclaimer".into()).spawn(move || {
            while !stopping.load(Ordering::Acquire) {
                // The allocator may go away while the thread sleeps; then the thread ends.
                let Some(work) = work.upgrade() else { break };
                let busy = work.reclaim();
                drop(work);
                std::thread::park_timeout(if busy { BUSY_INTERVAL } else { IDLE_INTERVAL });
            }
        })?;
        Ok(Reclaimer { stop, thread: Some(thread), work: owner })
    }

    /// The thread, for waking it when blocks start waiting.
    pub(crate) fn thread(&self) -> Option<std::thread::Thread> {
        self.thread.as_ref().map(|handle| handle.thread().clone())
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            // A panic in the thread was its own; the allocator is still consistent.
            let _ = thread.join();
            if let Some(work) = self.work.upgrade() {
                work.stopped();
            }
        }
    }
}

impl Drop for Reclaimer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
