//! Sending one mail: an SMTP client (RFC 5321) for the email alerts, and the builder of
//! the message it carries (RFC 5322, MIME, RFC 2047). Knows nothing of backups.
//!
//! `SMTP_URL` is `smtps://user:password@host[:465]` (TLS from the first byte) or
//! `smtp://user:password@host[:587]` (STARTTLS, which is then mandatory: a server that
//! does not offer it gets nothing, not even the password). The one exception is a
//! loopback host (`127.0.0.0/8`, `::1`, `localhost`): the mail never leaves the machine,
//! so it goes in clear and never tries STARTTLS, whose certificate a local MTA usually
//! self-signs (Debian's postfix offers STARTTLS with the "snakeoil" one). User and
//! password are percent-decoded and optional (no AUTH without them); the password is a
//! secret like S3_SECRET_KEY: `Debug` and `Display` of [`SmtpUrl`] never show it, and no
//! error of [`send`] contains it (server replies are scrubbed of it too).
//!
//! TLS is the same rustls configuration as the HTTP client (`httpc::tls_config`: ring,
//! the system CA bundle or `SSL_CERT_FILE`), so one rule says which servers are trusted.
//! A build without the `tls` feature refuses smtps:// and a non-loopback smtp:// URL.
//!
//! # Why our own client, not lettre
//! lettre 0.11.23 is the maintained Rust mail crate, and it was measured first: built
//! into this program and called (message builder, SMTP with STARTTLS and AUTH), with
//! the fewest features that build (`smtp-transport`, `builder`, `rustls`, `ring`,
//! `rustls-native-certs`: its rustls backend needs a root-store feature). Release
//! profile (opt-level z, LTO, strip); armv6 is the Pi Zero's static musl build of
//! scripts/cross-build.sh; both with the mail code reachable from `main`:
//!
//! | binary                       | x86_64 gnu          | armv6 musl (Pi Zero) |
//! |------------------------------|---------------------|----------------------|
//! | before mail                  | 2,191,880           | 1,405,208            |
//! | with lettre                  | 2,529,576 (+337,696)| 1,685,312 (+280,104) |
//! | with this module             | 2,241,280 (+49,400) | 1,437,872 (+32,664)  |
//!
//! lettre fits under the 2 MiB armv6 limit, but it costs eight times what this module
//! does: a fifth of the whole program, and 40 % of what is left under the limit, for
//! one alert channel. Whatever its features, it brings `idna` with ICU's Unicode
//! tables, `url`, `nom`, `email_address` and `socket2`. The HTTP client was written
//! for the same reason (ureq: +250 KB). What decides it is TLS: lettre builds its own
//! rustls configuration and cannot take ours, so it would be a second answer to "which
//! CAs do we trust" (rustls-native-certs' rules, not `httpc::tls_config`'s), and its
//! blocking transport has per-socket timeouts but no bound on the whole exchange nor
//! on name resolution. The protocol needed is small, and the tests below speak to a
//! real server (aiosmtpd) over STARTTLS and TLS, with AUTH PLAIN and LOGIN.
//!
//! What this client does, which is all an alert needs: EHLO (HELO only to a loopback
//! server without ESMTP), STARTTLS then EHLO again, AUTH PLAIN (else LOGIN) when
//! credentials are given, MAIL FROM, RCPT TO, DATA with dot-stuffing and CRLF line
//! ends, QUIT; multi-line replies; data the server sends ahead of the TLS handshake is
//! refused (the STARTTLS injection of CVE-2011-0411). Every socket operation is bounded
//! by the time left of the whole exchange, and the exchange runs on its own thread so
//! that `send` returns by its timeout whatever happens (name resolution included).
//!
//! # The message
//! [`build_message`] writes a 7-bit message: subject in RFC 2047 encoded words
//! (UTF-8, base64, at most 64 characters each, one per header line), the text body in
//! quoted-printable. Why quoted-printable and not 8bit: an 8bit body is only allowed to
//! a server that announces 8BITMIME, and UTF-8 in headers only with SMTPUTF8; a 7-bit
//! message needs neither and passes any relay unchanged, and quoted-printable also
//! breaks a long error line into lines of at most 76 characters, so no line of the
//! message can exceed the 998-octet limit whatever the text. French text stays mostly
//! readable in the raw message (`=C3=A9` for é).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::clock;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// `smtp://` to any host but loopback: STARTTLS, mandatory.
    StartTls,
    /// `smtp://` to a loopback host: clear text, no STARTTLS.
    Clear,
}

/// A parsed `SMTP_URL`. `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    pub security: Security,
    /// Host name, IPv4 literal, or IPv6 literal without brackets (lower case).
    pub host: String,
    pub port: u16,
    /// User name for AUTH (percent-decoded); `None`: no AUTH.
    pub user: Option<String>,
    password: String,
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpUrl")
            .field("security", &self.security)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"(hidden)")
            .finish()
    }
}

/// `smtps://user@host:465`: what logs and errors show (never the password).
impl fmt::Display for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.security {
            Security::Implicit => "smtps",
            _ => "smtp",
        };
        let user = self
            .user
            .as_deref()
            .map_or(String::new(), |u| format!("{u}@"));
        write!(f, "{scheme}://{user}{}", self.hostport())
    }
}

impl SmtpUrl {
    /// Parses `smtps://…` or `smtp://…`. The error says what was expected (for
    /// "invalid SMTP_URL=…: expected …") and never repeats the value.
    pub fn parse(s: &str) -> Result<SmtpUrl, String> {
        const FORM: &str = "an smtps://user:password@host[:465] or \
                            smtp://user:password@host[:587] URL";
        let (implicit, rest) = if let Some(r) = s.strip_prefix("smtps://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("smtp://") {
            (false, r)
        } else {
            return Err(FORM.into());
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(format!("{FORM}, with no path, ?query or #fragment"));
        }
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, String::new()),
            Some(u) => {
                let (name, pw) = u
                    .split_once(':')
                    .ok_or_else(|| format!("{FORM} (user and password both, or neither)"))?;
                let name = percent_decode(name)
                    .ok_or_else(|| format!("{FORM} (bad %-escape in the user name)"))?;
                let pw = percent_decode(pw)
                    .ok_or_else(|| format!("{FORM} (bad %-escape in the password)"))?;
                if name.is_empty() || pw.is_empty() {
                    return Err(format!("{FORM} (user and password both, or neither)"));
                }
                (Some(name), pw)
            }
        };
        let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
            let (h, after) = r
                .split_once(']')
                .ok_or_else(|| format!("{FORM} (with a valid [IPv6] host)"))?;
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("{FORM} (with a valid [IPv6] host)"));
            }
            match after {
                "" => (h, None),
                a => (
                    h,
                    Some(
                        a.strip_prefix(':')
                            .ok_or_else(|| format!("{FORM} (with a valid port)"))?,
                    ),
                ),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b));
        if !host_ok {
            return Err(format!("{FORM} (with a valid host name)"));
        }
        let port = match port {
            None if implicit => 465,
            None => 587,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(format!("{FORM} (with a valid port)")),
            },
        };
        let host = host.to_ascii_lowercase();
        let security = if implicit {
            Security::Implicit
        } else if is_loopback(&host) {
            Security::Clear
        } else {
            Security::StartTls
        };
        if security != Security::Clear && cfg!(not(feature = "tls")) {
            return Err(format!(
                "{} (this build has no TLS, built without the `tls` feature: only \
                 smtp:// to a loopback host, 127.0.0.1 or localhost, works without it)",
                if implicit {
                    "an smtp:// URL"
                } else {
                    "a loopback smtp:// URL"
                }
            ));
        }
        Ok(SmtpUrl {
            security,
            host,
            port,
            user,
            password,
        })
    }

    /// `host:port`, `[v6]:port`.
    pub fn hostport(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `127.0.0.0/8`, `::1` and the name `localhost`: what may be spoken to in clear.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || matches_v4_mapped_loopback(&ip))
}

