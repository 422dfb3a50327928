//! S3-compatible object storage (AWS S3, SeaweedFS, MinIO, Garage, Ceph RGW…) behind the
//! `Bucket` interface (mod.rs), signed with SigV4 (sigv4.rs), with path-style addressing
//! (`ENDPOINT/BUCKET/KEY`, which every implementation accepts): PUT streamed with the
//! body's SHA-256 when known (the server then checks the body), `If-None-Match: *` for
//! `create` (an existing object is never replaced: 412), multipart upload from a
//! bounded buffer for a writer (streams whose length cannot be known in advance, such
//! as an age encryption), GET, GET by ranges, HEAD, DELETE, ListObjectsV2.
//!
//! The XML of the answers is read by xml.rs. Every number an answer carries (sizes,
//! Content-Range) is parsed as a bounded `u64` and its arithmetic checked: a hostile
//! endpoint gets an error, never a panic.
//!
//! The secret key only ever enters an HMAC; no error or log line can contain it.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::clock;
use crate::http::client::{self, Payload, Timeouts, Url};
use crate::units::{base64, base64_decode, hex};

use super::xml::{xml_all, xml_escape, xml_one, xml_unescape};
use super::{
    Bucket, Error, Fresh, MAX_ANSWER, Object, ObjectBody, ObjectHead, ObjectWriter, Page, Ranged,
};

pub use super::sigv4::{
    Credentials, EMPTY_SHA256, amz_date, authorization, canonical_query, sha256_hex, uri_encode,
};

/// Part size of multipart uploads: the memory held at once (AWS's minimum is 5 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// AWS's limit on the number of parts.
const MAX_PARTS: u64 = 10_000;

/// One S3 bucket: where, which, and the key that signs.
pub struct S3 {
    /// The endpoint; its path (if any) is a prefix of every request path.
    pub endpoint: Url,
    pub bucket: String,
    pub creds: Credentials,
}

impl S3 {
    fn path(&self, key: Option<&str>) -> String {
        let base = self.endpoint.path.trim_end_matches('/');
        match key {
            Some(k) => format!("{base}/{}/{}", self.bucket, uri_encode(k, true)),
            None => format!("{base}/{}", self.bucket),
        }
    }

