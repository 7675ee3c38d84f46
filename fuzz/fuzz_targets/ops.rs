//! Fuzz target `ops`: the input decodes into a pool configuration and a sequence of at most
//! [`MAX_OPS`] operations over a few keys, run against a `Pool<ManualClock>` and against a
//! reference model that tracks the fds themselves (which socket is idle under which key, in
//! LIFO order, with its deadline, uses and release order). Real sockets: each connection is
//! an AF_UNIX socket pair whose peer end plays the backend (it can close, or write stray
//! bytes, so the liveness check has something to find).
//!
//! Checked after every operation (a panic is a failure; libFuzzer saves the input):
//! - every result, every fd handed out and every counter equals the model's; an fd handed
//!   out is open, is the socket (by inode) the model had idle under that key on top of its
//!   stack, is not held by anyone else, and passes a liveness check of its own if the pool
//!   checked it (check on, and idle at least the skip window);
//!   `acquire_info`'s idle time, age and uses are the model's;
//! - every fd the pool should have closed is closed (EBADF, and its peer reads EOF);
//! - every fd the pool was not given, and every fd idle in the pool, is still open and
//!   still the same socket (inode), i.e. the pool closed nothing it did not own;
//! - `pooled + expired at release == idle + hits + dead + expired + evicted + purged` and
//!   `releases == pooled + closed_full + retired + expired at release`;
//! - at the end, dropping the pool closes every idle fd, and the input leaves no fd open.
//!
//! Input layout (every byte string is a valid input; missing bytes read as 0):
//! - 6 config bytes: max_idle_per_key (1..=4), max_idle_total (none or 1..=7), idle timeout
//!   (none, zero or 1..=254 ms), lifetime (none, zero or 4..=1016 ms), max_uses (none or
//!   1..=7), flags (bit 0: liveness check; bits 1-7: its skip window, none or 1..=127 ms);
//! - then 2 bytes per operation: `code`, `arg`. `code & 15` is the operation, `(code >> 4) & 7`
//!   picks the key, bit 7 is a selector; `arg` is the operation's argument.

#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connpool::{
    Callback, Clock, CloseReason, Config, ConnInfo, Discarded, Key, ManualClock, Outcome, Pool,
    Released,
};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/reference/mod.rs"]
mod reference;
use reference::{Closed, Got, Limits, Model};

/// Operations per input at most: keeps each run short and the fds bounded.
const MAX_OPS: usize = 256;
/// Connections the caller holds at most; beyond it the oldest is closed by the caller.
const MAX_HELD: usize = 8;
const CONFIG_LEN: usize = 6;
const MS: u64 = 1_000_000;
/// Eight keys, over the key hash's every length path (1, 4, 7, 9, 11, 12 and 40 bytes): two
/// that differ in one byte, one that is another plus a NUL, and one that is not UTF-8.
const KEYS: [&[u8]; 8] = [
    b"10.0.0.1:80",
    b"10.0.0.2:80",
    b"[::1]:443",
    b"a",
    b"b:80",
    b"db:5432",
    b"backend-\xe9-with-a-long-name.internal:8443",
    b"10.0.0.1:80\0",
];

#[derive(Debug, Clone, Copy)]
enum Op {
    Acquire(usize),
    AcquireInfo(usize),
    /// Release a held connection (`Some(index)`) or a new one.
    Release(usize, Option<u8>),
    /// Release with a keep-alive hint in ms; the last held connection (`true`) or a new one.
    ReleaseHint(usize, u8, bool),
    Purge(usize),
    PurgeAll,
    Prune,
    AdvanceMs(u8),
    /// The backend closes a connection (idle or held).
    PeerClose(u8),
    /// The backend writes a byte nobody asked for on a connection (idle or held).
    PeerWrite(u8),
    /// The caller closes a connection it holds instead of releasing it.
    CallerClose(u8),
    IdleCountKey(usize),
    IdleCount,
    /// Release the number of an idle connection again (a double release).
    DoubleRelease(usize, u8),
    /// The caller ends a held connection (`Some(index)`), or gives back a connect slot.
    Discard(usize, Option<u8>),
    /// Drain a key (`true`) or every key.
    Drain(usize, bool),
}

