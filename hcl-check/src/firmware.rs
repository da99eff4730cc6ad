//! Firmware and platform identity: UEFI or legacy BIOS, Secure Boot, TPM,
//! and the DMI strings (vendor, product, BIOS version, chassis type) that
//! qubes-hcl-report puts in its `brand`, `model`, `bios` and `type` keys.

use crate::root::Root;
use serde::Serialize;

const EFIVARS: &str = "/sys/firmware/efi/efivars";
const SECURE_BOOT_VAR: &str =
    "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BootMode {
    Uefi,
    Bios,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Firmware {
    pub boot_mode: BootMode,
    /// `Ok(on)` from the SecureBoot EFI variable; `Err(reason)` otherwise.
    #[serde(serialize_with = "crate::fact::serialize")]
    pub secure_boot: Result<bool, String>,
    /// "2.0", "1.2", or why there is none.
    #[serde(serialize_with = "crate::fact::serialize")]
    pub tpm: Result<String, String>,
    pub dmi: Dmi,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Dmi {
    pub sys_vendor: Option<String>,
    pub product_name: Option<String>,
    pub product_version: Option<String>,
    pub board_vendor: Option<String>,
    pub board_name: Option<String>,
    pub bios_vendor: Option<String>,
    pub bios_version: Option<String>,
    pub bios_date: Option<String>,
    pub chassis_type: Option<u8>,
}

/// SMBIOS chassis type names, as dmidecode prints them.
pub fn chassis_name(code: u8) -> &'static str {
    const NAMES: [&str; 37] = [
        "Unknown",
        "Other",
        "Unknown",
        "Desktop",
        "Low Profile Desktop",
        "Pizza Box",
        "Mini Tower",
        "Tower",
        "Portable",
        "Laptop",
        "Notebook",
        "Hand Held",
        "Docking Station",
        "All In One",
        "Sub Notebook",
        "Space-saving",
        "Lunch Box",
        "Main Server Chassis",
        "Expansion Chassis",
        "Sub Chassis",
        "Bus Expansion Chassis",
        "Peripheral Chassis",
        "RAID Chassis",
        "Rack Mount Chassis",
        "Sealed-case PC",
        "Multi-system",
        "CompactPCI",
        "AdvancedTCA",
        "Blade",
        "Blade Enclosing",
        "Tablet",
        "Convertible",
        "Detachable",
        "IoT Gateway",
        "Embedded PC",
        "Mini PC",
        "Stick PC",
    ];
    NAMES
        .get((code & 0x7f) as usize)
        .copied()
        .unwrap_or("Unknown")
}

impl Dmi {
    pub fn read(root: &Root) -> Self {
        let a = |f: &str| {
            root.read_attr(&format!("/sys/class/dmi/id/{f}"))
                .ok()
                .filter(|s| !s.is_empty())
        };
        Dmi {
            sys_vendor: a("sys_vendor"),
            product_name: a("product_name"),
            product_version: a("product_version"),
            board_vendor: a("board_vendor"),
            board_name: a("board_name"),
            bios_vendor: a("bios_vendor"),
            bios_version: a("bios_version"),
            bios_date: a("bios_date"),
            chassis_type: a("chassis_type").and_then(|s| s.parse().ok()),
        }
    }

    /// Brand and model as qubes-hcl-report picks them (board strings when
    /// the system strings are the "O.E.M." placeholder).
    pub fn brand_model(&self) -> (String, String) {
        let oem = matches!(
            self.sys_vendor.as_deref(),
            Some("O.E.M" | "O.E.M." | "To Be Filled By O.E.M.")
        );
        if oem {
            (
                self.board_vendor.clone().unwrap_or_default(),
                self.board_name.clone().unwrap_or_default(),
            )
        } else {
            (
                self.sys_vendor.clone().unwrap_or_default(),
                self.product_name.clone().unwrap_or_default(),
            )
        }
    }
}

impl Firmware {
    pub fn read(root: &Root) -> Self {
        let boot_mode = if root.exists("/sys/firmware/efi") {
            BootMode::Uefi
        } else {
            BootMode::Bios
        };
        let secure_boot = match boot_mode {
            BootMode::Bios => Err("legacy BIOS boot has no Secure Boot".to_string()),
            BootMode::Uefi => match root.read_bytes(SECURE_BOOT_VAR) {
                // 4 bytes of attributes, then the value.
                Ok(b) if b.len() >= 5 => Ok(b[4] == 1),
                Ok(_) => Err("the SecureBoot EFI variable is too short".to_string()),
                // Variables readable but no SecureBoot one: the firmware does
                // not support Secure Boot (mokutil says the same).
                Err(m) if m.is_absent() && root.list(EFIVARS).is_ok_and(|v| !v.is_empty()) => {
                    Ok(false)
                }
                Err(m) if m.is_absent() => Err(format!(
                    "{EFIVARS} is empty or missing (efivarfs not mounted?)"
                )),
                Err(m) => Err(m.reason().to_string()),
            },
        };
        let tpm = match root.read_attr("/sys/class/tpm/tpm0/tpm_version_major") {
            Ok(v) if v == "2" => Ok("2.0".to_string()),
            Ok(v) if v == "1" => Ok("1.2".to_string()),
            Ok(v) => Ok(v),
            Err(_) if root.exists("/sys/class/tpm/tpm0/pcrs") => Ok("1.2".to_string()),
            Err(_) if root.exists("/sys/class/tpm/tpm0") => {
                Ok("present, version unknown".to_string())
            }
            Err(_) => Err("no TPM device in /sys/class/tpm".to_string()),
        };
        Firmware {
            boot_mode,
            secure_boot,
            tpm,
            dmi: Dmi::read(root),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chassis_names() {
        assert_eq!(chassis_name(10), "Notebook");
        assert_eq!(chassis_name(3), "Desktop");
        assert_eq!(chassis_name(1), "Other");
        assert_eq!(chassis_name(200), "Unknown");
    }
}
