//! The raw file-system calls: every `unsafe` block of the crate that touches a file is
//! here, behind small safe functions. std reaches a file by its path (resolved from the
//! top again at each call) or through a handle it opened (`fstat`, `fsync`, `fchown`,
//! `fchmod`, `flock`); what it cannot do, call by call, and why we need it:
//!
//! - `openat(dirfd, name, O_NOFOLLOW…)` ([`Dir::walk`], [`Dir::descend`],
//!   [`Dir::reopen`], [`Dir::open_dir`], [`Dir::open_regular`], [`Dir::create_new`]): opens one name
//!   *relative to a folder we hold*. A restore reaches its target folders one component
//!   at a time, from `/` or from the videos folder, each with `O_NOFOLLOW`, then does
//!   every later step in the folder it holds: a symbolic link anywhere on the way, or a
//!   folder swapped while it works, can never redirect a write, even as root. std's
//!   `OpenOptions::custom_flags(O_NOFOLLOW)` only guards the last component of a path
//!   that the kernel walks from the top again, following every link before it; std has
//!   no open relative to a folder handle. The walk steps with `O_PATH` (a folder we may
//!   search but not list is passed through, as the kernel does for a path), which std
//!   cannot open either, then reopens the last folder readable (`fsync` needs it).
//! - `fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW or 0)` ([`Dir::stat`]): what a name in
//!   a held folder is (a link, a regular file, its size, owner and mode) without opening
//!   it, where a FIFO could block and a device be touched. std's `symlink_metadata` and
//!   `metadata` take a path.
//! - `unlinkat`, `mkdirat`, `renameat` ([`Dir::remove_file`], [`Dir::create_dir`],
//!   [`Dir::rename`]): remove a leftover (a link itself, never what it points to),
//!   create a folder, move a finished file into place, all in the held folder. std's
//!   `remove_file`, `create_dir` and `rename` take paths.
//! - `access(path, W_OK)` ([`check_writable`]): whether a file can be created in a
//!   folder, asked beforehand (a dry run writes nothing) for the real uid, read-only
//!   mounts included. std has no `access`.
//! - `statvfs` ([`statvfs`]): size and free space of a file system, as `df` shows them.
//!   std has none.
//! - `sync_file_range(SYNC_FILE_RANGE_WRITE)` ([`start_writeback`]): starts writing a
//!   range of a file to the disk without waiting, so that a large archive never piles up
//!   dirty pages. std only has the waiting `sync_data`/`sync_all`.
//!
//! Names given to a [`Dir`] are single file names: empty, `.`, `..`, or a name holding
//! `/` or NUL is refused (`InvalidInput`) before any call, so that no call here resolves
//! more than one component.

use std::ffi::{CStr, CString, OsStr};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Whether a call on a name follows a symbolic link that the name itself is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalLink {
    Follow,
    NoFollow,
}

/// A folder held open (`O_DIRECTORY`, readable), reached without following a link: the
/// anchor of the calls on the names in it.
#[derive(Debug)]
pub struct Dir {
    file: File,
}

/// Why a walk stopped. The paths are the ones walked so far, the failing name last
/// (absolute for [`Dir::walk`], relative to the start for [`Dir::descend`]).
#[derive(Debug)]
pub enum WalkError {
    /// [`Dir::walk`] was given a relative path.
    NotAbsolute(PathBuf),
    /// The path holds `..`: never resolved.
    DotDot(PathBuf),
    /// A name that is not a single file name (NUL, `/`, empty, `.`, `..`).
    BadName(PathBuf),
    /// That folder does not exist.
    Missing(PathBuf),
    /// That name is a symbolic link: never followed.
    Link(PathBuf),
    /// That name is not a folder.
    NotADir(PathBuf),
    /// That folder could not be reached for another reason.
    Reach(PathBuf, io::Error),
    /// The folder reached could not be opened for reading.
    Open(PathBuf, io::Error),
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalkError::NotAbsolute(p) => write!(f, "{} is not an absolute path", p.display()),
            WalkError::DotDot(p) => write!(f, "{} holds `..`: not followed", p.display()),
            WalkError::BadName(p) => write!(f, "{} holds a name that cannot be used", p.display()),
            WalkError::Missing(p) => write!(f, "the folder {} does not exist", p.display()),
            WalkError::Link(p) => write!(f, "{} is a symbolic link: not followed", p.display()),
            WalkError::NotADir(p) => write!(f, "{} is not a folder", p.display()),
            WalkError::Reach(p, e) => write!(f, "cannot reach the folder {}: {e}", p.display()),
            WalkError::Open(p, e) => write!(f, "cannot open the folder {}: {e}", p.display()),
        }
    }
}

