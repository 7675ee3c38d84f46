//! Key handles: a key resolved once (its bytes and hash kept), then used by reference, so
//! that a proxy that knows its backends skips the key's validation and hashing on every
//! call. A handle lives as long as its pool; the same bytes give the same handle.

use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use super::acquire::Outcome;
use super::limits::Discarded;
use super::release::hint_ns;
use super::{Pool, Released};
use crate::clock::Clock;
use crate::key::Key;

/// A key of one pool, resolved once ([`Pool::key`]).
#[derive(Debug)]
pub struct KeyHandle {
    hash: u64,
    key: Box<[u8]>,
    /// Where its entry was last found in its shard's table (a guess, checked).
    place: AtomicUsize,
    /// The pool it belongs to.
    pool_id: u32,
    /// The address of that pool (for the C API, which reaches the pool through the handle;
    /// never dereferenced here).
    owner: usize,
}

impl KeyHandle {
    /// The key's bytes.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The address of the pool it belongs to (as it was when the handle was made).
    pub fn owner(&self) -> usize {
        self.owner
    }
}

/// Buckets of the handle registry: 2 MiB of address space per pool, backed by memory only
/// where handles are (a page per 512 buckets in use), so that even a million handles keep
/// lists of a few.
pub(super) const HANDLE_BUCKETS: usize = 1 << 18;

impl<C: Clock> Pool<C> {
    /// The handle of `key`: the same one for the same bytes, valid for as long as the pool
    /// (a handle is never freed before the pool is: make handles for the keys you know,
    /// not for keys that come from the network).
    pub fn key(&self, key: Key<'_>) -> &KeyHandle {
        let bytes = key.as_bytes();
        let hash = self.hasher.hash_key(bytes);
        // Its entry keeps its counters for the pool's life (in this process generation).
        let st = self.state();
        self.shard_of(st, hash).lock().mark_handle(hash, bytes);
        self.handles.get_or_insert(
            hash,
            |h| h.hash == hash && *h.key == *bytes,
            || KeyHandle {
                hash,
                key: bytes.into(),
                place: AtomicUsize::new(usize::MAX),
                pool_id: self.id,
                owner: self as *const Self as usize,
            },
        )
    }

    /// [`Pool::try_acquire`] by handle; `wait` as [`Pool::acquire_wait`]'s timeout (zero or
    /// `None`: no wait). Panics if `k` belongs to another pool.
    pub fn acquire_by(&self, k: &KeyHandle, wait: Option<Duration>) -> Outcome {
        self.assert_mine(k);
        let st = self.state();
        let taken = self.take(st, k.hash, &k.key, wait);
        self.outcome(taken)
    }

    /// [`Pool::acquire_fd_ctx`] by handle: without the connection's figures (cheaper).
    /// `Err`: why there is none. Panics if `k` belongs to another pool.
    pub fn acquire_fd_by(&self, k: &KeyHandle) -> Result<(OwnedFd, usize), Outcome> {
        self.assert_mine(k);
        let st = self.state();
        self.take_fd(st, k.hash, &k.key, Some(&k.place))
    }

    /// [`Pool::discard`] by handle. Panics if `k` belongs to another pool.
    pub fn discard_by(&self, k: &KeyHandle, fd: OwnedFd, ctx: usize) -> Discarded {
        self.assert_mine(k);
        let st = self.state();
        self.discard_in(st, k.hash, &k.key, fd, ctx)
    }

    /// [`Pool::discard_slot`] by handle. Panics if `k` belongs to another pool.
    pub fn discard_slot_by(&self, k: &KeyHandle) -> bool {
        self.assert_mine(k);
        let st = self.state();
        self.return_slot_in(st, k.hash, &k.key)
    }

    /// [`Pool::release_ctx`] by handle. Panics if `k` belongs to another pool.
    pub fn release_by(
        &self,
        k: &KeyHandle,
        fd: OwnedFd,
        ctx: usize,
        keepalive: Option<Duration>,
    ) -> Released {
        self.assert_mine(k);
        let st = self.state();
        self.put(
            st,
            k.hash,
            &k.key,
            fd,
            ctx,
            hint_ns(keepalive),
            Some(&k.place),
        )
    }

    #[inline]
    fn assert_mine(&self, k: &KeyHandle) {
        assert_eq!(k.pool_id, self.id, "a key handle of another pool");
    }
}
