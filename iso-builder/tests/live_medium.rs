//! The live initramfs (our init, the pinned kernel's storage modules) in a
//! guest whose disks do not hold the medium: it must say which devices it
//! tried and drop to a shell instead of hanging.

use std::time::Duration;

use guest_harness::{Bus, Disk, Kernel, Vm, sparse_disk};
use iso_builder::live::LiveInitramfs;

#[test]
#[ignore = "boots a QEMU guest; run by cargo xtask test"]
fn a_missing_medium_is_reported_with_the_devices_tried() {
    let k = Kernel::pinned().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cpio = dir.path().join("initrd.cpio");
    LiveInitramfs {
        kernel_root: k.root.clone(),
        release: k.release.clone(),
        busybox: "/usr/bin/busybox".into(),
        medium_id: "bulkhead-test-absent".into(),
    }
    .write_cpio(&cpio)
    .unwrap();
    let blank = dir.path().join("blank.img");
    sparse_disk(&blank, 64 << 20).unwrap();
    let other = dir.path().join("other.img");
    sparse_disk(&other, 64 << 20).unwrap();
    let out = Vm::new()
        .kernel_files(&k.vmlinuz, &cpio, "console=ttyS0,115200 bulkhead.wait=3")
        .disk(Disk::new(&blank).bus(Bus::Virtio))
        .disk(Disk::new(&other).bus(Bus::Nvme))
        .wait_for("dropping to a shell")
        .timeout(Duration::from_secs(300))
        .run()
        .unwrap();
    assert!(out.matched, "{}", out.serial);
    assert!(
        out.serial
            .contains("the boot medium (bulkhead-test-absent) was not found"),
        "{}",
        out.serial
    );
    let tried = out
        .serial
        .lines()
        .find(|l| l.contains("devices tried:"))
        .unwrap_or_default();
    assert!(
        tried.contains("/dev/vda") && tried.contains("/dev/nvme0n1"),
        "{tried}"
    );
}
