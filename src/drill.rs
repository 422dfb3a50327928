//! Restore drills (docs/format.md, Fleet, Restore drills): `fleet drill` proves, from the
//! operator's machine, that each site's newest archive copy in the bucket would restore.
//! For each site it streams the newest copy (recover::open: by ranges, decrypted with the
//! operator's identities when `.age`), checks it as `verify` does (gzip, tar, one top
//! folder, MANIFEST.sha256) without writing it anywhere, and with VIDEOS_OFFSITE checks
//! that every video the archive names is in the bucket at its size (with `--deep`: that
//! its bytes hash to its name). The result goes to `S3_PREFIX/SITE/drill.json`, which
//! `fleet` and `fleet serve` read.
//!
//! Rules:
//! - The newest copy, never an older one: a damaged newest copy fails the drill (the
//!   point of a drill is the copy a recovery would take first).
//! - A store failure (network, refusal) is reported as such, never as damage.
//! - An encrypted copy no identity opens fails that site's drill ("no identity for this
//!   site"); the other sites go on.
//! - A drill reads; the only object it writes is each site's `drill.json`, and only in a
//!   folder the bucket already holds.
//! - Memory is bounded whatever the archive's size: one range, the age and gzip
//!   buffers, the archive's small files (at most `archive::MAX_CONFIG_BYTES`) and one
//!   entry per video of its inventory.

use std::collections::BTreeMap;
use std::io::Read;

use nanoserde::SerJson;

use crate::backup::archive::{self, MANIFEST};
use crate::bucket::{Bucket, ObjectHead};
use crate::clock;
use crate::config::OffsiteSettings;
pub use crate::offsite::drill_record::{DRILL_OBJECT, Record, VERSION, VideoCounts};
use crate::offsite::{self, fleet_index, videos};
use crate::recover::{self, FetchError, Remote};
use crate::restore::INVENTORY;
use crate::store;
use crate::units::{Sha256, hex};
use crate::videos::inventory;

/// Bytes read from the start of an `.age` video copy to find its header's length.
const AGE_HEADER_PROBE: u64 = 16 * 1024;
/// The age format's payload: a 16-byte nonce, then 64 KiB chunks each sealed with a
/// 16-byte tag.
const AGE_NONCE: u64 = 16;
const AGE_CHUNK: u64 = 64 * 1024;
const AGE_TAG: u64 = 16;
/// Videos named in a failed drill's error (the counts say how many there are).
const PROBLEMS_SHOWN: usize = 5;

/// Why a site's drill failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The site's folder holds no archive copy.
    NoArchive,
    /// An encrypted copy that no identity given opens.
    Identity,
    /// The newest copy is not a whole archive.
    Damaged,
    /// The store could not be read: no verdict on the copy.
    Store,
    /// A video the archive names is missing, of the wrong size or (deep) altered.
    Videos,
}

impl Kind {
    /// How the printing names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::NoArchive => "no archive",
            Kind::Identity => "no identity",
            Kind::Damaged => "damaged",
            Kind::Store => "store failure",
            Kind::Videos => "videos",
        }
    }
}

/// One site's drill.
#[derive(Debug, Clone)]
pub struct SiteDrill {
    pub site: String,
    /// The newest copy (None: the site holds none).
    pub archive: Option<Remote>,
    /// Why it failed (None: it passed).
    pub failure: Option<(Kind, String)>,
    pub videos: Option<VideoCounts>,
    /// The videos at fault: path and why, every one of them.
    pub problems: Vec<(String, String)>,
    /// Bytes of the copy read from the bucket.
    pub bytes: u64,
    /// An old-format archive (no manifest: gzip and tar checked only).
    pub old_format: bool,
    /// What was written to drill.json.
    pub record: Record,
    /// Whether drill.json was written (why not).
    pub recorded: Result<(), String>,
}

impl SiteDrill {
    pub fn ok(&self) -> bool {
        self.failure.is_none() && self.recorded.is_ok()
    }
}

/// What `fleet drill` is asked.
pub struct Request<'a> {
    /// `--site`: that site only; else every site of the bucket.
    pub site: Option<String>,
    /// The operator's age identities (the identity file may hold many sites').
    pub identities: &'a [age::x25519::Identity],
    /// `--deep`: hash every video's bytes.
    pub deep: bool,
}

