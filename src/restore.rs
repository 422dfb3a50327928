//! Restore: put an archive's configuration files back where they came from, from the
//! CLI (`restore ARCHIVE [--dry-run] [--only FILE,...]`) and the API
//! (`POST /api/backups/restore/:filename`, body `{"dryRun": bool}`).
//!
//! The flow, the same for both:
//! 1. `load`: read the archive once — gzip CRC, tar structure, safe paths in one top
//!    folder, MANIFEST.sha256 — and accept only the names a backup writes. Anything else
//!    (absolute path, `..`, link, device, fifo, unexpected name, mismatch) refuses the
//!    whole restore before anything is written. The small files are kept in memory.
//! 2. `inspect`: compare each selected file with the Pi (unchanged, changed, missing on
//!    the Pi, missing in the archive) and say what would stop its write. The dry run
//!    stops here, after comparing the archive's video inventory with the Pi's videos.
//! 3. Under the backup lock: a safety backup of the current state (a normal archive,
//!    without the videos, which a restore never touches), then each changed file
//!    replaced atomically in its own folder (temp, fsync, rename, fsync of the folder),
//!    keeping the current owner and mode. A file that cannot be written is a per-file
//!    error; the others are still restored. Unchanged files are not rewritten.
//! 4. Log everything to backup.log, report, and run RESTART_CMD when every file was
//!    restored.
//!
//! Videos are never restored by this command: the archive lists them (and holds them
//! with INCLUDE_VIDEOS), but copying them back is left to the operator; the dry run says
//! which ones are no longer on the Pi.

use std::collections::{BTreeSet, HashMap};
use std::ffi::CString;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::backup::archive::{self, EntrySeen, MANIFEST};
use crate::backup::inventory;
use crate::backup::{self, Sources};
use crate::clock::Tz;
use crate::config::Config;
use crate::fsutil::{self, LockWait};
use crate::status::Log;
use crate::store;

/// The files this command restores, by their name in the archive, in restore order.
pub const FILES: [&str; 3] = ["configuration.json", "sync-agent.env", "site.conf"];
pub const INVENTORY: &str = "videos-inventory.txt";
const SYSINFO: &str = "system-info.txt";
/// How long RESTART_CMD may run before it is killed.
const RESTART_TIMEOUT: Duration = Duration::from_secs(60);
/// Output of RESTART_CMD kept for the report and the log.
const RESTART_OUTPUT_MAX: usize = 4096;
/// Prefix of the temporary file written beside each restored file.
const TMP_PREFIX: &str = ".tmp-restore-";

// ---------------------------------------------------------------------------------
// 1. Reading and judging the archive.

/// One of FILES as found in the archive.
struct Archived {
    content: Vec<u8>,
    size: u64,
    mode: u32,
}

/// An archive that passed every check.
struct Loaded {
    files: HashMap<&'static str, Archived>,
    /// The archive's video inventory (path, size), when it has one.
    inventory: Option<Vec<(Vec<u8>, u64)>>,
    /// Video files held in the archive itself (INCLUDE_VIDEOS); never restored.
    archived_videos: usize,
}

