//! The payload stage: the installed system copied onto the target (a
//! directory tree, or a squashfs image through `unsquashfs`), and the qube
//! template written into its root volume, which firstboot adopts.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use firstboot::settings::PoolSettings;
use names::TEMPLATE_NAME;

use super::configure::qube_user;
use super::error::{At, InstallError, StageError};
use super::files;
use super::progress::{Log, Stage};
use super::run::Emitter;
use super::target::Target;
use super::tool;
use crate::answers::UserAnswers;

/// The installed system's payload: a directory tree or a squashfs image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Dir(PathBuf),
    Squashfs(PathBuf),
}

impl Payload {
    /// A directory is copied; anything else is taken for a squashfs image.
    pub fn at(path: &Path) -> Self {
        if path.is_dir() {
            Payload::Dir(path.to_path_buf())
        } else {
            Payload::Squashfs(path.to_path_buf())
        }
    }
}

/// The stage: the payload into `root`, then the template, if any, into
/// its root volume in the qubes' pool `pool`. Returns the size of that
/// volume.
pub fn stage(
    out: &mut Emitter,
    target: &mut dyn Target,
    root: &Path,
    payload: &Payload,
    template: Option<&Path>,
    user: &UserAnswers,
    pool: &PoolSettings,
) -> Result<Option<u64>, InstallError> {
    out.emit(Stage::Payload, 0, format!("copying {payload:?}"));
    let mut copy_log = Log::default();
    let mut shown = 0u8;
    let copied = copy_payload(payload, root, &mut copy_log, &mut |p| {
        // an event per 5% keeps the log pane readable
        if p >= shown.saturating_add(5) || p == 100 {
            shown = p;
            out.emit(Stage::Payload, p, format!("{p}% copied"));
        }
    });
    out.log.lines.append(&mut copy_log.lines);
    copied.at(Stage::Payload)?;
    let Some(img) = template else {
        return Ok(None);
    };
    out.emit(
        Stage::Payload,
        100,
        format!("making the template {TEMPLATE_NAME} from {}", img.display()),
    );
    let t = TemplateInstall {
        img,
        root,
        name: TEMPLATE_NAME,
        user,
        pool,
    };
    install_template(&t, target, &mut out.log)
        .map(Some)
        .at(Stage::Payload)
}

/// Copies the payload into `root`: a directory with modes and symlinks
/// (by hand: std has no recursive copy keeping symlinks), a squashfs image
/// with `unsquashfs` (squashfs-tools), keeping owners and xattrs.
/// `progress` gets the percent done: entries copied of those counted first,
/// or for squashfs the files `unsquashfs -i` names of the superblock's inode
/// count.
pub fn copy_payload(
    payload: &Payload,
    root: &Path,
    log: &mut Log,
    progress: &mut dyn FnMut(u8),
) -> Result<u64, StageError> {
    let total = match payload {
        Payload::Dir(src) => count_tree(src),
        Payload::Squashfs(img) => squashfs_inodes(img)?,
    }
    .max(1);
    let mut n = 0;
    let mut last = 0;
    let mut tick = |n: u64| {
        let p = (n * 100 / total).min(100) as u8;
        if p > last {
            last = p;
            progress(p);
        }
    };
    match payload {
        Payload::Dir(src) => {
            copy_tree(src, root, &mut n, &mut tick)?;
            log.line(format!("copied {n} entries from {}", src.display()));
        }
        Payload::Squashfs(img) => {
            let prefix = root.display().to_string();
            tool::stream(
                Command::new("unsquashfs")
                    .args(["-f", "-n", "-i", "-d"])
                    .arg(root)
                    .arg(img),
                &format!("unsquashfs {} failed", img.display()),
                &mut |line| {
                    if line.starts_with(&prefix) {
                        n += 1;
                        tick(n);
                    }
                },
            )?;
            log.line(format!(
                "unpacked {} ({n} of {total} inodes named) into {}",
                img.display(),
                root.display()
            ));
        }
    }
    Ok(n)
}

/// The inode count of a squashfs image (`unsquashfs -s`).
fn squashfs_inodes(img: &Path) -> Result<u64, StageError> {
    let out = tool::run(
        Command::new("unsquashfs").arg("-s").arg(img),
        &format!("{} is not a readable squashfs image", img.display()),
    )?;
    String::from_utf8_lossy(&out)
        .lines()
        .find_map(|l| l.strip_prefix("Number of inodes "))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| StageError::NoInodeCount(img.to_path_buf()))
}

fn count_tree(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            1 + if is_dir { count_tree(&e.path()) } else { 0 }
        })
        .sum()
}

fn copy_tree(
    src: &Path,
    dst: &Path,
    n: &mut u64,
    tick: &mut dyn FnMut(u64),
) -> Result<(), StageError> {
    let meta = fs::symlink_metadata(src).map_err(StageError::io("reading", src))?;
    fs::create_dir_all(dst).map_err(StageError::io("creating", dst))?;
    fs::set_permissions(dst, fs::Permissions::from_mode(meta.permissions().mode()))
        .map_err(StageError::io("setting the mode of", dst))?;
    let entries = fs::read_dir(src).map_err(StageError::io("listing", src))?;
    for entry in entries {
        let entry = entry.map_err(StageError::io("listing", src))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let m = fs::symlink_metadata(&from).map_err(StageError::io("reading", &from))?;
        let ft = m.file_type();
        *n += 1;
        tick(*n);
        if ft.is_dir() {
            copy_tree(&from, &to, n, tick)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&from).map_err(StageError::io("reading link", &from))?;
            let _ = fs::remove_file(&to);
            symlink(&target, &to).map_err(StageError::io("creating link", &to))?;
        } else if ft.is_file() {
            fs::copy(&from, &to).map_err(StageError::io("copying to", &to))?;
            fs::set_permissions(&to, fs::Permissions::from_mode(m.permissions().mode()))
                .map_err(StageError::io("setting the mode of", &to))?;
        }
    }
    Ok(())
}

