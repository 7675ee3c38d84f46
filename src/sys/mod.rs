//! The bottom layer: the libc and kernel calls the pool makes, wrapped in safe functions.
//! It depends on nothing else in the crate (the arrows only point down to it).
//!
//! No function here is a thread cancellation point: the system calls that glibc makes
//! cancellable (`close`, `recv`, `read`, `write`, `poll`, `epoll_wait`) are made through
//! `syscall(2)`, which is not, so a `pthread_cancel` aimed at a thread inside a pool call
//! stays pending until the caller's own next cancellation point. The one blocking wait
//! that glibc would cancel, joining the reaper thread, runs with cancellation disabled.
#![allow(unsafe_code)]

mod epoll;
mod fork;
mod io;
mod thread;
mod time;

pub use epoll::{
    epoll_arm, epoll_create, epoll_ctl, epoll_del_raw, epoll_ready, timerfd_create, timerfd_set,
};
pub use fork::{atfork_child, ForkMarker};
pub use io::{
    close_raw, drain_counter, eventfd_create, eventfd_signal, eventfd_signal_raw, peek, ready_now,
    wait_readable, Peek,
};
pub use thread::{block_all_signals, futex_wait, futex_wake, without_cancellation};
pub use time::{coarse_now_ns, coarse_resolution_ns, cycles, cycles_trusted, precise_now_ns};
