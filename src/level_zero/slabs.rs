//! Small blocks share driver allocations: a block of at most `LARGEST_CHUNK`
//! bytes is a chunk of a `SLAB_SIZE` slab from `zeMemAllocHost`, as the SYCL
//! runtime's host pool carves them (Unified Runtime: 64 KiB minimum host slab,
//! chunks up to half of it). A driver call costs the same whatever the size,
//! and a driver rounds each allocation up to its pages, so one allocation per
//! label tensor or norm weight is the most expensive way to hold them.
//!
//! A slab is 128 units of `HOST_ALIGNMENT` bytes, and a chunk a run of them,
//! placed first fit in the lowest slab with room so that the higher ones
//! drain. A slab goes back to the driver when its last chunk does: the core
//! decides when memory goes back, and this layer never keeps any of it.

use std::collections::{BTreeMap, BTreeSet};

use super::HOST_ALIGNMENT;

pub(super) const SLAB_SIZE: usize = 64 << 10;
/// Larger blocks are driver allocations of their own.
pub(super) const LARGEST_CHUNK: usize = SLAB_SIZE / 2;

const UNITS: usize = SLAB_SIZE / HOST_ALIGNMENT;
const _: () = assert!(UNITS == u128::BITS as usize, "a slab's units are the bits of a u128");

/// One slab's units, bit `i` for the `i`-th `HOST_ALIGNMENT` bytes.
#[derive(Default)]
struct Slab {
    /// Units in chunks.
    used: u128,
    /// The first unit of each chunk, so that a free can be checked against what was handed out.
    starts: u128,
}

/// The slabs held, by base address; guarded by the backend's lock.
#[derive(Default)]
pub(super) struct Slabs {
    by_base: BTreeMap<usize, Slab>,
    /// The bases of slabs with a free unit: a miss looks through these only,
    /// so that many slabs full of live small blocks do not slow it down.
    with_room: BTreeSet<usize>,
    /// Units in no chunk, over all slabs: kept as they change, since exact
    /// fit's budget asks for it after each block it gives back.
    free_units: usize,
}

/// What giving a chunk back did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum GaveBack {
    /// The chunk's slab holds other chunks.
    Kept,
    /// It was the slab's last chunk: the slab at this base address is no
    /// longer listed and goes back to the driver.
    SlabEmpty(usize),
    /// The address is in no slab: a driver allocation of its own.
    NotAChunk,
}

impl Slabs {
    /// A chunk of `size` bytes (at most `LARGEST_CHUNK`) in a slab held now; `None` if none has room.
    pub(super) fn take(&mut self, size: usize) -> Option<usize> {
        let count = units(size);
        let (base, first) =
            self.with_room.iter().find_map(|&base| Some((base, first_fit(self.by_base[&base].used, count)?)))?;
        let slab = self.by_base.get_mut(&base)?;
        slab.used |= run_of(count) << first;
        slab.starts |= 1 << first;
        if slab.used == u128::MAX {
            self.with_room.remove(&base);
        }
        self.free_units -= count;
        Some(base + first * HOST_ALIGNMENT)
    }

    /// The slabs' room not in chunks.
    pub(super) fn unused_bytes(&self) -> usize {
        debug_assert_eq!(self.free_units, self.by_base.values().map(|slab| slab.used.count_zeros() as usize).sum());
        self.free_units * HOST_ALIGNMENT
    }

    /// Lists a new slab at `base` (memory of `SLAB_SIZE` bytes) and carves a chunk of `size` bytes from its start.
    pub(super) fn add(&mut self, base: usize, size: usize) -> usize {
        let slab = Slab { used: run_of(units(size)), starts: 1 };
        assert!(self.by_base.insert(base, slab).is_none(), "a new slab's memory is no slab's");
        if units(size) < UNITS {
            self.with_room.insert(base);
        }
        self.free_units += UNITS - units(size);
        base
    }

    /// Takes back the chunk of `size` bytes at `address`; an error, changing
    /// nothing, if a slab holds the address but no such chunk starts there.
    pub(super) fn give_back(&mut self, address: usize, size: usize) -> Result<GaveBack, String> {
        let Some((&base, slab)) = self.by_base.range_mut(..=address).next_back() else {
            return Ok(GaveBack::NotAChunk);
        };
        let offset = address - base;
        if offset >= SLAB_SIZE {
            return Ok(GaveBack::NotAChunk);
        }
        let (first, count) = (offset / HOST_ALIGNMENT, units(size));
        let next = first + count;
        let run = run_of(count.min(UNITS)) << first;
        let is_chunk = offset % HOST_ALIGNMENT == 0
            && size <= LARGEST_CHUNK
            && next <= UNITS
            && slab.used & run == run
            && slab.starts & run == 1 << first
            && (next == UNITS || slab.starts & (1 << next) != 0 || slab.used & (1 << next) == 0);
        if !is_chunk {
            return Err(format!("{address:#x} ({size} bytes) is not a chunk handed out of the slab at {base:#x}"));
        }
        slab.used &= !run;
        slab.starts &= !(1 << first);
        self.free_units += count;
        if slab.used != 0 {
            self.with_room.insert(base);
            return Ok(GaveBack::Kept);
        }
        self.by_base.remove(&base);
        self.with_room.remove(&base);
        self.free_units -= UNITS;
        Ok(GaveBack::SlabEmpty(base))
    }
}