/// `name` as a C string, if it is one file name.
fn file_name(name: &[u8]) -> io::Result<CString> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a single file name",
        ));
    }
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

/// The one raw `openat`: `at` is a folder descriptor (or `AT_FDCWD`), `O_CLOEXEC` is
/// always added, `mode` is read only with `O_CREAT`.
fn open_at(at: RawFd, name: &CStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated and outlives the call; `at` is AT_FDCWD or a
    // descriptor the caller holds open across the call; the variadic mode is passed as
    // the `unsigned int` the kernel reads.
    let fd = unsafe { libc::openat(at, name.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat just returned this descriptor, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The one raw `fstatat`.
fn stat_at(at: RawFd, name: &CStr, follow: FinalLink) -> io::Result<libc::stat> {
    let flags = match follow {
        FinalLink::Follow => 0,
        FinalLink::NoFollow => libc::AT_SYMLINK_NOFOLLOW,
    };
    // SAFETY: `stat` is plain integers, for which all zeroes is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `at` is held open across the call, `name` is NUL-terminated, `st` is a
    // writable stat buffer of the right type.
    if unsafe { libc::fstatat(at, name.as_ptr(), &mut st, flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// True when `st` (from [`Dir::stat`]) is of the type `S_IF…`.
pub fn is_type(st: &libc::stat, kind: libc::mode_t) -> bool {
    st.st_mode & libc::S_IFMT == kind
}

/// Walks `names` from the folder `start` (`at`), each with `O_PATH | O_NOFOLLOW`, then
/// opens the folder reached readable.
fn walk_from(start: RawFd, base: &Path, names: &[&[u8]]) -> Result<Dir, WalkError> {
    let mut walked = base.to_path_buf();
    let mut cur: Option<OwnedFd> = None;
    for n in names {
        walked.push(OsStr::from_bytes(n));
        let Ok(c) = file_name(n) else {
            return Err(WalkError::BadName(walked));
        };
        let at = cur.as_ref().map_or(start, AsRawFd::as_raw_fd);
        match open_at(
            at,
            &c,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        ) {
            Ok(fd) => cur = Some(fd),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(WalkError::Missing(walked));
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                let link = stat_at(at, &c, FinalLink::NoFollow)
                    .is_ok_and(|st| is_type(&st, libc::S_IFLNK));
                return Err(if link {
                    WalkError::Link(walked)
                } else {
                    WalkError::NotADir(walked)
                });
            }
            Err(e) => return Err(WalkError::Reach(walked, e)),
        }
    }
    let at = cur.as_ref().map_or(start, AsRawFd::as_raw_fd);
    // The last one again, readable (fsync and fchown need more than an O_PATH handle).
    match open_at(at, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0) {
        Ok(fd) => Ok(Dir {
            file: File::from(fd),
        }),
        Err(e) => Err(WalkError::Open(walked, e)),
    }
}

impl Dir {
    /// The folder an open handle holds (a folder the caller opened with std), opened
    /// again readable; `ENOTDIR` when it is not a folder.
    pub fn reopen(folder: &File) -> io::Result<Dir> {
        let fd = open_at(
            folder.as_raw_fd(),
            c".",
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        )?;
        Ok(Dir {
            file: File::from(fd),
        })
    }

    /// Opens the absolute folder `path` one component at a time from `/`, each relative
    /// to the one before with `O_NOFOLLOW`: a symbolic link anywhere on the way is
    /// refused, never followed, and so is `..`.
    pub fn walk(path: &Path) -> Result<Dir, WalkError> {
        if !path.is_absolute() {
            return Err(WalkError::NotAbsolute(path.to_path_buf()));
        }
        let mut names = Vec::new();
        for comp in path.components() {
            match comp {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(n) => names.push(n.as_bytes()),
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(WalkError::DotDot(path.to_path_buf()));
                }
            }
        }
        let root = open_at(libc::AT_FDCWD, c"/", libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(|e| WalkError::Reach(PathBuf::from("/"), e))?;
        walk_from(root.as_raw_fd(), Path::new("/"), &names)
    }

    /// Opens the folder `names` (one file name each) below this one, never through a
    /// link, as [`Dir::walk`] does. No names: this folder again.
    pub fn descend(&self, names: &[&[u8]]) -> Result<Dir, WalkError> {
        if names.is_empty() {
            return self
                .try_clone()
                .map_err(|e| WalkError::Open(PathBuf::new(), e));
        }
        walk_from(self.file.as_raw_fd(), Path::new(""), names)
    }

    /// Opens the folder `name` in this one, readable, never through a link.
    pub fn open_dir(&self, name: &[u8]) -> io::Result<Dir> {
        let c = file_name(name)?;
        let fd = open_at(
            self.file.as_raw_fd(),
            &c,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )?;
        Ok(Dir {
            file: File::from(fd),
        })
    }

    /// `fstatat`: what `name` is, without opening it.
    pub fn stat(&self, name: &[u8], follow: FinalLink) -> io::Result<libc::stat> {
        stat_at(self.file.as_raw_fd(), &file_name(name)?, follow)
    }

    /// Opens `name` for reading if it is a regular file: `O_NONBLOCK`, so that a FIFO or
    /// a device answers at once instead of blocking, then its type checked on the
    /// handle (no race can swap it); anything else is an error "not a regular file".
    pub fn open_regular(&self, name: &[u8], follow: FinalLink) -> io::Result<(File, Metadata)> {
        let mut flags = libc::O_RDONLY | libc::O_NONBLOCK;
        if follow == FinalLink::NoFollow {
            flags |= libc::O_NOFOLLOW;
        }
        let f = File::from(open_at(self.file.as_raw_fd(), &file_name(name)?, flags, 0)?);
        let meta = f.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        Ok((f, meta))
    }

    /// Creates `name` for writing, exclusively (it must not exist, not even as a link),
    /// with `mode` (less the umask).
    pub fn create_new(&self, name: &[u8], mode: u32) -> io::Result<File> {
        let fd = open_at(
            self.file.as_raw_fd(),
            &file_name(name)?,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            mode,
        )?;
        Ok(File::from(fd))
    }

    /// `unlinkat`: removes the file `name` (a link itself, never what it points to).
    pub fn remove_file(&self, name: &[u8]) -> io::Result<()> {
        let c = file_name(name)?;
        // SAFETY: the folder is held open by `self`, `c` is NUL-terminated.
        if unsafe { libc::unlinkat(self.file.as_raw_fd(), c.as_ptr(), 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `mkdirat`: creates the folder `name` with `mode` (less the umask).
    pub fn create_dir(&self, name: &[u8], mode: u32) -> io::Result<()> {
        let c = file_name(name)?;
        // SAFETY: the folder is held open by `self`, `c` is NUL-terminated.
        if unsafe { libc::mkdirat(self.file.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `renameat`: moves `from` onto `to` in this folder, atomically.
    pub fn rename(&self, from: &[u8], to: &[u8]) -> io::Result<()> {
        let (cf, ct) = (file_name(from)?, file_name(to)?);
        let fd = self.file.as_raw_fd();
        // SAFETY: the folder is held open by `self`, both names are NUL-terminated.
        if unsafe { libc::renameat(fd, cf.as_ptr(), fd, ct.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// fsync of the folder, so that a rename in it survives a power cut.
    pub fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    /// The folder's own metadata (its owner, for the files made in it).
    pub fn metadata(&self) -> io::Result<Metadata> {
        self.file.metadata()
    }

    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            file: self.file.try_clone()?,
        })
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// `access(path, W_OK)`: Ok when the real user may write in `path`.
pub fn check_writable(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `statvfs` of the file system holding `path`.
pub fn statvfs(path: &Path) -> io::Result<libc::statvfs> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
    // SAFETY: `statvfs` is plain integers, for which all zeroes is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a writable statvfs buffer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// Starts the write-back of `len` bytes of `file` from `offset`, without waiting
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). Advice only: an error (a file system
/// without it, an offset out of range) changes nothing but speed, and is ignored.
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    let (Ok(off), Ok(len)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return;
    };
    // SAFETY: a descriptor `file` holds open across the call; the kernel checks the
    // range.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), off, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
    use std::time::Duration;

    /// A real folder under the temp dir, removed at the end.
    struct Tmp(PathBuf);

    impl Tmp {
        fn new(name: &str) -> Tmp {
            let d = std::env::temp_dir().join(format!("neopro-sys-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).expect("temp dir");
            // The walks refuse links: the temp dir's own path may hold one.
            Tmp(std::fs::canonicalize(&d).expect("temp dir"))
        }
    }

    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn mkfifo(path: &Path) {
        let c = CString::new(path.as_os_str().as_bytes()).expect("no NUL");
        // SAFETY: `c` is a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    }

    #[test]
    fn walk_reaches_a_folder_and_works_in_it() {
        let t = Tmp::new("walk");
        let deep = t.0.join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("f"), b"hello").unwrap();
        let d = Dir::walk(&deep).unwrap();
        let st = d.stat(b"f", FinalLink::NoFollow).unwrap();
        assert!(is_type(&st, libc::S_IFREG));
        assert_eq!(st.st_size, 5);
        let (mut f, meta) = d.open_regular(b"f", FinalLink::NoFollow).unwrap();
        assert_eq!(meta.len(), 5);
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        // The same folder from a held one, by names.
        let top = Dir::walk(&t.0).unwrap();
        let d2 = top.descend(&[b"a", b"b", b"c"]).unwrap();
        assert_eq!(d2.metadata().unwrap().ino(), d.metadata().unwrap().ino());
        let again = top.descend(&[]).unwrap();
        assert_eq!(
            again.metadata().unwrap().ino(),
            top.metadata().unwrap().ino()
        );
        // A folder opened with std, as a Dir; a file is not one.
        let held = Dir::reopen(&File::open(&deep).unwrap()).unwrap();
        assert_eq!(held.metadata().unwrap().ino(), d.metadata().unwrap().ino());
        let e = Dir::reopen(&File::open(deep.join("f")).unwrap()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR));
        d.sync_all().unwrap();
        // Missing folders say which one.
        match Dir::walk(&t.0.join("a/nope/c")) {
            Err(WalkError::Missing(p)) => assert_eq!(p, t.0.join("a/nope")),
            other => panic!("{other:?}"),
        }
        match top.descend(&[b"a", b"x"]) {
            Err(WalkError::Missing(p)) => assert_eq!(p, Path::new("a/x")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_symlink_at_each_level_is_refused() {
        let t = Tmp::new("links");
        let real = t.0.join("real");
        std::fs::create_dir_all(real.join("b/c")).unwrap();
        let names: [&[u8]; 3] = [b"a", b"b", b"c"];
        for level in 0..3 {
            // a/b/c with the folder at `level` replaced by a link to a real folder.
            let base = t.0.join(format!("tree{level}"));
            let mut cur = base.clone();
            std::fs::create_dir_all(&cur).unwrap();
            for (i, n) in names.iter().enumerate() {
                cur.push(OsStr::from_bytes(n));
                if i == level {
                    symlink(real.join("b/c"), &cur).unwrap();
                    break;
                }
                std::fs::create_dir(&cur).unwrap();
            }
            let full = base.join("a/b/c");
            match Dir::walk(&full) {
                Err(WalkError::Link(p)) => assert_eq!(p, cur, "level {level}"),
                other => panic!("level {level}: {other:?}"),
            }
            let top = Dir::walk(&base).unwrap();
            match top.descend(&names) {
                Err(WalkError::Link(p)) => {
                    assert_eq!(base.join(p), cur, "level {level}")
                }
                other => panic!("level {level}: {other:?}"),
            }
            // Dir::open refuses a final link, open_dir any link.
            assert!(Dir::walk(&cur).is_err(), "level {level}");
            let parent = Dir::walk(cur.parent().unwrap()).unwrap();
            let last = cur.file_name().unwrap().as_bytes();
            // (O_DIRECTORY is checked before O_NOFOLLOW: a link is ENOTDIR here.)
            let e = parent.open_dir(last).unwrap_err();
            assert!(
                matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)),
                "level {level}: {e}"
            );
        }
        // A file on the way is not a folder; `..` and relative paths are never walked.
        std::fs::write(t.0.join("file"), b"").unwrap();
        assert!(matches!(
            Dir::walk(&t.0.join("file/x")),
            Err(WalkError::NotADir(..))
        ));
        assert!(matches!(
            Dir::walk(&t.0.join("real/../real")),
            Err(WalkError::DotDot(_))
        ));
        assert!(matches!(
            Dir::walk(Path::new("real")),
            Err(WalkError::NotAbsolute(_))
        ));
        // The file itself: stat tells a link, open refuses it unless asked to follow.
        std::fs::write(real.join("target"), b"x").unwrap();
        symlink(real.join("target"), real.join("link")).unwrap();
        let d = Dir::walk(&real).unwrap();
        let st = d.stat(b"link", FinalLink::NoFollow).unwrap();
        assert!(is_type(&st, libc::S_IFLNK));
        let st = d.stat(b"link", FinalLink::Follow).unwrap();
        assert!(is_type(&st, libc::S_IFREG));
        let e = d.open_regular(b"link", FinalLink::NoFollow).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        assert!(d.open_regular(b"link", FinalLink::Follow).is_ok());
    }

    #[test]
    fn a_fifo_is_not_blocked_on() {
        let t = Tmp::new("fifo");
        mkfifo(&t.0.join("pipe"));
        let path = t.0.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        // In a thread: a blocking open would hang it, not the test.
        std::thread::spawn(move || {
            let d = Dir::walk(&path).unwrap();
            let st = d
                .stat(b"pipe", FinalLink::NoFollow)
                .map(|st| st.st_mode & libc::S_IFMT);
            let open = d.open_regular(b"pipe", FinalLink::NoFollow).map(|_| ());
            let _ = tx.send((st.ok(), open.map_err(|e| e.to_string())));
        });
        let (st, open) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("opening a FIFO blocked");
        assert_eq!(st, Some(libc::S_IFIFO));
        assert_eq!(open, Err("not a regular file".to_string()));
    }

    #[test]
    fn create_rename_remove_and_mkdir_stay_in_the_folder() {
        let t = Tmp::new("write");
        let outside = t.0.join("outside");
        std::fs::write(&outside, b"keep").unwrap();
        std::fs::create_dir(t.0.join("in")).unwrap();
        let d = Dir::walk(&t.0.join("in")).unwrap();
        // Exclusive, never through a link, 0600.
        symlink(&outside, t.0.join("in/link")).unwrap();
        let e = d.create_new(b"link", 0o600).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        let mut f = d.create_new(b"tmp", 0o600).unwrap();
        f.write_all(b"new").unwrap();
        assert_eq!(f.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(
            d.create_new(b"tmp", 0o600).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        d.rename(b"tmp", b"final").unwrap();
        assert_eq!(std::fs::read(t.0.join("in/final")).unwrap(), b"new");
        assert!(!t.0.join("in/tmp").exists());
        // unlinkat removes the link, not its target.
        d.remove_file(b"link").unwrap();
        assert!(std::fs::symlink_metadata(t.0.join("in/link")).is_err());
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
        assert_eq!(
            d.remove_file(b"link").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        d.create_dir(b"sub", 0o755).unwrap();
        assert_eq!(
            d.create_dir(b"sub", 0o755).unwrap_err().raw_os_error(),
            Some(libc::EEXIST)
        );
        assert!(d.open_dir(b"sub").is_ok());
        // Never more than one component, whatever the caller passes.
        for bad in [&b""[..], b".", b"..", b"../outside", b"a/b", b"a\0b"] {
            let e = d.stat(bad, FinalLink::Follow).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
            assert!(d.create_new(bad, 0o600).is_err(), "{bad:?}");
            assert!(d.remove_file(bad).is_err(), "{bad:?}");
            assert!(
                matches!(d.descend(&[bad]), Err(WalkError::BadName(_))),
                "{bad:?}"
            );
        }
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
    }

    #[test]
    fn access_and_statvfs() {
        let t = Tmp::new("access");
        check_writable(&t.0).unwrap();
        let e = check_writable(&t.0.join("missing")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(check_writable(Path::new("a\0b")).is_err());
        let st = statvfs(&t.0).unwrap();
        assert!(st.f_blocks > 0 && st.f_frsize > 0);
        assert!(statvfs(&t.0.join("missing")).is_err());
        // Write-back of a real file leaves its content as written.
        let mut f = File::create(t.0.join("f")).unwrap();
        f.write_all(&[7u8; 8192]).unwrap();
        start_writeback(&f, 0, 8192);
        start_writeback(&f, u64::MAX, 1);
        assert_eq!(std::fs::read(t.0.join("f")).unwrap(), vec![7u8; 8192]);
    }
}
