//! Each thread's cache of recently freed blocks (a stack per size class,
//! stack.rs) and its share of the gauges that change on every allocation and
//! free (gauges.rs), and the registry that lists every thread's.
//!
//! The thread is the only writer of both, so the hot path takes no lock and
//! makes no read-modify-write of them: a cycle's only read-modify-writes are
//! the block's own, its claim when allocated and its free (block.rs). Other
//! threads only read them: statistics sum every thread's shares, and a thread
//! whose own cache misses, `empty_cache` and the cache cap take blocks from
//! other threads' stacks by claiming the entries there.
//!
//! Each cache also has a list of blocks other threads freed after this one
//! was handed them (remote.rs), in lines of its own: the freeing threads
//! push onto it, and the thread takes it on a miss (others, when they find
//! nothing else). So no cached block is ever out of reach, and a thread that
//! exits leaves its cache, shares and list to the next thread that starts.

use std::cell::Cell;
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use super::block::{Block, Entry};
use super::gauges::{Hot, Peaks, Shares};
use super::remote::Remote;
use super::size_class::CLASS_COUNT;
use super::stack::Stack;
use super::stats::Stat;
use super::sync::lock;
use super::thread_slot;

/// While blocks wait for events (and no reclaimer polls), every
/// `POLL_EVERY`-th allocation of a thread polls them, so that a completed
/// block comes back into use even while other cached blocks keep serving hits.
pub(crate) const POLL_EVERY: i64 = 32;

/// One thread's cache and shares. Aligned to a pair of cache lines, as blocks
/// are (block.rs): with 64 bytes, two threads cycling blocks on their own
/// caches ran at 1.3x one thread, with 128 at 1.75x.
#[repr(align(128))]
pub(crate) struct ThreadCache {
    shares: Shares,
    /// One stack per size class, inline, so that the hot path finds a stack
    /// at an address computed from the cache's rather than loaded. That makes
    /// a cache 144 KiB of zeroed memory (when the system maps it fresh, a
    /// thread touches only the pages of the few classes it uses).
    stacks: [Stack; CLASS_COUNT],
    links: Links,
}

/// A cache's links, in lines of their own: other threads push onto its list,
/// and a walk of the registry reads `next`, as every miss does to sum the
/// shares; its thread then reads the list in a line it has already fetched.
#[repr(align(128))]
struct Links {
    /// The next cache of the registry, which lists every cache it ever made.
    next: AtomicPtr<ThreadCache>,
    /// Blocks handed out on this thread that other threads freed.
    given_back: Remote,
}

impl ThreadCache {
    /// Made in place: too large to build on a thread's stack first.
    fn new() -> Box<ThreadCache> {
        let layout = std::alloc::Layout::new::<ThreadCache>();
        // SAFETY: zero is a valid value of every field (atomics, and shares,
        // stacks and the list of given-back blocks, which say so), and the
        // block has the type's layout.
        unsafe {
            let raw = std::alloc::alloc_zeroed(layout);
            if raw.is_null() {
                // What `Box::new` does when the heap is exhausted.
                std::alloc::handle_alloc_error(layout);
            }
            Box::from_raw(raw.cast::<ThreadCache>())
        }
    }

    /// The entries of list `class` as they are now (another thread may be changing them).
    fn entries(&self, class: usize) -> impl Iterator<Item = Entry> + '_ {
        self.stacks.get(class).into_iter().flat_map(Stack::entries)
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
    peaks: Peaks,
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
            unsafe { (*cache).links.next.store(head, Ordering::Relaxed) };
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

