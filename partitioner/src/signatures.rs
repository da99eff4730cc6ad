//! Finding old on-disk signatures (partition tables, LUKS, LVM, md RAID, file
//! systems, swap) so `apply` can erase them at both ends of the disk and of
//! every old and new partition, as `wipefs` does.
//!
//! Written by hand because the work is reading a handful of magic numbers at
//! fixed offsets, and it must also read damaged tables (a GPT whose primary
//! header is gone, a table with a bad CRC) to find the old partitions whose
//! superblocks would otherwise survive; the gpt crate rightly refuses those,
//! and libblkid would add a second C library for the same few bytes. Every
//! function here takes arbitrary bytes without panicking (property-tested).

use std::io::{self, Read, Seek, SeekFrom};

use serde::Serialize;

/// One signature found on the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signature {
    pub kind: &'static str,
    /// Absolute byte offset of the magic.
    pub offset: u64,
    pub len: u64,
}

/// Reads up to `buf.len()` bytes at `off`; short at the end of the device.
fn read_at<D: Read + Seek>(dev: &mut D, off: u64, buf: &mut [u8]) -> io::Result<usize> {
    dev.seek(SeekFrom::Start(off))?;
    let mut n = 0;
    while n < buf.len() {
        match dev.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn at(
    dev: &mut (impl Read + Seek),
    base: u64,
    len: u64,
    off: u64,
    n: usize,
) -> io::Result<Option<Vec<u8>>> {
    if off.checked_add(n as u64).is_none_or(|e| e > len) {
        return Ok(None);
    }
    let mut b = vec![0u8; n];
    let got = read_at(dev, base + off, &mut b)?;
    Ok((got == n).then_some(b))
}

const MD_MAGIC: [u8; 4] = 0xa92b_4efcu32.to_le_bytes();

/// Signatures within `[base, base + len)` of `dev`.
pub fn probe<D: Read + Seek>(dev: &mut D, base: u64, len: u64) -> io::Result<Vec<Signature>> {
    let mut found = Vec::new();
    let mut check = |dev: &mut D, kind: &'static str, off: u64, magic: &[u8]| -> io::Result<()> {
        if let Some(b) = at(dev, base, len, off, magic.len())?
            && b == magic
        {
            found.push(Signature {
                kind,
                offset: base + off,
                len: magic.len() as u64,
            });
        }
        Ok(())
    };
    check(dev, "gpt", 512, b"EFI PART")?;
    check(dev, "gpt", 4096, b"EFI PART")?;
    if len >= 512 {
        check(dev, "gpt-backup", len - 512, b"EFI PART")?;
    }
    if len >= 4096 {
        check(dev, "gpt-backup", len - 4096, b"EFI PART")?;
    }
    check(dev, "mbr/boot-sector", 510, &[0x55, 0xaa])?;
    check(dev, "luks", 0, b"LUKS\xba\xbe")?;
    let mut o = 0x4000u64;
    while o <= 0x40_0000 {
        check(dev, "luks2-secondary", o, b"SKUL\xba\xbe")?;
        o *= 2;
    }
    for s in 0..4u64 {
        check(dev, "lvm2", s * 512, b"LABELONE")?;
    }
    check(dev, "md-1.1", 0, &MD_MAGIC)?;
    check(dev, "md-1.2", 4096, &MD_MAGIC)?;
    if len >= 8192 {
        let v10 = ((len / 512).saturating_sub(16) & !7) * 512;
        check(dev, "md-1.0", v10, &MD_MAGIC)?;
    }
    if len >= 65536 * 2 {
        let v090 = (len & !65535) - 65536;
        check(dev, "md-0.90", v090, &MD_MAGIC)?;
    }
    check(dev, "ext2/3/4", 1080, &[0x53, 0xef])?;
    check(dev, "xfs", 0, b"XFSB")?;
    check(dev, "btrfs", 65536 + 64, b"_BHRfS_M")?;
    check(dev, "fat", 54, b"FAT")?;
    check(dev, "fat32", 82, b"FAT32   ")?;
    check(dev, "ntfs", 3, b"NTFS    ")?;
    check(dev, "exfat", 3, b"EXFAT   ")?;
    for page in [4096u64, 8192, 16384, 65536] {
        check(dev, "swap", page - 10, b"SWAPSPACE2")?;
        check(dev, "swap", page - 10, b"SWAP-SPACE")?;
    }
    check(dev, "iso9660", 32769, b"CD001")?;
    Ok(found)
}

/// A byte range of an old partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub len: u64,
}

