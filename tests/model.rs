//! Model-based random test: seeded random sequences of operations (acquire, acquire_info,
//! release, release with a keep-alive hint, purge, prune, idle_count_key, clock advance,
//! backend close, caller close) run against the pool and against a small reference model
//! that tracks every connection, and every result, returned connection and counter must
//! agree. Real sockets (AF_UNIX socketpairs); the clock is injected, so nothing sleeps.
//!
//! Runs 120 000 operations over several configurations. A failure prints the seed and the
//! operations before it; replay with `CONNPOOL_MODEL_SEED=<seed> cargo test --test model`.
//! One #[test] only: the fd-number table is process-wide, so no other test may run
//! alongside and reuse numbers behind the model's back.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use connpool::{Config, Key, ManualClock, Pool, Released, Stats};

const KEYS: [&str; 4] = [
    "10.0.0.1:80",
    "10.0.0.2:80",
    "[::1]:443",
    "backend-\u{e9}:8080",
];
const MS: u64 = 1_000_000;

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

/// A connection as the model knows it.
#[derive(Debug)]
struct Conn {
    id: u64,
    /// The backend's end, kept to observe closes (EOF) and to close it.
    peer: Option<UnixStream>,
    born: u64,
    uses: u32,
    released: u64,
    deadline: u64,
    seq: u64,
}

/// The reference model: per-key LIFO stacks and the counters.
#[derive(Default)]
struct Model {
    keys: HashMap<usize, Vec<Conn>>,
    stats: Stats,
    seq: u64,
    /// History the pool keeps for fd numbers the caller closed after acquiring them.
    stale: HashMap<RawFd, (u64, u32)>,
}

struct Limits {
    per_key: usize,
    total: Option<usize>,
    idle_ns: u64,
    lifetime_ns: u64,
    max_uses: u32,
    check: bool,
    /// `Config::skip_check_if_idle_under` in ns (0: none).
    skip_ns: u64,
}

impl Model {
    fn idle(&self) -> usize {
        self.keys.values().map(Vec::len).sum()
    }

    /// Closes the key's expired connections; returns them.
    fn expire(&mut self, k: usize, now: u64) -> Vec<Conn> {
        let Some(stack) = self.keys.get_mut(&k) else {
            return vec![];
        };
        let (gone, kept): (Vec<Conn>, Vec<Conn>) = stack.drain(..).partition(|c| c.deadline <= now);
        *stack = kept;
        self.stats.expired += gone.len() as u64;
        gone
    }

    fn tidy(&mut self) {
        self.keys.retain(|_, s| !s.is_empty());
    }
}

fn alive(c: &Conn) -> bool {
    c.peer.is_some()
}

/// The pool closed this connection: its backend end must read EOF.
fn assert_closed(c: &Conn, what: &str, log: &[String]) {
    if let Some(peer) = &c.peer {
        peer.set_nonblocking(true).unwrap();
        let r = (&*peer).read(&mut [0u8; 1]);
        if !matches!(r, Ok(0)) {
            panic!(
                "conn {} should be closed ({what}): {r:?}\n{}",
                c.id,
                log.join("\n")
            );
        }
    }
}

struct Run {
    pool: Pool<ManualClock>,
    clock: ManualClock,
    lim: Limits,
    model: Model,
    /// Connections the caller holds: (fd, model conn).
    held: Vec<(OwnedFd, Conn)>,
    next_id: u64,
    log: Vec<String>,
    seed: u64,
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

    fn now(&self) -> u64 {
        use connpool::Clock;
        self.clock.now_ns()
    }

    fn acquire(&mut self, k: usize, info: bool) {
        let now = self.now();
        let key = Key::try_from(KEYS[k]).unwrap();
        let got = if info {
            self.pool.acquire_info(key)
        } else {
            self.pool.acquire(key).map(|fd| {
                (
                    fd,
                    connpool::ConnInfo {
                        idle: Duration::ZERO,
                        age: Duration::ZERO,
                        uses: 0,
                    },
                )
            })
        };
        for c in self.model.expire(k, now) {
            assert_closed(&c, "expired on acquire", &self.log);
        }
        let mut expect = None;
        while let Some(c) = self.model.keys.get_mut(&k).and_then(Vec::pop) {
            let checked = self.lim.check && now - c.released >= self.lim.skip_ns;
            if checked && !alive(&c) {
                self.model.stats.dead += 1;
                continue;
            }
            expect = Some(c);
            break;
        }
        self.model.tidy();
        match (got, expect) {
            (None, None) => self.model.stats.misses += 1,
            (Some((fd, i)), Some(c)) => {
                self.model.stats.hits += 1;
                if info {
                    self.check(i.uses == c.uses, &format!("uses {} vs {}", i.uses, c.uses));
                    self.check(
                        i.idle == Duration::from_nanos(now - c.released),
                        &format!("idle {:?} vs {}", i.idle, now - c.released),
                    );
                    self.check(
                        i.age == Duration::from_nanos(now - c.born),
                        &format!("age {:?}", i.age),
                    );
                }
                self.held.push((fd, c));
            }
            (g, e) => self.check(
                false,
                &format!(
                    "acquire {k}: pool {:?}, model {:?}",
                    g.map(|x| x.0.as_raw_fd()),
                    e.map(|c| c.id)
                ),
            ),
        }
    }

