//! The shared-memory primitives everything else is built on, and, with `crate::sys` and
//! `crate::capi`, the only places where `unsafe` is allowed:
//! - [`Lock`]: the pool's mutex, a futex lock of our own;
//! - [`SwapCell`]: a replaceable value whose old values are never freed;
//! - [`ChunkDir`]: a fixed directory of lazily allocated chunks, never freed;
//! - [`Registry`]: an append-only set of values found by hash (the key handles);
//! - [`Shared`]: a reference count whose last release ThreadSanitizer can see (waiters).
//! - `push_within`: a `Vec` push that stays inline on the release hot path (not shared
//!   memory, but `unsafe`, so here).
//!
//! None of them keeps process-wide state or ever waits on another thread's progress except
//! inside [`Lock::lock`], so a fork() child that replaces what its parent's threads may
//! have left half-done (see `crate::pool`) never waits for a thread that does not exist.
#![allow(unsafe_code)]

mod chunks;
mod lock;
mod registry;
mod shared;
mod stack;
mod swap;

pub(crate) use chunks::ChunkDir;
pub(crate) use lock::{assert_unlocked, Guard, Lock};
pub(crate) use registry::Registry;
pub(crate) use shared::Shared;
pub(crate) use stack::push as push_within;
pub(crate) use swap::SwapCell;
