//! Who owns each fd number: one process-wide table, indexed by fd number, read and written
//! without locks.
//!
//! A slot is in one of three states:
//! - `EMPTY`: the pool has no claim on the number.
//! - `POOLED`: a pool owns the fd (idle, or about to be closed by the pool). Set when a
//!   release begins, cleared just before the pool closes the fd.
//! - `OUT`: a pool handed the fd to a caller; the slot remembers the connection's birth time,
//!   its uses and which pool lent it, so the release that brings it back continues its
//!   history (for `max_lifetime` and `max_uses`).
//!
//! What this buys:
//! - **Double release** is detected: releasing a number whose slot is `POOLED` means the caller
//!   gives back something the pool already owns. The pool refuses it and closes nothing.
//! - **History without a syscall**: the pool cannot tell a connection from a new socket that
//!   got the same number after the caller closed the old one (only a syscall could). So the
//!   attribution is conservative: a release whose slot is `OUT` from the same pool continues
//!   that record. A new socket on a recycled number may be treated as older and more used than
//!   it is (and retired early), never as younger or fresher. Records are tagged with the
//!   pool's id, so one pool never inherits another pool's stale records.
//! - **fork()**: the child closes every `POOLED` fd of every pool without taking a lock
//!   (`crate::process`), since the parent still uses those connections.
//!
//! The table covers every fd number Linux can give (up to 2^31 - 1; `fs.nr_open` allows up
//! to 2^31 - 64 on 64-bit kernels). Memory: a 4 MiB directory of pointers (zero pages
//! until touched) and a 128 KiB chunk per 4096 fd numbers ever used, kept for the life of
//! the process (also after `connpool_free`): 32 MiB once numbers reach 1,000,000. Chunks
//! are never freed because readers hold no lock (a fork child reads them too).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cell::ChunkDir;

mod muted;

pub use muted::{
    flag_suspect, is_flagged_idle, is_suspect, is_suspect_or_reported, key_of, lend_watched,
    note_key, seen_readable, set_muted, unflag_pooled, Seen,
};

const CHUNK: usize = 4096;
const MAX_FD: usize = 1 << 31;
const DIR: usize = MAX_FD / CHUNK;

const EMPTY: u64 = 0;
const POOLED: u64 = 1;
const OUT: u64 = 2;
const STATE_MASK: u64 = 3;
/// The fd's entry in one of the pool's epoll sets is disarmed ("muted") because that set
/// reported it (see `muted.rs`): the harvest check's set (while `POOLED`: the connection is
/// suspect) and the idle watcher's. While `OUT`, its release must re-arm it.
pub const MUTED_HARVEST: u64 = 4;
pub const MUTED_WATCH: u64 = 8;
const MUTED_ANY: u64 = MUTED_HARVEST | MUTED_WATCH;
/// Birth times are stored above the four flag bits.
const BORN_SHIFT: u32 = 4;
const MAX_BORN: u64 = u64::MAX >> BORN_SHIFT;

/// Aligned to its size, so that no slot straddles two cache lines (see [`index`]).
#[derive(Default)]
#[repr(align(32))]
struct Slot {
    /// State in the low 2 bits, the epoll sets' flags in the next 2; for `OUT`, the birth
    /// time above the four.
    state: AtomicU64,
    /// For `OUT`: lender pool id (high 32 bits) and uses (low 32 bits).
    meta: AtomicU64,
    /// For `OUT`: the hash of the key it was lent from.
    key: AtomicU64,
    /// For `OUT`: the lender's mark (its process generation and drain epochs at the loan).
    mark: AtomicU64,
}

type Chunk = [Slot; CHUNK];

static TABLE: ChunkDir<Chunk, DIR> = ChunkDir::new();

/// What a pool remembers of a connection it lent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loan {
    /// Clock time of its first release to the pool.
    pub born: u64,
    /// Requests served so far.
    pub uses: u32,
    /// The hash of the key it was lent from.
    pub key: u64,
    /// The lender's mark at the loan (opaque here).
    pub mark: u64,
    /// Which of its epoll-set entries are disarmed ([`MUTED_HARVEST`], [`MUTED_WATCH`]).
    pub muted: u64,
}

