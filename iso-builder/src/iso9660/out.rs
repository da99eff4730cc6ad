//! The sequential output every writer writes through: a userspace buffer
//! for metadata, `copy_file_range(2)` (through `std::io::copy`) for file
//! data, and, when asked to, a sha256 fed with every byte as it is written.
//!
//! The embedded checksum ([`crate::checksum`]) is the sha256 of the image
//! with its field read as spaces. The primary descriptor is written with
//! the field blank, so the running sha256 is that checksum when the last
//! byte is out; [`Out::finish`] then patches the field, and no byte is read
//! back for it. (File data then goes through the buffer instead of
//! `copy_file_range`: hashing needs the bytes anyway.)
//!
//! The finished file's own sha256 (for the manifest and SHA256SUMS) cannot
//! be had while writing: it covers the field, which holds a digest of
//! everything after it. sha256 consumes 64-byte blocks in order, so the
//! state after the last whole block before the field is final; `finish`
//! keeps it, feeds it the file from there on, read back once, and returns
//! both digests.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::options::{BLOCK, IsoError, internal, io_err};
use crate::checksum::{self, Embedded};

const OUT_BUF: usize = 1 << 20;

/// Field's byte range in the image.
const FIELD: std::ops::Range<u64> =
    checksum::FIELD_OFFSET..checksum::FIELD_OFFSET + checksum::FIELD_LEN as u64;
/// Where the file's own sha256 resumes: the 64-byte block the field starts in.
const RESUME: u64 = checksum::FIELD_OFFSET / 64 * 64;

/// What hashing while writing gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// The record now in the primary descriptor.
    pub embedded: Embedded,
    /// sha256 of the finished file (the field filled in).
    pub sha256: String,
}

struct Hashing {
    sha: Sha256,
    /// The state at [`RESUME`], once the output got there.
    at_resume: Option<Sha256>,
}

pub(super) struct Out {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
    pos: u64,
    hashing: Option<Hashing>,
    /// Reused for file data read through the hash.
    scratch: Vec<u8>,
}

impl Out {
    /// Output to `file` (at `path`, for messages); with `hash`, every byte
    /// is hashed and [`Out::finish`] embeds the checksum.
    pub fn new(file: File, path: &Path, hash: bool) -> Self {
        Out {
            file,
            path: path.to_path_buf(),
            buf: Vec::with_capacity(OUT_BUF),
            pos: 0,
            hashing: hash.then(|| Hashing {
                sha: Sha256::new(),
                at_resume: None,
            }),
            scratch: Vec::new(),
        }
    }

    pub fn pos(&self) -> u64 {
        self.pos
    }

    fn flush(&mut self) -> Result<(), IsoError> {
        self.file
            .write_all(&self.buf)
            .map_err(io_err("writing", &self.path))?;
        self.buf.clear();
        Ok(())
    }

    /// Feeds `b`, about to be written at the current position, to the hash.
    fn hash(&mut self, b: &[u8]) -> Result<(), IsoError> {
        let Some(h) = &mut self.hashing else {
            return Ok(());
        };
        let (start, end) = (self.pos, self.pos + b.len() as u64);
        let (lo, hi) = (start.max(FIELD.start), end.min(FIELD.end));
        if lo < hi
            && !b[(lo - start) as usize..(hi - start) as usize]
                .iter()
                .all(|&c| c == b' ')
        {
            return Err(internal(
                "the checksum field was not blank when written".into(),
            ));
        }
        if h.at_resume.is_none() && (start..end).contains(&RESUME) {
            let (before, after) = b.split_at((RESUME - start) as usize);
            h.sha.update(before);
            h.at_resume = Some(h.sha.clone());
            h.sha.update(after);
        } else {
            h.sha.update(b);
        }
        Ok(())
    }

    pub fn put(&mut self, b: &[u8]) -> Result<(), IsoError> {
        self.hash(b)?;
        if self.buf.len() + b.len() > OUT_BUF {
            self.flush()?;
        }
        if b.len() >= OUT_BUF {
            self.file
                .write_all(b)
                .map_err(io_err("writing", &self.path))?;
        } else {
            self.buf.extend_from_slice(b);
        }
        self.pos += b.len() as u64;
        Ok(())
    }

    pub fn zeros(&mut self, mut n: u64) -> Result<(), IsoError> {
        const Z: [u8; 4096] = [0; 4096];
        while n > 0 {
            let k = n.min(Z.len() as u64);
            self.put(&Z[..k as usize])?;
            n -= k;
        }
        Ok(())
    }

