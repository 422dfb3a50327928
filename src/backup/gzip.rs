//! One gzip member whose deflate stream mixes compressed blocks (the small text files,
//! the tar headers) with stored blocks (the videos, already compressed): a video then
//! costs a copy and a CRC, not a pass through the compressor, and INCLUDE_VIDEOS runs at
//! the speed of `tar cf` while the archive stays one valid `.tar.gz` (RFC 1951/1952) that
//! GNU tar, gzip and Python read as usual.
//!
//! Switching from compressed to stored blocks is a *full* flush of the compressor: it
//! ends the current block on a byte boundary and resets the compressor's dictionary, so
//! that no later compressed block can refer back across the stored bytes, which the
//! compressor never saw. A stored block is a 5-byte header (BFINAL=0, BTYPE=00, LEN,
//! NLEN) and up to 65,535 bytes; whole blocks go to the file with one `writev` per
//! batch, straight from the caller's buffer.

use std::io::{self, IoSlice, Write};

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// The largest stored block (LEN is 16 bits).
const MAX_STORED: usize = 65_535;
/// Blocks gathered in one `writev` (two iovecs each; IOV_MAX is 1024 on Linux).
const BATCH: usize = 64;

pub struct MixedGz<W: Write> {
    inner: W,
    comp: Compress,
    crc: Crc,
    /// The compressor's output, written out after each call.
    obuf: Vec<u8>,
    stored: bool,
    /// The start of a stored block smaller than MAX_STORED, waiting for more bytes.
    stage: Vec<u8>,
}

fn stored_header(len: usize) -> [u8; 5] {
    let n = len as u16;
    let [a, b] = n.to_le_bytes();
    let [c, d] = (!n).to_le_bytes();
    // BFINAL=0, BTYPE=00 and the padding to the byte boundary: one zero byte (the
    // stream is byte-aligned here: after a full flush or after another stored block).
    [0, a, b, c, d]
}

