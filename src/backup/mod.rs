//! One backup: sources in, archive out, atomically.
//!
//! The flow, in `run`: lock BACKUP_DIR (one backup at a time) → remove crash leftovers →
//! pick a name no archive has → stream every source through tar and gzip into a temp
//! file (no staging copies) → fsync, rename, fsync the directory → retention → status.
//! A failure at any step removes the temp file, keeps every earlier archive, and is
//! recorded in the status and the log.

pub mod archive;
pub mod gzip;
pub mod sysinfo;
pub mod writer;

use std::io;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::alerts;
use crate::clock::{self, Tz};
use crate::config::Config;
use crate::fsutil::{self, LockWait};
use crate::offsite;
use crate::retention;
use crate::status::{self, Log, Status};
use crate::store;

pub use writer::{Sources, config_files, write_archive};

/// What a run produced: its status (success or failure) and its log lines.
pub struct Outcome {
    pub status: Status,
    pub log: Vec<String>,
}

/// The run could not start because another backup holds the lock (`LockWait::Try`).
#[derive(Debug)]
pub struct Busy;

/// Makes one backup now, applies retention, writes the status; then, with the lock
/// released, the alerts (docs/format.md, Offsite). The offsite copy is queued here and sent by the
/// caller (`offsite::after_run`, or the daemon's worker), never by the backup itself.
pub fn run(cfg: &Config, tz: &Tz, wait: LockWait, cancel: &AtomicBool) -> Result<Outcome, Busy> {
    let log = Log::new(&cfg.backup_dir, tz);
    let mut ping = None;
    let out = run_locked(cfg, tz, wait, cancel, &log, &mut ping)?;
    alerts::finish(cfg, &out.status, &log, ping);
    Ok(out)
}

fn run_locked(
    cfg: &Config,
    tz: &Tz,
    wait: LockWait,
    cancel: &AtomicBool,
    log: &Log,
    ping: &mut Option<alerts::StartPing>,
) -> Result<Outcome, Busy> {
    let started = Instant::now();
    let dir = &cfg.backup_dir;
    if let Err(e) = store::ensure_dir(dir) {
        // Nowhere to write the status: the error goes to stderr and the exit code.
        let msg = format!("cannot create BACKUP_DIR {}: {e}", dir.display());
        eprintln!("neopro-backup: {msg}");
        return Ok(Outcome {
            status: failed_status(tz, cfg, None, msg, Vec::new(), started),
            log: vec![],
        });
    }
    let _lock = match store::lock(dir, wait, || {
        log.info("another backup is running: waiting for it to finish")
    }) {
        Ok(Some(l)) => l,
        Ok(None) => return Err(Busy),
        Err(e) => {
            let msg = format!("cannot lock {}: {e}", dir.join(store::LOCK_FILE).display());
            log.error(&msg);
            return Ok(finish_failure(cfg, tz, log, msg, Vec::new(), started));
        }
    };
    *ping = alerts::start(cfg);
    match store::remove_leftovers(dir) {
        Ok(removed) => {
            for r in removed {
                log.warn(&format!("removed {r}, left by an interrupted run"));
            }
        }
        Err(e) => log.warn(&format!("cannot clean leftovers in {}: {e}", dir.display())),
    }
    log.info("backup started");
    let mut warnings = Vec::new();
    match write_archive(&Sources { cfg }, dir, tz, cancel, log, &mut warnings) {
        Ok(made) => {
            let count = apply_retention(cfg, tz, &made.name, log, &mut warnings);
            // The status is dated like the archive: when the run started.
            let ts = clock::iso_local(made.started, tz);
            let size = made.size;
            let st = Status {
                date: ts.get(..10).unwrap_or_default().to_string(),
                last_success: Some(ts.clone()),
                timestamp: ts,
                success: true,
                archive: Some(made.name.clone()),
                size: Some(crate::units::human_size(size, 1)),
                size_bytes: Some(size),
                backups_count: count,
                retention_days: cfg.retention_days,
                duration_ms: started.elapsed().as_millis() as u64,
                warnings,
                error: None,
                error_code: None,
                offsite: offsite::enqueue(cfg, &made.name, log),
                gdrive: offsite::gdrive::enqueue(cfg, &made.name, log),
            };
            log.info(&format!(
                "backup done: {} ({}, {} ms, {} archive(s) kept)",
                made.name,
                crate::units::human_size(size, 1),
                st.duration_ms,
                count
            ));
            if let Err(e) = status::write(dir, &st) {
                log.error(&format!("cannot write {}: {e}", store::STATUS_FILE));
            }
            Ok(Outcome {
                status: st,
                log: log.captured(),
            })
        }
        Err(msg) => {
            log.error(&format!("backup failed: {msg}"));
            Ok(finish_failure(cfg, tz, log, msg, warnings, started))
        }
    }
}

