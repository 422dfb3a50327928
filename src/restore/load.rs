//! Step 1 of a restore: read the archive once and accept it or refuse it whole. The
//! gzip CRC, the tar structure, safe paths in one top folder, MANIFEST.sha256, and only
//! the names a backup writes; the small files are kept in memory for the next steps.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::Path;

use crate::backup::archive::{self, EntrySeen, MANIFEST};
use crate::store;
use crate::videos::inventory;

use super::{FILES, INVENTORY, SYSINFO};

/// One of FILES as found in the archive.
pub(super) struct Archived {
    pub(super) content: Vec<u8>,
    pub(super) size: u64,
}

/// An archive that passed every check.
pub(super) struct Loaded {
    /// Written by the old auto-backup.sh (top folder `YYYYMMDD-HHMMSS`, no manifest).
    pub(super) old_format: bool,
    pub(super) files: HashMap<&'static str, Archived>,
    /// The archive's video inventory (path, size), when it has one.
    pub(super) inventory: Option<Vec<(Vec<u8>, u64)>>,
    /// Video files held in the archive itself (INCLUDE_VIDEOS); never restored.
    pub(super) archived_videos: usize,
}

pub(super) fn lossy(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// Accepts only what a backup writes inside its top folder: FILES, the inventory,
/// system-info.txt, MANIFEST.sha256, and regular files and folders under `videos/`.
/// (Links, devices and paths that leave the folder never get here: `read_entries` refuses them.)
pub(super) fn check_names(seen: &[EntrySeen]) -> Result<(), String> {
    let mut files = BTreeSet::new();
    for e in seen {
        let p = e.path.as_slice();
        let under_videos = p.strip_prefix(b"videos/").is_some_and(|r| !r.is_empty());
        let ok = if e.is_dir {
            p == b"videos" || under_videos
        } else {
            under_videos
                || FILES.iter().any(|f| f.as_bytes() == p)
                || [INVENTORY, SYSINFO, MANIFEST]
                    .iter()
                    .any(|f| f.as_bytes() == p)
        };
        if !ok {
            return Err(format!(
                "unexpected {} {:?} in the archive (a backup holds only {}, {INVENTORY}, \
                 {SYSINFO}, {MANIFEST} and videos/)",
                if e.is_dir { "folder" } else { "file" },
                lossy(p),
                FILES.join(", ")
            ));
        }
        if !e.is_dir && !files.insert(p) {
            return Err(format!("{:?} appears twice in the archive", lossy(p)));
        }
    }
    Ok(())
}

/// Reads and checks a whole archive; any problem refuses it. An archive of the old
/// auto-backup.sh passes the same checks (one top folder, safe paths, only files and
/// folders, only the names a backup holds, within the bounds of `read_entries`), but
/// it has no manifest to compare with (docs/format.md, Old-format archives).
pub(super) fn load(
    reader: impl Read,
    expected_top: Option<&str>,
    videos_dir: &Path,
) -> Result<Loaded, String> {
    let keep = |p: &[u8]| {
        FILES.iter().any(|f| f.as_bytes() == p)
            || p == INVENTORY.as_bytes()
            || p == MANIFEST.as_bytes()
    };
    let (top, seen) = archive::read_entries(reader, expected_top, &keep)?;
    check_names(&seen)?;
    let old_format = store::is_old_top(&top);
    if !old_format || archive::has_manifest(&seen) {
        let report = archive::check_manifest(&seen);
        if let Some(e) = report.error {
            return Err(format!("it does not match its {MANIFEST}: {e}"));
        }
    }
    let mut loaded = Loaded {
        old_format,
        files: HashMap::new(),
        inventory: None,
        archived_videos: 0,
    };
    for e in seen {
        if e.is_dir {
            continue;
        }
        if e.path.starts_with(b"videos/") {
            loaded.archived_videos += 1;
        } else if e.path == INVENTORY.as_bytes() {
            let raw = e.content.as_deref().unwrap_or_default();
            loaded.inventory = Some(if raw.starts_with(b"#") || !old_format {
                inventory::parse(&String::from_utf8_lossy(raw))
            } else {
                inventory::parse_old(raw, videos_dir)
            });
        } else if let Some(name) = FILES.iter().find(|f| f.as_bytes() == e.path) {
            loaded.files.insert(
                name,
                Archived {
                    content: e.content.unwrap_or_default(),
                    size: e.size,
                },
            );
        }
    }
    Ok(loaded)
}
