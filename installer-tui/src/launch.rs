//! The launch sequence both front ends run: a dry run, or an install under
//! the installer lock with the log saved when it fails.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use partitioner::Plan;

use crate::answers::Answers;
use crate::engine::{self, Event, InstallError, Log, MachineData, Payload, Stage, Target};
use crate::secrets::Secrets;

/// Where the lock that keeps two installers (the live system runs one on
/// each console) from installing at once lives.
pub const LOCK_PATH: &str = "/run/bulkhead-installer.lock";

/// Where a failed install's log is saved.
pub fn log_path() -> PathBuf {
    std::env::temp_dir().join("bulkhead-install.log")
}

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

/// A front end's own failure while the lock is held (asking for the
/// secrets).
pub type FrontEndError = Box<dyn std::error::Error + Send + Sync>;

/// What [`launch`] does.
pub enum Mode<'a> {
    /// The hardware gate and the plan; the plan's lines go out as events.
    DryRun,
    Install(Install<'a>),
}

/// An install and what it needs.
pub struct Install<'a> {
    pub secrets: Box<dyn FnOnce() -> Result<Secrets, FrontEndError> + 'a>,
    pub payload: &'a Payload,
    pub template: Option<&'a Path>,
    pub target: &'a mut dyn Target,
    /// The installer lock.
    pub lock: &'a Path,
    /// Where the log is saved if the install fails.
    pub log: &'a Path,
}

/// What a launch did.
#[derive(Debug)]
pub enum Outcome {
    Planned(Box<Plan>),
    Installed(Log),
}

/// Why a launch stopped.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The dry run's checks; nothing was opened.
    #[error(transparent)]
    Checks(InstallError),
    #[error(transparent)]
    Locked(#[from] LockError),
    /// The front end could not give the secrets; nothing was written.
    #[error(transparent)]
    Secrets(FrontEndError),
    #[error("{error}\nThe log is in {saved}")]
    Install {
        error: InstallError,
        saved: SavedLog,
    },
}

impl LaunchError {
    /// The stage to name on the error screen and what failed there (the
    /// screen shows the log's path itself).
    pub fn for_screen(&self) -> (Stage, String) {
        match self {
            LaunchError::Checks(e) | LaunchError::Install { error: e, .. } => {
                (e.stage(), e.to_string())
            }
            LaunchError::Locked(e) => (Stage::Hardware, e.to_string()),
            LaunchError::Secrets(e) => (Stage::Hardware, e.to_string()),
        }
    }

    /// What the TUI's error screen takes: [`Self::for_screen`] and the
    /// typed refusal, if the disk was refused.
    pub fn failure(&self) -> crate::app::Failure {
        let (stage, message) = self.for_screen();
        let refusal = match self {
            LaunchError::Checks(e) | LaunchError::Install { error: e, .. } => e.refusal().cloned(),
            _ => None,
        };
        crate::app::Failure {
            stage,
            message,
            refusal,
        }
    }
}

/// Where a failed install's log went.
#[derive(Debug)]
pub enum SavedLog {
    At(PathBuf),
    NotSaved(io::Error),
}

impl std::fmt::Display for SavedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SavedLog::At(p) => write!(f, "{}", p.display()),
            SavedLog::NotSaved(e) => write!(f, "(not saved: {e})"),
        }
    }
}

/// Runs `mode` for `answers` on `machine`. An install takes the lock, then
/// asks for the secrets, then runs the engine; `events` receives progress.
pub fn launch(
    answers: &Answers,
    machine: &MachineData,
    mode: Mode<'_>,
    events: &mut dyn FnMut(Event),
) -> Result<Outcome, LaunchError> {
    let i = match mode {
        Mode::DryRun => {
            let plan = engine::dry_run(answers, machine).map_err(LaunchError::Checks)?;
            for l in plan.to_string().lines() {
                events(Event {
                    stage: Stage::Plan,
                    percent: 0,
                    eta: None,
                    message: format!("dry run: {l}"),
                });
            }
            return Ok(Outcome::Planned(Box::new(plan)));
        }
        Mode::Install(i) => i,
    };
    let _lock = InstallLock::acquire(i.lock)?;
    let secrets = (i.secrets)().map_err(LaunchError::Secrets)?;
    engine::install(
        answers, &secrets, machine, i.payload, i.template, i.target, events,
    )
    .map(Outcome::Installed)
    .map_err(|(error, log)| LaunchError::Install {
        error,
        saved: match fs::write(i.log, log.text()) {
            Ok(()) => SavedLog::At(i.log.to_path_buf()),
            Err(e) => SavedLog::NotSaved(e),
        },
    })
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
