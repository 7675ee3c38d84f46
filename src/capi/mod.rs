//! The C ABI: every exported function, and the only `extern "C"` in the crate. cbindgen
//! reads every file of this module (see build.rs) into `include/connpool.h`, so the doc
//! comments here are written for C readers: plain prose, results and fd ownership per
//! function; the conventions common to all (pointer rules, errors, threads, fork, the
//! ownership contract) are written once, in the header's preamble (cbindgen.toml).
//!
//! Every exported function runs its whole body through [`boundary!`]: a panic (an internal
//! bug) is caught there and turned into a documented error value instead of unwinding into
//! C. A test below checks that no export skips it.
#![allow(unsafe_code)]
#![allow(clippy::missing_safety_doc)] // the safety rules are the header's pointer rules

use std::ffi::{c_char, c_int};

use crate::key::{Key, MAX_KEY_LEN};
use crate::pool::Pool;

// In the order the header presents them (cbindgen follows these declarations); one group
// each, so that rustfmt keeps the order.
mod lifecycle;

mod conn;

mod key;

mod limits;

mod config;

mod stats;

mod maintain;

mod watch;

mod sized;

pub use config::*;
pub use conn::*;
pub use key::*;
pub use lifecycle::*;
pub use limits::*;
pub use maintain::*;
pub use stats::*;
pub use watch::*;

/// Runs the body of an exported function; a panic (an internal bug) becomes `$on_panic`.
/// The default panic hook has already printed the message to stderr by then.
macro_rules! boundary {
    ($on_panic:expr, $body:expr) => {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| $body)).unwrap_or($on_panic)
    };
}
pub(crate) use boundary;

/// Returned (negated) by int functions if an internal bug panicked: the call had no effect
/// other than closing an fd it was given.
pub(crate) const PANIC_ERRNO: c_int = libc::ENOTRECOVERABLE;

/// A pool of idle connections. Opaque: create it with connpool_new_with_config(),
/// connpool_new() or connpool_new_default() and destroy it with connpool_free().
#[allow(non_camel_case_types)]
pub struct connpool {
    /// Shared with the reaper thread (weakly), if there is one.
    pool: std::sync::Arc<Pool>,
}

fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns the calling thread's errno slot, always valid.
    unsafe { *libc::__errno_location() = e };
}

/// Reads a C key: at most MAX_KEY_LEN + 1 bytes are looked at, so a huge or unterminated
/// key past that length is rejected without being read to its end.
///
/// Safety: key is NULL or points to a NUL-terminated string, or to at least MAX_KEY_LEN + 1
/// readable bytes.
unsafe fn key_arg<'a>(key: *const c_char) -> Option<Key<'a>> {
    if key.is_null() {
        return None;
    }
    let len = libc::strnlen(key, MAX_KEY_LEN + 1);
    Key::new(std::slice::from_raw_parts(key.cast::<u8>(), len)).ok()
}

/// Safety: pool is NULL or a live pool from connpool_new*.
unsafe fn pool_arg<'a>(pool: *const connpool) -> Option<&'a Pool> {
    pool.as_ref().map(|p| &*p.pool)
}

#[cfg(test)]
mod tests {
    /// Every exported function's body is one `boundary!` (so no export can unwind into C).
    #[test]
    fn every_export_goes_through_the_boundary() {
        let files = [
            include_str!("config.rs"),
            include_str!("conn.rs"),
            include_str!("key.rs"),
            include_str!("limits.rs"),
            include_str!("lifecycle.rs"),
            include_str!("maintain.rs"),
            include_str!("stats.rs"),
            include_str!("watch.rs"),
        ];
        let mut exports = 0;
        for src in files {
            let mut rest = src;
            while let Some(i) = rest.find("#[no_mangle]") {
                rest = &rest[i..];
                let f = rest.find(" fn ").expect("an exported fn");
                let name: String = rest[f + 4..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let body = &rest[rest.find('{').expect("a body")..];
                let first = body[1..].trim_start();
                assert!(
                    first.starts_with("boundary!("),
                    "{name} does not start with boundary!"
                );
                exports += 1;
                rest = &rest[1..];
            }
        }
        assert!(exports >= 18, "only {exports} exports found");
    }
}
