//! Recovery from the bucket (docs/format.md, Recovery): the day the SD card died, the
//! bucket is all that is left of a site. This module lists a site's archive copies,
//! fetches one into BACKUP_DIR (decrypted when it is an `.age` copy) and checks it like
//! `verify` before it takes an archive's name there; the restore of the files and of the
//! videos is then restore/'s own work, called by the surfaces (cli/recover.rs, the API).
//!
//! Rules:
//! - The archive named, or else the newest of the site's folder that verifies: a newest
//!   copy that is damaged (truncated, garbage, an `.age` file under a plain name) is
//!   named and skipped; a store that cannot be read stops the recovery (an older copy
//!   is never taken because the network failed).
//! - A copy is fetched to a temp name in BACKUP_DIR (`.tmp-`, which the next backup
//!   clears if we are killed), synced, verified, then renamed: BACKUP_DIR never holds a
//!   damaged or half-written archive under an archive's name. An archive already there
//!   under the same name that verifies is used as it is (a second `recover` after an
//!   interruption does not fetch it again).
//! - The download is by ranges (`RangeReader`): a dropped connection costs a range.
//!   Memory is bounded whatever the archive's size: one range and the age stream's
//!   buffers.
//! - The dry run streams the copy through the checks without writing anything, not
//!   even BACKUP_DIR.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::backup::archive;
use crate::bucket::{self, Bucket, RangeReader};
use crate::clock;
use crate::config::Config;
use crate::fsutil::{self, Lock, LockWait, sys};
use crate::offsite;
use crate::store;

/// Sites named when the site asked for holds nothing.
pub const SITES_SHOWN: usize = 20;
/// Kept free beside the archive fetched.
const RESERVE: u64 = 16 * 1024 * 1024;

/// One archive copy in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// Its name in the bucket: `backup-….tar.gz` or `backup-….tar.gz.age`.
    pub name: String,
    pub key: String,
    pub size: u64,
    /// The local time in its name.
    pub naive: i64,
    pub encrypted: bool,
}

impl Remote {
    /// The archive's name in BACKUP_DIR (without `.age`).
    pub fn local_name(&self) -> &str {
        self.name.strip_suffix(".age").unwrap_or(&self.name)
    }

    /// `date` as the local list shows it.
    pub fn date(&self) -> String {
        clock::plain(self.naive)
    }
}

/// Whether `name` is a name the bucket gives an archive copy.
pub fn is_remote_name(name: &str) -> bool {
    store::is_archive_name(name.strip_suffix(".age").unwrap_or(name))
}

pub use crate::offsite::Source;

/// The archive copies of `site`, newest first (by the time in their names).
pub fn list(b: &dyn Bucket, o: &offsite::Place, site: &str) -> Result<Vec<Remote>, bucket::Error> {
    let prefix = o.site_prefix(site);
    let listing = b.list(&prefix, Some("/"))?;
    let mut out: Vec<Remote> = listing
        .objects
        .into_iter()
        .filter_map(|obj| {
            let name = obj.key.strip_prefix(&prefix)?.to_string();
            if !is_remote_name(&name) {
                return None;
            }
            let naive = store::name_time(name.strip_suffix(".age").unwrap_or(&name))?;
            Some(Remote {
                encrypted: name.ends_with(".age"),
                name,
                key: obj.key,
                size: obj.size,
                naive,
            })
        })
        .collect();
    out.sort_by(|a, b| (b.naive, &b.name).cmp(&(a.naive, &a.name)));
    Ok(out)
}

