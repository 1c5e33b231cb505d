//! The one allocator of the process, which every entry point shares, and the
//! settings a host hands in before its first use.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::error::{xpu_host_result, Failure};
use super::lifecycle;
use crate::caching::sync::lock;
use crate::caching::{CachingAllocator, CaptureHooks, Settings, UnknownKeys};
use crate::level_zero::{Context, LevelZeroBackend, StreamHooks};

pub(crate) type Allocator = CachingAllocator<LevelZeroBackend>;

/// How `xpu_host_configure` strings are named in configuration errors.
const CONFIGURE_SOURCE: &str = "xpu_host_configure";

/// What the host may set before the allocator starts.
#[derive(Default)]
pub(crate) struct Setup {
    pub context: Option<Context>,
    pub hooks: Option<Box<dyn StreamHooks>>,
    pub capture_hooks: Option<Box<dyn CaptureHooks>>,
    /// `xpu_host_configure` strings, applied in order after the environment.
    pub configuration: Vec<String>,
}

static INSTANCE: OnceLock<Arc<Allocator>> = OnceLock::new();
/// The instance once started, while it may be used (null again in a forked
/// child and at exit): what every call reads first, one load.
static READY: AtomicPtr<Allocator> = AtomicPtr::new(std::ptr::null_mut());
static SETUP: Mutex<Option<Setup>> = Mutex::new(None);

/// The allocator, started on first use: with the host's context and hooks if it
/// handed them in, else on a context of its own on the first Level Zero driver.
/// A failed start is reported and tried again at the next call.
#[inline(always)]
pub(crate) fn allocator() -> Result<&'static Allocator, Failure> {
    match ready() {
        Some(allocator) => Ok(allocator),
        None => start(),
    }
}

/// The allocator if it has started and may be used: one load, for the hot paths.
#[inline(always)]
pub(crate) fn ready() -> Option<&'static Allocator> {
    // SAFETY: null, or set from `INSTANCE`, which is never emptied or dropped.
    unsafe { READY.load(Ordering::Acquire).as_ref() }
}

/// Called when the allocator must not be used any more (lifecycle.rs): calls
/// go the slow way, which says why.
pub(crate) fn withdraw() {
    READY.store(std::ptr::null_mut(), Ordering::Relaxed);
}

#[cold]
#[inline(never)]
fn start() -> Result<&'static Allocator, Failure> {
    lifecycle::check_usable()?;
    let mut setup = lock(&SETUP);
    if let Some(allocator) = INSTANCE.get() {
        publish(allocator);
        return Ok(allocator);
    }
    let pending = setup.get_or_insert_with(Setup::default);
    let settings = Settings::from_sources(&pending.configuration, CONFIGURE_SOURCE).map_err(invalid_configuration)?;
    let context = match pending.context.take() {
        Some(context) => context,
        None => Context::create_on_first_driver()?,
    };
    let backend = LevelZeroBackend::new(context, pending.hooks.take());
    let capture_hooks = pending.capture_hooks.take();
    *setup = None;
    let allocator = INSTANCE.get_or_init(|| Arc::new(CachingAllocator::new(backend, settings)));
    if let Some(hooks) = capture_hooks {
        // No capture can be under way before the allocator exists.
        allocator.set_capture_hooks(hooks)?;
    }
    lifecycle::watch_fork();
    if settings.background_reclaimer {
        lifecycle::start_reclaimer(allocator)?;
    }
    publish(allocator);
    Ok(allocator)
}

fn publish(allocator: &Allocator) {
    // Not once the process is on its way out (a fork or exit since the check above).
    if lifecycle::check_usable().is_ok() {
        READY.store(allocator as *const Allocator as *mut Allocator, Ordering::Release);
    }
}

/// The allocator if it has started, without starting it; `None` where it must not be touched.
pub(crate) fn started() -> Option<&'static Allocator> {
    lifecycle::check_usable().ok()?;
    INSTANCE.get().map(|allocator| &**allocator)
}

/// The allocator if it has started, shared, for its reclaimer (lifecycle.rs).
pub(crate) fn instance() -> Option<&'static Arc<Allocator>> {
    INSTANCE.get()
}

/// Changes what the allocator will start with; an error once it has started.
pub(crate) fn configure(what: &str, change: impl FnOnce(&mut Setup)) -> Result<(), Failure> {
    let mut setup = lock(&SETUP);
    if INSTANCE.get().is_some() {
        return Err(Failure::new(
            xpu_host_result::XPU_HOST_ERROR_ALREADY_INITIALIZED,
            format!("{what} must be set before the allocator is first used"),
        ));
    }
    change(setup.get_or_insert_with(Setup::default));
    Ok(())
}

/// Hands `value` to the setup if the allocator has not started, else to the
/// allocator: for what may be set at any time.
pub(crate) fn set_or_apply<T>(
    value: T,
    before: impl FnOnce(&mut Setup, T),
    after: impl FnOnce(&'static Allocator, T) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut setup = lock(&SETUP);
    match INSTANCE.get() {
        Some(allocator) => {
            drop(setup);
            lifecycle::check_usable()?;
            after(allocator, value)
        }
        None => {
            before(setup.get_or_insert_with(Setup::default), value);
            Ok(())
        }
    }
}

/// Checks a `xpu_host_configure` string on its own, so that a bad one is refused at once.
pub(crate) fn check_configuration(text: &str) -> Result<(), Failure> {
    Settings::default().apply(text, CONFIGURE_SOURCE, UnknownKeys::Reject).map_err(invalid_configuration)
}

fn invalid_configuration(message: String) -> Failure {
    Failure::new(xpu_host_result::XPU_HOST_ERROR_INVALID_CONFIGURATION, message)
}
