//! Bulkhead's partitioner: disk discovery and safety checks, the install
//! plan (a dry run you can read before anything is destroyed), and applying
//! it: GPT, ESP (FAT32), /boot (ext4), LUKS2 and Qubes' LVM layout.
//!
//! [`discover`] reads the machine and [`present`] shows it to people,
//! [`plan::Plan`] is the whole layout, [`refuse`] holds every reason to
//! refuse a disk and [`recheck`] the checks made again at apply time, and
//! [`apply`] is the only code that writes to a disk (journaled in
//! [`journal`], resumable).

pub mod apply;
#[cfg(feature = "bench")]
pub mod bench;
pub mod discover;
pub mod journal;
pub mod luks;
pub mod plan;
pub mod present;
pub mod recheck;
pub mod refuse;
pub mod secret;
pub mod signatures;

pub use discover::{DiskInfo, Inventory, discover, discover_system};
pub use plan::Plan;
pub use refuse::Refusal;
