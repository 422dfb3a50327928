//! Unit tests of the Drive adapter's parsing and arithmetic, and the store against the
//! fake Google (tests/gdrive/fake_google.py, a real HTTP server on 127.0.0.1; another
//! path with NEOPRO_FAKE_GOOGLE).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;

use super::*;
use crate::bucket::google_oauth::{self, Poll, TokenFile};
use crate::units::sha256;

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: vec![],
        body: body.as_bytes().to_vec(),
    }
}

fn drive_error(status: u16, reason: &str) -> Reply {
    reply(
        status,
        &format!(
            r#"{{"error":{{"code":{status},"message":"m {reason}","errors":[{{"domain":"usageLimits","reason":"{reason}","message":"x"}}]}}}}"#
        ),
    )
}

#[test]
fn ranges_and_sizes_are_parsed_bounded() {
    assert_eq!(range_received(None), Some(0));
    assert_eq!(range_received(Some("bytes=0-262143")), Some(262_144));
    assert_eq!(range_received(Some("bytes=0-0")), Some(1));
    for bad in [
        "bytes=1-5",
        "bytes=0-",
        "bytes=0--1",
        "bytes=0-18446744073709551615",
        "bytes=0-99999999999999999999999",
        "0-5",
        "bytes=0-1x",
    ] {
        assert_eq!(range_received(Some(bad)), None, "{bad}");
    }
    assert_eq!(content_range("bytes 100-149/1000"), Some((100, 149, 1000)));
    for bad in [
        "bytes 150-100/1000",
        "bytes 0-1000/1000",
        "bytes */1000",
        "bytes 0-1/*",
        "bytes -1-2/3",
        "items 0-1/3",
    ] {
        assert_eq!(content_range(bad), None, "{bad}");
    }
    assert_eq!(parse_u64("123"), Some(123));
    assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
    for bad in ["", "-1", "1e3", "18446744073709551616", " ", "0x10"] {
        assert_eq!(parse_u64(bad), None, "{bad}");
    }
}

#[test]
fn chunk_arithmetic() {
    assert_eq!(
        chunk_range(0, 262_144, None).as_deref(),
        Some("bytes 0-262143/*")
    );
    assert_eq!(
        chunk_range(262_144, 10, Some(262_154)).as_deref(),
        Some("bytes 262144-262153/262154")
    );
    assert_eq!(chunk_range(5, 0, Some(5)).as_deref(), Some("bytes */5"));
    assert_eq!(chunk_range(0, 0, None).as_deref(), Some("bytes */*"));
    assert_eq!(chunk_range(u64::MAX, 2, None), None);
    let u = CHUNK_UNIT;
    // The last chunk resumes at the very byte; a middle one at the boundary below
    // (what is left must stay a multiple of 256 KiB), never before the chunk.
    assert_eq!(resume_at(0, 300_000, 100_000, true), Some(100_000));
    assert_eq!(resume_at(4 * u, 8 * u, 5 * u + 7, false), Some(5 * u));
    assert_eq!(resume_at(4 * u, 8 * u, 6 * u, false), Some(6 * u));
    assert_eq!(resume_at(4 * u, 8 * u, 4 * u + 1, false), Some(4 * u));
    assert_eq!(resume_at(4 * u, 8 * u, 8 * u, false), Some(8 * u));
    assert_eq!(resume_at(4 * u, 8 * u, 3 * u, false), None);
    assert_eq!(resume_at(4 * u, 8 * u, 8 * u + 1, true), None);
    assert!((CHUNK as u64).is_multiple_of(CHUNK_UNIT));
}

#[test]
fn q_strings_escape_names() {
    assert_eq!(q_escape(r"it's a\b"), r"it\'s a\\b");
    assert_eq!(
        q_folder("club's", "root"),
        "name = 'club\\'s' and 'root' in parents and mimeType = \
         'application/vnd.google-apps.folder' and trashed = false"
    );
    assert_eq!(
        q_file("status.json", "F1"),
        "name = 'status.json' and 'F1' in parents and trashed = false"
    );
    assert_eq!(q_children("F'1"), "'F\\'1' in parents and trashed = false");
}