fn failed_status(
    tz: &Tz,
    cfg: &Config,
    previous: Option<Status>,
    error: String,
    warnings: Vec<String>,
    started: Instant,
) -> Status {
    let ts = clock::iso_local(clock::now_unix(), tz);
    let last_success = previous.and_then(|p| p.last_success_stamp().map(str::to_string));
    Status {
        date: ts.get(..10).unwrap_or_default().to_string(),
        timestamp: ts,
        success: false,
        archive: None,
        size: None,
        size_bytes: None,
        backups_count: store::list(&cfg.backup_dir).map_or(0, |l| l.len() as u64),
        retention_days: cfg.retention_days,
        duration_ms: started.elapsed().as_millis() as u64,
        warnings,
        error_code: Some(crate::error_words::code_of(&error).to_string()),
        error: Some(error),
        last_success,
        offsite: offsite::summary(cfg),
        gdrive: offsite::gdrive::summary(cfg),
    }
}

fn finish_failure(
    cfg: &Config,
    tz: &Tz,
    log: &Log,
    error: String,
    warnings: Vec<String>,
    started: Instant,
) -> Outcome {
    let previous = status::read(&cfg.backup_dir).ok().flatten();
    let st = failed_status(tz, cfg, previous, error, warnings, started);
    if let Err(e) = status::write(&cfg.backup_dir, &st) {
        log.error(&format!("cannot write {}: {e}", store::STATUS_FILE));
    }
    Outcome {
        status: st,
        log: log.captured(),
    }
}

/// Retention after a success (docs/format.md, Retention); returns how many valid
/// archives remain.
fn apply_retention(
    cfg: &Config,
    tz: &Tz,
    just_made: &str,
    log: &Log,
    warnings: &mut Vec<String>,
) -> u64 {
    let dir = &cfg.backup_dir;
    let list = match store::list(dir) {
        Ok(l) => l,
        Err(e) => {
            let w = format!("retention skipped: cannot list {}: {e}", dir.display());
            log.warn(&w);
            warnings.push(w);
            return 0;
        }
    };
    // Judged afresh (no memo): which files are archives at all decides what is kept.
    let candidates: Vec<retention::Candidate> = list
        .iter()
        .map(|a| retention::Candidate {
            name: a.name.clone(),
            naive: a.naive,
            valid: store::is_valid(&dir.join(&a.name)),
        })
        .collect();
    let valid = candidates.iter().filter(|c| c.valid).count() as u64;
    let now = tz.to_naive(clock::now_unix());
    let plan = retention::plan(&candidates, now, cfg.retention_days, Some(just_made));
    if let Some(newest) = &plan.clock_ahead_of {
        let w = format!(
            "retention skipped: the clock ({}) is more than {} h ahead of the newest earlier \
             archive {newest}; nothing was deleted (a clock that jumped forward must not \
             cost data; the next run deletes as usual)",
            clock::plain(now),
            retention::CLOCK_AHEAD_MAX / 3600
        );
        log.warn(&w);
        warnings.push(w);
    }
    let mut removed = 0u64;
    for name in &plan.delete {
        let was_valid = candidates.iter().any(|c| &c.name == name && c.valid);
        match std::fs::remove_file(dir.join(name)) {
            Ok(()) => {
                removed += u64::from(was_valid);
                log.info(&format!(
                    "retention: removed {name} ({}older than {} days)",
                    if was_valid { "" } else { "not an archive, " },
                    cfg.retention_days
                ));
            }
            Err(e) => {
                let w = format!("retention: cannot remove {name}: {e}");
                log.warn(&w);
                warnings.push(w);
            }
        }
    }
    // No fsync of the folder here: the status written next (atomic_write) syncs it.
    valid - removed
}

/// An error message that says what to do about a full disk.
pub fn describe_io(what: &str, e: &io::Error, dir: &Path) -> String {
    if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) {
        let free = fsutil::disk_use(dir).map_or("unknown".to_string(), |d| {
            crate::units::human_size(d.avail, 1)
        });
        format!(
            "{what}: no space left on the device holding {} ({free} free); earlier archives were kept — free some space or lower RETENTION_DAYS",
            dir.display()
        )
    } else {
        format!("{what}: {e}")
    }
}
