//! Threads: signals, cancellation, futexes.

use std::sync::atomic::AtomicU32;

// Not in the libc crate; the values are glibc's and musl's.
const PTHREAD_CANCEL_DISABLE: libc::c_int = 1;
extern "C" {
    fn pthread_setcancelstate(state: libc::c_int, oldstate: *mut libc::c_int) -> libc::c_int;
}

/// Blocks every signal in the calling thread (the reaper), so that process-directed
/// signals are delivered to the application's own threads.
pub fn block_all_signals() {
    // SAFETY: `set` is initialised by sigfillset before use.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Runs `f` with thread cancellation disabled (restored after), for the few calls that
/// glibc makes cancellation points and that have no raw equivalent (joining a thread) and
/// for calls into C code (callbacks), whose cancellation would unwind through Rust frames.
pub fn without_cancellation<R>(f: impl FnOnce() -> R) -> R {
    let mut old = 0;
    // SAFETY: `old` is a writable int; the state constants are valid.
    unsafe { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &mut old) };
    let r = f();
    // SAFETY: restores the state read above.
    unsafe { pthread_setcancelstate(old, std::ptr::null_mut()) };
    r
}

/// Sleeps while `word` holds `expected`, until woken by [`futex_wake`], or until the
/// CLOCK_MONOTONIC time `deadline_ns` (None: no deadline). Returns false on timeout. May
/// return early (a spurious wake, a signal, a changed word): callers re-check.
pub fn futex_wait(word: &AtomicU32, expected: u32, deadline_ns: Option<u64>) -> bool {
    let ts = deadline_ns.map(|t| libc::timespec {
        tv_sec: (t / 1_000_000_000) as libc::time_t,
        tv_nsec: (t % 1_000_000_000) as libc::c_long,
    });
    let tsp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned u32 for the call; FUTEX_WAIT_BITSET takes an
    // absolute CLOCK_MONOTONIC deadline (or NULL) and a match-any bitset.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT_BITSET | libc::FUTEX_PRIVATE_FLAG,
            expected,
            tsp,
            std::ptr::null::<u32>(),
            u32::MAX,
        )
    };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ETIMEDOUT)
}

/// Wakes up to `n` threads sleeping in [`futex_wait`] on `word`.
pub fn futex_wake(word: &AtomicU32, n: i32) {
    // SAFETY: as above; FUTEX_WAKE reads nothing through the pointer.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            n,
        )
    };
}
