//! The bootloader: GRUB 2 from pinned Debian packages.
//!
//! Decision: GRUB, not isolinux + an EFI loader. One loader and one menu
//! serve BIOS and UEFI, CD and USB (isolinux would need a second loader and
//! a second configuration for UEFI, and syslinux's EFI port is unmaintained
//! in Debian 12); GRUB's own hybrid MBR code (boot_hybrid.img) and El Torito
//! image are what `grub-mkrescue` ships and xorriso documents, so firmware
//! has long accepted this layout. Debian builds its installer media the
//! same way.
//!
//! Inputs: grub-pc-bin (i386-pc modules, cdboot.img, boot_hybrid.img),
//! grub-efi-amd64-bin (x86_64-efi modules) and grub-common (grub-mkimage
//! itself, so the tool that assembles the images is pinned too). A build
//! takes their pins from inputs.lock's payload tree, which installs the same
//! packages, so they are refreshed and `--locked` like every tree pin;
//! `iso-builder/bootloader.lock.toml` (refresh with `cargo run -p
//! iso-builder --bin bulkhead-iso -- pin-bootloader`) serves `bulkhead-iso
//! master` and a recipe whose payload lacks them. They are fetched and
//! sha256-verified by [`crate::inputs::Cache`].
//!
//! Images: `grub-mkimage -O i386-pc-eltorito` (cdboot.img + core, the El
//! Torito BIOS image, also entered by boot_hybrid.img from a USB disk) and
//! `-O x86_64-efi` (BOOTX64.EFI), each with the modules the menu needs built
//! in (no module directories on the medium) and an embedded configuration
//! that finds the medium by its ISO9660 UUID (the volume's modification
//! date, i.e. SOURCE_DATE_EPOCH, as grub-mkrescue does) and sets the prefix
//! to its `/boot/grub`. grub-mkimage's output depends only on its inputs
//! (checked by building twice in the tests).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::inputs::{Cache, DebPin, InputError};

/// The pin file, compiled in so a binary always builds with its pins.
pub const LOCK_TEXT: &str = include_str!("../bootloader.lock.toml");
/// The command that refreshes [`LOCK_TEXT`].
pub const REFRESH: &str = "cargo run -p iso-builder --bin bulkhead-iso -- pin-bootloader";
/// Packages the loader files come from.
pub const PACKAGES: [&str; 3] = ["grub-common", "grub-pc-bin", "grub-efi-amd64-bin"];

const BIOS_MODULES: &[&str] = &[
    "biosdisk",
    "iso9660",
    "part_msdos",
    "part_gpt",
    "fat",
    "normal",
    "search",
    "search_fs_uuid",
    "configfile",
    "linux",
    "echo",
    "serial",
    "terminal",
    "test",
    "chain",
    "boot",
    "sleep",
    "reboot",
    "halt",
    "ls",
    "cat",
];
const EFI_MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "fat",
    "iso9660",
    "normal",
    "search",
    "search_fs_uuid",
    "configfile",
    "linux",
    "echo",
    "serial",
    "terminal",
    "test",
    "chain",
    "boot",
    "sleep",
    "reboot",
    "halt",
    "ls",
    "cat",
    "efi_gop",
    "efi_uga",
    "video",
    "video_fb",
];

#[derive(Debug, thiserror::Error)]
pub enum GrubError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("bootloader.lock.toml: {0}; refresh it with `{REFRESH}`")]
    Lock(String),
    #[error(
        "bootloader file {path:?} is missing from the pinned package {package}; the pin is wrong, refresh it with `{REFRESH}`"
    )]
    Missing { path: PathBuf, package: String },
    #[error("{command} failed: {detail}")]
    Tool { command: String, detail: String },
    #[error(transparent)]
    Io(#[from] sysutil::IoError),
}

/// The pin file's shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootloaderLock {
    pub deb: Vec<DebPin>,
}

