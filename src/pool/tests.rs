//! Unit tests that need the pool's insides (generations, shards, the watcher).

use super::*;
use crate::key::Key;
use crate::watch::Ready;
use crate::Config;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{mpsc, Arc};

/// Entries of keys whose connections were all taken stay for the next release, but
/// memory still follows the keys that hold connections: empty entries are swept once
/// they outnumber the live ones (beyond a small slack per shard), and by prune.
#[test]
#[allow(unsafe_code)]
fn empty_entries_stay_bounded() {
    const N: usize = 3_000;
    // 2 fds per key: raise the soft fd limit if it is lower (CI machines often have 1024).
    // SAFETY: plain get/setrlimit on a valid struct.
    unsafe {
        let mut r = std::mem::zeroed::<libc::rlimit>();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        if r.rlim_cur < 4 * N as u64 {
            r.rlim_cur = r.rlim_max.min(8 * N as u64);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
    let pool = Pool::new(Config::default()).unwrap();
    let entries =
        |pool: &Pool| -> usize { pool.state().shards.iter().map(|s| s.lock().entries()).sum() };
    let keys: Vec<String> = (0..N)
        .map(|i| format!("10.{}.{}.1:80", i / 256, i % 256))
        .collect();
    let mut peers = Vec::new();
    for k in &keys {
        let (a, b) = UnixStream::pair().unwrap();
        pool.release(Key::try_from(k.as_str()).unwrap(), a.into());
        peers.push(b);
    }
    assert_eq!(entries(&pool), N);
    for k in &keys {
        assert!(pool.acquire(Key::try_from(k.as_str()).unwrap()).is_some());
    }
    assert!(
        entries(&pool) <= SHARDS * 16,
        "{} empty entries kept",
        entries(&pool)
    );
    assert_eq!(pool.stats().keys, 0);
    pool.prune();
    assert_eq!(entries(&pool), 0);
}

/// Keys with handles keep their entries when they hold nothing; emptying many of them one
/// by one must not sweep the shard at every call (it would be quadratic): a sweep waits
/// for as many new empty entries as it had to keep.
#[test]
fn pinned_empty_entries_do_not_make_every_call_sweep() {
    const N: usize = 2_000;
    let pool = Pool::new(Config::default()).unwrap();
    let keys: Vec<String> = (0..N)
        .map(|i| format!("10.{}.{}.2:80", i / 256, i % 256))
        .collect();
    let mut peers = Vec::new();
    for k in &keys {
        let h = pool.key(Key::try_from(k.as_str()).unwrap());
        let (a, b) = UnixStream::pair().unwrap();
        pool.release_by(h, a.into(), 0, None);
        peers.push(b);
    }
    for k in &keys {
        let h = pool.key(Key::try_from(k.as_str()).unwrap());
        assert!(pool.acquire_fd_by(h).is_ok());
    }
    let sweeps: usize = pool.state().shards.iter().map(|s| s.lock().sweeps()).sum();
    // Each shard sweeps at most a few times as its pinned empty entries double.
    assert!(sweeps <= SHARDS * 8, "{sweeps} sweeps for {N} keys emptied");
}

/// An event is handled after its batch was read; by then its fd may have been closed
/// (here by an acquire's liveness check) and the number reused by a new, live connection
/// of the same key. The event only makes the reaper check the key: the new connection
/// passes and is left alone.
#[test]
fn a_stale_event_never_closes_a_reused_number() {
    let config = Config {
        watch: true,
        ..Config::default()
    };
    let pool = Pool::new(config).unwrap();
    let key = Key::try_from("stale:1").unwrap();
    let (a, a_peer) = UnixStream::pair().unwrap();
    let a_raw = a.as_raw_fd();
    pool.release(key, a.into());
    drop(a_peer); // dead while idle: an event is ready
    let st = pool.state();
    let w = st.watcher().unwrap();
    // Await it: a child forked by a test running in parallel may hold a copy of the
    // peer until it exits, and only then does the hang-up arrive.
    assert!(
        readable_within(w.fd(), 10_000),
        "no event for the dead connection"
    );
    let (batch, _, _) = w.ready_batch();
    assert_eq!(batch.len(), 1);
    assert!(pool.acquire(key).is_none(), "the check closes it");
    let (b, _b_peer) = UnixStream::pair().unwrap();
    // The lowest free number: the same one, unless a test running in parallel took it.
    let _reused = b.as_raw_fd() == a_raw;
    pool.release(key, b.into());
    let Ready::Key { hash } = batch[0] else {
        panic!("not a key event");
    };
    let now = pool.now().1;
    assert_eq!(pool.check_key(st, pool.shard_of(st, hash), hash, now), 0);
    assert_eq!(pool.idle_count_key(key), 1, "the new connection stays");
}

/// A coarse clock that falls behind far more than its declared tick (as on a VM whose
/// timekeeping vCPU was descheduled): near a deadline the exact clock decides, so an
/// expired connection is neither handed out nor kept.
#[test]
fn a_late_coarse_clock_never_makes_expiry_late() {
    #[derive(Debug, Clone)]
    struct LateCoarse(crate::ManualClock, Arc<AtomicU64>);
    impl Clock for LateCoarse {
        fn now_ns(&self) -> u64 {
            self.0.now_ns() - self.1.load(Ordering::Relaxed)
        }
        fn lag_ns(&self) -> u64 {
            1_000_000 // what it claims
        }
        fn precise_now_ns(&self) -> u64 {
            self.0.now_ns()
        }
    }
    let manual = crate::ManualClock::new(10_000_000_000);
    let behind = Arc::new(AtomicU64::new(0));
    let config = Config {
        idle_timeout: Some(Duration::from_millis(100)),
        check_liveness: false,
        ..Config::default()
    };
    let pool = Pool::with_clock(config, LateCoarse(manual.clone(), behind.clone())).unwrap();
    let key = Key::try_from("late:1").unwrap();
    let (a, _a_peer) = UnixStream::pair().unwrap();
    assert_eq!(pool.release(key, a.into()), Released::Pooled);
    manual.advance_ms(110);
    behind.store(20_000_000, Ordering::Relaxed); // reads 90 ms idle; the truth is 110
    assert!(pool.acquire(key).is_none(), "expired by the exact clock");
    assert_eq!(pool.stats().expired, 1);
    // Far from any deadline the coarse reading alone decides (and is right).
    let (b, _b_peer) = UnixStream::pair().unwrap();
    assert_eq!(pool.release(key, b.into()), Released::Pooled);
    manual.advance_ms(1);
    assert!(pool.acquire(key).is_some());

    // The lifetime, judged on release.
    behind.store(0, Ordering::Relaxed);
    let config = Config {
        max_lifetime: Some(Duration::from_millis(100)),
        check_liveness: false,
        ..Config::default()
    };
    let pool = Pool::with_clock(config, LateCoarse(manual.clone(), behind.clone())).unwrap();
    let (c, _c_peer) = UnixStream::pair().unwrap();
    assert_eq!(pool.release(key, c.into()), Released::Pooled);
    let c = pool.acquire(key).unwrap();
    manual.advance_ms(110);
    behind.store(20_000_000, Ordering::Relaxed);
    assert_eq!(pool.release(key, c), Released::Closed, "past its lifetime");
}

/// A fork child must never take a shard lock: another parent thread may have held it at
/// the fork, and in the child nobody will ever release it. Here a parent thread holds
/// the very shard the child uses, for the whole life of the child.
#[test]
#[allow(unsafe_code)]
fn a_fork_child_never_waits_for_a_lock_held_at_the_fork() {
    let pool = Pool::new(Config::default()).unwrap();
    let key = Key::try_from("held:1").unwrap();
    let (a, _a_peer) = UnixStream::pair().unwrap();
    let a_raw = a.as_raw_fd();
    assert_eq!(pool.release(key, a.into()), Released::Pooled);
    let shard = pool.shard_of(pool.state(), pool.hasher.hash_key(key.as_bytes()));
    let (locked_tx, locked_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            let _held = shard.lock();
            locked_tx.send(()).unwrap();
            let _ = done_rx.recv();
        });
        locked_rx.recv().unwrap();
        // SAFETY: the child only runs the closure below and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = std::panic::catch_unwind(|| {
                // SAFETY: fcntl on a number only queries it.
                if unsafe { libc::fcntl(a_raw, libc::F_GETFD) } != -1 {
                    return 2; // the child's copy of the idle fd must be closed
                }
                if pool.acquire(key).is_some() {
                    return 3; // the child's pool starts empty
                }
                let (c, _c_peer) = UnixStream::pair().unwrap();
                if pool.release(key, c.into()) != Released::Pooled {
                    return 4;
                }
                if pool.acquire(key).is_none() || pool.stats().hits != 1 {
                    return 5;
                }
                0
            })
            .unwrap_or(6);
            // SAFETY: leaves the child without running the parent's test harness.
            unsafe { libc::_exit(code) };
        }
        let status = wait_child(pid, 10_000);
        done_tx.send(()).unwrap();
        assert_eq!(status, Some(0), "child exit status (None: hung, killed)");
    });
    // The parent's pool is untouched by the child.
    assert_eq!(pool.acquire(key).map(|fd| fd.as_raw_fd()), Some(a_raw));
}

