//! What first boot reads from the machine under the system root: PCI network
//! and USB controllers (sysfs class codes, as qubes-mgmt-salt's
//! `pci_net_devs`/`pci_usb_devs` grains do), whether every keyboard is a USB
//! keyboard, the newest VM kernel in `/var/lib/qubes/vm-kernels` (as the
//! initial-setup's "default kernel" task picks it), and how many CPUs dom0
//! has online (Xen gives dom0 every physical CPU unless told otherwise).

use std::path::Path;

/// Facts about the machine that change the plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Network controllers (`BB:DD.F`).
    pub net_pci: Vec<String>,
    /// USB controllers (`BB:DD.F`).
    pub usb_pci: Vec<String>,
    /// At least one keyboard exists and all keyboards sit on USB.
    pub usb_keyboard_only: bool,
    /// The newest VM kernel version, if any is installed.
    pub kernel: Option<String>,
    /// CPUs online (sysfs `devices/system/cpu/online`), if readable.
    pub cpus: Option<u32>,
}

impl Facts {
    /// Reads the facts from sysfs and /var/lib/qubes under `root`; anything
    /// absent (as under a plain directory) reads as "none found".
    pub fn probe(root: &Path) -> Facts {
        let (net_pci, usb_pci) = pci_controllers(&root.join("sys/bus/pci/devices"));
        Facts {
            net_pci,
            usb_pci,
            usb_keyboard_only: usb_keyboard_only(&root.join("sys/class/input")),
            kernel: newest_kernel(&root.join(names::VM_KERNELS)),
            cpus: std::fs::read_to_string(root.join("sys/devices/system/cpu/online"))
                .ok()
                .and_then(|l| cpu_count(&l)),
        }
    }
}

/// The number of CPUs in a sysfs CPU list such as `0-3,6,8-9`; `None`
/// for anything else.
pub fn cpu_count(list: &str) -> Option<u32> {
    let mut n = 0u32;
    for part in list.trim().split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let a = part.parse::<u32>().ok()?;
                (a, a)
            }
        };
        n = n.checked_add(b.checked_sub(a)?.checked_add(1)?)?;
    }
    Some(n)
}

/// Checks a `BB:DD.F` PCI address.
pub fn check_bdf(bdf: &str) -> Result<(), String> {
    let b = bdf.as_bytes();
    let hex = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_hexdigit);
    if b.len() == 7
        && b[2] == b':'
        && b[5] == b'.'
        && hex(0..2)
        && hex(3..5)
        && (b'0'..=b'7').contains(&b[6])
    {
        Ok(())
    } else {
        Err(format!(
            "{bdf:?} is not a PCI address of the form BB:DD.F (e.g. 00:14.0)"
        ))
    }
}

fn pci_controllers(dir: &Path) -> (Vec<String>, Vec<String>) {
    let mut net = Vec::new();
    let mut usb = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (net, usb);
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // 0000:00:14.0 -> 00:14.0 (Qubes' ids leave out the domain 0000).
        let Some(bdf) = name.strip_prefix("0000:") else {
            continue;
        };
        let Ok(class) = std::fs::read_to_string(e.path().join("class")) else {
            continue;
        };
        let class = class.trim().trim_start_matches("0x");
        let Ok(class) = u32::from_str_radix(class, 16) else {
            continue;
        };
        if class >> 16 == 0x02 {
            net.push(bdf.to_string());
        } else if class >> 8 == 0x0c03 {
            usb.push(bdf.to_string());
        }
    }
    net.sort();
    usb.sort();
    (net, usb)
}

/// A keyboard is an input device whose key bitmap has the letter keys
/// (KEY_Q..KEY_P, codes 16..25). It is on USB when its sysfs path runs
/// through a USB device.
fn usb_keyboard_only(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let mut any = false;
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with("input") {
            continue;
        }
        let Ok(key) = std::fs::read_to_string(e.path().join("capabilities/key")) else {
            continue;
        };
        // The bitmap is printed as hex words, most significant first.
        let Some(low) = key.split_whitespace().last() else {
            continue;
        };
        let Ok(low) = u64::from_str_radix(low, 16) else {
            continue;
        };
        if low & (0x3ff << 16) != 0x3ff << 16 {
            continue;
        }
        any = true;
        let target = std::fs::canonicalize(e.path()).unwrap_or_else(|_| e.path());
        if !target.to_string_lossy().contains("/usb") {
            return false;
        }
    }
    any
}

