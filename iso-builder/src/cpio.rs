//! Deterministic cpio "newc" archives, the format the Linux kernel unpacks as
//! an initramfs.
//!
//! Written by hand: the crates that exist (`cpio`, `cpio-archive`) write
//! entries in the order they are given and take mtime, owner and inode numbers
//! from the caller or the host, so reproducibility would rest on every caller.
//! Here the archive is a sorted tree: entries are emitted in byte order of
//! their paths (parents always before children), every inode number is its
//! position, owners are root, and one mtime is applied to all entries. File
//! data is streamed from the host file at write time, so memory does not grow
//! with file size.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 6] = b"070701";
const TRAILER: &str = "TRAILER!!!";
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
/// newc stores sizes in 8 hex digits.
pub const MAX_FILE_SIZE: u64 = 0xFFFF_FFFF;

/// Errors while building or writing an archive.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    #[error("invalid archive path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("{path:?} is already in the archive as a {existing}; cannot add it again as a {new}")]
    Conflict {
        path: String,
        existing: &'static str,
        new: &'static str,
    },
    #[error("{path:?} is {size} bytes; a cpio newc entry holds at most {MAX_FILE_SIZE} bytes")]
    TooLarge { path: String, size: u64 },
    #[error("cannot read {host:?} for archive entry {path:?}: {source}")]
    Source {
        path: String,
        host: PathBuf,
        source: io::Error,
    },
    #[error("{host:?} changed size while being archived as {path:?} (expected {expected} bytes)")]
    SourceChanged {
        path: String,
        host: PathBuf,
        expected: u64,
    },
    #[error("writing the archive: {0}")]
    Write(#[from] io::Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Content {
    Dir,
    Bytes(Vec<u8>),
    HostFile(PathBuf),
    Symlink(String),
    CharDev { major: u32, minor: u32 },
    BlockDev { major: u32, minor: u32 },
}

impl Content {
    fn kind(&self) -> &'static str {
        match self {
            Content::Dir => "directory",
            Content::Bytes(_) | Content::HostFile(_) => "file",
            Content::Symlink(_) => "symlink",
            Content::CharDev { .. } => "character device",
            Content::BlockDev { .. } => "block device",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    perm: u32,
    content: Content,
}

/// A tree of entries that is written out in a canonical order.
#[derive(Debug, Clone, Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

fn normalize(path: &str) -> Result<String, CpioError> {
    let bad = |reason| CpioError::InvalidPath {
        path: path.to_string(),
        reason,
    };
    let trimmed = path.trim_start_matches('/').trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(bad("empty path"));
    }
    if trimmed.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    for comp in trimmed.split('/') {
        match comp {
            "" => return Err(bad("contains an empty component (\"//\")")),
            "." | ".." => return Err(bad("contains \".\" or \"..\"")),
            _ => {}
        }
    }
    if trimmed == TRAILER {
        return Err(bad("is the archive trailer name"));
    }
    Ok(trimmed.to_string())
}

impl Archive {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries, parents included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when `path` is already in the archive.
    pub fn contains(&self, path: &str) -> bool {
        normalize(path).is_ok_and(|p| self.entries.contains_key(&p))
    }

    fn insert(&mut self, path: &str, perm: u32, content: Content) -> Result<(), CpioError> {
        let path = normalize(path)?;
        // Create missing parents as 0755 directories.
        let mut idx = 0;
        while let Some(pos) = path[idx..].find('/') {
            let parent = &path[..idx + pos];
            match self.entries.get(parent) {
                None => {
                    self.entries.insert(
                        parent.to_string(),
                        Entry {
                            perm: 0o755,
                            content: Content::Dir,
                        },
                    );
                }
                Some(e) if e.content != Content::Dir => {
                    return Err(CpioError::Conflict {
                        path: parent.to_string(),
                        existing: e.content.kind(),
                        new: "directory",
                    });
                }
                Some(_) => {}
            }
            idx += pos + 1;
        }
        let entry = Entry {
            perm: perm & 0o7777,
            content,
        };
        match self.entries.get(&path) {
            Some(existing) if existing.content == Content::Dir && entry.content == Content::Dir => {
                self.entries.insert(path, entry);
                Ok(())
            }
            Some(existing) if existing.content.kind() != entry.content.kind() => {
                Err(CpioError::Conflict {
                    path,
                    existing: existing.content.kind(),
                    new: entry.content.kind(),
                })
            }
            _ => {
                self.entries.insert(path, entry);
                Ok(())
            }
        }
    }

