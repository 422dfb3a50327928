//! Steps 2 and 3 of a restore, file by file: compare each target on the Pi with the
//! archive (`inspect`), and replace it atomically in its own folder (`replace_file`),
//! keeping its owner and mode (a missing file is created 0600, owned like its folder).
//! Target folders are reached without following any symbolic link (`open_dir`), so a
//! restore never writes outside its three targets, even as root.

use std::fs::Permissions;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::load::Archived;
use crate::fsutil::sys::{self, Dir, FinalLink, WalkError};

/// Prefix of the temporary file written beside each restored file.
pub(super) const TMP_PREFIX: &str = ".tmp-restore-";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    Unchanged,
    Changed,
    MissingOnPi,
    MissingInArchive,
    /// The current file cannot be compared (a link, a folder, unreadable): see `problem`.
    Unreadable,
}

impl FileState {
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Unchanged => "unchanged",
            FileState::Changed => "changed",
            FileState::MissingOnPi => "missing-on-pi",
            FileState::MissingInArchive => "missing-in-archive",
            FileState::Unreadable => "unreadable",
        }
    }
}

/// One selected file compared with the Pi.
pub struct Item {
    pub name: &'static str,
    pub target: PathBuf,
    pub state: FileState,
    pub archive_size: Option<u64>,
    pub current_size: Option<u64>,
    /// Why a restore of this file would fail (checked before anything is written).
    pub problem: Option<String>,
    /// Mode and owner the restored file gets: the current file's, else 0600 and the
    /// folder's owner (when root).
    pub(super) mode: u32,
    pub(super) owner: Option<(u32, u32)>,
}

impl Item {
    /// A real restore would write this file.
    pub fn to_write(&self) -> bool {
        matches!(self.state, FileState::Changed | FileState::MissingOnPi) && self.problem.is_none()
    }
}

/// Why a target's folder cannot be used.
#[derive(Debug)]
pub(super) enum DirError {
    /// A folder on the way does not exist.
    Missing(String),
    /// A folder on the way is a symbolic link (or not a folder): never followed.
    Unsafe(String),
    Other(String),
}

impl DirError {
    fn message(&self) -> &str {
        match self {
            DirError::Missing(m) | DirError::Unsafe(m) | DirError::Other(m) => m,
        }
    }
}

/// Opens the folder `dir` (absolute) without following a symbolic link anywhere on the
/// way (`Dir::walk`), so that a restore (even as root) writes only into the folder named
/// in the configuration, never into one a link points to.
pub(super) fn open_dir(dir: &Path) -> Result<Dir, DirError> {
    Dir::walk(dir).map_err(|e| {
        let never = |p: &Path, what: &str| {
            DirError::Unsafe(format!(
                "{} is {what}: a restore never follows it (restore this file by hand)",
                p.display()
            ))
        };
        match &e {
            WalkError::Missing(_) => DirError::Missing(e.to_string()),
            WalkError::NotAbsolute(_) | WalkError::DotDot(_) => DirError::Unsafe(e.to_string()),
            WalkError::Link(p) => never(p, "a symbolic link"),
            WalkError::NotADir(p) => never(p, "not a folder"),
            WalkError::BadName(_) => DirError::Other("a name holds a NUL byte".to_string()),
            WalkError::Reach(..) | WalkError::Open(..) => DirError::Other(e.to_string()),
        }
    })
}

/// True when the file `name` in the folder `dir` holds exactly `expected` (opened
/// without following a link and without blocking, its type checked on the handle).
pub(super) fn same_content(dir: &Dir, name: &[u8], expected: &[u8]) -> io::Result<bool> {
    let (mut f, meta) = dir.open_regular(name, FinalLink::NoFollow)?;
    if meta.len() != expected.len() as u64 {
        return Ok(false);
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(off == expected.len());
        }
        if off + n > expected.len() || buf[..n] != expected[off..off + n] {
            return Ok(false);
        }
        off += n;
    }
}

/// Why a file could not be written into `dir`, when that can be told beforehand (the
/// folder was reached without a link on the way: its path names it).
pub(super) fn dir_problem(dir: &Path) -> Option<String> {
    match sys::check_writable(dir) {
        Ok(()) => None,
        // A name with a NUL byte is told by `inspect`.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => None,
        Err(e) => Some(format!(
            "the folder {} is not writable ({e})",
            dir.display()
        )),
    }
}