impl BootloaderLock {
    pub fn parse(text: &str) -> Result<Self, GrubError> {
        let lock: BootloaderLock =
            toml::from_str(text).map_err(|e| GrubError::Lock(e.to_string()))?;
        for p in PACKAGES {
            if !lock.deb.iter().any(|d| d.package == p) {
                return Err(GrubError::Lock(format!("no pin for {p}")));
            }
        }
        Ok(lock)
    }

    /// Pins the apt candidates of [`PACKAGES`].
    pub fn resolve() -> Result<Self, GrubError> {
        let deb = PACKAGES
            .iter()
            .map(|p| crate::inputs::resolve(&crate::origins::AptEnv::host(), p, None))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BootloaderLock { deb })
    }

    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!(
            "# GRUB packages the boot loader files come from.\n# Refresh with `{REFRESH}`.\n{body}"
        )
    }

    /// The pins of a build: taken from the payload tree of `lock` when it
    /// holds all of [`PACKAGES`] (the installed system's GRUB is the same
    /// files), so they are refreshed and `--locked` with the tree pins;
    /// otherwise the compiled-in [`LOCK_TEXT`].
    pub fn for_build(lock: &crate::lock::Lock) -> Result<Self, GrubError> {
        let payload = lock.trees.get("payload").map(Vec::as_slice).unwrap_or(&[]);
        let from_tree: Vec<DebPin> = PACKAGES
            .iter()
            .filter_map(|p| {
                payload
                    .iter()
                    .find(|d| d.package == *p && d.arch == "amd64")
            })
            .cloned()
            .collect();
        if from_tree.len() == PACKAGES.len() {
            Ok(BootloaderLock { deb: from_tree })
        } else {
            BootloaderLock::parse(LOCK_TEXT)
        }
    }

    fn pin(&self, package: &str) -> Result<&DebPin, GrubError> {
        self.deb
            .iter()
            .find(|d| d.package == package)
            .ok_or_else(|| GrubError::Lock(format!("no pin for {package}")))
    }
}

/// The loader files an image needs.
#[derive(Debug, Clone)]
pub struct Loader {
    /// El Torito BIOS image (cdboot.img + core).
    pub eltorito: Vec<u8>,
    /// MBR boot code for USB boots.
    pub boot_hybrid: Vec<u8>,
    /// EFI/BOOT/BOOTX64.EFI.
    pub bootx64: Vec<u8>,
}

fn need(path: PathBuf, package: &str) -> Result<PathBuf, GrubError> {
    if path.exists() {
        Ok(path)
    } else {
        Err(GrubError::Missing {
            path,
            package: package.to_string(),
        })
    }
}

/// The configuration embedded in both core images.
pub fn early_config(fs_uuid: &str) -> String {
    format!("search --no-floppy --fs-uuid --set=root {fs_uuid}\nset prefix=($root)/boot/grub\n")
}

fn mkimage(
    tool: &Path,
    moddir: &Path,
    format: &str,
    prefix: &str,
    config: &Path,
    modules: &[&str],
    out: &Path,
) -> Result<Vec<u8>, GrubError> {
    let mut cmd = Command::new(tool);
    cmd.arg("--directory")
        .arg(moddir)
        .arg("--prefix")
        .arg(prefix)
        .arg("--format")
        .arg(format)
        .arg("--compression")
        .arg("auto")
        .arg("--config")
        .arg(config)
        .arg("--output")
        .arg(out)
        .args(modules)
        .env("LC_ALL", "C")
        .env("TZ", "UTC");
    let shown = format!("{} --format {format}", tool.display());
    let o = cmd.output().map_err(|e| GrubError::Tool {
        command: shown.clone(),
        detail: format!("{e}; grub-mkimage needs the libraries of the host's grub-common package (apt-get install grub-common)"),
    })?;
    if !o.status.success() {
        return Err(GrubError::Tool {
            command: shown,
            detail: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        });
    }
    std::fs::read(out).map_err(|source| {
        GrubError::Io(sysutil::IoError::new("reading", out.to_path_buf(), source))
    })
}

