//! `restore ARCHIVE --videos` (and the API's `{"videos":true}`): fetch back from the
//! bucket, by SHA-256, the videos of an archive that are missing on the Pi or differ
//! (docs/format.md, Videos offsite).
//!
//! 1. The archive is read and checked whole (gzip, tar, names, MANIFEST.sha256) and its
//!    inventory must have the SHA-256 column (VIDEOS_OFFSITE).
//! 2. Each listed video is compared with the Pi: missing, or differing (size, then the
//!    hash from the hash cache, else by reading the file). Paths are walked folder by
//!    folder from NEOPRO_DIR/videos without following any link, and must end in a video
//!    extension; a path with `..` or a folder that is a link is a problem, never
//!    followed. The dry run stops here and lists what would be fetched.
//! 3. Free space is checked for the whole set before the first download. Each video is
//!    downloaded by ranges (bounded memory) to `.neopro-restore-<name>.part` beside its
//!    target, decrypted on the fly when it is an age object, its size and SHA-256
//!    checked, then synced and renamed into place. A corrupted object is reported and
//!    never written into place. Videos the archive does not name are never touched.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::backup::archive::{self, MANIFEST};
use crate::bucket::{Bucket, RangeReader};
use crate::clock::Tz;
use crate::config::Config;
use crate::fsutil::sys::{self, Dir, FinalLink, WalkError};
use crate::fsutil::{self, Lock, LockWait};
use crate::offsite::{self, videos as remote};
use crate::status::Log;
use crate::videos::hashes::{self, Hasher, Key};
use crate::videos::inventory::{self, InventoryLine};

use super::INVENTORY;

/// Held by a video restore (one at a time), in BACKUP_DIR.
use crate::store::VIDEOS_RESTORE_LOCK_FILE as LOCK_FILE;
/// Prefix of the file a video is downloaded to, beside its target.
pub const PART_PREFIX: &str = ".neopro-restore-";
/// Kept free on top of the videos to fetch.
const RESERVE: u64 = 16 * 1024 * 1024;

pub struct VideoJob<'a> {
    pub cfg: &'a Config,
    pub tz: &'a Tz,
    /// The archive's file name, for messages and the log.
    pub name: String,
    pub expected_top: Option<String>,
    /// age identities for the objects of a site with ENCRYPT_TO.
    pub identities: Vec<age::x25519::Identity>,
    pub cancel: &'a AtomicBool,
    /// Counters a caller may watch while the videos are fetched (the API's recovery
    /// job).
    pub progress: Option<&'a Progress>,
}

/// How far a video restore is: videos and bytes fetched, and to fetch.
#[derive(Debug, Default)]
pub struct Progress {
    pub done: AtomicU64,
    pub total: AtomicU64,
    pub bytes_done: AtomicU64,
    pub bytes_total: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Missing,
    Differs,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Missing => "missing",
            Why::Differs => "differs",
        }
    }
}

/// A video to download.
#[derive(Debug, Clone)]
pub struct Fetch {
    pub rel: Vec<u8>,
    pub size: u64,
    pub sha256: [u8; 32],
    pub why: Why,
}

/// What the archive's videos look like against the Pi.
#[derive(Debug, Default)]
pub struct VideoPlan {
    /// Videos in the archive's inventory.
    pub listed: usize,
    /// Already identical on the Pi.
    pub unchanged: usize,
    pub fetch: Vec<Fetch>,
    /// Total bytes to fetch.
    pub bytes: u64,
    /// Free bytes where they go.
    pub free: Option<u64>,
    /// Videos that cannot be restored, and why.
    pub problems: Vec<(Vec<u8>, String)>,
}

/// The outcome of a real video restore.
pub struct VideoDone {
    pub plan: VideoPlan,
    /// Each fetched video: Ok(bytes written) or why it failed.
    pub results: Vec<(Vec<u8>, Result<u64, String>)>,
}

impl VideoDone {
    pub fn restored(&self) -> usize {
        self.results.iter().filter(|r| r.1.is_ok()).count()
    }

    pub fn failed(&self) -> usize {
        self.results.len() - self.restored()
    }

