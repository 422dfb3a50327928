//! `recover`: the day the SD card died, over SSH. The work is in recover.rs (and
//! restore/ for the files and the videos); this file prints.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use super::restore::{print_done, print_dry, print_video_done, print_video_plan, size};
use crate::clock::Tz;
use crate::config::Config;
use crate::fsutil::LockWait;
use crate::offsite;
use crate::recover::{
    self, DryOutcome, Failure, FetchError, Outcome, Progress, Request, Source, VideosStep,
};
use crate::restore::Abort;

/// What the command line asked.
pub struct Args<'a> {
    pub archive: Option<String>,
    pub site: Option<String>,
    pub identity: Option<&'a Path>,
    pub dry_run: bool,
    pub no_videos: bool,
    pub from: Option<Source>,
}

/// `neopro-backup recover [ARCHIVE] [--site ID] [--identity FILE] [--dry-run]
/// [--no-videos]`. Exit code: 0 everything came back, 1 anything failed or nothing to
/// recover, 2 usage or configuration.
pub fn cli(cfg: &Config, a: &Args) -> u8 {
    let identities = match a.identity.map(crate::restore::identity::read) {
        None => Vec::new(),
        Some(Ok(ids)) => ids,
        Some(Err(e)) => {
            eprintln!("neopro-backup: {e}");
            return 2;
        }
    };
    let from = match Source::pick(cfg, a.from) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("neopro-backup: {e}");
            return 2;
        }
    };
    let tz = Tz::local();
    let never = AtomicBool::new(false);
    let progress = Progress::default();
    let req = Request {
        cfg,
        site: a.site.clone().unwrap_or_else(|| cfg.site_id.clone()),
        named: a.archive.clone(),
        identities,
        videos: !a.no_videos,
        tz: &tz,
        cancel: &never,
        progress: &progress,
        wait: LockWait::Block,
        from,
    };
    let (Some(b), Some(place)) = (offsite::store(cfg, from), from.place(cfg)) else {
        return 2; // Source::pick said it is configured
    };
    let b = b.as_ref();
    println!(
        "Site {} in {}",
        req.site,
        b.describe(&place.site_prefix(&req.site))
    );
    if a.dry_run {
        return match recover::dry_run(b, &req) {
            Ok(d) => print_dry_outcome(&req, &d),
            Err(f) => failure(&f),
        };
    }
    match recover::run(b, &req) {
        Ok(out) => print_outcome(cfg, &req, &out),
        Err(f) => failure(&f),
    }
}

fn print_skipped(skipped: &[(String, String)]) {
    for (name, why) in skipped {
        println!("  {name} is DAMAGED in the bucket ({why}): skipped, taking the one before");
    }
}

fn failure(f: &Failure) -> u8 {
    match f {
        Failure::Fetch { skipped, error } => {
            print_skipped(skipped);
            let what = match error {
                FetchError::Identity(_) => "nothing was written",
                _ => "nothing was restored",
            };
            eprintln!("neopro-backup: recover: {}; {what}", error.message());
            1
        }
        Failure::Config(m) => {
            eprintln!("neopro-backup: {m}");
            2
        }
        _ => {
            eprintln!("neopro-backup: recover: {}", f.message());
            1
        }
    }
}

fn print_dry_outcome(req: &Request, d: &DryOutcome) -> u8 {
    print_skipped(&d.skipped);
    println!(
        "A recovery would fetch {} ({}, {}) into {}.",
        d.archive.name,
        size(d.archive.size),
        d.archive.date(),
        req.cfg.backup_dir.display()
    );
    for f in &d.folders {
        println!("  would create the folder {}", f.display());
    }
    print_dry(d.archive.local_name(), &d.report, true);
    match &d.videos {
        VideosStep::NotAsked => println!("Videos: not asked (--no-videos)."),
        VideosStep::None(why) => println!("Videos: none to fetch ({why})."),
        VideosStep::Failed(e) => println!("Videos: cannot tell what would be fetched: {e}"),
        VideosStep::Done(p) => {
            print_video_plan(d.archive.local_name(), p);
            println!(
                "A recovery would fetch {} video(s) ({}) from the bucket, each checked by its SHA-256.",
                p.fetch.len(),
                size(p.bytes)
            );
        }
    }
    println!("Nothing was written (dry run).");
    u8::from(matches!(d.videos, VideosStep::Failed(_)))
}

fn print_outcome(cfg: &Config, req: &Request, out: &Outcome) -> u8 {
    print_skipped(&out.skipped);
    let name = out.archive.local_name();
    if out.fetched.downloaded {
        println!(
            "Fetched {} ({}) into {}: it verifies.",
            out.archive.name,
            size(out.fetched.bytes),
            out.fetched.path.display()
        );
    } else {
        println!(
            "{} is already in {} and verifies: not fetched again.",
            name,
            cfg.backup_dir.display()
        );
    }
    match &out.folders {
        Ok(made) => {
            for f in made {
                println!("  created the folder {}", f.display());
            }
        }
        Err(e) => println!("  FAILED to create a folder: {e}"),
    }
    match &out.restore {
        Ok(d) => print_done(name, d),
        Err(Abort::Refused(e)) | Err(Abort::Failed(e)) => {
            println!("Restore of {name} FAILED: {e}; no file was written");
        }
        Err(Abort::Busy) => {
            println!("Restore of {name} not done: a backup is running; run recover again");
        }
    }
    if let Some(Err(e)) = &out.history {
        println!(
            "FAILED to record the recovery in this Pi's offsite state ({e}): its copies stay \
             held; run recover again"
        );
    }
    match &out.videos {
        VideosStep::NotAsked => println!("Videos: not asked (--no-videos)."),
        VideosStep::None(why) => println!("Videos: none to fetch ({why})."),
        VideosStep::Failed(e) => println!("Videos: FAILED: {e}"),
        VideosStep::Done(d) => {
            print_video_done(name, d);
        }
    }
    if req.site != cfg.site_id {
        println!(
            "This Pi sends its copies as SITE_ID={}: to carry on the history of {}, set \
             SITE_ID={} in its backup.conf.",
            cfg.site_id, req.site, req.site
        );
    }
    if out.ok() {
        println!(
            "Recovery of {} from {name}: everything came back.",
            req.site
        );
    } else {
        println!(
            "Recovery of {} from {name} INCOMPLETE: what was written is complete; run \
             recover again to fetch the rest.",
            req.site
        );
    }
    u8::from(!out.ok())
}

/// `neopro-backup recover --new-start`: this Pi starts a new history under SITE_ID (its
/// offsite copies, held while the bucket holds another history of the site, go out
/// again; nothing in the bucket is removed by it). Exit 0 done, 1 failed, 2 no offsite.
pub fn new_start(cfg: &Config) -> u8 {
    if cfg.offsite.is_none() {
        eprintln!(
            "neopro-backup: recover --new-start concerns the offsite copies, and no offsite \
             target is configured (S3_ENDPOINT)"
        );
        return 2;
    }
    let tz = Tz::local();
    let log = crate::status::Log::new(&cfg.backup_dir, &tz);
    match offsite::history::new_start(cfg, &log) {
        Ok(()) => {
            println!(
                "New start: this Pi's copies go to the site {} from now on, beside its older \
                 backups there (kept; remote retention removes them as usual).",
                cfg.site_id
            );
            0
        }
        Err(e) => {
            eprintln!("neopro-backup: recover --new-start: {e}");
            1
        }
    }
}
