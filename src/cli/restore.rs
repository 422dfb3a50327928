//! `verify` and `restore`: what the operator sees over SSH. The work is in restore.rs
//! and backup/archive.rs; this file prints.

use std::fs::File;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use crate::backup::archive::{self, MANIFEST};
use crate::clock::Tz;
use crate::config::Config;
use crate::fsutil::{self, LockWait};
use crate::restore::videos::{self, VideoJob, VideoPlan};
use crate::restore::{self, Abort, Done, DryReport, FileResult, FileState, INVENTORY, Job};
use crate::store;
use crate::videos::inventory;

pub(super) fn size(n: u64) -> String {
    let h = crate::units::human_size(n, 1);
    if n < 1024 { h } else { format!("{h}, {n} B") }
}

pub(super) fn print_dry(name: &str, r: &DryReport, then_videos: bool) {
    println!("Dry run of the restore of {name}: nothing is changed.");
    if r.old_format {
        println!(
            "The archive is readable: old format, no manifest (written by the old \
             auto-backup.sh; gzip and tar checked, there is no {MANIFEST} to check the files \
             against; video sizes from its `ls -lh` inventory are approximate)."
        );
    } else {
        println!("The archive is intact (gzip, tar and {MANIFEST} checked).");
    }
    for i in &r.items {
        let what = match i.state {
            FileState::Unchanged => "unchanged".to_string(),
            FileState::Changed => format!(
                "CHANGED: archive {}, on the Pi {}",
                size(i.archive_size.unwrap_or(0)),
                size(i.current_size.unwrap_or(0))
            ),
            FileState::MissingOnPi => format!(
                "MISSING ON THE PI: would be created ({})",
                size(i.archive_size.unwrap_or(0))
            ),
            FileState::MissingInArchive => "not in the archive: would be left as it is".to_string(),
            FileState::Unreadable => "cannot be compared".to_string(),
        };
        println!("  {:<20} {what}  [{}]", i.name, i.target.display());
        if let Some(p) = &i.problem {
            println!("  {:<20} PROBLEM: {p}", "");
        }
    }
    match (&r.videos, &r.videos_error) {
        (_, Some(e)) => println!("Videos: {e}"),
        (None, None) => println!("Videos: the archive has no {INVENTORY}"),
        (Some(v), None) => {
            println!(
                "Videos of the archive's inventory: {} listed, {} no longer on the Pi, {} changed size",
                v.listed,
                v.missing.len(),
                v.resized.len()
            );
            let show = |p: &[u8]| {
                let mut s = String::new();
                inventory::escape_path(p, &mut s);
                s
            };
            for (p, s) in &v.missing {
                println!("  missing  {} ({})", show(p), size(*s));
            }
            for (p, a, n) in &v.resized {
                println!(
                    "  resized  {} (archive {}, now {})",
                    show(p),
                    size(*a),
                    size(*n)
                );
            }
        }
    }
    if then_videos {
        // `recover` fetches them next: it says so itself.
    } else if r.archived_videos > 0 {
        println!(
            "The archive holds {} video file(s): this command never restores videos (extract them with tar, or fetch them with --videos).",
            r.archived_videos
        );
    } else {
        println!(
            "Videos are not restored by this command: `restore ARCHIVE --videos` fetches them from the bucket (VIDEOS_OFFSITE)."
        );
    }
    let would: Vec<&str> = r
        .items
        .iter()
        .filter(|i| i.to_write())
        .map(|i| i.name)
        .collect();
    if would.is_empty() {
        println!("A real restore would change nothing.");
    } else {
        println!(
            "A real restore would first make a safety backup, then write: {}",
            would.join(", ")
        );
    }
}