    pub fn ok(&self) -> bool {
        self.failed() == 0 && self.plan.problems.is_empty()
    }
}

pub fn shown(rel: &[u8]) -> String {
    let mut s = String::new();
    inventory::escape_path(rel, &mut s);
    s
}

/// Reads the archive (every check of a restore) and returns its inventory with hashes.
fn inventory_of(
    reader: impl Read,
    expected_top: Option<&str>,
) -> Result<Vec<InventoryLine>, String> {
    let keep = |p: &[u8]| p == INVENTORY.as_bytes() || p == MANIFEST.as_bytes();
    let (_, seen) = archive::read_entries(reader, expected_top, &keep)?;
    super::load::check_names(&seen)?;
    if !seen.iter().any(|e| e.path == MANIFEST.as_bytes()) {
        return Err(format!(
            "it has no {MANIFEST} (an archive of the old format): it names no video by SHA-256"
        ));
    }
    if let Some(e) = archive::check_manifest(&seen).error {
        return Err(format!("it does not match its {MANIFEST}: {e}"));
    }
    let text = seen
        .iter()
        .find(|e| e.path == INVENTORY.as_bytes())
        .and_then(|e| e.content.as_deref())
        .ok_or_else(|| format!("it has no {INVENTORY}"))?;
    Ok(inventory::parse_listed(&String::from_utf8_lossy(text)))
}

/// Why the archive names no video the bucket could give back (made without
/// VIDEOS_OFFSITE, or by the old script), or `None` when it does: `recover` then skips
/// the videos instead of failing. The archive is read to its end; `Err` when it is
/// damaged.
pub fn not_by_hash(
    reader: impl Read,
    expected_top: Option<&str>,
) -> Result<Option<String>, String> {
    let keep = |p: &[u8]| p == INVENTORY.as_bytes() || p == MANIFEST.as_bytes();
    let (_, seen) = archive::read_entries(reader, expected_top, &keep)?;
    if !seen.iter().any(|e| e.path == MANIFEST.as_bytes()) {
        return Ok(Some(format!(
            "it has no {MANIFEST} (old format): it names no video by SHA-256"
        )));
    }
    let Some(text) = seen
        .iter()
        .find(|e| e.path == INVENTORY.as_bytes())
        .and_then(|e| e.content.as_deref())
    else {
        return Ok(Some(format!("it has no {INVENTORY}")));
    };
    let listed = inventory::parse_listed(&String::from_utf8_lossy(text));
    if listed.is_empty() {
        return Ok(Some("its inventory lists no video".into()));
    }
    if listed.iter().all(|l| l.sha256.is_none()) {
        return Ok(Some(
            "it was made without VIDEOS_OFFSITE: its videos are not in the bucket".into(),
        ));
    }
    Ok(None)
}

/// The folders and the file name of a safe inventory path, or why it is refused.
fn split_rel(rel: &[u8]) -> Result<(Vec<&[u8]>, &[u8]), String> {
    let parts: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
    if parts.len() > 64
        || parts
            .iter()
            .any(|p| p.is_empty() || *p == b"." || *p == b".." || p.contains(&0))
    {
        return Err(
            "refused path (`..`, `.`, an empty or NUL name, or over 64 folders): not restored"
                .into(),
        );
    }
    let (name, dirs) = parts.split_last().ok_or("empty path")?;
    if !inventory::is_video(name) {
        return Err("not a video name: not restored".into());
    }
    Ok((dirs.to_vec(), name))
}

/// Opens the videos folder itself, which must be a folder, not a link.
fn open_root(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

// time_t is 32 bits in the libc crate's view of 32-bit musl: widened here (a no-op on
// 64-bit targets).
#[allow(clippy::useless_conversion)]
fn key_of(st: &libc::stat) -> Key {
    Key {
        dev: st.st_dev,
        ino: st.st_ino,
        size: st.st_size as u64,
        mtime: i64::from(st.st_mtime),
        mtime_ns: u32::try_from(st.st_mtime_nsec).unwrap_or(0),
        ctime: i64::from(st.st_ctime),
        ctime_ns: u32::try_from(st.st_ctime_nsec).unwrap_or(0),
    }
}

/// The SHA-256 of the file `name` in `dir` (following a final link: a linked video is
/// that file for the inventory too).
fn hash_at(dir: &Dir, name: &[u8], cancel: &AtomicBool) -> io::Result<[u8; 32]> {
    let (mut f, _) = dir.open_regular(name, FinalLink::Follow)?;
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("cancelled"));
        }
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

