//! The processor, through raw-cpuid: from the live CPU or from a recorded
//! `cpuid -r` dump (Debian package `cpuid`), so a report can be made for a
//! machine we do not have.
//!
//! Dump format, one leaf per line under a `CPU:` or `CPU N:` header:
//! `   0x00000001 0x00: eax=0x000806ea ebx=0x00100800 ecx=0x7ffafbff edx=0xbfebfbff`.
//! Only the first CPU's block is used. A leaf missing from the dump reads as
//! zeros, as on a CPU that does not implement it.

use raw_cpuid::{CpuId, CpuIdReader, CpuIdResult};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A `cpuid -r` dump that could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(
        "line {line} of the CPUID dump is not in `cpuid -r` format ({why}): {text:?}; \
         expected e.g. `0x00000001 0x00: eax=0x... ebx=0x... ecx=0x... edx=0x...`"
    )]
    Line {
        line: usize,
        why: &'static str,
        text: String,
    },
    #[error("the CPUID dump has no leaves; make it with `cpuid -r -1 > cpuid.txt`")]
    Empty,
    #[error("the CPUID dump has no leaf 0x00000000 (vendor), so the CPU cannot be identified")]
    NoVendorLeaf,
}

/// Recorded CPUID leaves of one logical CPU, keyed by (leaf, subleaf).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuidDump {
    pub leaves: BTreeMap<(u32, u32), CpuIdResult>,
}

