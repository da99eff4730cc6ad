//! The qubes' boot kit, made at build time from the template tree's own
//! kernel package: its `vmlinuz` and an initramfs that loads xen-blkfront
//! and ext4, waits for the qube's root volume (`root=`, xvda) and hands
//! over to the template's systemd. Xen's `kernel`/`ramdisk` lines name the
//! two files under `/var/lib/qubes/vm-kernels/RELEASE/`, where the installer
//! puts them.
//!
//! Qubes also ships a `modules.img` (xvdd) with each VM kernel, because its
//! dom0-provided kernels are not the templates' own. Here the kernel is the
//! one the template carries, so the running qube finds every module of it
//! in its root volume's `/lib/modules`; no modules.img is made and the xl
//! configs attach no xvdd, as Qubes does for a kernel without one.

use std::path::{Path, PathBuf};

use crate::initramfs::{Initramfs, InitramfsError};

/// Where the kit goes on the medium, beside the template's image; the
/// installer copies this directory to `/var/lib/qubes/vm-kernels`.
pub const MEDIUM_DIR: &str = "live/vm-kernels";
/// The files of one kernel release in the kit.
pub const KERNEL_FILE: &str = "vmlinuz";
pub const INITRAMFS_FILE: &str = "initramfs";

/// What the qube's init loads: the Xen block frontend for its volumes and
/// the root's file system, with the checksum ext4's metadata needs (asked
/// for by name at mount time, so no dependency brings it).
pub const MODULES: &[&str] = &["xen_blkfront", "crc32c_generic", "ext4"];

const INIT: &str = r#"#!/bin/sh
# Bulkhead qube init: mount the qube's root volume and hand over to it.
export PATH=/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do modprobe -q "$m" 2>/dev/null; done < /etc/bulkhead/modules
root=/dev/xvda
fstype=ext4
mode=ro
wait_s=120
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    root=*) root="${arg#root=}" ;;
    rootfstype=*) fstype="${arg#rootfstype=}" ;;
    rw) mode=rw ;;
    ro) mode=ro ;;
    bulkhead.wait=*) wait_s="${arg#bulkhead.wait=}" ;;
  esac
done
i=0
while [ ! -b "$root" ] && [ $i -lt $((wait_s * 2)) ]; do
  sleep 0.5
  i=$((i+1))
done
if [ ! -b "$root" ]; then
  echo "bulkhead-qube: the root volume $root did not appear within $wait_s s; block devices:" $(ls /sys/class/block)
  echo "bulkhead-qube: check the disk lines of this qube's xl config (/var/lib/qubes/xl/NAME.cfg in dom0); dropping to a shell"
  exec sh
fi
mkdir -p /newroot
if ! mount -t "$fstype" -o "$mode" "$root" /newroot; then
  echo "bulkhead-qube: cannot mount $root ($fstype, $mode); dropping to a shell"
  exec sh
fi
umount /sys
umount /proc
mount --move /dev /newroot/dev 2>/dev/null || umount /dev
exec switch_root /newroot /sbin/init
"#;

/// The kit of one kernel release.
#[derive(Debug, Clone)]
pub struct VmKit<'a> {
    /// The template's unpacked kernel package (`boot/vmlinuz-RELEASE`,
    /// `lib/modules/RELEASE`).
    pub kernel_root: &'a Path,
    pub release: &'a str,
    /// A static busybox binary.
    pub busybox: &'a Path,
}

impl VmKit<'_> {
    /// The kernel the kit boots.
    pub fn vmlinuz(&self) -> PathBuf {
        self.kernel_root
            .join("boot")
            .join(format!("vmlinuz-{}", self.release))
    }

    /// Writes the uncompressed initramfs cpio to `dest`.
    pub fn write_initramfs_cpio(&self, dest: &Path) -> Result<(), InitramfsError> {
        if !self.vmlinuz().is_file() {
            return Err(InitramfsError::Missing(format!(
                "the template's kernel {} is missing from its package",
                self.vmlinuz().display()
            )));
        }
        Initramfs {
            kernel_root: self.kernel_root,
            release: self.release,
            busybox: self.busybox,
            modules: MODULES,
            init: INIT,
        }
        .write_cpio(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_parses_and_defaults_to_xvda() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("init");
        std::fs::write(&p, INIT).unwrap();
        let st = std::process::Command::new("sh")
            .arg("-n")
            .arg(&p)
            .status()
            .unwrap();
        assert!(st.success());
        assert!(INIT.contains("root=/dev/xvda\n"));
        assert!(INIT.contains("exec switch_root /newroot /sbin/init"));
    }
}
