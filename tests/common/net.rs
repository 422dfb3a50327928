//! Sockets for the tests: a loopback port held closed (a server that is down, on a port
//! no other program can take meanwhile), then brought up; and, for the connection-fairness
//! tests, a TCP connection from a chosen loopback
//! source address (Linux routes all of 127.0.0.0/8 to `lo`), so that one test can play
//! several clients; and a reader of exactly one HTTP answer on a kept-open connection
//! (HEAD answers announce a length they do not send).

// Each test file uses its own subset of these helpers.
#![allow(dead_code)]

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// A connection to `addr` (`127.0.0.1:PORT`) from `src` (any port).
pub fn connect_from(addr: &str, src: Ipv4Addr) -> io::Result<TcpStream> {
    let dst: SocketAddrV4 = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let sin = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor we own; on success it is handed to
    // TcpStream, which closes it; on failure it is closed here.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let from = sin(src, 0);
        let to = sin(*dst.ip(), dst.port());
        if libc::bind(fd, (&raw const from).cast(), len) != 0
            || libc::connect(fd, (&raw const to).cast(), len) != 0
        {
            let e = io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        Ok(TcpStream::from_raw_fd(fd))
    }
}

/// `127.0.0.N`.
pub fn loopback(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// One HTTP answer read from a connection that may stay open: the status line, the
/// headers, and `Content-Length` bytes of body unless `head_only`.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one answer within `limit`; `None` when the connection ends (or the time runs
/// out) before a whole answer came.
pub fn read_answer(s: &mut TcpStream, head_only: bool, limit: Duration) -> Option<Answer> {
    let until = Instant::now() + limit;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let left = until.checked_duration_since(Instant::now())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut a = Answer {
        status,
        headers,
        body: Vec::new(),
    };
    if !head_only {
        let len: usize = a.header("Content-Length")?.parse().ok()?;
        a.body = vec![0; len];
        let mut got = 0;
        while got < len {
            let left = until.checked_duration_since(Instant::now())?;
            s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            match s.read(&mut a.body[got..]) {
                Ok(0) | Err(_) => return None,
                Ok(n) => got += n,
            }
        }
    }
    Some(a)
}

/// Whether the peer has closed the connection: a read sees the end within `limit`
/// (anything still sent before the end is returned in the error message).
pub fn closed_within(s: &mut TcpStream, limit: Duration) -> Result<(), String> {
    let until = Instant::now() + limit;
    let mut rest = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Some(left) = until.checked_duration_since(Instant::now()) else {
            return Err(format!(
                "still open after {limit:?}; received {:?}",
                String::from_utf8_lossy(&rest)
            ));
        };
        let _ = s.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => rest.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    if rest.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "more bytes before the end: {:?}",
            String::from_utf8_lossy(&rest)
        ))
    }
}

/// Whether the peer has closed the connection (seen at once, without waiting).
pub fn is_closed(s: &TcpStream) -> bool {
    let _ = s.set_nonblocking(true);
    let mut b = [0u8; 1];
    let closed = match s.peek(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    };
    let _ = s.set_nonblocking(false);
    closed
}

/// A loopback port taken for the test's life that refuses every connection: the socket
/// is bound but not listening, so a client gets "connection refused" as from a server
/// that is down, and no other program can take the port meanwhile (which a port found
/// free and bound later could not promise). `listen` brings the server up on it.
pub struct ClosedPort {
    fd: OwnedFd,
    pub port: u16,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        let mut addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: plain socket calls; the descriptor is owned by `fd` from the start.
        unsafe {
            let sock = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if sock < 0 {
                panic!("socket: {}", io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(sock);
            if libc::bind(sock, (&raw const addr).cast(), len) != 0
                || libc::getsockname(sock, (&raw mut addr).cast(), &mut len) != 0
            {
                panic!("bind 127.0.0.1:0: {}", io::Error::last_os_error());
            }
            ClosedPort {
                fd,
                port: u16::from_be(addr.sin_port),
            }
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server comes up on this port.
    pub fn listen(self) -> TcpListener {
        // SAFETY: listen(2) on the descriptor this value owns.
        if unsafe { libc::listen(self.fd.as_raw_fd(), 128) } != 0 {
            panic!("listen: {}", io::Error::last_os_error());
        }
        TcpListener::from(self.fd)
    }
}
