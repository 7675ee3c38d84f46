//! A pool's first call in a new process (a fork child): a fresh, empty generation.

use std::sync::atomic::Ordering;

use super::{Generation, Pool};
use crate::clock::Clock;
use crate::process;

impl<C: Clock> Pool<C> {
    /// The fork detection (`crate::process`) has already closed the child's copies of the
    /// idle fds; replace the shards (their locks may be held forever) with empty ones. The
    /// old generation is kept whole, never dropped nor locked: its fds are closed now
    /// (dropping would close the numbers again), and a shard whose lock was held at the fork
    /// may be half-updated.
    #[cold]
    pub(super) fn after_fork(&self) -> &Generation {
        let generation = process::generation();
        let mine = generation + 1;
        loop {
            let st = self.current.get();
            if st.process == generation {
                return st;
            }
            let r = self.resetting.load(Ordering::Acquire);
            if r == mine {
                std::thread::yield_now(); // another thread of this process is on it
                continue;
            }
            // 0, or a value left by an ancestor process whose thread does not exist here.
            if self
                .resetting
                .compare_exchange(r, mine, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let st = self.current.replace(Generation::new(
                    generation,
                    &self.limits,
                    &self.hooks,
                    self.id,
                ));
                if self.limits.reaper_thread {
                    // In a child there is no caller to report a failure to: without a
                    // thread, the watch fd still works for a caller that reaps.
                    let _ = self.start_reaper(st);
                }
                self.resetting.store(0, Ordering::Release);
                return st;
            }
        }
    }
}