/// Fetches the pinned packages and builds both core images for a medium
/// whose ISO9660 UUID is `fs_uuid`.
pub fn build_loader(
    cache: &Cache,
    lock: &BootloaderLock,
    fs_uuid: &str,
) -> Result<Loader, GrubError> {
    let common = cache.unpacked(lock.pin("grub-common")?)?;
    let pc = cache.unpacked(lock.pin("grub-pc-bin")?)?;
    let efi = cache.unpacked(lock.pin("grub-efi-amd64-bin")?)?;
    let tool = need(common.join("usr/bin/grub-mkimage"), "grub-common")?;
    let pc_dir = need(pc.join("usr/lib/grub/i386-pc"), "grub-pc-bin")?;
    let efi_dir = need(efi.join("usr/lib/grub/x86_64-efi"), "grub-efi-amd64-bin")?;
    for f in [
        "cdboot.img",
        "boot_hybrid.img",
        "kernel.img",
        "lzma_decompress.img",
    ] {
        need(pc_dir.join(f), "grub-pc-bin")?;
    }
    need(efi_dir.join("kernel.img"), "grub-efi-amd64-bin")?;
    let io = sysutil::io_err;
    let tmp = tempfile::tempdir().map_err(io(
        "creating a temporary directory in",
        &std::env::temp_dir(),
    ))?;
    let cfg = tmp.path().join("early.cfg");
    std::fs::write(&cfg, early_config(fs_uuid)).map_err(io("writing", &cfg))?;
    let eltorito = mkimage(
        &tool,
        &pc_dir,
        "i386-pc-eltorito",
        "/boot/grub",
        &cfg,
        BIOS_MODULES,
        &tmp.path().join("eltorito.img"),
    )?;
    let bootx64 = mkimage(
        &tool,
        &efi_dir,
        "x86_64-efi",
        "/EFI/BOOT",
        &cfg,
        EFI_MODULES,
        &tmp.path().join("bootx64.efi"),
    )?;
    let hp = pc_dir.join("boot_hybrid.img");
    let boot_hybrid = std::fs::read(&hp).map_err(io("reading", &hp))?;
    Ok(Loader {
        eltorito,
        boot_hybrid,
        bootx64,
    })
}

/// Which menu entry boots when nobody chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Entry {
    #[default]
    Install,
    Serial,
    Check,
    Verify,
    Disk,
}

impl Entry {
    fn index(self) -> u32 {
        match self {
            Entry::Install => 0,
            Entry::Serial => 1,
            Entry::Check => 2,
            Entry::Verify => 3,
            Entry::Disk => 4,
        }
    }
}

/// Kernel command line words GRUB would otherwise interpret.
pub fn check_cmdline(cmdline: &str) -> Result<(), String> {
    if let Some(c) = cmdline.chars().find(|c| "\"'\\$;{}|&<>#`\n\r".contains(*c)) {
        return Err(format!(
            "kernel command line {cmdline:?} holds {c:?}, which GRUB's menu syntax would interpret; leave it out"
        ));
    }
    Ok(())
}

/// The console arguments the serial entry adds.
pub const SERIAL_CONSOLE: &str = "console=tty0 console=ttyS0,115200";

