//! An offsite store in memory, for unit tests: the queue, the ledger, remote retention,
//! videos offsite, `fleet gc` and the fleet run on it in `make check`, without a server.
//! It keeps the semantics of the interface (mod.rs; the contract suite checks it like
//! S3), counts what it is asked (requests by kind, body bytes received), and injects the
//! failures the real stores show: a connection that cannot be made or drops in the
//! middle of a body, an error answer (5xx, 403), a slow listing.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::{
    Bucket, Error, Fresh, ObjectBody, ObjectHead, ObjectWriter, Page, Ranged, cancelled, sha256,
};

/// The kinds of requests, for fault injection and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    List,
    Head,
    Get,
    Put,
    Create,
    Delete,
}

/// A failure to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The connection cannot be made (nothing is read or written).
    Unreachable,
    /// The store answers this status (nothing is written).
    Status(u16),
    /// The store answers this status with these words (a store's own reason, such as
    /// Google Drive's `storageQuotaExceeded`; nothing is written).
    Says(u16, String),
    /// A write's connection drops once this many body bytes were sent; a read's answer
    /// is cut short (the store had sent part of it).
    Dropped(u64),
    /// The answer comes after this long (then the request succeeds).
    Slow(Duration),
}

struct Stored {
    data: Vec<u8>,
    last_modified: String,
    /// The SHA-256 the writer announced (and the store checked), as S3 keeps it.
    checksum: Option<[u8; 32]>,
}

struct Injected {
    op: Op,
    key_prefix: String,
    fault: Fault,
    times: u32,
}

/// The store. `page_size` keys a listing page (small pages exercise the pagination).
pub struct MemBucket {
    objects: Mutex<BTreeMap<String, Stored>>,
    faults: Mutex<Vec<Injected>>,
    /// Writes of another client, made just before the next request of a kind.
    meanwhile: Mutex<Vec<(Op, String, Vec<u8>)>>,
    counts: Mutex<BTreeMap<Op, u64>>,
    bytes_in: AtomicU64,
    /// What `last_modified` says for the objects written from now on.
    stamp: Mutex<String>,
    pub page_size: usize,
}

impl Default for MemBucket {
    fn default() -> Self {
        MemBucket::new()
    }
}

/// The tag of an object's content: like S3's for a single PUT (a digest of the bytes,
/// quoted), the same for the same bytes.
fn etag_of(data: &[u8]) -> String {
    let h: [u8; 32] = sha256(data);
    let hex: String = h[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemBucket {
    pub fn new() -> MemBucket {
        MemBucket {
            objects: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(Vec::new()),
            meanwhile: Mutex::new(Vec::new()),
            counts: Mutex::new(BTreeMap::new()),
            bytes_in: AtomicU64::new(0),
            stamp: Mutex::new(crate::clock::iso_utc_millis(crate::clock::now_unix(), 0)),
            page_size: 3,
        }
    }

    /// The next `times` requests of kind `op` on keys starting with `key_prefix` fail
    /// with `fault` (for a listing, the prefix listed).
    pub fn inject(&self, op: Op, key_prefix: &str, fault: Fault, times: u32) {
        lock(&self.faults).push(Injected {
            op,
            key_prefix: key_prefix.to_string(),
            fault,
            times,
        });
    }

    /// Another client writes `key` just before the next request of kind `op` (a site
    /// racing with `fleet gc`, say).
    pub fn meanwhile(&self, op: Op, key: &str, data: &[u8]) {
        lock(&self.meanwhile).push((op, key.to_string(), data.to_vec()));
    }

    /// Objects written from now on are dated `unix`.
    pub fn set_time(&self, unix: i64) {
        *lock(&self.stamp) = crate::clock::iso_utc_millis(unix, 0);
    }

    /// Writes an object behind the interface's back (a hostile site, an old version),
    /// without a kept SHA-256.
    pub fn insert(&self, key: &str, data: &[u8]) {
        self.store(key, data.to_vec(), None);
    }

    /// An object's bytes, read behind the interface's back.
    pub fn bytes(&self, key: &str) -> Option<Vec<u8>> {
        lock(&self.objects).get(key).map(|o| o.data.clone())
    }

    /// Every key, in order.
    pub fn keys(&self) -> Vec<String> {
        lock(&self.objects).keys().cloned().collect()
    }

    /// How many requests of kind `op` were made.
    pub fn count(&self, op: Op) -> u64 {
        lock(&self.counts).get(&op).copied().unwrap_or(0)
    }

    /// ObjectBody bytes received by writes, complete or not.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    /// Counts the request and takes the fault to inject for it, if any.
    fn enter(&self, op: Op, key: &str) -> Option<Fault> {
        *lock(&self.counts).entry(op).or_default() += 1;
        let due: Vec<(Op, String, Vec<u8>)> = {
            let mut m = lock(&self.meanwhile);
            let (now, later) = m.drain(..).partition(|w| w.0 == op);
            *m = later;
            now
        };
        for (_, k, data) in due {
            self.store(&k, data, None);
        }
        let mut faults = lock(&self.faults);
        let i = faults
            .iter()
            .position(|f| f.op == op && key.starts_with(&f.key_prefix) && f.times > 0)?;
        faults[i].times -= 1;
        let fault = faults[i].fault.clone();
        if faults[i].times == 0 {
            faults.remove(i);
        }
        drop(faults);
        if let Fault::Slow(d) = fault {
            std::thread::sleep(d);
            return None;
        }
        Some(fault)
    }

    fn fail(&self, what: &str, key: &str, fault: &Fault) -> Error {
        let shown = self.describe(key);
        match fault {
            Fault::Status(s) => Error::refused(format!("{what} {shown}: HTTP {s}"), *s),
            Fault::Says(s, words) => {
                Error::refused(format!("{what} {shown}: HTTP {s} {words}"), *s)
            }
            _ => Error::transport(format!("{what} {shown}: connection lost")),
        }
    }

    /// Reads a write's body, checking its length and SHA-256 as S3 does.
    fn receive(
        &self,
        what: &str,
        key: &str,
        body: ObjectBody<'_>,
        fault: Option<&Fault>,
    ) -> Result<Vec<u8>, Error> {
        let shown = self.describe(key);
        let cut = match fault {
            Some(Fault::Dropped(n)) => Some(*n),
            Some(f) => return Err(self.fail(what, key, f)),
            None => None,
        };
        let mut data = Vec::new();
        let mut reader = body.reader.take(body.len.saturating_add(1));
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(n) => n,
                Err(e) => return Err(Error::local(format!("{what} {shown}: {e}"))),
            };
            if n == 0 {
                break;
            }
            self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
            data.extend_from_slice(&buf[..n]);
            if cut.is_some_and(|c| data.len() as u64 >= c) {
                return Err(Error::transport(format!("{what} {shown}: connection lost")));
            }
        }
        if data.len() as u64 != body.len {
            return Err(Error::refused(
                format!(
                    "{what} {shown}: HTTP 400 IncompleteBody ({} bytes of {})",
                    data.len(),
                    body.len
                ),
                400,
            ));
        }
        if body.sha256.is_some_and(|h| h != sha256(&data)) {
            return Err(Error::refused(
                format!("{what} {shown}: HTTP 400 BadDigest"),
                400,
            ));
        }
        Ok(data)
    }

    fn store(&self, key: &str, data: Vec<u8>, checksum: Option<[u8; 32]>) {
        let last_modified = lock(&self.stamp).clone();
        lock(&self.objects).insert(
            key.to_string(),
            Stored {
                data,
                last_modified,
                checksum,
            },
        );
    }
}

