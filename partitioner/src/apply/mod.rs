//! Applying a plan: the only code that writes to a disk.
//!
//! Steps run in order, each followed by an fsync and a record in the
//! on-disk [`journal`]: wipe old signatures, GPT, ESP, /boot, LUKS2, LVM,
//! root file system, swap. A rerun reads the journal, resumes the plan it
//! holds and skips what is recorded done; an interrupted step is redone from
//! its start (each step rewrites its whole structure). Opening LUKS and
//! activating the volume group are not steps: they are ensured whenever a
//! later step needs them, so a rerun after a reboot works too.
//!
//! [`run`] is the list of steps over one context (as systemd-repart's
//! phases); each step is one function, grouped by what it makes: disk.rs
//! (wipe, GPT), filesystems.rs (ESP, /boot, root, swap), volumes.rs (LUKS2,
//! LVM). Errors are typed in error.rs.

mod context;
mod device;
mod disk;
mod error;
mod filesystems;
mod installed;
mod step;
mod tool;
mod volumes;

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::journal::{self, Journal};
use crate::luks::{self, LuksError, Pbkdf};
use crate::plan::Plan;
use crate::refuse::Refusal;
use crate::secret::Passphrase;

use context::{Context, Target};
use error::io_err;

pub use device::{Slice, partition_path};
pub use error::{ApplyError, InstalledError, ResumeError, StepError};
pub use filesystems::esp_volume_id;
pub use installed::{close_installed, open_installed};
pub use step::{STEPS, Step, describe_state};
pub use tool::ToolError;

/// Progress reports for front ends.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub step: Step,
    pub index: usize,
    pub total: usize,
    pub event: Event,
}

#[derive(Debug, Clone, Serialize)]
pub enum Event {
    Started,
    Skipped,
    Done { seconds: f64 },
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Started => f.write_str("started"),
            Event::Skipped => f.write_str("already done"),
            Event::Done { seconds } => write!(f, "done in {seconds:.1} s"),
        }
    }
}

/// What apply changes besides the plan.
pub struct Options<'a> {
    pub pbkdf: Pbkdf,
    /// Ignore any journal on the disk and start over.
    pub restart: bool,
    /// Stop (cleanly) after this step: host tests without device-mapper.
    pub stop_after: Option<Step>,
    /// Close LVM and LUKS at the end (otherwise left open for the installer).
    pub close: bool,
    pub progress: &'a mut dyn FnMut(&Progress),
}

/// The result of a successful apply.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The plan that was applied (the journal's, when resuming).
    pub plan: Plan,
    pub resumed: bool,
    pub skipped: Vec<Step>,
    pub ran: Vec<Step>,
    pub mapper: String,
    pub root: String,
    pub swap: String,
    pub seconds: f64,
}

