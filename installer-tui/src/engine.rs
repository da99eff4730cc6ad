//! The install engine, shared by the TUI and unattended installs.
//!
//! Order: hardware gate ([`hardware_gate`], over hcl-check's verdicts) →
//! plan (partitioner) → partition (partitioner's `apply`, the only code that
//! writes to a disk) → payload copy → system files → bootloader → first-boot
//! settings → log → unmount and close. Everything after partitioning runs on
//! a mounted target root directory through the [`Target`] trait, so the file
//! writing is tested on a plain directory; [`DiskTarget`] is the real one
//! (mount, chroot, grub-install). Progress events carry the stage, overall
//! percent and an ETA. The log holds no secret: only what [`Log::line`] is
//! given, and no caller gives it the passphrase or password.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hcl_check::{Report, Status};
use partitioner::apply::partition_path;
use partitioner::plan::Role;
use partitioner::{Inventory, Plan, Refusal};

use crate::config::{Answers, Secrets, SystemAnswers};

/// Where the install log goes on the target.
pub const LOG_PATH: &str = "var/log/bulkhead/install.log";

/// The stages, in order, with their share of the whole install (percent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Hardware,
    Plan,
    Partition,
    Payload,
    Configure,
    Bootloader,
    Firstboot,
    Finish,
}

pub const STAGES: [Stage; 8] = [
    Stage::Hardware,
    Stage::Plan,
    Stage::Partition,
    Stage::Payload,
    Stage::Configure,
    Stage::Bootloader,
    Stage::Firstboot,
    Stage::Finish,
];

impl Stage {
    pub fn title(self) -> &'static str {
        match self {
            Stage::Hardware => "Checking the hardware",
            Stage::Plan => "Planning the disk layout",
            Stage::Partition => "Partitioning and encrypting the disk",
            Stage::Payload => "Copying the system",
            Stage::Configure => "Writing the system configuration",
            Stage::Bootloader => "Installing the bootloader",
            Stage::Firstboot => "Handing over the first-boot settings",
            Stage::Finish => "Unmounting and closing the disk",
        }
    }
    /// Share of the whole install time, in percent (sums to 100).
    pub fn weight(self) -> u32 {
        match self {
            Stage::Hardware => 1,
            Stage::Plan => 1,
            Stage::Partition => 15,
            Stage::Payload => 65,
            Stage::Configure => 3,
            Stage::Bootloader => 12,
            Stage::Firstboot => 1,
            Stage::Finish => 2,
        }
    }
}

/// One progress report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Event {
    pub stage: Stage,
    /// Overall percent, 0..=100.
    pub percent: u8,
    /// Estimated time left (none before any progress).
    pub eta: Option<Duration>,
    /// A log line for the log pane.
    pub message: String,
}

/// Overall percent when `within` percent of `stage` is done.
pub fn overall_percent(stage: Stage, within: u8) -> u8 {
    let before: u32 = STAGES
        .iter()
        .take_while(|s| **s != stage)
        .map(|s| s.weight())
        .sum();
    let p = before + stage.weight() * u32::from(within.min(100)) / 100;
    p.min(100) as u8
}

/// Time left at `percent` after `elapsed`, assuming the weights hold.
pub fn eta(elapsed: Duration, percent: u8) -> Option<Duration> {
    if percent == 0 {
        return None;
    }
    let p = f64::from(percent.min(100));
    Some(elapsed.mul_f64((100.0 - p) / p))
}

/// Why an install stopped. Each names the stage; nothing after it ran.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(
        "hardware check: {0}\nBulkhead cannot run on this machine; see `hcl-check` for details."
    )]
    HardwareFails(String),
    #[error(
        "hardware check: warnings not accepted: {0}\nAccept them (hardware.accept_warnings in the answer file, or on the hardware screen) or use other hardware."
    )]
    NotAccepted(String),
    #[error("planning: {0}")]
    Refused(#[from] Refusal),
    #[error("the answers are not valid: {0}")]
    Answers(String),
    #[error("{stage:?}: {message}")]
    Stage { stage: Stage, message: String },
}

impl InstallError {
    pub fn stage(&self) -> Stage {
        match self {
            InstallError::HardwareFails(_) | InstallError::NotAccepted(_) => Stage::Hardware,
            InstallError::Refused(_) | InstallError::Answers(_) => Stage::Plan,
            InstallError::Stage { stage, .. } => *stage,
        }
    }
}

fn stage_err(stage: Stage) -> impl Fn(String) -> InstallError {
    move |message| InstallError::Stage { stage, message }
}

fn io_msg(what: &str, path: &Path, e: io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

/// Fail verdicts block; warn and unknown verdicts need their id in `accepted`.
pub fn hardware_gate(report: &Report, accepted: &[String]) -> Result<(), InstallError> {
    let fails: Vec<String> = report
        .verdicts
        .iter()
        .filter(|v| v.status == Status::Fail)
        .map(|v| format!("{} ({})", v.requirement, v.reason))
        .collect();
    if !fails.is_empty() {
        return Err(InstallError::HardwareFails(fails.join("; ")));
    }
    let open: Vec<&str> = needs_consent(report)
        .into_iter()
        .filter(|id| !accepted.iter().any(|a| a == id))
        .collect();
    if !open.is_empty() {
        return Err(InstallError::NotAccepted(open.join(", ")));
    }
    Ok(())
}

/// Requirement ids that need consent (warn or unknown).
pub fn needs_consent(report: &Report) -> Vec<&'static str> {
    report
        .verdicts
        .iter()
        .filter(|v| matches!(v.status, Status::Warn | Status::Unknown))
        .map(|v| v.id.id())
        .collect()
}

/// The machine the installer sees: hcl-check's report and the partitioner's
/// inventory, live or from a recorded fixture directory.
#[derive(Debug, Clone)]
pub struct MachineData {
    pub report: Report,
    pub inventory: Inventory,
}

