//! Offsite copies and alerts (docs/format.md, Offsite) against a real S3 server: SeaweedFS on
//! loopback, started by `make test-offsite` (scripts/seaweedfs.sh), never a mock. Objects
//! are read back through SeaweedFS's filer, not through our own S3 client, so a bug in
//! our signing or upload cannot hide itself. Every test works under a prefix of its own
//! in the one bucket, so the tests run in parallel.
//!
//! Ignored in a plain `cargo test` (no server there); `make test-offsite` runs them.

use crate::common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::net::{Answer, ClosedPort, Relay, http};
use common::s3::*;
use common::*;

const API_TOKEN: &str = "api-token-never-shown-0123456789";

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// No secret in anything a user or another local user can see.
fn assert_no_secrets(t: &Tree, outs: &[&Out]) {
    let mut seen: Vec<(String, String)> = outs
        .iter()
        .map(|o| ("output".to_string(), format!("{}{}", o.stdout, o.stderr)))
        .collect();
    for f in [
        "backup.log",
        "last-backup-status.json",
        "offsite-state.json",
    ] {
        if let Ok(text) = fs::read_to_string(t.backups.join(f)) {
            seen.push((f.to_string(), text));
        }
    }
    for (what, text) in seen {
        for secret in [SECRET_KEY, API_TOKEN] {
            assert!(!text.contains(secret), "a secret shows in {what}:\n{text}");
        }
    }
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn upload_and_byte_identical_read_back() {
    let t = Tree::new("offsite-upload");
    let prefix = unique_prefix("upload");
    let env = s3_env(&prefix, "club-01");
    let out = run(&t, &env, &["run"]);
    out.expect_code(0, "run with offsite");
    assert!(out.stdout.contains("offsite: 1 copy(ies) sent"), "{out}");
    let name = archives(&t.backups).pop().unwrap_or_default();
    let remote =
        object(&format!("{prefix}/club-01/{name}")).unwrap_or_else(|| panic!("no copy of {name}"));
    assert!(
        remote == read(&t.archive_path(&name)),
        "the copy differs from the archive"
    );
    let st = t.status();
    let off = st.get("offsite");
    assert_eq!(off.get("pending").u64(), 0);
    assert!(
        off.get("error").is_null() && !off.get("last_upload").is_null(),
        "{st:?}"
    );
    // The status went too, after the archive, and says the same.
    let remote_status =
        object(&format!("{prefix}/club-01/last-backup-status.json")).unwrap_or_default();
    let rs = parse_json(&String::from_utf8_lossy(&remote_status)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rs.get("archive").str(), name);
    assert_eq!(rs.get("offsite").get("pending").u64(), 0);
    assert_no_secrets(&t, &[&out]);
    // Without S3_ENDPOINT the status has no offsite field at all.
    let t2 = Tree::new("offsite-off");
    t2.backup(&[]);
    assert!(t2.status().try_get("offsite").is_none());
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn wrong_secret_is_a_clear_error_and_the_copy_waits() {
    let t = Tree::new("offsite-secret");
    let prefix = unique_prefix("secret");
    let wrong = "wrong-secret-never-shown-42";
    let env = with(&s3_env(&prefix, "pi"), &[("S3_SECRET_KEY", wrong)]);
    let out = run(&t, &env, &["run"]);
    out.expect_code(0, "the local backup succeeds whatever S3 says");
    assert!(
        out.stdout.contains("SignatureDoesNotMatch") && out.stdout.contains("check S3_SECRET_KEY"),
        "{out}"
    );
    let off = t.status().get("offsite").clone();
    assert_eq!(off.get("pending").u64(), 1);
    assert!(off.get("error").str().contains("S3_SECRET_KEY"), "{off:?}");
    let log = fs::read_to_string(t.backups.join("backup.log")).unwrap_or_default();
    for text in [
        &out.stdout,
        &out.stderr,
        &log,
        &fs::read_to_string(t.backups.join("last-backup-status.json")).unwrap_or_default(),
    ] {
        assert!(!text.contains(wrong), "the secret shows:\n{text}");
    }
    assert!(objects_in(&format!("{prefix}/pi")).is_empty());
    // Fixed: the next run sends both, oldest first.
    let out = run(&t, &s3_env(&prefix, "pi"), &["run"]);
    out.expect_code(0, "run with the right secret");
    let mut names = archives(&t.backups);
    names.sort();
    let mut expected: Vec<String> = names.clone();
    expected.push("last-backup-status.json".into());
    expected.sort();
    assert_eq!(objects_in(&format!("{prefix}/pi")), expected);
    assert_eq!(t.status().get("offsite").get("pending").u64(), 0);
    let log = fs::read_to_string(t.backups.join("backup.log")).unwrap_or_default();
    let first = log
        .find(&format!("offsite: sent {}", names[0]))
        .unwrap_or(usize::MAX);
    let second = log
        .find(&format!("offsite: sent {}", names[1]))
        .unwrap_or(0);
    assert!(first < second, "not oldest first:\n{log}");
    assert_no_secrets(&t, &[&out]);
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn server_down_then_back() {
    let t = Tree::new("offsite-down");
    let prefix = unique_prefix("down");
    let closed = ClosedPort::new();
    let dead = closed.url();
    let down = with(&s3_env(&prefix, "pi"), &[("S3_ENDPOINT", &dead)]);
    let started = Instant::now();
    let out = run(&t, &down, &["run"]);
    out.expect_code(0, "local backup with the server down");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the run waited for a dead server"
    );
    let st = t.status();
    assert!(st.get("success").bool());
    assert_eq!(st.get("offsite").get("pending").u64(), 1);
    assert!(
        st.get("offsite")
            .get("error")
            .str()
            .contains("cannot connect"),
        "{st:?}"
    );
    run(&t, &down, &["run"]).expect_code(0, "second run, still down");
    assert_eq!(t.status().get("offsite").get("pending").u64(), 2);
    let pending: Vec<String> = fs::read_dir(t.backups.join("offsite-pending"))
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(pending.len(), 2, "{pending:?}");
    // The server is back: the next run sends all three.
    let out = run(&t, &s3_env(&prefix, "pi"), &["run"]);
    out.expect_code(0, "run with the server back");
    assert_eq!(t.status().get("offsite").get("pending").u64(), 0);
    for name in archives(&t.backups) {
        assert!(
            object(&format!("{prefix}/pi/{name}")) == Some(read(&t.archive_path(&name))),
            "{name}"
        );
    }
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn daemon_retries_with_backoff_and_reports_pending_in_metrics() {
    let t = Tree::new("offsite-daemon");
    let prefix = unique_prefix("daemon");
    // The S3 server is down (its port refuses connections), then comes back.
    let s3_down = ClosedPort::new();
    let mut c = t.command(&["serve"]);
    c.envs(with(
        &s3_env(&prefix, "pi"),
        &[("S3_ENDPOINT", &s3_down.url())],
    ));
    // A child of the daemon (RESTART_CMD, after a restore through the API) writes down
    // its environment and argv: that is where a secret would leak.
    let child_env = t.root.join("restart-cmd-env.txt");
    // Port 0: the daemon binds a free port itself and says which ("serving on").
    c.env("LISTEN", "127.0.0.1:0")
        .env("API_TOKEN", API_TOKEN)
        .env(
            "RESTART_CMD",
            format!(
                "env > {f}; tr '\\0' ' ' < /proc/$$/cmdline >> {f}",
                f = child_env.display()
            ),
        )
        .env("NEOPRO_OFFSITE_RETRY_SECS", "1")
        .env("NEOPRO_CATCHUP_DELAY", "3600");
    let daemon = Daemon::spawn(c, "serve");
    let pid = daemon.pid();
    let addr = daemon.addr.clone();
    let auth = format!("Bearer {API_TOKEN}");
    let api =
        |method: &str, path: &str| http(&addr, method, path, &[("Authorization", &auth)], b"");
    let pending_metric = || {
        let Answer {
            status: st, body, ..
        } = api("GET", "/metrics");
        assert_eq!(st, 200);
        let text = String::from_utf8_lossy(&body).to_string();
        text.lines()
            .find_map(|l| l.strip_prefix("neopro_backup_offsite_pending "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no pending metric in\n{text}"))
    };
    assert_eq!(pending_metric(), 0);
    let Answer {
        status: st, body, ..
    } = api("POST", "/api/backups/create");
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    // The server is down: the copy waits, and says so.
    wait_for("a failed attempt", 20, || {
        fs::read_to_string(t.backups.join("offsite-state.json"))
            .is_ok_and(|s| s.contains("cannot connect"))
    });
    assert_eq!(pending_metric(), 1);
    // The server comes back on that port: a retry sends the copy.
    let _back = Relay::on(s3_down.listen(), &s3_addr(), None);
    wait_for("the retry", 30, || pending_metric() == 0);
    let name = archives(&t.backups).pop().unwrap_or_default();
    assert!(object(&format!("{prefix}/pi/{name}")) == Some(read(&t.archive_path(&name))));
    wait_for("the status refreshed", 10, || {
        t.status()
            .try_get("offsite")
            .is_some_and(|o| o.get("pending").u64() == 0 && o.get("error").is_null())
    });
    // The daemon's children inherit neither secret: restore through the API, which runs
    // RESTART_CMD, and read what it saw.
    write_file(
        &t.configuration_json(),
        b"{\"changed since the backup\": true}\n",
    );
    let Answer {
        status: st, body, ..
    } = http(
        &addr,
        "POST",
        &format!("/api/backups/restore/{name}"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        br#"{"dryRun":false}"#,
    );
    assert_eq!(st, 200, "restore: {}", String::from_utf8_lossy(&body));
    let seen =
        fs::read_to_string(&child_env).unwrap_or_else(|e| panic!("RESTART_CMD did not run ({e})"));
    assert!(
        seen.contains("sh -c") && seen.contains("NEOPRO_DIR="),
        "the child wrote its environment and argv: {seen}"
    );
    for secret in [SECRET_KEY, API_TOKEN] {
        assert!(
            !seen.contains(secret),
            "a secret reached a child of the daemon:\n{seen}"
        );
    }
    // Nor does the daemon's own argv.
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&cmdline).contains(SECRET_KEY));
    drop(daemon);
    assert_no_secrets(&t, &[]);
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn remote_retention_never_removes_the_newest_three() {
    let t = Tree::new("offsite-retention");
    let prefix = unique_prefix("retention");
    let dir = format!("{prefix}/pi");
    let old = [
        "backup-20200101-030000.tar.gz",
        "backup-20200102-030000.tar.gz",
        "backup-20200103-030000.tar.gz",
        "backup-20200104-030000.tar.gz.age",
        "backup-20200105-030000.tar.gz",
    ];
    for o in old {
        put_object(&format!("{dir}/{o}"), b"old copy");
    }
    put_object(&format!("{dir}/notes.txt"), b"not an archive");
    // This Pi sent them, by the offsite-state.json of the version it ran then: it
    // belongs to the site's history (docs/format.md, A site's history).
    fs::create_dir_all(&t.backups).unwrap_or_else(|e| panic!("{e}"));
    write_file(
        &t.backups.join("offsite-state.json"),
        br#"{"last_upload":"2020-01-05T03:00:12+00:00","failures":0,"next_try":0,"status_sent":"","archives_sent":5,"archive_bytes_sent":40}"#,
    );
    let env = with(&s3_env(&prefix, "pi"), &[("S3_RETENTION_DAYS", "30")]);
    let name = backup(&t, &env);
    let mut expected = vec![
        name,
        "backup-20200104-030000.tar.gz.age".to_string(),
        "backup-20200105-030000.tar.gz".to_string(),
        "last-backup-status.json".to_string(),
        "notes.txt".to_string(),
    ];
    expected.sort();
    assert_eq!(objects_in(&dir), expected);
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn encrypted_copy_decrypts_with_the_age_cli() {
    let t = Tree::new("offsite-age");
    // Big enough for a multipart upload (parts of 8 MiB).
    t.add_video(b"match/final-2024.mp4", 12 * 1024 * 1024, BASE_MTIME);
    let keys: Vec<(std::path::PathBuf, String)> = (0..2)
        .map(|i| {
            let path = t.root.join(format!("key{i}.txt"));
            let out = tool(
                "age-keygen",
                &[std::ffi::OsStr::new("-o"), path.as_os_str()],
                &t.root,
            );
            out.expect_code(0, "age-keygen");
            let text = fs::read_to_string(&path).unwrap_or_default();
            let public = text
                .lines()
                .find_map(|l| l.strip_prefix("# public key: "))
                .unwrap_or_else(|| panic!("no public key in {text}"))
                .to_string();
            (path, public)
        })
        .collect();
    let prefix = unique_prefix("age");
    let recipients = format!("{} {}", keys[0].1, keys[1].1);
    let env = with(
        &s3_env(&prefix, "pi"),
        &[("ENCRYPT_TO", &recipients), ("INCLUDE_VIDEOS", "true")],
    );
    let name = backup(&t, &env);
    let local = read(&t.archive_path(&name));
    assert!(local.len() > 12 * 1024 * 1024);
    let copy = object(&format!("{prefix}/pi/{name}.age")).unwrap_or_else(|| panic!("no .age copy"));
    assert!(
        object(&format!("{prefix}/pi/{name}")).is_none(),
        "a plain copy went out"
    );
    let enc = t.root.join("copy.age");
    write_file(&enc, &copy);
    for (key, _) in &keys {
        let mut c = Command::new("age");
        c.arg("-d")
            .arg("-i")
            .arg(key)
            .arg(&enc)
            .stdin(Stdio::null());
        let out = c.output().unwrap_or_else(|e| panic!("age: {e}"));
        assert!(
            out.status.success(),
            "age -d: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout == local,
            "decrypted copy differs from the archive"
        );
    }
    // The local archive stays plain: restore on the Pi needs no key.
    assert_eq!(&local[..2], &[0x1f, 0x8b]);
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn fleet_lists_every_site_and_marks_stale_ones() {
    let prefix = unique_prefix("fleet");
    let a = Tree::new("fleet-a");
    let b = Tree::new("fleet-b");
    backup(&a, &s3_env(&prefix, "club-a"));
    backup(&b, &s3_env(&prefix, "club-b"));
    // A third site that stopped backing up two days ago (50 h), with 2 copies waiting.
    put_object(
        &format!("{prefix}/club-c/last-backup-status.json"),
        site_status_json(true, 50, 2).as_bytes(),
    );
    let out = run(&a, &s3_env(&prefix, "club-a"), &["fleet"]);
    out.expect_code(0, "fleet");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("SITE") && lines[0].contains("PENDING"),
        "{out}"
    );
    let row = |site: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(site))
            .copied()
            .unwrap_or_else(|| panic!("no {site} in\n{out}"))
    };
    assert!(
        row("club-a").ends_with("ok") && row("club-b").ends_with("ok"),
        "{out}"
    );
    assert!(
        row("club-c").contains("STALE") && row("club-c").contains("1.0 MB"),
        "{out}"
    );
    let out = run(&b, &s3_env(&prefix, "club-b"), &["fleet", "--json"]);
    out.expect_code(0, "fleet --json");
    let j = parse_json(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    let sites = j.get("sites").arr();
    let names: Vec<&str> = sites.iter().map(|s| s.get("site").str()).collect();
    assert_eq!(names, ["club-a", "club-b", "club-c"]);
    assert_eq!(j.get("stale").u64(), 1);
    assert!(!sites[0].get("stale").bool() && sites[2].get("stale").bool());
    assert_eq!(sites[2].get("pending").u64(), 2);
    assert_eq!(
        sites[0].get("size_bytes").u64(),
        fs::metadata(a.archive_path(&archives(&a.backups)[0]))
            .map(|m| m.len())
            .unwrap_or(0)
    );
    // Without S3, fleet is a configuration error.
    let out = a.run(&["fleet"]);
    out.expect_code(2, "fleet without S3");
    assert!(out.stderr.contains("S3_ENDPOINT"), "{out}");
}

const TLS_PROXY: &str = r#"
import socket, ssl, sys, threading
cert, key, target = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(16)
print("ready", srv.getsockname()[1], flush=True)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except Exception:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except Exception:
            pass
def handle(c):
    try:
        t = ctx.wrap_socket(c, server_side=True)
    except Exception:
        c.close()
        return
    u = socket.create_connection(("127.0.0.1", target))
    threading.Thread(target=pipe, args=(t, u), daemon=True).start()
    pipe(u, t)
while True:
    c, _ = srv.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"#;

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn tls_with_a_ca_the_test_generates() {
    let t = Tree::new("offsite-tls");
    let d = t.root.join("pki");
    fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
    let sh = |script: &str| {
        let out = tool(
            "sh",
            &[std::ffi::OsStr::new("-c"), std::ffi::OsStr::new(script)],
            &d,
        );
        out.expect_code(0, script);
    };
    sh(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout ca.key -out ca.pem -days 2 -subj /CN=neopro-test-ca 2>/dev/null",
    );
    sh(
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout srv.key -out srv.csr -subj /CN=localhost 2>/dev/null",
    );
    sh(
        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf && \
        openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext.cnf 2>/dev/null",
    );
    // Another CA, which signed nothing of ours.
    sh(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout other.key -out other.pem -days 2 -subj /CN=other-ca 2>/dev/null",
    );
    let s3_port = s3_addr().rsplit(':').next().unwrap_or_default().to_string();
    let mut c = Command::new("python3");
    c.arg("-c")
        .arg(TLS_PROXY)
        .arg(d.join("srv.pem"))
        .arg(d.join("srv.key"))
        .arg(&s3_port)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap_or_else(|e| panic!("python3: {e}"));
    // "ready PORT": the proxy bound a port the system picked.
    let mut ready = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut ready);
    }
    let _proxy = Guard(child);
    let port: u16 = ready
        .strip_prefix("ready ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("the TLS proxy did not start: {ready:?}"));
    let prefix = unique_prefix("tls");
    let url = format!("https://localhost:{port}");
    // A CA bundle without our CA: the copy is refused, with a hint, and waits.
    let untrusted = with(
        &s3_env(&prefix, "pi"),
        &[
            ("S3_ENDPOINT", &url),
            ("SSL_CERT_FILE", &d.join("other.pem").to_string_lossy()),
        ],
    );
    let out = run(&t, &untrusted, &["run"]);
    out.expect_code(0, "run with an untrusted server");
    assert!(
        out.stdout.contains("not trusted") && out.stdout.contains("SSL_CERT_FILE"),
        "{out}"
    );
    assert_eq!(t.status().get("offsite").get("pending").u64(), 1);
    // SSL_CERT_FILE names our CA: both copies go out over TLS.
    let trusted = with(
        &s3_env(&prefix, "pi"),
        &[
            ("S3_ENDPOINT", &url),
            ("SSL_CERT_FILE", &d.join("ca.pem").to_string_lossy()),
        ],
    );
    let out = run(&t, &trusted, &["run"]);
    out.expect_code(0, "run over TLS");
    assert_eq!(t.status().get("offsite").get("pending").u64(), 0, "{out}");
    for name in archives(&t.backups) {
        assert!(
            object(&format!("{prefix}/pi/{name}")) == Some(read(&t.archive_path(&name))),
            "{name}"
        );
    }
    let out = run(&t, &trusted, &["fleet", "--json"]);
    out.expect_code(0, "fleet over TLS");
    assert!(out.stdout.contains(r#""site":"pi""#), "{out}");
}

/// A receiver on 127.0.0.1 that records every request: (method, path, body).
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

fn receiver() -> (u16, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = Arc::clone(&seen);
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            c.set_read_timeout(Some(Duration::from_secs(10))).ok();
            let mut raw = Vec::new();
            let mut buf = [0u8; 8192];
            let (head, body) = loop {
                let Ok(n) = c.read(&mut buf) else {
                    break (String::new(), String::new());
                };
                if n == 0 {
                    break (String::new(), String::new());
                }
                raw.extend_from_slice(&buf[..n]);
                if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&raw[..i]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while raw.len() < i + 4 + len {
                        match c.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => raw.extend_from_slice(&buf[..n]),
                        }
                    }
                    break (head, String::from_utf8_lossy(&raw[i + 4..]).to_string());
                }
            };
            let mut words = head.split_whitespace();
            let (m, p) = (
                words.next().unwrap_or("").to_string(),
                words.next().unwrap_or("").to_string(),
            );
            s2.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((m, p, body));
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK");
        }
    });
    (port, seen)
}

#[test]
#[ignore = "needs SeaweedFS: make test-offsite"]
fn alerts_pings_webhook_and_command() {
    let t = Tree::new("offsite-alerts");
    let (port, seen) = receiver();
    let prefix = unique_prefix("alerts");
    let ping = format!("http://127.0.0.1:{port}/ping/abc-123");
    let hook = format!("http://127.0.0.1:{port}/hook/T0K3N");
    let stdin_file = t.root.join("cmd-stdin.json");
    let env_file = t.root.join("cmd-env.txt");
    let cmd = format!(
        "cat > {}; env > {}; tr '\\0' ' ' < /proc/$$/cmdline >> {}",
        stdin_file.display(),
        env_file.display(),
        env_file.display()
    );
    let env = with(
        &s3_env(&prefix, "club-alert"),
        &[
            ("PING_URL", &ping),
            ("ALERT_WEBHOOK", &hook),
            ("ON_FAILURE_CMD", &cmd),
            ("API_TOKEN", API_TOKEN),
        ],
    );
    // A success: start, then success.
    let out = run(&t, &env, &["run"]);
    out.expect_code(0, "run");
    let got: Vec<(String, String, String)> = seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
        .collect();
    let paths: Vec<&str> = got.iter().map(|(_, p, _)| p.as_str()).collect();
    assert_eq!(paths, ["/ping/abc-123/start", "/ping/abc-123"], "{got:?}");
    assert!(!stdin_file.exists(), "ON_FAILURE_CMD ran after a success");
    // A failure (BACKUP_DIR is a file): fail ping, webhook, command.
    let file = t.root.join("not-a-dir");
    write_file(&file, b"x");
    let failing = with(&env, &[("BACKUP_DIR", &file.to_string_lossy())]);
    let out = run(&t, &failing, &["run"]);
    out.expect_code(1, "failed run");
    let got: Vec<(String, String, String)> = seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
        .collect();
    let fail = got
        .iter()
        .find(|(_, p, _)| p == "/ping/abc-123/fail")
        .unwrap_or_else(|| panic!("no /fail in {got:?}"));
    assert!(fail.2.contains("cannot create BACKUP_DIR"), "{fail:?}");
    let (m, _, body) = got
        .iter()
        .find(|(_, p, _)| p == "/hook/T0K3N")
        .unwrap_or_else(|| panic!("no webhook in {got:?}"));
    assert_eq!(m, "POST");
    let j = parse_json(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(j.get("event").str(), "backup_failed");
    assert_eq!(j.get("site").str(), "club-alert");
    assert!(!j.get("status").get("success").bool());
    assert!(j.get("text").str().contains("backup failed"));
    // The error's code in the status, its French words then the raw error in the text
    // (docs/format.md, Error codes).
    assert_eq!(j.get("status").get("error_code").str(), "not_a_directory");
    assert!(
        j.get("text")
            .str()
            .contains("Erreur : Un dossier attendu est en fait un fichier")
            && j.get("text")
                .str()
                .contains("Détail technique : cannot create BACKUP_DIR"),
        "{body}"
    );
    let stdin = fs::read_to_string(&stdin_file).unwrap_or_default();
    let sj = parse_json(&stdin).unwrap_or_else(|e| panic!("{e}: {stdin}"));
    assert!(!sj.get("success").bool() && sj.get("error").str().contains("BACKUP_DIR"));
    assert_eq!(sj.get("error_code").str(), "not_a_directory", "{stdin}");
    // The command's environment and argv hold no secret.
    let cenv = fs::read_to_string(&env_file).unwrap_or_default();
    assert!(cenv.contains("sh -c"), "{cenv}");
    for secret in [SECRET_KEY, API_TOKEN] {
        assert!(
            !cenv.contains(secret),
            "a secret reached ON_FAILURE_CMD:\n{cenv}"
        );
    }
    // Logs show no webhook or ping path (their tokens), nor any secret.
    for text in [&out.stdout, &out.stderr] {
        assert!(
            !text.contains("T0K3N") && !text.contains("abc-123"),
            "{text}"
        );
    }
    assert_no_secrets(&t, &[&out]);
    // Alerts that cannot be delivered change nothing.
    let closed = ClosedPort::new();
    let dead = format!("{}/x", closed.url());
    let env = with(&env, &[("PING_URL", &dead), ("ALERT_WEBHOOK", &dead)]);
    let out = run(&t, &env, &["run"]);
    out.expect_code(0, "run with dead alert URLs");
    assert!(out.stderr.contains("alert: ping failed"), "{out}");
    let out = run(
        &t,
        &with(&env, &[("BACKUP_DIR", &file.to_string_lossy())]),
        &["run"],
    );
    out.expect_code(1, "failed run with dead alert URLs");
    assert!(out.stderr.contains("alert: webhook failed"), "{out}");
}