/// The folder that holds `rel`, walked from the videos folder without following links;
/// `Ok(None)` when a folder on the way does not exist yet.
fn parent_of(root: &File, dirs: &[&[u8]]) -> io::Result<Option<Dir>> {
    match Dir::reopen(root)?.descend(dirs) {
        Ok(d) => Ok(Some(d)),
        Err(WalkError::Missing(_)) => Ok(None),
        Err(WalkError::Link(p) | WalkError::NotADir(p)) => Err(io::Error::other(format!(
            "{} is not a folder (a link or a file): not followed",
            p.file_name().unwrap_or_default().to_string_lossy()
        ))),
        Err(WalkError::Reach(_, e) | WalkError::Open(_, e)) => Err(e),
        Err(e) => Err(io::Error::other(e.to_string())),
    }
}

/// Step 2: the archive's videos compared with the Pi.
pub fn plan(job: &VideoJob, reader: impl Read) -> Result<VideoPlan, String> {
    let cfg = job.cfg;
    if cfg.offsite.is_none() {
        return Err(
            "restoring videos reads the bucket: set S3_ENDPOINT, S3_BUCKET, S3_ACCESS_KEY and S3_SECRET_KEY"
                .into(),
        );
    }
    let listed = inventory_of(reader, job.expected_top.as_deref())?;
    let mut p = VideoPlan {
        listed: listed.len(),
        ..VideoPlan::default()
    };
    if !listed.is_empty() && listed.iter().all(|l| l.sha256.is_none()) {
        return Err(format!(
            "its {INVENTORY} has no SHA-256 column: it was made without VIDEOS_OFFSITE, its videos cannot be fetched by hash"
        ));
    }
    let root_path = cfg.videos_dir();
    let root = match open_root(&root_path) {
        Ok(f) => Some(f),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
        Err(e) => {
            return Err(format!(
                "cannot open the videos folder {} ({e}): it must be a folder, not a link",
                root_path.display()
            ));
        }
    };
    let (cache, _) = hashes::HashCache::load(&cfg.backup_dir);
    for l in listed {
        let Some(hash) = l.sha256 else {
            p.problems.push((
                l.path,
                "no SHA-256 in the archive: cannot be fetched".into(),
            ));
            continue;
        };
        let (dirs, name) = match split_rel(&l.path) {
            Ok(x) => x,
            Err(e) => {
                p.problems.push((l.path.clone(), e));
                continue;
            }
        };
        let parent = match &root {
            None => None,
            Some(r) => match parent_of(r, &dirs) {
                Ok(x) => x,
                Err(e) => {
                    p.problems.push((l.path.clone(), e.to_string()));
                    continue;
                }
            },
        };
        let why = match parent {
            None => Some(Why::Missing),
            Some(dir) => match compare(&dir, name, l.size, &hash, &cache, job.cancel) {
                Ok(w) => w,
                Err(e) => {
                    p.problems.push((l.path.clone(), e));
                    continue;
                }
            },
        };
        match why {
            None => p.unchanged += 1,
            Some(why) => {
                p.bytes += l.size;
                p.fetch.push(Fetch {
                    rel: l.path,
                    size: l.size,
                    sha256: hash,
                    why,
                });
            }
        }
    }
    let mut probe = root_path.clone();
    while !probe.exists() && probe.pop() {}
    p.free = fsutil::disk_use(&probe).map(|d| d.avail);
    Ok(p)
}

