//! Google Drive (v3) behind the `Bucket` interface (mod.rs): the club's own Drive as an
//! offsite store, with the `drive.file` scope (only the files this program made).
//!
//! Keys are paths under My Drive's root (`FOLDER/SITE/name`): every segment but the
//! last is a folder, found by name (the q queries of docs/format.md, Google Drive) or
//! made when a write needs it, never by a read. Drive allows two items of one name in a
//! folder: the oldest (createdTime, then ID) is the one used, deterministically. The IDs
//! found or made are kept in the token file's `ids` (google_oauth.rs), so that a file
//! just made is found again even while Drive's search lags, and two runs never make two
//! folders of one name; a kept ID that answers 404 (or is in the trash) is forgotten and
//! looked up again.
//!
//! Writes are resumable uploads: chunks of a multiple of 256 KiB (2 MiB by default)
//! streamed from the body's reader, the chunk not yet confirmed kept in memory, so that
//! a dropped connection or a 308 with a partial Range resumes from what Drive reports,
//! never from zero. `put` of an existing key replaces its content in place (the same
//! file ID: a status stays one file). The body's SHA-256 is checked as it streams, and
//! the last chunk only leaves once it matched: a body that does not match makes no file
//! and changes none. Drive keeps no SHA-256: `head_checked` gives `None`; its tag
//! (`Object::etag`) is the MD5 Drive computes, quoted, which `get_if` compares (Drive
//! has no conditional GET: one metadata request, then the bytes only if they changed).
//! `create` has no atomic form on Drive: it looks first (the window mod.rs describes).
//!
//! Within one call, 429, 5xx and 403 `rateLimitExceeded`/`userRateLimitExceeded` are
//! retried with exponential backoff and jitter (base 1 s, 5 tries; the test-only
//! NEOPRO_GDRIVE_BACKOFF_MS sets the base); a 401 refreshes the access token once.
//! `storageQuotaExceeded` is an error saying Drive is full, not retried. Every number an
//! answer carries is parsed bounded and its arithmetic checked; listings are bounded in
//! pages, entries and depth: a hostile server gets an error, never a loop or a panic.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nanoserde::SerJson;

use crate::config::{GdriveSettings, Secret};
use crate::http::client::{self, Payload, Reply, Timeouts, Url};
use crate::http::percent::percent_encode;
use crate::json::{self, Scalar, Seg};
use crate::units::Sha256;

use super::google_oauth::{self, Ids, MAX_IDS, TokenFile};
use super::{
    Bucket, Error, Fresh, MAX_ANSWER, Object, ObjectBody, ObjectHead, ObjectWriter, Page, Ranged,
};

/// Upload chunk size (a multiple of 256 KiB): the memory an upload holds.
pub const CHUNK: usize = 2 * 1024 * 1024;
/// Drive's unit of chunks.
pub const CHUNK_UNIT: u64 = 256 * 1024;
/// Tries of one request (the first and four retries).
const MAX_TRIES: u32 = 5;
/// Requests one chunk may take (partial answers, status queries, retries) before the
/// upload is given up: a server that keeps taking a byte at a time cannot loop for ever.
const MAX_CHUNK_ROUNDS: u32 = 64;
/// Largest JSON answer kept (a listing page of 1,000 files is about 300 KB).
const MAX_JSON: usize = 4 * 1024 * 1024;
/// Pages, entries and folder depth of one listing.
const MAX_PAGES: u32 = 10_000;
const MAX_ENTRIES: usize = 200_000;
const MAX_DEPTH: usize = 32;
const FOLDER_MIME: &str = "application/vnd.google-apps.folder";
const LIST_FIELDS: &str =
    "nextPageToken,files(id,name,size,mimeType,md5Checksum,modifiedTime,createdTime)";
const UPLOAD_FIELDS: &str = "id,size,md5Checksum";
const NOT_CONNECTED: &str = "Google Drive is not connected: run neopro-backup gdrive login";

/// Drive's storage quota (`about`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// `None`: unlimited.
    pub limit: Option<u64>,
    pub usage: u64,
}

/// A file or folder of an answer (read by json::walk: a derived reader per answer
/// would cost kilobytes of the binary).
#[derive(Default, Clone)]
struct DFile {
    id: Option<String>,
    name: Option<String>,
    size: Option<String>,
    mime_type: Option<String>,
    md5: Option<String>,
    modified: Option<String>,
    created: Option<String>,
    trashed: Option<bool>,
}

impl DFile {
    /// Takes the field `key` of a file object (others are ignored).
    fn set(&mut self, key: &str, v: Scalar<'_>) {
        if key == "trashed" {
            self.trashed = Some(v == Scalar::Bool(true));
            return;
        }
        let slot = match key {
            "id" => &mut self.id,
            "name" => &mut self.name,
            "size" => &mut self.size,
            "mimeType" => &mut self.mime_type,
            "md5Checksum" => &mut self.md5,
            "modifiedTime" => &mut self.modified,
            "createdTime" => &mut self.created,
            _ => return,
        };
        *slot = v.text();
    }
}

