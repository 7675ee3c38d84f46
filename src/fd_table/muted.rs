//! The flags of fds watched in a pool's epoll sets (`crate::watch_set`): an fd's entry in a
//! set is registered once, one-shot, and disarmed by the kernel when the set reports it.
//! The flag in the fd's state word ("muted") says the entry is disarmed: while `POOLED`,
//! that the set found the idle connection ready (for the harvest check: suspect); while
//! `OUT`, that its release must re-arm it.
//!
//! Reports race with acquires and releases, which change the state without the set's lock.
//! The rule that keeps flag and entry in agreement: the report has disarmed the entry; the
//! set then flags it by compare-and-swap from the state it read ([`seen_readable`],
//! [`set_muted`]); if the state changed meanwhile, it re-arms the entry ([`Seen::Undo`])
//! and the next report looks afresh. A loan made while a flag is set, or set between an
//! acquire's look and the loan, carries it ([`lend_watched`] swaps, never stores).

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;

use super::{slot, Loan, BORN_SHIFT, MAX_BORN, MUTED_ANY, MUTED_HARVEST, OUT, POOLED, STATE_MASK};

/// [`super::lend`] for a pool with epoll sets: the state is swapped, not stored, so that a
/// flag set since the acquire looked at the fd is carried over to the loan.
#[inline]
pub fn lend_watched(fd: RawFd, pool_id: u32, loan: Loan) {
    let Some(slot) = slot(fd) else {
        return;
    };
    slot.meta.store(
        u64::from(pool_id) << 32 | u64::from(loan.uses),
        Ordering::Relaxed,
    );
    slot.key.store(loan.key, Ordering::Relaxed);
    slot.mark.store(loan.mark, Ordering::Relaxed);
    let out = loan.born.min(MAX_BORN) << BORN_SHIFT | OUT | (loan.muted & MUTED_ANY);
    let prev = slot.state.swap(out, Ordering::AcqRel);
    let carried = prev & MUTED_ANY & !out;
    if carried != 0 {
        slot.state.fetch_or(carried, Ordering::AcqRel);
    }
}

/// Whether `fd` is idle in a pool and a harvest found it readable (suspect).
#[inline]
pub fn is_suspect(fd: RawFd) -> bool {
    slot(fd).is_some_and(|s| {
        s.state.load(Ordering::Acquire) & (STATE_MASK | MUTED_HARVEST) == POOLED | MUTED_HARVEST
    })
}

/// Flags `fd` as suspect for the harvest check: claimed by a release (idle, not yet
/// stored) and found ready at it. A harvest may flag it too; either way it stays flagged.
pub fn flag_suspect(fd: RawFd) {
    if let Some(slot) = slot(fd) {
        if slot.state.load(Ordering::Acquire) & STATE_MASK == POOLED {
            slot.state.fetch_or(MUTED_HARVEST, Ordering::AcqRel);
        }
    }
}

/// Clears `flag` of `fd` if it is idle in a pool and flagged; true if it did (the caller
/// then re-arms the entry).
#[inline]
pub fn unflag_pooled(fd: RawFd, flag: u64) -> bool {
    let Some(slot) = slot(fd) else {
        return false;
    };
    let mut state = slot.state.load(Ordering::Acquire);
    while state & STATE_MASK == POOLED && state & flag != 0 {
        match slot.state.compare_exchange_weak(
            state,
            state & !flag,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return true,
            Err(now) => state = now, // the other set's flag, or a loan: look again
        }
    }
    false
}

/// Whether `fd` is idle in a pool and flagged by either set: suspect, or reported by the
/// idle watcher (whose report may come after the harvest that prune or reap ran first).
pub fn is_suspect_or_reported(fd: RawFd) -> bool {
    is_flagged_idle(fd, MUTED_ANY)
}

/// Whether `fd` is idle in a pool with `flag` set (a report nobody has settled yet).
pub fn is_flagged_idle(fd: RawFd, flag: u64) -> bool {
    slot(fd).is_some_and(|s| {
        let state = s.state.load(Ordering::Acquire);
        state & STATE_MASK == POOLED && state & flag != 0
    })
}

/// Records, for the idle watcher, the key an fd about to be stored belongs to.
#[inline]
pub fn note_key(fd: RawFd, hash: u64) {
    if let Some(slot) = slot(fd) {
        slot.key.store(hash, Ordering::Relaxed);
    }
}