fn lossy(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// Accepts only what a backup writes inside its top folder: FILES, the inventory,
/// system-info.txt, MANIFEST.sha256, and regular files and folders under `videos/`.
/// (Links, devices and unsafe paths never get here: `read_entries` refuses them.)
fn check_names(seen: &[EntrySeen]) -> Result<(), String> {
    let mut files = BTreeSet::new();
    for e in seen {
        let p = e.path.as_slice();
        let under_videos = p.strip_prefix(b"videos/").is_some_and(|r| !r.is_empty());
        let ok = if e.is_dir {
            p == b"videos" || under_videos
        } else {
            under_videos
                || FILES.iter().any(|f| f.as_bytes() == p)
                || [INVENTORY, SYSINFO, MANIFEST]
                    .iter()
                    .any(|f| f.as_bytes() == p)
        };
        if !ok {
            return Err(format!(
                "unexpected {} {:?} in the archive (a backup holds only {}, {INVENTORY}, \
                 {SYSINFO}, {MANIFEST} and videos/)",
                if e.is_dir { "folder" } else { "file" },
                lossy(p),
                FILES.join(", ")
            ));
        }
        if !e.is_dir && !files.insert(p) {
            return Err(format!("{:?} appears twice in the archive", lossy(p)));
        }
    }
    Ok(())
}

/// Reads and checks a whole archive; any problem refuses it.
fn load(reader: impl Read, expected_top: Option<&str>) -> Result<Loaded, String> {
    let keep = |p: &[u8]| {
        FILES.iter().any(|f| f.as_bytes() == p)
            || p == INVENTORY.as_bytes()
            || p == MANIFEST.as_bytes()
    };
    let (_, seen) = archive::read_entries(reader, expected_top, &keep)?;
    check_names(&seen)?;
    let report = archive::check_manifest(&seen);
    if let Some(e) = report.error {
        return Err(format!("it does not match its {MANIFEST}: {e}"));
    }
    let mut loaded = Loaded {
        files: HashMap::new(),
        inventory: None,
        archived_videos: 0,
    };
    for e in seen {
        if e.is_dir {
            continue;
        }
        if e.path.starts_with(b"videos/") {
            loaded.archived_videos += 1;
        } else if e.path == INVENTORY.as_bytes() {
            let text = String::from_utf8_lossy(e.content.as_deref().unwrap_or_default());
            loaded.inventory = Some(inventory::parse(&text));
        } else if let Some(name) = FILES.iter().find(|f| f.as_bytes() == e.path) {
            loaded.files.insert(
                name,
                Archived {
                    content: e.content.unwrap_or_default(),
                    size: e.size,
                    mode: e.mode,
                },
            );
        }
    }
    Ok(loaded)
}

// ---------------------------------------------------------------------------------
// 2. Comparing with the Pi.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    Unchanged,
    Changed,
    MissingOnPi,
    MissingInArchive,
    /// The current file cannot be compared (a link, a folder, unreadable): see `problem`.
    Unreadable,
}

impl FileState {
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Unchanged => "unchanged",
            FileState::Changed => "changed",
            FileState::MissingOnPi => "missing-on-pi",
            FileState::MissingInArchive => "missing-in-archive",
            FileState::Unreadable => "unreadable",
        }
    }
}

/// One selected file compared with the Pi.
pub struct Item {
    pub name: &'static str,
    pub target: PathBuf,
    pub state: FileState,
    pub archive_size: Option<u64>,
    pub current_size: Option<u64>,
    /// Why a restore of this file would fail (checked before anything is written).
    pub problem: Option<String>,
    /// Mode and owner the restored file gets: the current file's, else the archive's
    /// mode and the folder's owner (when root).
    mode: u32,
    owner: Option<(u32, u32)>,
}

impl Item {
    /// A real restore would write this file.
    pub fn to_write(&self) -> bool {
        matches!(self.state, FileState::Changed | FileState::MissingOnPi) && self.problem.is_none()
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// True when the file at `path` holds exactly `expected` (read without following a link).
fn same_content(path: &Path, expected: &[u8]) -> io::Result<bool> {
    let (mut f, meta) = fsutil::open_regular_nofollow(path)?;
    if meta.len() != expected.len() as u64 {
        return Ok(false);
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(off == expected.len());
        }
        if off + n > expected.len() || buf[..n] != expected[off..off + n] {
            return Ok(false);
        }
        off += n;
    }
}

/// Why a file could not be written into `dir`, when that can be told beforehand.
fn dir_problem(dir: &Path) -> Option<String> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Some(format!("the folder {} does not exist", dir.display()));
        }
        Err(e) => return Some(format!("cannot reach the folder {}: {e}", dir.display())),
        Ok(m) if !m.is_dir() => return Some(format!("{} is not a folder", dir.display())),
        Ok(_) => {}
    }
    let c = CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
        let e = io::Error::last_os_error();
        return Some(format!(
            "the folder {} is not writable ({e})",
            dir.display()
        ));
    }
    None
}

