//! Picking kernel modules for an initramfs: a wanted list and whole
//! directories, closed over `modules.dep`, copied into a staging tree and
//! indexed there by the host's `depmod`, so modprobe in the initramfs
//! resolves dependencies and aliases (e.g. dm-crypt asking for crypto-xts).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    #[error("kernel module {0:?} is not in modules.dep of the kernel")]
    Unknown(String),
    #[error(transparent)]
    Io(#[from] sysutil::IoError),
    #[error("depmod: {0}")]
    Depmod(String),
    #[error(transparent)]
    Run(#[from] sysutil::ToolError),
}

use sysutil::io_err;

/// The modules chosen: files to copy (relative to the module directory) and
/// names to load at boot, in the order asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleSet {
    pub files: BTreeSet<String>,
    pub load: Vec<String>,
}

fn name_of(path: &str) -> String {
    Path::new(path)
        .file_name()
        .and_then(|f| f.to_str())
        .map(|f| {
            f.trim_end_matches(".xz")
                .trim_end_matches(".zst")
                .trim_end_matches(".ko")
                .replace('-', "_")
        })
        .unwrap_or_default()
}

/// Chooses `wanted` modules (builtin ones are skipped) plus every module
/// under `dirs`, with all their dependencies, from `modules_dir`
/// (`lib/modules/RELEASE`, indexed by depmod).
pub fn select(modules_dir: &Path, wanted: &[&str], dirs: &[&str]) -> Result<ModuleSet, KmodError> {
    let dep_path = modules_dir.join("modules.dep");
    let deps_text = fs::read_to_string(&dep_path).map_err(io_err("reading", &dep_path))?;
    let builtin_path = modules_dir.join("modules.builtin");
    let builtin: BTreeSet<String> = fs::read_to_string(&builtin_path)
        .map_err(io_err("reading", &builtin_path))?
        .lines()
        .map(name_of)
        .collect();
    let mut deps: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in deps_text.lines() {
        if let Some((module, rest)) = line.split_once(':') {
            deps.insert(
                name_of(module),
                (
                    module.to_string(),
                    rest.split_whitespace().map(str::to_string).collect(),
                ),
            );
        }
    }
    let mut set = ModuleSet::default();
    for m in wanted {
        let key = m.replace('-', "_");
        if builtin.contains(&key) {
            continue;
        }
        let (file, needs) = deps
            .get(&key)
            .ok_or_else(|| KmodError::Unknown(m.to_string()))?;
        set.files.insert(file.clone());
        set.files.extend(needs.iter().cloned());
        if !set.load.contains(&key) {
            set.load.push(key);
        }
    }
    for dir in dirs {
        for (file, needs) in deps.values() {
            if file.starts_with(dir) {
                set.files.insert(file.clone());
                set.files.extend(needs.iter().cloned());
            }
        }
    }
    Ok(set)
}

/// Copies the chosen modules into `root/usr/lib/modules/RELEASE` and runs
/// `depmod -b root/usr RELEASE` there.
pub fn stage(
    modules_dir: &Path,
    release: &str,
    set: &ModuleSet,
    root: &Path,
) -> Result<(), KmodError> {
    let dst = root.join("usr/lib/modules").join(release);
    for f in &set.files {
        let to = dst.join(f);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        let from = modules_dir.join(f);
        fs::copy(&from, &to).map_err(io_err("copying module", &from))?;
    }
    fs::create_dir_all(&dst).map_err(io_err("creating", &dst))?;
    for meta in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        let from = modules_dir.join(meta);
        if from.is_file() {
            fs::copy(&from, dst.join(meta)).map_err(io_err("copying", &from))?;
        }
    }
    depmod(&root.join("usr"), release)
}

/// Runs the host's `depmod -b ROOT RELEASE`.
pub fn depmod(root: &Path, release: &str) -> Result<(), KmodError> {
    let depmod = ["/sbin/depmod", "/usr/sbin/depmod"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| KmodError::Depmod("depmod not found: apt-get install kmod".into()))?;
    sysutil::run(Command::new(depmod).arg("-b").arg(root).arg(release))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("modules.dep"),
            "kernel/drivers/md/dm-crypt.ko: kernel/drivers/md/dm-mod.ko\nkernel/drivers/md/dm-mod.ko:\nkernel/crypto/xts.ko:\nkernel/fs/ext4/ext4.ko: kernel/fs/mbcache.ko\nkernel/fs/mbcache.ko:\n",
        )
        .unwrap();
        fs::write(
            d.path().join("modules.builtin"),
            "kernel/drivers/virtio/virtio.ko\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn closes_over_dependencies_and_directories() {
        let d = fake_tree();
        let s = select(d.path(), &["dm-crypt", "virtio"], &["kernel/crypto"]).unwrap();
        assert_eq!(s.load, ["dm_crypt"]);
        assert!(s.files.contains("kernel/drivers/md/dm-mod.ko"));
        assert!(s.files.contains("kernel/crypto/xts.ko"));
        assert!(!s.files.contains("kernel/fs/ext4/ext4.ko"));
    }

    #[test]
    fn unknown_module_is_named() {
        let d = fake_tree();
        let err = select(d.path(), &["nosuch"], &[]).unwrap_err();
        assert!(err.to_string().contains("nosuch"), "{err}");
    }
}
