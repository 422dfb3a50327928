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
//! hashes come from the hash cache (backup/hashes.rs) and the ledger says what the bucket
//! holds. The ledger is rewritten only when it changes.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::backup::hashes::{self, Key};
use crate::backup::inventory::{self, Listed};
use crate::config::{Config, OffsiteSettings};
use crate::fsutil;
use crate::http::client::Payload;
use crate::status::Log;
use crate::store;
use crate::units::hex;

use super::s3::{self, Client, Head};
use super::{MergedArchive, QueueState, site_prefix};

/// The folder of the videos under S3_PREFIX (a SITE_ID may not take this name).
pub const VIDEOS_DIR: &str = "videos";
/// The ledger, in BACKUP_DIR.
pub const LEDGER_FILE: &str = "offsite-videos.txt";
const LEDGER_MAGIC: &str = "# neopro-backup videos offsite v1: sha256 gone_since sent";
/// The hashes this site's kept archives name, under `S3_PREFIX/SITE_ID/`.
pub const REFS_OBJECT: &str = "videos-referenced.txt";
/// Written by `fleet gc` when it removed an object a site named meanwhile (a race it
/// cannot exclude): the site uploads those videos again and removes the notice.
pub const MISSING_OBJECT: &str = "videos-missing.txt";
pub const REFS_HEADER: &str = "# sha256 of every video named by this site's kept archives";
/// The largest object a single PUT may create on AWS S3.
const SINGLE_PUT_MAX: u64 = s3::SINGLE_PUT_MAX;

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

// ---------------------------------------------------------------------------------
// The ledger.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    hash: [u8; 32],
    /// The merge number of the first archive that no longer named it (0: the newest
    /// merged archive names it).
    gone: u64,
    /// Known to be in the bucket.
    sent: bool,
    /// Named by the archive being merged (not saved).
    seen: bool,
}

/// Every hash a kept archive names, sorted by hash.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ledger {
    entries: Vec<Entry>,
    /// Changed since it was read.
    dirty: bool,
}

