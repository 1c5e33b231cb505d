//! The clock that times backend calls for `host_alloc_time` and `host_free_time`.
//!
//! Every miss reads it twice. `Instant::now()` is a vDSO call of about 25 ns,
//! more with the cold caches a driver call leaves behind: with it, what the
//! allocator added to a miss was about 200 ns instead of 130 (BENCHMARKS.md,
//! scenario 6). The CPU's time-stamp counter costs about 10 ns and reads no
//! memory. It is read only where the kernel keeps its own time with it
//! (clocksource `tsc`: the kernel chose it because it is invariant and
//! synchronised across cores); elsewhere the clock falls back to `Instant`.
//! Ticks become microseconds only when statistics are read, at the rate the
//! counter ran between the clock's creation and that read.

use std::time::Instant;

pub(crate) struct Clock {
    origin: Instant,
    /// The time-stamp counter at `origin`, when ticks are its counts; `None`
    /// when ticks are nanoseconds since `origin`.
    tsc_origin: Option<u64>,
}

impl Clock {
    pub fn new() -> Clock {
        let origin = Instant::now();
        Clock { origin, tsc_origin: kernel_uses_tsc().then(read_tsc) }
    }

    /// Now, in ticks; only differences of two readings mean anything.
    #[inline]
    pub fn ticks(&self) -> u64 {
        match self.tsc_origin {
            Some(_) => read_tsc(),
            None => self.origin.elapsed().as_nanos() as u64,
        }
    }

    /// Turns ticks (differences of two readings) into whole microseconds, at
    /// the rate measured now: one rate for all the figures of one snapshot.
    pub fn to_micros(&self) -> impl Fn(u64) -> i64 {
        // Nanoseconds per tick as a fraction; at least one tick, so that the
        // rate is defined on the first read.
        let (nanos, per_ticks) = match self.tsc_origin {
            None => (1, 1),
            Some(tsc_origin) => {
                let elapsed = self.origin.elapsed().as_nanos();
                (elapsed, u128::from(read_tsc().wrapping_sub(tsc_origin)).max(1))
            }
        };
        move |ticks| i64::try_from(u128::from(ticks) * nanos / per_ticks / 1000).unwrap_or(i64::MAX)
    }
}

#[cfg(target_arch = "x86_64")]
fn kernel_uses_tsc() -> bool {
    std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .is_ok_and(|source| source.trim() == "tsc")
}

#[cfg(not(target_arch = "x86_64"))]
fn kernel_uses_tsc() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn read_tsc() -> u64 {
    // SAFETY: RDTSC exists on every x86-64 CPU and only reads a counter.
    unsafe { std::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
fn read_tsc() -> u64 {
    unreachable!("the time-stamp counter is read only on x86-64")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ticks_become_the_microseconds_that_passed() {
        // Both clocks see the same sleep; the rate is measured from creation to
        // now. A thread descheduled between the reads of the two clocks (a
        // loaded machine) makes one try disagree by milliseconds, so a few
        // tries are allowed; a wrong conversion disagrees in every one.
        let mut tries = Vec::new();
        for _ in 0..5 {
            let clock = Clock::new();
            let (started, instant) = (clock.ticks(), Instant::now());
            std::thread::sleep(Duration::from_millis(20));
            let ticks = clock.ticks() - started;
            let passed = instant.elapsed().as_micros() as i64;
            assert_eq!(clock.to_micros()(0), 0);
            let measured = clock.to_micros()(ticks);
            if (measured - passed).abs() <= passed / 20 + 100 {
                return;
            }
            tries.push((measured, passed));
        }
        panic!("measured and passed, in us, in every try: {tries:?}");
    }
}
