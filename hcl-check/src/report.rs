//! Printing a [`Report`]: a readable table, JSON, or a Qubes HCL YAML report.
//!
//! JSON schema `bulkhead.hcl/1` (stable keys; new keys may be added within
//! version 1, removals or meaning changes bump the version):
//! - `schema`: "bulkhead.hcl/1"
//! - `overall`: "pass" | "warn" | "unknown" | "fail"; `exit_code`: 0 | 1 | 2
//! - `verdicts[]`: `id` (cpu-64bit, virtualization, iommu, ram, disk,
//!   keyboard), `requirement`, `status`, `measured`, `threshold`, `reason`,
//!   `remedy` (string or null)
//! - `notes[]`: strings (virtual machine, firmware, TPM, sys-net/sys-usb devices)
//! - `machine`: every fact; a fact that may be missing is
//!   `{"value": ...}` or `{"unknown": "reason"}`, an ACPI table is
//!   `{"state": "present"|"absent"|"unreadable"|"invalid", "detail": ...}`.
//!
//! Identifiers (DIMM serial numbers) appear only with --include-identifiers;
//! MAC addresses, disk serials and UUIDs are never read.
//!
//! The YAML follows qubes-hcl-report (`layout`, `type`, `hvm`, `iommu`,
//! `slat`, `tpm`, `remap`, `brand`, `model`, `bios`, `cpu`, `cpu-short`,
//! `chipset`, `chipset-short`, `gpu`, `gpu-short`, `network`, `memory`,
//! `scsi`, `nvme`, `usb`, `certified`, `versions`) with its value
//! conventions: 'yes'/'no' flags, `tpm` '2.0'/'1.2'/'unknown', memory in MiB,
//! `usb` the number of USB controllers, lspci -nn style device lines, and
//! FIXME where a person must fill something in.

use crate::verdict::{Report, Status};
use crate::{Machine, firmware};

fn colour(s: Status) -> &'static str {
    match s {
        Status::Pass => "\x1b[32m",
        Status::Warn => "\x1b[33m",
        Status::Unknown => "\x1b[36m",
        Status::Fail => "\x1b[31m",
    }
}

fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            out.push_str(indent);
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(indent);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The readable table; `colour` adds ANSI colours (use only on a terminal).
pub fn table(r: &Report, use_colour: bool) -> String {
    let m = &r.machine;
    let mut out = String::new();
    let (brand, model) = m.firmware.dmi.brand_model();
    let name = format!("{brand} {model}");
    out.push_str(&format!(
        "Machine: {}\n",
        if name.trim().is_empty() {
            "unknown"
        } else {
            name.trim()
        }
    ));
    out.push_str(&format!(
        "CPU:     {}\n",
        if m.cpu.brand.is_empty() {
            &m.cpu.vendor
        } else {
            &m.cpu.brand
        }
    ));
    out.push('\n');
    let w_req = r
        .verdicts
        .iter()
        .map(|v| v.requirement.len())
        .max()
        .unwrap_or(10)
        .max(11);
    out.push_str(&format!(
        "{:<8} {:<w_req$} {}\n",
        "STATUS", "REQUIREMENT", "MEASURED"
    ));
    for v in &r.verdicts {
        let label = v.status.label();
        let status = if use_colour {
            format!("{}{label:<8}\x1b[0m", colour(v.status))
        } else {
            format!("{label:<8}")
        };
        out.push_str(&format!(
            "{status} {:<w_req$} {}\n",
            v.requirement, v.measured
        ));
        if v.status != Status::Pass {
            out.push_str(&wrap(
                &format!("needed: {}", v.threshold),
                90,
                "           ",
            ));
            out.push_str(&wrap(&format!("why: {}", v.reason), 90, "           "));
            if let Some(rem) = &v.remedy {
                out.push_str(&wrap(&format!("do: {rem}"), 90, "           "));
            }
        }
    }
    out.push('\n');
    for n in &r.notes {
        out.push_str(&wrap(n, 96, "- ").replacen("\n- ", "\n  ", usize::MAX));
    }
    let overall = match r.overall {
        Status::Pass => "all requirements met".to_string(),
        Status::Warn | Status::Unknown => {
            "installable after you accept the warnings above".to_string()
        }
        Status::Fail => "a requirement is not met: Bulkhead cannot be installed".to_string(),
    };
    out.push_str(&format!("\nResult: {} ({overall})\n", r.overall.label()));
    out
}

