//! What a thread touches on the hot path: its own cache of recently freed
//! blocks (a short stack per size class) and its own share of the counters
//! that change on every allocation and free.
//!
//! The thread is the only writer of both, so the hot path takes no lock and
//! makes no read-modify-write of them: a cycle's only read-modify-writes are
//! the block's own, its claim when allocated and its free (block.rs). Other
//! threads only read them: statistics sum every thread's counters, and a
//! thread whose own cache misses, `empty_cache` and the cache cap take blocks
//! from other threads' stacks by claiming the entries there (exactly one taker
//! wins a claim; the owner skips the stale entry afterwards). So no cached
//! block is ever out of reach, and a thread that exits leaves its cache and
//! counters to the next thread that starts.

use std::cell::Cell;
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use super::block::{Claim, Entry};
use super::size_class::CLASS_COUNT;
use super::lock;
use super::stats::Stat;

/// Entries a thread keeps per size class (a batch of same-size tensors fits);
/// more go to the shards (shards.rs).
const DEPTH: usize = 16;
/// How many additions a thread makes at most between two reads of the sum.
const PEAK_CHECK_EVERY: i64 = 64;
/// Blocks wait for events: besides every miss, each thread polls at every
/// `POLL_EVERY`-th allocation while any wait (and no reclaimer does it), so
/// that a completed block comes back into use even while other cached blocks
/// keep serving hits, at a cost spread thin.
pub(crate) const POLL_EVERY: u32 = 32;

/// The gauges kept per thread and read as their sum.
#[derive(Clone, Copy)]
pub(crate) enum Hot {
    ActiveRequests = 0,
    ActiveBytes = 1,
    RequestedBytes = 2,
    CachedBytes = 3,
}

const HOT: usize = 4;

/// One thread's cache and counters. Every field is written by the owning
/// thread only (a load and a store, never a read-modify-write) and read by any.
#[repr(align(64))]
pub(crate) struct ThreadCache {
    /// One stack per size class, made on the class's first push (a thread
    /// uses a few classes of the hundreds there are).
    stacks: Box<[AtomicPtr<Stack>]>,
    /// This thread's share of each gauge (what it added less what it removed),
    /// and the total it added; what it removed is their difference.
    value: [AtomicI64; HOT],
    added: [AtomicI64; HOT],
    cache_hits: AtomicI64,
    /// The highest this thread's share of each gauge reached since the peaks
    /// were last checked against the sum.
    high_water: [AtomicI64; HOT],
    /// Additions since the sum was last read, to bound how long a peak can lag.
    since_check: AtomicI64,
    /// The peak reset this thread's high-water marks date from.
    peak_epoch: AtomicU64,
    /// Allocations that could have polled, for `poll_is_due`.
    allocations: AtomicU32,
    /// The next cache of the registry, which lists every cache it ever made.
    next: AtomicPtr<ThreadCache>,
}

/// Entries of one class, most recent last.
struct Stack {
    len: AtomicUsize,
    slots: [AtomicU64; DEPTH],
}

/// The most recent entry of a thread's stack, as `Local::top` found it.
pub(crate) struct Top<'a> {
    stack: &'a Stack,
    len: usize,
    pub entry: Entry,
}

impl Top<'_> {
    /// Removes the entry from the stack (only its thread changes the stack, so
    /// the entry is still on top).
    #[inline]
    pub fn pop(self) {
        self.stack.len.store(self.len - 1, Ordering::Release);
    }
}

impl ThreadCache {
    fn new() -> ThreadCache {
        ThreadCache {
            stacks: (0..CLASS_COUNT).map(|_| AtomicPtr::new(ptr::null_mut())).collect(),
            value: Default::default(),
            added: Default::default(),
            cache_hits: AtomicI64::new(0),
            high_water: Default::default(),
            since_check: AtomicI64::new(0),
            peak_epoch: AtomicU64::new(0),
            allocations: AtomicU32::new(0),
            next: AtomicPtr::new(ptr::null_mut()),
        }
    }

