//! The install plan: the whole target layout, computed before anything is
//! written, printable and serializable (systemd-repart style).
//!
//! Layout, from Qubes 4.2 (qubes-anaconda `qubesos.conf`, anaconda/blivet
//! defaults): GPT with a 1 MiB BIOS boot partition (GRUB on BIOS machines, so
//! one disk boots both ways), an EFI system partition of 600 MiB (anaconda's
//! ESP maximum, which it grows to on any disk this size), /boot ext4 1 GiB,
//! and the rest one LUKS2 partition (aes-xts-plain64, 512-bit key, argon2id,
//! 512-byte sectors) holding LVM: VG `qubes_dom0`, thin pool `root-pool` of
//! 20 GiB (`thin_pool_size = 20GiB`) with the thin LV `root` of 20 GiB
//! (`/ (size 20 GiB)`), a plain LV `swap`, and the free space left for
//! `vm-pool`, which firstboot creates. Everything is aligned to 1 MiB.
//!
//! Where architecture.md and Qubes differ: the swap size follows anaconda's
//! `swap_suggestion` (2×RAM below 2 GiB, RAM below 8 GiB, RAM/2 below
//! 64 GiB, else 4 GiB) capped at 10% of the disk as anaconda does; the ESP
//! is 600 MiB (architecture.md says 200–600 MiB).
//!
//! Partition types: BIOS boot `21686148-…`, ESP `C12A7328-…`, /boot Linux
//! filesystem data `0FC63DAF-…`, and the registered LUKS type `CA7D7CCB-…`
//! for the encrypted partition, so tools see what it holds. Qubes' legacy
//! BIOS installs use MBR; we always use GPT plus the BIOS boot partition.
//! The LUKS2 sector size is 512 as Qubes uses under LVM, or the disk's
//! logical sector size when that is larger (dm-crypt cannot go below it).

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::discover::{DiskInfo, Inventory, Transport};
use crate::present::human_size;
pub use crate::refuse::MIN_DISK_BYTES;
use crate::refuse::{Refusal, check_target};

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
pub const ALIGN: u64 = MIB;
pub const BIOS_BOOT_BYTES: u64 = MIB;
pub const ESP_BYTES: u64 = 600 * MIB;
pub const BOOT_BYTES: u64 = GIB;
/// LUKS2 header area cryptsetup reserves by default (data offset).
pub const LUKS2_HEADER_BYTES: u64 = 16 * MIB;
pub const ROOT_POOL_BYTES: u64 = 20 * GIB;
pub const ROOT_LV_BYTES: u64 = 20 * GIB;
pub const LVM_EXTENT: u64 = 4 * MIB;
pub const LUKS_LABEL: &str = "bulkhead-luks";
pub const ESP_LABEL: &str = "EFI";
pub const BOOT_LABEL: &str = "boot";
pub const ROOT_LABEL: &str = "root";

pub const TYPE_BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
pub const TYPE_ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
pub const TYPE_LINUX_FS: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
pub const TYPE_LUKS: &str = "CA7D7CCB-63ED-4C53-861C-1742536059CC";

/// Returned by [`Plan::partition`] for an unvalidated plan missing a role:
/// an empty range that every writer rejects instead of panicking.
static FALLBACK: PlannedPartition = PlannedPartition {
    number: 0,
    role: Role::BiosBoot,
    name: String::new(),
    type_guid: String::new(),
    guid: Uuid::nil(),
    first_lba: 0,
    last_lba: 0,
    size_bytes: 0,
    content: String::new(),
};

/// What goes into a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    BiosBoot,
    Esp,
    Boot,
    Luks,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedPartition {
    pub number: u32,
    pub role: Role,
    /// GPT partition name.
    pub name: String,
    pub type_guid: String,
    pub guid: Uuid,
    pub first_lba: u64,
    pub last_lba: u64,
    pub size_bytes: u64,
    /// What is made in it, for people.
    pub content: String,
}