impl MachineData {
    /// From this machine.
    pub fn live() -> Result<Self, String> {
        let report = hcl_check::Probe::default()
            .report()
            .map_err(|e| format!("hardware probe: {e}"))?;
        let inventory =
            partitioner::discover_system().map_err(|e| format!("disk discovery: {e}"))?;
        Ok(MachineData { report, inventory })
    }

    /// From a fixture: `DIR/hcl` is an hcl-check capture (with its
    /// `cpuid.txt`), `DIR/disks/root` a root for the partitioner's discovery
    /// and `DIR/disks/lsblk.json` its recorded `lsblk --json -O -b`.
    pub fn fixture(dir: &Path) -> Result<Self, String> {
        let report = hcl_check::Probe::new(dir.join("hcl"))
            .report()
            .map_err(|e| format!("hardware fixture {}: {e}", dir.display()))?;
        let lsblk_path = dir.join("disks/lsblk.json");
        let lsblk =
            fs::read_to_string(&lsblk_path).map_err(|e| io_msg("reading", &lsblk_path, e))?;
        let inventory = partitioner::discover(&dir.join("disks/root"), &lsblk)
            .map_err(|e| format!("disk fixture {}: {e}", dir.display()))?;
        Ok(MachineData { report, inventory })
    }
}

/// Collects the install log (no secrets are ever passed in).
#[derive(Debug, Default, Clone)]
pub struct Log {
    pub lines: Vec<String>,
}

impl Log {
    pub fn line(&mut self, s: impl Into<String>) {
        self.lines.push(s.into());
    }
    pub fn text(&self) -> String {
        let mut t = self.lines.join("\n");
        t.push('\n');
        t
    }
}

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

/// Where the lock that keeps two installers (the live system runs one on
/// each console) from installing at once lives.
pub const LOCK_PATH: &str = "/run/bulkhead-installer.lock";

/// Held while an install runs; released when dropped (or when the process
/// ends, however it ends).
#[derive(Debug)]
pub struct InstallLock(#[allow(dead_code)] fs::File);

impl InstallLock {
    /// Takes the lock at `path`, or says that another installer holds it.
    pub fn acquire(path: &Path) -> Result<Self, String> {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| io_msg("opening the installer lock", path, e))?;
        match f.try_lock() {
            Ok(()) => Ok(InstallLock(f)),
            Err(fs::TryLockError::WouldBlock) => Err(
                "another installer (on another console) is already installing; follow it there, nothing was written here".into(),
            ),
            Err(fs::TryLockError::Error(e)) => Err(io_msg("locking", path, e)),
        }
    }
}

use names::{TEMPLATE_NAME, TEMPLATES_DIR};

/// Makes the template's root image for firstboot from the medium's
/// squashfs: unpacked onto the target (owners and xattrs kept), written
/// into an ext4 image by `mkfs.ext4 -d` (e2fsprogs), and the template's
/// kernel placed where Qubes keeps VM kernels. Returns the image's path as
/// the installed system sees it.
pub fn install_template(
    img: &Path,
    root: &Path,
    name: &str,
    log: &mut Log,
) -> Result<String, String> {
    let scratch = root.join("var/tmp/bulkhead-template");
    let _ = fs::remove_dir_all(&scratch);
    if let Some(p) = scratch.parent() {
        fs::create_dir_all(p).map_err(|e| io_msg("creating", p, e))?;
    }
    run_tool(
        Command::new("unsquashfs")
            .args(["-f", "-n", "-q", "-d"])
            .arg(&scratch)
            .arg(img),
        "unsquashfs failed",
    )?;
    let bytes = tree_bytes(&scratch);
    const MIB: u64 = 1 << 20;
    // ext4's metadata and room for the template's own updates.
    let size = (bytes + bytes / 4 + 512 * MIB).div_ceil(MIB) * MIB;
    let rel = format!("{TEMPLATES_DIR}/{name}.img");
    let dest = root.join(&rel);
    if let Some(p) = dest.parent() {
        fs::create_dir_all(p).map_err(|e| io_msg("creating", p, e))?;
    }
    let f = fs::File::create(&dest).map_err(|e| io_msg("creating", &dest, e))?;
    f.set_len(size).map_err(|e| io_msg("sizing", &dest, e))?;
    drop(f);
    run_tool(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "root", "-d"])
            .arg(&scratch)
            .arg(&dest),
        "mkfs.ext4 failed",
    )?;
    let kernel = boot_files_kernel(&scratch);
    if let Some((file, release)) = &kernel {
        let kdir = root.join(names::VM_KERNELS).join(release);
        fs::create_dir_all(&kdir).map_err(|e| io_msg("creating", &kdir, e))?;
        fs::copy(scratch.join("boot").join(file), kdir.join("vmlinuz"))
            .map_err(|e| io_msg("copying the template's kernel to", &kdir, e))?;
    }
    fs::remove_dir_all(&scratch).map_err(|e| io_msg("removing", &scratch, e))?;
    log.line(format!(
        "template {name}: {} MiB of files in a {} MiB ext4 image /{rel}; VM kernel {}",
        bytes / MIB,
        size / MIB,
        kernel.map_or(
            "none (the template has no /boot/vmlinuz-*)".to_string(),
            |k| k.1
        )
    ));
    Ok(format!("/{rel}"))
}

/// The newest `vmlinuz-RELEASE` in `root/boot`, with its release.
fn boot_files_kernel(root: &Path) -> Option<(String, String)> {
    let k = newest(&root.join("boot"), "vmlinuz-", "")?;
    let release = k.trim_start_matches("vmlinuz-").to_string();
    Some((k, release))
}

/// The name in `dir` with `prefix` and `suffix` that sorts last by version.
fn newest(dir: &Path, prefix: &str, suffix: &str) -> Option<String> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
        .max_by_key(|n| natural(n))
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

