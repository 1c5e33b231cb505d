//! Structs that cross the C API carry their size, so that a program compiled
//! against an older or newer header works with this library (README:
//! "Conventions and ABI stability").
//!
//! Such a struct's first field is `size_t size`, which the caller sets to
//! `sizeof` the struct as its header declares it. The library reads no more
//! than `size` bytes of an input, taking what is missing as zero (null), and
//! writes no more than `size` bytes of an output, setting `size` to what it
//! filled: an older caller gets its fields and nothing past them, a newer one
//! learns where the library's fields end.

use std::mem::{size_of, MaybeUninit};

use super::error::Failure;

/// A `#[repr(C)]` struct whose first field is `size: usize`.
///
/// # Safety
/// The implementer is `#[repr(C)]` with `size: usize` at offset 0, and valid
/// when zeroed (no references, no non-nullable pointers).
pub unsafe trait CarriesSize: Sized {
    /// The struct's name in the C header, for messages.
    const NAME: &'static str;
}

/// The `size` the caller put at `out`, checked to cover at least the field itself.
///
/// # Safety
/// `out` is valid for reading a `usize`.
unsafe fn caller_size<T: CarriesSize>(out: *const T) -> Result<usize, Failure> {
    // SAFETY: `size` is at offset 0 (the trait's contract); the caller
    // promises `out` is readable there.
    let size = unsafe { out.cast::<usize>().read_unaligned() };
    if size < size_of::<usize>() {
        return Err(Failure::invalid(format!(
            "{}.size is {size}: set it to sizeof({}) before the call",
            T::NAME,
            T::NAME
        )));
    }
    Ok(size)
}

/// Writes `value` into the caller's struct at `out`: at most the caller's
/// `size` bytes, then `size` set to the bytes written.
///
/// # Safety
/// `out` is valid for writes of the caller's `size` bytes (the caller's
/// promise when it set `size`).
pub unsafe fn write<T: CarriesSize>(out: *mut T, value: T) -> Result<(), Failure> {
    // SAFETY: forwarded from this function's contract.
    let filled = unsafe { caller_size(out) }?.min(size_of::<T>());
    // SAFETY: `value` is `size_of::<T>()` bytes, `out` has room for `filled`
    // of them (contract), and the two do not overlap (`value` is a local).
    unsafe {
        std::ptr::copy_nonoverlapping((&raw const value).cast::<u8>(), out.cast::<u8>(), filled);
        out.cast::<usize>().write_unaligned(filled);
    }
    Ok(())
}

/// Reads the caller's struct at `input`: the fields its `size` covers, the
/// rest zero.
///
/// # Safety
/// `input` is valid for reads of the caller's `size` bytes.
pub unsafe fn read<T: CarriesSize>(input: *const T) -> Result<T, Failure> {
    // SAFETY: forwarded from this function's contract.
    let given = unsafe { caller_size(input) }?.min(size_of::<T>());
    let mut value = MaybeUninit::<T>::zeroed();
    // SAFETY: `input` is readable for `given` bytes (contract), the local has
    // room for `size_of::<T>() >= given`, and they do not overlap; a zeroed
    // `T` with some of its bytes replaced by the caller's is valid (trait).
    unsafe {
        std::ptr::copy_nonoverlapping(input.cast::<u8>(), value.as_mut_ptr().cast::<u8>(), given);
        Ok(value.assume_init())
    }
}

/// The stride of the caller's array of `T`: the first element's `size`.
///
/// # Safety
/// `first` is valid for reading a `usize`.
pub unsafe fn stride<T: CarriesSize>(first: *const T) -> Result<usize, Failure> {
    // SAFETY: forwarded from this function's contract.
    unsafe { caller_size(first) }
}
