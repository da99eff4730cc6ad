//! Model-specific registers, where readable: through /dev/cpu/0/msr on the
//! live system (root and the `msr` module), or from `msr.txt` in a capture
//! (`0x3a=0x5`, one register a line). Anything else is unknown.
//!
//! - IA32_FEATURE_CONTROL (0x3a): bit 0 lock, bit 2 VMX outside SMX. Locked
//!   with bit 2 clear means the firmware disabled VT-x.
//! - IA32_VMX_PROCBASED_CTLS2 (0x48b): allowed-1 bits in the high half;
//!   bit 1 of those is "enable EPT".
//! - AMD VM_CR (0xc0010114): bit 4 SVMDIS means the firmware disabled AMD-V.

use crate::root::Root;
use serde::Serialize;
use std::collections::BTreeMap;

pub const IA32_FEATURE_CONTROL: u32 = 0x3a;
pub const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48b;
pub const AMD_VM_CR: u32 = 0xc001_0114;

/// The registers hcl-check asks for.
pub const WANTED: [u32; 3] = [IA32_FEATURE_CONTROL, IA32_VMX_PROCBASED_CTLS2, AMD_VM_CR];

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Msrs {
    pub values: BTreeMap<u32, u64>,
    /// Why none or only some could be read.
    pub note: Option<String>,
}

impl Msrs {
    pub fn read(root: &Root, want_amd: bool) -> Self {
        if root.is_live() {
            return Self::read_live(want_amd);
        }
        match root.read_string("/msr.txt") {
            Ok(text) => Msrs {
                values: parse_msr_txt(&text),
                note: text
                    .lines()
                    .find_map(|l| l.strip_prefix("# unreadable: "))
                    .map(|n| format!("{n} (recorded at capture)")),
            },
            Err(m) => Msrs {
                values: BTreeMap::new(),
                note: Some(format!("no MSR values in the capture ({})", m.reason())),
            },
        }
    }

    #[cfg(target_os = "linux")]
    fn read_live(want_amd: bool) -> Self {
        use std::os::unix::fs::FileExt;
        let path = "/dev/cpu/0/msr";
        let f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                return Msrs {
                    values: BTreeMap::new(),
                    note: Some(format!(
                        "{path}: {e} (needs root and the msr kernel module: modprobe msr)"
                    )),
                };
            }
        };
        let mut values = BTreeMap::new();
        for reg in WANTED {
            if (reg == AMD_VM_CR) != want_amd {
                continue;
            }
            let mut buf = [0u8; 8];
            if f.read_exact_at(&mut buf, reg as u64).is_ok() {
                values.insert(reg, u64::from_le_bytes(buf));
            }
        }
        Msrs { values, note: None }
    }

    #[cfg(not(target_os = "linux"))]
    fn read_live(_want_amd: bool) -> Self {
        Msrs {
            values: BTreeMap::new(),
            note: Some("MSRs are read only on Linux".into()),
        }
    }

    /// `Some(true)` when the firmware locked VT-x off.
    pub fn vmx_disabled_by_firmware(&self) -> Option<bool> {
        let v = *self.values.get(&IA32_FEATURE_CONTROL)?;
        Some(v & 1 != 0 && v & (1 << 2) == 0)
    }

    /// EPT from the VMX capability MSR.
    pub fn ept_allowed(&self) -> Option<bool> {
        let v = *self.values.get(&IA32_VMX_PROCBASED_CTLS2)?;
        Some((v >> 32) & (1 << 1) != 0)
    }

    /// `Some(true)` when the firmware disabled AMD-V.
    pub fn svm_disabled_by_firmware(&self) -> Option<bool> {
        let v = *self.values.get(&AMD_VM_CR)?;
        Some(v & (1 << 4) != 0)
    }

    /// The `msr.txt` of a capture.
    pub fn to_text(&self) -> String {
        let mut out: String = self
            .values
            .iter()
            .map(|(k, v)| format!("0x{k:x}=0x{v:x}\n"))
            .collect();
        if let Some(n) = &self.note {
            out.push_str(&format!("# unreadable: {n}\n"));
        }
        out
    }
}

fn parse_msr_txt(text: &str) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once('=') else {
            continue;
        };
        let k = u32::from_str_radix(k.trim().trim_start_matches("0x"), 16);
        let v = u64::from_str_radix(v.trim().trim_start_matches("0x"), 16);
        if let (Ok(k), Ok(v)) = (k, v) {
            out.insert(k, v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_feature_control_and_ctls2() {
        let m = Msrs {
            values: parse_msr_txt("0x3a=0x1\n0x48b=0x0000000200000000\n"),
            note: None,
        };
        assert_eq!(m.vmx_disabled_by_firmware(), Some(true));
        assert_eq!(m.ept_allowed(), Some(true));
        let ok = Msrs {
            values: parse_msr_txt("0x3a=0x5\n"),
            note: None,
        };
        assert_eq!(ok.vmx_disabled_by_firmware(), Some(false));
        assert_eq!(ok.ept_allowed(), None);
        let back = parse_msr_txt(&m.to_text());
        assert_eq!(back, m.values);
    }
}
