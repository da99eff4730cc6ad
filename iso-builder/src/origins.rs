//! Where a pinned file can come from, in order: the recipe's archive by exact
//! version, then Debian's snapshot archive at the time the lock was resolved
//! (mkosi's `Snapshot=`, the reproducible-builds way of rebuilding old
//! releases). Each origin is a private apt state ([`AptEnv`]); apt checks the
//! Release signatures and fetches, the cache admits a file only when its
//! sha256 equals the pin.
//!
//! apt is run with `LC_ALL=C` wherever its output is parsed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::pin::{DebPin, InputError};
use sysutil::io_err;

/// A private apt configuration over given sources, independent of the
/// host's own sources and package state: what the build fetches with.
/// [`AptEnv::host`] is the host's own apt instead.
#[derive(Debug, Clone)]
pub struct AptEnv {
    dir: Option<PathBuf>,
    arch: String,
    sources: Vec<String>,
    quick: bool,
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
            "preferences.d",
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
            dir: Some(dir),
            arch: arch.to_string(),
            sources: sources.to_vec(),
            quick: false,
        })
    }

    /// The host's own apt (its sources and lists, never updated by us).
    pub fn host() -> Self {
        Self {
            dir: None,
            arch: "amd64".into(),
            sources: Vec::new(),
            quick: false,
        }
    }

    /// The one-line sources this state fetches from (none for the host's).
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// The `-o` options that point apt at this state.
    pub fn options(&self) -> Vec<String> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let d = dir.display();
        vec![
            format!("-oDir::Etc::SourceList={d}/sources.list"),
            format!("-oDir::Etc::SourceParts={d}/sources.list.d"),
            format!("-oDir::Etc::Preferences={d}/preferences"),
            format!("-oDir::Etc::PreferencesParts={d}/preferences.d"),
            format!("-oDir::State={d}/state"),
            format!("-oDir::State::status={d}/status"),
            format!("-oDir::Cache={d}/cache"),
            format!("-oAPT::Architecture={}", self.arch),
            "-oAPT::Sandbox::User=root".to_string(),
        ]
    }

    /// `apt-get` or `apt-cache` over this state, in the C locale.
    pub fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(tool);
        cmd.args(self.options()).env("LC_ALL", "C");
        if self.quick {
            cmd.args(["-oAcquire::Retries=0", "-oAcquire::http::Timeout=20"]);
        }
        cmd
    }

    /// Give up on an unreachable host after one try (for a fallback origin).
    pub fn quick(mut self) -> Self {
        self.quick = true;
        self
    }

    /// Downloads the package lists (never for the host's apt).
    pub fn update(&self) -> Result<(), InputError> {
        if self.dir.is_none() {
            return Ok(());
        }
        let out = self
            .command("apt-get")
            .args(["update", "-q"])
            .output()
            .map_err(|e| InputError::Tool {
                command: "apt-get update".into(),
                detail: e.to_string(),
            })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // apt-get update exits 0 when a source fails with a warning only;
        // a source that could not be read, or whose signature is bad, must
        // not pass as an empty archive.
        if !out.status.success()
            || stderr.lines().any(|l| {
                l.starts_with("E:")
                    || l.starts_with("W: Failed")
                    || l.contains("NO_PUBKEY")
                    || l.contains("is not signed")
            })
        {
            return Err(InputError::Tool {
                command: format!("apt-get update ({})", self.sources.join("; ")),
                detail: stderr.trim().to_string(),
            });
        }
        Ok(())
    }

    /// Whether lists were downloaded (always true for the host's apt).
    pub fn has_lists(&self) -> bool {
        let Some(dir) = &self.dir else {
            return true;
        };
        fs::read_dir(dir.join("state/lists"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().ends_with("_Packages"))
            })
            .unwrap_or(false)
    }
}

/// One place pinned files can be fetched from.
#[derive(Debug, Clone)]
pub struct Origin {
    pub apt: AptEnv,
    /// How notices name it, e.g. `the archive` or `snapshot 20261201T000000Z`.
    pub label: String,
    /// The live archive: its lists go stale, so a miss updates them once.
    /// A snapshot's lists never change.
    pub live: bool,
}

