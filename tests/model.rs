//! Model-based random test: seeded random sequences of operations (acquire, acquire_info,
//! release, release with a keep-alive hint, purge, prune, idle_count_key, clock advance,
//! backend close, caller close) run against the pool and against the reference model
//! (`tests/reference`), and every result, returned connection (and the state released with
//! it), closed connection (each reported once to the close callback, with its state and
//! the model's reason, while its fd was still open) and counter must agree. Real sockets (AF_UNIX socketpairs); the clock is injected, so nothing
//! sleeps.
//!
//! Runs [`OPS`] operations in each of the configurations below. A failure prints the seed
//! and the operations before it; replay with `CONNPOOL_MODEL_SEED=<seed> cargo test --test
//! model`. One #[test] only: the fd-number table is process-wide, so no other test may run
//! alongside and reuse numbers behind the model's back.

mod reference;

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connpool::{
    Callback, Clock, CloseReason, ConnInfo, Discarded, Key, ManualClock, Outcome, Pool, Stats,
};
use reference::{Closed, Conn, Got, Limits, Model};

const KEYS: [&str; 4] = [
    "10.0.0.1:80",
    "10.0.0.2:80",
    "[::1]:443",
    "backend-\u{e9}:8080",
];
const MS: u64 = 1_000_000;
/// Operations per configuration.
const OPS: usize = 20_000;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The harness's side of a connection: its state as released (an id; 0 when released
/// without state), its own number, and the backend's end (None once the backend closed it).
#[derive(Debug)]
struct Peer {
    id: u64,
    n: u64,
    peer: Option<UnixStream>,
}

fn alive(p: &Peer) -> bool {
    p.peer.is_some()
}

/// What the close callback saw: (the state, the reason, whether the fd was still open).
type Reported = Arc<Mutex<Vec<(usize, CloseReason, bool)>>>;

struct Run {
    pool: Pool<ManualClock>,
    reported: Reported,
    clock: ManualClock,
    model: Model<Peer>,
    /// Connections the caller holds.
    held: Vec<(OwnedFd, Conn<Peer>)>,
    next_id: u64,
    log: Vec<String>,
    seed: u64,
    /// Acquires refused at the limit.
    at_limit: u64,
}

impl Run {
    fn check(&self, ok: bool, what: &str) {
        if !ok {
            let tail = self.log[self.log.len().saturating_sub(30)..].join("\n");
            panic!(
                "divergence: {what}\nseed {} (replay: CONNPOOL_MODEL_SEED={} cargo test --test model)\nlast operations:\n{tail}",
                self.seed, self.seed
            );
        }
    }

    /// Every connection the model says the pool closed was reported once to the close
    /// callback with its state (its id) and reason, its fd still open then, and its backend
    /// end reads EOF.
    fn closed(&self, closed: Closed<Peer>) {
        let mut want: Vec<(usize, CloseReason, bool)> = closed
            .iter()
            .map(|(c, why)| (c.t.id as usize, *why, true))
            .collect();
        let mut got = std::mem::take(&mut *self.reported.lock().unwrap());
        want.sort_by_key(|x| (x.0, x.1 as u8));
        got.sort_by_key(|x| (x.0, x.1 as u8));
        self.check(
            got == want,
            &format!("on_close reported {got:?}, model {want:?}"),
        );
        for (c, why) in closed {
            if let Some(peer) = &c.t.peer {
                peer.set_nonblocking(true).unwrap();
                let r = (&*peer).read(&mut [0u8; 1]);
                self.check(
                    matches!(r, Ok(0)),
                    &format!("conn {} should be closed ({why:?}): {r:?}", c.t.n),
                );
            }
        }
    }