fn matches_v4_mapped_loopback(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        IpAddr::V4(_) => false,
    }
}

/// Decodes `%XX` escapes; `None` for a bad escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Checks a mail address for the envelope and the headers: ASCII `local@domain`, no
/// spaces, quotes, angle brackets or control characters (no SMTPUTF8 here).
pub fn check_address(a: &str) -> Result<(), String> {
    let ok = |c: u8| c.is_ascii_graphic() && !b"<>()[]\\,;:\"".contains(&c);
    match a.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && a.len() <= 254
                && !domain.contains('@')
                && a.bytes().all(ok)
                && !domain.starts_with(['.', '-'])
                && !domain.ends_with('.') =>
        {
            Ok(())
        }
        _ => Err(format!("{a:?} is not a mail address like name@example.org")),
    }
}

/// `ALERT_EMAIL_TO`: comma-separated addresses, each checked; at least one.
pub fn parse_address_list(s: &str) -> Result<Vec<String>, String> {
    let list: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    if list.is_empty() {
        return Err("at least one mail address".into());
    }
    for a in &list {
        check_address(a)?;
    }
    Ok(list)
}

// ---------------------------------------------------------------------------------
// The client.

/// Sends `message` (a whole RFC 5322 message, e.g. from [`build_message`]) from
/// `from` to every address of `to`. Returns by `timeout` whatever the server does.
///
/// `Err` is a sentence for the log, without the password. When the server accepted
/// the mail for some recipients but refused others, the mail is sent to those it
/// accepted and the result is an `Err` naming the refused ones.
pub fn send(
    url: &SmtpUrl,
    from: &str,
    to: &[String],
    message: &[u8],
    timeout: Duration,
) -> Result<(), String> {
    check_address(from).map_err(|e| format!("sender: {e}"))?;
    if to.is_empty() {
        return Err("no recipient".into());
    }
    for a in to {
        check_address(a).map_err(|e| format!("recipient: {e}"))?;
    }
    let deadline = Instant::now() + timeout;
    // The exchange stops a little earlier than the caller waits, so that its own
    // error, which says at which step the server went silent, usually comes first.
    let inner_deadline = deadline - (timeout / 10).min(Duration::from_millis(500));
    let (tx, rx) = mpsc::channel();
    let job = (url.clone(), from.to_string(), to.to_vec(), message.to_vec());
    std::thread::Builder::new()
        .name("smtp".into())
        .spawn(move || {
            let (url, from, to, message) = job;
            let r = exchange(&url, &from, &to, &message, inner_deadline);
            let _ = tx.send(r.map_err(|e| scrub(e, &url)));
        })
        .map_err(|e| format!("cannot start the mail thread: {e}"))?;
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(r) => r,
        Err(_) => Err(format!(
            "{}: no complete answer within {} s",
            url.hostport(),
            timeout.as_secs_f32()
        )),
    }
}

/// Removes the password and its base64 forms from a message (a server may echo the
/// command it did not understand).
fn scrub(mut msg: String, url: &SmtpUrl) -> String {
    if let Some(user) = &url.user {
        let plain = base64(format!("\0{user}\0{}", url.password).as_bytes());
        for secret in [plain, base64(url.password.as_bytes()), url.password.clone()] {
            if !secret.is_empty() {
                msg = msg.replace(&secret, "(hidden)");
            }
        }
    }
    msg
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// One SMTP connection, with the time left of the whole exchange.
struct Session {
    sock: TcpStream,
    /// TLS over `sock` once negotiated.
    #[cfg(feature = "tls")]
    tls: Option<rustls::ClientConnection>,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
    deadline: Instant,
    /// `host:port`, for messages.
    peer: String,
}

/// One reply: its code and the text of its lines.
#[derive(Debug)]
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" / "))
    }
}

/// Longest reply line accepted (RFC 5321 says 512; some servers say more).
const MAX_LINE: usize = 8192;

impl Session {
    fn connect(url: &SmtpUrl, deadline: Instant) -> Result<Session, String> {
        let peer = url.hostport();
        let addrs: Vec<SocketAddr> = (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", url.host))?
            .collect();
        // In clear, only to loopback addresses, whatever a name resolves to.
        let addrs: Vec<SocketAddr> = if url.security == Security::Clear {
            addrs
                .into_iter()
                .filter(|a| a.ip().is_loopback() || matches_v4_mapped_loopback(&a.ip()))
                .collect()
        } else {
            addrs
        };
        let mut last = None;
        let mut sock = None;
        for a in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match TcpStream::connect_timeout(&a, left) {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let sock = sock.ok_or_else(|| match last {
            Some(e) => format!("cannot connect to {peer}: {}", plain_io(&e)),
            None if url.security == Security::Clear => {
                format!("cannot connect to {peer}: no loopback address for it")
            }
            None => format!("cannot connect to {peer}: no address for it"),
        })?;
        let _ = sock.set_nodelay(true);
        Ok(Session {
            sock,
            #[cfg(feature = "tls")]
            tls: None,
            buf: Vec::new(),
            deadline,
            peer,
        })
    }

    /// Sets the socket's timeouts to the time left; an error when none is left.
    fn arm(&self) -> io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "out of time"));
        }
        self.sock.set_read_timeout(Some(left))?;
        self.sock.set_write_timeout(Some(left))
    }

    /// The connection as a byte stream: through TLS once it is negotiated.
    #[cfg(feature = "tls")]
    fn stream(&mut self) -> Box<dyn Stream + '_> {
        match self.tls.as_mut() {
            Some(conn) => Box::new(rustls::Stream::new(conn, &mut self.sock)),
            None => Box::new(&mut self.sock),
        }
    }

    #[cfg(not(feature = "tls"))]
    fn stream(&mut self) -> Box<dyn Stream + '_> {
        Box::new(&mut self.sock)
    }

    fn io_err(&self, what: &str, e: &io::Error) -> String {
        let msg = format!("{} ({what}): {}", self.peer, plain_io(e));
        #[cfg(feature = "tls")]
        if let Some(inner) = e.get_ref()
            && let Some(tls) = inner.downcast_ref::<rustls::Error>()
            && matches!(tls, rustls::Error::InvalidCertificate(_))
        {
            return msg
                + " (the server's certificate is not trusted: install its CA in the system \
                   store or point SSL_CERT_FILE at a bundle that holds it)";
        }
        msg
    }

    fn write_line(&mut self, line: &str, shown: &str) -> Result<(), String> {
        let mut data = Vec::with_capacity(line.len() + 2);
        data.extend_from_slice(line.as_bytes());
        data.extend_from_slice(b"\r\n");
        self.write_raw(&data, shown)
    }

    fn write_raw(&mut self, data: &[u8], what: &str) -> Result<(), String> {
        let r = self.arm().and_then(|()| {
            let mut s = self.stream();
            s.write_all(data)?;
            s.flush()
        });
        r.map_err(|e| self.io_err(&format!("sending {what}"), &e))
    }

    /// Reads one line (without its CRLF).
    fn read_line(&mut self, what: &str) -> Result<String, String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if self.buf.len() > MAX_LINE {
                return Err(format!(
                    "{} ({what}): a reply line over {MAX_LINE} bytes: not an SMTP server?",
                    self.peer
                ));
            }
            let mut chunk = [0u8; 4096];
            let r = self.arm().and_then(|()| self.stream().read(&mut chunk));
            match r {
                Ok(0) => {
                    return Err(format!("{} closed the connection ({what})", self.peer));
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_err(&format!("waiting for the answer to {what}"), &e)),
            }
        }
    }

    /// Reads one reply, all its lines (`250-…` then `250 …`).
    fn reply(&mut self, what: &str) -> Result<Reply, String> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line(what)?;
            let b = line.as_bytes();
            let code = line
                .get(..3)
                .filter(|c| c.bytes().all(|d| d.is_ascii_digit()))
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (200..600).contains(c));
            let Some(code) = code else {
                return Err(format!(
                    "{} ({what}): not an SMTP reply: {:?}",
                    self.peer,
                    line.chars().take(80).collect::<String>()
                ));
            };
            lines.push(line.get(4..).unwrap_or("").trim_end().to_string());
            if lines.len() > 200 {
                return Err(format!("{} ({what}): a reply of over 200 lines", self.peer));
            }
            if b.get(3) != Some(&b'-') {
                return Ok(Reply { code, lines });
            }
        }
    }

    /// Sends a command line and reads its reply; `shown` is how errors name it.
    fn command(&mut self, line: &str, shown: &str) -> Result<Reply, String> {
        self.write_line(line, shown)?;
        self.reply(shown)
    }

    /// The TLS handshake over the socket (right away for smtps, after STARTTLS's 220).
    #[cfg(feature = "tls")]
    fn start_tls(&mut self, host: &str) -> Result<(), String> {
        let name = rustls_pki_types::ServerName::try_from(host.to_string())
            .map_err(|_| format!("{host} is not a valid TLS server name"))?;
        let config = crate::httpc::tls_config()?;
        let mut conn =
            rustls::ClientConnection::new(config, name).map_err(|e| format!("TLS setup: {e}"))?;
        while conn.is_handshaking() {
            let r = self.arm().and_then(|()| conn.complete_io(&mut self.sock));
            match r {
                Ok((0, 0)) if conn.is_handshaking() => {
                    return Err(format!(
                        "{} closed the connection during the TLS handshake",
                        self.peer
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(self.io_err("TLS handshake", &e)),
            }
        }
        self.tls = Some(conn);
        Ok(())
    }

    #[cfg(not(feature = "tls"))]
    fn start_tls(&mut self, _host: &str) -> Result<(), String> {
        Err(format!(
            "{}: this build has no TLS support (built without the `tls` feature)",
            self.peer
        ))
    }

    /// EHLO (HELO to a loopback server that does not know EHLO); the capabilities.
    fn hello(&mut self, name: &str, clear: bool) -> Result<Capabilities, String> {
        let r = self.command(&format!("EHLO {name}"), "EHLO")?;
        if r.code == 250 {
            return Ok(Capabilities::parse(&r.lines));
        }
        if clear && (500..=502).contains(&r.code) {
            let h = self.command(&format!("HELO {name}"), "HELO")?;
            if h.code == 250 {
                return Ok(Capabilities::default());
            }
        }
        Err(format!("{} refused EHLO: {r}", self.peer))
    }
}

/// Plain words for the common socket errors.
fn plain_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => {
            "connection refused (no mail server listening there)".into()
        }
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "no answer in time".into(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
            "the server closed the connection".into()
        }
        io::ErrorKind::UnexpectedEof => "the server closed the connection".into(),
        _ => e.to_string(),
    }
}

