//! A small blocking HTTP/1.1 client for the offsite copies and the alerts: one request
//! per connection (`Connection: close`), a body streamed from any reader with a known
//! length (never chunked: S3 wants `Content-Length`), plain TCP or TLS.
//!
//! TLS is rustls with the *ring* provider, verified against the system's CA bundle
//! (`SSL_CERT_FILE` when set, else the usual Debian/Raspberry Pi OS path). Every socket
//! has connect, read and write timeouts, so a dead server costs seconds, never a hang.
//!
//! Why not a client crate: ureq 3 costs about 250 KB of static binary on top of rustls,
//! and the release binary must stay under 2 MiB on the Pis; what S3 needs from HTTP is
//! this file.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
#[cfg(feature = "tls")]
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::http::response;

/// Where the CA bundle is looked for when SSL_CERT_FILE is not set.
#[cfg(feature = "tls")]
const CA_PATHS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// A parsed `http://` or `https://` URL (no user info: credentials never go in a URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    /// Host name, IPv4 literal, or IPv6 literal without brackets.
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/` (just `/` when the URL has none).
    pub path: String,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, String> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
            if cfg!(not(feature = "tls")) {
                return Err(
                    "an http:// URL (this build has no TLS: built without the `tls` feature)"
                        .into(),
                );
            }
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err("an http:// or https:// URL".into());
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err("a URL without user:password@ (credentials go in their own keys)".into());
        }
        if path.contains('#') || path.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Err("a URL without spaces, control characters or #fragment".into());
        }
        let (host, port) = if let Some(r) = authority.strip_prefix('[') {
            let (h, after) = r.split_once(']').ok_or("a URL with a valid [IPv6] host")?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b));
        if !host_ok {
            return Err("a URL with a valid host name".into());
        }
        let port = match port {
            None => {
                if tls {
                    443
                } else {
                    80
                }
            }
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err("a URL with a valid port".into()),
            },
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        Ok(Url {
            tls,
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }

    /// The `Host` header value: the port only when it is not the scheme's default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// `scheme://host[:port]`: what logs and errors show (paths of webhook and ping URLs
    /// often carry a token).
    pub fn origin(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.host_header()
        )
    }

    /// The same URL with another path (and query).
    pub fn with_path(&self, path: String) -> Url {
        Url {
            path,
            ..self.clone()
        }
    }
}

/// A request body: a reader of exactly `len` bytes.
pub struct Payload<'a> {
    pub reader: Box<dyn Read + 'a>,
    pub len: u64,
}

impl<'a> Payload<'a> {
    pub fn bytes(b: &'a [u8]) -> Payload<'a> {
        Payload {
            reader: Box::new(b),
            len: b.len() as u64,
        }
    }

    pub fn empty() -> Payload<'static> {
        Payload {
            reader: Box::new(io::empty()),
            len: 0,
        }
    }
}

pub use crate::http::response::Reply;

/// Timeouts of one request.
#[derive(Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// Longest wait for any single read or write on the socket.
    pub io: Duration,
}

impl Timeouts {
    pub const S3: Timeouts = Timeouts {
        connect: Duration::from_secs(10),
        io: Duration::from_secs(60),
    };
    /// Google's OAuth and Drive APIs (a chunk of an upload is at most a few MiB).
    pub const GOOGLE: Timeouts = Timeouts {
        connect: Duration::from_secs(10),
        io: Duration::from_secs(60),
    };
    pub const ALERT: Timeouts = Timeouts {
        connect: Duration::from_secs(5),
        io: Duration::from_secs(10),
    };
}

/// The TLS client configuration, built once per process from the CA bundle.
#[cfg(feature = "tls")]
pub(crate) fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG.get_or_init(build_tls_config).clone()
}

#[cfg(feature = "tls")]
fn build_tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let path = match std::env::var_os("SSL_CERT_FILE") {
        Some(p) if !p.is_empty() => std::path::PathBuf::from(p),
        _ => CA_PATHS
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| {
                format!(
                    "no CA certificates found ({}): install ca-certificates or set SSL_CERT_FILE",
                    CA_PATHS.join(", ")
                )
            })?,
    };
    let pem = std::fs::read(&path)
        .map_err(|e| format!("cannot read the CA bundle {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
        // A bundle may hold a certificate webpki cannot use; skip it, keep the others.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!(
            "no usable CA certificate in {} (expected PEM)",
            path.display()
        ));
    }
    // ring's provider, without its key provider: a client that never presents a
    // certificate needs no RSA or ECDSA signing code (about 30 KB of binary).
    let ring = rustls::crypto::ring::default_provider();
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: ring.cipher_suites,
        kx_groups: ring.kx_groups,
        signature_verification_algorithms: ring.signature_verification_algorithms,
        secure_random: ring.secure_random,
        key_provider: &NoClientKeys,
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// We never load a private key (no client certificates).
#[cfg(feature = "tls")]
#[derive(Debug)]
struct NoClientKeys;

