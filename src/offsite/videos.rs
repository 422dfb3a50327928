//! Videos offsite (docs/format.md, Videos offsite): with VIDEOS_OFFSITE, each round of
//! the offsite queue (mod.rs) first makes sure the bucket holds every video of the
//! archives it is about to send, content-addressed by SHA-256:
//! `S3_PREFIX/videos/sha256/<2 hex>/<64 hex>`, stored once per bucket whatever the
//! number of sites; with ENCRYPT_TO, `S3_PREFIX/videos/sha256-age/<SITE_ID>/<2 hex>/<64
//! hex>.age`, once per site (an age file for the site's recipients).
//!
//! A round, in this order (every step survives a kill -9: see docs/format.md):
//! 1. merge the video inventories of the archives waiting to be sent into the ledger
//!    (`BACKUP_DIR/offsite-videos.txt`: every hash a kept archive names, whether it is
//!    known to be in the bucket, and since which merged archive it is gone from the Pi);
//! 2. prune the ledger of hashes no kept archive (here or in the bucket) names any more;
//! 3. publish the ledger's hashes as `S3_PREFIX/SITE_ID/videos-referenced.txt` when they
//!    changed (before the uploads, so that `fleet gc` never removes an object this site
//!    is about to rely on);
//! 4. upload each video not yet known to be in the bucket: HEAD, then a PUT with
//!    `If-None-Match: *` streamed from the file (an existing object is never replaced),
//!    whose last bytes are held back until the file's SHA-256 is checked, so that a
//!    video that changed meanwhile never lands under a wrong name;
//! 5. then (mod.rs) the archive copies and the status.
//!
//! A night with no new video reads no video byte and sends no request per video: the
//! hashes come from the hash cache (videos/hashes.rs) and the ledger says what the bucket
//! holds. The ledger is rewritten only when it changes.

use std::collections::BTreeSet;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::bucket::{self, Bucket, ObjectBody};
use crate::config::{Config, OffsiteSettings};
use crate::status::Log;
use crate::store;
use crate::units::{hex, sha256_hex};
use crate::videos::hashes::{self, Key};
use crate::videos::inventory;

use super::ledger::LedgerEntry;
pub use super::ledger::{LEDGER_FILE, Ledger, parse_hash_list, read_inventory};
use super::video_put::{Sent, send_video};
use super::{MergedArchive, QueueState, site_prefix};

/// The folder of the videos under S3_PREFIX (a SITE_ID may not take this name).
pub use crate::config::VIDEOS_DIR;
/// The hashes this site's kept archives name, under `S3_PREFIX/SITE_ID/`.
pub const REFS_OBJECT: &str = "videos-referenced.txt";
/// Written by `fleet gc` when it removed an object a site named meanwhile (a race it
/// cannot exclude): the site uploads those videos again and removes the notice.
pub const MISSING_OBJECT: &str = "videos-missing.txt";
/// The largest object a single PUT may create on AWS S3.
const SINGLE_PUT_MAX: u64 = bucket::SINGLE_PUT_MAX;

/// `S3_PREFIX/` (empty prefix: ``).
pub fn root(o: &OffsiteSettings) -> String {
    if o.prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", o.prefix)
    }
}

/// The object key of a video for this site's settings.
pub fn object_key(o: &OffsiteSettings, site: &str, hash: &[u8; 32]) -> String {
    if o.encrypt_to.is_empty() {
        plain_key(o, hash)
    } else {
        age_key(o, site, hash)
    }
}

/// The plain (unencrypted) key of a hash, whoever uploaded it.
pub fn plain_key(o: &OffsiteSettings, hash: &[u8; 32]) -> String {
    let h = hex(hash);
    format!("{}{VIDEOS_DIR}/sha256/{}/{h}", root(o), &h[..2])
}

/// The key of `site`'s encrypted copy of a hash.
pub fn age_key(o: &OffsiteSettings, site: &str, hash: &[u8; 32]) -> String {
    let h = hex(hash);
    format!(
        "{}{VIDEOS_DIR}/sha256-age/{site}/{}/{h}.age",
        root(o),
        &h[..2]
    )
}

/// Where a site keeps its own copy of a video whose shared object is poisoned (see
/// video_put.rs): in its own folder, where no other site may write.
pub fn fallback_key(o: &OffsiteSettings, site: &str, hash: &[u8; 32]) -> String {
    let h = hex(hash);
    format!(
        "{}{VIDEOS_DIR}/{}/{h}",
        super::site_prefix(o, site),
        &h[..2]
    )
}

