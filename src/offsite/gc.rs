//! `fleet gc [--apply]`: the operator's garbage collection of the video objects
//! (docs/format.md, Videos offsite), with the operator's credentials (the Pis can
//! never delete under `videos/`).
//!
//! An object is removed only when no site references it and it is older than
//! S3_RETENTION_DAYS. A plain object `videos/sha256/…/<hash>` is referenced when any
//! site's `videos-referenced.txt` lists its hash; an encrypted one
//! `videos/sha256-age/<site>/…/<hash>.age` when that site's list does.
//!
//! Order, so that a site running at the same time never ends up naming a missing
//! object: (1) read every site's list, (2) list the objects, (3) just before removing,
//! read every list again and spare whatever is referenced now, (4) remove, (5) read
//! the lists once more: a hash removed in (4) that a site started to name between (3)
//! and (4) (it found the object still there) is written to that site's
//! `videos-missing.txt`, and the site uploads it again at its next round. A site that
//! cannot be read stops the whole collection: an unreadable list is never taken as
//! "references nothing".

use std::collections::{BTreeMap, BTreeSet};

use crate::bucket::{Bucket, Object};
use crate::clock;
use crate::config::OffsiteSettings;
use crate::units::hex;

use super::videos::{self, MISSING_OBJECT, REFS_OBJECT, VIDEOS_DIR, parse_hash_list};

/// Every site's referenced hashes.
type Refs = BTreeMap<String, BTreeSet<[u8; 32]>>;

/// One video object of the bucket, as judged.
#[derive(Debug, Clone)]
pub struct Judged {
    pub key: String,
    pub size: u64,
    /// Seconds since it was written (None: unknown date, never removed).
    pub age_secs: Option<i64>,
    pub hash: [u8; 32],
    pub site: Option<String>,
}

/// What `fleet gc` found.
#[derive(Debug, Default)]
pub struct GcPlan {
    /// (site, hashes it references).
    pub sites: Vec<(String, usize)>,
    pub objects: usize,
    pub bytes: u64,
    pub referenced: usize,
    /// Unreferenced but not older than S3_RETENTION_DAYS (or of unknown date).
    pub young: usize,
    /// Keys under videos/ that are not video objects: never touched.
    pub foreign: Vec<String>,
    pub doomed: Vec<Judged>,
    pub retention_days: u32,
}

/// What `--apply` did.
#[derive(Debug, Default)]
pub struct Applied {
    pub removed: Vec<Judged>,
    /// Spared at the last look: a site started to reference them.
    pub spared: usize,
    /// (site, hashes) told to upload again.
    pub notices: Vec<(String, usize)>,
    pub errors: Vec<String>,
}

fn root(o: &OffsiteSettings) -> String {
    videos::root(o)
}

/// Reads every site's videos-referenced.txt. A site without one names nothing, unless
/// its status says VIDEOS_OFFSITE is on: its list was lost, and it publishes it again
/// at its next round; until then nothing can be removed (the error names the sites
/// waited for).
fn read_refs(b: &dyn Bucket, o: &OffsiteSettings) -> Result<Refs, String> {
    let root = root(o);
    let listing = b.list(&root, Some("/")).map_err(|e| e.msg)?;
    let mut refs = Refs::new();
    let mut waiting = Vec::new();
    for p in &listing.prefixes {
        let site = p.strip_prefix(&root).unwrap_or(p).trim_end_matches('/');
        if site.is_empty() || crate::config::reserved_site_id(site).is_some() {
            continue;
        }
        let key = format!("{p}{REFS_OBJECT}");
        let set = match b.get(&key).map_err(|e| e.msg)? {
            Some(text) => parse_hash_list(&String::from_utf8_lossy(&text))
                .map_err(|e| format!("{} is damaged ({e}): nothing removed", b.describe(&key)))?,
            None => {
                if says_videos_on(b, &format!("{p}{}", super::STATUS_OBJECT))? {
                    waiting.push(site.to_string());
                }
                Vec::new()
            }
        };
        refs.insert(site.to_string(), set.into_iter().collect());
    }
    if !waiting.is_empty() {
        return Err(format!(
            "{} site(s) have VIDEOS_OFFSITE on but no {REFS_OBJECT}: {} (each publishes it again at its next round); nothing removed",
            waiting.len(),
            waiting.join(", ")
        ));
    }
    Ok(refs)
}

/// Whether a site's status says VIDEOS_OFFSITE is on. A status that cannot be read
/// is taken as "on": it might be.
fn says_videos_on(b: &dyn Bucket, key: &str) -> Result<bool, String> {
    Ok(match b.get(key).map_err(|e| e.msg)? {
        None => false,
        Some(text) => std::str::from_utf8(&text)
            .ok()
            .and_then(|t| crate::json::parse::<crate::status::Status>(t).ok())
            .is_none_or(|st| st.offsite.is_some_and(|o| o.videos)),
    })
}