fn decode(code: u8, arg: u8) -> Op {
    let k = usize::from((code >> 4) & 7);
    let sel = code & 0x80 != 0;
    match code & 15 {
        0 => Op::Acquire(k),
        14 => Op::Discard(k, (arg & 1 == 1).then_some(arg >> 1)),
        1 => Op::AcquireInfo(k),
        2 => Op::Release(k, (arg & 1 == 1).then_some(arg >> 1)),
        3 => Op::ReleaseHint(k, arg, sel),
        4 => Op::Purge(k),
        5 => Op::PurgeAll,
        6 => Op::Prune,
        7 => Op::AdvanceMs(arg),
        8 => Op::PeerClose(arg),
        9 => Op::PeerWrite(arg),
        10 => Op::CallerClose(arg),
        11 => Op::IdleCountKey(k),
        12 => Op::DoubleRelease(k, arg),
        13 => Op::IdleCount,
        _ => Op::Drain(k, sel),
    }
}

fn decode_config(b: &[u8; CONFIG_LEN]) -> (Config, Limits) {
    // 0: none; 255: zero, which means none too; else that many units.
    let ns = |v: u8, unit_ms: u64| match v {
        0 | 255 => u64::MAX,
        v => u64::from(v) * unit_ms * MS,
    };
    let lim = Limits {
        per_key: 1 + usize::from(b[0] % 4),
        total: match b[1] % 8 {
            0 => None,
            n => Some(usize::from(n)),
        },
        idle_ns: ns(b[2], 1),
        lifetime_ns: ns(b[3], 4),
        max_uses: u32::from(b[4] % 8),
        conns: u32::from((b[4] >> 3) % 4),
        check: b[5] & 1 == 1,
        skip_ns: u64::from(b[5] >> 1) * MS,
    };
    let mut config = lim.config();
    // A zero duration means none too: keep decoding it, so that path stays covered.
    if b[2] == 255 {
        config.idle_timeout = Some(Duration::ZERO);
    }
    if b[3] == 255 {
        config.max_lifetime = Some(Duration::ZERO);
    }
    (config, lim)
}

/// The harness's side of a connection.
#[derive(Debug)]
struct Sock {
    /// The caller's end's fd number (the one the pool is given) and its socket's inode.
    fd: RawFd,
    ino: u64,
    /// The backend's end; `None` once the backend closed it.
    peer: Option<UnixStream>,
    peer_ino: u64,
    /// The backend wrote a byte nobody read.
    stray: bool,
    /// The state it was last released with (0: none), its own number otherwise.
    state: usize,
    n: usize,
}

fn alive(s: &Sock) -> bool {
    s.peer.is_some() && !s.stray
}

type Conn = reference::Conn<Sock>;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The inode of the open fd `fd`, or the errno of fstat.
fn inode(fd: RawFd) -> Result<u64, i32> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat only writes the struct; a bad number fails with EBADF.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } == 0 {
        // SAFETY: fstat succeeded, so it filled the struct.
        Ok(unsafe { st.assume_init() }.st_ino)
    } else {
        Err(errno())
    }
}

/// Whether fd number `fd` is closed (F_GETFD fails with EBADF).
fn is_closed(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries the number.
    unsafe { libc::fcntl(fd, libc::F_GETFD) == -1 && errno() == libc::EBADF }
}

