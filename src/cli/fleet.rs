//! `fleet [--json]`: every site's last status, read from the S3 bucket; `fleet serve`:
//! the central dashboard (serve/fleet.rs); `fleet gc`: the operator's garbage collection
//! of video objects (offsite/gc.rs); `fleet drill`: the operator's restore drills
//! (drill.rs).

use std::net::SocketAddr;
use std::process::ExitCode;

use nanoserde::SerJson;

use crate::cli::args::Usage;
use crate::clock;
use crate::config::Config;
use crate::drill::{self, SiteDrill};
use crate::offsite::fleet::{self, Fleet};
use crate::offsite::gc;
use crate::units::human_size;

const NO_S3: &str =
    "fleet reads the S3 bucket: set S3_ENDPOINT, S3_BUCKET, S3_ACCESS_KEY and S3_SECRET_KEY";

/// `fleet`: needs the offsite keys; exit 1 when the bucket cannot be read, or a site's
/// status cannot (its row says why).
pub fn fleet(cfg: &Config, json: bool) -> Result<ExitCode, Usage> {
    let Some(o) = &cfg.offsite else {
        return Err(Usage(NO_S3.into()));
    };
    let f = match crate::offsite::fleet_read::build(o, clock::now_unix(), cfg.fleet_drill_max_days)
    {
        Ok((f, _)) => f,
        Err(e) => {
            eprintln!("neopro-backup: fleet: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    if json {
        println!("{}", f.serialize_json());
    } else {
        print!("{}", table(&f));
    }
    if f.unreadable > 0 {
        eprintln!(
            "neopro-backup: fleet: the status of {} site(s) could not be read",
            f.unreadable
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `fleet serve`: the offsite keys (read-only ones are enough), and API_TOKEN unless
/// `listen` is a loopback address.
pub fn serve(cfg: Config, listen: SocketAddr) -> Result<ExitCode, Usage> {
    if cfg.offsite.is_none() {
        return Err(Usage(NO_S3.into()));
    }
    if !listen.ip().is_loopback() && cfg.api_token.is_none() {
        return Err(Usage(format!(
            "--listen {listen} is not a loopback address: set API_TOKEN (at least 16 characters) \
             so that the dashboard is not open to the network"
        )));
    }
    Ok(ExitCode::from(crate::serve::fleet::serve(cfg, listen)))
}

/// `fleet gc [--apply]`: the video objects no site references any more and older than
/// S3_RETENTION_DAYS; removed with `--apply` only. Exit 1 when the bucket cannot be
/// read or a removal failed.
pub fn fleet_gc(cfg: &Config, apply: bool) -> Result<ExitCode, Usage> {
    let Some(o) = &cfg.offsite else {
        return Err(Usage(
            "fleet gc works on the S3 bucket: set S3_ENDPOINT, S3_BUCKET, S3_ACCESS_KEY and S3_SECRET_KEY (the operator's keys)".into(),
        ));
    };
    let bucket = crate::offsite::bucket(o);
    let plan = match gc::plan(&bucket, o, clock::now_unix()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("neopro-backup: fleet gc: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    print!("{}", gc_summary(&plan));
    if !apply {
        for j in &plan.doomed {
            println!("{}", object_line("would remove", j));
        }
        println!(
            "Dry run: nothing was removed. `neopro-backup fleet gc --apply` removes the {} object(s) above.",
            plan.doomed.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let done = match gc::apply(&bucket, o, &plan) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("neopro-backup: fleet gc: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    for j in &done.removed {
        println!("{}", object_line("removed", j));
    }
    if done.spared > 0 {
        println!(
            "{} object(s) spared: a site started to reference them during the collection.",
            done.spared
        );
    }
    for (site, n) in &done.notices {
        println!(
            "{n} object(s) removed while {site} started to name them: it was told to send them again."
        );
    }
    for e in &done.errors {
        eprintln!("neopro-backup: fleet gc: {e}");
    }
    let bytes: u64 = done.removed.iter().map(|j| j.size).sum();
    println!(
        "Removed {} object(s), {}.",
        done.removed.len(),
        human_size(bytes, 1)
    );
    Ok(if done.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `fleet drill [--identity FILE] [--site ID] [--deep]`: one line per site as its drill
/// ends, then a summary. Exit 0 when every site's drill passed (and was recorded), 1
/// when one did not or the bucket could not be read, 2 on a usage or configuration
/// error (no S3 keys, an identity file that cannot be read).
pub fn fleet_drill(
    cfg: &Config,
    identity: Option<&std::path::Path>,
    site: Option<String>,
    deep: bool,
) -> Result<ExitCode, Usage> {
    let Some(o) = &cfg.offsite else {
        return Err(Usage(
            "fleet drill reads the S3 bucket: set S3_ENDPOINT, S3_BUCKET, S3_ACCESS_KEY and S3_SECRET_KEY (the operator's keys)".into(),
        ));
    };
    let identities = match identity {
        None => Vec::new(),
        Some(p) => crate::restore::identity::read(p).map_err(Usage)?,
    };
    let bucket = crate::offsite::bucket(o);
    let req = drill::Request {
        site,
        identities: &identities,
        deep,
    };
    let done = drill::run(&bucket, o, &req, &mut |d| println!("{}", drill_line(d)));
    let done = match done {
        Ok(d) => d,
        Err(e) => {
            eprintln!("neopro-backup: fleet drill: {}", e.message());
            return Ok(ExitCode::from(1));
        }
    };
    println!("{}", drill_summary(&done));
    Ok(if done.iter().all(SiteDrill::ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `club-a  ok      backup-….tar.gz  12.3 MB read, 2 video(s) at their size`, or
/// `club-b  FAILED  (no identity) no identity for this site: …`.
pub fn drill_line(d: &SiteDrill) -> String {
    let mut line = match &d.failure {
        None => {
            let name = d.archive.as_ref().map_or("-", |r| r.name.as_str());
            let mut l = format!(
                "{}  ok      {name}  {} read",
                d.site,
                human_size(d.bytes, 1)
            );
            if d.old_format {
                l.push_str(", old format (no manifest: gzip and tar checked)");
            }
            match &d.videos {
                Some(v) if v.deep => {
                    l.push_str(&format!(", {} video(s) in the bucket, hashed", v.checked))
                }
                Some(v) => l.push_str(&format!(
                    ", {} video(s) in the bucket at their size",
                    v.checked
                )),
                None => {}
            }
            l
        }
        Some((kind, why)) => format!("{}  FAILED  ({}) {why}", d.site, kind.as_str()),
    };
    if let Err(e) = &d.recorded {
        line.push_str(&format!(" [drill.json: {e}]"));
    }
    crate::cli::backup::one_line(&line)
}

/// `3 site(s) drilled: 1 ok, 2 failed (1 store failure)`.
pub fn drill_summary(done: &[SiteDrill]) -> String {
    let ok = done.iter().filter(|d| d.ok()).count();
    let store = done
        .iter()
        .filter(|d| matches!(d.failure, Some((drill::Kind::Store, _))))
        .count();
    let unrecorded = done.iter().filter(|d| d.recorded.is_err()).count();
    let mut out = format!(
        "{} site(s) drilled: {ok} ok, {} failed",
        done.len(),
        done.len().saturating_sub(ok)
    );
    if store > 0 {
        out.push_str(&format!(
            " ({store} store failure(s): the bucket could not be read, no verdict on those copies)"
        ));
    }
    if unrecorded > 0 {
        out.push_str(&format!(", {unrecorded} drill.json not written"));
    }
    out
}

/// `  removed  KEY  (SIZE, N days old)`.
fn object_line(what: &str, j: &gc::Judged) -> String {
    format!(
        "  {what}  {}  ({}, {})",
        j.key,
        human_size(j.size, 1),
        days(j)
    )
}

fn days(j: &gc::Judged) -> String {
    j.age_secs.map_or("age unknown".into(), |a| {
        format!("{} days old", a.div_euclid(86_400))
    })
}

pub fn gc_summary(p: &gc::GcPlan) -> String {
    let mut out = format!("{} site(s) publish their video references:", p.sites.len());
    if p.sites.is_empty() {
        out.push_str(" none");
    }
    out.push('\n');
    for (site, n) in &p.sites {
        out.push_str(&format!("  {site}: {n} video(s)\n"));
    }
    let doomed: u64 = p.doomed.iter().map(|j| j.size).sum();
    out.push_str(&format!(
        "{} video object(s), {}: {} referenced, {} unreferenced but not older than {} days (kept), {} to remove ({})\n",
        p.objects,
        human_size(p.bytes, 1),
        p.referenced,
        p.young,
        p.retention_days,
        p.doomed.len(),
        human_size(doomed, 1)
    ));
    if !p.foreign.is_empty() {
        out.push_str(&format!(
            "{} other object(s) under videos/ left alone (not video objects)\n",
            p.foreign.len()
        ));
    }
    out
}

/// The DRILL column: `ok (2.0 d)`, `FAILED (1.0 d)`, `OLD (12.0 d)`, `never`,
/// `UNREADABLE`.
fn drill_cell(d: &fleet::Drill) -> String {
    let age = d.age_days.map_or(String::new(), |a| format!(" ({a:.1} d)"));
    match d.state.as_str() {
        "ok" => format!("ok{age}"),
        "failed" => format!("FAILED{age}"),
        "old" => format!("OLD{age}"),
        "unreadable" => "UNREADABLE".into(),
        _ => "never".into(),
    }
}

pub fn table(f: &Fleet) -> String {
    let mut rows = vec![[
        "SITE".to_string(),
        "LAST SUCCESS".to_string(),
        "AGE".to_string(),
        "SIZE".to_string(),
        "PENDING".to_string(),
        "DRILL".to_string(),
        "STATE".to_string(),
    ]];
    for s in &f.sites {
        let stale = if s.last_success.is_none() {
            "STALE (never)".to_string()
        } else {
            format!("STALE (> {} h)", fleet::STALE_HOURS)
        };
        let mut state = match (s.last_run_success == Some(false), s.stale) {
            (true, true) => format!("last run FAILED, {stale}"),
            (true, false) => "last run FAILED".to_string(),
            (false, true) => stale,
            (false, false) => "ok".to_string(),
        };
        if s.claimed_twice {
            state.push_str(", CLAIMED TWICE (two installs send as this site)");
        }
        rows.push([
            s.site.clone(),
            s.last_success.clone().unwrap_or_else(|| "-".into()),
            s.age_hours.map_or("-".into(), |h| format!("{h:.1} h")),
            s.size.clone().unwrap_or_else(|| "-".into()),
            s.pending.to_string(),
            drill_cell(&s.drill),
            state,
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!("{} site(s), {} stale", f.sites.len(), f.stale));
    if f.drill_flagged > 0 {
        out.push_str(&format!(
            ", {} restore drill(s) to look at (failed, never, or over {} days old)",
            f.drill_flagged,
            f.sites
                .first()
                .map_or(fleet::DRILL_MAX_DAYS, |s| s.drill.max_days)
        ));
    }
    let twice = f.sites.iter().filter(|s| s.claimed_twice).count();
    if twice > 0 {
        out.push_str(&format!(
            ", {twice} claimed twice (give each Pi its own SITE_ID)"
        ));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;

    #[test]
    fn the_table_marks_failed_and_never_seen_sites() {
        let t = "2024-12-18T03:00:00+01:00";
        let now = clock::parse_iso(t).unwrap_or_default();
        let failed = Status {
            timestamp: t.into(),
            success: false,
            error: Some("disk full".into()),
            last_success: Some(t.into()),
            ..Status::default()
        };
        let twice = Status {
            success: true,
            offsite: Some(crate::status::Offsite {
                install: Some("a".repeat(32)),
                other_install: Some("b".repeat(32)),
                ..Default::default()
            }),
            ..failed.clone()
        };
        let f = Fleet {
            sites: vec![
                fleet::site_row("b", Some(&failed), now + 3600),
                fleet::site_row("c", None, now),
                fleet::site_row("d", Some(&twice), now + 3600),
            ],
            stale: 1,
            failed: 1,
            unreadable: 0,
            drill_flagged: 3,
        };
        let text = table(&f);
        assert!(text.contains("last run FAILED"), "{text}");
        assert!(text.contains("STALE (never)"), "{text}");
        assert!(text.starts_with("SITE"), "{text}");
        let d = text
            .lines()
            .find(|l| l.starts_with("d "))
            .unwrap_or_default();
        assert!(
            d.ends_with("ok, CLAIMED TWICE (two installs send as this site)"),
            "{text}"
        );
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("b ") && l.contains("CLAIMED")),
            "{text}"
        );
        assert!(
            text.ends_with(
                "3 site(s), 1 stale, 3 restore drill(s) to look at (failed, never, or over 8 days old), \
                 1 claimed twice (give each Pi its own SITE_ID)\n"
            ),
            "{text}"
        );
        assert!(
            text.lines().nth(1).is_some_and(|l| l.contains("  never  ")),
            "{text}"
        );
    }
}