/// The sites the bucket holds under S3_PREFIX (folders, reserved names left out), or
/// `None` when this key may not list them (a key scoped to its own site's folder).
pub fn sites(b: &dyn Bucket, o: &offsite::Place) -> Result<Option<Vec<String>>, bucket::Error> {
    let prefix = o.root.clone();
    match b.list(&prefix, Some("/")) {
        Ok(l) => Ok(Some(
            l.prefixes
                .iter()
                .filter_map(|p| p.strip_prefix(&prefix)?.strip_suffix('/'))
                .filter(|s| crate::config::reserved_site_id(s).is_none())
                .map(str::to_string)
                .collect(),
        )),
        Err(e) if e.denied() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Why a copy could not be fetched.
#[derive(Debug)]
pub enum FetchError {
    /// The copy is not a whole archive (checked like `verify`): skipped when it was not
    /// named.
    Damaged(String),
    /// An encrypted copy without an identity, or with one that does not open it.
    Identity(String),
    /// The store could not be read (network, refusal).
    Store(String),
    /// On this side: BACKUP_DIR, the disk.
    Local(String),
}

impl FetchError {
    pub fn message(&self) -> &str {
        match self {
            FetchError::Damaged(m)
            | FetchError::Identity(m)
            | FetchError::Store(m)
            | FetchError::Local(m) => m,
        }
    }
}

/// How far a recovery is (read by the API's job report while it runs).
#[derive(Debug, Default)]
pub struct Progress {
    pub archive_bytes: AtomicU64,
    pub archive_total: AtomicU64,
    pub videos: crate::restore::videos::Progress,
}

/// A reader that remembers the first error of the reader below it, so that a failure
/// of the store is told apart from a failure of the checks above it (age, gzip, tar),
/// and counts the bytes read.
struct Watch<'a, R> {
    inner: R,
    failed: Arc<Mutex<Option<String>>>,
    progress: Option<&'a AtomicU64>,
}

impl<R: Read> Read for Watch<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                if let Some(p) = self.progress {
                    p.fetch_add(n as u64, Ordering::Relaxed);
                }
                Ok(n)
            }
            Err(e) => {
                if let Ok(mut f) = self.failed.lock()
                    && f.is_none()
                {
                    *f = Some(e.to_string());
                }
                Err(e)
            }
        }
    }
}

/// The plain archive of a copy as a stream, and the slot where a store failure under it
/// is recorded.
pub struct Stream<'a> {
    pub reader: Box<dyn Read + 'a>,
    store_failed: Arc<Mutex<Option<String>>>,
}

impl Stream<'_> {
    /// The store's failure while the stream was read, if there was one.
    pub fn store_failure(&self) -> Option<String> {
        self.store_failed.lock().ok().and_then(|f| f.clone())
    }
}

/// Opens a copy for reading (decrypted with `identities` when it is an `.age` one).
pub fn open<'a>(
    b: &'a dyn Bucket,
    r: &Remote,
    identities: &'a [age::x25519::Identity],
    progress: Option<&'a AtomicU64>,
) -> Result<Stream<'a>, FetchError> {
    if r.encrypted && identities.is_empty() {
        return Err(FetchError::Identity(format!(
            "{} is encrypted (ENCRYPT_TO): the site's age identity is needed (--identity FILE, over SSH)",
            r.name
        )));
    }
    let ranges = match RangeReader::open(b, &r.key) {
        Ok(Some(x)) => x,
        Ok(None) => {
            return Err(FetchError::Store(format!(
                "{} is no longer in the bucket",
                b.describe(&r.key)
            )));
        }
        Err(e) => return Err(FetchError::Store(e.msg)),
    };
    let failed = Arc::new(Mutex::new(None));
    let watched = Watch {
        inner: ranges,
        failed: failed.clone(),
        progress,
    };
    let reader: Box<dyn Read + 'a> = if r.encrypted {
        let store_err =
            |failed: &Arc<Mutex<Option<String>>>| failed.lock().ok().and_then(|f| f.clone());
        let d = match age::Decryptor::new_buffered(BufReader::with_capacity(64 * 1024, watched)) {
            Ok(d) => d,
            Err(e) => {
                return Err(match store_err(&failed) {
                    Some(s) => FetchError::Store(s),
                    None => FetchError::Damaged(format!("{} is not an age file ({e})", r.name)),
                });
            }
        };
        match d.decrypt(identities.iter().map(|i| i as &dyn age::Identity)) {
            Ok(x) => Box::new(x),
            Err(age::DecryptError::NoMatchingKeys) => {
                return Err(FetchError::Identity(format!(
                    "{}: the identity given does not open it (not the site's age key)",
                    r.name
                )));
            }
            Err(e) => {
                return Err(match store_err(&failed) {
                    Some(s) => FetchError::Store(s),
                    None => FetchError::Damaged(format!("{}: cannot decrypt it ({e})", r.name)),
                });
            }
        }
    } else {
        Box::new(watched)
    };
    Ok(Stream {
        reader,
        store_failed: failed,
    })
}

