//! Reading the machine, verdicts per requirement, and the HCL report.
//!
//! [`Probe`] gathers a [`Machine`] from a root directory (`/` or a capture
//! made by [`capture::capture`]) and a CPUID source (the live CPU or a
//! `cpuid -r` dump); [`verdict::evaluate`] turns it into pass/warn/fail/
//! unknown verdicts; [`report`] prints them as a table, JSON
//! (`bulkhead.hcl/1`) or a Qubes HCL YAML report. Nothing here panics on
//! missing or malformed machine data: such facts become "unknown" with the
//! reason.

pub mod acpi;
pub mod capture;
pub mod cpu;
pub mod cpuinfo;
pub mod disks;
pub mod firmware;
pub mod input;
pub mod memory;
pub mod msr;
pub mod pci;
pub mod report;
pub mod requirement;
pub mod root;
pub mod verdict;

use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use cpu::{CpuFacts, CpuidDump, CpuidSource};
pub use requirement::Requirement;
pub use root::Root;
pub use verdict::{Report, Status, Verdict};

/// Name of the CPUID dump inside a capture, picked up automatically.
pub const CAPTURE_CPUID: &str = "cpuid.txt";

/// Failures that stop the probe altogether (exit status 3).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("root directory {0:?} does not exist or is not a directory")]
    NoRoot(PathBuf),
    #[error("cannot read the CPUID dump {path:?}: {source}")]
    DumpRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CPUID dump {path:?}: {source}")]
    Dump {
        path: PathBuf,
        source: cpu::DumpError,
    },
    #[error("capture into {path:?} failed: {what}: {source}")]
    Capture {
        path: PathBuf,
        what: String,
        source: std::io::Error,
    },
}

/// Serializes `Result<T, String>` facts as `{"value": ..}` or `{"unknown": "reason"}`.
pub(crate) mod fact {
    use serde::{Serialize, Serializer, ser::SerializeMap};
    pub fn serialize<T: Serialize, S: Serializer>(
        r: &Result<T, String>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        match r {
            Ok(v) => m.serialize_entry("value", v)?,
            Err(e) => m.serialize_entry("unknown", e)?,
        }
        m.end()
    }
}

/// An ACPI table as found: parsed, absent, unreadable or damaged.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase", tag = "state", content = "detail")]
pub enum Table<T> {
    Present(T),
    Absent(String),
    Unreadable(String),
    Invalid(String),
}

impl<T> Table<T> {
    pub fn present(&self) -> Option<&T> {
        match self {
            Table::Present(t) => Some(t),
            _ => None,
        }
    }
}

/// The IOMMU as the firmware describes it and as the kernel enabled it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IommuFacts {
    /// Whether /sys/firmware/acpi/tables could be listed.
    #[serde(serialize_with = "fact::serialize")]
    pub acpi_tables: Result<bool, String>,
    pub dmar: Table<acpi::Dmar>,
    pub ivrs: Table<acpi::Ivrs>,
    /// Units in /sys/class/iommu (dmar0, ivhd0, ...): enabled by the running kernel.
    #[serde(serialize_with = "fact::serialize")]
    pub kernel_units: Result<Vec<String>, String>,
}

fn read_table<T>(
    root: &Root,
    sig: &str,
    listing: &Result<bool, String>,
    parse: impl Fn(&[u8]) -> Result<T, acpi::AcpiError>,
) -> Table<T> {
    let path = format!("/sys/firmware/acpi/tables/{sig}");
    match root.read_bytes(&path) {
        Ok(b) => match parse(&b) {
            Ok(t) => Table::Present(t),
            Err(e) => Table::Invalid(format!("{path}: {e}")),
        },
        Err(m) if m.is_absent() => match listing {
            Ok(_) => Table::Absent(format!("the firmware provides no {sig} table")),
            Err(r) => Table::Unreadable(r.clone()),
        },
        Err(m) => Table::Unreadable(m.reason().to_string()),
    }
}

