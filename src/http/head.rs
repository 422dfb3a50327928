//! Parsing one request head: a pure function from the bytes up to the blank line to a
//! request, or to the error status that closes the connection (docs/format.md, "HTTP").
//!
//! Strict on purpose, since the daemon may sit behind a proxy (nginx, the admin panel):
//! anything two parsers could read differently is refused — two `Content-Length` or
//! `Host` headers, a folded (obs-fold) header line, a space before the colon, control
//! bytes in a header, a `Content-Length` that is not plain digits, any version but
//! HTTP/1.0 and HTTP/1.1, `Transfer-Encoding` (we never take chunked bodies). The
//! grammar itself is httparse's (RFC 9112 tokens, no obs-fold for requests).

/// Most headers a request may carry.
pub const MAX_HEADERS: usize = 64;

/// A parsed request head.
#[derive(Debug, PartialEq)]
pub struct Head {
    pub method: String,
    /// The path, still percent-encoded, without the query string.
    pub path: String,
    /// The query string (after `?`, before any `#`), still percent-encoded; empty when
    /// there is none.
    pub query: String,
    pub headers: Vec<(String, String)>,
    /// The body length announced by `Content-Length` (0 without one).
    pub content_length: u64,
    /// The client asked to close the connection after this request (or spoke HTTP/1.0
    /// without `Connection: keep-alive`).
    pub wants_close: bool,
}

/// A head that is refused: the status and the JSON body to send before closing.
#[derive(Debug, PartialEq)]
pub struct Refused {
    pub status: u16,
    pub body: &'static str,
}

const INVALID: Refused = Refused {
    status: 400,
    body: "{\"error\":\"Requête invalide\"}",
};

fn refuse(status: u16, body: &'static str) -> Refused {
    Refused { status, body }
}

