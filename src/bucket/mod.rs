//! The offsite store: one interface (`Bucket`) for every place the copies go, so that
//! the queue, the ledger, remote retention, videos offsite, `fleet gc`, the fleet and
//! the video restore are written once, against the interface, and tested on the
//! in-memory store (mem.rs) without a server.
//!
//! Implementations: `s3::S3` (any S3-compatible service), `gdrive::Drive` (the
//! club's Google Drive, connected by google_oauth.rs) and `mem::MemBucket` (unit tests only: it can inject the failures the real stores
//! show — a dropped connection, a 5xx, a body cut short, a slow listing). Each must
//! pass the same contract suite (contract.rs): the in-memory store in `make check`, S3
//! against SeaweedFS in `make test-offsite`.
//!
//! The semantics every store offers (docs/format.md, Offsite store):
//! - keys are `/`-separated strings; a listing is in key order, by pages, with the
//!   "folders" directly under the prefix when a delimiter is given;
//! - `put` replaces whatever is under a key (statuses, reference lists, archive copies);
//!   `create` never replaces: it answers `Ok(false)` when the key exists (the videos,
//!   shared by every site). On S3 this is a PUT with `If-None-Match: *`; a store
//!   without an atomic create-only write stands it in with a look first (HEAD, then
//!   PUT), which leaves a window where two writers of one key both write: harmless for
//!   content-addressed objects (both write the same bytes, checked against their hash);
//! - a body carries its length, and its SHA-256 when known: the store refuses a body
//!   that does not match either (nothing is written);
//! - reads are bounded: `get` is for small objects (statuses, lists: at most
//!   `MAX_ANSWER`), larger ones are read by ranges (`RangeReader`).
//!
//! Nothing above this module knows S3: the adapters below it (sigv4.rs, xml.rs, the
//! HTTP client) are S3's own.

pub mod counted;
// Not wired yet: the offsite queue, `gdrive login|status|logout` and `recover` will
// call them (issue 20); until then the binary leaves them unused.
#[allow(dead_code)]
pub mod gdrive;
#[allow(dead_code)]
pub mod google_oauth;
pub mod s3;
pub mod sigv4;
mod xml;

#[cfg(test)]
pub mod contract;
#[cfg(test)]
pub mod mem;

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::units::{Sha256, sha256};

/// Upper bound of an object read whole (`get`): listings pages, statuses, lists.
pub const MAX_ANSWER: usize = 16 * 1024 * 1024;
/// The largest range read at once by a streamed download.
pub const RANGE_CHUNK: u64 = 8 * 1024 * 1024;
/// Largest object a single PUT may create on AWS (5 GiB); larger files go through a
/// writer (multipart on S3).
pub const SINGLE_PUT_MAX: u64 = 5 * 1024 * 1024 * 1024;
/// Pages a listing may take before it is refused (1,000 keys a page on S3: 100 M keys).
pub const MAX_LIST_PAGES: u32 = 100_000;

/// A store failure. `transport` when the store could not be reached or the connection
/// broke (offline, server down): worth retrying later, pointless to insist now.
/// `status`: the store's answer when it answered (an HTTP status on S3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub msg: String,
    pub transport: bool,
    pub status: Option<u16>,
}

impl Error {
    /// A failure on this side (a local file, a refused answer): not worth insisting.
    pub fn local(msg: impl Into<String>) -> Error {
        Error {
            msg: msg.into(),
            transport: false,
            status: None,
        }
    }

    /// The store could not be reached, or the connection broke.
    pub fn transport(msg: impl Into<String>) -> Error {
        Error {
            msg: msg.into(),
            transport: true,
            status: None,
        }
    }

    /// The store refused the request with `status`.
    pub fn refused(msg: impl Into<String>, status: u16) -> Error {
        Error {
            msg: msg.into(),
            transport: false,
            status: Some(status),
        }
    }

