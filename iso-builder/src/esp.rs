//! The EFI system partition image, written in memory with the fatfs crate:
//! fixed volume serial (derived from the content) and label, every
//! timestamp from SOURCE_DATE_EPOCH (a fatfs `TimeProvider`), files added
//! in sorted order, so the same files always give the same image.
//!
//! fatfs 0.3.6 (the newest release) writes a long-name entry before the
//! "." and ".." entries of every directory it creates, which `fsck.fat -n`
//! rejects (fixed on fatfs' master, unreleased). Rather than vendor a
//! patched copy, [`drop_dot_lfn`] removes those two long-name entries after
//! fatfs is done: it walks the directories from the root and, in each
//! directory's first cluster, deletes a long-name entry that directly
//! precedes "." or "..", moving the following entries up. Nothing refers to
//! directory entries by position, so the result is the directory fatfs'
//! master would have written; `tests/iso_verify.rs` runs `fsck.fat -n` on
//! every ESP it builds, and a unit test shows the unfixed image failing.

use std::collections::BTreeMap;
use std::io::{Cursor, Write};

use fatfs::{Date, DateTime, FileSystem, FormatVolumeOptions, FsOptions, Time, TimeProvider};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum EspError {
    #[error("building the ESP image: {what} {path:?}: {source}")]
    Fat {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("ESP image: {0}")]
    Layout(String),
}

#[derive(Debug)]
struct FixedTime(DateTime);

impl TimeProvider for FixedTime {
    fn get_current_date(&self) -> Date {
        self.0.date
    }
    fn get_current_date_time(&self) -> DateTime {
        self.0
    }
}

/// DOS date and time for `epoch`, clamped to FAT's 1980..=2107.
fn dos_time(epoch: i64) -> DateTime {
    let (y, m, d, h, mi, s) = crate::iso9660::civil(epoch);
    if y < 1980 {
        return DateTime {
            date: Date {
                year: 1980,
                month: 1,
                day: 1,
            },
            time: Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        };
    }
    DateTime {
        date: Date {
            year: y.min(2107) as u16,
            month: m as u16,
            day: d as u16,
        },
        time: Time {
            hour: h as u16,
            min: mi as u16,
            sec: (s / 2 * 2) as u16,
            millis: 0,
        },
    }
}