pub fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A YAML literal block (`key: |`) with one indented line per entry.
fn block(key: &str, lines: &[String]) -> String {
    let mut out = format!("{key}: |\n");
    if lines.is_empty() {
        out.push_str("  \n");
    }
    for l in lines {
        out.push_str("  ");
        out.push_str(l.trim_end());
        out.push('\n');
    }
    out
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The Qubes HCL report for this machine.
pub fn yaml(r: &Report) -> String {
    let m: &Machine = &r.machine;
    let dmi = &m.firmware.dmi;
    let (brand, model) = dmi.brand_model();
    let chassis = dmi
        .chassis_type
        .map(firmware::chassis_name)
        .unwrap_or("Unknown");
    let virt = r
        .verdicts
        .iter()
        .find(|v| v.id == crate::Requirement::Virtualization);
    let hvm = m.cpu.vmx || m.cpu.svm;
    let slat = match virt.map(|v| v.status) {
        Some(Status::Pass) => "yes",
        Some(Status::Unknown) => "",
        _ => "no",
    };
    let dmar = m.iommu.dmar.present().filter(|d| !d.units.is_empty());
    let ivrs = m.iommu.ivrs.present().filter(|i| !i.units.is_empty());
    let kernel_iommu = m.iommu.kernel_units.as_ref().is_ok_and(|u| !u.is_empty());
    let iommu = dmar.is_some() || ivrs.is_some() || kernel_iommu;
    let remap = dmar.is_some_and(|d| d.intr_remap) || ivrs.is_some_and(|i| i.intr_remap());
    let tpm = match &m.firmware.tpm {
        Ok(v) if v == "2.0" || v == "1.2" => v.clone(),
        _ => "unknown".to_string(),
    };
    let pci = m.pci.as_ref().map(|p| p.as_slice()).unwrap_or(&[]);
    let lines = |f: fn(&crate::pci::PciDevice) -> bool| -> Vec<String> {
        pci.iter().filter(|d| f(d)).map(|d| d.describe()).collect()
    };
    let cpu_lines: Vec<String> = match &m.cpuinfo {
        Ok(c) if !c.model_names.is_empty() => c.model_names.clone(),
        _ => vec![m.cpu.brand.clone()],
    };
    let memory_mib = m
        .memory
        .installed
        .as_ref()
        .or(m.memory.mem_total.as_ref())
        .map(|b| (b >> 20).to_string())
        .unwrap_or_default();
    let disks = m.disks.as_ref().map(|d| d.as_slice()).unwrap_or(&[]);
    let scsi: Vec<String> = disks
        .iter()
        .filter(|d| d.transport == "sata" || d.transport == "scsi" || d.transport == "usb")
        .filter_map(|d| d.model.clone())
        .collect();
    let nvme: Vec<String> = disks
        .iter()
        .filter(|d| d.transport == "nvme")
        .filter_map(|d| d.model.clone())
        .collect();
    let usb = pci.iter().filter(|d| d.is_usb()).count();
    let kernel = m.kernel.clone().unwrap_or_default();
    // As qubes-hcl-report: `uname -r | cut -d . -f -3`.
    let kernel_short: String = kernel.split('.').take(3).collect::<Vec<_>>().join(".");

    let mut y = String::from("---\nlayout:\n  'hcl'\n");
    y.push_str(&format!("type:\n  {}\n", quote(chassis)));
    y.push_str(&format!("hvm:\n  '{}'\n", yes_no(hvm)));
    y.push_str(&format!("iommu:\n  '{}'\n", yes_no(iommu)));
    y.push_str(&format!("slat:\n  '{slat}'\n"));
    y.push_str(&format!("tpm:\n  {}\n", quote(&tpm)));
    y.push_str(&format!("remap:\n  '{}'\n", yes_no(remap)));
    y.push_str(&block("brand", &[brand]));
    y.push_str(&block("model", &[model]));
    y.push_str(&block(
        "bios",
        &[dmi.bios_version.clone().unwrap_or_default()],
    ));
    y.push_str(&block("cpu", &cpu_lines));
    y.push_str(&block("cpu-short", &["FIXME".into()]));
    y.push_str(&block(
        "chipset",
        &lines(|d| d.is_host_bridge() && d.address.ends_with(":00:00.0")),
    ));
    y.push_str(&block("chipset-short", &["FIXME".into()]));
    y.push_str(&block("gpu", &lines(|d| d.is_display())));
    y.push_str(&block("gpu-short", &["FIXME".into()]));
    y.push_str(&block("network", &lines(|d| d.is_network())));
    y.push_str(&block("memory", &[memory_mib]));
    y.push_str(&block("scsi", &scsi));
    y.push_str(&block("nvme", &nvme));
    y.push_str(&block("usb", &[usb.to_string()]));
    y.push_str("certified:\n  'no'\n");
    y.push_str("versions:\n  - works:\n      'FIXME:yes|no|partial'\n    qubes: |\n      FIXME\n    xen: |\n      FIXME\n");
    y.push_str(&format!("    kernel: |\n      {kernel_short}\n"));
    y.push_str(
        "    remark: |\n      FIXME\n    credit: |\n      FIXAUTHOR\n    link: |\n      FIXLINK\n",
    );
    y
}
