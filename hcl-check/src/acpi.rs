//! ACPI DMAR (Intel VT-d) and IVRS (AMD-Vi) tables, from
//! /sys/firmware/acpi/tables.
//!
//! Written from the specifications (ACPI 6.5 §5.2.6 table header; Intel
//! VT-d specification ch. 8 "BIOS Considerations"; AMD IOMMU specification
//! §5.2 "IVRS"), because no maintained crate parses these two tables. The
//! parsers take arbitrary bytes: every length is checked before use, so a
//! damaged table gives an error, never a panic (property-tested below).

use serde::Serialize;

/// A table that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcpiError {
    #[error("{table} table is {len} bytes, shorter than its {min}-byte fixed part")]
    TooShort {
        table: &'static str,
        len: usize,
        min: usize,
    },
    #[error("expected a {expected} table, found signature {found:?}")]
    WrongSignature {
        expected: &'static str,
        found: String,
    },
    #[error("{table} table declares {declared} bytes but only {actual} were read")]
    Truncated {
        table: &'static str,
        declared: usize,
        actual: usize,
    },
    #[error("{table} table: {what} at offset {offset:#x} has length {len}, which does not fit")]
    BadStructure {
        table: &'static str,
        what: &'static str,
        offset: usize,
        len: usize,
    },
}

/// The standard 36-byte header of every ACPI table.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Header {
    pub signature: String,
    pub length: u32,
    pub revision: u8,
    pub oem_id: String,
    pub oem_table_id: String,
    /// All bytes of the table add up to 0 mod 256.
    pub checksum_valid: bool,
}

pub const HEADER_LEN: usize = 36;

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}
fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .trim_end_matches(['\0', ' '])
        .to_string()
}

/// Checks the header and returns it with the table cut to its declared length.
fn header<'a>(
    bytes: &'a [u8],
    expected: &'static str,
    min: usize,
) -> Result<(Header, &'a [u8]), AcpiError> {
    if bytes.len() < HEADER_LEN {
        return Err(AcpiError::TooShort {
            table: expected,
            len: bytes.len(),
            min,
        });
    }
    let sig = &bytes[0..4];
    if sig != expected.as_bytes() {
        return Err(AcpiError::WrongSignature {
            expected,
            found: String::from_utf8_lossy(sig).into_owned(),
        });
    }
    let length = u32_at(bytes, 4).unwrap_or(0);
    let declared = length as usize;
    if declared > bytes.len() {
        return Err(AcpiError::Truncated {
            table: expected,
            declared,
            actual: bytes.len(),
        });
    }
    if declared < min {
        return Err(AcpiError::TooShort {
            table: expected,
            len: declared,
            min,
        });
    }
    let table = &bytes[..declared];
    let sum = table.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    Ok((
        Header {
            signature: text(sig),
            length,
            revision: bytes[8],
            oem_id: text(&bytes[10..16]),
            oem_table_id: text(&bytes[16..24]),
            checksum_valid: sum == 0,
        },
        table,
    ))
}

/// A VT-d device scope entry (which devices or IOAPICs a unit covers).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeviceScope {
    /// 1 PCI endpoint, 2 PCI sub-hierarchy, 3 IOAPIC, 4 MSI-capable HPET, 5 ACPI namespace device.
    pub kind: u8,
    pub enumeration_id: u8,
    pub start_bus: u8,
    /// (device, function) pairs from the start bus.
    pub path: Vec<(u8, u8)>,
}

/// A DMA remapping hardware unit (DRHD): one VT-d engine.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Drhd {
    pub segment: u16,
    pub register_base: u64,
    /// Covers every PCI device of the segment not claimed by another unit.
    pub include_pci_all: bool,
    pub scopes: Vec<DeviceScope>,
}

/// The DMAR table.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Dmar {
    pub header: Header,
    /// DMA physical address width in bits (the field holds width - 1).
    pub host_address_width: u16,
    pub flags: u8,
    /// Flags bit 0: the platform supports interrupt remapping.
    pub intr_remap: bool,
    /// Flags bit 1: firmware asks the OS not to enable x2APIC mode.
    pub x2apic_opt_out: bool,
    /// Flags bit 2: DMA control opt-in.
    pub dma_ctrl_platform_opt_in: bool,
    pub units: Vec<Drhd>,
    /// Reserved memory regions (RMRR) the firmware keeps DMA-mapped.
    pub rmrr_count: usize,
    /// Other remapping structures (ATSR, RHSA, ANDD, SATC, ...).
    pub other_structures: usize,
}

