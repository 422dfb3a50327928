//! The video hash cache (docs/format.md, BACKUP_DIR): the SHA-256 of every video, keyed
//! by device, inode, size, mtime (ns) and ctime (ns: no user can set it, so a file
//! rewritten in place with its size and mtime put back still gets a new key), so that
//! a night with no new or changed video
//! reads no video bytes, and a new video is read once to be hashed (and once more to be
//! uploaded, by offsite/videos.rs).
//!
//! `BACKUP_DIR/videos-sha256.cache`, text, one line per video:
//! `dev ino size mtime mtime_ns ctime ctime_ns sha256` (decimal, then 64 lowercase
//! hex), after the `MAGIC` line and before a closing `# end N` line (N records). A v1
//! file (without the ctime) is from an older version: it is rebuilt once, with a line
//! in the log that says so (every video is hashed once more). It holds the videos of
//! the last backup only. It is rewritten only when it changes (an SD card wears), by an
//! atomic replace (temp, fsync, rename, fsync of the folder); a file that is missing,
//! truncated or corrupt in any way is ignored as a whole and rebuilt (every video hashed
//! again), never trusted in part.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::fsutil;
use crate::store::VIDEO_HASH_CACHE_FILE;
use crate::videos::inventory::{self, Video, Videos};

/// The crate's one SHA-256, under the name offsite/video_put.rs and restore/videos.rs
/// import.
pub use crate::units::Sha256 as Hasher;

const MAGIC: &str =
    "# neopro-backup video SHA-256 cache v2: dev ino size mtime mtime_ns ctime ctime_ns sha256";
/// The first line of the format before ctime was in the key.
const MAGIC_V1: &str = "# neopro-backup video SHA-256 cache v1:";

/// What identifies one version of a video file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: i64,
    pub mtime_ns: u32,
    pub ctime: i64,
    pub ctime_ns: u32,
}

impl Key {
    pub fn of_meta(m: &std::fs::Metadata) -> Key {
        Key {
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            mtime: m.mtime(),
            mtime_ns: u32::try_from(m.mtime_nsec()).unwrap_or(0),
            ctime: m.ctime(),
            ctime_ns: u32::try_from(m.ctime_nsec()).unwrap_or(0),
        }
    }

    pub fn of_video(v: &Video<'_>) -> Key {
        Key {
            dev: v.dev,
            ino: v.ino,
            size: v.size,
            mtime: v.mtime,
            mtime_ns: v.mtime_ns,
            ctime: v.ctime,
            ctime_ns: v.ctime_ns,
        }
    }
}

/// The cache as read from BACKUP_DIR: records sorted by key.
#[derive(Debug, Default)]
pub struct HashCache {
    recs: Vec<(Key, [u8; 32])>,
}

fn parse_record(line: &str) -> Option<(Key, [u8; 32])> {
    let mut it = line.split(' ');
    let key = Key {
        dev: it.next()?.parse().ok()?,
        ino: it.next()?.parse().ok()?,
        size: it.next()?.parse().ok()?,
        mtime: it.next()?.parse().ok()?,
        mtime_ns: it.next()?.parse().ok().filter(|n| *n < 1_000_000_000)?,
        ctime: it.next()?.parse().ok()?,
        ctime_ns: it.next()?.parse().ok().filter(|n| *n < 1_000_000_000)?,
    };
    let hash = inventory::parse_sha256(it.next()?)?;
    it.next().is_none().then_some((key, hash))
}

/// Why a v1 cache is not read.
const OLD_VERSION: &str = "v1 (no ctime)";

impl HashCache {
    /// Reads the cache; a missing file is an empty cache, a corrupt one is an empty cache
    /// and a warning (it is rebuilt).
    pub fn load(dir: &Path) -> (HashCache, Option<String>) {
        let f = match fsutil::open_regular_nofollow(&dir.join(VIDEO_HASH_CACHE_FILE)) {
            Ok((f, _)) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (HashCache::default(), None),
            Err(e) => {
                return (
                    HashCache::default(),
                    Some(format!(
                        "cannot read {VIDEO_HASH_CACHE_FILE} ({e}): every video is hashed again"
                    )),
                );
            }
        };
        match HashCache::parse(BufReader::with_capacity(64 * 1024, f)) {
            Ok(c) => (c, None),
            Err(why) if why == OLD_VERSION => (
                HashCache::default(),
                Some(format!(
                    "{VIDEO_HASH_CACHE_FILE} is from an older version (its key had no ctime): rebuilt, every video is hashed once more"
                )),
            ),
            Err(why) => (
                HashCache::default(),
                Some(format!(
                    "{VIDEO_HASH_CACHE_FILE} is damaged ({why}): rebuilt, every video is hashed again"
                )),
            ),
        }
    }