/// An archive fetched into BACKUP_DIR.
#[derive(Debug)]
pub struct Fetched {
    pub path: PathBuf,
    /// False when the archive was already in BACKUP_DIR, whole.
    pub downloaded: bool,
    /// Bytes read from the bucket.
    pub bytes: u64,
}

/// Whether `path` holds a whole archive named `name` (verify's checks).
fn verifies(path: &Path, name: &str) -> Result<(), String> {
    let (f, _) = fsutil::open_regular(path, true).map_err(|e| e.to_string())?;
    let report = archive::verify(f, Some(store::stem_of(name)));
    match report.error {
        None if report.ok => Ok(()),
        None => Err("it does not match its manifest".into()),
        Some(e) => Err(e),
    }
}

/// Fetches the copy `r` into `dir` (BACKUP_DIR, created 0700) under its archive name:
/// temp name, fsync, verify, rename. Nothing is left under an archive's name unless it
/// verifies.
pub fn fetch(
    b: &dyn Bucket,
    r: &Remote,
    dir: &Path,
    identities: &[age::x25519::Identity],
    cancel: &AtomicBool,
    progress: &Progress,
) -> Result<Fetched, FetchError> {
    let name = r.local_name().to_string();
    let path = dir.join(&name);
    progress.archive_total.store(r.size, Ordering::Relaxed);
    progress.archive_bytes.store(0, Ordering::Relaxed);
    if std::fs::symlink_metadata(&path).is_ok() {
        // Used as it is only when it holds the copy's very bytes (a recovery that was
        // interrupted after the fetch); anything else under that name (this Pi's own
        // backup of the same second, a damaged file) is never replaced.
        return match holds_the_copy(b, r, &path, identities, cancel, progress)? {
            true => {
                verifies(&path, &name).map_err(|e| FetchError::Damaged(format!("{name}: {e}")))?;
                Ok(Fetched {
                    path,
                    downloaded: false,
                    bytes: progress.archive_bytes.load(Ordering::Relaxed),
                })
            }
            false => Err(FetchError::Local(format!(
                "BACKUP_DIR already holds another file named {name} (not the bucket's copy): \
                 move it away, then run recover again"
            ))),
        };
    }
    store::ensure_dir(dir).map_err(|e| {
        FetchError::Local(format!("cannot create BACKUP_DIR {}: {e}", dir.display()))
    })?;
    if let Some(d) = fsutil::disk_use(dir)
        && r.size.saturating_add(RESERVE) > d.avail
    {
        return Err(FetchError::Local(format!(
            "not enough free space in {} for {} ({} needed, {} free)",
            dir.display(),
            r.name,
            crate::units::human_size(r.size, 1),
            crate::units::human_size(d.avail, 1)
        )));
    }
    let mut stream = open(b, r, identities, Some(&progress.archive_bytes))?;
    let (mut out, tmp) = fsutil::create_temp(dir, &name, 0o600)
        .map_err(|e| FetchError::Local(format!("cannot write in {}: {e}", dir.display())))?;
    let res = copy_then_check(&mut stream, &mut out, &tmp, &name, cancel);
    let res = res.and_then(|()| {
        std::fs::rename(&tmp, &path)
            .and_then(|()| fsutil::fsync_dir(dir))
            .map_err(|e| FetchError::Local(format!("cannot move {name} into place: {e}")))
    });
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res?;
    Ok(Fetched {
        path,
        downloaded: true,
        bytes: progress.archive_bytes.load(Ordering::Relaxed),
    })
}

