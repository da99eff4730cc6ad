//! One install's run context: the log, the progress emitter and the target,
//! and the one place a failure is logged and an opened target closed again.

use std::path::{Path, PathBuf};
use std::time::Instant;

use partitioner::{DiskInfo, Plan};

use super::error::{At, InstallError};
use super::files::{self, Entry};
use super::progress::{Event, LOG_PATH, Log, Stage, eta, overall_percent};
use super::target::Target;
use crate::secrets::Secrets;

/// Logs and reports progress: each event's message is also a log line.
pub struct Emitter<'a> {
    started: Instant,
    pub log: Log,
    events: &'a mut dyn FnMut(Event),
}

impl Emitter<'_> {
    /// Reports `within` percent of `stage` done.
    pub fn emit(&mut self, stage: Stage, within: u8, message: impl Into<String>) {
        let message = message.into();
        self.log.line(format!("[{stage:?}] {message}"));
        let percent = overall_percent(stage, within);
        (self.events)(Event {
            stage,
            percent,
            eta: eta(self.started.elapsed(), percent),
            message,
        });
    }

    /// Seconds since the install started.
    pub fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// An install in progress.
pub struct Run<'a> {
    pub out: Emitter<'a>,
    pub target: &'a mut dyn Target,
    /// Whether the target holds the disk open (mounted, LUKS and LVM
    /// active), so a failure must close it for a retry to find it free.
    opened: bool,
}

impl<'a> Run<'a> {
    pub fn new(target: &'a mut dyn Target, events: &'a mut dyn FnMut(Event)) -> Self {
        Run {
            out: Emitter {
                started: Instant::now(),
                log: Log::default(),
                events,
            },
            target,
            opened: false,
        }
    }

    /// The partition stage: the target partitions, formats and mounts.
    /// Returns the mounted root and the plan applied.
    pub fn partition(
        &mut self,
        plan: &Plan,
        disk: &DiskInfo,
        erase: &str,
        secrets: &Secrets,
    ) -> Result<(PathBuf, Plan), InstallError> {
        self.out
            .emit(Stage::Partition, 0, format!("erasing {}", disk.describe()));
        let out = &mut self.out;
        let prepared = self
            .target
            .prepare(plan, erase, secrets, &mut |within, line| {
                out.emit(Stage::Partition, within, line)
            })
            .at(Stage::Partition)?;
        self.opened = true;
        Ok(prepared)
    }

    /// The finish stage: the log written to the target, which is then
    /// unmounted and closed.
    pub fn finish(&mut self, root: &Path) -> Result<(), InstallError> {
        self.out
            .emit(Stage::Finish, 0, "writing the log, unmounting");
        let seconds = self.out.seconds();
        self.out
            .log
            .line(format!("install finished in {seconds:.0} s"));
        files::write_all(root, &[Entry::file(LOG_PATH, self.out.log.text(), 0o600)])
            .at(Stage::Finish)?;
        // A failure from here on must not close the target a second time.
        self.opened = false;
        self.target.finish(&mut self.out.log).at(Stage::Finish)?;
        self.out.emit(Stage::Finish, 100, "done");
        Ok(())
    }

    /// Runs `stages`. On a failure the error is logged and an opened target
    /// is unmounted and closed (best effort), and the log comes back with
    /// the error.
    pub fn guard(
        mut self,
        stages: impl FnOnce(&mut Self) -> Result<(), InstallError>,
    ) -> Result<Log, (InstallError, Log)> {
        match stages(&mut self) {
            Ok(()) => Ok(self.out.log),
            Err(e) => {
                let log = &mut self.out.log;
                log.line(format!("FAILED: {e}"));
                if self.opened
                    && let Err(m) = self.target.finish(log)
                {
                    log.line(format!("cleaning up after the failure: {m}"));
                }
                Err((e, self.out.log))
            }
        }
    }
}
