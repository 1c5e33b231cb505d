//! The one allocator of the process, which every entry point shares, and the
//! settings a host hands in before its first use.

use std::sync::{Mutex, OnceLock};

use super::error::{xpu_host_result, Failure};
use crate::caching::{CachingAllocator, Settings};
use crate::level_zero::{Context, LevelZeroBackend, StreamHooks};

pub(crate) type Allocator = CachingAllocator<LevelZeroBackend>;

/// What the host may set before the allocator starts.
#[derive(Default)]
pub(crate) struct Setup {
    pub context: Option<Context>,
    pub hooks: Option<Box<dyn StreamHooks>>,
    pub settings: Settings,
}

static INSTANCE: OnceLock<Allocator> = OnceLock::new();
static SETUP: Mutex<Option<Setup>> = Mutex::new(None);

/// The allocator, started on first use: with the host's context and hooks if it
/// handed them in, else on a context of its own on the first Level Zero driver.
/// A failed start is reported and tried again at the next call.
pub(crate) fn allocator() -> Result<&'static Allocator, Failure> {
    if let Some(allocator) = INSTANCE.get() {
        return Ok(allocator);
    }
    let mut setup = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(allocator) = INSTANCE.get() {
        return Ok(allocator);
    }
    let pending = setup.get_or_insert_with(Setup::default);
    let context = match pending.context.take() {
        Some(context) => context,
        None => Context::create_on_first_driver()?,
    };
    let backend = LevelZeroBackend::new(context, pending.hooks.take());
    let settings = pending.settings;
    *setup = None;
    Ok(INSTANCE.get_or_init(|| CachingAllocator::new(backend, settings)))
}

/// The allocator if it has started, without starting it.
pub(crate) fn started() -> Option<&'static Allocator> {
    INSTANCE.get()
}

/// Changes what the allocator will start with; an error once it has started.
pub(crate) fn configure(what: &str, change: impl FnOnce(&mut Setup)) -> Result<(), Failure> {
    let mut setup = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    if INSTANCE.get().is_some() {
        return Err(Failure::new(
            xpu_host_result::XPU_HOST_ERROR_ALREADY_INITIALIZED,
            format!("{what} must be set before the allocator is first used"),
        ));
    }
    change(setup.get_or_insert_with(Setup::default));
    Ok(())
}
