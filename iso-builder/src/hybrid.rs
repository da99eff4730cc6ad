//! The hybrid system area: the image is also a disk. Sector 0 is an MBR
//! carrying the BIOS loader's hybrid boot code (GRUB's boot_hybrid.img,
//! patched at 0x1B0 with the 512-byte address of the El Torito BIOS image
//! plus 4, as xorriso's `--grub2-mbr` does) and one protective 0xEE entry; a
//! GPT (written by the gpt crate) has partition 1 over the ISO9660 data
//! from sector 64 up to the ESP image, and partition 2, "EFI System", over
//! the ESP image, which the layout puts last so partitions never overlap.
//! The backup GPT fills the image's last 33 sectors. This is the layout
//! `grub-mkrescue` produces (`--protective-msdos-label`, `-efi-boot-part
//! --efi-boot-image`), minus its Apple partitions.
//!
//! The gpt crate writes to a seekable device; it is given a window device
//! that keeps only the first and last 64 sectors in memory, so the tables
//! are computed before the image is written and then emitted in order.
//! GUIDs are derived from a digest the caller passes (never random).

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};

use gpt::mbr::ProtectiveMBR;
use gpt::partition::Partition;
use gpt::partition_types;
use sha2::{Digest, Sha256};

const SECTOR: u64 = 512;
const WINDOW: u64 = 64 * SECTOR;

#[derive(Debug, thiserror::Error)]
pub enum HybridError {
    #[error("writing the GPT: {0}")]
    Gpt(String),
    #[error("the MBR boot code has {0} bytes; it needs at least 440 (e.g. GRUB's boot_hybrid.img)")]
    ShortBootCode(usize),
    #[error("image of {0} sectors is too small for a hybrid GPT")]
    TooSmall(u64),
}

/// One GPT partition, in 512-byte sectors (inclusive range).
#[derive(Debug, Clone)]
pub struct Part {
    pub name: &'static str,
    pub first: u64,
    pub last: u64,
    pub esp: bool,
}

/// The finished tables: `head` is sectors 0..34 (MBR, primary header and
/// entries), `tail` the last 33 sectors (backup entries and header).
#[derive(Debug, Clone)]
pub struct Tables {
    pub head: Vec<u8>,
    pub tail: Vec<u8>,
}

/// A device of `len` bytes that remembers only its first and last
/// [`WINDOW`] bytes; reads elsewhere give zeros, writes elsewhere fail.
#[derive(Debug)]
struct WindowDevice {
    len: u64,
    pos: u64,
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl WindowDevice {
    fn new(len: u64) -> Self {
        WindowDevice {
            len,
            pos: 0,
            head: vec![0; WINDOW as usize],
            tail: vec![0; WINDOW as usize],
        }
    }

    fn slot(&mut self, pos: u64) -> Option<&mut u8> {
        if pos < WINDOW {
            self.head.get_mut(pos as usize)
        } else if pos >= self.len - WINDOW && pos < self.len {
            self.tail.get_mut((pos - (self.len - WINDOW)) as usize)
        } else {
            None
        }
    }
}

impl Read for WindowDevice {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.len.saturating_sub(self.pos) as usize);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            let p = self.pos + i as u64;
            *b = self.slot(p).map_or(0, |s| *s);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for WindowDevice {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for (i, b) in buf.iter().enumerate() {
            let p = self.pos + i as u64;
            match self.slot(p) {
                Some(s) => *s = *b,
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("GPT write at byte {p}, outside the table areas"),
                    ));
                }
            }
        }
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for WindowDevice {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos =
            new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek out of range"))?;
        Ok(self.pos)
    }
}

