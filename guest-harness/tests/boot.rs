//! The harness itself, proven in real guests.

use guest_harness::{Bus, Disk, Firmware, Initramfs, Kernel, Vm, sparse_disk};

#[test]
#[ignore = "boots a QEMU guest; run by cargo xtask test"]
fn script_status_and_output_come_back_bios_and_uefi() {
    let k = Kernel::pinned().unwrap();
    let initrd = Initramfs::new(&k).script("echo hello-from-guest; uname -r; exit 7\n");
    for fw in [Firmware::Bios, Firmware::Uefi] {
        let out = Vm::new()
            .kernel(&k, &initrd, "")
            .firmware(fw)
            .run()
            .unwrap();
        assert_eq!(out.exit_code, Some(7), "{fw:?}: {}", out.serial);
        assert!(
            out.script_output().contains("hello-from-guest"),
            "{}",
            out.serial
        );
        assert!(out.script_output().contains(&k.release), "{}", out.serial);
    }
}

#[test]
#[ignore = "boots a QEMU guest; run by cargo xtask test"]
fn disks_on_every_bus_and_dm_crypt_with_host_cryptsetup() {
    let k = Kernel::pinned().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut vm = Vm::new().memory_mib(1024);
    let buses = [
        (Bus::Virtio, "/dev/vda"),
        (Bus::Nvme, "/dev/nvme0n1"),
        (Bus::Ahci, "/dev/sda"),
        (Bus::Usb, "/dev/sdb"),
    ];
    for (i, (bus, _)) in buses.iter().enumerate() {
        let p = dir.path().join(format!("d{i}.img"));
        sparse_disk(&p, (64 + i as u64) << 20).unwrap();
        vm = vm.disk(Disk::new(&p).bus(*bus).serial(&format!("BH{i}")));
    }
    let script = r#"set -e
for d in /dev/vda /dev/nvme0n1 /dev/sda /dev/sdb; do wait-dev $d 30; echo "$d $(cat /sys/class/block/${d#/dev/}/size)"; done
printf 'pw' > /tmp/pw
cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file /tmp/pw /dev/vda
cryptsetup open --key-file /tmp/pw /dev/vda t
mkfs.ext4 -q /dev/mapper/t
mount /dev/mapper/t /mnt && echo data > /mnt/f && umount /mnt
cryptsetup close t
echo crypt-ok
"#;
    let initrd = Initramfs::new(&k)
        .host_binary("/usr/sbin/cryptsetup")
        .host_binary("/usr/sbin/mkfs.ext4")
        .script(script);
    let out = vm.kernel(&k, &initrd, "").run().unwrap();
    out.assert_success();
    let o = out.script_output();
    assert!(o.contains("/dev/vda 131072"), "{o}");
    assert!(o.contains("/dev/nvme0n1 133120"), "{o}");
    assert!(o.contains("crypt-ok"), "{o}");
}

#[test]
#[ignore = "boots a QEMU guest; run by cargo xtask test"]
fn timeout_kills_a_hung_guest() {
    let k = Kernel::pinned().unwrap();
    let initrd = Initramfs::new(&k).script("sleep 100000\n");
    let out = Vm::new()
        .kernel(&k, &initrd, "")
        .timeout(std::time::Duration::from_secs(20))
        .run()
        .unwrap();
    assert!(out.timed_out);
    assert_eq!(out.exit_code, None);
}

#[test]
#[ignore = "boots a QEMU guest; run by cargo xtask test"]
fn typed_input_reaches_the_guest_after_each_marker() {
    let k = Kernel::pinned().unwrap();
    let initrd = Initramfs::new(&k)
        .script("echo ASK-ONE; read -r a; echo ASK-TWO; read -r b; echo \"GOT:$a:$b\"\n");
    let out = Vm::new()
        .kernel(&k, &initrd, "")
        .send_when("ASK-ONE", "first\r")
        .send_when("ASK-TWO", "second\r")
        .run()
        .unwrap();
    assert_eq!(out.exit_code, Some(0), "{}", out.serial);
    assert!(out.serial.contains("GOT:first:second"), "{}", out.serial);
}

#[test]
#[ignore = "boots a QEMU guest; run by cargo xtask test"]
fn markers_are_found_on_the_emulated_screen_and_arrow_keys_arrive_whole() {
    let k = Kernel::pinned().unwrap();
    // The marker is drawn by cursor moves only: it never appears as one run
    // of bytes on the serial line, only on the screen a terminal shows.
    let initrd = Initramfs::new(&k).script(
        "printf '\\033[2J\\033[5;10HSCR\\033[5;4HALPHA \\033[5;13HEEN-READY\\n'\n\
         stty raw -echo\n\
         key=$(dd bs=3 count=1 2>/dev/null | od -An -tx1 | tr -d ' \\n')\n\
         stty sane\n\
         echo \"KEY:$key\"\n",
    );
    let out = Vm::new()
        .kernel(&k, &initrd, "")
        .screen(24, 80)
        .send_when("ALPHA SCREEN-READY", "\x1b[B")
        .run()
        .unwrap();
    assert!(!out.serial.contains("ALPHA SCREEN-READY"), "{}", out.serial);
    assert_eq!(out.exit_code, Some(0), "{}", out.serial);
    assert!(out.serial.contains("KEY:1b5b42"), "{}", out.serial);
}