/// A video object of the bucket: its hash, and the site for an encrypted one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoObject {
    pub hash: [u8; 32],
    pub site: Option<String>,
}

/// Parses a key under `S3_PREFIX/videos/`; `None` for anything else.
pub fn parse_key(root: &str, key: &str) -> Option<VideoObject> {
    let rest = key.strip_prefix(root)?.strip_prefix(VIDEOS_DIR)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let (site, two, name) = match parts.as_slice() {
        ["", "sha256", two, name] => (None, *two, *name),
        ["", "sha256-age", site, two, name] => {
            (Some(site.to_string()), *two, name.strip_suffix(".age")?)
        }
        _ => return None,
    };
    let hash = inventory::parse_sha256(name)?;
    (two.len() == 2 && name.starts_with(two)).then_some(VideoObject { hash, site })
}

/// With VIDEOS_OFFSITE off: a site that had published references publishes an
/// explicit empty list once (so that `fleet gc` knows it names nothing any more and
/// need not wait for it), and forgets what it sent.
pub(super) fn unpublish(
    o: &OffsiteSettings,
    b: &dyn Bucket,
    site: &str,
    log: &Log,
    st: &mut QueueState,
) -> Result<(), bucket::Error> {
    let empty = format!("{}\n", super::ledger::REFS_HEADER);
    let hash = sha256_hex(empty.as_bytes());
    if st.refs_sent.is_empty() || st.refs_sent == hash {
        return Ok(());
    }
    let key = format!("{}{REFS_OBJECT}", site_prefix(o, site));
    b.put_bytes(&key, empty.as_bytes(), "text/plain")?;
    log.info(&format!(
        "offsite: VIDEOS_OFFSITE is off: {} now names no video",
        b.describe(&key)
    ));
    st.refs_sent = hash;
    st.videos_dest.clear();
    Ok(())
}

// ---------------------------------------------------------------------------------
// The round.

/// What `sync` hands back to the queue.
pub struct Synced {
    /// The pending archives whose videos were dealt with: the ones to send now.
    pub ready: Vec<String>,
    /// A video that could not be sent for a reason other than the network (the archive
    /// copies still go; the error shows in the status).
    pub error: Option<bucket::Error>,
}

/// The destination the `sent` flags are valid for.
fn destination(o: &OffsiteSettings, site: &str) -> String {
    let mut recipients = o.encrypt_to.clone();
    recipients.sort();
    sha256_hex(
        format!(
            "{}\n{}\n{}\n{site}\n{}",
            o.endpoint.origin(),
            o.bucket,
            o.prefix,
            recipients.join(" ")
        )
        .as_bytes(),
    )
}

