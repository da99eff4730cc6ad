//! The tree an image is mastered from: directories, regular files (from the
//! host or from memory) and symlinks, with names kept as bytes and entries
//! sorted by name, so the same tree always walks in the same order.
//!
//! Scanning a host directory keeps permission bits and hard links, and
//! normalizes everything that would make the image depend on who built it:
//! owners become 0:0 and timestamps are not read at all (the writer stamps
//! every entry with SOURCE_DATE_EPOCH). Sockets, FIFOs and device nodes are
//! refused with their path: an installer medium has no use for them.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Longest name Rock Ridge entries carry for us (Linux's NAME_MAX).
pub const MAX_NAME: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{path:?}: {reason}; rename it or leave it out of the tree")]
    BadName { path: String, reason: &'static str },
    #[error(
        "{path:?} is a {kind}; an image holds only directories, regular files and symlinks: remove it from the tree"
    )]
    SpecialFile { path: PathBuf, kind: &'static str },
    #[error("{path:?}: a {existing} is already there, cannot add a {new}")]
    Conflict {
        path: String,
        existing: &'static str,
        new: &'static str,
    },
    #[error(transparent)]
    Io(#[from] sysutil::IoError),
}

use sysutil::io_err;

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A host file, read while the image is written.
    Host(PathBuf),
    /// Bytes held in memory (loader images, configuration).
    Bytes(Arc<Vec<u8>>),
}

/// A regular file.
#[derive(Debug, Clone)]
pub struct File {
    pub source: Source,
    pub size: u64,
    /// Files sharing a link group are hard links: one copy of the data.
    pub link_group: Option<u64>,
}

/// What a node is.
#[derive(Debug, Clone)]
pub enum Kind {
    Dir(BTreeMap<Vec<u8>, Node>),
    File(File),
    Symlink(Vec<u8>),
}

/// One entry of the tree.
#[derive(Debug, Clone)]
pub struct Node {
    /// Permission bits (`0o7777` at most); the type comes from `kind`.
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub kind: Kind,
}

impl Node {
    pub fn dir(perm: u32) -> Self {
        Node {
            perm,
            uid: 0,
            gid: 0,
            kind: Kind::Dir(BTreeMap::new()),
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Dir(_) => "directory",
            Kind::File(_) => "file",
            Kind::Symlink(_) => "symlink",
        }
    }

    /// Mode with type bits, as POSIX and Rock Ridge's PX spell it.
    pub fn mode(&self) -> u32 {
        let t = match self.kind {
            Kind::Dir(_) => 0o040000,
            Kind::File(_) => 0o100000,
            Kind::Symlink(_) => 0o120000,
        };
        t | (self.perm & 0o7777)
    }
}

/// A whole tree; the root is a directory.
#[derive(Debug, Clone)]
pub struct Tree {
    pub root: Node,
    next_group: u64,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

fn check_name(name: &[u8], path: &str) -> Result<(), TreeError> {
    let reason = if name.is_empty() {
        "empty name"
    } else if name == b"." || name == b".." {
        "`.` and `..` cannot be names"
    } else if name.contains(&b'/') || name.contains(&0) {
        "a name cannot hold `/` or NUL"
    } else if name.len() > MAX_NAME {
        "name longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(TreeError::BadName {
        path: path.to_string(),
        reason,
    })
}

impl Tree {
    /// An empty tree: a root directory with mode 0755.
    pub fn new() -> Self {
        Tree {
            root: Node::dir(0o755),
            next_group: 0,
        }
    }

    /// Reads a host directory recursively (see the module doc for what is
    /// kept and what is normalized).
    pub fn from_dir(dir: &Path) -> Result<Self, TreeError> {
        let mut tree = Tree::new();
        let meta = fs::metadata(dir).map_err(io_err("reading", dir))?;
        if !meta.is_dir() {
            return Err(TreeError::Io(sysutil::IoError::new(
                "reading",
                dir.to_path_buf(),
                std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            )));
        }
        tree.root.perm = meta.mode() & 0o7777;
        let mut links = HashMap::new();
        let mut root = std::mem::replace(&mut tree.root, Node::dir(0));
        tree.scan(dir, &mut root, &mut links)?;
        tree.root = root;
        Ok(tree)
    }

    fn scan(
        &mut self,
        dir: &Path,
        node: &mut Node,
        links: &mut HashMap<(u64, u64), u64>,
    ) -> Result<(), TreeError> {
        let Kind::Dir(children) = &mut node.kind else {
            return Ok(());
        };
        for entry in fs::read_dir(dir).map_err(io_err("listing", dir))? {
            let entry = entry.map_err(io_err("listing", dir))?;
            let path = entry.path();
            let name = entry.file_name().as_bytes().to_vec();
            check_name(&name, &path.to_string_lossy())?;
            let meta = fs::symlink_metadata(&path).map_err(io_err("reading", &path))?;
            let ft = meta.file_type();
            let perm = meta.mode() & 0o7777;
            let kind = if ft.is_dir() {
                Kind::Dir(BTreeMap::new())
            } else if ft.is_file() {
                let link_group = if meta.nlink() > 1 {
                    let next = &mut self.next_group;
                    Some(*links.entry((meta.dev(), meta.ino())).or_insert_with(|| {
                        *next += 1;
                        *next
                    }))
                } else {
                    None
                };
                Kind::File(File {
                    source: Source::Host(path.clone()),
                    size: meta.len(),
                    link_group,
                })
            } else if ft.is_symlink() {
                let target = fs::read_link(&path).map_err(io_err("reading link", &path))?;
                Kind::Symlink(target.as_os_str().as_bytes().to_vec())
            } else {
                let kind = if ft.is_fifo() {
                    "FIFO"
                } else if ft.is_socket() {
                    "socket"
                } else if ft.is_block_device() {
                    "block device"
                } else if ft.is_char_device() {
                    "character device"
                } else {
                    "special file"
                };
                return Err(TreeError::SpecialFile { path, kind });
            };
            let mut child = Node {
                perm,
                uid: 0,
                gid: 0,
                kind,
            };
            if ft.is_dir() {
                self.scan(&path, &mut child, links)?;
            }
            children.insert(name, child);
        }
        Ok(())
    }