fn inspect(name: &'static str, target: PathBuf, archived: Option<&Archived>) -> Item {
    let mut item = Item {
        name,
        target,
        state: FileState::MissingInArchive,
        archive_size: archived.map(|a| a.size),
        current_size: None,
        problem: None,
        mode: archived.map_or(0o600, |a| a.mode & 0o777),
        owner: None,
    };
    let t = item.target.display().to_string();
    let meta = std::fs::symlink_metadata(&item.target);
    if let Ok(m) = &meta
        && m.is_file()
    {
        item.current_size = Some(m.len());
        item.mode = m.mode() & 0o7777;
        item.owner = Some((m.uid(), m.gid()));
    }
    let Some(archived) = archived else {
        return item;
    };
    (item.state, item.problem) = match &meta {
        Err(e) if e.kind() == io::ErrorKind::NotFound => (FileState::MissingOnPi, None),
        Err(e) => (
            FileState::Unreadable,
            Some(format!("cannot inspect {t}: {e}")),
        ),
        Ok(m) if m.file_type().is_symlink() => (
            FileState::Unreadable,
            Some(format!(
                "{t} is a symbolic link: it is not replaced (restore this file by hand)"
            )),
        ),
        Ok(m) if !m.is_file() => (
            FileState::Unreadable,
            Some(format!("{t} is not a regular file: it is not replaced")),
        ),
        Ok(_) => match same_content(&item.target, &archived.content) {
            Ok(true) => (FileState::Unchanged, None),
            Ok(false) => (FileState::Changed, None),
            Err(e) => (FileState::Unreadable, Some(format!("cannot read {t}: {e}"))),
        },
    };
    if !matches!(item.state, FileState::Changed | FileState::MissingOnPi) {
        return item;
    }
    let dir = item.target.parent().unwrap_or(Path::new("/")).to_path_buf();
    item.problem = dir_problem(&dir);
    let me = euid();
    match item.owner {
        Some((uid, gid)) if me != 0 && uid != me => {
            item.problem.get_or_insert_with(|| {
                format!(
                    "{t} belongs to uid {uid} (gid {gid}): only root can replace it keeping its owner"
                )
            });
        }
        Some(_) => {}
        None if me == 0 => {
            // A new file belongs to the owner of its folder (pi for NEOPRO_DIR), so that
            // the service reading it still can.
            item.owner = std::fs::metadata(&dir).ok().map(|m| (m.uid(), m.gid()));
        }
        None => {}
    }
    item
}

fn inspect_all(job: &Job, loaded: &Loaded) -> Vec<Item> {
    backup::config_files(job.cfg)
        .into_iter()
        .filter(|(name, _)| job.files.contains(name))
        .map(|(name, target)| inspect(name, target, loaded.files.get(name)))
        .collect()
}

/// The archive's videos compared with those on the Pi now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct VideoDiff {
    /// Videos in the archive's inventory.
    pub listed: usize,
    /// (path, size in the archive) of videos no longer on the Pi.
    pub missing: Vec<(Vec<u8>, u64)>,
    /// (path, size in the archive, size now).
    pub resized: Vec<(Vec<u8>, u64, u64)>,
}

pub fn compare_videos(archived: &[(Vec<u8>, u64)], now: &[(Vec<u8>, u64)]) -> VideoDiff {
    let now: HashMap<&[u8], u64> = now.iter().map(|(p, s)| (p.as_slice(), *s)).collect();
    let mut d = VideoDiff {
        listed: archived.len(),
        ..VideoDiff::default()
    };
    for (path, size) in archived {
        match now.get(path.as_slice()) {
            None => d.missing.push((path.clone(), *size)),
            Some(&s) if s != *size => d.resized.push((path.clone(), *size, s)),
            Some(_) => {}
        }
    }
    d
}

/// What the dry run found.
pub struct DryReport {
    pub items: Vec<Item>,
    /// None when the archive has no inventory.
    pub videos: Option<VideoDiff>,
    /// Why the Pi's videos could not be listed, if so.
    pub videos_error: Option<String>,
    pub archived_videos: usize,
}

