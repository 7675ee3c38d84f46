//! A shard's entries: a hash table of slot numbers into a dense slab of 128-byte slots, each
//! aligned to a cache line pair.
//!
//! Why not a table of boxed entries: malloc places 120-byte blocks 128 bytes apart at any
//! 16-byte offset, so two keys made one after the other share a cache line, and two threads
//! working on them (different keys, so different locks when in different shards) write it in
//! turn: a timed run of two threads on two keys showed half the throughput of one thread in
//! two runs of three. Aligned slots share no line; aligned heap blocks would cost twice the
//! memory (glibc's memalign), a slab costs none, and its table holds 4-byte slot numbers
//! instead of 8-byte pointers.
//!
//! The slab stays dense: a removed entry's slot gets the last entry (its table bucket is
//! rewritten), and it shrinks when under a quarter full, so memory follows the entries held.
//! One vector, not chunks: a lookup follows no chunk pointer (entries are named by number,
//! so the vector's moves when it grows are safe).

use super::index::Index;
use super::Entry;

/// The slab's least capacity when it shrinks.
const MIN_SLOTS: usize = 16;

#[derive(Debug)]
#[repr(align(64))]
struct Slot(Entry);

#[derive(Debug, Default)]
pub(super) struct Entries {
    table: Index,
    slots: Vec<Slot>,
}

#[inline(always)]
fn at(slots: &[Slot], i: u32) -> &Entry {
    &slots[i as usize].0
}

#[inline(always)]
fn at_mut(slots: &mut [Slot], i: u32) -> &mut Entry {
    &mut slots[i as usize].0
}

impl Entries {
    /// Entries held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Entries the table has room for without growing.
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    #[inline]
    pub fn find_mut(&mut self, hash: u64, eq: impl Fn(&Entry) -> bool) -> Option<&mut Entry> {
        let slots = &self.slots;
        let i = self.table.find(hash, |i| eq(at(slots, i)))?;
        Some(at_mut(&mut self.slots, i))
    }

    /// The entry in slot `guess` if `check` accepts it, else the one `eq` accepts (found by
    /// `hash`) and its slot, the next guess. A slot number stays right until an entry's
    /// removal moves the last one (a sweep, a purge): a guess costs no table access, which
    /// with many keys is a cache miss or two.
    #[inline(always)]
    pub fn guess_mut(
        &mut self,
        guess: usize,
        check: impl FnOnce(&Entry) -> bool,
        hash: u64,
        eq: impl Fn(&Entry) -> bool,
    ) -> Option<(&mut Entry, Option<usize>)> {
        let slots = &self.slots;
        let (i, found) = match slots.get(guess).filter(|s| check(&s.0)) {
            Some(_) => (guess, None),
            None => {
                let i = self.probe(hash, eq)? as usize;
                (i, Some(i))
            }
        };
        Some((&mut self.slots[i].0, found))
    }

    /// A wrong guess's lookup, out of line: the guessed path stays short.
    #[inline(never)]
    fn probe(&self, hash: u64, eq: impl Fn(&Entry) -> bool) -> Option<u32> {
        let slots = &self.slots;
        self.table.find(hash, |i| eq(at(slots, i)))
    }

    /// The entry `eq` accepts, or a new one made by `make`; whether it is new.
    #[inline]
    pub fn get_or_insert(
        &mut self,
        hash: u64,
        eq: impl Fn(&Entry) -> bool,
        make: impl FnOnce() -> Entry,
    ) -> (&mut Entry, bool) {
        let slots = &self.slots;
        if let Some(i) = self.table.find(hash, |i| eq(at(slots, i))) {
            return (at_mut(&mut self.slots, i), false);
        }
        // u32::MAX is no slot number (the index's free marker): checked before the push.
        let next = u32::try_from(slots.len())
            .ok()
            .filter(|&n| n < u32::MAX)
            .expect("fewer than 2^32 - 1 entries per shard");
        // The slot first: no bucket ever names a slot that is not there.
        self.slots.push(Slot(make()));
        self.table.insert(hash, next);
        (at_mut(&mut self.slots, next), true)
    }