/// Walks an answer's JSON; an error when it is not UTF-8 JSON.
fn walk(what: &str, r: &Reply, each: &mut dyn FnMut(&[Seg], Scalar<'_>)) -> Result<(), Error> {
    std::str::from_utf8(&r.body)
        .map_err(|e| e.to_string())
        .and_then(|text| json::walk(text, each))
        .map_err(|e| Error::local(format!("{what}: an answer that is not Drive's JSON ({e})")))
}

/// A file's metadata (an object at the top).
fn parse_file(what: &str, r: &Reply) -> Result<DFile, Error> {
    let mut f = DFile::default();
    walk(what, r, &mut |p, v| {
        if let Some(k) = json::top(p) {
            f.set(k, v)
        }
    })?;
    Ok(f)
}

/// A page of a listing: its files and the next page's token.
fn parse_list(what: &str, r: &Reply) -> Result<(Vec<DFile>, Option<String>), Error> {
    let mut files: Vec<DFile> = Vec::new();
    let mut next = None;
    walk(what, r, &mut |p, v| match p {
        [Seg::Key(k)] if k == "nextPageToken" => next = v.text(),
        [Seg::Key(k), Seg::Index(i), Seg::Key(f)] if k == "files" => {
            // Indexes come in order, each under the text's length: bounded.
            while files.len() <= *i {
                files.push(DFile::default());
            }
            if let Some(file) = files.get_mut(*i) {
                file.set(f, v);
            }
        }
        _ => {}
    })?;
    Ok((files, next))
}

/// What a file's metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    id: String,
    size: u64,
    md5: String,
}

impl Meta {
    fn etag(&self) -> String {
        if self.md5.is_empty() {
            String::new()
        } else {
            format!("\"{}\"", self.md5)
        }
    }
}

/// A number an answer carries (a size, a Range bound): digits only, at most a `u64`.
fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// The bytes Drive holds of an upload, from a 308's `Range: bytes=0-N` (N + 1); no
/// header: none. Anything else (not from 0, N past 2^64): `None`.
fn range_received(v: Option<&str>) -> Option<u64> {
    let Some(v) = v else {
        return Some(0);
    };
    let last = v.trim().strip_prefix("bytes=0-")?;
    parse_u64(last)?.checked_add(1)
}

/// `Content-Range: bytes a-b/total` of a download: (a, b, total), checked (a <= b <
/// total).
fn content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (ab, total) = rest.split_once('/')?;
    let (a, b) = ab.split_once('-')?;
    let (a, b, total) = (parse_u64(a)?, parse_u64(b)?, parse_u64(total)?);
    (a <= b && b < total).then_some((a, b, total))
}

/// A name inside a q string: `\` and `'` escaped.
fn q_escape(name: &str) -> String {
    name.replace('\\', "\\\\").replace('\'', "\\'")
}

fn q_folder(name: &str, parent: &str) -> String {
    format!(
        "name = '{}' and '{}' in parents and mimeType = '{FOLDER_MIME}' and trashed = false",
        q_escape(name),
        q_escape(parent)
    )
}

fn q_file(name: &str, parent: &str) -> String {
    format!(
        "name = '{}' and '{}' in parents and trashed = false",
        q_escape(name),
        q_escape(parent)
    )
}

fn q_children(parent: &str) -> String {
    format!("'{}' in parents and trashed = false", q_escape(parent))
}

/// `bytes a-b/T` of a chunk of `len` bytes at `at` (`T` = `*` while the total is
/// unknown); `bytes */T` for an empty remainder (the last chunk's, when everything was
/// received: it completes the upload).
fn chunk_range(at: u64, len: u64, total: Option<u64>) -> Option<String> {
    let t = total.map_or("*".to_string(), |t| t.to_string());
    if len == 0 {
        return Some(format!("bytes */{t}"));
    }
    let last = at.checked_add(len)?.checked_sub(1)?;
    Some(format!("bytes {at}-{last}/{t}"))
}

/// Where a chunk `[start, end)` is sent again from once Drive holds `received` bytes:
/// from `received` when what is left is the last chunk or a multiple of 256 KiB, else
/// from the 256 KiB boundary below (Drive takes no byte twice; every chunk but the last
/// must be a multiple of 256 KiB). `None`: `received` is outside the chunk.
fn resume_at(start: u64, end: u64, received: u64, last: bool) -> Option<u64> {
    if received < start || received > end {
        return None;
    }
    if last || (end - received).is_multiple_of(CHUNK_UNIT) {
        return Some(received);
    }
    Some((received / CHUNK_UNIT * CHUNK_UNIT).max(start))
}

/// The folders and the name of a key; a key with an empty, `.` or `..` segment is
/// refused.
fn split_key(key: &str) -> Result<(Vec<&str>, &str), Error> {
    let parts: Vec<&str> = key.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(Error::local(format!(
            "gdrive://{key}: not a valid key (an empty, . or .. segment)"
        )));
    }
    match parts.split_last() {
        Some((name, dirs)) => Ok((dirs.to_vec(), name)),
        None => Err(Error::local("an empty key")),
    }
}

/// The reason of a Drive error answer (`rateLimitExceeded`…, the first one's), and its
/// message; empty when the answer says none.
fn reason(r: &Reply) -> (String, String) {
    let (mut why, mut message) = (None, None);
    let _ = walk("", r, &mut |p, v| match p {
        [Seg::Key(e), Seg::Key(m)] if e == "error" && m == "message" => message = v.text(),
        [Seg::Key(e), Seg::Key(l), Seg::Index(0), Seg::Key(k)]
            if e == "error" && l == "errors" && k == "reason" =>
        {
            why = v.text()
        }
        _ => {}
    });
    (why.unwrap_or_default(), message.unwrap_or_default())
}

/// Worth retrying within the call: 429, 5xx, 403 rate limits.
fn retryable(r: &Reply) -> bool {
    match r.status {
        429 | 500..=599 => true,
        403 => matches!(
            reason(r).0.as_str(),
            "rateLimitExceeded" | "userRateLimitExceeded"
        ),
        _ => false,
    }
}

/// A readable error of a Drive answer.
fn explain(what: &str, r: &Reply) -> Error {
    let (why, message) = reason(r);
    let message: String = message.chars().take(300).collect();
    let text = match why.as_str() {
        "storageQuotaExceeded" => format!(
            "{what}: Google Drive is full (storageQuotaExceeded): free space in the Google \
             account or get more storage; the copies wait in the queue"
        ),
        _ if r.status == 401 => format!(
            "{what}: HTTP 401: Google refused the access token even fresh: run \
             neopro-backup gdrive login again"
        ),
        "" if message.is_empty() => format!("{what}: HTTP {}", r.status),
        "" => format!("{what}: HTTP {}: {message}", r.status),
        _ => format!("{what}: HTTP {} {why}: {message}", r.status),
    };
    Error {
        msg: text,
        // Still unavailable after the retries: worth trying again later.
        transport: retryable(r),
        status: Some(r.status),
    }
}