pub(super) fn print_done(name: &str, d: &Done) {
    if let Some(s) = &d.safety_backup {
        println!("Safety backup of the state before the restore: {s}");
        println!("  (to undo this restore: neopro-backup restore {s})");
    }
    for (n, target, r) in &d.files {
        match r {
            FileResult::Restored => println!("  restored   {n:<20} -> {}", target.display()),
            FileResult::Unchanged => {
                println!(
                    "  unchanged  {n:<20} ({} already matches)",
                    target.display()
                );
            }
            FileResult::Skipped => println!(
                "  skipped    {n:<20} (not in the archive; {} left as it is)",
                target.display()
            ),
            FileResult::Failed(e) => println!("  FAILED     {n:<20} {e}"),
        }
    }
    let restored = d.restored();
    let failed = d.failed();
    if !failed.is_empty() {
        println!(
            "Restore of {name} INCOMPLETE: {} restored, {} failed ({}).",
            restored.len(),
            failed.len(),
            failed.join(", ")
        );
    } else if restored.is_empty() {
        println!("Nothing to restore: the files already match {name}.");
    } else {
        println!("Restore of {name} done: {}.", restored.join(", "));
    }
    if restored.is_empty() {
        return;
    }
    match &d.restart {
        Some(r) if r.ok => println!("neopro-app was restarted (RESTART_CMD: {}).", r.command),
        Some(r) => {
            eprintln!(
                "neopro-backup: warning: RESTART_CMD ({}) failed: {}",
                r.command, r.output
            );
            println!(
                "neopro-app needs a restart: RESTART_CMD failed, restart it by hand (sudo systemctl restart neopro-app)."
            );
        }
        None if failed.is_empty() => println!(
            "neopro-app needs a restart to use the restored configuration: sudo systemctl restart neopro-app (or set RESTART_CMD)."
        ),
        None => println!(
            "neopro-app needs a restart to use the restored files (RESTART_CMD is not run after an incomplete restore)."
        ),
    }
}

/// Opens an archive for reading: never waits (a FIFO named like an archive is refused
/// at once), never a symlink in BACKUP_DIR, and only a regular file.
fn open_archive(path: &Path, in_store: bool) -> Result<File, String> {
    fsutil::open_regular(path, in_store)
        .map(|(f, _)| f)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// An archive's file name, and the top folder expected inside when it is named like one.
fn names_of(path: &Path) -> (String, Option<String>) {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let top = store::is_archive_name(&name).then(|| store::stem_of(&name).to_string());
    (name, top)
}

/// What both restore commands build their job from: the archive's names, the local
/// zone, and a cancel flag nothing sets (Ctrl-C ends the process).
struct Start {
    name: String,
    expected_top: Option<String>,
    tz: Tz,
    never: AtomicBool,
}

impl Start {
    /// Opens the archive like every archive (without blocking on a FIFO named like one,
    /// regular files only); exit code 1, said on stderr, when it cannot.
    fn open(archive_path: &Path, in_store: bool) -> Result<(Start, File), u8> {
        let file = open_archive(archive_path, in_store).map_err(|e| {
            eprintln!("neopro-backup: {e}");
            1
        })?;
        let (name, expected_top) = names_of(archive_path);
        let start = Start {
            name,
            expected_top,
            tz: Tz::local(),
            never: AtomicBool::new(false),
        };
        Ok((start, file))
    }

    /// The job of `restore` (configuration files).
    fn job<'a>(&'a self, cfg: &'a Config, files: Vec<&'static str>) -> Job<'a> {
        Job {
            cfg,
            tz: &self.tz,
            name: self.name.clone(),
            expected_top: self.expected_top.clone(),
            files,
            cancel: &self.never,
        }
    }

    /// The job of `restore --videos`.
    fn video_job<'a>(
        &'a self,
        cfg: &'a Config,
        identities: Vec<age::x25519::Identity>,
    ) -> VideoJob<'a> {
        VideoJob {
            cfg,
            tz: &self.tz,
            name: self.name.clone(),
            expected_top: self.expected_top.clone(),
            identities,
            cancel: &self.never,
            progress: None,
        }
    }
}

