//! Black-box tests of `neopro-backup serve` (docs/format.md: the schedule, HTTP, API): the daemon is
//! started on 127.0.0.1:0 with a throwaway tree and spoken to over raw TCP, as the admin
//! panel, a hostile page in the kiosk browser or a slow client would.
//!
//! Std only. The shapes the admin panel reads are also checked from Node's own `fetch`
//! in tests/node/api.test.mjs.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, far_backup_time};
use common::net::{self, Answer};
use common::{Json, Tree, archives, temp_files};

/// Tests that load the CPU or count the daemon's resources run one at a time, so that a
/// backup compressing hundreds of MB does not make the "within one second" check flaky.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

const TOKEN: &str = "test-token-0123456789abcdef";
const NAME: &str = "backup-20241218-030000.tar.gz";

// ---------------------------------------------------------------------------------
// /proc.

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |rd| rd.count())
}

/// A field of /proc/PID/status, in its unit (kB for VmRSS).
fn proc_status(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the daemon's fd and thread counts stop changing (three equal samples
/// 50 ms apart, within 10 s): its connections have been accepted or turned away.
fn settle(pid: u32) {
    let sample = || (fd_count(pid), proc_status(pid, "Threads"));
    let t0 = Instant::now();
    let mut last = sample();
    let mut same = 0;
    while same < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the daemon's fds and threads never settled: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
        let now = sample();
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
}

fn verify_cli(tree: &Tree, name: &str) {
    let out = tree.run(&["verify", name]);
    assert_eq!(out.code, 0, "`verify {name}` failed\n{out}");
}

fn is_archive_path_under(dir: &Path, name: &str) -> bool {
    std::fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.file_type().is_file())
}

// ---------------------------------------------------------------------------------
// Names, symlinks and files.

#[test]
fn hostile_names_are_400_everywhere() {
    let tree = Tree::new("hostile");
    let real = tree.backup(&[]);
    let d = Daemon::start(&tree, &[]);
    let long = format!("backup-{}-030000.tar.gz", "1".repeat(4000));
    let hostile: Vec<String> = vec![
        "..%2F..%2F..%2Fetc%2Fpasswd".into(),
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd".into(),
        "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd".into(),
        "..%2f".into(),
        "%2e%2e".into(),
        "..".into(),
        "../../etc/passwd".into(),
        "..%5c..%5cetc%5cpasswd".into(),
        format!("..%2F{real}"),
        format!("%2e%2e%2f{real}"),
        format!("{real}%00"),
        format!("{real}%00.txt"),
        "%00".into(),
        format!("%00{real}"),
        "%252e%252e%252fetc%252fpasswd".into(),
        "%252e%252e%252f%252e%252e%252fetc%252fpasswd".into(),
        format!("%252e%252e%252f{real}"),
        // Wrong shapes.
        "backup-2024121-030000.tar.gz".into(),
        "backup-20241218-03000.tar.gz".into(),
        "backup-20241218-030000.tar".into(),
        "backup-20241218-030000.tgz".into(),
        "backup-20241218-030000.tar.gz.tmp".into(),
        "backup-20241218-030000.tar.gzx".into(),
        "BACKUP-20241218-030000.TAR.GZ".into(),
        "backup_20241218_030000.tar.gz".into(),
        "backup-2024121a-030000.tar.gz".into(),
        "backup-20241218-030000%2Etar%2Egz%2F".into(),
        format!(".tmp-{real}"),
        format!("x{real}"),
        format!("{real}x"),
        format!("{real}%20"),
        format!("%20{real}"),
        // Full-width digits (valid UTF-8, not ASCII digits).
        "backup-%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%94%EF%BC%91%EF%BC%92%EF%BC%91%EF%BC%98-030000.tar.gz".into(),
        "last-backup-status.json".into(),
        "backup.log".into(),
        "auto-backup.json".into(),
        // Broken or invalid encodings.
        "%".into(),
        format!("{real}%2"),
        format!("{real}%zz"),
        "%ff%fe".into(),
        "%C0%AE%C0%AE%C0%AF".into(),
        long,
    ];
    let endpoints: [(&str, &str); 4] = [
        ("GET", "/api/backups/download/"),
        ("DELETE", "/api/backups/"),
        ("POST", "/api/backups/verify/"),
        ("POST", "/api/backups/restore/"),
    ];
    for name in &hostile {
        for (method, prefix) in endpoints {
            let r = d.req(method, &format!("{prefix}{name}"), &[], b"");
            assert_eq!(r.status, 400, "{method} {prefix}{name}: {r}");
            assert_eq!(
                r.error(),
                "Nom de fichier invalide",
                "{method} {prefix}{name}"
            );
            assert!(!r.text().contains("root:"), "{method} {prefix}{name}");
        }
    }
    // A raw NUL byte and a backslash in the request line.
    for raw in [
        format!(
            "GET /api/backups/download/{real}\0 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            d.addr
        ),
        format!(
            "GET /api/backups/download/..\\..\\etc\\passwd HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            d.addr
        ),
    ] {
        let r = net::exchange(&d.addr, raw.as_bytes());
        assert_eq!(r.status, 400, "{raw:?}: {r}");
    }
    // A request line over the 16 KiB head limit is refused too (431), never served.
    let huge = format!("/api/backups/download/{}", "a".repeat(20_000));
    let r = d.get(&huge);
    assert!((400..500).contains(&r.status), "{r}");
    // The real archive is untouched, and still served under its own name.
    assert_eq!(archives(&tree.backups), vec![real.clone()]);
    let r = d.get(&format!("/api/backups/download/{real}"));
    assert_eq!(r.status, 200, "{r}");
    // An encoded but valid name is the same file (decoded once).
    let encoded = real.replacen('0', "%30", 1);
    let r2 = d.get(&format!("/api/backups/download/{encoded}"));
    assert_eq!(r2.status, 200, "{r2}");
    assert_eq!(r2.body, r.body);
}

#[test]
fn symlinks_and_non_files_under_valid_names_are_404_and_never_followed() {
    let tree = Tree::new("symlinks");
    let real = tree.backup(&[]);
    let secret = tree.root.join("secret.txt");
    common::write_file(&secret, b"TOP SECRET\n");
    let real_copy = tree.root.join("elsewhere.tar.gz");
    std::fs::copy(tree.archive_path(&real), &real_copy).unwrap_or_else(|e| panic!("{e}"));
    let links = [
        ("backup-20200101-000000.tar.gz", Path::new("/etc/passwd")),
        (
            "backup-20200102-000000.tar.gz",
            Path::new("/nonexistent/backup.tar.gz"),
        ),
        ("backup-20200103-000000.tar.gz", secret.as_path()),
        ("backup-20200104-000000.tar.gz", real_copy.as_path()),
        // Relative, to a real archive in the same folder.
        ("backup-20200105-000000.tar.gz", Path::new(real.as_str())),
    ];
    for (name, target) in links {
        std::os::unix::fs::symlink(target, tree.backups.join(name))
            .unwrap_or_else(|e| panic!("symlink {name}: {e}"));
    }
    let dir_name = "backup-20200106-000000.tar.gz";
    std::fs::create_dir(tree.backups.join(dir_name)).unwrap_or_else(|e| panic!("{e}"));
    let fifo_name = "backup-20200107-000000.tar.gz";
    let ok = Command::new("mkfifo")
        .arg(tree.backups.join(fifo_name))
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mkfifo failed");
    let planted: Vec<&str> = links
        .iter()
        .map(|(n, _)| *n)
        .chain([dir_name, fifo_name])
        .collect();

    let d = Daemon::start(&tree, &[]);
    let check_list = || {
        let r = d.get("/api/backups");
        assert_eq!(r.status, 200, "the list must not fail on links: {r}");
        let j = r.json();
        let names: Vec<&str> = j
            .get("backups")
            .arr()
            .iter()
            .map(|b| b.get("name").str())
            .collect();
        assert_eq!(
            names,
            vec![real.as_str()],
            "only the regular file is listed"
        );
        assert_eq!(j.get("total").u64(), 1);
        assert_eq!(
            j.get("totalSize").u64(),
            std::fs::metadata(tree.archive_path(&real)).map_or(0, |m| m.len())
        );
    };
    check_list();
    for name in &planted {
        for (method, prefix) in [
            ("GET", "/api/backups/download/"),
            ("POST", "/api/backups/verify/"),
            ("DELETE", "/api/backups/"),
        ] {
            let t0 = Instant::now();
            let r = d.req(method, &format!("{prefix}{name}"), &[], b"");
            assert_eq!(r.status, 404, "{method} {prefix}{name}: {r}");
            assert_eq!(r.error(), "Backup non trouvé");
            assert!(!r.text().contains("root:") && !r.text().contains("SECRET"));
            // A FIFO must not block the handler (O_NONBLOCK open).
            assert!(
                t0.elapsed() < Duration::from_secs(2),
                "{method} {name} was slow"
            );
        }
    }
    // Every planted entry is still there, and so are the targets.
    for name in &planted {
        assert!(
            std::fs::symlink_metadata(tree.backups.join(name)).is_ok(),
            "{name} was removed"
        );
    }
    assert!(Path::new("/etc/passwd").exists());
    assert_eq!(std::fs::read(&secret).unwrap_or_default(), b"TOP SECRET\n");
    assert!(real_copy.exists() && is_archive_path_under(&tree.backups, &real));
    check_list();
    assert_eq!(d.get("/metrics").status, 200);
    // The real one is still served, verified and deletable.
    let r = d.post(&format!("/api/backups/verify/{real}"), b"");
    assert_eq!(r.status, 200, "{r}");
    assert!(r.json().get("ok").bool(), "{r}");
    let r = d.req("DELETE", &format!("/api/backups/{real}"), &[], b"");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.text(), r#"{"success":true,"message":"Backup supprimé"}"#);
    assert!(!tree.archive_path(&real).exists());
    // The relative link to it now dangles: still 404, list still 200 and empty.
    let r = d.get("/api/backups/download/backup-20200105-000000.tar.gz");
    assert_eq!(r.status, 404, "{r}");
    let r = d.get("/api/backups");
    assert_eq!(r.status, 200);
    assert!(r.json().get("backups").arr().is_empty());
    // A name that does not exist at all.
    let r = d.get(&format!("/api/backups/download/{NAME}"));
    assert_eq!((r.status, r.error().as_str()), (404, "Backup non trouvé"));
}