/// The base of the backoff: NEOPRO_GDRIVE_BACKOFF_MS (tests only: they cannot wait
/// seconds), else 1 s.
fn backoff_base() -> Duration {
    std::env::var("NEOPRO_GDRIVE_BACKOFF_MS")
        .ok()
        .and_then(|v| parse_u64(&v))
        .map_or(Duration::from_secs(1), |ms| {
            Duration::from_millis(ms.min(60_000))
        })
}

/// The `tries`-th pause: base × 2^(tries-1), plus up to one base of jitter (from std's
/// randomly keyed hasher: a jitter needs no secret randomness).
fn pause(base: Duration, tries: u32) {
    use std::hash::{BuildHasher, Hasher};
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let jitter = base.saturating_mul((r % 1024) as u32) / 1024;
    let exp = base.saturating_mul(1 << tries.saturating_sub(1).min(10));
    std::thread::sleep(exp.saturating_add(jitter));
}

#[derive(Default)]
struct State {
    /// The token file, once read.
    file: Option<TokenFile>,
    /// The access token and until when it is used.
    access: Option<(String, Instant)>,
}

/// The club's Google Drive.
pub struct Drive {
    api: Url,
    oauth: Url,
    client_id: String,
    secret: Secret,
    dir: PathBuf,
    /// Upload chunk size (tests make it smaller: a multiple of CHUNK_UNIT).
    pub chunk: usize,
    /// Base of the backoff (NEOPRO_GDRIVE_BACKOFF_MS; tests set it).
    pub backoff: Duration,
    state: Mutex<State>,
}