/// The origins tried in order.
#[derive(Debug, Clone)]
pub struct Origins {
    pub list: Vec<Origin>,
}

impl Origins {
    /// The host's apt only (standalone tools without a recipe).
    pub fn host() -> Self {
        Self {
            list: vec![Origin {
                apt: AptEnv::host(),
                label: "the host's apt sources".into(),
                live: false,
            }],
        }
    }

    /// The recipe's archive, then the snapshot archive at `resolved_at`
    /// (RFC 3339) and half a day later (snapshot.debian.org imports every
    /// few hours, so a file published just before the lock was resolved may
    /// appear only in the next import).
    pub fn new(
        cache_root: &Path,
        sources: &[String],
        arch: &str,
        snapshot_base: &str,
        resolved_at: Option<&str>,
    ) -> Result<Self, InputError> {
        let mut list = vec![Origin {
            apt: AptEnv::new(cache_root, sources, arch)?,
            label: "the archive".into(),
            live: true,
        }];
        if let Some(at) = resolved_at {
            let t = parse_rfc3339(at).ok_or_else(|| InputError::Tool {
                command: "reading the lock's resolved_at".into(),
                detail: format!("{at:?} is not an RFC 3339 UTC time like 2026-12-01T09:40:00Z"),
            })?;
            for t in [t, t + 12 * 3600] {
                let stamp = snapshot_stamp(t);
                let lines = sources
                    .iter()
                    .map(|s| snapshot_source(s, snapshot_base, &stamp))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| InputError::Tool {
                        command: "deriving the snapshot sources".into(),
                        detail: format!(
                            "one of {sources:?} is not `deb [OPTIONS] URI SUITE COMPONENTS`"
                        ),
                    })?;
                list.push(Origin {
                    apt: AptEnv::new(cache_root, &lines, arch)?.quick(),
                    label: format!("snapshot {stamp}"),
                    live: false,
                });
            }
        }
        Ok(Self { list })
    }
}

/// `YYYYMMDDTHHMMSSZ`, the snapshot archive's timestamp form.
pub fn snapshot_stamp(epoch: u64) -> String {
    crate::calendar::rfc3339(epoch).replace(['-', ':'], "")
}

pub use crate::calendar::parse_rfc3339;

/// The snapshot counterpart of a one-line source: `deb [OPTS] URI SUITE
/// COMPONENTS` → `deb [OPTS check-valid-until=no] BASE/NAME/STAMP/ SUITE
/// COMPONENTS`, NAME being the URI's last path part (`debian`,
/// `debian-security`). Old Release files have expired Valid-Until dates;
/// their signatures are still checked.
pub fn snapshot_source(line: &str, base: &str, stamp: &str) -> Option<String> {
    let rest = line.trim().strip_prefix("deb ")?.trim_start();
    let (opts, rest) = match rest.strip_prefix('[') {
        Some(r) => {
            let (o, r) = r.split_once(']')?;
            (o.split_whitespace().collect::<Vec<_>>(), r)
        }
        None => (Vec::new(), rest),
    };
    let mut words = rest.split_whitespace();
    let uri = words.next()?;
    let suite = words.next()?;
    let comps: Vec<&str> = words.collect();
    let name = uri
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && !n.contains(':'))?;
    let mut opts: Vec<&str> = opts
        .into_iter()
        .filter(|o| !o.starts_with("check-valid-until="))
        .collect();
    opts.push("check-valid-until=no");
    let mut out = format!(
        "deb [{}] {}/{name}/{stamp}/ {suite}",
        opts.join(" "),
        base.trim_end_matches('/')
    );
    for c in comps {
        out.push(' ');
        out.push_str(c);
    }
    Some(out)
}

