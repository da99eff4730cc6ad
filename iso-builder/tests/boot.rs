//! Boot proof: a tiny image (the pinned Debian kernel and a test initramfs)
//! mastered by `master_dir` reaches userspace and prints a marker on the
//! serial console in all four ways: SeaBIOS and OVMF, as a CD and as a USB
//! disk. The GRUB menu's default entry boots after a one-second timeout.

use std::path::{Path, PathBuf};
use std::time::Duration;

use guest_harness::{Bus, Disk, Firmware, Initramfs, Kernel, Vm};
use iso_builder::grub::{self, Entry};
use iso_builder::inputs::Cache;
use iso_builder::master::{MasterOptions, master_dir};

const MARKER: &str = "BULKHEAD-ISO-BOOTED-TO-USERSPACE";

fn master(dir: &Path) -> PathBuf {
    let kernel = Kernel::pinned().expect("pinned kernel");
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("boot")).unwrap();
    std::fs::copy(&kernel.vmlinuz, tree.join("boot/vmlinuz")).unwrap();
    // The marker is assembled by the shell so the script's text never matches.
    Initramfs::new(&kernel)
        .script("m=BULKHEAD-ISO-BOOTED\necho \"$m-TO-USERSPACE\"\n")
        .write(&tree.join("boot/initrd.img"))
        .unwrap();
    let mut opts = MasterOptions::new("BULKHEAD_TEST", 1_700_000_000);
    opts.timeout = 1;
    opts.default = Entry::Serial;
    opts.cmdline = "panic=-1".into();
    let out = dir.join("test.iso");
    let cache = Cache::new(Cache::default_root(), grub::REFRESH);
    master_dir(&tree, &out, &opts, &cache).unwrap();
    out
}

fn boot(fw: Firmware, usb: bool) {
    let dir = tempfile::tempdir().unwrap();
    let iso = master(dir.path());
    let mut vm = Vm::new()
        .firmware(fw)
        .memory_mib(1024)
        .wait_for(MARKER)
        .timeout(Duration::from_secs(480));
    vm = if usb {
        vm.disk(Disk::new(&iso).bus(Bus::Usb))
    } else {
        vm.cdrom(&iso)
    };
    let out = vm.run().unwrap();
    assert!(
        out.matched,
        "{fw:?} {} boot did not reach the marker (timed out: {}); console:\n{}",
        if usb { "USB" } else { "CD" },
        out.timed_out,
        out.serial
    );
    // GRUB drew our menu on the serial console and booted its serial entry.
    for entry in [
        "Install Bulkhead",
        "Check hardware only",
        "Verify this medium",
        "Boot from first disk",
    ] {
        assert!(
            out.serial.contains(entry),
            "menu entry {entry:?} not shown:\n{}",
            out.serial
        );
    }
    assert!(
        out.serial
            .contains("panic=-1 console=tty0 console=ttyS0,115200"),
        "kernel command line of the serial entry not seen:\n{}",
        out.serial
    );
}

#[test]
#[ignore = "boots a QEMU guest; run by cargo xtask test"]
fn seabios_cd() {
    boot(Firmware::Bios, false);
}

#[test]
#[ignore = "boots a QEMU guest; run by cargo xtask test"]
fn ovmf_cd() {
    boot(Firmware::Uefi, false);
}

#[test]
#[ignore = "boots a QEMU guest; run by cargo xtask test"]
fn seabios_usb() {
    boot(Firmware::Bios, true);
}

#[test]
#[ignore = "boots a QEMU guest; run by cargo xtask test"]
fn ovmf_usb() {
    boot(Firmware::Uefi, true);
}