/// Runs `cmd` to completion; a failure is `what` and the tool's stderr.
fn run_tool(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("running {}: {e}", cmd.get_program().to_string_lossy()))?;
    if !out.status.success() {
        return Err(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
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
) -> Result<u64, String> {
    match payload {
        Payload::Dir(src) => {
            let total = count_tree(src).max(1);
            let mut n = 0;
            let mut last = 0;
            let mut tick = |n: u64| {
                let p = (n * 100 / total).min(100) as u8;
                if p > last {
                    last = p;
                    progress(p);
                }
            };
            copy_tree(src, root, &mut n, &mut tick)?;
            log.line(format!("copied {n} entries from {}", src.display()));
            Ok(n)
        }
        Payload::Squashfs(img) => {
            let total = squashfs_inodes(img)?.max(1);
            let mut child = Command::new("unsquashfs")
                .args(["-f", "-n", "-i", "-d"])
                .arg(root)
                .arg(img)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| format!("running unsquashfs on {}: {e}", img.display()))?;
            let stderr = child.stderr.take().map(|mut e| {
                std::thread::spawn(move || {
                    let mut t = String::new();
                    let _ = io::Read::read_to_string(&mut e, &mut t);
                    t
                })
            });
            let mut n = 0u64;
            let mut last = 0;
            if let Some(out) = child.stdout.take() {
                for line in io::BufRead::lines(io::BufReader::new(out)) {
                    let Ok(line) = line else { break };
                    if line.starts_with(&root.display().to_string()) {
                        n += 1;
                        let p = (n * 100 / total).min(100) as u8;
                        if p > last {
                            last = p;
                            progress(p);
                        }
                    }
                }
            }
            let status = child
                .wait()
                .map_err(|e| format!("waiting for unsquashfs: {e}"))?;
            let err = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
            if !status.success() {
                return Err(format!(
                    "unsquashfs {} failed: {}",
                    img.display(),
                    err.trim()
                ));
            }
            log.line(format!(
                "unpacked {} ({n} of {total} inodes named) into {}",
                img.display(),
                root.display()
            ));
            Ok(n)
        }
    }
}

/// The inode count of a squashfs image (`unsquashfs -s`).
fn squashfs_inodes(img: &Path) -> Result<u64, String> {
    let out = Command::new("unsquashfs")
        .arg("-s")
        .arg(img)
        .output()
        .map_err(|e| format!("running unsquashfs -s on {}: {e}", img.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} is not a readable squashfs image: {}",
            img.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Number of inodes "))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("unsquashfs -s {} printed no inode count", img.display()))
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

fn copy_tree(src: &Path, dst: &Path, n: &mut u64, tick: &mut dyn FnMut(u64)) -> Result<(), String> {
    let meta = fs::symlink_metadata(src).map_err(|e| io_msg("reading", src, e))?;
    fs::create_dir_all(dst).map_err(|e| io_msg("creating", dst, e))?;
    fs::set_permissions(dst, fs::Permissions::from_mode(meta.permissions().mode()))
        .map_err(|e| io_msg("setting the mode of", dst, e))?;
    let entries = fs::read_dir(src).map_err(|e| io_msg("listing", src, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_msg("listing", src, e))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let m = fs::symlink_metadata(&from).map_err(|e| io_msg("reading", &from, e))?;
        let ft = m.file_type();
        *n += 1;
        tick(*n);
        if ft.is_dir() {
            copy_tree(&from, &to, n, tick)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&from).map_err(|e| io_msg("reading link", &from, e))?;
            let _ = fs::remove_file(&to);
            symlink(&target, &to).map_err(|e| io_msg("creating link", &to, e))?;
        } else if ft.is_file() {
            fs::copy(&from, &to).map_err(|e| io_msg("copying to", &to, e))?;
            fs::set_permissions(&to, fs::Permissions::from_mode(m.permissions().mode()))
                .map_err(|e| io_msg("setting the mode of", &to, e))?;
        }
    }
    Ok(())
}

/// Facts about the target the configuration files need.
#[derive(Debug, Clone)]
pub struct TargetFacts {
    /// The LUKS2 UUID (from the plan) and its mapper name.
    pub luks_uuid: String,
    pub mapper: String,
    pub root_dev: String,
    pub swap_dev: String,
    pub boot_uuid: String,
    pub esp_uuid: String,
}

impl TargetFacts {
    pub fn of(plan: &Plan) -> Self {
        let lv = |name: &str| names::lv_mapper_path(&plan.lvm.vg, name);
        let vid = partitioner::apply::esp_volume_id(plan);
        TargetFacts {
            luks_uuid: plan.luks.uuid.to_string(),
            mapper: plan.luks.mapper_name.clone(),
            root_dev: lv(&plan.lvm.root_lv),
            swap_dev: lv(&plan.lvm.swap_lv),
            boot_uuid: plan.partition(Role::Boot).guid.to_string(),
            esp_uuid: format!("{:04X}-{:04X}", vid >> 16, vid & 0xffff),
        }
    }
}

fn write(root: &Path, rel: &str, text: &str, mode: u32) -> Result<(), String> {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).map_err(|e| io_msg("creating", parent, e))?;
    }
    fs::write(&p, text).map_err(|e| io_msg("writing", &p, e))?;
    fs::set_permissions(&p, fs::Permissions::from_mode(mode))
        .map_err(|e| io_msg("setting the mode of", &p, e))
}

fn append_line(root: &Path, rel: &str, line: &str, mode: u32) -> Result<(), String> {
    let p = root.join(rel);
    let mut text = fs::read_to_string(&p).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    write(root, rel, &text, mode)
}

