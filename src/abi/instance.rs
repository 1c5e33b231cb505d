//! The one allocator of the process, which every entry point shares, the
//! settings a host hands in before its first use, and its background reclaimer.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};

use super::error::{xpu_host_result, Failure};
use super::lifecycle;
use crate::caching::{CachingAllocator, Reclaimer, Settings, UnknownKeys};
use crate::level_zero::{Context, LevelZeroBackend, StreamHooks};

pub(crate) type Allocator = CachingAllocator<LevelZeroBackend>;

/// Our own configuration variable: every key must be known.
pub(crate) const CONFIG_VARIABLE: &str = "XPU_CACHING_HOST_ALLOCATOR_CONF";
/// PyTorch's: its `pinned_*` keys are honoured, ours wins over it.
const PYTORCH_CONFIG_VARIABLE: &str = "PYTORCH_ALLOC_CONF";

/// What the host may set before the allocator starts.
#[derive(Default)]
pub(crate) struct Setup {
    pub context: Option<Context>,
    pub hooks: Option<Box<dyn StreamHooks>>,
    /// `xpu_host_configure` strings, applied in order after the environment.
    pub configuration: Vec<String>,
}

static INSTANCE: OnceLock<Arc<Allocator>> = OnceLock::new();
/// The instance once started, while it may be used (null again in a forked
/// child and at exit): what every call reads first, one load.
static READY: AtomicPtr<Allocator> = AtomicPtr::new(std::ptr::null_mut());
static SETUP: Mutex<Option<Setup>> = Mutex::new(None);
static RECLAIMER: Mutex<Option<Reclaimer>> = Mutex::new(None);

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
    let settings = settings(&pending.configuration)?;
    let context = match pending.context.take() {
        Some(context) => context,
        None => Context::create_on_first_driver()?,
    };
    let backend = LevelZeroBackend::new(context, pending.hooks.take());
    *setup = None;
    let allocator = INSTANCE.get_or_init(|| Arc::new(CachingAllocator::new(backend, settings)));
    lifecycle::watch_fork();
    if settings.background_reclaimer {
        start_reclaimer(allocator)?;
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

/// Checks a `xpu_host_configure` string on its own, so that a bad one is refused at once.
pub(crate) fn check_configuration(text: &str) -> Result<(), Failure> {
    Settings::default().apply(text, "xpu_host_configure", UnknownKeys::Reject).map_err(invalid_configuration)
}

/// PyTorch's variable, then ours, then the C API's strings, each over the last.
fn settings(configuration: &[String]) -> Result<Settings, Failure> {
    let mut settings = Settings::default();
    for (variable, unknown) in [(PYTORCH_CONFIG_VARIABLE, UnknownKeys::Ignore), (CONFIG_VARIABLE, UnknownKeys::Reject)]
    {
        if let Ok(text) = std::env::var(variable) {
            settings.apply(&text, variable, unknown).map_err(invalid_configuration)?;
        }
    }
    for text in configuration {
        settings.apply(text, "xpu_host_configure", UnknownKeys::Reject).map_err(invalid_configuration)?;
    }
    Ok(settings)
}

fn invalid_configuration(message: String) -> Failure {
    Failure::new(xpu_host_result::XPU_HOST_ERROR_INVALID_CONFIGURATION, message)
}

/// Starts the reclaimer, and makes sure it is stopped and joined at exit and
/// around `fork` (a child has no threads but the forking one; it polls inline).
fn start_reclaimer(allocator: &Arc<Allocator>) -> Result<(), Failure> {
    static HANDLERS: Once = Once::new();
    HANDLERS.call_once(|| {
        // SAFETY: registering plain extern "C" functions that take no arguments.
        unsafe {
            libc::atexit(stop_reclaimer);
            libc::pthread_atfork(Some(stop_reclaimer), Some(restart_reclaimer), None);
        }
    });
    let reclaimer = allocator.start_reclaimer().map_err(|error| {
        Failure::new(xpu_host_result::XPU_HOST_ERROR_INTERNAL, format!("cannot start the reclaimer thread: {error}"))
    })?;
    *lock(&RECLAIMER) = Some(reclaimer);
    Ok(())
}

extern "C" fn stop_reclaimer() {
    // Taken out of the lock before joining: the thread never takes this lock.
    let reclaimer = lock(&RECLAIMER).take();
    drop(reclaimer);
}

extern "C" fn restart_reclaimer() {
    if let Some(allocator) = INSTANCE.get() {
        if allocator.settings().background_reclaimer && lock(&RECLAIMER).is_none() {
            // Without the thread the allocation path polls inline: nothing is lost.
            let _ = start_reclaimer(allocator);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