/// The videos part of one round (see the module doc). `Err` stops the round: the
/// bucket could not be reached, or the ledger cannot be rebuilt.
#[allow(clippy::too_many_arguments)]
pub(super) fn sync(
    cfg: &Config,
    o: &OffsiteSettings,
    b: &dyn Bucket,
    site: &str,
    pending: &[String],
    log: &Log,
    cancel: &AtomicBool,
    st: &mut QueueState,
) -> Result<Synced, bucket::Error> {
    let dir = &cfg.backup_dir;
    let prefix = site_prefix(o, site);
    let refs_key = format!("{prefix}{REFS_OBJECT}");
    // 1. The ledger, rebuilt from what this site published when it is lost.
    let mut ledger = match Ledger::load(dir) {
        Ok(Some(l)) => l,
        Ok(None) if st.videos_merged.is_empty() => Ledger::default(),
        loaded => {
            let why = match loaded {
                Err(e) => format!("{LEDGER_FILE} is damaged ({e})"),
                _ => format!("{LEDGER_FILE} is missing"),
            };
            log.warn(&format!(
                "offsite: {why}: rebuilt from {}",
                b.describe(&refs_key)
            ));
            let published = match b.get(&refs_key)? {
                Some(b) => parse_hash_list(&String::from_utf8_lossy(&b)).unwrap_or_default(),
                None => Vec::new(),
            };
            st.refs_sent.clear();
            Ledger {
                entries: published
                    .into_iter()
                    .map(|hash| LedgerEntry {
                        hash,
                        gone: 0,
                        sent: false,
                        seen: false,
                    })
                    .collect(),
                dirty: true,
            }
        }
    };
    // Another bucket, prefix or set of recipients: nothing is known to be there. (The
    // new destination is recorded only with the ledger that forgot, so that a run
    // against a wrong endpoint costs nothing once the right one is back.)
    let dest = destination(o, site);
    let moved = st.videos_dest != dest;
    if moved {
        ledger.forget_sent();
        st.refs_sent.clear();
    }
    // 2. Merge the pending archives (oldest first).
    let mut ready = Vec::new();
    for name in pending {
        if st.videos_merged.iter().any(|m| &m.name == name) {
            ready.push(name.clone());
            continue;
        }
        let mut named: Vec<[u8; 32]> = Vec::new();
        let read = read_inventory(&dir.join(name), |l| {
            named.extend(l.sha256);
            true
        });
        match read {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                // Sent without its videos, and never merged: while it is kept, the
                // ledger is not pruned (it may name any hash).
                log.warn(&format!(
                    "offsite: cannot read the video inventory of {name} ({e}): its videos are not sent"
                ));
                ready.push(name.clone());
                continue;
            }
        }
        st.videos_seq += 1;
        ledger.merge(named, st.videos_seq);
        st.videos_merged.push(MergedArchive {
            name: name.clone(),
            seq: st.videos_seq,
        });
        ready.push(name.clone());
    }
    // What waits, as far as this Pi knows, even if the bucket cannot be reached now.
    st.videos_pending = ledger.unsent_current() as u64;
    // 3. What this site keeps: its archives here and in the bucket (and any notice of
    //    objects removed by `fleet gc` meanwhile).
    let listing = b.list(&prefix, Some("/"))?;
    let mut kept: BTreeSet<String> = store::list(dir)
        .map(|l| l.into_iter().map(|a| a.name).collect())
        .unwrap_or_default();
    for ob in &listing.objects {
        let name = ob.key.strip_prefix(&prefix).unwrap_or(&ob.key);
        let base = name.strip_suffix(".age").unwrap_or(name);
        if store::is_archive_name(base) {
            kept.insert(base.to_string());
        }
    }
    kept.extend(pending.iter().cloned());
    let notice_key = format!("{prefix}{MISSING_OBJECT}");
    let mut healed: Vec<[u8; 32]> = Vec::new();
    if listing.objects.iter().any(|ob| ob.key == notice_key)
        && let Some(text) = b.get(&notice_key)?
    {
        healed = parse_hash_list(&String::from_utf8_lossy(&text)).unwrap_or_default();
        for h in &healed {
            ledger.set_sent(h, false);
        }
        log.warn(&format!(
            "offsite: fleet gc removed {} video(s) this site names: they are sent again",
            healed.len()
        ));
    }
    // The list this site published is gone (removed by hand, lost with a bucket
    // restored from an old copy): publish it again, and look again at every video it
    // names (`fleet gc` may have removed some while no list protected them).
    if !st.refs_sent.is_empty() && !listing.objects.iter().any(|ob| ob.key == refs_key) {
        log.warn(&format!(
            "offsite: {} is gone from the bucket: published again, and every video it names is looked at again",
            b.describe(&refs_key)
        ));
        st.refs_sent.clear();
        ledger.forget_sent();
    }
    drop(listing);
    st.videos_merged.retain(|m| kept.contains(&m.name));
    // Prune only when every kept archive was merged: an archive we know nothing of may
    // name any hash.
    if kept
        .iter()
        .all(|k| st.videos_merged.iter().any(|m| &m.name == k))
        && let Some(oldest) = st.videos_merged.iter().map(|m| m.seq).min()
    {
        ledger.prune(oldest);
    }
    drop(kept);
    // 4. Publish the references before any upload (streamed: 65 bytes a video).
    let (len, refs_hash) = ledger.refs_digest();
    if refs_hash != st.refs_sent {
        b.put(
            &refs_key,
            ObjectBody {
                reader: Box::new(ledger.refs_reader()),
                len,
                sha256: inventory::parse_sha256(&refs_hash),
            },
            "text/plain",
        )?;
        st.refs_sent = refs_hash;
    }
    if ledger.dirty {
        ledger.save(dir).map_err(|e| {
            bucket::Error::local(format!("offsite: cannot write {LEDGER_FILE}: {e}"))
        })?;
        ledger.dirty = false;
    }
    if moved {
        st.videos_dest = dest;
    }
    // 5. Upload what the bucket may not have, from the newest merged archive's list.
    let mut error = None;
    st.videos_pending = ledger.unsent_current() as u64;
    if st.videos_pending > 0 {
        let newest = st
            .videos_merged
            .iter()
            .max_by_key(|m| m.seq)
            .map(|m| m.name.clone());
        if let Some(newest) = newest {
            error = upload_all(cfg, o, b, site, &newest, &mut ledger, log, cancel, st)?;
        }
        st.videos_pending = ledger.unsent_current() as u64;
    }
    // Each healed hash is sent again, or no longer named at all.
    let healed_all = healed.iter().all(|h| match ledger.find(h) {
        Ok(i) => ledger.entries[i].sent,
        Err(_) => true,
    });
    if !healed.is_empty() && error.is_none() && healed_all {
        b.delete(&notice_key)?;
    }
    Ok(Synced { ready, error })
}

