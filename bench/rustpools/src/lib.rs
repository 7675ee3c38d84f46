//! C-callable shims over the real crates the benchmark compares libconnpool with. Each
//! shim is what a C proxy would write to use the crate: the fd travels as the crate's
//! connection type, and the functions mirror libconnpool's results (an fd or -ENOENT on
//! acquire; 0 on release). A panic in an `extern "C"` function aborts (Rust 1.81+).

use std::ffi::{c_char, CStr};

mod pingora;
mod rws;

/// The key as the crates take it, or None for NULL / not UTF-8 / empty.
///
/// # Safety
/// key is NULL or a NUL-terminated string.
unsafe fn key_arg<'a>(key: *const c_char) -> Option<&'a str> {
    if key.is_null() {
        return None;
    }
    CStr::from_ptr(key).to_str().ok().filter(|k| !k.is_empty())
}