impl Drive {
    /// The Drive of `settings`, connected by the token file of `backup_dir` (read at the
    /// first call; without it every call is an error saying to log in).
    pub fn new(settings: &GdriveSettings, backup_dir: &Path) -> Drive {
        Drive {
            api: settings.api.clone(),
            oauth: settings.oauth.clone(),
            client_id: settings.client_id.clone(),
            secret: settings.client_secret.clone(),
            dir: backup_dir.to_path_buf(),
            chunk: CHUNK,
            backoff: backoff_base(),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The refresh token, the token file read if not yet.
    fn refresh_token(&self) -> Result<Secret, Error> {
        let mut st = self.lock();
        if st.file.is_none() {
            match google_oauth::read_token(&self.dir) {
                Ok(Some(t)) => st.file = Some(t),
                Ok(None) => return Err(Error::local(NOT_CONNECTED)),
                Err(e) => return Err(Error::local(format!("Google Drive: {e}"))),
            }
        }
        match &st.file {
            Some(t) if t.client_id != self.client_id => Err(Error::local(
                "Google Drive was connected with another GDRIVE_CLIENT_ID: run neopro-backup \
                 gdrive login again",
            )),
            Some(t) => Ok(t.refresh_token.clone()),
            None => Err(Error::local(NOT_CONNECTED)),
        }
    }

    /// The access token: the one in memory while it lives, else a fresh one.
    fn access(&self, fresh: bool) -> Result<String, Error> {
        let refresh = self.refresh_token()?;
        let mut st = self.lock();
        if !fresh
            && let Some((t, until)) = &st.access
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        st.access = None;
        let a = google_oauth::refresh(&self.oauth, &self.client_id, &self.secret, &refresh)?;
        // Renewed a minute before it dies (half its life when that is short).
        let life = a.expires_in.saturating_sub((a.expires_in / 2).min(60));
        st.access = Some((a.token.clone(), Instant::now() + Duration::from_secs(life)));
        Ok(a.token)
    }

    /// The ID kept for `path` (a folder's ends in `/`).
    fn cached(&self, path: &str) -> Option<String> {
        self.lock().file.as_ref()?.ids.get(path).cloned()
    }

    /// Keeps (`Some`) or forgets (`None`: a folder with everything under it) the ID of
    /// `path`, in memory and in the token file (read again first: another process may
    /// have written it; not written when it no longer holds our refresh token). The
    /// IDs are a cache: a failed write costs a lookup later.
    fn remember(&self, path: &str, id: Option<&str>) {
        fn apply(ids: &mut Ids, path: &str, id: Option<&str>) -> bool {
            let before = ids.len();
            let changed = match id {
                Some(i) => ids.insert(path.to_string(), i.to_string()).as_deref() != Some(i),
                None if path.ends_with('/') => {
                    ids.retain(|k| !k.starts_with(path));
                    ids.len() != before
                }
                None => ids.remove(path).is_some(),
            };
            if ids.len() > MAX_IDS {
                ids.retain(|k| k.ends_with('/'));
            }
            if ids.len() > MAX_IDS {
                ids.clear();
            }
            changed
        }
        let mut st = self.lock();
        let Some(file) = st.file.as_mut() else {
            return;
        };
        if !apply(&mut file.ids, path, id) {
            return;
        }
        let mine = file.refresh_token.clone();
        if let Ok(Some(mut disk)) = google_oauth::read_token(&self.dir)
            && disk.refresh_token == mine
        {
            apply(&mut disk.ids, path, id);
            let _ = google_oauth::write_token(&self.dir, &disk);
        }
    }

    fn url(&self, path_query: &str) -> Url {
        self.api.with_path(format!(
            "{}{path_query}",
            self.api.path.trim_end_matches('/')
        ))
    }

    /// One request with the access token.
    fn once(
        &self,
        method: &str,
        url: &Url,
        extra: &[(&str, String)],
        body: &[u8],
        max: usize,
        token: &str,
    ) -> Result<Reply, String> {
        let mut headers: Vec<(String, String)> =
            vec![("Authorization".into(), format!("Bearer {token}"))];
        for (k, v) in extra {
            headers.push((k.to_string(), v.clone()));
        }
        client::request(
            method,
            url,
            &headers,
            Payload::bytes(body),
            max,
            Timeouts::GOOGLE,
        )
    }

    /// A request retried as the module doc says; the answer whatever its status once
    /// the retries are spent (the caller reads it). A broken connection is retried for
    /// GET and DELETE only (a POST may have been done).
    fn call(
        &self,
        what: &str,
        method: &str,
        url: &Url,
        extra: &[(&str, String)],
        body: &[u8],
        max: usize,
    ) -> Result<Reply, Error> {
        let mut refreshed = false;
        let mut tries = 0;
        loop {
            let token = self.access(false)?;
            tries += 1;
            match self.once(method, url, extra, body, max, &token) {
                Err(e) => {
                    if matches!(method, "GET" | "DELETE") && tries < MAX_TRIES {
                        pause(self.backoff, tries);
                        continue;
                    }
                    return Err(Error::transport(format!("{what}: {e}")));
                }
                Ok(r) if r.status == 401 && !refreshed => {
                    refreshed = true;
                    self.access(true)?;
                }
                Ok(r) if retryable(&r) && tries < MAX_TRIES => pause(self.backoff, tries),
                Ok(r) => return Ok(r),
            }
        }
    }

    /// `call`, any answer but 2xx (and `also_ok`) an error.
    fn call_ok(
        &self,
        what: &str,
        method: &str,
        url: &Url,
        extra: &[(&str, String)],
        body: &[u8],
        also_ok: &[u16],
    ) -> Result<Reply, Error> {
        let r = self.call(what, method, url, extra, body, MAX_JSON)?;
        if (200..300).contains(&r.status) || also_ok.contains(&r.status) {
            Ok(r)
        } else {
            Err(explain(what, &r))
        }
    }

    /// Every item a q query finds, page by page (bounded).
    fn query(&self, what: &str, q: &str, each: &mut dyn FnMut(DFile)) -> Result<(), Error> {
        let mut token: Option<String> = None;
        let mut entries = 0usize;
        for _ in 0..MAX_PAGES {
            let mut pq = format!(
                "/drive/v3/files?q={}&fields={}&pageSize=1000&spaces=drive",
                percent_encode(q),
                percent_encode(LIST_FIELDS)
            );
            if let Some(t) = &token {
                pq.push_str(&format!("&pageToken={}", percent_encode(t)));
            }
            let r = self.call_ok(what, "GET", &self.url(&pq), &[], &[], &[])?;
            let (files, next) = parse_list(what, &r)?;
            entries = entries.saturating_add(files.len());
            if entries > MAX_ENTRIES {
                return Err(Error::local(format!(
                    "{what}: more than {MAX_ENTRIES} items"
                )));
            }
            files.into_iter().for_each(&mut *each);
            match next.filter(|n| !n.is_empty()) {
                None => return Ok(()),
                Some(n) if Some(&n) == token.as_ref() => {
                    return Err(Error::local(format!(
                        "{what}: Drive sent the same page token twice"
                    )));
                }
                Some(n) => token = Some(n),
            }
        }
        Err(Error::local(format!("{what}: more than {MAX_PAGES} pages")))
    }

    /// The oldest item a q query finds (createdTime, then ID), folders or not.
    fn oldest(&self, what: &str, q: &str, folders: bool) -> Result<Option<DFile>, Error> {
        let mut best: Option<DFile> = None;
        self.query(what, q, &mut |f| {
            if f.id.as_deref().is_none_or(str::is_empty)
                || (f.mime_type.as_deref() == Some(FOLDER_MIME)) != folders
            {
                return;
            }
            let key = |x: &DFile| (x.created.clone().unwrap_or_default(), x.id.clone());
            if best.as_ref().is_none_or(|b| key(&f) < key(b)) {
                best = Some(f);
            }
        })?;
        Ok(best)
    }

    /// The ID of the folder `dirs` (`root` for none): kept, found, or (with `make`)
    /// made; `None` when it does not exist and `make` is false.
    fn folder(&self, dirs: &[&str], make: bool) -> Result<Option<String>, Error> {
        let mut parent = "root".to_string();
        for (i, name) in dirs.iter().enumerate() {
            let path = format!("{}/", dirs[..=i].join("/"));
            if let Some(id) = self.cached(&path) {
                parent = id;
                continue;
            }
            let what = format!("looking up gdrive://{path}");
            match self.oldest(&what, &q_folder(name, &parent), true)? {
                Some(f) => parent = f.id.unwrap_or_default(),
                None if make => parent = self.make_folder(name, &parent, &path)?,
                None => return Ok(None),
            }
            self.remember(&path, Some(&parent));
        }
        Ok(Some(parent))
    }

    fn make_folder(&self, name: &str, parent: &str, path: &str) -> Result<String, Error> {
        let what = format!("making the folder gdrive://{path}");
        let body = format!(
            "{{\"name\":{},\"mimeType\":\"{FOLDER_MIME}\",\"parents\":[{}]}}",
            name.to_string().serialize_json(),
            parent.to_string().serialize_json()
        );
        let r = self.call_ok(
            &what,
            "POST",
            &self.url("/drive/v3/files?fields=id"),
            &[("Content-Type", "application/json; charset=UTF-8".into())],
            body.as_bytes(),
            &[],
        )?;
        let f = parse_file(&what, &r)?;
        f.id.filter(|i| !i.is_empty())
            .ok_or_else(|| Error::local(format!("{what}: no id in the answer")))
    }

    /// The folder a write goes to, made if needed; a kept ID that is gone or in the
    /// trash is forgotten and the folders looked up (or made) again.
    fn write_folder(&self, dirs: &[&str]) -> Result<String, Error> {
        let id = self.folder(dirs, true)?.unwrap_or_else(|| "root".into());
        if dirs.is_empty() {
            return Ok(id);
        }
        let what = format!("checking the folder gdrive://{}/", dirs.join("/"));
        if self.metadata(&what, &id)?.is_some() {
            return Ok(id);
        }
        self.remember(&format!("{}/", dirs[0]), None);
        Ok(self.folder(dirs, true)?.unwrap_or_else(|| "root".into()))
    }

    /// The metadata of `id`; `None` when it is gone or in the trash.
    fn metadata(&self, what: &str, id: &str) -> Result<Option<Meta>, Error> {
        let url = self.url(&format!(
            "/drive/v3/files/{}?fields=id,name,size,md5Checksum,trashed",
            percent_encode(id)
        ));
        let r = self.call_ok(what, "GET", &url, &[], &[], &[404])?;
        if r.status == 404 {
            return Ok(None);
        }
        let f = parse_file(what, &r)?;
        if f.trashed == Some(true) {
            return Ok(None);
        }
        Ok(Some(to_meta(id, &f)))
    }

    /// The file of `key`: by its kept ID, else looked up (never made).
    fn resolve(&self, key: &str) -> Result<Option<Meta>, Error> {
        let (dirs, name) = split_key(key)?;
        let what = format!("looking up gdrive://{key}");
        if let Some(id) = self.cached(key) {
            match self.metadata(&what, &id)? {
                Some(m) => return Ok(Some(m)),
                None => self.remember(key, None),
            }
        }
        let Some(parent) = self.folder(&dirs, false)? else {
            return Ok(None);
        };
        let Some(f) = self.oldest(&what, &q_file(name, &parent), false)? else {
            return Ok(None);
        };
        let id = f.id.clone().unwrap_or_default();
        self.remember(key, Some(&id));
        Ok(Some(to_meta(&id, &f)))
    }

    /// The bytes of `id` (a range of them), `None` when it is gone.
    fn download(
        &self,
        key: &str,
        id: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Option<Reply>, Error> {
        let what = format!("GET gdrive://{key}");
        let url = self.url(&format!("/drive/v3/files/{}?alt=media", percent_encode(id)));
        let extra: Vec<(&str, String)> = range
            .map(|(a, b)| ("Range", format!("bytes={a}-{b}")))
            .into_iter()
            .collect();
        let r = self.call(&what, "GET", &url, &extra, &[], MAX_ANSWER)?;
        match r.status {
            404 => Ok(None),
            200 | 206 => Ok(Some(r)),
            _ => Err(explain(&what, &r)),
        }
    }

    /// Drive's storage quota.
    pub fn about(&self) -> Result<Quota, Error> {
        let what = "reading the Google Drive quota";
        let r = self.call_ok(
            what,
            "GET",
            &self.url("/drive/v3/about?fields=storageQuota"),
            &[],
            &[],
            &[],
        )?;
        let (mut limit, mut usage, mut seen) = (None, None, false);
        walk(what, &r, &mut |p, v| {
            if let [Seg::Key(q), Seg::Key(k)] = p
                && q == "storageQuota"
            {
                seen = true;
                match k.as_str() {
                    "limit" => limit = v.text(),
                    "usage" => usage = v.text(),
                    _ => {}
                }
            }
        })?;
        if !seen {
            return Err(Error::local(format!(
                "{what}: no storageQuota in the answer"
            )));
        }
        Ok(Quota {
            limit: limit.as_deref().and_then(parse_u64),
            usage: usage.as_deref().and_then(parse_u64).unwrap_or(0),
        })
    }

    /// Writes `key` from `body` (see the module doc); with `known_new`, the key was
    /// looked up and is absent (create).
    fn upload(&self, key: &str, body: ObjectBody<'_>, known_new: bool) -> Result<(), Error> {
        let shown = format!("PUT gdrive://{key}");
        let len = body.len;
        let mut reader = body.reader.take(len);
        let mut sha = Sha256::new();
        let cap = usize::try_from(len).unwrap_or(usize::MAX).min(self.chunk);
        let mut buf = vec![0u8; cap];
        let mut up = Resumable::new(self, key, Some(len), known_new);
        let mut read: u64 = 0;
        loop {
            let want = usize::try_from(len - read)
                .unwrap_or(usize::MAX)
                .min(self.chunk);
            let mut n = 0;
            while n < want {
                match reader.read(&mut buf[n..want]) {
                    Ok(0) => {
                        return Err(Error::local(format!(
                            "{shown}: the body ended after {} of {len} bytes: nothing written",
                            read.saturating_add(n as u64)
                        )));
                    }
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Err(Error::local(format!("{shown}: reading the body: {e}")));
                    }
                }
            }
            sha.update(&buf[..n]);
            read += n as u64;
            let last = read == len;
            if last
                && let Some(want) = body.sha256
                && std::mem::take(&mut sha).finish() != want
            {
                return Err(Error::local(format!(
                    "{shown}: the body's SHA-256 is not the one announced: nothing written"
                )));
            }
            let done = up.send(&buf[..n], last)?;
            if let Some(m) = done {
                return up.check(&m);
            }
        }
    }
}

fn to_meta(id: &str, f: &DFile) -> Meta {
    Meta {
        id: f.id.clone().unwrap_or_else(|| id.to_string()),
        size: f.size.as_deref().and_then(parse_u64).unwrap_or(0),
        md5: f
            .md5
            .clone()
            .filter(|m| m.len() <= 64 && m.bytes().all(|b| b.is_ascii_alphanumeric()))
            .unwrap_or_default(),
    }
}

/// One resumable upload: the session is started at the first chunk (a body that fails
/// before it starts nothing).
struct Resumable<'a> {
    drive: &'a Drive,
    key: &'a str,
    /// The total when known in advance.
    len: Option<u64>,
    known_new: bool,
    session: Option<Url>,
    /// Bytes Drive confirmed.
    sent: u64,
}

impl<'a> Resumable<'a> {
    fn new(drive: &'a Drive, key: &'a str, len: Option<u64>, known_new: bool) -> Resumable<'a> {
        Resumable {
            drive,
            key,
            len,
            known_new,
            session: None,
            sent: 0,
        }
    }