#[test]
fn download_streams_the_exact_file_with_headers() {
    let tree = Tree::new("download");
    let name = tree.backup(&[]);
    let d = Daemon::start(&tree, &[]);
    let r = d.get(&format!("/api/backups/download/{name}"));
    assert_eq!(r.status, 200, "{r}");
    let disk = std::fs::read(tree.archive_path(&name)).unwrap_or_default();
    assert_eq!(r.body, disk);
    assert_eq!(r.header("Content-Type"), Some("application/gzip"));
    assert_eq!(
        r.header("Content-Disposition"),
        Some(format!("attachment; filename=\"{name}\"").as_str())
    );
    assert_eq!(
        r.header("Content-Length"),
        Some(disk.len().to_string().as_str())
    );
    // Verify over the API.
    let r = d.post(&format!("/api/backups/verify/{name}"), b"");
    let j = r.json();
    assert_eq!(j.keys(), vec!["ok", "files", "error"]);
    assert!(j.get("ok").bool() && j.get("error").is_null(), "{r}");
    let files = j.get("files").arr();
    assert!(files.len() >= 5, "{r}");
    for f in files {
        assert_eq!(f.keys(), vec!["name", "sha256", "ok"]);
        assert!(f.get("ok").bool());
        assert_eq!(f.get("sha256").str().len(), 64);
    }
    // Keep-alive: two requests on one connection are both answered.
    let mut s = TcpStream::connect(&d.addr).unwrap_or_else(|e| panic!("{e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let one = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", d.addr);
    let two = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        d.addr
    );
    s.write_all(format!("{one}{two}").as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&buf);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
}

// ---------------------------------------------------------------------------------
// Concurrency and resources.

/// A tree whose backup (videos included) takes seconds in a debug build: 12 MiB of
/// incompressible video.
fn slow_tree(name: &str) -> Tree {
    let tree = Tree::new(name);
    tree.add_video(b"big/slow-match.mp4", 12 << 20, common::BASE_MTIME);
    tree
}

/// POST /api/backups/create from a thread of its own.
fn create_in_background(d: &Arc<Daemon>) -> std::thread::JoinHandle<Answer> {
    let d = Arc::clone(d);
    std::thread::spawn(move || d.post("/api/backups/create", b""))
}

#[test]
fn parallel_creates_one_runs_the_others_are_409_and_every_archive_verifies() {
    let _g = heavy();
    let tree = slow_tree("parallel");
    let d = Arc::new(Daemon::start(&tree, &[("INCLUDE_VIDEOS", "true")]));
    let barrier = Arc::new(Barrier::new(6));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let d = Arc::clone(&d);
            let b = Arc::clone(&barrier);
            std::thread::spawn(move || {
                b.wait();
                d.post("/api/backups/create", b"")
            })
        })
        .collect();
    let answers: Vec<Answer> = handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| panic!("client thread panicked"))
        })
        .collect();
    let mut made = Vec::new();
    let mut refused = 0;
    for r in &answers {
        let j = r.json();
        match r.status {
            200 => {
                assert!(j.get("success").bool());
                assert_eq!(j.get("message").str(), "Backup créé avec succès");
                assert!(
                    !j.get("output").str().is_empty(),
                    "output carries the run's log"
                );
                made.push(j.get("archive").str().to_string());
            }
            409 => {
                assert!(!j.get("success").bool());
                assert_eq!(j.get("error").str(), "Un backup est déjà en cours");
                assert!(!j.get("details").str().is_empty());
                refused += 1;
            }
            other => panic!("unexpected {other}: {r}"),
        }
    }
    // Six requests released together against a backup that takes seconds: one runs,
    // and the ones that arrive while it runs are refused, never queued or interleaved.
    assert!(
        !made.is_empty() && refused >= 1,
        "one create runs and the others are 409 while it does: {} made, {refused} refused\n{}",
        made.len(),
        answers
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // One more afterwards: the lock was released, a new name.
    let r = d.post("/api/backups/create", b"");
    assert_eq!(r.status, 200, "{r}");
    made.push(r.json().get("archive").str().to_string());
    let mut unique = made.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), made.len(), "archive names reused: {made:?}");
    let on_disk = archives(&tree.backups);
    assert_eq!(
        on_disk, unique,
        "the archives on disk are the ones reported"
    );
    assert!(temp_files(&tree.backups).is_empty());
    for name in &on_disk {
        verify_cli(&tree, name);
    }
}

#[test]
fn a_create_while_a_backup_runs_is_409_and_changes_nothing() {
    let _g = heavy();
    let tree = slow_tree("busy");
    let d = Arc::new(Daemon::start(&tree, &[("INCLUDE_VIDEOS", "true")]));
    let first = create_in_background(&d);
    wait_for(
        "the first backup to start writing",
        Duration::from_secs(30),
        || !temp_files(&tree.backups).is_empty(),
    );
    let writing = temp_files(&tree.backups);
    let refused: Vec<Answer> = (0..3).map(|_| d.post("/api/backups/create", b"")).collect();
    // Only meaningful if the first one was still running when the answers came back:
    // its temporary file is still there, under the same name.
    assert_eq!(
        temp_files(&tree.backups),
        writing,
        "the first backup was no longer running when the answers came back: either the \
         creates waited for it instead of being refused, or it ended too soon (then make \
         slow_tree slower)"
    );
    for r in &refused {
        assert_eq!(r.status, 409, "a create while one runs: {r}");
        let j = r.json();
        assert!(!j.get("success").bool(), "{r}");
        assert_eq!(j.get("error").str(), "Un backup est déjà en cours");
        assert_eq!(j.get("details").str(), "Réessayez dans quelques instants");
    }
    let r = first.join().unwrap_or_else(|_| panic!("client panicked"));
    assert_eq!(r.status, 200, "the running one is not disturbed: {r}");
    let name = r.json().get("archive").str().to_string();
    assert_eq!(
        archives(&tree.backups),
        std::slice::from_ref(&name),
        "one archive only"
    );
    assert!(temp_files(&tree.backups).is_empty());
    verify_cli(&tree, &name);
}

#[test]
fn a_failed_create_is_500_with_the_reason_and_is_recorded() {
    let _g = heavy();
    let tree = Tree::new("create500");
    // BACKUP_DIR on a 2 MiB tmpfs (root, as in CI), videos that cannot fit.
    let _mnt = common::Tmpfs::mount(&tree.backups, 2 << 20, "");
    tree.add_video(b"big/match.mp4", 3 << 20, common::BASE_MTIME);
    let d = Daemon::start(&tree, &[("INCLUDE_VIDEOS", "true")]);
    let r = d.post("/api/backups/create", b"");
    assert_eq!(r.status, 500, "a failed backup: {r}");
    let j = r.json();
    assert_eq!(
        j.keys(),
        ["success", "error", "details"],
        "the contract's shape: {r}"
    );
    assert!(!j.get("success").bool());
    assert_eq!(j.get("error").str(), "Échec de la création du backup");
    assert!(
        j.get("details").str().contains("no space left"),
        "details give the reason: {r}"
    );
    assert!(archives(&tree.backups).is_empty(), "no partial archive");
    assert!(temp_files(&tree.backups).is_empty(), "no temporary file");
    let st = tree.status();
    assert!(!st.get("success").bool(), "the failure is recorded: {st:?}");
    assert!(st.get("error").str().contains("no space left"), "{st:?}");
    let metrics = d.get("/metrics").text();
    assert!(
        metrics.contains("\nneopro_backup_failures_total 1\n")
            && metrics.contains("\nneopro_backup_last_run_success 0\n"),
        "{metrics}"
    );
}

#[test]
fn stalled_clients_do_not_block_requests_or_grow_memory() {
    let _g = heavy();
    let tree = Tree::new("stalled");
    tree.backup(&[]);
    let d = Daemon::start(&tree, &[]);
    let pid = d.pid();
    assert_eq!(d.get("/api/backups").status, 200);
    settle(pid);
    let fds0 = fd_count(pid);
    let threads0 = proc_status(pid, "Threads");
    let rss0 = proc_status(pid, "VmRSS");

    // From ten addresses (20 each): one address holds at most 32 connections.
    let stall = |n: usize| -> Vec<TcpStream> {
        (0..n)
            .map(|i| {
                let src = net::loopback(10 + (i % 10) as u8);
                let mut s = net::connect_from(&d.addr, src).unwrap_or_else(|e| panic!("{e}"));
                s.write_all(b"GET /api/bac")
                    .unwrap_or_else(|e| panic!("{e}"));
                s
            })
            .collect()
    };
    let mut stalled = stall(200);
    wait_for(
        "200 stalled connections accepted",
        Duration::from_secs(5),
        || fd_count(pid) >= fds0 + 200,
    );
    for _ in 0..3 {
        let t0 = Instant::now();
        let r = d.get("/api/backups");
        let took = t0.elapsed();
        assert_eq!(r.status, 200, "{r}");
        assert!(
            took < Duration::from_secs(1),
            "a normal GET took {took:?} with 200 stalled clients"
        );
    }
    let rss200 = proc_status(pid, "VmRSS");
    // 200 more: past the cap of connection threads, they are turned away, not queued.
    stalled.extend(stall(200));
    settle(pid);
    let threads = proc_status(pid, "Threads");
    let rss400 = proc_status(pid, "VmRSS");
    let fds400 = fd_count(pid);
    eprintln!(
        "stalled clients: RSS {rss0} kB idle, {rss200} kB with 200, {rss400} kB with 400; \
         threads {threads0} -> {threads}; fds {fds0} -> {fds400}"
    );
    assert!(
        threads <= threads0 + 260,
        "threads grew without bound: {threads0} -> {threads}"
    );
    assert!(
        // Two per connection thread (the socket and its clone for writing), at most 256.
        fds400 <= fds0 + 2 * 256 + 8,
        "fds grew without bound: {fds0} -> {fds400}"
    );
    assert!(
        rss400 <= rss0 + 32 * 1024,
        "RSS grew from {rss0} kB to {rss400} kB with 400 stalled clients"
    );
    drop(stalled);
    wait_for(
        "the fd count back to its baseline",
        Duration::from_secs(5),
        || fd_count(pid) <= fds0,
    );
    wait_for(
        "the thread count back to its baseline",
        Duration::from_secs(5),
        || proc_status(pid, "Threads") <= threads0,
    );
    let t0 = Instant::now();
    assert_eq!(d.get("/api/backups").status, 200);
    assert!(t0.elapsed() < Duration::from_secs(1));
}

/// Bodies that are not JSON, of the kinds that made nanoserde 0.2.1 panic (a stray `]`
/// or `:` in a field it does not know: the release build aborts) or loop for ever (a
/// value cut short): a neighbour on the LAN gets a 400 at once, and the daemon goes on.
#[test]
fn json_bodies_that_are_not_json_are_400_and_the_daemon_goes_on() {
    let tree = Tree::new("badjson");
    let d = Daemon::start(&tree, &[]);
    for body in [
        r#"{"enable": true, "x": ]}"#,
        r#"{"x": :, "enable": true}"#,
        r#"{"enable": true, "x": [1, 2"#,
        r#"{"enable": true, "x": {"y": [[[["#,
        r#"{"enable": true, "x": }"#,
    ] {
        let t0 = Instant::now();
        let r = d.post_json("/api/backups/auto-toggle", body);
        assert_eq!(r.status, 400, "{body}: {r}");
        assert!(t0.elapsed() < Duration::from_secs(5), "{body}");
        let r = d.post_json(
            "/api/backups/restore/backup-20241218-030000.tar.gz",
            &body.replace("enable", "dryRun"),
        );
        assert!(matches!(r.status, 400 | 404), "{body}: {r}");
        assert_eq!(d.get("/healthz").status, 200, "{body}");
    }
    // JSON with the same unknown fields, whole: read as before.
    let r = d.post_json(
        "/api/backups/auto-toggle",
        r#"{"x": [1, {"y": ":"}], "enable": false}"#,
    );
    assert_eq!(r.status, 200, "{r}");
    assert!(!d.auto_status().get("enabled").bool());
}

