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
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nanoserde::{DeJson, SerJson};

use crate::bucket::Bucket;
use crate::clock;
use crate::config::OffsiteSettings;
use crate::offsite;
use crate::offsite::drill_record::{self as drill, VideoCounts};
use crate::offsite::history::is_copy_name;
use crate::status::Status;

/// A site is stale past this age of its last success.
pub const STALE_HOURS: i64 = 25;
/// Status objects bigger than this are not read.
pub const MAX_STATUS_BYTES: u64 = 64 * 1024;
/// Status GETs in flight at once.
const READERS: usize = 8;

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
    pub objects: u64,
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

/// What the listing says of one site.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SiteListing {
    pub archives: u64,
    pub bytes: u64,
    /// The newest copy: name and size.
    pub newest: Option<(String, u64)>,
    /// The size of `last-backup-status.json`, when there is one.
    pub status_size: Option<u64>,
    /// The size of `drill.json`, when there is one.
    pub drill_size: Option<u64>,
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

    pub fn add(&mut self, key: &str, size: u64) {
        self.objects += 1;
        let Some(rest) = key.strip_prefix(&self.root) else {
            return;
        };
        let Some((site, name)) = rest.split_once('/') else {
            return;
        };
        // S3_PREFIX/videos/ holds the shared videos (Videos offsite), not a site.
        if site.is_empty()
            || site == crate::config::VIDEOS_DIR
            || name.is_empty()
            || name.contains('/')
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
        } else if name == drill::DRILL_OBJECT {
            entry.drill_size = Some(size);
        } else if is_copy_name(name) {
            entry.archives += 1;
            entry.bytes = entry.bytes.saturating_add(size);
            if entry.newest.as_ref().is_none_or(|(n, _)| name > n.as_str()) {
                entry.newest = Some((name.to_string(), size));
            }
        }
    }
}

/// A site's status object: parsed, absent (`Ok(None)`), or why it cannot be read.
type Fetched = Result<Option<Status>, String>;
/// A small object's bytes, absent, or why it cannot be read.
type Got = Result<Option<Vec<u8>>, String>;

/// GETs one small object (twice when the connection failed).
fn fetch_one(b: &dyn Bucket, key: &str) -> Got {
    let got = match b.get(key) {
        Err(e) if e.transport => b.get(key), // once more: a connection can drop
        r => r,
    };
    got.map_err(|e| e.msg)
}

fn parse_status(key: &str, got: Got) -> Fetched {
    match got? {
        None => Ok(None),
        Some(bytes) => match std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| Status::deserialize_json(t).ok())
        {
            Some(st) => Ok(Some(st)),
            None => Err(format!("{key} is not a valid status (JSON)")),
        },
    }
}

/// GETs `keys` with at most `READERS` requests in flight; the answers in order.
fn fetch_all(b: &dyn Bucket, keys: &[String]) -> Vec<Got> {
    let next = AtomicUsize::new(0);
    let answers: Mutex<Vec<Option<Got>>> = Mutex::new(keys.iter().map(|_| None).collect());
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(key) = keys.get(i) else { break };
            let r = fetch_one(b, key);
            answers.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
        }
    };
    std::thread::scope(|s| {
        for _ in 1..READERS.min(keys.len()) {
            // If no thread can be made, this one does all the work below.
            let _ = std::thread::Builder::new()
                .name("fleet-get".into())
                .stack_size(256 * 1024)
                .spawn_scoped(s, work);
        }
        work();
    });
    answers
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err("not read".into())))
        .collect()
}

