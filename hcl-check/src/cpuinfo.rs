//! /proc/cpuinfo: the kernel's view of the first processor.
//!
//! CPUID cannot show Intel EPT; the kernel reads IA32_VMX_PROCBASED_CTLS2
//! and lists it on the `vmx flags` line (Linux 5.8+). The kernel also drops
//! `vmx` from `flags` when the firmware locked VT-x off, which is how
//! "disabled in firmware setup" shows without MSR access.

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CpuInfo {
    pub model_name: Option<String>,
    /// Every distinct `model name` (qubes-hcl-report lists them all).
    pub model_names: Vec<String>,
    pub flags: Vec<String>,
    /// `None` when the kernel printed no `vmx flags` line.
    pub vmx_flags: Option<Vec<String>>,
    pub processors: usize,
}

impl CpuInfo {
    pub fn parse(text: &str) -> Self {
        let mut info = CpuInfo::default();
        let mut first_block = true;
        for line in text.lines() {
            if line.trim().is_empty() {
                if info.processors > 0 {
                    first_block = false;
                }
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let key = key.trim();
            let value = value.trim();
            match key {
                "processor" => info.processors += 1,
                "model name" => {
                    if first_block && info.model_name.is_none() {
                        info.model_name = Some(value.to_string());
                    }
                    if !info.model_names.iter().any(|m| m == value) {
                        info.model_names.push(value.to_string());
                    }
                }
                "flags" if first_block && info.flags.is_empty() => {
                    info.flags = value.split_whitespace().map(String::from).collect();
                }
                "vmx flags" if first_block && info.vmx_flags.is_none() => {
                    info.vmx_flags = Some(value.split_whitespace().map(String::from).collect());
                }
                _ => {}
            }
        }
        info
    }

    pub fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }

    /// EPT as the kernel saw it: `Some(true/false)` from the `vmx flags`
    /// line, `None` when there is no such line.
    pub fn ept(&self) -> Option<bool> {
        self.vmx_flags
            .as_ref()
            .map(|v| v.iter().any(|f| f == "ept"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_processor() {
        let text = "processor\t: 0\nmodel name\t: Intel(R) Core(TM) i5-8350U CPU @ 1.70GHz\nflags\t\t: fpu vme vmx lm\nvmx flags\t: vnmi preemption_timer invvpid ept_x_only ept ept_ad flexpriority\n\nprocessor\t: 1\nmodel name\t: Intel(R) Core(TM) i5-8350U CPU @ 1.70GHz\nflags\t\t: fpu\n\n";
        let c = CpuInfo::parse(text);
        assert_eq!(c.processors, 2);
        assert!(c.has_flag("vmx"));
        assert_eq!(c.ept(), Some(true));
        assert_eq!(c.model_names.len(), 1);
        let no_line = CpuInfo::parse("processor : 0\nflags : fpu\n");
        assert_eq!(no_line.ept(), None);
        let no_ept = CpuInfo::parse("processor : 0\nvmx flags : vnmi ept_x_only\n");
        assert_eq!(no_ept.ept(), Some(false));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            let _ = CpuInfo::parse(&s);
        }
    }
}