    /// 403: the key may not do this (or may not know whether the object exists).
    pub fn denied(&self) -> bool {
        self.status == Some(403)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub size: u64,
    /// As the store wrote it (ISO 8601, UTC on S3); empty when unknown.
    pub last_modified: String,
    /// The store's tag of the object's content, opaque (quoted on S3); empty when
    /// unknown. Two writes of the same bytes by a single PUT get the same tag.
    pub etag: String,
}

/// What a conditional read (`Bucket::get_if`) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fresh {
    /// The object still has the tag given: nothing was sent.
    Same,
    Missing,
    /// The object's bytes and its tag (empty when the store sent none).
    Got {
        data: Vec<u8>,
        etag: String,
    },
}

/// What a look at one key (HEAD) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectHead {
    /// The object exists (its size).
    Exists(u64),
    Missing,
    /// 403: the key may not know (no list permission on that prefix).
    Unknown,
}

/// A part of an object read with `get_range`.
#[derive(Debug)]
pub struct Ranged {
    pub data: Vec<u8>,
    /// The whole object's size.
    pub total: u64,
}

/// One page of a listing.
#[derive(Debug, Default)]
pub struct Page {
    pub objects: Vec<Object>,
    /// With a delimiter: the "folders" directly under the prefix.
    pub prefixes: Vec<String>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<String>,
}

/// A whole listing (`Bucket::list`).
#[derive(Debug, Default)]
pub struct Listing {
    pub objects: Vec<Object>,
    pub prefixes: Vec<String>,
}

/// The body of a write: `len` bytes from `reader`, and their SHA-256 when known (the
/// store then refuses a body that does not match).
pub struct ObjectBody<'a> {
    pub reader: Box<dyn Read + 'a>,
    pub len: u64,
    pub sha256: Option<[u8; 32]>,
}

impl<'a> ObjectBody<'a> {
    pub fn bytes(data: &'a [u8]) -> ObjectBody<'a> {
        let sha: [u8; 32] = sha256(data);
        ObjectBody {
            reader: Box::new(data),
            len: data.len() as u64,
            sha256: Some(sha),
        }
    }
}

/// A writer of one object whose length is not known in advance (an age encryption):
/// `finish` makes the object (replacing one of the same key), `fail` gives up and leaves
/// nothing.
pub trait ObjectWriter: Write {
    /// Sends what is left and makes the object; its size.
    fn finish(self: Box<Self>) -> Result<u64, Error>;
    /// Gives up after a local error (the reader or the encryption failed).
    fn fail(self: Box<Self>, e: io::Error) -> Error;
}

/// An offsite store. See the module doc for the semantics every implementation keeps.
pub trait Bucket: Sync {
    /// How a key is shown to a person (`s3://bucket/key`).
    fn describe(&self, key: &str) -> String;

    /// One page of the keys under `prefix`, in key order, from `token` (a page's
    /// `next`); with `delimiter`, keys with it after the prefix are folded into
    /// `prefixes`.
    fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<&str>,
    ) -> Result<Page, Error>;

    fn head(&self, key: &str) -> Result<ObjectHead, Error>;

    /// `head`, and the SHA-256 the store keeps with the object when it was written with
    /// one (`ObjectBody::sha256`), which the store checked against the bytes it received: an
    /// object whose kept SHA-256 is its name's needs no download to be trusted. `None`
    /// for an object written without one (by an older version, or by anyone else).
    fn head_checked(&self, key: &str) -> Result<(ObjectHead, Option<[u8; 32]>), Error> {
        Ok((self.head(key)?, None))
    }

    /// The object's bytes (at most `MAX_ANSWER`), `None` when it does not exist.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error>;

    /// `get` of a small object (at most `max` bytes, else an error: nothing more is
    /// read) that sends nothing when the object still has the tag `etag` (a listing's or
    /// an earlier read's): an unchanged status costs one small answer, not its bytes.
    fn get_if(&self, key: &str, etag: Option<&str>, max: u64) -> Result<Fresh, Error>;

