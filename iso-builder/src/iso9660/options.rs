//! What the caller asks of the writer besides the tree, and what can go
//! wrong.

use std::path::PathBuf;

use crate::hybrid;

/// Logical block size (ECMA-119 6.1.2).
pub const BLOCK: u64 = 2048;
/// Largest single extent: the 32-bit size field, rounded down to a block.
pub const MAX_EXTENT: u64 = 0xFFFF_F800;

#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("{path:?}: {reason}")]
    Unrepresentable { path: String, reason: String },
    #[error("{0}")]
    Layout(String),
    #[error("boot image {path:?} is not a regular file in the tree; {hint}")]
    BootImage { path: String, hint: &'static str },
    #[error(
        "{path:?} changed while the image was written ({detail}); rebuild from a tree nobody modifies"
    )]
    Changed { path: PathBuf, detail: String },
    #[error(transparent)]
    Hybrid(#[from] hybrid::HybridError),
    #[error(transparent)]
    Io(#[from] sysutil::IoError),
}

pub(super) use sysutil::io_err;

/// An error that only a bug in the writer can cause.
pub(super) fn internal(what: String) -> IsoError {
    IsoError::Layout(format!("internal error: {what}"))
}

/// BIOS El Torito entry.
#[derive(Debug, Clone)]
pub struct BiosBoot {
    /// Tree path of the no-emulation image (e.g. GRUB's eltorito.img).
    pub image: String,
    /// 512-byte sectors the BIOS loads.
    pub load_sectors: u16,
    pub boot_info_table: bool,
    pub grub2_boot_info: bool,
}

/// Hybrid (disk) system area.
#[derive(Debug, Clone)]
pub struct HybridBoot {
    /// MBR boot code (at least 440 bytes), e.g. GRUB's boot_hybrid.img.
    pub mbr_code: Vec<u8>,
    /// Patch the MBR with the BIOS image's address (GRUB's boot_hybrid).
    pub grub2_mbr: bool,
}

/// What to write besides the tree.
#[derive(Debug, Clone)]
pub struct Options {
    /// Volume identifier: up to 32 of `A-Z 0-9 _`.
    pub volume_id: String,
    pub publisher: String,
    pub application: String,
    /// Seconds since 1970: every timestamp in the image.
    pub epoch: i64,
    pub bios: Option<BiosBoot>,
    /// Tree path of the FAT ESP image for the UEFI El Torito entry (and,
    /// with `hybrid`, the GPT's EFI System partition).
    pub efi_image: Option<String>,
    pub hybrid: Option<HybridBoot>,
    /// Also write a Joliet tree (UCS-2 names up to 64 characters).
    pub joliet: bool,
    /// Embed the image's sha256 in its primary volume descriptor (the
    /// record [`crate::checksum::verify`] checks), hashing every byte as it
    /// is written; the write then also returns the finished file's sha256.
    pub embed_checksum: bool,
    /// Largest extent; only tests lower it (to exercise multi-extent files).
    pub max_extent: u64,
}

impl Options {
    pub fn new(volume_id: &str, epoch: i64) -> Self {
        Options {
            volume_id: volume_id.to_string(),
            publisher: String::new(),
            application: String::new(),
            epoch,
            bios: None,
            efi_image: None,
            hybrid: None,
            joliet: true,
            embed_checksum: false,
            max_extent: MAX_EXTENT,
        }
    }

    /// The extent size actually used: whole blocks, one block to
    /// [`MAX_EXTENT`].
    pub(super) fn extent(&self) -> u64 {
        self.max_extent.clamp(BLOCK, MAX_EXTENT) / BLOCK * BLOCK
    }

    /// Whether the image has an El Torito boot catalog.
    pub(super) fn booting(&self) -> bool {
        self.bios.is_some() || self.efi_image.is_some()
    }
}