impl PlannedPartition {
    pub fn offset_bytes(&self, lb: u64) -> u64 {
        self.first_lba * lb
    }
    /// The kernel's name for partition `number` of `disk`.
    pub fn device_path(&self, disk: &str) -> String {
        let sep = if disk.ends_with(|c: char| c.is_ascii_digit()) {
            "p"
        } else {
            ""
        };
        format!("{disk}{sep}{}", self.number)
    }
}

/// How the disk is recognised again at apply time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskIdentity {
    pub path: String,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub size_bytes: u64,
    pub logical_sector: u32,
    pub transport: Transport,
}

impl DiskIdentity {
    pub fn of(d: &DiskInfo) -> Self {
        Self {
            path: d.path.clone(),
            model: d.model.clone(),
            serial: d.serial.clone(),
            wwn: d.wwn.clone(),
            size_bytes: d.size_bytes,
            logical_sector: d.logical_sector,
            transport: d.transport.clone(),
        }
    }

    /// The differences between `self` (planned) and `found`, empty if same.
    pub fn differences(&self, found: &DiskIdentity) -> Vec<String> {
        let mut v = Vec::new();
        if self.size_bytes != found.size_bytes {
            v.push(format!(
                "size {} bytes, planned {}",
                found.size_bytes, self.size_bytes
            ));
        }
        if self.logical_sector != found.logical_sector {
            v.push(format!(
                "logical sector {}, planned {}",
                found.logical_sector, self.logical_sector
            ));
        }
        if self.serial != found.serial {
            v.push(format!(
                "serial {:?}, planned {:?}",
                found.serial, self.serial
            ));
        }
        if self.wwn != found.wwn {
            v.push(format!("WWN {:?}, planned {:?}", found.wwn, self.wwn));
        }
        v
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LuksPlan {
    pub cipher: String,
    pub key_bits: u32,
    pub pbkdf: String,
    pub sector_size: u32,
    pub label: String,
    pub uuid: Uuid,
    /// The dm-crypt mapping name while open (`luks-UUID`, as anaconda names it).
    pub mapper_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LvmPlan {
    pub vg: String,
    pub thin_pool: String,
    pub thin_pool_bytes: u64,
    pub root_lv: String,
    pub root_lv_bytes: u64,
    pub root_fs: String,
    pub swap_lv: String,
    pub swap_bytes: u64,
    /// What is left in the VG for firstboot's vm-pool (estimate: LVM keeps
    /// thin-pool metadata and a spare of it too).
    pub free_for_vm_pool_bytes: u64,
}

/// Why a plan (read from a file or a journal) is not self-consistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPlan {
    #[error("the disk is smaller than {}", human_size(MIN_DISK_BYTES))]
    DiskTooSmall,
    #[error("unsupported logical sector size {0}")]
    SectorSize(u64),
    #[error("the plan has no {0:?} partition")]
    Missing(Role),
    #[error("partition {0} is not 1 MiB aligned")]
    Unaligned(u32),
    #[error("partition {0} overlaps or is empty")]
    Overlaps(u32),
    #[error("partition {0} runs past the disk's end")]
    PastEnd(u32),
    #[error("bad mapper name")]
    MapperName,
    #[error("partition {number}: size_bytes {size} is not its {lbas} LBAs")]
    Size { number: u32, size: u64, lbas: u64 },
    /// LUKS2 settings other than the ones Bulkhead installs with.
    #[error("LUKS2 {what} {value:?} is not allowed; Bulkhead installs {allowed}")]
    Luks {
        what: &'static str,
        value: String,
        allowed: &'static str,
    },
}

/// The LUKS2 settings a plan may carry (a plan can come from a file or from
/// the journal of an earlier run on the disk: neither may weaken the key).
const LUKS_CIPHERS: &[&str] = &["aes-xts-plain64"];
const LUKS_KEY_BITS: &[u32] = &[512];
const LUKS_PBKDFS: &[&str] = &["argon2id"];
const LUKS_SECTORS: &[u32] = &[512, 4096];

/// The complete install plan for one disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub disk: DiskIdentity,
    pub disk_guid: Uuid,
    pub partitions: Vec<PlannedPartition>,
    pub luks: LuksPlan,
    pub lvm: LvmPlan,
    /// Memory of the machine the plan was made on (sizes swap and PBKDF).
    pub memory_bytes: u64,
    /// What the person must know before confirming.
    pub warnings: Vec<String>,
    /// What is on the disk now and will be destroyed.
    pub destroys: Vec<String>,
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}
fn align_down(v: u64, a: u64) -> u64 {
    v / a * a
}

/// Anaconda's swap rule, capped at 10% of the disk, in whole extents.
pub fn swap_size(memory_bytes: u64, disk_bytes: u64) -> u64 {
    let mem = memory_bytes.max(GIB);
    let rule = if mem < 2 * GIB {
        2 * mem
    } else if mem < 8 * GIB {
        mem
    } else if mem < 64 * GIB {
        mem / 2
    } else {
        4 * GIB
    };
    align_down(rule.min(disk_bytes / 10), LVM_EXTENT).max(LVM_EXTENT)
}

/// Backup GPT size in logical blocks: the header plus 128 entries of 128 bytes.
pub fn gpt_tail_lbas(lb: u64) -> u64 {
    1 + (128 * 128u64).div_ceil(lb)
}

impl Plan {
    /// Plans an install on `dev` after checking every refusal that does not
    /// need the passphrase or the consent.
    pub fn new(inv: &Inventory, dev: &str) -> Result<Plan, Refusal> {
        let disk = check_target(inv, dev)?;
        Self::for_disk(disk, inv.memory_bytes)
    }

