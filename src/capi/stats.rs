//! Gauges and counters. These calls change nothing in the pool (hence `const connpool *`).

use std::ffi::{c_char, c_int};

use super::sized::write_sized;
use super::{boundary, connpool, key_arg, pool_arg, PANIC_ERRNO};
use crate::pool::Pool;
use crate::stats::Stats;

/// A pool's gauges and counters, filled by connpool_stats_get(). Counters only grow; each
/// connection the pool closes is counted under exactly one reason. Set struct_size =
/// sizeof(connpool_stats) before the call.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct connpool_stats {
    /// The size of the caller's struct, set by the caller.
    pub struct_size: usize,
    /// Idle connections held now (expired ones not yet closed, and ones out for a check by
    /// connpool_prune() or the watcher, included).
    pub idle: u64,
    /// Keys with at least one idle connection now.
    pub keys: u64,
    /// Acquires that returned a connection.
    pub hits: u64,
    /// Acquires that found no usable connection (-ENOENT).
    pub misses: u64,
    /// Releases that kept the connection (CONNPOOL_POOLED).
    pub pooled: u64,
    /// Releases closed because the key already held max_idle_per_key connections (or,
    /// rarely, because no place under max_idle_total could be made: every place was taken
    /// by releases in progress on other threads).
    pub closed_full: u64,
    /// Idle connections closed to keep max_idle_total (or max_idle_per_key, when releases
    /// filled their key while they were out for a check by prune or the watcher).
    pub evicted: u64,
    /// Connections closed for the idle timeout, max_lifetime_ms or a keep-alive hint: idle
    /// ones, and releases closed at once (past max_lifetime_ms, or a hint of 0), which were
    /// never counted in pooled.
    pub expired: u64,
    /// Idle connections found closed, reset or desynchronised by their backend: by the
    /// liveness check (on acquire or prune) or by the idle watcher (connpool_reap).
    pub dead: u64,
    /// Connections closed by their release at max_uses.
    pub retired: u64,
    /// Idle connections closed by connpool_purge(), connpool_drain() or connpool_free(), and
    /// connections lent before a connpool_drain() of their key, closed at their release.
    pub purged: u64,
    /// Connections handed out and not yet given back (release or connpool_discard()), now.
    /// A connection the caller closes itself stays counted. Since 0.2.
    pub lent: u64,
    /// Connect slots reserved now (with max_conns_per_key). Since 0.2.
    pub connecting: u64,
    /// Threads waiting in connpool_acquire_wait() now. Since 0.2.
    pub waiting: u64,
    /// Connections ended by connpool_discard() (not the slots returned with fd = -1). Since
    /// 0.2.
    pub discarded: u64,
}

/// The size of connpool_stats in 0.1, the first release.
const STATS_FIRST_SIZE: usize = 96;
const _: () = assert!(std::mem::offset_of!(connpool_stats, purged) + 8 == STATS_FIRST_SIZE);

fn to_c(s: Stats) -> connpool_stats {
    // Destructured, so that a field added to Stats breaks the build until it is mirrored.
    let Stats {
        idle,
        keys,
        hits,
        misses,
        pooled,
        closed_full,
        evicted,
        expired,
        dead,
        retired,
        purged,
        lent,
        connecting,
        waiting,
        discarded,
    } = s;
    connpool_stats {
        struct_size: size_of::<connpool_stats>(),
        idle,
        keys,
        hits,
        misses,
        pooled,
        closed_full,
        evicted,
        expired,
        dead,
        retired,
        purged,
        lent,
        connecting,
        waiting,
        discarded,
    }
}

/// Fills *out with the pool's gauges and counters, read under every internal lock at once,
/// so the gauges and the counters of everything done under those locks agree (call it from
/// a timer or on demand, not per request). Counters are exact once calls have returned;
/// while acquires run, their outcome (hit, or dead by the liveness check, which runs
/// outside the locks) is counted a moment after the connection left `idle`.
///
/// Returns 0, or -EINVAL (nothing written) for a bad pool, a NULL out or an
/// out->struct_size below the 0.1 struct (96 bytes). A larger struct_size is accepted: the
/// fields this library knows are filled, nothing beyond.
#[no_mangle]
pub unsafe extern "C" fn connpool_stats_get(
    pool: *const connpool,
    out: *mut connpool_stats,
) -> c_int {
    boundary!(-PANIC_ERRNO, {
        let Some(pool) = pool_arg(pool) else {
            return -libc::EINVAL;
        };
        if out.is_null() || !super::sized::size_ok(out, STATS_FIRST_SIZE) {
            return -libc::EINVAL;
        }
        write_sized(out, STATS_FIRST_SIZE, &to_c(pool.stats()));
        0
    })
}

/// Idle connections held over all keys, expired ones not yet closed included (call
/// connpool_prune() first to close those); 0 for a bad pool. It sums per-shard counters
/// without locking, so while other threads acquire and release it is approximate (never
/// above max_idle_total); it is exact when no call is running. connpool_stats_get() gives
/// an exact snapshot at a higher cost.
#[no_mangle]
pub unsafe extern "C" fn connpool_idle_count(pool: *const connpool) -> usize {
    boundary!(0, pool_arg(pool).map_or(0, Pool::idle_count))
}

/// Idle connections held for key that have not expired; 0 for a bad pool or key. Expired
/// ones are not counted (nor closed: the next acquire, release or prune closes them).
#[no_mangle]
pub unsafe extern "C" fn connpool_idle_count_key(
    pool: *const connpool,
    key: *const c_char,
) -> usize {
    boundary!(
        0,
        match (pool_arg(pool), key_arg(key)) {
            (Some(pool), Some(key)) => pool.idle_count_key(key),
            _ => 0,
        }
    )
}

/// Fills *out with the figures of one key: the connpool_stats fields counted for it (keys is
/// 1 if it holds an idle connection) and its gauges (idle, lent, connecting, waiting).
/// Counters are kept while the key has an entry in the pool: from its first connection,
/// connect slot or key handle until it holds nothing (no idle, lent or connecting
/// connection, no waiter, no handle) and is swept; they then start again from zero. Exact
/// once calls have returned. Since 0.2.
///
/// Returns 0 (all zeros for a key the pool knows nothing of), or -EINVAL (nothing written)
/// for a bad pool or key, a NULL out or an out->struct_size below the 0.1 struct (96 bytes).
#[no_mangle]
pub unsafe extern "C" fn connpool_stats_get_key(
    pool: *const connpool,
    key: *const c_char,
    out: *mut connpool_stats,
) -> c_int {
    boundary!(-PANIC_ERRNO, {
        let (Some(pool), Some(key)) = (pool_arg(pool), key_arg(key)) else {
            return -libc::EINVAL;
        };
        if out.is_null() || !super::sized::size_ok(out, STATS_FIRST_SIZE) {
            return -libc::EINVAL;
        }
        write_sized(out, STATS_FIRST_SIZE, &to_c(pool.stats_key(key)));
        0
    })
}