// ---------------------------------------------------------------------------------
// 3. Writing.

/// Replaces `target` with `bytes` atomically. The folder is opened once and every step
/// (temp file, rename, fsync) happens relative to it, so that a folder swapped while we
/// work cannot redirect the write; the temp file is created exclusively, never through
/// a link, and readable by its owner only until it has its final owner and mode.
fn replace_file(
    target: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), String> {
    let dir = target.parent().unwrap_or(Path::new("/"));
    let shown = dir.display();
    let name = target
        .file_name()
        .ok_or_else(|| format!("{} names no file", target.display()))?;
    let d = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| format!("cannot open the folder {shown}: {e}"))?;
    let dfd = d.as_raw_fd();
    let cname = CString::new(name.as_bytes()).map_err(|_| "bad file name".to_string())?;
    let mut tmp = TMP_PREFIX.as_bytes().to_vec();
    tmp.extend_from_slice(name.as_bytes());
    let ctmp = CString::new(tmp).map_err(|_| "bad file name".to_string())?;
    // A leftover of an interrupted restore (never followed if it is a link).
    // SAFETY: dfd is an open folder and ctmp a NUL-terminated name.
    unsafe { libc::unlinkat(dfd, ctmp.as_ptr(), 0) };
    // SAFETY: as above; the mode argument is what O_CREAT reads.
    let fd = unsafe {
        libc::openat(
            dfd,
            ctmp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(format!("cannot write in the folder {shown}: {e}"));
    }
    // SAFETY: fd was just opened here and nothing else owns it.
    let mut f = unsafe { File::from_raw_fd(fd) };
    let res = (|| {
        f.write_all(bytes)
            .map_err(|e| format!("cannot write in the folder {shown}: {e}"))?;
        if let Some((uid, gid)) = owner {
            let m = f
                .metadata()
                .map_err(|e| format!("cannot stat the temp file: {e}"))?;
            if (m.uid(), m.gid()) != (uid, gid) {
                std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(|e| {
                    format!("cannot keep the owner {uid}:{gid} ({e}); run the restore as root")
                })?;
            }
        }
        // After the chown, which clears set-id bits.
        f.set_permissions(Permissions::from_mode(mode))
            .map_err(|e| format!("cannot set the mode {mode:o}: {e}"))?;
        f.sync_all()
            .map_err(|e| format!("cannot sync the new file in {shown}: {e}"))?;
        // SAFETY: dfd is an open folder; both names are NUL-terminated.
        if unsafe { libc::renameat(dfd, ctmp.as_ptr(), dfd, cname.as_ptr()) } != 0 {
            let e = io::Error::last_os_error();
            return Err(format!("cannot replace {}: {e}", target.display()));
        }
        d.sync_all()
            .map_err(|e| format!("replaced, but cannot sync the folder {shown}: {e}"))
    })();
    if res.is_err() {
        // SAFETY: as above.
        unsafe { libc::unlinkat(dfd, ctmp.as_ptr(), 0) };
    }
    res
}

/// What became of one file in a real restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileResult {
    Restored,
    Unchanged,
    /// Not in the archive: the file on the Pi is left as it is.
    Skipped,
    Failed(String),
}

impl FileResult {
    pub fn as_str(&self) -> &'static str {
        match self {
            FileResult::Restored => "restored",
            FileResult::Unchanged => "unchanged",
            FileResult::Skipped => "missing-in-archive",
            FileResult::Failed(_) => "failed",
        }
    }
}

pub struct Restart {
    pub command: String,
    pub ok: bool,
    pub output: String,
}

/// The result of a real restore that got as far as writing (or finding nothing to write).
pub struct Done {
    pub files: Vec<(&'static str, PathBuf, FileResult)>,
    /// The archive made of the state before the restore (file name), if one was needed.
    pub safety_backup: Option<String>,
    pub restart: Option<Restart>,
}

impl Done {
    pub fn names(&self, pick: impl Fn(&FileResult) -> bool) -> Vec<String> {
        self.files
            .iter()
            .filter(|(_, _, r)| pick(r))
            .map(|(n, _, _)| n.to_string())
            .collect()
    }