    fn acquire(&mut self, k: usize, info: bool) {
        let now = self.clock.now_ns();
        let key = Key::try_from(KEYS[k]).unwrap();
        let got: Result<(OwnedFd, Option<ConnInfo>, usize), Outcome> = if info {
            match self.pool.try_acquire(key) {
                Outcome::Hit(a) => Ok((a.fd, Some(a.info), a.ctx)),
                o => Err(o),
            }
        } else {
            self.pool
                .try_acquire_fd(key)
                .map(|(fd, ctx)| (fd, None, ctx))
        };
        let mut closed = Vec::new();
        let expect = self.model.acquire(k, now, alive, &mut closed);
        self.closed(closed);
        match (got, expect) {
            (Err(Outcome::Connect), Got::Connect) => {}
            (Err(Outcome::AtLimit), Got::AtLimit) => self.at_limit += 1,
            (Ok((fd, i, ctx)), Got::Hit(c)) => {
                self.check(
                    ctx == c.t.id as usize,
                    &format!("acquire: state {ctx}, released with {}", c.t.id),
                );
                if let Some(i) = i {
                    let want = ConnInfo {
                        idle: Duration::from_nanos(now - c.released),
                        age: Duration::from_nanos(now - c.born),
                        uses: c.uses,
                    };
                    self.check(i == want, &format!("info {i:?} vs {want:?}"));
                }
                self.verify_identity(&fd, &c);
                self.held.push((fd, c));
            }
            (g, e) => self.check(
                false,
                &(format!(
                    "acquire {k}: pool {:?}, model {}",
                    g.map(|x| x.0.as_raw_fd()),
                    match e {
                        Got::Hit(c) => format!("conn {}", c.t.n),
                        Got::Connect => "connect".into(),
                        Got::AtLimit => "at the limit".into(),
                    }
                ) + &format!(
                    "\npool key stats {:?}\nmodel key state {:?} idle {}",
                    self.pool.stats_key(key),
                    self.model.slots[k],
                    self.model.keys[k].len()
                )),
            ),
        }
    }

    /// The caller ends a connection it holds (a discard), or gives back a connect slot.
    fn discard(&mut self, k: usize, r: u64) {
        let key = Key::try_from(KEYS[k]).unwrap();
        let mut closed = Vec::new();
        if self.held.is_empty() || r % 3 == 0 {
            let got = self.pool.discard_slot(key);
            let want = self.model.discard(k, None, &mut closed);
            self.check(got == want, &format!("discard_slot {k}: {got} vs {want}"));
            return;
        }
        let (fd, c) = self.held.swap_remove(r as usize % self.held.len());
        let got = self.pool.discard(key, fd, c.t.id as usize);
        self.check(got == Discarded::Closed, &format!("discard {k}: {got:?}"));
        self.model.discard(k, Some(c), &mut closed);
        self.closed(closed);
    }

    fn drain(&mut self, k: Option<usize>) {
        let n = self.pool.drain(k.map(|k| Key::try_from(KEYS[k]).unwrap()));
        let mut closed = Vec::new();
        self.model.drain(k, &mut closed);
        let want = closed.len();
        self.closed(closed);
        self.check(n == want, &format!("drain {k:?}: {n} vs {want}"));
    }

    /// The fd the pool handed out must be the model's connection: a byte written on it
    /// reaches the model's backend end.
    fn verify_identity(&self, fd: &OwnedFd, c: &Conn<Peer>) {
        let Some(peer) = &c.t.peer else {
            return;
        };
        let mut ours = UnixStream::from(fd.try_clone().unwrap());
        let n = std::io::Write::write(&mut ours, b"x").ok();
        self.check(n == Some(1), "send on a handed-out fd");
        // An AF_UNIX write is in the peer's buffer when it returns: no waiting needed (a
        // blocking read would hang on a divergence instead of reporting it).
        peer.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        self.check(
            (&*peer).read(&mut b).ok() == Some(1) && b[0] == b'x',
            &format!("handed-out fd is not conn {}", c.t.n),
        );
    }

