//! `GET /api/backups/download/:name` (docs/format.md, API): the archive streamed from
//! disk, with what lets a download over the club's Wi-Fi resume — `Accept-Ranges`, one
//! byte range (`Range: bytes=a-b`, `a-`, `-n`: 206 with `Content-Range`, or 416),
//! `If-Range`, `ETag` and `Last-Modified`. A request for several ranges gets the whole
//! file (200), which RFC 9110 allows.

use std::io::{Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;

use crate::clock;
use crate::http::server::{Body, Request, Response};
use crate::serve::reply::open_archive;
use crate::serve::state::Shared;

/// What a `Range` header asks of a file of a given size.
#[derive(Debug, PartialEq)]
pub enum Range {
    /// No range, one we do not serve (several, another unit) or a malformed one.
    Whole,
    /// Bytes `first..=last`.
    Part(u64, u64),
    /// A range that starts past the end (416).
    Unsatisfiable,
}

/// Reads a `Range` header (RFC 9110, 14.2) for a file of `size` bytes.
pub fn parse_range(value: &str, size: u64) -> Range {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Range::Whole;
    };
    let spec = spec.trim();
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Range::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match (a.is_empty(), b.is_empty()) {
        // `-n`: the last n bytes.
        (true, false) => match num(b) {
            None => Range::Whole,
            Some(0) => Range::Unsatisfiable,
            Some(_) if size == 0 => Range::Unsatisfiable,
            Some(n) => Range::Part(size.saturating_sub(n), size - 1),
        },
        // `a-` and `a-b`.
        (false, _) => {
            let Some(first) = num(a) else {
                return Range::Whole;
            };
            let last = if b.is_empty() {
                u64::MAX
            } else {
                match num(b) {
                    Some(l) if l >= first => l,
                    _ => return Range::Whole,
                }
            };
            if first >= size {
                Range::Unsatisfiable
            } else {
                Range::Part(first, last.min(size - 1))
            }
        }
        (true, true) => Range::Whole,
    }
}

/// A strong validator that changes whenever the file is replaced or rewritten: inode,
/// size and modification time (ns).
pub fn etag(meta: &std::fs::Metadata) -> String {
    let mtime_ns = meta.mtime() as i128 * 1_000_000_000 + i128::from(meta.mtime_nsec());
    format!("\"{:x}-{:x}-{:x}\"", meta.ino(), meta.size(), mtime_ns)
}

/// An HTTP date (IMF-fixdate, RFC 9110, 5.6.7): `Wed, 18 Dec 2024 03:00:00 GMT`.
pub fn http_date(unix: i64) -> String {
    format!("{} GMT", clock::day_and_time_utc(unix))
}

pub fn download(shared: &Shared, req: &Request, name: &str) -> Response {
    let (mut file, meta) = match open_archive(shared, name) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let size = meta.len();
    let tag = etag(&meta);
    let modified = http_date(meta.mtime());
    // If-Range: the range only if the file is still the one the client has part of.
    let same_file = req
        .header("If-Range")
        .is_none_or(|v| v == tag || v == modified);
    let range = match req.header("Range") {
        Some(v) if same_file => parse_range(v, size),
        _ => Range::Whole,
    };
    let mut headers = vec![
        ("Content-Type".to_string(), "application/gzip".to_string()),
        (
            "Content-Disposition".to_string(),
            format!("attachment; filename=\"{name}\""),
        ),
        ("Accept-Ranges".to_string(), "bytes".to_string()),
        ("ETag".to_string(), tag),
        ("Last-Modified".to_string(), modified),
    ];
    match range {
        Range::Whole => Response {
            status: 200,
            headers,
            body: Body::File(file, size),
        },
        Range::Part(first, last) => {
            if file.seek(SeekFrom::Start(first)).is_err() {
                return crate::serve::reply::error(500, "Lecture du backup impossible");
            }
            headers.push((
                "Content-Range".to_string(),
                format!("bytes {first}-{last}/{size}"),
            ));
            Response {
                status: 206,
                headers,
                body: Body::File(file, last - first + 1),
            }
        }
        Range::Unsatisfiable => {
            let mut r = crate::serve::reply::error(416, "Plage demandée hors du fichier");
            r.headers
                .push(("Content-Range".to_string(), format!("bytes */{size}")));
            r.headers.extend(headers.into_iter().skip(2));
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use Range::*;
        for (v, want) in [
            ("bytes=0-99", Part(0, 99)),
            ("bytes=100-", Part(100, 999)),
            ("bytes=-100", Part(900, 999)),
            ("bytes=-5000", Part(0, 999)),
            ("bytes=990-5000", Part(990, 999)),
            ("bytes=999-999", Part(999, 999)),
            (" bytes=5-9 ", Part(5, 9)),
            ("bytes=1000-", Unsatisfiable),
            ("bytes=1000-1001", Unsatisfiable),
            ("bytes=-0", Unsatisfiable),
            ("bytes=0-9,20-29", Whole),
            ("bytes=9-5", Whole),
            ("bytes=a-b", Whole),
            ("bytes=+1-2", Whole),
            ("bytes=-", Whole),
            ("bytes=5", Whole),
            ("items=0-9", Whole),
            ("", Whole),
        ] {
            assert_eq!(parse_range(v, 1000), want, "{v:?}");
        }
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-1", 0), Unsatisfiable);
        // Numbers: 19 digits at most, digits only.
        assert_eq!(
            parse_range("bytes=1234567890123456789-", 1000),
            Unsatisfiable
        );
        assert_eq!(parse_range("bytes=12345678901234567890-", 1000), Whole);
        assert_eq!(parse_range("bytes=0-12345678901234567890", 1000), Whole);
        assert_eq!(
            parse_range("bytes=0-1234567890123456789", 1000),
            Part(0, 999)
        );
        assert_eq!(parse_range("bytes=-12345678901234567890", 1000), Whole);
        assert_eq!(parse_range("bytes=5-x", 1000), Whole);
        assert_eq!(parse_range("bytes=5-5", 1000), Part(5, 5));
    }

    #[test]
    fn the_etag_is_inode_size_and_mtime_to_the_nanosecond() {
        let p = std::env::temp_dir().join(format!("neopro-etag-{}", std::process::id()));
        std::fs::write(&p, b"12345").unwrap_or_else(|e| panic!("{e}"));
        let f = std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap_or_else(|e| panic!("{e}"));
        let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123_456_789);
        f.set_modified(t).unwrap_or_else(|e| panic!("{e}"));
        let meta = f.metadata().unwrap_or_else(|e| panic!("{e}"));
        let ns: i128 = 1_700_000_000 * 1_000_000_000 + 123_456_789;
        assert_eq!(etag(&meta), format!("\"{:x}-5-{ns:x}\"", meta.ino()));
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn http_dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_734_490_800), "Wed, 18 Dec 2024 03:00:00 GMT");
        assert_eq!(http_date(1_709_164_800), "Thu, 29 Feb 2024 00:00:00 GMT");
    }
}
