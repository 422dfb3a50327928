//! Sockets for the tests: the one HTTP client of the tests (`http`: one request on its
//! own connection, the answer read to the end; `exchange` sends bytes of the test's own
//! making); a reader of exactly one HTTP answer on a kept-open connection (HEAD answers
//! announce a length they do not send); a loopback port held closed (a server that is
//! down, on a port no other program can take meanwhile), then brought up; for the
//! connection-fairness tests, a TCP connection from a chosen loopback source address
//! (Linux routes all of 127.0.0.0/8 to `lo`), so that one test can play several clients;
//! and a TCP relay in front of a server, which records, throttles or cuts what goes
//! through.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Json, parse_json};

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

/// One HTTP answer: the status, the head as sent (status line and headers), the headers
/// and the body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
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

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, which the answer must say it is.
    pub fn json(&self) -> Json {
        let ct = self.header("Content-Type").unwrap_or_default();
        assert_eq!(
            ct, "application/json; charset=utf-8",
            "a JSON answer must say so: {self}"
        );
        parse_json(&self.text()).unwrap_or_else(|e| panic!("bad JSON ({e}): {self}"))
    }

    /// The `error` member of a JSON error answer.
    pub fn error(&self) -> String {
        self.json().get("error").str().to_string()
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {:?} {}", self.status, self.headers, {
            let t = self.text();
            t.chars().take(600).collect::<String>()
        })
    }
}

/// The status and the headers of a head (without its blank line).
fn parse_head(head: &str) -> Option<(u16, Vec<(String, String)>)> {
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some((status, headers))
}

/// One request on a new connection (HTTP/1.1, `Connection: close`), the answer read to
/// the end. `Host: addr` is sent unless `headers` names a Host of its own;
/// `Content-Length` with a body, and always for POST, PUT and DELETE.
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    head.push_str("Connection: close\r\n");
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "DELETE") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    exchange(addr, &raw)
}

/// Sends `raw` on a new connection and reads the answer until the server closes it.
pub fn exchange(addr: &str, raw: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap_or_else(|e| panic!("{e}"));
    s.write_all(raw).unwrap_or_else(|e| panic!("send: {e}"));
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .unwrap_or_else(|e| panic!("read the answer: {e}"));
    parse_answer(&buf).unwrap_or_else(|| {
        panic!(
            "not an HTTP answer: {:?}",
            String::from_utf8_lossy(&buf[..buf.len().min(300)])
        )
    })
}

/// An answer read to the end of its connection: a `Content-Length` must match the body;
/// a chunked body is decoded.
pub fn parse_answer(buf: &[u8]) -> Option<Answer> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let (status, headers) = parse_head(head)?;
    let mut a = Answer {
        status,
        head: head.to_string(),
        headers,
        body: buf[end + 4..].to_vec(),
    };
    if a.header("Transfer-Encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        a.body = dechunk(&a.body)?;
    } else if let Some(len) = a.header("Content-Length") {
        assert_eq!(
            len.parse::<usize>().ok(),
            Some(a.body.len()),
            "Content-Length does not match the body: {a}"
        );
    }
    Some(a)
}

