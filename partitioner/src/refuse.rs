//! Every reason to refuse a target disk, judged on the inventory alone
//! before anything is written: at plan time, and again at apply time against
//! a fresh discovery (recheck.rs adds what needs the plan too).

use crate::discover::{DiskInfo, Inventory};
use crate::present::human_size;

/// The hard minimum disk size (architecture.md requirements table).
pub const MIN_DISK_BYTES: u64 = 32 << 30;

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
    if d.size_bytes < MIN_DISK_BYTES {
        return Err(Refusal::TooSmall {
            disk: d.path.clone(),
            size: d.size_bytes,
            min: MIN_DISK_BYTES,
        });
    }
    Ok(d)
}