#[test]
fn keys_split_into_folders_and_a_name() {
    let (d, n) = ok(split_key("neopro/club/a.tar.gz"));
    assert_eq!((d, n), (vec!["neopro", "club"], "a.tar.gz"));
    assert_eq!(ok(split_key("x")), (vec![], "x"));
    for bad in ["", "a//b", "/a", "a/", "a/../b", "./a"] {
        assert!(split_key(bad).is_err(), "{bad}");
    }
}

#[test]
fn error_reasons_decide_retries_and_words() {
    assert!(retryable(&drive_error(403, "rateLimitExceeded")));
    assert!(retryable(&drive_error(403, "userRateLimitExceeded")));
    assert!(retryable(&reply(429, "")));
    assert!(retryable(&reply(503, "<html>")));
    assert!(!retryable(&drive_error(403, "storageQuotaExceeded")));
    assert!(!retryable(&drive_error(404, "notFound")));
    let e = explain("PUT gdrive://a", &drive_error(403, "storageQuotaExceeded"));
    assert!(e.msg.contains("Google Drive is full"), "{e}");
    assert!(!e.transport && e.status == Some(403));
    let e = explain("GET gdrive://a", &drive_error(500, "backendError"));
    assert!(
        e.transport && e.msg.contains("HTTP 500 backendError"),
        "{e}"
    );
    let e = explain("GET gdrive://a", &reply(418, "not json"));
    assert_eq!(e.msg, "GET gdrive://a: HTTP 418");
}

/// Answers read by json::walk: the fields the product uses, in any order, unknown ones
/// skipped; what is not JSON (what made nanoserde panic or loop) an error.
#[test]
fn answers_are_read_field_by_field_and_bad_ones_refused() {
    let page = reply(
        200,
        r#"{"kind":"drive#fileList","files":[{"id":"A","name":"a.tar.gz","size":"12","md5Checksum":"ab","x":{"y":[1]}},
            {"mimeType":"application/vnd.google-apps.folder","name":"d","id":"D","createdTime":"t"}, 5],
            "nextPageToken":"N"}"#,
    );
    let (files, next) = ok(parse_list("list", &page));
    assert_eq!(next.as_deref(), Some("N"));
    assert_eq!(files.len(), 2);
    let m = to_meta("", &files[0]);
    assert_eq!(
        (m.id.as_str(), m.size, m.etag()),
        ("A", 12, "\"ab\"".to_string())
    );
    assert_eq!(files[1].mime_type.as_deref(), Some(FOLDER_MIME));
    assert_eq!(files[1].created.as_deref(), Some("t"));
    let f = ok(parse_file(
        "meta",
        &reply(200, r#"{"trashed":true,"id":"Z","size":7}"#),
    ));
    assert_eq!((f.trashed, f.size.as_deref()), (Some(true), Some("7")));
    assert_eq!(
        reason(&drive_error(403, "rateLimitExceeded")),
        ("rateLimitExceeded".into(), "m rateLimitExceeded".into())
    );
    for bad in [
        r#"{"files":[{"id":"A","x": ]}]}"#,
        r#"{"files":[{"id":"A"},"#,
        r#"{"files": :}"#,
        "\u{fe}\u{ff}",
    ] {
        let e = parse_list("listing gdrive://x", &reply(200, bad)).err();
        assert!(
            e.as_ref()
                .is_some_and(|e| e.msg.contains("not Drive's JSON")),
            "{bad}: {e:?}"
        );
        assert!(parse_file("meta", &reply(200, bad)).is_err());
        assert_eq!(reason(&reply(403, bad)), (String::new(), String::new()));
    }
}

// --- Against the fake Google ---

/// The fake server, stopped (killed, by its handle) when dropped.
struct Fake {
    child: Child,
    url: Url,
    base: String,
}