/// What EHLO announced.
#[derive(Debug, Default, PartialEq, Eq)]
struct Capabilities {
    starttls: bool,
    eight_bit_mime: bool,
    /// AUTH mechanisms, upper case.
    auth: Vec<String>,
}

impl Capabilities {
    /// From the lines of the EHLO reply (the first is the server's name).
    fn parse(lines: &[String]) -> Capabilities {
        let mut c = Capabilities::default();
        for line in lines.iter().skip(1) {
            let upper = line.to_ascii_uppercase();
            let mut words = upper.split_whitespace();
            match words.next() {
                Some("STARTTLS") => c.starttls = true,
                Some("8BITMIME") => c.eight_bit_mime = true,
                Some(w) if w == "AUTH" || w.starts_with("AUTH=") => {
                    let first = w.strip_prefix("AUTH=").filter(|m| !m.is_empty());
                    for m in first.into_iter().chain(words) {
                        if !c.auth.iter().any(|x| x == m) {
                            c.auth.push(m.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        c
    }
}

/// The EHLO argument: our address as an address literal (RFC 5321 4.1.3), which is
/// always valid, where a Pi's host name is seldom a fully qualified domain name.
fn ehlo_name(local: Option<SocketAddr>) -> String {
    match local.map(|a| a.ip()) {
        Some(IpAddr::V4(v4)) => format!("[{v4}]"),
        Some(IpAddr::V6(v6)) => format!("[IPv6:{v6}]"),
        None => "[127.0.0.1]".into(),
    }
}

fn exchange(
    url: &SmtpUrl,
    from: &str,
    to: &[String],
    message: &[u8],
    deadline: Instant,
) -> Result<(), String> {
    let mut s = Session::connect(url, deadline)?;
    let clear = url.security == Security::Clear;
    let name = ehlo_name(s.sock.local_addr().ok());
    if url.security == Security::Implicit {
        s.start_tls(&url.host)?;
    }
    let greeting = s.reply("the greeting")?;
    if greeting.code != 220 {
        return Err(format!("{} refused the connection: {greeting}", s.peer));
    }
    let mut caps = s.hello(&name, clear)?;
    if url.security == Security::StartTls {
        if !caps.starttls {
            return Err(format!(
                "{} does not offer STARTTLS, which smtp:// needs to any host but loopback \
                 (nothing was sent; for TLS from the start use smtps://, port 465)",
                s.peer
            ));
        }
        let r = s.command("STARTTLS", "STARTTLS")?;
        if r.code != 220 {
            return Err(format!("{} refused STARTTLS: {r}", s.peer));
        }
        if !s.buf.is_empty() {
            return Err(format!(
                "{} sent data ahead of the TLS handshake (refused: a STARTTLS injection \
                 attempt or a broken server)",
                s.peer
            ));
        }
        s.start_tls(&url.host)?;
        caps = s.hello(&name, false)?;
    }
    if let Some(user) = &url.user {
        authenticate(&mut s, &caps, user, &url.password)?;
    }
    let eight_bit = message.iter().any(|&b| b >= 0x80);
    let body_param = if eight_bit && caps.eight_bit_mime {
        " BODY=8BITMIME"
    } else {
        ""
    };
    let r = s.command(&format!("MAIL FROM:<{from}>{body_param}"), "MAIL FROM")?;
    if r.code != 250 {
        return Err(format!("{} refused the sender {from}: {r}", s.peer));
    }
    let mut refused = Vec::new();
    let mut accepted = 0;
    for rcpt in to {
        let r = s.command(&format!("RCPT TO:<{rcpt}>"), "RCPT TO")?;
        if r.code == 250 || r.code == 251 {
            accepted += 1;
        } else {
            refused.push(format!("{rcpt} ({r})"));
        }
    }
    if accepted == 0 {
        let _ = s.command("QUIT", "QUIT");
        return Err(format!(
            "{} refused every recipient: {}",
            s.peer,
            refused.join(", ")
        ));
    }
    let r = s.command("DATA", "DATA")?;
    if r.code != 354 {
        return Err(format!("{} refused DATA: {r}", s.peer));
    }
    s.write_raw(&data_payload(message), "the message")?;
    let r = s.reply("the end of the message")?;
    if r.code != 250 {
        return Err(format!("{} refused the message: {r}", s.peer));
    }
    // The mail is accepted: QUIT is a courtesy, its failure changes nothing.
    let _ = s.command("QUIT", "QUIT");
    if refused.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the mail went to {accepted} recipient(s), but {} refused {}",
            s.peer,
            refused.join(", ")
        ))
    }
}

fn authenticate(
    s: &mut Session,
    caps: &Capabilities,
    user: &str,
    password: &str,
) -> Result<(), String> {
    let has = |m: &str| caps.auth.iter().any(|x| x == m);
    let refused = |s: &Session, r: &Reply| match r.code {
        535 => format!(
            "{} refused the user name or password of SMTP_URL (user {user}): {r}",
            s.peer
        ),
        _ => format!("{} refused AUTH: {r}", s.peer),
    };
    if has("PLAIN") {
        let token = base64(format!("\0{user}\0{password}").as_bytes());
        let mut r = s.command(&format!("AUTH PLAIN {token}"), "AUTH PLAIN")?;
        if r.code == 334 {
            // A server that wants the credentials after an empty challenge.
            r = s.command(&token, "AUTH PLAIN")?;
        }
        return if r.code == 235 {
            Ok(())
        } else {
            Err(refused(s, &r))
        };
    }
    if has("LOGIN") {
        let r = s.command("AUTH LOGIN", "AUTH LOGIN")?;
        if r.code != 334 {
            return Err(refused(s, &r));
        }
        let r = s.command(&base64(user.as_bytes()), "AUTH LOGIN (user name)")?;
        if r.code != 334 {
            return Err(refused(s, &r));
        }
        let r = s.command(&base64(password.as_bytes()), "AUTH LOGIN (password)")?;
        return if r.code == 235 {
            Ok(())
        } else {
            Err(refused(s, &r))
        };
    }
    if caps.auth.is_empty() {
        Err(format!(
            "{} offers no AUTH, but SMTP_URL has a user name and password",
            s.peer
        ))
    } else {
        Err(format!(
            "{} offers AUTH {}, not PLAIN or LOGIN (the only ones this client speaks)",
            s.peer,
            caps.auth.join(" ")
        ))
    }
}

/// The DATA payload: every line ended by CRLF, a line starting with `.` given another
/// one (RFC 5321 4.5.2), and the final `.` line.
fn data_payload(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    let body = message.strip_suffix(b"\n").unwrap_or(message);
    if !message.is_empty() {
        for line in body.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Standard base64 with padding (RFC 4648).
fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(T[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// The message.

/// A whole message, ready for [`send`]: CRLF line ends, 7-bit, no line over 76
/// characters. `now` is the Unix time of the Date header (written in UTC, `+0000`),
/// `hostname` the right-hand side of the Message-ID. Control characters in the
/// addresses are blanked (no header can be injected through them).
pub fn build_message(
    from: &str,
    to: &[String],
    subject: &str,
    body_text: &str,
    now: i64,
    hostname: &str,
) -> Vec<u8> {
    compose(
        from,
        to,
        subject,
        body_text,
        now,
        &message_id(now, hostname),
    )
}

fn compose(
    from: &str,
    to: &[String],
    subject: &str,
    body_text: &str,
    now: i64,
    message_id: &str,
) -> Vec<u8> {
    let mut m = String::with_capacity(body_text.len() * 3 / 2 + 512);
    m.push_str(&format!("Date: {}\r\n", rfc5322_date(now)));
    m.push_str(&format!("From: {}\r\n", header_safe(from)));
    m.push_str(&fold_list("To:", to));
    m.push_str(&format!("Subject: {}\r\n", encode_header_text(subject)));
    m.push_str(&format!("Message-ID: {message_id}\r\n"));
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    m.push_str("Content-Transfer-Encoding: quoted-printable\r\n");
    // RFC 3834: a machine wrote this; vacation responders stay quiet.
    m.push_str("Auto-Submitted: auto-generated\r\n");
    m.push_str("\r\n");
    m.push_str(&quoted_printable(body_text));
    m.into_bytes()
}

/// Printable ASCII only: control characters (CR, LF…) and non-ASCII become spaces.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .collect::<String>()
        .trim()
        .to_string()
}

/// `To: a@x, b@y`, folded before an address that would take the line over 76.
fn fold_list(name: &str, items: &[String]) -> String {
    let mut out = name.to_string();
    let mut line_len = out.len();
    for (i, item) in items.iter().enumerate() {
        let item = header_safe(item);
        let sep = if i + 1 < items.len() { "," } else { "" };
        if i > 0 && line_len + 1 + item.len() + sep.len() > 76 {
            out.push_str("\r\n");
            line_len = 0;
        }
        out.push(' ');
        out.push_str(&item);
        out.push_str(sep);
        line_len += 1 + item.len() + sep.len();
    }
    out.push_str("\r\n");
    out
}

/// UTF-8 bytes per encoded word: 39 bytes are 52 base64 characters, a 64-character
/// word `=?UTF-8?B?…?=`, so that even `Subject: ` and the first word stay within the 76
/// characters RFC 2047 allows a line that holds encoded words.
const WORD_BYTES: usize = 39;

/// A header's text: as is when it is short printable ASCII, else RFC 2047 encoded
/// words (B encoding of UTF-8, never splitting a character), one per folded line.
fn encode_header_text(text: &str) -> String {
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim();
    let plain = text.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !text.contains("=?")
        && text.len() <= 76 - "Subject: ".len();
    if plain {
        return text.to_string();
    }
    let mut words = Vec::new();
    let mut start = 0;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        if i + c.len_utf8() - start > WORD_BYTES {
            words.push(&text[start..end]);
            start = i;
        }
        end = i + c.len_utf8();
    }
    if end > start {
        words.push(&text[start..end]);
    }
    words
        .iter()
        .map(|w| format!("=?UTF-8?B?{}?=", base64(w.as_bytes())))
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// Quoted-printable (RFC 2045 6.7) of a text: lines of at most 76 characters with soft
/// breaks, CRLF line ends, `=`, non-ASCII and a line's trailing blank escaped.
fn quoted_printable(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let text = text.replace("\r\n", "\n");
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for line in text.split('\n') {
        let bytes = line.as_bytes();
        let mut len = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let last = i + 1 == bytes.len();
            let literal =
                (b.is_ascii_graphic() && b != b'=') || ((b == b' ' || b == b'\t') && !last);
            let width = if literal { 1 } else { 3 };
            // Room for the soft break's `=` within 76.
            if len + width > 75 {
                out.push_str("=\r\n");
                len = 0;
            }
            if literal {
                out.push(char::from(b));
            } else {
                out.push('=');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
            len += width;
        }
        out.push_str("\r\n");
    }
    out
}

/// `Wed, 18 Dec 2024 02:00:00 +0000` (RFC 5322 3.3), in UTC.
pub fn rfc5322_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = clock::civil(unix);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000",
        DAYS[c.weekday as usize % 7],
        c.day,
        MONTHS[(c.month as usize).saturating_sub(1) % 12],
        c.year,
        c.hour,
        c.minute,
        c.second
    )
}

/// `<time.counter.random@host>`: unique across runs (the time and 64 random bits) and
/// within one (a counter).
fn message_id(now: i64, hostname: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut random = [0u8; 8];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random).is_err() {
        // No randomness: the nanoseconds of the clock and the process id instead.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        random[..4].copy_from_slice(&nanos.to_be_bytes());
        random[4..].copy_from_slice(&std::process::id().to_be_bytes());
    }
    let host: String = hostname
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    let host = host.trim_matches('.');
    let host = if host.is_empty() { "localhost" } else { host };
    format!(
        "<{now}.{}.{:016x}.neopro-backup@{host}>",
        COUNTER.fetch_add(1, Ordering::Relaxed),
        u64::from_be_bytes(random)
    )
}

#[cfg(test)]
mod tests {
    // nanoserde's DeJson derive expands to code that clippy's question_mark lint flags.
    #![allow(clippy::question_mark)]

    use super::*;
    use nanoserde::DeJson;
    use std::net::TcpListener;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::OnceLock;

    // ----- pure parts -----

    #[test]
    #[cfg(feature = "tls")]
    fn smtp_urls_parse() {
        let ok = |s: &str| SmtpUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        let u = ok("smtps://alerte%40club.fr:pa%3Ass%2Fw%C3%B6rd%401@Mail.Example.org");
        assert_eq!(
            (u.security, u.host.as_str(), u.port, u.user.as_deref()),
            (
                Security::Implicit,
                "mail.example.org",
                465,
                Some("alerte@club.fr")
            )
        );
        assert_eq!(u.password, "pa:ss/wörd@1");
        let u = ok("smtp://u:p@mail.example.org:2525/");
        assert_eq!((u.security, u.port), (Security::StartTls, 2525));
        let u = ok("smtp://mail.example.org");
        assert_eq!(
            (u.security, u.port, u.user),
            (Security::StartTls, 587, None)
        );
        for loopback in [
            "smtp://127.0.0.1:25",
            "smtp://127.1.2.3",
            "smtp://localhost:2525",
            "smtp://u:p@[::1]:25",
            "smtp://[::ffff:127.0.0.1]:25",
        ] {
            assert_eq!(ok(loopback).security, Security::Clear, "{loopback}");
        }
        let u = ok("smtps://u:p@[2001:db8::1]:4650");
        assert_eq!((u.host.as_str(), u.port), ("2001:db8::1", 4650));
        assert_eq!(u.hostport(), "[2001:db8::1]:4650");
        // Not loopback: STARTTLS, even for a private address or a name like localhost.
        for other in [
            "smtp://192.168.1.2",
            "smtp://localhost.example.org",
            "smtp://128.0.0.1",
        ] {
            assert_eq!(ok(other).security, Security::StartTls, "{other}");
        }
    }

    #[test]
    fn bad_smtp_urls_say_what_is_expected_without_the_password() {
        for bad in [
            "http://u:secretpw@host",
            "smtp://",
            "smtps://u:secretpw@",
            "smtp://u:secretpw@host:0",
            "smtp://u:secretpw@host:99999",
            "smtp://u:secretpw@host:25x",
            "smtp://u@host",
            "smtp://:secretpw@host",
            "smtp://u:@host",
            "smtp://u:secretpw%zz@host",
            "smtp://u:secretpw%FF@host",
            "smtp://u:secretpw@host/path",
            "smtp://u:secretpw@host?x=1",
            "smtp://u:secretpw@host#f",
            "smtp://u:secretpw@ho st",
            "smtps://u:secretpw@[::1",
            "smtps://u:secretpw@[zz]:25",
            "smtps://u:secretpw@[::1]25",
            "mail.example.org",
        ] {
            match SmtpUrl::parse(bad) {
                Ok(u) => panic!("{bad} parsed as {u:?}"),
                Err(e) => {
                    assert!(e.contains("smtps://"), "{bad}: {e}");
                    assert!(!e.contains("secretpw"), "{bad}: {e}");
                }
            }
        }
    }

    #[test]
    #[cfg(feature = "tls")]
    fn smtp_url_debug_and_display_hide_the_password() {
        let u = SmtpUrl::parse("smtps://alerte%40club.fr:Tr%C3%A8sSecret@mail.example.org")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u.to_string(), "smtps://alerte@club.fr@mail.example.org:465");
        let debug = format!("{u:?} {u:#?}");
        assert!(!debug.contains("TrèsSecret"), "{debug}");
        assert!(debug.contains("(hidden)"), "{debug}");
        let u = SmtpUrl::parse("smtp://127.0.0.1:25").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u.to_string(), "smtp://127.0.0.1:25");
    }

    #[test]
    #[cfg(not(feature = "tls"))]
    fn smtp_without_tls_only_loopback() {
        for url in [
            "smtps://u:secretpw@mail.example.org",
            "smtp://u:secretpw@mail.example.org",
        ] {
            let e = SmtpUrl::parse(url).err().unwrap_or_default();
            assert!(e.contains("without the `tls` feature"), "{url}: {e}");
            assert!(!e.contains("secretpw"), "{e}");
        }
        let u = SmtpUrl::parse("smtp://u:p@127.0.0.1:25").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u.security, Security::Clear);
    }

