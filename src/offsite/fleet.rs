//! The fleet: every site's state, read from the bucket (docs/format.md, Fleet), for
//! `neopro-backup fleet` and the central dashboard (`fleet serve`).
//!
//! One pass over the bucket, whatever the number of sites: one paginated ListObjectsV2
//! of the whole `S3_PREFIX/` (1,000 keys a page), folded per site (`Tally`: the archive
//! copies are counted and summed, their keys dropped), then one GET per site of its
//! `last-backup-status.json`, and of its `drill.json` when the listing shows one (the
//! last restore drill, drill.rs), eight at a time. A status or drill object over 64 KiB
//! is not read (a real one is under 2 KiB), so a site cannot make the reader hold much.
//! The listing is folded page by page (`Bucket::list_each`): keys are never all held.
//!
//! A site is a folder directly under the prefix with at least one object of its own
//! (`S3_PREFIX/<site>/<object>`); deeper keys (such as the shared
//! `S3_PREFIX/videos/sha256/…`) make no site. Its state, worst first: `failed` (its
//! last run failed), `stale` (last success over 25 hours old, unknown, or in the
//! future by more than an hour), `pending` (copies it had not sent yet when it sent its
//! status), `ok`. Its last restore drill is beside it (`drill`): flagged when it failed,
//! is older than FLEET_DRILL_MAX_DAYS, or never happened; the state is the backups'
//! alone.

use std::collections::BTreeMap;
use std::time::Duration;

use nanoserde::SerJson;

use crate::clock;
use crate::offsite;
use crate::offsite::drill_record::{self as drill, VideoCounts};
use crate::offsite::history::is_copy_name;
use crate::status::Status;

/// A site is stale past this age of its last success.
pub const STALE_HOURS: i64 = 25;
/// Status objects bigger than this are not read.
pub const MAX_STATUS_BYTES: u64 = 64 * 1024;

/// The states, worst first.
pub const STATES: [&str; 4] = ["failed", "stale", "pending", "ok"];
/// FLEET_DRILL_MAX_DAYS's default.
pub const DRILL_MAX_DAYS: u32 = 8;

/// A site's last restore drill, as the fleet shows it (from its drill.json).
#[derive(Debug, Clone, SerJson, PartialEq)]
#[nserde(serialize_none_as_null)]
pub struct Drill {
    /// `ok`, `failed`, `old` (passed, but more than `max_days` ago), `never` (no
    /// drill.json) or `unreadable` (its drill.json cannot be read: `error` says why).
    pub state: String,
    /// When it ran (ISO 8601 UTC), and in Unix seconds.
    pub when: Option<String>,
    pub when_unix: Option<i64>,
    /// Days since then (one decimal), by this machine's clock.
    pub age_days: Option<f64>,
    /// The copy it drilled.
    pub archive: Option<String>,
    pub ok: Option<bool>,
    pub error: Option<String>,
    pub videos: Option<VideoCounts>,
    /// FLEET_DRILL_MAX_DAYS.
    pub max_days: u32,
    /// Worth a look: the drill failed, is older than `max_days`, never ran or cannot
    /// be read.
    pub flagged: bool,
}

impl Drill {
    /// From a site's drill.json: read (`Ok(Some)`), absent (`Ok(None)`) or unreadable
    /// (pure: `now` is a parameter).
    pub fn of(got: Result<Option<drill::Record>, String>, now: i64, max_days: u32) -> Drill {
        let mut d = Drill {
            state: "never".into(),
            when: None,
            when_unix: None,
            age_days: None,
            archive: None,
            ok: None,
            error: None,
            videos: None,
            max_days,
            flagged: true,
        };
        match got {
            Ok(None) => {}
            Err(e) => {
                d.state = "unreadable".into();
                d.error = Some(e);
            }
            Ok(Some(r)) => {
                d.when_unix = clock::parse_iso(&r.when);
                let age = d.when_unix.map(|t| now - t);
                d.age_days = age.map(|a| (a as f64 / 8640.0).round() / 10.0);
                let old = age.is_none_or(|a| a > i64::from(max_days) * 86_400);
                d.state = match (r.ok, old) {
                    (false, _) => "failed",
                    (true, true) => "old",
                    (true, false) => "ok",
                }
                .into();
                d.flagged = d.state != "ok";
                d.when = Some(r.when);
                d.archive = r.archive;
                d.ok = Some(r.ok);
                d.error = r.error;
                d.videos = r.videos;
            }
        }
        d
    }
}