    /// Zeros up to byte `end`.
    pub fn zeros_to(&mut self, end: u64) -> Result<(), IsoError> {
        if self.pos > end {
            return Err(internal(format!(
                "writer at byte {} is past byte {end}, where its structure ends",
                self.pos
            )));
        }
        self.zeros(end - self.pos)
    }

    /// Zeros up to the next block boundary.
    pub fn pad(&mut self) -> Result<(), IsoError> {
        let r = self.pos % BLOCK;
        if r != 0 {
            self.zeros(BLOCK - r)?;
        }
        Ok(())
    }

    pub fn expect(&self, lba: u64) -> Result<(), IsoError> {
        if self.pos != lba * BLOCK {
            return Err(internal(format!(
                "writer at byte {} but the layout says block {lba}",
                self.pos
            )));
        }
        Ok(())
    }

    pub fn expect_at(&self, byte: u64) -> Result<(), IsoError> {
        if self.pos != byte {
            return Err(internal(format!(
                "writer at byte {} but the layout says byte {byte}",
                self.pos
            )));
        }
        Ok(())
    }

    /// Copies `size` bytes of the host file `src` (which must still have
    /// that size).
    pub fn copy_file(&mut self, src: &Path, size: u64) -> Result<(), IsoError> {
        self.flush()?;
        let f = File::open(src).map_err(io_err("opening", src))?;
        let now = f.metadata().map_err(io_err("reading", src))?.len();
        if now != size {
            return Err(IsoError::Changed {
                path: src.to_path_buf(),
                detail: format!("{now} bytes now, {size} when the layout was made"),
            });
        }
        let n = if self.hashing.is_some() {
            self.copy_hashed(&f, src, size)?
        } else {
            let n =
                io::copy(&mut (&f).take(size), &mut self.file).map_err(io_err("copying", src))?;
            self.pos += n;
            n
        };
        if n != size {
            return Err(IsoError::Changed {
                path: src.to_path_buf(),
                detail: format!("read {n} of {size} bytes"),
            });
        }
        Ok(())
    }

    /// The data of `f` through the buffer and the hash; returns its length.
    fn copy_hashed(&mut self, f: &File, src: &Path, size: u64) -> Result<u64, IsoError> {
        let mut chunk = std::mem::take(&mut self.scratch);
        chunk.resize(OUT_BUF, 0);
        let mut reader = f.take(size);
        let mut n = 0u64;
        let res = loop {
            match reader.read(&mut chunk) {
                Ok(0) => break Ok(n),
                Ok(k) => {
                    if let Err(e) = self.put(&chunk[..k]) {
                        break Err(e);
                    }
                    n += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(io_err("copying", src)(e).into()),
            }
        };
        self.scratch = chunk;
        res
    }

    /// Flushes, embeds the checksum when hashing (returning the digests),
    /// and syncs the file.
    pub fn finish(mut self) -> Result<Option<Digests>, IsoError> {
        self.flush()?;
        let digests = match self.hashing.take() {
            Some(h) => Some(self.seal(h)?),
            None => None,
        };
        self.file
            .sync_all()
            .map_err(io_err("syncing", &self.path))?;
        Ok(digests)
    }

    /// Patches the field with the running digest, then the file's own
    /// sha256: the state at [`RESUME`] fed the file from there on.
    fn seal(&mut self, h: Hashing) -> Result<Digests, IsoError> {
        let embedded = Embedded {
            size: self.pos,
            sha256: hex::encode(h.sha.finalize()),
        };
        let mut sha = h
            .at_resume
            .ok_or_else(|| internal("the image ended before its checksum field".into()))?;
        self.file
            .write_all_at(&checksum::field(&embedded), FIELD.start)
            .map_err(io_err("writing", &self.path))?;
        let mut chunk = std::mem::take(&mut self.scratch);
        chunk.resize(OUT_BUF, 0);
        let mut at = RESUME;
        while at < self.pos {
            let want = chunk.len().min((self.pos - at) as usize);
            match self.file.read_at(&mut chunk[..want], at) {
                Ok(0) => {
                    return Err(IsoError::Changed {
                        path: self.path.clone(),
                        detail: format!("{at} bytes read back of {} written", self.pos),
                    });
                }
                Ok(k) => {
                    sha.update(&chunk[..k]);
                    at += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err("reading back", &self.path)(e).into()),
            }
        }
        Ok(Digests {
            embedded,
            sha256: hex::encode(sha.finalize()),
        })
    }
}
