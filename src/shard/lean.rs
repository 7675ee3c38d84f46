//! The common case of acquire and release, for pools without a connection limit: one pass
//! over the key's entry under the lock, the connection moved once. Whatever is not the
//! common case (an expired connection to close, one to check, a full key, a drained loan,
//! a key with no entry yet on release) changes nothing and returns `None`/`Err`: the
//! caller then takes the full path (`hot.rs`), which handles everything.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Entry, ShardGuard};
use crate::conn::Conn;
use crate::key::key_eq;

/// What a lean acquire found.
pub(crate) enum Popped<T> {
    /// The key's most recently released connection, now lent, as the caller's `out` made
    /// it (the fd and its state, or the whole connection).
    Hit(T),
    /// That connection, taken out to be checked (outside the lock) before it is handed out:
    /// counted as lent, not yet as a hit ([`ShardGuard::checked_hit`], or the full path's
    /// `checked` if it is dead); its key's drain epoch.
    Check(Conn, u16),
    /// None idle (counted as a miss): the caller connects.
    Miss,
}

impl ShardGuard<'_> {
    /// Acquire: takes the key's most recently released connection, unless the key may hold
    /// an expired one at `now(earliest)` (`None`: nothing changed). `check`: whether it must
    /// be checked first ([`Popped::Check`]); otherwise `lend` records the loan (the key's
    /// drain epoch given) before the lock is released.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn pop_lean<T>(
        &mut self,
        hash: u64,
        key: &[u8],
        place: Option<&AtomicUsize>,
        now: impl FnOnce(u64) -> u64,
        check: impl FnOnce(&Conn) -> bool,
        lend: impl FnOnce(&Conn, u16),
        out: impl FnOnce(Conn) -> T,
    ) -> Option<Popped<T>> {
        debug_assert_eq!(self.shard.limit, 0);
        let st = &mut *self.st;
        let Some(e) = find(&mut st.table, &mut st.places, hash, key, place) else {
            st.counters.misses += 1;
            return Some(Popped::Miss);
        };
        if e.earliest() <= now(e.earliest()) {
            return None;
        }
        let Some(c) = e.pop() else {
            e.count_miss();
            return Some(Popped::Miss);
        };
        e.lent += 1;
        let popped = if check(&c) {
            Popped::Check(c, e.drains())
        } else {
            e.count_hit();
            lend(&c, e.drains());
            Popped::Hit(out(c))
        };
        let emptied = e.is_empty();
        st.idle -= 1;
        if emptied {
            st.empty += 1; // kept for the next release (see sweep_empty)
            self.sweep_empty();
        }
        Some(popped)
    }

    /// A connection taken out by [`Popped::Check`] passed its check: a hit of its key (of
    /// the shard, if its entry was swept meanwhile: the totals stay exact). The entry is
    /// found by its keyed hash alone, as the loans' bookkeeping finds it.
    pub fn checked_hit(&mut self, hash: u64) {
        let st = &mut *self.st;
        match st.table.find_mut(hash, |e| e.hash == hash) {
            Some(e) => e.count_hit(),
            None => st.counters.hits += 1,
        }
    }

    /// Release: stores `conn` as an idle connection of its key if the key has an entry,
    /// holds fewer than `max`, and nothing of it can have expired at `now(earliest)`.
    /// `key_drains`: the key's drain epoch at the loan, for a connection it lent (`None`:
    /// a new connection); a loan from before a drain is the full path's to close. `Err`:
    /// nothing changed, `conn` given back.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn push_lean(
        &mut self,
        hash: u64,
        key: &[u8],
        place: Option<&AtomicUsize>,
        conn: Conn,
        key_drains: Option<u16>,
        max: usize,
        now: impl FnOnce(u64) -> u64,
    ) -> Result<(), Conn> {
        debug_assert_eq!(self.shard.limit, 0);
        let st = &mut *self.st;
        let Some(e) = find(&mut st.table, &mut st.places, hash, key, place) else {
            return Err(conn); // a key's first connection makes its entry on the full path
        };
        let returns = match key_drains {
            Some(d) if e.lent > 0 => {
                if d != e.drains() {
                    return Err(conn);
                }
                true
            }
            _ => false,
        };
        if e.len() >= max || e.earliest() <= now(e.earliest()) {
            return Err(conn);
        }
        e.lent -= u32::from(returns);
        let was_empty = e.is_empty();
        e.push(conn);
        e.count_pooled();
        st.empty -= usize::from(was_empty);
        st.idle += 1;
        Ok(())
    }
}

/// The key's entry, found where it was last found: by a key handle's guess (`place`),
/// checked by the keyed 64-bit hash and the length (as the loans' bookkeeping tells keys
/// apart, see `find_hash`), or by the shard's guess for string keys (`places`, a few per
/// shard by hash bits, each tagged with the low half of the hash it was made for: with many
/// keys most guesses are another key's, and the tag turns them down without touching the
/// table), checked by hash and key. A guess is a slab slot, so a right one touches the
/// entry alone, not the table (a cache miss or two with many keys); entries keep their slot
/// until a removal moves another into a hole; a wrong guess costs the probe it was to
/// spare, and is corrected.
#[inline(always)]
fn find<'t>(
    table: &'t mut super::entries::Entries,
    places: &mut [u64; super::PLACES],
    hash: u64,
    key: &[u8],
    place: Option<&AtomicUsize>,
) -> Option<&'t mut Entry> {
    match place {
        Some(place) => {
            let guess = place.load(Ordering::Relaxed);
            let check = |e: &Entry| e.hash == hash && e.key.len() == key.len();
            let (e, found) = table.guess_mut(guess, check, hash, |e| key_eq(&e.key, key))?;
            if let Some(at) = found {
                place.store(at, Ordering::Relaxed);
            }
            Some(e)
        }
        None => {
            let slot = &mut places[(hash >> 48) as usize % super::PLACES];
            let tag = hash & 0xffff_ffff;
            let guess = if *slot >> 32 == tag {
                (*slot & 0xffff_ffff) as usize
            } else {
                usize::MAX // no slot
            };
            let check = |e: &Entry| e.hash == hash && key_eq(&e.key, key);
            let (e, found) = table.guess_mut(guess, check, hash, |e| key_eq(&e.key, key))?;
            if let Some(at) = found.and_then(|at| u64::try_from(at).ok()) {
                *slot = tag << 32 | at.min(0xffff_ffff);
            }
            Some(e)
        }
    }
}
