//! Archives: the manifest format, and reading an archive back to verify it (gzip CRC,
//! tar structure, one top folder, MANIFEST.sha256), within bounds (docs/format.md,
//! Reading an archive back).

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Component, Path};

use crate::store;
use crate::units::{Sha256, hex};

pub const MANIFEST: &str = "MANIFEST.sha256";

/// The most `read_entries` reads of the files outside `videos/`, all together, and so
/// the most it keeps in memory (a 20,000-video inventory and manifest are about 2 MiB):
/// an archive whose configuration files inflate past it is refused (docs/format.md,
/// Reading an archive back).
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// Past `MAX_CONFIG_BYTES`, the whole stream may not inflate to more than this many
/// times the compressed bytes read so far. Videos hardly compress (about 1:1) and
/// text compresses about 10:1; only a decompression bomb (up to 1032:1 with zeros) gets
/// near it. With it, reading an archive takes time in proportion to its size on disk:
/// a 4 MB archive that would inflate to 4 GiB is refused after about 17 MiB.
pub const MAX_INFLATION: u64 = 64;

/// Data the gzip stream may still hold after the end of the tar archive (GNU tar pads
/// to a 10 KiB record; anything far past that is not a tar we wrote).
const MAX_TRAILING_BYTES: u64 = 1024 * 1024;

/// The most entries an archive may hold (20,000 videos and their folders fit easily).
pub const MAX_ENTRIES: usize = 200_000;

/// Counts the compressed bytes read from the file.
struct CountIn<R> {
    inner: R,
    count: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for CountIn<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get().saturating_add(n as u64));
        Ok(n)
    }
}

/// The inflated stream, refused as soon as it grows past `MAX_CONFIG_BYTES` plus
/// `MAX_INFLATION` times the compressed bytes read (a decompression bomb).
struct Bounded<R> {
    inner: R,
    compressed: std::rc::Rc<std::cell::Cell<u64>>,
    inflated: u64,
    bomb: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.inflated = self.inflated.saturating_add(n as u64);
        let allowed =
            MAX_CONFIG_BYTES.saturating_add(self.compressed.get().saturating_mul(MAX_INFLATION));
        if self.inflated > allowed {
            self.bomb.set(true);
            return Err(io::Error::other(bomb_message()));
        }
        Ok(n)
    }
}

fn bomb_message() -> String {
    format!(
        "the archive inflates to more than {MAX_INFLATION} times its compressed size \
         (past the first {} MiB): a decompression bomb, not a backup (refused)",
        MAX_CONFIG_BYTES >> 20
    )
}

/// A path in sha256sum's format: names with `\` or a newline get a leading `\` on the
/// line and those characters escaped, as GNU sha256sum does.
pub fn manifest_line(hex: &str, path: &[u8]) -> Vec<u8> {
    let needs = path.iter().any(|&b| b == b'\\' || b == b'\n' || b == b'\r');
    let mut line = Vec::with_capacity(path.len() + 70);
    if needs {
        line.push(b'\\');
    }
    line.extend_from_slice(hex.as_bytes());
    line.extend_from_slice(b"  ");
    for &b in path {
        match (needs, b) {
            (true, b'\\') => line.extend_from_slice(b"\\\\"),
            (true, b'\n') => line.extend_from_slice(b"\\n"),
            (true, b'\r') => line.extend_from_slice(b"\\r"),
            _ => line.push(b),
        }
    }
    line.push(b'\n');
    line
}

/// Parses MANIFEST.sha256 into path → hex digest.
pub fn parse_manifest(text: &[u8]) -> Result<BTreeMap<Vec<u8>, String>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let (escaped, line) = match line.strip_prefix(b"\\") {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        if line.len() < 66
            || &line[64..66] != b"  "
            || !line[..64].iter().all(u8::is_ascii_hexdigit)
        {
            return Err(format!("MANIFEST.sha256 line {} is malformed", i + 1));
        }
        let hex = String::from_utf8_lossy(&line[..64]).to_ascii_lowercase();
        let mut path = Vec::with_capacity(line.len() - 66);
        let mut it = line[66..].iter();
        while let Some(&b) = it.next() {
            if escaped && b == b'\\' {
                match it.next() {
                    Some(b'\\') => path.push(b'\\'),
                    Some(b'n') => path.push(b'\n'),
                    Some(b'r') => path.push(b'\r'),
                    _ => return Err(format!("MANIFEST.sha256 line {} has a bad escape", i + 1)),
                }
            } else {
                path.push(b);
            }
        }
        if out.insert(path, hex).is_some() {
            return Err(format!("MANIFEST.sha256 line {} repeats a path", i + 1));
        }
    }
    Ok(out)
}

