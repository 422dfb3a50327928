//! Reading the fleet from the bucket at a cost that follows what changed (docs/format.md,
//! Fleet, Reading the bucket). A `Reader` keeps what it read of each site between two
//! reads (`fleet serve` holds one; the `fleet` command reads once).
//!
//! - **The first read** lists the whole `S3_PREFIX/` once (1,000 keys a page, folded per
//!   site while it arrives: fleet.rs's `Tally`), lists the index (fleet_index.rs), then
//!   reads each site's status and drill record, eight at a time: from the index when
//!   the index's copy is the site folder's (same ETag), else from the site's folder.
//! - **Every later read** lists the index (one page per 1,000 entries) and the site
//!   folders (the `/`-delimited listing of `S3_PREFIX/`, one page per 1,000 sites), and
//!   then, for each site:
//!   - with an index entry whose ETag did not change: nothing;
//!   - with one that changed: one GET of the entry, and one listing of the site's
//!     folder (its archives, the 30 nights, its drill.json);
//!   - without an index entry (a Pi not upgraded yet, or whose key may not write the
//!     index, or whose index copy is not its status): one conditional GET of its
//!     status (`If-None-Match`: 304 when unchanged), and the listing only when the
//!     status changed;
//!   - a drill entry in the index is read again when its ETag changed; a site's
//!     `drill.json` without an index entry (written by the version before the index)
//!     is read again when the site's folder is listed and shows it changed.
//!   - a site that appeared is listed and read; one that is gone from both listings
//!     is dropped.
//!
//! Every object read is bounded (`MAX_STATUS_BYTES`, `MAX_DRILL_BYTES`), every request
//! is counted by kind (`bucket::counted`), and a read that fails keeps nothing half
//! done: the `Reader` is updated only when the whole read succeeded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::bucket::counted::{Counted, Requests};
use crate::bucket::{Bucket, Fresh};
use crate::config::{OffsiteSettings, reserved_site_id};
use crate::offsite::drill_record::{self as drill, DRILL_OBJECT, MAX_DRILL_BYTES};
use crate::offsite::fleet::{self, Cost, Drill, Fleet, MAX_STATUS_BYTES, SiteListing, Tally};
use crate::offsite::fleet_index::{self, Entry};
use crate::offsite::{STATUS_OBJECT, site_prefix};
use crate::status::Status;

/// Requests in flight at once.
const READERS: usize = 8;

/// A site's status as read: parsed, absent, or why it cannot be read.
type Fetched = Result<Option<Status>, String>;
/// A site's drill record as read.
type Drilled = Result<Option<drill::Record>, String>;

/// What the reader keeps of one site between reads.
#[derive(Debug, Clone)]
struct Known {
    listing: SiteListing,
    status: Fetched,
    /// The ETag of the status read (of the index entry when `from_index`).
    status_tag: String,
    from_index: bool,
    /// The index entry's ETag when that entry was found not to be the site's status
    /// (the site is then read from its folder until the entry changes).
    stale_index: Option<String>,
    drill: Drilled,
    drill_tag: String,
    drill_from_index: bool,
    /// The same as `stale_index`, for the drill entry.
    stale_drill: Option<String>,
}

/// The index: each site's entries, their ETag and size.
#[derive(Debug, Default)]
struct Indexed {
    status: Option<(String, u64)>,
    drill: Option<(String, u64)>,
}

/// What a GET reads.
#[derive(Clone, Copy)]
enum Kind {
    Status,
    Drill,
}

/// One request of a read.
enum Job {
    /// A conditional GET (key, the tag known).
    Get(String, Option<String>, Kind),
    /// A listing of a site's folder.
    List(String),
}

/// A GET's answer, parsed where it arrives (the bytes are not kept).
enum Got {
    Same,
    Missing,
    /// The object, parsed, and its tag.
    Status(Box<Fetched>, String),
    Drill(Drilled, String),
}

enum Answer {
    Got(Result<Got, String>),
    Listed(Result<SiteListing, String>),
}

/// The fleet as last read, kept for the next read.
#[derive(Default)]
pub struct Reader {
    known: BTreeMap<String, Known>,
    /// Every request made since the reader was made, by kind (shared: it can be read
    /// while a read is under way).
    pub total: Arc<Requests>,
}

/// The root of the sites (`S3_PREFIX/`, or empty).
fn root(o: &OffsiteSettings) -> String {
    if o.prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", o.prefix)
    }
}

