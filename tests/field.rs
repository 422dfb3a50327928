//! Field safety: what a Pi in a club meets that a lab does not. A FIFO where a file
//! should be, a clock that jumps to 1970 or 2099, junk named like an archive, a
//! symlinked folder under a restore target, a decompression bomb, a hostile video name,
//! archives of the old auto-backup.sh, a card with reserved blocks (docs/format.md).
//!
//! Every process runs under a deadline much shorter than the common one: a test that
//! would hang fails instead, quickly.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// How long a command of these tests may take before the test fails.
const QUICK: Duration = Duration::from_secs(30);

/// Runs `c` to completion within `limit`, else kills it and fails the test.
fn run_within(c: &mut Command, limit: Duration, what: &str) -> Out {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let pid = child.id();
    let start = Instant::now();
    // wait_output has its own (longer) deadline; this watchdog kills the child first.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&done);
    let watchdog = std::thread::spawn(move || {
        while start.elapsed() < limit {
            if flag.load(std::sync::atomic::Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        true
    });
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wait_output(child, what)));
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let killed = watchdog.join().unwrap_or(false);
    assert!(
        !killed,
        "{what} did not finish within {limit:?}: it blocked (killed)"
    );
    match out {
        Ok(o) => o,
        Err(p) => std::panic::resume_unwind(p),
    }
}

fn quick(t: &Tree, env: &[(&str, &str)], args: &[&str]) -> Out {
    let mut c = t.command(args);
    for (k, v) in env {
        c.env(k, v);
    }
    run_within(&mut c, QUICK, &format!("neopro-backup {}", args.join(" ")))
}

fn mkfifo(path: &Path) {
    let _ = fs::remove_file(path);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir: {e}"));
    }
    tool("mkfifo", &[path.as_os_str()], Path::new("/")).expect_code(0, "mkfifo");
}

fn warnings(t: &Tree) -> Vec<String> {
    t.status()
        .get("warnings")
        .arr()
        .iter()
        .map(|w| w.str().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------
// 1. FIFOs and other non-regular files never block.

#[test]
fn fifo_sources_are_warnings_and_the_run_never_blocks() {
    let t = Tree::new("fifo-sources");
    let sources = [
        t.configuration_json(),
        t.sync_agent_env(),
        t.site_conf.clone(),
    ];
    for p in &sources {
        mkfifo(p);
    }
    mkfifo(&t.videos().join("live.mp4"));
    let out = quick(&t, &[("INCLUDE_VIDEOS", "true")], &["run"]);
    out.expect_code(0, "a run whose sources are FIFOs");
    let w = warnings(&t);
    for p in &sources {
        assert!(
            w.iter()
                .any(|x| x.contains(&p.display().to_string()) && x.contains("FIFO")),
            "no FIFO warning for {}: {w:?}",
            p.display()
        );
    }
    assert!(
        w.iter()
            .any(|x| x.contains("live.mp4") && x.contains("FIFO")),
        "{w:?}"
    );
    let a = archives(&t.backups);
    assert_eq!(a.len(), 1, "{a:?}");
    let list = tar_list(&t.archive_path(&a[0]));
    assert!(
        !list
            .iter()
            .any(|n| n.ends_with("configuration.json") || n.ends_with("live.mp4")),
        "{list:?}"
    );
    // The lock was released: the next run does not wait either.
    quick(&t, &[], &["run"]).expect_code(0, "the next run");
    quick(&t, &[], &["verify", &a[0]]).expect_code(0, "verify");
}

#[test]
fn verify_and_restore_refuse_a_fifo_named_like_an_archive_at_once() {
    let t = Tree::new("fifo-archive");
    fs::create_dir_all(&t.backups).unwrap_or_else(|e| panic!("{e}"));
    let name = "backup-20241218-030000.tar.gz";
    let fifo = t.archive_path(name);
    mkfifo(&fifo);
    let path = fifo.to_string_lossy().into_owned();
    for args in [
        vec!["verify", name],
        vec!["verify", path.as_str()],
        vec!["restore", name, "--dry-run"],
        vec!["restore", name],
        vec!["restore", path.as_str(), "--dry-run"],
    ] {
        let out = quick(&t, &[], &args);
        out.expect_code(1, &args.join(" "));
        assert!(out.stderr.contains("FIFO"), "{}\n{out}", args.join(" "));
    }
    // Nothing was written: the sources are as they were.
    assert_eq!(
        fs::read(t.configuration_json()).ok().as_deref(),
        Some(CONFIGURATION_JSON)
    );
    // A run is not disturbed by it either (it is not an archive: no retention on it).
    quick(&t, &[], &["run"]).expect_code(0, "a run beside a FIFO archive name");
}

fn tar_list(path: &Path) -> Vec<String> {
    let out = tool("tar", &["-tzf".as_ref(), path.as_os_str()], Path::new("/"));
    out.expect_code(0, "tar -tzf");
    out.stdout.lines().map(str::to_string).collect()
}

// ---------------------------------------------------------------------------------
// Helpers: valid archives and junk at chosen dates, libfaketime, the daemon.

/// `backup-YYYYMMDD-HHMMSS.tar.gz` for a Unix time (TZ=UTC in these tests).
fn name_at(unix: i64) -> String {
    let iso = iso_utc(unix); // 2024-12-18T03:00:00+00:00
    let d: String = iso.chars().filter(char::is_ascii_digit).take(14).collect();
    format!("backup-{}-{}.tar.gz", &d[..8], &d[8..14])
}

/// Unix time of a UTC date and time.
fn utc(y: i64, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let m = i64::from(mo);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60
}

/// A valid archive (a copy of a real one) under the name of `unix`.
fn plant_valid(t: &Tree, model: &Path, unix: i64) -> String {
    let name = name_at(unix);
    fs::copy(model, t.archive_path(&name)).unwrap_or_else(|e| panic!("copy: {e}"));
    name
}

/// libfaketime's preload library, or None (the test says it is skipped, and fails
/// when CI=true).
fn libfaketime() -> Option<String> {
    let found = fs::read_dir("/usr/lib").ok().and_then(|rd| {
        rd.filter_map(Result::ok)
            .map(|e| e.path().join("faketime/libfaketime.so.1"))
            .chain(std::iter::once(
                Path::new("/usr/lib/faketime/libfaketime.so.1").to_path_buf(),
            ))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => Some(p.to_string_lossy().into_owned()),
        None => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "libfaketime is needed for the clock tests (apt-get install libfaketime)"
            );
            eprintln!("SKIPPED: libfaketime is not installed (apt-get install libfaketime)");
            None
        }
    }
}

/// The environment that runs the binary at `spec` (libfaketime's FAKETIME syntax).
fn faked<'a>(lib: &'a str, spec: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("LD_PRELOAD", lib),
        ("FAKETIME", spec),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ("NO_FAKE_STAT", "1"),
    ]
}