    fn release(&mut self, k: usize, hint: Option<u64>, pick: u64) {
        let now = self.clock.now_ns();
        // A held connection, or a new one (the caller connected).
        let (fd, c) = if !self.held.is_empty() && pick % 3 != 0 {
            self.held.swap_remove(pick as usize % self.held.len())
        } else {
            let (a, b) = UnixStream::pair().unwrap();
            let fd: OwnedFd = a.into();
            self.next_id += 1;
            let peer = Peer {
                id: self.next_id,
                n: self.next_id,
                peer: Some(b),
            };
            let c = self.model.connect(fd.as_raw_fd(), now, peer);
            (fd, c)
        };
        let key = Key::try_from(KEYS[k]).unwrap();
        // Released with its number as its state, or (one in four) without state.
        let state = if pick % 4 == 1 { 0 } else { c.t.n };
        let got = match (hint, state) {
            (None, 0) => self.pool.release(key, fd),
            (Some(h), 0) => self.pool.release_hint(key, fd, Duration::from_nanos(h)),
            (h, s) => self
                .pool
                .release_ctx(key, fd, s as usize, h.map(Duration::from_nanos)),
        };
        let c = Conn {
            t: Peer { id: state, ..c.t },
            ..c
        };
        let mut closed = Vec::new();
        let expect = self.model.release(k, c, now, hint, &mut closed);
        self.closed(closed);
        self.check(
            got == expect,
            &format!("release {k}: {got:?} vs {expect:?}"),
        );
    }

    fn prune(&mut self) {
        let now = self.clock.now_ns();
        let n = self.pool.prune();
        let mut closed = Vec::new();
        self.model.prune(now, alive, &mut closed);
        let want = closed.len();
        self.closed(closed);
        self.check(n == want, &format!("prune {n} vs {want}"));
    }

    fn purge(&mut self, k: Option<usize>) {
        let n = self.pool.purge(k.map(|k| Key::try_from(KEYS[k]).unwrap()));
        let mut closed = Vec::new();
        self.model.purge(k, &mut closed);
        let want = closed.len();
        self.closed(closed);
        self.check(n == want, &format!("purge {n} vs {want}"));
    }

    fn count_key(&mut self, k: usize) {
        let n = self.pool.idle_count_key(Key::try_from(KEYS[k]).unwrap());
        let want = self.model.count_key(k, self.clock.now_ns());
        self.check(n == want, &format!("idle_count_key {k}: {n} vs {want}"));
    }

    /// The backend closes one idle connection.
    fn backend_close(&mut self, r: u64) {
        let mut all: Vec<&mut Conn<Peer>> = self.model.keys.iter_mut().flatten().collect();
        if !all.is_empty() {
            let i = r as usize % all.len();
            all[i].t.peer = None;
        }
    }

    /// The caller closes a connection it holds instead of releasing it.
    fn caller_close(&mut self, r: u64) {
        if self.held.is_empty() {
            return;
        }
        let (fd, c) = self.held.swap_remove(r as usize % self.held.len());
        self.model.caller_closed(fd.as_raw_fd(), &c);
        drop(fd);
    }

    fn compare_stats(&self) {
        let s = self.pool.stats();
        let m = self.model.stats();
        self.check(s == m, &format!("stats\n pool  {s:?}\n model {m:?}"));
    }
}

