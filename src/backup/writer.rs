//! The archive writer: every source streamed through tar and gzip into a temp file in
//! BACKUP_DIR (no staging copy), then fsync, rename, fsync of the folder. The layout it
//! writes is docs/format.md, "The archive".

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::backup::archive::{self, MANIFEST};
use crate::backup::gzip::{MixedGz, Syncing};
use crate::backup::{describe_io, sysinfo};
use crate::clock::{self, Tz};
use crate::config::Config;
use crate::fsutil;
use crate::status::Log;
use crate::store;
use crate::videos::{hashes, inventory};

/// Where the files of one archive come from; the safety backup of a restore uses it too.
pub struct Sources<'a> {
    pub cfg: &'a Config,
}

pub struct Made {
    pub name: String,
    pub size: u64,
    /// When the run started (the time in the name), Unix seconds.
    pub started: i64,
}

/// Picks the archive name for now, waiting for the next second while that name exists
/// (two archives never share a name).
fn fresh_name(dir: &Path, tz: &Tz) -> (String, i64) {
    loop {
        let now = clock::now_unix();
        let name = format!("{}.tar.gz", store::stem_for(tz.to_naive(now)));
        match std::fs::symlink_metadata(dir.join(&name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (name, now),
            _ => {
                let sub = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                std::thread::sleep(
                    Duration::from_nanos(u64::from(1_000_000_000 - sub)) + Duration::from_millis(1),
                );
            }
        }
    }
}

/// Writes a complete archive of `src` into `dir` under a fresh name. Call with the lock.
pub fn write_archive(
    src: &Sources,
    dir: &Path,
    tz: &Tz,
    cancel: &AtomicBool,
    log: &Log,
    warnings: &mut Vec<String>,
) -> Result<Made, String> {
    let (name, now) = fresh_name(dir, tz);
    let (file, tmp) = fsutil::create_temp(dir, &name, 0o600).map_err(|e| {
        describe_io(
            &format!("cannot create a temporary file in {}", dir.display()),
            &e,
            dir,
        )
    })?;
    let res = stream_archive(src, file, &name, now, tz, cancel, log, warnings);
    let res = res.and_then(|f| {
        f.sync_all()
            .map_err(|e| describe_io("cannot sync the archive", &e, dir))?;
        drop(f);
        let path = dir.join(&name);
        std::fs::rename(&tmp, &path)
            .map_err(|e| describe_io("cannot rename the archive", &e, dir))?;
        fsutil::fsync_dir(dir).map_err(|e| describe_io("cannot sync BACKUP_DIR", &e, dir))?;
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Ok(Made {
            name,
            size,
            started: now,
        })
    });
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
        let _ = fsutil::fsync_dir(dir);
    }
    res
}

/// A reader that hashes what passes and insists on exactly `len` bytes, so that a
/// file that shrinks while we read it cannot produce a corrupt tar entry.
struct Exact<'a, R> {
    inner: R,
    left: u64,
    hash: crate::units::Sha256,
    cancel: &'a AtomicBool,
}

impl<R: Read> Read for Exact<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        if self.cancel.load(Ordering::Relaxed) {
            // Not ErrorKind::Interrupted: io::copy (inside tar) retries those forever.
            return Err(io::Error::other("backup cancelled (shutdown)"));
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being read",
            ));
        }
        self.hash.update(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

struct Writer<'a, W: Write> {
    tar: tar::Builder<W>,
    top: String,
    manifest: Vec<u8>,
    now: i64,
    cancel: &'a AtomicBool,
}

