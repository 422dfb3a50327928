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

#[derive(Debug, Clone)]
pub struct Video {
    /// Path relative to the videos folder, raw bytes.
    pub rel: Vec<u8>,
    pub abs: PathBuf,
    pub size: u64,
    pub mtime: i64,
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
pub fn walk(root: &Path, warnings: &mut Vec<String>) -> io::Result<Vec<Video>> {
    let mut out = Vec::new();
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
    let mut stack: Vec<(PathBuf, Vec<u8>)> = vec![(root.to_path_buf(), Vec::new())];
    while let Some((dir, prefix)) = stack.pop() {
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
            let mut rel = prefix.clone();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_bytes());
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                stack.push((entry.path(), rel));
                continue;
            }
            if !is_video(name.as_bytes()) {
                continue;
            }
            // One stat per video (follows a symlink to its file).
            let meta = match std::fs::metadata(entry.path()) {
                Ok(m) if m.is_file() => m,
                Ok(_) => continue,
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
            out.push(Video {
                rel,
                abs: entry.path(),
                size: meta.len(),
                mtime: meta.mtime(),
            });
        }
    }
    out.sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
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

/// The text of videos-inventory.txt.
pub fn render(videos: &[Video], tz: &Tz) -> String {
    let mut s = String::with_capacity(HEADER.len() + videos.len() * 80);
    s.push_str(HEADER);
    for v in videos {
        s.push_str(&v.size.to_string());
        s.push('\t');
        s.push_str(&clock::iso_local(v.mtime, tz));
        s.push('\t');
        escape_path(&v.rel, &mut s);
        s.push('\n');
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
            b"bad\xff\x01.mp4",
            "été.mp4".as_bytes(),
        ] {
            let mut s = String::new();
            escape_path(raw, &mut s);
            assert!(!s.contains('\t') && !s.contains('\n'), "{s}");
            assert_eq!(unescape_path(&s).as_deref(), Some(raw));
        }
    }
}
