//! The embedded checksum on a real mastered hybrid image: intact as a file
//! and as a "USB stick" (the image followed by junk), and a flipped byte in
//! file data, in the boot catalog or in the backup GPT is caught. The
//! implant leaves the image valid for the independent verifiers.

use std::fs;
use std::io::Write;
use std::process::Command;

use iso_builder::checksum::{self, ChecksumError};
use iso_builder::grub;
use iso_builder::inputs::Cache;
use iso_builder::master::{MasterOptions, master_dir};

#[test]
fn embedded_checksum_on_a_mastered_image() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("boot")).unwrap();
    fs::write(tree.join("boot/vmlinuz"), vec![0x5a; 300_000]).unwrap();
    fs::write(tree.join("boot/initrd.img"), vec![0xa5; 100_000]).unwrap();
    let img = dir.path().join("m.iso");
    let cache = Cache::new(Cache::default_root(), grub::REFRESH);
    master_dir(
        &tree,
        &img,
        &MasterOptions::new("BULKHEAD", 1_700_000_000),
        &cache,
    )
    .unwrap();
    let e = checksum::implant(&img).unwrap();
    assert_eq!(e.size, fs::metadata(&img).unwrap().len());
    assert_eq!(checksum::verify(&img, &mut |_, _| {}).unwrap(), e);

    // Still a valid image for the independent tools.
    let v = Command::new("sgdisk").arg("-v").arg(&img).output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).contains("No problems found"));
    let d = Command::new("isoinfo")
        .arg("-d")
        .arg("-i")
        .arg(&img)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&d.stdout).contains("Volume id: BULKHEAD"));

    // A stick: the image, then whatever was on the stick before.
    let stick = dir.path().join("stick.img");
    fs::copy(&img, &stick).unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(&stick)
        .unwrap()
        .write_all(&vec![0xEE; 3 << 20])
        .unwrap();
    assert_eq!(checksum::verify(&stick, &mut |_, _| {}).unwrap(), e);

    let clean = fs::read(&img).unwrap();
    let kernel_at = clean
        .windows(64)
        .position(|w| w.iter().all(|&b| b == 0x5a))
        .unwrap();
    for (what, off) in [
        ("kernel data", kernel_at + 1000),
        ("MBR", 100),
        ("last sector (backup GPT)", clean.len() - 10),
    ] {
        let mut bad = clean.clone();
        bad[off] ^= 0x40;
        fs::write(&stick, &bad).unwrap();
        let err = checksum::verify(&stick, &mut |_, _| {}).unwrap_err();
        assert!(
            matches!(err, ChecksumError::Mismatch { .. }),
            "{what}: {err}"
        );
    }
    // A short write.
    fs::write(&stick, &clean[..clean.len() / 2]).unwrap();
    assert!(matches!(
        checksum::verify(&stick, &mut |_, _| {}).unwrap_err(),
        ChecksumError::Truncated { .. }
    ));
}