/// `list --json`'s backups: (name, format).
fn listed(t: &Tree) -> Vec<(String, String)> {
    let out = quick(t, &[], &["list", "--json"]);
    out.expect_code(0, "list --json");
    let j = parse_json(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    j.get("backups")
        .arr()
        .iter()
        .map(|b| {
            // Absent for an archive of the current format (the contract's exact shape).
            let format = b.try_get("format").map_or("current", Json::str);
            (b.get("name").str().to_string(), format.to_string())
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// 3. Retention counts only valid archives among the newest 3.

#[test]
fn empty_or_foreign_files_never_count_among_the_newest_three() {
    let t = Tree::new("retention-junk");
    let model = t.archive_path(&t.backup(&[]));
    let now = now_unix();
    let keep9 = plant_valid(&t, &model, now - 9 * 86_400);
    let gone10 = plant_valid(&t, &model, now - 10 * 86_400);
    let recent = plant_valid(&t, &model, now - 86_400);
    fs::remove_file(&model).unwrap_or_else(|e| panic!("{e}"));
    // Newer than all of them: an empty file, a text file, a folder-free junk name.
    let empty = name_at(now - 3 * 3600);
    let foreign = name_at(now - 2 * 3600);
    let truncated = name_at(now - 3600);
    write_file(&t.archive_path(&empty), b"");
    write_file(&t.archive_path(&foreign), b"this is not gzip at all\n");
    write_file(&t.archive_path(&truncated), b"\x1f");
    let made = t.backup(&[("RETENTION_DAYS", "7")]);
    let left = archives(&t.backups);
    // The newest 3 valid: this run, yesterday's, and the one of 9 days ago (older
    // than 7 days, but junk does not push it out); the one of 10 days ago goes.
    for n in [&made, &recent, &keep9, &empty, &foreign, &truncated] {
        assert!(left.contains(n), "{n} was removed: {left:?}");
    }
    assert!(!left.contains(&gone10), "{gone10} kept: {left:?}");
    assert_eq!(
        t.status().get("backups_count").u64(),
        3,
        "valid archives kept"
    );
    // The list says which are not archives.
    let formats = listed(&t);
    for (n, f) in &formats {
        let want = if [&empty, &foreign, &truncated].contains(&n) {
            "invalid"
        } else {
            "current"
        };
        assert_eq!(f, want, "{n}: {formats:?}");
    }
}

// ---------------------------------------------------------------------------------
// 2. Clock rules: 1970, 2099 and back, two days forward, two minutes back.

#[test]
fn a_run_whose_clock_jumped_ahead_deletes_nothing_and_1970_deletes_nothing() {
    let Some(lib) = libfaketime() else { return };
    let t = Tree::new("clock-retention");
    let model = t.archive_path(&t.backup(&[]));
    let now = now_unix();
    // Ten minutes short of whole days, so that "7 days old" is not a race with the clock.
    let mut planted: Vec<String> = (1..=10)
        .map(|k| plant_valid(&t, &model, now - k * 86_400 + 600))
        .collect();
    fs::remove_file(&model).unwrap_or_else(|e| panic!("{e}"));
    planted.sort();
    // 2099: every archive is decades "old"; none may go.
    let made = t.backup(&faked(&lib, "@2099-01-01 12:00:00"));
    assert!(made.starts_with("backup-20990101-12"), "{made}");
    let left = archives(&t.backups);
    for p in &planted {
        assert!(left.contains(p), "the 2099 run removed {p}: {left:?}");
    }
    let w = warnings(&t);
    assert!(
        w.iter()
            .any(|x| x.contains("retention skipped") && x.contains("48 h")),
        "{w:?}"
    );
    fs::remove_file(t.archive_path(&made)).unwrap_or_else(|e| panic!("{e}"));
    // Three days forward (the newest archive is a day old): more than 48 h, nothing goes.
    let made = t.backup(&faked(&lib, "+3d"));
    let left = archives(&t.backups);
    for p in &planted {
        assert!(left.contains(p), "a run 3 days ahead removed {p}: {left:?}");
    }
    fs::remove_file(t.archive_path(&made)).unwrap_or_else(|e| panic!("{e}"));
    // 1970: everything is in the future, nothing is old.
    let made = t.backup(&faked(&lib, "@1970-01-01 00:00:10"));
    assert!(made.starts_with("backup-19700101-"), "{made}");
    let left = archives(&t.backups);
    for p in &planted {
        assert!(left.contains(p), "the 1970 run removed {p}: {left:?}");
    }
    // Back to the real clock: the usual rule, which the 1970 and real ones obey.
    let made = t.backup(&[]);
    let left = archives(&t.backups);
    assert!(left.contains(&made));
    assert_eq!(
        left.iter().filter(|n| planted.contains(n)).count(),
        7,
        "archives older than 7 days go, the newest 3 stay: {left:?}"
    );
}

/// `serve` on 127.0.0.1:0, stderr collected; killed on drop.
struct Daemon {
    child: std::process::Child,
    addr: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Daemon {
    fn start(t: &Tree, env: &[(&str, &str)]) -> Daemon {
        use std::io::BufRead;
        let mut c = t.command(&["serve"]);
        c.env("LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start serve: {e}"));
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let log2 = std::sync::Arc::clone(&log);
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut l = log2.lock().unwrap_or_else(|p| p.into_inner());
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut d = Daemon {
            child,
            addr: String::new(),
            log,
        };
        let line = d.wait_log("serving on http://", Duration::from_secs(30));
        d.addr = line
            .split("serving on http://")
            .nth(1)
            .unwrap_or_default()
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        d
    }

    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits for a stderr line holding `needle` (after those already seen by an earlier
    /// call with the same needle is the caller's business) and returns it.
    fn wait_log(&mut self, needle: &str, limit: Duration) -> String {
        self.wait_log_count(needle, 1, limit)
    }

    /// Waits until `n` lines hold `needle`; returns the n-th.
    fn wait_log_count(&mut self, needle: &str, n: usize, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log();
            if let Some(l) = log.lines().filter(|l| l.contains(needle)).nth(n - 1) {
                return l.to_string();
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("the daemon exited ({st}) while waiting for {needle:?}:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "no log line #{n} with {needle:?} within {limit:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET `path`: (status, body).
    fn get(&self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.addr)
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.addr));
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap_or_else(|e| panic!("{e}"));
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .unwrap_or_else(|e| panic!("read: {e}"));
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, body.to_string())
    }

    fn auto_status(&self) -> Json {
        let (st, body) = self.get("/api/backups/auto-status");
        assert_eq!(st, 200, "{body}");
        parse_json(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// The value of a metric of /metrics.
    fn metric(&self, name: &str) -> f64 {
        let (st, body) = self.get("/metrics");
        assert_eq!(st, 200, "{body}");
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name}:\n{body}"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A wall clock for the daemon under test: libfaketime reads `spec` (an offset and a
/// rate) again whenever it changes. The fake time of a process is
/// `start + (real - start) * RATE + offset`, `start` being when the process started.
struct FakeClock {
    spec: std::path::PathBuf,
    start: f64,
}

/// The daemon's clock runs this many times faster than the real one: its one-minute
/// naps last a second, a few fake minutes pass in a few real seconds.
const RATE: i64 = 60;

fn real_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl FakeClock {
    fn new(dir: &Path) -> FakeClock {
        FakeClock {
            spec: dir.join("faketime.spec"),
            start: real_now(),
        }
    }

    /// Sets the daemon's clock to `target` (Unix seconds) now; it then runs at RATE.
    fn set(&self, target: i64) {
        let r = real_now();
        let offset = target as f64 - self.start - (r - self.start) * RATE as f64;
        let tmp = self.spec.with_extension("tmp");
        fs::write(&tmp, format!("{:+} x{RATE}\n", offset.round() as i64))
            .unwrap_or_else(|e| panic!("{e}"));
        fs::rename(&tmp, &self.spec).unwrap_or_else(|e| panic!("{e}"));
    }
}

fn with_prefix(names: &[String], prefix: &str) -> Vec<String> {
    names
        .iter()
        .filter(|n| n.starts_with(prefix))
        .cloned()
        .collect()
}

#[test]
fn the_schedule_survives_1970_2099_and_back_two_days_forward_and_two_minutes_back() {
    let Some(lib) = libfaketime() else { return };
    let t = Tree::new("clock-schedule");
    // Ten daily backups before day D (2031-03-10), made at 03:00 by the real binary.
    let d = utc(2031, 3, 10, 3, 0);
    let mut seeded = Vec::new();
    for k in (1..=10).rev() {
        let spec = format!("@{} 03:00:00", &iso_utc(d - k * 86_400)[..10]);
        seeded.push(t.backup(&[
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME", spec.as_str()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ("NO_FAKE_STAT", "1"),
            ("RETENTION_DAYS", "30"),
        ]));
    }
    assert_eq!(archives(&t.backups), seeded);
    let clock = FakeClock::new(&t.root);
    clock.set(10); // 1970-01-01 00:00:10: a Pi without RTC before NTP answers
    let spec = clock.spec.to_string_lossy().into_owned();
    let mut daemon = Daemon::start(
        &t,
        &[
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME_TIMESTAMP_FILE", spec.as_str()),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ("NO_FAKE_STAT", "1"),
            ("NEOPRO_CATCHUP_DELAY", "0"),
            ("BACKUP_TIME", "03:00"),
            ("RETENTION_DAYS", "30"),
        ],
    );
    let phase = Duration::from_secs(40);
    // 1970: the catch-up is due, but waits for the clock; the wait is visible.
    daemon.wait_log("the clock does not look set", phase);
    let a = daemon.auto_status();
    let w = a.try_get("clockWarning").map_or("", Json::str);
    assert!(w.contains("1970"), "{a:?}");
    assert_eq!(daemon.metric("neopro_backup_clock_warning"), 1.0);
    assert_eq!(archives(&t.backups), seeded, "nothing ran in 1970");

    // A bad NTP answer: 2099. The catch-up runs, and deletes nothing.
    clock.set(utc(2099, 1, 1, 12, 0));
    let line = daemon.wait_log("backup done: backup-2099", phase);
    let now = archives(&t.backups);
    for s in &seeded {
        assert!(now.contains(s), "the 2099 run removed {s}: {now:?}\n{line}");
    }
    assert_eq!(with_prefix(&now, "backup-2099").len(), 1, "{now:?}");

    // Back to the real date D, five minutes before BACKUP_TIME: D's backup runs at
    // 03:00, although an archive of 2099 is in the folder.
    clock.set(d - 300);
    daemon.wait_log("backup done: backup-20310310-0300", phase);
    let a = daemon.auto_status();
    let w = a.try_get("clockWarning").map_or("", Json::str);
    assert!(
        w.contains("backup-20990101"),
        "the archive of 2099 is pointed out: {a:?}"
    );
    assert_eq!(daemon.metric("neopro_backup_clock_warning"), 1.0);
    let ls = daemon.metric("neopro_backup_last_success_timestamp_seconds");
    assert!(
        (ls - d as f64).abs() < 600.0,
        "the last success is D 03:00, never 2099: {ls}"
    );

    // Two minutes back, just after that run: 03:00 comes again and must not run twice.
    // (A negative can only be watched for a while: five fake minutes, 5 s here.)
    clock.set(d - 120 + 30);
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        with_prefix(&archives(&t.backups), "backup-20310310").len(),
        1,
        "D ran twice after the clock stepped back 2 minutes:\n{}",
        daemon.log()
    );

    // Two days forward: the missed run happens once, and deletes nothing.
    clock.set(d + 2 * 86_400 + 300);
    daemon.wait_log("backup done: backup-20310312-03", phase);
    // The next day still runs at 03:00.
    clock.set(d + 3 * 86_400 - 180);
    daemon.wait_log("backup done: backup-20310313-0300", phase);
    let now = archives(&t.backups);
    for s in &seeded {
        assert!(now.contains(s), "{s} was lost: {now:?}");
    }
    for (prefix, n) in [
        ("backup-1970", 0),
        ("backup-20990101", 1),
        ("backup-20310310", 1),
        ("backup-20310311", 0),
        ("backup-20310312", 1),
        ("backup-20310313", 1),
    ] {
        assert_eq!(
            with_prefix(&now, prefix).len(),
            n,
            "{prefix}: {now:?}\n{}",
            daemon.log()
        );
    }
    assert_eq!(now.len(), seeded.len() + 4, "{now:?}");
}

#[test]
fn an_archive_and_a_success_dated_2099_never_stop_the_schedule_nor_count_as_fresh() {
    let t = Tree::new("future-status");
    let made = t.backup(&[]);
    // What a run under a clock in 2099 leaves behind: its archive and its status.
    let future = name_at(utc(2099, 1, 1, 3, 0));
    fs::copy(t.archive_path(&made), t.archive_path(&future)).unwrap_or_else(|e| panic!("{e}"));
    let status = format!(
        "{{\"timestamp\":\"2099-01-01T03:00:00+00:00\",\"date\":\"2099-01-01\",\"success\":true,\
         \"archive\":\"{future}\",\"size\":\"1.1 KB\",\"size_bytes\":1100,\"backups_count\":2,\
         \"retention_days\":7,\"duration_ms\":5,\"warnings\":[],\"error\":null,\
         \"last_success\":\"2099-01-01T03:00:00+00:00\"}}\n"
    );
    write_file(
        &t.backups.join("last-backup-status.json"),
        status.as_bytes(),
    );
    let out = quick(&t, &[], &["check"]);
    out.expect_code(2, "check with a success dated 2099");
    assert!(
        out.stdout.starts_with("CRITICAL:") && out.stdout.contains("future"),
        "{out}"
    );
    let out = quick(&t, &[], &["status"]);
    assert!(
        out.stdout.contains("clock:") && out.stdout.contains("WARNING"),
        "{out}"
    );
    let mut daemon = Daemon::start(&t, &[("NEOPRO_CATCHUP_DELAY", "3600")]);
    assert_eq!(
        daemon.metric("neopro_backup_last_success_timestamp_seconds"),
        0.0,
        "a success of 2099 is not a fresh one"
    );
    assert_eq!(daemon.metric("neopro_backup_clock_warning"), 1.0);
    let a = daemon.auto_status();
    let w = a.try_get("clockWarning").map_or("", Json::str);
    assert!(w.contains("2099"), "{a:?}");
    drop(daemon);
    // The schedule is not stopped: the catch-up (the last success is not credible)
    // runs although the newest archive is dated 2099.
    daemon = Daemon::start(&t, &[("NEOPRO_CATCHUP_DELAY", "0")]);
    daemon.wait_log("backup done:", QUICK);
    let ls = daemon.metric("neopro_backup_last_success_timestamp_seconds");
    assert!((ls - now_unix() as f64).abs() < 600.0, "{ls}");
}

// ---------------------------------------------------------------------------------
// 7. Archives of the old auto-backup.sh.

/// Runs bench/old-backup.sh (a re-creation of the old script) on this tree; returns the
/// archive it wrote.
fn old_backup(t: &Tree) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/old-backup.sh");
    let before = archives(&t.backups);
    let mut c = Command::new("bash");
    c.arg(&script)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("NEOPRO_DIR", &t.neopro)
        .env("BACKUP_DIR", &t.backups)
        .env("SITE_CONF", &t.site_conf)
        .env("TZ", "UTC");
    run_within(&mut c, QUICK, "bench/old-backup.sh").expect_code(0, "old-backup.sh");
    let new: Vec<String> = archives(&t.backups)
        .into_iter()
        .filter(|a| !before.contains(a))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    new.into_iter().next().unwrap_or_default()
}

impl Daemon {
    /// POST `path` with a JSON body: (status, body).
    fn post(&self, path: &str, body: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.addr)
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.addr));
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap_or_else(|e| panic!("{e}"));
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .unwrap_or_else(|e| panic!("read: {e}"));
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, body.to_string())
    }
}

#[test]
fn old_format_archives_are_listed_as_such_verified_and_restored() {
    let t = Tree::new("old-format");
    let old = old_backup(&t);
    // The Pi changed since: a new configuration, a video gone.
    write_file(&t.configuration_json(), b"{\"changed\": true}\n");
    fs::remove_file(t.videos().join("promo.mp4")).unwrap_or_else(|e| panic!("{e}"));

    let formats = listed(&t);
    assert_eq!(formats, vec![(old.clone(), "old".to_string())]);
    let out = quick(&t, &[], &["list"]);
    assert!(out.stdout.contains("old format"), "{out}");

    let out = quick(&t, &[], &["verify", &old]);
    out.expect_code(0, "verify of an intact old-format archive");
    assert!(
        out.stdout.contains("old format, no manifest") && !out.stdout.contains("DAMAGED"),
        "{out}"
    );

    let out = quick(&t, &[], &["restore", &old, "--dry-run"]);
    out.expect_code(0, "restore --dry-run of an old-format archive");
    assert!(out.stdout.contains("old format, no manifest"), "{out}");
    assert!(out.stdout.contains("CHANGED"), "{out}");
    assert!(out.stdout.contains("missing  promo.mp4"), "{out}");
    assert_eq!(
        fs::read(t.configuration_json()).ok().as_deref(),
        Some(&b"{\"changed\": true}\n"[..]),
        "the dry run changed nothing"
    );

    // The API: listed as old, verified, dry run and real restore.
    let daemon = Daemon::start(&t, &[("NEOPRO_CATCHUP_DELAY", "3600")]);
    let (st, body) = daemon.get("/api/backups");
    assert_eq!(st, 200, "{body}");
    let j = parse_json(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(j.get("backups").at(0).get("format").str(), "old", "{body}");
    let (st, body) = daemon.post(&format!("/api/backups/verify/{old}"), "");
    assert_eq!(st, 200, "{body}");
    let j = parse_json(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert!(j.get("ok").bool() && j.get("error").is_null(), "{body}");
    assert_eq!(j.get("format").str(), "old", "{body}");
    let (st, body) = daemon.post(&format!("/api/backups/restore/{old}"), r#"{"dryRun":true}"#);
    assert_eq!(st, 200, "API dry run: {body}");
    let (st, body) = daemon.post(
        &format!("/api/backups/restore/{old}"),
        r#"{"dryRun":false,"only":["configuration.json"]}"#,
    );
    assert_eq!(st, 200, "API restore: {body}");
    assert_eq!(
        fs::read(t.configuration_json()).ok().as_deref(),
        Some(CONFIGURATION_JSON)
    );
    drop(daemon);

    // The CLI restore too (after another change).
    write_file(&t.sync_agent_env(), b"SYNC_TOKEN=changed\n");
    let out = quick(&t, &[], &["restore", &old]);
    out.expect_code(0, "restore of an old-format archive");
    assert_eq!(
        fs::read(t.sync_agent_env()).ok().as_deref(),
        Some(SYNC_AGENT_ENV)
    );

    // A Pi without a videos folder: the old inventory says "Aucune vidéo".
    let bare = Tree::bare("old-format-novideos");
    write_file(&bare.configuration_json(), CONFIGURATION_JSON);
    write_file(&bare.site_conf, SITE_CONF);
    let old2 = old_backup(&bare);
    let out = quick(&bare, &[], &["restore", &old2, "--dry-run"]);
    out.expect_code(0, "dry run, old inventory without videos");
    assert!(out.stdout.contains("0 listed"), "{out}");
    quick(&bare, &[], &["verify", &old2]).expect_code(0, "verify");
}

#[test]
fn old_format_archives_obey_the_same_safety_rules() {
    let t = Tree::new("old-format-unsafe");
    let old = old_backup(&t);
    let original = fs::read(t.archive_path(&old)).unwrap_or_else(|e| panic!("{e}"));
    let stamp = &old["backup-".len()..old.len() - ".tar.gz".len()];
    let work = t.root.join("work");
    let dir = work.join(stamp);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    write_file(&dir.join("configuration.json"), b"{}");
    std::os::unix::fs::symlink("/etc/passwd", dir.join("site.conf"))
        .unwrap_or_else(|e| panic!("{e}"));
    let evil = name_at(now_unix() - 86_400);
    // The stamp of the old archive, under another name: its top folder does not match.
    let out = tool(
        "tar",
        &[
            "-czf".as_ref(),
            t.archive_path(&evil).as_os_str(),
            "-C".as_ref(),
            work.as_os_str(),
            stamp.as_ref(),
        ],
        Path::new("/"),
    );
    out.expect_code(0, "tar");
    let out = quick(&t, &[], &["restore", &evil, "--dry-run"]);
    out.expect_code(1, "an old-format archive for another time");
    // The same folder under its own name: a link inside is refused, nothing written.
    let evil2 = t.archive_path(&old);
    let out = tool(
        "tar",
        &[
            "-czf".as_ref(),
            evil2.as_os_str(),
            "-C".as_ref(),
            work.as_os_str(),
            stamp.as_ref(),
        ],
        Path::new("/"),
    );
    out.expect_code(0, "tar");
    for args in [vec!["restore", &old], vec!["verify", &old]] {
        let out = quick(&t, &[], &args);
        out.expect_code(1, &args.join(" "));
        assert!(
            out.stdout.contains("DAMAGED") || out.stderr.contains("refusing"),
            "{out}"
        );
    }
    assert_eq!(fs::read(&t.site_conf).ok().as_deref(), Some(SITE_CONF));
    // Truncated, it is damaged (its gzip stream ends too soon).
    write_file(&t.archive_path(&old), &original[..original.len() / 2]);
    let out = quick(&t, &[], &["verify", &old]);
    out.expect_code(1, "verify of a truncated old-format archive");
    assert!(out.stdout.contains("DAMAGED"), "{out}");
    // Whole again, it verifies.
    write_file(&t.archive_path(&old), &original);
    quick(&t, &[], &["verify", &old]).expect_code(0, "verify");
}

// ---------------------------------------------------------------------------------
// 5. Bounds: decompression bombs, the config file.

/// Writes a .tar.gz of a few KB whose one `entry` (inside `top/`) inflates to `gib` GiB
/// of zeros: one deflate block of 1 MiB of zeros, self-contained (full flush), repeated.
fn bomb(path: &Path, top: &str, entry: &str, gib: u64) {
    let script = r#"
import sys, tarfile, zlib, io, struct
path, top, entry, gib = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
size = gib << 30
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
    d = tarfile.TarInfo(top); d.type = tarfile.DIRTYPE; d.mode = 0o700; t.addfile(d)
    f = tarfile.TarInfo(top + "/" + entry); f.size = size; f.mode = 0o600
    buf.write(f.tobuf(tarfile.GNU_FORMAT))
head = buf.getvalue()
# tarfile wrote the directory; the file header is appended by hand (its data is zeros).
c = zlib.compressobj(9, zlib.DEFLATED, -15)
out = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", c.compress(head), c.flush(zlib.Z_FULL_FLUSH)]
mib = bytes(1 << 20)
block = c.compress(mib) + c.flush(zlib.Z_FULL_FLUSH)
crc = zlib.crc32(head)
for _ in range(size >> 20):
    out.append(block)
    crc = zlib.crc32(mib, crc)
tail = bytes(10240)  # the end of the tar and its padding
out.append(c.compress(tail) + c.flush(zlib.Z_FINISH))
crc = zlib.crc32(tail, crc)
out.append(struct.pack("<II", crc & 0xffffffff, (len(head) + size + len(tail)) & 0xffffffff))
open(path, "wb").write(b"".join(out))
"#;
    python(
        script,
        &[
            path.as_os_str(),
            top.as_ref(),
            entry.as_ref(),
            gib.to_string().as_ref(),
        ],
    )
    .expect_code(0, "making a decompression bomb");
}

#[test]
fn decompression_bombs_are_refused_in_seconds() {
    let t = Tree::new("bomb");
    fs::create_dir_all(&t.backups).unwrap_or_else(|e| panic!("{e}"));
    let now = now_unix();
    for (i, (entry, why)) in [
        ("system-info.txt", "inflate past 16 MiB"),
        ("videos/match.mp4", "decompression bomb"),
    ]
    .iter()
    .enumerate()
    {
        let name = name_at(now - 86_400 * (i as i64 + 1));
        let path = t.archive_path(&name);
        bomb(&path, &name[..name.len() - 7], entry, 1);
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size < 4 << 20, "a bomb of {size} bytes");
        for args in [
            vec!["verify", name.as_str()],
            vec!["restore", name.as_str(), "--dry-run"],
            vec!["restore", name.as_str()],
        ] {
            let started = Instant::now();
            let mut c = t.command(&args);
            let out = run_within(&mut c, Duration::from_secs(10), &args.join(" "));
            out.expect_code(1, &args.join(" "));
            let said = format!("{}{}", out.stdout, out.stderr);
            assert!(said.contains(why), "{entry}: {}\n{out}", args.join(" "));
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{:?}",
                started.elapsed()
            );
        }
    }
    assert_eq!(
        fs::read(t.configuration_json()).ok().as_deref(),
        Some(CONFIGURATION_JSON)
    );
}

#[test]
fn the_config_file_must_be_a_small_regular_file_and_errors_cut_values() {
    let t = Tree::new("config-bounds");
    // A device, a FIFO: refused at once, exit 2.
    for (what, path) in [
        ("a device", Path::new("/dev/zero").to_path_buf()),
        ("a FIFO", t.root.join("etc/fifo.conf")),
    ] {
        if what == "a FIFO" {
            mkfifo(&path);
        }
        let mut c = t.command_with_config(Some(&path), &["status"]);
        let out = run_within(&mut c, QUICK, what);
        out.expect_code(2, what);
        assert!(
            out.stderr.contains(what) && out.stderr.contains("not a regular file"),
            "{out}"
        );
    }
    // /dev/null is the one device allowed: an empty file (scripts use it).
    let mut c = t.command_with_config(Some(Path::new("/dev/null")), &["status"]);
    run_within(&mut c, QUICK, "--config /dev/null").expect_code(0, "--config /dev/null");
    // 100 MB: refused without reading it.
    let big = t.root.join("etc/big.conf");
    let f = fs::File::create(&big).unwrap_or_else(|e| panic!("{e}"));
    f.set_len(100 << 20).unwrap_or_else(|e| panic!("{e}"));
    let mut c = t.command_with_config(Some(&big), &["status"]);
    let out = run_within(&mut c, QUICK, "a 100 MB config");
    out.expect_code(2, "a 100 MB config");
    assert!(out.stderr.contains("larger than 1 MiB"), "{out}");
    // A bad line of 900 KB: the error names it, cut.
    let mut line = b"RETENTION_DAYS=".to_vec();
    line.extend(std::iter::repeat_n(b'9', 900_000));
    line.push(b'x');
    write_file(&t.config_file, &line);
    let out = quick(&t, &[], &["status"]);
    out.expect_code(2, "a runaway value");
    assert!(
        out.stderr.contains("RETENTION_DAYS") && out.stderr.len() < 1000,
        "{} bytes",
        out.stderr.len()
    );
    let mut line = b"NOT A KEY LINE ".to_vec();
    line.extend(std::iter::repeat_n(b'y', 900_000));
    write_file(&t.config_file, &line);
    let out = quick(&t, &[], &["status"]);
    out.expect_code(2, "a runaway line");
    assert!(
        out.stderr.contains("expected KEY=VALUE") && out.stderr.len() < 1000,
        "{} bytes",
        out.stderr.len()
    );
    // A secret in a world-readable file: a warning; mode 0600: none.
    write_file(&t.config_file, b"API_TOKEN=0123456789abcdef0123\n");
    fs::set_permissions(&t.config_file, fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = quick(&t, &[], &["status"]);
    out.expect_code(0, "status");
    assert!(
        out.stderr.contains("API_TOKEN") && out.stderr.contains("readable by every user"),
        "{out}"
    );
    assert!(
        !out.stderr.contains("0123456789abcdef0123"),
        "the token is never shown: {out}"
    );
    fs::set_permissions(&t.config_file, fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = quick(&t, &[], &["status"]);
    assert!(!out.stderr.contains("readable by every user"), "{out}");
    // 0644 in a folder closed to others: nobody else can read it.
    fs::set_permissions(&t.config_file, fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("{e}"));
    let etc = t.config_file.parent().unwrap_or(&t.root).to_path_buf();
    fs::set_permissions(&etc, fs::Permissions::from_mode(0o700)).unwrap_or_else(|e| panic!("{e}"));
    let out = quick(&t, &[], &["status"]);
    assert!(!out.stderr.contains("readable by every user"), "{out}");
}

// ---------------------------------------------------------------------------------
// 4. Restore: new files 0600 owned like their folder; no symlinked folder followed.

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    fs::symlink_metadata(p).map_or(0, |m| m.mode() & 0o7777)
}

#[test]
fn a_file_missing_on_the_pi_is_restored_0600_and_owned_like_its_folder() {
    use std::os::unix::fs::MetadataExt;
    let t = Tree::new("restore-new-file-mode");
    // The archive records .env as 0777 (it was so on the Pi that day).
    fs::set_permissions(t.sync_agent_env(), fs::Permissions::from_mode(0o777))
        .unwrap_or_else(|e| panic!("{e}"));
    let archive = t.backup(&[]);
    fs::remove_file(t.sync_agent_env()).unwrap_or_else(|e| panic!("{e}"));
    let folder = t.sync_agent_env().parent().unwrap_or(&t.root).to_path_buf();
    let root = unsafe_euid() == 0;
    if root {
        std::os::unix::fs::chown(&folder, Some(1234), Some(2345)).unwrap_or_else(|e| panic!("{e}"));
    }
    let out = quick(&t, &[], &["restore", &archive, "--only", "sync-agent.env"]);
    out.expect_code(0, "restore of a missing .env");
    assert_eq!(
        fs::read(t.sync_agent_env()).ok().as_deref(),
        Some(SYNC_AGENT_ENV)
    );
    assert_eq!(mode_of(&t.sync_agent_env()), 0o600, "{out}");
    if root {
        let m = fs::metadata(t.sync_agent_env()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((m.uid(), m.gid()), (1234, 2345), "owned like its folder");
    }
}

fn unsafe_euid() -> u32 {
    let out = tool("id", &["-u".as_ref()], Path::new("/"));
    out.stdout.trim().parse().unwrap_or(u32::MAX)
}

#[test]
fn restore_never_follows_a_symlinked_folder_to_write_elsewhere() {
    let t = Tree::new("restore-symlinked-folder");
    let archive = t.backup(&[]);
    // webapp/ becomes a link to another folder (e.g. made by the unprivileged user that
    // owns NEOPRO_DIR, hoping for a root restore), and so does SITE_CONF's folder.
    let elsewhere = t.root.join("elsewhere");
    let elsewhere_etc = t.root.join("elsewhere-etc");
    fs::create_dir_all(&elsewhere).unwrap_or_else(|e| panic!("{e}"));
    fs::create_dir_all(&elsewhere_etc).unwrap_or_else(|e| panic!("{e}"));
    let webapp = t
        .configuration_json()
        .parent()
        .unwrap_or(&t.root)
        .to_path_buf();
    fs::remove_dir_all(&webapp).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(&elsewhere, &webapp).unwrap_or_else(|e| panic!("{e}"));
    let etc = t.site_conf.parent().unwrap_or(&t.root).to_path_buf();
    let etc_real = t.root.join("etc-real");
    fs::rename(&etc, &etc_real).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(&elsewhere_etc, &etc).unwrap_or_else(|e| panic!("{e}"));
    write_file(&t.sync_agent_env(), b"SYNC_TOKEN=changed\n");

    // (The tree's config file moved with etc/: use one beside it.)
    let conf = t.root.join("backup.conf");
    write_file(&conf, b"");
    let run = |args: &[&str]| {
        let mut c = t.command_with_config(Some(&conf), args);
        run_within(&mut c, QUICK, &args.join(" "))
    };
    let out = run(&["restore", &archive]);
    assert!(
        names_in(&elsewhere).is_empty() && names_in(&elsewhere_etc).is_empty(),
        "a restore wrote through a symlinked folder: {:?} {:?}\n{out}",
        names_in(&elsewhere),
        names_in(&elsewhere_etc)
    );
    out.expect_code(1, "restore with two symlinked folders");
    assert!(
        out.stdout.contains("FAILED") && out.stdout.contains("symbolic link"),
        "{out}"
    );
    let out = run(&["restore", &archive, "--dry-run"]);
    out.expect_code(0, "dry run");
    assert!(out.stdout.contains("symbolic link"), "{out}");
    // The file whose folder is real was restored.
    assert_eq!(
        fs::read(t.sync_agent_env()).ok().as_deref(),
        Some(SYNC_AGENT_ENV)
    );
}

// ---------------------------------------------------------------------------------
// 6. `check`, a Nagios plugin: one line, escaped; exit 3 for usage and config errors.

#[test]
fn check_prints_one_escaped_line_and_exits_3_on_usage_or_config_errors() {
    let t = Tree::new("check-nagios");
    t.backup(&[]);
    // A failed run whose error names a hostile video (what a copy error records).
    let evil = t.videos().join("evil\nOK: all good.mp4");
    let status = format!(
        "{{\"timestamp\":\"{}\",\"date\":\"2024-12-18\",\"success\":false,\"archive\":null,\
         \"size\":null,\"size_bytes\":null,\"backups_count\":1,\"retention_days\":7,\
         \"duration_ms\":5,\"warnings\":[],\"error\":\"{}\",\"last_success\":null}}\n",
        iso_utc(now_unix()),
        format!(
            "copying video {} failed: the file shrank while it was being read\r\x1b[32mOK",
            evil.display()
        )
        .replace('\n', "\\n")
        .replace('\r', "\\r")
        .replace('\x1b', "\\u001b")
    );
    write_file(
        &t.backups.join("last-backup-status.json"),
        status.as_bytes(),
    );
    let out = quick(&t, &[], &["check"]);
    out.expect_code(2, "check after a failed run");
    assert_eq!(out.stdout.lines().count(), 1, "exactly one line: {out}");
    assert!(out.stdout.starts_with("CRITICAL:"), "{out}");
    assert!(
        out.stdout.contains("evil\\nOK: all good.mp4"),
        "escaped: {out}"
    );
    assert!(
        !out.stdout.contains('\r') && !out.stdout.contains('\x1b'),
        "no control character: {:?}",
        out.stdout
    );

    // Usage and configuration errors: UNKNOWN, exit 3, one line on stdout.
    let missing = t.root.join("nope.conf");
    let missing = missing.to_string_lossy().into_owned();
    for (env, args) in [
        (vec![], vec!["check", "--max-age-hours", "0"]),
        (vec![], vec!["check", "--max-age-hours", "x\ny"]),
        (vec![], vec!["check", "extra"]),
        (vec![], vec!["check", "--json"]),
        (vec![("RETENTION_DAYS", "seven")], vec!["check"]),
        (vec![], vec!["--config", missing.as_str(), "check"]),
    ] {
        let mut c = if args[0] == "--config" {
            t.command_with_config(None, &args)
        } else {
            t.command(&args)
        };
        for (k, v) in &env {
            c.env(k, v);
        }
        let out = run_within(&mut c, QUICK, &args.join(" "));
        out.expect_code(3, &format!("{env:?} {}", args.join(" ")));
        assert_eq!(out.stdout.lines().count(), 1, "{out}");
        assert!(out.stdout.starts_with("UNKNOWN: "), "{out}");
    }
    // Other commands keep exit 2 for the same errors.
    quick(&t, &[], &["status", "--max-age-hours", "3"]).expect_code(2, "status usage");
}

// ---------------------------------------------------------------------------------
// 9. Disk figures as df computes them; folder modes kept; `created` from the name.

/// A small ext4 file system with 25 % of its blocks reserved for root, mounted on
/// `at` for the length of a test (needs root and a loop device, as in CI).
struct Ext4 {
    at: std::path::PathBuf,
}

impl Ext4 {
    fn mount(image: &Path, at: &Path) -> Option<Ext4> {
        fs::create_dir_all(at).unwrap_or_else(|e| panic!("{e}"));
        let f = fs::File::create(image).unwrap_or_else(|e| panic!("{e}"));
        f.set_len(64 << 20).unwrap_or_else(|e| panic!("{e}"));
        let mkfs = tool(
            "mkfs.ext4",
            &[
                "-q".as_ref(),
                "-F".as_ref(),
                "-m".as_ref(),
                "25".as_ref(),
                image.as_os_str(),
            ],
            Path::new("/"),
        );
        let mount = (mkfs.code == 0).then(|| {
            tool(
                "mount",
                &[
                    "-o".as_ref(),
                    "loop".as_ref(),
                    image.as_os_str(),
                    at.as_os_str(),
                ],
                Path::new("/"),
            )
        });
        match mount {
            Some(m) if m.code == 0 => Some(Ext4 {
                at: at.to_path_buf(),
            }),
            other => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "cannot mount an ext4 image (needs root and a loop device): {mkfs} {:?}",
                    other.map(|o| o.to_string())
                );
                eprintln!("SKIPPED: cannot mount an ext4 image (needs root and a loop device)");
                None
            }
        }
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.at)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        }
    }
}

