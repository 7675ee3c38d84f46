//! Tests of the safe core with real loopback TCP connections and an injected clock.
//!
//! Whether the pool closed a connection is observed from the backend side (the accepted
//! socket reads EOF), never by probing fd numbers, which other tests running in parallel
//! threads of this process reuse.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use connpool::{Clock, Config, Error, Key, ManualClock, Pool, Released};

mod common;
use common::{closed, connect, key, listener, open, Conn};

fn manual_pool(max: usize, timeout_ms: u64) -> (Pool<ManualClock>, ManualClock) {
    let clock = ManualClock::new(1_000_000_000);
    let cfg = Config {
        max_idle_per_key: max,
        idle_timeout: Some(Duration::from_millis(timeout_ms)),
        ..Config::default()
    };
    (Pool::with_clock(cfg, clock.clone()).unwrap(), clock)
}

fn raw(fd: &OwnedFd) -> RawFd {
    fd.as_raw_fd()
}

#[test]
fn reuse_is_lifo_and_the_fd_still_works() {
    let l = listener();
    let (pool, _) = manual_pool(8, 0);
    let conns: Vec<Conn> = (0..3).map(|_| connect(&l)).collect();
    let mut backends = Vec::new();
    let mut numbers = Vec::new();
    for c in conns {
        numbers.push(raw(&c.client));
        assert_eq!(pool.release(key("b:80"), c.client), Released::Pooled);
        backends.push(c.backend);
    }
    assert_eq!(pool.idle_count(), 3);
    for (i, expect) in numbers.iter().rev().enumerate() {
        let fd = pool.acquire(key("b:80")).expect("an idle connection");
        assert_eq!(
            raw(&fd),
            *expect,
            "acquire #{i} is not the most recent release"
        );
        let mut s = TcpStream::from(fd);
        s.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        (&backends[2 - i]).read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
    }
    assert!(pool.acquire(key("b:80")).is_none());
    assert_eq!(pool.idle_count(), 0);
}

#[test]
fn keys_are_independent_bytes() {
    let l = listener();
    let (pool, _) = manual_pool(8, 0);
    let a = connect(&l);
    let b = connect(&l);
    let a_no = raw(&a.client);
    let long_a = [vec![b'k'; 1000], b"a".to_vec()].concat();
    let long_b = [vec![b'k'; 1000], b"b".to_vec()].concat();
    pool.release(Key::new(&long_a).unwrap(), a.client);
    pool.release(Key::new(b"\xff\xfe:80").unwrap(), b.client);
    assert!(pool.acquire(Key::new(&long_b).unwrap()).is_none());
    assert!(pool.acquire(Key::new(b"\xff\xfd:80").unwrap()).is_none());
    assert_eq!(pool.idle_count_key(Key::new(&long_a).unwrap()), 1);
    let got = pool.acquire(Key::new(&long_a).unwrap()).unwrap();
    assert_eq!(raw(&got), a_no);
    assert!(pool.acquire(Key::new(b"\xff\xfe:80").unwrap()).is_some());
}

#[test]
fn full_key_closes_the_incoming_fd() {
    let l = listener();
    let (pool, _) = manual_pool(2, 0);
    let c: Vec<Conn> = (0..4).map(|_| connect(&l)).collect();
    let mut backends = Vec::new();
    let mut results = Vec::new();
    for (i, conn) in c.into_iter().enumerate() {
        let k = if i < 3 { "full:1" } else { "other:1" };
        results.push(pool.release(key(k), conn.client));
        backends.push(conn.backend);
    }
    use Released::*;
    assert_eq!(results, [Pooled, Pooled, Closed, Pooled]);
    assert!(closed(&backends[2]));
    assert!(open(&backends[0]) && open(&backends[1]) && open(&backends[3]));
    assert_eq!(pool.idle_count_key(key("full:1")), 2);
    assert_eq!(pool.idle_count(), 3);
}