/// Builds a FAT image holding `files` (path → bytes, `/`-separated, e.g.
/// `EFI/BOOT/BOOTX64.EFI`), labelled `label` (up to 11 characters).
pub fn build(
    files: &BTreeMap<String, Vec<u8>>,
    label: &str,
    epoch: i64,
) -> Result<Vec<u8>, EspError> {
    if label.len() > 11
        || !label
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
    {
        return Err(EspError::Layout(format!(
            "label {label:?} must be up to 11 of A-Z, 0-9, _"
        )));
    }
    let mut h = Sha256::new();
    for (p, d) in files {
        h.update(p.as_bytes());
        h.update((d.len() as u64).to_le_bytes());
        h.update(d);
    }
    let digest = h.finalize();
    let serial = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]);
    let mut lbl = [b' '; 11];
    lbl[..label.len()].copy_from_slice(label.as_bytes());

    // Leaked once per image: fatfs wants a 'static provider.
    let clock: &'static FixedTime = Box::leak(Box::new(FixedTime(dos_time(epoch))));
    let payload: u64 = files
        .values()
        .map(|d| (d.len() as u64).div_ceil(4096) * 4096)
        .sum();
    let mut size = (payload + (512 << 10)).div_ceil(1 << 20) * (1 << 20);
    loop {
        match try_build(files, size, lbl, serial, clock) {
            Ok(img) => return Ok(img),
            Err(EspError::Fat { source, .. })
                if source.kind() == std::io::ErrorKind::WriteZero
                    || source.to_string().contains("No space") =>
            {
                size += 1 << 20;
                if size > 512 << 20 {
                    return Err(EspError::Layout("contents need more than 512 MiB".into()));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

fn fat_err(what: &'static str, path: &str) -> impl FnOnce(std::io::Error) -> EspError {
    let path = path.to_string();
    move |source| EspError::Fat { what, path, source }
}

fn try_build(
    files: &BTreeMap<String, Vec<u8>>,
    size: u64,
    label: [u8; 11],
    serial: u32,
    clock: &'static FixedTime,
) -> Result<Vec<u8>, EspError> {
    let mut disk = Cursor::new(vec![0u8; size as usize]);
    fatfs::format_volume(
        &mut disk,
        FormatVolumeOptions::new()
            .volume_id(serial)
            .volume_label(label),
    )
    .map_err(fat_err("formatting", ""))?;
    {
        let fs = FileSystem::new(&mut disk, FsOptions::new().time_provider(clock))
            .map_err(fat_err("opening", ""))?;
        for (path, data) in files {
            let root = fs.root_dir();
            if let Some((dir, _)) = path.rsplit_once('/') {
                let mut acc = String::new();
                for part in dir.split('/') {
                    if !acc.is_empty() {
                        acc.push('/');
                    }
                    acc.push_str(part);
                    root.create_dir(&acc)
                        .map_err(fat_err("creating directory", &acc))?;
                }
            }
            let mut f = root.create_file(path).map_err(fat_err("creating", path))?;
            f.truncate().map_err(fat_err("truncating", path))?;
            f.write_all(data).map_err(fat_err("writing", path))?;
            f.flush().map_err(fat_err("writing", path))?;
        }
        fs.unmount().map_err(fat_err("closing", ""))?;
    }
    let mut img = disk.into_inner();
    drop_dot_lfn(&mut img)?;
    Ok(img)
}

struct Geometry {
    cluster: usize,
    root: (usize, usize),
    data: usize,
}

fn geometry(img: &[u8]) -> Result<Geometry, EspError> {
    let u16_at = |o: usize| u16::from_le_bytes([img[o], img[o + 1]]) as usize;
    let u32_at =
        |o: usize| u32::from_le_bytes([img[o], img[o + 1], img[o + 2], img[o + 3]]) as usize;
    if img.len() < 512 {
        return Err(EspError::Layout("image shorter than a boot sector".into()));
    }
    let bps = u16_at(11);
    let spc = img[13] as usize;
    if bps == 0 || spc == 0 {
        return Err(EspError::Layout(
            "boot sector with zero sector or cluster size".into(),
        ));
    }
    let reserved = u16_at(14);
    let fats = img[16] as usize;
    let root_entries = u16_at(17);
    let fat_size = if u16_at(22) != 0 {
        u16_at(22)
    } else {
        u32_at(36)
    };
    if root_entries == 0 {
        return Err(EspError::Layout(
            "FAT32 ESP images are not produced here".into(),
        ));
    }
    let root_start = (reserved + fats * fat_size) * bps;
    let root_len = root_entries * 32;
    Ok(Geometry {
        cluster: spc * bps,
        root: (root_start, root_len),
        data: root_start + root_len.div_ceil(bps) * bps,
    })
}

/// Removes the long-name entries fatfs 0.3.6 puts before "." and ".."
/// (see the module doc). Walks subdirectories through their first cluster.
pub fn drop_dot_lfn(img: &mut [u8]) -> Result<(), EspError> {
    let g = geometry(img)?;
    let mut todo = vec![g.root];
    let mut seen = std::collections::HashSet::new();
    let mut first = true;
    while let Some((start, len)) = todo.pop() {
        if start.checked_add(len).is_none_or(|end| end > img.len()) || len < 32 {
            return Err(EspError::Layout("directory outside the image".into()));
        }
        if !seen.insert(start) {
            continue;
        }
        if !first {
            fix_dir(&mut img[start..start + len]);
        }
        first = false;
        for e in img[start..start + len].chunks(32) {
            if e[0] == 0 {
                break;
            }
            if e[0] == 0xE5 || e[11] == 0x0F || e[11] & 0x10 == 0 || e[0] == b'.' {
                continue;
            }
            let cluster = (u16::from_le_bytes([e[20], e[21]]) as usize) << 16
                | u16::from_le_bytes([e[26], e[27]]) as usize;
            if cluster >= 2 {
                todo.push((g.data + (cluster - 2) * g.cluster, g.cluster));
            }
        }
    }
    Ok(())
}

fn fix_dir(dir: &mut [u8]) {
    let n = dir.len() / 32;
    let is_dot =
        |e: &[u8]| e[11] != 0x0F && (&e[..11] == b".          " || &e[..11] == b"..         ");
    let mut keep = Vec::with_capacity(n);
    for i in 0..n {
        let e = &dir[i * 32..i * 32 + 32];
        if e[11] == 0x0F && i + 1 < n && i < 4 && is_dot(&dir[(i + 1) * 32..(i + 2) * 32]) {
            continue;
        }
        keep.push(e.to_vec());
    }
    let removed = n - keep.len();
    if removed == 0 {
        return;
    }
    for (i, e) in keep.iter().enumerate() {
        dir[i * 32..i * 32 + 32].copy_from_slice(e);
    }
    dir[keep.len() * 32..].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn files() -> BTreeMap<String, Vec<u8>> {
        let mut f = BTreeMap::new();
        f.insert("EFI/BOOT/BOOTX64.EFI".to_string(), vec![0x4d; 300_000]);
        f.insert("EFI/BOOT/grub.cfg".to_string(), b"configfile x\n".to_vec());
        f
    }

    fn fsck(img: &[u8]) -> (bool, String) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("esp.img");
        std::fs::write(&p, img).unwrap();
        let out = Command::new("fsck.fat")
            .arg("-n")
            .arg(&p)
            .output()
            .expect("fsck.fat (dosfstools)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    #[test]
    fn esp_passes_fsck_and_is_deterministic() {
        let a = build(&files(), "BULKHEAD", 1_700_000_000).unwrap();
        let b = build(&files(), "BULKHEAD", 1_700_000_000).unwrap();
        assert_eq!(a, b);
        let (ok, out) = fsck(&a);
        assert!(ok, "{out}");
    }

    #[test]
    fn large_and_many_files_fit_and_pass_fsck() {
        let mut f = files();
        f.insert(
            "EFI/BOOT/big.bin".into(),
            (0..9_000_000u32).map(|i| i as u8).collect(),
        );
        for i in 0..40 {
            f.insert(format!("EFI/extra/file{i:02}.txt"), vec![b'x'; 5000]);
        }
        let img = build(&f, "ESP", 0).unwrap();
        let (ok, out) = fsck(&img);
        assert!(ok, "{out}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        #[test]
        fn fixing_arbitrary_bytes_never_panics(mut img in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
            let _ = drop_dot_lfn(&mut img);
        }

        #[test]
        fn fixing_damaged_images_never_panics(flips in proptest::collection::vec((0usize..65536, proptest::prelude::any::<u8>()), 1..20)) {
            let mut img = build(&files(), "ESP", 0).unwrap();
            img.truncate(65536);
            for (at, v) in flips {
                img[at] = v;
            }
            let _ = drop_dot_lfn(&mut img);
        }
    }

    #[test]
    fn unfixed_fatfs_output_fails_fsck() {
        let clock: &'static FixedTime = Box::leak(Box::new(FixedTime(dos_time(0))));
        let mut disk = Cursor::new(vec![0u8; 2 << 20]);
        fatfs::format_volume(&mut disk, FormatVolumeOptions::new().volume_id(1)).unwrap();
        {
            let fs = FileSystem::new(&mut disk, FsOptions::new().time_provider(clock)).unwrap();
            fs.root_dir().create_dir("EFI").unwrap();
            fs.unmount().unwrap();
        }
        let mut img = disk.into_inner();
        let (ok, out) = fsck(&img);
        assert!(
            !ok,
            "fatfs 0.3.6 output unexpectedly passes fsck.fat: drop the workaround\n{out}"
        );
        drop_dot_lfn(&mut img).unwrap();
        let (ok, out) = fsck(&img);
        assert!(ok, "{out}");
    }
}
