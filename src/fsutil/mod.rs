//! File-system primitives for an SD card that may lose power at any moment: atomic
//! replace (temp, fsync, rename, fsync of the directory), opening without following
//! symlinks, and the `flock` that keeps backups one at a time. The raw calls std does
//! not offer (`openat` and the other `*at` calls, `access`, `statvfs`,
//! `sync_file_range`) are in [`sys`], the only `unsafe` code that touches files.

pub mod sys;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
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

/// What a file is, in words, for messages ("a FIFO", "a folder").
pub fn kind_of(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_file() {
        "a regular file"
    } else if ft.is_dir() {
        "a folder"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading without ever waiting: `O_NONBLOCK`, so that a FIFO or a
/// device at the path answers at once instead of blocking the caller (and the backup
/// lock it may hold) for ever. With `nofollow`, a symbolic link at the last component
/// is refused (`ELOOP`). Returns the metadata of the opened handle, so that the type
/// check cannot be raced: the caller judges the file it actually reads. (On a regular
/// file O_NONBLOCK changes nothing.)
pub fn open_read(path: &Path, nofollow: bool) -> io::Result<(File, std::fs::Metadata)> {
    let mut flags = libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
    if nofollow {
        flags |= libc::O_NOFOLLOW;
    }
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    let meta = f.metadata()?;
    Ok((f, meta))
}

/// `open_read`, insisting on a regular file: anything else is an `InvalidInput` error
/// that says what it is ("is a FIFO (named pipe), not a regular file").
pub fn open_regular(path: &Path, nofollow: bool) -> io::Result<(File, std::fs::Metadata)> {
    let (f, meta) = open_read(path, nofollow).map_err(|e| {
        if nofollow && e.raw_os_error() == Some(libc::ELOOP) {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "is a symbolic link, not a regular file",
            )
        } else {
            e
        }
    })?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("is {}, not a regular file", kind_of(meta.file_type())),
        ));
    }
    Ok((f, meta))
}

/// Opens `dir/name` for reading only if it is a regular file and not a symlink
/// (`O_NOFOLLOW`, `O_NONBLOCK`, then a check on the opened handle, so no race can swap
/// it). Anything else is `NotFound`, as the API answers it.
pub fn open_regular_nofollow(path: &Path) -> io::Result<(File, std::fs::Metadata)> {
    open_regular(path, true).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidInput => io::Error::new(io::ErrorKind::NotFound, e.to_string()),
        _ => e,
    })
}

/// Reads a whole small file that must be regular, never waiting on a FIFO and never
/// reading more than `max` bytes (a device or a runaway file is an error, not an
/// out-of-memory); `/dev/null` reads as empty. Returns it and its mode.
pub fn read_small(path: &Path, nofollow: bool, max: u64) -> io::Result<(Vec<u8>, u32)> {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;
    let (f, meta) = open_read(path, nofollow)?;
    // `--config /dev/null` (no file, only the environment) is an empty file.
    if meta.file_type().is_char_device() && meta.rdev() == libc::makedev(1, 3) {
        return Ok((Vec::new(), 0));
    }
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("is {}, not a regular file", kind_of(meta.file_type())),
        ));
    }
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            if max >= 1 << 20 && max.is_multiple_of(1 << 20) {
                format!("is larger than {} MiB", max >> 20)
            } else {
                format!("is larger than {max} bytes")
            },
        )
    };
    if meta.len() > max {
        return Err(too_big());
    }
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    f.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(too_big());
    }
    Ok((buf, meta.mode()))
}

/// Whether another user can get to `path`: every folder above it searchable by others
/// (a 0644 file in a 0700 folder is not readable by them).
pub fn reachable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(real) = std::fs::canonicalize(path) else {
        return true;
    };
    real.ancestors()
        .skip(1)
        .all(|dir| std::fs::metadata(dir).map_or(true, |m| m.permissions().mode() & 0o001 != 0))
}

/// Disk use of the file system holding `path`, computed as `df` does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUse {
    /// Size of the file system (df's "Size").
    pub total: u64,
    /// Blocks in use (total minus free, reserved blocks not counted: df's "Used").
    pub used: u64,
    /// Free for an unprivileged writer (df's "Avail").
    pub avail: u64,
}

impl DiskUse {
    /// df's "Use%": used / (used + avail), rounded up; the blocks reserved for root are
    /// neither used nor available.
    pub fn percent(&self) -> u64 {
        let denom = self.used + self.avail;
        if denom == 0 {
            0
        } else {
            (self.used * 100).div_ceil(denom)
        }
    }
}

/// `df` figures for the file system holding `path`.
pub fn disk_use(path: &Path) -> Option<DiskUse> {
    let st = sys::statvfs(path).ok()?;
    let frsize = st.f_frsize as u64;
    let blocks = st.f_blocks as u64;
    Some(DiskUse {
        total: blocks * frsize,
        used: blocks.saturating_sub(st.f_bfree as u64) * frsize,
        avail: st.f_bavail as u64 * frsize,
    })
}

/// An exclusive `flock` on a file; the kernel drops it when the process dies, so a
/// crashed run never leaves a stale lock behind.
pub struct Lock {
    _file: File,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        // std's lock and try_lock are flock(LOCK_EX) and flock(LOCK_EX | LOCK_NB).
        loop {
            let res = match wait {
                LockWait::Block => file.lock(),
                LockWait::Try => match file.try_lock() {
                    Ok(()) => Ok(()),
                    Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                    Err(std::fs::TryLockError::Error(e)) => Err(e),
                },
            };
            match res {
                Ok(()) => return Ok(Some(Lock { _file: file })),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// The effective uid: 0 (root) may give the files it writes to another owner.
pub fn euid() -> u32 {
    // SAFETY: geteuid takes nothing, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

/// The owner uid of a file, for keeping ownership on restore.
pub fn owner(meta: &std::fs::Metadata) -> (u32, u32) {
    (meta.uid(), meta.gid())
}