    #[inline]
    fn stack(&self, class: usize) -> Option<&Stack> {
        // SAFETY: a stack is made by `Local::stack_or_make` from `Box::into_raw`,
        // published with release, and freed only with the cache.
        unsafe { self.stacks[class].load(Ordering::Acquire).as_ref() }
    }

    /// The entries of list `class` as they are now (another thread may be changing them).
    fn entries(&self, class: usize) -> impl Iterator<Item = Entry> + '_ {
        self.stack(class).into_iter().flat_map(|stack| {
            let len = stack.len.load(Ordering::Acquire).min(DEPTH);
            stack.slots[..len].iter().map(|slot| Entry::unpack(slot.load(Ordering::Acquire)))
        })
    }

    fn share(&self, gauge: usize) -> i64 {
        self.value[gauge].load(Ordering::Relaxed)
    }
}

/// Every thread's cache for one allocator, and the peaks and reset baselines
/// of the gauges they hold.
pub(crate) struct ThreadCaches {
    /// Tells this allocator's caches from other allocators' in a thread's registrations.
    id: usize,
    registry: Arc<Registry>,
    /// The cache of threads whose thread-locals are gone (a free from another
    /// library's thread-local destructor): one writer at a time, under the lock.
    /// Not in the registry's list until first used, so that the sums a miss
    /// reads do not touch its cold counters in the common case it never is.
    shared: Box<ThreadCache>,
    shared_lock: Mutex<()>,
    shared_used: AtomicBool,
    peaks: [AtomicI64; HOT],
    /// Totals at the last reset of the accumulated statistics.
    baseline_added: [AtomicI64; HOT],
    baseline_removed: [AtomicI64; HOT],
    baseline_hits: AtomicI64,
    /// Counts peak resets; a thread whose marks are older rebases them.
    peak_epoch: AtomicU64,
}

/// Owns the caches. Threads hold it too, so that one that exits after the
/// allocator is gone can still give its cache back.
struct Registry {
    /// Every cache made, linked through `next`; freed only with the registry.
    head: AtomicPtr<ThreadCache>,
    /// Caches of threads that exited, for threads that start.
    idle: Mutex<Vec<&'static ThreadCache>>,
    /// Set when the allocator is dropped: threads forget their registrations then.
    closed: AtomicBool,
}

impl Registry {
    fn make(&self) -> &'static ThreadCache {
        let cache = Box::into_raw(Box::new(ThreadCache::new()));
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            // SAFETY: `cache` is ours until it is published by the exchange below.
            unsafe { (*cache).next.store(head, Ordering::Relaxed) };
            match self.head.compare_exchange(head, cache, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(actual) => head = actual,
            }
        }
        // SAFETY: caches are freed only when the registry drops, and nothing
        // reaches one after that: the allocator and every thread's registration
        // hold the registry.
        unsafe { &*cache }
    }

    fn take(&self) -> &'static ThreadCache {
        let idle = lock(&self.idle).pop();
        idle.unwrap_or_else(|| self.make())
    }

    fn caches(&self) -> impl Iterator<Item = &ThreadCache> {
        let mut next = self.head.load(Ordering::Acquire);
        std::iter::from_fn(move || {
            // SAFETY: listed caches live as long as the registry (see `make`).
            let cache = unsafe { next.as_ref()? };
            next = cache.next.load(Ordering::Acquire);
            Some(cache)
        })
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let mut next = *self.head.get_mut();
        while !next.is_null() {
            // SAFETY: every listed cache came from `Box::into_raw` in `make`, and
            // with the registry gone nothing else can reach it.
            let cache = unsafe { Box::from_raw(next) };
            next = cache.next.load(Ordering::Relaxed);
        }
    }
}

/// How many allocators' caches a thread holds at once; a thread that uses more
/// allocators than that (only tests make several) uses their shared caches.
const HELD: usize = 4;

