//! The memory history's books, kept alike by the core model and the C API
//! model: whether history is on, the ring's bound, the marker that starts the
//! current epoch, and the external registrations the segments list.

use std::collections::HashMap;

/// Where the markers of history's epochs are registered: above the models'
/// other external registrations, below any memory their backends hand out.
const FIRST_MARKER: usize = 0x1000;

#[derive(Default)]
pub struct History {
    pub enabled: bool,
    /// The maximum last set (0 before history was first turned on).
    pub max_entries: usize,
    /// An external registration made right after history was last turned
    /// on: the entries from its first on are of this epoch, in which every
    /// step of a block was recorded (steps taken while history was off are
    /// missing from the ring, so actions before the marker may not follow
    /// those after it). Every entry before the marker went first if it went.
    pub marker: Option<usize>,
    markers: usize,
    /// External registrations listed as segments: address, bytes.
    pub external: HashMap<usize, usize>,
}

impl History {
    /// History is on with a ring of `max_entries`: returns the marker
    /// registration (address, bytes) the model makes next, already in the books.
    pub fn turned_on(&mut self, max_entries: usize) -> (usize, usize) {
        self.enabled = true;
        self.max_entries = max_entries;
        self.markers += 1;
        let marker = FIRST_MARKER + 0x100 * self.markers;
        let size = 1 + self.markers % 5;
        self.external.insert(marker, size);
        self.marker = Some(marker);
        (marker, size)
    }

    /// History is off: no registration is listed any more.
    pub fn turned_off(&mut self) {
        self.enabled = false;
        self.external.clear();
    }

    /// An external registration was made; true if history was on to list it.
    pub fn registered(&mut self, address: usize, size: usize) -> bool {
        if self.enabled {
            self.external.insert(address, size);
        }
        self.enabled
    }
}
