//! Helpers of the field-safety tests (tests/it/field.rs, tests/it/field_clock.rs,
//! tests/it/field_archives.rs): a runner with a short deadline (a test that would hang
//! fails instead, quickly), archives at chosen dates, libfaketime, the daemon, archives
//! of the old auto-backup.sh (bench/old-backup.sh), decompression bombs, an ext4 image.

// Each test file uses its own subset of these helpers.
#![allow(dead_code)]

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::common::*;

/// How long a command of these tests may take before the test fails.
pub const QUICK: Duration = Duration::from_secs(30);

/// Runs `c` to completion within `limit`, else kills it and fails the test.
pub fn run_within(c: &mut Command, limit: Duration, what: &str) -> Out {
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

pub fn quick(t: &Tree, env: &[(&str, &str)], args: &[&str]) -> Out {
    let mut c = t.command(args);
    for (k, v) in env {
        c.env(k, v);
    }
    run_within(&mut c, QUICK, &format!("neopro-backup {}", args.join(" ")))
}

pub fn mkfifo(path: &Path) {
    let _ = fs::remove_file(path);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir: {e}"));
    }
    tool("mkfifo", &[path.as_os_str()], Path::new("/")).expect_code(0, "mkfifo");
}

pub fn warnings(t: &Tree) -> Vec<String> {
    t.status()
        .get("warnings")
        .arr()
        .iter()
        .map(|w| w.str().to_string())
        .collect()
}

pub fn tar_list(path: &Path) -> Vec<String> {
    let out = tool("tar", &["-tzf".as_ref(), path.as_os_str()], Path::new("/"));
    out.expect_code(0, "tar -tzf");
    out.stdout.lines().map(str::to_string).collect()
}

/// `backup-YYYYMMDD-HHMMSS.tar.gz` for a Unix time (TZ=UTC in these tests).
pub fn name_at(unix: i64) -> String {
    let iso = iso_utc(unix); // 2024-12-18T03:00:00+00:00
    let d: String = iso.chars().filter(char::is_ascii_digit).take(14).collect();
    format!("backup-{}-{}.tar.gz", &d[..8], &d[8..14])
}

/// Unix time of a UTC date and time.
pub fn utc(y: i64, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
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
pub fn plant_valid(t: &Tree, model: &Path, unix: i64) -> String {
    let name = name_at(unix);
    fs::copy(model, t.archive_path(&name)).unwrap_or_else(|e| panic!("copy: {e}"));
    name
}

/// libfaketime's preload library, or None (the test says it is skipped, and fails
/// when CI=true).
pub fn libfaketime() -> Option<String> {
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
pub fn faked<'a>(lib: &'a str, spec: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("LD_PRELOAD", lib),
        ("FAKETIME", spec),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ("NO_FAKE_STAT", "1"),
    ]
}

/// `list --json`'s backups: (name, format).
pub fn listed(t: &Tree) -> Vec<(String, String)> {
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

/// `serve` on 127.0.0.1:0, stderr collected; killed on drop.
pub struct Daemon {
    child: std::process::Child,
    addr: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Daemon {
    pub fn start(t: &Tree, env: &[(&str, &str)]) -> Daemon {
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

    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits for a stderr line holding `needle` (after those already seen by an earlier
    /// call with the same needle is the caller's business) and returns it.
    pub fn wait_log(&mut self, needle: &str, limit: Duration) -> String {
        self.wait_log_count(needle, 1, limit)
    }

    /// Waits until `n` lines hold `needle`; returns the n-th.
    pub fn wait_log_count(&mut self, needle: &str, n: usize, limit: Duration) -> String {
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
    pub fn get(&self, path: &str) -> (u16, String) {
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

    pub fn auto_status(&self) -> Json {
        let (st, body) = self.get("/api/backups/auto-status");
        assert_eq!(st, 200, "{body}");
        parse_json(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// The value of a metric of /metrics.
    pub fn metric(&self, name: &str) -> f64 {
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
pub struct FakeClock {
    pub spec: std::path::PathBuf,
    start: f64,
}

/// The daemon's clock runs this many times faster than the real one: its one-minute
/// naps last a second, a few fake minutes pass in a few real seconds.
pub const RATE: i64 = 60;

pub fn real_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl FakeClock {
    pub fn new(dir: &Path) -> FakeClock {
        FakeClock {
            spec: dir.join("faketime.spec"),
            start: real_now(),
        }
    }

    /// Sets the daemon's clock to `target` (Unix seconds) now; it then runs at RATE.
    pub fn set(&self, target: i64) {
        let r = real_now();
        let offset = target as f64 - self.start - (r - self.start) * RATE as f64;
        let tmp = self.spec.with_extension("tmp");
        fs::write(&tmp, format!("{:+} x{RATE}\n", offset.round() as i64))
            .unwrap_or_else(|e| panic!("{e}"));
        fs::rename(&tmp, &self.spec).unwrap_or_else(|e| panic!("{e}"));
    }
}

pub fn with_prefix(names: &[String], prefix: &str) -> Vec<String> {
    names
        .iter()
        .filter(|n| n.starts_with(prefix))
        .cloned()
        .collect()
}

/// Runs bench/old-backup.sh (a re-creation of the old script) on this tree; returns the
/// archive it wrote.
pub fn old_backup(t: &Tree) -> String {
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
    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
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

/// Writes a .tar.gz of a few KB whose one `entry` (inside `top/`) inflates to `gib` GiB
/// of zeros: one deflate block of 1 MiB of zeros, self-contained (full flush), repeated.
pub fn bomb(path: &Path, top: &str, entry: &str, gib: u64) {
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

pub fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    fs::symlink_metadata(p).map_or(0, |m| m.mode() & 0o7777)
}

pub fn unsafe_euid() -> u32 {
    let out = tool("id", &["-u".as_ref()], Path::new("/"));
    out.stdout.trim().parse().unwrap_or(u32::MAX)
}

/// A small ext4 file system with 25 % of its blocks reserved for root, mounted on
/// `at` for the length of a test (needs root and a loop device, as in CI).
pub struct Ext4 {
    at: std::path::PathBuf,
}

impl Ext4 {
    pub fn mount(image: &Path, at: &Path) -> Option<Ext4> {
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
