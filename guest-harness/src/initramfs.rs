//! The guest's initramfs: busybox, kmod, a module set with its dependencies
//! (indexed by `depmod`), host tools with their shared libraries, test files
//! and the test script, written with iso-builder's deterministic cpio writer.
//!
//! The guest has a merged /usr like Debian 12: /bin, /sbin, /lib and /lib64
//! are links into /usr, and host paths are placed by their canonical location.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use iso_builder::cpio::Archive;
use iso_builder::kmod;

use crate::kernel::Kernel;
use crate::{HarnessError, io_err};

/// Modules every guest gets besides the live system's storage set
/// ([`iso_builder::live::MODULES`]): filesystems and dm-crypt for the tests,
/// the MSR driver (for hcl-check), efivarfs.
pub const EXTRA_MODULES: &[&str] = &["ext4", "dm_mod", "dm_crypt", "msr", "efivarfs"];

/// Whole directories of the module tree shipped so that on-demand loads
/// (e.g. dm-crypt asking for `crypto-xts`) resolve.
const MODULE_DIRS: &[&str] = &[
    "kernel/crypto",
    "kernel/arch/x86/crypto",
    "kernel/lib/crypto",
];

const INIT: &str = r#"#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run /tmp /mnt
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
while read -r m; do modprobe -q "$m" 2>/dev/null; done < /etc/bulkhead/modules
[ -d /sys/firmware/efi/efivars ] && mount -t efivarfs efivarfs /sys/firmware/efi/efivars
echo "BULKHEAD-GUEST-START"
/bin/sh /test.sh
rc=$?
echo "BULKHEAD-GUEST-EXIT=$rc"
sync
poweroff -f
"#;

/// `wait-dev PATH [SECONDS]`: waits for a device node to appear (no udev).
const WAIT_DEV: &str = r#"#!/bin/sh
n=$(( ${2:-20} * 10 ))
while [ ! -e "$1" ] && [ $n -gt 0 ]; do sleep 0.1; n=$((n-1)); done
[ -e "$1" ] || { echo "wait-dev: $1 did not appear" >&2; exit 1; }
"#;

#[derive(Debug, Clone)]
enum Item {
    Host(PathBuf),
    Bytes(Vec<u8>, u32),
}

/// Builder of a guest initramfs.
#[derive(Debug, Clone)]
pub struct Initramfs {
    kernel: Kernel,
    modules: Vec<String>,
    host: Vec<PathBuf>,
    files: BTreeMap<String, Item>,
    script: String,
    script_is_init: bool,
}

/// Maps a canonical host path into the guest's merged-/usr layout.
fn guest_path(p: &str) -> String {
    let p = p.trim_start_matches('/');
    for (from, to) in [
        ("bin/", "usr/bin/"),
        ("sbin/", "usr/sbin/"),
        ("lib/", "usr/lib/"),
        ("lib64/", "usr/lib64/"),
    ] {
        if let Some(rest) = p.strip_prefix(from) {
            return format!("{to}{rest}");
        }
    }
    p.to_string()
}

fn is_dynamic_elf(path: &Path) -> bool {
    let mut head = [0u8; 4];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == *b"\x7fELF"
}