    fn parse(mut r: impl BufRead) -> Result<HashCache, String> {
        let mut line = String::new();
        let mut recs = Vec::new();
        let mut n = 0u64;
        let mut ended = None;
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
            n += 1;
            let l = line
                .strip_suffix('\n')
                .ok_or_else(|| format!("line {n} is cut"))?;
            if ended.is_some() {
                return Err(format!("line {n} after the end line"));
            }
            if n == 1 {
                if l.starts_with(MAGIC_V1) {
                    return Err(OLD_VERSION.into());
                }
                if l != MAGIC {
                    return Err("unknown first line".into());
                }
            } else if let Some(count) = l.strip_prefix("# end ") {
                ended = Some(count.parse::<usize>().map_err(|_| "bad end line")?);
            } else {
                recs.push(parse_record(l).ok_or_else(|| format!("line {n} is malformed"))?);
            }
        }
        match ended {
            Some(count) if count == recs.len() => {}
            Some(_) => return Err("record count mismatch".into()),
            None => return Err("no end line (truncated)".into()),
        }
        recs.sort_unstable_by_key(|a| a.0);
        recs.dedup_by(|a, b| a.0 == b.0);
        Ok(HashCache { recs })
    }

    fn find(&self, k: &Key) -> Option<usize> {
        self.recs.binary_search_by(|r| r.0.cmp(k)).ok()
    }

    pub fn get(&self, k: &Key) -> Option<[u8; 32]> {
        self.find(k).map(|i| self.recs[i].1)
    }

    pub fn len(&self) -> usize {
        self.recs.len()
    }
}

/// What `fill` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Filled {
    /// Videos whose hash came from the cache.
    pub cached: usize,
    /// Videos read and hashed.
    pub hashed: usize,
    pub bytes_read: u64,
    /// Videos left without a hash (unreadable, or changed while read).
    pub failed: usize,
    /// The cache file was rewritten.
    pub saved: bool,
}

/// Reads `path` whole and returns its SHA-256, if the file is still the version `want`
/// describes before and after the read (else an error: it changed meanwhile).
pub fn hash_file(path: &Path, want: &Key, cancel: &AtomicBool) -> io::Result<[u8; 32]> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    if Key::of_meta(&meta) != *want {
        return Err(io::Error::other("it changed after it was listed"));
    }
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut left = want.size;
    let mut f = f;
    while left > 0 {
        if cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("backup cancelled (shutdown)"));
        }
        let want_n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = f.read(&mut buf[..want_n])?;
        if n == 0 {
            return Err(io::Error::other("it shrank while it was read"));
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    if Key::of_meta(&f.metadata()?) != *want {
        return Err(io::Error::other("it changed while it was read"));
    }
    Ok(h.finish())
}

/// One backup's use of the cache: the cached hashes applied to the videos at `start`,
/// the missing ones computed by `hash_missing` (VIDEOS_OFFSITE) or learned while the
/// videos are copied into the archive (INCLUDE_VIDEOS), and the cache written back by
/// `finish` when anything changed.
pub struct Session {
    used: Vec<bool>,
    /// The cache file could not be trusted: rewrite it whatever happens.
    damaged: bool,
    pub filled: Filled,
}

/// Gives every video of `videos` whose key is in the cache its SHA-256.
pub fn start(dir: &Path, videos: &mut Videos, warn: &mut dyn FnMut(String)) -> Session {
    let (cache, problem) = HashCache::load(dir);
    let damaged = problem.is_some();
    if let Some(p) = problem {
        warn(p);
    }
    let mut used = vec![false; cache.len()];
    let mut filled = Filled::default();
    for idx in 0..videos.len() {
        let Some(v) = videos.get(idx) else { break };
        if let Some(i) = cache.find(&Key::of_video(&v)) {
            used[i] = true;
            filled.cached += 1;
            let hash = cache.recs[i].1;
            videos.set_sha256(idx, hash);
        }
    }
    Session {
        used,
        damaged,
        filled,
    }
}

impl Session {
    /// Reads and hashes every video still without a hash. `Err` only when cancelled;
    /// a video that cannot be hashed is a warning and stays without a hash.
    pub fn hash_missing(
        &mut self,
        root: &Path,
        videos: &mut Videos,
        cancel: &AtomicBool,
        warn: &mut dyn FnMut(String),
    ) -> Result<(), String> {
        for idx in 0..videos.len() {
            let Some(v) = videos.get(idx) else { break };
            if v.sha256.is_some() {
                continue;
            }
            let key = Key::of_video(&v);
            let path = inventory::abs_path(root, v.rel);
            match hash_file(&path, &key, cancel) {
                Ok(hash) => {
                    self.learned(key.size);
                    videos.set_sha256(idx, hash);
                }
                Err(_) if cancel.load(Ordering::Relaxed) => {
                    return Err("backup cancelled (shutdown)".to_string());
                }
                Err(e) => {
                    self.filled.failed += 1;
                    warn(format!(
                        "cannot hash video {}: {e}; listed without its SHA-256",
                        path.display()
                    ));
                }
            }
        }
        Ok(())
    }