/// One cache a thread holds: its allocator's id, its registry (a counted
/// reference from `Arc::into_raw`) and the cache.
type Held = (usize, *const Registry, *const ThreadCache);

const NOT_HELD: Held = (0, ptr::null(), ptr::null());

// None of these has a destructor, so reaching them stays cheap and they stay
// usable while the thread exits; the caches go back through a pthread key's
// destructor instead (`give_back`), which runs after the thread's C++ and Rust
// thread-local destructors, so frees from those still find the thread's cache.
thread_local! {
    /// The cache of the allocator this thread used last (allocator ids start at 1).
    static LAST: Cell<(usize, *const ThreadCache)> = const { Cell::new((0, ptr::null())) };
    static HOLDS: [Cell<Held>; HELD] = const { [const { Cell::new(NOT_HELD) }; HELD] };
    /// Set once the caches went back: calls made later on the thread use the shared ones.
    static EXITED: Cell<bool> = const { Cell::new(false) };
}

/// The key whose destructor gives a thread's caches back when it exits; `None`
/// if the process is out of keys (every thread then uses the shared caches).
fn exit_key() -> Option<libc::pthread_key_t> {
    static KEY: OnceLock<Option<libc::pthread_key_t>> = OnceLock::new();
    *KEY.get_or_init(|| {
        let mut key = 0;
        // SAFETY: `key` is a valid place for the new key; `give_back` is an
        // extern "C" function that takes the value set for a thread.
        (unsafe { libc::pthread_key_create(&mut key, Some(give_back)) } == 0).then_some(key)
    })
}

extern "C" fn give_back(_value: *mut c_void) {
    let _ = EXITED.try_with(|exited| exited.set(true));
    let _ = LAST.try_with(|last| last.set((0, ptr::null())));
    let _ = HOLDS.try_with(|holds| {
        for slot in holds {
            let (_, registry, cache) = slot.replace(NOT_HELD);
            if !registry.is_null() {
                // SAFETY: `registry` came from `Arc::into_raw` when the slot was
                // filled, and the slot was the only owner of that count.
                let registry = unsafe { Arc::from_raw(registry) };
                // SAFETY: the cache belongs to that registry, alive while we hold it.
                lock(&registry.idle).push(unsafe { &*cache });
            }
        }
    });
}

/// The calling thread's cache, which it alone may change while it holds this:
/// its own, or the shared one under the lock.
pub(crate) struct Local<'a> {
    cache: &'a ThreadCache,
    _shared: Option<MutexGuard<'a, ()>>,
}

impl std::ops::Deref for Local<'_> {
    type Target = ThreadCache;
    #[inline]
    fn deref(&self) -> &ThreadCache {
        self.cache
    }
}

impl ThreadCaches {
    pub fn new() -> ThreadCaches {
        static NEXT_ID: AtomicUsize = AtomicUsize::new(1);
        let registry =
            Arc::new(Registry { head: AtomicPtr::new(ptr::null_mut()), idle: Mutex::new(Vec::new()), closed: AtomicBool::new(false) });
        let shared = Box::new(ThreadCache::new());
        ThreadCaches {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            registry,
            shared,
            shared_lock: Mutex::new(()),
            shared_used: AtomicBool::new(false),
            peaks: Default::default(),
            baseline_added: Default::default(),
            baseline_removed: Default::default(),
            baseline_hits: AtomicI64::new(0),
            peak_epoch: AtomicU64::new(0),
        }
    }