/// What a release found in the slot of the fd number it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Unknown number (or another pool's record): a connection never seen before.
    Fresh,
    /// A connection this pool lent out.
    Lent(Loan),
    /// The pool already owns this number: a double release. Nothing was changed.
    AlreadyPooled,
}

/// The chunk and the slot of `fd`. Two 32-byte slots share a cache line; neighbouring
/// numbers (which threads working on different keys often hold: fds are handed out lowest
/// first) get slots two apart, so that a line is shared only by numbers about 2048 apart
/// (whichever way the chunk is aligned), and two threads' acquires and releases write no
/// common line.
#[inline]
fn index(fd: RawFd) -> Option<(usize, usize)> {
    let fd = usize::try_from(fd).ok().filter(|&fd| fd < MAX_FD)?;
    let i = fd % CHUNK;
    Some((fd / CHUNK, (i % (CHUNK / 2)) * 2 + i / (CHUNK / 2)))
}

/// The fd number of slot `i` of chunk `dir` (the inverse of [`index`]).
fn number(dir: usize, i: usize) -> RawFd {
    (dir * CHUNK + (i % 2) * (CHUNK / 2) + i / 2) as RawFd
}

fn new_chunk() -> Box<Chunk> {
    let slots: Box<[Slot]> = (0..CHUNK).map(|_| Slot::default()).collect();
    slots
        .try_into()
        .unwrap_or_else(|_| unreachable!("CHUNK slots"))
}

fn slot(fd: RawFd) -> Option<&'static Slot> {
    let (dir, i) = index(fd)?;
    TABLE.get(dir).map(|c| &c[i])
}

fn slot_or_alloc(fd: RawFd) -> Option<&'static Slot> {
    let (dir, i) = index(fd)?;
    Some(&TABLE.get_or_init(dir, new_chunk)[i])
}

/// A release of `fd` into pool `pool_id` begins: the pool owns the number from now on,
/// unless it already did ([`Claim::AlreadyPooled`], and then nothing changed).
#[inline]
pub fn claim(fd: RawFd, pool_id: u32) -> Claim {
    let Some(slot) = slot_or_alloc(fd) else {
        return Claim::Fresh; // negative: never reached (callers refuse fd < 0)
    };
    let prev = slot.state.swap(POOLED, Ordering::AcqRel);
    match prev & STATE_MASK {
        POOLED => {
            // A caller's second release: the idle fd keeps its sets' flags (suspect).
            if prev & MUTED_ANY != 0 {
                slot.state.fetch_or(prev & MUTED_ANY, Ordering::AcqRel);
            }
            Claim::AlreadyPooled
        }
        OUT => loan_of(slot, prev, pool_id).map_or(Claim::Fresh, Claim::Lent),
        _ => Claim::Fresh,
    }
}

/// The loan recorded in `slot` (whose state read `state`, `OUT`), if pool `pool_id` made it.
#[inline]
fn loan_of(slot: &Slot, state: u64, pool_id: u32) -> Option<Loan> {
    let meta = slot.meta.load(Ordering::Relaxed);
    ((meta >> 32) as u32 == pool_id).then(|| Loan {
        born: state >> BORN_SHIFT,
        uses: meta as u32,
        key: slot.key.load(Ordering::Relaxed),
        mark: slot.mark.load(Ordering::Relaxed),
        muted: state & MUTED_ANY,
    })
}

/// The caller ends a connection it holds (a discard): the pool is about to close `fd`.
/// Forgets the number and returns the loan pool `pool_id` recorded for it, if any. A number
/// a pool owns is not touched (`Err`: the caller passed what is not theirs).
pub fn end_loan(fd: RawFd, pool_id: u32) -> Result<Option<Loan>, ()> {
    let Some(slot) = slot(fd) else {
        return Ok(None);
    };
    let state = slot.state.load(Ordering::Acquire);
    match state & STATE_MASK {
        POOLED => Err(()),
        OUT => {
            let loan = loan_of(slot, state, pool_id);
            // Only if still that loan: another thread may claim the number meanwhile (a
            // caller bug, but never a reason to clear a pool's claim).
            let _ = slot
                .state
                .compare_exchange(state, EMPTY, Ordering::AcqRel, Ordering::Relaxed);
            Ok(loan)
        }
        _ => Ok(None),
    }
}

