//! S3-compatible object storage (AWS S3, SeaweedFS, MinIO, Garage, Ceph RGW…): signed
//! with SigV4 (sigv4.rs),
//! and the few operations the offsite copies need, with path-style addressing
//! (`ENDPOINT/BUCKET/KEY`, which every implementation accepts):
//! PUT streamed from a file (its SHA-256 from a first pass over the file, so the server
//! can check the body), multipart upload from a bounded buffer (for streams whose hash
//! cannot be known in advance, such as an age encryption), GET, DELETE, ListObjectsV2;
//! and for the videos (offsite/videos.rs): HEAD, a streamed PUT with `If-None-Match: *`
//! that never replaces an existing object, and GET by ranges (bounded memory).
//!
//! The XML of the answers is read by xml.rs.
//!
//! The secret key only ever enters an HMAC; no error or log line can contain it.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use ring::digest;

use crate::clock;
use crate::http::client::{self, Payload, Timeouts, Url};
use crate::units::hex;

use super::xml::{xml_all, xml_escape, xml_one, xml_unescape};

pub use super::sigv4::{
    Credentials, EMPTY_SHA256, amz_date, authorization, canonical_query, sha256_hex, uri_encode,
};

/// Largest object a single PUT may create on AWS (5 GiB); larger files go multipart.
pub const SINGLE_PUT_MAX: u64 = 5 * 1024 * 1024 * 1024;
/// Part size of multipart uploads: the memory held at once (AWS's minimum is 5 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// AWS's limit on the number of parts.
const MAX_PARTS: u64 = 10_000;

// ---------------------------------------------------------------------------------
// The client.

/// An S3 failure. `transport` when the server could not be reached or the connection
/// broke (offline, server down): worth retrying later, pointless to insist now.
#[derive(Debug, Clone)]
pub struct Error {
    pub msg: String,
    pub transport: bool,
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
    pub last_modified: String,
}

/// What a HEAD found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
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

/// The largest range read at once by a streamed download.
pub const RANGE_CHUNK: u64 = 8 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct Listing {
    pub objects: Vec<Object>,
    /// With a delimiter: the "folders" directly under the prefix.
    pub prefixes: Vec<String>,
}

pub struct Client {
    /// The endpoint; its path (if any) is a prefix of every request path.
    pub endpoint: Url,
    pub bucket: String,
    pub creds: Credentials,
}

/// Upper bound of the answers we keep in memory (listings, status files, errors).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

impl Client {
    fn path(&self, key: Option<&str>) -> String {
        let base = self.endpoint.path.trim_end_matches('/');
        match key {
            Some(k) => format!("{base}/{}/{}", self.bucket, uri_encode(k, true)),
            None => format!("{base}/{}", self.bucket),
        }
    }

    fn describe(&self, key: Option<&str>) -> String {
        match key {
            Some(k) => format!("s3://{}/{k}", self.bucket),
            None => format!("s3://{}", self.bucket),
        }
    }