    fn what(&self) -> String {
        format!("PUT gdrive://{}", self.key)
    }

    /// Starts the session: a PATCH of the existing file (its content replaced, its ID
    /// kept), else a POST of a new one in its folder (made if needed).
    fn start(&self) -> Result<Url, Error> {
        let d = self.drive;
        let what = self.what();
        let (dirs, name) = split_key(self.key)?;
        let mut extra = vec![
            (
                "Content-Type",
                "application/json; charset=UTF-8".to_string(),
            ),
            (
                "X-Upload-Content-Type",
                "application/octet-stream".to_string(),
            ),
        ];
        if let Some(n) = self.len {
            extra.push(("X-Upload-Content-Length", n.to_string()));
        }
        for _ in 0..2 {
            let existing = if self.known_new {
                None
            } else {
                d.resolve(self.key)?
            };
            let (method, url, body) = match &existing {
                Some(m) => (
                    "PATCH",
                    d.url(&format!(
                        "/upload/drive/v3/files/{}?uploadType=resumable&fields={UPLOAD_FIELDS}",
                        percent_encode(&m.id)
                    )),
                    "{}".to_string(),
                ),
                None => {
                    let parent = d.write_folder(&dirs)?;
                    (
                        "POST",
                        d.url(&format!(
                            "/upload/drive/v3/files?uploadType=resumable&fields={UPLOAD_FIELDS}"
                        )),
                        format!(
                            "{{\"name\":{},\"parents\":[{}]}}",
                            name.to_string().serialize_json(),
                            parent.serialize_json()
                        ),
                    )
                }
            };
            let r = d.call_ok(&what, method, &url, &extra, body.as_bytes(), &[404])?;
            if r.status == 404 {
                // The file (or the folder) went between the look and the write.
                match existing {
                    Some(_) => d.remember(self.key, None),
                    None => d.remember(&format!("{}/", dirs.first().unwrap_or(&"")), None),
                }
                continue;
            }
            let loc = r.header("location").unwrap_or("");
            let session = Url::parse(loc)
                .map_err(|e| Error::local(format!("{what}: the upload session is not {e}")))?;
            // The access token goes only to the API's own host.
            if session.origin() != d.api.origin() {
                return Err(Error::local(format!(
                    "{what}: Drive gave an upload session on another host ({})",
                    session.origin()
                )));
            }
            return Ok(session);
        }
        Err(Error::local(format!(
            "{what}: the file or its folder keeps vanishing (HTTP 404)"
        )))
    }

