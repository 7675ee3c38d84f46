//! The C ABI called from Rust, in the test profile (debug assertions on), for what the C
//! harness, linked to the release library, cannot see.

use std::ffi::CStr;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::IntoRawFd;
use std::time::Duration;

use connpool::capi::{
    connpool_acquire, connpool_config, connpool_config_init, connpool_free, connpool_new,
    connpool_new_with_config, connpool_release, CONNPOOL_POOLED,
};

const KEY: &CStr = c"127.0.0.1:9";

/// A caller that releases an fd number it already closed breaks the ownership contract;
/// the answer must still be a return code, not an abort of the process (std aborts debug
/// builds that drop an `OwnedFd` whose fd is already closed).
#[test]
fn releasing_a_closed_fd_number_does_not_abort() {
    // Far above any fd this process can open, so no other test's fd can take the number.
    let fd = 1 << 30;
    unsafe {
        // With the liveness check, the stale number fails it (EBADF) and is closed.
        let pool = connpool_new(8, 0);
        assert!(!pool.is_null());
        assert_eq!(connpool_release(pool, KEY.as_ptr(), fd), CONNPOOL_POOLED);
        assert_eq!(connpool_acquire(pool, KEY.as_ptr()), -libc::ENOENT);
        connpool_free(pool);

        // Without it, the number comes back, and freeing the pool closes it again.
        let mut cfg = std::mem::zeroed::<connpool_config>();
        connpool_config_init(&mut cfg);
        cfg.flags = 0;
        let pool = connpool_new_with_config(&cfg);
        assert!(!pool.is_null());
        assert_eq!(connpool_release(pool, KEY.as_ptr(), fd), CONNPOOL_POOLED);
        let got = connpool_acquire(pool, KEY.as_ptr());
        assert_eq!(got, fd);
        assert_eq!(connpool_release(pool, KEY.as_ptr(), got), CONNPOOL_POOLED);
        connpool_free(pool);

        // An invalid key closes the fd on the error path: same rule.
        let pool = connpool_new(8, 0);
        assert_eq!(connpool_release(pool, c"".as_ptr(), fd), -libc::EINVAL);
        connpool_free(pool);
    }
}

/// Release with a NULL pool still consumes (closes) the fd: the backend reads EOF.
#[test]
fn release_with_null_pool_closes_the_fd() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let fd = TcpStream::connect(l.local_addr().unwrap())
        .unwrap()
        .into_raw_fd();
    let (mut backend, _) = l.accept().unwrap();
    let rc = unsafe { connpool_release(std::ptr::null_mut(), KEY.as_ptr(), fd) };
    assert_eq!(rc, -libc::EINVAL);
    backend
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(
        backend.read(&mut [0u8; 1]).unwrap(),
        0,
        "EOF: fd was closed"
    );
}