/// Why no drill could start (exit 1).
#[derive(Debug)]
pub enum Refused {
    /// The sites could not be listed.
    Store(String),
    /// The site named is not in the bucket, or the key may not list the sites.
    NoSite(String),
}

impl Refused {
    pub fn message(&self) -> &str {
        match self {
            Refused::Store(m) | Refused::NoSite(m) => m,
        }
    }
}

/// `2026-01-05T09:12:40Z`.
pub fn iso_utc(unix: i64) -> String {
    let c = clock::civil(unix);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// The key of `site`'s drill.json.
pub fn key(o: &OffsiteSettings, site: &str) -> String {
    format!("{}{DRILL_OBJECT}", offsite::site_prefix(o, site))
}

/// The sites to drill: `--site` (which must be in the bucket) or every one, by name;
/// with whether the bucket's listing showed it.
fn sites_to_drill(
    b: &dyn Bucket,
    o: &OffsiteSettings,
    site: Option<&str>,
) -> Result<Vec<(String, bool)>, Refused> {
    let found = recover::sites(b, &offsite::Place::s3(o))
        .map_err(|e| Refused::Store(format!("cannot list the bucket's sites: {e}")))?;
    let mut all = match (found, site) {
        (None, None) => {
            return Err(Refused::NoSite(
                "this key may not list the bucket's sites: name one with --site (or use the operator's keys)"
                    .into(),
            ));
        }
        // A key that may not list: the site's own listing says whether it is there.
        (None, Some(s)) => vec![(s.to_string(), false)],
        (Some(list), Some(s)) if !list.iter().any(|x| x == s) => {
            return Err(Refused::NoSite(recover::no_archive_message(s, Some(&list))));
        }
        (Some(_), Some(s)) => vec![(s.to_string(), true)],
        (Some(list), None) if list.is_empty() => {
            // A wrong S3_PREFIX drills nothing: never a silent success.
            return Err(Refused::NoSite(format!(
                "the bucket holds no site under {}",
                b.describe(&videos::root(o))
            )));
        }
        (Some(list), None) => list.into_iter().map(|s| (s, true)).collect(),
    };
    all.sort();
    Ok(all)
}

/// Drills every site (or `req.site`), one after the other; `each` sees each site's
/// result as soon as it is recorded. `Err` when no drill could start.
pub fn run(
    b: &dyn Bucket,
    o: &OffsiteSettings,
    req: &Request,
    each: &mut dyn FnMut(&SiteDrill),
) -> Result<Vec<SiteDrill>, Refused> {
    let sites = sites_to_drill(b, o, req.site.as_deref())?;
    let mut out = Vec::with_capacity(sites.len());
    for (site, listed) in sites {
        let d = drill_site(b, o, &site, listed, req);
        each(&d);
        out.push(d);
    }
    Ok(out)
}

/// The checks of one site, then its drill.json.
///
/// `listed`: the site is a folder of the bucket's listing (else its drill.json is
/// written only when its folder shows an archive copy).
pub fn drill_site(
    b: &dyn Bucket,
    o: &OffsiteSettings,
    site: &str,
    listed: bool,
    req: &Request,
) -> SiteDrill {
    let mut d = SiteDrill {
        site: site.to_string(),
        archive: None,
        failure: None,
        videos: None,
        problems: Vec::new(),
        bytes: 0,
        old_format: false,
        record: Record {
            version: VERSION,
            when: String::new(),
            archive: None,
            ok: false,
            error: None,
            videos: None,
        },
        recorded: Ok(()),
    };
    check(b, o, site, req, &mut d);
    d.record = Record {
        version: VERSION,
        when: iso_utc(clock::now_unix()),
        archive: d.archive.as_ref().map(|r| r.name.clone()),
        ok: d.failure.is_none(),
        error: d.failure.as_ref().map(|(_, m)| m.clone()),
        videos: d.videos.clone(),
    };
    // Only in a folder the bucket already holds: a site named with --site by a key that
    // may not list the sites, whose folder shows no archive, gets none.
    d.recorded = if listed || d.archive.is_some() {
        write(b, o, site, &d.record)
    } else {
        Err(format!(
            "{DRILL_OBJECT} not written: the bucket shows no folder of {site}"
        ))
    };
    d
}

/// drill.json, then its copy in the fleet's index (fleet_index.rs), which the dashboard
/// reads when its ETag changed.
fn write(b: &dyn Bucket, o: &OffsiteSettings, site: &str, r: &Record) -> Result<(), String> {
    let k = key(o, site);
    let body = r.serialize_json();
    match b.put_bytes(&k, body.as_bytes(), "application/json") {
        Err(e) if e.transport => b.put_bytes(&k, body.as_bytes(), "application/json"),
        x => x,
    }
    .map_err(|e| format!("cannot write {}: {e}", b.describe(&k)))?;
    fleet_index::put(b, o, fleet_index::Entry::Drill, site, body.as_bytes()).map_err(|e| {
        format!(
            "{DRILL_OBJECT} written, but not its copy in the fleet's index ({e}): the \
             dashboard may show the previous drill until the next one"
        )
    })
}

/// The copy's checks; sets `d.archive`, `d.failure`, `d.videos`.
fn check(b: &dyn Bucket, o: &OffsiteSettings, site: &str, req: &Request, d: &mut SiteDrill) {
    let copies = match recover::list(b, &offsite::Place::s3(o), site) {
        Ok(c) => c,
        Err(e) => {
            d.failure = Some((
                Kind::Store,
                format!("store failure: cannot list the site's folder: {e}"),
            ));
            return;
        }
    };
    let Some(newest) = copies.into_iter().next() else {
        d.failure = Some((
            Kind::NoArchive,
            "no archive copy in the site's folder".into(),
        ));
        return;
    };
    d.archive = Some(newest.clone());
    let name = newest.name.clone();
    let read = std::sync::atomic::AtomicU64::new(0);
    let seen = {
        let mut stream = match recover::open(b, &newest, req.identities, Some(&read)) {
            Ok(s) => s,
            Err(e) => {
                d.failure = Some(fetch_failure(&name, e));
                return;
            }
        };
        let keep = |p: &[u8]| p == MANIFEST.as_bytes() || p == INVENTORY.as_bytes();
        let got = archive::read_entries(
            &mut stream.reader,
            Some(store::stem_of(newest.local_name())),
            &keep,
        );
        d.bytes = read.load(std::sync::atomic::Ordering::Relaxed);
        match got {
            Ok(x) => x,
            Err(e) => {
                d.failure = Some(match stream.store_failure() {
                    Some(s) => (
                        Kind::Store,
                        format!("store failure while reading {name}: {s}"),
                    ),
                    None => (Kind::Damaged, format!("{name} is damaged: {e}")),
                });
                return;
            }
        }
    };
    let (top, seen) = seen;
    // As `verify`: an old-format archive has no manifest (gzip and tar checked).
    if store::is_old_top(&top) && !archive::has_manifest(&seen) {
        d.old_format = true;
        return;
    }
    let report = archive::check_manifest(&seen);
    if !report.ok {
        let why = report
            .error
            .unwrap_or_else(|| "a file does not match its manifest".into());
        d.failure = Some((
            Kind::Damaged,
            format!("{name} is damaged: {why} ({MANIFEST})"),
        ));
        return;
    }
    let Some(text) = seen
        .iter()
        .find(|e| !e.is_dir && e.path == INVENTORY.as_bytes())
        .and_then(|e| e.content.as_deref())
    else {
        return;
    };
    let listed = inventory::parse_listed(&String::from_utf8_lossy(text));
    drop(seen);
    if listed.is_empty() || listed.iter().all(|l| l.sha256.is_none()) {
        // Made without VIDEOS_OFFSITE: its videos are not in the bucket.
        return;
    }
    match check_videos(b, o, site, &listed, req) {
        Ok((counts, problems)) => {
            if !counts.ok() {
                d.failure = Some((Kind::Videos, videos_error(&counts, &problems)));
            }
            d.videos = Some(counts);
            d.problems = problems;
        }
        Err(e) => d.failure = Some((Kind::Store, format!("store failure: {e}"))),
    }
}

fn fetch_failure(name: &str, e: FetchError) -> (Kind, String) {
    match e {
        FetchError::Identity(m) => (Kind::Identity, format!("no identity for this site: {m}")),
        FetchError::Store(m) => (
            Kind::Store,
            format!("store failure while reading {name}: {m}"),
        ),
        FetchError::Damaged(m) => (Kind::Damaged, format!("{name} is damaged: {m}")),
        FetchError::Local(m) => (Kind::Damaged, format!("{name}: {m}")),
    }
}

/// `videos: 1 missing, 1 of the wrong size (a.mp4: missing; …)`.
fn videos_error(c: &VideoCounts, problems: &[(String, String)]) -> String {
    let mut parts = Vec::new();
    if c.missing > 0 {
        parts.push(format!("{} missing", c.missing));
    }
    if c.wrong_size > 0 {
        parts.push(format!("{} of the wrong size", c.wrong_size));
    }
    if c.bad_hash > 0 {
        parts.push(format!(
            "{} altered (bytes do not hash to their name)",
            c.bad_hash
        ));
    }
    let shown: Vec<String> = problems
        .iter()
        .take(PROBLEMS_SHOWN)
        .map(|(p, why)| format!("{p}: {why}"))
        .collect();
    let more = problems.len().saturating_sub(PROBLEMS_SHOWN);
    let more = if more > 0 {
        format!("; and {more} more")
    } else {
        String::new()
    };
    format!(
        "videos: {} of {} ({}{more})",
        parts.join(", "),
        c.checked,
        shown.join("; ")
    )
}

/// What the bucket holds of one video.
#[derive(Debug, Clone, PartialEq)]
enum Found {
    Ok,
    Missing(String),
    WrongSize(String),
    BadHash(String),
}

/// Each video of the inventory in the bucket: `Err` on a store failure.
fn check_videos(
    b: &dyn Bucket,
    o: &OffsiteSettings,
    site: &str,
    listed: &[inventory::InventoryLine],
    req: &Request,
) -> Result<(VideoCounts, Vec<(String, String)>), String> {
    let mut counts = VideoCounts {
        deep: req.deep,
        ..VideoCounts::default()
    };
    let mut problems = Vec::new();
    // A video under two names is looked at once.
    let mut judged: BTreeMap<([u8; 32], u64), Found> = BTreeMap::new();
    for l in listed {
        counts.checked += 1;
        let shown = crate::restore::videos::shown(&l.path);
        let Some(hash) = l.sha256 else {
            counts.missing += 1;
            problems.push((shown, "no SHA-256 in the archive's inventory".into()));
            continue;
        };
        let found = match judged.get(&(hash, l.size)) {
            Some(f) => f.clone(),
            None => {
                let f = judge(b, o, site, &hash, l.size, req)?;
                judged.insert((hash, l.size), f.clone());
                f
            }
        };
        match found {
            Found::Ok => {}
            Found::Missing(why) => {
                counts.missing += 1;
                problems.push((shown, why));
            }
            Found::WrongSize(why) => {
                counts.wrong_size += 1;
                problems.push((shown, why));
            }
            Found::BadHash(why) => {
                counts.bad_hash += 1;
                problems.push((shown, why));
            }
        }
    }
    Ok((counts, problems))
}

/// Where a restore would take the video from, in its order (restore/videos.rs,
/// `sources`): the shared plain object, the site's own copy, the site's age copy.
fn places(o: &OffsiteSettings, site: &str, hash: &[u8; 32]) -> [(String, bool); 3] {
    [
        (videos::plain_key(o, hash), false),
        (videos::fallback_key(o, site, hash), false),
        (videos::age_key(o, site, hash), true),
    ]
}

/// A HEAD, once more when the connection failed.
fn head(b: &dyn Bucket, key: &str) -> Result<ObjectHead, String> {
    match b.head(key) {
        Err(e) if e.transport => b.head(key),
        r => r,
    }
    .map_err(|e| e.msg)
}

/// The size an age file of `plain` bytes has after a header of `header` bytes.
pub fn age_size(header: u64, plain: u64) -> u64 {
    let chunks = plain.div_ceil(AGE_CHUNK).max(1);
    header
        .saturating_add(AGE_NONCE)
        .saturating_add(plain)
        .saturating_add(chunks.saturating_mul(AGE_TAG))
}

/// The length of an age header at the start of `data` (through its `--- MAC` line).
pub fn age_header_len(data: &[u8]) -> Option<u64> {
    if !data.starts_with(b"age-encryption.org/") {
        return None;
    }
    let mac = data.windows(5).position(|w| w == b"\n--- ")?;
    let end = data[mac + 1..].iter().position(|&c| c == b'\n')?;
    Some((mac + 1 + end + 1) as u64)
}

/// The size of the age copy at `key` and the size it must have for `size` plain bytes;
/// `None` when there is none.
fn age_sizes(b: &dyn Bucket, key: &str, size: u64) -> Result<Option<(u64, Option<u64>)>, String> {
    let got = match b.get_range(key, 0, AGE_HEADER_PROBE) {
        Err(e) if e.transport => b.get_range(key, 0, AGE_HEADER_PROBE),
        r => r,
    };
    match got {
        Ok(None) => Ok(None),
        Err(e) if e.denied() => Ok(None),
        Err(e) => Err(e.msg),
        Ok(Some(r)) => Ok(Some((
            r.total,
            age_header_len(&r.data).map(|h| age_size(h, size)),
        ))),
    }
}

/// What the bucket holds of one video, in the places a restore looks.
fn judge(
    b: &dyn Bucket,
    o: &OffsiteSettings,
    site: &str,
    hash: &[u8; 32],
    size: u64,
    req: &Request,
) -> Result<Found, String> {
    let mut sized = Vec::new();
    let mut other_sizes = Vec::new();
    for (key, encrypted) in places(o, site, hash) {
        if encrypted {
            match age_sizes(b, &key, size)? {
                None => {}
                Some((total, Some(want))) if total == want => sized.push((key, true)),
                Some((total, Some(want))) => other_sizes.push(format!(
                    "{}: {total} bytes, an age copy of {size} bytes has {want}",
                    b.describe(&key)
                )),
                Some((total, None)) => other_sizes.push(format!(
                    "{}: {total} bytes, not an age file",
                    b.describe(&key)
                )),
            }
        } else {
            match head(b, &key)? {
                ObjectHead::Exists(n) if n == size => sized.push((key, false)),
                ObjectHead::Exists(n) => {
                    other_sizes.push(format!("{}: {n} bytes, {size} expected", b.describe(&key)))
                }
                ObjectHead::Missing | ObjectHead::Unknown => {}
            }
        }
        // Without --deep the first copy of the right size is enough, as for a restore.
        if !req.deep && !sized.is_empty() {
            return Ok(Found::Ok);
        }
    }
    if sized.is_empty() {
        return Ok(if other_sizes.is_empty() {
            Found::Missing(format!("missing ({})", hex(hash)))
        } else {
            Found::WrongSize(other_sizes.join("; "))
        });
    }
    let mut bad = Vec::new();
    for (key, encrypted) in sized {
        match hash_of(b, &key, size, encrypted, req.identities)? {
            Ok(h) if h == *hash => return Ok(Found::Ok),
            Ok(h) => bad.push(format!(
                "{}: its bytes hash to {}",
                b.describe(&key),
                hex(&h)
            )),
            Err(why) => bad.push(format!("{}: {why}", b.describe(&key))),
        }
    }
    Ok(Found::BadHash(bad.join("; ")))
}

/// The SHA-256 of an object's (decrypted) bytes, streamed by ranges: `Err` on a store
/// failure, `Ok(Err(why))` when the bytes cannot be read as a video (not an age file, no
/// identity, cut short).
fn hash_of(
    b: &dyn Bucket,
    key: &str,
    size: u64,
    encrypted: bool,
    identities: &[age::x25519::Identity],
) -> Result<Result<[u8; 32], String>, String> {
    let r = Remote {
        name: key.rsplit('/').next().unwrap_or(key).to_string(),
        key: key.to_string(),
        size,
        naive: 0,
        encrypted,
    };
    let mut stream = match recover::open(b, &r, identities, None) {
        Ok(s) => s,
        Err(FetchError::Store(m)) => return Err(m),
        Err(e) => return Ok(Err(e.message().to_string())),
    };
    let mut ctx = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut n: u64 = 0;
    loop {
        match stream.reader.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                ctx.update(&buf[..k]);
                n = n.saturating_add(k as u64);
                if n > size {
                    return Ok(Err(format!("more than its {size} bytes")));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return match stream.store_failure() {
                    Some(s) => Err(format!("GET {}: {s}", b.describe(key))),
                    None => Ok(Err(e.to_string())),
                };
            }
        }
    }
    if n != size {
        return Ok(Err(format!("{n} bytes, {size} expected")));
    }
    Ok(Ok(ctx.finish()))
}

#[cfg(test)]
mod tests;