fn newest_kernel(dir: &Path) -> Option<String> {
    let mut versions: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    versions.sort_by(|a, b| sysutil::natural_cmp(a, b));
    versions.pop()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn cpu_lists_are_counted_and_anything_else_is_unknown() {
        for (list, n) in [
            ("0\n", Some(1)),
            ("0-1\n", Some(2)),
            ("0-3,6,8-9", Some(7)),
            ("", None),
            ("3-1", None),
            ("0-x", None),
            ("0-4294967295", None),
        ] {
            assert_eq!(cpu_count(list), n, "{list:?}");
        }
        let d = tempfile::tempdir().unwrap();
        assert_eq!(Facts::probe(d.path()).cpus, None);
        let cpu = d.path().join("sys/devices/system/cpu");
        fs::create_dir_all(&cpu).unwrap();
        fs::write(cpu.join("online"), "0\n").unwrap();
        assert_eq!(Facts::probe(d.path()).cpus, Some(1));
    }

    #[test]
    fn pci_classes_and_kernels_are_read_from_the_root() {
        let d = tempfile::tempdir().unwrap();
        let pci = d.path().join("sys/bus/pci/devices");
        for (bdf, class) in [
            ("0000:00:19.0", "0x020000"),
            ("0000:00:14.0", "0x0c0330"),
            ("0000:00:02.0", "0x030000"),
            ("0000:03:00.0", "0x028000"),
        ] {
            fs::create_dir_all(pci.join(bdf)).unwrap();
            fs::write(pci.join(bdf).join("class"), format!("{class}\n")).unwrap();
        }
        for k in ["6.9.12-1", "6.10.1-1", "notes"] {
            fs::create_dir_all(d.path().join("var/lib/qubes/vm-kernels").join(k)).unwrap();
        }
        let f = Facts::probe(d.path());
        assert_eq!(f.net_pci, ["00:19.0", "03:00.0"]);
        assert_eq!(f.usb_pci, ["00:14.0"]);
        assert_eq!(f.kernel.as_deref(), Some("6.10.1-1"));
        assert!(!f.usb_keyboard_only);
    }

    #[test]
    fn keyboards_only_on_usb_are_detected() {
        let d = tempfile::tempdir().unwrap();
        let devs = d.path().join("devices");
        let class = d.path().join("sys/class/input");
        fs::create_dir_all(&class).unwrap();
        let add = |name: &str, parent: &str, key: &str| {
            let dev = devs.join(parent).join(name);
            fs::create_dir_all(dev.join("capabilities")).unwrap();
            fs::write(dev.join("capabilities/key"), key).unwrap();
            std::os::unix::fs::symlink(&dev, class.join(name)).unwrap();
        };
        // A USB keyboard and a USB mouse (no letter keys).
        add(
            "input3",
            "pci0000:00/0000:00:14.0/usb1/1-1",
            "1000000000007 ff9f207ac14057ff febeffdfffefffff fffffffffffffffe\n",
        );
        add(
            "input4",
            "pci0000:00/0000:00:14.0/usb1/1-2",
            "1f0000 0 0 0 0\n",
        );
        assert!(usb_keyboard_only(&class));
        // Add a PS/2 keyboard: no longer USB-only.
        add(
            "input0",
            "platform/i8042/serio0",
            "402000000 3803078f800d001 feffffdfffefffff fffffffffffffffe\n",
        );
        assert!(!usb_keyboard_only(&class));
    }

    #[test]
    fn bdf_check() {
        assert!(check_bdf("00:14.0").is_ok());
        assert!(check_bdf("0000:00:14.0").is_err());
        assert!(check_bdf("00:14.8").is_err());
    }
}
