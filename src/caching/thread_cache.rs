//! What a thread touches on the hot path: its own cache of recently freed
//! blocks (a short stack per size class) and its own share of the counters
//! that change on every allocation and free.
//!
//! The thread is the only writer of both, so the hot path takes no lock and
//! makes no read-modify-write of them: a cycle's only read-modify-writes are
//! the block's own, its claim when allocated and its free (block.rs). Other
//! threads only read them (a peak reset also lowers the marks the peaks are
//! checked at): statistics sum every thread's counters, and a
//! thread whose own cache misses, `empty_cache` and the cache cap take blocks
//! from other threads' stacks by claiming the entries there (exactly one taker
//! wins a claim; the owner skips the stale entry afterwards). So no cached
//! block is ever out of reach, and a thread that exits leaves its cache and
//! counters to the next thread that starts.

use std::cell::Cell;
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use super::block::{Block, Claim, Entry};
use super::size_class::CLASS_COUNT;
use super::stats::Stat;
use super::{lock, thread_slot};

/// Entries a thread keeps per size class (a batch of same-size tensors fits);
/// more go to the shards (shards.rs).
const DEPTH: usize = 16;
/// While blocks wait for events (and no reclaimer polls), every
/// `POLL_EVERY`-th allocation of a thread polls them, so that a completed
/// block comes back into use even while other cached blocks keep serving hits.
pub(crate) const POLL_EVERY: i64 = 32;
/// Every `PEAK_CHECK_EVERY`-th allocation of a thread checks the peaks against
/// the sum of every thread's counters (see `Mine::add`). It reads the lines
/// other threads write, a cache miss each (about 100 ns here), so it is rarer
/// than the poll: a fraction of a nanosecond per allocation.
pub(crate) const PEAK_CHECK_EVERY: i64 = 256;

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
/// thread only (a load and a store, never a read-modify-write), except that a
/// peak reset lowers the high-water marks, and read by any. Aligned to a
/// pair of cache lines, as blocks are (block.rs): with 64 bytes, two threads
/// cycling blocks on their own caches ran at 1.3x one thread, with 128 at 1.75x.
#[repr(align(128))]
pub(crate) struct ThreadCache {
    /// This thread's share of each gauge (what it added less what it removed),
    /// and the total it added; what it removed is their difference. The
    /// total added to `ActiveRequests` counts the thread's allocations.
    value: [AtomicI64; HOT],
    added: [AtomicI64; HOT],
    /// The highest this thread's share of each gauge reached since the peaks
    /// were last checked against the sum (`i64::MIN` after a peak reset).
    high_water: [AtomicI64; HOT],
    /// The next cache of the registry, which lists every cache it ever made.
    next: AtomicPtr<ThreadCache>,
    /// One stack per size class, inline, so that the hot path finds a stack
    /// at an address computed from the cache's rather than loaded. That makes
    /// a cache 144 KiB of zeroed memory (when the system maps it fresh, a
    /// thread touches only the pages of the few classes it uses).
    stacks: [Stack; CLASS_COUNT],
}

/// Entries of one class, most recent last.
///
/// `top` repeats the most recent slot, in the line that holds `len`, so
/// that an allocation reads its block without first reading `len` to find
/// the slot: one dependent load less before the claim. Aligned so that the
/// two never straddle lines. Only the owner reads `top`; others read `slots`.
#[repr(C, align(32))]
struct Stack {
    len: AtomicUsize,
    top: Slot,
    slots: [Slot; DEPTH],
}

impl Stack {
    /// Puts an entry into the slot at `len`, the first free one, and on top.
    #[inline(always)]
    fn push_at(&self, len: usize, entry: Entry, block: &Block) {
        let Some(slot) = self.slots.get(len) else { return };
        let (entry, block) = (entry.pack(), block as *const Block as *mut Block);
        slot.set(entry, block);
        self.top.set(entry, block);
        self.len.store(len + 1, Ordering::Release);
    }

    /// Sets the length, and `top` to the slot that is now the most recent.
    #[inline(always)]
    fn set_len(&self, len: usize) {
        if let Some(slot) = self.slots.get(len.wrapping_sub(1)) {
            self.top.copy_from(slot);
        }
        self.len.store(len, Ordering::Release);
    }
}

/// An entry, and for its owner the block it names (which others find through the arena).
#[derive(Default)]
struct Slot {
    entry: AtomicU64,
    block: AtomicPtr<Block>,
}

impl Slot {
    /// The block first: a reader that sees the entry (acquire) sees its block.
    #[inline(always)]
    fn set(&self, entry: u64, block: *mut Block) {
        self.block.store(block, Ordering::Relaxed);
        self.entry.store(entry, Ordering::Release);
    }

