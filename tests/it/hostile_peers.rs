//! Black-box tests of what a hostile HTTP peer can do to the client side of the binary
//! (issue 21, finding 2): a PING_URL that answers a chunked body whose chunk size
//! overflows the body length. The ping is an alert: it can fail, it never changes the
//! backup nor its exit code (docs/format.md, "Exit codes" and "Offsite": Alerts).
//!
//! Std only.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Tree, archives, temp_files, write_file};

/// The answer of issue 21: one chunk of one byte, then a chunk size of 2^64 - 1.
const OVERFLOW: &[u8] =
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nA\r\nffffffffffffffff\r\n";

/// A server on 127.0.0.1:0 that reads each request head and answers `answer`, then
/// closes; returns its `http://127.0.0.1:PORT` and the request lines it saw.
fn hostile_server(answer: &'static [u8]) -> (String, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let port = l
        .local_addr()
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = Arc::clone(&seen);
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let Ok(rc) = c.try_clone() else { continue };
            let mut r = BufReader::new(rc);
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            loop {
                let mut line = String::new();
                match r.read_line(&mut line) {
                    Ok(n) if n > 2 => {}
                    _ => break,
                }
            }
            s2.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(first.trim_end().to_string());
            let _ = c.write_all(answer);
        }
    });
    (format!("http://127.0.0.1:{port}"), seen)
}

#[test]
fn a_ping_url_answering_an_overflowing_chunk_size_changes_nothing() {
    let t = Tree::new("hostile-ping");
    let (base, seen) = hostile_server(OVERFLOW);
    let ping = format!("{base}/ping/tok-123");
    // A success: the archive, the status and exit code 0, both pings tried and failed.
    let out = t.run_env(&[("PING_URL", &ping)], &["run"]);
    assert!(!out.stderr.contains("panicked"), "{out}");
    out.expect_code(0, "run with a hostile PING_URL");
    let names = archives(&t.backups);
    assert_eq!(names.len(), 1, "{names:?}\n{out}");
    assert!(
        temp_files(&t.backups).is_empty(),
        "{:?}",
        temp_files(&t.backups)
    );
    let st = t.status();
    assert!(st.get("success").bool(), "{out}");
    assert_eq!(st.get("archive").str(), names[0]);
    assert!(out.stderr.contains("alert: start ping failed"), "{out}");
    assert!(out.stderr.contains("alert: ping failed"), "{out}");
    assert!(
        out.stderr.contains("HTTP answer body over"),
        "the error says why: {out}"
    );
    let lines = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(
        lines.iter().any(|l| l.contains("/ping/tok-123/start"))
            && lines.iter().any(|l| l.contains("/ping/tok-123 ")),
        "{lines:?}"
    );
    // A failed run: exit code 1 and its status, whatever the /fail ping got back.
    let file = t.root.join("not-a-dir");
    write_file(&file, b"x");
    let out = t.run_env(
        &[("PING_URL", &ping), ("BACKUP_DIR", &file.to_string_lossy())],
        &["run"],
    );
    assert!(!out.stderr.contains("panicked"), "{out}");
    out.expect_code(1, "failed run with a hostile PING_URL");
    assert!(out.stderr.contains("alert: ping failed"), "{out}");
    let lines = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(
        lines.iter().any(|l| l.contains("/ping/tok-123/fail")),
        "{lines:?}"
    );
}
