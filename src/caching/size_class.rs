//! Which size a request is rounded to, and which free list serves it.
//!
//! The default, one division, rounds to the next power of two exactly as
//! PyTorch's `CachingHostAllocator` does. With `d` divisions the range
//! (2^(k-1), 2^k] is cut into `d` equal steps, as PyTorch's
//! `roundup_power2_divisions` does for device memory, so at most 1/(2d) of a
//! block is waste instead of up to one half. Steps below 512 bytes (the
//! alignment of every block) are pointless and fall back to the power of two.

/// Divisions per power of two that a configuration may ask for.
pub const ALLOWED_DIVISIONS: [u32; 4] = [1, 2, 4, 8];
const MAX_DIVISIONS: usize = 8;
/// Number of free lists: one per (power of two, division).
pub(crate) const CLASS_COUNT: usize = 64 * MAX_DIVISIONS;
const MIN_STEP: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeClass {
    /// Bytes a block of this class has.
    pub size: usize,
    /// Free list serving it, below [`CLASS_COUNT`].
    pub index: usize,
}

/// Rounds `request` (> 0) with `divisions` (one of [`ALLOWED_DIVISIONS`]).
/// `None` when the rounded size does not fit in `usize`.
pub fn size_class(request: usize, divisions: u32) -> Option<SizeClass> {
    debug_assert!(request > 0 && ALLOWED_DIVISIONS.contains(&divisions));
    let power = request.checked_next_power_of_two()?;
    let exponent = power.trailing_zeros() as usize;
    let divisions = divisions as usize;
    let step = (power / 2) / divisions;
    if divisions == 1 || step < MIN_STEP {
        return Some(SizeClass { size: power, index: exponent * MAX_DIVISIONS + MAX_DIVISIONS - 1 });
    }
    // request lies in (power/2, power]: steps 1..=divisions above power/2.
    let steps_above_half = (request - power / 2).div_ceil(step);
    let division = steps_above_half * (MAX_DIVISIONS / divisions) - 1;
    Some(SizeClass { size: power / 2 + steps_above_half * step, index: exponent * MAX_DIVISIONS + division })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_division_is_pytorchs_power_of_two() {
        assert_eq!(size_class(1, 1).unwrap().size, 1);
        assert_eq!(size_class(3, 1).unwrap().size, 4);
        assert_eq!(size_class(4096, 1).unwrap().size, 4096);
        assert_eq!(size_class(4097, 1).unwrap().size, 8192);
        assert_eq!(size_class(129 << 20, 1).unwrap().size, 256 << 20);
        assert_eq!(size_class(1 << 63, 1).unwrap().size, 1 << 63);
    }

    #[test]
    fn sizes_that_cannot_round_are_none() {
        assert_eq!(size_class((1 << 63) + 1, 1), None);
        assert_eq!(size_class(usize::MAX, 8), None);
    }

    #[test]
    fn divisions_cut_each_power_of_two_into_equal_steps() {
        // (128 MiB, 256 MiB] in four steps of 32 MiB.
        assert_eq!(size_class((129 << 20) + 5, 4).unwrap().size, 160 << 20);
        assert_eq!(size_class(160 << 20, 4).unwrap().size, 160 << 20);
        assert_eq!(size_class((200 << 20) + 1, 4).unwrap().size, 224 << 20);
        assert_eq!(size_class(256 << 20, 4).unwrap().size, 256 << 20);
        // Steps below 512 bytes fall back to the power of two.
        assert_eq!(size_class(1000, 8).unwrap().size, 1024);
        assert_eq!(size_class(5000, 8).unwrap().size, 5120);
    }

    #[test]
    fn every_size_maps_to_one_list_and_fits_in_it() {
        for divisions in ALLOWED_DIVISIONS {
            let mut last = (0, 0);
            for request in (1..1 << 20).step_by(97).chain([1 << 40, 3 << 40, usize::MAX / 4]) {
                let class = size_class(request, divisions).unwrap();
                assert!(class.size >= request && class.index < CLASS_COUNT);
                // Larger requests never map to smaller classes, and one list holds one size.
                assert!(class.index >= last.0);
                if class.index == last.0 {
                    assert_eq!(class.size, last.1);
                }
                last = (class.index, class.size);
                // Waste is bounded by the step.
                if class.size > 4096 && divisions > 1 && class.size.next_power_of_two() / 2 / divisions as usize >= 512 {
                    assert!(class.size - request < class.size.next_power_of_two() / 2 / divisions as usize);
                }
            }
        }
    }
}