    /// Sends `data`, the bytes after those confirmed (`last`: the upload's end), until
    /// Drive holds them all; the file's metadata once the last is taken.
    fn send(&mut self, data: &[u8], last: bool) -> Result<Option<Meta>, Error> {
        let what = self.what();
        let start = self.sent;
        let end = start
            .checked_add(data.len() as u64)
            .ok_or_else(|| Error::local(format!("{what}: past 2^64 bytes")))?;
        if self.len.is_some_and(|n| end > n || (last && end != n)) {
            return Err(Error::local(format!(
                "{what}: the body is not its announced length"
            )));
        }
        let total = if last { Some(end) } else { self.len };
        let session = match &self.session {
            Some(s) => s.clone(),
            None => {
                let s = self.start()?;
                self.session = Some(s.clone());
                s
            }
        };
        let d = self.drive;
        let mut at = start;
        let mut failures = 0;
        let mut refreshed = false;
        let mut ask = false;
        for _ in 0..MAX_CHUNK_ROUNDS {
            let token = d.access(false)?;
            let off = usize::try_from(at - start).unwrap_or(usize::MAX);
            let part = data.get(off..).unwrap_or(&[]);
            let range = if ask {
                format!(
                    "bytes */{}",
                    total.map_or("*".to_string(), |t| t.to_string())
                )
            } else {
                chunk_range(at, part.len() as u64, total)
                    .ok_or_else(|| Error::local(format!("{what}: past 2^64 bytes")))?
            };
            let body = if ask { &[][..] } else { part };
            let r = d.once(
                "PUT",
                &session,
                &[("Content-Range", range)],
                body,
                MAX_JSON,
                &token,
            );
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    failures += 1;
                    if failures >= MAX_TRIES {
                        return Err(Error::transport(format!("{what}: {e}")));
                    }
                    pause(d.backoff, failures);
                    ask = true;
                    continue;
                }
            };
            match r.status {
                200 | 201 => {
                    if !last {
                        return Err(Error::local(format!(
                            "{what}: Drive ended the upload before its last chunk"
                        )));
                    }
                    let f = parse_file(&what, &r)?;
                    self.sent = end;
                    return Ok(Some(to_meta("", &f)));
                }
                308 => {
                    ask = false;
                    let received = range_received(r.header("range"));
                    let next = received.and_then(|n| resume_at(start, end, n, last));
                    let Some(next) = next else {
                        return Err(Error::local(format!(
                            "{what}: Drive holds {} bytes, outside the chunk sent ({start} to \
                             {end}): the upload starts again at the next attempt",
                            r.header("range").unwrap_or("none")
                        )));
                    };
                    if next == end && !last {
                        self.sent = end;
                        return Ok(None);
                    }
                    if next <= at && received != Some(end) {
                        // No progress: pause as after a failure.
                        failures += 1;
                        if failures >= MAX_TRIES {
                            return Err(Error::transport(format!(
                                "{what}: Drive takes none of the chunk"
                            )));
                        }
                        pause(d.backoff, failures);
                    }
                    at = next;
                }
                404 => {
                    return Err(Error::transport(format!(
                        "{what}: the upload session expired (HTTP 404): the upload starts again \
                         from zero at the next attempt"
                    )));
                }
                401 if !refreshed => {
                    refreshed = true;
                    d.access(true)?;
                    ask = true;
                }
                _ if retryable(&r) => {
                    failures += 1;
                    if failures >= MAX_TRIES {
                        return Err(explain(&what, &r));
                    }
                    pause(d.backoff, failures);
                    ask = true;
                }
                _ => return Err(explain(&what, &r)),
            }
        }
        Err(Error::transport(format!(
            "{what}: no end to the chunk after {MAX_CHUNK_ROUNDS} requests"
        )))
    }

    /// The final answer: the file's size must be what was sent; its ID is kept.
    fn check(&self, m: &Meta) -> Result<(), Error> {
        if m.size != self.sent {
            return Err(Error::local(format!(
                "{}: Drive reports {} bytes, {} were sent",
                self.what(),
                m.size,
                self.sent
            )));
        }
        if !m.id.is_empty() {
            self.drive.remember(self.key, Some(&m.id));
        }
        Ok(())
    }
}