#[test]
fn request_bodies_over_64_kib_are_413() {
    let tree = Tree::new("body");
    let d = Daemon::start(&tree, &[]);
    // Refused on its Content-Length, before the body is read.
    for path in [
        "/api/backups/auto-toggle",
        "/api/backups/create",
        "/api/backups/restore/backup-20241218-030000.tar.gz",
    ] {
        let raw = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 65537\r\nConnection: close\r\n\r\n",
            d.addr
        );
        let r = net::exchange(&d.addr, raw.as_bytes());
        assert_eq!(r.status, 413, "{path}: {r}");
        assert!(!r.error().is_empty());
    }
    let raw = format!(
        "POST /api/backups/auto-toggle HTTP/1.1\r\nHost: {}\r\nContent-Length: 99999999999\r\nConnection: close\r\n\r\n",
        d.addr
    );
    assert_eq!(net::exchange(&d.addr, raw.as_bytes()).status, 413);
    // Exactly 64 KiB is accepted.
    let mut body = b"{\"enable\":true}".to_vec();
    body.resize(64 * 1024, b' ');
    let r = d.post("/api/backups/auto-toggle", &body);
    assert_eq!(r.status, 200, "{r}");
    // Chunked bodies (no length known up front) are refused, not read without bound.
    let raw = format!(
        "POST /api/backups/auto-toggle HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n10000\r\n",
        d.addr
    );
    let r = net::exchange(&d.addr, raw.as_bytes());
    assert!((400..500).contains(&r.status), "{r}");
}

// ---------------------------------------------------------------------------------
// Security: token, listen address, origin.

#[test]
fn the_token_guards_api_and_metrics_but_not_healthz_and_the_page() {
    let tree = Tree::new("token");
    let name = tree.backup(&[]);
    let d = Daemon::start(&tree, &[("API_TOKEN", TOKEN)]);
    let good = format!("Bearer {TOKEN}");
    let wrong_same_len = format!("Bearer {}", TOKEN.replace('0', "1"));
    let guarded: Vec<(&str, String)> = vec![
        ("GET", "/api/backups".into()),
        ("GET", format!("/api/backups/download/{name}")),
        ("GET", "/api/backups/auto-status".into()),
        ("POST", "/api/backups/create".into()),
        ("POST", "/api/backups/auto-toggle".into()),
        ("POST", format!("/api/backups/verify/{name}")),
        ("POST", format!("/api/backups/restore/{name}")),
        ("DELETE", format!("/api/backups/{name}")),
        ("GET", "/api/unknown".into()),
        ("GET", "/metrics".into()),
    ];
    let bad_auth: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("Authorization", "Bearer wrong-token-wrong-token")],
        vec![("Authorization", wrong_same_len.as_str())],
        vec![("Authorization", "Bearer ")],
        vec![("Authorization", &good[..good.len() - 1])],
        vec![("Authorization", TOKEN)],
        vec![("Authorization", "Basic dXNlcjpwYXNz")],
        vec![("X-Api-Token", TOKEN)],
    ];
    for (method, path) in &guarded {
        for headers in &bad_auth {
            let body: &[u8] = if path.ends_with("auto-toggle") {
                b"{\"enable\":false}"
            } else {
                b""
            };
            let r = d.req(method, path, headers, body);
            assert_eq!(r.status, 401, "{method} {path} {headers:?}: {r}");
            assert!(!r.body.starts_with(b"\x1f\x8b"), "archive bytes leaked");
            assert!(!r.text().contains(TOKEN), "the token is never echoed");
        }
        // A token in the query string is not a token.
        let r = d.req(method, &format!("{path}?token={TOKEN}"), &[], b"");
        assert_eq!(r.status, 401, "{method} {path}?token=: {r}");
    }
    // Nothing changed.
    assert_eq!(archives(&tree.backups), vec![name.clone()]);
    let ok = [("Authorization", good.as_str())];
    let r = d.req("GET", "/api/backups", &ok, b"");
    assert_eq!(r.status, 200, "{r}");
    let r = d.req("GET", &format!("/api/backups/download/{name}"), &ok, b"");
    assert_eq!(r.status, 200, "{r}");
    assert!(r.body.starts_with(b"\x1f\x8b"));
    let r = d.req("GET", "/metrics", &ok, b"");
    assert_eq!(r.status, 200, "{r}");
    let r = d.req("GET", "/api/backups/auto-status", &ok, b"");
    assert_eq!(r.status, 200, "{r}");
    for open in ["/healthz", "/"] {
        let r = d.get(open);
        assert_eq!(r.status, 200, "{open} needs no token: {r}");
    }
    assert_eq!(d.get("/healthz").text(), "ok");
}