    /// Sends one signed request; any non-2xx answer is an error that says what to do.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        method: &str,
        key: Option<&str>,
        query: &[(&str, &str)],
        extra: &[(&str, String)],
        body: Payload,
        payload_hash: &str,
        also_ok: &[u16],
    ) -> Result<client::Reply, Error> {
        let path = self.path(key);
        let q = canonical_query(query);
        let date = amz_date(clock::now_unix());
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), self.endpoint.host_header()),
            ("x-amz-content-sha256".into(), payload_hash.to_string()),
            ("x-amz-date".into(), date.clone()),
        ];
        for (k, v) in extra {
            headers.push((k.to_string(), v.clone()));
        }
        let auth = authorization(
            &self.creds,
            method,
            &path,
            &q,
            &headers,
            payload_hash,
            &date,
        );
        // Host goes out from httpc itself.
        headers.remove(0);
        headers.push(("Authorization".into(), auth));
        let url = self.endpoint.with_path(if q.is_empty() {
            path
        } else {
            format!("{path}?{q}")
        });
        let what = format!("{method} {}", self.describe(key));
        let resp = client::request(method, &url, &headers, body, MAX_ANSWER, Timeouts::S3)
            .map_err(|e| Error {
                msg: format!("{what}: {e}"),
                transport: true,
            })?;
        if (200..300).contains(&resp.status) || also_ok.contains(&resp.status) {
            return Ok(resp);
        }
        Err(Error {
            msg: format!("{what}: {}", self.explain(&resp)),
            transport: false,
        })
    }

    /// A readable reason for an S3 error answer.
    fn explain(&self, resp: &client::Reply) -> String {
        let text = String::from_utf8_lossy(&resp.body);
        let code = xml_one(&text, "Code").map(xml_unescape).unwrap_or_default();
        let message = xml_one(&text, "Message")
            .map(xml_unescape)
            .unwrap_or_default();
        let hint = match code.as_str() {
            "SignatureDoesNotMatch" => {
                "the server refused the request signature: check S3_SECRET_KEY (and S3_REGION)"
                    .to_string()
            }
            "InvalidAccessKeyId" => "the server does not know S3_ACCESS_KEY".to_string(),
            "AccessDenied" => format!(
                "access denied: the key lacks the permission for bucket {}",
                self.bucket
            ),
            "NoSuchBucket" => format!("bucket {} does not exist: create it first", self.bucket),
            "RequestTimeTooSkewed" => "this machine's clock is more than 15 minutes off the \
                                       server's: check NTP (timedatectl)"
                .to_string(),
            "AuthorizationHeaderMalformed" => {
                "the server rejected the authorization: check S3_REGION".to_string()
            }
            _ => String::new(),
        };
        let mut out = format!("HTTP {}", resp.status);
        if !code.is_empty() {
            out.push_str(&format!(" {code}"));
        }
        if !hint.is_empty() {
            out.push_str(&format!(": {hint}"));
        } else if !message.is_empty() {
            out.push_str(&format!(": {message}"));
        } else if code.is_empty() && !text.trim().is_empty() && text.len() < 300 {
            out.push_str(&format!(": {}", text.trim()));
        }
        out
    }

    /// Uploads `len` bytes of `file` (from its start) to `key`: a first pass hashes the
    /// file for `x-amz-content-sha256`, the second streams it. Files over 5 GiB go
    /// multipart. `cancel` stops the upload between two reads.
    pub fn put_file(
        &self,
        key: &str,
        file: &mut File,
        len: u64,
        content_type: &str,
        cancel: &AtomicBool,
    ) -> Result<(), Error> {
        let local = |e: io::Error| Error {
            msg: format!(
                "PUT {}: reading the local file: {e}",
                self.describe(Some(key))
            ),
            transport: false,
        };
        file.seek(SeekFrom::Start(0)).map_err(local)?;
        if len > SINGLE_PUT_MAX {
            let part = usize::try_from(len.div_ceil(MAX_PARTS - 1))
                .unwrap_or(usize::MAX)
                .max(PART_SIZE);
            let mut up = Upload::new(self, key, content_type, part, cancel);
            let mut src = Cancellable {
                inner: file.take(len),
                cancel,
            };
            return match io::copy(&mut src, &mut up) {
                Ok(_) => up.finish().map(|_| ()),
                Err(e) => Err(up.fail(e)),
            };
        }
        let mut ctx = digest::Context::new(&digest::SHA256);
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
        let hash = hex(ctx.finish().as_ref());
        file.seek(SeekFrom::Start(0)).map_err(local)?;
        let body = Payload {
            reader: Box::new(Cancellable {
                inner: &mut *file,
                cancel,
            }),
            len,
        };
        let ct = [("content-type", content_type.to_string())];
        self.send("PUT", Some(key), &[], &ct, body, &hash, &[])
            .map(|_| ())
    }

    pub fn put_bytes(&self, key: &str, data: &[u8], content_type: &str) -> Result<(), Error> {
        let ct = [("content-type", content_type.to_string())];
        self.send(
            "PUT",
            Some(key),
            &[],
            &ct,
            Payload::bytes(data),
            &sha256_hex(data),
            &[],
        )
        .map(|_| ())
    }

    /// The object's bytes, `None` when it does not exist.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let r = self.send(
            "GET",
            Some(key),
            &[],
            &[],
            Payload::empty(),
            EMPTY_SHA256,
            &[404],
        )?;
        Ok((r.status != 404).then_some(r.body))
    }

    /// Whether an object exists, without reading it (HEAD). A 403 is `Unknown`: a key
    /// allowed to read but not to list a prefix gets 403, not 404, for a missing object.
    pub fn head(&self, key: &str) -> Result<Head, Error> {
        let r = self.send(
            "HEAD",
            Some(key),
            &[],
            &[],
            Payload::empty(),
            EMPTY_SHA256,
            &[403, 404],
        )?;
        Ok(match r.status {
            404 => Head::Missing,
            403 => Head::Unknown,
            _ => Head::Exists(
                r.header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            ),
        })
    }

    /// PUT of a body streamed from `body` (its length known), signed with
    /// `payload_hash` (the body's SHA-256, or `UNSIGNED-PAYLOAD` when it cannot be known
    /// in advance), with `If-None-Match: *`: an object that exists already is never
    /// replaced (`Created(false)`, the server answered 412).
    pub fn put_new(
        &self,
        key: &str,
        body: Payload,
        payload_hash: &str,
        content_type: &str,
    ) -> Result<bool, Error> {
        let h = [
            ("content-type", content_type.to_string()),
            ("if-none-match", "*".to_string()),
        ];
        let r = self.send("PUT", Some(key), &[], &h, body, payload_hash, &[412])?;
        Ok(r.status != 412)
    }

    /// A plain PUT of a body streamed from a reader of known length and SHA-256.
    pub fn put_stream(
        &self,
        key: &str,
        body: Payload,
        payload_hash: &str,
        content_type: &str,
    ) -> Result<(), Error> {
        let ct = [("content-type", content_type.to_string())];
        self.send("PUT", Some(key), &[], &ct, body, payload_hash, &[])
            .map(|_| ())
    }

    /// Bytes `start..start+len` of an object (GET with a Range), and the object's total
    /// size; `None` when the object does not exist. The answers are bounded in memory
    /// (`len` at most 16 MiB): a large object is read as a series of ranges.
    pub fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Option<Ranged>, Error> {
        let range = format!("bytes={start}-{}", start + len.max(1) - 1);
        let r = self.send(
            "GET",
            Some(key),
            &[],
            &[("range", range)],
            Payload::empty(),
            EMPTY_SHA256,
            &[404, 416],
        )?;
        match r.status {
            404 => Ok(None),
            // Past the end (or an empty object): nothing more.
            416 => {
                let total = r
                    .header("content-range")
                    .and_then(|v| v.rsplit('/').next())
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or(start);
                Ok(Some(Ranged {
                    data: Vec::new(),
                    total,
                }))
            }
            206 => {
                let total = r
                    .header("content-range")
                    .and_then(|v| v.rsplit('/').next())
                    .and_then(|t| t.trim().parse().ok())
                    .ok_or_else(|| Error {
                        msg: format!(
                            "GET {}: no usable Content-Range in the answer",
                            self.describe(Some(key))
                        ),
                        transport: false,
                    })?;
                Ok(Some(Ranged {
                    data: r.body,
                    total,
                }))
            }
            // A server that ignores Range sends the whole object (bounded by MAX_ANSWER).
            _ => {
                let total = r.body.len() as u64;
                let from = usize::try_from(start)
                    .unwrap_or(usize::MAX)
                    .min(r.body.len());
                let to = usize::try_from(start + len)
                    .unwrap_or(usize::MAX)
                    .min(r.body.len());
                Ok(Some(Ranged {
                    data: r.body[from..to].to_vec(),
                    total,
                }))
            }
        }
    }

    pub fn delete(&self, key: &str) -> Result<(), Error> {
        self.send(
            "DELETE",
            Some(key),
            &[],
            &[],
            Payload::empty(),
            EMPTY_SHA256,
            &[],
        )
        .map(|_| ())
    }

    /// Every object under `prefix` (ListObjectsV2, following continuation tokens); with
    /// `delimiter`, the common prefixes too.
    pub fn list(&self, prefix: &str, delimiter: Option<&str>) -> Result<Listing, Error> {
        let mut out = Listing::default();
        let prefixes = self.list_each(prefix, delimiter, |o| out.objects.push(o))?;
        out.prefixes = prefixes;
        Ok(out)
    }

    /// ListObjectsV2, page by page (1,000 keys a page): `each` sees every object as its
    /// page arrives, so a caller that folds them never holds the whole listing. Returns
    /// the common prefixes (with a delimiter).
    pub fn list_each(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        mut each: impl FnMut(Object),
    ) -> Result<Vec<String>, Error> {
        let mut prefixes = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q: Vec<(&str, &str)> = vec![("list-type", "2"), ("prefix", prefix)];
            if let Some(d) = delimiter {
                q.push(("delimiter", d));
            }
            if let Some(t) = &token {
                q.push(("continuation-token", t));
            }
            let r = self.send("GET", None, &q, &[], Payload::empty(), EMPTY_SHA256, &[])?;
            let text = String::from_utf8_lossy(&r.body);
            for c in xml_all(&text, "Contents") {
                let Some(key) = xml_one(c, "Key") else {
                    continue;
                };
                each(Object {
                    key: xml_unescape(key),
                    size: xml_one(c, "Size").and_then(|s| s.parse().ok()).unwrap_or(0),
                    last_modified: xml_one(c, "LastModified").unwrap_or("").to_string(),
                });
            }
            for p in xml_all(&text, "CommonPrefixes") {
                if let Some(p) = xml_one(p, "Prefix") {
                    prefixes.push(xml_unescape(p));
                }
            }
            let truncated = xml_one(&text, "IsTruncated") == Some("true");
            token = xml_one(&text, "NextContinuationToken").map(xml_unescape);
            if !truncated || token.is_none() {
                return Ok(prefixes);
            }
        }
    }

    fn create_multipart(&self, key: &str, content_type: &str) -> Result<String, Error> {
        let ct = [("content-type", content_type.to_string())];
        let r = self.send(
            "POST",
            Some(key),
            &[("uploads", "")],
            &ct,
            Payload::empty(),
            EMPTY_SHA256,
            &[],
        )?;
        let text = String::from_utf8_lossy(&r.body);
        xml_one(&text, "UploadId")
            .map(xml_unescape)
            .ok_or_else(|| Error {
                msg: format!(
                    "POST {}?uploads: no UploadId in the answer",
                    self.describe(Some(key))
                ),
                transport: false,
            })
    }

    fn upload_part(&self, key: &str, id: &str, n: u32, data: &[u8]) -> Result<String, Error> {
        let num = n.to_string();
        let r = self.send(
            "PUT",
            Some(key),
            &[("partNumber", &num), ("uploadId", id)],
            &[],
            Payload::bytes(data),
            &sha256_hex(data),
            &[],
        )?;
        r.header("etag").map(str::to_string).ok_or_else(|| Error {
            msg: format!(
                "PUT {} part {n}: no ETag in the answer",
                self.describe(Some(key))
            ),
            transport: false,
        })
    }

    fn complete_multipart(
        &self,
        key: &str,
        id: &str,
        parts: &[(u32, String)],
    ) -> Result<(), Error> {
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (n, etag) in parts {
            xml.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
                xml_escape(etag)
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let r = self.send(
            "POST",
            Some(key),
            &[("uploadId", id)],
            &[("content-type", "application/xml".to_string())],
            Payload::bytes(xml.as_bytes()),
            &sha256_hex(xml.as_bytes()),
            &[],
        )?;
        // S3 may answer 200 and put the error in the body.
        let text = String::from_utf8_lossy(&r.body);
        if text.contains("<Error>") {
            let fake = client::Reply {
                status: r.status,
                headers: vec![],
                body: r.body.clone(),
            };
            return Err(Error {
                msg: format!(
                    "POST {}?uploadId: {}",
                    self.describe(Some(key)),
                    self.explain(&fake)
                ),
                transport: false,
            });
        }
        Ok(())
    }

    fn abort_multipart(&self, key: &str, id: &str) {
        let _ = self.send(
            "DELETE",
            Some(key),
            &[("uploadId", id)],
            &[],
            Payload::empty(),
            EMPTY_SHA256,
            &[404],
        );
    }
}

