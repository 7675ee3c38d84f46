//! Plain fd calls, made through `syscall(2)` where glibc's wrapper is a cancellation point.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Closes `fd`, ignoring errors (on Linux `close` releases the number even when it fails,
/// EINTR included, so it is never retried).
pub fn close_raw(fd: RawFd) {
    // SAFETY: closing a number has no memory effects; the caller owns it.
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

/// What a one-byte `recv(MSG_PEEK | MSG_DONTWAIT)` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    /// Nothing to read (EAGAIN): an idle, open connection.
    Empty,
    /// A byte is waiting.
    Data,
    /// End of file: the peer closed its end.
    Eof,
    /// An error (reset, not a socket, not an fd): the errno.
    Error(i32),
}

/// One non-blocking `recv(MSG_PEEK)` of a byte (raw `recvfrom`: not a cancellation point).
pub fn peek(fd: BorrowedFd<'_>) -> Peek {
    let mut byte = 0u8;
    loop {
        // SAFETY: `byte` is one writable byte; `fd` is borrowed, so open for the call.
        let n = unsafe {
            libc::syscall(
                libc::SYS_recvfrom,
                fd.as_raw_fd(),
                (&mut byte as *mut u8).cast::<libc::c_void>(),
                1usize,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
                std::ptr::null_mut::<libc::sockaddr>(),
                std::ptr::null_mut::<libc::socklen_t>(),
            )
        };
        return match n {
            0 => Peek::Eof,
            n if n > 0 => Peek::Data,
            _ => match errno() {
                libc::EINTR => continue,
                e if e == libc::EAGAIN || e == libc::EWOULDBLOCK => Peek::Empty,
                e => Peek::Error(e),
            },
        };
    }
}

/// Takes ownership of a new fd returned by a system call.
pub(super) fn owned(rc: libc::c_int) -> std::io::Result<OwnedFd> {
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new fd just returned by the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(rc) })
}

/// A new non-blocking, close-on-exec eventfd.
pub fn eventfd_create() -> std::io::Result<OwnedFd> {
    // SAFETY: no pointers.
    owned(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })
}

/// Makes an eventfd readable.
pub fn eventfd_signal(fd: BorrowedFd<'_>) {
    let one = 1u64;
    // SAFETY: 8 readable bytes.
    unsafe {
        libc::syscall(
            libc::SYS_write,
            fd.as_raw_fd(),
            (&one as *const u64).cast::<libc::c_void>(),
            8usize,
        )
    };
}

/// Makes the eventfd numbered `fd` readable (raw: the caller keeps it open for the call).
pub fn eventfd_signal_raw(fd: RawFd) {
    let one = 1u64;
    // SAFETY: 8 readable bytes; a bad fd is an error return.
    unsafe {
        libc::syscall(
            libc::SYS_write,
            fd,
            (&one as *const u64).cast::<libc::c_void>(),
            8usize,
        )
    };
}

/// Reads an 8-byte counter (timerfd expirations, eventfd) without blocking, so the fd
/// stops being readable; the value is not needed.
pub fn drain_counter(fd: BorrowedFd<'_>) {
    let mut buf = 0u64;
    // SAFETY: 8 writable bytes.
    unsafe {
        libc::syscall(
            libc::SYS_read,
            fd.as_raw_fd(),
            (&mut buf as *mut u64).cast::<libc::c_void>(),
            8usize,
        )
    };
}

/// Waits until `a` or `b` (fds the caller keeps open for the call) is readable, with no
/// timeout; returns which: (a, b). (false, false) after a signal: the caller loops.
pub fn wait_readable(a: RawFd, b: RawFd) -> (bool, bool) {
    let mut p = [
        libc::pollfd {
            fd: a,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: b,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: two valid pollfds; bad fds are reported in revents. ppoll with no timeout
    // and no signal mask is poll(-1).
    let n = unsafe {
        libc::syscall(
            libc::SYS_ppoll,
            p.as_mut_ptr(),
            2 as libc::nfds_t,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<libc::sigset_t>(),
            0usize,
        )
    };
    if n <= 0 {
        return (false, false);
    }
    (p[0].revents != 0, p[1].revents != 0)
}

/// Whether `fd` has input or a hang-up pending now (a `ppoll` with a zero timeout: not a
/// cancellation point). An error counts as ready: the caller's check then decides.
pub fn ready_now(fd: BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    loop {
        // SAFETY: one valid pollfd and a zero timeout, both live for the call.
        let n = unsafe {
            libc::syscall(
                libc::SYS_ppoll,
                &mut p as *mut libc::pollfd,
                1 as libc::nfds_t,
                &zero as *const libc::timespec,
                std::ptr::null::<libc::sigset_t>(),
                0usize,
            )
        };
        if n >= 0 {
            return n > 0;
        }
        if errno() != libc::EINTR {
            return true;
        }
    }
}
