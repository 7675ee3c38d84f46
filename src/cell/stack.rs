//! `Vec::push` for the release hot path: std's out-of-line `push_mut` (which the LTO build
//! did not inline there) cost a call, a spill of the connection and a copy.

/// Pushes `x` onto `v`, growing it with `grow` (out of line) first when it is full.
#[inline(always)]
pub(crate) fn push<T>(v: &mut Vec<T>, x: T, grow: impl FnOnce(&mut Vec<T>)) {
    if v.len() == v.capacity() {
        grow(v);
    }
    let len = v.len();
    assert!(len < v.capacity());
    // SAFETY: slot `len` is within the capacity (checked above) and uninitialised; it is
    // counted in the length only once written.
    unsafe {
        v.as_mut_ptr().add(len).write(x);
        v.set_len(len + 1);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pushes_in_order_across_growth_and_refuses_a_grow_that_makes_no_room() {
        let mut v = Vec::new();
        for i in 0..10 {
            super::push(&mut v, i, |v| v.reserve(1));
        }
        assert_eq!(v, (0..10).collect::<Vec<_>>());
        let full = std::panic::catch_unwind(|| {
            let mut v = vec![1];
            v.shrink_to_fit();
            super::push(&mut v, 2, |_| {});
        });
        assert!(full.is_err());
    }
}
