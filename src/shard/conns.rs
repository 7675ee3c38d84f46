//! A key's idle connections, in release order (most recent last): one connection inline,
//! more in a vector. Most keys hold one idle connection, so most entries need no second
//! heap block; the two forms share one 48-byte field (an fd is never -1, and the vector
//! fits beside it).

use std::mem;

use crate::conn::Conn;

#[derive(Debug)]
pub(super) enum Conns {
    /// Exactly one.
    One(Conn),
    /// Any number, in a vector (empty and unallocated when the key holds none). A key that
    /// once held two keeps the vector's room, as a `Vec` does.
    Many(Vec<Conn>),
}

impl Default for Conns {
    fn default() -> Self {
        Conns::Many(Vec::new())
    }
}

impl Conns {
    pub fn as_slice(&self) -> &[Conn] {
        match self {
            Conns::One(c) => std::slice::from_ref(c),
            Conns::Many(v) => v,
        }
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        match self {
            Conns::One(_) => 1,
            Conns::Many(v) => v.len(),
        }
    }

    #[inline(always)]
    pub fn pop(&mut self) -> Option<Conn> {
        if let Conns::Many(v) = self {
            return v.pop();
        }
        match mem::take(self) {
            Conns::One(c) => Some(c),
            // Not reached; forgotten, not dropped: the hot path carries no drop code.
            other => {
                mem::forget(other);
                None
            }
        }
    }

    #[inline(always)]
    pub fn push(&mut self, c: Conn) {
        match self {
            Conns::Many(v) if v.capacity() == 0 => {
                // An unallocated vector: forgetting it frees nothing (no drop code here).
                mem::forget(mem::replace(self, Conns::One(c)));
            }
            Conns::Many(v) => crate::cell::push_within(v, c, |v| v.reserve(1)),
            Conns::One(_) => self.spill(c),
        }
    }

    /// A second connection: both go to a vector (out of line: `push` stays small).
    #[cold]
    #[inline(never)]
    fn spill(&mut self, c: Conn) {
        let mut v = Vec::with_capacity(2);
        v.extend(mem::take(self));
        v.push(c);
        *self = Conns::Many(v);
    }

    /// Inserts `c` at position `i` (`i <= len`).
    pub fn insert(&mut self, i: usize, c: Conn) {
        match self {
            Conns::Many(v) if v.capacity() > 0 => v.insert(i, c),
            _ => {
                let mut v: Vec<Conn> = mem::take(self).into_iter().collect();
                v.insert(i, c);
                *self = Conns::from(v);
            }
        }
    }

    /// The least recently released, taken out.
    pub fn pop_oldest(&mut self) -> Option<Conn> {
        match self {
            Conns::Many(v) if v.is_empty() => None,
            Conns::Many(v) => Some(v.remove(0)),
            Conns::One(_) => self.pop(),
        }
    }
}

impl From<Vec<Conn>> for Conns {
    /// One connection inline, none unallocated, else the vector as it is (an allocated
    /// empty vector would keep the key's next connection out of line).
    fn from(mut v: Vec<Conn>) -> Self {
        match v.len() {
            0 => Conns::default(),
            1 => Conns::One(v.pop().unwrap()),
            _ => Conns::Many(v),
        }
    }
}

impl IntoIterator for Conns {
    type Item = Conn;
    type IntoIter = std::iter::Chain<std::option::IntoIter<Conn>, std::vec::IntoIter<Conn>>;

    fn into_iter(self) -> Self::IntoIter {
        match self {
            Conns::One(c) => Some(c).into_iter().chain(Vec::new()),
            Conns::Many(v) => None.into_iter().chain(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::NEVER;
    use std::os::fd::{AsRawFd, OwnedFd};

    fn conn(seq: u64) -> Conn {
        let fd: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        Conn {
            fd,
            ctx: seq as usize,
            deadline: NEVER,
            released: seq,
            born: seq,
            uses: 1,
            seq,
        }
    }

    fn seqs(c: &Conns) -> Vec<u64> {
        c.as_slice().iter().map(|c| c.seq).collect()
    }

    #[test]
    fn one_connection_is_held_inline_in_the_entry_field() {
        assert_eq!(mem::size_of::<Conns>(), mem::size_of::<Conn>());
        let mut c = Conns::default();
        c.push(conn(1));
        assert!(matches!(c, Conns::One(_)));
        assert_eq!(c.pop().map(|c| c.seq), Some(1));
        assert!(matches!(&c, Conns::Many(v) if v.capacity() == 0));
        assert!(c.pop().is_none());
    }

    #[test]
    fn behaves_as_a_stack_in_release_order_through_every_form() {
        let mut c = Conns::default();
        let mut model: Vec<u64> = Vec::new();
        // Pushes, pops, oldest-first removals and ordered inserts, checked against a Vec.
        for step in 0..200u64 {
            match step % 7 {
                0 | 1 | 3 => {
                    c.push(conn(step));
                    model.push(step);
                }
                2 | 5 => assert_eq!(c.pop().map(|c| c.seq), model.pop()),
                4 => {
                    let i = (step as usize / 7) % (model.len() + 1);
                    c.insert(i, conn(step));
                    model.insert(i, step);
                }
                _ => {
                    let want = (!model.is_empty()).then(|| model.remove(0));
                    assert_eq!(c.pop_oldest().map(|c| c.seq), want);
                }
            }
            assert_eq!(seqs(&c), model);
            assert_eq!(c.len(), model.len());
        }
        let fds: Vec<i32> = c.as_slice().iter().map(|c| c.fd.as_raw_fd()).collect();
        let taken: Vec<Conn> = mem::take(&mut c).into_iter().collect();
        assert_eq!(
            taken.iter().map(|c| c.fd.as_raw_fd()).collect::<Vec<_>>(),
            fds
        );
        assert_eq!(c.len(), 0);
    }
}
