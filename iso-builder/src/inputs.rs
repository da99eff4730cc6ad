//! Pinned Debian packages: resolve a pin from the apt lists, fetch exactly the
//! pinned file with `apt-get download`, verify its sha256 and keep it in a
//! content-addressed cache; unpack it with `dpkg-deb`.
//!
//! apt is the transport (it knows the host's mirrors and proxies) but never
//! the authority: a file is admitted to the cache only when its sha256 equals
//! the pin. A version the archive stopped serving is reported by name and
//! version with the command that refreshes the pins.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One Debian binary package, pinned by version and content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebPin {
    /// Binary package name, e.g. `linux-image-6.1.0-50-amd64`.
    pub package: String,
    /// Exact Debian version, e.g. `6.1.176-1`.
    pub version: String,
    /// Debian architecture (`amd64` or `all`).
    pub arch: String,
    /// sha256 of the .deb file, lowercase hex.
    pub sha256: String,
    /// Size of the .deb file in bytes.
    pub size: u64,
}

impl DebPin {
    /// `package=version`, as apt takes it.
    pub fn apt_spec(&self) -> String {
        format!("{}:{}={}", self.package, self.arch, self.version)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(
        "{packages}: no longer served by the Debian archive (superseded versions are dropped at point releases and security updates); refresh the pins with `{refresh}`"
    )]
    NotServed { packages: String, refresh: String },
    #[error("{package}: apt knows no such package; run `apt-get update` first, or check the name")]
    UnknownPackage { package: String },
    #[error(
        "{package} {version}: sha256 mismatch: pinned {expected}, downloaded {actual}; the file was not cached. A mirror serving altered files, or a wrong pin: do not build from it"
    )]
    HashMismatch {
        package: String,
        version: String,
        expected: String,
        actual: String,
    },
    #[error("{package} {version} is not in the cache {cache:?} and --offline forbids fetching it")]
    Offline {
        package: String,
        version: String,
        cache: PathBuf,
    },
    #[error("running {command}: {detail}")]
    Tool { command: String, detail: String },
    #[error("{what} {path:?}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> InputError {
    let path = path.to_path_buf();
    move |source| InputError::Io { what, path, source }
}

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
}