    /// Bytes `start..start+len` (fewer at the end), and the whole object's size; `None`
    /// when it does not exist. `len` is at most `MAX_ANSWER`.
    fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Option<Ranged>, Error>;

    /// Writes `key`, replacing what was there.
    fn put(&self, key: &str, body: ObjectBody<'_>, content_type: &str) -> Result<(), Error>;

    /// Writes `key` only if it does not exist: `Ok(false)` (nothing written) if it does.
    fn create(&self, key: &str, body: ObjectBody<'_>, content_type: &str) -> Result<bool, Error>;

    fn delete(&self, key: &str) -> Result<(), Error>;

    /// A writer for a body of unknown length; `cancel` stops it between two parts.
    fn writer<'a>(
        &'a self,
        key: &'a str,
        content_type: &'a str,
        cancel: &'a AtomicBool,
    ) -> Box<dyn ObjectWriter + 'a>;

    /// Every key under `prefix`, page by page: `each` sees each object as its page
    /// arrives, so a caller that folds them never holds the whole listing. Returns the
    /// folders (with a delimiter). A store that hands back the same page token twice, or
    /// more than `MAX_LIST_PAGES` pages, is refused (it would loop for ever).
    fn list_each(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        each: &mut dyn FnMut(Object),
    ) -> Result<Vec<String>, Error> {
        let mut prefixes = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let page = self.list_page(prefix, delimiter, token.as_deref())?;
            page.objects.into_iter().for_each(&mut *each);
            prefixes.extend(page.prefixes);
            match page.next {
                None => return Ok(prefixes),
                Some(n) if Some(&n) == token.as_ref() => {
                    return Err(Error::local(format!(
                        "listing {}: the store sent the same page token twice",
                        self.describe(prefix)
                    )));
                }
                Some(n) => token = Some(n),
            }
        }
        Err(Error::local(format!(
            "listing {}: more than {MAX_LIST_PAGES} pages",
            self.describe(prefix)
        )))
    }

    /// The whole listing at once (for prefixes known to be small).
    fn list(&self, prefix: &str, delimiter: Option<&str>) -> Result<Listing, Error> {
        let mut objects = Vec::new();
        let prefixes = self.list_each(prefix, delimiter, &mut |o| objects.push(o))?;
        Ok(Listing { objects, prefixes })
    }

    fn put_bytes(&self, key: &str, data: &[u8], content_type: &str) -> Result<(), Error> {
        self.put(key, ObjectBody::bytes(data), content_type)
    }
}

/// Why an operation was cancelled.
pub fn cancelled() -> io::Error {
    io::Error::other("cancelled (shutdown)")
}

/// A reader that fails once `cancel` is set.
pub struct Cancellable<'a, R> {
    pub inner: R,
    pub cancel: &'a AtomicBool,
}

impl<R: Read> Read for Cancellable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(cancelled());
        }
        self.inner.read(buf)
    }
}

/// Uploads `len` bytes of `file` (from its start) to `key`, replacing it: a first pass
/// hashes the file so that the store can check the body, the second streams it. Files
/// over 5 GiB go through the store's writer. `cancel` stops the upload between two
/// reads.
pub fn put_file(
    b: &dyn Bucket,
    key: &str,
    file: &mut File,
    len: u64,
    content_type: &str,
    cancel: &AtomicBool,
) -> Result<(), Error> {
    let local = |e: io::Error| {
        Error::local(format!(
            "PUT {}: reading the local file: {e}",
            b.describe(key)
        ))
    };
    file.seek(SeekFrom::Start(0)).map_err(local)?;
    if len > SINGLE_PUT_MAX {
        let mut w = b.writer(key, content_type, cancel);
        let mut src = Cancellable {
            inner: file.take(len),
            cancel,
        };
        return match io::copy(&mut src, &mut w) {
            Ok(_) => w.finish().map(|_| ()),
            Err(e) => Err(w.fail(e)),
        };
    }
    let mut ctx = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        if cancel.load(Ordering::Relaxed) {
            return Err(local(cancelled()));
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = file.read(&mut buf[..want]).map_err(local)?;
        if n == 0 {
            return Err(local(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was read",
            )));
        }
        ctx.update(&buf[..n]);
        left -= n as u64;
    }
    let sha = ctx.finish();
    file.seek(SeekFrom::Start(0)).map_err(local)?;
    let body = ObjectBody {
        reader: Box::new(Cancellable {
            inner: (&mut *file).take(len),
            cancel,
        }),
        len,
        sha256: Some(sha),
    };
    b.put(key, body, content_type)
}

