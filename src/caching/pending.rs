//! Blocks freed after use on streams, waiting for their events.
//!
//! Events recorded on one in-order stream complete in the order they were
//! recorded, so each stream keeps its own FIFO and only its oldest event is
//! polled. A stream that is held back stalls its own queue, never another
//! stream's (PyTorch's single queue stops at the first event not ready).

#[cfg(loom)]
use loom::sync::{atomic::AtomicUsize, Mutex};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
#[cfg(not(loom))]
use std::sync::{atomic::AtomicUsize, Mutex};

use super::backend::{StreamEvents, StreamKey};
use super::hash::IntegerMap;
use super::sync::lock;

struct Waiting<E> {
    event: E,
    block: u32,
}

pub(crate) struct PendingQueues<E> {
    queues: Mutex<IntegerMap<StreamKey, VecDeque<Waiting<E>>>>,
    /// Events in all queues, read without the lock to skip polling when there is nothing to poll.
    waiting: AtomicUsize,
}

impl<E> PendingQueues<E> {
    pub fn new() -> Self {
        PendingQueues { queues: Mutex::new(IntegerMap::default()), waiting: AtomicUsize::new(0) }
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.load(Ordering::Acquire) == 0
    }

    pub fn push(&self, stream: StreamKey, event: E, block: u32) {
        let mut queues = lock(&self.queues);
        queues.entry(stream).or_default().push_back(Waiting { event, block });
        self.waiting.fetch_add(1, Ordering::Release);
    }

    /// Pops every completed event at the front of each stream's queue, releases
    /// it, and calls `completed` with its block. An event whose query fails is
    /// treated as not complete: reusing memory too late is safe, too early is not.
    pub fn poll<B>(&self, backend: &B, mut completed: impl FnMut(u32))
    where
        B: StreamEvents<Event = E>,
    {
        if self.is_empty() {
            return;
        }
        let mut done = Vec::new();
        {
            let mut queues = lock(&self.queues);
            for queue in queues.values_mut() {
                while let Some(front) = queue.front() {
                    if !matches!(backend.is_complete(&front.event), Ok(true)) {
                        break;
                    }
                    done.extend(queue.pop_front());
                }
            }
            self.waiting.fetch_sub(done.len(), Ordering::Release);
        }
        for waiting in done {
            backend.release(waiting.event);
            completed(waiting.block);
        }
    }
}
