//! The video inventory: one walk of NEOPRO_DIR/videos (no process per file), keeping
//! files whose extension is mp4, mkv, mov or avi in any case.
//!
//! `videos-inventory.txt` format, one line per video after a `#` header line:
//! `size_bytes<TAB>mtime ISO-8601<TAB>path relative to videos/`, sorted by path (bytes),
//! and with VIDEOS_OFFSITE a fourth column, the file's SHA-256 (64 lowercase hex, or `-`
//! when the file could not be read). In the path, `\` is written `\\`, and tab, newline,
//! carriage return, other control bytes and bytes that are not UTF-8 are written `\t`,
//! `\n`, `\r`, `\xHH`, so that every line stays one record.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::clock::{self, Tz};

pub const VIDEO_EXTENSIONS: [&str; 4] = ["mp4", "mkv", "mov", "avi"];
pub const HEADER: &str = "# size_bytes\tmtime\tpath (relative to videos/)\n";
/// The header with the fourth column (VIDEOS_OFFSITE).
pub const HEADER_SHA256: &str = "# size_bytes\tmtime\tpath (relative to videos/)\tsha256\n";

/// The videos found by `walk`, sorted by path: relative paths packed in one buffer and
/// 24 bytes per video (48 more with the hash cache's keys, 32 more once hashed), so
/// that 20,000 videos take about 1 MiB (a Pi Zero shares its 512 MiB with the video
/// player).
#[derive(Debug, Default)]
pub struct Videos {
    names: Vec<u8>,
    items: Vec<Packed>,
    /// Device, inode and mtime nanoseconds of each item (`walk_keyed` only).
    ids: Vec<Ids>,
    /// SHA-256 of each item, same order; empty until the first `set_sha256`, all zero
    /// for a video not hashed.
    hashes: Vec<[u8; 32]>,
}

#[derive(Debug, Clone, Copy)]
struct Packed {
    off: u32,
    len: u32,
    size: u64,
    mtime: i64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Ids {
    dev: u64,
    ino: u64,
    mtime_ns: u32,
    ctime_ns: u32,
    ctime: i64,
}

/// One video of a `Videos` list.
#[derive(Debug, Clone, Copy)]
pub struct Video<'a> {
    /// Path relative to the videos folder, raw bytes.
    pub rel: &'a [u8],
    pub size: u64,
    pub mtime: i64,
    /// Nanoseconds of the mtime, device and inode: with size and mtime, the key of the
    /// hash cache (videos/hashes.rs).
    pub mtime_ns: u32,
    pub dev: u64,
    pub ino: u64,
    /// The inode's change time (seconds, nanoseconds): no user can set it, so a file
    /// rewritten in place with its mtime put back still gets a new key.
    pub ctime: i64,
    pub ctime_ns: u32,
    /// The content's SHA-256, once known.
    pub sha256: Option<&'a [u8; 32]>,
}

impl Videos {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    fn video(&self, idx: usize, i: &Packed) -> Video<'_> {
        let start = i.off as usize;
        let ids = self.ids.get(idx).copied().unwrap_or_default();
        Video {
            rel: &self.names[start..start + i.len as usize],
            size: i.size,
            mtime: i.mtime,
            mtime_ns: ids.mtime_ns,
            dev: ids.dev,
            ino: ids.ino,
            ctime: ids.ctime,
            ctime_ns: ids.ctime_ns,
            sha256: self.hashes.get(idx).filter(|h| **h != [0u8; 32]),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Video<'_>> {
        self.items.iter().enumerate().map(|(n, i)| self.video(n, i))
    }

