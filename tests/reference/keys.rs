//! The model's per-key state and the maintenance operations (prune, purge, drain, discard),
//! which decide when a key's entry goes (and with it what the pool kept of the key).

use connpool::CloseReason;

use super::{Closed, Conn, Model};

/// What the pool keeps of a key besides its idle connections.
#[derive(Debug, Default, Clone)]
pub struct KeyState {
    /// The pool has an entry for the key (its gauges count only while it has).
    pub entry: bool,
    pub lent: u32,
    pub connecting: u32,
    pub drains: u16,
}

impl KeyState {
    pub fn total(&self, idle: u32) -> u32 {
        idle + self.lent + self.connecting
    }

    /// See `Entry::pinned`.
    fn pinned(&self, limited: bool) -> bool {
        (self.lent > 0 && (limited || self.drains != 0)) || self.connecting > 0
    }
}

impl<T> Model<T> {
    fn drop_entry_unless_pinned(&mut self, k: usize) {
        let limited = self.lim.conns != 0;
        if self.keys[k].is_empty() && !self.slots[k].pinned(limited) {
            self.slots[k] = KeyState::default();
        }
    }

    /// Prune: every expired connection and, with the check on, every dead one; the entries
    /// left with nothing go.
    pub fn prune(&mut self, now: u64, alive: impl Fn(&T) -> bool, closed: &mut Closed<T>) {
        for k in 0..self.keys.len() {
            self.expire(k, now, closed);
            self.drop_entry_unless_pinned(k);
        }
        if !self.lim.check {
            return;
        }
        for k in 0..self.keys.len() {
            for c in std::mem::take(&mut self.keys[k]) {
                if alive(&c.t) {
                    self.keys[k].push(c);
                } else {
                    self.stats.dead += 1;
                    closed.push((c, CloseReason::Dead));
                }
            }
        }
    }

    /// Purge of key `k`, or of every key.
    pub fn purge(&mut self, k: Option<usize>, closed: &mut Closed<T>) {
        let keys = match k {
            Some(k) => k..k + 1,
            None => 0..self.keys.len(),
        };
        for k in keys {
            for c in std::mem::take(&mut self.keys[k]) {
                self.stats.purged += 1;
                closed.push((c, CloseReason::Purged));
            }
            self.drop_entry_unless_pinned(k);
        }
    }

    /// Drain of key `k`, or of every key: a purge, and the connections lent now are closed
    /// at their release.
    pub fn drain(&mut self, k: Option<usize>, closed: &mut Closed<T>) {
        match k {
            Some(k) => {
                if self.slots[k].entry {
                    self.slots[k].drains = self.slots[k].drains.wrapping_add(1);
                }
            }
            None => {
                self.pool_drains = self.pool_drains.wrapping_add(1);
                for s in self.slots.iter_mut().filter(|s| s.entry) {
                    s.drains = s.drains.wrapping_add(1);
                }
            }
        }
        self.purge(k, closed);
    }

    /// The caller ends connection `c` of key `k` (a discard); or, for `None`, gives back a
    /// connect slot of `k` (true if it had one).
    pub fn discard(&mut self, k: usize, c: Option<Conn<T>>, closed: &mut Closed<T>) -> bool {
        let Some(mut c) = c else {
            let s = &mut self.slots[k];
            if s.entry && s.connecting > 0 {
                s.connecting -= 1;
                return true;
            }
            return false;
        };
        let loan = c.loan.take();
        if let Some(l) = loan.filter(|l| l.key != k) {
            self.end_loan(l.key);
        }
        let s = &mut self.slots[k];
        s.entry = true;
        if loan.is_some_and(|l| l.key == k) && s.lent > 0 {
            s.lent -= 1;
        } else if s.connecting > 0 {
            s.connecting -= 1;
        }
        self.stats.discarded += 1;
        closed.push((c, CloseReason::Discarded));
        true
    }

    /// idle_count_key: the key's connections that have not expired (nothing changes).
    pub fn count_key(&self, k: usize, now: u64) -> usize {
        self.keys[k].iter().filter(|c| c.deadline > now).count()
    }

    /// Every idle connection, as dropping the pool closes them (counted purged).
    pub fn drain_all(&mut self) -> Vec<Conn<T>> {
        self.keys.iter_mut().flat_map(std::mem::take).collect()
    }
}
