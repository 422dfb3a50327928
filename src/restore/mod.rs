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
//!    keeping the current owner and mode (a missing one is created 0600, owned like its
//!    folder); folders are reached without following any symlink (target::open_dir). A file that cannot be written is a per-file
//!    error; the others are still restored. Unchanged files are not rewritten.
//! 4. Log everything to backup.log, report, and run RESTART_CMD when every file was
//!    restored.
//!
//! Videos are never restored by this command: the archive lists them (and holds them
//! with INCLUDE_VIDEOS), but copying them back is left to the operator; the dry run says
//! which ones are no longer on the Pi.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::backup::{self, Sources};
use crate::clock::Tz;
use crate::config::Config;
use crate::fsutil::LockWait;
use crate::status::Log;
use crate::store;
use crate::videos::inventory;

pub mod identity;
mod load;
mod target;
pub mod videos;

use load::{Loaded, load};
pub use target::{FileState, Item};
use target::{inspect, replace_file};

/// The files this command restores, by their name in the archive, in restore order.
pub const FILES: [&str; 3] = ["configuration.json", "sync-agent.env", "site.conf"];
pub const INVENTORY: &str = "videos-inventory.txt";
pub(crate) const SYSINFO: &str = "system-info.txt";
/// How long RESTART_CMD may run before it is killed.
const RESTART_TIMEOUT: Duration = Duration::from_secs(60);
/// Output of RESTART_CMD kept for the report and the log.
const RESTART_OUTPUT_MAX: usize = 4096;
// ---------------------------------------------------------------------------------
// 1. Reading and judging the archive.

// ---------------------------------------------------------------------------------
// 2. Comparing with the Pi.

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
    /// Written by the old auto-backup.sh: checked without a manifest.
    pub old_format: bool,
    pub items: Vec<Item>,
    /// None when the archive has no inventory.
    pub videos: Option<VideoDiff>,
    /// Why the Pi's videos could not be listed, if so.
    pub videos_error: Option<String>,
    pub archived_videos: usize,
}

// ---------------------------------------------------------------------------------
// 3. Writing.

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
    dry_report(job, reader, log.as_ref())
}

/// The dry run without its log line: it writes nothing at all (`recover --dry-run`).
pub fn dry_run_silent(job: &Job, reader: impl Read) -> Result<DryReport, String> {
    dry_report(job, reader, None)
}

fn dry_report(job: &Job, reader: impl Read, log: Option<&Log>) -> Result<DryReport, String> {
    let loaded =
        load(reader, job.expected_top.as_deref(), &job.cfg.videos_dir()).inspect_err(|e| {
            if let Some(log) = log {
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
                    let mut diff = compare_videos(inv, &now);
                    if loaded.old_format {
                        // `ls -h` sizes are rounded: only presence can be compared.
                        diff.resized.clear();
                    }
                    (Some(diff), None)
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
    if let Some(log) = log {
        let would = items.iter().filter(|i| i.to_write()).count();
        let problems = items.iter().filter(|i| i.problem.is_some()).count();
        log.info(&format!(
            "restore dry run of {}: {would} file(s) would be restored, {problems} with a problem, {} video(s) missing",
            job.name,
            videos.as_ref().map_or(0, |v| v.missing.len())
        ));
    }
    Ok(DryReport {
        old_format: loaded.old_format,
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
    let loaded = load(reader, job.expected_top.as_deref(), &job.cfg.videos_dir())
        .map_err(|e| fail(Abort::Refused(e)))?;
    if loaded.old_format {
        log.warn(&format!(
            "{} is an old-format archive (written by the old auto-backup.sh): no manifest \
             to check its files against; gzip and tar were checked",
            job.name
        ));
    }
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
    // A safety backup when a file the restore replaces exists: a file only created
    // (a freshly flashed card) leaves nothing to save.
    let safety_backup = if items
        .iter()
        .any(|i| i.to_write() && i.state == FileState::Changed)
    {
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
    use super::load::{check_names, lossy};
    use super::*;
    use crate::backup::archive::EntrySeen;

    fn entry(path: &str, is_dir: bool) -> EntrySeen {
        EntrySeen {
            path: path.as_bytes().to_vec(),
            is_dir,
            sha256: String::new(),
            size: 0,
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
