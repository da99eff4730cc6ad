//! The file-system steps: the ESP (FAT32, written in place by fatfs),
//! /boot and the root file system (ext4, mke2fs), and swap (mkswap).

use std::process::Command;

use crate::plan::{BOOT_LABEL, ESP_LABEL, Plan, ROOT_LABEL, Role};

use super::context::Context;
use super::device::{Slice, sync};
use super::error::StepError;
use super::tool::run_tool;

/// The FAT volume ID from the ESP's partition GUID (stable across reruns).
pub fn esp_volume_id(plan: &Plan) -> u32 {
    let b = plan.partition(Role::Esp).guid.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Step `esp`: FAT32 on the EFI system partition.
pub(super) fn esp(cx: &mut Context<'_>) -> Result<(), StepError> {
    let plan = &cx.plan;
    let d = &mut cx.disk;
    let p = plan.partition(Role::Esp);
    let lb = plan.logical_block();
    let start = p.first_lba * lb;
    let mut label = [b' '; 11];
    let l = ESP_LABEL.as_bytes();
    label[..l.len()].copy_from_slice(l);
    {
        let slice = Slice::new(&mut d.file, start, p.size_bytes).map_err(StepError::io(d.path))?;
        let opts = fatfs::FormatVolumeOptions::new()
            .fat_type(fatfs::FatType::Fat32)
            .bytes_per_sector(lb as u16)
            .volume_label(label)
            .volume_id(esp_volume_id(plan));
        fatfs::format_volume(slice, opts).map_err(StepError::Fat)?;
    }
    sync(&mut d.file).map_err(StepError::io(d.path))?;
    Ok(())
}

/// Step `boot`: ext4 on /boot (an image file gets it at the partition's
/// offset).
pub(super) fn boot(cx: &mut Context<'_>) -> Result<(), StepError> {
    let p = cx.plan.partition(Role::Boot);
    let mut mke2fs = Command::new("mke2fs");
    mke2fs
        .args(["-t", "ext4", "-F", "-q", "-L", BOOT_LABEL, "-U"])
        .arg(p.guid.to_string());
    if cx.disk.block {
        mke2fs.arg(&cx.boot_part);
    } else {
        mke2fs.arg(cx.disk.path).args([
            "-E".to_string(),
            format!("offset={}", p.first_lba * cx.plan.logical_block()),
            format!("{}k", p.size_bytes / 1024),
        ]);
    }
    run_tool(&mut mke2fs)?;
    Ok(())
}

/// Step `rootfs`: ext4 on the root volume.
pub(super) fn root_fs(cx: &mut Context<'_>) -> Result<(), StepError> {
    run_tool(
        Command::new("mke2fs")
            .args(["-t", "ext4", "-F", "-q", "-L", ROOT_LABEL])
            .arg(cx.lv_path(&cx.plan.lvm.root_lv)),
    )?;
    Ok(())
}

/// Step `swap`: swap on the swap volume.
pub(super) fn swap(cx: &mut Context<'_>) -> Result<(), StepError> {
    run_tool(
        Command::new("mkswap")
            .args(["-L", "swap"])
            .arg(cx.lv_path(&cx.plan.lvm.swap_lv)),
    )?;
    Ok(())
}
