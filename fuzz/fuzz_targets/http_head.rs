//! Fuzzes the strict request-head parser (src/http/head.rs, docs/format.md "HTTP").
//!
//! Beyond "no panic", every accepted head must be one that no other HTTP parser could
//! read differently: checked here by an independent line scan of the raw bytes, not by
//! asking the parser again.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../src/http/head.rs"]
#[allow(dead_code)]
mod head;

/// The lines of a raw head split the simple way (on `\n`, a trailing `\r` dropped):
/// the request line (after the empty lines a server may skip before it, RFC 9112 2.2)
/// and the header lines up to the first empty line.
fn raw_lines(bytes: &[u8]) -> (&[u8], Vec<&[u8]>) {
    let mut lines = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .skip_while(|l| l.is_empty());
    let first = lines.next().unwrap_or_default();
    (first, lines.take_while(|l| !l.is_empty()).collect())
}

fn raw_name(line: &[u8]) -> &[u8] {
    line.split(|&b| b == b':').next().unwrap_or(line)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fuzz_target!(|data: &[u8]| {
    let parsed = head::parse(data);
    // Deterministic: the same bytes give the same answer.
    assert_eq!(parsed, head::parse(data));
    let h = match parsed {
        Err(r) => {
            assert!(matches!(r.status, 400 | 411 | 431), "status {}", r.status);
            assert!(r.body.starts_with("{\"error\":\"") && r.body.ends_with("\"}"));
            return;
        }
        Ok(h) => h,
    };

    // The whole input is one complete head, ending with its blank line.
    assert!(data.ends_with(b"\r\n\r\n") || data.ends_with(b"\n\n") || data.ends_with(b"\n\r\n"));
    // So no strict prefix is a complete head (no second request hides behind it).
    let cuts: Vec<usize> = if data.len() <= 512 {
        (0..data.len()).collect()
    } else {
        vec![0, 1, data.len() / 2, data.len() - 2, data.len() - 1]
    };
    for cut in cuts {
        assert!(head::parse(&data[..cut]).is_err(), "prefix {cut} accepted");
    }

    // Request line: an upper-case method, an origin-form path (or `*`) without query.
    assert!(!h.method.is_empty() && h.method.bytes().all(|b| b.is_ascii_uppercase()));
    assert!(h.path.starts_with('/') || h.path == "*", "{:?}", h.path);
    assert!(!h.path.contains(['?', '#']));
    let (first, lines) = raw_lines(data);
    assert!(first.starts_with(h.method.as_bytes()));
    assert!(first.ends_with(b" HTTP/1.1") || first.ends_with(b" HTTP/1.0"));

    // Headers as parsed: token names, trimmed values without CR, LF or NUL.
    assert!(h.headers.len() <= head::MAX_HEADERS);
    for (name, value) in &h.headers {
        assert!(!name.is_empty() && name.bytes().all(is_tchar), "{name:?}");
        assert!(!value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0));
        assert_eq!(value.trim_matches([' ', '\t']), value);
    }

    // The same headers seen by the naive line scan: no folded line, no space before a
    // colon, at most one Content-Length and one Host, no Transfer-Encoding.
    assert_eq!(lines.len(), h.headers.len());
    let mut cl_lines = Vec::new();
    let mut hosts = 0;
    for line in &lines {
        assert!(!matches!(line[0], b' ' | b'\t'), "obs-fold accepted");
        let name = raw_name(line);
        assert!(
            name.iter().all(|&b| is_tchar(b)),
            "bad name accepted: {name:?}"
        );
        if name.eq_ignore_ascii_case(b"content-length") {
            cl_lines.push(*line);
        }
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        }
        assert!(!name.eq_ignore_ascii_case(b"transfer-encoding"));
    }
    assert!(cl_lines.len() <= 1, "two Content-Length accepted");
    assert!(hosts <= 1, "two Host accepted");
    match cl_lines.first() {
        None => assert_eq!(h.content_length, 0),
        Some(line) => {
            // The value itself: only ASCII digits between the optional blanks, the same
            // number.
            let value = &line[raw_name(line).len() + 1..];
            let blank = |b: &u8| matches!(b, b' ' | b'\t');
            let start = value.iter().position(|b| !blank(b)).unwrap_or(value.len());
            let end = value
                .iter()
                .rposition(|b| !blank(b))
                .map_or(start, |e| e + 1);
            let digits = &value[start..end];
            assert!(
                !digits.is_empty() && digits.iter().all(u8::is_ascii_digit),
                "{value:?}"
            );
            let mut n: u64 = 0;
            for d in digits {
                n = n
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d - b'0')))
                    .expect("a Content-Length beyond u64 was accepted");
            }
            assert_eq!(h.content_length, n);
        }
    }
});
