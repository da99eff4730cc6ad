//! The install engine, shared by the TUI and unattended installs.
//!
//! [`install`] is a short list of stages over one run context (`run.rs`),
//! which owns the log, the progress emitter and the target, and closes an
//! opened target when a stage fails. The checks come first (`gate.rs`:
//! answers, hardware, plan); then, through the [`Target`] trait,
//! partitioning (the partitioner's `apply`, the only code that writes to a
//! disk), the payload, the system files, the bootloader, the first-boot
//! settings and the log, and unmount and close. After partitioning
//! everything runs on the mounted target root, so it is tested on a plain
//! directory; [`DiskTarget`] is the real target. [`dry_run`] is the checks
//! alone.

mod boot;
mod configure;
mod error;
mod files;
mod gate;
mod machine;
mod payload;
mod progress;
mod run;
mod target;
mod tool;

use std::path::Path;

use partitioner::Plan;

pub use boot::{BootFiles, boot_files, bootloader_commands, grub_cfg, initramfs_settings};
pub use configure::{Configuration, configure, firstboot_settings, machine_id};
pub use error::{InstallError, StageError};
pub use files::{Entry, write_all};
pub use gate::{hardware_gate, needs_consent};
pub use machine::{MachineData, MachineError};
pub use payload::{Payload, TemplateInstall, copy_payload, install_template};
pub use progress::{Event, LOG_PATH, Log, STAGES, Stage, eta, overall_percent};
pub use target::{DiskTarget, Target, TargetFacts, serial_console};

use crate::answers::Answers;
use crate::secrets::Secrets;
use run::Run;

/// Runs one install. `events` receives progress; nothing is written before
/// the hardware gate and the plan succeeded. A failure after partitioning
/// still unmounts and closes (best effort), so a retry finds the disk free.
pub fn install(
    answers: &Answers,
    secrets: &Secrets,
    machine: &MachineData,
    payload: &Payload,
    template: Option<&Path>,
    target: &mut dyn Target,
    events: &mut dyn FnMut(Event),
) -> Result<Log, (InstallError, Log)> {
    Run::new(target, events).guard(|run| {
        gate::check_answers(answers)?;
        gate::hardware(&mut run.out, answers, machine)?;
        let (plan, disk) = gate::planning(&mut run.out, answers, machine)?;
        let (root, plan) = run.partition(&plan, &disk, &answers.disk.erase, secrets)?;
        let pool = answers.firstboot_settings(false).pool;
        let template = payload::stage(
            &mut run.out,
            &mut *run.target,
            &root,
            payload,
            template,
            &answers.user,
            &pool,
        )?;
        let facts = TargetFacts::of(&plan);
        configure::stage(&mut run.out, &root, answers, secrets, &facts)?;
        boot::stage(run, &root, &plan, &disk, &facts, &answers.system)?;
        configure::handover(&mut run.out, &root, answers, &disk, template)?;
        run.finish(&root)
    })
}

/// A dry run: the hardware gate and the plan, exactly as an install makes
/// them; nothing is opened for writing.
pub fn dry_run(answers: &Answers, machine: &MachineData) -> Result<Plan, InstallError> {
    gate::hardware_gate(&machine.report, &answers.hardware.accept_warnings)?;
    gate::plan(answers, machine)
}
