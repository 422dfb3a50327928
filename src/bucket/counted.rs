//! A store that counts the requests it passes to another, by kind: what a read of the
//! fleet cost (`fleet serve`'s `/metrics`, docs/format.md, Fleet), whatever the store
//! below. Every call is one request of its kind, except `list_each`/`list`, which are
//! one `list` per page, and a writer, counted as one `put` (its parts are the store's).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{Bucket, Error, Fresh, ObjectBody, ObjectHead, ObjectWriter, Page, Ranged};

/// The kinds of requests counted, in the order of `Requests::get`.
pub const KINDS: [&str; 6] = ["list", "get", "get_not_modified", "head", "put", "delete"];

/// Requests by kind (`KINDS`).
#[derive(Debug, Default)]
pub struct Requests([AtomicU64; 6]);

impl Requests {
    fn add(&self, kind: usize) {
        if let Some(c) = self.0.get(kind) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts, in the order of `KINDS`.
    pub fn get(&self) -> [u64; 6] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }

    /// Adds the counts of `other`.
    pub fn add_all(&self, other: &Requests) {
        for (mine, theirs) in self.0.iter().zip(other.get()) {
            mine.fetch_add(theirs, Ordering::Relaxed);
        }
    }
}

const LIST: usize = 0;
const GET: usize = 1;
const NOT_MODIFIED: usize = 2;
const HEAD: usize = 3;
const PUT: usize = 4;
const DELETE: usize = 5;

/// `inner`, counting into `requests`.
pub struct Counted<'a> {
    pub inner: &'a dyn Bucket,
    pub requests: &'a Requests,
}

impl Bucket for Counted<'_> {
    fn describe(&self, key: &str) -> String {
        self.inner.describe(key)
    }

    fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<&str>,
    ) -> Result<Page, Error> {
        self.requests.add(LIST);
        self.inner.list_page(prefix, delimiter, token)
    }

    fn head(&self, key: &str) -> Result<ObjectHead, Error> {
        self.requests.add(HEAD);
        self.inner.head(key)
    }

    fn head_checked(&self, key: &str) -> Result<(ObjectHead, Option<[u8; 32]>), Error> {
        self.requests.add(HEAD);
        self.inner.head_checked(key)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.requests.add(GET);
        self.inner.get(key)
    }

    fn get_if(&self, key: &str, etag: Option<&str>, max: u64) -> Result<Fresh, Error> {
        let r = self.inner.get_if(key, etag, max);
        self.requests.add(if r == Ok(Fresh::Same) {
            NOT_MODIFIED
        } else {
            GET
        });
        r
    }

    fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Option<Ranged>, Error> {
        self.requests.add(GET);
        self.inner.get_range(key, start, len)
    }

    fn put(&self, key: &str, body: ObjectBody<'_>, content_type: &str) -> Result<(), Error> {
        self.requests.add(PUT);
        self.inner.put(key, body, content_type)
    }

    fn create(&self, key: &str, body: ObjectBody<'_>, content_type: &str) -> Result<bool, Error> {
        self.requests.add(PUT);
        self.inner.create(key, body, content_type)
    }

    fn delete(&self, key: &str) -> Result<(), Error> {
        self.requests.add(DELETE);
        self.inner.delete(key)
    }

    fn writer<'a>(
        &'a self,
        key: &'a str,
        content_type: &'a str,
        cancel: &'a AtomicBool,
    ) -> Box<dyn ObjectWriter + 'a> {
        self.requests.add(PUT);
        self.inner.writer(key, content_type, cancel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::mem::MemBucket;

    #[test]
    fn counts_each_request_by_kind() {
        let m = MemBucket::new();
        let r = Requests::default();
        let b = Counted {
            inner: &m,
            requests: &r,
        };
        assert!(b.put_bytes("p/a", b"one", "text/plain").is_ok());
        let tag = match b.get_if("p/a", None, 100) {
            Ok(Fresh::Got { data, etag }) => {
                assert_eq!(data, b"one");
                etag
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(b.get_if("p/a", Some(&tag), 100), Ok(Fresh::Same));
        assert_eq!(b.get_if("p/b", Some(&tag), 100), Ok(Fresh::Missing));
        assert!(b.list("p/", None).is_ok_and(|l| l.objects[0].etag == tag));
        assert!(b.head("p/a").is_ok() && b.delete("p/a").is_ok());
        // put, get (Got), get_not_modified, get (Missing), list, head, delete.
        assert_eq!(r.get(), [1, 2, 1, 1, 1, 1]);
        let sum = Requests::default();
        sum.add_all(&r);
        sum.add_all(&r);
        assert_eq!(sum.get(), [2, 4, 2, 2, 2, 2]);
        assert_eq!(m.count(crate::bucket::mem::Op::Get), 3);
    }
}
