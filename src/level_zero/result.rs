//! Level Zero result codes, named, and the error that carries one.

use level_zero_sys as ze;
use std::fmt;

/// A `ze_result_t` that prints as its name and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZeResult(pub ze::ze_result_t);

impl fmt::Display for ZeResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            ze::ZE_RESULT_SUCCESS => "ZE_RESULT_SUCCESS",
            ze::ZE_RESULT_NOT_READY => "ZE_RESULT_NOT_READY",
            ze::ZE_RESULT_ERROR_UNINITIALIZED => "ZE_RESULT_ERROR_UNINITIALIZED",
            ze::ZE_RESULT_ERROR_DEVICE_LOST => "ZE_RESULT_ERROR_DEVICE_LOST",
            ze::ZE_RESULT_ERROR_OUT_OF_HOST_MEMORY => "ZE_RESULT_ERROR_OUT_OF_HOST_MEMORY",
            ze::ZE_RESULT_ERROR_OUT_OF_DEVICE_MEMORY => "ZE_RESULT_ERROR_OUT_OF_DEVICE_MEMORY",
            ze::ZE_RESULT_ERROR_UNSUPPORTED_FEATURE => "ZE_RESULT_ERROR_UNSUPPORTED_FEATURE",
            ze::ZE_RESULT_ERROR_UNSUPPORTED_SIZE => "ZE_RESULT_ERROR_UNSUPPORTED_SIZE",
            ze::ZE_RESULT_ERROR_UNSUPPORTED_ALIGNMENT => "ZE_RESULT_ERROR_UNSUPPORTED_ALIGNMENT",
            ze::ZE_RESULT_ERROR_INVALID_ARGUMENT => "ZE_RESULT_ERROR_INVALID_ARGUMENT",
            ze::ZE_RESULT_ERROR_INVALID_NULL_HANDLE => "ZE_RESULT_ERROR_INVALID_NULL_HANDLE",
            ze::ZE_RESULT_ERROR_INVALID_NULL_POINTER => "ZE_RESULT_ERROR_INVALID_NULL_POINTER",
            ze::ZE_RESULT_ERROR_INVALID_ENUMERATION => "ZE_RESULT_ERROR_INVALID_ENUMERATION",
            ze::ZE_RESULT_ERROR_HANDLE_OBJECT_IN_USE => "ZE_RESULT_ERROR_HANDLE_OBJECT_IN_USE",
            ze::ZE_RESULT_ERROR_UNKNOWN => "ZE_RESULT_ERROR_UNKNOWN",
            _ => "an unnamed result",
        };
        write!(f, "{name} ({:#x})", self.0)
    }
}

/// A failed Level Zero call, or a setup problem found before any call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LevelZeroError {
    /// The result of the failed call, if a call failed.
    pub result: Option<ze::ze_result_t>,
    /// True when no Level Zero driver is there at all.
    pub no_driver: bool,
    pub message: String,
}

impl LevelZeroError {
    pub fn call(function: &str, result: ze::ze_result_t) -> LevelZeroError {
        LevelZeroError {
            result: Some(result),
            no_driver: false,
            message: format!("{function} returned {}", ZeResult(result)),
        }
    }

    pub fn invalid(message: String) -> LevelZeroError {
        LevelZeroError { result: None, no_driver: false, message }
    }
}

impl fmt::Display for LevelZeroError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// `Ok` for `ZE_RESULT_SUCCESS`, the named failure otherwise.
pub fn check(function: &str, result: ze::ze_result_t) -> Result<(), LevelZeroError> {
    if result == ze::ZE_RESULT_SUCCESS {
        Ok(())
    } else {
        Err(LevelZeroError::call(function, result))
    }
}
