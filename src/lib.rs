//! libconnpool: a pool of idle backend socket fds, keyed by `"host:port"`, with a C ABI.
//!
//! Layout:
//! - [`pool`]: the safe core ([`Pool`]) over [`std::os::fd::OwnedFd`]; the locking design is
//!   documented there, in one place. `shard`: one lock shard's table of idle stacks.
//! - `fds`: the process-wide record of who owns each fd number (double releases, lifetime
//!   and uses of lent connections, fork).
//! - [`config`] and [`stats`]: limits in, counters out.
//! - `watch`: the idle watcher (an epoll set and a timerfd) behind `Pool::reap`.
//! - [`key`]: key validation and the key hash.
//! - [`clock`]: the clock the pool reads (injectable, so tests never sleep).
//! - `lock`: the shard lock, which checks in debug builds that no fd is closed under it.
//! - `ffi`: the only `unsafe` code: [`capi`], the exported `extern "C"` functions (the fd
//!   ownership contract for C callers is written in the header cbindgen generates from it,
//!   `include/connpool.h`), and `ffi::sys`, the few libc calls the core needs.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
pub mod config;
mod fds;
mod ffi;
pub mod key;
mod lock;
pub mod pool;
mod shard;
pub mod stats;
mod watch;

pub use clock::{Clock, ManualClock, MonotonicClock};
pub use config::{Config, InvalidConfig};
pub use ffi::capi;
pub use key::{InvalidKey, Key, MAX_KEY_LEN};
pub use pool::{ConnInfo, Pool, Released};
pub use stats::Stats;
