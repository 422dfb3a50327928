//! A small, bounded HTTP/1.1 server: one thread per connection (keep-alive requests are
//! served in turn), with hard limits so that slow or hostile clients cannot exhaust the
//! Pi nor starve each other (docs/format.md, HTTP):
//!
//! - at most `MAX_CONNECTIONS` connection threads (small stacks), of which one client
//!   address (an IPv6 /64) holds at most `MAX_PER_ADDRESS`, and the last `RESERVED`
//!   only go to addresses that hold none yet: nine addresses at their share cannot
//!   take every slot, and a monitoring probe from a tenth still gets `/healthz`;
//! - when the slots run short, a connection waiting idle for its next request is closed
//!   to make room, the one idle the longest first, before any new client is turned away;
//!   past `HIGH_WATER` connections (and 5 s after) a request head gets 2 s instead of 10;
//! - at most `MAX_IN_FLIGHT` handlers running at once, while the quick routes
//!   (`GET /healthz`) are answered by the connection's own thread, never queued;
//! - a deadline for each request head and body, socket write timeouts, a 16 KiB head
//!   and a 64 KiB body limit (413);
//! - the accept loop beats a heartbeat (`Stats::accept_loop_alive`) that the systemd
//!   watchdog checks.
//!
//! Why not tiny_http: tiny_http 0.12 spawns an unbounded thread per connection, sets no
//! socket timeouts, and its accept thread stops for good at the first accept error
//! (EMFILE under a connection flood): the three things a daemon on a Pi must bound. The
//! routes (serve/api.rs) see only `Request` and `Response`; the head is parsed by
//! head.rs, a pure function.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::head;

pub const MAX_CONNECTIONS: usize = 256;
/// Connections one client address may hold (docs/format.md, HTTP: a fair share).
pub const MAX_PER_ADDRESS: usize = MAX_CONNECTIONS / 8;
/// Slots kept for addresses that hold no connection yet: an address that holds one is
/// admitted only while fewer than `MAX_CONNECTIONS - RESERVED` are taken.
pub const RESERVED: usize = MAX_CONNECTIONS / 8;
/// Past this many connections (and for `PRESSURE_LINGER` after), heads get
/// `PRESSED_DEADLINE`.
pub const HIGH_WATER: usize = MAX_CONNECTIONS * 3 / 4;
pub const MAX_IN_FLIGHT: usize = 16;
pub const MAX_HEAD: usize = 16 * 1024;
pub const MAX_BODY: usize = 64 * 1024;
const HEAD_DEADLINE: Duration = Duration::from_secs(10);
const PRESSED_DEADLINE: Duration = Duration::from_secs(2);
/// Pressure is over only this long after the count went under `HIGH_WATER`: an attacker
/// whose stalled heads time out together must not win back 10 s for the next wave.
const PRESSURE_LINGER: Duration = Duration::from_secs(5);
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection idle for less than this is about to send its request: not closed to
/// make room.
const EVICT_MIN_IDLE: Duration = Duration::from_millis(250);
/// Reads wait at most this long at a time, so that a deadline shortened by pressure
/// is seen soon.
const READ_SLICE: Duration = Duration::from_millis(500);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_REQUESTS_PER_CONNECTION: usize = 1000;
const THREAD_STACK: usize = 256 * 1024;

pub struct Request {
    pub method: String,
    /// The path, still percent-encoded, without the query string.
    pub path: String,
    /// The query string (after `?`), still percent-encoded; empty when there is none.
    pub query: String,
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
        206 => "Partial Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

pub type Handler = dyn Fn(&Request) -> Response + Send + Sync;
/// A handler that may decline (`None`).
pub type QuickHandler = dyn Fn(&Request) -> Option<Response> + Send + Sync;

/// What the server calls: `quick` first, on the connection's own thread (cheap answers
/// such as `GET /healthz`, which must never wait behind busy handlers); when it
/// declines (`None`), `handler`, at most `MAX_IN_FLIGHT` at a time.
pub struct Routes {
    pub quick: Box<QuickHandler>,
    pub handler: Box<Handler>,
}

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

/// Milliseconds on a monotonic clock (since the first call).
fn mono_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Server counters, for /metrics, the watchdog and tests.
#[derive(Default)]
pub struct Stats {
    /// Connections holding a slot.
    pub connections: AtomicUsize,
    /// When the accept loop last went round (`mono_ms`).
    heartbeat: AtomicU64,
}

impl Stats {
    fn beat(&self) {
        self.heartbeat.store(mono_ms(), Ordering::Relaxed);
    }