    /// Removes the entry `eq` accepts.
    pub fn remove(&mut self, hash: u64, eq: impl Fn(&Entry) -> bool) -> Option<Entry> {
        let slots = &self.slots;
        let i = self.table.find(hash, |i| eq(at(slots, i)))?;
        self.table.remove(hash, i);
        Some(self.take(i))
    }

    /// Empties slot `i` (its bucket already removed): the last entry moves into it.
    fn take(&mut self, i: u32) -> Entry {
        let last = u32::try_from(self.slots.len() - 1).expect("slot numbers fit u32");
        let Slot(e) = self.slots.swap_remove(i as usize);
        if i != last {
            let hash = at(&self.slots, i).hash;
            assert!(self.table.rename(hash, last, i), "the moved entry's bucket");
        }
        let (len, cap) = (self.slots.len(), self.slots.capacity());
        if cap > MIN_SLOTS && len < cap / 4 {
            self.slots.shrink_to((len * 2).max(MIN_SLOTS));
        }
        e
    }

    /// Keeps the entries `keep` accepts (it may change any of them first); drops the rest.
    /// Nothing is removed before `keep` has seen every entry, so a panic in it leaves the
    /// table and the slab in step.
    pub fn retain(&mut self, mut keep: impl FnMut(&mut Entry) -> bool) {
        let mut gone = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if !keep(&mut s.0) {
                gone.push(u32::try_from(i).expect("slot numbers fit u32"));
            }
        }
        // Highest first: the last slot is then either one of them or a kept entry's.
        for &i in gone.iter().rev() {
            let hash = at(&self.slots, i).hash;
            assert!(self.table.remove(hash, i), "every slot has its bucket");
            drop(self.take(i));
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.slots.iter().map(|s| &s.0)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.slots.iter_mut().map(|s| &mut s.0)
    }

    /// Calls `f` on every entry whose key has the hash `hash`.
    pub fn for_hash(&mut self, hash: u64, mut f: impl FnMut(&mut Entry)) {
        for i in self.table.slots_tagged(hash) {
            let e = at_mut(&mut self.slots, i);
            if e.hash == hash {
                f(e);
            }
        }
    }

    /// Shrinks the table to room for `min` entries (at least).
    pub fn shrink_to(&mut self, min: usize) {
        self.table.shrink_to(min);
    }
}

#[cfg(test)]
mod tests {
    use super::super::index::tests::xorshift;
    use super::*;

    fn key(n: u64) -> Vec<u8> {
        format!("10.0.{}.{}:80", n / 256, n % 256).into_bytes()
    }