impl IommuFacts {
    pub fn read(root: &Root) -> Self {
        let acpi_tables = root
            .list("/sys/firmware/acpi/tables")
            .map(|_| true)
            .map_err(|m| format!("{} (no ACPI tables to read)", m.reason()));
        let dmar = read_table(root, "DMAR", &acpi_tables, acpi::Dmar::parse);
        let ivrs = read_table(root, "IVRS", &acpi_tables, acpi::Ivrs::parse);
        let kernel_units = root
            .list("/sys/class/iommu")
            .map_err(|m| m.reason().to_string());
        IommuFacts {
            acpi_tables,
            dmar,
            ivrs,
            kernel_units,
        }
    }
}

/// Whether this runs inside a virtual machine, and how we know.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VmFacts {
    pub inside_vm: bool,
    pub hypervisor: Option<String>,
    pub evidence: Vec<String>,
}

const VM_DMI: [(&str, &str); 10] = [
    ("QEMU", "QEMU"),
    ("Bochs", "Bochs"),
    ("VMware", "VMware"),
    ("innotek GmbH", "VirtualBox"),
    ("VirtualBox", "VirtualBox"),
    ("Xen", "Xen"),
    ("KVM", "KVM"),
    ("Parallels", "Parallels"),
    ("Amazon EC2", "Amazon EC2"),
    ("Google Compute Engine", "Google Compute Engine"),
];

impl VmFacts {
    pub fn detect(cpu: &CpuFacts, dmi: &firmware::Dmi, root: &Root) -> Self {
        let mut evidence = Vec::new();
        let mut hypervisor = None;
        if cpu.hypervisor_bit {
            let name = cpu.hypervisor_name().unwrap_or("unnamed hypervisor");
            let sig = cpu.hypervisor_vendor.clone().unwrap_or_default();
            evidence.push(format!(
                "CPUID hypervisor bit set, leaf 0x40000000 signature {sig:?} ({name})"
            ));
            hypervisor = Some(name.to_string());
        }
        for field in [&dmi.sys_vendor, &dmi.product_name, &dmi.bios_vendor] {
            let Some(v) = field else { continue };
            if let Some((_, name)) = VM_DMI.iter().find(|(needle, _)| v.contains(needle)) {
                evidence.push(format!("DMI string {v:?} names {name}"));
                hypervisor.get_or_insert_with(|| name.to_string());
            }
            if v == "Microsoft Corporation"
                && dmi.product_name.as_deref() == Some("Virtual Machine")
            {
                evidence.push("DMI product \"Virtual Machine\" by Microsoft (Hyper-V)".into());
                hypervisor.get_or_insert_with(|| "Hyper-V".into());
            }
        }
        if let Ok(t) = root.read_attr("/sys/hypervisor/type") {
            // Xen's control domain (dom0, e.g. Qubes itself) runs on the
            // real machine but sees the hardware through Xen.
            let dom0 = root
                .read_string("/proc/xen/capabilities")
                .is_ok_and(|c| c.contains("control_d"));
            if dom0 {
                evidence.push(format!("/sys/hypervisor/type is {t:?} and this is its control domain (dom0): CPU features are as Xen presents them"));
                hypervisor = Some("Xen (dom0)".into());
            } else {
                evidence.push(format!("/sys/hypervisor/type is {t:?}"));
                hypervisor.get_or_insert(t);
            }
        }
        VmFacts {
            inside_vm: !evidence.is_empty(),
            hypervisor,
            evidence,
        }
    }
}

/// Where the facts were read from.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Origin {
    pub root: String,
    /// "live" or the dump's path.
    pub cpuid: String,
}

/// Everything hcl-check knows about one machine.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Machine {
    pub origin: Origin,
    pub cpu: CpuFacts,
    #[serde(serialize_with = "fact::serialize")]
    pub cpuinfo: Result<cpuinfo::CpuInfo, String>,
    pub msr: msr::Msrs,
    pub iommu: IommuFacts,
    pub memory: memory::Memory,
    #[serde(serialize_with = "fact::serialize")]
    pub disks: Result<Vec<disks::Disk>, String>,
    pub firmware: firmware::Firmware,
    #[serde(serialize_with = "fact::serialize")]
    pub pci: Result<Vec<pci::PciDevice>, String>,
    #[serde(serialize_with = "fact::serialize")]
    pub keyboards: Result<Vec<input::Keyboard>, String>,
    pub vm: VmFacts,
    /// Kernel release of the probed system.
    pub kernel: Option<String>,
}

