//! Disk discovery: which whole disks exist, what is on them, and whether any
//! of it is in use (mounted, swap, held by dm/md/LVM) or is the live medium.
//!
//! Sources, all read below a root directory so tests run on fixtures:
//! `lsblk --json -O -b` (given as text: the tree, models, serials, file
//! systems), `sys/block` (whole disks and `holders/`), `proc/mounts`,
//! `proc/swaps`, `proc/cmdline` and `proc/meminfo`. lsblk and the kernel
//! files are cross-checked: a device counts as in use if either says so.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

mod kernel;

pub use kernel::{
    DEFAULT_LIVE_LABEL, live_label_from_cmdline, parse_meminfo, parse_mounts, parse_swaps,
};
use kernel::{count_cpus, list_dir, live_devices_from_cmdline, sys_holders};

/// Mount points where live systems keep their boot medium.
const LIVE_MOUNTS: &[&str] = &[
    "/run/bulkhead/medium",
    "/run/live/medium",
    "/run/initramfs/live",
    "/lib/live/mount/medium",
    "/run/archiso/bootmnt",
    "/cdrom",
];

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("{0} (lsblk is in util-linux)")]
    Lsblk(#[from] sysutil::ToolError),
    #[error("cannot parse lsblk JSON: {0}")]
    LsblkJson(#[from] serde_json::Error),
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How a disk is attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Nvme,
    Sata,
    Usb,
    Virtio,
    Scsi,
    Mmc,
    Other(String),
    Unknown,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Nvme => f.write_str("nvme"),
            Transport::Sata => f.write_str("sata"),
            Transport::Usb => f.write_str("usb"),
            Transport::Virtio => f.write_str("virtio"),
            Transport::Scsi => f.write_str("scsi"),
            Transport::Mmc => f.write_str("mmc"),
            Transport::Other(s) => f.write_str(s),
            Transport::Unknown => f.write_str("unknown"),
        }
    }
}

/// One device inside a disk's tree (a partition, a dm-crypt mapping, an LV).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    pub path: String,
    /// lsblk's type: part, crypt, lvm, raid1, ...
    pub kind: String,
    pub size_bytes: u64,
    pub fstype: Option<String>,
    pub label: Option<String>,
    pub partlabel: Option<String>,
    pub parttype: Option<String>,
    pub mountpoints: Vec<String>,
}

/// A whole disk and everything known about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskInfo {
    pub path: String,
    pub name: String,
    pub model: Option<String>,
    pub vendor: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub size_bytes: u64,
    pub logical_sector: u32,
    pub physical_sector: u32,
    pub transport: Transport,
    pub removable: bool,
    pub read_only: bool,
    pub rotational: bool,
    /// `gpt`, `dos` or none.
    pub partition_table: Option<String>,
    /// File system or signature on the whole disk itself (no partitions).
    pub whole_disk_fstype: Option<String>,
    pub contents: Vec<Content>,
    /// Recognisable operating systems or uses, e.g. "Windows", "Qubes OS".
    pub os_hints: Vec<String>,
    /// "DEVICE on MOUNTPOINT" for everything on the disk that is mounted.
    pub mounted: Vec<String>,
    /// Devices on the disk used as swap.
    pub swap: Vec<String>,
    /// dm/md/LVM devices holding the disk or one of its partitions.
    pub holders: Vec<String>,
    /// Why this disk is the live boot medium, if it is.
    pub live_medium: Option<String>,
}

impl DiskInfo {
    /// Whether anything on the disk is mounted, swap or held.
    pub fn in_use(&self) -> bool {
        !self.mounted.is_empty() || !self.swap.is_empty() || !self.holders.is_empty()
    }
}

/// What the machine looks like: disks and memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub disks: Vec<DiskInfo>,
    pub memory_bytes: u64,
    pub cpus: u32,
    /// The live medium label looked for.
    pub live_label: String,
}