#[test]
fn idle_timeout_expires_on_acquire() {
    let l = listener();
    let (pool, clock) = manual_pool(8, 1000);
    let c = connect(&l);
    pool.release(key("t:1"), c.client);
    clock.advance_ms(999);
    let fd = pool
        .acquire(key("t:1"))
        .expect("idle 999 ms of 1000: still fresh");
    pool.release(key("t:1"), fd);
    clock.advance_ms(1000);
    assert!(pool.acquire(key("t:1")).is_none(), "idle 1000 ms: expired");
    assert!(closed(&c.backend));
    assert_eq!(pool.idle_count(), 0);
}

#[test]
fn expired_connections_are_closed_by_any_touch_of_their_key() {
    let l = listener();
    let (pool, clock) = manual_pool(8, 100);
    let old = connect(&l);
    pool.release(key("t:2"), old.client);
    clock.advance_ms(150);
    let new = connect(&l);
    let new_no = raw(&new.client);
    assert_eq!(pool.release(key("t:2"), new.client), Released::Pooled);
    assert!(
        closed(&old.backend),
        "the release on the key closed the expired one"
    );
    assert_eq!(pool.idle_count_key(key("t:2")), 1);
    // An acquire that finds a fresh connection also closes older expired ones.
    clock.advance_ms(60);
    let newer = connect(&l);
    pool.release(key("t:2"), newer.client);
    clock.advance_ms(60); // `new` is 120 ms idle, `newer` 60 ms
    let got = pool.acquire(key("t:2")).unwrap();
    assert_ne!(raw(&got), new_no);
    assert!(closed(&new.backend));
    assert_eq!(pool.idle_count(), 0);
}

#[test]
fn counting_a_key_skips_its_expired_connections_and_changes_nothing() {
    let l = listener();
    let (pool, clock) = manual_pool(8, 100);
    let a = connect(&l);
    let b = connect(&l);
    pool.release(key("c:1"), a.client);
    pool.release(key("c:2"), b.client);
    clock.advance_ms(100);
    assert_eq!(
        pool.idle_count(),
        2,
        "the total counts expired ones until touched"
    );
    assert_eq!(pool.idle_count_key(key("c:1")), 0, "expired: not counted");
    assert!(open(&a.backend), "counting closes nothing");
    assert_eq!(pool.idle_count(), 2);
    assert!(pool.acquire(key("c:1")).is_none());
    assert!(closed(&a.backend), "the next acquire closes it");
    assert!(open(&b.backend), "another key is not touched");
    assert_eq!(pool.idle_count(), 1);
}

#[test]
fn prune_closes_only_expired() {
    let l = listener();
    let (pool, clock) = manual_pool(8, 100);
    let a = connect(&l);
    let b = connect(&l);
    pool.release(key("p:1"), a.client);
    pool.release(key("p:2"), b.client);
    assert_eq!(pool.prune(), 0);
    clock.advance_ms(50);
    let c = connect(&l);
    pool.release(key("p:3"), c.client);
    clock.advance_ms(60);
    assert_eq!(pool.prune(), 2);
    assert!(closed(&a.backend) && closed(&b.backend));
    assert!(open(&c.backend));
    assert_eq!(pool.idle_count(), 1);
}

#[test]
fn no_timeout_keeps_connections_forever() {
    let l = listener();
    let (pool, clock) = manual_pool(8, 0);
    let a = connect(&l);
    pool.release(key("n:1"), a.client);
    clock.advance_ms(365 * 24 * 3600 * 1000);
    assert_eq!(pool.prune(), 0);
    assert!(pool.acquire(key("n:1")).is_some());
}