impl<W: Write> Writer<'_, W> {
    fn header(
        kind: tar::EntryType,
        size: u64,
        mode: u32,
        mtime: i64,
        owner: (u32, u32),
    ) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(u64::try_from(mtime).unwrap_or(0));
        h.set_uid(u64::from(owner.0));
        h.set_gid(u64::from(owner.1));
        h
    }

    /// The top folder: 0700, it holds secrets.
    fn dir(&mut self, inner: &[u8]) -> io::Result<()> {
        self.dir_as(inner, 0o700, self.now, own_ids())
    }

    /// A folder with the mode, mtime and owner it has on the Pi (folders of videos/).
    fn dir_as(&mut self, inner: &[u8], mode: u32, mtime: i64, owner: (u32, u32)) -> io::Result<()> {
        let mut path = self.top.as_bytes().to_vec();
        if !inner.is_empty() {
            path.push(b'/');
            path.extend_from_slice(inner);
        }
        path.push(b'/');
        let mut h = Self::header(tar::EntryType::Directory, 0, mode, mtime, owner);
        self.tar.append_data(
            &mut h,
            Path::new(std::ffi::OsStr::from_bytes(&path)),
            io::empty(),
        )
    }

    fn stream(
        &mut self,
        inner: &[u8],
        reader: impl Read,
        size: u64,
        mode: u32,
        mtime: i64,
        owner: (u32, u32),
    ) -> io::Result<()> {
        let mut path = self.top.as_bytes().to_vec();
        path.push(b'/');
        path.extend_from_slice(inner);
        let mut h = Self::header(tar::EntryType::Regular, size, mode, mtime, owner);
        let mut r = Exact {
            inner: reader,
            left: size,
            hash: crate::units::Sha256::new(),
            cancel: self.cancel,
        };
        self.tar.append_data(
            &mut h,
            Path::new(std::ffi::OsStr::from_bytes(&path)),
            &mut r,
        )?;
        let digest = crate::units::hex(&r.hash.finish());
        self.manifest.extend(archive::manifest_line(&digest, inner));
        Ok(())
    }

    fn bytes(&mut self, inner: &str, data: &[u8], mode: u32) -> io::Result<()> {
        self.stream(
            inner.as_bytes(),
            data,
            data.len() as u64,
            mode,
            self.now,
            own_ids(),
        )
    }
}

/// Size of the reads of a video copied into the archive.
const VIDEO_CHUNK: usize = 1024 * 1024;
/// From this size on, a video's SHA-256 is computed on a second thread (`copy_hashing_aside`).
const PIPELINE_MIN: u64 = 4 * VIDEO_CHUNK as u64;
/// Chunks the copy may be ahead of the hashing thread, and their size: three chunks
/// (768 KiB) circulate between the two threads.
const CHUNKS_IN_FLIGHT: usize = 2;
const PIPELINE_CHUNK: usize = 256 * 1024;