fn le32(b: &[u8], o: usize) -> u32 {
    b.get(o..o + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .unwrap_or(0)
}
fn le64(b: &[u8], o: usize) -> u64 {
    b.get(o..o + 8)
        .map(|s| {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            u64::from_le_bytes(a)
        })
        .unwrap_or(0)
}

/// Partition ranges from a GPT header (at `header_off`) and its entries,
/// without checking CRCs; ranges outside the disk are dropped.
fn gpt_ranges<D: Read + Seek>(
    dev: &mut D,
    disk_len: u64,
    header_off: u64,
    lb: u64,
) -> io::Result<Vec<Range>> {
    let Some(h) = at(dev, 0, disk_len, header_off, 92)? else {
        return Ok(Vec::new());
    };
    if &h[0..8] != b"EFI PART" {
        return Ok(Vec::new());
    }
    let entries_lba = le64(&h, 72);
    let count = u64::from(le32(&h, 80)).min(1024);
    let size = u64::from(le32(&h, 84));
    if !(128..=4096).contains(&size) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for i in 0..count {
        let Some(off) = entries_lba
            .checked_mul(lb)
            .and_then(|o| o.checked_add(i * size))
        else {
            break;
        };
        let Some(e) = at(dev, 0, disk_len, off, 48)? else {
            break;
        };
        if e[0..16].iter().all(|&b| b == 0) {
            continue;
        }
        let first = le64(&e, 32);
        let last = le64(&e, 40);
        if let (Some(s), Some(end)) = (
            first.checked_mul(lb),
            last.checked_add(1).and_then(|l| l.checked_mul(lb)),
        ) && end > s
            && end <= disk_len
        {
            out.push(Range {
                start: s,
                len: end - s,
            });
        }
    }
    Ok(out)
}

/// Old partitions from the primary GPT, the backup GPT and the MBR, for
/// either sector size; best effort on damaged tables.
pub fn old_partitions<D: Read + Seek>(dev: &mut D, disk_len: u64) -> io::Result<Vec<Range>> {
    let mut out = Vec::new();
    for lb in [512u64, 4096] {
        out.extend(gpt_ranges(dev, disk_len, lb, lb)?);
        if disk_len >= lb {
            out.extend(gpt_ranges(dev, disk_len, disk_len - lb, lb)?);
        }
    }
    if let Some(mbr) = at(dev, 0, disk_len, 0, 512)?
        && mbr[510] == 0x55
        && mbr[511] == 0xaa
    {
        for i in 0..4 {
            let e = &mbr[446 + i * 16..446 + i * 16 + 16];
            let ty = e[4];
            if ty == 0 || ty == 0xee || ty == 0x05 || ty == 0x0f || ty == 0x85 {
                continue;
            }
            let s = u64::from(le32(e, 8)) * 512;
            let n = u64::from(le32(e, 12)) * 512;
            if n > 0 && s.checked_add(n).is_some_and(|end| end <= disk_len) {
                out.push(Range { start: s, len: n });
            }
        }
    }
    out.sort_by_key(|r| (r.start, r.len));
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    #[test]
    fn finds_planted_signatures() {
        let len = 1u64 << 20;
        let mut img = vec![0u8; len as usize];
        img[0..6].copy_from_slice(b"LUKS\xba\xbe");
        img[0x4000..0x4006].copy_from_slice(b"SKUL\xba\xbe");
        img[1080] = 0x53;
        img[1081] = 0xef;
        img[(len - 512) as usize..(len - 504) as usize].copy_from_slice(b"EFI PART");
        let mut c = Cursor::new(img);
        let kinds: Vec<&str> = probe(&mut c, 0, len)
            .unwrap()
            .iter()
            .map(|s| s.kind)
            .collect();
        assert_eq!(kinds, ["gpt-backup", "luks", "luks2-secondary", "ext2/3/4"]);
    }

    #[test]
    fn reads_gpt_and_mbr_partitions() {
        let len = 8u64 << 20;
        let mut img = vec![0u8; len as usize];
        img[512..520].copy_from_slice(b"EFI PART");
        img[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        img[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        img[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        let e = 1024;
        img[e] = 1;
        img[e + 32..e + 40].copy_from_slice(&2048u64.to_le_bytes());
        img[e + 40..e + 48].copy_from_slice(&4095u64.to_le_bytes());
        img[446 + 4] = 0x83;
        img[446 + 8..446 + 12].copy_from_slice(&8192u32.to_le_bytes());
        img[446 + 12..446 + 16].copy_from_slice(&2048u32.to_le_bytes());
        img[510] = 0x55;
        img[511] = 0xaa;
        let r = old_partitions(&mut Cursor::new(img), len).unwrap();
        assert_eq!(
            r,
            [
                Range {
                    start: 1 << 20,
                    len: 1 << 20
                },
                Range {
                    start: 4 << 20,
                    len: 1 << 20
                }
            ]
        );
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..70000), claimed in 0u64..200_000) {
            let mut c = Cursor::new(data.clone());
            let _ = probe(&mut c, 0, claimed);
            let _ = old_partitions(&mut c, claimed);
            let _ = old_partitions(&mut c, data.len() as u64);
        }

        #[test]
        fn never_panics_on_plausible_gpt_headers(entries_lba in any::<u64>(), count in any::<u32>(), size in any::<u32>(), first in any::<u64>(), last in any::<u64>()) {
            let mut img = vec![0u8; 64 * 1024];
            img[512..520].copy_from_slice(b"EFI PART");
            img[512 + 72..512 + 80].copy_from_slice(&entries_lba.to_le_bytes());
            img[512 + 80..512 + 84].copy_from_slice(&count.to_le_bytes());
            img[512 + 84..512 + 88].copy_from_slice(&size.to_le_bytes());
            img[1024] = 1;
            img[1024 + 32..1024 + 40].copy_from_slice(&first.to_le_bytes());
            img[1024 + 40..1024 + 48].copy_from_slice(&last.to_le_bytes());
            let len = img.len() as u64;
            let r = old_partitions(&mut Cursor::new(img), len).unwrap();
            for x in r {
                prop_assert!(x.start + x.len <= len);
            }
        }
    }
}