impl Bucket for Drive {
    fn describe(&self, key: &str) -> String {
        format!("gdrive://{key}")
    }

    /// The whole listing in one page, sorted by key (Drive has no key order across its
    /// own pages: they are all read, bounded). Without a delimiter the subfolders are
    /// walked (bounded depth).
    fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<&str>,
    ) -> Result<Page, Error> {
        let what = format!("listing gdrive://{prefix}");
        if token.is_some() {
            return Err(Error::local(format!(
                "{what}: a page token Drive never gave"
            )));
        }
        if delimiter.is_some_and(|d| d != "/") {
            return Err(Error::local(format!("{what}: only / folds folders")));
        }
        let (dir, filter) = match prefix.rfind('/') {
            Some(i) => (&prefix[..i], &prefix[i + 1..]),
            None => ("", prefix),
        };
        let dirs: Vec<&str> = if dir.is_empty() {
            Vec::new()
        } else {
            let (mut d, last) = split_key(dir)?;
            d.push(last);
            d
        };
        let Some(top) = self.folder(&dirs, false)? else {
            return Ok(Page::default());
        };
        let base = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut page = Page::default();
        let mut stack = vec![(top, base, 0usize)];
        let mut entries = 0usize;
        while let Some((id, base, depth)) = stack.pop() {
            let mut children = Vec::new();
            self.query(&what, &q_children(&id), &mut |f| children.push(f))?;
            entries = entries.saturating_add(children.len());
            if entries > MAX_ENTRIES {
                return Err(Error::local(format!(
                    "{what}: more than {MAX_ENTRIES} items"
                )));
            }
            // Two items of one name: the oldest only, as a lookup would find.
            children.sort_by(|a, b| {
                let k = |x: &DFile| {
                    (
                        x.mime_type.as_deref() == Some(FOLDER_MIME),
                        x.name.clone(),
                        x.created.clone(),
                        x.id.clone(),
                    )
                };
                k(a).cmp(&k(b))
            });
            children.dedup_by(|b, a| {
                a.name == b.name
                    && (a.mime_type.as_deref() == Some(FOLDER_MIME))
                        == (b.mime_type.as_deref() == Some(FOLDER_MIME))
            });
            for c in children {
                let (Some(name), Some(cid)) = (c.name.as_deref(), c.id.as_deref()) else {
                    continue;
                };
                if name.is_empty()
                    || name.contains('/')
                    || (depth == 0 && !name.starts_with(filter))
                {
                    continue;
                }
                if c.mime_type.as_deref() == Some(FOLDER_MIME) {
                    let sub = format!("{base}{name}/");
                    if delimiter.is_some() {
                        page.prefixes.push(sub);
                    } else if depth + 1 >= MAX_DEPTH {
                        return Err(Error::local(format!(
                            "{what}: folders deeper than {MAX_DEPTH}"
                        )));
                    } else {
                        stack.push((cid.to_string(), sub, depth + 1));
                    }
                } else {
                    let m = to_meta(cid, &c);
                    page.objects.push(Object {
                        key: format!("{base}{name}"),
                        size: m.size,
                        last_modified: c.modified.clone().unwrap_or_default(),
                        etag: m.etag(),
                    });
                }
            }
        }
        page.objects.sort_by(|a, b| a.key.cmp(&b.key));
        page.objects.dedup_by(|b, a| a.key == b.key);
        page.prefixes.sort();
        page.prefixes.dedup();
        Ok(page)
    }

    fn head(&self, key: &str) -> Result<ObjectHead, Error> {
        Ok(match self.resolve(key)? {
            Some(m) => ObjectHead::Exists(m.size),
            None => ObjectHead::Missing,
        })
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let Some(m) = self.resolve(key)? else {
            return Ok(None);
        };
        if m.size > MAX_ANSWER as u64 {
            return Err(Error::local(format!(
                "GET gdrive://{key}: the object is {} bytes, over {MAX_ANSWER}",
                m.size
            )));
        }
        if m.size == 0 {
            return Ok(Some(Vec::new()));
        }
        let Some(r) = self.download(key, &m.id, None)? else {
            return Ok(None);
        };
        Ok(Some(r.body))
    }

    /// Drive has no conditional GET: the metadata's MD5 (quoted) is compared with
    /// `etag`, and the bytes read only when they differ.
    fn get_if(&self, key: &str, etag: Option<&str>, max: u64) -> Result<Fresh, Error> {
        let Some(m) = self.resolve(key)? else {
            return Ok(Fresh::Missing);
        };
        let tag = m.etag();
        if !tag.is_empty() && etag == Some(tag.as_str()) {
            return Ok(Fresh::Same);
        }
        let max = max.min(MAX_ANSWER as u64);
        if m.size > max {
            return Err(Error::local(format!(
                "GET gdrive://{key}: the object is {} bytes, over {max}",
                m.size
            )));
        }
        if m.size == 0 {
            return Ok(Fresh::Got {
                data: Vec::new(),
                etag: tag,
            });
        }
        match self.download(key, &m.id, None)? {
            None => Ok(Fresh::Missing),
            Some(r) if r.body.len() as u64 > max => Err(Error::local(format!(
                "GET gdrive://{key}: the object is {} bytes, over {max}",
                r.body.len()
            ))),
            Some(r) => Ok(Fresh::Got {
                data: r.body,
                etag: tag,
            }),
        }
    }

    fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Option<Ranged>, Error> {
        let what = format!("GET gdrive://{key}");
        let Some(m) = self.resolve(key)? else {
            return Ok(None);
        };
        let len = len.clamp(1, MAX_ANSWER as u64);
        if start >= m.size {
            return Ok(Some(Ranged {
                data: Vec::new(),
                total: m.size,
            }));
        }
        let last = start.saturating_add(len - 1).min(m.size - 1);
        let Some(r) = self.download(key, &m.id, Some((start, last)))? else {
            return Ok(None);
        };
        let want = last - start + 1;
        if r.status == 206 {
            let cr = r.header("content-range").and_then(content_range);
            match cr {
                Some((a, b, total))
                    if a == start && b - a + 1 == r.body.len() as u64 && b <= last =>
                {
                    Ok(Some(Ranged {
                        data: r.body,
                        total,
                    }))
                }
                _ => Err(Error::local(format!(
                    "{what}: the answer's Content-Range is not the range asked"
                ))),
            }
        } else {
            // A whole answer (Range ignored): the part asked (bounded by MAX_ANSWER).
            let total = r.body.len() as u64;
            let from = usize::try_from(start)
                .unwrap_or(usize::MAX)
                .min(r.body.len());
            let to = usize::try_from(start.saturating_add(want))
                .unwrap_or(usize::MAX)
                .min(r.body.len());
            Ok(Some(Ranged {
                data: r.body[from..to].to_vec(),
                total,
            }))
        }
    }

    fn put(&self, key: &str, body: ObjectBody<'_>, _content_type: &str) -> Result<(), Error> {
        self.upload(key, body, false)
    }

    /// No atomic create-only write on Drive: a look, then the upload.
    fn create(&self, key: &str, body: ObjectBody<'_>, _content_type: &str) -> Result<bool, Error> {
        if self.resolve(key)?.is_some() {
            return Ok(false);
        }
        self.upload(key, body, true).map(|_| true)
    }

    fn delete(&self, key: &str) -> Result<(), Error> {
        let Some(m) = self.resolve(key)? else {
            return Ok(());
        };
        let what = format!("DELETE gdrive://{key}");
        let url = self.url(&format!("/drive/v3/files/{}", percent_encode(&m.id)));
        self.call_ok(&what, "DELETE", &url, &[], &[], &[404])?;
        self.remember(key, None);
        Ok(())
    }

    fn writer<'a>(
        &'a self,
        key: &'a str,
        _content_type: &'a str,
        cancel: &'a AtomicBool,
    ) -> Box<dyn ObjectWriter + 'a> {
        Box::new(Writer {
            up: Resumable::new(self, key, None, false),
            buf: Vec::new(),
            chunk: self.chunk,
            total: 0,
            error: None,
            cancel,
        })
    }
}