/// The first unit of the first run of `count` free units in `used`, stepping
/// over runs rather than units.
fn first_fit(used: u128, count: usize) -> Option<usize> {
    if (used.count_zeros() as usize) < count {
        return None;
    }
    let mut first = 0;
    while first + count <= UNITS {
        // Shifting brings in zeros past the slab's end: the run is capped there.
        let free = ((used >> first).trailing_zeros() as usize).min(UNITS - first);
        if free >= count {
            return Some(first);
        }
        // A used unit ends the free run, within the slab: step over both runs.
        first += free;
        first += (used >> first).trailing_ones() as usize;
    }
    None
}

/// The units a block of `size` bytes covers.
fn units(size: usize) -> usize {
    size.div_ceil(HOST_ALIGNMENT).max(1)
}

/// `count` (1 to `UNITS`) bits set, from bit 0.
fn run_of(count: usize) -> u128 {
    debug_assert!((1..=UNITS).contains(&count));
    u128::MAX >> (UNITS - count)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: usize = 0x10_0000;

    #[test]
    fn chunks_pack_first_fit_and_the_slab_goes_when_its_last_chunk_does() {
        let mut slabs = Slabs::default();
        assert_eq!(slabs.take(512), None, "no slab yet");
        assert_eq!(slabs.add(BASE, 1000), BASE);
        assert_eq!(slabs.take(512), Some(BASE + 1024), "1000 bytes take two units");
        assert_eq!(slabs.take(LARGEST_CHUNK), Some(BASE + 1536));
        assert_eq!(slabs.unused_bytes(), SLAB_SIZE - 1536 - LARGEST_CHUNK);
        assert_eq!(slabs.give_back(BASE, 1000), Ok(GaveBack::Kept));
        assert_eq!(slabs.unused_bytes(), SLAB_SIZE - 512 - LARGEST_CHUNK);
        assert_eq!(slabs.take(LARGEST_CHUNK), None, "64 units: the rest of the slab is 61, the freed run 2");
        assert_eq!(slabs.take(512), Some(BASE), "a hole is refilled first");
        for (address, size) in [(BASE, 512), (BASE + 1024, 512)] {
            assert_eq!(slabs.give_back(address, size), Ok(GaveBack::Kept));
        }
        assert_eq!(slabs.give_back(BASE + 1536, LARGEST_CHUNK), Ok(GaveBack::SlabEmpty(BASE)));
        assert_eq!(slabs.take(512), None, "an empty slab is not kept");
        assert_eq!(slabs.unused_bytes(), 0);
    }

    #[test]
    fn first_fit_finds_the_first_run_long_enough() {
        assert_eq!(first_fit(0, UNITS), Some(0));
        assert_eq!(first_fit(u128::MAX, 1), None);
        assert_eq!(first_fit(0b1011, 1), Some(2));
        assert_eq!(first_fit(0b1011, 2), Some(4));
        assert_eq!(first_fit(0b1001, 3), Some(4), "the hole of two is skipped");
        assert_eq!(first_fit(!(0b11 << 126), 2), Some(126), "the last two units");
        assert_eq!(first_fit(!(0b11 << 126), 3), None);
        assert_eq!(first_fit(1 << 127, 127), Some(0));
    }

    #[test]
    fn a_slab_fills_to_its_last_unit_and_the_next_slab_takes_over() {
        let mut slabs = Slabs::default();
        slabs.add(BASE, 512);
        let taken: Vec<_> = std::iter::from_fn(|| slabs.take(512)).collect();
        assert_eq!(taken.len(), UNITS - 1);
        assert_eq!(taken.last(), Some(&(BASE + SLAB_SIZE - 512)));
        let other = BASE + 4 * SLAB_SIZE;
        slabs.add(other, 512);
        assert_eq!(slabs.take(512), Some(other + 512));
        assert_eq!(slabs.give_back(BASE + 512, 512), Ok(GaveBack::Kept));
        assert_eq!(slabs.unused_bytes(), 512 + SLAB_SIZE - 1024);
        assert_eq!(slabs.take(512), Some(BASE + 512), "the lowest slab with room");
    }

    #[test]
    fn what_was_not_handed_out_is_refused_and_changes_nothing() {
        let mut slabs = Slabs::default();
        slabs.add(BASE, 2048);
        assert_eq!(slabs.take(1024), Some(BASE + 2048));
        for (address, size) in [
            (BASE + 512, 512),   // inside a chunk
            (BASE, 1024),        // shorter than the chunk
            (BASE, 3072),        // longer: runs into the next chunk
            (BASE + 3072, 512),  // never handed out
            (BASE + 100, 512),   // misaligned
            (BASE + 2048, 2048), // past the chunk's end, into free units
        ] {
            assert!(slabs.give_back(address, size).is_err(), "{address:#x} {size}");
        }
        assert_eq!(slabs.unused_bytes(), SLAB_SIZE - 3072, "the refused frees changed nothing");
        assert_eq!(slabs.give_back(BASE - 512, 512), Ok(GaveBack::NotAChunk));
        assert_eq!(slabs.give_back(BASE + SLAB_SIZE, 512), Ok(GaveBack::NotAChunk));
        assert_eq!(slabs.give_back(BASE + 2048, 1024), Ok(GaveBack::Kept));
        assert_eq!(slabs.give_back(BASE + 2048, 1024).map_err(|_| ()), Err(()), "a second free is refused");
        assert_eq!(slabs.give_back(BASE, 2048), Ok(GaveBack::SlabEmpty(BASE)));
    }
}