    /// The calling thread's cache.
    #[inline]
    pub fn local(&self) -> Local<'_> {
        match LAST.try_with(Cell::get) {
            // SAFETY: the id is this allocator's, so the cache is in its registry,
            // which lives as long as `self`; the thread registered it as its own.
            Ok((id, cache)) if id == self.id => Local { cache: unsafe { &*cache }, _shared: None },
            _ => self.register(),
        }
    }

    #[cold]
    fn register(&self) -> Local<'_> {
        match self.hold() {
            Some(cache) => {
                let _ = LAST.try_with(|last| last.set((self.id, cache)));
                // SAFETY: the thread holds the cache (see `hold`), so its registry lives.
                Local { cache: unsafe { &*cache }, _shared: None }
            }
            None => {
                let guard = lock(&self.shared_lock);
                self.shared_used.store(true, Ordering::Release);
                Local { cache: &self.shared, _shared: Some(guard) }
            }
        }
    }

    /// The calling thread's cache of this allocator, taking one if it holds
    /// none; `None` if it cannot hold one (it is exiting, or holds as many as it may).
    fn hold(&self) -> Option<*const ThreadCache> {
        if EXITED.try_with(Cell::get).unwrap_or(true) {
            return None;
        }
        let key = exit_key()?;
        HOLDS.try_with(|holds| {
            if let Some(slot) = holds.iter().find(|slot| slot.get().0 == self.id) {
                return Some(slot.get().2);
            }
            // Caches of allocators that are gone go back to make room.
            for slot in holds {
                let (_, registry, _) = slot.get();
                // SAFETY: a filled slot holds a count of its registry.
                if !registry.is_null() && unsafe { &*registry }.closed.load(Ordering::Relaxed) {
                    // SAFETY: the slot's count, given up as the slot is emptied.
                    drop(unsafe { Arc::from_raw(slot.replace(NOT_HELD).1) });
                }
            }
            let slot = holds.iter().find(|slot| slot.get().1.is_null())?;
            // SAFETY: a non-null value makes the thread's exit run `give_back`.
            if unsafe { libc::pthread_setspecific(key, ptr::NonNull::<c_void>::dangling().as_ptr()) } != 0 {
                return None;
            }
            let cache: *const ThreadCache = self.registry.take();
            slot.set((self.id, Arc::into_raw(self.registry.clone()), cache));
            Some(cache)
        })
        .ok()
        .flatten()
    }

    /// Every cache, the calling thread's among them.
    pub fn caches(&self) -> impl Iterator<Item = &ThreadCache> {
        let shared = self.shared_used.load(Ordering::Acquire).then_some(&*self.shared);
        self.registry.caches().chain(shared)
    }

    /// Entries of `class` in every cache but `own`, as they are now.
    pub fn others_entries<'a>(&'a self, own: &'a ThreadCache, class: usize) -> impl Iterator<Item = Entry> + 'a {
        self.caches().filter(move |cache| !ptr::eq(*cache, own)).flat_map(move |cache| cache.entries(class))
    }

    /// Every entry in every cache, as they are now.
    pub fn all_entries(&self) -> Vec<Entry> {
        self.caches().flat_map(|cache| (0..CLASS_COUNT).flat_map(move |class| cache.entries(class))).collect()
    }

    fn sum(&self, of: impl Fn(&ThreadCache) -> i64) -> i64 {
        self.caches().map(of).sum()
    }

    pub fn current_value(&self, gauge: Hot) -> i64 {
        self.sum(|cache| cache.share(gauge as usize))
    }

    pub fn stat(&self, gauge: Hot) -> Stat {
        let gauge = gauge as usize;
        let added = self.sum(|cache| cache.added[gauge].load(Ordering::Relaxed));
        let current = self.sum(|cache| cache.share(gauge));
        let removed = added - current;
        Stat {
            current,
            // A reset raced by a concurrent change may leave the peak a little behind.
            peak: self.peaks[gauge].load(Ordering::Relaxed).max(current),
            allocated: added - self.baseline_added[gauge].load(Ordering::Relaxed),
            freed: removed - self.baseline_removed[gauge].load(Ordering::Relaxed),
        }
    }

    pub fn cache_hits(&self) -> i64 {
        self.sum(|cache| cache.cache_hits.load(Ordering::Relaxed)) - self.baseline_hits.load(Ordering::Relaxed)
    }

    pub fn reset_peaks(&self) {
        self.peak_epoch.fetch_add(1, Ordering::Relaxed);
        for gauge in 0..HOT {
            self.peaks[gauge].store(self.sum(|cache| cache.share(gauge)), Ordering::Relaxed);
        }
    }

    /// Zeroes the totals (as seen in `stat`), keeping each gauge's current value:
    /// the threads' counters stay as they are, the totals now count from here.
    pub fn reset_totals(&self) {
        for gauge in 0..HOT {
            let added = self.sum(|cache| cache.added[gauge].load(Ordering::Relaxed));
            let removed = added - self.sum(|cache| cache.share(gauge));
            self.baseline_added[gauge].store(added, Ordering::Relaxed);
            self.baseline_removed[gauge].store(removed, Ordering::Relaxed);
        }
        self.baseline_hits.store(self.sum(|cache| cache.cache_hits.load(Ordering::Relaxed)), Ordering::Relaxed);
    }

    fn raise_peak(&self, gauge: usize) {
        let now = self.sum(|cache| cache.share(gauge));
        let peak = &self.peaks[gauge];
        if now > peak.load(Ordering::Relaxed) {
            peak.fetch_max(now, Ordering::Relaxed);
        }
    }
}

