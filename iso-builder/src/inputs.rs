//! Pinned Debian packages: resolve a pin from the apt lists, fetch exactly the
//! pinned file with `apt-get download` from the first origin that serves it
//! (see [`crate::origins`]), verify its sha256 and keep it in a
//! content-addressed cache; unpack it with `dpkg-deb`.
//!
//! apt is the transport (it knows mirrors, proxies and signatures) but never
//! the authority: a file is admitted to the cache only when its sha256 equals
//! the pin, and a cached file is hashed again before each use, so a poisoned
//! cache is evicted rather than built from. A version no origin serves is
//! reported with every other such pin, by name and version.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::origins::{self, AptEnv, Origins};

pub use crate::pin::{DebPin, InputError};
pub(crate) use sysutil::io_err;

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, InputError> {
    let mut f = File::open(path).map_err(io_err("opening", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err("reading", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// A content-addressed store of fetched inputs and their unpacked trees.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
    offline: bool,
    refresh_hint: String,
    origins: Origins,
}

impl Cache {
    /// A cache rooted at `root`; `refresh_hint` is the command that
    /// refreshes the pins, quoted in errors.
    pub fn new(root: impl Into<PathBuf>, refresh_hint: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            offline: false,
            refresh_hint: refresh_hint.into(),
            origins: Origins::host(),
        }
    }

    /// Fetch from these origins (default: the host's apt).
    pub fn with_origins(mut self, origins: Origins) -> Self {
        self.origins = origins;
        self
    }

    /// The command quoted when a pin cannot be fetched.
    pub fn refresh_hint(&self) -> &str {
        &self.refresh_hint
    }

    /// Forbid network fetches: only cached files are used.
    pub fn offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// `$BULKHEAD_CACHE`; else, for root, `/var/cache/bulkhead` (readable
    /// by other users, so a reproducibility check can rebuild as one);
    /// else `$XDG_CACHE_HOME/bulkhead` or `$HOME/.cache/bulkhead`.
    pub fn default_root() -> PathBuf {
        if let Some(p) = std::env::var_os("BULKHEAD_CACHE").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let is_root = {
            use std::os::unix::fs::MetadataExt;
            fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
        };
        if is_root {
            return PathBuf::from("/var/cache/bulkhead");
        }
        if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
            return PathBuf::from(p).join("bulkhead");
        }
        if let Some(p) = std::env::var_os("HOME").filter(|p| !p.is_empty()) {
            return PathBuf::from(p).join(".cache/bulkhead");
        }
        PathBuf::from("/var/cache/bulkhead")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self) -> Result<File, InputError> {
        fs::create_dir_all(&self.root).map_err(io_err("creating cache", &self.root))?;
        let path = self.root.join(".lock");
        let f = File::create(&path).map_err(io_err("creating lock", &path))?;
        f.lock().map_err(io_err("locking", &path))?;
        Ok(f)
    }

    /// Path of the cached .deb for `pin`, fetching and verifying it first
    /// when it is not cached yet.
    pub fn deb(&self, pin: &DebPin) -> Result<PathBuf, InputError> {
        let mut v = self.debs(std::slice::from_ref(pin))?;
        v.pop().ok_or_else(|| InputError::Tool {
            command: "fetching".into(),
            detail: format!("{} {} was not fetched", pin.package, pin.version),
        })
    }

    /// The unpacked contents of `pin` (its data.tar), unpacked once.
    pub fn unpacked(&self, pin: &DebPin) -> Result<PathBuf, InputError> {
        let dest = self.root.join("unpacked").join(&pin.sha256);
        if dest.is_dir() {
            return Ok(dest);
        }
        let deb = self.deb(pin)?;
        let _lock = self.lock()?;
        if dest.is_dir() {
            return Ok(dest);
        }
        let parent = self.root.join("unpacked");
        fs::create_dir_all(&parent).map_err(io_err("creating", &parent))?;
        let tmp = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(&parent)
            .map_err(io_err("creating temporary directory in", &parent))?;
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(tmp.path()))?;
        let tmp = tmp.keep();
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
                .map_err(io_err("setting permissions of", &tmp))?;
        }
        fs::rename(&tmp, &dest).map_err(io_err("storing", &dest))?;
        Ok(dest)
    }
}

fn run(cmd: &mut Command) -> Result<String, InputError> {
    Ok(sysutil::run(cmd)?)
}

