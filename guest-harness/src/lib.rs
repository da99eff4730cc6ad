//! QEMU guest test harness, shared by the tests of every crate.
//!
//! A test asks for the pinned Debian kernel ([`Kernel::pinned`]), builds an
//! initramfs of busybox, kernel modules, host tools and its own binaries with
//! a shell script to run ([`Initramfs`]), and boots it under QEMU with TCG
//! ([`Vm`]): never KVM, which hangs on the machines this project runs on.
//! The guest's init runs the script and reports its exit status on the serial
//! console; the harness returns that status and everything the console
//! printed, enforces a timeout and always kills QEMU.
//!
//! The same [`Vm`] boots ISO images and disks (BIOS or UEFI, CD, USB, NVMe,
//! AHCI, virtio) and waits for a marker on the console.

mod initramfs;
pub mod kernel;
mod vm;

pub use initramfs::{EXTRA_MODULES, Initramfs};
pub use kernel::Kernel;
pub use vm::{Bus, Disk, Firmware, GuestResult, Vm};

use std::path::PathBuf;

/// Everything that can go wrong while preparing or running a guest.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(transparent)]
    Input(#[from] iso_builder::inputs::InputError),
    #[error(transparent)]
    Cpio(#[from] iso_builder::cpio::CpioError),
    #[error(transparent)]
    Io(#[from] sysutil::IoError),
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Kmod(#[from] iso_builder::kmod::KmodError),
}

pub(crate) fn io_err(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> HarnessError {
    let path = path.into();
    move |cause| HarnessError::Io(sysutil::IoError::new(what, path, cause))
}

/// The workspace root (guest-harness lives one level below it).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// Creates a sparse raw disk image of `bytes` bytes (no data is written).
pub fn sparse_disk(path: &std::path::Path, bytes: u64) -> Result<(), HarnessError> {
    let f = std::fs::File::create(path).map_err(io_err("creating", path))?;
    f.set_len(bytes).map_err(io_err("sizing", path))?;
    Ok(())
}