/// Adds the user to `group` in /etc/group (creating the group if absent).
fn add_to_group(root: &Path, group: &str, user: &str) -> Result<(), String> {
    let p = root.join("etc/group");
    let text = fs::read_to_string(&p).unwrap_or_default();
    let mut found = false;
    let mut out = String::new();
    let mut max_gid = 999;
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if let Some(g) = f.get(2).and_then(|g| g.parse::<u32>().ok())
            && g < 60000
        {
            max_gid = max_gid.max(g);
        }
        if f.first() == Some(&group) && f.len() == 4 {
            found = true;
            let members: Vec<&str> = f[3].split(',').filter(|m| !m.is_empty()).collect();
            let mut m = members.clone();
            if !m.contains(&user) {
                m.push(user);
            }
            out.push_str(&format!("{}:{}:{}:{}\n", f[0], f[1], f[2], m.join(",")));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !found {
        out.push_str(&format!("{group}:x:{}:{user}\n", max_gid + 1));
    }
    write(root, "etc/group", &out, 0o644)
}

/// The first free uid from 1000 in /etc/passwd.
fn next_uid(root: &Path) -> u32 {
    let text = fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    let used: Vec<u32> = text
        .lines()
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect();
    (1000..60000).find(|u| !used.contains(u)).unwrap_or(1000)
}

/// Writes fstab, crypttab, hostname, locale, keyboard, time zone and the
/// dom0 user into the mounted target `root`.
pub fn configure(
    root: &Path,
    answers: &Answers,
    secrets: &Secrets,
    facts: &TargetFacts,
    log: &mut Log,
) -> Result<(), String> {
    let s = &answers.system;
    write(
        root,
        "etc/fstab",
        &format!(
            "# Written by the Bulkhead installer.\n\
             {root_dev} / ext4 defaults,x-systemd.device-timeout=0 1 1\n\
             UUID={boot} /boot ext4 defaults 1 2\n\
             UUID={esp} /boot/efi vfat umask=0077,shortname=winnt 0 2\n\
             {swap} none swap defaults 0 0\n",
            root_dev = facts.root_dev,
            boot = facts.boot_uuid,
            esp = facts.esp_uuid,
            swap = facts.swap_dev,
        ),
        0o644,
    )?;
    write(
        root,
        "etc/crypttab",
        &format!(
            "{} UUID={} none luks,discard\n",
            facts.mapper, facts.luks_uuid
        ),
        0o600,
    )?;
    write(root, "etc/hostname", &format!("{}\n", s.hostname), 0o644)?;
    // Set now, as Debian's installer and Anaconda do: with the payload's
    // empty one, systemd boots with a transient ID and must commit it once
    // the root is writable, and treats that boot as a "first boot".
    let id = machine_id().map_err(|e| io_msg("reading", Path::new("/dev/urandom"), e))?;
    write(root, "etc/machine-id", &format!("{id}\n"), 0o444)?;
    write(
        root,
        "etc/hosts",
        &format!(
            "127.0.0.1 localhost {h}\n::1 localhost {h}\n",
            h = s.hostname
        ),
        0o644,
    )?;
    write(
        root,
        "etc/locale.conf",
        &format!("LANG={}\n", s.language),
        0o644,
    )?;
    write(
        root,
        "etc/default/locale",
        &format!("LANG={}\n", s.language),
        0o644,
    )?;
    write(
        root,
        "etc/vconsole.conf",
        &format!("KEYMAP={}\n", s.keyboard),
        0o644,
    )?;
    write(
        root,
        "etc/default/keyboard",
        &format!(
            "XKBMODEL=\"pc105\"\nXKBLAYOUT=\"{}\"\nXKBVARIANT=\"\"\nXKBOPTIONS=\"\"\n",
            s.keyboard
        ),
        0o644,
    )?;
    let zone = root.join("usr/share/zoneinfo").join(&s.timezone);
    if !zone.is_file() {
        return Err(format!(
            "time zone {:?} is not in the installed system's {}; choose another",
            s.timezone,
            root.join("usr/share/zoneinfo").display()
        ));
    }
    let lt = root.join("etc/localtime");
    let _ = fs::remove_file(&lt);
    symlink(format!("../usr/share/zoneinfo/{}", s.timezone), &lt)
        .map_err(|e| io_msg("linking", &lt, e))?;
    write(root, "etc/timezone", &format!("{}\n", s.timezone), 0o644)?;

    let u = &answers.user;
    let uid = next_uid(root);
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    if passwd
        .lines()
        .any(|l| l.split(':').next() == Some(u.name.as_str()))
    {
        return Err(format!(
            "user {:?} already exists in the installed system; choose another name",
            u.name
        ));
    }
    append_line(
        root,
        "etc/passwd",
        &format!(
            "{n}:x:{uid}:{uid}:{full}:/home/{n}:/bin/bash",
            n = u.name,
            full = u.full_name
        ),
        0o644,
    )?;
    append_line(
        root,
        "etc/shadow",
        &format!("{}:{}:19000:0:99999:7:::", u.name, secrets.password_hash),
        0o640,
    )?;
    append_line(
        root,
        "etc/group",
        &format!("{n}:x:{uid}:", n = u.name),
        0o644,
    )?;
    add_to_group(root, "wheel", &u.name)?;
    add_to_group(root, "qubes", &u.name)?;
    let home = root.join("home").join(&u.name);
    fs::create_dir_all(&home).map_err(|e| io_msg("creating", &home, e))?;
    fs::set_permissions(&home, fs::Permissions::from_mode(0o700))
        .map_err(|e| io_msg("setting the mode of", &home, e))?;
    std::os::unix::fs::chown(&home, Some(uid), Some(uid)).map_err(|e| io_msg("chown", &home, e))?;
    log.line(format!(
        "configured hostname {}, {}, keyboard {}, time zone {}, user {} (uid {uid}, groups wheel, qubes)",
        s.hostname, s.language, s.keyboard, s.timezone, u.name
    ));
    Ok(())
}

/// A new machine ID (machine-id(5)): 128 random bits as a version 4 UUID,
/// in 32 lower-case hex digits, as systemd-machine-id-setup makes it.
pub fn machine_id() -> io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 16];
    fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Qubes' Xen command line: the one iso-builder also writes into the
