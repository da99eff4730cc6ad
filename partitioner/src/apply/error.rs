//! Why an apply stopped, typed end to end: a refusal (the same [`Refusal`]
//! as at plan time), a step's failure with its cause and the disk's state,
//! or a mismatch with the interrupted run being resumed.
//!
//! Causes already shown in a message are not also its `source()`: anyhow's
//! `{:#}` (the CLI) would print them twice.

use std::io;
use std::path::{Path, PathBuf};

use crate::journal::JournalError;
use crate::luks::LuksError;
use crate::plan::InvalidPlan;
use crate::refuse::Refusal;

use super::step::{Step, describe_state};
use super::tool::ToolError;

const RERUN: &str = "Rerun the same command to finish the job.";
const RERUN_RESUMING: &str = "Rerun with the passphrase of the interrupted run, or with --restart to start over (erases the disk again).";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The plan handed in is not self-consistent; nothing was written.
    #[error("the plan is not valid: {0}\n{hint}", hint = RERUN_RESUMING)]
    InvalidPlan(InvalidPlan),
    #[error(transparent)]
    Io(#[from] sysutil::IoError),
    /// A step failed; `done` holds the journal indices of the steps done.
    #[error("step {} failed: {cause}\n{}\n{hint}", .step.name(), describe_state(.done), hint = RERUN)]
    Step {
        step: Step,
        cause: StepError,
        done: Vec<u32>,
    },
    /// Boxed: it is the largest and the rarest.
    #[error("{0}\n{hint}", hint = RERUN_RESUMING)]
    Resume(Box<ResumeError>),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl From<ResumeError> for ApplyError {
    fn from(e: ResumeError) -> Self {
        ApplyError::Resume(Box::new(e))
    }
}

/// The interrupted run on the disk cannot be resumed as asked.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("the journal's plan is not valid: {0}")]
    InvalidJournalPlan(InvalidPlan),
    /// The disk's journal records a different install than this run's plan
    /// (another layout, other LUKS2 settings): it is not adopted.
    #[error(
        "the disk holds an interrupted install of a different plan ({}); it is not resumed",
        .differences.join("; ")
    )]
    DifferentPlan { differences: Vec<String> },
    /// Its LUKS2 mapping, still open, does not close (`vg`: why its volume
    /// group did not deactivate first, if it did not).
    #[error("cannot close {} left open by the interrupted run: {close}{}", .mapper.display(), after(.vg))]
    LeftOpen {
        mapper: PathBuf,
        close: LuksError,
        vg: Option<ToolError>,
    },
    /// The LUKS2 volume it made does not open with this passphrase.
    #[error(
        "the LUKS2 volume on {device}, made by an earlier run of this plan, does not open with this passphrase\n{}",
        describe_state(.done)
    )]
    WrongPassphrase { device: String, done: Vec<u32> },
}

fn after(vg: &Option<ToolError>) -> String {
    vg.as_ref()
        .map(|m| format!(" (after: {m})"))
        .unwrap_or_default()
}

/// Why one step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Reading or writing the target.
    #[error("{source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("protective MBR: {0}")]
    Mbr(gpt::mbr::MBRError),
    #[error("GPT: {0}")]
    Gpt(gpt::GptError),
    #[error("type {guid}: {reason}")]
    PartitionType { guid: String, reason: String },
    #[error("writing the GPT: {0}")]
    GptWrite(gpt::GptError),
    #[error("re-reading the partition table: {0}")]
    Reread(io::Error),
    #[error("adding partition {number} to the kernel (BLKPG): {source}")]
    Blkpg { number: u32, source: io::Error },
    #[error("{} did not appear after writing the GPT", .0.display())]
    NoPartition(PathBuf),
    #[error("fatfs: {0}")]
    Fat(io::Error),
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    Luks(#[from] LuksError),
    #[error("LUKS needs a block device (use a loop device for image files)")]
    NotBlockDevice,
    /// Another disk's VG has our name: it would clash at boot.
    #[error(
        "another disk ({device}) already has a volume group named {vg}; disconnect it or remove that VG, then rerun"
    )]
    VgElsewhere { device: String, vg: String },
}

impl StepError {
    /// An I/O error on `path`.
    pub(super) fn io(path: &Path) -> impl FnOnce(io::Error) -> StepError {
        let path = path.to_path_buf();
        move |source| StepError::Io { path, source }
    }
}

/// Opening or closing an installed disk failed.
#[derive(Debug, thiserror::Error)]
pub enum InstalledError {
    #[error("finding a LUKS2 header on {}: {source}", .part.display())]
    NoLuks { part: PathBuf, source: io::Error },
    #[error("{0}\n{hint}", hint = RERUN_RESUMING)]
    Unlock(LuksError),
    /// `action` is "open" or "close".
    #[error("step {action} failed: {cause}\n\n{hint}", hint = RERUN)]
    Failed {
        action: &'static str,
        cause: StepError,
    },
}

pub(super) fn io_err(
    what: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> ApplyError + use<> {
    let f = sysutil::io_err(what, path);
    move |e| ApplyError::Io(f(e))
}

#[cfg(test)]
mod tests {
    use std::error::Error;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use super::*;

    #[test]
    fn messages_read_as_people_know_them() {
        let step = ApplyError::Step {
            step: Step::Luks,
            cause: StepError::NotBlockDevice,
            done: vec![0, 1, 2, 3],
        };
        assert_eq!(
            step.to_string(),
            format!(
                "step luks failed: LUKS needs a block device (use a loop device for image files)\n{}\nRerun the same command to finish the job.",
                describe_state(&[0, 1, 2, 3])
            )
        );
        let tool = StepError::Tool(ToolError::Failed {
            command: "lvm vgchange -ay qubes_dom0".into(),
            status: ExitStatus::from_raw(5 << 8),
            stderr: "no such VG".into(),
        });
        assert_eq!(
            tool.to_string(),
            "lvm vgchange -ay qubes_dom0 failed (exit status: 5): no such VG"
        );
        let wrong: ApplyError = ResumeError::WrongPassphrase {
            device: "/dev/vda4".into(),
            done: vec![0],
        }
        .into();
        assert_eq!(
            wrong.to_string(),
            format!(
                "the LUKS2 volume on /dev/vda4, made by an earlier run of this plan, does not open with this passphrase\n{}\nRerun with the passphrase of the interrupted run, or with --restart to start over (erases the disk again).",
                describe_state(&[0])
            )
        );
        let close = InstalledError::Failed {
            action: "close",
            cause: tool,
        };
        assert_eq!(
            close.to_string(),
            "step close failed: lvm vgchange -ay qubes_dom0 failed (exit status: 5): no such VG\n\nRerun the same command to finish the job."
        );
        // The cause is in the message, not also a source (the CLI prints
        // sources after the message).
        assert!(step.source().is_none() && wrong.source().is_none() && close.source().is_none());
    }
}