/// The result of checking one file of an archive against its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    pub name: String,
    pub sha256: String,
    pub ok: bool,
}

#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub ok: bool,
    pub files: Vec<FileCheck>,
    pub error: Option<String>,
    /// Written by the old auto-backup.sh: top folder `YYYYMMDD-HHMMSS`; without a
    /// manifest, `files` are only read (gzip and tar), not checked against one.
    pub old_format: bool,
}

/// Checks a path from a tar entry: relative, no `..`, no root, under `top`.
/// Returns the path inside the top folder (empty for the folder itself).
pub fn safe_inner_path<'a>(path: &'a Path, top: &str) -> Result<&'a Path, String> {
    let mut comps = path.components();
    match comps.next() {
        Some(Component::Normal(first)) if first == top => {}
        Some(Component::Normal(first)) => {
            return Err(format!(
                "entry {:?} is outside the folder {top}/ (found {:?})",
                path, first
            ));
        }
        _ => return Err(format!("entry {path:?} has an absolute or unsafe path")),
    }
    let inner = comps.as_path();
    if inner
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(format!("entry {path:?} has an unsafe path (.. or /)"));
    }
    Ok(inner)
}

/// One regular file or folder read from an archive by `read_entries`.
pub struct EntrySeen {
    /// Path inside the top folder (never empty: the top folder itself is not listed).
    pub path: Vec<u8>,
    /// A folder: no content, no digest.
    pub is_dir: bool,
    pub sha256: String,
    pub size: u64,
    /// The content, kept only for files for which `keep` said yes.
    pub content: Option<Vec<u8>>,
}

/// The top folder an archive must have, given the one expected from its name: the
/// name's own (`backup-YYYYMMDD-HHMMSS`), or the old auto-backup.sh's `YYYYMMDD-HHMMSS`
/// (docs/format.md, Old-format archives).
fn top_matches(first: &str, expected: &str) -> bool {
    first == expected
        || (expected
            .strip_prefix("backup-")
            .is_some_and(|stamp| stamp == first && store::is_old_top(first)))
}

