//! Steps 2 and 3 of a restore, file by file: compare each target on the Pi with the
//! archive (`inspect`), and replace it atomically in its own folder (`replace_file`),
//! keeping its owner and mode.

use std::ffi::CString;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::fsutil::{self};

use super::load::Archived;

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
    /// Mode and owner the restored file gets: the current file's, else the archive's
    /// mode and the folder's owner (when root).
    pub(super) mode: u32,
    pub(super) owner: Option<(u32, u32)>,
}

impl Item {
    /// A real restore would write this file.
    pub fn to_write(&self) -> bool {
        matches!(self.state, FileState::Changed | FileState::MissingOnPi) && self.problem.is_none()
    }
}

pub(super) fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// True when the file at `path` holds exactly `expected` (read without following a link).
pub(super) fn same_content(path: &Path, expected: &[u8]) -> io::Result<bool> {
    let (mut f, meta) = fsutil::open_regular_nofollow(path)?;
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

/// Why a file could not be written into `dir`, when that can be told beforehand.
pub(super) fn dir_problem(dir: &Path) -> Option<String> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Some(format!("the folder {} does not exist", dir.display()));
        }
        Err(e) => return Some(format!("cannot reach the folder {}: {e}", dir.display())),
        Ok(m) if !m.is_dir() => return Some(format!("{} is not a folder", dir.display())),
        Ok(_) => {}
    }
    let c = CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
        let e = io::Error::last_os_error();
        return Some(format!(
            "the folder {} is not writable ({e})",
            dir.display()
        ));
    }
    None
}

pub(super) fn inspect(name: &'static str, target: PathBuf, archived: Option<&Archived>) -> Item {
    let mut item = Item {
        name,
        target,
        state: FileState::MissingInArchive,
        archive_size: archived.map(|a| a.size),
        current_size: None,
        problem: None,
        mode: archived.map_or(0o600, |a| a.mode & 0o777),
        owner: None,
    };
    let t = item.target.display().to_string();
    let meta = std::fs::symlink_metadata(&item.target);
    if let Ok(m) = &meta
        && m.is_file()
    {
        item.current_size = Some(m.len());
        item.mode = m.mode() & 0o7777;
        item.owner = Some((m.uid(), m.gid()));
    }
    let Some(archived) = archived else {
        return item;
    };
    (item.state, item.problem) = match &meta {
        Err(e) if e.kind() == io::ErrorKind::NotFound => (FileState::MissingOnPi, None),
        Err(e) => (
            FileState::Unreadable,
            Some(format!("cannot inspect {t}: {e}")),
        ),
        Ok(m) if m.file_type().is_symlink() => (
            FileState::Unreadable,
            Some(format!(
                "{t} is a symbolic link: it is not replaced (restore this file by hand)"
            )),
        ),
        Ok(m) if !m.is_file() => (
            FileState::Unreadable,
            Some(format!("{t} is not a regular file: it is not replaced")),
        ),
        Ok(_) => match same_content(&item.target, &archived.content) {
            Ok(true) => (FileState::Unchanged, None),
            Ok(false) => (FileState::Changed, None),
            Err(e) => (FileState::Unreadable, Some(format!("cannot read {t}: {e}"))),
        },
    };
    if !matches!(item.state, FileState::Changed | FileState::MissingOnPi) {
        return item;
    }
    let dir = item.target.parent().unwrap_or(Path::new("/")).to_path_buf();
    item.problem = dir_problem(&dir);
    let me = euid();
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
            item.owner = std::fs::metadata(&dir).ok().map(|m| (m.uid(), m.gid()));
        }
        None => {}
    }
    item
}

/// Replaces `target` with `bytes` atomically. The folder is opened once and every step
/// (temp file, rename, fsync) happens relative to it, so that a folder swapped while we
/// work cannot redirect the write; the temp file is created exclusively, never through
/// a link, and readable by its owner only until it has its final owner and mode.
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
    let d = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| format!("cannot open the folder {shown}: {e}"))?;
    let dfd = d.as_raw_fd();
    let cname = CString::new(name.as_bytes()).map_err(|_| "bad file name".to_string())?;
    let mut tmp = TMP_PREFIX.as_bytes().to_vec();
    tmp.extend_from_slice(name.as_bytes());
    let ctmp = CString::new(tmp).map_err(|_| "bad file name".to_string())?;
    // A leftover of an interrupted restore (never followed if it is a link).
    // SAFETY: dfd is an open folder and ctmp a NUL-terminated name.
    unsafe { libc::unlinkat(dfd, ctmp.as_ptr(), 0) };
    // SAFETY: as above; the mode argument is what O_CREAT reads.
    let fd = unsafe {
        libc::openat(
            dfd,
            ctmp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(format!("cannot write in the folder {shown}: {e}"));
    }
    // SAFETY: fd was just opened here and nothing else owns it.
    let mut f = unsafe { File::from_raw_fd(fd) };
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
        // SAFETY: dfd is an open folder; both names are NUL-terminated.
        if unsafe { libc::renameat(dfd, ctmp.as_ptr(), dfd, cname.as_ptr()) } != 0 {
            let e = io::Error::last_os_error();
            return Err(format!("cannot replace {}: {e}", target.display()));
        }
        d.sync_all()
            .map_err(|e| format!("replaced, but cannot sync the folder {shown}: {e}"))
    })();
    if res.is_err() {
        // SAFETY: as above.
        unsafe { libc::unlinkat(dfd, ctmp.as_ptr(), 0) };
    }
    res
}
