//! The live system's initramfs: busybox, the storage and filesystem modules
//! of the locked kernel, and an init that finds the boot medium by its
//! identity file (CD, USB stick, virtio, AHCI or NVMe disk), mounts the live
//! root read-only under a tmpfs overlay and hands over to it. When the medium
//! cannot be found it says which devices it tried instead of hanging.

use std::path::{Path, PathBuf};

use crate::initramfs::Initramfs;

/// Modules the live init loads to see its medium.
pub const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "nvme",
    "ahci",
    "ata_piix",
    "sd_mod",
    "sr_mod",
    "cdrom",
    "usb_storage",
    "uas",
    "xhci_pci",
    "ehci_pci",
    "uhci_hcd",
    "ohci_pci",
    "isofs",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "squashfs",
    "overlay",
    "loop",
    // answer files handed over by QEMU/cloud hosts (`-fw_cfg`)
    "qemu_fw_cfg",
];

/// Where things live on the medium.
pub const ID_FILE: &str = "bulkhead/medium.id";
pub const LIVE_IMAGE: &str = "live/live.squashfs";

/// The live initramfs' errors are those of any initramfs.
pub use crate::initramfs::InitramfsError as LiveError;

/// The init script; `@ID@` is replaced by the medium's identity.
const INIT: &str = r#"#!/bin/sh
# Bulkhead live init: find the medium, mount the live root, hand over.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Say everything on the console and on the first serial port, so a person
# at either (or a test harness) sees it whatever console= says.
say() {
  echo "$@"
  if [ -c /dev/ttyS0 ] && ! grep -q 'console=ttyS0' /proc/cmdline; then
    echo "$@" > /dev/ttyS0 2>/dev/null
  fi
}
mkdir -p /run /medium /lower /rw /newroot
mount -t tmpfs -o mode=0755 tmpfs /run
say "bulkhead: loading storage drivers"
while read -r m; do modprobe -q "$m" 2>/dev/null; done < /etc/bulkhead/modules
want="@ID@"
wait_s=30
for arg in $(cat /proc/cmdline); do
  case "$arg" in bulkhead.wait=*) wait_s="${arg#bulkhead.wait=}";; esac
done
found=""
tried=""
i=0
while [ -z "$found" ] && [ $i -lt $((wait_s * 2)) ]; do
  for dev in /dev/sr* /dev/sd* /dev/vd* /dev/nvme*n* /dev/hd*; do
    [ -b "$dev" ] || continue
    case " $tried " in *" $dev "*) ;; *) tried="$tried $dev";; esac
    for fs in iso9660 vfat; do
      if mount -r -t $fs "$dev" /medium 2>/dev/null; then
        if [ -f /medium/@ID_FILE@ ] && [ "$(cat /medium/@ID_FILE@)" = "$want" ]; then
          found="$dev"
          break 2
        fi
        umount /medium
      fi
    done
  done
  [ -n "$found" ] || { sleep 0.5; i=$((i+1)); }
done
if [ -z "$found" ]; then
  say "bulkhead: the boot medium ($want) was not found."
  say "bulkhead: devices tried:${tried:- none (no storage device appeared)}"
  say "bulkhead: if it is a USB stick, plug it into another port and reboot; dropping to a shell."
  exec sh
fi
say "bulkhead: medium found on $found"
mount -r -t squashfs -o loop /medium/@LIVE@ /lower || { say "bulkhead: cannot mount /@LIVE@ from $found"; exec sh; }
mount -t tmpfs -o mode=0755 tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot || { say "bulkhead: overlay mount failed"; exec sh; }
mkdir -p /newroot/run/bulkhead/medium
mount --move /medium /newroot/run/bulkhead/medium
echo "$found" > /newroot/run/bulkhead/medium-device
say "BULKHEAD-LIVE-READY medium=$found"
for arg in $(cat /proc/cmdline); do
  case "$arg" in bulkhead.probe) say "BULKHEAD-PROBE-OK"; sync; poweroff -f;; esac
done
for init in @LIVE_INIT@ /sbin/init /bin/sh; do
  [ -x "/newroot$init" ] && exec switch_root /newroot "$init"
done
exec sh
"#;

