//! Which size a request gets, which free list serves it, and which cached
//! blocks may serve it.
//!
//! Exact fit, the default, only aligns a request to 512 bytes (the alignment
//! of every block); the free lists are classes of eight steps per power of
//! two, and a cached block serves a request with no more waste than its own
//! alignment, unless the allocator allows more (budget.rs).
//!
//! Rounded fit with one division rounds to the next power of two exactly as
//! PyTorch's `CachingHostAllocator` does. With `d` divisions the range
//! (2^(k-1), 2^k] is cut into `d` equal steps, as PyTorch's
//! `roundup_power2_divisions` does for device memory, so at most 1/(2d) of a
//! block is waste instead of up to one half. Steps below 512 bytes are
//! pointless and fall back to the power of two. Requests above a threshold
//! are not rounded at all, only aligned (PyTorch 2.13's
//! `pinned_max_round_threshold_mb`); a cached block may serve a request when
//! it is large enough and wastes at most one step of the request's class: its
//! own class, or one class larger.

/// Divisions per power of two that a configuration may ask for.
pub const ALLOWED_DIVISIONS: [u32; 4] = [1, 2, 4, 8];
const MAX_DIVISIONS: usize = 8;
/// Number of free lists: one per (power of two, division).
pub(crate) const CLASS_COUNT: usize = 64 * MAX_DIVISIONS;
/// The alignment of every block, and the smallest rounding step.
pub(crate) const MIN_STEP: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeClass {
    /// Bytes a new block for this request gets.
    pub size: usize,
    /// Free list serving it, below `CLASS_COUNT`.
    pub index: usize,
    /// The rounding step: the most a reused block may waste.
    pub step: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rounding {
    pub divisions: u32,
    /// Requests above this are only aligned to 512 bytes.
    pub threshold: usize,
    /// Exact fit: every request is only aligned, and its step is what the
    /// alignment adds (a reused block is as large as a new one would be);
    /// `divisions` and `threshold` do not apply.
    pub exact: bool,
}

impl Rounding {
    /// Exact fit: lists of eight steps per power of two, nothing rounded.
    pub const fn exact() -> Rounding {
        Rounding { divisions: MAX_DIVISIONS as u32, threshold: 0, exact: true }
    }

    /// The class of `request`; `None` for 0 and for sizes too large for a
    /// block. It cannot panic (it is on the hot path).
    #[inline(always)]
    pub fn classify(&self, request: usize) -> Option<SizeClass> {
        debug_assert!(ALLOWED_DIVISIONS.contains(&self.divisions));
        if self.exact {
            return exact(request);
        }
        if request.wrapping_sub(1) < self.threshold {
            return round(request, self.divisions);
        }
        if request == 0 {
            return None;
        }
        let size = request.checked_next_multiple_of(MIN_STEP)?;
        Some(SizeClass { size, ..round(size, self.divisions)? })
    }

    /// The next larger class's list, for a request its own list cannot serve.
    pub fn next_index(&self, index: usize) -> Option<usize> {
        Some(index + MAX_DIVISIONS / self.divisions as usize).filter(|&next| next < CLASS_COUNT)
    }
}

/// The size of a rounded block of list `index`.
pub fn class_size(index: usize) -> usize {
    let (exponent, division) = (index / MAX_DIVISIONS, index % MAX_DIVISIONS);
    let power = 1usize << exponent;
    if division == MAX_DIVISIONS - 1 {
        return power;
    }
    power / 2 + (power / 2) / MAX_DIVISIONS * (division + 1)
}

/// Whether a cached block of `block_size` may serve `request` of class `class`.
pub fn fits(block_size: usize, request: usize, class: &SizeClass) -> bool {
    block_size >= request && block_size - request <= class.step
}

/// Exact fit's class of `request`: its size aligned, listed with the sizes of
/// its eighth of a power of two, (2^(e-1) + k 2^(e-4), 2^(e-1) + (k+1) 2^(e-4)].
/// A handful of instructions: it runs on every allocation.
#[inline(always)]
fn exact(request: usize) -> Option<SizeClass> {
    // Zero, and sizes whose block would be over `isize::MAX`, which no host
    // can map: better an error than a driver call that empties the cache to fail.
    if request.wrapping_sub(1) >= isize::MAX as usize - (MIN_STEP - 1) {
        return None;
    }
    let size = (request + (MIN_STEP - 1)) & !(MIN_STEP - 1);
    // 2^(exponent-1) < size <= 2^exponent, and exponent >= 9 (size >= 512).
    let exponent = (usize::BITS - (size - 1).leading_zeros()) as usize;
    let eighth = ((size - 1) >> (exponent - 4)) & (MAX_DIVISIONS - 1);
    Some(SizeClass { size, index: exponent * MAX_DIVISIONS + eighth, step: size - request })
}

/// Every quantity here is a power of two, so divisions are shifts (this runs
/// on every allocation).
#[inline]
fn round(request: usize, divisions: u32) -> Option<SizeClass> {
    let power = request.checked_next_power_of_two()?;
    let exponent = power.trailing_zeros() as usize;
    let half = power / 2;
    let power_of_two =
        || Some(SizeClass { size: power, index: exponent * MAX_DIVISIONS + MAX_DIVISIONS - 1, step: half.max(1) });
    // The default first, before any of the arithmetic of divisions.
    if divisions == 1 {
        return power_of_two();
    }
    let step = half >> divisions.trailing_zeros();
    if step < MIN_STEP {
        return power_of_two();
    }
    // request lies in (half, power]: steps 1..=divisions above half.
    let steps_above_half = (request - half + step - 1) >> step.trailing_zeros();
    let division = (steps_above_half << (MAX_DIVISIONS.trailing_zeros() - divisions.trailing_zeros())) - 1;
    Some(SizeClass { size: half + steps_above_half * step, index: exponent * MAX_DIVISIONS + division, step })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(request: usize, divisions: u32) -> Option<SizeClass> {
        Rounding { divisions, threshold: usize::MAX, exact: false }.classify(request)
    }

    #[test]
    fn one_division_is_pytorchs_power_of_two() {
        assert_eq!(class(1, 1).unwrap().size, 1);
        assert_eq!(class(3, 1).unwrap().size, 4);
        assert_eq!(class(4096, 1).unwrap().size, 4096);
        assert_eq!(class(4097, 1).unwrap().size, 8192);
        assert_eq!(class(129 << 20, 1).unwrap().size, 256 << 20);
        assert_eq!(class(1 << 63, 1).unwrap().size, 1 << 63);
    }

    #[test]
    fn sizes_that_cannot_round_are_none() {
        assert_eq!(class((1 << 63) + 1, 1), None);
        assert_eq!(class(usize::MAX, 8), None);
        assert_eq!(Rounding { divisions: 1, threshold: 0, exact: false }.classify(usize::MAX), None);
        assert_eq!(Rounding::exact().classify(usize::MAX), None);
        assert_eq!(Rounding::exact().classify(0), None);
    }

    #[test]
    fn divisions_cut_each_power_of_two_into_equal_steps() {
        // (128 MiB, 256 MiB] in four steps of 32 MiB.
        assert_eq!(class((129 << 20) + 5, 4).unwrap().size, 160 << 20);
        assert_eq!(class(160 << 20, 4).unwrap().size, 160 << 20);
        assert_eq!(class((200 << 20) + 1, 4).unwrap().size, 224 << 20);
        assert_eq!(class(256 << 20, 4).unwrap().size, 256 << 20);
        // Steps below 512 bytes fall back to the power of two.
        assert_eq!(class(1000, 8).unwrap().size, 1024);
        assert_eq!(class(5000, 8).unwrap().size, 5120);
    }

    #[test]
    fn above_the_threshold_sizes_are_only_aligned() {
        let rounding = Rounding { divisions: 1, threshold: 1 << 20, exact: false };
        assert_eq!(rounding.classify(1 << 20).unwrap().size, 1 << 20);
        let large = rounding.classify((129 << 20) + 1).unwrap();
        assert_eq!(large.size, (129 << 20) + 512);
        assert_eq!(large.index, class(129 << 20, 1).unwrap().index, "listed with its class");
    }

    #[test]
    fn exact_fit_only_aligns_and_reuses_blocks_of_the_same_size() {
        let c = Rounding::exact().classify(5000).unwrap();
        assert_eq!((c.size, c.step), (5120, 120));
        assert!(fits(5120, 5000, &c) && !fits(5632, 5000, &c) && !fits(4608, 5000, &c));
        let large = Rounding::exact().classify((200 << 20) + 1).unwrap();
        assert_eq!(large.size, (200 << 20) + 512);
        assert_eq!(large.index, class((200 << 20) + 512, 8).unwrap().index, "listed with its class of eight steps");
        assert_eq!(Rounding::exact().classify(1).unwrap().size, 512);
        let largest = isize::MAX as usize - 511;
        assert_eq!(Rounding::exact().classify(largest).unwrap().size, largest);
        assert_eq!(Rounding::exact().classify(largest + 1), None);
        // Every list holds one eighth of a power of two, and knows its largest size.
        let mut last = (0, 0);
        for request in (1..1 << 22).step_by(61).chain([1 << 40, (3 << 40) + 7]) {
            let c = Rounding::exact().classify(request).unwrap();
            assert!(c.index < CLASS_COUNT && c.size <= class_size(c.index) && c.index >= last.0);
            if c.index > last.0 {
                assert!(last.1 <= class_size(last.0) && c.size > class_size(last.0), "{request}");
            }
            last = (c.index, c.size);
        }
    }

    #[test]
    fn a_block_may_serve_a_request_one_step_away() {
        let rounding = Rounding { divisions: 4, threshold: usize::MAX, exact: false };
        let request = rounding.classify(224 << 20).unwrap();
        let next = rounding.classify((224 << 20) + 1).unwrap();
        assert_eq!(rounding.next_index(request.index), Some(next.index));
        assert!(fits(next.size, 224 << 20, &request), "256 MiB wastes one 32 MiB step");
        assert!(!fits(next.size, 200 << 20, &rounding.classify(200 << 20).unwrap()));
        assert!(!fits(request.size - 1, request.size, &request));
        let power = Rounding { divisions: 1, threshold: usize::MAX, exact: false };
        let c = power.classify(3000).unwrap();
        assert_eq!(power.next_index(c.index), Some(c.index + 8));
    }

    #[test]
    fn every_size_maps_to_one_list_and_fits_in_it() {
        for divisions in ALLOWED_DIVISIONS {
            let mut last = (0, 0);
            for request in (1..1 << 20).step_by(97).chain([1 << 40, 3 << 40, usize::MAX / 4]) {
                let c = class(request, divisions).unwrap();
                assert!(fits(c.size, request, &c) && c.index < CLASS_COUNT);
                // Larger requests never map to smaller classes, and one list holds one size.
                assert!(c.index >= last.0);
                if c.index == last.0 {
                    assert_eq!(c.size, last.1);
                }
                last = (c.index, c.size);
                // A class size is its own class, and the list knows its size.
                assert_eq!(class(c.size, divisions), Some(c));
                assert_eq!(class_size(c.index), c.size);
            }
        }
    }
}