    pub fn restored(&self) -> Vec<String> {
        self.names(|r| *r == FileResult::Restored)
    }

    pub fn failed(&self) -> Vec<String> {
        self.names(|r| matches!(r, FileResult::Failed(_)))
    }

    pub fn ok(&self) -> bool {
        self.failed().is_empty()
    }
}

/// A restore that stopped before writing anything.
#[derive(Debug)]
pub enum Abort {
    /// The archive is damaged or not what a backup writes.
    Refused(String),
    /// A backup (or another restore) holds the lock (only with `LockWait::Try`).
    Busy,
    /// Anything else that stopped the restore before its first write.
    Failed(String),
}

/// What a restore works on; the CLI and the API build the same one.
pub struct Job<'a> {
    pub cfg: &'a Config,
    pub tz: &'a Tz,
    /// The archive's file name, for messages and the log.
    pub name: String,
    /// The top folder the archive must have (its name without `.tar.gz`), when known.
    pub expected_top: Option<String>,
    /// The files to restore, a subset of FILES.
    pub files: Vec<&'static str>,
    pub cancel: &'a AtomicBool,
}

/// The files named by `--only` (or the API's `only`), in FILES order; all when None.
pub fn select(only: Option<&[String]>) -> Result<Vec<&'static str>, String> {
    let Some(list) = only else {
        return Ok(FILES.to_vec());
    };
    if list.is_empty() {
        return Err(format!("--only needs at least one of {}", FILES.join(", ")));
    }
    if let Some(bad) = list.iter().find(|n| !FILES.contains(&n.as_str())) {
        return Err(format!(
            "unknown file {bad:?} for --only: expected one or more of {}, separated by commas",
            FILES.join(", ")
        ));
    }
    Ok(FILES
        .into_iter()
        .filter(|f| list.iter().any(|n| n == f))
        .collect())
}

/// The dry run: checks the archive and compares it with the Pi; changes nothing on the
/// Pi (it only adds a line to backup.log, when BACKUP_DIR exists).
pub fn dry_run(job: &Job, reader: impl Read) -> Result<DryReport, String> {
    let log = job
        .cfg
        .backup_dir
        .is_dir()
        .then(|| Log::new(&job.cfg.backup_dir, job.tz));
    let loaded = load(reader, job.expected_top.as_deref()).inspect_err(|e| {
        if let Some(log) = &log {
            log.error(&format!(
                "restore dry run of {}: archive refused: {e}",
                job.name
            ));
        }
    })?;
    let items = inspect_all(job, &loaded);
    let (videos, videos_error) = match &loaded.inventory {
        None => (None, None),
        Some(inv) => {
            let mut warnings = Vec::new();
            match inventory::walk(&job.cfg.videos_dir(), &mut warnings) {
                Ok(now) => {
                    let now: Vec<(Vec<u8>, u64)> =
                        now.iter().map(|v| (v.rel.to_vec(), v.size)).collect();
                    (Some(compare_videos(inv, &now)), None)
                }
                Err(e) => (
                    None,
                    Some(format!(
                        "cannot list the videos in {}: {e}",
                        job.cfg.videos_dir().display()
                    )),
                ),
            }
        }
    };
    if let Some(log) = &log {
        let would = items.iter().filter(|i| i.to_write()).count();
        let problems = items.iter().filter(|i| i.problem.is_some()).count();
        log.info(&format!(
            "restore dry run of {}: {would} file(s) would be restored, {problems} with a problem, {} video(s) missing",
            job.name,
            videos.as_ref().map_or(0, |v| v.missing.len())
        ));
    }
    Ok(DryReport {
        items,
        videos,
        videos_error,
        archived_videos: loaded.archived_videos,
    })
}

