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
//! TLS is the same rustls configuration as the HTTP client (`http::client::tls_config`: ring,
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
//! CAs do we trust" (rustls-native-certs' rules, not `http::client::tls_config`'s), and its
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
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod message;
mod url;

use message::base64;
pub use message::build_message;
pub use url::{Security, SmtpUrl, check_address, parse_address_list};

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
    let (deadline, inner_deadline) = deadlines(Instant::now(), timeout);
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

/// The caller's deadline from `start`, and the exchange's: a tenth of the timeout
/// earlier, 500 ms at most, so that the exchange's own error, which says at which
/// step the server went silent, usually comes first.
fn deadlines(start: Instant, timeout: Duration) -> (Instant, Instant) {
    let deadline = start + timeout;
    (
        deadline,
        deadline - (timeout / 10).min(Duration::from_millis(500)),
    )
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
        let resolved: Vec<SocketAddr> = (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", url.host))?
            .collect();
        let addrs = connect_targets(resolved, url.security)
            .map_err(|why| format!("cannot connect to {peer}: {why}"))?;
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
            // The deadline passed before a first attempt.
            None => format!("cannot connect to {peer}: no time left"),
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
        crate::http::tls::with_cert_hint(msg, e)
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
        let config = crate::http::client::tls_config()?;
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

/// The addresses to try, in the resolver's order: in clear, only the loopback ones,
/// whatever a name resolves to (a `localhost` that some /etc/hosts maps to a LAN
/// address gets nothing in clear). `Err` says why none is left.
fn connect_targets(
    addrs: Vec<SocketAddr>,
    security: Security,
) -> Result<Vec<SocketAddr>, &'static str> {
    let clear = security == Security::Clear;
    let addrs: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| !clear || a.ip().is_loopback() || url::matches_v4_mapped_loopback(&a.ip()))
        .collect();
    match addrs.is_empty() {
        false => Ok(addrs),
        true if clear => Err("no loopback address for it"),
        true => Err("no address for it"),
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

// ---------------------------------------------------------------------------------
// The message.

#[cfg(test)]
mod server_tests;
#[cfg(test)]
mod unit_tests;