/// Whether this Pi has a second core to hash on (a Pi Zero has one).
fn two_cores() -> bool {
    static TWO: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TWO.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

impl<X: Write> Writer<'_, MixedGz<X>> {
    /// A video (INCLUDE_VIDEOS): its tar header through the tar builder, then its bytes,
    /// read in chunks, as stored deflate blocks (backup/gzip.rs): already
    /// compressed, a video is copied at disk speed instead of going through the
    /// compressor. Its MANIFEST.sha256 line takes `known`, the hash the cache holds for
    /// this very version of the file (videos/hashes.rs), else the SHA-256 computed on
    /// the way; returns that hash, and whether the file stayed the version `meta` says
    /// (else the hash is not one to cache). A file that changes while a known hash is
    /// used fails the run (its manifest line would lie).
    fn video(
        &mut self,
        inner: &[u8],
        mut file: File,
        meta: &std::fs::Metadata,
        known: Option<[u8; 32]>,
        buf: &mut Vec<u8>,
    ) -> io::Result<([u8; 32], bool)> {
        let size = meta.len();
        let mut path = self.top.as_bytes().to_vec();
        path.push(b'/');
        path.extend_from_slice(inner);
        let mut h = Self::header(
            tar::EntryType::Regular,
            size,
            meta.mode() & 0o7777,
            meta.mtime(),
            fsutil::owner(meta),
        );
        self.tar.get_mut().set_stored(true)?;
        let res = (|| {
            // The header (and a GNU long-name entry before it when the path is long);
            // the data follows by hand: the builder keeps no count of what was written.
            self.tar.append_data(
                &mut h,
                Path::new(std::ffi::OsStr::from_bytes(&path)),
                io::empty(),
            )?;
            let computed = if known.is_some() {
                self.copy(&mut file, size, None, buf)?;
                None
            } else if size >= PIPELINE_MIN && two_cores() {
                Some(self.copy_hashing_aside(&mut file, size, buf)?)
            } else {
                let mut h = hashes::Hasher::new();
                self.copy(&mut file, size, Some(&mut h), buf)?;
                Some(h.finish())
            };
            let pad = (512 - size % 512) % 512;
            self.tar.get_mut().write_all(&[0u8; 512][..pad as usize])?;
            let same = hashes::Key::of_meta(&file.metadata()?) == hashes::Key::of_meta(meta);
            let hash: [u8; 32] = match (known, computed) {
                (_, Some(h)) => h,
                (Some(_), None) if !same => {
                    return Err(io::Error::other(
                        "it changed while it was being archived; the next run takes it again",
                    ));
                }
                (Some(k), None) => k,
                (None, None) => [0u8; 32],
            };
            self.manifest
                .extend(archive::manifest_line(&crate::units::hex(&hash), inner));
            Ok((hash, same))
        })();
        let back = self.tar.get_mut().set_stored(false);
        match res {
            Err(e) => Err(e),
            Ok(v) => back.map(|_| v),
        }
    }

    /// Copies `size` bytes of `file` into the archive in chunks of `buf` (VIDEO_CHUNK),
    /// feeding `hasher` on the way.
    fn copy(
        &mut self,
        file: &mut File,
        size: u64,
        mut hasher: Option<&mut hashes::Hasher>,
        buf: &mut Vec<u8>,
    ) -> io::Result<()> {
        if buf.len() < VIDEO_CHUNK {
            buf.resize(VIDEO_CHUNK, 0);
        }
        let mut left = size;
        while left > 0 {
            let n = self.read_chunk(file, left, buf)?;
            if let Some(h) = hasher.as_mut() {
                h.update(&buf[..n]);
            }
            self.tar.get_mut().write_all(&buf[..n])?;
            left -= n as u64;
        }
        Ok(())
    }

    /// The same copy with the SHA-256 computed on a second thread: a chunk is hashed
    /// there while the next one is read, checksummed (gzip's CRC-32) and written here,
    /// so that with two cores or more the first night of a video costs about what a
    /// night with its hash cached does (SHA-256 is about 40 % of a first night's CPU
    /// time even on an x86 with SHA instructions; a Pi 4 has none). Three chunks of
    /// 256 KiB circulate; a Pi Zero (one core) and small files use `copy`. A thread
    /// that cannot be started is no error: the copy then hashes on this one.
    fn copy_hashing_aside(
        &mut self,
        file: &mut File,
        size: u64,
        buf: &mut Vec<u8>,
    ) -> io::Result<[u8; 32]> {
        use std::sync::mpsc;
        let (to_hash, hash_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(CHUNKS_IN_FLIGHT);
        let (free_tx, free) = mpsc::channel::<Vec<u8>>();
        std::thread::scope(|scope| {
            let hashing = std::thread::Builder::new()
                .name("video-sha256".into())
                .spawn_scoped(scope, move || {
                    let mut h = hashes::Hasher::new();
                    for (chunk, n) in hash_rx {
                        h.update(&chunk[..n]);
                        // The copy may be over (an error): the chunk is then dropped.
                        let _ = free_tx.send(chunk);
                    }
                    h.finish()
                });
            let Ok(hashing) = hashing else {
                drop(to_hash);
                let mut h = hashes::Hasher::new();
                self.copy(file, size, Some(&mut h), buf)?;
                return Ok(h.finish());
            };
            let copied = (|| {
                let mut spare = CHUNKS_IN_FLIGHT + 1;
                let mut left = size;
                while left > 0 {
                    let mut chunk = if spare > 0 {
                        spare -= 1;
                        vec![0; PIPELINE_CHUNK]
                    } else {
                        free.recv()
                            .map_err(|_| io::Error::other("the hashing thread stopped"))?
                    };
                    let n = self.read_chunk(file, left, &mut chunk)?;
                    self.tar.get_mut().write_all(&chunk[..n])?;
                    left -= n as u64;
                    to_hash
                        .send((chunk, n))
                        .map_err(|_| io::Error::other("the hashing thread stopped"))?;
                }
                Ok(())
            })();
            drop(to_hash);
            let hash = hashing
                .join()
                .map_err(|_| io::Error::other("the hashing thread failed"));
            copied.and(hash)
        })
    }

    /// Reads the next chunk (at most `left` bytes) into `chunk`; a file that ends
    /// early is an error (its tar entry would be corrupt), as is a shutdown.
    fn read_chunk(&mut self, file: &mut File, left: u64, chunk: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("backup cancelled (shutdown)"));
        }
        let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = file.read(&mut chunk[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being read",
            ));
        }
        Ok(n)
    }
}

