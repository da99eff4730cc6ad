//! Memory: MemTotal from /proc/meminfo and the installed size from the
//! SMBIOS memory-device records (type 17) in /sys/firmware/dmi/entries.
//!
//! MemTotal is smaller than what is installed (firmware reservations,
//! integrated graphics, the kernel itself), so a nominal 4 GiB machine reads
//! about 3.6-3.9 GiB. The installed size is used when SMBIOS is readable.

use crate::root::Root;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Dimm {
    pub size_mib: u64,
    pub locator: String,
    /// DDR3, DDR4, ... when the record says.
    pub kind: Option<String>,
    pub manufacturer: Option<String>,
    pub part_number: Option<String>,
    /// Only kept with --include-identifiers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Memory {
    /// MemTotal in bytes, or why it is unknown.
    #[serde(serialize_with = "crate::fact::serialize")]
    pub mem_total: Result<u64, String>,
    /// Sum of the populated SMBIOS memory devices, or why it is unknown.
    #[serde(serialize_with = "crate::fact::serialize")]
    pub installed: Result<u64, String>,
    pub dimms: Vec<Dimm>,
}

/// MemTotal in bytes from /proc/meminfo text.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix("MemTotal:")?;
        let mut it = rest.split_whitespace();
        let n: u64 = it.next()?.parse().ok()?;
        match it.next() {
            Some("kB") | None => n.checked_mul(1024),
            _ => None,
        }
    })
}

/// SMBIOS strings following the formatted area; index 1 is the first.
fn smbios_strings(raw: &[u8], formatted_len: usize) -> Vec<String> {
    let Some(rest) = raw.get(formatted_len..) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in rest.split(|b| *b == 0) {
        if s.is_empty() {
            break;
        }
        out.push(String::from_utf8_lossy(s).trim().to_string());
    }
    out
}

fn smbios_string(strings: &[String], idx: Option<&u8>) -> Option<String> {
    let i = *idx? as usize;
    if i == 0 {
        return None;
    }
    strings.get(i - 1).filter(|s| !s.is_empty()).cloned()
}

fn memory_type(code: u8) -> Option<&'static str> {
    Some(match code {
        0x12 => "DDR",
        0x13 => "DDR2",
        0x18 => "DDR3",
        0x1a => "DDR4",
        0x1b => "LPDDR",
        0x1c => "LPDDR2",
        0x1d => "LPDDR3",
        0x1e => "LPDDR4",
        0x22 => "DDR5",
        0x23 => "LPDDR5",
        0x07 => "RAM",
        _ => return None,
    })
}

/// Parses one SMBIOS type 17 record; `None` if it is not one or is empty.
pub fn parse_type17(raw: &[u8]) -> Option<Dimm> {
    if raw.first() != Some(&17) {
        return None;
    }
    let len = *raw.get(1)? as usize;
    if len < 0x15 || raw.len() < len {
        return None;
    }
    let size = u16::from_le_bytes([raw[0x0c], raw[0x0d]]);
    let size_mib = match size {
        0 | 0xffff => return None,
        0x7fff => {
            let ext = raw.get(0x1c..0x20)?;
            (u32::from_le_bytes(ext.try_into().ok()?) & 0x7fff_ffff) as u64
        }
        s if s & 0x8000 != 0 => ((s & 0x7fff) as u64) / 1024,
        s => s as u64,
    };
    if size_mib == 0 {
        return None;
    }
    let strings = smbios_strings(raw, len);
    Some(Dimm {
        size_mib,
        locator: smbios_string(&strings, raw.get(0x10)).unwrap_or_default(),
        kind: raw
            .get(0x12)
            .and_then(|c| memory_type(*c))
            .map(String::from),
        manufacturer: smbios_string(&strings, raw.get(0x17)),
        part_number: smbios_string(&strings, raw.get(0x1a)),
        serial: smbios_string(&strings, raw.get(0x18)),
    })
}