impl Inventory {
    pub fn disk(&self, dev: &str) -> Option<&DiskInfo> {
        let name = dev.trim_start_matches("/dev/");
        self.disks.iter().find(|d| d.path == dev || d.name == name)
    }
}

// ---- lsblk JSON -------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct LsblkTop {
    blockdevices: Vec<LsblkDev>,
}

#[derive(Debug, Deserialize, Clone, Default)]
#[serde(default)]
struct LsblkDev {
    name: Option<String>,
    kname: Option<String>,
    path: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    size: Option<NumOrStr>,
    model: Option<String>,
    vendor: Option<String>,
    serial: Option<String>,
    wwn: Option<String>,
    tran: Option<String>,
    rm: Option<BoolOrStr>,
    ro: Option<BoolOrStr>,
    rota: Option<BoolOrStr>,
    hotplug: Option<BoolOrStr>,
    #[serde(rename = "log-sec")]
    log_sec: Option<NumOrStr>,
    #[serde(rename = "phy-sec")]
    phy_sec: Option<NumOrStr>,
    pttype: Option<String>,
    fstype: Option<String>,
    label: Option<String>,
    partlabel: Option<String>,
    parttype: Option<String>,
    parttypename: Option<String>,
    mountpoint: Option<String>,
    mountpoints: Option<Vec<Option<String>>>,
    children: Option<Vec<LsblkDev>>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
enum NumOrStr {
    Num(u64),
    Str(String),
}

impl NumOrStr {
    fn get(&self) -> Option<u64> {
        match self {
            NumOrStr::Num(n) => Some(*n),
            NumOrStr::Str(s) => s.trim().parse().ok(),
        }
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
enum BoolOrStr {
    Bool(bool),
    Num(u64),
    Str(String),
}

impl BoolOrStr {
    fn get(&self) -> bool {
        match self {
            BoolOrStr::Bool(b) => *b,
            BoolOrStr::Num(n) => *n != 0,
            BoolOrStr::Str(s) => s.trim() == "1" || s.trim() == "true",
        }
    }
}

fn flag(v: &Option<BoolOrStr>) -> bool {
    v.as_ref().is_some_and(BoolOrStr::get)
}

impl LsblkDev {
    fn path(&self) -> String {
        self.path.clone().unwrap_or_else(|| {
            format!(
                "/dev/{}",
                self.name
                    .as_deref()
                    .or(self.kname.as_deref())
                    .unwrap_or("?")
            )
        })
    }
    fn mounts(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .mountpoints
            .iter()
            .flatten()
            .flatten()
            .cloned()
            .collect();
        if let Some(m) = &self.mountpoint
            && !v.contains(m)
        {
            v.push(m.clone());
        }
        v
    }
    /// All names this device is known by (name, kname, path, /dev/mapper).
    fn aliases(&self) -> Vec<String> {
        let mut v = vec![self.path()];
        for n in [&self.name, &self.kname].into_iter().flatten() {
            v.push(format!("/dev/{n}"));
            v.push(format!("/dev/mapper/{n}"));
        }
        v
    }
}

// ---- kernel files (parsed in kernel.rs) --------------------------------------

fn read_opt(path: &Path) -> Result<Option<String>, DiscoverError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DiscoverError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn transport_of(dev: &LsblkDev, root: &Path, name: &str) -> Transport {
    match dev.tran.as_deref() {
        Some("nvme") => return Transport::Nvme,
        Some("sata") | Some("ata") => return Transport::Sata,
        Some("usb") => return Transport::Usb,
        Some("virtio") => return Transport::Virtio,
        Some("mmc") => return Transport::Mmc,
        Some("sas") | Some("spi") | Some("fc") | Some("iscsi") => return Transport::Scsi,
        Some(other) if !other.is_empty() => return Transport::Other(other.to_string()),
        _ => {}
    }
    if let Ok(target) = std::fs::read_link(root.join("sys/block").join(name)) {
        let t = target.to_string_lossy();
        if t.contains("/usb") {
            return Transport::Usb;
        }
        if t.contains("/virtio") {
            return Transport::Virtio;
        }
        if t.contains("/nvme") {
            return Transport::Nvme;
        }
        if t.contains("/ata") {
            return Transport::Sata;
        }
    }
    if name.starts_with("vd") {
        Transport::Virtio
    } else if name.starts_with("nvme") {
        Transport::Nvme
    } else if name.starts_with("mmcblk") {
        Transport::Mmc
    } else {
        Transport::Unknown
    }
}

fn os_hints(contents: &[Content], whole: Option<&str>) -> Vec<String> {
    let mut hints = BTreeSet::new();
    let lower = |s: &Option<String>| s.clone().unwrap_or_default().to_lowercase();
    for c in contents {
        let fs = lower(&c.fstype);
        let label = lower(&c.label);
        let plabel = lower(&c.partlabel);
        let ptype = lower(&c.parttype);
        if fs == "ntfs" || fs == "bitlocker" || plabel.contains("microsoft") {
            hints.insert("Windows");
        }
        if ptype == "e3c9e316-0b5c-4db8-817d-f92df00215ae" {
            hints.insert("Windows");
        }
        if fs == "apfs" || fs == "hfsplus" {
            hints.insert("macOS");
        }
        if c.kind == "lvm" && c.path.contains(names::VG) {
            hints.insert("Qubes OS");
        }
        if fs == "crypto_luks" {
            hints.insert("encrypted (LUKS)");
        }
        if fs == "lvm2_member" {
            hints.insert("LVM");
        }
        if fs.starts_with("linux_raid") {
            hints.insert("RAID member");
        }
        if ["ext2", "ext3", "ext4", "btrfs", "xfs", "swap"].contains(&fs.as_str()) {
            hints.insert("Linux");
        }
        if fs == "iso9660" || label.contains("bulkhead") {
            hints.insert("installation medium");
        }
        if fs == "vfat" && (label == "efi" || ptype == "c12a7328-f81f-11d2-ba4b-00a0c93ec93b") {
            hints.insert("EFI system partition");
        }
    }
    match whole.map(str::to_lowercase).as_deref() {
        Some("iso9660") => {
            hints.insert("installation medium");
        }
        Some("crypto_luks") => {
            hints.insert("encrypted (LUKS)");
        }
        Some("lvm2_member") => {
            hints.insert("LVM");
        }
        _ => {}
    }
    hints.into_iter().map(str::to_string).collect()
}

/// Fills in what lsblk could not tell (no udev database, as in a bare
/// initramfs): probes the device node below `root` read-only for the
/// partition table, file system type and an ISO9660 label.
fn probe_missing(root: &Path, node: &mut LsblkDev) {
    if node.fstype.is_some() || node.pttype.is_some() {
        return;
    }
    let path = node.path();
    let Ok(mut f) = std::fs::File::open(root.join(path.trim_start_matches('/'))) else {
        return;
    };
    use std::io::{Read, Seek, SeekFrom};
    let Ok(len) = f.seek(SeekFrom::End(0)) else {
        return;
    };
    let Ok(sigs) = crate::signatures::probe(&mut f, 0, len) else {
        return;
    };
    let has = |k: &str| sigs.iter().any(|s| s.kind == k);
    if has("gpt") || has("gpt-backup") {
        node.pttype = Some("gpt".into());
    }
    let fs = [
        ("luks", "crypto_LUKS"),
        ("lvm2", "LVM2_member"),
        ("md-1.2", "linux_raid_member"),
        ("md-1.1", "linux_raid_member"),
        ("md-1.0", "linux_raid_member"),
        ("md-0.90", "linux_raid_member"),
        ("iso9660", "iso9660"),
        ("ext2/3/4", "ext4"),
        ("xfs", "xfs"),
        ("btrfs", "btrfs"),
        ("ntfs", "ntfs"),
        ("exfat", "exfat"),
        ("fat32", "vfat"),
        ("fat", "vfat"),
        ("swap", "swap"),
    ];
    node.fstype = fs.iter().find(|(k, _)| has(k)).map(|(_, t)| t.to_string());
    if node.fstype.is_none() && node.pttype.is_none() && has("mbr/boot-sector") {
        node.pttype = Some("dos".into());
    }
    if node.fstype.as_deref() == Some("iso9660") && node.label.is_none() {
        let mut id = [0u8; 32];
        if f.seek(SeekFrom::Start(32768 + 40)).is_ok() && f.read_exact(&mut id).is_ok() {
            let l = String::from_utf8_lossy(&id).trim().to_string();
            if !l.is_empty() {
                node.label = Some(l);
            }
        }
    }
}

fn probe_tree(root: &Path, node: &mut LsblkDev) {
    probe_missing(root, node);
    for c in node.children.iter_mut().flatten() {
        probe_tree(root, c);
    }
}

fn collect(dev: &LsblkDev, out: &mut Vec<(LsblkDev, String)>) {
    for c in dev.children.iter().flatten() {
        out.push((c.clone(), c.path()));
        collect(c, out);
    }
}

/// Builds the inventory from a root directory (normally `/`) and the text of
/// `lsblk --json -O -b`.
pub fn discover(root: &Path, lsblk_json: &str) -> Result<Inventory, DiscoverError> {
    let top: LsblkTop = serde_json::from_str(lsblk_json)?;
    let mounts = parse_mounts(&read_opt(&root.join("proc/mounts"))?.unwrap_or_default());
    let swaps = parse_swaps(&read_opt(&root.join("proc/swaps"))?.unwrap_or_default());
    let cmdline = read_opt(&root.join("proc/cmdline"))?.unwrap_or_default();
    let memory_bytes =
        parse_meminfo(&read_opt(&root.join("proc/meminfo"))?.unwrap_or_default()).unwrap_or(0);
    let cpus = read_opt(&root.join("sys/devices/system/cpu/online"))?
        .as_deref()
        .map(count_cpus)
        .unwrap_or(1)
        .max(1);
    let live_label = live_label_from_cmdline(&cmdline);
    let live_devs = live_devices_from_cmdline(&cmdline);
    let sys_block = root.join("sys/block");
    let sys_names: Option<BTreeSet<String>> = sys_block
        .is_dir()
        .then(|| list_dir(&sys_block).into_iter().collect());

    let mut disks = Vec::new();
    let mut top = top;
    for d in top.blockdevices.iter_mut() {
        if d.kind.as_deref() == Some("disk") {
            probe_tree(root, d);
        }
    }
    for d in &top.blockdevices {
        if d.kind.as_deref() != Some("disk") {
            continue;
        }
        let name = d.kname.clone().or(d.name.clone()).unwrap_or_default();
        if name.starts_with("zram") || name.starts_with("ram") || name.starts_with("loop") {
            continue;
        }
        if let Some(names) = &sys_names
            && !names.contains(&name)
        {
            continue;
        }
        let path = d.path();
        let mut tree = vec![(d.clone(), path.clone())];
        collect(d, &mut tree);

        let mut contents = Vec::new();
        let mut mounted = BTreeSet::new();
        let mut swap = BTreeSet::new();
        let mut holders: BTreeSet<String> = sys_holders(root, &name).into_iter().collect();
        let mut live: Option<String> = None;
        for (node, npath) in &tree {
            let aliases = node.aliases();
            for m in node.mounts() {
                if m == "[SWAP]" {
                    swap.insert(npath.clone());
                } else {
                    mounted.insert(format!("{npath} on {m}"));
                }
            }
            for (dev, mnt, _fs) in &mounts {
                if aliases.contains(dev) {
                    mounted.insert(format!("{npath} on {mnt}"));
                }
            }
            for s in &swaps {
                if aliases.contains(s) {
                    swap.insert(npath.clone());
                }
            }
            let kind = node.kind.clone().unwrap_or_default();
            if npath != &path && kind != "part" {
                holders.insert(format!("{npath} ({kind})"));
            }
            if live.is_none() {
                let ms: Vec<String> = node
                    .mounts()
                    .into_iter()
                    .chain(
                        mounts
                            .iter()
                            .filter(|(dev, _, _)| aliases.contains(dev))
                            .map(|(_, m, _)| m.clone()),
                    )
                    .collect();
                if let Some(m) = ms.iter().find(|m| LIVE_MOUNTS.contains(&m.as_str())) {
                    live = Some(format!(
                        "{npath} is mounted on {m}, the live medium's mount point"
                    ));
                } else if node.fstype.as_deref() == Some("iso9660")
                    && node.label.as_deref() == Some(live_label.as_str())
                {
                    live = Some(format!("{npath} holds the ISO9660 volume {live_label:?}"));
                } else if aliases.iter().any(|a| live_devs.contains(a)) {
                    live = Some(format!(
                        "{npath} is named by bulkhead.medium= on the kernel command line"
                    ));
                }
            }
            if npath != &path {
                contents.push(Content {
                    path: npath.clone(),
                    kind,
                    size_bytes: node.size.as_ref().and_then(NumOrStr::get).unwrap_or(0),
                    fstype: node.fstype.clone(),
                    label: node.label.clone(),
                    partlabel: node.partlabel.clone(),
                    parttype: node.parttype.clone(),
                    mountpoints: node.mounts(),
                });
            }
        }
        let whole_disk_fstype = d.fstype.clone();
        // Without udev, lsblk has no serial/model/WWN: sysfs has them.
        let sys = |rel: &str| -> Option<String> {
            std::fs::read_to_string(root.join("sys/block").join(&name).join(rel))
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let serial = d
            .serial
            .clone()
            .or_else(|| sys("serial"))
            .or_else(|| sys("device/serial"));
        let model = d.model.clone().or_else(|| sys("device/model"));
        let wwn = d
            .wwn
            .clone()
            .or_else(|| sys("wwid"))
            .or_else(|| sys("device/wwid"));
        disks.push(DiskInfo {
            transport: transport_of(d, root, &name),
            path,
            model: model.map(|s| s.trim().to_string()),
            vendor: d.vendor.as_ref().map(|s| s.trim().to_string()),
            serial: serial.map(|s| s.trim().to_string()),
            wwn,
            size_bytes: d.size.as_ref().and_then(NumOrStr::get).unwrap_or(0),
            logical_sector: d.log_sec.as_ref().and_then(NumOrStr::get).unwrap_or(512) as u32,
            physical_sector: d.phy_sec.as_ref().and_then(NumOrStr::get).unwrap_or(512) as u32,
            removable: flag(&d.rm) || flag(&d.hotplug),
            read_only: flag(&d.ro),
            rotational: flag(&d.rota),
            partition_table: d.pttype.clone(),
            os_hints: os_hints(&contents, whole_disk_fstype.as_deref()),
            whole_disk_fstype,
            contents,
            mounted: mounted.into_iter().collect(),
            swap: swap.into_iter().collect(),
            holders: holders.into_iter().collect(),
            live_medium: live,
            name,
        });
        let _ = d.parttypename.as_ref();
    }
    Ok(Inventory {
        disks,
        memory_bytes,
        cpus,
        live_label,
    })
}

/// Runs `lsblk --json -O -b` on this machine.
pub fn lsblk_json() -> Result<String, DiscoverError> {
    Ok(sysutil::run(
        Command::new("lsblk").args(["--json", "-O", "-b"]),
    )?)
}

/// The inventory of this machine.
pub fn discover_system() -> Result<Inventory, DiscoverError> {
    discover(Path::new("/"), &lsblk_json()?)
}
