//! A fixed directory of lazily allocated chunks that are never freed, for a `static` read
//! without locks (also in fork() children).

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// A fixed directory of lazily allocated chunks that are never freed: meant for a `static`.
/// Readers never wait: two threads that allocate the same chunk race with a compare-and-swap
/// and the loser frees its copy.
pub struct ChunkDir<T, const N: usize> {
    dir: [AtomicPtr<T>; N],
    /// One more than the highest index ever allocated, so scans stop early.
    end: AtomicUsize,
}

impl<T, const N: usize> ChunkDir<T, N> {
    pub const fn new() -> Self {
        ChunkDir {
            dir: [const { AtomicPtr::new(std::ptr::null_mut()) }; N],
            end: AtomicUsize::new(0),
        }
    }

    /// The chunk at `i`, if allocated. `i` must be below `N`.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&T> {
        let p = self.dir[i].load(Ordering::Acquire);
        // SAFETY: non-null pointers in `dir` come from `Box::into_raw` and are never freed.
        unsafe { p.as_ref() }
    }

    /// The chunk at `i`, allocated with `init` if it is not yet. `i` must be below `N`.
    #[inline]
    pub fn get_or_init(&self, i: usize, init: impl FnOnce() -> Box<T>) -> &T {
        match self.get(i) {
            Some(c) => c,
            None => self.init(i, init),
        }
    }

    #[cold]
    fn init(&self, i: usize, init: impl FnOnce() -> Box<T>) -> &T {
        let new = Box::into_raw(init());
        let won = self.dir[i].compare_exchange(
            std::ptr::null_mut(),
            new,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        let p = match won {
            Ok(_) => {
                self.end.fetch_max(i + 1, Ordering::AcqRel);
                new
            }
            Err(theirs) => {
                // SAFETY: `new` is ours and was never shared.
                drop(unsafe { Box::from_raw(new) });
                theirs
            }
        };
        // SAFETY: non-null, from `Box::into_raw`, never freed.
        unsafe { &*p }
    }

    /// Every allocated chunk with its index.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        let end = self.end.load(Ordering::Acquire).min(N);
        (0..end).filter_map(move |i| self.get(i).map(|c| (i, c)))
    }
}

// SAFETY: chunks are shared by reference between threads and never freed.
unsafe impl<T: Send + Sync, const N: usize> Sync for ChunkDir<T, N> {}
