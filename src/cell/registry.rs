//! An append-only set of values found by hash, lock-free: a fixed array of buckets, each a
//! singly linked list that only ever grows at its head by compare-and-swap. Lock-free
//! because a fork() child uses it while a parent thread may have been halfway through an
//! insert (a node allocated but not yet linked is simply not there). Values live until the
//! set is dropped, so references to them stay valid for as long as the set does.
//!
//! The array is large and allocated zeroed, so the kernel backs only the pages of buckets
//! in use: few values cost a few pages, many values keep short lists.

use std::sync::atomic::{AtomicPtr, Ordering};

struct Node<T> {
    value: T,
    next: *mut Node<T>,
}

pub struct Registry<T> {
    buckets: Box<[AtomicPtr<Node<T>>]>,
}

impl<T> Registry<T> {
    /// A set with `buckets` lists (rounded up to a power of two).
    pub fn new(buckets: usize) -> Self {
        let n = buckets.next_power_of_two();
        let layout = std::alloc::Layout::array::<AtomicPtr<Node<T>>>(n).expect("a sane size");
        // SAFETY: a zeroed AtomicPtr is a valid null pointer; the slice owns the allocation
        // made with its own layout (Box frees it with the same). alloc_zeroed gets large
        // blocks from mmap, whose untouched pages cost no memory.
        let buckets = unsafe {
            let p = std::alloc::alloc_zeroed(layout).cast::<AtomicPtr<Node<T>>>();
            if p.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, n))
        };
        Registry { buckets }
    }

    /// The value with hash `hash` that `matches` accepts, inserting `make()` if there is
    /// none. Two threads inserting the same value at once get the same one.
    pub fn get_or_insert(
        &self,
        hash: u64,
        matches: impl Fn(&T) -> bool,
        make: impl FnOnce() -> T,
    ) -> &T {
        let bucket = &self.buckets[(hash >> 7) as usize & (self.buckets.len() - 1)];
        let mut head = bucket.load(Ordering::Acquire);
        // Nodes from `head` down to `seen` are not yet scanned (null: the whole list).
        let mut seen: *mut Node<T> = std::ptr::null_mut();
        let mut make = Some(make);
        let mut mine: *mut Node<T> = std::ptr::null_mut();
        loop {
            let mut p = head;
            while p != seen {
                // SAFETY: nodes are linked only once complete and freed only by drop
                // (`&mut self`), so every node reachable from a bucket is live.
                let node = unsafe { &*p };
                if matches(&node.value) {
                    if !mine.is_null() {
                        // SAFETY: ours, never linked.
                        drop(unsafe { Box::from_raw(mine) });
                    }
                    return &node.value;
                }
                p = node.next;
            }
            if mine.is_null() {
                let value = (make.take().expect("made once"))();
                mine = Box::into_raw(Box::new(Node {
                    value,
                    next: std::ptr::null_mut(),
                }));
            }
            // SAFETY: ours until the compare-and-swap publishes it.
            unsafe { (*mine).next = head };
            match bucket.compare_exchange(head, mine, Ordering::AcqRel, Ordering::Acquire) {
                // SAFETY: linked now, and live until drop.
                Ok(_) => return unsafe { &(*mine).value },
                Err(newer) => {
                    seen = head;
                    head = newer;
                }
            }
        }
    }
}

impl<T> Drop for Registry<T> {
    fn drop(&mut self) {
        for bucket in self.buckets.iter_mut() {
            let mut p = *bucket.get_mut();
            while !p.is_null() {
                // SAFETY: every linked node came from Box::into_raw and is freed once, here.
                let node = unsafe { Box::from_raw(p) };
                p = node.next;
            }
        }
    }
}

// SAFETY: values are shared by reference between threads (like an Arc) and moved in once.
unsafe impl<T: Send + Sync> Send for Registry<T> {}
unsafe impl<T: Send + Sync> Sync for Registry<T> {}

impl<T> std::fmt::Debug for Registry<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads racing to insert the same values end up with one of each.
    #[test]
    fn racing_inserts_agree() {
        let r: Registry<(u64, std::thread::ThreadId)> = Registry::new(4);
        let firsts: Vec<Vec<usize>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..500u64)
                            .map(|v| {
                                let got = r.get_or_insert(
                                    v,
                                    |x| x.0 == v,
                                    || (v, std::thread::current().id()),
                                );
                                got as *const _ as usize
                            })
                            .collect()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for t in &firsts[1..] {
            assert_eq!(
                t, &firsts[0],
                "every thread got the same value for each key"
            );
        }
    }
}