#[test]
fn system_info_gives_the_disk_figures_of_df() {
    let t = Tree::bare("disk-df");
    let Some(_fs) = Ext4::mount(&t.root.join("card.img"), &t.neopro) else {
        return;
    };
    write_file(&t.configuration_json(), CONFIGURATION_JSON);
    let made = t.backup(&[]);
    let info = read_member(
        &t.archive_path(&made),
        &format!("{}/system-info.txt", &made[..made.len() - 7]),
    );
    let info = String::from_utf8_lossy(&info).into_owned();
    let line = info
        .lines()
        .find(|l| l.starts_with("disk ("))
        .unwrap_or_else(|| panic!("no disk line:\n{info}"));
    let pct: u64 = line
        .rsplit('(')
        .next()
        .and_then(|p| p.split('%').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no percentage in {line:?}"));
    let df = tool(
        "df",
        &[
            "-B1".as_ref(),
            "--output=size,used,avail,pcent".as_ref(),
            t.neopro.as_os_str(),
        ],
        Path::new("/"),
    );
    df.expect_code(0, "df");
    let f: Vec<u64> = df
        .stdout
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|v| v.trim_end_matches('%').parse().ok())
        .collect();
    assert_eq!(f.len(), 4, "{df}");
    assert_eq!(pct, f[3], "{line:?} but df says {}", df.stdout);
    // Reserved blocks are neither used nor free: a fresh card is a few % used, not 25.
    assert!(pct < 10, "{line:?}");
    assert!(line.contains(" used of "), "{line:?}");
}