    /// Adds a directory (and its parents).
    pub fn dir(&mut self, path: &str, perm: u32) -> Result<(), CpioError> {
        self.insert(path, perm, Content::Dir)
    }

    /// Adds a regular file with the given contents; a later call for the same
    /// path replaces it.
    pub fn file_bytes(
        &mut self,
        path: &str,
        data: impl Into<Vec<u8>>,
        perm: u32,
    ) -> Result<(), CpioError> {
        let data = data.into();
        if data.len() as u64 > MAX_FILE_SIZE {
            return Err(CpioError::TooLarge {
                path: path.to_string(),
                size: data.len() as u64,
            });
        }
        self.insert(path, perm, Content::Bytes(data))
    }

    /// Adds every directory (mode 0755) and file (0644) below the host
    /// directory `dir` at its path relative to `dir`, in sorted order.
    pub fn add_tree(&mut self, dir: &Path) -> Result<(), CpioError> {
        self.add_tree_below(dir, dir)
    }

    fn add_tree_below(&mut self, base: &Path, dir: &Path) -> Result<(), CpioError> {
        let rel = |p: &Path| {
            p.strip_prefix(base)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| CpioError::Source {
                path: rel(dir),
                host: dir.to_path_buf(),
                source,
            })?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                self.dir(&rel(&p), 0o755)?;
                self.add_tree_below(base, &p)?;
            } else {
                self.file_from_host(&rel(&p), &p, 0o644)?;
            }
        }
        Ok(())
    }

    /// Adds a regular file whose contents are read from `host` when the
    /// archive is written. The size limit is checked now.
    pub fn file_from_host(
        &mut self,
        path: &str,
        host: impl AsRef<Path>,
        perm: u32,
    ) -> Result<(), CpioError> {
        let host = host.as_ref().to_path_buf();
        let meta = std::fs::metadata(&host).map_err(|source| CpioError::Source {
            path: path.to_string(),
            host: host.clone(),
            source,
        })?;
        if meta.len() > MAX_FILE_SIZE {
            return Err(CpioError::TooLarge {
                path: path.to_string(),
                size: meta.len(),
            });
        }
        self.insert(path, perm, Content::HostFile(host))
    }

    /// Adds a symbolic link.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        if target.is_empty() || target.contains('\0') {
            return Err(CpioError::InvalidPath {
                path: path.to_string(),
                reason: "symlink target is empty or contains a NUL byte",
            });
        }
        self.insert(path, 0o777, Content::Symlink(target.to_string()))
    }

    /// Adds a character device node.
    pub fn char_dev(
        &mut self,
        path: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.insert(path, perm, Content::CharDev { major, minor })
    }

    /// Adds a block device node.
    pub fn block_dev(
        &mut self,
        path: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.insert(path, perm, Content::BlockDev { major, minor })
    }

    /// Writes the archive, every entry stamped with `mtime` (seconds since
    /// the epoch), and returns the number of bytes written.
    pub fn write_to<W: Write>(&self, out: W, mtime: u32) -> Result<u64, CpioError> {
        let mut w = CountingWriter { inner: out, n: 0 };
        for (i, (path, entry)) in self.entries.iter().enumerate() {
            let ino = i as u32 + 1;
            match &entry.content {
                Content::Dir => {
                    header(&mut w, path, ino, S_IFDIR | entry.perm, 2, mtime, 0, (0, 0))?;
                }
                Content::Bytes(data) => {
                    let size = data.len() as u32;
                    header(
                        &mut w,
                        path,
                        ino,
                        S_IFREG | entry.perm,
                        1,
                        mtime,
                        size,
                        (0, 0),
                    )?;
                    w.write_all(data)?;
                    pad(&mut w)?;
                }
                Content::HostFile(host) => {
                    let src = |source| CpioError::Source {
                        path: path.clone(),
                        host: host.clone(),
                        source,
                    };
                    let f = File::open(host).map_err(src)?;
                    let len = f.metadata().map_err(src)?.len();
                    if len > MAX_FILE_SIZE {
                        return Err(CpioError::TooLarge {
                            path: path.clone(),
                            size: len,
                        });
                    }
                    header(
                        &mut w,
                        path,
                        ino,
                        S_IFREG | entry.perm,
                        1,
                        mtime,
                        len as u32,
                        (0, 0),
                    )?;
                    let copied = io::copy(&mut f.take(len), &mut w).map_err(src)?;
                    if copied != len {
                        return Err(CpioError::SourceChanged {
                            path: path.clone(),
                            host: host.clone(),
                            expected: len,
                        });
                    }
                    pad(&mut w)?;
                }
                Content::Symlink(target) => {
                    let size = target.len() as u32;
                    header(&mut w, path, ino, S_IFLNK | 0o777, 1, mtime, size, (0, 0))?;
                    w.write_all(target.as_bytes())?;
                    pad(&mut w)?;
                }
                Content::CharDev { major, minor } => {
                    header(
                        &mut w,
                        path,
                        ino,
                        S_IFCHR | entry.perm,
                        1,
                        mtime,
                        0,
                        (*major, *minor),
                    )?;
                }
                Content::BlockDev { major, minor } => {
                    header(
                        &mut w,
                        path,
                        ino,
                        S_IFBLK | entry.perm,
                        1,
                        mtime,
                        0,
                        (*major, *minor),
                    )?;
                }
            }
        }
        header(&mut w, TRAILER, 0, 0, 1, 0, 0, (0, 0))?;
        w.flush()?;
        Ok(w.n)
    }
}