#[derive(Debug, Clone, SerJson, PartialEq)]
#[nserde(serialize_none_as_null)]
pub struct Site {
    pub site: String,
    /// `failed`, `stale`, `pending` or `ok` (see the module's doc).
    pub state: String,
    /// Timestamp of the last successful backup, as the site wrote it.
    pub last_success: Option<String>,
    /// The same in Unix seconds.
    pub last_success_unix: Option<i64>,
    /// Hours since then (one decimal), by this machine's clock.
    pub age_hours: Option<f64>,
    /// Size of the site's last archive (from its status, else its newest copy).
    pub size: Option<String>,
    pub size_bytes: Option<u64>,
    /// Copies the site had not sent when it sent its status.
    pub pending: u64,
    /// Shared video objects the site found poisoned (routed around with its own copy).
    pub poisoned: u64,
    /// Whether the site's last run succeeded (null: no readable status).
    pub last_run_success: Option<bool>,
    pub error: Option<String>,
    /// The code of `error` (docs/format.md, Error codes): the status's own, else
    /// `code_of(error)`; `no_status` and `status_unreadable` for the rows without one.
    pub error_code: Option<String>,
    /// The French words of `error_code`; null when this version does not know the code
    /// (a newer Pi's): the page then shows `error` alone.
    pub error_words: Option<String>,
    /// Last success over 25 h ago, unknown, or in the future.
    pub stale: bool,
    /// Archive copies in the bucket (`backup-….tar.gz`, `.tar.gz.age`) and their bytes.
    pub archives: u64,
    pub archives_bytes: u64,
    /// The newest copy's name.
    pub newest_archive: Option<String>,
    /// The install that wrote the status (its id; null for an older version's status).
    pub install: Option<String>,
    /// Another install the site's status says also sends backups under its SITE_ID.
    pub other_install: Option<String>,
    /// "claimed twice": two installs send backups under this SITE_ID (the status names
    /// another install than its own).
    pub claimed_twice: bool,
    /// The last restore drill (`fleet drill`).
    pub drill: Drill,
    /// The last 30 nights, oldest first, today last (by this machine's UTC date): `1`
    /// an archive copy that night, `0` none, `.` today before its copy, `-` before the
    /// site's oldest copy (docs/format.md, Fleet).
    pub nights: String,
    /// Why the site's folder could not be listed at the last read (its archive figures
    /// are then the previous read's).
    pub listing_error: Option<String>,
}

#[derive(Debug, SerJson)]
pub struct Fleet {
    /// By site name.
    pub sites: Vec<Site>,
    pub stale: u64,
    pub failed: u64,
    /// Sites whose status object could not be read (their row says why).
    pub unreadable: u64,
    /// Sites whose last restore drill is flagged (failed, old, never, unreadable).
    pub drill_flagged: u64,
}

/// What one read of the bucket cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    /// Objects of the whole listing (a first read), else 0.
    pub objects: u64,
    /// Requests by kind (`bucket::counted::KINDS`).
    pub requests: [u64; 6],
    /// Status answers (a 304 included) and drill records read.
    pub status_gets: u64,
    /// drill.json objects read.
    pub drill_gets: u64,
    /// Time spent listing, then reading the statuses.
    pub listing: Duration,
    pub statuses: Duration,
}

