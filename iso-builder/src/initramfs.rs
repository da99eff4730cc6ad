//! The shape every initramfs we make shares: busybox with the applets our
//! init scripts use, a chosen set of the kernel's modules (closed over their
//! dependencies and indexed by depmod, so `modprobe` resolves them), the
//! list of modules to load at boot, and an `/init` script. The live system
//! ([`crate::live`]) and the qubes' boot kit ([`crate::vmkit`]) differ only
//! in their modules and init.

use std::fs;
use std::path::Path;

use crate::cpio::{Archive, CpioError};
use crate::kmod::{self, KmodError};

#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error(transparent)]
    Kmod(#[from] KmodError),
    #[error(transparent)]
    Cpio(#[from] CpioError),
    #[error(transparent)]
    Io(#[from] sysutil::IoError),
    #[error("{0}")]
    Missing(String),
}

/// The busybox applets the init scripts call, with the directory each
/// link goes in.
const APPLETS: &[(&str, &str)] = &[
    ("sh", "usr/bin"),
    ("mount", "usr/bin"),
    ("umount", "usr/bin"),
    ("sleep", "usr/bin"),
    ("cat", "usr/bin"),
    ("mkdir", "usr/bin"),
    ("echo", "usr/bin"),
    ("sync", "usr/bin"),
    ("ls", "usr/bin"),
    ("dmesg", "usr/bin"),
    ("setsid", "usr/bin"),
    ("cttyhack", "usr/bin"),
    ("grep", "usr/bin"),
    ("modprobe", "usr/sbin"),
    ("insmod", "usr/sbin"),
    ("switch_root", "usr/sbin"),
    ("poweroff", "usr/sbin"),
    ("blkid", "usr/sbin"),
];

/// What one initramfs is made of.
#[derive(Debug, Clone)]
pub struct Initramfs<'a> {
    /// Unpacked kernel package (holds `lib/modules/RELEASE`).
    pub kernel_root: &'a Path,
    pub release: &'a str,
    /// A static busybox binary.
    pub busybox: &'a Path,
    /// Modules to load at boot, in this order (builtin ones are skipped).
    pub modules: &'a [&'a str],
    /// The `/init` script.
    pub init: &'a str,
}

impl Initramfs<'_> {
    /// Writes the uncompressed cpio archive to `dest`.
    pub fn write_cpio(&self, dest: &Path) -> Result<(), InitramfsError> {
        if !self.busybox.is_file() {
            return Err(InitramfsError::Missing(format!(
                "busybox not found at {}",
                self.busybox.display()
            )));
        }
        let staging = tempfile::tempdir().map_err(|source| {
            InitramfsError::Io(sysutil::IoError::new(
                "creating a staging directory",
                std::env::temp_dir(),
                source,
            ))
        })?;
        let modules_dir = self.kernel_root.join("lib/modules").join(self.release);
        if !modules_dir.join("modules.dep").is_file() {
            kmod::depmod(self.kernel_root, self.release)?;
        }
        let set = kmod::select(&modules_dir, self.modules, &[])?;
        kmod::stage(&modules_dir, self.release, &set, staging.path())?;

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
        a.file_from_host("usr/bin/busybox", self.busybox, 0o755)?;
        for (applet, dir) in APPLETS {
            a.symlink(&format!("{dir}/{applet}"), "../bin/busybox")?;
        }
        a.add_tree(staging.path())?;
        a.file_bytes("etc/bulkhead/modules", set.load.join("\n") + "\n", 0o644)?;
        a.file_bytes("init", self.init.to_string(), 0o755)?;
        let f = fs::File::create(dest).map_err(|source| {
            InitramfsError::Io(sysutil::IoError::new(
                "creating",
                dest.to_path_buf(),
                source,
            ))
        })?;
        a.write_to(std::io::BufWriter::new(f), 0)?;
        Ok(())
    }
}
