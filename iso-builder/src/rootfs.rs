//! Root filesystems from Debian packages, assembled by mmdebstrap (the
//! field's standard for reproducible Debian trees) and compressed into
//! squashfs images by mksquashfs.
//!
//! Locking resolves a tree's package set against the recipe's sources by
//! assembling it once and listing what dpkg installed. Building assembles the
//! tree again from a private flat repository holding exactly the locked,
//! sha256-verified files, so the archive's later changes cannot reach it, and
//! checks that dpkg installed exactly the locked set.
//!
//! mksquashfs rather than a Rust squashfs writer: backhand cannot write
//! extended attributes, so file capabilities would be lost; mksquashfs keeps
//! them, is reproducible (`-mkfs-time`, `-all-time`, sorted input) and uses
//! every core. Images are cached by the hash of everything that goes into
//! them, so an unchanged tree is never assembled or compressed twice.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::inputs::{self, Cache, DebPin, InputError};
use crate::recipe::Tree;

/// Bumped whenever assembly changes in a way that changes its output.
const ASSEMBLY_VERSION: u32 = 6;
const UPDATE_INITRAMFS: &str = "/usr/sbin/update-initramfs";

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("{command} failed: {detail}")]
    Tool { command: String, detail: String },
    #[error(
        "tree `{tree}`: dpkg installed a different set than inputs.lock holds ({detail}); run `cargo xtask lock`"
    )]
    LockMismatch { tree: String, detail: String },
    #[error(transparent)]
    Io(#[from] sysutil::IoError),
    #[error(transparent)]
    Run(#[from] sysutil::ToolError),
}

use sysutil::io_err;

fn run(cmd: &mut Command) -> Result<String, RootfsError> {
    Ok(sysutil::run(cmd)?)
}

/// One mmdebstrap run.
struct Assembly<'a> {
    suite: &'a str,
    variant: &'a str,
    include: Vec<String>,
    sources: Vec<String>,
    target: &'a Path,
    listing: &'a Path,
    extra_hook: Option<String>,
    /// An apt preferences file (exact versions to prefer).
    preferences: Option<&'a Path>,
    source_date_epoch: u64,
}

impl Assembly<'_> {
    fn run(&self) -> Result<(), RootfsError> {
        let mut cmd = Command::new("mmdebstrap");
        cmd.args(["--mode=root", "--format=directory", "--quiet"])
            .arg(format!("--variant={}", self.variant))
            .arg("--aptopt=APT::Install-Recommends \"false\"")
            .arg("--dpkgopt=path-exclude=/usr/share/doc/*")
            .arg("--dpkgopt=path-include=/usr/share/doc/*/copyright")
            .arg("--dpkgopt=path-exclude=/usr/share/man/*")
            .arg("--dpkgopt=path-exclude=/usr/share/locale/*")
            .arg("--dpkgopt=path-include=/usr/share/locale/locale.alias")
            .env("SOURCE_DATE_EPOCH", self.source_date_epoch.to_string())
            .env("LC_ALL", "C.UTF-8")
            .env("TZ", "UTC");
        if !self.include.is_empty() {
            cmd.arg(format!("--include={}", self.include.join(",")));
        }
        if let Some(p) = self.preferences {
            cmd.arg(format!(
                "--aptopt=Dir::Etc::Preferences \"{}\"",
                p.display()
            ));
        }
        // Kernel packages would build an initramfs nobody uses (the live
        // system has its own; the installed system builds one on the target).
        cmd.arg(format!(
            "--essential-hook=chroot \"$1\" dpkg-divert --quiet --local --rename --add {UPDATE_INITRAMFS} && ln -s /bin/true \"$1{UPDATE_INITRAMFS}\""
        ));
        cmd.arg(format!(
            "--customize-hook=rm -f \"$1{UPDATE_INITRAMFS}\" && chroot \"$1\" dpkg-divert --quiet --local --rename --remove {UPDATE_INITRAMFS}"
        ));
        let listing = self.listing.display();
        cmd.arg(format!(
            "--customize-hook=chroot \"$1\" dpkg-query -W -f='${{Package}}\\t${{Version}}\\t${{Architecture}}\\n' | LC_ALL=C sort > {listing}"
        ));
        if let Some(h) = &self.extra_hook {
            cmd.arg(format!("--customize-hook={h}"));
        }
        cmd.arg(self.suite).arg(self.target).args(&self.sources);
        run(&mut cmd)?;
        Ok(())
    }
}