/// One row from a site's status (pure: `now` is a parameter). The listing's figures
/// (archives, bytes, newest) are filled in by the caller.
pub fn site_row(site: &str, status: Option<&Status>, now: i64) -> Site {
    let mut row = Site {
        site: site.to_string(),
        state: String::new(),
        last_success: None,
        last_success_unix: None,
        age_hours: None,
        size: None,
        size_bytes: None,
        pending: 0,
        poisoned: 0,
        last_run_success: None,
        error: None,
        error_code: None,
        error_words: None,
        stale: true,
        archives: 0,
        archives_bytes: 0,
        newest_archive: None,
        install: None,
        other_install: None,
        claimed_twice: false,
        drill: Drill::of(Ok(None), now, DRILL_MAX_DAYS),
        nights: String::new(),
        listing_error: None,
    };
    match status {
        None => {
            row.error = Some("no status in the bucket".into());
            (row.error_code, row.error_words) = crate::error_words::coded("no_status");
        }
        Some(st) => {
            row.last_success = st.last_success_stamp().map(str::to_string);
            row.last_success_unix = row.last_success.as_deref().and_then(clock::parse_iso);
            let age = row.last_success_unix.map(|t| now - t);
            row.age_hours = age.map(|a| (a as f64 / 360.0).round() / 10.0);
            row.stale = age.is_none_or(|a| !(-3600..=STALE_HOURS * 3600).contains(&a));
            row.size = st.size.clone();
            row.size_bytes = st.size_bytes;
            row.pending = st.offsite.as_ref().map_or(0, |o| o.pending);
            row.poisoned = st.offsite.as_ref().map_or(0, |o| o.poisoned);
            row.install = st.offsite.as_ref().and_then(|o| o.install.clone());
            row.other_install = st.offsite.as_ref().and_then(|o| o.other_install.clone());
            row.claimed_twice = row
                .other_install
                .as_ref()
                .is_some_and(|o| row.install.as_ref() != Some(o));
            row.last_run_success = Some(st.success);
            // The run's error, else the offsite one, with its code.
            let (error, code) = match (&st.error, &st.offsite) {
                (Some(e), _) => (Some(e), st.error_code.as_deref()),
                (None, Some(o)) => (o.error.as_ref(), o.error_code.as_deref()),
                (None, None) => (None, None),
            };
            if let Some(e) = error {
                let code = code.unwrap_or_else(|| crate::error_words::code_of(e));
                row.error = Some(e.clone());
                row.error_code = Some(code.to_string());
                row.error_words = crate::error_words::words(code).map(str::to_string);
            }
        }
    }
    row.state = state_of(&row).to_string();
    row
}

fn state_of(s: &Site) -> &'static str {
    if s.last_run_success == Some(false) {
        "failed"
    } else if s.stale {
        "stale"
    } else if s.pending > 0 {
        "pending"
    } else {
        "ok"
    }
}

fn rank(state: &str) -> usize {
    STATES.iter().position(|s| *s == state).unwrap_or(0)
}

/// Worst first: by state (failed, stale, pending, ok), then the oldest last success
/// (none first), then the name.
pub fn worst_first(sites: &mut [Site]) {
    sites.sort_by(|a, b| {
        (
            rank(&a.state),
            a.last_success_unix.unwrap_or(i64::MIN),
            &a.site,
        )
            .cmp(&(
                rank(&b.state),
                b.last_success_unix.unwrap_or(i64::MIN),
                &b.site,
            ))
    });
}

/// Nights shown in a site's strip.
pub const NIGHTS: i64 = 30;

/// What the listing says of one site.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SiteListing {
    pub archives: u64,
    pub bytes: u64,
    /// The newest copy: name and size.
    pub newest: Option<(String, u64)>,
    /// The size of `last-backup-status.json`, when there is one, and its ETag.
    pub status_size: Option<u64>,
    pub status_tag: Option<String>,
    /// The size of `drill.json`, when there is one, and its ETag.
    pub drill_size: Option<u64>,
    pub drill_tag: Option<String>,
    /// The nights with a copy: bit `i` of `night_bits` is the day `last_night - i`
    /// (days since 1970-01-01, from the copies' names).
    pub last_night: i64,
    pub night_bits: u64,
    /// The oldest copy's day (nights before it are not gaps: retention removed their
    /// copies, or the site did not exist yet).
    pub first_night: Option<i64>,
    /// Why the folder could not be listed (the figures are an earlier listing's).
    pub error: Option<String>,
}

impl SiteListing {
    /// Records a copy made on `day` (days since 1970-01-01), in any order.
    fn night(&mut self, day: i64) {
        self.first_night = Some(self.first_night.map_or(day, |f| f.min(day)));
        if self.night_bits == 0 || day > self.last_night {
            let shift = day.saturating_sub(self.last_night);
            self.night_bits = if self.night_bits == 0 || shift >= 64 {
                0
            } else {
                self.night_bits << shift
            };
            self.last_night = day;
        }
        if let Some(back) = self
            .last_night
            .checked_sub(day)
            .filter(|b| (0..64).contains(b))
        {
            self.night_bits |= 1 << back;
        }
    }

