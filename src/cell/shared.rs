//! A reference-counted pointer like `Arc`, whose last release synchronises by an acquire-
//! release read-modify-write instead of `Arc`'s release decrement plus acquire fence:
//! ThreadSanitizer does not see fences, and std (not instrumented) frees through one, so an
//! `Arc` handed between threads (a waiter served by another thread) is reported as a race.

use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Inner<T> {
    refs: AtomicUsize,
    value: T,
}

pub struct Shared<T> {
    ptr: NonNull<Inner<T>>,
}

impl<T> Shared<T> {
    pub fn new(value: T) -> Self {
        let inner = Box::new(Inner {
            refs: AtomicUsize::new(1),
            value,
        });
        Shared {
            ptr: NonNull::from(Box::leak(inner)),
        }
    }

    /// Whether both point to the same value.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        a.ptr == b.ptr
    }

    fn inner(&self) -> &Inner<T> {
        // SAFETY: the value lives while any `Shared` to it does, and this is one.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        self.inner().refs.fetch_add(1, Ordering::Relaxed);
        Shared { ptr: self.ptr }
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        if self.inner().refs.fetch_sub(1, Ordering::AcqRel) == 1 {
            // SAFETY: the last reference: nobody else can reach the value any more.
            drop(unsafe { Box::from_raw(self.ptr.as_ptr()) });
        }
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner().value
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner().value.fmt(f)
    }
}

// SAFETY: shared by reference between threads, as Arc.
unsafe impl<T: Send + Sync> Send for Shared<T> {}
unsafe impl<T: Send + Sync> Sync for Shared<T> {}