fn read_listing(path: &Path) -> Result<Vec<(String, String, String)>, RootfsError> {
    let text = fs::read_to_string(path).map_err(io_err("reading", path))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut it = l.split('\t');
            Some((
                it.next()?.to_string(),
                it.next()?.to_string(),
                it.next()?.to_string(),
            ))
        })
        .collect())
}

/// Resolves `tree` against `sources`: assembles it once in a scratch
/// directory and pins every package dpkg installed, with the sha256 and size
/// apt's lists give for that exact version. apt prefers the versions in
/// `prefer` (each with priority 1001: taken whenever the archive still
/// serves it), so a refresh moves only what it must.
pub fn resolve(
    name: &str,
    suite: &str,
    tree: &Tree,
    sources: &[String],
    scratch: &Path,
    source_date_epoch: u64,
    prefer: &[DebPin],
) -> Result<Vec<DebPin>, RootfsError> {
    let target = scratch.join(format!("resolve-{name}"));
    let listing = scratch.join(format!("resolve-{name}.list"));
    let show = scratch.join(format!("resolve-{name}.show"));
    let _ = fs::remove_dir_all(&target);
    let prefs = scratch.join(format!("resolve-{name}.pref"));
    if !prefer.is_empty() {
        let text: String = prefer
            .iter()
            .map(|p| {
                format!(
                    "Package: {}:{}\nPin: version {}\nPin-Priority: 1001\n\n",
                    p.package, p.arch, p.version
                )
            })
            .collect();
        fs::write(&prefs, text).map_err(io_err("writing", &prefs))?;
    }
    let hook = format!(
        "APT_CONFIG=\"$MMDEBSTRAP_APT_CONFIG\" apt-cache show --no-all-versions $(awk -F'\\t' '{{print $1\":\"$3\"=\"$2}}' {}) > {}",
        listing.display(),
        show.display()
    );
    Assembly {
        suite,
        variant: &tree.variant,
        include: tree.packages.clone(),
        sources: sources.to_vec(),
        target: &target,
        listing: &listing,
        extra_hook: Some(hook),
        preferences: (!prefer.is_empty()).then_some(prefs.as_path()),
        source_date_epoch,
    }
    .run()?;
    let text = fs::read_to_string(&show).map_err(io_err("reading", &show))?;
    let _ = fs::remove_dir_all(&target);
    let mut pins: Vec<DebPin> = text
        .split("\n\n")
        .filter_map(crate::inputs::parse_apt_show)
        .collect();
    pins.sort_by(|a, b| a.package.cmp(&b.package));
    pins.dedup_by(|a, b| a.package == b.package && a.arch == b.arch);
    let listed = read_listing(&listing)?;
    if listed.len() != pins.len() {
        return Err(RootfsError::LockMismatch {
            tree: name.to_string(),
            detail: format!(
                "{} packages installed but apt described {}",
                listed.len(),
                pins.len()
            ),
        });
    }
    Ok(pins)
}

/// The cache key of a tree image: everything that decides its bytes.
pub fn image_key(name: &str, suite: &str, tree: &Tree, pins: &[DebPin], sde: u64) -> String {
    let mut h = Sha256::new();
    h.update(format!("tree-assembly {ASSEMBLY_VERSION}\n{name}\n{suite}\n{sde}\n").as_bytes());
    h.update(format!("{}\n", tree.variant).as_bytes());
    for p in &tree.packages {
        h.update(format!("include {p}\n").as_bytes());
    }
    for r in &tree.remove {
        h.update(format!("remove {r}\n").as_bytes());
    }
    for p in pins {
        h.update(format!("pin {} {} {} {}\n", p.package, p.version, p.arch, p.sha256).as_bytes());
    }
    h.update(mksquashfs_version().as_bytes());
    hex::encode(h.finalize())
}

