//! Disks from /sys/block: size, model, transport, removable, rotational.
//! Loop, RAM, zram, optical, device-mapper, MD RAID and network block
//! devices are not install targets and are skipped.

use crate::root::Root;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Disk {
    pub name: String,
    pub size_bytes: u64,
    pub model: Option<String>,
    /// nvme, sata, usb, virtio, scsi, mmc, ide or unknown.
    pub transport: String,
    pub removable: bool,
    pub rotational: Option<bool>,
}

const SKIPPED: [&str; 9] = ["loop", "ram", "zram", "sr", "dm-", "md", "nbd", "fd", "zd"];

pub fn is_skipped(name: &str) -> bool {
    SKIPPED.iter().any(|p| name.starts_with(p))
}

fn transport_from_path(link: &str, name: &str) -> &'static str {
    if name.starts_with("nvme") || link.contains("/nvme") {
        "nvme"
    } else if link.contains("/usb") {
        "usb"
    } else if link.contains("/virtio") {
        "virtio"
    } else if name.starts_with("mmcblk") || link.contains("/mmc") {
        "mmc"
    } else if link.contains("/ata") {
        "sata"
    } else if name.starts_with("vd") {
        "virtio"
    } else if link.contains("/host") {
        "scsi"
    } else {
        "unknown"
    }
}

/// Reads every install-candidate disk.
pub fn read(root: &Root) -> Result<Vec<Disk>, String> {
    let names = root
        .list("/sys/block")
        .map_err(|m| m.reason().to_string())?;
    let mut out = Vec::new();
    for name in names.into_iter().filter(|n| !is_skipped(n)) {
        let base = format!("/sys/block/{name}");
        let Ok(size) = root.read_attr(&format!("{base}/size")) else {
            continue;
        };
        let Ok(sectors) = size.parse::<u64>() else {
            continue;
        };
        let link = root.link_target(&base).unwrap_or_default();
        let attr = |f: &str| {
            root.read_attr(&format!("{base}/{f}"))
                .ok()
                .filter(|s| !s.is_empty())
        };
        let model = attr("device/model").map(|m| match attr("device/vendor") {
            Some(v) if v != "ATA" && !m.starts_with(&v) => format!("{v} {m}"),
            _ => m,
        });
        out.push(Disk {
            transport: transport_from_path(&link, &name).to_string(),
            removable: attr("removable").as_deref() == Some("1"),
            rotational: attr("queue/rotational").map(|r| r == "1"),
            size_bytes: sectors.saturating_mul(512),
            model,
            name,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_and_skips() {
        assert_eq!(
            transport_from_path(
                "../devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host0/target0:0:0/0:0:0:0/block/sda",
                "sda"
            ),
            "usb"
        );
        assert_eq!(
            transport_from_path(
                "../devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda",
                "sda"
            ),
            "sata"
        );
        assert_eq!(
            transport_from_path(
                "../devices/pci0000:00/0000:00:02.0/virtio1/block/vda",
                "vda"
            ),
            "virtio"
        );
        assert_eq!(transport_from_path("", "nvme0n1"), "nvme");
        for n in ["loop0", "ram1", "zram0", "sr0", "dm-0", "md127"] {
            assert!(is_skipped(n), "{n}");
        }
        assert!(!is_skipped("sda") && !is_skipped("nvme0n1") && !is_skipped("vda"));
    }
}
