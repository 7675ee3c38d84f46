//! Health checks and limits of the safe core, with real loopback TCP connections and an
//! injected clock (no test sleeps): liveness, lifetime, uses, keep-alive hints, the global
//! cap, stats and double releases.

use std::io::Write;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use connpool::{Config, ManualClock, Pool, Released, Stats};

mod common;
use common::{closed, connect, key, listener, open, Conn};

const K: &str = "127.0.0.1:8080";

/// True once the client side is gone: EOF or a reset (bounded wait).
fn reset_or_closed(backend: &std::net::TcpStream) -> bool {
    use std::io::Read;
    backend
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    match (&*backend).read(&mut [0u8; 1]) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

fn pool_with(config: Config) -> (Pool<ManualClock>, ManualClock) {
    let clock = ManualClock::new(5_000_000_000);
    (Pool::with_clock(config, clock.clone()).unwrap(), clock)
}

/// Waits (bounded) until the client end of `c` has seen what its backend did.
fn settle(c: &Conn) {
    let mut p = libc::pollfd {
        fd: c.client.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut p, 1, 5000) }, 1);
}

#[test]
fn dead_connections_are_skipped_and_closed() {
    let (pool, _) = pool_with(Config::default());
    let l = listener();
    let live = connect(&l);
    let (fin, rst, bytes) = (connect(&l), connect(&l), connect(&l));
    fin.backend.shutdown(Shutdown::Write).unwrap();
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a valid linger struct of the right size.
    let rc = unsafe {
        libc::setsockopt(
            rst.backend.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    (&bytes.backend).write_all(b"stray").unwrap();
    for c in [&fin, &bytes] {
        settle(c);
    }
    let live_fd = live.client.as_raw_fd();
    pool.release(key(K), live.client);
    let watch = rst.client.try_clone().unwrap(); // to see the RST arrive
    pool.release(key(K), fin.client);
    pool.release(key(K), rst.client);
    drop(rst.backend); // RST while idle in the pool
    let mut p = libc::pollfd {
        fd: watch.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut p, 1, 5000) }, 1);
    pool.release(key(K), bytes.client);

    let got = pool.acquire(key(K)).expect("the live one");
    assert_eq!(got.as_raw_fd(), live_fd);
    assert!(closed(&fin.backend));
    // Closed with unread bytes in its buffer: the kernel sends RST rather than FIN.
    assert!(reset_or_closed(&bytes.backend));
    let s = pool.stats();
    assert_eq!((s.dead, s.hits, s.misses, s.idle), (3, 1, 0, 0));
    assert!(open(&live.backend));
}

#[test]
fn the_check_can_be_turned_off() {
    let (pool, _) = pool_with(Config {
        check_liveness: false,
        ..Config::default()
    });
    let l = listener();
    let c = connect(&l);
    c.backend.shutdown(Shutdown::Write).unwrap();
    settle(&c);
    pool.release(key(K), c.client);
    assert!(pool.acquire(key(K)).is_some(), "handed out unchecked");
    assert_eq!(pool.stats().dead, 0);
}

/// The skip window: a connection idle for less is handed out unchecked (dead or not, the
/// price of the option), one idle for the whole window is checked again; prune checks all.
#[test]
fn the_check_skips_connections_idle_under_the_window() {
    let window = Duration::from_millis(100);
    let (pool, clock) = pool_with(Config {
        skip_check_if_idle_under: Some(window),
        ..Config::default()
    });
    let l = listener();
    let c = connect(&l);
    let fd = c.client.as_raw_fd();
    c.backend.shutdown(Shutdown::Write).unwrap();
    settle(&c);
    pool.release(key(K), c.client);
    clock.advance_ns(window.as_nanos() as u64 - 1);
    let got = pool
        .acquire(key(K))
        .expect("inside the window: not checked");
    assert_eq!(got.as_raw_fd(), fd);
    assert_eq!((pool.stats().hits, pool.stats().dead), (1, 0));
    assert_eq!(pool.release(key(K), got), Released::Pooled);
    clock.advance_ns(window.as_nanos() as u64);
    assert!(
        pool.acquire(key(K)).is_none(),
        "idle for the window: checked"
    );
    let s = pool.stats();
    assert_eq!((s.hits, s.dead, s.idle), (1, 1, 0));
    assert!(closed(&c.backend));

    // prune ignores the window.
    let d = connect(&l);
    d.backend.shutdown(Shutdown::Write).unwrap();
    settle(&d);
    pool.release(key(K), d.client);
    assert_eq!(pool.prune(), 1);
    assert!(closed(&d.backend));
}