/// payload's /etc/default/grub.d, so a later update-grub keeps it.
use names::XEN_CMDLINE;

/// The files the payload put in /boot: Xen, the dom0 kernel (the newest,
/// when several) and that kernel's release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    pub xen: String,
    pub kernel: String,
    pub release: String,
}

impl BootFiles {
    /// The initramfs `update-initramfs -c` makes for the kernel.
    pub fn initrd(&self) -> String {
        format!("initrd.img-{}", self.release)
    }
}

/// Finds Xen and the dom0 kernel in the target's /boot.
pub fn boot_files(root: &Path) -> Result<BootFiles, String> {
    let boot = root.join("boot");
    fs::read_dir(&boot).map_err(|e| io_msg("listing", &boot, e))?;
    let xen = newest(&boot, "xen-", ".gz")
        .ok_or("the payload has no Xen hypervisor (/boot/xen-*.gz); the medium is incomplete")?;
    let (kernel, release) = boot_files_kernel(root)
        .ok_or("the payload has no dom0 kernel (/boot/vmlinuz-*); the medium is incomplete")?;
    Ok(BootFiles {
        xen,
        kernel,
        release,
    })
}

/// A sort key that orders digit runs by value ("6.1.0-10" after "6.1.0-9").
fn natural(s: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut digits = String::new();
    let mut text = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !text.is_empty() {
                out.push((0, std::mem::take(&mut text)));
            }
            digits.push(c);
        } else {
            if !digits.is_empty() {
                out.push((digits.parse().unwrap_or(u64::MAX), String::new()));
                digits.clear();
            }
            text.push(c);
        }
    }
    if !digits.is_empty() {
        out.push((digits.parse().unwrap_or(u64::MAX), String::new()));
    }
    if !text.is_empty() {
        out.push((0, text));
    }
    out
}

/// Whether the installer itself runs with a serial console (the menu's
/// serial entry); the installed system then keeps it, as Anaconda does.
pub fn serial_console(cmdline: &str) -> bool {
    cmdline
        .split_whitespace()
        .any(|w| w.starts_with("console=ttyS"))
}

/// GRUB's menu on the target: Xen (multiboot2) with Qubes' command line and
/// the dom0 kernel, whose initramfs unlocks the LUKS2 volume (crypttab) and
/// activates the LVM root. With `serial`, GRUB, Xen (com1) and dom0 (hvc0)
/// also use the first serial port. `system`'s extra Xen and dom0 arguments
/// come last.
pub fn grub_cfg(
    facts: &TargetFacts,
    files: &BootFiles,
    serial: bool,
    system: &SystemAnswers,
) -> String {
    let (terminal, xen_cmdline, dom0_console) = if serial {
        (
            "serial --unit=0 --speed=115200\n\
             terminal_input console serial\n\
             terminal_output console serial\n",
            XEN_CMDLINE.replace("console=none", "console=com1,vga com1=115200,8n1"),
            " console=hvc0",
        )
    } else {
        ("", XEN_CMDLINE.to_string(), "")
    };
    let with = |base: &str, extra: &str| match extra.trim() {
        "" => base.to_string(),
        extra => format!("{base} {extra}"),
    };
    let xen_cmdline = with(&xen_cmdline, &system.xen_args);
    let dom0_cmdline = with(
        &format!("root={} ro{dom0_console}", facts.root_dev),
        &system.dom0_args,
    );
    format!(
        "# Written by the Bulkhead installer.\n\
         set timeout=5\n\
         set default=0\n\
         {terminal}\
         insmod part_gpt\n\
         insmod ext2\n\
         search --no-floppy --fs-uuid --set=root {boot}\n\
         menuentry 'Bulkhead (Xen)' {{\n\
         \tinsmod multiboot2\n\
         \techo 'Loading Xen {xen}'\n\
         \tmultiboot2 /{xen} placeholder {xen_cmdline}\n\
         \techo 'Loading Linux {kernel}'\n\
         \tmodule2 /{kernel} placeholder {dom0_cmdline}\n\
         \tmodule2 --nounzip /{initrd}\n\
         }}\n",
        boot = facts.boot_uuid,
        xen = files.xen,
        kernel = files.kernel,
        initrd = files.initrd(),
    )
}

/// initramfs-tools' settings for the target. An internal disk gets a
/// host-only image (`MODULES=dep`, as Fedora's and Qubes' dracut do): this
/// machine's drivers, plus the device-mapper targets of the root and the
/// keyboard drivers the passphrase is typed with. An install onto a USB
/// drive gets every driver (`MODULES=most`), so it boots on other machines.
/// Returns the conf.d file and the lines for `/etc/initramfs-tools/modules`.
pub fn initramfs_settings(portable: bool) -> (String, &'static [&'static str]) {
    const HOST_ONLY_EXTRA: &[&str] = &[
        "dm_mod",
        "dm_crypt",
        "dm_thin_pool",
        "usbhid",
        "hid_generic",
        "xhci_pci",
        "ehci_pci",
        "ohci_pci",
        "uhci_hcd",
    ];
    let modules = if portable { "most" } else { "dep" };
    let conf = format!(
        "# Written by the Bulkhead installer: {}.\nMODULES={modules}\nCOMPRESS=gzip\n",
        if portable {
            "every driver, so this USB drive boots on other machines"
        } else {
            "this machine's drivers (host-only), plus those in ../modules"
        }
    );
    (conf, if portable { &[] } else { HOST_ONLY_EXTRA })
}

