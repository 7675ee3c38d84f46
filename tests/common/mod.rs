//! Helpers shared by the integration tests: real loopback TCP connections.
#![allow(dead_code)] // each test crate uses its own subset

use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::time::Duration;

use connpool::Key;

/// A connected loopback pair: `client` goes into the pool, `backend` watches it.
pub struct Conn {
    pub client: OwnedFd,
    pub backend: TcpStream,
}

pub fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

pub fn connect(l: &TcpListener) -> Conn {
    let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (backend, _) = l.accept().unwrap();
    Conn {
        client: client.into(),
        backend,
    }
}

/// True once the client side is closed: the backend reads EOF (bounded wait).
pub fn closed(backend: &TcpStream) -> bool {
    backend
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut b = [0u8; 1];
    matches!((&*backend).read(&mut b), Ok(0))
}

/// True while the client side is open: nothing to read yet, no EOF.
pub fn open(backend: &TcpStream) -> bool {
    backend.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let r = (&*backend).read(&mut b);
    backend.set_nonblocking(false).unwrap();
    matches!(r, Err(e) if e.kind() == ErrorKind::WouldBlock)
}

pub fn key(s: &str) -> Key<'_> {
    Key::try_from(s).unwrap()
}
