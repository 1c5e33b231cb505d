//! The in-process backend the caching core is tested on, and the only one: the
//! core's unit tests (tests.rs) and the model that the fuzzer and
//! tests/core_model.rs drive (fuzz/src/core_model.rs) both run on it, so that
//! they test the core against one account of what a backend does, kept in step
//! with the backend traits in one place.
//!
//! Host memory is bookkeeping: addresses come from a counter, aligned to 512
//! and never reused, nothing is touched, and the memory of one call may lie
//! right after the last's, as a driver's may. Device work is two counters per
//! stream, work submitted and work completed, which the test advances. An
//! event waits for the work submitted to its stream before it was recorded,
//! and a stream whose work has all completed gets no event, as a SYCL queue
//! that reports itself empty. Streams on devices `0..DEVICES` exist. Faults
//! are injected by count: out of memory, other allocation failures, failed
//! records; and past its limit the memory is out. It panics on what the core
//! must never ask: 0 bytes, the free of memory it does not hold, an event on a
//! stream it refused.
//!
//! The crates that test the core include this file (the core's unit tests,
//! the fuzz crate, tests/core_model.rs), so that no build that ships has it;
//! that is why it names the core's types by `crate::caching`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::caching::{BackendError, HostMemory, StreamEvents, StreamKey};

/// Like a real driver, nothing above 1 TiB (so sizes stay within i64).
const MAX_ALLOCATION: usize = 1 << 40;
/// Far from 0 and from the small integers tests pass as addresses that are not ours.
const FIRST_ADDRESS: usize = 0x1000_0000;

pub struct FakeBackend {
    books: Mutex<Books>,
}

#[derive(Default)]
struct Books {
    /// Memory the core holds: address, size.
    memory: HashMap<usize, usize>,
    memory_bytes: usize,
    next_address: usize,
    limit: usize,
    fail_oom: u32,
    fail_other: u32,
    fail_records: u32,
    /// Per stream: work submitted, work completed.
    streams: HashMap<StreamKey, (u64, u64)>,
    events_recorded: u64,
    events_released: u64,
    allocate_calls: u64,
    /// What `unused_bytes` reports: room held beyond the blocks, as a backend that carves small blocks has.
    unused: usize,
}

impl Default for FakeBackend {
    /// No memory limit and no faults.
    fn default() -> FakeBackend {
        FakeBackend::with_limit(usize::MAX)
    }
}

impl FakeBackend {
    /// Streams on devices `0..DEVICES` exist; the backend refuses the others.
    pub const DEVICES: i8 = 2;

    /// Out of memory whenever an allocation would take the memory held past `limit` bytes.
    pub fn with_limit(limit: usize) -> FakeBackend {
        FakeBackend { books: Mutex::new(Books { limit, next_address: FIRST_ADDRESS, ..Books::default() }) }
    }

    /// Reports `bytes` held beyond the blocks from now on.
    pub fn set_unused_bytes(&self, bytes: usize) {
        self.books().unused = bytes;
    }

    /// `stream` gets one more piece of work, which events recorded from now on wait for.
    pub fn submit(&self, stream: StreamKey) {
        self.books().streams.entry(stream).or_default().0 += 1;
    }

    /// `stream` completes up to `steps` more pieces of its work.
    pub fn complete(&self, stream: StreamKey, steps: u64) {
        if let Some((submitted, completed)) = self.books().streams.get_mut(&stream) {
            *completed = completed.saturating_add(steps).min(*submitted);
        }
    }

    /// `stream` completes all its work.
    pub fn complete_all(&self, stream: StreamKey) {
        self.complete(stream, u64::MAX);
    }

    /// Every stream completes all its work, and no injected fault is left.
    pub fn settle(&self) {
        let mut books = self.books();
        books.streams.values_mut().for_each(|(submitted, completed)| *completed = *submitted);
        (books.fail_oom, books.fail_other, books.fail_records) = (0, 0, 0);
    }

