//! Memory history, as PyTorch's `record_history`: a ring of the most recent
//! trace entries (allocations, frees requested and completed, memory got
//! from and given back to the backend), each with an opaque context from
//! the caller's recorder, and the context each live block was allocated
//! with, for its segment.
//!
//! Off, it costs the hot paths nothing but the `watch` word they read
//! anyway. On, every allocation and free leaves the hot path, and each
//! entry is written under the history's lock. A context is gathered before
//! that lock is taken and released after it is let go: a recorder may take
//! locks of its own (Python's) or run long.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use super::block::{Block, BlockState};
use super::pools::PoolId;
use super::sync::lock;
use super::watch;
use super::{Backend, CachingAllocator, Error, StreamKey};

/// The caller's context recorder: `gather` makes a context (0: none) for the
/// allocation or free being recorded; `release` is told once for each
/// context gathered, when it is no longer kept.
pub trait Recorder: Send + Sync {
    fn gather(&self) -> usize;
    fn release(&self, context: usize);
}

/// A context a recorder gathered, released when the last holder drops it.
pub struct Context {
    value: usize,
    recorder: Arc<dyn Recorder>,
}

impl Context {
    pub fn value(&self) -> usize {
        self.value
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        self.recorder.release(self.value);
    }
}

/// When contexts are gathered: PyTorch's `RecordContext`, with its numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum RecordContext {
    Never = 0,
    /// For live blocks (segments) only.
    State = 1,
    /// Also in the trace entries of allocations.
    Alloc = 2,
    /// Also for frees.
    All = 3,
}

/// What a trace entry records: PyTorch's `TraceEntry::Action`, with its numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Action {
    Alloc = 0,
    FreeRequested = 1,
    FreeCompleted = 2,
    SegmentAlloc = 3,
    SegmentFree = 4,
}

#[derive(Clone)]
pub struct TraceEntry {
    pub action: Action,
    pub address: usize,
    pub size: usize,
    /// The current stream of an allocation routed while a capture was under way.
    pub stream: Option<StreamKey>,
    pub pool: PoolId,
    /// Microseconds since the Unix epoch.
    pub time_us: i64,
    pub context: Option<Arc<Context>>,
}

/// A block holding memory (PyTorch's host segment), or an external registration.
pub struct Segment {
    pub address: usize,
    pub size: usize,
    pub allocated: bool,
    /// Allocated, or waiting for events, or kept out of circulation.
    pub active: bool,
    pub pool: PoolId,
    pub context: Option<Arc<Context>>,
}

pub(super) struct History {
    /// `RecordContext` as a number, read before the lock.
    level: AtomicU8,
    /// Whether there is a recorder to gather contexts, read before the lock.
    gathers: AtomicBool,
    state: Mutex<Recording>,
}

#[derive(Default)]
struct Recording {
    recorder: Option<Arc<dyn Recorder>>,
    ring: VecDeque<Recorded>,
    max_entries: usize,
    /// The context each live block was allocated with, by block id.
    contexts: HashMap<u32, Arc<Context>>,
    /// Memory pinned outside the allocator: address, bytes and context.
    external: HashMap<usize, (usize, Option<Arc<Context>>)>,
}

impl Default for History {
    fn default() -> History {
        History {
            level: AtomicU8::new(RecordContext::Never as u8),
            gathers: AtomicBool::new(false),
            state: Mutex::new(Recording::default()),
        }
    }
}

/// An entry as kept: its time in clock ticks (`clock.rs`, cheaper to read
/// than the time of day), made microseconds since the epoch when read.
struct Recorded {
    entry: TraceEntry,
    ticks: u64,
}

/// What a recording step gives back to be dropped after the lock: contexts
/// whose release may call into the host.
type Dropped = Vec<Arc<Context>>;

impl Recording {
    fn push(&mut self, recorded: Recorded, dropped: &mut Dropped) {
        while self.ring.len() >= self.max_entries {
            match self.ring.pop_front() {
                Some(old) => dropped.extend(old.entry.context),
                None => break,
            }
        }
        self.ring.push_back(recorded);
    }
}