fn referenced(refs: &Refs, j: &Judged) -> bool {
    match &j.site {
        None => refs.values().any(|s| s.contains(&j.hash)),
        Some(site) => refs.get(site).is_some_and(|s| s.contains(&j.hash)),
    }
}

fn age_secs(ob: &Object, now: i64) -> Option<i64> {
    clock::parse_iso(&ob.last_modified).map(|t| now.saturating_sub(t))
}

/// How old an unreferenced object must be to go: S3_RETENTION_DAYS, or
/// NEOPRO_GC_MIN_AGE_SECS (for tests, which cannot wait days).
fn min_age_secs(o: &OffsiteSettings) -> i64 {
    min_age(
        std::env::var("NEOPRO_GC_MIN_AGE_SECS").ok().as_deref(),
        o.retention_days,
    )
}

/// `min_age_secs` from the variable's value (a negative or malformed one is ignored).
fn min_age(var: Option<&str>, retention_days: u32) -> i64 {
    var.and_then(|v| v.parse::<i64>().ok())
        .filter(|s| *s >= 0)
        .unwrap_or(i64::from(retention_days) * 86_400)
}

#[cfg(test)]
#[test]
fn the_test_age_limit_replaces_the_retention_only_when_it_is_a_whole_number() {
    assert_eq!(min_age(None, 30), 2_592_000);
    assert_eq!(min_age(Some("0"), 30), 0);
    assert_eq!(min_age(Some("5"), 30), 5);
    assert_eq!(min_age(Some("-1"), 30), 2_592_000);
    assert_eq!(min_age(Some("x"), 1), 86_400);
}

/// The dry run: what would be removed from `b`.
pub fn plan(b: &dyn Bucket, o: &OffsiteSettings, now: i64) -> Result<GcPlan, String> {
    let refs = read_refs(b, o)?;
    let root = root(o);
    let listing = b
        .list(&format!("{root}{VIDEOS_DIR}/"), None)
        .map_err(|e| e.msg)?;
    let min_age = min_age_secs(o);
    let mut p = GcPlan {
        sites: refs.iter().map(|(s, h)| (s.clone(), h.len())).collect(),
        retention_days: o.retention_days,
        ..GcPlan::default()
    };
    for ob in listing.objects {
        let Some(v) = videos::parse_key(&root, &ob.key) else {
            p.foreign.push(ob.key);
            continue;
        };
        p.objects += 1;
        p.bytes = p.bytes.saturating_add(ob.size);
        let j = Judged {
            age_secs: age_secs(&ob, now),
            key: ob.key,
            size: ob.size,
            hash: v.hash,
            site: v.site,
        };
        if referenced(&refs, &j) {
            p.referenced += 1;
        } else if j.age_secs.is_none_or(|a| a < min_age) {
            p.young += 1;
        } else {
            p.doomed.push(j);
        }
    }
    Ok(p)
}

/// `--apply`: removes what `plan` found, with the last looks of the module doc.
pub fn apply(b: &dyn Bucket, o: &OffsiteSettings, plan: &GcPlan) -> Result<Applied, String> {
    let mut out = Applied::default();
    // (3) The second look.
    let refs = read_refs(b, o)?;
    for j in &plan.doomed {
        if referenced(&refs, j) {
            out.spared += 1;
            continue;
        }
        match b.delete(&j.key) {
            Ok(()) => out.removed.push(j.clone()),
            Err(e) => out.errors.push(e.msg),
        }
    }
    // (5) The last look: who started to name a removed object meanwhile.
    let after = read_refs(b, o)?;
    let mut notices: BTreeMap<String, BTreeSet<[u8; 32]>> = BTreeMap::new();
    for j in &out.removed {
        for (site, hashes) in &after {
            let names = hashes.contains(&j.hash) && j.site.as_ref().is_none_or(|s| s == site);
            if names {
                notices.entry(site.clone()).or_default().insert(j.hash);
            }
        }
    }
    for (site, hashes) in notices {
        let key = format!("{}{site}/{MISSING_OBJECT}", root(o));
        let mut all: BTreeSet<[u8; 32]> = match b.get(&key) {
            Ok(Some(text)) => parse_hash_list(&String::from_utf8_lossy(&text))
                .unwrap_or_default()
                .into_iter()
                .collect(),
            _ => BTreeSet::new(),
        };
        all.extend(hashes.iter().copied());
        let mut text = String::from(
            "# removed by fleet gc while this site started to name them: send again\n",
        );
        for h in &all {
            text.push_str(&hex(h));
            text.push('\n');
        }
        match b.put_bytes(&key, text.as_bytes(), "text/plain") {
            Ok(()) => out.notices.push((site, hashes.len())),
            Err(e) => out.errors.push(e.msg),
        }
    }
    Ok(out)
}