/// The rows from a folded listing and the statuses (pure).
pub fn rows(
    listed: BTreeMap<String, SiteListing>,
    mut statuses: impl FnMut(&str, &SiteListing) -> Fetched,
    now: i64,
) -> Fleet {
    let mut sites = Vec::with_capacity(listed.len());
    let mut unreadable = 0;
    for (name, l) in listed {
        let got = statuses(&name, &l);
        let mut row = match &got {
            Ok(st) => site_row(&name, st.as_ref(), now),
            Err(e) => {
                unreadable += 1;
                let mut r = site_row(&name, None, now);
                r.error = Some(format!("status unreadable: {e}"));
                (r.error_code, r.error_words) = crate::error_words::coded("status_unreadable");
                r
            }
        };
        row.archives = l.archives;
        row.archives_bytes = l.bytes;
        if let Some((newest, size)) = l.newest {
            if row.size_bytes.is_none() {
                // Copies without a status: say at least how big the newest one is.
                row.size = Some(crate::units::human_size(size, 1));
                row.size_bytes = Some(size);
            }
            row.newest_archive = Some(newest);
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

/// Reads the bucket. `Err` when it cannot be listed (a message for a person).
/// `drill_max_days`: FLEET_DRILL_MAX_DAYS.
pub fn build(o: &OffsiteSettings, now: i64, drill_max_days: u32) -> Result<(Fleet, Cost), String> {
    read(&offsite::bucket(o), o, now, drill_max_days)
}

/// `build` on the store `b`, with FLEET_DRILL_MAX_DAYS's default (the tests').
#[cfg(test)]
pub fn build_on(b: &dyn Bucket, o: &OffsiteSettings, now: i64) -> Result<(Fleet, Cost), String> {
    read(b, o, now, DRILL_MAX_DAYS)
}

/// One read of the bucket: the listing, then each site's status and drill.json (when
/// the listing shows them, and they are small), in one pass of GETs.
pub fn read(
    b: &dyn Bucket,
    o: &OffsiteSettings,
    now: i64,
    drill_max_days: u32,
) -> Result<(Fleet, Cost), String> {
    let root = if o.prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", o.prefix)
    };
    let started = Instant::now();
    let mut tally = Tally::new(&root);
    b.list_each(&root, None, &mut |ob| tally.add(&ob.key, ob.size))
        .map_err(|e| e.msg)?;
    let objects = tally.objects;
    let listing = started.elapsed();
    let small = |n: Option<u64>, max: u64| n.is_some_and(|n| n <= max);
    let mut wanted: Vec<String> = Vec::new();
    for (site, l) in &tally.sites {
        if small(l.status_size, MAX_STATUS_BYTES) {
            wanted.push(format!("{root}{site}/{}", offsite::STATUS_OBJECT));
        }
        if small(l.drill_size, drill::MAX_DRILL_BYTES) {
            wanted.push(format!("{root}{site}/{}", drill::DRILL_OBJECT));
        }
    }
    let started = Instant::now();
    let mut answers = wanted.iter().zip(fetch_all(b, &wanted));
    let statuses = started.elapsed();
    let mut drills: BTreeMap<String, Result<Option<drill::Record>, String>> = BTreeMap::new();
    let mut status_of: BTreeMap<String, Fetched> = BTreeMap::new();
    // Same order as `wanted`: the map's, status before drill.
    for (site, l) in &tally.sites {
        if small(l.status_size, MAX_STATUS_BYTES)
            && let Some((key, got)) = answers.next()
        {
            status_of.insert(site.clone(), parse_status(key, got));
        }
        let d = match l.drill_size {
            None => Ok(None),
            Some(n) if n > drill::MAX_DRILL_BYTES => Err(format!(
                "{} is {n} bytes, over {}",
                drill::DRILL_OBJECT,
                drill::MAX_DRILL_BYTES
            )),
            Some(_) => match answers.next() {
                Some((_, Ok(Some(bytes)))) => drill::Record::parse(&bytes).map(Some),
                Some((_, Ok(None))) | None => Ok(None),
                Some((_, Err(e))) => Err(e),
            },
        };
        drills.insert(site.clone(), d);
    }
    let status_gets = tally
        .sites
        .values()
        .filter(|l| small(l.status_size, MAX_STATUS_BYTES))
        .count() as u64;
    let mut fleet = rows(
        tally.sites,
        |site, l| match l.status_size {
            None => Ok(None),
            Some(n) if n > MAX_STATUS_BYTES => Err(format!(
                "{} is {n} bytes, over {MAX_STATUS_BYTES}",
                offsite::STATUS_OBJECT
            )),
            Some(_) => status_of.remove(site).unwrap_or(Ok(None)),
        },
        now,
    );
    for row in &mut fleet.sites {
        let got = drills.remove(&row.site).unwrap_or(Ok(None));
        row.drill = Drill::of(got, now, drill_max_days);
    }
    fleet.drill_flagged = fleet.sites.iter().filter(|s| s.drill.flagged).count() as u64;
    Ok((
        fleet,
        Cost {
            objects,
            status_gets,
            drill_gets: (wanted.len() as u64).saturating_sub(status_gets),
            listing,
            statuses,
        },
    ))
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
            t.add(k, n);
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
                drill_size: None,
            }
        );
        assert_eq!((t.sites["b"].archives, t.sites["b"].bytes), (1, 40));
        assert_eq!(t.sites["b"].drill_size, Some(180));
        assert_eq!(t.sites["a"].drill_size, None);
        assert_eq!(t.sites["c"], SiteListing::default());
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
            drill_size: None,
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
        let f = rows(
            listed,
            |site, _| {
                let mut st = ok_status();
                st.offsite = None;
                match site {
                    "failed" => {
                        st.success = false;
                        st.last_success = Some(T.into());
                    }
                    "stale" => st.timestamp = old.into(),
                    "pending" => st.offsite = ok_status().offsite,
                    "broken" => return Err("HTTP 500".into()),
                    "never" => return Ok(None),
                    _ => {}
                }
                Ok(Some(st))
            },
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
