//! `hcl-check capture DIR`: copies the files hcl-check reads into a tree
//! shaped like `/`, plus a `cpuid -r`-format dump of the live CPU
//! (`cpuid.txt`) and the readable MSRs (`msr.txt`), so
//! `hcl-check --root DIR` reproduces the report elsewhere.
//!
//! Identifiers are left out: no serial, UUID or MAC files are copied, and
//! the serial and asset-tag strings of SMBIOS memory records are zeroed
//! unless identifiers are asked for. Files that exist but cannot be read
//! (e.g. ACPI tables without root) are listed in `unreadable.txt` so the
//! capture does not claim they are absent.

use crate::{
    CAPTURE_CPUID, ProbeError, Root, cpu::CpuidDump, memory, msr, pci, root::UNREADABLE_LIST,
};
use std::path::{Path, PathBuf};

const FILES: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/bus/input/devices",
    "/proc/sys/kernel/osrelease",
    "/sys/hypervisor/type",
    "/proc/xen/capabilities",
    "/sys/class/tpm/tpm0/tpm_version_major",
    "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c",
];

const DMI_ATTRS: &[&str] = &[
    "sys_vendor",
    "product_name",
    "product_version",
    "board_vendor",
    "board_name",
    "bios_vendor",
    "bios_version",
    "bios_date",
    "chassis_type",
];

const PCI_ATTRS: &[&str] = &[
    "class",
    "vendor",
    "device",
    "revision",
    "subsystem_vendor",
    "subsystem_device",
];
const BLOCK_ATTRS: &[&str] = &[
    "size",
    "removable",
    "queue/rotational",
    "device/model",
    "device/vendor",
    "device/rev",
];

struct Writer {
    dir: PathBuf,
    unreadable: Vec<(String, String)>,
}

impl Writer {
    fn err(&self, what: String) -> impl FnOnce(std::io::Error) -> ProbeError + '_ {
        move |source| ProbeError::Capture {
            path: self.dir.clone(),
            what,
            source,
        }
    }

    fn write(&self, abs: &str, bytes: &[u8]) -> Result<(), ProbeError> {
        let p = self.dir.join(abs.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(self.err(format!("creating {}", parent.display())))?;
        }
        std::fs::write(&p, bytes).map_err(self.err(format!("writing {}", p.display())))
    }

    fn mkdir(&self, abs: &str) -> Result<(), ProbeError> {
        let p = self.dir.join(abs.trim_start_matches('/'));
        std::fs::create_dir_all(&p).map_err(self.err(format!("creating {}", p.display())))
    }

    /// Copies one file; absent files are skipped, unreadable ones recorded.
    fn copy(&mut self, live: &Root, abs: &str) -> Result<(), ProbeError> {
        match live.read_bytes(abs) {
            Ok(b) => self.write(abs, &b),
            Err(m) if m.is_absent() => Ok(()),
            Err(m) => {
                self.unreadable
                    .push((abs.to_string(), m.reason().to_string()));
                Ok(())
            }
        }
    }

    fn symlink(&self, abs: &str, target: &str) -> Result<(), ProbeError> {
        let p = self.dir.join(abs.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(self.err(format!("creating {}", parent.display())))?;
        }
        let _ = std::fs::remove_file(&p);
        #[cfg(unix)]
        std::os::unix::fs::symlink(target, &p)
            .map_err(self.err(format!("linking {}", p.display())))?;
        Ok(())
    }
}

