//! The disk and the mounted target behind the [`Target`] trait, so the
//! engine's file writing runs on a plain directory in tests; [`DiskTarget`]
//! is the real one (the partitioner's apply, mount, chroot).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use firstboot::settings::PoolSettings;
use firstboot::storage::{Lvm, Storage};
use partitioner::Plan;
use partitioner::apply::partition_path;
use partitioner::plan::Role;

use super::error::StageError;
use super::progress::Log;
use super::tool;
use crate::secrets::Secrets;

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
    ) -> Result<(PathBuf, Plan), StageError>;
    /// Runs a command inside the target root.
    fn run_in_target(
        &mut self,
        root: &Path,
        argv: &[String],
        log: &mut Log,
    ) -> Result<(), StageError>;
    /// Whether this machine was booted by UEFI.
    fn uefi_booted(&self) -> bool;
    /// Whether the installer runs on a serial console the installed system
    /// should keep.
    fn serial_console(&self) -> bool {
        false
    }
    /// A new thin volume `vid` (`VG/NAME`) of `size` bytes in the qubes'
    /// thin pool `pool` (made from the VG's free space first if missing, as
    /// firstboot would), for a template's root written at install time;
    /// returns the device to write. A leftover `vid` of an earlier attempt
    /// on this disk is removed first.
    fn thin_volume(
        &mut self,
        pool: &PoolSettings,
        vid: &str,
        size: u64,
    ) -> Result<PathBuf, StageError>;
    /// Renames a volume `thin_volume` made (`VG/FROM` to `VG/TO`).
    fn rename_volume(&mut self, from: &str, to: &str) -> Result<(), StageError>;
    /// Unmounts and closes everything `prepare` opened.
    fn finish(&mut self, log: &mut Log) -> Result<(), StageError>;
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

#[cfg(test)]
impl TargetFacts {
    /// Facts of a made-up disk, for the unit tests of the files they shape.
    pub(crate) fn sample() -> Self {
        TargetFacts {
            luks_uuid: "u".into(),
            mapper: "luks-u".into(),
            root_dev: "/dev/mapper/qubes_dom0-root".into(),
            swap_dev: "/dev/mapper/qubes_dom0-swap".into(),
            boot_uuid: "b".into(),
            esp_uuid: "E".into(),
        }
    }
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

/// Whether the installer itself runs with a serial console (the menu's
/// serial entry); the installed system then keeps it, as Anaconda does.
pub fn serial_console(cmdline: &str) -> bool {
    cmdline
        .split_whitespace()
        .any(|w| w.starts_with("console=ttyS"))
}

/// The real target: the partitioner's apply on the disk (LUKS and LVM left
/// open), the file systems mounted below `mountpoint`, commands run with
/// `chroot` after binding /dev, /proc and /sys.
pub struct DiskTarget {
    pub mountpoint: PathBuf,
    pub pbkdf: partitioner::luks::Pbkdf,
    mounted: Vec<PathBuf>,
    disk: Option<PathBuf>,
    lvm: Option<Lvm>,
}

/// Where the installed system keeps the record of the volumes the
/// installer made for the qubes.
const VOLUMES_LOG: &str = "var/log/bulkhead/installer-volumes.log";

impl DiskTarget {
    pub fn new(mountpoint: PathBuf, pbkdf: partitioner::luks::Pbkdf) -> Self {
        DiskTarget {
            mountpoint,
            pbkdf,
            mounted: Vec::new(),
            disk: None,
            lvm: None,
        }
    }

    /// firstboot's LVM storage, logging what it makes in the target's
    /// install log directory.
    fn lvm(&mut self) -> &mut Lvm {
        let log = self.mountpoint.join(VOLUMES_LOG);
        self.lvm
            .get_or_insert_with(|| Lvm::new("lvm", log).without_monitoring())
    }

    fn mount(&mut self, args: &[&str], dev: &Path, at: &Path) -> Result<(), StageError> {
        fs::create_dir_all(at).map_err(StageError::io("creating", at))?;
        tool::run(
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
    ) -> Result<(PathBuf, Plan), StageError> {
        let disk = PathBuf::from(&plan.disk.path);
        let inv = partitioner::discover_system()?;
        partitioner::recheck::check_apply(plan, &inv, erase)?;
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
        )?;
        self.disk = Some(disk.clone());
        // A fresh listing of the volumes this apply made (a retry may reuse
        // this target).
        self.lvm = None;
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
    ) -> Result<(), StageError> {
        for d in ["dev", "proc", "sys"] {
            let at = root.join(d);
            if !self.mounted.contains(&at) {
                self.mount(&["--bind"], &Path::new("/").join(d), &at)?;
            }
        }
        tool::run(
            Command::new("chroot").arg(root).args(argv),
            &format!("{} failed", argv.join(" ")),
        )?;
        Ok(())
    }

    fn thin_volume(
        &mut self,
        pool: &PoolSettings,
        vid: &str,
        size: u64,
    ) -> Result<PathBuf, StageError> {
        let lvm = self.lvm();
        if !lvm.pool_exists(&pool.volume_group, &pool.name)? {
            lvm.create_pool(&pool.volume_group, &pool.name, pool.percent_free)?;
        }
        if lvm.exists(vid)? {
            lvm.remove(vid)?;
        }
        let thin_pool = format!("{}/{}", pool.volume_group, pool.name);
        lvm.create(&thin_pool, vid, size)?;
        Ok(Path::new("/dev").join(vid))
    }

    fn rename_volume(&mut self, from: &str, to: &str) -> Result<(), StageError> {
        let lvm = self.lvm();
        if lvm.exists(to)? {
            lvm.remove(to)?;
        }
        Ok(lvm.rename(from, to)?)
    }

    fn uefi_booted(&self) -> bool {
        Path::new("/sys/firmware/efi").is_dir()
    }

    fn serial_console(&self) -> bool {
        serial_console(&fs::read_to_string("/proc/cmdline").unwrap_or_default())
    }

    fn finish(&mut self, log: &mut Log) -> Result<(), StageError> {
        while let Some(at) = self.mounted.pop() {
            tool::run(
                Command::new("umount").arg(&at),
                &format!("umount {}", at.display()),
            )?;
        }
        if let Some(d) = &self.disk {
            partitioner::apply::close_installed(d)?;
            log.line(format!("closed {}", d.display()));
        }
        Ok(())
    }
}
