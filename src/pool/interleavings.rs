//! Unit tests of interleavings, made step by step: what another thread does between two
//! steps of a call is done there by the test (or by a callback the call makes).

use super::tests::readable_within;
use super::*;
use crate::fd_table;
use crate::key::Key;
use crate::Config;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

/// Connections out for a check (prune, the watcher's reap) are still idle in a stats
/// snapshot, so one taken meanwhile adds up (`pooled = idle + hits + dead + ...`).
#[test]
fn connections_out_for_a_check_are_still_idle_in_stats() {
    let pool = Pool::new(Config::default()).unwrap();
    let key = Key::try_from("checking:1").unwrap();
    let (a, _a_peer) = UnixStream::pair().unwrap();
    let (b, _b_peer) = UnixStream::pair().unwrap();
    pool.release(key, a.into());
    pool.release(key, b.into());
    let st = pool.state();
    let hash = pool.hasher.hash_key(key.as_bytes());
    let shard = pool.shard_of(st, hash);
    let outs = shard.lock().check_out(hash);
    assert_eq!(outs.iter().map(|o| o.conns.len()).sum::<usize>(), 2);
    let s = pool.stats();
    assert_eq!(
        (s.idle, s.keys, s.pooled),
        (2, 1, 2),
        "out for a check: still idle"
    );
    let mut closes = pool.close_list(st);
    let mut guard = shard.lock();
    for o in outs {
        let healthy = vec![true; o.conns.len()];
        guard.check_in(o, &healthy, (8, 0), &mut Vec::new(), &mut closes);
    }
    drop(guard);
    drop(closes);
    assert_eq!(pool.stats().idle, 2);
}

/// A hang-up the watcher reports while a release has registered its connection but not
/// yet stored it is not lost: the release, once it has stored it, re-arms it, and the next
/// reap closes it.
#[test]
fn a_report_before_the_store_is_not_lost() {
    let pool = Pool::new(Config {
        watch: true,
        ..Config::default()
    })
    .unwrap();
    let key = Key::try_from("transit:1").unwrap();
    let (a, a_peer) = UnixStream::pair().unwrap();
    a_peer.shutdown(std::net::Shutdown::Write).unwrap(); // its hang-up is pending already
    let raw = a.as_raw_fd();
    let st = pool.state();
    let hash = pool.hasher.hash_key(key.as_bytes());
    // The release (`put`), step by step: claimed, registered, (the reaper runs), stored.
    assert_eq!(fd_table::claim(raw, pool.id), fd_table::Claim::Fresh);
    assert!(pool.watch_sets(st, a.as_fd(), hash, None));
    assert_eq!(pool.reap(), 0, "not stored yet: nothing to close");
    let never = crate::conn::NEVER;
    let r = pool.store(st, hash, key.as_bytes(), a.into(), 0, never, None);
    assert_eq!(pool.stored(st, raw, r), Released::Pooled);
    assert_eq!(pool.idle_count_key(key), 1);
    let w = st.watcher().unwrap();
    assert!(readable_within(w.fd(), 10_000), "reported again");
    assert_eq!(pool.reap(), 1, "and closed");
    assert_eq!(pool.stats().dead, 1);
}

/// With the harvest check: a connection that became readable while lent, reported by a
/// harvest then (its entry disarmed), is suspect at its release, so the next acquire
/// checks it however recent the last harvest is.
#[test]
fn harvest_a_connection_reported_while_lent_is_suspect_at_its_release() {
    let pool = Pool::new(Config {
        harvest: true,
        ..Config::default()
    })
    .unwrap();
    let key = Key::try_from("lent:1").unwrap();
    let (a, mut a_peer) = UnixStream::pair().unwrap();
    let raw = a.as_raw_fd();
    pool.release(key, a.into());
    let a = pool.acquire(key).expect("idle and healthy");
    std::io::Write::write_all(&mut a_peer, b"x").unwrap(); // stray bytes while lent
    pool.prune(); // a harvest now: it reports the lent connection
    pool.release(key, a);
    assert!(
        fd_table::is_suspect(raw),
        "readable at its release: suspect"
    );
    assert!(pool.acquire(key).is_none(), "checked: closed as dead");
    assert_eq!(pool.stats().dead, 1);
}