/// The real restore. `wait` says what to do when a backup holds the lock.
pub fn run(job: &Job, reader: impl Read, wait: LockWait) -> Result<Done, Abort> {
    let cfg = job.cfg;
    let dir = &cfg.backup_dir;
    store::ensure_dir(dir)
        .map_err(|e| Abort::Failed(format!("cannot create BACKUP_DIR {}: {e}", dir.display())))?;
    let log = Log::new(dir, job.tz);
    log.info(&format!(
        "restore of {} started ({})",
        job.name,
        job.files.join(", ")
    ));
    let fail = |abort: Abort| {
        match &abort {
            Abort::Refused(e) => log.error(&format!(
                "restore of {} refused, nothing was written: {e}",
                job.name
            )),
            Abort::Busy => log.warn(&format!(
                "restore of {} refused: a backup is running",
                job.name
            )),
            Abort::Failed(e) => log.error(&format!(
                "restore of {} failed, nothing was written: {e}",
                job.name
            )),
        }
        abort
    };
    let loaded = load(reader, job.expected_top.as_deref()).map_err(|e| fail(Abort::Refused(e)))?;
    if !job.files.iter().any(|f| loaded.files.contains_key(f)) {
        return Err(fail(Abort::Failed(format!(
            "the archive holds none of the files to restore ({})",
            job.files.join(", ")
        ))));
    }
    let _lock = match store::lock(dir, wait, || {
        log.info("another backup is running: waiting for it to finish")
    }) {
        Ok(Some(l)) => l,
        Ok(None) => return Err(fail(Abort::Busy)),
        Err(e) => {
            return Err(fail(Abort::Failed(format!(
                "cannot lock {}: {e}",
                dir.join(store::LOCK_FILE).display()
            ))));
        }
    };
    // Compared under the lock, right before writing.
    let items = inspect_all(job, &loaded);
    let safety_backup = if items.iter().any(Item::to_write) {
        if let Ok(removed) = store::remove_leftovers(dir) {
            for r in removed {
                log.warn(&format!("removed {r}, left by an interrupted run"));
            }
        }
        // Without the videos: a restore never touches them, and the safety backup must
        // be quick and small.
        let safety_cfg = Config {
            include_videos: false,
            ..cfg.clone()
        };
        let mut warnings = Vec::new();
        let src = Sources { cfg: &safety_cfg };
        match backup::write_archive(&src, dir, job.tz, job.cancel, &log, &mut warnings) {
            Ok(made) => {
                log.info(&format!(
                    "safety backup of the current state before the restore: {}",
                    made.name
                ));
                Some(made.name)
            }
            Err(e) => {
                return Err(fail(Abort::Failed(format!(
                    "the safety backup failed: {e}"
                ))));
            }
        }
    } else {
        None
    };
    if job.cancel.load(Ordering::SeqCst) {
        return Err(fail(Abort::Failed("cancelled (shutdown)".to_string())));
    }
    let mut files = Vec::new();
    for item in items {
        let result = match (item.state, &item.problem) {
            (_, Some(p)) => FileResult::Failed(p.clone()),
            (FileState::Unchanged, None) => FileResult::Unchanged,
            (FileState::MissingInArchive, None) => FileResult::Skipped,
            (_, None) => {
                let content = loaded
                    .files
                    .get(item.name)
                    .map_or(&[][..], |a| a.content.as_slice());
                match replace_file(&item.target, content, item.mode, item.owner) {
                    Ok(()) => FileResult::Restored,
                    Err(e) => FileResult::Failed(e),
                }
            }
        };
        let t = item.target.display();
        match &result {
            FileResult::Restored => log.info(&format!(
                "restored {} -> {t} (mode {:o})",
                item.name, item.mode
            )),
            FileResult::Unchanged => {
                log.info(&format!("{} unchanged: {t} not rewritten", item.name))
            }
            FileResult::Skipped => log.warn(&format!(
                "{} is not in the archive: {t} left as it is",
                item.name
            )),
            FileResult::Failed(e) => log.error(&format!("restore of {} failed: {e}", item.name)),
        }
        files.push((item.name, item.target, result));
    }
    let mut done = Done {
        files,
        safety_backup,
        restart: None,
    };
    let restored = done.restored().len();
    let failed = done.failed().len();
    log.info(&format!(
        "restore of {} done: {restored} restored, {failed} failed{}",
        job.name,
        done.safety_backup
            .as_deref()
            .map_or(String::new(), |s| format!(", safety backup {s}"))
    ));
    if restored > 0
        && failed == 0
        && let Some(cmd) = &cfg.restart_cmd
    {
        done.restart = Some(run_restart(cmd, &log));
    }
    Ok(done)
}

