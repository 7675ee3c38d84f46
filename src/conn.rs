//! A pooled connection: the fd, the caller's state travelling with it, and its history.

use std::os::fd::OwnedFd;

/// A deadline that never passes, and a sequence number no connection has.
pub(crate) const NEVER: u64 = u64::MAX;

/// One connection the pool owns (idle in a shard, or on its way in or out).
#[derive(Debug)]
pub(crate) struct Conn {
    pub fd: OwnedFd,
    /// The caller's state (a C `void *`), opaque: never dereferenced, handed back with the
    /// fd or to the close callback.
    pub ctx: usize,
    /// Clock time at which it expires: the earliest of its idle timeout (or keep-alive hint)
    /// and the end of its lifetime; [`NEVER`] without either.
    pub deadline: u64,
    /// Clock time of the release that put it here.
    pub released: u64,
    /// Clock time of its first release to the pool.
    pub born: u64,
    /// Requests served: 1 at the first release, +1 per acquire and release.
    pub uses: u32,
    /// Release order over the whole pool, for the global cap's eviction (0 without a cap).
    pub seq: u64,
}
