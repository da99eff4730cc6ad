//! The checks before anything is written: the answers, the hardware gate
//! (over hcl-check's verdicts) and the partitioner's plan. A dry run is
//! these and nothing else.

use hcl_check::{Report, Status};
use partitioner::{DiskInfo, Plan, Refusal};

use super::error::InstallError;
use super::machine::MachineData;
use super::progress::Stage;
use super::run::Emitter;
use crate::answers::Answers;

/// The answers' first problem, if any (the front ends checked them; the
/// engine checks again).
pub fn check_answers(answers: &Answers) -> Result<(), InstallError> {
    match answers.problems().into_iter().next() {
        Some(p) => Err(InstallError::Answers(format!("{}: {}", p.field, p.message))),
        None => Ok(()),
    }
}

/// Fail verdicts block; warn and unknown verdicts need their id in `accepted`.
pub fn hardware_gate(report: &Report, accepted: &[String]) -> Result<(), InstallError> {
    let fails: Vec<String> = report
        .verdicts
        .iter()
        .filter(|v| v.status == Status::Fail)
        .map(|v| format!("{} ({})", v.requirement, v.reason))
        .collect();
    if !fails.is_empty() {
        return Err(InstallError::HardwareFails(fails.join("; ")));
    }
    let open: Vec<&str> = needs_consent(report)
        .into_iter()
        .filter(|id| !accepted.iter().any(|a| a == id))
        .collect();
    if !open.is_empty() {
        return Err(InstallError::NotAccepted(open.join(", ")));
    }
    Ok(())
}

/// Requirement ids that need consent (warn or unknown).
pub fn needs_consent(report: &Report) -> Vec<&'static str> {
    report
        .verdicts
        .iter()
        .filter(|v| matches!(v.status, Status::Warn | Status::Unknown))
        .map(|v| v.id.id())
        .collect()
}

/// The plan for the answers' disk.
pub fn plan(answers: &Answers, machine: &MachineData) -> Result<Plan, InstallError> {
    Ok(Plan::new(&machine.inventory, &answers.disk.device)?)
}

/// The hardware stage: the gate, then every verdict into the log.
pub fn hardware(
    out: &mut Emitter,
    answers: &Answers,
    machine: &MachineData,
) -> Result<(), InstallError> {
    out.emit(Stage::Hardware, 0, "checking requirements");
    hardware_gate(&machine.report, &answers.hardware.accept_warnings)?;
    for v in &machine.report.verdicts {
        out.log.line(format!(
            "  {} {}: {}",
            v.status.label(),
            v.requirement,
            v.measured
        ));
    }
    Ok(())
}

/// The plan stage: the plan into the log, and the disk it is for.
pub fn planning(
    out: &mut Emitter,
    answers: &Answers,
    machine: &MachineData,
) -> Result<(Plan, DiskInfo), InstallError> {
    out.emit(Stage::Plan, 0, format!("planning {}", answers.disk.device));
    let plan = plan(answers, machine)?;
    for l in plan.to_string().lines() {
        out.log.line(format!("  {l}"));
    }
    let disk = machine
        .inventory
        .disk(&answers.disk.device)
        .cloned()
        .ok_or_else(|| Refusal::NotFound {
            disk: answers.disk.device.clone(),
        })?;
    Ok((plan, disk))
}