/// Reads a whole .tar.gz stream, checking gzip, tar and path safety, hashing every
/// regular file. Only directories and regular files are allowed; everything must sit in
/// one top folder (named `expected_top` when given, or its old-format twin, see
/// `top_matches`). Folders below the top one are listed too (`is_dir`), so that a caller
/// can judge every name. `keep` chooses which small files' content to return. The gzip
/// trailer (CRC, length) is checked to the last byte.
///
/// Bounds, so that a hostile archive is refused in seconds, never read for minutes nor
/// held in memory: the files outside `videos/` may inflate to `MAX_CONFIG_BYTES` in
/// all; the stream as a whole may not inflate past `MAX_INFLATION` times its
/// compressed size; at most `MAX_ENTRIES` entries. Video entries are streamed and
/// hashed, never held.
pub fn read_entries(
    reader: impl Read,
    expected_top: Option<&str>,
    keep: &dyn Fn(&[u8]) -> bool,
) -> Result<(String, Vec<EntrySeen>), String> {
    let compressed = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let bomb = std::rc::Rc::new(std::cell::Cell::new(false));
    let counted = CountIn {
        inner: reader,
        count: std::rc::Rc::clone(&compressed),
    };
    let gz = flate2::bufread::GzDecoder::new(io::BufReader::with_capacity(64 * 1024, counted));
    let bounded = Bounded {
        inner: gz,
        compressed,
        inflated: 0,
        bomb: std::rc::Rc::clone(&bomb),
    };
    let mut ar = tar::Archive::new(bounded);
    let mut top: Option<String> = None;
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut config_total = 0u64;
    let damaged = |what: String, e: &dyn std::fmt::Display| {
        if bomb.get() {
            bomb_message()
        } else {
            format!("{what}: {e}")
        }
    };
    {
        let entries = ar
            .entries()
            .map_err(|e| damaged("not a readable tar.gz".into(), &e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| damaged("damaged archive".into(), &e))?;
            if seen.len() >= MAX_ENTRIES {
                return Err(format!(
                    "the archive holds more than {MAX_ENTRIES} entries: not a backup (refused)"
                ));
            }
            let path = entry
                .path()
                .map_err(|e| format!("entry with an unreadable path: {e}"))?
                .into_owned();
            let t = match &top {
                Some(t) => t.clone(),
                None => {
                    let Some(Component::Normal(first)) = path.components().next() else {
                        return Err(format!("entry {path:?} has an absolute or unsafe path"));
                    };
                    let first = first.to_string_lossy().into_owned();
                    let t = match expected_top {
                        Some(e) if !top_matches(&first, e) => e.to_string(),
                        _ => first,
                    };
                    top = Some(t.clone());
                    t
                }
            };
            let inner = safe_inner_path(&path, &t)?.to_path_buf();
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                if !inner.as_os_str().is_empty() {
                    use std::os::unix::ffi::OsStrExt;
                    seen.push(EntrySeen {
                        path: inner.as_os_str().as_bytes().to_vec(),
                        is_dir: true,
                        sha256: String::new(),
                        size: 0,
                        content: None,
                    });
                }
                continue;
            }
            if !kind.is_file() {
                return Err(format!(
                    "entry {path:?} is a {kind:?}, only files and folders are allowed"
                ));
            }
            if inner.as_os_str().is_empty() {
                return Err(format!(
                    "entry {path:?} is a file where the folder should be"
                ));
            }
            use std::os::unix::ffi::OsStrExt;
            let inner_bytes = inner.as_os_str().as_bytes().to_vec();
            let is_video = inner_bytes.starts_with(b"videos/");
            let too_big = || {
                format!(
                    "{path:?} and the other files outside videos/ inflate past {} MiB: \
                     not a configuration backup (refused)",
                    MAX_CONFIG_BYTES >> 20
                )
            };
            // Judged on the header first: a claimed 4 GiB site.conf is refused unread.
            if !is_video && config_total.saturating_add(entry.size()) > MAX_CONFIG_BYTES {
                return Err(too_big());
            }
            let want = keep(&inner_bytes);
            let mut content = want.then(Vec::new);
            let mut h = Sha256::new();
            let mut size = 0u64;
            loop {
                let n = entry
                    .read(&mut buf)
                    .map_err(|e| damaged(format!("damaged archive while reading {path:?}"), &e))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                size = size.saturating_add(n as u64);
                if !is_video {
                    config_total = config_total.saturating_add(n as u64);
                    if config_total > MAX_CONFIG_BYTES {
                        return Err(too_big());
                    }
                }
                if let Some(c) = content.as_mut() {
                    c.extend_from_slice(&buf[..n]);
                }
            }
            seen.push(EntrySeen {
                path: inner_bytes,
                is_dir: false,
                sha256: hex(&h.finish()),
                size,
                content,
            });
        }
    }
    // Drain to the end so that the gzip CRC and length are checked; after the tar's end
    // there is only its padding.
    let rest = ar.into_inner();
    let mut rest = rest.take(MAX_TRAILING_BYTES + 1);
    let trailing = io::copy(&mut rest, &mut io::sink())
        .map_err(|e| damaged("damaged gzip stream".into(), &e))?;
    if trailing > MAX_TRAILING_BYTES {
        return Err(format!(
            "more than {} MiB of data after the end of the tar archive: not a backup (refused)",
            MAX_TRAILING_BYTES >> 20
        ));
    }
    // One gzip member, nothing after it: GNU tar refuses "trailing garbage" too.
    let mut compressed_rest = rest.into_inner().inner.into_inner();
    let after = io::BufRead::fill_buf(&mut compressed_rest)
        .map_err(|e| damaged("damaged gzip stream".into(), &e))?
        .len();
    if after > 0 {
        return Err("damaged archive: data after the end of the gzip stream".to_string());
    }
    let top = top.ok_or_else(|| "the archive is empty".to_string())?;
    Ok((top, seen))
}

