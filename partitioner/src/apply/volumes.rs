//! The encrypted volume and LVM on it: the `luks` step (LUKS2 through
//! libcryptsetup), the `lvm` step (the volume group, its thin pool, root
//! and swap), and (de)activating the volume group, through the `lvm` tool.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::luks;
use crate::plan::Plan;

use super::context::Context;
use super::error::StepError;
use super::tool::{ToolError, run_tool};

/// Step `luks`: LUKS2 on partition 4, one key slot for the passphrase.
pub(super) fn luks(cx: &mut Context<'_>) -> Result<(), StepError> {
    if !cx.disk.block {
        return Err(StepError::NotBlockDevice);
    }
    luks::format(&cx.luks_part, &cx.plan.luks, cx.pass.expose(), cx.pbkdf)?;
    Ok(())
}

/// Step `lvm`: the volume group on the open LUKS2 volume; a partial VG of an
/// interrupted run is removed first.
pub(super) fn lvm(cx: &mut Context<'_>) -> Result<(), StepError> {
    create_lvm(&cx.plan, &cx.mapper)
}

/// An `lvm` command without dmeventd monitoring (none in the installer).
pub(super) fn lvm_command(args: &[&str]) -> Command {
    sysutil::lvm_without_monitoring(Path::new("lvm"), args)
}

fn lvm_devices_arg(pv: &Path) -> String {
    pv.display().to_string()
}

fn canon(p: &str) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p))
}

/// Sets up LVM on `pv`; a partial VG of an interrupted run is removed first.
fn create_lvm(plan: &Plan, pv: &Path) -> Result<(), StepError> {
    let v = &plan.lvm;
    // Read-only scan of every disk: a VG of the same name elsewhere would
    // clash at boot; refuse rather than touch it.
    let pvs = run_tool(&mut lvm_command(&[
        "pvs",
        "--noheadings",
        "-o",
        "pv_name,vg_name",
    ]))?;
    let ours = canon(&pv.to_string_lossy());
    for line in pvs.lines() {
        let mut it = line.split_whitespace();
        if let (Some(dev), Some(vg)) = (it.next(), it.next())
            && vg == v.vg
            && canon(dev) != ours
        {
            return Err(StepError::VgElsewhere {
                device: dev.to_string(),
                vg: v.vg.clone(),
            });
        }
    }
    let dev = lvm_devices_arg(pv);
    let exists = pvs
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(v.vg.as_str()));
    if exists {
        run_tool(&mut lvm_command(&[
            "vgremove",
            "--devices",
            &dev,
            "-ff",
            "-y",
            &v.vg,
        ]))?;
    }
    run_tool(&mut lvm_command(&[
        "pvcreate",
        "--devices",
        &dev,
        "-ff",
        "-y",
        &dev,
    ]))?;
    run_tool(&mut lvm_command(&[
        "vgcreate",
        "--devices",
        &dev,
        &v.vg,
        &dev,
    ]))?;
    let pool = format!("{}b", v.thin_pool_bytes);
    run_tool(&mut lvm_command(&[
        "lvcreate",
        "--devices",
        &dev,
        "-y",
        "--type",
        "thin-pool",
        "-L",
        &pool,
        "-n",
        &v.thin_pool,
        &v.vg,
    ]))?;
    let root = format!("{}b", v.root_lv_bytes);
    let pool_path = format!("{}/{}", v.vg, v.thin_pool);
    run_tool(&mut lvm_command(&[
        "lvcreate",
        "--devices",
        &dev,
        "-y",
        "--type",
        "thin",
        "-V",
        &root,
        "-n",
        &v.root_lv,
        "--thinpool",
        &pool_path,
    ]))?;
    let swap = format!("{}b", v.swap_bytes);
    run_tool(&mut lvm_command(&[
        "lvcreate",
        "--devices",
        &dev,
        "-y",
        "-L",
        &swap,
        "-n",
        &v.swap_lv,
        &v.vg,
    ]))?;
    Ok(())
}

/// Activates volume group `vg` on `pv` (only that device is scanned).
pub(super) fn activate_vg(vg: &str, pv: &Path) -> Result<(), ToolError> {
    let dev = lvm_devices_arg(pv);
    run_tool(&mut lvm_command(&[
        "vgchange",
        "--devices",
        &dev,
        "-ay",
        vg,
    ]))
    .map(|_| ())
}

/// Deactivates volume group `vg` on `pv`.
pub(super) fn deactivate_vg(vg: &str, pv: &Path) -> Result<(), ToolError> {
    let dev = lvm_devices_arg(pv);
    run_tool(&mut lvm_command(&[
        "vgchange",
        "--devices",
        &dev,
        "-an",
        vg,
    ]))
    .map(|_| ())
}