/// Whether `fd` becomes readable within `ms` milliseconds.
#[allow(unsafe_code)]
pub(super) fn readable_within(fd: std::os::fd::RawFd, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) == 1 }
}

/// The child's exit code, waiting at most `ms` (through a pidfd, so no polling loop);
/// None, after killing it, if it did not exit in time.
#[allow(unsafe_code)]
fn wait_child(pid: libc::pid_t, ms: i32) -> Option<i32> {
    // SAFETY: plain syscalls on our own child.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        assert!(pidfd >= 0);
        let mut p = libc::pollfd {
            fd: pidfd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ready = libc::poll(&mut p, 1, ms) == 1;
        libc::close(pidfd);
        if !ready {
            libc::kill(pid, libc::SIGKILL);
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        (ready && libc::WIFEXITED(status)).then(|| libc::WEXITSTATUS(status))
    }
}

/// Where nothing can expire by the configuration and nothing is checked, acquire reads no
/// clock unless the key holds a connection with a keep-alive hint's deadline, which still
/// expires on time.
#[test]
fn acquire_reads_no_clock_when_nothing_can_expire() {
    #[derive(Debug, Clone)]
    struct Counting(crate::ManualClock, Arc<AtomicU64>);
    impl Clock for Counting {
        fn now_ns(&self) -> u64 {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.now_ns()
        }
    }
    let manual = crate::ManualClock::new(1_000_000_000);
    let reads = Arc::new(AtomicU64::new(0));
    let plain = Config {
        idle_timeout: None,
        check_liveness: false,
        ..Config::default()
    };
    let timed = Config {
        idle_timeout: Some(Duration::from_secs(60)),
        ..plain.clone()
    };
    let key = Key::try_from("clock:1").unwrap();
    let (a, _a_peer) = UnixStream::pair().unwrap();
    // The reads of 10 acquires, with a connection pooled before each.
    let acquires = |pool: &Pool<Counting>, fd: std::os::fd::OwnedFd| {
        let mut fd = Some(fd);
        let mut n = 0;
        for _ in 0..10 {
            assert_eq!(pool.release(key, fd.take().unwrap()), Released::Pooled);
            let before = reads.load(Ordering::Relaxed);
            fd = pool.acquire(key);
            n += reads.load(Ordering::Relaxed) - before;
        }
        (n, fd.unwrap())
    };
    let pool = Pool::with_clock(timed, Counting(manual.clone(), reads.clone())).unwrap();
    let (n, a) = acquires(&pool, a.into());
    assert_eq!(n, 10, "an idle timeout: every acquire reads the clock");
    let pool = Pool::with_clock(plain, Counting(manual.clone(), reads.clone())).unwrap();
    let (n, a) = acquires(&pool, a);
    assert_eq!(n, 0, "nothing can expire: no acquire reads it");
    // A hint gives the connection a deadline: acquires read the clock, and it expires.
    assert_eq!(
        pool.release_hint(key, a, Duration::from_millis(100)),
        Released::Pooled
    );
    let before = reads.load(Ordering::Relaxed);
    let a = pool.acquire(key).expect("within its hint");
    assert!(reads.load(Ordering::Relaxed) > before);
    assert_eq!(
        pool.release_hint(key, a, Duration::from_millis(100)),
        Released::Pooled
    );
    manual.advance_ms(150);
    assert!(pool.acquire(key).is_none(), "expired by its hint");
    assert_eq!(pool.stats().expired, 1);
}