/// Replaces the serial-number and asset-tag strings of a type 17 record
/// with zeros of the same length (used by `capture`).
pub fn redact_type17(raw: &mut [u8]) {
    if raw.first() != Some(&17) {
        return;
    }
    let Some(&len) = raw.get(1) else { return };
    let len = len as usize;
    let wanted: Vec<usize> = [0x18usize, 0x19]
        .iter()
        .filter_map(|o| raw.get(*o).copied())
        .filter(|i| *i != 0 && len > 0x19)
        .map(|i| i as usize)
        .collect();
    let mut idx = 1;
    let mut o = len;
    while o < raw.len() && raw[o] != 0 {
        let end = raw[o..]
            .iter()
            .position(|b| *b == 0)
            .map_or(raw.len(), |p| o + p);
        if wanted.contains(&idx) {
            raw[o..end].iter_mut().for_each(|b| *b = b'0');
        }
        idx += 1;
        o = end + 1;
    }
}

impl Memory {
    pub fn read(root: &Root, keep_identifiers: bool) -> Self {
        let mem_total = root
            .read_string("/proc/meminfo")
            .map_err(|m| m.reason().to_string())
            .and_then(|t| {
                parse_meminfo(&t).ok_or_else(|| "/proc/meminfo has no MemTotal line".to_string())
            });
        let mut dimms = Vec::new();
        let installed = match root.list("/sys/firmware/dmi/entries") {
            Err(m) => Err(format!(
                "{} (SMBIOS entries need the dmi-sysfs module and root)",
                m.reason()
            )),
            Ok(names) => {
                let mut unreadable = None;
                for n in names.iter().filter(|n| n.starts_with("17-")) {
                    match root.read_bytes(&format!("/sys/firmware/dmi/entries/{n}/raw")) {
                        Ok(raw) => {
                            if let Some(mut d) = parse_type17(&raw) {
                                if !keep_identifiers {
                                    d.serial = None;
                                }
                                dimms.push(d);
                            }
                        }
                        Err(m) => unreadable = Some(m.reason().to_string()),
                    }
                }
                match (dimms.is_empty(), unreadable) {
                    (true, Some(r)) => Err(r),
                    (true, None) => {
                        Err("SMBIOS lists no populated memory device (type 17)".to_string())
                    }
                    (false, _) => Ok(dimms.iter().map(|d| d.size_mib << 20).sum()),
                }
            }
        };
        Memory {
            mem_total,
            installed,
            dimms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(size: u16, ext: u32) -> Vec<u8> {
        let mut r = vec![0u8; 0x28];
        r[0] = 17;
        r[1] = 0x28;
        r[0x0c..0x0e].copy_from_slice(&size.to_le_bytes());
        r[0x10] = 1;
        r[0x12] = 0x1a;
        r[0x17] = 2;
        r[0x18] = 3;
        r[0x1c..0x20].copy_from_slice(&ext.to_le_bytes());
        r.extend_from_slice(b"DIMM 0\0Samsung\0S3R14L\0\0");
        r
    }

    #[test]
    fn sizes_and_strings() {
        let d = parse_type17(&record(4096, 0)).unwrap();
        assert_eq!(d.size_mib, 4096);
        assert_eq!(d.locator, "DIMM 0");
        assert_eq!(d.kind.as_deref(), Some("DDR4"));
        assert_eq!(d.serial.as_deref(), Some("S3R14L"));
        assert_eq!(
            parse_type17(&record(0x7fff, 65536)).unwrap().size_mib,
            65536
        );
        assert_eq!(parse_type17(&record(0x8000 | 2048, 0)).unwrap().size_mib, 2);
        assert!(parse_type17(&record(0, 0)).is_none());
        let mut r = record(4096, 0);
        redact_type17(&mut r);
        let d = parse_type17(&r).unwrap();
        assert_eq!(d.serial.as_deref(), Some("000000"));
        assert_eq!(d.manufacturer.as_deref(), Some("Samsung"));
    }

    #[test]
    fn meminfo() {
        assert_eq!(
            parse_meminfo("MemTotal:        3880000 kB\nMemFree: 1 kB\n"),
            Some(3_880_000 * 1024)
        );
        assert_eq!(parse_meminfo("nothing"), None);
    }

    proptest::proptest! {
        #[test]
        fn meminfo_never_panics(s in "(MemTotal:[ 0-9]{0,25}(kB|MB)?|\\PC{0,30}|\n){0,6}") {
            let _ = parse_meminfo(&s);
        }

        #[test]
        fn type17_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..120)) {
            let _ = parse_type17(&bytes);
            let mut b = bytes.clone();
            redact_type17(&mut b);
        }
    }
}