/// A coarse clock lags real time by up to one tick; the pool must expire early, never late.
#[test]
fn a_lagging_clock_expires_early_not_late() {
    #[derive(Clone)]
    struct Lagging(ManualClock);
    impl Clock for Lagging {
        fn now_ns(&self) -> u64 {
            self.0.now_ns()
        }
        fn lag_ns(&self) -> u64 {
            4_000_000
        }
    }
    let l = listener();
    let clock = ManualClock::new(0);
    let cfg = Config {
        max_idle_per_key: 8,
        idle_timeout: Some(Duration::from_millis(100)),
        ..Config::default()
    };
    let pool = Pool::with_clock(cfg, Lagging(clock.clone())).unwrap();
    let a = connect(&l);
    pool.release(key("lag"), a.client);
    clock.advance_ms(95);
    let fd = pool.acquire(key("lag")).expect("95 ms + 4 ms lag < 100 ms");
    pool.release(key("lag"), fd);
    clock.advance_ms(96);
    assert!(
        pool.acquire(key("lag")).is_none(),
        "96 ms + 4 ms lag may be 100 ms"
    );
}

#[test]
fn purge_one_key_or_all() {
    let l = listener();
    let (pool, _) = manual_pool(8, 0);
    let conns: Vec<Conn> = (0..5).map(|_| connect(&l)).collect();
    let mut backends = Vec::new();
    for (i, c) in conns.into_iter().enumerate() {
        pool.release(key(if i < 2 { "x:1" } else { "y:1" }), c.client);
        backends.push(c.backend);
    }
    assert_eq!(pool.purge(Some(key("x:1"))), 2);
    assert!(closed(&backends[0]) && closed(&backends[1]) && open(&backends[2]));
    assert_eq!(pool.purge(Some(key("x:1"))), 0);
    assert_eq!(pool.purge(None), 3);
    assert!(backends.iter().all(closed));
    assert_eq!(pool.idle_count(), 0);
    // The pool still works after a purge.
    let c = connect(&l);
    assert_eq!(pool.release(key("x:1"), c.client), Released::Pooled);
}

#[test]
fn dropping_the_pool_closes_idle_fds() {
    let l = listener();
    let (pool, _) = manual_pool(8, 0);
    let a = connect(&l);
    let held = connect(&l);
    pool.release(key("d:1"), a.client);
    drop(pool);
    assert!(closed(&a.backend));
    assert!(
        open(&held.backend),
        "a connection the caller holds is untouched"
    );
}

#[test]
fn zero_idle_per_key_is_invalid() {
    let cfg = Config {
        max_idle_per_key: 0,
        idle_timeout: None,
        ..Config::default()
    };
    assert!(matches!(Pool::new(cfg), Err(Error::InvalidConfig(_))));
    let huge = Config {
        max_idle_per_key: usize::MAX,
        idle_timeout: Some(Duration::from_millis(u64::MAX)),
        max_lifetime: Some(Duration::from_millis(u64::MAX)),
        max_uses: Some(u32::MAX),
        max_idle_total: Some(usize::MAX),
        ..Config::default()
    };
    let pool = Pool::new(huge).unwrap();
    let l = listener();
    let a = connect(&l);
    assert_eq!(pool.release(key("h:1"), a.client), Released::Pooled);
    assert!(pool.acquire(key("h:1")).is_some());
}