fn now_us() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

impl<B: Backend> CachingAllocator<B> {
    /// Turns recording on, keeping at most `max_entries` (> 0) entries, or
    /// off; `clear` drops the entries kept so far. Turning it on again
    /// replaces the recorder, the level and the maximum.
    pub fn record_history(
        &self,
        enabled: bool,
        max_entries: usize,
        when: RecordContext,
        recorder: Option<Arc<dyn Recorder>>,
        clear: bool,
    ) -> Result<(), Error> {
        if enabled && max_entries == 0 {
            return Err(Error::NoHistoryRoom);
        }
        let mut dropped = Dropped::new();
        let mut recording = lock(&self.history.state);
        if enabled {
            self.history.gathers.store(recorder.is_some(), Ordering::Relaxed);
            recording.recorder = recorder;
            recording.max_entries = max_entries;
            while recording.ring.len() > max_entries {
                dropped.extend(recording.ring.pop_front().and_then(|old| old.entry.context));
            }
            self.history.level.store(when as u8, Ordering::Relaxed);
            self.watch.fetch_or(watch::HISTORY, Ordering::Relaxed);
        } else {
            self.watch.fetch_and(!watch::HISTORY, Ordering::Relaxed);
            self.history.gathers.store(false, Ordering::Relaxed);
            self.history.level.store(RecordContext::Never as u8, Ordering::Relaxed);
            // Not kept up to date while off, so not kept.
            dropped.extend(recording.contexts.drain().map(|(_, context)| context));
            dropped.extend(recording.external.drain().filter_map(|(_, (_, context))| context));
        }
        if clear {
            dropped.extend(recording.ring.drain(..).filter_map(|old| old.entry.context));
        }
        drop(recording);
        drop(dropped);
        Ok(())
    }

    pub fn history_enabled(&self) -> bool {
        self.watch.load(Ordering::Relaxed) & watch::HISTORY != 0
    }

    /// The entries kept, oldest first.
    pub fn traces(&self) -> Vec<TraceEntry> {
        let recording = lock(&self.history.state);
        let (now_ticks, now) = self.clock_and_time();
        let micros = self.counters.clock.to_micros();
        let shown = |kept: &Recorded| TraceEntry {
            time_us: now.saturating_sub(micros(now_ticks.saturating_sub(kept.ticks))),
            ..kept.entry.clone()
        };
        recording.ring.iter().map(shown).collect()
    }

    /// The clock's ticks and the time of day at one moment: of a few tries,
    /// the pair read closest together (a thread preempted between the two
    /// reads would date every entry later by as long).
    fn clock_and_time(&self) -> (u64, i64) {
        let clock = &self.counters.clock;
        let read = || {
            let before = clock.ticks();
            let now = now_us();
            let after = clock.ticks();
            (after.saturating_sub(before), before + after.saturating_sub(before) / 2, now)
        };
        let (_, ticks, now) = (0..3).map(|_| read()).min_by_key(|&(spread, _, _)| spread).unwrap_or_else(read);
        (ticks, now)
    }

    /// Every block holding memory, then the external registrations.
    pub fn segments(&self) -> Vec<Segment> {
        let names = self.pool_names();
        let blocks: Vec<(u32, Segment)> = self
            .blocks
            .bound()
            .filter_map(|block| {
                let state = block.state();
                let allocated = matches!(state, BlockState::Allocated | BlockState::AllocatedOnStreams);
                let active = allocated || matches!(state, BlockState::Pending | BlockState::Retired);
                let segment = Segment {
                    address: block.address(),
                    size: block.size(),
                    allocated,
                    active,
                    pool: names.of(block),
                    context: None,
                };
                // A block going back to the backend right now is not listed.
                (state != BlockState::Releasing).then_some((block.id, segment))
            })
            .collect();
        let recording = lock(&self.history.state);
        let external = recording.external.iter().map(|(&address, (size, context))| Segment {
            address,
            size: *size,
            allocated: true,
            active: true,
            pool: PoolId::DEFAULT,
            context: context.clone(),
        });
        blocks
            .into_iter()
            .map(|(id, segment)| Segment { context: recording.contexts.get(&id).cloned(), ..segment })
            .chain(external)
            .collect()
    }

