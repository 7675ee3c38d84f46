//! A replaceable value whose replaced values are never freed. Lock-free, not a mutex, because
//! it is read after fork(): a child inherits a lock in whatever state another parent thread
//! left it, and waiting on it there would deadlock forever.

use std::sync::atomic::{AtomicPtr, Ordering};

/// A value that can be replaced; replaced values are leaked, never freed, so a reference
/// handed out earlier stays valid for as long as the cell lives.
pub struct SwapCell<T> {
    ptr: AtomicPtr<T>,
}

impl<T> SwapCell<T> {
    pub fn new(value: T) -> Self {
        SwapCell {
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

impl<T> Drop for SwapCell<T> {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `Box::into_raw`; `&mut self` proves no reference from
        // `get`/`replace` is alive.
        drop(unsafe { Box::from_raw(*self.ptr.get_mut()) });
    }
}

/// Values replaced in a [`SwapCell`], kept reachable forever.
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

// SAFETY: `SwapCell<T>` hands out `&T` to every thread, like `Arc<T>`.
unsafe impl<T: Send + Sync> Send for SwapCell<T> {}
unsafe impl<T: Send + Sync> Sync for SwapCell<T> {}