    #[test]
    fn smtp_addresses() {
        for good in [
            "a@b",
            "alerte+neopro@club-lyon.fr",
            "x.y_z@mail.example.org",
        ] {
            assert_eq!(check_address(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "a",
            "@b",
            "a@",
            "a@b@c",
            "a b@c",
            "<a@b>",
            "a@b\r\nBcc: x@y",
            "é@b.fr",
            "a@.b",
            "a@b.",
            "a,b@c",
            "x.y@[127.0.0.1]",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_address_list(" a@b.fr, c@d.fr ,,"),
            Ok(vec!["a@b.fr".to_string(), "c@d.fr".to_string()])
        );
        assert!(parse_address_list(" , ").is_err());
        assert!(parse_address_list("a@b.fr, nope").is_err());
    }

    #[test]
    fn smtp_ehlo_capabilities() {
        let lines: Vec<String> = [
            "smtp.example.org at your service",
            "SIZE 35882577",
            "8BITMIME",
            "AUTH=LOGIN",
            "auth plain login xoauth2",
            "STARTTLS",
            "SMTPUTF8",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            Capabilities::parse(&lines),
            Capabilities {
                starttls: true,
                eight_bit_mime: true,
                auth: vec!["LOGIN".into(), "PLAIN".into(), "XOAUTH2".into()],
            }
        );
        // The first line is the server's name, whatever it says.
        let only_name = vec!["STARTTLS".to_string()];
        assert_eq!(Capabilities::parse(&only_name), Capabilities::default());
    }

    #[test]
    fn smtp_data_is_dot_stuffed_with_crlf() {
        assert_eq!(
            data_payload(b"Subject: x\r\n\r\n.hello\n.\nend\r\n..two\r\n"),
            b"Subject: x\r\n\r\n..hello\r\n..\r\nend\r\n...two\r\n.\r\n"
        );
        assert_eq!(
            data_payload(b"no final newline"),
            b"no final newline\r\n.\r\n"
        );
        assert_eq!(data_payload(b""), b".\r\n");
    }

    #[test]
    fn smtp_base64() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("\0u\0p", "AHUAcA=="),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc, "{plain:?}");
        }
    }

    /// Test-only decoders, to read back what the encoders wrote.
    fn unbase64(s: &str) -> Vec<u8> {
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bits = 0u32;
        let mut n = 0;
        let mut out = Vec::new();
        for c in s.bytes().filter(|&c| c != b'=') {
            let v = T
                .iter()
                .position(|&t| t == c)
                .unwrap_or_else(|| panic!("{c}"));
            bits = (bits << 6) | v as u32;
            n += 6;
            if n >= 8 {
                n -= 8;
                out.push((bits >> n) as u8);
            }
        }
        out
    }

    fn decode_words(header: &str) -> String {
        let mut out = Vec::new();
        for word in header.split("\r\n ") {
            let b64 = word
                .strip_prefix("=?UTF-8?B?")
                .and_then(|w| w.strip_suffix("?="))
                .unwrap_or_else(|| panic!("not an encoded word: {word:?}"));
            out.extend(unbase64(b64));
        }
        String::from_utf8(out).unwrap_or_else(|e| panic!("{e}"))
    }

    fn unqp(s: &str) -> String {
        let mut out = Vec::new();
        let b = s.replace("=\r\n", "").replace("\r\n", "\n").into_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'=' {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("{e}")));
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn smtp_subject_encoded_words() {
        assert_eq!(encode_header_text("Backup OK"), "Backup OK");
        assert_eq!(encode_header_text("  a\r\nBcc: x "), "a  Bcc: x");
        // ASCII that looks like an encoded word is encoded, so it reads back as typed.
        let w = encode_header_text("=?x?=");
        assert_eq!(decode_words(&w), "=?x?=");
        for subject in [
            "Échec de la sauvegarde Neopro – club-lyon",
            "é".repeat(100).as_str(),
            "😀 sauvegarde échouée 😀 à Saint-Étienne, 3ᵉ fois d'affilée ✓✓✓ – fin",
            "x".repeat(100).as_str(),
        ] {
            let enc = encode_header_text(subject);
            assert_eq!(decode_words(&enc), subject);
            for (i, line) in format!("Subject: {enc}").split("\r\n").enumerate() {
                assert!(line.len() <= 76, "line {i} of {enc:?} is {}", line.len());
                assert!(line.is_ascii());
            }
        }
    }

    #[test]
    fn smtp_quoted_printable() {
        assert_eq!(quoted_printable("Échec"), "=C3=89chec\r\n");
        assert_eq!(quoted_printable("a=b\n.hello\n"), "a=3Db\r\n.hello\r\n");
        assert_eq!(quoted_printable("fin \nx\t"), "fin=20\r\nx=09\r\n");
        assert_eq!(quoted_printable("-- \n"), "--=20\r\n");
        let long = format!("{}é{}", "x".repeat(74), "y ".repeat(300));
        let text = format!("début\r\n{long}\n\nfin\n");
        let qp = quoted_printable(&text);
        for line in qp.split("\r\n") {
            assert!(line.len() <= 76, "{line:?}");
            assert!(line.is_ascii(), "{line:?}");
            assert!(!line.ends_with(' ') && !line.ends_with('\t'), "{line:?}");
        }
        assert_eq!(unqp(&qp), text.replace("\r\n", "\n"));
    }

    #[test]
    fn smtp_dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_734_487_200),
            "Wed, 18 Dec 2024 02:00:00 +0000"
        );
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn smtp_message_ids_are_unique_and_safe() {
        let a = message_id(1_734_487_200, "pi-club\r\nBcc: x");
        let b = message_id(1_734_487_200, "pi-club\r\nBcc: x");
        assert_ne!(a, b);
        assert!(
            a.starts_with("<1734487200.") && a.ends_with("@pi-clubBccx>"),
            "{a}"
        );
        assert!(message_id(0, "").ends_with("@localhost>"));
    }

    #[test]
    fn smtp_message_layout() {
        let to = vec!["a@club.fr".to_string(), "b@club.fr".to_string()];
        let m = compose(
            "neopro@club.fr\r\nBcc: evil@x",
            &to,
            "Échec – site",
            "Bonjour,\n.hello\nfin\n",
            1_734_487_200,
            "<1.2@pi>",
        );
        let m = String::from_utf8(m).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            m,
            "Date: Wed, 18 Dec 2024 02:00:00 +0000\r\n\
             From: neopro@club.fr  Bcc: evil@x\r\n\
             To: a@club.fr, b@club.fr\r\n\
             Subject: =?UTF-8?B?w4ljaGVjIOKAkyBzaXRl?=\r\n\
             Message-ID: <1.2@pi>\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\
             Auto-Submitted: auto-generated\r\n\
             \r\n\
             Bonjour,\r\n\
             .hello\r\n\
             fin\r\n"
        );
        // Many recipients: the To header is folded, no line over 76.
        let many: Vec<String> = (0..20).map(|i| format!("user{i}@club-{i}.fr")).collect();
        let m = build_message("n@c.fr", &many, "s", "b", 0, "pi");
        let m = String::from_utf8(m).unwrap_or_else(|e| panic!("{e}"));
        assert!(m.split("\r\n").all(|l| l.len() <= 76), "{m}");
        assert!(!m.replace("\r\n", "").contains('\n'), "bare LF in {m:?}");
        for a in &many {
            assert!(m.contains(a.as_str()), "{a}");
        }
    }

    #[test]
    fn smtp_scrub_hides_every_form_of_the_password() {
        let u = SmtpUrl::parse("smtp://bob:hunter22@127.0.0.1").unwrap_or_else(|e| panic!("{e}"));
        let plain = base64(b"\0bob\0hunter22");
        let msg = format!(
            "500 unknown AUTH PLAIN {plain} / hunter22 / {}",
            base64(b"hunter22")
        );
        let s = scrub(msg, &u);
        assert!(!s.contains("hunter22") && !s.contains(&plain), "{s}");
        assert!(!s.contains(&base64(b"hunter22")), "{s}");
    }

    // ----- against a real server -----

    const USER: &str = "alerte@club.fr";
    /// With `:`, `/`, `@` and a non-ASCII letter: percent-encoded in the URL.
    const PASSWORD: &str = "pa:ss/wörd@1";
    const PASSWORD_IN_URL: &str = "pa%3Ass%2Fw%C3%B6rd%401";
    const TIMEOUT: Duration = Duration::from_secs(15);

    /// Fails under CI=true, else says why the test does nothing.
    fn unavailable(what: &str) {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{what} (CI=true: this test must run)");
        }
        eprintln!("SKIPPED: {what}");
    }

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn venv_python() -> Option<PathBuf> {
        let py = repo().join(".xtools/smtp-venv/bin/python");
        if py.exists() {
            Some(py)
        } else {
            unavailable("no SMTP test server: run scripts/smtp-venv.sh (aiosmtpd from PyPI)");
            None
        }
    }

    /// A fresh folder for one test, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let d = std::env::temp_dir()
                .join(format!("neopro-smtp-test-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
            TempDir(d)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The test PKI: a CA, a server certificate it signed for localhost and 127.0.0.1,
    /// and another CA that signed nothing of ours. Made once per test process by the
    /// parent; a child (see `in_child`) gets its folder in NEOPRO_SMTP_TEST_PKI.
    fn pki() -> Option<&'static Path> {
        static PKI: OnceLock<Option<TempDir>> = OnceLock::new();
        if let Some(d) = std::env::var_os("NEOPRO_SMTP_TEST_PKI") {
            static CHILD: OnceLock<PathBuf> = OnceLock::new();
            return Some(CHILD.get_or_init(|| PathBuf::from(d)).as_path());
        }
        PKI.get_or_init(|| {
            let d = TempDir::new("pki");
            let script = "set -e
                openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                  -keyout ca.key -out ca.pem -days 2 -subj /CN=neopro-smtp-test-ca
                openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                  -keyout srv.key -out srv.csr -subj /CN=localhost
                printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf
                openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
                  -out srv.pem -days 2 -extfile ext.cnf
                openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                  -keyout other.key -out other.pem -days 2 -subj /CN=other-ca";
            match Command::new("sh")
                .args(["-c", script])
                .current_dir(&d.0)
                .stdin(Stdio::null())
                .output()
            {
                Ok(o) if o.status.success() => Some(d),
                Ok(o) => panic!(
                    "openssl failed making the test PKI: {}",
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => {
                    unavailable(&format!("no openssl to make the test certificates: {e}"));
                    None
                }
            }
        })
        .as_ref()
        .map(|d| d.0.as_path())
    }

    /// The TLS configuration is read once per process from SSL_CERT_FILE, and setting
    /// an environment variable in a threaded test process is unsound: so a TLS test
    /// runs its body in a child process of this test binary, with SSL_CERT_FILE set
    /// to the CA given. Returns true in the child (run the body), false in the parent
    /// after checking that the child ran that one test and passed.
    #[cfg(feature = "tls")]
    fn in_child(test: &str, ca: &str) -> bool {
        if std::env::var("NEOPRO_SMTP_TEST_CHILD").is_ok_and(|t| t == test) {
            return true;
        }
        let Some(pki) = pki() else { return false };
        let module = module_path!()
            .split_once("::")
            .map_or(module_path!(), |(_, m)| m);
        let full = format!("{module}::{test}");
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
        let out = Command::new(exe)
            .args([full.as_str(), "--exact", "--nocapture", "--test-threads=1"])
            .env("NEOPRO_SMTP_TEST_CHILD", test)
            .env("NEOPRO_SMTP_TEST_PKI", pki)
            .env("SSL_CERT_FILE", pki.join(ca))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run the test binary: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("--- child {full}:\n{stdout}{stderr}---");
        assert!(out.status.success(), "{full} failed in its child process");
        assert!(
            stdout.contains("test result: ok. 1 passed"),
            "{full}: the child did not run exactly that test"
        );
        false
    }

    /// tests/smtp/server.py, started on a free port it picks; stopped when dropped.
    struct Server {
        child: Child,
        dir: TempDir,
        port: u16,
    }

    impl Server {
        /// `mode`: starttls, implicit or plain; `extra`: more arguments.
        fn start(name: &str, mode: &str, extra: &[&str]) -> Option<Server> {
            let py = venv_python()?;
            let dir = TempDir::new(name);
            let mut c = Command::new(py);
            c.arg(repo().join("tests/smtp/server.py"))
                .args(["--mode", mode, "--user", USER, "--password", PASSWORD])
                .arg("--dir")
                .arg(dir.0.join("out"))
                .args(extra)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.0.join("server.log")).ok()?);
            if mode != "plain" {
                let pki = pki()?;
                c.arg("--cert").arg(pki.join("srv.pem"));
                c.arg("--key").arg(pki.join("srv.key"));
            }
            let mut child = c.spawn().unwrap_or_else(|e| panic!("server.py: {e}"));
            let port_file = dir.0.join("out/port");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(p) = std::fs::read_to_string(&port_file)
                    && let Ok(port) = p.trim().parse::<u16>()
                {
                    return Some(Server { child, dir, port });
                }
                if let Ok(Some(status)) = child.try_wait() {
                    let log = std::fs::read_to_string(dir.0.join("server.log"));
                    panic!("server.py exited ({status}): {}", log.unwrap_or_default());
                }
                assert!(Instant::now() < deadline, "server.py wrote no port in 30 s");
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        fn out(&self) -> PathBuf {
            self.dir.0.join("out")
        }

        /// The received mails, in order: (envelope and parse, raw data).
        fn mails(&self) -> Vec<(Received, Vec<u8>)> {
            (1..)
                .map_while(|i| {
                    let json = std::fs::read_to_string(self.out().join(format!("mail-{i}.json")));
                    let json = json.ok()?;
                    let r = Received::deserialize_json(&json)
                        .unwrap_or_else(|e| panic!("mail-{i}.json: {e}: {json}"));
                    let raw = std::fs::read(self.out().join(format!("mail-{i}.eml")))
                        .unwrap_or_else(|e| panic!("mail-{i}.eml: {e}"));
                    Some((r, raw))
                })
                .collect()
        }

        /// `MECHANISM login ok|refused` per AUTH attempt.
        fn auth_log(&self) -> String {
            std::fs::read_to_string(self.out().join("auth.log")).unwrap_or_default()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// What server.py wrote about a mail (Python's email package read it).
    #[derive(DeJson, Debug)]
    struct Received {
        mail_from: String,
        rcpt_tos: Vec<String>,
        tls: bool,
        tls_version: String,
        auth_mechanism: String,
        auth_login: String,
        subject: String,
        from: String,
        to: String,
        date_epoch: i64,
        message_id: String,
        mime_version: String,
        content_type: String,
        charset: String,
        transfer_encoding: String,
        body: String,
        defects: Vec<String>,
    }

    fn url(scheme: &str, port: u16) -> SmtpUrl {
        let s = format!(
            "{scheme}://{}:{PASSWORD_IN_URL}@localhost:{port}",
            "alerte%40club.fr"
        );
        let mut u = SmtpUrl::parse(&s).unwrap_or_else(|e| panic!("{e}"));
        if scheme == "smtp" {
            // The test server is on loopback, where smtp:// means clear text: ask for
            // STARTTLS as smtp:// does to any other host.
            u.security = Security::StartTls;
        }
        u
    }

    fn recipients() -> Vec<String> {
        vec!["tresorier@club.fr".into(), "president@club.fr".into()]
    }

    /// An error must never show the password, in any form.
    fn assert_no_secret(e: &str) {
        for secret in [
            PASSWORD,
            PASSWORD_IN_URL,
            &base64(PASSWORD.as_bytes()),
            &base64(format!("\0{USER}\0{PASSWORD}").as_bytes()),
        ] {
            assert!(!e.contains(secret), "the error shows a secret: {e}");
        }
    }

    /// Sends a French mail through `u`; checks what the server got; returns it.
    fn send_and_check(server: &Server, u: &SmtpUrl) -> Received {
        let subject = "Échec de la sauvegarde Neopro – club de Saint-Étienne (ça n'a pas marché)";
        let long = format!("Erreur : {}", "le disque est plein, ".repeat(30));
        let body = format!(
            "Bonjour,\n\nLa sauvegarde a échoué.\n.hello\n.\n{long}\nDernière réussite : \
             mardi 17 décembre 2024 à 03:00\n-- \nneopro-backup\n"
        );
        let now = clock::now_unix();
        let msg = build_message(
            "neopro@club.fr",
            &recipients(),
            subject,
            &body,
            now,
            "pi-club",
        );
        let started = Instant::now();
        let r = send(u, "neopro@club.fr", &recipients(), &msg, TIMEOUT);
        assert_eq!(r, Ok(()), "sending through {u}");
        assert!(started.elapsed() < TIMEOUT);
        let mails = server.mails();
        assert_eq!(mails.len(), 1, "one mail received");
        let (got, raw) = mails.into_iter().next().unwrap_or_else(|| unreachable!());
        assert_eq!(got.mail_from, "neopro@club.fr");
        assert_eq!(got.rcpt_tos, recipients());
        assert_eq!(got.auth_login, USER);
        assert_eq!(got.subject, subject, "the RFC 2047 subject decodes back");
        assert_eq!(got.body, body, "the quoted-printable body decodes back");
        assert_eq!(got.from, "neopro@club.fr");
        assert_eq!(got.to, "tresorier@club.fr, president@club.fr");
        assert_eq!(got.date_epoch, now, "the Date header");
        assert!(
            got.message_id.starts_with('<') && got.message_id.ends_with("@pi-club>"),
            "{}",
            got.message_id
        );
        assert_eq!(got.mime_version, "1.0");
        assert_eq!(
            (got.content_type.as_str(), got.charset.as_str()),
            ("text/plain", "utf-8")
        );
        assert_eq!(got.transfer_encoding, "quoted-printable");
        assert!(got.defects.is_empty(), "parse defects: {:?}", got.defects);
        // The raw message as the server stored it, dot-stuffing removed.
        assert!(raw.is_ascii(), "7-bit message");
        let raw = String::from_utf8(raw).unwrap_or_else(|e| panic!("{e}"));
        assert!(raw.ends_with("\r\n"), "{raw:?}");
        let lines: Vec<&str> = raw
            .strip_suffix("\r\n")
            .unwrap_or(&raw)
            .split("\r\n")
            .collect();
        for l in &lines {
            assert!(
                !l.contains('\n') && !l.contains('\r'),
                "bare LF or CR: {l:?}"
            );
            assert!(l.len() <= 76, "a line of {} characters: {l:?}", l.len());
        }
        assert!(
            lines.contains(&".hello"),
            "the .hello line arrives as .hello"
        );
        assert!(lines.contains(&"."), "the . line arrives as .");
        assert!(
            lines.iter().any(|l| l.starts_with("Subject: =?UTF-8?B?")),
            "encoded subject"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("Date: ") && l.ends_with(" +0000"))
        );
        got
    }

    #[test]
    #[cfg(feature = "tls")]
    fn smtp_starttls_auth_plain() {
        if !in_child("smtp_starttls_auth_plain", "ca.pem") {
            return;
        }
        let Some(server) = Server::start("plain-auth", "starttls", &[]) else {
            return;
        };
        let got = send_and_check(&server, &url("smtp", server.port));
        assert!(got.tls, "STARTTLS was used");
        assert!(got.tls_version.starts_with("TLSv1."), "{}", got.tls_version);
        assert_eq!(
            got.auth_mechanism, "PLAIN",
            "PLAIN is preferred when offered"
        );
    }

    #[test]
    #[cfg(feature = "tls")]
    fn smtp_starttls_auth_login() {
        if !in_child("smtp_starttls_auth_login", "ca.pem") {
            return;
        }
        let Some(server) = Server::start("login-auth", "starttls", &["--mechanisms", "LOGIN"])
        else {
            return;
        };
        let got = send_and_check(&server, &url("smtp", server.port));
        assert!(got.tls);
        assert_eq!(got.auth_mechanism, "LOGIN");
    }

    #[test]
    #[cfg(feature = "tls")]
    fn smtp_implicit_tls() {
        if !in_child("smtp_implicit_tls", "ca.pem") {
            return;
        }
        let Some(server) = Server::start("implicit", "implicit", &[]) else {
            return;
        };
        let got = send_and_check(&server, &url("smtps", server.port));
        assert!(got.tls, "TLS from the first byte");
        assert_eq!(got.auth_mechanism, "PLAIN");
    }

    #[test]
    #[cfg(feature = "tls")]
    fn smtp_refused_auth_is_a_clear_error_without_the_password() {
        if !in_child(
            "smtp_refused_auth_is_a_clear_error_without_the_password",
            "ca.pem",
        ) {
            return;
        }
        let Some(server) = Server::start("refuse", "starttls", &["--refuse-auth"]) else {
            return;
        };
        let msg = build_message("neopro@club.fr", &recipients(), "s", "b", 0, "pi");
        let started = Instant::now();
        let r = send(
            &url("smtp", server.port),
            "neopro@club.fr",
            &recipients(),
            &msg,
            TIMEOUT,
        );
        let elapsed = started.elapsed();
        let e = r.err().unwrap_or_else(|| panic!("refused AUTH gave Ok"));
        assert!(
            e.contains("refused the user name or password") && e.contains("535"),
            "{e}"
        );
        assert_no_secret(&e);
        assert!(elapsed < TIMEOUT / 2, "took {elapsed:?}");
        assert_eq!(server.auth_log(), format!("PLAIN {USER} refused\n"));
        assert!(server.mails().is_empty());
    }

    #[test]
    #[cfg(feature = "tls")]
    fn smtp_untrusted_certificate_sends_nothing() {
        if !in_child("smtp_untrusted_certificate_sends_nothing", "other.pem") {
            return;
        }
        let Some(server) = Server::start("untrusted", "starttls", &[]) else {
            return;
        };
        let msg = build_message("neopro@club.fr", &recipients(), "s", "b", 0, "pi");
        let r = send(
            &url("smtp", server.port),
            "neopro@club.fr",
            &recipients(),
            &msg,
            TIMEOUT,
        );
        let e = r
            .err()
            .unwrap_or_else(|| panic!("an untrusted server got the mail"));
        assert!(
            e.contains("not trusted") && e.contains("SSL_CERT_FILE"),
            "{e}"
        );
        assert_no_secret(&e);
        assert_eq!(server.auth_log(), "", "no AUTH attempted");
        assert!(server.mails().is_empty());
    }

    #[test]
    fn smtp_starttls_is_mandatory_off_loopback() {
        // A server without STARTTLS (it offers AUTH in clear): nothing may be sent.
        let Some(server) = Server::start("no-starttls", "plain", &[]) else {
            return;
        };
        let msg = build_message("neopro@club.fr", &recipients(), "s", "b", 0, "pi");
        let r = send(
            &url("smtp", server.port),
            "neopro@club.fr",
            &recipients(),
            &msg,
            TIMEOUT,
        );
        let e = r.err().unwrap_or_else(|| panic!("sent without STARTTLS"));
        assert!(e.contains("does not offer STARTTLS"), "{e}");
        assert_eq!(
            server.auth_log(),
            "",
            "the password never went out in clear"
        );
        assert!(server.mails().is_empty());
    }

    #[test]
    fn smtp_loopback_in_clear() {
        let Some(server) = Server::start("clear", "plain", &[]) else {
            return;
        };
        let s = format!(
            "smtp://alerte%40club.fr:{PASSWORD_IN_URL}@127.0.0.1:{}",
            server.port
        );
        let u = SmtpUrl::parse(&s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u.security, Security::Clear);
        let got = send_and_check(&server, &u);
        assert!(!got.tls);
        assert_eq!(got.auth_mechanism, "PLAIN");
        // The alert's own French text arrives as written.
        let (subject, body) = crate::alerts_mail::failure_mail(
            "club-saint-étienne",
            "le dossier /home/pi/neopro est introuvable",
            Some("mardi 17 décembre 2024 à 03:00"),
            0,
            Some("http://192.168.1.20:8081/"),
        );
        let msg = build_message("neopro@club.fr", &recipients(), &subject, &body, 0, "pi");
        assert_eq!(
            send(&u, "neopro@club.fr", &recipients(), &msg, TIMEOUT),
            Ok(())
        );
        let mails = server.mails();
        let (got, _) = mails.get(1).unwrap_or_else(|| panic!("no second mail"));
        assert_eq!((&got.subject, &got.body), (&subject, &body));
        assert!(got.body.contains("Dernière sauvegarde réussie : mardi"));
    }

    #[test]
    fn smtp_down_server_fails_fast() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
            l.local_addr().unwrap_or_else(|e| panic!("{e}")).port()
        };
        // The listener is closed: nothing listens on that port now.
        let u = SmtpUrl::parse(&format!("smtp://u:{PASSWORD_IN_URL}@127.0.0.1:{port}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        let r = send(
            &u,
            "a@b.fr",
            &recipients(),
            b"Subject: x\r\n\r\nx\r\n",
            TIMEOUT,
        );
        let e = r
            .err()
            .unwrap_or_else(|| panic!("a closed port took the mail"));
        assert!(e.contains("cannot connect") && e.contains("refused"), "{e}");
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
        assert_no_secret(&e);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn smtp_silent_server_times_out() {
        // Accepts the connection and never says a word.
        let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let port = l.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
        let hold = std::thread::spawn(move || {
            // Holds the connection until the client closes it (read gives 0), 5 s at most.
            if let Ok((mut conn, _)) = l.accept() {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = conn.read(&mut [0u8; 64]);
            }
        });
        let u =
            SmtpUrl::parse(&format!("smtp://127.0.0.1:{port}")).unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        let timeout = Duration::from_millis(800);
        let r = send(&u, "a@b.fr", &recipients(), b"x", timeout);
        let elapsed = started.elapsed();
        let e = r
            .err()
            .unwrap_or_else(|| panic!("a silent server took the mail"));
        // The exchange's own error (which step) or, had it been late, send's bound.
        assert!(
            e.contains("waiting for the answer to the greeting): no answer in time")
                || e.contains("no complete answer within 0.8 s"),
            "{e}"
        );
        assert!(
            elapsed >= timeout / 2 && elapsed < timeout + Duration::from_millis(300),
            "{elapsed:?}"
        );
        let _ = hold.join();
    }

    #[test]
    fn smtp_refuses_bad_addresses_before_connecting() {
        let u = SmtpUrl::parse("smtp://127.0.0.1:9").unwrap_or_else(|e| panic!("{e}"));
        let e = send(&u, "not an address", &recipients(), b"x", TIMEOUT);
        assert!(e.is_err_and(|e| e.starts_with("sender:")));
        let e = send(
            &u,
            "a@b.fr",
            &["x@y\r\nRCPT TO:<z@w>".to_string()],
            b"x",
            TIMEOUT,
        );
        assert!(e.is_err_and(|e| e.starts_with("recipient:")));
        assert_eq!(
            send(&u, "a@b.fr", &[], b"x", TIMEOUT),
            Err("no recipient".into())
        );
    }
}
