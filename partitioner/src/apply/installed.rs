//! Opening and closing an installed disk (`partitioner open`/`close`, and
//! the installer when it is done): LUKS2 on partition 4, mapped as
//! `luks-UUID` like anaconda, and the volume group on it.

use std::io;
use std::path::{Path, PathBuf};

use crate::luks;
use crate::secret::Passphrase;

use super::error::{InstalledError, StepError};
use super::volumes::{activate_vg, deactivate_vg};

/// The LUKS partition and mapper name of an installed disk: partition 4
/// (the plan's layout), mapped as `luks-UUID` like anaconda.
fn installed_luks(disk: &Path) -> Result<(PathBuf, String), InstalledError> {
    let s = disk.to_string_lossy();
    let sep = if s.ends_with(|c: char| c.is_ascii_digit()) {
        "p"
    } else {
        ""
    };
    let part = PathBuf::from(format!("{s}{sep}4"));
    match luks::uuid(&part) {
        Some(uuid) => Ok((part, names::luks_mapper(&uuid))),
        None => Err(InstalledError::NoLuks {
            part,
            source: io::Error::new(io::ErrorKind::NotFound, "no LUKS2 header"),
        }),
    }
}

/// Opens an installed disk: LUKS2 (unless open) and the volume group.
pub fn open_installed(disk: &Path, pass: &Passphrase) -> Result<String, InstalledError> {
    let (part, name) = installed_luks(disk)?;
    if !luks::is_active(&name) {
        luks::open(&part, &name, pass.expose()).map_err(InstalledError::Unlock)?;
    }
    let mapper = Path::new("/dev/mapper").join(&name);
    activate_vg(names::VG, &mapper).map_err(|e| InstalledError::Failed {
        action: "open",
        cause: e.into(),
    })?;
    Ok(mapper.display().to_string())
}

/// Deactivates the volume group and closes LUKS2 of an installed disk.
pub fn close_installed(disk: &Path) -> Result<(), InstalledError> {
    let (_, name) = installed_luks(disk)?;
    if !luks::is_active(&name) {
        return Ok(());
    }
    let mapper = Path::new("/dev/mapper").join(&name);
    let fail = |cause: StepError| InstalledError::Failed {
        action: "close",
        cause,
    };
    deactivate_vg(names::VG, &mapper).map_err(|e| fail(e.into()))?;
    luks::close(&name).map_err(|e| fail(e.into()))
}
