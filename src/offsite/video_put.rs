//! One video to the bucket (docs/format.md, Videos offsite): HEAD, then a PUT with
//! `If-None-Match: *` streamed from the file, plain (signed with the file's SHA-256,
//! which the store checks and keeps) or age-encrypted on the fly (`UNSIGNED-PAYLOAD`,
//! its length known in advance); in both cases the last bytes are held back until the
//! file's SHA-256 is checked.
//!
//! A shared plain object is trusted only once its bytes are known to hash to its name:
//! the SHA-256 the store kept from its upload says so at no cost; an object without one
//! (an older version's, or anyone's) is read once and hashed. One that does not match
//! (another site wrote junk under the name first: the store keeps the first object of
//! a name) is *poisoned*: this site then sends its own copy to its own folder
//! (`S3_PREFIX/SITE_ID/videos/<2 hex>/<64 hex>`, where no other site may write), which
//! `restore --videos` tries next, and reports it.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::videos::hashes::Hasher;

use crate::bucket::{self, Bucket, ObjectBody, ObjectHead};

/// A reader of exactly `left` bytes of a file that hashes them and fails, instead of
/// handing over the last bytes, when the SHA-256 is not `expect`: the server then never
/// gets a complete body, so no object appears under a wrong name.
struct Verified<'a> {
    file: File,
    left: u64,
    hash: Hasher,
    expect: [u8; 32],
    cancel: &'a AtomicBool,
}

impl Read for Verified<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        if self.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("cancelled (shutdown)"));
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::other("the video shrank while it was sent"));
        }
        self.hash.update(&buf[..n]);
        self.left -= n as u64;
        if self.left == 0 {
            let got = std::mem::take(&mut self.hash).finish();
            if got != self.expect {
                return Err(io::Error::other(
                    "the video changed since it was hashed: not sent",
                ));
            }
        }
        Ok(n)
    }
}

/// The ciphertext size of an age file of `plain` bytes after a header of `header`
/// bytes (the header includes the 16-byte payload nonce): 64 KiB chunks, each with a
/// 16-byte tag, and one (empty) chunk for an empty file.
pub fn age_size(header: u64, plain: u64) -> u64 {
    let chunks = plain.div_ceil(64 * 1024).max(1);
    header + plain + 16 * chunks
}

#[derive(Clone, Default)]
struct Sink(Rc<RefCell<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The age encryption of a `Verified` file, as a reader whose length is known before
/// the first byte (the PUT needs it). The last chunk is made only once the plaintext's
/// hash is checked.
struct Encrypting<'a> {
    src: Verified<'a>,
    enc: Option<age::stream::StreamWriter<Sink>>,
    out: Sink,
    pos: usize,
    buf: Vec<u8>,
}

impl<'a> Encrypting<'a> {
    fn new(src: Verified<'a>, recipients: &[age::x25519::Recipient]) -> io::Result<(Self, u64)> {
        let enc =
            age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| io::Error::other(e.to_string()))?;
        let out = Sink::default();
        let w = enc.wrap_output(out.clone())?;
        let header = out.0.borrow().len() as u64;
        let total = age_size(header, src.left);
        Ok((
            Encrypting {
                src,
                enc: Some(w),
                out,
                pos: 0,
                buf: vec![0u8; 64 * 1024],
            },
            total,
        ))
    }
}

impl Read for Encrypting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            {
                let out = self.out.0.borrow();
                if self.pos < out.len() {
                    let n = (out.len() - self.pos).min(buf.len());
                    buf[..n].copy_from_slice(&out[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            self.out.0.borrow_mut().clear();
            self.pos = 0;
            let Some(w) = self.enc.as_mut() else {
                return Ok(0);
            };
            let n = self.src.read(&mut self.buf)?;
            if n > 0 {
                w.write_all(&self.buf[..n])?;
            } else if let Some(w) = self.enc.take() {
                w.finish()?;
            }
        }
    }
}

/// What became of one video.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Sent {
    /// Uploaded now (bytes sent).
    Uploaded(u64),
    /// The bucket had it already.
    Present,
    /// The shared object under its name is not this video: this site's own copy went to
    /// `fallback` (bytes sent, 0 when it was there already).
    Poisoned(u64),
}

