//! The fleet's index (docs/format.md, Fleet, The index): under the reserved folder
//! `S3_PREFIX/fleet-index/`, a copy of each site's status (`status/SITE.json`, put by
//! the Pi right after its `SITE/last-backup-status.json`, the same bytes) and of its
//! last restore drill (`drill/SITE.json`, put by `fleet drill` after `SITE/drill.json`).
//!
//! One listing of this folder (1,000 sites a page) gives the ETag of every site's
//! status and drill: the fleet dashboard (fleet.rs) reads again only the entries whose
//! tag changed, and lists a site's archives only when its status changed. The copies in
//! the sites' folders stay the reference (the Pi, `recover`, an older dashboard read
//! them); a site without an index entry (a Pi not yet upgraded, or whose key may not
//! write here) is read the older way.

use crate::bucket::{self, Bucket};
use crate::config::OffsiteSettings;

pub use crate::config::FLEET_INDEX_DIR;

/// The kinds of index entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Status,
    Drill,
}

impl Entry {
    fn folder(self) -> &'static str {
        match self {
            Entry::Status => "status/",
            Entry::Drill => "drill/",
        }
    }
}

/// `S3_PREFIX/fleet-index/` (empty prefix: `fleet-index/`).
pub fn prefix(o: &OffsiteSettings) -> String {
    under(&o.prefix)
}

/// The index's folder under the S3_PREFIX `s3_prefix`.
fn under(s3_prefix: &str) -> String {
    if s3_prefix.is_empty() {
        format!("{FLEET_INDEX_DIR}/")
    } else {
        format!("{s3_prefix}/{FLEET_INDEX_DIR}/")
    }
}

/// The key of a site's entry.
pub fn key(o: &OffsiteSettings, entry: Entry, site: &str) -> String {
    key_in(&prefix(o), entry, site)
}

/// The key of a site's entry in the index folder `prefix`.
pub fn key_in(prefix: &str, entry: Entry, site: &str) -> String {
    format!("{prefix}{}{site}.json", entry.folder())
}

/// The entry a listed key is (`prefix`: `prefix(o)`), and its site; `None` for any
/// other key (a site never holds a `/`).
pub fn parse<'a>(prefix: &str, key: &'a str) -> Option<(Entry, &'a str)> {
    let rest = key.strip_prefix(prefix)?;
    for entry in [Entry::Status, Entry::Drill] {
        if let Some(site) = rest
            .strip_prefix(entry.folder())
            .and_then(|r| r.strip_suffix(".json"))
            .filter(|s| !s.is_empty() && !s.contains('/'))
        {
            return Some((entry, site));
        }
    }
    None
}

/// Puts a site's entry (once more when the connection failed).
pub fn put(
    b: &dyn Bucket,
    o: &OffsiteSettings,
    entry: Entry,
    site: &str,
    body: &[u8],
) -> Result<(), bucket::Error> {
    let k = key(o, entry, site);
    match b.put_bytes(&k, body, "application/json") {
        Err(e) if e.transport => b.put_bytes(&k, body, "application/json"),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_their_parse() {
        let p = under("neopro");
        assert_eq!(p, "neopro/fleet-index/");
        let k = key_in(&p, Entry::Status, "club-a.b");
        assert_eq!(k, "neopro/fleet-index/status/club-a.b.json");
        assert_eq!(parse(&p, &k), Some((Entry::Status, "club-a.b")));
        let d = key_in(&p, Entry::Drill, "x");
        assert_eq!(parse(&p, &d), Some((Entry::Drill, "x")));
        for other in [
            "neopro/fleet-index/status/.json",
            "neopro/fleet-index/status/a/b.json",
            "neopro/fleet-index/status/a.txt",
            "neopro/fleet-index/other/a.json",
            "neopro/a/last-backup-status.json",
        ] {
            assert_eq!(parse(&p, other), None, "{other}");
        }
        assert_eq!(
            key_in(&under(""), Entry::Drill, "s"),
            "fleet-index/drill/s.json"
        );
    }
}