const DMAR_FIXED: usize = 48;

impl Dmar {
    pub fn parse(bytes: &[u8]) -> Result<Self, AcpiError> {
        let (header, t) = header(bytes, "DMAR", DMAR_FIXED)?;
        let haw = t[36];
        let flags = t[37];
        let mut units = Vec::new();
        let mut rmrr_count = 0;
        let mut other_structures = 0;
        let mut off = DMAR_FIXED;
        while off < t.len() {
            let bad = |len| AcpiError::BadStructure {
                table: "DMAR",
                what: "remapping structure",
                offset: off,
                len,
            };
            let (Some(kind), Some(len)) = (u16_at(t, off), u16_at(t, off + 2)) else {
                return Err(bad(t.len() - off));
            };
            let len = len as usize;
            if len < 4 || off + len > t.len() {
                return Err(bad(len));
            }
            let s = &t[off..off + len];
            match kind {
                0 => {
                    if len < 16 {
                        return Err(bad(len));
                    }
                    let scopes = parse_scopes(s, 16, off)?;
                    units.push(Drhd {
                        include_pci_all: s[4] & 1 != 0,
                        segment: u16_at(s, 6).unwrap_or(0),
                        register_base: u64_at(s, 8).unwrap_or(0),
                        scopes,
                    });
                }
                1 => rmrr_count += 1,
                _ => other_structures += 1,
            }
            off += len;
        }
        Ok(Dmar {
            header,
            host_address_width: haw as u16 + 1,
            flags,
            intr_remap: flags & 1 != 0,
            x2apic_opt_out: flags & 2 != 0,
            dma_ctrl_platform_opt_in: flags & 4 != 0,
            units,
            rmrr_count,
            other_structures,
        })
    }
}

fn parse_scopes(s: &[u8], start: usize, base: usize) -> Result<Vec<DeviceScope>, AcpiError> {
    let mut out = Vec::new();
    let mut o = start;
    while o < s.len() {
        let len = s.get(o + 1).copied().unwrap_or(0) as usize;
        if len < 6 || o + len > s.len() {
            return Err(AcpiError::BadStructure {
                table: "DMAR",
                what: "device scope",
                offset: base + o,
                len,
            });
        }
        let e = &s[o..o + len];
        out.push(DeviceScope {
            kind: e[0],
            enumeration_id: e[4],
            start_bus: e[5],
            path: e[6..].chunks_exact(2).map(|p| (p[0], p[1])).collect(),
        });
        o += len;
    }
    Ok(out)
}

/// An IVHD "special device" entry (type 0x48): an IOAPIC or HPET behind the IOMMU.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SpecialDevice {
    /// 1 IOAPIC, 2 HPET.
    pub variety: u8,
    pub handle: u8,
    pub device_id: u16,
}

/// An I/O virtualization hardware definition (IVHD): one AMD IOMMU.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ivhd {
    /// 0x10, 0x11 or 0x40.
    pub kind: u8,
    pub flags: u8,
    /// PCI requester id of the IOMMU itself (bus << 8 | dev << 3 | fn).
    pub device_id: u16,
    pub capability_offset: u16,
    pub base_address: u64,
    pub segment: u16,
    pub iommu_info: u16,
    /// Type 0x10: IOMMU feature reporting; types 0x11/0x40: IOMMU attributes.
    pub features: u32,
    /// Image of the Extended Feature Register (types 0x11/0x40 only).
    pub efr: Option<u64>,
    pub special_devices: Vec<SpecialDevice>,
    /// Number of device entries (all types).
    pub device_entries: usize,
}

impl Ivhd {
    /// EFR bit 2 XTSup: interrupts to x2APIC destinations.
    pub fn xt_sup(&self) -> Option<bool> {
        self.efr.map(|e| e & (1 << 2) != 0)
    }
    /// EFR bit 7 GASup: guest virtual APIC.
    pub fn ga_sup(&self) -> Option<bool> {
        self.efr.map(|e| e & (1 << 7) != 0)
    }
    pub fn ioapics(&self) -> usize {
        self.special_devices
            .iter()
            .filter(|d| d.variety == 1)
            .count()
    }
}

/// The IVRS table.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ivrs {
    pub header: Header,
    pub ivinfo: u32,
    /// IVinfo bit 0: IVHD blocks of type 0x11/0x40 carry an EFR image.
    pub efr_sup: bool,
    /// IVinfo bits 14:8: physical address size.
    pub pa_size: u8,
    /// IVinfo bits 21:15: virtual address size.
    pub va_size: u8,
    pub units: Vec<Ivhd>,
    /// Memory definition blocks (IVMD).
    pub ivmd_count: usize,
}

