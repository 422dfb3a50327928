//! `drill.json`, the record of a site's last restore drill beside its status
//! (docs/format.md, Fleet, Restore drills): its format, written by `fleet drill`
//! (drill.rs) and read by the fleet (fleet.rs).

// nanoserde's DeJson derive expands to code that clippy's question_mark lint flags.
#![allow(clippy::question_mark)]

use nanoserde::{DeJson, SerJson};

use crate::clock;

/// The object of a site's last drill, beside its status.
pub const DRILL_OBJECT: &str = "drill.json";
/// The format's version (docs/format.md, Restore drills).
pub const VERSION: u32 = 1;
/// A drill.json bigger than this is not read (a real one is under 2 KiB).
pub const MAX_DRILL_BYTES: u64 = 64 * 1024;
/// What the videos' check found (`drill.json`'s `videos`).
#[derive(Debug, Clone, Default, PartialEq, SerJson, DeJson)]
#[nserde(default)]
pub struct VideoCounts {
    /// Videos the archive names (lines of its inventory).
    pub checked: u64,
    /// In no place of the bucket.
    pub missing: u64,
    /// In the bucket, but no copy of the size the archive says.
    pub wrong_size: u64,
    /// `--deep`: the bytes were read and hashed.
    pub deep: bool,
    /// `--deep`: no copy of the right size hashes to its name.
    pub bad_hash: u64,
}

impl VideoCounts {
    pub fn ok(&self) -> bool {
        self.missing == 0 && self.wrong_size == 0 && self.bad_hash == 0
    }
}

/// `S3_PREFIX/SITE/drill.json` (docs/format.md, Restore drills).
#[derive(Debug, Clone, PartialEq, SerJson, DeJson)]
#[nserde(serialize_none_as_null)]
pub struct Record {
    pub version: u32,
    /// When the drill ended, ISO 8601 UTC (`2026-01-05T09:12:40Z`).
    pub when: String,
    /// The copy drilled (its name in the bucket); null when the site holds none.
    pub archive: Option<String>,
    pub ok: bool,
    pub error: Option<String>,
    /// null when the archive names no video by hash (made without VIDEOS_OFFSITE), or
    /// when the drill failed before the videos.
    pub videos: Option<VideoCounts>,
}

impl Record {
    /// Parses a drill.json; refuses another version (a newer program's format).
    pub fn parse(bytes: &[u8]) -> Result<Record, String> {
        let text =
            std::str::from_utf8(bytes).map_err(|_| format!("{DRILL_OBJECT} is not UTF-8 text"))?;
        let r = crate::json::parse::<Record>(text)
            .map_err(|e| format!("{DRILL_OBJECT} is not a valid drill record ({e})"))?;
        if r.version != VERSION {
            return Err(format!(
                "{DRILL_OBJECT} has version {}, this program reads version {VERSION} (upgrade it)",
                r.version
            ));
        }
        if clock::parse_iso(&r.when).is_none() {
            return Err(format!(
                "{DRILL_OBJECT}: \"when\" is not an ISO 8601 time: {:?}",
                r.when
            ));
        }
        Ok(r)
    }
}
