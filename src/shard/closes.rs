//! What must happen after a shard lock is released: closing connections (unwatched first,
//! through the close callback), giving cap places back, waking the waiters served under
//! the lock, freeing the connection slots of the closed connections of keys with a limit
//! (only once their fds are closed, so a backend never sees more than the limit), and
//! telling the event loop that a key it was refused may have room.

use std::os::fd::{AsFd, AsRawFd};

use super::{Shard, SHARDS};
use crate::cell::Shared;
use crate::closer::{close_fd, Closing};
use crate::conn::Conn;
use crate::stats::CloseReason;
use crate::sys;
use crate::wait::Waiter;

/// Done when dropped, so a list made before a guard (and so dropped after it) acts only
/// after unlocking.
#[derive(Debug)]
pub(crate) struct CloseList<'a> {
    conns: Vec<(Conn, CloseReason)>,
    /// Per closed connection that held a slot of a key with a limit: that key's hash.
    settle: Vec<u64>,
    /// Waiters served under the lock.
    wakes: Vec<Shared<Waiter>>,
    /// A key that refused an acquire (-EAGAIN) has a slot or an idle connection now.
    notify: bool,
    places: usize,
    closing: &'a Closing,
    shards: &'a [Shard; SHARDS],
}

impl<'a> CloseList<'a> {
    pub fn new(closing: &'a Closing, shards: &'a [Shard; SHARDS]) -> Self {
        CloseList {
            conns: Vec::new(),
            settle: Vec::new(),
            wakes: Vec::new(),
            notify: false,
            places: 0,
            closing,
            shards,
        }
    }

    /// Closes `conn`, which held no place under the cap (any more).
    pub fn close(&mut self, conn: Conn, why: CloseReason) {
        self.conns.push((conn, why));
    }

    /// Closes an idle connection, giving its place back.
    pub fn close_idle(&mut self, conn: Conn, why: CloseReason) {
        self.places += 1;
        self.close(conn, why);
    }

    /// Frees a slot of the key with hash `hash` once the closes are done.
    pub fn settle(&mut self, hash: u64) {
        self.settle.push(hash);
    }

    /// Gives back `n` places (idle connections handed out, reservations not used).
    pub fn give_back(&mut self, n: usize) {
        self.places += n;
    }

    /// Wakes `w`, served under the lock, after unlocking.
    pub fn wake(&mut self, w: Shared<Waiter>) {
        self.wakes.push(w);
    }

    /// Tells the event loop, after unlocking, that a refused key may have room.
    pub fn notify(&mut self) {
        self.notify = true;
    }
}

impl Drop for CloseList<'_> {
    fn drop(&mut self) {
        self.closing.give_back(std::mem::take(&mut self.places));
        for (conn, why) in self.conns.drain(..) {
            self.closing.unwatch(conn.fd.as_raw_fd());
            if let Some(f) = self.closing.on_close() {
                // C code: a cancellation there would unwind through these frames.
                sys::without_cancellation(|| f(conn.fd.as_fd(), conn.ctx, why));
            }
            close_fd(conn.fd);
        }
        for w in self.wakes.drain(..) {
            w.wake();
        }
        // Only now, with the fds closed: their slots may go to other connections.
        for hash in std::mem::take(&mut self.settle) {
            let shard = &self.shards[super::shard_index(hash)];
            let mut after = CloseList::new(self.closing, self.shards);
            shard.lock().free_slot(hash, true, &mut after);
            self.notify |= std::mem::take(&mut after.notify);
            self.wakes.append(&mut after.wakes);
            // `after` holds nothing to close: freeing a slot closes nothing.
        }
        for w in self.wakes.drain(..) {
            w.wake();
        }
        if self.notify {
            self.closing.notify_event_loop();
        }
    }
}