impl Fake {
    fn start() -> Fake {
        let script = std::env::var("NEOPRO_FAKE_GOOGLE").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gdrive/fake_google.py").to_string()
        });
        assert!(
            Path::new(&script).exists(),
            "{script} is missing (branch gdfake; NEOPRO_FAKE_GOOGLE=PATH for another copy)"
        );
        let mut child = ok(Command::new("python3")
            .args([script.as_str(), "--port", "0", "--exit-on-eof"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn());
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            ok(BufReader::new(out).read_line(&mut line));
        }
        let base = line
            .trim()
            .strip_prefix("fake-google listening on ")
            .unwrap_or_else(|| panic!("the fake said {line:?}"))
            .to_string();
        Fake {
            url: ok(Url::parse(&base)),
            base,
            child,
        }
    }

    fn control(&self, method: &str, path: &str, body: &str) -> String {
        let r = ok(client::request(
            method,
            &self.url.with_path(path.to_string()),
            &[("Content-Type".into(), "application/json".into())],
            Payload::bytes(body.as_bytes()),
            64 * 1024 * 1024,
            Timeouts::GOOGLE,
        ));
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        String::from_utf8_lossy(&r.body).into_owned()
    }

    fn fault(&self, op: &str, fault: &str) {
        self.control(
            "POST",
            "/_test/fault",
            &format!(r#"{{"op":"{op}","fault":{fault}}}"#),
        );
    }

    /// The requests made so far, one JSON object a line (crude but enough to count).
    fn requests(&self) -> Vec<String> {
        let all = self.control("GET", "/_test/requests", "");
        all.split("{\"method\"")
            .skip(1)
            .map(|s| format!("{{\"method\"{s}"))
            .collect()
    }

    fn settings(&self) -> GdriveSettings {
        Fake::settings_for(self.url.clone())
    }

    fn settings_for(url: Url) -> GdriveSettings {
        GdriveSettings {
            client_id: "cid.apps.googleusercontent.com".into(),
            client_secret: Secret::new("csecret".into()),
            folder: "neopro".into(),
            retention_days: 30,
            encrypt_to: vec![],
            api: url.clone(),
            oauth: url,
        }
    }

    /// A BACKUP_DIR connected by the device flow (approved at once).
    fn login(&self, name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "neopro-gdrive-{name}-{}-{}",
            std::process::id(),
            self.url.port
        ));
        let _ = std::fs::remove_dir_all(&dir);
        ok(std::fs::create_dir_all(&dir));
        let s = self.settings();
        let code = ok(google_oauth::device_code(&s.oauth, &s.client_id));
        assert_eq!(
            ok(google_oauth::poll(
                &s.oauth,
                &s.client_id,
                &s.client_secret,
                &code.device_code
            )),
            Poll::Pending
        );
        self.control(
            "POST",
            "/_test/approve",
            &format!(r#"{{"user_code":"{}"}}"#, code.user_code),
        );
        let Poll::Done(t) = ok(google_oauth::poll(
            &s.oauth,
            &s.client_id,
            &s.client_secret,
            &code.device_code,
        )) else {
            panic!("not approved")
        };
        assert!(t.refresh_token.expose().starts_with("1//fake-"));
        ok(google_oauth::write_token(
            &dir,
            &TokenFile {
                version: 1,
                client_id: s.client_id.clone(),
                refresh_token: t.refresh_token,
                scope: t.scope,
                connected: "2025-01-01T00:00:00Z".into(),
                ids: Ids::default(),
            },
        ));
        dir
    }

    fn drive(&self, dir: &Path) -> Drive {
        let mut d = Drive::new(&self.settings(), dir);
        d.backoff = Duration::from_millis(1);
        d
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

fn chunk_ranges(f: &Fake) -> Vec<String> {
    f.requests()
        .iter()
        .filter(|r| {
            r.contains("\"op\": \"upload_chunk\"") || r.contains("\"op\": \"upload_query\"")
        })
        .filter_map(|r| {
            let i = r.find("\"content-range\": \"")? + 18;
            Some(r[i..].split('"').next()?.to_string())
        })
        .collect()
}

#[test]
fn drive_keeps_the_contract_on_the_fake() {
    let f = Fake::start();
    let dir = f.login("contract");
    let d = f.drive(&dir);
    crate::bucket::contract::run_with(&d, "neopro/contract/", false);
    // and with small chunks: the 9 MiB writer in 36 chunks
    let mut d = f.drive(&dir);
    d.chunk = CHUNK_UNIT as usize;
    crate::bucket::contract::run_with(&d, "neopro/small/", false);
}

#[test]
fn not_connected_without_a_token_file() {
    let f = Fake::start();
    let dir = std::env::temp_dir().join(format!("neopro-gdrive-none-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let d = f.drive(&dir);
    let e = d.head("neopro/x").map(|_| ()).unwrap_err();
    assert_eq!(e.msg, NOT_CONNECTED);
    assert!(
        f.requests().is_empty(),
        "a request went out without a token"
    );
}

#[test]
fn a_status_is_updated_in_place_and_folders_are_made_once() {
    let f = Fake::start();
    let dir = f.login("inplace");
    let d = f.drive(&dir);
    ok(d.put_bytes("neopro/club-1/status.json", b"one", "application/json"));
    ok(d.put_bytes("neopro/club-1/status.json", b"two!", "application/json"));
    // Another process with a fresh cache finds the same folders and file by q.
    let dir2 = f.login("inplace2");
    let d2 = f.drive(&dir2);
    ok(d2.put_bytes("neopro/club-1/status.json", b"three", "application/json"));
    ok(d2.put_bytes("neopro/club-2/status.json", b"x", "application/json"));
    let files = f.control("GET", "/_test/files", "");
    assert_eq!(
        files.matches("\"name\": \"status.json\"").count(),
        2,
        "{files}"
    );
    assert_eq!(files.matches("\"name\": \"neopro\"").count(), 1, "{files}");
    assert_eq!(files.matches("\"name\": \"club-1\"").count(), 1, "{files}");
    assert_eq!(
        ok(d.get("neopro/club-1/status.json")),
        Some(b"three".to_vec())
    );
    let patches = f
        .requests()
        .iter()
        .filter(|r| r.starts_with("{\"method\": \"PATCH\""))
        .count();
    assert_eq!(patches, 2);
    // The IDs are kept in the token file.
    let t = ok(google_oauth::read_token(&dir)).unwrap_or_else(|| panic!("no token"));
    assert!(t.ids.contains_key("neopro/") && t.ids.contains_key("neopro/club-1/"));
    assert!(t.ids.contains_key("neopro/club-1/status.json"));
}

#[test]
fn the_oldest_of_two_folders_of_one_name_is_used_and_a_stale_id_forgotten() {
    let f = Fake::start();
    let dir = f.login("dup");
    let d = f.drive(&dir);
    let first = ok(d.make_folder("dup", "root", "dup/"));
    let second = ok(d.make_folder("dup", "root", "dup/"));
    assert_ne!(first, second);
    ok(d.put_bytes("dup/x", b"x", "text/plain"));
    let t = ok(google_oauth::read_token(&dir)).unwrap_or_else(|| panic!("no token"));
    assert_eq!(t.ids.get("dup/"), Some(&first));
    // Deleted behind this process's back: the kept ID answers 404, is forgotten.
    let other = f.drive(&f.login("dup2"));
    ok(other.delete("dup/x"));
    assert_eq!(ok(d.head("dup/x")), ObjectHead::Missing);
    let t = ok(google_oauth::read_token(&dir)).unwrap_or_else(|| panic!("no token"));
    assert!(!t.ids.contains_key("dup/x"));
    // A read never makes a folder.
    assert_eq!(ok(d.head("nowhere/x")), ObjectHead::Missing);
    assert!(ok(d.list("nowhere/", None)).objects.is_empty());
    assert!(!f.control("GET", "/_test/files", "").contains("nowhere"));
}

/// The fake's SHA-256 of the file named `name`.
fn fake_sha(f: &Fake, name: &str) -> String {
    let files = f.control("GET", "/_test/files", "");
    let at = files
        .find(&format!("\"name\": \"{name}\""))
        .unwrap_or_else(|| panic!("no {name} in {files}"));
    let rest = &files[at..];
    let i = rest
        .find("\"sha256\": \"")
        .unwrap_or_else(|| panic!("{rest}"))
        + 11;
    rest[i..i + 64].to_string()
}

#[test]
fn a_dropped_connection_resumes_from_the_range_drive_reports() {
    let f = Fake::start();
    let d = f.drive(&f.login("drop"));
    let data = pattern(300_000, 7);
    f.fault("upload_chunk", r#"{"drop_after":100000}"#);
    ok(d.put_bytes("neopro/c/a.bin", &data, "application/octet-stream"));
    assert_eq!(ok(d.get("neopro/c/a.bin")), Some(data.clone()));
    assert_eq!(fake_sha(&f, "a.bin"), crate::units::hex(&sha256(&data)));
    assert_eq!(
        chunk_ranges(&f),
        [
            "bytes 0-299999/300000",
            "bytes */300000",
            "bytes 100000-299999/300000"
        ]
    );
    // Several chunks: the connection drops after the whole first chunk was taken
    // (its answer lost): the upload goes on from the next chunk.
    let big = pattern(3 * CHUNK_UNIT as usize + 5, 8);
    f.control("POST", "/_test/reset", "");
    let mut d = f.drive(&f.login("drop2"));
    d.chunk = CHUNK_UNIT as usize;
    f.fault("upload_chunk", r#"{"drop_after":300000}"#);
    let never = AtomicBool::new(false);
    let mut w = d.writer("neopro/c/b.bin", "application/octet-stream", &never);
    ok(w.write_all(&big));
    assert_eq!(ok(w.finish()), big.len() as u64);
    assert_eq!(fake_sha(&f, "b.bin"), crate::units::hex(&sha256(&big)));
    assert_eq!(
        chunk_ranges(&f),
        [
            "bytes 0-262143/*",
            "bytes */*",
            "bytes 262144-524287/*",
            "bytes 524288-786431/*",
            "bytes 786432-786436/786437"
        ]
    );
}

#[test]
fn a_308_with_a_partial_range_sends_the_rest() {
    let f = Fake::start();
    let mut d = f.drive(&f.login("partial"));
    d.chunk = CHUNK_UNIT as usize;
    let data = pattern(2 * CHUNK_UNIT as usize + 10, 9);
    // The first chunk: 1000 bytes kept; the rest of it goes again from the boundary
    // below (0: the first chunk again, a multiple of 256 KiB).
    f.fault("upload_chunk", r#"{"partial":1000}"#);
    ok(d.put_bytes("neopro/p/a.bin", &data, "application/octet-stream"));
    assert_eq!(fake_sha(&f, "a.bin"), crate::units::hex(&sha256(&data)));
    let total = data.len();
    assert_eq!(
        chunk_ranges(&f),
        [
            format!("bytes 0-262143/{total}"),
            format!("bytes 0-262143/{total}"),
            format!("bytes 262144-524287/{total}"),
            format!("bytes 524288-{}/{total}", total - 1),
        ]
    );
    // The last chunk: the very byte reported.
    f.control("POST", "/_test/reset", "");
    let d = f.drive(&f.login("partial2"));
    let small = pattern(5000, 1);
    f.fault("upload_chunk", r#"{"partial":1234}"#);
    ok(d.put_bytes("neopro/p/b.bin", &small, "application/octet-stream"));
    assert_eq!(ok(d.get("neopro/p/b.bin")), Some(small));
    assert_eq!(
        chunk_ranges(&f),
        ["bytes 0-4999/5000", "bytes 1234-4999/5000"]
    );
}

#[test]
fn rate_limits_and_server_errors_are_retried() {
    let f = Fake::start();
    let d = f.drive(&f.login("retry"));
    ok(d.put_bytes("neopro/r/a", b"abc", "text/plain"));
    f.fault("list", r#"{"status":429}"#);
    f.fault("metadata", r#"{"status":403,"reason":"rateLimitExceeded"}"#);
    f.fault(
        "download",
        r#"{"status":403,"reason":"userRateLimitExceeded"}"#,
    );
    assert_eq!(ok(d.get("neopro/r/a")), Some(b"abc".to_vec()));
    assert_eq!(ok(d.list("neopro/r/", None)).objects.len(), 1);
    f.fault("upload_start", r#"{"status":503}"#);
    f.fault("upload_chunk", r#"{"status":500}"#);
    ok(d.put_bytes("neopro/r/b", b"defg", "text/plain"));
    assert_eq!(ok(d.get("neopro/r/b")), Some(b"defg".to_vec()));
    // Five tries, then a transport error (the queue tries later).
    let _ = f.control(
        "POST",
        "/_test/fault",
        r#"{"op":"metadata","fault":{"status":503},"times":5}"#,
    );
    let e = d.head("neopro/r/a").map(|_| ()).unwrap_err();
    assert!(e.transport && e.status == Some(503), "{e:?}");
}

#[test]
fn a_401_refreshes_the_access_token_once() {
    let f = Fake::start();
    let d = f.drive(&f.login("401"));
    ok(d.put_bytes("neopro/t/a", b"abc", "text/plain"));
    let before = f
        .requests()
        .iter()
        .filter(|r| r.contains("\"/token\""))
        .count();
    f.fault("metadata", r#"{"status":401}"#);
    assert_eq!(ok(d.head("neopro/t/a")), ObjectHead::Exists(3));
    f.fault("upload_chunk", r#"{"status":401}"#);
    ok(d.put_bytes("neopro/t/a", b"abcd", "text/plain"));
    assert_eq!(ok(d.get("neopro/t/a")), Some(b"abcd".to_vec()));
    let after = f
        .requests()
        .iter()
        .filter(|r| r.contains("\"/token\""))
        .count();
    assert_eq!(after - before, 2, "one refresh per 401");
}

#[test]
fn invalid_grant_says_to_log_in_again() {
    let f = Fake::start();
    let dir = f.login("grant");
    f.control("POST", "/_test/revoke_all", "");
    let d = f.drive(&dir);
    let e = d.head("neopro/x").map(|_| ()).unwrap_err();
    assert!(
        e.msg.contains("invalid_grant")
            && e.msg.contains("neopro-backup gdrive login")
            && e.msg.contains("7 days"),
        "{e}"
    );
    assert!(!e.transport);
    let t = ok(google_oauth::read_token(&dir)).unwrap_or_else(|| panic!("no token"));
    assert!(!e.msg.contains(t.refresh_token.expose()));
}

#[test]
fn a_full_drive_is_said_and_not_retried() {
    let f = Fake::start();
    let d = f.drive(&f.login("full"));
    f.control("POST", "/_test/quota", r#"{"limit":100}"#);
    let e = d
        .put_bytes("neopro/q/a", &[7u8; 1000], "application/octet-stream")
        .unwrap_err();
    assert!(
        e.msg.contains("Google Drive is full") && !e.transport,
        "{e}"
    );
    let starts = f
        .requests()
        .iter()
        .filter(|r| r.contains("\"op\": \"upload_start\""))
        .count();
    assert_eq!(starts, 1);
    assert!(
        f.control("GET", "/_test/files", "")
            .matches("\"name\": \"a\"")
            .count()
            == 0
    );
}

#[test]
fn an_expired_session_is_a_transport_error_and_writes_nothing() {
    let f = Fake::start();
    let d = f.drive(&f.login("expired"));
    f.fault("upload_chunk", r#"{"status":404}"#);
    let e = d
        .put_bytes("neopro/s/a", b"hello", "text/plain")
        .unwrap_err();
    assert!(e.transport && e.msg.contains("expired"), "{e}");
    assert_eq!(ok(d.head("neopro/s/a")), ObjectHead::Missing);
    // The queue's next attempt starts again and succeeds.
    ok(d.put_bytes("neopro/s/a", b"hello", "text/plain"));
    assert_eq!(ok(d.get("neopro/s/a")), Some(b"hello".to_vec()));
}

#[test]
fn about_reads_the_quota() {
    let f = Fake::start();
    let d = f.drive(&f.login("about"));
    ok(d.put_bytes("neopro/a/x", &[1u8; 1234], "application/octet-stream"));
    let q = ok(d.about());
    assert_eq!(q.usage, 1234);
    assert_eq!(q.limit, Some(16_106_127_360));
    f.control("POST", "/_test/quota", r#"{"limit":null}"#);
    assert_eq!(ok(d.about()).limit, None);
    let _ = &f.base;
}

/// A reader of `left` bytes of a pattern, made as they are read (nothing held).
struct Generated {
    left: u64,
    at: u64,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        for b in &mut buf[..n] {
            *b = (self.at.wrapping_mul(2_654_435_761) >> 8) as u8;
            self.at += 1;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// The child of `a_100_mib_upload_holds_one_chunk`: alone in its process, so that its
/// peak RSS is the upload's.
#[test]
#[ignore = "run by a_100_mib_upload_holds_one_chunk in a process of its own"]
fn upload_100_mib_child() {
    let (Ok(url), Ok(dir)) = (
        std::env::var("NEOPRO_TEST_GDRIVE"),
        std::env::var("NEOPRO_TEST_GDRIVE_DIR"),
    ) else {
        panic!("run by a_100_mib_upload_holds_one_chunk");
    };
    let mut s = Fake::settings_for(ok(Url::parse(&url)));
    s.client_id = "cid.apps.googleusercontent.com".into();
    let mut d = Drive::new(&s, Path::new(&dir));
    d.backoff = Duration::from_millis(1);
    // A first upload of a few chunks brings in the code and the allocator's arenas;
    // then the peak is reset (clear_refs 5) to the RSS of now.
    let warm = ObjectBody {
        reader: Box::new(Generated {
            left: 5 * 1024 * 1024,
            at: 0,
        }),
        len: 5 * 1024 * 1024,
        sha256: None,
    };
    ok(d.put("neopro/big/warm-up", warm, "application/octet-stream"));
    ok(std::fs::write("/proc/self/clear_refs", "5"));
    let before = status_kib("VmRSS:");
    let len = 100 * 1024 * 1024;
    let body = ObjectBody {
        reader: Box::new(Generated { left: len, at: 0 }),
        len,
        sha256: None,
    };
    ok(d.put(
        "neopro/big/archive.tar.gz",
        body,
        "application/octet-stream",
    ));
    let peak = status_kib("VmHWM:");
    println!("RSS_GROWTH_KIB={}", peak.saturating_sub(before));
}

#[test]
fn a_100_mib_upload_holds_one_chunk() {
    let f = Fake::start();
    let dir = f.login("rss");
    let exe = ok(std::env::current_exe());
    let out = ok(Command::new(exe)
        .args([
            "--exact",
            "bucket::gdrive::tests::upload_100_mib_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("NEOPRO_TEST_GDRIVE", &f.base)
        .env("NEOPRO_TEST_GDRIVE_DIR", &dir)
        .output());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let growth: u64 = text
        .lines()
        .find_map(|l| Some(&l[l.find("RSS_GROWTH_KIB=")? + 15..]))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no figure in {text}"));
    println!("peak RSS growth of a 100 MiB upload: {growth} KiB");
    // One 2 MiB chunk and the HTTP client's buffers (measured: 2,060 KiB); a second
    // chunk held would pass 4 MiB.
    assert!(growth < 3 * 1024, "{growth} KiB");
    let files = f.control("GET", "/_test/files", "");
    assert!(files.contains("\"size\": 104857600"), "{files}");
}