/// `None` when the file in `dir` is the archived video, else why it must be fetched.
fn compare(
    dir: &Dir,
    name: &[u8],
    size: u64,
    hash: &[u8; 32],
    cache: &hashes::HashCache,
    cancel: &AtomicBool,
) -> Result<Option<Why>, String> {
    let st = match dir.stat(name, FinalLink::Follow) {
        Ok(st) => st,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            // Missing, or a dangling link (replaced by the file).
            return Ok(Some(Why::Missing));
        }
        Err(e) => return Err(format!("cannot inspect it: {e}")),
    };
    if !sys::is_type(&st, libc::S_IFREG) {
        return Err("exists and is not a regular file: not replaced".into());
    }
    if st.st_size as u64 != size {
        return Ok(Some(Why::Differs));
    }
    if cache.get(&key_of(&st)) == Some(*hash) {
        return Ok(None);
    }
    match hash_at(dir, name, cancel) {
        Ok(h) if h == *hash => Ok(None),
        Ok(_) => Ok(Some(Why::Differs)),
        Err(e) => Err(format!("cannot read it: {e}")),
    }
}

/// Where a video may come from: the shared plain object first (any site may have sent
/// Where a video may come from, in this order: the shared plain object (any site may
/// have sent it), this site's own copy (sent when it found the shared one poisoned),
/// then this site's encrypted one when identities are given. Each is checked against
/// the hash before it replaces anything; a bad or missing one sends the restore on to
/// the next.
fn sources(cfg: &Config, hash: &[u8; 32], have_identity: bool) -> Vec<(String, bool)> {
    let Some(o) = &cfg.offsite else {
        return Vec::new();
    };
    let mut v = vec![
        (remote::plain_key(o, hash), false),
        (remote::fallback_key(o, &cfg.site_id, hash), false),
    ];
    if have_identity {
        v.push((remote::age_key(o, &cfg.site_id, hash), true));
    }
    v
}

/// Downloads one video into place from the first source that holds it whole and
/// unchanged. Ok(bytes) or why not (every source tried, and why each failed).
fn fetch_one(job: &VideoJob, b: &dyn Bucket, root: &File, f: &Fetch) -> Result<u64, String> {
    let (dirs, name) = split_rel(&f.rel)?;
    let dir = make_parents(root, &dirs)?;
    let mut tried = Vec::new();
    let mut missing_only = true;
    for (key, encrypted) in sources(job.cfg, &f.sha256, !job.identities.is_empty()) {
        if job.cancel.load(Ordering::Relaxed) {
            return Err("cancelled (shutdown)".into());
        }
        let shown = b.describe(&key);
        let ranges = match RangeReader::open(b, &key) {
            Ok(Some(r)) => r,
            Ok(None) => {
                tried.push(format!("{shown}: missing"));
                continue;
            }
            // A key without list permission gets 403 for a missing object: try the
            // next place before giving up.
            Err(e) if e.denied() => {
                tried.push(format!("{shown}: 403"));
                continue;
            }
            Err(e) => {
                missing_only = false;
                tried.push(e.msg);
                continue;
            }
        };
        missing_only = false;
        let reader: Box<dyn Read> = if encrypted {
            let d = match age::Decryptor::new_buffered(BufReader::with_capacity(64 * 1024, ranges))
            {
                Ok(d) => d,
                Err(e) => {
                    tried.push(format!("{shown}: not an age file ({e})"));
                    continue;
                }
            };
            let ids = job.identities.iter().map(|i| i as &dyn age::Identity);
            match d.decrypt(ids) {
                Ok(r) => Box::new(r),
                Err(e) => {
                    tried.push(format!(
                        "{shown}: cannot decrypt it with the given identity ({e})"
                    ));
                    continue;
                }
            }
        } else {
            Box::new(ranges)
        };
        let before = job.progress.map(|p| p.bytes_done.load(Ordering::Relaxed));
        match write_into_place(&dir, name, reader, f, job.cancel, job.progress) {
            Ok(n) => return Ok(n),
            Err(e) => {
                // What this source wrote is gone: the count goes back.
                if let (Some(p), Some(b)) = (job.progress, before) {
                    p.bytes_done.store(b, Ordering::Relaxed);
                }
                tried.push(format!("{shown}: {e}"))
            }
        }
    }
    let hint = match &job.cfg.offsite {
        Some(o) if !o.encrypt_to.is_empty() && job.identities.is_empty() => {
            " (this site's videos are encrypted: give the age identity with --identity)"
        }
        _ => "",
    };
    let what = if missing_only {
        "not in the bucket, or not readable"
    } else {
        "no copy in the bucket is whole and unchanged"
    };
    Err(format!("{what} ({}){hint}", tried.join("; ")))
}