    /// The strip of the last `NIGHTS` nights (see `Site::nights`), `now` in Unix time.
    pub fn nights(&self, now: i64) -> String {
        let today = now.div_euclid(86_400);
        (0..NIGHTS)
            .map(|i| {
                let day = today - (NIGHTS - 1) + i;
                let back = self.last_night - day;
                if self.night_bits != 0
                    && (0..64).contains(&back)
                    && self.night_bits & (1 << back) != 0
                {
                    '1'
                } else if day == today {
                    '.'
                } else if self.first_night.is_some_and(|f| day < f) {
                    '-'
                } else {
                    '0'
                }
            })
            .collect()
    }
}

/// The listing folded per site while it is read: keys are never kept.
pub struct Tally {
    root: String,
    pub sites: BTreeMap<String, SiteListing>,
    pub objects: u64,
}

impl Tally {
    /// `root`: the prefix with its trailing `/` (empty for the whole bucket).
    pub fn new(root: &str) -> Tally {
        Tally {
            root: root.to_string(),
            sites: BTreeMap::new(),
            objects: 0,
        }
    }

    pub fn add(&mut self, key: &str, size: u64, etag: &str) {
        self.objects += 1;
        let Some(rest) = key.strip_prefix(&self.root) else {
            return;
        };
        let Some((site, name)) = rest.split_once('/') else {
            return;
        };
        // S3_PREFIX/videos/ holds the shared videos (Videos offsite), not a site.
        if site.is_empty()
            || name.is_empty()
            || name.contains('/')
            || crate::config::reserved_site_id(site).is_some()
        {
            return;
        }
        // Keys come sorted, so the site is nearly always the last one seen; look it up
        // without allocating.
        let entry = match self.sites.get_mut(site) {
            Some(e) => e,
            None => self.sites.entry(site.to_string()).or_default(),
        };
        if name == offsite::STATUS_OBJECT {
            entry.status_size = Some(size);
            entry.status_tag = Some(etag.to_string());
        } else if name == drill::DRILL_OBJECT {
            entry.drill_size = Some(size);
            entry.drill_tag = Some(etag.to_string());
        } else if is_copy_name(name) {
            entry.archives += 1;
            entry.bytes = entry.bytes.saturating_add(size);
            if let Some(naive) = crate::store::name_time(name.strip_suffix(".age").unwrap_or(name))
            {
                entry.night(naive.div_euclid(86_400));
            }
            if entry.newest.as_ref().is_none_or(|(n, _)| name > n.as_str()) {
                entry.newest = Some((name.to_string(), size));
            }
        }
    }
}

/// A site's status object: parsed, absent (`Ok(None)`), or why it cannot be read.
#[cfg(test)]
type Fetched = Result<Option<Status>, String>;