/// PID 1 of the live system after the initramfs: mounts the kernel's file
/// systems, loads what the installer and the hardware check need, and hands
/// over to busybox init, which runs [`LIVE_CONSOLE`] on each console.
pub const LIVE_INIT_PATH: &str = "/usr/lib/bulkhead/live-init";
const LIVE_INIT: &str = r#"#!/bin/sh
# Bulkhead live system, PID 1 after switch_root.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm /tmp /mnt/bulkhead
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
if [ -d /sys/firmware/efi ]; then
  modprobe -q efivarfs
  mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null
fi
# device-mapper for the installer (no udev here to load it on demand), the
# MSR driver for the hardware check
for m in dm_mod dm_crypt dm_thin_pool ext4 vfat msr; do modprobe -q "$m"; done
echo bulkhead > /proc/sys/kernel/hostname
# The installer's screens own the consoles from here: only the kernel's
# errors reach them (dmesg on tty2 has the rest), unless loglevel= or debug
# was asked for.
grep -qE '(^| )(loglevel=|debug( |$))' /proc/cmdline || echo 4 > /proc/sys/kernel/printk
exec /bin/busybox init
"#;

/// busybox init's table: the console program on tty1 and the first serial
/// port, a rescue shell on tty2.
const INITTAB: &str = "\
tty1::respawn:/usr/lib/bulkhead/live-console
ttyS0::respawn:/usr/lib/bulkhead/live-console
tty2::askfirst:/bin/sh -l
::ctrlaltdel:/bin/busybox reboot -f
::shutdown:/bin/busybox sync
";

/// What runs on each console: the installer, the hardware check or the
/// medium check, as the boot menu chose (`bulkhead.mode=`).
const LIVE_CONSOLE: &str = r#"#!/bin/sh
# One console of the live system: runs what the boot menu chose and offers
# it again when it ends.
export PATH=/run/bulkhead/medium/bulkhead/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8
case "$(readlink /proc/self/fd/0)" in
  /dev/ttyS*)
    # a port without a UART behind it: stay out of the way
    stty > /dev/null 2>&1 || exec sleep 2147483647
    export TERM=vt100 ;;
  *) export TERM=linux ;;
esac
set -- $(stty size 2> /dev/null)
[ "${1:-0}" -gt 0 ] 2> /dev/null || stty rows 24 cols 80
mode=install
primary=tty1
answers=""
[ -f /run/bulkhead/medium/answers.toml ] && answers=medium
for a in $(cat /proc/cmdline); do
  case "$a" in
    bulkhead.mode=*) mode="${a#bulkhead.mode=}" ;;
    bulkhead.answers=*) answers="${a#bulkhead.answers=}" ;;
    console=*) primary="${a#console=}"; primary="${primary%%,*}" ;;
  esac
done
[ "$primary" = tty0 ] && primary=tty1
me="$(readlink /proc/self/fd/0)"
me="${me#/dev/}"
# An unattended install runs once, on the kernel's console.
if [ "$mode" = install ] && [ -n "$answers" ] && [ "$me" != "$primary" ]; then
  echo "bulkhead: the unattended install runs on $primary; its progress is shown there."
  exec sleep 2147483647
fi
case "$mode" in
  check) /usr/lib/bulkhead/check-hardware ;;
  verify) /usr/lib/bulkhead/verify-medium ;;
  *) installer-tui ;;
esac
echo "bulkhead: $mode finished (exit $?)"
echo
echo "Press Enter to run it again; or type shell, reboot or poweroff, then Enter."
read -r answer
case "$answer" in
  shell) exec /bin/sh -l ;;
  reboot) exec /bin/busybox reboot ;;
  poweroff) exec /bin/busybox poweroff ;;
esac
"#;

/// "Check hardware only": hcl-check's table, and the JSON and YAML reports
/// saved to the medium when it is writable (a FAT copy of the ISO), else
/// left in /run/bulkhead/reports with the way to copy them.
const CHECK_HARDWARE: &str = r#"#!/bin/sh
export PATH=/run/bulkhead/medium/bulkhead/bin:/usr/sbin:/usr/bin:/sbin:/bin
medium=/run/bulkhead/medium
reports=/run/bulkhead/reports
mkdir -p "$reports"
hcl-check
verdict=$?
hcl-check --json > "$reports/hcl-report.json" 2> /dev/null
hcl-check --yaml > "$reports/hcl-report.yaml" 2> /dev/null
case $verdict in
  0) echo "bulkhead: hardware verdict: PASS (this machine can run Bulkhead)" ;;
  1) echo "bulkhead: hardware verdict: WARN (installable with consent; see the warnings above)" ;;
  2) echo "bulkhead: hardware verdict: FAIL (Bulkhead cannot be installed; see above)" ;;
  *) echo "bulkhead: hardware verdict: ERROR (hcl-check could not finish; exit $verdict)" ;;