/// What [`install_template`] needs: the medium's squashfs `img`, the
/// mounted target `root`, the template's name, the dom0 user and the
/// qubes' pool.
pub struct TemplateInstall<'a> {
    pub img: &'a Path,
    pub root: &'a Path,
    pub name: &'a str,
    pub user: &'a UserAnswers,
    pub pool: &'a PoolSettings,
}

/// Writes the template's root volume from the medium's squashfs: unpacked
/// onto the target (owners and xattrs kept), given the dom0 user's qube
/// account, and made into ext4 by `mkfs.ext4 -d` (e2fsprogs) straight onto
/// a fresh thin volume in the qubes' pool, under a temporary name until it
/// is whole. firstboot adopts it, so the first boot copies nothing (under
/// Xen, a copy of the whole root is the slowest step of a first boot). The
/// qubes' boot kit the medium carries beside the image (iso-builder's
/// vmkit: each kernel release's vmlinuz and initramfs) is copied to where
/// Qubes keeps VM kernels. Returns the volume's size.
pub fn install_template(
    t: &TemplateInstall<'_>,
    target: &mut dyn Target,
    log: &mut Log,
) -> Result<u64, StageError> {
    let kit = t.img.with_file_name(KIT_DIR);
    let releases = kit_releases(&kit)?;
    let scratch = t.root.join("var/tmp/bulkhead-template");
    let _ = fs::remove_dir_all(&scratch);
    if let Some(p) = scratch.parent() {
        fs::create_dir_all(p).map_err(StageError::io("creating", p))?;
    }
    tool::run(
        Command::new("unsquashfs")
            .args(["-f", "-n", "-q", "-d"])
            .arg(&scratch)
            .arg(t.img),
        "unsquashfs failed",
    )?;
    files::write_all(
        &scratch,
        &qube_user(&scratch, &t.user.name, &t.user.full_name),
    )?;
    let bytes = tree_bytes(&scratch);
    let size = root_volume_size(bytes);
    let vid = firstboot::model::vid(&t.pool.volume_group, t.name, "root");
    let partial = format!("{vid}-import");
    let dev = target.thin_volume(t.pool, &partial, size)?;
    // A fresh thin volume reads as zeros: mke2fs need not zero the inode
    // tables, nor leave that to ext4's lazy init at each qube's first mount.
    tool::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "root"])
            .args(["-E", "lazy_itable_init=1,assume_storage_prezeroed=1"])
            .arg("-d")
            .arg(&scratch)
            .arg(&dev),
        "mkfs.ext4 failed",
    )?;
    target.rename_volume(&partial, &vid)?;
    fs::remove_dir_all(&scratch).map_err(StageError::io("removing", &scratch))?;
    for release in &releases {
        let from = kit.join(release);
        let to = t.root.join(names::VM_KERNELS).join(release);
        fs::create_dir_all(&to).map_err(StageError::io("creating", &to))?;
        for file in KIT_FILES {
            fs::copy(from.join(file), to.join(file))
                .map_err(StageError::io("copying the qubes' boot kit to", &to))?;
        }
    }
    const MIB: u64 = 1 << 20;
    log.line(format!(
        "template {}: {} MiB of files in its {} MiB root volume {vid}, with the qube user {}; VM kernel {}",
        t.name,
        bytes / MIB,
        size / MIB,
        t.user.name,
        releases.join(", ")
    ));
    Ok(size)
}

/// The template's root volume: Qubes' root_img_size, or more when its
/// files need it (ext4's metadata and room for the template's updates).
fn root_volume_size(file_bytes: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    let needed = (file_bytes + file_bytes / 4 + 512 * MIB).div_ceil(MIB) * MIB;
    needed.max(firstboot::model::ROOT_IMG_SIZE)
}

/// The boot kit's directory beside the template image on the medium, and
/// the files of each kernel release in it (iso-builder's vmkit).
const KIT_DIR: &str = "vm-kernels";
const KIT_FILES: [&str; 2] = ["vmlinuz", "initramfs"];

/// The kernel releases of the boot kit at `kit`, each with every file the
/// xl configs name; an error if there is none, since no qube could boot.
fn kit_releases(kit: &Path) -> Result<Vec<String>, StageError> {
    let missing = || StageError::NoBootKit(kit.to_path_buf());
    let mut releases: Vec<String> = fs::read_dir(kit)
        .map_err(|_| missing())?
        .filter_map(Result::ok)
        .filter(|e| KIT_FILES.iter().all(|f| e.path().join(f).is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    releases.sort();
    if releases.is_empty() {
        return Err(missing());
    }
    Ok(releases)
}

/// Bytes of the regular files below `dir` (symlinks not followed).
fn tree_bytes(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}