fn mksquashfs_version() -> String {
    Command::new("mksquashfs")
        .arg("-version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

/// What building a tree produced.
#[derive(Debug, Clone)]
pub struct TreeImage {
    pub name: String,
    /// The squashfs image in the cache.
    pub path: PathBuf,
    pub key: String,
    /// sha256 of the image, recorded when it was made and checked on reuse.
    pub sha256: String,
    /// Whether it came from the cache.
    pub cached: bool,
}

/// A file the pipeline adds to a tree after assembly: our own programs and
/// configuration, which no Debian package carries. Part of the image's
/// cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extra {
    File {
        /// Path relative to the tree's root.
        path: String,
        data: Vec<u8>,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
}

impl Extra {
    pub fn file(path: &str, data: impl Into<Vec<u8>>, mode: u32) -> Self {
        Extra::File {
            path: path.to_string(),
            data: data.into(),
            mode,
        }
    }

    pub fn symlink(path: &str, target: &str) -> Self {
        Extra::Symlink {
            path: path.to_string(),
            target: target.to_string(),
        }
    }

    fn path(&self) -> &str {
        match self {
            Extra::File { path, .. } | Extra::Symlink { path, .. } => path,
        }
    }

    fn key(&self) -> String {
        match self {
            Extra::File { path, data, mode } => {
                format!(
                    "extra {path} {mode:o} {}\n",
                    hex::encode(Sha256::digest(data))
                )
            }
            Extra::Symlink { path, target } => format!("extra {path} -> {target}\n"),
        }
    }

    /// Writes it below `root`, replacing what the packages put there.
    fn write(&self, root: &Path) -> Result<(), RootfsError> {
        use std::os::unix::fs::PermissionsExt;
        let rel = self.path().trim_start_matches('/');
        if rel.is_empty() || rel.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(RootfsError::Tool {
                command: "adding a file to a tree".into(),
                detail: format!("{:?} is not a plain relative path", self.path()),
            });
        }
        let dest = root.join(rel);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
            // An absolute symlink in the tree must not lead the write onto
            // the build host.
            let real = fs::canonicalize(parent).map_err(io_err("resolving", parent))?;
            let top = fs::canonicalize(root).map_err(io_err("resolving", root))?;
            if !real.starts_with(&top) {
                return Err(RootfsError::Tool {
                    command: "adding a file to a tree".into(),
                    detail: format!("{rel:?} leads out of the tree (to {})", real.display()),
                });
            }
        }
        if fs::symlink_metadata(&dest).is_ok() {
            fs::remove_file(&dest).map_err(io_err("replacing", &dest))?;
        }
        match self {
            Extra::File { data, mode, .. } => {
                fs::write(&dest, data).map_err(io_err("writing", &dest))?;
                fs::set_permissions(&dest, fs::Permissions::from_mode(*mode))
                    .map_err(io_err("setting the mode of", &dest))?;
            }
            Extra::Symlink { target, .. } => {
                std::os::unix::fs::symlink(target, &dest).map_err(io_err("linking", &dest))?;
            }
        }
        Ok(())
    }
}

/// Everything one tree build needs besides the tree itself.
#[derive(Debug, Clone, Copy)]
pub struct BuildEnv<'a> {
    pub suite: &'a str,
    /// Files added after assembly (see [`Extra`]).
    pub extras: &'a [Extra],
    pub cache: &'a Cache,
    /// The recipe's sources: the tree's own /etc/apt/sources.list.
    pub sources: &'a [String],
    pub source_date_epoch: u64,
    pub threads: usize,
}

