//! libconnpool: a pool of idle backend connections (socket fds keyed by `"host:port"`), with
//! a C ABI.
//!
//! Layers, each pointing only down:
//! - `capi`: the exported `extern "C"` functions, one file per thing they serve, each run
//!   through one panic boundary. The fd ownership contract for C callers is written once, in
//!   the header cbindgen generates from this module, `include/connpool.h`.
//! - [`pool`]: the safe core ([`Pool`]); the locking design is written down there, once.
//!   Under it: `shard` (a lock shard's table of keys and its guard), `closer` (closing after
//!   unlocking), `watch` (the idle watcher), `watch_set` (their epoll sets), `harvest` (the harvest check),
//!   `fd_table` (who owns each fd number),
//!   `process` (fork detection), [`key`], [`clock`], [`config`], [`stats`], [`Error`].
//! - `cell`: the shared-memory primitives (the futex lock, lock-free cells).
//! - `sys`: the libc and kernel calls, which depend on nothing else in the crate.
//!
//! `unsafe` is allowed only in `capi`, `cell` and `sys`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod capi;
mod cell;
pub mod clock;
mod closer;
pub mod config;
mod conn;
mod error;
mod fd_table;
mod harvest;
pub mod key;
pub mod pool;
mod process;
mod shard;
pub mod stats;
mod sys;
mod wait;
mod watch;
mod watch_set;

pub use clock::{Clock, ManualClock, MonotonicClock};
pub use config::Config;
pub use config::{Callback, Check, OnClose};
pub use error::Error;
pub use key::{InvalidKey, Key, MAX_KEY_LEN};
pub use pool::{Acquired, ConnInfo, Discarded, KeyHandle, Outcome, Pool, Released};
pub use stats::{CloseReason, Stats};