/// Whether the file at `path` holds exactly the bytes of the copy `r` (decrypted).
fn holds_the_copy(
    b: &dyn Bucket,
    r: &Remote,
    path: &Path,
    identities: &[age::x25519::Identity],
    cancel: &AtomicBool,
    progress: &Progress,
) -> Result<bool, FetchError> {
    let Ok((mut local, _)) = fsutil::open_regular(path, true) else {
        return Ok(false);
    };
    let mut stream = open(b, r, identities, Some(&progress.archive_bytes))?;
    let mut a = vec![0u8; 64 * 1024];
    let mut l = vec![0u8; 64 * 1024];
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(FetchError::Local("cancelled".into()));
        }
        let n = match read_full(&mut stream.reader, &mut a) {
            Ok(n) => n,
            Err(e) => {
                return Err(match stream.store_failure() {
                    Some(s) => FetchError::Store(s),
                    None => FetchError::Damaged(format!("{}: {e}", r.name)),
                });
            }
        };
        let m = read_full(&mut local, &mut l[..n.max(1)])
            .map_err(|e| FetchError::Local(format!("cannot read {}: {e}", path.display())))?;
        if n != m || a[..n] != l[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the end; the bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn copy_then_check(
    stream: &mut Stream,
    out: &mut File,
    tmp: &Path,
    name: &str,
    cancel: &AtomicBool,
) -> Result<(), FetchError> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(FetchError::Local("cancelled".into()));
        }
        let n = match stream.reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                return Err(match stream.store_failure() {
                    Some(s) => FetchError::Store(s),
                    None => FetchError::Damaged(format!("{name}: {e}")),
                });
            }
        };
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(|e| FetchError::Local(format!("cannot write {name}: {e}")))?;
    }
    out.sync_all()
        .map_err(|e| FetchError::Local(format!("cannot write {name}: {e}")))?;
    verifies(tmp, name).map_err(|e| FetchError::Damaged(format!("{name}: {e}")))
}

/// The copies to try, in order: the one named (by its bucket name, or by its archive
/// name when only one copy has it), or every copy newest first.
pub fn candidates<'a>(list: &'a [Remote], named: Option<&str>) -> Result<Vec<&'a Remote>, String> {
    match named {
        None => Ok(list.iter().collect()),
        Some(n) => {
            let hit: Vec<&Remote> = list
                .iter()
                .filter(|r| r.name == n || r.local_name() == n)
                .collect();
            match hit.as_slice() {
                [one] => Ok(vec![one]),
                [] => Err(format!("{n} is not in the bucket")),
                _ => Err(format!(
                    "{n} is in the bucket twice (plain and .age): name one of them"
                )),
            }
        }
    }
}

/// Creates the missing folders above `file` (a target of the restore), each owned like
/// its parent when running as root, mode 0755, never through a link. Returns the folders
/// made.
pub fn make_folders(file: &Path) -> Result<Vec<PathBuf>, String> {
    let Some(parent) = file.parent() else {
        return Ok(Vec::new());
    };
    let missing = missing_folders(parent);
    for p in missing.iter().rev() {
        let (Some(up), Some(name)) = (p.parent(), p.file_name()) else {
            continue;
        };
        let d = sys::Dir::walk(up).map_err(|e| format!("cannot open {}: {e}", up.display()))?;
        match d.create_dir(name.as_encoded_bytes(), 0o755) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            Err(e) => return Err(format!("cannot create {}: {e}", p.display())),
        }
        if fsutil::euid() == 0 {
            let made = d
                .open_dir(name.as_encoded_bytes())
                .map_err(|e| format!("cannot open {}: {e}", p.display()))?;
            if let Ok(m) = d.metadata() {
                use std::os::unix::fs::MetadataExt;
                let _ = std::os::unix::fs::fchown(&made, Some(m.uid()), Some(m.gid()));
            }
        }
    }
    Ok(missing.into_iter().rev().collect())
}