    fn copy_from(&self, other: &Slot) {
        self.set(other.entry.load(Ordering::Relaxed), other.block.load(Ordering::Relaxed));
    }
}

/// The most recent entry of a thread's stack, as `Mine::top` found it.
pub(crate) struct Top<'a> {
    stack: &'a Stack,
    len: usize,
    pub entry: Entry,
    pub block: &'a Block,
}

/// Room on top of a thread's stack, as `Mine::room` found it.
pub(crate) struct Room<'a> {
    stack: &'a Stack,
    len: usize,
}

impl Room<'_> {
    /// Pushes `block`'s entry (only its thread changes the stack, so the room is still there).
    #[inline(always)]
    pub fn push(self, entry: Entry, block: &Block) {
        self.stack.push_at(self.len, entry, block);
    }
}

impl Top<'_> {
    /// Removes the entry from the stack (only its thread changes the stack, so
    /// the entry is still on top).
    #[inline]
    pub fn pop(&self) {
        self.stack.set_len(self.len.wrapping_sub(1));
    }

    /// Puts the entry back after `pop` (its block unclaimed, see `Block::unclaim`).
    #[inline]
    pub fn restore(&self) {
        self.stack.set_len(self.len);
    }
}

impl ThreadCache {
    /// Made in place: too large to build on a thread's stack first.
    fn new() -> Box<ThreadCache> {
        let layout = std::alloc::Layout::new::<ThreadCache>();
        // SAFETY: zero is a valid value of every field (atomics and arrays of
        // them), and the block has the type's layout.
        unsafe {
            let raw = std::alloc::alloc_zeroed(layout);
            if raw.is_null() {
                // What `Box::new` does when the heap is exhausted.
                std::alloc::handle_alloc_error(layout);
            }
            Box::from_raw(raw.cast::<ThreadCache>())
        }
    }

    #[inline]
    fn stack(&self, class: usize) -> Option<&Stack> {
        self.stacks.get(class)
    }

    /// The entries of list `class` as they are now (another thread may be changing them).
    fn entries(&self, class: usize) -> impl Iterator<Item = Entry> + '_ {
        self.stack(class).into_iter().flat_map(|stack| {
            let len = stack.len.load(Ordering::Acquire).min(DEPTH);
            stack.slots[..len].iter().map(|slot| Entry::unpack(slot.entry.load(Ordering::Acquire)))
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
        let cache = Box::into_raw(ThreadCache::new());
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

// The cache of the allocator this thread used last is in its slot
// (thread_slot.rs; allocator ids start at 1). None of these has a destructor,
// so they stay usable while the thread exits; the caches go back through a
// pthread key's destructor instead (`give_back`), which runs after the
// thread's C++ and Rust thread-local destructors, so frees from those still
// find the thread's cache.
thread_local! {
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
    thread_slot::set((0, ptr::null()));
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

/// A cache that the calling thread alone changes while it holds this.
#[derive(Clone, Copy)]
pub(crate) struct Mine<'a>(&'a ThreadCache);

impl std::ops::Deref for Mine<'_> {
    type Target = ThreadCache;
    #[inline]
    fn deref(&self) -> &ThreadCache {
        self.0
    }
}

/// The calling thread's cache: its own, or the shared one under the lock.
pub(crate) struct Local<'a> {
    mine: Mine<'a>,
    _shared: Option<MutexGuard<'a, ()>>,
}

impl<'a> std::ops::Deref for Local<'a> {
    type Target = Mine<'a>;
    #[inline]
    fn deref(&self) -> &Mine<'a> {
        &self.mine
    }
}

impl ThreadCaches {
    pub fn new() -> ThreadCaches {
        static NEXT_ID: AtomicUsize = AtomicUsize::new(1);
        let registry = Arc::new(Registry {
            head: AtomicPtr::new(ptr::null_mut()),
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        });
        let shared = ThreadCache::new();
        ThreadCaches {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            registry,
            shared,
            shared_lock: Mutex::new(()),
            shared_used: AtomicBool::new(false),
            peaks: Default::default(),
            baseline_added: Default::default(),
            baseline_removed: Default::default(),
        }
    }