/// The liveness check, done independently of the library's: nothing to read, no EOF.
fn looks_alive(fd: RawFd) -> bool {
    let mut b = 0u8;
    // SAFETY: one writable byte; the fd is open (the caller holds it).
    let n = unsafe {
        libc::recv(
            fd,
            (&mut b as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n == -1 && matches!(errno(), libc::EAGAIN)
}

/// What the close callback saw: (the state, the reason, whether the fd was still open).
type Reported = Arc<Mutex<Vec<(usize, CloseReason, bool)>>>;

struct Run {
    reported: Reported,
    next_n: usize,
    pool: Option<Pool<ManualClock>>,
    clock: ManualClock,
    model: Model<Sock>,
    /// Connections the caller holds.
    held: Vec<(OwnedFd, Conn)>,
    ops: Vec<Op>,
}

impl Run {
    fn pool(&self) -> &Pool<ManualClock> {
        self.pool.as_ref().expect("the pool lives until the end")
    }

    #[track_caller]
    fn check(&self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            let n = self.ops.len();
            let tail: Vec<String> = self.ops[n.saturating_sub(40)..]
                .iter()
                .enumerate()
                .map(|(i, op)| format!("  #{:3} {op:?}", n.saturating_sub(40) + i))
                .collect();
            panic!(
                "divergence: {}\nlimits: {:?}\nlast operations (the failure is in the last one, or in dropping the pool after it):\n{}",
                what(),
                self.model.lim,
                tail.join("\n")
            );
        }
    }

    fn now(&self) -> u64 {
        self.clock.now_ns()
    }

    /// The pool closed these connections: their numbers are closed and their backends
    /// read EOF.
    #[track_caller]
    fn closed_all(&self, closed: Closed<Sock>) {
        self.reported_exactly(closed.iter().map(|(c, why)| (c.t.state, *why)).collect());
        for (c, why) in closed {
            self.closed(c, &format!("{why:?}"));
        }
    }

    /// The close callback was called once for each of these (state, reason) since the last
    /// look, each with its fd still open, and for nothing else.
    #[track_caller]
    fn reported_exactly(&self, mut want: Vec<(usize, CloseReason)>) {
        let got = std::mem::take(&mut *self.reported.lock().unwrap());
        self.check(got.iter().all(|x| x.2), || format!("on_close with a closed fd: {got:?}"));
        let mut got: Vec<(usize, CloseReason)> = got.into_iter().map(|x| (x.0, x.1)).collect();
        got.sort_by_key(|x| (x.0, x.1 as u8));
        want.sort_by_key(|x| (x.0, x.1 as u8));
        self.check(got == want, || format!("on_close reported {got:?}, model {want:?}"));
    }

    /// The pool closed this connection: its number is closed and its backend reads EOF.
    #[track_caller]
    fn closed(&self, c: Conn, why: &str) {
        let s = &c.t;
        self.check(is_closed(s.fd), || {
            format!("fd {} should be closed ({why}) but is open", s.fd)
        });
        if let Some(peer) = &s.peer {
            peer.set_nonblocking(true).unwrap();
            let r = (&*peer).read(&mut [0u8; 1]);
            // EOF; or, when the backend's stray byte was never read, a reset (AF_UNIX
            // resets the peer of a socket closed with unread data).
            let eof = match &r {
                Ok(0) => true,
                Err(e) => s.stray && e.kind() == std::io::ErrorKind::ConnectionReset,
                Ok(_) => false,
            };
            self.check(eof, || {
                format!(
                    "fd {} closed ({why}) but its peer reads {r:?}, not EOF",
                    s.fd
                )
            });
        }
    }

    /// Every fd the pool holds idle, every fd the caller holds and every backend end is
    /// open and still the same socket: the pool closed nothing it did not own (nor
    /// anything still idle).
    fn sweep(&self) {
        let held = self.held.iter().map(|(_, c)| c);
        for (c, whose) in self
            .model
            .keys
            .iter()
            .flatten()
            .map(|c| (c, "idle"))
            .chain(held.map(|c| (c, "held")))
        {
            let s = &c.t;
            let got = inode(s.fd);
            self.check(got == Ok(s.ino), || {
                format!("{whose} fd {}: inode {got:?}, want {}", s.fd, s.ino)
            });
            if let Some(p) = &s.peer {
                let got = inode(p.as_raw_fd());
                self.check(got == Ok(s.peer_ino), || {
                    format!(
                        "backend end {} of fd {}: inode {got:?}",
                        p.as_raw_fd(),
                        s.fd
                    )
                });
            }
        }
    }

    fn compare_stats(&self) {
        let s = self.pool().stats();
        let m = self.model.stats();
        self.check(s == m, || format!("stats\n  pool  {s:?}\n  model {m:?}"));
        // Closed at their release, never pooled: expired, or lent before a drain.
        let (e, p) = (self.model.expired_on_release, self.model.purged_on_release);
        self.check(
            s.pooled + e + p == s.idle + s.hits + s.dead + s.expired + s.evicted + s.purged,
            || format!("identity: pooled + {e} + {p} closed at release != gone + idle: {s:?}"),
        );
        self.check(
            self.model.releases == s.pooled + s.closed_full + s.retired + e + p,
            || format!("{} releases, {s:?}", self.model.releases),
        );
    }

    fn acquire(&mut self, k: usize, info: bool) {
        let now = self.now();
        let key = Key::new(KEYS[k]).unwrap();
        let got: Result<(OwnedFd, Option<ConnInfo>, usize), Outcome> = if info {
            match self.pool().try_acquire(key) {
                Outcome::Hit(a) => Ok((a.fd, Some(a.info), a.ctx)),
                o => Err(o),
            }
        } else {
            self.pool().try_acquire_fd(key).map(|(fd, ctx)| (fd, None, ctx))
        };
        let mut closed = Vec::new();
        let expect = self.model.acquire(k, now, alive, &mut closed);
        self.closed_all(closed);
        match (got, expect) {
            (Err(Outcome::Connect), Got::Connect) | (Err(Outcome::AtLimit), Got::AtLimit) => {}
            (Ok((fd, info, ctx)), Got::Hit(c)) => {
                let raw = fd.as_raw_fd();
                self.check(ctx == c.t.state, || {
                    format!("acquire {k}: state {ctx}, released with {}", c.t.state)
                });
                self.check(raw == c.t.fd && inode(raw) == Ok(c.t.ino), || {
                    format!(
                        "acquire {k}: fd {raw} (inode {:?}), model's top is fd {} (inode {})",
                        inode(raw),
                        c.t.fd,
                        c.t.ino
                    )
                });
                self.check(!self.held.iter().any(|(h, _)| h.as_raw_fd() == raw), || {
                    format!("acquire {k}: fd {raw} is already held by the caller")
                });
                if self.model.checks(&c, now) {
                    self.check(looks_alive(raw), || {
                        format!("acquire {k}: fd {raw} handed out dead with the check on")
                    });
                }
                if let Some(i) = info {
                    let want = ConnInfo {
                        idle: Duration::from_nanos(now - c.released),
                        age: Duration::from_nanos(now - c.born),
                        uses: c.uses,
                    };
                    self.check(i == want, || {
                        format!("acquire_info {k}: {i:?}, want {want:?}")
                    });
                }
                self.held.push((fd, c));
            }
            (got, expect) => self.check(false, || {
                format!(
                    "acquire {k}: pool gave {:?}, model expects {:?}",
                    got.map(|(fd, _, _)| fd.as_raw_fd()),
                    match expect {
                        Got::Hit(c) => Ok(c.t.fd),
                        Got::Connect => Err("connect"),
                        Got::AtLimit => Err("at the limit"),
                    }
                )
            }),
        }
        // Bound the fds: the caller closes its oldest connection.
        while self.held.len() > MAX_HELD {
            self.caller_close(0);
        }
    }

    /// A new connection (the caller connected to the backend).
    fn connect(&mut self, now: u64) -> (OwnedFd, Conn) {
        let (a, b) = UnixStream::pair().expect("socketpair");
        let fd: OwnedFd = a.into();
        let raw = fd.as_raw_fd();
        self.next_n += 1;
        let sock = Sock {
            fd: raw,
            ino: inode(raw).unwrap(),
            peer_ino: inode(b.as_raw_fd()).unwrap(),
            peer: Some(b),
            stray: false,
            state: 0,
            n: self.next_n,
        };
        (fd, self.model.connect(raw, now, sock))
    }

    /// `held`: the index of a held connection to release, else a new one. `hint_ms`: a
    /// keep-alive hint.
    fn release(&mut self, k: usize, held: Option<usize>, hint_ms: Option<u8>) {
        let now = self.now();
        let (fd, mut c) = match held {
            Some(i) if !self.held.is_empty() => self.held.remove(i % self.held.len()),
            _ => self.connect(now),
        };
        let key = Key::new(KEYS[k]).unwrap();
        let hint_ns = hint_ms.map(|h| u64::from(h) * MS);
        // With its number as its state, or (every third release) without state.
        c.t.state = if self.model.releases % 3 == 2 { 0 } else { c.t.n };
        let got = match (hint_ns, c.t.state) {
            (None, 0) => self.pool().release(key, fd),
            (Some(h), 0) => self.pool().release_hint(key, fd, Duration::from_nanos(h)),
            (h, s) => self
                .pool()
                .release_ctx(key, fd, s, h.map(Duration::from_nanos)),
        };
        let mut closed = Vec::new();
        let expect = self.model.release(k, c, now, hint_ns, &mut closed);
        self.closed_all(closed);
        self.check(got == expect, || {
            format!("release {k} hint {hint_ms:?}: pool {got:?}, model {expect:?}")
        });
    }

    fn double_release(&mut self, k: usize, arg: u8) {
        let all: Vec<RawFd> = self.model.keys.iter().flatten().map(|c| c.t.fd).collect();
        if all.is_empty() {
            return;
        }
        let raw = all[usize::from(arg) % all.len()];
        // SAFETY: a second claim on an fd the pool owns, on purpose: the pool must see the
        // number is its own, forget this OwnedFd and close nothing (Released::AlreadyPooled).
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let got = self.pool().release(Key::new(KEYS[k]).unwrap(), fd);
        self.check(got == Released::AlreadyPooled, || {
            format!("double release of idle fd {raw} into key {k}: {got:?}")
        });
        // sweep() then checks the fd is still open and still that socket.
    }

    fn prune(&mut self) {
        let now = self.now();
        let n = self.pool().prune();
        let mut closed = Vec::new();
        self.model.prune(now, alive, &mut closed);
        let want = closed.len();
        self.closed_all(closed);
        self.check(n == want, || format!("prune closed {n}, model {want}"));
    }

    fn purge(&mut self, k: Option<usize>) {
        let n = self.pool().purge(k.map(|k| Key::new(KEYS[k]).unwrap()));
        let mut closed = Vec::new();
        self.model.purge(k, &mut closed);
        let want = closed.len();
        self.closed_all(closed);
        self.check(n == want, || format!("purge {k:?}: {n}, model {want}"));
    }

    fn idle_count_key(&mut self, k: usize) {
        let n = self.pool().idle_count_key(Key::new(KEYS[k]).unwrap());
        let want = self.model.count_key(k, self.now());
        self.check(n == want, || {
            format!("idle_count_key {k}: {n}, model {want}")
        });
    }

    fn discard(&mut self, k: usize, held: Option<u8>) {
        let key = Key::new(KEYS[k]).unwrap();
        let mut closed = Vec::new();
        match held {
            Some(i) if !self.held.is_empty() => {
                let (fd, c) = self.held.remove(usize::from(i) % self.held.len());
                let got = self.pool().discard(key, fd, c.t.state);
                self.check(got == Discarded::Closed, || format!("discard {k}: {got:?}"));
                self.model.discard(k, Some(c), &mut closed);
                self.closed_all(closed);
            }
            _ => {
                let got = self.pool().discard_slot(key);
                let want = self.model.discard(k, None, &mut closed);
                self.check(got == want, || format!("discard_slot {k}: {got}, model {want}"));
            }
        }
    }

    fn drain(&mut self, k: Option<usize>) {
        let n = self.pool().drain(k.map(|k| Key::new(KEYS[k]).unwrap()));
        let mut closed = Vec::new();
        self.model.drain(k, &mut closed);
        let want = closed.len();
        self.closed_all(closed);
        self.check(n == want, || format!("drain {k:?}: {n}, model {want}"));
    }

    fn idle_count(&self) {
        let n = self.pool().idle_count();
        let want = self.model.idle();
        self.check(n == want, || format!("idle_count: {n}, model {want}"));
    }

    /// Connections whose backend end is still open, idle or held.
    fn peers(&mut self) -> Vec<&mut Sock> {
        let idle = self.model.keys.iter_mut().flatten().map(|c| &mut c.t);
        let held = self.held.iter_mut().map(|(_, c)| &mut c.t);
        idle.chain(held).filter(|s| s.peer.is_some()).collect()
    }

    fn peer_close(&mut self, arg: u8) {
        let mut all = self.peers();
        if !all.is_empty() {
            let n = all.len();
            all[usize::from(arg) % n].peer = None;
        }
    }

    fn peer_write(&mut self, arg: u8) {
        let mut all = self.peers();
        if !all.is_empty() {
            let n = all.len();
            let s = &mut all[usize::from(arg) % n];
            let peer = s.peer.as_ref().unwrap();
            match (&*peer).write(b"!") {
                Ok(1) => s.stray = true,
                r => panic!("backend write on fd {}: {r:?}", s.fd),
            }
        }
    }

    fn caller_close(&mut self, i: usize) {
        if self.held.is_empty() {
            return;
        }
        let (fd, c) = self.held.remove(i % self.held.len());
        self.model.caller_closed(fd.as_raw_fd(), &c);
        drop(fd);
    }

    fn step(&mut self, op: Op) {
        self.ops.push(op);
        match op {
            Op::Acquire(k) => self.acquire(k, false),
            Op::AcquireInfo(k) => self.acquire(k, true),
            Op::Release(k, held) => self.release(k, held.map(usize::from), None),
            Op::ReleaseHint(k, h, last) => {
                let held = (last && !self.held.is_empty()).then(|| self.held.len() - 1);
                self.release(k, held, Some(h))
            }
            Op::Purge(k) => self.purge(Some(k)),
            Op::PurgeAll => self.purge(None),
            Op::Prune => self.prune(),
            Op::AdvanceMs(ms) => self.clock.advance_ns(u64::from(ms) * MS),
            Op::PeerClose(a) => self.peer_close(a),
            Op::PeerWrite(a) => self.peer_write(a),
            Op::CallerClose(a) => self.caller_close(usize::from(a)),
            Op::IdleCountKey(k) => self.idle_count_key(k),
            Op::IdleCount => self.idle_count(),
            Op::Discard(k, held) => self.discard(k, held),
            Op::Drain(k, one) => self.drain(one.then_some(k)),
            Op::DoubleRelease(k, a) => self.double_release(k, a),
        }
        self.compare_stats();
        self.sweep();
    }

    /// Dropping the pool closes every idle fd (and nothing the caller holds).
    fn finish(mut self) {
        drop(self.pool.take());
        let idle = self.model.drain_all();
        self.reported_exactly(idle.iter().map(|c| (c.t.state, CloseReason::Purged)).collect());
        for c in idle {
            self.closed(c, "idle when the pool was dropped");
        }
        self.sweep(); // the caller's fds and their backends are untouched
    }
}

/// The lowest free fd number (a socket pair's first number, closed again).
fn lowest_free_fd() -> RawFd {
    let (a, _b) = UnixStream::pair().expect("socketpair");
    a.as_raw_fd()
}

fuzz_target!(|data: &[u8]| {
    let mut config = [0u8; CONFIG_LEN];
    let n = data.len().min(CONFIG_LEN);
    config[..n].copy_from_slice(&data[..n]);
    let (config, lim) = decode_config(&config);
    let fds_before = lowest_free_fd();
    let clock = ManualClock::new(1_000 * MS);
    let reported = Reported::default();
    let sink = reported.clone();
    let mut config = config;
    config.on_close = Some(Callback(Arc::new(move |fd, ctx, why| {
        // SAFETY: F_GETFD only queries the number.
        let open = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) } != -1;
        sink.lock().unwrap().push((ctx, why, open));
    })));
    let pool = Pool::with_clock(config, clock.clone()).expect("a valid config");
    let mut run = Run {
        reported,
        next_n: 0,
        pool: Some(pool),
        clock,
        model: Model::new(lim, KEYS.len()),
        held: Vec::new(),
        ops: Vec::new(),
    };
    let ops = data.get(CONFIG_LEN..).unwrap_or_default();
    for pair in ops.chunks(2).take(MAX_OPS) {
        run.step(decode(pair[0], pair.get(1).copied().unwrap_or(0)));
    }
    run.finish();
    // Everything opened for this input is closed again: nothing leaked, by the pool or here.
    assert_eq!(
        lowest_free_fd(),
        fds_before,
        "an fd leaked during this input"
    );
});