/// The shared libraries `ldd` resolves for an ELF file (empty when static).
fn shared_libs(path: &Path) -> Result<Vec<PathBuf>, HarnessError> {
    let out = Command::new("ldd")
        .arg(path)
        .output()
        .map_err(io_err("running ldd on", path))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("not found") {
            return Err(HarnessError::Setup(format!(
                "{}: shared library missing on the host: {line}",
                path.display()
            )));
        }
        let candidate = match line.split_once("=>") {
            Some((_, rhs)) => rhs.trim(),
            None => line,
        };
        if let Some(p) = candidate.split_whitespace().next()
            && p.starts_with('/')
        {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

impl Initramfs {
    pub fn new(kernel: &Kernel) -> Self {
        Self {
            kernel: kernel.clone(),
            modules: iso_builder::live::MODULES
                .iter()
                .chain(EXTRA_MODULES)
                .map(|s| s.to_string())
                .collect(),
            host: vec![
                PathBuf::from("/usr/bin/busybox"),
                PathBuf::from("/usr/bin/kmod"),
            ],
            files: BTreeMap::new(),
            script: String::from("echo no test script\n"),
            script_is_init: false,
        }
    }

    /// Extra kernel modules to load at boot (dependencies follow).
    pub fn modules(mut self, names: &[&str]) -> Self {
        self.modules.extend(names.iter().map(|s| s.to_string()));
        self
    }

    /// A host program (or any file), at its own path, with its libraries.
    pub fn host_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.host.push(path.into());
        self
    }

    /// A host file at `guest` (its libraries too, if it is a dynamic ELF).
    pub fn file(mut self, guest: &str, host: impl Into<PathBuf>) -> Self {
        self.files
            .insert(guest_path(guest), Item::Host(host.into()));
        self
    }

    /// A file with the given contents.
    pub fn file_bytes(mut self, guest: &str, data: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.files
            .insert(guest_path(guest), Item::Bytes(data.into(), mode));
        self
    }

    /// The shell script the guest runs; its exit status is reported.
    pub fn script(mut self, script: &str) -> Self {
        self.script = script.to_string();
        self
    }

    /// Writes the initramfs to `dest`.
    /// Runs the script as PID 1 (`exec`), so it can `switch_root` into a
    /// root file system; no exit marker is printed then.
    pub fn script_as_init(mut self) -> Self {
        self.script_is_init = true;
        self
    }

    pub fn write(&self, dest: &Path) -> Result<(), HarnessError> {
        let staging = tempfile::tempdir().map_err(io_err("creating staging dir", "/tmp"))?;
        let mut a = Archive::new();
        for (link, target) in [
            ("bin", "usr/bin"),
            ("sbin", "usr/sbin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
        ] {
            a.symlink(link, target)?;
        }
        for d in [
            "proc",
            "sys",
            "dev",
            "run",
            "tmp",
            "mnt",
            "root",
            "etc",
            "usr/local/bin",
        ] {
            a.dir(d, 0o755)?;
        }
        a.dir("tmp", 0o1777)?;
        a.char_dev("dev/console", 0o600, 5, 1)?;
        a.char_dev("dev/null", 0o666, 1, 3)?;

        let mut added = BTreeSet::new();
        for p in &self.host {
            add_host_path(&mut a, &mut added, p)?;
            if is_dynamic_elf(p) {
                for lib in shared_libs(p)? {
                    add_host_path(&mut a, &mut added, &lib)?;
                }
            }
        }
        self.add_busybox_applets(&mut a)?;
        for tool in ["modprobe", "insmod", "rmmod", "lsmod", "depmod", "modinfo"] {
            a.symlink(&format!("usr/sbin/{tool}"), "../bin/kmod")?;
        }

        let loaded = self.stage_modules(staging.path())?;
        a.add_tree(staging.path())?;
        a.file_bytes("etc/bulkhead/modules", loaded.join("\n") + "\n", 0o644)?;

        let init = if self.script_is_init {
            INIT.replace("/bin/sh /test.sh\n", "exec /bin/sh /test.sh\n")
        } else {
            INIT.to_string()
        };
        a.file_bytes("init", init, 0o755)?;
        a.file_bytes("usr/bin/wait-dev", WAIT_DEV, 0o755)?;
        a.file_bytes("test.sh", self.script.clone(), 0o755)?;
        for (guest, item) in &self.files {
            match item {
                Item::Host(host) => {
                    let mode = fs::metadata(host)
                        .map_err(io_err("reading", host))?
                        .permissions();
                    a.file_from_host(guest, host, std::os::unix::fs::PermissionsExt::mode(&mode))?;
                    if is_dynamic_elf(host) {
                        for lib in shared_libs(host)? {
                            add_host_path(&mut a, &mut added, &lib)?;
                        }
                    }
                }
                Item::Bytes(data, mode) => a.file_bytes(guest, data.clone(), *mode)?,
            }
        }

        let tmp = dest.with_extension("partial");
        let f = fs::File::create(&tmp).map_err(io_err("creating", &tmp))?;
        a.write_to(std::io::BufWriter::new(f), 0)?;
        fs::rename(&tmp, dest).map_err(io_err("renaming to", dest))?;
        Ok(())
    }

    fn add_busybox_applets(&self, a: &mut Archive) -> Result<(), HarnessError> {
        let out = Command::new("/usr/bin/busybox")
            .arg("--list-full")
            .output()
            .map_err(io_err(
                "running",
                "/usr/bin/busybox (apt-get install busybox-static)",
            ))?;
        for applet in String::from_utf8_lossy(&out.stdout).lines() {
            let path = guest_path(applet);
            if a.contains(&path) || applet.is_empty() {
                continue;
            }
            let depth = path.matches('/').count();
            let target = format!("{}usr/bin/busybox", "../".repeat(depth));
            a.symlink(&path, &target)?;
        }
        Ok(())
    }

    /// Copies the wanted modules and their dependencies into
    /// `staging/usr/lib/modules/RELEASE`, indexes them, and returns the list
    /// of module names to load at boot.
    fn stage_modules(&self, staging: &Path) -> Result<Vec<String>, HarnessError> {
        let src = self.kernel.modules_dir();
        let wanted: Vec<&str> = self.modules.iter().map(String::as_str).collect();
        let set = kmod::select(&src, &wanted, MODULE_DIRS)?;
        kmod::stage(&src, &self.kernel.release, &set, staging)?;
        Ok(set.load)
    }
}

/// Adds a host path at its canonical guest location, following symlinks
/// (the link and its target both go in).
fn add_host_path(
    a: &mut Archive,
    added: &mut BTreeSet<PathBuf>,
    path: &Path,
) -> Result<(), HarnessError> {
    if !added.insert(path.to_path_buf()) {
        return Ok(());
    }
    let parent = path
        .parent()
        .ok_or_else(|| HarnessError::Setup(format!("{} has no parent", path.display())))?;
    let name = path
        .file_name()
        .ok_or_else(|| HarnessError::Setup(format!("{} has no file name", path.display())))?;
    let parent = fs::canonicalize(parent).map_err(io_err("resolving", parent))?;
    let here = parent.join(name);
    let guest = guest_path(&here.to_string_lossy());
    let meta = fs::symlink_metadata(&here).map_err(io_err("reading", &here))?;
    if meta.file_type().is_symlink() {
        let target = fs::read_link(&here).map_err(io_err("reading link", &here))?;
        a.symlink(&guest, &target.to_string_lossy())?;
        let resolved = if target.is_absolute() {
            target
        } else {
            parent.join(target)
        };
        return add_host_path(a, added, &resolved);
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
    a.file_from_host(&guest, &here, mode)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::guest_path;

    #[test]
    fn merged_usr_mapping() {
        assert_eq!(guest_path("/bin/hcl-check"), "usr/bin/hcl-check");
        assert_eq!(guest_path("/lib64/ld.so"), "usr/lib64/ld.so");
        assert_eq!(guest_path("/usr/sbin/x"), "usr/sbin/x");
        assert_eq!(guest_path("/etc/x"), "etc/x");
    }
}