/// The SHA-256 of an object's bytes and its size, read by ranges (bounded memory);
/// `None` when it does not exist.
pub fn sha256_of(
    b: &dyn Bucket,
    key: &str,
    cancel: &AtomicBool,
) -> Result<Option<([u8; 32], u64)>, Error> {
    let Some(mut r) = RangeReader::open(b, key)? else {
        return Ok(None);
    };
    let mut ctx = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut n: u64 = 0;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::local(format!(
                "GET {}: {}",
                b.describe(key),
                cancelled()
            )));
        }
        let got = r
            .read(&mut buf)
            .map_err(|e| Error::transport(format!("GET {}: {e}", b.describe(key))))?;
        if got == 0 {
            break;
        }
        ctx.update(&buf[..got]);
        n = n.saturating_add(got as u64);
    }
    Ok(Some((ctx.finish(), n)))
}

/// An object read by ranges of at most RANGE_CHUNK bytes (bounded memory, whatever its
/// size). A range that fails for the network is asked again from where it stopped
/// (up to `RETRIES` times in a row), so a dropped connection costs one range, not the
/// whole object.
pub struct RangeReader<'a> {
    bucket: &'a dyn Bucket,
    key: String,
    pos: u64,
    total: u64,
    buf: Vec<u8>,
    at: usize,
}

/// Failed ranges in a row before a read gives up.
const RETRIES: u32 = 3;

impl<'a> RangeReader<'a> {
    /// `Ok(None)` when the object does not exist.
    pub fn open(bucket: &'a dyn Bucket, key: &str) -> Result<Option<RangeReader<'a>>, Error> {
        let Some(first) = get_range_retried(bucket, key, 0)? else {
            return Ok(None);
        };
        if first.data.len() as u64 > first.total {
            return Err(Error::local(format!(
                "GET {}: the store sent more than the object's {} bytes",
                bucket.describe(key),
                first.total
            )));
        }
        Ok(Some(RangeReader {
            bucket,
            key: key.to_string(),
            pos: first.data.len() as u64,
            total: first.total,
            buf: first.data,
            at: 0,
        }))
    }
}

fn get_range_retried(b: &dyn Bucket, key: &str, pos: u64) -> Result<Option<Ranged>, Error> {
    let mut tries = 0;
    loop {
        match b.get_range(key, pos, RANGE_CHUNK) {
            Err(e) if e.transport && tries < RETRIES => tries += 1,
            r => return r,
        }
    }
}

impl Read for RangeReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.buf.len() {
            if self.pos >= self.total {
                return Ok(0);
            }
            // The range read is freed before the next one is asked: one range in memory.
            self.buf = Vec::new();
            self.at = 0;
            let r = get_range_retried(self.bucket, &self.key, self.pos)
                .map_err(|e| io::Error::other(e.msg))?
                .ok_or_else(|| io::Error::other("the object vanished while it was read"))?;
            if r.data.is_empty() {
                return Err(io::Error::other("the object ended early"));
            }
            if r.total != self.total {
                return Err(io::Error::other("the object changed while it was read"));
            }
            let end = self.pos.checked_add(r.data.len() as u64);
            if end.is_none_or(|e| e > self.total) {
                return Err(io::Error::other(
                    "the store sent more than the object's size",
                ));
            }
            self.pos = end.unwrap_or(self.total);
            self.buf = r.data;
            self.at = 0;
        }
        let n = (self.buf.len() - self.at).min(out.len());
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