    pub fn get(&self, idx: usize) -> Option<Video<'_>> {
        self.items.get(idx).map(|i| self.video(idx, i))
    }

    /// Records the SHA-256 of video `idx` (an index of `iter`'s order).
    pub fn set_sha256(&mut self, idx: usize, hash: [u8; 32]) {
        if self.hashes.len() != self.items.len() {
            self.hashes = vec![[0u8; 32]; self.items.len()];
        }
        if let Some(h) = self.hashes.get_mut(idx) {
            *h = hash;
        }
    }

    fn push(&mut self, rel: &[u8], meta: &std::fs::Metadata, keyed: bool) -> io::Result<()> {
        let too_big = || io::Error::other("too many videos to list (over 4 GiB of names)");
        let off = u32::try_from(self.names.len()).map_err(|_| too_big())?;
        let len = u32::try_from(rel.len()).map_err(|_| too_big())?;
        // The end too, so that `off + len` is a valid u32 for every item.
        off.checked_add(len).ok_or_else(too_big)?;
        self.names.extend_from_slice(rel);
        self.items.push(Packed {
            off,
            len,
            size: meta.len(),
            mtime: meta.mtime(),
        });
        if keyed {
            self.ids.push(Ids {
                dev: meta.dev(),
                ino: meta.ino(),
                mtime_ns: u32::try_from(meta.mtime_nsec()).unwrap_or(0),
                ctime: meta.ctime(),
                ctime_ns: u32::try_from(meta.ctime_nsec()).unwrap_or(0),
            });
        }
        Ok(())
    }

    #[cfg(test)]
    fn push_test(&mut self, rel: &[u8], size: u64, mtime: i64) {
        self.names.extend_from_slice(rel);
        self.items.push(Packed {
            off: (self.names.len() - rel.len()) as u32,
            len: rel.len() as u32,
            size,
            mtime,
        });
    }

    fn sort(&mut self) {
        self.hashes.clear();
        let names = &self.names;
        let key = |i: &Packed| &names[i.off as usize..i.off as usize + i.len as usize];
        if self.ids.len() == self.items.len() && !self.ids.is_empty() {
            // The order by path as a permutation (4 bytes a video), applied to both
            // lists in place, cycle by cycle: new[j] = old[perm[j]].
            let items = &mut self.items;
            let ids = &mut self.ids;
            let mut perm: Vec<u32> = (0..items.len() as u32).collect();
            perm.sort_unstable_by(|&a, &b| key(&items[a as usize]).cmp(key(&items[b as usize])));
            for i in 0..perm.len() {
                if perm[i] == u32::MAX {
                    continue;
                }
                let (first_item, first_id) = (items[i], ids[i]);
                let mut j = i;
                loop {
                    let k = perm[j] as usize;
                    perm[j] = u32::MAX;
                    if k == i {
                        items[j] = first_item;
                        ids[j] = first_id;
                        break;
                    }
                    items[j] = items[k];
                    ids[j] = ids[k];
                    j = k;
                }
            }
            return;
        }
        self.items.sort_unstable_by(|a, b| key(a).cmp(key(b)));
    }
}

/// The absolute path of a video found under `root`.
pub fn abs_path(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(std::ffi::OsStr::from_bytes(rel))
}

pub fn is_video(name: &[u8]) -> bool {
    let Some(dot) = name.iter().rposition(|&b| b == b'.') else {
        return false;
    };
    let ext = &name[dot + 1..];
    dot > 0
        && VIDEO_EXTENSIONS
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(ext))
}

/// Every video under `root`, sorted by relative path. A missing folder is an empty list;
/// unreadable subfolders are reported in `warnings` and skipped. Symlinked folders are not
/// followed (no loops); a symlink to a video file counts as that file.
pub fn walk(root: &Path, warnings: &mut Vec<String>) -> io::Result<Videos> {
    walk_keyed(root, warnings, false)
}

