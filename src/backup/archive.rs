//! Archives: their names, the listing of BACKUP_DIR, the manifest format, and reading an
//! archive back to verify it (gzip CRC, tar structure, one top folder, MANIFEST.sha256).

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Component, Path};

use sha2::{Digest, Sha256};

use crate::units::hex;

pub const MANIFEST: &str = "MANIFEST.sha256";

/// The most `read_entries` keeps in memory, all kept files together (a 20,000-video
/// inventory and manifest are about 2 MiB).
const MAX_KEPT_BYTES: usize = 16 * 1024 * 1024;

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
    pub mode: u32,
    /// The content, kept only for files for which `keep` said yes.
    pub content: Option<Vec<u8>>,
}

/// Reads a whole .tar.gz stream, checking gzip, tar and path safety, hashing every
/// regular file. Only directories and regular files are allowed; everything must sit in
/// one top folder (named `expected_top` when given). Folders below the top one are
/// listed too (`is_dir`), so that a caller can judge every name. `keep` chooses which
/// small files' content to return. The gzip trailer (CRC, length) is checked to the
/// last byte.
pub fn read_entries(
    reader: impl Read,
    expected_top: Option<&str>,
    keep: &dyn Fn(&[u8]) -> bool,
) -> Result<(String, Vec<EntrySeen>), String> {
    let gz = flate2::read::GzDecoder::new(io::BufReader::with_capacity(64 * 1024, reader));
    let mut ar = tar::Archive::new(gz);
    let mut top: Option<String> = expected_top.map(str::to_string);
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut kept_total = 0usize;
    {
        let entries = ar
            .entries()
            .map_err(|e| format!("not a readable tar.gz: {e}"))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| format!("damaged archive: {e}"))?;
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
                    let t = first.to_string_lossy().into_owned();
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
                        mode: entry.header().mode().unwrap_or(0o700),
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
            let mode = entry.header().mode().unwrap_or(0o600);
            let want = keep(&inner_bytes);
            let mut content = want.then(Vec::new);
            let mut h = Sha256::new();
            let mut size = 0u64;
            loop {
                let n = entry
                    .read(&mut buf)
                    .map_err(|e| format!("damaged archive while reading {path:?}: {e}"))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                size += n as u64;
                if let Some(c) = content.as_mut() {
                    // All kept files together: a hostile archive cannot eat a Pi Zero's RAM.
                    kept_total += n;
                    if kept_total > MAX_KEPT_BYTES {
                        return Err(format!(
                            "{path:?} is too large for a configuration or manifest file"
                        ));
                    }
                    c.extend_from_slice(&buf[..n]);
                }
            }
            seen.push(EntrySeen {
                path: inner_bytes,
                is_dir: false,
                sha256: hex(&h.finalize()),
                size,
                mode,
                content,
            });
        }
    }
    // Drain to the end so that the gzip CRC and length are checked.
    let mut rest = ar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| format!("damaged gzip stream: {e}"))?;
    let top = top.ok_or_else(|| "the archive is empty".to_string())?;
    Ok((top, seen))
}

/// Verifies an archive stream: readable to the end, one top folder, and every file
/// matching MANIFEST.sha256 (and listed in it).
pub fn verify(reader: impl Read, expected_top: Option<&str>) -> VerifyReport {
    let keep = |p: &[u8]| p == MANIFEST.as_bytes();
    match read_entries(reader, expected_top, &keep) {
        Ok((_, seen)) => check_manifest(&seen),
        Err(e) => VerifyReport {
            ok: false,
            files: Vec::new(),
            error: Some(e),
        },
    }
}

/// Checks the files read by `read_entries` (with MANIFEST.sha256's content kept)
/// against the manifest: every file listed, every listed file present and matching.
pub fn check_manifest(seen: &[EntrySeen]) -> VerifyReport {
    let manifest = seen
        .iter()
        .find(|e| !e.is_dir && e.path == MANIFEST.as_bytes())
        .and_then(|e| e.content.as_deref());
    let Some(manifest) = manifest else {
        return VerifyReport {
            ok: false,
            files: Vec::new(),
            error: Some("MANIFEST.sha256 is missing".to_string()),
        };
    };
    let mut expected = match parse_manifest(manifest) {
        Ok(m) => m,
        Err(e) => {
            return VerifyReport {
                ok: false,
                files: Vec::new(),
                error: Some(e),
            };
        }
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
    fn unsafe_paths_are_refused() {
        assert!(safe_inner_path(Path::new("top/a/b"), "top").is_ok());
        assert!(safe_inner_path(Path::new("top/../x"), "top").is_err());
        assert!(safe_inner_path(Path::new("/etc/passwd"), "top").is_err());
        assert!(safe_inner_path(Path::new("other/x"), "top").is_err());
    }
}