/// Verifies an archive stream: readable to the end, one top folder, and every file
/// matching MANIFEST.sha256 (and listed in it). An archive of the old auto-backup.sh
/// (top folder `YYYYMMDD-HHMMSS`) has no manifest: gzip and tar are checked, and the
/// report says so (`old_format`).
pub fn verify(reader: impl Read, expected_top: Option<&str>) -> VerifyReport {
    let keep = |p: &[u8]| p == MANIFEST.as_bytes();
    match read_entries(reader, expected_top, &keep) {
        Ok((top, seen)) if store::is_old_top(&top) && !has_manifest(&seen) => VerifyReport {
            ok: true,
            files: seen
                .iter()
                .filter(|e| !e.is_dir)
                .map(|e| FileCheck {
                    name: String::from_utf8_lossy(&e.path).into_owned(),
                    sha256: e.sha256.clone(),
                    ok: true,
                })
                .collect(),
            error: None,
            old_format: true,
        },
        Ok((top, seen)) => VerifyReport {
            old_format: store::is_old_top(&top),
            ..check_manifest(&seen)
        },
        Err(e) => VerifyReport {
            ok: false,
            files: Vec::new(),
            error: Some(e),
            old_format: false,
        },
    }
}

/// Whether the files read hold a MANIFEST.sha256.
pub fn has_manifest(seen: &[EntrySeen]) -> bool {
    seen.iter()
        .any(|e| !e.is_dir && e.path == MANIFEST.as_bytes())
}