/// The menu, `/boot/grub/grub.cfg`.
pub fn menu(cmdline: &str, timeout: u32, default: Entry) -> String {
    let args = |extra: &str| {
        [cmdline.trim(), extra]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let linux = |extra: &str| {
        format!(
            "    linux /boot/vmlinuz {}\n    initrd /boot/initrd.img\n",
            args(extra)
        )
    };
    format!(
        "set default={}\nset timeout={timeout}\n\
         serial --unit=0 --speed=115200\n\
         terminal_input console serial\n\
         terminal_output console serial\n\n\
         menuentry 'Install Bulkhead' --id install {{\n{}}}\n\n\
         menuentry 'Install Bulkhead (serial console)' --id serial {{\n{}}}\n\n\
         menuentry 'Check hardware only' --id check {{\n{}}}\n\n\
         menuentry 'Verify this medium' --id verify {{\n{}}}\n\n\
         menuentry 'Boot from first disk' --id disk {{\n\
         \x20   if [ \"$grub_platform\" = efi ]; then exit; fi\n\
         \x20   set root=(hd0)\n\
         \x20   chainloader +1\n}}\n",
        default.index(),
        linux(""),
        linux(SERIAL_CONSOLE),
        linux("bulkhead.mode=check"),
        linux("bulkhead.mode=verify"),
    )
}

/// The ESP's `EFI/BOOT/grub.cfg`: read when the embedded search failed
/// (the prefix then still points into the ESP); it says why.
pub fn esp_config(fs_uuid: &str) -> String {
    format!(
        "search --no-floppy --fs-uuid --set=root {fs_uuid}\n\
         set prefix=($root)/boot/grub\n\
         if [ -f $prefix/grub.cfg ]; then configfile $prefix/grub.cfg; fi\n\
         echo \"Bulkhead: the boot medium (ISO9660 UUID {fs_uuid}) was not found.\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_takes_the_grub_pins_from_the_payload_tree() {
        let compiled = BootloaderLock::parse(LOCK_TEXT).unwrap();
        let mut moved = compiled.deb.clone();
        for p in &mut moved {
            p.version = format!("{}+refreshed", p.version);
        }
        let mut trees = std::collections::BTreeMap::new();
        trees.insert("payload".to_string(), moved.clone());
        let lock = crate::lock::Lock {
            format: crate::lock::FORMAT,
            recipe_sha256: String::new(),
            resolved_at: String::new(),
            trees,
        };
        assert_eq!(BootloaderLock::for_build(&lock).unwrap().deb, moved);
        // A payload without GRUB falls back to the compiled-in pins.
        let mut partial = lock.clone();
        partial.trees.get_mut("payload").unwrap().pop();
        assert_eq!(
            BootloaderLock::for_build(&partial).unwrap().deb,
            compiled.deb
        );
    }

    #[test]
    fn lock_file_parses_and_pins_every_package() {
        let lock = BootloaderLock::parse(LOCK_TEXT).unwrap();
        for p in PACKAGES {
            let pin = lock.pin(p).unwrap();
            assert_eq!(pin.sha256.len(), 64);
        }
        let again = BootloaderLock::parse(&lock.to_toml()).unwrap();
        assert_eq!(again.deb, lock.deb);
    }

    #[test]
    fn menu_has_the_five_entries_and_serial_console() {
        let m = menu("quiet", 5, Entry::Serial);
        assert!(m.starts_with("set default=1\nset timeout=5\n"));
        for e in [
            "'Install Bulkhead'",
            "'Install Bulkhead (serial console)'",
            "'Check hardware only'",
            "'Verify this medium'",
            "'Boot from first disk'",
        ] {
            assert!(m.contains(e), "{e}");
        }
        assert!(m.contains("linux /boot/vmlinuz quiet bulkhead.mode=check\n"));
        assert!(m.contains("linux /boot/vmlinuz quiet bulkhead.mode=verify\n"));
        assert!(menu("", 5, Entry::Disk).starts_with("set default=4\n"));
        assert!(m.contains("linux /boot/vmlinuz quiet console=tty0 console=ttyS0,115200\n"));
        assert!(m.contains("linux /boot/vmlinuz quiet\n"));
    }

    #[test]
    fn missing_loader_file_is_named_with_the_fix() {
        let err = need(
            PathBuf::from("/nonexistent/usr/lib/grub/i386-pc"),
            "grub-pc-bin",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/nonexistent/usr/lib/grub/i386-pc") && msg.contains("grub-pc-bin"),
            "{msg}"
        );
        assert!(msg.contains(REFRESH), "{msg}");
    }

    #[test]
    fn cmdline_with_grub_syntax_is_refused() {
        assert!(check_cmdline("quiet splash").is_ok());
        assert!(check_cmdline("a;reboot").unwrap_err().contains("';'"));
    }
}