/// How to read a machine.
#[derive(Debug, Clone)]
pub struct Probe {
    pub root: PathBuf,
    /// A `cpuid -r` dump; `None` means the live CPU, unless the root is a
    /// capture holding `cpuid.txt`, which is then used.
    pub cpuid_dump: Option<PathBuf>,
    /// Keep serial numbers (DIMMs) in the facts.
    pub include_identifiers: bool,
}

impl Default for Probe {
    fn default() -> Self {
        Probe {
            root: PathBuf::from("/"),
            cpuid_dump: None,
            include_identifiers: false,
        }
    }
}

/// Reads and parses a `cpuid -r` dump file.
pub fn load_dump(path: &Path) -> Result<CpuidDump, ProbeError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProbeError::DumpRead {
        path: path.to_path_buf(),
        source,
    })?;
    CpuidDump::parse(&text).map_err(|source| ProbeError::Dump {
        path: path.to_path_buf(),
        source,
    })
}

impl Probe {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Probe {
            root: root.into(),
            ..Probe::default()
        }
    }

    /// The CPUID source this probe will use.
    pub fn cpuid_source(&self) -> Result<(CpuidSource, String), ProbeError> {
        let dump = match &self.cpuid_dump {
            Some(p) => Some(p.clone()),
            None if self.root != Path::new("/") => {
                let p = self.root.join(CAPTURE_CPUID);
                p.exists().then_some(p)
            }
            None => None,
        };
        match dump {
            Some(p) => Ok((
                CpuidSource::Dump(Arc::new(load_dump(&p)?)),
                p.display().to_string(),
            )),
            None => Ok((CpuidSource::Live, "live".to_string())),
        }
    }

    /// Gathers every fact. Only a missing root or a bad dump is an error.
    pub fn gather(&self) -> Result<Machine, ProbeError> {
        if !self.root.is_dir() {
            return Err(ProbeError::NoRoot(self.root.clone()));
        }
        let root = Root::new(&self.root);
        let (source, cpuid_origin) = self.cpuid_source()?;
        let cpu = CpuFacts::read(&source);
        let cpuinfo = root
            .read_string("/proc/cpuinfo")
            .map(|t| cpuinfo::CpuInfo::parse(&t))
            .map_err(|m| m.reason().to_string());
        let msr = msr::Msrs::read(&root, cpu.is_amd());
        let firmware = firmware::Firmware::read(&root);
        let vm = VmFacts::detect(&cpu, &firmware.dmi, &root);
        let keyboards = root
            .read_string("/proc/bus/input/devices")
            .map(|t| input::parse(&t))
            .map_err(|m| m.reason().to_string());
        Ok(Machine {
            origin: Origin {
                root: self.root.display().to_string(),
                cpuid: cpuid_origin,
            },
            iommu: IommuFacts::read(&root),
            memory: memory::Memory::read(&root, self.include_identifiers),
            disks: disks::read(&root),
            pci: pci::read(&root),
            kernel: root.read_attr("/proc/sys/kernel/osrelease").ok(),
            cpu,
            cpuinfo,
            msr,
            firmware,
            keyboards,
            vm,
        })
    }

    /// Gathers and evaluates.
    pub fn report(&self) -> Result<Report, ProbeError> {
        Ok(verdict::evaluate(self.gather()?))
    }
}

/// One full probe and evaluation of the live machine, for `cargo xtask
/// bench`: returns the time taken by each of `runs` probes.
#[cfg(feature = "bench")]
pub fn bench(runs: usize) -> Vec<std::time::Duration> {
    (0..runs)
        .map(|_| {
            let t = std::time::Instant::now();
            let r = Probe::default().report();
            std::hint::black_box(&r);
            t.elapsed()
        })
        .collect()
}
