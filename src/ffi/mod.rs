//! The FFI layer: the only place where `unsafe` is allowed, in both directions.
//! - [`capi`]: the `extern "C"` functions this library exports (the C API).
//! - `sys`: the few libc functions the core calls (the coarse clock, `close`).
#![allow(unsafe_code)]

pub mod capi;
pub(crate) mod sys;
