//! Helpers of the field-safety tests (tests/it/field.rs, tests/it/field_clock.rs,
//! tests/it/field_archives.rs): a runner with a short deadline (a test that would hang
//! fails instead, quickly), archives at chosen dates, libfaketime, archives
//! of the old auto-backup.sh (bench/old-backup.sh), decompression bombs, an ext4 image.

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
        unmount(&self.at);
    }
}

/// The daemon's own clock (under libfaketime: the fake one), read from the `Date`
/// header of its `/healthz` answer (`Wed, 18 Dec 2024 03:00:00 GMT`).
pub fn daemon_now(d: &Daemon) -> Option<i64> {
    let a = d.req("GET", "/healthz", &[], b"");
    let v = a.header("Date")?;
    let p: Vec<&str> = v.split([' ', ':']).collect();
    let [_, day, mon, year, h, m, s, "GMT"] = p.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|x| x == mon)? as i64 + 1;
    Some(naive_utc(
        year.parse().ok()?,
        month,
        day.parse().ok()?,
        h.parse().ok()?,
        m.parse().ok()?,
        s.parse().ok()?,
    ))
}

/// Waits until the daemon's clock reads `target` or later (its Date header): an event,
/// not a fixed sleep. Panics after `limit`.
pub fn wait_daemon_clock(d: &Daemon, target: i64, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let now = daemon_now(d);
        if now.is_some_and(|n| n >= target) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon's clock did not reach {target} (it says {now:?})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
