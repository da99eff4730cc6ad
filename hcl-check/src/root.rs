//! Where facts are read from: the live machine ("/") or a captured tree.
//!
//! Every read returns either the content or a human-readable reason, so a
//! missing or unreadable file becomes an "unknown" fact instead of an error.
//! A capture records the files it could not read in `unreadable.txt`; such
//! a path reads back as unreadable with the original reason, not as absent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Name of the list of unreadable paths inside a capture.
pub const UNREADABLE_LIST: &str = "unreadable.txt";

/// Why a fact could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// The file or directory does not exist (the machine lacks the feature,
    /// or the kernel does not expose it).
    Absent(String),
    /// It exists but could not be read (permissions, I/O error).
    Unreadable(String),
}

impl Missing {
    pub fn reason(&self) -> &str {
        match self {
            Missing::Absent(r) | Missing::Unreadable(r) => r,
        }
    }
    pub fn is_absent(&self) -> bool {
        matches!(self, Missing::Absent(_))
    }
}

/// A root directory that mirrors `/` (the live system or a capture).
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
    unreadable: BTreeMap<String, String>,
}

impl Root {
    /// Opens a root; a capture's list of unreadable files is loaded.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let mut unreadable = BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(dir.join(UNREADABLE_LIST)) {
            for line in text.lines() {
                if let Some((path, reason)) = line.split_once('\t') {
                    unreadable.insert(path.to_string(), reason.to_string());
                }
            }
        }
        Root { dir, unreadable }
    }

    /// The live system.
    pub fn live() -> Self {
        Root::new("/")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True when this root is the running system's `/`.
    pub fn is_live(&self) -> bool {
        self.dir == Path::new("/")
    }

    /// Host path of an absolute machine path such as `/proc/cpuinfo`.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.dir.join(abs.trim_start_matches('/'))
    }

    fn recorded(&self, abs: &str) -> Option<Missing> {
        self.unreadable
            .get(abs)
            .map(|r| Missing::Unreadable(format!("{abs}: {r} (recorded at capture)")))
    }

    fn classify(abs: &str, e: std::io::Error) -> Missing {
        match e.kind() {
            std::io::ErrorKind::NotFound => Missing::Absent(format!("{abs} does not exist")),
            std::io::ErrorKind::PermissionDenied => {
                Missing::Unreadable(format!("{abs}: permission denied (run as root)"))
            }
            _ => Missing::Unreadable(format!("{abs}: {e}")),
        }
    }

    pub fn read_bytes(&self, abs: &str) -> Result<Vec<u8>, Missing> {
        if let Some(m) = self.recorded(abs) {
            return Err(m);
        }
        std::fs::read(self.path(abs)).map_err(|e| Self::classify(abs, e))
    }

    pub fn read_string(&self, abs: &str) -> Result<String, Missing> {
        let bytes = self.read_bytes(abs)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A one-line sysfs attribute, trimmed.
    pub fn read_attr(&self, abs: &str) -> Result<String, Missing> {
        self.read_string(abs).map(|s| s.trim().to_string())
    }

    pub fn exists(&self, abs: &str) -> bool {
        self.path(abs).exists()
    }

    /// Sorted entry names of a directory.
    pub fn list(&self, abs: &str) -> Result<Vec<String>, Missing> {
        if let Some(m) = self.recorded(abs) {
            return Err(m);
        }
        let rd = std::fs::read_dir(self.path(abs)).map_err(|e| Self::classify(abs, e))?;
        // sysfs and procfs have no dot entries; skipping them lets recorded
        // captures keep empty directories in git with a `.keep` file.
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Target of a symbolic link, as text.
    pub fn link_target(&self, abs: &str) -> Option<String> {
        std::fs::read_link(self.path(abs))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }
}
