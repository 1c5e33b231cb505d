//! The environment variables that shape the driver (README.md), read once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

pub struct Knobs {
    /// `ZE_SOFTWARE_DRIVER_DEVICES`
    pub devices: u32,
    /// `ZE_SOFTWARE_DRIVER_COMMAND_LATENCY_US`
    pub command_latency: Duration,
    /// `ZE_SOFTWARE_DRIVER_HOST_MEMORY_LIMIT`, in bytes.
    pub memory_limit: Option<u64>,
    /// `ZE_SOFTWARE_DRIVER_FAIL_HOST_ALLOC_EVERY`
    pub fail_host_alloc: FailEvery,
    /// `ZE_SOFTWARE_DRIVER_FAIL_EVENT_POOL_CREATE_EVERY`
    pub fail_event_pool_create: FailEvery,
    /// `ZE_SOFTWARE_DRIVER_FAIL_COMMAND_LIST_CREATE_EVERY`
    pub fail_command_list_create: FailEvery,
    /// `ZE_SOFTWARE_DRIVER_IP_VERSION`, what `ze_device_ip_version_ext_t` reports.
    pub ip_version: u32,
    /// `ZE_SOFTWARE_DRIVER_LEAK_CHECK`
    pub leak_check: LeakCheck,
    /// `ZE_SOFTWARE_DRIVER_STRICT`
    pub strict: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeakCheck {
    Off,
    /// One line per report, objects and bytes by kind.
    Summary,
    /// One line per object.
    Report,
    /// As `Report`, and a leak at unload fails the process.
    Fail,
}

/// Makes every Nth attempt fail, counting the attempts that passed argument
/// checks (so the count does not depend on a validation layer).
pub struct FailEvery {
    every: Option<u64>,
    attempts: AtomicU64,
}

impl FailEvery {
    fn new(every: Option<u64>) -> Self {
        Self { every: every.filter(|&n| n > 0), attempts: AtomicU64::new(0) }
    }

    /// Counts one attempt and says whether it is to fail.
    pub fn fails_now(&self) -> bool {
        self.every.is_some_and(|n| (self.attempts.fetch_add(1, Ordering::Relaxed) + 1) % n == 0)
    }
}

/// The knobs, read from the environment on first use (the driver's `zeInit`
/// at the latest) and fixed from then on.
pub fn knobs() -> &'static Knobs {
    static KNOBS: OnceLock<Knobs> = OnceLock::new();
    KNOBS.get_or_init(|| Knobs::from_lookup(|name| std::env::var(name).ok()))
}

impl Knobs {
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let number = |name: &str| {
            let value = lookup(name)?;
            let value = value.trim();
            let parsed = match value.strip_prefix("0x").or_else(|| value.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => value.parse::<u64>(),
            };
            match parsed {
                Ok(number) => Some(number),
                Err(_) => {
                    eprintln!("ze-software-driver: ignoring {name}={value:?}: not a number");
                    None
                }
            }
        };
        Self {
            devices: number("ZE_SOFTWARE_DRIVER_DEVICES").map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            command_latency: Duration::from_micros(number("ZE_SOFTWARE_DRIVER_COMMAND_LATENCY_US").unwrap_or(0)),
            memory_limit: number("ZE_SOFTWARE_DRIVER_HOST_MEMORY_LIMIT"),
            fail_host_alloc: FailEvery::new(number("ZE_SOFTWARE_DRIVER_FAIL_HOST_ALLOC_EVERY")),
            fail_event_pool_create: FailEvery::new(number("ZE_SOFTWARE_DRIVER_FAIL_EVENT_POOL_CREATE_EVERY")),
            fail_command_list_create: FailEvery::new(number("ZE_SOFTWARE_DRIVER_FAIL_COMMAND_LIST_CREATE_EVERY")),
            ip_version: number("ZE_SOFTWARE_DRIVER_IP_VERSION").map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            leak_check: match lookup("ZE_SOFTWARE_DRIVER_LEAK_CHECK").as_deref() {
                None | Some("summary") => LeakCheck::Summary,
                Some("report") => LeakCheck::Report,
                Some("off") => LeakCheck::Off,
                Some("fail") => LeakCheck::Fail,
                Some(other) => {
                    eprintln!(
                        "ze-software-driver: ignoring ZE_SOFTWARE_DRIVER_LEAK_CHECK={other:?}: \
                         expected off, summary, report or fail"
                    );
                    LeakCheck::Summary
                }
            },
            // Like the loader's own switches: on only for exactly "1".
            strict: lookup("ZE_SOFTWARE_DRIVER_STRICT").as_deref() == Some("1"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knobs_of(vars: &[(&str, &str)]) -> Knobs {
        Knobs::from_lookup(|name| vars.iter().find(|(key, _)| *key == name).map(|(_, value)| value.to_string()))
    }

    #[test]
    fn defaults() {
        let knobs = knobs_of(&[]);
        assert_eq!(knobs.devices, 1);
        assert_eq!(knobs.command_latency, Duration::ZERO);
        assert_eq!(knobs.memory_limit, None);
        assert!(!knobs.fail_host_alloc.fails_now());
        assert_eq!(knobs.leak_check, LeakCheck::Summary);
        assert!(!knobs.strict);
    }

    #[test]
    fn values() {
        let knobs = knobs_of(&[
            ("ZE_SOFTWARE_DRIVER_DEVICES", "3"),
            ("ZE_SOFTWARE_DRIVER_COMMAND_LATENCY_US", "250"),
            ("ZE_SOFTWARE_DRIVER_HOST_MEMORY_LIMIT", "4096"),
            ("ZE_SOFTWARE_DRIVER_FAIL_EVENT_POOL_CREATE_EVERY", "2"),
            ("ZE_SOFTWARE_DRIVER_LEAK_CHECK", "fail"),
            ("ZE_SOFTWARE_DRIVER_STRICT", "1"),
        ]);
        assert_eq!(knobs.devices, 3);
        assert_eq!(knobs.command_latency, Duration::from_micros(250));
        assert_eq!(knobs.memory_limit, Some(4096));
        let failures: Vec<bool> = (0..4).map(|_| knobs.fail_event_pool_create.fails_now()).collect();
        assert_eq!(failures, [false, true, false, true]);
        assert_eq!(knobs.leak_check, LeakCheck::Fail);
        assert!(knobs.strict);
    }

    #[test]
    fn bad_values_fall_back_to_defaults() {
        let knobs = knobs_of(&[
            ("ZE_SOFTWARE_DRIVER_DEVICES", "many"),
            ("ZE_SOFTWARE_DRIVER_FAIL_HOST_ALLOC_EVERY", "0"),
            ("ZE_SOFTWARE_DRIVER_LEAK_CHECK", "loud"),
            ("ZE_SOFTWARE_DRIVER_STRICT", "yes"),
        ]);
        assert_eq!(knobs.devices, 1);
        assert!(!knobs.fail_host_alloc.fails_now());
        assert_eq!(knobs.leak_check, LeakCheck::Summary);
        assert!(!knobs.strict);
    }
}