/// The commands, run inside the target (chroot), that install GRUB for BIOS
/// (core image in the BIOS boot partition) and UEFI (the removable fallback
/// path EFI/BOOT/BOOTX64.EFI; an NVRAM entry only when booted by UEFI) and
/// rebuild the initramfs with the LUKS/LVM unlock.
pub fn bootloader_commands(disk: &str, uefi_booted: bool, release: &str) -> Vec<Vec<String>> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut c = vec![
        v(&["grub-install", "--target=i386-pc", "--recheck", disk]),
        v(&[
            "grub-install",
            "--target=x86_64-efi",
            "--efi-directory=/boot/efi",
            "--bootloader-id=bulkhead",
            "--removable",
            "--no-nvram",
        ]),
    ];
    if uefi_booted {
        c.push(v(&[
            "efibootmgr",
            "--create",
            "--disk",
            disk,
            "--part",
            "2",
            "--label",
            "Bulkhead",
            "--loader",
            "\\EFI\\BOOT\\BOOTX64.EFI",
        ]));
    }
    c.push(v(&["update-initramfs", "-c", "-k", release]));
    c
}

/// The disk and the mounted target, as the engine uses them.
pub trait Target {
    /// Checks the consent `erase` against the plan, partitions, formats and
    /// mounts; returns the mounted root and the plan actually applied (an
    /// interrupted earlier run's, when the partitioner resumes it).
    /// `progress` takes the percent done within the stage and a log line.
    fn prepare(
        &mut self,
        plan: &Plan,
        erase: &str,
        secrets: &Secrets,
        progress: &mut dyn FnMut(u8, String),
    ) -> Result<(PathBuf, Plan), String>;
    /// Runs a command inside the target root.
    fn run_in_target(&mut self, root: &Path, argv: &[String], log: &mut Log) -> Result<(), String>;
    /// Whether this machine was booted by UEFI.
    fn uefi_booted(&self) -> bool;
    /// Whether the installer runs on a serial console the installed system
    /// should keep.
    fn serial_console(&self) -> bool {
        false
    }
    /// Unmounts and closes everything `prepare` opened.
    fn finish(&mut self, log: &mut Log) -> Result<(), String>;
}