/// Builds (or takes from the cache) the squashfs image of one locked tree.
pub fn build(
    name: &str,
    tree: &Tree,
    pins: &[DebPin],
    env: BuildEnv<'_>,
) -> Result<TreeImage, RootfsError> {
    let BuildEnv {
        suite,
        extras,
        cache,
        sources,
        source_date_epoch,
        threads,
    } = env;
    // The sources are written into the tree's /etc/apt/sources.list.
    let key = {
        let mut h = Sha256::new();
        h.update(image_key(name, suite, tree, pins, source_date_epoch).as_bytes());
        for s in sources {
            h.update(format!("source {s}\n").as_bytes());
        }
        for e in extras {
            h.update(e.key().as_bytes());
        }
        hex::encode(h.finalize())
    };
    let images = cache.root().join("images");
    let dest = images.join(format!("{key}.squashfs"));
    let record = images.join(format!("{key}.squashfs.sha256"));
    if dest.is_file() {
        let recorded = fs::read_to_string(&record).unwrap_or_default();
        let actual = inputs::sha256_file(&dest)?;
        if recorded.trim() == actual {
            return Ok(TreeImage {
                name: name.to_string(),
                path: dest,
                key,
                sha256: actual,
                cached: true,
            });
        }
        eprintln!(
            "warning: the cached image of tree `{name}` ({}) does not match the hash recorded when it was made: evicted, rebuilding it",
            dest.display()
        );
        fs::remove_file(&dest).map_err(io_err("evicting", &dest))?;
    }
    fs::create_dir_all(&images).map_err(io_err("creating", &images))?;
    let debs = cache.debs(pins)?;
    let work = tempfile::Builder::new()
        .prefix(&format!(".tree-{name}-"))
        .tempdir_in(cache.root())
        .map_err(io_err("creating a work directory in", cache.root()))?;
    let repo = work.path().join("repo");
    fs::create_dir_all(&repo).map_err(io_err("creating", &repo))?;
    for (pin, deb) in pins.iter().zip(&debs) {
        let version = pin.version.replace(':', "%3a");
        let file = repo.join(format!("{}_{}_{}.deb", pin.package, version, pin.arch));
        if fs::hard_link(deb, &file).is_err() {
            fs::copy(deb, &file).map_err(io_err("copying", deb))?;
        }
    }
    let packages = run(Command::new("apt-ftparchive")
        .arg("packages")
        .arg(".")
        .current_dir(&repo))?;
    fs::write(repo.join("Packages"), packages).map_err(io_err("writing", &repo))?;
    // mmdebstrap finds the essential set through the suite a Release names.
    let release = run(Command::new("apt-ftparchive")
        .arg(format!("-oAPT::FTPArchive::Release::Suite={suite}"))
        .arg(format!("-oAPT::FTPArchive::Release::Codename={suite}"))
        .arg("-oAPT::FTPArchive::Release::Architectures=amd64 all")
        .arg("release")
        .arg(".")
        .current_dir(&repo))?;
    fs::write(repo.join("Release"), release).map_err(io_err("writing", &repo))?;

    let target = work.path().join("root");
    let listing = work.path().join("installed.list");
    // The private repository's Packages index carries each .deb's own
    // Priority, not the archive's overrides, so a variant would select a
    // different base; instead install the essential set plus every locked
    // package by name.
    Assembly {
        suite,
        variant: "essential",
        include: pins.iter().map(|p| p.package.clone()).collect(),
        sources: vec![format!("deb [trusted=yes] copy://{} ./", repo.display())],
        target: &target,
        listing: &listing,
        extra_hook: None,
        preferences: None,
        source_date_epoch,
    }
    .run()?;
    let installed: BTreeSet<(String, String)> = read_listing(&listing)?
        .into_iter()
        .map(|(p, v, _)| (p, v))
        .collect();
    let locked: BTreeSet<(String, String)> = pins
        .iter()
        .map(|p| (p.package.clone(), p.version.clone()))
        .collect();
    if installed != locked {
        let extra: Vec<_> = installed
            .difference(&locked)
            .map(|(p, v)| format!("+{p} {v}"))
            .collect();
        let gone: Vec<_> = locked
            .difference(&installed)
            .map(|(p, v)| format!("-{p} {v}"))
            .collect();
        return Err(RootfsError::LockMismatch {
            tree: name.to_string(),
            detail: [extra, gone].concat().join(", "),
        });
    }
    scrub(&target, &tree.remove)?;
    for e in extras {
        e.write(&target)?;
    }
    // mmdebstrap recorded the private repository (a temporary path) as the
    // tree's apt source; the tree gets the recipe's sources instead.
    let list = target.join("etc/apt/sources.list");
    fs::write(&list, sources.join("\n") + "\n").map_err(io_err("writing", &list))?;
    let partial = images.join(format!("{key}.squashfs.partial"));
    let _ = fs::remove_file(&partial);
    squash(&target, &partial, source_date_epoch, threads)?;
    let sha256 = inputs::sha256_file(&partial)?;
    fs::write(&record, format!("{sha256}\n")).map_err(io_err("writing", &record))?;
    fs::rename(&partial, &dest).map_err(io_err("storing", &dest))?;
    Ok(TreeImage {
        name: name.to_string(),
        path: dest,
        key,
        sha256,
        cached: false,
    })
}