    /// A hash computed elsewhere (while the video was copied into the archive).
    pub fn learned(&mut self, bytes: u64) {
        self.filled.hashed += 1;
        self.filled.bytes_read += bytes;
    }

    /// Writes the cache back when it changed: a video hashed, or one gone.
    pub fn finish(mut self, dir: &Path, videos: &Videos, warn: &mut dyn FnMut(String)) -> Filled {
        let unused = self.used.iter().any(|u| !u);
        if self.filled.hashed > 0 || unused || self.damaged {
            match save(dir, videos) {
                Ok(()) => self.filled.saved = true,
                Err(e) => warn(format!("cannot write {VIDEO_HASH_CACHE_FILE}: {e}")),
            }
        }
        self.filled
    }
}

/// Writes the cache of `videos` (those with a hash), streamed to a temp file and renamed.
fn save(dir: &Path, videos: &Videos) -> io::Result<()> {
    let (file, tmp) = fsutil::create_temp(dir, VIDEO_HASH_CACHE_FILE, 0o600)?;
    let res = (|| {
        let mut w = BufWriter::with_capacity(64 * 1024, file);
        writeln!(w, "{MAGIC}")?;
        let mut n = 0usize;
        for v in videos.iter() {
            let Some(h) = v.sha256 else { continue };
            writeln!(
                w,
                "{} {} {} {} {} {} {} {}",
                v.dev,
                v.ino,
                v.size,
                v.mtime,
                v.mtime_ns,
                v.ctime,
                v.ctime_ns,
                crate::units::hex(h)
            )?;
            n += 1;
        }
        writeln!(w, "# end {n}")?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, dir.join(VIDEO_HASH_CACHE_FILE))?;
        fsutil::fsync_dir(dir)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Opens a video for reading (upload) and checks that it is still the version `want`.
pub fn open_checked(path: &Path, want: &Key) -> io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() || Key::of_meta(&meta) != *want {
        return Err(io::Error::other("it changed since the backup"));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(lines: &[&str]) -> String {
        let mut s = String::new();
        for l in lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    #[test]
    fn only_a_complete_well_formed_file_is_trusted() {
        let h = "ab".repeat(32);
        let rec = format!("1 2 3 4 5 6 7 {h}");
        let rec2 = format!("1 1 3 4 5 6 7 {h}");
        let good = text(&[MAGIC, &rec, &rec2, &rec, "# end 3"]);
        let c = HashCache::parse(good.as_bytes()).map_err(|e| e.to_string());
        let c = c.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.len(), 2, "sorted and deduplicated");
        let k = Key {
            dev: 1,
            ino: 2,
            size: 3,
            mtime: 4,
            mtime_ns: 5,
            ctime: 6,
            ctime_ns: 7,
        };
        assert_eq!(c.get(&k), Some([0xab; 32]));
        assert_eq!(c.get(&Key { mtime_ns: 6, ..k }), None);
        assert_eq!(c.get(&Key { ctime: 7, ..k }), None);
        assert_eq!(c.get(&Key { ctime_ns: 8, ..k }), None);
        for bad in [
            text(&[MAGIC, &rec]),                             // no end line: truncated
            text(&[MAGIC, &rec, "# end 2"]),                  // count
            text(&["# other", &rec, "# end 1"]),              // magic
            text(&[MAGIC, &rec[..rec.len() - 1], "# end 1"]), // short hash
            text(&[MAGIC, "1 2 3 4 5000000000 6 7 x", "# end 1"]),
            text(&[MAGIC, &format!("1 2 3 4 5 6 5000000000 {h}"), "# end 1"]),
            text(&[MAGIC, &format!("1 2 3 4 5 {h}"), "# end 1"]), // a v1 record
            text(&[MAGIC, &rec, "# end 1", &rec]),
            format!("{}# end 1", text(&[MAGIC, &rec])), // last line cut
        ] {
            assert!(HashCache::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        // A v1 file, as the version before wrote it: not read, said to be old.
        let v1 = text(&[
            "# neopro-backup video SHA-256 cache v1: dev ino size mtime mtime_ns sha256",
            &format!("1 2 3 4 5 {h}"),
            "# end 1",
        ]);
        assert_eq!(
            HashCache::parse(v1.as_bytes()).err().as_deref(),
            Some(OLD_VERSION)
        );
    }
}
