//! The FFI layer: the only place where `unsafe` is allowed, in both directions.
//! - [`capi`]: the `extern "C"` functions this library exports (the C API).
//! - `sys`: the few libc functions the core calls (clocks, `close`, the liveness check).
//! - `fork`: the `pthread_atfork` child handler and the process generation.
//! - `cell`: two lock-free shared cells (a replaceable value, a lazily filled directory).
#![allow(unsafe_code)]

pub mod capi;
pub(crate) mod cell;
pub(crate) mod fork;
pub(crate) mod sys;
