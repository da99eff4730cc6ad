//! Verdicts per requirement (docs: /work/shared/architecture.md, "Hardware
//! requirements"): pass, warn (needs explicit consent), fail (blocks the
//! install) or unknown (could not be read; treated like a warning).
//!
//! RAM uses the installed size from SMBIOS when readable. Otherwise it uses
//! MemTotal with a tolerance of 15% of the threshold, because MemTotal
//! excludes firmware reservations, graphics memory and the kernel: a
//! nominal 4 GiB machine reads about 3.6-3.9 GiB and must pass, so 4 GiB is
//! met from 3.4 GiB of MemTotal and 6 GiB from 5.1 GiB.

use crate::requirement::Requirement;
use crate::{Machine, Table, firmware::BootMode};
use serde::Serialize;

pub const SCHEMA: &str = "bulkhead.hcl/1";
pub const GIB: u64 = 1 << 30;
pub const RAM_MIN: u64 = 4 * GIB;
pub const RAM_WARN: u64 = 6 * GIB;
pub const RAM_RECOMMENDED: u64 = 16 * GIB;
/// Share of a RAM threshold that MemTotal may fall short of it.
pub const MEMTOTAL_TOLERANCE_PERCENT: u64 = 15;
pub const DISK_MIN: u64 = 32 * GIB;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Unknown,
    Warn,
    Fail,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Unknown => "UNKNOWN",
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Verdict {
    /// Which requirement; serialized as its id.
    pub id: Requirement,
    pub requirement: &'static str,
    pub status: Status,
    pub measured: String,
    pub threshold: String,
    pub reason: String,
    pub remedy: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub overall: Status,
    pub exit_code: i32,
    pub verdicts: Vec<Verdict>,
    pub notes: Vec<String>,
    pub machine: Machine,
}

/// Exit status for an overall status: 0 pass, 1 warnings or unknowns, 2 fail.
pub fn exit_code(s: Status) -> i32 {
    match s {
        Status::Pass => 0,
        Status::Warn | Status::Unknown => 1,
        Status::Fail => 2,
    }
}

/// "29.8 GiB (32.0 GB)": both units, so nobody confuses them.
pub fn both_units(bytes: u64) -> String {
    format!(
        "{:.1} GiB ({:.1} GB)",
        bytes as f64 / GIB as f64,
        bytes as f64 / 1e9
    )
}

pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / GIB as f64)
}

fn v(
    id: Requirement,
    status: Status,
    measured: String,
    threshold: &str,
    reason: String,
    remedy: Option<&str>,
) -> Verdict {
    Verdict {
        id,
        requirement: id.title(),
        status,
        measured,
        threshold: threshold.to_string(),
        reason,
        remedy: remedy.map(String::from),
    }
}

fn in_vm_hint(m: &Machine) -> String {
    match (&m.vm.inside_vm, &m.vm.hypervisor) {
        (true, Some(h)) => format!(
            " This runs inside a virtual machine ({h}): the hypervisor decides what the guest sees; run hcl-check on the real machine (e.g. from the Bulkhead live ISO)."
        ),
        (true, None) => {
            " This runs inside a virtual machine: run hcl-check on the real machine.".to_string()
        }
        _ => String::new(),
    }
}

fn cpu_64bit(m: &Machine) -> Verdict {
    let cpu = &m.cpu;
    let name = if cpu.brand.is_empty() {
        cpu.vendor.clone()
    } else {
        cpu.brand.clone()
    };
    if cpu.long_mode {
        v(
            Requirement::Cpu64Bit,
            Status::Pass,
            format!("{name}: 64-bit (long mode)"),
            "x86-64",
            "the CPU runs 64-bit code".into(),
            None,
        )
    } else {
        v(
            Requirement::Cpu64Bit,
            Status::Fail,
            format!("{name}: no long mode"),
            "x86-64",
            "Xen and Bulkhead need a 64-bit x86 CPU".into(),
            Some("use a machine with a 64-bit (x86-64) processor"),
        )
    }
}