    /// The node at `path` (`a/b/c`, relative to the root), if any.
    pub fn get(&self, path: &str) -> Option<&Node> {
        let mut node = &self.root;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            match &node.kind {
                Kind::Dir(children) => node = children.get(part.as_bytes())?,
                _ => return None,
            }
        }
        Some(node)
    }

    /// Inserts `node` at `path`, creating missing parent directories (0755).
    /// Replaces an existing file or symlink; refuses to replace a directory
    /// or to descend through a non-directory.
    pub fn insert(&mut self, path: &str, node: Node) -> Result<(), TreeError> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let Some((last, parents)) = parts.split_last() else {
            return Err(TreeError::BadName {
                path: path.to_string(),
                reason: "empty path",
            });
        };
        let mut cur = &mut self.root;
        for (i, part) in parents.iter().enumerate() {
            check_name(part.as_bytes(), path)?;
            let Kind::Dir(children) = &mut cur.kind else {
                unreachable!("descent only through directories")
            };
            let next = children
                .entry(part.as_bytes().to_vec())
                .or_insert_with(|| Node::dir(0o755));
            if !matches!(next.kind, Kind::Dir(_)) {
                return Err(TreeError::Conflict {
                    path: parts[..=i].join("/"),
                    existing: next.kind_name(),
                    new: "directory",
                });
            }
            cur = next;
        }
        check_name(last.as_bytes(), path)?;
        let Kind::Dir(children) = &mut cur.kind else {
            unreachable!("descent only through directories")
        };
        if let Some(old) = children.get(last.as_bytes())
            && matches!(old.kind, Kind::Dir(_))
        {
            if matches!(node.kind, Kind::Dir(_)) {
                return Ok(());
            }
            return Err(TreeError::Conflict {
                path: path.to_string(),
                existing: "directory",
                new: node.kind_name(),
            });
        }
        children.insert(last.as_bytes().to_vec(), node);
        Ok(())
    }

    /// Adds a file whose bytes are held in memory.
    pub fn add_bytes(
        &mut self,
        path: &str,
        data: impl Into<Vec<u8>>,
        perm: u32,
    ) -> Result<(), TreeError> {
        let data = data.into();
        let size = data.len() as u64;
        self.insert(
            path,
            Node {
                perm,
                uid: 0,
                gid: 0,
                kind: Kind::File(File {
                    source: Source::Bytes(Arc::new(data)),
                    size,
                    link_group: None,
                }),
            },
        )
    }

    /// Adds a host file (its size is read now, its bytes when writing).
    pub fn add_host_file(&mut self, path: &str, host: &Path, perm: u32) -> Result<(), TreeError> {
        let meta = fs::metadata(host).map_err(io_err("reading", host))?;
        self.insert(
            path,
            Node {
                perm,
                uid: 0,
                gid: 0,
                kind: Kind::File(File {
                    source: Source::Host(host.to_path_buf()),
                    size: meta.len(),
                    link_group: None,
                }),
            },
        )
    }

    /// Adds a symlink.
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<(), TreeError> {
        self.insert(
            path,
            Node {
                perm: 0o777,
                uid: 0,
                gid: 0,
                kind: Kind::Symlink(target.as_bytes().to_vec()),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_creates_parents_and_refuses_conflicts() {
        let mut t = Tree::new();
        t.add_bytes("a/b/c.txt", b"x".to_vec(), 0o644).unwrap();
        assert!(matches!(t.get("a/b").unwrap().kind, Kind::Dir(_)));
        let err = t
            .add_bytes("a/b/c.txt/d", b"y".to_vec(), 0o644)
            .unwrap_err();
        assert!(err.to_string().contains("a/b/c.txt"), "{err}");
        let err = t.add_bytes("a/b", b"y".to_vec(), 0o644).unwrap_err();
        assert!(matches!(err, TreeError::Conflict { .. }));
    }

    #[test]
    fn scanning_refuses_fifos_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(st.success());
        let err = Tree::from_dir(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("pipe") && err.to_string().contains("FIFO"),
            "{err}"
        );
    }

    #[test]
    fn scanning_groups_hard_links() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), b"data").unwrap();
        fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        let t = Tree::from_dir(dir.path()).unwrap();
        let group = |n: &str| match &t.get(n).unwrap().kind {
            Kind::File(f) => f.link_group,
            _ => None,
        };
        assert!(group("a").is_some());
        assert_eq!(group("a"), group("b"));
    }
}