const IVRS_FIXED: usize = 48;

impl Ivrs {
    pub fn parse(bytes: &[u8]) -> Result<Self, AcpiError> {
        let (header, t) = header(bytes, "IVRS", IVRS_FIXED)?;
        let ivinfo = u32_at(t, 36).unwrap_or(0);
        let mut units = Vec::new();
        let mut ivmd_count = 0;
        let mut off = IVRS_FIXED;
        while off < t.len() {
            let kind = t[off];
            let len = u16_at(t, off + 2).map(|l| l as usize).unwrap_or(0);
            if len < 4 || off + len > t.len() {
                return Err(AcpiError::BadStructure {
                    table: "IVRS",
                    what: "IVHD/IVMD block",
                    offset: off,
                    len,
                });
            }
            let b = &t[off..off + len];
            match kind {
                0x10 | 0x11 | 0x40 => units.push(parse_ivhd(b, off)?),
                0x20..=0x22 => ivmd_count += 1,
                _ => {}
            }
            off += len;
        }
        Ok(Ivrs {
            header,
            ivinfo,
            efr_sup: ivinfo & 1 != 0,
            pa_size: ((ivinfo >> 8) & 0x7f) as u8,
            va_size: ((ivinfo >> 15) & 0x7f) as u8,
            units,
            ivmd_count,
        })
    }

    /// Distinct IOMMUs: firmware may describe one IOMMU with several IVHD
    /// types (0x10, 0x11, 0x40) for OSes of different ages.
    pub fn iommu_count(&self) -> usize {
        let mut seen: Vec<(u16, u64)> = self
            .units
            .iter()
            .map(|u| (u.segment, u.base_address))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }

    /// Interrupt remapping usable: an IVHD lists an IOAPIC as a special
    /// device (without it Linux and Xen turn interrupt remapping off).
    pub fn intr_remap(&self) -> bool {
        self.units.iter().any(|u| u.ioapics() > 0)
    }
}