fn cancelled() -> io::Error {
    io::Error::other("cancelled (shutdown)")
}

/// A reader that fails once `cancel` is set.
struct Cancellable<'a, R> {
    inner: R,
    cancel: &'a AtomicBool,
}

impl<R: Read> Read for Cancellable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(cancelled());
        }
        self.inner.read(buf)
    }
}

/// A writer that uploads what it is given to one object, holding at most one part in
/// memory: a single PUT when everything fits in the first part, a multipart upload
/// otherwise. Every part is signed with its own SHA-256. Call `finish` (or `fail`).
pub struct Upload<'a> {
    client: &'a Client,
    key: &'a str,
    content_type: &'a str,
    part_size: usize,
    buf: Vec<u8>,
    upload_id: Option<String>,
    parts: Vec<(u32, String)>,
    error: Option<Error>,
    total: u64,
    cancel: &'a AtomicBool,
}

impl<'a> Upload<'a> {
    pub fn new(
        client: &'a Client,
        key: &'a str,
        content_type: &'a str,
        part_size: usize,
        cancel: &'a AtomicBool,
    ) -> Upload<'a> {
        Upload {
            client,
            key,
            content_type,
            part_size,
            buf: Vec::new(),
            upload_id: None,
            parts: Vec::new(),
            error: None,
            total: 0,
            cancel,
        }
    }

    fn send_part(&mut self) -> Result<(), Error> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error {
                msg: format!(
                    "PUT {}: cancelled (shutdown)",
                    self.client.describe(Some(self.key))
                ),
                transport: false,
            });
        }
        let id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = self.client.create_multipart(self.key, self.content_type)?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        let n = self.parts.len() as u32 + 1;
        let etag = self.client.upload_part(self.key, &id, n, &self.buf)?;
        self.parts.push((n, etag));
        self.buf.clear();
        Ok(())
    }

    /// Sends what is left and completes the object; returns its size.
    pub fn finish(mut self) -> Result<u64, Error> {
        if let Some(e) = self.error.take() {
            return Err(self.abort(e));
        }
        let res = if self.upload_id.is_none() {
            self.client
                .put_bytes(self.key, &self.buf, self.content_type)
        } else {
            let r = if self.buf.is_empty() {
                Ok(())
            } else {
                self.send_part()
            };
            r.and_then(|_| {
                let id = self.upload_id.clone().unwrap_or_default();
                self.client.complete_multipart(self.key, &id, &self.parts)
            })
        };
        match res {
            Ok(()) => Ok(self.total),
            Err(e) => Err(self.abort(e)),
        }
    }

    /// Gives up after a local error (the reader or the encryption failed).
    pub fn fail(mut self, e: io::Error) -> Error {
        let err = self.error.take().unwrap_or_else(|| Error {
            msg: format!("PUT {}: {e}", self.client.describe(Some(self.key))),
            transport: false,
        });
        self.abort(err)
    }

    fn abort(&mut self, e: Error) -> Error {
        if let Some(id) = self.upload_id.take() {
            self.client.abort_multipart(self.key, &id);
        }
        e
    }
}

impl Write for Upload<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.error.is_some() {
            return Err(io::Error::other("upload failed"));
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(self.part_size);
        }
        let n = data.len().min(self.part_size - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.total += n as u64;
        if self.buf.len() == self.part_size
            && let Err(e) = self.send_part()
        {
            let msg = e.msg.clone();
            self.error = Some(e);
            return Err(io::Error::other(msg));
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
