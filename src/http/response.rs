//! Reading one HTTP/1.1 answer (RFC 9112) for the client (client.rs): a pure function
//! over a reader, so that it is a fuzz target (fuzz/fuzz_targets/http_response.rs).
//!
//! Every answer comes from a peer we do not control (an S3 endpoint, PING_URL,
//! ALERT_WEBHOOK), so everything it announces is bounded before it is believed: a head
//! of at most 64 KiB and 64 headers, a chunk-size line of at most 4 KiB (extensions
//! included), a chunk size that fits 64 bits, a body of at most the caller's cap
//! (checked before a byte of it is stored: a body over the cap is an error that says
//! so), a trailer section of at most 16 KiB, and at most 8 interim (1xx) answers. A
//! body that ends before its announced length or its last chunk is an error, never a
//! shorter body. With both `Transfer-Encoding: chunked` and `Content-Length`, chunked
//! frames the body (RFC 9112 6.3: it overrides; we send one request per connection,
//! so nothing can hide behind the answer); a transfer coding other than `chunked`
//! (which we never ask for) and conflicting `Content-Length` values are errors.

use std::io::{self, BufRead, BufReader, Read};

/// Longest answer head (status line and headers).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most headers an answer may carry.
pub const MAX_HEADERS: usize = 64;
/// Longest chunk-size line, its extensions and CRLF included.
pub const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Longest trailer section (after the last chunk), its final empty line included.
pub const MAX_TRAILER: usize = 16 * 1024;
/// Most interim (1xx) answers skipped before the final one.
pub const MAX_INTERIM: usize = 8;

/// A response whose body was read (up to a limit).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn truncated(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, what.to_string())
}

/// At most 40 bytes of a line, for an error message.
fn excerpt(line: &[u8]) -> String {
    let cut = &line[..line.len().min(40)];
    let s = String::from_utf8_lossy(cut);
    let s = s.trim_end_matches(['\r', '\n']);
    if line.len() > 40 {
        format!("{s:?}…")
    } else {
        format!("{s:?}")
    }
}

/// Appends one line (through its LF) of at most `max` bytes to `buf`.
fn read_line(r: &mut impl BufRead, max: usize, buf: &mut Vec<u8>, what: &str) -> io::Result<()> {
    let n = r.by_ref().take(max as u64).read_until(b'\n', buf)?;
    if n > 0 && buf.ends_with(b"\n") {
        Ok(())
    } else if n == max {
        Err(invalid(format!("{what} over {max} bytes")))
    } else {
        Err(truncated(&format!("the answer ended in its {what}")))
    }
}

fn is_empty_line(line: &[u8]) -> bool {
    line == b"\r\n" || line == b"\n"
}

/// One head, through its empty line, into `raw`.
fn read_head(r: &mut impl BufRead, raw: &mut Vec<u8>) -> io::Result<()> {
    raw.clear();
    loop {
        let before = raw.len();
        let room = MAX_HEAD - before;
        if room == 0 {
            return Err(invalid(format!("HTTP answer head over {MAX_HEAD} bytes")));
        }
        let n = r.by_ref().take(room as u64).read_until(b'\n', raw)?;
        if n == 0 && before == 0 {
            return Err(truncated("connection closed before an HTTP answer"));
        }
        if n == 0 || !raw.ends_with(b"\n") {
            if raw.len() >= MAX_HEAD {
                return Err(invalid(format!("HTTP answer head over {MAX_HEAD} bytes")));
            }
            return Err(truncated(
                "connection closed before a complete HTTP answer head",
            ));
        }
        if before > 0 && is_empty_line(&raw[before..]) {
            return Ok(());
        }
    }
}

/// The status and headers of a complete head.
fn parse_head(raw: &[u8]) -> io::Result<(u16, Vec<(String, String)>)> {
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut hs);
    match parsed.parse(raw) {
        Ok(httparse::Status::Complete(n)) if n == raw.len() => {}
        Ok(_) => return Err(invalid("malformed HTTP answer head".into())),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(invalid(format!(
                "HTTP answer with more than {MAX_HEADERS} headers"
            )));
        }
        Err(e) => return Err(invalid(format!("malformed HTTP answer: {e}"))),
    }
    // Three digits (httparse); below 100 is no status class at all (RFC 9110, 15).
    let status = parsed.code.unwrap_or(0);
    if status < 100 {
        return Err(invalid(format!(
            "malformed HTTP answer: status {status:03}"
        )));
    }
    let headers = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    Ok((status, headers))
}

