//! A Debian binary package pinned by version and content, and what can go
//! wrong getting one: shared by the cache ([`crate::inputs`]) and the
//! origins it fetches from ([`crate::origins`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One Debian binary package, pinned by version and content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebPin {
    /// Binary package name, e.g. `linux-image-6.1.0-50-amd64`.
    pub package: String,
    /// Exact Debian version, e.g. `6.1.176-1`.
    pub version: String,
    /// Debian architecture (`amd64` or `all`).
    pub arch: String,
    /// sha256 of the .deb file, lowercase hex.
    pub sha256: String,
    /// Size of the .deb file in bytes.
    pub size: u64,
}

impl DebPin {
    /// `package=version`, as apt takes it.
    pub fn apt_spec(&self) -> String {
        format!("{}:{}={}", self.package, self.arch, self.version)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(
        "{}: no longer served by the Debian archive nor by its snapshot at the lock's time (superseded versions are dropped at point releases and security updates); refresh the pins with `{refresh}`",
        gone.iter().map(|p| format!("{} {}", p.package, p.version)).collect::<Vec<_>>().join(", ")
    )]
    NotServed { gone: Vec<DebPin>, refresh: String },
    #[error("{package}: apt knows no such package; run `apt-get update` first, or check the name")]
    UnknownPackage { package: String },
    #[error(
        "{package} {version}: sha256 mismatch: pinned {expected}, downloaded {actual}; the file was not cached. A mirror serving altered files, or a wrong pin: do not build from it"
    )]
    HashMismatch {
        package: String,
        version: String,
        expected: String,
        actual: String,
    },
    #[error("{package} {version} is not in the cache {cache:?} and --offline forbids fetching it")]
    Offline {
        package: String,
        version: String,
        cache: PathBuf,
    },
    #[error("running {command}: {detail}")]
    Tool { command: String, detail: String },
    #[error(transparent)]
    Io(#[from] sysutil::IoError),
    #[error(transparent)]
    Run(#[from] sysutil::ToolError),
}