fn hex_u32(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

impl CpuidDump {
    /// Parses `cpuid -r` (or `cpuid -r -1`) output.
    pub fn parse(text: &str) -> Result<Self, DumpError> {
        let mut leaves = BTreeMap::new();
        let mut cpu_blocks = 0usize;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            if line.starts_with("CPU") && line.ends_with(':') {
                cpu_blocks += 1;
                if cpu_blocks > 1 {
                    break;
                }
                continue;
            }
            if !line.starts_with("0x") {
                // `cpuid` prints a disclaimer line before the dump; other
                // prose is tolerated only before the first leaf.
                if leaves.is_empty() && cpu_blocks == 0 {
                    continue;
                }
                return Err(DumpError::Line {
                    line: i + 1,
                    why: "does not start with a leaf number",
                    text: raw.to_string(),
                });
            }
            let err = |why| DumpError::Line {
                line: i + 1,
                why,
                text: raw.to_string(),
            };
            let (head, regs) = line
                .split_once(':')
                .ok_or_else(|| err("no ':' after the leaf"))?;
            let mut head = head.split_whitespace();
            let leaf = head
                .next()
                .and_then(hex_u32)
                .ok_or_else(|| err("bad leaf number"))?;
            let sub = head
                .next()
                .and_then(hex_u32)
                .ok_or_else(|| err("bad subleaf number"))?;
            if head.next().is_some() {
                return Err(err("extra text before ':'"));
            }
            let mut vals = [None::<u32>; 4];
            for field in regs.split_whitespace() {
                let (name, value) = field
                    .split_once('=')
                    .ok_or_else(|| err("register without '='"))?;
                let idx = match name {
                    "eax" => 0,
                    "ebx" => 1,
                    "ecx" => 2,
                    "edx" => 3,
                    _ => return Err(err("unknown register name")),
                };
                if vals[idx].is_some() {
                    return Err(err("register given twice"));
                }
                vals[idx] = Some(
                    hex_u32(value)
                        .ok_or_else(|| err("register value is not 0x + up to 8 hex digits"))?,
                );
            }
            let [Some(eax), Some(ebx), Some(ecx), Some(edx)] = vals else {
                return Err(err("needs all of eax, ebx, ecx and edx"));
            };
            leaves.insert((leaf, sub), CpuIdResult { eax, ebx, ecx, edx });
        }
        if leaves.is_empty() {
            return Err(DumpError::Empty);
        }
        if !leaves.contains_key(&(0, 0)) {
            return Err(DumpError::NoVendorLeaf);
        }
        Ok(CpuidDump { leaves })
    }

    /// Writes the dump in `cpuid -r -1` format.
    pub fn to_text(&self) -> String {
        let mut out = String::from("CPU:\n");
        for ((leaf, sub), r) in &self.leaves {
            out.push_str(&format!(
                "   0x{leaf:08x} 0x{sub:02x}: eax=0x{:08x} ebx=0x{:08x} ecx=0x{:08x} edx=0x{:08x}\n",
                r.eax, r.ebx, r.ecx, r.edx
            ));
        }
        out
    }

    /// Records the live CPU's leaves the way `cpuid -r -1` does: every
    /// basic, hypervisor and extended leaf, with the subleaves of the leaves
    /// that have them.
    #[cfg(target_arch = "x86_64")]
    pub fn record_live() -> Self {
        use raw_cpuid::native_cpuid::cpuid_count;
        let mut leaves = BTreeMap::new();
        let mut put = |leaf: u32, sub: u32| {
            let r = cpuid_count(leaf, sub);
            leaves.insert((leaf, sub), r);
            r
        };
        let max_basic = put(0, 0).eax.min(0x7f);
        for leaf in 1..=max_basic {
            match leaf {
                4 => {
                    for sub in 0..16 {
                        if put(4, sub).eax & 0x1f == 0 {
                            break;
                        }
                    }
                }
                7 => {
                    let n = put(7, 0).eax.min(8);
                    for sub in 1..=n {
                        put(7, sub);
                    }
                }
                0xb | 0x1f => {
                    for sub in 0..8 {
                        if (put(leaf, sub).ecx >> 8) & 0xff == 0 && sub > 0 {
                            break;
                        }
                    }
                }
                0xd => {
                    for sub in 0..64 {
                        let r = cpuid_count(0xd, sub);
                        if sub < 2 || r.eax != 0 || r.ebx != 0 || r.ecx != 0 || r.edx != 0 {
                            put(0xd, sub);
                        }
                    }
                }
                0xf | 0x10 | 0x12 | 0x14 | 0x17 | 0x18 => {
                    for sub in 0..4 {
                        put(leaf, sub);
                    }
                }
                _ => {
                    put(leaf, 0);
                }
            }
        }
        let hv = put(0x4000_0000, 0).eax;
        if (0x4000_0001..=0x4000_00ff).contains(&hv) {
            for leaf in 0x4000_0001..=hv {
                put(leaf, 0);
            }
        }
        let max_ext = put(0x8000_0000, 0).eax;
        if (0x8000_0001..=0x8000_00ff).contains(&max_ext) {
            for leaf in 0x8000_0001..=max_ext {
                if leaf == 0x8000_001d {
                    // Like `cpuid`, without the terminating null subleaf.
                    for sub in 0..8 {
                        if cpuid_count(leaf, sub).eax & 0x1f == 0 {
                            break;
                        }
                        put(leaf, sub);
                    }
                } else {
                    put(leaf, 0);
                }
            }
        }
        // The vendor ranges `cpuid` also probes (Xen/Hyper-V second
        // range, Transmeta, Centaur/Zhaoxin, Xeon Phi).
        for base in [0x2000_0000u32, 0x4000_0100, 0x8086_0000, 0xc000_0000] {
            let top = put(base, 0).eax;
            if top > base && top - base < 0x20 {
                for leaf in base + 1..=top {
                    put(leaf, 0);
                }
            }
        }
        CpuidDump { leaves }
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub fn record_live() -> Self {
        CpuidDump::default()
    }

    fn get(&self, leaf: u32, sub: u32) -> CpuIdResult {
        self.leaves
            .get(&(leaf, sub))
            .copied()
            .unwrap_or(CpuIdResult {
                eax: 0,
                ebx: 0,
                ecx: 0,
                edx: 0,
            })
    }
}

/// Where CPUID answers come from.
#[derive(Debug, Clone)]
pub enum CpuidSource {
    Live,
    Dump(Arc<CpuidDump>),
}

impl CpuIdReader for CpuidSource {
    fn cpuid2(&self, eax: u32, ecx: u32) -> CpuIdResult {
        match self {
            #[cfg(target_arch = "x86_64")]
            CpuidSource::Live => raw_cpuid::native_cpuid::cpuid_count(eax, ecx),
            #[cfg(not(target_arch = "x86_64"))]
            CpuidSource::Live => CpuIdResult {
                eax: 0,
                ebx: 0,
                ecx: 0,
                edx: 0,
            },
            CpuidSource::Dump(d) => d.get(eax, ecx),
        }
    }
}

/// What the processor says about itself.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CpuFacts {
    /// "GenuineIntel", "AuthenticAMD", ...
    pub vendor: String,
    pub brand: String,
    pub family: u32,
    pub model: u32,
    pub stepping: u32,
    /// Long mode (64-bit), CPUID 0x80000001 EDX bit 29.
    pub long_mode: bool,
    /// Intel VT-x, CPUID 1 ECX bit 5.
    pub vmx: bool,
    /// AMD-V, CPUID 0x80000001 ECX bit 2.
    pub svm: bool,
    /// AMD nested paging (RVI), CPUID 0x8000000A EDX bit 0; `None` without SVM.
    pub npt: Option<bool>,
    /// CPUID 1 ECX bit 31: running under a hypervisor.
    pub hypervisor_bit: bool,
    /// Leaf 0x40000000 signature ("KVMKVMKVM", "TCGTCGTCGTCG", "XenVMMXenVMM", ...).
    pub hypervisor_vendor: Option<String>,
}