    /// The work submitted to `stream` so far, and how much of it has completed.
    pub fn work(&self, stream: StreamKey) -> (u64, u64) {
        self.books().streams.get(&stream).copied().unwrap_or_default()
    }

    /// The next `count` allocations are out of memory.
    pub fn inject_out_of_memory(&self, count: u32) {
        self.books().fail_oom += count;
    }

    /// The next `count` allocations fail otherwise (these come before injected out of memory).
    pub fn inject_allocation_failures(&self, count: u32) {
        self.books().fail_other += count;
    }

    /// The next `count` records fail, whether or not their stream has work.
    pub fn inject_record_failures(&self, count: u32) {
        self.books().fail_records += count;
    }

    /// Whether the next record fails.
    pub fn records_failing(&self) -> bool {
        self.books().fail_records > 0
    }

    /// The memory the core holds now: address, size.
    pub fn memory(&self) -> HashMap<usize, usize> {
        self.books().memory.clone()
    }

    /// The bytes the core holds now.
    pub fn live_bytes(&self) -> usize {
        self.books().memory_bytes
    }

    /// Calls to `allocate` so far, failed ones too.
    pub fn allocate_calls(&self) -> u64 {
        self.books().allocate_calls
    }

    /// Events recorded so far, and of them, released.
    pub fn events(&self) -> (u64, u64) {
        let books = self.books();
        (books.events_recorded, books.events_released)
    }

    /// The books, also after a panic while they were held: a test that catches
    /// the panic of one run still reads them.
    fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl HostMemory for FakeBackend {
    fn allocate(&self, size: usize) -> Result<usize, BackendError> {
        let mut books = self.books();
        books.allocate_calls += 1;
        assert!(size > 0, "the core asked the backend for 0 bytes");
        if books.fail_other > 0 {
            books.fail_other -= 1;
            return Err(BackendError::Failed("injected failure".into()));
        }
        if books.fail_oom > 0 {
            books.fail_oom -= 1;
            return Err(BackendError::OutOfMemory("injected out of memory".into()));
        }
        if size > MAX_ALLOCATION || size > books.limit - books.memory_bytes {
            return Err(BackendError::OutOfMemory(format!("{size} bytes past the limit")));
        }
        let address = books.next_address;
        books.next_address += size.next_multiple_of(512);
        books.memory.insert(address, size);
        books.memory_bytes += size;
        Ok(address)
    }

    fn free(&self, address: usize, size: usize) -> Result<(), BackendError> {
        let mut books = self.books();
        let held = books.memory.remove(&address);
        assert_eq!(held, Some(size), "the core freed {address:#x} ({size} bytes), which it does not hold");
        books.memory_bytes -= size;
        Ok(())
    }

    fn unused_bytes(&self) -> usize {
        self.books().unused
    }
}

impl StreamEvents for FakeBackend {
    /// The stream, and the work submitted to it when the event was recorded.
    type Event = (StreamKey, u64);

    fn check_stream(&self, stream: StreamKey) -> Result<(), BackendError> {
        if (0..Self::DEVICES).contains(&stream.device_index) {
            Ok(())
        } else {
            Err(BackendError::Failed(format!("no device {}", stream.device_index)))
        }
    }

    fn record(&self, stream: StreamKey) -> Result<Option<Self::Event>, BackendError> {
        assert!(self.check_stream(stream).is_ok(), "an event recorded on a stream that was refused");
        let mut books = self.books();
        if books.fail_records > 0 {
            books.fail_records -= 1;
            return Err(BackendError::Failed("injected record failure".into()));
        }
        let (submitted, completed) = books.streams.get(&stream).copied().unwrap_or_default();
        if completed >= submitted {
            return Ok(None);
        }
        books.events_recorded += 1;
        Ok(Some((stream, submitted)))
    }

    fn is_complete(&self, event: &Self::Event) -> Result<bool, BackendError> {
        let (stream, submitted) = *event;
        Ok(self.work(stream).1 >= submitted)
    }

    fn release(&self, _event: Self::Event) {
        self.books().events_released += 1;
    }
}