    fn caches(&self) -> impl Iterator<Item = &ThreadCache> + Clone {
        let mut next = self.head.load(Ordering::Acquire);
        std::iter::from_fn(move || {
            // SAFETY: listed caches live as long as the registry (see `make`).
            let cache = unsafe { next.as_ref()? };
            next = cache.links.next.load(Ordering::Acquire);
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
            next = cache.links.next.load(Ordering::Relaxed);
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
            peaks: Peaks::default(),
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
    pub fn caches(&self) -> impl Iterator<Item = &ThreadCache> + Clone {
        let shared = self.shared_used.load(Ordering::Acquire).then_some(&*self.shared);
        self.registry.caches().chain(shared)
    }

    /// Entries of `class` in every cache but `own`, as they are now.
    pub fn others_entries<'a>(&'a self, own: &'a ThreadCache, class: usize) -> impl Iterator<Item = Entry> + 'a {
        self.caches().filter(move |cache| !ptr::eq(*cache, own)).flat_map(move |cache| cache.entries(class))
    }

    /// Gives `block`, which the calling thread freed and owns until this
    /// returns, back to the cache at `owner` (a `Mine::address`, not 0).
    pub fn give_back_to(&self, owner: usize, block: &Block) {
        // SAFETY: a block's owner, if not 0, is the address of one of this
        // allocator's caches (only handing a block of its arena out sets it,
        // from a `Mine`), which live as long as `self`: the registry's until
        // it drops, the shared one in `self`.
        let cache = unsafe { &*(owner as *const ThreadCache) };
        cache.links.given_back.push(block.id, block.link());
    }

    /// The lists of given-back blocks of every cache but `own`.
    pub fn others_given_back<'a>(&'a self, own: &'a ThreadCache) -> impl Iterator<Item = &'a Remote> + 'a {
        self.caches().filter(move |cache| !ptr::eq(*cache, own)).map(|cache| &cache.links.given_back)
    }

    /// Every cache's list of given-back blocks.
    pub fn all_given_back(&self) -> impl Iterator<Item = &Remote> + '_ {
        self.caches().map(|cache| &cache.links.given_back)
    }

    /// Every entry in every cache, as they are now.
    pub fn all_entries(&self) -> Vec<Entry> {
        self.caches().flat_map(|cache| (0..CLASS_COUNT).flat_map(move |class| cache.entries(class))).collect()
    }

    /// Every thread's shares of the gauges.
    fn shares(&self) -> impl Iterator<Item = &Shares> + Clone {
        self.caches().map(|cache| &cache.shares)
    }

    pub fn current_value(&self, gauge: Hot) -> i64 {
        self.peaks.current_value(self.shares(), gauge)
    }

    pub fn stat(&self, gauge: Hot) -> Stat {
        self.peaks.stat(self.shares(), gauge)
    }

    pub fn reset_peaks(&self) {
        self.peaks.reset_peaks(self.shares());
    }

    pub fn reset_totals(&self) {
        self.peaks.reset_totals(self.shares());
    }

    /// Raises every peak to its gauge's sum: at a thread's `PEAK_CHECK_EVERY`-th
    /// allocation, and when a thread's share passes its mark.
    ///
    /// Out of the hot path's line, so that its sums take none of the hot
    /// path's registers (inlined, they cost it a saved register and a larger
    /// frame). `extern "C"` so that it cannot unwind: the hot path, which the
    /// C boundary runs outside its panic guard, then needs no landing pad
    /// for the call (`scripts/check-hot-path`).
    #[cold]
    #[inline(never)]
    pub extern "C" fn raise_peaks(&self) {
        self.peaks.raise(self.shares());
    }
}

impl Drop for ThreadCaches {
    fn drop(&mut self) {
        self.registry.closed.store(true, Ordering::Relaxed);
    }
}

impl<'a> Mine<'a> {
    /// The stack of list `class`; `None` for a class out of range.
    #[inline(always)]
    pub fn stack(self, class: usize) -> Option<&'a Stack> {
        self.0.stacks.get(class)
    }

    /// Empties every stack of this thread's (their entries are the caller's to deal with).
    pub fn clear(self) {
        self.0.stacks.iter().for_each(Stack::clear);
    }

    /// What identifies the cache as a block's owner.
    #[inline(always)]
    pub fn address(self) -> usize {
        ptr::from_ref(self.0) as usize
    }

    /// The blocks other threads gave back to this one.
    #[inline(always)]
    pub fn given_back(self) -> &'a Remote {
        &self.0.links.given_back
    }

    /// Counts blocks taken from a list of given-back blocks as freed and
    /// cached in this thread's share, and raises the peaks when due.
    pub fn took(self, caches: &ThreadCaches, blocks: i64, bytes: i64, requested: i64) {
        if self.0.shares.took(blocks, bytes, requested) {
            self.raise_marks(caches);
        }
    }

    /// The thread's shares of the gauges.
    #[inline(always)]
    pub fn shares(self) -> &'a Shares {
        &self.0.shares
    }

    /// Counts a block of `bytes` handed out for `requested` bytes, from the
    /// cache or not, and raises the peaks when due.
    #[inline(always)]
    pub fn handed_out(self, caches: &ThreadCaches, bytes: i64, requested: i64, from_cache: bool) {
        if self.0.shares.handed_out(bytes, requested, from_cache) {
            self.raise_marks(caches);
        }
    }

    /// Adds to the cached bytes, then raises the peaks when due.
    #[inline(always)]
    pub fn add_cached(self, caches: &ThreadCaches, bytes: i64) {
        if self.0.shares.add_cached(bytes) {
            self.raise_marks(caches);
        }
    }

    /// Raises the marks this thread's shares passed, and every peak to its sum.
    #[inline(always)]
    pub fn raise_marks(self, caches: &ThreadCaches) {
        self.0.shares.raise_marks();
        caches.raise_peaks();
    }
}
