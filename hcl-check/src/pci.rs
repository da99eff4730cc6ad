//! PCI devices from /sys/bus/pci/devices: what sys-net (class 0x02,
//! network) and sys-usb (class 0x0c03, USB controllers) would receive, plus
//! the host bridge and display controllers for the HCL report. Names come
//! from pci.ids inside the root when it is there.

use crate::root::Root;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

pub const PCI_IDS: &str = "/usr/share/misc/pci.ids";

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PciDevice {
    /// Domain:bus:device.function, e.g. "0000:00:1f.6".
    pub address: String,
    /// 24-bit class code, e.g. 0x020000.
    pub class: u32,
    pub vendor_id: u16,
    pub device_id: u16,
    pub revision: Option<u8>,
    pub vendor_name: Option<String>,
    pub device_name: Option<String>,
    /// Kernel driver bound to it, if any.
    pub driver: Option<String>,
}

impl PciDevice {
    pub fn is_network(&self) -> bool {
        self.class >> 16 == 0x02
    }
    pub fn is_usb(&self) -> bool {
        self.class >> 8 == 0x0c03
    }
    pub fn is_display(&self) -> bool {
        self.class >> 16 == 0x03
    }
    pub fn is_host_bridge(&self) -> bool {
        self.class >> 8 == 0x0600
    }

    /// "Intel Corporation Ethernet Connection I219-LM [8086:15bb] (rev 21)",
    /// the lspci -nn style qubes-hcl-report uses.
    pub fn describe(&self) -> String {
        let vendor = self
            .vendor_name
            .clone()
            .unwrap_or_else(|| format!("Vendor {:04x}", self.vendor_id));
        let device = self
            .device_name
            .clone()
            .unwrap_or_else(|| format!("Device {:04x}", self.device_id));
        let mut s = format!(
            "{vendor} {device} [{:04x}:{:04x}]",
            self.vendor_id, self.device_id
        );
        if let Some(r) = self.revision {
            s.push_str(&format!(" (rev {r:02x})"));
        }
        s
    }
}

fn hex_attr(root: &Root, path: &str) -> Option<u32> {
    let v = root.read_attr(path).ok()?;
    u32::from_str_radix(v.trim_start_matches("0x"), 16).ok()
}

/// Vendor and device names from pci.ids text, for the ids wanted only.
pub fn names_from_ids(
    text: &str,
    wanted: &BTreeSet<(u16, u16)>,
) -> BTreeMap<(u16, Option<u16>), String> {
    let vendors: BTreeSet<u16> = wanted.iter().map(|(v, _)| *v).collect();
    let mut out = BTreeMap::new();
    let mut current: Option<u16> = None;
    for line in text.lines() {
        if line.starts_with("C ") {
            break;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('\t') {
            if rest.starts_with('\t') {
                continue;
            }
            let Some(v) = current else { continue };
            let (Some(id), Some(name)) = (rest.get(..4), rest.get(4..)) else {
                continue;
            };
            if let Ok(d) = u16::from_str_radix(id, 16)
                && wanted.contains(&(v, d))
            {
                out.insert((v, Some(d)), name.trim().to_string());
            }
        } else {
            let (Some(id), Some(name)) = (line.get(..4), line.get(4..)) else {
                current = None;
                continue;
            };
            current = u16::from_str_radix(id, 16)
                .ok()
                .filter(|v| vendors.contains(v));
            if let Some(v) = current {
                out.insert((v, None), name.trim().to_string());
            }
        }
    }
    out
}

/// Writes the pci.ids lines for the given devices only (used by `capture`).
pub fn subset_of_ids(text: &str, devices: &[PciDevice]) -> String {
    let wanted: BTreeSet<(u16, u16)> = devices.iter().map(|d| (d.vendor_id, d.device_id)).collect();
    let names = names_from_ids(text, &wanted);
    let mut out = String::from("# Subset of pci.ids for the devices of this capture.\n");
    let mut last_vendor = None;
    for ((v, d), name) in &names {
        match d {
            None => {
                out.push_str(&format!("{v:04x}  {name}\n"));
                last_vendor = Some(*v);
            }
            Some(d) if last_vendor == Some(*v) => out.push_str(&format!("\t{d:04x}  {name}\n")),
            Some(_) => {}
        }
    }
    out
}

pub fn read(root: &Root) -> Result<Vec<PciDevice>, String> {
    let names = root
        .list("/sys/bus/pci/devices")
        .map_err(|m| m.reason().to_string())?;
    let mut devices = Vec::new();
    for addr in names {
        let base = format!("/sys/bus/pci/devices/{addr}");
        let (Some(class), Some(vendor), Some(device)) = (
            hex_attr(root, &format!("{base}/class")),
            hex_attr(root, &format!("{base}/vendor")),
            hex_attr(root, &format!("{base}/device")),
        ) else {
            continue;
        };
        let driver = root
            .link_target(&format!("{base}/driver"))
            .and_then(|t| t.rsplit('/').next().map(String::from));
        devices.push(PciDevice {
            address: addr,
            class,
            vendor_id: vendor as u16,
            device_id: device as u16,
            revision: hex_attr(root, &format!("{base}/revision")).map(|r| r as u8),
            vendor_name: None,
            device_name: None,
            driver,
        });
    }
    if let Ok(text) = root.read_string(PCI_IDS) {
        let wanted = devices.iter().map(|d| (d.vendor_id, d.device_id)).collect();
        let names = names_from_ids(&text, &wanted);
        for d in &mut devices {
            d.vendor_name = names.get(&(d.vendor_id, None)).cloned();
            d.device_name = names.get(&(d.vendor_id, Some(d.device_id))).cloned();
        }
    }
    Ok(devices)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: &str = "# comment\n8086  Intel Corporation\n\t100e  82540EM Gigabit Ethernet Controller\n\t\t1af4 1100  QEMU Virtual Machine\n\t29c0  82G33/G31/P35/P31 Express DRAM Controller\n1af4  Red Hat, Inc.\n\t1000  Virtio network device\nC 02  Network controller\n\t00  Ethernet controller\n";

    #[test]
    fn names_and_subset() {
        let wanted = [(0x8086, 0x100e), (0x1af4, 0x1000)].into_iter().collect();
        let n = names_from_ids(IDS, &wanted);
        assert_eq!(n[&(0x8086, None)], "Intel Corporation");
        assert_eq!(
            n[&(0x8086, Some(0x100e))],
            "82540EM Gigabit Ethernet Controller"
        );
        assert_eq!(n[&(0x1af4, Some(0x1000))], "Virtio network device");
        assert!(!n.contains_key(&(0x8086, Some(0x29c0))));
        let dev = PciDevice {
            address: "0000:00:02.0".into(),
            class: 0x020000,
            vendor_id: 0x8086,
            device_id: 0x100e,
            revision: Some(3),
            vendor_name: None,
            device_name: None,
            driver: None,
        };
        let sub = subset_of_ids(IDS, std::slice::from_ref(&dev));
        let again = names_from_ids(&sub, &[(0x8086, 0x100e)].into_iter().collect());
        assert_eq!(again.len(), 2);
        assert!(dev.is_network() && !dev.is_usb());
        assert_eq!(
            dev.describe(),
            "Vendor 8086 Device 100e [8086:100e] (rev 03)"
        );
    }

    proptest::proptest! {
        #[test]
        fn ids_never_panic(s in "\\PC{0,300}") {
            let _ = names_from_ids(&s, &[(0x8086u16, 0x100eu16)].into_iter().collect());
        }
    }
}
