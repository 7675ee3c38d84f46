//! A shard's index from key hash to slab slot: open addressing with linear probing, each
//! 8-byte bucket holding the low half of the key's hash beside its slot number.
//!
//! Why not hashbrown: its control bytes and its buckets are two arrays, so with many keys a
//! lookup misses the cache twice before it reaches the entry; here the tag and the slot
//! share a bucket, and a probe run is one line (8 buckets). Growing rehashes the buckets
//! alone (a bucket's tag gives its home), never touching the entries. Removal shifts the
//! run back, so there are no tombstones and lookups never slow down with churn.
//!
//! A bucket's home is its tag's low bits: keys are hashed with a per-process secret
//! (`crate::key`), so a remote peer choosing keys cannot aim them at one run.

/// A free bucket. A slot number is below `u32::MAX` (the slab holds fewer entries).
const FREE: u64 = u64::MAX;
/// Buckets of a table that holds anything.
const MIN_BUCKETS: usize = 16;

/// Slot numbers by hash; each slot's hash is known to the caller, which checks it.
#[derive(Debug, Default)]
pub(super) struct Index {
    buckets: Box<[u64]>,
    len: usize,
}

/// The hash's low half: its low bits are the home, so a bucket's own bits tell keys with the
/// same home apart (the high half would not do: within a shard its bits 32..37 are equal).
#[inline(always)]
fn tag(hash: u64) -> u32 {
    hash as u32
}

#[inline(always)]
fn slot(b: u64) -> u32 {
    b as u32
}

/// Most entries `n` buckets hold: three quarters (a lookup that finds its key then reads 2.5
/// buckets on average, an insert's miss 8.5).
fn room(n: usize) -> usize {
    n / 4 * 3
}

impl Index {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Entries it holds without growing.
    pub fn capacity(&self) -> usize {
        room(self.buckets.len())
    }