/// Whether a pool owns `fd` now (idle, or being released or closed by the pool): a caller
/// passing it to the pool again is passing what is not theirs.
#[inline]
pub fn is_pooled(fd: RawFd) -> bool {
    slot(fd).is_some_and(|s| s.state.load(Ordering::Acquire) & STATE_MASK == POOLED)
}

/// The pool hands `fd` to a caller: remember its history for the release that brings it back.
#[inline]
pub fn lend(fd: RawFd, pool_id: u32, loan: Loan) {
    if let Some(slot) = slot(fd) {
        let Loan {
            born,
            uses,
            key,
            mark,
            muted,
        } = loan;
        slot.meta.store(
            u64::from(pool_id) << 32 | u64::from(uses),
            Ordering::Relaxed,
        );
        slot.key.store(key, Ordering::Relaxed);
        slot.mark.store(mark, Ordering::Relaxed);
        let out = born.min(MAX_BORN) << BORN_SHIFT | OUT | (muted & MUTED_ANY);
        slot.state.store(out, Ordering::Release);
    }
}

/// The pool is about to close `fd`: forget it, so that the number, once reused by a new
/// socket, is not mistaken for a pooled one.
#[inline]
pub fn forget(fd: RawFd) {
    if let Some(slot) = slot(fd) {
        slot.state.store(EMPTY, Ordering::Release);
    }
}

/// Calls `close` on every fd a pool owns and forgets it. For the child process of a fork
/// only, where no other thread runs: lock-free and allocation-free (async-signal-safe as
/// long as `close` is).
pub fn close_all_pooled(mut close: impl FnMut(RawFd)) -> usize {
    let mut n = 0;
    for (dir, chunk) in TABLE.iter() {
        for (i, slot) in chunk.iter().enumerate() {
            if slot.state.load(Ordering::Acquire) & STATE_MASK == POOLED {
                slot.state.store(EMPTY, Ordering::Release);
                close(number(dir, i));
                n += 1;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    // Numbers far above what the tests open, so no real fd collides with them.
    const A: RawFd = (MAX_FD - 3) as RawFd;

    #[test]
    fn a_lent_fd_keeps_its_history_and_a_double_release_is_seen() {
        assert_eq!(claim(A, 7), Claim::Fresh);
        assert_eq!(claim(A, 7), Claim::AlreadyPooled);
        let loan = Loan {
            born: 1234,
            uses: 3,
            key: 0xabc,
            mark: 5,
            muted: 0,
        };
        lend(A, 7, loan);
        assert_eq!(claim(A, 7), Claim::Lent(loan));
        forget(A);
        assert_eq!(claim(A, 7), Claim::Fresh);
        lend(
            A,
            7,
            Loan {
                born: 99,
                uses: 1,
                ..loan
            },
        );
        assert_eq!(
            claim(A, 8),
            Claim::Fresh,
            "another pool's record is ignored"
        );
        forget(A);
        assert_eq!(claim(-1, 7), Claim::Fresh);
        // The highest number Linux can give is tracked like any other.
        let top = i32::MAX;
        assert_eq!(claim(top, 7), Claim::Fresh);
        assert!(is_pooled(top));
        assert_eq!(claim(top, 7), Claim::AlreadyPooled);
        forget(top);
        assert!(!is_pooled(top));
    }

    #[test]
    fn neighbouring_numbers_share_no_cache_line() {
        for fd in [0, 1, 2, 2047, 2048, 4095, 4096, 1 << 20, i32::MAX] {
            let (dir, i) = index(fd).unwrap();
            assert_eq!(number(dir, i), fd);
            if let Some((d2, j)) = index(fd.wrapping_add(1)).filter(|_| fd < i32::MAX) {
                assert!(
                    d2 != dir || i / 2 != j / 2,
                    "{fd} and {} share a line",
                    fd + 1
                );
            }
        }
        let mut seen = vec![false; CHUNK];
        for fd in 0..CHUNK as RawFd {
            let (_, i) = index(fd).unwrap();
            assert!(
                !std::mem::replace(&mut seen[i], true),
                "two numbers, one slot"
            );
        }
    }
}
