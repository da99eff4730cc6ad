//! The pinned Debian kernel: `kernel.lock.toml` names the package, version,
//! sha256 and when it was resolved; the .deb is fetched through iso-builder's
//! input cache and origins (the recipe's archive, then its snapshot archive
//! at that time) and unpacked once, and `depmod` indexes its modules.
//!
//! The pin follows the ISO lock's rules: when nothing serves it any more the
//! tests take the archive's current kernel, say so, and go on; `cargo xtask
//! pin-kernel` commits the new pin.

use std::path::PathBuf;

use iso_builder::inputs::{self, Cache, DebPin, InputError};
use iso_builder::origins::{AptEnv, Origins};
use iso_builder::recipe::Recipe;
use serde::{Deserialize, Serialize};

use crate::{HarnessError, io_err, workspace_root};

/// `kernel.lock.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelLock {
    /// When the archive served the pin (RFC 3339, UTC).
    pub resolved_at: String,
    pub package: String,
    pub version: String,
    pub arch: String,
    pub sha256: String,
    pub size: u64,
}

impl KernelLock {
    pub fn pin(&self) -> DebPin {
        DebPin {
            package: self.package.clone(),
            version: self.version.clone(),
            arch: self.arch.clone(),
            sha256: self.sha256.clone(),
            size: self.size,
        }
    }
}

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
    pub fn read_pin() -> Result<KernelLock, HarnessError> {
        let path = Self::lock_path();
        let text = std::fs::read_to_string(&path).map_err(io_err("reading", &path))?;
        toml::from_str(&text).map_err(|e| {
            HarnessError::Setup(format!(
                "{}: {e}; refresh it with `{REFRESH}`",
                path.display()
            ))
        })
    }

    /// The origins the pin is fetched from: iso.toml's archive and snapshot.
    pub fn origins(cache: &Cache, resolved_at: Option<&str>) -> Result<Origins, HarnessError> {
        let path = workspace_root().join("iso.toml");
        let text = std::fs::read_to_string(&path).map_err(io_err("reading", &path))?;
        let recipe = Recipe::parse(&text, &path.display().to_string())
            .map_err(|e| HarnessError::Setup(e.to_string()))?;
        let d = &recipe.debian;
        Ok(Origins::new(
            cache.root(),
            &d.sources,
            &d.architecture,
            &d.snapshot,
            resolved_at,
        )?)
    }

    /// The archive's current kernel: the package `linux-image-amd64`
    /// depends on, pinned at its candidate version.
    pub fn current(apt: &AptEnv) -> Result<DebPin, HarnessError> {
        if !apt.has_lists() {
            apt.update()?;
        }
        let image = inputs::first_dependency(apt, "linux-image-amd64", None)?;
        Ok(inputs::resolve(apt, &image, None)?)
    }

    /// The pinned kernel, fetched and unpacked into the cache on first use;
    /// the archive's current one, with a notice, when nothing serves the pin.
    pub fn pinned() -> Result<Self, HarnessError> {
        let lock = Self::read_pin()?;
        let cache = Cache::new(Cache::default_root(), REFRESH);
        let origins = Self::origins(&cache, Some(&lock.resolved_at))?;
        let archive = origins.list[0].apt.clone();
        let cache = cache.with_origins(origins);
        let pin = lock.pin();
        match cache.deb(&pin) {
            Err(InputError::NotServed { .. }) => {
                let now = Self::current(&archive)?;
                eprintln!(
                    "notice: guest kernel {} {} is no longer served (nor by the snapshot archive at {}); the tests use {} {}; `{REFRESH}` commits the new pin",
                    pin.package, pin.version, lock.resolved_at, now.package, now.version
                );
                Self::from_cache(&cache, now)
            }
            Err(e) => Err(e.into()),
            Ok(_) => Self::from_cache(&cache, pin),
        }
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