    /// The hash of key n: few distinct values, so that buckets collide.
    fn hash(n: u64) -> u64 {
        (n % 7).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    #[test]
    fn slots_are_cache_line_pairs_of_their_own() {
        assert_eq!(std::mem::size_of::<Slot>(), 128);
        assert_eq!(std::mem::align_of::<Slot>(), 64);
    }

    #[test]
    fn for_hash_visits_only_that_hash_not_its_bucket_neighbours() {
        // Same top 7 bits and low bits (the table's tag and probe start), other middle bits:
        // the table's own iteration by hash yields both (a check-out by hash for prune or
        // the reaper once took such a key's connections out too: checked for nothing).
        let (a, b) = (0x7f00_0000_0000_0001u64, 0x7f00_0010_0000_0001u64);
        let mut es = Entries::default();
        for (h, k) in [(a, b"a".as_slice()), (b, b"b")] {
            es.get_or_insert(h, |e| *e.key == *k, || Entry::new(h, k));
        }
        assert_eq!(
            es.table.slots_tagged(a).len(),
            2,
            "the premise: the table mixes them"
        );
        let mut seen = Vec::new();
        es.for_hash(a, |e| seen.push(e.key.to_vec()));
        assert_eq!(seen, vec![b"a".to_vec()]);
    }

    #[test]
    fn a_panic_in_retain_leaves_table_and_slab_in_step() {
        let mut es = Entries::default();
        for n in 0..40u64 {
            let (h, k) = (n.wrapping_mul(0x9e37_79b9_7f4a_7c15), key(n));
            es.get_or_insert(h, |e| *e.key == *k, || Entry::new(h, &k));
        }
        let mut seen = 0;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            es.retain(|_| {
                seen += 1;
                assert!(seen < 30, "a panic in keep");
                seen % 2 == 0
            })
        }));
        assert!(r.is_err());
        assert_eq!((es.len(), es.table.len()), (40, 40));
        for n in 0..40u64 {
            let (h, k) = (n.wrapping_mul(0x9e37_79b9_7f4a_7c15), key(n));
            assert!(es.remove(h, |e| *e.key == *k).is_some());
        }
        assert_eq!((es.len(), es.table.len()), (0, 0));
    }

    /// After every step each slot has exactly one bucket under its hash, and a guess of
    /// another key's live slot never yields that key.
    #[test]
    fn slab_and_index_stay_in_step() {
        let mut es = Entries::default();
        let mut x: u64 = 99;
        for step in 0..5000u64 {
            x = xorshift(x);
            let n = x % 500;
            let (h, k) = (hash(n) ^ (n % 3) << 40, key(n));
            match step % 4 {
                0 | 1 => drop(es.get_or_insert(h, |e| *e.key == *k, || Entry::new(h, &k))),
                2 => drop(es.remove(h, |e| *e.key == *k)),
                _ if step % 40 == 3 => {
                    es.retain(|e| (e.key.len() as u64 + x) % 3 != 0);
                    es.shrink_to(es.len() * 2);
                }
                _ => {
                    let guess = (x >> 9) as usize % (es.len() + 1);
                    let right = |e: &Entry| e.hash == h && *e.key == *k;
                    if let Some((e, _)) = es.guess_mut(guess, right, h, |e| *e.key == *k) {
                        assert_eq!(*e.key, *k);
                    }
                }
            }
            assert_eq!(es.table.len(), es.slots.len());
            for (i, s) in es.slots.iter().enumerate() {
                let named = es.table.slots_tagged(s.0.hash);
                assert_eq!(named.iter().filter(|&&x| x as usize == i).count(), 1);
            }
        }
    }

    #[test]
    fn inserts_finds_removes_and_retains_as_a_map_does() {
        let mut es = Entries::default();
        let mut model = std::collections::BTreeSet::new();
        let mut x: u64 = 1;
        for step in 0..6000u64 {
            x = xorshift(x);
            let n = x % 300;
            let (h, k) = (hash(n), key(n));
            match step % 5 {
                0 | 1 => {
                    let (e, new) = es.get_or_insert(h, |e| *e.key == *k, || Entry::new(h, &k));
                    assert_eq!(*e.key, *k);
                    assert_eq!(new, model.insert(n));
                }
                2 => {
                    let gone = es.remove(h, |e| *e.key == *k);
                    assert_eq!(gone.map(|e| e.key.to_vec()), model.take(&n).map(key));
                }
                3 => {
                    // A wrong guess finds it and names its slot; that slot is then right.
                    let wrong = |_: &Entry| false;
                    let found = es.guess_mut(usize::MAX, wrong, h, |e| *e.key == *k);
                    assert_eq!(found.is_some(), model.contains(&n));
                    if let Some((e, Some(b))) = found {
                        assert_eq!(*e.key, *k);
                        let (e, again) = es.guess_mut(b, |e| *e.key == *k, h, |_| false).unwrap();
                        assert_eq!((&*e.key, again), (&*k, None));
                    }
                }
                _ if step % 50 == 4 => {
                    es.retain(|e| e.key.len() % 2 == 0);
                    model.retain(|&n| key(n).len() % 2 == 0);
                    es.shrink_to(es.len() * 2);
                }
                _ => assert_eq!(
                    es.find_mut(h, |e| *e.key == *k).is_some(),
                    model.contains(&n)
                ),
            }
            assert_eq!(es.len(), model.len());
            let cap = es.slots.capacity();
            assert!(
                cap <= MIN_SLOTS || es.len() >= cap / 4,
                "{} of {cap}",
                es.len()
            );
        }
        let mut held: Vec<Vec<u8>> = es.iter().map(|e| e.key.to_vec()).collect();
        held.sort();
        let mut want: Vec<Vec<u8>> = model.iter().map(|&n| key(n)).collect();
        want.sort();
        assert_eq!(held, want);
        let mut seen = 0;
        es.for_hash(hash(3), |e| {
            assert_eq!(e.hash, hash(3));
            seen += 1;
        });
        assert_eq!(seen, model.iter().filter(|&&n| n % 7 == 3).count());
    }
}
