//! A small, bounded HTTP/1.1 server: one thread per connection (keep-alive requests are
//! served in turn), with hard limits so that slow or hostile clients cannot exhaust the
//! Pi: at most `MAX_CONNECTIONS` connection threads (small stacks), at most
//! `MAX_IN_FLIGHT` handlers running at once, a deadline for each request head and body,
//! socket write timeouts, a 16 KiB head and a 64 KiB body limit (413).
//!
//! Why not tiny_http: tiny_http 0.12 spawns an unbounded thread per connection, sets no
//! socket timeouts, and its accept thread stops for good at the first accept error
//! (EMFILE under a connection flood): the three things a daemon on a Pi must bound. The
//! routes (serve/api.rs) see only `Request` and `Response`; the head is parsed by
//! head.rs, a pure function.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::head;

pub const MAX_CONNECTIONS: usize = 256;
pub const MAX_IN_FLIGHT: usize = 16;
pub const MAX_HEAD: usize = 16 * 1024;
pub const MAX_BODY: usize = 64 * 1024;
const HEAD_DEADLINE: Duration = Duration::from_secs(10);
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_REQUESTS_PER_CONNECTION: usize = 1000;
const THREAD_STACK: usize = 256 * 1024;

pub struct Request {
    pub method: String,
    /// The path, still percent-encoded, without the query string.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub enum Body {
    Bytes(Vec<u8>),
    /// Pieces sent one after another: a large piece shared between requests (a cached
    /// list) is written from where it is, not copied into every response.
    Parts(Vec<Arc<[u8]>>),
    /// A file streamed from disk, with its exact length.
    File(File, u64),
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: Body::Bytes(body),
        }
    }

    pub fn with_header(mut self, k: &str, v: &str) -> Response {
        self.headers.push((k.into(), v.into()));
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

pub type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// A counting semaphore for handlers in flight.
struct Gate {
    count: Mutex<usize>,
    cv: Condvar,
}

impl Gate {
    fn enter(&self) {
        let mut n = self.count.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= MAX_IN_FLIGHT {
            n = self.cv.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n += 1;
    }

    fn leave(&self) {
        let mut n = self.count.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        self.cv.notify_one();
    }
}

/// Server counters, for /metrics and tests.
#[derive(Default)]
pub struct Stats {
    pub connections: AtomicUsize,
    pub heartbeat: std::sync::atomic::AtomicI64,
}

/// Accepts connections until `shutdown` is set. Never gives up on accept errors.
pub fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    shutdown: &AtomicBool,
    stats: Arc<Stats>,
) {
    let gate = Arc::new(Gate {
        count: Mutex::new(0),
        cv: Condvar::new(),
    });
    let fd = listener.as_raw_fd();
    while !shutdown.load(Ordering::Relaxed) {
        stats
            .heartbeat
            .store(crate::clock::now_unix(), Ordering::Relaxed);
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, 500) };
        if rc <= 0 {
            continue;
        }
        let (stream, _peer) = match listener.accept() {
            Ok(x) => x,
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS…: wait a little and go on; never stop serving.
                if e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted {
                    std::thread::sleep(Duration::from_millis(50));
                }
                continue;
            }
        };
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let _ = stream.set_nodelay(true);
        if stats.connections.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
            let _ = write_simple(&stream, 503, "{\"error\":\"Serveur occupé\"}", true);
            continue;
        }
        stats.connections.fetch_add(1, Ordering::AcqRel);
        let h = Arc::clone(&handler);
        let g = Arc::clone(&gate);
        let st = Arc::clone(&stats);
        let spawned = std::thread::Builder::new()
            .name("http-conn".into())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                connection(stream, &*h, &g);
                st.connections.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            stats.connections.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn write_simple(mut stream: &TcpStream, status: u16, json: &str, close: bool) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n{}\r\n",
        reason(status),
        json.len(),
        if close { "Connection: close\r\n" } else { "" }
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(json.as_bytes())
}