fn virtualization(m: &Machine) -> Verdict {
    const ID: Requirement = Requirement::Virtualization;
    const NEED: &str = "Intel VT-x with EPT, or AMD-V with RVI (NPT)";
    let cpu = &m.cpu;
    let hint = in_vm_hint(m);
    let kernel_flags = m.cpuinfo.as_ref().ok();
    let intel_path = cpu.vmx || (cpu.is_intel() && !cpu.svm);
    let amd_path = cpu.svm || cpu.is_amd();
    if intel_path && cpu.vmx {
        let kernel_dropped_vmx =
            kernel_flags.is_some_and(|c| !c.flags.is_empty() && !c.has_flag("vmx"));
        if m.msr.vmx_disabled_by_firmware() == Some(true) || kernel_dropped_vmx {
            let how = if m.msr.vmx_disabled_by_firmware() == Some(true) {
                "IA32_FEATURE_CONTROL is locked with VMX disabled"
            } else {
                "the CPU has VT-x but the kernel reports it unusable (no 'vmx' in /proc/cpuinfo flags), which is how a firmware lock shows"
            };
            return v(
                ID,
                Status::Fail,
                "VT-x present but disabled by the firmware".into(),
                NEED,
                format!("{how}.{hint}"),
                Some(
                    "enable Intel VT-x (\"Intel Virtualization Technology\") in the firmware setup, then power the machine off and on",
                ),
            );
        }
        let ept = kernel_flags.and_then(|c| c.ept()).or(m.msr.ept_allowed());
        return match ept {
            Some(true) => v(
                ID,
                Status::Pass,
                "Intel VT-x with EPT".into(),
                NEED,
                "VT-x and EPT (extended page tables) are available".into(),
                None,
            ),
            Some(false) => v(
                ID,
                Status::Fail,
                "Intel VT-x without EPT".into(),
                NEED,
                format!("the CPU has VT-x but no EPT; Xen needs EPT (SLAT) for HVM qubes.{hint}"),
                Some("use a CPU with EPT (Intel Core i3/i5/i7 of 2010 or later)"),
            ),
            None => v(
                ID,
                Status::Unknown,
                "Intel VT-x, EPT unknown".into(),
                NEED,
                format!(
                    "EPT cannot be seen in CPUID; /proc/cpuinfo has no 'vmx flags' line ({}) and the VMX capability MSR is unreadable ({})",
                    m.cpuinfo
                        .as_ref()
                        .err()
                        .map_or("Linux 5.8+ prints it", |e| e.as_str()),
                    m.msr.note.as_deref().unwrap_or("not read")
                ),
                Some(
                    "run hcl-check as root on Linux 5.8 or later (the Bulkhead live ISO), or load the msr module",
                ),
            ),
        };
    }
    if amd_path && cpu.svm {
        let kernel_dropped_svm =
            kernel_flags.is_some_and(|c| !c.flags.is_empty() && !c.has_flag("svm"));
        if m.msr.svm_disabled_by_firmware() == Some(true) || kernel_dropped_svm {
            let how = if m.msr.svm_disabled_by_firmware() == Some(true) {
                "VM_CR.SVMDIS is set"
            } else {
                "the CPU has AMD-V but the kernel reports it unusable (no 'svm' in /proc/cpuinfo flags)"
            };
            return v(
                ID,
                Status::Fail,
                "AMD-V present but disabled by the firmware".into(),
                NEED,
                format!("{how}.{hint}"),
                Some("enable AMD-V (\"SVM Mode\") in the firmware setup"),
            );
        }
        return match cpu.npt {
            Some(true) => v(
                ID,
                Status::Pass,
                "AMD-V with RVI (NPT)".into(),
                NEED,
                "AMD-V and nested paging are available".into(),
                None,
            ),
            _ => v(
                ID,
                Status::Fail,
                "AMD-V without RVI (NPT)".into(),
                NEED,
                format!(
                    "the CPU has AMD-V but no nested paging; Xen needs it (SLAT) for HVM qubes.{hint}"
                ),
                Some("use a CPU with RVI/NPT (AMD Phenom or later)"),
            ),
        };
    }
    let (what, remedy) = if cpu.is_amd() {
        (
            "AMD CPU without AMD-V (SVM)",
            "enable AMD-V (\"SVM Mode\") in the firmware setup; if there is no such option, this CPU cannot run Bulkhead",
        )
    } else if cpu.is_intel() {
        (
            "Intel CPU without VT-x",
            "enable Intel VT-x in the firmware setup; if there is no such option, this CPU cannot run Bulkhead",
        )
    } else {
        (
            "neither VT-x nor AMD-V",
            "use a machine with Intel VT-x+EPT or AMD-V+RVI",
        )
    };
    let why = if m.vm.inside_vm {
        format!(
            "CPUID shows no hardware virtualization.{hint} Most hypervisors hide VT-x/AMD-V unless nested virtualization is enabled."
        )
    } else {
        "CPUID shows no hardware virtualization; the firmware may hide it when it is disabled in setup".to_string()
    };
    v(ID, Status::Fail, what.into(), NEED, why, Some(remedy))
}