/// The key of an idle fd, as [`note_key`] recorded it (a hint: the reaper checks the key).
pub fn key_of(fd: RawFd) -> u64 {
    slot(fd).map_or(0, |s| s.key.load(Ordering::Relaxed))
}

/// What a set that reported an fd (disarming its entry) must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// It is idle in a pool: now flagged. Done.
    Pooled,
    /// It is lent, in state word `state`: flag it with [`set_muted`].
    Out(u64),
    /// Nothing: already flagged, or nobody's (a stale entry, which stays disarmed).
    Leave,
    /// Its state changed under the set (lent or released meanwhile): re-arm the entry, and
    /// the next report looks afresh.
    Undo,
}

/// A set (whose flag is `flag`) reported `fd`, disarming its entry.
pub fn seen_readable(fd: RawFd, flag: u64) -> Seen {
    let Some(slot) = slot(fd) else {
        return Seen::Leave;
    };
    let state = slot.state.load(Ordering::Acquire);
    if state & flag != 0 {
        return Seen::Leave;
    }
    match state & STATE_MASK {
        POOLED => match slot.state.compare_exchange(
            state,
            state | flag,
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => Seen::Pooled,
            Err(_) => Seen::Undo,
        },
        OUT => Seen::Out(state),
        _ => Seen::Leave,
    }
}

/// Flags a lent fd a set reported, if its state is still `state`; false: it changed
/// (released, closed), and the set must re-arm the entry.
pub fn set_muted(fd: RawFd, state: u64, flag: u64) -> bool {
    slot(fd).is_some_and(|s| {
        s.state
            .compare_exchange(state, state | flag, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::super::{claim, forget, Claim, MAX_FD, MUTED_WATCH};
    use super::*;

    /// The harvest's flag: set on an idle fd (suspect), carried from an idle fd to its
    /// loan when set between the acquire's look and the loan, reported by the release;
    /// a state that changed under the harvest is reported for undoing.
    #[test]
    fn the_harvest_flag_follows_the_fd() {
        const B: RawFd = (MAX_FD - 5) as RawFd;
        let loan = Loan {
            born: 10,
            uses: 1,
            key: 1,
            mark: 0,
            muted: 0,
        };
        assert_eq!(claim(B, 9), Claim::Fresh);
        assert!(!is_suspect(B));
        assert_eq!(seen_readable(B, MUTED_HARVEST), Seen::Pooled);
        assert!(is_suspect(B));
        assert_eq!(seen_readable(B, MUTED_HARVEST), Seen::Leave, "flagged once");
        assert_eq!(
            seen_readable(B, MUTED_WATCH),
            Seen::Pooled,
            "each set its own flag"
        );
        // Lent after the flag was set: the loan carries it, its release reports it.
        lend_watched(B, 9, loan);
        assert!(!is_suspect(B));
        assert!(matches!(claim(B, 9), Claim::Lent(Loan { muted, .. }) if muted != 0));
        // Lent without a flag; a harvest finds it readable while lent.
        lend_watched(B, 9, loan);
        let Seen::Out(state) = seen_readable(B, MUTED_HARVEST) else {
            panic!("lent")
        };
        assert!(set_muted(B, state, MUTED_HARVEST));
        assert!(matches!(claim(B, 9), Claim::Lent(Loan { muted, .. }) if muted != 0));
        // Released between the harvest's look and its flag: undone.
        lend_watched(B, 9, loan);
        let Seen::Out(state) = seen_readable(B, MUTED_HARVEST) else {
            panic!("lent")
        };
        assert!(matches!(claim(B, 9), Claim::Lent(Loan { muted: 0, .. })));
        assert!(
            !set_muted(B, state, MUTED_HARVEST),
            "the state changed: the harvest unmutes"
        );
        forget(B);
        assert_eq!(seen_readable(B, MUTED_HARVEST), Seen::Leave, "nobody's");
    }

    /// A caller's second release of an idle fd leaves it as it was: still suspect.
    #[test]
    fn a_second_release_keeps_the_suspect_flag() {
        const A: RawFd = (MAX_FD - 11) as RawFd;
        assert_eq!(claim(A, 7), Claim::Fresh);
        assert_eq!(seen_readable(A, MUTED_HARVEST), Seen::Pooled);
        assert!(is_suspect(A));
        assert_eq!(claim(A, 7), Claim::AlreadyPooled);
        assert!(is_suspect(A), "the double release cleared the flag");
        forget(A);
    }
}