/// Without the check the window changes nothing: every connection is handed out unchecked.
#[test]
fn the_skip_window_needs_the_check() {
    let (pool, clock) = pool_with(Config {
        check_liveness: false,
        skip_check_if_idle_under: Some(Duration::from_millis(1)),
        ..Config::default()
    });
    let l = listener();
    let c = connect(&l);
    c.backend.shutdown(Shutdown::Write).unwrap();
    settle(&c);
    pool.release(key(K), c.client);
    clock.advance_ms(10);
    assert!(pool.acquire(key(K)).is_some());
    assert_eq!(pool.stats().dead, 0);
}

#[test]
fn prune_closes_dead_and_keeps_live_in_order() {
    let (pool, _) = pool_with(Config::default());
    let l = listener();
    let conns: Vec<Conn> = (0..4).map(|_| connect(&l)).collect();
    let fds: Vec<i32> = conns.iter().map(|c| c.client.as_raw_fd()).collect();
    let mut backends = Vec::new();
    for (i, c) in conns.into_iter().enumerate() {
        if i % 2 == 1 {
            c.backend.shutdown(Shutdown::Write).unwrap();
            settle(&c);
        }
        pool.release(key(K), c.client);
        backends.push(c.backend);
    }
    assert_eq!(pool.prune(), 2);
    assert_eq!(pool.stats().dead, 2);
    assert!(closed(&backends[1]) && closed(&backends[3]));
    // LIFO order of the survivors is kept: 2 then 0.
    assert_eq!(pool.acquire(key(K)).unwrap().as_raw_fd(), fds[2]);
    assert_eq!(pool.acquire(key(K)).unwrap().as_raw_fd(), fds[0]);
    assert!(pool.acquire(key(K)).is_none());
}

#[test]
fn lifetime_counts_from_the_first_release() {
    let (pool, clock) = pool_with(Config {
        max_lifetime: Some(Duration::from_millis(100)),
        ..Config::default()
    });
    let l = listener();
    let c = connect(&l);
    pool.release(key(K), c.client);
    let mut fd = None;
    for _ in 0..9 {
        clock.advance_ms(10); // kept busy: never idle long
        let got = pool.acquire(key(K)).expect("within its lifetime");
        assert_eq!(pool.release(key(K), got), Released::Pooled);
    }
    clock.advance_ms(10); // 100 ms since the first release
    if let Some(got) = pool.acquire(key(K)) {
        fd = Some(got);
    }
    assert!(fd.is_none(), "never handed out at its lifetime");
    assert!(closed(&c.backend));
    assert_eq!(pool.stats().expired, 1);

    // Held past its lifetime: the release closes it.
    let d = connect(&l);
    pool.release(key(K), d.client);
    let got = pool.acquire(key(K)).unwrap();
    clock.advance_ms(100);
    assert_eq!(pool.release(key(K), got), Released::Closed);
    assert!(closed(&d.backend));
    assert_eq!(pool.stats().expired, 2);
}

#[test]
fn max_uses_retires_at_the_nth_release() {
    let (pool, _) = pool_with(Config {
        max_uses: Some(3),
        ..Config::default()
    });
    let l = listener();
    let c = connect(&l);
    assert_eq!(pool.release(key(K), c.client), Released::Pooled);
    let (fd, info) = pool.acquire_info(key(K)).unwrap();
    assert_eq!(info.uses, 1);
    assert_eq!(pool.release(key(K), fd), Released::Pooled);
    let (fd, info) = pool.acquire_info(key(K)).unwrap();
    assert_eq!(info.uses, 2);
    assert_eq!(pool.release(key(K), fd), Released::Closed);
    assert!(closed(&c.backend));
    assert_eq!(pool.stats().retired, 1);
}

