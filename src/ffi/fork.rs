//! fork() safety. A child process inherits copies of the parent's pooled sockets; if it used
//! them, two processes would share one TCP stream and interleave requests and responses.
//!
//! - A `pthread_atfork` child handler closes, in the child, every fd a pool owns (the table in
//!   `crate::fds`, read without locks: another parent thread may have held any pool lock at
//!   the moment of the fork, and in the child that lock stays held forever). It uses
//!   `close`, never `shutdown`, which would end the stream for the parent too.
//! - It also bumps a process generation. Each pool remembers the generation it was built
//!   in and compares it on every call (one atomic load, no syscall); a pool that finds itself
//!   in a child replaces its shards with fresh, empty ones (see `Pool::state`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static GENERATION: AtomicU64 = AtomicU64::new(0);
static REGISTERED: AtomicBool = AtomicBool::new(false);

/// The fork generation of this process: 0 in a process that never forked, +1 per fork().
#[inline]
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

/// Installs the child handler, once per process. Lock-free (an atomic flag, not a `Once`,
/// which a child could inherit half-run).
pub fn register() {
    if !REGISTERED.swap(true, Ordering::AcqRel) {
        // SAFETY: `child` is a valid handler for the life of the process (the library is
        // linked with -z nodelete, so a dlclose() does not unmap it).
        let rc = unsafe { libc::pthread_atfork(None, None, Some(child)) };
        if rc != 0 {
            // ENOMEM: without the handler, pools still detect the fork on their next call
            // and start empty; only the eager close of the child's copies is lost.
            REGISTERED.store(false, Ordering::Release);
        }
    }
}

/// Runs in the child right after fork(), with only the forking thread alive.
extern "C" fn child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
    crate::fds::close_all_pooled(|fd| {
        // SAFETY: the table says a pool owns `fd` (in this process: the child's copy).
        unsafe { libc::close(fd) };
    });
}