/// `walk`, keeping with `keyed` each video's device, inode and mtime nanoseconds (the
/// key of the hash cache, videos/hashes.rs).
pub fn walk_keyed(root: &Path, warnings: &mut Vec<String>, keyed: bool) -> io::Result<Videos> {
    let mut out = Videos::default();
    match std::fs::symlink_metadata(root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
        Ok(m) if !m.is_dir() => {
            warnings.push(format!(
                "{} is not a folder: no videos listed",
                root.display()
            ));
            return Ok(out);
        }
        Ok(_) => {}
    }
    // Folders still to read, as paths relative to `root`.
    let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
    let mut rel = Vec::with_capacity(256);
    while let Some(prefix) = stack.pop() {
        let dir = abs_path(root, &prefix);
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                warnings.push(format!("cannot read {}: {e}", dir.display()));
                continue;
            }
        };
        for entry in rd {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            rel.clear();
            rel.extend_from_slice(&prefix);
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_bytes());
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                stack.push(rel.clone());
                continue;
            }
            if !is_video(name.as_bytes()) {
                continue;
            }
            // One stat per video, relative to the open folder (fstatat); a symlink is
            // followed to its file with a second one.
            let meta = if ft.is_symlink() {
                std::fs::metadata(entry.path())
            } else {
                entry.metadata()
            };
            let meta = match meta {
                Ok(m) if m.is_file() => m,
                Ok(m) if m.is_dir() => continue,
                Ok(m) => {
                    // A FIFO, socket or device named like a video: never opened.
                    warnings.push(format!(
                        "{} is {}, not a regular file: not a video",
                        entry.path().display(),
                        crate::fsutil::kind_of(m.file_type())
                    ));
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if ft.is_symlink() {
                        warnings.push(format!("dangling video link {}", entry.path().display()));
                    }
                    continue;
                }
                Err(e) => {
                    warnings.push(format!("cannot stat {}: {e}", entry.path().display()));
                    continue;
                }
            };
            out.push(&rel, &meta, keyed)?;
        }
    }
    out.sort();
    out.names.shrink_to_fit();
    out.items.shrink_to_fit();
    out.ids.shrink_to_fit();
    Ok(out)
}

/// Escapes a path for one inventory line (see the module doc).
pub fn escape_path(rel: &[u8], out: &mut String) {
    for chunk in rel.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let mut b = [0u8; 4];
                    for byte in c.encode_utf8(&mut b).bytes() {
                        out.push_str(&format!("\\x{byte:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
}

/// A name for one line of output: control characters escaped as in the inventory
/// (`\n`, `\t`, `\xHH`), so that a hostile file name cannot start a line of its own.
pub fn shown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_path(s.as_bytes(), &mut out);
    out
}

/// Reverses `escape_path`.
pub fn unescape_path(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1)? {
            b'\\' => out.push(b'\\'),
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'x' => {
                let h = s.get(i + 2..i + 4)?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            _ => return None,
        }
        i += 2;
    }
    Some(out)
}

/// Appends one inventory line to `out` (with the fourth column when `sha256`).
fn line(v: Video<'_>, tz: &Tz, sha256: bool, out: &mut String) {
    use std::fmt::Write;
    let _ = write!(out, "{}\t{}\t", v.size, clock::iso_local(v.mtime, tz));
    escape_path(v.rel, out);
    if sha256 {
        out.push('\t');
        match v.sha256 {
            Some(h) => out.push_str(&crate::units::hex(h)),
            None => out.push('-'),
        }
    }
    out.push('\n');
}

/// Parses 64 lowercase hex digits.
pub fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = digit(b[2 * i])? << 4 | digit(b[2 * i + 1])?;
    }
    Some(out)
}

/// videos-inventory.txt as a stream: its exact length is known before the first byte
/// (the tar header needs it), and the text is made line by line as the archive reads it,
/// never whole in memory.
pub struct Render<'a> {
    videos: &'a Videos,
    tz: &'a Tz,
    sha256: bool,
    next: usize,
    buf: String,
    pos: usize,
}