    /// The bucket numbers of the run that starts at `hash`'s home, up to a free bucket.
    #[inline(always)]
    fn run(&self, hash: u64) -> impl Iterator<Item = (usize, u64)> + '_ {
        let mask = self.buckets.len().wrapping_sub(1);
        let home = tag(hash) as usize & mask;
        // Bounded: at most three quarters of the buckets are taken.
        (0..self.buckets.len())
            .map(move |d| (home + d) & mask)
            .map(|i| (i, self.buckets[i]))
            .take_while(|&(_, b)| b != FREE)
    }

    /// The slot `eq` accepts among those with `hash`'s tag.
    #[inline(always)]
    pub fn find(&self, hash: u64, eq: impl Fn(u32) -> bool) -> Option<u32> {
        let t = tag(hash);
        let mask = self.buckets.len().wrapping_sub(1);
        let mut i = t as usize & mask;
        // Bounded: a quarter of the buckets at least are free (none at all: `get` fails).
        loop {
            let b = *self.buckets.get(i)?;
            if b == FREE {
                return None;
            }
            if (b >> 32) as u32 == t && eq(slot(b)) {
                return Some(slot(b));
            }
            i = (i + 1) & mask;
        }
    }

    /// The slots with `hash`'s tag (other hashes among them: the caller checks).
    pub fn slots_tagged(&self, hash: u64) -> Vec<u32> {
        let t = u64::from(tag(hash));
        (self.run(hash).map(|(_, b)| b))
            .filter(|&b| b >> 32 == t)
            .map(slot)
            .collect()
    }

    /// Adds `slot` under `hash` (not there yet).
    pub fn insert(&mut self, hash: u64, slot: u32) {
        assert!(slot != u32::MAX, "fewer than 2^32 - 1 entries per shard");
        if self.len + 1 > self.capacity() {
            self.resize((self.buckets.len() * 2).max(MIN_BUCKETS));
        }
        self.put(u64::from(tag(hash)) << 32 | u64::from(slot));
        self.len += 1;
    }

    /// Stores bucket `b` in the first free bucket of its run (room is known to be there).
    fn put(&mut self, b: u64) {
        let mask = self.buckets.len() - 1;
        let mut i = (b >> 32) as usize & mask;
        while self.buckets[i] != FREE {
            i = (i + 1) & mask;
        }
        self.buckets[i] = b;
    }

    /// Removes `slot` (found under `hash`); false if it is not there.
    pub fn remove(&mut self, hash: u64, slot: u32) -> bool {
        let Some(mut hole) = self.bucket_of(hash, slot) else {
            return false;
        };
        // Backward shift: each later bucket of the run whose home is not after the hole
        // moves into it (cyclically), so that every run stays unbroken.
        let mask = self.buckets.len() - 1;
        let mut i = hole;
        loop {
            i = (i + 1) & mask;
            let b = self.buckets[i];
            if b == FREE {
                break;
            }
            let home = (b >> 32) as usize & mask;
            if (i.wrapping_sub(home) & mask) >= (i.wrapping_sub(hole) & mask) {
                self.buckets[hole] = b;
                hole = i;
            }
        }
        self.buckets[hole] = FREE;
        self.len -= 1;
        true
    }

    /// Renames `from` (found under `hash`) to `to`; false if `from` is not there.
    pub fn rename(&mut self, hash: u64, from: u32, to: u32) -> bool {
        let Some(i) = self.bucket_of(hash, from) else {
            return false;
        };
        self.buckets[i] = u64::from(tag(hash)) << 32 | u64::from(to);
        true
    }

    fn bucket_of(&self, hash: u64, slot: u32) -> Option<usize> {
        let b = u64::from(tag(hash)) << 32 | u64::from(slot);
        self.run(hash).find(|&(_, x)| x == b).map(|(i, _)| i)
    }

    /// Shrinks to room for `min` entries (at least, and at least those it holds).
    pub fn shrink_to(&mut self, min: usize) {
        let want = min.max(self.len);
        let mut n = MIN_BUCKETS;
        while room(n) < want {
            n *= 2;
        }
        if want == 0 {
            n = 0;
        }
        if n < self.buckets.len() {
            self.resize(n);
        }
    }

    fn resize(&mut self, n: usize) {
        let old = std::mem::replace(&mut self.buckets, vec![FREE; n].into_boxed_slice());
        for b in old.iter().copied().filter(|&b| b != FREE) {
            self.put(b);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A random stream for the shard's tests (xorshift64).
    pub(in crate::shard) fn xorshift(mut x: u64) -> u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^ x << 17
    }

    /// Against a map: inserts, renames, removals and shrinks, with hashes that share homes
    /// and tags (runs that wrap around the end included), leave every slot findable under
    /// its hash, and no other.
    #[test]
    fn behaves_as_a_map_of_slot_to_hash() {
        let mut ix = Index::default();
        let mut model: HashMap<u32, u64> = HashMap::new();
        let mut x: u64 = 7;
        let mut next = 0u32;
        for step in 0..12_000u32 {
            x = xorshift(x);
            // Few tags, homes crowded at the top end (wrap-around), equal tags for other hashes.
            let hash = (x >> 40 & 3) << 40 | (0xffff_ffff - (x % 23));
            match x % 7 {
                0..=2 => {
                    ix.insert(hash, next);
                    model.insert(next, hash);
                    next += 1;
                }
                3 | 4 if !model.is_empty() => {
                    let s = *model.keys().nth(x as usize % model.len()).unwrap();
                    assert!(ix.remove(model[&s], s));
                    assert!(!ix.remove(model[&s], s));
                    model.remove(&s);
                }
                5 if !model.is_empty() => {
                    let s = *model.keys().nth(x as usize % model.len()).unwrap();
                    let h = model.remove(&s).unwrap();
                    assert!(ix.rename(h, s, next));
                    model.insert(next, h);
                    next += 1;
                }
                _ if step % 500 == 6 => ix.shrink_to(model.len() * 2),
                _ => {}
            }
            assert_eq!(ix.len(), model.len());
            assert!(ix.len() <= ix.capacity());
        }
        for (&s, &h) in &model {
            assert_eq!(ix.find(h, |x| x == s), Some(s));
            assert!(ix.slots_tagged(h).contains(&s));
        }
        let absent = model.keys().max().map_or(0, |m| m + 1);
        for &h in model.values() {
            assert_eq!(ix.find(h, |x| x == absent), None);
        }
        ix.shrink_to(0);
        assert_eq!(ix.len(), model.len());
    }

    /// Every bucket is reachable from its home without a free bucket between; no slot is
    /// named twice; `len` counts the buckets taken; one bucket at least is free.
    fn check(ix: &Index) {
        let n = ix.buckets.len();
        let mut seen = std::collections::HashSet::new();
        for (i, &b) in ix.buckets.iter().enumerate().filter(|&(_, &b)| b != FREE) {
            assert!(seen.insert(slot(b)), "slot {} twice", slot(b));
            let mut j = (b >> 32) as usize & (n - 1);
            while j != i {
                assert_ne!(ix.buckets[j], FREE, "run broken before bucket {i}");
                j = (j + 1) & (n - 1);
            }
        }
        assert_eq!(seen.len(), ix.len);
        assert!(n == 0 || ix.len < n);
    }

    /// Random inserts, removals, renames and shrinks (half the seeds with a few homes at the
    /// top end, so runs wrap) keep the invariants after each step, every slot findable.
    #[test]
    fn invariants_hold_after_every_step() {
        for seed in 1..17u64 {
            let (mut ix, mut model) = (Index::default(), HashMap::<u32, u64>::new());
            let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut next = 0u32;
            for step in 0..1500 {
                x = xorshift(x);
                let hash = if seed % 2 == 0 {
                    (x >> 20) << 32 | (u64::from(u32::MAX) - x % (1 + seed % 9))
                } else {
                    x
                };
                let pick =
                    |m: &HashMap<u32, u64>| *m.keys().nth((x >> 3) as usize % m.len()).unwrap();
                match x % 11 {
                    0..=4 => {
                        ix.insert(hash, next);
                        model.insert(next, hash);
                        next += 1;
                    }
                    5..=7 if !model.is_empty() => {
                        let s = pick(&model);
                        assert!(ix.remove(model[&s], s));
                        model.remove(&s);
                    }
                    8 if !model.is_empty() => {
                        let s = pick(&model);
                        let h = model.remove(&s).unwrap();
                        assert!(ix.rename(h, s, next));
                        model.insert(next, h);
                        next += 1;
                    }
                    9 => ix.shrink_to((x >> 5) as usize % (model.len() + 3)),
                    _ => {}
                }
                check(&ix);
                for (&s, &h) in model.iter().filter(|_| step % 25 == 0) {
                    assert_eq!(ix.find(h, |y| y == s), Some(s));
                }
            }
        }
    }

    /// The one slot number a bucket cannot hold (it would read as free) is refused.
    #[test]
    fn the_free_marker_is_no_slot() {
        let mut ix = Index::default();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ix.insert(u64::MAX, u32::MAX)
        }));
        assert!(r.is_err());
        ix.insert(u64::MAX, u32::MAX - 1);
        assert_eq!(ix.find(u64::MAX, |_| true), Some(u32::MAX - 1));
        check(&ix);
    }

    #[test]
    fn grows_and_shrinks_with_its_entries() {
        let mut ix = Index::default();
        assert_eq!(ix.capacity(), 0);
        let hash = |n: u64| n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for n in 0..10_000u32 {
            ix.insert(hash(n.into()), n);
        }
        assert!(ix.capacity() >= 10_000 && ix.capacity() < 40_000);
        for n in 100..10_000u32 {
            assert!(ix.remove(hash(n.into()), n));
        }
        ix.shrink_to(200);
        assert!(
            ix.capacity() >= 200 && ix.capacity() < 800,
            "{}",
            ix.capacity()
        );
        for n in 0..100u32 {
            assert_eq!(ix.find(hash(n.into()), |s| s == n), Some(n));
        }
        for n in 0..100u32 {
            assert!(ix.remove(hash(n.into()), n));
        }
        ix.shrink_to(0);
        assert_eq!((ix.len(), ix.capacity()), (0, 0));
        assert_eq!(ix.find(hash(1), |_| true), None);
    }
}