/// Opens (creating them as needed) the folders of `dirs` under the videos folder,
/// never through a link. New folders get mode 0755 and, as root, their parent's owner.
fn make_parents(root: &File, dirs: &[&[u8]]) -> Result<Dir, String> {
    let mut cur = Dir::reopen(root).map_err(|e| e.to_string())?;
    for d in dirs {
        let made = match cur.create_dir(d, 0o755) {
            Ok(()) => true,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => false,
            Err(e) => {
                return Err(format!(
                    "cannot create the folder {}: {e}",
                    String::from_utf8_lossy(d)
                ));
            }
        };
        let next = cur.open_dir(d).map_err(|e| {
            format!(
                "{} is not a folder (a link or a file): not followed ({e})",
                String::from_utf8_lossy(d)
            )
        })?;
        if made && fsutil::euid() == 0 {
            let owner = cur.metadata().map(|m| (m.uid(), m.gid()));
            if let Ok((u, g)) = owner {
                let _ = std::os::unix::fs::fchown(&next, Some(u), Some(g));
            }
        }
        cur = next;
    }
    Ok(cur)
}

/// Streams `reader` into a part file beside `name`, checks size and SHA-256, then syncs
/// and renames it into place (and syncs the folder).
fn write_into_place(
    dir: &Dir,
    name: &[u8],
    mut reader: impl Read,
    f: &Fetch,
    cancel: &AtomicBool,
    progress: Option<&Progress>,
) -> Result<u64, String> {
    let mut part = PART_PREFIX.as_bytes().to_vec();
    part.extend_from_slice(name);
    part.extend_from_slice(b".part");
    // A leftover of an interrupted restore (a link is removed, never followed).
    let _ = dir.remove_file(&part);
    let mut out = dir
        .create_new(&part, 0o600)
        .map_err(|e| format!("cannot write in its folder: {e}"))?;
    let res = (|| {
        let mut h = Hasher::new();
        let mut n = 0u64;
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err("cancelled (shutdown)".to_string());
            }
            let k = reader.read(&mut buf).map_err(|e| e.to_string())?;
            if k == 0 {
                break;
            }
            n += k as u64;
            if n > f.size {
                return Err(format!(
                    "corrupted object: longer than the video's {} bytes; not written",
                    f.size
                ));
            }
            h.update(&buf[..k]);
            out.write_all(&buf[..k]).map_err(|e| e.to_string())?;
            if let Some(p) = progress {
                p.bytes_done.fetch_add(k as u64, Ordering::Relaxed);
            }
        }
        let got = h.finish();
        if n != f.size || got != f.sha256 {
            return Err(format!(
                "corrupted object: {n} bytes with SHA-256 {}, expected {} bytes with {}; not written",
                crate::units::hex(&got),
                f.size,
                crate::units::hex(&f.sha256)
            ));
        }
        // The mode and owner of the file it replaces, else 0644 and the folder's owner.
        let (mode, owner) = match dir.stat(name, FinalLink::NoFollow) {
            Ok(st) if sys::is_type(&st, libc::S_IFREG) => {
                (st.st_mode & 0o7777, Some((st.st_uid, st.st_gid)))
            }
            _ => (0o644, dir.metadata().ok().map(|m| (m.uid(), m.gid()))),
        };
        if fsutil::euid() == 0
            && let Some((u, g)) = owner
        {
            let _ = std::os::unix::fs::fchown(&out, Some(u), Some(g));
        }
        use std::os::unix::fs::PermissionsExt;
        out.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| e.to_string())?;
        out.sync_all().map_err(|e| e.to_string())?;
        dir.rename(&part, name)
            .map_err(|e| format!("cannot move it into place: {e}"))?;
        dir.sync_all().map_err(|e| e.to_string())?;
        Ok(n)
    })();
    if res.is_err() {
        let _ = dir.remove_file(&part);
    }
    res
}

