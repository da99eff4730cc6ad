//! Why an install stopped: [`InstallError`] names the stage, and
//! [`StageError`] keeps what failed in it typed (a file and its path, a tool
//! and its stderr, the partitioner's own errors), so a front end can tell a
//! [`Refusal`] at apply time from any other failure. Each message is whole:
//! no error here also hands its cause out as `source()`.

use std::io;
use std::path::{Path, PathBuf};

use partitioner::Refusal;
use partitioner::apply::ApplyError;
use partitioner::discover::DiscoverError;

use super::progress::Stage;

/// Why an install stopped. Each names the stage; nothing after it ran.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(
        "hardware check: {0}\nBulkhead cannot run on this machine; see `hcl-check` for details."
    )]
    HardwareFails(String),
    #[error(
        "hardware check: warnings not accepted: {0}\nAccept them (hardware.accept_warnings in the answer file, or on the hardware screen) or use other hardware."
    )]
    NotAccepted(String),
    #[error("planning: {0}")]
    Refused(Refusal),
    #[error("the answers are not valid: {0}")]
    Answers(String),
    #[error("{stage:?}: {error}")]
    Stage { stage: Stage, error: StageError },
}

impl InstallError {
    pub fn stage(&self) -> Stage {
        match self {
            InstallError::HardwareFails(_) | InstallError::NotAccepted(_) => Stage::Hardware,
            InstallError::Refused(_) | InstallError::Answers(_) => Stage::Plan,
            InstallError::Stage { stage, .. } => *stage,
        }
    }

    /// The disk refusal, whether the plan made it or the target's check
    /// against a fresh discovery just before the first write.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            InstallError::Refused(r)
            | InstallError::Stage {
                error: StageError::Refusal(r),
                ..
            } => Some(r),
            _ => None,
        }
    }
}

impl From<Refusal> for InstallError {
    fn from(r: Refusal) -> Self {
        InstallError::Refused(r)
    }
}

/// A failed tool says what it was doing and, in its own words, why; one
/// that could not start names its command.
fn tool_message(what: &str, error: &sysutil::ToolError) -> String {
    match error {
        sysutil::ToolError::Spawn { command, cause } => format!("running {command}: {cause}"),
        sysutil::ToolError::Failed { stderr, .. } => format!("{what}: {}", stderr.trim()),
    }
}

/// What failed within a stage.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A file operation (`what`: "writing", "creating", ...) on a path.
    #[error(transparent)]
    Io(#[from] sysutil::IoError),
    /// A tool that could not be started or that failed; `what` says what
    /// it was doing.
    #[error("{}", tool_message(what, error))]
    Tool {
        what: String,
        error: sysutil::ToolError,
    },
    /// Partitioning (boxed: the partitioner's error is large).
    #[error(transparent)]
    Apply(Box<ApplyError>),
    /// Closing the installed disk afterwards (boxed: it is large and rare).
    #[error(transparent)]
    Close(Box<partitioner::apply::InstalledError>),
    /// The disk, checked again just before the first write, was refused.
    #[error(transparent)]
    Refusal(#[from] Refusal),
    /// The fresh discovery that check runs on.
    #[error(transparent)]
    Discover(#[from] DiscoverError),
    /// The first-boot settings could not be written as TOML.
    #[error(transparent)]
    Serialize(#[from] toml::ser::Error),
    /// The payload lacks a file the installed system needs.
    #[error("the payload has no {0}; the medium is incomplete")]
    Incomplete(&'static str),
    /// `unsquashfs -s` did not say how many inodes the image holds.
    #[error("unsquashfs -s {} printed no inode count", .0.display())]
    NoInodeCount(PathBuf),
    #[error("time zone {zone:?} is not in the installed system's {}; choose another", dir.display())]
    NoTimeZone { zone: String, dir: PathBuf },
    #[error("user {0:?} already exists in the installed system; choose another name")]
    UserExists(String),
    /// The qubes' thin pool or a volume in it (firstboot's LVM storage;
    /// boxed: firstboot's error is large).
    #[error("the template's volume: {0}")]
    Volume(Box<firstboot::Error>),
    /// The medium carries the template but not the qubes' boot kit beside it.
    #[error("the medium has no boot kit for the qubes in {} (a kernel release directory with vmlinuz and initramfs); it is incomplete: rebuild it with `cargo xtask iso`", .0.display())]
    NoBootKit(PathBuf),
}

impl StageError {
    /// An I/O error with what was being done and the path.
    pub fn io(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StageError + use<> {
        let f = sysutil::io_err(what, path);
        move |e| StageError::Io(f(e))
    }
}

impl From<firstboot::Error> for StageError {
    fn from(e: firstboot::Error) -> Self {
        StageError::Volume(Box::new(e))
    }
}

impl From<partitioner::apply::InstalledError> for StageError {
    fn from(e: partitioner::apply::InstalledError) -> Self {
        StageError::Close(Box::new(e))
    }
}

/// A refusal inside the partitioner's error is lifted out, so it reaches
/// the front ends as the same [`Refusal`] the plan would have given.
impl From<ApplyError> for StageError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Refused(r) => StageError::Refusal(r),
            e => StageError::Apply(Box::new(e)),
        }
    }
}

/// Names the stage a [`StageError`] happened in.
pub(crate) trait At<T> {
    fn at(self, stage: Stage) -> Result<T, InstallError>;
}

impl<T, E: Into<StageError>> At<T> for Result<T, E> {
    fn at(self, stage: Stage) -> Result<T, InstallError> {
        self.map_err(|e| InstallError::Stage {
            stage,
            error: e.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_at_apply_time_is_the_refusal_the_plan_gives() {
        let r = Refusal::ReadOnly {
            disk: "/dev/sda".into(),
        };
        let at_plan = InstallError::from(r.clone());
        let applied: Result<(), ApplyError> = Err(ApplyError::Refused(r.clone()));
        let at_apply = applied.at(Stage::Partition).unwrap_err();
        assert_eq!(at_plan.refusal(), Some(&r));
        assert_eq!(at_apply.refusal(), Some(&r));
        assert_eq!(at_apply.stage(), Stage::Partition);
        assert_eq!(at_apply.to_string(), format!("Partition: {r}"));
        assert_eq!(at_plan.to_string(), format!("planning: {r}"));
    }

    #[test]
    fn causes_are_printed_once() {
        use std::error::Error;
        let e = StageError::io("writing", Path::new("/t/etc/fstab"))(io::Error::other("disk full"));
        assert_eq!(e.to_string(), "writing /t/etc/fstab: disk full");
        assert!(e.source().is_none());
        let e: Result<(), _> = Err(e);
        let e = e.at(Stage::Configure).unwrap_err();
        assert_eq!(e.to_string(), "Configure: writing /t/etc/fstab: disk full");
        assert!(e.source().is_none());
        let r = InstallError::from(Refusal::EmptyPassphrase);
        assert!(r.source().is_none());
    }
}
