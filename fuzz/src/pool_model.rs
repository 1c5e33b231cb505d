//! The private pools' books, kept alike by the core model and the C API
//! model, which check each call's answer against them: which instance each
//! pool id names (ids are used again after a pool goes, instances never), its
//! uses and whether a capture holds it, the captures under way, the captured
//! blocks freed after use that wait for the pool's last release; and the host
//! runtime's side of captures, which both models play.
//!
//! `I` is a pool id, `S` a stream, `B` what a model keeps of a held block.

use std::collections::HashMap;
use std::hash::Hash;

use crate::bytes::Bytes;

/// What the host runtime says: the current stream and the streams being captured.
pub struct HostState<S> {
    pub current: Option<S>,
    pub capturing: Vec<S>,
}

// Not derived: that would ask `S: Default`, which the core's `StreamKey` is not.
impl<S> Default for HostState<S> {
    fn default() -> Self {
        HostState { current: None, capturing: Vec::new() }
    }
}

impl<S: Copy + Eq> HostState<S> {
    /// `choice` 0: no current stream; 1 or 2: `stream` current; 3: `stream`
    /// starts or stops being captured.
    pub fn switch(&mut self, choice: u8, stream: S) {
        match choice {
            0 => self.current = None,
            1 | 2 => self.current = Some(stream),
            _ => match self.capturing.iter().position(|&s| s == stream) {
                Some(at) => {
                    self.capturing.remove(at);
                }
                None => self.capturing.push(stream),
            },
        }
    }

    /// At a capture's end the runtime stops capturing the stream it marked.
    pub fn unmark(&mut self, stream: S) {
        if let Some(at) = self.capturing.iter().position(|&s| s == stream) {
            self.capturing.remove(at);
        }
    }
}

/// The pool a call names: mostly one of `likely`, now and then any of `named`
/// (unknown ones too).
pub fn pick<I: Copy>(bytes: &mut Bytes, named: &[I], likely: &[I]) -> I {
    let index = bytes.byte() as usize;
    match (bytes.byte() % 4, likely.is_empty()) {
        (0, _) | (_, true) => named[index % named.len()],
        _ => likely[index % likely.len()],
    }
}

/// Which pool a block belongs to: the default pool, or an instance of a
/// private pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Home {
    Default,
    Pool(u64),
}

pub struct PrivatePool<B> {
    pub instance: u64,
    uses: u32,
    capturing: bool,
    /// Captured blocks freed after use, in the order they were freed.
    pub held: Vec<B>,
}

pub struct Capture<I, S> {
    pub id: I,
    /// The stream the filter accepts; `None`: every stream (no filter).
    pub filter: Option<S>,
    /// The stream the host marked capturing when the capture began.
    pub marked: Option<S>,
}

/// A capture ended: the call must succeed.
pub struct Ended<I, S, B> {
    pub capture: Capture<I, S>,
    /// The pool, if it was released during the capture: it goes now.
    pub gone: Option<PrivatePool<B>>,
}

/// What a `release_pool` did to the books.
pub enum Release<B> {
    /// The pool is unknown, or released already: the call must be refused.
    Refused,
    /// Uses or a capture remain.
    Kept,
    /// The last release: the pool goes, its blocks must be accounted for.
    Last(PrivatePool<B>),
}

pub struct Pools<I, S, B> {
    pools: HashMap<I, PrivatePool<B>>,
    /// Instances not gone yet, with their ids.
    alive: HashMap<u64, I>,
    next_instance: u64,
    /// Oldest first: the first whose filter accepts the current stream gets the allocation.
    captures: Vec<Capture<I, S>>,
}

// Not derived, as `HostState`'s.
impl<I, S, B> Default for Pools<I, S, B> {
    fn default() -> Self {
        Pools { pools: HashMap::new(), alive: HashMap::new(), next_instance: 0, captures: Vec::new() }
    }
}

impl<I: Copy + Eq + Hash, S: Copy + Eq, B> Pools<I, S, B> {
    /// The instance of a block's pool if it has not gone.
    pub fn alive_pool(&self, home: Home) -> Option<u64> {
        match home {
            Home::Pool(instance) if self.alive.contains_key(&instance) => Some(instance),
            _ => None,
        }
    }

    /// `None` once the pool has gone.
    pub fn id(&self, instance: u64) -> Option<I> {
        self.alive.get(&instance).copied()
    }

    /// The ids of the pools not gone, ordered by `key`: a model's choices must
    /// not follow a HashMap's order, which changes from run to run.
    pub fn ids<K: Ord>(&self, key: impl FnMut(&I) -> K) -> Vec<I> {
        let mut ids: Vec<I> = self.pools.keys().copied().collect();
        ids.sort_by_key(key);
        ids
    }

    pub fn contains(&self, id: I) -> bool {
        self.pools.contains_key(&id)
    }

    pub fn captures(&self) -> &[Capture<I, S>] {
        &self.captures
    }

    pub fn capturing(&self, id: I) -> bool {
        self.captures.iter().any(|capture| capture.id == id)
    }

    /// The pool (id, instance) an allocation on `current` goes to, if a capture takes it.
    pub fn route(&self, current: S) -> Option<(I, u64)> {
        self.captures
            .iter()
            .find(|capture| capture.filter.is_none_or(|accepted| accepted == current))
            .map(|capture| (capture.id, self.pools[&capture.id].instance))
    }

    /// Captured blocks held for their pools.
    pub fn held(&self) -> usize {
        self.pools.values().map(|pool| pool.held.len()).sum()
    }

    /// A begin the allocator accepted.
    pub fn begin(&mut self, id: I, filter: Option<S>, marked: Option<S>) {
        match self.pools.get_mut(&id) {
            Some(pool) => {
                pool.uses += 1;
                pool.capturing = true;
            }
            None => {
                self.next_instance += 1;
                let instance = self.next_instance;
                self.pools.insert(id, PrivatePool { instance, uses: 1, capturing: true, held: Vec::new() });
                self.alive.insert(instance, id);
            }
        }
        self.captures.push(Capture { id, filter, marked });
    }

    /// `None` without a capture into `id`: the end must be refused.
    pub fn end(&mut self, id: I) -> Option<Ended<I, S, B>> {
        let position = self.captures.iter().position(|capture| capture.id == id)?;
        let capture = self.captures.remove(position);
        let pool = self.pools.get_mut(&id).expect("a capture's pool");
        pool.capturing = false;
        let gone = (pool.uses == 0).then(|| self.remove(id));
        Some(Ended { capture, gone })
    }

    pub fn release(&mut self, id: I) -> Release<B> {
        match self.pools.get_mut(&id) {
            // A pool released during its capture has no use left to release.
            Some(pool) if pool.uses > 0 => {
                pool.uses -= 1;
                if pool.uses > 0 || pool.capturing {
                    Release::Kept
                } else {
                    Release::Last(self.remove(id))
                }
            }
            _ => Release::Refused,
        }
    }

    /// A captured block freed after use: no event can tell when its streams
    /// are done with it, so it waits for the last release of pool `instance`.
    pub fn hold(&mut self, instance: u64, block: B) {
        let id = self.alive[&instance];
        self.pools.get_mut(&id).unwrap().held.push(block);
    }

    fn remove(&mut self, id: I) -> PrivatePool<B> {
        let pool = self.pools.remove(&id).unwrap();
        self.alive.remove(&pool.instance);
        pool
    }
}