    /// Whether the accept loop went round within `within`. It goes round at least every
    /// 500 ms, and at every connection, whatever the handlers are doing: only a stuck
    /// accept loop stops it.
    pub fn accept_loop_alive(&self, within: Duration) -> bool {
        let beat = self.heartbeat.load(Ordering::Relaxed);
        beat != 0 && u128::from(mono_ms().saturating_sub(beat)) <= within.as_millis()
    }
}

/// The address a fair share is counted for: an IPv4 address (IPv4-mapped IPv6 too), or
/// the /64 of an IPv6 one (a single host commonly owns a whole /64).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

struct Slot {
    key: IpAddr,
    stream: Arc<TcpStream>,
    /// Since when the connection waits for the first byte of a request, if it does.
    idle_since: Option<Instant>,
}

#[derive(Default)]
struct SlotTable {
    next_id: u64,
    slots: HashMap<u64, Slot>,
    per_key: HashMap<IpAddr, usize>,
}

/// Why a new connection is turned away (503).
#[derive(Debug, PartialEq)]
enum Refusal {
    AddressFull,
    ServerFull,
}

/// Whether a new connection from an address that holds `held` of the `taken` slots
/// may have a free one; if not, why (an idle connection may still be closed for it).
fn room(taken: usize, held: usize) -> Result<(), Refusal> {
    if held >= MAX_PER_ADDRESS {
        Err(Refusal::AddressFull)
    } else if taken >= MAX_CONNECTIONS || (held > 0 && taken >= MAX_CONNECTIONS - RESERVED) {
        Err(Refusal::ServerFull)
    } else {
        Ok(())
    }
}

/// The connection slots: who holds them, which are idle, and the fair-share rules.
struct Slots {
    table: Mutex<SlotTable>,
    stats: Arc<Stats>,
    /// Pressed until then (`mono_ms`).
    pressed_until: AtomicU64,
}

impl Slots {
    fn lock(&self) -> MutexGuard<'_, SlotTable> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pressed(&self) -> bool {
        mono_ms() < self.pressed_until.load(Ordering::Relaxed)
    }

    /// Gives a slot to a new connection from `key`, closing an idle connection (of the
    /// same address when that address is at its share, else the one idle the longest)
    /// when none is free.
    fn admit(&self, key: IpAddr, stream: &Arc<TcpStream>) -> Result<u64, Refusal> {
        let mut t = self.lock();
        let held = t.per_key.get(&key).copied().unwrap_or(0);
        match room(t.slots.len(), held) {
            Ok(()) => {}
            Err(Refusal::AddressFull) if Self::evict(&mut t, Some(key)) => {}
            Err(Refusal::ServerFull) if Self::evict(&mut t, None) => {}
            Err(why) => return Err(why),
        }
        t.next_id += 1;
        let id = t.next_id;
        t.slots.insert(
            id,
            Slot {
                key,
                stream: Arc::clone(stream),
                idle_since: None,
            },
        );
        *t.per_key.entry(key).or_insert(0) += 1;
        self.stats
            .connections
            .store(t.slots.len(), Ordering::Relaxed);
        if t.slots.len() >= HIGH_WATER {
            let until = mono_ms() + PRESSURE_LINGER.as_millis() as u64;
            self.pressed_until.store(until, Ordering::Relaxed);
        }
        Ok(id)
    }

    /// Closes the connection idle the longest (of `key`, or of anyone): its thread sees
    /// the end of the stream and exits; its slot is free at once.
    fn evict(t: &mut SlotTable, key: Option<IpAddr>) -> bool {
        let now = Instant::now();
        let victim = t
            .slots
            .iter()
            .filter(|(_, s)| key.is_none_or(|k| s.key == k))
            .filter_map(|(id, s)| Some((*id, s.idle_since?)))
            .filter(|(_, since)| now.duration_since(*since) >= EVICT_MIN_IDLE)
            .min_by_key(|(_, since)| *since)
            .map(|(id, _)| id);
        let Some(id) = victim else {
            return false;
        };
        if let Some(slot) = Self::remove(t, id) {
            let _ = slot.stream.shutdown(std::net::Shutdown::Both);
        }
        true
    }

    fn remove(t: &mut SlotTable, id: u64) -> Option<Slot> {
        let slot = t.slots.remove(&id)?;
        if let Some(n) = t.per_key.get_mut(&slot.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.per_key.remove(&slot.key);
            }
        }
        Some(slot)
    }

    /// Marks the connection idle (waiting for a request) or busy. `false`: it was
    /// closed to make room and must end.
    fn set_idle(&self, id: u64, idle: bool) -> bool {
        let mut t = self.lock();
        match t.slots.get_mut(&id) {
            Some(s) => {
                s.idle_since = idle.then(Instant::now);
                true
            }
            None => false,
        }
    }

    fn release(&self, id: u64) {
        let mut t = self.lock();
        Self::remove(&mut t, id);
        self.stats
            .connections
            .store(t.slots.len(), Ordering::Relaxed);
    }
}

