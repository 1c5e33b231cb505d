//! Access to the application's pointer arguments.
//!
//! Each function relies on the Level Zero API contract, which is the caller's
//! safety obligation: a non-null pointer argument is valid for the access the
//! spec describes for as long as the call runs.

use std::ffi::c_void;

use level_zero_sys::*;

use crate::api::ZeResult;

/// The input that `pointer` points to; null is `ZE_RESULT_ERROR_INVALID_NULL_POINTER`.
///
/// # Safety
/// `pointer` is null or valid for reads of a `T` during `'a`.
pub unsafe fn input<'a, T>(pointer: *const T) -> ZeResult<&'a T> {
    // SAFETY: non-null pointers are valid for reads (this function's contract).
    unsafe { pointer.as_ref() }.ok_or(ZE_RESULT_ERROR_INVALID_NULL_POINTER)
}

/// The output that `pointer` points to; null is `ZE_RESULT_ERROR_INVALID_NULL_POINTER`.
///
/// # Safety
/// `pointer` is null or valid for reads and writes of a `T` during `'a`, and
/// nothing else accesses it meanwhile.
pub unsafe fn output<'a, T>(pointer: *mut T) -> ZeResult<&'a mut T> {
    // SAFETY: non-null pointers are valid and unaliased (this function's contract).
    unsafe { pointer.as_mut() }.ok_or(ZE_RESULT_ERROR_INVALID_NULL_POINTER)
}

/// The `count` handles at `handles`, for the spec's "`[range(0, count)]`"
/// arrays; the caller has rejected null with a non-zero count.
///
/// # Safety
/// `handles` is valid for reads of `count` elements during `'a` unless `count` is 0.
pub unsafe fn handles<'a, H>(handles: *const H, count: u32) -> &'a [H] {
    if count == 0 {
        return &[];
    }
    // SAFETY: a non-empty array is valid for `count` reads (this function's contract).
    unsafe { std::slice::from_raw_parts(handles, count as usize) }
}

/// The spec's count-and-array query: with `*count == 0` or a null `items`,
/// stores the number of items available; otherwise fills up to `*count` items
/// with `fill(item, index)` and stores how many it filled.
///
/// # Safety
/// `count` is null or valid for reads and writes; `items` is null or valid
/// for reads and writes of `*count` elements.
pub unsafe fn counted<T>(
    count: *mut u32,
    items: *mut T,
    available: usize,
    mut fill: impl FnMut(&mut T, usize),
) -> ZeResult {
    // SAFETY: forwarded from this function's contract.
    let count = unsafe { output(count) }?;
    let available = u32::try_from(available).unwrap_or(u32::MAX);
    if *count == 0 || items.is_null() {
        *count = available;
        return Ok(());
    }
    let filled = (*count).min(available);
    // SAFETY: `items` holds `*count >= filled` elements (this function's contract).
    let items = unsafe { std::slice::from_raw_parts_mut(items, filled as usize) };
    for (index, item) in items.iter_mut().enumerate() {
        fill(item, index);
    }
    *count = filled;
    Ok(())
}

/// Copies `text` (up to a NUL, if it has one) into a fixed C string buffer,
/// truncated and NUL-terminated.
pub fn write_c_string(buffer: &mut [std::ffi::c_char], text: &[u8]) {
    let text = text.split(|&byte| byte == 0).next().unwrap_or_default();
    let length = text.len().min(buffer.len() - 1);
    for (slot, &byte) in buffer.iter_mut().zip(&text[..length]) {
        *slot = byte as std::ffi::c_char;
    }
    buffer[length] = 0;
}

/// The structures chained on an input or output struct's `pNext`, each as its
/// `stype` and its address. The caller matches the stypes it knows and makes
/// any other one an error with [`crate::api::unknown_stype`].
///
/// # Safety
/// `next` is null or points to a chain of structs that each start with
/// `stype` and `pNext` (the API contract for every `pNext`), valid while the
/// iterator and the pointers it gives are used.
pub unsafe fn chain(next: *const c_void) -> impl Iterator<Item = (ze_structure_type_t, *mut c_void)> {
    let mut next = next.cast::<ze_base_desc_t>();
    std::iter::from_fn(move || {
        // SAFETY: a non-null link starts with stype and pNext (this function's contract).
        let base = unsafe { next.as_ref() }?;
        let item = (base.stype, next.cast_mut().cast());
        next = base.pNext.cast();
        Some(item)
    })
}

/// Checks the `pNext` of a struct that takes no extension structure here:
/// anything chained is [`crate::api::unknown_stype`].
///
/// # Safety
/// As for [`chain`].
pub unsafe fn unchained(next: *const c_void) -> ZeResult {
    // SAFETY: forwarded from this function's contract.
    match unsafe { chain(next) }.next() {
        Some((stype, _)) => Err(crate::api::unknown_stype(stype)),
        None => Ok(()),
    }
}
