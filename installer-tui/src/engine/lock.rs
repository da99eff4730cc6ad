//! The lock that keeps two installers (the live system runs one on each
//! console) from installing at once.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where the lock that keeps two installers (the live system runs one on
/// each console) from installing at once lives.
pub const LOCK_PATH: &str = "/run/bulkhead-installer.lock";

/// Held while an install runs; released when dropped (or when the process
/// ends, however it ends).
#[derive(Debug)]
pub struct InstallLock(#[allow(dead_code)] fs::File);

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another installer (on another console) is already installing; follow it there, nothing was written here"
    )]
    Held,
    #[error("{what} {}: {error}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        error: io::Error,
    },
}

impl InstallLock {
    /// Takes the lock at `path`, or says that another installer holds it.
    pub fn acquire(path: &Path) -> Result<Self, LockError> {
        let io = |what| {
            let path = path.to_path_buf();
            move |error| LockError::Io { what, path, error }
        };
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io("opening the installer lock"))?;
        match f.try_lock() {
            Ok(()) => Ok(InstallLock(f)),
            Err(fs::TryLockError::WouldBlock) => Err(LockError::Held),
            Err(fs::TryLockError::Error(e)) => Err(io("locking")(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_installer_holds_the_lock() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let first = InstallLock::acquire(&p).unwrap();
        let e = InstallLock::acquire(&p).unwrap_err().to_string();
        assert!(e.contains("another installer"), "{e}");
        drop(first);
        InstallLock::acquire(&p).unwrap();
    }
}