/// Debug builds only: while the file named by NEOPRO_TEST_STALL_ACCEPT exists, the
/// accept loop stands still, as a stuck one would (tests/api.rs checks that the
/// watchdog then stops pinging). Release builds have no such hook.
fn stall_hook() -> Option<std::path::PathBuf> {
    if cfg!(debug_assertions) {
        std::env::var_os("NEOPRO_TEST_STALL_ACCEPT").map(std::path::PathBuf::from)
    } else {
        None
    }
}

/// Accepts connections until `shutdown` is set. Never gives up on accept errors.
pub fn serve(listener: TcpListener, routes: Arc<Routes>, shutdown: &AtomicBool, stats: Arc<Stats>) {
    let gate = Arc::new(Gate {
        count: Mutex::new(0),
        cv: Condvar::new(),
    });
    let slots = Arc::new(Slots {
        table: Mutex::new(SlotTable::default()),
        stats: Arc::clone(&stats),
        pressed_until: AtomicU64::new(0),
    });
    let stall = stall_hook();
    let fd = listener.as_raw_fd();
    while !shutdown.load(Ordering::Relaxed) {
        stats.beat();
        while let Some(p) = &stall
            && p.exists()
            && !shutdown.load(Ordering::Relaxed)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one initialised pollfd on the stack, alive for the call, and
        // nfds is 1: poll writes only its `revents`.
        let rc = unsafe { libc::poll(&mut pfd, 1, 500) };
        if rc <= 0 {
            continue;
        }
        let (stream, peer) = match listener.accept() {
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
        let stream = Arc::new(stream);
        let id = match slots.admit(client_key(peer.ip()), &stream) {
            Ok(id) => id,
            Err(why) => {
                let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                let msg = match why {
                    Refusal::AddressFull => {
                        "{\"error\":\"Trop de connexions depuis cette adresse\"}"
                    }
                    Refusal::ServerFull => "{\"error\":\"Serveur occupé\"}",
                };
                let _ = write_simple(&stream, 503, msg, true);
                continue;
            }
        };
        let r = Arc::clone(&routes);
        let g = Arc::clone(&gate);
        let sl = Arc::clone(&slots);
        let spawned = std::thread::Builder::new()
            .name("http-conn".into())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                connection(&stream, id, &r, &g, &sl);
                sl.release(id);
            });
        if spawned.is_err() {
            slots.release(id);
        }
    }
}

fn write_simple(mut stream: &TcpStream, status: u16, json: &str, close: bool) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n{}{}\r\n",
        reason(status),
        json.len(),
        if status == 503 {
            "Retry-After: 1\r\n"
        } else {
            ""
        },
        if close { "Connection: close\r\n" } else { "" }
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(json.as_bytes())
}

/// A read that stopped at the end of its time slice (or a signal), not for good.
fn slice_ended(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The reading side of a connection (the writing side uses the same socket).
struct Reader(Arc<TcpStream>);

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

enum Head {
    Request(Request, bool),
    Closed,
    Error(u16, &'static str),
}

const TOO_SLOW: &str = "{\"error\":\"Requête trop lente\"}";

/// Reads one request head (and its body) before its deadline: 10 s (2 s while the
/// server is pressed) from when the wait began; a keep-alive connection that sends
/// nothing is closed after 5 s (2 s pressed). While no byte of the head has come, the
/// connection is idle and may be closed to make room.
fn read_request(reader: &mut BufReader<Reader>, first: bool, slots: &Slots, id: u64) -> Head {
    let started = Instant::now();
    let mut head: Vec<u8> = Vec::with_capacity(512);
    let mut idle = false;
    loop {
        let mut limit = match (head.is_empty(), first) {
            (true, false) => IDLE_TIMEOUT,
            _ => HEAD_DEADLINE,
        };
        if slots.pressed() {
            limit = limit.min(PRESSED_DEADLINE);
        }
        let Some(left) = limit
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero())
        else {
            return if head.is_empty() {
                Head::Closed
            } else {
                Head::Error(408, TOO_SLOW)
            };
        };
        if head.is_empty() && !idle && reader.buffer().is_empty() {
            idle = slots.set_idle(id, true);
            if !idle {
                return Head::Closed;
            }
        }
        let _ = reader
            .get_ref()
            .0
            .set_read_timeout(Some(left.min(READ_SLICE)));
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if slice_ended(&e) => {
                continue; // a slice ended: look at the deadline again
            }
            Err(_) => {
                return if head.is_empty() {
                    Head::Closed
                } else {
                    Head::Error(408, TOO_SLOW)
                };
            }
        };
        if buf.is_empty() {
            return Head::Closed;
        }
        if idle {
            idle = false;
            if !slots.set_idle(id, false) {
                return Head::Closed; // closed to make room just as the request came
            }
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
        query: parsed.query,
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
        let limit = if slots.pressed() {
            PRESSED_DEADLINE
        } else {
            HEAD_DEADLINE
        };
        let Some(left) = limit
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero())
        else {
            return Head::Error(408, TOO_SLOW);
        };
        let _ = reader
            .get_ref()
            .0
            .set_read_timeout(Some(left.min(READ_SLICE)));
        match reader.read(&mut body[got..]) {
            Ok(0) => return Head::Closed,
            Ok(n) => got += n,
            Err(e) if slice_ended(&e) => {}
            Err(_) => return Head::Error(408, TOO_SLOW),
        }
    }
    req.body = body;
    Head::Request(req, wants_close)
}