/// The folders of `dir` and above that do not exist, deepest first.
pub fn missing_folders(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut p = dir.to_path_buf();
    while std::fs::symlink_metadata(&p).is_err() {
        out.push(p.clone());
        if !p.pop() || p.as_os_str().is_empty() {
            break;
        }
    }
    out
}

/// The configuration with `site` as SITE_ID: the videos of a site recovered under
/// `--site` are that site's (its own and its encrypted copies).
pub fn config_for_site(cfg: &Config, site: &str) -> Config {
    Config {
        site_id: site.to_string(),
        ..cfg.clone()
    }
}

// ---------------------------------------------------------------------------------
// The whole recovery, for the command and the API.

/// What a recovery is asked to do.
pub struct Request<'a> {
    /// The Pi's configuration (its offsite keys, its targets).
    pub cfg: &'a Config,
    /// The site recovered (`--site`, else SITE_ID).
    pub site: String,
    /// The archive named, if one was.
    pub named: Option<String>,
    pub identities: Vec<age::x25519::Identity>,
    /// Fetch the videos too (not `--no-videos`).
    pub videos: bool,
    pub tz: &'a clock::Tz,
    pub cancel: &'a AtomicBool,
    pub progress: &'a Progress,
    /// Block: wait for a running backup (the command); Try: answer busy (the API).
    pub wait: LockWait,
    /// Where the copies are read (`Source::pick`).
    pub from: Source,
}

/// Why a recovery did not get to the restore.
#[derive(Debug)]
pub enum Failure {
    /// No offsite target, a reserved site name: exit 2.
    Config(String),
    /// The site's folder holds no archive; the sites the bucket holds (None: this key
    /// may not list them).
    NoArchive {
        site: String,
        sites: Option<Vec<String>>,
    },
    /// The archive named is not there.
    NotFound(String),
    /// Another recovery, or (with `LockWait::Try`) a backup, is running.
    Busy(String),
    /// No copy could be fetched whole (the last error; copies skipped are in `skipped`).
    Fetch {
        error: FetchError,
        skipped: Vec<(String, String)>,
    },
}

impl Failure {
    pub fn message(&self) -> String {
        match self {
            Failure::Config(m) | Failure::NotFound(m) | Failure::Busy(m) => m.clone(),
            Failure::NoArchive { site, sites } => no_archive_message(site, sites.as_deref()),
            Failure::Fetch { error, .. } => error.message().to_string(),
        }
    }
}

/// "No archive of SITE in the bucket", with the sites it holds (at most SITES_SHOWN),
/// or why they cannot be named.
pub fn no_archive_message(site: &str, sites: Option<&[String]>) -> String {
    match sites {
        Some([]) => format!("the bucket holds no archive of {site}, and no other site"),
        Some(list) => {
            let shown: Vec<&str> = list.iter().take(SITES_SHOWN).map(String::as_str).collect();
            let more = if list.len() > SITES_SHOWN {
                format!(" and {} more", list.len() - SITES_SHOWN)
            } else {
                String::new()
            };
            format!(
                "the bucket holds no archive of {site}; its sites: {}{more} (name one with --site)",
                shown.join(", ")
            )
        }
        None => format!(
            "the bucket holds no archive of {site}, and this key sees only its own site's \
             folder: name the site with --site (its SITE_ID, the hostname of the dead Pi by default)"
        ),
    }
}

/// What a dry run found (nothing was written).
pub struct DryOutcome {
    pub archive: Remote,
    /// Newer copies that did not verify, and why.
    pub skipped: Vec<(String, String)>,
    pub report: crate::restore::DryReport,
    /// Folders of the targets that a recovery would create.
    pub folders: Vec<PathBuf>,
    pub videos: VideosStep<crate::restore::videos::VideoPlan>,
}

/// The videos' part of a recovery.
pub enum VideosStep<T> {
    /// `--no-videos`.
    NotAsked,
    /// The archive names no video by hash (the reason).
    None(String),
    Done(T),
    Failed(String),
}

