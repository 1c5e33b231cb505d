//! The calling thread's slot for the cache it used last: two words, which the
//! hot path reads on every allocation and free.
//!
//! Rust's `thread_local!` in a shared library uses the general-dynamic model:
//! each access is a call to `__tls_get_addr`, about a tenth of a cached
//! allocate+free. On x86-64 Linux the slot is instead a thread-local of the
//! initial-exec model, defined here in assembly (stable Rust cannot ask for
//! that model): a read is the slot's offset from the GOT and two loads
//! relative to `fs`. glibc places such variables of a library loaded with
//! `dlopen` in the surplus it reserves for them
//! (`glibc.rtld.optional_static_tls`, 512 bytes by default); these 16 bytes fit.
//! Elsewhere the slot is an ordinary thread-local.
//!
//! The slot lives as long as its thread and has no destructor, so it can be
//! used during the thread's exit, after its other thread-locals are gone.

/// What the slot holds: an allocator's id (0 for none) and that allocator's
/// cache for this thread.
pub(crate) type Slot = (usize, *const ());

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    use super::Slot;

    // Global, so that code of every codegen unit reaches it; hidden, so that
    // it stays inside the library.
    std::arch::global_asm!(
        ".pushsection .tbss,\"awT\",@nobits",
        ".globl xpu_host_thread_slot",
        ".hidden xpu_host_thread_slot",
        ".p2align 4",
        ".type xpu_host_thread_slot, @tls_object",
        ".size xpu_host_thread_slot, 16",
        "xpu_host_thread_slot:",
        ".zero 16",
        ".popsection",
    );

    /// The address of the calling thread's slot (for writes; `get` reads
    /// without it).
    #[inline(always)]
    fn address() -> *mut Slot {
        let address: usize;
        // SAFETY: `fs:0` holds the thread pointer (the x86-64 TLS ABI), and the
        // GOT entry the dynamic linker fills holds the slot's offset from it, so
        // the sum is the calling thread's slot: 16 bytes aligned to 16, and a
        // `Slot` is two words. Only reads, no stack; the flags change.
        unsafe {
            std::arch::asm!(
                "mov {address}, qword ptr fs:[0]",
                "add {address}, qword ptr [rip + xpu_host_thread_slot@GOTTPOFF]",
                address = out(reg) address,
                options(pure, readonly, nostack),
            );
        }
        address as *mut Slot
    }

    /// Reads the slot with two loads relative to `fs`, after the load of its
    /// offset: unlike `address`, it does not load the thread pointer first, so
    /// the hot path, which waits for the slot, starts one load sooner.
    #[inline(always)]
    pub fn get() -> Slot {
        let (id, cache): (usize, usize);
        // SAFETY: as in `address`, the GOT entry holds the slot's offset from
        // the thread pointer, which `fs` segment addressing adds: these are the
        // calling thread's own two words, which no other thread can reach, and
        // zero, as the TLS block starts, is a valid `Slot`. Only reads.
        unsafe {
            std::arch::asm!(
                "mov {cache}, qword ptr [rip + xpu_host_thread_slot@GOTTPOFF]",
                "mov {id}, qword ptr fs:[{cache}]",
                "mov {cache}, qword ptr fs:[{cache} + 8]",
                id = out(reg) id,
                cache = out(reg) cache,
                options(pure, readonly, nostack, preserves_flags),
            );
        }
        (id, cache as *const ())
    }

    #[inline]
    pub fn set(slot: Slot) {
        // SAFETY: as in `get`.
        unsafe { address().write(slot) }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod imp {
    use super::Slot;
    use std::cell::Cell;

    thread_local! {
        static SLOT: Cell<Slot> = const { Cell::new((0, std::ptr::null())) };
    }

    #[inline]
    pub fn get() -> Slot {
        SLOT.try_with(Cell::get).unwrap_or((0, std::ptr::null()))
    }

    #[inline]
    pub fn set(slot: Slot) {
        let _ = SLOT.try_with(|cell| cell.set(slot));
    }
}

pub(crate) use imp::{get, set};

#[cfg(test)]
mod tests {
    #[test]
    fn each_thread_has_its_own_slot() {
        let here = 7u8;
        super::set((3, &here as *const u8 as *const ()));
        std::thread::spawn(|| assert_eq!(super::get(), (0, std::ptr::null()))).join().unwrap();
        assert_eq!(super::get(), (3, &here as *const u8 as *const ()));
        super::set((0, std::ptr::null()));
    }
}