fn values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .collect()
}

/// Whether `Transfer-Encoding` says chunked (`None`: no such header).
fn chunked(headers: &[(String, String)]) -> io::Result<bool> {
    let codings = values(headers, "transfer-encoding");
    match codings.as_slice() {
        [] => Ok(false),
        [one] if one.eq_ignore_ascii_case("chunked") => Ok(true),
        _ => Err(invalid(format!(
            "unsupported Transfer-Encoding {:?} (only chunked is understood)",
            codings.join(", ")
        ))),
    }
}

/// The `Content-Length`, if any: plain digits, the same value wherever it is repeated.
fn content_length(headers: &[(String, String)]) -> io::Result<Option<u64>> {
    let mut len = None;
    for v in values(headers, "content-length") {
        let n = (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| invalid(format!("bad Content-Length {v:?}")))?;
        if len.is_some_and(|l| l != n) {
            return Err(invalid("conflicting Content-Length values".into()));
        }
        len = Some(n);
    }
    Ok(len)
}

fn too_big(max_body: usize, what: String) -> io::Error {
    invalid(format!("HTTP answer body over {max_body} bytes ({what})"))
}

/// The size of a chunk-size line (`1*HEXDIG [ chunk-ext ] CRLF`, RFC 9112 7.1).
fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let text = line.strip_suffix(b"\n").unwrap_or(line);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    let bad = || invalid(format!("bad chunk size line {}", excerpt(line)));
    let digits = text.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(bad());
    }
    let mut size: u64 = 0;
    for &b in &text[..digits] {
        let d = char::from(b).to_digit(16).map(u64::from).ok_or_else(bad)?;
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(d))
            .ok_or_else(|| invalid(format!("chunk size {} over 64 bits", excerpt(line))))?;
    }
    // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ): ignored, but it
    // must start with `;` and hold no control byte (a CR inside a line, a NUL).
    let ext = &text[digits..];
    let after_bws = ext.iter().position(|&b| b != b' ' && b != b'\t');
    let ext_ok = after_bws.is_none_or(|i| ext[i] == b';')
        && !ext.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f);
    if !ext_ok {
        return Err(bad());
    }
    Ok(size)
}

/// The CRLF (or bare LF) after a chunk's data.
fn chunk_end(r: &mut impl BufRead) -> io::Result<()> {
    let mut b = [0u8; 1];
    let eof = |e: io::Error| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            truncated("the answer ended after a chunk's data")
        } else {
            e
        }
    };
    r.read_exact(&mut b).map_err(eof)?;
    if b[0] == b'\r' {
        r.read_exact(&mut b).map_err(eof)?;
    }
    if b[0] == b'\n' {
        Ok(())
    } else {
        Err(invalid("chunk data not followed by CRLF".into()))
    }
}

/// A chunked body (RFC 9112 7.1), at most `max_body` bytes, and its trailer section
/// (read, bounded and dropped).
fn read_chunked(r: &mut impl BufRead, max_body: usize) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        read_line(r, MAX_CHUNK_LINE, &mut line, "chunk size line")?;
        let size = chunk_size(&line)?;
        if size == 0 {
            break;
        }
        // body.len() <= max_body here: the room left is exact.
        let room = max_body.saturating_sub(body.len());
        if size > room as u64 {
            return Err(too_big(
                max_body,
                format!("a chunk of {size} bytes after {}", body.len()),
            ));
        }
        let got = r.by_ref().take(size).read_to_end(&mut body)?;
        if (got as u64) < size {
            return Err(truncated("the answer ended inside a chunk"));
        }
        chunk_end(r)?;
    }
    let mut used = 0;
    loop {
        let room = MAX_TRAILER - used;
        if room == 0 {
            return Err(invalid(format!(
                "HTTP answer trailer section over {MAX_TRAILER} bytes"
            )));
        }
        line.clear();
        read_line(r, room, &mut line, "trailer section")?;
        used += line.len();
        if is_empty_line(&line) {
            return Ok(body);
        }
    }
}