/// What a real recovery did.
pub struct Outcome {
    pub archive: Remote,
    pub skipped: Vec<(String, String)>,
    pub fetched: Fetched,
    pub folders: Result<Vec<PathBuf>, String>,
    pub restore: Result<crate::restore::Done, crate::restore::Abort>,
    /// This install's offsite state records the recovery (offsite/history.rs: the site's
    /// history is this Pi's from now on, and its copies may go to the site's folder);
    /// `None` when the files did not all come back (nothing recorded).
    pub history: Option<Result<(), String>>,
    pub videos: VideosStep<crate::restore::videos::VideoDone>,
}

impl Outcome {
    /// Everything came back.
    pub fn ok(&self) -> bool {
        self.folders.is_ok()
            && self.restore.as_ref().is_ok_and(|d| d.ok())
            && matches!(self.history, Some(Ok(())))
            && match &self.videos {
                VideosStep::NotAsked | VideosStep::None(_) => true,
                VideosStep::Done(d) => d.ok(),
                VideosStep::Failed(_) => false,
            }
    }
}

fn settings(req: &Request) -> Result<offsite::Place, Failure> {
    let Some(o) = req.from.place(req.cfg) else {
        return Err(Failure::Config(
            Source::pick(req.cfg, Some(req.from))
                .err()
                .unwrap_or_else(|| "no offsite target is configured".into()),
        ));
    };
    if req.from == Source::S3
        && let Some(why) = crate::config::reserved_site_id(&req.site)
    {
        return Err(Failure::Config(why));
    }
    Ok(o)
}

/// The copies to try, newest first (or the one named).
fn to_try(b: &dyn Bucket, o: &offsite::Place, req: &Request) -> Result<Vec<Remote>, Failure> {
    let store = |e: bucket::Error| Failure::Fetch {
        error: FetchError::Store(format!("cannot list the bucket: {e}")),
        skipped: Vec::new(),
    };
    let all = list(b, o, &req.site).map_err(store)?;
    if all.is_empty() {
        return Err(Failure::NoArchive {
            site: req.site.clone(),
            sites: sites(b, o).map_err(store)?,
        });
    }
    let picked = candidates(&all, req.named.as_deref()).map_err(|e| {
        let newest: Vec<&str> = all.iter().take(5).map(|r| r.name.as_str()).collect();
        Failure::NotFound(format!("{e} (newest there: {})", newest.join(", ")))
    })?;
    Ok(picked.into_iter().cloned().collect())
}

/// The target folders missing on the Pi.
fn folders_missing(cfg: &Config) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for (_, target) in crate::backup::config_files(cfg) {
        if let Some(parent) = target.parent() {
            for p in missing_folders(parent).into_iter().rev() {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
    }
    out
}

fn restore_job<'a>(req: &Request<'a>, cfg: &'a Config, name: &str) -> crate::restore::Job<'a> {
    crate::restore::Job {
        cfg,
        tz: req.tz,
        name: name.to_string(),
        expected_top: Some(store::stem_of(name).to_string()),
        files: crate::restore::FILES.to_vec(),
        cancel: req.cancel,
    }
}

fn video_job<'a>(
    req: &'a Request<'a>,
    cfg: &'a Config,
    name: &str,
) -> crate::restore::videos::VideoJob<'a> {
    crate::restore::videos::VideoJob {
        cfg,
        tz: req.tz,
        name: name.to_string(),
        expected_top: Some(store::stem_of(name).to_string()),
        identities: req.identities.clone(),
        cancel: req.cancel,
        progress: Some(&req.progress.videos),
    }
}

