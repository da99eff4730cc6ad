//! El Torito: the boot record volume descriptor, the boot catalog (a BIOS
//! no-emulation entry and a UEFI section, platform 0xEF, pointing at the FAT
//! ESP image), and the patches a BIOS loader expects in its own image: the
//! boot-info-table (bytes 8..64) and GRUB's "grub2-boot-info" (its own
//! 512-byte address + 5 at byte 2548, as xorriso's `--grub2-boot-info`).
//! Every value comes from the layout, computed before anything is written.

/// BIOS entry of the catalog.
#[derive(Debug, Clone, Copy)]
pub struct BiosEntry {
    pub lba: u32,
    /// 512-byte sectors the BIOS loads (4 = one CD block, what GRUB's
    /// cdboot.img needs).
    pub load_sectors: u16,
}

/// UEFI entry of the catalog.
#[derive(Debug, Clone, Copy)]
pub struct EfiEntry {
    pub lba: u32,
    pub size: u64,
}

/// The El Torito boot record volume descriptor.
pub fn boot_record(catalog_lba: u32) -> [u8; 2048] {
    let mut b = [0u8; 2048];
    b[0] = 0;
    b[1..6].copy_from_slice(b"CD001");
    b[6] = 1;
    let id = b"EL TORITO SPECIFICATION";
    b[7..7 + id.len()].copy_from_slice(id);
    b[0x47..0x4B].copy_from_slice(&catalog_lba.to_le_bytes());
    b
}

fn section_entry(lba: u32, sectors: u16) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[0] = 0x88;
    e[1] = 0; // no emulation
    e[6..8].copy_from_slice(&sectors.to_le_bytes());
    e[8..12].copy_from_slice(&lba.to_le_bytes());
    e
}

/// The boot catalog block. The validation entry names the BIOS platform
/// when there is a BIOS entry, else UEFI.
pub fn catalog(bios: Option<BiosEntry>, efi: Option<EfiEntry>) -> [u8; 2048] {
    let mut c = [0u8; 2048];
    c[0] = 1;
    c[1] = if bios.is_some() { 0 } else { 0xEF };
    c[0x1E] = 0x55;
    c[0x1F] = 0xAA;
    let sum = c[..32].chunks(2).fold(0u16, |s, w| {
        s.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
    });
    c[0x1C..0x1E].copy_from_slice(&(0u16.wrapping_sub(sum)).to_le_bytes());
    let mut at = 32;
    match bios {
        Some(b) => c[at..at + 32].copy_from_slice(&section_entry(b.lba, b.load_sectors)),
        // Default entry is mandatory; with UEFI only it repeats the ESP.
        None => {
            if let Some(e) = efi {
                c[at..at + 32].copy_from_slice(&section_entry(e.lba, efi_sectors(e.size)))
            }
        }
    }
    at += 32;
    if let Some(e) = efi {
        c[at] = 0x91; // final section header
        c[at + 1] = 0xEF;
        c[at + 2..at + 4].copy_from_slice(&1u16.to_le_bytes());
        at += 32;
        c[at..at + 32].copy_from_slice(&section_entry(e.lba, efi_sectors(e.size)));
    }
    c
}

/// The ESP's size in 512-byte sectors as the catalog holds it (0 when it
/// does not fit 16 bits: firmware then takes the FAT's own size).
pub fn efi_sectors(size: u64) -> u16 {
    u16::try_from(size.div_ceil(512)).unwrap_or(0)
}

/// Patches a BIOS boot image for its place at `lba` (2048-byte blocks):
/// GRUB's boot info at 2548 when `grub2`, then the boot-info-table, whose
/// checksum covers the image from byte 64 after the GRUB patch.
pub fn patch_bios_image(img: &mut [u8], lba: u32, boot_info_table: bool, grub2: bool) {
    if grub2 && img.len() >= 2556 {
        let v = u64::from(lba) * 4 + 5;
        img[2548..2556].copy_from_slice(&v.to_le_bytes());
    }
    if boot_info_table && img.len() >= 64 {
        let mut sum = 0u32;
        for w in img[64..].chunks(4) {
            let mut b = [0u8; 4];
            b[..w.len()].copy_from_slice(w);
            sum = sum.wrapping_add(u32::from_le_bytes(b));
        }
        img[8..12].copy_from_slice(&16u32.to_le_bytes());
        img[12..16].copy_from_slice(&lba.to_le_bytes());
        let len = img.len() as u32;
        img[16..20].copy_from_slice(&len.to_le_bytes());
        img[20..24].copy_from_slice(&sum.to_le_bytes());
        img[24..64].fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_entry_checksums_to_zero() {
        let c = catalog(
            Some(BiosEntry {
                lba: 40,
                load_sectors: 4,
            }),
            Some(EfiEntry {
                lba: 50,
                size: 4 << 20,
            }),
        );
        let sum = c[..32].chunks(2).fold(0u16, |s, w| {
            s.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
        });
        assert_eq!(sum, 0);
        assert_eq!(c[64], 0x91);
        assert_eq!(c[65], 0xEF);
        assert_eq!(u16::from_le_bytes([c[96 + 6], c[96 + 7]]), 8192);
    }

    #[test]
    fn boot_info_table_matches_xorriso_convention() {
        let mut img: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
        patch_bios_image(&mut img, 2972, true, true);
        assert_eq!(
            u64::from_le_bytes(img[2548..2556].try_into().unwrap()),
            11893
        );
        assert_eq!(u32::from_le_bytes(img[12..16].try_into().unwrap()), 2972);
        assert_eq!(u32::from_le_bytes(img[16..20].try_into().unwrap()), 3000);
    }
}