#[test]
fn keepalive_hint_shortens_the_idle_timeout() {
    let (pool, clock) = pool_with(Config::default()); // 60 s idle timeout
    let l = listener();
    let (a, b, z) = (connect(&l), connect(&l), connect(&l));
    pool.release_hint(key("a:1"), a.client, Duration::from_millis(200));
    pool.release_hint(key("b:1"), b.client, Duration::from_secs(3600));
    assert_eq!(
        pool.release_hint(key("z:1"), z.client, Duration::ZERO),
        Released::Closed
    );
    assert!(closed(&z.backend));
    clock.advance_ms(199);
    assert_eq!(pool.idle_count_key(key("a:1")), 1);
    clock.advance_ms(1);
    assert!(pool.acquire(key("a:1")).is_none());
    assert!(closed(&a.backend));
    clock.advance_ms(59_800); // 60 s: the idle timeout caps the long hint
    assert!(pool.acquire(key("b:1")).is_none());
    assert!(closed(&b.backend));
    assert_eq!(pool.stats().expired, 3);
}

#[test]
fn acquire_info_reports_idle_time_age_and_uses() {
    let (pool, clock) = pool_with(Config::default());
    let l = listener();
    let c = connect(&l);
    pool.release(key(K), c.client);
    clock.advance_ms(30);
    let (fd, info) = pool.acquire_info(key(K)).unwrap();
    assert_eq!(info.idle, Duration::from_millis(30));
    assert_eq!(info.age, Duration::from_millis(30));
    assert_eq!(info.uses, 1);
    clock.advance_ms(20); // held 20 ms by the caller
    pool.release(key(K), fd);
    clock.advance_ms(5);
    let (_, info) = pool.acquire_info(key(K)).unwrap();
    assert_eq!(info.idle, Duration::from_millis(5));
    assert_eq!(info.age, Duration::from_millis(55));
    assert_eq!(info.uses, 2);
}

#[test]
fn global_cap_evicts_the_least_recently_released() {
    let (pool, _) = pool_with(Config {
        max_idle_total: Some(2),
        ..Config::default()
    });
    let l = listener();
    let (a, b, c) = (connect(&l), connect(&l), connect(&l));
    let b_fd = b.client.as_raw_fd();
    pool.release(key("a:1"), a.client);
    pool.release(key("b:1"), b.client);
    assert_eq!(pool.release(key("a:1"), c.client), Released::Pooled);
    assert!(closed(&a.backend), "a was the least recently released");
    assert!(open(&b.backend));
    let s = pool.stats();
    assert_eq!((s.evicted, s.idle, s.keys), (1, 2, 2));
    assert_eq!(pool.acquire(key("b:1")).unwrap().as_raw_fd(), b_fd);
}

#[test]
fn global_cap_holds_under_concurrent_releases() {
    const CAP: usize = 8;
    const THREADS: usize = 4;
    const OPS: usize = 400;
    let (pool, _) = pool_with(Config {
        max_idle_total: Some(CAP),
        max_idle_per_key: 4,
        check_liveness: false,
        ..Config::default()
    });
    let done = AtomicBool::new(false);
    let over = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                // stats() is a snapshot under every shard lock (idle_count() is clamped to
                // the cap, so only this can see an excess).
                if pool.stats().idle > CAP as u64 {
                    over.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let pool = &pool;
                s.spawn(move || {
                    let l = listener();
                    let mut backends = Vec::new();
                    for i in 0..OPS {
                        let k = format!("10.0.{t}.{}:80", i % 7);
                        let fd = match pool.acquire(key(&k)) {
                            Some(fd) => fd,
                            None => {
                                let c = connect(&l);
                                backends.push(c.backend);
                                c.client
                            }
                        };
                        pool.release(key(&k), fd);
                    }
                    backends
                })
            })
            .collect();
        for w in workers {
            drop(w.join().unwrap());
        }
        done.store(true, Ordering::Relaxed);
    });
    assert_eq!(over.load(Ordering::Relaxed), 0);
    let s = pool.stats();
    assert!(s.idle <= CAP as u64 && s.evicted > 0, "{s:?}");
    assert_eq!(s.hits + s.misses, (THREADS * OPS) as u64);
    assert_eq!(s.pooled + s.closed_full, (THREADS * OPS) as u64);
    assert_eq!(s.pooled, s.idle + s.hits + s.evicted);
}

#[test]
fn double_release_is_refused_without_closing() {
    let (pool, _) = pool_with(Config::default());
    let l = listener();
    let c = connect(&l);
    let raw = c.client.as_raw_fd();
    assert_eq!(pool.release(key(K), c.client), Released::Pooled);
    // A second claim on the same number (what a C caller's double release is).
    // SAFETY: the number is open (the pool holds it); this OwnedFd is forgotten by release.
    let again = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    assert_eq!(pool.release(key("x:1"), again), Released::AlreadyPooled);
    assert!(open(&c.backend));
    assert_eq!(pool.idle_count(), 1);
    assert_eq!(pool.acquire(key(K)).unwrap().as_raw_fd(), raw);
    assert!(pool.acquire(key("x:1")).is_none());
}