#[test]
fn a_non_loopback_listen_needs_a_token() {
    let tree = Tree::new("listen");
    for (listen, token) in [
        ("0.0.0.0:0", None),
        ("[::]:0", None),
        ("0.0.0.0:0", Some("short")),
    ] {
        let mut c = tree.command(&["serve"]);
        c.env("LISTEN", listen)
            .env("NEOPRO_CATCHUP_DELAY", "3600")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(t) = token {
            c.env("API_TOKEN", t);
        }
        let mut child = c.spawn().unwrap_or_else(|e| panic!("{e}"));
        let t0 = Instant::now();
        let status = loop {
            if let Ok(Some(st)) = child.try_wait() {
                break st;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("LISTEN={listen} token={token:?}: the daemon started instead of refusing");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        assert_eq!(
            status.code(),
            Some(2),
            "LISTEN={listen} token={token:?}: {err}"
        );
        assert!(
            err.contains("API_TOKEN"),
            "the message names the key: {err}"
        );
        if let Some(t) = token {
            assert!(!err.contains(t), "the token is never echoed: {err}");
        }
        assert!(archives(&tree.backups).is_empty());
    }
}

#[test]
fn cross_origin_state_changes_are_403() {
    let tree = Tree::new("origin");
    let name = tree.backup(&[]);
    let d = Daemon::start(&tree, &[]);
    let own = format!("http://{}", d.addr);
    let evil: Vec<Vec<(&str, &str)>> = vec![
        vec![("Origin", "http://evil.example")],
        vec![("Origin", "null")],
        vec![("Origin", "http://127.0.0.1")],
        vec![("Origin", "https://127.0.0.1:1")],
        vec![("Sec-Fetch-Site", "cross-site")],
        vec![("Origin", own.as_str()), ("Sec-Fetch-Site", "cross-site")],
    ];
    for headers in &evil {
        let r = d.req("POST", "/api/backups/create", headers, b"");
        assert_eq!(r.status, 403, "create {headers:?}: {r}");
        assert!(!r.error().is_empty());
        let r = d.req("DELETE", &format!("/api/backups/{name}"), headers, b"");
        assert_eq!(r.status, 403, "delete {headers:?}: {r}");
        let r = d.req(
            "POST",
            "/api/backups/auto-toggle",
            &[headers.as_slice(), &[("Content-Type", "application/json")]].concat(),
            b"{\"enable\":false}",
        );
        assert_eq!(r.status, 403, "toggle {headers:?}: {r}");
        let r = d.req(
            "POST",
            &format!("/api/backups/restore/{name}"),
            headers,
            b"{\"dryRun\":true}",
        );
        assert_eq!(r.status, 403, "restore {headers:?}: {r}");
    }
    assert_eq!(
        archives(&tree.backups),
        vec![name.clone()],
        "nothing created or deleted"
    );
    assert!(
        d.get("/api/backups/auto-status")
            .json()
            .get("enabled")
            .bool()
    );
    // A DNS-rebinding Host is refused outright.
    let raw = "GET /api/backups HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n";
    assert_eq!(net::exchange(&d.addr, raw.as_bytes()).status, 403);
    // Same origin (and no Origin at all, as curl or the admin server sends) is allowed.
    let r = d.req(
        "POST",
        "/api/backups/create",
        &[("Origin", own.as_str()), ("Sec-Fetch-Site", "same-origin")],
        b"",
    );
    assert_eq!(r.status, 200, "own origin: {r}");
    let made = r.json().get("archive").str().to_string();
    let r = d.req(
        "DELETE",
        &format!("/api/backups/{made}"),
        &[("Origin", own.as_str())],
        b"",
    );
    assert_eq!(r.status, 200, "own origin delete: {r}");
    let r = d.req("DELETE", &format!("/api/backups/{name}"), &[], b"");
    assert_eq!(r.status, 200, "no Origin: {r}");
    assert!(archives(&tree.backups).is_empty());
}

// ---------------------------------------------------------------------------------
// Routing and the JSON endpoints.

#[test]
fn unknown_paths_404_and_wrong_methods_405_in_json() {
    let tree = Tree::new("routes");
    let d = Daemon::start(&tree, &[]);
    for path in [
        "/api/nope",
        "/nope",
        "/api",
        "/api/backups/",
        "/api/backupsx",
        "/metrics/x",
        "/index.html",
    ] {
        let r = d.get(path);
        assert_eq!(r.status, 404, "{path}: {r}");
        assert!(!r.error().is_empty(), "{path}");
    }
    for (method, path) in [
        ("PUT", "/api/backups"),
        ("POST", "/api/backups"),
        ("DELETE", "/api/backups"),
        ("GET", "/api/backups/create"),
        ("DELETE", "/api/backups/create"),
        ("POST", "/api/backups/auto-status"),
        ("GET", "/api/backups/auto-toggle"),
        (
            "POST",
            "/api/backups/download/backup-20241218-030000.tar.gz",
        ),
        ("GET", "/api/backups/verify/backup-20241218-030000.tar.gz"),
        ("GET", "/api/backups/restore/backup-20241218-030000.tar.gz"),
        ("GET", "/api/backups/backup-20241218-030000.tar.gz"),
        ("PATCH", "/api/backups/backup-20241218-030000.tar.gz"),
        ("POST", "/metrics"),
        ("POST", "/healthz"),
        ("DELETE", "/"),
    ] {
        let r = d.req(method, path, &[], b"");
        assert_eq!(r.status, 405, "{method} {path}: {r}");
        assert!(!r.error().is_empty());
        assert!(
            r.header("Allow").is_some(),
            "{method} {path}: 405 names the allowed method"
        );
    }
    // Not HTTP at all.
    let r = net::exchange(&d.addr, b"HELLO\r\n\r\n");
    assert_eq!(r.status, 400, "{r}");
}

#[test]
fn auto_toggle_takes_only_a_json_boolean() {
    let tree = Tree::new("toggle");
    let d = Daemon::start(&tree, &[]);
    let ct = [("Content-Type", "application/json")];
    for body in [
        r#"{"enable":"false"}"#,
        r#"{"enable":"true"}"#,
        r#"{"enable":0}"#,
        r#"{"enable":1}"#,
        r#"{"enable":null}"#,
        r#"{"enable":[]}"#,
        r#"{"enable":{}}"#,
        r#"{"enabled":false}"#,
        r#"{}"#,
        "",
        "false",
        "null",
        "[false]",
        r#"{"enable":false"#,
        r#"{"enable":false}x"#,
        "enable=false",
    ] {
        let r = d.req("POST", "/api/backups/auto-toggle", &ct, body.as_bytes());
        assert_eq!(r.status, 400, "{body:?}: {r}");
        assert_eq!(r.error(), "Paramètre \"enable\" requis", "{body:?}");
        let st = d.get("/api/backups/auto-status").json();
        assert!(
            st.get("enabled").bool(),
            "{body:?} must not switch the schedule off"
        );
    }
    let r = d.req(
        "POST",
        "/api/backups/auto-toggle",
        &ct,
        br#"{"enable":false}"#,
    );
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        r.text(),
        r#"{"success":true,"message":"Backup automatique désactivé","enabled":false}"#
    );
    let r = d.req(
        "POST",
        "/api/backups/auto-toggle",
        &ct,
        br#"{"enable":true}"#,
    );
    assert_eq!(
        r.text(),
        r#"{"success":true,"message":"Backup automatique activé","enabled":true}"#
    );
}

#[test]
fn auto_toggle_survives_a_restart() {
    let tree = Tree::new("persist");
    tree.backup(&[]);
    let d = Daemon::start(&tree, &[]);
    let st = d.get("/api/backups/auto-status").json();
    assert!(
        st.get("enabled").bool() && st.get("active").bool(),
        "{st:?}"
    );
    let r = d.req(
        "POST",
        "/api/backups/auto-toggle",
        &[("Content-Type", "application/json")],
        br#"{"enable":false}"#,
    );
    assert_eq!(r.status, 200, "{r}");
    let st = d.get("/api/backups/auto-status").json();
    assert!(
        !st.get("enabled").bool() && !st.get("active").bool(),
        "{st:?}"
    );
    let metrics = d.get("/metrics").text();
    assert!(
        metrics.contains("\nneopro_backup_schedule_enabled 0\n"),
        "{metrics}"
    );
    let (st, took, log) = d.terminate(Duration::from_secs(5));
    assert_eq!(st.code(), Some(0), "{log}");
    assert!(
        took < Duration::from_secs(3),
        "an idle daemon stops at once: {took:?}"
    );

    let d = Daemon::start(&tree, &[]);
    let st = d.get("/api/backups/auto-status").json();
    assert!(
        !st.get("enabled").bool(),
        "the choice survives a restart: {st:?}"
    );
    assert!(!st.get("active").bool());
    assert!(st.get("nextRun").is_null(), "no next run while off: {st:?}");
    let r = d.req(
        "POST",
        "/api/backups/auto-toggle",
        &[("Content-Type", "application/json")],
        br#"{"enable":true}"#,
    );
    assert_eq!(r.status, 200, "{r}");
    drop(d);
    let d = Daemon::start(&tree, &[]);
    let st = d.get("/api/backups/auto-status").json();
    assert!(st.get("enabled").bool(), "{st:?}");
    assert!(matches!(st.get("nextRun"), Json::Str(_)), "{st:?}");
}

/// `Wed 2024-12-18 03:00:00 CET`, as systemd prints a timer's next run.
fn is_systemd_time(s: &str, zones: &[&str]) -> bool {
    let parts: Vec<&str> = s.split(' ').collect();
    let [day, date, time, zone] = parts.as_slice() else {
        return false;
    };
    let digits = |t: &str, shape: &str| {
        t.len() == shape.len()
            && t.bytes().zip(shape.bytes()).all(|(c, p)| {
                if p == b'9' {
                    c.is_ascii_digit()
                } else {
                    c == p
                }
            })
    };
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(day)
        && digits(date, "9999-99-99")
        && digits(time, "99:99:99")
        && zones.contains(zone)
}

#[test]
fn auto_status_has_the_contract_shape() {
    let tree = Tree::new("autostatus");
    // A fresh success: no catch-up, so the next run is the next 03:00 in Paris.
    tree.backup(&[("TZ", "Europe/Paris")]);
    let d = Daemon::start(&tree, &[("TZ", "Europe/Paris"), ("BACKUP_TIME", "03:00")]);
    let r = d.get("/api/backups/auto-status");
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(
        j.keys(),
        vec!["enabled", "active", "nextRun", "logs"],
        "{r}"
    );
    assert!(j.get("enabled").bool() && j.get("active").bool(), "{r}");
    let next = j.get("nextRun").str();
    assert!(is_systemd_time(next, &["CET", "CEST"]), "nextRun {next:?}");
    assert!(next.contains(" 03:00:00 "), "nextRun {next:?}");
    let logs = j.get("logs").str();
    assert!(!logs.is_empty() && logs.lines().count() <= 20, "{logs}");
    assert!(
        logs.contains("+01:00") || logs.contains("+02:00"),
        "log times are local: {logs}"
    );
    // The next run's timestamp agrees, within a day.
    let m = d.get("/metrics").text();
    let ts = metric_value(&m, "neopro_backup_next_run_timestamp_seconds");
    let now = common::now_unix() as f64;
    assert!(
        ts > now && ts <= now + 86_400.0 + 3600.0,
        "next run {ts} vs now {now}"
    );
    // The last 20 log lines, no more.
    for _ in 0..25 {
        let r = d.req(
            "POST",
            "/api/backups/auto-toggle",
            &[("Content-Type", "application/json")],
            br#"{"enable":true}"#,
        );
        assert_eq!(r.status, 200);
    }
    let j = d.get("/api/backups/auto-status").json();
    assert_eq!(j.get("logs").str().lines().count(), 20);
}

fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample for {name} in\n{text}"))
}

#[test]
fn metrics_are_prometheus_text() {
    let tree = Tree::new("metrics");
    let d = Daemon::start(&tree, &[]);
    let before = d.get("/metrics");
    assert_eq!(before.status, 200);
    assert!(
        before
            .header("Content-Type")
            .unwrap_or_default()
            .starts_with("text/plain"),
        "{before}"
    );
    assert_eq!(
        metric_value(
            &before.text(),
            "neopro_backup_last_success_timestamp_seconds"
        ),
        0.0
    );
    assert_eq!(metric_value(&before.text(), "neopro_backup_archives"), 0.0);
    let r = d.post("/api/backups/create", b"");
    assert_eq!(r.status, 200, "{r}");
    let r = d.get("/metrics");
    let text = r.text();
    let names = [
        ("neopro_backup_last_success_timestamp_seconds", "gauge"),
        ("neopro_backup_last_run_success", "gauge"),
        ("neopro_backup_last_duration_seconds", "gauge"),
        ("neopro_backup_last_size_bytes", "gauge"),
        ("neopro_backup_failures_total", "counter"),
        ("neopro_backup_next_run_timestamp_seconds", "gauge"),
        ("neopro_backup_archives", "gauge"),
        ("neopro_backup_archives_bytes", "gauge"),
        ("neopro_backup_offsite_pending", "gauge"),
    ];
    for (name, kind) in names {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} {kind}\n{text}"
        );
        assert!(text.contains(&format!("# HELP {name} ")), "{name}\n{text}");
        metric_value(&text, name);
    }
    // Every line is a comment or `name value`.
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        assert!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "bad name {name:?}"
        );
        assert!(value.parse::<f64>().is_ok(), "bad value in {line:?}");
    }
    assert!(text.ends_with('\n'));
    let now = common::now_unix() as f64;
    let last = metric_value(&text, "neopro_backup_last_success_timestamp_seconds");
    assert!(
        (now - last).abs() < 120.0,
        "last success {last} vs now {now}"
    );
    assert_eq!(metric_value(&text, "neopro_backup_last_run_success"), 1.0);
    assert_eq!(metric_value(&text, "neopro_backup_archives"), 1.0);
    assert_eq!(metric_value(&text, "neopro_backup_failures_total"), 0.0);
    assert_eq!(metric_value(&text, "neopro_backup_offsite_pending"), 0.0);
    let size = metric_value(&text, "neopro_backup_archives_bytes");
    let on_disk: u64 = archives(&tree.backups)
        .iter()
        .map(|a| std::fs::metadata(tree.archive_path(a)).map_or(0, |m| m.len()))
        .sum();
    assert_eq!(size, on_disk as f64);
}

// ---------------------------------------------------------------------------------
// The daemon's life: SIGTERM, catch-up, systemd.