// ---------------------------------------------------------------------------------
// 4. RESTART_CMD.

/// Runs `sh -c cmd` in its own process group, its output (stdout and stderr together)
/// captured and logged, killed with its children after RESTART_TIMEOUT.
fn run_restart(cmd: &str, log: &Log) -> Restart {
    log.info(&format!("running RESTART_CMD: {cmd}"));
    let done = |ok: bool, output: String| {
        for line in output.lines().take(20) {
            log.info(&format!("RESTART_CMD: {line}"));
        }
        Restart {
            command: cmd.to_string(),
            ok,
            output,
        }
    };
    let r = match crate::shell::run_shell(cmd, None, RESTART_TIMEOUT, RESTART_OUTPUT_MAX) {
        Ok(r) => r,
        Err(e) => {
            log.error(&format!("RESTART_CMD could not start: {e}"));
            return done(false, format!("cannot start /bin/sh: {e}"));
        }
    };
    let ok = r.ok();
    let mut output = r.output.clone();
    if ok {
        log.info("RESTART_CMD succeeded");
    } else {
        let verdict = r.verdict(RESTART_TIMEOUT);
        log.error(&format!("RESTART_CMD failed ({verdict})"));
        if !output.is_empty() {
            output.push('\n');
        }
        output.push_str(&format!("({verdict})"));
    }
    done(ok, output)
}

// ---------------------------------------------------------------------------------
// The CLI.

// ---------------------------------------------------------------------------------
// The API.

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, is_dir: bool) -> EntrySeen {
        EntrySeen {
            path: path.as_bytes().to_vec(),
            is_dir,
            sha256: String::new(),
            size: 0,
            mode: 0o644,
            content: None,
        }
    }

    #[test]
    fn only_the_names_a_backup_writes_are_accepted() {
        let good = [
            entry("configuration.json", false),
            entry("sync-agent.env", false),
            entry("site.conf", false),
            entry("videos-inventory.txt", false),
            entry("system-info.txt", false),
            entry("MANIFEST.sha256", false),
            entry("videos", true),
            entry("videos/Match", true),
            entry("videos/Match/a.mp4", false),
        ];
        assert!(check_names(&good).is_ok());
        for bad in [
            vec![entry("evil.sh", false)],
            vec![entry("etc", true)],
            vec![entry("videos", false)],
            vec![entry("videos/", false)],
            vec![entry("webapp/configuration.json", false)],
            vec![entry("site.conf", false), entry("site.conf", false)],
        ] {
            assert!(check_names(&bad).is_err(), "{:?}", lossy(&bad[0].path));
        }
    }

    #[test]
    fn only_selects_known_files_in_restore_order() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(select(None).ok(), Some(FILES.to_vec()));
        assert_eq!(
            select(Some(&s(&["site.conf", "configuration.json", "site.conf"]))).ok(),
            Some(vec!["configuration.json", "site.conf"])
        );
        assert!(select(Some(&s(&["passwd"]))).is_err());
        assert!(select(Some(&s(&[".env"]))).is_err());
        assert!(select(Some(&[])).is_err());
    }

    #[test]
    fn videos_missing_or_resized_are_found() {
        let v = |p: &str, s: u64| (p.as_bytes().to_vec(), s);
        let archived = [v("a.mp4", 10), v("b/c.mkv", 20), v("d.avi", 30)];
        let now = [v("a.mp4", 10), v("d.avi", 31), v("new.mp4", 5)];
        let d = compare_videos(&archived, &now);
        assert_eq!(d.listed, 3);
        assert_eq!(d.missing, vec![v("b/c.mkv", 20)]);
        assert_eq!(d.resized, vec![(b"d.avi".to_vec(), 30, 31)]);
    }
}