/// Closes after an error answer without losing it: closing a socket with unread input
/// sends a reset, which may discard the answer before the client reads it. So: end our
/// side, then read and drop what the client still sends, for a second at most.
fn linger(reader: &mut BufReader<Reader>) {
    let sock = Arc::clone(&reader.get_ref().0);
    let _ = sock.shutdown(std::net::Shutdown::Write);
    let until = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < MAX_BODY {
        let Some(left) = until.checked_duration_since(Instant::now()) else {
            break;
        };
        let _ = sock.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match reader.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

fn connection(stream: &Arc<TcpStream>, id: u64, routes: &Routes, gate: &Gate, slots: &Slots) {
    let mut reader = BufReader::with_capacity(4096, Reader(Arc::clone(stream)));
    let write_half: &TcpStream = stream;
    for n in 0..MAX_REQUESTS_PER_CONNECTION {
        let (req, close) = match read_request(&mut reader, n == 0, slots, id) {
            Head::Request(r, close) => (r, close),
            Head::Closed => return,
            Head::Error(status, msg) => {
                let _ = write_simple(write_half, status, msg, true);
                linger(&mut reader);
                return;
            }
        };
        let is_head = req.method == "HEAD";
        let resp = match (routes.quick)(&req) {
            Some(r) => r,
            None => {
                gate.enter();
                let r = (routes.handler)(&req);
                gate.leave();
                r
            }
        };
        let close = close || n + 1 == MAX_REQUESTS_PER_CONNECTION;
        if write_response(write_half, resp, close, is_head).is_err() || close {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Addresses fill the slots in turn, each taking all it can: (slots held by each).
    fn fill(addresses: usize) -> Vec<usize> {
        let mut held = vec![0usize; addresses];
        let mut taken = 0;
        for h in held.iter_mut() {
            while room(taken, *h).is_ok() {
                *h += 1;
                taken += 1;
            }
        }
        held
    }

    #[test]
    fn addresses_at_their_share_leave_room_for_newcomers() {
        // Issue 21: nine addresses under their 32-connection share took all 256 slots.
        let held = fill(9);
        assert!(held.iter().all(|&h| (1..=MAX_PER_ADDRESS).contains(&h)));
        let taken: usize = held.iter().sum();
        assert_eq!(taken, MAX_CONNECTIONS - RESERVED + 2, "{held:?}");
        // A tenth address, and then RESERVED - 2 more, each get a slot.
        for n in 0..RESERVED - 2 {
            assert_eq!(room(taken + n, 0), Ok(()), "newcomer {n}");
        }
        assert_eq!(room(MAX_CONNECTIONS, 0), Err(Refusal::ServerFull));
        // An address that holds one waits for the shared slots, one at its share is
        // refused as such.
        assert_eq!(room(taken, 1), Err(Refusal::ServerFull));
        assert_eq!(room(MAX_CONNECTIONS - RESERVED - 1, 1), Ok(()));
        assert_eq!(room(0, MAX_PER_ADDRESS), Err(Refusal::AddressFull));
        assert_eq!(room(0, MAX_PER_ADDRESS - 1), Ok(()));
        // Many addresses with one connection each can still fill every slot.
        assert_eq!(
            fill(MAX_CONNECTIONS + 5).iter().sum::<usize>(),
            MAX_CONNECTIONS
        );
    }
}
