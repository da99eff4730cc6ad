//! The pinned Debian kernel: `kernel.lock.toml` names the package, version
//! and sha256; the .deb is fetched through iso-builder's input cache and
//! unpacked once, and `depmod` indexes its modules.

use std::path::PathBuf;

use iso_builder::inputs::{Cache, DebPin};

use crate::{HarnessError, io_err, workspace_root};

/// The command that refreshes `kernel.lock.toml`.
pub const REFRESH: &str = "cargo xtask pin-kernel";

/// An unpacked kernel package: the image and its module tree.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub pin: DebPin,
    /// `boot/vmlinuz-VERSION`.
    pub vmlinuz: PathBuf,
    /// The unpacked package root (holds `lib/modules/VERSION`).
    pub root: PathBuf,
    /// The kernel release, e.g. `6.1.0-50-amd64`.
    pub release: String,
}

impl Kernel {
    /// Path of the pin file.
    pub fn lock_path() -> PathBuf {
        workspace_root().join("guest-harness/kernel.lock.toml")
    }

    /// Reads the pin file.
    pub fn read_pin() -> Result<DebPin, HarnessError> {
        let path = Self::lock_path();
        let text = std::fs::read_to_string(&path).map_err(io_err("reading", &path))?;
        toml::from_str(&text).map_err(|e| {
            HarnessError::Setup(format!(
                "{}: {e}; refresh it with `{REFRESH}`",
                path.display()
            ))
        })
    }

    /// The pinned kernel, fetched and unpacked into the cache on first use.
    pub fn pinned() -> Result<Self, HarnessError> {
        let pin = Self::read_pin()?;
        let cache = Cache::new(Cache::default_root(), REFRESH);
        Self::from_cache(&cache, pin)
    }

    pub fn from_cache(cache: &Cache, pin: DebPin) -> Result<Self, HarnessError> {
        let root = cache.unpacked(&pin)?;
        let release = pin
            .package
            .strip_prefix("linux-image-")
            .ok_or_else(|| {
                HarnessError::Setup(format!(
                    "{} is not a linux-image-* package; fix {}",
                    pin.package,
                    Self::lock_path().display()
                ))
            })?
            .to_string();
        let vmlinuz = root.join(format!("boot/vmlinuz-{release}"));
        if !vmlinuz.is_file() {
            return Err(HarnessError::Setup(format!(
                "{} has no {}",
                pin.package,
                vmlinuz.display()
            )));
        }
        let k = Self {
            pin,
            vmlinuz,
            root,
            release,
        };
        k.ensure_depmod()?;
        Ok(k)
    }

    /// `lib/modules/RELEASE` inside the unpacked package.
    pub fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }

    fn ensure_depmod(&self) -> Result<(), HarnessError> {
        let dep = self.modules_dir().join("modules.dep");
        if dep.is_file() {
            return Ok(());
        }
        iso_builder::kmod::depmod(&self.root, &self.release)?;
        Ok(())
    }
}