impl Ledger {
    fn find(&self, h: &[u8; 32]) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| e.hash.cmp(h))
    }

    fn parse(r: impl BufRead) -> Result<Ledger, String> {
        let mut entries = Vec::new();
        let mut ended = None;
        for (n, line) in r.lines().enumerate() {
            let line = line.map_err(|e| e.to_string())?;
            if ended.is_some() {
                return Err("text after the end line".into());
            }
            if n == 0 {
                if line != LEDGER_MAGIC {
                    return Err("unknown first line".into());
                }
                continue;
            }
            if let Some(c) = line.strip_prefix("# end ") {
                ended = Some(c.parse::<usize>().map_err(|_| "bad end line")?);
                continue;
            }
            let mut it = line.split(' ');
            let e = (|| {
                let hash = inventory::parse_sha256(it.next()?)?;
                let gone = it.next()?.parse().ok()?;
                let sent = match it.next()? {
                    "1" => true,
                    "0" => false,
                    _ => return None,
                };
                it.next().is_none().then_some(Entry {
                    hash,
                    gone,
                    sent,
                    seen: false,
                })
            })()
            .ok_or_else(|| format!("line {} is malformed", n + 1))?;
            entries.push(e);
        }
        if ended != Some(entries.len()) {
            return Err("truncated or miscounted".into());
        }
        if !entries.windows(2).all(|w| w[0].hash < w[1].hash) {
            return Err("not sorted".into());
        }
        Ok(Ledger {
            entries,
            dirty: false,
        })
    }

    /// Reads the ledger: `Ok(None)` when there is none, `Err` when it is damaged.
    pub fn load(dir: &Path) -> Result<Option<Ledger>, String> {
        match fsutil::open_regular_nofollow(&dir.join(LEDGER_FILE)) {
            Ok((f, _)) => Ledger::parse(BufReader::with_capacity(64 * 1024, f)).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    fn save(&self, dir: &Path) -> io::Result<()> {
        let (file, tmp) = fsutil::create_temp(dir, LEDGER_FILE, 0o600)?;
        let res = (|| {
            let mut w = BufWriter::with_capacity(64 * 1024, file);
            writeln!(w, "{LEDGER_MAGIC}")?;
            for e in &self.entries {
                writeln!(w, "{} {} {}", hex(&e.hash), e.gone, u8::from(e.sent))?;
            }
            writeln!(w, "# end {}", self.entries.len())?;
            let f = w.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, dir.join(LEDGER_FILE))?;
            fsutil::fsync_dir(dir)
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }

    /// Records archive number `seq`, which names the hashes `named` (in any order,
    /// repeats allowed): those become current, the current ones it does not name are
    /// gone since `seq`.
    fn merge(&mut self, named: impl IntoIterator<Item = [u8; 32]>, seq: u64) {
        let mut added: Vec<[u8; 32]> = Vec::new();
        for h in named {
            match self.find(&h) {
                Ok(i) => self.entries[i].seen = true,
                Err(_) => added.push(h),
            }
        }
        for e in &mut self.entries {
            if e.seen && e.gone != 0 {
                e.gone = 0;
                self.dirty = true;
            } else if !e.seen && e.gone == 0 {
                e.gone = seq;
                self.dirty = true;
            }
            e.seen = false;
        }
        if !added.is_empty() {
            added.sort_unstable();
            added.dedup();
            self.entries.reserve_exact(added.len());
            self.entries.extend(added.into_iter().map(|hash| Entry {
                hash,
                gone: 0,
                sent: false,
                seen: false,
            }));
            self.entries.sort_unstable_by_key(|a| a.hash);
            self.dirty = true;
        }
    }

    /// Forgets the hashes gone since an archive number at most `oldest_kept`: every
    /// archive that named them is gone.
    fn prune(&mut self, oldest_kept: u64) {
        let before = self.entries.len();
        self.entries.retain(|e| e.gone == 0 || e.gone > oldest_kept);
        self.dirty |= self.entries.len() != before;
    }

    fn set_sent(&mut self, h: &[u8; 32], sent: bool) {
        if let Ok(i) = self.find(h)
            && self.entries[i].sent != sent
        {
            self.entries[i].sent = sent;
            self.dirty = true;
        }
    }

    fn forget_sent(&mut self) {
        for e in &mut self.entries {
            self.dirty |= e.sent;
            e.sent = false;
        }
    }

    /// The length and SHA-256 of videos-referenced.txt (`refs_reader`), without making
    /// the text.
    fn refs_digest(&self) -> (u64, String) {
        let mut h = Sha256::new();
        let mut r = self.refs_reader();
        let mut buf = [0u8; 4096];
        let mut n = 0u64;
        while let Ok(k) = r.read(&mut buf) {
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            n += k as u64;
        }
        (n, hex(&h.finalize()))
    }

    /// videos-referenced.txt as a stream: a header line, then every hash, sorted.
    fn refs_reader(&self) -> RefsReader<'_> {
        let mut line = REFS_HEADER.as_bytes().to_vec();
        line.push(b'\n');
        RefsReader {
            ledger: self,
            next: 0,
            line,
            pos: 0,
        }
    }

    /// The text of videos-referenced.txt (tests).
    #[cfg(test)]
    pub fn refs_text(&self) -> String {
        let mut s = String::new();
        let _ = self.refs_reader().read_to_string(&mut s);
        s
    }

    fn unsent_current(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.gone == 0 && !e.sent)
            .count()
    }
}

struct RefsReader<'a> {
    ledger: &'a Ledger,
    next: usize,
    line: Vec<u8>,
    pos: usize,
}

impl Read for RefsReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < out.len() {
            if self.pos == self.line.len() {
                let Some(e) = self.ledger.entries.get(self.next) else {
                    break;
                };
                self.next += 1;
                self.line.clear();
                self.line.extend_from_slice(hex(&e.hash).as_bytes());
                self.line.push(b'\n');
                self.pos = 0;
            }
            let k = (self.line.len() - self.pos).min(out.len() - n);
            out[n..n + k].copy_from_slice(&self.line[self.pos..self.pos + k]);
            self.pos += k;
            n += k;
        }
        Ok(n)
    }
}