const NO_IOMMU_CONSEQUENCE: &str = "without an IOMMU, sys-net and sys-usb give no isolation: the network and USB devices could read and write all memory, including dom0's";

fn iommu(m: &Machine) -> Verdict {
    const ID: Requirement = Requirement::Iommu;
    const NEED: &str = "Intel VT-d or AMD-Vi, with interrupt remapping";
    let i = &m.iommu;
    let hint = in_vm_hint(m);
    let kernel = match &i.kernel_units {
        Ok(u) if !u.is_empty() => Some(format!("enabled by the running kernel ({})", u.join(", "))),
        Ok(_) => Some("not enabled by the running kernel (Xen enables it itself; for Linux boot with intel_iommu=on)".into()),
        Err(_) => None,
    };
    let kernel_text = kernel.clone().map(|k| format!("; {k}")).unwrap_or_default();
    let intel_remedy = "enable Intel VT-d (\"Intel Virtualization Technology for Directed I/O\") in the firmware setup";
    let amd_remedy =
        "enable the IOMMU (\"AMD-Vi\", \"IOMMU\" or \"SVM/IOMMU\") in the firmware setup";
    let found = match (i.dmar.present(), i.ivrs.present()) {
        (Some(d), _) if !d.units.is_empty() => Some((
            "Intel VT-d",
            d.units.len(),
            d.intr_remap,
            d.header.checksum_valid,
        )),
        (_, Some(r)) if !r.units.is_empty() => Some((
            "AMD-Vi",
            r.iommu_count(),
            r.intr_remap(),
            r.header.checksum_valid,
        )),
        _ => None,
    };
    if let Some((kind, units, remap, checksum_ok)) = found {
        let measured = format!(
            "{kind}, {units} remapping unit{}, interrupt remapping {}",
            if units == 1 { "" } else { "s" },
            if remap { "yes" } else { "no" }
        );
        if !checksum_ok {
            return v(
                ID,
                Status::Warn,
                measured,
                NEED,
                "the firmware's IOMMU table has a bad checksum; Xen may refuse it".into(),
                Some("update the firmware (BIOS/UEFI)"),
            );
        }
        if !remap {
            return v(
                ID,
                Status::Warn,
                measured,
                NEED,
                format!(
                    "the IOMMU has no interrupt remapping: a device given to sys-net or sys-usb could forge interrupts (MSI) to attack Xen{kernel_text}"
                ),
                Some(
                    "enable interrupt remapping / x2APIC in the firmware setup, or update the firmware",
                ),
            );
        }
        return v(
            ID,
            Status::Pass,
            measured,
            NEED,
            format!("{kind} isolates devices given to sys-net and sys-usb{kernel_text}"),
            None,
        );
    }
    // No parsed table with units: decide between absent and unknown.
    if let Some(k) = &kernel
        && k.starts_with("enabled")
    {
        return v(
            ID,
            Status::Pass,
            format!("IOMMU {k}"),
            NEED,
            "the kernel runs an IOMMU; interrupt remapping could not be read from the ACPI tables"
                .into(),
            None,
        );
    }
    let unknown = match (&i.dmar, &i.ivrs) {
        (Table::Unreadable(r) | Table::Invalid(r), _) => Some(r.clone()),
        (_, Table::Unreadable(r) | Table::Invalid(r)) => Some(r.clone()),
        _ => None,
    };
    match unknown {
        Some(r) => v(
            ID,
            Status::Unknown,
            "IOMMU tables unreadable".into(),
            NEED,
            r,
            Some("run hcl-check as root"),
        ),
        None => {
            let remedy = if m.cpu.is_amd() {
                amd_remedy
            } else {
                intel_remedy
            };
            v(
                ID,
                Status::Warn,
                "no DMAR or IVRS table: no IOMMU".into(),
                NEED,
                format!(
                    "the firmware describes no IOMMU (it is missing or disabled in setup); {NO_IOMMU_CONSEQUENCE}.{hint}"
                ),
                Some(remedy),
            )
        }
    }
}