    /// The layout for `disk` (no safety checks but the size).
    pub fn for_disk(disk: &DiskInfo, memory_bytes: u64) -> Result<Plan, Refusal> {
        let lb = u64::from(disk.logical_sector.max(512));
        if disk.size_bytes < MIN_DISK_BYTES {
            return Err(Refusal::TooSmall {
                disk: disk.path.clone(),
                size: disk.size_bytes,
                min: MIN_DISK_BYTES,
            });
        }
        let end = align_down(disk.size_bytes - gpt_tail_lbas(lb) * lb, ALIGN);
        let mut parts = Vec::new();
        let mut at = ALIGN;
        let specs: [(Role, &str, &str, u64, String); 4] = [
            (
                Role::BiosBoot,
                "BIOS boot",
                TYPE_BIOS_BOOT,
                BIOS_BOOT_BYTES,
                "GRUB core image (BIOS machines)".into(),
            ),
            (
                Role::Esp,
                "EFI System",
                TYPE_ESP,
                ESP_BYTES,
                format!("FAT32 \"{ESP_LABEL}\", /boot/efi"),
            ),
            (
                Role::Boot,
                "boot",
                TYPE_LINUX_FS,
                BOOT_BYTES,
                format!("ext4 \"{BOOT_LABEL}\", /boot"),
            ),
            (
                Role::Luks,
                "luks",
                TYPE_LUKS,
                0,
                "LUKS2 → LVM qubes_dom0".into(),
            ),
        ];
        for (i, (role, name, ty, size, content)) in specs.into_iter().enumerate() {
            let size = if size == 0 { end - at } else { size };
            parts.push(PlannedPartition {
                number: i as u32 + 1,
                role,
                name: name.to_string(),
                type_guid: ty.to_string(),
                guid: Uuid::new_v4(),
                first_lba: at / lb,
                last_lba: (at + size) / lb - 1,
                size_bytes: size,
                content,
            });
            at = align_up(at + size, ALIGN);
        }
        let luks_bytes = parts[3].size_bytes;
        let pv_bytes = align_down(luks_bytes - LUKS2_HEADER_BYTES - MIB, LVM_EXTENT);
        let swap_bytes = swap_size(memory_bytes, disk.size_bytes);
        // lvm's default thin-pool metadata for 20 GiB at 64 KiB chunks is
        // well under 64 MiB; a spare of the same size is kept too.
        let meta = 2 * 64 * MIB;
        let used = ROOT_POOL_BYTES + meta + swap_bytes;
        let free = pv_bytes.saturating_sub(used);
        let uuid = Uuid::new_v4();
        let mut warnings = Vec::new();
        if disk.transport == Transport::Usb {
            warnings.push(format!(
                "{} is a USB disk: the installed system will run slower than from an internal disk",
                disk.path
            ));
        } else if disk.removable {
            warnings.push(format!("{} is a removable disk", disk.path));
        }
        if disk.rotational {
            warnings.push(format!(
                "{} is a rotating disk: qubes start much slower than from an SSD",
                disk.path
            ));
        }
        let mut destroys: Vec<String> = Vec::new();
        if let Some(t) = &disk.partition_table {
            destroys.push(format!("partition table ({t})"));
        }
        if let Some(f) = &disk.whole_disk_fstype {
            destroys.push(format!("{f} on the whole disk"));
        }
        for c in &disk.contents {
            if c.kind == "part" {
                destroys.push(format!(
                    "{} {} {}",
                    c.path,
                    human_size(c.size_bytes),
                    c.fstype.as_deref().unwrap_or("(no file system)")
                ));
            }
        }
        if !disk.os_hints.is_empty() {
            destroys.push(format!("recognised: {}", disk.os_hints.join(", ")));
        }
        Ok(Plan {
            format_version: 1,
            disk: DiskIdentity::of(disk),
            disk_guid: Uuid::new_v4(),
            partitions: parts,
            luks: LuksPlan {
                cipher: "aes-xts-plain64".into(),
                key_bits: 512,
                pbkdf: "argon2id".into(),
                sector_size: 512u32.max(disk.logical_sector),
                label: LUKS_LABEL.into(),
                mapper_name: names::luks_mapper(&uuid),
                uuid,
            },
            lvm: LvmPlan {
                vg: names::VG.into(),
                thin_pool: names::ROOT_POOL.into(),
                thin_pool_bytes: ROOT_POOL_BYTES,
                root_lv: names::ROOT_LV.into(),
                root_lv_bytes: ROOT_LV_BYTES,
                root_fs: "ext4".into(),
                swap_lv: names::SWAP_LV.into(),
                swap_bytes,
                free_for_vm_pool_bytes: free,
            },
            memory_bytes,
            warnings,
            destroys,
        })
    }