impl Bucket for MemBucket {
    fn describe(&self, key: &str) -> String {
        format!("mem://{key}")
    }

    fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<&str>,
    ) -> Result<Page, Error> {
        if let Some(f) = self.enter(Op::List, prefix) {
            return Err(self.fail("LIST", prefix, &f));
        }
        let objects = lock(&self.objects);
        // Every entry under the prefix in key order (objects, and folders folded at the
        // delimiter), then the page that starts after the token.
        let mut entries: Vec<(String, Option<super::Object>)> = Vec::new();
        for (key, o) in objects.range::<str, _>((
            std::ops::Bound::Included(prefix),
            std::ops::Bound::Unbounded,
        )) {
            if !key.starts_with(prefix) {
                break;
            }
            let rest = &key[prefix.len()..];
            if let Some(d) = delimiter.filter(|d| !d.is_empty())
                && let Some(i) = rest.find(d)
            {
                let folder = format!("{prefix}{}", &rest[..i + d.len()]);
                if entries.last().map(|e| &e.0) != Some(&folder) {
                    entries.push((folder, None));
                }
                continue;
            }
            let object = super::Object {
                key: key.clone(),
                size: o.data.len() as u64,
                last_modified: o.last_modified.clone(),
                etag: etag_of(&o.data),
            };
            entries.push((key.clone(), Some(object)));
        }
        let from = token.map_or(0, |t| {
            entries
                .iter()
                .position(|e| e.0.as_str() > t)
                .unwrap_or(entries.len())
        });
        let size = self.page_size.max(1);
        let mut page = Page::default();
        for (name, object) in entries.iter().skip(from).take(size) {
            match object {
                Some(o) => page.objects.push(o.clone()),
                None => page.prefixes.push(name.clone()),
            }
        }
        if entries.len() > from + size {
            page.next = entries.get(from + size - 1).map(|e| e.0.clone());
        }
        Ok(page)
    }

    fn head(&self, key: &str) -> Result<ObjectHead, Error> {
        self.head_checked(key).map(|(h, _)| h)
    }

    fn head_checked(&self, key: &str) -> Result<(ObjectHead, Option<[u8; 32]>), Error> {
        if let Some(f) = self.enter(Op::Head, key) {
            return match f {
                Fault::Status(403) => Ok((ObjectHead::Unknown, None)),
                f => Err(self.fail("HEAD", key, &f)),
            };
        }
        Ok(match lock(&self.objects).get(key) {
            Some(o) => (ObjectHead::Exists(o.data.len() as u64), o.checksum),
            None => (ObjectHead::Missing, None),
        })
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        if let Some(f) = self.enter(Op::Get, key) {
            return Err(self.fail("GET", key, &f));
        }
        let objects = lock(&self.objects);
        match objects.get(key) {
            Some(o) if o.data.len() > super::MAX_ANSWER => Err(Error::local(format!(
                "GET {}: the answer is over {} bytes",
                self.describe(key),
                super::MAX_ANSWER
            ))),
            Some(o) => Ok(Some(o.data.clone())),
            None => Ok(None),
        }
    }

    fn get_if(&self, key: &str, etag: Option<&str>, max: u64) -> Result<Fresh, Error> {
        if let Some(f) = self.enter(Op::Get, key) {
            return Err(self.fail("GET", key, &f));
        }
        let objects = lock(&self.objects);
        Ok(match objects.get(key) {
            None => Fresh::Missing,
            Some(o) => {
                let tag = etag_of(&o.data);
                if etag == Some(tag.as_str()) {
                    Fresh::Same
                } else if o.data.len() as u64 > max.min(super::MAX_ANSWER as u64) {
                    return Err(Error::local(format!(
                        "GET {}: the object is {} bytes, over {max}",
                        self.describe(key),
                        o.data.len()
                    )));
                } else {
                    Fresh::Got {
                        data: o.data.clone(),
                        etag: tag,
                    }
                }
            }
        })
    }

    fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Option<Ranged>, Error> {
        let fault = self.enter(Op::Get, key);
        if let Some(f @ (Fault::Unreachable | Fault::Status(_) | Fault::Says(..))) = &fault {
            return Err(self.fail("GET", key, f));
        }
        let objects = lock(&self.objects);
        let Some(o) = objects.get(key) else {
            return Ok(None);
        };
        let total = o.data.len() as u64;
        let len = len.clamp(1, super::MAX_ANSWER as u64);
        let from = usize::try_from(start.min(total)).unwrap_or(usize::MAX);
        let to = usize::try_from(start.saturating_add(len).min(total)).unwrap_or(usize::MAX);
        if let Some(Fault::Dropped(_)) = fault {
            return Err(Error::transport(format!(
                "GET {}: connection lost",
                self.describe(key)
            )));
        }
        Ok(Some(Ranged {
            data: o.data[from..to].to_vec(),
            total,
        }))
    }

    fn put(&self, key: &str, body: ObjectBody<'_>, _content_type: &str) -> Result<(), Error> {
        let fault = self.enter(Op::Put, key);
        let checksum = body.sha256;
        let data = self.receive("PUT", key, body, fault.as_ref())?;
        self.store(key, data, checksum);
        Ok(())
    }

    fn create(&self, key: &str, body: ObjectBody<'_>, _content_type: &str) -> Result<bool, Error> {
        let fault = self.enter(Op::Create, key);
        let checksum = body.sha256;
        // The body is sent whole before the answer (no `Expect: 100-continue`), as to S3:
        // a create of an existing key costs its bytes.
        let data = self.receive("PUT", key, body, fault.as_ref())?;
        let mut objects = lock(&self.objects);
        if objects.contains_key(key) {
            return Ok(false);
        }
        let last_modified = lock(&self.stamp).clone();
        objects.insert(
            key.to_string(),
            Stored {
                data,
                last_modified,
                checksum,
            },
        );
        Ok(true)
    }

    fn delete(&self, key: &str) -> Result<(), Error> {
        if let Some(f) = self.enter(Op::Delete, key) {
            return Err(self.fail("DELETE", key, &f));
        }
        lock(&self.objects).remove(key);
        Ok(())
    }

    fn writer<'a>(
        &'a self,
        key: &'a str,
        _content_type: &'a str,
        cancel: &'a AtomicBool,
    ) -> Box<dyn ObjectWriter + 'a> {
        Box::new(MemWriter {
            bucket: self,
            key,
            buf: Vec::new(),
            cancel,
        })
    }
}

/// The writer: the object appears, whole, at `finish`.
struct MemWriter<'a> {
    bucket: &'a MemBucket,
    key: &'a str,
    buf: Vec<u8>,
    cancel: &'a AtomicBool,
}

impl Write for MemWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(cancelled());
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for MemWriter<'_> {
    fn finish(self: Box<Self>) -> Result<u64, Error> {
        let len = self.buf.len() as u64;
        let body = ObjectBody {
            reader: Box::new(io::Cursor::new(self.buf)),
            len,
            sha256: None,
        };
        self.bucket.put(self.key, body, "")?;
        Ok(len)
    }

    fn fail(self: Box<Self>, e: io::Error) -> Error {
        Error::local(format!("PUT {}: {e}", self.bucket.describe(self.key)))
    }
}