fn ram(m: &Machine) -> Verdict {
    const ID: Requirement = Requirement::Ram;
    let need = format!(
        "at least {} ({} or more avoids a warning; {} recommended)",
        gib(RAM_MIN),
        gib(RAM_WARN),
        gib(RAM_RECOMMENDED)
    );
    let remedy_min = "4 GiB RAM is the minimum, 8 GiB or more recommended: add memory";
    let (value, from_memtotal, measured) = match (&m.memory.installed, &m.memory.mem_total) {
        (Ok(inst), total) => {
            let extra = total
                .as_ref()
                .map(|t| format!(" (MemTotal {})", gib(*t)))
                .unwrap_or_default();
            (*inst, false, format!("{} installed{extra}", gib(*inst)))
        }
        (Err(_), Ok(total)) => (
            *total,
            true,
            format!("{} MemTotal, installed size unreadable", gib(*total)),
        ),
        (Err(a), Err(b)) => {
            return v(
                ID,
                Status::Unknown,
                "unknown".into(),
                &need,
                format!("{a}; {b}"),
                None,
            );
        }
    };
    let met = |threshold: u64| {
        if from_memtotal {
            value >= threshold - threshold * MEMTOTAL_TOLERANCE_PERCENT / 100
        } else {
            value >= threshold
        }
    };
    let tolerance = if from_memtotal {
        let why = m
            .memory
            .installed
            .as_ref()
            .err()
            .map(String::as_str)
            .unwrap_or("");
        format!(
            " (MemTotal is compared with a {MEMTOTAL_TOLERANCE_PERCENT}% tolerance, since it excludes firmware and graphics memory; the installed size is unknown: {why})"
        )
    } else {
        String::new()
    };
    if !met(RAM_MIN) {
        v(
            ID,
            Status::Fail,
            measured,
            &need,
            format!(
                "less than {} of RAM{tolerance}: dom0 and the default qubes do not fit",
                gib(RAM_MIN)
            ),
            Some(remedy_min),
        )
    } else if !met(RAM_WARN) {
        v(
            ID,
            Status::Warn,
            measured,
            &need,
            format!(
                "below {} (the current Qubes minimum){tolerance}: only a few qubes can run at once",
                gib(RAM_WARN)
            ),
            Some("8 GiB or more is recommended: add memory"),
        )
    } else {
        v(
            ID,
            Status::Pass,
            measured,
            &need,
            format!("enough memory{tolerance}"),
            None,
        )
    }
}

fn disk(m: &Machine) -> Verdict {
    const ID: Requirement = Requirement::Disk;
    let need = format!(
        "one disk of at least 32 GiB = {:.1} GB (128 GiB SSD recommended)",
        DISK_MIN as f64 / 1e9
    );
    let disks = match &m.disks {
        Ok(d) => d,
        Err(e) => {
            return v(
                ID,
                Status::Unknown,
                "unknown".into(),
                &need,
                e.clone(),
                Some("run hcl-check on Linux with /sys mounted"),
            );
        }
    };
    let Some(big) = disks.iter().max_by_key(|d| d.size_bytes) else {
        return v(
            ID,
            Status::Fail,
            "no disk found".into(),
            &need,
            "no disk to install onto was found in /sys/block".into(),
            Some("attach a disk of at least 32 GiB"),
        );
    };
    let label = format!(
        "{} {}{}",
        big.name,
        both_units(big.size_bytes),
        big.model
            .as_ref()
            .map(|m| format!(", {m}"))
            .unwrap_or_default()
    );
    if big.size_bytes >= DISK_MIN {
        v(
            ID,
            Status::Pass,
            format!("largest: {label}"),
            &need,
            "a disk is large enough".into(),
            None,
        )
    } else {
        v(
            ID,
            Status::Fail,
            format!("largest: {label}"),
            &need,
            format!(
                "no disk holds 32 GiB; sizes on labels are decimal GB (a \"32 GB\" disk holds {})",
                gib(32_000_000_000)
            ),
            Some("use a disk of at least 32 GiB (sold as 35 GB or more); 128 GiB SSD recommended"),
        )
    }
}