fn write_all_vectored(w: &mut impl Write, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl<W: Write> MixedGz<W> {
    /// Writes the gzip header (no name, the given mtime, OS Unix) and starts in
    /// compressed mode.
    pub fn new(mut inner: W, level: Compression, mtime: u32) -> io::Result<MixedGz<W>> {
        let m = mtime.to_le_bytes();
        inner.write_all(&[0x1f, 0x8b, 8, 0, m[0], m[1], m[2], m[3], 0, 3])?;
        Ok(MixedGz {
            inner,
            comp: Compress::new(level, false),
            crc: Crc::new(),
            obuf: Vec::with_capacity(64 * 1024),
            stored: false,
            stage: Vec::new(),
        })
    }

    /// Switches between compressed (`false`) and stored (`true`) blocks for what is
    /// written next.
    pub fn set_stored(&mut self, on: bool) -> io::Result<()> {
        if on == self.stored {
            return Ok(());
        }
        if on {
            self.deflate(&[], FlushCompress::Full)?;
        } else {
            self.emit_stage()?;
        }
        self.stored = on;
        Ok(())
    }

    fn deflate(&mut self, mut input: &[u8], flush: FlushCompress) -> io::Result<()> {
        loop {
            self.obuf.clear();
            let before = self.comp.total_in();
            let status = self
                .comp
                .compress_vec(input, &mut self.obuf, flush)
                .map_err(io::Error::other)?;
            let used = usize::try_from(self.comp.total_in() - before).unwrap_or(input.len());
            input = &input[used.min(input.len())..];
            let full = self.obuf.len() == self.obuf.capacity();
            if !self.obuf.is_empty() {
                self.inner.write_all(&self.obuf)?;
            }
            let done = match flush {
                FlushCompress::None => input.is_empty(),
                FlushCompress::Finish => status == Status::StreamEnd,
                _ => input.is_empty() && !full,
            };
            if done {
                return Ok(());
            }
            if used == 0 && self.obuf.is_empty() {
                return Err(io::Error::other("the compressor made no progress"));
            }
        }
    }

    /// Writes the staged bytes as one stored block.
    fn emit_stage(&mut self) -> io::Result<()> {
        if self.stage.is_empty() {
            return Ok(());
        }
        let h = stored_header(self.stage.len());
        let mut io = [IoSlice::new(&h), IoSlice::new(&self.stage)];
        write_all_vectored(&mut self.inner, &mut io)?;
        self.stage.clear();
        Ok(())
    }

    fn write_stored(&mut self, mut data: &[u8]) -> io::Result<()> {
        if !self.stage.is_empty() {
            let n = (MAX_STORED - self.stage.len()).min(data.len());
            self.stage.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.stage.len() < MAX_STORED {
                return Ok(());
            }
            self.emit_stage()?;
        }
        while data.len() >= MAX_STORED {
            let blocks = (data.len() / MAX_STORED).min(BATCH);
            let headers = [stored_header(MAX_STORED); BATCH];
            let mut io: Vec<IoSlice<'_>> = Vec::with_capacity(2 * blocks);
            for (i, h) in headers.iter().take(blocks).enumerate() {
                io.push(IoSlice::new(h));
                io.push(IoSlice::new(&data[i * MAX_STORED..(i + 1) * MAX_STORED]));
            }
            write_all_vectored(&mut self.inner, &mut io)?;
            data = &data[blocks * MAX_STORED..];
        }
        if !data.is_empty() {
            if self.stage.capacity() == 0 {
                self.stage.reserve_exact(MAX_STORED);
            }
            self.stage.extend_from_slice(data);
        }
        Ok(())
    }

    /// Ends the deflate stream (a final compressed block) and writes the gzip trailer;
    /// returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.set_stored(false)?;
        self.deflate(&[], FlushCompress::Finish)?;
        let crc = self.crc.sum().to_le_bytes();
        let size = self.crc.amount().to_le_bytes();
        self.inner.write_all(&crc)?;
        self.inner.write_all(&size)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for MixedGz<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.crc.update(buf);
        if self.stored {
            self.write_stored(buf)?;
        } else {
            self.deflate(buf, FlushCompress::None)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.stored {
            self.emit_stage()?;
        } else {
            self.deflate(&[], FlushCompress::Sync)?;
        }
        self.inner.flush()
    }
}

/// The archive file, with its write-back started every `WINDOW` bytes
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`): the disk writes while the next window is
/// copied, the final fsync finds little left to do, and a multi-GB INCLUDE_VIDEOS
/// archive does not sit in memory as dirty pages until then (a Pi Zero has 512 MiB for
/// everything).
pub struct Syncing {
    file: std::fs::File,
    written: u64,
    /// Where the bytes whose write-back is not started yet begin.
    started: u64,
}

const WINDOW: u64 = 8 * 1024 * 1024;

impl Syncing {
    pub fn new(file: std::fs::File) -> Syncing {
        Syncing {
            file,
            written: 0,
            started: 0,
        }
    }

    pub fn into_inner(self) -> std::fs::File {
        self.file
    }

    fn account(&mut self, n: usize) {
        self.written += n as u64;
        if self.written - self.started < WINDOW {
            return;
        }
        // Advice only: an error (a file system without it) changes nothing but speed.
        crate::fsutil::sys::start_writeback(&self.file, self.started, self.written - self.started);
        self.started = self.written;
    }
}

impl Write for Syncing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.account(n);
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = self.file.write_vectored(bufs)?;
        self.account(n);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn mixed_blocks_make_one_valid_gzip_member() {
        let text = b"configuration and headers, very compressible, ".repeat(3000);
        let video = noise(3 * MAX_STORED + 1234, 7);
        let mut gz = MixedGz::new(Vec::new(), Compression::default(), 1_700_000_000)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut expect = Vec::new();
        let steps: [(bool, &[u8]); 7] = [
            (false, &text),
            (true, &video[..10]),
            (true, &video[10..]),
            (false, &text[..5000]),
            (true, &video[..MAX_STORED]),
            (true, b""),
            (false, &text),
        ];
        for (stored, data) in steps {
            gz.set_stored(stored).unwrap_or_else(|e| panic!("{e}"));
            // Odd chunk sizes, as tar writes them.
            for c in data.chunks(4097) {
                gz.write_all(c).unwrap_or_else(|e| panic!("{e}"));
            }
            expect.extend_from_slice(data);
        }
        let out = gz.finish().unwrap_or_else(|e| panic!("{e}"));
        // The stored bytes cost 5 bytes per block, not compression.
        assert!(
            out.len() < expect.len() / 2 + 2 * video.len(),
            "{}",
            out.len()
        );
        let mut back = Vec::new();
        let mut d = flate2::read::GzDecoder::new(out.as_slice());
        d.read_to_end(&mut back).unwrap_or_else(|e| panic!("{e}"));
        assert!(back == expect, "round trip differs");
        // Nothing after the one member.
        assert!(d.into_inner().is_empty());
    }
}
