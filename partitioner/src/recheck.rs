//! The checks made before apply's first write, against a fresh
//! discovery: consent, the disk's safety ([`crate::refuse`]) and that it is
//! the disk the plan was made for. Here, not in refuse.rs, because they need
//! both the plan and the inventory.

use crate::discover::{DiskInfo, Inventory};
use crate::plan::{DiskIdentity, Plan};
use crate::refuse::{Refusal, check_target};

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