    /// The calling thread's own cache, if it used this allocator last.
    #[inline(always)]
    pub fn mine(&self) -> Option<Mine<'_>> {
        let (id, cache) = thread_slot::get();
        // SAFETY: the id is this allocator's, so the cache is in its registry,
        // which lives as long as `self`; the thread registered it as its own.
        (id == self.id).then(|| Mine(unsafe { &*cache.cast::<ThreadCache>() }))
    }

    /// The calling thread's cache.
    #[inline]
    pub fn local(&self) -> Local<'_> {
        match self.mine() {
            Some(mine) => Local { mine, _shared: None },
            None => self.register(),
        }
    }

    #[cold]
    fn register(&self) -> Local<'_> {
        match self.hold() {
            Some(cache) => {
                thread_slot::set((self.id, cache.cast()));
                // SAFETY: the thread holds the cache (see `hold`), so its registry lives.
                Local { mine: Mine(unsafe { &*cache }), _shared: None }
            }
            None => {
                let guard = lock(&self.shared_lock);
                self.shared_used.store(true, Ordering::Release);
                Local { mine: Mine(&self.shared), _shared: Some(guard) }
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
        HOLDS
            .try_with(|holds| {
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

    /// Wrapping, so that the hot path's peak checks cannot panic.
    fn sum(&self, of: impl Fn(&ThreadCache) -> i64) -> i64 {
        self.caches().fold(0, |sum, cache| sum.wrapping_add(of(cache)))
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

    /// Sets each peak to the gauge's value. The threads' marks start over, so
    /// that each thread's next addition checks the new peaks (a thread
    /// raising its mark at that moment may keep its old one: its peaks then
    /// lag until its next `PEAK_CHECK_EVERY`-th allocation).
    pub fn reset_peaks(&self) {
        for cache in self.caches() {
            for mark in &cache.high_water {
                mark.store(i64::MIN, Ordering::Relaxed);
            }
        }
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
    }

    /// Raises every peak to its gauge's sum, reading each cache once: at the
    /// `PEAK_CHECK_EVERY`-th allocation, and when a thread's share passes its mark.
    #[inline(always)]
    pub fn raise_peaks(&self) {
        let mut sums = [0i64; HOT];
        for cache in self.caches() {
            for (sum, gauge) in sums.iter_mut().zip(0..HOT) {
                *sum = sum.wrapping_add(cache.share(gauge));
            }
        }
        for (gauge, sum) in sums.into_iter().enumerate() {
            self.raise_peak_to(gauge, sum);
        }
    }

    #[inline(always)]
    fn raise_peak_to(&self, gauge: usize, now: i64) {
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

impl<'a> Mine<'a> {
    /// Room for one more entry on list `class`, if its stack is not full.
    #[inline(always)]
    pub fn room(self, class: usize) -> Option<Room<'a>> {
        let stack = self.0.stack(class)?;
        let len = stack.len.load(Ordering::Relaxed);
        (len < DEPTH).then_some(Room { stack, len })
    }

    /// The most recent entry of list `class`, left in place until popped.
    #[inline(always)]
    pub fn top(self, class: usize) -> Option<Top<'a>> {
        let stack = self.0.stack(class)?;
        let len = stack.len.load(Ordering::Relaxed);
        if len == 0 {
            return None;
        }
        let entry = Entry::unpack(stack.top.entry.load(Ordering::Relaxed));
        // SAFETY: with entries on the stack, `top` is the most recent, which
        // this thread pushed with the `&Block` its entry names; blocks live in
        // the allocator's arena, which outlives its caches' borrows.
        let block = unsafe { &*stack.top.block.load(Ordering::Relaxed) };
        Some(Top { stack, len, entry, block })
    }

    /// Empties every stack of this thread's (their entries are the caller's to deal with).
    pub fn clear(self) {
        for class in 0..CLASS_COUNT {
            if let Some(stack) = self.0.stack(class) {
                stack.set_len(0);
            }
        }
    }

    /// The most recent entry of list `class` that `offer` takes, dropping the
    /// stale ones it meets.
    #[inline]
    pub fn take(self, class: usize, mut offer: impl FnMut(Entry) -> Claim) -> Option<Entry> {
        let stack = self.0.stack(class)?;
        let mut len = stack.len.load(Ordering::Relaxed);
        let mut position = len;
        let mut taken = None;
        while position > 0 && taken.is_none() {
            position -= 1;
            let entry = Entry::unpack(stack.slots[position].entry.load(Ordering::Relaxed));
            match offer(entry) {
                Claim::Skip => continue,
                Claim::Taken => taken = Some(entry),
                Claim::Stale => {}
            }
            // Close the gap: entries above move down one.
            for above in position + 1..len {
                stack.slots[above - 1].copy_from(&stack.slots[above]);
            }
            len -= 1;
        }
        stack.set_len(len);
        taken
    }

    /// Pushes `block`'s entry onto list `class`. When the list is full of
    /// entries `is_current` keeps, the oldest makes room and is returned (the
    /// caller puts it elsewhere), so the stack always holds the most recent.
    #[inline(always)]
    pub fn push(self, class: usize, entry: Entry, block: &Block, is_current: impl Fn(Entry) -> bool) -> Option<Entry> {
        let stack = &self.0.stacks[class];
        let mut len = stack.len.load(Ordering::Relaxed);
        let mut evicted = None;
        if len == DEPTH {
            // Entries claimed through other lists since are dead weight: drop them.
            let mut kept = 0;
            for position in 0..len {
                if is_current(Entry::unpack(stack.slots[position].entry.load(Ordering::Relaxed))) {
                    stack.slots[kept].copy_from(&stack.slots[position]);
                    kept += 1;
                }
            }
            len = kept;
            if len == DEPTH {
                evicted = Some(Entry::unpack(stack.slots[0].entry.load(Ordering::Relaxed)));
                for position in 1..DEPTH {
                    stack.slots[position - 1].copy_from(&stack.slots[position]);
                }
                len -= 1;
            }
        }
        stack.push_at(len, entry, block);
        evicted
    }

    /// The number of the thread's next allocation, for the cadences above.
    #[inline(always)]
    pub fn next_allocation(self) -> i64 {
        self.added[Hot::ActiveRequests as usize].load(Ordering::Relaxed).wrapping_add(1)
    }

    /// Counts a block of `bytes` handed out for `requested` bytes, from the
    /// cache or not, and raises the peaks (see `add`).
    #[inline(always)]
    pub fn handed_out(self, caches: &ThreadCaches, bytes: i64, requested: i64, from_cache: bool) {
        if from_cache {
            self.remove(Hot::CachedBytes, bytes);
        }
        let requests = self.count(Hot::ActiveRequests, 1);
        let active = self.count(Hot::ActiveBytes, bytes);
        let asked = self.count(Hot::RequestedBytes, requested);
        if requests | active | asked {
            self.raise_marks(caches);
        }
    }

    /// Counts a block of `bytes` handed out for `requested` bytes as given back.
    #[inline(always)]
    pub fn taken_back(self, bytes: i64, requested: i64) {
        self.remove(Hot::ActiveRequests, 1);
        self.remove(Hot::ActiveBytes, bytes);
        self.remove(Hot::RequestedBytes, requested);
    }

    /// Adds to a gauge, then raises its peak.
    ///
    /// Reading every thread's counters on every allocation would make threads
    /// share cache lines, so the sum is read only when this thread's share of
    /// the gauge passes its high-water mark, and for every gauge at each
    /// thread's `PEAK_CHECK_EVERY`-th allocation (`raise_peaks`). With one thread
    /// allocating every new peak is a new high-water mark, so peaks are exact;
    /// with several, a peak may lag a momentary maximum that no thread's own
    /// growth reached, by at most that many allocations of each thread.
    #[inline(always)]
    pub fn add(self, caches: &ThreadCaches, gauge: Hot, amount: i64) {
        if self.count(gauge, amount) {
            self.raise_marks(caches);
        }
    }

    /// Adds to a gauge; true if this thread's share passed its high-water
    /// mark, and `raise_marks` is due (`add` does both).
    #[inline(always)]
    pub fn count(self, gauge: Hot, amount: i64) -> bool {
        let gauge = gauge as usize;
        bump(&self.added[gauge], amount);
        bump(&self.value[gauge], amount) > self.high_water[gauge].load(Ordering::Relaxed)
    }

    /// Raises the marks this thread's shares passed, and every peak to its sum.
    /// Inlined with the rest of the hot path: it makes no call, so the hot
    /// path needs no registers saved for one.
    #[inline(always)]
    pub fn raise_marks(self, caches: &ThreadCaches) {
        for (mark, share) in self.high_water.iter().zip(&self.value) {
            let share = share.load(Ordering::Relaxed);
            if share > mark.load(Ordering::Relaxed) {
                mark.store(share, Ordering::Relaxed);
            }
        }
        caches.raise_peaks();
    }

    #[inline(always)]
    pub fn remove(self, gauge: Hot, amount: i64) {
        bump(&self.value[gauge as usize], amount.wrapping_neg());
    }
}

/// Adds to a counter only its thread writes (no read-modify-write needed);
/// returns the new value. Wrapping, so that the hot path cannot panic.
#[inline(always)]
fn bump(counter: &AtomicI64, amount: i64) -> i64 {
    let value = counter.load(Ordering::Relaxed).wrapping_add(amount);
    counter.store(value, Ordering::Relaxed);
    value
}