/// Applies `plan` to `target` (a block device, or an image file for tests).
/// The caller has run [`crate::recheck::check_apply`]; this checks the size.
pub fn run(
    plan: &Plan,
    target: &Path,
    pass: &Passphrase,
    opts: Options<'_>,
) -> Result<Outcome, ApplyError> {
    let started = Instant::now();
    plan.validate().map_err(ApplyError::InvalidPlan)?;
    let (size, journal) = look(target, plan, opts.restart)?;
    let block = device::is_block(target);
    let (plan, done, resumed) = match journal {
        Some(j) if j.plan.disk.size_bytes == size && j.plan.disk.serial == plan.disk.serial => {
            // The journal is on the disk, so anyone who wrote the disk
            // before could have planted it: it is resumed only when it is
            // valid and records this very install.
            j.plan.validate().map_err(ResumeError::InvalidJournalPlan)?;
            let differences = plan.layout_differences(&j.plan);
            if !differences.is_empty() {
                return Err(ResumeError::DifferentPlan { differences }.into());
            }
            (j.plan, j.done, true)
        }
        _ => (plan.clone(), Vec::new(), false),
    };
    if resumed && block {
        close_left_open(&plan)?;
    }
    let file = device::open_target(target)?;
    let disk = Target {
        path: target,
        file,
        size,
        block,
    };
    let mut cx = Context::new(plan, disk, done, pass, opts.pbkdf)?;
    let (mut skipped, mut ran) = (Vec::new(), Vec::new());
    for (i, step) in STEPS.into_iter().enumerate() {
        let progress = |event| Progress {
            step,
            index: i + 1,
            total: STEPS.len(),
            event,
        };
        if cx.is_done(step) {
            (opts.progress)(&progress(Event::Skipped));
            skipped.push(step);
        } else {
            (opts.progress)(&progress(Event::Started));
            let t = Instant::now();
            run_step(&mut cx, step)?;
            ran.push(step);
            let seconds = t.elapsed().as_secs_f64();
            (opts.progress)(&progress(Event::Done { seconds }));
        }
        if opts.stop_after == Some(step) {
            break;
        }
    }
    finish(&cx, opts.close)?;
    Ok(Outcome {
        mapper: cx.mapper.display().to_string(),
        root: cx.lv_path(&cx.plan.lvm.root_lv),
        swap: cx.lv_path(&cx.plan.lvm.swap_lv),
        plan: cx.plan,
        resumed,
        skipped,
        ran,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Read-only, before claiming the device: its size, which must be the
/// plan's, and the journal of an earlier run unless starting over.
fn look(target: &Path, plan: &Plan, restart: bool) -> Result<(u64, Option<Journal>), ApplyError> {
    let mut ro = File::open(target).map_err(io_err("opening", target))?;
    let size = ro
        .seek(SeekFrom::End(0))
        .map_err(io_err("sizing", target))?;
    if size != plan.disk.size_bytes {
        return Err(Refusal::Changed {
            disk: target.display().to_string(),
            differences: vec![format!(
                "size {size} bytes, planned {}",
                plan.disk.size_bytes
            )],
        }
        .into());
    }
    if restart {
        return Ok((size, None));
    }
    let journal = journal::read(&mut ro).map_err(io_err("reading the journal on", target))?;
    Ok((size, journal))
}

/// The interrupted run's own mappings: closed so the device can be claimed
/// exclusively; they are reopened when a step needs them.
fn close_left_open(plan: &Plan) -> Result<(), ApplyError> {
    let name = &plan.luks.mapper_name;
    if !luks::is_active(name) {
        return Ok(());
    }
    let mapper = Path::new("/dev/mapper").join(name);
    // The VG may not exist yet (killed during the LVM step).
    let vg = volumes::deactivate_vg(&plan.lvm.vg, &mapper).err();
    luks::close(name).map_err(|close| ResumeError::LeftOpen { mapper, close, vg })?;
    Ok(())
}

/// One step: what it needs opened, its body, then its record as done.
fn run_step(cx: &mut Context<'_>, step: Step) -> Result<(), ApplyError> {
    prepare(cx, step)?;
    let body = match step {
        Step::Wipe => disk::wipe(cx),
        Step::Gpt => disk::gpt(cx),
        Step::Esp => filesystems::esp(cx),
        Step::Boot => filesystems::boot(cx),
        Step::Luks => volumes::luks(cx),
        Step::Lvm => volumes::lvm(cx),
        Step::RootFs => filesystems::root_fs(cx),
        Step::Swap => filesystems::swap(cx),
    };
    body.map_err(|cause| cx.failed(step, cause))?;
    cx.record(step)
}

/// What a step needs before its body: the kernel's view of the partitions
/// (after a reboot, once the GPT is written), LUKS2 open, the VG active.
fn prepare(cx: &Context<'_>, step: Step) -> Result<(), ApplyError> {
    if cx.disk.block && step.index() > Step::Gpt.index() && !cx.luks_part.exists() {
        device::announce_partitions(&cx.disk.file, cx.disk.path, &cx.plan)
            .map_err(|cause| cx.failed(step, cause))?;
    }
    if step.inside_luks() {
        ensure_open(cx, step)?;
    }
    if step.on_lvm() {
        volumes::activate_vg(&cx.plan.lvm.vg, &cx.mapper).map_err(|e| cx.failed(step, e.into()))?;
    }
    Ok(())
}

/// Opens LUKS2 unless open. A passphrase that does not open the volume an
/// earlier run made is a resume mismatch, not a failure of `step`.
fn ensure_open(cx: &Context<'_>, step: Step) -> Result<(), ApplyError> {
    let name = &cx.plan.luks.mapper_name;
    if luks::is_active(name) {
        return Ok(());
    }
    luks::open(&cx.luks_part, name, cx.pass.expose()).map_err(|e| match e {
        LuksError::WrongPassphrase(device) => ResumeError::WrongPassphrase {
            device,
            done: cx.done.clone(),
        }
        .into(),
        e => cx.failed(step, e.into()),
    })
}

/// Once every step is done on a block device: LVM and LUKS2 closed
/// (`close`), or left open (reopened after a rerun) for the installer.
fn finish(cx: &Context<'_>, close: bool) -> Result<(), ApplyError> {
    if !(cx.disk.block && STEPS.into_iter().all(|s| cx.is_done(s))) {
        return Ok(());
    }
    let name = &cx.plan.luks.mapper_name;
    let failed = |cause: StepError| cx.failed(Step::Swap, cause);
    if close {
        if luks::is_active(name) {
            volumes::deactivate_vg(&cx.plan.lvm.vg, &cx.mapper).map_err(|e| failed(e.into()))?;
            luks::close(name).map_err(|e| failed(e.into()))?;
        }
    } else {
        ensure_open(cx, Step::Swap)?;
        volumes::activate_vg(&cx.plan.lvm.vg, &cx.mapper).map_err(|e| failed(e.into()))?;
    }
    Ok(())
}

/// Reads the journal of `target`, for `partitioner status`.
pub fn status(target: &Path) -> Result<Option<Journal>, ApplyError> {
    let mut f = File::open(target).map_err(io_err("opening", target))?;
    journal::read(&mut f).map_err(io_err("reading the journal on", target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_events_read_as_words() {
        assert_eq!(Event::Started.to_string(), "started");
        assert_eq!(Event::Skipped.to_string(), "already done");
        assert_eq!(Event::Done { seconds: 18.47 }.to_string(), "done in 18.5 s");
    }
}