/// A GUID from `seed` and a purpose tag: sha256, formatted as a version 4
/// UUID so tools accept it, and the same for the same inputs.
pub fn derived_guid(seed: &[u8], tag: &str) -> uuid::Uuid {
    let mut h = Sha256::new();
    h.update(seed);
    h.update(tag.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

/// Builds the MBR and both GPT copies for an image of `total_sectors`.
/// `grub2_lba512` is the 512-byte address of the BIOS boot image when the
/// boot code is GRUB's boot_hybrid.img.
pub fn tables(
    boot_code: &[u8],
    grub2_lba512: Option<u64>,
    total_sectors: u64,
    parts: &[Part],
    seed: &[u8],
) -> Result<Tables, HybridError> {
    if boot_code.len() < 440 {
        return Err(HybridError::ShortBootCode(boot_code.len()));
    }
    if total_sectors < 2 * (WINDOW / SECTOR) {
        return Err(HybridError::TooSmall(total_sectors));
    }
    let gpt_err = |e: gpt::GptError| HybridError::Gpt(e.to_string());
    let dev = WindowDevice::new(total_sectors * SECTOR);
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .change_partition_count(true)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .create_from_device(dev, Some(derived_guid(seed, "disk")))
        .map_err(gpt_err)?;
    let mut map = BTreeMap::new();
    for (i, p) in parts.iter().enumerate() {
        map.insert(
            i as u32 + 1,
            Partition {
                part_type_guid: if p.esp {
                    partition_types::EFI
                } else {
                    partition_types::BASIC
                },
                part_guid: derived_guid(seed, &format!("partition {}", i + 1)),
                first_lba: p.first,
                last_lba: p.last,
                flags: 1 << 60,
                name: p.name.to_string(),
            },
        );
    }
    // A full 128-entry array (16 KiB), as the UEFI specification asks.
    for i in parts.len() as u32 + 1..=128 {
        map.insert(i, Partition::zero());
    }
    disk.update_partitions(map).map_err(gpt_err)?;
    let mut dev = disk.write().map_err(gpt_err)?;

    let mut code = [0u8; 440];
    code.copy_from_slice(&boot_code[..440]);
    if let Some(lba) = grub2_lba512 {
        code[0x1B0..0x1B8].copy_from_slice(&(lba + 4).to_le_bytes());
    }
    let mut mbr = ProtectiveMBR::with_lb_size(u32::try_from(total_sectors - 1).unwrap_or(u32::MAX));
    mbr.set_bootcode(code);
    let sig = derived_guid(seed, "mbr");
    let mut s = [0u8; 4];
    s.copy_from_slice(&sig.as_bytes()[..4]);
    mbr.set_disk_signature(s);
    dev.head[..512].copy_from_slice(&mbr.to_bytes());

    let head = dev.head[..34 * SECTOR as usize].to_vec();
    let tail = dev.tail[(WINDOW - 33 * SECTOR) as usize..].to_vec();
    Ok(Tables { head, tail })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_deterministic_and_signed() {
        let code = vec![0x90u8; 512];
        let parts = [
            Part {
                name: "ISO9660",
                first: 64,
                last: 999,
                esp: false,
            },
            Part {
                name: "EFI System",
                first: 1000,
                last: 1999,
                esp: true,
            },
        ];
        let a = tables(&code, Some(100), 2100, &parts, b"seed").unwrap();
        let b = tables(&code, Some(100), 2100, &parts, b"seed").unwrap();
        assert_eq!(a.head, b.head);
        assert_eq!(a.tail, b.tail);
        assert_eq!(&a.head[510..512], &[0x55, 0xAA]);
        assert_eq!(a.head[0x1C2], 0xEE);
        assert_eq!(&a.head[512..520], b"EFI PART");
        assert_eq!(&a.tail[32 * 512..32 * 512 + 8], b"EFI PART");
        assert_eq!(
            u64::from_le_bytes(a.head[0x1B0..0x1B8].try_into().unwrap()),
            104
        );
        let c = tables(&code, Some(100), 2100, &parts, b"other").unwrap();
        assert_ne!(a.head, c.head);
    }
}