/// The dry run: the copy a recovery would take (checked by streaming it through the
/// restore's dry run), the file report, the folders and the videos it would fetch.
/// Writes nothing, not even BACKUP_DIR.
pub fn dry_run(b: &dyn Bucket, req: &Request) -> Result<DryOutcome, Failure> {
    let o = settings(req)?;
    let site_cfg = config_for_site(req.cfg, &req.site);
    let mut skipped = Vec::new();
    for r in to_try(b, &o, req)? {
        let job = restore_job(req, &site_cfg, r.local_name());
        let fail =
            |error: FetchError, skipped: Vec<(String, String)>| Failure::Fetch { error, skipped };
        let stream = match open(b, &r, &req.identities, None) {
            Ok(s) => s,
            Err(FetchError::Damaged(e)) if req.named.is_none() => {
                skipped.push((r.name.clone(), e));
                continue;
            }
            Err(e) => return Err(fail(e, skipped)),
        };
        let failed = stream.store_failed.clone();
        let report = match crate::restore::dry_run_silent(&job, stream.reader) {
            Ok(x) => x,
            Err(e) => {
                if let Some(s) = failed.lock().ok().and_then(|f| f.clone()) {
                    return Err(fail(FetchError::Store(s), skipped));
                }
                if req.named.is_some() {
                    return Err(fail(
                        FetchError::Damaged(format!("{}: {e}", r.name)),
                        skipped,
                    ));
                }
                skipped.push((r.name.clone(), e));
                continue;
            }
        };
        let videos = if !req.videos {
            VideosStep::NotAsked
        } else {
            match open(b, &r, &req.identities, None) {
                Err(e) => VideosStep::Failed(e.message().to_string()),
                Ok(s) => match crate::restore::videos::plan(
                    &video_job(req, &site_cfg, r.local_name()),
                    s.reader,
                ) {
                    Ok(p) => VideosStep::Done(p),
                    Err(e) => VideosStep::Failed(e),
                },
            }
        };
        // A plan that fails because the archive names no video by hash is the real
        // recovery's "none to fetch" (`not_by_hash`, read on a stream of its own only
        // then), not a failure.
        let videos = match videos {
            VideosStep::Failed(e) => match open(b, &r, &req.identities, None).map(|s| {
                crate::restore::videos::not_by_hash(s.reader, Some(store::stem_of(r.local_name())))
            }) {
                Ok(Ok(Some(why))) => VideosStep::None(why),
                _ => VideosStep::Failed(e),
            },
            v => v,
        };
        let folders = folders_missing(req.cfg);
        let mut report = report;
        // A folder the recovery creates is not a problem of the file in it.
        for i in &mut report.items {
            if i.state == crate::restore::FileState::MissingOnPi
                && i.target
                    .parent()
                    .is_some_and(|p| folders.iter().any(|f| f == p))
            {
                i.problem = None;
            }
        }
        return Ok(DryOutcome {
            archive: r,
            skipped,
            report,
            folders,
            videos,
        });
    }
    Err(Failure::Fetch {
        error: FetchError::Damaged("no copy in the bucket verifies".into()),
        skipped,
    })
}