esac
if mount -o remount,rw "$medium" 2> /dev/null; then
  mkdir -p "$medium/hcl-reports" &&
    cp "$reports/hcl-report.json" "$reports/hcl-report.yaml" "$medium/hcl-reports/" &&
    sync && echo "bulkhead: reports saved on the boot medium in hcl-reports/"
  mount -o remount,ro "$medium" 2> /dev/null
else
  echo "bulkhead: the boot medium is read-only (ISO 9660); the reports are in $reports/."
  echo "bulkhead: to keep them, type shell below, mount a FAT stick (mount /dev/sdX1 /mnt)"
  echo "bulkhead: and copy them: cp $reports/* /mnt/"
fi
exit $verdict
"#;

/// "Verify this medium": the checksum embedded at build time against the
/// boot device's bytes.
const VERIFY_MEDIUM: &str = r#"#!/bin/sh
export PATH=/run/bulkhead/medium/bulkhead/bin:/usr/sbin:/usr/bin:/sbin:/bin
dev=$(cat /run/bulkhead/medium-device 2> /dev/null)
if [ -z "$dev" ]; then
  echo "bulkhead: the boot device is unknown (/run/bulkhead/medium-device is missing)"
  exit 3
fi
echo "bulkhead: checking $dev against the checksum embedded when it was built"
if bulkhead-iso verify "$dev"; then
  echo "bulkhead: medium verdict: INTACT"
else
  echo "bulkhead: medium verdict: DAMAGED; write the image again (and check the download's SHA256SUMS)"
  exit 1
fi
"#;

/// The files the pipeline adds to the live tree (see
/// [`crate::rootfs::Extra`]).
pub fn tree_files() -> Vec<crate::rootfs::Extra> {
    use crate::rootfs::Extra;
    let mut v = vec![
        Extra::file(LIVE_INIT_PATH, LIVE_INIT, 0o755),
        Extra::file("etc/inittab", INITTAB, 0o644),
        Extra::file("usr/lib/bulkhead/live-console", LIVE_CONSOLE, 0o755),
        Extra::file("usr/lib/bulkhead/check-hardware", CHECK_HARDWARE, 0o755),
        Extra::file("usr/lib/bulkhead/verify-medium", VERIFY_MEDIUM, 0o755),
    ];
    // The installer reboots with `reboot`; busybox's signals busybox init.
    for cmd in ["reboot", "poweroff", "halt"] {
        v.push(Extra::symlink(
            &format!("usr/local/sbin/{cmd}"),
            "/bin/busybox",
        ));
    }
    v
}

/// Inputs of the live initramfs.
#[derive(Debug, Clone)]
pub struct LiveInitramfs {
    /// Unpacked kernel package (holds `lib/modules/RELEASE`).
    pub kernel_root: PathBuf,
    pub release: String,
    /// The static busybox binary.
    pub busybox: PathBuf,
    /// The medium's identity, also written to [`ID_FILE`] on the medium.
    pub medium_id: String,
}

impl LiveInitramfs {
    /// Writes the uncompressed cpio archive to `dest`.
    pub fn write_cpio(&self, dest: &Path) -> Result<(), LiveError> {
        let init = INIT
            .replace("@ID@", &self.medium_id)
            .replace("@ID_FILE@", ID_FILE)
            .replace("@LIVE@", LIVE_IMAGE)
            .replace("@LIVE_INIT@", LIVE_INIT_PATH);
        Initramfs {
            kernel_root: &self.kernel_root,
            release: &self.release,
            busybox: &self.busybox,
            modules: MODULES,
            init: &init,
        }
        .write_cpio(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_scripts_parse() {
        for (name, script) in [
            ("init", INIT),
            ("live-init", LIVE_INIT),
            ("live-console", LIVE_CONSOLE),
            ("check-hardware", CHECK_HARDWARE),
            ("verify-medium", VERIFY_MEDIUM),
        ] {
            let out = std::process::Command::new("sh")
                .args(["-n", "-c", script])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(LIVE_INIT.contains("echo 4 > /proc/sys/kernel/printk"));
    }
}
