//! Two lock-free cells whose values are never freed while readers may hold them. They are
//! the only shared pointers in the crate; everything built on them is safe code.
//!
//! Lock-free, not `OnceLock` or a mutex, because both are used after `fork()`: a child
//! process inherits a lock or a `Once` in whatever state another parent thread left it, and
//! waiting on it there would deadlock forever.

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// A value that can be replaced; replaced values are leaked, never freed, so a reference
/// handed out earlier stays valid for as long as the cell lives.
pub struct Current<T> {
    ptr: AtomicPtr<T>,
}

impl<T> Current<T> {
    pub fn new(value: T) -> Self {
        Current {
            ptr: AtomicPtr::new(Box::into_raw(Box::new(value))),
        }
    }

    #[inline]
    pub fn get(&self) -> &T {
        // SAFETY: `ptr` always comes from `Box::into_raw` and is freed only by `drop`, which
        // takes `&mut self`, so no reference from `get` can outlive it. Replaced values are
        // leaked, so references to them stay valid too.
        unsafe { &*self.ptr.load(Ordering::Acquire) }
    }

    /// Installs `value` and returns it; the previous value is leaked, never dropped. Used
    /// once per `fork()` per pool: what it leaks is a small fixed size, kept reachable from
    /// a static list so that leak checkers see it as retained on purpose.
    pub fn replace(&self, value: T) -> &T {
        let new = Box::into_raw(Box::new(value));
        let old = self.ptr.swap(new, Ordering::AcqRel);
        retain_forever(old.cast());
        // SAFETY: as in `get`.
        unsafe { &*new }
    }
}

impl<T> Drop for Current<T> {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `Box::into_raw`; `&mut self` proves no reference from
        // `get`/`replace` is alive.
        drop(unsafe { Box::from_raw(*self.ptr.get_mut()) });
    }
}

/// Values replaced in a [`Current`], kept reachable forever.
struct Retired {
    #[allow(dead_code)] // only there to be found by a leak checker
    value: *mut (),
    next: *mut Retired,
}

static RETIRED: AtomicPtr<Retired> = AtomicPtr::new(std::ptr::null_mut());

fn retain_forever(value: *mut ()) {
    let node = Box::into_raw(Box::new(Retired {
        value,
        next: std::ptr::null_mut(),
    }));
    let mut head = RETIRED.load(Ordering::Acquire);
    loop {
        // SAFETY: `node` is ours until the compare-and-swap publishes it.
        unsafe { (*node).next = head };
        match RETIRED.compare_exchange_weak(head, node, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return,
            Err(h) => head = h,
        }
    }
}

// SAFETY: `Current<T>` hands out `&T` to every thread, like `Arc<T>`.
unsafe impl<T: Send + Sync> Send for Current<T> {}
unsafe impl<T: Send + Sync> Sync for Current<T> {}

/// A fixed directory of lazily allocated chunks that are never freed: meant for a `static`.
/// Readers never wait: two threads that allocate the same chunk race with a compare-and-swap
/// and the loser frees its copy.
pub struct Chunks<T, const N: usize> {
    dir: [AtomicPtr<T>; N],
    /// One more than the highest index ever allocated, so scans stop early.
    end: AtomicUsize,
}

impl<T, const N: usize> Chunks<T, N> {
    pub const fn new() -> Self {
        Chunks {
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
unsafe impl<T: Send + Sync, const N: usize> Sync for Chunks<T, N> {}