/// The rows from a folded listing and the statuses (pure).
pub fn rows<'a>(
    listed: impl Iterator<
        Item = (
            &'a str,
            &'a SiteListing,
            Result<Option<&'a Status>, &'a str>,
        ),
    >,
    now: i64,
) -> Fleet {
    let mut sites = Vec::with_capacity(listed.size_hint().0);
    let mut unreadable = 0;
    for (name, l, got) in listed {
        let mut row = match got {
            Ok(st) => site_row(name, st, now),
            Err(e) => {
                unreadable += 1;
                let mut r = site_row(name, None, now);
                r.error = Some(format!("status unreadable: {e}"));
                (r.error_code, r.error_words) = crate::error_words::coded("status_unreadable");
                r
            }
        };
        row.archives = l.archives;
        row.archives_bytes = l.bytes;
        if let Some((newest, size)) = &l.newest {
            if row.size_bytes.is_none() {
                // Copies without a status: say at least how big the newest one is.
                row.size = Some(crate::units::human_size(*size, 1));
                row.size_bytes = Some(*size);
            }
            row.newest_archive = Some(newest.clone());
        }
        sites.push(row);
    }
    let count = |st: &str| sites.iter().filter(|s| s.state == st).count() as u64;
    Fleet {
        stale: sites.iter().filter(|s| s.stale).count() as u64,
        failed: count("failed"),
        unreadable,
        drill_flagged: sites.iter().filter(|s| s.drill.flagged).count() as u64,
        sites,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status;

    const T: &str = "2024-12-18T03:00:00+01:00";

    fn ok_status() -> Status {
        Status {
            timestamp: T.into(),
            success: true,
            size: Some("1.2 MB".into()),
            offsite: Some(status::Offsite {
                pending: 1,
                ..Default::default()
            }),
            ..Status::default()
        }
    }

    #[test]
    fn rows_and_staleness() {
        let now = clock::parse_iso(T).unwrap_or_default();
        let ok = ok_status();
        let r = site_row("a", Some(&ok), now + 3 * 3600);
        assert_eq!((r.stale, r.age_hours, r.pending), (false, Some(3.0), 1));
        assert_eq!(r.state, "pending");
        assert!(site_row("a", Some(&ok), now + 26 * 3600).stale);
        assert!(site_row("a", Some(&ok), now - 86_400).stale);
        let failed = Status {
            success: false,
            error: Some("disk full".into()),
            last_success: Some(T.into()),
            ..ok.clone()
        };
        let r = site_row("b", Some(&failed), now + 3600);
        assert_eq!(r.last_success.as_deref(), Some(T));
        assert!(!r.stale && r.last_run_success == Some(false) && r.state == "failed");
        let never = site_row("c", None, now);
        assert!(never.stale && never.state == "stale");
        assert!(!r.claimed_twice && r.install.is_none());
        // A status that names another install: claimed twice.
        let mut twice = ok_status();
        twice.offsite = Some(status::Offsite {
            install: Some("a".repeat(32)),
            other_install: Some("b".repeat(32)),
            ..Default::default()
        });
        let t = site_row("d", Some(&twice), now);
        assert!(
            t.claimed_twice && t.other_install == Some("b".repeat(32)),
            "{t:?}"
        );
        let f = Fleet {
            sites: vec![r, never],
            stale: 1,
            failed: 1,
            unreadable: 0,
            drill_flagged: 2,
        };
        assert!(
            f.serialize_json()
                .contains(r#""site":"c","state":"stale","last_success":null"#)
        );
    }

    #[test]
    fn the_listing_is_folded_per_site() {
        let mut t = Tally::new("neopro/");
        for (k, n) in [
            ("neopro/a/backup-20241217-030000.tar.gz", 10),
            ("neopro/a/backup-20241218-030000.tar.gz", 12),
            ("neopro/a/last-backup-status.json", 700),
            ("neopro/b/drill.json", 180),
            ("neopro/b/backup-20241218-030000.tar.gz.age", 40),
            ("neopro/b/notes.txt", 5),
            ("neopro/c/odd.bin", 1),
            ("neopro/videos/sha256/ab/abcd", 1000),
            ("neopro/loose.json", 1),
            ("other/x/backup-20241218-030000.tar.gz", 1),
            ("neopro//backup-20241218-030000.tar.gz", 1),
        ] {
            t.add(k, n, "\"e\"");
        }
        assert_eq!(t.objects, 11);
        let names: Vec<&str> = t.sites.keys().map(String::as_str).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(
            t.sites["a"],
            SiteListing {
                archives: 2,
                bytes: 22,
                newest: Some(("backup-20241218-030000.tar.gz".into(), 12)),
                status_size: Some(700),
                status_tag: Some("\"e\"".into()),
                last_night: clock::days_from_civil(2024, 12, 18),
                night_bits: 0b11,
                first_night: Some(clock::days_from_civil(2024, 12, 17)),
                ..SiteListing::default()
            }
        );
        assert_eq!((t.sites["b"].archives, t.sites["b"].bytes), (1, 40));
        assert_eq!(t.sites["b"].drill_size, Some(180));
        assert_eq!(t.sites["a"].drill_size, None);
        assert_eq!(t.sites["c"], SiteListing::default());
    }

    #[test]
    fn the_strip_of_30_nights() {
        let day = |d: u32| clock::days_from_civil(2024, 12, d);
        // Copies in any order, one night twice, gaps on the 5th and 10th to 12th.
        let mut l = SiteListing::default();
        for d in (1..=18).rev().chain([3, 18]) {
            if ![5, 10, 11, 12].contains(&d) {
                l.night(day(d));
            }
        }
        // 18 December 2024, 01:00 UTC: today has its copy.
        let now = day(18) * 86_400 + 3600;
        let strip = l.nights(now);
        assert_eq!(strip.len(), 30);
        assert_eq!(
            &strip[..12],
            "------------",
            "before the oldest copy: not gaps"
        );
        assert_eq!(&strip[12..], "111101111000111111");
        // The next day before its copy: today is pending, not a gap.
        let strip = l.nights(now + 86_400);
        assert!(strip.ends_with("00111111."), "{strip}");
        // A site silent for three days: three gaps then today.
        assert!(l.nights(now + 4 * 86_400).ends_with("1000."));
        // A copy more than 64 nights after the others restarts the record (the nights
        // between are gaps: the site's oldest copy is older).
        let mut new = SiteListing::default();
        new.night(day(15));
        assert_eq!(
            new.nights(now),
            format!("{}100.", "-".repeat(26)),
            "a new site"
        );
        l.night(day(18) + 100);
        assert_eq!(
            l.nights((day(18) + 100) * 86_400),
            format!("{}1", "0".repeat(29))
        );
        // Nothing at all: 29 gaps and today.
        assert_eq!(
            SiteListing::default().nights(now),
            format!("{}.", "0".repeat(29))
        );
        // A copy dated in the future (a Pi's clock) is not today's.
        let mut f = SiteListing::default();
        f.night(day(20));
        assert_eq!(f.nights(now), format!("{}.", "-".repeat(29)));
    }

    #[test]
    fn rows_from_the_listing_worst_first() {
        let now = clock::parse_iso(T).unwrap_or_default() + 3600;
        let mut listed = BTreeMap::new();
        let with_status = SiteListing {
            archives: 3,
            bytes: 300,
            newest: Some(("backup-20241218-030000.tar.gz".into(), 100)),
            status_size: Some(500),
            ..SiteListing::default()
        };
        for s in ["ok", "failed", "stale", "pending", "broken"] {
            listed.insert(s.to_string(), with_status.clone());
        }
        listed.insert(
            "never".to_string(),
            SiteListing {
                status_size: None,
                ..with_status.clone()
            },
        );
        let old = "2024-12-15T03:00:00+01:00";
        let got: Vec<(String, SiteListing, Fetched)> = listed
            .into_iter()
            .map(|(site, l)| {
                let mut st = ok_status();
                st.offsite = None;
                let got = match site.as_str() {
                    "failed" => {
                        st.success = false;
                        st.last_success = Some(T.into());
                        Ok(Some(st))
                    }
                    "stale" => {
                        st.timestamp = old.into();
                        Ok(Some(st))
                    }
                    "pending" => {
                        st.offsite = ok_status().offsite;
                        Ok(Some(st))
                    }
                    "broken" => Err("HTTP 500".to_string()),
                    "never" => Ok(None),
                    _ => Ok(Some(st)),
                };
                (site, l, got)
            })
            .collect();
        let f = rows(
            got.iter().map(|(s, l, g)| {
                (
                    s.as_str(),
                    l,
                    g.as_ref().map(Option::as_ref).map_err(String::as_str),
                )
            }),
            now,
        );
        assert_eq!((f.stale, f.failed, f.unreadable), (3, 1, 1));
        let never = f.sites.iter().find(|s| s.site == "never");
        assert_eq!(
            never.map(|s| (s.size_bytes, s.archives, s.state.as_str())),
            Some((Some(100), 3, "stale"))
        );
        let broken = f.sites.iter().find(|s| s.site == "broken");
        assert!(broken.is_some_and(|s| s.error.as_deref() == Some("status unreadable: HTTP 500")));
        let mut sites = f.sites;
        worst_first(&mut sites);
        let order: Vec<&str> = sites.iter().map(|s| s.site.as_str()).collect();
        // Unknown last success first among the stale, then the oldest.
        assert_eq!(
            order,
            ["failed", "broken", "never", "stale", "pending", "ok"]
        );
    }
}
