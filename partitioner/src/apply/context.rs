//! What every step works on: the plan being applied, the claimed target,
//! where the steps' structures appear, and what the journal records done.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::journal;
use crate::luks::Pbkdf;
use crate::plan::{Plan, Role};
use crate::secret::Passphrase;

use super::device::{partition_path, sync};
use super::error::{ApplyError, StepError, io_err};
use super::step::Step;

/// The target, claimed for writing.
pub(super) struct Target<'a> {
    pub(super) path: &'a Path,
    pub(super) file: File,
    /// Its size in bytes, the plan's.
    pub(super) size: u64,
    /// A block device; otherwise an image file, which gets the steps up to
    /// /boot only (LUKS needs device-mapper).
    pub(super) block: bool,
}

pub(super) struct Context<'a> {
    /// The plan applied: the journal's when resuming.
    pub(super) plan: Plan,
    pub(super) disk: Target<'a>,
    pub(super) pass: &'a Passphrase,
    pub(super) pbkdf: Pbkdf,
    pub(super) boot_part: PathBuf,
    pub(super) luks_part: PathBuf,
    /// `/dev/mapper/luks-UUID` while LUKS2 is open.
    pub(super) mapper: PathBuf,
    /// Journal indices of the steps done.
    pub(super) done: Vec<u32>,
    plan_sha256: [u8; 32],
}

impl<'a> Context<'a> {
    pub(super) fn new(
        plan: Plan,
        disk: Target<'a>,
        done: Vec<u32>,
        pass: &'a Passphrase,
        pbkdf: Pbkdf,
    ) -> Result<Self, ApplyError> {
        Ok(Context {
            plan_sha256: journal::plan_sha256(&plan)?,
            boot_part: partition_path(disk.path, Role::Boot, &plan),
            luks_part: partition_path(disk.path, Role::Luks, &plan),
            mapper: Path::new("/dev/mapper").join(&plan.luks.mapper_name),
            plan,
            disk,
            pass,
            pbkdf,
            done,
        })
    }

    pub(super) fn is_done(&self, step: Step) -> bool {
        self.done.contains(&step.index())
    }

    /// `step` failed because of `cause`, with the disk's state as it is.
    pub(super) fn failed(&self, step: Step, cause: StepError) -> ApplyError {
        ApplyError::Step {
            step,
            cause,
            done: self.done.clone(),
        }
    }

    /// Records `step` done: an fsync of the target, then its journal record.
    pub(super) fn record(&mut self, step: Step) -> Result<(), ApplyError> {
        sync(&mut self.disk.file).map_err(io_err("syncing", self.disk.path))?;
        journal::mark(
            &mut self.disk.file,
            &self.plan_sha256,
            step.index(),
            step.name(),
            &mut sync,
        )?;
        self.done.push(step.index());
        Ok(())
    }

    /// The device path of logical volume `lv` of the plan's VG.
    pub(super) fn lv_path(&self, lv: &str) -> String {
        names::lv_mapper_path(&self.plan.lvm.vg, lv)
    }
}