    /// A context from the recorder if recording gathers them at `level`.
    pub(super) fn gather(&self, level: RecordContext) -> Option<Arc<Context>> {
        if self.history.level.load(Ordering::Relaxed) < level as u8 || !self.history.gathers.load(Ordering::Relaxed) {
            return None;
        }
        let recorder = lock(&self.history.state).recorder.clone()?;
        let value = recorder.gather();
        (value != 0).then(|| Arc::new(Context { value, recorder }))
    }

    /// Records `action` on `block` (its address, size and pool); with
    /// `Action::Alloc` the block keeps `context` for its segment, and with
    /// `Action::FreeCompleted` or `Action::SegmentFree` it lets its own go.
    pub(super) fn record(
        &self,
        action: Action,
        block: &Block,
        stream: Option<StreamKey>,
        context: Option<Arc<Context>>,
    ) {
        let pool = self.pool_id(block.tag());
        let level = self.history.level.load(Ordering::Relaxed);
        let mut dropped = Dropped::new();
        let mut recording = lock(&self.history.state);
        if !self.history_enabled() {
            return;
        }
        // The context of a completed free is the one the block was allocated with.
        let context = match action {
            Action::FreeCompleted => context.or_else(|| recording.contexts.get(&block.id).cloned()),
            _ => context,
        };
        match action {
            Action::Alloc if level >= RecordContext::State as u8 => {
                dropped.extend(context.clone().and_then(|kept| recording.contexts.insert(block.id, kept)));
            }
            Action::FreeCompleted | Action::SegmentFree if !recording.contexts.is_empty() => {
                dropped.extend(recording.contexts.remove(&block.id));
            }
            _ => {}
        }
        let entry = self.entry(action, block.address(), block.size(), stream, pool, context);
        recording.push(entry, &mut dropped);
        drop(recording);
    }

    /// An entry made now, which keeps `context` only if recording keeps
    /// contexts in entries (`RecordContext::Alloc` and up).
    fn entry(
        &self,
        action: Action,
        address: usize,
        size: usize,
        stream: Option<StreamKey>,
        pool: PoolId,
        context: Option<Arc<Context>>,
    ) -> Recorded {
        let kept = self.history.level.load(Ordering::Relaxed) >= RecordContext::Alloc as u8;
        let context = context.filter(|_| kept);
        let entry = TraceEntry { action, address, size, stream, pool, time_us: 0, context };
        Recorded { entry, ticks: self.counters.clock.ticks() }
    }

    /// Memory pinned outside the allocator, recorded while history is on.
    pub fn record_external_register(&self, address: usize, size: usize) {
        if !self.history_enabled() {
            return;
        }
        let context = self.gather(RecordContext::State);
        let mut dropped = Dropped::new();
        let mut recording = lock(&self.history.state);
        let old = recording.external.insert(address, (size, context.clone()));
        dropped.extend(old.and_then(|(_, context)| context));
        for (action, context) in [(Action::SegmentAlloc, None), (Action::Alloc, context)] {
            let entry = self.entry(action, address, size, None, PoolId::DEFAULT, context);
            recording.push(entry, &mut dropped);
        }
    }

    /// The end of an external registration; an address never registered (or
    /// registered while history was off) is ignored, as PyTorch does.
    pub fn record_external_unregister(&self, address: usize) {
        let free_context = self.gather(RecordContext::All);
        let mut dropped = Dropped::new();
        let mut recording = lock(&self.history.state);
        let Some((size, context)) = recording.external.remove(&address) else { return };
        let actions =
            [(Action::FreeRequested, free_context), (Action::FreeCompleted, context), (Action::SegmentFree, None)];
        for (action, context) in actions {
            let entry = self.entry(action, address, size, None, PoolId::DEFAULT, context);
            recording.push(entry, &mut dropped);
        }
    }
}
