//! Every reason to refuse a target disk, checked before anything is written
//! (at plan time, and again at apply time against a fresh discovery).

use crate::discover::{DiskInfo, Inventory, human_size};
use crate::plan::{DiskIdentity, Plan};

/// Why nothing was written. Each message names the disk and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{disk} not found among this machine's disks; run `partitioner list` to see them")]
    NotFound { disk: String },
    #[error(
        "{disk} is a partition or a mapped device, not a whole disk; name the disk itself (see `partitioner list`)"
    )]
    NotWholeDisk { disk: String },
    #[error(
        "{disk} is too small: {} ({size} bytes), at least {} is needed; choose a bigger disk",
        human_size(*size), human_size(*min)
    )]
    TooSmall { disk: String, size: u64, min: u64 },
    #[error(
        "{disk} is the live medium this installer runs from ({why}); install onto another disk"
    )]
    LiveMedium { disk: String, why: String },
    #[error("{disk} is in use ({}); unmount it, swapoff, close its LUKS/LVM/RAID devices, or choose another disk", details.join("; "))]
    InUse { disk: String, details: Vec<String> },
    #[error("{disk} is read-only; check the disk's write-protect switch or choose another disk")]
    ReadOnly { disk: String },
    #[error("{disk} changed since the plan was made: {}; make a new plan", differences.join(", "))]
    Changed {
        disk: String,
        differences: Vec<String>,
    },
    #[error(
        "--erase {erase} does not name the planned disk {disk}; to erase it, pass --erase {disk}"
    )]
    ConsentMismatch { erase: String, disk: String },
    #[error("no passphrase given: an empty passphrase would leave the disk unprotected")]
    EmptyPassphrase,
    #[error("the two passphrases differ; nothing was written, try again")]
    PassphraseMismatch,
}

fn find<'a>(inv: &'a Inventory, dev: &str) -> Result<&'a DiskInfo, Refusal> {
    if let Some(d) = inv.disk(dev) {
        return Ok(d);
    }
    let is_part = inv
        .disks
        .iter()
        .any(|d| d.contents.iter().any(|c| c.path == dev));
    if is_part {
        Err(Refusal::NotWholeDisk { disk: dev.into() })
    } else {
        Err(Refusal::NotFound { disk: dev.into() })
    }
}

/// Whether `dev` may be installed onto: it exists, is a whole disk, is not
/// the live medium, nothing on it is in use, it is writable and big enough.
pub fn check_target<'a>(inv: &'a Inventory, dev: &str) -> Result<&'a DiskInfo, Refusal> {
    let d = find(inv, dev)?;
    if let Some(why) = &d.live_medium {
        return Err(Refusal::LiveMedium {
            disk: d.path.clone(),
            why: why.clone(),
        });
    }
    if d.in_use() {
        let mut details: Vec<String> = d.mounted.iter().map(|m| format!("mounted: {m}")).collect();
        details.extend(d.swap.iter().map(|s| format!("swap: {s}")));
        details.extend(d.holders.iter().map(|h| format!("held by {h}")));
        return Err(Refusal::InUse {
            disk: d.path.clone(),
            details,
        });
    }
    if d.read_only {
        return Err(Refusal::ReadOnly {
            disk: d.path.clone(),
        });
    }
    if d.size_bytes < crate::plan::MIN_DISK_BYTES {
        return Err(Refusal::TooSmall {
            disk: d.path.clone(),
            size: d.size_bytes,
            min: crate::plan::MIN_DISK_BYTES,
        });
    }
    Ok(d)
}

/// The checks `apply` makes before its first write: the consent names the
/// planned disk, the disk is still there and safe, and it is the same disk
/// (serial/WWN, size, sector size) the plan was made for.
pub fn check_apply(plan: &Plan, inv: &Inventory, erase: &str) -> Result<DiskInfo, Refusal> {
    check_apply_resuming(plan, inv, erase, None)
}

/// As [`check_apply`], when resuming an interrupted run whose LUKS mapping
/// `own_mapper` (and the LVM volumes on it) may still be open: those holders
/// are the run's own and allowed; mounts and swap are still refused.
pub fn check_apply_resuming(
    plan: &Plan,
    inv: &Inventory,
    erase: &str,
    own_mapper: Option<&str>,
) -> Result<DiskInfo, Refusal> {
    match own_mapper {
        Some(m) => {
            check_apply_inner(plan, &without_own_holders(inv, &plan.disk.path, m), erase).cloned()
        }
        None => check_apply_inner(plan, inv, erase).cloned(),
    }
}

fn without_own_holders(inv: &Inventory, disk: &str, mapper: &str) -> Inventory {
    let mut inv = inv.clone();
    for d in inv.disks.iter_mut().filter(|d| d.path == disk) {
        let ours = d
            .contents
            .iter()
            .any(|c| c.kind == "crypt" && c.path.ends_with(mapper));
        if ours {
            let vg = names::vg_mapper_prefix(names::VG);
            d.holders
                .retain(|h| !(h.contains(mapper) || h.contains(&vg)));
        }
    }
    inv
}

fn check_apply_inner<'a>(
    plan: &Plan,
    inv: &'a Inventory,
    erase: &str,
) -> Result<&'a DiskInfo, Refusal> {
    let same_name =
        |a: &str, b: &str| a.trim_start_matches("/dev/") == b.trim_start_matches("/dev/");
    if !same_name(erase, &plan.disk.path) {
        return Err(Refusal::ConsentMismatch {
            erase: erase.into(),
            disk: plan.disk.path.clone(),
        });
    }
    let d = match check_target(inv, &plan.disk.path) {
        Err(Refusal::NotFound { disk }) => {
            return Err(Refusal::Changed {
                disk,
                differences: vec!["the disk is gone".into()],
            });
        }
        other => other?,
    };
    let diffs = plan.disk.differences(&DiskIdentity::of(d));
    if !diffs.is_empty() {
        return Err(Refusal::Changed {
            disk: d.path.clone(),
            differences: diffs,
        });
    }
    Ok(d)
}
