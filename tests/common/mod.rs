//! Shared helpers for the black-box tests: a throwaway Pi-like tree in a fresh temp
//! folder, a runner for the built binary with a clean environment, the external tools
//! the contract names (GNU tar, gzip, sha256sum, Python's tarfile), a small JSON reader,
//! a tmpfs mount guard for the disk-full tests (CI runs as root), a guard that kills a
//! child process when the test ends, and a poll with a deadline. The servers under test
//! are started by `daemon`, and spoken to by `net::http`.
//!
//! Std only (and libc), so that the tests build wherever the binary builds.

pub mod daemon;
pub mod google;
pub mod json;
pub mod net;
pub mod s3;

pub use daemon::Daemon;
pub use json::{Json, parse_json};

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The binary under test, built by Cargo for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_neopro-backup");

/// The mtime given to every generated source file (2023-11-14T22:13:20Z), so that the
/// inventory is predictable.
pub const BASE_MTIME: i64 = 1_700_000_000;

pub const CONFIGURATION_JSON: &[u8] =
    b"{\r\n  \"club\": \"Stade \xc3\xa9quipe\",\n  \"videos\": [\"promo.mp4\"],\n\t\"trailing\": \"no newline at end\" } ";
pub const SYNC_AGENT_ENV: &[u8] =
    b"SYNC_SERVER=https://sync.example.org\nSYNC_TOKEN=s3cr3t-t0ken=with=equals\n# comment\n\nBINARY=\x00\x01\xff\n";
pub const SITE_CONF: &[u8] = b"SITE_NAME=\"Club Test\"\nSITE_ID=club-test-01\n";

/// The videos of the default tree: (path relative to videos/, size in bytes).
pub const VIDEOS: &[(&str, u64)] = &[
    ("promo.mp4", 3000),
    ("Match/HIGHLIGHTS.MKV", 2100),
    ("Match/2024/final.Mov", 1500),
    ("archive/old/deep/clip.avi", 700),
    ("folder.mp4/inside.mP4", 55),
    ("empty.mp4", 0),
];

/// Files under videos/ that are not videos and must stay out of the inventory.
pub const NON_VIDEOS: &[&str] = &[
    "thumbnails/promo.jpg",
    "thumbnails/clip.png",
    "Match/cover.JPG",
    "promo.mp4.part",
    "notes.txt",
    "mp4",
    "archive/old/deep/clip.avi.srt",
];