/// Reads one answer (skipping interim 1xx ones), keeping at most `max_body` bytes of
/// its body: more is an error, as is a body cut short. `head_only`: the answer to HEAD.
pub fn read(stream: &mut dyn Read, head_only: bool, max_body: usize) -> io::Result<Reply> {
    let mut r = BufReader::with_capacity(16 * 1024, stream);
    let mut raw = Vec::new();
    let mut interim = 0;
    let (status, headers) = loop {
        read_head(&mut r, &mut raw)?;
        let (status, headers) = parse_head(&raw)?;
        // 101 would switch protocols (we never ask to): it ends the exchange.
        if (100..200).contains(&status) && status != 101 {
            interim += 1;
            if interim > MAX_INTERIM {
                return Err(invalid(format!(
                    "more than {MAX_INTERIM} interim (1xx) HTTP answers"
                )));
            }
            continue;
        }
        break (status, headers);
    };
    let no_body = head_only || status == 204 || status == 304 || (100..200).contains(&status);
    let body = if no_body {
        Vec::new()
    } else if chunked(&headers)? {
        read_chunked(&mut r, max_body)?
    } else if let Some(len) = content_length(&headers)? {
        if len > max_body as u64 {
            return Err(too_big(max_body, format!("Content-Length: {len}")));
        }
        // Sized once (len <= max_body): no doubling copies of a large body.
        let mut body = Vec::with_capacity(len as usize);
        let got = r.take(len).read_to_end(&mut body)?;
        if (got as u64) < len {
            return Err(truncated(&format!(
                "the answer ended after {got} of its {len} bytes"
            )));
        }
        body
    } else {
        // Framed by the end of the connection.
        let mut body = Vec::new();
        r.take(max_body as u64 + 1).read_to_end(&mut body)?;
        if body.len() > max_body {
            return Err(too_big(max_body, "until the connection closed".into()));
        }
        body
    };
    Ok(Reply {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8], max: usize) -> Result<Reply, String> {
        read(&mut &raw[..], false, max).map_err(|e| e.to_string())
    }

    fn body(raw: &[u8], max: usize) -> Vec<u8> {
        parse(raw, max).unwrap_or_else(|e| panic!("{e}")).body
    }

    fn err(raw: &[u8], max: usize) -> String {
        match parse(raw, max) {
            Ok(r) => panic!("accepted: {r:?}"),
            Err(e) => e,
        }
    }

    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

    fn chunked(rest: &[u8]) -> Vec<u8> {
        [CHUNKED, rest].concat()
    }

    #[test]
    fn responses() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello";
        let r = parse(raw, 100).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (r.status, r.body.as_slice(), r.header("x-a")),
            (200, &b"hello"[..], Some("b"))
        );
        let raw = chunked(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n");
        assert_eq!(body(&raw, 100), b"abcde");
        assert_eq!(body(b"HTTP/1.0 403 Forbidden\r\n\r\nno", 100), b"no");
        let e = err(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n", 100);
        assert!(e.contains("over 100 bytes") && e.contains("500"), "{e}");
        // HEAD, 204 and 304 have no body whatever they announce.
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n";
        let r = read(&mut &raw[..], true, 100).map_err(|e| e.to_string());
        assert_eq!(r.map(|r| r.body.len()), Ok(0));
        assert_eq!(
            body(b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n", 1),
            b""
        );
        // Interim answers are skipped, at most 8 of them.
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(body(raw, 100), b"ok");
        let many = [
            &b"HTTP/1.1 100 Continue\r\n\r\n".repeat(9)[..],
            b"HTTP/1.1 200 OK\r\n\r\n",
        ]
        .concat();
        assert!(err(&many, 100).contains("interim"));
    }

    /// The issue 21 input: a chunk size that overflows the body length.
    #[test]
    fn chunk_sizes_never_overflow() {
        let e = err(&chunked(b"1\r\nA\r\nffffffffffffffff\r\n"), 16 << 20);
        assert!(e.contains("over 16777216 bytes"), "{e}");
        let e = err(&chunked(b"1\r\nA\r\nffffffffffffffff"), 16 << 20);
        assert!(e.contains("ended"), "{e}");
        let e = err(&chunked(b"1\r\nA\r\n10000000000000000\r\n"), 16 << 20);
        assert!(e.contains("over 64 bits"), "{e}");
        let e = err(&chunked(b"7fffffffffffffff\r\n"), usize::MAX);
        assert!(e.contains("ended inside a chunk"), "{e}");
        // Leading zeros are still one small size.
        assert_eq!(
            body(&chunked(b"00000000000000000000003\r\nabc\r\n0\r\n\r\n"), 3),
            b"abc"
        );
        // Exactly the cap is fine, one byte more is not.
        assert_eq!(body(&chunked(b"2\r\nab\r\n1\r\nc\r\n0\r\n\r\n"), 3), b"abc");
        let e = err(&chunked(b"2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n"), 3);
        assert!(
            e.contains("over 3 bytes") && e.contains("a chunk of 2 bytes after 2"),
            "{e}"
        );
    }

    #[test]
    fn chunk_lines_extensions_and_trailers_are_bounded() {
        let long = [
            b"1;",
            &b"x".repeat(MAX_CHUNK_LINE)[..],
            b"\r\na\r\n0\r\n\r\n",
        ]
        .concat();
        assert!(err(&chunked(&long), 100).contains("chunk size line over"));
        assert_eq!(
            body(&chunked(b"1 ; a=b ;c=\"d e\"\r\nz\r\n0;x\r\n\r\n"), 9),
            b"z"
        );
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"-1\r\n",
            b"+1\r\nz\r\n",
            b"1x\r\nz\r\n",
            b"1;\0\r\nz\r\n",
            b"1\rz\r\n",
        ] {
            assert!(err(&chunked(bad), 9).contains("chunk size line"), "{bad:?}");
        }
        // Data not followed by CRLF.
        assert!(err(&chunked(b"1\r\nab\r\n0\r\n\r\n"), 9).contains("not followed by CRLF"));
        // Trailers are read and dropped; their section is bounded.
        let raw = chunked(b"1\r\nz\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\n");
        let r = parse(&raw, 9).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.body.as_slice(), r.header("x-sum")), (&b"z"[..], None));
        let big = [
            &b"0\r\n"[..],
            &b"X-T: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(600)[..],
            b"\r\n",
        ]
        .concat();
        assert!(err(&chunked(&big), 9).contains("trailer section over"));
    }

    #[test]
    fn truncated_bodies_are_errors() {
        let whole = chunked(b"3\r\nabc\r\n0\r\nX: y\r\n\r\n");
        for cut in 0..whole.len() {
            assert!(parse(&whole[..cut], 100).is_err(), "cut at {cut} accepted");
        }
        assert!(parse(&whole, 100).is_ok());
        let e = err(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", 100);
        assert!(e.contains("after 3 of its 5 bytes"), "{e}");
        assert!(err(b"HTTP/1.1 200 OK\r\nContent-Len", 100).contains("head"));
        assert!(err(b"", 100).contains("before an HTTP answer"));
    }

    #[test]
    fn framing_headers() {
        // Chunked overrides Content-Length (RFC 9112 6.3), in either order.
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        assert_eq!(body(raw, 100), b"ok");
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\nContent-Length: 1\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        assert_eq!(body(raw, 100), b"ok");
        for te in ["gzip, chunked", "chunked, chunked", "identity", ""] {
            let raw = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n");
            assert!(
                err(raw.as_bytes(), 100).contains("Transfer-Encoding"),
                "{te}"
            );
        }
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(body(raw, 100), b"ok");
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok";
        assert_eq!(body(raw, 100), b"ok");
        for cl in [
            "2\r\nContent-Length: 3",
            "2, 3",
            "+2",
            "-1",
            "0x2",
            "",
            "1 2",
            "99999999999999999999",
        ] {
            let raw = format!("HTTP/1.1 200 OK\r\nContent-Length: {cl}\r\n\r\nok");
            assert!(err(raw.as_bytes(), 100).contains("Content-Length"), "{cl}");
        }
    }

    #[test]
    fn heads_are_bounded() {
        let many: String = (0..65).map(|i| format!("X-{i}: v\r\n")).collect();
        let raw = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert!(err(raw.as_bytes(), 100).contains("more than 64 headers"));
        let raw = [
            &b"HTTP/1.1 200 OK\r\nX: "[..],
            &b"a".repeat(MAX_HEAD)[..],
            b"\r\n\r\n",
        ]
        .concat();
        assert!(err(&raw, 100).contains("head over"));
        assert!(err(b"garbage\r\n\r\n", 100).contains("malformed"));
        // Found by the fuzz target: httparse takes any three digits.
        assert!(err(b"HTTP/1.0 000 OK\r\n\r\n", 100).contains("status 000"));
        assert!(err(b"HTTP/1.1 099 X\r\n\r\n", 100).contains("status 099"));
    }
}
