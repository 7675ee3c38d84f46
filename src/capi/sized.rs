//! The `struct_size` rule for the structs that cross the boundary, so that they can grow at
//! the end without breaking binaries built against an older header:
//! - any `struct_size` from the size of the first released version of a struct on is
//!   accepted; smaller is -EINVAL;
//! - an input struct (connpool_config) is read up to `min(struct_size, sizeof)`: fields
//!   beyond the caller's size keep their defaults, and a larger struct (a newer header) is
//!   accepted when its bytes beyond what this library knows are all zero (up to
//!   [`MAX_STRUCT_SIZE`]: a larger struct_size is a lie, and reading it could crash);
//! - an output struct (connpool_conn_info, connpool_stats) is written up to
//!   `min(struct_size, sizeof)`, never beyond, and its `struct_size` is left as the caller
//!   set it.

use std::mem::size_of;

/// The largest struct_size an input struct may claim: far beyond any version of a struct.
pub(super) const MAX_STRUCT_SIZE: usize = 4096;

/// Reads the caller's `*src` over `ours` (which holds the defaults), by the rule above.
/// None when `struct_size` is below `first` or unknown trailing bytes are not zero.
///
/// Safety: `src` is valid for reads of its `struct_size` bytes (at least a `usize`).
pub(super) unsafe fn read_sized<T: Copy>(src: *const T, first: usize, mut ours: T) -> Option<T> {
    let size = std::ptr::read(src.cast::<usize>());
    if size < first || size > MAX_STRUCT_SIZE {
        return None;
    }
    let known = size_of::<T>();
    if size > known {
        let tail = std::slice::from_raw_parts(src.cast::<u8>().add(known), size - known);
        if tail.iter().any(|&b| b != 0) {
            return None;
        }
    }
    std::ptr::copy_nonoverlapping(
        src.cast::<u8>(),
        (&mut ours as *mut T).cast::<u8>(),
        size.min(known),
    );
    Some(ours)
}

/// Writes `value` to the caller's `*dst` by the rule above, leaving its `struct_size` (the
/// first field) as it is. False, with nothing written, when `struct_size` is below `first`.
///
/// Safety: `dst` is valid for reads of a `usize` and writes of its `struct_size` bytes.
pub(super) unsafe fn write_sized<T>(dst: *mut T, first: usize, value: &T) -> bool {
    let size = std::ptr::read(dst.cast::<usize>());
    if size < first {
        return false;
    }
    let n = size.min(size_of::<T>());
    let skip = size_of::<usize>();
    std::ptr::copy_nonoverlapping(
        (value as *const T).cast::<u8>().add(skip),
        dst.cast::<u8>().add(skip),
        n - skip,
    );
    true
}

/// Whether the caller's `*dst` has a `struct_size` this library accepts.
///
/// Safety: `dst` is valid for reads of a `usize`.
pub(super) unsafe fn size_ok<T>(dst: *const T, first: usize) -> bool {
    std::ptr::read(dst.cast::<usize>()) >= first
}
