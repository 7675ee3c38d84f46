//! The common case of acquire and release, for pools without a connection limit: one pass
//! over the key's entry under the lock, the connection moved once. Whatever is not the
//! common case (an expired connection to close, one to check, a full key, a drained loan,
//! a key with no entry yet on release) changes nothing and returns `None`/`Err`: the
//! caller then takes the full path (`hot.rs`), which handles everything.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Entry, ShardGuard};
use crate::conn::Conn;
use crate::key::key_eq;

/// What a lean acquire found.
pub(crate) enum Popped {
    /// The key's most recently released connection, now lent: its fd and state.
    Hit(OwnedFd, usize),
    /// None idle (counted as a miss): the caller connects.
    Miss,
}

impl ShardGuard<'_> {
    /// Acquire: takes the key's most recently released connection unless it must be
    /// checked first (`check`), or the key may hold an expired one at `now(earliest)`;
    /// `lend` records the loan (the key's drain epoch given) before the lock is released.
    /// `None`: nothing changed.
    #[inline(always)]
    pub fn pop_lean(
        &mut self,
        hash: u64,
        key: &[u8],
        place: Option<&AtomicUsize>,
        now: impl FnOnce(u64) -> u64,
        check: impl FnOnce(&Conn) -> bool,
        lend: impl FnOnce(&Conn, u16),
    ) -> Option<Popped> {
        debug_assert_eq!(self.shard.limit, 0);
        let st = &mut *self.st;
        let Some(e) = find(&mut st.table, hash, key, place) else {
            st.counters.misses += 1;
            return Some(Popped::Miss);
        };
        if e.earliest() <= now(e.earliest()) {
            return None;
        }
        let c = match e.top() {
            None => {
                e.counters.misses += 1;
                return Some(Popped::Miss);
            }
            Some(c) if check(c) => return None,
            Some(_) => e.pop()?,
        };
        e.lent += 1;
        e.counters.hits += 1;
        lend(&c, e.drains);
        let emptied = e.is_empty();
        st.idle -= 1;
        if emptied {
            st.empty += 1; // kept for the next release (see sweep_empty)
            self.sweep_empty();
        }
        Some(Popped::Hit(c.fd, c.ctx))
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
        let Some(e) = find(&mut st.table, hash, key, place) else {
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
) -> Option<&'t mut Entry> {
    let Some(place) = place else {
        return table.find_mut(hash, |e| key_eq(&e.key, key));
    };
    let guess = place.load(Ordering::Relaxed);
    let hit = table
        .get_bucket(guess)
        .is_some_and(|e| e.hash == hash && e.key.len() == key.len());
    let at = if hit {
        guess
    } else {
        let at = table.find_bucket_index(hash, |e| key_eq(&e.key, key))?;
        place.store(at, Ordering::Relaxed);
        at
    };
    table.get_bucket_mut(at)
}
