//! Bulkhead's image builder: pinned inputs, root trees, the initramfs (cpio
//! newc), compression, the ESP image, ISO9660 with El Torito and a hybrid
//! MBR/GPT, checksums and the build manifest.

pub mod checksum;
pub mod compress;
pub mod cpio;
pub mod inputs;
pub mod kmod;
pub mod lock;
pub mod manifest;
pub mod recipe;
pub mod rootfs;
