//! The whole-disk steps: erasing old signatures (and starting the journal),
//! and writing the GPT.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::Path;
use std::str::FromStr;

use crate::journal;
use crate::plan::{MIB, Plan};
use crate::signatures;

use super::context::Context;
use super::device::{self, sync, zero, zero_ends};
use super::error::StepError;

/// Step `wipe`: erases old signatures, then starts the journal (in the BIOS
/// boot partition's place, now clear).
pub(super) fn wipe(cx: &mut Context<'_>) -> Result<(), StepError> {
    let d = &mut cx.disk;
    erase_signatures(&mut d.file, d.size, &cx.plan).map_err(StepError::io(d.path))?;
    journal::init(&mut d.file, &cx.plan, &mut sync)?;
    Ok(())
}

/// Step `gpt`: the protective MBR and the GPT, then (on a block device) the
/// kernel's view of the new partitions.
pub(super) fn gpt(cx: &mut Context<'_>) -> Result<(), StepError> {
    write_gpt(&cx.disk.file, cx.disk.path, &cx.plan)?;
    if cx.disk.block {
        device::forget_partitions(&cx.disk.file);
        device::announce_partitions(&cx.disk.file, cx.disk.path, &cx.plan)?;
    }
    Ok(())
}

/// Zeroes both ends of the disk, of every old partition and of every
/// planned one, a found LUKS header whole, and the magic of any signature
/// still found; returns what it found, for people.
fn erase_signatures(f: &mut File, size: u64, plan: &Plan) -> io::Result<Vec<String>> {
    let lb = plan.logical_block();
    let mut report = Vec::new();
    let old = signatures::old_partitions(f, size)?;
    for s in signatures::probe(f, 0, size)? {
        report.push(format!("{} at byte {}", s.kind, s.offset));
    }
    for r in &old {
        for s in signatures::probe(f, r.start, r.len)? {
            report.push(format!("{} at byte {} (old partition)", s.kind, s.offset));
            if s.kind == "luks" {
                // The whole LUKS2 header area, key slots included.
                zero(f, r.start, r.len.min(16 * MIB))?;
            }
        }
        zero_ends(f, r.start, r.len)?;
    }
    zero_ends(f, 0, size)?;
    for p in &plan.partitions {
        let start = p.first_lba * lb;
        zero_ends(f, start, p.size_bytes)?;
    }
    // Whatever signature is still found (e.g. beyond the first MiB of a
    // region) gets its magic bytes zeroed, as wipefs does.
    let mut regions = vec![(0, size)];
    regions.extend(old.iter().map(|r| (r.start, r.len)));
    regions.extend(
        plan.partitions
            .iter()
            .map(|p| (p.first_lba * lb, p.size_bytes)),
    );
    for (start, len) in regions {
        for s in signatures::probe(f, start, len)? {
            zero(f, s.offset, s.len)?;
        }
    }
    sync(f)?;
    Ok(report)
}

fn write_gpt(f: &File, path: &Path, plan: &Plan) -> Result<(), StepError> {
    use gpt::disk::LogicalBlockSize;
    use gpt::mbr::ProtectiveMBR;
    use gpt::partition::Partition;
    use gpt::partition_types::Type;
    let lb = plan.logical_block();
    let lbs = if lb == 4096 {
        LogicalBlockSize::Lb4096
    } else {
        LogicalBlockSize::Lb512
    };
    let mut dev = f.try_clone().map_err(StepError::io(path))?;
    let lbas = plan.disk.size_bytes / lb;
    let mbr = ProtectiveMBR::with_lb_size(u32::try_from(lbas - 1).unwrap_or(u32::MAX));
    mbr.overwrite_lba0(&mut dev).map_err(StepError::Mbr)?;
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(lbs)
        .create_from_device(dev, Some(plan.disk_guid))
        .map_err(StepError::Gpt)?;
    let mut parts = BTreeMap::new();
    for p in &plan.partitions {
        let part_type_guid =
            Type::from_str(&p.type_guid).map_err(|reason| StepError::PartitionType {
                guid: p.type_guid.clone(),
                reason,
            })?;
        parts.insert(
            p.number,
            Partition {
                part_type_guid,
                part_guid: p.guid,
                first_lba: p.first_lba,
                last_lba: p.last_lba,
                flags: 0,
                name: p.name.clone(),
            },
        );
    }
    disk.update_partitions(parts).map_err(StepError::Gpt)?;
    let dev = disk.write().map_err(StepError::GptWrite)?;
    dev.sync_all().map_err(StepError::io(path))?;
    Ok(())
}