/// Removes what differs between two assemblies of the same packages (logs,
/// caches, backup files, the build host's hostname and resolver) and the
/// recipe's `remove` globs. Log files go, but not the directories packages
/// ship under /var/log: oxenstored, for one, will not start without
/// /var/log/xen.
fn scrub(root: &Path, remove: &[String]) -> Result<(), RootfsError> {
    let mut globs: Vec<String> = [
        "var/cache/ldconfig/aux-cache",
        "var/cache/debconf/*-old",
        "var/lib/dpkg/*-old",
        "var/cache/apt/*.bin",
        "var/lib/apt/lists/*",
        "etc/*-",
        "tmp/*",
        "var/tmp/*",
        "run/*",
        "etc/ssh/ssh_host_*",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    globs.extend(remove.iter().cloned());
    let script = globs
        .iter()
        .map(|g| format!("rm -rf -- {g}"))
        .collect::<Vec<_>>()
        .join("\n");
    run(Command::new("sh")
        .arg("-c")
        // mmdebstrap copies the build host's hostname and resolver into the
        // tree: neither may reach an image.
        .arg(format!(
            "set -e\ncd \"$1\"\n{script}\nfind var/log ! -type d -delete\n: > etc/machine-id\nprintf 'localhost\\n' > etc/hostname\nrm -f etc/resolv.conf"
        ))
        .arg("scrub")
        .arg(root))?;
    Ok(())
}

/// Compresses a directory into a reproducible squashfs image.
pub fn squash(dir: &Path, dest: &Path, sde: u64, threads: usize) -> Result<(), RootfsError> {
    run(Command::new("mksquashfs")
        .arg(dir)
        .arg(dest)
        .args([
            "-noappend",
            "-quiet",
            "-no-progress",
            "-comp",
            "xz",
            "-b",
            "1M",
        ])
        .args([
            "-mkfs-time",
            &sde.to_string(),
            "-all-time",
            &sde.to_string(),
        ])
        .args(["-processors", &threads.max(1).to_string()]))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extras_replace_files_and_stay_inside_the_tree() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        fs::create_dir_all(root.join("usr/sbin")).unwrap();
        std::os::unix::fs::symlink("usr/sbin", root.join("sbin")).unwrap();
        fs::write(root.join("usr/sbin/init"), "old").unwrap();
        Extra::file("sbin/init", "new", 0o755).write(&root).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("usr/sbin/init")).unwrap(),
            "new"
        );
        Extra::symlink("etc/x/link", "/bin/true")
            .write(&root)
            .unwrap();
        assert_eq!(
            fs::read_link(root.join("etc/x/link")).unwrap(),
            Path::new("/bin/true")
        );
        let outside = d.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        let e = Extra::file("escape/f", "x", 0o644)
            .write(&root)
            .unwrap_err();
        assert!(e.to_string().contains("leads out of the tree"), "{e}");
        assert!(!outside.join("f").exists());
        for bad in ["", "../x", "a//b", "a/../b"] {
            assert!(Extra::file(bad, "x", 0o644).write(&root).is_err(), "{bad}");
        }
        assert_ne!(
            Extra::file("a", "x", 0o644).key(),
            Extra::file("a", "x", 0o755).key()
        );
    }

    fn tree() -> Tree {
        Tree {
            variant: "minbase".into(),
            packages: vec!["busybox-static".into()],
            remove: vec![],
        }
    }

    #[test]
    fn image_key_changes_with_every_input() {
        let pin = DebPin {
            package: "a".into(),
            version: "1".into(),
            arch: "amd64".into(),
            sha256: "0".repeat(64),
            size: 1,
        };
        let one = std::slice::from_ref(&pin);
        let base = image_key("live", "bookworm", &tree(), one, 1);
        assert_eq!(base, image_key("live", "bookworm", &tree(), one, 1));
        let mut t2 = tree();
        t2.packages.push("x".into());
        let mut p2 = pin.clone();
        p2.sha256 = "1".repeat(64);
        for other in [
            image_key("payload", "bookworm", &tree(), one, 1),
            image_key("live", "trixie", &tree(), one, 1),
            image_key("live", "bookworm", &t2, one, 1),
            image_key("live", "bookworm", &tree(), &[p2], 1),
            image_key("live", "bookworm", &tree(), one, 2),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn squashfs_is_reproducible_across_thread_counts_and_keeps_xattrs() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("usr/bin")).unwrap();
        for i in 0..50 {
            fs::write(
                src.join(format!("usr/bin/f{i}")),
                format!("{i}").repeat(5000),
            )
            .unwrap();
        }
        let capfile = src.join("usr/bin/ping");
        fs::write(&capfile, b"binary").unwrap();
        let setcap = Command::new("setcap")
            .arg("cap_net_raw+ep")
            .arg(&capfile)
            .status()
            .unwrap();
        assert!(setcap.success());
        let a = dir.path().join("a.sqfs");
        let b = dir.path().join("b.sqfs");
        squash(&src, &a, 1_700_000_000, 1).unwrap();
        squash(&src, &b, 1_700_000_000, 2).unwrap();
        assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
        let out = dir.path().join("out");
        let unsquash = Command::new("unsquashfs")
            .arg("-d")
            .arg(&out)
            .arg(&a)
            .output()
            .unwrap();
        assert!(unsquash.status.success());
        let caps = Command::new("getcap")
            .arg(out.join("usr/bin/ping"))
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&caps.stdout).contains("cap_net_raw"));
    }
}
