//! The live objects of one type, by handle. Every handle the API receives is
//! looked up here before use, so a stale or foreign handle is an error rather
//! than a crash; the handles given out are the addresses of the objects.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use level_zero_sys::*;

use crate::api::{unknown_handle, ZeResult};
use crate::context::Context;
use crate::leaks::Leak;
use crate::sync::lock;

pub struct Registry<T> {
    kind: &'static str,
    live: Mutex<BTreeMap<usize, Arc<T>>>,
}

/// An object that belongs to a context, for the leak reports.
pub trait Owned {
    fn context(&self) -> &Arc<Context>;
    /// Details after the handle in a leak report, e.g. " (index 2 of event pool 0x...)".
    fn describe(&self) -> String;
}

impl<T> Registry<T> {
    pub const fn new(kind: &'static str) -> Self {
        Self { kind, live: Mutex::new(BTreeMap::new()) }
    }

    /// Registers `object` and returns its handle, a pointer that stays valid
    /// and unique while the object lives.
    pub fn insert<H>(&self, object: T) -> *mut H {
        let object = Arc::new(object);
        let handle = Arc::as_ptr(&object) as usize;
        lock(&self.live).insert(handle, object);
        handle as *mut H
    }

    pub fn get<H>(&self, handle: *mut H) -> ZeResult<Arc<T>> {
        self.find(handle, |live, key| live.get(&key).cloned())
    }

    pub fn remove<H>(&self, handle: *mut H) -> ZeResult<Arc<T>> {
        self.find(handle, |live, key| live.remove(&key))
    }

    fn find<H>(
        &self,
        handle: *mut H,
        op: impl FnOnce(&mut BTreeMap<usize, Arc<T>>, usize) -> Option<Arc<T>>,
    ) -> ZeResult<Arc<T>> {
        if handle.is_null() {
            return Err(ZE_RESULT_ERROR_INVALID_NULL_HANDLE);
        }
        op(&mut lock(&self.live), handle as usize).ok_or_else(|| unknown_handle(self.kind, handle))
    }

    pub fn len(&self) -> u64 {
        lock(&self.live).len() as u64
    }

    pub fn handles(&self) -> Vec<usize> {
        lock(&self.live).keys().copied().collect()
    }
}

impl<T: Owned> Registry<T> {
    /// The live objects, of `context` or of every context.
    pub fn leaks(&self, context: Option<&Arc<Context>>) -> Vec<Leak> {
        lock(&self.live)
            .iter()
            .filter(|(_, object)| context.is_none_or(|context| Arc::ptr_eq(context, object.context())))
            .map(|(handle, object)| Leak {
                kind: self.kind,
                bytes: 0,
                line: format!("{} {handle:#x}{}", self.kind, object.describe()),
            })
            .collect()
    }
}