    /// Which fd the pool handed out must be the model's connection: compared through the
    /// backend end (a byte written by the pool's fd reaches the model's peer).
    fn verify_identity(&self, fd: &OwnedFd, c: &Conn) {
        let Some(peer) = &c.peer else {
            return;
        };
        let n = unsafe { libc::send(fd.as_raw_fd(), b"x".as_ptr().cast(), 1, libc::MSG_NOSIGNAL) };
        self.check(n == 1, "send on a handed-out fd");
        peer.set_nonblocking(false).unwrap();
        let mut b = [0u8; 1];
        self.check(
            (&*peer).read(&mut b).ok() == Some(1) && b[0] == b'x',
            &format!("handed-out fd is not conn {}", c.id),
        );
    }

    fn release(&mut self, k: usize, hint: Option<u64>) {
        let now = self.now();
        // A held connection, or a new one (the caller connected).
        let (fd, mut c) = if !self.held.is_empty() && self.held.len() > self.model_rng_pick() {
            let i = (self.next_id as usize) % self.held.len();
            let (fd, c) = self.held.swap_remove(i);
            self.verify_identity(&fd, &c);
            (fd, c)
        } else {
            let (a, b) = UnixStream::pair().unwrap();
            let fd: OwnedFd = a.into();
            self.next_id += 1;
            let (born, uses) = self
                .model
                .stale
                .remove(&fd.as_raw_fd())
                .map_or((now, 0), |r| r);
            (
                fd,
                Conn {
                    id: self.next_id,
                    peer: Some(b),
                    born,
                    uses,
                    released: 0,
                    deadline: 0,
                    seq: 0,
                },
            )
        };
        let key = Key::try_from(KEYS[k]).unwrap();
        let got = match hint {
            None => self.pool.release(key, fd),
            Some(h) => self.pool.release_hint(key, fd, Duration::from_nanos(h)),
        };
        c.uses += 1;
        c.released = now;
        let lim = &self.lim;
        let idle = lim.idle_ns.min(hint.unwrap_or(u64::MAX));
        c.deadline = now
            .saturating_add(idle)
            .min(c.born.saturating_add(lim.lifetime_ns));
        let expect = if lim.max_uses != 0 && c.uses >= lim.max_uses {
            self.model.stats.retired += 1;
            assert_closed(&c, "retired", &self.log);
            Released::Closed
        } else if c.deadline <= now {
            self.model.stats.expired += 1;
            assert_closed(&c, "expired on release", &self.log);
            Released::Closed
        } else {
            // A release into a full key keeps nothing and evicts nothing (checked first).
            for x in self.model.expire(k, now) {
                assert_closed(&x, "expired on release", &self.log);
            }
            self.model.tidy();
            let full = self.model.keys.get(&k).map_or(0, Vec::len) >= lim.per_key;
            if let (Some(cap), false) = (lim.total, full) {
                if self.model.idle() >= cap {
                    // Evict the least recently released idle connection of any key.
                    let (vk, _) = self
                        .model
                        .keys
                        .iter()
                        .map(|(k, s)| (*k, s[0].seq))
                        .min_by_key(|x| x.1)
                        .unwrap();
                    let v = self.model.keys.get_mut(&vk).unwrap().remove(0);
                    self.model.stats.evicted += 1;
                    assert_closed(&v, "evicted", &self.log);
                    self.model.tidy();
                }
                self.model.seq += 1;
                c.seq = self.model.seq;
            }
            for x in self.model.expire(k, now) {
                assert_closed(&x, "expired on release", &self.log);
            }
            let stack = self.model.keys.entry(k).or_default();
            if stack.len() >= lim.per_key {
                self.model.stats.closed_full += 1;
                assert_closed(&c, "key full", &self.log);
                self.model.tidy();
                Released::Closed
            } else {
                stack.push(c);
                self.model.stats.pooled += 1;
                Released::Pooled
            }
        };
        self.check(
            got == expect,
            &format!("release {k}: {got:?} vs {expect:?}"),
        );
    }

    fn model_rng_pick(&self) -> usize {
        (self.next_id as usize * 7 + self.log.len()) % 3
    }

    fn prune(&mut self) {
        let now = self.now();
        let n = self.pool.prune();
        let mut want = 0;
        for k in 0..KEYS.len() {
            for c in self.model.expire(k, now) {
                assert_closed(&c, "expired by prune", &self.log);
                want += 1;
            }
            if self.lim.check {
                if let Some(s) = self.model.keys.get_mut(&k) {
                    let before = s.len();
                    s.retain(alive);
                    let dead = before - s.len();
                    self.model.stats.dead += dead as u64;
                    want += dead;
                }
            }
        }
        self.model.tidy();
        self.check(n == want, &format!("prune {n} vs {want}"));
    }