impl Drop for ThreadCaches {
    fn drop(&mut self) {
        self.registry.closed.store(true, Ordering::Relaxed);
    }
}

impl Drop for ThreadCache {
    fn drop(&mut self) {
        for stack in self.stacks.iter_mut() {
            let stack = *stack.get_mut();
            if !stack.is_null() {
                // SAFETY: made by `Box::into_raw` and owned by this cache alone now.
                drop(unsafe { Box::from_raw(stack) });
            }
        }
    }
}

impl Local<'_> {
    /// The stack of list `class`, made on first use.
    #[inline]
    fn stack_or_make(&self, class: usize) -> &Stack {
        if let Some(stack) = self.stack(class) {
            return stack;
        }
        let stack = Box::into_raw(Box::new(Stack { len: AtomicUsize::new(0), slots: Default::default() }));
        // Only this thread writes its stacks, so nobody else can have made it meanwhile.
        self.stacks[class].store(stack, Ordering::Release);
        // SAFETY: just made; freed only with the cache.
        unsafe { &*stack }
    }

    /// The most recent entry of list `class`, left in place until popped.
    #[inline]
    pub fn top(&self, class: usize) -> Option<Top<'_>> {
        let stack = self.stack(class)?;
        let len = stack.len.load(Ordering::Relaxed);
        let slot = stack.slots.get(len.checked_sub(1)?)?;
        Some(Top { stack, len, entry: Entry::unpack(slot.load(Ordering::Relaxed)) })
    }

    /// Empties every stack of this thread's (their entries are the caller's to deal with).
    pub fn clear(&self) {
        for class in 0..CLASS_COUNT {
            if let Some(stack) = self.stack(class) {
                stack.len.store(0, Ordering::Release);
            }
        }
    }

    /// Counts an allocation that could poll; true at every `POLL_EVERY`-th.
    #[inline]
    pub fn poll_is_due(&self) -> bool {
        let next = self.allocations.load(Ordering::Relaxed).wrapping_add(1);
        self.allocations.store(next, Ordering::Relaxed);
        next % POLL_EVERY == 0
    }

    /// The most recent entry of list `class` that `offer` takes, dropping the
    /// stale ones it meets.
    #[inline]
    pub fn take(&self, class: usize, mut offer: impl FnMut(Entry) -> Claim) -> Option<Entry> {
        let stack = self.stack(class)?;
        let mut len = stack.len.load(Ordering::Relaxed);
        let mut position = len;
        let mut taken = None;
        while position > 0 && taken.is_none() {
            position -= 1;
            let entry = Entry::unpack(stack.slots[position].load(Ordering::Relaxed));
            match offer(entry) {
                Claim::Skip => continue,
                Claim::Taken => taken = Some(entry),
                Claim::Stale => {}
            }
            // Close the gap: entries above move down one.
            for above in position + 1..len {
                stack.slots[above - 1].store(stack.slots[above].load(Ordering::Relaxed), Ordering::Relaxed);
            }
            len -= 1;
        }
        stack.len.store(len, Ordering::Release);
        taken
    }

    /// Pushes an entry onto list `class`. When the list is full of entries
    /// `is_current` keeps, the oldest makes room and is returned (the caller
    /// puts it elsewhere), so the stack always holds the most recent.
    #[inline(always)]
    pub fn push(&self, class: usize, entry: Entry, is_current: impl Fn(Entry) -> bool) -> Option<Entry> {
        let stack = self.stack_or_make(class);
        let mut len = stack.len.load(Ordering::Relaxed);
        let mut evicted = None;
        if len == DEPTH {
            // Entries claimed through other lists since are dead weight: drop them.
            let mut kept = 0;
            for position in 0..len {
                let word = stack.slots[position].load(Ordering::Relaxed);
                if is_current(Entry::unpack(word)) {
                    stack.slots[kept].store(word, Ordering::Relaxed);
                    kept += 1;
                }
            }
            len = kept;
            if len == DEPTH {
                evicted = Some(Entry::unpack(stack.slots[0].load(Ordering::Relaxed)));
                for position in 1..DEPTH {
                    stack.slots[position - 1].store(stack.slots[position].load(Ordering::Relaxed), Ordering::Relaxed);
                }
                len -= 1;
            }
        }
        stack.slots[len].store(entry.pack(), Ordering::Release);
        stack.len.store(len + 1, Ordering::Release);
        evicted
    }

    /// Adds to gauges, then raises their peaks.
    ///
    /// Reading every thread's counters on every allocation would make threads
    /// share cache lines, so the sum is read only when this thread's share of a
    /// gauge passes its high-water mark, or at every `PEAK_CHECK_EVERY`-th
    /// addition. With one thread allocating every new peak is a new high-water
    /// mark, so peaks are exact; with several, a peak may lag a momentary
    /// maximum that no thread's own growth reached, by at most that many additions.
    #[inline(always)]
    pub fn add(&self, caches: &ThreadCaches, changes: &[(Hot, i64)]) {
        let epoch = caches.peak_epoch.load(Ordering::Relaxed);
        let rebase = self.peak_epoch.load(Ordering::Relaxed) != epoch;
        if rebase {
            // The peaks were reset: marks from before mean nothing now.
            for gauge in 0..HOT {
                self.high_water[gauge].store(self.share(gauge), Ordering::Relaxed);
            }
            self.peak_epoch.store(epoch, Ordering::Relaxed);
        }
        let since_check = self.since_check.load(Ordering::Relaxed) + 1;
        let due = rebase || since_check >= PEAK_CHECK_EVERY;
        self.since_check.store(if due { 0 } else { since_check }, Ordering::Relaxed);
        for &(gauge, amount) in changes {
            let gauge = gauge as usize;
            bump(&self.added[gauge], amount);
            let share = bump(&self.value[gauge], amount);
            let high_water = &self.high_water[gauge];
            if share > high_water.load(Ordering::Relaxed) || due {
                high_water.store(share.max(high_water.load(Ordering::Relaxed)), Ordering::Relaxed);
                caches.raise_peak(gauge);
            }
        }
    }

    #[inline]
    pub fn remove(&self, changes: &[(Hot, i64)]) {
        for &(gauge, amount) in changes {
            bump(&self.value[gauge as usize], -amount);
        }
    }

    #[inline]
    pub fn hit(&self) {
        bump(&self.cache_hits, 1);
    }
}

/// Adds to a counter only its thread writes (no read-modify-write needed);
/// returns the new value.
#[inline]
fn bump(counter: &AtomicI64, amount: i64) -> i64 {
    let value = counter.load(Ordering::Relaxed) + amount;
    counter.store(value, Ordering::Relaxed);
    value
}

