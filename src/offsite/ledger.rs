//! The videos ledger (docs/format.md, Videos offsite): `BACKUP_DIR/offsite-videos.txt`,
//! every hash a kept archive of this site names, whether the bucket is known to hold it,
//! and since which merged archive it is gone from the Pi; the text of the site's
//! `videos-referenced.txt` made from it, streamed; and the archives' inventories read
//! back, streamed.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use crate::units::Sha256;

use crate::fsutil;
use crate::units::hex;
use crate::videos::inventory::{self, InventoryLine};

/// The ledger, in BACKUP_DIR.
pub use crate::store::VIDEOS_LEDGER_FILE as LEDGER_FILE;
const LEDGER_MAGIC: &str = "# neopro-backup videos offsite v1: sha256 gone_since sent";
/// The first line of videos-referenced.txt.
pub const REFS_HEADER: &str = "# sha256 of every video named by this site's kept archives";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LedgerEntry {
    pub(super) hash: [u8; 32],
    /// The merge number of the first archive that no longer named it (0: the newest
    /// merged archive names it).
    pub(super) gone: u64,
    /// Known to be in the bucket.
    pub(super) sent: bool,
    /// Named by the archive being merged (not saved).
    pub(super) seen: bool,
}

/// Every hash a kept archive names, sorted by hash.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ledger {
    pub(super) entries: Vec<LedgerEntry>,
    /// Changed since it was read.
    pub(super) dirty: bool,
}

impl Ledger {
    pub(super) fn find(&self, h: &[u8; 32]) -> Result<usize, usize> {
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
                it.next().is_none().then_some(LedgerEntry {
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

    pub(super) fn save(&self, dir: &Path) -> io::Result<()> {
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
    pub(super) fn merge(&mut self, named: impl IntoIterator<Item = [u8; 32]>, seq: u64) {
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
            self.entries
                .extend(added.into_iter().map(|hash| LedgerEntry {
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
    pub(super) fn prune(&mut self, oldest_kept: u64) {
        let before = self.entries.len();
        self.entries.retain(|e| e.gone == 0 || e.gone > oldest_kept);
        self.dirty |= self.entries.len() != before;
    }

    pub(super) fn set_sent(&mut self, h: &[u8; 32], sent: bool) {
        if let Ok(i) = self.find(h)
            && self.entries[i].sent != sent
        {
            self.entries[i].sent = sent;
            self.dirty = true;
        }
    }

    pub(super) fn forget_sent(&mut self) {
        for e in &mut self.entries {
            self.dirty |= e.sent;
            e.sent = false;
        }
    }

    /// The length and SHA-256 of videos-referenced.txt (`refs_reader`), without making
    /// the text.
    pub(super) fn refs_digest(&self) -> (u64, String) {
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
        (n, hex(&h.finish()))
    }

    /// videos-referenced.txt as a stream: a header line, then every hash, sorted.
    pub(super) fn refs_reader(&self) -> RefsReader<'_> {
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

    pub(super) fn unsent_current(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.gone == 0 && !e.sent)
            .count()
    }
}

pub(super) struct RefsReader<'a> {
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
pub fn read_inventory(
    path: &Path,
    mut each: impl FnMut(InventoryLine) -> bool,
) -> io::Result<bool> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: u8) -> [u8; 32] {
        [b; 32]
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
            (refs.len() as u64, crate::units::sha256_hex(refs.as_bytes()))
        );
        assert!(parse_hash_list("zz\n").is_err());
    }
}