/// `verify ARCHIVE`: gzip, tar and MANIFEST.sha256; exit 0 intact, 1 damaged.
pub fn verify(path: &Path, in_store: bool) -> ExitCode {
    let file = match open_archive(path, in_store) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("neopro-backup: {e}");
            return ExitCode::from(1);
        }
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let top = store::is_archive_name(name).then(|| store::stem_of(name));
    let report = archive::verify(file, top);
    let unchecked = report.old_format && report.ok && report.error.is_none();
    for f in &report.files {
        // Without a manifest the files were read, not checked against anything.
        let mark = match (unchecked, f.ok) {
            (true, _) => "READ  ",
            (false, true) => "OK    ",
            (false, false) => "FAILED",
        };
        println!("{mark}  {}  {}", f.sha256, inventory::shown(&f.name));
    }
    match &report.error {
        None if report.old_format && unchecked => {
            println!(
                "{}: OK, old format, no manifest ({} files; gzip and tar read to the end; \
                 written by the old auto-backup.sh, so there is no MANIFEST.sha256 to check \
                 them against)",
                inventory::shown(&path.display().to_string()),
                report.files.len()
            );
            ExitCode::SUCCESS
        }
        None => {
            println!(
                "{}: OK ({} files match MANIFEST.sha256{})",
                inventory::shown(&path.display().to_string()),
                report.files.len(),
                if report.old_format {
                    ", old format"
                } else {
                    ""
                }
            );
            ExitCode::SUCCESS
        }
        Some(e) => {
            println!(
                "{}: DAMAGED: {}",
                inventory::shown(&path.display().to_string()),
                inventory::shown(e)
            );
            ExitCode::from(1)
        }
    }
}

/// `neopro-backup restore ARCHIVE [--dry-run] [--only FILE,...]`. Exit code: 0 every
/// selected file restored (or already identical), 1 archive refused or a file failed,
/// 2 usage.
pub fn cli(
    cfg: &Config,
    archive_path: &Path,
    in_store: bool,
    dry_run: bool,
    only: Option<Vec<String>>,
) -> u8 {
    let files = match restore::select(only.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("neopro-backup: {e}");
            return 2;
        }
    };
    let (start, file) = match Start::open(archive_path, in_store) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let job = start.job(cfg, files);
    if dry_run {
        return match restore::dry_run(&job, file) {
            Ok(r) => {
                print_dry(&job.name, &r, false);
                0
            }
            Err(e) => {
                eprintln!("neopro-backup: refusing {}: {e}", archive_path.display());
                1
            }
        };
    }
    match restore::run(&job, file, LockWait::Block) {
        Ok(d) => {
            print_done(&job.name, &d);
            u8::from(!d.ok())
        }
        Err(Abort::Refused(e)) => {
            eprintln!(
                "neopro-backup: refusing {}: {e}; nothing was written",
                archive_path.display()
            );
            1
        }
        Err(Abort::Busy) => {
            eprintln!("neopro-backup: a backup is running; try again in a moment");
            1
        }
        Err(Abort::Failed(e)) => {
            eprintln!("neopro-backup: restore failed: {e}; nothing was written");
            1
        }
    }
}

pub(super) fn print_video_plan(name: &str, p: &VideoPlan) {
    println!(
        "Videos of {name}: {} listed, {} already identical on the Pi, {} to fetch ({}).",
        p.listed,
        p.unchanged,
        p.fetch.len(),
        size(p.bytes)
    );
    for f in &p.fetch {
        println!(
            "  fetch  {:<8} {} ({})",
            f.why.as_str(),
            videos::shown(&f.rel),
            size(f.size)
        );
    }
    for (rel, why) in &p.problems {
        println!("  PROBLEM  {}: {why}", videos::shown(rel));
    }
    if let Some(free) = p.free {
        println!("Free space where they go: {}.", size(free));
    }
}