#[test]
fn video_folders_keep_their_mode_in_the_archive() {
    let t = Tree::new("folder-modes");
    let modes = [
        ("Match", 0o755),
        ("Match/2024", 0o750),
        ("archive/old", 0o711),
    ];
    for (d, m) in modes {
        fs::set_permissions(t.videos().join(d), fs::Permissions::from_mode(m))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    fs::set_permissions(t.videos(), fs::Permissions::from_mode(0o775))
        .unwrap_or_else(|e| panic!("{e}"));
    let made = t.backup(&[("INCLUDE_VIDEOS", "true")]);
    let out = python(
        "import sys, tarfile\n\
         for m in tarfile.open(sys.argv[1]):\n\
         \x20   if m.isdir(): print(m.name, oct(m.mode))",
        &[t.archive_path(&made).as_os_str()],
    );
    out.expect_code(0, "tarfile");
    let top = &made[..made.len() - 7];
    let mode_of = |inner: &str| {
        out.stdout
            .lines()
            .find_map(|l| {
                let key = if inner.is_empty() {
                    format!("{top} ")
                } else {
                    format!("{top}/{inner} ")
                };
                l.strip_prefix(&key)
            })
            .unwrap_or_else(|| panic!("no folder {inner}:\n{}", out.stdout))
            .to_string()
    };
    assert_eq!(mode_of(""), "0o700", "the top folder holds secrets");
    assert_eq!(mode_of("videos"), "0o775");
    for (d, m) in modes {
        assert_eq!(mode_of(&format!("videos/{d}")), format!("{m:#o}"), "{d}");
    }
}

#[test]
fn the_list_dates_created_from_the_name_not_the_mtime() {
    let t = Tree::new("created-from-name");
    let made = t.backup(&[]);
    let planted = "backup-20241218-030000.tar.gz";
    fs::copy(t.archive_path(&made), t.archive_path(planted)).unwrap_or_else(|e| panic!("{e}"));
    set_mtime(&t.archive_path(planted), 1_000_000_000); // 2001: a copy that reset it
    for (tz, created) in [
        ("UTC", "2024-12-18T03:00:00.000Z"),
        ("Europe/Paris", "2024-12-18T02:00:00.000Z"),
    ] {
        let out = quick(&t, &[("TZ", tz)], &["list", "--json"]);
        let j = parse_json(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
        let b = j
            .get("backups")
            .arr()
            .iter()
            .find(|b| b.get("name").str() == planted)
            .unwrap_or_else(|| panic!("{planted} not listed: {out}"));
        assert_eq!(b.get("created").str(), created, "{tz}");
        assert_eq!(b.get("date").str(), "2024-12-18 03:00:00");
    }
}