impl<'a> Render<'a> {
    pub fn new(videos: &'a Videos, tz: &'a Tz) -> Render<'a> {
        Render {
            videos,
            tz,
            sha256: false,
            next: 0,
            buf: HEADER.to_string(),
            pos: 0,
        }
    }

    /// With the fourth column, each video's SHA-256 (VIDEOS_OFFSITE).
    pub fn with_sha256(mut self, on: bool) -> Render<'a> {
        self.sha256 = on;
        self.buf = if on { HEADER_SHA256 } else { HEADER }.to_string();
        self
    }

    /// The length of the whole text, in bytes.
    pub fn total_len(&self) -> u64 {
        let header = if self.sha256 { HEADER_SHA256 } else { HEADER };
        let mut total = header.len() as u64;
        let mut buf = String::with_capacity(256);
        for v in self.videos.iter() {
            buf.clear();
            line(v, self.tz, self.sha256, &mut buf);
            total += buf.len() as u64;
        }
        total
    }
}

impl io::Read for Render<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < out.len() {
            if self.pos == self.buf.len() {
                let Some(v) = self.videos.get(self.next) else {
                    break;
                };
                self.next += 1;
                self.buf.clear();
                self.pos = 0;
                line(v, self.tz, self.sha256, &mut self.buf);
            }
            let chunk = &self.buf.as_bytes()[self.pos..];
            let k = chunk.len().min(out.len() - n);
            out[n..n + k].copy_from_slice(&chunk[..k]);
            self.pos += k;
            n += k;
        }
        Ok(n)
    }
}

/// The whole text of videos-inventory.txt (tests and small lists).
#[cfg(test)]
pub fn render(videos: &Videos, tz: &Tz, sha256: bool) -> String {
    let mut s = String::new();
    let _ = io::Read::read_to_string(&mut Render::new(videos, tz).with_sha256(sha256), &mut s);
    s
}

/// One line of an inventory read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryLine {
    pub path: Vec<u8>,
    pub size: u64,
    /// The mtime column, Unix seconds (None when unreadable).
    pub mtime: Option<i64>,
    /// The fourth column, when the archive has it and the hash was known.
    pub sha256: Option<[u8; 32]>,
}

/// Parses one inventory line (3 columns, or 4 with VIDEOS_OFFSITE); `None` for the
/// header, a blank or a malformed line.
pub fn parse_line(l: &str) -> Option<InventoryLine> {
    if l.starts_with('#') || l.is_empty() {
        return None;
    }
    let mut it = l.splitn(4, '\t');
    let size = it.next()?.parse().ok()?;
    let mtime = clock::parse_iso(it.next()?);
    let path = unescape_path(it.next()?)?;
    let sha256 = it.next().and_then(parse_sha256);
    Some(InventoryLine {
        path,
        size,
        mtime,
        sha256,
    })
}

/// Every line of an inventory.
pub fn parse_listed(text: &str) -> Vec<InventoryLine> {
    text.lines().filter_map(parse_line).collect()
}

/// One parsed inventory line: (path, size).
pub fn parse(text: &str) -> Vec<(Vec<u8>, u64)> {
    text.lines()
        .filter_map(parse_line)
        .map(|l| (l.path, l.size))
        .collect()
}

/// The inventory of the old auto-backup.sh: one `ls -lh` line per video
/// (`-rw-r--r-- 1 pi pi 1.2G Dec 18 03:00 /home/pi/neopro/videos/a.mp4`, in any locale),
/// or `Aucune vidéo`. Returns (path relative to videos/, size in bytes); `ls -h` sizes
/// are rounded, so a size is only approximate. A path is made relative to `videos_dir`
/// when it is under it, else to its first `/videos/` folder; other lines are skipped.
pub fn parse_old(text: &[u8], videos_dir: &Path) -> Vec<(Vec<u8>, u64)> {
    let mut prefix = videos_dir.as_os_str().as_bytes().to_vec();
    prefix.push(b'/');
    let mut out = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        // The name is the rest of the line from the first ` /` (find printed absolute
        // paths); the size is the fifth field.
        let Some(at) = line.windows(2).position(|w| w == b" /") else {
            continue;
        };
        let path = &line[at + 1..];
        let rel = match path.strip_prefix(prefix.as_slice()) {
            Some(r) => r,
            None => match path.windows(8).position(|w| w == b"/videos/") {
                Some(i) => &path[i + 8..],
                None => continue,
            },
        };
        if rel.is_empty() {
            continue;
        }
        let size = line[..at]
            .split(|b| b.is_ascii_whitespace())
            .filter(|f| !f.is_empty())
            .nth(4)
            .and_then(human_bytes)
            .unwrap_or(0);
        out.push((rel.to_vec(), size));
    }
    out.sort();
    out
}