fn own_ids() -> (u32, u32) {
    // SAFETY: getuid/getgid take nothing, touch no memory and cannot fail.
    unsafe { (libc::getuid(), libc::getgid()) }
}

/// The config files of an archive: (name in the archive, source path).
pub fn config_files(cfg: &Config) -> [(&'static str, PathBuf); 3] {
    [
        ("configuration.json", cfg.configuration_json()),
        ("sync-agent.env", cfg.sync_agent_env()),
        ("site.conf", cfg.site_conf.clone()),
    ]
}

#[allow(clippy::too_many_arguments)]
fn stream_archive(
    src: &Sources,
    file: File,
    name: &str,
    now: i64,
    tz: &Tz,
    cancel: &AtomicBool,
    log: &Log,
    warnings: &mut Vec<String>,
) -> Result<File, String> {
    let cfg = src.cfg;
    let dir = &cfg.backup_dir;
    let io_err = |e: io::Error| describe_io("writing the archive failed", &e, dir);
    // One gzip member; the videos (INCLUDE_VIDEOS) go in it as stored blocks.
    let gz = MixedGz::new(
        BufWriter::with_capacity(64 * 1024, Syncing::new(file)),
        flate2::Compression::default(),
        u32::try_from(now).unwrap_or(0),
    )
    .map_err(io_err)?;
    let mut w = Writer {
        tar: tar::Builder::new(gz),
        top: store::stem_of(name).to_string(),
        manifest: Vec::new(),
        now,
        cancel,
    };
    w.dir(b"").map_err(io_err)?;
    let mut warn = |msg: String| {
        log.warn(&msg);
        warnings.push(msg);
    };
    for (inner, path) in config_files(cfg) {
        // Never blocks: a FIFO or a device at a source path is a warning, not a run that
        // waits for ever while it holds the backup lock (fsutil::open_read).
        match fsutil::open_read(&path, false) {
            Ok((f, meta)) if meta.is_file() => {
                let mode = meta.mode() & 0o7777;
                w.stream(
                    inner.as_bytes(),
                    f,
                    meta.len(),
                    mode,
                    meta.mtime(),
                    fsutil::owner(&meta),
                )
                .map_err(|e| describe_io(&format!("copying {} failed", path.display()), &e, dir))?;
            }
            Ok((_, meta)) => warn(format!(
                "{} is {}, not a regular file: {inner} not in this backup",
                path.display(),
                fsutil::kind_of(meta.file_type())
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                warn(format!(
                    "{} is missing: {inner} not in this backup",
                    path.display()
                ));
            }
            Err(e) => warn(format!(
                "cannot read {}: {e}: {inner} not in this backup",
                path.display()
            )),
        }
    }
    let mut walk_warnings = Vec::new();
    // The hash cache's keys only when it is used (VIDEOS_OFFSITE, INCLUDE_VIDEOS).
    let keyed = cfg.videos_offsite() || cfg.include_videos;
    let mut videos =
        inventory::walk_keyed(&cfg.videos_dir(), &mut walk_warnings, keyed).map_err(|e| {
            format!(
                "cannot list the videos in {}: {e}",
                cfg.videos_dir().display()
            )
        })?;
    for w in walk_warnings {
        warn(w);
    }
    // The hash cache: the fourth column of the inventory (VIDEOS_OFFSITE), and the
    // MANIFEST.sha256 lines of the videos copied into the archive (INCLUDE_VIDEOS)
    // without hashing them again every night.
    let mut session = (cfg.videos_offsite() || (cfg.include_videos && !videos.is_empty()))
        .then(|| hashes::start(dir, &mut videos, &mut warn));
    if cfg.videos_offsite()
        && let Some(s) = session.as_mut()
    {
        s.hash_missing(&cfg.videos_dir(), &mut videos, cancel, &mut warn)?;
    }
    let inventory = inventory::Render::new(&videos, tz).with_sha256(cfg.videos_offsite());
    let len = inventory.total_len();
    w.stream(
        b"videos-inventory.txt",
        inventory,
        len,
        0o644,
        now,
        own_ids(),
    )
    .map_err(io_err)?;
    let info = sysinfo::render(now, tz, &cfg.neopro_dir, &cfg.services);
    w.bytes("system-info.txt", info.as_bytes(), 0o644)
        .map_err(io_err)?;
    if cfg.include_videos && !videos.is_empty() {
        let root = cfg.videos_dir();
        // Folders keep their mode, owner and mtime on the Pi (an extractor recreates
        // them so); one that cannot be read is 0700, ours.
        let folder = |inner: &[u8]| -> (u32, i64, (u32, u32)) {
            let rel = inner.strip_prefix(b"videos").unwrap_or(inner);
            let rel = rel.strip_prefix(b"/").unwrap_or(rel);
            match std::fs::symlink_metadata(inventory::abs_path(&root, rel)) {
                Ok(m) if m.is_dir() => (m.mode() & 0o7777, m.mtime(), fsutil::owner(&m)),
                _ => (0o700, now, own_ids()),
            }
        };
        let (mode, mtime, owner) = folder(b"videos");
        w.dir_as(b"videos", mode, mtime, owner).map_err(io_err)?;
        let mut made_dirs: std::collections::HashSet<Vec<u8>> = Default::default();
        let mut buf = Vec::new();
        for vi in 0..videos.len() {
            let Some(v) = videos.get(vi) else { break };
            if cancel.load(Ordering::Relaxed) {
                return Err("backup cancelled (shutdown)".to_string());
            }
            // Parent folders first, so that every extractor recreates them with our mode.
            let mut inner = b"videos/".to_vec();
            inner.extend_from_slice(v.rel);
            let mut idx = 0;
            while let Some(p) = inner[idx..].iter().position(|&b| b == b'/') {
                let parent = inner[..idx + p].to_vec();
                idx += p + 1;
                if parent != b"videos" && !made_dirs.contains(&parent) {
                    let (mode, mtime, owner) = folder(&parent);
                    w.dir_as(&parent, mode, mtime, owner).map_err(io_err)?;
                    made_dirs.insert(parent);
                }
            }
            let abs = inventory::abs_path(&root, v.rel);
            // Listed as a regular file, but it may have been swapped since: the type is
            // checked on the opened handle, and the open never waits.
            let (f, meta) = match fsutil::open_regular(&abs, false) {
                Ok(x) => x,
                Err(e) => {
                    warn(format!("cannot read video {}: {e}", abs.display()));
                    continue;
                }
            };
            // The cached hash holds for the version the walk saw, if that is the one open.
            let known = v
                .sha256
                .copied()
                .filter(|_| hashes::Key::of_meta(&meta) == hashes::Key::of_video(&v));
            let (hash, same) = w.video(&inner, f, &meta, known, &mut buf).map_err(|e| {
                describe_io(&format!("copying video {} failed", abs.display()), &e, dir)
            })?;
            if known.is_none() && same && hashes::Key::of_meta(&meta) == hashes::Key::of_video(&v) {
                videos.set_sha256(vi, hash);
                if let Some(s) = session.as_mut() {
                    s.learned(meta.len());
                }
            }
        }
    }
    if let Some(s) = session {
        let filled = s.finish(dir, &videos, &mut warn);
        if filled.hashed > 0 || filled.saved {
            log.info(&format!(
                "videos: {} hashed ({} read), {} from {}",
                filled.hashed,
                crate::units::human_size(filled.bytes_read, 1),
                filled.cached,
                store::VIDEO_HASH_CACHE_FILE
            ));
        }
    }
    let manifest = std::mem::take(&mut w.manifest);
    let mut h = Writer::<Vec<u8>>::header(
        tar::EntryType::Regular,
        manifest.len() as u64,
        0o644,
        now,
        own_ids(),
    );
    let mpath = format!("{}/{MANIFEST}", w.top);
    w.tar
        .append_data(&mut h, &mpath, manifest.as_slice())
        .map_err(io_err)?;
    let gz = w.tar.into_inner().map_err(io_err)?;
    let buf = gz.finish().map_err(io_err)?;
    let file = buf.into_inner().map_err(|e| io_err(e.into_error()))?;
    Ok(file.into_inner())
}