/// Runs one install. `events` receives progress; nothing is written before
/// the hardware gate and the plan succeeded.
pub fn install(
    answers: &Answers,
    secrets: &Secrets,
    machine: &MachineData,
    payload: &Payload,
    template: Option<&Path>,
    target: &mut dyn Target,
    events: &mut dyn FnMut(Event),
) -> Result<Log, (InstallError, Log)> {
    let started = Instant::now();
    let mut log = Log::default();
    let mut emit = |log: &mut Log, stage: Stage, within: u8, message: String| {
        log.line(format!("[{stage:?}] {message}"));
        let percent = overall_percent(stage, within);
        events(Event {
            stage,
            percent,
            eta: eta(started.elapsed(), percent),
            message,
        });
    };
    // After `prepare`, a failure still unmounts and closes (best effort), so
    // a retry finds the disk free.
    let mut opened = false;
    macro_rules! tryst {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => {
                    let e: InstallError = e;
                    log.line(format!("FAILED: {e}"));
                    if opened {
                        if let Err(m) = target.finish(&mut log) {
                            log.line(format!("cleaning up after the failure: {m}"));
                        }
                    }
                    return Err((e, log));
                }
            }
        };
    }
    if let Some(p) = answers.problems().into_iter().next() {
        let e = InstallError::Answers(format!("{}: {}", p.field, p.message));
        log.line(format!("FAILED: {e}"));
        return Err((e, log));
    }
    emit(&mut log, Stage::Hardware, 0, "checking requirements".into());
    tryst!(hardware_gate(
        &machine.report,
        &answers.hardware.accept_warnings
    ));
    for v in &machine.report.verdicts {
        log.line(format!(
            "  {} {}: {}",
            v.status.label(),
            v.requirement,
            v.measured
        ));
    }
    emit(
        &mut log,
        Stage::Plan,
        0,
        format!("planning {}", answers.disk.device),
    );
    let plan =
        tryst!(Plan::new(&machine.inventory, &answers.disk.device).map_err(InstallError::from));
    for l in plan.to_string().lines() {
        log.line(format!("  {l}"));
    }
    let disk = tryst!(
        machine
            .inventory
            .disk(&answers.disk.device)
            .cloned()
            .ok_or_else(|| InstallError::from(Refusal::NotFound {
                disk: answers.disk.device.clone()
            }))
    );
    emit(
        &mut log,
        Stage::Partition,
        0,
        format!("erasing {}", disk.describe()),
    );
    let mut part_log = Log::default();
    let prepared = target.prepare(&plan, &answers.disk.erase, secrets, &mut |within, line| {
        emit(&mut part_log, Stage::Partition, within, line)
    });
    log.lines.append(&mut part_log.lines);
    let (root, plan) = tryst!(prepared.map_err(stage_err(Stage::Partition)));
    opened = true;
    emit(&mut log, Stage::Payload, 0, format!("copying {payload:?}"));
    let mut copy_log = Log::default();
    let mut shown = 0u8;
    let copied = copy_payload(payload, &root, &mut copy_log, &mut |p| {
        // an event per 5% keeps the log pane readable
        if p >= shown.saturating_add(5) || p == 100 {
            shown = p;
            emit(&mut log, Stage::Payload, p, format!("{p}% copied"));
        }
    });
    log.lines.append(&mut copy_log.lines);
    tryst!(copied.map_err(stage_err(Stage::Payload)));
    let installed_template = match template {
        Some(img) => {
            emit(
                &mut log,
                Stage::Payload,
                100,
                format!("making the template {TEMPLATE_NAME} from {}", img.display()),
            );
            Some(tryst!(
                install_template(img, &root, TEMPLATE_NAME, &mut log)
                    .map_err(stage_err(Stage::Payload))
            ))
        }
        None => None,
    };
    let facts = TargetFacts::of(&plan);
    emit(
        &mut log,
        Stage::Configure,
        0,
        "fstab, crypttab, hostname, locale, user".into(),
    );
    tryst!(
        configure(&root, answers, secrets, &facts, &mut log).map_err(stage_err(Stage::Configure))
    );
    emit(
        &mut log,
        Stage::Bootloader,
        0,
        "GRUB for BIOS and UEFI, initramfs".into(),
    );
    let files = tryst!(boot_files(&root).map_err(stage_err(Stage::Bootloader)));
    log.line(format!(
        "  Xen {}, dom0 kernel {}, serial console {}",
        files.xen,
        files.kernel,
        if target.serial_console() {
            "kept"
        } else {
            "none"
        }
    ));
    let cfg = grub_cfg(&facts, &files, target.serial_console(), &answers.system);
    tryst!(write(&root, "boot/grub/grub.cfg", &cfg, 0o644).map_err(stage_err(Stage::Bootloader)));
    let portable = disk.transport == partitioner::discover::Transport::Usb;
    let (conf, extra_modules) = initramfs_settings(portable);
    tryst!(
        write(
            &root,
            "etc/initramfs-tools/conf.d/bulkhead.conf",
            &conf,
            0o644
        )
        .map_err(stage_err(Stage::Bootloader))
    );
    for m in extra_modules {
        tryst!(
            append_line(&root, "etc/initramfs-tools/modules", m, 0o644)
                .map_err(stage_err(Stage::Bootloader))
        );
    }
    let cmds = bootloader_commands(&plan.disk.path, target.uefi_booted(), &files.release);
    for (i, cmd) in cmds.iter().enumerate() {
        emit(
            &mut log,
            Stage::Bootloader,
            (i * 100 / cmds.len()) as u8,
            format!("running {}", cmd.join(" ")),
        );
        tryst!(
            target
                .run_in_target(&root, cmd, &mut log)
                .map_err(stage_err(Stage::Bootloader))
        );
    }
    emit(
        &mut log,
        Stage::Firstboot,
        0,
        "writing /etc/bulkhead/firstboot.toml".into(),
    );
    let on_usb = disk.transport == partitioner::discover::Transport::Usb;
    let mut settings = answers.firstboot_settings(on_usb);
    // The medium's template replaces firstboot's defaults, whose images a
    // Bulkhead medium does not carry.
    if let Some(image) = installed_template {
        settings.templates = vec![firstboot::settings::TemplateSettings {
            name: TEMPLATE_NAME.to_string(),
            image: Some(PathBuf::from(image)),
            root_size: None,
        }];
        settings.default_template = None;
    }
    let text = tryst!(
        toml::to_string(&settings)
            .map_err(|e| e.to_string())
            .map_err(stage_err(Stage::Firstboot))
    );
    tryst!(
        write(&root, names::FIRSTBOOT_SETTINGS, &text, 0o644).map_err(stage_err(Stage::Firstboot))
    );
    emit(
        &mut log,
        Stage::Finish,
        0,
        "writing the log, unmounting".into(),
    );
    log.line(format!(
        "install finished in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    tryst!(write(&root, LOG_PATH, &log.text(), 0o600).map_err(stage_err(Stage::Finish)));
    opened = false;
    tryst!(target.finish(&mut log).map_err(stage_err(Stage::Finish)));
    emit(&mut log, Stage::Finish, 100, "done".into());
    Ok(log)
}

/// The real target: the partitioner's apply on the disk (LUKS and LVM left
/// open), the file systems mounted below `mountpoint`, commands run with
/// `chroot` after binding /dev, /proc and /sys.
pub struct DiskTarget {
    pub mountpoint: PathBuf,
    pub pbkdf: partitioner::luks::Pbkdf,
    mounted: Vec<PathBuf>,
    disk: Option<PathBuf>,
}

impl DiskTarget {
    pub fn new(mountpoint: PathBuf, pbkdf: partitioner::luks::Pbkdf) -> Self {
        DiskTarget {
            mountpoint,
            pbkdf,
            mounted: Vec::new(),
            disk: None,
        }
    }

    fn mount(&mut self, args: &[&str], dev: &Path, at: &Path) -> Result<(), String> {
        fs::create_dir_all(at).map_err(|e| io_msg("creating", at, e))?;
        run_tool(
            Command::new("mount").args(args).arg(dev).arg(at),
            &format!("mount {} on {}", dev.display(), at.display()),
        )?;
        self.mounted.push(at.to_path_buf());
        Ok(())
    }
}

impl Target for DiskTarget {
    fn prepare(
        &mut self,
        plan: &Plan,
        erase: &str,
        secrets: &Secrets,
        progress: &mut dyn FnMut(u8, String),
    ) -> Result<(PathBuf, Plan), String> {
        let disk = PathBuf::from(&plan.disk.path);
        let inv = partitioner::discover_system().map_err(|e| e.to_string())?;
        partitioner::recheck::check_apply(plan, &inv, erase).map_err(|e| e.to_string())?;
        let mut forward = |p: &partitioner::apply::Progress| {
            // `index` counts from 1.
            let done = match p.event {
                partitioner::apply::Event::Started => p.index.saturating_sub(1),
                _ => p.index,
            };
            let within = (done * 100 / p.total.max(1)).min(100) as u8;
            progress(
                within,
                format!(
                    "partitioner {}/{}: {} ({})",
                    p.index,
                    p.total,
                    p.step.describe(),
                    p.event
                ),
            );
        };
        let out = partitioner::apply::run(
            plan,
            &disk,
            &secrets.passphrase,
            partitioner::apply::Options {
                pbkdf: self.pbkdf,
                restart: false,
                stop_after: None,
                close: false,
                progress: &mut forward,
            },
        )
        .map_err(|e| e.to_string())?;
        self.disk = Some(disk.clone());
        let root = self.mountpoint.clone();
        self.mount(&[], Path::new(&out.root), &root)?;
        self.mount(
            &[],
            &partition_path(&disk, Role::Boot, plan),
            &root.join("boot"),
        )?;
        self.mount(
            &[],
            &partition_path(&disk, Role::Esp, plan),
            &root.join("boot/efi"),
        )?;
        Ok((root, out.plan))
    }

    fn run_in_target(
        &mut self,
        root: &Path,
        argv: &[String],
        _log: &mut Log,
    ) -> Result<(), String> {
        for d in ["dev", "proc", "sys"] {
            let at = root.join(d);
            if !self.mounted.contains(&at) {
                self.mount(&["--bind"], &Path::new("/").join(d), &at)?;
            }
        }
        run_tool(
            Command::new("chroot").arg(root).args(argv),
            &format!("{} failed", argv.join(" ")),
        )
    }

    fn uefi_booted(&self) -> bool {
        Path::new("/sys/firmware/efi").is_dir()
    }

    fn serial_console(&self) -> bool {
        serial_console(&fs::read_to_string("/proc/cmdline").unwrap_or_default())
    }

    fn finish(&mut self, log: &mut Log) -> Result<(), String> {
        while let Some(at) = self.mounted.pop() {
            run_tool(
                Command::new("umount").arg(&at),
                &format!("umount {}", at.display()),
            )?;
        }
        if let Some(d) = &self.disk {
            partitioner::apply::close_installed(d).map_err(|e| e.to_string())?;
            log.line(format!("closed {}", d.display()));
        }
        Ok(())
    }
}

/// A dry run: the hardware gate and the plan, exactly as an install makes
/// them; nothing is opened for writing.
pub fn dry_run(answers: &Answers, machine: &MachineData) -> Result<Plan, InstallError> {
    hardware_gate(&machine.report, &answers.hardware.accept_warnings)?;
    Ok(Plan::new(&machine.inventory, &answers.disk.device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ids_are_version_4_uuids_in_hex() {
        let a = machine_id().unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(&a[12..13], "4", "{a}");
        assert!("89ab".contains(&a[16..17]), "{a}");
        assert_ne!(a, machine_id().unwrap());
    }

    #[test]
    fn internal_disks_get_a_host_only_initramfs_usb_drives_a_portable_one() {
        let (conf, extra) = initramfs_settings(false);
        assert!(conf.contains("MODULES=dep\n"), "{conf}");
        assert!(extra.contains(&"dm_thin_pool") && extra.contains(&"usbhid"));
        let (conf, extra) = initramfs_settings(true);
        assert!(conf.contains("MODULES=most\n"), "{conf}");
        assert!(extra.is_empty());
    }

    #[test]
    fn only_one_installer_holds_the_lock() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let first = InstallLock::acquire(&p).unwrap();
        let e = InstallLock::acquire(&p).unwrap_err();
        assert!(e.contains("another installer"), "{e}");
        drop(first);
        InstallLock::acquire(&p).unwrap();
    }

    fn facts() -> TargetFacts {
        TargetFacts {
            luks_uuid: "u".into(),
            mapper: "luks-u".into(),
            root_dev: "/dev/mapper/qubes_dom0-root".into(),
            swap_dev: "/dev/mapper/qubes_dom0-swap".into(),
            boot_uuid: "b".into(),
            esp_uuid: "E".into(),
        }
    }

    #[test]
    fn serial_install_keeps_the_serial_console_in_grub_xen_and_dom0() {
        assert!(serial_console("quiet console=tty0 console=ttyS0,115200"));
        assert!(!serial_console("quiet console=tty0"));
        let files = BootFiles {
            xen: "xen-4.17-amd64.gz".into(),
            kernel: "vmlinuz-6.1.0-1-amd64".into(),
            release: "6.1.0-1-amd64".into(),
        };
        let system = SystemAnswers {
            xen_args: "dom0=pvh".into(),
            dom0_args: "systemd.default_timeout_start_sec=600".into(),
            ..SystemAnswers::default()
        };
        let cfg = grub_cfg(&facts(), &files, true, &system);
        assert!(cfg.contains("terminal_output console serial\n"), "{cfg}");
        assert!(
            cfg.contains("console=com1,vga com1=115200,8n1 dom0_mem=min:1024M"),
            "{cfg}"
        );
        assert!(
            cfg.contains("root=/dev/mapper/qubes_dom0-root ro console=hvc0 systemd.default_timeout_start_sec=600\n"),
            "{cfg}"
        );
        assert!(cfg.contains(" dom0=pvh\n"), "{cfg}");
        let plain = grub_cfg(&facts(), &files, false, &SystemAnswers::default());
        assert!(
            plain.contains(&format!("placeholder {XEN_CMDLINE}\n")),
            "{plain}"
        );
    }

    #[test]
    fn boot_files_pick_xen_and_the_newest_kernel_or_say_what_is_missing() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("boot")).unwrap();
        let e = boot_files(d.path()).unwrap_err();
        assert!(e.contains("no Xen hypervisor"), "{e}");
        for f in [
            "xen-4.17-amd64.gz",
            "vmlinuz-6.1.0-9-amd64",
            "vmlinuz-6.1.0-10-amd64",
        ] {
            fs::write(d.path().join("boot").join(f), "x").unwrap();
        }
        let b = boot_files(d.path()).unwrap();
        assert_eq!(b.kernel, "vmlinuz-6.1.0-10-amd64");
        assert_eq!(b.initrd(), "initrd.img-6.1.0-10-amd64");
        assert_eq!(b.xen, "xen-4.17-amd64.gz");
    }
}