/// The real recovery: the copy fetched into BACKUP_DIR (under the backup lock), the
/// missing target folders made, the files restored as `restore` does, then the videos
/// as `restore --videos` does.
pub fn run(b: &dyn Bucket, req: &Request) -> Result<Outcome, Failure> {
    let o = settings(req)?;
    let dir = &req.cfg.backup_dir;
    let list = to_try(b, &o, req)?;
    // An encrypted copy that the identity given does not open is found before anything
    // is written (its header is in the first range).
    if let Some(first) = list.first()
        && first.encrypted
        && let Err(e @ (FetchError::Identity(_) | FetchError::Store(_))) =
            open(b, first, &req.identities, None)
    {
        return Err(Failure::Fetch {
            error: e,
            skipped: Vec::new(),
        });
    }
    store::ensure_dir(dir).map_err(|e| Failure::Fetch {
        error: FetchError::Local(format!("cannot create BACKUP_DIR {}: {e}", dir.display())),
        skipped: Vec::new(),
    })?;
    let _one = match Lock::acquire(&dir.join(store::RECOVER_LOCK_FILE), LockWait::Try) {
        Ok(Some(l)) => l,
        Ok(None) => return Err(Failure::Busy("another recovery is running".into())),
        Err(e) => {
            return Err(Failure::Fetch {
                error: FetchError::Local(format!("cannot lock {}: {e}", store::RECOVER_LOCK_FILE)),
                skipped: Vec::new(),
            });
        }
    };
    let log = crate::status::Log::new(dir, req.tz);
    let mut skipped: Vec<(String, String)> = Vec::new();
    let mut got = None;
    {
        let _backup = match store::lock(dir, req.wait, || {
            log.info("recover: a backup is running: waiting for it to finish")
        }) {
            Ok(Some(l)) => l,
            Ok(None) => return Err(Failure::Busy("a backup is running".into())),
            Err(e) => {
                return Err(Failure::Fetch {
                    error: FetchError::Local(format!("cannot lock {}: {e}", store::LOCK_FILE)),
                    skipped,
                });
            }
        };
        for r in list {
            log.info(&format!(
                "recover: fetching {} from {}",
                r.name,
                b.describe(&r.key)
            ));
            match fetch(b, &r, dir, &req.identities, req.cancel, req.progress) {
                Ok(f) => {
                    got = Some((r, f));
                    break;
                }
                Err(FetchError::Damaged(e)) if req.named.is_none() => {
                    log.warn(&format!("recover: {} skipped, it is damaged: {e}", r.name));
                    skipped.push((r.name.clone(), e));
                }
                Err(error) => {
                    log.error(&format!("recover: {}: {}", r.name, error.message()));
                    return Err(Failure::Fetch { error, skipped });
                }
            }
        }
    }
    let Some((archive, fetched)) = got else {
        return Err(Failure::Fetch {
            error: FetchError::Damaged("no copy in the bucket verifies".into()),
            skipped,
        });
    };
    let name = archive.local_name().to_string();
    log.info(&format!(
        "recover: {name} is in BACKUP_DIR and verifies ({})",
        if fetched.downloaded {
            "fetched"
        } else {
            "already there"
        }
    ));
    let site_cfg = config_for_site(req.cfg, &req.site);
    let mut folders = Ok(Vec::new());
    for (_, target) in crate::backup::config_files(req.cfg) {
        match make_folders(&target) {
            Ok(made) => {
                for m in &made {
                    log.info(&format!("recover: created the folder {}", m.display()));
                }
                if let Ok(all) = &mut folders {
                    all.extend(made);
                }
            }
            Err(e) => {
                log.error(&format!("recover: {e}"));
                folders = Err(e);
                break;
            }
        }
    }
    let open_local = || {
        fsutil::open_regular(&fetched.path, true)
            .map(|(f, _)| f)
            .map_err(|e| format!("cannot open {}: {e}", fetched.path.display()))
    };
    let restore = match open_local() {
        Ok(f) => crate::restore::run(&restore_job(req, &site_cfg, &name), f, req.wait),
        Err(e) => Err(crate::restore::Abort::Failed(e)),
    };
    let videos = if !req.videos {
        VideosStep::NotAsked
    } else {
        match open_local()
            .and_then(|f| crate::restore::videos::not_by_hash(f, Some(store::stem_of(&name))))
        {
            Err(e) => VideosStep::Failed(e),
            Ok(Some(why)) => VideosStep::None(why),
            Ok(None) => match open_local().and_then(|f| {
                crate::restore::videos::run_on(
                    b,
                    &video_job(req, &site_cfg, &name),
                    f,
                    LockWait::Try,
                )
            }) {
                Ok(d) => VideosStep::Done(d),
                Err(e) => VideosStep::Failed(e),
            },
        }
    };
    // Once the site's files are on the Pi, its history is this Pi's: recorded after the
    // videos, so that a backup made while they come (a half-filled videos folder) is
    // one of the copies kept local, never the site's newest copy in the bucket.
    let history = restore
        .as_ref()
        .is_ok_and(|d| d.ok())
        .then(|| offsite::history::record_recovery(req.cfg, &req.site, &log));
    if let Some(Err(e)) = &history {
        log.error(&format!("recover: cannot record the recovery: {e}"));
    }
    Ok(Outcome {
        archive,
        skipped,
        fetched,
        folders,
        restore,
        history,
        videos,
    })
}

#[cfg(test)]
mod tests;