fn keyboard(m: &Machine) -> Verdict {
    const ID: Requirement = Requirement::Keyboard;
    const NEED: &str = "a PS/2, internal or other non-USB keyboard, or consent to a USB keyboard";
    let ks = match &m.keyboards {
        Ok(k) => k,
        Err(e) => {
            return v(ID, Status::Unknown, "unknown".into(), NEED, e.clone(), None);
        }
    };
    if ks.is_empty() {
        return v(
            ID,
            Status::Unknown,
            "no keyboard found".into(),
            NEED,
            "/proc/bus/input/devices lists no keyboard".into(),
            None,
        );
    }
    let names = ks
        .iter()
        .map(|k| k.name.clone())
        .collect::<Vec<_>>()
        .join(", ");
    if ks.iter().all(|k| k.is_usb()) {
        v(ID, Status::Warn, format!("only USB keyboards: {names}"), NEED, "sys-usb takes the USB controllers, so dom0 would lose its keyboard; the USB keyboard must then be passed to dom0 (qubes-input-proxy), which lets a compromised sys-usb type into dom0".into(), Some("use a non-USB keyboard, or accept the USB keyboard proxy (or no sys-usb) when asked"))
    } else {
        v(
            ID,
            Status::Pass,
            names,
            NEED,
            "dom0 keeps a keyboard that is not on USB".into(),
            None,
        )
    }
}

fn notes(m: &Machine) -> Vec<String> {
    let mut n = Vec::new();
    if m.origin.root != "/" && m.origin.cpuid == "live" {
        n.push(format!(
            "CPU facts come from the CPU running hcl-check, not from {} (it has no cpuid.txt; pass --cpuid-dump).",
            m.origin.root
        ));
    }
    if m.vm.inside_vm {
        n.push(format!(
            "Running inside a virtual machine{}: {}.",
            m.vm.hypervisor
                .as_ref()
                .map(|h| format!(" ({h})"))
                .unwrap_or_default(),
            m.vm.evidence.join("; ")
        ));
    }
    n.push(match m.firmware.boot_mode {
        BootMode::Uefi => format!(
            "Firmware: UEFI, Secure Boot {}.",
            match &m.firmware.secure_boot {
                Ok(true) => "on".to_string(),
                Ok(false) => "off".to_string(),
                Err(e) => format!("unknown ({e})"),
            }
        ),
        BootMode::Bios => "Firmware: legacy BIOS boot.".into(),
    });
    n.push(match &m.firmware.tpm {
        Ok(v) => format!("TPM {v} present (usable for Anti Evil Maid)."),
        Err(_) => "No TPM: Anti Evil Maid is not available (recommended, not required).".into(),
    });
    if let Ok(pci) = &m.pci {
        let net: Vec<String> = pci
            .iter()
            .filter(|d| d.is_network())
            .map(|d| format!("{} {}", d.address, d.describe()))
            .collect();
        let usb: Vec<String> = pci
            .iter()
            .filter(|d| d.is_usb())
            .map(|d| format!("{} {}", d.address, d.describe()))
            .collect();
        n.push(if net.is_empty() {
            "sys-net would receive no PCI network device.".into()
        } else {
            format!("sys-net would receive: {}.", net.join("; "))
        });
        n.push(if usb.is_empty() {
            "sys-usb would receive no USB controller.".into()
        } else {
            format!("sys-usb would receive: {}.", usb.join("; "))
        });
    }
    if !m.cpu.is_intel() {
        n.push("Recommended: an Intel CPU still receiving microcode updates.".into());
    }
    n
}

/// Evaluates every requirement.
pub fn evaluate(machine: Machine) -> Report {
    let verdicts = vec![
        cpu_64bit(&machine),
        virtualization(&machine),
        iommu(&machine),
        ram(&machine),
        disk(&machine),
        keyboard(&machine),
    ];
    let overall = verdicts
        .iter()
        .map(|v| v.status)
        .max()
        .unwrap_or(Status::Pass);
    Report {
        schema: SCHEMA,
        overall,
        exit_code: exit_code(overall),
        notes: notes(&machine),
        verdicts,
        machine,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_explicit() {
        assert_eq!(both_units(32_000_000_000), "29.8 GiB (32.0 GB)");
        assert_eq!(both_units(40 * GIB), "40.0 GiB (42.9 GB)");
        assert!(
            Status::Fail > Status::Warn
                && Status::Warn > Status::Unknown
                && Status::Unknown > Status::Pass
        );
        assert_eq!(exit_code(Status::Unknown), 1);
    }
}