fn regs_text(words: &[u32]) -> String {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    String::from_utf8_lossy(&bytes)
        .trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_string()
}

impl CpuFacts {
    pub fn read(source: &CpuidSource) -> Self {
        let cpuid = CpuId::with_cpuid_reader(source.clone());
        let leaf0 = source.cpuid1(0);
        let vendor = regs_text(&[leaf0.ebx, leaf0.edx, leaf0.ecx]);
        let brand = cpuid
            .get_processor_brand_string()
            .map(|b| b.as_str().trim().to_string())
            .unwrap_or_default();
        let fi = cpuid.get_feature_info();
        let ext = cpuid.get_extended_processor_and_feature_identifiers();
        let (family, model, stepping) = fi
            .as_ref()
            .map(|f| {
                (
                    f.family_id() as u32,
                    f.model_id() as u32,
                    f.stepping_id() as u32,
                )
            })
            .unwrap_or((0, 0, 0));
        let vmx = fi.as_ref().is_some_and(|f| f.has_vmx());
        let hypervisor_bit = fi.as_ref().is_some_and(|f| f.has_hypervisor());
        // raw-cpuid only reports SVM for vendors it knows as AMD; read the
        // bit directly so Hygon and dumps of unknown vendors work too.
        let max_ext = source.cpuid1(0x8000_0000).eax;
        let e1 = if max_ext >= 0x8000_0001 {
            source.cpuid1(0x8000_0001)
        } else {
            CpuIdResult {
                eax: 0,
                ebx: 0,
                ecx: 0,
                edx: 0,
            }
        };
        let svm = e1.ecx & (1 << 2) != 0;
        let long_mode = ext.as_ref().is_some_and(|e| e.has_64bit_mode()) || e1.edx & (1 << 29) != 0;
        let npt = if svm {
            Some(max_ext >= 0x8000_000a && source.cpuid1(0x8000_000a).edx & 1 != 0)
        } else {
            None
        };
        let hypervisor_vendor = if hypervisor_bit {
            let h = source.cpuid1(0x4000_0000);
            let s = regs_text(&[h.ebx, h.ecx, h.edx]);
            (!s.is_empty()).then_some(s)
        } else {
            None
        };
        CpuFacts {
            vendor,
            brand,
            family,
            model,
            stepping,
            long_mode,
            vmx,
            svm,
            npt,
            hypervisor_bit,
            hypervisor_vendor,
        }
    }

    pub fn is_intel(&self) -> bool {
        self.vendor == "GenuineIntel"
    }

    pub fn is_amd(&self) -> bool {
        self.vendor == "AuthenticAMD" || self.vendor == "HygonGenuine"
    }

