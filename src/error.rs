//! The one error type of the Rust API.

/// Why a pool could not be made or a call could not be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot make a useful pool; the message says why.
    InvalidConfig(&'static str),
    /// The pool has no idle watcher (`Config::watch` is off).
    NoWatcher,
    /// A system call failed, or a resource could not be had: the errno (EMFILE, ENOMEM,
    /// EAGAIN for a thread...).
    Os(i32),
}

impl Error {
    /// The errno value the C API reports for this error.
    pub fn errno(&self) -> i32 {
        match self {
            Error::InvalidConfig(_) | Error::NoWatcher => libc::EINVAL,
            Error::Os(e) => *e,
        }
    }

    pub(crate) fn last_os(e: std::io::Error) -> Self {
        Error::Os(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::InvalidConfig(why) => write!(f, "invalid configuration: {why}"),
            Error::NoWatcher => f.write_str("the pool has no idle watcher (Config::watch)"),
            Error::Os(e) => write!(f, "{}", std::io::Error::from_raw_os_error(*e)),
        }
    }
}

impl std::error::Error for Error {}