/// Checks the files read by `read_entries` (with MANIFEST.sha256's content kept)
/// against the manifest: every file listed, every listed file present and matching.
pub fn check_manifest(seen: &[EntrySeen]) -> VerifyReport {
    let manifest = seen
        .iter()
        .find(|e| !e.is_dir && e.path == MANIFEST.as_bytes())
        .and_then(|e| e.content.as_deref());
    let fail = |e: String| VerifyReport {
        ok: false,
        files: Vec::new(),
        error: Some(e),
        old_format: false,
    };
    let Some(manifest) = manifest else {
        return fail("MANIFEST.sha256 is missing".to_string());
    };
    let mut expected = match parse_manifest(manifest) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let mut files = Vec::new();
    for e in seen
        .iter()
        .filter(|e| !e.is_dir && e.path != MANIFEST.as_bytes())
    {
        let ok = expected.remove(&e.path).is_some_and(|h| h == e.sha256);
        files.push(FileCheck {
            name: String::from_utf8_lossy(&e.path).into_owned(),
            sha256: e.sha256.clone(),
            ok,
        });
    }
    let mut error = None;
    for (path, hash) in expected {
        files.push(FileCheck {
            name: String::from_utf8_lossy(&path).into_owned(),
            sha256: hash,
            ok: false,
        });
        error.get_or_insert_with(|| "a file listed in MANIFEST.sha256 is missing".to_string());
    }
    let bad = files.iter().filter(|f| !f.ok).count();
    if bad > 0 && error.is_none() {
        error = Some(format!("{bad} file(s) do not match MANIFEST.sha256"));
    }
    VerifyReport {
        ok: error.is_none(),
        files,
        error,
        old_format: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_escapes_round_trip() {
        let h = "a".repeat(64);
        let mut text = manifest_line(&h, b"plain.txt");
        text.extend(manifest_line(&h, b"we\\ird\nname"));
        assert!(text.starts_with(b"aaaa"));
        let m = parse_manifest(&text).unwrap_or_default();
        assert_eq!(m.len(), 2);
        assert!(m.contains_key(&b"we\\ird\nname"[..]));
        assert!(parse_manifest(b"zz  file\n").is_err());
    }

    #[test]
    fn manifest_lines_are_those_of_gnu_sha256sum() {
        let h = "0123456789abcdef".repeat(4);
        let line = |path: &[u8]| String::from_utf8_lossy(&manifest_line(&h, path)).into_owned();
        assert_eq!(line(b"a b.txt"), format!("{h}  a b.txt\n"));
        assert_eq!(line(b"back\\slash"), format!("\\{h}  back\\\\slash\n"));
        assert_eq!(line(b"new\nline"), format!("\\{h}  new\\nline\n"));
        assert_eq!(line(b"car\rriage"), format!("\\{h}  car\\rriage\n"));
        assert_eq!(line(b"a\r\n\\"), format!("\\{h}  a\\r\\n\\\\\n"));
    }

    #[test]
    fn manifests_are_read_strictly() {
        let h = "0123456789ABCDEF".repeat(4);
        let lower = h.to_ascii_lowercase();
        let mut text = Vec::new();
        for p in [&b"plain.txt"[..], b"c\r\\d\n", b""] {
            text.extend(manifest_line(&h, p));
        }
        text.extend(b"\n");
        let Ok(m) = parse_manifest(&text) else {
            panic!("{:?}", parse_manifest(&text))
        };
        let want: BTreeMap<Vec<u8>, String> = [&b"plain.txt"[..], b"c\r\\d\n", b""]
            .iter()
            .map(|p| (p.to_vec(), lower.clone()))
            .collect();
        assert_eq!(m, want);
        assert_eq!(parse_manifest(b""), Ok(BTreeMap::new()));
        // A raw \r or \\ on a line without the leading \\ is part of the name.
        let raw = format!("{h}  a\\b\rc\n");
        let m = parse_manifest(raw.as_bytes()).unwrap_or_default();
        assert_eq!(m.keys().collect::<Vec<_>>(), vec![&b"a\\b\rc"[..]]);
        for (bad, why) in [
            (format!("{h} *binary-mode\n"), "malformed"),
            (format!("{h}\n"), "malformed"),
            (format!("{}  x\n", "g".repeat(64)), "malformed"),
            (format!("{}  x\n", &h[1..]), "malformed"),
            (format!("{h}  x\n{h}  y\n{h}  x\n"), "line 3 repeats a path"),
            (
                format!("{h}  x\n\\{h}  bad\\t\n"),
                "line 2 has a bad escape",
            ),
            (format!("\\{h}  end\\"), "line 1 has a bad escape"),
        ] {
            let r = parse_manifest(bad.as_bytes());
            assert!(r.as_ref().is_err_and(|e| e.contains(why)), "{bad:?}: {r:?}");
        }
    }

    #[test]
    fn the_inner_path_is_what_follows_the_top_folder() {
        let p = |s: &'static str| safe_inner_path(Path::new(s), "top");
        assert_eq!(p("top/a/b"), Ok(Path::new("a/b")));
        assert_eq!(p("top/"), Ok(Path::new("")));
        assert_eq!(p("top"), Ok(Path::new("")));
        assert!(p("other/x").is_err_and(|e| e.contains("outside the folder top/")));
        assert!(p("./top/x").is_err_and(|e| e.contains("absolute or unsafe")));
        assert!(p("/top/x").is_err_and(|e| e.contains("absolute or unsafe")));
        assert!(p("top/a/../../x").is_err_and(|e| e.contains("(.. or /)")));
    }

    /// A .tar.gz of the folder `top/` holding `files` (name, content).
    fn targz(top: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(0o700);
        let mut r = b.append_data(&mut h, format!("{top}/"), io::empty());
        for (name, content) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(content.len() as u64);
            h.set_mode(0o600);
            r = r.and_then(|_| b.append_data(&mut h, format!("{top}/{name}"), *content));
        }
        let r = r.and_then(|_| b.into_inner()).and_then(|gz| gz.finish());
        r.unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn an_old_top_folder_is_old_format_even_with_a_manifest() {
        let conf = &b"{}"[..];
        // sha256sum of `{}`.
        let sum = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
        let manifest = manifest_line(sum, b"configuration.json");
        let files = [("configuration.json", conf), (MANIFEST, &manifest[..])];
        for (top, old) in [("20241218-030000", true), ("backup-20241218-030000", false)] {
            let r = verify(&targz(top, &files)[..], None);
            assert!(r.ok && r.error.is_none(), "{top}: {r:?}");
            assert_eq!(r.old_format, old, "{top}");
            assert_eq!(r.files.len(), 1, "{top}");
        }
    }

    #[test]
    fn unsafe_paths_are_refused() {
        assert!(safe_inner_path(Path::new("top/a/b"), "top").is_ok());
        assert!(safe_inner_path(Path::new("top/../x"), "top").is_err());
        assert!(safe_inner_path(Path::new("/etc/passwd"), "top").is_err());
        assert!(safe_inner_path(Path::new("other/x"), "top").is_err());
    }
}