    pub fn logical_block(&self) -> u64 {
        u64::from(self.disk.logical_sector.max(512))
    }

    /// The partition with `role`. Plans from `for_disk` have all four;
    /// plans read from elsewhere must pass [`Plan::validate`] first.
    pub fn partition(&self, role: Role) -> &PlannedPartition {
        self.partitions
            .iter()
            .find(|p| p.role == role)
            .unwrap_or(&FALLBACK)
    }

    /// Checks a plan read from a file is self-consistent.
    pub fn validate(&self) -> Result<(), InvalidPlan> {
        let lb = self.logical_block();
        if self.disk.size_bytes < MIN_DISK_BYTES {
            return Err(InvalidPlan::DiskTooSmall);
        }
        if ![512, 4096].contains(&lb) {
            return Err(InvalidPlan::SectorSize(lb));
        }
        for role in [Role::BiosBoot, Role::Esp, Role::Boot, Role::Luks] {
            if !self.partitions.iter().any(|p| p.role == role) {
                return Err(InvalidPlan::Missing(role));
            }
        }
        let mut prev_end = 0;
        for p in &self.partitions {
            if !(p.first_lba * lb).is_multiple_of(ALIGN) {
                return Err(InvalidPlan::Unaligned(p.number));
            }
            if p.last_lba < p.first_lba || p.first_lba <= prev_end {
                return Err(InvalidPlan::Overlaps(p.number));
            }
            // Checked: a plan from a file or a journal may hold any number.
            let end = p
                .last_lba
                .checked_add(1 + gpt_tail_lbas(lb))
                .and_then(|n| n.checked_mul(lb));
            if end.is_none_or(|e| e > self.disk.size_bytes) {
                return Err(InvalidPlan::PastEnd(p.number));
            }
            let lbas = p.last_lba - p.first_lba + 1;
            if lbas.checked_mul(lb) != Some(p.size_bytes) {
                return Err(InvalidPlan::Size {
                    number: p.number,
                    size: p.size_bytes,
                    lbas,
                });
            }
            prev_end = p.last_lba;
        }
        if self.luks.mapper_name.contains('/') || self.luks.mapper_name.is_empty() {
            return Err(InvalidPlan::MapperName);
        }
        let l = &self.luks;
        let bad = |what, value: String, allowed| InvalidPlan::Luks {
            what,
            value,
            allowed,
        };
        if !LUKS_CIPHERS.contains(&l.cipher.as_str()) {
            return Err(bad("cipher", l.cipher.clone(), "aes-xts-plain64"));
        }
        if !LUKS_KEY_BITS.contains(&l.key_bits) {
            return Err(bad("key size", l.key_bits.to_string(), "512-bit keys"));
        }
        if !LUKS_PBKDFS.contains(&l.pbkdf.as_str()) {
            return Err(bad("PBKDF", l.pbkdf.clone(), "argon2id"));
        }
        if !LUKS_SECTORS.contains(&l.sector_size) {
            return Err(bad("sector size", l.sector_size.to_string(), "512 or 4096"));
        }
        Ok(())
    }