fn parse_ivhd(b: &[u8], base: usize) -> Result<Ivhd, AcpiError> {
    let kind = b[0];
    let hdr = if kind == 0x10 { 24 } else { 40 };
    if b.len() < hdr {
        return Err(AcpiError::BadStructure {
            table: "IVRS",
            what: "IVHD block",
            offset: base,
            len: b.len(),
        });
    }
    let mut special_devices = Vec::new();
    let mut device_entries = 0;
    let mut o = hdr;
    while o < b.len() {
        let t = b[o];
        let size = match t {
            0x00..=0x3f => 4,
            0xf0 => match b.get(o + 21) {
                Some(uid_len) => 22 + *uid_len as usize,
                None => usize::MAX,
            },
            0x40..=0x7f => 8,
            0x80..=0xbf => 16,
            _ => 32,
        };
        if size == usize::MAX || o + size > b.len() {
            return Err(AcpiError::BadStructure {
                table: "IVRS",
                what: "IVHD device entry",
                offset: base + o,
                len: b.len() - o,
            });
        }
        if t == 0x48 {
            special_devices.push(SpecialDevice {
                handle: b[o + 4],
                device_id: u16_at(b, o + 5).unwrap_or(0),
                variety: b[o + 7],
            });
        }
        if t != 0 {
            device_entries += 1;
        }
        o += size;
    }
    Ok(Ivhd {
        kind,
        flags: b[1],
        device_id: u16_at(b, 4).unwrap_or(0),
        capability_offset: u16_at(b, 6).unwrap_or(0),
        base_address: u64_at(b, 8).unwrap_or(0),
        segment: u16_at(b, 16).unwrap_or(0),
        iommu_info: u16_at(b, 18).unwrap_or(0),
        features: u32_at(b, 20).unwrap_or(0),
        efr: if kind == 0x10 { None } else { u64_at(b, 24) },
        special_devices,
        device_entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a table with a correct length and checksum.
    pub(crate) fn table(sig: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(sig);
        t.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_le_bytes());
        t.push(1);
        t.push(0);
        t.extend_from_slice(b"BHTEST");
        t.extend_from_slice(b"TESTTABL");
        t.extend_from_slice(&[0; 12]);
        t.extend_from_slice(body);
        let sum = t.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        t[9] = 0u8.wrapping_sub(sum);
        t
    }

    #[test]
    fn dmar_with_one_unit_and_ioapic_scope() {
        let mut body = vec![38, 0x01];
        body.extend_from_slice(&[0; 10]);
        let mut drhd = vec![0, 0, 24, 0, 1, 0, 0, 0];
        drhd.extend_from_slice(&0xfed9_0000u64.to_le_bytes());
        drhd.extend_from_slice(&[3, 8, 0, 0, 2, 0, 0x1e, 7]);
        body.extend_from_slice(&drhd);
        let t = table(b"DMAR", &body);
        let d = Dmar::parse(&t).unwrap();
        assert!(d.header.checksum_valid);
        assert!(d.intr_remap);
        assert_eq!(d.host_address_width, 39);
        assert_eq!(d.units.len(), 1);
        assert!(d.units[0].include_pci_all);
        assert_eq!(d.units[0].register_base, 0xfed9_0000);
        assert_eq!(d.units[0].scopes[0].kind, 3);
        assert_eq!(d.units[0].scopes[0].path, vec![(0x1e, 7)]);
    }

    #[test]
    fn damaged_tables_are_errors() {
        assert!(matches!(
            Dmar::parse(b"DMAR"),
            Err(AcpiError::TooShort { .. })
        ));
        let t = table(b"IVRS", &[0; 12]);
        assert!(matches!(
            Dmar::parse(&t),
            Err(AcpiError::WrongSignature { .. })
        ));
        let mut body = vec![38, 0];
        body.extend_from_slice(&[0; 10]);
        body.extend_from_slice(&[0, 0, 200, 0]);
        let t = table(b"DMAR", &body);
        assert!(matches!(
            Dmar::parse(&t),
            Err(AcpiError::BadStructure { .. })
        ));
        let mut t = table(b"DMAR", &[38, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        t[20] ^= 0xff;
        assert!(!Dmar::parse(&t).unwrap().header.checksum_valid);
        let t = table(b"DMAR", &[38, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(
            Dmar::parse(&t[..40]),
            Err(AcpiError::Truncated { .. })
        ));
    }

    #[test]
    fn ivrs_type_11_with_ioapic() {
        let mut body = 0x0020_3040u32.to_le_bytes().to_vec();
        body.extend_from_slice(&[0; 8]);
        let mut ivhd = vec![0x11, 0xb0, 0, 0];
        ivhd.extend_from_slice(&0x0002u16.to_le_bytes());
        ivhd.extend_from_slice(&0x40u16.to_le_bytes());
        ivhd.extend_from_slice(&0xfeb8_0000u64.to_le_bytes());
        ivhd.extend_from_slice(&[0, 0, 0, 0]);
        ivhd.extend_from_slice(&0u32.to_le_bytes());
        ivhd.extend_from_slice(&0x84u64.to_le_bytes());
        ivhd.extend_from_slice(&[0; 8]);
        ivhd.extend_from_slice(&[3, 0x08, 0, 0, 4, 0xfe, 0xff, 0]);
        ivhd.extend_from_slice(&[0x48, 0, 0, 0xd7, 0x21, 0xa0, 0x00, 1]);
        ivhd.extend_from_slice(&[0xf0, 0xa5, 0, 0x40]);
        ivhd.extend_from_slice(b"AMDI0020");
        ivhd.extend_from_slice(&[0; 8]);
        ivhd.extend_from_slice(&[2, 3]);
        ivhd.extend_from_slice(b"ID0");
        let len = ivhd.len() as u16;
        ivhd[2..4].copy_from_slice(&len.to_le_bytes());
        body.extend_from_slice(&ivhd);
        let t = table(b"IVRS", &body);
        let i = Ivrs::parse(&t).unwrap();
        assert!(i.header.checksum_valid);
        assert_eq!(i.units.len(), 1);
        let u = &i.units[0];
        assert_eq!(u.efr, Some(0x84));
        assert_eq!(u.xt_sup(), Some(true));
        assert_eq!(u.ga_sup(), Some(true));
        assert_eq!(u.ioapics(), 1);
        assert_eq!(u.special_devices[0].handle, 0x21);
        assert_eq!(u.device_entries, 4);
        assert!(i.intr_remap());
        assert_eq!(i.pa_size, 0x30);
    }

    proptest::proptest! {
        #[test]
        fn dmar_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = Dmar::parse(&bytes);
        }

        #[test]
        fn ivrs_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = Ivrs::parse(&bytes);
        }

        /// Random bodies behind a valid header reach the structure parsers.
        #[test]
        fn structures_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 12..300)) {
            let _ = Dmar::parse(&table(b"DMAR", &body));
            let _ = Ivrs::parse(&table(b"IVRS", &body));
        }
    }
}