/// A connection released while a thread waits at its key's limit goes to that thread
/// checked, as any acquire's: a dead one is closed, and its slot is then the waiter's.
#[test]
fn a_connection_handed_to_a_waiter_is_checked() {
    let pool = Arc::new(
        Pool::new(Config {
            max_conns_per_key: Some(1),
            ..Config::default()
        })
        .unwrap(),
    );
    let key = Key::try_from("handoff:1").unwrap();
    assert!(matches!(pool.try_acquire(key), Outcome::Connect));
    let (a, mut a_peer) = UnixStream::pair().unwrap();
    let waiter = {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || {
            let key = Key::try_from("handoff:1").unwrap();
            pool.acquire_wait(key, std::time::Duration::from_secs(60))
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while pool.stats().waiting == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the waiter never queued"
        );
        std::thread::yield_now();
    }
    std::io::Write::write_all(&mut a_peer, b"x").unwrap(); // unread at its release
    pool.release(key, a.into());
    let got = waiter.join().unwrap();
    assert!(
        matches!(got, Outcome::Connect),
        "not the dead connection: {got:?}"
    );
    let s = pool.stats();
    assert_eq!((s.dead, s.hits, s.connecting), (1, 0, 1));
}

/// The pool a check callback reaches, once made (a weak reference: no cycle).
type Me = Arc<std::sync::OnceLock<std::sync::Weak<Pool>>>;

/// A pool with the idle watcher and `check` as its check; `me` then reaches it.
fn watched_with(
    me: &Me,
    check: impl Fn(BorrowedFd<'_>, usize) -> bool + Send + Sync + std::panic::RefUnwindSafe + 'static,
) -> Arc<Pool> {
    let pool = Arc::new(
        Pool::new(Config {
            watch: true,
            check: Some(crate::Callback(Arc::new(check))),
            ..Config::default()
        })
        .unwrap(),
    );
    me.set(Arc::downgrade(&pool)).unwrap();
    pool
}

/// From inside a check: `peer`'s backend end hangs up, and a reap runs once the watcher
/// reports it; what that reap closed (None: no report within 10 s).
fn hang_up_and_reap(me: &Me, peer: UnixStream) -> Option<usize> {
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    let pool = me.get().unwrap().upgrade().unwrap();
    readable_within(pool.state().watcher().unwrap().fd(), 10_000).then(|| pool.reap())
}

/// A hang-up the watcher reports while prune has the connection out for its check (which
/// looked before the hang-up) is not lost: prune re-arms what passed, and the next reap
/// closes it.
#[test]
fn a_report_while_prune_has_it_out_is_not_lost() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let me = Me::default();
    let (a, a_peer) = UnixStream::pair().unwrap();
    let peer = Arc::new(Mutex::new(Some(a_peer)));
    let (calls, reaped_while_out) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(9)));
    let check = {
        let (me, peer) = (Arc::clone(&me), Arc::clone(&peer));
        let (calls, reaped) = (Arc::clone(&calls), Arc::clone(&reaped_while_out));
        move |fd: std::os::fd::BorrowedFd<'_>, _ctx: usize| -> bool {
            if calls.fetch_add(1, Ordering::SeqCst) > 0 {
                return crate::sys::peek(fd) == crate::sys::Peek::Empty;
            }
            // Prune's check looked: healthy. Now the backend hangs up, and the reaper runs.
            let p = peer.lock().unwrap().take().unwrap();
            if let Some(n) = hang_up_and_reap(&me, p) {
                reaped.store(n, Ordering::SeqCst);
            }
            true
        }
    };
    let pool = watched_with(&me, check);
    let key = Key::try_from("pruned:1").unwrap();
    pool.release(key, a.into());
    assert_eq!(pool.prune(), 0, "its check passed");
    assert_eq!(
        reaped_while_out.load(Ordering::SeqCst),
        0,
        "reported while out: not found"
    );
    let w = pool.state().watcher().unwrap().fd();
    assert!(readable_within(w, 10_000), "reported again");
    assert_eq!(pool.reap(), 1, "and closed");
    assert_eq!(pool.stats().dead, 1);
}