/// Parses the first stanza of `apt-cache show` output into a pin.
pub fn parse_apt_show(text: &str) -> Option<DebPin> {
    let stanza = text.split("\n\n").next()?;
    let field = |name: &str| {
        stanza.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(':'))
                .map(|v| v.trim().to_string())
        })
    };
    Some(DebPin {
        package: field("Package")?,
        version: field("Version")?,
        arch: field("Architecture")?,
        sha256: field("SHA256")?,
        size: field("Size")?.parse().ok()?,
    })
}

/// The pin of `package` at `version` (or apt's candidate when `None`), from
/// the host's apt lists; no download.
pub fn resolve(apt: &AptEnv, package: &str, version: Option<&str>) -> Result<DebPin, InputError> {
    let spec = match version {
        Some(v) => format!("{package}={v}"),
        None => package.to_string(),
    };
    let version = match version {
        Some(v) => v.to_string(),
        None => {
            let policy = run(apt.command("apt-cache").arg("policy").arg(package))?;
            policy
                .lines()
                .find_map(|l| l.trim().strip_prefix("Candidate:").map(str::trim))
                .filter(|v| *v != "(none)")
                .map(str::to_string)
                .ok_or_else(|| InputError::UnknownPackage {
                    package: package.to_string(),
                })?
        }
    };
    let text = run(apt
        .command("apt-cache")
        .arg("show")
        .arg("--no-all-versions")
        .arg(format!("{package}={version}")))
    .map_err(|_| InputError::UnknownPackage {
        package: spec.clone(),
    })?;
    parse_apt_show(&text).ok_or_else(|| InputError::Tool {
        command: format!("apt-cache show {spec}"),
        detail: "no Package/Version/Architecture/SHA256/Size fields in its output".into(),
    })
}

/// The package a metapackage depends on first, e.g. `linux-image-amd64` →
/// `linux-image-6.1.0-50-amd64` (apt's candidate, or `version`).
pub fn first_dependency(
    apt: &AptEnv,
    package: &str,
    version: Option<&str>,
) -> Result<String, InputError> {
    let spec = match version {
        Some(v) => format!("{package}={v}"),
        None => package.to_string(),
    };
    let text = run(apt
        .command("apt-cache")
        .arg("show")
        .arg("--no-all-versions")
        .arg(&spec))?;
    text.lines()
        .find_map(|l| l.strip_prefix("Depends:"))
        .and_then(|d| d.split([',', '|']).next())
        .and_then(|d| d.split_whitespace().next())
        .map(str::to_string)
        .ok_or_else(|| InputError::Tool {
            command: format!("apt-cache show {spec}"),
            detail: "no Depends field".into(),
        })
}

impl Cache {
    /// Whether the cached file of `pin` is there and still hashes to its
    /// pin; a file that does not is evicted.
    fn cached(&self, pin: &DebPin) -> Result<bool, InputError> {
        let path = self.root.join("sha256").join(&pin.sha256);
        if !path.is_file() {
            return Ok(false);
        }
        if sha256_file(&path)? == pin.sha256 {
            return Ok(true);
        }
        eprintln!(
            "warning: the cached file of {} {} ({}) does not match its pin: evicted, fetching it again",
            pin.package,
            pin.version,
            path.display()
        );
        fs::remove_file(&path).map_err(io_err("evicting", &path))?;
        Ok(false)
    }

    /// Every pin's .deb: from the cache (hashed again), else from the first
    /// origin that serves it, each download verified against its pin. The
    /// pins no origin serves are reported together
    /// ([`InputError::NotServed`]).
    pub fn debs(&self, pins: &[DebPin]) -> Result<Vec<PathBuf>, InputError> {
        let sha_dir = self.root.join("sha256");
        let mut missing = Vec::new();
        for p in pins {
            if !self.cached(p)? {
                missing.push(p.clone());
            }
        }
        if !missing.is_empty() {
            if self.offline {
                let p = &missing[0];
                let more = match missing.len() - 1 {
                    0 => String::new(),
                    n => format!(" (and {n} more)"),
                };
                return Err(InputError::Offline {
                    package: p.package.clone(),
                    version: format!("{}{more}", p.version),
                    cache: self.root.clone(),
                });
            }
            let _lock = self.lock()?;
            fs::create_dir_all(&sha_dir).map_err(io_err("creating", &sha_dir))?;
            for origin in &self.origins.list {
                if missing.is_empty() {
                    break;
                }
                let tmp = tempfile::Builder::new()
                    .prefix(".fetch-")
                    .tempdir_in(&self.root)
                    .map_err(io_err("creating temporary directory in", &self.root))?;
                let gone = match origins::fetch_from(origin, &missing, tmp.path()) {
                    Ok(gone) => gone,
                    // An unreachable snapshot archive serves nothing; the
                    // caller then refreshes or refuses, as for a gone pin.
                    Err(e) if !origin.live => {
                        eprintln!("warning: {} could not be read: {e}", origin.label);
                        break;
                    }
                    Err(e) => return Err(e),
                };
                self.admit(tmp.path(), &missing)?;
                missing = gone;
            }
            if !missing.is_empty() {
                return Err(InputError::NotServed {
                    gone: missing,
                    refresh: self.refresh_hint.clone(),
                });
            }
        }
        pins.iter()
            .map(|p| {
                let path = sha_dir.join(&p.sha256);
                if path.is_file() {
                    Ok(path)
                } else {
                    Err(InputError::Tool {
                        command: "apt-get download".into(),
                        detail: format!("{} {} was not downloaded", p.package, p.version),
                    })
                }
            })
            .collect()
    }