impl Cache {
    /// A cache rooted at `root`; `refresh_hint` is the command that
    /// refreshes the pins, quoted in errors.
    pub fn new(root: impl Into<PathBuf>, refresh_hint: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            offline: false,
            refresh_hint: refresh_hint.into(),
        }
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
        let dest = self.root.join("sha256").join(&pin.sha256);
        if dest.is_file() {
            return Ok(dest);
        }
        if self.offline {
            return Err(InputError::Offline {
                package: pin.package.clone(),
                version: pin.version.clone(),
                cache: self.root.clone(),
            });
        }
        let _lock = self.lock()?;
        if dest.is_file() {
            return Ok(dest);
        }
        let tmp = tempfile::Builder::new()
            .prefix(".fetch-")
            .tempdir_in(&self.root)
            .map_err(io_err("creating temporary directory in", &self.root))?;
        let out = Command::new("apt-get")
            .arg("download")
            .arg("-q")
            .arg(pin.apt_spec())
            .current_dir(tmp.path())
            .output()
            .map_err(|e| InputError::Tool {
                command: "apt-get download".into(),
                detail: format!("{e} (is this a Debian system with apt?)"),
            })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("was not found") {
                return Err(InputError::NotServed {
                    packages: format!("{} {}", pin.package, pin.version),
                    refresh: self.refresh_hint.clone(),
                });
            }
            if stderr.contains("Unable to locate package") {
                return Err(InputError::UnknownPackage {
                    package: pin.package.clone(),
                });
            }
            return Err(InputError::Tool {
                command: format!("apt-get download {}", pin.apt_spec()),
                detail: stderr.trim().to_string(),
            });
        }
        let fetched = fs::read_dir(tmp.path())
            .map_err(io_err("listing", tmp.path()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .ok_or_else(|| InputError::Tool {
                command: format!("apt-get download {}", pin.apt_spec()),
                detail: "succeeded but left no .deb file".into(),
            })?;
        let actual = sha256_file(&fetched)?;
        if actual != pin.sha256 {
            return Err(InputError::HashMismatch {
                package: pin.package.clone(),
                version: pin.version.clone(),
                expected: pin.sha256.clone(),
                actual,
            });
        }
        let dir = self.root.join("sha256");
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        fs::rename(&fetched, &dest).map_err(io_err("storing", &dest))?;
        Ok(dest)
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
    let desc = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| InputError::Tool {
        command: desc.clone(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(InputError::Tool {
            command: desc,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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
pub fn resolve(package: &str, version: Option<&str>) -> Result<DebPin, InputError> {
    let spec = match version {
        Some(v) => format!("{package}={v}"),
        None => package.to_string(),
    };
    let version = match version {
        Some(v) => v.to_string(),
        None => {
            let policy = run(Command::new("apt-cache").arg("policy").arg(package))?;
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
    let text = run(Command::new("apt-cache")
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
pub fn first_dependency(package: &str, version: Option<&str>) -> Result<String, InputError> {
    let spec = match version {
        Some(v) => format!("{package}={v}"),
        None => package.to_string(),
    };
    let text = run(Command::new("apt-cache")
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
        let Ok(mut pin) = resolve("base-files", None) else {
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

/// A private apt configuration over given sources, independent of the
/// host's own sources and package state: what the build fetches with.
#[derive(Debug, Clone)]
pub struct AptEnv {
    dir: PathBuf,
    arch: String,
    sources: Vec<String>,
}

impl AptEnv {
    /// An apt state under `cache_root/apt/HASH` for these source lines.
    pub fn new(cache_root: &Path, sources: &[String], arch: &str) -> Result<Self, InputError> {
        let mut h = Sha256::new();
        for s in sources {
            h.update(s.as_bytes());
            h.update(b"\n");
        }
        let dir = cache_root
            .join("apt")
            .join(&hex::encode(h.finalize())[..16]);
        for sub in [
            "state/lists/partial",
            "cache/archives/partial",
            "sources.list.d",
        ] {
            let p = dir.join(sub);
            if !p.is_dir() {
                fs::create_dir_all(&p).map_err(io_err("creating", &p))?;
            }
        }
        let list = dir.join("sources.list");
        let text = sources.join("\n") + "\n";
        // Written only when it changes, so a user who can only read the cache
        // can still build from it.
        if fs::read_to_string(&list).ok().as_deref() != Some(text.as_str()) {
            fs::write(&list, text).map_err(io_err("writing", &list))?;
        }
        let status = dir.join("status");
        if !status.exists() {
            fs::write(&status, "").map_err(io_err("writing", &status))?;
        }
        Ok(Self {
            dir,
            arch: arch.to_string(),
            sources: sources.to_vec(),
        })
    }

    /// The one-line sources this state fetches from.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// The `-o` options that point apt at this state.
    pub fn options(&self) -> Vec<String> {
        let d = self.dir.display();
        vec![
            format!("-oDir::Etc::SourceList={d}/sources.list"),
            format!("-oDir::Etc::SourceParts={d}/sources.list.d"),
            format!("-oDir::State={d}/state"),
            format!("-oDir::State::status={d}/status"),
            format!("-oDir::Cache={d}/cache"),
            format!("-oAPT::Architecture={}", self.arch),
            "-oAPT::Sandbox::User=root".to_string(),
        ]
    }

    /// Downloads the package lists.
    pub fn update(&self) -> Result<(), InputError> {
        run(Command::new("apt-get")
            .args(self.options())
            .args(["update", "-q"]))?;
        Ok(())
    }

    fn has_lists(&self) -> bool {
        fs::read_dir(self.dir.join("state/lists"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().ends_with("_Packages"))
            })
            .unwrap_or(false)
    }
}

impl Cache {
    /// Every pin's .deb, fetching the missing ones in one apt call through
    /// `apt` (updating its lists once if a version is not found), each
    /// verified against its pin. All versions the archive no longer serves
    /// are reported together.
    pub fn debs(&self, pins: &[DebPin], apt: &AptEnv) -> Result<Vec<PathBuf>, InputError> {
        let sha_dir = self.root.join("sha256");
        let missing: Vec<&DebPin> = pins
            .iter()
            .filter(|p| !sha_dir.join(&p.sha256).is_file())
            .collect();
        if !missing.is_empty() {
            if self.offline {
                let p = missing[0];
                return Err(InputError::Offline {
                    package: format!("{} (and {} more)", p.package, missing.len() - 1),
                    version: p.version.clone(),
                    cache: self.root.clone(),
                });
            }
            let _lock = self.lock()?;
            if !apt.has_lists() {
                apt.update()?;
            }
            let tmp = tempfile::Builder::new()
                .prefix(".fetch-")
                .tempdir_in(&self.root)
                .map_err(io_err("creating temporary directory in", &self.root))?;
            let specs: Vec<String> = missing.iter().map(|p| p.apt_spec()).collect();
            let download = |specs: &[String]| {
                Command::new("apt-get")
                    .args(apt.options())
                    .args(["download", "-q"])
                    .args(specs)
                    .current_dir(tmp.path())
                    .output()
            };
            let mut out = download(&specs).map_err(|e| InputError::Tool {
                command: "apt-get download".into(),
                detail: e.to_string(),
            })?;
            if !out.status.success()
                && String::from_utf8_lossy(&out.stderr).contains("was not found")
            {
                apt.update()?;
                out = download(&specs).map_err(|e| InputError::Tool {
                    command: "apt-get download".into(),
                    detail: e.to_string(),
                })?;
            }
            if !out.status.success() {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let gone: Vec<String> = stderr
                    .lines()
                    .filter_map(|l| {
                        let rest = l.strip_prefix("E: Version '")?;
                        let (ver, rest) = rest.split_once("' for '")?;
                        let (pkg, _) = rest.split_once('\'')?;
                        let pkg = pkg.split(':').next().unwrap_or(pkg);
                        Some(format!("{pkg} {ver}"))
                    })
                    .collect();
                if !gone.is_empty() {
                    return Err(InputError::NotServed {
                        packages: gone.join(", "),
                        refresh: self.refresh_hint.clone(),
                    });
                }
                return Err(InputError::Tool {
                    command: "apt-get download".into(),
                    detail: stderr.trim().to_string(),
                });
            }
            fs::create_dir_all(&sha_dir).map_err(io_err("creating", &sha_dir))?;
            for entry in fs::read_dir(tmp.path()).map_err(io_err("listing", tmp.path()))? {
                let path = entry.map_err(io_err("listing", tmp.path()))?.path();
                let actual = sha256_file(&path)?;
                let Some(pin) = missing.iter().find(|p| p.sha256 == actual) else {
                    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                    let pin = name.as_deref().and_then(|n| {
                        missing
                            .iter()
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
}