    fn shown(&self, key: Option<&str>) -> String {
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
        let what = format!("{method} {}", self.shown(key));
        let resp = client::request(method, &url, &headers, body, MAX_ANSWER, Timeouts::S3)
            .map_err(|e| Error::transport(format!("{what}: {e}")))?;
        if (200..300).contains(&resp.status) || also_ok.contains(&resp.status) {
            return Ok(resp);
        }
        Err(Error::refused(
            format!("{what}: {}", self.explain(&resp)),
            resp.status,
        ))
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

    /// A PUT of `body`; with `create`, `If-None-Match: *` (`Ok(false)`: the key exists,
    /// 412). A body whose SHA-256 is known carries it twice: as the signed payload hash,
    /// and as `x-amz-checksum-sha256`, which the server checks (refusing a body that does
    /// not match with BadDigest) and keeps with the object (the contract suite checks
    /// both on SeaweedFS; AWS documents the same). A failure of the body's own reader (a
    /// file that changed, a hash that is not the expected one) is this side's, not the
    /// network's.
    fn write(
        &self,
        key: &str,
        body: ObjectBody<'_>,
        content_type: &str,
        create: bool,
    ) -> Result<bool, Error> {
        let mut headers = vec![("content-type", content_type.to_string())];
        if create {
            headers.push(("if-none-match", "*".to_string()));
        }
        let hash = match body.sha256 {
            Some(h) => {
                headers.push(("x-amz-checksum-sha256", base64(&h)));
                hex(&h)
            }
            None => "UNSIGNED-PAYLOAD".to_string(),
        };
        let failed = Cell::new(false);
        let payload = Payload {
            reader: Box::new(Watched {
                inner: body.reader,
                failed: &failed,
            }),
            len: body.len,
        };
        let also_ok: &[u16] = if create { &[412] } else { &[] };
        match self.send("PUT", Some(key), &[], &headers, payload, &hash, also_ok) {
            Ok(r) => Ok(r.status != 412),
            Err(e) if failed.get() => Err(Error::local(e.msg)),
            Err(e) => Err(e),
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
        xml_one(&text, "UploadId").map(xml_unescape).ok_or_else(|| {
            Error::local(format!(
                "POST {}?uploads: no UploadId in the answer",
                self.shown(Some(key))
            ))
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
        r.header("etag").map(str::to_string).ok_or_else(|| {
            Error::local(format!(
                "PUT {} part {n}: no ETag in the answer",
                self.shown(Some(key))
            ))
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
            return Err(Error::refused(
                format!(
                    "POST {}?uploadId: {}",
                    self.shown(Some(key)),
                    self.explain(&fake)
                ),
                r.status,
            ));
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

/// A number an answer carries (a size, a Content-Range bound): digits only, at most a
/// `u64`.
fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// The total of `Content-Range: bytes a-b/TOTAL` (or `bytes */TOTAL`).
fn content_range_total(v: &str) -> Option<u64> {
    parse_u64(v.rsplit('/').next()?)
}

/// A body reader that remembers it failed: the failure is then this side's (a file
/// that changed, a hash that is not the expected one), not the network's.
struct Watched<'a> {
    inner: Box<dyn Read + 'a>,
    failed: &'a Cell<bool>,
}

impl Read for Watched<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        if r.is_err() {
            self.failed.set(true);
        }
        r
    }
}

impl Bucket for S3 {
    fn describe(&self, key: &str) -> String {
        self.shown(Some(key))
    }

    fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<&str>,
    ) -> Result<Page, Error> {
        let mut q: Vec<(&str, &str)> = vec![("list-type", "2"), ("prefix", prefix)];
        if let Some(d) = delimiter {
            q.push(("delimiter", d));
        }
        if let Some(t) = token {
            q.push(("continuation-token", t));
        }
        let r = self.send("GET", None, &q, &[], Payload::empty(), EMPTY_SHA256, &[])?;
        let text = String::from_utf8_lossy(&r.body);
        let mut page = Page::default();
        for c in xml_all(&text, "Contents") {
            let Some(key) = xml_one(c, "Key") else {
                continue;
            };
            page.objects.push(Object {
                key: xml_unescape(key),
                size: xml_one(c, "Size").and_then(parse_u64).unwrap_or(0),
                last_modified: xml_one(c, "LastModified").unwrap_or("").to_string(),
                etag: xml_one(c, "ETag").map(xml_unescape).unwrap_or_default(),
            });
        }
        for p in xml_all(&text, "CommonPrefixes") {
            if let Some(p) = xml_one(p, "Prefix") {
                page.prefixes.push(xml_unescape(p));
            }
        }
        let truncated = xml_one(&text, "IsTruncated") == Some("true");
        page.next = xml_one(&text, "NextContinuationToken")
            .map(xml_unescape)
            .filter(|_| truncated);
        Ok(page)
    }

    /// A 403 is `Unknown`: a key allowed to read but not to list a prefix gets 403, not
    /// 404, for a missing object.
    fn head(&self, key: &str) -> Result<ObjectHead, Error> {
        self.head_checked(key).map(|(h, _)| h)
    }

    /// HEAD with `x-amz-checksum-mode: ENABLED`: the SHA-256 the server kept from the
    /// upload's `x-amz-checksum-sha256` (AWS, SeaweedFS 4.48, MinIO), if any. A composite
    /// checksum of a multipart upload (`…-N`) is not an object's SHA-256: `None`.
    fn head_checked(&self, key: &str) -> Result<(ObjectHead, Option<[u8; 32]>), Error> {
        let r = self.send(
            "HEAD",
            Some(key),
            &[],
            &[("x-amz-checksum-mode", "ENABLED".to_string())],
            Payload::empty(),
            EMPTY_SHA256,
            &[403, 404],
        )?;
        Ok(match r.status {
            404 => (ObjectHead::Missing, None),
            403 => (ObjectHead::Unknown, None),
            _ => {
                let size = r.header("content-length").and_then(parse_u64).unwrap_or(0);
                let sum = r
                    .header("x-amz-checksum-sha256")
                    .and_then(|v| base64_decode(v.trim()))
                    .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok());
                (ObjectHead::Exists(size), sum)
            }
        })
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
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

    /// GET with `If-None-Match` (304 is `Same`) and `Range: bytes=0-MAX` (one byte more
    /// than allowed, so that an object over `max` shows without being read whole). A
    /// store that ignores If-None-Match answers 200 with the same ETag: that is `Same`
    /// too (the bytes were read for nothing). An empty object answers 416 to a range.
    fn get_if(&self, key: &str, etag: Option<&str>, max: u64) -> Result<Fresh, Error> {
        let max = max.min(MAX_ANSWER as u64 - 1);
        let mut extra = vec![("range", format!("bytes=0-{max}"))];
        if let Some(t) = etag.filter(|t| !t.is_empty()) {
            extra.push(("if-none-match", t.to_string()));
        }
        let r = self.send(
            "GET",
            Some(key),
            &[],
            &extra,
            Payload::empty(),
            EMPTY_SHA256,
            &[304, 404, 416],
        )?;
        let tag = r.header("etag").map(str::to_string).unwrap_or_default();
        let total = match r.status {
            206 => r.header("content-range").and_then(content_range_total),
            _ => Some(r.body.len() as u64),
        };
        Ok(match r.status {
            404 => Fresh::Missing,
            304 => Fresh::Same,
            _ if !tag.is_empty() && etag == Some(tag.as_str()) => Fresh::Same,
            416 => Fresh::Got {
                data: Vec::new(),
                etag: tag,
            },
            _ if total.is_none_or(|t| t > max) || r.body.len() as u64 > max => {
                return Err(Error::local(format!(
                    "GET {}: the object is {} bytes, over {max}",
                    self.shown(Some(key)),
                    total.map_or("more than that".to_string(), |t| t.to_string())
                )));
            }
            _ => Fresh::Got {
                data: r.body,
                etag: tag,
            },
        })
    }

    fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Option<Ranged>, Error> {
        let len = len.clamp(1, MAX_ANSWER as u64);
        let last = start.checked_add(len - 1).ok_or_else(|| {
            Error::local(format!("GET {}: range past 2^64", self.shown(Some(key))))
        })?;
        let range = format!("bytes={start}-{last}");
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
                    .and_then(content_range_total)
                    .unwrap_or(start);
                Ok(Some(Ranged {
                    data: Vec::new(),
                    total,
                }))
            }
            206 => {
                let total = r
                    .header("content-range")
                    .and_then(content_range_total)
                    .ok_or_else(|| {
                        Error::local(format!(
                            "GET {}: no usable Content-Range in the answer",
                            self.shown(Some(key))
                        ))
                    })?;
                if r.body.len() as u64 > len {
                    return Err(Error::local(format!(
                        "GET {}: the answer is longer than the range asked",
                        self.shown(Some(key))
                    )));
                }
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
                let to = usize::try_from(last.saturating_add(1))
                    .unwrap_or(usize::MAX)
                    .min(r.body.len());
                Ok(Some(Ranged {
                    data: r.body[from..to].to_vec(),
                    total,
                }))
            }
        }
    }

    fn put(&self, key: &str, body: ObjectBody<'_>, content_type: &str) -> Result<(), Error> {
        self.write(key, body, content_type, false).map(|_| ())
    }

    fn create(&self, key: &str, body: ObjectBody<'_>, content_type: &str) -> Result<bool, Error> {
        self.write(key, body, content_type, true)
    }

    fn delete(&self, key: &str) -> Result<(), Error> {
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

    fn writer<'a>(
        &'a self,
        key: &'a str,
        content_type: &'a str,
        cancel: &'a AtomicBool,
    ) -> Box<dyn ObjectWriter + 'a> {
        Box::new(Upload::new(self, key, content_type, PART_SIZE, cancel))
    }
}

/// A writer that uploads what it is given to one object, holding at most one part in
/// memory: a single PUT when everything fits in the first part, a multipart upload
/// otherwise. Every part is signed with its own SHA-256. Call `finish` (or `fail`).
pub struct Upload<'a> {
    client: &'a S3,
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
    fn new(
        client: &'a S3,
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
            return Err(Error::local(format!(
                "PUT {}: cancelled (shutdown)",
                self.client.shown(Some(self.key))
            )));
        }
        let id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = self.client.create_multipart(self.key, self.content_type)?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        let n = u32::try_from(self.parts.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        if u64::from(n) > MAX_PARTS {
            return Err(Error::local(format!(
                "PUT {}: over {MAX_PARTS} parts of {} bytes",
                self.client.shown(Some(self.key)),
                self.part_size
            )));
        }
        let etag = self.client.upload_part(self.key, &id, n, &self.buf)?;
        self.parts.push((n, etag));
        self.buf.clear();
        Ok(())
    }

    /// Sends what is left and completes the object; returns its size.
    fn complete(mut self) -> Result<u64, Error> {
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
    fn give_up(mut self, e: io::Error) -> Error {
        let err = self.error.take().unwrap_or_else(|| {
            Error::local(format!("PUT {}: {e}", self.client.shown(Some(self.key))))
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

impl ObjectWriter for Upload<'_> {
    fn finish(self: Box<Self>) -> Result<u64, Error> {
        (*self).complete()
    }

    fn fail(self: Box<Self>, e: io::Error) -> Error {
        (*self).give_up(e)
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
