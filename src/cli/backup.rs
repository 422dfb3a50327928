//! `run`, `list`, `status` and `check`: the backup as the operator sees it over SSH.

use std::io;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use nanoserde::SerJson;

use crate::backup;
use crate::clock::{self, Tz};
use crate::config::Config;
use crate::fsutil;
use crate::offsite;
use crate::status::{self, Status};
use crate::store::{self, ArchiveEntry, entry};
use crate::units::human_size;

/// `run`: one backup now; exit 0 on success, 1 on failure.
pub fn run(cfg: &Config) -> ExitCode {
    let tz = Tz::local();
    let never = AtomicBool::new(false);
    let Ok(out) = backup::run(cfg, &tz, fsutil::LockWait::Block, &never) else {
        // Cannot happen with a blocking lock, but say so rather than panic.
        eprintln!("neopro-backup: another backup holds the lock");
        return ExitCode::from(1);
    };
    let st = &out.status;
    if st.success {
        println!(
            "Backup created: {} ({}, {} ms, {} archive(s) kept)",
            cfg.backup_dir
                .join(st.archive.as_deref().unwrap_or_default())
                .display(),
            st.size.as_deref().unwrap_or("?"),
            st.duration_ms,
            st.backups_count
        );
        for w in &st.warnings {
            println!("warning: {w}");
        }
        offsite::after_run(cfg, &tz); // the lock is released; never fails the run
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "neopro-backup: backup failed: {}",
            st.error.as_deref().unwrap_or("unknown error")
        );
        offsite::after_run(cfg, &tz); // sends the status (and older copies)
        ExitCode::from(1)
    }
}

