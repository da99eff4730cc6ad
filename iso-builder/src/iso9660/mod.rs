//! The ISO9660 (ECMA-119) writer, with Rock Ridge, Joliet, El Torito and
//! the hybrid MBR/GPT system area.
//!
//! Built the way libisofs builds an image (shared/style.md): the tree
//! becomes values, a file table (`files`) and two volumes of one type
//! (`volume`: the primary and the Joliet hierarchy), and the image a list
//! of writers (`layout`): system area, volume descriptors, boot catalog,
//! path tables, directories, file data, padding, backup GPT. A layout pass
//! gives every writer its blocks from tree metadata alone; a write pass
//! has each write exactly those blocks, in the same order, through one
//! sequential output (`out`) that can hash every byte as it goes, so the
//! embedded checksum is one patched field. The same tree gives the same
//! bytes, and memory grows with the number of entries, not with the size
//! of the files.
//!
//! Decision: our own writer rather than hadris-iso (3.0.0-rc.2, measured
//! against this writer and xorriso when the choice was made: README.md as
//! of commit eeec48c; current numbers are in bench/RESULTS.md). hadris-iso
//! also plans first and
//! writes each block once, and was about as fast, but took more memory,
//! was a one-maintainer pre-release whose stable 2.x line has another API,
//! and its GRUB hybrid details (boot_hybrid.img patch, grub2-boot-info)
//! were not proven here; ours is proven by `tests/iso_verify.rs` (xorriso,
//! isoinfo, sgdisk, fsck.fat, mdir and bsdtar read the images back) and
//! `tests/boot.rs` (SeaBIOS and OVMF, CD and USB), and every byte of the
//! layout is ours to keep deterministic.
//!
//! What the image holds:
//! - ECMA-119 names mangled to d-characters (`names`); Rock Ridge
//!   (`rockridge`) carries the real names, modes, owners, symlinks and link
//!   counts.
//! - Every timestamp is the given epoch (SOURCE_DATE_EPOCH).
//! - Hard links share one extent. Files larger than one extent
//!   (4 GiB - 2 KiB) are split into multi-extent records (ECMA-119 9.1.6).
//! - A Joliet tree (on by default, [`Options::joliet`]) over the same
//!   extents; symlinks have no Joliet form and appear only in the Rock
//!   Ridge tree.
//! - Disk and partition GUIDs (and the MBR signature) come from sha256 over
//!   the volume id, the epoch, every file's path, size and place, and the
//!   bytes of in-memory files (loader images, ESP, menu). Host files are not
//!   read a second time for it, so two trees that differ only in the bytes
//!   of equally sized files share GUIDs; the ISO9660 data differs anyway.
//! - No relocation of directories deeper than 8 levels (Linux, GRUB,
//!   xorriso and libarchive read them).
//! - Volumes are at least 32 blocks: libarchive does not recognize smaller.

mod fields;
mod files;
mod layout;
mod names;
mod options;
mod out;
pub mod rockridge;
mod volume;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use fields::{both32, civil, grub_fs_uuid};
pub use layout::Layout;
pub use options::{BLOCK, BiosBoot, HybridBoot, IsoError, MAX_EXTENT, Options};
pub use out::Digests;

use crate::isotree::{Source, Tree};
use options::io_err;

/// A written image.
#[derive(Debug)]
pub struct Image {
    pub layout: Layout,
    /// With [`Options::embed_checksum`]: the embedded record and the file's
    /// sha256.
    pub digests: Option<Digests>,
}

impl Image {
    /// Size of the image in bytes.
    pub fn image_size(&self) -> u64 {
        self.layout.image_size()
    }

    /// Block address of the file at tree path `path`, if it has data.
    pub fn file_lba(&self, path: &str) -> Option<u64> {
        self.layout.file_lba(path)
    }
}

/// Writes `tree` as an image at `dest`: through a temporary file in the
/// same directory, renamed over `dest` only when complete.
pub fn write_image(tree: &Tree, opts: Options, dest: &Path) -> Result<Image, IsoError> {
    let layout = Layout::new(tree, opts)?;
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".bulkhead-iso-")
        .suffix(".part")
        .tempfile_in(&dir)
        .map_err(io_err("creating a temporary file in", &dir))?;
    let file = tmp
        .as_file()
        .try_clone()
        .map_err(io_err("opening", tmp.path()))?;
    let digests = layout.write(file, tmp.path())?;
    tmp.persist(dest)
        .map_err(|e| io_err("renaming the finished image to", dest)(e.error))?;
    Ok(Image { layout, digests })
}

/// Convenience for callers holding bytes: an `Arc` for [`Source::Bytes`].
pub fn bytes(v: Vec<u8>) -> Source {
    Source::Bytes(Arc::new(v))
}