/// `neopro-backup restore ARCHIVE --videos [--dry-run] [--identity FILE]`. Exit code: 0
/// every video of the archive is on the Pi (fetched or already there), 1 otherwise.
pub fn cli_videos(
    cfg: &Config,
    archive_path: &Path,
    in_store: bool,
    dry_run: bool,
    identity: Option<&Path>,
) -> u8 {
    let identities = match identity.map(restore::identity::read) {
        None => Vec::new(),
        Some(Ok(ids)) => ids,
        Some(Err(e)) => {
            eprintln!("neopro-backup: {e}");
            return 2;
        }
    };
    let (start, file) = match Start::open(archive_path, in_store) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let job = start.video_job(cfg, identities);
    if dry_run {
        return match videos::plan(&job, file) {
            Ok(p) => {
                println!(
                    "Dry run of the restore of the videos of {}: nothing is changed.",
                    job.name
                );
                print_video_plan(&job.name, &p);
                if p.fetch.is_empty() {
                    println!("A real restore would fetch nothing.");
                } else {
                    println!(
                        "A real restore would fetch {} video(s) ({}) from the bucket, each checked by its SHA-256.",
                        p.fetch.len(),
                        size(p.bytes)
                    );
                }
                u8::from(!p.problems.is_empty())
            }
            Err(e) => {
                eprintln!("neopro-backup: refusing {}: {e}", archive_path.display());
                1
            }
        };
    }
    match videos::run(&job, file, LockWait::Try) {
        Ok(d) => print_video_done(&job.name, &d),
        Err(e) => {
            eprintln!("neopro-backup: restore of the videos failed: {e}");
            1
        }
    }
}

/// The outcome of a video restore; the exit code (0 every video on the Pi).
pub(super) fn print_video_done(name: &str, d: &videos::VideoDone) -> u8 {
    print_video_plan(name, &d.plan);
    for (rel, r) in &d.results {
        match r {
            Ok(n) => println!("  restored  {} ({})", videos::shown(rel), size(*n)),
            Err(e) => println!("  FAILED    {}: {e}", videos::shown(rel)),
        }
    }
    if d.ok() {
        println!(
            "Videos of {name} restored: {} fetched, {} already there.",
            d.restored(),
            d.plan.unchanged
        );
        0
    } else {
        println!(
            "Videos of {name} INCOMPLETE: {} fetched, {} failed, {} with a problem.",
            d.restored(),
            d.failed(),
            d.plan.problems.len()
        );
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    /// Both jobs start from the same opened archive: its name, the top folder its name
    /// promises (none for a file not named like an archive), a cancel flag not set.
    #[test]
    fn both_restore_jobs_start_from_the_same_archive() {
        let dir = std::env::temp_dir().join(format!("neopro-cli-restore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = std::fs::create_dir_all(dir.join("sub")) {
            panic!("{e}");
        }
        let named = dir.join("backup-20241218-030000.tar.gz");
        let other = dir.join("copy.tgz");
        for p in [&named, &other] {
            if let Err(e) = std::fs::write(p, b"x") {
                panic!("{e}");
            }
        }
        let Ok((start, _)) = Start::open(&named, false) else {
            panic!("cannot open {}", named.display());
        };
        assert_eq!(start.name, "backup-20241218-030000.tar.gz");
        assert_eq!(
            start.expected_top.as_deref(),
            Some("backup-20241218-030000")
        );
        assert!(!start.never.load(Ordering::SeqCst));
        let cfg = Config::defaults();
        let job = start.job(&cfg, vec!["site.conf"]);
        let videos = start.video_job(&cfg, Vec::new());
        for (name, top) in [
            (&job.name, &job.expected_top),
            (&videos.name, &videos.expected_top),
        ] {
            assert_eq!(name, "backup-20241218-030000.tar.gz");
            assert_eq!(top.as_deref(), Some("backup-20241218-030000"));
        }
        assert_eq!(job.files, ["site.conf"]);
        assert!(std::ptr::eq(job.cancel, videos.cancel) && std::ptr::eq(job.tz, videos.tz));
        let Ok((other, _)) = Start::open(&other, false) else {
            panic!("cannot open copy.tgz");
        };
        assert_eq!(
            (other.name.as_str(), other.expected_top),
            ("copy.tgz", None)
        );
        // Not there, or not a regular file: exit code 1, no job.
        assert!(matches!(
            Start::open(&dir.join("gone.tar.gz"), false),
            Err(1)
        ));
        assert!(matches!(Start::open(&dir.join("sub"), false), Err(1)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
