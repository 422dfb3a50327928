//! Fuzzes the archive reader (src/backup/archive.rs, docs/format.md "Archive"): gzip,
//! tar, path safety and MANIFEST.sha256, as `verify` and `read_entries` run them on a
//! backup-*.tar.gz that may have been damaged or forged.
#![no_main]
#![allow(dead_code)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

#[path = "../../src/backup/archive.rs"]
mod archive;
/// archive.rs uses `crate::units::hex`.
#[path = "../../src/units.rs"]
mod units;
// What the reader asks the store (old-format top folders), with what the store needs.
#[path = "../../src/clock.rs"]
mod clock;
#[path = "../../src/fsutil/mod.rs"]
mod fsutil;
#[path = "../../src/store.rs"]
mod store;

/// An independent check of the gzip layer (RFC 1952), sharing only the inflater with
/// the reader: exactly one member, header flags honoured, CRC-32 and ISIZE right, and
/// nothing after the trailer.
fn one_valid_gzip_member(data: &[u8]) -> bool {
    if data.len() < 18 || data[..3] != [0x1f, 0x8b, 8] || data[3] & 0xe0 != 0 {
        return false;
    }
    let flags = data[3];
    let mut at = 10;
    if flags & 4 != 0 {
        // FEXTRA
        let Some(len) = data.get(at..at + 2) else {
            return false;
        };
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for bit in [8u8, 16] {
        // FNAME, FCOMMENT: zero-terminated
        if flags & bit != 0 {
            let Some(end) = data.get(at..).and_then(|r| r.iter().position(|&b| b == 0)) else {
                return false;
            };
            at += end + 1;
        }
    }
    if flags & 2 != 0 {
        at += 2; // FHCRC
    }
    let Some(body) = data.get(at..) else {
        return false;
    };
    let mut inflate = flate2::Decompress::new(false);
    let mut out = Vec::new();
    loop {
        out.reserve(64 * 1024);
        let (before_in, before_out) = (inflate.total_in(), inflate.total_out());
        let rest = &body[before_in as usize..];
        match inflate.decompress_vec(rest, &mut out, flate2::FlushDecompress::None) {
            Ok(flate2::Status::StreamEnd) => break,
            Err(_) => return false,
            // No progress with room to write: the deflate stream is cut short.
            Ok(_) if (inflate.total_in(), inflate.total_out()) == (before_in, before_out) => {
                return false;
            }
            Ok(_) => {}
        }
        if out.len() > 64 * 1024 * 1024 {
            return false;
        }
    }
    let trailer = &body[inflate.total_in() as usize..];
    trailer.len() == 8
        && trailer[..4] == crc32(&out).to_le_bytes()
        && trailer[4..] == (out.len() as u32).to_le_bytes()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn verified(data: &[u8], top: Option<&str>) -> bool {
    let r = archive::verify(data, top);
    // A report is ok exactly when it has no error, and then every file matched.
    assert_eq!(r.ok, r.error.is_none(), "{:?}", r.error);
    if r.ok {
        assert!(r.files.iter().all(|f| f.ok));
    }
    r.ok
}

/// Input that starts with this is a tar: the target sets the checksum of each of its
/// headers, compresses it and reads the .tar.gz, so that mutations reach the tar
/// entries and the manifest past the CRC and the header checksums. Any other input is
/// the .tar.gz itself (the gzip layer, the checksums as they are).
const TAR_MODE: &[u8] = b"TAR:";

fuzz_target!(|data: &[u8]| {
    match data.strip_prefix(TAR_MODE) {
        Some(tar) => {
            let mut tar = tar.to_vec();
            fix_checksums(&mut tar);
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, &tar).expect("in memory");
            check(&gz.finish().expect("in memory"));
        }
        None => check(data),
    }
});

/// Walks the headers of a tar (each followed by its data, rounded up to 512 bytes) and
/// writes the checksum each should have, as tar does; stops at a zero block or at a
/// size it cannot read.
fn fix_checksums(tar: &mut [u8]) {
    let mut at = 0usize;
    while let Some(h) = tar.get_mut(at..at + 512) {
        if h.iter().all(|&b| b == 0) {
            break;
        }
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let digits = std::str::from_utf8(&h[124..136]).unwrap_or("");
        let Ok(size) = u64::from_str_radix(digits.trim_matches([' ', '\0']), 8) else {
            break;
        };
        let Some(next) = usize::try_from(size.div_ceil(512) * 512)
            .ok()
            .and_then(|n| n.checked_add(at + 512))
        else {
            break;
        };
        at = next;
    }
}

fn check(data: &[u8]) {
    let ok = verified(data, None);

    // read_entries keeping every file: what it lists is safe to extract under the top.
    let keep = |_: &[u8]| true;
    match archive::read_entries(data, None, &keep) {
        Err(e) => {
            assert!(!e.is_empty());
            // Keeping every file in memory may pass the reader's bound; nothing else
            // may refuse what verify took.
            assert!(
                !ok || e.contains("is too large"),
                "verify ok but read_entries refused: {e}"
            );
        }
        Ok((top, seen)) => {
            assert!(!top.is_empty() && top != "." && top != ".." && !top.contains('/'));
            for e in &seen {
                assert!(!e.path.is_empty());
                let p = Path::new(OsStr::from_bytes(&e.path));
                assert!(
                    p.components().all(|c| matches!(c, Component::Normal(_))),
                    "unsafe path listed: {p:?}"
                );
                if e.is_dir {
                    continue;
                }
                let content = e.content.as_deref().unwrap_or_default();
                assert_eq!(content.len() as u64, e.size);
                assert_eq!(e.sha256, units::hex(&Sha256::digest(content)));
            }
            // Naming the top folder changes nothing; naming another one refuses.
            assert_eq!(verified(data, Some(&top)), ok);
            if ok {
                assert!(!verified(data, Some(&format!("{top}x"))));
            }
        }
    }

    if ok {
        // Only a whole, single, valid gzip member verifies: no damaged or missing byte,
        // nothing appended.
        assert!(
            one_valid_gzip_member(data),
            "verify ok on a bad gzip stream"
        );
        assert!(
            !verified(&data[..data.len() - 1], None),
            "truncated by 1 byte, still ok"
        );
        assert!(
            !verified(&data[..data.len() / 2], None),
            "half the archive, still ok"
        );
    }
}