#[test]
fn sigterm_during_a_backup_exits_0_and_leaves_no_partial_archive() {
    let _g = heavy();
    let tree = Tree::new("sigterm");
    for i in 0..4 {
        tree.add_video(
            format!("big/match-{i}.mp4").as_bytes(),
            64 << 20,
            common::BASE_MTIME,
        );
    }
    // No grace: videos go at disk speed now (stored blocks), so 256 MiB may well be done
    // within the default 3 s; the abandoning is what this test is about.
    let d = Daemon::start(
        &tree,
        &[
            ("INCLUDE_VIDEOS", "true"),
            ("NEOPRO_SHUTDOWN_GRACE_MS", "0"),
        ],
    );
    let client = {
        let addr = d.addr.clone();
        std::thread::spawn(move || {
            // The answer (500, or a closed connection) does not matter here.
            let raw = format!(
                "POST /api/backups/create HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let mut s = TcpStream::connect(&addr).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
            s.write_all(raw.as_bytes()).ok()?;
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            net::parse_answer(&buf)
        })
    };
    wait_for(
        "the backup to start writing",
        Duration::from_secs(20),
        || !temp_files(&tree.backups).is_empty(),
    );
    assert!(
        archives(&tree.backups).is_empty() && !client.is_finished(),
        "this backup was expected to take more than a second"
    );
    let (st, took, log) = d.terminate(Duration::from_secs(10));
    eprintln!("SIGTERM during a backup: exit {st} after {took:?}");
    assert_eq!(st.code(), Some(0), "exit code after SIGTERM\n{log}");
    // Typically well under a second: no grace, the backup is abandoned at its next read.
    // The daemon's own bound is the grace + 5 s; the slack is for fsyncs on a busy disk.
    // (An abandoned backup that does not stop leaves its temporary file: checked below.)
    assert!(
        took <= Duration::from_secs(9),
        "SIGTERM took {took:?} to stop the daemon\n{log}"
    );
    // The backup is abandoned, not finished, and the daemon says so.
    assert!(
        log.contains("abandoning the running backup"),
        "the running backup must be abandoned after the grace period\n{log}"
    );
    assert!(log.contains("backup failed"), "{log}");
    let answer = client.join().unwrap_or_else(|_| panic!("client panicked"));
    if let Some(r) = answer {
        // The handler may still answer before the process ends: then a failure.
        assert_eq!(r.status, 500, "an abandoned backup is not a success: {r}");
        assert!(r.json().get("details").str().contains("cancelled"), "{r}");
    }
    assert!(
        temp_files(&tree.backups).is_empty(),
        "a temporary file was left: {:?}\n{log}",
        common::names_in(&tree.backups)
    );
    assert!(
        archives(&tree.backups).is_empty(),
        "no archive from an abandoned backup: {:?}",
        common::names_in(&tree.backups)
    );
    // The abandoned run is recorded as a failed run.
    let st = tree.status();
    assert!(!st.get("success").bool(), "{st:?}\n{log}");
    assert!(st.get("archive").is_null(), "{st:?}");
    assert!(
        st.get("error").str().contains("cancelled"),
        "the reason is recorded: {st:?}"
    );
    // The next start finds nothing to clean and serves normally.
    let d = Daemon::start(&tree, &[]);
    assert_eq!(d.get("/api/backups").status, 200);
    assert!(
        !d.log().contains("left by an interrupted run"),
        "{}",
        d.log()
    );
}

/// BACKUP_DIR/backup.log (the daemon appends to it before it logs to stderr).
fn backup_log(tree: &Tree) -> String {
    std::fs::read_to_string(tree.backups.join("backup.log")).unwrap_or_default()
}

/// The auto-status nextRun of a daemon whose next run is the daily one at `hhmm`.
fn is_daily_run(next_run: &Json, hhmm: &str) -> bool {
    matches!(next_run, Json::Str(s) if s.contains(&format!(" {hhmm}:00 ")) && s.ends_with(" UTC"))
}

/// Polls until `until` for something that must not happen (a second run...): a
/// negative check needs a window; it fails as soon as `bad` turns true.
fn never_until(until: Instant, what: &str, mut bad: impl FnMut() -> bool) {
    while Instant::now() < until {
        assert!(!bad(), "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!bad(), "{what}");
}

/// A last-backup-status.json as a run at `unix` would have left it; a failed one keeps
/// `last_success` (a success at the same time), so that only the failure is stale.
fn write_status(tree: &Tree, unix: i64, success: bool) {
    let ts = common::iso_utc(unix);
    let (archive, error) = if success {
        ("\"backup-20200101-030000.tar.gz\"", "null")
    } else {
        ("null", "\"disk on fire\"")
    };
    let json = format!(
        "{{\"timestamp\":\"{ts}\",\"date\":\"{}\",\"success\":{success},\"archive\":{archive},\
         \"size\":\"1.0 KB\",\"size_bytes\":1024,\"backups_count\":1,\"retention_days\":7,\
         \"duration_ms\":5,\"warnings\":[],\"error\":{error},\"last_success\":\"{ts}\"}}\n",
        &ts[..10]
    );
    common::write_file(
        &tree.backups.join("last-backup-status.json"),
        json.as_bytes(),
    );
}

#[test]
fn catch_up_runs_soon_after_start_when_no_backup_exists() {
    let tree = Tree::new("catchup");
    let daily = far_backup_time();
    let d = Daemon::start(
        &tree,
        &[("NEOPRO_CATCHUP_DELAY", "1"), ("BACKUP_TIME", &daily)],
    );
    // Planned (and logged to backup.log) before the server answers its first request.
    assert_eq!(d.get("/healthz").status, 200);
    assert!(
        backup_log(&tree).contains("catching up soon"),
        "{}",
        d.log()
    );
    wait_for("a catch-up archive", Duration::from_secs(30), || {
        archives(&tree.backups).len() == 1 && temp_files(&tree.backups).is_empty()
    });
    let name = archives(&tree.backups).remove(0);
    verify_cli(&tree, &name);
    // Then the schedule moves on to the next BACKUP_TIME, twelve hours away.
    wait_for(
        "the next run to be the daily one",
        Duration::from_secs(10),
        || {
            is_daily_run(
                d.get("/api/backups/auto-status").json().get("nextRun"),
                &daily,
            )
        },
    );
    assert_eq!(archives(&tree.backups), [name], "{}", d.log());
}

#[test]
fn catch_up_after_a_failed_or_old_or_future_last_status() {
    let now = common::now_unix();
    for (what, at, success) in [
        (
            "the last run failed (its last success is an hour old)",
            now - 3600,
            false,
        ),
        ("the last success is two days old", now - 2 * 86_400, true),
        ("the last success is dated a day ahead", now + 86_400, true),
    ] {
        let tree = Tree::new("catchup-status");
        write_status(&tree, at, success);
        let daily = far_backup_time();
        let d = Daemon::start(
            &tree,
            &[("NEOPRO_CATCHUP_DELAY", "1"), ("BACKUP_TIME", &daily)],
        );
        assert_eq!(d.get("/healthz").status, 200);
        assert!(
            backup_log(&tree).contains("catching up soon"),
            "{what}\n{}",
            d.log()
        );
        wait_for(what, Duration::from_secs(30), || {
            archives(&tree.backups).len() == 1 && tree.status().get("success").bool()
        });
        wait_for(
            "the next run to be the daily one",
            Duration::from_secs(10),
            || {
                is_daily_run(
                    d.get("/api/backups/auto-status").json().get("nextRun"),
                    &daily,
                )
            },
        );
    }
}

#[test]
fn a_manual_backup_makes_a_pending_catch_up_moot() {
    let tree = Tree::new("catchupmoot");
    let daily = far_backup_time();
    let started = Instant::now();
    let d = Daemon::start(
        &tree,
        &[("NEOPRO_CATCHUP_DELAY", "2"), ("BACKUP_TIME", &daily)],
    );
    let r = d.post("/api/backups/create", b"");
    assert_eq!(r.status, 200, "{r}");
    // At once: the next run shown is the daily one, not the catch-up.
    let st = d.get("/api/backups/auto-status").json();
    assert!(
        is_daily_run(st.get("nextRun"), &daily),
        "{st:?}\n{}",
        d.log()
    );
    // The catch-up was due 2 s after the start: past that (and the loop's one-second
    // slices), still one archive.
    never_until(
        started + Duration::from_secs(5),
        "the moot catch-up ran anyway",
        || archives(&tree.backups).len() != 1,
    );
}

#[test]
fn no_catch_up_when_the_last_success_is_fresh() {
    let tree = Tree::new("nocatchup");
    let first = tree.backup(&[]);
    let daily = far_backup_time();
    let d = Daemon::start(
        &tree,
        &[("NEOPRO_CATCHUP_DELAY", "1"), ("BACKUP_TIME", &daily)],
    );
    // The plan is published before the server answers: the next run is the daily one,
    // twelve hours away, so nothing can run before it.
    let st = d.get("/api/backups/auto-status").json();
    assert!(
        is_daily_run(st.get("nextRun"), &daily),
        "{st:?}\n{}",
        d.log()
    );
    assert!(!backup_log(&tree).contains("catching up"), "{}", d.log());
    assert_eq!(archives(&tree.backups), vec![first], "{}", d.log());
}

#[test]
fn leftover_temp_files_are_removed_when_the_daemon_starts() {
    let tree = Tree::new("leftovers");
    let kept = tree.backup(&[]);
    let leftover = tree.backups.join(".tmp-backup-20240101-030000.tar.gz");
    common::write_file(&leftover, b"half an archive from a crash");
    // Not ours: a name without our prefix stays.
    let foreign = tree.backups.join("notes.tmp");
    common::write_file(&foreign, b"the operator's file");
    let d = Daemon::start(&tree, &[]);
    assert!(
        d.log()
            .contains("removed .tmp-backup-20240101-030000.tar.gz, left by an interrupted run"),
        "{}",
        d.log()
    );
    assert!(!leftover.exists(), "the leftover is gone");
    assert!(foreign.exists(), "only our temporary files are removed");
    assert_eq!(archives(&tree.backups), [kept]);
    assert!(temp_files(&tree.backups).is_empty());
}

#[test]
fn the_daemon_creates_backup_dir_0700() {
    use std::os::unix::fs::PermissionsExt;
    let tree = Tree::new("mkdir-serve");
    assert!(!tree.backups.exists());
    let _d = Daemon::start(&tree, &[]);
    let mode = std::fs::metadata(&tree.backups)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or_else(|e| panic!("BACKUP_DIR: {e}"));
    assert_eq!(mode, 0o700, "BACKUP_DIR mode {mode:o}");
}

/// libfaketime, which lets a test move the daemon's wall clock while it runs (Debian's
/// `faketime` package). None when it is missing: the test says so, and fails in CI.
fn libfaketime() -> Option<&'static str> {
    let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
    if Path::new(lib).exists() {
        return Some(lib);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{lib} is missing: apt-get install faketime"
    );
    eprintln!("SKIPPED: {lib} is missing (apt-get install faketime)");
    None
}

/// Sets the daemon's wall clock (through libfaketime's timestamp file) to `fake` now.
/// Replaced atomically: the daemon never reads a half-written file (which libfaketime
/// would take for no offset at all, the real date).
fn set_fake_clock(file: &Path, fake: i64) {
    let offset = fake - common::now_unix();
    let tmp = file.with_extension("new");
    common::write_file(&tmp, format!("{offset:+}\n").as_bytes());
    std::fs::rename(&tmp, file).unwrap_or_else(|e| panic!("rename {}: {e}", tmp.display()));
}

#[test]
fn the_daemon_wakes_by_itself_and_runs_a_run_the_clock_jumped_over_once() {
    let Some(lib) = libfaketime() else { return };
    let tree = Tree::new("clockjump");
    let clock = tree.root.join("faketime");
    // 2025-06-01 02:59:50 UTC, ten seconds before BACKUP_TIME; the last success an hour
    // ago (no catch-up).
    let t0 = common::naive_utc(2025, 6, 1, 2, 59, 50);
    write_status(&tree, t0 - 3600, true);
    set_fake_clock(&clock, t0);
    let clock_env = clock.to_string_lossy().into_owned();
    let d = Daemon::start(
        &tree,
        &[
            ("LD_PRELOAD", lib),
            ("FAKETIME_TIMESTAMP_FILE", &clock_env),
            ("FAKETIME_NO_CACHE", "1"),
            ("DONT_FAKE_MONOTONIC", "1"),
            ("BACKUP_TIME", "03:00"),
        ],
    );
    let st = d.get("/api/backups/auto-status").json();
    assert_eq!(
        st.get("nextRun").str(),
        "Sun 2025-06-01 03:00:00 UTC",
        "{}",
        d.log()
    );
    // While it sleeps towards 03:00, NTP steps the clock six hours forward, past the run.
    set_fake_clock(&clock, common::naive_utc(2025, 6, 1, 9, 0, 0));
    wait_for(
        "the run the clock jumped over",
        Duration::from_secs(30),
        || archives(&tree.backups).len() == 1 && temp_files(&tree.backups).is_empty(),
    );
    let name = archives(&tree.backups).remove(0);
    assert!(
        name.starts_with("backup-20250601-0900"),
        "run once, when the clock says 09:00: {name}\n{}",
        d.log()
    );
    // Then the next run is tomorrow's, not a second one today.
    wait_for("tomorrow's run planned", Duration::from_secs(10), || {
        d.get("/api/backups/auto-status").json().get("nextRun")
            == &Json::Str("Mon 2025-06-02 03:00:00 UTC".into())
    });
    assert_eq!(archives(&tree.backups), std::slice::from_ref(&name));
    verify_cli(&tree, &name);

    // The clock steps to tomorrow, ten seconds before 03:00: the daemon re-reads the
    // wall clock and wakes for the 03:00 run by itself. (That its sleeps never exceed a
    // minute is checked by schedule.rs's unit tests: from outside, the moment it goes
    // into a long sleep cannot be seen without a fixed delay.)
    set_fake_clock(&clock, common::naive_utc(2025, 6, 2, 2, 59, 50));
    wait_for("the 03:00 run", Duration::from_secs(80), || {
        archives(&tree.backups).len() == 2 && temp_files(&tree.backups).is_empty()
    });
    let second = archives(&tree.backups).remove(1);
    assert!(
        second.starts_with("backup-20250602-0300"),
        "the daily run at 03:00: {second}\n{}",
        d.log()
    );
}

#[test]
fn sd_notify_ready_then_watchdog_pings() {
    let tree = Tree::new("notify");
    let sock_path = tree.root.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap_or_else(|e| panic!("bind: {e}"));
    sock.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let sock_env = sock_path.to_string_lossy().into_owned();
    let d = Daemon::start(
        &tree,
        &[
            ("NOTIFY_SOCKET", sock_env.as_str()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    let mut got: Vec<(Duration, String)> = Vec::new();
    let t0 = Instant::now();
    let mut buf = [0u8; 512];
    while t0.elapsed() < Duration::from_secs(6) {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push((
                t0.elapsed(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            ));
        }
        if got.iter().filter(|(_, m)| m == "WATCHDOG=1").count() >= 2 {
            break;
        }
    }
    let msgs: Vec<&str> = got.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(msgs.first().copied(), Some("READY=1"), "{got:?}");
    let pings: Vec<Duration> = got
        .iter()
        .filter(|(_, m)| m == "WATCHDOG=1")
        .map(|(t, _)| *t)
        .collect();
    assert!(
        pings.len() >= 2,
        "WATCHDOG=1 at least every WATCHDOG_USEC/2: {got:?}"
    );
    assert!(
        pings[1] - pings[0] <= Duration::from_millis(1800),
        "pings must come well within the 2 s watchdog: {got:?}"
    );
    let (st, _, log) = d.terminate(Duration::from_secs(5));
    assert_eq!(st.code(), Some(0), "{log}");
    let mut rest = Vec::new();
    while let Ok(n) = sock.recv(&mut buf) {
        rest.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(rest.iter().any(|m| m == "STOPPING=1"), "{rest:?}");
}

// ---------------------------------------------------------------------------------
// Daemon hardening: strict heads over a real socket, fair connection use, the health
// lane and the watchdog, framing, the auth scheme, HEAD and ranges.

/// Sends `raw` and reads exactly one answer, then expects the connection closed.
fn one_answer_then_closed(addr: &str, raw: &[u8]) -> Result<net::Answer, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.write_all(raw).map_err(|e| format!("send: {e}"))?;
    let a = net::read_answer(&mut s, false, Duration::from_secs(10))
        .ok_or("no whole answer before the end of the connection")?;
    net::closed_within(&mut s, Duration::from_secs(5))?;
    Ok(a)
}

#[test]
fn smuggling_heads_are_400_and_the_connection_closes_over_a_socket() {
    let tree = Tree::new("smuggle");
    let d = Daemon::start(&tree, &[]);
    let host = d.addr.clone();
    // A second request that would change the schedule switch if it were ever served.
    let toggle = "{\"enable\":false}";
    let smuggled = format!(
        "POST /api/backups/auto-toggle HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{toggle}",
        toggle.len()
    );
    let cases = [
        (
            "two Content-Length",
            format!(
                "POST /api/backups/auto-toggle HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n",
                smuggled.len()
            ),
        ),
        (
            "a folded header line",
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-A: a\r\n b\r\n\r\n"),
        ),
        (
            "a space before a colon",
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nContent-Length : 0\r\n\r\n"),
        ),
        (
            "a control byte in a header",
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-A: a\x01b\r\n\r\n"),
        ),
        (
            "two Host headers",
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nHost: evil.example\r\n\r\n"),
        ),
    ];
    for (what, first) in &cases {
        let raw = format!("{first}{smuggled}");
        let a = one_answer_then_closed(&d.addr, raw.as_bytes())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(a.status, 400, "{what}: {a:?}");
        assert_eq!(a.header("Connection"), Some("close"), "{what}: {a:?}");
    }
    // The second request was never served: the switch is still on, never saved.
    let j = d.get("/api/backups/auto-status").json();
    assert!(
        j.get("enabled").bool(),
        "a smuggled request was served: {j:?}"
    );
    assert!(!tree.backups.join("auto-backup.json").exists());
    assert!(
        !d.log().contains("automatic backup off"),
        "a smuggled request was served:\n{}",
        d.log()
    );
    // The same request alone is served (the test above could fail).
    let r = d.post("/api/backups/auto-toggle", toggle.as_bytes());
    assert_eq!(r.status, 200, "{r}");
}

/// Opens `n` connections from `src` that start a request head and stall.
fn slowloris(addr: &str, src: std::net::Ipv4Addr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| {
            let mut s = net::connect_from(addr, src).ok()?;
            s.write_all(b"GET /api/backups HTTP/1.1\r\nX-A: b\r\n")
                .ok()?;
            Some(s)
        })
        .collect()
}

#[test]
fn one_client_address_cannot_take_every_connection() {
    let _g = heavy();
    let tree = Tree::new("fair");
    tree.backup(&[]);
    let d = Daemon::start(&tree, &[]);
    let pid = d.pid();
    assert_eq!(d.get("/api/backups").status, 200);
    let fds0 = fd_count(pid);
    // One address: 400 stalled heads, then 600 connections that send nothing.
    let attacker = net::loopback(5);
    let held = slowloris(&d.addr, attacker, 400);
    let idle: Vec<TcpStream> = (0..600)
        .filter_map(|_| net::connect_from(&d.addr, attacker).ok())
        .collect();
    assert!(
        held.len() >= 300,
        "could open only {} connections",
        held.len()
    );
    // Its last connection is turned away with a 503 that says why.
    let mut last = idle
        .into_iter()
        .last()
        .unwrap_or_else(|| panic!("no idle connection"));
    let a = net::read_answer(&mut last, false, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no answer to a connection past the address's share"));
    assert_eq!(a.status, 503, "{a:?}");
    assert!(
        String::from_utf8_lossy(&a.body).contains("Trop de connexions"),
        "{a:?}"
    );
    // The daemon holds at most the address's share (one descriptor per connection).
    let fds = fd_count(pid);
    assert!(
        fds <= fds0 + 32 + 4,
        "one address holds {} connections",
        fds.saturating_sub(fds0)
    );
    // A second client is served, promptly, every time.
    let other = net::loopback(2);
    for i in 0..20 {
        let t0 = Instant::now();
        let mut s = net::connect_from(&d.addr, other).unwrap_or_else(|e| panic!("{e}"));
        let req = format!(
            "GET /api/backups HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            d.addr
        );
        s.write_all(req.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let a = net::read_answer(&mut s, false, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("probe {i} of the second client got no answer"));
        let took = t0.elapsed();
        assert_eq!(a.status, 200, "probe {i}: {a:?}");
        assert!(took < Duration::from_secs(1), "probe {i} took {took:?}");
    }
    assert_eq!(d.get("/healthz").status, 200);
    drop(held); // the attacker's connections stayed open until here
}

#[test]
fn when_slots_run_short_idle_connections_go_first_and_heads_get_2_s() {
    let _g = heavy();
    let tree = Tree::new("pressure");
    let d = Daemon::start(&tree, &[]);
    let healthz = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", d.addr);
    // 1. Every slot taken by keep-alive connections idle after one request, from 39
    //    addresses: a newcomer is served, and the one idle the longest goes.
    //    Under pressure an idle connection is closed after 2 s anyway, so the attempt
    //    counts only when it all happened well within that time.
    let mut proven = false;
    for attempt in 0..3 {
        let t0 = Instant::now();
        let mut idle: Vec<TcpStream> = Vec::new();
        // 7 addresses at their share, then 32 with one connection each (the last 32
        // slots go only to addresses that hold none yet).
        let sources = (0..7u8)
            .flat_map(|a| std::iter::repeat_n(10 + a, 32))
            .chain(40..72u8);
        for src in sources {
            let mut s =
                net::connect_from(&d.addr, net::loopback(src)).unwrap_or_else(|e| panic!("{e}"));
            s.write_all(healthz.as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
            let r = net::read_answer(&mut s, false, Duration::from_secs(5));
            assert_eq!(r.map(|r| r.status), Some(200));
            idle.push(s);
        }
        std::thread::sleep(Duration::from_millis(300)); // idle long enough to be closed
        let newcomer = net::connect_from(&d.addr, net::loopback(3));
        let mut s = newcomer.unwrap_or_else(|e| panic!("{e}"));
        s.write_all(healthz.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let a = net::read_answer(&mut s, false, Duration::from_secs(5));
        let took = t0.elapsed();
        if took > Duration::from_millis(1500) {
            eprintln!("attempt {attempt}: setup took {took:?}, too slow to prove anything");
            drop(idle);
            std::thread::sleep(Duration::from_secs(3));
            continue;
        }
        let a = a.unwrap_or_else(|| {
            panic!(
                "the newcomer was not served with every slot idle ({took:?}, {} fds)",
                fd_count(d.pid())
            )
        });
        assert_eq!(a.status, 200, "{a:?}");
        // One of the oldest idle connections was closed to make room (which one exactly
        // depends on when their threads went idle); the newest is still open.
        let closed: Vec<usize> = (0..idle.len())
            .filter(|&i| net::is_closed(&idle[i]))
            .collect();
        assert!(
            !closed.is_empty() && closed[0] < 32,
            "closed to make room: {closed:?} (one of the oldest expected)"
        );
        let newest = idle.last_mut().unwrap_or_else(|| panic!("none"));
        newest
            .write_all(healthz.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let r = net::read_answer(newest, false, Duration::from_secs(5));
        assert_eq!(
            r.map(|r| r.status),
            Some(200),
            "the newest idle connection was closed"
        );
        proven = true;
        break;
    }
    assert!(proven, "three attempts were too slow to tell");
    std::thread::sleep(Duration::from_secs(3)); // the idle ones of step 1 time out
    // 2. Past the high-water mark (192 connections) a head gets 2 s, not 10.
    let mut held = Vec::new();
    for a in 0..7u8 {
        held.extend(slowloris(&d.addr, net::loopback(30 + a), 30));
    }
    assert_eq!(held.len(), 210);
    let mut probe = net::connect_from(&d.addr, net::loopback(4)).unwrap_or_else(|e| panic!("{e}"));
    let t0 = Instant::now();
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nX-A: b\r\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let a = net::read_answer(&mut probe, false, Duration::from_secs(12))
        .unwrap_or_else(|| panic!("no 408 for a stalled head"));
    let took = t0.elapsed();
    assert_eq!(a.status, 408, "{a:?}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "a stalled head under pressure was given {took:?} (expected about 2 s)"
    );
    drop(held);
}

/// Descriptors of `pid` open on `path`.
fn open_count(pid: u32, path: &Path) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |rd| {
        rd.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|p| p == path)
            .count()
    })
}

/// Reads sd_notify datagrams until `until` says stop (or `limit` passes); returns
/// when each WATCHDOG=1 came.
fn watchdog_pings(
    sock: &UnixDatagram,
    limit: Duration,
    mut until: impl FnMut(&[Instant]) -> bool,
) -> Vec<Instant> {
    let t0 = Instant::now();
    let mut pings = Vec::new();
    let mut buf = [0u8; 512];
    sock.set_read_timeout(Some(Duration::from_millis(100))).ok();
    while t0.elapsed() < limit && !until(&pings) {
        if let Ok(n) = sock.recv(&mut buf)
            && &buf[..n] == b"WATCHDOG=1"
        {
            pings.push(Instant::now());
        }
    }
    pings
}

#[test]
fn healthz_and_the_watchdog_never_wait_behind_busy_handlers() {
    let _g = heavy();
    let tree = Tree::new("busy");
    // A large archive (the video is in it): 16 verifies at once keep the handlers busy
    // for about 2 s on two cores, five times what the checks below need (8 MiB was
    // enough while the debug build hashed with the sha2 crate's Rust; ring's assembly
    // runs as fast in a debug build). The watchdog pings every 0.2 s.
    tree.add_video(b"big.mp4", 64 << 20, common::BASE_MTIME);
    let name = tree.backup(&[("INCLUDE_VIDEOS", "true")]);
    let archive = tree.archive_path(&name);
    let sock_path = tree.root.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap_or_else(|e| panic!("bind: {e}"));
    let sock_env = sock_path.to_string_lossy().into_owned();
    let d = Arc::new(Daemon::start(
        &tree,
        &[
            ("NOTIFY_SOCKET", sock_env.as_str()),
            ("WATCHDOG_USEC", "400000"),
        ],
    ));
    // 20 verifies at once: 16 run, 4 wait for a handler.
    let verifies: Vec<_> = (0..20)
        .map(|_| {
            let d = Arc::clone(&d);
            let path = format!("/api/backups/verify/{name}");
            std::thread::spawn(move || d.post(&path, b"").status)
        })
        .collect();
    let pid = d.pid();
    wait_for("16 verifies running", Duration::from_secs(60), || {
        open_count(pid, &archive) >= 16
    });
    let t_busy = Instant::now();
    // Forget the pings sent before the handlers were busy.
    sock.set_nonblocking(true).ok();
    while sock.recv(&mut [0u8; 512]).is_ok() {}
    sock.set_nonblocking(false).ok();
    for i in 0..3 {
        let t0 = Instant::now();
        let r = d.get("/healthz");
        let took = t0.elapsed();
        assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{r}");
        assert!(
            took < Duration::from_secs(1),
            "/healthz {i} took {took:?} behind busy handlers"
        );
        let mut s = TcpStream::connect(&d.addr).unwrap_or_else(|e| panic!("{e}"));
        let head = format!("HEAD /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", d.addr);
        s.write_all(head.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let a = net::read_answer(&mut s, true, Duration::from_secs(1));
        assert_eq!(
            a.map(|a| a.status),
            Some(200),
            "HEAD /healthz behind busy handlers"
        );
    }
    // The watchdog keeps pinging meanwhile (every 0.2 s).
    let pings = watchdog_pings(&sock, Duration::from_secs(3), |p| p.len() >= 2);
    let busy_throughout = open_count(pid, &archive) >= 16;
    let busy_for = t_busy.elapsed();
    assert!(
        pings.len() >= 2,
        "WATCHDOG=1 stopped while the handlers were busy: {} pings",
        pings.len()
    );
    assert!(
        busy_throughout,
        "the verifies ended within {busy_for:?}: the test proved nothing (make the archive larger)"
    );
    for v in verifies {
        assert_eq!(v.join().unwrap_or(0), 200);
    }
}

#[test]
fn the_watchdog_stops_only_when_the_accept_loop_is_stuck() {
    if !cfg!(debug_assertions) {
        // The stall hook exists in debug builds only.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "this test needs a debug build (cargo test without --release)"
        );
        eprintln!("SKIPPED: the accept-loop stall hook exists in debug builds only");
        return;
    }
    let tree = Tree::new("stuck");
    let sock_path = tree.root.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap_or_else(|e| panic!("bind: {e}"));
    let sock_env = sock_path.to_string_lossy().into_owned();
    let stall = tree.root.join("stall-accept");
    let stall_env = stall.to_string_lossy().into_owned();
    let d = Daemon::start(
        &tree,
        &[
            ("NOTIFY_SOCKET", sock_env.as_str()),
            ("WATCHDOG_USEC", "1000000"),
            ("NEOPRO_TEST_STALL_ACCEPT", stall_env.as_str()),
        ],
    );
    let pings = watchdog_pings(&sock, Duration::from_secs(5), |p| p.len() >= 3);
    assert!(pings.len() >= 3, "no regular pings: {pings:?}");
    // The accept loop stands still: the pings stop (a gap of 2.5 s, five periods).
    common::write_file(&stall, b"");
    let t_stall = Instant::now();
    let mut last = t_stall;
    let pings = watchdog_pings(&sock, Duration::from_secs(10), |p| {
        if let Some(t) = p.last() {
            last = *t;
        }
        last.elapsed() >= Duration::from_millis(2500)
    });
    assert!(
        last.elapsed() >= Duration::from_millis(2500),
        "pings went on with the accept loop stuck: {} in {:?}",
        pings.len(),
        t_stall.elapsed()
    );
    assert!(
        last.duration_since(t_stall) <= Duration::from_secs(4),
        "the pings stopped only {:?} after the accept loop",
        last.duration_since(t_stall)
    );
    // Going again: pings resume, /healthz answers.
    std::fs::remove_file(&stall).unwrap_or_else(|e| panic!("{e}"));
    let pings = watchdog_pings(&sock, Duration::from_secs(5), |p| !p.is_empty());
    assert!(!pings.is_empty(), "the pings did not resume");
    assert_eq!(d.get("/healthz").status, 200);
}

#[test]
fn the_auth_scheme_is_case_insensitive() {
    let tree = Tree::new("scheme");
    let d = Daemon::start(&tree, &[("API_TOKEN", TOKEN)]);
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        for sep in [" ", "  "] {
            let auth = format!("{scheme}{sep}{TOKEN}");
            let r = d.req("GET", "/api/backups", &[("Authorization", &auth)], b"");
            assert_eq!(r.status, 200, "{auth:?}: {r}");
        }
    }
    for auth in [
        format!("bearer{TOKEN}"),
        format!("Basic {TOKEN}"),
        format!("bearer {}", TOKEN.to_uppercase()),
        "bearer ".to_string(),
    ] {
        let r = d.req("GET", "/api/backups", &[("Authorization", &auth)], b"");
        assert_eq!(r.status, 401, "{auth:?}: {r}");
    }
}

/// One request on a fresh connection, read with `net::read_answer` (HEAD: no body).
fn ask(d: &Daemon, method: &str, path: &str, headers: &[(&str, &str)]) -> net::Answer {
    let mut s = TcpStream::connect(&d.addr).unwrap_or_else(|e| panic!("{e}"));
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", d.addr);
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    net::read_answer(&mut s, method == "HEAD", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no answer to {method} {path}"))
}

#[test]
fn head_answers_every_get_route_without_a_body() {
    let tree = Tree::new("head");
    let name = tree.backup(&[]);
    let d = Daemon::start(&tree, &[]);
    let download = format!("/api/backups/download/{name}");
    for path in [
        "/healthz",
        "/",
        "/metrics",
        "/api/backups",
        "/api/backups/auto-status",
        download.as_str(),
    ] {
        let get = ask(&d, "GET", path, &[]);
        let head = ask(&d, "HEAD", path, &[]);
        assert_eq!((get.status, head.status), (200, 200), "{path}: {head:?}");
        assert_eq!(
            get.header("Content-Type"),
            head.header("Content-Type"),
            "{path}"
        );
        if !matches!(path, "/metrics" | "/api/backups/auto-status") {
            // (the other two change between two requests)
            assert_eq!(
                head.header("Content-Length"),
                Some(get.body.len().to_string().as_str()),
                "{path}: HEAD announces the length GET sends"
            );
        }
        // Nothing follows the head: the connection then serves a second request.
        let mut s = TcpStream::connect(&d.addr).unwrap_or_else(|e| panic!("{e}"));
        let two = format!(
            "HEAD {path} HTTP/1.1\r\nHost: {0}\r\n\r\nGET /healthz HTTP/1.1\r\nHost: {0}\r\n\r\n",
            d.addr
        );
        s.write_all(two.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let first = net::read_answer(&mut s, true, Duration::from_secs(10));
        assert_eq!(first.map(|a| a.status), Some(200), "{path}");
        let second = net::read_answer(&mut s, false, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{path}: no second answer after HEAD"));
        assert_eq!(
            (second.status, second.body.as_slice()),
            (200, &b"ok"[..]),
            "{path}"
        );
    }
    // A route without GET still says which methods it takes.
    let r = ask(&d, "HEAD", "/api/backups/create", &[]);
    assert_eq!((r.status, r.header("Allow")), (405, Some("POST")), "{r:?}");
    let r = d.req("POST", "/healthz", &[], b"");
    assert_eq!(
        (r.status, r.header("Allow")),
        (405, Some("GET, HEAD")),
        "{r}"
    );
}

#[test]
fn downloads_answer_ranges_with_validators_and_curl_resumes() {
    let tree = Tree::new("range");
    let name = tree.backup(&[]);
    let disk = std::fs::read(tree.archive_path(&name)).unwrap_or_else(|e| panic!("{e}"));
    let size = disk.len();
    assert!(size > 1000, "archive of {size} bytes");
    let d = Daemon::start(&tree, &[]);
    let path = format!("/api/backups/download/{name}");
    let whole = ask(&d, "GET", &path, &[]);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, disk);
    assert_eq!(whole.header("Accept-Ranges"), Some("bytes"));
    let etag = whole
        .header("ETag")
        .unwrap_or_else(|| panic!("no ETag"))
        .to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "{etag}"
    );
    let modified = whole
        .header("Last-Modified")
        .unwrap_or_else(|| panic!("no Last-Modified"))
        .to_string();
    assert!(
        modified.ends_with(" GMT") && modified.len() == 29,
        "{modified}"
    );
    let last = size - 1;
    for (range, first, end) in [
        ("bytes=0-99".to_string(), 0, 99),
        ("bytes=100-".to_string(), 100, last),
        ("bytes=-100".to_string(), size - 100, last),
        (format!("bytes=10-{}", size + 500), 10, last),
    ] {
        let r = ask(&d, "GET", &path, &[("Range", &range)]);
        assert_eq!(r.status, 206, "{range}: {r:?}");
        assert_eq!(
            r.header("Content-Range"),
            Some(format!("bytes {first}-{end}/{size}").as_str()),
            "{range}"
        );
        assert_eq!(r.body, disk[first..=end], "{range}");
        assert_eq!(r.header("ETag"), Some(etag.as_str()));
        // HEAD with a range: the same head, no body.
        let h = ask(&d, "HEAD", &path, &[("Range", &range)]);
        assert_eq!(h.status, 206);
        assert_eq!(
            h.header("Content-Length"),
            Some((end - first + 1).to_string().as_str())
        );
    }
    let beyond = format!("bytes={size}-");
    let r = ask(&d, "GET", &path, &[("Range", &beyond)]);
    assert_eq!(r.status, 416, "{r:?}");
    assert_eq!(
        r.header("Content-Range"),
        Some(format!("bytes */{size}").as_str())
    );
    // Several ranges: the whole file (docs/format.md, API).
    let r = ask(&d, "GET", &path, &[("Range", "bytes=0-9,20-29")]);
    assert_eq!((r.status, r.body.len()), (200, size));
    // If-Range: the part only while the validator still matches.
    let r = ask(
        &d,
        "GET",
        &path,
        &[("Range", "bytes=0-9"), ("If-Range", &etag)],
    );
    assert_eq!((r.status, r.body.len()), (206, 10));
    let r = ask(
        &d,
        "GET",
        &path,
        &[("Range", "bytes=0-9"), ("If-Range", &modified)],
    );
    assert_eq!((r.status, r.body.len()), (206, 10));
    let r = ask(
        &d,
        "GET",
        &path,
        &[("Range", "bytes=0-9"), ("If-Range", "\"other\"")],
    );
    assert_eq!((r.status, r.body.len()), (200, size));
    // A date that is not the file's: the whole file (an If-Range that took any date
    // would pass everything above).
    let r = ask(
        &d,
        "GET",
        &path,
        &[
            ("Range", "bytes=0-9"),
            ("If-Range", "Wed, 01 Jan 2020 00:00:00 GMT"),
        ],
    );
    assert_eq!((r.status, r.body.len()), (200, size));

    // The archive replaced under the same name (another file, another date): its ETag
    // and Last-Modified change, and a client holding part of the old one gets the whole
    // new one, whichever validator it kept.
    let path_on_disk = tree.archive_path(&name);
    let mut other = disk.clone();
    other.reverse();
    other.truncate(size - 7);
    let tmp = tree.backups.join("replacing.tmp");
    std::fs::write(&tmp, &other).unwrap_or_else(|e| panic!("{e}"));
    let f = std::fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap_or_else(|e| panic!("{e}"));
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .unwrap_or_else(|e| panic!("{e}"));
    drop(f);
    std::fs::rename(&tmp, &path_on_disk).unwrap_or_else(|e| panic!("{e}"));
    let r = ask(&d, "GET", &path, &[]);
    assert_eq!(r.body, other);
    let (etag2, modified2) = (
        r.header("ETag").unwrap_or_default().to_string(),
        r.header("Last-Modified").unwrap_or_default().to_string(),
    );
    assert_ne!(etag2, etag, "the ETag did not change with the file");
    assert_ne!(
        modified2, modified,
        "Last-Modified did not change with the file"
    );
    assert_eq!(modified2, "Tue, 14 Nov 2023 22:13:20 GMT");
    for old in [&etag, &modified] {
        let r = ask(
            &d,
            "GET",
            &path,
            &[("Range", "bytes=0-9"), ("If-Range", old)],
        );
        assert_eq!(
            (r.status, r.body.len()),
            (200, other.len()),
            "If-Range {old}"
        );
        assert_eq!(r.body, other);
    }
    let r = ask(
        &d,
        "GET",
        &path,
        &[("Range", "bytes=0-9"), ("If-Range", &etag2)],
    );
    assert_eq!((r.status, r.body.as_slice()), (206, &other[..10]));
    let disk = other;
    let size = disk.len();

    // `curl -C -` resumes an interrupted download.
    if Command::new("curl").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "curl is needed for the resume check"
        );
        eprintln!("SKIPPED: curl -C - (no curl)");
        return;
    }
    let out = tree.root.join("partial.tar.gz");
    std::fs::write(&out, &disk[..size / 2]).unwrap_or_else(|e| panic!("{e}"));
    let url = format!("http://{}{path}", d.addr);
    let mut c = Command::new("curl");
    c.args(["-sS", "-f", "-C", "-", "-w", "%{http_code}", "-o"])
        .arg(&out)
        .arg(&url);
    let o = common::output(&mut c);
    assert_eq!(o.code, 0, "curl -C -: {o}");
    assert_eq!(o.stdout, "206", "curl did not resume: {o}");
    assert_eq!(std::fs::read(&out).unwrap_or_default(), disk);
}

/// The page is kept compressed in the binary: a browser gets the gzip bytes
/// (Content-Encoding, Vary), a client that takes no gzip gets the same page inflated.
#[test]
fn the_page_goes_gzip_to_a_browser_and_plain_to_others() {
    let tree = Tree::new("pagegz");
    let d = Daemon::start(&tree, &[]);
    let plain = d.get("/");
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("Content-Encoding"), None, "{}", plain.head);
    assert_eq!(
        plain.header("Vary"),
        Some("Accept-Encoding"),
        "{}",
        plain.head
    );
    let text = String::from_utf8_lossy(&plain.body).to_string();
    assert!(text.starts_with("<!doctype html>") && text.ends_with("</html>\n"));
    assert!(text.contains("Connecter Google Drive"), "the whole page");
    for accept in ["gzip, deflate, br, zstd", "br;q=1, gzip;q=0.5", "*"] {
        let gz = d.req("GET", "/", &[("Accept-Encoding", accept)], b"");
        assert_eq!(gz.status, 200);
        assert_eq!(
            gz.header("Content-Encoding"),
            Some("gzip"),
            "{accept}: {}",
            gz.head
        );
        assert_eq!(gz.header("Vary"), Some("Accept-Encoding"), "{}", gz.head);
        assert_eq!(
            gz.header("Content-Security-Policy"),
            plain.header("Content-Security-Policy")
        );
        assert!(
            gz.body.len() * 3 < plain.body.len(),
            "{} of {}",
            gz.body.len(),
            plain.body.len()
        );
        assert_eq!(common::net::gunzip(&gz.body), plain.body, "{accept}");
    }
    for accept in ["identity", "gzip;q=0", "br"] {
        let r = d.req("GET", "/", &[("Accept-Encoding", accept)], b"");
        assert_eq!(r.header("Content-Encoding"), None, "{accept}");
        assert_eq!(r.body, plain.body, "{accept}");
    }
}

#[test]
fn the_page_may_be_framed_only_by_itself_and_frame_ancestors() {
    let tree = Tree::new("frame");
    let d = Daemon::start(&tree, &[]);
    let r = d.get("/");
    let csp = r
        .header("Content-Security-Policy")
        .unwrap_or_default()
        .to_string();
    assert!(csp.ends_with("frame-ancestors 'self'"), "{csp}");
    drop(d);
    let panel = "https://admin.neopro.example http://192.168.1.20:3000";
    let d = Daemon::start(&tree, &[("FRAME_ANCESTORS", panel)]);
    let csp = d
        .get("/")
        .header("Content-Security-Policy")
        .unwrap_or_default()
        .to_string();
    assert!(
        csp.ends_with(&format!("frame-ancestors 'self' {panel}")),
        "{csp}"
    );
    assert!(!csp.contains('*'), "{csp}");
    drop(d);
    for bad in ["*", "https://admin.example/panel", "'none'"] {
        let out = tree.run_env(
            &[("FRAME_ANCESTORS", bad), ("LISTEN", "127.0.0.1:0")],
            &["serve"],
        );
        assert_eq!(out.code, 2, "FRAME_ANCESTORS={bad:?}: {out}");
        assert!(out.stderr.contains("FRAME_ANCESTORS"), "{out}");
    }
}

/// Whether the daemon has answered or closed a stalled connection (seen at once).
fn answered_or_closed(s: &TcpStream) -> bool {
    let _ = s.set_nonblocking(true);
    let mut b = [0u8; 1];
    let gone = !matches!(s.peek(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    let _ = s.set_nonblocking(false);
    gone
}

#[test]
fn nine_addresses_at_their_share_leave_room_for_healthz_from_a_tenth() {
    // Issue 21, finding 5: 9 addresses x 32 stalled heads (each under its share) took
    // all 256 slots, and /healthz from a tenth address was refused (0 of 54 probes).
    let _g = heavy();
    let tree = Tree::new("nine");
    let d = Daemon::start(&tree, &[]);
    let stop = AtomicBool::new(false);
    let ready = Barrier::new(10);
    let (ok, refused) = std::thread::scope(|scope| {
        for a in 2..=10u8 {
            let (addr, stop, ready) = (&d.addr, &stop, &ready);
            scope.spawn(move || {
                // Holds 32 stalled heads from 127.0.0.a, opening a new one for each that
                // was answered (503, or 408 after the 2 s given under pressure).
                let mut held = slowloris(addr, net::loopback(a), 32);
                ready.wait();
                while !stop.load(Ordering::SeqCst) {
                    held.retain(|s| !answered_or_closed(s));
                    held.extend(slowloris(addr, net::loopback(a), 32 - held.len()));
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
        ready.wait();
        let healthz = format!(
            "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            d.addr
        );
        let (mut ok, mut refused) = (0, Vec::new());
        // 30 probes over about 4.5 s: across at least one wave of 408s and refills.
        for i in 0..30 {
            std::thread::sleep(Duration::from_millis(150));
            let mut s =
                net::connect_from(&d.addr, net::loopback(11)).unwrap_or_else(|e| panic!("{e}"));
            s.write_all(healthz.as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
            match net::read_answer(&mut s, false, Duration::from_secs(2)) {
                Some(a) if a.status == 200 => ok += 1,
                other => refused.push((
                    i,
                    other.map(|a| (a.status, String::from_utf8_lossy(&a.body).into_owned())),
                )),
            }
        }
        stop.store(true, Ordering::SeqCst);
        (ok, refused)
    });
    assert_eq!(
        ok, 30,
        "/healthz from a tenth address: {ok} of 30; refused: {refused:?}"
    );
}