/// Captures the machine behind `live` (normally `/`) into `dir`.
pub fn capture_from(live: &Root, dir: &Path, include_identifiers: bool) -> Result<(), ProbeError> {
    let mut w = Writer {
        dir: dir.to_path_buf(),
        unreadable: Vec::new(),
    };
    w.mkdir("/")?;
    for f in FILES {
        w.copy(live, f)?;
    }
    if live.exists("/sys/class/tpm/tpm0") {
        w.mkdir("/sys/class/tpm/tpm0")?;
    }
    if live.exists("/sys/firmware/efi") {
        w.mkdir("/sys/firmware/efi")?;
        // Only the names of the variables (their presence tells whether
        // efivarfs was readable); the SecureBoot value is copied above.
        if let Ok(vars) = live.list("/sys/firmware/efi/efivars") {
            for v in vars.iter().filter(|v| !v.starts_with("SecureBoot-")) {
                w.write(&format!("/sys/firmware/efi/efivars/{v}"), b"")?;
            }
        }
    }
    for a in DMI_ATTRS {
        w.copy(live, &format!("/sys/class/dmi/id/{a}"))?;
    }
    // ACPI: the listing proves which tables exist; DMAR and IVRS are copied.
    if let Ok(names) = live.list("/sys/firmware/acpi/tables") {
        w.mkdir("/sys/firmware/acpi/tables")?;
        for sig in ["DMAR", "IVRS"] {
            if names.iter().any(|n| n == sig) {
                w.copy(live, &format!("/sys/firmware/acpi/tables/{sig}"))?;
            }
        }
    } else if let Err(m) = live.list("/sys/firmware/acpi/tables")
        && !m.is_absent()
    {
        w.unreadable
            .push(("/sys/firmware/acpi/tables".into(), m.reason().to_string()));
    }
    match live.list("/sys/class/iommu") {
        Ok(units) => {
            w.mkdir("/sys/class/iommu")?;
            for u in units {
                w.mkdir(&format!("/sys/class/iommu/{u}"))?;
            }
        }
        Err(m) if !m.is_absent() => w
            .unreadable
            .push(("/sys/class/iommu".into(), m.reason().to_string())),
        Err(_) => {}
    }
    if let Ok(entries) = live.list("/sys/firmware/dmi/entries") {
        w.mkdir("/sys/firmware/dmi/entries")?;
        for e in entries.iter().filter(|e| e.starts_with("17-")) {
            let abs = format!("/sys/firmware/dmi/entries/{e}/raw");
            match live.read_bytes(&abs) {
                Ok(mut raw) => {
                    if !include_identifiers {
                        memory::redact_type17(&mut raw);
                    }
                    w.write(&abs, &raw)?;
                }
                Err(m) => w.unreadable.push((abs, m.reason().to_string())),
            }
        }
    }
    if let Ok(names) = live.list("/sys/block") {
        w.mkdir("/sys/block")?;
        for n in names.iter().filter(|n| !crate::disks::is_skipped(n)) {
            let base = format!("/sys/block/{n}");
            let target = live.link_target(&base).unwrap_or_default();
            // Keep the real device path (it tells the transport) as a link.
            let dev_dir = if target.starts_with("../devices/") {
                let d = format!("/sys/{}", target.trim_start_matches("../"));
                w.symlink(&base, &target)?;
                d
            } else {
                base.clone()
            };
            for a in BLOCK_ATTRS {
                if let Ok(b) = live.read_bytes(&format!("{base}/{a}")) {
                    w.write(&format!("{dev_dir}/{a}"), &b)?;
                }
            }
        }
    }
    if let Ok(devs) = pci::read(live) {
        for d in &devs {
            let base = format!("/sys/bus/pci/devices/{}", d.address);
            for a in PCI_ATTRS {
                w.copy(live, &format!("{base}/{a}"))?;
            }
            if let Some(drv) = &d.driver {
                w.symlink(
                    &format!("{base}/driver"),
                    &format!("../../../bus/pci/drivers/{drv}"),
                )?;
            }
        }
        if let Ok(ids) = live.read_string(pci::PCI_IDS) {
            w.write(pci::PCI_IDS, pci::subset_of_ids(&ids, &devs).as_bytes())?;
        }
    }
    w.write(
        &format!("/{CAPTURE_CPUID}"),
        CpuidDump::record_live().to_text().as_bytes(),
    )?;
    if live.is_live() {
        let amd = crate::CpuFacts::read(&crate::CpuidSource::Live).is_amd();
        let m = msr::Msrs::read(live, amd);
        w.write("/msr.txt", m.to_text().as_bytes())?;
    }
    let list: String = w
        .unreadable
        .iter()
        .map(|(p, r)| format!("{p}\t{r}\n"))
        .collect();
    if !list.is_empty() {
        w.write(&format!("/{UNREADABLE_LIST}"), list.as_bytes())?;
    }
    Ok(())
}

/// Captures this machine into `dir`.
pub fn capture(dir: &Path, include_identifiers: bool) -> Result<(), ProbeError> {
    capture_from(&Root::live(), dir, include_identifiers)
}