/// A writer that counts the bytes it passes on (cpio pads by it; the xz
/// encoder reports it).
pub(crate) struct CountingWriter<W> {
    pub(crate) inner: W,
    pub(crate) n: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn pad<W: Write>(w: &mut CountingWriter<W>) -> io::Result<()> {
    let rem = (w.n % 4) as usize;
    if rem != 0 {
        w.write_all(&[0u8; 4][..4 - rem])?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn header<W: Write>(
    w: &mut CountingWriter<W>,
    name: &str,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    size: u32,
    rdev: (u32, u32),
) -> io::Result<()> {
    let namesize = name.len() as u32 + 1;
    let fields = [
        ino, mode, 0, 0, nlink, mtime, size, 0, 0, rdev.0, rdev.1, namesize, 0,
    ];
    let mut buf = Vec::with_capacity(110 + name.len() + 4);
    buf.extend_from_slice(MAGIC);
    for f in fields {
        buf.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    buf.extend_from_slice(name.as_bytes());
    buf.push(0);
    w.write_all(&buf)?;
    pad(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(a: &Archive) -> Vec<u8> {
        let mut v = Vec::new();
        a.write_to(&mut v, 0).unwrap();
        v
    }

    #[test]
    fn parents_are_created_and_sorted_first() {
        let mut a = Archive::new();
        a.file_bytes("usr/bin/x", b"hi".to_vec(), 0o755).unwrap();
        a.file_bytes("a-b", b"".to_vec(), 0o644).unwrap();
        let names: Vec<_> = a.entries.keys().cloned().collect();
        assert_eq!(names, ["a-b", "usr", "usr/bin", "usr/bin/x"]);
    }

    #[test]
    fn order_of_insertion_does_not_matter() {
        let mut a = Archive::new();
        a.file_bytes("z", b"1".to_vec(), 0o644).unwrap();
        a.symlink("bin/sh", "busybox").unwrap();
        let mut b = Archive::new();
        b.symlink("bin/sh", "busybox").unwrap();
        b.file_bytes("z", b"1".to_vec(), 0o644).unwrap();
        assert_eq!(bytes(&a), bytes(&b));
    }

    #[test]
    fn alignment_and_trailer() {
        let mut a = Archive::new();
        a.file_bytes("abc", b"12345".to_vec(), 0o600).unwrap();
        let v = bytes(&a);
        assert_eq!(v.len() % 4, 0);
        assert!(v.starts_with(b"070701"));
        let tail = String::from_utf8_lossy(&v[v.len() - 16..]);
        assert!(tail.contains("TRAILER!!!"), "{tail}");
    }

    #[test]
    fn rejects_bad_paths() {
        let mut a = Archive::new();
        for p in ["", "/", "a/../b", "a//b", "./x", "TRAILER!!!", "a\0b"] {
            assert!(
                matches!(a.dir(p, 0o755), Err(CpioError::InvalidPath { .. })),
                "{p:?}"
            );
        }
    }

    #[test]
    fn rejects_file_under_file() {
        let mut a = Archive::new();
        a.file_bytes("a", b"x".to_vec(), 0o644).unwrap();
        let err = a.file_bytes("a/b", b"y".to_vec(), 0o644).unwrap_err();
        assert!(matches!(err, CpioError::Conflict { .. }), "{err}");
        let err = a.dir("a", 0o755).unwrap_err();
        assert!(matches!(err, CpioError::Conflict { .. }), "{err}");
    }

    #[test]
    fn missing_host_file_names_it() {
        let mut a = Archive::new();
        let err = a
            .file_from_host("x", "/nonexistent/bulkhead-file", 0o644)
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/bulkhead-file"), "{msg}");
    }
}