/// Parses a complete head (request line, headers and the blank line that ends them).
pub fn parse(bytes: &[u8]) -> Result<Head, Refused> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(n)) if n == bytes.len() => {}
        Ok(_) => return Err(INVALID),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(refuse(431, "{\"error\":\"En-têtes trop nombreux\"}"));
        }
        Err(_) => return Err(INVALID),
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(INVALID);
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(INVALID);
    }
    if !(target.starts_with('/') || target == "*") {
        return Err(INVALID);
    }
    let mut headers = Vec::with_capacity(req.headers.len());
    let mut content_length: Option<u64> = None;
    let mut hosts = 0;
    for h in req.headers.iter() {
        // httparse already refused control bytes other than tab; obs-text (bytes >= 0x80)
        // is not UTF-8 we can route on.
        let Ok(value) = std::str::from_utf8(h.value) else {
            return Err(INVALID);
        };
        let value = value.trim_matches([' ', '\t']);
        if h.name.eq_ignore_ascii_case("Content-Length") {
            if content_length.is_some() || value.is_empty() || value.len() > 19 {
                return Err(INVALID);
            }
            if !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(refuse(400, "{\"error\":\"Content-Length invalide\"}"));
            }
            content_length = value.parse().ok();
            if content_length.is_none() {
                return Err(INVALID);
            }
        } else if h.name.eq_ignore_ascii_case("Host") {
            hosts += 1;
            if hosts > 1 {
                return Err(INVALID);
            }
        } else if h.name.eq_ignore_ascii_case("Transfer-Encoding") {
            return Err(refuse(411, "{\"error\":\"Content-Length requis\"}"));
        }
        headers.push((h.name.to_string(), value.to_string()));
    }
    let connection = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Connection"))
        .map(|(_, v)| v.to_ascii_lowercase());
    let wants_close = match connection {
        Some(c) if c.contains("close") => true,
        Some(c) if c.contains("keep-alive") => false,
        _ => version == 0,
    };
    let without_fragment = target.split('#').next().unwrap_or_default();
    let (path, query) = without_fragment
        .split_once('?')
        .unwrap_or((without_fragment, ""));
    Ok(Head {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        content_length: content_length.unwrap_or(0),
        wants_close,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(head: &str) -> u16 {
        match parse(head.as_bytes()) {
            Ok(_) => 200,
            Err(r) => r.status,
        }
    }

    #[test]
    fn a_plain_request_is_read() {
        let h = parse(b"POST /api/backups/create?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8081\r\nContent-Length: 12\r\nX-A:  v \r\n\r\n");
        let Ok(h) = h else { panic!("{h:?}") };
        assert_eq!(h.method, "POST");
        assert_eq!(h.path, "/api/backups/create");
        assert_eq!(h.query, "x=1");
        assert_eq!(h.content_length, 12);
        assert!(!h.wants_close);
        assert_eq!(h.headers[2], ("X-A".to_string(), "v".to_string()));
        let h = parse(b"GET / HTTP/1.0\r\n\r\n");
        assert!(h.is_ok_and(|h| h.wants_close && h.content_length == 0 && h.query.is_empty()));
        let h = parse(b"GET /api/gdrive?quota=1#x?y HTTP/1.1\r\n\r\n");
        assert!(h.is_ok_and(|h| h.path == "/api/gdrive" && h.query == "quota=1"));
        let h = parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(h.is_ok_and(|h| !h.wants_close));
        let h = parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(h.is_ok_and(|h| h.wants_close));
    }

    #[test]
    fn edges_of_the_grammar() {
        // The asterisk form (OPTIONS *) is a target; the absolute form is not.
        let h = parse(b"OPTIONS * HTTP/1.1\r\n\r\n");
        assert!(h.is_ok_and(|h| h.path == "*" && h.method == "OPTIONS"));
        assert_eq!(status("OPTIONS http://a/ HTTP/1.1\r\n\r\n"), 400);
        // 19 digits at most: the longest length that always fits in a u64.
        let h = parse(b"POST / HTTP/1.1\r\nContent-Length: 9999999999999999999\r\n\r\n");
        assert!(h.is_ok_and(|h| h.content_length == 9_999_999_999_999_999_999));
        let h = parse(b"POST / HTTP/1.1\r\nContent-Length: 0000000000000000007\r\n\r\n");
        assert!(h.is_ok_and(|h| h.content_length == 7));
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 10000000000000000000\r\n\r\n"),
            Err(INVALID)
        );
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 5x\r\n\r\n"),
            Err(refuse(400, "{\"error\":\"Content-Length invalide\"}"))
        );
        // One Host is fine; the query and the fragment are not part of the path.
        let h = parse(b"GET /a/b?c=d#e HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(h.is_ok_and(|h| h.path == "/a/b" && h.headers.len() == 1));
        let h = parse(b"GET /a#b?c HTTP/1.1\r\n\r\n");
        assert!(h.is_ok_and(|h| h.path == "/a"));
        // Connection: anything else than close or keep-alive keeps the version's default.
        let h = parse(b"GET / HTTP/1.0\r\nConnection: Upgrade\r\n\r\n");
        assert!(h.is_ok_and(|h| h.wants_close));
        let h = parse(b"GET / HTTP/1.1\r\nConnection: Upgrade\r\n\r\n");
        assert!(h.is_ok_and(|h| !h.wants_close));
        let h = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive, Upgrade\r\n\r\n");
        assert!(h.is_ok_and(|h| !h.wants_close));
        let h = parse(b"GET / HTTP/1.1\r\nConnection: CLOSE\r\n\r\n");
        assert!(h.is_ok_and(|h| h.wants_close));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS));
        assert!(parse(many.as_bytes()).is_ok_and(|h| h.headers.len() == MAX_HEADERS));
        assert_eq!(
            parse(format!("{many}x").as_bytes()),
            Err(INVALID),
            "bytes after the head"
        );
    }

    #[test]
    fn smuggling_primitives_are_refused() {
        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n",
            "GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nX-A: a\r\n\tb\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
            "GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n",
            "GET / HTTP/1.1\r\nX-A: a\x01b\r\n\r\n",
            "GET / HTTP/1.1\r\nX-A: a\x7fb\r\n\r\n",
            "GET / HTTP/1.9garbage\r\n\r\n",
            "GET / HTTP/1.9\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET / http/1.1\r\n\r\n",
            "GET /  HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1 extra\r\n\r\n",
            "get / HTTP/1.1\r\n\r\n",
            "GET http://evil/ HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\n: x\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\nextra",
            "GET / HTTP/1.1\r\n",
        ] {
            assert_eq!(status(bad), 400, "{bad:?}");
        }
        assert_eq!(
            status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            411
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            411
        );
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(status(&many), 431);
    }

    #[test]
    fn utf8_values_and_tabs_are_kept() {
        let h = parse("GET / HTTP/1.1\r\nX-Name: \tÉté\t\r\n\r\n".as_bytes());
        assert!(h.is_ok_and(|h| h.headers[0].1 == "Été"));
        assert_eq!(status("GET / HTTP/1.1\r\nX: \u{ff}\r\n\r\n"), 200);
        assert_eq!(parse(b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n"), Err(INVALID));
    }
}
