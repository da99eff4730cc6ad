//! Small file helpers shared by the writers.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::Error;

/// Writes `data` to `path` through a temporary file in the same directory,
/// fsyncs it and renames it into place, then fsyncs the directory: after a
/// crash the path holds either the old or the new content.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    let dir = path.parent().ok_or_else(|| {
        Error::io(
            "writing",
            path,
            std::io::Error::other("no parent directory"),
        )
    })?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating directory", dir, e))?;
    if std::fs::read(path).is_ok_and(|old| old == data) {
        return Ok(());
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io("creating", &tmp, e))?;
    f.write_all(data)
        .map_err(|e| Error::io("writing", &tmp, e))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("setting permissions of", &tmp, e))?;
    f.sync_all().map_err(|e| Error::io("syncing", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| Error::io("renaming into", path, e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Makes `path` a symlink to `target`, replacing whatever link was there
/// through a rename (never a moment without one); nothing is written when
/// it already points there.
pub fn symlink_atomic(path: &Path, target: &str) -> Result<(), Error> {
    if std::fs::read_link(path).is_ok_and(|t| t == Path::new(target)) {
        return Ok(());
    }
    let dir = path.parent().ok_or_else(|| {
        Error::io(
            "linking",
            path,
            std::io::Error::other("no parent directory"),
        )
    })?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating directory", dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::io("removing", &tmp, e));
        }
        _ => {}
    }
    std::os::unix::fs::symlink(target, &tmp).map_err(|e| Error::io("linking", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("renaming into", path, e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