/// Runs `OPS` random operations; returns the pool's final stats and how many acquires the
/// limit refused.
fn run(seed: u64, lim: Limits) -> (Stats, u64) {
    let clock = ManualClock::new(1_000 * MS);
    let reported = Reported::default();
    let sink = reported.clone();
    let mut config = lim.config();
    config.on_close = Some(Callback(Arc::new(move |fd, ctx, why| {
        let open = fd_is_open(fd.as_raw_fd());
        sink.lock().unwrap().push((ctx, why, open));
    })));
    let pool = Pool::with_clock(config, clock.clone()).unwrap();
    let mut run = Run {
        pool,
        reported,
        clock,
        model: Model::new(lim, KEYS.len()),
        held: Vec::new(),
        next_id: 0,
        log: Vec::new(),
        seed,
        at_limit: 0,
    };
    let mut rng = Rng(seed | 1);
    for _ in 0..OPS {
        let op = rng.below(100);
        let k = rng.below(KEYS.len() as u64) as usize;
        let r = rng.next();
        let entry = match op {
            0..=24 => {
                run.acquire(k, r % 2 == 0);
                format!("acquire {k}")
            }
            25..=49 => {
                run.release(k, None, r);
                format!("release {k}")
            }
            50..=57 => {
                let hint = (r % 80) * MS;
                run.release(k, Some(hint), r >> 8);
                format!("release_hint {k} {hint}")
            }
            58..=69 => {
                let ms = r % 25;
                run.clock.advance_ms(ms);
                format!("advance {ms} ms")
            }
            70..=77 => {
                run.backend_close(r);
                "backend close".into()
            }
            78..=82 => {
                run.caller_close(r);
                "caller close".into()
            }
            83..=87 => {
                run.prune();
                "prune".into()
            }
            88..=89 => {
                let which = (r % 3 != 0).then_some(k);
                run.purge(which);
                format!("purge {which:?}")
            }
            90..=93 => {
                run.discard(k, r);
                format!("discard {k}")
            }
            94 => {
                let which = (r % 3 != 0).then_some(k);
                run.drain(which);
                format!("drain {which:?}")
            }
            _ => {
                run.count_key(k);
                format!("idle_count_key {k}")
            }
        };
        run.log.push(entry);
        run.compare_stats();
        // Bound the fds this test holds.
        while run.held.len() > 16 {
            run.caller_close(rng.next());
        }
    }
    let stats = run.pool.stats();
    let at_limit = run.at_limit;
    // Dropping the pool closes (purges) every idle connection, each reported once.
    let Run {
        pool,
        mut model,
        reported,
        ..
    } = run;
    drop(pool);
    let mut want: Vec<(usize, CloseReason, bool)> = model
        .drain_all()
        .iter()
        .map(|c| (c.t.id as usize, CloseReason::Purged, true))
        .collect();
    let mut got = std::mem::take(&mut *reported.lock().unwrap());
    want.sort_by_key(|x| x.0);
    got.sort_by_key(|x| x.0);
    assert_eq!(
        got, want,
        "closes reported when the pool was dropped (seed {seed})"
    );
    (stats, at_limit)
}

/// Whether `fd` is an open file descriptor.
fn fd_is_open(fd: std::os::fd::RawFd) -> bool {
    // SAFETY: F_GETFD only queries the number.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

#[test]
fn pool_matches_the_model() {
    let fixed = std::env::var("CONNPOOL_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    let configs = [
        // per_key, total, idle, lifetime, uses, check, skip the check under, conns per key
        (3, None, 50 * MS, u64::MAX, 0, true, 0, 0),
        (2, Some(5), 40 * MS, 200 * MS, 5, true, 0, 0),
        (4, Some(3), u64::MAX, u64::MAX, 0, false, 0, 0),
        (1, None, 30 * MS, 120 * MS, 3, true, 0, 0),
        (8, Some(8), 60 * MS, u64::MAX, 2, false, 0, 0),
        (2, None, u64::MAX, 90 * MS, 0, true, 0, 0),
        (3, Some(6), 70 * MS, u64::MAX, 0, true, 15 * MS, 0),
        (2, None, 50 * MS, u64::MAX, 0, true, 0, 3),
        (3, Some(5), 40 * MS, 150 * MS, 4, false, 0, 2),
    ]
    .map(
        |(per_key, total, idle_ns, lifetime_ns, max_uses, check, skip_ns, conns)| Limits {
            per_key,
            total,
            idle_ns,
            lifetime_ns,
            max_uses,
            check,
            skip_ns,
            conns,
        },
    );
    for (i, lim) in configs.into_iter().enumerate() {
        let seed = fixed.unwrap_or(0x5eed_0000 + i as u64);
        let (s, at_limit) = run(seed, lim.clone());
        // Each configuration reached every outcome its limits allow: a run that never
        // evicts, retires or finds a dead connection would compare nothing about those.
        let reached = [
            ("hits", s.hits > 0),
            ("misses", s.misses > 0),
            ("purged", s.purged > 0),
            // A cap no larger than a key's share keeps every key below full.
            (
                "full",
                s.closed_full > 0 || lim.total.is_some_and(|t| t <= lim.per_key),
            ),
            ("expired", s.expired > 0), // keep-alive hints of 0 expire at release
            ("dead", s.dead > 0 || !lim.check),
            ("evicted", s.evicted > 0 || lim.total.is_none()),
            ("retired", s.retired > 0 || lim.max_uses == 0),
            ("discarded", s.discarded > 0),
            ("a limit", lim.conns == 0 || at_limit > 0),
        ];
        for (what, ok) in reached {
            assert!(
                ok,
                "configuration {i} ({lim:?}) never reached {what}: {s:?}"
            );
        }
    }
}