/// A Pi-like tree in a fresh folder under the system temp dir, removed on drop
/// (set NEOPRO_TEST_KEEP=1 to keep it for a post-mortem).
pub struct Tree {
    pub root: PathBuf,
    /// NEOPRO_DIR: webapp/configuration.json, sync-agent/.env, videos/.
    pub neopro: PathBuf,
    /// BACKUP_DIR (not created: the binary creates it).
    pub backups: PathBuf,
    /// SITE_CONF.
    pub site_conf: PathBuf,
    /// An existing (empty) config file passed with --config, so that the host's
    /// /etc/neopro/backup.conf never leaks into a test.
    pub config_file: PathBuf,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh, empty folder named after `name`, unique across parallel tests and runs.
pub fn fresh_dir(name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "neopro-backup-test-{name}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

impl Tree {
    /// The standard tree: the three config files, videos (nested, mixed-case extensions)
    /// and non-video files (thumbnails…) beside them.
    pub fn new(name: &str) -> Tree {
        let t = Tree::bare(name);
        write_file(
            &t.neopro.join("webapp/configuration.json"),
            CONFIGURATION_JSON,
        );
        write_file(&t.neopro.join("sync-agent/.env"), SYNC_AGENT_ENV);
        fs::set_permissions(
            t.neopro.join("sync-agent/.env"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap_or_else(|e| panic!("chmod .env: {e}"));
        write_file(&t.site_conf, SITE_CONF);
        for (i, (rel, size)) in VIDEOS.iter().enumerate() {
            t.add_video(rel.as_bytes(), *size, BASE_MTIME + 1000 * i as i64);
        }
        for rel in NON_VIDEOS {
            write_file(&t.videos().join(rel), b"not a video");
        }
        t
    }

    /// Only the folders: NEOPRO_DIR (empty), the config file, nothing else.
    pub fn bare(name: &str) -> Tree {
        let root = fresh_dir(name);
        let t = Tree {
            neopro: root.join("neopro"),
            backups: root.join("backups"),
            site_conf: root.join("etc/site.conf"),
            config_file: root.join("etc/backup.conf"),
            root,
        };
        fs::create_dir_all(&t.neopro).unwrap_or_else(|e| panic!("mkdir: {e}"));
        write_file(&t.config_file, b"");
        t
    }

    pub fn videos(&self) -> PathBuf {
        self.neopro.join("videos")
    }

    pub fn configuration_json(&self) -> PathBuf {
        self.neopro.join("webapp/configuration.json")
    }

    pub fn sync_agent_env(&self) -> PathBuf {
        self.neopro.join("sync-agent/.env")
    }

    /// Adds a video (any bytes for a name, e.g. with a tab or a newline) of `size`
    /// deterministic bytes and the given mtime.
    pub fn add_video(&self, rel: &[u8], size: u64, mtime: i64) -> PathBuf {
        let path = self.videos().join(std::ffi::OsStr::from_bytes(rel));
        write_random(&path, size, size ^ rel.len() as u64);
        set_mtime(&path, mtime);
        path
    }

    /// The binary with a clean environment: NEOPRO_DIR, BACKUP_DIR, SITE_CONF of this
    /// tree, TZ=UTC, no PATH (so no systemctl: service states are `unknown`), and
    /// `--config` pointing at this tree's config file. Add or remove variables on the
    /// returned command as needed.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_with_config(Some(&self.config_file), args)
    }

    /// Same environment, with `--config PATH` or (None) no `--config` at all.
    pub fn command_with_config(&self, config: Option<&Path>, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("NEOPRO_DIR", &self.neopro)
            .env("BACKUP_DIR", &self.backups)
            .env("SITE_CONF", &self.site_conf)
            .env("TZ", "UTC")
            .stdin(Stdio::null());
        if let Some(path) = config {
            c.arg("--config").arg(path);
        }
        c.args(args);
        c
    }

    /// Runs the binary with this tree's environment and waits for it.
    pub fn run(&self, args: &[&str]) -> Out {
        self.run_env(&[], args)
    }

    /// Same, with extra environment variables.
    pub fn run_env(&self, env: &[(&str, &str)], args: &[&str]) -> Out {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        output(&mut c)
    }

    /// Runs `run` and insists on success; returns the archive it made (a file name).
    pub fn backup(&self, env: &[(&str, &str)]) -> String {
        let before = archives(&self.backups);
        let out = self.run_env(env, &["run"]);
        out.expect_code(0, "a backup run");
        let new: Vec<String> = archives(&self.backups)
            .into_iter()
            .filter(|a| !before.contains(a))
            .collect();
        assert_eq!(
            new.len(),
            1,
            "one new archive expected, found {new:?}\n{out}"
        );
        new.into_iter().next().unwrap_or_default()
    }

    pub fn archive_path(&self, name: &str) -> PathBuf {
        self.backups.join(name)
    }

    /// The parsed last-backup-status.json.
    pub fn status(&self) -> Json {
        let path = self.backups.join("last-backup-status.json");
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        parse_json(&text).unwrap_or_else(|e| panic!("{}: bad JSON ({e}): {text}", path.display()))
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        if std::env::var_os("NEOPRO_TEST_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// What a process did: exit code (a signal is a test failure), stdout, stderr.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn expect_code(&self, code: i32, what: &str) -> &Out {
        assert_eq!(self.code, code, "{what}: unexpected exit code\n{self}");
        self
    }
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit code {}\n--- stdout ---\n{}--- stderr ---\n{}--------------",
            self.code, self.stdout, self.stderr
        )
    }
}

/// How long any process of a test may run before the test fails (no test hangs).
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs a prepared command to completion (at most `PROCESS_TIMEOUT`).
pub fn output(c: &mut Command) -> Out {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", c.get_program()));
    wait_output(child, &format!("{:?}", c.get_program()))
}

/// Waits for a child started with piped stdout and stderr, killing it (and failing the
/// test) after `PROCESS_TIMEOUT`.
pub fn wait_output(mut child: Child, what: &str) -> Out {
    fn drain(r: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    }
    let so = drain(child.stdout.take());
    let se = drain(child.stderr.take());
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not finish within {PROCESS_TIMEOUT:?}");
            }
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    };
    let stdout = String::from_utf8_lossy(&so.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&se.join().unwrap_or_default()).into_owned();
    let code = status
        .code()
        .unwrap_or_else(|| panic!("{what} was killed by a signal: {status:?}\n{stderr}"));
    Out {
        code,
        stdout,
        stderr,
    }
}

