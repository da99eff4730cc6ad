//! The live system's initramfs: busybox, the storage and filesystem modules
//! of the locked kernel, and an init that finds the boot medium by its
//! identity file (CD, USB stick, virtio, AHCI or NVMe disk), mounts the live
//! root read-only under a tmpfs overlay and hands over to it. When the medium
//! cannot be found it says which devices it tried instead of hanging.

use std::fs;
use std::path::{Path, PathBuf};

use crate::cpio::{Archive, CpioError};
use crate::kmod::{self, KmodError};

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
];

/// Where things live on the medium.
pub const ID_FILE: &str = "bulkhead/medium.id";
pub const LIVE_IMAGE: &str = "live/live.squashfs";

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Kmod(#[from] KmodError),
    #[error(transparent)]
    Cpio(#[from] CpioError),
    #[error("{what} {path:?}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Missing(String),
}

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
say "BULKHEAD-LIVE-READY medium=$found"
for arg in $(cat /proc/cmdline); do
  case "$arg" in bulkhead.probe) say "BULKHEAD-PROBE-OK"; sync; poweroff -f;; esac
done
for init in /sbin/init /usr/lib/systemd/systemd /bin/sh; do
  [ -x "/newroot$init" ] && exec switch_root /newroot "$init"
done
exec sh
"#;

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
        if !self.busybox.is_file() {
            return Err(LiveError::Missing(format!(
                "busybox not found at {}",
                self.busybox.display()
            )));
        }
        let staging = tempfile::tempdir().map_err(|source| LiveError::Io {
            what: "creating a staging directory",
            path: std::env::temp_dir(),
            source,
        })?;
        let modules_dir = self.kernel_root.join("lib/modules").join(&self.release);
        if !modules_dir.join("modules.dep").is_file() {
            kmod::depmod(&self.kernel_root, &self.release)?;
        }
        let set = kmod::select(&modules_dir, MODULES, &[])?;
        kmod::stage(&modules_dir, &self.release, &set, staging.path())?;

        let mut a = Archive::new();
        for (link, target) in [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib")] {
            a.symlink(link, target)?;
        }
        for d in [
            "proc",
            "sys",
            "dev",
            "run",
            "tmp",
            "etc/bulkhead",
            "usr/sbin",
        ] {
            a.dir(d, 0o755)?;
        }
        a.char_dev("dev/console", 0o600, 5, 1)?;
        a.char_dev("dev/null", 0o666, 1, 3)?;
        a.file_from_host("usr/bin/busybox", &self.busybox, 0o755)?;
        for applet in [
            "sh",
            "mount",
            "umount",
            "modprobe",
            "insmod",
            "sleep",
            "cat",
            "mkdir",
            "echo",
            "switch_root",
            "poweroff",
            "sync",
            "ls",
            "blkid",
            "dmesg",
            "setsid",
            "cttyhack",
            "grep",
        ] {
            let dir =
                if ["modprobe", "insmod", "switch_root", "poweroff", "blkid"].contains(&applet) {
                    "usr/sbin"
                } else {
                    "usr/bin"
                };
            a.symlink(&format!("{dir}/{applet}"), "../bin/busybox")?;
        }
        add_tree(&mut a, staging.path(), staging.path())?;
        a.file_bytes("etc/bulkhead/modules", set.load.join("\n") + "\n", 0o644)?;
        let init = INIT
            .replace("@ID@", &self.medium_id)
            .replace("@ID_FILE@", ID_FILE)
            .replace("@LIVE@", LIVE_IMAGE);
        a.file_bytes("init", init, 0o755)?;
        let f = fs::File::create(dest).map_err(|source| LiveError::Io {
            what: "creating",
            path: dest.to_path_buf(),
            source,
        })?;
        a.write_to(std::io::BufWriter::new(f), 0)?;
        Ok(())
    }
}

fn add_tree(a: &mut Archive, base: &Path, dir: &Path) -> Result<(), LiveError> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|source| LiveError::Io {
            what: "listing",
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        let rel = p
            .strip_prefix(base)
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_default();
        if p.is_dir() {
            a.dir(&rel, 0o755)?;
            add_tree(a, base, &p)?;
        } else {
            a.file_from_host(&rel, &p, 0o644)?;
        }
    }
    Ok(())
}