/// Two reaps at once (the reaper thread and the caller's, say): a hang-up the second one is
/// told of while the first has the key's connections out for its check (which passed that
/// connection before the hang-up) is not lost: the first re-arms it as it puts it back.
#[test]
fn a_report_while_another_reap_has_it_out_is_not_lost() {
    use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
    use std::sync::Mutex;
    let me = Me::default();
    let (x, x_peer) = UnixStream::pair().unwrap();
    let (y, y_peer) = UnixStream::pair().unwrap();
    let x_raw = Arc::new(AtomicI32::new(x.as_raw_fd()));
    let x_peer = Arc::new(Mutex::new(Some(x_peer)));
    let nested = Arc::new(AtomicUsize::new(9));
    let check = {
        let (me, x_raw, x_peer, nested) =
            (me.clone(), x_raw.clone(), x_peer.clone(), nested.clone());
        move |fd: std::os::fd::BorrowedFd<'_>, _ctx: usize| -> bool {
            let healthy = crate::sys::peek(fd) == crate::sys::Peek::Empty;
            if fd.as_raw_fd() == x_raw.load(Ordering::SeqCst) {
                let p = x_peer.lock().unwrap().take();
                // x passed; now its backend hangs up, and a second reap runs.
                if let Some(n) = p.and_then(|p| hang_up_and_reap(&me, p)) {
                    nested.store(n, Ordering::SeqCst);
                }
            }
            healthy
        }
    };
    let pool = watched_with(&me, check);
    let key = Key::try_from("reaped:1").unwrap();
    pool.release(key, x.into());
    pool.release(key, y.into());
    y_peer.shutdown(std::net::Shutdown::Write).unwrap();
    let w = pool.state().watcher().unwrap().fd();
    assert!(readable_within(w, 10_000));
    assert_eq!(pool.reap(), 1, "y closed; x passed");
    assert_eq!(
        nested.load(Ordering::SeqCst),
        0,
        "the second reap found the key out"
    );
    assert!(readable_within(w, 10_000), "x reported again");
    assert_eq!(pool.reap(), 1, "and closed");
    assert_eq!(pool.stats().dead, 2);
}

/// A check that calls hung-up connections healthy (a sloppy caller's check) cannot make the
/// reaper spin: each report is looked at once, and what passed stays disarmed.
#[test]
fn hang_ups_a_check_passes_do_not_make_the_reaper_spin() {
    let always = |_: std::os::fd::BorrowedFd<'_>, _: usize| true;
    let pool = Pool::new(Config {
        watch: true,
        check: Some(crate::Callback(Arc::new(always))),
        ..Config::default()
    })
    .unwrap();
    let key = Key::try_from("sloppy:1").unwrap();
    let (x, x_peer) = UnixStream::pair().unwrap();
    let (y, y_peer) = UnixStream::pair().unwrap();
    pool.release(key, x.into());
    pool.release(key, y.into());
    let w = pool.state().watcher().unwrap().fd();
    for peer in [x_peer, y_peer] {
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(readable_within(w, 10_000), "reported");
        assert_eq!(pool.reap(), 0, "the check passes it");
    }
    assert!(!readable_within(w, 0), "nothing re-armed: nothing to reap");
    assert_eq!(pool.idle_count_key(key), 2);
}