fn parse_status(key: &str, bytes: &[u8]) -> Fetched {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|t| crate::json::parse::<Status>(t).ok())
        .map(Some)
        .ok_or_else(|| format!("{key} is not a valid status (JSON)"))
}

/// Runs `jobs` with at most READERS in flight; the answers in order.
fn run(b: &dyn Bucket, root: &str, jobs: &[Job]) -> Vec<Answer> {
    let next = AtomicUsize::new(0);
    let answers: Mutex<Vec<Option<Answer>>> = Mutex::new(jobs.iter().map(|_| None).collect());
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(job) = jobs.get(i) else { break };
            let a = match job {
                Job::Get(key, tag, kind) => Answer::Got(get_parsed(b, key, tag.as_deref(), *kind)),
                Job::List(site) => Answer::Listed(list_site(b, root, site)),
            };
            if let Some(slot) = answers.lock().unwrap_or_else(|p| p.into_inner()).get_mut(i) {
                *slot = Some(a);
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 1..READERS.min(jobs.len()) {
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
        .map(|a| a.unwrap_or_else(|| Answer::Got(Err("not read".into()))))
        .collect()
}

/// A conditional GET of a status or drill record, parsed.
fn get_parsed(b: &dyn Bucket, key: &str, tag: Option<&str>, kind: Kind) -> Result<Got, String> {
    let max = match kind {
        Kind::Status => MAX_STATUS_BYTES,
        Kind::Drill => MAX_DRILL_BYTES,
    };
    Ok(match get_once_more(b, key, tag, max)? {
        Fresh::Same => Got::Same,
        Fresh::Missing => Got::Missing,
        Fresh::Got { data, etag } => match kind {
            Kind::Status => Got::Status(Box::new(parse_status(key, &data)), etag),
            Kind::Drill => Got::Drill(drill::Record::parse(&data).map(Some), etag),
        },
    })
}

/// A conditional GET, once more when the connection failed.
fn get_once_more(b: &dyn Bucket, key: &str, tag: Option<&str>, max: u64) -> Result<Fresh, String> {
    match b.get_if(key, tag, max) {
        Err(e) if e.transport => b.get_if(key, tag, max),
        r => r,
    }
    .map_err(|e| e.msg)
}

/// One site's folder, folded.
fn list_site(b: &dyn Bucket, root: &str, site: &str) -> Result<SiteListing, String> {
    let mut t = Tally::new(root);
    let prefix = format!("{root}{site}/");
    b.list_each(&prefix, None, &mut |ob| t.add(&ob.key, ob.size, &ob.etag))
        .map_err(|e| e.msg)?;
    Ok(t.sites.remove(site).unwrap_or_default())
}

/// What to read of one site in this read.
#[derive(Default)]
struct Plan {
    /// List the site's folder (its archives changed, or it is new).
    list: bool,
    /// The status: from the index, or from the folder with the tag known.
    status: Option<Job>,
    status_from_index: bool,
    drill: Option<Job>,
    drill_from_index: bool,
}

impl Reader {
    pub fn new() -> Reader {
        Reader::default()
    }

    /// Reads the bucket; `Err` (a message for a person) when it cannot be listed, and
    /// the reader is then left as it was.
    pub fn read(
        &mut self,
        b: &dyn Bucket,
        o: &OffsiteSettings,
        now: i64,
        drill_max_days: u32,
    ) -> Result<(Fleet, Cost), String> {
        let requests = Requests::default();
        let counted = Counted {
            inner: b,
            requests: &requests,
        };
        let got = self.read_counted(&counted, o, now, drill_max_days);
        self.total.add_all(&requests);
        let (fleet, mut cost) = got?;
        cost.requests = requests.get();
        Ok((fleet, cost))
    }

    fn read_counted(
        &mut self,
        b: &dyn Bucket,
        o: &OffsiteSettings,
        now: i64,
        drill_max_days: u32,
    ) -> Result<(Fleet, Cost), String> {
        let root = root(o);
        let started = Instant::now();
        let mut cost = Cost::default();
        let first = self.known.is_empty();

        // The index.
        let ix = fleet_index::prefix(o);
        let mut index: BTreeMap<String, Indexed> = BTreeMap::new();
        b.list_each(&ix, None, &mut |ob| {
            if let Some((entry, site)) = fleet_index::parse(&ix, &ob.key)
                && reserved_site_id(site).is_none()
            {
                let e = index.entry(site.to_string()).or_default();
                let v = Some((ob.etag, ob.size));
                match entry {
                    Entry::Status => e.status = v,
                    Entry::Drill => e.drill = v,
                }
            }
        })
        .map_err(|e| e.msg)?;

        // The sites: with their listing on a first read, their names otherwise.
        let mut listed: BTreeMap<String, SiteListing> = BTreeMap::new();
        let mut sites: BTreeSet<String> = BTreeSet::new();
        if first {
            let mut tally = Tally::new(&root);
            b.list_each(&root, None, &mut |ob| tally.add(&ob.key, ob.size, &ob.etag))
                .map_err(|e| e.msg)?;
            cost.objects = tally.objects;
            listed = tally.sites;
            sites.extend(listed.keys().cloned());
        } else {
            let folders = b
                .list_each(&root, Some("/"), &mut |_| {})
                .map_err(|e| e.msg)?;
            sites.extend(
                folders
                    .iter()
                    .filter_map(|p| p.strip_prefix(&root)?.strip_suffix('/'))
                    .filter(|s| !s.is_empty() && reserved_site_id(s).is_none())
                    .map(str::to_string),
            );
        }
        sites.extend(
            index
                .iter()
                .filter(|(_, e)| e.status.is_some())
                .map(|(s, _)| s.clone()),
        );
        cost.listing = started.elapsed();

        // What each site needs.
        let started = Instant::now();
        let mut plans: BTreeMap<&str, Plan> = BTreeMap::new();
        for site in &sites {
            let known = self.known.get(site);
            let ixd = index.get(site);
            let mut p = Plan {
                list: !first && known.is_none(),
                ..Plan::default()
            };
            let folder_status = format!("{}{STATUS_OBJECT}", site_prefix(o, site));
            let index_status = fleet_index::key(o, Entry::Status, site);
            match (ixd.and_then(|e| e.status.as_ref()), known) {
                // The index's copy is the folder's (first read): read it there.
                (Some((tag, _)), None)
                    if listed
                        .get(site)
                        .is_none_or(|l| l.status_tag.as_deref() == Some(tag.as_str())) =>
                {
                    p.status = Some(Job::Get(index_status, None, Kind::Status));
                    p.status_from_index = true;
                }
                (Some((tag, _)), Some(k)) if k.stale_index.as_deref() != Some(tag.as_str()) => {
                    if !(k.from_index && k.status_tag == *tag) {
                        p.status = Some(Job::Get(index_status, None, Kind::Status));
                        p.status_from_index = true;
                        p.list = true;
                    }
                }
                // No entry, a stale one, or a first read whose index copy is not the
                // folder's status: the folder, conditionally.
                (_, k) => {
                    let listing = listed.get(site);
                    if !(first && listing.is_some_and(|l| l.status_size.is_none())) {
                        let tag = k.filter(|k| !k.from_index).map(|k| k.status_tag.clone());
                        p.status = Some(Job::Get(folder_status, tag, Kind::Status));
                    }
                }
            }
            match (ixd.and_then(|e| e.drill.as_ref()), known) {
                (Some((tag, _)), Some(k)) if k.drill_from_index && k.drill_tag == *tag => {}
                // Set aside: the folder's drill.json is another.
                (Some((tag, _)), Some(k)) if k.stale_drill.as_deref() == Some(tag.as_str()) => {}
                (Some((tag, _)), None)
                    if listed
                        .get(site)
                        .is_some_and(|l| l.drill_tag.as_deref() != Some(tag.as_str())) => {}
                (Some(_), _) => {
                    p.drill = Some(Job::Get(
                        fleet_index::key(o, Entry::Drill, site),
                        None,
                        Kind::Drill,
                    ));
                    p.drill_from_index = true;
                }
                (None, _) => {} // from the folder's listing, below
            }
            plans.insert(site.as_str(), p);
        }

        // The statuses, drills and listings asked (one pass).
        let mut jobs: Vec<Job> = Vec::new();
        let mut slots: Vec<(&str, u8)> = Vec::new();
        for (site, p) in plans.iter_mut() {
            if let Some(j) = p.status.take() {
                jobs.push(j);
                slots.push((site, 0));
            }
            if let Some(j) = p.drill.take() {
                jobs.push(j);
                slots.push((site, 1));
            }
            if p.list {
                jobs.push(Job::List((*site).to_string()));
                slots.push((site, 2));
            }
        }
        let answers = run(b, &root, &jobs);
        let mut status_got: BTreeMap<&str, Result<Got, String>> = BTreeMap::new();
        let mut drill_got: BTreeMap<&str, Result<Got, String>> = BTreeMap::new();
        let mut relisted: BTreeMap<&str, Result<SiteListing, String>> = BTreeMap::new();
        for ((site, what), a) in slots.into_iter().zip(answers) {
            match (what, a) {
                (0, Answer::Got(r)) => {
                    status_got.insert(site, r);
                }
                (1, Answer::Got(r)) => {
                    drill_got.insert(site, r);
                }
                (_, Answer::Listed(r)) => {
                    relisted.insert(site, r);
                }
                (_, Answer::Got(_)) => {} // a GET's answer is never in a listing's slot
            }
        }

        // A legacy status that changed needs its folder listed (second pass, small).
        let mut more: Vec<Job> = Vec::new();
        for site in &sites {
            let s = site.as_str();
            let changed = match (status_got.get(s), self.known.get(s)) {
                (Some(Ok(Got::Same)), _) => false,
                (Some(Ok(Got::Missing)), Some(k)) => !matches!(k.status, Ok(None)),
                (Some(_), Some(_)) => true,
                _ => false,
            };
            if !first && changed && !relisted.contains_key(s) {
                more.push(Job::List(site.clone()));
            }
        }
        let more_sites: Vec<String> = more
            .iter()
            .filter_map(|j| match j {
                Job::List(site) => Some(site.clone()),
                Job::Get(..) => None,
            })
            .collect();
        for (site, a) in more_sites.iter().zip(run(b, &root, &more)) {
            if let (Answer::Listed(r), Some(name)) = (a, sites.get(site)) {
                relisted.insert(name.as_str(), r);
            }
        }

        // The new state of each site.
        let mut known: BTreeMap<String, Known> = BTreeMap::new();
        let mut legacy_drills: Vec<String> = Vec::new();
        let mut gets = (0u64, 0u64);
        for site in &sites {
            let s = site.as_str();
            let prev = self.known.remove(s);
            let p = plans.remove(s).unwrap_or_default();
            let ixd = index.get(s);
            // Whether the folder was listed in this read (its tags are current).
            let mut was_listed = true;
            let listing: SiteListing = match relisted.remove(s) {
                Some(Ok(l)) => l,
                Some(Err(e)) => {
                    // Keep what was known; say why the site's folder is not current.
                    was_listed = false;
                    let mut l = prev.as_ref().map(|k| k.listing.clone()).unwrap_or_default();
                    l.error = Some(format!("cannot list the site's folder: {e}"));
                    l
                }
                None => match listed.remove(s) {
                    Some(l) => l,
                    None => {
                        was_listed = false;
                        prev.as_ref().map(|k| k.listing.clone()).unwrap_or_default()
                    }
                },
            };
            let mut k = prev.unwrap_or_else(|| Known {
                listing: SiteListing::default(),
                status: Ok(None),
                status_tag: String::new(),
                from_index: false,
                stale_index: None,
                drill: Ok(None),
                drill_tag: String::new(),
                drill_from_index: false,
                stale_drill: None,
            });
            k.listing = listing;
            match status_got.remove(s) {
                None => {}
                Some(Ok(Got::Same)) => {}
                Some(Ok(Got::Missing | Got::Drill(..))) => {
                    k.status = Ok(None);
                    k.status_tag.clear();
                    k.from_index = false;
                    gets.0 += 1;
                }
                Some(Ok(Got::Status(st, etag))) => {
                    k.status = *st;
                    k.status_tag = etag;
                    k.from_index = p.status_from_index;
                    gets.0 += 1;
                }
                Some(Err(e)) => {
                    k.status = Err(e);
                    k.status_tag.clear();
                    k.from_index = false;
                    gets.0 += 1;
                }
            }
            // An index copy that is not the folder's status (seen when the folder is
            // listed) is set aside until it changes.
            let index_tag = ixd.and_then(|e| e.status.as_ref()).map(|(t, _)| t.clone());
            if was_listed {
                k.stale_index = match (&index_tag, &k.listing.status_tag) {
                    (Some(it), ft) if ft.as_ref() != Some(it) => {
                        if k.from_index {
                            // Read from the index, but the folder holds another status
                            // (or none): the folder's is read at the next read.
                            k.status_tag.clear();
                            k.from_index = false;
                        }
                        Some(it.clone())
                    }
                    _ => None,
                };
            }
            // The drill: from the index when asked there, else from the folder.
            let drill_tag = ixd.and_then(|e| e.drill.as_ref()).map(|(t, _)| t.clone());
            if let Some(got) = drill_got.remove(s) {
                gets.1 += 1;
                match got {
                    Ok(Got::Same) => {}
                    Ok(Got::Missing | Got::Status(..)) => {
                        k.drill = Ok(None);
                        k.drill_tag.clear();
                    }
                    Ok(Got::Drill(d, etag)) => {
                        k.drill = d;
                        k.drill_tag = etag;
                    }
                    Err(e) => {
                        k.drill = Err(e);
                        k.drill_tag.clear();
                    }
                }
                k.drill_from_index = p.drill_from_index;
            }
            if was_listed {
                k.stale_drill = match (&drill_tag, &k.listing.drill_tag) {
                    (Some(it), ft) if ft.as_ref() != Some(it) => Some(it.clone()),
                    _ => None,
                };
            }
            let from_folder = drill_tag.is_none() || k.stale_drill == drill_tag;
            if from_folder && (was_listed || k.drill_from_index) {
                // The folder's drill.json, as its listing shows it.
                match (&k.listing.drill_tag, k.listing.drill_size) {
                    (_, None) if k.listing.error.is_none() => {
                        k.drill = Ok(None);
                        k.drill_tag.clear();
                        k.drill_from_index = false;
                    }
                    (Some(t), Some(_)) if !k.drill_from_index && *t == k.drill_tag => {}
                    (_, Some(n)) if n > MAX_DRILL_BYTES => {
                        k.drill = Err(format!(
                            "{DRILL_OBJECT} is {n} bytes, over {MAX_DRILL_BYTES}"
                        ));
                        k.drill_tag.clear();
                        k.drill_from_index = false;
                    }
                    (_, Some(_)) => legacy_drills.push(site.clone()),
                    _ => {}
                }
            }
            known.insert(site.clone(), k);
        }
        // drill.json of the sites without a drill entry in the index, when it changed.
        let jobs: Vec<Job> = legacy_drills
            .iter()
            .map(|s| {
                Job::Get(
                    format!("{}{DRILL_OBJECT}", site_prefix(o, s)),
                    None,
                    Kind::Drill,
                )
            })
            .collect();
        for (s, a) in legacy_drills.iter().zip(run(b, &root, &jobs)) {
            let (Answer::Got(got), Some(k)) = (a, known.get_mut(s)) else {
                continue;
            };
            gets.1 += 1;
            (k.drill, k.drill_tag) = match got {
                Ok(Got::Drill(d, etag)) => (d, etag),
                Ok(_) => (Ok(None), String::new()),
                Err(e) => (Err(e), String::new()),
            };
            k.drill_from_index = false;
        }
        cost.status_gets = gets.0;
        cost.drill_gets = gets.1;
        cost.statuses = started.elapsed();
        self.known = known;
        Ok((self.fleet(now, drill_max_days), cost))
    }

    /// The rows of what is known (pure: `now` is a parameter).
    fn fleet(&self, now: i64, drill_max_days: u32) -> Fleet {
        let mut f = fleet::rows(
            self.known.iter().map(|(s, k)| {
                (
                    s.as_str(),
                    &k.listing,
                    k.status
                        .as_ref()
                        .map(Option::as_ref)
                        .map_err(String::as_str),
                )
            }),
            now,
        );
        for (row, k) in f.sites.iter_mut().zip(self.known.values()) {
            row.drill = Drill::of(k.drill.clone(), now, drill_max_days);
            row.nights = k.listing.nights(now);
            row.listing_error = k.listing.error.clone();
        }
        f.drill_flagged = f.sites.iter().filter(|s| s.drill.flagged).count() as u64;
        f
    }
}

/// Reads the bucket once. `Err` when it cannot be listed (a message for a person).
/// `drill_max_days`: FLEET_DRILL_MAX_DAYS.
pub fn build(o: &OffsiteSettings, now: i64, drill_max_days: u32) -> Result<(Fleet, Cost), String> {
    read(&crate::offsite::bucket(o), o, now, drill_max_days)
}

/// `build` on the store `b`, with FLEET_DRILL_MAX_DAYS's default (the tests').
#[cfg(test)]
pub fn build_on(b: &dyn Bucket, o: &OffsiteSettings, now: i64) -> Result<(Fleet, Cost), String> {
    read(b, o, now, crate::offsite::fleet::DRILL_MAX_DAYS)
}

/// One read of the store `b` by a new reader (fleet_read.rs).
pub fn read(
    b: &dyn Bucket,
    o: &OffsiteSettings,
    now: i64,
    drill_max_days: u32,
) -> Result<(Fleet, Cost), String> {
    Reader::new().read(b, o, now, drill_max_days)
}

#[cfg(test)]
mod tests;
