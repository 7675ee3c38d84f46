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
    /// `checked` if it is dead); the bucket its key's entry was in, and its drain epoch.
    Check(Conn, usize, u16),
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
        let Some((bucket, e)) = find(&mut st.table, hash, key, place) else {
            st.counters.misses += 1;
            return Some(Popped::Miss);
        };
        if e.earliest() <= now(e.earliest()) {
            return None;
        }
        let Some(c) = e.pop() else {
            e.counters.misses += 1;
            return Some(Popped::Miss);
        };
        e.lent += 1;
        let popped = if check(&c) {
            Popped::Check(c, bucket, e.drains)
        } else {
            e.counters.hits += 1;
            lend(&c, e.drains);
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

    /// A connection taken out by [`Popped::Check`] from the entry in `bucket` passed its
    /// check: a hit of its key (found again by hash if the table moved it, or of the shard
    /// if its entry was swept meanwhile: the totals stay exact).
    pub fn checked_hit(&mut self, bucket: usize, hash: u64) {
        let st = &mut *self.st;
        if let Some(e) = st.table.get_bucket_mut(bucket).filter(|e| e.hash == hash) {
            e.counters.hits += 1;
        } else if let Some(e) = st.table.find_mut(hash, |e| e.hash == hash) {
            e.counters.hits += 1;
        } else {
            st.counters.hits += 1;
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
        let Some((_, e)) = find(&mut st.table, hash, key, place) else {
            return Err(conn); // a key's first connection makes its entry on the full path
        };
        let returns = match key_drains {
            Some(d) if e.lent > 0 => {
                if d != e.drains {
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
        e.counters.pooled += 1;
        st.empty -= usize::from(was_empty);
        st.idle += 1;
        Ok(())
    }
}

/// The key's entry. `place`: a key handle's guess of its bucket (entries move only when
/// the table is resized or rehashed), checked by the keyed 64-bit hash and the length (as
/// the loans' bookkeeping tells keys apart, see `find_hash`), updated when wrong; so a
/// handle skips the probe, and a stale guess costs only the probe it saves.
#[inline(always)]
fn find<'t>(
    table: &'t mut hashbrown::HashTable<Entry>,
    hash: u64,
    key: &[u8],
    place: Option<&AtomicUsize>,
) -> Option<(usize, &'t mut Entry)> {
    let at = match place {
        None => table.find_bucket_index(hash, |e| key_eq(&e.key, key))?,
        Some(place) => {
            let guess = place.load(Ordering::Relaxed);
            let hit = table
                .get_bucket(guess)
                .is_some_and(|e| e.hash == hash && e.key.len() == key.len());
            if hit {
                guess
            } else {
                let at = table.find_bucket_index(hash, |e| key_eq(&e.key, key))?;
                place.store(at, Ordering::Relaxed);
                at
            }
        }
    };
    Some((at, table.get_bucket_mut(at)?))
}