/// Threads acquire and release real connections over shared keys. Every fd number is
/// tracked: held by at most one thread at a time, never lost, all accounted for at the end.
#[test]
fn threads_never_share_or_lose_an_fd() {
    const THREADS: usize = 4;
    const KEYS: usize = 16;
    const CONNS: usize = 64;
    const OPS: usize = 20_000;
    let l = listener();
    let (pool, _) = manual_pool(CONNS, 0);
    let conns: Vec<Conn> = (0..CONNS).map(|_| connect(&l)).collect();
    let max_fd = conns.iter().map(|c| raw(&c.client)).max().unwrap() as usize;
    let held: Vec<AtomicBool> = (0..=max_fd).map(|_| AtomicBool::new(false)).collect();
    let mut backends = Vec::new();
    for (i, c) in conns.into_iter().enumerate() {
        let k = format!("k:{}", i % KEYS);
        assert_eq!(pool.release(key(&k), c.client), Released::Pooled);
        backends.push(c.backend);
    }
    let acquired = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (pool, held, acquired) = (&pool, &held, &acquired);
            s.spawn(move || {
                let mut mine: Vec<(String, OwnedFd)> = Vec::new();
                let mut x = 0x9e37_79b9_u32.wrapping_mul(t as u32 + 1);
                for _ in 0..OPS {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    if x % 2 == 0 || mine.is_empty() {
                        let k = format!("k:{}", x as usize % KEYS);
                        if let Some(fd) = pool.acquire(key(&k)) {
                            let was = held[raw(&fd) as usize].swap(true, Ordering::SeqCst);
                            assert!(!was, "fd {} handed to two owners", raw(&fd));
                            acquired.fetch_add(1, Ordering::Relaxed);
                            mine.push((k, fd));
                        }
                    } else {
                        let (k, fd) = mine.swap_remove(x as usize % mine.len());
                        held[raw(&fd) as usize].store(false, Ordering::SeqCst);
                        assert_eq!(pool.release(key(&k), fd), Released::Pooled);
                    }
                }
                for (k, fd) in mine {
                    held[raw(&fd) as usize].store(false, Ordering::SeqCst);
                    assert_eq!(pool.release(key(&k), fd), Released::Pooled);
                }
            });
        }
    });
    assert!(acquired.load(Ordering::Relaxed) > 0);
    assert_eq!(pool.idle_count(), CONNS, "no fd lost or duplicated");
    let per_key: usize = (0..KEYS)
        .map(|i| pool.idle_count_key(key(&format!("k:{i}"))))
        .sum();
    assert_eq!(per_key, CONNS);
    assert!(backends.iter().all(open), "nothing was closed");
    assert_eq!(pool.purge(None), CONNS);
    assert!(backends.iter().all(closed));
}

/// Purge and prune race acquire and release. A connection a thread holds is never closed
/// under it (its fd still names the same socket: same local port), and at the end every
/// connection was either purged exactly once or is still idle.
#[test]
fn purge_racing_acquire_and_release_accounts_for_every_fd() {
    const THREADS: usize = 3;
    const KEYS: usize = 8;
    const CONNS: usize = 48;
    const OPS: usize = 5_000;
    let l = listener();
    let (pool, _) = manual_pool(CONNS, 0);
    let mut backends = Vec::new();
    let mut ports = std::collections::HashMap::new();
    for i in 0..CONNS {
        let c = connect(&l);
        let port = TcpStream::from(c.client.try_clone().unwrap())
            .local_addr()
            .unwrap()
            .port();
        ports.insert(raw(&c.client), port);
        pool.release(key(&format!("k:{}", i % KEYS)), c.client);
        backends.push(c.backend);
    }
    let purged = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (pool, ports, purged, done) = (&pool, &ports, &purged, &done);
        let purger = s.spawn(move || {
            for i in 0.. {
                let k = format!("k:{}", i % KEYS);
                purged.fetch_add(pool.purge(Some(key(&k))), Ordering::SeqCst);
                assert_eq!(pool.prune(), 0, "no timeout: nothing expires");
                if done.load(Ordering::SeqCst) {
                    break; // after at least one purge
                }
                std::thread::yield_now();
            }
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    for i in 0..OPS {
                        let k = format!("k:{}", (i * 7 + t) % KEYS);
                        if let Some(fd) = pool.acquire(key(&k)) {
                            let s = TcpStream::from(fd);
                            let port = s.local_addr().expect("a held fd stays open").port();
                            assert_eq!(Some(&port), ports.get(&s.as_raw_fd()));
                            assert_eq!(pool.release(key(&k), s.into()), Released::Pooled);
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        purger.join().unwrap();
    });
    let idle = pool.idle_count();
    assert!(
        purged.load(Ordering::SeqCst) > 0,
        "the purger raced for real"
    );
    assert_eq!(purged.load(Ordering::SeqCst) + idle, CONNS);
    assert_eq!(pool.purge(None), idle);
    assert!(backends.iter().all(closed));
}