    fn purge(&mut self, k: Option<usize>) {
        let n = self.pool.purge(k.map(|k| Key::try_from(KEYS[k]).unwrap()));
        let gone: Vec<Conn> = match k {
            Some(k) => self.model.keys.remove(&k).unwrap_or_default(),
            None => self.model.keys.drain().flat_map(|(_, s)| s).collect(),
        };
        for c in &gone {
            assert_closed(c, "purged", &self.log);
        }
        self.model.stats.purged += gone.len() as u64;
        self.check(n == gone.len(), &format!("purge {n} vs {}", gone.len()));
    }

    fn count_key(&mut self, k: usize) {
        let now = self.now();
        let n = self.pool.idle_count_key(Key::try_from(KEYS[k]).unwrap());
        for c in self.model.expire(k, now) {
            assert_closed(&c, "expired by count", &self.log);
        }
        self.model.tidy();
        let want = self.model.keys.get(&k).map_or(0, Vec::len);
        self.check(n == want, &format!("idle_count_key {k}: {n} vs {want}"));
    }

    /// The backend closes one idle connection.
    fn backend_close(&mut self, r: u64) {
        let mut all: Vec<&mut Conn> = self.model.keys.values_mut().flatten().collect();
        if all.is_empty() {
            return;
        }
        let i = r as usize % all.len();
        all[i].peer = None;
    }

    /// The caller closes a connection it holds instead of releasing it.
    fn caller_close(&mut self, r: u64) {
        if self.held.is_empty() {
            return;
        }
        let (fd, c) = self.held.swap_remove(r as usize % self.held.len());
        // The pool keeps its history for the number (see src/fds.rs).
        self.model.stale.insert(fd.as_raw_fd(), (c.born, c.uses));
        drop(fd);
    }

    fn compare_stats(&self) {
        let s = self.pool.stats();
        let mut m = self.model.stats;
        m.idle = self.model.idle() as u64;
        m.keys = self.model.keys.len() as u64;
        self.check(s == m, &format!("stats\n pool  {s:?}\n model {m:?}"));
    }
}

fn run(seed: u64, ops: usize, lim: Limits) {
    let clock = ManualClock::new(1_000 * MS);
    let config = Config {
        max_idle_per_key: lim.per_key,
        max_idle_total: lim.total,
        idle_timeout: (lim.idle_ns != u64::MAX).then(|| Duration::from_nanos(lim.idle_ns)),
        max_lifetime: (lim.lifetime_ns != u64::MAX).then(|| Duration::from_nanos(lim.lifetime_ns)),
        max_uses: (lim.max_uses != 0).then_some(lim.max_uses),
        check_liveness: lim.check,
        skip_check_if_idle_under: (lim.skip_ns != 0).then(|| Duration::from_nanos(lim.skip_ns)),
        ..Config::default()
    };
    let pool = Pool::with_clock(config, clock.clone()).unwrap();
    let mut run = Run {
        pool,
        clock,
        lim,
        model: Model::default(),
        held: Vec::new(),
        next_id: 0,
        log: Vec::new(),
        seed,
    };
    let mut rng = Rng(seed | 1);
    for _ in 0..ops {
        let op = rng.below(100);
        let k = rng.below(KEYS.len() as u64) as usize;
        let r = rng.next();
        let entry = match op {
            0..=24 => {
                run.acquire(k, r % 2 == 0);
                format!("acquire {k}")
            }
            25..=49 => {
                run.release(k, None);
                format!("release {k}")
            }
            50..=57 => {
                let hint = (r % 80) * MS;
                run.release(k, Some(hint));
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
            88..=90 => {
                let which = (r % 3 != 0).then_some(k);
                run.purge(which);
                format!("purge {which:?}")
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
}

#[test]
fn pool_matches_the_model() {
    let fixed = std::env::var("CONNPOOL_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    let configs = || {
        [
            // per_key, total, idle, lifetime, uses, check, skip the check under
            (3, None, 50 * MS, u64::MAX, 0, true, 0),
            (2, Some(5), 40 * MS, 200 * MS, 5, true, 0),
            (4, Some(3), u64::MAX, u64::MAX, 0, false, 0),
            (1, None, 30 * MS, 120 * MS, 3, true, 0),
            (8, Some(8), 60 * MS, u64::MAX, 2, false, 0),
            (2, None, u64::MAX, 90 * MS, 0, true, 0),
            (3, Some(6), 70 * MS, u64::MAX, 0, true, 15 * MS),
        ]
        .map(
            |(per_key, total, idle_ns, lifetime_ns, max_uses, check, skip_ns)| Limits {
                per_key,
                total,
                idle_ns,
                lifetime_ns,
                max_uses,
                check,
                skip_ns,
            },
        )
    };
    match fixed {
        Some(seed) => {
            for lim in configs() {
                run(seed, 20_000, lim);
            }
        }
        None => {
            let mut total = 0;
            for (i, lim) in configs().into_iter().enumerate() {
                let seed = 0x5eed_0000 + i as u64;
                run(seed, 20_000, lim);
                total += 20_000;
            }
            assert!(total >= 100_000);
        }
    }
}