/// Every counter is exact while 4 threads acquire, release, purge and prune at random.
#[test]
fn counters_are_exact_under_threads() {
    const THREADS: usize = 4;
    const OPS: usize = 2000;
    let (pool, _) = pool_with(Config {
        max_idle_per_key: 2,
        check_liveness: false,
        ..Config::default()
    });
    let tallies: Vec<Stats> = std::thread::scope(|s| {
        let ws: Vec<_> = (0..THREADS)
            .map(|t| {
                let pool = &pool;
                s.spawn(move || {
                    let l = listener();
                    let mut mine = Stats::default();
                    let mut backends = Vec::new();
                    let mut rng = 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(t as u64 + 1);
                    for _ in 0..OPS {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let k = format!("k{}:1", rng % 5);
                        match pool.acquire(key(&k)) {
                            Some(_) => mine.hits += 1, // dropped: the caller closes it
                            None => mine.misses += 1,
                        }
                        let c = connect(&l);
                        backends.push(c.backend);
                        match pool.release(key(&k), c.client) {
                            Released::Pooled => mine.pooled += 1,
                            Released::Closed => mine.closed_full += 1,
                            Released::AlreadyPooled => unreachable!(),
                        }
                        if rng % 97 == 0 {
                            mine.purged += pool.purge(Some(key(&k))) as u64;
                        }
                        backends.retain(open);
                    }
                    mine
                })
            })
            .collect();
        ws.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let sum = |f: fn(&Stats) -> u64| tallies.iter().map(f).sum::<u64>();
    let s = pool.stats();
    assert_eq!(s.hits, sum(|t| t.hits));
    assert_eq!(s.misses, sum(|t| t.misses));
    assert_eq!(s.pooled, sum(|t| t.pooled));
    assert_eq!(s.closed_full, sum(|t| t.closed_full));
    assert_eq!(s.purged, sum(|t| t.purged));
    assert_eq!(s.pooled, s.idle + s.hits + s.purged);
}

/// A release into a full key at the cap keeps nothing, so it must not evict anything.
#[test]
fn full_key_release_at_the_cap_evicts_nothing() {
    let (pool, _) = pool_with(Config {
        max_idle_total: Some(2),
        max_idle_per_key: 1,
        ..Config::default()
    });
    let l = listener();
    let (a, b, c) = (connect(&l), connect(&l), connect(&l));
    assert_eq!(pool.release(key("a:1"), a.client), Released::Pooled);
    assert_eq!(pool.release(key("b:1"), b.client), Released::Pooled);
    assert_eq!(pool.release(key("b:1"), c.client), Released::Closed);
    let s = pool.stats();
    assert_eq!((s.evicted, s.closed_full, s.idle), (0, 1, 2));
    assert!(open(&a.backend));
    assert!(closed(&c.backend));
}

/// Eviction takes exactly the least recently released connection, over 100 keys spread
/// over the 64 shards (so many keys share a shard and its order matters too).
#[test]
fn eviction_follows_release_order_across_many_keys() {
    const CAP: usize = 40;
    let (pool, _) = pool_with(Config {
        max_idle_total: Some(CAP),
        ..Config::default()
    });
    let l = listener();
    let mut backends = Vec::new();
    for i in 0..100 {
        let c = connect(&l);
        backends.push(c.backend);
        assert_eq!(
            pool.release(key(&format!("10.1.{i}.1:80")), c.client),
            Released::Pooled
        );
    }
    for (i, b) in backends.iter().enumerate() {
        if i < 100 - CAP {
            assert!(closed(b), "connection {i} should have been evicted");
        } else {
            assert!(open(b), "connection {i} should still be idle");
        }
    }
    assert_eq!(pool.stats().evicted, (100 - CAP) as u64);
}

/// hits never goes down between two snapshots, while every other acquire finds only a dead
/// connection (its hit must never be counted, not even for a moment).
#[test]
fn hits_only_grow() {
    let (pool, _) = pool_with(Config::default());
    let stop = AtomicBool::new(false);
    let decreases = AtomicU64::new(0);
    const N: u64 = 20_000;
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut last = 0;
            while !stop.load(Ordering::Relaxed) {
                let h = pool.stats().hits;
                if h < last {
                    decreases.fetch_add(1, Ordering::Relaxed);
                }
                last = h;
            }
        });
        for i in 0..N {
            // AF_UNIX: the peer's close is seen at once, no wait needed.
            let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            if i % 2 == 0 {
                drop(b);
                pool.release(key(K), a.into());
                assert!(pool.acquire(key(K)).is_none());
            } else {
                pool.release(key(K), a.into());
                assert!(pool.acquire(key(K)).is_some());
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(decreases.load(Ordering::Relaxed), 0);
    let s = pool.stats();
    assert_eq!((s.hits, s.misses, s.dead), (N / 2, N / 2, N / 2));
}

/// prune checks liveness without taking connections out of the pool: a purge running at
/// the same time closes every connection of its key, and a release at the cap still
/// evicts instead of closing its own connection.
#[test]
fn prune_hides_nothing_from_purge_or_the_cap() {
    const N: usize = 200;
    let (pool, _) = pool_with(Config {
        max_idle_total: Some(N),
        max_idle_per_key: 2 * N,
        ..Config::default()
    });
    let l = listener();
    let mut backends = Vec::new();
    let stop = AtomicBool::new(false);
    let mut survived = 0;
    let mut closed_new = 0;
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                pool.prune();
            }
        });
        for round in 0..30 {
            for _ in 0..N {
                let c = connect(&l);
                backends.push(c.backend);
                if pool.release(key("k:1"), c.client) == Released::Closed {
                    closed_new += 1;
                }
            }
            pool.purge(Some(key("k:1")));
            survived += pool.idle_count_key(key("k:1"));
            pool.purge(None);
            backends.clear();
            let _ = round;
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(survived, 0, "connections survived a purge of their key");
    assert_eq!(
        closed_new, 0,
        "releases at the cap closed their own connection"
    );
}