/// Step 3: fetches the videos of the plan from the settings' store. `Err` when nothing
/// could start (busy, not enough space, the videos folder cannot be made).
pub fn run(job: &VideoJob, reader: impl Read, wait: LockWait) -> Result<VideoDone, String> {
    let Some(o) = &job.cfg.offsite else {
        return Err("S3_ENDPOINT is not set".into());
    };
    run_on(&offsite::bucket(o), job, reader, wait)
}

/// `run` on the store `b`.
pub fn run_on(
    b: &dyn Bucket,
    job: &VideoJob,
    reader: impl Read,
    wait: LockWait,
) -> Result<VideoDone, String> {
    let cfg = job.cfg;
    let dir = &cfg.backup_dir;
    crate::store::ensure_dir(dir)
        .map_err(|e| format!("cannot create BACKUP_DIR {}: {e}", dir.display()))?;
    let log = Log::new(dir, job.tz);
    let _lock = match Lock::acquire(&dir.join(LOCK_FILE), wait) {
        Ok(Some(l)) => l,
        Ok(None) => return Err("another restore of videos is running".into()),
        Err(e) => return Err(format!("cannot lock {LOCK_FILE}: {e}")),
    };
    let p = plan(job, reader).inspect_err(|e| {
        log.error(&format!(
            "restore of the videos of {}: archive refused: {e}",
            job.name
        ))
    })?;
    if let Some(free) = p.free
        && p.bytes + RESERVE > free
    {
        let msg = format!(
            "not enough free space for the videos: {} to fetch, {} free (and {} kept free); nothing was fetched",
            crate::units::human_size(p.bytes, 1),
            crate::units::human_size(free, 1),
            crate::units::human_size(RESERVE, 0)
        );
        log.error(&format!("restore of the videos of {}: {msg}", job.name));
        return Err(msg);
    }
    log.info(&format!(
        "restore of the videos of {} started: {} to fetch ({}), {} unchanged, {} problem(s)",
        job.name,
        p.fetch.len(),
        crate::units::human_size(p.bytes, 1),
        p.unchanged,
        p.problems.len()
    ));
    let mut results = Vec::new();
    if !p.fetch.is_empty() {
        let root_path = cfg.videos_dir();
        if let Err(e) = std::fs::create_dir(&root_path)
            && e.kind() != io::ErrorKind::AlreadyExists
        {
            return Err(format!("cannot create {}: {e}", root_path.display()));
        }
        let root = open_root(&root_path).map_err(|e| {
            format!(
                "cannot open the videos folder {} ({e}): it must be a folder, not a link",
                root_path.display()
            )
        })?;
        if let Some(pr) = job.progress {
            pr.total.store(p.fetch.len() as u64, Ordering::Relaxed);
            pr.bytes_total.store(p.bytes, Ordering::Relaxed);
        }
        for f in &p.fetch {
            if job.cancel.load(Ordering::Relaxed) {
                results.push((f.rel.clone(), Err("cancelled (shutdown)".to_string())));
                continue;
            }
            let r = fetch_one(job, b, &root, f);
            if let (Some(pr), Ok(_)) = (job.progress, &r) {
                pr.done.fetch_add(1, Ordering::Relaxed);
            }
            match &r {
                Ok(n) => log.info(&format!(
                    "restored video {} ({})",
                    shown(&f.rel),
                    crate::units::human_size(*n, 1)
                )),
                Err(e) => log.error(&format!("video {} not restored: {e}", shown(&f.rel))),
            }
            results.push((f.rel.clone(), r));
        }
    }
    let done = VideoDone { plan: p, results };
    log.info(&format!(
        "restore of the videos of {} done: {} restored, {} failed, {} unchanged",
        job.name,
        done.restored(),
        done.failed(),
        done.plan.unchanged
    ));
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_video_paths() {
        assert!(split_rel(b"a/b/c.mp4").is_ok());
        assert_eq!(
            split_rel(b"Match/x.MKV").map(|(d, n)| (d.len(), n.to_vec())),
            Ok((1, b"x.MKV".to_vec()))
        );
        for bad in [
            &b"../x.mp4"[..],
            b"a/../../x.mp4",
            b"/abs.mp4",
            b"a//b.mp4",
            b"./a.mp4",
            b"a/b.sh",
            b"a\0.mp4",
            b"",
        ] {
            assert!(split_rel(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    fn sha(b: &[u8]) -> [u8; 32] {
        let mut h = Hasher::new();
        h.update(b);
        h.finish()
    }

    /// Steps 2 and 3 on a real folder, without the bucket: what is compared, where a
    /// video is written, and what is refused (a folder that is a link, a wrong hash).
    #[test]
    fn videos_are_compared_and_written_in_place_never_through_a_link() {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let base = std::env::temp_dir().join(format!("neopro-rv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root_path = base.join("videos");
        let outside = base.join("outside");
        std::fs::create_dir_all(root_path.join("match")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        symlink(&outside, root_path.join("linked")).unwrap();
        std::fs::write(root_path.join("match/a.mp4"), b"video a").unwrap();
        let root = open_root(&root_path).unwrap();
        let (cache, _) = hashes::HashCache::load(&base);
        let no = AtomicBool::new(false);
        let cmp = |dirs: &[&[u8]], name: &[u8], content: &[u8]| {
            let dir = parent_of(&root, dirs).map_err(|e| e.to_string())?;
            match dir {
                None => Ok(Some(Why::Missing)),
                Some(d) => compare(&d, name, content.len() as u64, &sha(content), &cache, &no),
            }
        };
        assert_eq!(cmp(&[b"match"], b"a.mp4", b"video a"), Ok(None));
        assert_eq!(
            cmp(&[b"match"], b"a.mp4", b"video b"),
            Ok(Some(Why::Differs))
        );
        assert_eq!(
            cmp(&[b"match"], b"a.mp4", b"longer"),
            Ok(Some(Why::Differs))
        );
        assert_eq!(cmp(&[b"match"], b"b.mp4", b"x"), Ok(Some(Why::Missing)));
        assert_eq!(
            cmp(&[b"new", b"deeper"], b"b.mp4", b"x"),
            Ok(Some(Why::Missing))
        );
        let e = cmp(&[b"linked"], b"a.mp4", b"x").unwrap_err();
        assert!(
            e.contains("linked is not a folder (a link or a file)"),
            "{e}"
        );
        assert_eq!(
            cmp(&[], b"match", b"x").unwrap_err(),
            "exists and is not a regular file: not replaced"
        );

        let fetch = |rel: &str, content: &[u8]| Fetch {
            rel: rel.as_bytes().to_vec(),
            size: content.len() as u64,
            sha256: sha(content),
            why: Why::Missing,
        };
        // New folders are made, the video lands 0644 and no part file is left.
        let f = fetch("new/deeper/b.mp4", b"video b");
        let dir = make_parents(&root, &[b"new", b"deeper"]).unwrap();
        assert_eq!(
            write_into_place(&dir, b"b.mp4", &b"video b"[..], &f, &no, None),
            Ok(7)
        );
        let written = root_path.join("new/deeper/b.mp4");
        assert_eq!(std::fs::read(&written).unwrap(), b"video b");
        let mode = std::fs::metadata(&written).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        // A corrupted object is never written into place, nor left as a part file.
        let f = fetch("match/a.mp4", b"video A");
        let dir = make_parents(&root, &[b"match"]).unwrap();
        let e = write_into_place(&dir, b"a.mp4", &b"video B"[..], &f, &no, None).unwrap_err();
        assert!(e.starts_with("corrupted object"), "{e}");
        let e =
            write_into_place(&dir, b"a.mp4", &b"video A and more"[..], &f, &no, None).unwrap_err();
        assert!(e.starts_with("corrupted object: longer"), "{e}");
        assert_eq!(
            std::fs::read(root_path.join("match/a.mp4")).unwrap(),
            b"video a"
        );
        let names: Vec<_> = std::fs::read_dir(root_path.join("match"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.mp4"]);
        // A folder that is a link is never created through nor followed.
        let e = make_parents(&root, &[b"linked"]).unwrap_err();
        assert!(e.contains("not followed"), "{e}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(&base);
    }
}