/// Whether the shared plain object at `key` holds the video `hash` of `size` bytes:
/// by the SHA-256 the store kept, else by reading it once. `Ok(None)`: it vanished.
fn shared_object_holds(
    b: &dyn Bucket,
    key: &str,
    size: u64,
    hash: &[u8; 32],
    cancel: &AtomicBool,
) -> Result<Option<bool>, bucket::Error> {
    match b.head_checked(key)? {
        (ObjectHead::Exists(n), _) if n != size => Ok(Some(false)),
        (ObjectHead::Exists(_), Some(kept)) => Ok(Some(kept == *hash)),
        // 403: a key without list permission asked about a missing object (an existing
        // one answers 200 to a key that may read it): the create decides.
        (ObjectHead::Missing | ObjectHead::Unknown, _) => Ok(None),
        // No kept SHA-256: read it.
        (ObjectHead::Exists(_), None) => {
            Ok(bucket::sha256_of(b, key, cancel)?.map(|(h, n)| h == *hash && n == size))
        }
    }
}

/// Sends one video unless the bucket has it: HEAD, then a PUT with `If-None-Match: *`.
/// A plain object already there is checked (see the module doc); `fallback` is where
/// this site's own copy goes when the shared one is poisoned.
#[allow(clippy::too_many_arguments)]
pub(super) fn send_video(
    b: &dyn Bucket,
    key: &str,
    fallback: &str,
    file: File,
    size: u64,
    hash: &[u8; 32],
    recipients: &[age::x25519::Recipient],
    cancel: &AtomicBool,
) -> Result<Sent, bucket::Error> {
    let local = |e: io::Error| bucket::Error::local(format!("PUT {}: {e}", b.describe(key)));
    // Each body reads the file from its start (clones share the offset).
    let open = || -> io::Result<File> {
        let f = file.try_clone()?;
        (&f).seek(SeekFrom::Start(0))?;
        Ok(f)
    };
    if !recipients.is_empty() {
        // An age object cannot be checked without the identity, which never is on the
        // Pi: the bucket policy keeps other sites out of this site's age folder.
        if let ObjectHead::Exists(_) = b.head(key)? {
            return Ok(Sent::Present);
        }
        let src = verified(open().map_err(local)?, size, hash, cancel);
        let (enc, len) = Encrypting::new(src, recipients).map_err(local)?;
        let body = ObjectBody {
            reader: Box::new(enc),
            len,
            sha256: None,
        };
        let created = b.create(key, body, "application/octet-stream")?;
        return Ok(if created {
            Sent::Uploaded(len)
        } else {
            Sent::Present
        });
    }
    let mut holds = shared_object_holds(b, key, size, hash, cancel)?;
    if holds.is_none() {
        let created = b.create(
            key,
            plain_body(open().map_err(local)?, size, hash, cancel),
            "application/octet-stream",
        )?;
        if created {
            return Ok(Sent::Uploaded(size));
        }
        // Someone wrote it meanwhile: check theirs.
        holds = shared_object_holds(b, key, size, hash, cancel)?;
    }
    if holds != Some(false) {
        return Ok(Sent::Present);
    }
    // Poisoned: our own copy, in our own folder (checked like a shared one).
    match shared_object_holds(b, fallback, size, hash, cancel)? {
        Some(true) => return Ok(Sent::Poisoned(0)),
        Some(false) => {
            // A broken copy of our own (an interrupted older version): replace it.
            b.put(
                fallback,
                plain_body(open().map_err(local)?, size, hash, cancel),
                "application/octet-stream",
            )?;
            return Ok(Sent::Poisoned(size));
        }
        None => {}
    }
    b.create(
        fallback,
        plain_body(open().map_err(local)?, size, hash, cancel),
        "application/octet-stream",
    )?;
    Ok(Sent::Poisoned(size))
}

fn verified<'a>(file: File, size: u64, hash: &[u8; 32], cancel: &'a AtomicBool) -> Verified<'a> {
    Verified {
        file,
        left: size,
        hash: Hasher::new(),
        expect: *hash,
        cancel,
    }
}

/// A plain video's body: the store checks it against its SHA-256 (and keeps it).
fn plain_body<'a>(
    file: File,
    size: u64,
    hash: &[u8; 32],
    cancel: &'a AtomicBool,
) -> ObjectBody<'a> {
    ObjectBody {
        reader: Box::new(verified(file, size, hash, cancel)),
        len: size,
        sha256: Some(*hash),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_sizes_match_the_age_crate() {
        let id = age::x25519::Identity::generate();
        let r = id.to_public();
        for n in [0usize, 1, 65_535, 65_536, 65_537, 200_000] {
            let enc = age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
                .unwrap_or_else(|e| panic!("{e}"));
            let out = Sink::default();
            let mut w = enc
                .wrap_output(out.clone())
                .unwrap_or_else(|e| panic!("{e}"));
            let header = out.0.borrow().len() as u64;
            w.write_all(&vec![7u8; n]).unwrap_or_else(|e| panic!("{e}"));
            w.finish().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                out.0.borrow().len() as u64,
                age_size(header, n as u64),
                "{n}"
            );
        }
    }
}