    /// Moves every downloaded file in `dir` into the cache under its pin's
    /// sha256; a file matching no pin's hash is refused.
    fn admit(&self, dir: &Path, pins: &[DebPin]) -> Result<(), InputError> {
        let sha_dir = self.root.join("sha256");
        for entry in fs::read_dir(dir).map_err(io_err("listing", dir))? {
            let path = entry.map_err(io_err("listing", dir))?.path();
            let actual = sha256_file(&path)?;
            let Some(pin) = pins.iter().find(|p| p.sha256 == actual) else {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                let pin = name.as_deref().and_then(|n| {
                    pins.iter()
                        .find(|p| n.starts_with(&format!("{}_", p.package)))
                });
                return Err(match pin {
                    Some(p) => InputError::HashMismatch {
                        package: p.package.clone(),
                        version: p.version.clone(),
                        expected: p.sha256.clone(),
                        actual,
                    },
                    None => InputError::Tool {
                        command: "apt-get download".into(),
                        detail: format!("fetched an unexpected file {}", path.display()),
                    },
                });
            };
            let dest = sha_dir.join(&pin.sha256);
            fs::rename(&path, &dest).map_err(io_err("storing", &dest))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "Package: linux-image-6.1.0-50-amd64\nSource: linux-signed-amd64 (6.1.176+1)\nVersion: 6.1.176-1\nArchitecture: amd64\nSize: 70305560\nSHA256: 7b5597492a0a65aee61985a492e6bcc3f2cde830072a0e3b3d8c7e1b90279bd3\nDescription: x\n\nPackage: other\n";

    #[test]
    fn parses_apt_show() {
        let pin = parse_apt_show(SHOW).unwrap();
        assert_eq!(pin.package, "linux-image-6.1.0-50-amd64");
        assert_eq!(pin.version, "6.1.176-1");
        assert_eq!(pin.arch, "amd64");
        assert_eq!(pin.size, 70305560);
        assert_eq!(pin.apt_spec(), "linux-image-6.1.0-50-amd64:amd64=6.1.176-1");
    }

    #[test]
    fn incomplete_stanza_is_none() {
        assert!(parse_apt_show("Package: x\nVersion: 1\n").is_none());
    }

    #[test]
    fn offline_cache_miss_names_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path(), "cargo xtask pin").offline(true);
        let pin = parse_apt_show(SHOW).unwrap();
        let err = cache.deb(&pin).unwrap_err().to_string();
        assert!(
            err.contains("linux-image-6.1.0-50-amd64 6.1.176-1"),
            "{err}"
        );
    }

    #[test]
    fn unserved_version_says_how_to_refresh() {
        if Command::new("apt-get").arg("--version").output().is_err() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path(), "cargo xtask pin-kernel");
        let mut pin = parse_apt_show(SHOW).unwrap();
        pin.package = "base-files".into();
        pin.arch = "amd64".into();
        pin.version = "0.0.0-bulkhead-never".into();
        let err = cache.deb(&pin).unwrap_err();
        assert!(matches!(err, InputError::NotServed { .. }), "{err}");
        assert!(err.to_string().contains("cargo xtask pin-kernel"));
    }

    #[test]
    fn hash_mismatch_is_refused_and_not_cached() {
        if Command::new("apt-get").arg("--version").output().is_err() {
            return;
        }
        let Ok(mut pin) = resolve(&AptEnv::host(), "base-files", None) else {
            return;
        };
        pin.sha256 = "0".repeat(64);
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path(), "x");
        let err = cache.deb(&pin).unwrap_err();
        assert!(matches!(err, InputError::HashMismatch { .. }), "{err}");
        assert!(!dir.path().join("sha256").join(&pin.sha256).exists());
    }
}