/// `list [--json]`.
pub fn list(cfg: &Config, json: bool) -> ExitCode {
    let tz = Tz::local();
    match build(&cfg.backup_dir, clock::now_unix(), &tz) {
        Ok(l) if json => println!("{}", l.serialize_json()),
        Ok(l) => print!("{}", table(&l)),
        Err(e) => {
            eprintln!(
                "neopro-backup: cannot list {}: {e}",
                cfg.backup_dir.display()
            );
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

/// `status [--json]`.
pub fn status(cfg: &Config, json: bool) -> ExitCode {
    match status::read(&cfg.backup_dir) {
        Ok(st) if json => {
            println!("{}", st.map_or("null".to_string(), |s| s.to_json()));
        }
        Ok(None) => println!("no backup has run yet in {}", cfg.backup_dir.display()),
        Ok(Some(st)) => {
            println!("last run:      {}", st.timestamp);
            println!(
                "result:        {}",
                if st.success { "success" } else { "FAILED" }
            );
            // The error in French words first (docs/format.md, Error codes), then the
            // raw one.
            if let Some(e) = &st.error {
                match crate::error_words::words_for(st.error_code.as_deref(), e) {
                    Some(w) => {
                        println!("error:         {w}");
                        println!("detail:        {e}");
                    }
                    None => println!("error:         {e}"),
                }
            }
            if let Some(a) = &st.archive {
                println!("archive:       {a} ({})", st.size.as_deref().unwrap_or("?"));
            }
            if let Some(ls) = &st.last_success {
                println!("last success:  {ls}");
            }
            println!(
                "archives kept: {} (retention {} days)",
                st.backups_count, st.retention_days
            );
            println!("duration:      {} ms", st.duration_ms);
            for w in &st.warnings {
                println!("warning:       {w}");
            }
            let success = st
                .last_success_stamp()
                .and_then(|s| Some((s, clock::parse_iso(s)?)));
            let newest = store::newest(&cfg.backup_dir);
            if let Some(w) = crate::schedule::clock_warning(
                clock::now_unix(),
                &Tz::local(),
                newest.as_ref().map(|(n, t)| (n.as_str(), *t)),
                success,
            ) {
                println!("clock:         WARNING: {}", w.english());
            }
        }
        Err(e) => {
            eprintln!("neopro-backup: {e}");
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

/// One line for a Nagios plugin's stdout: control characters (newlines, escapes) of
/// file names or error messages written `\n`, `\xHH` (and `\` as `\\`), so that a
/// hostile name can never start a line of its own, such as a forged `OK:`.
pub fn one_line(s: &str) -> String {
    crate::videos::inventory::shown(s)
}

/// `check [--max-age-hours N]`: a Nagios plugin, exactly one line, exit 0 or 2 (3 for a
/// usage or configuration error, see `cli::main`).
pub fn check(cfg: &Config, max_age_hours: u32) -> ExitCode {
    let st = match status::read(&cfg.backup_dir) {
        Ok(st) => st,
        Err(e) => {
            println!(
                "{}",
                one_line(&format!("CRITICAL: cannot read the status: {e}"))
            );
            return ExitCode::from(2);
        }
    };
    let (ok, line) = status::check(st.as_ref(), clock::now_unix(), max_age_hours);
    println!("{}", one_line(&line));
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

#[derive(SerJson)]
#[nserde(serialize_none_as_null)]
pub struct List {
    pub backups: Vec<ArchiveEntry>,
    pub status: Option<Status>,
    pub total: u64,
    #[nserde(rename = "totalSize")]
    pub total_size: u64,
}

/// The list of BACKUP_DIR, newest first, with the last status (null when unreadable).
pub fn build(dir: &Path, now: i64, tz: &Tz) -> io::Result<List> {
    let archives = store::list(dir)?;
    let naive_now = tz.to_naive(now);
    Ok(List {
        total: archives.len() as u64,
        total_size: archives.iter().map(|a| a.size).sum(),
        backups: archives
            .iter()
            .zip(store::formats(dir, &archives))
            .map(|(a, f)| entry(a, f, naive_now, tz))
            .collect(),
        status: status::read(dir).ok().flatten(),
    })
}

/// The table printed by `list`.
pub fn table(list: &List) -> String {
    if list.backups.is_empty() {
        return "no backups\n".to_string();
    }
    let mut s = format!("{:<31} {:>10}  {:<19}  {}\n", "NAME", "SIZE", "DATE", "AGE");
    for b in &list.backups {
        let note = match b.format.as_deref().unwrap_or("current") {
            "old" => "  (old format, no manifest)",
            "unknown" => "  (not a known archive layout)",
            "invalid" => "  (NOT AN ARCHIVE: empty or not gzip)",
            _ => "",
        };
        s.push_str(&format!(
            "{:<31} {:>10}  {:<19}  {}{note}\n",
            b.name, b.size, b.date, b.age
        ));
    }
    s.push_str(&format!(
        "{} backup(s), {}\n",
        list.total,
        human_size(list.total_size, 2)
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cached_list_is_the_same_json_as_list_json() {
        let dir = std::env::temp_dir().join(format!("neopro-http-list-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        for n in [
            "backup-20241218-030000.tar.gz",
            "backup-20241217-030000.tar.gz",
        ] {
            std::fs::write(dir.join(n), b"x".repeat(1500)).unwrap_or_else(|e| panic!("{e}"));
        }
        let _ =
            std::os::unix::fs::symlink("/etc/passwd", dir.join("backup-20241216-030000.tar.gz"));
        let tz = clock::Tz::utc();
        for _ in 0..2 {
            let l = store::cached_backups(&dir, &tz).unwrap_or_else(|e| panic!("{e}"));
            let ours = format!(
                "{{\"backups\":{},\"status\":null,\"total\":{},\"totalSize\":{}}}",
                String::from_utf8_lossy(&l.backups_json),
                l.total,
                l.total_size
            );
            let reference = build(&dir, clock::now_unix(), &tz)
                .unwrap_or_else(|e| panic!("{e}"))
                .serialize_json();
            assert_eq!(ours, reference);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