/// Progress of the uploads, logged per video for the first few, then every 30 s.
struct Progress {
    sent: u64,
    bytes: u64,
    present: u64,
    last: Instant,
}

const LOG_EACH_FIRST: u64 = 10;

/// Uploads the current videos the ledger does not know to be in the bucket, streaming
/// the newest merged inventory (nothing per video is held in memory). `Ok(Some)`: a
/// video failed for a reason other than the network (the others were tried).
#[allow(clippy::too_many_arguments)]
fn upload_all(
    cfg: &Config,
    o: &OffsiteSettings,
    b: &dyn Bucket,
    site: &str,
    newest: &str,
    ledger: &mut Ledger,
    log: &Log,
    cancel: &AtomicBool,
    st: &mut QueueState,
) -> Result<Option<bucket::Error>, bucket::Error> {
    let dir = &cfg.backup_dir;
    let recipients: Vec<age::x25519::Recipient> =
        o.encrypt_to.iter().filter_map(|r| r.parse().ok()).collect();
    let root = cfg.videos_dir();
    let mut error: Option<bucket::Error> = None;
    let mut fatal: Option<bucket::Error> = None;
    let mut saved_at = Instant::now();
    let mut p = Progress {
        sent: 0,
        bytes: 0,
        present: 0,
        last: Instant::now(),
    };
    let todo = ledger.unsent_current() as u64;
    let read = read_inventory(&dir.join(newest), |l| {
        if cancel.load(Ordering::Relaxed) {
            return false;
        }
        let Some(hash) = l.sha256 else { return true };
        let wanted = ledger
            .find(&hash)
            .is_ok_and(|i| !ledger.entries[i].sent && ledger.entries[i].gone == 0);
        if !wanted {
            return true;
        }
        let path = inventory::abs_path(&root, &l.path);
        let shown = path.display();
        // Still the version the archive lists? (The upload checks the SHA-256 anyway.)
        let file = std::fs::metadata(&path).and_then(|m| {
            let unchanged = m.is_file()
                && m.len() == l.size
                && l.mtime
                    .is_none_or(|t| t == std::os::unix::fs::MetadataExt::mtime(&m));
            if unchanged {
                hashes::open_checked(&path, &Key::of_meta(&m))
            } else {
                Err(io::Error::other("it changed since the backup"))
            }
        });
        let file = match file {
            Ok(f) => f,
            Err(e) => {
                log.warn(&format!(
                    "offsite: video {shown} not sent ({e}); the next backup lists it again"
                ));
                return true;
            }
        };
        if l.size > SINGLE_PUT_MAX {
            // One PUT: AWS refuses it (EntityTooLarge, reported), MinIO, SeaweedFS and
            // others take it.
            log.warn(&format!(
                "offsite: video {shown} is over 5 GiB: sent in one PUT, which AWS S3 refuses"
            ));
        }
        let key = object_key(o, site, &hash);
        let started = Instant::now();
        let fallback = fallback_key(o, site, &hash);
        match send_video(b, &key, &fallback, file, l.size, &hash, &recipients, cancel) {
            Ok(sent) => {
                ledger.set_sent(&hash, true);
                match sent {
                    Sent::Uploaded(n) => {
                        st.videos_sent += 1;
                        st.video_bytes_sent += n;
                        p.sent += 1;
                        p.bytes += n;
                        if p.sent <= LOG_EACH_FIRST {
                            log.info(&format!(
                                "offsite: sent video {shown} to {} ({}, {:.1} s)",
                                b.describe(&key),
                                crate::units::human_size(n, 1),
                                started.elapsed().as_secs_f64()
                            ));
                        }
                    }
                    Sent::Poisoned(n) => {
                        st.videos_poisoned = st.videos_poisoned.saturating_add(1);
                        st.videos_sent += u64::from(n > 0);
                        st.video_bytes_sent = st.video_bytes_sent.saturating_add(n);
                        log.warn(&format!(
                            "offsite: {} is not the video {shown} (another site wrote other bytes under its name first): this site's own copy is at {}; the operator should remove the bad object",
                            b.describe(&key),
                            b.describe(&fallback)
                        ));
                    }
                    Sent::Present => {
                        p.present += 1;
                        if p.present <= LOG_EACH_FIRST {
                            log.info(&format!(
                                "offsite: video {shown} is already in the bucket ({})",
                                b.describe(&key)
                            ));
                        }
                    }
                }
            }
            Err(e) if e.transport => {
                fatal = Some(e);
                return false;
            }
            Err(e) => {
                log.warn(&format!("offsite: video {shown} not sent: {}", e.msg));
                error.get_or_insert(e);
            }
        }
        if p.last.elapsed().as_secs() >= 30 {
            log.info(&format!(
                "offsite: videos: {} sent ({}), {} already in the bucket, of {todo}",
                p.sent,
                crate::units::human_size(p.bytes, 1),
                p.present
            ));
            p.last = Instant::now();
        }
        if ledger.dirty && saved_at.elapsed().as_secs() >= 60 {
            if ledger.save(dir).is_ok() {
                ledger.dirty = false;
            }
            saved_at = Instant::now();
        }
        true
    });
    if ledger.dirty {
        match ledger.save(dir) {
            Ok(()) => ledger.dirty = false,
            Err(e) => log.warn(&format!("offsite: cannot write {LEDGER_FILE}: {e}")),
        }
    }
    if p.sent + p.present > 0 {
        log.info(&format!(
            "offsite: videos: {} sent ({}), {} already in the bucket",
            p.sent,
            crate::units::human_size(p.bytes, 1),
            p.present
        ));
    }
    if let Some(e) = fatal {
        return Err(e);
    }
    if let Err(e) = read {
        log.warn(&format!(
            "offsite: cannot read the video inventory of {newest} ({e}): videos not sent"
        ));
    }
    Ok(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: u8) -> [u8; 32] {
        [b; 32]
    }

    #[test]
    fn keys_round_trip() {
        let o = OffsiteSettings {
            endpoint: crate::http::client::Url::parse("http://127.0.0.1:1")
                .unwrap_or_else(|e| panic!("{e}")),
            bucket: "b".into(),
            region: "us-east-1".into(),
            prefix: "neopro".into(),
            access_key: "k".into(),
            secret_key: crate::config::Secret::new("s".into()),
            retention_days: 30,
            encrypt_to: vec![],
            videos: true,
        };
        let k = object_key(&o, "club", &h(0xab));
        assert_eq!(k, format!("neopro/videos/sha256/ab/{}", "ab".repeat(32)));
        assert_eq!(
            parse_key("neopro/", &k),
            Some(VideoObject {
                hash: h(0xab),
                site: None
            })
        );
        let enc = OffsiteSettings {
            encrypt_to: vec!["age1x".into()],
            ..o.clone()
        };
        let k = object_key(&enc, "club", &h(0x01));
        assert_eq!(
            k,
            format!("neopro/videos/sha256-age/club/01/{}.age", "01".repeat(32))
        );
        assert_eq!(
            parse_key("neopro/", &k).and_then(|v| v.site),
            Some("club".to_string())
        );
        for bad in [
            format!("neopro/videos/sha256/ac/{}", "ab".repeat(32)),
            format!("neopro/videos/sha256/ab/{}.age", "ab".repeat(32)),
            "neopro/videos/gc.txt".to_string(),
            format!("other/videos/sha256/ab/{}", "ab".repeat(32)),
        ] {
            assert_eq!(parse_key("neopro/", &bad), None, "{bad}");
        }
    }
}