/// A chunked body (RFC 9112, 7.1) without its trailers; None when it is cut short.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size_hex = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_hex, 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        let chunk = rest.get(..size)?;
        body.extend_from_slice(chunk);
        rest = rest.get(size..)?.strip_prefix(b"\r\n")?;
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
    let head = String::from_utf8_lossy(&buf[..buf.len() - 4]).into_owned();
    let (status, headers) = parse_head(&head)?;
    let mut a = Answer {
        status,
        head,
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

/// A TCP relay to `host:port` on a loopback port, each connection relayed to a
/// connection of its own. It records the first line of each connection (a client that
/// opens one connection per request shows every request line), counts the bytes sent
/// towards the server, may let at most a given number of them through a second (per
/// connection), and drops every new connection while it is down.
pub struct Relay {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    seen: Arc<Mutex<Vec<String>>>,
    sent: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
}

impl Relay {
    /// A relay to `to` on a port the system picks.
    pub fn start(to: &str) -> Relay {
        Relay::on(bind_loopback(), to, None)
    }

    /// Same, letting at most `rate` bytes a second through towards `to`.
    pub fn throttled(to: &str, rate: u64) -> Relay {
        Relay::on(bind_loopback(), to, Some(rate))
    }

    /// A relay to `to` letting at most `rate` bytes a second through towards the
    /// client (a slow download).
    pub fn slow_answers(to: &str, rate: u64) -> Relay {
        Relay::with_rates(bind_loopback(), to, None, Some(rate))
    }

    /// A relay to `to` on `listener` (e.g. a `ClosedPort` brought up: the server is
    /// back on the port its clients knew).
    pub fn on(listener: TcpListener, to: &str, rate: Option<u64>) -> Relay {
        Relay::with_rates(listener, to, rate, None)
    }

    /// `on`, with a rate towards the server and one towards the client.
    fn with_rates(
        listener: TcpListener,
        to: &str,
        rate: Option<u64>,
        down_rate: Option<u64>,
    ) -> Relay {
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        let relay = Relay {
            addr,
            seen: Arc::new(Mutex::new(Vec::new())),
            sent: Arc::new(AtomicU64::new(0)),
            down: Arc::new(AtomicBool::new(false)),
        };
        let (seen, sent, down) = (
            Arc::clone(&relay.seen),
            Arc::clone(&relay.sent),
            Arc::clone(&relay.down),
        );
        let to = to.to_string();
        std::thread::spawn(move || {
            for c in listener.incoming() {
                let Ok(c) = c else { continue };
                if down.load(Ordering::SeqCst) {
                    drop(c);
                    continue;
                }
                let (to, seen, sent) = (to.clone(), Arc::clone(&seen), Arc::clone(&sent));
                std::thread::spawn(move || relay_one(c, &to, (rate, down_rate), &seen, &sent));
            }
        });
        relay
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The first line of every connection so far.
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The bytes sent towards the server so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Down: every new connection is dropped at once. Connections already relayed go on.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

fn bind_loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"))
}

/// Relays one connection both ways, each direction shut down when its source ends.
fn relay_one(
    client: TcpStream,
    to: &str,
    (rate, down_rate): (Option<u64>, Option<u64>),
    seen: &Mutex<Vec<String>>,
    sent: &AtomicU64,
) {
    let Ok(upstream) = TcpStream::connect(to) else {
        return;
    };
    let (Ok(client_r), Ok(mut up_w)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let mut reader = BufReader::new(client_r);
    let mut first = Vec::new();
    if reader.read_until(b'\n', &mut first).is_err() {
        return;
    }
    if let Ok(mut v) = seen.lock() {
        v.push(String::from_utf8_lossy(&first).trim_end().to_string());
    }
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let started = Instant::now();
            let mut total = 0u64;
            let mut send = |bytes: &[u8]| {
                if up_w.write_all(bytes).is_err() {
                    return false;
                }
                total += bytes.len() as u64;
                sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                // Throttled: never ahead of `rate` bytes a second.
                if let Some(rate) = rate {
                    let due = Duration::from_secs_f64(total as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                true
            };
            let mut buf = vec![0u8; 16 * 1024];
            let mut more = send(&first);
            while more {
                more = match reader.read(&mut buf) {
                    Ok(0) | Err(_) => false,
                    Ok(n) => send(&buf[..n]),
                };
            }
            let _ = up_w.shutdown(Shutdown::Write);
        });
        let (mut up_r, mut client_w) = (upstream, client);
        match down_rate {
            None => {
                let _ = io::copy(&mut up_r, &mut client_w);
            }
            Some(rate) => {
                let started = Instant::now();
                let mut total = 0u64;
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = up_r.read(&mut buf) {
                    if n == 0 || client_w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    total += n as u64;
                    let due = Duration::from_secs_f64(total as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
        }
        let _ = client_w.shutdown(Shutdown::Write);
    });
}

/// The client reads chunked answers (SeaweedFS's filer may send them to HTTP/1.1) and
/// holds a Content-Length to the body it announces.
#[test]
fn answers_are_parsed_chunked_or_not() {
    let a = parse_answer(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
    );
    assert_eq!(
        a.map(|a| (a.status, a.body)),
        Some((200, b"abcde".to_vec()))
    );
    // Cut short: not an answer.
    assert!(
        parse_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab").is_none()
    );
    let a = parse_answer(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nX-A: b\r\n\r\nno");
    assert_eq!(
        a.map(|a| (a.status, a.header("x-a").map(str::to_string), a.body)),
        Some((404, Some("b".to_string()), b"no".to_vec()))
    );
    let short = std::panic::catch_unwind(|| {
        parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
    });
    assert!(
        short.is_err(),
        "a body shorter than its Content-Length is a failure"
    );
}

/// `gzip -dc` (GNU gzip) of `bytes`.
pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut child = std::process::Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("gzip: {e}"));
    let mut stdin = child.stdin.take().unwrap_or_else(|| panic!("gzip stdin"));
    let data = bytes.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data));
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("gzip: {e}"));
    assert!(
        matches!(writer.join(), Ok(Ok(()))),
        "gzip took not all of it"
    );
    assert!(
        out.status.success(),
        "gzip -dc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