enum Head {
    Request(Request, bool),
    Closed,
    Error(u16, &'static str),
}

/// Reads one request head (and its body) before `deadline`.
fn read_request(reader: &mut BufReader<TcpStream>, first: bool) -> Head {
    let started = Instant::now();
    let idle_limit = if first { HEAD_DEADLINE } else { IDLE_TIMEOUT };
    let mut head: Vec<u8> = Vec::with_capacity(512);
    loop {
        let elapsed = started.elapsed();
        let limit = if head.is_empty() {
            idle_limit
        } else {
            HEAD_DEADLINE
        };
        let Some(left) = limit.checked_sub(elapsed).filter(|d| !d.is_zero()) else {
            return if head.is_empty() {
                Head::Closed
            } else {
                Head::Error(408, "{\"error\":\"Requête trop lente\"}")
            };
        };
        let _ = reader.get_ref().set_read_timeout(Some(left));
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                return if head.is_empty() {
                    Head::Closed
                } else {
                    Head::Error(408, "{\"error\":\"Requête trop lente\"}")
                };
            }
        };
        if buf.is_empty() {
            return Head::Closed;
        }
        // Take bytes up to the end of the head at most.
        let mut take = buf.len();
        let mut done = false;
        for (i, &b) in buf.iter().enumerate() {
            head.push(b);
            if b == b'\n' && (head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n")) {
                take = i + 1;
                done = true;
                break;
            }
        }
        reader.consume(take);
        if head.len() > MAX_HEAD {
            return Head::Error(431, "{\"error\":\"En-têtes trop longs\"}");
        }
        if done {
            break;
        }
    }
    let parsed = match head::parse(&head) {
        Ok(h) => h,
        Err(r) => return Head::Error(r.status, r.body),
    };
    let len = parsed.content_length;
    let wants_close = parsed.wants_close;
    let mut req = Request {
        method: parsed.method,
        path: parsed.path,
        headers: parsed.headers,
        body: Vec::new(),
    };
    if len > MAX_BODY as u64 {
        return Head::Error(
            413,
            "{\"error\":\"Corps de requête trop volumineux (64 Kio au plus)\"}",
        );
    }
    let len = len as usize;
    let mut body = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let Some(left) = HEAD_DEADLINE
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero())
        else {
            return Head::Error(408, "{\"error\":\"Requête trop lente\"}");
        };
        let _ = reader.get_ref().set_read_timeout(Some(left));
        match reader.read(&mut body[got..]) {
            Ok(0) => return Head::Closed,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Head::Error(408, "{\"error\":\"Requête trop lente\"}"),
        }
    }
    req.body = body;
    Head::Request(req, wants_close)
}

fn connection(stream: TcpStream, handler: &Handler, gate: &Gate) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(4096, stream);
    for n in 0..MAX_REQUESTS_PER_CONNECTION {
        let (req, close) = match read_request(&mut reader, n == 0) {
            Head::Request(r, close) => (r, close),
            Head::Closed => return,
            Head::Error(status, msg) => {
                let _ = write_simple(&write_half, status, msg, true);
                return;
            }
        };
        let is_head = req.method == "HEAD";
        gate.enter();
        let resp = handler(&req);
        gate.leave();
        let close = close || n + 1 == MAX_REQUESTS_PER_CONNECTION;
        if write_response(&write_half, resp, close, is_head).is_err() || close {
            let _ = write_half.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

fn write_response(
    stream: &TcpStream,
    resp: Response,
    close: bool,
    head_only: bool,
) -> io::Result<()> {
    let len = match &resp.body {
        Body::Bytes(b) => b.len() as u64,
        Body::Parts(p) => p.iter().map(|b| b.len() as u64).sum(),
        Body::File(_, n) => *n,
    };
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (k, v) in &resp.headers {
        // Header values are ours, but never let a newline split them.
        head.push_str(&format!("{k}: {}\r\n", v.replace(['\r', '\n'], " ")));
    }
    head.push_str(&format!("Content-Length: {len}\r\n"));
    head.push_str("Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n");
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut w = io::BufWriter::with_capacity(16 * 1024, stream);
    w.write_all(head.as_bytes())?;
    if !head_only {
        match resp.body {
            Body::Bytes(b) => w.write_all(&b)?,
            Body::Parts(p) => {
                for b in p {
                    w.write_all(&b)?;
                }
            }
            Body::File(f, n) => {
                let copied = io::copy(&mut f.take(n), &mut w)?;
                if copied != n {
                    // The file shrank: the client must not take a short body for a whole one.
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank"));
                }
            }
        }
    }
    w.flush()
}

/// The address the listener is bound to (LISTEN may say port 0 in tests).
pub fn local_addr(l: &TcpListener) -> Option<SocketAddr> {
    l.local_addr().ok()
}