#[cfg(feature = "tls")]
impl rustls::crypto::KeyProvider for NoClientKeys {
    fn load_private_key(
        &self,
        _key: rustls_pki_types::PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        Err(rustls::Error::General("no client keys".into()))
    }
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn connect(url: &Url, t: Timeouts) -> Result<Box<dyn Stream>, String> {
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", url.host))?
        .collect();
    let mut last = None;
    let mut sock = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, t.connect) {
            Ok(s) => {
                sock = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let sock = sock.ok_or_else(|| {
        format!(
            "cannot connect to {}: {}",
            url.origin(),
            last.map_or("no address".to_string(), |e| e.to_string())
        )
    })?;
    sock.set_read_timeout(Some(t.io))
        .and_then(|_| sock.set_write_timeout(Some(t.io)))
        .map_err(|e| format!("socket setup: {e}"))?;
    let _ = sock.set_nodelay(true);
    if !url.tls {
        return Ok(Box::new(sock));
    }
    tls_stream(url, sock)
}

#[cfg(not(feature = "tls"))]
fn tls_stream(url: &Url, _sock: TcpStream) -> Result<Box<dyn Stream>, String> {
    Err(format!(
        "{}: this build has no TLS support (built without the `tls` feature)",
        url.origin()
    ))
}

#[cfg(feature = "tls")]
fn tls_stream(url: &Url, sock: TcpStream) -> Result<Box<dyn Stream>, String> {
    let name = rustls_pki_types::ServerName::try_from(url.host.clone())
        .map_err(|_| format!("{} is not a valid TLS server name", url.host))?;
    let conn = rustls::ClientConnection::new(tls_config()?, name)
        .map_err(|e| format!("TLS setup: {e}"))?;
    Ok(Box::new(rustls::StreamOwned::new(conn, sock)))
}

/// Describes an I/O error on the connection; TLS verification failures say what to do.
fn io_error(url: &Url, what: &str, e: &io::Error) -> String {
    crate::http::tls::with_cert_hint(format!("{what} {}: {e}", url.origin()), e)
}

/// Sends one request and reads the response, keeping at most `max_body` bytes of it
/// (the rest is an error: our responses are small XML or JSON documents).
pub fn request(
    method: &str,
    url: &Url,
    headers: &[(String, String)],
    body: Payload,
    max_body: usize,
    t: Timeouts,
) -> Result<Reply, String> {
    let mut stream = connect(url, t)?;
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: neopro-backup/{}\r\n",
        url.path,
        url.host_header(),
        env!("CARGO_PKG_VERSION")
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if body.len > 0 || matches!(method, "PUT" | "POST") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len));
    }
    head.push_str("\r\n");
    // A failure of the body's own reader (a file that shrank, a video whose hash is not
    // the expected one) ends the request at once: the server, still waiting for the rest
    // of the body, would answer only at its own timeout.
    let mut local = false;
    let send = |stream: &mut Box<dyn Stream>, local: &mut bool| -> io::Result<()> {
        let mut w = io::BufWriter::with_capacity(64 * 1024, stream);
        w.write_all(head.as_bytes())?;
        let mut reader = body.reader.take(body.len);
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent: u64 = 0;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    *local = true;
                    return Err(e);
                }
            };
            w.write_all(&buf[..n])?;
            sent = sent.saturating_add(n as u64);
        }
        if sent != body.len {
            *local = true;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the body ended after {sent} of {} bytes", body.len),
            ));
        }
        w.flush()
    };
    let sent = send(&mut stream, &mut local);
    if let (true, Err(e)) = (local, &sent) {
        return Err(format!("sending the body to {}: {e}", url.origin()));
    }
    // A server may answer (e.g. 403) and close before taking the whole body: read the
    // response anyway, it says more than the broken pipe.
    let resp = response::read(&mut stream, method == "HEAD", max_body);
    match (sent, resp) {
        (_, Ok(r)) => Ok(r),
        (Err(e), Err(_)) => Err(io_error(url, "sending to", &e)),
        (Ok(()), Err(e)) => Err(io_error(url, "reading the answer of", &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("https://s3.eu-west-3.amazonaws.com").map_err(|e| e.to_string());
        let u = u.unwrap_or_else(|e| panic!("{e}"));
        assert!(u.tls && u.port == 443 && u.path == "/" && u.host_header() == u.host);
        let u = Url::parse("http://10.0.0.5:8333/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((u.host.as_str(), u.port), ("10.0.0.5", 8333));
        assert_eq!(u.host_header(), "10.0.0.5:8333");
        let u = Url::parse("http://[::1]:9000/hook?x=1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((u.host.as_str(), u.path.as_str()), ("::1", "/hook?x=1"));
        assert_eq!(u.origin(), "http://[::1]:9000");
        for bad in [
            "ftp://x",
            "http://",
            "http://user:pw@host/",
            "http://host:0/",
            "http://host:99999/",
            "http://ho st/",
            "http://host/a b",
            "s3.amazonaws.com",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }
}