/// A child process (a daemon, a proxy) killed and reaped when the test ends, even when
/// it fails.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `f` every 100 ms until it holds; fails the test after `secs` seconds.
pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {secs} s waiting for {what}");
}

/// Runs an external tool (tar, gzip, sha256sum, python3…) in `cwd`.
pub fn tool(prog: &str, args: &[&std::ffi::OsStr], cwd: &Path) -> Out {
    let mut c = Command::new(prog);
    c.args(args).current_dir(cwd).stdin(Stdio::null());
    output(&mut c)
}

/// Runs `python3 -c script args…`.
pub fn python(script: &str, args: &[&std::ffi::OsStr]) -> Out {
    let mut c = Command::new("python3");
    c.arg("-c").arg(script).args(args).stdin(Stdio::null());
    output(&mut c)
}

/// Extracts `archive` with GNU tar into a fresh `dest` (created) and returns `dest`.
pub fn extract(archive: &Path, dest: &Path) -> PathBuf {
    fs::create_dir_all(dest).unwrap_or_else(|e| panic!("mkdir {}: {e}", dest.display()));
    let out = tool(
        "tar",
        &[
            "-xzf".as_ref(),
            archive.as_os_str(),
            "-C".as_ref(),
            dest.as_os_str(),
        ],
        dest,
    );
    out.expect_code(0, "tar -xzf");
    dest.to_path_buf()
}

/// One member of an archive, read with GNU tar.
pub fn read_member(archive: &Path, member: &str) -> Vec<u8> {
    let o = Command::new("tar")
        .arg("-xzOf")
        .arg(archive)
        .arg(member)
        .output()
        .unwrap_or_else(|e| panic!("cannot run tar: {e}"));
    assert!(
        o.status.success(),
        "tar -xzOf {} {member}: {}",
        archive.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// Names in `dir` (non-recursive), sorted; empty when `dir` is missing.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// `backup-YYYYMMDD-HHMMSS.tar.gz` names in `dir`, sorted (oldest first).
pub fn archives(dir: &Path) -> Vec<String> {
    names_in(dir)
        .into_iter()
        .filter(|n| is_archive_name(n))
        .collect()
}

/// Temporary files (`.tmp-…`) in `dir`.
pub fn temp_files(dir: &Path) -> Vec<String> {
    names_in(dir)
        .into_iter()
        .filter(|n| n.starts_with(".tmp-"))
        .collect()
}

pub fn is_archive_name(n: &str) -> bool {
    let b = n.as_bytes();
    b.len() == 29
        && n.starts_with("backup-")
        && n.ends_with(".tar.gz")
        && b[15] == b'-'
        && b[7..15].iter().all(u8::is_ascii_digit)
        && b[16..22].iter().all(u8::is_ascii_digit)
}

pub fn write_file(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
    }
    fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

pub fn set_mtime(path: &Path, unix: i64) {
    let t = UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(t))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

/// Writes `size` pseudo-random (incompressible) bytes. Fast even in a debug build: one
/// 1 MiB block is generated and written again with a changing first word.
pub fn write_random(path: &Path, size: u64, seed: u64) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
    }
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let block_len = size.min(1 << 20) as usize;
    let mut block = Vec::with_capacity(block_len + 8);
    while block.len() < block_len {
        block.extend_from_slice(&next().to_le_bytes());
    }
    block.truncate(block_len);
    let mut f = fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        if n >= 8 {
            block[..8].copy_from_slice(&next().to_le_bytes());
        }
        f.write_all(&block[..n])
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        left -= n as u64;
    }
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `2024-12-18T03:00:00+00:00` for a Unix time (what the binary prints with TZ=UTC).
pub fn iso_utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `backup-YYYYMMDD-HHMMSS.tar.gz` for a Unix time (TZ=UTC in the tests).
pub fn name_at(unix: i64) -> String {
    let iso = iso_utc(unix); // 2024-12-18T03:00:00+00:00
    let digits: String = iso[..19].chars().filter(char::is_ascii_digit).collect();
    format!("backup-{}-{}.tar.gz", &digits[..8], &digits[8..])
}

