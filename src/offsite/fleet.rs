//! The fleet: every site's state, read from the bucket (docs/format.md, Fleet), for
//! `neopro-backup fleet` and the central dashboard (`fleet serve`).
//!
//! One pass over the bucket, whatever the number of sites: one paginated ListObjectsV2
//! of the whole `S3_PREFIX/` (1,000 keys a page), folded per site (`Tally`: the archive
//! copies are counted and summed, their keys dropped), then one GET per site of its
//! `last-backup-status.json` only, eight at a time. A status object over 64 KiB is not
//! read (a real one is under 2 KiB), so a site cannot make the reader hold much.
//! The listing is folded page by page (`Bucket::list_each`): keys are never all held.
//!
//! A site is a folder directly under the prefix with at least one object of its own
//! (`S3_PREFIX/<site>/<object>`); deeper keys (such as the shared
//! `S3_PREFIX/videos/sha256/…`) make no site. Its state, worst first: `failed` (its
//! last run failed), `stale` (last success over 25 hours old, unknown, or in the
//! future by more than an hour), `pending` (copies it had not sent yet when it sent its
//! status), `ok`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nanoserde::{DeJson, SerJson};

use crate::bucket::Bucket;
use crate::clock;
use crate::config::OffsiteSettings;
use crate::offsite;
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
}

#[derive(Debug, SerJson)]
pub struct Fleet {
    /// By site name.
    pub sites: Vec<Site>,
    pub stale: u64,
    pub failed: u64,
    /// Sites whose status object could not be read (their row says why).
    pub unreadable: u64,
}

/// What one read of the bucket cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    pub objects: u64,
    pub status_gets: u64,
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
        stale: true,
        archives: 0,
        archives_bytes: 0,
        newest_archive: None,
        install: None,
        other_install: None,
        claimed_twice: false,
    };
    match status {
        None => row.error = Some("no status in the bucket".into()),
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
            row.error = st
                .error
                .clone()
                .or_else(|| st.offsite.as_ref().and_then(|o| o.error.clone()));
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

/// GETs one status object (twice when the connection failed).
fn fetch_status(b: &dyn Bucket, key: &str) -> Fetched {
    let got = match b.get(key) {
        Err(e) if e.transport => b.get(key), // once more: a connection can drop
        r => r,
    };
    match got.map_err(|e| e.msg)? {
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
fn fetch_all(b: &dyn Bucket, keys: &[String]) -> Vec<Fetched> {
    let next = AtomicUsize::new(0);
    let answers: Mutex<Vec<Option<Fetched>>> = Mutex::new(keys.iter().map(|_| None).collect());
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(key) = keys.get(i) else { break };
            let r = fetch_status(b, key);
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
        sites,
    }
}

/// Reads the bucket. `Err` when it cannot be listed (a message for a person).
pub fn build(o: &OffsiteSettings, now: i64) -> Result<(Fleet, Cost), String> {
    build_on(&offsite::bucket(o), o, now)
}

/// `build` on the store `b`.
pub fn build_on(b: &dyn Bucket, o: &OffsiteSettings, now: i64) -> Result<(Fleet, Cost), String> {
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
    let wanted: Vec<String> = tally
        .sites
        .iter()
        .filter(|(_, l)| l.status_size.is_some_and(|n| n <= MAX_STATUS_BYTES))
        .map(|(site, _)| format!("{root}{site}/{}", offsite::STATUS_OBJECT))
        .collect();
    let started = Instant::now();
    let mut answers = fetch_all(b, &wanted).into_iter();
    let statuses = started.elapsed();
    let fleet = rows(
        tally.sites,
        |_, l| match l.status_size {
            None => Ok(None),
            Some(n) if n > MAX_STATUS_BYTES => Err(format!(
                "{} is {n} bytes, over {MAX_STATUS_BYTES}",
                offsite::STATUS_OBJECT
            )),
            // Same order as `wanted`: the map's.
            Some(_) => answers.next().unwrap_or(Ok(None)),
        },
        now,
    );
    Ok((
        fleet,
        Cost {
            objects,
            status_gets: wanted.len() as u64,
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
        assert_eq!(t.objects, 10);
        let names: Vec<&str> = t.sites.keys().map(String::as_str).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(
            t.sites["a"],
            SiteListing {
                archives: 2,
                bytes: 22,
                newest: Some(("backup-20241218-030000.tar.gz".into(), 12)),
                status_size: Some(700),
            }
        );
        assert_eq!((t.sites["b"].archives, t.sites["b"].bytes), (1, 40));
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
