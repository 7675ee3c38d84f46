//! Noticing a new process: a `pthread_atfork` child handler, and a page that the kernel
//! zeroes in every child (`MADV_WIPEONFORK`, Linux 4.14+), which also catches the children
//! that run no atfork handler (`_Fork()`, a raw `clone`, a copy of the library loaded with
//! `dlmopen`, whose handler is registered with a libc that `fork()` does not run).

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// Where the page is mapped (null until [`ForkMarker::get`] maps it or where it cannot be).
static PAGE: AtomicPtr<AtomicU64> = AtomicPtr::new(std::ptr::null_mut());
/// Set once mapping was tried and failed: the fallback word is used from then on.
static NO_PAGE: AtomicU64 = AtomicU64::new(0);
/// The word used where the kernel cannot wipe a page (never zeroed by a fork).
static FALLBACK: AtomicU64 = AtomicU64::new(0);

/// A word that reads 0 in a new child process (when the kernel wipes it) and whatever the
/// process stored there otherwise.
#[derive(Debug, Clone, Copy)]
pub struct ForkMarker {
    word: &'static AtomicU64,
}

impl ForkMarker {
    /// The marker, mapping its page on first use. Lock-free (used in fork children, where
    /// any lock may have been held by a thread that does not exist there).
    pub fn get() -> ForkMarker {
        let p = PAGE.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: a non-null PAGE points into a page mapped below and never unmapped.
            return ForkMarker {
                word: unsafe { &*p },
            };
        }
        if NO_PAGE.load(Ordering::Acquire) != 0 {
            return ForkMarker { word: &FALLBACK };
        }
        Self::map()
    }

    #[cold]
    fn map() -> ForkMarker {
        let size = 4096;
        // SAFETY: a fresh anonymous private mapping; madvise on it.
        let page = unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                None
            } else if libc::madvise(p, size, libc::MADV_WIPEONFORK) != 0 {
                libc::munmap(p, size);
                None
            } else {
                Some(p.cast::<AtomicU64>())
            }
        };
        let Some(page) = page else {
            NO_PAGE.store(1, Ordering::Release);
            return ForkMarker::get();
        };
        if PAGE
            .compare_exchange(
                std::ptr::null_mut(),
                page,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            // SAFETY: ours, never shared: another thread mapped first.
            unsafe { libc::munmap(page.cast(), size) };
        }
        ForkMarker::get()
    }

    /// The word.
    #[inline]
    pub fn word(&self) -> &'static AtomicU64 {
        self.word
    }
}

/// Registers `child` to run in the child process right after every `fork()`. False if
/// it could not be registered (ENOMEM).
pub fn atfork_child(child: extern "C" fn()) -> bool {
    // SAFETY: `child` stays valid for the life of the process (the library is linked with
    // -z nodelete, so a dlclose() does not unmap it).
    unsafe { libc::pthread_atfork(None, None, Some(child)) == 0 }
}
