//! Mastering a bootable hybrid image from a directory: the tree, GRUB's
//! menu and images, the ESP, and the ISO9660 writer with El Torito and the
//! hybrid MBR/GPT. `bulkhead-iso master` and the full ISO build call this.

use std::collections::BTreeMap;
use std::path::Path;

use crate::esp::{self, EspError};
use crate::grub::{self, BootloaderLock, Entry, GrubError, Loader};
use crate::inputs::Cache;
use crate::iso9660::{self, BiosBoot, HybridBoot, Image, IsoError, Options};
use crate::isotree::{Kind, Tree, TreeError};

pub const KERNEL: &str = "boot/vmlinuz";
pub const INITRD: &str = "boot/initrd.img";
pub const BIOS_IMAGE: &str = "boot/grub/i386-pc/eltorito.img";
pub const EFI_IMAGE: &str = "boot/grub/efi.img";
pub const MENU: &str = "boot/grub/grub.cfg";

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error(transparent)]
    Iso(#[from] IsoError),
    #[error(transparent)]
    Esp(#[from] EspError),
    #[error(transparent)]
    Grub(#[from] GrubError),
    #[error(
        "{path:?} is missing from the tree (or not a regular file); the boot menu loads it: put the kernel at boot/vmlinuz and the initramfs at boot/initrd.img"
    )]
    MissingBootFile { path: String },
    #[error("{0}")]
    Options(String),
}

/// How to master.
#[derive(Debug, Clone)]
pub struct MasterOptions {
    /// ISO9660 volume label (A-Z, 0-9, _; up to 32).
    pub label: String,
    /// Kernel command line of every menu entry.
    pub cmdline: String,
    /// Seconds the menu waits.
    pub timeout: u32,
    pub default: Entry,
    /// SOURCE_DATE_EPOCH.
    pub epoch: i64,
    /// Embed the image's sha256 while writing it (see
    /// [`Options::embed_checksum`]).
    pub embed_checksum: bool,
}

impl MasterOptions {
    pub fn new(label: &str, epoch: i64) -> Self {
        MasterOptions {
            label: label.to_string(),
            cmdline: String::new(),
            timeout: 5,
            default: Entry::Install,
            epoch,
            embed_checksum: false,
        }
    }
}

/// Adds the bootloader to `tree` and writes the image to `out` (through a
/// temporary file). `loader` must have been built for this epoch (its
/// embedded search names the volume's UUID).
pub fn master_tree(
    mut tree: Tree,
    out: &Path,
    opts: &MasterOptions,
    loader: &Loader,
) -> Result<Image, MasterError> {
    grub::check_cmdline(&opts.cmdline).map_err(MasterError::Options)?;
    for p in [KERNEL, INITRD] {
        if !matches!(tree.get(p).map(|n| &n.kind), Some(Kind::File(_))) {
            return Err(MasterError::MissingBootFile {
                path: p.to_string(),
            });
        }
    }
    let uuid = iso9660::grub_fs_uuid(opts.epoch);
    let mut esp_files = BTreeMap::new();
    esp_files.insert("EFI/BOOT/BOOTX64.EFI".to_string(), loader.bootx64.clone());
    esp_files.insert(
        "EFI/BOOT/grub.cfg".to_string(),
        grub::esp_config(&uuid).into_bytes(),
    );
    let esp = esp::build(&esp_files, "BULKHEADESP", opts.epoch)?;
    tree.add_bytes(EFI_IMAGE, esp, 0o444)?;
    tree.add_bytes(BIOS_IMAGE, loader.eltorito.clone(), 0o444)?;
    tree.add_bytes(
        MENU,
        grub::menu(&opts.cmdline, opts.timeout, opts.default),
        0o444,
    )?;
    let mut iso = Options::new(&opts.label, opts.epoch);
    iso.application = "BULKHEAD-ISO".into();
    iso.publisher = "BULKHEAD".into();
    iso.embed_checksum = opts.embed_checksum;
    iso.bios = Some(BiosBoot {
        image: BIOS_IMAGE.into(),
        load_sectors: 4,
        boot_info_table: true,
        grub2_boot_info: true,
    });
    iso.efi_image = Some(EFI_IMAGE.into());
    iso.hybrid = Some(HybridBoot {
        mbr_code: loader.boot_hybrid.clone(),
        grub2_mbr: true,
    });
    Ok(iso9660::write_image(&tree, iso, out)?)
}

/// Masters the directory `dir` (which holds boot/vmlinuz and
/// boot/initrd.img) into `out`, with GRUB from the pinned packages.
pub fn master_dir(
    dir: &Path,
    out: &Path,
    opts: &MasterOptions,
    cache: &Cache,
) -> Result<Image, MasterError> {
    let tree = Tree::from_dir(dir)?;
    let lock = BootloaderLock::parse(grub::LOCK_TEXT)?;
    let loader = grub::build_loader(cache, &lock, &iso9660::grub_fs_uuid(opts.epoch))?;
    master_tree(tree, out, opts, &loader)
}

/// SOURCE_DATE_EPOCH from the environment, if set and valid.
pub fn env_epoch() -> Result<Option<i64>, MasterError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map(Some).map_err(|_| {
            MasterError::Options(format!(
                "SOURCE_DATE_EPOCH={v:?} is not a number of seconds"
            ))
        }),
        _ => Ok(None),
    }
}
