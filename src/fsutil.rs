//! File-system primitives for an SD card that may lose power at any moment: atomic
//! replace (temp, fsync, rename, fsync of the directory), opening without following
//! symlinks, and the `flock` that keeps backups one at a time.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Prefix of every temporary file we create; anything with it is a crash leftover when
/// no backup holds the lock.
pub const TMP_PREFIX: &str = ".tmp-";

/// fsync of a directory, so that a rename in it survives a power cut.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir/.tmp-<name>` exclusively with `mode`, never following a symlink.
pub fn create_temp(dir: &Path, name: &str, mode: u32) -> io::Result<(File, std::path::PathBuf)> {
    let path = dir.join(format!("{TMP_PREFIX}{name}"));
    // A leftover of ours with that exact name is stale (we hold the lock): replace it.
    match std::fs::symlink_metadata(&path) {
        Ok(_) => std::fs::remove_file(&path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)?;
    // The umask may have removed bits; it cannot have added any, but be explicit.
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    Ok((f, path))
}

/// Replaces `dir/name` with `bytes` atomically: a reader sees the old or the new
/// content, never a mix, even after a power cut.
pub fn atomic_write(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
    let (mut f, tmp) = create_temp(dir, name, mode)?;
    let res = f
        .write_all(bytes)
        .and_then(|_| f.sync_all())
        .and_then(|_| std::fs::rename(&tmp, dir.join(name)))
        .and_then(|_| fsync_dir(dir));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Opens `dir/name` for reading only if it is a regular file and not a symlink
/// (`O_NOFOLLOW`, then a check on the opened handle, so no race can swap it).
pub fn open_regular_nofollow(path: &Path) -> io::Result<(File, std::fs::Metadata)> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(io::ErrorKind::NotFound, "is a symbolic link")
            } else {
                e
            }
        })?;
    let meta = f.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "not a regular file",
        ));
    }
    Ok((f, meta))
}

/// Bytes free for an unprivileged writer on the file system holding `path`.
pub fn free_bytes(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
}

/// An exclusive `flock` on a file; the kernel drops it when the process dies, so a
/// crashed run never leaves a stale lock behind.
pub struct Lock {
    _file: File,
}

pub enum LockWait {
    Block,
    Try,
}

impl Lock {
    /// `Ok(None)` when `LockWait::Try` finds the lock held by someone else.
    pub fn acquire(path: &Path, wait: LockWait) -> io::Result<Option<Lock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        let op = match wait {
            LockWait::Block => libc::LOCK_EX,
            LockWait::Try => libc::LOCK_EX | libc::LOCK_NB,
        };
        loop {
            // SAFETY: flock on a file descriptor we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
            if rc == 0 {
                return Ok(Some(Lock { _file: file }));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) => return Ok(None),
                _ => return Err(e),
            }
        }
    }
}

/// The owner uid of a file, for keeping ownership on restore.
pub fn owner(meta: &std::fs::Metadata) -> (u32, u32) {
    (meta.uid(), meta.gid())
}
