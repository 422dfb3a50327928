//! Steps 2 and 3 of a restore, file by file: compare each target on the Pi with the
//! archive (`inspect`), and replace it atomically in its own folder (`replace_file`),
//! keeping its owner and mode (a missing file is created 0600, owned like its folder).
//! Target folders are reached without following any symbolic link (`open_dir`), so a
//! restore never writes outside its three targets, even as root.

use std::ffi::CString;
use std::fs::{File, Permissions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

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

pub(super) fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
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

fn cstr(b: &[u8]) -> Result<CString, DirError> {
    CString::new(b).map_err(|_| DirError::Other("a name holds a NUL byte".to_string()))
}

/// Opens the folder `dir` (absolute) one component at a time, each relative to the one
/// before with `O_NOFOLLOW`: a symbolic link anywhere on the way is refused, never
/// followed, so that a restore (even as root) writes only into the folder named in the
/// configuration, never into one a link points to. Returns a descriptor usable for
/// `openat`, `renameat` and `fsync`.
pub(super) fn open_dir(dir: &Path) -> Result<OwnedFd, DirError> {
    use std::path::Component;
    if !dir.is_absolute() {
        return Err(DirError::Unsafe(format!(
            "{} is not an absolute path",
            dir.display()
        )));
    }
    let open = |at: libc::c_int, name: &CString, flags: libc::c_int| {
        // SAFETY: `name` is NUL-terminated; `at` is AT_FDCWD or a descriptor we own.
        let fd = unsafe { libc::openat(at, name.as_ptr(), flags | libc::O_CLOEXEC) };
        if fd < 0 {
            Err(io::Error::last_os_error())
        } else {
            // SAFETY: fd was just opened and nothing else owns it.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        }
    };
    let root = cstr(b"/")?;
    let mut cur = open(libc::AT_FDCWD, &root, libc::O_PATH | libc::O_DIRECTORY)
        .map_err(|e| DirError::Other(format!("cannot open /: {e}")))?;
    let mut walked = PathBuf::from("/");
    for comp in dir.components() {
        let name = match comp {
            Component::RootDir | Component::CurDir => continue,
            Component::Normal(n) => n,
            Component::ParentDir | Component::Prefix(_) => {
                return Err(DirError::Unsafe(format!(
                    "{} holds `..`: not followed",
                    dir.display()
                )));
            }
        };
        walked.push(name);
        let c = cstr(name.as_bytes())?;
        match open(
            cur.as_raw_fd(),
            &c,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        ) {
            Ok(fd) => cur = fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(DirError::Missing(format!(
                    "the folder {} does not exist",
                    walked.display()
                )));
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                let what = match stat_at(cur.as_raw_fd(), &c) {
                    Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => "a symbolic link",
                    _ => "not a folder",
                };
                return Err(DirError::Unsafe(format!(
                    "{} is {what}: a restore never follows it (restore this file by hand)",
                    walked.display()
                )));
            }
            Err(e) => {
                return Err(DirError::Other(format!(
                    "cannot reach the folder {}: {e}",
                    walked.display()
                )));
            }
        }
    }
    // The last one again, readable (fsync needs more than an O_PATH descriptor).
    let dot = cstr(b".")?;
    open(cur.as_raw_fd(), &dot, libc::O_RDONLY | libc::O_DIRECTORY)
        .map_err(|e| DirError::Other(format!("cannot open the folder {}: {e}", dir.display())))
}

/// `fstatat` without following a symlink.
fn stat_at(dfd: libc::c_int, name: &CString) -> io::Result<libc::stat> {
    // SAFETY: a zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: dfd is an open folder, name NUL-terminated, st writable.
    if unsafe { libc::fstatat(dfd, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// True when the file `name` in the folder `dfd` holds exactly `expected` (opened
/// without following a link and without blocking, its type checked on the handle).
pub(super) fn same_content(dfd: &OwnedFd, name: &CString, expected: &[u8]) -> io::Result<bool> {
    // SAFETY: dfd is an open folder and name NUL-terminated.
    let fd = unsafe {
        libc::openat(
            dfd.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and nothing else owns it.
    let mut f = unsafe { File::from_raw_fd(fd) };
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
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
    let cname = CString::new(file_name).ok();
    let st = match (&dfd, &cname) {
        (Ok(d), Some(c)) => Some(stat_at(d.as_raw_fd(), c)),
        _ => None,
    };
    if let Some(Ok(st)) = &st
        && st.st_mode & libc::S_IFMT == libc::S_IFREG
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
        (_, _, Some(Ok(st))) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => (
            FileState::Unreadable,
            Some(format!(
                "{t} is a symbolic link: it is not replaced (restore this file by hand)"
            )),
        ),
        (_, _, Some(Ok(st))) if st.st_mode & libc::S_IFMT != libc::S_IFREG => (
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
            item.owner = dfd
                .as_ref()
                .ok()
                .and_then(|d| File::from(d.try_clone().ok()?).metadata().ok())
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
    let d = File::from(open_dir(dir).map_err(|e| e.message().to_string())?);
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