/// Whether this process runs as root (the owner of /proc/self is its effective uid).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// For a test that needs root (a tmpfs mount, a chown to another user): true when root.
/// Otherwise it says on the terminal that `test` is skipped (written to stderr directly,
/// past the test harness's capture, so that the skip is never silent) and returns false,
/// for the test to return; under CI=true, where every test must run, it fails instead.
pub fn need_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} needs root (mount, chown) and CI=true: it must run, run the tests as root"
    );
    let _ = writeln!(
        std::io::stderr(),
        "SKIP {test}: needs root (mount, chown); run the tests as root, as CI does"
    );
    false
}

/// A tmpfs mounted for the length of a test, unmounted on drop (even when the test
/// panics). Needs root, as in CI.
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    pub fn mount(path: &Path, size_bytes: u64, extra_opts: &str) -> Tmpfs {
        fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        let opts = format!("size={size_bytes},mode=0700{extra_opts}");
        let out = tool(
            "mount",
            &[
                "-t".as_ref(),
                "tmpfs".as_ref(),
                "-o".as_ref(),
                opts.as_ref(),
                "tmpfs".as_ref(),
                path.as_os_str(),
            ],
            Path::new("/"),
        );
        assert_eq!(
            out.code,
            0,
            "cannot mount a tmpfs on {} (this test needs root, as in CI)\n{out}",
            path.display()
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    /// Remounts read-only.
    pub fn remount_ro(&self) {
        let out = tool(
            "mount",
            &["-o".as_ref(), "remount,ro".as_ref(), self.path.as_os_str()],
            Path::new("/"),
        );
        out.expect_code(0, "mount -o remount,ro");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        unmount(&self.path);
    }
}

/// Unmounts `path` (at the end of a test, even a failed one); when it is busy (a child
/// still running after a failed assertion), detaches it lazily.
pub fn unmount(path: &Path) {
    let ok = Command::new("umount")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = Command::new("umount").arg("-l").arg(path).status();
    }
}

/// Free bytes for an unprivileged writer on the file system holding `path`, from `df`.
pub fn free_bytes(path: &Path) -> u64 {
    let out = tool(
        "df",
        &["-B1".as_ref(), "--output=avail".as_ref(), path.as_os_str()],
        Path::new("/"),
    );
    out.expect_code(0, "df");
    out.stdout
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("cannot parse df output\n{out}"))
}

/// Unix seconds of a UTC calendar date and time (the inverse of `iso_utc`).
pub fn naive_utc(year: i64, month: i64, day: i64, hour: i64, minute: i64, second: i64) -> i64 {
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hour * 3600 + minute * 60 + second
}

/// Every file, folder and link under `root`: type, mode, size and bytes (and with
/// `dir_mtimes`, each folder's mtime to the nanosecond). Two equal snapshots: nothing
/// was written, created or removed.
pub fn snapshot(root: &Path, dir_mtimes: bool) -> std::collections::BTreeMap<String, String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let rel = p
            .strip_prefix(root)
            .map(|r| r.display().to_string())
            .unwrap_or_default();
        let what = if meta.is_dir() {
            for e in fs::read_dir(&p).unwrap_or_else(|e| panic!("{e}")) {
                stack.push(e.unwrap_or_else(|e| panic!("{e}")).path());
            }
            if dir_mtimes {
                format!(
                    "dir {:o} mtime {}",
                    meta.mode(),
                    meta.mtime_nsec() + meta.mtime() * 1_000_000_000
                )
            } else {
                format!("dir {:o}", meta.mode())
            }
        } else if meta.file_type().is_symlink() {
            format!("link {:?}", fs::read_link(&p).ok())
        } else {
            format!(
                "file {:o} {} {:?}",
                meta.mode(),
                meta.len(),
                fs::read(&p).unwrap_or_default()
            )
        };
        out.insert(rel, what);
    }
    out
}

/// A freshly flashed card: no NEOPRO_DIR, no site.conf, no BACKUP_DIR.
pub fn blank_card(name: &str) -> Tree {
    let t = Tree::bare(name);
    fs::remove_dir_all(&t.neopro).unwrap_or_else(|e| panic!("{e}"));
    t
}
