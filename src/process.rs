//! Which process this is. A fork() child inherits copies of the parent's pooled sockets; if
//! it used them, two processes would share one TCP stream and interleave requests and
//! responses. So every pool call starts by reading the process generation (one load, no
//! system call) and a pool that finds itself in a new process starts afresh (see
//! `crate::pool`), after the child's copies of the pooled fds have been closed.
//!
//! The generation lives in a word the kernel zeroes in every child (`MADV_WIPEONFORK`,
//! `crate::sys::ForkMarker`), so a new process is noticed however it was made: `fork()`,
//! `_Fork()`, a raw `clone`, and by a copy of the library loaded with `dlmopen` too. A
//! `pthread_atfork` child handler does the same work at once after a plain `fork()`, and is
//! the only detector where the kernel cannot wipe a page (before Linux 4.14).
//!
//! The first call in a new process closes (`close()`, never `shutdown()`, which would end
//! the stream for the parent too) every fd the fd table says a pool owns, without taking any
//! lock: another parent thread may have held any pool lock at the fork, and in the child that
//! lock stays held forever. Not covered: `vfork` and `posix_spawn` children, which share or
//! replace the address space and normally exec at once (open sockets with `SOCK_CLOEXEC`).
//! Known window: the pool marks an fd as no longer its own just before it closes it; a fork
//! in between leaves the child a copy of that socket until the child exits or execs
//! (closing it there instead could close an unrelated file that reused the number).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::fd_table;
use crate::sys::{self, ForkMarker};

static REGISTERED: AtomicBool = AtomicBool::new(false);
/// The last generation given out in this line of processes (ordinary memory: a child
/// inherits it, so its generations differ from every one its parent used).
static LAST: AtomicU64 = AtomicU64::new(0);
/// The marker word while the first call in a new process closes the inherited fds.
const BUSY: u64 = u64::MAX;

/// Sets up fork detection, once per process; called before a pool is made. Lock-free (an
/// atomic flag, not a `Once`, which a child could inherit half-run).
pub fn register() {
    if !REGISTERED.swap(true, Ordering::AcqRel) && !sys::atfork_child(child) {
        // ENOMEM (never seen in practice): try again with the next pool; the marker page
        // still notices children.
        REGISTERED.store(false, Ordering::Release);
    }
    generation();
}

/// Whether `g` is this process's generation (one load: the hot path's fork check).
#[inline]
pub fn is_current(g: u64) -> bool {
    ForkMarker::get().word().load(Ordering::Acquire) == g
}

/// The generation of this process: never 0, different in every child.
#[inline]
pub fn generation() -> u64 {
    let g = ForkMarker::get().word().load(Ordering::Acquire);
    if g != 0 && g != BUSY {
        g
    } else {
        new_process()
    }
}

/// The marker reads 0: the first call in this process (the first pool ever, or a new child).
/// One thread does the work; others calling meanwhile wait for it (a few closes).
#[cold]
fn new_process() -> u64 {
    let word = ForkMarker::get().word();
    loop {
        match word.compare_exchange(0, BUSY, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                if LAST.load(Ordering::Relaxed) != 0 {
                    // Not the first process to use a pool: these are a parent's fds.
                    fd_table::close_all_pooled(sys::close_raw);
                }
                let g = LAST.fetch_add(1, Ordering::Relaxed) + 1;
                word.store(g, Ordering::Release);
                return g;
            }
            Err(BUSY) => std::thread::yield_now(),
            Err(g) => return g,
        }
    }
}

/// Runs in the child right after fork(), with only the forking thread alive. The marker
/// is already 0 where the kernel wipes it; clearing it covers the kernels that cannot.
extern "C" fn child() {
    ForkMarker::get().word().store(0, Ordering::Release);
    new_process();
}