/// Every path that removes an idle connection gives its place under the cap back: after
/// each, two fresh releases fit without evicting anything.
#[test]
fn every_removal_gives_its_place_back() {
    let (pool, clock) = pool_with(Config {
        max_idle_total: Some(2),
        max_idle_per_key: 1,
        ..Config::default()
    });
    let l = listener();
    let mut keep = Vec::new();
    let mut fresh = |k: &str| {
        let c = connect(&l);
        keep.push(c.backend);
        pool.release(key(k), c.client)
    };
    let two_fit = |fresh: &mut dyn FnMut(&str) -> Released, step: &str| {
        assert_eq!(fresh("n1:1"), Released::Pooled, "{step}");
        assert_eq!(fresh("n2:1"), Released::Pooled, "{step}");
        assert_eq!(
            pool.stats().evicted,
            0,
            "after {step}: a place was not given back"
        );
        drop(pool.acquire(key("n1:1")));
        drop(pool.acquire(key("n2:1")));
    };
    assert_eq!(fresh("a:1"), Released::Pooled);
    assert_eq!(fresh("a:1"), Released::Closed); // full key
    drop(pool.acquire(key("a:1")));
    two_fit(&mut fresh, "a full key");

    assert_eq!(
        pool.release_hint(key("x:1"), connect(&l).client, Duration::from_millis(1)),
        Released::Pooled
    );
    clock.advance_ms(2);
    assert_eq!(pool.idle_count_key(key("x:1")), 0, "expired: not counted");
    assert!(pool.acquire(key("x:1")).is_none());
    two_fit(&mut fresh, "expiry on acquire");

    assert_eq!(
        pool.release_hint(key("y:1"), connect(&l).client, Duration::from_millis(1)),
        Released::Pooled
    );
    clock.advance_ms(2);
    assert_eq!(pool.prune(), 1);
    two_fit(&mut fresh, "prune expiry");

    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(b);
    pool.release(key("z:1"), a.into());
    assert_eq!(pool.prune(), 1);
    two_fit(&mut fresh, "prune of a dead one");

    fresh("p:1");
    fresh("q:1");
    assert_eq!(pool.purge(None), 2);
    two_fit(&mut fresh, "purge of every key");
    fresh("p:1");
    assert_eq!(pool.purge(Some(key("p:1"))), 1);
    two_fit(&mut fresh, "purge of a key");
}
