//! The Level Zero driver, context and devices all memory and streams live in.

use level_zero_sys as ze;

use super::result::{check, LevelZeroError};

const HOW_TO_SELECT: &str = "Install Intel's GPU driver (Debian: libze-intel-gpu1 or intel-level-zero-gpu), or \
     select another Level Zero driver with ZE_ENABLE_ALT_DRIVERS=/absolute/path/to/libze_driver.so \
     (this project's software driver is libze_software_driver.so)";

pub struct Context {
    driver: ze::ze_driver_handle_t,
    context: ze::ze_context_handle_t,
    devices: Vec<ze::ze_device_handle_t>,
    /// Created by this library (and destroyed with it), or handed in by the host.
    owned: bool,
}

// SAFETY: driver, context and device handles are thread-safe in Level Zero: every
// call the backend makes with them may come from any thread at once.
unsafe impl Send for Context {}
// SAFETY: as above; the struct is immutable after construction.
unsafe impl Sync for Context {}

impl Context {
    /// Initialises Level Zero and creates a context on the first driver.
    pub fn create_on_first_driver() -> Result<Context, LevelZeroError> {
        // SAFETY: zeInit takes flags only; 0 asks for GPU drivers.
        let result = unsafe { ze::zeInit(0) };
        if result != ze::ZE_RESULT_SUCCESS {
            return Err(no_driver(format!("zeInit(0) returned {}", super::ZeResult(result))));
        }
        let Some(&driver) = drivers()?.first() else {
            return Err(no_driver("zeDriverGet found no driver".into()));
        };
        let desc =
            ze::ze_context_desc_t { stype: ze::ZE_STRUCTURE_TYPE_CONTEXT_DESC, pNext: std::ptr::null(), flags: 0 };
        let mut context = std::ptr::null_mut();
        // SAFETY: the driver handle was just returned by the loader; desc and context are valid.
        check("zeContextCreate", unsafe { ze::zeContextCreate(driver, &desc, &mut context) })?;
        match devices_of(driver) {
            Ok(devices) => Ok(Context { driver, context, devices, owned: true }),
            Err(error) => {
                // SAFETY: the context was created above and nothing uses it yet.
                unsafe { ze::zeContextDestroy(context) };
                Err(error)
            }
        }
    }

    /// Uses the host runtime's driver and context (PyTorch: the native handles of
    /// `c10::xpu::get_device_context()`), so that its `is_pinned` recognises our memory.
    /// The driver must be one the loader reports; the context cannot be checked
    /// (the loader dereferences context handles) and must be a live context of it.
    pub fn from_host(
        driver: ze::ze_driver_handle_t,
        context: ze::ze_context_handle_t,
    ) -> Result<Context, LevelZeroError> {
        if driver.is_null() || context.is_null() {
            return Err(LevelZeroError::invalid("the driver and context handles must not be null".into()));
        }
        if !drivers()?.contains(&driver) {
            return Err(LevelZeroError::invalid(format!(
                "{driver:?} is not a Level Zero driver handle of this process"
            )));
        }
        let devices = devices_of(driver)?;
        Ok(Context { driver, context, devices, owned: false })
    }

    pub fn handle(&self) -> ze::ze_context_handle_t {
        self.context
    }

    pub fn driver(&self) -> ze::ze_driver_handle_t {
        self.driver
    }

    /// The device a stream's device index names.
    pub fn device(&self, index: i8) -> Result<ze::ze_device_handle_t, LevelZeroError> {
        usize::try_from(index).ok().and_then(|i| self.devices.get(i).copied()).ok_or_else(|| {
            LevelZeroError::invalid(format!(
                "no device with index {index}: the driver has {} device(s)",
                self.devices.len()
            ))
        })
    }

    /// The driver's name and version, for people reading logs.
    pub fn describe(&self) -> String {
        let mut properties =
            ze::ze_device_properties_t { stype: ze::ZE_STRUCTURE_TYPE_DEVICE_PROPERTIES, ..Default::default() };
        // SAFETY: the device handle is live; properties is a valid out-structure with pNext null.
        let named = !self.devices.is_empty()
            && unsafe { ze::zeDeviceGetProperties(self.devices[0], &mut properties) } == ze::ZE_RESULT_SUCCESS;
        let name = if named {
            let bytes: Vec<u8> = properties.name.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            "unknown device".into()
        };
        format!(
            "{} device(s), first: {name}; context {}",
            self.devices.len(),
            if self.owned { "created by this library" } else { "handed in by the host" }
        )
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: the context was created by this library and everything in it
            // was released by the backend's other parts, dropped before it.
            unsafe { ze::zeContextDestroy(self.context) };
        }
    }
}

/// The drivers the loader reports; `zeInit` must have succeeded, or the list is empty.
fn drivers() -> Result<Vec<ze::ze_driver_handle_t>, LevelZeroError> {
    let mut count = 0u32;
    // SAFETY: a null handle array asks only for the count. Before zeInit the
    // loader answers UNINITIALIZED, which is no driver.
    if unsafe { ze::zeDriverGet(&mut count, std::ptr::null_mut()) } != ze::ZE_RESULT_SUCCESS {
        return Ok(Vec::new());
    }
    let mut drivers = vec![std::ptr::null_mut(); count as usize];
    // SAFETY: the array has room for `count` handles.
    check("zeDriverGet", unsafe { ze::zeDriverGet(&mut count, drivers.as_mut_ptr()) })?;
    drivers.truncate(count as usize);
    Ok(drivers)
}

fn devices_of(driver: ze::ze_driver_handle_t) -> Result<Vec<ze::ze_device_handle_t>, LevelZeroError> {
    let mut count = 0u32;
    // SAFETY: a null array asks only for the count.
    check("zeDeviceGet", unsafe { ze::zeDeviceGet(driver, &mut count, std::ptr::null_mut()) })?;
    let mut devices = vec![std::ptr::null_mut(); count as usize];
    // SAFETY: the array has room for `count` handles.
    check("zeDeviceGet", unsafe { ze::zeDeviceGet(driver, &mut count, devices.as_mut_ptr()) })?;
    devices.truncate(count as usize);
    Ok(devices)
}

fn no_driver(what: String) -> LevelZeroError {
    LevelZeroError {
        result: None,
        no_driver: true,
        message: format!("no Level Zero driver could be used: {what}. {HOW_TO_SELECT}"),
    }
}