/// `1.2G`, `4,0K`, `512` (as `ls -h` prints sizes, in any locale) in bytes.
fn human_bytes(field: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(field).ok()?.replace(',', ".");
    let (num, mult) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1u64 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        'T' => (&s[..s.len() - 1], 1 << 40),
        c if c.is_ascii_digit() => (s.as_str(), 1),
        _ => return None,
    };
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some((v * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_inventory_lines() {
        let text = "-rw-r--r-- 1 pi pi 1.2G Dec 18 03:00 /home/pi/neopro/videos/Match/final.mp4\n\
                    -rw-r--r-- 1 pi pi 4,0K 18 déc.  03:00 /home/pi/neopro/videos/a b.mkv\n\
                    -rw-r--r-- 1 pi pi 512 Dec 18  2023 /mnt/old/videos/x.avi\n\
                    Aucune vidéo\n";
        let v = parse_old(text.as_bytes(), Path::new("/home/pi/neopro/videos"));
        assert_eq!(
            v,
            vec![
                (b"Match/final.mp4".to_vec(), 1_288_490_188),
                (b"a b.mkv".to_vec(), 4096),
                (b"x.avi".to_vec(), 512),
            ]
        );
    }

    #[test]
    fn extensions() {
        assert!(
            is_video(b"a.mp4") && is_video(b"B.MKV") && is_video(b"c.Mov") && is_video(b"x.y.avi")
        );
        assert!(
            !is_video(b"thumb.jpg")
                && !is_video(b"mp4")
                && !is_video(b".mp4")
                && !is_video(b"a.mp4.part")
        );
    }

    #[test]
    fn escaping_round_trips() {
        for raw in [
            &b"plain/file.mp4"[..],
            b"tab\there.mp4",
            b"new\nline\\x.mp4",
            b"car\rriage\\\\.mp4",
            b"bad\xff\x01.mp4",
            "été.mp4".as_bytes(),
        ] {
            let mut s = String::new();
            escape_path(raw, &mut s);
            assert!(!s.contains('\t') && !s.contains('\n'), "{s}");
            assert_eq!(unescape_path(&s).as_deref(), Some(raw));
        }
    }

    #[test]
    fn escapes_are_exactly_those_of_the_module_doc() {
        let esc = |raw: &[u8]| {
            let mut s = String::from("kept:");
            escape_path(raw, &mut s);
            s
        };
        assert_eq!(esc(b"plain/file name.mp4"), "kept:plain/file name.mp4");
        assert_eq!(esc("été 🎬.mp4".as_bytes()), "kept:été 🎬.mp4");
        assert_eq!(esc(b"a\\b\tc\nd\re"), "kept:a\\\\b\\tc\\nd\\re");
        assert_eq!(esc(b"\x01\x1b\x7f\xff"), "kept:\\x01\\x1b\\x7f\\xff");
        // U+0085 (NEL) is a control character of two UTF-8 bytes: both are shown.
        assert_eq!(esc("a\u{85}b".as_bytes()), "kept:a\\xc2\\x85b");
        let un = |s: &str| unescape_path(s);
        assert_eq!(un(""), Some(Vec::new()));
        assert_eq!(un("été"), Some("été".as_bytes().to_vec()));
        assert_eq!(
            un("\\\\\\t\\n\\r\\x00\\xFfz"),
            Some(b"\\\t\n\r\x00\xffz".to_vec())
        );
        assert_eq!(un("a\\x4"), None);
        assert_eq!(un("a\\xzz"), None);
        assert_eq!(un("a\\q"), None);
        assert_eq!(un("a\\"), None);
    }

    #[test]
    fn streamed_text_has_its_announced_length_and_order() {
        let mut v = Videos::default();
        for (i, name) in [&b"z/last.mp4"[..], b"a\tb.mkv", b"m\xffid.MOV"]
            .iter()
            .enumerate()
        {
            v.push_test(name, i as u64 * 1000, 1_734_487_200);
        }
        v.sort();
        let tz = Tz::utc();
        let text = render(&v, &tz, false);
        assert_eq!(Render::new(&v, &tz).total_len(), text.len() as u64);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], HEADER.trim_end());
        assert_eq!(lines[1], "1000\t2024-12-18T02:00:00+00:00\ta\\tb.mkv");
        assert!(lines[2].ends_with("m\\xffid.MOV") && lines[3].ends_with("z/last.mp4"));
        // Read through a tiny buffer: same bytes.
        let mut small = Vec::new();
        let mut r = Render::new(&v, &tz);
        let mut b = [0u8; 7];
        loop {
            match io::Read::read(&mut r, &mut b) {
                Ok(0) => break,
                Ok(n) => small.extend_from_slice(&b[..n]),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(small, text.as_bytes());
        let parsed = parse(&text);
        assert_eq!(parsed[0], (b"a\tb.mkv".to_vec(), 1000));
    }

    #[test]
    fn keyed_walk_keeps_each_key_with_its_video() {
        let dir = std::env::temp_dir().join(format!("neopro-inv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let names = ["z.mp4", "a/b.mkv", "m.MOV", "a/a.avi", "c.mp4"];
        for (i, n) in names.iter().enumerate() {
            let p = dir.join(n);
            assert!(std::fs::create_dir_all(p.parent().unwrap_or(&dir)).is_ok());
            assert!(std::fs::write(&p, vec![0u8; i + 1]).is_ok());
        }
        let mut w = Vec::new();
        let v = walk_keyed(&dir, &mut w, true).unwrap_or_default();
        let mut prev: Vec<u8> = Vec::new();
        for x in v.iter() {
            assert!(x.rel > prev.as_slice());
            prev = x.rel.to_vec();
            let m = std::fs::metadata(abs_path(&dir, x.rel)).map_err(|e| e.to_string());
            let m = m.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                (x.ino, x.dev, x.size),
                (m.ino(), m.dev(), m.len()),
                "{:?}",
                x.rel
            );
        }
        assert_eq!(v.len(), names.len());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_fourth_column_holds_the_sha256_or_a_dash() {
        let mut v = Videos::default();
        v.push_test(b"b\tc.mp4", 5, 1_734_487_200);
        v.push_test(b"a.mp4", 7, 1_734_487_200);
        v.sort();
        let h = [0xabu8; 32];
        v.set_sha256(1, h);
        let tz = Tz::utc();
        let text = render(&v, &tz, true);
        assert_eq!(
            Render::new(&v, &tz).with_sha256(true).total_len(),
            text.len() as u64
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], HEADER_SHA256.trim_end());
        assert_eq!(lines[1], "7\t2024-12-18T02:00:00+00:00\ta.mp4\t-");
        assert_eq!(
            lines[2],
            format!(
                "5\t2024-12-18T02:00:00+00:00\tb\\tc.mp4\t{}",
                "ab".repeat(32)
            )
        );
        let listed = parse_listed(&text);
        assert_eq!(listed[0].sha256, None);
        assert_eq!(listed[1].sha256, Some(h));
        assert_eq!(listed[1].path, b"b\tc.mp4");
        // The path of a three-column line never swallows a fourth column, and old
        // three-column inventories still parse.
        assert_eq!(parse(&text)[1], (b"b\tc.mp4".to_vec(), 5));
        assert_eq!(parse_line("3\tx\tp.mp4").map(|l| l.sha256), Some(None));
        assert!(parse_sha256(&"AB".repeat(32)).is_none() && parse_sha256("ab").is_none());
    }
}
