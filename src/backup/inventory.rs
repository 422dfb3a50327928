//! The video inventory: one walk of NEOPRO_DIR/videos (no process per file), keeping
//! files whose extension is mp4, mkv, mov or avi in any case.
//!
//! `videos-inventory.txt` format, one line per video after a `#` header line:
//! `size_bytes<TAB>mtime ISO-8601<TAB>path relative to videos/`, sorted by path (bytes).
//! In the path, `\` is written `\\`, and tab, newline, carriage return, other control
//! bytes and bytes that are not UTF-8 are written `\t`, `\n`, `\r`, `\xHH`, so that every
//! line stays one record.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::clock::{self, Tz};

pub const VIDEO_EXTENSIONS: [&str; 4] = ["mp4", "mkv", "mov", "avi"];
pub const HEADER: &str = "# size_bytes\tmtime\tpath (relative to videos/)\n";

/// The videos found by `walk`, sorted by path: relative paths packed in one buffer and
/// 24 bytes per video, so that 20,000 videos take about 1 MiB (a Pi Zero shares its
/// 512 MiB with the video player).
#[derive(Debug, Default)]
pub struct Videos {
    names: Vec<u8>,
    items: Vec<Packed>,
}

#[derive(Debug, Clone, Copy)]
struct Packed {
    off: u32,
    len: u32,
    size: u64,
    mtime: i64,
}

/// One video of a `Videos` list.
#[derive(Debug, Clone, Copy)]
pub struct Video<'a> {
    /// Path relative to the videos folder, raw bytes.
    pub rel: &'a [u8],
    pub size: u64,
    pub mtime: i64,
}

impl Videos {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn video(&self, i: &Packed) -> Video<'_> {
        let start = i.off as usize;
        Video {
            rel: &self.names[start..start + i.len as usize],
            size: i.size,
            mtime: i.mtime,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Video<'_>> {
        self.items.iter().map(|i| self.video(i))
    }

    fn push(&mut self, rel: &[u8], size: u64, mtime: i64) -> io::Result<()> {
        let too_big = || io::Error::other("too many videos to list (over 4 GiB of names)");
        let off = u32::try_from(self.names.len()).map_err(|_| too_big())?;
        let len = u32::try_from(rel.len()).map_err(|_| too_big())?;
        self.names.extend_from_slice(rel);
        self.items.push(Packed {
            off,
            len,
            size,
            mtime,
        });
        Ok(())
    }

    fn sort(&mut self) {
        let names = &self.names;
        let key = |i: &Packed| &names[i.off as usize..(i.off + i.len) as usize];
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
            out.push(&rel, meta.len(), meta.mtime())?;
        }
    }
    out.sort();
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

/// Appends one inventory line to `out`.
fn line(v: Video<'_>, tz: &Tz, out: &mut String) {
    use std::fmt::Write;
    let _ = write!(out, "{}\t{}\t", v.size, clock::iso_local(v.mtime, tz));
    escape_path(v.rel, out);
    out.push('\n');
}

/// videos-inventory.txt as a stream: its exact length is known before the first byte
/// (the tar header needs it), and the text is made line by line as the archive reads it,
/// never whole in memory.
pub struct Render<'a> {
    videos: &'a Videos,
    tz: &'a Tz,
    next: usize,
    buf: String,
    pos: usize,
}

impl<'a> Render<'a> {
    pub fn new(videos: &'a Videos, tz: &'a Tz) -> Render<'a> {
        Render {
            videos,
            tz,
            next: 0,
            buf: HEADER.to_string(),
            pos: 0,
        }
    }

    /// The length of the whole text, in bytes.
    pub fn total_len(&self) -> u64 {
        let mut total = HEADER.len() as u64;
        let mut buf = String::with_capacity(256);
        for v in self.videos.iter() {
            buf.clear();
            line(v, self.tz, &mut buf);
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
                let Some(item) = self.videos.items.get(self.next) else {
                    break;
                };
                self.next += 1;
                self.buf.clear();
                self.pos = 0;
                line(self.videos.video(item), self.tz, &mut self.buf);
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
pub fn render(videos: &Videos, tz: &Tz) -> String {
    let mut s = String::new();
    let _ = io::Read::read_to_string(&mut Render::new(videos, tz), &mut s);
    s
}

/// One parsed inventory line: (path, size).
pub fn parse(text: &str) -> Vec<(Vec<u8>, u64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let mut it = l.splitn(3, '\t');
            let size = it.next()?.parse().ok()?;
            let _mtime = it.next()?;
            Some((unescape_path(it.next()?)?, size))
        })
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
            let name = name.to_vec();
            assert!(v.push(&name, i as u64 * 1000, 1_734_487_200).is_ok());
        }
        v.sort();
        let tz = Tz::utc();
        let text = render(&v, &tz);
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
}
