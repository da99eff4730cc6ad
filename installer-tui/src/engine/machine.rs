//! The machine the installer sees: hcl-check's report and the
//! partitioner's inventory, live or from a recorded fixture directory.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use hcl_check::{ProbeError, Report};
use partitioner::Inventory;
use partitioner::discover::DiscoverError;

/// What hcl-check and the partitioner found.
#[derive(Debug, Clone)]
pub struct MachineData {
    pub report: Report,
    pub inventory: Inventory,
}

/// Why the machine could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("hardware probe: {0}")]
    Probe(ProbeError),
    #[error("disk discovery: {0}")]
    Disks(DiscoverError),
    #[error("hardware fixture {}: {error}", dir.display())]
    FixtureProbe { dir: PathBuf, error: ProbeError },
    #[error("reading {}: {error}", path.display())]
    FixtureRead { path: PathBuf, error: io::Error },
    #[error("disk fixture {}: {error}", dir.display())]
    FixtureDisks { dir: PathBuf, error: DiscoverError },
}

impl MachineData {
    /// From this machine.
    pub fn live() -> Result<Self, MachineError> {
        let report = hcl_check::Probe::default()
            .report()
            .map_err(MachineError::Probe)?;
        let inventory = partitioner::discover_system().map_err(MachineError::Disks)?;
        Ok(MachineData { report, inventory })
    }

    /// From a fixture: `DIR/hcl` is an hcl-check capture (with its
    /// `cpuid.txt`), `DIR/disks/root` a root for the partitioner's discovery
    /// and `DIR/disks/lsblk.json` its recorded `lsblk --json -O -b`.
    pub fn fixture(dir: &Path) -> Result<Self, MachineError> {
        let report = hcl_check::Probe::new(dir.join("hcl"))
            .report()
            .map_err(|error| MachineError::FixtureProbe {
                dir: dir.to_path_buf(),
                error,
            })?;
        let path = dir.join("disks/lsblk.json");
        let lsblk =
            fs::read_to_string(&path).map_err(|error| MachineError::FixtureRead { path, error })?;
        let inventory =
            partitioner::discover(&dir.join("disks/root"), &lsblk).map_err(|error| {
                MachineError::FixtureDisks {
                    dir: dir.to_path_buf(),
                    error,
                }
            })?;
        Ok(MachineData { report, inventory })
    }
}
