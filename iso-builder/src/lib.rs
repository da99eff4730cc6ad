//! Bulkhead's image builder: pinned inputs, root trees, the initramfs (cpio
//! newc), compression, the ESP image, ISO9660 with El Torito and a hybrid
//! MBR/GPT, checksums and the build manifest.

#[cfg(feature = "bench")]
pub mod bench;
pub mod calendar;
pub mod checksum;
pub mod compress;
pub mod cpio;
pub mod eltorito;
pub mod esp;
pub mod grub;
pub mod hybrid;
pub mod initramfs;
pub mod inputs;
pub mod installed;
pub mod iso9660;
pub mod isotree;
pub mod kmod;
pub mod live;
pub mod lock;
pub mod manifest;
pub mod master;
pub mod origins;
pub mod pin;
pub mod pipeline;
pub mod recipe;
pub mod rootfs;
pub mod vmkit;