/// Parses a list of hashes (videos-referenced.txt, videos-missing.txt): `#` lines are
/// comments, every other line must be 64 lowercase hex digits.
pub fn parse_hash_list(text: &str) -> Result<Vec<[u8; 32]>, String> {
    let mut out = Vec::new();
    for (n, l) in text.lines().enumerate() {
        if l.starts_with('#') || l.is_empty() {
            continue;
        }
        out.push(
            inventory::parse_sha256(l.trim_end_matches('\r'))
                .ok_or_else(|| format!("line {} is not a SHA-256", n + 1))?,
        );
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

// ---------------------------------------------------------------------------------
// Reading an archive's inventory back.

/// Calls `each` with every line of the inventory of the archive at `path`, streamed
/// (an inventory of 20,000 videos is never held whole), until it returns false.
/// `Ok(false)` when the archive has no inventory. The inventory comes before any video
/// in the archive, so an INCLUDE_VIDEOS archive is not read to its end.
pub fn read_inventory(path: &Path, mut each: impl FnMut(Listed) -> bool) -> io::Result<bool> {
    let (f, _) = fsutil::open_regular_nofollow(path)?;
    let gz = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(64 * 1024, f));
    let mut ar = tar::Archive::new(gz);
    for entry in ar.entries()? {
        let entry = entry?;
        let is_inventory = {
            let p = entry.path_bytes();
            let mut parts = p.split(|&b| b == b'/');
            parts.next().is_some_and(|top| !top.is_empty())
                && parts.next() == Some(b"videos-inventory.txt")
                && parts.next().is_none()
        };
        if !is_inventory {
            continue;
        }
        let mut r = BufReader::new(entry);
        let mut line = Vec::new();
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line)? == 0 {
                return Ok(true);
            }
            if let Some(l) = std::str::from_utf8(&line)
                .ok()
                .and_then(|s| inventory::parse_line(s.trim_end_matches('\n')))
                && !each(l)
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

// ---------------------------------------------------------------------------------
// Uploads.

/// A reader of exactly `left` bytes of a file that hashes them and fails, instead of
/// handing over the last bytes, when the SHA-256 is not `expect`: the server then never
/// gets a complete body, so no object appears under a wrong name.
struct Verified<'a> {
    file: File,
    left: u64,
    hash: Sha256,
    expect: [u8; 32],
    cancel: &'a AtomicBool,
}

impl Read for Verified<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        if self.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("cancelled (shutdown)"));
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::other("the video shrank while it was sent"));
        }
        self.hash.update(&buf[..n]);
        self.left -= n as u64;
        if self.left == 0 {
            let got: [u8; 32] = std::mem::take(&mut self.hash).finalize().into();
            if got != self.expect {
                return Err(io::Error::other(
                    "the video changed since it was hashed: not sent",
                ));
            }
        }
        Ok(n)
    }
}

/// The ciphertext size of an age file of `plain` bytes after a header of `header`
/// bytes (the header includes the 16-byte payload nonce): 64 KiB chunks, each with a
/// 16-byte tag, and one (empty) chunk for an empty file.
pub fn age_size(header: u64, plain: u64) -> u64 {
    let chunks = plain.div_ceil(64 * 1024).max(1);
    header + plain + 16 * chunks
}

#[derive(Clone, Default)]
struct Sink(Rc<RefCell<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The age encryption of a `Verified` file, as a reader whose length is known before
/// the first byte (the PUT needs it). The last chunk is made only once the plaintext's
/// hash is checked.
struct Encrypting<'a> {
    src: Verified<'a>,
    enc: Option<age::stream::StreamWriter<Sink>>,
    out: Sink,
    pos: usize,
    buf: Vec<u8>,
}

impl<'a> Encrypting<'a> {
    fn new(src: Verified<'a>, recipients: &[age::x25519::Recipient]) -> io::Result<(Self, u64)> {
        let enc =
            age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| io::Error::other(e.to_string()))?;
        let out = Sink::default();
        let w = enc.wrap_output(out.clone())?;
        let header = out.0.borrow().len() as u64;
        let total = age_size(header, src.left);
        Ok((
            Encrypting {
                src,
                enc: Some(w),
                out,
                pos: 0,
                buf: vec![0u8; 64 * 1024],
            },
            total,
        ))
    }
}