    /// A readable name for the hypervisor signature.
    pub fn hypervisor_name(&self) -> Option<&'static str> {
        let v = self.hypervisor_vendor.as_deref()?;
        Some(match v {
            "KVMKVMKVM" => "KVM",
            "TCGTCGTCGTCG" => "QEMU (TCG)",
            "XenVMMXenVMM" => "Xen",
            "Microsoft Hv" => "Hyper-V",
            "VMwareVMware" => "VMware",
            "VBoxVBoxVBox" => "VirtualBox",
            "bhyve bhyve" => "bhyve",
            "ACRNACRNACRN" => "ACRN",
            _ => "unknown hypervisor",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "Disclaimer: cpuid may not support decoding of all cpuid registers.\nCPU:\n   0x00000000 0x00: eax=0x0000000d ebx=0x68747541 ecx=0x444d4163 edx=0x69746e65\n   0x00000001 0x00: eax=0x00a00f11 ebx=0x00020800 ecx=0xfffa3203 edx=0x178bfbff\n   0x40000000 0x00: eax=0x40000001 ebx=0x4b4d564b ecx=0x564b4d56 edx=0x0000004d\n   0x80000000 0x00: eax=0x80000008 ebx=0x68747541 ecx=0x444d4163 edx=0x69746e65\n   0x80000001 0x00: eax=0x00a00f11 ebx=0x40000000 ecx=0x004003f3 edx=0x2fd3fbff\n";

    #[test]
    fn parses_and_reads_back() {
        let d = CpuidDump::parse(DUMP).unwrap();
        assert_eq!(d.leaves.len(), 5);
        let again = CpuidDump::parse(&d.to_text()).unwrap();
        assert_eq!(d, again);
        let f = CpuFacts::read(&CpuidSource::Dump(Arc::new(d)));
        assert_eq!(f.vendor, "AuthenticAMD");
        assert!(f.hypervisor_bit);
        assert_eq!(f.hypervisor_vendor.as_deref(), Some("KVMKVMKVM"));
        assert_eq!(f.hypervisor_name(), Some("KVM"));
        assert!(f.long_mode);
        assert!(!f.svm, "ecx bit 2 of 0x80000001 is clear in this dump");
        assert_eq!(f.npt, None);
    }

    #[test]
    fn only_the_first_cpu_block_is_used() {
        let two = "CPU 0:\n   0x00000000 0x00: eax=0x00000001 ebx=0x756e6547 ecx=0x6c65746e edx=0x49656e69\nCPU 1:\n   0x00000000 0x00: eax=0x00000002 ebx=0 ecx=0 edx=0\n";
        let d = CpuidDump::parse(two).unwrap();
        assert_eq!(d.leaves[&(0, 0)].eax, 1);
    }

    #[test]
    fn malformed_lines_are_named() {
        let bad = "CPU:\n   0x00000000 0x00: eax=0x0000000d ebx=0x68747541 ecx=0x444d4163 edx=0x69746e65\n   0x00000001 0x00: eax=0x00a00f11 ebx=zz ecx=0x0 edx=0x0\n";
        let e = CpuidDump::parse(bad).unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
        let missing = "CPU:\n   0x00000000 0x00: eax=0x1 ebx=0x2 ecx=0x3\n";
        let e = CpuidDump::parse(missing).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("edx"), "{e}");
        assert!(matches!(CpuidDump::parse(""), Err(DumpError::Empty)));
        assert!(matches!(
            CpuidDump::parse("   0x00000001 0x00: eax=0x1 ebx=0x2 ecx=0x3 edx=0x4\n"),
            Err(DumpError::NoVendorLeaf)
        ));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn live_recording_matches_the_live_reader() {
        let d = CpuidDump::record_live();
        let from_dump = CpuFacts::read(&CpuidSource::Dump(Arc::new(d)));
        let live = CpuFacts::read(&CpuidSource::Live);
        assert_eq!(from_dump, live);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,400}") {
            let _ = CpuidDump::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_near_miss_lines(
            leaf in "0x[0-9a-fA-F]{0,10}", sub in "0x[0-9a-f]{0,3}",
            regs in proptest::collection::vec("(eax|ebx|ecx|edx|foo)=0x[0-9a-f]{0,9}", 0..6)
        ) {
            let text = format!("CPU:\n   {leaf} {sub}: {}\n", regs.join(" "));
            let _ = CpuidDump::parse(&text);
        }
    }
}