/// Compares one target with the archive. The target's folder is reached without
/// following any link (`open_dir`); a file missing on the Pi would be created 0600
/// (it may hold secrets), owned like its folder when we are root.
pub(super) fn inspect(name: &'static str, target: PathBuf, archived: Option<&Archived>) -> Item {
    let mut item = Item {
        name,
        target,
        state: FileState::MissingInArchive,
        archive_size: archived.map(|a| a.size),
        current_size: None,
        problem: None,
        mode: NEW_FILE_MODE,
        owner: None,
    };
    let t = item.target.display().to_string();
    let dir = item.target.parent().unwrap_or(Path::new("/")).to_path_buf();
    let file_name = item
        .target
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_default();
    let dfd = open_dir(&dir);
    // A name the calls cannot take (a NUL byte) is told below.
    let cname = (!file_name.contains(&0)).then_some(file_name);
    let st = match (&dfd, &cname) {
        (Ok(d), Some(c)) => Some(d.stat(c, FinalLink::NoFollow)),
        _ => None,
    };
    if let Some(Ok(st)) = &st
        && sys::is_type(st, libc::S_IFREG)
    {
        item.current_size = Some(st.st_size as u64);
        item.mode = st.st_mode & 0o7777;
        item.owner = Some((st.st_uid, st.st_gid));
    }
    let Some(archived) = archived else {
        return item;
    };
    (item.state, item.problem) = match (&dfd, &cname, &st) {
        (Err(DirError::Missing(m)), _, _) => (FileState::MissingOnPi, Some(m.clone())),
        (Err(e), _, _) => (
            FileState::Unreadable,
            Some(format!("cannot reach {t}: {}", e.message())),
        ),
        (_, None, _) | (_, _, None) => (
            FileState::Unreadable,
            Some(format!("{t} has a name that cannot be used")),
        ),
        (_, _, Some(Err(e))) if e.kind() == io::ErrorKind::NotFound => {
            (FileState::MissingOnPi, None)
        }
        (_, _, Some(Err(e))) => (
            FileState::Unreadable,
            Some(format!("cannot inspect {t}: {e}")),
        ),
        (_, _, Some(Ok(st))) if sys::is_type(st, libc::S_IFLNK) => (
            FileState::Unreadable,
            Some(format!(
                "{t} is a symbolic link: it is not replaced (restore this file by hand)"
            )),
        ),
        (_, _, Some(Ok(st))) if !sys::is_type(st, libc::S_IFREG) => (
            FileState::Unreadable,
            Some(format!("{t} is not a regular file: it is not replaced")),
        ),
        (Ok(d), Some(c), Some(Ok(_))) => match same_content(d, c, &archived.content) {
            Ok(true) => (FileState::Unchanged, None),
            Ok(false) => (FileState::Changed, None),
            Err(e) => (FileState::Unreadable, Some(format!("cannot read {t}: {e}"))),
        },
    };
    if !matches!(item.state, FileState::Changed | FileState::MissingOnPi) || item.problem.is_some()
    {
        return item;
    }
    item.problem = dir_problem(&dir);
    let me = crate::fsutil::euid();
    match item.owner {
        Some((uid, gid)) if me != 0 && uid != me => {
            item.problem.get_or_insert_with(|| {
                format!(
                    "{t} belongs to uid {uid} (gid {gid}): only root can replace it keeping its owner"
                )
            });
        }
        Some(_) => {}
        None if me == 0 => {
            // A new file belongs to the owner of its folder (pi for NEOPRO_DIR), so that
            // the service reading it still can.
            item.owner = dfd
                .as_ref()
                .ok()
                .and_then(|d| d.metadata().ok())
                .map(|m| (m.uid(), m.gid()));
        }
        None => {}
    }
    item
}

/// The mode of a file a restore creates (it was missing on the Pi): owner only, as it
/// may hold secrets, whatever mode the archive recorded.
pub(super) const NEW_FILE_MODE: u32 = 0o600;

/// Replaces `target` with `bytes` atomically. The folder is reached without following
/// any link (`open_dir`, again at write time) and every step (temp file, rename,
/// fsync) happens relative to it, so that a folder swapped while we work cannot
/// redirect the write; the temp file is created exclusively, never through a link, and
/// readable by its owner only until it has its final owner and mode.
pub(super) fn replace_file(
    target: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), String> {
    let dir = target.parent().unwrap_or(Path::new("/"));
    let shown = dir.display();
    let name = target
        .file_name()
        .ok_or_else(|| format!("{} names no file", target.display()))?;
    let d = open_dir(dir).map_err(|e| e.message().to_string())?;
    let cname = name.as_bytes();
    if cname.contains(&0) {
        return Err("bad file name".to_string());
    }
    let mut tmp = TMP_PREFIX.as_bytes().to_vec();
    tmp.extend_from_slice(cname);
    // A leftover of an interrupted restore (never followed if it is a link).
    let _ = d.remove_file(&tmp);
    let mut f = d
        .create_new(&tmp, 0o600)
        .map_err(|e| format!("cannot write in the folder {shown}: {e}"))?;
    let res = (|| {
        f.write_all(bytes)
            .map_err(|e| format!("cannot write in the folder {shown}: {e}"))?;
        if let Some((uid, gid)) = owner {
            let m = f
                .metadata()
                .map_err(|e| format!("cannot stat the temp file: {e}"))?;
            if (m.uid(), m.gid()) != (uid, gid) {
                std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(|e| {
                    format!("cannot keep the owner {uid}:{gid} ({e}); run the restore as root")
                })?;
            }
        }
        // After the chown, which clears set-id bits.
        f.set_permissions(Permissions::from_mode(mode))
            .map_err(|e| format!("cannot set the mode {mode:o}: {e}"))?;
        f.sync_all()
            .map_err(|e| format!("cannot sync the new file in {shown}: {e}"))?;
        d.rename(&tmp, cname)
            .map_err(|e| format!("cannot replace {}: {e}", target.display()))?;
        d.sync_all()
            .map_err(|e| format!("replaced, but cannot sync the folder {shown}: {e}"))
    })();
    if res.is_err() {
        let _ = d.remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_content_compares_every_byte_of_files_over_one_read() {
        let root = std::env::temp_dir().join(format!("neopro-same-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{e}"));
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(root.join("big"), &big).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(root.join("small"), b"hello").unwrap_or_else(|e| panic!("{e}"));
        let dir = Dir::walk(&root).unwrap_or_else(|_| panic!("cannot open {}", root.display()));
        let same = |name: &[u8], want: &[u8]| {
            same_content(&dir, name, want).unwrap_or_else(|e| panic!("{e}"))
        };
        assert!(same(b"small", b"hello"));
        assert!(!same(b"small", b"hellp"));
        assert!(!same(b"small", b"hell"));
        assert!(same(b"big", &big), "a file read in two chunks");
        let mut other = big.clone();
        other[90_000] ^= 1; // in the second read
        assert!(!same(b"big", &other));
        other = big.clone();
        other[10] ^= 1; // in the first
        assert!(!same(b"big", &other));
        let _ = std::fs::remove_dir_all(&root);
    }
}