/// Fetches `pins` from one origin into `dir`; returns those it does not
/// serve. Lists are downloaded when missing, and once more for the live
/// archive when a version is not found in them.
pub(crate) fn fetch_from(
    origin: &Origin,
    pins: &[DebPin],
    dir: &Path,
) -> Result<Vec<DebPin>, InputError> {
    if !origin.apt.has_lists() {
        origin.apt.update()?;
    }
    let mut wanted: Vec<DebPin> = pins.to_vec();
    let mut gone: Vec<DebPin> = Vec::new();
    let mut updated = !origin.live;
    while !wanted.is_empty() {
        let out = origin
            .apt
            .command("apt-get")
            .args(["download", "-q"])
            .args(wanted.iter().map(DebPin::apt_spec))
            .current_dir(dir)
            .output()
            .map_err(|e| InputError::Tool {
                command: "apt-get download".into(),
                detail: format!("{e} (is this a Debian system with apt?)"),
            })?;
        if out.status.success() {
            break;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let missing = not_found(&stderr);
        if missing.is_empty() {
            return Err(InputError::Tool {
                command: format!("apt-get download from {}", origin.label),
                detail: stderr.trim().to_string(),
            });
        }
        if !updated {
            updated = true;
            origin.apt.update()?;
            continue;
        }
        let before = wanted.len();
        wanted.retain(|p| {
            let miss = missing.iter().any(|(pkg, ver)| {
                *pkg == p.package && ver.as_deref().is_none_or(|v| v == p.version)
            });
            if miss {
                gone.push(p.clone());
            }
            !miss
        });
        if wanted.len() == before {
            return Err(InputError::Tool {
                command: format!("apt-get download from {}", origin.label),
                detail: stderr.trim().to_string(),
            });
        }
    }
    Ok(gone)
}

/// Package (and version, when apt names one) of each "not found" error in
/// `apt-get download`'s stderr (C locale).
fn not_found(stderr: &str) -> Vec<(String, Option<String>)> {
    stderr
        .lines()
        .filter_map(|l| {
            if let Some(rest) = l.strip_prefix("E: Version '") {
                let (ver, rest) = rest.split_once("' for '")?;
                let (pkg, _) = rest.split_once('\'')?;
                let pkg = pkg.split(':').next().unwrap_or(pkg);
                return Some((pkg.to_string(), Some(ver.to_string())));
            }
            let pkg = l.strip_prefix("E: Unable to locate package ")?.trim();
            Some((pkg.split(':').next().unwrap_or(pkg).to_string(), None))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_sources_keep_suite_components_and_options() {
        let base = "http://snapshot.debian.org/archive/";
        assert_eq!(
            snapshot_source(
                "deb http://deb.debian.org/debian bookworm main",
                base,
                "20261201T000000Z"
            )
            .unwrap(),
            "deb [check-valid-until=no] http://snapshot.debian.org/archive/debian/20261201T000000Z/ bookworm main"
        );
        assert_eq!(
            snapshot_source(
                "deb [signed-by=/k.gpg check-valid-until=yes] http://deb.debian.org/debian-security/ bookworm-security main contrib",
                base,
                "20261201T000000Z"
            )
            .unwrap(),
            "deb [signed-by=/k.gpg check-valid-until=no] http://snapshot.debian.org/archive/debian-security/20261201T000000Z/ bookworm-security main contrib"
        );
        assert!(snapshot_source("deb-src http://x/debian bookworm main", base, "x").is_none());
        assert!(snapshot_source("deb http://x/ ", base, "x").is_none());
    }

    #[test]
    fn times_round_trip() {
        for t in [
            0u64,
            951_782_400,
            1_767_225_600,
            1_796_118_000,
            4_102_444_799,
        ] {
            let s = crate::calendar::rfc3339(t);
            assert_eq!(parse_rfc3339(&s), Some(t), "{s}");
        }
        assert_eq!(snapshot_stamp(1_767_225_600), "20260101T000000Z");
        for bad in [
            "2026-13-01T00:00:00Z",
            "2026-12-01 00:00:00Z",
            "2026-12-01T00:00:00",
            "x",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn not_found_lines_name_package_and_version() {
        let e = "E: Version '6.1.192-2' for 'linux-image-amd64:amd64' was not found\nE: Unable to locate package nosuch\nW: other\n";
        assert_eq!(
            not_found(e),
            vec![
                (
                    "linux-image-amd64".to_string(),
                    Some("6.1.192-2".to_string())
                ),
                ("nosuch".to_string(), None)
            ]
        );
    }
}
