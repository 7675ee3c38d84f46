//! The background thread of `Config::reaper_thread`: waits on the watch fd, reaps, repeats.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use super::{Generation, Pool};
use crate::clock::Clock;
use crate::closer::close_fd;
use crate::error::Error;
use crate::fd_table;
use crate::sys;

#[derive(Debug)]
pub(super) struct Reaper {
    /// Readable when the thread must stop.
    stop: OwnedFd,
    stopped: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

thread_local! {
    /// True on reaper threads.
    static IN_REAPER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The reaper thread's loop. It holds the pool weakly and its fds by number: both stay
/// valid until `stop_reaper` has joined it.
fn reaper_loop<C: Clock>(
    pool: Weak<Pool<C>>,
    watch_fd: RawFd,
    stop_fd: RawFd,
    stopped: Arc<AtomicBool>,
) {
    IN_REAPER.with(|f| f.set(true));
    sys::block_all_signals(); // process signals belong to the application's threads
    while !stopped.load(Ordering::Acquire) {
        let (ready, stop) = sys::wait_readable(watch_fd, stop_fd);
        if stop || stopped.load(Ordering::Acquire) {
            break;
        }
        if ready {
            let reaped = match pool.upgrade() {
                Some(pool) => pool.reap(),
                None => break,
            };
            if reaped == 0 {
                // Readable but nothing to reap: an fd between the pool and a caller (about to
                // be stored or unwatched). Let that thread run rather than spin.
                std::thread::yield_now();
            }
        }
    }
}

impl<C: Clock> Pool<C> {
    /// Starts the reaper thread for generation `st` (a new pool, or a fork child's first
    /// call).
    pub(super) fn start_reaper(&self, st: &Generation) -> Result<(), Error> {
        let Some(w) = st.watcher() else {
            return Err(Error::NoWatcher);
        };
        let stop = sys::eventfd_create().map_err(Error::last_os)?;
        fd_table::claim(stop.as_raw_fd(), self.id); // the pool's: a fork child closes its copy
        let stopped = Arc::new(AtomicBool::new(false));
        let (watch_fd, stop_fd) = (w.fd(), stop.as_raw_fd());
        let me = self.me.clone();
        let flag = stopped.clone();
        let spawned = std::thread::Builder::new()
            .name("connpool-reaper".into())
            .spawn(move || reaper_loop(me, watch_fd, stop_fd, flag));
        match spawned {
            Ok(thread) => {
                *st.reaper.lock() = Some(Reaper {
                    stop,
                    stopped,
                    thread,
                });
                Ok(())
            }
            Err(e) => {
                close_fd(stop);
                Err(Error::Os(e.raw_os_error().unwrap_or(libc::EAGAIN)))
            }
        }
    }

    /// Stops the reaper thread of the current generation, waiting for it to finish (unless
    /// this is the reaper thread itself, dropping the last reference to the pool).
    pub fn stop_reaper(&self) {
        let Some(r) = self.state().reaper.lock().take() else {
            return;
        };
        r.stopped.store(true, Ordering::Release);
        sys::eventfd_signal(r.stop.as_fd());
        // Not std::thread::current(): in a thread C created it allocates a handle that is
        // never freed.
        if !IN_REAPER.with(|f| f.get()) {
            // pthread_join is a cancellation point: a cancelled caller must not unwind here.
            let _ = sys::without_cancellation(|| r.thread.join());
        }
        close_fd(r.stop);
    }
}
