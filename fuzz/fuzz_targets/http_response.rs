//! Fuzzes the client's answer reader (src/http/response.rs, issue 21): what an S3
//! endpoint, PING_URL or ALERT_WEBHOOK sends back, read by `response::read`.
//!
//! The first byte of an input steers the run (a small body cap, HEAD or not, how the
//! round trip frames its body); the rest is used twice:
//! 1. as a raw answer: never a panic; a body never over the cap (the real 16 MiB one
//!    and a small one), never bytes the input did not hold, none for HEAD;
//! 2. as the body of well-formed answers built here (chunked with sizes, extensions,
//!    trailers and a `Content-Length` that chunked overrides; or `Content-Length`):
//!    read back exactly; one byte over the cap is an error; every cut short is an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../src/http/response.rs"]
#[allow(dead_code)]
mod response;

/// What S3 answers are bounded to (src/offsite/s3.rs MAX_ANSWER).
const CAP: usize = 16 * 1024 * 1024;

fn read(bytes: &[u8], head_only: bool, cap: usize) -> std::io::Result<response::Reply> {
    response::read(&mut &bytes[..], head_only, cap)
}

/// A small deterministic generator (xorshift), seeded by the input.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `body` as a well-formed chunked answer.
fn chunked(body: &[u8], ctl: u8, g: &mut Gen) -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\n".to_vec();
    if ctl & 4 != 0 {
        // A Content-Length that chunked overrides (RFC 9112 6.3).
        out.extend_from_slice(format!("Content-Length: {}\r\n", g.next() % 100).as_bytes());
    }
    out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
    let mut at = 0;
    while at < body.len() {
        let n = (1 + g.next() % 300).min((body.len() - at) as u64) as usize;
        let size = match g.next() % 3 {
            0 => format!("{n:x}"),
            1 => format!("{n:X}"),
            _ => format!("000{n:x}"),
        };
        out.extend_from_slice(size.as_bytes());
        if ctl & 8 != 0 {
            out.extend_from_slice(b" ; ext=\"v;1\";flag");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body[at..at + n]);
        out.extend_from_slice(b"\r\n");
        at += n;
    }
    out.extend_from_slice(b"0\r\n");
    if ctl & 16 != 0 {
        out.extend_from_slice(b"X-Checksum: abc\r\nX-Other: 1\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn with_length(body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    // 1. The raw answer.
    let head_only = ctl & 1 != 0;
    let small = usize::from(ctl >> 1) * 16;
    for cap in [CAP, small] {
        let r = read(rest, head_only, cap);
        if let Ok(r) = &r {
            assert!(
                r.body.len() <= cap,
                "{} bytes over a cap of {cap}",
                r.body.len()
            );
            assert!(r.body.len() <= rest.len());
            assert!(!head_only || r.body.is_empty());
            assert!((100..=999).contains(&r.status), "status {}", r.status);
        }
        // Deterministic.
        let again = read(rest, head_only, cap);
        assert_eq!(
            r.as_ref()
                .map(|r| (r.status, &r.body))
                .map_err(|e| e.to_string()),
            again
                .as_ref()
                .map(|r| (r.status, &r.body))
                .map_err(|e| e.to_string())
        );
    }

    // 2. Round trips of `rest` as a body.
    let mut g = Gen(0x9e37_79b9_7f4a_7c15 ^ (rest.len() as u64) ^ (u64::from(ctl) << 32));
    let answer = if ctl & 2 != 0 {
        chunked(rest, ctl, &mut g)
    } else {
        with_length(rest)
    };
    match read(&answer, false, rest.len()) {
        Ok(r) => assert_eq!(r.body, rest, "round trip"),
        Err(e) => panic!("a well-formed answer refused: {e}"),
    }
    if let Some(under) = rest.len().checked_sub(1) {
        let e = read(&answer, false, under).err();
        assert!(
            e.as_ref().is_some_and(|e| e.to_string().contains("over")),
            "one byte over the cap: {e:?}"
        );
    }
    // Cut short anywhere: an error, never a shorter body. Every cut near the end, a
    // sample of the others.
    let len = answer.len();
    let tail = len.saturating_sub(8)..len;
    let sample = (0..24).map(|_| (g.next() % len as u64) as usize);
    for cut in tail.chain(sample) {
        assert!(
            read(&answer[..cut], false, CAP).is_err(),
            "cut at {cut} of {len} accepted"
        );
    }
});