impl Read for Encrypting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            {
                let out = self.out.0.borrow();
                if self.pos < out.len() {
                    let n = (out.len() - self.pos).min(buf.len());
                    buf[..n].copy_from_slice(&out[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            self.out.0.borrow_mut().clear();
            self.pos = 0;
            let Some(w) = self.enc.as_mut() else {
                return Ok(0);
            };
            let n = self.src.read(&mut self.buf)?;
            if n > 0 {
                w.write_all(&self.buf[..n])?;
            } else if let Some(w) = self.enc.take() {
                w.finish()?;
            }
        }
    }
}

/// What became of one video.
enum Sent {
    /// Uploaded now (bytes sent).
    Uploaded(u64),
    /// The bucket had it already.
    Present,
}

/// Sends one video unless the bucket has it: HEAD, then a PUT with `If-None-Match: *`.
fn send_video(
    client: &Client,
    key: &str,
    file: File,
    size: u64,
    hash: &[u8; 32],
    recipients: &[age::x25519::Recipient],
    cancel: &AtomicBool,
) -> Result<Sent, s3::Error> {
    match client.head(key)? {
        // A plain object is the video's bytes: another size is not this video.
        Head::Exists(n) if recipients.is_empty() && n != size => {
            return Err(s3::Error {
                msg: format!(
                    "s3://{}/{key} holds {n} bytes, not the video's {size}: it is not this video (the operator must remove it)",
                    client.bucket
                ),
                transport: false,
            });
        }
        Head::Exists(_) => return Ok(Sent::Present),
        Head::Missing | Head::Unknown => {}
    }
    let src = Verified {
        file,
        left: size,
        hash: Sha256::new(),
        expect: *hash,
        cancel,
    };
    let local = |e: io::Error| s3::Error {
        msg: format!("PUT s3://{}/{key}: {e}", client.bucket),
        transport: false,
    };
    let (body, payload_hash, len) = if recipients.is_empty() {
        // The server may check the body against its SHA-256 (AWS does).
        (
            Payload {
                reader: Box::new(src),
                len: size,
            },
            hex(hash),
            size,
        )
    } else {
        let (enc, len) = Encrypting::new(src, recipients).map_err(local)?;
        (
            Payload {
                reader: Box::new(enc),
                len,
            },
            "UNSIGNED-PAYLOAD".to_string(),
            len,
        )
    };
    let created = client.put_new(key, body, &payload_hash, "application/octet-stream")?;
    Ok(if created {
        Sent::Uploaded(len)
    } else {
        Sent::Present
    })
}

// ---------------------------------------------------------------------------------
// The round.

/// What `sync` hands back to the queue.
pub struct Synced {
    /// The pending archives whose videos were dealt with: the ones to send now.
    pub ready: Vec<String>,
    /// A video that could not be sent for a reason other than the network (the archive
    /// copies still go; the error shows in the status).
    pub error: Option<s3::Error>,
}

/// The destination the `sent` flags are valid for.
fn destination(o: &OffsiteSettings, site: &str) -> String {
    let mut recipients = o.encrypt_to.clone();
    recipients.sort();
    s3::sha256_hex(
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
    client: &Client,
    site: &str,
    pending: &[String],
    log: &Log,
    cancel: &AtomicBool,
    st: &mut QueueState,
) -> Result<Synced, s3::Error> {
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
                "offsite: {why}: rebuilt from s3://{}/{refs_key}",
                o.bucket
            ));
            let published = match client.get(&refs_key)? {
                Some(b) => parse_hash_list(&String::from_utf8_lossy(&b)).unwrap_or_default(),
                None => Vec::new(),
            };
            st.refs_sent.clear();
            Ledger {
                entries: published
                    .into_iter()
                    .map(|hash| Entry {
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
    let listing = client.list(&prefix, Some("/"))?;
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
        && let Some(b) = client.get(&notice_key)?
    {
        healed = parse_hash_list(&String::from_utf8_lossy(&b)).unwrap_or_default();
        for h in &healed {
            ledger.set_sent(h, false);
        }
        log.warn(&format!(
            "offsite: fleet gc removed {} video(s) this site names: they are sent again",
            healed.len()
        ));
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
        client.put_stream(
            &refs_key,
            Payload {
                reader: Box::new(ledger.refs_reader()),
                len,
            },
            &refs_hash,
            "text/plain",
        )?;
        st.refs_sent = refs_hash;
    }
    if ledger.dirty {
        ledger.save(dir).map_err(|e| s3::Error {
            msg: format!("offsite: cannot write {LEDGER_FILE}: {e}"),
            transport: false,
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
            error = upload_all(cfg, o, client, site, &newest, &mut ledger, log, cancel, st)?;
        }
        st.videos_pending = ledger.unsent_current() as u64;
    }
    // Each healed hash is sent again, or no longer named at all.
    let healed_all = healed.iter().all(|h| match ledger.find(h) {
        Ok(i) => ledger.entries[i].sent,
        Err(_) => true,
    });
    if !healed.is_empty() && error.is_none() && healed_all {
        client.delete(&notice_key)?;
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
    client: &Client,
    site: &str,
    newest: &str,
    ledger: &mut Ledger,
    log: &Log,
    cancel: &AtomicBool,
    st: &mut QueueState,
) -> Result<Option<s3::Error>, s3::Error> {
    let dir = &cfg.backup_dir;
    let recipients: Vec<age::x25519::Recipient> =
        o.encrypt_to.iter().filter_map(|r| r.parse().ok()).collect();
    let root = cfg.videos_dir();
    let mut error: Option<s3::Error> = None;
    let mut fatal: Option<s3::Error> = None;
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
        match send_video(client, &key, file, l.size, &hash, &recipients, cancel) {
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
                                "offsite: sent video {shown} to s3://{}/{key} ({}, {:.1} s)",
                                o.bucket,
                                crate::units::human_size(n, 1),
                                started.elapsed().as_secs_f64()
                            ));
                        }
                    }
                    Sent::Present => {
                        p.present += 1;
                        if p.present <= LOG_EACH_FIRST {
                            log.info(&format!(
                                "offsite: video {shown} is already in the bucket (s3://{}/{key})",
                                o.bucket
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

    #[test]
    fn ledger_merge_prune_and_text() {
        let mut l = Ledger::default();
        l.merge([h(2), h(1), h(2)], 1);
        l.set_sent(&h(1), true);
        l.merge([h(2), h(3)], 2); // 1 gone since archive 2
        assert_eq!(l.unsent_current(), 2);
        l.merge([h(3), h(1)], 3); // 1 is back, 2 gone since 3
        let gone: Vec<(u8, u64, bool)> = l
            .entries
            .iter()
            .map(|e| (e.hash[0], e.gone, e.sent))
            .collect();
        assert_eq!(gone, [(1, 0, true), (2, 3, false), (3, 0, false)]);
        l.prune(2); // archives 2 and 3 kept: 2 still named by archive 2
        assert_eq!(l.entries.len(), 3);
        l.prune(3); // only archive 3 kept
        assert_eq!(l.entries.len(), 2);
        let text = {
            let mut v = Vec::new();
            writeln!(v, "{LEDGER_MAGIC}").ok();
            for e in &l.entries {
                writeln!(v, "{} {} {}", hex(&e.hash), e.gone, u8::from(e.sent)).ok();
            }
            writeln!(v, "# end {}", l.entries.len()).ok();
            v
        };
        l.dirty = false;
        assert_eq!(Ledger::parse(text.as_slice()).ok(), Some(l.clone()));
        assert!(Ledger::parse(&text[..text.len() - 3]).is_err());
        let refs = l.refs_text();
        assert_eq!(parse_hash_list(&refs).ok(), Some(vec![h(1), h(3)]));
        assert_eq!(
            l.refs_digest(),
            (refs.len() as u64, hex(&Sha256::digest(refs.as_bytes())))
        );
        assert!(parse_hash_list("zz\n").is_err());
    }

    #[test]
    fn age_sizes_match_the_age_crate() {
        let id = age::x25519::Identity::generate();
        let r = id.to_public();
        for n in [0usize, 1, 65_535, 65_536, 65_537, 200_000] {
            let enc = age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
                .unwrap_or_else(|e| panic!("{e}"));
            let out = Sink::default();
            let mut w = enc
                .wrap_output(out.clone())
                .unwrap_or_else(|e| panic!("{e}"));
            let header = out.0.borrow().len() as u64;
            w.write_all(&vec![7u8; n]).unwrap_or_else(|e| panic!("{e}"));
            w.finish().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                out.0.borrow().len() as u64,
                age_size(header, n as u64),
                "{n}"
            );
        }
    }
}