/// A body of unknown length: chunks `bytes a-b/*` as they fill, the last with the
/// total. One chunk in memory (a full one is held until more comes, so that the last
/// chunk always carries bytes and the total).
struct Writer<'a> {
    up: Resumable<'a>,
    buf: Vec<u8>,
    chunk: usize,
    total: u64,
    error: Option<Error>,
    cancel: &'a AtomicBool,
}

impl Writer<'_> {
    fn cancelled(&self) -> Result<(), Error> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::local(format!(
                "{}: cancelled (shutdown)",
                self.up.what()
            )));
        }
        Ok(())
    }
}

impl Write for Writer<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.error.is_some() {
            return Err(io::Error::other("upload failed"));
        }
        if data.is_empty() {
            return Ok(0);
        }
        if self.buf.len() == self.chunk {
            let r = self
                .cancelled()
                .and_then(|_| self.up.send(&self.buf, false).map(|_| ()));
            if let Err(e) = r {
                let msg = e.msg.clone();
                self.error = Some(e);
                return Err(io::Error::other(msg));
            }
            self.buf.clear();
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(self.chunk);
        }
        let n = data.len().min(self.chunk - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.total = self.total.saturating_add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for Writer<'_> {
    fn finish(mut self: Box<Self>) -> Result<u64, Error> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.cancelled()?;
        let buf = std::mem::take(&mut self.buf);
        match self.up.send(&buf, true)? {
            Some(m) => {
                self.up.check(&m)?;
                Ok(self.total)
            }
            None => Err(Error::local(format!(
                "{}: Drive did not complete the upload",
                self.up.what()
            ))),
        }
    }

    /// The session is left to expire: Drive makes nothing of an unfinished upload.
    fn fail(mut self: Box<Self>, e: io::Error) -> Error {
        self.error
            .take()
            .unwrap_or_else(|| Error::local(format!("{}: {e}", self.up.what())))
    }
}

#[cfg(test)]
#[path = "gdrive_tests.rs"]
mod tests;