    /// What differs between this plan and `other` beyond the identities
    /// each run draws afresh (disk and partition GUIDs, the LUKS2 UUID and
    /// its mapper name): empty when `other` installs the same thing.
    pub fn layout_differences(&self, other: &Plan) -> Vec<String> {
        let mut v = Vec::new();
        let mut diff = |what: &str, mine: String, theirs: String| {
            if mine != theirs {
                v.push(format!("{what}: {theirs}, this run plans {mine}"));
            }
        };
        let d = |d: &DiskIdentity| {
            format!(
                "{} {} bytes, {}-byte sectors",
                d.path, d.size_bytes, d.logical_sector
            )
        };
        diff("disk", d(&self.disk), d(&other.disk));
        let parts = |p: &Plan| {
            p.partitions
                .iter()
                .map(|q| {
                    format!(
                        "{} {:?} {:?} type {} LBA {}-{} {}",
                        q.number, q.role, q.name, q.type_guid, q.first_lba, q.last_lba, q.content
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        diff("partitions", parts(self), parts(other));
        let luks = |l: &LuksPlan| {
            format!(
                "{} {}-bit {} {}-byte sectors label {:?}",
                l.cipher, l.key_bits, l.pbkdf, l.sector_size, l.label
            )
        };
        diff("LUKS2", luks(&self.luks), luks(&other.luks));
        diff("LVM", format!("{:?}", self.lvm), format!("{:?}", other.lvm));
        v
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.disk;
        writeln!(
            f,
            "Disk {}: {} {}, {} ({} bytes), {}",
            d.path,
            d.model.as_deref().unwrap_or("unknown model"),
            d.serial
                .as_deref()
                .map(|s| format!("serial {s}"))
                .unwrap_or_else(|| "no serial".into()),
            human_size(d.size_bytes),
            d.size_bytes,
            d.transport
        )?;
        writeln!(f, "GPT, disk GUID {}, 1 MiB alignment", self.disk_guid)?;
        for p in &self.partitions {
            writeln!(
                f,
                "  {}  {:>10}  LBA {:>10}-{:<10}  {:<10} {}",
                p.device_path(&d.path),
                human_size(p.size_bytes),
                p.first_lba,
                p.last_lba,
                p.name,
                p.content
            )?;
        }
        let l = &self.luks;
        writeln!(
            f,
            "LUKS2 {} {}-bit key, {}, {}-byte sectors, label {:?}, opened as /dev/mapper/{}",
            l.cipher, l.key_bits, l.pbkdf, l.sector_size, l.label, l.mapper_name
        )?;
        let v = &self.lvm;
        writeln!(f, "LVM volume group {}:", v.vg)?;
        writeln!(
            f,
            "  thin pool {} {} holding {} ({} virtual, {}, /)",
            v.thin_pool,
            human_size(v.thin_pool_bytes),
            v.root_lv,
            human_size(v.root_lv_bytes),
            v.root_fs
        )?;
        writeln!(f, "  {} {} (swap)", v.swap_lv, human_size(v.swap_bytes))?;
        writeln!(
            f,
            "  about {} left free for vm-pool (made at first boot)",
            human_size(v.free_for_vm_pool_bytes)
        )?;
        if !self.destroys.is_empty() {
            writeln!(f, "ERASES everything on the disk:")?;
            for x in &self.destroys {
                writeln!(f, "  {x}")?;
            }
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_rule() {
        assert_eq!(swap_size(GIB, 100 * GIB), 2 * GIB);
        assert_eq!(swap_size(4 * GIB, 100 * GIB), 4 * GIB);
        assert_eq!(swap_size(16 * GIB, 500 * GIB), 8 * GIB);
        assert_eq!(swap_size(128 * GIB, 500 * GIB), 4 * GIB);
        // capped at 10% of the disk
        assert_eq!(swap_size(16 * GIB, 40 * GIB), 4 * GIB);
    }

    fn sample() -> Plan {
        let d = crate::discover::DiskInfo {
            path: "/dev/vda".into(),
            name: "vda".into(),
            model: None,
            vendor: None,
            serial: Some("S1".into()),
            wwn: None,
            size_bytes: 64 * GIB,
            logical_sector: 512,
            physical_sector: 512,
            transport: Transport::Virtio,
            removable: false,
            read_only: false,
            rotational: false,
            partition_table: None,
            whole_disk_fstype: None,
            contents: vec![],
            os_hints: vec![],
            mounted: vec![],
            swap: vec![],
            holders: vec![],
            live_medium: None,
        };
        Plan::for_disk(&d, 8 * GIB).unwrap()
    }

    #[test]
    fn validate_refuses_weakened_luks_and_impossible_numbers() {
        let good = sample();
        assert_eq!(good.validate(), Ok(()));
        let with = |f: &dyn Fn(&mut Plan)| {
            let mut p = good.clone();
            f(&mut p);
            p.validate()
        };
        assert!(matches!(
            with(&|p| p.luks.cipher = "aes-ecb".into()),
            Err(InvalidPlan::Luks { what: "cipher", .. })
        ));
        assert!(matches!(
            with(&|p| p.luks.key_bits = 128),
            Err(InvalidPlan::Luks {
                what: "key size",
                ..
            })
        ));
        assert!(matches!(
            with(&|p| p.luks.pbkdf = "pbkdf2".into()),
            Err(InvalidPlan::Luks { what: "PBKDF", .. })
        ));
        assert!(matches!(
            with(&|p| p.luks.sector_size = 1024),
            Err(InvalidPlan::Luks { .. })
        ));
        let last = good.partitions.len() - 1;
        // An end past 2^64 must not wrap around into a "valid" plan.
        assert_eq!(
            with(&|p| p.partitions[last].last_lba = u64::MAX),
            Err(InvalidPlan::PastEnd(good.partitions[last].number))
        );
        assert!(matches!(
            with(&|p| p.partitions[0].size_bytes += 512),
            Err(InvalidPlan::Size { .. })
        ));
    }

    #[test]
    fn only_fresh_identities_may_differ_between_runs_of_one_install() {
        let a = sample();
        let b = sample();
        assert_ne!(a.luks.uuid, b.luks.uuid, "each run draws new identities");
        assert_eq!(a.layout_differences(&b), Vec::<String>::new());
        let mut weak = b.clone();
        weak.luks.cipher = "aes-ecb".into();
        let d = a.layout_differences(&weak);
        assert!(d.len() == 1 && d[0].starts_with("LUKS2: aes-ecb"), "{d:?}");
        let mut moved = b.clone();
        moved.partitions[1].last_lba -= 2048;
        assert!(a.layout_differences(&moved)[0].starts_with("partitions:"));
    }

    #[test]
    fn gpt_tail() {
        assert_eq!(gpt_tail_lbas(512), 33);
        assert_eq!(gpt_tail_lbas(4096), 5);
    }
}
